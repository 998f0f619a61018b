//! The bytes between a link (or a relay connection) and its socket.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::connection::Connection;

/// Bytes on their way to a socket, kept until it took them: what a link
/// (or a relay connection) counts as queued output.
#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl Outbox {
    /// Takes everything `conn` queued.
    pub fn fill(&mut self, conn: &mut Connection) {
        while let Some(chunk) = conn.poll_transmit() {
            self.bytes += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Takes what `conn` queued until this holds `ahead` bytes or more; the
    /// rest stays queued in `conn`, where the core counts it.
    pub fn fill_ahead(&mut self, conn: &mut Connection, ahead: usize) {
        while self.bytes < ahead {
            let Some(chunk) = conn.poll_transmit() else {
                return;
            };
            self.bytes += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> &VecDeque<Bytes> {
        &self.chunks
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// `n` bytes from the front were written.
    pub fn consume(&mut self, mut n: usize) {
        self.bytes -= n.min(self.bytes);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }

    /// Forgets everything held.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }
}
