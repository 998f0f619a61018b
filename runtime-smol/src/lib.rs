//! # rigwire-smol: the async runtime on smol (not yet implemented)
//!
//! This crate will drive [`rigwire_core::Connection`] on smol / async-io with
//! the same concepts and names as `rigwire-std`. Until then it offers nothing
//! of its own; it re-exports the protocol core so that the workspace layout is
//! in place.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use rigwire_core as core;
