//! Workspace-wide and cross-runtime tests for rigwire. The tests live in
//! `tests/tests/`; this library holds nothing but this note.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
