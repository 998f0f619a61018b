//! Opening a connection's byte layers, before rigwire's own handshake: the
//! TLS handshake (`tls://`, `wss://`), then the websocket upgrade (`ws://`,
//! `wss://`). Plain `tcp://` and `unix://` have nothing to open.
//!
//! A runtime drives it like the handshakes of the core: write
//! [`take_output`](Opening::take_output), read, [`feed`](Opening::feed) what
//! arrived, until `feed` hands back the connection's [`Wire`]; within the
//! handshake timeout. On failure it still writes `take_output` (a TLS alert,
//! an HTTP refusal) before it closes.
//!
//! A side that expected TLS and got plain bytes, or the reverse, says so
//! ([`TlsProblem::ServerIsPlain`] and its kin) instead of a decode error.

use rigwire_core::{Error, TlsProblem, TlsSettings, Url};

use crate::tls::{looks_like_tls, ClientTls, ServerTls, Tls};
use crate::{Handshake, Wire};

/// Why opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpeningError {
    /// TLS failed, or one side spoke TLS and the other did not.
    #[error(transparent)]
    Tls(#[from] TlsProblem),
    /// The websocket upgrade failed (bad response, wrong path, ...).
    #[error("{0}")]
    Upgrade(String),
    /// The socket failed, the peer closed, or the time ran out (seen by the
    /// runtime that drives the opening).
    #[error("{0}")]
    Io(String),
}

/// Which end opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Client,
    Server,
}

/// The byte layers of one connection being opened.
#[derive(Debug)]
pub struct Opening {
    end: End,
    url: Url,
    max_frame: u32,
    tls: Option<Tls>,
    /// The websocket upgrade in progress (a client's starts once TLS is up).
    ws: Option<Handshake>,
    output: Vec<u8>,
    seen_input: bool,
    /// Under TLS: the peer's first plaintext has been checked for HTTP.
    seen_plain: bool,
    /// Plaintext that arrived with the TLS handshake's last messages.
    early: Vec<u8>,
}

impl Opening {
    /// The client side, dialing `url`; `tls` is needed for `tls://` and `wss://`.
    ///
    /// # Errors
    /// [`OpeningError::Tls`] if `url` wants TLS and none is configured, or
    /// the server name is unusable; [`OpeningError::Upgrade`] for a
    /// websocket URL tungstenite refuses.
    pub fn client(
        url: &Url,
        tls: Option<&ClientTls>,
        max_frame: u32,
    ) -> Result<Opening, OpeningError> {
        let tls = match (url.is_tls(), tls) {
            (false, _) => None,
            (true, Some(settings)) => Some(Tls::client(settings, url)?),
            (true, None) => return Err(no_settings(url).into()),
        };
        let mut opening = Self::new(End::Client, url, tls, max_frame);
        if let Some(tls) = &mut opening.tls {
            opening.output = tls.take_output(); // the ClientHello
        } else {
            opening.start_ws()?;
        }
        Ok(opening)
    }

    /// The server side of a listener at `url`; `tls` is needed for `tls://`
    /// and `wss://`.
    ///
    /// # Errors
    /// [`OpeningError::Tls`] if `url` wants TLS and no identity is given.
    pub fn server(
        url: &Url,
        tls: Option<&ServerTls>,
        max_frame: u32,
    ) -> Result<Opening, OpeningError> {
        let tls = match (url.is_tls(), tls) {
            (false, _) => None,
            (true, Some(identity)) => Some(Tls::server(identity)?),
            (true, None) => return Err(no_settings(url).into()),
        };
        let mut opening = Self::new(End::Server, url, tls, max_frame);
        if opening.tls.is_none() {
            opening.start_ws()?;
        }
        Ok(opening)
    }

    fn new(end: End, url: &Url, tls: Option<Tls>, max_frame: u32) -> Opening {
        Opening {
            end,
            url: url.clone(),
            max_frame,
            tls,
            ws: None,
            output: Vec::new(),
            seen_input: false,
            seen_plain: false,
            early: Vec::new(),
        }
    }

    /// Whether there is nothing to open: the first [`feed`](Self::feed)
    /// hands back the wire without reading (plain `tcp://`, `unix://`).
    pub fn is_plain(&self) -> bool {
        self.tls.is_none() && self.url.ws_path().is_none()
    }

    /// Bytes to send to the peer now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Hands in bytes from the peer (none, the first time). `Ok(Some(wire))`
    /// once every layer is open: send [`take_output`](Self::take_output),
    /// then drive the connection through the wire (its
    /// [`start`](Wire::start) delivers what arrived with the last bytes of
    /// the opening). `Ok(None)` while more bytes are needed.
    ///
    /// # Errors
    /// Why opening failed; send `take_output` (an alert or an HTTP answer),
    /// then close.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<Wire>, OpeningError> {
        if !input.is_empty() && !self.seen_input {
            self.seen_input = true;
            self.check_first(input)?;
        }
        let plain = match &mut self.tls {
            None => input.to_vec(),
            Some(tls) => {
                let mut plain = Vec::new();
                let decrypted = tls.decrypt(input, |piece| plain.extend_from_slice(piece));
                self.output.extend(tls.take_output());
                self.early.extend(plain);
                decrypted?;
                if tls.is_handshaking() {
                    return Ok(None);
                }
                let plain = std::mem::take(&mut self.early);
                if !plain.is_empty() && !self.seen_plain {
                    // Inside TLS, the first plaintext tells whether it speaks HTTP.
                    self.seen_plain = true;
                    self.check_http(&plain)?;
                }
                plain
            }
        };
        self.start_ws()?; // once TLS is up (nothing to do without a path, or when started)
        let (codec, pending) = match &mut self.ws {
            None => (None, plain),
            Some(handshake) => {
                let fed = handshake.feed(&plain);
                let answer = handshake.take_output();
                self.send(&answer);
                match fed.map_err(OpeningError::Upgrade)? {
                    Some(codec) => (Some(codec), Vec::new()),
                    None => return Ok(None),
                }
            }
        };
        let hint = self.tls.is_none().then(|| self.mismatch());
        Ok(Some(Wire::opened(
            codec,
            self.tls.take().map(Box::new),
            pending,
            hint,
        )))
    }

    /// Starts the websocket upgrade, if the URL asks for one.
    fn start_ws(&mut self) -> Result<(), OpeningError> {
        let Some(path) = self.url.ws_path().filter(|_| self.ws.is_none()) else {
            return Ok(());
        };
        let mut handshake = match self.end {
            End::Client => {
                let addr = self.url.addr().unwrap_or_default();
                Handshake::client(&format!("ws://{addr}{path}"), self.max_frame)
            }
            End::Server => Handshake::server(path, self.max_frame),
        }
        .map_err(OpeningError::Upgrade)?;
        let request = handshake.take_output();
        self.send(&request);
        self.ws = Some(handshake);
        Ok(())
    }

    /// Sends plaintext of the opening, through TLS when there is TLS.
    fn send(&mut self, plain: &[u8]) {
        if plain.is_empty() {
            return;
        }
        match &mut self.tls {
            Some(tls) => self.output.extend(tls.encrypt(plain)),
            None => self.output.extend_from_slice(plain),
        }
    }

    /// The peer's first bytes tell whether it speaks TLS, and on a plain
    /// websocket whether it speaks HTTP at all.
    fn check_first(&mut self, input: &[u8]) -> Result<(), OpeningError> {
        let tls_expected = self.tls.is_some();
        if looks_like_tls(input) == tls_expected {
            return match tls_expected {
                true => Ok(()),
                false => self.check_http(input),
            };
        }
        if let Some(tls) = &mut self.tls {
            // Let rustls refuse it too, so the peer gets an alert.
            let _ = tls.decrypt(input, |_| {});
            self.output.extend(tls.take_output());
        } else if self.end == End::Server {
            let body = format!("this endpoint is {}, without TLS", self.url);
            self.output.extend_from_slice(
                format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        Err(self.mismatch().into())
    }

    /// A websocket's peer that does not speak HTTP speaks rigwire bare: a
    /// `tcp://` (or, inside TLS, `tls://`) server, which says Hello at
    /// once, or client. Each side says which URL to use instead of an HTTP
    /// parse error; a server also answers the client in HTTP, which a
    /// plain client reports in turn.
    fn check_http(&mut self, input: &[u8]) -> Result<(), OpeningError> {
        let Some(addr) = self.url.ws_path().and(self.url.addr()) else {
            return Ok(());
        };
        let bare = match self.tls {
            Some(_) => "tls://",
            None => "tcp://",
        };
        match self.end {
            End::Client if !b"HTTP/".starts_with(&input[..input.len().min(5)]) => {
                Err(OpeningError::Upgrade(format!(
                    "the server does not speak HTTP, so no websocket (a {bare} endpoint?): connect with {bare}{addr}"
                )))
            }
            End::Server if !input[0].is_ascii_uppercase() => {
                let body = format!("this endpoint is {}: rigwire inside a websocket", self.url);
                self.send(
                    format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
                Err(OpeningError::Upgrade(format!(
                    "the client did not send an HTTP request (rigwire without a websocket?); this endpoint is {}",
                    self.url
                )))
            }
            _ => Ok(()),
        }
    }

    /// What it means when the peer speaks the other way (TLS or not) than we do.
    fn mismatch(&self) -> TlsProblem {
        let tls = self.tls.is_some();
        let other = || {
            let url = self.url.to_string();
            let (ours, theirs) = if tls {
                ("s://", "://")
            } else {
                ("://", "s://")
            };
            match self.url {
                Url::Tcp { .. } if tls => url.replacen("tls://", "tcp://", 1),
                Url::Tcp { .. } => url.replacen("tcp://", "tls://", 1),
                _ => url.replacen(&format!("ws{ours}"), &format!("ws{theirs}"), 1),
            }
        };
        match (self.end, tls) {
            (End::Client, true) => TlsProblem::ServerIsPlain(other()),
            (End::Client, false) => TlsProblem::ServerExpectsTls(other()),
            (End::Server, true) => TlsProblem::ClientIsPlain(self.url.to_string()),
            (End::Server, false) => TlsProblem::ClientSpeaksTls(self.url.to_string()),
        }
    }
}

fn no_settings(url: &Url) -> TlsProblem {
    TlsProblem::Setup(format!("{url} needs TLS settings"))
}

impl OpeningError {
    /// The error a runtime reports for it, connecting to (or serving) `url`.
    pub fn into_error(self, url: &Url) -> Error {
        match self {
            OpeningError::Tls(problem) => Error::Tls(problem),
            OpeningError::Upgrade(reason) | OpeningError::Io(reason) => Error::Connect {
                url: url.to_string(),
                reason,
            },
        }
    }
}

/// The opening of a connection to `url` with the TLS trust `tls` names
/// (read only when `url` asks for TLS).
///
/// # Errors
/// [`Error::Tls`] when the trust settings are unusable (a malformed pin,
/// an unreadable CA file, no system roots).
pub fn client_opening(url: &Url, tls: &TlsSettings, max_frame: u32) -> Result<Opening, Error> {
    let tls = match url.is_tls() {
        true => Some(ClientTls::from_settings(tls).map_err(Error::Tls)?),
        false => None,
    };
    Opening::client(url, tls.as_ref(), max_frame).map_err(|e| e.into_error(url))
}

/// The TLS identity a listener at `url` serves, read as `tls` says (none
/// unless `url` asks for TLS).
///
/// # Errors
/// [`Error::Tls`] when the certificate or key is missing or unusable.
pub fn server_identity(url: &Url, tls: &TlsSettings) -> Result<Option<ServerTls>, Error> {
    match url.is_tls() {
        true => Ok(Some(ServerTls::from_settings(tls).map_err(Error::Tls)?)),
        false => Ok(None),
    }
}

/// What a listener serves, the same in every runtime: the URL it is bound
/// at and the TLS identity it presents, from which each accepted
/// connection's [`Opening`] is made.
#[derive(Debug, Clone)]
pub struct Served {
    url: Url,
    tls: Option<ServerTls>,
}

impl Served {
    /// A listener at `url`, with the TLS identity `tls` names read when
    /// `url` asks for TLS.
    ///
    /// # Errors
    /// [`Error::Tls`] when the certificate or key is missing or unusable.
    pub fn new(url: &Url, tls: &TlsSettings) -> Result<Served, Error> {
        Ok(Served {
            url: url.clone(),
            tls: server_identity(url, tls)?,
        })
    }

    /// The same, bound at `addr` (with the port the OS chose for port 0).
    pub fn bound_at(self, addr: String) -> Served {
        Served {
            url: self.url.at(addr),
            ..self
        }
    }

    /// The URL served.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The fingerprint of the TLS certificate served, if any.
    pub fn fingerprint(&self) -> Option<&str> {
        self.tls.as_ref().map(ServerTls::fingerprint)
    }

    /// Whether accepted connections open layers (TLS, websocket) before
    /// rigwire speaks; on a plain stream the server's Hello may go at once.
    pub fn needs_opening(&self) -> bool {
        self.url.is_tls() || self.url.ws_path().is_some()
    }

    /// The opening of one accepted connection.
    ///
    /// # Errors
    /// As [`Opening::server`].
    pub fn opening(&self, max_frame: u32) -> Result<Opening, OpeningError> {
        Opening::server(&self.url, self.tls.as_ref(), max_frame)
    }
}
