//! Interop with the real `iblutil.io.net` (the version `scripts/test`
//! installs in `target/ibl-venv`): a Python script drives the Rust rig, and a
//! Rust client drives a Python rig, over UDP and over TCP.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use rigwire_smol::core::ibl::{IblEchoError, IblError, IblEvent, IblMessage, MAX_MESSAGE};
use rigwire_smol::{Error, IblPeer};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_rigwire");

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the workspace")
        .to_owned()
}

/// The Python with iblutil installed, which `scripts/test` prepares.
fn python() -> PathBuf {
    let python = std::env::var_os("RIGWIRE_IBL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/ibl-venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which installs iblutil in a virtual environment",
        python.display()
    );
    python
}

fn script(name: &str) -> PathBuf {
    workspace().join("tests/ibl").join(name)
}

/// A child process, killed when dropped, whose stdout is read line by line
/// as it comes: iblutil logs every message it receives there, and a child
/// whose pipe is full would stop before it echoes.
struct Proc {
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    fn start(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// The next line starting with `prefix` (iblutil logs on stdout too),
    /// within a minute.
    fn line_starting(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line starting with {prefix:?}: {e}"),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_script_drives_the_rust_rig(proto: &str) {
    let mut rig = Proc::start(Command::new(BIN).args([
        "ibl",
        "rig",
        "--listen",
        &format!("{proto}://127.0.0.1:0"),
    ]));
    let url = rig.line_starting("listening ")["listening ".len()..].to_owned();
    let out = Command::new(python())
        .arg(script("python_client.py"))
        .arg(&url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    assert_eq!(
        report,
        json!({
            "refused": ["[0, \"RuntimeError: cannot start while the rig is connected: init first\", 2]"],
            "init": [{"status": 10}],
            "start": ["2022-01-01_1_subject", {"status": 20}],
            "status": [20],
            "info": [20, {"exp_ref": "2022-01-01_1_subject", "name": "rigwire-rig"}],
            "stop": [{"status": 30}],
            "cleanup": [{"status": 0}],
        })
    );
    // The rig printed what it received, as iblutil delivered it.
    assert!(rig
        .line_starting("from ")
        .ends_with(r#"[2, "2022-01-01_1_subject", null]"#));
}

#[test]
fn a_python_script_drives_the_rust_rig_over_udp() {
    python_script_drives_the_rust_rig("udp");
}

#[test]
fn a_python_script_drives_the_rust_rig_over_tcp() {
    python_script_drives_the_rust_rig("tcp");
}

fn rust_client_drives_the_python_rig(proto: &str) {
    let mut rig = Proc::start(
        Command::new(python())
            .arg(script("python_rig.py"))
            .arg(proto),
    );
    let url = rig.line_starting("listening ")["listening ".len()..].to_owned();
    let wait = Duration::from_secs(10);
    smol::block_on(async {
        let peer = IblPeer::connect(&url).await.unwrap();
        let steps: [(IblMessage, IblEvent, Value); 5] = [
            (
                IblMessage::init(json!({"subject": "test"})),
                IblEvent::Init,
                json!({"status": 10}),
            ),
            (
                IblMessage::start(Some("2022-01-01_1_subject"), json!({"foo": "bar"})),
                IblEvent::Start,
                json!("2022-01-01_1_subject"),
            ),
            (IblMessage::status(json!(null)), IblEvent::Status, json!(20)),
            (
                IblMessage::stop(json!(null), false),
                IblEvent::End,
                json!({"status": 30}),
            ),
            (
                IblMessage::cleanup(json!(null)),
                IblEvent::Cleanup,
                json!({"status": 0}),
            ),
        ];
        for (message, answer_event, first_field) in steps {
            // Python echoed our message ...
            peer.confirmed_send(None, &message).await.unwrap();
            let (_, answer) = peer.wait_event(answer_event, wait).await.unwrap();
            assert_eq!(answer.field(0), &first_field, "{answer}");
            // ... and saw our echo of its answer.
            assert_eq!(
                rig.line_starting("confirmed "),
                format!("confirmed {answer}")
            );
        }
        // The rig's info callback raises: iblutil reports it, never echoed.
        peer.info(json!(20), json!(null)).await.unwrap();
        let (_, report) = peer.wait_event(IblEvent::Error, wait).await.unwrap();
        assert_eq!(
            report.error_report(),
            Some(("ValueError: boom".to_owned(), Some(IblEvent::Info)))
        );
        // The largest message iblutil takes whole goes through (one UDP
        // datagram: over TCP it may arrive in pieces, which iblutil takes
        // for messages); a larger one is refused at once, saying why,
        // and leaves the peer usable.
        let sized = |n: usize| {
            let empty = IblMessage::status(json!("")).encode().len();
            IblMessage::status(json!("x".repeat(n - empty)))
        };
        let largest = sized(MAX_MESSAGE);
        assert_eq!(largest.encode().len(), MAX_MESSAGE);
        if proto == "udp" {
            peer.confirmed_send(None, &largest).await.unwrap();
            peer.wait_event(IblEvent::Status, wait).await.unwrap();
        }
        let refused = peer.confirmed_send(None, &sized(MAX_MESSAGE + 1)).await;
        let Err(Error::Ibl(IblError::Echo { error, .. })) = &refused else {
            panic!("{refused:?}");
        };
        assert_eq!(error, &IblEchoError::TooLarge(MAX_MESSAGE + 1));
        assert!(error.to_string().contains("send less"), "{error}");
        let refused = peer.send(None, &sized(1 << 20)).await;
        assert!(refused.is_err(), "{refused:?}");
        peer.status(json!(null)).await.unwrap();
        peer.close();
    });
}

#[test]
fn a_rust_client_drives_a_python_rig_over_udp() {
    rust_client_drives_the_python_rig("udp");
}

#[test]
fn a_rust_client_drives_a_python_rig_over_tcp() {
    rust_client_drives_the_python_rig("tcp");
}

#[test]
fn a_silent_peer_fails_each_send_and_leaves_the_peer_usable() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("udp://{}", silent.local_addr().unwrap());
    smol::block_on(async {
        let peer = IblPeer::connect(&url)
            .await
            .unwrap()
            .with_echo_timeout(Duration::from_millis(200));
        for _ in 0..2 {
            match peer.init(json!(null)).await {
                Err(Error::Ibl(IblError::Echo {
                    error: IblEchoError::Timeout(t),
                    ..
                })) => assert_eq!(t, Duration::from_millis(200)),
                other => panic!("expected an echo timeout, got {other:?}"),
            }
        }
        // The same thing from the command line, with iblutil's 1 s default.
        let out = Command::new(BIN)
            .args(["ibl", "send", &url, "init"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no echo within 1s"));
    });
}

/// A message the network cuts in two (a large one over TCP) reaches the
/// Rust rig whole: echoed once, whole, and answered. iblutil would take
/// each half for a message.
#[test]
fn a_message_cut_in_two_by_tcp_reaches_the_rust_rig_whole() {
    use std::io::{Read, Write};
    let mut rig =
        Proc::start(Command::new(BIN).args(["ibl", "rig", "--listen", "tcp://127.0.0.1:0"]));
    let url = rig.line_starting("listening ")["listening ".len()..].to_owned();
    let mut stream = std::net::TcpStream::connect(url.trim_start_matches("tcp://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let status = IblMessage::status(json!("x".repeat(MAX_MESSAGE - 20))).encode();
    let (first, second) = status.split_at(status.len() / 2);
    stream.write_all(first).unwrap();
    // Long enough for the rig to have read the first half alone.
    std::thread::sleep(Duration::from_millis(200));
    stream.write_all(second).unwrap();
    let mut echo = vec![0; status.len()];
    stream.read_exact(&mut echo).unwrap();
    assert!(echo == status[..], "the echo is not the message sent");
    // Then the rig's answer, which nothing else comes before.
    let mut answer = [0; 64];
    let n = stream.read(&mut answer).unwrap();
    let answer = IblMessage::decode(&answer[..n]).unwrap();
    assert_eq!(answer.event, IblEvent::Status, "{answer}");
}

/// Two iblutil rigs of one name in a group are refused naming it, as a
/// rigwire group refuses them: their answers could not be told apart.
#[test]
fn a_group_with_two_iblutil_rigs_of_one_name_is_refused() {
    smol::block_on(async {
        // Schemes in any case, as rigwire's own URLs take them.
        let rig = || IblPeer::connect("UDP://127.0.0.1:1");
        let rigs = vec![
            ("behavior".to_owned(), rig().await.unwrap()),
            ("behavior".to_owned(), rig().await.unwrap()),
        ];
        let refused = rigwire_smol::IblGroup::new(rigs, Duration::from_secs(1)).err();
        assert_eq!(
            refused,
            Some(rigwire_smol::core::GroupError::SameName("behavior".into()))
        );
    });
}

#[test]
fn a_lost_tcp_connection_is_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    smol::block_on(async {
        let peer = IblPeer::connect(&url).await.unwrap();
        drop(listener.accept().unwrap()); // the rig goes away
        match peer.next_message(Duration::from_secs(10)).await {
            Err(Error::Ibl(IblError::Disconnected { .. })) => {}
            other => panic!("expected the loss to be reported, got {other:?}"),
        }
        assert!(matches!(
            peer.init(json!(null)).await,
            Err(Error::Ibl(IblError::Disconnected { .. }))
        ));
    });
}

#[test]
fn a_group_drives_a_rust_rig_and_a_python_rig_together_and_names_a_silent_one() {
    let mut rust_rig =
        Proc::start(Command::new(BIN).args(["ibl", "rig", "--listen", "udp://127.0.0.1:0"]));
    let rust_url = rust_rig.line_starting("listening ")["listening ".len()..].to_owned();
    let mut python_rig = Proc::start(
        Command::new(python())
            .arg(script("python_rig.py"))
            .arg("udp"),
    );
    let python_url = python_rig.line_starting("listening ")["listening ".len()..].to_owned();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("udp://{}", silent.local_addr().unwrap());
    smol::block_on(async {
        let mut rigs = Vec::new();
        for (name, url) in [("rust", &rust_url), ("python", &python_url)] {
            rigs.push((name.to_owned(), IblPeer::connect(url).await.unwrap()));
        }
        let group = rigwire_smol::IblGroup::new(rigs, Duration::from_secs(10)).unwrap();
        let status = |r: &Result<IblMessage, Error>| r.as_ref().unwrap().field(0)["status"].clone();
        let init = group.init(json!(null)).await;
        assert!(init.all_ok(), "{init:?}");
        assert_eq!(status(init.get("rust").unwrap()), json!(10));
        assert_eq!(status(init.get("python").unwrap()), json!(10));
        let started = group.start("2022-01-01_1_subject", json!(null)).await;
        assert!(started.all_ok(), "{started:?}");
        let stopped = group.stop(json!(null), false).await;
        // In reverse order: python first.
        assert_eq!(
            stopped
                .iter()
                .map(|(n, _)| n.to_owned())
                .collect::<Vec<_>>(),
            ["python", "rust"]
        );
        assert!(stopped.all_ok(), "{stopped:?}");
        // A step out of order: the Rust rig's error report, by name.
        let again = group.stop(json!(null), false).await;
        match again.get("rust").unwrap() {
            Err(Error::Remote(e)) => assert!(e.message.starts_with("RuntimeError: "), "{e}"),
            other => panic!("expected the rig's error report, got {other:?}"),
        }
        let cleaned = group.cleanup(json!(null)).await;
        assert!(cleaned.all_ok(), "{cleaned:?}");

        // A silent rig in the group is named; the others still answer.
        let mut rigs = Vec::new();
        for (name, url) in [("python", &python_url), ("silent", &silent_url)] {
            rigs.push((name.to_owned(), IblPeer::connect(url).await.unwrap()));
        }
        let group = rigwire_smol::IblGroup::new(rigs, Duration::from_secs(10)).unwrap();
        let init = group.init(json!(null)).await;
        assert!(init.get("python").unwrap().is_ok(), "{init:?}");
        assert!(matches!(
            init.get("silent").unwrap(),
            Err(Error::Ibl(IblError::Echo {
                error: IblEchoError::Timeout(_),
                ..
            }))
        ));
    });
    drop(rust_rig);
}
