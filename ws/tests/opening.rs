//! The byte layers opened in memory, both ends against each other: TLS
//! with each way of trusting, websocket over TLS, and every mismatch named.

use std::time::Instant;

use bytes::Bytes;
use rigwire_core::{TlsProblem, TlsSettings, Trust, Url};
use rigwire_ws::tls::{self_signed, SelfSigned};
use rigwire_ws::{ClientTls, Opening, OpeningError, ServerTls, Sink, Violation, Wire};

fn identity(dir: &std::path::Path, cert: &SelfSigned) -> ServerTls {
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, &cert.cert_pem).unwrap();
    std::fs::write(&k, &cert.key_pem).unwrap();
    ServerTls::from_settings(&TlsSettings {
        cert: Some(c),
        key: Some(k),
        ..TlsSettings::default()
    })
    .unwrap()
}

fn pinned(pin: &str) -> ClientTls {
    ClientTls::from_settings(&TlsSettings {
        trust: Trust::Pin(pin.to_owned()),
        ..TlsSettings::default()
    })
    .unwrap()
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rigwire-ws-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Moves bytes between the two openings until both hand back a wire or one fails.
fn open(
    mut client: Opening,
    mut server: Opening,
) -> (Result<Wire, OpeningError>, Result<Wire, OpeningError>) {
    let (mut c, mut s) = (None, None);
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        if c.is_none() {
            match client.feed(&std::mem::take(&mut to_client)) {
                Ok(Some(w)) => c = Some(Ok(w)),
                Ok(None) => {}
                Err(e) => c = Some(Err(e)),
            }
            to_server.extend(client.take_output());
        }
        if s.is_none() {
            match server.feed(&std::mem::take(&mut to_server)) {
                Ok(Some(w)) => s = Some(Ok(w)),
                Ok(None) => {}
                Err(e) => s = Some(Err(e)),
            }
            to_client.extend(server.take_output());
        }
        if c.is_some() && s.is_some() {
            break;
        }
        // A side that failed has said its last words; the other hears them.
        if matches!(c, Some(Err(_))) && to_server.is_empty() && s.is_none() {
            break;
        }
        if matches!(s, Some(Err(_))) && to_client.is_empty() && c.is_none() {
            break;
        }
    }
    let pending = || Err(OpeningError::Upgrade("still opening".into()));
    (c.unwrap_or_else(pending), s.unwrap_or_else(pending))
}

#[derive(Default)]
struct Got {
    bytes: Vec<u8>,
    frames: Vec<Bytes>,
    tls: Option<TlsProblem>,
}

impl Sink for Got {
    fn authenticated(&mut self) -> bool {
        true
    }
    fn bytes(&mut self, bytes: &[u8], _: Instant) {
        self.bytes.extend_from_slice(bytes);
    }
    fn frame(&mut self, frame: Bytes, _: Instant) {
        self.frames.push(frame);
    }
    fn violation(&mut self, v: Violation, _: Instant) {
        panic!("violation {v}");
    }
    fn closed(&mut self, reason: &str, _: Instant) {
        panic!("closed: {reason}");
    }
    fn tls_failed(&mut self, problem: TlsProblem, _: Instant) {
        self.tls = Some(problem);
    }
}

/// Encodes `frames` on one wire and feeds them to the other.
fn cross(from: &mut Wire, to: &mut Wire, frames: &[&'static [u8]]) -> Got {
    struct Out(std::collections::VecDeque<Bytes>, bool);
    impl rigwire_ws::Outbox for Out {
        fn output(&mut self) -> &std::collections::VecDeque<Bytes> {
            &self.0
        }
        fn handle_written(&mut self, mut n: usize) {
            while n > 0 {
                let f = self.0.pop_front().unwrap();
                n -= f.len();
            }
        }
        fn handle_write_failed(&mut self, reason: &str) {
            panic!("{reason}");
        }
        fn is_closed(&self) -> bool {
            self.1
        }
    }
    let mut out = Out(
        frames.iter().map(|f| Bytes::from_static(f)).collect(),
        false,
    );
    let mut sent = Vec::new();
    from.flush(&mut out, |slices| {
        for s in slices {
            sent.extend_from_slice(s);
        }
        Ok(slices.iter().map(|s| s.len()).sum())
    });
    assert!(out.0.is_empty(), "everything counted as written");
    let mut got = Got::default();
    to.start(&mut got, Instant::now());
    to.feed(&mut got, Ok(sent.len()), &sent, Instant::now());
    got
}

#[test]
fn tls_and_wss_carry_frames_both_ways_with_a_pinned_self_signed_certificate() {
    let dir = tempdir("pin");
    let cert = self_signed(&["rig-1".into()]).unwrap();
    let server_tls = identity(&dir, &cert);
    assert_eq!(server_tls.fingerprint(), cert.fingerprint);
    for url in ["tls://127.0.0.1:1", "wss://127.0.0.1:1/data"] {
        let url = Url::parse(url).unwrap();
        let client = Opening::client(&url, Some(&pinned(&cert.fingerprint)), 1 << 20).unwrap();
        let server = Opening::server(&url, Some(&server_tls), 1 << 20).unwrap();
        let (c, s) = open(client, server);
        let (mut c, mut s) = (c.unwrap(), s.unwrap());
        assert!(c.is_tls() && s.is_tls());
        assert_eq!(c.is_ws(), url.ws_path().is_some());
        let got = cross(&mut c, &mut s, &[b"hello", b"rig"]);
        let back = cross(&mut s, &mut c, &[b"answer"]);
        if c.is_ws() {
            assert_eq!(got.frames, [&b"hello"[..], b"rig"]);
            assert_eq!(back.frames, [&b"answer"[..]]);
        } else {
            assert_eq!(got.bytes, b"hellorig");
            assert_eq!(back.bytes, b"answer");
        }
    }
}

#[test]
fn a_wrong_pin_names_both_fingerprints() {
    let dir = tempdir("wrong-pin");
    let served = self_signed(&["rig-1".into()]).unwrap();
    let other = self_signed(&["rig-2".into()]).unwrap();
    let url = Url::parse("tls://127.0.0.1:1").unwrap();
    let client = Opening::client(&url, Some(&pinned(&other.fingerprint)), 1 << 20).unwrap();
    let server = Opening::server(&url, Some(&identity(&dir, &served)), 1 << 20).unwrap();
    let (c, _) = open(client, server);
    assert_eq!(
        c.unwrap_err(),
        OpeningError::Tls(TlsProblem::WrongPin {
            expected: other.fingerprint.clone(),
            presented: served.fingerprint.clone(),
        })
    );
}

#[test]
fn each_side_says_which_one_expected_tls() {
    let dir = tempdir("mismatch");
    let cert = self_signed(&["rig-1".into()]).unwrap();
    let server_tls = identity(&dir, &cert);
    let pin = pinned(&cert.fingerprint);
    // A TLS client against a plain websocket server, and the reverse.
    let (plain, tls) = (
        Url::parse("ws://127.0.0.1:1/data").unwrap(),
        Url::parse("wss://127.0.0.1:1/data").unwrap(),
    );
    let (c, s) = open(
        Opening::client(&tls, Some(&pin), 1 << 20).unwrap(),
        Opening::server(&plain, None, 1 << 20).unwrap(),
    );
    assert_eq!(
        c.unwrap_err(),
        OpeningError::Tls(TlsProblem::ServerIsPlain("ws://127.0.0.1:1/data".into()))
    );
    assert!(matches!(
        s.unwrap_err(),
        OpeningError::Tls(TlsProblem::ClientSpeaksTls(_))
    ));
    let (c, s) = open(
        Opening::client(&plain, None, 1 << 20).unwrap(),
        Opening::server(&tls, Some(&server_tls), 1 << 20).unwrap(),
    );
    assert!(matches!(
        s.unwrap_err(),
        OpeningError::Tls(TlsProblem::ClientIsPlain(_))
    ));
    assert_eq!(
        c.unwrap_err(),
        OpeningError::Tls(TlsProblem::ServerExpectsTls(
            "wss://127.0.0.1:1/data".into()
        ))
    );
    // Plain tcp opens at once; its wire tells a TLS answer from rigwire.
    let tcp = Url::parse("tcp://127.0.0.1:1").unwrap();
    let mut client = Opening::client(&tcp, None, 1 << 20).unwrap();
    assert!(client.is_plain());
    let mut wire = client.feed(&[]).unwrap().expect("nothing to open");
    let mut server = Opening::server(
        &Url::parse("tls://127.0.0.1:1").unwrap(),
        Some(&server_tls),
        1 << 20,
    )
    .unwrap();
    assert!(server.feed(b"\0\0\0\x10rigwire hello...").is_err());
    let alert = server.take_output();
    assert!(
        !alert.is_empty(),
        "the TLS server answers a plain client with an alert"
    );
    let mut got = Got::default();
    wire.feed(&mut got, Ok(alert.len()), &alert, Instant::now());
    assert_eq!(
        got.tls,
        Some(TlsProblem::ServerExpectsTls("tls://127.0.0.1:1".into()))
    );
}

#[test]
fn a_client_hello_that_arrives_a_byte_at_a_time_is_still_tls() {
    let dir = tempdir("trickle");
    let cert = self_signed(&["rig-1".into()]).unwrap();
    let url = Url::parse("tls://127.0.0.1:1").unwrap();
    let mut client = Opening::client(&url, Some(&pinned(&cert.fingerprint)), 1 << 20).unwrap();
    let mut server = Opening::server(&url, Some(&identity(&dir, &cert)), 1 << 20).unwrap();
    assert!(client.feed(&[]).unwrap().is_none());
    let hello = client.take_output();
    for byte in &hello[..hello.len() - 1] {
        let fed = server.feed(std::slice::from_ref(byte));
        assert!(
            matches!(fed, Ok(None)),
            "refused mid-hello: {:?}",
            fed.err()
        );
    }
    assert!(server.feed(&hello[hello.len() - 1..]).unwrap().is_none());
    assert!(
        !server.take_output().is_empty(),
        "the server answers the whole hello"
    );
}
