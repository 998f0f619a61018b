//! A websocket peer whose last frames arrive in the same read as its Close:
//! both runtimes deliver those frames, then end the connection (they once
//! disagreed: one dropped them).

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
    let addr = url
        .strip_prefix("ws://")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut upgrade = Handshake::client(url, 1 << 20).unwrap();
    let mut input: Vec<u8> = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    let mut codec: WsCodec = loop {
        assert!(Instant::now() < until, "the upgrade did not complete");
        if let Some(codec) = upgrade.feed(&input).unwrap() {
            break codec;
        }
        stream.write_all(&upgrade.take_output()).unwrap();
        input.clear();
        if let Ok(n) = stream.read(&mut buf) {
            input.extend_from_slice(&buf[..n]);
        }
    };
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
