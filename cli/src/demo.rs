//! `rigwire demo`: an experiment across three loopback rigs, as a script
//! would drive it, printed as a timeline. Every step checks what it expects,
//! so the demo fails loudly if rigwire misbehaves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rigwire_std::core::{ExpStatus, Step};
use rigwire_std::{Client, Config, Error, ErrorKind, Handlers, RunningServer, Server};

use crate::rig::{expose_demo_rig, StepDone, StopArgs};

const SECRET: &str = "demo-secret";
const EXP_REF: &str = "2026-11-21_1_mouse";

/// Prints timeline lines with the time since the demo started.
#[derive(Clone)]
struct Timeline(Instant);

impl Timeline {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        let ms = self.0.elapsed().as_secs_f64() * 1e3;
        println!("[{ms:8.1} ms] {who:<8} {}", what.as_ref());
    }
}

fn unexpected(what: String) -> Error {
    Error::Remote(rigwire_std::RemoteError::new(
        ErrorKind::Internal,
        format!("demo: {what}"),
    ))
}

fn start_rig(name: &str, timeline: &Timeline, calls_back: bool) -> Result<RunningServer, Error> {
    let mut server = Server::bind("tcp://127.0.0.1:0", Config::named(name).secret(SECRET)?)?;
    let hook: Option<crate::rig::StepHook> = calls_back.then(|| {
        let t = timeline.clone();
        let rig = name.to_owned();
        Arc::new(
            move |ctx: &rigwire_std::CallContext, step: Step, _status: &ExpStatus| {
                if step == Step::Start {
                    t.say(&rig, "calls the script back: script.log(\"camera armed\")");
                    match ctx
                        .peer
                        .call::<_, String>("script.log", &format!("{rig}: camera armed"))
                    {
                        Ok(answer) => t.say(&rig, format!("the script answered {answer:?}")),
                        Err(e) => t.say(&rig, format!("callback failed: {e}")),
                    }
                }
            },
        ) as crate::rig::StepHook
    });
    expose_demo_rig(&mut server, name, hook)?;
    server.start()
}

/// Runs the demo; `Ok` only if every step behaved as rigwire promises.
pub fn run() -> Result<(), Error> {
    let t = Timeline(Instant::now());
    println!(
        "rigwire demo: one script drives three rigs over loopback TCP, with a shared secret.\n"
    );
    let rigs = [
        start_rig("rig-1", &t, true)?,
        start_rig("rig-2", &t, false)?,
        start_rig("rig-3", &t, false)?,
    ];
    for (i, rig) in rigs.iter().enumerate() {
        t.say(
            &format!("rig-{}", i + 1),
            format!("listening on {}", rig.local_url()),
        );
    }

    let mut clients = Vec::new();
    for (i, rig) in rigs.iter().enumerate() {
        let mut handlers = Handlers::new();
        let tl = t.clone();
        handlers.expose("script.log", move |line: String| {
            tl.say("script", format!("log from a rig: {line}"));
            Ok("noted".to_owned())
        })?;
        let config = Config::named("script").secret(SECRET)?;
        let client = Client::connect_with(&rig.local_url(), config, handlers)?;
        let rtt = client.ping()?;
        t.say(
            "script",
            format!(
                "connected to rig-{} (authenticated), ping {:.0} µs",
                i + 1,
                rtt.as_secs_f64() * 1e6
            ),
        );
        clients.push(client);
    }

    let wrong = Client::connect(
        &rigs[0].local_url(),
        Config::named("intruder").secret("guess")?,
    );
    match wrong {
        Err(e @ Error::AuthFailed(_)) => t.say("intruder", format!("refused: {e}")),
        other => {
            return Err(unexpected(format!(
                "a wrong secret was not refused: {other:?}"
            )))
        }
    }

    // init on every rig at once: start all calls, then collect each answer by name.
    let step_all = |method: &str,
                    clients: &[Client],
                    args: &dyn Fn() -> Result<rigwire_std::Payload, Error>|
     -> Result<(), Error> {
        let pending: Vec<_> = clients
            .iter()
            .map(|c| c.start_raw(method, args()?, Some(Duration::from_secs(5))))
            .collect::<Result<_, _>>()?;
        for p in pending {
            let done: StepDone = p.wait()?.decode()?;
            t.say(&done.rig, format!("{method} -> {}", done.status));
        }
        Ok(())
    };
    let none = || Ok(rigwire_std::Payload::postcard(&())?);
    step_all("exp.init", &clients, &none)?;
    let exp_ref = || Ok(rigwire_std::Payload::postcard(&EXP_REF)?);
    step_all("exp.start", &clients, &exp_ref)?;
    for (i, c) in clients.iter().enumerate() {
        let status: ExpStatus = c.call("exp.status", &())?;
        t.say(&format!("rig-{}", i + 1), format!("exp.status -> {status}"));
        if status != ExpStatus::Running {
            return Err(unexpected(format!(
                "rig-{} is {status}, not running",
                i + 1
            )));
        }
    }

    // A remote error: a step out of order is refused with the reason.
    match clients[1].call::<_, StepDone>("exp.start", &EXP_REF) {
        Err(Error::Remote(e)) => t.say(
            "rig-2",
            format!("refused a second start: {}: {}", e.kind, e.message),
        ),
        other => {
            return Err(unexpected(format!(
                "a second start was not refused: {other:?}"
            )))
        }
    }
    match clients[1].call::<_, StepDone>("exp.cleanup", &()) {
        Err(Error::Remote(e)) => t.say(
            "rig-2",
            format!("refused cleanup while running: {}", e.message),
        ),
        other => {
            return Err(unexpected(format!(
                "cleanup while running was not refused: {other:?}"
            )))
        }
    }

    // A deadline: the script gives a 2 s task 200 ms.
    let asked = Instant::now();
    match clients[1].call_timeout::<_, f64>("sleep", &2.0f64, Duration::from_millis(200)) {
        Err(Error::DeadlineExceeded) => t.say(
            "script",
            format!("sleep(2 s) with a 200 ms deadline: DeadlineExceeded after {:.0} ms; rig-2 was told to cancel", asked.elapsed().as_secs_f64() * 1e3),
        ),
        other => return Err(unexpected(format!("the deadline did not hold: {other:?}"))),
    }

    // A rig dies mid-call: the call fails at once, not after its 5 s.
    let [rig1, rig2, rig3] = rigs;
    let pending = clients[2].start::<_, f64>("sleep", &5.0f64)?;
    std::thread::sleep(Duration::from_millis(100));
    t.say("rig-3", "crashes in the middle of sleep(5 s)");
    let killed = Instant::now();
    rig3.abort();
    match pending.wait() {
        Err(e @ Error::Disconnected(_)) => t.say(
            "script",
            format!(
                "the call to rig-3 failed {:.1} ms later: {e}",
                killed.elapsed().as_secs_f64() * 1e3
            ),
        ),
        other => return Err(unexpected(format!("the crash was not reported: {other:?}"))),
    }

    // Stop (rig-1 at the end of its trial, rig-2 at once), then clean up, in reverse order.
    let stop: StepDone = clients[0].call("exp.stop", &Some(StopArgs { immediately: false }))?;
    t.say(&stop.rig, format!("exp.stop -> {}", stop.status));
    let stop: StepDone = clients[1].call("exp.stop", &Some(StopArgs { immediately: true }))?;
    t.say(
        &stop.rig,
        format!("exp.stop(immediately) -> {}", stop.status),
    );
    for c in clients[..2].iter().rev() {
        let done: StepDone = c.call("exp.cleanup", &())?;
        t.say(&done.rig, format!("exp.cleanup -> {}", done.status));
        if done.status != ExpStatus::Connected {
            return Err(unexpected(format!(
                "{} did not return to connected",
                done.rig
            )));
        }
    }
    for c in &clients {
        c.close();
    }
    rig1.shutdown(Duration::from_secs(1));
    rig2.shutdown(Duration::from_secs(1));
    t.say(
        "script",
        "experiment finished; every rig answered or failed fast, by name",
    );
    Ok(())
}
