//! The `rigwire` command: serve a demo rig, call it, ping it, list its
//! methods, run the demo and the benchmarks.
//!
//! Exit codes: 0 success; 1 the call failed (remote error, deadline); 2 the
//! connection failed (cannot connect, authentication, version, rejected) or
//! the command line is wrong.

mod bench;
mod bench_smol;
mod demo;
mod rig;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rigwire_std::core::ExposedMethod;
use rigwire_std::{json_payload, Client, Config, Error, Server};

#[derive(Parser)]
#[command(
    name = "rigwire",
    version,
    about = "Calls between the computers of a lab experiment."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the shared secret comes from: a file, or RIGWIRE_SECRET. Never an argument.
#[derive(clap::Args)]
struct SecretArgs {
    /// Read the shared secret from this file (else from RIGWIRE_SECRET, if set).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a demo rig (echo, add, sleep, exp.*) until Ctrl-C or SIGTERM.
    Serve {
        /// URL to listen on (tcp://, unix://, ws://); repeat for several. Port 0 picks a free port.
        #[arg(
            long = "listen",
            value_name = "URL",
            default_value = "tcp://127.0.0.1:7400"
        )]
        listen: Vec<String>,
        /// The rig's name, as peers see it.
        #[arg(long, default_value = "rig")]
        name: String,
        #[command(flatten)]
        secret: SecretArgs,
    },
    /// Call METHOD with JSON arguments and print the JSON result.
    Call {
        /// The peer's URL.
        url: String,
        /// The method to call.
        method: String,
        /// Arguments as JSON (default null).
        #[arg(default_value = "null")]
        args: String,
        /// Give up after this many seconds (the peer is told to cancel).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        #[command(flatten)]
        secret: SecretArgs,
    },
    /// Measure round trips to a peer.
    Ping {
        /// The peer's URL.
        url: String,
        /// How many pings.
        #[arg(long, default_value_t = 4)]
        count: u32,
        #[command(flatten)]
        secret: SecretArgs,
    },
    /// List the methods a peer exposes.
    Methods {
        /// The peer's URL.
        url: String,
        #[command(flatten)]
        secret: SecretArgs,
    },
    /// Run a whole experiment on loopback rigs and print its timeline.
    Demo,
    /// Measure rigwire against raw sockets, in one run.
    Bench {
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
        /// Scale the number of iterations (1.0 = default).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let code = match err {
            Error::Remote(_)
            | Error::DeadlineExceeded
            | Error::Busy(_)
            | Error::TooLarge { .. }
            | Error::Echo(_) => 1,
            _ => 2,
        };
        let message = match &err {
            Error::Remote(e) => match &e.detail {
                Some(detail) => format!("{}: {}\n{detail}", e.kind, e.message),
                None => format!("{}: {}", e.kind, e.message),
            },
            other => other.to_string(),
        };
        Failure { code, message }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RIGWIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, plain text for logs and scripts.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let outcome = match cli.command {
        Command::Serve {
            listen,
            name,
            secret,
        } => serve(&listen, &name, &secret),
        Command::Call {
            url,
            method,
            args,
            timeout,
            secret,
        } => call(&url, &method, &args, timeout, &secret),
        Command::Ping { url, count, secret } => ping(&url, count, &secret),
        Command::Methods { url, secret } => methods(&url, &secret),
        Command::Demo => demo::run().map_err(Failure::from),
        Command::Bench { json, scale } => bench::run(json, scale).map_err(Failure::from),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("rigwire: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn config(name: &str, secret: &SecretArgs) -> Result<Config, Failure> {
    let mut config = Config::named(name);
    let usage = |message: String| Failure { code: 2, message };
    if let Some(path) = &secret.secret_file {
        config.protocol.secret =
            Some(rigwire_std::secret_from_file(path).map_err(|e| usage(e.to_string()))?);
    } else if let Some(value) = std::env::var_os("RIGWIRE_SECRET") {
        config = config
            .secret(value.into_encoded_bytes())
            .map_err(|e| usage(format!("RIGWIRE_SECRET: {e}")))?;
    }
    Ok(config)
}

fn serve(listen: &[String], name: &str, secret: &SecretArgs) -> Result<(), Failure> {
    let config = config(name, secret)?;
    // Before anything is printed: a script may signal us as soon as it reads
    // the first line, and the default action would kill us ungracefully.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .map_err(|e| Failure {
        code: 2,
        message: format!("cannot watch for signals: {e}"),
    })?;

    let mut running = Vec::new();
    for url in listen {
        let mut server = Server::bind(url, config.clone())?;
        rig::expose_demo_rig(&mut server, None)?;
        server.on_connect(|peer| tracing::info!(peer = %peer.name(), "connected"));
        server
            .on_disconnect(|peer, why| tracing::info!(peer = %peer.name(), "disconnected: {why}"));
        running.push(server.start()?);
    }
    let mut stdout = std::io::stdout().lock();
    for server in &running {
        let _ = writeln!(stdout, "listening {}", server.local_url());
    }
    let _ = stdout.flush();
    drop(stdout);
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    for server in running {
        server.shutdown(Duration::from_secs(5));
    }
    Ok(())
}

fn connect(url: &str, secret: &SecretArgs) -> Result<Client, Failure> {
    Ok(Client::connect(url, config("rigwire-cli", secret)?)?)
}

fn call(
    url: &str,
    method: &str,
    args: &str,
    timeout: Option<f64>,
    secret: &SecretArgs,
) -> Result<(), Failure> {
    let args = json_payload(args).map_err(|e| Failure {
        code: 2,
        message: format!("the arguments are not JSON: {e}"),
    })?;
    let timeout = match timeout {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(Failure {
                code: 2,
                message: format!("--timeout must be a positive number of seconds, got {s}"),
            })
        }
        None => None,
    };
    let client = connect(url, secret)?;
    let result = client
        .start_raw(method, args, timeout)?
        .wait()
        .map_err(|e| match (e, timeout) {
            (Error::DeadlineExceeded, Some(t)) => Failure {
                code: 1,
                message: format!("deadline exceeded: no answer within {} s", t.as_secs_f64()),
            },
            (e, _) => e.into(),
        })?;
    let text = String::from_utf8_lossy(&result.bytes);
    println!("{text}");
    client.close();
    Ok(())
}

fn ping(url: &str, count: u32, secret: &SecretArgs) -> Result<(), Failure> {
    let client = connect(url, secret)?;
    let mut rtts = Vec::new();
    for _ in 0..count.max(1) {
        let rtt = client.ping()?;
        println!("rtt {:.3} ms", rtt.as_secs_f64() * 1e3);
        rtts.push(rtt);
    }
    rtts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "min/median/max = {:.3}/{:.3}/{:.3} ms over {} pings",
        ms(rtts[0]),
        ms(rtts[rtts.len() / 2]),
        ms(rtts[rtts.len() - 1]),
        rtts.len()
    );
    client.close();
    Ok(())
}

fn methods(url: &str, secret: &SecretArgs) -> Result<(), Failure> {
    let client = connect(url, secret)?;
    let reply = client.call_raw(
        rigwire_std::core::INTROSPECTION_METHOD,
        json_payload("null")?,
    )?;
    let methods: Vec<ExposedMethod> = reply.decode().map_err(Error::from)?;
    for m in methods {
        if m.aliases.is_empty() {
            println!("{}", m.name);
        } else {
            println!("{} (aliases: {})", m.name, m.aliases.join(", "));
        }
    }
    client.close();
    Ok(())
}
