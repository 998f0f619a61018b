//! Two [`Link`]s driven the way a runtime drives them, over simulated byte
//! streams with finite kernel buffers, virtual time, latency and loss of
//! whole peers: the harness in which the link's promise is stated as an
//! invariant ("every call ends exactly once, by its deadline").
//!
//! Each side's "runtime" follows the link's interest exactly: it writes only
//! what the pipe towards the peer has room for, reads only when the link
//! wants input, sleeps until `wake_at`, and a caller refused for room waits
//! for the room edge within its deadline. The peers' behaviour can be
//! changed at any instant ([`Behaviour`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::Payload;
use crate::config::{ProtocolConfig, Role};
use crate::connection::Connection;
use crate::dispatch::Registry;
use crate::error::CallError;
use crate::framing::Framing;
use crate::link::{Admit, Job, Link};

use super::Side;

/// How one side of a [`LinkPair`] behaves from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// A well-behaved runtime: follows the interest.
    Normal,
    /// Never reads again, but writes and runs its timers (a peer whose
    /// application stopped draining its socket).
    Deaf,
    /// Does nothing at all: no reads, no writes, no timers (a frozen
    /// process whose kernel still holds the socket open).
    Frozen,
    /// Gone without a word: nothing it sent is delivered any more, and what
    /// is sent to it vanishes (a pulled cable).
    Dead,
}

/// One direction of a simulated byte stream: bytes become readable at the
/// far end after the latency; the kernel buffers at most `capacity` bytes.
#[derive(Debug, Default)]
struct Pipe {
    chunks: VecDeque<(Instant, Bytes)>,
    buffered: usize,
}

/// A call made by a side's application, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// Which side called.
    pub from: Side,
    /// When it was made.
    pub made: Instant,
    /// Its deadline, fixed when it was made.
    pub deadline: Option<Instant>,
    /// How and when it ended (`None` while pending). Recorded once: a
    /// second ending panics the harness.
    pub ended: Option<(Instant, Result<Payload, CallError>)>,
    /// The link's id once admitted.
    id: Option<u64>,
    method: String,
    args: Payload,
}

/// Two links, two pipes, and the calls each side's application made.
#[derive(Debug)]
pub struct LinkPair {
    links: [Link; 2],
    behaviour: [Behaviour; 2],
    pipes: [Pipe; 2],
    /// Kernel buffer per direction, in bytes.
    pub capacity: usize,
    /// One-way delay.
    pub latency: Duration,
    /// Bytes read per read.
    pub read_chunk: usize,
    /// Virtual time now.
    pub now: Instant,
    /// Every call made, in order.
    pub calls: Vec<CallRecord>,
    /// Handlers whose reply is due at an instant: (side, id, due, payload).
    handlers: Vec<(Side, u64, Instant, Payload)>,
    /// How long a handler of the method `slow` takes.
    pub slow_handler: Duration,
    /// Handlers started so far, per side.
    pub started: [usize; 2],
    /// What each side's application heard the peer report ([`Job::PeerError`]).
    pub reported: [Vec<crate::RemoteError>; 2],
}

fn idx(side: Side) -> usize {
    side as usize
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

impl LinkPair {
    /// Builds both sides over byte streams (nonces `[1; 32]` and `[2; 32]`);
    /// both expose `echo` and `slow`, which answer with their arguments.
    ///
    /// # Panics
    /// If either configuration is invalid: this is a test helper.
    pub fn new(epoch: Instant, client: ProtocolConfig, server: ProtocolConfig) -> LinkPair {
        let registry = || {
            let mut r = Registry::new();
            r.expose("echo").expect("valid name");
            r.expose("slow").expect("valid name");
            r
        };
        let make = |config, role, nonce| {
            let conn = Connection::new(config, registry(), role, Framing::Stream, nonce, epoch)
                .expect("valid config");
            Link::new(conn)
        };
        LinkPair {
            links: [
                make(client, Role::Client, [1; 32]),
                make(server, Role::Server, [2; 32]),
            ],
            behaviour: [Behaviour::Normal; 2],
            pipes: [Pipe::default(), Pipe::default()],
            capacity: 64 * 1024,
            latency: Duration::from_millis(1),
            read_chunk: 64 * 1024,
            now: epoch,
            calls: Vec::new(),
            handlers: Vec::new(),
            slow_handler: Duration::from_millis(50),
            started: [0; 2],
            reported: [Vec::new(), Vec::new()],
        }
    }

    /// One side's link.
    pub fn link(&mut self, side: Side) -> &mut Link {
        &mut self.links[idx(side)]
    }

    /// Changes how `side` behaves from now on.
    pub fn set_behaviour(&mut self, side: Side, behaviour: Behaviour) {
        self.behaviour[idx(side)] = behaviour;
        if behaviour == Behaviour::Dead {
            self.pipes[idx(side)] = Pipe::default();
        }
    }

    /// `from`'s application calls `method` with `len` bytes of arguments and
    /// `timeout`. Returns the index of its record in [`calls`](Self::calls).
    pub fn call(
        &mut self,
        from: Side,
        method: &str,
        len: usize,
        timeout: Option<Duration>,
    ) -> usize {
        let deadline = self.links[idx(from)].deadline(timeout, self.now);
        self.calls.push(CallRecord {
            from,
            made: self.now,
            deadline,
            ended: None,
            id: None,
            method: method.to_owned(),
            args: Payload::new(crate::message::Codec::Postcard, vec![7u8; len]),
        });
        let at = self.calls.len() - 1;
        self.try_admit(at);
        self.settle();
        at
    }

    /// Processes everything due now, without moving time.
    pub fn settle(&mut self) {
        for _ in 0..100_000 {
            let mut progressed = false;
            for side in [Side::Client, Side::Server] {
                progressed |= self.step(side);
            }
            if !progressed {
                return;
            }
        }
        panic!("the pair did not settle: something spins");
    }

    /// Moves time forward by `by`, stopping at every instant something is due.
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

    /// Calls still waiting for their end.
    pub fn pending(&self) -> usize {
        self.calls.iter().filter(|c| c.ended.is_none()).count()
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let mut next: Vec<Instant> = Vec::new();
        for side in [Side::Client, Side::Server] {
            let i = idx(side);
            if self.behaviour[i] == Behaviour::Frozen {
                continue;
            }
            if let Some(t) = self.links[i].poll_interest().wake_at {
                next.push(t);
            }
            // Bytes becoming readable at this side.
            if let Some((t, _)) = self.pipes[idx(other(side))].chunks.front() {
                next.push(*t);
            }
        }
        next.extend(
            self.calls
                .iter()
                .filter(|c| c.ended.is_none())
                .filter_map(|c| c.deadline),
        );
        next.extend(self.handlers.iter().map(|h| h.2));
        next.into_iter().filter(|t| *t > self.now).min()
    }

    /// One round of one side's runtime; returns whether anything happened.
    fn step(&mut self, side: Side) -> bool {
        let i = idx(side);
        let now = self.now;
        let behaviour = self.behaviour[i];
        if behaviour == Behaviour::Frozen {
            return false;
        }
        let mut progressed = false;
        let interest = self.links[i].poll_interest();
        if interest.wake_at.is_some_and(|t| t <= now) {
            self.links[i].handle_timeout(now);
            // Only progress if it changed something visible; the link's own
            // wake_at moves past `now` once handled.
            progressed |= self.links[i]
                .poll_interest()
                .wake_at
                .is_none_or(|t| t > now);
        }
        // Write what the kernel takes.
        let interest = self.links[i].poll_interest();
        if interest.write {
            let room = self.capacity - self.pipes[i].buffered;
            let mut wrote = 0;
            let chunks: Vec<Bytes> = self.links[i].output().iter().cloned().collect();
            for chunk in chunks {
                if wrote >= room {
                    break;
                }
                let take = chunk.len().min(room - wrote);
                if behaviour != Behaviour::Dead {
                    self.pipes[i]
                        .chunks
                        .push_back((now + self.latency, chunk.slice(..take)));
                    self.pipes[i].buffered += take;
                }
                wrote += take;
            }
            if wrote > 0 {
                self.links[i].handle_written(wrote);
                progressed = true;
            }
        }
        // Read what has arrived, if the link wants it.
        let interest = self.links[i].poll_interest();
        if interest.read && behaviour == Behaviour::Normal {
            let pipe = &mut self.pipes[idx(other(side))];
            let mut input = Vec::new();
            while let Some((at, chunk)) = pipe.chunks.front_mut() {
                if *at > now || input.len() >= self.read_chunk {
                    break;
                }
                let take = chunk.len().min(self.read_chunk - input.len());
                input.extend_from_slice(&chunk.split_to(take));
                if chunk.is_empty() {
                    pipe.chunks.pop_front();
                }
            }
            pipe.buffered -= input.len();
            if !input.is_empty() {
                self.links[i].handle_input(&input, now);
                progressed = true;
            }
        }
        progressed |= self.run_jobs(side);
        progressed |= self.finish_handlers(side);
        progressed |= self.collect(side);
        progressed
    }

    fn run_jobs(&mut self, side: Side) -> bool {
        let mut any = false;
        while let Some(job) = self.links[idx(side)].poll_job() {
            any = true;
            if matches!(job, Job::Call(_)) {
                self.started[idx(side)] += 1;
            }
            match job {
                Job::Call(call) if call.method == "slow" => {
                    self.handlers
                        .push((side, call.id, self.now + self.slow_handler, call.args));
                }
                Job::Call(call) => {
                    let now = self.now;
                    let _ = self.links[idx(side)].reply(call.id, Ok(call.args), || now);
                }
                Job::Notify(_) => self.links[idx(side)].notify_done(),
                Job::Cancel(id) => {
                    self.handlers.retain(|h| !(h.0 == side && h.1 == id));
                    self.links[idx(side)].handler_dropped(id);
                }
                Job::PeerError(err) => self.reported[idx(side)].push(err),
                _ => {}
            }
        }
        any
    }

    fn finish_handlers(&mut self, side: Side) -> bool {
        let now = self.now;
        let due: Vec<_> = self
            .handlers
            .iter()
            .filter(|h| h.0 == side && h.2 <= now)
            .map(|h| (h.1, h.3.clone()))
            .collect();
        self.handlers.retain(|h| !(h.0 == side && h.2 <= now));
        for (id, payload) in &due {
            let _ = self.links[idx(side)].reply(*id, Ok(payload.clone()), || now);
        }
        !due.is_empty()
    }

    /// Hands results to their callers, retries callers refused for room when
    /// the edge came, and fails callers whose deadline passed while waiting.
    fn collect(&mut self, side: Side) -> bool {
        let now = self.now;
        let room = self.links[idx(side)].take_room_freed();
        let mut any = room;
        for at in 0..self.calls.len() {
            let call = &self.calls[at];
            if call.from != side || call.ended.is_some() {
                continue;
            }
            match call.id {
                Some(id) => {
                    if let Some(result) = self.links[idx(side)].waiters().take_call(id) {
                        self.end(at, result);
                        any = true;
                    }
                }
                None if call.deadline.is_some_and(|d| now >= d) => {
                    self.end(at, Err(CallError::DeadlineExceeded));
                    any = true;
                }
                None if room => self.try_admit(at),
                None => {}
            }
        }
        any
    }

    fn try_admit(&mut self, at: usize) {
        let call = &self.calls[at];
        let link = &mut self.links[idx(call.from)];
        match link.call(&call.method, call.args.clone(), call.deadline, self.now) {
            Ok(id) => self.calls[at].id = Some(id),
            Err(Admit::Failed(e)) => self.end(at, Err(e)),
            Err(_) => {} // waits for the room edge
        }
    }

    fn end(&mut self, at: usize, result: Result<Payload, CallError>) {
        let call = &mut self.calls[at];
        assert!(call.ended.is_none(), "call {at} ended twice");
        call.ended = Some((self.now, result));
    }
}
