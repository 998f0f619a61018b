//! What the control room knows and does: one monitor thread per rig (its
//! connection, round trip, clock offset, lifecycle and methods), the live
//! log, the lifecycle steps run over all rigs by the group rules, and the
//! viewers every change is pushed to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rigwire_std::core::lifecycle::methods;
use rigwire_std::core::{
    wall_clock, ExpInfo, GroupOrder, GroupStep, RigEvent, Target, CLOCK_METHOD,
};
use rigwire_std::{Client, Codec, Config, Error, Handlers, Payload};
use rigwire_twin::lock;
use serde::Serialize;
use serde_json::{json, Value};

/// Log entries kept for viewers that open the page later.
const LOG_KEPT: usize = 500;

/// Round trips kept per rig, for its sparkline.
const RTTS_KEPT: usize = 40;

/// How often a connected rig is measured (round trip, clock, lifecycle).
const POLL: Duration = Duration::from_secs(1);

/// Changes waiting for one viewer; a viewer further behind (a tab that
/// stopped reading) is dropped rather than let the backlog grow.
const VIEWER_BACKLOG: usize = 1024;

/// Actions (lifecycle steps and calls) from the page running at once; more
/// are refused until some finish.
const ACTIONS_AT_ONCE: usize = 64;

/// How often the relay (`--relay`) is asked which services it has.
const RELAY_LOOK: Duration = Duration::from_secs(2);

/// How long a lifecycle step or a call from the page may take per rig.
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// One rig as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RigView {
    pub name: String,
    pub url: String,
    /// `connecting`, `authenticated` or `disconnected`.
    pub state: &'static str,
    /// Why it is disconnected (or not yet connected).
    pub reason: Option<String>,
    /// Its lifecycle status (`connected`, `initialized`, `running`, `stopped`).
    pub status: Option<String>,
    pub exp_ref: Option<String>,
    /// Round trips in milliseconds, oldest first.
    pub rtt_ms: VecDeque<f64>,
    /// Its clock minus ours, in milliseconds.
    pub offset_ms: Option<f64>,
    pub methods: Vec<String>,
    /// The last action's outcome on this rig: `{ok, text}`.
    pub last: Option<Value>,
}

/// One rig: where it is, what the page shows, its connection when up.
struct Rig {
    name: String,
    /// A service behind a relay (its URL ends in `#NAME`).
    via_relay: bool,
    view: Mutex<RigView>,
    client: Mutex<Option<Arc<Client>>>,
}

/// Where one rig is and how to reach it: a service behind a relay has a
/// URL ending in `#NAME`, and its client sends its calls on to it.
#[derive(Debug, Clone)]
pub struct RigSpec {
    pub name: String,
    pub url: String,
    pub config: Config,
}

impl RigSpec {
    fn via_relay(&self) -> bool {
        Target::parse(&self.url).is_ok_and(|t| t.service.is_some())
    }
}

/// The control room's state, shared by the HTTP server, the viewers and
/// the monitors.
pub struct Control {
    /// Every rig shown, in the order they came; only ever added to (a rig's
    /// index is its identity for its monitor). Locked after the page.
    rigs: Mutex<Vec<Arc<Rig>>>,
    page: Mutex<Page>,
    actions: Arc<AtomicUsize>,
}

/// What the viewers are sent, under one lock (taken before any rig's view):
/// a new viewer's snapshot and the changes after it then meet exactly, with
/// nothing lost between them and nothing sent twice, and the changes of a rig
/// reach every viewer in the order they were made.
struct Page {
    log: VecDeque<Value>,
    viewers: Vec<SyncSender<String>>,
}

impl Page {
    /// Sends `message` to every viewer; one too far behind is dropped (its
    /// thread sees the channel end and closes the websocket).
    fn push(&mut self, message: &Value) {
        let text = message.to_string();
        self.viewers.retain(|v| match v.try_send(text.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                tracing::warn!("a viewer of the page stopped reading; dropping it");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

/// A place among the actions running at once, given back when dropped.
pub struct ActionSlot(Arc<AtomicUsize>);

impl Drop for ActionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Control {
    /// Starts a monitor for each rig.
    pub fn start(specs: Vec<RigSpec>) -> Arc<Control> {
        let control = Arc::new(Control {
            rigs: Mutex::new(Vec::new()),
            page: Mutex::new(Page {
                log: VecDeque::new(),
                viewers: Vec::new(),
            }),
            actions: Arc::new(AtomicUsize::new(0)),
        });
        for spec in specs {
            control.add(spec);
        }
        control
    }

    /// Shows one more rig (every viewer is told) and starts its monitor;
    /// `false`, doing nothing, if a rig of that name is shown already.
    fn add(self: &Arc<Self>, spec: RigSpec) -> bool {
        let rig = Arc::new(Rig {
            name: spec.name.clone(),
            via_relay: spec.via_relay(),
            view: Mutex::new(RigView {
                name: spec.name.clone(),
                url: spec.url.clone(),
                state: "connecting",
                reason: None,
                status: None,
                exp_ref: None,
                rtt_ms: VecDeque::new(),
                offset_ms: None,
                methods: Vec::new(),
                last: None,
            }),
            client: Mutex::new(None),
        });
        let i = {
            let mut page = lock(&self.page);
            let mut rigs = lock(&self.rigs);
            if rigs.iter().any(|r| r.name == spec.name) {
                return false;
            }
            rigs.push(Arc::clone(&rig));
            page.push(&json!({"type": "rig", "rig": *lock(&rig.view)}));
            rigs.len() - 1
        };
        let control = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("control-{}", spec.name))
            .spawn(move || control.monitor(i, spec))
            .expect("a monitor thread");
        true
    }

    /// Rig `i`.
    fn rig(&self, i: usize) -> Arc<Rig> {
        Arc::clone(&lock(&self.rigs)[i])
    }

    /// Looks at the relay's services every [`RELAY_LOOK`], on a thread of
    /// its own, and shows each one newly registered there (a service that
    /// registers after the room started was not shown until a restart).
    pub fn watch_relay(self: &Arc<Self>, url: String, config: Config) {
        let control = Arc::clone(self);
        std::thread::Builder::new()
            .name("control-relay".into())
            .spawn(move || control.look_at_relay(&url, &config))
            .expect("a relay watcher thread");
    }

    fn look_at_relay(self: Arc<Self>, url: &str, config: &Config) {
        let mut relay: Option<Client> = None;
        let mut told_taken = Vec::new();
        loop {
            std::thread::sleep(RELAY_LOOK);
            if relay.is_none() {
                relay = Client::connect(url, config.clone()).ok();
            }
            let Some(client) = &relay else {
                continue; // the relay's own rigs show why it is unreachable
            };
            let names: Vec<String> = match client.call("rigwire.services", &()) {
                Ok(names) => names,
                Err(_) => {
                    if let Some(lost) = relay.take() {
                        lost.close();
                    }
                    continue;
                }
            };
            for name in names {
                let spec = RigSpec {
                    name: name.clone(),
                    url: format!("{url}#{name}"),
                    config: config.clone(),
                };
                if self.add(spec) {
                    let news = format!("registered at the relay {url}");
                    self.log("connection", Some(&name), &news);
                    continue;
                }
                let relayed = lock(&self.rigs)
                    .iter()
                    .any(|r| r.name == name && r.via_relay);
                if !relayed && !told_taken.contains(&name) {
                    let news = "a service of this name registered at the relay: not shown";
                    self.log("connection", Some(&name), news);
                    told_taken.push(name);
                }
            }
        }
    }

    /// A new viewer: what it is sent first (every rig and the log so far),
    /// and where later changes arrive.
    pub fn subscribe(&self) -> (String, Receiver<String>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(VIEWER_BACKLOG);
        let (rigs, log) = {
            let mut page = lock(&self.page);
            let rigs = lock(&self.rigs);
            let rigs: Vec<RigView> = rigs.iter().map(|r| lock(&r.view).clone()).collect();
            let log: Vec<Value> = page.log.iter().cloned().collect();
            page.viewers.push(tx);
            (rigs, log)
        };
        let snapshot = json!({"type": "snapshot", "rigs": rigs, "log": log});
        (snapshot.to_string(), rx)
    }

    /// A place to run one more action from the page, or why not.
    pub fn begin_action(&self) -> Result<ActionSlot, String> {
        let running = self.actions.fetch_add(1, Ordering::SeqCst);
        let slot = ActionSlot(Arc::clone(&self.actions));
        if running >= ACTIONS_AT_ONCE {
            return Err(format!(
                "busy: {ACTIONS_AT_ONCE} actions are running; try again when they finish"
            ));
        }
        Ok(slot)
    }

    /// Adds to the live log (`kind`: action, result, error, connection, notify).
    pub fn log(&self, kind: &str, rig: Option<&str>, text: &str) {
        let entry = json!({
            "t": wall_clock(SystemTime::now()),
            "kind": kind,
            "rig": rig,
            "text": text,
        });
        let mut page = lock(&self.page);
        if page.log.len() == LOG_KEPT {
            page.log.pop_front();
        }
        page.log.push_back(entry.clone());
        page.push(&json!({"type": "log", "entry": entry}));
    }

    /// Changes rig `i`'s view and pushes it to every viewer.
    fn update(&self, i: usize, f: impl FnOnce(&mut RigView)) {
        let mut page = lock(&self.page);
        let view = {
            let rig = self.rig(i);
            let mut view = lock(&rig.view);
            f(&mut view);
            view.clone()
        };
        page.push(&json!({"type": "rig", "rig": view}));
    }

    fn name(&self, i: usize) -> String {
        self.rig(i).name.clone()
    }

    /// Keeps rig `i` connected and measured, until the process ends.
    fn monitor(self: Arc<Self>, i: usize, spec: RigSpec) {
        // Why the last connection ended: shown until the rig is back.
        let mut lost: Option<String> = None;
        loop {
            if lost.is_none() {
                self.update(i, |v| v.state = "connecting");
            }
            let connected = Client::connect_with(&spec.url, spec.config.clone(), self.listen(i));
            let client = match connected {
                Ok(client) => Arc::new(client),
                Err(e) => {
                    let reason = match &lost {
                        Some(lost) if *lost == e.reason() => {
                            format!("{lost} (and again on reconnecting)")
                        }
                        Some(lost) => format!("{lost} (reconnecting: {})", e.reason()),
                        None => e.reason(),
                    };
                    self.disconnected(i, reason);
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            let connected_at = Instant::now();
            *lock(&self.rig(i).client) = Some(Arc::clone(&client));
            let methods = Self::methods(&client);
            self.update(i, |v| {
                v.state = "authenticated";
                v.reason = None;
                v.methods = methods;
            });
            self.log(
                "connection",
                Some(&spec.name),
                &format!("connected to {}", spec.url),
            );
            let mut answering = true;
            let why = loop {
                match self.measure(i, &client) {
                    Ok(()) if !answering => {
                        // What it serves may have changed meanwhile (a
                        // service back at its relay in a new version).
                        let methods = Self::methods(&client);
                        self.update(i, |v| v.methods = methods);
                        self.show(i, "authenticated", None, "answering again");
                        answering = true;
                    }
                    Ok(()) => {}
                    // The connection is gone: connect again.
                    Err(e @ Error::Disconnected(_)) => break e,
                    // Connected, but the probe failed: a relay whose service
                    // is gone, a rig whose clock did not answer in time. The
                    // connection is kept, so the page's calls in flight on it
                    // carry on (keepalive still ends it if the rig is gone),
                    // and reconnecting would not help.
                    Err(e) => {
                        answering = false;
                        let why = e.reason();
                        let news = format!("not answering: {why}");
                        self.show(i, "not answering", Some(why), &news);
                    }
                }
                std::thread::sleep(POLL);
            };
            *lock(&self.rig(i).client) = None;
            client.close();
            let reason = why.reason();
            self.disconnected(i, reason.clone());
            lost = Some(reason);
            // A rig that drops every connection at once is tried once a
            // poll, not as fast as it accepts.
            std::thread::sleep(POLL.saturating_sub(connected_at.elapsed()));
        }
    }

    /// Shows rig `i` disconnected for `reason`, and logs it when it is news.
    fn disconnected(&self, i: usize, reason: String) {
        let news = format!("disconnected: {reason}");
        self.show(i, "disconnected", Some(reason), &news);
    }

    /// Shows rig `i` in `state` for `reason`, and logs `news` when that
    /// changes what the page shows.
    fn show(&self, i: usize, state: &'static str, reason: Option<String>, news: &str) {
        let changed = {
            let rig = self.rig(i);
            let view = lock(&rig.view);
            view.state != state || view.reason != reason
        };
        if changed {
            self.update(i, |v| {
                v.state = state;
                v.reason = reason;
            });
            self.log("connection", Some(&self.name(i)), news);
        }
    }

    /// What a rig's connection answers when the rig notifies us: its
    /// events, and anything else it sends, go to the live log.
    fn listen(self: &Arc<Self>, i: usize) -> Handlers {
        let mut handlers = Handlers::new();
        let events = Arc::clone(self);
        let _ = handlers.expose(methods::EVENT, move |event: RigEvent| {
            let RigEvent { name, detail } = event;
            events.log(
                "notify",
                Some(&events.name(i)),
                &format!("event {name}: {detail}"),
            );
            Ok(())
        });
        // Whatever else a rig notifies (rt-cloud's userLog, a trial's end...)
        // goes to the log too; a call to a name we do not serve is refused.
        let logs = Arc::clone(self);
        let _ = handlers.expose_fallback_raw(move |ctx, args: Payload| {
            let text = payload_text(&args);
            logs.log(
                "notify",
                Some(&logs.name(i)),
                &format!("{}: {text}", ctx.method),
            );
            match ctx.id {
                0 => Ok(Payload::json(&()).expect("null encodes")),
                _ => Err(rigwire_std::HandlerError::with_kind(
                    rigwire_std::ErrorKind::NoSuchMethod,
                    format!("the control room serves no method '{}'", ctx.method),
                )),
            }
        });
        handlers
    }

    /// The methods the rig exposes, by name (none if it will not say).
    fn methods(client: &Client) -> Vec<String> {
        let listed = client
            .call_raw(
                rigwire_std::core::INTROSPECTION_METHOD,
                Payload::json(&()).expect("null"),
                Some(ACTION_TIMEOUT),
            )
            .and_then(|p| p.decode::<Value>().map_err(Error::from));
        match listed {
            Ok(Value::Array(methods)) => methods
                .iter()
                .filter_map(|m| m["name"].as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// One round of measurement: the round trip, the clock offset (as NTP
    /// does, within half the clock call's round trip) and the lifecycle.
    fn measure(&self, i: usize, client: &Client) -> Result<(), Error> {
        let t0 = wall_clock(SystemTime::now());
        let clock: f64 = client
            .call_raw(CLOCK_METHOD, Payload::json(&())?, Some(POLL * 5))?
            .decode()?;
        let t1 = wall_clock(SystemTime::now());
        // The rig's own round trip: a relayed service's, both hops.
        let rtt = client.ping()?;
        let info: Option<ExpInfo> = client
            .call_raw(methods::INFO, Payload::json(&())?, Some(POLL * 5))
            .ok()
            .and_then(|p| p.decode().ok());
        self.update(i, |v| {
            if v.rtt_ms.len() == RTTS_KEPT {
                v.rtt_ms.pop_front();
            }
            v.rtt_ms.push_back(rtt.as_secs_f64() * 1e3);
            v.offset_ms = Some((clock - (t0 + t1) / 2.0) * 1e3);
            if let Some(info) = info {
                v.status = serde_json::to_value(info.status)
                    .ok()
                    .and_then(|s| s.as_str().map(str::to_owned));
                v.exp_ref = info.exp_ref.map(|r| r.to_string());
            }
        });
        Ok(())
    }

    /// Runs a lifecycle step on every rig by the group rules (its plan says
    /// which order), in JSON so that the answers read as text; `what` names
    /// it in the log. Each rig's outcome is logged and shown beside it.
    pub fn lifecycle(&self, step: &GroupStep, what: &str) {
        self.log("action", None, &format!("{what} on every rig"));
        let call = |i: usize| {
            self.client(i).and_then(|c| {
                c.start_raw(step.method, step.json_args.clone(), Some(ACTION_TIMEOUT))
            })
        };
        let order = step.order.positions(lock(&self.rigs).len());
        let outcomes: Vec<_> = match step.order {
            GroupOrder::Concurrent => {
                let started: Vec<_> = order.into_iter().map(|i| (i, call(i))).collect();
                started
                    .into_iter()
                    .map(|(i, p)| (i, p.and_then(|p| p.wait())))
                    .collect()
            }
            _ => order
                .into_iter()
                .map(|i| (i, call(i).and_then(|p| p.wait())))
                .collect(),
        };
        for (i, outcome) in outcomes {
            self.outcome(i, what, outcome);
        }
    }

    /// Rig `i`'s connection, if it is up.
    fn client(&self, i: usize) -> Result<Arc<Client>, Error> {
        lock(&self.rig(i).client).clone().ok_or_else(|| {
            Error::Disconnected(rigwire_std::core::ConnectionError::TransportClosed(
                "not connected".into(),
            ))
        })
    }

    /// Calls `method` on one rig with JSON arguments, as `rigwire call` does.
    pub fn call(&self, rig: &str, method: &str, args: &Value) -> Result<(), String> {
        let i = lock(&self.rigs)
            .iter()
            .position(|r| r.name == rig)
            .ok_or_else(|| format!("no rig named '{rig}'"))?;
        if method.is_empty() {
            return Err("no method given".into());
        }
        let shown = shortened(&args.to_string());
        self.log("action", Some(rig), &format!("call {method} {shown}"));
        let outcome = self.client(i).and_then(|c| {
            let args = Payload::json(args)?;
            c.call_raw(method, args, Some(ACTION_TIMEOUT))
        });
        self.outcome(i, method, outcome);
        Ok(())
    }

    fn outcome(&self, i: usize, what: &str, outcome: Result<Payload, Error>) {
        let name = self.name(i);
        let (ok, text) = match outcome {
            Ok(result) => (true, payload_text(&result)),
            Err(Error::Remote(e)) => (false, format!("{}: {}", e.kind, e.message)),
            Err(e) => (false, e.to_string()),
        };
        let kind = if ok { "result" } else { "error" };
        self.log(kind, Some(&name), &format!("{what} → {text}"));
        self.update(i, |v| {
            v.last = Some(json!({"ok": ok, "what": what, "text": text}))
        });
    }
}

/// A payload for people: JSON as text (its start, if long), anything else
/// by its size.
fn payload_text(p: &Payload) -> String {
    match p.codec {
        Codec::Json => shortened(&String::from_utf8_lossy(&p.bytes)),
        Codec::Bytes => format!("{} bytes", p.bytes.len()),
        _ => format!("{} bytes of postcard", p.bytes.len()),
    }
}

/// Most characters of a value shown in the log and beside a rig.
const SHOWN: usize = 500;

/// `text`, or its first [`SHOWN`] characters and how long it was.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// The log entries a viewer has: its snapshot's, then the changes it
    /// reads (up to `more`), as the numbers the writer logged.
    fn entries_seen(control: &Control, more: usize) -> Vec<u64> {
        let number = |entry: &Value| entry["text"].as_str().unwrap().parse::<u64>().unwrap();
        let (snapshot, changes) = control.subscribe();
        let snapshot: Value = serde_json::from_str(&snapshot).unwrap();
        let mut seen: Vec<u64> = snapshot["log"]
            .as_array()
            .unwrap()
            .iter()
            .map(number)
            .collect();
        // A viewer dropped for falling behind ends early: what it read still counts.
        while let Ok(change) = changes.recv_timeout(Duration::from_secs(5)) {
            let change: Value = serde_json::from_str(&change).unwrap();
            seen.push(number(&change["entry"]));
            if seen.len() >= more {
                break;
            }
        }
        seen
    }

    /// Viewers that come while the log is written to: each one's snapshot
    /// and the changes after it hold every entry exactly once, in order.
    #[test]
    fn a_new_viewer_misses_no_log_entry_and_gets_none_twice() {
        let control = Control::start(Vec::new());
        let writing = Arc::new(AtomicBool::new(true));
        let writer = {
            let (control, writing) = (Arc::clone(&control), Arc::clone(&writing));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while writing.load(Ordering::Relaxed) {
                    control.log("action", None, &n.to_string());
                    n += 1;
                }
                n
            })
        };
        for viewer in 0..300 {
            let seen = entries_seen(&control, LOG_KEPT + 20);
            let gap = seen.windows(2).find(|w| w[1] != w[0] + 1);
            assert!(gap.is_none(), "viewer {viewer}: {gap:?} in {seen:?}");
        }
        writing.store(false, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
    }
}
