//! # rigwire-std: the blocking runtime (not yet implemented)
//!
//! This crate will drive [`rigwire_core::Connection`] with std threads and
//! sockets: `Client`, `Server`, `Peer` over TCP, Unix sockets and websocket.
//! Until then it offers nothing of its own; it re-exports the protocol core
//! so that the workspace layout is in place.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use rigwire_core as core;
