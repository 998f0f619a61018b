//! Notifies are bounded like calls: they count against the incoming limit
//! (one over it is dropped and the sender told), and their handlers are
//! cancelled when their connection ends, so long notifies from a peer that
//! left cannot tie up a rig's handlers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_core::Config;

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
