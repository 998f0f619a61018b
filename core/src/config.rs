//! Configuration of one connection: identity, secret and every limit, with safe
//! defaults. Validated when a [`Connection`](crate::Connection) is created.

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;
use crate::framing::{DEFAULT_MAX_FRAME, PRE_AUTH_MAX_FRAME};

/// Which end of the connection this is. The protocol is symmetric once
/// connected; the role only orders the handshake transcript and tags proofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that dialed.
    Client,
    /// The side that accepted.
    Server,
}

impl Role {
    /// The byte that tags this role's proof in the authentication transcript.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Role::Client => 1,
            Role::Server => 2,
        }
    }

    /// The other side's role.
    pub fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

/// A shared secret. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// The shortest shared secret accepted, in bytes. A handshake proof is an
/// HMAC of the secret over public data, so whoever records one can try
/// guesses offline; a secret must be long and random, not a password
/// (`rigwire secret new` writes 32 random bytes, hex-encoded).
pub const MIN_SECRET_LEN: usize = 16;

impl Secret {
    /// Wraps the secret's bytes.
    ///
    /// # Errors
    /// [`ConfigError::SecretTooShort`] for fewer than [`MIN_SECRET_LEN`]
    /// bytes, with how to make a good one.
    /// [`ConfigError::SecretEndsInLineBreak`] for text that ends in a line
    /// break: a secret file read whole (`std::fs::read`, Python's
    /// `open(...).read()`), which would differ from the same file read as
    /// a secret file ([`from_file_contents`](Self::from_file_contents)).
    /// Random bytes that are not text are taken as they are.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(ConfigError::SecretTooShort {
                len: bytes.len(),
                min: MIN_SECRET_LEN,
            });
        }
        if bytes.ends_with(b"\n") && std::str::from_utf8(&bytes).is_ok() {
            return Err(ConfigError::SecretEndsInLineBreak);
        }
        Ok(Secret(bytes))
    }

    /// The secret as read from a secret file: a trailing newline (`\n` or
    /// `\r\n`) is not part of it. The runtimes read the file.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn from_file_contents(contents: &[u8]) -> Result<Self, ConfigError> {
        let trimmed = contents.strip_suffix(b"\n").unwrap_or(contents);
        let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
        Self::new(trimmed.to_vec())
    }

    /// The secret's bytes, for keying the HMAC.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Keepalive: a ping after `interval` of silence; the peer is declared dead
/// after `timeout` without receiving anything at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence after which a ping is sent.
    pub interval: Duration,
    /// Silence after which the peer is declared dead and every pending call fails.
    pub timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(6),
        }
    }
}

/// Everything a connection is configured with.
#[derive(Debug, Clone)]
pub struct ProtocolConfig {
    /// This side's name, sent in `Hello` (at most 255 bytes).
    pub name: String,
    /// The shared secret; `None` means no authentication is demanded.
    pub secret: Option<Secret>,
    /// Largest frame accepted after the handshake (default 16 MiB, at least 4 KiB).
    pub max_frame: u32,
    /// How many of the peer's calls run at once; more are answered `Busy` (default 256).
    pub max_incoming_calls: u32,
    /// How many of our calls may be in flight; more fail locally with `Busy` (default 1024).
    pub max_outgoing_calls: u32,
    /// Confirmed sends awaiting their echo at once (default 64).
    pub max_pending_confirms: u32,
    /// Application pings awaiting their pong at once (default 16).
    pub max_pending_pings: u32,
    /// Bytes queued for the transport past which new work is refused with
    /// `Backpressure` and [`Connection::wants_input`](crate::Connection::wants_input)
    /// turns false (default 64 MiB; at least `max_frame`). Twice this is fatal.
    pub max_queued_output: usize,
    /// Time allowed for the whole handshake (default 3 s, ample on a LAN; a
    /// stranger that says nothing holds a place no longer).
    pub handshake_timeout: Duration,
    /// Keepalive settings; `None` disables liveness checking (default 2 s / 6 s).
    pub keepalive: Option<Keepalive>,
    /// Time a confirmed send waits for its echo (default 1 s).
    pub echo_timeout: Duration,
    /// Deadline given to calls made without one (default: none).
    pub default_call_timeout: Option<Duration>,
    /// The codec typed calls, notifies and broadcasts are sent in (default
    /// postcard). JSON reaches peers that cannot decode postcard without
    /// its types, such as a Python rig's handlers; a handler answers in the
    /// caller's codec (§4.1), so typed results decode either way.
    pub call_codec: crate::message::Codec,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            name: String::from("rigwire"),
            secret: None,
            max_frame: DEFAULT_MAX_FRAME,
            max_incoming_calls: 256,
            max_outgoing_calls: 1024,
            max_pending_confirms: 64,
            max_pending_pings: 16,
            max_queued_output: 64 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(3),
            keepalive: Some(Keepalive::default()),
            echo_timeout: Duration::from_secs(1),
            default_call_timeout: None,
            call_codec: crate::message::Codec::Postcard,
        }
    }
}

impl ProtocolConfig {
    /// What to warn a server's operator of when it listens at `bound`: no
    /// shared secret on an address other machines reach, so that anyone who
    /// reaches it may call every method. `None` with a secret, on loopback
    /// or on a Unix socket.
    pub fn exposure_warning(&self, bound: &crate::Url) -> Option<String> {
        if self.secret.is_some() || !bound.is_reachable_from_elsewhere() {
            return None;
        }
        Some(format!(
            "serving {bound} without a shared secret: anyone who reaches it may call every \
             method; give the server a secret (`rigwire secret new`), or listen on 127.0.0.1"
        ))
    }

    /// When a call made at `now` with `timeout` (else the default call
    /// timeout, if any) must be done.
    pub fn call_deadline(
        &self,
        timeout: Option<Duration>,
        now: std::time::Instant,
    ) -> Option<std::time::Instant> {
        timeout
            .or(self.default_call_timeout)
            .and_then(|t| now.checked_add(t))
    }

    /// A default configuration with the given name.
    pub fn named(name: impl Into<String>) -> Self {
        ProtocolConfig {
            name: name.into(),
            ..ProtocolConfig::default()
        }
    }

    /// Requires this shared secret from the peer, and proves we hold it.
    ///
    /// # Errors
    /// As [`Secret::new`].
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        self.secret = Some(Secret::new(secret)?);
        Ok(self)
    }

    /// Accepts frames of up to `bytes` after the handshake
    /// ([`max_frame`](Self::max_frame)), and lets at least one such frame
    /// wait for the socket ([`max_queued_output`](Self::max_queued_output)
    /// is raised to it if lower). A connection keeps the smaller of its two
    /// sides' limits, so raise it on both. Under 4 KiB fails
    /// [`validate`](Self::validate).
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self.max_queued_output = self.max_queued_output.max(bytes as usize);
        self
    }

    /// Checks every rule the core relies on.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if self.name.len() > crate::message::MAX_NAME {
            return Err(ConfigError::NameTooLong(self.name.len()));
        }
        if self.max_frame < PRE_AUTH_MAX_FRAME {
            return Err(ConfigError::FrameLimitTooSmall(self.max_frame));
        }
        for (what, value) in [
            ("max_incoming_calls", self.max_incoming_calls),
            ("max_outgoing_calls", self.max_outgoing_calls),
            ("max_pending_confirms", self.max_pending_confirms),
            ("max_pending_pings", self.max_pending_pings),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(what));
            }
        }
        if self.max_queued_output < self.max_frame as usize {
            return Err(ConfigError::OutputLimitTooSmall {
                queued: self.max_queued_output,
                frame: self.max_frame,
            });
        }
        if let Some(k) = self.keepalive {
            if k.interval.is_zero() {
                return Err(ConfigError::ZeroLimit("keepalive interval"));
            }
            if k.timeout <= k.interval {
                return Err(ConfigError::KeepaliveTimeoutTooShort {
                    interval: k.interval,
                    timeout: k.timeout,
                });
            }
        }
        Ok(())
    }
}
