//! What the application hears of a connection: its lifecycle hooks, and a
//! server's admission of a peer that authenticated.

/// `Shared::hear(job)`: a job of the link's that is not a handler's — the
/// peer's reported error (logged), or a hook's (`on_connect` after a
/// server's admission of the peer, `on_message`, `on_disconnect` only for a
/// peer whose `on_connect` ran), with a panicking hook caught and named;
/// and `Shared::refused`, that admission.
/// Expands inside `impl Shared`; expects its fields `hooks` (a
/// [`Hooks`](rigwire_core::link::Hooks) of `Peer`) and `label`, its methods
/// `lock()` and `command(|link, now| …)`, and `Peer::new(Arc<Shared>)`.
#[doc(hidden)]
#[macro_export]
macro_rules! hooks_jobs {
    () => {
        /// Runs what the link asked of the application that is not a
        /// handler: a hook, or the log of what the peer reported.
        fn hear(self: &::std::sync::Arc<Self>, job: $crate::core::link::Job) {
            use $crate::core::link::Job;
            if let Job::Admit = &job {
                return self.admit_or_refuse();
            }
            if let Job::PeerError(err) = &job {
                $crate::tracing::warn!(peer = %self.label, "the peer reported: {err}");
                return;
            }
            if let Job::Closed(err) = &job {
                // `on_disconnect` pairs with `on_connect`: a peer that never
                // connected (a failed handshake, a refusal) is only logged.
                let (established, role) = {
                    let g = self.lock();
                    (g.link.is_admitted(), g.link.conn().role())
                };
                if !established {
                    // A client's caller gets the error; a server tells its operator.
                    if role == $crate::core::Role::Server {
                        $crate::tracing::info!(peer = %self.label, "closed before it was established: {err}");
                    }
                    return;
                }
                $crate::tracing::debug!(peer = %self.label, "connection closed: {err}");
            }
            if matches!(job, Job::Connected) && self.refused() {
                return;
            }
            if let Err(hook) = self.hooks.run(job, || Peer::new(::std::sync::Arc::clone(self))) {
                $crate::tracing::error!(peer = %self.label, "the {hook} hook panicked");
            }
        }

        /// A server's admission of a peer that has proven the secret,
        /// before our proof goes out (`Job::Admit`): admitted, or refused
        /// with a `Reject` its connect reports.
        fn admit_or_refuse(self: &::std::sync::Arc<Self>) {
            match self.admission() {
                None => self.command(|link, now| link.admit_peer(now)),
                Some(refusal) => self.command(|link, now| link.refuse(&refusal, now)),
            }
        }

        /// A server's admission of this connection now that it
        /// authenticated, unless it was admitted before its handshake
        /// completed (`admit_or_refuse`); a refused one is closed with the
        /// reason (`true`).
        fn refused(self: &::std::sync::Arc<Self>) -> bool {
            if self.lock().link.is_admitted() {
                return false;
            }
            let Some(refusal) = self.admission() else {
                self.lock().link.set_admitted();
                return false;
            };
            self.command(|link, now| link.refuse(&refusal, now));
            true
        }

        /// The server's decision on this connection's peer (its admission
        /// hook, on its ticket): `None` to admit it (or no server's to
        /// make), else the refusal, logged.
        fn admission(&self) -> Option<$crate::core::link::Refusal> {
            let ticket = self.lock().link.ticket();
            let refusal = match (&self.hooks.admit, ticket) {
                (Some(admit), Some(ticket)) => admit(ticket).err()?,
                _ => return None,
            };
            $crate::tracing::warn!(peer = %self.label, "refusing: {}", refusal.reason);
            Some(refusal)
        }
    };
}
