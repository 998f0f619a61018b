//! `rigwire secret new [FILE]`: a shared secret as it should be, long and
//! random (32 bytes from the operating system, hex-encoded), written to a
//! file only its owner can read, or printed. And `rigwire cert new`: a
//! self-signed TLS certificate, its key likewise kept from others.

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
        outln!("{hex}");
        return Ok(());
    };
    write_new(path, format!("{hex}\n").as_bytes(), 0o600)?;
    eprintln!(
        "wrote a new shared secret to {} (readable by its owner only)",
        path.display()
    );
    Ok(())
}

/// Writes a new file with this mode; refuses to overwrite one.
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure {
        code: 2,
        message: match e.kind() {
            // The old secret may be on every machine of the lab.
            std::io::ErrorKind::AlreadyExists => {
                format!("{} exists already; not overwritten", path.display())
            }
            std::io::ErrorKind::NotFound => format!(
                "cannot write {}: its folder does not exist: make it first",
                path.display()
            ),
            _ => format!("cannot write {}: {e}", path.display()),
        },
    };
    let mut out = std::fs::OpenOptions::new();
    out.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut out, mode);
    out.open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(fail)
}

/// `rigwire cert new`: writes `NAME.crt` and `NAME.key` (mode 0600) into
/// `out` and prints the fingerprint to pin.
pub fn new_cert(name: &str, hosts: &[String], out: &Path) -> Result<(), Failure> {
    let fail = |message: String| Failure { code: 2, message };
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(fail(format!(
            "--name {name:?}: a plain name, such as rig-1"
        )));
    }
    let mut names = vec![name.to_owned()];
    names.extend(hosts.iter().cloned());
    let made = rigwire_ws::tls::self_signed(&names).map_err(|e| fail(e.to_string()))?;
    let (cert, key) = (
        out.join(format!("{name}.crt")),
        out.join(format!("{name}.key")),
    );
    if cert.exists() || key.exists() {
        return Err(fail(format!(
            "{} or {} exists already; not overwritten",
            cert.display(),
            key.display()
        )));
    }
    write_new(&key, made.key_pem.as_bytes(), 0o600)?;
    write_new(&cert, made.cert_pem.as_bytes(), 0o644)?;
    eprintln!(
        "wrote {} and {} (the key readable by its owner only); serve with --cert {} --key {}, \
         and let clients trust it with --pin {}",
        cert.display(),
        key.display(),
        cert.display(),
        key.display(),
        made.fingerprint
    );
    outln!("{}", made.fingerprint);
    Ok(())
}
