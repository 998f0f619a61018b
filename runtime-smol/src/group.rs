//! [`Group`] on smol: named rigs addressed together. Calls go to every rig
//! concurrently or one after another; stop and cleanup run in reverse order;
//! each rig's answer or error comes back by name.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::Event;
use rigwire_core::group::{distinct_names, LOOK_EVERY};
use rigwire_core::lifecycle::methods;
use rigwire_core::{Codec, Config, RigEvent};
use rigwire_core::{
    CodecError, Error, EventLog, GroupError, GroupOrder, GroupResults, Payload, Rigs,
};

use crate::client::Client;
use crate::handler::Handlers;

/// Events rigs have reported, and a wake-up for waits on them.
#[derive(Default)]
struct Events {
    log: Mutex<EventLog>,
    arrived: Event,
}

/// Runs `futures` at once on this task and gives their outputs in order:
/// one that waits (a rig reconnecting, or without room) holds back none of
/// the others.
async fn all_at_once<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    smol::future::poll_fn(|cx| {
        let mut waiting = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => *output = Some(out),
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
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
    /// Connects to every rig at once; each connection listens for `exp.event`.
    ///
    /// # Errors
    /// [`GroupError::Failed`] naming each rig that could not be reached and why;
    /// [`GroupError::SameName`] (before connecting) if two rigs share a name.
    pub async fn connect(rigs: &[(&str, &str)], config: &Config) -> Result<Group, GroupError> {
        Self::connect_with(rigs, config, Handlers::new()).await
    }

    /// As [`connect`](Self::connect), exposing `handlers` to every rig.
    ///
    /// # Errors
    /// [`GroupError::Failed`] naming each rig that could not be reached and why;
    /// [`GroupError::SameName`] (before connecting) if two rigs share a name.
    pub async fn connect_with(
        rigs: &[(&str, &str)],
        config: &Config,
        handlers: Handlers,
    ) -> Result<Group, GroupError> {
        distinct_names(rigs.iter().map(|(name, _)| *name))?;
        let events = Arc::new(Events::default());
        let attempts: Vec<_> = rigs
            .iter()
            .map(|&(name, url)| {
                let (name, url, config, events) = (
                    name.to_owned(),
                    url.to_owned(),
                    config.clone(),
                    Arc::clone(&events),
                );
                let mut handlers = handlers.clone();
                smol::spawn(async move {
                    let rig = name.clone();
                    handlers.expose(methods::EVENT, move |event: RigEvent| {
                        let mut log = rigwire_twin::lock(&events.log);
                        log.record(&rig, &event.name, event.detail);
                        events.arrived.notify(usize::MAX);
                        async { Ok(()) }
                    })?;
                    Client::connect_with(&url, config, handlers).await
                })
            })
            .collect();
        let mut results = GroupResults::new();
        for ((name, _), attempt) in rigs.iter().zip(attempts) {
            results.push(*name, attempt.await);
        }
        Ok(Group {
            rigs: Rigs::new(results.into_result()?)?,
            events,
        })
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

    rigwire_twin::group_calls!([async] [.await]);

    async fn call(
        &self,
        order: GroupOrder,
        method: &str,
        args: impl Fn(Codec) -> Result<Payload, CodecError>,
        timeout: Option<Duration>,
    ) -> GroupResults<Payload> {
        // Each rig's call on its current connection, made again within the
        // call's deadline if it was lost (`Client::call_raw`).
        async fn one(
            client: &Client,
            method: &str,
            args: Result<Payload, CodecError>,
            timeout: Option<Duration>,
        ) -> Result<Payload, Error> {
            client.call_raw(method, args?, timeout).await
        }
        let call = |client| one(client, method, args(client.call_codec()), timeout);
        let rigs = self.rigs.in_order(order);
        let answers = match order {
            GroupOrder::Concurrent => {
                let (names, calls): (Vec<_>, Vec<_>) = rigs.map(|(n, c)| (n, call(c))).unzip();
                names.into_iter().zip(all_at_once(calls).await).collect()
            }
            _ => {
                let mut answers = Vec::new();
                for (name, client) in rigs {
                    answers.push((name, call(client).await));
                }
                answers
            }
        };
        let mut results = GroupResults::new();
        for (name, answer) in answers {
            results.push(name, answer);
        }
        results
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
    pub async fn wait_event(
        &self,
        event: &str,
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, GroupError> {
        let until = rigwire_core::link::after(Instant::now(), timeout);
        let gone = |rig: &str| self.rig(rig).ok().and_then(Client::close_reason);
        loop {
            let listener = self.events.arrived.listen();
            {
                let mut log = rigwire_twin::lock(&self.events.log);
                if log.wait(event, self.names()).is_settled(gone) || Instant::now() >= until {
                    return log.take(event, self.names(), timeout, gone);
                }
            }
            let wake = (Instant::now() + LOOK_EVERY).min(until);
            smol::future::or(listener, async {
                smol::Timer::at(wake).await;
            })
            .await;
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        for (_, client) in self.rigs.in_order(GroupOrder::InOrder) {
            client.close().await;
        }
    }
}

impl std::ops::Deref for Group {
    type Target = Rigs<Client>;
    fn deref(&self) -> &Rigs<Client> {
        &self.rigs
    }
}
