//! What every runtime takes and keeps per connection: the settings (the
//! protocol's, plus connect timeout, reconnect, handler threads and connection
//! limit; one type, so that a user who configures one runtime has configured
//! them all), the application's hooks, and the results callers wait for.

use crate::id_map::IdMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::codec::Payload;
use crate::error::{CallError, EchoError};
use crate::event::Event;

use crate::config::{Keepalive, Secret};
use crate::link::reconnect::Reconnect;
use crate::link::Job;
use crate::tls::Trust;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Settings for a a runtime's `Client`, `Server` or `LocalClient`;
/// the same type in every runtime.
#[derive(Debug, Clone)]
pub struct Config {
    /// The protocol's settings: name, secret, limits, keepalive, default deadline.
    pub protocol: crate::config::ProtocolConfig,
    /// Time allowed to connect, in all (default 5 s): the transport, its
    /// layers (TLS, websocket) and the handshake, which is also held to the
    /// protocol's own
    /// [`handshake_timeout`](crate::ProtocolConfig::handshake_timeout).
    /// See [`Config::connecting`].
    pub connect_timeout: Duration,
    /// Reconnect after a lost connection (clients only; default off).
    pub reconnect: Option<Reconnect>,
    /// Threads for handlers that may block (default 16); one connection
    /// holds at most half of them ([`PoolShare`](super::PoolShare)). A
    /// handler waiting for its own peer's answer (a call back to its
    /// caller) does not count while it waits: calls back and forth as deep
    /// as the two sides go never wait for a thread that only their answers
    /// free (up to [`MAX_LENT_THREADS`](super::MAX_LENT_THREADS) more threads).
    pub handler_threads: usize,
    /// Connections a server serves at once; more are rejected with a reason (default 256).
    pub max_connections: usize,
    /// Connections a server holds while they are still in the handshake
    /// (default 64). When full, the oldest is closed to make room: strangers
    /// that connect and say nothing never crowd out the lab's machines.
    pub max_handshaking: usize,
    /// TLS for `tls://` and `wss://`: a server's certificate and key, how a
    /// client trusts its server (default: the system's roots).
    pub tls: crate::tls::TlsSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            protocol: crate::config::ProtocolConfig::default(),
            connect_timeout: Duration::from_secs(5),
            reconnect: None,
            handler_threads: 16,
            max_connections: 256,
            max_handshaking: 64,
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

impl Config {
    /// An attempt to connect with these settings, begun at `now`: its
    /// deadlines ([`Connecting`]).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for settings the connection
    /// would refuse: said before anything is dialed, so that a rig that is
    /// down does not hide them.
    pub fn connecting(&self, now: Instant) -> Result<Connecting, crate::Error> {
        self.protocol.validate()?;
        Ok(Connecting {
            by: after(now, self.connect_timeout),
            within: self.connect_timeout,
            handshake_timeout: self.protocol.handshake_timeout,
        })
    }

    /// What to warn a server's operator of when it listens at `bound`:
    /// anyone who reaches it may call every method
    /// ([`exposure_warning`](crate::ProtocolConfig::exposure_warning)), or
    /// a certificate is given but `bound` serves in clear
    /// ([`unused_at`](crate::TlsSettings::unused_at)).
    pub fn listening_warnings(&self, bound: &crate::Url) -> Vec<String> {
        listening_warnings(&self.protocol, &self.tls, bound).collect()
    }

    /// Defaults, with this endpoint's name (sent to the peer, shown in its logs).
    pub fn named(name: &str) -> Self {
        Config {
            protocol: crate::config::ProtocolConfig::named(name),
            ..Config::default()
        }
    }

    /// Requires this shared secret from the peer, and proves we hold it.
    ///
    /// # Errors
    /// [`Error::Config`](crate::error::Error::Config) for an empty secret.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Result<Self, crate::error::Error> {
        self.protocol.secret = Some(Secret::new(secret)?);
        Ok(self)
    }

    /// Presents this certificate chain and key (PEM files) on `tls://` and
    /// `wss://` listeners. The files are read when the server binds; a
    /// missing or unusable file fails the bind.
    pub fn tls_identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls.cert = Some(cert.into());
        self.tls.key = Some(key.into());
        self
    }

    /// Trusts a TLS server by how [`Trust`] says (a pinned fingerprint, a
    /// CA file, or the system's roots, the default). Read when connecting.
    pub fn tls_trust(mut self, trust: Trust) -> Self {
        self.tls.trust = trust;
        self
    }

    /// Gives calls made without an explicit deadline this one.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.protocol.default_call_timeout = Some(timeout);
        self
    }

    /// Connects within `limit` in all
    /// ([`connect_timeout`](Self::connect_timeout)): the transport, its
    /// layers (TLS, websocket) and the handshake, so that a peer that
    /// accepts and then says nothing, or answers each step slowly, is given
    /// up on by then.
    pub fn connect_within(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// Accepts frames of up to `bytes` after the handshake, as
    /// [`ProtocolConfig::max_frame`](crate::ProtocolConfig::max_frame)
    /// says (raise it on both sides). Starting fails with a configuration
    /// error under 4 KiB.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.protocol = self.protocol.max_frame(bytes);
        self
    }

    /// Sends typed calls, notifies and broadcasts in `codec`
    /// ([`ProtocolConfig::call_codec`](crate::ProtocolConfig::call_codec)):
    /// `Codec::Json` to call a Python rig's handlers.
    pub fn call_codec(mut self, codec: crate::Codec) -> Self {
        self.protocol.call_codec = codec;
        self
    }

    /// Whether a client reads what its connection holds, without waiting,
    /// before each call: with reconnect on, so that a peer gone since the
    /// last call (its end of stream unread in the linger after a call) is
    /// made again, not sent the call, which would then fail as one that may
    /// have run. Without reconnect nothing could be made again, and the
    /// read is not worth its system call.
    pub fn reads_before_calls(&self) -> bool {
        self.reconnect.is_some()
    }

    /// The deadline by which a call with `timeout` (else the default call
    /// timeout) must have its lost connection made again, if it has to:
    /// none without reconnect, and then `clock` is not read (a live
    /// connection's calls pay no clock reading for it).
    pub fn reconnect_deadline(
        &self,
        timeout: Option<Duration>,
        clock: impl FnOnce() -> Instant,
    ) -> Option<Instant> {
        self.reconnect
            .and_then(|_| self.protocol.call_deadline(timeout, clock()))
    }

    /// These settings for one attempt to connect that has `left` at most
    /// (what is left of a call's deadline): connecting and the handshake
    /// are cut to it ([`connect_within`](Self::connect_within)); `None`
    /// leaves them as they are.
    pub fn cut_to(&self, left: Option<Duration>) -> Config {
        match left {
            Some(left) if left < self.connect_timeout => self.clone().connect_within(left),
            _ => self.clone(),
        }
    }

    /// Sets keepalive (`None` turns liveness checking off).
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.protocol.keepalive = keepalive;
        self
    }

    /// Turns on reconnect with these settings.
    pub fn reconnect(mut self, reconnect: Reconnect) -> Self {
        self.reconnect = Some(reconnect);
        self
    }
}

/// What a listener at `bound` with these settings warns of as it starts:
/// open to anyone beyond this machine, or a certificate left unused; for
/// servers and the relay's clients' side alike.
pub(crate) fn listening_warnings(
    protocol: &crate::config::ProtocolConfig,
    tls: &crate::tls::TlsSettings,
    bound: &crate::Url,
) -> impl Iterator<Item = String> {
    let exposed = protocol.exposure_warning(bound);
    exposed.into_iter().chain(tls.unused_at(bound, true))
}

/// One attempt to connect ([`Config::connecting`]), the same in every
/// runtime: dialling, the transport's layers (TLS, websocket) and the
/// handshake all end by one instant, [`by`](Self::by), so that steps that
/// each take nearly their time never add up past what the user asked for.
#[derive(Debug, Clone, Copy)]
pub struct Connecting {
    by: Instant,
    /// The time the whole attempt was given (the connect timeout).
    within: Duration,
    handshake_timeout: Duration,
}

impl Connecting {
    /// When the attempt has succeeded or is given up.
    pub fn by(&self) -> Instant {
        self.by
    }

    /// What a runtime says when the attempt's time ran out before a
    /// connection was made; `last`: why the last address tried failed, if
    /// one was.
    pub fn ran_out(&self, last: Option<&str>) -> String {
        let tried = last.map(|e| format!(" (the last address tried: {e})"));
        format!(
            "no connection within {} s{}",
            self.within.as_secs_f64(),
            tried.unwrap_or_default()
        )
    }

    /// What is left of the attempt at `now`; zero once it is over (a
    /// runtime then gives up before the next step, not during it).
    pub fn left(&self, now: Instant) -> Duration {
        self.by.saturating_duration_since(now)
    }

    /// `protocol` for the connection whose handshake begins at `now`: its
    /// handshake timeout cut to what is left of the attempt, so that the
    /// connection's own timer (with its precise error) ends it in time.
    pub fn handshake_settings(
        &self,
        protocol: &crate::config::ProtocolConfig,
        now: Instant,
    ) -> crate::config::ProtocolConfig {
        let mut protocol = protocol.clone();
        protocol.handshake_timeout = self.handshake_timeout_at(now);
        protocol
    }

    /// A client's connection to `target` whose handshake begins at `now`
    /// (its settings as [`handshake_settings`](Self::handshake_settings)
    /// makes them), exposing `registry`; for a service behind a relay it
    /// follows that service ([`Target::follow`](crate::Target::follow)).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for invalid settings; as
    /// [`Target::follow`](crate::Target::follow).
    pub fn client_connection(
        &self,
        protocol: &crate::config::ProtocolConfig,
        target: &crate::Target,
        registry: crate::dispatch::Registry,
        nonce: [u8; 32],
        now: Instant,
    ) -> Result<crate::Connection, crate::Error> {
        let mut conn = crate::Connection::new(
            self.handshake_settings(protocol, now),
            registry,
            crate::config::Role::Client,
            target.url.framing(),
            nonce,
            now,
        )?;
        target.follow(&mut conn, now)?;
        Ok(conn)
    }

    /// The handshake's timeout if it begins at `now`: the protocol's, cut
    /// to what is left of the attempt.
    fn handshake_timeout_at(&self, now: Instant) -> Duration {
        self.handshake_timeout.min(self.left(now))
    }

    /// Until when a caller waits for the handshake begun at `now`: a
    /// little past the connection's own timeout, so that its timer ends the
    /// wait first and the caller sees its error, not a bare timeout.
    pub fn handshake_wait(&self, now: Instant) -> Instant {
        after(
            now,
            self.handshake_timeout_at(now)
                .saturating_add(Duration::from_millis(100)),
        )
    }

    /// What the caller's wait for the handshake came to (`None`: the wait
    /// ended first), as the caller should see it: a handshake that timed
    /// out names the limit the user set (the protocol's, or the whole
    /// attempt's if that is shorter), not what was left of it.
    ///
    /// # Errors
    /// The handshake's failure. One that never came (its timer ran out, or
    /// the wait ended first) is [`Error::Connect`](crate::Error::Connect)
    /// for `url`: the connection never was, so it was not "disconnected",
    /// and the likely causes are said.
    pub fn handshake_outcome(
        &self,
        waited: Option<Result<(), crate::Error>>,
        url: &str,
    ) -> Result<(), crate::Error> {
        use crate::error::ConnectionError::HandshakeTimeout;
        match waited {
            Some(Err(crate::Error::Disconnected(HandshakeTimeout(_)))) | None => {
                let limit = self.handshake_timeout.min(self.within);
                Err(crate::Error::Connect {
                    url: url.to_owned(),
                    reason: format!(
                        "no rigwire handshake within {limit:?}: the port took the connection, then \
                         said nothing (another program's port, or a server that is stuck)"
                    ),
                })
            }
            Some(outcome) => outcome,
        }
    }
}

type PeerHook<P> = Box<dyn Fn(&P) + Send + Sync>;
type DisconnectHook<P> = Box<dyn Fn(&P, &crate::error::Error) + Send + Sync>;
type MessageHook<P> = Box<dyn Fn(&P, bytes::Bytes) + Send + Sync>;

/// What an endpoint runs for each connection, for any runtime's peer type `P`.
/// Hooks run on the connection's own thread or task: keep them quick.
pub struct Hooks<P> {
    /// After a peer has connected (and authenticated).
    pub on_connect: Option<PeerHook<P>>,
    /// After a peer's connection has closed, with the reason (only for a
    /// peer `on_connect` ran for).
    pub on_disconnect: Option<DisconnectHook<P>>,
    /// For every confirmed message a peer sends (already echoed).
    pub on_message: Option<MessageHook<P>>,
    /// A server's admission of an authenticated connection (its
    /// [`Link::ticket`](crate::Link::ticket)); a refusal closes it with the
    /// reason, before `on_connect`.
    pub admit: Option<AdmitHook>,
}

type AdmitHook = Box<dyn Fn(crate::link::Ticket) -> Result<(), crate::link::Refusal> + Send + Sync>;

impl<P> Default for Hooks<P> {
    fn default() -> Self {
        Hooks {
            on_connect: None,
            on_disconnect: None,
            on_message: None,
            admit: None,
        }
    }
}

impl<P> Hooks<P> {
    /// Runs the application's hook for `job` with the peer `peer` makes:
    /// `on_connect` for [`Job::Connected`] (after a server's admission,
    /// which the runtime runs first), `on_message` for [`Job::Message`],
    /// `on_disconnect` for [`Job::Closed`]; other jobs have none. A hook
    /// that panics is caught, so that it never ends the connection's thread
    /// or task: `Err` names it, for the runtime's log.
    pub fn run(&self, job: Job, peer: impl FnOnce() -> P) -> Result<(), &'static str> {
        let ran = match job {
            Job::Connected => self.on_connect.as_ref().map(|hook| {
                let peer = peer();
                ("on_connect", catch_unwind(AssertUnwindSafe(|| hook(&peer))))
            }),
            Job::Message(payload) => self.on_message.as_ref().map(|hook| {
                let peer = peer();
                let ran = catch_unwind(AssertUnwindSafe(|| hook(&peer, payload)));
                ("on_message", ran)
            }),
            Job::Closed(err) => self.on_disconnect.as_ref().map(|hook| {
                let (peer, err) = (peer(), err.into());
                (
                    "on_disconnect",
                    catch_unwind(AssertUnwindSafe(|| hook(&peer, &err))),
                )
            }),
            _ => None,
        };
        match ran {
            Some((hook, Err(_))) => Err(hook),
            _ => Ok(()),
        }
    }
}

impl<P> std::fmt::Debug for Hooks<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("on_connect", &self.on_connect.is_some())
            .field("on_disconnect", &self.on_disconnect.is_some())
            .field("on_message", &self.on_message.is_some())
            .finish()
    }
}

/// The results that callers of a runtime are waiting for, filled from the
/// core's events: call answers, echoes and pongs by id, and whether the
/// handshake completed. Every runtime keeps one per connection, so what
/// "routing a result to its waiter" means is decided once, here.
///
/// Register an id before waiting on it (`expect_*`); only registered ids
/// are kept, so a caller that gave up leaves nothing behind.
#[derive(Debug, Default)]
pub struct Waiters {
    calls: IdMap<Option<Result<Payload, CallError>>>,
    confirms: IdMap<Option<Result<(), EchoError>>>,
    pongs: IdMap<Option<Duration>>,
    connected: bool,
    /// Calls whose answers arrived since [`drain_arrived`](Self::drain_arrived)
    /// last looked; kept only once that has been asked for.
    arrived: Option<Vec<u64>>,
}

/// Removes and returns the result for `id` once it has arrived.
fn take_ready<T>(slots: &mut IdMap<Option<T>>, id: u64) -> Option<T> {
    match slots.get(id) {
        Some(Some(_)) => slots.remove(id).flatten(),
        _ => None,
    }
}

impl Waiters {
    /// The calls whose answers (or failures) arrived since the last look,
    /// so that a runtime can wake exactly their callers instead of asking
    /// each waiting caller's call. The first look starts the record.
    pub fn drain_arrived(&mut self) -> std::vec::Drain<'_, u64> {
        self.arrived.get_or_insert_with(Vec::new).drain(..)
    }

    /// Whether the calls whose answers arrive are recorded, for
    /// [`drain_arrived`](Self::drain_arrived) (since its first look).
    pub fn records_arrivals(&self) -> bool {
        self.arrived.is_some()
    }

    /// Whether the handshake has completed (the connection may have closed since).
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Someone will wait for the answer to call `id`.
    pub fn expect_call(&mut self, id: u64) {
        self.calls.insert(id, None);
    }

    /// Nobody waits for call `id` any more (it was cancelled).
    pub fn forget_call(&mut self, id: u64) {
        self.calls.remove(id);
    }

    /// Whether the answer to call `id` has arrived (without taking it).
    pub fn call_ready(&self, id: u64) -> bool {
        matches!(self.calls.get(id), Some(Some(_)))
    }

    /// The answer to call `id`, once it has arrived.
    pub fn take_call(&mut self, id: u64) -> Option<Result<Payload, CallError>> {
        take_ready(&mut self.calls, id)
    }

    /// Someone will wait for the echo of confirmed send `seq`.
    pub fn expect_confirm(&mut self, seq: u64) {
        self.confirms.insert(seq, None);
    }

    /// The outcome of confirmed send `seq`, once known.
    pub fn take_confirm(&mut self, seq: u64) -> Option<Result<(), EchoError>> {
        take_ready(&mut self.confirms, seq)
    }

    /// Someone will wait for the pong of ping `seq`.
    pub fn expect_pong(&mut self, seq: u64) {
        self.pongs.insert(seq, None);
    }

    /// Nobody waits for the pong of ping `seq` any more.
    pub fn forget_pong(&mut self, seq: u64) {
        self.pongs.remove(seq);
    }

    /// The round trip of ping `seq`, once its pong has arrived.
    pub fn take_pong(&mut self, seq: u64) -> Option<Duration> {
        take_ready(&mut self.pongs, seq)
    }

    /// Stores a result for its waiter; returns the events that are the
    /// runtime's to act on (calls, notifies, messages, cancels, close, ...).
    pub fn route(&mut self, event: Event) -> Option<Event> {
        fn fill<T>(slots: &mut IdMap<Option<T>>, id: u64, value: T) {
            if let Some(slot) = slots.get_mut(id) {
                *slot = Some(value);
            }
        }
        match event {
            Event::Connected { .. } => {
                self.connected = true;
                return Some(event);
            }
            Event::Response { id, result } => {
                if let Some(slot) = self.calls.get_mut(id) {
                    *slot = Some(result);
                    if let Some(arrived) = &mut self.arrived {
                        arrived.push(id);
                    }
                }
            }
            Event::Confirmed { seq } => fill(&mut self.confirms, seq, Ok(())),
            Event::ConfirmFailed { seq, error } => fill(&mut self.confirms, seq, Err(error)),
            Event::Pong { seq, rtt } => fill(&mut self.pongs, seq, rtt),
            other => return Some(other),
        }
        None
    }
}

/// `now + wait`, without the panic of `Instant + Duration` when `wait` is
/// too long to add (a user's "no limit" given as a huge number of seconds):
/// such a wait ends a century on, which no run of a program reaches.
pub fn after(now: std::time::Instant, wait: Duration) -> std::time::Instant {
    /// Long enough to be never, short enough to add to any clock's reading.
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    // A clock a century from overflowing is not one a program runs on.
    now.checked_add(wait.min(CENTURY)).unwrap_or(now)
}

/// The earlier of two optional instants (`None` means "never").
pub fn earliest(
    a: Option<std::time::Instant>,
    b: Option<std::time::Instant>,
) -> Option<std::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
