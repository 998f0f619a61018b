//! A peer that leaves the calls back made to it unanswered, against the
//! pool's lending to handlers that wait for their peer. In a test binary
//! of its own: it counts the process's handler threads.

mod common;

use std::time::Duration;

use common::*;
use rigwire_std::Client;

/// Threads of this process whose name begins with `prefix` (the system
/// keeps the first 15 bytes of a thread's name).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end().starts_with(&prefix[..prefix.len().min(15)]))
        .count()
}

/// Peers that call a handler which calls them back, and leave every call
/// back unanswered for a while: the handlers waiting for them lend their
/// threads (so calls back and forth never wait for a thread only their
/// answers free), but the server's pool lends no more than
/// `MAX_LENT_THREADS`, however many wait; once the answers come, every
/// call ends.
#[test]
fn peers_that_leave_calls_back_unanswered_grow_the_pool_only_to_its_lending_limit() {
    use rigwire_std::core::link::MAX_LENT_THREADS;
    use rigwire_std::{CallContext, Dispatch, HandlerError, Handlers, Server};
    let config = cfg("rig");
    let threads = config.handler_threads;
    let mut server = Server::bind("tcp://127.0.0.1:0", config).unwrap();
    server
        .expose_with("ask", |ctx: &CallContext, (): ()| {
            let answer = ctx.peer.call::<_, u32>("answer", &());
            answer.map_err(|e| HandlerError::new(e.to_string()))
        })
        .unwrap()
        .dispatch("ask", Dispatch::Pool)
        .unwrap();
    let running = server.start().unwrap();
    let gate = Gate::default();
    let peers: Vec<Client> = (0..2)
        .map(|_| {
            let (mut handlers, gate) = (Handlers::new(), gate.clone());
            handlers
                .expose("answer", move |(): ()| {
                    Ok(u32::from(gate.wait(Duration::from_secs(60))))
                })
                .unwrap()
                .dispatch("answer", Dispatch::Pool)
                .unwrap();
            Client::connect_with(&running.local_url(), cfg("script"), handlers).unwrap()
        })
        .collect();
    let calls: Vec<_> = peers
        .iter()
        .flat_map(|peer| (0..200).map(move |_| peer.start::<_, u32>("ask", &()).unwrap()))
        .collect();
    let most = threads + MAX_LENT_THREADS;
    let by = std::time::Instant::now() + Duration::from_secs(20);
    while threads_named("rigwire-server-handler") < most && std::time::Instant::now() < by {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        threads_named("rigwire-server-handler"),
        most,
        "lent up to the limit"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        threads_named("rigwire-server-handler"),
        most,
        "and no further"
    );
    gate.open();
    for mut call in calls {
        assert_eq!(call.wait_timeout(Duration::from_secs(30)).unwrap(), 1);
    }
    running.shutdown(Duration::from_secs(1));
}
