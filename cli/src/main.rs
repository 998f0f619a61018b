//! The `rigwire` command: serve a demo rig (listening, or dialing out to a
//! relay), run a relay, call, ping, list methods, run the demo and the
//! benchmarks.
//!
//! Exit codes: 0 success; 1 the call failed (remote error, deadline); 2 the
//! connection failed (cannot connect, authentication, version, rejected) or
//! the command line is wrong.

/// `println!` for what a command prints: once the reader has gone
/// (`rigwire ping URL | head -1`), the command ends quietly, as any Unix
/// tool does, where `println!` panicked; another failure to write is told
/// on stderr, with exit status 1.
macro_rules! outln {
    () => { $crate::out(format_args!("")) };
    ($($arg:tt)*) => { $crate::out(format_args!($($arg)*)) };
}

mod bench;
mod bench_chart;
mod bench_idle;
mod bench_smol;
mod bench_tls;
mod conform;
mod control;
mod demo;
mod ibl;
mod relay;
mod rig;
mod secret;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rigwire_std::core::{ExposedMethod, TlsSettings, Trust};
use rigwire_std::{json_payload, Client, Codec, Config, Error, Payload, Server};

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

/// The largest message this side takes.
#[derive(clap::Args, Clone, Copy, Default)]
struct FrameArgs {
    /// The largest message, in bytes, this side takes (default 16 MiB). A
    /// connection keeps the smaller of its two sides' limits: raise it on both.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(4096..))]
    max_frame: Option<u32>,
}

impl FrameArgs {
    fn apply(self, config: Config) -> Config {
        match self.max_frame {
            Some(bytes) => config.max_frame(bytes),
            None => config,
        }
    }
}

/// How to trust a TLS peer (`tls://`, `wss://`); the system's roots unless one is given.
#[derive(clap::Args, Clone, Default)]
struct TrustArgs {
    /// For tls:// and wss://: trust exactly the certificate with this
    /// fingerprint (`sha256:…`, as `rigwire cert new` and `serve` print it).
    #[arg(long, value_name = "sha256:HEX", conflicts_with = "ca")]
    pin: Option<String>,
    /// For tls:// and wss://: trust certificates issued by the authorities
    /// in this PEM file.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

/// The certificate a `tls://` or `wss://` listener presents.
#[derive(clap::Args, Clone, Default)]
struct IdentityArgs {
    /// For tls:// and wss:// listeners: the certificate chain (PEM), as
    /// `rigwire cert new` writes it.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

/// The TLS settings of a command's identity and trust options.
fn tls_settings(identity: &IdentityArgs, trust: &TrustArgs) -> TlsSettings {
    TlsSettings {
        cert: identity.cert.clone(),
        key: identity.key.clone(),
        trust: match (&trust.pin, &trust.ca) {
            (Some(pin), _) => Trust::Pin(pin.clone()),
            (None, Some(ca)) => Trust::Ca(ca.clone()),
            (None, None) => Trust::SystemRoots,
        },
        server_name: None,
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve a demo rig (echo, add, sleep, exp.*) until Ctrl-C or SIGTERM.
    Serve {
        /// URL to listen on (tcp://, tls://, unix://, ws://, wss://); repeat for several. Port 0 picks
        /// a free port. Default tcp://127.0.0.1:7400, or none with --via.
        #[arg(long = "listen", value_name = "URL")]
        listen: Vec<String>,
        /// The rig's name, as peers see it.
        #[arg(long, default_value = "rig")]
        name: String,
        /// Dial out to a relay's services URL and serve through it (with --as).
        #[arg(long, value_name = "RELAY_URL", requires = "service_name")]
        via: Option<String>,
        /// The service name to register at the relay; callers call NAME.method.
        #[arg(long = "as", value_name = "NAME", requires = "via")]
        service_name: Option<String>,
        /// Which runtime serves: the blocking `std` or the async `smol`.
        #[arg(long, value_enum, default_value_t = Runtime::Std)]
        runtime: Runtime,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        identity: IdentityArgs,
        /// How to trust a relay reached with --via over tls:// or wss://.
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        frame: FrameArgs,
    },
    /// Run a relay: clients call NAME.method, services dial in and register NAME.
    Relay {
        /// URL clients connect to (tcp://, unix://, ws://). Port 0 picks a free port.
        #[arg(long, value_name = "URL", default_value = "tcp://127.0.0.1:7500")]
        clients: String,
        /// URL remote services dial (usually ws:// to pass firewalls).
        #[arg(
            long,
            value_name = "URL",
            default_value = "ws://127.0.0.1:7501/services"
        )]
        services: String,
        /// Accept only these service names (repeat); default: any.
        #[arg(long = "allow", value_name = "NAME")]
        allow: Vec<String>,
        /// Cap every forwarded call at this many seconds.
        #[arg(long, value_name = "SECONDS", value_parser = seconds)]
        max_forward_timeout: Option<f64>,
        /// The clients' secret (else RIGWIRE_SECRET, if set).
        #[command(flatten)]
        secret: SecretArgs,
        /// The services' secret, from this file (else RIGWIRE_SERVICE_SECRET, if set).
        #[arg(long, value_name = "FILE")]
        service_secret_file: Option<PathBuf>,
        /// Let services register without a secret (anyone who reaches the
        /// services URL could then register a service and forge its answers).
        #[arg(long)]
        insecure_services: bool,
        /// The certificate both URLs present when they are tls:// or wss://.
        #[command(flatten)]
        identity: IdentityArgs,
        #[command(flatten)]
        frame: FrameArgs,
    },
    /// Call METHOD with JSON arguments and print the JSON result.
    Call {
        /// The peer's URL; a relay's clients URL ending in `#NAME` calls the
        /// service NAME registered there (`tcp://relay:7500#data add 1 2`).
        url: String,
        /// The method to call.
        method: String,
        /// Arguments as JSON (default null). Several are sent as one JSON
        /// array, as Python's `call(name, *args)` sends them: `add 1 2`
        /// sends `[1, 2]`, the same as `add '[1, 2]'`.
        #[arg(num_args = 0.., allow_negative_numbers = true)]
        args: Vec<String>,
        /// Send the bytes of FILE (`-`: standard input) as the one argument,
        /// in the bytes codec, instead of JSON. A byte-string result is
        /// written out as is (summarised on a terminal).
        #[arg(long, value_name = "FILE", conflicts_with = "args")]
        bytes: Option<std::path::PathBuf>,
        /// Give up after this many seconds (the peer is told to cancel).
        #[arg(long, value_name = "SECONDS", value_parser = seconds)]
        timeout: Option<f64>,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        frame: FrameArgs,
    },
    /// Measure round trips to a peer.
    Ping {
        /// The peer's URL; with `#NAME` at a relay, the round trip to that
        /// service through the relay (a call of its clock).
        url: String,
        /// How many pings (at least one).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
        count: u32,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// List the methods a peer exposes.
    Methods {
        /// The peer's URL.
        url: String,
        /// At a relay's clients URL: the service whose methods to list (as
        /// `SERVICE.method`); without it, a relay lists its services.
        service: Option<String>,
        #[command(flatten)]
        secret: SecretArgs,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Speak iblutil.io.net: a Rust rig among Python rigs, or one message to one.
    Ibl {
        #[command(subcommand)]
        command: IblCommand,
    },
    /// Make shared secrets.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Serve a web page to watch and drive rigs: states, round trips,
    /// clock offsets, the lifecycle of all of them, calls, a live log.
    Control {
        /// Where the page is served: http://host:port, or https:// with
        /// --cert and --key (loopback by default: the page drives experiments).
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
        listen: String,
        /// A rig to control, as NAME=URL (repeat); a relay's clients URL
        /// ending in `#SERVICE` is the service registered there.
        #[arg(long = "rig", value_name = "NAME=URL")]
        rigs: Vec<String>,
        /// A TOML file of rigs, in order: `NAME = "URL"`, or `[NAME]` with
        /// `url` and optionally `secret_file`, `pin` or `ca` (files relative
        /// to it).
        #[arg(long = "rigs", value_name = "FILE")]
        rigs_file: Option<PathBuf>,
        /// Control the services registered at this relay (its clients URL),
        /// and each one that registers there later (looked for every 2 s).
        #[arg(long, value_name = "URL")]
        relay: Option<String>,
        /// Read the page's access token from this file (default: a new random one).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        secret: SecretArgs,
        /// How to trust rigs reached over tls:// or wss://.
        #[command(flatten)]
        trust: TrustArgs,
        /// The certificate an https:// page presents.
        #[command(flatten)]
        identity: IdentityArgs,
    },
    /// Make TLS certificates for tls:// and wss:// servers.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Test an implementation of the protocol against the spec, one case per
    /// rule (spec/PROTOCOL.md §11). Exit 1 if any case fails.
    Conform {
        #[command(subcommand)]
        side: ConformSide,
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
        /// Also draw the rows as a bar chart into this SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Run only the sections whose name contains this (`TCP serial`, `TCP
        /// window`, `TCP waves`, `TCP echo`, `websocket`, `smol serial`, `smol
        /// window`, `TLS`, `relay`, `idle`; any case): to profile one of them.
        #[arg(long, value_name = "SECTION")]
        only: Option<String>,
    },
    /// A server of `rigwire bench`'s idle connections, in a process of its own.
    #[command(hide = true)]
    BenchIdleServer {
        /// `std` or `smol`.
        runtime: String,
        /// How many idle peers to measure.
        count: usize,
    },
    /// The idle peers of `rigwire bench`, in a process of their own.
    #[command(hide = true)]
    BenchIdlePeers {
        /// The server's URL.
        url: String,
        /// How many connections to open and hold.
        count: usize,
    },
}

/// A rigwire runtime, for commands that can run on either.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Runtime {
    /// rigwire-std: threads and blocking sockets.
    Std,
    /// rigwire-smol: async tasks on smol.
    Smol,
}

#[derive(Subcommand)]
enum ConformSide {
    /// Dial a server under test (exposing the conformance rig: echo, add,
    /// sleep) and run one case per rule, each on a fresh connection.
    Server {
        /// The server's URL.
        url: String,
        #[command(flatten)]
        secret: SecretArgs,
        /// Print one JSON report instead of a line per case.
        #[arg(long)]
        json: bool,
        /// Run only this case (repeat for several).
        #[arg(long = "case", value_name = "NAME")]
        cases: Vec<String>,
        /// The URL is a relay's clients URL: reach the conformance rig as the
        /// service NAME registered there (NAME.echo, ...), two hops away.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Play the server for a client under test, which runs the script of
    /// spec §11.2; prints `listening URL` first.
    Client {
        /// Where to listen (tcp://, unix://, ws://; port 0 picks a free port).
        #[arg(long, value_name = "URL")]
        listen: String,
        #[command(flatten)]
        secret: SecretArgs,
        /// Print one JSON report instead of a line per case.
        #[arg(long)]
        json: bool,
        /// Seconds to wait for each of the script's connections.
        #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = seconds)]
        wait: f64,
        #[command(flatten)]
        identity: IdentityArgs,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// A new self-signed certificate and key, `NAME.crt` and `NAME.key`
    /// (readable by its owner only), for a tls:// or wss:// server; prints
    /// the fingerprint clients pin with --pin.
    New {
        /// The server's name; the certificate also names each --host.
        #[arg(long)]
        name: String,
        /// More host names or IP addresses the certificate names (for
        /// clients that check names, with --ca).
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// The folder to write into (default: the current one). Existing
        /// files are not overwritten.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// A new random secret (32 bytes, hex): written to FILE, readable by its
    /// owner only, or printed when no FILE is given.
    New {
        /// Where to write it (refused if the file exists).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum IblCommand {
    /// Serve as an iblutil rig: echo, print and answer each message, until Ctrl-C or SIGTERM.
    Rig {
        /// udp://host:port or tcp://host:port (default port 11001; port 0 picks a free one).
        #[arg(long, value_name = "URL", default_value = "udp://127.0.0.1:11001")]
        listen: String,
        /// The rig's name, reported in its info.
        #[arg(long, default_value = "rigwire-rig")]
        name: String,
    },
    /// Send one message, wait for its echo, then print what comes back.
    Send {
        /// The rig's URL (udp:// or tcp://).
        url: String,
        /// init, start, stop, interrupt, cleanup, status, info, alyx, error, or the event number.
        event: String,
        /// The fields after the event: a JSON array, or one JSON value.
        #[arg(default_value = "null")]
        fields: String,
        /// Seconds to wait for answers after the echo.
        #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = seconds)]
        wait: f64,
    },
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

/// A command line's number of seconds: `5`, `2.5`, or with a unit as
/// people write it: `500ms`, `30s`, `2m`, `1h`. What it may not be (NaN,
/// negative, zero for a timeout) is [`flag_seconds`]'s to say.
fn seconds(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, scale) = [
        ("ms", 1e-3),
        ("min", 60.0),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ]
    .into_iter()
    .find_map(|(unit, scale)| Some((text.strip_suffix(unit)?, scale)))
    .unwrap_or((text, 1.0));
    match number.trim().parse::<f64>() {
        Ok(n) => Ok(n * scale),
        Err(_) => Err("not a number of seconds: write 5, 2.5, 500ms, 30s, 2m or 1h".into()),
    }
}

/// `value` seconds, given with `flag`: refused (exit 2, saying why) unless
/// it is a number of seconds a `Duration` holds (not NaN, not negative, not
/// beyond 2^64) and, when `positive`, above zero.
fn flag_seconds(flag: &str, value: f64, positive: bool) -> Result<Duration, Failure> {
    match Duration::try_from_secs_f64(value) {
        Ok(seconds) if !(positive && seconds.is_zero()) => Ok(seconds),
        _ => Err(Failure {
            code: 2,
            message: format!(
                "{flag} must be a {} number of seconds (at most 2^64), got {}",
                if positive { "positive" } else { "non-negative" },
                // 1e300 as it was written, not as three hundred digits.
                if value.abs() >= 1e15 {
                    format!("{value:e}")
                } else {
                    value.to_string()
                }
            ),
        }),
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let code = match err {
            Error::Remote(_)
            | Error::DeadlineExceeded
            | Error::Busy(_)
            | Error::TooLarge { .. }
            | Error::Echo(_)
            | Error::Ibl(
                rigwire_std::core::ibl::IblError::Echo { .. }
                | rigwire_std::core::ibl::IblError::Timeout { .. },
            ) => 1,
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
    let default_level = if matches!(
        cli.command,
        Command::Serve { .. }
            | Command::Relay { .. }
            | Command::Ibl { .. }
            | Command::Control { .. }
    ) {
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
            via,
            service_name,
            runtime: Runtime::Std,
            secret,
            identity,
            trust,
            frame,
        } => serve(
            &listen,
            &name,
            via.zip(service_name),
            &secret,
            tls_settings(&identity, &trust),
            frame,
        ),
        Command::Serve {
            listen,
            name,
            via,
            runtime: Runtime::Smol,
            secret,
            identity,
            frame,
            ..
        } => match via {
            Some(_) => Err(Failure {
                code: 2,
                message: "--via runs on the std runtime; leave out --runtime smol".into(),
            }),
            None => serve_smol(
                &listen,
                &name,
                &secret,
                tls_settings(&identity, &TrustArgs::default()),
                frame,
            ),
        },
        Command::Relay {
            clients,
            services,
            allow,
            max_forward_timeout,
            secret,
            service_secret_file,
            insecure_services,
            identity,
            frame,
        } => relay::run(relay::Options {
            tls: tls_settings(&identity, &TrustArgs::default()),
            clients,
            services,
            allow,
            max_forward_timeout,
            client_secret: secret_of(&secret.secret_file, "RIGWIRE_SECRET"),
            service_secret: secret_of(&service_secret_file, "RIGWIRE_SERVICE_SECRET"),
            insecure_services,
            max_frame: frame.max_frame,
        }),
        Command::Call {
            url,
            method,
            args,
            bytes,
            timeout,
            secret,
            trust,
            frame,
        } => call(
            &url,
            &method,
            call_args(&args, bytes.as_deref()),
            timeout,
            &Access { secret, trust },
            frame,
        ),
        Command::Ping {
            url,
            count,
            secret,
            trust,
        } => ping(&url, count, &Access { secret, trust }),
        Command::Methods {
            url,
            service,
            secret,
            trust,
        } => methods(&url, service.as_deref(), &Access { secret, trust }),
        Command::Ibl {
            command: IblCommand::Rig { listen, name },
        } => ibl::rig(&listen, &name),
        Command::Ibl {
            command:
                IblCommand::Send {
                    url,
                    event,
                    fields,
                    wait,
                },
        } => ibl::send(&url, &event, &fields, wait),
        Command::Secret {
            command: SecretCommand::New { file },
        } => secret::new(file.as_deref()),
        Command::Cert {
            command: CertCommand::New { name, hosts, out },
        } => secret::new_cert(&name, &hosts, &out),
        Command::Control {
            listen,
            rigs,
            rigs_file,
            relay,
            token_file,
            secret,
            trust,
            identity,
        } => {
            let mut config = Config::named("control");
            config.tls = tls_settings(&identity, &trust);
            control::run(control::Options {
                listen,
                rigs,
                rigs_file,
                relay,
                token_file,
                secret: secret_of(&secret.secret_file, "RIGWIRE_SECRET"),
                config,
            })
        }
        Command::Conform { side } => conform(side),
        Command::Demo => demo::run().map_err(Failure::from),
        Command::Bench {
            json,
            scale,
            svg,
            only,
        } => bench::run(bench::Options {
            json,
            scale,
            svg: svg.as_deref(),
            only: only.as_deref(),
        }),
        Command::BenchIdleServer { runtime, count } => {
            bench_idle::server(&runtime, count).map_err(Failure::from)
        }
        Command::BenchIdlePeers { url, count } => {
            bench_idle::peers(&url, count).map_err(Failure::from)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("rigwire: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Where one secret comes from: a file, else an environment variable.
struct SecretSource {
    file: Option<PathBuf>,
    env: &'static str,
}

fn secret_of(file: &Option<PathBuf>, env: &'static str) -> SecretSource {
    SecretSource {
        file: file.clone(),
        env,
    }
}

impl SecretSource {
    /// The secret, if one is configured.
    fn load(&self) -> Result<Option<rigwire_std::core::Secret>, Failure> {
        let usage = |message: String| Failure { code: 2, message };
        if let Some(path) = &self.file {
            return Ok(Some(
                rigwire_std::secret_from_file(path).map_err(|e| usage(e.to_string()))?,
            ));
        }
        match std::env::var_os(self.env) {
            Some(value) => rigwire_std::core::Secret::new(value.into_encoded_bytes())
                .map(Some)
                .map_err(|e| usage(format!("{}: {e}", self.env))),
            None => Ok(None),
        }
    }
}

/// Runs `rigwire conform`; exit 1 when a case failed.
fn conform(side: ConformSide) -> Result<(), Failure> {
    let usage = |message: String| Failure { code: 2, message };
    let code = match side {
        ConformSide::Server {
            url,
            secret,
            json,
            cases,
            service,
            trust,
        } => {
            let secret = secret_of(&secret.secret_file, "RIGWIRE_SECRET").load()?;
            let tls = tls_settings(&IdentityArgs::default(), &trust);
            conform::test_server(&url, secret, tls, json, &cases, service).map_err(usage)?
        }
        ConformSide::Client {
            listen,
            secret,
            json,
            wait,
            identity,
        } => {
            let secret = secret_of(&secret.secret_file, "RIGWIRE_SECRET").load()?;
            let wait = flag_seconds("--wait", wait, false)?;
            let tls = tls_settings(&identity, &TrustArgs::default());
            conform::test_client(&listen, secret, tls, json, wait).map_err(usage)?
        }
    };
    match code {
        0 => Ok(()),
        code => Err(Failure {
            code,
            message: "some cases failed".into(),
        }),
    }
}

/// What a client command needs to be let in: the shared secret, and how
/// to trust a TLS server.
struct Access {
    secret: SecretArgs,
    trust: TrustArgs,
}

fn config(name: &str, secret: &SecretArgs, tls: TlsSettings) -> Result<Config, Failure> {
    let mut config = Config::named(name);
    config.protocol.secret = secret_of(&secret.secret_file, "RIGWIRE_SECRET").load()?;
    config.tls = tls;
    Ok(config)
}

/// The `listening` line of a server: its URL (and what it is for, on a
/// relay), and the fingerprint to pin when it serves TLS.
pub(crate) fn listening_line(url: &str, fingerprint: Option<String>) -> String {
    match fingerprint {
        Some(fingerprint) => format!("listening {url} fingerprint {fingerprint}"),
        None => format!("listening {url}"),
    }
}

/// Installs SIGINT/SIGTERM handling. Call before printing anything: a script
/// may signal us as soon as it reads the first line, and the default action
/// would kill us ungracefully.
fn watch_signals() -> Result<signal_hook::iterator::Signals, Failure> {
    signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| Failure {
            code: 2,
            message: format!("cannot watch for signals: {e}"),
        })
}

/// Writes one line of a command's output ([`outln!`]).
fn out(line: std::fmt::Arguments<'_>) {
    match write_out(&[line]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("rigwire: cannot write to standard output: {e}");
            std::process::exit(1);
        }
    }
}

/// Prints what a launcher reads (the listening URLs, a conformance case's
/// line), whether or not anyone still reads it: unlike [`outln!`], a reader
/// that has gone does not end a process that serves on.
fn announce(lines: &[String]) {
    let _ = write_out(lines);
}

/// Writes `lines` on stdout and flushes them at once (a script waits for them).
fn write_out(lines: &[impl std::fmt::Display]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()
}

fn serve(
    listen: &[String],
    name: &str,
    via: Option<(String, String)>,
    secret: &SecretArgs,
    tls: TlsSettings,
    frame: FrameArgs,
) -> Result<(), Failure> {
    let config = frame.apply(config(name, secret, tls)?);
    let mut signals = watch_signals()?;
    let default_listen = ["tcp://127.0.0.1:7400".to_owned()];
    let listen = if listen.is_empty() && via.is_none() {
        &default_listen[..]
    } else {
        listen
    };
    let mut running = Vec::new();
    for url in listen {
        let mut server = Server::bind(url, config.clone())?;
        rig::expose_demo_rig(server.handlers_mut(), rig::DemoHooks::default())?;
        server.on_connect(|peer| tracing::info!(peer = %peer.name(), "connected"));
        server.on_disconnect(
            |peer, why| tracing::info!(peer = %peer.name(), "disconnected: {}", why.reason()),
        );
        running.push(server.start()?);
    }
    let lines: Vec<String> = running
        .iter()
        .map(|s| listening_line(&s.local_url(), s.tls_fingerprint()))
        .collect();
    announce(&lines);
    let (service, signalled) = match via {
        Some((relay_url, name)) => match register_via(&relay_url, &name, &config, &mut signals)? {
            Ok(service) => (Some(service), None),
            Err(signal) => (None, Some(signal)),
        },
        None => (None, None),
    };
    if let Some(signal) = signalled.or_else(|| signals.forever().next()) {
        tracing::info!(signal, "shutting down");
    }
    // Calls in progress finish, through the relay as on the listeners.
    if let Some(service) = service {
        service.shutdown(Duration::from_secs(5));
    }
    for server in running {
        server.shutdown(Duration::from_secs(5));
    }
    Ok(())
}

/// Registers the demo rig at the relay as `name`, and says so. A relay not
/// up yet (or a network not yet there) is tried again by the reconnect
/// rules until it answers, as rt-cloud's services wait for their server:
/// the service may start first. A failure no wait mends (a wrong secret,
/// a name the relay refuses) ends the command at once. `Err` is a signal
/// that came meanwhile: nothing is left to shut down but the listeners.
fn register_via(
    relay_url: &str,
    name: &str,
    config: &Config,
    signals: &mut signal_hook::iterator::Signals,
) -> Result<Result<rigwire_std::RunningService, i32>, Failure> {
    let mut round = rigwire_std::core::Reconnect::default().forever().start();
    let mut told = String::new();
    loop {
        let mut service = rigwire_std::RemoteService::new(&[name], config.clone());
        rig::expose_demo_rig(service.handlers_mut(), rig::DemoHooks::default())?;
        let failed = match service.connect(relay_url) {
            Ok(service) => {
                announce(&[format!("registered {name} via {relay_url}")]);
                return Ok(Ok(service));
            }
            Err(e) => e,
        };
        // A relay that answered and refused (a name taken or not allowed)
        // is up: waiting is for one that is not.
        let refused = matches!(failed, Error::Remote(_));
        let Some(wait) = (!refused)
            .then(|| round.next(&failed, Instant::now()))
            .flatten()
        else {
            return Err(failed.into());
        };
        // Told once, and again only when the failure changes.
        let failure = failed.to_string();
        if failure != told {
            tracing::warn!("not registered at the relay yet: {failure}; trying again until it is (Ctrl-C stops)");
        } else {
            tracing::debug!(
                attempt = round.attempt(),
                "not registered at the relay yet: {failure}"
            );
        }
        told = failure;
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if let Some(signal) = signals.pending().next() {
                return Ok(Err(signal));
            }
            std::thread::sleep(SIGNAL_LOOK.min(until.saturating_duration_since(Instant::now())));
        }
    }
}

/// How often a wait that a signal may end looks for one.
const SIGNAL_LOOK: Duration = Duration::from_millis(50);

/// `rigwire serve --runtime smol`: the demo rig on rigwire-smol's servers,
/// shut down gracefully on SIGINT or SIGTERM.
fn serve_smol(
    listen: &[String],
    name: &str,
    secret: &SecretArgs,
    tls: TlsSettings,
    frame: FrameArgs,
) -> Result<(), Failure> {
    let config = frame.apply(config(name, secret, tls)?);
    let mut signals = watch_signals()?;
    let default_listen = ["tcp://127.0.0.1:7400".to_owned()];
    let listen = if listen.is_empty() {
        &default_listen[..]
    } else {
        listen
    };
    let mut running = Vec::new();
    for url in listen {
        let mut server = rigwire_smol::Server::bind(url, config.clone())?;
        rig::expose_demo_rig_smol(server.handlers_mut())?;
        running.push(server.start()?);
    }
    let lines: Vec<String> = running
        .iter()
        .map(|s| listening_line(&s.local_url(), s.tls_fingerprint()))
        .collect();
    announce(&lines);
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    for server in running {
        smol::block_on(server.shutdown(Duration::from_secs(5)));
    }
    Ok(())
}

fn connect(url: &str, access: &Access) -> Result<Client, Failure> {
    let tls = tls_settings(&IdentityArgs::default(), &access.trust);
    Ok(Client::connect(
        url,
        config("rigwire-cli", &access.secret, tls)?,
    )?)
}

/// A call's arguments: the JSON text given, or the bytes of a file (`-`:
/// standard input) in the bytes codec.
fn call_args(json: &[String], bytes: Option<&std::path::Path>) -> Result<Payload, Failure> {
    let usage = |message: String| Failure { code: 2, message };
    let Some(path) = bytes else {
        let not_json =
            |e: &dyn std::fmt::Display| usage(format!("the arguments are not JSON: {e}"));
        return match json {
            [] => json_payload("null").map_err(|e| not_json(&e)),
            [one] => json_payload(one).map_err(|e| not_json(&format!("{e}{}", quote_hint(one)))),
            several => {
                let values = several.iter().enumerate().map(|(i, text)| {
                    serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
                        let hint = quote_hint(text);
                        not_json(&format!("argument {} ({text}): {e}{hint}", i + 1))
                    })
                });
                let array = values.collect::<Result<Vec<_>, _>>()?;
                Payload::encode_as(Codec::Json, &array).map_err(|e| not_json(&e))
            }
        };
    };
    let data = if path.as_os_str() == "-" {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)
            .map(|_| data)
            .map_err(|e| usage(format!("cannot read standard input: {e}")))?
    } else {
        std::fs::read(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?
    };
    Ok(Payload::bytes(data))
}

/// What to add to the error for an argument that is not JSON: a bare word
/// was most likely meant as a string, which the shell stripped of its quotes.
fn quote_hint(text: &str) -> String {
    match text.chars().next() {
        Some(c) if c.is_alphabetic() => {
            format!(" (a string is written in JSON quotes: '\"{text}\"')")
        }
        _ => String::new(),
    }
}

/// Prints a call's result: JSON as text; a byte string as is, or, on a
/// terminal, its length and first bytes in hex.
fn print_result(result: &Payload) -> Result<(), Failure> {
    use std::io::IsTerminal;
    if result.codec != Codec::Bytes {
        outln!("{}", String::from_utf8_lossy(&result.bytes));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let written = if out.is_terminal() {
        let head: String = result
            .bytes
            .iter()
            .take(32)
            .map(|b| format!("{b:02x}"))
            .collect();
        let more = if result.bytes.len() > 32 { "…" } else { "" };
        writeln!(out, "{} bytes: {head}{more}", result.bytes.len())
    } else {
        out.write_all(&result.bytes).and_then(|()| out.flush())
    };
    written.map_err(|e| Failure {
        code: 1,
        message: format!("cannot write the result: {e}"),
    })
}

fn call(
    url: &str,
    method: &str,
    args: Result<Payload, Failure>,
    timeout: Option<f64>,
    access: &Access,
    frame: FrameArgs,
) -> Result<(), Failure> {
    let args = args?;
    let timeout = timeout
        .map(|s| flag_seconds("--timeout", s, true))
        .transpose()?;
    // The timeout covers everything: connecting and the handshake too.
    let started = Instant::now();
    let tls = tls_settings(&IdentityArgs::default(), &access.trust);
    let mut config = frame.apply(config("rigwire-cli", &access.secret, tls)?);
    if let Some(t) = timeout {
        config = config.connect_within(t);
    }
    let client = Client::connect(url, config)?;
    let left = timeout.map(|t| {
        t.saturating_sub(started.elapsed())
            .max(Duration::from_millis(1))
    });
    let result = client
        .start_raw(method, args, left)?
        .wait()
        .map_err(|e| match e {
            Error::DeadlineExceeded => Failure {
                code: 1,
                message: e.describe_call(method, timeout),
            },
            e => e.into(),
        })?;
    print_result(&result)?;
    client.close();
    Ok(())
}

fn ping(url: &str, count: u32, access: &Access) -> Result<(), Failure> {
    let client = connect(url, access)?;
    let mut rtts = Vec::new();
    for _ in 0..count {
        let rtt = client.ping()?;
        outln!("rtt {:.3} ms", rtt.as_secs_f64() * 1e3);
        rtts.push(rtt);
    }
    rtts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    outln!(
        "min/median/max = {:.3}/{:.3}/{:.3} ms over {} pings",
        ms(rtts[0]),
        ms(rtts[rtts.len() / 2]),
        ms(rtts[rtts.len() - 1]),
        rtts.len()
    );
    client.close();
    Ok(())
}

fn methods(url: &str, service: Option<&str>, access: &Access) -> Result<(), Failure> {
    let client = connect(url, access)?;
    let (method, prefix) = match service {
        Some(name) => (
            format!("{name}.{}", rigwire_std::core::INTROSPECTION_METHOD),
            format!("{name}."),
        ),
        None => (
            rigwire_std::core::INTROSPECTION_METHOD.to_owned(),
            String::new(),
        ),
    };
    let reply = client.call_raw(&method, json_payload("null")?, None)?;
    /// A record of the JSON answer (spec §6.6).
    #[derive(serde::Deserialize)]
    struct Described {
        #[serde(flatten)]
        method: ExposedMethod,
        signature: Option<String>,
    }
    let methods: Vec<Described> = reply.decode().map_err(Error::from)?;
    for Described {
        method: m,
        signature,
    } in methods
    {
        let relay = m.name == rigwire_std::core::relay::SERVICES_METHOD && service.is_none();
        let mut line = format!("{prefix}{}", m.name);
        if let Some(signature) = signature {
            line = format!("{line:<16} {signature}");
        }
        if !m.aliases.is_empty() {
            line = format!("{line} (aliases: {})", m.aliases.join(", "));
        }
        outln!("{line}");
        if relay {
            // A relay's own method: what it forwards to is one level down.
            let names: Vec<String> = client.call(&m.name, &())?;
            for name in names {
                outln!("  service {name:<8} (rigwire methods {url} {name})");
            }
        }
    }
    client.close();
    Ok(())
}
