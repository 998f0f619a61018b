//! Typed calls to a rig that takes JSON only, as a Python rig's handlers
//! do (they cannot decode postcard without its types): with
//! `Config::call_codec(Codec::Json)`, a Rust script's typed calls,
//! notifies, group calls and a server's broadcasts all go out in JSON,
//! from both runtimes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rigwire_core::{Codec, Config, Error, ErrorKind, HandlerError, Payload};

/// The codecs the rig's handlers were called in, in order.
type Seen = Arc<Mutex<Vec<Codec>>>;

/// A std rig whose `add` and `log` take JSON only, naming the codec they
/// refuse, and which sends its own broadcasts in `broadcasts`.
fn json_only_rig(broadcasts: Codec, seen: &Seen) -> rigwire_std::RunningServer {
    let config = Config::named("py-like-rig").call_codec(broadcasts);
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", config).unwrap();
    let json_only = |args: &Payload| match args.codec {
        Codec::Json => Ok(()),
        other => Err(HandlerError::with_kind(
            ErrorKind::BadArguments,
            format!("JSON only, not {other:?}"),
        )),
    };
    let add_seen = Arc::clone(seen);
    server
        .expose_raw("add", move |_, args| {
            add_seen.lock().unwrap().push(args.codec);
            json_only(&args)?;
            let (a, b): (i64, i64) = args.decode_args()?;
            Payload::encode_result(args.codec, &(a + b))
        })
        .unwrap();
    let log_seen = Arc::clone(seen);
    server
        .expose_raw("log", move |_, args| {
            log_seen.lock().unwrap().push(args.codec);
            json_only(&args)?;
            Payload::encode_result(args.codec, &())
        })
        .unwrap();
    server.start().unwrap()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "{what} did not happen within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn json() -> Config {
    Config::named("script").call_codec(Codec::Json)
}

#[test]
fn typed_calls_reach_a_json_only_rig_from_both_runtimes() {
    let seen = Seen::default();
    let rig = json_only_rig(Codec::Json, &seen);
    let url = rig.local_url();

    // Postcard, the default, is what such a rig refuses.
    let postcard = rigwire_std::Client::connect(&url, Config::named("script")).unwrap();
    assert_eq!(postcard.call_codec(), Codec::Postcard);
    match postcard.call::<_, i64>("add", &(1i64, 2i64)) {
        Err(Error::Remote(e)) => assert_eq!(e.kind, ErrorKind::BadArguments, "{e:?}"),
        other => panic!("{other:?}"),
    }

    let client = rigwire_std::Client::connect(&url, json()).unwrap();
    assert_eq!(client.call_codec(), Codec::Json);
    assert_eq!(client.call::<_, i64>("add", &(1i64, 2i64)).unwrap(), 3);
    let in_time = client.call_timeout::<_, i64>("add", &(2i64, 2i64), Duration::from_secs(5));
    assert_eq!(in_time.unwrap(), 4);
    let started = client.start::<_, i64>("add", &(3i64, 3i64)).unwrap();
    assert_eq!(started.wait().unwrap(), 6);
    client.notify("log", &"trial 1").unwrap();
    let group = rigwire_std::Group::from_clients(vec![("rig".into(), client)]).unwrap();
    let sums = group.call_all::<_, i64>("add", &(4i64, 4i64), None);
    assert_eq!(sums.into_result().unwrap(), [("rig".to_owned(), 8)]);

    smol::block_on(async {
        let client = rigwire_smol::Client::connect(&url, json()).await.unwrap();
        assert_eq!(
            client.call::<_, i64>("add", &(5i64, 5i64)).await.unwrap(),
            10
        );
        client.notify("log", &"trial 2").await.unwrap();
        let group = rigwire_smol::Group::from_clients(vec![("rig".into(), client)]).unwrap();
        let sums = group.call_all::<_, i64>("add", &(6i64, 6i64), None).await;
        assert_eq!(sums.into_result().unwrap(), [("rig".to_owned(), 12)]);
    });
    // Everything after the one refused call came in JSON, notifies too.
    wait_until("both notifies", || seen.lock().unwrap().len() == 9);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], Codec::Postcard);
    assert!(seen[1..].iter().all(|c| *c == Codec::Json), "{seen:?}");
    rig.shutdown(Duration::from_secs(1));
}

#[test]
fn a_servers_broadcast_goes_out_in_its_call_codec() {
    for codec in [Codec::Json, Codec::Postcard] {
        let rig = json_only_rig(codec, &Seen::default());
        let heard = Seen::default();
        let mut handlers = rigwire_std::Handlers::new();
        let log = Arc::clone(&heard);
        handlers
            .expose_raw("news", move |_, args| {
                log.lock().unwrap().push(args.codec);
                Payload::encode_result(args.codec, &())
            })
            .unwrap();
        let client = rigwire_std::Client::connect_with(&rig.local_url(), json(), handlers).unwrap();
        assert_eq!(client.call::<_, i64>("add", &(1i64, 1i64)).unwrap(), 2);
        assert_eq!(rig.broadcast("news", &"run 2 starts").unwrap(), 1);
        wait_until("the broadcast", || !heard.lock().unwrap().is_empty());
        assert_eq!(*heard.lock().unwrap(), [codec]);
        rig.shutdown(Duration::from_secs(1));
    }
}
