//! The iblutil.io.net dialect from Python: rigwire-smol's `IblPeer` and
//! `IblGroup` (JSON arrays over UDP or TCP, each confirmed by its echo), run
//! to completion on smol's executor with the GIL released. Values cross as
//! JSON text; events by iblutil's names (`EXPINIT`, ...).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rigwire_smol::{Error, IblEvent, IblGroup, IblMessage, IblPeer};
use serde_json::Value;

use crate::client::duration;
use crate::errors::to_py;
use crate::waiting::on_smol;

/// A message as Python receives it: the event's name and the fields' JSON text.
type Received = (String, String);

/// `(event, fields as a JSON array)`.
fn received(message: &IblMessage) -> Received {
    (
        message.event.to_string(),
        serde_json::to_string(&message.fields).unwrap_or_else(|_| "[]".into()),
    )
}

fn value(text: &str) -> PyResult<Value> {
    serde_json::from_str(text).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// An iblutil event from its name (`"EXPINIT"`) or code (`"1"`).
fn event(name: &str) -> PyResult<IblEvent> {
    IblEvent::ALL
        .into_iter()
        .find(|e| e.to_string() == name || e.code().to_string() == name)
        .ok_or_else(|| PyValueError::new_err(format!("no iblutil event {name:?}")))
}

/// A client of one iblutil rig (`udp://` or `tcp://`).
#[pyclass(module = "rigwire._rigwire", frozen)]
pub(crate) struct NativeIblPeer {
    inner: IblPeer,
}

/// Connects to the iblutil rig at `url`; each send waits up to
/// `echo_timeout` seconds for its echo (iblutil's default is 1 s).
#[pyfunction]
#[pyo3(signature = (url, echo_timeout=1.0))]
pub(crate) fn ibl_connect(py: Python<'_>, url: &str, echo_timeout: f64) -> PyResult<NativeIblPeer> {
    let echo = duration("echo_timeout", echo_timeout)?;
    let peer = on_smol(py, IblPeer::connect(url))?.map_err(|e| to_py(py, e))?;
    Ok(NativeIblPeer {
        inner: peer.with_echo_timeout(echo),
    })
}

/// Runs a confirmed send to completion with the GIL released.
fn send(
    py: Python<'_>,
    send: impl std::future::Future<Output = Result<(), Error>> + Send,
) -> PyResult<()> {
    on_smol(py, send)?.map_err(|e| to_py(py, e))
}

impl NativeIblPeer {
    /// Waits for the next message (or, with `answer`, the answer to that
    /// event), up to `timeout` seconds; Ctrl-C ends the wait.
    fn wait(&self, py: Python<'_>, timeout: f64, answer: Option<IblEvent>) -> PyResult<Received> {
        let timeout = duration("timeout", timeout)?;
        // Taking a message is all-or-nothing: an interrupted wait loses none.
        let got = on_smol(py, async {
            match answer {
                Some(event) => self.inner.wait_answer(event, timeout).await,
                None => self.inner.next_message(timeout).await,
            }
        })?;
        got.map(|(_, message)| received(&message))
            .map_err(|e| to_py(py, e))
    }
}

#[pymethods]
impl NativeIblPeer {
    /// The rig's URL.
    #[getter]
    fn url(&self) -> String {
        self.inner.url()
    }

    /// `[1, data]`, confirmed.
    fn init(&self, py: Python<'_>, data: &str) -> PyResult<()> {
        let data = value(data)?;
        send(py, self.inner.init(data))
    }

    /// `[2, exp_ref, data]`, confirmed.
    fn start(&self, py: Python<'_>, exp_ref: &str, data: &str) -> PyResult<()> {
        let data = value(data)?;
        send(py, self.inner.start(exp_ref, data))
    }

    /// `[4, data]`, or `[16, data]` when `immediately`, confirmed.
    fn stop(&self, py: Python<'_>, data: &str, immediately: bool) -> PyResult<()> {
        let data = value(data)?;
        send(py, self.inner.stop(data, immediately))
    }

    /// `[8, data]`, confirmed.
    fn cleanup(&self, py: Python<'_>, data: &str) -> PyResult<()> {
        let data = value(data)?;
        send(py, self.inner.cleanup(data))
    }

    /// `[32, status]`, confirmed.
    fn status(&self, py: Python<'_>, status: &str) -> PyResult<()> {
        let status = value(status)?;
        send(py, self.inner.status(status))
    }

    /// `[64, status, data]`, confirmed.
    fn info(&self, py: Python<'_>, status: &str, data: &str) -> PyResult<()> {
        let (status, data) = (value(status)?, value(data)?);
        send(py, self.inner.info(status, data))
    }

    /// The next message (already echoed), waiting up to `timeout` seconds.
    fn next_message(&self, py: Python<'_>, timeout: f64) -> PyResult<Received> {
        self.wait(py, timeout, None)
    }

    /// The rig's answer to `event`: its next message of that event, or its
    /// error report for it (raised as a `RemoteError`).
    fn wait_answer(&self, py: Python<'_>, event_name: &str, timeout: f64) -> PyResult<Received> {
        self.wait(py, timeout, Some(event(event_name)?))
    }

    /// Closes the socket.
    fn close(&self) {
        self.inner.close();
    }
}

/// iblutil's `Services`: several rigs, each step on all at once, each rig's
/// answer (or error) by name.
#[pyclass(module = "rigwire._rigwire", frozen)]
pub(crate) struct NativeIblServices {
    inner: IblGroup,
}

/// Connects to every rig of `rigs` (name, URL); each step waits up to
/// `timeout` seconds for each rig's answer.
#[pyfunction]
#[pyo3(signature = (rigs, timeout=10.0, echo_timeout=1.0))]
pub(crate) fn ibl_services(
    py: Python<'_>,
    rigs: Vec<(String, String)>,
    timeout: f64,
    echo_timeout: f64,
) -> PyResult<NativeIblServices> {
    let timeout = duration("timeout", timeout)?;
    let mut peers = Vec::new();
    for (name, url) in rigs {
        let peer = ibl_connect(py, &url, echo_timeout)?;
        peers.push((name, peer.inner));
    }
    let inner = IblGroup::new(peers, timeout).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(NativeIblServices { inner })
}

/// Each rig's outcome: its answer, or the exception it failed with.
type Outcome = (String, Option<Received>, Option<Py<PyAny>>);

fn outcomes(py: Python<'_>, results: rigwire_smol::GroupResults<IblMessage>) -> Vec<Outcome> {
    results
        .into_iter()
        .map(|(rig, outcome)| match outcome {
            Ok(message) => (rig, Some(received(&message)), None),
            Err(e) => (rig, None, Some(to_py(py, e).into_value(py).into_any())),
        })
        .collect()
}

#[pymethods]
impl NativeIblServices {
    /// The rigs' names, in order.
    fn names(&self) -> Vec<String> {
        self.inner.names()
    }

    /// `init` on every rig.
    fn init(&self, py: Python<'_>, data: &str) -> PyResult<Vec<Outcome>> {
        let data = value(data)?;
        Ok(outcomes(py, on_smol(py, self.inner.init(data))?))
    }

    /// `start` on every rig.
    fn start(&self, py: Python<'_>, exp_ref: &str, data: &str) -> PyResult<Vec<Outcome>> {
        let data = value(data)?;
        Ok(outcomes(py, on_smol(py, self.inner.start(exp_ref, data))?))
    }

    /// `stop` on every rig (an interrupt if `immediately`).
    fn stop(&self, py: Python<'_>, data: &str, immediately: bool) -> PyResult<Vec<Outcome>> {
        let data = value(data)?;
        Ok(outcomes(
            py,
            on_smol(py, self.inner.stop(data, immediately))?,
        ))
    }

    /// `cleanup` on every rig.
    fn cleanup(&self, py: Python<'_>, data: &str) -> PyResult<Vec<Outcome>> {
        let data = value(data)?;
        Ok(outcomes(py, on_smol(py, self.inner.cleanup(data))?))
    }

    /// `status` on every rig.
    fn status(&self, py: Python<'_>, status: &str) -> PyResult<Vec<Outcome>> {
        let status = value(status)?;
        Ok(outcomes(py, on_smol(py, self.inner.status(status))?))
    }

    /// `info` on every rig.
    fn info(&self, py: Python<'_>, status: &str, data: &str) -> PyResult<Vec<Outcome>> {
        let (status, data) = (value(status)?, value(data)?);
        Ok(outcomes(py, on_smol(py, self.inner.info(status, data))?))
    }
}
