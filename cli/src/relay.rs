//! `rigwire relay`: a relay on smol, run from the blocking command line.

use std::time::Duration;

use rigwire_smol::{RelayConfig, RelayServer};

use crate::{announce, listening_line, watch_signals, Failure, SecretSource};

/// What the command line asked for.
pub struct Options {
    pub tls: rigwire_std::core::TlsSettings,
    pub clients: String,
    pub services: String,
    pub allow: Vec<String>,
    pub max_forward_timeout: Option<f64>,
    pub client_secret: SecretSource,
    pub service_secret: SecretSource,
    pub insecure_services: bool,
    /// The largest frame forwarded (`--max-frame`), both sides.
    pub max_frame: Option<u32>,
}

/// Runs the relay until SIGINT or SIGTERM.
pub fn run(options: Options) -> Result<(), Failure> {
    let mut config = RelayConfig {
        tls: options.tls,
        ..RelayConfig::default()
    };
    if let Some(bytes) = options.max_frame {
        config = config.max_frame(bytes);
    }
    config.clients.secret = options.client_secret.load()?;
    config.services.secret = options.service_secret.load()?;
    config.insecure_services = options.insecure_services;
    let insecure = options.insecure_services && config.services.secret.is_none();
    if !options.allow.is_empty() {
        config.allowed = Some(options.allow);
    }
    config.max_forward_timeout = options
        .max_forward_timeout
        .map(|s| crate::flag_seconds("--max-forward-timeout", s, true))
        .transpose()?;
    let mut signals = watch_signals()?;
    let relay = RelayServer::bind(&options.clients, &options.services, config)?;
    if insecure {
        // Said loudly, first, on every start, with the port really bound:
        // this relay trusts whoever registers.
        eprintln!(
            "rigwire relay: WARNING: --insecure-services: services register without a secret; \
             anyone who reaches {} can register a service and forge its answers",
            relay.services_url()
        );
    }
    let relay = relay.start()?;
    let line = |side: String| listening_line(&side, relay.tls_fingerprint());
    announce(&[
        line(format!("{} clients", relay.clients_url())),
        line(format!("{} services", relay.services_url())),
    ]);
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    smol::block_on(relay.shutdown(Duration::from_secs(5)));
    Ok(())
}
