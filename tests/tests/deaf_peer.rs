//! The central promise under a peer that stops reading, over real loopback
//! sockets in both runtimes: calls end by their deadline (never behind a
//! stuck write), a silent peer is declared dead within the keepalive bound,
//! waiting costs no CPU, and a peer that never reads our answers is not read
//! from, so it cannot grow our memory.
//!
//! The tests here run one at a time (CPU time is the process's), and each
//! bounds its own wall time far below the deaf peer's 30 s hold.

#[path = "common/raw.rs"]
mod raw;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use raw::{cpu_time, deaf_service, flood_without_reading, resident_bytes, DeafServer};
use rigwire_core::{ConnectionError, Error, Keepalive, Payload, ProtocolConfig};

const MIB: usize = 1024 * 1024;
const DEADLINE: Duration = Duration::from_millis(500);
/// Far below the deaf peer's hold: a call that waited behind a stuck write
/// would take the whole 30 s.
const BOUND: Duration = Duration::from_secs(5);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client whose keepalive declares a silent peer dead after 1 s.
fn client_config(max_frame: usize, max_queued_output: usize) -> rigwire_core::Config {
    rigwire_core::Config {
        protocol: ProtocolConfig {
            max_frame: max_frame as u32,
            max_queued_output,
            keepalive: Some(Keepalive {
                interval: Duration::from_millis(200),
                timeout: Duration::from_secs(1),
            }),
            ..ProtocolConfig::named("script")
        },
        ..Default::default()
    }
}

/// 64 KiB and 8 MiB of arguments, encoded once (encoding is not what is
/// measured) and shared by every call without a copy.
fn payloads() -> (Payload, Payload) {
    let raw = |len| Payload::new(rigwire_core::Codec::Postcard, vec![0u8; len]);
    (raw(64 * 1024), raw(8 * MIB))
}

fn assert_ended_in_time(outcome: &Result<(), Error>, took: Duration) {
    assert!(
        matches!(outcome, Err(Error::DeadlineExceeded | Error::Busy(_))),
        "{outcome:?}"
    );
    assert!(took < BOUND, "a call took {took:?}");
}

fn assert_silent(err: Error) {
    assert!(
        matches!(err, Error::Disconnected(ConnectionError::PeerSilent(_))),
        "{err}"
    );
}

/// Asserts that waiting cost little CPU: a spinning thread or task would
/// use about as much CPU as wall time.
fn assert_no_spin(cpu_before: Duration, started: Instant) {
    let cpu = cpu_time() - cpu_before;
    let wall = started.elapsed();
    eprintln!("waiting used {cpu:?} of CPU in {wall:?}");
    assert!(
        cpu < wall / 3,
        "used {cpu:?} of CPU in {wall:?}: something spins"
    );
}

#[test]
fn a_std_batch_to_a_deaf_peer_writes_what_it_can_and_ends_by_its_deadline() {
    let _one = serial();
    let deaf = DeafServer::start(ProtocolConfig::named("deaf"));
    let client =
        rigwire_std::Client::connect(&deaf.url, client_config(16 * MIB, 16 * MIB)).unwrap();
    let (_, big_args) = payloads();
    let (cpu, started) = (cpu_time(), Instant::now());
    // 64 MiB in one batch: more than the output limit and the kernel's
    // buffers together. The batch's frames are held back only until a call
    // is refused for room; then they are written and the call waits for
    // room within its deadline, which passes.
    let outcome = client
        .start_batch("echo", vec![big_args; 8], Some(DEADLINE))
        .map(|_| ());
    assert_ended_in_time(&outcome, started.elapsed());
    assert_no_spin(cpu, started);
}

#[test]
fn std_calls_to_a_deaf_peer_end_by_their_deadline_without_spinning() {
    let _one = serial();
    let deaf = DeafServer::start(ProtocolConfig::named("deaf"));
    let small = rigwire_std::Client::connect(&deaf.url, client_config(MIB, MIB)).unwrap();
    let big = rigwire_std::Client::connect(&deaf.url, client_config(16 * MIB, 64 * MIB)).unwrap();
    let (small_args, big_args) = payloads();
    let (cpu, started) = (cpu_time(), Instant::now());
    std::thread::scope(|s| {
        let mut calls = Vec::new();
        for i in 0..42 {
            let (client, args) = match i < 40 {
                true => (&small, small_args.clone()),
                false => (&big, big_args.clone()),
            };
            calls.push(s.spawn(move || {
                let t = Instant::now();
                let r = client
                    .start_raw("echo", args, Some(DEADLINE))
                    .and_then(|c| c.wait())
                    .map(|_| ());
                (r, t.elapsed())
            }));
        }
        for call in calls {
            let (outcome, took) = call.join().unwrap();
            assert_ended_in_time(&outcome, took);
        }
    });
    assert_no_spin(cpu, started);
    // The peer says nothing: keepalive declares it dead, and every later
    // call fails at once, however long its own deadline.
    let t = Instant::now();
    let err = small
        .call_timeout::<_, ()>("echo", &(), Duration::from_secs(60))
        .unwrap_err();
    assert_silent(err);
    assert!(t.elapsed() < BOUND);
}

#[test]
fn a_local_client_to_a_deaf_peer_ends_its_calls_by_their_deadline() {
    // No background thread: the call itself writes, waits for room and
    // reads, so the deadline must hold inside that one thread.
    let _one = serial();
    let deaf = DeafServer::start(ProtocolConfig::named("deaf"));
    let local =
        rigwire_std::LocalClient::connect(&deaf.url, client_config(16 * MIB, 16 * MIB)).unwrap();
    let (_, big_args) = payloads();
    let (cpu, started) = (cpu_time(), Instant::now());
    // Within the keepalive's 1 s: later calls would find the peer silent.
    let t = Instant::now();
    let outcome = local.call_raw("echo", big_args, Some(DEADLINE)).map(|_| ());
    assert_ended_in_time(&outcome, t.elapsed());
    assert_no_spin(cpu, started);
    // Serving waits for the peer too, and learns that it is silent.
    let t = Instant::now();
    let err = local.serve(Duration::from_secs(60)).unwrap_err();
    assert_silent(err);
    assert!(t.elapsed() < BOUND);
}

#[test]
fn std_calls_nobody_waits_for_end_by_their_deadline_at_a_deaf_peer_without_spinning() {
    // Watched (`on_ready`, as Python's asyncio client awaits them), no
    // thread waits for these calls: the connection's own threads keep
    // their deadlines while the socket is full and nothing is read.
    let _one = serial();
    let deaf = DeafServer::start(ProtocolConfig::named("deaf"));
    let client =
        rigwire_std::Client::connect(&deaf.url, client_config(16 * MIB, 64 * MIB)).unwrap();
    let (small_args, big_args) = payloads();
    let (cpu, started) = (cpu_time(), Instant::now());
    let (told, woken) = std::sync::mpsc::channel();
    let mut calls = Vec::new();
    for i in 0..22 {
        let args = match i < 20 {
            true => small_args.clone(),
            false => big_args.clone(),
        };
        let call = client.start_raw("echo", args, Some(DEADLINE)).unwrap();
        let (told, made) = (told.clone(), Instant::now());
        call.on_ready(move || {
            let _ = told.send((i, made.elapsed()));
        });
        calls.push(call);
    }
    for _ in 0..calls.len() {
        let (i, took) = woken.recv_timeout(BOUND).expect("every call is told of");
        let outcome = calls[i].wait_timeout(Duration::ZERO).map(|_| ());
        assert_ended_in_time(&outcome, took);
    }
    assert_no_spin(cpu, started);
}

#[test]
fn std_starts_that_never_wait_are_refused_for_room_at_a_deaf_peer_and_told_when_it_dies() {
    // As Python's asyncio client starts calls: refused for room, it awaits
    // the connection's word, with no thread waiting; a retry after the
    // deadline the calls were made with fails with it.
    let _one = serial();
    let deaf = DeafServer::start(ProtocolConfig::named("deaf"));
    // No keepalive: only the peer's death may end the wait for room.
    let mut config = client_config(MIB, MIB);
    config.protocol.keepalive = None;
    let client = rigwire_std::Client::connect(&deaf.url, config).unwrap();
    let (small_args, _) = payloads();
    let (told, room) = std::sync::mpsc::channel();
    let made = Instant::now();
    let (cpu, started) = (cpu_time(), Instant::now());
    let mut calls = Vec::new();
    // The socket's buffers take a few MiB; then the output fills, and a
    // refusal for room is followed by no word of room.
    loop {
        assert!(started.elapsed() < BOUND, "the output never stayed full");
        let told = told.clone();
        let on_room = move || {
            let _ = told.send(());
        };
        let batch = vec![small_args.clone(); 16];
        let tried = client
            .try_start_batch("echo", batch, Some(Duration::from_secs(20)), made, on_room)
            .unwrap();
        calls.extend(tried.calls);
        if let Some(why) = tried.rest {
            assert_eq!(why, rigwire_std::Deferred::Room);
            if room.recv_timeout(Duration::from_millis(300)).is_err() {
                break;
            }
        }
    }
    let notified = client.try_notify_raw("echo", small_args.clone(), Instant::now(), || {});
    assert_eq!(notified.unwrap(), Some(rigwire_std::Deferred::Room));
    let long_ago = Instant::now() - DEADLINE * 2;
    let late = client.try_start_batch(
        "echo",
        vec![small_args.clone()],
        Some(DEADLINE),
        long_ago,
        || {},
    );
    assert!(matches!(late, Err(Error::DeadlineExceeded)), "{late:?}");
    assert_no_spin(cpu, started);
    drop(deaf);
    room.recv_timeout(BOUND)
        .expect("told when the connection failed");
    // Told as the writes failed: the connection may end a moment later,
    // and a call started meanwhile fails with it.
    match client.try_start_batch("echo", vec![small_args], None, made, || {}) {
        Ok(tried) => {
            for mut call in tried.calls {
                assert_disconnected(call.wait_timeout(BOUND));
            }
        }
        refused => assert_disconnected(refused),
    }
    assert!(!calls.is_empty());
}

#[test]
fn smol_calls_to_a_deaf_peer_end_by_their_deadline_without_spinning() {
    let _one = serial();
    let deaf = DeafServer::start(ProtocolConfig::named("deaf"));
    smol::block_on(async {
        let small = rigwire_smol::Client::connect(&deaf.url, client_config(MIB, MIB))
            .await
            .unwrap();
        let big = rigwire_smol::Client::connect(&deaf.url, client_config(16 * MIB, 64 * MIB))
            .await
            .unwrap();
        let small = std::sync::Arc::new(small);
        let big = std::sync::Arc::new(big);
        let (small_args, big_args) = payloads();
        let (cpu, started) = (cpu_time(), Instant::now());
        let mut calls = Vec::new();
        for i in 0..42 {
            let (client, args) = match i < 40 {
                true => (small.clone(), small_args.clone()),
                false => (big.clone(), big_args.clone()),
            };
            calls.push(smol::spawn(async move {
                let t = Instant::now();
                let r = client.call_raw("echo", args, Some(DEADLINE)).await;
                (r.map(|_| ()), t.elapsed())
            }));
        }
        for call in calls {
            let (outcome, took) = call.await;
            assert_ended_in_time(&outcome, took);
        }
        assert_no_spin(cpu, started);
        let t = Instant::now();
        let err = small
            .call_timeout::<_, ()>("echo", &(), Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_silent(err);
        assert!(t.elapsed() < BOUND);
    });
}

/// A server's limits for the flood tests: 1 MiB frames, 4 MiB of output.
fn server_protocol() -> ProtocolConfig {
    ProtocolConfig {
        max_frame: MIB as u32,
        max_queued_output: 4 * MIB,
        ..ProtocolConfig::named("rig")
    }
}

/// Floods `addr` with 64 KiB echo calls without reading an answer; the
/// server must stop reading (the flood stalls far below its 512 MiB) and
/// its memory must stay near its output limit.
fn assert_flood_is_contained(addr: &str) -> raw::Flood {
    let before = resident_bytes();
    let flood = flood_without_reading(
        addr,
        ProtocolConfig::named("flood"),
        "echo",
        64 * 1024,
        512 * MIB,
    );
    let grown = resident_bytes().saturating_sub(before);
    assert!(
        flood.sent < 64 * MIB,
        "the server kept reading: it took {} MiB",
        flood.sent / MIB
    );
    assert!(grown < 48 * MIB, "memory grew by {} MiB", grown / MIB);
    flood
}

fn addr_of(url: &str) -> &str {
    url.strip_prefix("tcp://").unwrap()
}

#[test]
fn a_std_server_stops_reading_from_a_client_that_never_reads_its_answers() {
    let _one = serial();
    let config = rigwire_core::Config {
        protocol: server_protocol(),
        ..Default::default()
    };
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", config).unwrap();
    // Answered where it is read, as smol's is: an answer on the pool may
    // come after many more calls have been read, each over the peer's 256
    // at once answered `Busy` (a few bytes), so that a starved machine's
    // slow pool let the flood run on, refused call by call (memory held,
    // the flood not stopped: one run in the whole suite under load).
    server
        .expose_raw("echo", |_, args| Ok(args))
        .unwrap()
        .dispatch("echo", rigwire_std::Dispatch::Inline)
        .unwrap();
    let running = server.start().unwrap();
    let url = running.local_url();
    let flood = assert_flood_is_contained(addr_of(&url));
    // Other clients are served meanwhile.
    let other = rigwire_std::Client::connect(&url, Default::default()).unwrap();
    let echoed = other
        .call_raw("echo", Payload::json(&"still here").unwrap(), None)
        .unwrap();
    assert_eq!(echoed.decode::<String>().unwrap(), "still here");
    drop(flood);
    running.shutdown(Duration::from_secs(1));
}

#[test]
fn a_smol_server_stops_reading_from_a_client_that_never_reads_its_answers() {
    let _one = serial();
    let config = rigwire_core::Config {
        protocol: server_protocol(),
        ..Default::default()
    };
    let mut server = rigwire_smol::Server::bind("tcp://127.0.0.1:0", config).unwrap();
    server
        .expose_raw("echo", |_, args| async move { Ok(args) })
        .unwrap();
    let running = server.start().unwrap();
    let url = running.local_url();
    let flood = assert_flood_is_contained(addr_of(&url));
    drop(flood);
    smol::block_on(running.shutdown(Duration::from_secs(1)));
}

#[test]
fn the_relay_stops_reading_from_a_client_that_never_reads_its_answers() {
    let _one = serial();
    let config = rigwire_smol::RelayConfig {
        clients: server_protocol(),
        insecure_services: true,
        ..Default::default()
    };
    let mut relay =
        rigwire_smol::RelayServer::bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", config).unwrap();
    relay
        .expose("echo", |args: Vec<u8>| async move { Ok(args) })
        .unwrap();
    let running = relay.start().unwrap();
    let url = running.clients_url();
    let started = Instant::now();
    let flood = assert_flood_is_contained(addr_of(&url));
    assert!(started.elapsed() < Duration::from_secs(60));
    drop(flood);
    smol::block_on(running.shutdown(Duration::from_secs(1)));
}

/// A smol relay on loopback TCP, both of its sides with the flood tests' limits.
fn tcp_relay() -> rigwire_smol::RunningRelay {
    let config = rigwire_smol::RelayConfig {
        clients: server_protocol(),
        services: server_protocol(),
        insecure_services: true,
        ..Default::default()
    };
    rigwire_smol::RelayServer::bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", config)
        .unwrap()
        .start()
        .unwrap()
}

#[test]
fn calls_through_the_relay_to_a_deaf_service_end_by_their_deadline() {
    let _one = serial();
    let relay = tcp_relay();
    let services = relay.services_url();
    let _deaf = deaf_service(addr_of(&services), ProtocolConfig::named("deaf"), "deaf");
    let script =
        rigwire_std::Client::connect(&relay.clients_url(), client_config(MIB, MIB)).unwrap();
    let (small_args, _) = payloads();
    let (cpu, started) = (cpu_time(), Instant::now());
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..40)
            .map(|_| {
                let (script, args) = (&script, small_args.clone());
                s.spawn(move || {
                    let t = Instant::now();
                    let r = script
                        .start_raw("deaf.echo", args, Some(DEADLINE))
                        .and_then(|c| c.wait())
                        .map(|_| ());
                    (r, t.elapsed())
                })
            })
            .collect();
        for call in calls {
            let (outcome, took) = call.join().unwrap();
            // Expired at the client, or at the relay (which then says so).
            assert!(
                matches!(outcome, Err(Error::DeadlineExceeded | Error::Busy(_))),
                "{outcome:?}"
            );
            assert!(took < BOUND, "a call took {took:?}");
        }
    });
    assert_no_spin(cpu, started);
    smol::block_on(relay.shutdown(Duration::from_millis(100)));
}

/// 4 MiB of arguments, and room for 24 such calls: they wait for the
/// socket, not for room.
fn calls_that_fill_the_socket() -> (Payload, rigwire_core::Config) {
    let args = Payload::new(rigwire_core::Codec::Postcard, vec![0u8; 4 * MIB]);
    (args, client_config(16 * MIB, 128 * MIB))
}

fn assert_disconnected<T: std::fmt::Debug>(outcome: Result<T, Error>) {
    assert!(
        matches!(outcome, Err(Error::Disconnected(_))),
        "{outcome:?}"
    );
}

#[test]
fn callers_waiting_on_a_full_socket_when_the_deaf_peer_dies_all_fail_with_disconnected() {
    // The peer's death makes the socket readable and writable for every
    // waiting caller at once, and only one of them may take the reader.
    let _one = serial();
    let (args, config) = calls_that_fill_the_socket();
    for _ in 0..3 {
        let deaf = DeafServer::start(ProtocolConfig::named("deaf"));
        let client = rigwire_std::Client::connect(&deaf.url, config.clone()).unwrap();
        let started = Instant::now();
        std::thread::scope(|s| {
            let calls: Vec<_> = (0..24)
                .map(|_| {
                    let (client, args) = (&client, args.clone());
                    s.spawn(move || client.call_raw("echo", args, Some(Duration::from_secs(20))))
                })
                .collect();
            std::thread::sleep(Duration::from_millis(300)); // all waiting
            drop(deaf);
            for call in calls {
                assert_disconnected(call.join().expect("a caller panicked"));
            }
        });
        assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    }
    let deaf = DeafServer::start(ProtocolConfig::named("deaf"));
    smol::block_on(async {
        let client = rigwire_smol::Client::connect(&deaf.url, config)
            .await
            .unwrap();
        let client = std::sync::Arc::new(client);
        let started = Instant::now();
        let calls: Vec<_> = (0..24)
            .map(|_| {
                let (client, args) = (client.clone(), args.clone());
                smol::spawn(async move {
                    client
                        .call_raw("echo", args, Some(Duration::from_secs(20)))
                        .await
                })
            })
            .collect();
        smol::Timer::after(Duration::from_millis(300)).await;
        drop(deaf);
        for call in calls {
            assert_disconnected(call.await);
        }
        assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    });
}

#[test]
fn a_follower_that_never_reads_holds_up_neither_its_service_nor_its_other_followers() {
    let _one = serial();
    let relay = tcp_relay();
    // A service that reports 64 KiB events, as many as it is asked, for each call of `report`.
    let mut service = rigwire_std::RemoteService::new(&["data"], client_config(MIB, 4 * MIB));
    service
        .expose_with("report", |ctx: &rigwire_std::CallContext, n: u32| {
            let block = vec![7u8; 64 * 1024];
            for _ in 0..n {
                ctx.peer.notify("exp.event", &("block", &block))?;
            }
            Ok(n)
        })
        .unwrap();
    let _service = service.connect(&relay.services_url()).unwrap();
    let clients = relay.clients_url();
    let _deaf = raw::deaf_follower(addr_of(&clients), ProtocolConfig::named("deaf"), "data");

    // A script that follows the service too, and reads.
    let heard = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handlers = rigwire_std::Handlers::new();
    let counter = std::sync::Arc::clone(&heard);
    handlers
        .expose("exp.event", move |(_, _): (String, Vec<u8>)| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let script = rigwire_std::Client::connect_with(
        &format!("{clients}#data"),
        client_config(MIB, 4 * MIB),
        handlers,
    )
    .unwrap();
    let started = Instant::now();
    let before = resident_bytes();
    let reported: u32 = script
        .call_timeout("report", &1536u32, Duration::from_secs(60))
        .unwrap();
    assert_eq!(reported, 1536);
    let grown = resident_bytes().saturating_sub(before);
    // The relay dropped what the deaf follower could not take, instead of
    // queueing 96 MiB for it (or stopping its service).
    assert!(relay.dropped_notifies() > 0);
    assert!(grown < 48 * MIB, "memory grew by {} MiB", grown / MIB);
    // The reading follower heard the service, as soon as it reported.
    let until = Instant::now() + Duration::from_secs(10);
    while heard.load(std::sync::atomic::Ordering::Relaxed) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(heard.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert!(started.elapsed() < Duration::from_secs(70));
    smol::block_on(relay.shutdown(Duration::from_millis(100)));
}

/// Threads of this process named `name` now.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == name)
        .count()
}

/// A blocking client closed while its output to a deaf peer is stuck, on a
/// connection with no timer (keepalive off), ends its threads by its close
/// linger. They waited on the socket for good: the close set the linger,
/// but nothing woke a thread blocked in the system's poll to run it.
#[test]
fn a_std_client_closed_while_stuck_on_a_deaf_peer_ends_its_threads() {
    let _one = serial();
    let deaf = DeafServer::start(ProtocolConfig::named("deaf"));
    let mut config = client_config(MIB, 64 * MIB);
    config.protocol.keepalive = None;
    // The tests before this one left writers ending on their own deaf
    // peers' sockets (by their close linger, or at worst when those peers
    // let go, 30 s on): once they are gone, every writer is this client's.
    let writers = || threads_named("rigwire-writer");
    let until = Instant::now() + Duration::from_secs(40);
    while writers() > 0 {
        assert!(Instant::now() < until, "earlier tests' writers stayed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let client = rigwire_std::Client::connect(&deaf.url, config).unwrap();
    // Far more than the kernel's buffers hold: the writer waits on the socket.
    let args = Payload::new(rigwire_core::Codec::Postcard, vec![0u8; 512 * 1024]);
    let calls: Vec<_> = (0..64)
        .map(|_| client.start_raw("echo", args.clone(), None).unwrap())
        .collect();
    let until = Instant::now() + BOUND;
    while writers() == 0 {
        assert!(Instant::now() < until, "the output never blocked");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200)); // it waits on the socket
    client.close();
    drop(calls);
    let until = Instant::now() + Duration::from_secs(20);
    while writers() > 0 {
        assert!(
            Instant::now() < until,
            "the writer thread still waits on the deaf peer's socket"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
