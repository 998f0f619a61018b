//! Hostile clients against a running server: each gets a clear rejection, and
//! the well-behaved client beside them keeps being served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rigwire_std::core::message::Hello;
use rigwire_std::core::{Message, RejectCode};
use rigwire_std::{Client, Config};

fn hostile_server(url: &str) -> rigwire_std::RunningServer {
    let mut config = cfg("rig");
    config.protocol.handshake_timeout = Duration::from_millis(300);
    rig(url, config, Probe::default())
}

/// Sends `bytes` on a raw connection and returns every frame the server sent
/// back before closing.
fn raw_exchange(url: &str, bytes: &[u8]) -> Vec<Message> {
    let mut received = Vec::new();
    let addr = url.split("://").nth(1).unwrap();
    if url.starts_with("tcp://") {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let _ = s.read_to_end(&mut received);
    } else {
        let mut s = UnixStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let _ = s.read_to_end(&mut received);
    }
    let mut frames = Vec::new();
    let mut rest = &received[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        if rest.len() < 4 + len {
            break;
        }
        frames.push(Message::decode(&Bytes::copy_from_slice(&rest[4..4 + len])).unwrap());
        rest = &rest[4 + len..];
    }
    frames
}

fn reject_of(frames: &[Message]) -> (RejectCode, String) {
    frames
        .iter()
        .find_map(|m| match m {
            Message::Reject { code, reason } => Some((*code, reason.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Reject among {frames:?}"))
}

fn framed(msg: &Message) -> Vec<u8> {
    let body = msg.encode();
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

#[test]
fn hostile_clients_are_rejected_and_good_clients_keep_working() {
    let socket = std::env::temp_dir().join(format!("rigwire-hostile-{}.sock", std::process::id()));
    for url in [
        "tcp://127.0.0.1:0".to_string(),
        format!("unix://{}", socket.display()),
    ] {
        let server = hostile_server(&url);
        let url = server.local_url();
        let good = Client::connect(&url, cfg("good")).unwrap();
        let mut round = 0i64;
        let mut check_good = || {
            round += 1;
            assert_eq!(good.call::<_, i64>("add", &(round, 1)).unwrap(), round + 1);
        };

        // Garbage that frames but does not decode.
        let (code, reason) = reject_of(&raw_exchange(&url, b"\x00\x00\x00\x05hello"));
        assert_eq!(code, RejectCode::Protocol);
        assert!(reason.contains("undecodable"), "{reason}");
        check_good();

        // Someone pointing a web browser at the rig.
        let (code, reason) = reject_of(&raw_exchange(&url, b"GET / HTTP/1.1\r\nHost: rig\r\n\r\n"));
        assert_eq!(code, RejectCode::Protocol);
        assert!(reason.contains("it is an HTTP request"), "{reason}");
        check_good();

        // A length prefix announcing 4 GiB.
        let (_, reason) = reject_of(&raw_exchange(&url, &[0xff, 0xff, 0xff, 0xff]));
        assert!(
            reason.contains("exceeds the pre-authentication limit of 4096"),
            "{reason}"
        );
        check_good();

        // A handshake that never finishes.
        let (code, _) = reject_of(&raw_exchange(&url, b""));
        assert_eq!(code, RejectCode::HandshakeTimeout);
        check_good();

        // A peer from the future.
        let future = Message::Hello(Hello {
            magic: *b"RGWR",
            min_version: 2,
            max_version: 3,
            name: "future".into(),
            nonce: [1; 32],
            max_frame: 1 << 20,
            max_incoming_calls: 8,
            secret_required: true,
        });
        let (code, reason) = reject_of(&raw_exchange(&url, &framed(&future)));
        assert_eq!(code, RejectCode::VersionMismatch);
        assert!(reason.contains("v2..=v3"), "{reason}");
        check_good();

        // A wrong secret, through a real client.
        let wrong = Client::connect(
            &url,
            Config::named("x")
                .secret("guess-guess-guess-guess")
                .unwrap(),
        )
        .unwrap_err();
        assert!(
            matches!(wrong, rigwire_std::Error::AuthFailed(_)),
            "{wrong}"
        );
        check_good();
        server.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn garbage_instead_of_a_websocket_upgrade_is_refused() {
    let server = hostile_server("ws://127.0.0.1:0/rig");
    let url = server.local_url();
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"\x00\x00\x00\x05hello\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    // The server closes without speaking rigwire to it; the good client is fine.
    let good = Client::connect(&url, cfg("good")).unwrap();
    assert_eq!(good.call::<_, i64>("add", &(1, 1)).unwrap(), 2);
    // A wrong path gets a 404 and a reason.
    let wrong_path = url.replace("/rig", "/other");
    let err = Client::connect(&wrong_path, cfg("x")).unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    server.shutdown(Duration::from_secs(1));
}
