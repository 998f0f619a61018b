//! TLS as a user meets it: every way a client can distrust a server, named
//! with its reason as a typed error from both runtimes; each side telling a
//! peer that does not speak TLS (or does) what to use; and hostile input on
//! a TLS port (garbage, a stalled handshake, a huge ClientHello, a crowd of
//! half-open handshakes) that never stops the server serving others.

#[allow(dead_code)]
mod common;
#[path = "common/raw.rs"]
mod raw;

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{test_cert, with_tls};
use rcgen::{date_time_ymd, CertificateParams, KeyPair};
use rigwire_core::{Config, Error, TlsProblem, Trust};

/// A certificate for `names` valid between the two dates, written to files.
fn cert_files(
    tag: &str,
    names: &[&str],
    valid: ((i32, u8, u8), (i32, u8, u8)),
) -> (PathBuf, PathBuf) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let ((y0, m0, d0), (y1, m1, d1)) = valid;
    params.not_before = date_time_ymd(y0, m0, d0);
    params.not_after = date_time_ymd(y1, m1, d1);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = std::env::temp_dir().join(format!("rigwire-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn std_rig(url: &str, config: Config) -> rigwire_std::RunningServer {
    let mut server = rigwire_std::Server::bind(url, config).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    server.start().unwrap()
}

fn smol_rig(url: &str, config: Config) -> rigwire_smol::RunningServer {
    let mut server = rigwire_smol::Server::bind(url, config).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })
        .unwrap();
    server.start().unwrap()
}

/// The error each runtime's client gets connecting to `url` with `config`.
fn both_refused(url: &str, config: &Config) -> [Error; 2] {
    let from_std = rigwire_std::Client::connect(url, config.clone())
        .map(|_| ())
        .expect_err("the std client was let in");
    let from_smol = smol::block_on(rigwire_smol::Client::connect(url, config.clone()))
        .map(|_| ())
        .expect_err("the smol client was let in");
    [from_std, from_smol]
}

/// A rig serving the test certificate, for the default trust; its URL.
fn rig_url_for_roots() -> String {
    static RIG: std::sync::OnceLock<rigwire_std::RunningServer> = std::sync::OnceLock::new();
    RIG.get_or_init(|| std_rig("tls://127.0.0.1:0", with_tls(Config::named("rig"))))
        .local_url()
}

fn trusting(trust: Trust) -> Config {
    Config::named("script").tls_trust(trust)
}

#[test]
fn a_pinned_certificate_is_accepted_and_another_refused_naming_both() {
    let rig = std_rig("tls://127.0.0.1:0", with_tls(Config::named("rig")));
    let fingerprint = rig.tls_fingerprint().unwrap();
    assert_eq!(fingerprint, test_cert().fingerprint);
    let client =
        rigwire_std::Client::connect(&rig.local_url(), with_tls(Config::named("s"))).unwrap();
    assert_eq!(client.call::<_, i64>("add", &(2, 3)).unwrap(), 5);
    let other = rigwire_ws::tls::self_signed(&["elsewhere".into()]).unwrap();
    for err in both_refused(
        &rig.local_url(),
        &trusting(Trust::Pin(other.fingerprint.clone())),
    ) {
        assert_eq!(
            err,
            Error::Tls(TlsProblem::WrongPin {
                expected: other.fingerprint.clone(),
                presented: fingerprint.clone(),
            })
        );
    }
    // A pin written with colons and capitals is the same pin.
    let loud: String = fingerprint["sha256:".len()..]
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let client = rigwire_std::Client::connect(
        &rig.local_url(),
        trusting(Trust::Pin(format!("sha256:{loud}"))),
    )
    .unwrap();
    assert_eq!(client.call::<_, i64>("add", &(1, 1)).unwrap(), 2);
}

#[test]
fn expired_not_yet_valid_and_misnamed_certificates_are_refused_with_their_dates_and_names() {
    let cases = [
        ("expired", ["127.0.0.1"], ((2000, 1, 1), (2001, 1, 1))),
        ("future", ["127.0.0.1"], ((2999, 1, 1), (3000, 1, 1))),
        ("misnamed", ["rig-7"], ((2000, 1, 1), (3000, 1, 1))),
    ];
    for (tag, names, valid) in cases {
        let (cert, key) = cert_files(tag, &names, valid);
        let rig = smol_rig(
            "tls://127.0.0.1:0",
            Config::named("rig").tls_identity(&cert, &key),
        );
        for err in both_refused(&rig.local_url(), &trusting(Trust::Ca(cert.clone()))) {
            let Error::Tls(problem) = &err else {
                panic!("{tag}: {err}")
            };
            match (tag, problem) {
                ("expired", TlsProblem::Expired { not_after, now }) => {
                    assert!(not_after.starts_with("2001-01-01"), "{err}");
                    assert!(now.as_str() > "2020", "{err}");
                }
                ("future", TlsProblem::NotYetValid { not_before, .. }) => {
                    assert!(not_before.starts_with("2999-01-01"), "{err}");
                }
                (
                    "misnamed",
                    TlsProblem::NameMismatch {
                        expected,
                        presented,
                    },
                ) => {
                    assert_eq!(
                        (expected.as_str(), presented.as_str()),
                        ("127.0.0.1", "rig-7")
                    );
                }
                _ => panic!("{tag}: {err}"),
            }
        }
        smol::block_on(rig.shutdown(Duration::from_secs(1)));
    }
    // Trusting the system's roots (the default), a lab's self-signed
    // certificate is refused: nobody vouches for it.
    for err in both_refused(&rig_url_for_roots(), &Config::named("script")) {
        assert!(
            matches!(
                &err,
                Error::Tls(TlsProblem::Untrusted(_) | TlsProblem::Setup(_))
            ),
            "{err}"
        );
    }
    // A certificate from no trusted authority: said so, with what to do.
    let (cert, key) = cert_files("unknown", &["127.0.0.1"], ((2000, 1, 1), (3000, 1, 1)));
    let rig = std_rig(
        "tls://127.0.0.1:0",
        Config::named("rig").tls_identity(&cert, &key),
    );
    let (other, _) = cert_files("other-ca", &["127.0.0.1"], ((2000, 1, 1), (3000, 1, 1)));
    for err in both_refused(&rig.local_url(), &trusting(Trust::Ca(other))) {
        assert!(
            matches!(&err, Error::Tls(TlsProblem::Untrusted(why)) if why.contains("--ca")),
            "{err}"
        );
    }
}

#[test]
fn each_side_says_which_one_expected_tls_in_both_runtimes() {
    for (plain, tls) in [
        ("tcp://127.0.0.1:0", "tls://127.0.0.1:0"),
        ("ws://127.0.0.1:0/rig", "wss://127.0.0.1:0/rig"),
    ] {
        let std_servers = [
            std_rig(tls, with_tls(Config::named("rig"))),
            std_rig(plain, Config::named("rig")),
        ];
        let smol_servers = [
            smol_rig(tls, with_tls(Config::named("rig"))),
            smol_rig(plain, Config::named("rig")),
        ];
        let servers = [
            (std_servers[0].local_url(), std_servers[1].local_url()),
            (smol_servers[0].local_url(), smol_servers[1].local_url()),
        ];
        for (tls_url, plain_url) in servers {
            // A plain client at a TLS server.
            let as_plain = tls_url
                .replacen("tls://", "tcp://", 1)
                .replacen("wss://", "ws://", 1);
            for err in both_refused(&as_plain, &Config::named("script")) {
                assert_eq!(
                    err,
                    Error::Tls(TlsProblem::ServerExpectsTls(tls_url.clone())),
                    "{as_plain}"
                );
            }
            // A TLS client at a plain server.
            let as_tls = plain_url
                .replacen("tcp://", "tls://", 1)
                .replacen("ws://", "wss://", 1);
            for err in both_refused(&as_tls, &with_tls(Config::named("script"))) {
                assert_eq!(
                    err,
                    Error::Tls(TlsProblem::ServerIsPlain(plain_url.clone())),
                    "{as_tls}"
                );
            }
        }
    }
}

#[test]
fn a_tls_listener_without_a_certificate_refuses_to_start_and_says_what_it_needs() {
    for err in [
        rigwire_std::Server::bind("tls://127.0.0.1:0", Config::named("rig")).unwrap_err(),
        rigwire_smol::Server::bind("wss://127.0.0.1:0/x", Config::named("rig")).unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::Tls(TlsProblem::Setup(why)) if why.contains("--cert")),
            "{err}"
        );
    }
    let missing =
        Config::named("rig").tls_identity("/nonexistent/cert.pem", "/nonexistent/key.pem");
    let err = rigwire_std::Server::bind("tls://127.0.0.1:0", missing).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

/// Two certificates' files mixed up, or swapped: said in those words. They
/// read "keys may not be consistent: KeyMismatch" and "no items found".
#[test]
fn a_key_of_another_certificate_or_swapped_files_are_named_so() {
    let valid = ((2020, 1, 1), (2100, 1, 1));
    let (cert_a, key_a) = cert_files("pair-a", &["rig-a"], valid);
    let (_, key_b) = cert_files("pair-b", &["rig-b"], valid);
    let refused = |cert: &PathBuf, key: &PathBuf| {
        let config = Config::named("rig").tls_identity(cert, key);
        let from_std = rigwire_std::Server::bind("tls://127.0.0.1:0", config.clone());
        let from_smol = rigwire_smol::Server::bind("tls://127.0.0.1:0", config);
        [from_std.unwrap_err(), from_smol.unwrap_err()].map(|e| e.to_string())
    };
    for why in refused(&cert_a, &key_b) {
        let names = format!("{} is not the key of {}", key_b.display(), cert_a.display());
        assert!(
            why.contains(&names) && why.contains("not one pair"),
            "{why}"
        );
    }
    for why in refused(&cert_a, &cert_a) {
        assert!(why.contains("cert.pem: no private key in it"), "{why}");
    }
    for why in refused(&key_a, &key_a) {
        assert!(why.contains("key.pem: no certificate in it"), "{why}");
    }
}

/// What hostile peers do to a TLS port, one kind per connection.
fn hostile(addr: &str) -> Vec<TcpStream> {
    let mut held = Vec::new();
    // Garbage where a ClientHello belongs.
    let mut garbage = TcpStream::connect(addr).unwrap();
    let _ = garbage.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\x13\x37");
    held.push(garbage);
    // A record header that announces a handshake and then nothing more.
    let mut stalled = TcpStream::connect(addr).unwrap();
    let _ = stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    held.push(stalled);
    // A huge ClientHello: record after record of a message that never ends.
    let mut huge = TcpStream::connect(addr).unwrap();
    let _ = huge.set_write_timeout(Some(Duration::from_secs(2)));
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    record.extend_from_slice(&[0x01, 0xff, 0xff, 0xff]);
    record.resize(5 + 0x4000, 0x41);
    for _ in 0..64 {
        if huge.write_all(&record).is_err() {
            break;
        }
    }
    held.push(huge);
    held
}

#[test]
fn hostile_input_on_a_tls_port_is_closed_and_others_are_served_in_both_runtimes() {
    let started = Instant::now();
    let mut config = with_tls(Config::named("rig"));
    config.protocol.handshake_timeout = Duration::from_millis(800);
    config.max_handshaking = 4;
    let std_server = std_rig("tls://127.0.0.1:0", config.clone());
    let smol_server = smol_rig("tls://127.0.0.1:0", config.clone());
    let rigs = [std_server.local_url(), smol_server.local_url()];
    for url in rigs {
        let addr = url.trim_start_matches("tls://").to_owned();
        let cpu = raw::cpu_time();
        let mut held = hostile(&addr);
        // A crowd of half-open handshakes, more than the pre-authentication
        // budget: the oldest make room, nobody is locked out.
        for _ in 0..12 {
            let mut s = TcpStream::connect(&addr).unwrap();
            let _ = s.write_all(&[0x16, 0x03, 0x01]);
            held.push(s);
        }
        let client = rigwire_std::Client::connect(&url, with_tls(Config::named("script"))).unwrap();
        assert_eq!(
            client.call::<_, i64>("add", &(20, 22)).unwrap(),
            42,
            "{url}"
        );
        for (i, stream) in held.iter_mut().enumerate() {
            assert!(
                raw::closed_within(stream, Duration::from_secs(10)),
                "{url}: hostile connection {i} was not closed"
            );
        }
        // The rig kept serving, and waiting on the strangers cost no spin.
        assert_eq!(client.call::<_, i64>("add", &(1, 2)).unwrap(), 3, "{url}");
        let spent = raw::cpu_time() - cpu;
        assert!(spent < Duration::from_secs(3), "{url}: {spent:?} of CPU");
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_relay_evicts_the_oldest_tls_handshakes_and_serves_on_both_tls_ports() {
    let started = Instant::now();
    let cert = test_cert();
    let mut config = rigwire_smol::RelayConfig::default()
        .clients_secret("clients-secret-0123456")
        .unwrap()
        .services_secret("services-secret-0123456")
        .unwrap()
        .tls_identity(&cert.cert, &cert.key);
    config.max_handshaking = 4;
    config.clients.handshake_timeout = Duration::from_secs(30);
    config.services.handshake_timeout = Duration::from_secs(30);
    let relay =
        rigwire_smol::RelayServer::bind("tls://127.0.0.1:0", "wss://127.0.0.1:0/services", config)
            .unwrap()
            .start()
            .unwrap();
    // More half-open TLS handshakes on each port than the budget holds, each
    // holding out for longer than the test (the handshake timeout is 30 s).
    let mut held = Vec::new();
    for url in [relay.clients_url(), relay.services_url()] {
        let addr = url
            .trim_start_matches("tls://")
            .trim_start_matches("wss://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        for _ in 0..10 {
            let mut s = TcpStream::connect(&addr).unwrap();
            let _ = s.write_all(&[0x16, 0x03, 0x01]);
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut service = rigwire_std::RemoteService::new(
        &["data"],
        with_tls(Config::named("scanner"))
            .secret("services-secret-0123456")
            .unwrap(),
    );
    service
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    let _service = service.connect(&relay.services_url()).unwrap();
    let client = rigwire_std::Client::connect(
        &relay.clients_url(),
        with_tls(Config::named("script"))
            .secret("clients-secret-0123456")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(client.call::<_, i64>("data.add", &(2, 3)).unwrap(), 5);
    // The oldest were evicted to make room: at least the first of each port.
    let evicted = held
        .iter_mut()
        .map(|s| raw::closed_within(s, Duration::from_millis(300)))
        .filter(|closed| *closed)
        .count();
    assert!(evicted >= 12, "{evicted} of 20 half-open handshakes closed");
    assert!(started.elapsed() < Duration::from_secs(60));
}
