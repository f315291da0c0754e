//! The `/ws` endpoint: one WebSocket per browser tab, JSON messages in and out (docs/protocol.md).
//! This layer only parses, validates size, rate and liveness, and relays to the control plane; what the
//! control plane sends back waits in the connection's bounded outbox (`outbox.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use parley_proto::{ClientMessage, ErrorCode, ServerMessage, MAX_MESSAGE_BYTES};
use std::net::SocketAddr;

use crate::outbox::{self, OutboxReader, CLOSE_TOO_SLOW};
use crate::plane::ControlInput;
use crate::AppState;

/// How often the server pings, and how long a silent connection lives: a vanished peer (closed laptop,
/// lost Wi-Fi) leaves its room after this, even when no TCP close ever arrives.
const PING_INTERVAL: Duration = Duration::from_millis(500);
const SILENCE_LIMIT: Duration = Duration::from_millis(2500);
/// A frame the client has not taken in this long ends the connection.
const WRITE_STALL: Duration = Duration::from_secs(15);
/// How long a closing connection waits for the client to take the close frame (and its reason).
const CLOSE_GRACE: Duration = Duration::from_secs(15);
/// Frames above this are cut off by the WebSocket layer; below it, oversized messages get an error reply.
const FRAME_LIMIT: usize = 1024 * 1024;
/// Per-connection message rate: a token bucket.
const RATE_PER_SECOND: f64 = 50.0;
const RATE_BURST: f64 = 100.0;

/// tungstenite zero-fills its whole read buffer (128 KiB by default) on every read: per connection
/// that is memory for nothing and a memset per received frame. Big SDPs still fit (it grows).
const READ_BUFFER: usize = 8 * 1024;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    ws.max_message_size(FRAME_LIMIT)
        .max_frame_size(FRAME_LIMIT)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| serve(socket, state, peer.ip()))
}

async fn serve(socket: WebSocket, state: AppState, addr: std::net::IpAddr) {
    let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let (sink, mut stream) = socket.split();
    let (outbox, reader) = outbox::outbox();
    if state
        .control
        .send(ControlInput::Connect {
            session,
            outbox,
            addr: Some(addr),
        })
        .await
        .is_err()
    {
        return;
    }
    let mut writer = tokio::spawn(write(sink, reader));
    let mut check = tokio::time::interval(PING_INTERVAL);
    let mut last_heard = Instant::now();
    let mut tokens = RATE_BURST;
    let mut refilled = Instant::now();
    // Errors for this client that never reached the control plane go through it all the same,
    // so they queue behind (and never overtake) the replies already waiting.
    let refuse = |message: ServerMessage| ControlInput::Refused { session, message };

    loop {
        tokio::select! {
            incoming = stream.next() => {
                let Some(Ok(frame)) = incoming else { break };
                last_heard = Instant::now();
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Binary(_) => {
                        state.signalling_errors.fetch_add(1, Ordering::Relaxed);
                        let error = ServerMessage::error(None, ErrorCode::BadMessage, "binary frames are not part of the protocol: send JSON text");
                        if state.control.send(refuse(error)).await.is_err() { break }
                        continue;
                    }
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                let elapsed = refilled.elapsed().as_secs_f64();
                refilled = Instant::now();
                tokens = (tokens + elapsed * RATE_PER_SECOND).min(RATE_BURST);
                let parsed = ClientMessage::parse(text.as_str());
                let input = if tokens < 1.0 {
                    // Refused with the request's id, so the client's request does not hang.
                    let id = parsed.as_ref().ok().and_then(ClientMessage::request_id);
                    state.signalling_errors.fetch_add(1, Ordering::Relaxed);
                    refuse(ServerMessage::error(id, ErrorCode::RateLimited, "too many messages: slow down"))
                } else {
                    tokens -= 1.0;
                    match parsed {
                        Ok(message) => ControlInput::Message { session, message },
                        Err(error) => {
                            tracing::debug!(session, "bad message: {error:?}");
                            state.signalling_errors.fetch_add(1, Ordering::Relaxed);
                            refuse(error)
                        }
                    }
                };
                if state.control.send(input).await.is_err() {
                    break;
                }
            }
            _ = check.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    tracing::info!(session, "connection silent, dropping it");
                    break;
                }
            }
            // The writer ends when the server closes the connection or the client stops taking it.
            _ = &mut writer => break,
        }
    }
    writer.abort();
    let _ = state
        .control
        .send(ControlInput::Disconnect { session })
        .await;
}

/// Sends what the outbox holds, and pings; on the server's close, the reason.
async fn write(mut sink: SplitSink<WebSocket, Message>, mut outbox: OutboxReader) {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    loop {
        let frame = tokio::select! {
            biased;
            reason = &mut outbox.close => {
                let reason = reason.unwrap_or_default();
                let close = Message::Close(Some(CloseFrame { code: CLOSE_TOO_SLOW, reason: reason.into() }));
                let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close)).await;
                return;
            }
            text = outbox.messages.recv() => match text {
                Some(text) => Message::Text(text),
                None => return,
            },
            _ = ping.tick() => Message::Ping(Vec::new().into()),
        };
        // A client that takes nothing for this long is gone (or not reading): drop it.
        match tokio::time::timeout(WRITE_STALL, sink.send(frame)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

#[allow(dead_code)]
const _: () = assert!(MAX_MESSAGE_BYTES < FRAME_LIMIT);
