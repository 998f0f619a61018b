//! rigwire's errors as the Python exceptions of `rigwire.errors`, which
//! the package defines (so that `DeadlineExceeded` can also be a
//! `TimeoutError`, and `Disconnected` a `ConnectionError`).

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rigwire_std::core::AuthFailure;
use rigwire_std::{Error, ErrorKind};

/// The Python exception for `err`, from `rigwire.errors`.
pub(crate) fn to_py(py: Python<'_>, err: Error) -> PyErr {
    // If the package's errors module is broken, that error is the one to see.
    build(py, &err, None).unwrap_or_else(|e| e)
}

/// What a call of `method` with deadline `timeout` (`None`: not known
/// here) failed with: as [`to_py`], but a `DeadlineExceeded` of the call's
/// own deadline names the call and how long it had.
pub(crate) fn call_failed(
    py: Python<'_>,
    err: Error,
    method: &str,
    timeout: Option<Duration>,
) -> PyErr {
    let words = err.describe_call(method, timeout);
    build(py, &err, Some(words)).unwrap_or_else(|e| e)
}

/// `err` as its `rigwire.errors` class, with `words` in place of its own
/// text when given (for an error that is not the peer's).
fn build(py: Python<'_>, err: &Error, words: Option<String>) -> PyResult<PyErr> {
    let (class, kind, message, detail) = match err {
        Error::Remote(remote) => {
            let class = match remote.kind {
                ErrorKind::NoSuchMethod => "NoSuchMethod",
                ErrorKind::Unavailable => "Unavailable",
                ErrorKind::Busy => "Busy",
                ErrorKind::DeadlineExceeded => "DeadlineExceeded",
                _ => "RemoteError",
            };
            let kind = Some(remote.kind.to_string());
            (class, kind, remote.message.clone(), remote.detail.clone())
        }
        other => {
            let class = match other {
                Error::DeadlineExceeded | Error::WaitTimeout(_) => "DeadlineExceeded",
                Error::Disconnected(_) => "Disconnected",
                Error::Connect { .. } => "ConnectFailed",
                Error::Bind { .. } => "ListenFailed",
                Error::Tls(_) => "TlsFailed",
                Error::AuthFailed(_) => "AuthenticationFailed",
                Error::Rejected { .. } | Error::VersionMismatch { .. } => "Rejected",
                Error::Busy(_) => "Busy",
                Error::TooLarge { .. } => "TooLarge",
                Error::InvalidUrl { .. } => "InvalidUrl",
                Error::Config(_) => "InvalidConfig",
                _ => "Error",
            };
            let mut message = words.unwrap_or_else(|| other.to_string());
            message.push_str(&secret_hint(other));
            (class, None, message, None)
        }
    };
    let class = py.import("rigwire.errors")?.getattr(class)?;
    let args = PyTuple::new(
        py,
        [
            message.into_pyobject(py)?.into_any(),
            kind.into_pyobject(py)?.into_any(),
            detail.into_pyobject(py)?.into_any(),
        ],
    )?;
    Ok(PyErr::from_value(class.call1(args)?))
}

/// For a peer that wants a secret we were not given, while `RIGWIRE_SECRET`
/// is set: the `rigwire` command reads it, the package does not (a secret
/// is passed, not found), which a lab that exports it for the command
/// would not guess.
fn secret_hint(err: &Error) -> String {
    let unset = !matches!(err, Error::AuthFailed(AuthFailure::NoSecretConfigured));
    if unset || std::env::var_os("RIGWIRE_SECRET").is_none() {
        return String::new();
    }
    " (RIGWIRE_SECRET is set, but only the rigwire command reads it: pass \
     secret_file=... or secret=os.environ[\"RIGWIRE_SECRET\"])"
        .to_owned()
}

/// `rigwire.errors.Cancelled`: the handle's call was cancelled, so there is
/// no result (a `concurrent.futures.CancelledError` too).
pub(crate) fn cancelled(py: Python<'_>) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let class = py.import("rigwire.errors")?.getattr("Cancelled")?;
        Ok(PyErr::from_value(class.call1(("the call was cancelled",))?))
    };
    build().unwrap_or_else(|e| e)
}
