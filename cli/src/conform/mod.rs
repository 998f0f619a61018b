//! `rigwire conform`: tests any implementation of the protocol against
//! `spec/PROTOCOL.md`, one scripted case per rule, the way websocket
//! libraries run the Autobahn suite.
//!
//! * `rigwire conform server URL` dials a server under test (which exposes
//!   the conformance rig of §2.1: `echo`, `add`, `sleep`), see [`server`].
//! * `rigwire conform client --listen URL` plays the server for a client
//!   under test, which runs the script of §11.2, see [`client`].
//!
//! Each case prints one line, `PASS`/`FAIL`/`SKIP`, with its spec section
//! and, when it fails, what was expected and what arrived; `--json` prints
//! the same as one JSON report. The exit code is 1 if any case failed.

/// The table of cases, one per line (kept out of rustfmt's way, which
/// would spread each over six): `name, section, rule => function;`.
macro_rules! case_table {
    ($target:ty: $($name:literal, $section:literal, $rule:literal => $run:ident;)*) => {
        vec![$(crate::conform::Case::<$target> {
            name: $name,
            section: $section,
            rule: $rule,
            run: $run,
        }),*]
    };
}
pub mod client;
pub mod server;
mod wire;

use std::time::Duration;

use rigwire_std::core::message::{Hello, MAGIC};
use rigwire_std::core::{Message, Secret, TlsSettings, Url, PROTOCOL_VERSION};
use rigwire_ws::ClientTls;
use serde::Serialize;

pub use wire::{describe, Got, Listener, Wire, OUR_MAX_FRAME};

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The implementation did what the rule says.
    Pass,
    /// It did not; `expected` and `got` say how.
    Fail,
    /// The rule does not apply to this set-up (say, a secret case without one).
    Skip,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The case's name, such as `cancel`.
    pub case: &'static str,
    /// The spec section of its rule, such as `6.4`.
    pub section: &'static str,
    /// The rule, in a few words.
    pub rule: &'static str,
    /// How it ended.
    pub verdict: Verdict,
    /// What the rule asks for (on a failure or a skip: why).
    pub expected: String,
    /// What the implementation did.
    pub got: String,
}

/// A case that did not pass: what the rule wanted, and what happened.
#[derive(Debug)]
pub struct Mismatch {
    expected: String,
    got: String,
    skip: bool,
}

/// What a case's body returns.
pub type Checked = Result<(), Mismatch>;

/// Fails a case: the rule wanted `expected`, the peer did `got`.
pub fn fail(expected: impl Into<String>, got: impl Into<String>) -> Mismatch {
    Mismatch {
        expected: expected.into(),
        got: got.into(),
        skip: false,
    }
}

/// Skips a case that does not apply, saying why.
pub fn skip(why: impl Into<String>) -> Mismatch {
    Mismatch {
        expected: why.into(),
        got: String::new(),
        skip: true,
    }
}

/// A case: its name, spec section, rule and body.
pub struct Case<T: ?Sized> {
    /// See [`Outcome::case`].
    pub name: &'static str,
    /// See [`Outcome::section`].
    pub section: &'static str,
    /// See [`Outcome::rule`].
    pub rule: &'static str,
    /// Runs the case against the target.
    pub run: fn(&T) -> Checked,
}

/// Runs `case` and turns its result into an [`Outcome`].
pub fn judge<T: ?Sized>(case: &Case<T>, target: &T) -> Outcome {
    let (verdict, expected, got) = match (case.run)(target) {
        Ok(()) => (Verdict::Pass, String::new(), String::new()),
        Err(m) if m.skip => (Verdict::Skip, m.expected, m.got),
        Err(m) => (Verdict::Fail, m.expected, m.got),
    };
    Outcome {
        case: case.name,
        section: case.section,
        rule: case.rule,
        verdict,
        expected,
        got,
    }
}

/// Prints one case's line as it ends (text mode).
pub fn print_line(o: &Outcome) {
    let word = match o.verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Skip => "SKIP",
    };
    let mut line = format!("{word} §{:<4} {:<28} {}", o.section, o.case, o.rule);
    match o.verdict {
        Verdict::Pass => {}
        Verdict::Fail => {
            line += &format!("\n     expected {}\n     got      {}", o.expected, o.got)
        }
        Verdict::Skip => line += &format!(" ({})", o.expected),
    }
    crate::announce(&[line]);
}

/// The whole report, for `--json`.
#[derive(Serialize)]
pub struct Report<'a> {
    /// `server` or `client`.
    pub mode: &'static str,
    /// The URL tested or listened on.
    pub url: &'a str,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Cases that did not apply.
    pub skipped: usize,
    /// Every case, in the order run.
    pub cases: &'a [Outcome],
}

/// Prints the summary (or the JSON report) and returns the exit code: 1 if
/// any case failed.
pub fn finish(mode: &'static str, url: &str, outcomes: &[Outcome], json: bool) -> u8 {
    let count = |v| outcomes.iter().filter(|o| o.verdict == v).count();
    let report = Report {
        mode,
        url,
        passed: count(Verdict::Pass),
        failed: count(Verdict::Fail),
        skipped: count(Verdict::Skip),
        cases: outcomes,
    };
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        outln!(
            "{} passed, {} failed, {} skipped",
            report.passed,
            report.failed,
            report.skipped
        );
    }
    u8::from(report.failed > 0)
}

/// The tester's `Hello`: name "conform", a fresh nonce, our limits.
pub fn our_hello(secret_required: bool) -> Hello {
    let nonce = rigwire_twin::nonce();
    Hello {
        magic: MAGIC,
        min_version: PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        name: "conform".into(),
        nonce,
        max_frame: OUR_MAX_FRAME,
        max_incoming_calls: 16,
        secret_required,
    }
}

/// Checks a peer's `Hello` against §5.1, given whether we hold a secret.
pub fn check_hello(hello: &Hello, secret: Option<&Secret>) -> Checked {
    if hello.magic != MAGIC {
        return Err(fail("magic RGWR", format!("{:02x?}", hello.magic)));
    }
    if !(hello.min_version..=hello.max_version).contains(&PROTOCOL_VERSION) {
        return Err(fail(
            "a version range that includes 1",
            format!("v{}..=v{}", hello.min_version, hello.max_version),
        ));
    }
    if hello.max_frame < 4096 || hello.max_incoming_calls == 0 {
        return Err(fail(
            "max_frame ≥ 4096 and max_incoming_calls ≥ 1",
            format!("{} and {}", hello.max_frame, hello.max_incoming_calls),
        ));
    }
    if hello.name.len() > 255 {
        return Err(fail(
            "a name of at most 255 bytes",
            format!("{} bytes", hello.name.len()),
        ));
    }
    if hello.nonce == [0; 32] {
        return Err(fail("32 fresh random nonce bytes", "all zeros"));
    }
    if hello.secret_required != secret.is_some() {
        return Err(fail(
            format!(
                "secret_required {} (conform was {} a secret)",
                secret.is_some(),
                if secret.is_some() {
                    "given"
                } else {
                    "not given"
                }
            ),
            format!("secret_required {}", hello.secret_required),
        ));
    }
    Ok(())
}

/// Checks that `got` is an `Auth` carrying `expected`, the proof `whose`
/// side owes (§5.3).
pub fn check_proof(got: &Got, expected: [u8; 32], whose: &str) -> Checked {
    match got.message() {
        Some(Message::Auth { proof }) if proof == expected => Ok(()),
        Some(Message::Auth { .. }) => Err(fail(
            format!("{whose} Auth: HMAC-SHA256 over the transcript (§5.3)"),
            "a proof that does not verify",
        )),
        _ => Err(fail(format!("{whose} Auth"), got.describe())),
    }
}

/// A `Hello` frame, decoded, or what came instead.
pub fn hello_of(got: &Got) -> Result<Hello, Mismatch> {
    match got.message() {
        Some(Message::Hello(h)) => Ok(h),
        _ => Err(fail("a Hello", got.describe())),
    }
}

/// How long the tester waits for an answer that should come at once.
pub const PROMPT: Duration = Duration::from_secs(3);

/// `rigwire conform server URL`: runs every case (or those named in
/// `only`) against the server at `url` (a relay, reaching the rig as
/// `service`, if given); returns the exit code.
///
/// # Errors
/// A bad URL, a name in `only` that is no case, or nothing answering at
/// `url` ([`server::answers`]).
pub fn test_server(
    url: &str,
    secret: Option<Secret>,
    tls: TlsSettings,
    json: bool,
    only: &[String],
    service: Option<String>,
) -> Result<u8, String> {
    let url_parsed = Url::parse(url).map_err(|e| e.to_string())?;
    let tls = match url_parsed.is_tls() {
        true => Some(ClientTls::from_settings(&tls).map_err(|e| e.to_string())?),
        false => None,
    };
    let target = server::Target {
        url: url_parsed,
        secret,
        service,
        tls,
    };
    let cases = server::cases();
    if let Some(unknown) = only
        .iter()
        .find(|n| !cases.iter().any(|c| c.name == n.as_str()))
    {
        let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
        return Err(format!(
            "no case '{unknown}'; the cases: {}",
            names.join(", ")
        ));
    }
    server::answers(&target)?;
    let mut outcomes = Vec::new();
    for case in cases
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|n| n == c.name))
    {
        let outcome = judge(case, &target);
        if !json {
            print_line(&outcome);
        }
        outcomes.push(outcome);
    }
    Ok(finish("server", url, &outcomes, json))
}

/// `rigwire conform client --listen URL`: waits for the script's
/// connections (spec §11.2), one case each; returns the exit code. Prints
/// `listening URL` first, for the script to read.
///
/// # Errors
/// A bad URL, or an address that cannot be bound.
pub fn test_client(
    listen: &str,
    secret: Option<Secret>,
    tls: TlsSettings,
    json: bool,
    wait: Duration,
) -> Result<u8, String> {
    let url = Url::parse(listen).map_err(|e| e.to_string())?;
    let identity = rigwire_ws::server_identity(&url, &tls).map_err(|e| e.to_string())?;
    let listener =
        Listener::bind(&url, identity).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let url = listener.local_url();
    crate::announce(&[format!("listening {url}")]);
    eprintln!(
        "conform: waiting for the client under test: {} connections, each calling add [1, 2] in JSON with a {} s deadline (spec §11.2)",
        client::CONNECTIONS,
        client::SCRIPT_DEADLINE.as_secs()
    );
    let stage = client::Stage {
        listener,
        secret,
        wait,
        seen: std::cell::RefCell::new(0),
    };
    let mut outcomes = Vec::new();
    for case in client::cases() {
        let outcome = judge(&case, &stage);
        if !json {
            print_line(&outcome);
        }
        outcomes.push(outcome);
    }
    Ok(finish("client", &url, &outcomes, json))
}
