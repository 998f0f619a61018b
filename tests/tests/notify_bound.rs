//! Notifies are bounded like calls: they count against the incoming limit
//! (one over it is dropped and the sender told), and their handlers are
//! cancelled when their connection ends, so long notifies from a peer that
//! left cannot tie up a rig's handlers. A broadcast skips a peer that
//! stopped reading instead of waiting for it.

#[path = "common/raw.rs"]
mod raw;

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_core::{Config, Connection, Framing, Payload, ProtocolConfig};

/// Handlers of `hold` running now.
static HOLDING: AtomicUsize = AtomicUsize::new(0);

fn limited(name: &str) -> Config {
    let mut config = Config::named(name);
    config.protocol.max_incoming_calls = 4;
    config
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < until, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn notifies_count_against_the_limit_and_end_with_their_connection() {
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", limited("rig")).unwrap();
    server
        .expose_with("hold", |ctx: &rigwire_std::CallContext, (): ()| {
            HOLDING.fetch_add(1, Ordering::SeqCst);
            // An hour, unless cancelled: by the caller, or its leaving.
            let until = Instant::now() + Duration::from_secs(3600);
            while !ctx.is_cancelled() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            HOLDING.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap()
        .dispatch("hold", rigwire_std::Dispatch::Pool)
        .unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    let running = server.start().unwrap();
    let url = running.local_url();
    let flooder = rigwire_std::Client::connect(&url, Config::named("flooder")).unwrap();
    for _ in 0..16 {
        flooder.notify("hold", &()).unwrap();
    }
    wait_until("four notifies run", || HOLDING.load(Ordering::SeqCst) == 4);
    // The limit is full: a call is answered Busy, not queued behind them.
    let err = flooder.call::<_, i64>("add", &(1i64, 1i64)).unwrap_err();
    assert!(matches!(err, rigwire_core::Error::Busy(_)), "{err}");
    // The sender leaves: its notifies' handlers stop, and others get in.
    flooder.close();
    drop(flooder);
    wait_until("the handlers stop when their connection ends", || {
        HOLDING.load(Ordering::SeqCst) == 0
    });
    let other = rigwire_std::Client::connect(&url, Config::named("script")).unwrap();
    assert_eq!(other.call::<_, i64>("add", &(2i64, 2i64)).unwrap(), 4);
    running.shutdown(Duration::ZERO);
}

#[test]
fn async_notify_handlers_end_with_their_connection() {
    let running_now = Arc::new(AtomicUsize::new(0));
    let mut server = rigwire_smol::Server::bind("tcp://127.0.0.1:0", limited("rig")).unwrap();
    let counter = Arc::clone(&running_now);
    server
        .expose("hold", move |(): ()| {
            let counter = Arc::clone(&counter);
            async move {
                struct Running(Arc<AtomicUsize>);
                impl Drop for Running {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let _running = Running(counter);
                smol::Timer::after(Duration::from_secs(3600)).await;
                Ok(())
            }
        })
        .unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })
        .unwrap();
    let running = server.start().unwrap();
    let url = running.local_url();
    smol::block_on(async {
        let flooder = rigwire_smol::Client::connect(&url, Config::named("flooder"))
            .await
            .unwrap();
        for _ in 0..16 {
            flooder.notify("hold", &()).await.unwrap();
        }
        let err = loop {
            match flooder.call::<_, i64>("add", &(1i64, 1i64)).await {
                Err(e) => break e,
                Ok(_) => smol::Timer::after(Duration::from_millis(10)).await,
            };
        };
        assert!(matches!(err, rigwire_core::Error::Busy(_)), "{err}");
        wait_until("four notify handlers run", || {
            running_now.load(Ordering::SeqCst) == 4
        });
        flooder.close().await;
    });
    wait_until(
        "the handlers are dropped when their connection ends",
        || running_now.load(Ordering::SeqCst) == 0,
    );
    smol::block_on(async {
        let other = rigwire_smol::Client::connect(&url, Config::named("script"))
            .await
            .unwrap();
        assert_eq!(other.call::<_, i64>("add", &(2i64, 2i64)).await.unwrap(), 4);
        running.shutdown(Duration::ZERO).await;
    });
}

/// A broadcast's messages: 2,000 of 32 KiB, far more than a peer that does
/// not read can take into its socket and its queue of 256 KiB.
const ROUNDS: usize = 2000;

fn news() -> Payload {
    Payload::bytes(vec![5u8; 32 << 10])
}

/// A server with a small output queue and no keepalive: nothing but the
/// broadcast itself could end a wait for a peer that stopped reading.
fn broadcaster() -> Config {
    let mut config = Config::named("broadcaster");
    config.protocol.keepalive = None;
    config.protocol.max_frame = 64 << 10;
    config.protocol.max_queued_output = 256 << 10;
    config
}

/// A client that completes the handshake with the server at `url` and
/// never reads again.
fn deaf_client(url: &str) -> (TcpStream, Connection) {
    let mut stream = TcpStream::connect(url.strip_prefix("tcp://").unwrap()).unwrap();
    let mut conn = raw::flooder(ProtocolConfig::named("deaf"), Framing::Stream);
    raw::handshake(&mut stream, &mut conn);
    (stream, conn)
}

/// Broadcasts [`ROUNDS`] times on a thread, each once the live peer has the
/// one before (so that it is never behind), and returns how many peers
/// each reached. Fails if the broadcasts do not end within a minute: a
/// broadcast that waits for the deaf peer never does.
fn broadcast_in_lockstep(
    received: Arc<AtomicUsize>,
    mut broadcast: impl FnMut() -> usize + Send + 'static,
) -> Vec<usize> {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reached = Vec::new();
        for round in 0..ROUNDS {
            reached.push(broadcast());
            let until = Instant::now() + Duration::from_secs(10);
            while received.load(Ordering::SeqCst) <= round {
                assert!(
                    Instant::now() < until,
                    "the live peer missed broadcast {round}"
                );
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let _ = done.send(reached);
    });
    outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("a broadcast waited for the peer that stopped reading")
}

/// The live peer got every message, and the deaf one was skipped once it
/// could take no more (it was reached at first, while it still had room).
fn assert_skipped_the_deaf_peer(reached: &[usize]) {
    assert_eq!(
        reached[0],
        2,
        "both peers reached at first: {:?}",
        &reached[..4]
    );
    assert_eq!(reached[ROUNDS - 1], 1, "the deaf peer skipped in the end");
}

#[test]
fn a_std_broadcast_skips_a_peer_that_stopped_reading() {
    let received = Arc::new(AtomicUsize::new(0));
    let server = rigwire_std::Server::bind("tcp://127.0.0.1:0", broadcaster())
        .unwrap()
        .start()
        .unwrap();
    let url = server.local_url();
    let _deaf = deaf_client(&url);
    let mut handlers = rigwire_std::Handlers::new();
    let counter = Arc::clone(&received);
    handlers
        .expose_raw("news", move |_ctx, _news| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(Payload::json(&()).unwrap())
        })
        .unwrap();
    let live = rigwire_std::Client::connect_with(&url, Config::named("live"), handlers).unwrap();
    wait_until("both peers connected", || server.peers().len() == 2);
    let server = Arc::new(server);
    let broadcasting = Arc::clone(&server);
    let reached = broadcast_in_lockstep(received, move || {
        broadcasting.broadcast_raw("news", news()).unwrap()
    });
    assert_skipped_the_deaf_peer(&reached);
    assert_eq!(server.peers().len(), 2, "the deaf peer is still connected");
    drop(live);
}

#[test]
fn a_smol_broadcast_skips_a_peer_that_stopped_reading() {
    let received = Arc::new(AtomicUsize::new(0));
    let server = rigwire_smol::Server::bind("tcp://127.0.0.1:0", broadcaster())
        .unwrap()
        .start()
        .unwrap();
    let url = server.local_url();
    let _deaf = deaf_client(&url);
    let mut handlers = rigwire_smol::Handlers::new();
    let counter = Arc::clone(&received);
    handlers
        .expose_raw("news", move |_ctx, _news| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(Payload::json(&()).unwrap()) }
        })
        .unwrap();
    let live = smol::block_on(rigwire_smol::Client::connect_with(
        &url,
        Config::named("live"),
        handlers,
    ))
    .unwrap();
    wait_until("both peers connected", || server.peers().len() == 2);
    let server = Arc::new(server);
    let broadcasting = Arc::clone(&server);
    let reached = broadcast_in_lockstep(received, move || {
        smol::block_on(broadcasting.broadcast_raw("news", news())).unwrap()
    });
    assert_skipped_the_deaf_peer(&reached);
    assert_eq!(server.peers().len(), 2, "the deaf peer is still connected");
    drop(live);
}

/// A blocking server whose connection's thread waits on a socket a deaf
/// peer filled, with no timer (keepalive off), still shuts down: finishing
/// the connection shuts its socket, which wakes that thread. Once, the
/// drop waited for the thread for good: the link closed and set its linger,
/// but nothing woke the thread to run it.
#[test]
fn a_std_server_shuts_down_past_a_deaf_peer_that_filled_its_socket() {
    let mut config = broadcaster();
    config.protocol.max_frame = 1 << 20;
    config.protocol.max_queued_output = 64 << 20;
    let server = rigwire_std::Server::bind("tcp://127.0.0.1:0", config)
        .unwrap()
        .start()
        .unwrap();
    let _deaf = deaf_client(&server.local_url());
    wait_until("the deaf peer connected", || server.peers().len() == 1);
    // Far more than the kernel's buffers hold: its thread waits to write.
    for _ in 0..96 {
        let reached = server
            .broadcast_raw("news", Payload::bytes(vec![5u8; 512 << 10]))
            .unwrap();
        assert_eq!(reached, 1, "the deaf peer has room in its queue");
    }
    // Its own thread reads on (until the link would park it), then waits.
    std::thread::sleep(rigwire_core::link::PARK_AFTER + Duration::from_millis(500));
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.shutdown(Duration::ZERO);
        let _ = done.send(());
    });
    stopped
        .recv_timeout(Duration::from_secs(30))
        .expect("the shutdown waited for a thread stuck on the deaf peer's socket");
}
