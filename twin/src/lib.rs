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
//! This is runtime code (it takes locks, reads the clock, logs), so it is a
//! crate of its own beside the sans-IO core, not part of it. The macros are
//! for the runtimes of this workspace; they are not an API of their own
//! (hidden from the docs, no stability promise).

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

#[doc(hidden)]
pub use bytes::Bytes;
#[doc(hidden)]
pub use rigwire_core as core;
#[doc(hidden)]
pub use serde::{de::DeserializeOwned, Serialize};
#[doc(hidden)]
pub use tracing;

/// `Peer`'s typed calls over its raw ones (`start_raw`, `notify_raw`), and
/// `call_raw` as `start_raw` then `wait`. Expects `PendingCall` in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! peer_calls {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        /// Calls `method` with typed arguments (postcard) and decodes the
        /// result. Uses the configured default deadline, if any.
        ///
        /// # Errors
        /// [`Error::Remote`]($crate::core::Error::Remote) if the peer's handler
        /// failed, `DeadlineExceeded`, `Disconnected`, `Busy`, `TooLarge`, or
        /// `Codec` if a value does not encode or decode.
        pub $($async)? fn call<
            A: $crate::Serialize + ?Sized,
            R: $crate::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
        ) -> Result<R, $crate::core::Error> {
            self.call_raw(method, $crate::core::Payload::postcard(args)?, None)$($aw)*?
                .decode()
                .map_err($crate::core::Error::from)
        }

        /// As [`call`](Self::call), with an explicit deadline for this call.
        ///
        /// # Errors
        /// As [`call`](Self::call).
        pub $($async)? fn call_timeout<
            A: $crate::Serialize + ?Sized,
            R: $crate::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
            timeout: ::std::time::Duration,
        ) -> Result<R, $crate::core::Error> {
            self.call_raw(method, $crate::core::Payload::postcard(args)?, Some(timeout))$($aw)*?
                .decode()
                .map_err($crate::core::Error::from)
        }

        /// Calls with an already-encoded payload (any codec) and an optional
        /// deadline (else the configured default), and returns the raw result.
        ///
        /// # Errors
        /// As [`call`](Self::call), without `Codec`.
        pub $($async)? fn call_raw(
            &self,
            method: &str,
            args: $crate::core::Payload,
            timeout: Option<::std::time::Duration>,
        ) -> Result<$crate::core::Payload, $crate::core::Error> {
            self.start_raw(method, args, timeout)$($aw)*?.wait()$($aw)*
        }

        /// Starts a call without waiting for its answer: the returned handle
        /// is waited on, polled or cancelled later, so one caller can keep
        /// many calls in flight. Returns once the call is admitted (it waits
        /// for room in the output, within the call's deadline).
        ///
        /// # Errors
        /// Failures known at once: `Disconnected`, `Busy`, `TooLarge`, `Codec`.
        pub $($async)? fn start<
            A: $crate::Serialize + ?Sized,
            R: $crate::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
        ) -> Result<PendingCall<R>, $crate::core::Error> {
            let raw = self.start_raw(method, $crate::core::Payload::postcard(args)?, None)$($aw)*?;
            Ok(PendingCall::typed(raw))
        }

        /// Sends a one-way notification (typed, postcard). Returns once it
        /// is queued.
        ///
        /// # Errors
        /// `Disconnected`, `TooLarge`, `Codec`.
        pub $($async)? fn notify<A: $crate::Serialize + ?Sized>(
            &self,
            method: &str,
            args: &A,
        ) -> Result<(), $crate::core::Error> {
            self.notify_raw(method, $crate::core::Payload::postcard(args)?)$($aw)*
        }
    };
}

/// `PendingCall<R>`: a typed call in flight over the runtime's
/// `RawPendingCall` (which has `id`, `is_ready`, `wait`, `wait_timeout`,
/// `cancel`).
#[doc(hidden)]
#[macro_export]
macro_rules! pending_call {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        /// A typed call in flight (see [`Peer::start`](crate::Peer::start)).
        /// Dropping it before its answer cancels the call.
        pub struct PendingCall<R> {
            raw: RawPendingCall,
            _result: ::std::marker::PhantomData<fn() -> R>,
        }

        impl<R> ::std::fmt::Debug for PendingCall<R> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.raw.fmt(f)
            }
        }

        impl<R> PendingCall<R> {
            /// The typed handle on `raw`.
            pub(crate) fn typed(raw: RawPendingCall) -> Self {
                PendingCall {
                    raw,
                    _result: ::std::marker::PhantomData,
                }
            }
        }

        impl<R: $crate::DeserializeOwned> PendingCall<R> {
            /// The call's id on this connection.
            pub fn id(&self) -> u64 {
                self.raw.id()
            }

            /// Whether the result (or its failure) has arrived; never waits.
            pub fn is_ready(&self) -> bool {
                self.raw.is_ready()
            }

            /// Waits for the result, however long the call's deadline allows.
            ///
            /// # Errors
            /// As [`Peer::call`](crate::Peer::call).
            pub $($async)? fn wait(self) -> Result<R, $crate::core::Error> {
                self.raw.wait()$($aw)*?.decode().map_err($crate::core::Error::from)
            }

            /// Waits at most `timeout`; on `WaitTimeout` the call stays in
            /// flight and the handle can be waited on again.
            ///
            /// # Errors
            /// As [`Peer::call`](crate::Peer::call), plus `WaitTimeout`.
            pub $($async)? fn wait_timeout(
                &mut self,
                timeout: ::std::time::Duration,
            ) -> Result<R, $crate::core::Error> {
                self.raw
                    .wait_timeout(timeout)$($aw)*?
                    .decode()
                    .map_err($crate::core::Error::from)
            }

            /// Gives up on the call: the peer is sent `Cancel`; nothing more
            /// arrives.
            pub fn cancel(self) {
                self.raw.cancel();
            }
        }
    };
}

/// `Client`'s calls, each on its current connection (`self.peer()`, which
/// reconnects when configured to). Expects `PendingCall` and
/// `RawPendingCall` in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! client_calls {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        $crate::client_calls!(@forward [$($async)?] [$($aw)*]
            /// See [`Peer::call`](crate::Peer::call).
            fn call[A: $crate::Serialize + ?Sized, R: $crate::DeserializeOwned](
                method: &str, args: &A) -> Result<R, $crate::core::Error>;
            /// See [`Peer::call_timeout`](crate::Peer::call_timeout).
            fn call_timeout[A: $crate::Serialize + ?Sized, R: $crate::DeserializeOwned](
                method: &str, args: &A, timeout: ::std::time::Duration) -> Result<R, $crate::core::Error>;
            /// See [`Peer::call_raw`](crate::Peer::call_raw).
            fn call_raw[](method: &str, args: $crate::core::Payload,
                timeout: Option<::std::time::Duration>) -> Result<$crate::core::Payload, $crate::core::Error>;
            /// See [`Peer::start`](crate::Peer::start).
            fn start[A: $crate::Serialize + ?Sized, R: $crate::DeserializeOwned](
                method: &str, args: &A) -> Result<PendingCall<R>, $crate::core::Error>;
            /// See [`Peer::start_raw`](crate::Peer::start_raw).
            fn start_raw[](method: &str, args: $crate::core::Payload,
                timeout: Option<::std::time::Duration>) -> Result<RawPendingCall, $crate::core::Error>;
            /// See [`Peer::start_batch`](crate::Peer::start_batch).
            fn start_batch[](method: &str, args: impl IntoIterator<Item = $crate::core::Payload>,
                timeout: Option<::std::time::Duration>) -> Result<Vec<RawPendingCall>, $crate::core::Error>;
            /// See [`Peer::notify`](crate::Peer::notify).
            fn notify[A: $crate::Serialize + ?Sized](method: &str, args: &A)
                -> Result<(), $crate::core::Error>;
            /// See [`Peer::ping`](crate::Peer::ping).
            fn ping[]() -> Result<::std::time::Duration, $crate::core::Error>;
            /// See [`Peer::confirmed_send`](crate::Peer::confirmed_send).
            fn confirmed_send[](payload: impl Into<$crate::Bytes>)
                -> Result<(), $crate::core::Error>;
        );

        /// See [`Peer::call_batch_raw`](crate::Peer::call_batch_raw); with
        /// no connection, every call fails with its error.
        pub $($async)? fn call_batch_raw(
            &self,
            method: &str,
            args: impl IntoIterator<Item = $crate::core::Payload>,
            timeout: Option<::std::time::Duration>,
        ) -> Vec<Result<$crate::core::Payload, $crate::core::Error>> {
            match self.peer()$($aw)* {
                Ok(peer) => peer.call_batch_raw(method, args, timeout)$($aw)*,
                Err(e) => args.into_iter().map(|_| Err(e.clone())).collect(),
            }
        }
    };
    // Each method as the current connection's, or the error of a
    // connection lost that cannot be re-established.
    (@forward $async:tt $aw:tt $(
        $(#[$doc:meta])*
        fn $name:ident[$($generics:tt)*]($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;
    )*) => {$(
        $crate::client_calls!(@one $async $aw $(#[$doc])*
            fn $name[$($generics)*]($($arg: $ty),*) -> $ret);
    )*};
    (@one [$($async:tt)?] [$($aw:tt)*] $(#[$doc:meta])*
        fn $name:ident[$($generics:tt)*]($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        ///
        /// # Errors
        /// As the [`Peer`](crate::Peer)'s, or the connection's error if it is
        /// lost and cannot be re-established.
        pub $($async)? fn $name<$($generics)*>(&self, $($arg: $ty),*) -> $ret {
            self.peer()$($aw)*?.$name($($arg),*)$($aw)*
        }
    };
}

/// `Group`'s typed calls and lifecycle steps, over its own
/// `call(order, method, args: Result<Payload, CodecError>, timeout)`.
#[doc(hidden)]
#[macro_export]
macro_rules! group_calls {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        $crate::group_calls!(@typed [$($async)?] [$($aw)*] call_all, Concurrent,
            "Calls every rig at once and collects each answer or error by name. A \
             rig that drops out shows as `Disconnected`; the others' answers are kept.");
        $crate::group_calls!(@typed [$($async)?] [$($aw)*] call_in_order, InOrder,
            "Calls the rigs one after another in group order; every rig is called \
             even if an earlier one failed.");
        $crate::group_calls!(@typed [$($async)?] [$($aw)*] call_in_reverse, Reverse,
            "Calls the rigs one after another in reverse group order (for stop and \
             cleanup).");
        $crate::group_calls!(@steps [$($async)?] [$($aw)*]);
    };
    // One typed call of every rig, in `$order` (a `GroupOrder`).
    (@typed [$($async:tt)?] [$($aw:tt)*] $name:ident, $order:ident, $doc:literal) => {
        #[doc = $doc]
        pub $($async)? fn $name<
            A: $crate::Serialize + ?Sized,
            R: $crate::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<R> {
            let args = $crate::core::Payload::postcard(args);
            self.call($crate::core::GroupOrder::$order, method, args, timeout)$($aw)*
        }
    };
    (@steps [$($async:tt)?] [$($aw:tt)*]) => {
        /// Runs one lifecycle step on every rig, in the step's order.
        pub $($async)? fn step<R: $crate::DeserializeOwned>(
            &self,
            step: $crate::core::GroupStep,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<R> {
            self.call(step.order, step.method, Ok(step.args), timeout)$($aw)*
        }

        /// `exp.init` on every rig at once.
        pub $($async)? fn init(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::init(&$crate::core::InitData::default()), timeout)$($aw)*
        }

        /// `exp.init` with data (iblutil's init dict) on every rig at once.
        pub $($async)? fn init_with(
            &self,
            data: &$crate::core::InitData,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::init(data), timeout)$($aw)*
        }

        /// `exp.start` on every rig at once.
        pub $($async)? fn start(
            &self,
            exp_ref: &$crate::core::ExpRef,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::start(exp_ref), timeout)$($aw)*
        }

        /// `exp.stop` on each rig, in reverse order.
        pub $($async)? fn stop(
            &self,
            immediately: bool,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::stop(immediately), timeout)$($aw)*
        }

        /// `exp.cleanup` on each rig, in reverse order.
        pub $($async)? fn cleanup(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::cleanup(), timeout)$($aw)*
        }

        /// `exp.status` of every rig.
        pub $($async)? fn status(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpStatus> {
            self.step($crate::core::GroupStep::status(), timeout)$($aw)*
        }

        /// `exp.info` of every rig.
        pub $($async)? fn info(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::core::GroupResults<$crate::core::ExpInfo> {
            self.step($crate::core::GroupStep::info(), timeout)$($aw)*
        }
    };
}

/// `Peer`'s `Debug` and what it answers of its connection: `name`,
/// `address`, `is_connected`, `close_reason`, and `closed`, which waits.
/// Expects `Peer { shared }` whose `shared` has `label` (the address),
/// `lock()` (a guard whose `link` is the connection's `Link`) and
/// `wait_closed()`.
#[doc(hidden)]
#[macro_export]
macro_rules! peer_state {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        impl ::std::fmt::Debug for Peer {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("Peer")
                    .field("peer", &self.shared.label)
                    .finish()
            }
        }

        impl Peer {
            pub(crate) fn new(shared: ::std::sync::Arc<Shared>) -> Peer {
                Peer { shared }
            }

            /// The name the peer announced in its handshake (empty before it).
            pub fn name(&self) -> String {
                self.shared.lock().link.peer_name()
            }

            /// The peer's address, for logs.
            pub fn address(&self) -> &str {
                &self.shared.label
            }

            /// Whether the handshake is done and the connection is up.
            pub fn is_connected(&self) -> bool {
                self.shared.lock().link.is_connected()
            }

            /// Why the connection closed, once it has.
            pub fn close_reason(&self) -> Option<$crate::core::Error> {
                self.shared.lock().link.close_reason()
            }

            /// Waits until the connection has closed (for any reason, from
            /// either side) and returns why. Takes no part in the
            /// connection's traffic while waiting.
            pub $($async)? fn closed(&self) -> $crate::core::Error {
                self.shared.wait_closed()$($aw)*;
                self.shared.lock().link.closed_error()
            }
        }
    };
}

/// `RunningServer`'s `Debug`, `local_url`, `tls_fingerprint`, `peers` and
/// broadcasts. Expects `RunningServer { inner }` whose `inner` has `url`,
/// `listener.fingerprint()` and `all_peers()` (every connection's `Peer`,
/// handshaking or not), and the `tracing` crate (a missed peer is logged).
#[doc(hidden)]
#[macro_export]
macro_rules! running_server {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        impl ::std::fmt::Debug for RunningServer {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("RunningServer")
                    .field("url", &self.inner.url)
                    .finish()
            }
        }

        impl RunningServer {
            /// The URL listened on, with the real port.
            pub fn local_url(&self) -> String {
                self.inner.url.clone()
            }

            /// The SHA-256 fingerprint of the TLS certificate served
            /// (`tls://`, `wss://`), for clients to pin; `None` without TLS.
            pub fn tls_fingerprint(&self) -> Option<String> {
                self.inner.listener.fingerprint().map(str::to_owned)
            }

            /// The peers connected now (handshake done, not closed).
            pub fn peers(&self) -> Vec<Peer> {
                let mut peers = self.inner.all_peers();
                peers.retain(Peer::is_connected);
                peers
            }

            /// Notifies every peer (typed, postcard); returns how many it
            /// reached. See [`broadcast_raw`](Self::broadcast_raw).
            ///
            /// # Errors
            /// [`Error::Codec`]($crate::core::Error::Codec) if `args` does not encode.
            pub $($async)? fn broadcast<A: $crate::Serialize + ?Sized>(
                &self,
                method: &str,
                args: &A,
            ) -> Result<usize, $crate::core::Error> {
                self.broadcast_raw(method, $crate::core::Payload::postcard(args)?)$($aw)*
            }

            /// Notifies every peer with a raw payload; returns how many it
            /// reached. Peers still completing their handshake are included:
            /// the notify is queued and sent once they have authenticated
            /// (and dropped if they fail to).
            ///
            /// # Errors
            /// Never at present; the `Result` leaves room for codec errors in
            /// wrappers.
            pub $($async)? fn broadcast_raw(
                &self,
                method: &str,
                args: $crate::core::Payload,
            ) -> Result<usize, $crate::core::Error> {
                let mut reached = 0;
                for peer in self.inner.all_peers() {
                    if peer.close_reason().is_some() {
                        continue;
                    }
                    match peer.notify_raw(method, args.clone())$($aw)* {
                        Ok(()) => reached += 1,
                        Err(e) => $crate::tracing::debug!(
                            peer = %peer.address(),
                            "broadcast missed a peer: {e}"
                        ),
                    }
                }
                Ok(reached)
            }
        }
    };
}

/// `Server`: the bound listener and the [`ServerSetup`](rigwire_core::link::ServerSetup)
/// it dereferences to, `bind`, and `parts`, which takes it apart for `start`
/// with the admission shared between the accept loop and each connection's
/// `admit` hook. Expects `Listener` (with `bind(&Url, &TlsSettings)`,
/// `local_endpoint()`, `fingerprint()`), `Handlers` and `Peer` in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! server {
    () => {
        /// A bound server being set up: expose handlers and hooks (the
        /// [`ServerSetup`]($crate::core::link::ServerSetup)'s, which this
        /// dereferences to), then [`start`](Self::start).
        #[derive(Debug)]
        pub struct Server {
            listener: Listener,
            setup: $crate::core::link::ServerSetup<Handlers, Peer>,
        }

        impl Server {
            /// Binds `url` (port 0 picks a free port; see
            /// [`ServerSetup::local_url`]($crate::core::link::ServerSetup::local_url)).
            ///
            /// # Errors
            /// `InvalidUrl`, `Bind` (address in use, permission), `Config`.
            pub fn bind(
                url: &str,
                config: $crate::core::Config,
            ) -> Result<Server, $crate::core::Error> {
                let url = $crate::core::Url::parse(url)?;
                let (listener, setup) =
                    $crate::core::link::ServerSetup::bind(config, Handlers::new(), |config| {
                        let listener = Listener::bind(&url, &config.tls)?;
                        let bound = listener.local_endpoint().to_string();
                        let fingerprint = listener.fingerprint().map(str::to_owned);
                        Ok((listener, bound, fingerprint))
                    })?;
                Ok(Server { listener, setup })
            }

            /// What `start` runs with: the listener, the URL bound, the
            /// settings, handlers and hooks, and the admission of
            /// connections, which the hooks' `admit` consults.
            #[allow(clippy::type_complexity)]
            fn parts(
                self,
            ) -> (
                Listener,
                String,
                $crate::core::Config,
                Handlers,
                $crate::core::link::Hooks<Peer>,
                ::std::sync::Arc<::std::sync::Mutex<$crate::core::link::Admission>>,
            ) {
                let url = self.setup.local_url();
                let (config, handlers, mut hooks, admission) = self.setup.into_parts();
                let admission = ::std::sync::Arc::new(::std::sync::Mutex::new(admission));
                let admit = ::std::sync::Arc::clone(&admission);
                hooks.admit = Some(Box::new(move |ticket| {
                    admit
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .established(ticket)
                }));
                (self.listener, url, config, handlers, hooks, admission)
            }
        }

        /// The setup: `on_connect`, `on_disconnect`, `on_message`,
        /// `handlers_mut`, and through it the handler table's `expose`,
        /// `expose_with`, `expose_raw` and `alias`.
        impl ::std::ops::Deref for Server {
            type Target = $crate::core::link::ServerSetup<Handlers, Peer>;
            fn deref(&self) -> &Self::Target {
                &self.setup
            }
        }

        impl ::std::ops::DerefMut for Server {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.setup
            }
        }
    };
}

/// `RunningService`'s `Debug`, `peer` and `registrations`. Expects
/// `RunningService { inner }` whose `inner` has `endpoint`, `names` and
/// `state()` (a guard with `current: Option<Peer>` and `count: u64`).
#[doc(hidden)]
#[macro_export]
macro_rules! running_service {
    () => {
        impl ::std::fmt::Debug for RunningService {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("RunningService")
                    .field("relay", &self.inner.endpoint.to_string())
                    .field("names", &self.inner.names)
                    .finish()
            }
        }

        impl RunningService {
            /// The connection to the relay while registered, to call the
            /// relay itself.
            pub fn peer(&self) -> Option<Peer> {
                let current = self.inner.state().current.clone();
                current.filter(Peer::is_connected)
            }

            /// How many times the service has registered (1 after
            /// connecting, one more after each reconnect).
            pub fn registrations(&self) -> u64 {
                self.inner.state().count
            }
        }
    };
}

/// `RemoteService`: the [`ServiceSetup`](rigwire_core::link::ServiceSetup) it
/// dereferences to, and `new`. Expects `Handlers` in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! remote_service {
    () => {
        /// A service to run behind a relay: its names, settings and handlers
        /// (the [`ServiceSetup`]($crate::core::link::ServiceSetup)'s, which this
        /// dereferences to), then [`connect`](Self::connect).
        #[derive(Debug)]
        pub struct RemoteService {
            setup: $crate::core::link::ServiceSetup<Handlers>,
        }

        impl RemoteService {
            /// A service that will register `names`; see
            /// [`ServiceSetup::new`]($crate::core::link::ServiceSetup::new).
            pub fn new(names: &[&str], config: $crate::core::Config) -> RemoteService {
                RemoteService {
                    setup: $crate::core::link::ServiceSetup::new(names, config, Handlers::new()),
                }
            }
        }

        /// The setup: `handlers_mut`, and through it the handler table's
        /// `expose`, `expose_with`, `expose_raw` and `alias`.
        impl ::std::ops::Deref for RemoteService {
            type Target = $crate::core::link::ServiceSetup<Handlers>;
            fn deref(&self) -> &Self::Target {
                &self.setup
            }
        }

        impl ::std::ops::DerefMut for RemoteService {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.setup
            }
        }
    };
}

/// `Handlers`: a [`HandlerTable`](rigwire_core::HandlerTable) of the runtime's
/// handler entries (`$entry`), which it dereferences to, answering the
/// built-in clock with `$clock` (an expression making one entry), and `new`.
#[doc(hidden)]
#[macro_export]
macro_rules! handlers {
    ($entry:ty, $clock:expr) => {
        /// The exposed names of one endpoint and their handlers; every table
        /// answers the built-in `rigwire.clock` with this machine's wall
        /// clock. `describe` and `alias` are the
        /// [`HandlerTable`]($crate::core::HandlerTable)'s, which this dereferences
        /// to.
        #[derive(Clone, Debug)]
        pub struct Handlers {
            table: $crate::core::HandlerTable<$entry>,
        }

        impl Default for Handlers {
            fn default() -> Self {
                Handlers {
                    table: $crate::core::HandlerTable::new($clock),
                }
            }
        }

        impl ::std::ops::Deref for Handlers {
            type Target = $crate::core::HandlerTable<$entry>;
            fn deref(&self) -> &Self::Target {
                &self.table
            }
        }

        impl ::std::ops::DerefMut for Handlers {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.table
            }
        }

        impl Handlers {
            /// No handlers: every call is answered `NoSuchMethod`.
            pub fn new() -> Self {
                Self::default()
            }
        }
    };
}

/// `CallContext`, what a handler knows about the call it answers, and
/// `is_cancelled`. Expects `Peer` (whose `shared.lock()` guards the link) in
/// scope.
#[doc(hidden)]
#[macro_export]
macro_rules! call_context {
    () => {
        /// What a handler knows about the call it is answering.
        #[derive(Debug, Clone)]
        pub struct CallContext {
            /// The caller, to call back over the same connection.
            pub peer: Peer,
            /// The name called (an alias, if one was used).
            pub method: String,
            /// When the caller stops waiting; pass the time left on when
            /// calling onward.
            pub deadline: Option<::std::time::Instant>,
            /// The call's id on this connection (0 for a notification).
            pub id: u64,
        }

        impl CallContext {
            /// Whether the caller has cancelled the call, its deadline has
            /// passed or the connection closed; a handler that works for long
            /// may check it and stop early. (On smol a cancelled handler's
            /// future is also dropped at its next `.await`.)
            pub fn is_cancelled(&self) -> bool {
                let now = ::std::time::Instant::now();
                let link = &self.peer.shared.lock().link;
                link.answer_unwanted(self.id, self.deadline, now)
            }
        }
    };
}

/// `RawPendingCall`'s shape: the connection, the call's id and whether it
/// ended; `Debug`, `new`, `id`, `cancel`, and the cancel a drop sends for a
/// call not yet ended. Expects `Shared` (with `command(|link, now| …)`) in
/// scope; the runtime writes `is_ready`, `wait` and `wait_timeout`, which
/// set `done` once they took the answer.
#[doc(hidden)]
#[macro_export]
macro_rules! raw_pending_call {
    ($doc:literal) => {
        #[doc = $doc]
        pub struct RawPendingCall {
            shared: ::std::sync::Arc<Shared>,
            id: u64,
            done: bool,
        }

        impl ::std::fmt::Debug for RawPendingCall {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("PendingCall").field("id", &self.id).finish()
            }
        }

        impl RawPendingCall {
            pub(crate) fn new(shared: &::std::sync::Arc<Shared>, id: u64) -> Self {
                RawPendingCall {
                    shared: ::std::sync::Arc::clone(shared),
                    id,
                    done: false,
                }
            }

            /// The call's id on this connection.
            pub fn id(&self) -> u64 {
                self.id
            }

            /// Gives up on the call: the peer is sent `Cancel`; nothing more
            /// arrives.
            pub fn cancel(mut self) {
                self.cancel_now();
            }

            fn cancel_now(&mut self) {
                if !::std::mem::replace(&mut self.done, true) {
                    let id = self.id;
                    self.shared.command(|link, _| link.cancel(id));
                }
            }
        }

        impl Drop for RawPendingCall {
            fn drop(&mut self) {
                self.cancel_now();
            }
        }
    };
}
