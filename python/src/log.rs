//! rigwire's logs as records of Python's `logging`, on the logger
//! `rigwire`: what the Rust crates say with `tracing` (a notify the peer
//! refused, a notify handler that raised, a reconnect that failed, a relay
//! given up on) reaches a Python user as any library's warnings do. Without
//! it they went nowhere, and those failures were silent.
//!
//! Events at `INFO` and above are formatted where they happen and queued;
//! one thread of our own hands them to `logging`, holding nothing of
//! rigwire's while it waits for the GIL (a thread that logs while holding a
//! connection's lock must never wait for the GIL: a Python thread holding
//! the GIL may be waiting for that lock). A full queue drops what does not
//! fit: logging never holds up a connection. A forked child starts its own
//! thread on its first record.

use std::fmt::{Debug, Write as _};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Records waiting for the thread that hands them to Python.
const QUEUED: usize = 1024;

/// One event, ready for `logging.Logger.log`.
struct Record {
    /// Python's level number (`logging.WARNING` is 30).
    level: u8,
    text: String,
}

/// The layer that queues each event for Python.
struct ToPython {
    /// The queue of this process (its id) to the forwarding thread.
    queue: Mutex<Option<(u32, SyncSender<Record>)>>,
}

impl<S: Subscriber> Layer<S> for ToPython {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let record = Record {
            level: python_level(*event.metadata().level()),
            text: text.finish(),
        };
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        if queue.as_ref().is_none_or(|(of, _)| *of != pid) {
            *queue = start_forwarding().map(|sender| (pid, sender));
        }
        if let Some((_, sender)) = queue.as_ref() {
            let _ = sender.try_send(record);
        }
    }
}

/// Starts the thread that hands queued records to Python; `None` if no
/// thread can be started (then records are dropped).
fn start_forwarding() -> Option<SyncSender<Record>> {
    let (sender, queued) = sync_channel(QUEUED);
    std::thread::Builder::new()
        .name("rigwire-log".into())
        .spawn(move || forward(queued))
        .ok()?;
    Some(sender)
}

/// Hands each record to `logging.getLogger("rigwire")`, those queued
/// meanwhile under the same hold of the GIL; ends when the interpreter
/// exits.
fn forward(queued: Receiver<Record>) {
    while let Ok(first) = queued.recv() {
        let attached = crate::exit::attach(|py| {
            let logger = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", ("rigwire",)));
            let Ok(logger) = logger else {
                return;
            };
            for record in std::iter::once(first).chain(queued.try_iter()) {
                // "%s": the text is never taken for a format string.
                let _ = logger.call_method1("log", (record.level, "%s", record.text));
            }
        });
        if attached.is_none() {
            return;
        }
    }
}

/// Python's level number for a `tracing` level.
fn python_level(level: Level) -> u8 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

/// An event's text: its message, then its other fields (`peer=…`).
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            return self.message;
        }
        format!("{} ({})", self.message, self.fields.trim_start())
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let _ = match field.name() {
            "message" => write!(self.message, "{value:?}"),
            name => write!(self.fields, " {name}={value:?}"),
        };
    }
}

/// Sends rigwire's logs to Python's `logging` from now on, unless the
/// process already has a `tracing` subscriber (an application embedding
/// Python that set its own).
pub(crate) fn to_python() {
    let layer = ToPython {
        queue: Mutex::new(None),
    };
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(LevelFilter::INFO));
    let _ = tracing::subscriber::set_global_default(subscriber);
}
