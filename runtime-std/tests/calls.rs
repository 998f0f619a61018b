//! Calls over real loopback sockets, on every transport.

mod common;

use std::sync::Arc;

use std::time::Duration;

use common::*;
use rigwire_std::core::ExposedMethod;
use rigwire_std::{json_payload, Client, Codec, Error, ErrorKind, Handlers, LocalClient, Payload};

#[test]
fn typed_raw_and_json_calls_on_every_transport() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
        let sum: i64 = client.call("add", &(2, 3)).unwrap();
        assert_eq!(sum, 5, "{url}");
        let sum: i64 = client.call("plus", &(20, 3)).unwrap();
        assert_eq!(sum, 23);
        let raw = client
            .call_raw("add", json_payload("[40, 2]").unwrap(), None)
            .unwrap();
        assert_eq!((raw.codec, &raw.bytes[..]), (Codec::Json, &b"42"[..]));
        let echoed = client
            .call_raw("echo", Payload::new(Codec::Postcard, vec![1, 2, 3]), None)
            .unwrap();
        assert_eq!(&echoed.bytes[..], &[1, 2, 3]);
        let methods: Vec<ExposedMethod> = client.call("rigwire.methods", &()).unwrap();
        assert!(methods
            .iter()
            .any(|m| m.name == "add" && m.aliases == ["plus"]));
        let me: String = client.call("whoami", &()).unwrap();
        assert_eq!(me, "script");
        server.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn remote_errors_are_typed_and_the_connection_survives_them() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
        let Err(Error::Remote(e)) = client.call::<_, ()>("fail", &()) else {
            panic!("{url}")
        };
        assert_eq!(
            (e.kind, e.message.as_str(), e.detail.as_deref()),
            (ErrorKind::Handler, "motor stalled", Some("at rig.rs:1"))
        );
        let Err(Error::Remote(e)) = client.call::<_, ()>("nope-nope-nope-nope", &()) else {
            panic!()
        };
        assert_eq!(e.kind, ErrorKind::NoSuchMethod);
        let Err(Error::Remote(e)) = client.call::<_, i64>("add", &"not numbers") else {
            panic!()
        };
        assert_eq!(e.kind, ErrorKind::BadArguments);
        let Err(Error::Remote(e)) = client.call::<_, ()>("panic", &()) else {
            panic!()
        };
        assert_eq!(e.kind, ErrorKind::Panicked);
        assert!(e.message.contains("boom"), "{}", e.message);
        // Still fine after all of that.
        assert_eq!(client.call::<_, i64>("add", &(1, 1)).unwrap(), 2);
        server.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn the_rig_calls_the_script_back_during_a_call() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        let mut handlers = Handlers::new();
        handlers
            .expose("client.echo", |s: String| Ok(s.to_uppercase()))
            .unwrap();
        let client = Client::connect_with(&server.local_url(), cfg("script"), handlers).unwrap();
        let answer: String = client.call("callback", &"ready").unwrap();
        assert_eq!(answer, "client said READY", "{url}");
        server.shutdown(Duration::from_secs(1));
    }
}

/// `bounce(n)` calls `bounce(n - 1)` back on whoever called it, down to 0,
/// and answers how deep it went: both sides expose it, so a chain of calls
/// goes back and forth over one connection.
fn bounce(ctx: &rigwire_std::CallContext, n: u32) -> Result<u32, rigwire_std::HandlerError> {
    if n == 0 {
        return Ok(0);
    }
    let deeper: u32 = ctx
        .peer
        .call("bounce", &(n - 1))
        .map_err(|e| rigwire_std::HandlerError::new(format!("bounce({}): {e}", n - 1)))?;
    Ok(deeper + 1)
}

/// Handlers that wait for their own peer's answers hold the 8 threads a
/// connection may have of its server's 16 (and of its client's 16): the
/// calls made to answer them needed a 9th, and every one of them waited
/// for its deadline (for good, without one). Both ways: one chain 24 calls
/// deep, 12 on each side; and 8 callers at once, each call held until all
/// 8 hold a thread, then called back, whose callback calls the rig again;
/// the same with the call back made on another thread, which the handler
/// waits for in `Peer::waiting_for` (as a Python `async def` handler's
/// thread waits for its event loop).
#[test]
fn calls_back_and_forth_never_wait_for_a_thread_that_only_their_answers_free() {
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", cfg("rig")).unwrap();
    server.expose_with("bounce", bounce).unwrap();
    server
        .dispatch("bounce", rigwire_std::Dispatch::Pool)
        .unwrap();
    let together = Arc::new(Count::default());
    let all_in = Arc::clone(&together);
    server
        .expose_with("acquire", move |ctx: &rigwire_std::CallContext, v: u32| {
            all_in.arrive_and_wait(8, Duration::from_secs(10));
            let progress: u32 = ctx
                .peer
                .call("progress", &v)
                .map_err(|e| rigwire_std::HandlerError::new(format!("progress: {e}")))?;
            Ok(progress)
        })
        .unwrap();
    server
        .dispatch("acquire", rigwire_std::Dispatch::Pool)
        .unwrap();
    let all_in = Arc::new(Count::default());
    server
        .expose_with(
            "acquire_elsewhere",
            move |ctx: &rigwire_std::CallContext, v: u32| {
                all_in.arrive_and_wait(8, Duration::from_secs(10));
                let peer = ctx.peer.clone();
                let elsewhere = std::thread::spawn(move || peer.call::<_, u32>("progress", &v));
                let progress = ctx.peer.waiting_for(|| elsewhere.join().unwrap());
                progress.map_err(|e| rigwire_std::HandlerError::new(format!("progress: {e}")))
            },
        )
        .unwrap()
        .dispatch("acquire_elsewhere", rigwire_std::Dispatch::Pool)
        .unwrap();
    // On the pool, as a Python handler always is: one proven quick would
    // run where it was read, needing no thread.
    server
        .expose("position", |(): ()| Ok(7u32))
        .unwrap()
        .dispatch("position", rigwire_std::Dispatch::Pool)
        .unwrap();
    let running = server.start().unwrap();
    let mut handlers = Handlers::new();
    handlers.expose_with("bounce", bounce).unwrap();
    handlers
        .dispatch("bounce", rigwire_std::Dispatch::Pool)
        .unwrap();
    handlers
        .expose_with("progress", |ctx: &rigwire_std::CallContext, v: u32| {
            let at: u32 = ctx
                .peer
                .call("position", &())
                .map_err(|e| rigwire_std::HandlerError::new(format!("position: {e}")))?;
            Ok(v + at)
        })
        .unwrap();
    handlers
        .dispatch("progress", rigwire_std::Dispatch::Pool)
        .unwrap();
    let client = Client::connect_with(&running.local_url(), cfg("script"), handlers).unwrap();
    let limit = Duration::from_secs(10);
    assert_eq!(
        client
            .call_timeout::<_, u32>("bounce", &24u32, limit)
            .unwrap(),
        24
    );
    for method in ["acquire", "acquire_elsewhere"] {
        std::thread::scope(|s| {
            let calls: Vec<_> = (0..8u32)
                .map(|v| {
                    let client = &client;
                    s.spawn(move || client.call_timeout::<_, u32>(method, &v, limit))
                })
                .collect();
            for (v, call) in calls.into_iter().enumerate() {
                assert_eq!(call.join().unwrap().unwrap(), v as u32 + 7, "{method}");
            }
        });
    }
    running.shutdown(Duration::from_secs(1));
}

#[test]
fn a_single_threaded_client_serves_callbacks_while_it_waits() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        let mut handlers = Handlers::new();
        handlers
            .expose("client.echo", |s: String| Ok(format!("<{s}>")))
            .unwrap();
        let local =
            LocalClient::connect_with(&server.local_url(), cfg("script"), handlers).unwrap();
        let answer: String = local.call("callback", &"hi").unwrap();
        assert_eq!(answer, "client said <hi>");
        local.serve(Duration::from_millis(20)).unwrap();
        assert_eq!(local.call::<_, i64>("add", &(1, 2)).unwrap(), 3);
        server.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn notify_and_broadcast_reach_their_handlers() {
    for url in transports() {
        let seen = Collector::<String>::default();
        let mut server = rigwire_std::Server::bind(&url, cfg("rig")).unwrap();
        let log = seen.clone();
        server
            .expose("log", move |line: String| {
                log.push(line);
                Ok(())
            })
            .unwrap();
        let server = server.start().unwrap();
        let news = Collector::<String>::default();
        let clients: Vec<Client> = (0..3)
            .map(|i| {
                let mut h = Handlers::new();
                let news = news.clone();
                h.expose("news", move |n: String| {
                    news.push(format!("{i}:{n}"));
                    Ok(())
                })
                .unwrap();
                Client::connect_with(&server.local_url(), cfg(&format!("c{i}")), h).unwrap()
            })
            .collect();
        clients[0].notify("log", &"trial 1").unwrap();
        clients[0].notify("log", &"trial 2").unwrap();
        // Handlers may run concurrently on the pool, so compare as sets.
        let mut lines = seen.wait_for(2);
        lines.sort();
        assert_eq!(lines, vec!["trial 1", "trial 2"], "{url}");
        assert_eq!(server.broadcast("news", &"stop soon").unwrap(), 3);
        let mut got = news.wait_for(3);
        got.sort();
        assert_eq!(
            got,
            vec!["0:stop soon", "1:stop soon", "2:stop soon"],
            "{url}"
        );
        drop(clients);
        server.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn many_clients_at_once() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        let url = server.local_url();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let client = Client::connect(&url, cfg(&format!("script-{t}"))).unwrap();
                    for i in 0..100i64 {
                        assert_eq!(client.call::<_, i64>("add", &(i, t)).unwrap(), i + t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        server.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn many_threads_share_one_client() {
    let server = rig("tcp://127.0.0.1:0", cfg("rig"), Probe::default());
    let client = Arc::new(Client::connect(&server.local_url(), cfg("script")).unwrap());
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                for i in 0..200i64 {
                    assert_eq!(client.call::<_, i64>("add", &(i, t)).unwrap(), i + t);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_batch_of_calls_starts_together_and_each_gets_its_own_answer() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
        let args: Vec<Payload> = (0..200u32)
            .map(|i| Payload::postcard(&i).unwrap())
            .collect();
        let calls = client.start_batch("echo", args.clone(), None).unwrap();
        assert_eq!(calls.len(), 200);
        let back: Vec<Payload> = calls.into_iter().map(|c| c.wait().unwrap()).collect();
        assert_eq!(back, args, "{url}");
        // One call that cannot start fails the batch; the connection carries on.
        let too_big = Payload::new(Codec::Postcard, vec![0u8; 16 * 1024 * 1024]);
        let batch = [Payload::postcard(&1u8).unwrap(), too_big];
        assert!(matches!(
            client.start_batch("echo", batch, None),
            Err(Error::TooLarge { .. })
        ));
        let sum: i64 = client.call("add", &(2, 3)).unwrap();
        assert_eq!(sum, 5);
        assert!(client.start_batch("echo", [], None).unwrap().is_empty());
        // Called as a batch, the call that cannot start fails alone.
        let one = Payload::postcard(&1u8).unwrap();
        let too_big = Payload::new(Codec::Postcard, vec![0u8; 16 * 1024 * 1024]);
        let back = client.call_batch_raw("echo", [one.clone(), too_big, one.clone()], None);
        assert!(matches!(back[1], Err(Error::TooLarge { .. })), "{back:?}");
        assert_eq!(back[0], Ok(one.clone()));
        assert_eq!(back[2], Ok(one));
        // A batch larger than the output limit: refused for room midway, it
        // writes what it holds and waits for the peer to read it.
        let mut small = cfg("script");
        small.protocol.max_queued_output = 1 << 20;
        small.protocol.max_frame = 1 << 20;
        let small = Client::connect(&server.local_url(), small).unwrap();
        let half = Payload::new(Codec::Postcard, vec![7u8; 512 * 1024]);
        let calls = small
            .start_batch("echo", vec![half.clone(); 8], Some(Duration::from_secs(20)))
            .unwrap();
        for call in calls {
            assert!(call.wait().unwrap() == half, "{url}");
        }
        server.shutdown(Duration::from_secs(1));
    }
}

#[test]
fn large_payloads_cross_intact() {
    for url in transports() {
        let server = rig(&url, cfg("rig"), Probe::default());
        let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
        let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let back = client
            .call_raw("echo", Payload::new(Codec::Postcard, big.clone()), None)
            .unwrap();
        assert!(back.bytes == big, "{url}");
        server.shutdown(Duration::from_secs(1));
    }
    // 16 MiB is the default frame limit; the frame's head must fit too.
    let server = rig("tcp://127.0.0.1:0", cfg("rig"), Probe::default());
    let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
    let big = vec![9u8; 16 * 1024 * 1024 - 64];
    let back = client
        .call_raw("echo", Payload::new(Codec::Postcard, big.clone()), None)
        .unwrap();
    assert!(back.bytes == big);
    let too_big = vec![9u8; 16 * 1024 * 1024];
    assert!(matches!(
        client.call_raw("echo", Payload::new(Codec::Postcard, too_big), None),
        Err(Error::TooLarge { .. })
    ));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn ping_and_confirmed_send_on_every_transport() {
    for url in transports() {
        let received = Collector::default();
        let mut server = rigwire_std::Server::bind(&url, cfg("rig")).unwrap();
        let r = received.clone();
        server.on_message(move |_peer, bytes| r.push(bytes));
        let server = server.start().unwrap();
        let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
        assert!(client.ping().unwrap() > Duration::ZERO);
        client
            .confirmed_send(&b"[2, \"2026-11-21_1_mouse\"]"[..])
            .unwrap();
        // The server echoes before its hook runs; wait for the hook.
        assert_eq!(
            received.wait_for(1),
            vec![bytes::Bytes::from_static(b"[2, \"2026-11-21_1_mouse\"]")],
            "{url}"
        );
        server.shutdown(Duration::from_secs(1));
    }
}

/// Sixteen blocking handlers that each wait until all sixteen have started
/// finish only if the server's pool runs them side by side, one idle pool
/// thread or not (a burst once queued behind the one idle thread).
#[test]
fn a_burst_of_blocking_handlers_runs_in_parallel() {
    const N: usize = 16;
    let met = Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", cfg("rig")).unwrap();
    let arrivals = Arc::clone(&met);
    server
        .expose("meet", move |(): ()| {
            let (count, cond) = &*arrivals;
            let mut n = count.lock().unwrap();
            *n += 1;
            cond.notify_all();
            let limit = Duration::from_secs(5);
            let (n, _) = cond.wait_timeout_while(n, limit, |n| *n < N).unwrap();
            Ok(*n >= N)
        })
        .unwrap();
    server.expose("warm", |(): ()| Ok(())).unwrap();
    for method in ["meet", "warm"] {
        server
            .dispatch(method, rigwire_std::Dispatch::Pool)
            .unwrap();
    }
    let server = server.start().unwrap();
    let url = server.local_url();
    let warm = Client::connect(&url, cfg("warm")).unwrap();
    warm.call::<_, ()>("warm", &()).unwrap();
    std::thread::sleep(Duration::from_millis(20)); // its pool thread is idle now
    let callers: Vec<_> = (0..N)
        .map(|i| {
            let client = Client::connect(&url, cfg(&format!("script-{i}"))).unwrap();
            std::thread::spawn(move || client.call::<_, bool>("meet", &()).unwrap())
        })
        .collect();
    let met_all: Vec<bool> = callers.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(met_all, vec![true; N], "the burst did not run in parallel");
    server.shutdown(Duration::from_secs(1));
}

/// `on_ready` tells of each answer with no thread waiting for it: the
/// answers, a deadline that passed, a lost connection; a call cancelled
/// first tells nothing; and a server's call back to its client is told of
/// even when the connection sat idle past the time it would be parked.
#[test]
fn calls_watched_with_no_thread_waiting_are_told_of_their_answers() {
    use std::sync::mpsc;
    let limit = Duration::from_secs(10);
    for url in transports() {
        let probe = Probe::default();
        // No keepalive: no timer but the calls' deadlines wakes a reader.
        let server = rig(&url, cfg("rig").keepalive(None), probe.clone());
        let script = cfg("script").keepalive(None);
        let client = Client::connect(&server.local_url(), script).unwrap();
        let (told, woken) = mpsc::channel::<u64>();
        let watch = |call: &rigwire_std::RawPendingCall| {
            let (told, id) = (told.clone(), call.id());
            call.on_ready(move || {
                let _ = told.send(id);
            });
        };
        let args: Vec<Payload> = (0..200u32)
            .map(|i| Payload::postcard(&i).unwrap())
            .collect();
        let mut calls = client.start_batch("echo", args.clone(), None).unwrap();
        calls.iter().for_each(watch);
        for _ in 0..calls.len() {
            woken.recv_timeout(limit).expect("every answer is told of");
        }
        for (call, sent) in calls.iter_mut().zip(&args) {
            assert_eq!(
                call.wait_timeout(Duration::ZERO).as_ref(),
                Ok(sent),
                "{url}"
            );
        }
        // Told of at once when the answer is in already.
        let mut done = client.start_raw("echo", args[0].clone(), None).unwrap();
        assert_eq!(done.wait_timeout(limit).as_ref(), Ok(&args[0]));
        watch(&done);
        assert_eq!(woken.recv_timeout(limit), Ok(done.id()));
        // A deadline passes with nobody waiting for it, while the reader
        // waits in a read begun before the call, with no end (once no
        // caller has waited for a while).
        std::thread::sleep(rigwire_std::core::link::LINGER * 3);
        let unit = Payload::postcard(&()).unwrap();
        let short = Some(Duration::from_millis(200));
        let mut late = client.start_raw("block", unit.clone(), short).unwrap();
        watch(&late);
        assert_eq!(woken.recv_timeout(limit), Ok(late.id()), "{url}");
        let deadline = late.wait_timeout(Duration::ZERO);
        assert!(
            matches!(deadline, Err(Error::DeadlineExceeded)),
            "{deadline:?}"
        );
        // Cancelled before its answer: never told.
        let cancelled = client.start_raw("block", unit.clone(), None).unwrap();
        watch(&cancelled);
        cancelled.cancel();
        // The connection is lost under a watched call.
        let mut lost = client.start_raw("block", unit.clone(), None).unwrap();
        watch(&lost);
        assert!(probe.blocking.wait(limit));
        server.abort();
        assert_eq!(woken.recv_timeout(limit), Ok(lost.id()), "{url}");
        let gone = lost.wait_timeout(Duration::ZERO);
        assert!(matches!(gone, Err(Error::Disconnected(_))), "{gone:?}");
        assert!(
            woken.try_recv().is_err(),
            "the cancelled call told of something"
        );
    }

    // A server's connection whose call back waits longer than it takes to
    // park an idle connection keeps its thread, so the answer is told of.
    let callers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", cfg("rig")).unwrap();
    let kept = Arc::clone(&callers);
    server
        .expose_with("hello", move |ctx: &rigwire_std::CallContext, (): ()| {
            kept.lock().unwrap().push(ctx.peer.clone());
            Ok(())
        })
        .unwrap();
    let server = server.start().unwrap();
    let mut handlers = Handlers::new();
    let after_parking = rigwire_std::core::link::PARK_AFTER * 3;
    handlers
        .expose("client.slow", move |(): ()| {
            std::thread::sleep(after_parking);
            Ok(7u8)
        })
        .unwrap()
        .dispatch("client.slow", rigwire_std::Dispatch::Pool)
        .unwrap();
    let client = Client::connect_with(&server.local_url(), cfg("script"), handlers).unwrap();
    client.call::<_, ()>("hello", &()).unwrap();
    let peer = callers.lock().unwrap().pop().unwrap();
    let mut call = peer
        .start_raw("client.slow", Payload::postcard(&()).unwrap(), None)
        .unwrap();
    let (told, woken) = mpsc::channel();
    call.on_ready(move || {
        let _ = told.send(());
    });
    assert_eq!(
        woken.recv_timeout(limit),
        Ok(()),
        "a parked connection's answer is told of"
    );
    assert_eq!(
        call.wait_timeout(Duration::ZERO),
        Ok(Payload::postcard(&7u8).unwrap())
    );
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn starts_that_never_wait_are_told_when_room_frees_and_keep_the_deadline_they_were_made_with() {
    use rigwire_std::{Deferred, RawPendingCall};
    use std::sync::mpsc;
    use std::time::Instant;
    let limit = Duration::from_secs(10);
    let kib = |n: usize| Payload::new(Codec::Postcard, vec![7u8; n * 1024]);
    let server = rig("tcp://127.0.0.1:0", cfg("rig"), Probe::default());
    let mut script = cfg("script").max_frame(1024 * 1024);
    // Room for two of the calls below: a batch's output is held until it
    // ends, so the third is refused for room whatever the socket takes.
    script.protocol.max_queued_output = 1024 * 1024;
    let client = Client::connect(&server.local_url(), script).unwrap();
    let args: Vec<Payload> = (0..8).map(|_| kib(400)).collect();
    let made = Instant::now();
    let mut calls: Vec<RawPendingCall> = Vec::new();
    let mut tries = 0;
    while calls.len() < args.len() {
        tries += 1;
        let (told, room) = mpsc::channel();
        let rest = args[calls.len()..].to_vec();
        let on_room = move || {
            let _ = told.send(());
        };
        let tried = client
            .try_start_batch("echo", rest, Some(limit), made, on_room)
            .unwrap();
        calls.extend(tried.calls);
        match tried.rest {
            None => break,
            Some(why) => assert_eq!(why, Deferred::Room),
        }
        room.recv_timeout(limit).expect("told when room frees");
    }
    assert!(
        tries > 1,
        "every call fit at once: nothing was refused for room"
    );
    for (mut call, sent) in calls.into_iter().zip(&args) {
        assert_eq!(call.wait_timeout(limit).as_ref(), Ok(sent));
    }

    // The deadline is the one the calls were made with, however late
    // they try again.
    let long_ago = Instant::now() - Duration::from_secs(1);
    let late = client.try_start_batch(
        "echo",
        vec![kib(1)],
        Some(Duration::from_millis(500)),
        long_ago,
        || {},
    );
    assert!(matches!(late, Err(Error::DeadlineExceeded)), "{late:?}");

    // A lost connection that reconnect would make again is not made by a
    // start that never waits: one that waits makes it.
    let server_url = server.local_url();
    let reconnecting = cfg("script").reconnect(rigwire_std::Reconnect::default());
    let client = Client::connect(&server_url, reconnecting).unwrap();
    server.shutdown(Duration::from_secs(1));
    let gone = Instant::now() + limit;
    while client.close_reason().is_none() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(10));
    }
    let tried = client
        .try_start_batch("echo", vec![kib(1)], Some(limit), Instant::now(), || {})
        .unwrap();
    assert!(tried.calls.is_empty());
    assert_eq!(tried.rest, Some(Deferred::Redial));
    let notified = client.try_notify_raw("echo", kib(1), Instant::now(), || {});
    assert_eq!(notified.unwrap(), Some(Deferred::Redial));
    let late = client.try_start_batch("echo", vec![kib(1)], Some(limit), long_ago - limit, || {});
    assert!(matches!(late, Err(Error::DeadlineExceeded)), "{late:?}");
}

#[test]
fn more_calls_at_once_than_the_rig_takes_wait_for_a_slot_instead_of_failing_busy() {
    // The rig runs 256 calls at once and answers more `Busy`; it says so in
    // its `Hello`, so the 300 callers of one client take turns instead.
    let server = rig("tcp://127.0.0.1:0", cfg("rig"), Probe::default());
    let client = Client::connect(&server.local_url(), cfg("script")).unwrap();
    let limit = Some(Duration::from_secs(30));
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..300)
            .map(|_| {
                let args = Payload::postcard(&50u64).unwrap();
                s.spawn(|| client.call_raw("sleep_ms", args, limit))
            })
            .collect();
        for call in calls {
            let outcome = call.join().expect("a caller panicked");
            assert!(outcome.is_ok(), "{outcome:?}");
        }
    });
    // With no thread of its own, a client reads the answers that free a
    // slot itself while it waits for one.
    let local = LocalClient::connect(&server.local_url(), cfg("script")).unwrap();
    let args = vec![Payload::postcard(&1u64).unwrap(); 300];
    let calls = local.start_batch("sleep_ms", args, limit).unwrap();
    for call in calls {
        let outcome = call.wait();
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_call_back_that_calls_again_is_not_held_for_a_slot_its_own_caller_holds() {
    // The rig runs 4 calls at once. 4 calls take every slot; each, to
    // answer, calls the script back, whose handler calls the rig again:
    // waiting for a slot would wait for the very calls it serves (for good,
    // without a deadline). It goes, and the full rig answers `Busy`.
    let mut rig_config = cfg("rig");
    rig_config.protocol.max_incoming_calls = 4;
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", rig_config).unwrap();
    let together = Arc::new(Count::default());
    server
        .expose_with("acquire", move |ctx: &rigwire_std::CallContext, v: u32| {
            together.arrive_and_wait(4, Duration::from_secs(10));
            let progress: u32 = ctx.peer.call("progress", &v)?;
            Ok(progress)
        })
        .unwrap()
        .dispatch("acquire", rigwire_std::Dispatch::Pool)
        .unwrap();
    server.expose("position", |(): ()| Ok(7u32)).unwrap();
    let running = server.start().unwrap();
    let mut handlers = Handlers::new();
    handlers
        .expose_with("progress", |ctx: &rigwire_std::CallContext, v: u32| {
            let at: u32 = ctx.peer.call("position", &())?;
            Ok(v + at)
        })
        .unwrap()
        .dispatch("progress", rigwire_std::Dispatch::Pool)
        .unwrap();
    let client = Client::connect_with(&running.local_url(), cfg("script"), handlers).unwrap();
    let limit = Duration::from_secs(20);
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..4u32)
            .map(|v| {
                let client = &client;
                s.spawn(move || client.call_timeout::<_, u32>("acquire", &v, limit))
            })
            .collect();
        // None waits for its deadline: each call back's call is answered,
        // `Busy` while the rig is full (once one of the 4 has failed so, a
        // slot is free and the others' may be served).
        for (v, call) in calls.into_iter().enumerate() {
            let outcome = call.join().unwrap();
            let busy = |e: &rigwire_std::RemoteError| e.message.to_lowercase().contains("busy");
            assert!(
                matches!(&outcome, Err(Error::Remote(e)) if busy(e)) || outcome == Ok(v as u32 + 7),
                "{outcome:?}"
            );
        }
    });
    running.shutdown(Duration::from_secs(1));
}
