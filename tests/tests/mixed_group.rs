//! A smol script drives a whole experiment across a smol rig and a blocking
//! rig, each running its runtime's standard lifecycle service.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rigwire_core::lifecycle::methods;
use rigwire_core::{Error, ExpRef, ExpStatus, GroupError, HandlerError};

fn config(name: &str) -> rigwire_core::Config {
    rigwire_core::Config::named(name)
        .secret("group-secret-0123456")
        .unwrap()
}

#[test]
fn a_smol_group_runs_an_experiment_across_both_runtimes() {
    let stops = Arc::new(Mutex::new(Vec::<&str>::new()));
    // The smol rig reports `armed` when it starts and fails its first init.
    let mut smol_server =
        rigwire_smol::Server::bind("tcp://127.0.0.1:0", config("smol-rig")).unwrap();
    let first_init = Arc::new(Mutex::new(true));
    let s = Arc::clone(&stops);
    rigwire_smol::RigService::new()
        .on_init(move |_ctx, _data| {
            let fail = std::mem::replace(&mut *first_init.lock().unwrap(), false);
            async move {
                if fail {
                    Err(HandlerError::new("camera warming up"))
                } else {
                    Ok(())
                }
            }
        })
        .on_start(|ctx: rigwire_smol::CallContext, exp: ExpRef| async move {
            ctx.peer
                .notify(methods::EVENT, &("armed", exp.to_string()))
                .await?;
            Ok(())
        })
        .on_stop(move |_ctx, _immediately| {
            s.lock().unwrap().push("smol");
            async { Ok(()) }
        })
        .expose(smol_server.handlers_mut())
        .unwrap();
    let smol_server = smol_server.start().unwrap();
    // The blocking rig never reports `armed`.
    let mut std_server = rigwire_std::Server::bind("tcp://127.0.0.1:0", config("std-rig")).unwrap();
    let s = Arc::clone(&stops);
    rigwire_std::RigService::new()
        .on_stop(move |_ctx, _immediately| {
            s.lock().unwrap().push("std");
            Ok(())
        })
        .expose(std_server.handlers_mut())
        .unwrap();
    let std_server = std_server.start().unwrap();

    smol::block_on(async {
        let (u1, u2) = (smol_server.local_url(), std_server.local_url());
        let group = rigwire_smol::Group::connect(
            &[("smol", u1.as_str()), ("std", u2.as_str())],
            &config("script"),
        )
        .await
        .unwrap();
        // One rig's failure hides nothing about the other, and can be retried.
        let init = group.init(None).await;
        assert!(
            matches!(init.get("smol"), Some(Err(Error::Remote(e))) if e.message == "camera warming up"),
            "{init:?}"
        );
        assert_eq!(init.get("std"), Some(&Ok(ExpStatus::Initialized)));
        assert_eq!(
            group
                .rig("smol")
                .unwrap()
                .call::<_, ExpStatus>(methods::INIT, &())
                .await
                .unwrap(),
            ExpStatus::Initialized
        );
        let exp: ExpRef = "2026-11-21_7_mouse".parse().unwrap();
        let started = group.start(&exp, None).await.into_result().unwrap();
        assert!(started.iter().all(|(_, s)| *s == ExpStatus::Running));
        // Only the smol rig reports `armed`: the wait names the one that did not.
        let err = group
            .wait_event("armed", Duration::from_millis(300))
            .await
            .unwrap_err();
        let GroupError::Timeout { missing, .. } = err else {
            panic!()
        };
        assert_eq!(missing, vec!["std"]);
        let stopped = group.stop(false, None).await;
        assert_eq!(
            stopped.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            vec!["std", "smol"]
        );
        assert!(stopped.all_ok());
        assert_eq!(
            *stops.lock().unwrap(),
            vec!["std", "smol"],
            "stop runs in reverse order"
        );
        let infos = group.info(None).await.into_result().unwrap();
        assert!(infos
            .iter()
            .all(|(_, i)| i.status == ExpStatus::Stopped && i.exp_ref.as_ref() == Some(&exp)));
        assert!(group.cleanup(None).await.all_ok());
        group.close().await;
        smol_server.shutdown(Duration::from_secs(1)).await;
    });
    std_server.shutdown(Duration::from_secs(1));
}

/// A std rig whose `trial(n)` reports `trial_done` with `n` a little later,
/// from a thread of its own, as a rig reports the end of a trial.
fn trial_rig() -> rigwire_std::RunningServer {
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", config("rig")).unwrap();
    server
        .expose_with("trial", |ctx: &rigwire_std::CallContext, n: u32| {
            let peer = ctx.peer.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                let _ = peer.notify(methods::EVENT, &("trial_done", n.to_string()));
            });
            Ok(())
        })
        .unwrap();
    server.start().unwrap()
}

/// Waiting for `trial_done` once per trial waits for each trial's report,
/// in both runtimes' groups. Every wait after the first once returned the
/// first trial's report at once, and the script ran ahead of the rig.
#[test]
fn each_trials_wait_counts_that_trials_event_only() {
    let rig = trial_rig();
    let url = rig.local_url();
    let rigs = [("rig", url.as_str())];
    let std_group = rigwire_std::Group::connect(&rigs, &config("script")).unwrap();
    for n in 0..3u32 {
        assert!(std_group.call_all::<_, ()>("trial", &n, None).all_ok());
        let done = std_group
            .wait_event("trial_done", Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            done,
            vec![("rig".to_owned(), n.to_string())],
            "std, trial {n}"
        );
    }
    smol::block_on(async {
        let group = rigwire_smol::Group::connect(&rigs, &config("script"))
            .await
            .unwrap();
        for n in 0..3u32 {
            assert!(group.call_all::<_, ()>("trial", &n, None).await.all_ok());
            let done = group
                .wait_event("trial_done", Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(
                done,
                vec![("rig".to_owned(), n.to_string())],
                "smol, trial {n}"
            );
        }
    });
    rig.shutdown(Duration::ZERO);
}

/// A rig that goes away while a script waits for its event never reports
/// it on that connection: the wait ends at once, in both runtimes' groups,
/// naming the rig and why (it waited out its whole timeout and said only
/// that no event came).
#[test]
fn a_wait_for_an_event_ends_when_a_rig_that_has_not_reported_goes_away() {
    let limit = Duration::from_secs(60);
    let lost = |err: GroupError| match err {
        GroupError::Lost { missing, lost, .. } => {
            assert_eq!(missing, ["stays", "gone"], "neither reported");
            let names: Vec<_> = lost.iter().map(|(rig, _)| rig.as_str()).collect();
            assert_eq!(names, ["gone"], "only one went away");
        }
        other => panic!("not lost: {other}"),
    };
    let stays = trial_rig();
    let stays_url = stays.local_url();
    for runtime in ["std", "smol"] {
        let goes = trial_rig();
        let goes_url = goes.local_url();
        let rigs = [("stays", stays_url.as_str()), ("gone", goes_url.as_str())];
        let began = std::time::Instant::now();
        if runtime == "std" {
            let group = rigwire_std::Group::connect(&rigs, &config("script")).unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                goes.abort();
            });
            lost(group.wait_event("armed", limit).unwrap_err());
        } else {
            smol::block_on(async {
                let group = rigwire_smol::Group::connect(&rigs, &config("script"))
                    .await
                    .unwrap();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    goes.abort();
                });
                lost(group.wait_event("armed", limit).await.unwrap_err());
            });
        }
        assert!(began.elapsed() < limit, "{runtime}: waited out its timeout");
    }
    stays.shutdown(Duration::ZERO);
}
