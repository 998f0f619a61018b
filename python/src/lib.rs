//! The native module `rigwire._rigwire`: a blocking rigwire client and
//! server for Python, built on `rigwire-std` and re-implementing nothing of the
//! protocol. The Python package `rigwire` wraps it in the API users see
//! (`rigwire.connect`, `Client.call`, `Client.root`, exceptions); this layer
//! moves JSON text and bytes, releases the GIL for every wait, and turns
//! Ctrl-C during a wait into `KeyboardInterrupt` with the call cancelled on
//! the wire.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod data;
mod errors;
mod exit;
mod group;
mod ibl;
mod log;
mod server;
mod waiting;

use pyo3::prelude::*;

/// The module `rigwire._rigwire`.
/// Keeps `object` alive for the rest of the process: it is never dropped,
/// not even when the interpreter exits. For what a forked child holds of its
/// parent (a connection, a server): dropping it there would write a goodbye
/// on the parent's socket or join threads that exist only in the parent.
#[pyfunction]
fn keep_forever(object: Py<PyAny>) {
    std::mem::forget(object);
}

#[pymodule]
fn _rigwire(m: &Bound<'_, PyModule>) -> PyResult<()> {
    log::to_python();
    m.add_function(wrap_pyfunction!(keep_forever, m)?)?;
    m.add_function(wrap_pyfunction!(exit::close, m)?)?;
    m.add_function(wrap_pyfunction!(exit::wait_left, m)?)?;
    m.add_class::<client::NativeClient>()?;
    m.add_class::<client::NativeCall>()?;
    m.add_class::<client::Deferred>()?;
    m.add_function(wrap_pyfunction!(client::connect, m)?)?;
    m.add_class::<server::NativeServer>()?;
    m.add_function(wrap_pyfunction!(server::serve, m)?)?;
    m.add_class::<group::NativeGroup>()?;
    m.add_function(wrap_pyfunction!(group::connect_group, m)?)?;
    m.add_function(wrap_pyfunction!(group::exp_ref, m)?)?;
    m.add_class::<ibl::NativeIblPeer>()?;
    m.add_class::<ibl::NativeIblServices>()?;
    m.add_function(wrap_pyfunction!(ibl::ibl_connect, m)?)?;
    m.add_function(wrap_pyfunction!(ibl::ibl_services, m)?)?;
    Ok(())
}
