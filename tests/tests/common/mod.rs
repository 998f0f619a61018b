//! What the cross-runtime and relay tests share: a probe for handlers that
//! must start and then see their cancel, and quick keepalive settings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_core::Keepalive;

/// What a `watch` handler reports: it started, and it was cancelled.
#[derive(Default)]
pub struct Probe {
    pub started: AtomicBool,
    pub cancelled: AtomicBool,
}

/// Marks its probe cancelled when dropped (with the future holding it).
pub struct CancelledOnDrop(Arc<Probe>);

impl Drop for CancelledOnDrop {
    fn drop(&mut self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }
}

impl Probe {
    /// Records the start; the guard records the cancel.
    pub fn start(self: &Arc<Self>) -> CancelledOnDrop {
        self.started.store(true, Ordering::SeqCst);
        CancelledOnDrop(Arc::clone(self))
    }
}

/// Keepalive that declares a silent peer dead after 0.4 s.
pub fn quick() -> Option<Keepalive> {
    Some(Keepalive {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(400),
    })
}

/// Waits up to 10 s for `flag`; returns whether it was set.
pub fn wait_flag(flag: &AtomicBool) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// A self-signed certificate made once per test process, its files in a
/// temporary folder.
pub struct TestCert {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub fingerprint: String,
}

/// The process's test certificate (for the name `rig` and 127.0.0.1).
#[allow(dead_code)]
pub fn test_cert() -> &'static TestCert {
    static CERT: std::sync::OnceLock<TestCert> = std::sync::OnceLock::new();
    CERT.get_or_init(|| {
        let made =
            rigwire_ws::tls::self_signed(&["rig".into(), "127.0.0.1".into()]).expect("a cert");
        let dir = std::env::temp_dir().join(format!("rigwire-test-cert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("rig.crt"), dir.join("rig.key"));
        std::fs::write(&cert, made.cert_pem).unwrap();
        std::fs::write(&key, made.key_pem).unwrap();
        TestCert {
            cert,
            key,
            fingerprint: made.fingerprint,
        }
    })
}

/// `config` serving the test certificate and trusting it by its pin: one
/// configuration for both ends of a `tls://` or `wss://` test.
#[allow(dead_code)]
pub fn with_tls(config: rigwire_core::Config) -> rigwire_core::Config {
    let cert = test_cert();
    config
        .tls_identity(&cert.cert, &cert.key)
        .tls_trust(rigwire_core::Trust::Pin(cert.fingerprint.clone()))
}
