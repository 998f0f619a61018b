//! The two runtimes against each other: blocking client against smol server
//! and smol client against blocking server, over tcp, unix, ws, tls and
//! wss, with and without a secret.

mod common;

use common::{quick, wait_flag, with_tls, Probe};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_core::{ConnectionError, Error, ErrorKind, HandlerError};

fn urls() -> Vec<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("rigwire-cross-{}-{n}.sock", std::process::id()));
    vec![
        "tcp://127.0.0.1:0".into(),
        format!("unix://{}", path.display()),
        "ws://127.0.0.1:0/rig".into(),
        "tls://127.0.0.1:0".into(),
        "wss://127.0.0.1:0/rig".into(),
    ]
}

/// Every end serves and pins the test certificate: used by TLS URLs only.
fn config(name: &str, secret: bool) -> rigwire_core::Config {
    let c = with_tls(rigwire_core::Config::named(name));
    if secret {
        c.secret("cross-secret-0123456").unwrap()
    } else {
        c
    }
}

/// A smol rig: add, fail, callback, watch (sets `cancelled` when its future
/// is dropped), freeze (blocks its executor thread).
fn smol_rig(url: &str, secret: bool, probe: Arc<Probe>) -> rigwire_smol::RunningServer {
    let mut s = rigwire_smol::Server::bind(url, config("smol-rig", secret)).unwrap();
    s.expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })
        .unwrap();
    s.expose("fail", |(): ()| async move {
        Err::<(), _>(HandlerError::new("smol says no"))
    })
    .unwrap();
    s.expose_with(
        "callback",
        |ctx: rigwire_smol::CallContext, t: String| async move {
            Ok(format!(
                "back: {}",
                ctx.peer.call::<_, String>("client.echo", &t).await?
            ))
        },
    )
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
    s.expose("freeze", |ms: u64| async move {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(ms)
    })
    .unwrap();
    s.start().unwrap()
}

/// The same rig on the blocking runtime.
fn std_rig(url: &str, secret: bool, probe: Arc<Probe>) -> rigwire_std::RunningServer {
    let mut s = rigwire_std::Server::bind(url, config("std-rig", secret)).unwrap();
    s.expose("add", |(a, b): (i64, i64)| Ok(a + b)).unwrap();
    s.expose("fail", |(): ()| -> Result<(), HandlerError> {
        Err(HandlerError::new("std says no"))
    })
    .unwrap();
    s.expose_with("callback", |ctx: &rigwire_std::CallContext, t: String| {
        Ok(format!(
            "back: {}",
            ctx.peer.call::<_, String>("client.echo", &t)?
        ))
    })
    .unwrap();
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
    .unwrap()
    .dispatch("watch", rigwire_std::Dispatch::Pool)
    .unwrap();
    s.expose("freeze", |ms: u64| {
        std::thread::sleep(Duration::from_millis(ms));
        Ok(ms)
    })
    .unwrap()
    .dispatch("freeze", rigwire_std::Dispatch::Inline)
    .unwrap();
    s.start().unwrap()
}

#[test]
fn blocking_client_against_smol_server() {
    for url in urls() {
        for secret in [false, true] {
            let probe = Arc::new(Probe::default());
            let server = smol_rig(&url, secret, Arc::clone(&probe));
            let mut h = rigwire_std::Handlers::new();
            h.expose("client.echo", |s: String| Ok(s.to_uppercase()))
                .unwrap();
            let client = rigwire_std::Client::connect_with(
                &server.local_url(),
                config("std-script", secret),
                h,
            )
            .unwrap();
            let ctx = format!("{url} secret={secret}");
            assert_eq!(
                client.call::<_, i64>("add", &(20, 22)).unwrap(),
                42,
                "{ctx}"
            );
            assert_eq!(
                client.call::<_, String>("callback", &"hi").unwrap(),
                "back: HI",
                "{ctx}"
            );
            let Err(Error::Remote(e)) = client.call::<_, ()>("fail", &()) else {
                panic!("{ctx}")
            };
            assert_eq!(
                (e.kind, e.message.as_str()),
                (ErrorKind::Handler, "smol says no")
            );
            // A deadline cancels the running handler on the other runtime.
            let args = rigwire_core::Payload::postcard(&()).unwrap();
            let late = client
                .start_raw("watch", args.clone(), Some(Duration::from_millis(300)))
                .unwrap();
            assert!(
                wait_flag(&probe.started),
                "{ctx}: the handler never started"
            );
            assert_eq!(late.wait(), Err(Error::DeadlineExceeded), "{ctx}");
            assert!(
                wait_flag(&probe.cancelled),
                "{ctx}: the deadline did not cancel the smol handler"
            );
            // So does an explicit cancel.
            probe.started.store(false, Ordering::SeqCst);
            probe.cancelled.store(false, Ordering::SeqCst);
            let pending = client.start_raw("watch", args, None).unwrap();
            assert!(wait_flag(&probe.started), "{ctx}");
            pending.cancel();
            assert!(
                wait_flag(&probe.cancelled),
                "{ctx}: cancel did not reach the smol handler"
            );
            client.close();
            let frozen = rigwire_std::Client::connect(
                &server.local_url(),
                config("std-script", secret).keepalive(quick()),
            )
            .unwrap();
            let err = frozen
                .call_timeout::<_, u64>("freeze", &1200u64, Duration::from_secs(3600))
                .unwrap_err();
            assert!(
                matches!(err, Error::Disconnected(ConnectionError::PeerSilent(_))),
                "{ctx}: {err}"
            );
            smol::block_on(server.shutdown(Duration::from_secs(2)));
        }
    }
}

async fn until_flag(flag: &AtomicBool) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        smol::Timer::after(Duration::from_millis(5)).await;
    }
    false
}

#[test]
fn smol_client_against_blocking_server() {
    for url in urls() {
        for secret in [false, true] {
            let probe = Arc::new(Probe::default());
            let server = std_rig(&url, secret, Arc::clone(&probe));
            let ctx = format!("{url} secret={secret}");
            smol::block_on(async {
                let mut h = rigwire_smol::Handlers::new();
                h.expose(
                    "client.echo",
                    |s: String| async move { Ok(s.to_uppercase()) },
                )
                .unwrap();
                let client = rigwire_smol::Client::connect_with(
                    &server.local_url(),
                    config("smol-script", secret),
                    h,
                )
                .await
                .unwrap();
                assert_eq!(
                    client.call::<_, i64>("add", &(20, 22)).await.unwrap(),
                    42,
                    "{ctx}"
                );
                assert_eq!(
                    client.call::<_, String>("callback", &"hi").await.unwrap(),
                    "back: HI",
                    "{ctx}"
                );
                let Err(Error::Remote(e)) = client.call::<_, ()>("fail", &()).await else {
                    panic!("{ctx}")
                };
                assert_eq!(
                    (e.kind, e.message.as_str()),
                    (ErrorKind::Handler, "std says no")
                );
                // A deadline cancels the running handler on the other runtime.
                let mut late = Box::pin(client.call_timeout::<_, ()>(
                    "watch",
                    &(),
                    Duration::from_millis(300),
                ));
                assert!(smol::future::poll_once(&mut late).await.is_none());
                assert!(
                    until_flag(&probe.started).await,
                    "{ctx}: the handler never started"
                );
                assert_eq!(late.await, Err(Error::DeadlineExceeded), "{ctx}");
                assert!(
                    until_flag(&probe.cancelled).await,
                    "{ctx}: the deadline did not cancel the blocking handler"
                );
                // So does dropping the call's future.
                probe.started.store(false, Ordering::SeqCst);
                probe.cancelled.store(false, Ordering::SeqCst);
                let mut call = Box::pin(client.call::<_, ()>("watch", &()));
                assert!(smol::future::poll_once(&mut call).await.is_none());
                assert!(until_flag(&probe.started).await, "{ctx}");
                drop(call);
                assert!(
                    until_flag(&probe.cancelled).await,
                    "{ctx}: dropping the future did not cancel"
                );
                client.close().await;
                let frozen = rigwire_smol::Client::connect(
                    &server.local_url(),
                    config("smol-script", secret).keepalive(quick()),
                )
                .await
                .unwrap();
                let err = frozen
                    .call_timeout::<_, u64>("freeze", &1200u64, Duration::from_secs(3600))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, Error::Disconnected(ConnectionError::PeerSilent(_))),
                    "{ctx}: {err}"
                );
            });
            server.shutdown(Duration::from_secs(2));
        }
    }
}

#[test]
fn a_group_of_mixed_rigs_answers_by_name() {
    let (a, b) = (Arc::new(Probe::default()), Arc::new(Probe::default()));
    let smol_server = smol_rig("tcp://127.0.0.1:0", true, a);
    let std_server = std_rig("tcp://127.0.0.1:0", true, b);
    let (u1, u2) = (smol_server.local_url(), std_server.local_url());
    let group = rigwire_std::Group::connect(
        &[("smol", u1.as_str()), ("std", u2.as_str())],
        &config("script", true),
    )
    .unwrap();
    let sums = group
        .call_all::<_, i64>("add", &(1, 2), None)
        .into_result()
        .unwrap();
    assert_eq!(sums, vec![("smol".to_owned(), 3), ("std".to_owned(), 3)]);
    let fails = group.call_all::<_, ()>("fail", &(), None);
    let messages: Vec<String> = fails.failures().map(|(n, e)| format!("{n}: {e}")).collect();
    assert_eq!(
        messages,
        vec![
            "smol: remote error: Handler: smol says no",
            "std: remote error: Handler: std says no"
        ]
    );
    group.close();
    smol::block_on(smol_server.shutdown(Duration::from_secs(1)));
    std_server.shutdown(Duration::from_secs(1));
}

/// Both runtimes put the spec's bytes on the wire: their first frame is the
/// vector's client Hello, but for the nonce (random, as it must be).
#[test]
fn both_runtimes_send_the_spec_vector_hello() {
    use std::io::Read;
    let vector = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/vectors/handshake-secret.txt"
    ))
    .unwrap();
    let hex = vector
        .lines()
        .find(|l| l.starts_with("C "))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    let expected: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let nonce = 1 + 4 + 2 + 1 + "script".len(); // tag, magic, versions, name
    let first_frame = |dial: &dyn Fn(String)| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", listener.local_addr().unwrap());
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).unwrap();
            body
        });
        dial(url);
        let mut body = reader.join().unwrap();
        body[nonce..nonce + 32].fill(0x11);
        body
    };
    let cfg = || {
        config("script", false)
            .secret("correct horse battery staple")
            .unwrap()
    };
    let from_std = first_frame(&|url| {
        let mut c = cfg();
        c.protocol.handshake_timeout = Duration::from_millis(200);
        let _ = rigwire_std::Client::connect(&url, c);
    });
    let from_smol = first_frame(&|url| {
        let mut c = cfg();
        c.protocol.handshake_timeout = Duration::from_millis(200);
        let _ = smol::block_on(rigwire_smol::Client::connect(&url, c));
    });
    assert_eq!(from_std, expected);
    assert_eq!(from_smol, expected);
}
