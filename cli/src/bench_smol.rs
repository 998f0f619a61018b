//! The smol rows of `rigwire bench`: rigwire-smol against a raw smol TCP
//! ping-pong with the same tasks and threads (server on the smol executor,
//! client in `block_on`), and the memory an idle connection costs a server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_smol::{Client, Codec, Config, Error, Payload, Server};
use serde::Serialize;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

/// Memory of idle server connections.
#[derive(Serialize)]
pub struct IdleMemory {
    /// Connections open and idle.
    pub connections: usize,
    /// Resident memory added per connection, in bytes.
    pub bytes_per_connection: f64,
}

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

/// Serial round trips of a small call: raw smol samples, rigwire-smol samples.
pub fn serial(blocks: usize, per_block: usize) -> Result<crate::bench::Samples, Error> {
    let raw_addr = raw_smol_server();
    let mut server = Server::bind("tcp://127.0.0.1:0", Config::named("bench-rig"))?;
    server.expose_raw("echo", |_ctx, args: Payload| async move { Ok(args) })?;
    let server = server.start()?;
    smol::block_on(async {
        let client = Client::connect(&server.local_url(), Config::named("bench")).await?;
        let mut raw = Async::<TcpStream>::connect(
            raw_addr
                .parse::<std::net::SocketAddr>()
                .expect("an address"),
        )
        .await
        .map_err(|e| Error::Connect {
            url: raw_addr.clone(),
            reason: e.to_string(),
        })?;
        raw.get_ref().set_nodelay(true).expect("nodelay");
        let mut frame = 40u32.to_be_bytes().to_vec();
        frame.extend([7u8; 40]);
        let mut reply = vec![0u8; frame.len()];
        let small = Payload::new(Codec::Postcard, Bytes::from(vec![7u8; 32]));
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
                    raw.write_all(&frame).await.expect("write");
                    raw.read_exact(&mut reply).await.expect("read");
                    if !warm {
                        a.push(t.elapsed());
                    }
                }
                for _ in 0..n {
                    let t = Instant::now();
                    client.call_raw("echo", small.clone(), None).await?;
                    if !warm {
                        b.push(t.elapsed());
                    }
                }
            }
            samples.raw.push(a);
            samples.rig.push(b);
        }
        client.close().await;
        server.shutdown(Duration::from_secs(1)).await;
        Ok(samples)
    })
}

/// A window of `window` calls kept full until `calls` answers are in, raw
/// smol against rigwire-smol, block by block; a sample is one whole run.
/// The raw client writes as many frames as answers came, in one write.
/// rigwire-smol keeps `window` calls in flight from as many tasks on one
/// thread; each call writes its own frame as it is made.
pub fn window(
    blocks: usize,
    runs: usize,
    window: usize,
    calls: usize,
) -> Result<crate::bench::Samples, Error> {
    let raw_addr = raw_smol_server();
    let mut server = Server::bind("tcp://127.0.0.1:0", Config::named("bench-rig"))?;
    server.expose_raw("echo", |_ctx, args: Payload| async move { Ok(args) })?;
    let server = server.start()?;
    smol::block_on(async {
        let client = Client::connect(&server.local_url(), Config::named("bench")).await?;
        let mut raw = Async::<TcpStream>::connect(
            raw_addr
                .parse::<std::net::SocketAddr>()
                .expect("an address"),
        )
        .await
        .map_err(|e| Error::Connect {
            url: raw_addr.clone(),
            reason: e.to_string(),
        })?;
        raw.get_ref().set_nodelay(true).expect("nodelay");
        let mut frame = 40u32.to_be_bytes().to_vec();
        frame.extend([7u8; 40]);
        let small = Payload::new(Codec::Postcard, Bytes::from(vec![7u8; 32]));
        let mut samples = crate::bench::Samples {
            raw: Vec::new(),
            rig: Vec::new(),
        };
        for _ in 0..blocks {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let t = Instant::now();
                raw_window(&mut raw, &frame, window, calls).await;
                a.push(t.elapsed());
            }
            for _ in 0..runs {
                let t = Instant::now();
                rig_window(&client, &small, window, calls).await;
                b.push(t.elapsed());
            }
            samples.raw.push(a);
            samples.rig.push(b);
        }
        client.close().await;
        server.shutdown(Duration::from_secs(1)).await;
        Ok(samples)
    })
}

async fn raw_window(socket: &mut Async<TcpStream>, frame: &[u8], window: usize, calls: usize) {
    let len = frame.len();
    let mut out = Vec::with_capacity(len * window);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut sent, mut done, mut partial) = (0, 0, 0);
    let mut more = window.min(calls);
    loop {
        if more > 0 {
            out.clear();
            for _ in 0..more {
                out.extend_from_slice(frame);
            }
            socket.write_all(&out).await.expect("write");
            sent += more;
        }
        if done == calls {
            return;
        }
        let n = socket.read(&mut buf).await.expect("read");
        assert!(n > 0, "the raw server closed");
        partial += n;
        let answers = partial / len;
        partial %= len;
        done += answers;
        more = answers.min(calls - sent);
    }
}

async fn rig_window(client: &Client, payload: &Payload, window: usize, calls: usize) {
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

fn resident_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

/// Opens `counts` idle connections (raw clients that complete the handshake,
/// so nearly all the memory measured is the server's) and reports the
/// resident memory each adds.
pub fn idle_memory(counts: &[usize]) -> Result<Vec<IdleMemory>, Error> {
    let mut config = Config::named("idle-rig");
    // Raw clients do not answer keepalives; keep them idle, not dead.
    config.protocol.keepalive = Some(rigwire_smol::Keepalive {
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(180),
    });
    config.max_connections = 100_000;
    let server = Server::bind("tcp://127.0.0.1:0", config)?.start()?;
    let addr = server.local_url().trim_start_matches("tcp://").to_owned();
    let hello = rigwire_std::core::Message::Hello(rigwire_std::core::message::Hello {
        magic: *b"RGWR",
        min_version: 1,
        max_version: 1,
        name: "idle".into(),
        nonce: [0; 32],
        max_frame: 1 << 20,
        max_incoming_calls: 16,
        secret_required: false,
    })
    .encode();
    let mut framed = (hello.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&hello);
    let mut results = Vec::new();
    for &count in counts {
        let before = resident_bytes();
        let mut sockets = Vec::with_capacity(count);
        for _ in 0..count {
            let mut s = TcpStream::connect(&addr).map_err(|e| Error::Connect {
                url: addr.clone(),
                reason: e.to_string(),
            })?;
            s.write_all(&framed).map_err(|e| Error::Connect {
                url: addr.clone(),
                reason: e.to_string(),
            })?;
            let mut len = [0u8; 4];
            s.read_exact(&mut len).map_err(|e| Error::Connect {
                url: addr.clone(),
                reason: e.to_string(),
            })?;
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).map_err(|e| Error::Connect {
                url: addr.clone(),
                reason: e.to_string(),
            })?;
            sockets.push(s);
        }
        let until = Instant::now() + Duration::from_secs(30);
        while server.peers().len() < count && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let after = resident_bytes();
        results.push(IdleMemory {
            connections: count,
            bytes_per_connection: (after - before) / count as f64,
        });
        drop(sockets);
        let until = Instant::now() + Duration::from_secs(30);
        while !server.peers().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    smol::block_on(server.shutdown(Duration::from_secs(1)));
    Ok(results)
}
