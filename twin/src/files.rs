//! What both runtimes open from the system alike, before any runtime is
//! involved: a secret file, and a listening socket as the standard library
//! binds it (the async runtime then registers it with its reactor).

use std::io;
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use rigwire_core::{ConfigError, Error, Secret, Url};

/// Reads a shared secret from a file (a trailing newline is not part of
/// it). A file that other users may read is used, with a warning: on a
/// shared machine any of them could then drive the rigs.
///
/// # Errors
/// [`Error::Config`] if the file cannot be read or holds an empty secret.
pub fn secret_from_file(path: &Path) -> Result<Secret, Error> {
    let unreadable = |e: io::Error| {
        Error::Config(ConfigError::SecretUnreadable(format!(
            "{}: {e}",
            path.display()
        )))
    };
    let bytes = std::fs::read(path).map_err(unreadable)?;
    if let Some(mode) = rigwire_ws::tls::readable_by_others(path) {
        tracing::warn!(
            "the secret file {} can be read by other users (mode {mode:o}): any of them \
             could drive the rigs; chmod 600 it",
            path.display(),
        );
    }
    Ok(Secret::from_file_contents(&bytes)?)
}

/// A socket bound to listen on a rigwire URL, not yet accepting.
#[doc(hidden)]
#[derive(Debug)]
pub enum Bound {
    /// `tcp://`, `tls://`, `ws://`, `wss://`, with the address it bound
    /// (the port the OS chose for port 0).
    Tcp(TcpListener, String),
    /// `unix://`.
    Unix(UnixListener),
}

/// Binds the socket `endpoint` names. A stale Unix socket file (nothing
/// answers on it) is replaced; a live one is not.
///
/// # Errors
/// [`Error::Bind`] naming the URL and the system's reason.
#[doc(hidden)]
pub fn bind(endpoint: &Url) -> Result<Bound, Error> {
    let bound = match endpoint {
        Url::Unix(path) => {
            if path.exists() && UnixStream::connect(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
            UnixListener::bind(path).map(Bound::Unix)
        }
        _ => TcpListener::bind(endpoint.addr().unwrap_or_default()).and_then(|socket| {
            let addr = socket.local_addr()?.to_string();
            Ok(Bound::Tcp(socket, addr))
        }),
    };
    bound.map_err(|e| bind_failed(endpoint, e))
}

/// The error of binding `endpoint` (or registering its socket) failing.
#[doc(hidden)]
pub fn bind_failed(endpoint: &Url, e: io::Error) -> Error {
    Error::Bind {
        url: endpoint.to_string(),
        reason: e.to_string(),
    }
}
