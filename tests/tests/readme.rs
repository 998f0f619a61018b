//! The README's Rust examples compile, as written: each ```rust block of
//! `README.md` must appear, line for line, in one of the functions below,
//! which the compiler checks. They are never run (they name fixed ports and
//! files a test may not use); what they do is tested elsewhere.

#![allow(dead_code, unused_variables)]

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use rigwire_smol::IblEvent;
use rigwire_std::Config;

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

#[rustfmt::skip] // as the README has it
fn from_rust_blocking() -> Result {
    use rigwire_std::{Client, Config, Server};

    let mut server = Server::bind("tcp://127.0.0.1:7400", Config::named("rig-1").secret("s3cret-s3cret-s3cret")?)?;
    server.expose("add", |(a, b): (i64, i64)| Ok(a + b))?;
    let running = server.start()?;

    let rig = Client::connect("tcp://127.0.0.1:7400", Config::named("script").secret("s3cret-s3cret-s3cret")?)?;
    let sum: i64 = rig.call("add", &(1, 2))?;                 // blocks until the answer, error or deadline
    let pending = rig.start::<_, i64>("add", &(3, 4))?;       // or keep many calls in flight
    assert_eq!(pending.wait()?, 7);
    Ok(())
}

#[rustfmt::skip] // as the README has it
async fn from_rust_async() -> Result {
    let mut server = rigwire_smol::Server::bind("tcp://127.0.0.1:7401", Config::named("rig"))?;
    server.expose("add", |(a, b): (i64, i64)| async move { Ok(a + b) })?;
    let running = server.start()?;
    let rig = rigwire_smol::Client::connect("tcp://127.0.0.1:7401", Config::named("script")).await?;
    let sum: i64 = rig.call("add", &(1, 2)).await?;
    let pending = rig.start::<_, i64>("add", &(3, 4)).await?; // or keep many calls in flight from one task
    assert_eq!(pending.wait().await?, 7);
    Ok(())
}

#[rustfmt::skip] // as the README has it
fn relays() -> Result {
    use rigwire_smol::{RelayConfig, RelayServer};

    // Each side's secret, as `rigwire secret new` wrote it; read as --secret-file reads it, without the line break
    let clients_secret = std::fs::read_to_string("clients.secret")?.trim_end().to_owned();
    let services_secret = std::fs::read_to_string("services.secret")?.trim_end().to_owned();
    let mut config = RelayConfig::default()           // config.clients and config.services: each side's settings
        .clients_secret(clients_secret.clone())?
        .services_secret(services_secret.clone())?;
    config.allowed = Some(vec!["data".into()]);
    let relay = RelayServer::bind("tcp://127.0.0.1:0", "ws://127.0.0.1:0/services", config)?.start()?;

    // On the scanner's machine (blocking; rigwire_smol::RemoteService is the same, async):
    let mut data = rigwire_std::RemoteService::new(&["data"], Config::named("scanner").secret(services_secret)?);
    data.expose("getFile", |name: String| Ok(std::fs::read(name)?))?;
    let running = data.connect(&relay.services_url())?;    // registered; re-registers after a relay restart

    // In the experiment script:
    let script = Config::named("script").secret(clients_secret)?;
    let bytes: Vec<u8> = rigwire_std::Client::connect(&relay.clients_url(), script.clone())?
        .call("data.getFile", &"run1.dcm")?;
    let data = rigwire_std::Client::connect(&format!("{}#data", relay.clients_url()), script)?;
    let bytes: Vec<u8> = data.call("getFile", &"run1.dcm")?;   // the same call: URL#NAME is that service
    relay.broadcast_service("data", "newRun", &1)?;   // or broadcast_clients(...)
    Ok(())
}

#[rustfmt::skip] // as the README has it
async fn speaking_iblutil() -> Result {
    use rigwire_smol::{IblGroup, IblPeer};
    use serde_json::json;

    let rig = IblPeer::connect("udp://10.0.0.7:11001").await?;   // or IblPeer::bind(...) to be the rig
    rig.init(json!({"subject": "test"})).await?;                  // returns once the rig echoed it
    let (_, answer) = rig.wait_answer(IblEvent::Init, Duration::from_secs(10)).await?;
    let group = IblGroup::new(vec![("behavior".into(), rig)], Duration::from_secs(10))?; // like iblutil's Services
    let started = group.start("2022-01-01_1_subject", json!(null)).await;               // answers by rig name
    Ok(())
}

/// The ```rust blocks of a markdown text, each as its lines.
fn rust_blocks(markdown: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut open: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        match (&mut open, line.trim()) {
            (None, "```rust") => open = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(open.take()),
            (Some(block), _) => block.push(line),
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_rust_example_of_the_readme_is_compiled_here() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let here: Vec<&str> = include_str!("readme.rs")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let blocks = rust_blocks(&readme);
    assert!(
        blocks.len() >= 4,
        "the README's Rust examples were not found"
    );
    for block in blocks {
        // Blank lines may differ: the non-blank lines must match in order.
        let wanted: Vec<&str> = block
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        let found = here.windows(wanted.len()).any(|w| w == wanted);
        assert!(
            found,
            "this README example is not in tests/tests/readme.rs, so nothing checks that it compiles:\n{}",
            block.join("\n")
        );
    }
}
