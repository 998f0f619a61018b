//! # rigwire-core: the rigwire protocol as a sans-IO state machine
//!
//! This crate decides everything about the protocol and does no I/O: no
//! sockets, threads, clocks or randomness. Bytes, time and nonces come in as
//! arguments; bytes, events and deadlines come out. The runtimes
//! (`rigwire-std`, `rigwire-smol`) only move bytes and wake tasks.
//!
//! Read it from the top down:
//!
//! * [`Connection`] — one peer. Its doc lists the four method families and the
//!   order to call them in. Its behaviour is spread by concern over
//!   `connection.rs` (inputs, outputs, timers, failure), `handshake.rs`,
//!   `receive.rs` (established traffic), `commands.rs` and `echo.rs`.
//! * [`link`] — the layer between the protocol and the runtimes. [`Link`]
//!   is one connection as a runtime drives it: output accounting, call
//!   admission that never blocks, result routing, the job queue, graceful
//!   drain and the IO interest (read? write? wake when?). Beside it the small
//!   policies every runtime shares: connection [`Admission`](link::Admission),
//!   [`Reconnect`] with its give-up rules. Runtimes are loops
//!   around it.
//! * [`message`] — the wire messages and their postcard encoding.
//! * [`framing`] — length-prefixed frames on streams, one frame per message on
//!   websocket and UDP, and the output queue.
//! * [`auth`] — HMAC-SHA256 proofs over the handshake transcript.
//! * [`dispatch`] — exposed names, aliases and introspection.
//! * [`lifecycle`] — experiment references and a rig's init/start/stop/cleanup
//!   state machine.
//! * [`group`] — results of addressing many rigs at once, by rig name, and
//!   the plan of each lifecycle step (which order, which arguments).
//! * [`relay`] — services reached in two hops: routing between connections.
//! * [`ibl`] — beside the protocol, not part of it: the iblutil.io.net dialect
//!   (JSON arrays and the echo rule) for joining Python iblutil rigs.
//! * [`tls`] — what TLS (`tls://`, `wss://`) is configured with and why it
//!   failed; the `rigwire-ws` crate runs rustls with it.
//! * [`codec`], [`config`], [`error`] — payloads tagged postcard or JSON,
//!   settings, and every error by what happened.
//! * `testing` and `fuzzing` (cargo feature `testing`) — deterministic
//!   two-peer harnesses with virtual time, latency and loss, over
//!   `Connection`s and over `Link`s, and the fuzz targets' entry points.
//!
//! The wire format is specified in `spec/PROTOCOL.md`; byte-exact vectors in
//! `spec/vectors/` are checked by the test suite.
//!
//! ## The run loop, in short
//!
//! ```
//! use std::time::Instant;
//! use rigwire_core::{ProtocolConfig, Connection, Event, Framing, Payload, Registry, Role};
//!
//! let now = Instant::now();
//! let mut registry = Registry::new();
//! registry.expose("add").unwrap();
//! let mut client = Connection::new(ProtocolConfig::named("script"), Registry::new(),
//!     Role::Client, Framing::Stream, [1; 32], now).unwrap();
//! let mut server = Connection::new(ProtocolConfig::named("rig"), registry,
//!     Role::Server, Framing::Stream, [2; 32], now).unwrap();
//!
//! // A call made before the handshake is queued and sent once it completes.
//! let id = client.call("add", Payload::json(&(1, 2)).unwrap(), None, now).unwrap();
//!
//! // Move bytes both ways until neither side has anything to send.
//! let mut answered = None;
//! loop {
//!     let mut moved = false;
//!     while let Some(bytes) = client.poll_transmit() { server.handle_input(&bytes, now); moved = true; }
//!     while let Some(bytes) = server.poll_transmit() { client.handle_input(&bytes, now); moved = true; }
//!     while let Some(event) = server.poll_event() {
//!         if let Event::Call(call) = event {
//!             let (a, b): (i64, i64) = call.args.decode().unwrap();
//!             let sum = Payload::encode_as(call.args.codec, &(a + b)).unwrap();
//!             server.reply(call.id, Ok(sum)).unwrap();
//!             moved = true;
//!         }
//!     }
//!     while let Some(event) = client.poll_event() {
//!         if let Event::Response { id: done, result } = event { answered = Some((done, result)); }
//!     }
//!     if !moved { break; }
//! }
//! let (done, result) = answered.unwrap();
//! assert_eq!(done, id);
//! assert_eq!(result.unwrap().decode::<i64>().unwrap(), 3);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod auth;
// Public only to the harnesses (`testing`), which drive it directly.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]
mod calls;
pub mod codec;
mod commands;
pub mod config;
mod connection;
pub mod dispatch;
mod echo;
pub mod error;
mod event;
pub mod framing;
#[cfg(feature = "testing")]
pub mod fuzzing;
pub mod group;
mod handler_error;
mod handshake;
pub mod ibl;
mod id_map;
pub mod lifecycle;
pub mod link;
pub mod message;
mod receive;
pub mod relay;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
mod url;

pub use codec::{CodecError, Payload};
pub use config::{Keepalive, ProtocolConfig, Role, Secret};
pub use connection::{Connection, PeerInfo};
pub use dispatch::{
    handler_panicked, rust_signature, wall_clock, Dispatch, ExposedMethod, HandlerId, HandlerTable,
    Registry, CLOCK_METHOD, FAST_RUN, FAST_RUNS, INTROSPECTION_METHOD,
};
pub use error::{
    AuthFailure, CallError, ConfigError, ConnectionError, DecodeError, EchoError, Error,
    FrameError, RegistryError, RemoteError, ReplyError, VersionRange,
};
pub use event::{CancelReason, Event, IncomingCall, IncomingNotify, Stats};
pub use framing::Framing;
pub use group::{EventLog, EventWait, GroupError, GroupOrder, GroupResults, GroupStep, Rigs};
pub use handler_error::HandlerError;
pub use lifecycle::{
    ExpInfo, ExpRef, ExpStatus, InitData, Lifecycle, RigEvent, Step, StepRefused, StepRequest,
    StopArgs,
};
pub use link::{Admit, Interest, Job, Link, Outbox};
pub use link::{Config, Reconnect};
pub use message::{Codec, ErrorKind, Message, RejectCode, MAX_NAME, PROTOCOL_VERSION};
pub use tls::{TlsProblem, TlsSettings, Trust};
pub use url::{Target, Url};
