//! A deterministic two-peer harness: two [`Connection`]s joined by a simulated
//! network with virtual time, latency, and seeded loss and corruption (as
//! quinn-proto's `Pair` and str0m's netem). Used by the test suite and the
//! fuzz targets; it performs no I/O and reads no clock.
//!
//! [`LinkPair`] does the same one layer up: two [`Link`](crate::Link)s driven
//! as a runtime drives them, over byte streams with finite kernel buffers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{ProtocolConfig, Role};
use crate::connection::Connection;
use crate::dispatch::Registry;
use crate::event::Event;
use crate::framing::Framing;

mod links;
pub use links::{Behaviour, CallRecord, LinkPair};

// Internals the property tests and fuzz targets drive directly.
pub use crate::calls::{CallTable, InsertError};
pub use crate::framing::decoder::FrameDecoder;

/// Which peer of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The dialing side.
    Client,
    /// The accepting side.
    Server,
}

/// Impairments of the simulated network. Randomness comes from a seeded
/// generator, so every run with the same seed is identical.
#[derive(Debug, Clone, Copy)]
pub struct Netem {
    /// One-way delay added to every chunk.
    pub latency: Duration,
    /// Probability that a chunk (a datagram, or a write on a stream) is lost.
    pub loss: f64,
    /// Probability that one byte of a chunk is flipped.
    pub garble: f64,
    /// Seed for the loss and corruption decisions.
    pub seed: u64,
}

impl Default for Netem {
    fn default() -> Self {
        Netem {
            latency: Duration::from_millis(1),
            loss: 0.0,
            garble: 0.0,
            seed: 0x5eed,
        }
    }
}

/// Two connections, a network between them, and the events each has emitted.
#[derive(Debug)]
pub struct Pair {
    /// The dialing side.
    pub client: Connection,
    /// The accepting side.
    pub server: Connection,
    /// Events the client has emitted, oldest first.
    pub client_events: Vec<Event>,
    /// Events the server has emitted, oldest first.
    pub server_events: Vec<Event>,
    /// Virtual time now.
    pub now: Instant,
    /// Network impairments; may be changed between steps.
    pub netem: Netem,
    /// Chunks on the wire: delivery time, destination, bytes.
    wire: VecDeque<(Instant, Side, Bytes)>,
    /// Whether a side's transport has been cut (its chunks vanish).
    cut: [bool; 2],
    framing: Framing,
    rng: u64,
}

impl Pair {
    /// Builds both sides with fixed nonces (`[1; 32]` client, `[2; 32]` server).
    ///
    /// # Panics
    /// If either configuration is invalid: this is a test helper.
    pub fn new(
        epoch: Instant,
        framing: Framing,
        client: (ProtocolConfig, Registry),
        server: (ProtocolConfig, Registry),
        netem: Netem,
    ) -> Pair {
        let client = Connection::new(client.0, client.1, Role::Client, framing, [1; 32], epoch)
            .expect("valid client config");
        let server = Connection::new(server.0, server.1, Role::Server, framing, [2; 32], epoch)
            .expect("valid server config");
        Pair {
            client,
            server,
            client_events: Vec::new(),
            server_events: Vec::new(),
            now: epoch,
            rng: netem.seed | 1,
            netem,
            wire: VecDeque::new(),
            cut: [false; 2],
            framing,
        }
    }

    /// One side's connection.
    pub fn conn(&mut self, side: Side) -> &mut Connection {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// One side's events so far.
    pub fn events(&self, side: Side) -> &[Event] {
        match side {
            Side::Client => &self.client_events,
            Side::Server => &self.server_events,
        }
    }

    /// Removes and returns one side's events so far.
    pub fn take_events(&mut self, side: Side) -> Vec<Event> {
        match side {
            Side::Client => std::mem::take(&mut self.client_events),
            Side::Server => std::mem::take(&mut self.server_events),
        }
    }

    /// Silently drops everything `side` sends from now on, as a dead host or
    /// a pulled cable would: the other side hears nothing, not even a close.
    pub fn cut(&mut self, side: Side) {
        self.cut[side as usize] = true;
    }

    /// Delivers bytes to `side` directly, as if the other side had sent them
    /// (one frame, without length prefix, on message transports).
    pub fn inject(&mut self, to: Side, bytes: &[u8]) {
        self.deliver(to, Bytes::copy_from_slice(bytes));
        self.settle();
    }

    fn deliver(&mut self, to: Side, bytes: Bytes) {
        let now = self.now;
        match self.framing {
            Framing::Stream => self.conn(to).handle_input(&bytes, now),
            Framing::Message => self.conn(to).handle_frame(bytes, now),
        }
    }

    /// Processes everything due at the current instant, without moving time,
    /// until neither side has anything more to do now.
    pub fn settle(&mut self) {
        loop {
            let mut progressed = false;
            for side in [Side::Client, Side::Server] {
                let now = self.now;
                let conn = self.conn(side);
                if conn.poll_timeout().is_some_and(|t| t <= now) {
                    conn.handle_timeout(now);
                }
                progressed |= self.transmit(side);
                progressed |= self.collect_events(side);
            }
            while let Some(&(at, to, _)) = self.wire.front() {
                if at > self.now {
                    break;
                }
                let (_, _, bytes) = self.wire.pop_front().expect("front exists");
                self.deliver(to, bytes);
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Moves virtual time forward by `by`, stopping at every delivery and timer
    /// on the way so that each happens at its own instant.
    pub fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        self.settle();
        while let Some(next) = self.next_wakeup().filter(|&t| t <= target) {
            self.now = self.now.max(next);
            self.settle();
        }
        self.now = target;
        self.settle();
    }

    /// Delivers everything in flight, moving time only as far as the last
    /// delivery needs (timers due on the way fire too).
    pub fn run(&mut self) {
        self.settle();
        for _ in 0..10_000 {
            let Some(&(at, _, _)) = self.wire.back() else {
                return;
            };
            let until = at.saturating_duration_since(self.now);
            self.advance(until);
        }
    }

    /// Completes the handshake (on an unimpaired network).
    pub fn connect(&mut self) {
        self.run();
    }

    fn next_wakeup(&self) -> Option<Instant> {
        [
            self.client.poll_timeout(),
            self.server.poll_timeout(),
            self.wire.iter().map(|(t, _, _)| *t).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn transmit(&mut self, from: Side) -> bool {
        let to = match from {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let mut any = false;
        while let Some(chunk) = self.conn(from).poll_transmit() {
            any = true;
            if self.cut[from as usize] || self.chance(self.netem.loss) {
                continue;
            }
            let chunk = if self.chance(self.netem.garble) && !chunk.is_empty() {
                let mut bytes = chunk.to_vec();
                let at = (self.next_random() as usize) % bytes.len();
                bytes[at] ^= 1 << (self.next_random() % 8);
                Bytes::from(bytes)
            } else {
                chunk
            };
            let at = self.now + self.netem.latency;
            // Keep the wire ordered by delivery time (it is already, as latency is fixed).
            self.wire.push_back((at, to, chunk));
        }
        any
    }

    fn collect_events(&mut self, side: Side) -> bool {
        let mut any = false;
        while let Some(event) = self.conn(side).poll_event() {
            any = true;
            match side {
                Side::Client => self.client_events.push(event),
                Side::Server => self.server_events.push(event),
            }
        }
        any
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next_random() as f64 / u64::MAX as f64) < p
    }

    /// xorshift64: deterministic, seeded, good enough to pick bytes to damage.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}
