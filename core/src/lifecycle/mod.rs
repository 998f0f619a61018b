//! The experiment lifecycle of a rig (from iblutil): an experiment reference,
//! the rig's status, and the state machine init → start → stop or interrupt →
//! cleanup, with status and info at any time. Out-of-order steps are refused
//! with an error that says what the rig is doing and what to do first.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

mod event;
mod request;
pub use event::RigEvent;
pub use request::{InitData, StepInProgress, StepRequest};

/// The methods of the standard rig service, which every runtime's lifecycle
/// service exposes and every `Group` calls.
pub mod methods {
    /// Prepare for an experiment; the argument is optional data
    /// ([`InitData`](super::InitData)); returns the new status.
    pub const INIT: &str = "exp.init";
    /// Start; the argument is the experiment reference; returns the new status.
    pub const START: &str = "exp.start";
    /// Stop; the argument is `Option<StopArgs>`; returns the new status.
    pub const STOP: &str = "exp.stop";
    /// Clean up; no arguments; returns the new status.
    pub const CLEANUP: &str = "exp.cleanup";
    /// The status, at any time.
    pub const STATUS: &str = "exp.status";
    /// Status and experiment details ([`ExpInfo`](super::ExpInfo)), at any time.
    pub const INFO: &str = "exp.info";
    /// Notified by a rig to report an event to its script: a
    /// [`RigEvent`](super::RigEvent), `(name, detail)`.
    pub const EVENT: &str = "exp.event";

    /// The four steps a rig exposes, each with how `rigwire.methods`
    /// describes it (spec §6.6).
    pub const STEPS: [(&str, &str); 4] = [
        (INIT, "nothing, null or an object of data -> ExpStatus"),
        (START, "ExpRef (\"yyyy-mm-dd_n_subject\") -> ExpStatus"),
        (STOP, "nothing, null or {immediately: bool} -> ExpStatus"),
        (CLEANUP, "nothing -> ExpStatus"),
    ];
}

/// Arguments of `exp.stop`; `None` or `immediately: false` stops at the end
/// of the trial, `immediately: true` interrupts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopArgs {
    /// Interrupt at once.
    #[serde(default)]
    pub immediately: bool,
}

/// An experiment reference, `yyyy-mm-dd_n_subject`: the session date, the
/// session number that day (from 1), and the subject (which may contain `_`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExpRef {
    year: u16,
    month: u8,
    day: u8,
    number: u32,
    subject: String,
}

/// Why a string or parts are not a valid experiment reference.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExpRefError {
    /// The overall shape is not `yyyy-mm-dd_n_subject`.
    #[error("'{0}' is not an experiment reference of the form yyyy-mm-dd_n_subject")]
    Shape(String),
    /// The date does not exist.
    #[error("{year:04}-{month:02}-{day:02} is not a valid date")]
    Date {
        /// Year given.
        year: u16,
        /// Month given.
        month: u8,
        /// Day given.
        day: u8,
    },
    /// The session number is 0.
    #[error("the session number must be at least 1")]
    Number,
    /// The subject is empty or has characters other than letters, digits, `_`, `-` and `.`.
    #[error("subject '{0}' must be non-empty and use only letters, digits, '_', '-' and '.'")]
    Subject(String),
}

impl ExpRef {
    /// Builds a reference from its parts, validated.
    ///
    /// # Errors
    /// [`ExpRefError`] for an impossible date, session 0 or a bad subject.
    pub fn new(
        year: u16,
        month: u8,
        day: u8,
        number: u32,
        subject: &str,
    ) -> Result<Self, ExpRefError> {
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if year.is_multiple_of(4)
                && (!year.is_multiple_of(100) || year.is_multiple_of(400)) =>
            {
                29
            }
            2 => 28,
            _ => 0,
        };
        if day == 0 || day > days || year == 0 {
            return Err(ExpRefError::Date { year, month, day });
        }
        if number == 0 {
            return Err(ExpRefError::Number);
        }
        let subject_ok = !subject.is_empty()
            && subject.len() <= 128
            && subject
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !subject_ok {
            return Err(ExpRefError::Subject(subject.to_owned()));
        }
        Ok(ExpRef {
            year,
            month,
            day,
            number,
            subject: subject.to_owned(),
        })
    }

    /// The session date as (year, month, day).
    pub fn date(&self) -> (u16, u8, u8) {
        (self.year, self.month, self.day)
    }

    /// The session number that day.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The subject's name.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl FromStr for ExpRef {
    type Err = ExpRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || ExpRefError::Shape(s.to_owned());
        let (date, rest) = s.split_once('_').ok_or_else(shape)?;
        let (number, subject) = rest.split_once('_').ok_or_else(shape)?;
        let mut parts = date.split('-');
        let (Some(y), Some(m), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(shape());
        };
        let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(y, 4)
            || !digits(m, 2)
            || !digits(d, 2)
            || number.is_empty()
            || !number.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(shape());
        }
        let parse = |t: &str| t.parse::<u32>().map_err(|_| shape());
        ExpRef::new(
            parse(y)? as u16,
            parse(m)? as u8,
            parse(d)? as u8,
            parse(number)?,
            subject,
        )
    }
}

impl fmt::Display for ExpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}_{}_{}",
            self.year, self.month, self.day, self.number, self.subject
        )
    }
}

impl TryFrom<String> for ExpRef {
    type Error = ExpRefError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ExpRef> for String {
    fn from(r: ExpRef) -> String {
        r.to_string()
    }
}

/// What a rig is doing. iblutil's numeric codes are kept for its dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpStatus {
    /// Connected and idle (iblutil code 0).
    Connected,
    /// Initialized for an experiment, not yet running (10).
    Initialized,
    /// Running an experiment (20).
    Running,
    /// The experiment stopped; cleanup comes next (30).
    Stopped,
}

impl ExpStatus {
    /// iblutil's numeric code for this status.
    pub fn code(self) -> u8 {
        match self {
            ExpStatus::Connected => 0,
            ExpStatus::Initialized => 10,
            ExpStatus::Running => 20,
            ExpStatus::Stopped => 30,
        }
    }

    /// The status for an iblutil code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => ExpStatus::Connected,
            10 => ExpStatus::Initialized,
            20 => ExpStatus::Running,
            30 => ExpStatus::Stopped,
            _ => return None,
        })
    }
}

impl fmt::Display for ExpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpStatus::Connected => "connected",
            ExpStatus::Initialized => "initialized",
            ExpStatus::Running => "running",
            ExpStatus::Stopped => "stopped",
        })
    }
}

/// A lifecycle step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Prepare for an experiment.
    Init,
    /// Start the experiment.
    Start,
    /// Stop the experiment at the end of the current trial.
    Stop,
    /// Stop the experiment at once.
    Interrupt,
    /// Release what the experiment held.
    Cleanup,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Init => "init",
            Step::Start => "start",
            Step::Stop => "stop",
            Step::Interrupt => "interrupt",
            Step::Cleanup => "cleanup",
        })
    }
}

/// A step the rig cannot take in its current status.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot {step} while the rig is {status}: {hint}")]
pub struct OutOfOrder {
    /// The step refused.
    pub step: Step,
    /// The rig's status.
    pub status: ExpStatus,
    /// What to do instead.
    pub hint: &'static str,
}

/// Why a step was refused: out of order, or another step still running.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StepRefused {
    /// The step does not follow from the rig's status.
    #[error(transparent)]
    OutOfOrder(#[from] OutOfOrder),
    /// Another step has begun and not finished (its hook is running).
    #[error("cannot {step} while {in_progress} is in progress")]
    InProgress {
        /// The step refused.
        step: Step,
        /// The step still running.
        in_progress: Step,
    },
}

/// What `info` reports: status and the running experiment, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpInfo {
    /// The rig's status.
    pub status: ExpStatus,
    /// The experiment started, until cleanup.
    pub exp_ref: Option<ExpRef>,
    /// Whether the last stop was an interrupt.
    pub interrupted: bool,
}

/// The lifecycle of one rig as a state machine.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    status: ExpStatus,
    exp_ref: Option<ExpRef>,
    interrupted: bool,
    /// A step that has begun and not yet finished.
    in_progress: Option<Step>,
    /// An interrupt begun while `start` was in progress: its hook runs
    /// beside start's (to abort a start that hangs on its hardware).
    interrupting: bool,
    /// That interrupt finished first: the start in progress ends in
    /// `Stopped`, whatever its hook returns.
    start_interrupted: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            status: ExpStatus::Connected,
            exp_ref: None,
            interrupted: false,
            in_progress: None,
            interrupting: false,
            start_interrupted: false,
        }
    }
}

impl Lifecycle {
    /// A rig that is connected and idle.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current status.
    pub fn status(&self) -> ExpStatus {
        self.status
    }

    /// Status and experiment details.
    pub fn info(&self) -> ExpInfo {
        ExpInfo {
            status: self.status,
            exp_ref: self.exp_ref.clone(),
            interrupted: self.interrupted,
        }
    }

    /// Whether `step` is allowed now, without taking it (so a rig can check
    /// before running its own hook, and only then [`apply`](Self::apply) it).
    ///
    /// # Errors
    /// [`OutOfOrder`] naming the status and the step to take first.
    pub fn check(&self, step: Step) -> Result<(), OutOfOrder> {
        use ExpStatus::*;
        let hint = match (step, self.status) {
            (Step::Init, Connected) => return Ok(()),
            (Step::Start, Initialized) => return Ok(()),
            (Step::Stop | Step::Interrupt, Running) => return Ok(()),
            (Step::Cleanup, Initialized | Stopped) => return Ok(()),
            (Step::Init, _) => "cleanup the previous experiment first",
            (Step::Start, Connected) => "init first",
            (Step::Start, Running) => "stop it first",
            (Step::Start, Stopped) => "cleanup, then init, before starting again",
            (Step::Stop | Step::Interrupt, _) => "only a running experiment can be stopped",
            (Step::Cleanup, Connected) => "there is nothing to clean up",
            (Step::Cleanup, Running) => "stop the experiment first",
        };
        Err(OutOfOrder {
            step,
            status: self.status,
            hint,
        })
    }

    /// The step that has begun and not finished, if any (an interrupt begun
    /// during a start: the interrupt, while its hook runs).
    pub fn in_progress(&self) -> Option<Step> {
        match self.interrupting {
            true => Some(Step::Interrupt),
            false => self.in_progress,
        }
    }

    /// Begins `step`: it must follow from the status, and no other step may
    /// be in progress. Until [`finish`](Self::finish), every other step is
    /// refused, naming this one; so a rig's hook for a step runs at most once
    /// at a time, however many callers ask at once.
    ///
    /// One exception: an interrupt (`exp.stop {immediately: true}`) may
    /// begin while a start is in progress, its hook beside start's, so that
    /// a start hung on its hardware can be aborted. Once the interrupt's
    /// hook succeeds the rig is `Stopped` (interrupted), whichever ended
    /// first and however the start's hook ended (an abort is a failure);
    /// a start still running then changes nothing when it returns.
    ///
    /// # Errors
    /// [`StepRefused`]: out of order, or another step in progress.
    pub fn begin(&mut self, step: Step) -> Result<(), StepRefused> {
        if let Some(in_progress) = self.in_progress() {
            if (step, in_progress) == (Step::Interrupt, Step::Start) {
                self.interrupting = true;
                return Ok(());
            }
            return Err(StepRefused::InProgress { step, in_progress });
        }
        self.check(step)?;
        self.in_progress = Some(step);
        Ok(())
    }

    /// Decodes a call to one of the step methods and begins its step: what
    /// a rig's lifecycle service does before running its own work.
    ///
    /// # Errors
    /// Arguments that do not decode (`BadArguments`), a step out of order
    /// (`Refused`: no hook ran), or another step in progress (`Busy`), each
    /// saying why.
    pub fn begin_call(
        &mut self,
        method: &str,
        args: &crate::codec::Payload,
    ) -> Result<StepRequest, crate::handler_error::HandlerError> {
        let request = StepRequest::decode(method, args)?;
        self.begin(request.step()).map_err(|refused| {
            let kind = match refused {
                StepRefused::InProgress { .. } => crate::message::ErrorKind::Busy,
                _ => crate::message::ErrorKind::Refused,
            };
            crate::handler_error::HandlerError::with_kind(kind, refused.to_string())
        })?;
        Ok(request)
    }

    /// Finishes the step begun with [`begin`](Self::begin): applies it if
    /// the rig's work `succeeded` (`exp_ref` is required for `Start`), and
    /// leaves the status unchanged otherwise. Returns the status now.
    pub fn finish(&mut self, step: Step, exp_ref: Option<ExpRef>, succeeded: bool) -> ExpStatus {
        if step == Step::Interrupt && self.interrupting {
            self.interrupting = false;
            if succeeded {
                // Whether the start ended first (well, or aborted by this
                // interrupt's hook) or still runs: the experiment it began
                // was interrupted.
                self.status = ExpStatus::Stopped;
                self.interrupted = true;
                self.start_interrupted = self.in_progress == Some(Step::Start);
            }
        } else if self.in_progress == Some(step) {
            self.in_progress = None;
            if step == Step::Start && std::mem::take(&mut self.start_interrupted) {
                // Interrupted while it started: stopped it stays.
                if succeeded {
                    self.exp_ref = exp_ref;
                }
            } else if succeeded {
                let _ = self.apply(step, exp_ref);
            }
        }
        self.status
    }

    /// Takes `step`; `exp_ref` is required for `Start` and ignored otherwise.
    ///
    /// # Errors
    /// [`OutOfOrder`] if the step is not allowed now (nothing changes).
    pub fn apply(&mut self, step: Step, exp_ref: Option<ExpRef>) -> Result<ExpStatus, OutOfOrder> {
        self.check(step)?;
        self.status = match step {
            Step::Init => {
                self.interrupted = false;
                ExpStatus::Initialized
            }
            Step::Start => {
                self.exp_ref = exp_ref;
                ExpStatus::Running
            }
            Step::Stop => ExpStatus::Stopped,
            Step::Interrupt => {
                self.interrupted = true;
                ExpStatus::Stopped
            }
            Step::Cleanup => {
                self.exp_ref = None;
                ExpStatus::Connected
            }
        };
        Ok(self.status)
    }
}
