//! The tokio shell around a [`Call`]: the signalling WebSocket, one UDP socket and the timers. It joins
//! (creating the room if asked), then moves messages, datagrams and timeouts in and out of the call until
//! told to leave or until the call ends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use parley_proto::{
    ClientMessage, ErrorCode, MediaState, MediaStateChange, ParticipantId, ParticipantInfo,
    RequestId, Role, ServerMessage,
};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::call::{Call, CallConfig, Joined};
use crate::error::ClientError;
use crate::stats::CallStats;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsSink = SplitSink<Ws, Message>;
type WsStream = SplitStream<Ws>;

/// How long a request waits for the server's reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Server messages an [`Session::events`] receiver may fall behind by.
pub const EVENTS: usize = 1024;
/// Datagrams read in one go before the call's output is sent.
const RECV_BATCH: usize = 64;

/// Who joins where, and with what media.
pub struct ClientConfig {
    /// `http://HOST:PORT` (the server's plain-HTTP address), `ws://HOST:PORT/ws` or `HOST:PORT`.
    pub server: String,
    pub room: String,
    pub name: String,
    /// Create the room first when it does not exist.
    pub create_room: bool,
    /// `member` or `viewer` (receive-only); it also sets `call.role`.
    pub role: Role,
    /// Flags to join with.
    pub state: MediaState,
    /// Address of the local UDP socket (port chosen by the system).
    pub local_ip: IpAddr,
    pub call: CallConfig,
    /// Leave by itself when the audio source runs out.
    pub leave_when_audio_ends: bool,
    /// Join as an owner with this key (a room this client creates gives it one).
    pub owner_key: Option<String>,
}

impl ClientConfig {
    pub fn new(server: &str, room: &str, name: &str) -> ClientConfig {
        ClientConfig {
            server: server.to_string(),
            room: room.to_string(),
            name: name.to_string(),
            create_room: false,
            role: Role::Member,
            state: MediaState::default(),
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            call: CallConfig::default(),
            leave_when_audio_ends: false,
            owner_key: None,
        }
    }
}

/// The WebSocket URL for a server address.
pub fn ws_url(server: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: server.to_string(),
        reason: reason.to_string(),
    };
    let s = server.trim();
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_string(), s),
    };
    let scheme = match scheme.as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => {
            return Err(bad(
                "TLS is not supported by this client: use the server's plain-HTTP address (its --http-addr)",
            ))
        }
        _ => return Err(bad("expected http://HOST:PORT or ws://HOST:PORT/ws")),
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let path = path.trim_end_matches('/');
    let path = if path.is_empty() { "/ws" } else { path };
    Ok(format!("{scheme}://{host}{path}"))
}

enum Command {
    Request(
        ClientMessage,
        oneshot::Sender<Result<ServerMessage, ClientError>>,
    ),
    Stats(oneshot::Sender<CallStats>),
    Leave,
}

/// How a session ended, with what it measured.
#[derive(Debug)]
pub struct SessionEnd {
    pub stats: CallStats,
    pub recordings: Vec<PathBuf>,
    /// Why it ended when it was not asked to (a lost connection, the end of the audio).
    pub reason: String,
}

/// One participant in a room, running in its own task.
pub struct Session {
    pub you: ParticipantId,
    pub room: String,
    pub name: String,
    /// The others in the room when we joined.
    pub participants: Vec<ParticipantInfo>,
    /// The room's recording running when we joined (people are told they are recorded).
    pub recording: Option<parley_proto::RecordingNow>,
    pub local_addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<Result<SessionEnd, ClientError>>>,
    next_id: AtomicU64,
    events: tokio::sync::broadcast::Sender<ServerMessage>,
    first_events: std::sync::Mutex<Option<tokio::sync::broadcast::Receiver<ServerMessage>>>,
    /// `http://HOST:PORT`.
    server: String,
}

impl Session {
    /// Connects, joins (creating the room if asked) and starts the media task. A refused join returns
    /// [`ClientError::Refused`] with the server's code and message.
    pub async fn join(config: ClientConfig) -> Result<Session, ClientError> {
        let url = ws_url(&config.server)?;
        // A small read buffer: tungstenite zeroes the free part of it on every read attempt.
        let ws_config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let connecting =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), true);
        let (ws, _) = tokio::time::timeout(REPLY_TIMEOUT, connecting)
            .await
            .map_err(|_| ClientError::Timeout(REPLY_TIMEOUT.as_secs(), "the connection"))?
            .map_err(|e| ClientError::Connect {
                url: url.clone(),
                source: Box::new(e),
            })?;
        let (mut sink, mut stream) = ws.split();
        let mut owner_key_for_join = config.owner_key.clone();
        match next_reply(&mut stream, None, "welcome").await? {
            ServerMessage::Welcome { .. } => {}
            other => return Err(ClientError::Protocol(format!("{other:?}"))),
        }
        if config.create_room {
            send(
                &mut sink,
                &ClientMessage::CreateRoom {
                    id: Some(1),
                    room: config.room.clone(),
                    access: Default::default(),
                    password: None,
                    owner_keys: Vec::new(),
                },
            )
            .await?;
            match next_reply(&mut stream, Some(1), "room_created").await {
                Ok(ServerMessage::RoomCreated { owner_key, .. }) => {
                    tracing::info!(room = %config.room, "room created");
                    owner_key_for_join = owner_key;
                }
                Ok(_) => tracing::info!(room = %config.room, "room created"),
                Err(ClientError::Refused {
                    code: ErrorCode::RoomExists,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        let join_started = Instant::now();
        send(
            &mut sink,
            &ClientMessage::Join {
                id: Some(2),
                room: config.room.clone(),
                name: config.name.clone(),
                state: config.state,
                role: config.role,
                credentials: parley_proto::Credentials {
                    owner_key: owner_key_for_join,
                    ..Default::default()
                },
                resume: None,
                server_offer: false,
            },
        )
        .await?;
        let recording_now;
        let joined = match next_reply(&mut stream, Some(2), "joined").await? {
            ServerMessage::Joined {
                room,
                you,
                name,
                participants,
                active_speaker,
                recording,
                ..
            } => {
                recording_now = recording.map(|r| *r);
                Joined {
                    you,
                    room,
                    name,
                    participants,
                    active_speaker,
                }
            }
            other => return Err(ClientError::Protocol(format!("{other:?}"))),
        };
        let socket = UdpSocket::bind(SocketAddr::new(config.local_ip, 0))
            .await
            .map_err(|e| {
                ClientError::io(format!("binding a UDP socket on {}", config.local_ip), e)
            })?;
        let local_addr = socket
            .local_addr()
            .map_err(|e| ClientError::io("reading the UDP socket's address", e))?;
        let session_info = (
            joined.you,
            joined.room.clone(),
            joined.name.clone(),
            joined.participants.clone(),
        );
        let mut call_config = config.call;
        // The role joined with decides what the call offers.
        call_config.role = config.role;
        let call = Call::new(
            call_config,
            joined,
            local_addr,
            join_started,
            Instant::now(),
        )?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, first_events) = tokio::sync::broadcast::channel(EVENTS);
        // Reading the WebSocket in a task of its own keeps the media loop from polling it on every packet.
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            loop {
                let item = next_message(&mut stream).await;
                let end = item.is_err();
                if incoming_tx.send(item).is_err() || end {
                    return;
                }
            }
        });
        let shell = Shell {
            sink,
            incoming,
            reader,
            socket,
            local: local_addr,
            call,
            commands: command_rx,
            pending: HashMap::new(),
            leave_when_audio_ends: config.leave_when_audio_ends,
            events: events.clone(),
        };
        let task = tokio::spawn(shell.run());
        let (you, room, name, participants) = session_info;
        tracing::info!(participant = you, room = %room, "joined as {name}");
        Ok(Session {
            you,
            room,
            name,
            participants,
            recording: recording_now,
            local_addr,
            commands,
            task: Some(task),
            next_id: AtomicU64::new(100),
            events,
            first_events: std::sync::Mutex::new(Some(first_events)),
            server: crate::http::http_base(&config.server)?,
        })
    }

    /// Messages the server sends (but `levels`): the first call gets every one since `joined` (such as
    /// `studio`, which follows it at once), later calls those from then on. A receiver that falls more
    /// than [`EVENTS`] behind loses the oldest.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<ServerMessage> {
        let first = self
            .first_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        first.unwrap_or_else(|| self.events.subscribe())
    }

    /// The server's plain-HTTP address this session talks to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A fresh request id.
    pub fn next_request_id(&self) -> RequestId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request (it must carry an `id`) and waits for the reply with the same id. An `error` reply
    /// is returned as [`ClientError::Refused`].
    pub async fn request(&self, message: ClientMessage) -> Result<ServerMessage, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request(message, tx))
            .map_err(|_| ClientError::Ended)?;
        tokio::time::timeout(REPLY_TIMEOUT, rx)
            .await
            .map_err(|_| ClientError::Timeout(REPLY_TIMEOUT.as_secs(), "a reply"))?
            .map_err(|_| ClientError::Ended)?
    }

    /// Changes mic/deafen/camera flags; returns the resulting flags.
    pub async fn set_state(&self, change: MediaStateChange) -> Result<MediaState, ClientError> {
        let id = self.next_request_id();
        match self
            .request(ClientMessage::SetState {
                id: Some(id),
                change,
            })
            .await?
        {
            ServerMessage::StateSet { state, .. } => Ok(state),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// Sends a chat message to the room.
    pub async fn chat(&self, text: &str) -> Result<(), ClientError> {
        let id = self.next_request_id();
        self.request(ClientMessage::ChatSend {
            id: Some(id),
            text: text.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// What the call measured so far.
    pub async fn stats(&self) -> Result<CallStats, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats(tx))
            .map_err(|_| ClientError::Ended)?;
        rx.await.map_err(|_| ClientError::Ended)
    }

    /// Waits until the session ends by itself (its audio ran out with `leave_when_audio_ends`, or the
    /// connection was lost).
    pub async fn wait(&mut self) -> Result<SessionEnd, ClientError> {
        let Some(task) = self.task.as_mut() else {
            return Err(ClientError::Ended);
        };
        let result = task.await;
        self.task = None;
        result.map_err(|_| ClientError::Ended)?
    }

    /// Leaves the room, closes the recordings and returns what was measured.
    pub async fn leave(&mut self) -> Result<SessionEnd, ClientError> {
        let _ = self.commands.send(Command::Leave);
        self.wait().await
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Dropping the command sender makes the task leave by itself.
        let _ = self.commands.send(Command::Leave);
    }
}

async fn send(sink: &mut WsSink, message: &ClientMessage) -> Result<(), ClientError> {
    let text = serde_json::to_string(message)
        .map_err(|e| ClientError::Protocol(format!("cannot encode a message: {e}")))?;
    sink.send(Message::Text(text.into())).await?;
    Ok(())
}

/// The request id a server message answers, if any.
fn reply_id(message: &ServerMessage) -> Option<RequestId> {
    match message {
        // The offer's answer is the call's business (it is matched there).
        ServerMessage::Answer { .. } => None,
        m => m.reply_id(),
    }
}

/// Reads one server message, skipping pings and non-text frames.
async fn next_message(stream: &mut WsStream) -> Result<ServerMessage, ClientError> {
    loop {
        match stream.next().await {
            None | Some(Ok(Message::Close(_))) => return Err(ClientError::Closed),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(&text) {
                Ok(m) => return Ok(m),
                Err(e) => tracing::warn!("unreadable server message ({e}): {text}"),
            },
            Some(Ok(_)) => {}
        }
    }
}

/// Waits for the reply to request `id` (or for the first message when `id` is `None`: the welcome).
async fn next_reply(
    stream: &mut WsStream,
    id: Option<RequestId>,
    what: &'static str,
) -> Result<ServerMessage, ClientError> {
    let wait = async {
        loop {
            let m = next_message(stream).await?;
            if id.is_none() {
                return Ok(m);
            }
            if reply_id(&m) == id {
                if let ServerMessage::Error { code, message, .. } = m {
                    return Err(ClientError::Refused { code, message });
                }
                return Ok(m);
            }
            // Pushed room lists and the like: not ours to answer.
        }
    };
    tokio::time::timeout(REPLY_TIMEOUT, wait)
        .await
        .map_err(|_| ClientError::Timeout(REPLY_TIMEOUT.as_secs(), what))?
}

struct Shell {
    sink: WsSink,
    /// Server messages read by the reader task; an error ends the stream.
    incoming: mpsc::UnboundedReceiver<Result<ServerMessage, ClientError>>,
    reader: JoinHandle<()>,
    socket: UdpSocket,
    local: SocketAddr,
    call: Call,
    commands: mpsc::UnboundedReceiver<Command>,
    pending: HashMap<RequestId, oneshot::Sender<Result<ServerMessage, ClientError>>>,
    leave_when_audio_ends: bool,
    events: tokio::sync::broadcast::Sender<ServerMessage>,
}

enum Step {
    Continue,
    Leave(String),
    End(String),
}

impl Shell {
    async fn run(mut self) -> Result<SessionEnd, ClientError> {
        let mut buf = vec![0u8; 2048];
        let reason = loop {
            if let Err(e) = self.flush().await {
                break format!("signalling failed: {e}");
            }
            if let Some(why) = self.call.failure() {
                break why.to_string();
            }
            if self.call.is_closed() {
                break "the media connection closed".to_string();
            }
            if self.leave_when_audio_ends && self.call.audio_ended() {
                self.leave().await;
                break "the audio ended".to_string();
            }
            let deadline = self.call.poll_timeout();
            let step = tokio::select! {
                biased;
                command = self.commands.recv() => self.command(command).await,
                message = self.incoming.recv() => self.message(message),
                received = self.socket.recv_from(&mut buf) => {
                    match received {
                        Ok((n, source)) => {
                            self.call.handle_datagram(Instant::now(), source, self.local, &buf[..n]);
                            for _ in 1..RECV_BATCH {
                                match self.socket.try_recv_from(&mut buf) {
                                    Ok((n, source)) => {
                                        self.call.handle_datagram(Instant::now(), source, self.local, &buf[..n]);
                                    }
                                    Err(_) => break,
                                }
                            }
                        }
                        // ICMP errors (the server went away) surface here.
                        Err(e) => tracing::trace!("UDP receive: {e}"),
                    }
                    Step::Continue
                }
                _ = tokio::time::sleep_until(deadline.into()) => Step::Continue,
            };
            match step {
                Step::Continue => {}
                Step::Leave(why) => {
                    let _ = self.flush().await;
                    self.leave().await;
                    break why;
                }
                Step::End(why) => break why,
            }
            let now = Instant::now();
            if now >= self.call.poll_timeout() {
                self.call.handle_timeout(now);
            }
        };
        self.call.close();
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(ClientError::Ended));
        }
        let _ = self.sink.close().await;
        self.reader.abort();
        Ok(SessionEnd {
            stats: self.call.stats().clone(),
            recordings: self.call.recordings(),
            reason,
        })
    }

    /// Sends what the call produced: signalling, then datagrams.
    async fn flush(&mut self) -> Result<(), ClientError> {
        while let Some(m) = self.call.pop_signal() {
            send(&mut self.sink, &m).await?;
        }
        for t in self.call.drain_transmits() {
            // UDP: a full send buffer drops the datagram, as a network would.
            if let Err(e) = self.socket.try_send_to(&t.contents, t.destination) {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::debug!(destination = %t.destination, "UDP send failed: {e}");
                }
            }
        }
        Ok(())
    }

    async fn command(&mut self, command: Option<Command>) -> Step {
        match command {
            None | Some(Command::Leave) => Step::Leave("left".into()),
            Some(Command::Stats(reply)) => {
                let _ = reply.send(self.call.stats().clone());
                Step::Continue
            }
            Some(Command::Request(message, reply)) => {
                let Some(id) = message.request_id() else {
                    let _ = reply.send(Err(ClientError::Protocol(
                        "requests need an id to be answered".into(),
                    )));
                    return Step::Continue;
                };
                match send(&mut self.sink, &message).await {
                    Ok(()) => {
                        self.pending.insert(id, reply);
                        Step::Continue
                    }
                    Err(e) => {
                        let why = format!("signalling failed: {e}");
                        let _ = reply.send(Err(e));
                        Step::End(why)
                    }
                }
            }
        }
    }

    fn message(&mut self, message: Option<Result<ServerMessage, ClientError>>) -> Step {
        let m = match message {
            None | Some(Err(ClientError::Closed)) => {
                return Step::End("the server closed the signalling connection".into())
            }
            Some(Err(e)) => return Step::End(format!("signalling failed: {e}")),
            Some(Ok(m)) => m,
        };
        if let Some(reply) = reply_id(&m).and_then(|id| self.pending.remove(&id)) {
            let result = match &m {
                ServerMessage::Error { code, message, .. } => Err(ClientError::Refused {
                    code: *code,
                    message: message.clone(),
                }),
                other => Ok(other.clone()),
            };
            let _ = reply.send(result);
            // A refusal is the requester's business, not the call's.
            if matches!(m, ServerMessage::Error { .. }) {
                return Step::Continue;
            }
        }
        self.call.handle_server(&m, Instant::now());
        // Levels come ten times a second and nobody subscribes to them.
        if !matches!(m, ServerMessage::Levels { .. }) && self.events.receiver_count() > 0 {
            let _ = self.events.send(m);
        }
        Step::Continue
    }

    /// Tells the server we leave and waits briefly for `left`.
    async fn leave(&mut self) {
        if send(&mut self.sink, &ClientMessage::Leave { id: Some(1) })
            .await
            .is_err()
        {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(m)) = self.incoming.recv().await {
                if matches!(m, ServerMessage::Left { .. }) {
                    break;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080").unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            ws_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(ws_url("127.0.0.1:8080").unwrap(), "ws://127.0.0.1:8080/ws");
        assert_eq!(ws_url("ws://h:1/ws").unwrap(), "ws://h:1/ws");
        assert!(ws_url("https://h:1").is_err());
        assert!(ws_url("ftp://h").is_err());
        assert!(ws_url("http://").is_err());
    }
}
