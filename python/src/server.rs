//! Serving from Python: a rigwire-std server whose handlers are Python
//! callables. A handler runs on the server's pool (never on a connection's
//! reading thread, since Python code may block), taking the GIL only while
//! it runs; arguments and results cross as JSON text, which the package's
//! wrapper turns into Python values and back.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use rigwire_std::core::{Codec, ErrorKind};
use rigwire_std::{Dispatch, HandlerError, Payload, RunningServer, Server};

use crate::client::{config, seconds};
use crate::errors::to_py;

enum State {
    /// Bound, handlers being exposed.
    Bound(Box<Server>),
    Running(RunningServer),
    Stopped,
}

/// A server: bound at creation, serving once started.
#[pyclass(module = "rigwire._rigwire", frozen)]
pub(crate) struct NativeServer {
    state: Mutex<State>,
    url: String,
}

/// Binds `url` as `name` (port 0 picks a free port), with a shared secret
/// as for `connect`.
#[pyfunction]
#[pyo3(signature = (url, name, secret=None, secret_file=None))]
pub(crate) fn serve(
    py: Python<'_>,
    url: &str,
    name: &str,
    secret: Option<Vec<u8>>,
    secret_file: Option<PathBuf>,
) -> PyResult<NativeServer> {
    let config = config(name, secret, secret_file, None)?;
    let server = Server::bind(url, config).map_err(|e| to_py(py, e))?;
    Ok(NativeServer {
        url: server.local_url(),
        state: Mutex::new(State::Bound(Box::new(server))),
    })
}

/// What the package's handler wrapper returns: `(None, result_json)` on
/// success, `(kind, message, detail)` on failure.
type Outcome = (Option<String>, String, Option<String>);

fn kind_of(name: &str) -> ErrorKind {
    match name {
        "BadArguments" => ErrorKind::BadArguments,
        "Busy" => ErrorKind::Busy,
        "Unavailable" => ErrorKind::Unavailable,
        "Refused" => ErrorKind::Refused,
        _ => ErrorKind::Handler,
    }
}

/// Runs the wrapped Python handler on `args`, with the GIL.
fn run(handler: &Py<PyAny>, args: Payload) -> Result<Payload, HandlerError> {
    if args.codec != Codec::Json {
        return Err(HandlerError::with_kind(
            ErrorKind::BadArguments,
            "a Python handler takes JSON arguments (codec 1)",
        ));
    }
    let text = String::from_utf8(args.bytes.to_vec())
        .map_err(|e| HandlerError::with_kind(ErrorKind::BadArguments, e.to_string()))?;
    let outcome: PyResult<Outcome> = Python::attach(|py| handler.call1(py, (text,))?.extract(py));
    match outcome {
        Ok((None, json, _)) => Ok(Payload::new(Codec::Json, json.into_bytes())),
        Ok((Some(kind), message, detail)) => {
            let err = HandlerError::with_kind(kind_of(&kind), message);
            Err(match detail {
                Some(d) => err.detail(d),
                None => err,
            })
        }
        // The wrapper itself failed (it catches the handler's exceptions).
        Err(e) => Err(HandlerError::new(format!(
            "the Python handler wrapper failed: {e}"
        ))),
    }
}

impl NativeServer {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bound<T>(
        &self,
        f: impl FnOnce(&mut Server) -> Result<T, rigwire_std::Error>,
    ) -> PyResult<T> {
        match &mut *self.state() {
            State::Bound(server) => f(server).map_err(|e| Python::attach(|py| to_py(py, e))),
            _ => Err(PyRuntimeError::new_err(
                "expose names before start(); the server is already serving",
            )),
        }
    }
}

#[pymethods]
impl NativeServer {
    /// The URL listened on, with the real port.
    #[getter]
    fn url(&self) -> String {
        self.url.clone()
    }

    /// Exposes `name`, answered by `handler` (the package's wrapper, called
    /// with the arguments' JSON text), on the pool.
    fn expose(&self, name: &str, handler: Py<PyAny>) -> PyResult<()> {
        self.bound(|server| {
            server.expose_raw(name, move |_ctx, args| run(&handler, args))?;
            server.dispatch(name, Dispatch::Pool)?;
            Ok(())
        })
    }

    /// Makes `alias` reach the method exposed as `name`.
    fn alias(&self, alias: &str, name: &str) -> PyResult<()> {
        self.bound(|server| server.alias(alias, name).map(|_| ()))
    }

    /// Describes `name` for `rigwire.methods` (its arguments and result).
    fn describe(&self, name: &str, signature: &str) -> PyResult<()> {
        self.bound(|server| server.describe(name, signature).map(|_| ()))
    }

    /// Starts serving on background threads.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let mut state = self.state();
        match std::mem::replace(&mut *state, State::Stopped) {
            State::Bound(server) => {
                let running = py.detach(|| (*server).start()).map_err(|e| to_py(py, e))?;
                *state = State::Running(running);
                Ok(())
            }
            other => {
                *state = other;
                Err(PyRuntimeError::new_err("the server was started already"))
            }
        }
    }

    /// Notifies every connected peer with `args` (JSON text); returns how
    /// many it reached.
    fn broadcast(&self, py: Python<'_>, method: &str, args: String) -> PyResult<usize> {
        match &*self.state() {
            State::Running(running) => py
                .detach(|| {
                    running.broadcast_raw(method, Payload::new(Codec::Json, args.into_bytes()))
                })
                .map_err(|e| to_py(py, e)),
            _ => Err(PyRuntimeError::new_err("the server is not serving")),
        }
    }

    /// How many peers are connected now.
    fn peer_count(&self) -> usize {
        match &*self.state() {
            State::Running(running) => running.peers().len(),
            _ => 0,
        }
    }

    /// Stops accepting, lets calls in progress finish for up to `grace`
    /// seconds, then says goodbye to every peer. Extra calls do nothing.
    #[pyo3(signature = (grace=5.0))]
    fn shutdown(&self, py: Python<'_>, grace: f64) -> PyResult<()> {
        let grace = seconds("grace", Some(grace))?.unwrap_or(Duration::ZERO);
        let previous = std::mem::replace(&mut *self.state(), State::Stopped);
        if let State::Running(running) = previous {
            // Handlers still running need the GIL to finish.
            py.detach(|| running.shutdown(grace));
        }
        Ok(())
    }
}
