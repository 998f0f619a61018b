//! Transports on async-io: `tcp://host:port` and `unix:///path`. Reads and
//! writes are non-blocking attempts; waiting is for readiness only, so no
//! future ever holds the socket across an `.await` and a dropped future never
//! leaves half a frame on the wire.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use rigwire_core::{Endpoint, Error};
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

    /// Ends both directions; a pending read completes with end of stream.
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Socket::Tcp(s) => s.get_ref().shutdown(Shutdown::Both),
            Socket::Unix(s) => s.get_ref().shutdown(Shutdown::Both),
        };
    }
}

fn unsupported(endpoint: &Endpoint) -> Error {
    Error::InvalidUrl {
        url: endpoint.to_string(),
        reason: "rigwire-smol does not speak ws:// yet; use tcp:// or unix://, or rigwire-std"
            .into(),
    }
}

/// Dials `endpoint` within `timeout`.
pub(crate) async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Socket, Error> {
    let fail = |reason: String| Error::Connect {
        url: endpoint.to_string(),
        reason,
    };
    let dial = async {
        match endpoint {
            Endpoint::Tcp(addr) => {
                let mut last = format!("{addr} resolved to no address");
                for sa in smol::net::resolve(addr.as_str()).await? {
                    match Async::<TcpStream>::connect(sa).await {
                        Ok(s) => {
                            s.get_ref().set_nodelay(true)?;
                            return Ok(Socket::Tcp(s));
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(io::Error::other(last))
            }
            Endpoint::Unix(path) => Ok(Socket::Unix(Async::<UnixStream>::connect(path).await?)),
            Endpoint::Ws { .. } => Err(io::Error::other("unreachable: checked before dialing")),
        }
    };
    if matches!(endpoint, Endpoint::Ws { .. }) {
        return Err(unsupported(endpoint));
    }
    let timed_out = async {
        Timer::after(timeout).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection within {timeout:?}"),
        ))
    };
    future::or(dial, timed_out)
        .await
        .map_err(|e| fail(e.to_string()))
}

/// A bound listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(Async<TcpListener>),
    Unix(Async<UnixListener>, PathBuf),
}

impl Listener {
    /// Binds `endpoint`; a stale Unix socket file is replaced only if nothing answers on it.
    pub(crate) fn bind(endpoint: &Endpoint) -> Result<Listener, Error> {
        let fail = |e: io::Error| Error::Bind {
            url: endpoint.to_string(),
            reason: e.to_string(),
        };
        match endpoint {
            Endpoint::Tcp(addr) => {
                let listener = TcpListener::bind(addr).map_err(fail)?;
                Ok(Listener::Tcp(Async::new(listener).map_err(fail)?))
            }
            Endpoint::Unix(path) => {
                if path.exists() && UnixStream::connect(path).is_err() {
                    let _ = std::fs::remove_file(path);
                }
                let listener = UnixListener::bind(path).map_err(fail)?;
                Ok(Listener::Unix(
                    Async::new(listener).map_err(fail)?,
                    path.clone(),
                ))
            }
            Endpoint::Ws { .. } => Err(unsupported(endpoint)),
        }
    }

    /// The endpoint actually bound (with the port the OS chose for port 0).
    pub(crate) fn local_endpoint(&self) -> Endpoint {
        match self {
            Listener::Tcp(l) => Endpoint::Tcp(
                l.get_ref()
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            ),
            Listener::Unix(_, path) => Endpoint::Unix(path.clone()),
        }
    }

    /// Waits for the next connection.
    pub(crate) async fn accept(&self) -> io::Result<Socket> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.get_ref().set_nodelay(true)?;
                Ok(Socket::Tcp(s))
            }
            Listener::Unix(l, _) => Ok(Socket::Unix(l.accept().await?.0)),
        }
    }

    /// Removes a Unix socket file after use.
    pub(crate) fn cleanup(&self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
