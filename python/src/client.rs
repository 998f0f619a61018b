//! The blocking client: `rigwire.connect` and the calls of a `Client`.
//! Arguments and results cross as JSON text (the package's `json` turns
//! Python values into it and back; see `rigwire/__init__.py` for the rule
//! that maps `call(name, *args, **kwargs)` to one payload).
//!
//! Every wait releases the GIL, in slices of [`SIGNAL_CHECK`], between which
//! Python's signal handlers run: Ctrl-C raises `KeyboardInterrupt` in the
//! waiting thread, and the call it waited for is cancelled on the wire.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use rigwire_std::core::link::after;
use rigwire_std::core::{Secret, TlsSettings, Trust};
use rigwire_std::{
    Client, Config, Error, Group, Handlers, Payload, Peer, RawPendingCall, Reconnect, TryStarted,
};

use crate::data::{Answer, Data};
use crate::errors::to_py;

/// How long a wait runs with the GIL released before Python's signal
/// handlers get a turn: the bound on how late Ctrl-C is noticed.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// A limit in seconds from Python, `None` for no limit; negative, infinite
/// or NaN is refused.
pub(crate) fn seconds(what: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    value
        .map(|s| to_duration(what, s, " (None for no limit)"))
        .transpose()
}

/// Seconds from Python that must be given (a grace, a wait); negative,
/// infinite or NaN is refused.
pub(crate) fn duration(what: &str, s: f64) -> PyResult<Duration> {
    to_duration(what, s, "")
}

fn to_duration(what: &str, s: f64, none_means: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a number of seconds from 0 to 2^64{none_means}, got {s:?}"
        ))
    })
}

/// Connects to `url` as `name`, with a shared secret given as bytes or read
/// from `secret_file` (one trailing newline is not part of it). `timeout`
/// bounds connecting and is every call's default deadline. `expose` names
/// the package's wrapped functions the peer may call back. With `reconnect`,
/// the next call after a lost connection connects again first (the core's
/// default backoff and give-up rules). `max_frame` (bytes) is the largest
/// frame this side takes (the connection keeps the smaller of both sides').
#[pyfunction]
#[pyo3(signature = (url, name, secret=None, secret_file=None, timeout=None, expose=Vec::new(), tls=Tls::default(), reconnect=false, max_frame=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn connect(
    py: Python<'_>,
    url: String,
    name: &str,
    secret: Option<Vec<u8>>,
    secret_file: Option<PathBuf>,
    timeout: Option<f64>,
    expose: Vec<(String, Py<PyAny>)>,
    tls: Tls,
    reconnect: bool,
    max_frame: Option<Bound<'_, PyAny>>,
) -> PyResult<NativeClient> {
    let mut config = config(name, secret, secret_file, timeout, tls, max_frame)?;
    config.reconnect = reconnect.then(Reconnect::default);
    let default_timeout = config.protocol.default_call_timeout;
    let mut handlers = Handlers::new();
    for (method, handler) in expose {
        crate::server::expose_python(&mut handlers, &method, handler, false)
            .map_err(|e| to_py(py, e))?;
    }
    let client =
        crate::waiting::interruptible(py, move || Client::connect_with(&url, config, handlers))?
            .map_err(|e| to_py(py, e))?;
    Ok(NativeClient {
        inner: Endpoint::Client(Arc::new(client)),
        default_timeout,
    })
}

/// What a [`NativeClient`] calls: a connection it dialed, or the peer that
/// called one of our handlers (to call it back).
#[derive(Clone)]
enum Endpoint {
    Client(Arc<Client>),
    /// One rig of a group, by its name there: the group's own connection.
    Rig(Arc<Group>, String),
    Caller(Peer),
}

/// What an [`Endpoint`] calls through.
enum Via<'a> {
    Client(&'a Client),
    Caller(&'a Peer),
}

impl Endpoint {
    fn via(&self) -> Via<'_> {
        match self {
            Endpoint::Client(c) => Via::Client(c),
            Endpoint::Rig(group, name) => Via::Client(
                group
                    .rig(name)
                    .expect("a rig of the group, checked when made"),
            ),
            Endpoint::Caller(p) => Via::Caller(p),
        }
    }

    fn start_raw(
        &self,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
    ) -> Result<RawPendingCall, Error> {
        match self.via() {
            Via::Client(c) => c.start_raw(method, args, timeout),
            Via::Caller(p) => p.start_raw(method, args, timeout),
        }
    }

    fn start_batch(
        &self,
        method: &str,
        args: Vec<Payload>,
        timeout: Option<Duration>,
    ) -> Result<Vec<RawPendingCall>, Error> {
        match self.via() {
            Via::Client(c) => c.start_batch(method, args, timeout),
            Via::Caller(p) => p.start_batch(method, args, timeout),
        }
    }

    fn try_start_batch(
        &self,
        method: &str,
        args: Vec<Payload>,
        timeout: Option<Duration>,
        made: Instant,
        on_room: impl FnOnce() + Send + 'static,
    ) -> Result<TryStarted, Error> {
        match self.via() {
            Via::Client(c) => c.try_start_batch(method, args, timeout, made, on_room),
            Via::Caller(p) => p.try_start_batch(method, args, timeout, made, on_room),
        }
    }

    fn try_notify_raw(
        &self,
        method: &str,
        args: Payload,
        made: Instant,
        on_room: impl FnOnce() + Send + 'static,
    ) -> Result<Option<rigwire_std::Deferred>, Error> {
        match self.via() {
            Via::Client(c) => c.try_notify_raw(method, args, made, on_room),
            Via::Caller(p) => p.try_notify_raw(method, args, made, on_room),
        }
    }

    fn notify_raw(&self, method: &str, args: Payload) -> Result<(), Error> {
        match self.via() {
            Via::Client(c) => c.notify_raw(method, args),
            Via::Caller(p) => p.notify_raw(method, args),
        }
    }

    fn ping(&self) -> Result<Duration, Error> {
        match self.via() {
            Via::Client(c) => c.ping(),
            Via::Caller(p) => p.ping(),
        }
    }

    fn peer(&self) -> Result<Peer, Error> {
        match self.via() {
            Via::Client(c) => c.peer(),
            Via::Caller(p) => Ok(p.clone()),
        }
    }
}

impl NativeClient {
    /// A client of rig `name` of `group` (a name it holds), on the group's
    /// own connection; `default_timeout` is the group's.
    pub(crate) fn rig_of(
        group: Arc<Group>,
        name: String,
        default_timeout: Option<Duration>,
    ) -> NativeClient {
        NativeClient {
            inner: Endpoint::Rig(group, name),
            default_timeout,
        }
    }

    /// A client of the peer that made a call, handed to its Python handler.
    pub(crate) fn caller(peer: Peer) -> NativeClient {
        NativeClient {
            inner: Endpoint::Caller(peer),
            // A server sets no default deadline: a call back has the one
            // its handler gives, or none.
            default_timeout: None,
        }
    }
}

/// TLS as Python gives it, `(cert, key, pin, ca)`: a server's certificate
/// and key files, and how a client trusts its server (a pinned
/// fingerprint, or a CA file; the system's roots when neither).
#[derive(Debug, Default, FromPyObject)]
pub(crate) struct Tls(
    Option<PathBuf>,
    Option<PathBuf>,
    Option<String>,
    Option<PathBuf>,
);

impl Tls {
    fn settings(self) -> PyResult<TlsSettings> {
        let Tls(cert, key, pin, ca) = self;
        if cert.is_some() != key.is_some() {
            return Err(PyValueError::new_err("give cert and key together"));
        }
        let trust = match (pin, ca) {
            (Some(_), Some(_)) => return Err(PyValueError::new_err("give pin or ca, not both")),
            (Some(pin), None) => Trust::Pin(pin),
            (None, Some(ca)) => Trust::Ca(ca),
            (None, None) => Trust::SystemRoots,
        };
        Ok(TlsSettings {
            cert,
            key,
            trust,
            server_name: None,
        })
    }
}

/// An endpoint's settings from what Python passed: its name, a secret as
/// bytes or from a file (not both), a timeout for connecting and as every
/// call's default deadline, TLS, and the largest frame (bytes) it takes.
pub(crate) fn config(
    name: &str,
    secret: Option<Vec<u8>>,
    secret_file: Option<PathBuf>,
    timeout: Option<f64>,
    tls: Tls,
    max_frame: Option<Bound<'_, PyAny>>,
) -> PyResult<Config> {
    let mut config = Config::named(name);
    if let Some(given) = max_frame {
        let out_of_range = || {
            PyValueError::new_err(format!(
                "max_frame must be a number of bytes from 4096 to {}, got {given}",
                u32::MAX
            ))
        };
        // An int too large for 64 bits is out of range as any other is,
        // not an OverflowError; what is not an int is a TypeError.
        let bytes = match given.extract::<i64>() {
            Ok(bytes) => bytes,
            Err(_) if given.is_instance_of::<pyo3::types::PyInt>() => return Err(out_of_range()),
            Err(e) => return Err(e),
        };
        match u32::try_from(bytes) {
            Ok(bytes) if bytes >= 4096 => config = config.max_frame(bytes),
            _ => return Err(out_of_range()),
        }
    }
    config.tls = tls.settings()?;
    config.protocol.secret = match (secret, secret_file) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "give secret or secret_file, not both",
            ))
        }
        // `rigwire.InvalidConfig`, as the core's other refusals of a setting.
        (Some(bytes), None) => {
            Some(Secret::new(bytes).map_err(|e| Python::attach(|py| to_py(py, Error::Config(e))))?)
        }
        (None, Some(path)) => Some(
            rigwire_std::secret_from_file(&path).map_err(|e| Python::attach(|py| to_py(py, e)))?,
        ),
        (None, None) => None,
    };
    if let Some(timeout) = seconds("timeout", timeout)? {
        config = config.connect_within(timeout).default_timeout(timeout);
    }
    Ok(config)
}

/// One connection to a rig or service; safe to share between threads.
#[pyclass(module = "rigwire._rigwire", frozen)]
pub(crate) struct NativeClient {
    inner: Endpoint,
    /// The deadline of a call made without one, for the words of its
    /// `DeadlineExceeded`.
    default_timeout: Option<Duration>,
}

impl NativeClient {
    /// Where a call of `method` is made, with its deadline.
    fn site(&self, method: &str, timeout: Option<Duration>) -> CallSite {
        CallSite {
            method: method.to_owned(),
            timeout: timeout.or(self.default_timeout),
        }
    }
}

/// A call's method and deadline, which the words of its failure name.
#[derive(Clone)]
struct CallSite {
    method: String,
    timeout: Option<Duration>,
}

impl CallSite {
    /// The exception for this call's failure `err`.
    fn failed(&self, py: Python<'_>, err: Error) -> PyErr {
        crate::errors::call_failed(py, err, &self.method, self.timeout)
    }
}

/// How a [`wait`] ended, short of a signal handler's exception.
enum WaitEnd {
    /// The call's result or failure.
    Done(Result<Payload, Error>),
    /// `until` passed; the call is still in flight.
    TimedOut,
    /// Another thread asked to cancel the call.
    CancelAsked,
}

/// Waits for `pending` with the GIL released, letting Python's signal
/// handlers run every [`SIGNAL_CHECK`]; `until` bounds the wait, and
/// `cancel` (when given) is looked at between slices. A handler's exception
/// (Ctrl-C's `KeyboardInterrupt`) is returned as `Err`, the call untouched:
/// the caller decides to cancel it.
fn wait(
    py: Python<'_>,
    pending: &mut RawPendingCall,
    until: Option<Instant>,
    cancel: Option<&AtomicBool>,
) -> PyResult<WaitEnd> {
    loop {
        let slice = match until {
            Some(t) => SIGNAL_CHECK.min(t.saturating_duration_since(Instant::now())),
            None => SIGNAL_CHECK,
        };
        match py.detach(|| pending.wait_timeout(slice)) {
            Err(Error::WaitTimeout(_)) => {}
            done => return Ok(WaitEnd::Done(done)),
        }
        py.check_signals()?;
        if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) {
            return Ok(WaitEnd::CancelAsked);
        }
        if until.is_some_and(|t| Instant::now() >= t) {
            return Ok(WaitEnd::TimedOut);
        }
    }
}

#[pymethods]
impl NativeClient {
    /// Runs `wait` (an `async def` handler's wait for the event loop that
    /// runs it) with the handler's thread lent while it waits, when this
    /// is the caller of that handler ([`Peer::waiting_for`]); as it is
    /// otherwise.
    fn waiting_for(&self, py: Python<'_>, wait: Py<PyAny>) -> PyResult<Py<PyAny>> {
        match &self.inner {
            Endpoint::Caller(peer) => peer.waiting_for(|| wait.call0(py)),
            _ => wait.call0(py),
        }
    }

    /// The URL this client dialed (for a caller, where its connection came from).
    #[getter]
    fn url(&self) -> String {
        match self.inner.via() {
            Via::Client(c) => c.url(),
            Via::Caller(p) => p.address().to_owned(),
        }
    }

    /// The name the peer gave in its handshake (`None` when the connection
    /// is lost and not made again).
    #[getter]
    fn peer_name(&self) -> Option<String> {
        self.inner.peer().ok().map(|p| p.name().to_string())
    }

    /// Calls `method` with `args` (JSON text, or `bytes` for the bytes codec)
    /// and returns the result's JSON text, or `bytes`. `timeout` (seconds) is
    /// the call's deadline; `None` takes the client's default. Ctrl-C cancels
    /// the call and raises `KeyboardInterrupt`.
    #[pyo3(signature = (method, args, timeout=None))]
    fn call(
        &self,
        py: Python<'_>,
        method: &str,
        args: Data,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        let timeout = seconds("timeout", timeout)?;
        let site = self.site(method, timeout);
        let args = args.into_payload();
        let mut pending = py
            .detach(|| self.inner.start_raw(method, args, timeout))
            .map_err(|e| site.failed(py, e))?;
        // A KeyboardInterrupt drops `pending`, which cancels the call.
        match wait(py, &mut pending, None, None)? {
            WaitEnd::Done(done) => done
                .and_then(Answer::from_payload)
                .map(|a| a.into_py(py))
                .map_err(|e| site.failed(py, e)),
            WaitEnd::TimedOut | WaitEnd::CancelAsked => {
                unreachable!("a wait without a bound or a cancel flag ends with a result")
            }
        }
    }

    /// Starts a call and returns its handle at once.
    #[pyo3(signature = (method, args, timeout=None))]
    fn start(
        &self,
        py: Python<'_>,
        method: &str,
        args: Data,
        timeout: Option<f64>,
    ) -> PyResult<NativeCall> {
        let timeout = seconds("timeout", timeout)?;
        let site = self.site(method, timeout);
        let args = args.into_payload();
        let pending = py
            .detach(|| self.inner.start_raw(method, args, timeout))
            .map_err(|e| site.failed(py, e))?;
        Ok(NativeCall::new(pending, site))
    }

    /// Starts one call of `method` per item of `args` (each JSON text or
    /// `bytes`), their frames written together; returns their handles.
    #[pyo3(signature = (method, args, timeout=None))]
    fn start_batch(
        &self,
        py: Python<'_>,
        method: &str,
        args: Vec<Data>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<NativeCall>> {
        let timeout = seconds("timeout", timeout)?;
        let site = self.site(method, timeout);
        let args: Vec<Payload> = args.into_iter().map(Data::into_payload).collect();
        let started = py
            .detach(|| self.inner.start_batch(method, args, timeout))
            .map_err(|e| site.failed(py, e))?;
        Ok(started
            .into_iter()
            .map(|pending| NativeCall::new(pending, site.clone()))
            .collect())
    }

    /// Starts one call of `method` per item of `args` as `start_batch`
    /// does, but never waits (for an event loop, which awaits room itself):
    /// returns the calls started, the first of `args`, and for the rest a
    /// `Deferred` saying why they wait, or `None`. For room, `wake()` is
    /// called, from another thread, once the peer's output has room again
    /// or the connection failed; try again then with the rest and
    /// `made=` that `Deferred` (it fixes their deadline). A lost connection
    /// that reconnect would make again is made only by `start_batch`.
    #[pyo3(signature = (method, args, timeout, made, wake))]
    fn try_start(
        &self,
        py: Python<'_>,
        method: &str,
        args: Vec<Data>,
        timeout: Option<f64>,
        made: Option<PyRef<'_, Deferred>>,
        wake: Py<PyAny>,
    ) -> PyResult<(Vec<NativeCall>, Option<Deferred>)> {
        let timeout = seconds("timeout", timeout)?;
        let site = self.site(method, timeout);
        let made = made.map_or_else(Instant::now, |d| d.made);
        let args: Vec<Payload> = args.into_iter().map(Data::into_payload).collect();
        let on_room = move || {
            crate::exit::attach(|py| call_wake(py, &wake));
        };
        let tried = py
            .detach(|| {
                self.inner
                    .try_start_batch(method, args, timeout, made, on_room)
            })
            .map_err(|e| site.failed(py, e))?;
        let rest = tried.rest.map(|why| Deferred::new(why, made, &site));
        let calls = tried.calls.into_iter();
        Ok((
            calls.map(|c| NativeCall::new(c, site.clone())).collect(),
            rest,
        ))
    }

    /// Sends a one-way notify as `notify` does, but never waits: `None`
    /// once it is sent, else a `Deferred` as `try_start` returns (try
    /// again as it says, with `made=` it).
    #[pyo3(signature = (method, args, made, wake))]
    fn try_notify(
        &self,
        py: Python<'_>,
        method: &str,
        args: Data,
        made: Option<PyRef<'_, Deferred>>,
        wake: Py<PyAny>,
    ) -> PyResult<Option<Deferred>> {
        let site = self.site(method, None);
        let made = made.map_or_else(Instant::now, |d| d.made);
        let args = args.into_payload();
        let on_room = move || {
            crate::exit::attach(|py| call_wake(py, &wake));
        };
        let tried = py
            .detach(|| self.inner.try_notify_raw(method, args, made, on_room))
            .map_err(|e| to_py(py, e))?;
        Ok(tried.map(|why| Deferred::new(why, made, &site)))
    }

    /// Sends a one-way notify of `method` with `args` (JSON text or `bytes`).
    fn notify(&self, py: Python<'_>, method: &str, args: Data) -> PyResult<()> {
        let args = args.into_payload();
        py.detach(|| self.inner.notify_raw(method, args))
            .map_err(|e| to_py(py, e))
    }

    /// Round-trip time of an application ping, in seconds.
    fn ping(&self, py: Python<'_>) -> PyResult<f64> {
        // A frozen peer's pong never comes: Ctrl-C must not wait for its
        // deadline or its keepalive.
        let endpoint = self.inner.clone();
        crate::waiting::interruptible(py, move || endpoint.ping())?
            .map(|rtt| rtt.as_secs_f64())
            .map_err(|e| to_py(py, e))
    }

    /// Closes the connection with a goodbye; later calls fail `Disconnected`.
    fn close(&self, py: Python<'_>) {
        py.detach(|| match &self.inner {
            Endpoint::Client(c) => c.close(),
            // The group's connection: the group closes it.
            Endpoint::Rig(..) => {}
            Endpoint::Caller(p) => p.close(),
        });
    }
}

/// Calls that `NativeClient.try_start` could not start: when they were
/// made, which fixes their deadline, and what they wait for.
#[pyclass(module = "rigwire._rigwire", frozen)]
pub(crate) struct Deferred {
    made: Instant,
    redial: bool,
    deadline: Option<Instant>,
}

impl Deferred {
    fn new(why: rigwire_std::Deferred, made: Instant, site: &CallSite) -> Deferred {
        Deferred {
            made,
            redial: why == rigwire_std::Deferred::Redial,
            deadline: site.timeout.map(|t| after(made, t)),
        }
    }
}

#[pymethods]
impl Deferred {
    /// Whether they wait for the lost connection to be made again (which
    /// only `start_batch` does), rather than for room.
    #[getter]
    fn redial(&self) -> bool {
        self.redial
    }

    /// Seconds until their deadline (0 once it has passed), `None` if they
    /// have none.
    fn seconds_left(&self) -> Option<f64> {
        let left = |d: Instant| d.saturating_duration_since(Instant::now()).as_secs_f64();
        self.deadline.map(left)
    }
}

enum CallState {
    Pending(RawPendingCall),
    /// A thread waits for it (holding the call, not this state's lock).
    Waiting,
    Done(Result<Answer, Error>),
    Cancelled,
}

/// A call in flight, like a `concurrent.futures.Future`. Its lock is never
/// held across a wait, so that `done` and `cancel` answer at once while
/// another thread waits in `result`.
#[pyclass(module = "rigwire._rigwire", frozen)]
pub(crate) struct NativeCall {
    state: Mutex<CallState>,
    /// Wakes threads waiting for the one in `result` to end its wait.
    settled: Condvar,
    /// Asks the thread waiting in `result` to cancel the call.
    cancel: AtomicBool,
    /// What was called, for the words of its failure.
    site: CallSite,
}

impl NativeCall {
    fn new(pending: RawPendingCall, site: CallSite) -> NativeCall {
        NativeCall {
            state: Mutex::new(CallState::Pending(pending)),
            settled: Condvar::new(),
            cancel: AtomicBool::new(false),
            site,
        }
    }

    fn state(&self) -> MutexGuard<'_, CallState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl NativeCall {
    /// The result's JSON text (or `bytes`), waiting up to `timeout` seconds (`None`: as
    /// long as the call's deadline allows). A wait that times out raises
    /// `TimeoutError` and leaves the call in flight; Ctrl-C cancels it.
    #[pyo3(signature = (timeout=None))]
    fn result(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let until = seconds("timeout", timeout)?.map(|t| after(Instant::now(), t));
        let mut pending = loop {
            let mut state = self.state();
            match std::mem::replace(&mut *state, CallState::Waiting) {
                CallState::Pending(pending) => break pending,
                CallState::Waiting => {
                    // Another thread waits for it: wait for that one, hearing
                    // Ctrl-C between slices.
                    drop(state);
                    if until.is_some_and(|t| Instant::now() >= t) {
                        return Err(still_in_flight());
                    }
                    let slice = until.map_or(SIGNAL_CHECK, |t| {
                        SIGNAL_CHECK.min(t.saturating_duration_since(Instant::now()))
                    });
                    py.detach(|| {
                        let state = self.state();
                        if matches!(*state, CallState::Waiting) {
                            drop(self.settled.wait_timeout(state, slice));
                        }
                    });
                    py.check_signals()?;
                }
                CallState::Done(done) => {
                    *state = CallState::Done(done.clone());
                    return done
                        .map(|a| a.into_py(py))
                        .map_err(|e| self.site.failed(py, e));
                }
                CallState::Cancelled => {
                    *state = CallState::Cancelled;
                    return Err(crate::errors::cancelled(py));
                }
            }
        };
        let end = wait(py, &mut pending, until, Some(&self.cancel));
        let mut state = self.state();
        // Whatever this wait ends with, the others waiting for it look again.
        self.settled.notify_all();
        match end {
            Ok(WaitEnd::Done(done)) => {
                let done = done.and_then(Answer::from_payload);
                *state = CallState::Done(done.clone());
                done.map(|a| a.into_py(py))
                    .map_err(|e| self.site.failed(py, e))
            }
            Ok(WaitEnd::TimedOut) => {
                *state = CallState::Pending(pending);
                Err(still_in_flight())
            }
            Ok(WaitEnd::CancelAsked) => {
                *state = CallState::Cancelled; // `pending` dropped: cancelled on the wire
                Err(crate::errors::cancelled(py))
            }
            Err(interrupted) => {
                *state = CallState::Cancelled;
                Err(interrupted)
            }
        }
    }

    /// Calls `wake()` once the result (or its failure) is there, from the
    /// thread that took it in (at once, here, if the call has ended): for
    /// an event loop that awaits calls with no thread waiting for each.
    /// `wake` must hand the news on and return (`loop.call_soon_threadsafe`);
    /// what it raises is unraisable. A call cancelled first, or one a
    /// thread waits for in `result` meanwhile, never calls it.
    fn on_ready(&self, py: Python<'_>, wake: Py<PyAny>) {
        // Out of the state while it is watched: `wake` may run at once on
        // this thread, and must find the state's lock free.
        let pending = {
            let mut state = self.state();
            match std::mem::replace(&mut *state, CallState::Waiting) {
                CallState::Pending(pending) => pending,
                CallState::Waiting => return,
                ended => {
                    *state = ended;
                    drop(state);
                    return call_wake(py, &wake);
                }
            }
        };
        pending.on_ready(move || {
            crate::exit::attach(|py| call_wake(py, &wake));
        });
        let mut state = self.state();
        // A cancel asked meanwhile found it "waited for": it is done here.
        *state = match self.cancel.load(Ordering::SeqCst) {
            true => CallState::Cancelled, // `pending` dropped: cancelled on the wire
            false => CallState::Pending(pending),
        };
        self.settled.notify_all();
    }

    /// Whether the result (or its failure) is there; never blocks.
    fn done(&self) -> bool {
        match &*self.state() {
            CallState::Pending(pending) => pending.is_ready(),
            CallState::Waiting => false,
            CallState::Done(_) | CallState::Cancelled => true,
        }
    }

    /// Gives up on the call: the peer is told to cancel it. Returns whether
    /// it was still in flight.
    fn cancel(&self) -> bool {
        let mut state = self.state();
        match &*state {
            CallState::Pending(pending) => {
                let in_flight = !pending.is_ready();
                *state = CallState::Cancelled; // dropping the call cancels it
                in_flight
            }
            CallState::Waiting => {
                self.cancel.store(true, Ordering::SeqCst);
                true
            }
            CallState::Done(_) | CallState::Cancelled => false,
        }
    }
}

/// What `result(timeout)` raises when the wait ends first.
fn still_in_flight() -> PyErr {
    PyTimeoutError::new_err("no result yet; the call is still in flight")
}

/// Runs an `on_ready` callback, reporting what it raises as unraisable
/// (nobody waits on the thread that runs it).
fn call_wake(py: Python<'_>, wake: &Py<PyAny>) {
    if let Err(e) = wake.call0(py) {
        e.write_unraisable(py, None);
    }
}
