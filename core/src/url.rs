//! Where to connect or listen, from a URL: `tcp://host:port`,
//! `tls://host:port`, `unix:///path`, `ws://host:port/path` and
//! `wss://host:port/path`. Parsing only; the runtimes do the I/O.
//!
//! A client's URL may end in `#NAME`: the service `NAME` registered at the
//! relay listening there ([`Target`]).

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use crate::error::Error;
use crate::framing::Framing;

/// Where to connect or listen, parsed from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    /// `tcp://host:port`, or `tls://host:port` when `tls` is set.
    Tcp {
        /// `host:port`
        addr: String,
        /// The stream runs inside TLS.
        tls: bool,
    },
    /// `unix:///absolute/path` (or `unix://relative/path`)
    Unix(PathBuf),
    /// `ws://host:port/path`, or `wss://host:port/path` when `tls` is set.
    Ws {
        /// `host:port`
        addr: String,
        /// The request path, starting with `/`.
        path: String,
        /// The websocket runs inside TLS.
        tls: bool,
    },
}

impl Url {
    /// Parses a rigwire URL.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for an unknown scheme, a missing host, port or
    /// path, or white space around it (a newline read from a file).
    pub fn parse(url: &str) -> Result<Url, Error> {
        white_space_around(url)?;
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some((_, service)) = url.split_once('#') {
            return Err(invalid(&format!(
                "'#{service}' names a service behind a relay, which a Client reaches \
                 (and what uses one: a group, rigwire call, Python's connect); \
                 a server, a relay, a remote service or a LocalClient cannot"
            )));
        }
        const EXPECTED: &str = "expected tcp://host:port, tls://host:port, unix:///path, \
                                ws://host:port/path or wss://host:port/path";
        let Some((scheme, rest)) = url.split_once("://") else {
            // `rig-1:7400`: a host and port with the scheme left out.
            return Err(match url.contains(':') && !url.contains('/') {
                true => invalid(&format!("{EXPECTED}: did you mean 'tcp://{url}'?")),
                false => invalid(EXPECTED),
            });
        };
        // Schemes are case-insensitive (RFC 3986 §3.1).
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "tcp" | "tls" => {
                if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
                    let missing = match (rest.contains('/'), rest.contains(':')) {
                        (true, _) => " (with no path: a path is for ws:// URLs)",
                        (false, false) => " (the port is missing)",
                        _ => "",
                    };
                    return Err(invalid(&format!("expected {scheme}://host:port{missing}")));
                }
                check_host_port(rest).map_err(|why| invalid(&why))?;
                Ok(Url::Tcp {
                    addr: rest.to_owned(),
                    tls: scheme == "tls",
                })
            }
            "unix" => {
                if rest.is_empty() {
                    return Err(invalid("expected unix:///path/to/socket"));
                }
                Ok(Url::Unix(PathBuf::from(rest)))
            }
            "ws" | "wss" => {
                let (addr, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                if addr.is_empty() || !addr.contains(':') {
                    return Err(invalid(&format!("expected {scheme}://host:port/path")));
                }
                check_host_port(addr).map_err(|why| invalid(&why))?;
                Ok(Url::Ws {
                    addr: addr.to_owned(),
                    path: path.to_owned(),
                    tls: scheme == "wss",
                })
            }
            "udp" => Err(invalid(&format!(
                "udp:// is iblutil's: an iblutil rig is reached with rigwire.ibl (Python) or \
                 `rigwire ibl` (the command line); {EXPECTED}"
            ))),
            "http" | "https" => Err(invalid(&format!(
                "{scheme}:// is the control page's (`rigwire control`); rigs and relays take \
                 ws:// for websockets: {EXPECTED}"
            ))),
            other => Err(invalid(&format!("unknown scheme '{other}': {EXPECTED}"))),
        }
    }

    /// How frames are delimited on this transport.
    pub fn framing(&self) -> Framing {
        match self {
            Url::Ws { .. } => Framing::Message,
            _ => Framing::Stream,
        }
    }

    /// The `host:port` of a network URL; `None` for `unix://`.
    pub fn addr(&self) -> Option<&str> {
        match self {
            Url::Tcp { addr, .. } | Url::Ws { addr, .. } => Some(addr),
            Url::Unix(_) => None,
        }
    }

    /// The host of a network URL, without the port (and without the
    /// brackets of an IPv6 address): the name a TLS certificate must carry.
    pub fn host(&self) -> Option<&str> {
        let addr = self.addr()?;
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        Some(host.trim_start_matches('[').trim_end_matches(']'))
    }

    /// Whether other machines may reach a server bound here: a network URL
    /// whose host is not a loopback address or `localhost` (a host name
    /// other than that counts as reachable). A Unix socket never is.
    pub fn is_reachable_from_elsewhere(&self) -> bool {
        let Some(host) = self.host() else {
            return false;
        };
        // Parsing an address is pure (`core::net`), no IO.
        match host.parse::<::core::net::IpAddr>() {
            Ok(ip) => !ip.is_loopback(),
            Err(_) => !host.eq_ignore_ascii_case("localhost"),
        }
    }

    /// Whether the transport runs inside TLS (`tls://`, `wss://`).
    pub fn is_tls(&self) -> bool {
        matches!(self, Url::Tcp { tls: true, .. } | Url::Ws { tls: true, .. })
    }

    /// The websocket request path, for `ws://` and `wss://`.
    pub fn ws_path(&self) -> Option<&str> {
        match self {
            Url::Ws { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The same scheme and path at another `host:port` (a listener's bound
    /// address, say); a `unix://` URL is returned unchanged.
    pub fn at(&self, addr: String) -> Url {
        match self {
            Url::Tcp { tls, .. } => Url::Tcp { addr, tls: *tls },
            Url::Ws { path, tls, .. } => Url::Ws {
                addr,
                path: path.clone(),
                tls: *tls,
            },
            Url::Unix(_) => self.clone(),
        }
    }

    /// This URL's scheme: `tcp`, `tls`, `unix`, `ws` or `wss`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Url::Tcp { tls: false, .. } => "tcp",
            Url::Tcp { tls: true, .. } => "tls",
            Url::Unix(_) => "unix",
            Url::Ws { tls: false, .. } => "ws",
            Url::Ws { tls: true, .. } => "wss",
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme();
        match self {
            Url::Tcp { addr, .. } => write!(f, "{scheme}://{addr}"),
            Url::Unix(path) => write!(f, "{scheme}://{}", path.display()),
            Url::Ws { addr, path, .. } => write!(f, "{scheme}://{addr}{path}"),
        }
    }
}

/// Checks the `host:port` of a network URL: a host (a name, an IPv4
/// address or a bracketed IPv6 one) and a port from 0 to 65535. Without
/// this, an empty host or a bad port fails later as a name lookup.
fn check_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
    if host.is_empty() {
        return Err(
            "no host before ':': tcp://0.0.0.0:PORT listens on every interface, \
             tcp://127.0.0.1:PORT on this machine only; a client gives the rig's name or address"
                .to_owned(),
        );
    }
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "the port '{port}' is not a number from 0 to 65535 (0: the system picks one)"
        ));
    }
    Ok(())
}

/// What a client dials: a [`Url`], and the service behind the relay there
/// if the URL ends in `#NAME` (`tcp://relay:7500#scanner`). A client with a
/// service sends each call, notify and batch to `NAME.method`, as the relay
/// routes them, so a script, a group or `rigwire call` uses a relayed
/// service as it uses a rig it reaches directly.
///
/// A client's ping is then a call of the service's clock, both hops (a
/// ping would stop at the relay). The client follows the service
/// ([`Target::follow`]): the notifies the service sends (its `exp.event`s)
/// reach it, through the relay. What stays the relay's own:
/// `confirmed_send`, a client's `peer()` and its calls; and a service's
/// calls back, since its peer is the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to connect.
    pub url: Url,
    /// The service at a relay there, from `#NAME`.
    pub service: Option<String>,
}

impl Target {
    /// Parses a client's URL: a [`Url`], with an optional `#NAME`.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] as [`Url::parse`], or for a name after the
    /// first `#` that no relay registers
    /// ([`relay::is_service_name`](crate::relay::is_service_name)).
    pub fn parse(url: &str) -> Result<Target, Error> {
        white_space_around(url)?;
        let Some((base, service)) = url.split_once('#') else {
            return Ok(Target {
                url: Url::parse(url)?,
                service: None,
            });
        };
        // Every name a relay registers, and only those: one rule.
        if !crate::relay::is_service_name(service) {
            let why = crate::ConfigError::NotAServiceName(service.to_owned());
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: format!("URL#NAME: {why}"),
            });
        }
        Ok(Target {
            url: Url::parse(base)?,
            service: Some(service.to_owned()),
        })
    }

    /// The name `method` goes out as: `NAME.method` for a service, else
    /// `method` itself.
    pub fn method<'a>(&self, method: &'a str) -> Cow<'a, str> {
        match &self.service {
            Some(service) => Cow::Owned(format!("{service}.{method}")),
            None => Cow::Borrowed(method),
        }
    }

    /// On a fresh client connection (before or after its handshake), for a
    /// service: queues [`FOLLOW_METHOD`](crate::relay::FOLLOW_METHOD), so
    /// that what the service sends the relay (its `exp.event`s) comes to
    /// this connection as it would from the service itself. Nothing for a
    /// plain URL, nor for a connection that exposes nothing (every notify
    /// passed on would be answered `NoSuchMethod`).
    ///
    /// # Errors
    /// As [`Connection::notify`](crate::Connection::notify).
    pub fn follow(
        &self,
        conn: &mut crate::Connection,
        now: std::time::Instant,
    ) -> Result<(), Error> {
        let Some(service) = &self.service else {
            return Ok(());
        };
        if !conn.registry().exposes_anything() {
            return Ok(());
        }
        let name = crate::Payload::json(service)?;
        Ok(conn.notify(crate::relay::FOLLOW_METHOD, name, now)?)
    }
}

impl From<Url> for Target {
    /// A plain URL: no service behind it.
    fn from(url: Url) -> Target {
        Target { url, service: None }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.service {
            Some(service) => write!(f, "{}#{service}", self.url),
            None => self.url.fmt(f),
        }
    }
}

/// Refuses a URL with white space at either end, as a line read from a
/// file has its newline: said plainly, not as a port that is not a number.
fn white_space_around(url: &str) -> Result<(), Error> {
    match url.trim() {
        trimmed if trimmed.len() == url.len() => Ok(()),
        trimmed => Err(Error::InvalidUrl {
            url: trimmed.to_owned(),
            reason: format!(
                "it has white space around it ({url:?}): a line read from a file keeps its \
                 newline; strip it (.strip() in Python)"
            ),
        }),
    }
}
