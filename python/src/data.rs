//! What crosses between Python and a payload: JSON text (the package's
//! `json` makes it from Python values and back), or one byte string in the
//! bytes codec (spec §4.1). A Python `bytes` becomes a payload without a
//! copy: the payload keeps the Python object alive until it is written.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyString};
use rigwire_std::core::{Codec, CodecError};
use rigwire_std::{Error, Payload};

/// A payload as Python hands it over: `str` is JSON text, `bytes` (or a
/// `bytearray`, copied once) is a byte string.
#[derive(FromPyObject)]
pub(crate) enum Data {
    /// JSON text.
    Json(String),
    /// A byte string, shared with the Python object.
    Bytes(PyBackedBytes),
}

impl Data {
    /// The payload to send: JSON or bytes.
    pub(crate) fn into_payload(self) -> Payload {
        match self {
            Data::Json(text) => Payload::new(Codec::Json, text.into_bytes()),
            Data::Bytes(bytes) => Payload::bytes(Bytes::from_owner(bytes)),
        }
    }
}

/// A payload on its way to Python: JSON text, or a byte string.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// JSON text, for the package to decode.
    Json(String),
    /// A byte string, given to Python as `bytes`.
    Bytes(Bytes),
}

impl Answer {
    /// What a JSON or bytes payload holds; postcard (which Python cannot
    /// read without the types) and unknown codecs are errors.
    ///
    /// # Errors
    /// [`Error::Codec`] for another codec or JSON that is not UTF-8.
    pub(crate) fn from_payload(payload: Payload) -> Result<Answer, Error> {
        let refuse = |why: String| Error::Codec(CodecError::Json(why));
        match payload.codec {
            Codec::Json => String::from_utf8(payload.bytes.to_vec())
                .map(Answer::Json)
                .map_err(|e| refuse(e.to_string())),
            Codec::Bytes => Ok(Answer::Bytes(payload.bytes)),
            other => Err(refuse(format!(
                "the peer answered in {other:?}, which Python cannot read"
            ))),
        }
    }

    /// `str` or `bytes` (the byte string copied once, into Python's memory).
    pub(crate) fn into_py(self, py: Python<'_>) -> Py<PyAny> {
        match self {
            Answer::Json(text) => PyString::new(py, &text).into_any().unbind(),
            Answer::Bytes(bytes) => PyBytes::new(py, &bytes).into_any().unbind(),
        }
    }
}
