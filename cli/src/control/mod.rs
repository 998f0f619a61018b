//! `rigwire control`: a web page to watch and drive a set of rigs. This
//! process is a rigwire client of every rig; the page talks JSON to it over
//! a websocket. The page's files are compiled in, and nothing is served
//! without the access token printed at start.

mod http;
mod state;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rigwire_std::core::{Target, Trust};
use rigwire_std::{Client, Config};
use rigwire_ws::ServerTls;

use crate::{announce, listening_line, watch_signals, Failure, SecretSource};
use state::{Control, RigSpec};

/// What the command line asked for.
pub struct Options {
    pub listen: String,
    pub rigs: Vec<String>,
    pub rigs_file: Option<PathBuf>,
    pub relay: Option<String>,
    pub token_file: Option<PathBuf>,
    pub secret: SecretSource,
    pub config: Config,
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

/// Runs the control room until SIGINT or SIGTERM.
pub fn run(options: Options) -> Result<(), Failure> {
    let mut config = options.config.clone();
    config.protocol.secret = options.secret.load()?;
    let specs = rig_specs(&options, &config)?;
    if specs.is_empty() {
        return Err(usage(
            "no rigs: give --rig NAME=URL (repeat), --rigs FILE or --relay URL".into(),
        ));
    }
    let (scheme, addr) = options
        .listen
        .split_once("://")
        .filter(|(scheme, _)| ["http", "https"].contains(scheme))
        .ok_or_else(|| {
            usage(format!(
                "--listen {}: expected http://host:port (or https:// with --cert and --key)",
                options.listen
            ))
        })?;
    let addr = addr.trim_end_matches('/');
    let tls = match scheme {
        "https" => Some(ServerTls::from_settings(&config.tls).map_err(|e| usage(e.to_string()))?),
        // Given for the page, they would be left unused: said, not ignored.
        _ if config.tls.cert.is_some() => {
            return Err(usage(format!(
                "--cert and --key serve the page over https://, and --listen {} is http://: \
                 listen on https://{addr}",
                options.listen
            )))
        }
        _ => None,
    };
    let listener = TcpListener::bind(addr).map_err(|e| {
        let why = rigwire_twin::why_not_bound(&e, false);
        usage(format!("cannot listen on {}: {why}", options.listen))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| usage(format!("cannot listen on {}: {e}", options.listen)))?;
    if !bound.ip().is_loopback() && tls.is_none() {
        eprintln!(
            "rigwire control: WARNING: serving {bound} beyond this machine without TLS: the access \
             token and every action travel in clear; serve https:// (--cert, --key) or \
             127.0.0.1 with an SSH tunnel"
        );
    }
    let token = Arc::new(match &options.token_file {
        Some(path) => read_token(path)?,
        None => new_token()?,
    });
    let mut signals = watch_signals()?;
    let control = Control::start(specs);
    if let Some(relay) = &options.relay {
        control.watch_relay(relay.clone(), config.clone());
    }
    let serving = Arc::clone(&control);
    let page_token = Arc::clone(&token);
    let fingerprint = tls.as_ref().map(|t| t.fingerprint().to_owned());
    std::thread::Builder::new()
        .name("control-http".into())
        .spawn(move || http::serve(listener, serving, page_token, tls))
        .map_err(|e| usage(format!("cannot start the web server: {e}")))?;
    announce(&[
        listening_line(&format!("{scheme}://{bound}"), fingerprint),
        format!("open {scheme}://{bound}/?token={token}"),
    ]);
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    Ok(())
}

/// The rigs named on the command line, in a file, and behind a relay.
fn rig_specs(options: &Options, config: &Config) -> Result<Vec<RigSpec>, Failure> {
    let mut specs = Vec::new();
    let mut add = |name: &str, url: &str, config: Config| {
        if specs.iter().any(|s: &RigSpec| s.name == name) {
            return Err(usage(format!("the rig name '{name}' is given twice")));
        }
        // A typo is told at the start, not shown as a rig that never connects.
        Target::parse(url).map_err(|e| usage(format!("rig '{name}': {e}")))?;
        specs.push(RigSpec {
            name: name.to_owned(),
            url: url.to_owned(),
            config,
        });
        Ok(())
    };
    for rig in &options.rigs {
        let (name, url) = rig
            .split_once('=')
            .filter(|(n, u)| !n.is_empty() && !u.is_empty())
            .ok_or_else(|| usage(format!("--rig {rig}: expected NAME=URL")))?;
        add(name, url, config.clone())?;
    }
    if let Some(path) = &options.rigs_file {
        for rig in rigs_file(path)? {
            let mut config = config.clone();
            if let Some(file) = &rig.secret_file {
                config.protocol.secret = Some(
                    rigwire_std::secret_from_file(file)
                        .map_err(|e| usage(format!("rig '{}': {e}", rig.name)))?,
                );
            }
            if let Some(trust) = rig.trust {
                config.tls.trust = trust;
            }
            add(&rig.name, &rig.url, config)?;
        }
    }
    if let Some(relay) = &options.relay {
        let client = Client::connect(relay, config.clone())?;
        let names: Vec<String> = client.call("rigwire.services", &())?;
        client.close();
        for name in names {
            add(&name, &format!("{relay}#{name}"), config.clone())?;
        }
    }
    Ok(specs)
}

/// One rig of a rigs file.
struct FileRig {
    name: String,
    url: String,
    secret_file: Option<PathBuf>,
    trust: Option<Trust>,
}

/// A rigs file: a TOML table of name to URL, or to `{ url, secret_file,
/// pin, ca }` (files relative to the rigs file's folder), in the file's order.
fn rigs_file(path: &Path) -> Result<Vec<FileRig>, Failure> {
    let bad = |why: String| usage(format!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.to_string()))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let rigs = table.into_iter().map(|(name, value)| {
        let rig = match value {
            toml::Value::String(url) => {
                return Ok(FileRig {
                    name,
                    url,
                    secret_file: None,
                    trust: None,
                })
            }
            toml::Value::Table(rig) => rig,
            _ => {
                return Err(bad(format!(
                    "rig '{name}': a URL, or a table with url (and secret_file, pin, ca)"
                )))
            }
        };
        // A key mistyped (`secret_flie`), or not text, would otherwise be
        // left out without a word, and the rig reached without it.
        const KEYS: [&str; 4] = ["url", "secret_file", "pin", "ca"];
        for (key, value) in &rig {
            if !KEYS.contains(&key.as_str()) {
                return Err(bad(format!(
                    "rig '{name}': unknown key '{key}' (a rig takes {})",
                    KEYS.join(", ")
                )));
            }
            if !value.is_str() {
                return Err(bad(format!("rig '{name}': {key} is text, in quotes")));
            }
        }
        let text = |key: &str| rig.get(key).and_then(toml::Value::as_str);
        let url = text("url").ok_or_else(|| bad(format!("rig '{name}' needs url = \"...\"")))?;
        let trust = match (text("pin"), text("ca")) {
            (Some(_), Some(_)) => return Err(bad(format!("rig '{name}': pin or ca, not both"))),
            (Some(pin), None) => Some(Trust::Pin(pin.to_owned())),
            (None, Some(ca)) => Some(Trust::Ca(folder.join(ca))),
            (None, None) => None,
        };
        Ok(FileRig {
            url: url.to_owned(),
            secret_file: text("secret_file").map(|f| folder.join(f)),
            trust,
            name,
        })
    });
    rigs.collect()
}

fn new_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| usage(format!("the operating system's random source failed: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn read_token(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    let token = text.trim().to_owned();
    if token.len() < 16
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(usage(format!(
            "{}: a token is 16 or more letters, digits, '-' or '_'",
            path.display()
        )));
    }
    Ok(token)
}
