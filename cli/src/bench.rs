//! `rigwire bench`: rigwire-std against raw blocking sockets doing the same
//! work with the same threads, in one run, on loopback. Each row alternates
//! raw and rigwire blocks so that drift of the machine hits both alike, and
//! reports the ratio.
//!
//! Like with like: the raw server reads what is there, echoes every complete
//! frame in one write, on the thread that read it — exactly what rigwire's
//! server does with a short handler.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_std::{Client, Codec, Config, Dispatch, Error, Payload, RawPendingCall, Server};
use serde::Serialize;

/// One line of the report.
#[derive(Serialize)]
pub(crate) struct Row {
    name: String,
    unit: &'static str,
    raw: f64,
    rigwire: f64,
    /// rigwire / raw.
    ratio: f64,
    higher_is_better: bool,
}

/// A raw TCP echo server for length-prefixed frames: reads what is there and
/// echoes every complete frame in one write.
fn raw_tcp_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("bound").to_string();
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            let _ = socket.set_nodelay(true);
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut pending: Vec<u8> = Vec::new();
                loop {
                    let n = match socket.read(&mut buf) {
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
                        if socket.write_all(&pending[..complete]).is_err() {
                            return;
                        }
                        pending.drain(..complete);
                    }
                }
            });
        }
    });
    addr
}

/// The count a raw client keeps of its window: answers are echoes of
/// `len` bytes; as they come, as many new frames go out, until `calls`.
pub(crate) struct RawWindow {
    len: usize,
    calls: usize,
    sent: usize,
    done: usize,
    partial: usize,
}

impl RawWindow {
    /// The count, and how many frames to write first.
    pub(crate) fn new(len: usize, window: usize, calls: usize) -> (RawWindow, usize) {
        let first = window.min(calls);
        let count = RawWindow {
            len,
            calls,
            sent: first,
            done: 0,
            partial: 0,
        };
        (count, first)
    }

    /// `n` more bytes came back: how many new frames to write now.
    pub(crate) fn received(&mut self, n: usize) -> usize {
        self.partial += n;
        let answers = self.partial / self.len;
        self.partial %= self.len;
        self.done += answers;
        let more = answers.min(self.calls - self.sent);
        self.sent += more;
        more
    }

    /// Whether every answer is in.
    pub(crate) fn finished(&self) -> bool {
        self.done >= self.calls
    }
}

struct RawClient {
    socket: TcpStream,
    frame: Vec<u8>,
    reply: Vec<u8>,
}

impl RawClient {
    fn new(addr: &str, payload: usize) -> RawClient {
        let socket = TcpStream::connect(addr).expect("connect to the raw server");
        socket.set_nodelay(true).expect("nodelay");
        let mut frame = (payload as u32).to_be_bytes().to_vec();
        frame.extend(std::iter::repeat_n(7u8, payload));
        RawClient {
            socket,
            reply: vec![0; frame.len()],
            frame,
        }
    }

    fn round_trip(&mut self) {
        self.socket.write_all(&self.frame).expect("write");
        self.socket.read_exact(&mut self.reply).expect("read");
    }

    /// Keeps `window` frames in flight until `calls` answers are in: reads
    /// what is there and writes as many new frames as answers came, in one
    /// system call.
    fn window(&mut self, window: usize, calls: usize) {
        let (mut buf, mut out) = (vec![0u8; 64 * 1024], Vec::new());
        let (mut count, mut more) = RawWindow::new(self.frame.len(), window, calls);
        loop {
            if more > 0 {
                out.clear();
                (0..more).for_each(|_| out.extend_from_slice(&self.frame));
                self.socket.write_all(&out).expect("write");
            }
            if count.finished() {
                return;
            }
            let n = self.socket.read(&mut buf).expect("read");
            assert!(n > 0, "the raw server closed");
            more = count.received(n);
        }
    }

    fn pipelined(&mut self, depth: usize) {
        for _ in 0..depth {
            self.socket.write_all(&self.frame).expect("write");
        }
        for _ in 0..depth {
            self.socket.read_exact(&mut self.reply).expect("read");
        }
    }
}

/// Keeps `window` calls in flight until `calls` answers are in, as the raw
/// client does: after the oldest answer, takes every answer already there
/// and starts as many calls in one batch (one write).
fn rig_window(client: &Client, payload: &Payload, window: usize, calls: usize) {
    let batch = |k: usize| {
        client
            .start_batch("echo", std::iter::repeat_n(payload.clone(), k), None)
            .expect("start a batch")
    };
    let mut inflight: std::collections::VecDeque<RawPendingCall> = batch(window.min(calls)).into();
    let mut sent = inflight.len();
    while let Some(oldest) = inflight.pop_front() {
        oldest.wait().expect("echo call");
        let mut answers = 1;
        while let Some(next) = inflight.front_mut() {
            match next.wait_timeout(Duration::ZERO) {
                Ok(_) => {
                    inflight.pop_front();
                    answers += 1;
                }
                Err(Error::WaitTimeout(_)) => break,
                Err(e) => panic!("echo call: {e}"),
            }
        }
        let more = answers.min(calls - sent);
        if more > 0 {
            inflight.extend(batch(more));
            sent += more;
        }
    }
}

fn rig_server(url: &str) -> Result<rigwire_std::RunningServer, Error> {
    let mut server = Server::bind(url, Config::named("bench-rig"))?;
    server.expose_raw("echo", |_ctx, args: Payload| Ok(args))?;
    server.dispatch("echo", Dispatch::Inline)?;
    server.start()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Times `n` runs of `f` in microseconds per run, after `n / 10` warm-up runs.
fn samples(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..n / 10 {
        f();
    }
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

/// Samples of raw and rigwire, block by block; each raw block is measured
/// right before its rigwire block, so that a ratio taken within a pair of
/// blocks sees the same state of the machine.
pub(crate) struct Samples {
    pub(crate) raw: Vec<Vec<Duration>>,
    pub(crate) rig: Vec<Vec<Duration>>,
}

impl Samples {
    fn all(blocks: &[Vec<Duration>]) -> Vec<Duration> {
        let mut all: Vec<Duration> = blocks.concat();
        all.sort();
        all
    }

    /// The median over block pairs of rigwire's percentile divided by raw's:
    /// robust to the machine drifting between blocks.
    fn block_ratio(&self, p: f64, rate: bool) -> f64 {
        let mut ratios: Vec<f64> = self
            .raw
            .iter()
            .zip(&self.rig)
            .map(|(r, g)| {
                let (mut r, mut g) = (r.clone(), g.clone());
                r.sort();
                g.sort();
                let (r, g) = (percentile(&r, p), percentile(&g, p));
                if rate {
                    r / g
                } else {
                    g / r
                }
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    }
}

/// Alternates raw and rigwire blocks.
pub(crate) fn alternate(
    blocks: usize,
    per_block: usize,
    mut raw: impl FnMut(),
    mut rig: impl FnMut(),
) -> Samples {
    let mut samples_of = Samples {
        raw: Vec::new(),
        rig: Vec::new(),
    };
    for _ in 0..blocks {
        samples_of.raw.push(samples(per_block, &mut raw));
        samples_of.rig.push(samples(per_block, &mut rig));
    }
    samples_of
}

/// p50 and p99 over all samples; the p50 ratio is the median of block ratios.
pub(crate) fn latency_rows(rows: &mut Vec<Row>, what: &str, s: &Samples) {
    let (raw, rig) = (Samples::all(&s.raw), Samples::all(&s.rig));
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        let (r, g) = (percentile(&raw, p), percentile(&rig, p));
        let ratio = if p < 0.9 {
            s.block_ratio(p, false)
        } else {
            g / r
        };
        rows.push(Row {
            name: format!("{what} {label}"),
            unit: "µs",
            raw: r,
            rigwire: g,
            ratio,
            higher_is_better: false,
        });
    }
}

pub(crate) fn throughput_row(
    rows: &mut Vec<Row>,
    name: &str,
    unit: &'static str,
    per_run: f64,
    s: &Samples,
) {
    let rate = |blocks: &[Vec<Duration>]| per_run / percentile(&Samples::all(blocks), 0.5) * 1e6;
    let (r, g) = (rate(&s.raw), rate(&s.rig));
    rows.push(Row {
        name: name.to_owned(),
        unit,
        raw: r,
        rigwire: g,
        ratio: s.block_ratio(0.5, true),
        higher_is_better: true,
    });
}

/// A raw tungstenite echo server: one binary message in, the same message out.
fn raw_ws_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("bound").to_string();
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(socket) = socket else { return };
            let _ = socket.set_nodelay(true);
            thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(socket) else {
                    return;
                };
                while let Ok(msg) = ws.read() {
                    if msg.is_binary() && ws.send(msg).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// What to run, and how: `only` keeps the sections whose name contains it
/// (`TCP serial`, `TCP window`, `TCP waves`, `TCP echo`, `websocket`,
/// `smol serial`, `smol window`, `relay`, `idle`; any case), to profile one.
pub struct Options<'a> {
    /// Print JSON instead of a table.
    pub json: bool,
    /// Iterations and idle counts, as a factor of the defaults.
    pub scale: f64,
    /// Also draw the chart here.
    pub svg: Option<&'a std::path::Path>,
    /// Run only the sections whose name contains this.
    pub only: Option<&'a str>,
}

/// Runs every row (or those `only` names) and prints the report.
pub fn run(options: Options<'_>) -> Result<(), crate::Failure> {
    let Options {
        json,
        scale,
        svg,
        only,
    } = options;
    let want =
        |section: &str| only.is_none_or(|o| section.to_lowercase().contains(&o.to_lowercase()));
    let n = |base: usize| ((base as f64 * scale).ceil() as usize).max(4);
    let mut rows = Vec::new();
    let raw_addr = raw_tcp_server();
    let rig = rig_server("tcp://127.0.0.1:0")?;
    let client = Client::connect(&rig.local_url(), Config::named("bench"))?;
    let echo = |client: &Client, payload: &Payload| {
        client
            .call_raw("echo", payload.clone(), None)
            .expect("echo call");
    };

    // Serial round trips of a small call.
    let small = Payload::new(Codec::Postcard, Bytes::from(vec![7u8; 32]));
    let mut raw = RawClient::new(&raw_addr, 32 + 8); // a rigwire call frame of 32 B carries ~8 B of head
    if want("TCP serial") {
        let samples = alternate(12, n(1500), || raw.round_trip(), || echo(&client, &small));
        latency_rows(&mut rows, "TCP serial round trip", &samples);
    }

    // A window of 64 calls kept full on one connection: each side writes
    // what is ready in one system call.
    let (window, per_run) = (64, 3200);
    if want("TCP window") {
        let samples = alternate(
            6,
            n(12),
            || raw.window(window, per_run),
            || rig_window(&client, &small, window, per_run),
        );
        throughput_row(
            &mut rows,
            "TCP window of 64 kept full",
            "calls/s",
            per_run as f64,
            &samples,
        );
    }

    // The old row: waves of 64 calls, each written on its own.
    let depth = 64;
    let samples = want("TCP waves").then(|| {
        alternate(
            10,
            n(60),
            || raw.pipelined(depth),
            || {
                let calls: Vec<RawPendingCall> = (0..depth)
                    .map(|_| {
                        client
                            .start_raw("echo", small.clone(), None)
                            .expect("start")
                    })
                    .collect();
                for c in calls {
                    c.wait().expect("echo call");
                }
            },
        )
    });
    if let Some(samples) = samples {
        throughput_row(
            &mut rows,
            "TCP waves of 64 single writes",
            "calls/s",
            depth as f64,
            &samples,
        );
    }

    // Large payloads, each side on a fresh connection (the kernel's state
    // of one that carried a window of small calls slows large transfers).
    let sizes = [("1 MiB", 1 << 20, n(60)), ("16 MiB", (16 << 20) - 64, n(6))];
    for (label, size, runs) in sizes.into_iter().filter(|_| want("TCP echo")) {
        let big = Payload::new(Codec::Postcard, Bytes::from(vec![7u8; size]));
        let mut raw = RawClient::new(&raw_addr, size);
        let client = Client::connect(&rig.local_url(), Config::named("bench"))?;
        let samples = alternate(2, runs, || raw.round_trip(), || echo(&client, &big));
        client.close();
        throughput_row(
            &mut rows,
            &format!("TCP echo of {label}"),
            "MB/s",
            2.0 * size as f64 / 1e6,
            &samples,
        );
    }
    client.close();
    rig.shutdown(Duration::from_secs(1));

    // Websocket: rigwire over ws:// against raw tungstenite.
    if want("websocket") {
        let ws_addr = raw_ws_server();
        let (mut raw_ws, _) =
            tungstenite::connect(format!("ws://{ws_addr}/")).map_err(|e| Error::Connect {
                url: ws_addr.clone(),
                reason: e.to_string(),
            })?;
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = raw_ws.get_ref() {
            let _ = s.set_nodelay(true);
        }
        let ws_rig = rig_server("ws://127.0.0.1:0/bench")?;
        let ws_client = Client::connect(&ws_rig.local_url(), Config::named("bench"))?;
        let msg = tungstenite::Message::Binary(Bytes::from(vec![7u8; 40]));
        let samples = alternate(
            4,
            n(5000),
            || {
                raw_ws.send(msg.clone()).expect("ws send");
                raw_ws.read().expect("ws read");
            },
            || echo(&ws_client, &small),
        );
        latency_rows(&mut rows, "websocket serial round trip", &samples);
        ws_client.close();
        ws_rig.shutdown(Duration::from_secs(1));
    }

    // rigwire-smol against raw smol TCP.
    if want("smol serial") {
        let samples = crate::bench_smol::serial(12, n(1500))?;
        latency_rows(&mut rows, "smol TCP serial round trip", &samples);
    }
    if want("smol window") {
        use crate::bench_smol::WindowBy;
        for (by, name) in [
            (WindowBy::Batch, "smol TCP window of 64 kept full"),
            (WindowBy::Tasks, "smol TCP window, a task per call"),
        ] {
            let samples = crate::bench_smol::window(6, n(12), (window, per_run), by)?;
            throughput_row(&mut rows, name, "calls/s", per_run as f64, &samples);
        }
    }

    if want("TLS") {
        crate::bench_tls::rows(&mut rows, n)?;
    }

    let hops = match want("relay") {
        true => Some(two_hops(12, n(1500), &small)?),
        false => None,
    };

    // Idle connections: 1,000 and 10,000, the peers in another process.
    let limit = crate::bench_idle::raise_open_files_limit();
    let counts: Vec<usize> = [1000usize, 10_000]
        .iter()
        .map(|c| ((*c as f64 * scale) as usize).max(10))
        .collect();
    let idle = match want("idle") {
        true => crate::bench_idle::run(&counts)?,
        false => Vec::new(),
    };

    if let Some(path) = svg {
        let mut bars: Vec<(String, f64)> = rows
            .iter()
            .map(|r| {
                let speed = if r.higher_is_better {
                    r.ratio
                } else {
                    1.0 / r.ratio
                };
                (r.name.clone(), speed)
            })
            .collect();
        if let Some(hops) = &hops {
            bars.push((
                "relay, two hops p50".to_owned(),
                hops.raw.two_hops / hops.rigwire.two_hops,
            ));
        }
        let title = format!(
            "rigwire bench, {} (loopback; each row against raw sockets in the same run)",
            crate::bench_chart::machine()
        );
        crate::bench_chart::draw(path, &title, &bars)
            .map_err(|message| crate::Failure { code: 1, message })?;
        eprintln!("chart written to {}", path.display());
    }

    if json {
        let report = serde_json::json!({ "rows": rows, "relay": hops, "idle_memory": idle });
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
        return Ok(());
    }
    outln!("rigwire against raw sockets, same threads, same run (loopback)\n");
    outln!(
        "{:<34} {:>8} {:>14} {:>14} {:>8}",
        "",
        "unit",
        "raw",
        "rigwire",
        "ratio"
    );
    for row in &rows {
        let note = if row.higher_is_better {
            "(higher is better)"
        } else {
            "(lower is better)"
        };
        outln!(
            "{:<34} {:>8} {:>14.1} {:>14.1} {:>7.2}x  {note}",
            row.name,
            row.unit,
            row.raw,
            row.rigwire,
            row.ratio
        );
    }
    outln!();
    if let Some(hops) = &hops {
        outln!(
            "{:<34} {:>8} {:>14} {:>14} {:>8}",
            "serial round trip p50",
            "unit",
            "one hop",
            "two hops",
            "ratio"
        );
        for (name, h) in [
            ("raw, through a forwarder", &hops.raw),
            ("raw, through a smol forwarder", &hops.raw_smol),
            ("rigwire, through a relay", &hops.rigwire),
        ] {
            outln!(
                "{name:<34} {:>8} {:>14.1} {:>14.1} {:>7.2}x  (two hops / one hop)",
                "µs",
                h.one_hop,
                h.two_hops,
                h.ratio
            );
        }
        outln!(
            "two hops, rigwire / raw: {:.2}x the blocking forwarder, {:.2}x the smol forwarder",
            hops.rigwire.two_hops / hops.raw.two_hops,
            hops.rigwire.two_hops / hops.raw_smol.two_hops
        );
        outln!();
    }
    for m in &idle {
        outln!(
            "rigwire-{} server, {} idle connections: {:.0} bytes of resident memory per connection",
            m.runtime,
            m.connections,
            m.bytes_per_connection
        );
    }
    if !idle.is_empty() && limit < 10_100 {
        outln!("(this process may open {limit} files: fewer than 10,000 connections need)");
    }
    Ok(())
}

/// One hop against two hops, p50 in µs.
#[derive(Serialize)]
pub(crate) struct Hops {
    one_hop: f64,
    two_hops: f64,
    /// Median over block pairs of two hops / one hop.
    ratio: f64,
}

impl Hops {
    fn of(samples: &Samples) -> Hops {
        let p50 = |blocks: &[Vec<Duration>]| percentile(&Samples::all(blocks), 0.5);
        Hops {
            one_hop: p50(&samples.raw),
            two_hops: p50(&samples.rig),
            ratio: samples.block_ratio(0.5, false),
        }
    }
}

/// The hop comparison, for raw sockets and for rigwire.
#[derive(Serialize)]
pub(crate) struct HopRows {
    /// Raw frames, direct and through a blocking forwarder (two threads per connection).
    raw: Hops,
    /// Raw frames, direct and through a forwarder on one thread running
    /// smol's reactor and an executor, as the relay does: what forwarding
    /// costs on the relay's design before any of rigwire's work.
    raw_smol: Hops,
    /// A blocking client and echo handler, direct and through a smol relay.
    rigwire: Hops,
}

/// A raw forwarder: each connection is piped to `to` and back by two
/// blocking threads, the least work a relay can do.
fn raw_forwarder(to: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("bound").to_string();
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(down) = socket else { return };
            let Ok(up) = TcpStream::connect(&to) else {
                return;
            };
            let _ = (down.set_nodelay(true), up.set_nodelay(true));
            let (Ok(down2), Ok(up2)) = (down.try_clone(), up.try_clone()) else {
                return;
            };
            for (mut from, mut into) in [(down, up), (up2, down2)] {
                thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        if into.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    addr
}

/// A raw forwarder built as the relay is: one thread whose executor also
/// drives the reactor, a task per direction. It forwards one connection and
/// its thread ends with it (no second executor thread beside the relay's).
fn raw_smol_forwarder(to: String) -> (String, thread::JoinHandle<()>) {
    use smol::io::AsyncWriteExt;
    use smol::Async;
    use std::sync::Arc;

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("bound").to_string();
    let to: std::net::SocketAddr = to.parse().expect("an address");
    let forwarding = thread::spawn(move || {
        let tasks = smol::Executor::new();
        smol::block_on(tasks.run(async {
            let listener = Async::new(listener).expect("a non-blocking listener");
            if let Ok((down, _)) = listener.accept().await {
                let Ok(up) = Async::<TcpStream>::connect(to).await else {
                    return;
                };
                let _ = (
                    down.get_ref().set_nodelay(true),
                    up.get_ref().set_nodelay(true),
                );
                let (down, up) = (Arc::new(down), Arc::new(up));
                let mut pipes = Vec::new();
                for (from, into) in [(Arc::clone(&down), Arc::clone(&up)), (up, down)] {
                    let pipe = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        // Wait for readiness, then read once: no read
                        // that finds nothing, the least a reactor allows.
                        while from.readable().await.is_ok() {
                            let n = match from.get_ref().read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => n,
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                                Err(_) => break,
                            };
                            if (&*into).write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        // The end travels on: the other direction ends too.
                        let _ = into.get_ref().shutdown(std::net::Shutdown::Write);
                    };
                    pipes.push(tasks.spawn(pipe));
                }
                for pipe in pipes {
                    pipe.await;
                }
            }
        }));
    });
    (addr, forwarding)
}

/// The same work direct and through one more hop: raw frames through a
/// forwarder, and a blocking rigwire client calling the same echo handler
/// directly and through a smol relay (tcp on every hop, so that only the hop
/// differs).
fn two_hops(blocks: usize, per_block: usize, small: &Payload) -> Result<HopRows, Error> {
    let raw_addr = raw_tcp_server();
    let mut raw_one = RawClient::new(&raw_addr, 32 + 8);
    let mut raw_two = RawClient::new(&raw_forwarder(raw_addr.clone()), 32 + 8);
    let raw = Hops::of(&alternate(
        blocks,
        per_block,
        || raw_one.round_trip(),
        || raw_two.round_trip(),
    ));
    let (forwarder, forwarding) = raw_smol_forwarder(raw_addr);
    let mut raw_smol_two = RawClient::new(&forwarder, 32 + 8);
    let raw_smol = Hops::of(&alternate(
        blocks,
        per_block,
        || raw_one.round_trip(),
        || raw_smol_two.round_trip(),
    ));
    drop(raw_smol_two);
    let _ = forwarding.join();

    let direct = rig_server("tcp://127.0.0.1:0")?;
    let relay = rigwire_smol::RelayServer::bind(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        // Loopback, for the figures: no secrets on either side.
        rigwire_smol::RelayConfig {
            insecure_services: true,
            ..Default::default()
        },
    )?
    .start()?;
    let mut service = rigwire_std::RemoteService::new(&["rig"], Config::named("bench-rig"));
    service
        .handlers_mut()
        .expose_raw("echo", |_ctx, args: Payload| Ok(args))?
        .dispatch("echo", Dispatch::Inline)?;
    let service = service.connect(&relay.services_url())?;
    let one = Client::connect(&direct.local_url(), Config::named("bench"))?;
    let two = Client::connect(&relay.clients_url(), Config::named("bench"))?;
    let rigwire = Hops::of(&alternate(
        blocks,
        per_block,
        || {
            one.call_raw("echo", small.clone(), None)
                .expect("one-hop echo");
        },
        || {
            two.call_raw("rig.echo", small.clone(), None)
                .expect("two-hop echo");
        },
    ));
    one.close();
    two.close();
    service.close();
    smol::block_on(relay.shutdown(Duration::from_secs(1)));
    direct.shutdown(Duration::from_secs(1));
    Ok(HopRows {
        raw,
        raw_smol,
        rigwire,
    })
}
