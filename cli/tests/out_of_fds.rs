//! A rig out of file descriptors: `accept` fails at once while the
//! connection waits in the backlog, for as long as it lasts. The std rig
//! spun on it (a core at 80 % and 100,000 warnings in 3 s), the smol rig
//! logged a warning every 10 ms; both must pause, say so once, and serve
//! again once descriptors are free.

mod common;
#[path = "../../tests/tests/common/raw.rs"]
mod raw;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{first_line, scratch, BIN};

/// Calls `add` on the rig at `url` until it answers (the backlog of gone
/// strangers goes first), for at most 30 s.
fn answers_again(url: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let config = rigwire_std::Config::named("script")
            .connect_within(Duration::from_secs(5))
            .default_timeout(Duration::from_secs(5));
        let called = rigwire_std::Client::connect(url, config)
            .and_then(|rig| rig.call::<_, f64>("add", &(1.0, 2.0)));
        if called == Ok(3.0) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A `rigwire` child given 40 file descriptors (a few dozen connections
/// exhaust them), logging to `log`; its first line's URL.
fn starved(args: &str, log: &std::path::Path) -> (Child, String) {
    let script = format!("ulimit -n 40 && exec \"$0\" {args}");
    let mut child = Command::new("sh")
        .args(["-c", &script, BIN])
        .env_remove("RIGWIRE_SECRET")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let first = first_line(child.stdout.take().unwrap());
    let url = first.split_whitespace().nth(1).unwrap().to_owned();
    (child, url)
}

/// Strangers that connect to `url` and say nothing, more than a starved
/// child can hold, for 2 s: the CPU time the child spent meanwhile, and how
/// long that was.
fn crowd(child: &Child, url: &str) -> (Duration, Duration) {
    let addr = url.split_once("://").unwrap().1;
    // (A listener that has given up refuses them: the test says so later.)
    let strangers: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (cpu, wall) = (raw::cpu_time_of(child.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let spent = (raw::cpu_time_of(child.id()) - cpu, wall.elapsed());
    drop(strangers);
    spent
}

#[test]
fn a_rig_out_of_file_descriptors_neither_spins_nor_floods_its_log_and_serves_again() {
    let dir = scratch("out-of-fds");
    for runtime in ["std", "smol"] {
        let log = dir.join(format!("{runtime}.log"));
        let serve = format!("serve --runtime {runtime} --listen tcp://127.0.0.1:0");
        let (mut rig, url) = starved(&serve, &log);
        let (spent, waited) = crowd(&rig, &url);
        let served = answers_again(&url);
        let _ = rig.kill();
        let _ = rig.wait();
        let logged = std::fs::read_to_string(&log).unwrap();
        let failures = logged
            .lines()
            .filter(|l| l.contains("accept failed") || l.contains("accept still failing"))
            .count();
        assert!(
            spent < waited / 4,
            "{runtime}: {spent:?} of CPU in {waited:?} while out of descriptors: it spins"
        );
        assert!(served, "{runtime}: never served again:\n{logged}");
        assert!(
            (1..=2).contains(&failures),
            "{runtime}: {failures} lines of failed accepts (once, then once a minute)"
        );
        assert!(
            logged.contains("accepting again, after "),
            "{runtime}: the recovery is not told:\n{logged}"
        );
    }
}

/// The iblutil rig's TCP listener ended its accepting for good at the
/// first failed accept: every later client was left unanswered.
#[test]
fn an_iblutil_rig_out_of_file_descriptors_accepts_again() {
    let dir = scratch("out-of-fds-ibl");
    let (mut rig, url) = starved("ibl rig --listen tcp://127.0.0.1:0", &dir.join("ibl.log"));
    crowd(&rig, &url);
    let until = Instant::now() + Duration::from_secs(30);
    let echoed = loop {
        let sent = Command::new(BIN)
            .args(["ibl", "send", &url, "init", r#"{"subject": "test"}"#])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if sent.success() || Instant::now() > until {
            break sent.success();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = rig.kill();
    let _ = rig.wait();
    assert!(echoed, "the iblutil rig never took a connection again");
}

/// The control page's HTTP listener spun on a failed accept (a core at
/// 100 %) for as long as its descriptors were taken.
#[test]
fn the_control_page_out_of_file_descriptors_does_not_spin_and_answers_again() {
    use std::io::{Read, Write};

    let dir = scratch("out-of-fds-control");
    let control = "control --listen http://127.0.0.1:0 --rig r=tcp://127.0.0.1:1";
    let (mut page, url) = starved(control, &dir.join("control.log"));
    let (spent, waited) = crowd(&page, &url);
    let addr = url.split_once("://").unwrap().1.to_owned();
    // Its answer without the token: it serves.
    let refused = || -> std::io::Result<String> {
        let mut http = TcpStream::connect(&addr)?;
        http.set_read_timeout(Some(Duration::from_secs(10)))?;
        http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut answer = String::new();
        http.read_to_string(&mut answer)?;
        Ok(answer)
    };
    let until = Instant::now() + Duration::from_secs(30);
    let answered = loop {
        match refused() {
            Ok(answer) if answer.starts_with("HTTP/1.1 401") => break true,
            _ if Instant::now() > until => break false,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let _ = page.kill();
    let _ = page.wait();
    assert!(
        spent < waited / 4,
        "{spent:?} of CPU in {waited:?} while out of descriptors: it spins"
    );
    assert!(answered, "the page never answered again");
}
