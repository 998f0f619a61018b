//! `rigwire conform` as CI runs it: rigwire's own servers and clients, in
//! both runtimes, over tcp, unix, ws, tls and wss, with and without a secret, pass
//! every case; and broken peers (a wrong proof, a missing reply, a frame over
//! the limit) fail the matching case, so the tester is known to catch them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use rigwire_core::{Message, Payload};

mod common;
use common::{cert_new, exit_within, relay_with_data, scratch, Spawned, BIN};

const SECRET: &str = "conformance-secret-0123456789";

/// How long one conform run may take before the test gives up on it (the
/// slowest cases wait for keepalive and its timeout and for the handshake
/// timeout, ~15 s in all).
const RUN_BOUND: Duration = Duration::from_secs(120);

/// Waits for `child` to exit within [`RUN_BOUND`] (killing it otherwise),
/// then parses its stdout, after any lines already read, as the JSON report.
fn report_of(mut child: Child, mut out: impl Read) -> (i32, serde_json::Value) {
    let status = exit_within(&mut child, RUN_BOUND, "rigwire conform did not end");
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    let report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status.code().unwrap_or(-1), report)
}

fn command(args: &[&str], secret: bool) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RIGWIRE_SECRET");
    if secret {
        cmd.env("RIGWIRE_SECRET", SECRET);
    }
    cmd
}

/// A certificate made once with `rigwire cert new`: its files and fingerprint.
fn cert() -> &'static (String, String, String) {
    static CERT: std::sync::OnceLock<(String, String, String)> = std::sync::OnceLock::new();
    CERT.get_or_init(|| {
        let dir = scratch("conform-cert");
        let pin = cert_new(&dir, "conform");
        let path = |f: &str| dir.join(f).display().to_string();
        (path("conform.crt"), path("conform.key"), pin)
    })
}

/// `--pin` with the test certificate's fingerprint, for a TLS URL.
fn pin_for(url: &str) -> Vec<&'static str> {
    match url.starts_with("tls://") || url.starts_with("wss://") {
        true => vec!["--pin", cert().2.as_str()],
        false => Vec::new(),
    }
}

/// `--cert` and `--key` of the test certificate.
fn identity() -> [&'static str; 4] {
    let (c, k, _) = cert();
    ["--cert", c.as_str(), "--key", k.as_str()]
}

/// `rigwire conform server URL --json [--case NAME]...`: exit code and report.
fn conform_server(url: &str, secret: bool, cases: &[&str]) -> (i32, serde_json::Value) {
    conform_server_via(url, secret, cases, None)
}

/// The same, with `--service NAME` when `url` is a relay's.
fn conform_server_via(
    url: &str,
    secret: bool,
    cases: &[&str],
    service: Option<&str>,
) -> (i32, serde_json::Value) {
    let mut args = vec!["conform", "server", url, "--json"];
    args.extend(pin_for(url));
    if let Some(name) = service {
        args.extend(["--service", name]);
    }
    for case in cases {
        args.extend(["--case", case]);
    }
    let mut child = command(&args, secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    report_of(child, out)
}

/// The cases of a report with the given verdict.
fn with_verdict<'a>(report: &'a serde_json::Value, verdict: &str) -> Vec<&'a serde_json::Value> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == verdict)
        .collect()
}

fn assert_all_pass(what: &str, (code, report): &(i32, serde_json::Value)) {
    let failed = with_verdict(report, "fail");
    assert!(
        failed.is_empty() && *code == 0,
        "{what}: exit {code}, failed: {failed:#?}"
    );
    assert!(
        report["passed"].as_u64().unwrap() >= 6,
        "{what}: too few cases ran: {report}"
    );
}

fn socket_path(name: &str) -> String {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "rigwire-conform-{}-{name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path.display().to_string()
}

/// A `rigwire serve` on tcp, unix and ws in `runtime`, and one more on
/// `secret_url`'s scheme with a secret (and the test certificate); their
/// URLs, each with whether it needs the secret.
fn servers(runtime: &str, secret_url: &str) -> (Vec<Spawned>, Vec<(String, bool)>) {
    let unix = format!("unix://{}", socket_path(runtime));
    let plain = Spawned::start(
        &[
            "serve",
            "--runtime",
            runtime,
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            &unix,
            "--listen",
            "ws://127.0.0.1:0/rig",
        ],
        &[],
        3,
    );
    let mut args = vec!["serve", "--runtime", runtime, "--listen", secret_url];
    args.extend(identity());
    let secret = Spawned::start(&args, &[("RIGWIRE_SECRET", SECRET)], 1);
    let mut urls: Vec<(String, bool)> = ["tcp://", "unix://", "ws://"]
        .iter()
        .map(|scheme| (plain.url_with(scheme), false))
        .collect();
    urls.push((secret.url_with(""), true));
    (vec![plain, secret], urls)
}

trait UrlWith {
    fn url_with(&self, scheme: &str) -> String;
}

impl UrlWith for Spawned {
    /// The URL of the `listening` line whose URL starts with `scheme`.
    fn url_with(&self, scheme: &str) -> String {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("listening "))
            .filter_map(|l| l.split_whitespace().next())
            .find(|u| u.starts_with(scheme))
            .unwrap_or_else(|| panic!("no {scheme} URL in {:?}", self.lines))
            .to_owned()
    }
}

#[test]
fn a_relay_passes_every_case_two_hops_away() {
    let (_processes, url) = relay_with_data(SECRET, SECRET);
    let report = conform_server_via(&url, true, &[], Some("data"));
    assert_all_pass(&url, &report);
    let skipped: Vec<_> = with_verdict(&report.1, "skip")
        .iter()
        .map(|c| c["case"].as_str().unwrap().to_owned())
        .collect();
    // The websocket cases (a tcp URL) and the one rule a relay cannot keep.
    assert_eq!(
        skipped,
        [
            "notify-unknown",
            "ws-text-message",
            "ws-fragmented",
            "ws-wrong-path"
        ],
        "{report:?}"
    );
}

#[test]
fn servers_of_both_runtimes_pass_every_case_on_every_transport() {
    let (_std, mut targets) = servers("std", "tls://127.0.0.1:0");
    let (_smol, smol_targets) = servers("smol", "wss://127.0.0.1:0/rig");
    targets.extend(smol_targets);
    let reports: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = targets
            .iter()
            .map(|(url, secret)| s.spawn(move || conform_server(url, *secret, &[])))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for ((url, secret), report) in targets.iter().zip(&reports) {
        assert_all_pass(url, report);
        let skipped: Vec<_> = with_verdict(&report.1, "skip")
            .iter()
            .map(|c| c["case"].as_str().unwrap())
            .collect();
        // Only wrong-secret needs a secret, only the ws- cases a websocket,
        // and the relay- cases a relay.
        let ws = url.starts_with("ws://") || url.starts_with("wss://");
        let expected = |case: &&str| {
            (*case == "wrong-secret" && !*secret)
                || (case.starts_with("ws-") && !ws)
                || case.starts_with("relay-")
        };
        assert!(skipped.iter().all(expected), "{url}: {skipped:?}");
        assert_eq!(
            skipped.len(),
            // Three relay- cases, three ws- cases.
            usize::from(!*secret) + if ws { 3 } else { 6 },
            "{url}: {skipped:?}"
        );
    }
}

/// `rigwire conform client --listen URL --json`, and its `listening` URL.
fn conform_client(listen: &str, secret: bool) -> (Child, BufReader<ChildStdout>, String) {
    let mut args = vec!["conform", "client", "--listen", listen, "--json"];
    if listen.starts_with("tls://") || listen.starts_with("wss://") {
        args.extend(identity());
    }
    let mut child = command(&args, secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("first line: {line:?}"))
        .to_owned();
    (child, out, url)
}

/// The script of spec §11.2 with `rigwire call` (the std client).
fn std_script(url: &str, secret: bool) {
    let mut args = vec!["call", url, "add", "[1, 2]", "--timeout", "2"];
    args.extend(pin_for(url));
    for _ in 0..7 {
        let status = command(&args, secret)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        // The tester answers differently each time: exit codes vary.
        assert!(status.code().is_some(), "{status}");
    }
}

/// The script of spec §11.2 with a rigwire-smol client.
fn smol_script(url: &str, secret: bool) {
    let mut config = rigwire_core::Config::named("smol-script")
        .tls_trust(rigwire_core::Trust::Pin(cert().2.clone()));
    if secret {
        config.protocol.secret = Some(rigwire_core::Secret::new(SECRET).unwrap());
    }
    smol::block_on(async {
        for _ in 0..7 {
            let Ok(client) = rigwire_smol::Client::connect(url, config.clone()).await else {
                continue;
            };
            let args = Payload::new(rigwire_core::Codec::Json, &b"[1, 2]"[..]);
            let _ = client
                .call_raw("add", args, Some(Duration::from_secs(2)))
                .await;
            client.close().await;
        }
    });
}

/// A client running the script against a URL, with or without the secret.
type Script = fn(&str, bool);

#[test]
fn clients_of_both_runtimes_pass_every_case_on_every_transport() {
    let script: [(&str, Script, &str, bool); 8] = [
        ("std", std_script, "tcp://127.0.0.1:0", false),
        ("std", std_script, "unix://", true),
        ("std", std_script, "ws://127.0.0.1:0/rig", false),
        ("std", std_script, "tls://127.0.0.1:0", true),
        ("smol", smol_script, "tcp://127.0.0.1:0", true),
        ("smol", smol_script, "unix://", false),
        ("smol", smol_script, "ws://127.0.0.1:0/rig", true),
        ("smol", smol_script, "wss://127.0.0.1:0/rig", false),
    ];
    std::thread::scope(|s| {
        for (i, (runtime, run_script, listen, secret)) in script.into_iter().enumerate() {
            s.spawn(move || {
                let listen = match listen {
                    "unix://" => format!("unix://{}", socket_path(&format!("client-{i}"))),
                    other => other.to_owned(),
                };
                let (child, out, url) = conform_client(&listen, secret);
                run_script(&url, secret);
                let report = report_of(child, out);
                assert_all_pass(&format!("{runtime} client on {url}"), &report);
                assert_eq!(report.1["passed"], 7, "{runtime} on {url}: {}", report.1);
            });
        }
    });
}

/// What a [`Mangler`] does to the frames of one direction.
#[derive(Clone, Copy)]
enum Fault {
    /// Flips a byte of every `Auth` proof.
    WrongProof,
    /// Drops every `Reply`.
    DropReplies,
    /// Replaces every `Reply` with a 2 MiB length prefix and garbage.
    OversizedReply,
    /// Drops every `Cancel`.
    DropCancels,
}

/// A TCP proxy in front of `upstream` that applies `fault` to what flows
/// toward the connecting side (`to_dialer`) or away from it.
struct Mangler {
    url: String,
}

impl Mangler {
    fn start(upstream: &str, fault: Fault, to_dialer: bool) -> Mangler {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("tcp://").to_owned();
        std::thread::spawn(move || {
            for dialer in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (dialer2, server2) = (dialer.try_clone().unwrap(), server.try_clone().unwrap());
                let (down, up) = if to_dialer {
                    (Some(fault), None)
                } else {
                    (None, Some(fault))
                };
                std::thread::spawn(move || pump(server, dialer, down));
                std::thread::spawn(move || pump(dialer2, server2, up));
            }
        });
        Mangler { url }
    }
}

/// Copies length-prefixed frames from `from` to `to`, applying `fault`.
fn pump(mut from: TcpStream, mut to: TcpStream, fault: Option<Fault>) {
    let mut head = [0u8; 4];
    while from.read_exact(&mut head).is_ok() {
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        if from.read_exact(&mut body).is_err() {
            break;
        }
        let message = Message::decode(&bytes::Bytes::from(body.clone())).ok();
        let mut out = [&head[..], &body].concat();
        match (fault, message) {
            (Some(Fault::WrongProof), Some(Message::Auth { .. })) => out[5] ^= 0xff,
            (Some(Fault::DropReplies), Some(Message::Reply { .. })) => continue,
            (Some(Fault::DropCancels), Some(Message::Cancel { .. })) => continue,
            (Some(Fault::OversizedReply), Some(Message::Reply { .. })) => {
                out = (2u32 << 20).to_be_bytes().to_vec();
                out.resize(4096, 0x42);
            }
            _ => {}
        }
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The named case's entry in a report.
fn case<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == name)
        .unwrap_or_else(|| panic!("no case {name} in {report}"))
}

/// Behind a relay every case's calls reach the service on one connection,
/// and a cancelled call keeps its slot there until its handler ends (§6.4).
/// Here the service never hears the cancels, so the busy case's 256 sleeps
/// hold their slots until their 5 s deadline: the case waits for them, and
/// the cases after it meet a service at rest. (A CI run once failed
/// `id-reused` with the service's `Busy` when the busy case did not wait.)
#[test]
fn behind_a_relay_the_busy_case_leaves_the_service_at_rest() {
    let relay = Spawned::start(
        &[
            "relay",
            "--clients",
            "tcp://127.0.0.1:0",
            "--services",
            "tcp://127.0.0.1:0",
        ],
        &[
            ("RIGWIRE_SECRET", SECRET),
            ("RIGWIRE_SERVICE_SECRET", SECRET),
        ],
        2,
    );
    let deaf_to_cancels = Mangler::start(&relay.url("services"), Fault::DropCancels, true);
    let _service = Spawned::start(
        &["serve", "--via", &deaf_to_cancels.url, "--as", "data"],
        &[("RIGWIRE_SECRET", SECRET)],
        1,
    );
    // The second run starts the moment the first has ended.
    for cases in [&["busy"][..], &["call-json", "id-zero", "id-reused"]] {
        let (code, report) = conform_server_via(&relay.url("clients"), true, cases, Some("data"));
        assert_eq!(code, 0, "{report}");
        for name in cases {
            assert_eq!(case(&report, name)["verdict"], "pass", "{report}");
        }
    }
}

#[test]
fn broken_servers_and_clients_fail_the_matching_case() {
    let rig = Spawned::start(
        &["serve", "--listen", "tcp://127.0.0.1:0"],
        &[("RIGWIRE_SECRET", SECRET)],
        1,
    );
    let url = rig.url_with("tcp://");
    let faults = [
        (Fault::WrongProof, "handshake", "proof"),
        (Fault::DropReplies, "call-json", "an answer to call"),
        (Fault::OversizedReply, "call-json", "over our limit"),
    ];
    for (fault, name, says) in faults {
        let mangler = Mangler::start(&url, fault, true);
        let (code, report) = conform_server(&mangler.url, true, &[name]);
        assert_eq!(code, 1, "{report}");
        let c = case(&report, name);
        assert_eq!(c["verdict"], "fail", "{c}");
        let text = format!("{} {}", c["expected"], c["got"]);
        assert!(text.contains(says), "{name}: {text}");
    }
    // A client whose proof is wrong: the first case fails, naming the proof.
    let (child, out, url) = conform_client("tcp://127.0.0.1:0", true);
    let mangler = Mangler::start(&url, Fault::WrongProof, false);
    std_script(&mangler.url, true);
    let (code, report) = report_of(child, out);
    assert_eq!(code, 1, "{report}");
    let c = case(&report, "client-handshake-and-call");
    assert_eq!(c["verdict"], "fail", "{c}");
    assert!(c["got"].as_str().unwrap().contains("proof"), "{c}");
}

#[test]
fn conform_refuses_an_unknown_case_and_a_bad_url_with_exit_two() {
    for args in [
        &["conform", "server", "tcp://127.0.0.1:1", "--case", "nope"][..],
        &["conform", "server", "http://example"][..],
    ] {
        let out = command(args, false).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn a_url_where_nothing_answers_is_told_at_once_not_in_every_case() {
    // Listening, so connections are made, but never a word (a wrong port:
    // another program's, or a server that waits for our Hello first). Each
    // case used to wait out its own 3 s: minutes, then a page of FAILs.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", silent.local_addr().unwrap());
    let mut child = command(&["conform", "server", &url], false)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let what = "conform still ran its cases against a URL where nothing answers";
    let status = exit_within(&mut child, Duration::from_secs(60), what);
    let mut said = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "nothing came from {url} within 3 s: a rigwire server sends its Hello at once"
        )),
        "{said}"
    );
    // Nothing listening at all: the same, at once.
    drop(silent);
    let out = command(&["conform", "server", &url], false)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot connect to {url}")));
}
