//! Results of addressing a group of named rigs together (iblutil's
//! `Services`), shared by both runtimes: each rig's answer or error by name,
//! never one exception that hides which rig failed, and waits whose error
//! names the rigs that did not answer.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use thiserror::Error;

use crate::error::Error;

/// Each rig's outcome, in the order the rigs were addressed. Some rigs may
/// have failed while others answered: dropping it unread is a warning.
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn stop() -> Result<rigwire_core::GroupResults<()>, rigwire_core::GroupError> {
///     Ok(rigwire_core::GroupResults::new())
/// }
/// fn script() -> Result<(), rigwire_core::GroupError> {
///     stop()?; // a rig that failed to stop would go unheard
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use = "some rigs may have failed: look at `failures()`, or take `into_result()`"]
pub struct GroupResults<T> {
    entries: Vec<(String, Result<T, Error>)>,
}

impl<T> Default for GroupResults<T> {
    fn default() -> Self {
        GroupResults {
            entries: Vec::new(),
        }
    }
}

impl<T> GroupResults<T> {
    /// No outcomes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one rig's outcome.
    pub fn push(&mut self, rig: impl Into<String>, outcome: Result<T, Error>) {
        self.entries.push((rig.into(), outcome));
    }

    /// The outcome of `rig`, if it was addressed.
    pub fn get(&self, rig: &str) -> Option<&Result<T, Error>> {
        self.entries
            .iter()
            .find(|(name, _)| name == rig)
            .map(|(_, r)| r)
    }

    /// Every outcome, by rig name, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Result<T, Error>)> {
        self.entries.iter().map(|(n, r)| (n.as_str(), r))
    }

    /// Each rig's value passed through `f`: a rig that failed keeps its
    /// error, and one whose value `f` refuses gets `f`'s error (a raw answer
    /// that does not decode, say).
    pub fn and_then<U>(self, mut f: impl FnMut(T) -> Result<U, Error>) -> GroupResults<U> {
        let entries = self.entries.into_iter();
        GroupResults {
            entries: entries.map(|(rig, r)| (rig, r.and_then(&mut f))).collect(),
        }
    }

    /// Whether every rig succeeded.
    pub fn all_ok(&self) -> bool {
        self.entries.iter().all(|(_, r)| r.is_ok())
    }

    /// The rigs that failed, with their errors.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &Error)> {
        self.entries
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| (n.as_str(), e)))
    }

    /// Every rig's value, or an error naming each rig that failed (and why)
    /// and each that succeeded.
    ///
    /// # Errors
    /// [`GroupError::Failed`] if any rig failed.
    pub fn into_result(self) -> Result<Vec<(String, T)>, GroupError> {
        if self.all_ok() {
            return Ok(self
                .entries
                .into_iter()
                .filter_map(|(n, r)| r.ok().map(|v| (n, v)))
                .collect());
        }
        let mut failed = Vec::new();
        let mut succeeded = Vec::new();
        for (name, outcome) in self.entries {
            match outcome {
                Ok(_) => succeeded.push(name),
                Err(e) => failed.push((name, e)),
            }
        }
        Err(GroupError::Failed { failed, succeeded })
    }
}

impl<T> IntoIterator for GroupResults<T> {
    type Item = (String, Result<T, Error>);
    type IntoIter = std::vec::IntoIter<(String, Result<T, Error>)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// Why a group operation did not succeed everywhere.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum GroupError {
    /// Some rigs failed; the others' answers were kept.
    #[error("{} of {} rigs failed: {}", failed.len(), failed.len() + succeeded.len(), RigErrors(failed, |rig, e| format!("{rig}: {e}")))]
    Failed {
        /// Each failed rig with its error.
        failed: Vec<(String, Error)>,
        /// The rigs that succeeded.
        succeeded: Vec<String>,
    },
    /// Not every rig reported the event waited for before the timeout.
    #[error("no '{event}' event within {waited:?} from {}", missing.join(", "))]
    Timeout {
        /// The event waited for.
        event: String,
        /// The rigs that did not report it.
        missing: Vec<String>,
        /// How long we waited.
        waited: Duration,
    },
    /// A rig that had not reported the event waited for lost its
    /// connection: it cannot report it there, so the wait ended at once.
    #[error("no '{event}' event from {}: {}", missing.join(", "), RigErrors(lost, |rig, e| format!("{rig}'s connection ended ({})", e.reason())))]
    Lost {
        /// The event waited for.
        event: String,
        /// The rigs that did not report it and whose connection ended,
        /// each with why.
        lost: Vec<(String, Error)>,
        /// Every rig that did not report it (the lost ones included).
        missing: Vec<String>,
    },
    /// A rig name that is not in the group.
    #[error("no rig named '{0}' in the group")]
    UnknownRig(String),
    /// Two rigs were given the same name; nothing was connected.
    #[error("two rigs are named '{0}': a group tells its rigs apart by name, so each needs one of its own")]
    SameName(String),
}

/// Checks that no two of a group's rigs share a name: their answers, their
/// events and `rig(name)` would be told apart by nothing.
///
/// # Errors
/// [`GroupError::SameName`] with the first name given twice.
pub fn distinct_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), GroupError> {
    let mut seen = std::collections::BTreeSet::new();
    match names.into_iter().find(|name| !seen.insert(*name)) {
        Some(twice) => Err(GroupError::SameName(twice.to_owned())),
        None => Ok(()),
    }
}

/// Rigs with their errors, `; ` between them, each in the words `each`
/// gives it: a failed rig's (`b: …`), a lost one's (`b's connection ended (…)`).
struct RigErrors<'a>(&'a [(String, Error)], fn(&str, &Error) -> String);

impl fmt::Display for RigErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, err)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&(self.1)(name, err))?;
        }
        Ok(())
    }
}

/// How often a wait for the rigs' events looks whether a rig's connection
/// ended ([`EventWait::is_settled`]): nothing wakes the wait when one does.
/// A binding's "go on?" (Ctrl-C) is asked as often.
pub const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Collects one event per rig until all have reported; says who is missing.
#[derive(Debug, Clone)]
pub struct EventWait<T> {
    event: String,
    expected: Vec<String>,
    got: BTreeMap<String, T>,
}

impl<T> EventWait<T> {
    /// Waits for `event` from each of `rigs`.
    pub fn new(event: &str, rigs: impl IntoIterator<Item = impl Into<String>>) -> Self {
        EventWait {
            event: event.to_owned(),
            expected: rigs.into_iter().map(Into::into).collect(),
            got: BTreeMap::new(),
        }
    }

    /// Records `rig`'s event (the first one counts; others and strangers are ignored).
    pub fn record(&mut self, rig: &str, value: T) {
        if self.expected.iter().any(|r| r == rig) && !self.got.contains_key(rig) {
            self.got.insert(rig.to_owned(), value);
        }
    }

    /// Whether every rig has reported.
    pub fn is_complete(&self) -> bool {
        self.got.len() == self.expected.len()
    }

    /// The rigs that have not reported, in group order.
    pub fn missing(&self) -> Vec<String> {
        self.expected
            .iter()
            .filter(|r| !self.got.contains_key(*r))
            .cloned()
            .collect()
    }

    /// The rigs that have not reported and whose connection ended, with
    /// why (`gone(rig)`: the rig's connection's end, if it has ended).
    pub fn lost(&self, gone: impl Fn(&str) -> Option<Error>) -> Vec<(String, Error)> {
        self.missing()
            .into_iter()
            .filter_map(|rig| gone(&rig).map(|why| (rig, why)))
            .collect()
    }

    /// Whether the wait can end: every rig has reported, or one that has
    /// not reported lost its connection (`gone`, as for
    /// [`lost`](Self::lost)), so that it never will there.
    pub fn is_settled(&self, gone: impl Fn(&str) -> Option<Error>) -> bool {
        self.is_complete() || self.missing().iter().any(|rig| gone(rig).is_some())
    }

    /// The events in group order, or an error naming the rigs that did not report.
    ///
    /// # Errors
    /// [`GroupError::Lost`] if a rig that did not report lost its
    /// connection (`gone`, as for [`lost`](Self::lost)), else
    /// [`GroupError::Timeout`] listing the missing rigs.
    pub fn finish(
        mut self,
        waited: Duration,
        gone: impl Fn(&str) -> Option<Error>,
    ) -> Result<Vec<(String, T)>, GroupError> {
        if !self.is_complete() {
            let lost = self.lost(gone);
            if !lost.is_empty() {
                return Err(GroupError::Lost {
                    missing: self.missing(),
                    event: self.event,
                    lost,
                });
            }
            return Err(GroupError::Timeout {
                missing: self.missing(),
                event: self.event,
                waited,
            });
        }
        Ok(self
            .expected
            .into_iter()
            .filter_map(|r| self.got.remove(&r).map(|v| (r, v)))
            .collect())
    }
}

/// A group's rigs by name, in group order, each with its runtime's client
/// `C`. Each runtime's `Group` dereferences to it.
#[derive(Debug)]
pub struct Rigs<C> {
    rigs: Vec<(String, C)>,
}

impl<C> Rigs<C> {
    /// These rigs, in this order.
    ///
    /// # Errors
    /// [`GroupError::SameName`] if two rigs share a name.
    pub fn new(rigs: Vec<(String, C)>) -> Result<Self, GroupError> {
        distinct_names(rigs.iter().map(|(name, _)| name.as_str()))?;
        Ok(Rigs { rigs })
    }

    /// The rigs' names, in group order.
    pub fn names(&self) -> Vec<String> {
        self.rigs.iter().map(|(n, _)| n.clone()).collect()
    }

    /// One rig's client.
    ///
    /// # Errors
    /// [`GroupError::UnknownRig`].
    pub fn rig(&self, name: &str) -> Result<&C, GroupError> {
        self.rigs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
            .ok_or_else(|| GroupError::UnknownRig(name.to_owned()))
    }

    /// The rigs with their names, in the order a call in `order` reaches them.
    pub fn in_order(&self, order: GroupOrder) -> impl Iterator<Item = (&str, &C)> {
        order
            .positions(self.rigs.len())
            .into_iter()
            .map(|i| (self.rigs[i].0.as_str(), &self.rigs[i].1))
    }
}

/// The events a group's rigs have reported (`exp.event`), for waits to
/// take. Each report is counted by one wait: a wait takes, from each rig,
/// the oldest report of its event not yet taken, whether it came before the
/// wait began or during it, so that waiting for `trial_done` once per trial
/// waits for each trial's. (Every report once counted for every later wait:
/// the second trial's wait returned the first trial's report at once.)
///
/// Bounded: at most [`EventLog::KEPT`] reports of one event from one rig
/// (past that the oldest goes: a stream of events nobody waits for keeps
/// its latest), of at most [`EventLog::MAX`] (rig, event) pairs (past that
/// the pair reported first goes), so a rig that reports ever new event
/// names cannot grow it; and at most [`EventLog::BYTES`] of details in all
/// (past that the oldest report of the pair holding the most bytes goes:
/// a rig streaming large details nobody waits for pushes out its own, not
/// another rig's `trial_done`).
#[derive(Debug, Default)]
pub struct EventLog {
    /// Each (rig, event) pair's reports not yet taken, oldest first; the
    /// pairs in the order they were first reported.
    seen: std::collections::VecDeque<Reports>,
    /// The bytes of every detail kept.
    bytes: usize,
}

/// One rig's reports of one event, not yet taken.
#[derive(Debug)]
struct Reports {
    rig: String,
    event: String,
    /// Oldest first.
    details: std::collections::VecDeque<String>,
    /// The bytes of `details`.
    bytes: usize,
}

impl Reports {
    fn is(&self, rig: &str, event: &str) -> bool {
        self.rig == rig && self.event == event
    }

    /// Lets the oldest report go; the bytes it held.
    fn drop_oldest(&mut self) -> usize {
        let freed = self.details.pop_front().map_or(0, |d| d.len());
        self.bytes -= freed;
        freed
    }
}

impl EventLog {
    /// The most (rig, event) pairs kept.
    pub const MAX: usize = 1024;
    /// The most reports of one event from one rig kept untaken.
    pub const KEPT: usize = 64;
    /// The most bytes of details kept, all reports together.
    pub const BYTES: usize = 16 << 20;

    /// Records that `rig` reported `event` with `detail`.
    pub fn record(&mut self, rig: &str, event: &str, detail: String) {
        let at = match self.seen.iter().position(|r| r.is(rig, event)) {
            Some(at) => at,
            None => {
                if self.seen.len() == Self::MAX {
                    let first = self.seen.pop_front().expect("MAX pairs");
                    self.bytes -= first.bytes;
                }
                self.seen.push_back(Reports {
                    rig: rig.to_owned(),
                    event: event.to_owned(),
                    details: std::collections::VecDeque::new(),
                    bytes: 0,
                });
                self.seen.len() - 1
            }
        };
        let reports = &mut self.seen[at];
        if reports.details.len() == Self::KEPT {
            self.bytes -= reports.drop_oldest();
        }
        reports.bytes += detail.len();
        self.bytes += detail.len();
        reports.details.push_back(detail);
        while self.bytes > Self::BYTES {
            let largest = self.seen.iter_mut().max_by_key(|r| r.bytes);
            match largest {
                Some(r) if r.bytes > 0 => self.bytes -= r.drop_oldest(),
                _ => break,
            }
        }
    }

    /// A look at a wait for `event` from each of `rigs`: each rig's oldest
    /// report not yet taken. Takes nothing ([`take`](Self::take) does).
    pub fn wait(&self, event: &str, rigs: Vec<String>) -> EventWait<String> {
        let mut wait = EventWait::new(event, rigs);
        for reports in self.seen.iter().filter(|r| r.event == event) {
            if let Some(detail) = reports.details.front() {
                wait.record(&reports.rig, detail.clone());
            }
        }
        wait
    }

    /// Ends a wait for `event` from each of `rigs`, `waited` long: if every
    /// rig has reported it, takes each rig's oldest report (the next wait
    /// counts only later ones) and returns the details in group order.
    /// `gone(rig)` says why a rig's connection ended, if it has: a wait
    /// ends as soon as one that has not reported is gone
    /// ([`EventWait::is_settled`]), not at its timeout.
    ///
    /// # Errors
    /// [`GroupError::Lost`] naming the rigs that have not reported it and
    /// whose connection ended, else [`GroupError::Timeout`] naming those
    /// that have not reported it; then nothing is taken, so a wait tried
    /// again still counts the reports of the rigs that did.
    pub fn take(
        &mut self,
        event: &str,
        rigs: Vec<String>,
        waited: Duration,
        gone: impl Fn(&str) -> Option<Error>,
    ) -> Result<Vec<(String, String)>, GroupError> {
        let taken = self.wait(event, rigs).finish(waited, gone)?;
        for (rig, _) in &taken {
            if let Some(reports) = self.seen.iter_mut().find(|r| r.is(rig, event)) {
                self.bytes -= reports.drop_oldest();
            }
        }
        Ok(taken)
    }
}

/// The order in which a group calls its rigs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOrder {
    /// Every rig at once.
    Concurrent,
    /// One after another, in group order.
    InOrder,
    /// One after another, last rig first (the last started is stopped first).
    Reverse,
}

impl GroupOrder {
    /// The positions of `n` rigs in calling order (all of them, once each).
    pub fn positions(self, n: usize) -> Vec<usize> {
        match self {
            GroupOrder::Reverse => (0..n).rev().collect(),
            GroupOrder::Concurrent | GroupOrder::InOrder => (0..n).collect(),
        }
    }
}

/// One lifecycle step as a group sends it: the method, the order it calls
/// the rigs in, and the arguments (postcard). Init and start go to every
/// rig at once; stop and cleanup one rig after another in reverse order;
/// status and info at once.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupStep {
    /// The method called on each rig.
    pub method: &'static str,
    /// The order the rigs are called in.
    pub order: GroupOrder,
    /// The arguments, encoded in postcard (what a Rust group sends).
    pub args: crate::codec::Payload,
    /// The same arguments in JSON, for rigs spoken to in JSON (a person's
    /// console, whose answers then read as text; Python rigs).
    pub json_args: crate::codec::Payload,
}

impl GroupStep {
    fn new<A: serde::Serialize + ?Sized>(
        method: &'static str,
        order: GroupOrder,
        args: &A,
    ) -> Self {
        let encoded = |codec| {
            crate::codec::Payload::encode_as(codec, args).expect("lifecycle arguments encode")
        };
        GroupStep {
            method,
            order,
            args: encoded(crate::message::Codec::Postcard),
            json_args: encoded(crate::message::Codec::Json),
        }
    }

    /// The arguments as a rig spoken to in `codec` takes them: JSON for
    /// JSON, postcard otherwise.
    pub fn args_in(&self, codec: crate::message::Codec) -> crate::codec::Payload {
        match codec {
            crate::message::Codec::Json => self.json_args.clone(),
            _ => self.args.clone(),
        }
    }

    /// The plan of lifecycle `step` for every rig: init without data, start
    /// with `exp_ref` (which it needs), stop, interrupt (a stop at once),
    /// cleanup.
    ///
    /// # Errors
    /// The reason, for a start without an experiment reference.
    pub fn of(
        step: crate::lifecycle::Step,
        exp_ref: Option<&crate::lifecycle::ExpRef>,
    ) -> Result<Self, &'static str> {
        use crate::lifecycle::Step;
        Ok(match step {
            Step::Init => Self::init(&crate::lifecycle::InitData::default()),
            Step::Start => Self::start(exp_ref.ok_or("start needs an experiment reference")?),
            Step::Stop => Self::stop(false),
            Step::Interrupt => Self::stop(true),
            Step::Cleanup => Self::cleanup(),
        })
    }

    /// `exp.init`, with optional data (iblutil's init dict).
    pub fn init(data: &crate::lifecycle::InitData) -> Self {
        use crate::lifecycle::methods::INIT;
        match data.0 {
            None => Self::new(INIT, GroupOrder::Concurrent, &()),
            Some(_) => GroupStep {
                json_args: data
                    .encode(crate::message::Codec::Json)
                    .expect("JSON encodes"),
                ..Self::new(INIT, GroupOrder::Concurrent, &data.as_postcard_arg())
            },
        }
    }

    /// `exp.start` with the experiment reference.
    pub fn start(exp_ref: &crate::lifecycle::ExpRef) -> Self {
        Self::new(
            crate::lifecycle::methods::START,
            GroupOrder::Concurrent,
            exp_ref,
        )
    }

    /// `exp.stop`; `immediately` interrupts.
    pub fn stop(immediately: bool) -> Self {
        let args = Some(crate::lifecycle::StopArgs { immediately });
        Self::new(crate::lifecycle::methods::STOP, GroupOrder::Reverse, &args)
    }

    /// `exp.cleanup`.
    pub fn cleanup() -> Self {
        Self::new(crate::lifecycle::methods::CLEANUP, GroupOrder::Reverse, &())
    }

    /// `exp.status`.
    pub fn status() -> Self {
        Self::new(
            crate::lifecycle::methods::STATUS,
            GroupOrder::Concurrent,
            &(),
        )
    }

    /// `exp.info`.
    pub fn info() -> Self {
        Self::new(crate::lifecycle::methods::INFO, GroupOrder::Concurrent, &())
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::lifecycle::methods;

    #[test]
    fn stop_and_cleanup_go_in_reverse_the_rest_at_once() {
        assert_eq!(GroupStep::stop(false).order, GroupOrder::Reverse);
        assert_eq!(GroupStep::cleanup().order, GroupOrder::Reverse);
        assert_eq!(GroupStep::cleanup().method, methods::CLEANUP);
        let data = crate::lifecycle::InitData::default();
        assert_eq!(GroupStep::init(&data).order, GroupOrder::Concurrent);
        assert_eq!(GroupOrder::Reverse.positions(3), [2, 1, 0]);
        assert_eq!(GroupOrder::InOrder.positions(3), [0, 1, 2]);
        use crate::lifecycle::Step;
        assert_eq!(
            GroupStep::of(Step::Interrupt, None),
            Ok(GroupStep::stop(true))
        );
        assert!(GroupStep::of(Step::Start, None).is_err());
        let exp_ref: crate::lifecycle::ExpRef = "2026-11-26_1_mouse".parse().unwrap();
        let start = GroupStep::of(Step::Start, Some(&exp_ref)).unwrap();
        assert_eq!(&start.json_args.bytes[..], br#""2026-11-26_1_mouse""#);
        assert_eq!(
            &GroupStep::stop(true).json_args.bytes[..],
            br#"{"immediately":true}"#
        );
    }
}
