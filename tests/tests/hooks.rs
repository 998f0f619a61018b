//! A server's `on_connect` and `on_disconnect` come in pairs, in both
//! runtimes: a connection that never got established (a stranger speaking
//! something else, a client with the wrong secret) runs neither. It once
//! ran `on_disconnect` alone, so a rig that counted its peers by the two
//! hooks counted below zero whenever a port scanner or a misconfigured
//! script knocked.

use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_core::Config;

const SECRET: &str = "hooks-secret-0123456789";

/// What the hooks saw: peers connected now, and every hook run.
#[derive(Default)]
struct Count {
    connected: AtomicI64,
    runs: AtomicUsize,
}

impl Count {
    /// A hook ran: `change` peers more connected.
    fn heard(&self, change: i64) {
        self.connected.fetch_add(change, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
    }
}

/// Knocks as strangers and misconfigured peers do, then connects properly
/// and leaves; returns once the server has heard the proper one leave.
fn knock_then_visit(url: &str, count: &Count) {
    let addr = url.strip_prefix("tcp://").unwrap();
    // An HTTP request at a plain endpoint, and bytes that are nothing.
    for garbage in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0xff; 64][..]] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(garbage).unwrap();
        let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
    }
    let wrong = Config::named("intruder")
        .secret("not-the-secret-0123456")
        .unwrap();
    assert!(rigwire_std::Client::connect(url, wrong).is_err());
    let none = Config::named("forgetful");
    assert!(rigwire_std::Client::connect(url, none).is_err());
    let right = Config::named("script").secret(SECRET).unwrap();
    let client = rigwire_std::Client::connect(url, right).unwrap();
    let sum: i64 = client.call("add", &(1i64, 2i64)).unwrap();
    assert_eq!(sum, 3);
    client.close();
    let until = Instant::now() + Duration::from_secs(10);
    while count.runs.load(Ordering::SeqCst) < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A late unpaired hook would show here.
    std::thread::sleep(Duration::from_millis(100));
}

fn config() -> Config {
    Config::named("rig").secret(SECRET).unwrap()
}

#[test]
fn hooks_pair_up_in_the_blocking_runtime() {
    let count = Arc::new(Count::default());
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", config()).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    let (up, down) = (Arc::clone(&count), Arc::clone(&count));
    server.on_connect(move |_| up.heard(1));
    server.on_disconnect(move |_, _| down.heard(-1));
    let server = server.start().unwrap();
    knock_then_visit(&server.local_url(), &count);
    assert_eq!(
        (
            count.runs.load(Ordering::SeqCst),
            count.connected.load(Ordering::SeqCst)
        ),
        (2, 0),
        "hooks run, peers connected"
    );
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn hooks_pair_up_in_the_async_runtime() {
    let count = Arc::new(Count::default());
    let mut server = rigwire_smol::Server::bind("tcp://127.0.0.1:0", config()).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })
        .unwrap();
    let (up, down) = (Arc::clone(&count), Arc::clone(&count));
    server.on_connect(move |_| up.heard(1));
    server.on_disconnect(move |_, _| down.heard(-1));
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let executor = std::thread::spawn(move || {
        smol::block_on(async {
            let server = server.start().unwrap();
            url_tx.send(server.local_url()).unwrap();
            // Serves until the test has looked.
            let _ = smol::unblock(move || done_rx.recv_timeout(Duration::from_secs(30))).await;
            server.shutdown(Duration::ZERO).await;
        })
    });
    let url = url_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    knock_then_visit(&url, &count);
    let seen = (
        count.runs.load(Ordering::SeqCst),
        count.connected.load(Ordering::SeqCst),
    );
    done_tx.send(()).unwrap();
    executor.join().unwrap();
    assert_eq!(seen, (2, 0), "hooks run, peers connected");
}
