//! What TLS is configured with (`tls://`, `wss://`): data only. The wire
//! layer (`rigwire-ws`) runs rustls with it; the core does no TLS itself.
//!
//! TLS protects the bytes; the shared secret still decides who is
//! admitted. A lab without a certificate authority gives its server a
//! self-signed certificate (`rigwire cert new`) and pins it on the clients
//! by its fingerprint.

use std::path::PathBuf;

/// How a client decides to trust a TLS server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Trust {
    /// The certificate authorities the operating system trusts (for a relay
    /// behind a real certificate). The default.
    #[default]
    SystemRoots,
    /// Exactly the certificate with this SHA-256 fingerprint
    /// (`sha256:` and 64 hex digits, as `rigwire cert new` prints it); its
    /// name and dates are not checked, the fingerprint is the identity.
    Pin(String),
    /// Certificates issued by the authorities in this PEM file.
    Ca(PathBuf),
}

/// TLS settings of an endpoint; used only for `tls://` and `wss://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// A server's certificate chain, PEM (required to listen on `tls://` or `wss://`).
    pub cert: Option<PathBuf>,
    /// A server's private key, PEM.
    pub key: Option<PathBuf>,
    /// How a client trusts the server.
    pub trust: Trust,
    /// The name a client expects in the server's certificate (default: the
    /// URL's host). Not used with [`Trust::Pin`].
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// What to warn of when these settings meet `url` and it is not TLS:
    /// a certificate given to a server (`serving`) that then serves in
    /// clear, or a pin or CA given to a client that then checks no
    /// certificate. `None` for a TLS URL, or settings that ask nothing of TLS.
    pub fn unused_at(&self, url: &crate::Url, serving: bool) -> Option<String> {
        if url.is_tls() {
            return None;
        }
        let given = match (serving, &self.trust) {
            (true, _) if self.cert.is_some() => "a TLS certificate is given",
            (false, Trust::Pin(_)) => "a certificate pin is given",
            (false, Trust::Ca(_)) => "a CA to trust is given",
            _ => return None,
        };
        let (clear, scheme) = match serving {
            true => ("it serves in clear", "listen on"),
            false => (
                "nothing is encrypted and no certificate is checked",
                "connect with",
            ),
        };
        Some(format!(
            "{given}, but {url} is not TLS: {clear}; {scheme} tls:// or wss:// to use it"
        ))
    }
}

/// Why TLS failed, in words that say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The server presented a certificate other than the pinned one.
    #[error("the server's certificate is {presented}, not the pinned {expected}")]
    WrongPin {
        /// The pin configured.
        expected: String,
        /// The fingerprint of the certificate the server presented.
        presented: String,
    },
    /// The certificate's validity ended.
    #[error("the server's certificate expired on {not_after} (it is now {now})")]
    Expired {
        /// When it stopped being valid (UTC).
        not_after: String,
        /// This machine's time (UTC).
        now: String,
    },
    /// The certificate's validity has not begun.
    #[error("the server's certificate is not valid before {not_before} (it is now {now})")]
    NotYetValid {
        /// When it becomes valid (UTC).
        not_before: String,
        /// This machine's time (UTC).
        now: String,
    },
    /// The certificate names another host.
    #[error("the server's certificate is for {presented}, not {expected}")]
    NameMismatch {
        /// The name the client asked for.
        expected: String,
        /// The names in the certificate.
        presented: String,
    },
    /// The certificate is not issued by an authority the client trusts.
    #[error("the server's certificate is not trusted: {0}")]
    Untrusted(String),
    /// The server speaks TLS and this client connected without it.
    #[error("the server expects TLS: connect with {0}")]
    ServerExpectsTls(String),
    /// This client asked for TLS and the server answered without it.
    #[error("the server does not speak TLS (it answered in plain text): connect with {0}")]
    ServerIsPlain(String),
    /// A client spoke without TLS to an endpoint that requires it (seen by the server).
    #[error("the client connected without TLS; this endpoint expects {0}")]
    ClientIsPlain(String),
    /// A client began TLS at an endpoint without it (seen by the server).
    #[error("the client began a TLS handshake; this endpoint is plain {0}")]
    ClientSpeaksTls(String),
    /// The certificate or key files could not be used.
    #[error("TLS set-up: {0}")]
    Setup(String),
    /// Any other TLS failure, as rustls reports it.
    #[error("TLS: {0}")]
    Other(String),
}
