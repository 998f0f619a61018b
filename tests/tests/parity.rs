//! The two runtimes are twins: the same script, written once, runs against
//! both. This file compiles only while their public APIs match in name and
//! shape (the blocking one without `.await`, the async one with it); the
//! parity table in `docs/ARCHITECTURE.md` lists the same items.

use std::time::Duration;

use rigwire_core::{ConfigError, Error, InitData, Payload};

/// One script over a runtime's API; `$($aw)*` is `.await` for the async
/// runtime and nothing for the blocking one.
macro_rules! twin_script {
    ($rt:ident, $url:expr, [$($aw:tt)*]) => {{
        use $rt::{Client, Config, Group};
        let url: String = $url;
        let client = Client::connect(&url, Config::named("script")) $($aw)* .unwrap();
        assert_eq!(client.url(), url);
        assert_eq!(client.close_reason(), None);
        assert_eq!(client.call_codec(), rigwire_core::Codec::Postcard);
        let sum: i64 = client.call("add", &(1i64, 2i64)) $($aw)* .unwrap();
        assert_eq!(sum, 3);
        let sum: i64 = client
            .call_timeout("add", &(2i64, 2i64), Duration::from_secs(5)) $($aw)*
            .unwrap();
        assert_eq!(sum, 4);
        let raw = client
            .call_raw("add", Payload::json(&(3, 3)).unwrap(), Some(Duration::from_secs(5))) $($aw)*
            .unwrap();
        assert_eq!(raw.decode::<i64>().unwrap(), 6);
        client.ping() $($aw)* .unwrap();
        client.confirmed_send(&b"trial 1"[..]) $($aw)* .unwrap();
        // Every rig tells its wall clock (for offsets, NTP-style), unlisted.
        let clock: f64 = client.call("rigwire.clock", &()) $($aw)* .unwrap();
        let here = rigwire_core::wall_clock(std::time::SystemTime::now());
        assert!((clock - here).abs() < 3600.0, "{clock} against {here}");
        let listed: serde_json::Value = client
            .call_raw("rigwire.methods", Payload::json(&()).unwrap(), None) $($aw)*
            .unwrap()
            .decode()
            .unwrap();
        assert!(!listed.to_string().contains("rigwire.clock"), "{listed}");
        client.notify("add", &(1i64, 1i64)) $($aw)* .unwrap();
        client.notify_raw("add", Payload::json(&(2i64, 2i64)).unwrap()) $($aw)* .unwrap();
        // Calls kept in flight: started now, their answers taken later.
        let pending = client.start::<_, i64>("add", &(4i64, 4i64)) $($aw)* .unwrap();
        assert!(pending.id() > 0);
        assert_eq!(pending.wait() $($aw)* .unwrap(), 8);
        let args = (0..3i64).map(|i| Payload::postcard(&(i, i)).unwrap());
        let batch = client.start_batch("add", args, None) $($aw)* .unwrap();
        for (i, mut call) in (0i64..).zip(batch) {
            let _ = call.is_ready();
            let sum = call.wait_timeout(Duration::from_secs(5)) $($aw)* .unwrap();
            assert_eq!(sum.decode::<i64>().unwrap(), 2 * i);
        }
        let args = Payload::postcard(&(0i64, 0i64)).unwrap();
        client.start_raw("add", args, None) $($aw)* .unwrap().cancel();
        let args = (0..3i64).map(|i| Payload::postcard(&(i, 1i64)).unwrap());
        let sums = client.call_batch_raw("add", args, None) $($aw)*;
        let sums: Vec<i64> = sums.into_iter().map(|s| s.unwrap().decode().unwrap()).collect();
        assert_eq!(sums, [1, 2, 3]);
        let peer = client.peer() $($aw)* .unwrap();
        assert_eq!(peer.name(), "rig");
        assert_eq!(peer.call_codec(), rigwire_core::Codec::Postcard);
        assert!(peer.is_connected());
        assert!(peer.close_reason().is_none());
        let group = Group::from_clients(vec![("rig".to_owned(), client)]).unwrap();
        assert_eq!(group.names(), ["rig"]);
        let all: rigwire_core::GroupResults<i64> = group.call_all("add", &(1i64, 1i64), None) $($aw)*;
        let in_order: rigwire_core::GroupResults<i64> =
            group.call_in_order("add", &(2i64, 2i64), None) $($aw)*;
        let reverse: rigwire_core::GroupResults<i64> =
            group.call_in_reverse("add", &(3i64, 3i64), None) $($aw)*;
        assert!(all.all_ok() && in_order.all_ok() && reverse.all_ok());
        // Raw: the arguments go as they are, the answers come as they came.
        let json = Payload::new(rigwire_core::Codec::Json, &b"[4, 4]"[..]);
        let raw = group.call_raw(rigwire_core::GroupOrder::Reverse, "add", json, None) $($aw)*;
        let answer = raw.get("rig").unwrap().as_ref().unwrap();
        assert_eq!((answer.codec, &answer.bytes[..]), (rigwire_core::Codec::Json, &b"8"[..]));
        assert!(group.init_with(&InitData::default(), None) $($aw)* .all_ok());
        assert!(group.cleanup(None) $($aw)* .all_ok());
        let status = group.status(None) $($aw)*;
        assert!(status.all_ok(), "{status:?}");
        group.close() $($aw)*;
        let why = peer.closed() $($aw)*;
        assert!(matches!(why, rigwire_core::Error::Disconnected(_)), "{why}");
    }};
}

/// A rig of either runtime: `add` and the lifecycle service; the handler
/// bodies are the runtime's own (blocking or async), the rest is the same.
macro_rules! twin_rig {
    ($rt:ident, $add:expr) => {{
        use $rt::{Config, RigService, Server};
        let mut server = Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
        assert_eq!(
            server.tls_fingerprint(),
            None,
            "plain tcp serves no certificate"
        );
        server.expose("add", $add).unwrap();
        server.alias("plus", "add").unwrap();
        RigService::new().expose(server.handlers_mut()).unwrap();
        server.on_connect(|peer| assert!(!peer.name().is_empty()));
        server.start().unwrap()
    }};
}

#[test]
fn the_blocking_runtime_runs_the_twin_script() {
    let rig = twin_rig!(rigwire_std, |(a, b): (i64, i64)| Ok(a + b));
    twin_script!(rigwire_std, rig.local_url(), []);
    // The script has gone (the rig may not have seen its goodbye yet).
    assert!(rig.broadcast("add", &(1i64, 1i64)).unwrap() <= 1);
    let _ = rig.broadcast_raw("add", Payload::json(&(1, 1)).unwrap());
    assert!(rig.peers().len() <= 1);
    rig.shutdown(Duration::from_millis(100));
}

#[test]
fn the_async_runtime_runs_the_twin_script() {
    let rig = twin_rig!(rigwire_smol, |(a, b): (i64, i64)| async move { Ok(a + b) });
    smol::block_on(async {
        twin_script!(rigwire_smol, rig.local_url(), [.await]);
        assert!(rig.broadcast("add", &(1i64, 1i64)).await.unwrap() <= 1);
        let _ = rig
            .broadcast_raw("add", Payload::json(&(1, 1)).unwrap())
            .await;
        assert!(rig.peers().len() <= 1);
        rig.shutdown(Duration::from_millis(100)).await;
    });
}

#[test]
fn both_runtimes_read_a_secret_file_alike() {
    let path = std::env::temp_dir().join(format!("rigwire-parity-{}.secret", std::process::id()));
    std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
    let a = rigwire_std::secret_from_file(&path).unwrap();
    let b = rigwire_smol::secret_from_file(&path).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    // An empty secret is refused, and so is a file that cannot be read,
    // naming it.
    std::fs::write(&path, "\n").unwrap();
    assert!(matches!(
        rigwire_std::secret_from_file(&path),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        rigwire_smol::secret_from_file(&path),
        Err(Error::Config(_))
    ));
    std::fs::remove_file(&path).unwrap();
    for err in [
        rigwire_std::secret_from_file(&path).unwrap_err(),
        rigwire_smol::secret_from_file(&path).unwrap_err(),
    ] {
        let Error::Config(ConfigError::SecretUnreadable(why)) = &err else {
            panic!("{err:?}");
        };
        assert!(why.contains(&path.display().to_string()), "{why}");
    }
}

/// Both runtimes bind a URL's socket alike: a port in use is refused naming
/// the URL; a Unix socket file nobody answers on (left by a rig that
/// crashed) is replaced, one a live rig serves is not.
#[test]
fn both_runtimes_bind_alike() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", taken.local_addr().unwrap());
    let refusals = [
        rigwire_std::Server::bind(&url, rigwire_std::Config::named("rig")).err(),
        rigwire_smol::Server::bind(&url, rigwire_smol::Config::named("rig")).err(),
    ];
    for refusal in refusals {
        let Some(Error::Bind { url: named, reason }) = &refusal else {
            panic!("{refusal:?}");
        };
        assert_eq!(named, &url);
        assert!(reason.contains("another program listens there"), "{reason}");
    }

    let path = std::env::temp_dir().join(format!("rigwire-parity-{}.sock", std::process::id()));
    let url = format!("unix://{}", path.display());
    let crashed = || {
        // A crashed rig's socket file: still there, nobody answers.
        let _ = std::fs::remove_file(&path);
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
    };
    crashed();
    let blocking = rigwire_std::Server::bind(&url, rigwire_std::Config::named("rig"))
        .unwrap()
        .start()
        .unwrap();
    let live = rigwire_smol::Server::bind(&url, rigwire_smol::Config::named("rig")).err();
    let Some(Error::Bind { reason, .. }) = &live else {
        panic!("{live:?}");
    };
    assert!(
        reason.contains("another server listens on that socket file"),
        "{reason}"
    );
    let client = rigwire_std::Client::connect(&url, rigwire_std::Config::named("script")).unwrap();
    client.ping().unwrap();
    client.close();
    blocking.shutdown(Duration::from_millis(100));
    assert!(
        !path.exists(),
        "a server removes its socket file when it stops"
    );

    crashed();
    let asynchronous = rigwire_smol::Server::bind(&url, rigwire_smol::Config::named("rig"))
        .unwrap()
        .start()
        .unwrap();
    let live = rigwire_std::Server::bind(&url, rigwire_std::Config::named("rig")).err();
    assert!(matches!(live, Some(Error::Bind { .. })), "{live:?}");
    smol::block_on(async {
        let client = rigwire_smol::Client::connect(&url, rigwire_smol::Config::named("script"))
            .await
            .unwrap();
        client.ping().await.unwrap();
        client.close().await;
        asynchronous.shutdown(Duration::from_millis(100)).await;
    });
    assert!(
        !path.exists(),
        "a server removes its socket file when it stops"
    );
}

/// Why connecting to `url` as `name` failed, in the blocking runtime and
/// then in the async one.
fn connect_failures(url: &str, name: &str) -> [Option<Error>; 2] {
    [
        rigwire_std::Client::connect(url, rigwire_std::Config::named(name)).err(),
        smol::block_on(rigwire_smol::Client::connect(
            url,
            rigwire_smol::Config::named(name),
        ))
        .err(),
    ]
}

/// Both runtimes say where to look when nothing listens at a URL: a port
/// nobody listens on, a Unix socket file that is not there.
#[test]
fn both_runtimes_say_what_to_look_at_when_nothing_listens() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = format!("tcp://{}", closed.local_addr().unwrap());
    drop(closed);
    let path =
        std::env::temp_dir().join(format!("rigwire-parity-none-{}.sock", std::process::id()));
    let unix = format!("unix://{}", path.display());
    for (url, hint) in [
        (
            &tcp,
            "nothing listens on that port: is the rig or relay running",
        ),
        (&unix, "no server listens on that socket file"),
    ] {
        for failure in connect_failures(url, "script") {
            let Some(Error::Connect { reason, .. }) = &failure else {
                panic!("{failure:?}");
            };
            assert!(reason.contains(hint), "{url}: {reason}");
        }
    }
}

/// Settings the connection would refuse are said before anything is
/// dialed: a rig that is down (here, nothing listens) no longer hides them.
#[test]
fn both_runtimes_refuse_bad_settings_before_they_dial() {
    for refusal in connect_failures("tcp://127.0.0.1:1", "") {
        assert!(
            matches!(refusal, Some(Error::Config(ConfigError::EmptyName))),
            "{refusal:?}"
        );
    }
}

/// A group given two rigs of one name is refused in either runtime,
/// naming it, before anything is dialed (these URLs would fail otherwise).
#[test]
fn both_runtimes_refuse_a_group_with_two_rigs_of_one_name() {
    let rigs = [
        ("rig-1", "tcp://127.0.0.1:1"),
        ("rig-2", "tcp://127.0.0.1:1"),
        ("rig-1", "tcp://127.0.0.1:1"),
    ];
    let refusals = [
        rigwire_std::Group::connect(&rigs, &rigwire_std::Config::named("script")).err(),
        smol::block_on(rigwire_smol::Group::connect(
            &rigs,
            &rigwire_smol::Config::named("script"),
        ))
        .err(),
    ];
    for refusal in refusals {
        assert_eq!(
            refusal,
            Some(rigwire_core::GroupError::SameName("rig-1".into()))
        );
    }
}

/// A catch-all handler in either runtime: it answers names nobody exposed,
/// calls and notifies alike, is not listed, and is set once.
#[test]
fn both_runtimes_send_unexposed_names_to_a_catch_all() {
    use std::sync::{Arc, Mutex};
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut blocking =
        rigwire_std::Server::bind("tcp://127.0.0.1:0", rigwire_std::Config::named("rig")).unwrap();
    let seen = Arc::clone(&heard);
    blocking
        .handlers_mut()
        .expose_fallback_raw(move |ctx, args| {
            seen.lock()
                .unwrap()
                .push(format!("std {} {}", ctx.method, ctx.id == 0));
            Ok(args)
        })
        .unwrap();
    assert!(
        blocking
            .handlers_mut()
            .expose_fallback_raw(|_, a| Ok(a))
            .is_err(),
        "set once"
    );
    let blocking = blocking.start().unwrap();
    let mut asynchronous =
        rigwire_smol::Server::bind("tcp://127.0.0.1:0", rigwire_smol::Config::named("rig"))
            .unwrap();
    let seen = Arc::clone(&heard);
    asynchronous
        .handlers_mut()
        .expose_fallback_raw(move |ctx: rigwire_smol::CallContext, args: Payload| {
            seen.lock()
                .unwrap()
                .push(format!("smol {} {}", ctx.method, ctx.id == 0));
            async move { Ok(args) }
        })
        .unwrap();
    let asynchronous = asynchronous.start().unwrap();
    for url in [blocking.local_url(), asynchronous.local_url()] {
        let client =
            rigwire_std::Client::connect(&url, rigwire_std::Config::named("script")).unwrap();
        let echoed: String = client.call("anything.at.all", &"hi").unwrap();
        assert_eq!(echoed, "hi");
        client.notify("trialDone", &1u8).unwrap();
        let listed: serde_json::Value = client
            .call_raw("rigwire.methods", Payload::json(&()).unwrap(), None)
            .unwrap()
            .decode()
            .unwrap();
        assert_eq!(listed, serde_json::json!([]), "the catch-all is not listed");
        client.close();
    }
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while heard.lock().unwrap().len() < 4 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut heard = heard.lock().unwrap().clone();
    heard.sort();
    assert_eq!(
        heard,
        [
            "smol anything.at.all false",
            "smol trialDone true",
            "std anything.at.all false",
            "std trialDone true"
        ]
    );
}
