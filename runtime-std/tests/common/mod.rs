//! Shared pieces of the blocking runtime's tests: a demo rig, transports, gates.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rigwire_std::{
    CallContext, Config, Dispatch, ErrorKind, HandlerError, Keepalive, Payload, RunningServer,
    Server,
};

/// One listening URL per transport, each unique (port 0, fresh socket path).
pub fn transports() -> Vec<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("rigwire-test-{}-{n}.sock", std::process::id()));
    vec![
        "tcp://127.0.0.1:0".into(),
        format!("unix://{}", path.display()),
        "ws://127.0.0.1:0/rig".into(),
    ]
}

/// A gate a handler blocks on until the test opens it: no sleeps, no timing.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    /// Waits until open (true) or `limit` passes (false).
    pub fn wait(&self, limit: Duration) -> bool {
        let g = self.0 .0.lock().unwrap();
        let (g, _) = self
            .0
             .1
            .wait_timeout_while(g, limit, |open| !*open)
            .unwrap();
        *g
    }
}

/// Threads that wait for each other (a barrier that gives up): a handler
/// held until a given number of them run at once.
#[derive(Default)]
pub struct Count(Mutex<usize>, Condvar);

impl Count {
    /// Counts this thread in, then waits until `n` have been (true) or
    /// `limit` passes (false).
    pub fn arrive_and_wait(&self, n: usize, limit: Duration) -> bool {
        let mut arrived = self.0.lock().unwrap();
        *arrived += 1;
        self.1.notify_all();
        let (arrived, _) = self
            .1
            .wait_timeout_while(arrived, limit, |a| *a < n)
            .unwrap();
        *arrived >= n
    }
}

pub fn quick_keepalive() -> Option<Keepalive> {
    Some(Keepalive {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(400),
    })
}

pub fn cfg(name: &str) -> Config {
    Config::named(name).secret("lab-secret-0123456789").unwrap()
}

/// What the rig's handlers let a test observe and control.
#[derive(Clone, Default)]
pub struct Probe {
    /// `block` waits for this.
    pub gate: Gate,
    /// `watch_cancel` opens this when it sees its call cancelled.
    pub saw_cancel: Gate,
    /// `watch_cancel` opens this when it starts.
    pub watching: Gate,
    /// `block` opens this when it starts.
    pub blocking: Gate,
}

/// The test rig: add, echo (raw), fail, sleep_ms, panic, block (until the
/// probe's gate), freeze (blocks the reading thread), whoami, callback (calls the caller's `client.echo`),
/// watch_cancel (reports cancellation through the probe).
pub fn rig(url: &str, config: Config, probe: Probe) -> RunningServer {
    let gate = probe.gate.clone();
    let mut server = Server::bind(url, config).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    server.alias("plus", "add").unwrap();
    server
        .expose_raw("echo", |_ctx, args: Payload| Ok(args))
        .unwrap();
    server
        .expose("fail", |(): ()| -> Result<(), HandlerError> {
            Err(HandlerError::with_kind(ErrorKind::Handler, "motor stalled").detail("at rig.rs:1"))
        })
        .unwrap();
    server
        .expose("sleep_ms", |ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(ms)
        })
        .unwrap()
        .dispatch("sleep_ms", Dispatch::Pool)
        .unwrap();
    server
        .expose("panic", |(): ()| -> Result<(), HandlerError> {
            panic!("boom")
        })
        .unwrap();
    let g = gate.clone();
    let blocking = probe.blocking.clone();
    server
        .expose("block", move |(): ()| {
            blocking.open();
            Ok(g.wait(Duration::from_secs(20)))
        })
        .unwrap()
        .dispatch("block", Dispatch::Pool)
        .unwrap();
    // Blocks the connection's own reading thread: the peer looks frozen (no
    // answers, no keepalives) while its socket stays open.
    let g = gate.clone();
    server
        .expose("freeze", move |(): ()| Ok(g.wait(Duration::from_secs(20))))
        .unwrap()
        .dispatch("freeze", Dispatch::Inline)
        .unwrap();
    server
        .expose_with("whoami", |ctx: &CallContext, (): ()| Ok(ctx.peer.name()))
        .unwrap();
    server
        .expose_with("callback", |ctx: &CallContext, text: String| {
            let back: String = ctx.peer.call("client.echo", &text)?;
            Ok(format!("client said {back}"))
        })
        .unwrap();
    let saw = probe.saw_cancel.clone();
    let watching = probe.watching.clone();
    server
        .expose_with("watch_cancel", move |ctx: &CallContext, (): ()| {
            watching.open();
            for _ in 0..2000 {
                if ctx.is_cancelled() {
                    saw.open();
                    return Ok(true);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(false)
        })
        .unwrap()
        .dispatch("watch_cancel", Dispatch::Pool)
        .unwrap();
    server.start().unwrap()
}

/// Collects values from handlers; tests wait (bounded) until enough arrived.
#[derive(Clone, Default)]
pub struct Collector<T>(Arc<(Mutex<Vec<T>>, Condvar)>);

impl<T: Clone> Collector<T> {
    pub fn push(&self, value: T) {
        self.0 .0.lock().unwrap().push(value);
        self.0 .1.notify_all();
    }
    /// Waits until `n` values arrived (at most 10 s), then returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<T> {
        let g = self.0 .0.lock().unwrap();
        let (g, _) = self
            .0
             .1
            .wait_timeout_while(g, Duration::from_secs(10), |v| v.len() < n)
            .unwrap();
        g.clone()
    }
}
