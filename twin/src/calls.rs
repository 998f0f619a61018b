//! A peer's calls: typed calls over the runtime's raw ones, and the handles on calls in flight.

/// `Peer`'s typed calls over its raw ones (`start_raw`, `notify_raw`), and
/// `call_raw` as `start_raw` then `wait`. Expects `PendingCall` in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! peer_calls {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        /// Calls `method` with typed arguments (in the configured
        /// [`call_codec`](Self::call_codec), postcard unless set) and decodes
        /// the result. Uses the configured default deadline, if any.
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
            self.call_raw(method, $crate::core::Payload::encode_as(self.call_codec(), args)?, None)$($aw)*?
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
            self.call_raw(method, $crate::core::Payload::encode_as(self.call_codec(), args)?, Some(timeout))$($aw)*?
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
            let raw = self.start_raw(method, $crate::core::Payload::encode_as(self.call_codec(), args)?, None)$($aw)*?;
            Ok(PendingCall::typed(raw))
        }

        /// Sends a one-way notification (typed, in the call codec). Returns once it
        /// is queued.
        ///
        /// # Errors
        /// `Disconnected`, `TooLarge`, `Codec`.
        pub $($async)? fn notify<A: $crate::Serialize + ?Sized>(
            &self,
            method: &str,
            args: &A,
        ) -> Result<(), $crate::core::Error> {
            self.notify_raw(method, $crate::core::Payload::encode_as(self.call_codec(), args)?)$($aw)*
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
        #[must_use = "dropping a call in flight cancels it: wait for it, or keep it while it should run"]
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

/// `RawPendingCall`'s shape: the connection, the call's id and whether it
/// ended; `Debug`, `new`, `id`, `cancel`, and the cancel a drop sends for a
/// call not yet ended. Expects `Shared` (with `cancel_call(id)`, which
/// gives up on the call: [`Link::cancel`](rigwire_core::Link::cancel)) in
/// scope; the runtime writes `is_ready`, `wait` and `wait_timeout`, which
/// set `done` once they took the answer.
#[doc(hidden)]
#[macro_export]
macro_rules! raw_pending_call {
    ($doc:literal) => {
        #[doc = $doc]
        #[must_use = "dropping a call in flight cancels it: wait for it, or keep it while it should run"]
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
                    self.shared.cancel_call(self.id);
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
