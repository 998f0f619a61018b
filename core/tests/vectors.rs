//! The byte-exact transcripts in `spec/vectors/`: two cores with fixed names,
//! nonces, secrets and virtual time must produce exactly these frames, under
//! both framings, and each must accept the other's (the expected events occur).
//!
//! `RIGWIRE_BLESS=1 cargo test -p rigwire-core --test vectors` rewrites the
//! files; review the diff like any other change to the wire format.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_core::{
    CallError, Codec, Connection, ErrorKind, Event, Framing, Message, Payload, ProtocolConfig,
    Registry, RemoteError, Role, Secret,
};

const SECRET: &str = "correct horse battery staple";

/// One frame on the wire: who sent it, and its body (no length prefix).
type Line = (Role, Vec<u8>);

struct Run {
    client: Connection,
    server: Connection,
    framing: Framing,
    now: Instant,
    lines: Vec<Line>,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
}

fn registry() -> Registry {
    let mut r = Registry::new();
    r.expose("add").unwrap();
    r.expose("fail").unwrap();
    r.expose("slow").unwrap();
    r.expose("log").unwrap();
    r.expose("echo").unwrap();
    r.expose("len").unwrap();
    r.expose("frame").unwrap();
    r
}

impl Run {
    fn new(framing: Framing, client_secret: Option<&str>, server_secret: Option<&str>) -> Run {
        let now = Instant::now();
        let cfg = |name: &str, secret: Option<&str>| ProtocolConfig {
            secret: secret.map(|s| Secret::new(s).unwrap()),
            ..ProtocolConfig::named(name)
        };
        let client = Connection::new(
            cfg("script", client_secret),
            Registry::new(),
            Role::Client,
            framing,
            [0x11; 32],
            now,
        )
        .unwrap();
        let server = Connection::new(
            cfg("rig", server_secret),
            registry(),
            Role::Server,
            framing,
            [0x22; 32],
            now,
        )
        .unwrap();
        let mut run = Run {
            client,
            server,
            framing,
            now,
            lines: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
        };
        run.exchange();
        run
    }

    /// Moves frames both ways (the client's first) until both are quiet; the
    /// server answers calls as the scenario's rig does.
    fn exchange(&mut self) {
        loop {
            let mut moved = false;
            for role in [Role::Client, Role::Server] {
                let (from, to) = match role {
                    Role::Client => (&mut self.client, &mut self.server),
                    Role::Server => (&mut self.server, &mut self.client),
                };
                let mut chunks = Vec::new();
                while let Some(chunk) = from.poll_transmit() {
                    chunks.push(chunk);
                }
                for frame in split_frames(self.framing, chunks) {
                    moved = true;
                    self.lines.push((role, frame.to_vec()));
                    match self.framing {
                        Framing::Stream => {
                            to.handle_input(&(frame.len() as u32).to_be_bytes(), self.now);
                            to.handle_input(&frame, self.now);
                        }
                        Framing::Message => to.handle_frame(frame, self.now),
                    }
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                if let Event::Call(call) = &e {
                    let result = match call.method.as_str() {
                        "add" => {
                            let (a, b): (i64, i64) = call.args.decode().unwrap();
                            Ok(Payload::encode_as(call.args.codec, &(a + b)).unwrap())
                        }
                        "echo" => Ok(call.args.clone()),
                        "len" => {
                            let data: Bytes = call.args.decode().unwrap();
                            Ok(
                                Payload::encode_result(call.args.codec, &(data.len() as u64))
                                    .unwrap(),
                            )
                        }
                        "frame" => Ok(Payload::encode_result(
                            call.args.codec,
                            &Bytes::from_static(&[0, 0xff, 0x7f, 0x80]),
                        )
                        .unwrap()),
                        "fail" => Err(RemoteError::new(ErrorKind::Handler, "motor stalled")
                            .with_detail("at rig.py:42")),
                        _ => continue,
                    };
                    self.server.reply(call.id, result).unwrap();
                    moved = true;
                }
                self.server_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }
}

fn split_frames(framing: Framing, chunks: Vec<Bytes>) -> Vec<Bytes> {
    match framing {
        Framing::Message => chunks,
        Framing::Stream => {
            let stream: Vec<u8> = chunks.concat();
            let mut frames = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                frames.push(Bytes::copy_from_slice(&rest[4..4 + len]));
                rest = &rest[4 + len..];
            }
            frames
        }
    }
}

fn connected(run: &Run) -> bool {
    run.client_events
        .iter()
        .any(|e| matches!(e, Event::Connected { .. }))
        && run
            .server_events
            .iter()
            .any(|e| matches!(e, Event::Connected { .. }))
}

/// A scenario: its file name, a description, and what it does and checks.
struct Scenario {
    name: &'static str,
    about: &'static str,
    play: fn(Framing) -> Run,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "handshake-plain",
            about: "Handshake without a secret. Client \"script\" (nonce 0x11 x 32) dials server \"rig\" (nonce 0x22 x 32); default limits.",
            play: |f| {
                let run = Run::new(f, None, None);
                assert!(connected(&run));
                run
            },
        },
        Scenario {
            name: "handshake-secret",
            about: "Handshake with the shared secret \"correct horse battery staple\" on both sides; same names and nonces as handshake-plain. The client sends Auth{HMAC-SHA256(secret, transcript)}; the server sends its own only once the client's has verified.",
            play: |f| {
                let run = Run::new(f, Some(SECRET), Some(SECRET));
                assert!(connected(&run));
                run
            },
        },
        Scenario {
            name: "auth-rejected",
            about: "The client holds the secret \"correct horse battery staple\", the server \"a wrong secret, long enough\": the client's proof fails to verify, so the server sends Reject{AuthFailed} and no proof of its own; both close with AuthFailed.",
            play: |f| {
                let run = Run::new(f, Some(SECRET), Some("a wrong secret, long enough"));
                assert!(!connected(&run));
                assert!(run.client.error().unwrap().to_string().starts_with("authentication failed"));
                assert!(run.server.error().unwrap().to_string().starts_with("authentication failed"));
                run
            },
        },
        Scenario {
            name: "call-reply",
            about: "After handshake-plain: call 1 add([1,2]) in JSON, answered 3; call 2 add((40,2)) in postcard with a 5 s deadline, answered 42.",
            play: |f| {
                let mut run = Run::new(f, None, None);
                let now = run.now;
                let a = run.client.call("add", Payload::json(&(1, 2)).unwrap(), None, now).unwrap();
                let b = run.client.call("add", Payload::postcard(&(40i64, 2i64)).unwrap(), Some(Duration::from_secs(5)), now).unwrap();
                run.exchange();
                let answers: Vec<_> = run.client_events.iter().filter_map(|e| match e {
                    Event::Response { id, result: Ok(p) } => Some((*id, p.codec, p.decode::<i64>().unwrap())),
                    _ => None,
                }).collect();
                assert_eq!(answers, vec![(a, Codec::Json, 3), (b, Codec::Postcard, 42)]);
                run
            },
        },
        Scenario {
            name: "error-reply",
            about: "After handshake-plain: call 1 fail() gets Error{Handler, \"motor stalled\", detail \"at rig.py:42\"}; call 2 to the unexposed \"nope\" gets Error{NoSuchMethod} from the core, which answers it before the application answers call 1.",
            play: |f| {
                let mut run = Run::new(f, None, None);
                let now = run.now;
                run.client.call("fail", Payload::json(&()).unwrap(), None, now).unwrap();
                run.client.call("nope", Payload::json(&()).unwrap(), None, now).unwrap();
                run.exchange();
                let kinds: Vec<_> = run.client_events.iter().filter_map(|e| match e {
                    Event::Response { result: Err(CallError::Remote(r)), .. } => Some(r.kind),
                    _ => None,
                }).collect();
                assert_eq!(kinds, vec![ErrorKind::NoSuchMethod, ErrorKind::Handler]);
                run
            },
        },
        Scenario {
            name: "notify",
            about: "After handshake-plain: notify log(\"trial 1 done\") in JSON; no answer.",
            play: |f| {
                let mut run = Run::new(f, None, None);
                let now = run.now;
                run.client.notify("log", Payload::json(&"trial 1 done").unwrap(), now).unwrap();
                run.exchange();
                assert!(run.server_events.iter().any(|e| matches!(e, Event::Notify(n) if n.method == "log")));
                run
            },
        },
        Scenario {
            name: "cancel",
            about: "After handshake-plain: call 1 slow() with a 5 s deadline, then Cancel{1}; the server's application is told the call is cancelled, and nothing is sent back (§6.4).",
            play: |f| {
                let mut run = Run::new(f, None, None);
                let now = run.now;
                let id = run.client.call("slow", Payload::json(&()).unwrap(), Some(Duration::from_secs(5)), now).unwrap();
                run.exchange();
                assert!(run.client.cancel(id));
                run.exchange();
                assert!(run.server_events.iter().any(|e| matches!(e, Event::Cancelled { id: got, .. } if *got == id)));
                run
            },
        },
        Scenario {
            name: "postcard-payloads",
            about: "After handshake-plain: echo() returns its arguments untouched. Postcard payloads of the types a caller needs (§2.1), one call each: (f64, f64) (1.5, -2.25), the demo rig's add; i64 -3 (zigzag); String \"rig-1\"; Option<u32> Some(300); Vec<u16> [1, 2]; BTreeMap<String, bool> {\"a\": true}; a struct {x: u8 = 7, y: bool = false}; the unit () of a method without arguments.",
            play: |f| {
                #[derive(serde::Serialize)]
                struct Point {
                    x: u8,
                    y: bool,
                }
                let mut run = Run::new(f, None, None);
                let now = run.now;
                let map: std::collections::BTreeMap<String, bool> = [("a".to_owned(), true)].into();
                let payloads = [
                    Payload::postcard(&(1.5f64, -2.25f64)).unwrap(),
                    Payload::postcard(&-3i64).unwrap(),
                    Payload::postcard("rig-1").unwrap(),
                    Payload::postcard(&Some(300u32)).unwrap(),
                    Payload::postcard(&vec![1u16, 2]).unwrap(),
                    Payload::postcard(&map).unwrap(),
                    Payload::postcard(&Point { x: 7, y: false }).unwrap(),
                    Payload::postcard(&()).unwrap(),
                ];
                for p in &payloads {
                    run.client.call("echo", p.clone(), None, now).unwrap();
                }
                run.exchange();
                let echoed: Vec<_> = run.client_events.iter().filter_map(|e| match e {
                    Event::Response { result: Ok(p), .. } => Some(p.bytes.clone()),
                    _ => None,
                }).collect();
                assert_eq!(echoed, payloads.iter().map(|p| p.bytes.clone()).collect::<Vec<_>>());
                run
            },
        },
        Scenario {
            name: "bytes-payloads",
            about: "After handshake-plain: the bytes codec (2, §4.1). Call 1 echo(bytes 00 ff 0a) in bytes is answered the same bytes in bytes; call 2 len(bytes 00 ff 0a) in bytes is answered 3 in JSON, its partner; call 3 frame() in JSON (null) is answered the byte string 00 ff 7f 80 in bytes.",
            play: |f| {
                let mut run = Run::new(f, None, None);
                let now = run.now;
                let data = Bytes::from_static(&[0, 0xff, 0x0a]);
                run.client.call("echo", Payload::bytes(data.clone()), None, now).unwrap();
                run.client.call("len", Payload::bytes(data.clone()), None, now).unwrap();
                run.client.call("frame", Payload::json(&()).unwrap(), None, now).unwrap();
                run.exchange();
                let answers: Vec<_> = run.client_events.iter().filter_map(|e| match e {
                    Event::Response { result: Ok(p), .. } => Some((p.codec, p.bytes.clone())),
                    _ => None,
                }).collect();
                assert_eq!(answers, vec![
                    (Codec::Bytes, data),
                    (Codec::Json, Bytes::from_static(b"3")),
                    (Codec::Bytes, Bytes::from_static(&[0, 0xff, 0x7f, 0x80])),
                ]);
                run
            },
        },
        Scenario {
            name: "ping-echo-goodbye",
            about: "After handshake-plain: Ping{1}/Pong{1}; Confirm{1, \"sync\"}/Echo{1, \"sync\"}; the client closes with Goodbye{\"done\"}.",
            play: |f| {
                let mut run = Run::new(f, None, None);
                let now = run.now;
                run.client.ping(now).unwrap();
                run.client.confirmed_send(Bytes::from_static(b"sync"), now).unwrap();
                run.exchange();
                run.client.close("done");
                run.exchange();
                assert!(run.client_events.iter().any(|e| matches!(e, Event::Confirmed { seq: 1 })));
                assert!(run.server_events.iter().any(|e| matches!(e, Event::Closed(_))));
                run
            },
        },
    ]
}

fn render(s: &Scenario, lines: &[Line]) -> String {
    let mut out = String::new();
    writeln!(out, "# {}", s.about).unwrap();
    writeln!(out, "# One frame per line: `C` sent by the client, `S` by the server, then the frame body in hex.").unwrap();
    writeln!(
        out,
        "# On byte streams each body is preceded by its length as 4 bytes big-endian."
    )
    .unwrap();
    for (role, body) in lines {
        let who = if *role == Role::Client { 'C' } else { 'S' };
        let hex: Vec<String> = body.iter().map(|b| format!("{b:02x}")).collect();
        let name = Message::decode(&Bytes::copy_from_slice(body))
            .unwrap()
            .type_name();
        writeln!(out, "{who} {} # {name}", hex.join("")).unwrap();
    }
    out
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

#[test]
fn the_core_produces_and_accepts_exactly_the_spec_vectors() {
    let bless = std::env::var_os("RIGWIRE_BLESS").is_some();
    for s in scenarios() {
        let stream = (s.play)(Framing::Stream);
        let message = (s.play)(Framing::Message);
        assert_eq!(
            stream.lines, message.lines,
            "{}: framings disagree on frame bodies",
            s.name
        );
        let rendered = render(&s, &stream.lines);
        let path = vectors_dir().join(format!("{}.txt", s.name));
        if bless {
            std::fs::write(&path, &rendered).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with RIGWIRE_BLESS=1 to create it",
                path.display()
            )
        });
        assert_eq!(
            rendered, expected,
            "{}: the core's bytes differ from the spec vector",
            s.name
        );
    }
}

#[test]
fn every_vector_frame_decodes_and_reencodes_to_the_same_bytes() {
    for s in scenarios() {
        let path = vectors_dir().join(format!("{}.txt", s.name));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let hex = line.split_whitespace().nth(1).unwrap();
            let body: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let msg = Message::decode(&Bytes::from(body.clone())).unwrap();
            assert_eq!(msg.encode(), body, "{}: {line}", s.name);
        }
    }
}

/// Recomputes the proofs in `handshake-secret.txt` from the spec's words alone
/// (not through the core's auth module): HMAC-SHA256 keyed by the secret over
/// "rigwire/1 auth" || role (1 client, 2 server) || u32be len || client Hello ||
/// u32be len || server Hello.
#[test]
fn the_vector_proofs_follow_the_spec_definition() {
    use hmac::{KeyInit, Mac};
    let text = std::fs::read_to_string(vectors_dir().join("handshake-secret.txt")).unwrap();
    let frames: Vec<Vec<u8>> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let hex = l.split_whitespace().nth(1).unwrap();
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect();
    let (client_hello, server_hello) = (&frames[0], &frames[1]);
    let proof = |role: u8| {
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(b"rigwire/1 auth");
        mac.update(&[role]);
        for hello in [client_hello, server_hello] {
            mac.update(&(hello.len() as u32).to_be_bytes());
            mac.update(hello);
        }
        let mut frame = vec![0x01];
        frame.extend_from_slice(&mac.finalize().into_bytes());
        frame
    };
    // The client proves itself first; the server only after verifying it.
    assert_eq!(frames[2], proof(1), "client's Auth");
    assert_eq!(frames[3], proof(2), "server's Auth");
}
