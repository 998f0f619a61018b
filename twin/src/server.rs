//! A server and its connections: the handles on the core's parts, what reads their state.

/// Logs that a server listens at `$url` (a `&Url`, with `$fingerprint` of
/// the TLS certificate it serves, if any), and warns when anyone who reaches
/// it may call every method, or it serves in clear with a certificate given
/// (`Config::listening_warnings` of `$config`).
/// A macro so that the lines carry the runtime's own log target.
#[doc(hidden)]
#[macro_export]
macro_rules! log_listening {
    ($url:expr, $fingerprint:expr, $config:expr $(,)?) => {{
        let url: &$crate::core::Url = $url;
        match $fingerprint {
            Some(fingerprint) => $crate::tracing::info!(%url, fingerprint, "listening"),
            None => $crate::tracing::info!(%url, "listening"),
        }
        for warning in $config.listening_warnings(url) {
            $crate::tracing::warn!("{warning}");
        }
    }};
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

            /// The codec typed calls, notifies and broadcasts go out in
            /// ([`Config::call_codec`]($crate::core::Config::call_codec)).
            pub fn call_codec(&self) -> $crate::core::Codec {
                self.shared.call_codec
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

        $crate::deref_to!(
            /// The setup: `on_connect`, `on_disconnect`, `on_message`,
            /// `handlers_mut`, and through it the handler table's `expose`,
            /// `expose_with`, `expose_raw` and `alias`.
            Server.setup: $crate::core::link::ServerSetup<Handlers, Peer>
        );
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

            /// Notifies every peer (typed, in the configured
            /// [`call_codec`]($crate::core::Config::call_codec)); returns how
            /// many it reached. See [`broadcast_raw`](Self::broadcast_raw).
            ///
            /// # Errors
            /// [`Error::Codec`]($crate::core::Error::Codec) if `args` does not encode.
            pub $($async)? fn broadcast<A: $crate::Serialize + ?Sized>(
                &self,
                method: &str,
                args: &A,
            ) -> Result<usize, $crate::core::Error> {
                let codec = self.inner.config.protocol.call_codec;
                self.broadcast_raw(method, $crate::core::Payload::encode_as(codec, args)?)$($aw)*
            }

            /// Notifies every peer with a raw payload; returns how many it
            /// reached. Peers still completing their handshake are included:
            /// the notify is queued and sent once they have authenticated
            /// (and dropped if they fail to). A peer whose output is full
            /// (it stopped reading) is skipped, not waited for: one such
            /// peer never holds up the broadcast to the others.
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
                    match peer.notify_waiting(method, args.clone(), false)$($aw)* {
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
