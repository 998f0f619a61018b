//! A connect's deadline bounds the lookup of a name too: the system's
//! resolver blocks, and with a DNS server that does not answer it waited
//! out its own timeouts (5 s a try), whatever the connect's timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rigwire_twin::resolve_within;

fn unanswered(_: &str) -> std::io::Result<Vec<SocketAddr>> {
    std::thread::sleep(Duration::from_secs(30));
    Ok(Vec::new())
}

fn never_asked(addr: &str) -> std::io::Result<Vec<SocketAddr>> {
    panic!("{addr} is an address: nothing to look up")
}

fn refused(_: &str) -> std::io::Result<Vec<SocketAddr>> {
    Err(std::io::Error::other("Name or service not known"))
}

#[test]
fn a_lookup_that_does_not_finish_is_given_up_on_by_the_deadline() {
    let begun = Instant::now();
    let why = resolve_within("rig-1.lab:7400", Duration::from_millis(200), unanswered).unwrap_err();
    assert!(
        begun.elapsed() < Duration::from_secs(20),
        "waited for the resolver"
    );
    assert_eq!(
        why,
        "looking up rig-1.lab:7400 did not finish within 0.2 s (does the DNS server answer?)"
    );
}

#[test]
fn addresses_need_no_lookup_and_a_failed_one_says_why() {
    for addr in ["127.0.0.1:7400", "[::1]:7400"] {
        let at: SocketAddr = addr.parse().unwrap();
        assert_eq!(
            resolve_within(addr, Duration::ZERO, never_asked),
            Ok(vec![at])
        );
    }
    let why = resolve_within("nohost.invalid:1", Duration::from_secs(5), refused).unwrap_err();
    assert_eq!(
        why,
        "looking up nohost.invalid:1: Name or service not known"
    );
    let found = resolve_within(
        "localhost:7400",
        Duration::from_secs(5),
        rigwire_twin::system_lookup,
    );
    assert!(found.is_ok_and(|addrs| addrs.iter().all(|a| a.port() == 7400)));
}

/// A link-local IPv6 address names its interface by name, as `ip addr`
/// shows it (`fe80::1%eth0`), or by number: both are read. Within the
/// URL's brackets the system took the whole for a host name ("Name or
/// service not known"). Nothing is dialed: the loopback interface is
/// `lo`, number 1, on Linux.
#[cfg(target_os = "linux")]
#[test]
fn a_link_local_address_takes_its_interface_by_name_or_number() {
    for addr in ["[fe80::1%lo]:7400", "[fe80::1%1]:7400"] {
        let found = rigwire_twin::system_lookup(addr).unwrap();
        let Some(SocketAddr::V6(at)) = found.first() else {
            panic!("{addr}: {found:?}")
        };
        assert_eq!(
            (at.ip().segments()[0], at.port(), at.scope_id()),
            (0xfe80, 7400, 1)
        );
    }
    for addr in ["[::1]:7400", "127.0.0.1:7400"] {
        assert_eq!(
            rigwire_twin::system_lookup(addr).unwrap(),
            vec![addr.parse().unwrap()]
        );
    }
}
