//! Sockets a server holds before their peers have said anything, so that a
//! silent stranger costs no thread or task of its own: the runtime watches
//! the lobby's sockets together and gives one a thread only once its peer
//! speaks. Each is held for at most the handshake timeout (counted from the
//! connection's own start, so that its timer has run out too when the lobby
//! lets it go), and the lobby decides what a connection let go unheard is
//! told: the handshake timeout, or the eviction when a newcomer took its
//! place in the handshake budget ([`Admission`]).

use std::time::Instant;

use bytes::Bytes;

use crate::connection::Connection;
use crate::link::{Admission, Ticket};

/// A connection the lobby lets go: to be served (its peer spoke) or
/// dropped, after its [`last_words`](Self::last_words) are sent.
#[derive(Debug)]
pub struct Leaving<S> {
    /// The server's id for it.
    pub id: u64,
    /// Its place in the admission, to pass on or release.
    pub ticket: Ticket,
    /// The runtime's socket.
    pub socket: S,
    /// Its connection, our `Hello` already sent (plain streams; a websocket
    /// waits for the peer's upgrade request before it has one).
    pub conn: Option<Connection>,
}

impl<S> Leaving<S> {
    /// What its connection has left to say before it is dropped (a
    /// `Reject` saying why), in order; send what the socket takes at once,
    /// without waiting for it.
    pub fn last_words(&mut self) -> Vec<Bytes> {
        let conn = self.conn.as_mut();
        conn.map(|c| std::iter::from_fn(|| c.poll_transmit()).collect())
            .unwrap_or_default()
    }
}

/// The sockets held, with the runtime's socket type `S`.
#[derive(Debug)]
pub struct Lobby<S> {
    held: Vec<(Leaving<S>, Instant)>,
}

impl<S> Default for Lobby<S> {
    fn default() -> Self {
        Lobby { held: Vec::new() }
    }
}

impl<S> Lobby<S> {
    /// Holds `socket` (the server's connection `id`, admitted with
    /// `ticket`) until `until`; `conn` is its connection, if it has one yet.
    pub fn hold(
        &mut self,
        id: u64,
        ticket: Ticket,
        socket: S,
        conn: Option<Connection>,
        until: Instant,
    ) {
        let leaving = Leaving {
            id,
            ticket,
            socket,
            conn,
        };
        self.held.push((leaving, until));
    }

    /// The sockets held, in the order [`spoke`](Self::spoke) counts them.
    pub fn sockets(&self) -> impl Iterator<Item = &S> {
        self.held.iter().map(|(l, _)| &l.socket)
    }

    /// When the next one runs out; `None` when the lobby is empty.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.iter().map(|(_, until)| *until).min()
    }

    /// Lets go of those whose peers spoke (`positions` count
    /// [`sockets`](Self::sockets)), to be served.
    pub fn spoke(&mut self, mut positions: Vec<usize>) -> Vec<Leaving<S>> {
        positions.sort_unstable();
        positions.dedup();
        positions.retain(|&i| i < self.held.len());
        // From the last: a swap_remove moves only what is past every
        // position still to take.
        positions
            .into_iter()
            .rev()
            .map(|i| self.held.swap_remove(i).0)
            .collect()
    }

    /// Lets go of those silent for the whole handshake timeout by `now`:
    /// their connections have run their timers, and their last words say
    /// so. Release their tickets and drop them.
    pub fn expire(&mut self, now: Instant) -> Vec<Leaving<S>> {
        let mut expired = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if now < self.held[i].1 {
                i += 1;
                continue;
            }
            let (mut leaving, _) = self.held.swap_remove(i);
            if let Some(conn) = &mut leaving.conn {
                conn.handle_timeout(now);
            }
            expired.push(leaving);
        }
        expired
    }

    /// Lets go of the one holding `ticket`, evicted for a newcomer; its
    /// last words say so. `None` if it is not held here (it has a thread
    /// already: close its socket).
    pub fn evict(&mut self, ticket: Ticket) -> Option<Leaving<S>> {
        let at = self.held.iter().position(|(l, _)| l.ticket == ticket)?;
        let (mut leaving, _) = self.held.swap_remove(at);
        if let Some(conn) = &mut leaving.conn {
            Admission::evict(conn);
        }
        Some(leaving)
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}
