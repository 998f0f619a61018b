//! The twin API: what `rigwire-std` and `rigwire-smol` offer alike but for
//! blocking or awaiting, written once.
//!
//! Both runtimes have the same public types with the same methods; one
//! blocks the calling thread, the other returns futures. Where a method is a
//! typed layer over a runtime's own raw method (encode the arguments, call,
//! decode the answer) or a forward to another type (a `Client` to its current
//! `Peer`, a `Group` to its plan), its body differs between the runtimes only
//! by `.await`. Those methods are these macros. Each runtime expands them in
//! its own `impl` blocks, with `[] []` (blocking) or `[async] [.await]`:
//!
//! ```ignore
//! impl Peer {
//!     rigwire_core::twin_peer_calls!([async] [.await]);
//! }
//! ```
//!
//! A macro's methods call the runtime's own methods by name, and name the
//! runtime's types (`Peer`, `PendingCall`, `RawPendingCall`) as they are in
//! scope where it expands. Its doc comments are the methods' docs in both
//! runtimes, so they speak of "waiting" for what blocks or is awaited.
//!
//! These macros are for the runtimes of this workspace; they are not an API
//! of their own (hidden from the docs, no stability promise).

#[doc(hidden)]
pub use bytes::Bytes;
#[doc(hidden)]
pub use serde::{de::DeserializeOwned, Serialize};

/// `Peer`'s typed calls over its raw ones (`start_raw`, `notify_raw`), and
/// `call_raw` as `start_raw` then `wait`. Expects `PendingCall` in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! twin_peer_calls {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        /// Calls `method` with typed arguments (postcard) and decodes the
        /// result. Uses the configured default deadline, if any.
        ///
        /// # Errors
        /// [`Error::Remote`]($crate::Error::Remote) if the peer's handler
        /// failed, `DeadlineExceeded`, `Disconnected`, `Busy`, `TooLarge`, or
        /// `Codec` if a value does not encode or decode.
        pub $($async)? fn call<
            A: $crate::twin::Serialize + ?Sized,
            R: $crate::twin::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
        ) -> Result<R, $crate::Error> {
            self.call_raw(method, $crate::Payload::postcard(args)?, None)$($aw)*?
                .decode()
                .map_err($crate::Error::from)
        }

        /// As [`call`](Self::call), with an explicit deadline for this call.
        ///
        /// # Errors
        /// As [`call`](Self::call).
        pub $($async)? fn call_timeout<
            A: $crate::twin::Serialize + ?Sized,
            R: $crate::twin::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
            timeout: ::std::time::Duration,
        ) -> Result<R, $crate::Error> {
            self.call_raw(method, $crate::Payload::postcard(args)?, Some(timeout))$($aw)*?
                .decode()
                .map_err($crate::Error::from)
        }

        /// Calls with an already-encoded payload (any codec) and an optional
        /// deadline (else the configured default), and returns the raw result.
        ///
        /// # Errors
        /// As [`call`](Self::call), without `Codec`.
        pub $($async)? fn call_raw(
            &self,
            method: &str,
            args: $crate::Payload,
            timeout: Option<::std::time::Duration>,
        ) -> Result<$crate::Payload, $crate::Error> {
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
            A: $crate::twin::Serialize + ?Sized,
            R: $crate::twin::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
        ) -> Result<PendingCall<R>, $crate::Error> {
            let raw = self.start_raw(method, $crate::Payload::postcard(args)?, None)$($aw)*?;
            Ok(PendingCall::typed(raw))
        }

        /// Sends a one-way notification (typed, postcard). Returns once it
        /// is queued.
        ///
        /// # Errors
        /// `Disconnected`, `TooLarge`, `Codec`.
        pub $($async)? fn notify<A: $crate::twin::Serialize + ?Sized>(
            &self,
            method: &str,
            args: &A,
        ) -> Result<(), $crate::Error> {
            self.notify_raw(method, $crate::Payload::postcard(args)?)$($aw)*
        }
    };
}

/// `PendingCall<R>`: a typed call in flight over the runtime's
/// `RawPendingCall` (which has `id`, `is_ready`, `wait`, `wait_timeout`,
/// `cancel`).
#[doc(hidden)]
#[macro_export]
macro_rules! twin_pending_call {
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

        impl<R: $crate::twin::DeserializeOwned> PendingCall<R> {
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
            pub $($async)? fn wait(self) -> Result<R, $crate::Error> {
                self.raw.wait()$($aw)*?.decode().map_err($crate::Error::from)
            }

            /// Waits at most `timeout`; on `WaitTimeout` the call stays in
            /// flight and the handle can be waited on again.
            ///
            /// # Errors
            /// As [`Peer::call`](crate::Peer::call), plus `WaitTimeout`.
            pub $($async)? fn wait_timeout(
                &mut self,
                timeout: ::std::time::Duration,
            ) -> Result<R, $crate::Error> {
                self.raw
                    .wait_timeout(timeout)$($aw)*?
                    .decode()
                    .map_err($crate::Error::from)
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
macro_rules! twin_client_calls {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        /// See [`Peer::call`](crate::Peer::call).
        ///
        /// # Errors
        /// As [`Peer::call`](crate::Peer::call), or the connection's error if
        /// it is lost and cannot be re-established.
        pub $($async)? fn call<
            A: $crate::twin::Serialize + ?Sized,
            R: $crate::twin::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
        ) -> Result<R, $crate::Error> {
            self.peer()$($aw)*?.call(method, args)$($aw)*
        }

        /// See [`Peer::call_timeout`](crate::Peer::call_timeout).
        ///
        /// # Errors
        /// As [`call`](Self::call).
        pub $($async)? fn call_timeout<
            A: $crate::twin::Serialize + ?Sized,
            R: $crate::twin::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
            timeout: ::std::time::Duration,
        ) -> Result<R, $crate::Error> {
            self.peer()$($aw)*?.call_timeout(method, args, timeout)$($aw)*
        }

        /// See [`Peer::call_raw`](crate::Peer::call_raw).
        ///
        /// # Errors
        /// As [`Peer::call_raw`](crate::Peer::call_raw), or the connection's
        /// error if it is lost and cannot be re-established.
        pub $($async)? fn call_raw(
            &self,
            method: &str,
            args: $crate::Payload,
            timeout: Option<::std::time::Duration>,
        ) -> Result<$crate::Payload, $crate::Error> {
            self.peer()$($aw)*?.call_raw(method, args, timeout)$($aw)*
        }

        /// See [`Peer::call_batch_raw`](crate::Peer::call_batch_raw); with
        /// no connection, every call fails with its error.
        pub $($async)? fn call_batch_raw(
            &self,
            method: &str,
            args: impl IntoIterator<Item = $crate::Payload>,
            timeout: Option<::std::time::Duration>,
        ) -> Vec<Result<$crate::Payload, $crate::Error>> {
            match self.peer()$($aw)* {
                Ok(peer) => peer.call_batch_raw(method, args, timeout)$($aw)*,
                Err(e) => args.into_iter().map(|_| Err(e.clone())).collect(),
            }
        }

        /// See [`Peer::start`](crate::Peer::start).
        ///
        /// # Errors
        /// As [`Peer::start`](crate::Peer::start), or the connection's error
        /// if it is lost and cannot be re-established.
        pub $($async)? fn start<
            A: $crate::twin::Serialize + ?Sized,
            R: $crate::twin::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
        ) -> Result<PendingCall<R>, $crate::Error> {
            self.peer()$($aw)*?.start(method, args)$($aw)*
        }

        /// See [`Peer::start_raw`](crate::Peer::start_raw).
        ///
        /// # Errors
        /// As [`start`](Self::start), without `Codec`.
        pub $($async)? fn start_raw(
            &self,
            method: &str,
            args: $crate::Payload,
            timeout: Option<::std::time::Duration>,
        ) -> Result<RawPendingCall, $crate::Error> {
            self.peer()$($aw)*?.start_raw(method, args, timeout)$($aw)*
        }

        /// See [`Peer::start_batch`](crate::Peer::start_batch).
        ///
        /// # Errors
        /// As [`Peer::start_batch`](crate::Peer::start_batch), or the
        /// connection's error if it is lost and cannot be re-established.
        pub $($async)? fn start_batch(
            &self,
            method: &str,
            args: impl IntoIterator<Item = $crate::Payload>,
            timeout: Option<::std::time::Duration>,
        ) -> Result<Vec<RawPendingCall>, $crate::Error> {
            self.peer()$($aw)*?.start_batch(method, args, timeout)$($aw)*
        }

        /// See [`Peer::notify`](crate::Peer::notify).
        ///
        /// # Errors
        /// As [`Peer::notify`](crate::Peer::notify), or the connection's
        /// error if it is lost and cannot be re-established.
        pub $($async)? fn notify<A: $crate::twin::Serialize + ?Sized>(
            &self,
            method: &str,
            args: &A,
        ) -> Result<(), $crate::Error> {
            self.peer()$($aw)*?.notify(method, args)$($aw)*
        }

        /// See [`Peer::ping`](crate::Peer::ping).
        ///
        /// # Errors
        /// As [`Peer::ping`](crate::Peer::ping), or the connection's error if
        /// it is lost and cannot be re-established.
        pub $($async)? fn ping(&self) -> Result<::std::time::Duration, $crate::Error> {
            self.peer()$($aw)*?.ping()$($aw)*
        }

        /// See [`Peer::confirmed_send`](crate::Peer::confirmed_send).
        ///
        /// # Errors
        /// As [`Peer::confirmed_send`](crate::Peer::confirmed_send), or the
        /// connection's error if it is lost and cannot be re-established.
        pub $($async)? fn confirmed_send(
            &self,
            payload: impl Into<$crate::twin::Bytes>,
        ) -> Result<(), $crate::Error> {
            self.peer()$($aw)*?.confirmed_send(payload)$($aw)*
        }
    };
}

/// `Group`'s typed calls and lifecycle steps, over its own
/// `call(order, method, args: Result<Payload, CodecError>, timeout)`.
#[doc(hidden)]
#[macro_export]
macro_rules! twin_group_calls {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        /// Calls every rig at once and collects each answer or error by name.
        /// A rig that drops out shows as `Disconnected`; the others' answers
        /// are kept.
        pub $($async)? fn call_all<
            A: $crate::twin::Serialize + ?Sized,
            R: $crate::twin::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<R> {
            let args = $crate::Payload::postcard(args);
            self.call($crate::GroupOrder::Concurrent, method, args, timeout)$($aw)*
        }

        /// Calls the rigs one after another in group order; every rig is
        /// called even if an earlier one failed.
        pub $($async)? fn call_in_order<
            A: $crate::twin::Serialize + ?Sized,
            R: $crate::twin::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<R> {
            let args = $crate::Payload::postcard(args);
            self.call($crate::GroupOrder::InOrder, method, args, timeout)$($aw)*
        }

        /// Calls the rigs one after another in reverse group order (for
        /// stop and cleanup).
        pub $($async)? fn call_in_reverse<
            A: $crate::twin::Serialize + ?Sized,
            R: $crate::twin::DeserializeOwned,
        >(
            &self,
            method: &str,
            args: &A,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<R> {
            let args = $crate::Payload::postcard(args);
            self.call($crate::GroupOrder::Reverse, method, args, timeout)$($aw)*
        }

        /// Runs one lifecycle step on every rig, in the step's order.
        pub $($async)? fn step<R: $crate::twin::DeserializeOwned>(
            &self,
            step: $crate::GroupStep,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<R> {
            self.call(step.order, step.method, Ok(step.args), timeout)$($aw)*
        }

        /// `exp.init` on every rig at once.
        pub $($async)? fn init(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<$crate::ExpStatus> {
            self.step($crate::GroupStep::init(&$crate::InitData::default()), timeout)$($aw)*
        }

        /// `exp.init` with data (iblutil's init dict) on every rig at once.
        pub $($async)? fn init_with(
            &self,
            data: &$crate::InitData,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<$crate::ExpStatus> {
            self.step($crate::GroupStep::init(data), timeout)$($aw)*
        }

        /// `exp.start` on every rig at once.
        pub $($async)? fn start(
            &self,
            exp_ref: &$crate::ExpRef,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<$crate::ExpStatus> {
            self.step($crate::GroupStep::start(exp_ref), timeout)$($aw)*
        }

        /// `exp.stop` on each rig, in reverse order.
        pub $($async)? fn stop(
            &self,
            immediately: bool,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<$crate::ExpStatus> {
            self.step($crate::GroupStep::stop(immediately), timeout)$($aw)*
        }

        /// `exp.cleanup` on each rig, in reverse order.
        pub $($async)? fn cleanup(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<$crate::ExpStatus> {
            self.step($crate::GroupStep::cleanup(), timeout)$($aw)*
        }

        /// `exp.status` of every rig.
        pub $($async)? fn status(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<$crate::ExpStatus> {
            self.step($crate::GroupStep::status(), timeout)$($aw)*
        }

        /// `exp.info` of every rig.
        pub $($async)? fn info(
            &self,
            timeout: Option<::std::time::Duration>,
        ) -> $crate::GroupResults<$crate::ExpInfo> {
            self.step($crate::GroupStep::info(), timeout)$($aw)*
        }
    };
}
