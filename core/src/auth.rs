//! Authentication proofs: HMAC-SHA256 keyed by the shared secret over the
//! handshake transcript.
//!
//! The transcript is `CONTEXT || role tag || len(client Hello) || client Hello ||
//! len(server Hello) || server Hello`, lengths as 4-byte big-endian, Hellos as
//! the exact frame bodies sent. Both nonces are inside, so a proof is bound to
//! this connection; the role tag differs per side, so a proof reflected back at
//! its sender does not verify.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::config::{Role, Secret};

/// Domain separation for rigwire v1 proofs.
pub const AUTH_CONTEXT: &[u8] = b"rigwire/1 auth";

type HmacSha256 = hmac::Hmac<Sha256>;

/// The two Hellos of one connection, exactly as they were sent.
pub(crate) struct Transcript<'a> {
    pub(crate) client_hello: &'a [u8],
    pub(crate) server_hello: &'a [u8],
}

impl Transcript<'_> {
    fn mac(&self, secret: &Secret, prover: Role) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.bytes())
            .expect("HMAC takes keys of any length");
        mac.update(AUTH_CONTEXT);
        mac.update(&[prover.tag()]);
        for hello in [self.client_hello, self.server_hello] {
            mac.update(&(hello.len() as u32).to_be_bytes());
            mac.update(hello);
        }
        mac
    }

    /// The proof `prover` sends.
    pub(crate) fn proof(&self, secret: &Secret, prover: Role) -> [u8; 32] {
        self.mac(secret, prover).finalize().into_bytes().into()
    }

    /// Whether `proof` is the one `prover` must send; compared in constant time.
    pub(crate) fn verify(&self, secret: &Secret, prover: Role, proof: &[u8; 32]) -> bool {
        self.mac(secret, prover).verify_slice(proof).is_ok()
    }
}

/// The proof `prover` sends on a connection whose Hellos were `client_hello`
/// and `server_hello` (frame bodies exactly as sent), as spec §5.3 defines it:
/// for tools that speak the handshake frame by frame, such as `rigwire
/// conform`. A [`Connection`](crate::Connection) computes and checks proofs
/// itself.
pub fn proof(secret: &Secret, prover: Role, client_hello: &[u8], server_hello: &[u8]) -> [u8; 32] {
    Transcript {
        client_hello,
        server_hello,
    }
    .proof(secret, prover)
}
