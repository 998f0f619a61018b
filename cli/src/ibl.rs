//! `rigwire ibl`: speak iblutil.io.net from a terminal — a Rust rig that joins
//! Python rigs (`ibl rig`), and one confirmed message to any of them (`ibl send`).

use std::time::Duration;

use rigwire_smol::core::ibl::{rig_answer, IblEvent, IblMessage};
use rigwire_smol::core::Lifecycle;
use rigwire_smol::{Error, IblPeer};
use serde_json::Value;

use crate::{announce, watch_signals, Failure};

/// Serves as an iblutil rig until SIGINT or SIGTERM: echoes every message,
/// prints it, and answers each lifecycle step as a Python rig does.
pub fn rig(listen: &str, name: &str) -> Result<(), Failure> {
    let mut signals = watch_signals()?;
    let peer = smol::block_on(IblPeer::bind(listen))?;
    announce(&[format!("listening {}", peer.url())]);
    let serving = peer.clone();
    let name = name.to_owned();
    let task = smol::spawn(async move {
        let mut lifecycle = Lifecycle::new();
        loop {
            let Ok((from, message)) = serving.next_message(Duration::from_secs(3600)).await else {
                continue;
            };
            crate::announce(&[format!("from {from}: {message}")]);
            let Some(answer) = rig_answer(&mut lifecycle, &message, &name) else {
                continue;
            };
            let sent = if answer.event == IblEvent::Error {
                serving.send(Some(from), &answer).await // never echoed
            } else {
                serving.confirmed_send(Some(from), &answer).await
            };
            match sent {
                Ok(()) => crate::announce(&[format!("to {from}: {answer}")]),
                Err(e) => crate::announce(&[format!("to {from}: {answer} failed: {e}")]),
            }
        }
    });
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    drop(task);
    peer.close();
    Ok(())
}

/// Sends one message and waits for its echo, then prints what comes back for `wait`.
pub fn send(url: &str, event: &str, fields: &str, wait: f64) -> Result<(), Failure> {
    let usage = |message: String| Failure { code: 2, message };
    let event = IblEvent::from_name(event).ok_or_else(|| {
        usage(format!(
            "unknown event '{event}': init, start, stop, interrupt, cleanup, status, info, alyx, error, or a number"
        ))
    })?;
    let fields = match serde_json::from_str::<Value>(fields)
        .map_err(|e| usage(format!("the fields are not JSON: {e}")))?
    {
        Value::Array(fields) => fields,
        one => vec![one],
    };
    let wait = crate::flag_seconds("--wait", wait, false)?;
    let message = IblMessage { event, fields };
    smol::block_on(async {
        let peer = IblPeer::connect(url).await?;
        peer.confirmed_send(None, &message).await?;
        outln!("confirmed {message}");
        let until = rigwire_smol::core::link::after(std::time::Instant::now(), wait);
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match peer.next_message(left).await {
                Ok((from, answer)) => outln!("from {from}: {answer}"),
                Err(Error::Ibl(rigwire_smol::core::ibl::IblError::Timeout { .. })) => break,
                Err(e) => return Err(e),
            }
        }
        peer.close();
        Ok::<(), Error>(())
    })?;
    Ok(())
}
