//! rigwire-smol over real loopback sockets (tcp, unix and ws).

#[path = "../../tests/tests/common/raw.rs"]
mod raw;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rigwire_smol::core::{ConnectionError, RejectCode};
use rigwire_smol::{
    CallContext, Client, Config, Error, ErrorKind, HandlerError, Handlers, Keepalive, Payload,
    RunningServer, Server,
};
use smol::channel::{bounded, Receiver, Sender};

fn transports() -> Vec<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("rigwire-smol-{}-{n}.sock", std::process::id()));
    vec![
        "tcp://127.0.0.1:0".into(),
        format!("unix://{}", path.display()),
    ]
}

fn cfg(name: &str) -> Config {
    Config::named(name).secret("lab-secret-0123456789").unwrap()
}

/// Sends on drop: lets a test see that a handler's future was dropped.
struct DropSignal(Sender<()>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

/// A rig: add, fail, panic, hang (never answers; signals when its future is
/// dropped), freeze (blocks its thread), callback, gate (waits for the gate).
/// Held by the test that measures the process's CPU time and by the tests
/// heavy enough to spoil that measure: they run one at a time.
static CPU_QUIET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn quiet() -> std::sync::MutexGuard<'static, ()> {
    CPU_QUIET.lock().unwrap_or_else(|p| p.into_inner())
}

/// A rig on `url` and a client of it; the rig reports dropped handler
/// futures on the receiver, and `hang` waits on the gate (kept open).
async fn rig_and_client(url: &str) -> (RunningServer, Client, Receiver<()>, Sender<()>) {
    rig_and_client_with(url, cfg("rig"), cfg("script")).await
}

/// As [`rig_and_client`], with the rig's and the client's configurations.
async fn rig_and_client_with(
    url: &str,
    rig_config: Config,
    client_config: Config,
) -> (RunningServer, Client, Receiver<()>, Sender<()>) {
    let (dropped_tx, dropped) = bounded(8);
    let (gate_tx, gate) = bounded(1);
    let server = rig(url, rig_config, dropped_tx, gate);
    let client = Client::connect(&server.local_url(), client_config)
        .await
        .unwrap();
    (server, client, dropped, gate_tx)
}

/// `n` small payloads, each a different number.
fn numbered(n: u32) -> Vec<Payload> {
    (0..n).map(|i| Payload::postcard(&i).unwrap()).collect()
}

/// Whether the rig reports a handler's future dropped within 10 s.
async fn handler_dropped(dropped: &Receiver<()>) -> bool {
    smol::future::or(async { dropped.recv().await.is_ok() }, async {
        smol::Timer::after(Duration::from_secs(10)).await;
        false
    })
    .await
}

fn rig(url: &str, config: Config, dropped: Sender<()>, gate: Receiver<()>) -> RunningServer {
    let mut server = Server::bind(url, config).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })
        .unwrap();
    server.alias("plus", "add").unwrap();
    server
        .expose_raw("echo", |_ctx, args: Payload| async move { Ok(args) })
        .unwrap();
    server
        .expose("fail", |(): ()| async move {
            Err::<(), _>(HandlerError::new("motor stalled").detail("at rig.rs:1"))
        })
        .unwrap();
    server
        .expose("panic", |(): ()| async move {
            panic!("boom") as Result<(), HandlerError>
        })
        .unwrap();
    server
        .expose("hang", move |(): ()| {
            let signal = DropSignal(dropped.clone());
            async move {
                let _signal = signal;
                smol::future::pending::<()>().await;
                Ok(())
            }
        })
        .unwrap();
    server
        .expose("freeze", |ms: u64| async move {
            std::thread::sleep(Duration::from_millis(ms)); // blocks the server's executor thread
            Ok(ms)
        })
        .unwrap();
    server
        .expose("gate", move |(): ()| {
            let gate = gate.clone();
            async move { Ok(gate.recv().await.is_ok()) }
        })
        .unwrap();
    server
        .expose_with("callback", |ctx: CallContext, text: String| async move {
            let back: String = ctx.peer.call("client.echo", &text).await?;
            Ok(format!("client said {back}"))
        })
        .unwrap();
    server.start().unwrap()
}

fn plain_rig(url: &str, config: Config) -> RunningServer {
    let (tx, _) = bounded(8);
    let (_, rx) = bounded(1);
    rig(url, config, tx, rx)
}

#[test]
fn typed_raw_and_json_calls_both_ways_on_every_transport() {
    smol::block_on(async {
        for url in transports() {
            let server = plain_rig(&url, cfg("rig"));
            let mut handlers = Handlers::new();
            handlers
                .expose(
                    "client.echo",
                    |s: String| async move { Ok(s.to_uppercase()) },
                )
                .unwrap();
            let client = Client::connect_with(&server.local_url(), cfg("script"), handlers)
                .await
                .unwrap();
            assert_eq!(
                client.call::<_, i64>("add", &(2, 3)).await.unwrap(),
                5,
                "{url}"
            );
            assert_eq!(client.call::<_, i64>("plus", &(2, 3)).await.unwrap(), 5);
            let raw = client
                .call_raw("add", Payload::json(&(40, 2)).unwrap(), None)
                .await
                .unwrap();
            assert_eq!(&raw.bytes[..], b"42");
            let big = Payload::new(rigwire_smol::Codec::Postcard, vec![7u8; 3 << 20]);
            assert_eq!(
                client.call_raw("echo", big.clone(), None).await.unwrap(),
                big
            );
            let answer: String = client.call("callback", &"ready").await.unwrap();
            assert_eq!(answer, "client said READY");
            assert!(client.ping().await.unwrap() > Duration::ZERO);
            client.confirmed_send(&b"sync"[..]).await.unwrap();
            server.shutdown(Duration::from_secs(1)).await;
        }
    });
}

#[test]
fn remote_errors_and_panics_are_typed_and_the_connection_survives() {
    smol::block_on(async {
        for url in transports() {
            let server = plain_rig(&url, cfg("rig"));
            let client = Client::connect(&server.local_url(), cfg("script"))
                .await
                .unwrap();
            let Err(Error::Remote(e)) = client.call::<_, ()>("fail", &()).await else {
                panic!()
            };
            assert_eq!(
                (e.kind, e.message.as_str(), e.detail.as_deref()),
                (ErrorKind::Handler, "motor stalled", Some("at rig.rs:1"))
            );
            let Err(Error::Remote(e)) = client.call::<_, ()>("panic", &()).await else {
                panic!()
            };
            assert_eq!(e.kind, ErrorKind::Panicked);
            let Err(Error::Remote(e)) = client.call::<_, ()>("nope-nope-nope-nope", &()).await
            else {
                panic!()
            };
            assert_eq!(e.kind, ErrorKind::NoSuchMethod);
            assert_eq!(
                client.call::<_, i64>("add", &(1, 1)).await.unwrap(),
                2,
                "{url}"
            );
            server.shutdown(Duration::from_secs(1)).await;
        }
    });
}

#[test]
fn dropping_a_call_future_cancels_it_and_drops_the_handler_future() {
    smol::block_on(async {
        for url in transports() {
            let (server, client, dropped, _gate) = rig_and_client(&url).await;
            let mut call = Box::pin(client.call::<_, ()>("hang", &()));
            assert!(smol::future::poll_once(&mut call).await.is_none()); // sent, pending
            client.ping().await.unwrap(); // the call has reached the rig
            drop(call);
            let seen = handler_dropped(&dropped).await;
            assert!(seen, "{url}: the handler's future was not dropped");
            server.shutdown(Duration::from_secs(1)).await;
        }
    });
}

#[test]
fn a_deadline_holds_even_if_nobody_polls_the_call() {
    smol::block_on(async {
        let (server, client, dropped, _gate) = rig_and_client("tcp://127.0.0.1:0").await;
        let mut call =
            Box::pin(client.call_timeout::<_, ()>("hang", &(), Duration::from_millis(100)));
        assert!(smol::future::poll_once(&mut call).await.is_none());
        // Nobody polls `call` now; the rig still learns of the deadline.
        let seen = handler_dropped(&dropped).await;
        assert!(seen, "the deadline did not cancel the handler");
        assert_eq!(call.await, Err(Error::DeadlineExceeded));
        server.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_sooner_deadline_holds_while_a_later_one_is_pending() {
    // A call's wait has no timer of its own: the connection's one timer runs
    // every deadline, armed here for the hour-long call first.
    smol::block_on(async {
        let quiet = cfg("script").keepalive(None);
        let (server, client, _dropped, _gate) =
            rig_and_client_with("tcp://127.0.0.1:0", cfg("rig"), quiet).await;
        let mut long =
            Box::pin(client.call_timeout::<_, ()>("hang", &(), Duration::from_secs(3600)));
        assert!(smol::future::poll_once(&mut long).await.is_none());
        client.ping().await.unwrap();
        let started = Instant::now();
        let short = client
            .call_timeout::<_, ()>("hang", &(), Duration::from_millis(200))
            .await;
        assert_eq!(short, Err(Error::DeadlineExceeded));
        // Far below the hour the first call's deadline set the timer for.
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(smol::future::poll_once(&mut long).await.is_none());
        server.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_frozen_peer_fails_pending_calls_within_the_keepalive_bound() {
    smol::block_on(async {
        let server = plain_rig("tcp://127.0.0.1:0", cfg("rig"));
        let quick = Keepalive {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(400),
        };
        let client = Client::connect(&server.local_url(), cfg("script").keepalive(Some(quick)))
            .await
            .unwrap();
        let started = Instant::now();
        let err = client
            .call_timeout::<_, u64>("freeze", &1500u64, Duration::from_secs(3600))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Disconnected(ConnectionError::PeerSilent(_))),
            "{err}"
        );
        // Far below the one-hour deadline it would otherwise have waited for.
        assert!(started.elapsed() < Duration::from_secs(30));
    });
}

#[test]
fn when_the_peer_does_not_read_callers_wait_instead_of_queueing_without_bound() {
    let _alone = quiet();
    smol::block_on(async {
        let deaf = raw::DeafServer::start(rigwire_smol::core::ProtocolConfig {
            keepalive: None,
            ..rigwire_smol::core::ProtocolConfig::named("deaf")
        });
        let url = deaf.url.clone();
        let mut config = Config::named("script").keepalive(None);
        config.protocol.max_frame = 1 << 20;
        config.protocol.max_queued_output = 1 << 20;
        let client = std::sync::Arc::new(Client::connect(&url, config).await.unwrap());
        let calls: Vec<_> = (0..40)
            .map(|_| {
                let client = std::sync::Arc::clone(&client);
                smol::spawn(async move {
                    client
                        .call_raw(
                            "x",
                            Payload::new(rigwire_smol::Codec::Postcard, vec![1u8; 512 << 10]),
                            None,
                        )
                        .await
                })
            })
            .collect();
        let (cpu, started) = (raw::cpu_time(), Instant::now());
        smol::Timer::after(Duration::from_millis(500)).await;
        // 20 MiB of calls against a 1 MiB queue and a deaf peer: nobody failed
        // with a full queue; they wait — and waiting costs no CPU (a spinning
        // executor is "not finished" too).
        assert!(calls.iter().all(|c| !c.is_finished()));
        let (cpu, wall) = (raw::cpu_time() - cpu, started.elapsed());
        assert!(
            cpu < wall / 3,
            "used {cpu:?} of CPU in {wall:?}: something spins"
        );
        client.close().await;
        for c in calls {
            assert!(matches!(c.await, Err(Error::Disconnected(_))));
        }
    });
}

#[test]
fn calls_started_now_are_answered_later_and_a_dropped_handle_cancels() {
    smol::block_on(async {
        for url in transports() {
            let (server, client, dropped, _gate) = rig_and_client(&url).await;
            // A window kept in flight from one task, answers taken in order.
            let args = numbered(200);
            let calls = client
                .start_batch("echo", args.clone(), None)
                .await
                .unwrap();
            let ids: std::collections::BTreeSet<u64> = calls.iter().map(|c| c.id()).collect();
            assert_eq!(ids.len(), args.len(), "{url}: one id per call");
            let mut back = Vec::new();
            for call in calls {
                back.push(call.wait().await.unwrap());
            }
            assert_eq!(back, args, "{url}");
            let sum = client.start::<_, i64>("add", &(2i64, 5i64)).await.unwrap();
            assert_eq!(sum.wait().await, Ok(7));
            // One call that cannot start fails the batch; the calls it had
            // started are cancelled, and the connection carries on.
            let too_big = Payload::new(rigwire_smol::Codec::Postcard, vec![0u8; 16 << 20]);
            let batch = [Payload::postcard(&1u8).unwrap(), too_big];
            let refused = client.start_batch("echo", batch, None).await;
            assert!(
                matches!(refused, Err(Error::TooLarge { .. })),
                "{refused:?}"
            );
            assert!(client
                .start_batch("echo", [], None)
                .await
                .unwrap()
                .is_empty());

            // Waiting with a timeout leaves an unanswered call in flight.
            let mut hung = client
                .start_raw("hang", Payload::postcard(&()).unwrap(), None)
                .await
                .unwrap();
            let waited = hung.wait_timeout(Duration::from_millis(50)).await;
            assert!(
                matches!(waited, Err(Error::WaitTimeout(_))),
                "{url}: {waited:?}"
            );
            assert!(!hung.is_ready());
            // Dropping the handle cancels the call: the rig drops the handler.
            drop(hung);
            assert!(
                handler_dropped(&dropped).await,
                "{url}: drop did not cancel"
            );
            let hung = client.start::<_, ()>("hang", &()).await.unwrap();
            client.ping().await.unwrap(); // the call has reached the rig
            hung.cancel();
            assert!(
                handler_dropped(&dropped).await,
                "{url}: cancel did not cancel"
            );
            // The connection is still good for calls.
            assert_eq!(client.call::<_, i64>("add", &(1i64, 1i64)).await, Ok(2));
            server.shutdown(Duration::from_secs(1)).await;
        }
    });
}

#[test]
fn a_started_call_nobody_waits_on_still_ends_by_its_deadline() {
    // Polled with `is_ready` only: no caller waits, so only the connection's
    // own timer can end the call, on a connection with nothing else to do.
    smol::block_on(async {
        let (quiet_rig, quiet) = (cfg("rig").keepalive(None), cfg("script").keepalive(None));
        let (server, client, dropped, _gate) =
            rig_and_client_with("tcp://127.0.0.1:0", quiet_rig, quiet).await;
        // Long enough for the connection to settle: nothing due, no timer.
        smol::Timer::after(Duration::from_millis(300)).await;
        let args = Payload::postcard(&()).unwrap();
        let calls = client
            .start_batch("hang", [args], Some(Duration::from_millis(200)))
            .await
            .unwrap();
        let started = Instant::now();
        while !calls[0].is_ready() && started.elapsed() < Duration::from_secs(10) {
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        assert!(calls[0].is_ready(), "the deadline passed unnoticed");
        for call in calls {
            assert_eq!(call.wait().await, Err(Error::DeadlineExceeded));
        }
        assert!(handler_dropped(&dropped).await, "the rig was not told");
        server.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_batch_to_a_peer_that_does_not_read_ends_by_its_deadline_without_spinning() {
    let _alone = quiet();
    smol::block_on(async {
        let deaf = raw::DeafServer::start(rigwire_smol::core::ProtocolConfig {
            keepalive: None,
            ..rigwire_smol::core::ProtocolConfig::named("deaf")
        });
        let mut config = Config::named("script").keepalive(None);
        config.protocol.max_frame = 1 << 20;
        config.protocol.max_queued_output = 1 << 20;
        let client = Client::connect(&deaf.url, config).await.unwrap();
        let big = Payload::new(rigwire_smol::Codec::Postcard, vec![1u8; 256 << 10]);
        let (cpu, started) = (raw::cpu_time(), Instant::now());
        // 10 MiB of calls against a 1 MiB queue: the batch waits for room
        // within its calls' deadline, then ends with the deadline's error;
        // the calls it had started are cancelled.
        let batch = client
            .start_batch(
                "x",
                std::iter::repeat_n(big, 40),
                Some(Duration::from_millis(500)),
            )
            .await;
        assert!(matches!(batch, Err(Error::DeadlineExceeded)), "{batch:?}");
        // A small call still fits beside the queued frames; unanswered, it
        // ends by its deadline (kept by the connection's one timer).
        let small = Payload::postcard(&1u8).unwrap();
        let more = client
            .start_raw("x", small, Some(Duration::from_millis(300)))
            .await;
        assert_eq!(more.unwrap().wait().await, Err(Error::DeadlineExceeded));
        let (cpu, wall) = (raw::cpu_time() - cpu, started.elapsed());
        assert!(wall < Duration::from_secs(30), "held for {wall:?}");
        assert!(
            cpu < wall / 3,
            "used {cpu:?} of CPU in {wall:?}: something spins"
        );
        client.close().await;
    });
}

#[test]
fn limits_secrets_shutdown_and_reconnect() {
    smol::block_on(async {
        let config = Config {
            max_connections: 1,
            ..cfg("rig")
        };
        let (gate_tx, gate) = bounded(1);
        let server = rig("tcp://127.0.0.1:0", config, bounded(8).0, gate);
        let url = server.local_url();
        let policy = rigwire_smol::Reconnect {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            attempts: 50,
        };
        let first = Client::connect(&url, cfg("a").reconnect(policy))
            .await
            .unwrap();
        // Answered only once the server has admitted it: the limit is full.
        first.call::<_, i64>("add", &(0, 0)).await.unwrap();
        let Error::Rejected { code, reason } = Client::connect(&url, cfg("b")).await.unwrap_err()
        else {
            panic!()
        };
        assert_eq!(code, RejectCode::ConnectionLimit);
        assert!(reason.contains("limit 1"));
        // Secrets are checked against a rig with room for more connections.
        let open = plain_rig("tcp://127.0.0.1:0", cfg("rig"));
        let guess = Client::connect(
            &open.local_url(),
            Config::named("x")
                .secret("guess-guess-guess-guess")
                .unwrap(),
        )
        .await;
        assert!(matches!(guess, Err(Error::AuthFailed(_))), "{guess:?}");
        let none = Client::connect(&open.local_url(), Config::named("x")).await;
        assert!(matches!(none, Err(Error::AuthFailed(_))), "{none:?}");
        open.shutdown(Duration::ZERO).await;
        // Graceful shutdown: a call in progress gets `Shutdown`, then goodbye.
        let peer = first.peer().await.unwrap();
        let stuck = smol::spawn(async move { peer.call::<_, bool>("gate", &()).await });
        first.ping().await.unwrap();
        server.shutdown(Duration::from_millis(200)).await;
        let Err(Error::Remote(e)) = stuck.await else {
            panic!()
        };
        assert_eq!(e.kind, ErrorKind::Shutdown);
        drop(gate_tx);
        // The rig comes back on the same address; the client reconnects.
        let again = plain_rig(&url, cfg("rig"));
        let sum = match first.call::<_, i64>("add", &(2, 2)).await {
            Err(Error::Disconnected(_)) => first.call::<_, i64>("add", &(2, 2)).await,
            other => other,
        };
        assert_eq!(sum.unwrap(), 4);
        again.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_group_keeps_the_answers_of_the_rigs_that_stay_when_one_drops_out_mid_call() {
    smol::block_on(async {
        let (_gate_tx, gate) = bounded(1);
        let stays = plain_rig("tcp://127.0.0.1:0", cfg("stays"));
        let drops = rig("tcp://127.0.0.1:0", cfg("drops"), bounded(8).0, gate);
        let (u1, u2) = (stays.local_url(), drops.local_url());
        let group = rigwire_smol::Group::connect(
            &[("stays", u1.as_str()), ("drops", u2.as_str())],
            &cfg("script"),
        )
        .await
        .unwrap();
        // `gate` never opens on `drops`; on `stays` it is already closed: `false` at once.
        let calls = group.call_all::<_, bool>("gate", &(), None);
        let killer = async {
            smol::Timer::after(Duration::from_millis(100)).await;
            drops.abort().await;
        };
        let (results, ()) = smol::future::zip(calls, killer).await;
        assert_eq!(results.get("stays"), Some(&Ok(false)), "{results:?}");
        assert!(
            matches!(results.get("drops"), Some(Err(Error::Disconnected(_)))),
            "{results:?}"
        );
        let sums = group.call_all::<_, i64>("add", &(1, 2), None).await;
        assert_eq!(sums.get("stays"), Some(&Ok(3)));
        assert!(matches!(
            sums.get("drops"),
            Some(Err(Error::Disconnected(_)))
        ));
        stays.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_batch_of_calls_leaves_together_and_each_gets_its_own_answer() {
    let _alone = quiet();
    smol::block_on(async {
        for url in transports() {
            let (server, client, dropped, _gate) = rig_and_client(&url).await;
            let args = numbered(200);
            let back = client.call_batch_raw("echo", args.clone(), None).await;
            let back: Vec<Payload> = back.into_iter().map(Result::unwrap).collect();
            assert_eq!(back, args, "{url}");
            // A call that cannot start fails alone.
            let too_big = Payload::new(rigwire_smol::Codec::Postcard, vec![0u8; 16 * 1024 * 1024]);
            let one = Payload::postcard(&1u8).unwrap();
            let back = client
                .call_batch_raw("echo", [one.clone(), too_big, one.clone()], None)
                .await;
            assert!(matches!(back[1], Err(Error::TooLarge { .. })), "{back:?}");
            assert_eq!(
                (back[0].as_ref().unwrap(), back[2].as_ref().unwrap()),
                (&one, &one)
            );
            // Dropped before the answers: the calls in flight are cancelled,
            // and the rig drops their handlers' futures.
            let mut hanging = Box::pin(client.call_batch_raw(
                "hang",
                [
                    Payload::postcard(&()).unwrap(),
                    Payload::postcard(&()).unwrap(),
                ],
                None,
            ));
            assert!(smol::future::poll_once(&mut hanging).await.is_none());
            client.ping().await.unwrap(); // the calls have reached the rig
            drop(hanging);
            for _ in 0..2 {
                let seen = handler_dropped(&dropped).await;
                assert!(seen, "{url}: a handler's future was not dropped");
            }
            server.shutdown(Duration::from_secs(1)).await;
        }
    });
}

#[test]
fn large_payloads_cross_intact_read_straight_into_their_frames() {
    let _alone = quiet();
    smol::block_on(async {
        for url in transports() {
            let (server, client, _dropped, _gate) = rig_and_client(&url).await;
            for size in [100_000, 1 << 20, (16 << 20) - 64] {
                let big: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
                let back = client
                    .call_raw(
                        "echo",
                        Payload::new(rigwire_smol::Codec::Postcard, big.clone()),
                        None,
                    )
                    .await
                    .unwrap();
                assert!(back.bytes == big, "{url}: {size} bytes came back different");
            }
            // And the connection carries small calls on after them.
            let sum: i64 = client.call("add", &(2, 3)).await.unwrap();
            assert_eq!(sum, 5);
            server.shutdown(Duration::from_secs(1)).await;
        }
    });
}

#[test]
fn more_calls_at_once_than_the_rig_takes_wait_for_a_slot_instead_of_failing_busy() {
    // The rig runs 256 calls at once and answers more `Busy`; it says so in
    // its `Hello`, so the 300 tasks calling through one client take turns.
    smol::block_on(async {
        let mut server = Server::bind("tcp://127.0.0.1:0", cfg("rig")).unwrap();
        server
            .expose("nap", |ms: u64| async move {
                smol::Timer::after(Duration::from_millis(ms)).await;
                Ok(ms)
            })
            .unwrap();
        let server = server.start().unwrap();
        let client = std::sync::Arc::new(
            Client::connect(&server.local_url(), cfg("script"))
                .await
                .unwrap(),
        );
        let calls: Vec<_> = (0..300)
            .map(|_| {
                let client = client.clone();
                smol::spawn(async move {
                    client
                        .call_timeout::<_, u64>("nap", &50u64, Duration::from_secs(30))
                        .await
                })
            })
            .collect();
        for call in calls {
            let outcome = call.await;
            assert!(outcome.is_ok(), "{outcome:?}");
        }
        server.shutdown(Duration::from_secs(1)).await;
    });
}
