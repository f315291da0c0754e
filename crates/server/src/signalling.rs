//! The `/ws` endpoint: one WebSocket per browser tab, JSON messages in and out (docs/protocol.md).
//! This layer only parses, validates size, rate and liveness, and relays to the control plane; what the
//! control plane sends back waits in the connection's bounded outbox (`outbox.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use parley_proto::{ClientMessage, ErrorCode, ServerMessage, MAX_MESSAGE_BYTES};

use tokio::sync::{mpsc, oneshot};

use crate::edge::{Activity, ConnInfo};
use crate::outbox::{self, OutboxReader, CLOSE_TOO_SLOW};
use crate::plane::ControlInput;
use crate::AppState;

/// How often the server pings, and how long a silent connection lives: a vanished peer (closed laptop,
/// lost Wi-Fi) leaves its room after this, even when no TCP close ever arrives.
const PING_INTERVAL: Duration = Duration::from_millis(500);
const SILENCE_LIMIT: Duration = Duration::from_millis(2500);
/// A client whose socket has taken no byte of a pending frame for this long is dropped like a silent
/// one (it is not reading, or is gone): it leaves its room and its outbox is freed.
const WRITE_STALL: Duration = SILENCE_LIMIT;
/// How long a closing connection waits for the client to take the close frame (and its reason): only
/// the frame on its way and the close frame are held meanwhile.
/// After the close frame is handed to the kernel, how long the server goes on reading (and dropping)
/// what the client sends, unless the client closes first: a slow reader may not have taken the frame
/// yet, and closing a socket with unread input resets it, which destroys the frame.
const CLOSE_LINGER: Duration = Duration::from_secs(15);
/// How long a connection that ends waits for its writer to finish the frame it is on.
const WRITER_FINISH: Duration = Duration::from_secs(2);
const CLOSE_GRACE: Duration = Duration::from_secs(15);
/// Protocol violations end the connection with these codes (RFC 6455 §7.4.1).
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;
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
    conn: Option<Extension<ConnInfo>>,
) -> Response {
    let addr = conn.as_ref().map(|Extension(c)| c.peer.ip());
    let activity = conn.map(|Extension(c)| c.activity);
    ws.max_message_size(FRAME_LIMIT)
        .max_frame_size(FRAME_LIMIT)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| serve(socket, state, activity, addr))
}

/// The close frame for a frame the WebSocket layer refused; `None` for a connection that broke
/// (nothing to tell).
fn violation(error: axum::Error) -> Option<CloseFrame> {
    let error = error.into_inner();
    let (code, reason) = match error.downcast_ref::<tungstenite::Error>()? {
        // The connection went without a close frame: a broken network, not a broken client.
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => return None,
        tungstenite::Error::Utf8(_) => (CLOSE_INVALID_DATA, "text frame is not UTF-8".to_string()),
        tungstenite::Error::Capacity(e) => (CLOSE_TOO_BIG, e.to_string()),
        tungstenite::Error::Protocol(e) => (CLOSE_PROTOCOL_ERROR, e.to_string()),
        _ => return None,
    };
    // A close reason is at most 123 bytes.
    let mut reason = reason;
    while reason.len() > 123 {
        reason.pop();
    }
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

async fn serve(
    socket: WebSocket,
    state: AppState,
    activity: Option<Activity>,
    addr: Option<std::net::IpAddr>,
) {
    let session = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let (sink, mut stream) = socket.split();
    let (outbox, reader) = outbox::outbox();
    if state
        .control
        .send(ControlInput::Connect {
            session,
            outbox,
            addr,
        })
        .await
        .is_err()
    {
        return;
    }
    let (end_tx, end_rx) = oneshot::channel();
    let mut end_tx = Some(end_tx);
    let (stalled_tx, mut stalled_rx) = mpsc::channel(1);
    let mut writer = tokio::spawn(write(sink, reader, activity, end_rx, stalled_tx));
    // Set when the writer is to finish by itself (close frame on its way), not be aborted.
    let mut closing = false;
    // Set once a client that stopped reading was dropped (it left its room): from then on what it
    // sends is read and thrown away until the writer is done, because closing a socket with unread
    // data resets it, and the reset would destroy the close frame on its way.
    let mut dropped = false;
    // Its place in a room is kept a while if the connection breaks (the network went, silence); not
    // after a close frame (it meant to go) or when it stopped reading.
    let mut keep_place = true;
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
                let frame = match incoming {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) => {
                        if let Some(close) = violation(e) {
                            tracing::info!(session, code = close.code, "protocol violation: {}", close.reason);
                            state.signalling_errors.fetch_add(1, Ordering::Relaxed);
                            keep_place = false;
                            closing = dropped || end_tx.take().is_some_and(|tx| tx.send(close).is_ok());
                        }
                        break;
                    }
                    None => {
                        closing |= dropped;
                        break;
                    }
                };
                if dropped {
                    continue;
                }
                last_heard = Instant::now();
                let text = match frame {
                    Message::Text(t) => t,
                    Message::Binary(_) => {
                        state.signalling_errors.fetch_add(1, Ordering::Relaxed);
                        let error = ServerMessage::error(None, ErrorCode::BadMessage, "binary frames are not part of the protocol: send JSON text");
                        if state.control.send(refuse(error)).await.is_err() { break }
                        continue;
                    }
                    Message::Close(_) => {
                        keep_place = false;
                        break;
                    }
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
            _ = check.tick(), if !dropped => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    tracing::info!(session, "connection silent, dropping it");
                    break;
                }
            }
            Some(()) = stalled_rx.recv(), if !dropped => {
                tracing::info!(session, "connection not reading, dropping it");
                dropped = true;
                let _ = state.control.send(ControlInput::Disconnect { session, keep_place: false }).await;
            }
            // The writer ends when the server closes the connection or the socket fails.
            _ = &mut writer => {
                // Its close frame may still be in flight: linger (see CLOSE_LINGER).
                let _ = tokio::time::timeout(CLOSE_LINGER, async {
                    while let Some(Ok(_)) = stream.next().await {}
                })
                .await;
                break;
            }
        }
    }
    if !dropped {
        let _ = state
            .control
            .send(ControlInput::Disconnect {
                session,
                keep_place,
            })
            .await;
    }
    // A closing writer is bounded by CLOSE_GRACE and holds no outbox: let it deliver the close frame.
    // Any other ends once the control plane drops the outbox; it is given a moment to finish the
    // frame it is on (a frame cut in half is garbage to the client), then stopped.
    if !closing {
        let _ = tokio::time::timeout(WRITER_FINISH, &mut writer).await;
        writer.abort();
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Sends what the outbox holds, and pings; on the server's close, the reason; on `end` (a protocol
/// violation), that close frame. When the client stops taking frames it says so on `stalled`, then
/// closes with 4008 once the frame on its way is taken.
async fn write(
    mut sink: Sink,
    mut outbox: OutboxReader,
    activity: Option<Activity>,
    mut end: oneshot::Receiver<CloseFrame>,
    stalled: mpsc::Sender<()>,
) {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    // After a stall, one ping, not the missed ones in a burst.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let frame = tokio::select! {
            biased;
            close = &mut end => {
                if let Ok(close) = close {
                    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(close)))).await;
                }
                return;
            }
            reason = &mut outbox.close => {
                close_too_slow(&mut sink, reason.unwrap_or_default()).await;
                return;
            }
            text = outbox.messages.recv() => match text {
                Some(text) => Message::Text(text),
                None => return,
            },
            _ = ping.tick() => Message::Ping(Vec::new().into()),
        };
        match send(&mut sink, frame, activity.as_ref()).await {
            Sent::Yes => {}
            Sent::Failed => return,
            Sent::Stalled => {
                let _ = stalled.try_send(());
                // The control plane may have closed the outbox with its reason (it overflowed while
                // this frame was stuck); else it drops the outbox once it hears of the disconnect.
                let reason =
                    match tokio::time::timeout(Duration::from_secs(1), &mut outbox.close).await {
                        Ok(Ok(reason)) => reason,
                        _ => format!(
                            "you stopped reading: nothing was taken for {} s",
                            WRITE_STALL.as_secs_f32()
                        ),
                    };
                close_too_slow(&mut sink, reason).await;
                return;
            }
        }
    }
}

enum Sent {
    Yes,
    /// The socket took no byte of it for [`WRITE_STALL`].
    Stalled,
    Failed,
}

/// Sends `frame`, watching that the socket keeps taking bytes (a large frame on a slow link is
/// fine as long as it moves).
async fn send(sink: &mut Sink, frame: Message, activity: Option<&Activity>) -> Sent {
    let started = tokio::time::Instant::now();
    let send = sink.send(frame);
    tokio::pin!(send);
    loop {
        let idle = match activity {
            Some(a) => a.idle().min(started.elapsed()),
            None => started.elapsed(),
        };
        let Some(left) = WRITE_STALL.checked_sub(idle).filter(|d| !d.is_zero()) else {
            return Sent::Stalled;
        };
        match tokio::time::timeout(left, &mut send).await {
            Ok(Ok(())) => return Sent::Yes,
            Ok(Err(_)) => return Sent::Failed,
            Err(_) => continue,
        }
    }
}

/// Closes with 4008 and `reason` once the frame on its way (if any) is taken, within CLOSE_GRACE.
async fn close_too_slow(sink: &mut Sink, reason: String) {
    let close = Message::Close(Some(CloseFrame {
        code: CLOSE_TOO_SLOW,
        reason: reason.into(),
    }));
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(close)).await;
}

#[allow(dead_code)]
const _: () = assert!(MAX_MESSAGE_BYTES < FRAME_LIMIT);
