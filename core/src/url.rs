//! Where to connect or listen, from a URL: `tcp://host:port`,
//! `unix:///path`, `ws://host:port/path`. Parsing only; the runtimes do the I/O.

use std::fmt;
use std::path::PathBuf;

use crate::error::Error;
use crate::framing::Framing;

/// Where to connect or listen, parsed from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    /// `tcp://host:port`
    Tcp(String),
    /// `unix:///absolute/path` (or `unix://relative/path`)
    Unix(PathBuf),
    /// `ws://host:port/path`
    Ws {
        /// `host:port`
        addr: String,
        /// The request path, starting with `/`.
        path: String,
    },
}

impl Url {
    /// Parses a rigwire URL.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for an unknown scheme or a missing host, port or path.
    pub fn parse(url: &str) -> Result<Url, Error> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            invalid("expected tcp://host:port, unix:///path or ws://host:port/path")
        })?;
        match scheme {
            "tcp" => {
                if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
                    return Err(invalid("expected tcp://host:port"));
                }
                Ok(Url::Tcp(rest.to_owned()))
            }
            "unix" => {
                if rest.is_empty() {
                    return Err(invalid("expected unix:///path/to/socket"));
                }
                Ok(Url::Unix(PathBuf::from(rest)))
            }
            "ws" => {
                let (addr, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, "/"),
                };
                if addr.is_empty() || !addr.contains(':') {
                    return Err(invalid("expected ws://host:port/path"));
                }
                Ok(Url::Ws {
                    addr: addr.to_owned(),
                    path: path.to_owned(),
                })
            }
            "wss" => Err(invalid(
                "wss:// (TLS) is not supported; use ws:// behind a TLS proxy",
            )),
            other => Err(invalid(&format!("unknown scheme '{other}'"))),
        }
    }

    /// How frames are delimited on this transport.
    pub fn framing(&self) -> Framing {
        match self {
            Url::Ws { .. } => Framing::Message,
            _ => Framing::Stream,
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Url::Tcp(addr) => write!(f, "tcp://{addr}"),
            Url::Unix(path) => write!(f, "unix://{}", path.display()),
            Url::Ws { addr, path } => write!(f, "ws://{addr}{path}"),
        }
    }
}
