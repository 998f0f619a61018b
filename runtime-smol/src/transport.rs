//! Transports on async-io: `tcp://host:port`, `tls://host:port`,
//! `unix:///path`, `ws://host:port/path` and `wss://host:port/path` (the
//! opening of TLS and websocket here, their framing by `rigwire-ws` in the
//! driver). Reads and
//! writes are non-blocking attempts; waiting is for readiness only, so no
//! future ever holds the socket across an `.await` and a dropped future never
//! leaves half a frame on the wire.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use rigwire_core::link::{AcceptFailures, Connecting};
use rigwire_core::{Config, Error, TlsSettings, Url};
use rigwire_twin::Bound;
use rigwire_ws::{client_opening, Opening, OpeningError, Served, Wire};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{future, Async, Timer};

/// A connected, non-blocking socket of either family.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(Async<TcpStream>),
    Unix(Async<UnixStream>),
}

impl Socket {
    /// Reads what is there now; `WouldBlock` if nothing is.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.get_ref().read(buf),
            Socket::Unix(s) => s.get_ref().read(buf),
        }
    }

    /// Waits until there is something to read (or the peer closed).
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.readable().await,
            Socket::Unix(s) => s.readable().await,
        }
    }

    /// Writes what the kernel takes now; `WouldBlock` if it takes nothing.
    pub(crate) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.get_ref().write_vectored(bufs),
            Socket::Unix(s) => s.get_ref().write_vectored(bufs),
        }
    }

    /// Waits until the kernel will take more bytes.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.writable().await,
            Socket::Unix(s) => s.writable().await,
        }
    }

    /// Reads what arrives next, waiting for it (for the opening only: the
    /// driver never waits holding the socket).
    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => (&*s).read(buf).await,
            Socket::Unix(s) => (&*s).read(buf).await,
        }
    }

    /// Writes all of `bytes`, waiting for room (for the opening only).
    async fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => (&*s).write_all(bytes).await,
            Socket::Unix(s) => (&*s).write_all(bytes).await,
        }
    }

    /// Ends both directions; a pending read completes with end of stream.
    /// Shuts down one side or both; a socket already gone is no error.
    pub(crate) fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Socket::Tcp(s) => s.get_ref().shutdown(how),
            Socket::Unix(s) => s.get_ref().shutdown(how),
        };
    }
}

/// Opens a fresh connection's layers (TLS, websocket) by `deadline`.
async fn open(
    socket: &Socket,
    mut opening: Opening,
    deadline: Instant,
) -> Result<Wire, OpeningError> {
    let work = async {
        let mut buf = vec![0u8; 4096];
        let mut input: &[u8] = &[];
        loop {
            let fed = opening.feed(input);
            let out = opening.take_output();
            if !out.is_empty() {
                // Last words (an alert, an HTTP refusal) matter less than the failure.
                let sent = socket.write_all(&out).await;
                if fed.is_ok() {
                    sent.map_err(|e| OpeningError::Io(e.to_string()))?;
                }
            }
            if let Some(wire) = fed? {
                return Ok(wire);
            }
            let n = socket
                .read(&mut buf)
                .await
                .map_err(|e| OpeningError::Io(format!("handshake: {e}")))?;
            if n == 0 {
                return Err(OpeningError::Io(
                    "the peer closed the connection in the TLS or websocket handshake".into(),
                ));
            }
            input = &buf[..n];
        }
    };
    future::or(work, async {
        Timer::at(deadline).await;
        Err(OpeningError::Io(
            "the TLS or websocket handshake did not complete in time".into(),
        ))
    })
    .await
}

/// The addresses `addr` (`host:port`) names, by the system's resolver
/// ([`rigwire_twin::system_lookup`]) on smol's thread for blocking work: a
/// slow resolver holds no task.
pub(crate) async fn lookup(addr: &str) -> io::Result<Vec<std::net::SocketAddr>> {
    let addr = addr.to_owned();
    smol::unblock(move || rigwire_twin::system_lookup(&addr)).await
}

/// Dials `endpoint` and opens its layers (TLS as `config` says,
/// websocket), by the attempt's deadline.
pub(crate) async fn connect(
    endpoint: &Url,
    config: &Config,
    attempt: &Connecting,
) -> Result<(Socket, Wire), Error> {
    let fail = |reason: String| Error::Connect {
        url: endpoint.to_string(),
        reason,
    };
    let dial = async {
        match endpoint {
            Url::Unix(path) => match Async::<UnixStream>::connect(path).await {
                Ok(s) => Ok(Socket::Unix(s)),
                Err(e) => Err(io::Error::other(rigwire_twin::why_not_connected(&e, true))),
            },
            _ => {
                let addr = endpoint.addr().unwrap_or_default();
                let mut last = format!("{addr} resolved to no address");
                for sa in lookup(addr).await? {
                    match Async::<TcpStream>::connect(sa).await {
                        Ok(s) => {
                            s.get_ref().set_nodelay(true)?;
                            return Ok(Socket::Tcp(s));
                        }
                        Err(e) => last = rigwire_twin::why_not_connected(&e, false),
                    }
                }
                Err(io::Error::other(last))
            }
        }
    };
    let timed_out = async {
        Timer::at(attempt.by()).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            attempt.ran_out(None),
        ))
    };
    let socket = future::or(dial, timed_out)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let opening = client_opening(endpoint, &config.tls, config.protocol.max_frame)?;
    let wire = open(&socket, opening, attempt.by())
        .await
        .map_err(|e| e.into_error(endpoint))?;
    Ok((socket, wire))
}

/// A bound listening socket, with the TLS identity it serves (`tls://`, `wss://`).
#[derive(Debug)]
pub(crate) struct Listener {
    socket: ListeningSocket,
    /// The URL bound (with the port the OS chose for port 0) and its TLS identity.
    served: Served,
}

#[derive(Debug)]
enum ListeningSocket {
    Tcp(Async<TcpListener>),
    Unix(Async<UnixListener>),
}

/// The next connection `accept` gives; a failed accept pauses this task
/// and is logged (naming `url`) as the core's [`AcceptFailures`] says
/// ([`rigwire_twin::accept_failed`]), so a failure that lasts (out of file
/// descriptors) neither spins nor floods the log, and never ends the
/// accepting.
pub(crate) async fn accept_paced<T, F>(
    failures: &mut AcceptFailures,
    url: &(dyn std::fmt::Display + Sync),
    mut accept: impl FnMut() -> F,
) -> T
where
    F: std::future::Future<Output = io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(socket) => {
                rigwire_twin::accepted(failures, url, Instant::now());
                return socket;
            }
            Err(e) => {
                let until = rigwire_twin::accept_failed(failures, e, url, Instant::now());
                Timer::at(until).await;
            }
        }
    }
}

impl Listener {
    /// Binds `endpoint`, reading the TLS identity `tls` names when it
    /// asks for TLS. A stale Unix socket file is replaced only if nothing
    /// answers on it.
    pub(crate) fn bind(endpoint: &Url, tls: &TlsSettings) -> Result<Listener, Error> {
        let served = Served::new(endpoint, tls)?;
        let fail = |e| rigwire_twin::bind_failed(endpoint, e);
        Ok(match rigwire_twin::bind(endpoint)? {
            Bound::Unix(socket) => Listener {
                socket: ListeningSocket::Unix(Async::new(socket).map_err(fail)?),
                served,
            },
            Bound::Tcp(socket, addr) => Listener {
                socket: ListeningSocket::Tcp(Async::new(socket).map_err(fail)?),
                served: served.bound_at(addr),
            },
        })
    }

    /// The endpoint actually bound (with the port the OS chose for port 0).
    pub(crate) fn local_endpoint(&self) -> &Url {
        self.served.url()
    }

    /// The fingerprint of the TLS certificate served, if any.
    pub(crate) fn fingerprint(&self) -> Option<&str> {
        self.served.fingerprint()
    }

    /// The next connection, its layers not yet open; failures are paced
    /// ([`accept_paced`]).
    pub(crate) async fn accept(&self, failures: &mut AcceptFailures) -> Socket {
        accept_paced(failures, self.local_endpoint(), || self.accept_once()).await
    }

    async fn accept_once(&self) -> io::Result<Socket> {
        match &self.socket {
            ListeningSocket::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.get_ref().set_nodelay(true)?;
                Ok(Socket::Tcp(s))
            }
            ListeningSocket::Unix(l) => Ok(Socket::Unix(l.accept().await?.0)),
        }
    }

    /// Opens an accepted socket's layers (TLS, websocket), within `timeout`.
    pub(crate) async fn open(
        &self,
        socket: &Socket,
        max_frame: u32,
        timeout: Duration,
    ) -> Result<Wire, OpeningError> {
        let opening = self.served.opening(max_frame)?;
        open(
            socket,
            opening,
            rigwire_core::link::after(Instant::now(), timeout),
        )
        .await
    }

    /// Removes a Unix socket file after use.
    pub(crate) fn cleanup(&self) {
        if let Url::Unix(path) = self.served.url() {
            let _ = std::fs::remove_file(path);
        }
    }
}
