//! [`IblGroup`]: iblutil rigs driven together, like iblutil's `Services`:
//! each step is sent (echo-confirmed) to every rig and then each rig's answer
//! of the same event is awaited. Results come back by rig name; a rig that
//! fails or stays silent is reported by name while the others' answers are
//! kept.

use std::time::Duration;

use rigwire_core::group::distinct_names;
use rigwire_core::ibl::{IblEvent, IblMessage};
use rigwire_core::{Error, GroupError, GroupResults};
use serde_json::Value;

use crate::ibl::IblPeer;

/// Named iblutil peers (clients of rigs), driven together.
#[derive(Debug, Clone)]
pub struct IblGroup {
    rigs: Vec<(String, IblPeer)>,
    timeout: Duration,
}

impl IblGroup {
    /// The rigs, in order; each step waits up to `timeout` for each rig's answer
    /// (iblutil's `Services` default is 10 s).
    ///
    /// # Errors
    /// [`GroupError::SameName`] if two rigs share a name: their answers
    /// could not be told apart.
    pub fn new(rigs: Vec<(String, IblPeer)>, timeout: Duration) -> Result<IblGroup, GroupError> {
        distinct_names(rigs.iter().map(|(name, _)| name.as_str()))?;
        Ok(IblGroup { rigs, timeout })
    }

    /// The rigs' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.rigs.iter().map(|(n, _)| n.clone()).collect()
    }

    /// `init` on every rig at once; each rig's answer (its `[1, ...]` message).
    pub async fn init(&self, data: Value) -> GroupResults<IblMessage> {
        self.all(&IblMessage::init(data), IblEvent::Init, false)
            .await
    }

    /// `start` on every rig at once.
    pub async fn start(&self, exp_ref: &str, data: Value) -> GroupResults<IblMessage> {
        self.all(
            &IblMessage::start(Some(exp_ref), data),
            IblEvent::Start,
            false,
        )
        .await
    }

    /// `stop` (or interrupt) on every rig, one at a time in reverse order.
    pub async fn stop(&self, data: Value, immediately: bool) -> GroupResults<IblMessage> {
        let message = IblMessage::stop(data, immediately);
        let event = message.event;
        self.all(&message, event, true).await
    }

    /// `cleanup` on every rig, one at a time in reverse order.
    pub async fn cleanup(&self, data: Value) -> GroupResults<IblMessage> {
        self.all(&IblMessage::cleanup(data), IblEvent::Cleanup, true)
            .await
    }

    /// A status exchange with every rig at once; each rig's `[32, status]`.
    pub async fn status(&self, status: Value) -> GroupResults<IblMessage> {
        self.all(&IblMessage::status(status), IblEvent::Status, false)
            .await
    }

    /// An info exchange with every rig at once; each rig's `[64, status, info]`.
    pub async fn info(&self, status: Value, data: Value) -> GroupResults<IblMessage> {
        self.all(&IblMessage::info(status, data), IblEvent::Info, false)
            .await
    }

    async fn all(
        &self,
        message: &IblMessage,
        answer: IblEvent,
        reverse: bool,
    ) -> GroupResults<IblMessage> {
        let one = |peer: &IblPeer| {
            let peer = peer.clone();
            let message = message.clone();
            let timeout = self.timeout;
            async move {
                peer.confirmed_send(None, &message).await?;
                let (_, reply) = peer.wait_answer(answer, timeout).await?;
                Ok::<IblMessage, Error>(reply)
            }
        };
        let mut results = GroupResults::new();
        if reverse {
            for (name, peer) in self.rigs.iter().rev() {
                results.push(name.clone(), one(peer).await);
            }
        } else {
            let tasks: Vec<_> = self
                .rigs
                .iter()
                .map(|(name, peer)| (name.clone(), smol::spawn(one(peer))))
                .collect();
            for (name, task) in tasks {
                results.push(name, task.await);
            }
        }
        results
    }
}
