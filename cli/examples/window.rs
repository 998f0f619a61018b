//! The "window of 64 kept full" row of `rigwire bench` alone, rigwire-std
//! only, for profiling:
//!
//! ```text
//! cargo build --release -p rigwire --example window
//! taskset -c 0 perf record --call-graph dwarf target/release/examples/window 300000
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rigwire_std::{Client, Codec, Config, Dispatch, Error, Payload, RawPendingCall, Server};

fn main() -> Result<(), Error> {
    let calls: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().expect("the number of calls"),
        None => 1_000_000,
    };
    let mut server = Server::bind("tcp://127.0.0.1:0", Config::named("rig"))?;
    server.expose_raw("echo", |_ctx, args: Payload| Ok(args))?;
    server.dispatch("echo", Dispatch::Inline)?;
    let rig = server.start()?;
    let client = Client::connect(&rig.local_url(), Config::named("bench"))?;
    let payload = Payload::new(Codec::Postcard, vec![7u8; 32]);
    let batch =
        |k: usize| client.start_batch("echo", std::iter::repeat_n(payload.clone(), k), None);
    let started = Instant::now();
    let mut inflight: VecDeque<RawPendingCall> = batch(64.min(calls))?.into();
    let (mut sent, mut batches) = (inflight.len(), 1);
    while let Some(oldest) = inflight.pop_front() {
        oldest.wait()?;
        let mut answers = 1;
        while let Some(next) = inflight.front_mut() {
            match next.wait_timeout(Duration::ZERO) {
                Ok(_) => {
                    inflight.pop_front();
                    answers += 1;
                }
                Err(Error::WaitTimeout(_)) => break,
                Err(e) => return Err(e),
            }
        }
        let more = answers.min(calls - sent);
        if more > 0 {
            inflight.extend(batch(more)?);
            (sent, batches) = (sent + more, batches + 1);
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "{:.0} calls/s, {:.1} calls per write",
        calls as f64 / took,
        calls as f64 / batches as f64
    );
    rig.shutdown(Duration::from_secs(1));
    Ok(())
}
