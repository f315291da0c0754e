//! A participant in a Janus videoroom (Janus 1.x, multistream), driven through Janus's HTTP REST API,
//! with the same media machinery as a parley participant (`parley_client`'s [`Call`]): as a
//! [`load::Backend`] ([`Janus`]) it lets the load generator put the same load on Janus as on parley (the
//! benchmark's anchor, `parley-bench load --janus URL`). Only the signalling differs.
//!
//! Janus gives every participant two PeerConnections: a **publisher** handle, to which the client offers
//! its send-only tracks (`publish`), and one **subscriber** handle, to which Janus offers every subscribed
//! stream (`join` as subscriber with a `streams` list, later `subscribe` for publishers who arrive; each
//! offer is answered with `start`). Each is a [`Call`]; both share one UDP socket (str0m tells their
//! datagrams apart). Events come from a long poll (`GET /janus/<session>?maxev=N`); requests go out in
//! order from a task of their own so that the media loop never waits for HTTP.
//!
//! [`lab`] runs Janus in a network namespace (it refuses loopback for ICE) for tests and the benchmark.

mod http;
pub mod lab;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hyper::Method;
use parley_proto::{ClientMessage, ParticipantId, ParticipantInfo, Role, ServerMessage};
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use parley_client::call::{Call, CallConfig, Joined};
use parley_client::load::{self, LoadConfig, Seat};
use parley_client::session::SessionEnd;
use parley_client::stats::CallStats;
use parley_client::ClientError;

use http::Http;

/// What can go wrong with Janus, on top of what the client's machinery reports.
#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    /// Janus refused a request: its error code and reason.
    #[error("Janus refused: {code} ({reason})")]
    Refused { code: i64, reason: String },
    /// An HTTP exchange with Janus's API failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// WebRTC, sockets, a bad URL, an unexpected or missing reply.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// How long a request waits for Janus's reply (or an asynchronous request for its event).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Janus answers a long poll after 30 s at the latest.
const POLL_TIMEOUT: Duration = Duration::from_secs(40);
/// Janus drops sessions idle for 60 s (its default `session_timeout`).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(25);
/// Events fetched by one long poll at most.
const MAX_EVENTS: usize = 20;
/// Datagrams read in one go before the calls' output is sent.
const RECV_BATCH: usize = 64;
const PLUGIN: &str = "janus.plugin.videoroom";

/// Who joins which Janus room, and with what media.
pub struct JanusConfig {
    /// Janus's HTTP API, e.g. `http://127.0.0.2:8088/janus`.
    pub url: String,
    /// Numeric room id.
    pub room: u64,
    /// The room's name in reports (and its description when created).
    pub room_name: String,
    /// Create the room first when it does not exist (opus + vp8, `max_publishers` publishers).
    pub create_room: bool,
    pub max_publishers: u32,
    /// The publisher id to join with (unique in the room; it names our streams in others' figures).
    pub id: ParticipantId,
    pub name: String,
    pub local_ip: IpAddr,
    /// What to publish (a member with audio or video publishes; anyone else only subscribes), and what
    /// to do with what arrives (probes, recordings).
    pub call: CallConfig,
}

impl JanusConfig {
    pub fn new(url: &str, room: u64, id: ParticipantId, name: &str) -> JanusConfig {
        JanusConfig {
            url: url.to_string(),
            room,
            room_name: room.to_string(),
            create_room: false,
            max_publishers: 100,
            id,
            name: name.to_string(),
            local_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            call: CallConfig::default(),
        }
    }
}

/// The load generator's participants in Janus videorooms ([`load::run_on`]): the load's `server` is
/// Janus's HTTP API (`http://HOST:8088/janus`). Rooms get numeric ids derived from the room prefix
/// ([`room_id`]) and are created with the room size as their publisher limit; participants join with
/// fixed publisher ids ([`participant_id`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Janus;

impl load::Backend for Janus {
    type Participant = JanusSession;
    type Error = JanusError;
    const NAME: &'static str = "janus";
    const TITLE: &'static str = "Janus videoroom";

    fn join(
        &self,
        load: &LoadConfig,
        seat: Seat,
    ) -> impl std::future::Future<Output = Result<JanusSession, JanusError>> + Send + 'static {
        let mut client = JanusConfig::new(
            &load.server,
            room_id(&load.room_prefix, seat.room),
            participant_id(seat.room, seat.index),
            &seat.name,
        );
        client.room_name = seat.room_name;
        client.create_room = true;
        client.max_publishers = u32::try_from(load.room_size).unwrap_or(u32::MAX);
        client.local_ip = load.local_ip;
        client.call = seat.call;
        JanusSession::join(client)
    }
}

impl load::Participant for JanusSession {
    fn stats(&self) -> impl std::future::Future<Output = Result<CallStats, ClientError>> + Send {
        JanusSession::stats(self)
    }

    fn wait(
        &mut self,
    ) -> impl std::future::Future<Output = Result<SessionEnd, ClientError>> + Send {
        JanusSession::wait(self)
    }

    fn leave(
        &mut self,
    ) -> impl std::future::Future<Output = Result<SessionEnd, ClientError>> + Send {
        JanusSession::leave(self)
    }
}

/// The numeric Janus room id of room `index` (from 0) of a run with this room prefix: runs with
/// different prefixes use different rooms.
pub fn room_id(prefix: &str, index: usize) -> u64 {
    // FNV-1a of the prefix, then the room number.
    let mut h: u32 = 0x811c_9dc5;
    for b in prefix.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    u64::from(h % 1_000_000) * 10_000 + index as u64 + 1
}

/// The Janus publisher id of participant `i` of room `r` (from 0): unique in the run.
pub fn participant_id(r: usize, i: usize) -> u64 {
    (r as u64 + 1) * 10_000 + i as u64 + 1
}

enum Command {
    Stats(oneshot::Sender<CallStats>),
    Leave,
}

/// What reaches the session task: replies to our requests, and events from the long poll.
enum Incoming {
    Reply {
        transaction: String,
        result: Result<Value, JanusError>,
    },
    Event(Value),
    PollFailed(String),
}

/// A request for the sending task.
struct Outgoing {
    path: String,
    body: Value,
}

/// One participant in a Janus room, running in its own task (the counterpart of
/// [`parley_client::Session`]).
pub struct JanusSession {
    pub you: ParticipantId,
    pub room: String,
    pub name: String,
    /// Publishers in the room when we joined.
    pub participants: Vec<ParticipantInfo>,
    pub local_addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<Result<SessionEnd, ClientError>>>,
}

/// Janus's error in a reply or event, if it carries one (core `error`, or a plugin `error_code`).
fn janus_error(v: &Value) -> Option<JanusError> {
    if v.get("janus").and_then(Value::as_str) == Some("error") {
        let e = v.get("error");
        return Some(JanusError::Refused {
            code: e
                .and_then(|e| e.get("code"))
                .and_then(Value::as_i64)
                .unwrap_or(0),
            reason: e
                .and_then(|e| e.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    let data = plugin_data(v)?;
    let code = data.get("error_code").and_then(Value::as_i64)?;
    Some(JanusError::Refused {
        code,
        reason: data
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

fn plugin_data(v: &Value) -> Option<&Value> {
    v.get("plugindata")?.get("data")
}

/// A Janus id: a number, or a string holding one.
fn id_of(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// (id, display name) of every publisher in a `publishers` list.
fn publishers_of(data: &Value) -> Vec<(u64, String)> {
    data.get("publishers")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|p| {
                    let id = id_of(p.get("id"))?;
                    let name = p
                        .get("display")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    Some((id, name))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn info(id: ParticipantId, name: &str) -> ParticipantInfo {
    ParticipantInfo {
        id,
        name: name.to_string(),
        state: Default::default(),
        role: Role::Member,
        owner: false,
        studio_role: None,
        reconnecting: false,
    }
}

/// POSTs a request and returns Janus's reply, or its error.
async fn exchange(http: &mut Http, path: &str, body: &Value) -> Result<Value, JanusError> {
    let v = http
        .call(Method::POST, path, Some(body), REPLY_TIMEOUT)
        .await?;
    match janus_error(&v) {
        Some(e) => Err(e),
        None => Ok(v),
    }
}

/// Attaches a videoroom handle to the session; returns its id.
async fn attach(
    http: &mut Http,
    tx: &mut Transactions,
    session_path: &str,
) -> Result<u64, JanusError> {
    let reply = exchange(
        http,
        session_path,
        &json!({"janus": "attach", "plugin": PLUGIN, "transaction": tx.next()}),
    )
    .await?;
    id_of(reply.get("data").and_then(|d| d.get("id")))
        .ok_or_else(|| ClientError::Protocol(format!("no handle id in {reply}")).into())
}

/// Reads Janus's events with long polls until the session task goes away.
async fn poll(authority: String, path: String, tx: mpsc::UnboundedSender<Incoming>) {
    let mut http = Http::new(&authority);
    let url = format!("{path}?maxev={MAX_EVENTS}");
    let mut failures = 0;
    loop {
        match http.call(Method::GET, &url, None, POLL_TIMEOUT).await {
            Ok(v) => {
                failures = 0;
                let events = match v {
                    Value::Array(a) => a,
                    other => vec![other],
                };
                for e in events {
                    if e.get("janus").and_then(Value::as_str) == Some("keepalive") {
                        continue;
                    }
                    if tx.send(Incoming::Event(e)).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= 3 {
                    let _ = tx.send(Incoming::PollFailed(e.to_string()));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// Sends requests in order and hands the replies back.
async fn send_requests(
    mut http: Http,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    tx: mpsc::UnboundedSender<Incoming>,
) {
    while let Some(o) = rx.recv().await {
        let transaction = o
            .body
            .get("transaction")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let result = exchange(&mut http, &o.path, &o.body).await;
        if tx
            .send(Incoming::Reply {
                transaction,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Transaction ids of one session.
#[derive(Default)]
struct Transactions(u64);

impl Transactions {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("t{}", self.0)
    }
}

impl JanusSession {
    /// Creates a Janus session with a publisher and a subscriber handle, creates the room if asked, joins
    /// it as a publisher and starts the media task (which publishes and subscribes to everyone). A
    /// refusal returns [`JanusError::Refused`] with Janus's code and reason.
    pub async fn join(config: JanusConfig) -> Result<JanusSession, JanusError> {
        let (authority, base) = http::split_url(&config.url)?;
        let mut http = Http::new(&authority);
        let mut tx = Transactions::default();
        let reply = exchange(
            &mut http,
            &base,
            &json!({"janus": "create", "transaction": tx.next()}),
        )
        .await?;
        let session = id_of(reply.get("data").and_then(|d| d.get("id")))
            .ok_or_else(|| ClientError::Protocol(format!("no session id in {reply}")))?;
        let session_path = format!("{base}/{session}");
        match JanusSession::join_session(config, http, tx, &authority, &session_path).await {
            Ok(s) => Ok(s),
            Err(e) => {
                // Best effort: do not leave the session behind until it times out.
                let mut http = Http::new(&authority);
                let _ = exchange(
                    &mut http,
                    &session_path,
                    &json!({"janus": "destroy", "transaction": "bye"}),
                )
                .await;
                Err(e)
            }
        }
    }

    async fn join_session(
        config: JanusConfig,
        mut http: Http,
        mut tx: Transactions,
        authority: &str,
        session_path: &str,
    ) -> Result<JanusSession, JanusError> {
        let pub_handle = attach(&mut http, &mut tx, session_path).await?;
        let sub_handle = attach(&mut http, &mut tx, session_path).await?;
        let pub_path = format!("{session_path}/{pub_handle}");
        let sub_path = format!("{session_path}/{sub_handle}");

        if config.create_room {
            let created = exchange(
                &mut http,
                &pub_path,
                &json!({
                    "janus": "message",
                    "transaction": tx.next(),
                    "body": {
                        "request": "create",
                        "room": config.room,
                        "description": config.room_name,
                        "publishers": config.max_publishers,
                        "audiocodec": "opus",
                        "videocodec": "vp8",
                        "notify_joining": false,
                    },
                }),
            )
            .await;
            match created {
                Ok(_) => tracing::info!(room = config.room, "Janus room created"),
                // 427: the room exists already (someone else created it).
                Err(JanusError::Refused { code: 427, .. }) => {}
                Err(e) => return Err(e),
            }
        }

        let (in_tx, mut incoming) = mpsc::unbounded_channel();
        let poller = tokio::spawn(poll(
            authority.to_string(),
            session_path.to_string(),
            in_tx.clone(),
        ));
        // Stop the poller whatever happens below.
        struct Abort(Option<JoinHandle<()>>);
        impl Drop for Abort {
            fn drop(&mut self) {
                if let Some(t) = self.0.take() {
                    t.abort();
                }
            }
        }
        let mut poller = Abort(Some(poller));

        let join_started = Instant::now();
        let join_tx = tx.next();
        exchange(
            &mut http,
            &pub_path,
            &json!({
                "janus": "message",
                "transaction": join_tx,
                "body": {
                    "request": "join",
                    "ptype": "publisher",
                    "room": config.room,
                    "id": config.id,
                    "display": config.name,
                },
            }),
        )
        .await?;
        // Events that are not the answer to the join are kept for the media task.
        let mut backlog = Vec::new();
        let wait = async {
            loop {
                match incoming.recv().await {
                    None => return Err(ClientError::Ended.into()),
                    Some(Incoming::PollFailed(why)) => {
                        return Err(JanusError::Http(format!("long poll: {why}")))
                    }
                    Some(Incoming::Reply { .. }) => {}
                    Some(Incoming::Event(e)) => {
                        if e.get("transaction").and_then(Value::as_str) == Some(join_tx.as_str()) {
                            return Ok(e);
                        }
                        backlog.push(e);
                    }
                }
            }
        };
        let joined = tokio::time::timeout(REPLY_TIMEOUT, wait)
            .await
            .map_err(|_| ClientError::Timeout(REPLY_TIMEOUT.as_secs(), "joined"))??;
        if let Some(e) = janus_error(&joined) {
            return Err(e);
        }
        let data =
            plugin_data(&joined).ok_or_else(|| ClientError::Protocol(format!("join: {joined}")))?;
        if data.get("videoroom").and_then(Value::as_str) != Some("joined") {
            return Err(ClientError::Protocol(format!("join: {joined}")).into());
        }
        let you = id_of(data.get("id")).unwrap_or(config.id);
        let private_id = id_of(data.get("private_id"));
        let publishers: Vec<(u64, String)> = publishers_of(data)
            .into_iter()
            .filter(|(id, _)| *id != you)
            .collect();
        let participants: Vec<ParticipantInfo> = publishers
            .iter()
            .map(|(id, name)| info(*id, name))
            .collect();

        let socket = UdpSocket::bind(SocketAddr::new(config.local_ip, 0))
            .await
            .map_err(|e| {
                ClientError::io(format!("binding a UDP socket on {}", config.local_ip), e)
            })?;
        let local = socket
            .local_addr()
            .map_err(|e| ClientError::io("reading the UDP socket's address", e))?;
        let joined = Joined {
            you,
            room: config.room_name.clone(),
            name: config.name.clone(),
            participants: participants.clone(),
            active_speaker: None,
        };
        let mut call = config.call;
        let receiving = CallConfig {
            role: Role::Viewer,
            audio: None,
            video: None,
            probe: call.probe,
            record_dir: call.record_dir.take(),
        };
        let publish_video = call.video.is_some();
        let now = Instant::now();
        let publisher = if call.role == Role::Member && (call.audio.is_some() || publish_video) {
            Some(Call::new(call, joined.clone(), local, join_started, now)?)
        } else {
            None
        };
        let subscriber = Call::answering(receiving, joined, local, join_started, now)?;

        let (out, out_rx) = mpsc::unbounded_channel();
        let sender = tokio::spawn(send_requests(http, out_rx, in_tx));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let mut shell = Shell {
            out,
            incoming,
            tasks: vec![sender],
            socket,
            local,
            publisher,
            subscriber,
            sub_negotiated: false,
            pub_handle,
            sub_handle,
            session_path: session_path.to_string(),
            pub_path,
            sub_path,
            room: config.room,
            private_id,
            publish_video,
            known: HashSet::new(),
            wanted: Vec::new(),
            sub: SubState::Unjoined,
            pending: HashMap::new(),
            tx,
            commands: command_rx,
            next_keepalive: Instant::now() + KEEPALIVE_EVERY,
        };
        if let Some(p) = poller.0.take() {
            shell.tasks.push(p);
        }
        shell.add_publishers(&publishers);
        for e in backlog {
            if let Some(why) = shell.event(e, Instant::now()) {
                tracing::warn!(participant = you, "{why}");
            }
        }
        let task = tokio::spawn(shell.run());
        tracing::info!(
            participant = you,
            room = config.room,
            "joined Janus room as {}",
            config.name
        );
        Ok(JanusSession {
            you,
            room: config.room_name,
            name: config.name,
            participants,
            local_addr: local,
            commands,
            task: Some(task),
        })
    }

    /// What the two connections measured so far, as one participant's figures.
    pub async fn stats(&self) -> Result<CallStats, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Stats(tx))
            .map_err(|_| ClientError::Ended)?;
        rx.await.map_err(|_| ClientError::Ended)
    }

    /// Waits until the session ends by itself (a failed connection, Janus hung up).
    pub async fn wait(&mut self) -> Result<SessionEnd, ClientError> {
        let Some(task) = self.task.as_mut() else {
            return Err(ClientError::Ended);
        };
        let result = task.await;
        self.task = None;
        result.map_err(|_| ClientError::Ended)?
    }

    /// Destroys the Janus session and returns what was measured.
    pub async fn leave(&mut self) -> Result<SessionEnd, ClientError> {
        let _ = self.commands.send(Command::Leave);
        self.wait().await
    }
}

impl Drop for JanusSession {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Leave);
    }
}

/// Where the subscriber handle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    /// Not joined as a subscriber yet: the first feeds are asked for with `join`.
    Unjoined,
    /// A `join`/`subscribe` or its answer (`start`) is under way: further feeds wait.
    Busy,
    /// Joined, nothing under way: more feeds are asked for with `subscribe`.
    Idle,
}

/// What a request in flight was for.
#[derive(Debug, Clone)]
enum Purpose {
    Publish,
    SubscriberJoin(Vec<u64>),
    Subscribe(Vec<u64>),
    Start,
    Destroy,
    Other,
}

struct Shell {
    out: mpsc::UnboundedSender<Outgoing>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    tasks: Vec<JoinHandle<()>>,
    socket: UdpSocket,
    local: SocketAddr,
    /// The publishing connection (none for listeners).
    publisher: Option<Call>,
    /// The receiving connection; it only ever answers Janus's offers.
    subscriber: Call,
    /// Janus has offered the subscriber connection at least once.
    sub_negotiated: bool,
    pub_handle: u64,
    sub_handle: u64,
    session_path: String,
    pub_path: String,
    sub_path: String,
    room: u64,
    private_id: Option<u64>,
    publish_video: bool,
    /// Publishers seen (subscribed to, or about to be).
    known: HashSet<u64>,
    /// Publishers to subscribe to with the next request.
    wanted: Vec<u64>,
    sub: SubState,
    pending: HashMap<String, Purpose>,
    tx: Transactions,
    commands: mpsc::UnboundedReceiver<Command>,
    next_keepalive: Instant,
}

impl Shell {
    async fn run(mut self) -> Result<SessionEnd, ClientError> {
        let mut buf = vec![0u8; 2048];
        let reason = loop {
            self.flush();
            if let Some(why) = self.failure() {
                break why;
            }
            let deadline = self.poll_timeout();
            let end: Option<String> = tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    None | Some(Command::Leave) => {
                        self.flush();
                        Some("left".into())
                    }
                    Some(Command::Stats(reply)) => {
                        let _ = reply.send(self.stats());
                        None
                    }
                },
                incoming = self.incoming.recv() => match incoming {
                    None => Some("the Janus session's tasks ended".into()),
                    Some(Incoming::PollFailed(why)) => Some(format!("Janus long poll failed: {why}")),
                    Some(Incoming::Reply { transaction, result }) => self.reply(&transaction, result),
                    Some(Incoming::Event(e)) => self.event(e, Instant::now()),
                },
                received = self.socket.recv_from(&mut buf) => {
                    match received {
                        Ok((n, source)) => {
                            self.datagram(source, &buf[..n]);
                            for _ in 1..RECV_BATCH {
                                match self.socket.try_recv_from(&mut buf) {
                                    Ok((n, source)) => self.datagram(source, &buf[..n]),
                                    Err(_) => break,
                                }
                            }
                        }
                        Err(e) => tracing::trace!("UDP receive: {e}"),
                    }
                    None
                }
                _ = tokio::time::sleep_until(deadline.into()) => None,
            };
            if let Some(why) = end {
                break why;
            }
            let now = Instant::now();
            if let Some(p) = &mut self.publisher {
                if now >= p.poll_timeout() {
                    p.handle_timeout(now);
                }
            }
            if now >= self.subscriber.poll_timeout() {
                self.subscriber.handle_timeout(now);
            }
            if now >= self.next_keepalive {
                self.next_keepalive = now + KEEPALIVE_EVERY;
                let path = self.session_path.clone();
                self.send(path, json!({"janus": "keepalive"}), Purpose::Other);
            }
        };
        // Whatever the reason, the Janus session goes (rather than waiting for Janus's timeout).
        self.leave().await;
        let stats = self.stats();
        if let Some(p) = &mut self.publisher {
            p.close();
        }
        self.subscriber.close();
        let recordings = self.subscriber.recordings();
        for t in &self.tasks {
            t.abort();
        }
        Ok(SessionEnd {
            stats,
            recordings,
            reason,
        })
    }

    fn failure(&self) -> Option<String> {
        for call in self
            .publisher
            .iter()
            .chain(std::iter::once(&self.subscriber))
        {
            if let Some(why) = call.failure() {
                return Some(why.to_string());
            }
            if call.is_closed() {
                return Some("the media connection closed".into());
            }
        }
        None
    }

    fn poll_timeout(&self) -> Instant {
        let mut t = self.subscriber.poll_timeout().min(self.next_keepalive);
        if let Some(p) = &self.publisher {
            t = t.min(p.poll_timeout());
        }
        t
    }

    /// One participant's figures from its two connections: what it sent and when it was connected come
    /// from the publisher, what it received from the subscriber.
    fn stats(&self) -> CallStats {
        let mut s = self.subscriber.stats().clone();
        let received_connected = s.connected;
        match &self.publisher {
            Some(p) => {
                let ps = p.stats();
                s.sent_audio_packets = ps.sent_audio_packets;
                s.sent_audio_bytes = ps.sent_audio_bytes;
                s.sent_video_frames = ps.sent_video_frames;
                s.sent_video_bytes = ps.sent_video_bytes;
                s.connect_time = ps.connect_time;
                s.connected = ps.connected && (received_connected || !self.sub_negotiated);
                s.server_errors.extend(ps.server_errors.iter().cloned());
            }
            None => s.connected = received_connected,
        }
        s
    }

    fn send(&mut self, path: String, mut body: Value, purpose: Purpose) -> String {
        let transaction = self.tx.next();
        body["transaction"] = Value::String(transaction.clone());
        tracing::trace!(
            participant = self.subscriber.you(),
            "to Janus ({purpose:?}): {body}"
        );
        self.pending.insert(transaction.clone(), purpose);
        // The sending task only ends with this task.
        let _ = self.out.send(Outgoing { path, body });
        transaction
    }

    /// Sends what the connections produced (SDP to Janus, datagrams), and asks for new publishers' feeds.
    fn flush(&mut self) {
        let mut offers = Vec::new();
        if let Some(p) = &mut self.publisher {
            while let Some(m) = p.pop_signal() {
                if let ClientMessage::Offer { sdp, .. } = m {
                    offers.push(sdp);
                }
            }
        }
        for sdp in offers {
            let path = self.pub_path.clone();
            self.send(
                path.clone(),
                json!({
                    "janus": "message",
                    "body": {"request": "publish", "audio": true, "video": self.publish_video},
                    "jsep": {"type": "offer", "sdp": sdp},
                }),
                Purpose::Publish,
            );
            // Our candidates are in the SDP: no more will come.
            self.send(
                path,
                json!({"janus": "trickle", "candidate": {"completed": true}}),
                Purpose::Other,
            );
        }
        let mut answers = Vec::new();
        while let Some(m) = self.subscriber.pop_signal() {
            if let ClientMessage::Answer { sdp, .. } = m {
                answers.push(sdp);
            }
        }
        for sdp in answers {
            let path = self.sub_path.clone();
            self.send(
                path.clone(),
                json!({
                    "janus": "message",
                    "body": {"request": "start"},
                    "jsep": {"type": "answer", "sdp": sdp},
                }),
                Purpose::Start,
            );
            self.send(
                path,
                json!({"janus": "trickle", "candidate": {"completed": true}}),
                Purpose::Other,
            );
        }
        self.subscribe();
        let transmits = self
            .publisher
            .iter_mut()
            .flat_map(|p| p.drain_transmits())
            .chain(self.subscriber.drain_transmits());
        for t in transmits {
            // UDP: a full send buffer drops the datagram, as a network would.
            if let Err(e) = self.socket.try_send_to(&t.contents, t.destination) {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::debug!(destination = %t.destination, "UDP send failed: {e}");
                }
            }
        }
    }

    /// Asks for the feeds of publishers not subscribed to yet, one request at a time.
    fn subscribe(&mut self) {
        if self.wanted.is_empty() || self.sub == SubState::Busy {
            return;
        }
        let feeds: Vec<u64> = std::mem::take(&mut self.wanted);
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let path = self.sub_path.clone();
        let (body, purpose) = if self.sub == SubState::Unjoined {
            let mut body = json!({
                "request": "join",
                "ptype": "subscriber",
                "room": self.room,
                "streams": streams,
            });
            if let Some(p) = self.private_id {
                body["private_id"] = json!(p);
            }
            (body, Purpose::SubscriberJoin(feeds))
        } else {
            (
                json!({"request": "subscribe", "streams": streams}),
                Purpose::Subscribe(feeds),
            )
        };
        self.sub = SubState::Busy;
        self.send(path, json!({"janus": "message", "body": body}), purpose);
    }

    fn add_publishers(&mut self, publishers: &[(u64, String)]) {
        let you = self.subscriber.you();
        for (id, name) in publishers {
            if *id == you || !self.known.insert(*id) {
                continue;
            }
            self.subscriber.handle_server(
                &ServerMessage::ParticipantJoined {
                    participant: info(*id, name),
                },
                Instant::now(),
            );
            self.wanted.push(*id);
        }
    }

    /// A subscription request failed: its feeds are forgotten (a later `publishers` event brings them
    /// back), and the subscriber handle is free again.
    fn subscription_failed(&mut self, purpose: &Purpose, why: &str) {
        let (feeds, state) = match purpose {
            Purpose::SubscriberJoin(f) => (f, SubState::Unjoined),
            Purpose::Subscribe(f) => (f, SubState::Idle),
            _ => return,
        };
        tracing::warn!(
            participant = self.subscriber.you(),
            "Janus refused to subscribe to {feeds:?}: {why}"
        );
        for f in feeds {
            self.known.remove(f);
        }
        self.sub = state;
    }

    /// The reply to one of our requests (an `ack` for asynchronous ones, whose outcome is an event).
    fn reply(&mut self, transaction: &str, result: Result<Value, JanusError>) -> Option<String> {
        let purpose = self.pending.get(transaction).cloned()?;
        match result {
            Err(e) => {
                self.pending.remove(transaction);
                match purpose {
                    Purpose::Publish => return Some(format!("Janus refused to publish: {e}")),
                    Purpose::SubscriberJoin(_) | Purpose::Subscribe(_) => {
                        self.subscription_failed(&purpose, &e.to_string())
                    }
                    Purpose::Start => {
                        tracing::warn!(participant = self.subscriber.you(), "start: {e}");
                        self.sub = SubState::Idle;
                    }
                    Purpose::Destroy | Purpose::Other => {
                        tracing::debug!("Janus request failed: {e}")
                    }
                }
            }
            Ok(_) => match purpose {
                // The answer is in: the next subscription may go.
                Purpose::Start => {
                    self.pending.remove(transaction);
                    self.sub = SubState::Idle;
                }
                // Their outcome comes as an event.
                Purpose::Publish | Purpose::SubscriberJoin(_) | Purpose::Subscribe(_) => {}
                Purpose::Destroy | Purpose::Other => {
                    self.pending.remove(transaction);
                }
            },
        }
        None
    }

    /// An event from the long poll; returns why the session must end, if it must.
    fn event(&mut self, e: Value, now: Instant) -> Option<String> {
        tracing::trace!(participant = self.subscriber.you(), "Janus event: {e}");
        let kind = e.get("janus").and_then(Value::as_str).unwrap_or("");
        let sender = id_of(e.get("sender"));
        match kind {
            "event" => {
                let purpose = e
                    .get("transaction")
                    .and_then(Value::as_str)
                    .and_then(|t| self.pending.remove(t));
                let jsep = e.get("jsep");
                let data = plugin_data(&e).cloned().unwrap_or(Value::Null);
                if sender == Some(self.pub_handle) {
                    return self.publisher_event(&data, jsep, purpose, now);
                }
                if sender == Some(self.sub_handle) {
                    self.subscriber_event(&data, jsep, purpose, now);
                }
                None
            }
            "trickle" => {
                let candidate = e.get("candidate");
                if let Some(line) = candidate
                    .and_then(|c| c.get("candidate"))
                    .and_then(Value::as_str)
                {
                    if sender == Some(self.pub_handle) {
                        if let Some(p) = &mut self.publisher {
                            p.add_remote_candidate(line, now);
                        }
                    } else if sender == Some(self.sub_handle) {
                        self.subscriber.add_remote_candidate(line, now);
                    }
                }
                None
            }
            "hangup" => {
                let reason = e.get("reason").and_then(Value::as_str).unwrap_or("");
                Some(format!("Janus hung up ({reason})"))
            }
            "detached" => Some("Janus detached a handle".into()),
            "timeout" => Some("Janus timed the session out".into()),
            "error" => Some(format!(
                "Janus: {}",
                janus_error(&e).map_or_else(|| e.to_string(), |x| x.to_string())
            )),
            // webrtcup, media, slowlink, ack, success: nothing to do.
            _ => None,
        }
    }

    fn publisher_event(
        &mut self,
        data: &Value,
        jsep: Option<&Value>,
        purpose: Option<Purpose>,
        now: Instant,
    ) -> Option<String> {
        if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
            let why = data.get("error").and_then(Value::as_str).unwrap_or("");
            if matches!(purpose, Some(Purpose::Publish)) {
                return Some(format!("Janus refused to publish: {code} ({why})"));
            }
            tracing::warn!("Janus error {code}: {why}");
            return None;
        }
        if let Some(jsep) = jsep {
            if jsep.get("type").and_then(Value::as_str) == Some("answer") {
                if let (Some(sdp), Some(p)) = (
                    jsep.get("sdp").and_then(Value::as_str),
                    self.publisher.as_mut(),
                ) {
                    p.handle_server(
                        &ServerMessage::Answer {
                            id: None,
                            sdp: sdp.to_string(),
                        },
                        now,
                    );
                }
            }
        }
        let publishers = publishers_of(data);
        if !publishers.is_empty() {
            self.add_publishers(&publishers);
        }
        for key in ["unpublished", "leaving"] {
            if let Some(id) = id_of(data.get(key)) {
                self.subscriber
                    .handle_server(&ServerMessage::ParticipantLeft { participant_id: id }, now);
            }
        }
        None
    }

    fn subscriber_event(
        &mut self,
        data: &Value,
        jsep: Option<&Value>,
        purpose: Option<Purpose>,
        now: Instant,
    ) {
        if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
            let why = format!(
                "{code} ({})",
                data.get("error").and_then(Value::as_str).unwrap_or("")
            );
            match &purpose {
                Some(p) => self.subscription_failed(p, &why),
                None => tracing::warn!("Janus subscriber error {why}"),
            }
            return;
        }
        // Which publisher each of the offered tracks carries.
        if let Some(streams) = data.get("streams").and_then(Value::as_array) {
            for s in streams {
                if let (Some(mid), Some(feed)) = (
                    s.get("mid").and_then(Value::as_str),
                    id_of(s.get("feed_id")),
                ) {
                    self.subscriber.set_track_owner(mid, feed);
                }
            }
        }
        let offer = jsep
            .filter(|j| j.get("type").and_then(Value::as_str) == Some("offer"))
            .and_then(|j| j.get("sdp"))
            .and_then(Value::as_str);
        match offer {
            Some(sdp) => {
                self.sub_negotiated = true;
                self.subscriber.handle_server(
                    &ServerMessage::Offer {
                        sdp: sdp.to_string(),
                    },
                    now,
                );
                if !self.subscriber.has_signal() {
                    // The offer could not be answered: do not wait for a `start` that never goes.
                    self.sub = SubState::Idle;
                }
            }
            None => {
                // `start` done (its event can overtake its ack), or nothing to negotiate after a
                // subscription (the feeds had gone, say): the next subscription may go.
                if matches!(
                    purpose,
                    Some(Purpose::SubscriberJoin(_) | Purpose::Subscribe(_) | Purpose::Start)
                ) {
                    self.sub = SubState::Idle;
                }
            }
        }
    }

    fn datagram(&mut self, source: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        if let Some(p) = &mut self.publisher {
            if p.handle_datagram(now, source, self.local, data) {
                return;
            }
        }
        self.subscriber
            .handle_datagram(now, source, self.local, data);
    }

    /// Destroys the Janus session (its handles and connections go with it), waiting briefly for the
    /// reply.
    async fn leave(&mut self) {
        let path = self.session_path.clone();
        let transaction = self.send(path, json!({"janus": "destroy"}), Purpose::Destroy);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(m) = self.incoming.recv().await {
                if let Incoming::Reply { transaction: t, .. } = m {
                    if t == transaction {
                        break;
                    }
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
    fn errors_and_ids() {
        let e = json!({"janus": "error", "error": {"code": 458, "reason": "No such session"}});
        assert!(matches!(
            janus_error(&e),
            Some(JanusError::Refused { code: 458, .. })
        ));
        let e = json!({"janus": "success", "plugindata": {"plugin": PLUGIN,
            "data": {"videoroom": "event", "error_code": 427, "error": "Room exists"}}});
        assert!(matches!(
            janus_error(&e),
            Some(JanusError::Refused { code: 427, .. })
        ));
        let ok = json!({"janus": "success", "data": {"id": 12}});
        assert!(janus_error(&ok).is_none());
        assert_eq!(id_of(Some(&json!(7))), Some(7));
        assert_eq!(id_of(Some(&json!("8"))), Some(8));
        assert_eq!(id_of(Some(&json!("x"))), None);
        assert_eq!(id_of(None), None);
        let data =
            json!({"publishers": [{"id": 3, "display": "a"}, {"display": "no id"}, {"id": "4"}]});
        assert_eq!(
            publishers_of(&data),
            vec![(3, "a".to_string()), (4, String::new())]
        );
    }
}
