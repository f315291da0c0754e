//! The `/ws` endpoint: one WebSocket per browser tab, JSON messages in and out (docs/protocol.md).
//! This layer only parses, validates size and liveness, and relays to the media worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use parley_proto::{ClientMessage, ErrorCode, ServerMessage, MAX_MESSAGE_BYTES};
use tokio::sync::mpsc;

use crate::media::Command;
use crate::AppState;

/// How often the server pings, and how long a silent connection lives: a vanished peer (closed laptop,
/// lost Wi-Fi) leaves its room after this, even when no TCP close ever arrives.
const PING_INTERVAL: Duration = Duration::from_millis(500);
const SILENCE_LIMIT: Duration = Duration::from_millis(2500);
/// Frames above this are cut off by the WebSocket layer; below it, oversized messages get an error reply.
const FRAME_LIMIT: usize = 1024 * 1024;
/// Per-connection message rate: a token bucket.
const RATE_PER_SECOND: f64 = 50.0;
const RATE_BURST: f64 = 100.0;

/// tungstenite zero-fills its whole read buffer (128 KiB by default) on every read: per connection
/// that is memory for nothing and a memset per received frame. Big SDPs still fit (it grows).
const READ_BUFFER: usize = 8 * 1024;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.max_message_size(FRAME_LIMIT)
        .max_frame_size(FRAME_LIMIT)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| serve(socket, state))
}

async fn serve(socket: WebSocket, state: AppState) {
    let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut inbox) = mpsc::unbounded_channel::<ServerMessage>();
    if state
        .commands
        .send(Command::Connect {
            session,
            outbox: outbox.clone(),
        })
        .is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval(PING_INTERVAL);
    let mut last_heard = Instant::now();
    let mut tokens = RATE_BURST;
    let mut refilled = Instant::now();

    loop {
        tokio::select! {
            incoming = stream.next() => {
                let Some(Ok(frame)) = incoming else { break };
                last_heard = Instant::now();
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Binary(_) => {
                        state.signalling_errors.fetch_add(1, Ordering::Relaxed);
                        let _ = outbox.send(ServerMessage::error(None, ErrorCode::BadMessage, "binary frames are not part of the protocol: send JSON text"));
                        continue;
                    }
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                let elapsed = refilled.elapsed().as_secs_f64();
                refilled = Instant::now();
                tokens = (tokens + elapsed * RATE_PER_SECOND).min(RATE_BURST);
                let parsed = ClientMessage::parse(text.as_str());
                if tokens < 1.0 {
                    // Refused with the request's id, so the client's request does not hang.
                    let id = parsed.as_ref().ok().and_then(ClientMessage::request_id);
                    state.signalling_errors.fetch_add(1, Ordering::Relaxed);
                    let _ = outbox.send(ServerMessage::error(id, ErrorCode::RateLimited, "too many messages: slow down"));
                    continue;
                }
                tokens -= 1.0;
                match parsed {
                    Ok(message) => {
                        if state.commands.send(Command::Message { session, message }).is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(session, "bad message: {error:?}");
                        state.signalling_errors.fetch_add(1, Ordering::Relaxed);
                        let _ = outbox.send(error);
                    }
                }
            }
            Some(message) = inbox.recv() => {
                if sink.send(Message::Text(message.to_json().into())).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    tracing::info!(session, "connection silent, dropping it");
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = state.commands.send(Command::Disconnect { session });
}

#[allow(dead_code)]
const _: () = assert!(MAX_MESSAGE_BYTES < FRAME_LIMIT);
