//! A dial-out service: the handles on the core's parts.

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

        $crate::deref_to!(
            /// The setup: `handlers_mut`, and through it the handler table's
            /// `expose`, `expose_with`, `expose_raw` and `alias`.
            RemoteService.setup: $crate::core::link::ServiceSetup<Handlers>
        );
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
