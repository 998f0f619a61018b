//! The link's promise, in virtual time: calls end by their deadline whatever
//! the peer does, output stays within its limit, and a peer that does not
//! read our answers is not read from.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rigwire_core::link::{Alarm, Callers, LINGER};
use rigwire_core::testing::{Behaviour, LinkPair, Side};
use rigwire_core::{CallError, ConnectionError, Keepalive, ProtocolConfig};

const MIB: usize = 1024 * 1024;

/// Small limits, so that backpressure comes quickly: 1 MiB frames and output.
fn config(name: &str) -> ProtocolConfig {
    ProtocolConfig {
        max_frame: MIB as u32,
        max_queued_output: MIB,
        ..ProtocolConfig::named(name)
    }
}

fn connected(client: ProtocolConfig, server: ProtocolConfig) -> LinkPair {
    let mut pair = LinkPair::new(Instant::now(), client, server);
    pair.advance(Duration::from_millis(10));
    assert!(pair.link(Side::Client).is_connected());
    pair
}

/// Every call ended exactly once (the harness panics on a second end), and
/// none later than its deadline.
fn assert_promise(pair: &LinkPair) {
    for (i, call) in pair.calls.iter().enumerate() {
        let (at, _) = call
            .ended
            .as_ref()
            .unwrap_or_else(|| panic!("call {i} never ended"));
        assert!(*at >= call.made);
        if let Some(deadline) = call.deadline {
            assert!(
                *at <= deadline,
                "call {i} ended {:?} after its deadline",
                *at - deadline
            );
        }
    }
}

/// A connected pair whose server has stopped reading, and 40 calls of
/// 64 KiB from the client, each with `deadline`.
fn forty_calls_to_a_deaf_server(deadline: Duration) -> LinkPair {
    let mut pair = connected(config("script"), config("rig"));
    pair.set_behaviour(Side::Server, Behaviour::Deaf);
    for _ in 0..40 {
        pair.call(Side::Client, "echo", 64 * 1024, Some(deadline));
    }
    pair
}

#[test]
fn calls_to_a_deaf_peer_end_by_their_deadline_and_output_stays_bounded() {
    let mut pair = forty_calls_to_a_deaf_server(Duration::from_millis(500));
    pair.call(
        Side::Client,
        "echo",
        8 * MIB / 10,
        Some(Duration::from_millis(500)),
    );
    let mut peak = 0;
    for _ in 0..100 {
        pair.advance(Duration::from_millis(10));
        peak = peak.max(pair.link(Side::Client).queued_output());
    }
    assert_promise(&pair);
    assert!(peak <= MIB + 64 * 1024, "output grew to {peak}");
    let ended: Vec<_> = pair
        .calls
        .iter()
        .map(|c| &c.ended.as_ref().unwrap().1)
        .collect();
    assert!(ended
        .iter()
        .all(|r| matches!(r, Err(CallError::DeadlineExceeded))));
    // The connection itself is fine: the peer is alive, only slow.
    assert!(!pair.link(Side::Client).is_closed());
}

#[test]
fn a_frozen_peer_is_declared_silent_within_the_keepalive_bound() {
    let keepalive = Some(Keepalive {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(600),
    });
    let client = ProtocolConfig {
        keepalive,
        ..config("script")
    };
    let mut pair = connected(client, config("rig"));
    pair.set_behaviour(Side::Server, Behaviour::Frozen);
    for _ in 0..30 {
        pair.call(
            Side::Client,
            "echo",
            64 * 1024,
            Some(Duration::from_secs(60)),
        );
    }
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.pending(), 0);
    for call in &pair.calls {
        let (at, result) = call.ended.as_ref().unwrap();
        assert!(*at <= call.made + Duration::from_millis(600));
        assert!(
            matches!(
                result,
                Err(CallError::Disconnected(ConnectionError::PeerSilent(_)))
            ),
            "{result:?}"
        );
    }
    // The closed link gives up on its unsent frames: the socket can close.
    pair.advance(Duration::from_secs(2));
    assert!(pair.link(Side::Client).is_finished());
}

#[test]
fn a_peer_that_never_reads_its_answers_is_not_read_from() {
    let mut pair = connected(config("script"), config("rig"));
    pair.set_behaviour(Side::Client, Behaviour::Deaf);
    let mut server_peak = 0;
    for _ in 0..400 {
        pair.call(Side::Client, "echo", 32 * 1024, None);
        pair.advance(Duration::from_millis(1));
        server_peak = server_peak.max(pair.link(Side::Server).queued_output());
    }
    // The server stopped reading once its answers backed up, so the client's
    // calls then waited for room instead of piling up anywhere.
    assert!(
        server_peak <= MIB + 64 * 1024,
        "server output grew to {server_peak}"
    );
    assert!(!pair.link(Side::Server).poll_interest().read);
    assert!(pair.link(Side::Client).queued_output() <= MIB + 64 * 1024);
    let waiting = pair.calls.iter().filter(|c| c.ended.is_none()).count();
    assert!(waiting > 0);
}

#[test]
fn room_freed_lets_waiting_callers_in_once_the_peer_reads_again() {
    let mut pair = forty_calls_to_a_deaf_server(Duration::from_secs(5));
    pair.advance(Duration::from_millis(100));
    assert!(pair.calls.iter().any(|c| c.ended.is_none()));
    pair.set_behaviour(Side::Server, Behaviour::Normal);
    pair.advance(Duration::from_secs(1));
    assert_promise(&pair);
    assert!(pair
        .calls
        .iter()
        .all(|c| matches!(c.ended, Some((_, Ok(_))))));
}

#[test]
fn calls_beyond_what_the_peer_takes_at_once_wait_for_a_slot_instead_of_being_answered_busy() {
    // The rig announces it runs 4 calls at once, and answers more `Busy`:
    // a caller keeps at most 4 in flight, the rest waiting within their
    // deadlines for one to end.
    let rig = ProtocolConfig {
        max_incoming_calls: 4,
        ..config("rig")
    };
    let mut pair = connected(config("script"), rig);
    let deadline = Some(Duration::from_secs(5));
    for _ in 0..12 {
        pair.call(Side::Client, "slow", 10, deadline);
    }
    // One more, whose deadline passes while it waits for a slot.
    let late = pair.call(Side::Client, "slow", 10, Some(Duration::from_millis(20)));
    pair.advance(Duration::from_millis(10));
    assert_eq!(pair.link(Side::Client).conn().calls_in_flight(), 4);
    pair.advance(Duration::from_secs(1));
    assert_promise(&pair);
    for (i, call) in pair.calls.iter().enumerate() {
        match i == late {
            true => assert!(matches!(
                call.ended,
                Some((_, Err(CallError::DeadlineExceeded)))
            )),
            false => assert!(
                matches!(call.ended, Some((_, Ok(_)))),
                "call {i}: {:?}",
                call.ended
            ),
        }
    }
    assert_eq!(pair.link(Side::Server).conn().stats().busy_rejections, 0);
    // A caller that does not wait is told so at once, naming the limit.
    let link = pair.link(Side::Client);
    let now = Instant::now() + Duration::from_secs(2);
    let payload = rigwire_core::Payload::new(rigwire_core::Codec::Postcard, vec![0u8; 10]);
    for _ in 0..4 {
        link.call("slow", payload.clone(), None, now).unwrap();
    }
    let refused = link.call("slow", payload.clone(), None, now).unwrap_err();
    assert!(refused.waits());
    let busy = refused.into_error();
    assert!(
        matches!(&busy, CallError::Busy(m) if m.contains("limit 4")),
        "{busy:?}"
    );
    // While the peer has a call of its own in progress here, one of ours
    // may be what it waits for (a call back calling again): it goes.
    pair.call(Side::Server, "slow", 10, None);
    pair.advance(Duration::from_millis(10));
    let link = pair.link(Side::Client);
    assert!(link.conn().incoming_in_flight() > 0);
    assert!(link.call("slow", payload, None, now).is_ok());
}

#[test]
fn a_call_cancelled_in_the_same_read_never_starts_its_handler() {
    let mut pair = connected(config("script"), config("rig"));
    let at = pair.call(Side::Client, "slow", 10, None);
    let id = 1; // the first call on the connection
    assert!(pair.link(Side::Client).cancel(id));
    pair.settle();
    pair.advance(Duration::from_millis(100));
    assert_eq!(pair.started[Side::Server as usize], 0);
    assert!(
        pair.calls[at].ended.is_none(),
        "a cancelled call reports nothing"
    );
    // The next call runs normally.
    let next = pair.call(Side::Client, "slow", 10, None);
    pair.advance(Duration::from_millis(100));
    assert_eq!(pair.started[Side::Server as usize], 1);
    assert!(matches!(pair.calls[next].ended, Some((_, Ok(_)))));
}

#[test]
fn a_running_handler_is_told_when_its_call_is_cancelled() {
    let mut pair = connected(config("script"), config("rig"));
    pair.call(Side::Client, "slow", 10, Some(Duration::from_millis(20)));
    pair.advance(Duration::from_millis(10));
    assert_eq!(pair.started[Side::Server as usize], 1);
    assert!(!pair.link(Side::Server).is_cancelled(1));
    pair.advance(Duration::from_millis(15));
    // The harness's handler stopped when told, and the link forgot the call.
    assert!(!pair.link(Side::Server).is_cancelled(1));
    assert_eq!(pair.link(Side::Server).conn().incoming_in_flight(), 0);
    assert_promise(&pair);
}

#[derive(Debug, Clone)]
enum Op {
    Call {
        slow: bool,
        len: usize,
        timeout_ms: u64,
    },
    Behave(Side, Behaviour),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(Side::Client), Just(Side::Server)];
    let behaviour = prop_oneof![
        4 => Just(Behaviour::Normal),
        2 => Just(Behaviour::Deaf),
        1 => Just(Behaviour::Frozen),
        1 => Just(Behaviour::Dead),
    ];
    prop_oneof![
        6 => (any::<bool>(), prop_oneof![0usize..100, 1000usize..300_000], 1u64..2000)
            .prop_map(|(slow, len, timeout_ms)| Op::Call { slow, len, timeout_ms }),
        // The calling side's own process keeps running: it may stop reading,
        // not freeze or die (then nobody is left to wait for the calls).
        1 => (side, behaviour).prop_map(|(s, b)| match (s, b) {
            (Side::Client, Behaviour::Frozen | Behaviour::Dead) => Op::Behave(s, Behaviour::Deaf),
            _ => Op::Behave(s, b),
        }),
        3 => (0u64..300).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The promise as an invariant: whatever either peer does, every call
    /// ends exactly once and no later than its deadline.
    #[test]
    fn every_call_ends_once_by_its_deadline(ops in prop::collection::vec(op(), 1..60), latency_ms in 0u64..20) {
        let keepalive = Some(Keepalive {
            interval: Duration::from_millis(300),
            timeout: Duration::from_millis(900),
        });
        let mut pair = LinkPair::new(
            Instant::now(),
            ProtocolConfig { keepalive, ..config("script") },
            ProtocolConfig { keepalive, ..config("rig") },
        );
        pair.latency = Duration::from_millis(latency_ms);
        pair.capacity = 128 * 1024;
        for op in ops {
            match op {
                Op::Call { slow, len, timeout_ms } => {
                    let method = if slow { "slow" } else { "echo" };
                    pair.call(Side::Client, method, len, Some(Duration::from_millis(timeout_ms)));
                }
                Op::Behave(side, b) => pair.set_behaviour(side, b),
                Op::Advance(ms) => pair.advance(Duration::from_millis(ms)),
            }
            for call in pair.calls.iter().filter(|c| c.ended.is_some()) {
                let (at, _) = call.ended.as_ref().unwrap();
                prop_assert!(call.deadline.is_none_or(|d| *at <= d));
            }
            prop_assert!(pair.link(Side::Client).queued_output() <= MIB + 300_000 + 1024);
        }
        pair.advance(Duration::from_secs(3));
        prop_assert_eq!(pair.pending(), 0);
        assert_promise(&pair);
    }
}

/// Also with a grace too long to add to the clock (a user's "as long as it
/// takes", `Duration::MAX` or a huge number of seconds): no limit, not
/// none (it once ended the grace at once, cutting the running call).
#[test]
fn a_drain_lets_running_calls_finish_and_refuses_new_ones() {
    for grace in [Duration::from_secs(10), Duration::MAX] {
        let mut pair = connected(config("script"), config("rig"));
        let running = pair.call(Side::Client, "slow", 10, None);
        pair.advance(Duration::from_millis(5));
        let now = pair.now;
        pair.link(Side::Server)
            .drain(grace, "the rig is shutting down", now);
        pair.settle();
        let late = pair.call(Side::Client, "echo", 10, None);
        pair.advance(Duration::from_millis(20));
        match &pair.calls[late].ended {
            Some((_, Err(CallError::Remote(e)))) => {
                assert_eq!(e.kind, rigwire_core::ErrorKind::Shutdown);
                assert_eq!(e.message, "the rig is shutting down");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !pair.link(Side::Server).is_closed(),
            "a call is still running ({grace:?})"
        );
        // The slow handler (50 ms) finishes; then the connection closes.
        pair.advance(Duration::from_millis(100));
        assert!(matches!(pair.calls[running].ended, Some((_, Ok(_)))));
        assert!(pair.link(Side::Server).is_closed());
        assert!(pair.link(Side::Client).is_closed());
    }
}

#[test]
fn a_drain_closes_at_the_end_of_its_grace_however_long_calls_run() {
    let mut pair = connected(config("script"), config("rig"));
    pair.slow_handler = Duration::from_secs(60);
    let running = pair.call(Side::Client, "slow", 10, None);
    pair.advance(Duration::from_millis(5));
    let now = pair.now;
    pair.link(Side::Server)
        .drain(Duration::from_millis(200), "bye", now);
    // Nothing polls: the grace is a timer in the link's interest.
    assert_eq!(
        pair.link(Side::Server).poll_interest().wake_at,
        Some(now + Duration::from_millis(200))
    );
    pair.advance(Duration::from_millis(300));
    assert!(pair.link(Side::Server).is_closed());
    match &pair.calls[running].ended {
        Some((at, Err(CallError::Remote(e)))) => {
            assert_eq!(e.kind, rigwire_core::ErrorKind::Shutdown);
            assert!(*at <= now + Duration::from_millis(250));
        }
        other => panic!("{other:?}"),
    }
}

/// A server link fed raw frames, for what the peer may do with call ids.
#[path = "common/mod.rs"]
mod raw_peer;

/// A server link for the rig, past the handshake with a raw peer's `Hello`.
fn raw_server_link(config: ProtocolConfig, now: Instant) -> rigwire_core::Link {
    let conn = rigwire_core::Connection::new(
        config,
        raw_peer::rig_registry(),
        rigwire_core::Role::Server,
        rigwire_core::Framing::Stream,
        [7; 32],
        now,
    )
    .unwrap();
    let mut link = rigwire_core::Link::new(conn);
    link.handle_input(&raw_peer::framed(&raw_peer::hello(1, 1, false)), now);
    link
}

/// A rig's settings that run at most `calls` of the peer's calls at once.
fn rig_running_at_most(calls: u32) -> ProtocolConfig {
    ProtocolConfig {
        max_incoming_calls: calls,
        ..ProtocolConfig::named("rig")
    }
}

/// A framed `Call` of `slow` (JSON `null` arguments), as a raw peer sends it.
fn slow_call(id: u64, deadline_us: Option<u64>) -> Vec<u8> {
    raw_peer::framed(&rigwire_core::Message::Call {
        id,
        method: "slow".into(),
        deadline_us,
        codec: rigwire_core::Codec::Json,
        args: bytes::Bytes::from_static(b"null"),
    })
}

#[test]
fn a_cancelled_call_holds_its_slot_until_its_handler_ends_and_its_id_cannot_be_reused_meanwhile() {
    use rigwire_core::{ErrorKind, Job, Message};
    let now = Instant::now();
    let config = rig_running_at_most(1);
    let mut link = raw_server_link(config, now);
    let call = |id: u64| slow_call(id, None);
    link.handle_input(&call(1), now);
    while let Some(job) = link.poll_job() {
        if let Job::Call(c) = job {
            assert_eq!(c.id, 1); // its handler starts (and keeps running)
        }
    }
    link.handle_input(&raw_peer::framed(&Message::Cancel { id: 1 }), now);
    assert!(link.is_cancelled(1));
    // The same id again while the old handler runs: refused, so that the
    // old handler's late answer cannot reach the new call.
    link.handle_input(&call(1), now);
    assert!(!matches!(link.poll_job(), Some(Job::Call(_))));
    // The slot is still taken: with room for one call, a new id is Busy.
    link.handle_input(&call(2), now);
    assert!(!matches!(link.poll_job(), Some(Job::Call(_))));
    let mut conn_out = Vec::new();
    for chunk in link.output() {
        conn_out.extend_from_slice(chunk);
    }
    let errors = decode_errors(&conn_out);
    assert!(
        errors
            .iter()
            .any(|(id, k)| *id == 1 && *k == ErrorKind::Busy),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|(id, k)| *id == 2 && *k == ErrorKind::Busy),
        "{errors:?}"
    );
    // The old handler ends: its answer goes nowhere, and the slot is free.
    assert!(link
        .reply(1, Ok(rigwire_core::Payload::json(&1).unwrap()), || now)
        .is_err());
    link.handle_input(&call(3), now);
    assert!(matches!(link.poll_job(), Some(Job::Call(c)) if c.id == 3));
}

#[test]
fn a_handler_that_waited_past_its_calls_deadline_or_cancel_never_starts_and_frees_its_slot() {
    use rigwire_core::{Job, Message};
    let start = Instant::now();
    let config = rig_running_at_most(2);
    let mut link = raw_server_link(config, start);
    let taken = |link: &mut rigwire_core::Link| {
        std::iter::from_fn(|| link.poll_job())
            .filter_map(|j| match j {
                Job::Call(c) => Some((c.id, c.deadline)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // Two calls taken by the runtime, both waiting for a thread.
    link.handle_input(&slow_call(1, Some(100_000)), start);
    link.handle_input(&slow_call(2, None), start);
    let waiting = taken(&mut link);
    assert_eq!(waiting.len(), 2);
    // Call 1's deadline passes and call 2 is cancelled while they wait.
    let later = start + Duration::from_millis(150);
    link.handle_input(&raw_peer::framed(&Message::Cancel { id: 2 }), later);
    for (id, deadline) in waiting {
        assert!(
            !link.start_handler(id, deadline, later),
            "call {id} started"
        );
    }
    // Both slots are free at once: two new calls are taken, not refused.
    link.handle_input(&slow_call(3, None), later);
    link.handle_input(&slow_call(4, Some(5_000_000)), later);
    let next = taken(&mut link);
    assert_eq!(next.iter().map(|c| c.0).collect::<Vec<_>>(), [3, 4]);
    for (id, deadline) in next {
        assert!(
            link.start_handler(id, deadline, later),
            "call {id} not started"
        );
    }
}

/// A server's link at `start`, to which its peer has sent calls `1..=n`
/// with no deadline.
fn link_with_calls(n: u64, start: Instant) -> rigwire_core::Link {
    let mut link = raw_server_link(rig_running_at_most(8), start);
    for id in 1..=n {
        link.handle_input(&slow_call(id, None), start);
    }
    link
}

#[test]
fn a_started_handler_counts_as_stuck_once_its_call_was_given_up_on_a_while_ago() {
    use rigwire_core::link::STUCK_AFTER;
    use rigwire_core::{Job, Message};
    let start = Instant::now();
    let mut link = link_with_calls(3, start);
    let taken: Vec<u64> = std::iter::from_fn(|| link.poll_job())
        .filter_map(|j| match j {
            Job::Call(c) => Some(c.id),
            _ => None,
        })
        .collect();
    assert_eq!(taken, [1, 2, 3]);
    // 1 and 2 start on the pool; 3 still waits for a thread.
    assert!(link.start_handler(1, None, start));
    assert!(link.start_handler(2, None, start));
    let cancel = |id| raw_peer::framed(&Message::Cancel { id });
    link.handle_input(&cancel(1), start);
    link.handle_input(&cancel(3), start);
    assert_eq!(link.stuck_handlers(start), 0, "given up on only just now");
    let later = start + STUCK_AFTER;
    // 2 is still wanted, and 3 never started: only 1 is stuck.
    assert_eq!(link.stuck_handlers(later), 1);
    link.handle_input(&cancel(2), later);
    assert_eq!(link.stuck_handlers(later), 1, "2 only just now");
    assert_eq!(link.stuck_handlers(later + STUCK_AFTER), 2);
    // A stuck handler that returns is no longer counted.
    assert!(link
        .reply(1, Ok(rigwire_core::Payload::json(&1).unwrap()), || later)
        .is_err());
    assert_eq!(link.stuck_handlers(later + STUCK_AFTER), 1);
}

/// A peer that dies mid-call never cancels it: its handlers, started and
/// still running, were given up on when the connection ended.
#[test]
fn handlers_of_a_connection_that_ended_count_as_stuck_a_while_after_its_end() {
    use rigwire_core::link::STUCK_AFTER;
    use rigwire_core::Job;
    let start = Instant::now();
    let mut link = link_with_calls(2, start);
    while link.poll_job().is_some() {}
    assert!(link.start_handler(1, None, start)); // 2 never starts
    let end = start + STUCK_AFTER;
    link.handle_transport_closed("the peer's process was killed", end);
    assert!(std::iter::from_fn(|| link.poll_job()).any(|j| matches!(j, Job::Closed(_))));
    assert_eq!(link.stuck_handlers(end), 0, "given up on only just now");
    assert_eq!(link.stuck_handlers(end + STUCK_AFTER), 1);
}

/// (id, kind) of every `Error` frame in a byte stream.
fn decode_errors(mut bytes: &[u8]) -> Vec<(u64, rigwire_core::ErrorKind)> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let body = bytes::Bytes::copy_from_slice(&bytes[4..4 + len]);
        if let Ok(rigwire_core::Message::Error { id, kind, .. }) =
            rigwire_core::Message::decode(&body)
        {
            out.push((id, kind));
        }
        bytes = &bytes[4 + len..];
    }
    out
}

/// Spec §6.1: when the callee's deadline passes it sends nothing, even when
/// the handler's answer comes before any timer has run (the race a handler
/// that watches the clock itself would otherwise win).
#[test]
fn a_reply_after_the_calls_deadline_is_never_sent_even_before_a_timer_ran() {
    use rigwire_core::Job;
    let start = Instant::now();
    let mut link = raw_server_link(ProtocolConfig::named("rig"), start);
    let call = slow_call(1, Some(200_000));
    link.handle_input(&call, start);
    assert!(std::iter::from_fn(|| link.poll_job()).any(|j| matches!(j, Job::Call(_))));
    let before: usize = link.output().iter().map(|c| c.len()).sum();
    let late = start + Duration::from_millis(201);
    let answered = link.reply(1, Ok(rigwire_core::Payload::json(&1).unwrap()), || late);
    assert!(answered.is_err(), "{answered:?}");
    let after: usize = link.output().iter().map(|c| c.len()).sum();
    assert_eq!(before, after, "nothing may follow the deadline");
    // One that answers in time is sent.
    link.handle_input(&call, late);
    assert!(std::iter::from_fn(|| link.poll_job()).any(|j| matches!(j, Job::Call(_))));
    let in_time = late + Duration::from_millis(199);
    link.reply(1, Ok(rigwire_core::Payload::json(&1).unwrap()), || in_time)
        .unwrap();
    assert!(link.output().iter().map(|c| c.len()).sum::<usize>() > after);
}

/// The graceful ending (spec §6.7): the last frames leave, then the writing
/// side is shut while the peer's input is still read (and discarded) until
/// it ends its side, or the close linger passes.
#[test]
fn a_closed_link_writes_out_then_reads_to_the_peers_end_within_the_linger() {
    use rigwire_core::link::CLOSE_LINGER;
    use rigwire_core::RejectCode;
    let start = Instant::now();
    for peer_ends in [true, false] {
        let mut link = raw_server_link(ProtocolConfig::named("rig"), start);
        link.reject(RejectCode::ConnectionLimit, "full", start);
        assert!(link.is_closed());
        assert!(!link.is_written_out(), "the Reject is still to leave");
        let queued: usize = link.output().iter().map(|c| c.len()).sum();
        link.handle_written(queued);
        assert!(link.is_written_out());
        assert!(!link.is_finished());
        let interest = link.poll_interest();
        assert!(interest.read && link.wants_input(), "{interest:?}");
        assert_eq!(interest.wake_at, Some(start + CLOSE_LINGER));
        // What the peer still sends is read and dropped.
        link.handle_input(&[0u8; 4096], start);
        assert!(link.output().is_empty() && !link.is_finished());
        if peer_ends {
            link.handle_transport_closed("the peer closed the connection", start);
        } else {
            link.handle_timeout(start + CLOSE_LINGER);
        }
        assert!(link.is_finished());
        assert!(!link.poll_interest().read && link.poll_interest().wake_at.is_none());
    }
}

#[test]
fn held_output_leaves_together_and_a_refusal_for_room_releases_it() {
    let mut pair = connected(config("script"), config("rig"));
    pair.set_behaviour(Side::Server, Behaviour::Deaf);
    let now = Instant::now() + Duration::from_secs(1);
    let link = pair.link(Side::Client);
    let payload =
        |len: usize| rigwire_core::Payload::new(rigwire_core::Codec::Postcard, vec![0u8; len]);
    let queued = link.output().iter().map(|b| b.len()).sum::<usize>();
    link.hold_output();
    link.call("echo", payload(10), None, now).unwrap();
    link.call("echo", payload(10), None, now).unwrap();
    // Held: nothing to write, and no interest in writing, until released.
    assert!(link.output().is_empty());
    assert!(!link.poll_interest().write);
    link.release_output();
    let both = link.output().iter().map(|b| b.len()).sum::<usize>() - queued;
    assert!(
        both > 20,
        "the two calls are there to write together: {both} bytes"
    );
    // A call refused for room releases a hold: room comes only from writing.
    link.hold_output();
    let refused = (0..40).find_map(|_| link.call("echo", payload(64 * 1024), None, now).err());
    assert!(
        matches!(refused, Some(rigwire_core::link::Admit::NoRoom { .. })),
        "{refused:?}"
    );
    assert!(!link.output().is_empty());
    // A closed link's output (its goodbye) is never held.
    link.hold_output();
    link.close("done", now);
    assert!(!link.output().is_empty());
}

#[test]
fn a_link_is_idle_only_while_nothing_is_under_way() {
    let mut pair = connected(config("script"), config("rig"));
    let rig = |pair: &mut LinkPair| pair.link(Side::Server).is_idle();
    assert!(rig(&mut pair), "connected, nothing asked");
    let at = pair.call(Side::Client, "slow", 10, None);
    pair.advance(Duration::from_millis(10));
    assert_eq!(pair.started[Side::Server as usize], 1);
    assert!(!rig(&mut pair), "a handler runs");
    pair.advance(Duration::from_millis(100));
    assert!(matches!(pair.calls[at].ended, Some((_, Ok(_)))));
    assert!(rig(&mut pair), "answered and written");
    // A call of its own waiting for an answer does not count: the answer
    // arrives as input.
    pair.set_behaviour(Side::Client, Behaviour::Frozen);
    pair.call(Side::Server, "echo", 10, Some(Duration::from_secs(5)));
    pair.advance(Duration::from_millis(10));
    assert!(rig(&mut pair), "waiting for an answer");
    let now = pair.now;
    pair.link(Side::Server)
        .drain(Duration::from_secs(1), "stopping", now);
    assert!(!rig(&mut pair), "draining");
    pair.link(Side::Server).close("bye", now);
    assert!(!rig(&mut pair), "closed");
}

#[test]
fn a_link_with_half_a_frame_received_is_not_idle() {
    let now = Instant::now();
    let mut link = raw_server_link(config("rig"), now);
    while !link.output().is_empty() {
        let n = link.output().iter().map(|c| c.len()).sum();
        link.handle_written(n);
    }
    while link.poll_job().is_some() {}
    assert!(link.is_connected());
    assert!(link.is_idle());
    // The length prefix of a frame, and two of its bytes.
    link.handle_input(&[0, 0, 0, 9, 1, 2], now);
    assert!(!link.is_idle(), "a frame is arriving");
}

#[test]
fn calls_made_back_to_back_leave_as_one_chunk() {
    let mut pair = connected(config("script"), config("rig"));
    let now = pair.now;
    let link = pair.link(Side::Client);
    for _ in 0..10 {
        let args = rigwire_core::Payload::new(rigwire_core::Codec::Postcard, vec![7u8; 40]);
        link.call("echo", args, None, now).unwrap();
    }
    assert!(link.poll_interest().write);
    let queued = link.queued_output();
    let output = link.output();
    assert_eq!(
        output.len(),
        1,
        "one slice for the write, not one per frame"
    );
    assert_eq!(output[0].len(), queued);
}

#[test]
fn the_calls_whose_answers_arrived_are_listed_once_asked_for() {
    let mut pair = connected(config("script"), config("rig"));
    let waiters = |pair: &mut LinkPair| -> Vec<u64> {
        pair.link(Side::Client).waiters().drain_arrived().collect()
    };
    assert!(
        waiters(&mut pair).is_empty(),
        "the first look starts the record"
    );
    for _ in 0..3 {
        pair.call(Side::Client, "echo", 10, None);
    }
    pair.advance(Duration::from_millis(10));
    assert_eq!(waiters(&mut pair), vec![1, 2, 3]);
    assert!(waiters(&mut pair).is_empty(), "each listed once");
}

#[test]
fn due_connections_come_out_once_at_their_latest_timer() {
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let mut parked = rigwire_core::link::Parked::default();
    assert!(parked.insert(1, "a", Some(at(100))), "the first timer");
    assert!(!parked.insert(2, "b", Some(at(200))));
    assert!(
        !parked.insert(3, "c", None),
        "no timer: only its socket wakes it"
    );
    assert!(parked.poke(2, at(50)), "sooner");
    assert!(!parked.poke(1, at(150)), "later: the earlier timer stands");
    assert!(!parked.poke(9, at(10)), "not parked");
    assert_eq!(parked.next_wake(), Some(at(50)));
    assert_eq!(parked.take_due(at(60)), vec![(2, "b")]);
    assert_eq!(parked.take(1), Some("a"));
    assert!(parked.take_due(at(1000)).is_empty(), "stale timers skipped");
    assert_eq!(parked.take_all(), vec![(3, "c")]);
    assert_eq!(parked.next_wake(), None);
}

#[test]
fn callers_are_active_while_one_waits_and_for_the_linger_after() {
    let t0 = Instant::now();
    let mut callers = Callers::default();
    callers.set_linger(LINGER);
    assert_eq!(callers.active(t0), None, "nobody yet: the runtime reads");
    callers.enter();
    callers.enter();
    assert_eq!(callers.active(t0), Some(t0 + LINGER), "look again later");
    assert!(!callers.leave(), "one still waits");
    assert!(callers.leave(), "the last left");
    callers.all_left(t0);
    let later = t0 + LINGER / 2;
    assert_eq!(callers.active(later), Some(t0 + LINGER), "the linger's end");
    assert_eq!(callers.active(t0 + LINGER), None, "the linger is over");
    let mut serving = Callers::default();
    serving.enter();
    assert!(serving.leave());
    serving.all_left(t0);
    assert!(!serving.lingers());
    assert_eq!(serving.active(t0), None, "no linger: reads at once");
}

#[test]
fn an_alarm_moves_only_sooner_until_it_fires() {
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    let mut alarm = Alarm::default();
    assert_eq!(alarm.arm(None), None, "nothing wanted, nothing set");
    assert_eq!(alarm.arm(Some(t0 + 5 * s)), Some(t0 + 5 * s));
    assert_eq!(
        alarm.arm(Some(t0 + 6 * s)),
        None,
        "later: left to fire early"
    );
    assert!(!alarm.is_sooner(Some(t0 + 6 * s)));
    assert!(alarm.is_sooner(Some(t0 + s)));
    assert_eq!(alarm.arm(Some(t0 + s)), Some(t0 + s), "sooner: moved");
    alarm.fired();
    assert!(
        alarm.is_sooner(Some(t0 + 9 * s)),
        "fired: anything is sooner"
    );
    assert_eq!(alarm.arm(Some(t0 + 9 * s)), Some(t0 + 9 * s));
}

#[test]
fn a_connection_holds_at_most_half_the_pool_and_its_jobs_wait_in_order() {
    use rigwire_core::link::PoolShare;
    let mut share = PoolShare::default();
    assert!(share.is_idle());
    // A pool of 4: two threads at most for one connection.
    assert_eq!(share.admit("a", 4), Some("a"));
    assert_eq!(share.admit("b", 4), Some("b"));
    assert_eq!(share.admit("c", 4), None, "over its share: it waits");
    assert_eq!(share.admit("d", 4), None);
    assert!(!share.is_idle());
    assert_eq!(share.finished(4), Some("c"), "the next, on the same thread");
    assert_eq!(share.finished(4), Some("d"));
    assert_eq!(share.finished(4), None, "a thread given back");
    assert_eq!(share.finished(4), None, "the other one");
    assert!(share.is_idle());
    // A pool of one still lets a connection run one job.
    assert_eq!(PoolShare::<()>::limit(1), 1);
}

#[test]
fn a_handler_waiting_for_its_own_peer_lends_its_place_in_the_share() {
    use rigwire_core::link::PoolShare;
    let mut share = PoolShare::default();
    // A pool of 4: a share of two, both taken; two more wait.
    assert_eq!(share.admit("a", 4), Some("a"));
    assert_eq!(share.admit("b", 4), Some("b"));
    assert_eq!(share.admit("c", 4), None);
    assert_eq!(share.admit("d", 4), None);
    // "a" calls its peer back and waits: "c" (perhaps what answers it)
    // starts on a thread of its own.
    assert_eq!(share.waits_on_peer(4), Some("c"));
    assert_eq!(share.waits_on_peer(4), Some("d"), "\"b\" too");
    assert_eq!(share.admit("e", 4), None, "two run: the share is full");
    // Both have their answers: four hold threads, the share is two, so
    // the threads that finish are given back until two run again.
    share.answered();
    share.answered();
    assert_eq!(share.finished(4), None, "four ran: given back");
    assert_eq!(share.finished(4), None, "three ran: given back");
    assert_eq!(
        share.finished(4),
        Some("e"),
        "two ran: the next on its thread"
    );
    assert_eq!(share.finished(4), None);
    assert_eq!(share.finished(4), None);
    assert!(share.is_idle());
}

#[test]
fn a_pool_lends_at_most_its_limit_of_threads_to_handlers_waiting_for_their_peer() {
    use rigwire_core::link::{Lend, PoolHolders, MAX_LENT_THREADS};
    let mut pool: PoolHolders<usize, ()> = PoolHolders::default();
    // Lends every thread it may, then refuses, told of once per crowd.
    let crowd = |pool: &mut PoolHolders<usize, ()>| {
        for _ in 0..MAX_LENT_THREADS {
            assert_eq!(pool.lend(), Lend::Lent);
        }
        assert_eq!(
            pool.lend(),
            Lend::Full { first: true },
            "beyond the limit, a waiting handler keeps its place"
        );
        assert_eq!(pool.lend(), Lend::Full { first: false }, "said once");
    };
    assert_eq!(pool.threads(16), 16);
    crowd(&mut pool);
    assert_eq!(pool.threads(16), 16 + MAX_LENT_THREADS);
    pool.answered();
    assert_eq!(pool.threads(16), 15 + MAX_LENT_THREADS);
    assert_eq!(pool.lend(), Lend::Lent);
    assert_eq!(pool.lend(), Lend::Full { first: false }, "the same crowd");
    for _ in 0..MAX_LENT_THREADS {
        pool.answered();
    }
    assert_eq!(pool.threads(16), 16);
    crowd(&mut pool); // a new crowd is told of
}

#[test]
fn a_share_whose_every_thread_runs_a_stuck_handler_refuses_new_calls() {
    use rigwire_core::link::PoolShare;
    let mut share = PoolShare::default();
    // A pool of 4: a share of two threads, both taken.
    assert_eq!(share.admit("a", 4), Some("a"));
    assert_eq!(
        share.stuck(4, 2),
        None,
        "a thread is free: a call waits for nothing"
    );
    assert_eq!(share.admit("b", 4), Some("b"));
    assert_eq!(
        share.stuck(4, 1),
        None,
        "one runs a call still wanted: it will end"
    );
    let stuck = share
        .stuck(4, 2)
        .expect("both run calls their callers gave up on");
    assert!(stuck.reason.contains("may hold (2)"), "{}", stuck.reason);
    assert!(stuck.first, "the first refusal is the one to log");
    assert!(!share.stuck(4, 2).unwrap().first, "the next ones are not");
    // A thread given back ends it; a share stuck again is logged again.
    assert_eq!(share.finished(4), None);
    assert_eq!(share.stuck(4, 1), None);
    assert_eq!(share.admit("c", 4), Some("c"));
    assert!(share.stuck(4, 2).unwrap().first);
}

#[test]
fn hooks_run_for_their_jobs_and_a_panicking_hook_is_caught_and_named() {
    use rigwire_core::link::{Hooks, Job};
    use std::sync::{Arc, Mutex};

    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut hooks: Hooks<&'static str> = Hooks::default();
    let log = Arc::clone(&seen);
    hooks.on_connect = Some(Box::new(move |peer| {
        log.lock().unwrap().push(format!("connect {peer}"))
    }));
    let log = Arc::clone(&seen);
    hooks.on_message = Some(Box::new(move |peer, bytes| {
        log.lock()
            .unwrap()
            .push(format!("{peer}: {} bytes", bytes.len()))
    }));
    hooks.on_disconnect = Some(Box::new(|_, _| panic!("a bug in the application's hook")));

    assert_eq!(hooks.run(Job::Connected, || "rig"), Ok(()));
    assert_eq!(
        hooks.run(Job::Message(bytes::Bytes::from_static(b"abc")), || "rig"),
        Ok(())
    );
    let closed = Job::Closed(ConnectionError::TransportClosed("gone".into()));
    assert_eq!(hooks.run(closed, || "rig"), Err("on_disconnect"));
    assert_eq!(
        hooks.run(Job::Cancel(7), || panic!(
            "no peer is made for a job without a hook"
        )),
        Ok(())
    );
    assert_eq!(*seen.lock().unwrap(), vec!["connect rig", "rig: 3 bytes"]);

    let none: Hooks<&'static str> = Hooks::default();
    assert_eq!(
        none.run(Job::Connected, || panic!("no hook, no peer")),
        Ok(())
    );
}

#[test]
fn a_link_names_its_peer_once_it_spoke_and_says_why_it_closed() {
    let start = Instant::now();
    let mut pair = LinkPair::new(start, config("script"), config("rig"));
    assert_eq!(pair.link(Side::Client).peer_name(), "");
    // Still open: a wait that ends anyway says only that it closed.
    assert!(matches!(
        pair.link(Side::Client).closed_error(),
        rigwire_core::Error::Disconnected(ConnectionError::TransportClosed(_))
    ));
    pair.advance(Duration::from_millis(10));
    assert_eq!(pair.link(Side::Client).peer_name(), "rig");
    assert_eq!(pair.link(Side::Server).peer_name(), "script");

    pair.link(Side::Server)
        .close("the rig is going home", start + Duration::from_millis(10));
    pair.advance(Duration::from_millis(10));
    let why = pair.link(Side::Client).closed_error();
    assert_eq!(Some(why.clone()), pair.link(Side::Client).close_reason());
    assert!(why.to_string().contains("the rig is going home"), "{why}");
}

#[test]
fn an_answer_is_unwanted_once_cancelled_expired_or_the_connection_closed() {
    let start = Instant::now();
    let mut pair = LinkPair::new(start, config("script"), config("rig"));
    pair.advance(Duration::from_millis(10));
    pair.call(Side::Client, "slow", 10, Some(Duration::from_millis(20)));
    pair.advance(Duration::from_millis(5));
    assert_eq!(pair.started[Side::Server as usize], 1);
    let deadline = Some(start + Duration::from_millis(30));
    let server = pair.link(Side::Server);
    assert!(!server.answer_unwanted(1, deadline, start + Duration::from_millis(15)));
    assert!(!server.answer_unwanted(1, None, start + Duration::from_secs(60)));
    assert!(server.answer_unwanted(1, deadline, start + Duration::from_millis(30)));
    server.close("going home", start + Duration::from_millis(15));
    assert!(server.answer_unwanted(1, None, start + Duration::from_millis(15)));
}

#[test]
fn each_distinct_report_of_the_peer_is_heard_once_per_connection() {
    // A rig that broadcasts events to a script that does not listen for
    // them is told so by every event: its log once filled with the same line.
    let mut pair = connected(config("script"), config("rig"));
    let now = pair.now;
    for method in ["exp.event", "exp.event", "status", "exp.event", "status"] {
        let event = rigwire_core::Payload::json(&"tick").unwrap();
        pair.link(Side::Server)
            .notify(method, event, None, now)
            .unwrap();
    }
    pair.advance(Duration::from_millis(50));
    let heard: Vec<String> = pair.reported[Side::Server as usize]
        .iter()
        .map(|e| e.message.clone())
        .collect();
    assert_eq!(heard.len(), 2, "{heard:?}");
    assert!(heard[0].contains("'exp.event'") && heard[1].contains("'status'"));
}

/// The whole pool's rule: its holders are asked only once every thread is
/// held, a call is refused only when their stuck handlers fill every
/// thread, and the refusal is logged once until a thread comes back.
#[test]
fn a_pool_whose_every_thread_runs_a_stuck_handler_refuses_saying_so_once() {
    use rigwire_core::link::PoolHolders;
    let mut pool: PoolHolders<u8, char> = PoolHolders::default();
    pool.took(1, 'a');
    assert_eq!(pool.when_full(2), None, "a thread is free");
    pool.took(2, 'b');
    let mut asked = pool.when_full(2).unwrap();
    asked.sort();
    assert_eq!(asked, ['a', 'b']);
    assert_eq!(
        pool.stuck(2, 1),
        None,
        "one thread runs a call still wanted"
    );
    let refused = pool.stuck(2, 2).unwrap();
    assert!(refused.first);
    assert!(refused
        .reason
        .starts_with("not started: every handler thread here (2)"));
    assert!(!pool.stuck(2, 2).unwrap().first, "logged once");
    pool.gave_back(&1);
    assert_eq!(pool.when_full(2), None);
    pool.took(1, 'a');
    assert!(
        pool.stuck(2, 2).unwrap().first,
        "again, after a thread came back"
    );
}
