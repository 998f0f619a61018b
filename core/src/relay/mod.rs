//! The relay (rt-cloud's project server, without its failures): remote
//! services dial in and register names; clients call `name.method` and the
//! relay forwards the call to the service that registered `name`, then routes
//! the answer back. Still no I/O: the relay owns one [`Connection`] per peer
//! and the runtime moves bytes and time for each, by [`ConnId`].
//!
//! What it guarantees:
//! * the call id is remapped per hop, the payload is forwarded untouched (no
//!   decode, no copy) and the caller's remaining deadline is passed on (capped
//!   by [`RelayConfig::max_forward_timeout`]);
//! * answers, errors and cancels are routed back; a cancel travels both hops;
//! * when a service's connection ends, every call pending on it fails at once
//!   with `Unavailable` naming the service, and so does a call for a name
//!   nobody serves;
//! * a registration of a taken name, or of a name the relay does not allow, is
//!   refused with the reason (`Refused`), which the service sees;
//! * the relay's own exposed names are served beside the forwarded ones.
//!
//! A service registers by calling [`REGISTER_METHOD`] with the list of its
//! names (`Vec<String>`); the answer is the list registered.
//!
//! Drive it like a [`Connection`], for many connections at once. After every
//! `handle_*` or command:
//! 1. for each connection [`Relay::poll_touched`] names, drain
//!    `connection(id).poll_transmit()` onto its socket (a forwarded call puts
//!    output on a connection other than the one that was read);
//! 2. drain [`Relay::poll_event`];
//! 3. sleep until [`Relay::poll_timeout`] (or the next input), then
//!    [`Relay::handle_timeout`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::Payload;
use crate::config::{ProtocolConfig, Role};
use crate::connection::Connection;
use crate::dispatch::{HandlerId, Registry};
use crate::error::{CallError, ConfigError, ConnectionError, RemoteError};
use crate::event::{Event, IncomingCall, IncomingNotify};
use crate::framing::Framing;
use crate::message::ErrorKind;

/// The built-in method a service calls to register its names.
pub const REGISTER_METHOD: &str = "rigwire.register";

/// The built-in method a client calls to list the service names routed now
/// (`Vec<String>`, sorted).
pub const SERVICES_METHOD: &str = "rigwire.services";

/// The built-in method a client calls or notifies with a service name
/// (`String`) to receive what that service sends the relay: each notify
/// it sends to a name the relay does not serve itself (its `exp.event`s)
/// goes to every client following it. A connection follows one service; a
/// client whose URL names one (`relay#NAME`) follows it.
pub const FOLLOW_METHOD: &str = "rigwire.follow";

/// Whether a relay registers `name` as a service: 1 to 128 bytes, no `.`
/// (a relay routes `NAME.method` by its first `.`) or control characters,
/// and not `rigwire` (the protocol's own names).
pub fn is_service_name(name: &str) -> bool {
    !(name.is_empty()
        || name.contains('.')
        || name.len() > notifies::MAX_SERVICE_NAME
        || name == "rigwire"
        || name.chars().any(char::is_control))
}

/// The handler id that marks a call or notify to be forwarded.
const FORWARD: HandlerId = HandlerId(u32::MAX);

/// The handler id that marks a service's notify for its followers.
const FAN_OUT: HandlerId = HandlerId(u32::MAX - 1);

mod notifies;
mod output;

pub use output::{PeerOutput, WRITE_AHEAD};

/// Identifies one connection of the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// A client: its calls to `name.method` are forwarded.
    Client,
    /// A remote service: it may register names.
    Service,
}

/// How the relay is set up.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Settings for client connections (their secret, limits, keepalive).
    pub clients: ProtocolConfig,
    /// Settings for service connections (their own secret, limits, keepalive).
    pub services: ProtocolConfig,
    /// Names services may register; `None` allows any name.
    pub allowed: Option<Vec<String>>,
    /// Longest time a forwarded call may take, whatever the caller allows.
    pub max_forward_timeout: Option<Duration>,
    /// Authenticated connections served at once on each listener (clients,
    /// services); more are refused with `ConnectionLimit` and a reason
    /// (default 1024).
    pub max_connections: usize,
    /// Connections still in the handshake per listener (default 64); when
    /// full, the oldest is closed to make room (strangers never crowd out
    /// authenticated peers).
    pub max_handshaking: usize,
    /// Names one service may hold (default 64).
    pub max_names_per_service: usize,
    /// Names all services together may hold (default 1024).
    pub max_names: usize,
    /// Lets services register without a secret (default false: a relay
    /// whose services have no secret refuses to start, since anyone could
    /// register a service and forge its answers).
    pub insecure_services: bool,
    /// The certificate and key both listeners serve when their URL is
    /// `tls://` or `wss://`.
    pub tls: crate::tls::TlsSettings,
}

impl RelayConfig {
    /// What to warn the relay's operator of when it listens at `clients`
    /// and `services`: clients beyond this machine without a secret
    /// ([`ProtocolConfig::exposure_warning`]), or a certificate given to a
    /// listener that serves in clear
    /// ([`TlsSettings::unused_at`](crate::TlsSettings::unused_at)), or one
    /// secret for both sides (the services' secret is what keeps clients
    /// from registering); as a server's
    /// [`Config::listening_warnings`](crate::link::Config::listening_warnings).
    pub fn listening_warnings(&self, clients: &crate::Url, services: &crate::Url) -> Vec<String> {
        let at_clients = crate::link::listening_warnings(&self.clients, &self.tls, clients);
        let shared = (self.clients.secret.is_some() && self.clients.secret == self.services.secret)
            .then(|| {
                "the clients and the services share one secret: any client could register a \
                 service and forge its answers; give the services a secret of their own \
                 (`rigwire secret new services.secret`)"
                    .to_owned()
            });
        at_clients
            .chain(self.tls.unused_at(services, true))
            .chain(shared)
            .collect()
    }

    /// Requires `secret` from clients.
    ///
    /// # Errors
    /// As [`Secret::new`](crate::Secret::new).
    pub fn clients_secret(mut self, secret: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        self.clients = self.clients.secret(secret)?;
        Ok(self)
    }

    /// Requires `secret` from services (a secret of their own, so that a
    /// client cannot register a service and forge its answers).
    ///
    /// # Errors
    /// As [`Secret::new`](crate::Secret::new).
    pub fn services_secret(mut self, secret: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        self.services = self.services.secret(secret)?;
        Ok(self)
    }

    /// Forwards frames of up to `bytes`, on both sides
    /// ([`ProtocolConfig::max_frame`]): a call two hops away carries no more
    /// than the smallest limit on its way, so raise it at the caller and
    /// the service too.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.clients = self.clients.max_frame(bytes);
        self.services = self.services.max_frame(bytes);
        self
    }

    /// Serves this certificate chain and key (PEM files) on listeners
    /// whose URL is `tls://` or `wss://`; read when the relay binds.
    pub fn tls_identity(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls.cert = Some(cert.into());
        self.tls.key = Some(key.into());
        self
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            clients: ProtocolConfig::named("relay"),
            services: ProtocolConfig::named("relay"),
            allowed: None,
            max_forward_timeout: None,
            max_connections: 1024,
            max_handshaking: 64,
            max_names_per_service: 64,
            max_names: 1024,
            insecure_services: false,
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

/// What the relay tells the runtime.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// A peer completed its handshake.
    Connected {
        /// The connection.
        conn: ConnId,
        /// Which listener it came in on.
        side: PeerKind,
        /// The name it announced.
        peer_name: String,
    },
    /// A service registered names.
    Registered {
        /// The service's connection.
        conn: ConnId,
        /// The names now routed to it.
        names: Vec<String>,
    },
    /// A call to one of the relay's own exposed names; answer it with [`Relay::reply`].
    Call {
        /// The caller's connection.
        conn: ConnId,
        /// The call.
        call: IncomingCall,
    },
    /// A notify to one of the relay's own exposed names.
    Notify {
        /// The sender's connection.
        conn: ConnId,
        /// The notify.
        notify: IncomingNotify,
    },
    /// A notify for this peer was dropped, its output being over its limit
    /// (it does not read); said once until a notify reaches it again.
    NotifiesDropped {
        /// The peer's connection.
        conn: ConnId,
        /// The name it announced.
        peer_name: String,
    },
    /// A connection closed; drain its transmits, close its socket, then [`Relay::remove`] it.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        error: ConnectionError,
    },
}

struct Peer {
    conn: Connection,
    side: PeerKind,
    /// Names this service registered.
    names: Vec<String>,
    /// Its place in its listener's admission (none if refused).
    ticket: Option<crate::link::Ticket>,
    /// Refused: `Some(true)` while it is told why, holding a place for
    /// that ([`Admission::may_tell`](crate::link::Admission::may_tell));
    /// `Some(false)` when there was none, to be closed at once.
    refused_telling: Option<bool>,
    /// Counted against its listener's established connections.
    established: bool,
    /// The service whose notifies this client receives ([`FOLLOW_METHOD`]).
    follows: Option<String>,
    /// Notifies for it are being dropped (said once, by [`RelayEvent::NotifiesDropped`]).
    dropping: bool,
}

/// The relay state machine.
pub struct Relay {
    config: RelayConfig,
    own: Registry,
    /// One admission per listener: clients and services never compete.
    admission: [crate::link::Admission; 2],
    /// A graceful shutdown under way: until when, and the reason.
    drain: Option<(Instant, String)>,
    peers: BTreeMap<ConnId, Peer>,
    /// Registered name -> the service serving it.
    routes: BTreeMap<String, ConnId>,
    /// (service, id on the service hop) -> (client, id on the client hop).
    forwarded: BTreeMap<(ConnId, u64), (ConnId, u64)>,
    /// The reverse, for cancels travelling from the client.
    by_client: BTreeMap<(ConnId, u64), (ConnId, u64)>,
    events: VecDeque<RelayEvent>,
    /// Connections that may have output since the runtime last asked.
    touched: BTreeSet<ConnId>,
    next_conn: u64,
    /// Notifies not sent on because their receiver's output was full.
    dropped_notifies: u64,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("connections", &self.peers.len())
            .field("routes", &self.routes)
            .field("forwarded", &self.forwarded.len())
            .finish()
    }
}

/// Why a call or notify to service `name` goes nowhere, naming the
/// services that are connected (`routes`): a misspelt name shows itself.
fn no_service(name: &str, routes: &BTreeMap<String, ConnId>) -> RemoteError {
    const NAMED: usize = 8;
    let mut connected: Vec<&str> = routes.keys().take(NAMED).map(String::as_str).collect();
    if routes.len() > NAMED {
        connected.push("…");
    }
    let now = match connected.is_empty() {
        true => "none is connected now".to_owned(),
        false => format!("connected now: {}", connected.join(", ")),
    };
    RemoteError::new(
        ErrorKind::Unavailable,
        format!("no service '{name}' is connected to this relay ({now})"),
    )
}

impl Relay {
    /// A relay that also serves the names in `own` itself.
    ///
    /// # Errors
    /// [`ConfigError`] if either connection configuration is invalid.
    pub fn new(config: RelayConfig, own: Registry) -> Result<Relay, ConfigError> {
        config.clients.validate()?;
        config.services.validate()?;
        if config.services.secret.is_none() && !config.insecure_services {
            return Err(ConfigError::ServicesSecretRequired);
        }
        Ok(Relay {
            admission: [
                crate::link::Admission::new(
                    "relay",
                    config.max_connections,
                    config.max_handshaking,
                ),
                crate::link::Admission::new(
                    "relay",
                    config.max_connections,
                    config.max_handshaking,
                ),
            ],
            drain: None,
            config,
            own,
            peers: BTreeMap::new(),
            routes: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            by_client: BTreeMap::new(),
            events: VecDeque::new(),
            touched: BTreeSet::new(),
            next_conn: 1,
            dropped_notifies: 0,
        })
    }

    /// A new peer connected on `side`'s listener; its `Hello` is queued.
    ///
    /// # Errors
    /// [`ConfigError`], as [`Connection::new`].
    pub fn accept(
        &mut self,
        side: PeerKind,
        framing: Framing,
        nonce: [u8; 32],
        now: Instant,
    ) -> Result<ConnId, ConfigError> {
        let mut registry = self.own.clone();
        let config = match side {
            PeerKind::Client => {
                registry.set_fallback(Some(FORWARD));
                registry.expose_reserved(SERVICES_METHOD);
                registry.expose_reserved(FOLLOW_METHOD);
                self.config.clients.clone()
            }
            PeerKind::Service => {
                registry.expose_reserved(REGISTER_METHOD);
                registry.set_notify_fallback(FAN_OUT);
                registry.explain_absent(
                    "this is the relay's services URL: a script calls at its clients' URL \
                     (`rigwire relay` prints both: `listening URL clients`); a service's \
                     calls stop at its relay, which has no method of that name; calls back \
                     to a client do not pass through a relay, but a service's notifies \
                     reach every client that follows it (a client of URL#NAME)",
                );
                self.config.services.clone()
            }
        };
        let mut conn = Connection::new(config, registry, Role::Server, framing, nonce, now)?;
        let admission = &mut self.admission[side as usize];
        let admitted = admission.admit();
        let mut refused_telling = None;
        match &admitted {
            Err(refusal) => {
                conn.reject(refusal.code, &refusal.reason);
                refused_telling = Some(admission.may_tell());
            }
            Ok(crate::link::Admitted {
                evicted: Some(old), ..
            }) => self.evict(side, *old),
            Ok(_) => {}
        }
        if admitted.is_ok() {
            // With a secret, admitted or refused before our proof goes out.
            conn.gate_admission();
        }
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.touched.insert(id);
        self.peers.insert(
            id,
            Peer {
                conn,
                side,
                names: Vec::new(),
                ticket: admitted.ok().map(|a| a.ticket),
                refused_telling,
                established: false,
                follows: None,
                dropping: false,
            },
        );
        Ok(id)
    }

    /// The connection `id`, for its getters and for `poll_transmit`.
    pub fn connection(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.peers.get_mut(&id).map(|p| &mut p.conn)
    }

    /// Names currently routed, with the service serving each.
    pub fn routes(&self) -> impl Iterator<Item = (&str, ConnId)> {
        self.routes.iter().map(|(n, c)| (n.as_str(), *c))
    }

    /// The next connection that may have output to transmit since this was
    /// last asked; drain its `poll_transmit` (see the module's call order).
    pub fn poll_touched(&mut self) -> Option<ConnId> {
        self.touched.pop_first()
    }

    /// Calls forwarded and not yet answered.
    pub fn forwarded_in_flight(&self) -> usize {
        self.forwarded.len()
    }

    /// Bytes read from connection `id`'s stream.
    pub fn handle_input(&mut self, id: ConnId, bytes: &[u8], now: Instant) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.conn.handle_input(bytes, now);
            self.process(id, now);
        }
        self.check_drain(now);
    }

    /// One frame (websocket message) from connection `id`.
    pub fn handle_frame(&mut self, id: ConnId, frame: Bytes, now: Instant) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.conn.handle_frame(frame, now);
            self.process(id, now);
        }
        self.check_drain(now);
    }

    /// Connection `id`'s transport saw the peer break the protocol below
    /// the frames: a frame of `len` bytes over the limit
    /// ([`Connection::handle_oversized_frame`]) if `len` is given, else
    /// `reason` ([`Connection::handle_protocol_violation`]).
    pub fn handle_violation(&mut self, id: ConnId, len: Option<u64>, reason: &str, now: Instant) {
        if let Some(p) = self.peers.get_mut(&id) {
            match len {
                Some(len) => p.conn.handle_oversized_frame(len, now),
                None => p.conn.handle_protocol_violation(reason, now),
            }
            self.process(id, now);
        }
        self.check_drain(now);
    }

    /// Connection `id`'s transport ended.
    pub fn handle_transport_closed(&mut self, id: ConnId, reason: &str, now: Instant) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.conn.handle_transport_closed(reason, now);
            self.process(id, now);
        }
        self.check_drain(now);
    }

    /// Lets time pass on every connection.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<ConnId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.peers.get_mut(&id) {
                p.conn.handle_timeout(now);
                if p.conn.queued_output() > 0 {
                    self.touched.insert(id);
                }
            }
            self.process(id, now);
        }
        self.check_drain(now);
    }

    /// The earliest instant at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let drain = self.drain.as_ref().map(|(until, _)| *until);
        self.peers
            .values()
            .filter_map(|p| p.conn.poll_timeout())
            .chain(drain)
            .min()
    }

    /// The next event for the runtime.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// Forgets a closed connection (after its last transmits were written).
    pub fn remove(&mut self, id: ConnId) {
        self.touched.remove(&id);
        if let Some(p) = self.peers.remove(&id) {
            let admission = &mut self.admission[p.side as usize];
            if let Some(ticket) = p.ticket {
                admission.release(ticket, p.established);
            }
            if p.refused_telling == Some(true) {
                admission.told();
            }
        }
    }

    /// Whether connection `id` was refused (the relay full, or shutting
    /// down) while as many refused connections were being told why as the
    /// handshake budget holds: write what it has queued (its `Hello` and
    /// `Reject`) without waiting, then close it and [`remove`](Self::remove)
    /// it at once, so that a crowd that finds the relay full holds no more
    /// of it than a crowd of strangers does.
    pub fn closes_unanswered(&self, id: ConnId) -> bool {
        self.peers
            .get(&id)
            .is_some_and(|p| p.refused_telling == Some(false))
    }

    /// Answers a call to one of the relay's own names.
    ///
    /// # Errors
    /// As [`Connection::reply`]; `NotPending` if the connection is gone.
    pub fn reply(
        &mut self,
        id: ConnId,
        call: u64,
        result: Result<Payload, RemoteError>,
    ) -> Result<(), crate::error::ReplyError> {
        let p = self
            .peers
            .get_mut(&id)
            .ok_or(crate::error::ReplyError::NotPending(call))?;
        self.touched.insert(id);
        p.conn.reply(call, result)
    }

    /// Refuses connection `id` with `code` and the reason its peer is shown
    /// (a relay shutting down refuses newcomers with `Shutdown`).
    pub fn reject(&mut self, id: ConnId, code: crate::message::RejectCode, reason: &str) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.conn.reject(code, reason);
            self.touched.insert(id);
        }
    }

    /// What the relay's peers are told when it shuts down.
    pub fn goodbye(&self) -> String {
        self.admission[0].goodbye()
    }

    /// Shuts down gracefully: no new connection is admitted, forwarded calls
    /// in flight may finish for up to `grace`, then (or as soon as none is
    /// left) every connection is closed as with [`shutdown`](Self::shutdown).
    /// The grace is a timer in [`poll_timeout`](Self::poll_timeout).
    pub fn drain(&mut self, grace: Duration, reason: &str, now: Instant) {
        for a in &mut self.admission {
            a.stop();
        }
        self.drain = Some((crate::link::after(now, grace), reason.to_owned()));
        self.check_drain(now);
    }

    /// During a drain: closes everything once no forwarded call is left or
    /// the grace is over.
    fn check_drain(&mut self, now: Instant) {
        let Some((until, reason)) = &self.drain else {
            return;
        };
        if self.forwarded.is_empty() || now >= *until {
            let reason = reason.clone();
            self.drain = None;
            self.shutdown(&reason, now);
        }
    }

    /// Says goodbye on every connection (a relay shutting down); calls still
    /// in flight are answered `Shutdown` by each connection.
    pub fn shutdown(&mut self, reason: &str, now: Instant) {
        for a in &mut self.admission {
            a.stop();
        }
        let ids: Vec<ConnId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.peers.get_mut(&id) {
                p.conn.shutdown(reason);
            }
            self.process(id, now);
        }
    }

    /// Routes everything connection `id` produced.
    fn process(&mut self, id: ConnId, now: Instant) {
        self.touched.insert(id);
        loop {
            let Some(p) = self.peers.get_mut(&id) else {
                return;
            };
            let side = p.side;
            let Some(event) = p.conn.poll_event() else {
                return;
            };
            match event {
                Event::AdmissionWanted => {
                    self.admit(id, side);
                }
                Event::Connected { peer_name, .. } => {
                    if !self.admit(id, side) {
                        continue;
                    }
                    self.events.push_back(RelayEvent::Connected {
                        conn: id,
                        side,
                        peer_name,
                    })
                }
                Event::Call(call)
                    if side == PeerKind::Service && call.method == REGISTER_METHOD =>
                {
                    self.register(id, call)
                }
                Event::Call(call) if call.handler == FORWARD => self.forward(id, call, now),
                Event::Call(call) if side == PeerKind::Client && call.method == SERVICES_METHOD => {
                    let names: Vec<String> = self.routes.keys().cloned().collect();
                    self.answer_builtin(id, &call, Ok(names));
                }
                Event::Call(call) if side == PeerKind::Client && call.method == FOLLOW_METHOD => {
                    let followed = self.follow(id, &call.args);
                    self.answer_builtin(id, &call, followed);
                }
                Event::Call(call) => self.events.push_back(RelayEvent::Call { conn: id, call }),
                Event::Notify(n) if n.handler == FORWARD => self.forward_notify(id, n, now),
                Event::Notify(n) if n.handler == FAN_OUT => self.fan_out(id, n, now),
                Event::Notify(n) if side == PeerKind::Client && n.method == FOLLOW_METHOD => {
                    self.notify_done(id);
                    if let Err(e) = self.follow(id, &n.args) {
                        self.report(id, e);
                    }
                }
                Event::Notify(notify) => self
                    .events
                    .push_back(RelayEvent::Notify { conn: id, notify }),
                Event::Response {
                    id: service_call,
                    result,
                } => self.answer(id, service_call, result, now),
                Event::Cancelled {
                    id: client_call, ..
                } => {
                    if let Some((service, service_call)) = self.by_client.remove(&(id, client_call))
                    {
                        self.forwarded.remove(&(service, service_call));
                        if let Some(s) = self.peers.get_mut(&service) {
                            s.conn.cancel(service_call);
                            self.touched.insert(service);
                        }
                    }
                }
                Event::Closed(error) => {
                    self.closed(id);
                    self.events
                        .push_back(RelayEvent::Closed { conn: id, error });
                }
                _ => {}
            }
        }
    }

    /// A connection's peer has proven itself (before our proof goes out,
    /// with a secret; once its handshake is over, without): it is admitted
    /// (our proof, if it waits, goes out) or refused as far as its
    /// handshake has got ([`Connection::refuse`]). Whether admitted.
    fn admit(&mut self, id: ConnId, side: PeerKind) -> bool {
        let admitted = self.establish(id, side);
        let Some(p) = self.peers.get_mut(&id) else {
            return false;
        };
        match &admitted {
            Ok(()) => p.conn.admit(),
            Err(refusal) => p.conn.refuse(refusal.code, &refusal.reason),
        }
        admitted.is_ok()
    }

    /// A connection authenticated: it counts against its listener's
    /// established connections, or is refused if they are at the limit.
    fn establish(&mut self, id: ConnId, side: PeerKind) -> Result<(), crate::link::Refusal> {
        let Some(p) = self.peers.get_mut(&id) else {
            return Ok(());
        };
        let Some(ticket) = p.ticket else {
            return Ok(());
        };
        if p.established {
            return Ok(()); // before its handshake completed (`AdmissionWanted`)
        }
        self.admission[side as usize].established(ticket)?;
        p.established = true;
        Ok(())
    }

    /// Closes the connection holding `ticket` on `side`'s listener, the
    /// oldest still in the handshake, to make room for a newcomer.
    fn evict(&mut self, side: PeerKind, ticket: crate::link::Ticket) {
        let victim = self
            .peers
            .iter_mut()
            .find(|(_, p)| p.side == side && p.ticket == Some(ticket));
        if let Some((id, p)) = victim {
            p.ticket = None; // its place was given away already
            p.conn.reject(
                crate::message::RejectCode::HandshakeTimeout,
                "too many connections are in the handshake; the oldest is closed",
            );
            self.touched.insert(*id);
        }
    }

    fn register(&mut self, id: ConnId, call: IncomingCall) {
        let outcome = match call.args.decode::<Vec<String>>() {
            Err(e) => Err(RemoteError::new(
                ErrorKind::BadArguments,
                format!("{REGISTER_METHOD} takes a list of names: {e}"),
            )),
            Ok(names) => self.check_names(id, &names).map(|()| names),
        };
        let result = outcome.inspect(|names| {
            // Registering a name again is idempotent: each is held once.
            for name in names {
                self.routes.insert(name.clone(), id);
            }
            if let Some(p) = self.peers.get_mut(&id) {
                for name in names {
                    if !p.names.contains(name) {
                        p.names.push(name.clone());
                    }
                }
            }
            self.events.push_back(RelayEvent::Registered {
                conn: id,
                names: names.clone(),
            });
        });
        self.answer_builtin(id, &call, result);
    }

    /// Answers a call to one of the relay's built-in methods on connection
    /// `id`, in the call's codec.
    fn answer_builtin<T: serde::Serialize>(
        &mut self,
        id: ConnId,
        call: &IncomingCall,
        result: Result<T, RemoteError>,
    ) {
        let encoded = result.and_then(|value| {
            Payload::encode_as(call.args.codec, &value)
                .map_err(|e| RemoteError::new(ErrorKind::Internal, e.to_string()))
        });
        if let Some(p) = self.peers.get_mut(&id) {
            let _ = p.conn.reply(call.id, encoded);
        }
    }

    fn check_names(&self, id: ConnId, names: &[String]) -> Result<(), RemoteError> {
        let refused = |message: String| Err(RemoteError::new(ErrorKind::Refused, message));
        let mut unique: Vec<&String> = names.iter().collect();
        unique.sort();
        unique.dedup();
        if unique.len() != names.len() {
            return refused("a registration names a service twice".to_owned());
        }
        let held = self.peers.get(&id).map_or(&[][..], |p| &p.names[..]);
        let new = names.iter().filter(|n| !held.contains(n)).count();
        let limit = self.config.max_names_per_service;
        if held.len() + new > limit {
            return refused(format!(
                "a service may hold at most {limit} names ({} held, {new} more asked)",
                held.len()
            ));
        }
        let limit = self.config.max_names;
        if self.routes.len() + new > limit {
            return refused(format!(
                "this relay holds at most {limit} service names ({} held)",
                self.routes.len()
            ));
        }
        for name in names {
            if !is_service_name(name) {
                let why = ConfigError::NotAServiceName(name.clone());
                return Err(RemoteError::new(ErrorKind::Refused, why.to_string()));
            }
            if let Some(own) = self.own.methods().iter().find(|m| {
                m.name
                    .split_once('.')
                    .map_or(m.name == *name, |(prefix, _)| prefix == name)
            }) {
                return Err(RemoteError::new(
                    ErrorKind::Refused,
                    format!(
                        "the relay serves '{}' itself, so no service may be named '{name}'",
                        own.name
                    ),
                ));
            }
            if let Some(allowed) = &self.config.allowed {
                if !allowed.iter().any(|a| a == name) {
                    return Err(RemoteError::new(
                        ErrorKind::Refused,
                        format!(
                            "this relay does not accept a service named '{name}' (allowed: {})",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
            if let Some(holder) = self.routes.get(name).filter(|holder| **holder != id) {
                let who = self
                    .peers
                    .get(holder)
                    .map(|p| p.conn.peer_name())
                    .unwrap_or_default();
                return Err(RemoteError::new(
                    ErrorKind::Refused,
                    format!("the service name '{name}' is already registered by '{who}'"),
                ));
            }
        }
        Ok(())
    }

    /// Where a client's `service.method` goes: the service's connection, its
    /// name and the method there; or why it goes nowhere (`NoSuchMethod`
    /// for a name that is not `service.method`, `Unavailable` for a service
    /// not connected).
    fn route<'m>(&self, method: &'m str) -> Result<(ConnId, &'m str, &'m str), RemoteError> {
        let (name, inner) = method.split_once('.').unwrap_or((method, ""));
        if method == REGISTER_METHOD {
            // A service that dialed the clients' URL instead of the services'.
            return Err(RemoteError::new(
                ErrorKind::Refused,
                "services register at the relay's services URL, not at this one, its \
                 clients' (`rigwire relay` prints both: `listening URL services`)",
            ));
        }
        if inner.is_empty() || name == "rigwire" {
            return Err(RemoteError::new(
                ErrorKind::NoSuchMethod,
                format!("no method '{method}' here; forwarded calls are named service.method"),
            ));
        }
        match self.routes.get(name) {
            Some(&service) => Ok((service, name, inner)),
            None => Err(no_service(name, &self.routes)),
        }
    }

    /// A client's call to `service.method`: onward to the service, or answered `Unavailable`.
    fn forward(&mut self, client: ConnId, call: IncomingCall, now: Instant) {
        let outcome = match self.route(&call.method) {
            Err(e) => Err(e),
            Ok((service, name, method)) => {
                let left = call.deadline.map(|d| d.saturating_duration_since(now));
                let timeout = match (left, self.config.max_forward_timeout) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                self.touched.insert(service);
                let sent = self
                    .peers
                    .get_mut(&service)
                    .map(|s| s.conn.call(method, call.args.clone(), timeout, now));
                match sent {
                    Some(Ok(service_call)) => {
                        self.forwarded
                            .insert((service, service_call), (client, call.id));
                        self.by_client
                            .insert((client, call.id), (service, service_call));
                        return;
                    }
                    Some(Err(e)) => Err(self.hop_error(service, e)),
                    None => Err(no_service(name, &self.routes)),
                }
            }
        };
        if let Some(p) = self.peers.get_mut(&client) {
            let _ = p.conn.reply(call.id, outcome);
        }
    }

    /// The service answered (or the call to it failed): back to the client,
    /// unless the client's own deadline has passed by `now`: a callee sends
    /// nothing then (spec §6.1), and the relay is the client's callee.
    fn answer(
        &mut self,
        service: ConnId,
        service_call: u64,
        result: Result<Payload, CallError>,
        now: Instant,
    ) {
        let Some((client, client_call)) = self.forwarded.remove(&(service, service_call)) else {
            return;
        };
        self.by_client.remove(&(client, client_call));
        let result = result.map_err(|e| self.hop_error(service, e));
        self.touched.insert(client);
        if let Some(p) = self.peers.get_mut(&client) {
            // An expired call leaves the table here, and gets no answer.
            if !p.conn.expire_if_due(client_call, || now) {
                let _ = p.conn.reply(client_call, result);
            }
        }
    }

    /// What the client is told when the service hop failed.
    fn hop_error(&self, service: ConnId, err: CallError) -> RemoteError {
        let name = self
            .peers
            .get(&service)
            .map(|p| p.names.join(", "))
            .unwrap_or_default();
        match err {
            CallError::Remote(e) => e,
            // The client is answered only while its own deadline has not
            // passed: the relay's cap is what did.
            CallError::DeadlineExceeded => RemoteError::new(
                ErrorKind::DeadlineExceeded,
                match self.config.max_forward_timeout {
                    Some(cap) => format!(
                        "service '{name}' did not answer within the relay's limit of \
                         {cap:?} (its max_forward_timeout)"
                    ),
                    None => format!("service '{name}' did not answer in time"),
                },
            ),
            CallError::Disconnected(e) => RemoteError::new(
                ErrorKind::Unavailable,
                format!("service '{name}' disconnected: {e}"),
            ),
            CallError::Busy(why) => {
                RemoteError::new(ErrorKind::Busy, format!("service '{name}': {why}"))
            }
            CallError::TooLarge { len, limit } => RemoteError::new(
                ErrorKind::TooLarge,
                format!("a frame of {len} bytes exceeds the service hop's limit of {limit}"),
            ),
            CallError::Backpressure { .. } => RemoteError::new(
                ErrorKind::Busy,
                format!("service '{name}' is not keeping up"),
            ),
        }
    }

    /// A connection ended: its names stop routing; a client's forwarded calls
    /// are cancelled at their services. (A service's pending calls were failed
    /// by its core already, through `answer`.)
    fn closed(&mut self, id: ConnId) {
        self.routes.retain(|_, holder| *holder != id);
        let orphaned: Vec<((ConnId, u64), (ConnId, u64))> = self
            .by_client
            .range((id, 0)..=(id, u64::MAX))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (client_key, (service, service_call)) in orphaned {
            self.by_client.remove(&client_key);
            self.forwarded.remove(&(service, service_call));
            if let Some(s) = self.peers.get_mut(&service) {
                s.conn.cancel(service_call);
                self.touched.insert(service);
            }
        }
    }
}
