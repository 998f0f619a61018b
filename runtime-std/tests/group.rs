//! Groups of rigs and the standard lifecycle service.

mod common;

use std::time::Duration;

use common::*;
use rigwire_std::core::lifecycle::methods;
use rigwire_std::core::{ExpRef, ExpStatus};
use rigwire_std::{
    CallContext, Config, Error, ErrorKind, Group, GroupError, HandlerError, RigService,
    RunningServer, Server,
};

/// A rig with the lifecycle service; its start hook reports `armed` unless
/// `silent`, records its name in `order` on stop, and fails `init` if `broken`.
fn lifecycle_rig(
    name: &'static str,
    order: Collector<String>,
    silent: bool,
    broken: bool,
) -> RunningServer {
    let mut server = Server::bind("tcp://127.0.0.1:0", cfg(name)).unwrap();
    let service = RigService::new()
        .on_init(
            move |_ctx: &CallContext, _data: &rigwire_std::core::InitData| {
                if broken {
                    Err(HandlerError::new("camera not found"))
                } else {
                    Ok(())
                }
            },
        )
        .on_start(move |ctx: &CallContext, _exp: &ExpRef| {
            if !silent {
                ctx.peer.notify(methods::EVENT, &("armed", name))?;
            }
            Ok(())
        })
        .on_stop(move |_ctx: &CallContext, _immediately: bool| {
            order.push(name.to_owned());
            Ok(())
        });
    service.expose(server.handlers_mut()).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    server
        .expose("fail", |(): ()| -> Result<(), HandlerError> {
            Err(HandlerError::new("no"))
        })
        .unwrap();
    server.start().unwrap()
}

fn group_of(servers: &[(&str, &RunningServer)]) -> Group {
    let urls: Vec<(String, String)> = servers
        .iter()
        .map(|(n, s)| ((*n).to_owned(), s.local_url()))
        .collect();
    let named: Vec<(&str, &str)> = urls.iter().map(|(n, u)| (n.as_str(), u.as_str())).collect();
    Group::connect(&named, &cfg("script")).unwrap()
}

#[test]
fn an_experiment_runs_across_the_group_and_stops_in_reverse_order() {
    let order = Collector::default();
    let rigs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| lifecycle_rig(n, order.clone(), false, false))
        .collect();
    let group = group_of(&[("a", &rigs[0]), ("b", &rigs[1]), ("c", &rigs[2])]);
    let exp: ExpRef = "2026-11-21_4_mouse".parse().unwrap();
    let all = |r: rigwire_std::GroupResults<ExpStatus>| {
        r.into_result()
            .unwrap()
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    assert_eq!(all(group.init(None)), vec![ExpStatus::Initialized; 3]);
    assert_eq!(all(group.start(&exp, None)), vec![ExpStatus::Running; 3]);
    let armed = group.wait_event("armed", Duration::from_secs(10)).unwrap();
    assert_eq!(
        armed,
        vec![
            ("a".into(), "a".into()),
            ("b".into(), "b".into()),
            ("c".into(), "c".into())
        ]
    );
    assert_eq!(all(group.status(None)), vec![ExpStatus::Running; 3]);
    let infos = group.info(None).into_result().unwrap();
    assert!(infos.iter().all(|(_, i)| i.exp_ref.as_ref() == Some(&exp)));
    assert_eq!(all(group.stop(true, None)), vec![ExpStatus::Stopped; 3]);
    assert_eq!(
        order.wait_for(3),
        vec!["c", "b", "a"],
        "stop runs in reverse order"
    );
    let cleaned = group.cleanup(None);
    assert_eq!(
        cleaned.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        vec!["c", "b", "a"]
    );
    assert!(cleaned.all_ok());
}

#[test]
fn each_rig_answers_by_name_and_one_failure_hides_no_other() {
    let order = Collector::default();
    let rigs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| lifecycle_rig(n, order.clone(), false, *n == "b"))
        .collect();
    let group = group_of(&[("a", &rigs[0]), ("b", &rigs[1]), ("c", &rigs[2])]);
    let init = group.init(None);
    assert_eq!(init.get("a"), Some(&Ok(ExpStatus::Initialized)));
    let Some(Err(Error::Remote(e))) = init.get("b") else {
        panic!("{init:?}")
    };
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::Handler, "camera not found")
    );
    assert_eq!(init.get("c"), Some(&Ok(ExpStatus::Initialized)));
    let err = init.into_result().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("1 of 3 rigs failed: b: remote error: Handler: camera not found"),
        "{err}"
    );
    // The failed hook left b where it was: it can still be initialized later, and
    // a step out of order is refused with the reason.
    let start = group.start(&"2026-11-21_1_m".parse().unwrap(), None);
    let Some(Err(Error::Remote(e))) = start.get("b") else {
        panic!()
    };
    assert_eq!(
        e.message,
        "cannot start while the rig is connected: init first"
    );
}

#[test]
fn a_rig_that_drops_out_mid_call_shows_as_disconnected_and_the_others_are_kept() {
    let order = Collector::default();
    let a = lifecycle_rig("a", order.clone(), false, false);
    let probe = Probe::default();
    let b = rig("tcp://127.0.0.1:0", cfg("b"), probe.clone());
    let group = group_of(&[("a", &a), ("b", &b)]);
    assert_eq!(
        group
            .call_all::<_, i64>("add", &(1, 2), None)
            .into_result()
            .unwrap(),
        [("a".to_owned(), 3), ("b".to_owned(), 3)]
    );
    // b dies while its `block` handler holds the call; a has no `block`
    // and answers at once.
    let started = probe.blocking.clone();
    let killer = std::thread::spawn(move || {
        assert!(
            started.wait(Duration::from_secs(10)),
            "b never started the call"
        );
        b.abort();
    });
    let blocked = group.call_all::<_, bool>("block", &(), Some(Duration::from_secs(10)));
    killer.join().unwrap();
    assert!(
        matches!(blocked.get("a"), Some(Err(Error::Remote(e))) if e.kind == ErrorKind::NoSuchMethod)
    );
    assert!(
        matches!(blocked.get("b"), Some(Err(Error::Disconnected(_)))),
        "{blocked:?}"
    );
    probe.gate.open();
}

#[test]
fn waiting_for_an_event_names_the_rigs_that_did_not_answer() {
    let order = Collector::default();
    let a = lifecycle_rig("a", order.clone(), false, false);
    let quiet = lifecycle_rig("quiet", order.clone(), true, false);
    let group = group_of(&[("a", &a), ("quiet", &quiet)]);
    group.init(None).into_result().unwrap();
    group
        .start(&"2026-11-21_1_m".parse().unwrap(), None)
        .into_result()
        .unwrap();
    let err = group
        .wait_event("armed", Duration::from_millis(200))
        .unwrap_err();
    let GroupError::Timeout { missing, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(missing, &vec!["quiet".to_owned()]);
    assert!(err.to_string().contains("from quiet"), "{err}");
}

#[test]
fn connecting_a_group_names_the_rigs_that_cannot_be_reached() {
    let order = Collector::default();
    let a = lifecycle_rig("a", order, false, false);
    let url = a.local_url();
    let err = Group::connect(
        &[("a", url.as_str()), ("gone", "tcp://127.0.0.1:1")],
        &cfg("script"),
    )
    .unwrap_err();
    let GroupError::Failed { failed, succeeded } = err else {
        panic!()
    };
    assert_eq!(succeeded, vec!["a"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "gone");
    assert!(matches!(failed[0].1, Error::Connect { .. }));
    // A wrong secret is named too.
    let err = Group::connect(
        &[("a", url.as_str())],
        &Config::named("x").secret("nope-nope-nope-nope").unwrap(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("a: authentication failed"),
        "{err}"
    );
}

/// A group call whose `go_on` says no stops waiting, cancels the rigs'
/// calls in flight (each rig is told) and calls no further rig.
#[test]
fn a_group_call_told_to_stop_cancels_the_calls_in_flight() {
    for order in [
        rigwire_std::core::GroupOrder::Concurrent,
        rigwire_std::core::GroupOrder::InOrder,
    ] {
        let (first, second) = (Probe::default(), Probe::default());
        let a = rig("tcp://127.0.0.1:0", cfg("a"), first.clone());
        let b = rig("tcp://127.0.0.1:0", cfg("b"), second.clone());
        let clients = [("a", &a), ("b", &b)].map(|(n, s)| {
            (
                n.to_owned(),
                rigwire_std::Client::connect(&s.local_url(), cfg("script")).unwrap(),
            )
        });
        let group = Group::from_clients(clients.into()).unwrap();
        let asked = std::sync::atomic::AtomicUsize::new(0);
        // Asked once the first rig's handler runs: then it says stop.
        let go_on = || {
            asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            !first.watching.wait(Duration::ZERO)
        };
        let args = rigwire_std::json_payload("null").unwrap();
        let results = group.call_raw_while(order, "watch_cancel", args, None, &go_on);
        assert!(results.is_none(), "{order:?}");
        assert!(
            first.saw_cancel.wait(Duration::from_secs(10)),
            "{order:?}: a was not told"
        );
        let concurrent = order == rigwire_std::core::GroupOrder::Concurrent;
        // At once, b was called too and is told; in order, it never was.
        assert_eq!(
            second
                .watching
                .wait(Duration::from_millis(if concurrent { 10_000 } else { 200 })),
            concurrent
        );
        if concurrent {
            assert!(
                second.saw_cancel.wait(Duration::from_secs(10)),
                "b was not told"
            );
        }
        assert!(asked.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    }
}

/// Waiting for an event ends when `go_on` says no, long before its timeout,
/// and without it still ends by its timeout naming who did not report.
#[test]
fn waiting_for_an_event_ends_when_told_to() {
    let a = rig("tcp://127.0.0.1:0", cfg("a"), Probe::default());
    let client = rigwire_std::Client::connect(&a.local_url(), cfg("script")).unwrap();
    let group = Group::from_clients(vec![("a".to_owned(), client)]).unwrap();
    let started = std::time::Instant::now();
    let asked = std::sync::atomic::AtomicBool::new(false);
    let go_on = || !asked.swap(true, std::sync::atomic::Ordering::SeqCst);
    assert!(group
        .wait_event_while("never", Duration::from_secs(60), &go_on)
        .is_none());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it waited out its timeout"
    );
    let waited = group.wait_event_while("never", Duration::from_millis(100), &|| true);
    assert!(
        matches!(waited, Some(Err(GroupError::Timeout { .. }))),
        "{waited:?}"
    );
}
