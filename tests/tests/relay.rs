//! Two hops over real sockets: clients of both runtimes call services of
//! both runtimes through a smol relay (clients on tcp, unix or tls,
//! services dialing in over websocket or websocket over TLS, each side with
//! its own secret). The relay runs
//! on smol's global executor, started from these plain (blocking) tests.

mod common;

use common::{quick, test_cert, wait_flag, with_tls, Probe};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rigwire_core::Config;
use rigwire_core::{Error, ErrorKind, HandlerError};
use rigwire_smol::{RelayConfig, RelayServer, RunningRelay};

const CLIENT_SECRET: &str = "clients-secret-0123456";
const SERVICE_SECRET: &str = "services-secret-0123456";

/// Clients and services pin the test certificate (used on TLS URLs only).
fn client_config(name: &str) -> Config {
    with_tls(Config::named(name)).secret(CLIENT_SECRET).unwrap()
}

fn service_config(name: &str) -> Config {
    with_tls(Config::named(name))
        .secret(SERVICE_SECRET)
        .unwrap()
}

fn relay_config(allowed: Option<&[&str]>) -> RelayConfig {
    let mut config = RelayConfig::default()
        .clients_secret(CLIENT_SECRET)
        .unwrap()
        .services_secret(SERVICE_SECRET)
        .unwrap();
    config.allowed = allowed.map(|names| names.iter().map(|n| (*n).to_owned()).collect());
    config.tls_identity(&test_cert().cert, &test_cert().key)
}

fn unix_url() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("rigwire-relay-{}-{n}.sock", std::process::id()));
    format!("unix://{}", path.display())
}

fn relay_on(clients: &str, services: &str, config: RelayConfig) -> RunningRelay {
    let mut relay = RelayServer::bind(clients, services, config).unwrap();
    relay
        .expose("relay.hello", |who: String| async move {
            Ok(format!("the relay greets {who}"))
        })
        .unwrap();
    relay.start().unwrap()
}

fn relay() -> RunningRelay {
    relay_on(
        "tcp://127.0.0.1:0",
        "ws://127.0.0.1:0/services",
        relay_config(None),
    )
}

/// A smol service named `data`: echo, getFile, watch (records its cancel).
fn smol_data_service(relay_url: &str, probe: Arc<Probe>) -> rigwire_smol::RunningService {
    let mut s = rigwire_smol::RemoteService::new(&["data"], service_config("scanner"));
    s.handlers_mut()
        .expose_raw("echo", |_ctx, args: rigwire_core::Payload| async move {
            Ok(args)
        })
        .unwrap();
    s.expose("getFile", |name: String| async move {
        if name.ends_with(".dcm") {
            Ok(format!("contents of {name}"))
        } else {
            Err(HandlerError::with_kind(
                ErrorKind::BadArguments,
                format!("no such file: {name}"),
            ))
        }
    })
    .unwrap();
    s.expose("watch", move |(): ()| {
        let probe = Arc::clone(&probe);
        async move {
            let _guard = probe.start();
            smol::future::pending::<()>().await;
            Ok(())
        }
    })
    .unwrap();
    smol::block_on(s.connect(relay_url)).unwrap()
}

/// A blocking service named `subject`: add, watch (polls its cancel), freeze.
fn std_subject_service(relay_url: &str, probe: Arc<Probe>) -> rigwire_std::RunningService {
    let mut s = rigwire_std::RemoteService::new(&["subject"], service_config("display"));
    s.expose("add", |(a, b): (i64, i64)| Ok(a + b)).unwrap();
    s.expose_with("watch", move |ctx: &rigwire_std::CallContext, (): ()| {
        probe.started.store(true, Ordering::SeqCst);
        for _ in 0..4000 {
            if ctx.is_cancelled() {
                probe.cancelled.store(true, Ordering::SeqCst);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    })
    .unwrap();
    s.handlers_mut()
        .dispatch("watch", rigwire_std::Dispatch::Pool)
        .unwrap();
    s.connect(relay_url).unwrap()
}

#[test]
fn clients_of_both_runtimes_reach_services_of_both_runtimes_in_two_hops() {
    let ends = [
        ("tcp://127.0.0.1:0".to_owned(), "ws://127.0.0.1:0/services"),
        (unix_url(), "ws://127.0.0.1:0/services"),
        // Both of the relay's ports under TLS.
        ("tls://127.0.0.1:0".to_owned(), "wss://127.0.0.1:0/services"),
    ];
    for (clients, services) in ends {
        let relay = relay_on(&clients, services, relay_config(None));
        assert_eq!(
            relay.tls_fingerprint().is_some(),
            clients.starts_with("tls"),
            "the relay serves its certificate on TLS ports"
        );
        let _data = smol_data_service(&relay.services_url(), Arc::default());
        let _subject = std_subject_service(&relay.services_url(), Arc::default());
        let mut routes = relay.routes();
        routes.sort();
        assert_eq!(
            routes,
            vec![
                ("data".to_owned(), "scanner".to_owned()),
                ("subject".to_owned(), "display".to_owned())
            ]
        );

        let script =
            rigwire_std::Client::connect(&relay.clients_url(), client_config("script")).unwrap();
        let file: String = script.call("data.getFile", &"run1.dcm").unwrap();
        assert_eq!(file, "contents of run1.dcm");
        assert_eq!(script.call::<_, i64>("subject.add", &(2, 3)).unwrap(), 5);
        // The relay's own names and its list of services, beside the forwarded ones.
        let hello: String = script.call("relay.hello", &"script").unwrap();
        assert_eq!(hello, "the relay greets script");
        let names: Vec<String> = script.call("rigwire.services", &()).unwrap();
        assert_eq!(names, ["data", "subject"]);

        smol::block_on(async {
            let script =
                rigwire_smol::Client::connect(&relay.clients_url(), client_config("smol-script"))
                    .await
                    .unwrap();
            let file: String = script.call("data.getFile", &"run2.dcm").await.unwrap();
            assert_eq!(file, "contents of run2.dcm");
            let sum: i64 = script.call("subject.add", &(40, 2)).await.unwrap();
            assert_eq!(sum, 42);
        });
    }
}

#[test]
fn errors_and_unknown_names_come_back_clearly() {
    let relay = relay();
    let _data = smol_data_service(&relay.services_url(), Arc::default());
    let script =
        rigwire_std::Client::connect(&relay.clients_url(), client_config("script")).unwrap();
    match script.call::<_, String>("data.getFile", &"notes.txt") {
        Err(Error::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::BadArguments);
            assert_eq!(e.message, "no such file: notes.txt");
        }
        other => panic!("expected the service's error, got {other:?}"),
    }
    match script.call::<_, String>("camera.snap", &()) {
        Err(Error::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::Unavailable);
            // The services connected are named: a misspelt name shows itself.
            assert_eq!(
                e.message,
                "no service 'camera' is connected to this relay (connected now: data)"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    match script.call::<_, String>("data.nope", &()) {
        Err(Error::Remote(e)) => assert_eq!(e.kind, ErrorKind::NoSuchMethod),
        other => panic!("expected NoSuchMethod, got {other:?}"),
    }
}

#[test]
fn a_frozen_service_fails_pending_calls_within_the_keepalive_bound_naming_it() {
    let mut config = relay_config(None);
    config.services.keepalive = quick();
    let relay = relay_on("tcp://127.0.0.1:0", "ws://127.0.0.1:0/services", config);
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let mut s =
        rigwire_std::RemoteService::new(&["data"], service_config("scanner").keepalive(quick()));
    // Runs on the connection's reading thread and blocks it: the service
    // stops answering everything, keepalive included, as a hung machine would.
    s.expose("freeze", move |(): ()| {
        let _ = release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20));
        Ok(())
    })
    .unwrap();
    s.handlers_mut()
        .dispatch("freeze", rigwire_std::Dispatch::Inline)
        .unwrap();
    let service = s.connect(&relay.services_url()).unwrap();

    let script =
        rigwire_std::Client::connect(&relay.clients_url(), client_config("script")).unwrap();
    let started = Instant::now();
    let outcome = script.call_timeout::<_, ()>("data.freeze", &(), Duration::from_secs(3600));
    let waited = started.elapsed();
    match outcome {
        Err(Error::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
            assert!(e.message.contains("service 'data'"), "{}", e.message);
            assert!(e.message.contains("silent"), "{}", e.message);
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Far from the one-hour deadline: the keepalive bound is 0.4 s.
    assert!(waited < Duration::from_secs(30), "{waited:?}");
    assert!(relay.routes().is_empty());
    let _ = release_tx.send(());
    drop(service);
}

#[test]
fn a_service_reconnects_after_the_relay_restarts_and_is_used_again() {
    let first = relay();
    let clients = first.clients_url();
    let services = first.services_url();
    let data = smol_data_service(&services, Arc::default());
    let script = rigwire_std::Client::connect(
        &clients,
        client_config("script").reconnect(rigwire_core::Reconnect {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            attempts: 50,
        }),
    )
    .unwrap();
    assert_eq!(
        script.call::<_, String>("data.getFile", &"a.dcm").unwrap(),
        "contents of a.dcm"
    );
    smol::block_on(first.shutdown(Duration::from_secs(1)));

    // The same addresses again, as a restarted relay would bind them.
    let second = relay_on(&clients, &services, relay_config(None));
    assert!(
        smol::block_on(data.wait_registrations(2, Duration::from_secs(20))),
        "the service did not register again"
    );
    assert_eq!(second.routes().len(), 1);
    assert_eq!(
        script.call::<_, String>("data.getFile", &"b.dcm").unwrap(),
        "contents of b.dcm"
    );
}

#[test]
fn duplicate_and_disallowed_registrations_are_refused_with_their_reason() {
    let relay = relay_on(
        "tcp://127.0.0.1:0",
        "ws://127.0.0.1:0/services",
        relay_config(Some(&["data", "subject"])),
    );
    let _first = smol_data_service(&relay.services_url(), Arc::default());

    let second = rigwire_std::RemoteService::new(&["data"], service_config("scanner-2"));
    match second.connect(&relay.services_url()) {
        Err(Error::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::Refused);
            assert_eq!(
                e.message,
                "the service name 'data' is already registered by 'scanner'"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let camera = rigwire_std::RemoteService::new(&["camera"], service_config("camera"));
    match camera.connect(&relay.services_url()) {
        Err(Error::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::Refused);
            assert_eq!(
                e.message,
                "this relay does not accept a service named 'camera' (allowed: data, subject)"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A name the relay serves itself cannot be taken either.
    let relay_named = rigwire_std::RemoteService::new(&["relay"], service_config("impostor"));
    assert!(matches!(
        relay_named.connect(&relay.services_url()),
        Err(Error::Remote(e)) if e.kind == ErrorKind::Refused
    ));
    // Each side has its own secret.
    let wrong = rigwire_std::RemoteService::new(&["subject"], client_config("wrong-secret"));
    assert!(matches!(
        wrong.connect(&relay.services_url()),
        Err(Error::AuthFailed(_))
    ));
    assert!(matches!(
        rigwire_std::Client::connect(&relay.clients_url(), service_config("wrong-secret")),
        Err(Error::AuthFailed(_))
    ));
    assert_eq!(relay.routes().len(), 1);
}

#[test]
fn the_shorter_deadline_wins_whichever_hop_sets_it() {
    // The client's deadline is the shorter: it expires at the client, and the
    // cancel reaches the service's handler through the relay.
    let mut config = relay_config(None);
    config.max_forward_timeout = Some(Duration::from_secs(30));
    let relay = relay_on("tcp://127.0.0.1:0", "ws://127.0.0.1:0/services", config);
    let probe = Arc::new(Probe::default());
    let _data = smol_data_service(&relay.services_url(), Arc::clone(&probe));
    let script =
        rigwire_std::Client::connect(&relay.clients_url(), client_config("script")).unwrap();
    let outcome = script.call_timeout::<_, ()>("data.watch", &(), Duration::from_millis(300));
    assert!(
        matches!(outcome, Err(Error::DeadlineExceeded)),
        "{outcome:?}"
    );
    assert!(
        wait_flag(&probe.started),
        "the service never started the call"
    );
    assert!(
        wait_flag(&probe.cancelled),
        "the service never saw the cancel"
    );

    // The relay's cap is the shorter: the relay answers DeadlineExceeded,
    // naming the service, long before the client's own deadline.
    let mut config = relay_config(None);
    config.max_forward_timeout = Some(Duration::from_millis(300));
    let relay = relay_on("tcp://127.0.0.1:0", "ws://127.0.0.1:0/services", config);
    let probe = Arc::new(Probe::default());
    let _subject = std_subject_service(&relay.services_url(), Arc::clone(&probe));
    let script =
        rigwire_std::Client::connect(&relay.clients_url(), client_config("script")).unwrap();
    let started = Instant::now();
    let outcome = script.call_timeout::<_, ()>("subject.watch", &(), Duration::from_secs(3600));
    // A deadline is asked one way wherever it expired; this one says whose
    // limit it was (it read "deadline exceeded", an hour early).
    let err = outcome.unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(
        err.to_string()
            .contains("service 'subject' did not answer within the relay's limit of 300ms"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        wait_flag(&probe.cancelled),
        "the service never saw the deadline"
    );
}

#[test]
fn a_cancel_travels_both_hops() {
    let relay = relay();
    let data_probe = Arc::new(Probe::default());
    let subject_probe = Arc::new(Probe::default());
    let _data = smol_data_service(&relay.services_url(), Arc::clone(&data_probe));
    let _subject = std_subject_service(&relay.services_url(), Arc::clone(&subject_probe));
    smol::block_on(async {
        let script = rigwire_smol::Client::connect(&relay.clients_url(), client_config("script"))
            .await
            .unwrap();
        for (method, probe) in [
            ("data.watch", &data_probe),
            ("subject.watch", &subject_probe),
        ] {
            let call = script.call::<_, ()>(method, &());
            // Dropping the call's future cancels it once the handler runs.
            let started = smol::future::or(async { call.await.map(|_| false) }, async {
                while !probe.started.load(Ordering::SeqCst) {
                    smol::Timer::after(Duration::from_millis(2)).await;
                }
                Ok(true)
            })
            .await;
            assert!(matches!(started, Ok(true)), "{method}: {started:?}");
        }
    });
    assert!(
        wait_flag(&data_probe.cancelled),
        "the smol service kept running"
    );
    assert!(
        wait_flag(&subject_probe.cancelled),
        "the std service kept running"
    );
    assert_eq!(relay_in_flight_settles(&relay), 0);
}

/// Forwarded calls still open at the relay, once it has settled.
fn relay_in_flight_settles(relay: &RunningRelay) -> usize {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let n = relay.forwarded_in_flight();
        if n == 0 || Instant::now() >= until {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn many_clients_share_one_service() {
    let relay = relay();
    let _subject = std_subject_service(&relay.services_url(), Arc::default());
    let url = relay.clients_url();
    let threads: Vec<_> = (0..16i64)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let c = rigwire_std::Client::connect(&url, client_config(&format!("script-{i}")))
                    .unwrap();
                for j in 0..50i64 {
                    assert_eq!(c.call::<_, i64>("subject.add", &(i, j)).unwrap(), i + j);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(relay.forwarded_in_flight(), 0);
}

#[test]
fn large_payloads_are_forwarded_intact() {
    let relay = relay();
    let _data = smol_data_service(&relay.services_url(), Arc::default());
    let script =
        rigwire_std::Client::connect(&relay.clients_url(), client_config("script")).unwrap();
    for len in [1usize << 20, 8 << 20] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let payload = rigwire_core::Payload::new(rigwire_core::Codec::Postcard, bytes.clone());
        let back = script.call_raw("data.echo", payload, None).unwrap();
        assert!(back.bytes[..] == bytes[..], "{len} bytes came back altered");
    }
}

#[test]
fn the_relay_broadcasts_to_clients_and_to_one_service() {
    let relay = relay();
    let (tx, rx) = mpsc::channel::<String>();
    let service_tx = Mutex::new(tx.clone());
    let mut s = rigwire_std::RemoteService::new(&["subject"], service_config("display"));
    s.expose("showText", move |text: String| {
        service_tx
            .lock()
            .unwrap()
            .send(format!("service: {text}"))
            .unwrap();
        Ok(())
    })
    .unwrap();
    let _subject = s.connect(&relay.services_url()).unwrap();
    let mut handlers = rigwire_std::Handlers::new();
    let client_tx = Mutex::new(tx);
    handlers
        .expose("news", move |text: String| {
            client_tx
                .lock()
                .unwrap()
                .send(format!("client: {text}"))
                .unwrap();
            Ok(())
        })
        .unwrap();
    let _script =
        rigwire_std::Client::connect_with(&relay.clients_url(), client_config("script"), handlers)
            .unwrap();
    assert_eq!(relay.broadcast_clients("news", &"run started").unwrap(), 1);
    assert_eq!(
        relay
            .broadcast_service("subject", "showText", &"+")
            .unwrap(),
        1
    );
    assert_eq!(relay.broadcast_service("camera", "snap", &()).unwrap(), 0);
    let mut got: Vec<String> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    got.sort();
    assert_eq!(got, ["client: run started", "service: +"]);
}

/// A blocking service registered as `name`, running the standard lifecycle
/// (its start reported by an `armed` event, its stop recorded in `stops`)
/// and `add`.
fn std_rig_service(
    relay_url: &str,
    name: &str,
    stops: &Arc<Mutex<Vec<String>>>,
) -> rigwire_std::RunningService {
    let mut s = rigwire_std::RemoteService::new(&[name], service_config(name));
    s.expose("add", |(a, b): (i64, i64)| Ok(a + b)).unwrap();
    let (stops, me) = (Arc::clone(stops), name.to_owned());
    let armed = name.to_owned();
    rigwire_std::RigService::new()
        .on_start(move |ctx, _exp| {
            ctx.peer
                .notify("exp.event", &("armed", format!("{armed} ready")))?;
            Ok(())
        })
        .on_stop(move |_ctx, _immediately| {
            stops.lock().unwrap().push(me.clone());
            Ok(())
        })
        .expose(s.handlers_mut())
        .unwrap();
    s.connect(relay_url).unwrap()
}

#[test]
fn a_url_ending_in_a_service_name_reaches_that_service_through_the_relay() {
    use rigwire_core::ExpStatus;
    let relay = relay();
    let stops = Arc::new(Mutex::new(Vec::new()));
    let _scanner = std_rig_service(&relay.services_url(), "scanner", &stops);
    let _stim = std_rig_service(&relay.services_url(), "stim", &stops);
    let (scanner, stim) = (
        format!("{}#scanner", relay.clients_url()),
        format!("{}#stim", relay.clients_url()),
    );

    // A group of relayed services runs the lifecycle as a group of rigs does.
    let group = rigwire_std::Group::connect(
        &[("scanner", scanner.as_str()), ("stim", stim.as_str())],
        &client_config("script"),
    )
    .unwrap();
    let init = group.init(None);
    assert_eq!(init.get("scanner"), Some(&Ok(ExpStatus::Initialized)));
    assert_eq!(init.get("stim"), Some(&Ok(ExpStatus::Initialized)));
    let exp: rigwire_core::ExpRef = "2026-11-27_1_mouse".parse().unwrap();
    assert!(group.start(&exp, None).all_ok());
    // What each service reports reaches the group, through the relay.
    let mut armed = group.wait_event("armed", Duration::from_secs(10)).unwrap();
    armed.sort();
    let expected = [("scanner", "scanner ready"), ("stim", "stim ready")];
    let expected = expected.map(|(a, b)| (a.to_owned(), b.to_owned()));
    assert_eq!(armed, expected);
    let sums = group.call_all::<_, i64>("add", &(2, 3), None);
    assert_eq!(sums.get("stim"), Some(&Ok(5)));
    assert!(group.stop(false, None).all_ok());
    // Stop runs in reverse order, one service after the other.
    assert_eq!(*stops.lock().unwrap(), ["stim", "scanner"]);

    // One client per service, in both runtimes; its URL says which.
    let client = rigwire_std::Client::connect(&stim, client_config("script")).unwrap();
    assert_eq!(client.url(), stim);
    assert_eq!(client.call::<_, i64>("add", &(40, 2)).unwrap(), 42);
    let status: ExpStatus = client.call("exp.status", &()).unwrap();
    assert_eq!(status, ExpStatus::Stopped);
    // Its ping times the service (a ping alone would stop at the relay).
    assert!(client.ping().is_ok());
    smol::block_on(async {
        let client = rigwire_smol::Client::connect(&scanner, client_config("smol-script"))
            .await
            .unwrap();
        assert_eq!(client.call::<_, i64>("add", &(1, 1)).await.unwrap(), 2);
        let sums = client
            .call_batch_raw("add", [rigwire_core::Payload::json(&(3, 4)).unwrap()], None)
            .await;
        assert_eq!(sums[0].as_ref().unwrap().decode::<i64>().unwrap(), 7);
        // A smol group hears relayed services too.
        let rigs = [("scanner", scanner.as_str()), ("stim", stim.as_str())];
        let group = rigwire_smol::Group::connect(&rigs, &client_config("smol-script"))
            .await
            .unwrap();
        assert!(group.cleanup(None).await.all_ok());
        let init = group.init(None).await;
        assert!(init.all_ok(), "{init:?}");
        let start = group.start(&exp, None).await;
        assert!(start.all_ok(), "{start:?}");
        let armed = group.wait_event("armed", Duration::from_secs(10)).await;
        assert_eq!(armed.unwrap().len(), 2);
    });

    // A service that is not there is said to be missing, as `NAME.method` is.
    let ghost = format!("{}#ghost", relay.clients_url());
    let ghost = rigwire_std::Client::connect(&ghost, client_config("script")).unwrap();
    let ghost_ping = ghost.ping().map(drop);
    for outcome in [ghost.call::<_, i64>("add", &(1, 2)).map(drop), ghost_ping] {
        match outcome {
            Err(Error::Remote(e)) => {
                assert_eq!(e.kind, ErrorKind::Unavailable);
                assert_eq!(
                    e.message,
                    "no service 'ghost' is connected to this relay (connected now: scanner, stim)"
                );
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

#[test]
fn a_service_name_in_a_url_is_refused_where_it_means_nothing_and_when_malformed() {
    let relay = relay();
    let at = |name: &str| format!("{}#{name}", relay.clients_url());
    // A relay's own rule (`is_service_name`): "two words" or "a/b" are
    // names a relay registers, so a URL reaches them.
    for bad in ["", "a.b", "rigwire", "tab\tname"] {
        match rigwire_std::Client::connect(&at(bad), client_config("script")) {
            Err(Error::InvalidUrl { reason, .. }) => {
                assert!(reason.contains("not a service name"), "{reason}")
            }
            other => panic!("expected InvalidUrl for '#{bad}', got {other:?}"),
        }
    }
    // Nothing listens on a service, nor does a remote service dial one.
    let refusals = [
        rigwire_std::Server::bind("tcp://127.0.0.1:0#rig", client_config("rig")).map(drop),
        rigwire_std::RemoteService::new(&["data"], service_config("data"))
            .connect(&format!("{}#data", relay.services_url()))
            .map(drop),
        rigwire_std::LocalClient::connect(&at("data"), client_config("script")).map(drop),
    ];
    for refused in refusals {
        match refused {
            Err(Error::InvalidUrl { reason, .. }) => {
                assert!(
                    reason.contains("names a service behind a relay"),
                    "{reason}"
                )
            }
            other => panic!("expected InvalidUrl, got {other:?}"),
        }
    }
}

#[test]
fn notifies_through_the_relay_or_to_it_do_not_use_up_the_clients_calls() {
    let relay = relay();
    let probe = Arc::new(Probe::default());
    let _data = smol_data_service(&relay.services_url(), probe);
    let client =
        rigwire_std::Client::connect(&relay.clients_url(), client_config("script")).unwrap();
    // In all, many more than the relay's incoming limit (256) of calls and
    // notifies at once; at most 100 at a time, so the service keeps up.
    for round in 0..6 {
        for i in 0..100 {
            client.notify("data.echo", &i).unwrap();
            // And to a name the relay serves itself.
            client.notify("relay.hello", &"me").unwrap();
        }
        let echoed: i64 = client.call("data.echo", &round).unwrap();
        assert_eq!(echoed, round);
        let hello: String = client.call("relay.hello", &"me").unwrap();
        assert_eq!(hello, "the relay greets me");
    }
}

/// A name no relay registers is refused before dialing, in both runtimes:
/// with the relay down (nothing listens at port 1), it was hidden behind
/// the failure to connect.
#[test]
fn a_service_name_no_relay_takes_is_refused_before_dialing() {
    let relay = "ws://127.0.0.1:1/services";
    for name in ["data.x", "", "rigwire"] {
        let std_err = rigwire_std::RemoteService::new(&["ok", name], Config::named("svc"))
            .connect(relay)
            .unwrap_err();
        let smol_err = smol::block_on(
            rigwire_smol::RemoteService::new(&["ok", name], Config::named("svc")).connect(relay),
        )
        .unwrap_err();
        for err in [std_err, smol_err] {
            assert!(
                matches!(&err, Error::Config(rigwire_core::ConfigError::NotAServiceName(n)) if n == name),
                "{name:?}: {err}"
            );
        }
    }
}

/// A service shut down with a grace lets the call it is running finish and
/// be answered through the relay, then leaves it; in both runtimes. (The
/// Python server's shutdown closed its relays at once, and a call in
/// progress, its own `quit` among them, was lost.)
#[test]
fn a_service_shut_down_gracefully_answers_the_call_it_runs_then_leaves() {
    let relay = relay();
    let grace = Duration::from_secs(20);
    for runtime in ["std", "smol"] {
        let (started, running) = mpsc::channel::<()>();
        let slow = move || {
            let _ = started.send(());
            std::thread::sleep(Duration::from_millis(300));
            Ok::<_, HandlerError>("done".to_string())
        };
        let stop: Box<dyn FnOnce() + Send> = if runtime == "std" {
            let mut s = rigwire_std::RemoteService::new(&["lamp"], service_config("lamp"));
            s.expose("slow", move |(): ()| slow()).unwrap();
            s.handlers_mut()
                .dispatch("slow", rigwire_std::Dispatch::Pool)
                .unwrap();
            let service = s.connect(&relay.services_url()).unwrap();
            Box::new(move || service.shutdown(grace))
        } else {
            let mut s = rigwire_smol::RemoteService::new(&["lamp"], service_config("lamp"));
            let slow = Arc::new(Mutex::new(Some(slow)));
            s.expose("slow", move |(): ()| {
                let slow = slow.lock().unwrap().take();
                // The blocking work off the executor, as a smol handler should.
                smol::unblock(move || slow.map_or(Ok(String::new()), |f| f()))
            })
            .unwrap();
            let service = smol::block_on(s.connect(&relay.services_url())).unwrap();
            Box::new(move || smol::block_on(service.shutdown(grace)))
        };
        let client =
            rigwire_std::Client::connect(&relay.clients_url(), client_config("script")).unwrap();
        let pending = client.start::<_, String>("lamp.slow", &()).unwrap();
        running.recv_timeout(Duration::from_secs(20)).unwrap();
        let stopping = std::thread::spawn(stop);
        assert_eq!(pending.wait().as_deref(), Ok("done"), "{runtime}");
        stopping.join().unwrap();
        // Gone from the relay: later calls are told so.
        let after = client.call_timeout::<_, String>("lamp.slow", &(), Duration::from_secs(20));
        assert!(
            matches!(&after, Err(Error::Remote(e)) if e.kind == ErrorKind::Unavailable),
            "{runtime}: {after:?}"
        );
    }
}
