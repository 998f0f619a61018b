//! What a server's accept loop does when accepting fails. A failure that
//! lasts (the process is out of file descriptors: `accept` fails at once
//! while the connection waits in the backlog) must neither spin nor flood
//! the log: the loop pauses, twice as long after each failure in a row up
//! to [`AcceptFailures::LONGEST_PAUSE`], and says so once, again every
//! [`AcceptFailures::RETOLD_EVERY`] while it lasts, and once more when a
//! connection is accepted again. Every server (both runtimes' and the
//! relay's two sides) follows this one rule.

use std::time::{Duration, Instant};

use crate::link::{after, RETRY_AFTER};

/// A run of failed accepts, since the last one that succeeded.
#[derive(Debug, Default)]
pub struct AcceptFailures {
    /// Failures in the present run.
    in_a_row: u32,
    /// When the run began.
    since: Option<Instant>,
    /// When it was last told of.
    told_at: Option<Instant>,
    /// No accept before this instant: the pause after the last failure.
    paused_until: Option<Instant>,
}

/// What to do after a failed accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptPause {
    /// Accept nothing before this instant (other work may go on).
    pub until: Instant,
    /// What to log (a warning), if this failure is one to tell of; the
    /// others are counted and told of later.
    pub tell: Option<String>,
}

impl AcceptFailures {
    /// The longest pause between two accepts that failed in a row.
    pub const LONGEST_PAUSE: Duration = Duration::from_secs(1);
    /// How often a run of failures that lasts is told of again.
    pub const RETOLD_EVERY: Duration = Duration::from_secs(60);

    /// An accept failed at `now` with `error`: how long to pause, and
    /// what to log.
    pub fn failed(&mut self, error: impl std::fmt::Display, now: Instant) -> AcceptPause {
        let since = *self.since.get_or_insert(now);
        self.in_a_row = self.in_a_row.saturating_add(1);
        let doublings = self.in_a_row.saturating_sub(1).min(16);
        let pause = RETRY_AFTER
            .saturating_mul(1 << doublings)
            .min(Self::LONGEST_PAUSE);
        let due = self
            .told_at
            .is_none_or(|at| now.saturating_duration_since(at) >= Self::RETOLD_EVERY);
        let tell = due.then(|| {
            self.told_at = Some(now);
            match self.in_a_row {
                1 => format!(
                    "accept failed: {error}; pausing accepts (up to {} s between tries) \
                     and logging this again only every {} s until one succeeds",
                    Self::LONGEST_PAUSE.as_secs(),
                    Self::RETOLD_EVERY.as_secs(),
                ),
                n => format!(
                    "accept still failing: {error} ({n} failures in {:.0} s)",
                    now.saturating_duration_since(since).as_secs_f64()
                ),
            }
        });
        let until = after(now, pause);
        self.paused_until = Some(until);
        AcceptPause { until, tell }
    }

    /// Until when accepts pause at `now`, after the last failure; `None`
    /// once that pause is over (or nothing failed).
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|&until| until > now)
    }

    /// An accept succeeded at `now`: what to log (at info) if it ends a
    /// run of failures.
    pub fn accepted(&mut self, now: Instant) -> Option<String> {
        self.paused_until = None;
        let since = self.since.take()?;
        let failures = std::mem::take(&mut self.in_a_row);
        self.told_at = None;
        Some(format!(
            "accepting again, after {failures} failed accepts in {:.1} s",
            now.saturating_duration_since(since).as_secs_f64()
        ))
    }
}
