//! TLS under the rigwire stream (`tls://`) or under the websocket
//! (`wss://`), through rustls, which is sans-IO like the rest of this crate:
//! ciphertext from the socket goes in, plaintext for the next layer comes
//! out, and the other way for output.
//!
//! The settings come from the core's [`TlsSettings`]: a server's
//! certificate and key files, and how a client trusts the server (a pinned
//! SHA-256 fingerprint, a CA file, or the system's roots). Failures become a
//! [`TlsProblem`] that says what to do: a wrong pin names both
//! fingerprints, an expired certificate its dates, a name mismatch both
//! names.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use rigwire_core::{TlsProblem, TlsSettings, Trust, Url};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

/// The ALPN protocol id of rigwire straight over TLS (`tls://`); `wss://`
/// offers `http/1.1`, as any websocket over TLS does.
pub const ALPN_RIGWIRE: &[u8] = b"rigwire/1";

const ALPN_HTTP: &[u8] = b"http/1.1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn setup(what: impl std::fmt::Display) -> TlsProblem {
    TlsProblem::Setup(what.to_string())
}

/// The SHA-256 fingerprint of a certificate (DER), as pins are written:
/// `sha256:` and 64 lowercase hex digits.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = Sha256::digest(cert_der);
    let mut out = String::from("sha256:");
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A pin as given (`sha256:AB:CD…`, any case, colons allowed), in the form
/// [`fingerprint`] prints.
///
/// # Errors
/// [`TlsProblem::Setup`] unless it is `sha256:` and 32 bytes of hex.
pub fn normalize_pin(pin: &str) -> Result<String, TlsProblem> {
    let hex: String = pin
        .strip_prefix("sha256:")
        .ok_or_else(|| setup(format!("a pin starts with 'sha256:' ({pin})")))?
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(setup(format!(
            "a pin is 'sha256:' and 64 hex digits, as `rigwire cert new` prints it ({pin})"
        )));
    }
    Ok(format!("sha256:{hex}"))
}

/// A new self-signed certificate and its key, as `rigwire cert new` writes them.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (keep it readable by its owner only).
    pub key_pem: String,
    /// The certificate's fingerprint, to pin on clients.
    pub fingerprint: String,
}

/// Generates a self-signed certificate for these names (host names or IP
/// addresses; a client that trusts by pin ignores them).
///
/// # Errors
/// [`TlsProblem::Setup`] for a name a certificate cannot carry.
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsProblem> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).map_err(setup)?;
    Ok(SelfSigned {
        cert_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        fingerprint: fingerprint(certified.cert.der()),
    })
}

/// The permission bits of `path` if users other than its owner may read
/// it (a shared secret, a private key): on a shared machine, any of them
/// could then pose as the lab's own. `None` if only its owner may, or it
/// cannot be looked at (reading it will say why).
pub fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

/// Why a key cannot serve a certificate: it is another pair's.
const KEY_NOT_THE_CERTIFICATES: &str =
    "the key and the certificate are not one pair: each certificate has its own key";

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsProblem> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| setup(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(setup(format!(
            "{}: no certificate in it (PEM `BEGIN CERTIFICATE` blocks, as \
             `rigwire cert new` writes them in the .crt file)",
            path.display()
        )));
    }
    Ok(certs)
}

/// A server's TLS identity: its certificate chain and key, ready to serve.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    fingerprint: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl ServerTls {
    /// Reads the certificate chain and key named in `settings`.
    ///
    /// # Errors
    /// [`TlsProblem::Setup`] when either is missing, unreadable, not PEM, or
    /// the key does not belong to the certificate.
    pub fn from_settings(settings: &TlsSettings) -> Result<ServerTls, TlsProblem> {
        let (Some(cert), Some(key)) = (&settings.cert, &settings.key) else {
            return Err(setup(
                "listening on tls:// or wss:// needs a certificate and its key \
                 (--cert/--key, cert=/key= in Python, or Config::tls_identity; \
                 `rigwire cert new` makes a pair)",
            ));
        };
        let certs = read_certs(cert)?;
        if let Some(mode) = readable_by_others(key) {
            tracing::warn!(
                "the private key {} can be read by other users (mode {mode:o}): any of \
                 them could pose as this server; chmod 600 it",
                key.display()
            );
        }
        let key_path = key.display();
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => setup(format!(
                "{key_path}: no private key in it (the key is the .key file \
                 `rigwire cert new` wrote beside the certificate)"
            )),
            e => setup(format!("{key_path}: {e}")),
        })?;
        Self::new(certs, key).map_err(|e| match e {
            TlsProblem::Setup(why) if why == KEY_NOT_THE_CERTIFICATES => setup(format!(
                "{key_path} is not the key of {} ({why})",
                cert.display()
            )),
            e => e,
        })
    }

    /// Serves this certificate chain (leaf first) with this key.
    ///
    /// # Errors
    /// [`TlsProblem::Setup`] if the key does not fit the certificate.
    pub fn new(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ServerTls, TlsProblem> {
        let fingerprint = fingerprint(&certs[0]);
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => setup(KEY_NOT_THE_CERTIFICATES),
                e => setup(e),
            })?;
        // No resumption: connections are long-lived, and tickets are bytes for nothing.
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![ALPN_RIGWIRE.to_vec(), ALPN_HTTP.to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            fingerprint,
        })
    }

    /// The fingerprint of the certificate served, for clients to pin.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A rustls server session with this identity, for a tool that drives
    /// rustls itself (the conformance tester).
    ///
    /// # Errors
    /// [`TlsProblem::Other`] if rustls refuses the configuration.
    pub fn session(&self) -> Result<rustls::ServerConnection, TlsProblem> {
        rustls::ServerConnection::new(Arc::clone(&self.config))
            .map_err(|e| TlsProblem::Other(e.to_string()))
    }
}

/// How a client trusts its TLS servers, ready to connect.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Builds the trust `settings` name: reads the CA file, or the system's
    /// roots, or takes the pin.
    ///
    /// # Errors
    /// [`TlsProblem::Setup`] for a malformed pin, an unreadable CA file, or
    /// no usable system roots.
    pub fn from_settings(settings: &TlsSettings) -> Result<ClientTls, TlsProblem> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(setup)?;
        let config = match &settings.trust {
            Trust::Pin(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier {
                    pin: normalize_pin(pin)?,
                    provider: provider(),
                }))
                .with_no_client_auth(),
            Trust::Ca(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| setup(format!("{}: {e}", path.display())))?;
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            Trust::SystemRoots => builder
                .with_root_certificates(system_roots()?)
                .with_no_client_auth(),
            other => return Err(setup(format!("unsupported trust setting {other:?}"))),
        };
        let mut config = config;
        config.resumption = rustls::client::Resumption::disabled();
        Ok(ClientTls {
            config: Arc::new(config),
            server_name: settings.server_name.clone(),
        })
    }
}

impl ClientTls {
    /// A rustls client session for `url`: its host is the name the
    /// certificate must carry unless the settings name another, and ALPN
    /// offers `rigwire/1` (or `http/1.1` for `wss://`).
    ///
    /// # Errors
    /// [`TlsProblem::Setup`] for a host no certificate can name.
    pub fn session(&self, url: &Url) -> Result<rustls::ClientConnection, TlsProblem> {
        let host = self
            .server_name
            .clone()
            .or_else(|| url.host().map(str::to_owned))
            .unwrap_or_default();
        let name = ServerName::try_from(host.clone())
            .map_err(|_| setup(format!("'{host}' is not a name a certificate can carry")))?;
        let mut config = (*self.config).clone();
        let alpn = if url.ws_path().is_some() {
            ALPN_HTTP
        } else {
            ALPN_RIGWIRE
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| TlsProblem::Other(e.to_string()))
    }
}

/// The operating system's trusted roots, read once per process (a group
/// of rigs, or a client that reconnects, does not read them again).
fn system_roots() -> Result<Arc<RootCertStore>, TlsProblem> {
    static ROOTS: std::sync::OnceLock<Arc<RootCertStore>> = std::sync::OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        Arc::new(roots)
    });
    if roots.is_empty() {
        return Err(setup(
            "this machine has no trusted root certificates; \
             pin the server (--pin, or pin= in Python) or give its CA (--ca, or ca=)",
        ));
    }
    Ok(Arc::clone(roots))
}

/// Accepts exactly the pinned certificate, whatever its names and dates;
/// the handshake signature is still checked against its key.
#[derive(Debug)]
struct PinVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

/// A pinned fingerprint that did not match, carried through rustls.
#[derive(Debug)]
struct PinMismatch {
    expected: String,
    presented: String,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pinned {}, presented {}", self.expected, self.presented)
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = fingerprint(end_entity);
        if presented == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(PinMismatch {
                expected: self.pin.clone(),
                presented,
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Whether `bytes`, the first a peer sent, start like a TLS record
/// (handshake, alert, change cipher spec or application data, then version
/// 3.x when a second byte is there). Rigwire's first frame on a stream
/// starts with a zero byte (a small length), an HTTP request with a letter,
/// so the first byte alone tells them apart when it came alone.
pub fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x17] | [0x14..=0x17, 0x03, ..])
}

fn date(t: UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(at) => format!(
            "{} {:02}:{:02}:{:02} UTC",
            at.date(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        Err(_) => format!("{secs} s after 1970"),
    }
}

/// A name as rustls reports it (`DnsName("rig-1")`), as people write it (`rig-1`).
fn bare_name(name: &str) -> String {
    let inner = name
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(name);
    inner.trim_matches('"').to_owned()
}

/// The problem a rustls error stands for, in the words of [`TlsProblem`].
pub fn classify(err: &rustls::Error) -> TlsProblem {
    let rustls::Error::InvalidCertificate(cert) = err else {
        return TlsProblem::Other(err.to_string());
    };
    match cert {
        CertificateError::ExpiredContext { time, not_after } => TlsProblem::Expired {
            not_after: date(*not_after),
            now: date(*time),
        },
        CertificateError::NotValidYetContext { time, not_before } => TlsProblem::NotYetValid {
            not_before: date(*not_before),
            now: date(*time),
        },
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => TlsProblem::NameMismatch {
            expected: expected.to_str().into_owned(),
            presented: presented
                .iter()
                .map(|name| bare_name(name))
                .collect::<Vec<_>>()
                .join(", "),
        },
        CertificateError::UnknownIssuer | CertificateError::BadSignature => TlsProblem::Untrusted(
            "it is not issued by an authority this client trusts \
             (give its CA: --ca, or ca= in Python; or pin it: --pin, or pin=)"
                .into(),
        ),
        CertificateError::Other(other) => match other.0.downcast_ref::<PinMismatch>() {
            Some(m) => TlsProblem::WrongPin {
                expected: m.expected.clone(),
                presented: m.presented.clone(),
            },
            None => TlsProblem::Untrusted(other.to_string()),
        },
        other => TlsProblem::Untrusted(format!("{other:?}")),
    }
}

/// One side of a TLS session as a byte transformer.
pub(crate) struct Tls {
    conn: rustls::Connection,
    /// The peer sent close_notify.
    peer_closed: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("handshaking", &self.conn.is_handshaking())
            .finish()
    }
}

impl Tls {
    /// The client side, for `url` (its host is the name the certificate
    /// must carry unless the settings name another).
    pub(crate) fn client(tls: &ClientTls, url: &Url) -> Result<Tls, TlsProblem> {
        Ok(Self::wrap(tls.session(url)?.into()))
    }

    /// The server side.
    pub(crate) fn server(tls: &ServerTls) -> Result<Tls, TlsProblem> {
        Ok(Self::wrap(tls.session()?.into()))
    }

    fn wrap(mut conn: rustls::Connection) -> Tls {
        // What is encrypted is taken out at once; the wire bounds it.
        conn.set_buffer_limit(None);
        Tls {
            conn,
            peer_closed: false,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Whether the peer has ended the session (close_notify).
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Hands in ciphertext; the plaintext it completes goes to `plain`, in
    /// pieces, straight from rustls's buffer.
    ///
    /// # Errors
    /// The problem, with any alert for the peer left in
    /// [`take_output`](Self::take_output).
    pub(crate) fn decrypt(
        &mut self,
        mut input: &[u8],
        mut plain: impl FnMut(&[u8]),
    ) -> Result<(), TlsProblem> {
        while !input.is_empty() {
            let read = self.conn.read_tls(&mut input);
            let state = self.conn.process_new_packets().map_err(|e| classify(&e))?;
            self.peer_closed |= state.peer_has_closed();
            // Drained before the next read: rustls holds only so much plaintext.
            let mut reader = self.conn.reader();
            loop {
                match reader.fill_buf() {
                    Ok([]) | Err(_) => break,
                    Ok(piece) => {
                        let n = piece.len();
                        plain(piece);
                        reader.consume(n);
                    }
                }
            }
            match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(TlsProblem::Other(e.to_string())),
            }
        }
        Ok(())
    }

    /// Encrypts `plain` (buffered until the handshake is done) and returns
    /// every record ready to send.
    pub(crate) fn encrypt(&mut self, plain: &[u8]) -> Vec<u8> {
        // The buffer limit is off, so the writer takes everything.
        let _ = self.conn.writer().write_all(plain);
        self.take_output_sized(plain.len())
    }

    /// Records to send now (handshake messages, alerts, encrypted data).
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        self.take_output_sized(0)
    }

    /// The records, into one buffer sized for `plain` bytes of data at once
    /// (a large frame is not copied again as the buffer grows).
    fn take_output_sized(&mut self, plain: usize) -> Vec<u8> {
        // Each record of up to 16 KiB adds a header, a content type and a tag.
        let records = plain.div_ceil(16 * 1024);
        let mut out = Vec::with_capacity(plain + records * 32);
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        out
    }

    /// Ends the session with close_notify; returns the record.
    pub(crate) fn close(&mut self) -> Vec<u8> {
        self.conn.send_close_notify();
        self.take_output()
    }
}
