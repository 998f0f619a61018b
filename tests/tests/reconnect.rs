//! Reconnecting holds a call's deadline: a client told to reconnect tries
//! for about 26 s by default, and a call with half a second must not wait
//! for that, in either runtime. Nor may a group's other rigs wait for one
//! being reconnected.

use std::time::{Duration, Instant};

use rigwire_core::{Config, Error, Reconnect};

const HALF: Duration = Duration::from_millis(500);
/// Far below the default round's 26 s.
const BOUND: Duration = Duration::from_secs(5);

/// A rig's URL where nothing listens any more, and a client of each
/// runtime that was connected there and reconnects with `config`.
fn clients_of_a_rig_gone(config: Config) -> (rigwire_std::Client, rigwire_smol::Client) {
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    let server = server.start().unwrap();
    let url = server.local_url();
    let std_client = rigwire_std::Client::connect(&url, config.clone()).unwrap();
    let smol_client = smol::block_on(rigwire_smol::Client::connect(&url, config)).unwrap();
    assert_eq!(std_client.call::<_, i64>("add", &(1, 1)).unwrap(), 2);
    server.shutdown(Duration::ZERO);
    (std_client, smol_client)
}

/// The call gave up by its deadline with the last attempt's error (nothing
/// listens there), or met the loss itself (it is never retried: it may have run).
fn assert_gave_up_in_time(outcome: Result<i64, Error>, took: Duration) {
    assert!(
        matches!(outcome, Err(Error::Connect { .. } | Error::Disconnected(_))),
        "{outcome:?}"
    );
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn reconnecting_to_a_rig_that_stays_away_ends_each_call_by_its_deadline() {
    let config = Config::named("script").reconnect(Reconnect::default());
    let (std_client, smol_client) = clients_of_a_rig_gone(config);
    for _ in 0..2 {
        let t = Instant::now();
        let outcome = std_client.call_timeout::<_, i64>("add", &(2, 2), HALF);
        assert_gave_up_in_time(outcome, t.elapsed());
        let t = Instant::now();
        let outcome = smol::block_on(smol_client.call_timeout::<_, i64>("add", &(2, 2), HALF));
        assert_gave_up_in_time(outcome, t.elapsed());
    }
}

#[test]
fn a_default_deadline_bounds_reconnecting_too() {
    let config = Config::named("script")
        .reconnect(Reconnect::default())
        .default_timeout(HALF);
    let (std_client, smol_client) = clients_of_a_rig_gone(config);
    for _ in 0..2 {
        let t = Instant::now();
        assert_gave_up_in_time(std_client.call("add", &(2, 2)), t.elapsed());
        let t = Instant::now();
        let outcome = smol::block_on(smol_client.call("add", &(2, 2)));
        assert_gave_up_in_time(outcome, t.elapsed());
    }
}

#[test]
fn a_client_closed_by_its_application_stays_closed() {
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    let server = server.start().unwrap();
    let config = Config::named("script").reconnect(Reconnect::default());
    let closed_here = |outcome: Result<i64, Error>| {
        assert!(
            matches!(
                outcome,
                Err(Error::Disconnected(
                    rigwire_core::ConnectionError::LocallyClosed(_)
                ))
            ),
            "{outcome:?}"
        )
    };
    let client = rigwire_std::Client::connect(&server.local_url(), config.clone()).unwrap();
    assert_eq!(client.call::<_, i64>("add", &(1, 1)).unwrap(), 2);
    client.close();
    closed_here(client.call("add", &(1, 1)));
    smol::block_on(async {
        let client = rigwire_smol::Client::connect(&server.local_url(), config)
            .await
            .unwrap();
        assert_eq!(client.call::<_, i64>("add", &(1, 1)).await.unwrap(), 2);
        client.close().await;
        closed_here(client.call("add", &(1, 1)).await);
    });
    // Neither came back: the server has no peer left.
    let until = Instant::now() + BOUND;
    while !server.peers().is_empty() {
        assert!(Instant::now() < until, "a closed client reconnected");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.shutdown(Duration::ZERO);
}

#[test]
fn a_call_waits_for_another_callers_reconnect_only_within_its_own_deadline() {
    // The first caller has no deadline: its round takes 8 s. A second
    // caller with half a second waits for that round only so long.
    let slow = Reconnect {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(1),
        attempts: 8,
    };
    let (std_client, smol_client) = clients_of_a_rig_gone(Config::named("script").reconnect(slow));
    let std_client = std::sync::Arc::new(std_client);
    let smol_client = std::sync::Arc::new(smol_client);
    let first = std::sync::Arc::clone(&std_client);
    std::thread::spawn(move || first.call::<_, i64>("add", &(1, 1)));
    let first = std::sync::Arc::clone(&smol_client);
    smol::spawn(async move { first.call::<_, i64>("add", &(1, 1)).await }).detach();
    std::thread::sleep(Duration::from_millis(200)); // both rounds under way
    let waited = |outcome: Result<i64, Error>, took: Duration| {
        assert!(
            matches!(
                outcome,
                Err(Error::DeadlineExceeded | Error::Connect { .. })
            ),
            "{outcome:?}"
        );
        assert!(took < BOUND, "took {took:?}");
    };
    let t = Instant::now();
    waited(std_client.call_timeout("add", &(2, 2), HALF), t.elapsed());
    let t = Instant::now();
    let outcome = smol::block_on(smol_client.call_timeout("add", &(2, 2), HALF));
    waited(outcome, t.elapsed());
}

/// Three rigs that note when each call reaches them; the first is then
/// gone for good. Returns their URLs, the notes, and the servers left.
type Arrivals = std::sync::Arc<std::sync::Mutex<Vec<(String, Instant)>>>;

fn three_rigs_the_first_gone() -> (
    Vec<(String, String)>,
    Arrivals,
    Vec<rigwire_std::RunningServer>,
) {
    let arrivals = Arrivals::default();
    let mut rigs = Vec::new();
    let mut running = Vec::new();
    for name in ["rig-1", "rig-2", "rig-3"] {
        let mut server =
            rigwire_std::Server::bind("tcp://127.0.0.1:0", Config::named(name)).unwrap();
        let noted = std::sync::Arc::clone(&arrivals);
        server
            .expose("mark", move |(): ()| {
                noted
                    .lock()
                    .unwrap()
                    .push((name.to_owned(), Instant::now()));
                Ok(())
            })
            .unwrap();
        let server = server.start().unwrap();
        rigs.push((name.to_owned(), server.local_url()));
        running.push(server);
    }
    (rigs, arrivals, running)
}

/// Rigs 2 and 3 got the call at once, not once rig 1's reconnecting gave up.
fn assert_the_others_were_called_at_once(arrivals: &Arrivals, step_began: Instant, took: Duration) {
    let arrivals = arrivals.lock().unwrap();
    let names: Vec<&str> = arrivals.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"rig-2") && names.contains(&"rig-3"),
        "{names:?}"
    );
    for (name, at) in arrivals.iter() {
        let after = at.duration_since(step_began);
        assert!(
            after < Duration::from_millis(1500) && after < took / 2,
            "{name} was called {after:?} into a step of {took:?}, behind rig-1's reconnecting"
        );
    }
}

/// A group step reaches every rig at once, even when one of them must be
/// reconnected first: the rig that is gone (reconnecting for up to the
/// call's 4 s) once held back the others' calls until it gave up.
#[test]
fn a_rig_being_reconnected_holds_back_no_other_rig_of_its_group() {
    let config = Config::named("script").reconnect(Reconnect::default());
    let timeout = Some(Duration::from_secs(4));
    for runtime in ["std", "smol"] {
        let (rigs, arrivals, mut servers) = three_rigs_the_first_gone();
        let pairs: Vec<(&str, &str)> = rigs.iter().map(|(n, u)| (n.as_str(), u.as_str())).collect();
        let std_group;
        let smol_group;
        if runtime == "std" {
            std_group = Some(rigwire_std::Group::connect(&pairs, &config).unwrap());
            smol_group = None;
        } else {
            std_group = None;
            smol_group =
                Some(smol::block_on(rigwire_smol::Group::connect(&pairs, &config)).unwrap());
        }
        servers.remove(0).shutdown(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(200)); // its loss is seen
        let began = Instant::now();
        let results = match (&std_group, &smol_group) {
            (Some(g), _) => g.call_all::<_, ()>("mark", &(), timeout),
            (_, Some(g)) => smol::block_on(g.call_all::<_, ()>("mark", &(), timeout)),
            _ => unreachable!(),
        };
        let took = began.elapsed();
        assert!(
            matches!(results.get("rig-1"), Some(Err(_))),
            "{runtime}: {results:?}"
        );
        assert_the_others_were_called_at_once(&arrivals, began, took);
        for server in servers {
            server.shutdown(Duration::ZERO);
        }
    }
}

/// A rig at `url` that adds.
fn adding_rig(url: &str) -> rigwire_std::RunningServer {
    let mut server = rigwire_std::Server::bind(url, Config::named("rig")).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    server.start().unwrap()
}

/// Restarts the rig behind `call`'s client between two of its calls, a
/// few times: each next call must reach the new rig.
fn restarted_between_calls(
    mut rig: rigwire_std::RunningServer,
    call: impl Fn(i64) -> Result<i64, Error>,
) {
    let url = rig.local_url();
    for n in 0..5 {
        assert_eq!(call(n).unwrap(), n + 1, "before restart {n}");
        // Its connections end at once, as a killed rig's do, and it is
        // back on the same port before the client's next call.
        rig.abort();
        rig = adding_rig(&url);
    }
    assert_eq!(call(10).unwrap(), 11);
    rig.shutdown(Duration::ZERO);
}

/// A rig that went away between two calls and came back is reached by the
/// next call of a reconnecting client, in either runtime. The old
/// connection's end of stream sat unread (nobody reads in the short linger
/// after a call), so that call was written to the dead connection and
/// failed `Disconnected`, as a call that might have run does, although the
/// rig had gone before it was sent.
#[test]
fn a_rig_restarted_between_two_calls_is_reached_by_the_next() {
    let config = Config::named("script").reconnect(Reconnect::default());
    let rig = adding_rig("tcp://127.0.0.1:0");
    let std_client = rigwire_std::Client::connect(&rig.local_url(), config.clone()).unwrap();
    restarted_between_calls(rig, |n| std_client.call_timeout("add", &(n, 1), BOUND));
    let rig = adding_rig("tcp://127.0.0.1:0");
    let smol_client =
        smol::block_on(rigwire_smol::Client::connect(&rig.local_url(), config)).unwrap();
    restarted_between_calls(rig, |n| {
        smol::block_on(smol_client.call_timeout("add", &(n, 1), BOUND))
    });
}
