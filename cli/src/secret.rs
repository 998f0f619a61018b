//! `rigwire secret new [FILE]`: a shared secret as it should be, long and
//! random (32 bytes from the operating system, hex-encoded), written to a
//! file only its owner can read, or printed.

use std::io::Write;
use std::path::Path;

use crate::Failure;

/// Makes a new secret; writes it to `file` (created with mode 0600, refused
/// if it exists) or prints it.
pub fn new(file: Option<&Path>) -> Result<(), Failure> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Failure {
        code: 2,
        message: format!("the operating system's random source failed: {e}"),
    })?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let Some(path) = file else {
        println!("{hex}");
        return Ok(());
    };
    let fail = |e: std::io::Error| Failure {
        code: 2,
        message: format!("cannot write {}: {e}", path.display()),
    };
    let mut out = std::fs::OpenOptions::new();
    out.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut out, 0o600);
    let mut f = out.open(path).map_err(fail)?;
    writeln!(f, "{hex}").map_err(fail)?;
    eprintln!(
        "wrote a new shared secret to {} (readable by its owner only)",
        path.display()
    );
    Ok(())
}
