//! Transports on async-io: `tcp://host:port`, `unix:///path` and
//! `ws://host:port/path` (the upgrade here, the framing by `rigwire-ws` in
//! the driver). Reads and
//! writes are non-blocking attempts; waiting is for readiness only, so no
//! future ever holds the socket across an `.await` and a dropped future never
//! leaves half a frame on the wire.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use rigwire_core::{Error, Url};
use rigwire_ws::{Handshake, WsCodec};
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

    /// Ends both directions; a pending read completes with end of stream.
    /// Shuts down one side or both; a socket already gone is no error.
    pub(crate) fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Socket::Tcp(s) => s.get_ref().shutdown(how),
            Socket::Unix(s) => s.get_ref().shutdown(how),
        };
    }
}

/// Runs a websocket upgrade on a fresh connection, within `timeout`.
async fn upgrade(
    socket: &Async<TcpStream>,
    mut handshake: Handshake,
    timeout: Duration,
) -> Result<WsCodec, String> {
    let work = async {
        let mut buf = vec![0u8; 4096];
        let mut input: &[u8] = &[];
        loop {
            let done = match handshake.feed(input) {
                Ok(done) => done,
                Err(e) => {
                    // A refusal (a 404 for a wrong path) still goes to the peer.
                    let _ = (&*socket).write_all(&handshake.take_output()).await;
                    return Err(e);
                }
            };
            let out = handshake.take_output();
            if !out.is_empty() {
                (&*socket)
                    .write_all(&out)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if let Some(codec) = done {
                return Ok(codec);
            }
            let n = (&*socket)
                .read(&mut buf)
                .await
                .map_err(|e| format!("websocket handshake: {e}"))?;
            if n == 0 {
                return Err("websocket handshake: the peer closed the connection".into());
            }
            input = &buf[..n];
        }
    };
    future::or(work, async {
        Timer::after(timeout).await;
        Err(format!(
            "websocket handshake did not complete within {timeout:?}"
        ))
    })
    .await
}

/// Dials `endpoint` within `timeout`; websocket connections are upgraded here.
pub(crate) async fn connect(
    endpoint: &Url,
    max_frame: u32,
    timeout: Duration,
) -> Result<(Socket, Option<WsCodec>), Error> {
    let fail = |reason: String| Error::Connect {
        url: endpoint.to_string(),
        reason,
    };
    let dial = async {
        match endpoint {
            Url::Tcp(addr) | Url::Ws { addr, .. } => {
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
            Url::Unix(path) => Ok(Socket::Unix(Async::<UnixStream>::connect(path).await?)),
        }
    };
    let timed_out = async {
        Timer::after(timeout).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection within {timeout:?}"),
        ))
    };
    let socket = future::or(dial, timed_out)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let codec = match (endpoint, &socket) {
        (Url::Ws { .. }, Socket::Tcp(tcp)) => {
            let handshake = Handshake::client(&endpoint.to_string(), max_frame).map_err(fail)?;
            Some(upgrade(tcp, handshake, timeout).await.map_err(fail)?)
        }
        _ => None,
    };
    Ok((socket, codec))
}

/// A bound listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    /// TCP; with a path when serving websocket there.
    Tcp(Async<TcpListener>, Option<String>),
    Unix(Async<UnixListener>, PathBuf),
}

impl Listener {
    /// Binds `endpoint`; a stale Unix socket file is replaced only if nothing answers on it.
    pub(crate) fn bind(endpoint: &Url) -> Result<Listener, Error> {
        let fail = |e: io::Error| Error::Bind {
            url: endpoint.to_string(),
            reason: e.to_string(),
        };
        match endpoint {
            Url::Tcp(addr) => {
                let listener = TcpListener::bind(addr).map_err(fail)?;
                Ok(Listener::Tcp(Async::new(listener).map_err(fail)?, None))
            }
            Url::Ws { addr, path } => {
                let listener = TcpListener::bind(addr).map_err(fail)?;
                Ok(Listener::Tcp(
                    Async::new(listener).map_err(fail)?,
                    Some(path.clone()),
                ))
            }
            Url::Unix(path) => {
                if path.exists() && UnixStream::connect(path).is_err() {
                    let _ = std::fs::remove_file(path);
                }
                let listener = UnixListener::bind(path).map_err(fail)?;
                Ok(Listener::Unix(
                    Async::new(listener).map_err(fail)?,
                    path.clone(),
                ))
            }
        }
    }

    /// The endpoint actually bound (with the port the OS chose for port 0).
    pub(crate) fn local_endpoint(&self) -> Url {
        match self {
            Listener::Tcp(l, ws) => {
                let addr = l
                    .get_ref()
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                match ws {
                    None => Url::Tcp(addr),
                    Some(path) => Url::Ws {
                        addr,
                        path: path.clone(),
                    },
                }
            }
            Listener::Unix(_, path) => Url::Unix(path.clone()),
        }
    }

    /// Waits for the next connection.
    pub(crate) async fn accept(&self) -> io::Result<Socket> {
        match self {
            Listener::Tcp(l, _) => {
                let (s, _) = l.accept().await?;
                s.get_ref().set_nodelay(true)?;
                Ok(Socket::Tcp(s))
            }
            Listener::Unix(l, _) => Ok(Socket::Unix(l.accept().await?.0)),
        }
    }

    /// Completes an accepted socket: the websocket upgrade when serving ws://.
    pub(crate) async fn upgrade(
        &self,
        socket: &Socket,
        max_frame: u32,
        timeout: Duration,
    ) -> Result<Option<WsCodec>, String> {
        match (self, socket) {
            (Listener::Tcp(_, Some(path)), Socket::Tcp(tcp)) => Ok(Some(
                upgrade(tcp, Handshake::server(path, max_frame)?, timeout).await?,
            )),
            _ => Ok(None),
        }
    }

    /// Removes a Unix socket file after use.
    pub(crate) fn cleanup(&self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
