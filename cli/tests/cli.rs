//! The `rigwire` command as a user runs it: exit codes, messages, signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rigwire");

/// A `rigwire serve` child process, killed when dropped.
struct Rig {
    child: Child,
    url: String,
}

impl Rig {
    fn start(extra: &[&str], env: &[(&str, &str)]) -> Rig {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--listen",
            "tcp://127.0.0.1:0",
            "--name",
            "test-rig",
        ])
        .args(extra);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("first line: {first:?}"))
            .to_owned();
        assert!(url.starts_with("tcp://127.0.0.1:"), "{url}");
        Rig { child, url }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
}

#[test]
fn a_remote_error_prints_kind_and_message_and_exits_one() {
    let rig = Rig::start(&[], &[]);
    let out = rigwire(&["call", &rig.url, "exp.start", r#""2026-11-21_1_mouse""#]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "rigwire: Handler: cannot start while the rig is connected: init first"
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
        (Some("connected"), Some(true))
    );
}

#[test]
fn a_deadline_exits_one_with_a_clear_message() {
    let rig = Rig::start(&[], &[]);
    let out = rigwire(&["call", &rig.url, "sleep", "5", "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "rigwire: deadline exceeded: no answer within 0.2 s"
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
}

#[test]
fn secrets_come_from_a_file_or_the_environment_and_a_wrong_one_exits_two() {
    let dir = std::env::temp_dir().join(format!("rigwire-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "lab-secret\n").unwrap();
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
    let out = Command::new(BIN)
        .args(["call", &rig.url, "add", "[1,2]"])
        .env("RIGWIRE_SECRET", "lab-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = Command::new(BIN)
        .args(["call", &rig.url, "add", "[1,2]"])
        .env("RIGWIRE_SECRET", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("authentication failed"),
        "{}",
        text(&out.stderr)
    );
    let out = rigwire(&["call", &rig.url, "add", "[1,2]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("shared secret"),
        "{}",
        text(&out.stderr)
    );
    // There is no way to pass the secret itself as an argument.
    let out = rigwire(&["call", &rig.url, "add", "[1,2]", "--secret", "lab-secret"]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn ping_and_methods() {
    let rig = Rig::start(&[], &[]);
    let out = rigwire(&["ping", &rig.url, "--count", "3"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("rtt ")).count(), 3);
    assert!(stdout.contains("min/median/max = "), "{stdout}");
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
            listed.lines().any(|l| l == name),
            "{name} missing from {listed}"
        );
    }
}

#[test]
fn sigterm_shuts_the_rig_down_gracefully() {
    let mut rig = Rig::start(&[], &[]);
    rig.signal("-TERM");
    let started = Instant::now();
    loop {
        if let Some(status) = rig.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the rig did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
        "no answer within 100ms from rig-1, rig-2, rig-3",
        "DeadlineExceeded",
        "crashes",
        "rig-3    sleep(0.3 s) on all failed: disconnected",
        "exp.cleanup -> Connected",
        "experiment finished",
    ] {
        assert!(
            timeline.contains(expected),
            "{expected} missing from\n{timeline}"
        );
    }
}

#[test]
fn bench_reports_every_row_as_json() {
    let out = rigwire(&["bench", "--json", "--scale", "0.01"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(
        names.contains(&"smol TCP serial round trip p50"),
        "{names:?}"
    );
    assert!(rows.iter().all(|r| r["ratio"].as_f64().unwrap() > 0.0));
    let idle = report["idle_memory"].as_array().unwrap();
    assert_eq!(idle.len(), 2);
    assert!(idle
        .iter()
        .all(|m| m["connections"].as_u64().unwrap() >= 10));
}
