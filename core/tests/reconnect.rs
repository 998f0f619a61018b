//! A reconnect round's rules in time: it gives up when its attempts run
//! out, at once when retrying cannot help (or this side closed the
//! connection), and before a call's deadline.

// The sans-IO rule (core/clippy.toml) is for core/src; tests may read the clock.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use rigwire_core::link::Reconnect;
use rigwire_core::{AuthFailure, ConnectionError, Error, RejectCode};

#[test]
fn a_round_gives_up_when_attempts_run_out_or_at_once_on_a_wrong_secret() {
    let lost = Error::Connect {
        url: "tcp://rig:1".into(),
        reason: "refused".into(),
    };
    let policy = Reconnect {
        attempts: 2,
        ..Reconnect::default()
    };
    let now = Instant::now();
    let mut round = policy.start();
    assert!(round.next(&lost, now).is_some());
    assert!(round.next(&lost, now).is_some());
    assert_eq!(round.attempt(), 2);
    assert_eq!(round.next(&lost, now), None);
    let mut round = policy.forever().start();
    assert_eq!(
        round.next(&Error::AuthFailed(AuthFailure::WrongSecret), now),
        None
    );
    let full = Error::Rejected {
        code: RejectCode::ConnectionLimit,
        reason: "full".into(),
    };
    assert!(round.next(&full, now).is_some());
    let closed_here = Error::Disconnected(ConnectionError::LocallyClosed("closed".into()));
    assert_eq!(round.next(&closed_here, now), None);
}

#[test]
fn a_round_for_a_call_gives_up_before_its_deadline() {
    let lost = Error::Connect {
        url: "tcp://rig:1".into(),
        reason: "refused".into(),
    };
    let start = Instant::now();
    let second = Duration::from_secs(1);
    // Waits of 100, 200, 400 ms fit in a second; the next, 800, does not.
    let mut round = Reconnect::default().start_before(Some(start + second));
    let mut now = start;
    while let Some(wait) = round.next(&lost, now) {
        now += wait;
        assert!(now < start + second);
        assert_eq!(round.time_left(now), Some(start + second - now));
    }
    assert_eq!(round.attempt(), 3);
    assert_eq!(now - start, Duration::from_millis(700));
    // Without a deadline, the policy's ten attempts.
    let mut round = Reconnect::default().start();
    while round.next(&lost, now).is_some() {}
    assert_eq!((round.attempt(), round.time_left(now)), (10, None));
}

#[test]
fn one_caller_makes_the_connection_again_the_others_wait_within_their_deadlines() {
    use rigwire_core::link::{SharedConnection, Want};
    let lost = || {
        Some(Error::Disconnected(ConnectionError::TransportClosed(
            "gone".into(),
        )))
    };
    let policy = Some(Reconnect::default());
    let now = Instant::now();
    let mut shared = SharedConnection::new(1u32);
    assert!(matches!(
        shared.want(None, policy, None, || now),
        Ok(Want::Use(1))
    ));
    // Lost: the first caller makes it, the second waits, a third whose
    // deadline has passed gives up.
    assert!(matches!(
        shared.want(lost(), policy, None, || now),
        Ok(Want::Redial(..))
    ));
    let later = now + Duration::from_secs(1);
    assert!(matches!(
        shared.want(lost(), policy, Some(later), || now),
        Ok(Want::Wait)
    ));
    let gave_up = shared.want(lost(), policy, Some(now), || now);
    assert!(
        matches!(gave_up, Err(Error::DeadlineExceeded)),
        "{gave_up:?}"
    );
    assert_eq!(shared.made(Ok(2)).unwrap(), (2, false));
    assert_eq!(*shared.peer(), 2);
    // A round that failed, or whose caller went away, lets the next make it.
    assert!(matches!(
        shared.want(lost(), policy, None, || now),
        Ok(Want::Redial(..))
    ));
    assert!(shared.made(Err(Error::DeadlineExceeded)).is_err());
    assert!(matches!(
        shared.want(lost(), policy, None, || now),
        Ok(Want::Redial(..))
    ));
    shared.abandoned();
    assert!(matches!(
        shared.want(lost(), policy, None, || now),
        Ok(Want::Redial(..))
    ));
    // Closed while it was being made: the new connection is to be closed,
    // and no round starts again.
    assert_eq!(*shared.close(), 2);
    assert_eq!(shared.made(Ok(3)).unwrap(), (3, true));
    assert!(matches!(
        shared.want(lost(), policy, None, || now),
        Ok(Want::Use(3))
    ));
    // Without a policy, a lost connection is used as it is.
    let mut plain = SharedConnection::new(1u32);
    assert!(matches!(
        plain.want(lost(), None, None, || now),
        Ok(Want::Use(1))
    ));
}
