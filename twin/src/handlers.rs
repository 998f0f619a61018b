//! Handlers: the typed table over the core's, and what a running handler may ask.

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

        $crate::deref_to!(
            Handlers.table: $crate::core::HandlerTable<$entry>
        );

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
