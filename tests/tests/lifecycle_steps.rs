//! Lifecycle steps are atomic in both runtimes: two concurrent `exp.init`
//! run the rig's hook once and the other caller is told which step is in
//! progress; `exp.init` takes nothing, `null` or an object of data; a stop
//! `immediately` is an interrupt.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rigwire_core::lifecycle::methods;
use rigwire_core::Config;
use rigwire_core::{Error, ErrorKind, ExpInfo, ExpStatus, Payload, StopArgs};

/// What the rig's init hook saw: how often it ran, and its last data.
#[derive(Default)]
struct Seen {
    inits: AtomicUsize,
    data: Mutex<Option<serde_json::Map<String, serde_json::Value>>>,
}

fn std_rig(seen: Arc<Seen>) -> rigwire_std::RunningServer {
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
    rigwire_std::RigService::new()
        .on_init(move |_ctx, data| {
            seen.inits.fetch_add(1, Ordering::SeqCst);
            *seen.data.lock().unwrap() = data.0.clone();
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        })
        .expose(server.handlers_mut())
        .unwrap();
    server.start().unwrap()
}

fn smol_rig(seen: Arc<Seen>) -> rigwire_smol::RunningServer {
    let mut server = rigwire_smol::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
    rigwire_smol::RigService::new()
        .on_init(move |_ctx, data| {
            let seen = Arc::clone(&seen);
            async move {
                seen.inits.fetch_add(1, Ordering::SeqCst);
                *seen.data.lock().unwrap() = data.0;
                smol::Timer::after(Duration::from_millis(300)).await;
                Ok(())
            }
        })
        .expose(server.handlers_mut())
        .unwrap();
    server.start().unwrap()
}

/// Two `exp.init` at once: one succeeds, the other is refused as `Busy`,
/// naming the step in progress; the hook ran once.
fn assert_one_init(results: Vec<Result<ExpStatus, Error>>, seen: &Seen) {
    assert_eq!(seen.inits.load(Ordering::SeqCst), 1, "the hook ran twice");
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    let refused = results.into_iter().find_map(Result::err).unwrap();
    // The rig answered `Busy`, which the caller sees as such.
    match refused {
        // Said once ("busy: the peer is busy: cannot init ..." it was).
        err @ Error::Busy(_) => assert_eq!(
            err.to_string(),
            "busy: the peer says: cannot init while init is in progress"
        ),
        other => panic!("{other}"),
    }
}

fn json(text: &str) -> Payload {
    Payload::new(rigwire_core::Codec::Json, text.as_bytes().to_vec())
}

#[test]
fn std_two_concurrent_inits_run_the_hook_once() {
    let seen = Arc::new(Seen::default());
    let rig = std_rig(Arc::clone(&seen));
    let client = rigwire_std::Client::connect(&rig.local_url(), Config::named("script")).unwrap();
    let results = std::thread::scope(|s| {
        let calls: Vec<_> = (0..2)
            .map(|_| s.spawn(|| client.call::<_, ExpStatus>(methods::INIT, &())))
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_one_init(results, &seen);
    // Data from a script: an object reaches the hook; cleanup and init again.
    let status: ExpStatus = client.call(methods::CLEANUP, &()).unwrap();
    assert_eq!(status, ExpStatus::Connected);
    let answer = client
        .call_raw(methods::INIT, json(r#"{"subject": "mouse-1"}"#), None)
        .unwrap();
    assert_eq!(
        answer.decode::<ExpStatus>().unwrap(),
        ExpStatus::Initialized
    );
    assert_eq!(
        seen.data.lock().unwrap().as_ref().unwrap()["subject"],
        "mouse-1"
    );
    let bad = client.call_raw(methods::CLEANUP, json(""), None).unwrap();
    assert_eq!(bad.decode::<ExpStatus>().unwrap(), ExpStatus::Connected);
    let err = client
        .call_raw(methods::INIT, json("[1, 2]"), None)
        .unwrap_err();
    assert!(
        matches!(err, Error::Remote(ref e) if e.kind == ErrorKind::BadArguments),
        "{err}"
    );
    rig.shutdown(Duration::from_secs(1));
}

#[test]
fn smol_two_concurrent_inits_run_the_hook_once() {
    let seen = Arc::new(Seen::default());
    let rig = smol_rig(Arc::clone(&seen));
    smol::block_on(async {
        let client = rigwire_smol::Client::connect(&rig.local_url(), Config::named("script"))
            .await
            .unwrap();
        let (a, b) = smol::future::zip(
            client.call::<_, ExpStatus>(methods::INIT, &()),
            client.call::<_, ExpStatus>(methods::INIT, &()),
        )
        .await;
        assert_one_init(vec![a, b], &seen);
        // A stop `immediately` is an interrupt.
        client
            .call::<_, ExpStatus>(methods::START, &"2026-11-26_1_mouse-1")
            .await
            .unwrap();
        let stopped: ExpStatus = client
            .call(methods::STOP, &Some(StopArgs { immediately: true }))
            .await
            .unwrap();
        assert_eq!(stopped, ExpStatus::Stopped);
        let info: ExpInfo = client.call(methods::INFO, &()).await.unwrap();
        assert!(info.interrupted);
        let answer = client
            .call_raw(methods::CLEANUP, json("null"), None)
            .await
            .unwrap();
        assert_eq!(answer.decode::<ExpStatus>().unwrap(), ExpStatus::Connected);
        let answer = client
            .call_raw(methods::INIT, json("{}"), None)
            .await
            .unwrap();
        assert_eq!(
            answer.decode::<ExpStatus>().unwrap(),
            ExpStatus::Initialized
        );
        assert_eq!(seen.data.lock().unwrap().as_ref().map(|m| m.len()), Some(0));
        rig.shutdown(Duration::from_secs(1)).await;
    });
}
