//! The memory an idle connection costs a server, in each runtime: 1,000 and
//! 10,000 peers that completed the handshake and then say nothing. The
//! peers live in a child process (`rigwire bench-idle-peers`, hidden), so
//! that one process's file limit does not bound the count and nearly all
//! the memory measured is the server's; the bench raises its own soft limit
//! on open files to the hard one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rigwire_std::core::message::Hello;
use rigwire_std::core::Message;
use rigwire_std::{Config, Error, Keepalive};
use serde::Serialize;

/// Memory of idle server connections.
#[derive(Serialize)]
pub struct IdleMemory {
    /// The server's runtime.
    pub runtime: &'static str,
    /// Connections open and idle.
    pub connections: usize,
    /// Resident memory added per connection, in bytes.
    pub bytes_per_connection: f64,
}

/// A server that keeps idle peers: keepalive far away (the raw peers do
/// not answer pings) and room for every one of them.
fn idle_config() -> Config {
    let mut config = Config::named("idle-rig");
    config.protocol.keepalive = Some(Keepalive {
        interval: Duration::from_secs(600),
        timeout: Duration::from_secs(1800),
    });
    config.max_connections = 100_000;
    config.max_handshaking = 100_000;
    config
}

fn resident_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0)
}

/// Raises this process's soft limit on open files to its hard limit;
/// returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            eprintln!("cannot raise the open files limit: {e}");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Measures both runtimes at each count in `counts`, each server in a
/// fresh process of its own (`rigwire bench-idle-server`, hidden), so that
/// what one measurement freed does not count for or against the next.
pub fn run(counts: &[usize]) -> Result<Vec<IdleMemory>, Error> {
    let mut results = Vec::new();
    for &count in counts {
        for runtime in ["std", "smol"] {
            results.push(in_child(runtime, count)?);
        }
    }
    Ok(results)
}

fn in_child(runtime: &'static str, count: usize) -> Result<IdleMemory, Error> {
    let failed = |reason: String| Error::Connect {
        url: format!("bench-idle-server {runtime} {count}"),
        reason,
    };
    let exe = std::env::current_exe().map_err(|e| failed(e.to_string()))?;
    let out = Command::new(exe)
        .args(["bench-idle-server", runtime, &count.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            failed(format!(
                "cannot start this program again, to measure in a fresh process: {e} \
                 (was it rebuilt or removed while the bench ran?)"
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let (Some(connections), Some(bytes)) = (fields.next(), fields.next()) else {
        return Err(failed(format!("no measurement: {text:?}")));
    };
    Ok(IdleMemory {
        runtime,
        connections: connections.parse().map_err(|_| failed(text.to_string()))?,
        bytes_per_connection: bytes.parse().map_err(|_| failed(text.to_string()))?,
    })
}

/// The child process that holds one server: starts it in `runtime` (`std`
/// or `smol`), has `count` idle peers connect from a process of their own,
/// and prints how many connected and the resident bytes each added.
pub fn server(runtime: &str, count: usize) -> Result<(), Error> {
    raise_open_files_limit();
    let measured = match runtime {
        "std" => {
            let server = rigwire_std::Server::bind("tcp://127.0.0.1:0", idle_config())?.start()?;
            let url = server.local_url();
            let m = measure("std", count, &url, || server.peers().len())?;
            server.abort();
            m
        }
        _ => {
            let server = rigwire_smol::Server::bind("tcp://127.0.0.1:0", idle_config())?.start()?;
            let url = server.local_url();
            let m = measure("smol", count, &url, || server.peers().len())?;
            smol::block_on(server.abort());
            m
        }
    };
    outln!(
        "{} {:.0}",
        measured.connections,
        measured.bytes_per_connection
    );
    Ok(())
}

fn measure(
    runtime: &'static str,
    count: usize,
    url: &str,
    peers: impl Fn() -> usize,
) -> Result<IdleMemory, Error> {
    let before = resident_bytes();
    let mut child = spawn_peers(url, count)?;
    let until = Instant::now() + Duration::from_secs(60);
    while peers() < count && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let connected = peers();
    // Let the server settle: buffers of the handshake released, and (std)
    // connections idle for `PARK_AFTER` given to the parker, as every idle
    // connection of a long-running server is.
    std::thread::sleep(rigwire_std::core::link::PARK_AFTER + Duration::from_millis(500));
    let after = resident_bytes();
    drop(child.stdin.take()); // the peers hang up
    let _ = child.wait();
    let until = Instant::now() + Duration::from_secs(60);
    while peers() > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    if connected < count {
        eprintln!("{runtime}: only {connected} of {count} idle peers connected");
    }
    Ok(IdleMemory {
        runtime,
        connections: connected,
        bytes_per_connection: (after - before) / connected.max(1) as f64,
    })
}

/// Starts `rigwire bench-idle-peers URL COUNT` and waits until it says its
/// peers are connected.
fn spawn_peers(url: &str, count: usize) -> Result<Child, Error> {
    let exe = std::env::current_exe().map_err(|e| Error::Connect {
        url: url.to_owned(),
        reason: format!("cannot find this program to start the peers: {e}"),
    })?;
    let mut child = Command::new(exe)
        .args(["bench-idle-peers", url, &count.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Connect {
            url: url.to_owned(),
            reason: format!("cannot start the peers: {e}"),
        })?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    if line.trim() != "ready" {
        let _ = child.kill();
        return Err(Error::Connect {
            url: url.to_owned(),
            reason: format!("the idle peers did not start: {line:?}"),
        });
    }
    Ok(child)
}

/// The child process: opens `count` connections to `url`, completes the
/// handshake on each (a `Hello` each way), says `ready`, and holds them
/// until its standard input closes.
pub fn peers(url: &str, count: usize) -> Result<(), Error> {
    raise_open_files_limit();
    let addr = url.trim_start_matches("tcp://");
    let hello = Message::Hello(Hello {
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
    let failed = |e: std::io::Error| Error::Connect {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let mut s = TcpStream::connect(addr).map_err(failed)?;
        s.write_all(&framed).map_err(failed)?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(failed)?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).map_err(failed)?;
        sockets.push(s);
    }
    outln!("ready");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}
