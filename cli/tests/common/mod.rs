//! Helpers shared by the command's tests: the binary, and a child process
//! whose first lines are read (the `listening URL` lines a script waits for).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};

/// The `rigwire` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_rigwire");

/// The first line `out` (a child's stdout or stderr) gives, trimmed.
pub fn first_line(out: impl std::io::Read) -> String {
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    line.trim().to_owned()
}

/// Waits for `child` to exit, for at most `bound` (then kills it and
/// panics saying `what` did not end): a test's own bound on a process.
pub fn exit_within(child: &mut Child, bound: std::time::Duration, what: &str) -> ExitStatus {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            panic!("{what} within {bound:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A `rigwire` child process and its first lines, killed when dropped.
pub struct Spawned {
    pub child: Child,
    pub lines: Vec<String>,
}

impl Spawned {
    pub fn start(args: &[&str], env: &[(&str, &str)], lines: usize) -> Spawned {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env_remove("RIGWIRE_SECRET");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let lines = (0..lines)
            .map(|_| {
                let mut line = String::new();
                out.read_line(&mut line).unwrap();
                line.trim().to_owned()
            })
            .collect();
        Spawned { child, lines }
    }

    /// The second word of the line whose third word is `suffix` (`listening
    /// URL clients`, and a fingerprint after it under TLS).
    pub fn url(&self, suffix: &str) -> String {
        self.lines
            .iter()
            .find(|l| l.split_whitespace().nth(2) == Some(suffix.trim()))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no line for {suffix:?} in {:?}", self.lines))
            .to_owned()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay on tcp (services dialing in over ws) with the demo rig
/// registered behind it as `data`, each side with its secret; the processes
/// and the relay's clients URL.
pub fn relay_with_data(clients_secret: &str, services_secret: &str) -> (Vec<Spawned>, String) {
    relay_with_data_using(clients_secret, services_secret, &[])
}

/// [`relay_with_data`], with `extra` arguments for both the relay and the
/// service (`--max-frame BYTES`, say).
pub fn relay_with_data_using(
    clients_secret: &str,
    services_secret: &str,
    extra: &[&str],
) -> (Vec<Spawned>, String) {
    let relay = relay_using(clients_secret, services_secret, extra);
    let services = relay.url("services");
    let mut args = vec!["serve", "--via", &services, "--as", "data"];
    args.extend_from_slice(extra);
    let service = Spawned::start(&args, &[("RIGWIRE_SECRET", services_secret)], 1);
    let clients = relay.url("clients");
    (vec![relay, service], clients)
}

/// `rigwire relay`, clients on tcp and services on ws (loopback, ports the
/// system picks), with `extra` arguments and nobody behind it yet.
pub fn relay_using(clients_secret: &str, services_secret: &str, extra: &[&str]) -> Spawned {
    let mut args = vec![
        "relay",
        "--clients",
        "tcp://127.0.0.1:0",
        "--services",
        "ws://127.0.0.1:0/services",
    ];
    args.extend_from_slice(extra);
    Spawned::start(
        &args,
        &[
            ("RIGWIRE_SECRET", clients_secret),
            ("RIGWIRE_SERVICE_SECRET", services_secret),
        ],
        2,
    )
}

/// A fresh temporary folder of this test process.
pub fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rigwire-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `rigwire cert new --name NAME` into `dir` (`NAME.crt`, `NAME.key`): the
/// fingerprint it prints.
pub fn cert_new(dir: &std::path::Path, name: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "cert",
            "new",
            "--name",
            name,
            "--out",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
