//! Notifies through the relay: a client's `service.method` notify on to its
//! service, a service's notifies out to the clients following it
//! ([`FOLLOW_METHOD`]), and broadcasts from the relay itself.
//!
//! A notify has no answer to wait for, so none may queue without bound: one
//! for a peer whose output is over its limit (it does not read) is dropped
//! and counted ([`Relay::dropped_notifies`]), and the runtime told once
//! ([`RelayEvent::NotifiesDropped`]) until one reaches that peer again; a
//! client whose notify is dropped so is told, with `Error{id 0, Busy}`, as a
//! callee that drops one does (spec §6.3).

use std::time::Instant;

use super::{ConnId, PeerKind, Relay, RelayEvent, FOLLOW_METHOD};
use crate::codec::Payload;
use crate::dispatch::RESERVED_PREFIX;
use crate::error::RemoteError;
use crate::event::IncomingNotify;
use crate::message::ErrorKind;

/// The longest service name a relay registers, so the longest one worth following.
pub(super) const MAX_SERVICE_NAME: usize = 128;

impl Relay {
    /// Notifies every connected client that has room for it; returns how many.
    pub fn broadcast_clients(&mut self, method: &str, args: &Payload, now: Instant) -> usize {
        let clients = self
            .peers
            .iter()
            .filter(|(_, p)| p.side == PeerKind::Client);
        let clients = clients.map(|(id, _)| *id).collect();
        self.send_to(clients, method, args, now).0
    }

    /// Notifies the service registered as `name`, if one is and its output
    /// has room; returns how many (0 or 1).
    pub fn broadcast_service(
        &mut self,
        name: &str,
        method: &str,
        args: &Payload,
        now: Instant,
    ) -> usize {
        let service = self.routes.get(name).copied();
        self.send_to(service.into_iter().collect(), method, args, now)
            .0
    }

    /// A notify to one of the relay's own names (a [`RelayEvent::Notify`]
    /// of connection `id`) has been handled: its place under the sender's
    /// incoming limit is free again. The runtime calls it when the handler
    /// ends.
    pub fn notify_done(&mut self, id: ConnId) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.conn.notify_finished();
        }
    }

    /// Notifies dropped since the relay started because the peer they were
    /// for had no room (its output over its limit).
    pub fn dropped_notifies(&self) -> u64 {
        self.dropped_notifies
    }

    /// A client's notify to `service.method`: on to the service, if it has
    /// room. The client is told (`Error{id 0}`, as a callee tells of a
    /// notify it cannot take) when it goes nowhere: no such service, or one
    /// that does not read.
    pub(super) fn forward_notify(&mut self, client: ConnId, notify: IncomingNotify, now: Instant) {
        self.notify_done(client);
        let refusal = match self.route(&notify.method) {
            Err(e) => e,
            Ok((service, name, method)) => {
                let (_, dropped) = self.send_to(vec![service], method, &notify.args, now);
                if dropped == 0 {
                    return;
                }
                let message = format!("the service '{name}' is not reading what it is sent");
                RemoteError::new(ErrorKind::Busy, message)
            }
        };
        let message = format!("notify to '{}' dropped: {}", notify.method, refusal.message);
        self.report(client, RemoteError::new(refusal.kind, message));
    }

    /// Tells peer `id` of a notify of its that went nowhere, with
    /// `Error{id 0}`, as a callee tells of a notify it cannot take.
    pub(super) fn report(&mut self, id: ConnId, err: RemoteError) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.conn.send_error(0, &err);
            self.touched.insert(id);
        }
    }

    /// A service's notify to a name the relay does not serve itself: to
    /// every client following one of the service's names, as it was sent.
    /// A reserved name (`rigwire.*`) is the protocol's, which no client's
    /// application hears: the service is told so, and nobody else.
    pub(super) fn fan_out(&mut self, service: ConnId, notify: IncomingNotify, now: Instant) {
        self.notify_done(service);
        if notify.method.starts_with(RESERVED_PREFIX) {
            let message = format!(
                "notify to '{}', which is not exposed: names starting with \
                 '{RESERVED_PREFIX}' belong to the protocol, and are not passed on to clients",
                notify.method
            );
            return self.report(service, RemoteError::new(ErrorKind::NoSuchMethod, message));
        }
        let Some(names) = self.peers.get(&service).map(|p| &p.names) else {
            return;
        };
        let followers = self.peers.iter().filter(|(_, p)| {
            p.side == PeerKind::Client && p.follows.as_ref().is_some_and(|f| names.contains(f))
        });
        let followers = followers.map(|(id, _)| *id).collect();
        self.send_to(followers, &notify.method, &notify.args, now);
    }

    /// Client `id` follows the service named in `args` from now on, instead
    /// of the one it followed.
    pub(super) fn follow(&mut self, id: ConnId, args: &Payload) -> Result<(), RemoteError> {
        let bad = |why: String| RemoteError::new(ErrorKind::BadArguments, why);
        let name: String = args
            .decode()
            .map_err(|e| bad(format!("{FOLLOW_METHOD} takes a service name: {e}")))?;
        if name.len() > MAX_SERVICE_NAME {
            return Err(bad(format!(
                "{FOLLOW_METHOD}: a service name has at most {MAX_SERVICE_NAME} bytes, not {}",
                name.len()
            )));
        }
        if let Some(p) = self.peers.get_mut(&id) {
            p.follows = Some(name);
        }
        Ok(())
    }

    /// Sends the notify to each of `peers` still open whose output has
    /// room; returns how many it reached and how many it did not.
    fn send_to(
        &mut self,
        peers: Vec<ConnId>,
        method: &str,
        args: &Payload,
        now: Instant,
    ) -> (usize, usize) {
        let (mut reached, mut dropped) = (0, 0);
        for id in peers {
            let Some(p) = self.peers.get_mut(&id).filter(|p| !p.conn.is_closed()) else {
                continue;
            };
            if p.conn.wants_input() && p.conn.notify(method, args.clone(), now).is_ok() {
                self.touched.insert(id);
                p.dropping = false;
                reached += 1;
                continue;
            }
            dropped += 1;
            if !std::mem::replace(&mut p.dropping, true) {
                let peer_name = p.conn.peer_name().to_owned();
                let conn = id;
                self.events
                    .push_back(RelayEvent::NotifiesDropped { conn, peer_name });
            }
        }
        self.dropped_notifies += dropped as u64;
        (reached, dropped)
    }
}
