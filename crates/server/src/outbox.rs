//! Per-connection outboxes, bounded: a client that stops reading cannot make the server hold memory.
//!
//! Messages wait here, serialized, until the connection's writer sends them. When the client falls
//! behind, `levels` (sent 10 times a second, and stale a moment later) are dropped first, once the
//! outbox is half full. When a message that carries state would not fit, the connection is closed
//! with a reason instead: a client that silently lost a `participant_left` would show a wrong room.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot};

/// Messages an outbox holds at most.
pub const MAX_MESSAGES: usize = 1024;
/// Bytes of serialized messages an outbox holds at most (a few large SDPs fit).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// The close code sent to a client that stopped reading (private use range, RFC 6455 §7.4.2).
pub const CLOSE_TOO_SLOW: u16 = 4008;

/// The control plane's end.
pub struct Outbox {
    messages: mpsc::Sender<Utf8Bytes>,
    queued_bytes: Arc<AtomicUsize>,
    close: Option<oneshot::Sender<String>>,
}

/// The connection writer's end.
pub struct OutboxReader {
    pub messages: Messages,
    /// Why the server closes this connection, once it does.
    pub close: oneshot::Receiver<String>,
}

pub struct Messages {
    messages: mpsc::Receiver<Utf8Bytes>,
    queued_bytes: Arc<AtomicUsize>,
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// A droppable message was dropped (the client is behind).
    Dropped,
    /// The outbox is full: the connection must be closed.
    Overflow,
    /// The connection is gone already.
    Closed,
}

pub fn outbox() -> (Outbox, OutboxReader) {
    let (tx, rx) = mpsc::channel(MAX_MESSAGES);
    let (close_tx, close_rx) = oneshot::channel();
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            messages: tx,
            queued_bytes: bytes.clone(),
            close: Some(close_tx),
        },
        OutboxReader {
            messages: Messages {
                messages: rx,
                queued_bytes: bytes,
            },
            close: close_rx,
        },
    )
}

impl Outbox {
    /// Queues `text`; a `droppable` one is dropped rather than queued behind a backlog.
    pub fn push(&self, text: Utf8Bytes, droppable: bool) -> Queued {
        let len = text.len();
        let bytes = self.queued_bytes.load(Ordering::Relaxed);
        let free = self.messages.capacity();
        if droppable && (free <= MAX_MESSAGES / 2 || bytes + len > MAX_BYTES / 2) {
            return Queued::Dropped;
        }
        if bytes + len > MAX_BYTES {
            return Queued::Overflow;
        }
        match self.messages.try_send(text) {
            Ok(()) => {
                self.queued_bytes.fetch_add(len, Ordering::Relaxed);
                Queued::Yes
            }
            Err(mpsc::error::TrySendError::Full(_)) => Queued::Overflow,
            Err(mpsc::error::TrySendError::Closed(_)) => Queued::Closed,
        }
    }

    /// Closes the connection, telling the client `reason`.
    pub fn close(&mut self, reason: String) {
        if let Some(close) = self.close.take() {
            let _ = close.send(reason);
        }
    }
}

impl Messages {
    /// The next message to send; `None` once the control plane dropped the outbox.
    pub async fn recv(&mut self) -> Option<Utf8Bytes> {
        let text = self.messages.recv().await?;
        self.queued_bytes.fetch_sub(text.len(), Ordering::Relaxed);
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Utf8Bytes {
        "x".repeat(n).into()
    }

    #[tokio::test]
    async fn levels_go_first_then_the_connection_is_closed() {
        let (mut outbox, mut reader) = outbox();
        for _ in 0..MAX_MESSAGES / 2 {
            assert_eq!(outbox.push(text(10), false), Queued::Yes);
        }
        // Half full: levels are dropped, state still fits.
        assert_eq!(outbox.push(text(10), true), Queued::Dropped);
        for _ in MAX_MESSAGES / 2..MAX_MESSAGES {
            assert_eq!(outbox.push(text(10), false), Queued::Yes);
        }
        assert_eq!(outbox.push(text(10), false), Queued::Overflow);
        // Reading frees room.
        assert!(reader.messages.recv().await.is_some());
        assert_eq!(outbox.push(text(10), false), Queued::Yes);
        outbox.close("too slow".into());
        assert_eq!(reader.close.try_recv().ok().as_deref(), Some("too slow"));
    }

    #[tokio::test]
    async fn bytes_are_bounded_too() {
        let (outbox, mut reader) = outbox();
        assert_eq!(outbox.push(text(MAX_BYTES / 2), false), Queued::Yes);
        assert_eq!(outbox.push(text(100), true), Queued::Dropped);
        assert_eq!(outbox.push(text(MAX_BYTES / 2), false), Queued::Yes);
        assert_eq!(outbox.push(text(1), false), Queued::Overflow);
        assert_eq!(
            reader.messages.recv().await.map(|t| t.len()),
            Some(MAX_BYTES / 2)
        );
        assert_eq!(outbox.push(text(1), false), Queued::Yes);
        drop(reader);
        assert_eq!(outbox.push(text(1), false), Queued::Closed);
    }
}
