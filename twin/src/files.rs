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

/// A failed accept on `url`, at `now`, as the core's
/// [`AcceptFailures`](rigwire_core::link::AcceptFailures) paces it: logs
/// what it says to tell, and returns when to accept again. Every accept
/// loop (both runtimes' servers, the relay, the iblutil rig, the control
/// page) goes through this and [`accepted`].
#[doc(hidden)]
pub fn accept_failed(
    failures: &mut rigwire_core::link::AcceptFailures,
    error: impl std::fmt::Display,
    url: &dyn std::fmt::Display,
    now: std::time::Instant,
) -> std::time::Instant {
    let pause = failures.failed(error, now);
    if let Some(tell) = pause.tell {
        tracing::warn!(%url, "{tell}");
    }
    pause.until
}

/// An accept on `url` succeeded at `now`: logs the end of a run of
/// failures, if it ends one ([`accept_failed`]).
#[doc(hidden)]
pub fn accepted(
    failures: &mut rigwire_core::link::AcceptFailures,
    url: &dyn std::fmt::Display,
    now: std::time::Instant,
) {
    if let Some(tell) = failures.accepted(now) {
        tracing::info!(%url, "{tell}");
    }
}

/// How a name is looked up: the system's resolver, or a test's stand-in.
#[doc(hidden)]
pub type Lookup = fn(&str) -> io::Result<Vec<std::net::SocketAddr>>;

/// The system's resolver (`getaddrinfo`), which blocks. An IPv6 host in
/// brackets is looked up without them, so that the system reads a link-local
/// address's scope by its interface's name (`[fe80::1%eth0]:7400`), as it
/// does by its number; within brackets it took the whole for a name.
#[doc(hidden)]
pub fn system_lookup(addr: &str) -> io::Result<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    let bracketed = addr
        .strip_prefix('[')
        .and_then(|rest| rest.rsplit_once("]:"));
    match bracketed.and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?))) {
        Some(host_port) => host_port.to_socket_addrs().map(Iterator::collect),
        None => addr.to_socket_addrs().map(Iterator::collect),
    }
}

/// The addresses `addr` (`host:port`) names, within `left`. An address is
/// parsed at once. A name is looked up by `lookup` on a thread of its own:
/// the system's resolver blocks, and waits out its own timeouts (5 s a
/// try) when no DNS server answers, which a connect's deadline must not
/// wait for. Such a lookup is left to finish alone.
///
/// # Errors
/// Why the lookup failed, or that it did not finish within `left`.
#[doc(hidden)]
pub fn resolve_within(
    addr: &str,
    left: std::time::Duration,
    lookup: Lookup,
) -> Result<Vec<std::net::SocketAddr>, String> {
    use std::sync::mpsc::{sync_channel, RecvTimeoutError};
    if let Ok(at) = addr.parse() {
        return Ok(vec![at]);
    }
    let (found, finding) = sync_channel(1);
    let name = addr.to_owned();
    std::thread::Builder::new()
        .name("rigwire-lookup".into())
        .spawn(move || drop(found.send(lookup(&name))))
        .map_err(|e| format!("cannot start a thread to look up {addr}: {e}"))?;
    match finding.recv_timeout(left) {
        Ok(Ok(addrs)) if addrs.is_empty() => Err(format!("{addr} resolved to no address")),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(format!("looking up {addr}: {e}")),
        Err(RecvTimeoutError::Timeout) => Err(format!(
            "looking up {addr} did not finish within {} s (does the DNS server answer?)",
            left.as_secs_f64()
        )),
        Err(RecvTimeoutError::Disconnected) => Err(format!("looking up {addr} failed")),
    }
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
        _ => system_lookup(endpoint.addr().unwrap_or_default()).and_then(|addrs| {
            let socket = TcpListener::bind(&addrs[..])?;
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
        reason: why_not_bound(&e, matches!(endpoint, Url::Unix(_))),
    }
}

/// What the system said when a connection could not be made (to a Unix
/// socket, if `unix`), with what to look at when nothing listens there.
#[doc(hidden)]
pub fn why_not_connected(e: &io::Error, unix: bool) -> String {
    let hint = match (e.kind(), unix) {
        (io::ErrorKind::ConnectionRefused, false) => {
            "nothing listens on that port: is the rig or relay running, and is this its port?"
        }
        (io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound, true) => {
            "no server listens on that socket file: is it running, and is this its path?"
        }
        (io::ErrorKind::InvalidInput, true) => UNIX_PATH_TOO_LONG,
        _ => return e.to_string(),
    };
    format!("{e}: {hint}")
}

/// What a Unix socket's path refused as invalid most likely is: longer
/// than the system's socket address holds (its "SUN_LEN" names nothing a
/// lab knows).
const UNIX_PATH_TOO_LONG: &str =
    "a Unix socket's path holds at most 107 bytes (103 on macOS): choose a shorter one, such as \
     under /tmp or /run";

/// What the system said when a listening socket could not be bound (a
/// Unix socket's, if `unix`), with what to do for the mistakes a lab makes
/// most: a rig still running on that port, an address copied from another
/// machine's settings, a port below 1024.
#[doc(hidden)]
pub fn why_not_bound(e: &io::Error, unix: bool) -> String {
    let hint = match (e.kind(), unix) {
        (io::ErrorKind::AddrInUse, false) => {
            "another program listens there, perhaps a rig or relay still running: stop it, or \
             choose another port (port 0 lets the system choose a free one)"
        }
        (io::ErrorKind::AddrInUse, true) => {
            "another server listens on that socket file: stop it, or choose another path"
        }
        (io::ErrorKind::AddrNotAvailable, _) => {
            "that address is not one of this machine's: listen on an address of its own, or on \
             0.0.0.0 for all of them"
        }
        (io::ErrorKind::PermissionDenied, false) => {
            "ports below 1024 need administrator rights: choose a port from 1024 up"
        }
        (io::ErrorKind::PermissionDenied, true) => {
            "the socket file cannot be made there: choose a directory this user may write to"
        }
        (io::ErrorKind::NotFound, true) => {
            "the socket file's directory does not exist: make it first, or choose another"
        }
        (io::ErrorKind::InvalidInput, true) => UNIX_PATH_TOO_LONG,
        _ => return e.to_string(),
    };
    format!("{e}: {hint}")
}
