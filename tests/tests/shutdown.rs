//! Spec §6.9, graceful shutdown, in both runtimes: during the grace a call
//! already running finishes and is answered, a new connection gets `Hello`
//! then `Reject{Shutdown}` (not silence in the listen backlog), and the
//! server then says `Goodbye`.

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_core::{Config, Error, Message, RejectCode};

#[allow(dead_code)]
mod common;
use common::wait_flag;

/// Reads whole frames from a raw socket until it closes or 10 s pass.
fn frames_until_closed(stream: &mut TcpStream) -> Vec<Message> {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => break,
        }
    }
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let Some(body) = rest.get(4..4 + len) else {
            break;
        };
        out.push(Message::decode(&Bytes::copy_from_slice(body)).unwrap());
        rest = &rest[4 + len..];
    }
    out
}

/// While a 600 ms call runs, `stop` shuts the server down with a 5 s grace
/// on a thread of its own; a newcomer connects during the grace.
fn check_grace(url: &str, running: &AtomicBool, stop: impl FnOnce() + Send + 'static) {
    let client = rigwire_std::Client::connect(url, Config::named("script")).unwrap();
    let slow = client.start("nap", &600u64).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while !running.load(Ordering::SeqCst) {
        assert!(Instant::now() < until, "the handler never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopper = std::thread::spawn(stop);
    std::thread::sleep(Duration::from_millis(50));
    let addr = url.trim_start_matches("tcp://");
    let mut newcomer = TcpStream::connect(addr).unwrap();
    let said = frames_until_closed(&mut newcomer);
    assert!(matches!(said.first(), Some(Message::Hello(_))), "{said:?}");
    assert!(
        matches!(said.get(1), Some(Message::Reject { code: RejectCode::Shutdown, reason }) if reason.contains("shutting down")),
        "{said:?}"
    );
    // The call that was running when the shutdown began is answered.
    let slept: u64 = slow.wait().unwrap();
    assert_eq!(slept, 600);
    stopper.join().unwrap();
}

/// A flag the `nap` handler raises when it starts.
fn started() -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    (Arc::clone(&flag), flag)
}

#[test]
fn std_server_answers_running_calls_and_refuses_newcomers_during_its_grace() {
    let (running, flag) = started();
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
    server
        .expose("nap", move |ms: u64| {
            flag.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(ms));
            Ok(ms)
        })
        .unwrap();
    let server = server.start().unwrap();
    check_grace(&server.local_url(), &running, move || {
        server.shutdown(Duration::from_secs(5))
    });
}

#[test]
fn smol_server_answers_running_calls_and_refuses_newcomers_during_its_grace() {
    let (running, flag) = started();
    let mut server = rigwire_smol::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
    server
        .expose("nap", move |ms: u64| {
            flag.store(true, Ordering::SeqCst);
            async move {
                smol::Timer::after(Duration::from_millis(ms)).await;
                Ok(ms)
            }
        })
        .unwrap();
    let server = server.start().unwrap();
    check_grace(&server.local_url(), &running, move || {
        smol::block_on(server.shutdown(Duration::from_secs(5)))
    });
}

/// A TCP proxy to `upstream` for one connection that passes nothing from
/// its client on until `open` is set, so that the server holds that
/// connection in its opening (a websocket waiting for its upgrade) for as
/// long as the test wants. Returns the proxy's address, and a flag raised
/// once it has connected upstream.
fn gated_proxy(upstream: String, open: Arc<AtomicBool>) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let connected = Arc::new(AtomicBool::new(false));
    let upstream_reached = Arc::clone(&connected);
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(upstream).unwrap();
        upstream_reached.store(true, Ordering::SeqCst);
        let (mut from_server, mut to_client) =
            (server.try_clone().unwrap(), client.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from_server, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Both);
        });
        assert!(wait_flag(&open), "the gate never opened");
        let (mut from_client, mut to_server) = (client, server);
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Both);
    });
    (addr, connected)
}

/// A client whose websocket opening was held up until the server had begun
/// to shut down (and had told the peers it knew of to go) is refused then,
/// in its opening or once authenticated, and the shutdown ends while the
/// client still holds its side. (The smol server once admitted it, never
/// told it to go, and waited for it for as long as its peer stayed.)
fn check_late_opening(url: &str, shutdown: impl FnOnce() + Send + 'static) {
    let upstream = url
        .trim_start_matches("ws://")
        .trim_end_matches("/rig")
        .to_string();
    let open = Arc::new(AtomicBool::new(false));
    let (proxy, connected) = gated_proxy(upstream, Arc::clone(&open));
    let client = std::thread::spawn(move || {
        rigwire_std::Client::connect(&format!("ws://{proxy}/rig"), Config::named("late"))
    });
    assert!(wait_flag(&connected));
    // The server accepts it into its opening; then it begins to shut down.
    std::thread::sleep(Duration::from_millis(200));
    let (done, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        shutdown();
        let _ = done.send(());
    });
    std::thread::sleep(Duration::from_millis(200));
    open.store(true, Ordering::SeqCst);
    // Held (not dropped) until the shutdown has ended.
    let client = client.join().unwrap();
    stopped
        .recv_timeout(Duration::from_secs(20))
        .expect("the shutdown waited for a connection it never told to go");
    let refused = match &client {
        Err(e) => e.clone(),
        Ok(client) => client.call::<_, ()>("rigwire.methods", &()).unwrap_err(),
    };
    assert!(
        matches!(&refused, Error::Connect { .. })
            || refused.to_string().contains("the server is shutting down"),
        "{refused:?}"
    );
}

#[test]
fn std_server_refuses_a_connection_that_opened_after_its_shutdown_began() {
    let server = rigwire_std::Server::bind("ws://127.0.0.1:0/rig", Config::named("rig")).unwrap();
    let server = server.start().unwrap();
    let url = server.local_url();
    check_late_opening(&url, move || server.shutdown(Duration::from_millis(300)));
}

#[test]
fn smol_server_refuses_a_connection_that_opened_after_its_shutdown_began() {
    let server = rigwire_smol::Server::bind("ws://127.0.0.1:0/rig", Config::named("rig")).unwrap();
    let server = server.start().unwrap();
    let url = server.local_url();
    check_late_opening(&url, move || {
        smol::block_on(server.shutdown(Duration::from_millis(300)))
    });
}

/// A rig whose `quit` handler shuts its own server down, run inline on the
/// connection's thread or on the pool: the call is answered, and the
/// server stops. That once waited for the very handler doing it (a call in
/// progress) for the whole grace, answered the call `Shutdown` instead, and
/// inline panicked joining its own thread.
#[test]
fn std_server_shut_down_by_its_own_handler_answers_it_and_stops() {
    use std::sync::Mutex;
    for dispatch in [rigwire_std::Dispatch::Inline, rigwire_std::Dispatch::Pool] {
        let slot: Arc<Mutex<Option<rigwire_std::RunningServer>>> = Arc::default();
        let (stopped, told) = mpsc::channel();
        let mut server =
            rigwire_std::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
        let own = Arc::clone(&slot);
        server
            .expose("quit", move |(): ()| {
                if let Some(running) = own.lock().unwrap().take() {
                    running.shutdown(Duration::from_secs(30));
                    let _ = stopped.send(());
                }
                Ok("bye".to_string())
            })
            .unwrap();
        server.dispatch("quit", dispatch).unwrap();
        let running = server.start().unwrap();
        let url = running.local_url();
        *slot.lock().unwrap() = Some(running);
        let client = rigwire_std::Client::connect(&url, Config::named("script")).unwrap();
        let answer = client.call_timeout::<_, String>("quit", &(), Duration::from_secs(20));
        assert_eq!(answer.as_deref(), Ok("bye"), "{dispatch:?}");
        // The 30 s grace was not waited out: `shutdown` returned at once,
        // and the server says goodbye once the call was answered.
        told.recv_timeout(Duration::from_secs(20)).unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while client.close_reason().is_none() {
            assert!(
                Instant::now() < until,
                "{dispatch:?}: the server never stopped"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let reason = client.close_reason().unwrap().to_string();
        assert!(reason.contains("shutting down"), "{dispatch:?}: {reason}");
    }
}

/// A handler run on its connection's thread (inline, or adaptive once it
/// proved fast) that then hangs on its hardware keeps that thread. The
/// server's shutdown once joined it, and so never returned: a rig stuck
/// for good on SIGTERM. It now stops within its grace and a short wait for
/// its threads, and leaves that one running, saying so.
#[test]
fn std_server_shutdown_does_not_wait_for_good_for_a_handler_hung_on_its_connections_thread() {
    use std::sync::Mutex;
    let released = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let gate = Arc::clone(&released);
    let mut server = rigwire_std::Server::bind("tcp://127.0.0.1:0", Config::named("rig")).unwrap();
    server
        .expose("hang", move |(): ()| {
            let (open, cond) = &*gate;
            let limit = Duration::from_secs(60);
            drop(cond.wait_timeout_while(open.lock().unwrap(), limit, |open| !*open));
            Ok(())
        })
        .unwrap();
    server
        .dispatch("hang", rigwire_std::Dispatch::Inline)
        .unwrap();
    let running = server.start().unwrap();
    let client =
        rigwire_std::Client::connect(&running.local_url(), Config::named("script")).unwrap();
    let hung = client.call_timeout::<_, ()>("hang", &(), Duration::from_millis(200));
    assert_eq!(hung, Err(Error::DeadlineExceeded));
    let (stopped, told) = mpsc::channel();
    std::thread::spawn(move || {
        running.shutdown(Duration::from_millis(100));
        let _ = stopped.send(());
    });
    let outcome = told.recv_timeout(Duration::from_secs(30));
    *released.0.lock().unwrap() = true;
    released.1.notify_all();
    assert!(outcome.is_ok(), "the shutdown waited for the hung handler");
}
