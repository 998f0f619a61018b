//! `rigwire control` as a person uses it, in a real browser (headless
//! Chromium driven by `cli/tests/browser/control.mjs`), and its JSON API
//! from a plain websocket client: malformed messages get a clear error,
//! never a crash.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tungstenite::Message;

mod common;
use common::{cert_new, exit_within, relay_using, relay_with_data, scratch, Spawned, BIN};

/// A websocket to the room, as a tab of the page has.
type Tab = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// Three `rigwire serve` rigs and a `rigwire control` of them; the control's
/// `open` URL.
struct Room {
    rigs: Vec<Spawned>,
    control: Spawned,
    open: String,
}

impl Room {
    fn start() -> Room {
        let rigs: Vec<Spawned> = (1..=3)
            .map(|i| {
                let name = format!("rig-{i}");
                Spawned::start(
                    &["serve", "--listen", "tcp://127.0.0.1:0", "--name", &name],
                    &[],
                    1,
                )
            })
            .collect();
        let mut args = vec![
            "control".to_owned(),
            "--listen".into(),
            "http://127.0.0.1:0".into(),
        ];
        for (i, rig) in rigs.iter().enumerate() {
            let url = rig.lines[0].split_whitespace().nth(1).unwrap();
            args.extend(["--rig".into(), format!("rig-{}={url}", i + 1)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let control = Spawned::start(&args, &[], 2);
        let open = control.lines[1]
            .strip_prefix("open ")
            .unwrap_or_else(|| panic!("{:?}", control.lines))
            .to_owned();
        Room {
            rigs,
            control,
            open,
        }
    }

    /// A `rigwire control` of the one rig `name` at `url`, which the test runs.
    fn watching(name: &str, url: &str) -> Room {
        let rig = format!("{name}={url}");
        let args = ["control", "--listen", "http://127.0.0.1:0", "--rig", &rig];
        Room::of(Spawned::start(&args, &[], 2))
    }

    /// The room of a `rigwire control` already started (its rigs elsewhere).
    /// A room over the services of the relay whose clients' URL is
    /// `clients` (secret `clients-secret-0123456`), with `extra` arguments.
    fn of_relay(clients: &str, extra: &[&str]) -> Room {
        let mut args = vec![
            "control",
            "--listen",
            "http://127.0.0.1:0",
            "--relay",
            clients,
        ];
        args.extend_from_slice(extra);
        let secret = [("RIGWIRE_SECRET", "clients-secret-0123456")];
        Room::of(Spawned::start(&args, &secret, 2))
    }

    fn of(control: Spawned) -> Room {
        let open = control.lines[1]
            .strip_prefix("open ")
            .unwrap_or_else(|| panic!("{:?}", control.lines))
            .to_owned();
        Room {
            rigs: Vec::new(),
            control,
            open,
        }
    }

    /// The websocket URL of the JSON API, with the token (or without).
    fn ws(&self, with_token: bool) -> String {
        let (base, token) = self.open.split_once("/?").unwrap();
        let base = base.replacen("http://", "ws://", 1);
        match with_token {
            true => format!("{base}/ws?{token}"),
            false => format!("{base}/ws"),
        }
    }
}

/// Width and height of a PNG, from its header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[1..4], b"PNG", "not a PNG");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[test]
fn a_person_drives_three_rigs_from_the_page_in_a_real_browser() {
    // scripts/test installs Chromium and playwright-core and says where.
    let Ok(dir) = std::env::var("RIGWIRE_BROWSER_DIR") else {
        eprintln!("SKIPPED: run scripts/test (it sets RIGWIRE_BROWSER_DIR) for the browser test");
        return;
    };
    let room = Room::start();
    let dir = PathBuf::from(dir);
    let script = dir.join("control.mjs");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/control.mjs"),
        &script,
    )
    .unwrap();
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("control-page.png");
    let _ = std::fs::remove_file(&shot);
    let rig3 = room.rigs[2].child.id().to_string();
    let mut node = Command::new("node")
        .args([
            script.to_str().unwrap(),
            &room.open,
            &rig3,
            shot.to_str().unwrap(),
        ])
        .current_dir(&dir)
        .spawn()
        .expect("node runs");
    let bound = Duration::from_secs(120);
    let status = exit_within(&mut node, bound, "the browser test did not end");
    assert!(
        status.success(),
        "the browser checks failed (see its output above)"
    );
    // The screenshot is the page, not a blank: full size, and not tiny.
    let png = std::fs::read(&shot).expect("a screenshot");
    assert_eq!(png_size(&png), (1400, 1000));
    assert!(
        png.len() > 20_000,
        "a {} byte screenshot is a blank page",
        png.len()
    );
    drop(room);
}

/// The names of a snapshot's rigs, in the page's order.
fn rig_names(snapshot: &serde_json::Value) -> Vec<&str> {
    let rigs = snapshot["rigs"].as_array().unwrap().iter();
    rigs.map(|r| r["name"].as_str().unwrap()).collect()
}

/// Reads JSON messages until one of `kind` arrives (or 10 s pass).
fn next_of(ws: &mut Tab, kind: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let message = next_message(ws);
        if message["type"] == kind {
            return message;
        }
        if message["type"] == "error" && kind != "error" {
            panic!("waiting for a {kind} message, the control room refused: {message}");
        }
    }
    panic!("no {kind} message within 10 s");
}

/// The next JSON message from the room, whatever its type.
fn next_message(ws: &mut Tab) -> serde_json::Value {
    loop {
        if let Message::Text(text) = ws.read().expect("the control room answers") {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Reads rig updates until every rig of `snapshot` is connected (the room
/// connects to its rigs after it starts: a call made before would fail with
/// "not connected").
fn until_up(ws: &mut Tab, snapshot: &serde_json::Value) {
    let up = |rig: &serde_json::Value| rig["state"] == "authenticated";
    let mut down: std::collections::BTreeSet<String> = snapshot["rigs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rig| !up(rig))
        .map(|rig| rig["name"].as_str().unwrap().to_owned())
        .collect();
    let until = Instant::now() + Duration::from_secs(15);
    while !down.is_empty() {
        assert!(Instant::now() < until, "{down:?} never connected");
        let update = next_of(ws, "rig");
        if up(&update["rig"]) {
            down.remove(update["rig"]["name"].as_str().unwrap());
        }
    }
}

#[test]
fn the_json_api_refuses_malformed_messages_with_a_reason_and_carries_on() {
    let room = Room::start();
    // Without the token: 401 for the websocket too.
    match tungstenite::connect(room.ws(false)) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("connected without the token: {:?}", other.map(|_| ())),
    }
    let (mut ws, _) = tungstenite::connect(room.ws(true)).unwrap();
    let snapshot = next_of(&mut ws, "snapshot");
    assert_eq!(snapshot["rigs"].as_array().unwrap().len(), 3);
    until_up(&mut ws, &snapshot);
    let refused = [
        ("not json at all", "not JSON"),
        (r#"{"op": "fly"}"#, "no operation 'fly'"),
        (r#"{"step": "init"}"#, "needs \"op\""),
        (
            r#"{"op": "lifecycle", "step": "explode"}"#,
            "no lifecycle step 'explode'",
        ),
        (
            r#"{"op": "lifecycle", "step": "start"}"#,
            "start needs \"exp_ref\"",
        ),
        (
            r#"{"op": "lifecycle", "step": "start", "exp_ref": "2026-02-30_1_mouse"}"#,
            "invalid experiment reference",
        ),
        (
            r#"{"op": "call", "rig": "rig-1"}"#,
            "a call needs \"method\"",
        ),
        (r#"[1, 2, 3]"#, "needs \"op\""),
    ];
    for (sent, said) in refused {
        ws.send(Message::text(sent)).unwrap();
        let error = next_of(&mut ws, "error");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(said), "{sent} → {message}");
    }
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert!(next_of(&mut ws, "error")["message"]
        .as_str()
        .unwrap()
        .contains("JSON text"));
    // Still serving: a call to an unknown rig is logged as an error, a
    // real one answers.
    ws.send(Message::text(
        r#"{"op": "call", "rig": "rig-9", "method": "add", "args": [1, 2]}"#,
    ))
    .unwrap();
    let entry = next_of(&mut ws, "log");
    assert!(
        entry["entry"]["text"]
            .as_str()
            .unwrap()
            .contains("no rig named 'rig-9'"),
        "{entry}"
    );
    ws.send(Message::text(
        r#"{"op": "call", "rig": "rig-2", "method": "add", "args": [2, 3]}"#,
    ))
    .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let entry = next_of(&mut ws, "log");
        let text = entry["entry"]["text"].as_str().unwrap().to_owned();
        if text.contains("add → 5.0") {
            break;
        }
        assert!(Instant::now() < until, "no answer to the call");
    }
    assert!(room.control.lines[0].starts_with("listening http://127.0.0.1:"));
}

/// `rigwire control` with `args` exits 2 (a bad command line or rigs
/// file) saying `said`.
fn refused_saying(args: &[&str], said: &str) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RIGWIRE_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(said), "{args:?}: {err}");
}

#[test]
fn control_refuses_a_bad_command_line_with_exit_two() {
    for (args, said) in [
        (vec!["control"], "no rigs"),
        (vec!["control", "--rig", "nourl"], "expected NAME=URL"),
        (
            vec![
                "control",
                "--rig",
                "a=tcp://127.0.0.1:1",
                "--listen",
                "127.0.0.1:0",
            ],
            "expected http://host:port",
        ),
        (
            vec!["control", "--rig", "a=tcp://x:1", "--rig", "a=tcp://y:1"],
            "given twice",
        ),
        (
            vec!["control", "--rig", "a=tcp//x:1"],
            "rig 'a': invalid URL 'tcp//x:1'",
        ),
        // A certificate for the page, which plain http:// would leave unused.
        (
            vec![
                "control",
                "--rig",
                "a=tcp://127.0.0.1:1",
                "--listen",
                "http://127.0.0.1:0",
                "--cert",
                "page.crt",
                "--key",
                "page.key",
            ],
            "--cert and --key serve the page over https://, and --listen http://127.0.0.1:0 is http://",
        ),
    ] {
        refused_saying(&args, said);
    }
}

/// A rigs file's mistyped key, or a value that is not text, is refused
/// naming it: left out, the rig would be reached without its secret or its
/// pin, and fail later for a reason that does not point here.
#[test]
fn a_rigs_file_with_a_mistyped_key_or_a_value_not_text_is_refused_naming_it() {
    let dir = scratch("control-rigs-typo");
    for (text, said) in [
        (
            "[rig-2]\nurl = \"tcp://127.0.0.1:1\"\nsecret_flie = \"lab.secret\"\n",
            "rig 'rig-2': unknown key 'secret_flie' (a rig takes url, secret_file, pin, ca)",
        ),
        (
            "rig-1 = { url = \"tcp://127.0.0.1:1\", pin = 5 }\n",
            "rig 'rig-1': pin is text, in quotes",
        ),
    ] {
        let file = dir.join("rigs.toml");
        std::fs::write(&file, text).unwrap();
        refused_saying(&["control", "--rigs", file.to_str().unwrap()], said);
    }
}

#[test]
fn rigs_come_from_a_file_with_their_own_secrets_and_from_a_relay() {
    let dir = std::env::temp_dir().join(format!("rigwire-control-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rig-b.secret"), "rig-b-secret-0123456789\n").unwrap();
    // rig-a has the secret every rig without a file of its own uses.
    let plain = Spawned::start(
        &["serve", "--listen", "tcp://127.0.0.1:0"],
        &[("RIGWIRE_SECRET", "clients-secret-0123456")],
        1,
    );
    let guarded = Spawned::start(
        &["serve", "--listen", "tcp://127.0.0.1:0"],
        &[("RIGWIRE_SECRET", "rig-b-secret-0123456789")],
        1,
    );
    let url = |s: &Spawned| s.lines[0].split_whitespace().nth(1).unwrap().to_owned();
    // rig-t serves TLS; the file pins its certificate.
    let pin = cert_new(&dir, "rig-t");
    let (cert, key) = (dir.join("rig-t.crt"), dir.join("rig-t.key"));
    let tls = Spawned::start(
        &[
            "serve",
            "--listen",
            "tls://127.0.0.1:0",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        &[("RIGWIRE_SECRET", "clients-secret-0123456")],
        1,
    );
    // In the file's order, not sorted.
    std::fs::write(
        dir.join("rigs.toml"),
        format!(
            "[rig-b]\nurl = \"{}\"\nsecret_file = \"rig-b.secret\"\n\n[rig-t]\nurl = \"{}\"\npin = \"{pin}\"\n",
            url(&guarded),
            url(&tls)
        ) + &format!("\n[rig-a]\nurl = \"{}\"\n", url(&plain)),
    )
    .unwrap();
    // A relay with one service behind it, reached as `data.method`.
    let (_relay, relay_clients) =
        relay_with_data("clients-secret-0123456", "services-secret-0123456");
    std::fs::write(dir.join("token"), "a-token-of-the-lab-0123\n").unwrap();
    let control = Spawned::start(
        &[
            "control",
            "--listen",
            "http://127.0.0.1:0",
            "--rigs",
            dir.join("rigs.toml").to_str().unwrap(),
            "--relay",
            &relay_clients,
            // The same service again, by a URL that names it.
            "--rig",
            &format!("scan={relay_clients}#data"),
            "--token-file",
            dir.join("token").to_str().unwrap(),
        ],
        &[("RIGWIRE_SECRET", "clients-secret-0123456")],
        2,
    );
    assert!(
        control.lines[1].ends_with("/?token=a-token-of-the-lab-0123"),
        "{:?}",
        control.lines
    );
    let room = Room::of(control);
    let (mut ws, _) = tungstenite::connect(room.ws(true)).unwrap();
    let snapshot = next_of(&mut ws, "snapshot");
    let names = rig_names(&snapshot);
    assert_eq!(names, ["scan", "rig-b", "rig-t", "rig-a", "data"]);
    // All five come up (rig-b with its own secret, rig-t over TLS by its
    // pin, data and scan two hops away).
    let mut up = std::collections::BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(15);
    while up.len() < 5 {
        assert!(Instant::now() < until, "only {up:?} connected");
        let rig = next_of(&mut ws, "rig");
        if rig["rig"]["state"] == "authenticated" && rig["rig"]["offset_ms"].is_number() {
            up.insert(rig["rig"]["name"].as_str().unwrap().to_owned());
        }
    }
    // Two hops, by the relay's listing and by a URL naming the service.
    for (rig, args, answer) in [
        ("data", "[20, 22]", "add → 42.0"),
        ("scan", "[1, 2]", "add → 3.0"),
    ] {
        let call = format!(r#"{{"op": "call", "rig": "{rig}", "method": "add", "args": {args}}}"#);
        ws.send(Message::text(call)).unwrap();
        loop {
            let entry = next_of(&mut ws, "log");
            if entry["entry"]["text"].as_str().unwrap().contains(answer) {
                assert_eq!(entry["entry"]["rig"], rig);
                break;
            }
            assert!(
                Instant::now() < until + Duration::from_secs(10),
                "no answer from {rig} through the relay"
            );
        }
    }
}

/// A relay's service that goes away leaves the relay answering for it: the
/// rig is shown "not answering", with the relay's reason, on the connection
/// it has (before, the room reconnected to the relay as fast as the relay
/// answered, a thousand times a second), and answers again when the service
/// is back, with the methods it now serves.
#[test]
fn a_service_gone_from_its_relay_is_not_answering_until_it_is_back() {
    let started = Instant::now();
    let secret = "services-secret-0123456";
    let (mut relay, clients) = relay_with_data("clients-secret-0123456", secret);
    let room = Room::of_relay(&clients, &[]);
    let (mut ws, _) = tungstenite::connect(room.ws(true)).unwrap();
    let snapshot = next_of(&mut ws, "snapshot");
    until_up(&mut ws, &snapshot);
    // The service dies; the relay stays.
    drop(relay.pop());
    // What the page hears of `data` until it answers again, once the
    // service is back: its states and its connection log.
    let mut states = vec!["authenticated".to_owned()];
    let mut news = Vec::new();
    let mut restarted = None;
    let mut methods: Vec<String> = Vec::new();
    while news.last().map(String::as_str) != Some("answering again") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{} states, the last {:?}; {} log entries, the last {:?}",
            states.len(),
            &states[states.len().saturating_sub(4)..],
            news.len(),
            &news[news.len().saturating_sub(4)..],
        );
        let message = next_message(&mut ws);
        match message["type"].as_str() {
            Some("rig") if message["rig"]["name"] == "data" => {
                let state = message["rig"]["state"].as_str().unwrap().to_owned();
                methods = serde_json::from_value(message["rig"]["methods"].clone()).unwrap();
                if state == "not answering" {
                    let reason = message["rig"]["reason"].as_str().unwrap();
                    assert!(reason.contains("data"), "{reason}");
                }
                if states.last() != Some(&state) {
                    states.push(state);
                }
            }
            Some("log")
                if message["entry"]["kind"] == "connection"
                    && message["entry"]["rig"] == "data" =>
            {
                let text = message["entry"]["text"].as_str().unwrap().to_owned();
                // The connection's own news may trail its state; a second
                // one would be a reconnect.
                let first = text.starts_with("connected to") && states.len() == 1;
                if !first {
                    news.push(text);
                }
            }
            _ => {}
        }
        if states.last().map(String::as_str) == Some("not answering") && restarted.is_none() {
            // Back in a new version, with a method the old one lacked.
            let config = rigwire_std::Config::named("data-v2")
                .secret(secret)
                .unwrap();
            let mut service = rigwire_std::RemoteService::new(&["data"], config);
            service.expose("calibrate", |(): ()| Ok(true)).unwrap();
            restarted = Some(service.connect(&relay[0].url("services")).unwrap());
        }
    }
    assert_eq!(states, ["authenticated", "not answering", "authenticated"]);
    assert!(methods.iter().any(|m| m == "calibrate"), "{methods:?}");
    assert_eq!(news.len(), 2, "{news:?}");
    assert!(news[0].starts_with("not answering: "), "{news:?}");
}

/// A service that registers at the relay after the room started is shown
/// (it was not, until the room was restarted), connects, and answers the
/// page's calls; one that takes a name the room shows already is not.
#[test]
fn a_service_registered_at_the_relay_later_appears_on_the_page() {
    let started = Instant::now();
    let secret = "services-secret-0123456";
    let (relay, clients) = relay_with_data("clients-secret-0123456", secret);
    let room = Room::of_relay(&clients, &["--rig", "dup=tcp://127.0.0.1:1"]);
    let (mut ws, _) = tungstenite::connect(room.ws(true)).unwrap();
    let snapshot = next_of(&mut ws, "snapshot");
    let names = rig_names(&snapshot);
    assert_eq!(names, ["dup", "data"]);
    let config = rigwire_std::Config::named("camera").secret(secret).unwrap();
    let mut camera = rigwire_std::RemoteService::new(&["camera", "dup"], config);
    camera.expose("snap", |(): ()| Ok("frame-1")).unwrap();
    let _camera = camera.connect(&relay[0].url("services")).unwrap();
    let (mut registered, mut up, mut dup_refused) = (false, false, false);
    while !(registered && up && dup_refused) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "registered {registered}, up {up}, dup refused {dup_refused}"
        );
        let message = next_message(&mut ws);
        match message["type"].as_str() {
            Some("rig") if message["rig"]["name"] == "camera" => {
                up = message["rig"]["state"] == "authenticated";
            }
            Some("log") if message["entry"]["rig"] == "camera" => {
                let text = message["entry"]["text"].as_str().unwrap();
                registered |= text.starts_with("registered at the relay");
            }
            Some("log") if message["entry"]["rig"] == "dup" => {
                let text = message["entry"]["text"].as_str().unwrap();
                dup_refused |= text.contains("registered at the relay: not shown");
            }
            Some("rig") if message["rig"]["name"] == "dup" => {
                assert!(message["rig"]["url"].as_str().unwrap().ends_with(":1"));
            }
            _ => {}
        }
    }
    ws.send(Message::text(
        r#"{"op": "call", "rig": "camera", "method": "snap"}"#,
    ))
    .unwrap();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no answer from the camera"
        );
        let message = next_message(&mut ws);
        if message["type"] == "log" && message["entry"]["kind"] == "result" {
            assert_eq!(message["entry"]["text"], r#"snap → "frame-1""#);
            break;
        }
    }
}

/// A rig that closes every connection as soon as it is made is tried again
/// once a poll (a second), not as fast as it accepts. The rig counts what it
/// accepts: the room's log shows a reconnect only when its words change, and
/// whether a connection dropped at once reads as made or as failed depends
/// on which of the welcome and the close the room reads first.
#[test]
fn a_rig_that_drops_every_connection_is_retried_once_a_second() {
    let mut rig =
        rigwire_std::Server::bind("tcp://127.0.0.1:0", rigwire_std::Config::named("flaky"))
            .unwrap();
    let (accepted, connects) = std::sync::mpsc::channel();
    rig.on_connect(move |peer| {
        let _ = accepted.send(Instant::now());
        peer.close();
    });
    let rig = rig.start().unwrap();
    let _room = Room::watching("flaky", &rig.local_url());
    let mut at = Vec::new();
    while at.len() < 4 {
        let next = connects
            .recv_timeout(Duration::from_secs(30))
            .expect("the room keeps trying a rig that drops it");
        at.push(next);
    }
    // Three gaps of a poll each; a room that retried as fast as the rig
    // accepts would make four connections in milliseconds. A slow machine
    // only makes the gaps longer.
    let spread = at[3] - at[0];
    assert!(
        spread >= Duration::from_secs(2),
        "four connections within {spread:?}"
    );
}

#[test]
fn serving_beyond_loopback_warns_that_nothing_is_encrypted() {
    let rig = Spawned::start(&["serve", "--listen", "tcp://127.0.0.1:0"], &[], 1);
    let rig_url = rig.lines[0].split_whitespace().nth(1).unwrap().to_owned();
    let mut child = Command::new(BIN)
        .args([
            "control",
            "--listen",
            "http://0.0.0.0:0",
            "--rig",
            &format!("a={rig_url}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.starts_with("listening http://0.0.0.0:"), "{line}");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING") && err.contains("without TLS"),
        "{err}"
    );
}

#[test]
fn what_rigs_notify_shows_in_the_live_log() {
    // A rig that greets whoever connects: a log line and an event.
    let mut rig =
        rigwire_std::Server::bind("tcp://127.0.0.1:0", rigwire_std::Config::named("scanner"))
            .unwrap();
    rig.on_connect(|peer| {
        let _ = peer.notify_raw(
            "userLog",
            rigwire_std::Payload::json(&"scanner ready").unwrap(),
        );
        let _ = peer.notify("exp.event", &("trial".to_owned(), "1".to_owned()));
        let _ = peer.notify_raw("trialDone", rigwire_std::Payload::json(&[1, 2]).unwrap());
    });
    let rig = rig.start().unwrap();
    let room = Room::watching("scanner", &rig.local_url());
    let (mut ws, _) = tungstenite::connect(room.ws(true)).unwrap();
    let wanted = [
        "userLog: \"scanner ready\"",
        "event trial: 1",
        "trialDone: [1,2]",
    ];
    assert_notified(&mut ws, &wanted);
}

/// Waits (10 s at most) until the live log has shown a notify containing
/// each of `wanted`, counting what the snapshot holds (logged before this
/// viewer came).
fn assert_notified(
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    wanted: &[&str],
) {
    let snapshot = next_of(ws, "snapshot");
    let mut seen: Vec<String> = snapshot["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "notify")
        .map(|e| e["text"].as_str().unwrap().to_owned())
        .collect();
    let until = Instant::now() + Duration::from_secs(10);
    while !wanted
        .iter()
        .all(|w| seen.iter().any(|s: &String| s.contains(w)))
    {
        assert!(Instant::now() < until, "the log has {seen:?}");
        let message = next_of(ws, "log");
        if message["entry"]["kind"] == "notify" {
            seen.push(message["entry"]["text"].as_str().unwrap().to_owned());
        }
    }
}

#[test]
fn what_a_service_behind_a_relay_notifies_shows_in_the_live_log() {
    let (clients_secret, services_secret) = ("clients-secret-0123456", "services-secret-0123456");
    let relay = relay_using(clients_secret, services_secret, &[]);
    // A service that reports, to whoever follows it, when it is armed.
    let config = rigwire_std::Config::named("scanner")
        .secret(services_secret)
        .unwrap();
    let mut service = rigwire_std::RemoteService::new(&["data"], config);
    service
        .expose_with("arm", |ctx: &rigwire_std::CallContext, (): ()| {
            ctx.peer
                .notify_raw("userLog", rigwire_std::Payload::json(&"armed")?)?;
            ctx.peer.notify("exp.event", &("armed", "scanner ready"))?;
            Ok(())
        })
        .unwrap();
    let _service = service.connect(&relay.url("services")).unwrap();
    let rig = format!("scan={}#data", relay.url("clients"));
    let args = ["control", "--listen", "http://127.0.0.1:0", "--rig", &rig];
    let room = Room::of(Spawned::start(
        &args,
        &[("RIGWIRE_SECRET", clients_secret)],
        2,
    ));
    let (mut ws, _) = tungstenite::connect(room.ws(true)).unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < until, "the relayed rig did not come up");
        let rig = next_of(&mut ws, "rig");
        if rig["rig"]["state"] == "authenticated" {
            break;
        }
    }
    let call = r#"{"op": "call", "rig": "scan", "method": "arm", "args": null}"#;
    ws.send(Message::text(call)).unwrap();
    let (mut ws, _) = tungstenite::connect(room.ws(true)).unwrap();
    assert_notified(
        &mut ws,
        &["userLog: \"armed\"", "event armed: scanner ready"],
    );
}

#[test]
fn the_page_is_served_over_https_with_a_certificate_clients_pin() {
    use rigwire_std::core::{TlsSettings, Trust, Url};
    use rigwire_ws::rustls::StreamOwned;
    use std::io::{Read, Write};
    let dir = scratch("control-tls");
    let pin = cert_new(&dir, "control");
    let rig = Spawned::start(&["serve", "--listen", "tcp://127.0.0.1:0"], &[], 1);
    let rig_url = rig.lines[0].split_whitespace().nth(1).unwrap().to_owned();
    let (cert, key) = (dir.join("control.crt"), dir.join("control.key"));
    let control = Spawned::start(
        &[
            "control",
            "--listen",
            "https://127.0.0.1:0",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--rig",
            &format!("a={rig_url}"),
        ],
        &[],
        2,
    );
    let words: Vec<&str> = control.lines[0].split_whitespace().collect();
    assert_eq!(
        (words[0], words[2], words[3]),
        ("listening", "fingerprint", pin.as_str())
    );
    let open = control.lines[1].strip_prefix("open ").unwrap().to_owned();
    let (base, token) = open.split_once("/?").unwrap();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let addr = base.trim_start_matches("https://").to_owned();
    let trust = rigwire_ws::ClientTls::from_settings(&TlsSettings {
        trust: Trust::Pin(pin.clone()),
        ..TlsSettings::default()
    })
    .unwrap();
    let tls = || {
        let url = Url::parse(&format!("wss://{addr}/ws")).unwrap();
        let tcp = std::net::TcpStream::connect(&addr).unwrap();
        StreamOwned::new(trust.session(&url).unwrap(), tcp)
    };
    let get = |path: &str| {
        let mut stream = tls();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let page = get(&format!("/?{token}"));
    assert!(
        page.starts_with("HTTP/1.1 200 OK") && page.contains("rigwire control"),
        "{page:.200}"
    );
    assert!(get("/").starts_with("HTTP/1.1 401"));
    // The page's websocket, over TLS.
    let (mut ws, _) = tungstenite::client(format!("wss://{addr}/ws?{token}"), tls()).unwrap();
    loop {
        if let Message::Text(text) = ws.read().unwrap() {
            let message: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(message["type"], "snapshot", "{message}");
            assert_eq!(message["rigs"][0]["name"], "a");
            break;
        }
    }
}

/// A number from process `pid`'s `/proc` status line `field` ("VmRSS:", in kB).
fn status_of(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resident memory of process `pid`, in bytes.
fn resident(pid: u32) -> u64 {
    status_of(pid, "VmRSS:") * 1024
}

#[test]
fn a_crowd_of_silent_strangers_holds_a_bounded_number_of_threads_and_a_tab_still_opens() {
    let started = Instant::now();
    let room = Room::start();
    let pid = room.control.child.id();
    let (mut tab, _) = tungstenite::connect(room.ws(true)).unwrap();
    next_of(&mut tab, "snapshot");
    let before = status_of(pid, "Threads:");
    // 400 sockets that connect and say nothing (each would hold a thread
    // for the 5 s a request head may take).
    let address = room.open.trim_start_matches("http://");
    let address = address.split('/').next().unwrap().to_owned();
    let strangers: Vec<std::net::TcpStream> = (0..400)
        .map(|_| std::net::TcpStream::connect(&address).unwrap())
        .collect();
    // Once the control has taken them all (their count stops growing):
    let mut threads = status_of(pid, "Threads:");
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(40));
        let now = status_of(pid, "Threads:");
        if now == threads {
            break;
        }
        threads = now;
    }
    assert!(
        threads < before + 100,
        "400 silent sockets took {} threads (from {before} to {threads})",
        threads - before
    );
    // The oldest strangers were closed to make room for the newer ones.
    let mut first = &strangers[0];
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        matches!(std::io::Read::read(&mut first, &mut byte), Ok(0) | Err(_)),
        "the oldest stranger is still held"
    );
    // A new tab opens, and the open one carries on.
    let (mut fresh, _) = tungstenite::connect(room.ws(true)).unwrap();
    next_of(&mut fresh, "snapshot");
    let call = serde_json::json!({"op": "call", "rig": "rig-1", "method": "echo", "args": "hi"});
    tab.send(Message::text(call.to_string())).unwrap();
    loop {
        let entry = next_of(&mut tab, "log");
        assert_ne!(entry["entry"]["kind"], "error", "{entry}");
        if entry["entry"]["kind"] == "result" {
            break;
        }
    }
    drop(strangers);
    // Tabs up to the limit open, 80 trying at once: each told `101` gets
    // its snapshot (never a close for want of room), the rest `503`.
    let url = room.ws(true);
    let tries: Vec<_> = (0..80)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || match tungstenite::connect(url) {
                Ok((mut tab, _)) => {
                    if let tungstenite::stream::MaybeTlsStream::Plain(socket) = tab.get_ref() {
                        socket
                            .set_read_timeout(Some(Duration::from_secs(10)))
                            .unwrap();
                    }
                    match tab.read() {
                        Ok(Message::Text(text)) if text.contains("\"snapshot\"") => Ok(tab),
                        other => Err(format!("told 101, then {other:?}")),
                    }
                }
                Err(tungstenite::Error::Http(response)) if response.status() == 503 => {
                    Err("503".to_owned())
                }
                Err(e) => Err(format!("{e}")),
            })
        })
        .collect();
    let (mut tabs, mut refused) = (Vec::new(), 0);
    for attempt in tries {
        match attempt.join().unwrap() {
            Ok(tab) => tabs.push(tab),
            Err(e) if e == "503" => refused += 1,
            Err(e) => panic!("a tab opened at once with others: {e}"),
        }
    }
    assert_eq!((tabs.len(), refused), (62, 18));
    // The next is told the page is full; once one closes, it opens.
    let refused = match tungstenite::connect(room.ws(true)) {
        Err(tungstenite::Error::Http(response)) => response,
        other => panic!("a 65th tab: {:?}", other.map(|_| "opened")),
    };
    assert_eq!(refused.status(), 503);
    // Why, as a browser shows it.
    let mut page = std::net::TcpStream::connect(&address).unwrap();
    page.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut page, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.ends_with("the control page is full: 64 connections (limit 64)"),
        "{answer}"
    );
    tabs.pop().unwrap().close(None).unwrap();
    let reopened = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(20));
        tungstenite::connect(room.ws(true)).ok()
    });
    next_of(
        &mut reopened.expect("no room after a tab closed").0,
        "snapshot",
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn a_tab_that_stops_reading_is_dropped_and_memory_stays_bounded() {
    let started = Instant::now();
    let room = Room::start();
    // Tab A takes its snapshot, then never reads again.
    let (mut stuck, _) = tungstenite::connect(room.ws(true)).unwrap();
    next_of(&mut stuck, "snapshot");
    // Tab B keeps calling echo with 50 KB of arguments, reading as it goes:
    // every call pushes its action, result and the rig's update to A too.
    let (mut busy, _) = tungstenite::connect(room.ws(true)).unwrap();
    let snapshot = next_of(&mut busy, "snapshot");
    until_up(&mut busy, &snapshot);
    let big = "x".repeat(20_000);
    let call = serde_json::json!({"op": "call", "rig": "rig-1", "method": "echo", "args": big});
    // Batches of 32 calls in flight (under the limit of actions at once).
    for batch in 0..80 {
        for _ in 0..32 {
            busy.send(Message::text(call.to_string())).unwrap();
        }
        let mut answered = 0;
        while answered < 32 {
            let entry = next_of(&mut busy, "log");
            // A refusal or a failed call would leave the batch short: say
            // which, rather than wait for an answer that is not coming.
            assert_ne!(entry["entry"]["kind"], "error", "batch {batch}: {entry}");
            if entry["entry"]["kind"] == "result" {
                let text = entry["entry"]["text"].as_str().unwrap();
                assert!(
                    text.len() < 1000,
                    "a result shown whole: {} bytes",
                    text.len()
                );
                answered += 1;
            }
        }
        if batch % 20 == 0 {
            let rss = resident(room.control.child.id());
            assert!(rss < 200 << 20, "the control room holds {rss} bytes");
        }
    }
    // A was dropped: what was queued for it drains, then the connection ends.
    if let tungstenite::stream::MaybeTlsStream::Plain(socket) = stuck.get_ref() {
        socket
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
    }
    let mut drained = 0;
    let ended = loop {
        match stuck.read() {
            Ok(Message::Close(_)) => break true,
            Ok(_) => drained += 1,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                break true
            }
            // A read that times out: nothing more came, and nothing ended.
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true,
        }
    };
    assert!(
        ended,
        "the stuck tab was never dropped ({drained} messages read)"
    );
    // Everyone else carries on.
    let (mut fresh, _) = tungstenite::connect(room.ws(true)).unwrap();
    assert_eq!(
        next_of(&mut fresh, "snapshot")["rigs"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}
