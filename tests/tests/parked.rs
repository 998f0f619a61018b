//! Idle connections of a blocking server give their threads back (parked,
//! `rigwire_core::link::PARK_AFTER`) and lose nothing by it: keepalive runs
//! both ways while parked, a call from either side wakes them, a peer that
//! goes silent or dies while parked is noticed, parked connections cost no
//! CPU, and a server with parked connections shuts down gracefully.
//!
//! The tests run one at a time: threads and CPU time are the process's.

#[allow(dead_code)]
mod common;
#[path = "common/raw.rs"]
mod raw;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rigwire_core::link::PARK_AFTER;
use rigwire_core::{Codec, Config, Connection, Framing, Keepalive, Payload, Registry, Role};
use rigwire_std::{Client, Handlers, Peer, RunningServer, Server};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const CLIENTS: usize = 24;

/// Keepalive well inside a parked stretch: several pings each way while
/// the connections are parked, and a silent peer dead after 1.2 s.
fn keepalive() -> Option<Keepalive> {
    Some(Keepalive {
        interval: Duration::from_millis(300),
        timeout: Duration::from_millis(1200),
    })
}

fn config(name: &str) -> Config {
    let mut config = common::with_tls(Config::named(name));
    config.protocol.keepalive = keepalive();
    config
}

/// The server's connection threads now (its clients' threads have other names).
fn connection_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "rigwire-conn")
        .count()
}

/// Waits up to 10 s for `done`.
fn eventually(done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

struct Rig {
    server: RunningServer,
    /// The server's side of every connection, from `on_connect`.
    peers: Arc<Mutex<Vec<Peer>>>,
    disconnects: Arc<AtomicUsize>,
}

fn rig(url: &str) -> Rig {
    let mut server = Server::bind(url, config("parking-rig")).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    server.expose_raw("echo", |_, args| Ok(args)).unwrap();
    let peers = Arc::new(Mutex::new(Vec::new()));
    let disconnects = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&peers);
    server.on_connect(move |peer| seen.lock().unwrap().push(peer.clone()));
    let gone = Arc::clone(&disconnects);
    server.on_disconnect(move |_, _| {
        gone.fetch_add(1, Ordering::SeqCst);
    });
    Rig {
        server: server.start().unwrap(),
        peers,
        disconnects,
    }
}

/// A client that answers the server's calls back (`whoami`).
fn client(url: &str, i: usize) -> Client {
    let mut handlers = Handlers::new();
    handlers
        .expose("whoami", move |(): ()| Ok(i as u64))
        .unwrap();
    Client::connect_with(url, config(&format!("client-{i}")), handlers).unwrap()
}

#[test]
fn idle_connections_park_keep_alive_and_wake_on_calls_from_either_side() {
    parks_keeps_alive_and_wakes("tcp://127.0.0.1:0");
}

#[test]
fn idle_connections_park_under_tls_and_websocket_too() {
    parks_keeps_alive_and_wakes("wss://127.0.0.1:0/rig");
}

fn parks_keeps_alive_and_wakes(url: &str) {
    let _one = serial();
    let started = Instant::now();
    let rig = rig(url);
    let url = rig.server.local_url();
    let clients: Vec<Client> = (0..CLIENTS).map(|i| client(&url, i)).collect();
    let ours: Vec<Peer> = clients.iter().map(|c| c.peer().unwrap()).collect();
    for (i, c) in clients.iter().enumerate() {
        let sum: i64 = c.call("add", &(i as i64, 1i64)).unwrap();
        assert_eq!(sum, i as i64 + 1);
    }
    assert!(
        connection_threads() >= CLIENTS,
        "each connection has a thread while busy"
    );

    // Idle: every connection gives its thread back.
    assert!(
        eventually(|| connection_threads() == 0),
        "{} connection threads after {PARK_AFTER:?} idle",
        connection_threads()
    );

    // Parked for several keepalive rounds: every ping is answered (from
    // the parker), nobody is declared silent, and it costs no CPU.
    let (cpu, wall) = (raw::cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let (cpu, wall) = (raw::cpu_time() - cpu, wall.elapsed());
    eprintln!(
        "{CLIENTS} parked connections on {url} for {wall:?}: {cpu:?} of CPU (clients included)"
    );
    assert!(
        cpu < wall / 4,
        "{cpu:?} of CPU in {wall:?}: something spins"
    );
    assert!(ours.iter().all(Peer::is_connected));
    assert_eq!(rig.disconnects.load(Ordering::SeqCst), 0);
    assert_eq!(connection_threads(), 0, "keepalive alone wakes no thread");

    // A call from a client wakes its connection.
    for (i, c) in clients.iter().enumerate() {
        let sum: i64 = c.call("add", &(i as i64, 2i64)).unwrap();
        assert_eq!(sum, i as i64 + 2);
    }
    // Parked again, then a frame of 4 MiB arrives (read on a thread, not
    // two kilobytes at a time by the parker).
    assert!(eventually(|| connection_threads() == 0));
    let big = Payload::new(Codec::Postcard, vec![7u8; 4 << 20]);
    let echoed = clients[0]
        .call_raw("echo", big.clone(), Some(Duration::from_secs(10)))
        .unwrap();
    assert!(echoed == big, "the 4 MiB echo came back different");

    // Parked again, then the server calls every client back.
    assert!(eventually(|| connection_threads() == 0));
    let peers = rig.peers.lock().unwrap().clone();
    assert_eq!(peers.len(), CLIENTS);
    let mut answers: Vec<u64> = peers
        .iter()
        .map(|p| {
            p.call_timeout("whoami", &(), Duration::from_secs(5))
                .unwrap()
        })
        .collect();
    answers.sort_unstable();
    assert_eq!(answers, (0..CLIENTS as u64).collect::<Vec<_>>());

    // Shutdown with every connection parked: graceful, and prompt.
    assert!(eventually(|| connection_threads() == 0));
    let stopping = Instant::now();
    rig.server.shutdown(Duration::from_secs(1));
    assert!(stopping.elapsed() < Duration::from_secs(5));
    assert!(eventually(|| ours.iter().all(|p| !p.is_connected())));
    assert_eq!(connection_threads(), 0);
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// A raw peer after its handshake.
fn raw_peer(url: &str) -> (TcpStream, Connection) {
    let addr = url.strip_prefix("tcp://").unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut conn = Connection::new(
        config("raw").protocol,
        Registry::new(),
        Role::Client,
        Framing::Stream,
        [3; 32],
        Instant::now(),
    )
    .unwrap();
    raw::handshake(&mut stream, &mut conn);
    (stream, conn)
}

/// A raw peer that keeps its side of keepalive until `dead` is set, then
/// vanishes without a word, as a crashed process's socket does.
fn mortal_peer(url: &str, dead: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (mut stream, mut conn) = raw_peer(url);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while !dead.load(Ordering::SeqCst) {
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => conn.handle_input(&buf[..n], Instant::now()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
            conn.handle_timeout(Instant::now());
            while let Some(chunk) = conn.poll_transmit() {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
    })
}

#[test]
fn a_peer_that_falls_silent_or_dies_while_parked_is_noticed() {
    let _one = serial();
    let started = Instant::now();
    let rig = rig("tcp://127.0.0.1:0");
    let url = rig.server.local_url();
    // Silent from the handshake on: it never answers a ping. Its
    // connection parks after `PARK_AFTER` of silence, and the parker's
    // keepalive timer declares it dead.
    let (_silent, _conn) = raw_peer(&url);
    let living = client(&url, 1);
    let dead = Arc::new(AtomicBool::new(false));
    let dying = mortal_peer(&url, Arc::clone(&dead));
    assert!(eventually(|| rig.peers.lock().unwrap().len() == 3));
    assert!(
        eventually(|| rig.disconnects.load(Ordering::SeqCst) == 1),
        "the silent peer was not declared dead"
    );

    // The other two park, keepalive answered; then one dies as a crashed
    // process would, without a goodbye.
    assert!(eventually(|| connection_threads() == 0));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rig.disconnects.load(Ordering::SeqCst), 1);
    dead.store(true, Ordering::SeqCst);
    dying.join().unwrap();
    assert!(
        eventually(|| rig.disconnects.load(Ordering::SeqCst) == 2),
        "a peer that died while parked was not noticed"
    );
    assert!(rig.server.peers().len() == 1);
    let sum: i64 = living.call("add", &(40i64, 2i64)).unwrap();
    assert_eq!(sum, 42);

    // Aborted with its last connection parked: no goodbye, but no thread
    // left behind and no wait either.
    assert!(eventually(|| connection_threads() == 0));
    let ours = living.peer().unwrap();
    let stopping = Instant::now();
    rig.server.abort();
    assert!(stopping.elapsed() < Duration::from_secs(5));
    assert!(eventually(|| !ours.is_connected()));
    assert_eq!(connection_threads(), 0);
    assert!(started.elapsed() < Duration::from_secs(60));
}
