//! A websocket peer whose last frames arrive in the same read as its Close:
//! both runtimes deliver those frames, then end the connection (they once
//! disagreed: one dropped them).

#[path = "common/raw.rs"]
mod raw;
#[path = "common/raw_ws.rs"]
mod raw_ws;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_core::Config;
use rigwire_core::{Codec, Connection, Framing, Payload, Registry, Role};
use rigwire_ws::{Handshake, WsCodec};

/// A masked, empty websocket Close frame, as a client sends it.
const CLOSE: [u8; 6] = [0x88, 0x80, 0, 0, 0, 0];

/// Upgrades, runs the rigwire handshake, then sends one notify to `mark`
/// and a Close in one write.
fn notify_then_close(url: &str) {
    let (mut stream, mut codec) = upgraded(url);
    let mut buf = vec![0u8; 64 * 1024];
    let until = Instant::now() + Duration::from_secs(5);
    let mut conn = Connection::new(
        rigwire_core::ProtocolConfig::named("closer"),
        Registry::new(),
        Role::Client,
        Framing::Message,
        [5; 32],
        Instant::now(),
    )
    .unwrap();
    let mut frames = codec.decode(&[]).unwrap().frames;
    while !conn.is_established() {
        assert!(Instant::now() < until, "the handshake did not complete");
        for frame in frames.drain(..) {
            conn.handle_frame(frame, Instant::now());
        }
        while let Some(frame) = conn.poll_transmit() {
            codec.encode(frame).unwrap();
        }
        stream.write_all(&codec.take_output()).unwrap();
        if let Ok(n) = stream.read(&mut buf) {
            frames = codec.decode(&buf[..n]).unwrap().frames;
        }
    }
    let args = Payload::new(Codec::Postcard, Vec::new());
    conn.notify("mark", args, Instant::now()).unwrap();
    while let Some(frame) = conn.poll_transmit() {
        codec.encode(frame).unwrap();
    }
    let mut last = codec.take_output();
    last.extend_from_slice(&CLOSE);
    stream.write_all(&last).unwrap();
}

fn wait_for(flag: &AtomicBool) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn std_delivers_the_frames_that_came_with_a_close() {
    let marked = Arc::new(AtomicBool::new(false));
    let mut server =
        rigwire_std::Server::bind("ws://127.0.0.1:0/rig", Config::named("rig")).unwrap();
    let flag = Arc::clone(&marked);
    server
        .expose("mark", move |(): ()| {
            flag.store(true, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    let running = server.start().unwrap();
    notify_then_close(&running.local_url());
    assert!(wait_for(&marked), "the notify before the close was dropped");
    running.shutdown(Duration::from_secs(1));
}

#[test]
fn smol_delivers_the_frames_that_came_with_a_close() {
    let marked = Arc::new(AtomicBool::new(false));
    let mut server =
        rigwire_smol::Server::bind("ws://127.0.0.1:0/rig", Config::named("rig")).unwrap();
    let flag = Arc::clone(&marked);
    server
        .expose("mark", move |(): ()| {
            flag.store(true, Ordering::SeqCst);
            async { Ok(()) }
        })
        .unwrap();
    let running = server.start().unwrap();
    notify_then_close(&running.local_url());
    assert!(wait_for(&marked), "the notify before the close was dropped");
    smol::block_on(running.shutdown(Duration::from_secs(1)));
}

/// Upgrades to websocket and returns the socket and its codec, with
/// nothing else sent.
fn upgraded(url: &str) -> (TcpStream, WsCodec) {
    raw_ws::try_ws_upgrade(url).unwrap()
}

/// The header of a masked binary websocket message announcing 8 MiB, and a
/// little of its body: what a stranger sends to make a server buffer.
fn huge_message_start() -> Vec<u8> {
    let mut bytes = vec![0x82, 0xFF];
    bytes.extend_from_slice(&(8u64 << 20).to_be_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4]);
    bytes.extend_from_slice(&[0u8; 1024]);
    bytes
}

/// A server whose own handshake timeout is long (30 s), so that a prompt
/// close can only come from the pre-authentication limit.
fn patient() -> Config {
    let mut config = Config::named("rig");
    config.protocol.handshake_timeout = Duration::from_secs(30);
    config
}

#[test]
fn before_authentication_a_large_websocket_message_is_refused_at_its_header() {
    let std_rig = rigwire_std::Server::bind("ws://127.0.0.1:0/rig", patient())
        .unwrap()
        .start()
        .unwrap();
    let smol_rig = rigwire_smol::Server::bind("ws://127.0.0.1:0/rig", patient())
        .unwrap()
        .start()
        .unwrap();
    for url in [std_rig.local_url(), smol_rig.local_url()] {
        let (mut stream, _) = upgraded(&url);
        stream.write_all(&huge_message_start()).unwrap();
        assert!(
            raw::closed_within(&mut stream, Duration::from_secs(5)),
            "{url}: the server waited for the rest of an 8 MiB message"
        );
    }
    std_rig.shutdown(Duration::ZERO);
    smol::block_on(smol_rig.shutdown(Duration::ZERO));
}

#[test]
fn a_websocket_upgrade_that_trickles_ends_at_its_deadline() {
    let mut config = Config::named("rig");
    config.protocol.handshake_timeout = Duration::from_millis(500);
    let rig = rigwire_std::Server::bind("ws://127.0.0.1:0/rig", config)
        .unwrap()
        .start()
        .unwrap();
    let url = rig.local_url();
    let addr = raw::ws_addr(&url);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let request = Handshake::client(&url, 1 << 20).unwrap().take_output();
    let started = Instant::now();
    let mut closed = false;
    // One byte every 100 ms: each read would once have restarted the timeout.
    for byte in request.iter().take(60) {
        if stream.write_all(&[*byte]).is_err()
            || raw::closed_within(&mut stream, Duration::from_millis(100))
        {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the trickling upgrade was still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    rig.shutdown(Duration::ZERO);
}
