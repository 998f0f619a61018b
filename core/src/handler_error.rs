//! [`HandlerError`]: what a handler returns when it fails, in any runtime.

use std::fmt;

use crate::error::RemoteError;
use crate::message::ErrorKind;

/// The error a handler returns; it reaches the caller as a remote error with
/// this kind, message and detail. Any `std::error::Error` converts into it with
/// `?` (kind `Handler`, its source chain as detail).
pub struct HandlerError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// One line for humans.
    pub message: String,
    /// Cause chain or backtrace.
    pub detail: Option<String>,
}

impl HandlerError {
    /// A `Handler` error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError {
            kind: ErrorKind::Handler,
            message: message.into(),
            detail: None,
        }
    }

    /// An error of a chosen kind (for example `BadArguments`).
    pub fn with_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        HandlerError {
            kind,
            ..HandlerError::new(message)
        }
    }

    /// Adds a cause chain or backtrace.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Passes a remote error on unchanged (kind, message and detail).
    pub fn from_remote(err: RemoteError) -> Self {
        HandlerError {
            kind: err.kind,
            message: err.message,
            detail: err.detail,
        }
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(err: E) -> Self {
        let mut chain = Vec::new();
        let mut source = err.source();
        while let Some(cause) = source {
            chain.push(format!("caused by: {cause}"));
            source = cause.source();
        }
        HandlerError {
            kind: ErrorKind::Handler,
            message: err.to_string(),
            detail: (!chain.is_empty()).then(|| chain.join("\n")),
        }
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandlerError({}: {})", self.kind, self.message)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl From<HandlerError> for RemoteError {
    fn from(e: HandlerError) -> Self {
        RemoteError {
            kind: e.kind,
            message: e.message,
            detail: e.detail,
        }
    }
}
