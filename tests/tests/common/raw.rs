//! Peers that misbehave on purpose, over raw loopback sockets and the core's
//! own `Connection`: they complete the handshake honestly, then stop reading.
//! Also the process's CPU time and resident memory, read from `/proc`, for
//! tests that must tell a waiting task from a spinning one.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rigwire_core::{Connection, Framing, Payload, ProtocolConfig, Registry, Role};

/// The `host:port` of a `ws://host:port/path` URL.
pub fn ws_addr(url: &str) -> &str {
    let rest = url.strip_prefix("ws://").expect("a ws:// URL");
    rest.split('/').next().unwrap_or(rest)
}

/// The longest a deaf peer holds its sockets.
pub const HOLD: Duration = Duration::from_secs(30);

/// Drives `conn` over `stream` until the handshake completes.
///
/// # Panics
/// If it does not within 5 s: a test helper.
pub fn handshake(stream: &mut TcpStream, conn: &mut Connection) {
    if let Err(e) = try_handshake(stream, conn) {
        panic!("{e}");
    }
}

/// As [`handshake`], saying why it failed instead of panicking.
pub fn try_handshake(stream: &mut TcpStream, conn: &mut Connection) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let until = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 64 * 1024];
    let io = |e: std::io::Error| format!("handshake: {e}");
    while !conn.is_established() {
        if Instant::now() > until {
            return Err("handshake did not complete".into());
        }
        if conn.is_closed() {
            return Err(format!("handshake failed: {:?}", conn.error()));
        }
        while let Some(chunk) = conn.poll_transmit() {
            stream.write_all(&chunk).map_err(io)?;
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err("the peer closed during the handshake".into()),
            Ok(n) => conn.handle_input(&buf[..n], Instant::now()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(io(e)),
        }
    }
    while let Some(chunk) = conn.poll_transmit() {
        stream.write_all(&chunk).map_err(io)?;
    }
    Ok(())
}

/// A server that completes the handshake with every client and then never
/// reads or writes again, holding each socket until dropped (at most
/// [`HOLD`]).
pub struct DeafServer {
    /// Where to dial it.
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DeafServer {
    /// Listens on loopback; `config` is the rigwire side it presents.
    pub fn start(config: ProtocolConfig) -> DeafServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut held = Vec::new();
            while !stopping.load(Ordering::SeqCst) && started.elapsed() < HOLD {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let mut conn = Connection::new(
                            config.clone(),
                            Registry::new(),
                            Role::Server,
                            Framing::Stream,
                            [9; 32],
                            Instant::now(),
                        )
                        .unwrap();
                        handshake(&mut stream, &mut conn);
                        held.push((stream, conn)); // never read again
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        DeafServer {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DeafServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Dials `addr` (host:port, plain TCP) and completes the handshake as a
/// client exposing nothing.
fn dial(addr: &str, config: ProtocolConfig) -> (TcpStream, Connection) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut conn = Connection::new(
        config,
        Registry::new(),
        Role::Client,
        Framing::Stream,
        [7; 32],
        Instant::now(),
    )
    .unwrap();
    handshake(&mut stream, &mut conn);
    (stream, conn)
}

/// A service that dials the relay at `addr` (host:port, plain TCP),
/// registers `name`, and then never reads or writes again. Returns the
/// socket; the relay sees a live, registered service that does not read.
pub fn deaf_service(addr: &str, config: ProtocolConfig, name: &str) -> TcpStream {
    let (mut stream, mut conn) = dial(addr, config);
    let names = Payload::postcard(&vec![name.to_owned()]).unwrap();
    let id = conn
        .call(
            rigwire_core::relay::REGISTER_METHOD,
            names,
            None,
            Instant::now(),
        )
        .unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        assert!(
            Instant::now() < until,
            "the relay did not answer the registration"
        );
        while let Some(chunk) = conn.poll_transmit() {
            stream.write_all(&chunk).unwrap();
        }
        while let Some(event) = conn.poll_event() {
            if let rigwire_core::Event::Response { id: done, result } = event {
                assert_eq!(done, id);
                result.expect("registered");
                return stream; // never read again
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => panic!("the relay closed during registration"),
            Ok(n) => conn.handle_input(&buf[..n], Instant::now()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("registration read: {e}"),
        }
    }
}

/// A client of the relay at `addr` (host:port, plain TCP) that follows the
/// service `name` (`rigwire.follow`) and then never reads again. Returns
/// the socket.
pub fn deaf_follower(addr: &str, config: ProtocolConfig, name: &str) -> TcpStream {
    let (mut stream, mut conn) = dial(addr, config);
    // Said outright: a client that exposes nothing does not follow.
    let name = rigwire_core::Payload::json(&name).unwrap();
    conn.notify(rigwire_core::relay::FOLLOW_METHOD, name, Instant::now())
        .unwrap();
    while let Some(chunk) = conn.poll_transmit() {
        stream.write_all(&chunk).unwrap();
    }
    stream
}

/// What [`flood_without_reading`] left behind.
pub struct Flood {
    /// Bytes the server took before it stopped reading.
    pub sent: usize,
    /// The socket, still open (the server sees a peer that does not read).
    pub stream: TcpStream,
}

/// Connects to `addr` (host:port), completes the handshake with `config`,
/// then sends calls to `method` with `len` bytes of arguments without ever
/// reading an answer, until the peer has taken no byte for a second or
/// `max_bytes` are sent.
pub fn flood_without_reading(
    addr: &str,
    config: ProtocolConfig,
    method: &str,
    len: usize,
    max_bytes: usize,
) -> Flood {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut conn = flooder(config, Framing::Stream);
    if try_handshake(&mut stream, &mut conn).is_err() {
        // Refused or evicted before it could start: nothing sent.
        return Flood { sent: 0, stream };
    }
    flood(stream, conn, |c| c.to_vec(), method, len, max_bytes)
}

/// A client connection that may make any number of calls and sends no
/// keepalives, for [`flood`].
pub fn flooder(config: ProtocolConfig, framing: Framing) -> Connection {
    let config = ProtocolConfig {
        max_outgoing_calls: u32::MAX,
        keepalive: None,
        ..config
    };
    Connection::new(
        config,
        Registry::new(),
        Role::Client,
        framing,
        [8; 32],
        Instant::now(),
    )
    .unwrap()
}

/// Sends calls on `conn`, established over `stream`, each chunk of its
/// output passed through `frame` (the transport's framing), until the peer
/// has taken no byte for a second or `max_bytes` are sent.
pub fn flood(
    mut stream: TcpStream,
    mut conn: Connection,
    mut frame: impl FnMut(bytes::Bytes) -> Vec<u8>,
    method: &str,
    len: usize,
    max_bytes: usize,
) -> Flood {
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    // A valid `Vec<u8>`, so typed echo handlers answer it in full.
    let args = Payload::postcard(&vec![7u8; len]).unwrap();
    let mut sent = 0;
    'flood: while sent < max_bytes {
        conn.call(method, args.clone(), None, Instant::now())
            .unwrap();
        while let Some(chunk) = conn.poll_transmit() {
            let chunk = frame(chunk);
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                match stream.write(rest) {
                    Ok(n) => {
                        sent += n;
                        rest = &rest[n..];
                    }
                    // The peer stopped taking bytes, or closed on us.
                    Err(_) => break 'flood,
                }
            }
        }
    }
    Flood { sent, stream }
}

/// CPU time this process has used, user and system.
pub fn cpu_time() -> Duration {
    cpu_time_in("self")
}

/// CPU time process `pid` (a child's) has used, user and system.
pub fn cpu_time_of(pid: u32) -> Duration {
    cpu_time_in(&pid.to_string())
}

/// CPU time of the process `/proc/{process}` describes.
fn cpu_time_in(process: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Resident memory of this process.
pub fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Starts a new high-water mark of this process's resident memory (Linux
/// `clear_refs` 5). False if the kernel does not allow it.
pub fn reset_peak_resident() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The most resident memory this process has held since it started or
/// since [`reset_peak_resident`] (`VmHWM`), in bytes.
pub fn peak_resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Whether the peer closes `stream` within `within` (reads until end of
/// stream or an error, discarding what it sends).
pub fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let until = Instant::now() + within;
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}
