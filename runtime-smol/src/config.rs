//! Reading a shared secret from a file; the configuration itself is
//! [`rigwire_core::Config`], the same type in every runtime.

use std::path::Path;

use rigwire_core::{Error, Secret};

/// Reads a shared secret from a file (a trailing newline is not part of it).
///
/// # Errors
/// [`Error::Config`] if the file cannot be read or holds an empty secret.
pub fn secret_from_file(path: &Path) -> Result<Secret, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Config(rigwire_core::ConfigError::SecretUnreadable(format!(
            "{}: {e}",
            path.display()
        )))
    })?;
    Ok(Secret::from_file_contents(&bytes)?)
}
