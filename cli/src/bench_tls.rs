//! The TLS rows of `rigwire bench`: rigwire over `tls://` against rigwire
//! over plain `tcp://`, the same rig and client otherwise, in one run. In
//! these rows ("TLS vs tcp") the "raw" column is plain rigwire: what TLS
//! adds is the ratio.

use std::time::Duration;

use bytes::Bytes;
use rigwire_std::core::Trust;
use rigwire_std::{Client, Codec, Config, Dispatch, Error, Payload, Server};

use crate::bench::{alternate, latency_rows, throughput_row, Row};

/// An echo rig on `url`, serving `config`'s certificate when `url` asks for TLS.
fn rig(url: &str, config: Config) -> Result<rigwire_std::RunningServer, Error> {
    let mut server = Server::bind(url, config)?;
    server.expose_raw("echo", |_ctx, args: Payload| Ok(args))?;
    server.dispatch("echo", Dispatch::Inline)?;
    server.start()
}

/// A configuration that serves a fresh self-signed certificate and pins it,
/// its files in a fresh `dir`, written as `rigwire cert new` writes them
/// (the key readable by its owner only: another would be warned of).
fn tls_config(dir: &std::path::Path) -> Result<Config, Error> {
    let made = rigwire_ws::tls::self_signed(&["bench".into()]).map_err(Error::Tls)?;
    let setup = |why: String| Error::Tls(rigwire_std::core::TlsProblem::Setup(why));
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| setup(e.to_string()))?;
    let (cert, key) = (dir.join("bench.crt"), dir.join("bench.key"));
    crate::secret::write_new(&cert, made.cert_pem.as_bytes(), 0o644)
        .and_then(|()| crate::secret::write_new(&key, made.key_pem.as_bytes(), 0o600))
        .map_err(|failed| setup(failed.message))?;
    Ok(Config::named("bench")
        .tls_identity(cert, key)
        .tls_trust(Trust::Pin(made.fingerprint)))
}

/// Serial round trips, 16 MiB echoes and handshakes: TLS against plain TCP.
pub fn rows(rows: &mut Vec<Row>, n: impl Fn(usize) -> usize) -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("rigwire-bench-tls-{}", std::process::id()));
    let tls_rig =
        tls_config(&dir).and_then(|config| Ok((rig("tls://127.0.0.1:0", config.clone())?, config)));
    let _ = std::fs::remove_dir_all(&dir); // the rig has read its files
    let (tls_rig, config) = tls_rig?;
    let plain_config = Config::named("bench");
    let plain_rig = rig("tcp://127.0.0.1:0", plain_config.clone())?;
    let (plain_url, tls_url) = (plain_rig.local_url(), tls_rig.local_url());
    let plain = Client::connect(&plain_url, plain_config.clone())?;
    let tls = Client::connect(&tls_url, config.clone())?;
    let echo = |client: &Client, payload: &Payload| {
        client
            .call_raw("echo", payload.clone(), None)
            .expect("echo call");
    };
    let small = Payload::new(Codec::Postcard, Bytes::from(vec![7u8; 32]));
    let samples = alternate(12, n(1500), || echo(&plain, &small), || echo(&tls, &small));
    latency_rows(rows, "TLS vs tcp serial round trip", &samples);

    let size = (16 << 20) - 64;
    let big = Payload::new(Codec::Postcard, Bytes::from(vec![7u8; size]));
    let samples = alternate(2, n(6), || echo(&plain, &big), || echo(&tls, &big));
    throughput_row(
        rows,
        "TLS vs tcp echo of 16 MiB",
        "MB/s",
        2.0 * size as f64 / 1e6,
        &samples,
    );
    plain.close();
    tls.close();

    // A whole connection: TCP, TLS's handshake, rigwire's, and the close.
    let connect = |url: &str, config: &Config| {
        let client = Client::connect(url, config.clone()).expect("connect");
        client.close();
    };
    let samples = alternate(
        4,
        n(50),
        || connect(&plain_url, &plain_config),
        || connect(&tls_url, &config),
    );
    throughput_row(rows, "TLS vs tcp handshakes", "conn/s", 1.0, &samples);
    plain_rig.shutdown(Duration::from_secs(1));
    tls_rig.shutdown(Duration::from_secs(1));
    Ok(())
}
