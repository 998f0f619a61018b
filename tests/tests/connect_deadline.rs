//! `Config::connect_within(limit)` holds for the whole attempt to connect,
//! in both runtimes: a server that answers each step late (here the
//! websocket upgrade, then no Hello at all) is given up on by the limit. The
//! steps once each had the whole limit, so the attempt took their sum.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use rigwire_core::{Config, Error};
use rigwire_ws::Handshake;

/// What the user asks of the whole attempt.
const LIMIT: Duration = Duration::from_secs(2);
/// How late the server answers the websocket upgrade: most of the limit, so
/// that a handshake given a limit of its own ends well past it.
const UPGRADE_LATE_BY: Duration = Duration::from_millis(1700);
/// Slack for a loaded machine: the old attempt took about 3.7 s.
const BOUND: Duration = Duration::from_secs(3);

/// A websocket server that answers the upgrade late and then never speaks
/// rigwire; it holds the socket until the client leaves (or 20 s pass).
fn slow_server() -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/rig", listener.local_addr().unwrap());
    let server = thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut upgrade = Handshake::server("/rig", 1 << 20).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "the client left during its upgrade request");
            if upgrade.feed(&buf[..n]).unwrap().is_some() {
                break;
            }
        }
        thread::sleep(UPGRADE_LATE_BY);
        socket.write_all(&upgrade.take_output()).unwrap();
        while matches!(socket.read(&mut buf), Ok(n) if n > 0) {}
    });
    (url, server)
}

fn config() -> Config {
    Config::named("impatient").connect_within(LIMIT)
}

/// Checks one attempt: it failed, and by the limit (with slack), not by
/// the sum of the steps' times.
fn given_up_by_the_limit(outcome: Result<(), Error>, started: Instant) {
    let took = started.elapsed();
    let err = outcome.expect_err("a server that never says Hello cannot be connected to");
    assert!(
        took < BOUND,
        "connect_within({LIMIT:?}) gave up after {took:?}: {err}"
    );
    assert!(
        err.to_string().contains(&format!("{LIMIT:?}")),
        "the error names the limit the user set: {err}"
    );
}

#[test]
fn a_std_client_connects_within_its_limit_in_all() {
    let (url, server) = slow_server();
    let started = Instant::now();
    let outcome = rigwire_std::Client::connect(&url, config()).map(drop);
    given_up_by_the_limit(outcome, started);
    server.join().unwrap();
}

#[test]
fn a_smol_client_connects_within_its_limit_in_all() {
    let (url, server) = slow_server();
    let started = Instant::now();
    let outcome = smol::block_on(rigwire_smol::Client::connect(&url, config())).map(drop);
    given_up_by_the_limit(outcome, started);
    server.join().unwrap();
}

/// A limit that has run out before the first address is tried is what the
/// error names, in seconds as every other limit (it once read "1ns"); the
/// std client once said the address "resolved to no address", which it had
/// not.
#[test]
fn a_limit_spent_before_dialing_is_named_as_the_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let limit = Duration::from_nanos(1);
    let config = Config::named("hasty").connect_within(limit);
    let std_err = rigwire_std::Client::connect(&url, config.clone()).unwrap_err();
    let smol_err = smol::block_on(rigwire_smol::Client::connect(&url, config)).unwrap_err();
    for err in [std_err, smol_err] {
        let text = err.to_string();
        assert!(
            text.contains("no connection within 0.000000001 s"),
            "{text}"
        );
        assert!(!text.contains("resolved to no address"), "{text}");
    }
}
