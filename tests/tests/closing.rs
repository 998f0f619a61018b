//! Spec §6.7: a side that closes does so gracefully (its last frames out,
//! its writing side shut, the peer's input read to its end), so a peer that
//! had already sent more, and goes on sending, reads why it was refused and
//! meets no reset, in both runtimes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_core::message::Hello;
use rigwire_core::{Codec, Config, Message, RejectCode};

fn framed(m: &Message) -> Vec<u8> {
    let body = m.encode();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// Connects to a server whose one connection slot is taken, sends a Hello
/// and a Call without reading anything, waits until the server has surely
/// refused and closed, then reads: the server's Hello and its Reject must
/// both arrive, and then the end of the stream (not a reset).
fn refused_peer_reads_why(url: &str) {
    let mut stream = TcpStream::connect(url.trim_start_matches("tcp://")).unwrap();
    let hello = Message::Hello(Hello {
        magic: *b"RGWR",
        min_version: 1,
        max_version: 1,
        name: "late".into(),
        nonce: [3; 32],
        max_frame: 1 << 20,
        max_incoming_calls: 8,
        secret_required: false,
    });
    let call = Message::Call {
        id: 1,
        method: "add".into(),
        deadline_us: None,
        codec: Codec::Json,
        args: Bytes::from_static(b"[1,2]"),
    };
    stream
        .write_all(&[framed(&hello), framed(&call)].concat())
        .unwrap();
    // More keeps coming while the server refuses and closes: a plain close
    // with input unread, or arriving after it, would answer with a reset,
    // which destroys the Reject before this side reads it.
    // The server reads (and discards) it until this side ends, within its
    // close linger, so none of these writes meets a reset.
    let junk = vec![0u8; 16 * 1024];
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        let wrote = stream.write_all(&junk);
        assert!(wrote.is_ok(), "reset while still sending: {wrote:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut bytes = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    let ending = loop {
        assert!(Instant::now() < until, "the server never closed");
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    let mut said = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        said.push(Message::decode(&Bytes::copy_from_slice(&rest[4..4 + len])).unwrap());
        rest = &rest[4 + len..];
    }
    assert!(
        matches!(
            said.get(1),
            Some(Message::Reject {
                code: RejectCode::ConnectionLimit,
                ..
            })
        ),
        "{said:?} then {ending:?}"
    );
    assert!(
        ending.is_ok(),
        "a reset instead of the end of the stream: {ending:?}"
    );
}

fn one_slot() -> Config {
    let mut config = Config::named("rig");
    config.max_connections = 1;
    config
}

/// Waits until the holder's connection counts against the limit (its
/// `on_connect` hook runs after the server admitted it).
fn wait_admitted(flag: &AtomicBool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !flag.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < until,
            "the first client was never admitted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn std_a_refused_peer_that_already_sent_reads_the_reject() {
    let admitted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&admitted);
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", one_slot()).unwrap();
    server.on_connect(move |_| flag.store(true, Ordering::SeqCst));
    let server = server.start().unwrap();
    let _holder =
        rigwire_std::Client::connect(&server.local_url(), Config::named("first")).unwrap();
    wait_admitted(&admitted);
    refused_peer_reads_why(&server.local_url());
}

#[test]
fn smol_a_refused_peer_that_already_sent_reads_the_reject() {
    let admitted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&admitted);
    let mut server = rigwire_smol::Server::bind("tcp://127.0.0.1:0", one_slot()).unwrap();
    server.on_connect(move |_| flag.store(true, Ordering::SeqCst));
    let server = server.start().unwrap();
    let url = server.local_url();
    let _holder =
        smol::block_on(rigwire_smol::Client::connect(&url, Config::named("first"))).unwrap();
    wait_admitted(&admitted);
    refused_peer_reads_why(&url);
}

/// A notify sent just before a close is handled, on both servers: the
/// notify and the goodbye arrive in one read, and the goodbye must not
/// drop a handler that has not started yet.
#[test]
fn a_notify_sent_just_before_closing_is_handled_by_both_servers() {
    use std::sync::atomic::AtomicUsize;
    let heard = Arc::new(AtomicUsize::new(0));
    let mut blocking =
        rigwire_std::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
    let seen = Arc::clone(&heard);
    blocking
        .expose("trialDone", move |_: u32| {
            seen.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    let blocking = blocking.start().unwrap();
    let mut asynchronous =
        rigwire_smol::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
    let seen = Arc::clone(&heard);
    asynchronous
        .expose("trialDone", move |_: u32| {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
        .unwrap();
    let asynchronous = asynchronous.start().unwrap();
    let rounds = 20;
    for url in [blocking.local_url(), asynchronous.local_url()] {
        for i in 0..rounds {
            let client = rigwire_std::Client::connect(&url, Config::named("script")).unwrap();
            client.notify("trialDone", &i).unwrap();
            client.close();
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    while heard.load(Ordering::SeqCst) < 2 * rounds as usize && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(heard.load(Ordering::SeqCst), 2 * rounds as usize);
    blocking.shutdown(Duration::from_secs(1));
    smol::block_on(asynchronous.shutdown(Duration::from_secs(1)));
}
