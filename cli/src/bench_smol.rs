//! The smol rows of `rigwire bench`: rigwire-smol against a raw smol TCP
//! ping-pong with the same tasks and threads (server on the smol executor,
//! client in `block_on`).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_smol::{Client, Codec, Config, Error, Payload, RawPendingCall, Server};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

/// A raw smol echo server for length-prefixed frames, as the std raw server does.
fn raw_smol_server() -> String {
    let listener =
        Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).expect("bind loopback");
    let addr = listener.get_ref().local_addr().expect("bound").to_string();
    smol::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let _ = socket.get_ref().set_nodelay(true);
            smol::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut pending: Vec<u8> = Vec::new();
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    let mut complete = 0;
                    while pending.len() >= complete + 4 {
                        let len = u32::from_be_bytes(
                            pending[complete..complete + 4].try_into().expect("4 bytes"),
                        ) as usize;
                        if pending.len() < complete + 4 + len {
                            break;
                        }
                        complete += 4 + len;
                    }
                    if complete > 0 {
                        if socket.write_all(&pending[..complete]).await.is_err() {
                            return;
                        }
                        pending.drain(..complete);
                    }
                }
            })
            .detach();
        }
    })
    .detach();
    addr
}

/// What both smol rows use: a rigwire-smol rig and a client of it, a raw
/// smol echo server and a client of that, and a small call in either form.
struct Rigs {
    server: rigwire_smol::RunningServer,
    client: Client,
    raw: Async<TcpStream>,
    /// A raw frame as long as rigwire's call frame for `small`.
    frame: Vec<u8>,
    small: Payload,
}

impl Rigs {
    async fn start() -> Result<Rigs, Error> {
        let raw_addr = raw_smol_server();
        let mut server = Server::bind("tcp://127.0.0.1:0", Config::named("bench-rig"))?;
        server.expose_raw("echo", |_ctx, args: Payload| async move { Ok(args) })?;
        let server = server.start()?;
        let client = Client::connect(&server.local_url(), Config::named("bench")).await?;
        let addr = raw_addr
            .parse::<std::net::SocketAddr>()
            .expect("an address");
        let raw = Async::<TcpStream>::connect(addr)
            .await
            .map_err(|e| Error::Connect {
                url: raw_addr.clone(),
                reason: e.to_string(),
            })?;
        raw.get_ref().set_nodelay(true).expect("nodelay");
        let mut frame = 40u32.to_be_bytes().to_vec();
        frame.extend([7u8; 40]);
        let small = Payload::new(Codec::Postcard, Bytes::from(vec![7u8; 32]));
        Ok(Rigs {
            server,
            client,
            raw,
            frame,
            small,
        })
    }

    async fn stop(self) {
        self.client.close().await;
        self.server.shutdown(Duration::from_secs(1)).await;
    }
}

/// Serial round trips of a small call: raw smol samples, rigwire-smol samples.
pub fn serial(blocks: usize, per_block: usize) -> Result<crate::bench::Samples, Error> {
    smol::block_on(async {
        let mut rigs = Rigs::start().await?;
        let mut reply = vec![0u8; rigs.frame.len()];
        let mut samples = crate::bench::Samples {
            raw: Vec::new(),
            rig: Vec::new(),
        };
        for _ in 0..blocks {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for warm in [true, false] {
                let n = if warm { per_block / 10 } else { per_block };
                for _ in 0..n {
                    let t = Instant::now();
                    rigs.raw.write_all(&rigs.frame).await.expect("write");
                    rigs.raw.read_exact(&mut reply).await.expect("read");
                    if !warm {
                        a.push(t.elapsed());
                    }
                }
                for _ in 0..n {
                    let t = Instant::now();
                    rigs.client
                        .call_raw("echo", rigs.small.clone(), None)
                        .await?;
                    if !warm {
                        b.push(t.elapsed());
                    }
                }
            }
            samples.raw.push(a);
            samples.rig.push(b);
        }
        rigs.stop().await;
        Ok(samples)
    })
}

/// How rigwire-smol keeps a window of calls in flight.
#[derive(Clone, Copy)]
pub enum WindowBy {
    /// One task: as answers come, it takes every answer already there and
    /// starts as many calls in one batch (`Client::start_batch`), as the
    /// blocking runtime's row does.
    Batch,
    /// A task per call in flight, each calling in a loop, on one thread; the
    /// calls of tasks woken together leave in one write.
    Tasks,
}

/// A window of `window` calls kept full until `calls` answers are in, raw
/// smol against rigwire-smol, block by block; a sample is one whole run.
/// The raw client writes as many frames as answers came, in one write.
pub fn window(
    blocks: usize,
    runs: usize,
    (window, calls): (usize, usize),
    by: WindowBy,
) -> Result<crate::bench::Samples, Error> {
    smol::block_on(async {
        let mut rigs = Rigs::start().await?;
        let mut samples = crate::bench::Samples {
            raw: Vec::new(),
            rig: Vec::new(),
        };
        for _ in 0..blocks {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let t = Instant::now();
                raw_window(&mut rigs.raw, &rigs.frame, window, calls).await;
                a.push(t.elapsed());
            }
            for _ in 0..runs {
                let t = Instant::now();
                match by {
                    WindowBy::Batch => batch_window(&rigs.client, &rigs.small, window, calls).await,
                    WindowBy::Tasks => task_window(&rigs.client, &rigs.small, window, calls).await,
                }
                b.push(t.elapsed());
            }
            samples.raw.push(a);
            samples.rig.push(b);
        }
        rigs.stop().await;
        Ok(samples)
    })
}

async fn raw_window(socket: &mut Async<TcpStream>, frame: &[u8], window: usize, calls: usize) {
    let (mut buf, mut out) = (vec![0u8; 64 * 1024], Vec::new());
    let (mut count, mut more) = crate::bench::RawWindow::new(frame.len(), window, calls);
    loop {
        if more > 0 {
            out.clear();
            (0..more).for_each(|_| out.extend_from_slice(frame));
            socket.write_all(&out).await.expect("write");
        }
        if count.finished() {
            return;
        }
        let n = socket.read(&mut buf).await.expect("read");
        assert!(n > 0, "the raw server closed");
        more = count.received(n);
    }
}

async fn batch_window(client: &Client, payload: &Payload, window: usize, calls: usize) {
    let batch =
        |k: usize| client.start_batch("echo", std::iter::repeat_n(payload.clone(), k), None);
    let mut inflight: std::collections::VecDeque<RawPendingCall> = batch(window.min(calls))
        .await
        .expect("start a batch")
        .into();
    let mut sent = inflight.len();
    while let Some(oldest) = inflight.pop_front() {
        oldest.wait().await.expect("echo call");
        let mut answers = 1;
        while inflight.front().is_some_and(RawPendingCall::is_ready) {
            if let Some(next) = inflight.pop_front() {
                next.wait().await.expect("echo call");
                answers += 1;
            }
        }
        let more = answers.min(calls - sent);
        if more > 0 {
            inflight.extend(batch(more).await.expect("start a batch"));
            sent += more;
        }
    }
}

async fn task_window(client: &Client, payload: &Payload, window: usize, calls: usize) {
    // Declared before the executor, so that it outlives the tasks.
    let left = std::cell::Cell::new(calls);
    let executor = smol::LocalExecutor::new();
    let callers: Vec<_> = (0..window)
        .map(|_| {
            executor.spawn(async {
                while left.get() > 0 {
                    left.set(left.get() - 1);
                    client
                        .call_raw("echo", payload.clone(), None)
                        .await
                        .expect("echo call");
                }
            })
        })
        .collect();
    executor
        .run(async {
            for caller in callers {
                caller.await;
            }
        })
        .await;
}
