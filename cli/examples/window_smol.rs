//! The "smol TCP window of 64 kept full" row of `rigwire bench` alone,
//! rigwire-smol only, for profiling (see `window.rs`).

use std::cell::Cell;
use std::time::{Duration, Instant};

use rigwire_smol::{Client, Codec, Config, Error, Payload, Server};

fn main() -> Result<(), Error> {
    let calls: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().expect("the number of calls"),
        None => 300_000,
    };
    let mut server = Server::bind("tcp://127.0.0.1:0", Config::named("rig"))?;
    server.expose_raw("echo", |_ctx, args: Payload| async move { Ok(args) })?;
    let rig = server.start()?;
    smol::block_on(async {
        let client = Client::connect(&rig.local_url(), Config::named("bench")).await?;
        let payload = Payload::new(Codec::Postcard, vec![7u8; 32]);
        let left = Cell::new(calls);
        let executor = smol::LocalExecutor::new();
        let started = Instant::now();
        let callers: Vec<_> = (0..64)
            .map(|_| {
                executor.spawn(async {
                    while left.get() > 0 {
                        left.set(left.get() - 1);
                        client.call_raw("echo", payload.clone(), None).await?;
                    }
                    Ok::<(), Error>(())
                })
            })
            .collect();
        executor
            .run(async {
                for caller in callers {
                    caller.await?;
                }
                Ok::<(), Error>(())
            })
            .await?;
        let took = started.elapsed().as_secs_f64();
        println!("{:.0} calls/s", calls as f64 / took);

        rig.shutdown(Duration::from_secs(1)).await;
        Ok(())
    })
}
