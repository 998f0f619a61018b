//! The `rigwire` command as a user runs it: exit codes, messages, signals.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../../tests/tests/common/raw.rs"]
mod raw;

mod common;
use common::{
    cert_new, exit_within, first_line, relay_using, relay_with_data_using, scratch, Spawned, BIN,
};

/// Checks that the command exited with `code` and said `said` on stderr.
fn fails_saying(out: &Output, code: i32, said: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(said), "{}", text(&out.stderr));
}

/// A `rigwire serve` child process, killed when dropped.
struct Rig {
    process: Spawned,
    url: String,
}

impl Rig {
    fn start(extra: &[&str], env: &[(&str, &str)]) -> Rig {
        let mut args = vec![
            "serve",
            "--listen",
            "tcp://127.0.0.1:0",
            "--name",
            "test-rig",
        ];
        args.extend_from_slice(extra);
        let process = Spawned::start(&args, env, 1);
        let url = process.lines[0]
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("first line: {:?}", process.lines[0]))
            .to_owned();
        assert!(url.starts_with("tcp://127.0.0.1:"), "{url}");
        Rig { process, url }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.process.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

fn rigwire(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RIGWIRE_SECRET")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn call_prints_json_results_and_exits_zero() {
    let rig = Rig::start(&[], &[]);
    let out = rigwire(&["call", &rig.url, "add", "[1, 2]"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).trim()),
        (Some(0), "3.0"),
        "{}",
        text(&out.stderr)
    );
    let out = rigwire(&["call", &rig.url, "echo", r#"{"trial": 3}"#]);
    assert_eq!(text(&out.stdout).trim(), r#"{"trial":3}"#);
    let out = rigwire(&["call", &rig.url, "exp.status"]);
    assert_eq!(text(&out.stdout).trim(), r#""connected""#);
    // Several arguments are one JSON array, as Python's call(name, *args)
    // sends them (they were refused as "unexpected argument"); negative
    // numbers are values, not options.
    let out = rigwire(&["call", &rig.url, "echo", "1", "-2.5", r#""x""#]);
    assert_eq!(
        text(&out.stdout).trim(),
        r#"[1,-2.5,"x"]"#,
        "{}",
        text(&out.stderr)
    );
    let out = rigwire(&["call", &rig.url, "add", "1", "two"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("argument 2 (two)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn call_sends_a_file_as_bytes_and_writes_a_byte_result_as_is() {
    let rig = Rig::start(&[], &[]);
    let dir = std::env::temp_dir().join(format!("rigwire-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frame.bin");
    // Every byte value, a NUL and invalid UTF-8 among them.
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(&file, &data).unwrap();
    let out = rigwire(&["call", &rig.url, "echo", "--bytes", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout == data, "the echo came back as other bytes");
    // From standard input, too.
    let mut child = Command::new(BIN)
        .args(["call", &rig.url, "echo", "--bytes", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"\x00\xffraw").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"\x00\xffraw");
    // A typed method refuses bytes it cannot take, as BadArguments.
    let out = rigwire(&["call", &rig.url, "add", "--bytes", file.to_str().unwrap()]);
    fails_saying(&out, 1, "BadArguments");
    let out = rigwire(&["call", &rig.url, "echo", "--bytes", "/no/such/file"]);
    fails_saying(&out, 2, "/no/such/file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_over_16_mib_needs_max_frame_on_both_sides_and_on_the_relay() {
    let rig = Rig::start(&["--max-frame", "33554432"], &[]);
    let dir = std::env::temp_dir().join(format!("rigwire-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stack.bin");
    let data: Vec<u8> = (0..=250u8).cycle().take(20 << 20).collect();
    std::fs::write(&file, &data).unwrap();
    let path = file.to_str().unwrap();
    let out = rigwire(&["call", &rig.url, "echo", "--bytes", path]);
    fails_saying(&out, 1, "raise it on both");
    let out = rigwire(&[
        "call",
        &rig.url,
        "echo",
        "--bytes",
        path,
        "--max-frame",
        "33554432",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout == data, "the echo came back as other bytes");
    let out = rigwire(&["call", &rig.url, "echo", "--max-frame", "100"]);
    assert_eq!(out.status.code(), Some(2));

    // Two hops: the relay forwards it too once it is raised there.
    let secret = "relay-secret-0123456789";
    let (_processes, clients) = relay_with_data_using(secret, secret, &["--max-frame", "33554432"]);
    let out = Command::new(BIN)
        .args(["call", &clients, "data.echo", "--bytes", path])
        .args(["--max-frame", "33554432"])
        .env("RIGWIRE_SECRET", secret)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout == data, "the echo came back as other bytes");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// At a relay, `methods` lists its services, and `methods URL SERVICE` the
/// methods of one (as `SERVICE.method`); it listed `rigwire.services` only.
#[test]
fn methods_at_a_relay_list_its_services_and_then_a_services_methods() {
    let secret = "relay-secret-0123456789";
    let (_processes, clients) = relay_with_data_using(secret, secret, &[]);
    let methods = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("methods")
            .args(args)
            .env("RIGWIRE_SECRET", secret)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, listed, err) = methods(&[&clients]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        listed.contains(&format!(
            "service data     (rigwire methods {clients} data)"
        )),
        "{listed}"
    );
    let (code, listed, err) = methods(&[&clients, "data"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        listed.lines().any(|l| l.starts_with("data.add ")),
        "{listed}"
    );
    let (code, _, err) = methods(&[&clients, "nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no service 'nope'"), "{err}");
    // A URL naming the service: its methods as that URL calls them.
    let (code, listed, err) = methods(&[&format!("{clients}#data")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(listed.lines().any(|l| l.starts_with("add ")), "{listed}");
    // Its round trip is the service's, through the relay: one that is not
    // there does not answer (a ping would have stopped at the relay).
    let ping = |url: String| {
        let out = Command::new(BIN)
            .args(["ping", &url, "--count", "2"])
            .env("RIGWIRE_SECRET", secret)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, out, err) = ping(format!("{clients}#data"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("over 2 pings"), "{out}");
    let (code, _, err) = ping(format!("{clients}#nope"));
    assert_eq!(code, Some(1));
    assert!(err.contains("no service 'nope'"), "{err}");
}

/// A number of seconds no `Duration` holds is refused as a usage error; it
/// used to panic (`--timeout 1e300`), and so did a huge wait in the libraries.
#[test]
fn seconds_out_of_range_are_refused_not_a_panic() {
    let rig = Rig::start(&[], &[]);
    for (args, flag) in [
        (
            vec!["call", &rig.url, "add", "1", "2", "--timeout", "1e300"],
            "--timeout",
        ),
        (
            vec!["call", &rig.url, "add", "1", "2", "--timeout", "0"],
            "--timeout",
        ),
        (
            vec!["call", &rig.url, "add", "1", "2", "--timeout", "NaN"],
            "--timeout",
        ),
        (
            vec![
                "ibl",
                "send",
                "udp://127.0.0.1:9",
                "init",
                "null",
                "--wait",
                "1e300",
            ],
            "--wait",
        ),
    ] {
        let out = rigwire(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{flag} must be a")),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.len() < 200, "{args:?}: {err}");
    }
    // The largest a Duration holds is a wait without end, not an overflow.
    let out = rigwire(&["call", &rig.url, "add", "1", "2", "--timeout", "1.8e19"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout).trim()),
        (Some(0), "3.0"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_remote_error_prints_kind_and_message_and_exits_one() {
    let rig = Rig::start(&[], &[]);
    let out = rigwire(&["call", &rig.url, "exp.start", r#""2026-11-21_1_mouse""#]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "rigwire: Refused: cannot start while the rig is connected: init first"
    );
    let out = rigwire(&["call", &rig.url, "exp.start", r#""2026-13-01_1_mouse""#]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("BadArguments")
            && text(&out.stderr).contains("not a valid date"),
        "{}",
        text(&out.stderr)
    );
    let out = rigwire(&["call", &rig.url, "no.such"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("NoSuchMethod"));
}

#[test]
fn the_lifecycle_runs_through_the_command_line() {
    let rig = Rig::start(&[], &[]);
    for (method, args, status) in [
        ("exp.init", "null", "initialized"),
        ("exp.start", r#""2026-11-21_2_ZM_1""#, "running"),
        ("exp.stop", r#"{"immediately": true}"#, "stopped"),
        ("exp.cleanup", "null", "connected"),
        // iblutil's init carries a dict of data.
        ("exp.init", r#"{"subject": "ZM_1"}"#, "initialized"),
        ("exp.cleanup", "null", "connected"),
        ("exp.init", "{}", "initialized"),
    ] {
        let out = rigwire(&["call", &rig.url, method, args]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{method}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stdout).trim(),
            format!("\"{status}\""),
            "{method}"
        );
    }
    let out = rigwire(&["call", &rig.url, "exp.info"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (info["status"].as_str(), info["interrupted"].as_bool()),
        (Some("initialized"), Some(false))
    );
}

#[test]
fn a_deadline_exits_one_with_a_clear_message() {
    let rig = Rig::start(&[], &[]);
    // Seconds as a number, or with a unit as people write them.
    for timeout in ["0.2", "200ms", "0.2s"] {
        let out = rigwire(&["call", &rig.url, "sleep", "5", "--timeout", timeout]);
        assert_eq!(out.status.code(), Some(1), "{timeout}");
        assert_eq!(
            text(&out.stderr).trim(),
            "rigwire: deadline exceeded: no answer to 'sleep' within 0.2 s (the peer was told to cancel it)"
        );
    }
    for (timeout, answer) in [("2m", "3.0"), ("1h", "3.0")] {
        let out = rigwire(&["call", &rig.url, "add", "1", "2", "--timeout", timeout]);
        assert_eq!(text(&out.stdout).trim(), answer, "{timeout}");
    }
    let out = rigwire(&["call", &rig.url, "add", "1", "2", "--timeout", "5x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a number of seconds: write 5, 2.5, 500ms, 30s, 2m or 1h"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn connection_failures_exit_two_with_one_line() {
    let out = rigwire(&["call", "tcp://127.0.0.1:1", "add", "[1,2]"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("rigwire: could not connect to tcp://127.0.0.1:1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1);
    let out = rigwire(&["call", "bogus://x", "add"]);
    assert_eq!(out.status.code(), Some(2));
    let out = rigwire(&["call", "tcp://127.0.0.1:1", "add", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not JSON"));
    // A bare word lost its quotes to the shell: the way to write it is shown.
    let out = rigwire(&["call", "tcp://127.0.0.1:1", "add", "1", "two"]);
    fails_saying(&out, 2, "argument 2 (two)");
    fails_saying(&out, 2, r#"a string is written in JSON quotes: '"two"'"#);
}

/// A port still held (a rig left running in another terminal) and an
/// address copied from another machine's settings are the two ways a lab
/// fails to listen; each says what to do, whichever command listens.
#[test]
fn a_port_in_use_or_an_address_not_this_machines_says_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let in_use = "another program listens there, perhaps a rig or relay still running";
    for runtime in ["std", "smol"] {
        let out = rigwire(&["serve", "--listen", &tcp, "--runtime", runtime]);
        fails_saying(&out, 2, &format!("could not listen on {tcp}: "));
        fails_saying(&out, 2, in_use);
    }
    let out = rigwire(&["relay", "--clients", &tcp]);
    fails_saying(&out, 2, in_use);
    let out = rigwire(&["ibl", "rig", "--listen", &tcp]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains(in_use), "{}", text(&out.stderr));
    // 192.0.2.0/24 is for documentation: no machine has such an address.
    let out = rigwire(&["serve", "--listen", "tcp://192.0.2.7:0"]);
    fails_saying(&out, 2, "that address is not one of this machine's");
    let nowhere = scratch("no-such-dir").join("missing").join("rig.sock");
    let out = rigwire(&[
        "serve",
        "--listen",
        &format!("unix://{}", nowhere.display()),
    ]);
    fails_saying(&out, 2, "the socket file's directory does not exist");
    // A path longer than a socket address holds: "SUN_LEN" named nothing.
    let long = format!("unix:///tmp/{}.sock", "x".repeat(120));
    let too_long = "a Unix socket's path holds at most 107 bytes";
    for runtime in ["std", "smol"] {
        let out = rigwire(&["serve", "--listen", &long, "--runtime", runtime]);
        fails_saying(&out, 2, too_long);
    }
    fails_saying(&rigwire(&["call", &long, "add", "1", "2"]), 2, too_long);
    drop(taken);
}

/// `rigwire serve` with `args` and a certificate: its first line, and the
/// process, whose stderr [`logged_until_killed`] reads.
fn serve_logging(
    args: &[&str],
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (String, std::process::Child) {
    let mut rig = Command::new(BIN)
        .arg("serve")
        .args(args)
        .args([
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (first_line(rig.stdout.take().unwrap()), rig)
}

/// What `rig` logged, once killed.
fn logged_until_killed(mut rig: std::process::Child) -> String {
    use std::io::Read;
    let _ = rig.kill();
    let _ = rig.wait();
    let mut logged = String::new();
    rig.stderr
        .take()
        .unwrap()
        .read_to_string(&mut logged)
        .unwrap();
    logged
}

/// A TLS key other users may read is used, and warned of, as a secret
/// file is: any of them could pose as the rig.
#[test]
fn a_private_key_other_users_may_read_is_warned_of() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("key-mode");
    cert_new(&dir, "rig");
    let (cert, key) = (dir.join("rig.crt"), dir.join("rig.key"));
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let (listening, rig) = serve_logging(&["--listen", "tls://127.0.0.1:0"], &cert, &key);
        let logged = logged_until_killed(rig);
        assert!(
            listening.starts_with("listening tls://"),
            "{listening}{logged}"
        );
        let said = logged.contains("rig.key can be read by other users (mode 644)")
            && logged.contains("chmod 600 it");
        assert_eq!(said, warned, "mode {mode:o}: {logged}");
    }
}

#[test]
fn secrets_come_from_a_file_or_the_environment_and_a_wrong_one_exits_two() {
    let dir = std::env::temp_dir().join(format!("rigwire-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "lab-secret-0123456789\n").unwrap();
    let rig = Rig::start(&["--secret-file", file.to_str().unwrap()], &[]);
    let out = rigwire(&[
        "call",
        &rig.url,
        "add",
        "[1,2]",
        "--secret-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Readable by others: used, and warned of; by its owner only: not.
    use std::os::unix::fs::PermissionsExt;
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let secret = file.to_str().unwrap();
        let out = rigwire(&["call", &rig.url, "add", "[1,2]", "--secret-file", secret]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let said = text(&out.stderr).contains("can be read by other users (mode 644)");
        assert_eq!(said, warned, "mode {mode:o}: {}", text(&out.stderr));
    }
    let out = Command::new(BIN)
        .args(["call", &rig.url, "add", "[1,2]"])
        .env("RIGWIRE_SECRET", "lab-secret-0123456789")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = Command::new(BIN)
        .args(["call", &rig.url, "add", "[1,2]"])
        .env("RIGWIRE_SECRET", "a-wrong-secret-of-enough-length")
        .output()
        .unwrap();
    fails_saying(&out, 2, "authentication failed");
    let out = rigwire(&["call", &rig.url, "add", "[1,2]"]);
    fails_saying(&out, 2, "shared secret");
    // There is no way to pass the secret itself as an argument.
    let out = rigwire(&[
        "call",
        &rig.url,
        "add",
        "[1,2]",
        "--secret",
        "lab-secret-0123456789",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn secret_new_writes_a_long_random_secret_only_its_owner_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("rigwire-secret-new-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lab.secret");
    let _ = std::fs::remove_file(&file);
    let out = rigwire(&["secret", "new", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let secret = std::fs::read_to_string(&file).unwrap();
    assert_eq!(secret.trim().len(), 64, "32 bytes, hex");
    assert!(secret.trim().chars().all(|c| c.is_ascii_hexdigit()));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Never over an existing file; and a missing folder is named as such.
    let out = rigwire(&["secret", "new", file.to_str().unwrap()]);
    fails_saying(&out, 2, "lab.secret exists already; not overwritten");
    let lost = dir.join("no-such-folder").join("lab.secret");
    let out = rigwire(&["secret", "new", lost.to_str().unwrap()]);
    fails_saying(&out, 2, "its folder does not exist: make it first");
    // A rig serves with it; a short secret is refused, saying how to make one.
    let rig = Rig::start(&["--secret-file", file.to_str().unwrap()], &[]);
    let out = rigwire(&[
        "call",
        &rig.url,
        "add",
        "[1,2]",
        "--secret-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(text(&out.stdout).trim(), "3.0", "{}", text(&out.stderr));
    let out = Command::new(BIN)
        .args(["call", &rig.url, "add", "[1,2]"])
        .env("RIGWIRE_SECRET", "short")
        .output()
        .unwrap();
    fails_saying(&out, 2, "rigwire secret new");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ping_and_methods() {
    let rig = Rig::start(&[], &[]);
    let out = rigwire(&["ping", &rig.url, "--count", "3"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("rtt ")).count(), 3);
    assert!(stdout.contains("min/median/max = "), "{stdout}");
    // Zero pings is refused, not quietly made one.
    let out = rigwire(&["ping", &rig.url, "--count", "0"]);
    fails_saying(&out, 2, "0 is not in 1..");
    let out = rigwire(&["methods", &rig.url]);
    let listed = text(&out.stdout);
    for name in [
        "echo",
        "add",
        "sleep",
        "exp.init",
        "exp.start",
        "exp.stop",
        "exp.cleanup",
        "exp.status",
        "exp.info",
    ] {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing from {listed}"
        );
    }
    // Described, as spec §2.1 publishes them.
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("add ") && l.ends_with("(f64, f64) -> f64")),
        "{listed}"
    );
}

#[test]
fn sigterm_shuts_the_rig_down_gracefully() {
    let mut rig = Rig::start(&[], &[]);
    rig.signal("-TERM");
    let bound = Duration::from_secs(20);
    let status = exit_within(&mut rig.process.child, bound, "the rig did not stop");
    assert!(status.success(), "{status}");
}

#[test]
fn sigterm_stops_a_rig_whose_peer_never_reads_within_its_grace() {
    let mut rig = Rig::start(&[], &[]);
    // A peer that floods calls and never reads an answer: the rig's output
    // to it is stuck, and it holds the socket open.
    let addr = rig.url.strip_prefix("tcp://").unwrap().to_owned();
    let flood = raw::flood_without_reading(
        &addr,
        rigwire_core::ProtocolConfig::named("deaf"),
        "echo",
        64 * 1024,
        512 * 1024 * 1024,
    );
    assert!(flood.sent < 256 * 1024 * 1024, "the rig kept reading");
    rig.signal("-TERM");
    // The grace period is 5 s, plus a second for the last frames.
    let bound = Duration::from_secs(15);
    let status = exit_within(&mut rig.process.child, bound, "the rig did not stop");
    assert!(status.success(), "{status}");
    drop(flood);
}

#[test]
fn a_rig_killed_mid_call_fails_the_call_at_once() {
    let rig = Rig::start(&[], &[]);
    let client =
        rigwire_std::Client::connect(&rig.url, rigwire_std::Config::named("script")).unwrap();
    let pending = client.start::<_, f64>("sleep", &30.0f64).unwrap();
    client.ping().unwrap();
    rig.signal("-KILL");
    let err = pending.wait().unwrap_err();
    assert!(matches!(err, rigwire_std::Error::Disconnected(_)), "{err}");
}

#[test]
fn the_demo_runs_and_exits_zero() {
    let out = rigwire(&["demo"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let timeline = text(&out.stdout);
    for expected in [
        "exp.init -> Initialized",
        "calls the script back",
        "no 'reward' event within 100ms from rig-1, rig-2, rig-3",
        "DeadlineExceeded",
        "crashes",
        "rig-3    sleep(0.3 s) on all failed: disconnected",
        "exp.cleanup -> Connected",
        "experiment finished",
        "registering 'data' refused: the service name 'data' is already registered by 'scanner'",
        "through the relay -> \"18432 bytes of run1_vol001.dcm\"",
        "#data is the service itself: exp.status -> Connected",
        "the pending call failed after",
        "service 'data' disconnected",
        "the next call fails at once: no service 'data' is connected to this relay",
        "two hops done",
    ] {
        assert!(
            timeline.contains(expected),
            "{expected} missing from\n{timeline}"
        );
    }
}

#[test]
fn bench_reports_every_row_as_json_and_draws_them() {
    let svg = std::env::temp_dir().join(format!("rigwire-bench-{}.svg", std::process::id()));
    let out = rigwire(&[
        "bench",
        "--json",
        "--scale",
        "0.01",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Its own set-up warns of nothing (a certificate on a plain URL, a key
    // others may read): what it prints is the figures.
    assert!(!text(&out.stderr).contains("WARN"), "{}", text(&out.stderr));
    let chart = std::fs::read_to_string(&svg).unwrap();
    std::fs::remove_file(&svg).unwrap();
    assert!(chart.starts_with("<svg"), "{chart:.100}");
    for label in [
        "TCP window of 64 kept full",
        "relay, two hops p50",
        "1.0 = raw",
    ] {
        assert!(chart.contains(label), "{label} missing from the chart");
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 16, "{names:?}");
    for row in [
        "smol TCP serial round trip p50",
        "TCP window of 64 kept full",
        "smol TCP window of 64 kept full",
        "smol TCP window, a task per call",
        "TLS vs tcp serial round trip p50",
        "TLS vs tcp echo of 16 MiB",
        "TLS vs tcp handshakes",
    ] {
        assert!(names.contains(&row), "{row} missing from {names:?}");
    }
    assert!(rows.iter().all(|r| r["ratio"].as_f64().unwrap() > 0.0));
    for side in ["raw", "raw_smol", "rigwire"] {
        let hops = &report["relay"][side];
        for field in ["one_hop", "two_hops", "ratio"] {
            assert!(hops[field].as_f64().unwrap() > 0.0, "{side}: {hops}");
        }
    }
    // Both runtimes at both counts, every peer connected (they live in a
    // child process) and costing something.
    // One section alone, to profile it.
    let out = rigwire(&["bench", "--json", "--scale", "0.01", "--only", "RELAY"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let only: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(only["rows"].as_array().map(Vec::len), Some(0), "{only}");
    assert!(only["relay"]["rigwire"]["two_hops"].as_f64().unwrap() > 0.0);
    assert_eq!(only["idle_memory"].as_array().map(Vec::len), Some(0));
    let idle = report["idle_memory"].as_array().unwrap();
    let runtimes: Vec<&str> = idle
        .iter()
        .map(|m| m["runtime"].as_str().unwrap())
        .collect();
    assert_eq!(runtimes, ["std", "smol", "std", "smol"]);
    assert!(idle.iter().all(|m| m["connections"].as_u64().unwrap() >= 10
        && m["bytes_per_connection"].as_f64().unwrap().is_finite()));
}

const CLIENT_SECRET: (&str, &str) = ("RIGWIRE_SECRET", "clients-secret-0123456");
const SERVICE_SECRET: (&str, &str) = ("RIGWIRE_SERVICE_SECRET", "services-secret-0123456");

#[test]
fn two_hops_from_three_terminals() {
    let relay = relay_using(CLIENT_SECRET.1, SERVICE_SECRET.1, &["--allow", "data"]);
    let (clients, services) = (relay.url("clients"), relay.url("services"));
    assert!(clients.starts_with("tcp://127.0.0.1:"), "{clients}");
    assert!(services.starts_with("ws://127.0.0.1:"), "{services}");
    let service_env = [("RIGWIRE_SECRET", SERVICE_SECRET.1)];
    let service = Spawned::start(
        &[
            "serve", "--via", &services, "--as", "data", "--name", "scanner",
        ],
        &service_env,
        1,
    );
    assert_eq!(service.lines[0], format!("registered data via {services}"));

    let call = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env(CLIENT_SECRET.0, CLIENT_SECRET.1)
            .output()
            .unwrap()
    };
    let out = call(&["call", &clients, "data.add", "[1, 2]"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "3.0");
    let out = call(&["call", &clients, "rigwire.services"]);
    assert_eq!(text(&out.stdout).trim(), r#"["data"]"#);

    // A second service under the same name, or under one not allowed, is refused.
    for (name, reason) in [
        (
            "data",
            "the service name 'data' is already registered by 'scanner'",
        ),
        (
            "camera",
            "this relay does not accept a service named 'camera'",
        ),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--via", &services, "--as", name])
            .env("RIGWIRE_SECRET", SERVICE_SECRET.1)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(reason), "{}", text(&out.stderr));
    }
}

/// A loopback relay whose services need no secret (failure handling is
/// under test, not secrets), the demo rig serving through it as `data`, and
/// a script's `data.sleep(seconds)` that has reached the rig.
struct RelayedCall {
    _relay: Spawned,
    service: Spawned,
    _client: rigwire_std::Client,
    pending: rigwire_std::PendingCall<f64>,
}

impl RelayedCall {
    fn start(seconds: f64) -> RelayedCall {
        let relay = Spawned::start(
            &[
                "relay",
                "--clients",
                "tcp://127.0.0.1:0",
                "--services",
                "ws://127.0.0.1:0/services",
                "--insecure-services",
            ],
            &[],
            2,
        );
        let service = Spawned::start(
            &["serve", "--via", &relay.url("services"), "--as", "data"],
            &[],
            1,
        );
        let client = rigwire_std::Client::connect(
            &relay.url("clients"),
            rigwire_std::Config::named("script"),
        )
        .unwrap();
        let pending = client.start::<_, f64>("data.sleep", &seconds).unwrap();
        // The call has reached the service once a later one has come back.
        assert_eq!(client.call::<_, f64>("data.add", &(1.0, 1.0)).unwrap(), 2.0);
        RelayedCall {
            _relay: relay,
            service,
            _client: client,
            pending,
        }
    }
}

/// SIGTERM to a rig that serves through a relay lets the call it runs
/// finish and be answered, as on its own listener (it closed the relay's
/// connection at once, and the call failed "service 'data' disconnected").
#[test]
fn sigterm_lets_a_call_through_the_relay_finish() {
    let mut call = RelayedCall::start(0.5);
    let term = Command::new("kill")
        .args(["-TERM", &call.service.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let answer = call.pending.wait_timeout(Duration::from_secs(20));
    assert_eq!(answer, Ok(0.5));
    let status = call.service.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn a_service_killed_mid_call_fails_the_call_at_once_naming_it() {
    let mut call = RelayedCall::start(30.0);
    call.service.child.kill().unwrap();
    let _ = call.service.child.wait();
    match call.pending.wait_timeout(Duration::from_secs(20)) {
        Err(rigwire_std::Error::Remote(e)) => {
            assert_eq!(e.kind, rigwire_std::ErrorKind::Unavailable, "{e}");
            assert!(
                e.message.starts_with("service 'data' disconnected"),
                "{}",
                e.message
            );
        }
        other => panic!("expected Unavailable naming the service, got {other:?}"),
    }
}

/// A crowd of strangers at the relay's services URL, past its handshake
/// budget, evicts one another: each eviction once logged a warning, so a
/// crowd's size was the log's. Now only what is left to time out is told.
#[test]
fn a_crowd_of_strangers_at_the_relay_does_not_write_a_line_each() {
    let dir = scratch("relay-crowd");
    let log = dir.join("relay.log");
    let mut relay = Command::new(BIN)
        .args(["relay", "--clients", "tcp://127.0.0.1:0", "--services"])
        .arg("ws://127.0.0.1:0/services")
        .env("RIGWIRE_SECRET", "clients-secret-123456")
        .env("RIGWIRE_SERVICE_SECRET", "services-secret-123456")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(relay.stdout.take().unwrap());
    let services = (0..2)
        .map(|_| {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut out, &mut line).unwrap();
            line
        })
        .find(|l| l.trim_end().ends_with("services"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .unwrap();
    let addr = services
        .trim_start_matches("ws://")
        .trim_end_matches("/services");
    // 300 strangers, 64 of whom the budget holds: the oldest are evicted,
    // which each of them sees as its socket closed.
    let crowd: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    for mut evicted in &crowd[..200] {
        evicted
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let read = std::io::Read::read(&mut evicted, &mut [0; 64]);
        assert!(
            !matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a stranger was never evicted"
        );
    }
    let _ = relay.kill();
    let _ = relay.wait();
    drop(crowd);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text.lines().filter(|l| l.contains("evicted")).count();
    assert_eq!(lines, 0, "{text}");
}

#[test]
fn a_relay_without_a_services_secret_refuses_to_start_unless_told_and_then_warns() {
    let out = Command::new(BIN)
        .args([
            "relay",
            "--clients",
            "tcp://127.0.0.1:0",
            "--services",
            "tcp://127.0.0.1:0",
        ])
        .env_remove("RIGWIRE_SECRET")
        .env_remove("RIGWIRE_SERVICE_SECRET")
        .output()
        .unwrap();
    fails_saying(&out, 2, "--insecure-services");
    // Told: it starts, and says what it risks before anything else.
    let mut child = Command::new(BIN)
        .args([
            "relay",
            "--clients",
            "tcp://127.0.0.1:0",
            "--services",
            "tcp://127.0.0.1:0",
            "--insecure-services",
        ])
        .env_remove("RIGWIRE_SECRET")
        .env_remove("RIGWIRE_SERVICE_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = first_line(child.stderr.take().unwrap());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        first.contains("WARNING") && first.contains("forge"),
        "{first}"
    );
    // The URL it names is the one bound, not port 0 as asked.
    assert!(!first.contains("127.0.0.1:0 "), "{first}");
}

#[test]
fn a_call_timeout_covers_connecting_and_the_handshake() {
    // A server that accepts and then says nothing, not even its Hello.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let holder = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let started = Instant::now();
    let out = rigwire(&["call", &url, "add", "[1,2]", "--timeout", "1"]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Far below the 10 s handshake timeout it would otherwise have waited.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    drop(holder.join());
}

#[test]
fn cert_new_writes_a_certificate_and_a_private_key_and_prints_the_pin() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("cert-new");
    let fingerprint = cert_new(&dir, "rig-1");
    assert!(
        fingerprint.starts_with("sha256:") && fingerprint.len() == 7 + 64,
        "{fingerprint}"
    );
    let key = std::fs::metadata(dir.join("rig-1.key")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let cert = std::fs::read_to_string(dir.join("rig-1.crt")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    // Never over an existing pair.
    let again = rigwire(&[
        "cert",
        "new",
        "--name",
        "rig-1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("not overwritten"),
        "{}",
        text(&again.stderr)
    );
}

/// A `rigwire serve` on `tls://` and `wss://` with `dir`'s `NAME` certificate.
fn tls_rig(dir: &std::path::Path, name: &str) -> Spawned {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    Spawned::start(
        &[
            "serve",
            "--listen",
            "tls://127.0.0.1:0",
            "--listen",
            "wss://127.0.0.1:0/rig",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        &[],
        2,
    )
}

#[test]
fn a_tls_rig_is_called_by_pin_and_every_way_trust_fails_exits_two_saying_why() {
    let dir = scratch("tls-rig");
    let pin = cert_new(&dir, "rig-1");
    let other = cert_new(&dir, "rig-2");
    let rig = tls_rig(&dir, "rig-1");
    // `serve` prints the fingerprint beside each `listening` line.
    let words: Vec<Vec<&str>> = rig
        .lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for line in &words {
        assert_eq!(
            (line[0], line[2], line[3]),
            ("listening", "fingerprint", pin.as_str()),
            "{line:?}"
        );
    }
    let (tls, wss) = (words[0][1].to_owned(), words[1][1].to_owned());
    assert!(
        tls.starts_with("tls://") && wss.starts_with("wss://"),
        "{tls} {wss}"
    );
    for url in [&tls, &wss] {
        let out = rigwire(&["call", url, "add", "[1, 2]", "--pin", &pin]);
        assert_eq!(
            (out.status.code(), text(&out.stdout).trim()),
            (Some(0), "3.0"),
            "{}",
            text(&out.stderr)
        );
    }
    let ca = dir.join("rig-1.crt");
    let plain_tcp = tls.replacen("tls://", "tcp://", 1);
    let plain_ws = wss.replacen("wss://", "ws://", 1);
    // Both layers of TLS right, the websocket mixed up.
    let wss_at_tls = format!("{}/rig", tls.replacen("tls://", "wss://", 1));
    let tls_at_wss = wss
        .replacen("wss://", "tls://", 1)
        .trim_end_matches("/rig")
        .to_owned();
    let use_tls = format!("connect with {tls}");
    let cases: [(&[&str], Vec<&str>); 7] = [
        // Another certificate's pin: both fingerprints named.
        (
            &["call", &tls, "add", "[1, 2]", "--pin", &other],
            vec![&pin, &other],
        ),
        // Trusted by CA, but issued for another name: both names.
        (
            &["call", &tls, "add", "[1, 2]", "--ca", ca.to_str().unwrap()],
            vec!["rig-1", "127.0.0.1"],
        ),
        // Plain clients at TLS ports: told which side expected TLS.
        (
            &["call", &plain_tcp, "add", "[1, 2]"],
            vec!["the server expects TLS", &tls],
        ),
        (
            &["call", &plain_ws, "add", "[1, 2]"],
            vec!["the server expects TLS", &wss],
        ),
        // A pin that is no pin.
        (
            &["ping", &tls, "--pin", "sha256:beef"],
            vec!["64 hex digits"],
        ),
        // (It was an HTTP parse error.)
        (
            &["call", &wss_at_tls, "add", "[1, 2]", "--pin", &pin],
            vec!["does not speak HTTP", &use_tls],
        ),
        (
            &["call", &tls_at_wss, "add", "[1, 2]", "--pin", &pin],
            vec!["the peer answered in HTTP", "wss://"],
        ),
    ];
    for (args, said) in cases {
        let out = rigwire(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for words in said {
            assert!(
                err.contains(words),
                "{args:?}: {err:?} should name {words:?}"
            );
        }
    }
    // A TLS client at a plain rig.
    let plain = Rig::start(&[], &[]);
    let as_tls = plain.url.replacen("tcp://", "tls://", 1);
    let out = rigwire(&["call", &as_tls, "add", "[1, 2]", "--pin", &pin]);
    fails_saying(&out, 2, "does not speak TLS");
}

/// A plain client at a websocket endpoint, or a websocket client at a plain
/// one, is told which URL to use (they got "the peer closed the
/// connection" and an HTTP parse error), and the server says what knocked.
#[test]
fn a_websocket_and_a_plain_endpoint_mixed_up_name_the_url_to_use() {
    let ws = Spawned::start(&["serve", "--listen", "ws://127.0.0.1:0/rig"], &[], 1);
    let ws_url = ws.lines[0].strip_prefix("listening ").unwrap().to_owned();
    let ws_addr = ws_url
        .strip_prefix("ws://")
        .unwrap()
        .strip_suffix("/rig")
        .unwrap();
    let out = rigwire(&["call", &format!("tcp://{ws_addr}"), "add", "1", "2"]);
    fails_saying(&out, 2, "the peer answered in HTTP: a websocket endpoint?");
    let plain = Rig::start(&[], &[]);
    let plain_addr = plain.url.strip_prefix("tcp://").unwrap();
    let out = rigwire(&["call", &format!("ws://{plain_addr}/rig"), "add", "1", "2"]);
    fails_saying(
        &out,
        2,
        &format!(
            "does not speak HTTP, so no websocket (a tcp:// endpoint?): connect with {}",
            plain.url
        ),
    );
}

#[test]
fn expired_and_not_yet_valid_certificates_exit_two_with_their_dates() {
    let dir = scratch("tls-dates");
    for (name, from, to, said) in [
        ("old", (2000, 1, 1), (2001, 2, 3), "expired on 2001-02-03"),
        (
            "young",
            (2999, 1, 1),
            (3000, 1, 1),
            "not valid before 2999-01-01",
        ),
    ] {
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        let rig = tls_rig(&dir, name);
        let url = rig.lines[0].split_whitespace().nth(1).unwrap().to_owned();
        let ca = dir.join(format!("{name}.crt"));
        let out = rigwire(&["call", &url, "add", "[1, 2]", "--ca", ca.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(said), "{}", text(&out.stderr));
    }
}

#[test]
fn two_hops_with_both_relay_ports_under_tls() {
    let dir = scratch("tls-relay");
    let pin = cert_new(&dir, "relay");
    let (cert, key) = (dir.join("relay.crt"), dir.join("relay.key"));
    let relay = Spawned::start(
        &[
            "relay",
            "--clients",
            "tls://127.0.0.1:0",
            "--services",
            "wss://127.0.0.1:0/services",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        &[CLIENT_SECRET, SERVICE_SECRET],
        2,
    );
    let (clients, services) = (relay.url("clients"), relay.url("services"));
    assert!(
        relay.lines.iter().all(|l| l.ends_with(&pin)),
        "{:?}",
        relay.lines
    );
    let service = Spawned::start(
        &["serve", "--via", &services, "--as", "data", "--pin", &pin],
        &[("RIGWIRE_SECRET", SERVICE_SECRET.1)],
        1,
    );
    assert_eq!(service.lines[0], format!("registered data via {services}"));
    let out = Command::new(BIN)
        .args(["call", &clients, "data.add", "[1, 2]", "--pin", &pin])
        .env(CLIENT_SECRET.0, CLIENT_SECRET.1)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "3.0");
}

#[test]
fn output_read_only_in_part_ends_the_command_quietly() {
    let started = Instant::now();
    let rig = Rig::start(&[], &[]);
    // `rigwire ping URL --count 100000 | head -1`: the reader goes after a line.
    let mut ping = Command::new(BIN)
        .args(["ping", &rig.url, "--count", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = first_line(ping.stdout.take().unwrap()); // and the pipe closes
    assert!(line.starts_with("rtt "), "{line}");
    let out = ping.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
    // Nowhere to write at all: said, exit 1.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(BIN)
        .args(["methods", &rig.url])
        .stdout(full)
        .output()
        .unwrap();
    fails_saying(
        &out,
        1,
        "rigwire: cannot write to standard output: No space left on device",
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// A port for a relay that is not up yet: it closes every connection at
/// once until `up` is set, then forwards each to `to`. Counts the
/// connections it closed.
struct NotYet {
    url_port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    closed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl NotYet {
    fn start(to: std::net::SocketAddr) -> NotYet {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url_port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (is_up, count) = (up.clone(), closed.clone());
        std::thread::spawn(move || {
            for socket in listener.incoming().flatten() {
                if !is_up.load(Ordering::SeqCst) {
                    count.fetch_add(1, Ordering::SeqCst);
                    continue; // dropped: closed at once
                }
                let Ok(relay) = std::net::TcpStream::connect(to) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (socket.try_clone().unwrap(), relay.try_clone().unwrap()),
                    (relay, socket),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        NotYet {
            url_port,
            up,
            closed,
        }
    }
}

#[test]
fn serve_via_a_relay_not_up_yet_waits_for_it_and_registers_once_it_is() {
    use std::io::BufRead;
    use std::sync::atomic::Ordering;
    let started = Instant::now();
    let relay = relay_using(CLIENT_SECRET.1, SERVICE_SECRET.1, &[]);
    let services = relay.url("services");
    let relay_addr: std::net::SocketAddr = services
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let door = NotYet::start(relay_addr);
    let via = format!("ws://127.0.0.1:{}/services", door.url_port);
    // As rt-cloud's services do, the service may start before its relay.
    let mut service = Command::new(BIN)
        .args(["serve", "--via", &via, "--as", "data", "--name", "scanner"])
        .env("RIGWIRE_SECRET", SERVICE_SECRET.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(service.stdout.take().unwrap()).lines();
    while door.closed.load(Ordering::SeqCst) < 3 {
        assert!(
            service.try_wait().unwrap().is_none(),
            "serve --via gave up on a relay not up yet"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    door.up.store(true, Ordering::SeqCst);
    let registered = lines.next().unwrap().unwrap();
    assert_eq!(registered, format!("registered data via {via}"));
    let clients = relay.url("clients");
    let out = Command::new(BIN)
        .args(["call", &format!("{clients}#data"), "add", "1", "2"])
        .env("RIGWIRE_SECRET", CLIENT_SECRET.1)
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout).trim(), "3.0", "{}", text(&out.stderr));
    let _ = service.kill();
    let _ = service.wait();
    // A failure no wait mends ends it at once: a wrong secret.
    let out = Command::new(BIN)
        .args(["serve", "--via", &services, "--as", "data"])
        .env("RIGWIRE_SECRET", "not-the-services-secret")
        .output()
        .unwrap();
    fails_saying(&out, 2, "authentication failed");
    // A signal while it waits shuts it down.
    door.up.store(false, Ordering::SeqCst);
    let waiting = Spawned::start(
        &[
            "serve",
            "--listen",
            "tcp://127.0.0.1:0",
            "--via",
            &via,
            "--as",
            "data",
        ],
        &[("RIGWIRE_SECRET", SERVICE_SECRET.1)],
        1,
    );
    assert!(
        waiting.lines[0].starts_with("listening tcp://"),
        "{:?}",
        waiting.lines
    );
    let ok = Command::new("kill")
        .args(["-TERM", &waiting.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut waiting = waiting;
    let bound = Duration::from_secs(30);
    let status = exit_within(&mut waiting.child, bound, "SIGTERM did not end the wait");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn tls_files_or_a_pin_a_plain_url_would_leave_unused_are_warned_of() {
    let dir = scratch("tls-unused");
    let pin = cert_new(&dir, "rig");
    let (cert, key) = (dir.join("rig.crt"), dir.join("rig.key"));
    for runtime in ["std", "smol"] {
        // Given a certificate, it would once serve tcp:// in clear, silently.
        let args = ["--runtime", runtime, "--listen", "tcp://127.0.0.1:0"];
        let (listening, rig) = serve_logging(&args, &cert, &key);
        let url = listening.strip_prefix("listening ").unwrap().to_owned();
        // A client's pin on a plain URL checks nothing: said too.
        let out = rigwire(&["call", &url, "add", "1", "2", "--pin", &pin]);
        assert_eq!(text(&out.stdout).trim(), "3.0", "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(&format!(
                "a certificate pin is given, but {url} is not TLS: nothing is encrypted and no \
                 certificate is checked"
            )),
            "{}",
            text(&out.stderr)
        );
        let logged = logged_until_killed(rig);
        assert!(
            logged.contains(&format!(
                "a TLS certificate is given, but {url} is not TLS: it serves in clear"
            )),
            "{runtime}: {logged}"
        );
    }
}
