//! # rigwire-twin: what `rigwire-std` and `rigwire-smol` offer alike, written once
//!
//! Both runtimes have the same public types with the same methods; one
//! blocks the calling thread, the other returns futures. Where a method is a
//! typed layer over a runtime's own raw method (encode the arguments, call,
//! decode the answer) or a forward to another type (a `Client` to its current
//! `Peer`, a `Group` to its plan), its body differs between the runtimes only
//! by `.await`; where a type is a handle on the core's parts (`Server` on a
//! [`ServerSetup`](rigwire_core::link::ServerSetup), `Handlers` on a
//! [`HandlerTable`](rigwire_core::HandlerTable)) or a method reads state the same
//! way in both (`Peer::name`), it does not differ at all. Those types and
//! methods are these macros, so the twins cannot drift apart. Each runtime
//! expands them in its own modules, with `[] []` (blocking) or
//! `[async] [.await]`:
//!
//! ```ignore
//! impl Peer {
//!     rigwire_twin::peer_calls!([async] [.await]);
//! }
//! ```
//!
//! A macro's code calls the runtime's own methods and fields by name, and
//! names the runtime's types (`Peer`, `Shared`, `Handlers`, `Listener`,
//! `PendingCall`, `RawPendingCall`) as they are in scope where it expands;
//! each macro's doc says what it expects. Its doc comments are the items'
//! docs in both runtimes, so they speak of "waiting" for what blocks or is
//! awaited. What stays in each runtime is how it waits: admission, reading,
//! reconnecting, spawning.
//!
//! Three plain functions are shared the same way: reading a secret file
//! ([`secret_from_file`], which both runtimes re-export), binding the
//! listening socket a URL names (the async runtime then registers it with
//! its reactor), and taking a lock ([`lock`]).
//!
//! This is runtime code (it takes locks, reads the clock, logs), so it is a
//! crate of its own beside the sans-IO core, not part of it. The macros are
//! for the runtimes of this workspace; they are not an API of their own
//! (hidden from the docs, no stability promise).

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod calls;
mod client;
mod files;
mod group;
mod handlers;
mod hooks;
mod refused;
mod server;
mod service;

pub use files::{
    accept_failed, accepted, bind, bind_failed, resolve_within, secret_from_file, system_lookup,
    why_not_bound, why_not_connected, Bound, Lookup,
};
#[doc(hidden)]
pub use group::decode_answer;
pub use refused::Refused;

#[doc(hidden)]
pub use bytes::Bytes;
#[doc(hidden)]
pub use rigwire_core as core;
#[doc(hidden)]
pub use serde::{de::DeserializeOwned, Serialize};
#[doc(hidden)]
pub use tracing;

/// Fresh 32 random bytes for a handshake nonce, from the operating system.
///
/// # Panics
/// If the operating system has no random source to read, which no
/// supported system lacks: a handshake without a fresh nonce could be
/// replayed, so there is no fallback.
pub fn nonce() -> [u8; 32] {
    let mut nonce = [0; 32];
    getrandom::fill(&mut nonce).expect("the operating system's random source is available");
    nonce
}

/// Locks `m`, poisoned or not. A thread that panicked holding one of the
/// runtimes' locks leaves state the core keeps consistent (it never panics
/// half-way through a change), so the lock is taken as it is rather than
/// spreading the panic to every other thread.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `Deref` and `DerefMut` from a twin's handle to the core part it wraps
/// (`$outer.$field: $target`), with `$doc` on the `Deref`: what the part
/// offers through it.
#[doc(hidden)]
#[macro_export]
macro_rules! deref_to {
    ($(#[$doc:meta])* $outer:ident . $field:ident : $target:ty) => {
        $(#[$doc])*
        impl ::std::ops::Deref for $outer {
            type Target = $target;
            fn deref(&self) -> &Self::Target {
                &self.$field
            }
        }

        impl ::std::ops::DerefMut for $outer {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.$field
            }
        }
    };
}
