//! Echo-confirmed messages (from iblutil): a confirmed send resolves when the
//! peer echoes the exact bytes; a wrong echo or none within the echo timeout
//! fails that send only.

use std::time::Instant;

use bytes::Bytes;

use crate::connection::{Connection, Queued, State};
use crate::error::EchoError;
use crate::event::Event;
use crate::message::{Message, PayloadLen};

impl Connection {
    /// Sends `payload` and expects the peer to echo it back unchanged. The
    /// outcome arrives as [`Event::Confirmed`](crate::Event::Confirmed) or
    /// [`Event::ConfirmFailed`](crate::Event::ConfirmFailed) with the returned
    /// sequence number. The peer's application receives it as
    /// [`Event::Message`](crate::Event::Message).
    ///
    /// # Errors
    /// `Disconnected` when closed, `TooMany` when `max_pending_confirms` await
    /// echoes, `Backpressure` while output is backed up, `TooLarge` when the
    /// frame would exceed the limit.
    pub fn confirmed_send(&mut self, payload: Bytes, now: Instant) -> Result<u64, EchoError> {
        self.ready_for_work(now)?;
        let seq = self.next_confirm_seq;
        let deadline = self.now.checked_add(self.config.echo_timeout);
        if self
            .confirms
            .insert(seq, deadline, payload.clone())
            .is_err()
        {
            return Err(EchoError::TooMany(self.confirms.capacity()));
        }
        self.next_confirm_seq += 1;
        if self.state == State::Established {
            let head = Message::Confirm {
                seq,
                payload: PayloadLen(payload.len()),
            };
            if let Err(len) = self.try_send(&head, Some(&payload)) {
                self.confirms.remove(seq);
                return Err(EchoError::TooLarge {
                    len,
                    limit: self.frame_limit,
                });
            }
        } else {
            self.queued.push_back(Queued::Confirm { seq });
        }
        Ok(seq)
    }

    /// The peer's confirmed message: echo the same bytes (no copy), then tell
    /// the application.
    pub(crate) fn on_confirm(&mut self, seq: u64, payload: Bytes) {
        let head = Message::Echo {
            seq,
            payload: PayloadLen(payload.len()),
        };
        // The echo is the size of a frame the peer just sent within the limit.
        let _ = self.try_send(&head, Some(&payload));
        self.events.push_back(Event::Message { seq, payload });
    }

    pub(crate) fn on_echo(&mut self, seq: u64, echoed: &[u8]) {
        let Some(sent) = self.confirms.remove(seq) else {
            self.stats.unknown_echoes += 1;
            return;
        };
        let event = if sent[..] == *echoed {
            Event::Confirmed { seq }
        } else {
            Event::ConfirmFailed {
                seq,
                error: EchoError::Mismatch {
                    sent: sent.len(),
                    echoed: echoed.len(),
                },
            }
        };
        self.events.push_back(event);
    }
}
