//! The relay state machine: two-hop calls between in-memory peers.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use rigwire_core::relay::{
    ConnId, PeerKind, Relay, RelayConfig, RelayEvent, REGISTER_METHOD, SERVICES_METHOD,
};
use rigwire_core::{
    CallError, Codec, Connection, ErrorKind, Event, Framing, Payload, ProtocolConfig, Registry,
    RemoteError, Role,
};

/// One peer of the relay, on its own connection.
struct Remote {
    conn: Connection,
    relay_side: ConnId,
    events: Vec<Event>,
}

struct Net {
    relay: Relay,
    remotes: Vec<Remote>,
    relay_events: Vec<RelayEvent>,
    now: Instant,
}

impl Net {
    fn new(config: RelayConfig, own: Registry) -> Net {
        // Routing is under test here, not the services' secret.
        let config = RelayConfig {
            insecure_services: true,
            ..config
        };
        Net {
            relay: Relay::new(config, own).unwrap(),
            remotes: Vec::new(),
            relay_events: Vec::new(),
            now: Instant::now(),
        }
    }

    fn join(&mut self, side: PeerKind, name: &str, registry: Registry) -> usize {
        let relay_side = self
            .relay
            .accept(side, Framing::Stream, [3; 32], self.now)
            .unwrap();
        let conn = Connection::new(
            ProtocolConfig::named(name),
            registry,
            Role::Client,
            Framing::Stream,
            [4; 32],
            self.now,
        )
        .unwrap();
        self.remotes.push(Remote {
            conn,
            relay_side,
            events: Vec::new(),
        });
        self.pump();
        self.remotes.len() - 1
    }

    /// Moves bytes until nobody has anything to send.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for r in &mut self.remotes {
                while let Some(b) = r.conn.poll_transmit() {
                    self.relay.handle_input(r.relay_side, &b, self.now);
                    moved = true;
                }
            }
            // Only the connections the relay names: a missed one would stall here.
            while let Some(id) = self.relay.poll_touched() {
                let Some(r) = self.remotes.iter_mut().find(|r| r.relay_side == id) else {
                    continue;
                };
                if let Some(c) = self.relay.connection(id) {
                    while let Some(b) = c.poll_transmit() {
                        r.conn.handle_input(&b, self.now);
                        moved = true;
                    }
                }
            }
            for r in &mut self.remotes {
                while let Some(e) = r.conn.poll_event() {
                    r.events.push(e);
                }
            }
            while let Some(e) = self.relay.poll_event() {
                self.relay_events.push(e);
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.relay.handle_timeout(self.now);
        for r in &mut self.remotes {
            r.conn.handle_timeout(self.now);
        }
        self.pump();
    }

    fn register(&mut self, who: usize, names: &[&str]) -> Result<Vec<String>, RemoteError> {
        let now = self.now;
        let id = self.remotes[who]
            .conn
            .call(
                REGISTER_METHOD,
                Payload::postcard(&names).unwrap(),
                None,
                now,
            )
            .unwrap();
        self.pump();
        match take_response(&mut self.remotes[who].events, id) {
            Ok(p) => Ok(p.decode().unwrap()),
            Err(CallError::Remote(e)) => Err(e),
            Err(other) => panic!("{other}"),
        }
    }

    fn call(&mut self, who: usize, method: &str, args: Payload, timeout: Option<Duration>) -> u64 {
        let now = self.now;
        let id = self.remotes[who]
            .conn
            .call(method, args, timeout, now)
            .unwrap();
        self.pump();
        id
    }

    /// The calls a service has received, answering none.
    fn calls_at(&mut self, who: usize) -> Vec<rigwire_core::IncomingCall> {
        let events = std::mem::take(&mut self.remotes[who].events);
        let (calls, rest): (Vec<_>, Vec<_>) = events
            .into_iter()
            .partition(|e| matches!(e, Event::Call(_)));
        self.remotes[who].events = rest;
        calls
            .into_iter()
            .map(|e| match e {
                Event::Call(c) => c,
                _ => unreachable!(),
            })
            .collect()
    }
}

fn take_response(events: &mut Vec<Event>, id: u64) -> Result<Payload, CallError> {
    let at = events
        .iter()
        .position(|e| matches!(e, Event::Response { id: got, .. } if *got == id))
        .unwrap_or_else(|| panic!("no response to {id} in {events:?}"));
    match events.remove(at) {
        Event::Response { result, .. } => result,
        _ => unreachable!(),
    }
}

fn service_registry() -> Registry {
    let mut r = Registry::new();
    r.expose("getFile").unwrap();
    r.expose("slow").unwrap();
    r
}

/// A relay with the service `data` registered and the client `script`
/// connected: the net and their indices.
fn data_and_script(config: RelayConfig) -> (Net, usize, usize) {
    let mut net = Net::new(config, Registry::new());
    let data = net.join(PeerKind::Service, "data-service", service_registry());
    net.register(data, &["data"]).unwrap();
    let script = net.join(PeerKind::Client, "script", Registry::new());
    (net, data, script)
}

fn remote(result: Result<Payload, CallError>) -> RemoteError {
    match result {
        Err(CallError::Remote(e)) => e,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[test]
fn a_call_crosses_two_hops_with_ids_remapped_and_the_payload_untouched() {
    let mut net = Net::new(RelayConfig::default(), Registry::new());
    let data = net.join(PeerKind::Service, "data-service", service_registry());
    assert_eq!(net.register(data, &["data"]).unwrap(), vec!["data"]);
    let script = net.join(PeerKind::Client, "script", Registry::new());
    let other = net.join(PeerKind::Client, "other-script", Registry::new());
    let big = Bytes::from((0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    // Both clients use call id 1: the relay keeps them apart.
    let a = net.call(
        script,
        "data.getFile",
        Payload::new(Codec::Postcard, big.clone()),
        None,
    );
    let b = net.call(
        other,
        "data.getFile",
        Payload::json(&"small").unwrap(),
        None,
    );
    assert_eq!((a, b), (1, 1));
    let calls = net.calls_at(data);
    assert_eq!(
        calls.iter().map(|c| c.method.as_str()).collect::<Vec<_>>(),
        vec!["getFile", "getFile"]
    );
    assert_eq!(calls[0].args.bytes, big, "forwarded untouched");
    assert_ne!(
        calls[0].id, calls[1].id,
        "remapped onto one id space at the service"
    );
    let now = net.now;
    let _ = now;
    net.remotes[data]
        .conn
        .reply(calls[1].id, Ok(Payload::json(&"for other").unwrap()))
        .unwrap();
    net.remotes[data]
        .conn
        .reply(calls[0].id, Ok(Payload::json(&"for script").unwrap()))
        .unwrap();
    net.pump();
    assert_eq!(
        take_response(&mut net.remotes[script].events, a)
            .unwrap()
            .decode::<String>()
            .unwrap(),
        "for script"
    );
    assert_eq!(
        take_response(&mut net.remotes[other].events, b)
            .unwrap()
            .decode::<String>()
            .unwrap(),
        "for other"
    );
    assert_eq!(net.relay.forwarded_in_flight(), 0);
}

/// A drain's grace too long to add to the clock (`Duration::MAX`, "as long
/// as it takes") waits for the forwarded calls; it does not cut them at once.
#[test]
fn a_drain_whose_grace_is_too_long_to_add_waits_for_forwarded_calls() {
    let mut net = Net::new(RelayConfig::default(), Registry::new());
    let data = net.join(PeerKind::Service, "data-service", service_registry());
    net.register(data, &["data"]).unwrap();
    let script = net.join(PeerKind::Client, "script", Registry::new());
    let id = net.call(script, "data.getFile", Payload::json(&"f").unwrap(), None);
    let call = net.calls_at(data).remove(0);
    let now = net.now;
    net.relay.drain(Duration::MAX, "relay stopping", now);
    net.advance(Duration::from_millis(10));
    net.remotes[data]
        .conn
        .reply(call.id, Ok(Payload::json(&"done").unwrap()))
        .unwrap();
    net.pump();
    let answer = take_response(&mut net.remotes[script].events, id);
    assert_eq!(answer.unwrap().decode::<String>().unwrap(), "done");
}

#[test]
fn errors_from_the_service_reach_the_client_unchanged() {
    let (mut net, data, script) = data_and_script(RelayConfig::default());
    let id = net.call(script, "data.getFile", Payload::json(&()).unwrap(), None);
    let call = net.calls_at(data).remove(0);
    let err =
        RemoteError::new(ErrorKind::Handler, "no such run").with_detail("run 7 was never recorded");
    net.remotes[data]
        .conn
        .reply(call.id, Err(err.clone()))
        .unwrap();
    net.pump();
    assert_eq!(
        remote(take_response(&mut net.remotes[script].events, id)),
        err
    );
    // A method the service does not expose: its own NoSuchMethod comes back.
    let id = net.call(script, "data.nope", Payload::json(&()).unwrap(), None);
    assert_eq!(
        remote(take_response(&mut net.remotes[script].events, id)).kind,
        ErrorKind::NoSuchMethod
    );
}

#[test]
fn a_name_nobody_serves_fails_at_once_with_unavailable() {
    let mut net = Net::new(RelayConfig::default(), Registry::new());
    let script = net.join(PeerKind::Client, "script", Registry::new());
    let id = net.call(script, "subject.show", Payload::json(&()).unwrap(), None);
    let e = remote(take_response(&mut net.remotes[script].events, id));
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::Unavailable,
            "no service 'subject' is connected to this relay (none is connected now)"
        )
    );
}

#[test]
fn when_a_service_drops_every_call_pending_on_it_fails_naming_it() {
    let (mut net, data, script) = data_and_script(RelayConfig::default());
    let ids: Vec<u64> = (0..3)
        .map(|_| {
            net.call(
                script,
                "data.slow",
                Payload::json(&()).unwrap(),
                Some(Duration::from_secs(60)),
            )
        })
        .collect();
    assert_eq!(net.relay.forwarded_in_flight(), 3);
    let side = net.remotes[data].relay_side;
    let now = net.now;
    net.relay
        .handle_transport_closed(side, "connection reset", now);
    net.pump();
    for id in ids {
        let e = remote(take_response(&mut net.remotes[script].events, id));
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(
            e.message.starts_with("service 'data' disconnected"),
            "{}",
            e.message
        );
    }
    assert_eq!(net.relay.routes().count(), 0);
    // The name is free again: a new service takes it.
    let again = net.join(PeerKind::Service, "data-service-2", service_registry());
    assert_eq!(net.register(again, &["data"]).unwrap(), vec!["data"]);
}

#[test]
fn taken_and_disallowed_names_are_refused_with_the_reason() {
    let config = RelayConfig {
        allowed: Some(vec!["data".into(), "subject".into()]),
        ..RelayConfig::default()
    };
    let mut net = Net::new(config, Registry::new());
    let first = net.join(PeerKind::Service, "scanner-1", service_registry());
    net.register(first, &["data"]).unwrap();
    let second = net.join(PeerKind::Service, "scanner-2", service_registry());
    let e = net.register(second, &["data"]).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            ErrorKind::Refused,
            "the service name 'data' is already registered by 'scanner-1'"
        )
    );
    let e = net.register(second, &["camera"]).unwrap_err();
    assert_eq!(
        e.message,
        "this relay does not accept a service named 'camera' (allowed: data, subject)"
    );
    assert_eq!(net.register(second, &["subject"]).unwrap(), vec!["subject"]);
    assert!(net
        .register(second, &["rigwire"])
        .unwrap_err()
        .message
        .contains("not a service name"));
    // Clients may not register: a service that dialed the clients' URL by
    // mistake is told where services register (it was told "no method
    // 'rigwire.register' here; forwarded calls are named service.method").
    let script = net.join(PeerKind::Client, "script", Registry::new());
    let id = net.call(
        script,
        REGISTER_METHOD,
        Payload::postcard(&["data"]).unwrap(),
        None,
    );
    let e = remote(take_response(&mut net.remotes[script].events, id));
    assert_eq!(e.kind, ErrorKind::Refused);
    assert!(
        e.message
            .starts_with("services register at the relay's services URL, not at this one"),
        "{e}"
    );
}

#[test]
fn the_remaining_deadline_travels_on_and_the_relay_can_cap_it() {
    let config = RelayConfig {
        max_forward_timeout: Some(Duration::from_secs(2)),
        ..RelayConfig::default()
    };
    let (mut net, data, script) = data_and_script(config);
    // Shorter at the client than at the relay: the client's 500 ms travels on.
    net.call(
        script,
        "data.slow",
        Payload::json(&()).unwrap(),
        Some(Duration::from_millis(500)),
    );
    let short = net.calls_at(data).remove(0);
    assert_eq!(
        short.deadline.unwrap().duration_since(net.now),
        Duration::from_millis(500)
    );
    // Longer at the client than at the relay: the relay's 2 s cap applies.
    let capped = net.call(
        script,
        "data.slow",
        Payload::json(&()).unwrap(),
        Some(Duration::from_secs(60)),
    );
    let long = net.calls_at(data).remove(0);
    assert_eq!(
        long.deadline.unwrap().duration_since(net.now),
        Duration::from_secs(2)
    );
    // When the cap passes, the client hears DeadlineExceeded saying whose
    // limit it was (its own is far off), the service a Cancel.
    net.advance(Duration::from_millis(2001));
    let err = remote(take_response(&mut net.remotes[script].events, capped));
    assert_eq!(err.kind, ErrorKind::DeadlineExceeded);
    assert_eq!(
        err.message,
        "service 'data' did not answer within the relay's limit of 2s (its max_forward_timeout)"
    );
    assert!(net.remotes[data]
        .events
        .iter()
        .any(|e| matches!(e, Event::Cancelled { id, .. } if *id == long.id)));
}

#[test]
fn a_cancel_travels_both_hops() {
    let (mut net, data, script) = data_and_script(RelayConfig::default());
    let id = net.call(script, "data.slow", Payload::json(&()).unwrap(), None);
    let at_service = net.calls_at(data).remove(0);
    assert!(net.remotes[script].conn.cancel(id));
    net.pump();
    assert!(net.remotes[data]
        .events
        .iter()
        .any(|e| matches!(e, Event::Cancelled { id, .. } if *id == at_service.id)));
    assert_eq!(net.relay.forwarded_in_flight(), 0);
}

#[test]
fn the_relays_own_names_work_beside_forwarded_ones() {
    let mut own = Registry::new();
    own.expose("status").unwrap();
    let mut net = Net::new(RelayConfig::default(), own);
    let script = net.join(PeerKind::Client, "script", Registry::new());
    let id = net.call(script, "status", Payload::json(&()).unwrap(), None);
    let Some(RelayEvent::Call { conn, call }) = net
        .relay_events
        .iter()
        .find(|e| matches!(e, RelayEvent::Call { .. }))
        .cloned()
    else {
        panic!()
    };
    net.relay
        .reply(conn, call.id, Ok(Payload::json(&"ok").unwrap()))
        .unwrap();
    net.pump();
    assert_eq!(
        take_response(&mut net.remotes[script].events, id)
            .unwrap()
            .decode::<String>()
            .unwrap(),
        "ok"
    );
}

#[test]
fn broadcast_reaches_clients_or_one_service() {
    let mut net = Net::new(RelayConfig::default(), Registry::new());
    let mut reg = Registry::new();
    reg.expose("news").unwrap();
    let data = net.join(PeerKind::Service, "data-service", {
        let mut r = service_registry();
        r.expose("news").unwrap();
        r
    });
    net.register(data, &["data"]).unwrap();
    let a = net.join(PeerKind::Client, "a", reg.clone());
    let b = net.join(PeerKind::Client, "b", reg);
    let now = net.now;
    assert_eq!(
        net.relay
            .broadcast_clients("news", &Payload::json(&"run 7 started").unwrap(), now),
        2
    );
    assert_eq!(
        net.relay
            .broadcast_service("data", "news", &Payload::json(&"flush").unwrap(), now),
        1
    );
    assert_eq!(
        net.relay
            .broadcast_service("nobody", "news", &Payload::json(&"x").unwrap(), now),
        0
    );
    net.pump();
    for who in [a, b, data] {
        assert!(
            net.remotes[who]
                .events
                .iter()
                .any(|e| matches!(e, Event::Notify(n) if n.method == "news")),
            "{who}"
        );
    }
}

#[test]
fn a_service_may_not_take_a_name_the_relay_serves_itself() {
    let mut own = Registry::new();
    own.expose("relay.routes").unwrap();
    let mut net = Net::new(RelayConfig::default(), own);
    let svc = net.join(PeerKind::Service, "impostor", service_registry());
    let e = net.register(svc, &["relay"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Refused);
    assert_eq!(
        e.message,
        "the relay serves 'relay.routes' itself, so no service may be named 'relay'"
    );
}

#[test]
fn connections_over_the_limit_are_rejected_with_a_reason() {
    let config = RelayConfig {
        max_connections: 2,
        ..RelayConfig::default()
    };
    let mut net = Net::new(config, Registry::new());
    // Each listener has its own limit: clients never crowd out services.
    let a = net.join(PeerKind::Client, "a", Registry::new());
    let b = net.join(PeerKind::Client, "b", Registry::new());
    let c = net.join(PeerKind::Client, "c", Registry::new());
    let s = net.join(PeerKind::Service, "s", service_registry());
    for ok in [a, b, s] {
        assert!(net.remotes[ok].conn.is_established());
    }
    let closed = net.remotes[c]
        .events
        .iter()
        .find_map(|e| match e {
            Event::Closed(err) => Some(err.to_string()),
            _ => None,
        })
        .expect("the third client is closed");
    assert!(
        closed.contains("the relay is full: 2 connections"),
        "{closed}"
    );
}

#[test]
fn a_crowd_refused_for_room_is_told_why_only_within_the_handshake_budget() {
    let config = RelayConfig {
        max_connections: 1,
        max_handshaking: 2,
        ..RelayConfig::default()
    };
    let mut net = Net::new(config, Registry::new());
    let a = net.join(PeerKind::Client, "a", Registry::new());
    assert!(net.remotes[a].conn.is_established());
    let now = net.now;
    let accept = |net: &mut Net, i: u8| {
        net.relay
            .accept(PeerKind::Client, Framing::Stream, [i; 32], now)
            .unwrap()
    };
    // Each is refused (the relay is full); two are told why, holding a
    // place each while they are; the third is closed at once.
    let crowd: Vec<_> = (0..3).map(|i| accept(&mut net, i)).collect();
    let unanswered: Vec<_> = crowd
        .iter()
        .map(|id| net.relay.closes_unanswered(*id))
        .collect();
    assert_eq!(unanswered, [false, false, true]);
    for id in &crowd {
        assert!(net.relay.connection(*id).unwrap().is_closed());
    }
    // One told gone, and its place is taken by the next one refused.
    net.relay.remove(crowd[0]);
    net.relay.remove(crowd[2]);
    let next = accept(&mut net, 9);
    assert!(!net.relay.closes_unanswered(next));
    let over = accept(&mut net, 10);
    assert!(net.relay.closes_unanswered(over));
}

#[test]
fn strangers_in_the_handshake_never_crowd_out_peers_that_authenticate() {
    let config = RelayConfig {
        max_handshaking: 3,
        ..RelayConfig::default()
    };
    let mut net = Net::new(config, Registry::new());
    // Silent sockets: accepted by the relay, never say Hello.
    let now = net.now;
    let silent: Vec<_> = (0..10)
        .map(|i| {
            net.relay
                .accept(PeerKind::Client, Framing::Stream, [i as u8; 32], now)
                .unwrap()
        })
        .collect();
    net.pump();
    // The oldest were closed to make room, the newest still wait.
    let closed = silent
        .iter()
        .filter(|id| net.relay.connection(**id).is_some_and(|c| c.is_closed()))
        .count();
    assert_eq!(closed, 7);
    // A script and a service still get in, authenticate and work.
    let script = net.join(PeerKind::Client, "script", Registry::new());
    let service = net.join(PeerKind::Service, "data", service_registry());
    assert!(net.remotes[script].conn.is_established());
    assert!(net.remotes[service].conn.is_established());
}

#[test]
fn clients_can_list_the_services_routed_now() {
    let mut net = Net::new(RelayConfig::default(), Registry::new());
    let script = net.join(PeerKind::Client, "script", Registry::new());
    let list = |net: &mut Net| -> Vec<String> {
        let id = net.call(script, SERVICES_METHOD, Payload::json(&()).unwrap(), None);
        take_response(&mut net.remotes[script].events, id)
            .unwrap()
            .decode()
            .unwrap()
    };
    assert!(list(&mut net).is_empty());
    let data = net.join(PeerKind::Service, "scanner", service_registry());
    net.register(data, &["subject", "data"]).unwrap();
    assert_eq!(list(&mut net), vec!["data", "subject"]);
}

#[test]
fn a_relay_whose_services_have_no_secret_refuses_to_start_unless_told() {
    let err = Relay::new(RelayConfig::default(), Registry::new()).unwrap_err();
    assert!(
        err.to_string().contains("anyone could register a service"),
        "{err}"
    );
    let config = RelayConfig::default()
        .services_secret("services-secret-0123456")
        .unwrap();
    assert!(Relay::new(config, Registry::new()).is_ok());
    let insecure = RelayConfig {
        insecure_services: true,
        ..RelayConfig::default()
    };
    assert!(Relay::new(insecure, Registry::new()).is_ok());
}

#[test]
fn registrations_are_bounded_refuse_duplicates_and_can_be_repeated() {
    let config = RelayConfig {
        max_names_per_service: 3,
        max_names: 4,
        ..RelayConfig::default()
    };
    let mut net = Net::new(config, Registry::new());
    let a = net.join(PeerKind::Service, "a", Registry::new());
    let b = net.join(PeerKind::Service, "b", Registry::new());
    let refused = |r: Result<Vec<String>, RemoteError>| match r {
        Err(e) if e.kind == ErrorKind::Refused => e.message,
        other => panic!("{other:?}"),
    };
    let twice = refused(net.register(a, &["x", "x"]));
    assert!(twice.contains("twice"), "{twice}");
    assert_eq!(net.register(a, &["x", "y"]).unwrap(), ["x", "y"]);
    // Again: idempotent, nothing held twice.
    assert_eq!(net.register(a, &["x", "y"]).unwrap(), ["x", "y"]);
    assert_eq!(net.register(a, &["z"]).unwrap(), ["z"]);
    let per_service = refused(net.register(a, &["w"]));
    assert!(per_service.contains("at most 3 names"), "{per_service}");
    assert_eq!(net.register(b, &["v"]).unwrap(), ["v"]);
    let total = refused(net.register(b, &["u"]));
    assert!(total.contains("at most 4 service names"), "{total}");
    let routes: Vec<_> = net.relay.routes().map(|(n, _)| n.to_owned()).collect();
    assert_eq!(routes, ["v", "x", "y", "z"]);
}

/// What connection `who` has been notified of, by method.
fn notified(net: &Net, who: usize, method: &str) -> Vec<Payload> {
    let notifies = net.remotes[who].events.iter().filter_map(|e| match e {
        Event::Notify(n) if n.method == method => Some(n.args.clone()),
        _ => None,
    });
    notifies.collect()
}

/// A client that listens for the services' events, joined to `net`.
fn listening_client(net: &mut Net, name: &str) -> usize {
    let mut listens = Registry::new();
    listens.expose("exp.event").unwrap();
    net.join(PeerKind::Client, name, listens)
}

/// A service's notify to a reserved name is the protocol's business, not
/// its followers': it is not passed on, and the service is told.
#[test]
fn a_services_notify_to_a_reserved_name_is_not_fanned_out() {
    let (mut net, data, _) = data_and_script(RelayConfig::default());
    let script = listening_client(&mut net, "listening script");
    let now = net.now;
    let target = rigwire_core::Target::parse("tcp://relay:7500#data").unwrap();
    target.follow(&mut net.remotes[script].conn, now).unwrap();
    net.pump();
    net.remotes[data]
        .conn
        .notify("rigwire.follow", Payload::json(&"data").unwrap(), now)
        .unwrap();
    net.pump();
    // Passed on, the follower's core would have answered it NoSuchMethod.
    assert_eq!(net.remotes[script].conn.stats().no_such_method, 0);
    let told: Vec<&RemoteError> = net.remotes[data]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::PeerError(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].kind, ErrorKind::NoSuchMethod);
    assert!(
        told[0].message.contains("belong to the protocol"),
        "{told:?}"
    );
}

/// A client of `URL#NAME` that exposes nothing follows nothing: each of
/// the service's events would reach it only to be answered `NoSuchMethod`.
/// One that exposes something follows.
#[test]
fn only_a_client_with_something_exposed_follows_its_service() {
    let (mut net, data, deaf) = data_and_script(RelayConfig::default());
    let listening = listening_client(&mut net, "listening script");
    let now = net.now;
    let target = rigwire_core::Target::parse("tcp://relay:7500#data").unwrap();
    for who in [deaf, listening] {
        target.follow(&mut net.remotes[who].conn, now).unwrap();
    }
    net.pump();
    let event = Payload::postcard(&("armed", "")).unwrap();
    for _ in 0..3 {
        net.remotes[data]
            .conn
            .notify("exp.event", event.clone(), now)
            .unwrap();
    }
    net.pump();
    assert_eq!(net.remotes[deaf].conn.stats().no_such_method, 0);
    assert_eq!(notified(&net, listening, "exp.event").len(), 3);
}

/// A Python service's handler with a `caller` parameter calls back "its
/// caller": behind a relay, that is the relay. The refusal says so, and
/// what reaches the client instead, not that `progress` is not exposed
/// (the client did expose it).
#[test]
fn a_service_calling_back_through_the_relay_is_told_why_it_cannot() {
    let (mut net, data, _script) = data_and_script(RelayConfig::default());
    let call = net.call(data, "progress", Payload::json(&3).unwrap(), None);
    let err = remote(take_response(&mut net.remotes[data].events, call));
    assert_eq!(err.kind, ErrorKind::NoSuchMethod);
    assert!(
        err.message.starts_with("no method 'progress' is exposed: "),
        "{err:?}"
    );
    assert!(err
        .message
        .contains("calls back to a client do not pass through a relay"));
    // The same words tell a script that dialed the services' URL by
    // mistake where to call.
    assert!(err
        .message
        .contains("this is the relay's services URL: a script calls at its clients' URL"));
    assert!(err
        .message
        .contains("notifies reach every client that follows it"));
}

#[test]
fn a_services_notifies_reach_the_clients_that_follow_it_as_it_sent_them() {
    let mut net = Net::new(RelayConfig::default(), Registry::new());
    let mut listens = Registry::new();
    listens.expose("exp.event").unwrap();
    let data = net.join(PeerKind::Service, "data-service", service_registry());
    net.register(data, &["data", "scans"]).unwrap();
    let (a, b, c, d) = (
        net.join(PeerKind::Client, "a", listens.clone()),
        net.join(PeerKind::Client, "b", listens.clone()),
        net.join(PeerKind::Client, "c", listens.clone()),
        net.join(PeerKind::Client, "d", listens),
    );
    // a follows as a client whose URL names the service does; b by a call,
    // for another of the service's names; c follows another service; d nobody.
    let target = rigwire_core::Target::parse("tcp://relay:7500#data").unwrap();
    let now = net.now;
    target.follow(&mut net.remotes[a].conn, now).unwrap();
    let follow = net.call(b, "rigwire.follow", Payload::json(&"scans").unwrap(), None);
    let unit: () = take_response(&mut net.remotes[b].events, follow)
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(unit, ());
    net.remotes[c]
        .conn
        .notify("rigwire.follow", Payload::json(&"stim").unwrap(), now)
        .unwrap();
    net.pump();

    let event = Payload::postcard(&("armed", "rig 1 ready")).unwrap();
    net.remotes[data]
        .conn
        .notify("exp.event", event.clone(), now)
        .unwrap();
    net.pump();
    for follower in [a, b] {
        assert_eq!(
            notified(&net, follower, "exp.event"),
            std::slice::from_ref(&event)
        );
    }
    for other in [c, d] {
        assert!(notified(&net, other, "exp.event").is_empty());
    }
    // The service is not told its notify went nowhere, as it would be for a
    // name nobody exposes.
    assert!(!net.remotes[data]
        .events
        .iter()
        .any(|e| matches!(e, Event::PeerError(_))));

    // A follow that names no service is refused, and said so.
    net.remotes[d]
        .conn
        .notify("rigwire.follow", Payload::json(&42).unwrap(), now)
        .unwrap();
    net.pump();
    assert!(net.remotes[d].events.iter().any(|e| matches!(
        e,
        Event::PeerError(err) if err.kind == ErrorKind::BadArguments
            && err.message.contains("rigwire.follow takes a service name")
    )));
    // A service's calls still reach only the relay's own names.
    let id = net.call(data, "exp.event", Payload::json(&()).unwrap(), None);
    let refused = remote(take_response(&mut net.remotes[data].events, id));
    assert_eq!(refused.kind, ErrorKind::NoSuchMethod);
}

#[test]
fn notifies_through_the_relay_free_their_place_under_the_incoming_limit() {
    let mut config = RelayConfig::default();
    config.clients.max_incoming_calls = 8;
    config.services.max_incoming_calls = 8;
    let mut net = Net::new(config, Registry::new());
    let mut listens = service_registry();
    listens.expose("exp.event").unwrap();
    listens.expose("tick").unwrap();
    let data = net.join(PeerKind::Service, "data-service", listens.clone());
    net.register(data, &["data"]).unwrap();
    let client = net.join(PeerKind::Client, "script", listens);
    let now = net.now;
    let data_name = rigwire_core::Target::parse("tcp://relay:1#data").unwrap();
    data_name
        .follow(&mut net.remotes[client].conn, now)
        .unwrap();
    net.pump();
    // Far more notifies each way than the limit, forwarded and fanned out.
    for _ in 0..40 {
        let tick = Payload::json(&1).unwrap();
        net.remotes[client]
            .conn
            .notify("data.tick", tick.clone(), now)
            .unwrap();
        net.remotes[data]
            .conn
            .notify("exp.event", tick, now)
            .unwrap();
        net.pump();
    }
    assert_eq!(notified(&net, data, "tick").len(), 40);
    assert_eq!(notified(&net, client, "exp.event").len(), 40);
    for who in [client, data] {
        assert!(!net.remotes[who]
            .events
            .iter()
            .any(|e| matches!(e, Event::PeerError(_))));
    }
    // And calls still get through both ways.
    let id = net.call(
        client,
        "data.getFile",
        Payload::json(&"a.dcm").unwrap(),
        None,
    );
    let calls = net.calls_at(data);
    assert_eq!(calls.len(), 1);
    net.remotes[data]
        .conn
        .reply(calls[0].id, Ok(Payload::json(&"ok").unwrap()))
        .unwrap();
    net.pump();
    assert!(take_response(&mut net.remotes[client].events, id).is_ok());
    let id = net.call(client, SERVICES_METHOD, Payload::json(&()).unwrap(), None);
    assert!(take_response(&mut net.remotes[client].events, id).is_ok());
}

#[test]
fn a_follower_that_does_not_read_costs_the_relay_no_more_than_its_output_limit() {
    const LIMIT: usize = 1 << 20;
    let mut config = RelayConfig::default();
    config.clients.max_queued_output = LIMIT;
    config.clients.max_frame = 128 * 1024;
    let mut net = Net::new(config, Registry::new());
    let mut listens = Registry::new();
    listens.expose("exp.event").unwrap();
    let data = net.join(PeerKind::Service, "data-service", service_registry());
    net.register(data, &["data"]).unwrap();
    let deaf = net.join(PeerKind::Client, "deaf", listens);
    let now = net.now;
    let target = rigwire_core::Target::parse("tcp://relay:1#data").unwrap();
    target.follow(&mut net.remotes[deaf].conn, now).unwrap();
    net.pump();

    // The service sends 16 MiB of events; the follower reads none of them
    // (its bytes are fed to the relay by hand, and nothing is taken back).
    let frame = Payload::new(Codec::Bytes, Bytes::from(vec![7u8; 64 * 1024]));
    for _ in 0..256 {
        let service = &mut net.remotes[data];
        service
            .conn
            .notify("exp.event", frame.clone(), now)
            .unwrap();
        let relay_side = service.relay_side;
        while let Some(b) = service.conn.poll_transmit() {
            net.relay.handle_input(relay_side, &b, now);
        }
    }
    let deaf_side = net.remotes[deaf].relay_side;
    let queued = net.relay.connection(deaf_side).unwrap().queued_output();
    assert!(queued <= LIMIT + 70 * 1024, "{queued} bytes queued");
    // The runtime is told once (to say so in its log), not for every drop.
    let told = std::iter::from_fn(|| net.relay.poll_event()).filter(|e| {
        matches!(e, RelayEvent::NotifiesDropped { conn, peer_name }
            if *conn == deaf_side && peer_name == "deaf")
    });
    assert_eq!(told.count(), 1);
    assert!(
        net.relay.dropped_notifies() >= 200,
        "{}",
        net.relay.dropped_notifies()
    );
    // Nor do the relay's own broadcasts queue up for it.
    for _ in 0..256 {
        net.relay.broadcast_clients("exp.event", &frame, now);
    }
    let queued = net.relay.connection(deaf_side).unwrap().queued_output();
    assert!(queued <= LIMIT + 70 * 1024, "{queued} bytes queued");
    assert!(net.relay.dropped_notifies() >= 450);
    // The follower is still served once it reads again.
    net.pump();
    assert!(!notified(&net, deaf, "exp.event").is_empty());
}

#[test]
fn a_clients_notify_that_goes_nowhere_is_refused_saying_why() {
    let (mut net, data, script) = data_and_script(RelayConfig::default());
    let now = net.now;
    for method in ["subject.show", "hello", "rigwire.nope", "data.getFile"] {
        let one = Payload::json(&1).unwrap();
        net.remotes[script].conn.notify(method, one, now).unwrap();
    }
    net.pump();
    // A mistyped service name is not silence: the script hears of it, as
    // from a callee that has no such method.
    let told: Vec<(ErrorKind, String)> = net.remotes[script]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::PeerError(err) => Some((err.kind, err.message.clone())),
            _ => None,
        })
        .collect();
    let said = |kind, message: &str| (kind, message.to_owned());
    assert_eq!(
        told,
        [
            said(
                ErrorKind::Unavailable,
                "notify to 'subject.show' dropped: no service 'subject' is connected to this relay \
                 (connected now: data)"
            ),
            said(
                ErrorKind::NoSuchMethod,
                "notify to 'hello' dropped: no method 'hello' here; forwarded calls are named service.method"
            ),
            said(
                ErrorKind::NoSuchMethod,
                "notify to 'rigwire.nope' dropped: no method 'rigwire.nope' here; forwarded calls are named service.method"
            ),
        ]
    );
    assert_eq!(notified(&net, data, "getFile").len(), 1);
}
