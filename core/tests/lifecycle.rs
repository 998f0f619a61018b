//! Experiment references and the rig lifecycle state machine.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use rigwire_core::lifecycle::{ExpRefError, OutOfOrder};
use rigwire_core::{ExpRef, ExpStatus, Lifecycle, Step};

#[test]
fn experiment_references_parse_validate_and_print() {
    let r: ExpRef = "2022-01-01_3_ZM_1".parse().unwrap();
    assert_eq!(
        (r.date(), r.number(), r.subject()),
        ((2022, 1, 1), 3, "ZM_1")
    );
    assert_eq!(r.to_string(), "2022-01-01_3_ZM_1");
    assert_eq!(
        ExpRef::new(2024, 2, 29, 1, "mouse").unwrap().to_string(),
        "2024-02-29_1_mouse"
    );
    assert_eq!(serde_json::to_string(&r).unwrap(), "\"2022-01-01_3_ZM_1\"");
    assert_eq!(
        serde_json::from_str::<ExpRef>("\"2022-01-01_3_ZM_1\"").unwrap(),
        r
    );
}

#[test]
fn bad_references_say_what_is_wrong() {
    for bad in [
        "",
        "2022-01-01",
        "2022-01-01_1",
        "22-01-01_1_x",
        "2022-1-01_1_x",
        "2022-01-01_x_mouse",
        "2022-01-01__mouse",
    ] {
        assert!(
            matches!(bad.parse::<ExpRef>(), Err(ExpRefError::Shape(_))),
            "{bad}"
        );
    }
    assert_eq!(
        "2023-02-29_1_m".parse::<ExpRef>(),
        Err(ExpRefError::Date {
            year: 2023,
            month: 2,
            day: 29
        })
    );
    assert!(matches!(
        "2022-13-01_1_m".parse::<ExpRef>(),
        Err(ExpRefError::Date { .. })
    ));
    assert_eq!("2022-01-01_0_m".parse::<ExpRef>(), Err(ExpRefError::Number));
    assert!(matches!(
        "2022-01-01_1_a b".parse::<ExpRef>(),
        Err(ExpRefError::Subject(_))
    ));
    assert!(serde_json::from_str::<ExpRef>("\"2022-01-01_0_m\"").is_err());
}

#[test]
fn the_lifecycle_runs_in_order_and_refuses_steps_out_of_order() {
    let mut rig = Lifecycle::new();
    let r: ExpRef = "2026-11-21_1_mouse".parse().unwrap();
    assert_eq!(
        rig.apply(Step::Start, Some(r.clone())),
        Err(OutOfOrder {
            step: Step::Start,
            status: ExpStatus::Connected,
            hint: "init first"
        })
    );
    assert_eq!(rig.apply(Step::Init, None), Ok(ExpStatus::Initialized));
    assert_eq!(
        rig.apply(Step::Start, Some(r.clone())),
        Ok(ExpStatus::Running)
    );
    assert_eq!(rig.info().exp_ref, Some(r));
    let err = rig.apply(Step::Cleanup, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot cleanup while the rig is running: stop the experiment first"
    );
    assert_eq!(rig.apply(Step::Interrupt, None), Ok(ExpStatus::Stopped));
    assert!(rig.info().interrupted);
    assert_eq!(rig.apply(Step::Cleanup, None), Ok(ExpStatus::Connected));
    assert_eq!(rig.info().exp_ref, None);
    // Init straight after cleanup starts the next experiment.
    assert_eq!(rig.apply(Step::Init, None), Ok(ExpStatus::Initialized));
    assert_eq!(rig.apply(Step::Cleanup, None), Ok(ExpStatus::Connected));
}

#[test]
fn status_codes_match_iblutil() {
    for (s, code) in [
        (ExpStatus::Connected, 0),
        (ExpStatus::Initialized, 10),
        (ExpStatus::Running, 20),
        (ExpStatus::Stopped, 30),
    ] {
        assert_eq!(s.code(), code);
        assert_eq!(ExpStatus::from_code(code), Some(s));
    }
    assert_eq!(ExpStatus::from_code(5), None);
}

mod group_results {
    use std::time::Duration;

    use rigwire_core::{Error, EventLog, EventWait, GroupError, GroupOrder, GroupResults, Rigs};

    #[test]
    fn results_keep_every_rig_by_name() {
        let mut r = GroupResults::new();
        r.push("a", Ok(1));
        r.push("b", Err(Error::DeadlineExceeded));
        r.push("c", Ok(3));
        assert!(!r.all_ok());
        assert_eq!(r.get("c"), Some(&Ok(3)));
        assert_eq!(r.failures().map(|(n, _)| n).collect::<Vec<_>>(), vec!["b"]);
        let err = r.into_result().unwrap_err();
        assert_eq!(err.to_string(), "1 of 3 rigs failed: b: deadline exceeded");
        let GroupError::Failed { succeeded, .. } = err else {
            panic!()
        };
        assert_eq!(succeeded, vec!["a", "c"]);
    }

    #[test]
    fn an_event_wait_names_who_is_missing_in_group_order() {
        let mut w = EventWait::new("armed", ["a", "b", "c"]);
        w.record("c", 3);
        w.record("stranger", 9);
        w.record("c", 4); // the first report counts
        assert_eq!(w.missing(), vec!["a", "b"]);
        let err = w
            .clone()
            .finish(Duration::from_secs(2), |_| None)
            .unwrap_err();
        assert_eq!(err.to_string(), "no 'armed' event within 2s from a, b");
        w.record("a", 1);
        w.record("b", 2);
        assert_eq!(
            w.finish(Duration::ZERO, |_| None).unwrap(),
            vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]
        );
    }

    #[test]
    fn rigs_are_found_by_name_and_reached_in_the_order_of_the_call() {
        let rigs = Rigs::new(vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]).unwrap();
        assert_eq!(rigs.names(), vec!["a", "b", "c"]);
        assert_eq!(rigs.rig("b").ok(), Some(&2));
        let err = rigs.rig("d").unwrap_err();
        assert!(
            matches!(&err, GroupError::UnknownRig(n) if n == "d"),
            "{err}"
        );
        let order = |o| rigs.in_order(o).map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(order(GroupOrder::InOrder), vec!["a", "b", "c"]);
        assert_eq!(order(GroupOrder::Concurrent), vec!["a", "b", "c"]);
        assert_eq!(order(GroupOrder::Reverse), vec!["c", "b", "a"]);
    }

    /// Two rigs of one name could not be told apart (their answers, their
    /// events, `rig(name)`): refused, naming it.
    #[test]
    fn two_rigs_of_one_name_are_refused_naming_it() {
        let twice = Rigs::new(vec![("a".into(), 1), ("b".into(), 2), ("a".into(), 3)]);
        let err = twice.unwrap_err();
        assert_eq!(err, GroupError::SameName("a".into()));
        assert_eq!(
            err.to_string(),
            "two rigs are named 'a': a group tells its rigs apart by name, so each needs one of \
             its own"
        );
    }

    /// A rig that has not reported and whose connection ended never will
    /// there: the wait ends at once, naming it and why (it waited out its
    /// timeout, and said only that no event came).
    #[test]
    fn a_wait_ends_when_a_rig_that_has_not_reported_is_gone() {
        use rigwire_core::ConnectionError;
        let ab = || vec!["a".to_owned(), "b".to_owned()];
        let closed = Error::Disconnected(ConnectionError::TransportClosed("reset".into()));
        let b_gone = |rig: &str| (rig == "b").then(|| closed.clone());
        let a_gone = |rig: &str| (rig == "a").then(|| closed.clone());
        let mut log = EventLog::default();
        assert!(!log.wait("ready", ab()).is_settled(|_| None));
        assert!(log.wait("ready", ab()).is_settled(b_gone));
        log.record("a", "ready", "yes".into());
        // A rig that reported before it went still counts.
        assert!(!log.wait("ready", ab()).is_settled(a_gone));
        let err = log.take("ready", ab(), Duration::ZERO, b_gone).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no 'ready' event from b: b's connection ended (transport closed: reset)"
        );
        assert!(matches!(&err, GroupError::Lost { lost, missing, .. }
            if lost.len() == 1 && missing == &["b"]));
        // Nothing was taken: a's report still counts for the next wait.
        log.record("b", "ready", "back".into());
        assert_eq!(
            log.take("ready", ab(), Duration::ZERO, |_| None)
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn each_report_counts_for_one_wait_and_the_log_stays_bounded() {
        let up = |_: &str| None;
        let ab = || vec!["a".to_owned(), "b".to_owned()];
        let mut log = EventLog::default();
        log.record("a", "ready", "first".into());
        log.record("a", "ready", "second".into());
        log.record("b", "done", "x".into());
        log.record("stranger", "ready", "y".into());
        let wait = log.wait("ready", ab());
        assert_eq!(wait.missing(), vec!["b"]);
        // A wait that times out takes nothing: tried again, a's still counts.
        let err = log.take("ready", ab(), Duration::ZERO, up).unwrap_err();
        assert_eq!(err.to_string(), "no 'ready' event within 0ns from b");
        log.record("b", "ready", "late".into());
        assert_eq!(
            log.take("ready", ab(), Duration::ZERO, up).unwrap(),
            vec![("a".into(), "first".into()), ("b".into(), "late".into())]
        );
        // The next wait counts the next reports: a's second, none of b's
        // yet. (Every later wait once got the first reports again.)
        assert_eq!(log.wait("ready", ab()).missing(), vec!["b"]);
        log.record("b", "ready", "again".into());
        assert_eq!(
            log.take("ready", ab(), Duration::ZERO, up).unwrap(),
            vec![("a".into(), "second".into()), ("b".into(), "again".into())]
        );
        assert_eq!(log.wait("ready", ab()).missing(), vec!["a", "b"]);

        // A stream of one event nobody waits for keeps its latest reports,
        // and keeps no other event out.
        log.record("a", "armed", "yes".into());
        for i in 0..EventLog::KEPT * 3 {
            log.record("a", "frame", i.to_string());
        }
        let a = || vec!["a".to_owned()];
        let oldest_kept = (EventLog::KEPT * 2).to_string();
        assert_eq!(
            log.take("frame", a(), Duration::ZERO, up).unwrap()[0].1,
            oldest_kept
        );
        assert!(log.wait("armed", a()).is_complete());
        // A rig reporting ever new event names: the oldest pairs are
        // forgotten, the newest still counts.
        for i in 0..EventLog::MAX * 3 {
            log.record("a", &format!("tick {i}"), String::new());
        }
        let last = format!("tick {}", EventLog::MAX * 3 - 1);
        assert!(log.wait(&last, a()).is_complete());
        assert!(!log.wait("armed", a()).is_complete());
        assert!(!log.wait("tick 0", a()).is_complete());
    }

    #[test]
    fn large_details_nobody_waits_for_push_out_their_own_reports_only() {
        let up = |_: &str| None;
        let ab = || vec!["a".to_owned(), "b".to_owned()];
        let mut log = EventLog::default();
        log.record("b", "trial_done", "7".into());
        // A rig streams 1 MiB details (64 kept would be 64 MiB): the log
        // keeps BYTES of them, its latest, and b's small report stays.
        let big = |i: usize| format!("{i:08}{}", "x".repeat((1 << 20) - 8));
        for i in 0..EventLog::KEPT {
            log.record("a", "frame", big(i));
        }
        let kept = EventLog::BYTES / (1 << 20) - 1;
        let taken = log
            .take("frame", vec!["a".into()], Duration::ZERO, up)
            .unwrap();
        assert_eq!(&taken[0].1[..8], format!("{:08}", EventLog::KEPT - kept));
        log.record("a", "trial_done", "7".into());
        assert!(log.wait("trial_done", ab()).is_complete());
        // Taking gives bytes back: as many new ones fit again, the oldest
        // still there.
        for i in 0..(kept - 1) {
            assert_eq!(
                log.take("frame", vec!["a".into()], Duration::ZERO, up)
                    .unwrap()[0]
                    .1[..8],
                format!("{:08}", EventLog::KEPT - kept + 1 + i)
            );
        }
        for i in 0..kept {
            log.record("a", "frame", big(1000 + i));
        }
        let first = log
            .take("frame", vec!["a".into()], Duration::ZERO, up)
            .unwrap();
        assert_eq!(&first[0].1[..8], "00001000");
    }
}

mod endpoints {
    use rigwire_core::{Framing, Url};

    #[test]
    fn urls_parse_into_endpoints_and_print_back() {
        for (url, framing) in [
            ("tcp://127.0.0.1:7400", Framing::Stream),
            ("unix:///tmp/rig.sock", Framing::Stream),
            ("ws://rig-host:8888/wsData", Framing::Message),
            ("tls://rig-host:7400", Framing::Stream),
            ("wss://rig-host:443/data", Framing::Message),
        ] {
            let e = Url::parse(url).unwrap();
            assert_eq!((e.to_string().as_str(), e.framing()), (url, framing));
        }
        assert_eq!(Url::parse("ws://h:1").unwrap().to_string(), "ws://h:1/");
        let tls = Url::parse("wss://[::1]:9/x").unwrap();
        assert!(tls.is_tls() && !Url::parse("ws://h:1").unwrap().is_tls());
        assert_eq!((tls.host(), tls.ws_path()), (Some("::1"), Some("/x")));
        for bad in [
            "127.0.0.1:7400",
            "tcp://nohost",
            "tcp://h:1/x",
            "unix://",
            "ws://",
            "tls://nohost",
            "wss://",
            "smtp://h:25",
        ] {
            let err = Url::parse(bad).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("invalid URL '{bad}'")),
                "{err}"
            );
        }
        // A missing host or a bad port is said so, not left to fail as a
        // name lookup.
        for (bad, why) in [
            (
                "tcp://:7400",
                "no host before ':': tcp://0.0.0.0:PORT listens on every interface",
            ),
            ("ws://:80/x", "no host before ':'"),
            (
                "tls://rig:74000",
                "the port '74000' is not a number from 0 to 65535",
            ),
            ("tcp://rig:", "the port '' is not"),
            ("wss://rig:https/x", "the port 'https' is not"),
            // Another protocol's scheme is answered with ours, and with
            // where that one belongs.
            (
                "http://rig:80",
                "http:// is the control page's (`rigwire control`); rigs and relays take ws://",
            ),
            (
                "https://rig:443",
                "expected tcp://host:port, tls://host:port",
            ),
            (
                "udp://rig-1:11001",
                "udp:// is iblutil's: an iblutil rig is reached with rigwire.ibl",
            ),
            (
                "smtp://h:25",
                "unknown scheme 'smtp': expected tcp://host:port",
            ),
            // The scheme left out, the port left out, a path where none goes.
            ("rig-1:7400", "did you mean 'tcp://rig-1:7400'?"),
            (
                "tcp://rig-1",
                "expected tcp://host:port (the port is missing)",
            ),
            (
                "tcp://rig-1:7400/",
                "(with no path: a path is for ws:// URLs)",
            ),
            // A line read from a file, newline and all.
            (
                "tcp://rig-1:7400\n",
                "invalid URL 'tcp://rig-1:7400': it has white space around it",
            ),
            (" ws://rig-1:80/x", "it has white space around it"),
        ] {
            let err = Url::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = rigwire_core::Target::parse("tcp://relay:7500#data\n").unwrap_err();
        assert!(err.to_string().contains("white space around it"), "{err}");
        assert!(Url::parse("tcp://[::1]:0").is_ok());
        // Schemes are case-insensitive (RFC 3986).
        assert_eq!(
            Url::parse("TCP://rig-1:7400").unwrap(),
            Url::parse("tcp://rig-1:7400").unwrap()
        );
        assert!(Url::parse("WSS://rig-1:443/x").unwrap().is_tls());
    }

    #[test]
    fn a_client_url_may_name_a_service_behind_the_relay_there() {
        use rigwire_core::Target;
        for (url, base, service) in [
            ("tcp://relay:7500#data", "tcp://relay:7500", Some("data")),
            (
                "wss://[::1]:443/clients#scanner",
                "wss://[::1]:443/clients",
                Some("scanner"),
            ),
            (
                "unix:///tmp/relay.sock#stim-2",
                "unix:///tmp/relay.sock",
                Some("stim-2"),
            ),
            ("tcp://rig:7400", "tcp://rig:7400", None),
        ] {
            let target = Target::parse(url).unwrap();
            assert_eq!(target.url.to_string(), base);
            assert_eq!(target.service.as_deref(), service);
            assert_eq!(target.to_string(), url, "prints back as given");
        }
        let data = Target::parse("tcp://relay:7500#data").unwrap();
        assert_eq!(data.method("exp.init"), "data.exp.init");
        let rig = Target::parse("tcp://rig:7400").unwrap();
        assert_eq!(rig.method("exp.init"), "exp.init");
        // Any name a relay registers is reached this way, and no other.
        for name in ["rig 1", "a#b", "#x", "a/b", "α"] {
            let target = Target::parse(&format!("tcp://r:1#{name}")).unwrap();
            assert_eq!(target.service.as_deref(), Some(name));
            assert!(rigwire_core::relay::is_service_name(name));
        }
        let long = format!("tcp://r:1#{}", "x".repeat(129));
        for bad in [
            "tcp://r:1#",
            "tcp://r:1#a.b",
            "tcp://r:1#a\tb",
            "tcp://r:1#rigwire",
            &long,
        ] {
            let err = Target::parse(bad).unwrap_err().to_string();
            assert!(err.contains("URL#NAME: '"), "{bad}: {err}");
            assert!(
                err.contains("' is not a service name: 1 to 128 bytes"),
                "{bad}: {err}"
            );
        }
        // What listens cannot be a service at a relay.
        let err = Url::parse("tcp://0.0.0.0:7400#rig")
            .unwrap_err()
            .to_string();
        assert!(err.contains("names a service behind a relay"), "{err}");
        assert!(
            Target::parse("tcp://nohost#data").is_err(),
            "the URL itself is checked too"
        );
    }
}

#[test]
fn a_step_in_progress_refuses_every_other_step_until_it_finishes() {
    use rigwire_core::lifecycle::StepRefused;
    let mut rig = Lifecycle::new();
    rig.begin(Step::Init).unwrap();
    assert_eq!(rig.in_progress(), Some(Step::Init));
    assert_eq!(
        rig.begin(Step::Init),
        Err(StepRefused::InProgress {
            step: Step::Init,
            in_progress: Step::Init
        })
    );
    let err = rig.begin(Step::Cleanup).unwrap_err();
    assert_eq!(err.to_string(), "cannot cleanup while init is in progress");
    // A failed hook leaves the status as it was, and frees the rig.
    assert_eq!(rig.finish(Step::Init, None, false), ExpStatus::Connected);
    assert_eq!(rig.in_progress(), None);
    rig.begin(Step::Init).unwrap();
    assert_eq!(rig.finish(Step::Init, None, true), ExpStatus::Initialized);
    // Out of order is still out of order.
    assert!(matches!(
        rig.begin(Step::Stop),
        Err(StepRefused::OutOfOrder(_))
    ));
    // Finishing a step that was not begun changes nothing.
    assert_eq!(
        rig.finish(Step::Cleanup, None, true),
        ExpStatus::Initialized
    );
}

/// A start hung on its hardware can be aborted: an interrupt begins beside
/// it (its hook tells the start's to give up), and whichever ends first,
/// however the start ends, the rig ends stopped, interrupted. It was
/// refused, "cannot interrupt while start is in progress".
#[test]
fn an_interrupt_may_abort_a_start_in_progress_whichever_ends_first() {
    use rigwire_core::lifecycle::StepRefused;
    let exp: ExpRef = "2026-11-26_1_ZM_1".parse().unwrap();
    let initialized = || {
        let mut rig = Lifecycle::new();
        rig.begin(Step::Init).unwrap();
        rig.finish(Step::Init, None, true);
        rig.begin(Step::Start).unwrap();
        rig
    };
    // The interrupt ends first: stopped at once; the start's end changes nothing.
    let mut rig = initialized();
    assert!(
        matches!(rig.begin(Step::Stop), Err(StepRefused::InProgress { .. })),
        "a stop at the end of the trial still waits for the start"
    );
    rig.begin(Step::Interrupt).unwrap();
    assert_eq!(rig.in_progress(), Some(Step::Interrupt));
    let err = rig.begin(Step::Interrupt).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot interrupt while interrupt is in progress"
    );
    assert_eq!(rig.finish(Step::Interrupt, None, true), ExpStatus::Stopped);
    assert!(rig.info().interrupted);
    let err = rig.begin(Step::Cleanup).unwrap_err();
    assert_eq!(err.to_string(), "cannot cleanup while start is in progress");
    assert_eq!(
        rig.finish(Step::Start, Some(exp.clone()), true),
        ExpStatus::Stopped
    );
    assert_eq!(rig.info().exp_ref, Some(exp.clone()));
    rig.begin(Step::Cleanup).unwrap();
    assert_eq!(rig.finish(Step::Cleanup, None, true), ExpStatus::Connected);
    // The start ends first, and well: the interrupt stops it.
    let mut rig = initialized();
    rig.begin(Step::Interrupt).unwrap();
    assert_eq!(
        rig.finish(Step::Start, Some(exp.clone()), true),
        ExpStatus::Running
    );
    assert!(matches!(
        rig.begin(Step::Stop),
        Err(StepRefused::InProgress { .. })
    ));
    assert_eq!(rig.finish(Step::Interrupt, None, true), ExpStatus::Stopped);
    assert!(rig.info().interrupted);
    // The start ends first, aborted by the interrupt's hook (a failure):
    // stopped all the same, as had the interrupt ended first.
    let mut rig = initialized();
    rig.begin(Step::Interrupt).unwrap();
    assert_eq!(rig.finish(Step::Start, None, false), ExpStatus::Initialized);
    assert_eq!(rig.finish(Step::Interrupt, None, true), ExpStatus::Stopped);
    assert!(rig.info().interrupted);
    rig.begin(Step::Cleanup).unwrap();
    rig.finish(Step::Cleanup, None, true);
    rig.begin(Step::Init).unwrap();
    rig.finish(Step::Init, None, true);
    rig.begin(Step::Start).unwrap();
    // An interrupt whose hook failed changes nothing: the start goes on.
    rig.begin(Step::Interrupt).unwrap();
    assert_eq!(
        rig.finish(Step::Interrupt, None, false),
        ExpStatus::Initialized
    );
    assert_eq!(rig.finish(Step::Start, Some(exp), true), ExpStatus::Running);
    assert!(!rig.info().interrupted);
}

/// What a caller is answered when a step cannot begin: `Refused` out of
/// order (no hook ran; it was `Handler`, as if the rig's work had failed),
/// `Busy` while another step runs.
#[test]
fn a_step_that_cannot_begin_is_refused_or_busy() {
    use rigwire_core::{ErrorKind, Payload};
    let mut rig = Lifecycle::new();
    let nothing = Payload::json(&()).unwrap();
    let err = rig.begin_call("exp.stop", &nothing).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Refused, "{err:?}");
    assert!(err
        .message
        .contains("only a running experiment can be stopped"));
    rig.begin_call("exp.init", &nothing).unwrap();
    let err = rig.begin_call("exp.init", &nothing).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Busy, "{err:?}");
}
