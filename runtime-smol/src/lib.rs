//! # rigwire-smol: the async runtime on smol
//!
//! The same concepts and names as `rigwire-std` — [`Client`], [`Server`],
//! [`Peer`], [`Config`], one [`Error`] — with `async` calls. No tokio anywhere.
//!
//! ```no_run
//! use rigwire_smol::{Client, Config, Server};
//!
//! smol::block_on(async {
//!     let mut server = Server::bind("tcp://127.0.0.1:7400", Config::named("rig").secret("s3cret-s3cret-s3cret")?)?;
//!     server.expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })?;
//!     let running = server.start()?;
//!
//!     let rig = Client::connect("tcp://127.0.0.1:7400", Config::named("script").secret("s3cret-s3cret-s3cret")?).await?;
//!     let sum: i64 = rig.call("add", &(1, 2)).await?;
//!     assert_eq!(sum, 3);
//!     running.shutdown(std::time::Duration::from_secs(1)).await;
//!     Ok::<(), rigwire_smol::Error>(())
//! })?;
//! # Ok::<(), rigwire_smol::Error>(())
//! ```
//!
//! * Dropping a call's future cancels the call: the peer is sent `Cancel`, and
//!   a handler's future on the other side is dropped.
//! * A call's deadline holds whether or not anyone polls its future: each
//!   connection's driver task runs the core's timers.
//! * When the peer does not read, callers wait for room instead of queueing
//!   without bound.
//! * [`Group`] addresses named rigs together; [`RigService`] is the standard
//!   experiment lifecycle a rig exposes for it.
//! * Transports: `tcp://host:port`, `unix:///path`, `ws://host:port/path`.
//! * [`RelayServer`] forwards `service.method` calls to services that dial in
//!   ([`RemoteService`]) and register names; it runs on a thread of its own.
//! * [`IblPeer`] and [`IblGroup`] speak iblutil.io.net (UDP or TCP) with
//!   Python rigs.
//!
//! How the tasks are arranged, and why, is explained in `driver.rs`.
//!
//! What this crate and rigwire-std offer alike (the typed calls, a client's
//! forwards, a group's steps, `Server`, `Handlers`, `CallContext` …) is
//! written once, in the `rigwire-twin` crate, and expanded here by the `rigwire_twin::*!`
//! lines; this crate's own code is how it awaits.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod client;
mod driver;
mod group;
mod handler;
mod ibl;
mod ibl_group;
mod lifecycle;
mod peer;
mod pending;
mod relay;
mod server;
mod service;
mod transport;

pub use client::Client;
pub use group::Group;
pub use handler::{CallContext, Handlers};
pub use ibl::IblPeer;
pub use ibl_group::IblGroup;
pub use lifecycle::RigService;
pub use peer::Peer;
pub use pending::{PendingCall, RawPendingCall};
pub use relay::{RelayServer, RunningRelay};
pub use rigwire_core as core;
pub use rigwire_core::ibl::{IblEvent, IblMessage};
pub use rigwire_core::relay::RelayConfig;
pub use rigwire_core::{
    Codec, Error, ErrorKind, GroupError, GroupResults, HandlerError, Keepalive, Payload,
    RemoteError,
};
pub use rigwire_core::{Config, Reconnect};
pub use rigwire_twin::secret_from_file;
pub use server::{RunningServer, Server};
pub use service::{RemoteService, RunningService};
