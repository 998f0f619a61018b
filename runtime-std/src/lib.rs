//! # rigwire-std: the blocking runtime
//!
//! rigwire for scripts that want no async and no executor: a call blocks until
//! its answer, its error or its deadline. Threads and sockets from `std`; the
//! protocol itself is [`rigwire_core`].
//!
//! ```no_run
//! use rigwire_std::{Client, Config, Server};
//!
//! // A rig:
//! let mut server = Server::bind("tcp://127.0.0.1:7400", Config::named("rig-1").secret("s3cret-s3cret-s3cret")?)?;
//! server.expose("add", |(a, b): (i64, i64)| Ok(a + b))?;
//! let running = server.start()?;
//!
//! // The experiment script:
//! let rig = Client::connect("tcp://127.0.0.1:7400", Config::named("script").secret("s3cret-s3cret-s3cret")?)?;
//! let sum: i64 = rig.call("add", &(1, 2))?;
//! assert_eq!(sum, 3);
//! # running.shutdown(std::time::Duration::from_secs(1));
//! # Ok::<(), rigwire_std::Error>(())
//! ```
//!
//! * [`Client`] dials a peer; [`Server`] accepts them; both hand out [`Peer`]s,
//!   and calls go both ways over any connection.
//! * [`LocalClient`] is a connection with no background threads.
//! * [`Group`] addresses named rigs together; [`RigService`] is the standard
//!   experiment lifecycle a rig exposes for it.
//! * [`RemoteService`] dials out to a relay (rigwire-smol's `RelayServer`),
//!   registers its names and serves the calls forwarded to it.
//! * Transports by URL: `tcp://host:port`, `unix:///path`, `ws://host:port/path`.
//! * Every failure is one [`Error`], saying which thing happened.
//!
//! How the threads are arranged (and why) is explained in `driver.rs`. A
//! server's connection keeps a thread while it is busy; idle for
//! [`PARK_AFTER`](rigwire_core::link::PARK_AFTER) (1 s), it gives the thread
//! back to the server's one parker thread (`park.rs`, Linux), which answers
//! its keepalive and gives it a thread again when its peer calls.
//!
//! What this crate and rigwire-smol offer alike (the typed calls, a client's
//! forwards, a group's steps, `Server`, `Handlers`, `CallContext` …) is
//! written once, in the `rigwire-twin` crate, and expanded here by the `rigwire_twin::*!`
//! lines; this crate's own code is how it blocks.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod client;
mod driver;
mod group;
mod handler;
mod lifecycle;
mod local;
mod park;
mod peer;
mod pool;
mod server;
mod service;
mod sync;
mod transport;

pub use client::Client;
pub use group::Group;
pub use handler::{CallContext, HandlerEntry, Handlers};
pub use lifecycle::RigService;
pub use local::LocalClient;
pub use peer::{json_payload, Deferred, Peer, PendingCall, RawPendingCall, TryStarted};
pub use rigwire_core as core;
pub use rigwire_core::HandlerError;
pub use rigwire_core::{
    Codec, Error, ErrorKind, GroupError, GroupResults, Keepalive, Payload, RemoteError,
};
pub use rigwire_core::{Config, Reconnect};
pub use rigwire_core::{Dispatch, FAST_RUN, FAST_RUNS};
pub use rigwire_twin::secret_from_file;
pub use server::{RunningServer, Server};
pub use service::{RemoteService, RunningService};
pub use transport::Url;
