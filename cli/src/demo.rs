//! `rigwire demo`: an experiment across three loopback rigs, driven by a
//! script through a [`Group`], then a service reached in two hops through a
//! relay, printed as a timeline. Every step checks what it expects, so the
//! demo fails loudly if rigwire misbehaves.

use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use rigwire_std::core::lifecycle::methods;
use rigwire_std::core::{ExpRef, ExpStatus};
use rigwire_std::{
    CallContext, Client, Config, Error, ErrorKind, Group, GroupError, GroupResults, Handlers,
    RunningServer, Server,
};

use crate::rig::{self, expose_demo_rig, DemoHooks};

const SECRET: &str = "demo-secret-0123456789";

/// Prints timeline lines with the time since the demo started.
#[derive(Clone)]
struct Timeline(Instant);

impl Timeline {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        let ms = self.0.elapsed().as_secs_f64() * 1e3;
        outln!("[{ms:8.1} ms] {who:<8} {}", what.as_ref());
    }

    /// Prints each rig's outcome; fails unless each is what `expect` accepts.
    fn each<T: std::fmt::Debug>(
        &self,
        what: &str,
        results: &GroupResults<T>,
        expect: impl Fn(&str, &Result<T, Error>) -> bool,
    ) -> Result<(), Error> {
        for (rig, outcome) in results.iter() {
            match outcome {
                Ok(v) => self.say(rig, format!("{what} -> {v:?}")),
                Err(e) => self.say(rig, format!("{what} failed: {e}")),
            }
            if !expect(rig, outcome) {
                return Err(unexpected(format!("{rig}: {what} gave {outcome:?}")));
            }
        }
        Ok(())
    }
}

fn unexpected(what: String) -> Error {
    Error::Remote(rigwire_std::RemoteError::new(
        ErrorKind::Internal,
        format!("demo: {what}"),
    ))
}

/// Starts a demo rig; `sleeping` learns when one of its `sleep` calls begins.
fn start_rig(
    name: &str,
    timeline: &Timeline,
    sleeping: Option<mpsc::Sender<()>>,
) -> Result<RunningServer, Error> {
    let mut server = Server::bind("tcp://127.0.0.1:0", Config::named(name).secret(SECRET)?)?;
    let (t, rig) = (timeline.clone(), name.to_owned());
    let on_start = move |ctx: &CallContext, exp_ref: &ExpRef| {
        if rig == "rig-1" {
            t.say(&rig, "calls the script back: script.log(\"camera armed\")");
            let answer: String = ctx
                .peer
                .call("script.log", &format!("{rig} armed for {exp_ref}"))?;
            t.say(&rig, format!("the script answered {answer:?}"));
        }
        ctx.peer
            .notify(methods::EVENT, &("armed", format!("{rig} ready")))?;
        Ok(())
    };
    let on_sleep = sleeping.map(|tx| {
        let tx = Mutex::new(tx);
        Box::new(move || {
            let _ = tx.lock().unwrap_or_else(|p| p.into_inner()).send(());
        }) as rig::SleepHook
    });
    let hooks = DemoHooks {
        on_start: Some(Box::new(on_start)),
        on_sleep,
    };
    expose_demo_rig(server.handlers_mut(), hooks)?;
    server.start()
}

/// Runs the demo; `Ok` only if every step behaved as rigwire promises.
pub fn run() -> Result<(), Error> {
    let t = Timeline(Instant::now());
    outln!("rigwire demo: a script drives three rigs over loopback TCP, with a shared secret.\n");
    let (rig3_sleeping, sleep_began) = mpsc::channel();
    let rigs = [
        start_rig("rig-1", &t, None)?,
        start_rig("rig-2", &t, None)?,
        start_rig("rig-3", &t, Some(rig3_sleeping))?,
    ];
    let urls: Vec<String> = rigs.iter().map(RunningServer::local_url).collect();
    for (i, url) in urls.iter().enumerate() {
        t.say(&format!("rig-{}", i + 1), format!("listening on {url}"));
    }

    let mut handlers = Handlers::new();
    let tl = t.clone();
    handlers.expose("script.log", move |line: String| {
        tl.say("script", format!("log from a rig: {line}"));
        Ok("noted".to_owned())
    })?;
    let config = Config::named("script").secret(SECRET)?;
    let named: Vec<(&str, &str)> = ["rig-1", "rig-2", "rig-3"]
        .into_iter()
        .zip(urls.iter().map(String::as_str))
        .collect();
    let group =
        Group::connect_with(&named, &config, handlers).map_err(|e| unexpected(e.to_string()))?;
    t.say(
        "script",
        format!("connected to {} (authenticated)", group.names().join(", ")),
    );

    match Client::connect(
        &urls[0],
        Config::named("intruder").secret("guess-guess-guess-guess")?,
    ) {
        Err(e @ Error::AuthFailed(_)) => t.say("intruder", format!("refused: {e}")),
        other => {
            return Err(unexpected(format!(
                "a wrong secret was not refused: {other:?}"
            )))
        }
    }

    let limit = Some(Duration::from_secs(5));
    t.each("exp.init", &group.init(limit), |_, r| {
        matches!(r, Ok(ExpStatus::Initialized))
    })?;
    let exp_ref: ExpRef = "2026-11-21_1_mouse"
        .parse()
        .map_err(|e: rigwire_std::core::lifecycle::ExpRefError| unexpected(e.to_string()))?;
    t.each("exp.start", &group.start(&exp_ref, limit), |_, r| {
        matches!(r, Ok(ExpStatus::Running))
    })?;
    let armed = group
        .wait_event("armed", Duration::from_secs(5))
        .map_err(|e| unexpected(e.to_string()))?;
    for (rig, detail) in armed {
        t.say(&rig, format!("reported event armed: {detail}"));
    }
    match group.wait_event("reward", Duration::from_millis(100)) {
        Err(e @ GroupError::Timeout { .. }) => {
            t.say("script", format!("waited for an event nobody sends: {e}"))
        }
        other => {
            return Err(unexpected(format!(
                "an event nobody sends did not time out: {other:?}"
            )))
        }
    }
    t.each("exp.status", &group.status(limit), |_, r| {
        matches!(r, Ok(ExpStatus::Running))
    })?;

    // A remote error, by name: starting twice is refused with the reason.
    t.each("exp.start again", &group.start(&exp_ref, limit), |_, r| {
        matches!(r, Err(Error::Remote(_)))
    })?;

    // A deadline: the script gives a 2 s task 200 ms.
    let asked = Instant::now();
    match group.rig("rig-2").map_err(|e| unexpected(e.to_string()))?.call_timeout::<_, f64>("sleep", &2.0f64, Duration::from_millis(200)) {
        Err(Error::DeadlineExceeded) => t.say(
            "script",
            format!("sleep(2 s) on rig-2 with a 200 ms deadline: DeadlineExceeded after {:.0} ms; rig-2 was told to cancel", asked.elapsed().as_secs_f64() * 1e3),
        ),
        other => return Err(unexpected(format!("the deadline did not hold: {other:?}"))),
    }

    // A rig dies mid-call: the group call keeps the others' answers.
    let [rig1, rig2, rig3] = rigs;
    let killer = std::thread::spawn({
        let t = t.clone();
        move || {
            // Only once rig-3 is inside the call: the crash is mid-call on
            // any machine, however slow.
            if sleep_began.recv_timeout(Duration::from_secs(10)).is_ok() {
                t.say("rig-3", "crashes in the middle of sleep(0.3 s)");
            }
            rig3.abort();
        }
    });
    let slept = group.call_all::<_, f64>("sleep", &0.3f64, limit);
    let _ = killer.join();
    t.each("sleep(0.3 s) on all", &slept, |rig, r| {
        if rig == "rig-3" {
            matches!(r, Err(Error::Disconnected(_)))
        } else {
            r.is_ok()
        }
    })?;

    // Stop, then clean up, in reverse order; the dead rig is reported by name.
    let alive = |rig: &str, r: &Result<ExpStatus, Error>, want: ExpStatus| {
        if rig == "rig-3" {
            r.is_err()
        } else {
            matches!(r, Ok(s) if *s == want)
        }
    };
    t.each("exp.stop", &group.stop(false, limit), |rig, r| {
        alive(rig, r, ExpStatus::Stopped)
    })?;
    t.each("exp.cleanup", &group.cleanup(limit), |rig, r| {
        alive(rig, r, ExpStatus::Connected)
    })?;
    group.close();
    rig1.shutdown(Duration::from_secs(1));
    rig2.shutdown(Duration::from_secs(1));
    t.say(
        "script",
        "experiment finished: every rig answered or failed fast, by name",
    );
    outln!();
    two_hops(&t)
}

/// rt-cloud's layout: the scanner's data service dials out to a relay beside
/// the script, which calls `data.getFile` through it.
fn two_hops(t: &Timeline) -> Result<(), Error> {
    let mut config = rigwire_smol::RelayConfig::default();
    config.clients.secret = Some(rigwire_std::core::Secret::new(SECRET)?);
    config.services.secret = Some(rigwire_std::core::Secret::new("services-secret-0123456")?);
    config.allowed = Some(vec!["data".into(), "subject".into()]);
    let relay =
        rigwire_smol::RelayServer::bind("tcp://127.0.0.1:0", "ws://127.0.0.1:0/services", config)?
            .start()?;
    t.say(
        "relay",
        format!(
            "clients on {}, services dial in on {}",
            relay.clients_url(),
            relay.services_url()
        ),
    );

    let mut data = rigwire_std::RemoteService::new(
        &["data"],
        Config::named("scanner").secret("services-secret-0123456")?,
    );
    expose_demo_rig(data.handlers_mut(), DemoHooks::default())?;
    data.expose("getFile", |name: String| {
        Ok(format!("{} bytes of {name}", 96 * 96 * 2))
    })?;
    let data = data.connect(&relay.services_url())?;
    t.say("data", "dialed out over websocket and registered 'data'");
    let impostor = rigwire_std::RemoteService::new(
        &["data"],
        Config::named("impostor").secret("services-secret-0123456")?,
    );
    match impostor.connect(&relay.services_url()) {
        Err(Error::Remote(e)) if e.kind == ErrorKind::Refused => t.say(
            "impostor",
            format!("registering 'data' refused: {}", e.message),
        ),
        other => {
            return Err(unexpected(format!(
                "a second 'data' was not refused: {other:?}"
            )))
        }
    }

    let script = Client::connect(
        &relay.clients_url(),
        Config::named("script").secret(SECRET)?,
    )?;
    let asked = Instant::now();
    let file: String = script.call("data.getFile", &"run1_vol001.dcm")?;
    t.say(
        "script",
        format!(
            "data.getFile(\"run1_vol001.dcm\") through the relay -> {file:?} in {:.2} ms",
            asked.elapsed().as_secs_f64() * 1e3
        ),
    );
    // A URL naming the service: a client of `data` itself, as of a rig.
    let data_url = format!("{}#data", relay.clients_url());
    let data_rig = Client::connect(&data_url, Config::named("script").secret(SECRET)?)?;
    let status: ExpStatus = data_rig.call("exp.status", &())?;
    t.say(
        "script",
        format!(
            "{data_url} is the service itself: exp.status -> {status:?}, round trip {:.2} ms",
            data_rig.ping()?.as_secs_f64() * 1e3
        ),
    );
    data_rig.close();
    let pending = script.start::<_, f64>("data.sleep", &30.0f64)?;
    std::thread::sleep(Duration::from_millis(100));
    t.say("data", "goes away in the middle of data.sleep(30 s)");
    let gone = Instant::now();
    data.close();
    match pending.wait() {
        Err(Error::Remote(e)) if e.kind == ErrorKind::Unavailable => t.say(
            "script",
            format!(
                "the pending call failed after {:.0} ms: {}",
                gone.elapsed().as_secs_f64() * 1e3,
                e.message
            ),
        ),
        other => {
            return Err(unexpected(format!(
                "the pending call did not fail: {other:?}"
            )))
        }
    }
    match script.call::<_, String>("data.getFile", &"run1_vol002.dcm") {
        Err(Error::Remote(e)) if e.kind == ErrorKind::Unavailable => t.say(
            "script",
            format!("the next call fails at once: {}", e.message),
        ),
        other => return Err(unexpected(format!("a call to a gone service: {other:?}"))),
    }
    script.close();
    smol::block_on(relay.shutdown(Duration::from_secs(1)));
    t.say("script", "two hops done: no call waited out a timeout");
    Ok(())
}
