//! Groups of rigs from Python: rigwire-std's `Group`, whose steps run on
//! every rig at once (in reverse order for stop and cleanup, by the core's
//! group plan), with each rig's answer or error kept by name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rigwire_std::core::{ExpRef, GroupOrder, GroupStep, InitData};
use rigwire_std::{Group, GroupError, Payload};

use crate::client::{config, duration, seconds, NativeClient, Tls};
use crate::data::{Answer, Data};
use crate::errors::{call_failed, to_py};
use crate::waiting::{asking, interruptible};

/// One rig's outcome as Python receives it: its answer as `str` (JSON) or
/// `bytes`, or the exception it failed with.
type RawOutcome = (String, Option<Py<PyAny>>, Option<Py<PyAny>>);

/// Several rigs, addressed together.
#[pyclass(module = "rigwire._rigwire", frozen)]
pub(crate) struct NativeGroup {
    inner: Arc<Group>,
    /// The deadline of a call made without one, for the words of its
    /// `DeadlineExceeded`.
    default_timeout: Option<Duration>,
}

/// `rigwire.errors.GroupError` for `err`, with `failed` (rig name to
/// exception) and `missing` (the rigs that did not answer in time).
fn group_error(py: Python<'_>, err: GroupError) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let failed = PyDict::new(py);
        let mut missing = Vec::new();
        match &err {
            GroupError::Failed { failed: f, .. } => {
                for (rig, e) in f {
                    failed.set_item(rig, to_py(py, e.clone()).into_value(py))?;
                }
            }
            GroupError::Timeout { missing: m, .. } => missing.clone_from(m),
            GroupError::Lost {
                lost, missing: m, ..
            } => {
                for (rig, e) in lost {
                    failed.set_item(rig, to_py(py, e.clone()).into_value(py))?;
                }
                missing.clone_from(m);
            }
            _ => {}
        }
        let class = py.import("rigwire.errors")?.getattr("GroupError")?;
        let value = class.call1((err.to_string(), failed, missing))?;
        Ok(PyErr::from_value(value))
    };
    build().unwrap_or_else(|e| e)
}

/// Connects to every rig of `rigs` (name, URL) at once, with the settings
/// of `connect`.
#[pyfunction]
#[pyo3(signature = (rigs, name, secret=None, secret_file=None, timeout=None, tls=Tls::default(), reconnect=false, max_frame=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn connect_group(
    py: Python<'_>,
    rigs: Vec<(String, String)>,
    name: &str,
    secret: Option<Vec<u8>>,
    secret_file: Option<PathBuf>,
    timeout: Option<f64>,
    tls: Tls,
    reconnect: bool,
    max_frame: Option<Bound<'_, PyAny>>,
) -> PyResult<NativeGroup> {
    let mut config = config(name, secret, secret_file, timeout, tls, max_frame)?;
    config.reconnect = reconnect.then(rigwire_std::Reconnect::default);
    let default_timeout = config.protocol.default_call_timeout;
    let inner = interruptible(py, move || {
        let pairs: Vec<(&str, &str)> = rigs.iter().map(|(n, u)| (n.as_str(), u.as_str())).collect();
        Group::connect(&pairs, &config)
    })?
    .map_err(|e| group_error(py, e))?;
    Ok(NativeGroup {
        inner: Arc::new(inner),
        default_timeout,
    })
}

/// Checks an experiment reference (`yyyy-mm-dd_n_subject`) as the rigs
/// will; returns it, or raises `ValueError` saying what is wrong.
#[pyfunction]
pub(crate) fn exp_ref(text: &str) -> PyResult<String> {
    text.parse::<ExpRef>()
        .map(|r| r.to_string())
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

impl NativeGroup {
    /// Calls `method` with `args` on every rig in `order`, waiting with the
    /// GIL released; Ctrl-C (any signal handler's exception) cancels the
    /// calls still in flight and raises. Each rig's answer is JSON text or
    /// `bytes`, or its exception.
    fn run(
        &self,
        py: Python<'_>,
        (order, method, args): (GroupOrder, &str, Payload),
        timeout: Option<Duration>,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<RawOutcome>> {
        let results = asking(py, go_on, |go_on| {
            self.inner
                .call_raw_while(order, method, args, timeout, go_on)
        })?;
        let timeout = timeout.or(self.default_timeout);
        let failed = |e| {
            Some(
                call_failed(py, e, method, timeout)
                    .into_value(py)
                    .into_any(),
            )
        };
        Ok(results
            .and_then(Answer::from_payload)
            .into_iter()
            .map(|(rig, outcome)| match outcome {
                Ok(answer) => (rig, Some(answer.into_py(py)), None),
                Err(e) => (rig, None, failed(e)),
            })
            .collect())
    }

    /// Runs one lifecycle step, as [`run`](Self::run) does a call.
    fn step(
        &self,
        py: Python<'_>,
        step: GroupStep,
        timeout: Option<f64>,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<RawOutcome>> {
        let timeout = seconds("timeout", timeout)?;
        let call = (step.order, step.method, step.json_args);
        self.run(py, call, timeout, go_on)
    }
}

#[pymethods]
impl NativeGroup {
    /// The rigs' names, in the group's order.
    fn names(&self) -> Vec<String> {
        self.inner.names()
    }

    /// A client of one rig, on the group's own connection to it.
    ///
    /// # Errors
    /// `KeyError` for a name the group does not hold, naming those it does.
    fn rig(&self, name: &str) -> PyResult<NativeClient> {
        if self.inner.rig(name).is_err() {
            let names = self.inner.names().join(", ");
            return Err(PyKeyError::new_err(format!(
                "no rig '{name}' in this group: {names}"
            )));
        }
        let group = Arc::clone(&self.inner);
        Ok(NativeClient::rig_of(
            group,
            name.to_owned(),
            self.default_timeout,
        ))
    }

    /// `exp.init` on every rig at once, with `data` (a JSON object's text) if given.
    #[pyo3(signature = (data=None, timeout=None, go_on=None))]
    fn init(
        &self,
        py: Python<'_>,
        data: Option<String>,
        timeout: Option<f64>,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<RawOutcome>> {
        let data = match data {
            Some(text) => InitData(Some(
                serde_json::from_str(&text).map_err(|e| PyValueError::new_err(e.to_string()))?,
            )),
            None => InitData::default(),
        };
        self.step(py, GroupStep::init(&data), timeout, go_on)
    }

    /// `exp.start` with the experiment reference, on every rig at once.
    #[pyo3(signature = (exp_ref, timeout=None, go_on=None))]
    fn start(
        &self,
        py: Python<'_>,
        exp_ref: &str,
        timeout: Option<f64>,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<RawOutcome>> {
        let exp_ref: ExpRef =
            exp_ref
                .parse()
                .map_err(|e: rigwire_std::core::lifecycle::ExpRefError| {
                    PyValueError::new_err(e.to_string())
                })?;
        self.step(py, GroupStep::start(&exp_ref), timeout, go_on)
    }

    /// `exp.stop` (an interrupt if `immediately`), rigs in reverse order.
    #[pyo3(signature = (immediately=false, timeout=None, go_on=None))]
    fn stop(
        &self,
        py: Python<'_>,
        immediately: bool,
        timeout: Option<f64>,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<RawOutcome>> {
        self.step(py, GroupStep::stop(immediately), timeout, go_on)
    }

    /// `exp.cleanup`, rigs in reverse order.
    #[pyo3(signature = (timeout=None, go_on=None))]
    fn cleanup(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<RawOutcome>> {
        self.step(py, GroupStep::cleanup(), timeout, go_on)
    }

    /// `exp.status` of every rig.
    #[pyo3(signature = (timeout=None, go_on=None))]
    fn status(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<RawOutcome>> {
        self.step(py, GroupStep::status(), timeout, go_on)
    }

    /// `exp.info` of every rig: its status and experiment.
    #[pyo3(signature = (timeout=None, go_on=None))]
    fn info(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<RawOutcome>> {
        self.step(py, GroupStep::info(), timeout, go_on)
    }

    /// Calls `method` on every rig with `args` (JSON text or `bytes`), in
    /// `order`: `"concurrent"` (all at once), `"in_order"` or `"reverse"`;
    /// each rig's answer is JSON text or `bytes`, or its exception. Ctrl-C
    /// cancels the calls in flight, and so does `go_on` (called about every
    /// 50 ms while it waits) returning false.
    #[pyo3(signature = (order, method, args, timeout=None, go_on=None))]
    fn call(
        &self,
        py: Python<'_>,
        order: &str,
        method: &str,
        args: Data,
        timeout: Option<f64>,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<RawOutcome>> {
        let timeout = seconds("timeout", timeout)?;
        let order = match order {
            "concurrent" => GroupOrder::Concurrent,
            "in_order" => GroupOrder::InOrder,
            "reverse" => GroupOrder::Reverse,
            other => return Err(PyValueError::new_err(format!("no group order {other:?}"))),
        };
        self.run(py, (order, method, args.into_payload()), timeout, go_on)
    }

    /// Waits until every rig has reported `event` (`exp.event`), up to
    /// `timeout` seconds; returns each rig's detail. Ctrl-C, or `go_on`
    /// returning false, ends the wait.
    #[pyo3(signature = (event, timeout, go_on=None))]
    fn wait_event(
        &self,
        py: Python<'_>,
        event: &str,
        timeout: f64,
        go_on: Option<Py<PyAny>>,
    ) -> PyResult<Vec<(String, String)>> {
        let timeout = duration("timeout", timeout)?;
        asking(py, go_on, |go_on| {
            self.inner.wait_event_while(event, timeout, go_on)
        })?
        .map_err(|e| group_error(py, e))
    }

    /// Closes every connection.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.close());
    }
}
