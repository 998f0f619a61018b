//! A client's calls: forwards to its current connection.

/// `Client`'s calls, each on its current connection
/// (`self.peer_within(timeout)`, which reconnects when configured to, within
/// the call's deadline), each method named by the caller sent to the service
/// the client's URL names, if any (`self.target()`, a
/// [`Target`](rigwire_core::Target)). Expects `PendingCall` and
/// `RawPendingCall` in scope.
#[doc(hidden)]
#[macro_export]
macro_rules! client_calls {
    ([$($async:tt)?] [$($aw:tt)*]) => {
        $crate::client_calls!(@forward [$($async)?] [$($aw)*]
            /// See [`Peer::call`](crate::Peer::call).
            fn call[A: $crate::Serialize + ?Sized, R: $crate::DeserializeOwned](
                method: &str, args: &A) -> Result<R, $crate::core::Error>; within None;
            /// See [`Peer::call_timeout`](crate::Peer::call_timeout).
            fn call_timeout[A: $crate::Serialize + ?Sized, R: $crate::DeserializeOwned](
                method: &str, args: &A, timeout: ::std::time::Duration)
                -> Result<R, $crate::core::Error>; within Some(timeout);
            /// See [`Peer::call_raw`](crate::Peer::call_raw).
            fn call_raw[](method: &str, args: $crate::core::Payload,
                timeout: Option<::std::time::Duration>)
                -> Result<$crate::core::Payload, $crate::core::Error>; within timeout;
            /// See [`Peer::start`](crate::Peer::start).
            fn start[A: $crate::Serialize + ?Sized, R: $crate::DeserializeOwned](
                method: &str, args: &A) -> Result<PendingCall<R>, $crate::core::Error>; within None;
            /// See [`Peer::start_raw`](crate::Peer::start_raw).
            fn start_raw[](method: &str, args: $crate::core::Payload,
                timeout: Option<::std::time::Duration>)
                -> Result<RawPendingCall, $crate::core::Error>; within timeout;
            /// See [`Peer::start_batch`](crate::Peer::start_batch).
            fn start_batch[](method: &str, args: impl IntoIterator<Item = $crate::core::Payload>,
                timeout: Option<::std::time::Duration>)
                -> Result<Vec<RawPendingCall>, $crate::core::Error>; within timeout;
            /// See [`Peer::notify`](crate::Peer::notify).
            fn notify[A: $crate::Serialize + ?Sized](method: &str, args: &A)
                -> Result<(), $crate::core::Error>; within None;
            /// See [`Peer::notify_raw`](crate::Peer::notify_raw).
            fn notify_raw[](method: &str, args: $crate::core::Payload)
                -> Result<(), $crate::core::Error>; within None;
        );

        /// See [`Peer::confirmed_send`](crate::Peer::confirmed_send); to
        /// the relay, for a service behind one.
        ///
        /// # Errors
        /// As the [`Peer`](crate::Peer)'s, or the connection's error if it
        /// is lost and cannot be re-established.
        pub $($async)? fn confirmed_send(
            &self,
            payload: impl Into<$crate::Bytes>,
        ) -> Result<(), $crate::core::Error> {
            self.peer_within(None)$($aw)*?.confirmed_send(payload)$($aw)*
        }

        /// See [`Peer::ping`](crate::Peer::ping). For a service behind a
        /// relay (`URL#NAME`) the round trip is the service's, both hops: a
        /// call of its clock ([`CLOCK_METHOD`](rigwire_core::CLOCK_METHOD)),
        /// since a ping stops at the relay.
        ///
        /// # Errors
        /// As the [`Peer`](crate::Peer)'s; for a service, as a call's.
        pub $($async)? fn ping(&self) -> Result<::std::time::Duration, $crate::core::Error> {
            let peer = self.peer_within(None)$($aw)*?;
            if self.target().service.is_none() {
                return peer.ping()$($aw)*;
            }
            let sent = ::std::time::Instant::now();
            let clock = self.target().method($crate::core::CLOCK_METHOD);
            peer.call_raw(&clock, $crate::core::Payload::json(&())?, None)$($aw)*?;
            Ok(sent.elapsed())
        }

        /// See [`Peer::call_batch_raw`](crate::Peer::call_batch_raw); with
        /// no connection, every call fails with its error.
        pub $($async)? fn call_batch_raw(
            &self,
            method: &str,
            args: impl IntoIterator<Item = $crate::core::Payload>,
            timeout: Option<::std::time::Duration>,
        ) -> Vec<Result<$crate::core::Payload, $crate::core::Error>> {
            match self.peer_within(timeout)$($aw)* {
                Ok(peer) => peer.call_batch_raw(&self.target().method(method), args, timeout)$($aw)*,
                Err(e) => args.into_iter().map(|_| Err(e.clone())).collect(),
            }
        }
    };
    // Each method as the current connection's, or the error of a
    // connection lost that cannot be re-established.
    (@forward $async:tt $aw:tt $(
        $(#[$doc:meta])*
        fn $name:ident[$($generics:tt)*]($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;
        within $timeout:expr;
    )*) => {$(
        $crate::client_calls!(@one $async $aw $(#[$doc])*
            fn $name[$($generics)*]($($arg: $ty),*) -> $ret; within $timeout);
    )*};
    // The method named by the caller goes to the service behind the relay
    // when the client's URL names one (`Target::method`).
    (@one [$($async:tt)?] [$($aw:tt)*] $(#[$doc:meta])*
        fn $name:ident[$($generics:tt)*](method: $mty:ty $(, $arg:ident: $ty:ty)*) -> $ret:ty;
        within $timeout:expr) => {
        $(#[$doc])*
        ///
        /// # Errors
        /// As the [`Peer`](crate::Peer)'s, or the connection's error if it is
        /// lost and cannot be re-established: with reconnect on, by the
        /// call's deadline (the error of the last attempt), if it has one.
        pub $($async)? fn $name<$($generics)*>(&self, method: $mty $(, $arg: $ty)*) -> $ret {
            let method = self.target().method(method);
            self.peer_within($timeout)$($aw)*?.$name(&method $(, $arg)*)$($aw)*
        }
    };
}
