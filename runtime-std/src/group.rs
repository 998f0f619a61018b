//! [`Group`]: named rigs addressed together (iblutil's `Services`). Calls go
//! to every rig concurrently or one after another; stop and cleanup run in
//! reverse order; each rig's answer or error comes back by name.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rigwire_core::group::{distinct_names, LOOK_EVERY};
use rigwire_core::lifecycle::methods;
use rigwire_core::{
    CodecError, Error, EventLog, GroupError, GroupOrder, GroupResults, Payload, Rigs,
};

use crate::client::Client;
use crate::handler::Handlers;
use crate::peer::RawPendingCall;
use crate::sync::{all_at_once, lock, sleep_until};
use rigwire_core::{Codec, Config, RigEvent};

/// Events rigs have reported, and a wake-up for waits on them.
#[derive(Default)]
struct Events {
    log: Mutex<EventLog>,
    arrived: Condvar,
}

/// Named rigs, each with its own connection, addressed together; `names`
/// and `rig` are the [`Rigs`]' own, which this dereferences to.
pub struct Group {
    rigs: Rigs<Client>,
    events: Arc<Events>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("rigs", &self.names())
            .finish()
    }
}

impl Group {
    /// Connects to every rig at once. Each connection listens for the rig's
    /// `exp.event` notifications (see [`wait_event`](Self::wait_event)).
    ///
    /// # Errors
    /// [`GroupError::Failed`] naming each rig that could not be reached and why;
    /// [`GroupError::SameName`] (before connecting) if two rigs share a name.
    pub fn connect(rigs: &[(&str, &str)], config: &Config) -> Result<Group, GroupError> {
        Self::connect_with(rigs, config, Handlers::new())
    }

    /// As [`connect`](Self::connect), exposing `handlers` to every rig (which
    /// may call them back).
    ///
    /// # Errors
    /// [`GroupError::Failed`] naming each rig that could not be reached and why;
    /// [`GroupError::SameName`] (before connecting) if two rigs share a name.
    pub fn connect_with(
        rigs: &[(&str, &str)],
        config: &Config,
        handlers: Handlers,
    ) -> Result<Group, GroupError> {
        distinct_names(rigs.iter().map(|(name, _)| *name))?;
        let events = Arc::new(Events::default());
        let connect = |&(name, url): &(&str, &str)| {
            let (rig, events, mut handlers) =
                (name.to_owned(), Arc::clone(&events), handlers.clone());
            handlers.expose(methods::EVENT, move |event: RigEvent| {
                lock(&events.log).record(&rig, &event.name, event.detail);
                events.arrived.notify_all();
                Ok(())
            })?;
            Client::connect_with(url, config.clone(), handlers)
        };
        let outcomes = all_at_once(rigs.iter().collect(), connect);
        let mut results = GroupResults::new();
        for ((name, _), outcome) in rigs.iter().zip(outcomes) {
            results.push(*name, outcome);
        }
        let rigs = Rigs::new(results.into_result()?)?;
        Ok(Group { rigs, events })
    }

    /// A group of clients connected elsewhere (they do not receive `exp.event`).
    ///
    /// # Errors
    /// [`GroupError::SameName`] if two of them share a name.
    pub fn from_clients(rigs: Vec<(String, Client)>) -> Result<Group, GroupError> {
        Ok(Group {
            rigs: Rigs::new(rigs)?,
            events: Arc::default(),
        })
    }

    rigwire_twin::group_calls!([] []);

    fn call(
        &self,
        order: GroupOrder,
        method: &str,
        args: impl Fn(Codec) -> Result<Payload, CodecError>,
        timeout: Option<Duration>,
    ) -> GroupResults<Payload> {
        self.call_while(order, method, args, timeout, None)
            .expect("only a caller's go_on interrupts")
    }

    /// As [`call_raw`](Self::call_raw), asking `go_on` about every 50 ms
    /// while it waits for the rigs' answers (for a binding whose user may
    /// press Ctrl-C). Once it says no, the calls still in flight are
    /// cancelled (each rig is told), no further rig is called, and this
    /// returns `None`.
    pub fn call_raw_while(
        &self,
        order: GroupOrder,
        method: &str,
        args: Payload,
        timeout: Option<Duration>,
        go_on: &dyn Fn() -> bool,
    ) -> Option<GroupResults<Payload>> {
        self.call_while(order, method, |_| Ok(args.clone()), timeout, Some(go_on))
    }

    fn call_while(
        &self,
        order: GroupOrder,
        method: &str,
        args: impl Fn(Codec) -> Result<Payload, CodecError>,
        timeout: Option<Duration>,
        go_on: Option<&dyn Fn() -> bool>,
    ) -> Option<GroupResults<Payload>> {
        // A rig's call, with its arguments encoded in its client's call codec
        // (on this thread: `args` need not be shared between threads).
        let start = |client: &Client, args: Result<Payload, CodecError>| {
            args.map_err(Error::from)
                .and_then(|p| client.start_raw(method, p, timeout))
        };
        // Its answer; `None` once `go_on` said no (dropping the call cancels it).
        let finish = |call: Result<RawPendingCall, Error>| {
            let (mut call, go_on) = match (call, go_on) {
                (Ok(call), Some(go_on)) => (call, go_on),
                (call, _) => return Some(call.and_then(RawPendingCall::wait)),
            };
            loop {
                match call.wait_timeout(LOOK_EVERY) {
                    Err(Error::WaitTimeout(_)) if go_on() => {}
                    Err(Error::WaitTimeout(_)) => return None,
                    done => return Some(done),
                }
            }
        };
        let mut results = GroupResults::new();
        let rigs: Vec<_> = self.rigs.in_order(order).collect();
        if order == GroupOrder::Concurrent {
            // Each rig's call starts on a thread of its own: a rig whose
            // start waits, to reconnect or for room, must not hold back the
            // others' by its deadline.
            let calls = rigs
                .iter()
                .map(|&(_, c)| (c, args(c.call_codec())))
                .collect();
            let starts = all_at_once(calls, |(c, args)| start(c, args));
            // Returning early drops (cancels) the calls not waited for yet.
            for ((name, _), call) in rigs.into_iter().zip(starts) {
                results.push(name, finish(call)?);
            }
        } else {
            for (name, client) in rigs {
                results.push(name, finish(start(client, args(client.call_codec())))?);
            }
        }
        Some(results)
    }

    /// Waits until every rig has reported `event` (with `exp.event`), or the
    /// timeout passes, or a rig that has not reported it loses its
    /// connection. Reports that came before the call count, each for one
    /// wait only ([`EventLog`](rigwire_core::EventLog)).
    ///
    /// # Errors
    /// [`GroupError::Lost`] naming the rigs that did not report and whose
    /// connection ended (at once, not at the timeout), else
    /// [`GroupError::Timeout`] naming the rigs that did not report.
    pub fn wait_event(
        &self,
        event: &str,
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, GroupError> {
        self.wait_event_asking(event, timeout, None)
            .expect("only a caller's go_on interrupts")
    }

    /// As [`wait_event`](Self::wait_event), asking `go_on` about every 50 ms
    /// (for a binding whose user may press Ctrl-C); `None` once it says no.
    pub fn wait_event_while(
        &self,
        event: &str,
        timeout: Duration,
        go_on: &dyn Fn() -> bool,
    ) -> Option<Result<Vec<(String, String)>, GroupError>> {
        self.wait_event_asking(event, timeout, Some(go_on))
    }

    fn wait_event_asking(
        &self,
        event: &str,
        timeout: Duration,
        go_on: Option<&dyn Fn() -> bool>,
    ) -> Option<Result<Vec<(String, String)>, GroupError>> {
        let until = rigwire_core::link::after(Instant::now(), timeout);
        let (names, events) = (self.names(), &self.events);
        let gone = |rig: &str| self.rig(rig).ok().and_then(Client::close_reason);
        let settled = |log: &mut EventLog| log.wait(event, names.clone()).is_settled(gone);
        loop {
            let wake = (Instant::now() + LOOK_EVERY).min(until);
            let (mut log, done) =
                sleep_until(&events.arrived, lock(&events.log), Some(wake), settled);
            if done || Instant::now() >= until {
                return Some(log.take(event, names, timeout, gone));
            }
            drop(log);
            if go_on.is_some_and(|go_on| !go_on()) {
                return None;
            }
        }
    }

    /// Closes every connection.
    pub fn close(&self) {
        for (_, client) in self.rigs.in_order(GroupOrder::InOrder) {
            client.close();
        }
    }
}

impl std::ops::Deref for Group {
    type Target = Rigs<Client>;
    fn deref(&self) -> &Rigs<Client> {
        &self.rigs
    }
}
