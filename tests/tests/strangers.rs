//! Strangers can never lock the lab out: hundreds of sockets that connect
//! and say nothing fill only the budget for connections in the handshake,
//! where the oldest is closed to make room. A legitimate client's calls all
//! succeed meanwhile, on both servers and on both ports of the relay, and
//! the strangers' sockets are closed afterwards (file descriptors return).

#[path = "common/raw.rs"]
mod raw;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use rigwire_core::Config;

const STRANGERS: usize = 300;

/// One at a time: the file descriptors counted are the process's.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens the strangers' sockets and prints what they cost the process.
fn silent_sockets(url: &str) -> Vec<TcpStream> {
    let addr = url.strip_prefix("tcp://").unwrap();
    let (rss, threads) = (raw::resident_bytes(), raw::threads());
    let sockets: Vec<_> = (0..STRANGERS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200)); // let the server take them
    eprintln!(
        "{STRANGERS} silent sockets on {url}: {} KiB of resident memory, {} threads more",
        raw::resident_bytes().saturating_sub(rss) / 1024,
        raw::threads() as i64 - threads as i64
    );
    sockets
}

/// A server that would lock out for 30 s if strangers counted against its
/// connection limit (128) and waited out its handshake timeout.
fn config(name: &str) -> Config {
    let mut config = Config::named(name);
    config.max_connections = 128;
    config.max_handshaking = 16;
    config.protocol.handshake_timeout = Duration::from_secs(30);
    config
}

/// Every one of `calls` calls succeeds, each on a fresh connection (the
/// case that silent sockets used to lock out).
fn all_calls_succeed(url: &str, calls: usize) {
    for i in 0..calls {
        let client = rigwire_std::Client::connect(url, config("script"))
            .unwrap_or_else(|e| panic!("connection {i} failed: {e}"));
        let sum: i64 = client
            .call_timeout("add", &(i as i64, 1i64), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        assert_eq!(sum, i as i64 + 1);
    }
}

/// The strangers' sockets are closed by the server (evicted, or timed out).
fn fds_return(before: usize, strangers: Vec<TcpStream>) {
    drop(strangers);
    let until = Instant::now() + Duration::from_secs(10);
    while raw::open_fds() > before + 8 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        raw::open_fds() <= before + 8,
        "{} fds open, {before} before",
        raw::open_fds()
    );
}

/// The oldest stranger in a full handshake budget is told why it is
/// closed: it reads the server's `Hello`, a `Reject` with the reason, the end.
fn the_evicted_stranger_is_told_why(url: &str) {
    use std::io::Read;
    let addr = url.strip_prefix("tcp://").unwrap();
    let mut oldest = TcpStream::connect(addr).unwrap();
    oldest
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200)); // the server takes it first
    let crowd: Vec<_> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut said = Vec::new();
    let _ = oldest.read_to_end(&mut said); // until closed, or the 10 s bound
    let said = String::from_utf8_lossy(&said);
    assert!(
        said.contains("too many connections are in the handshake"),
        "{said:?}"
    );
    drop(crowd);
}

#[test]
fn silent_sockets_never_lock_out_a_blocking_server() {
    let _one = serial();
    let before = raw::open_fds();
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", config("rig")).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    let running = server.start().unwrap();
    let threads = raw::threads();
    let strangers = silent_sockets(&running.local_url());
    // A socket gets a thread only once its peer speaks.
    assert!(
        raw::threads() <= threads + 1,
        "{} threads for {STRANGERS} silent sockets",
        raw::threads() - threads
    );
    all_calls_succeed(&running.local_url(), 40);
    drop(strangers);
    the_evicted_stranger_is_told_why(&running.local_url());
    running.shutdown(Duration::ZERO);
    fds_return(before, Vec::new());
}

#[test]
fn silent_sockets_never_lock_out_an_async_server() {
    let _one = serial();
    let mut server = rigwire_smol::Server::bind("tcp://127.0.0.1:0", config("rig")).unwrap();
    server
        .expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })
        .unwrap();
    let running = server.start().unwrap();
    let strangers = silent_sockets(&running.local_url());
    all_calls_succeed(&running.local_url(), 40);
    drop(strangers);
    the_evicted_stranger_is_told_why(&running.local_url());
    smol::block_on(running.shutdown(Duration::ZERO));
}

/// A relay on loopback (both sides TCP) that serves `add` itself.
fn relay_with_add(config: rigwire_smol::RelayConfig) -> rigwire_smol::RunningRelay {
    let mut relay =
        rigwire_smol::RelayServer::bind("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", config).unwrap();
    relay
        .expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })
        .unwrap();
    relay.start().unwrap()
}

#[test]
fn silent_sockets_on_the_clients_port_never_stop_a_service_registering() {
    let _one = serial();
    let relay_config = rigwire_smol::RelayConfig {
        clients: config("relay").protocol,
        services: config("relay").protocol,
        max_handshaking: 16,
        insecure_services: true,
        ..Default::default()
    };
    let relay = relay_with_add(relay_config);
    let on_clients = silent_sockets(&relay.clients_url());
    let on_services = silent_sockets(&relay.services_url());
    // A service still registers; scripts still call it and the relay.
    let mut service = rigwire_std::RemoteService::new(&["rig"], config("service"));
    service
        .expose("add", |(a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    let _running = service.connect(&relay.services_url()).unwrap();
    for i in 0..20i64 {
        let script = rigwire_std::Client::connect(&relay.clients_url(), config("script")).unwrap();
        let via: i64 = script.call("rig.add", &(i, 1i64)).unwrap();
        let own: i64 = script.call("add", &(i, 2i64)).unwrap();
        assert_eq!((via, own), (i + 1, i + 2));
    }
    drop((on_clients, on_services));
    smol::block_on(relay.shutdown(Duration::ZERO));
}

/// A stranger whose websocket opened but who never says Hello (its socket
/// has left the accept loop for a connection of its own), evicted by a
/// crowd, is told why by either server, as a silent one is. The blocking
/// server shut it without a word.
fn the_evicted_stranger_past_its_opening_is_told_why(url: &str) {
    use std::io::{Read, Write};
    let addr = raw::ws_addr(url);
    let mut oldest = TcpStream::connect(addr).unwrap();
    oldest
        .write_all(
            b"GET /rig HTTP/1.1\r\nHost: rig\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    oldest
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200)); // opened, and waiting for our Hello
    let crowd: Vec<_> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut said = Vec::new();
    let _ = oldest.read_to_end(&mut said); // until closed, or the 10 s bound
    let said = String::from_utf8_lossy(&said);
    assert!(said.starts_with("HTTP/1.1 101"), "{said:?}");
    assert!(
        said.contains("too many connections are in the handshake"),
        "{said:?}"
    );
    drop(crowd);
}

#[test]
fn a_stranger_past_its_opening_is_told_why_it_is_evicted_by_both_servers() {
    let _one = serial();
    let server = rigwire_std::Server::bind("ws://127.0.0.1:0/rig", config("rig")).unwrap();
    let running = server.start().unwrap();
    the_evicted_stranger_past_its_opening_is_told_why(&running.local_url());
    running.shutdown(Duration::ZERO);
    let server = rigwire_smol::Server::bind("ws://127.0.0.1:0/rig", config("rig")).unwrap();
    let running = server.start().unwrap();
    the_evicted_stranger_past_its_opening_is_told_why(&running.local_url());
    smol::block_on(running.shutdown(Duration::ZERO));
}

/// A server with room for one connection, taken, and 16 places for
/// strangers in the handshake.
fn full_config(name: &str) -> Config {
    let mut config = config(name);
    config.max_connections = 1;
    config
}

/// A crowd of silent sockets that finds the server at `url` full holds
/// no more of it than the handshake budget (16): telling a refused peer why
/// takes a thread (std) or a task and its socket (smol, the relay) until
/// the peer has read it (or the close linger ends), the opening (websocket)
/// included, so each of the crowd once held one, 300 threads on the
/// blocking server. Then, the crowd gone, the next peer refused is still
/// told why.
fn a_full_server_is_not_held_by_a_refused_crowd(url: &str) {
    let addr = match url.strip_prefix("tcp://") {
        Some(addr) => addr,
        None => raw::ws_addr(url),
    };
    let lab = rigwire_std::Client::connect(url, config("lab")).unwrap();
    let sum: i64 = lab.call("add", &(1i64, 2i64)).unwrap(); // admitted by now
    assert_eq!(sum, 3);
    let (fds, threads) = (raw::open_fds(), raw::threads());
    let crowd: Vec<_> = (0..STRANGERS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // Taken in order: the server has taken the whole crowd once a connect
    // made after it ends (refused, told why or not). Those told hold their
    // place for a second at least (the close linger), the websocket ones
    // their handshake timeout.
    let _ = rigwire_std::Client::connect(url, config("marker"));
    // The crowd's own sockets are this process's too: count them out.
    let mut held = (0, 0);
    for _ in 0..5 {
        let fds_held = raw::open_fds().saturating_sub(fds + STRANGERS);
        let threads_held = raw::threads().saturating_sub(threads);
        held = (held.0.max(fds_held), held.1.max(threads_held));
        std::thread::sleep(Duration::from_millis(40));
    }
    eprintln!(
        "{STRANGERS} silent sockets on a full {url}: at most {} sockets and {} threads held",
        held.0, held.1
    );
    assert!(held.0 <= 16 + 4, "{} sockets held by {url}", held.0);
    assert!(held.1 <= 16 + 4, "{} threads held by {url}", held.1);
    let sum: i64 = lab.call("add", &(1i64, 2i64)).unwrap();
    assert_eq!(sum, 3, "the lab's machine is served throughout");
    drop(crowd);
    // Their places are free once the server sees them gone.
    let until = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let refused = rigwire_std::Client::connect(url, config("late")).unwrap_err();
        if refused.to_string().contains("full") || Instant::now() > until {
            break refused;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        refused
            .to_string()
            .contains("is full: 1 connections (limit 1)"),
        "{refused}"
    );
}

/// Runs `check` against each kind of server, full (one connection, taken
/// by the check), with `secret` if given: both runtimes' servers over TCP
/// and websocket, and the relay's clients' side (its services' side is the
/// same listener code).
fn on_each_full_server(secret: Option<&str>, check: fn(&str)) {
    let config = |name: &str| match secret {
        Some(secret) => full_config(name).secret(secret).unwrap(),
        None => full_config(name),
    };
    for url in ["tcp://127.0.0.1:0", "ws://127.0.0.1:0/rig"] {
        let mut server = rigwire_std::Server::bind(url, config("rig")).unwrap();
        server
            .expose("add", |(a, b): (i64, i64)| Ok(a + b))
            .unwrap();
        let running = server.start().unwrap();
        check(&running.local_url());
        running.shutdown(Duration::ZERO);
        let mut server = rigwire_smol::Server::bind(url, config("rig")).unwrap();
        server
            .expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })
            .unwrap();
        let running = server.start().unwrap();
        check(&running.local_url());
        smol::block_on(running.shutdown(Duration::ZERO));
    }
    let protocol = config("relay").protocol;
    let relay = relay_with_add(rigwire_smol::RelayConfig {
        clients: protocol.clone(),
        services: protocol,
        max_connections: 1,
        max_handshaking: 16,
        insecure_services: secret.is_none(),
        ..Default::default()
    });
    check(&relay.clients_url());
    smol::block_on(relay.shutdown(Duration::ZERO));
}

#[test]
fn a_refused_crowd_holds_no_more_than_the_handshake_budget_of_any_server() {
    let _one = serial();
    on_each_full_server(None, a_full_server_is_not_held_by_a_refused_crowd);
}

/// Thirty connects to the full server at `url` are each refused by the
/// connect itself, with the reason.
fn refused_by_the_connect(url: &str) {
    let lab = rigwire_std::Client::connect(url, config("lab")).unwrap();
    let sum: i64 = lab.call("add", &(1i64, 2i64)).unwrap(); // admitted by now
    assert_eq!(sum, 3);
    for attempt in 0..30 {
        match rigwire_std::Client::connect(url, config("late")) {
            Err(rigwire_std::Error::Rejected { reason, .. }) => {
                assert!(reason.contains("is full: 1 connections"), "{reason}")
            }
            other => panic!("{url}, attempt {attempt}: {other:?}"),
        }
    }
}

/// A client refused for room learns it from its connect, on every server,
/// without a secret too (its handshake then ends with the server's
/// `Hello`): the `Hello` and the `Reject` leave in one write. They left in
/// two, and a client that read the first alone took itself as connected,
/// to fail at its first call.
#[test]
fn a_client_refused_for_room_is_told_by_its_connect_on_any_server() {
    let _one = serial();
    on_each_full_server(None, refused_by_the_connect);
}

const RACE_SECRET: &str = "lab-secret-0123456789";

/// With a secret, two clients racing for a server's last place: both are
/// let into the handshake (strangers do not count against the limit), and
/// the one that proves the secret second is refused before the server's
/// proof goes out, so its connect reports it. It was told after its
/// handshake: its connect succeeded, and its first call failed.
fn the_loser_of_a_race_for_the_last_place_is_told_by_its_connect(url: &str) {
    let secret = |name: &str| config(name).secret(RACE_SECRET).unwrap();
    let mut refused = 0;
    for round in 0..20 {
        let racers: Vec<_> = (0..2)
            .map(|i| {
                let (url, config) = (url.to_owned(), secret(&format!("racer-{i}")));
                std::thread::spawn(move || match rigwire_std::Client::connect(&url, config) {
                    Ok(client) => {
                        let sum = client.call::<_, i64>("add", &(1i64, 1i64));
                        (Some(client), sum.map(|_| ()).map_err(|e| e.to_string()))
                    }
                    Err(rigwire_std::Error::Rejected { reason, .. }) => (None, Err(reason)),
                    Err(other) => panic!("{url}, round {round}: {other}"),
                })
            })
            .collect();
        let outcomes: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        for (client, outcome) in &outcomes {
            match (client, outcome) {
                (Some(_), Ok(())) => {}
                (None, Err(reason)) => {
                    assert!(reason.contains("is full"), "{reason}");
                    refused += 1;
                }
                other => panic!("{url}, round {round}: connected, then {other:?}"),
            }
        }
        drop(outcomes);
        std::thread::sleep(Duration::from_millis(50)); // the winner's place freed
    }
    assert!(
        refused >= 10,
        "{url}: {refused} refused in 20 races for one place"
    );
}

/// Servers with one place and a secret: both runtimes', over TCP and
/// websocket, and the relay's clients' side.
#[test]
fn the_loser_of_a_race_for_the_last_place_is_told_by_its_connect_on_any_server() {
    let _one = serial();
    on_each_full_server(
        Some(RACE_SECRET),
        the_loser_of_a_race_for_the_last_place_is_told_by_its_connect,
    );
}
