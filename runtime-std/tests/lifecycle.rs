//! Deadlines, cancellation, pending calls, dead peers, reconnect, shutdown and
//! limits, over real loopback sockets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rigwire_std::core::{ConnectionError, RejectCode};
use rigwire_std::{Client, Config, Error, ErrorKind, Reconnect};

#[test]
fn a_deadline_fails_the_call_and_cancels_the_handler() {
    for url in transports() {
        let probe = Probe::default();
        let server = rig(&url, cfg("rig"), probe.clone());
        let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
        let err = client
            .call_timeout::<_, bool>("watch_cancel", &(), Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(err, Error::DeadlineExceeded, "{url}");
        assert!(
            probe.saw_cancel.wait(Duration::from_secs(10)),
            "the handler never saw the cancel ({url})"
        );
        assert_eq!(client.call::<_, i64>("add", &(1, 2)).unwrap(), 3);
        server.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn calls_that_waited_for_a_thread_past_their_deadline_never_run() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // One handler thread, and a handler that ignores cancellation: each
    // call it runs holds the thread for its whole 300 ms.
    let started = Arc::new(AtomicUsize::new(0));
    let config = Config {
        handler_threads: 1,
        ..cfg("rig")
    };
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", config).unwrap();
    let count = Arc::clone(&started);
    server
        .expose("nap", move |(): ()| {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        })
        .unwrap()
        .dispatch("nap", rigwire_std::Dispatch::Pool)
        .unwrap();
    let server = server.start().unwrap();
    let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let args = rigwire_std::Payload::postcard(&()).unwrap();
            client
                .start_raw("nap", args, Some(Duration::from_millis(100)))
                .unwrap()
        })
        .collect();
    for call in calls {
        assert_eq!(call.wait(), Err(Error::DeadlineExceeded));
    }
    // The 19 or 20 calls still queued for the thread are dropped when it
    // comes to them: this call waits for one nap at most, not nineteen.
    client
        .call_timeout::<_, ()>("nap", &(), Duration::from_secs(5))
        .unwrap();
    let ran = started.load(Ordering::SeqCst);
    assert!(ran <= 2, "{ran} naps ran for calls nobody waited for");
    server.shutdown(Duration::from_secs(1));
}

/// A rig with a pool of two threads (a connection's share: one), whose
/// `hang` blocks until the rig is told [`HungRig::release`] (or 30 s), and
/// `quick` answers 7; `started` counts the `hang`s begun.
struct HungRig {
    server: rigwire_std::RunningServer,
    released: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    started: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl HungRig {
    fn start() -> HungRig {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Condvar, Mutex};
        let released = Arc::new((Mutex::new(false), Condvar::new()));
        let started = Arc::new(AtomicUsize::new(0));
        let config = Config {
            handler_threads: 2,
            ..cfg("rig")
        };
        let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", config).unwrap();
        let (gate, counted) = (Arc::clone(&released), Arc::clone(&started));
        server
            .expose("hang", move |(): ()| {
                counted.fetch_add(1, Ordering::SeqCst);
                let (open, cond) = &*gate;
                let limit = Duration::from_secs(30);
                drop(cond.wait_timeout_while(open.lock().unwrap(), limit, |open| !*open));
                Ok(())
            })
            .unwrap()
            .expose("quick", |(): ()| Ok(7))
            .unwrap();
        for method in ["hang", "quick"] {
            server
                .dispatch(method, rigwire_std::Dispatch::Pool)
                .unwrap();
        }
        let server = server.start().unwrap();
        HungRig {
            server,
            released,
            started,
        }
    }

    /// Calls `quick` (300 ms deadlines) until refused `Busy`: the reason.
    fn refused(&self, client: &Client, began: Instant) -> String {
        loop {
            match client.call_timeout::<_, i32>("quick", &(), Duration::from_millis(300)) {
                Err(Error::Busy(why)) => return why,
                Err(Error::DeadlineExceeded) => {}
                other => panic!("a call behind hung handlers: {other:?}"),
            }
            assert!(began.elapsed() < Duration::from_secs(20), "never refused");
        }
    }

    /// Lets every `hang` return; then `quick` runs again on their threads.
    fn release(self, client: &Client, began: Instant) {
        *self.released.0.lock().unwrap() = true;
        self.released.1.notify_all();
        let ran = loop {
            match client.call_timeout::<_, i32>("quick", &(), Duration::from_secs(20)) {
                Ok(n) => break n,
                Err(Error::Busy(_)) => std::thread::sleep(Duration::from_millis(10)),
                other => panic!("after the handlers returned: {other:?}"),
            }
            assert!(began.elapsed() < Duration::from_secs(40), "still refused");
        };
        assert_eq!(ran, 7);
        self.server.shutdown(Duration::from_secs(1));
    }
}

/// A handler that never returns keeps its pool thread, cancelled or not.
/// Once every thread of the connection's share runs one given up on a
/// while ago, a new call is answered `Busy` at once, saying why, instead
/// of waiting out its deadline behind them; once one returns, calls run.
#[test]
fn calls_behind_hung_handlers_are_refused_at_once_saying_why() {
    let rig = HungRig::start();
    let client = Client::connect(&rig.server.local_url(), cfg("script")).unwrap();
    let began = Instant::now();
    let hung = client.call_timeout::<_, ()>("hang", &(), Duration::from_millis(100));
    assert_eq!(hung, Err(Error::DeadlineExceeded));
    // Until the hung call was given up on a while ago, a call waits for
    // the thread; after, it is refused at once (not at its 20 s deadline).
    let refused = rig.refused(&client, began);
    assert!(
        refused.contains("this connection may hold (1) still runs a call given up on"),
        "{refused}"
    );
    let long = Duration::from_secs(20);
    let asked = Instant::now();
    let again = client.call_timeout::<_, i32>("quick", &(), long);
    assert!(matches!(again, Err(Error::Busy(_))), "{again:?}");
    assert!(asked.elapsed() < long, "it waited out its deadline");
    rig.release(&client, began);
}

/// Handlers that never return may fill the whole pool, a thread each for
/// peers that have gone: a new peer's share is free, yet its calls would
/// wait for a thread that never comes, silently (for ever with no
/// deadline). Once every thread of the pool runs a call given up on a
/// while ago (here by its connection's end), a new call is refused at once,
/// saying why.
#[test]
fn calls_behind_a_pool_full_of_hung_handlers_of_gone_peers_are_refused_saying_why() {
    use std::sync::atomic::Ordering;
    let rig = HungRig::start();
    let began = Instant::now();
    // Two scripts each call `hang` with no deadline, then end.
    for n in 0..2 {
        let script = Client::connect(&rig.server.local_url(), cfg("script")).unwrap();
        let pending = script.start::<_, ()>("hang", &()).unwrap();
        while rig.started.load(Ordering::SeqCst) <= n {
            assert!(
                began.elapsed() < Duration::from_secs(20),
                "hang never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        script.close();
        assert!(matches!(pending.wait(), Err(Error::Disconnected(_))));
    }
    let client = Client::connect(&rig.server.local_url(), cfg("third")).unwrap();
    let refused = rig.refused(&client, began);
    assert!(
        refused.contains("every handler thread here (2) still runs a call given up on"),
        "{refused}"
    );
    // No deadline at all: refused, not waiting for good.
    let (done, outcome) = std::sync::mpsc::channel();
    let asking = std::thread::spawn(move || {
        let _ = done.send(client.call::<_, i32>("quick", &()));
        client
    });
    let again = outcome.recv_timeout(Duration::from_secs(20));
    assert!(matches!(again, Ok(Err(Error::Busy(_)))), "{again:?}");
    rig.release(&asking.join().unwrap(), began);
}

#[test]
fn a_started_call_nobody_waits_on_still_ends_by_its_deadline() {
    // No caller waits and nobody polls: only the connection's own thread can
    // end the call, on a connection with nothing else to do (no keepalive).
    let probe = Probe::default();
    let server = rig(
        "tcp://127.0.0.1:0",
        cfg("rig").keepalive(None),
        probe.clone(),
    );
    let client = Client::connect(&server.local_url(), cfg("script").keepalive(None)).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // settled: nothing due
    let args = rigwire_std::Payload::postcard(&()).unwrap();
    let pending = client
        .start_raw("watch_cancel", args, Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        probe.saw_cancel.wait(Duration::from_secs(10)),
        "the deadline passed unnoticed: the rig was never told"
    );
    assert_eq!(pending.wait(), Err(Error::DeadlineExceeded));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_default_deadline_applies_to_every_call() {
    let server = rig("tcp://127.0.0.1:0", cfg("rig"), Probe::default());
    let client = Client::connect(
        &server.local_url(),
        cfg("script").default_timeout(Duration::from_millis(30)),
    )
    .unwrap();
    assert_eq!(
        client.call::<_, bool>("block", &()),
        Err(Error::DeadlineExceeded)
    );
    server.shutdown(Duration::ZERO);
}

#[test]
fn cancelling_a_pending_call_reaches_the_handler() {
    for url in transports() {
        let probe = Probe::default();
        let server = rig(&url, cfg("rig"), probe.clone());
        let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
        let pending = client.start::<_, bool>("watch_cancel", &()).unwrap();
        assert!(!pending.is_ready());
        // Cancelled before the rig read the call, the handler would never
        // start (tested in the core); here it is running.
        assert!(probe.watching.wait(Duration::from_secs(10)), "{url}");
        pending.cancel();
        assert!(probe.saw_cancel.wait(Duration::from_secs(10)), "{url}");
        server.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn one_thread_keeps_many_calls_in_flight() {
    let probe = Probe::default();
    let server = rig("tcp://127.0.0.1:0", cfg("rig"), probe.clone());
    let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
    let mut blocked = client.start::<_, bool>("block", &()).unwrap();
    let calls: Vec<_> = (0..64i64)
        .map(|i| client.start::<_, i64>("add", &(i, i)).unwrap())
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.wait().unwrap(), 2 * i as i64);
    }
    // The slow call stalled none of the others; it is still pending.
    assert!(!blocked.is_ready());
    assert!(matches!(
        blocked.wait_timeout(Duration::from_millis(10)),
        Err(Error::WaitTimeout(_))
    ));
    probe.gate.open();
    assert!(blocked.wait().unwrap());
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_slow_handler_stalls_neither_other_calls_nor_other_clients() {
    let probe = Probe::default();
    let server = rig("tcp://127.0.0.1:0", cfg("rig"), probe.clone());
    let a = Client::connect(&server.local_url(), cfg("a")).unwrap();
    let b = Client::connect(&server.local_url(), cfg("b")).unwrap();
    let slow: Vec<_> = (0..4)
        .map(|_| a.start::<_, bool>("block", &()).unwrap())
        .collect();
    for i in 0..50i64 {
        assert_eq!(a.call::<_, i64>("add", &(i, 1)).unwrap(), i + 1);
        assert_eq!(b.call::<_, i64>("add", &(i, 2)).unwrap(), i + 2);
    }
    a.ping().unwrap();
    assert!(slow.iter().all(|s| !s.is_ready()));
    probe.gate.open();
    for s in slow {
        assert!(s.wait().unwrap());
    }
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_frozen_peer_fails_every_pending_call_within_the_keepalive_bound() {
    for url in transports() {
        let probe = Probe::default();
        let server = rig(&url, cfg("rig"), probe.clone());
        let client = Client::connect(
            &server.local_url(),
            cfg("script").keepalive(quick_keepalive()),
        )
        .unwrap();
        let started = Instant::now();
        let other = client.start::<_, i64>("add", &(1, 1)).unwrap();
        other.wait().unwrap();
        // `freeze` stops the rig's connection thread: no answers, no keepalives,
        // socket open — a hung or powered-off host, as seen from outside.
        let frozen = client
            .start_raw(
                "freeze",
                rigwire_std::Payload::postcard(&()).unwrap(),
                Some(Duration::from_secs(3600)),
            )
            .unwrap();
        let second = client.start::<_, i64>("add", &(2, 2)).unwrap();
        for err in [frozen.wait().unwrap_err(), second.wait().unwrap_err()] {
            assert!(
                matches!(err, Error::Disconnected(ConnectionError::PeerSilent(_))),
                "{url}: {err}"
            );
        }
        // Failed by the keepalive bound (0.4 s here), not the one-hour deadline.
        // Far below the one-hour deadline it would otherwise have waited for.
        assert!(started.elapsed() < Duration::from_secs(30));
        probe.gate.open();
        server.shutdown(Duration::ZERO);
    }
}

#[test]
fn a_peer_that_goes_away_fails_pending_calls_at_once() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
        let pending = client.start::<_, bool>("block", &()).unwrap();
        client.ping().unwrap();
        server.shutdown(Duration::ZERO);
        let err = pending.wait().unwrap_err();
        assert!(
            matches!(&err, Error::Remote(e) if e.kind == ErrorKind::Shutdown)
                || matches!(err, Error::Disconnected(_)),
            "{url}: {err}"
        );
        assert!(matches!(
            client.call::<_, i64>("add", &(1, 1)),
            Err(Error::Disconnected(_))
        ));
    }
}

#[test]
fn graceful_shutdown_answers_what_it_can_and_fails_the_rest() {
    for url in transports() {
        let probe = Probe::default();
        let server = rig(&url, cfg("rig"), probe.clone());
        let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
        let quick = client.start::<_, u64>("sleep_ms", &50u64).unwrap();
        let stuck = client.start::<_, bool>("block", &()).unwrap();
        client.ping().unwrap(); // both calls are in the server's hands
        server.shutdown(Duration::from_millis(500));
        assert_eq!(quick.wait().unwrap(), 50, "{url}");
        let Err(Error::Remote(e)) = stuck.wait() else {
            panic!("{url}")
        };
        assert_eq!(e.kind, ErrorKind::Shutdown);
        assert!(
            matches!(
                client.call::<_, i64>("add", &(1, 1)),
                Err(Error::Disconnected(ConnectionError::PeerClosed(_)))
            ),
            "{url}"
        );
        probe.gate.open();
    }
}

#[test]
fn reconnect_brings_a_client_back_after_the_server_returns() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        // Come back on the very address the OS gave the first server.
        let url = server.local_url();
        let policy = Reconnect {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            attempts: 50,
        };
        let client = Client::connect(&url, cfg("script").reconnect(policy)).unwrap();
        assert_eq!(client.call::<_, i64>("add", &(1, 1)).unwrap(), 2);
        server.shutdown(Duration::ZERO);
        let restarted = std::thread::spawn({
            let url = url.clone();
            move || {
                std::thread::sleep(Duration::from_millis(100));
                rig(&url, cfg("rig"), Probe::default())
            }
        });
        // A call racing the loss may fail (it is never retried silently: it
        // may have run); the call after that reconnects.
        match client.call::<_, i64>("add", &(2, 2)) {
            Ok(sum) => assert_eq!(sum, 4),
            Err(Error::Disconnected(_)) => {
                assert_eq!(client.call::<_, i64>("add", &(2, 2)).unwrap(), 4, "{url}")
            }
            Err(other) => panic!("{url}: {other}"),
        }
        restarted.join().unwrap().shutdown(Duration::ZERO);
    }
}

#[test]
fn past_the_connection_limit_a_client_is_rejected_with_the_reason() {
    let config = Config {
        max_connections: 2,
        ..cfg("rig")
    };
    let server = rig("tcp://127.0.0.1:0", config, Probe::default());
    let a = Client::connect(&server.local_url(), cfg("a")).unwrap();
    let b = Client::connect(&server.local_url(), cfg("b")).unwrap();
    // A call answered means the server has admitted that connection (its
    // admission runs before its first call): only then is the limit full.
    for client in [&a, &b] {
        client.call::<_, i64>("add", &(0, 0)).unwrap();
    }
    let err = Client::connect(&server.local_url(), cfg("c")).unwrap_err();
    let Error::Rejected { code, reason } = err else {
        panic!("{err}")
    };
    assert_eq!(code, RejectCode::ConnectionLimit);
    assert!(reason.contains("limit 2"), "{reason}");
    assert_eq!(a.call::<_, i64>("add", &(1, 1)).unwrap(), 2);
    assert_eq!(b.call::<_, i64>("add", &(1, 1)).unwrap(), 2);
    server.shutdown(Duration::ZERO);
}

#[test]
fn wrong_and_missing_secrets_fail_clearly_on_the_client() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        let wrong = Client::connect(
            &server.local_url(),
            Config::named("x")
                .secret("guess-guess-guess-guess")
                .unwrap(),
        )
        .unwrap_err();
        assert!(matches!(wrong, Error::AuthFailed(_)), "{url}: {wrong}");
        let missing = Client::connect(&server.local_url(), Config::named("x")).unwrap_err();
        assert!(matches!(missing, Error::AuthFailed(_)), "{url}: {missing}");
        assert!(missing.to_string().contains("shared secret"), "{missing}");
        server.shutdown(Duration::ZERO);
    }
}

#[test]
fn connecting_to_nothing_is_a_connect_error() {
    let err = Client::connect("tcp://127.0.0.1:1", cfg("x")).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    let err = Client::connect("smtp://x", cfg("x")).unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err}");
}
