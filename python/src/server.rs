//! Serving from Python: rigwire-std's server (listening) and dial-out
//! service (through a relay), whose handlers are Python callables. A handler
//! runs on a pool thread (never on a connection's reading thread, since
//! Python code may block), taking the GIL only while it runs; arguments and
//! results cross as JSON text or bytes, which the package's wrapper turns
//! into Python values and back (or, for a raw handler, as they came).

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;
use rigwire_std::core::{Codec, ErrorKind};
use rigwire_std::{
    CallContext, Config, Dispatch, HandlerError, Handlers, Payload, RemoteService, RigService,
    RunningServer, RunningService, Server,
};

use crate::client::{config, duration, NativeClient, Tls};
use crate::data::{Answer, Data};
use crate::errors::to_py;

enum Listening {
    /// Bound, not serving yet.
    Bound(Box<Server>),
    Running(RunningServer),
    /// No listener (a service that only dials out), or shut down.
    None,
}

/// A Python server: one handler table, served on a listener and through
/// any number of relays.
#[pyclass(module = "rigwire._rigwire", frozen)]
pub(crate) struct NativeServer {
    handlers: Mutex<Handlers>,
    listening: Mutex<Listening>,
    services: Mutex<Vec<RunningService>>,
    config: Config,
    url: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A server as `name`, listening on `url` (port 0 picks a free port) unless
/// it is `None`, with a shared secret and frame limit as for `connect`.
#[pyfunction]
#[pyo3(signature = (url, name, secret=None, secret_file=None, tls=Tls::default(), max_frame=None))]
pub(crate) fn serve(
    py: Python<'_>,
    url: Option<&str>,
    name: &str,
    secret: Option<Vec<u8>>,
    secret_file: Option<PathBuf>,
    tls: Tls,
    max_frame: Option<Bound<'_, PyAny>>,
) -> PyResult<NativeServer> {
    let config = config(name, secret, secret_file, None, tls, max_frame)?;
    let (listening, url) = match url {
        Some(url) => {
            let server = Server::bind(url, config.clone()).map_err(|e| to_py(py, e))?;
            let url = server.local_url();
            (Listening::Bound(Box::new(server)), Some(url))
        }
        None => (Listening::None, None),
    };
    Ok(NativeServer {
        handlers: Mutex::new(Handlers::new()),
        listening: Mutex::new(listening),
        services: Mutex::new(Vec::new()),
        config,
        url,
    })
}

/// What the package's handler wrapper returns: `(None, result, None)` on
/// success, the result JSON text or `bytes`; `(kind, message, detail)` on
/// failure.
type Outcome = (Option<String>, Data, Option<String>);

fn kind_of(name: &str) -> ErrorKind {
    match name {
        "BadArguments" => ErrorKind::BadArguments,
        "Busy" => ErrorKind::Busy,
        "Unavailable" => ErrorKind::Unavailable,
        "Refused" => ErrorKind::Refused,
        _ => ErrorKind::Handler,
    }
}

/// A handler's `cancelled`: called, it says whether the call it answers is
/// no longer wanted (cancelled by the caller, past its deadline, or its
/// connection closed), so that a long handler can stop early.
#[pyclass(module = "rigwire._rigwire", frozen)]
pub(crate) struct NativeCancelled {
    ctx: CallContext,
}

#[pymethods]
impl NativeCancelled {
    /// Whether the call is no longer wanted.
    fn __call__(&self, py: Python<'_>) -> bool {
        py.detach(|| self.ctx.is_cancelled())
    }
}

/// Calls a wrapped Python function with the GIL: the arguments as JSON text
/// or `bytes`, its caller, and (for a handler, not a lifecycle hook) its
/// [`NativeCancelled`] in; an [`Outcome`] out.
fn run_wrapped(
    handler: &Py<PyAny>,
    args: Answer,
    ctx: &CallContext,
    cancellable: bool,
) -> Result<Data, HandlerError> {
    let outcome: PyResult<Outcome> = crate::exit::attach(|py| {
        let caller = NativeClient::caller(ctx.peer.clone());
        let args = args.into_py(py);
        let outcome = if cancellable {
            let cancelled = NativeCancelled { ctx: ctx.clone() };
            handler.call1(py, (args, caller, cancelled))?
        } else {
            handler.call1(py, (args, caller))?
        };
        outcome.extract(py)
    })
    .ok_or_else(exiting)?;
    match outcome {
        Ok((None, result, _)) => Ok(result),
        Ok((Some(kind), message, detail)) => {
            let message = match message {
                Data::Json(text) => text,
                Data::Bytes(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            };
            Err(failed(&kind, message, detail))
        }
        Err(e) => Err(wrapper_failed(e)),
    }
}

/// The error a handler's failure answers with: its kind, message and detail
/// (the Python traceback).
fn failed(kind: &str, message: String, detail: Option<String>) -> HandlerError {
    let err = HandlerError::with_kind(kind_of(kind), message);
    match detail {
        Some(d) => err.detail(d),
        None => err,
    }
}

/// What a call that arrives while the process's Python exits is answered
/// ([`crate::exit`]): its handler never ran.
fn exiting() -> HandlerError {
    HandlerError::with_kind(
        ErrorKind::Unavailable,
        "not run: the Python interpreter serving it is exiting",
    )
}

/// The package's wrapper itself failed (it catches the function's exceptions).
fn wrapper_failed(e: PyErr) -> HandlerError {
    HandlerError::new(format!("the Python handler wrapper failed: {e}"))
}

/// The last item of what the package's raw-handler wrapper returns: the
/// answer's bytes on success, the traceback (if any) on failure.
#[derive(FromPyObject)]
enum RawTail {
    Bytes(PyBackedBytes),
    Detail(Option<String>),
}

/// A codec as a raw Python handler names it.
fn codec_name(codec: Codec) -> String {
    match codec {
        Codec::Postcard => "postcard".into(),
        Codec::Json => "json".into(),
        Codec::Bytes => "bytes".into(),
        other => format!("{other:?}"),
    }
}

/// Runs a wrapped raw Python handler: the call's codec (by name) and bytes,
/// its caller and its [`NativeCancelled`] in, `(None, codec, bytes)` or
/// `(kind, message, traceback)` out; nothing is decoded or encoded on the way.
fn run_raw(handler: &Py<PyAny>, args: Payload, ctx: &CallContext) -> Result<Payload, HandlerError> {
    let outcome: PyResult<(Option<String>, String, RawTail)> = crate::exit::attach(|py| {
        let caller = NativeClient::caller(ctx.peer.clone());
        let cancelled = NativeCancelled { ctx: ctx.clone() };
        let data = PyBytes::new(py, &args.bytes);
        handler
            .call1(py, (codec_name(args.codec), data, caller, cancelled))?
            .extract(py)
    })
    .ok_or_else(exiting)?;
    match outcome {
        Ok((None, codec, RawTail::Bytes(bytes))) => {
            let codec = match codec.as_str() {
                "postcard" => Codec::Postcard,
                "json" => Codec::Json,
                "bytes" => Codec::Bytes,
                _ => {
                    return Err(HandlerError::new(format!(
                        "a raw handler answered in codec {codec:?}; \
                         answer in \"postcard\", \"json\" or \"bytes\""
                    )))
                }
            };
            Ok(Payload::new(codec, Bytes::from_owner(bytes)))
        }
        Ok((Some(kind), message, RawTail::Detail(detail))) => Err(failed(&kind, message, detail)),
        Ok(_) => Err(HandlerError::new(
            "the Python raw handler wrapper returned a malformed outcome",
        )),
        Err(e) => Err(wrapper_failed(e)),
    }
}

/// Runs a wrapped Python handler on a call's arguments (JSON or bytes); a
/// byte-string result is answered in bytes, anything else in JSON (§4.1).
fn run(handler: &Py<PyAny>, args: Payload, ctx: &CallContext) -> Result<Payload, HandlerError> {
    let args = Answer::from_payload(args).map_err(|_| {
        HandlerError::with_kind(
            ErrorKind::BadArguments,
            "a Python handler takes JSON or bytes arguments (codec 1 or 2), \
             not postcard: a Rust caller sets \
             `Config::named(..).call_codec(Codec::Json)`, and \
             one exposed with expose_raw takes postcard as it came",
        )
    })?;
    run_wrapped(handler, args, ctx, true).map(Data::into_payload)
}

/// Exposes `name` in `handlers`, answered by a wrapped Python function on
/// the pool (Python code may block: never on a connection's reading thread):
/// with the arguments decoded, or as they came if `raw`.
pub(crate) fn expose_python(
    handlers: &mut Handlers,
    name: &str,
    handler: Py<PyAny>,
    raw: bool,
) -> Result<(), rigwire_std::Error> {
    if raw {
        handlers.expose_raw(name, move |ctx, args| run_raw(&handler, args, ctx))?;
    } else {
        handlers.expose_raw(name, move |ctx, args| run(&handler, args, ctx))?;
    }
    handlers.dispatch(name, Dispatch::Pool)?;
    Ok(())
}

/// Runs a lifecycle hook (a wrapped Python function) on the step's
/// argument as JSON text; its result is ignored.
fn hook(f: &Py<PyAny>, arg: String, ctx: &CallContext) -> Result<(), HandlerError> {
    run_wrapped(f, Answer::Json(arg), ctx, false).map(drop)
}

/// Calls a connection hook with the GIL taken; its exception goes to
/// `sys.unraisablehook` (the connection carries on).
fn call_hook<A>(hook: &Py<PyAny>, args: A)
where
    A: for<'py> pyo3::call::PyCallArgs<'py>,
{
    // While Python exits, the hook is not run.
    crate::exit::attach(|py| {
        if let Err(e) = hook.call1(py, args) {
            e.write_unraisable(py, Some(hook.bind(py)));
        }
    });
}

impl NativeServer {
    /// Changes the listener before it serves.
    fn bound(&self, f: impl FnOnce(&mut Server)) -> PyResult<()> {
        match &mut *lock(&self.listening) {
            Listening::Bound(server) => {
                f(server);
                Ok(())
            }
            _ => Err(PyRuntimeError::new_err(
                "set hooks before serving, on a server with a listener",
            )),
        }
    }

    fn edit<T>(
        &self,
        f: impl FnOnce(&mut Handlers) -> Result<T, rigwire_std::Error>,
    ) -> PyResult<T> {
        if self.serving() {
            return Err(PyRuntimeError::new_err(
                "expose names before serving; the server already serves them",
            ));
        }
        f(&mut lock(&self.handlers)).map_err(|e| Python::attach(|py| to_py(py, e)))
    }
}

#[pymethods]
impl NativeServer {
    /// The URL listened on, with the real port (`None` without a listener).
    #[getter]
    fn url(&self) -> Option<String> {
        self.url.clone()
    }

    /// What to warn the operator of: listening beyond this machine without
    /// a shared secret (anyone who reaches the server may call every
    /// method), or in clear with a certificate given.
    #[getter]
    fn listening_warnings(&self) -> Vec<String> {
        let url = self.url.as_deref().map(rigwire_std::Url::parse);
        match url {
            Some(Ok(url)) => self.config.listening_warnings(&url),
            _ => Vec::new(),
        }
    }

    /// The SHA-256 fingerprint of the TLS certificate served (`tls://`,
    /// `wss://`), for clients to pin; `None` without TLS.
    #[getter]
    fn fingerprint(&self) -> Option<String> {
        match &*lock(&self.listening) {
            Listening::Bound(server) => server.tls_fingerprint(),
            Listening::Running(server) => server.tls_fingerprint(),
            Listening::None => None,
        }
    }

    /// Exposes `name`, answered by `handler` (the package's wrapper, called
    /// with the arguments' JSON text or `bytes`; with `raw`, with the
    /// codec's name and the payload's bytes), on the pool.
    #[pyo3(signature = (name, handler, raw=false))]
    fn expose(&self, name: &str, handler: Py<PyAny>, raw: bool) -> PyResult<()> {
        self.edit(|handlers| expose_python(handlers, name, handler, raw))
    }

    /// Makes `alias` reach the method exposed as `name`.
    fn alias(&self, alias: &str, name: &str) -> PyResult<()> {
        self.edit(|handlers| handlers.alias(alias, name).map(drop))
    }

    /// Describes `name` for `rigwire.methods` (its arguments and result).
    fn describe(&self, name: &str, signature: &str) -> PyResult<()> {
        self.edit(|handlers| handlers.describe(name, signature).map(drop))
    }

    /// Exposes the standard experiment lifecycle (`exp.*`) with these hooks
    /// (wrapped Python functions, each optional): init gets its data, start
    /// the experiment reference, stop whether to interrupt, all as JSON text.
    #[pyo3(signature = (on_init=None, on_start=None, on_stop=None, on_cleanup=None))]
    fn expose_lifecycle(
        &self,
        on_init: Option<Py<PyAny>>,
        on_start: Option<Py<PyAny>>,
        on_stop: Option<Py<PyAny>>,
        on_cleanup: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let mut service = RigService::new();
        if let Some(f) = on_init {
            service = service.on_init(move |ctx, data| {
                let json = serde_json::to_string(&data.0).unwrap_or_else(|_| "null".into());
                hook(&f, json, ctx)
            });
        }
        if let Some(f) = on_start {
            service = service.on_start(move |ctx, exp_ref| {
                let json = serde_json::to_string(&exp_ref.to_string()).unwrap_or_default();
                hook(&f, json, ctx)
            });
        }
        if let Some(f) = on_stop {
            service =
                service.on_stop(move |ctx, immediately| hook(&f, immediately.to_string(), ctx));
        }
        if let Some(f) = on_cleanup {
            service = service.on_cleanup(move |ctx| hook(&f, "null".into(), ctx));
        }
        self.edit(|handlers| service.expose(handlers).map(drop))
    }

    /// Runs `hook` (the package's wrapper, called with the peer as a
    /// `NativeClient`) when a peer has connected to the listener.
    fn on_connect(&self, hook: Py<PyAny>) -> PyResult<()> {
        self.bound(|server| {
            server.on_connect(move |peer| call_hook(&hook, (NativeClient::caller(peer.clone()),)));
        })
    }

    /// Runs `hook` (the package's wrapper, called with the peer as a
    /// `NativeClient` and the reason as text) when a peer's connection to
    /// the listener has closed; only for peers `on_connect` ran for.
    fn on_disconnect(&self, hook: Py<PyAny>) -> PyResult<()> {
        self.bound(|server| {
            server.on_disconnect(move |peer, why| {
                call_hook(&hook, (NativeClient::caller(peer.clone()), why.reason()))
            });
        })
    }

    /// Starts serving on the listener, in the background.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let mut listening = lock(&self.listening);
        match std::mem::replace(&mut *listening, Listening::None) {
            Listening::Bound(mut server) => {
                *server.handlers_mut() = lock(&self.handlers).clone();
                let running = py.detach(|| (*server).start()).map_err(|e| to_py(py, e))?;
                *listening = Listening::Running(running);
                Ok(())
            }
            other => {
                let no_relay = lock(&self.services).is_empty();
                let why = match (&other, &self.url, no_relay) {
                    (Listening::Running(_), ..) => "serving already",
                    (_, Some(_), _) => "the server has shut down",
                    (_, None, false) => {
                        "nothing to start: a server made with no URL serves only through \
                         its relay (serve_via), which it does"
                    }
                    (_, None, true) => {
                        "nothing to serve on: a server made with no URL listens nowhere; \
                         serve it through a relay with serve_via(relay_url, as_=NAME), or \
                         give it a URL to listen on"
                    }
                };
                *listening = other;
                Err(PyRuntimeError::new_err(why))
            }
        }
    }

    /// Whether it serves: listening, or through a relay.
    fn serving(&self) -> bool {
        matches!(&*lock(&self.listening), Listening::Running(_)) || !lock(&self.services).is_empty()
    }

    /// Dials the relay's services URL and registers `names` there; the
    /// methods are then reachable as `NAME.method` through the relay, across
    /// its restarts, until shutdown.
    fn serve_via(&self, py: Python<'_>, relay_url: &str, names: Vec<String>) -> PyResult<()> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut service = RemoteService::new(&names, self.config.clone());
        *service.handlers_mut() = lock(&self.handlers).clone();
        let running = py
            .detach(|| service.connect(relay_url))
            .map_err(|e| to_py(py, e))?;
        lock(&self.services).push(running);
        Ok(())
    }

    /// Notifies every peer connected to the listener with `args` (JSON
    /// text or `bytes`), and every relay it serves through, which passes
    /// it on to the clients following the service; returns how many it
    /// reached (a relay counts once).
    fn broadcast(&self, py: Python<'_>, method: &str, args: Data) -> PyResult<usize> {
        let args = args.into_payload();
        let relays: Vec<_> = lock(&self.services)
            .iter()
            .filter_map(|s| s.peer())
            .collect();
        let listening = lock(&self.listening);
        let running = match &*listening {
            Listening::Running(running) => Some(running),
            other if relays.is_empty() => {
                let why = match (other, &self.url) {
                    (Listening::Bound(_), _) => {
                        "the server has not started: start() or serve_forever() it first"
                    }
                    (_, Some(_)) => "the server has shut down",
                    _ => "the server is neither listening nor serving through a relay",
                };
                return Err(PyRuntimeError::new_err(why));
            }
            _ => None,
        };
        py.detach(|| {
            let mut reached = match running {
                Some(running) => running.broadcast_raw(method, args.clone())?,
                None => 0,
            };
            for relay in relays {
                if relay.notify_raw(method, args.clone()).is_ok() {
                    reached += 1;
                }
            }
            Ok(reached)
        })
        .map_err(|e| to_py(py, e))
    }

    /// How many peers are connected to the listener now.
    fn peer_count(&self) -> usize {
        match &*lock(&self.listening) {
            Listening::Running(running) => running.peers().len(),
            _ => 0,
        }
    }

    /// Stops accepting, lets calls in progress finish for up to `grace`
    /// seconds, says goodbye to every peer, and leaves every relay. Extra
    /// calls do nothing.
    #[pyo3(signature = (grace=5.0))]
    fn shutdown(&self, py: Python<'_>, grace: f64) -> PyResult<()> {
        let grace = duration("grace", grace)?;
        let services = std::mem::take(&mut *lock(&self.services));
        let listening = std::mem::replace(&mut *lock(&self.listening), Listening::None);
        // Handlers still running need the GIL to finish. Every relay's
        // service and the listener drain at once, each within `grace`.
        py.detach(|| {
            std::thread::scope(|scope| {
                for service in services {
                    // With no thread to drain on, it is dropped: closed at once.
                    let _ = std::thread::Builder::new()
                        .name("rigwire-stop".into())
                        .spawn_scoped(scope, move || service.shutdown(grace));
                }
                if let Listening::Running(running) = listening {
                    running.shutdown(grace);
                }
            })
        });
        Ok(())
    }
}
