//! The media worker: a thread that owns the sans-IO [`Sfu`], the UDP sockets and the clock.
//! Signalling tasks talk to it through a channel; it never shares its state, so the hot path takes no lock.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use std::sync::Arc;

use parley_proto::{ChatMessage, ClientMessage, ErrorCode, RequestId, ServerMessage};
use parley_sfu::{
    PeerDebug, RateLimit, RoomStatus, SessionId, Sfu, SfuConfig, SfuCounters, SfuGauges,
    SpeakerConfig, StoreRequest, Transmit,
};
use tokio::sync::oneshot;

use crate::store::{now_ms, Store};
use crate::udp;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// What signalling tells the worker.
pub enum Command {
    Connect {
        session: SessionId,
        outbox: mpsc::UnboundedSender<ServerMessage>,
    },
    Message {
        session: SessionId,
        message: ClientMessage,
    },
    Disconnect {
        session: SessionId,
    },
    /// A copy of the live state, for status pages and metrics.
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    /// The store thread saved a chat message.
    ChatSaved {
        session: SessionId,
        request_id: Option<RequestId>,
        message: ChatMessage,
    },
}

pub struct Snapshot {
    pub rooms: Vec<RoomStatus>,
    pub peers: Vec<PeerDebug>,
    pub counters: SfuCounters,
    pub gauges: SfuGauges,
}

/// Limits the operator can set.
pub struct Limits {
    pub max_participants: usize,
    pub chat_max_chars: usize,
    pub chat_rate: RateLimit,
    pub speaker: SpeakerConfig,
}

pub struct MediaWorker {
    sockets: Vec<std::net::UdpSocket>,
    config: SfuConfig,
    default_room: String,
    store: Arc<Store>,
}

/// Batches read in one go before the worker sends what they produced and checks its timers.
const RECV_ROUNDS: usize = 4;

impl MediaWorker {
    /// Binds the media port on each address. Fails with a clear message when the port is taken.
    pub fn bind(
        ips: &[IpAddr],
        port: u16,
        public_ip: Option<IpAddr>,
        limits: Limits,
        default_room: String,
        store: Arc<Store>,
    ) -> Result<MediaWorker> {
        let mut sockets = Vec::new();
        let mut candidates = Vec::new();
        for ip in ips {
            let addr = SocketAddr::new(*ip, port);
            let socket = match std::net::UdpSocket::bind(addr) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    bail!("media port {addr} (UDP) is already in use: choose another with --media-port")
                }
                Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
                    tracing::warn!(%addr, "skipping media address: not on this machine");
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("binding media socket {addr}")),
            };
            socket.set_nonblocking(true)?;
            udp::enlarge_buffers(&socket);
            let local = socket.local_addr()?;
            candidates.push((local, local));
            sockets.push(socket);
        }
        if sockets.is_empty() {
            bail!("no media address could be bound: check --media-bind");
        }
        if let Some(public) = public_ip {
            // Behind 1:1 NAT: the router forwards the public address to our first LAN socket.
            let base = candidates
                .iter()
                .map(|(_, l)| *l)
                .find(|l| !l.ip().is_loopback())
                .unwrap_or(candidates[0].1);
            if public != base.ip() {
                candidates.push((SocketAddr::new(public, base.port()), base));
            }
        }
        Ok(MediaWorker {
            sockets,
            config: SfuConfig {
                max_participants: limits.max_participants,
                candidates,
                server_version: env!("CARGO_PKG_VERSION").to_string(),
                chat_max_chars: limits.chat_max_chars,
                chat_rate: limits.chat_rate,
                speaker: limits.speaker,
            },
            default_room,
            store,
        })
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.config.candidates.iter().map(|(a, _)| *a).collect()
    }

    /// Starts the worker thread. It stops when every command sender is dropped.
    pub fn spawn(
        self,
        commands: mpsc::UnboundedReceiver<Command>,
        loopback: mpsc::UnboundedSender<Command>,
    ) -> Result<std::thread::JoinHandle<()>> {
        let handle = std::thread::Builder::new()
            .name("parley-media".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("media worker cannot start: {e}");
                        return;
                    }
                };
                if let Err(e) = runtime.block_on(self.run(commands, loopback)) {
                    tracing::error!("media worker stopped: {e:#}");
                }
            })?;
        Ok(handle)
    }

    async fn run(
        self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        loopback: mpsc::UnboundedSender<Command>,
    ) -> Result<()> {
        let mut sfu = Sfu::new(self.config);
        let stored = self.store.rooms().context("loading rooms")?;
        for name in &stored {
            if let Err(e) = sfu.create_room(name) {
                tracing::warn!("stored room {name:?} skipped: {}", e.message);
            }
        }
        if !self.default_room.is_empty() && !stored.contains(&self.default_room) {
            match sfu.create_room(&self.default_room) {
                Ok(()) => self.store.add_room(&self.default_room, now_ms())?,
                Err(e) => tracing::warn!(
                    "default room {:?} not created: {}",
                    self.default_room,
                    e.message
                ),
            }
        }
        let store_jobs = spawn_store_thread(self.store.clone(), loopback)?;
        let sockets: Vec<(SocketAddr, UdpSocket)> = self
            .sockets
            .into_iter()
            .map(|s| {
                let local = s.local_addr()?;
                Ok((local, UdpSocket::from_std(s)?))
            })
            .collect::<Result<_>>()?;
        let mut outboxes: HashMap<SessionId, mpsc::UnboundedSender<ServerMessage>> = HashMap::new();
        let mut batch = udp::RecvBatch::default();
        let mut outgoing: Vec<Transmit> = Vec::with_capacity(1024);

        loop {
            let deadline = sfu
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(500));
            tokio::select! {
                biased;
                command = commands.recv() => {
                    let Some(command) = command else { return Ok(()) };
                    let now = Instant::now();
                    match command {
                        Command::Connect { session, outbox } => {
                            outboxes.insert(session, outbox);
                            sfu.connect(session);
                        }
                        Command::Message { session, message } => sfu.handle_message(session, message, now),
                        Command::Disconnect { session } => {
                            sfu.disconnect(session, now);
                            outboxes.remove(&session);
                        }
                        Command::Snapshot { reply } => {
                            let _ = reply.send(Snapshot {
                                rooms: sfu.status(),
                                peers: sfu.debug(),
                                counters: sfu.counters(),
                                gauges: sfu.gauges(),
                            });
                        }
                        Command::ChatSaved { session, request_id, message } => {
                            sfu.chat_saved(session, request_id, message);
                        }
                    }
                }
                index = readable_any(&sockets) => {
                    let local = sockets[index].0;
                    // Drain what is waiting (bounded, so timers still run) before sending, so the
                    // transmits it causes leave in batches.
                    for _ in 0..RECV_ROUNDS {
                        match udp::recv_batch(&sockets[index].1, &mut batch) {
                            Ok(_) => {
                                let now = Instant::now();
                                for (source, data) in batch.iter() {
                                    sfu.handle_datagram(now, source, local, data);
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            // ICMP errors (port unreachable from a closed browser) surface here.
                            Err(e) => tracing::trace!("media recv error: {e}"),
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            if sfu.poll_timeout().is_some_and(|t| t <= now) {
                sfu.handle_timeout(now);
            }
            outgoing.extend(sfu.drain_transmits());
            if !outgoing.is_empty() {
                if sockets.len() == 1 {
                    udp::send_batch(
                        &sockets[0].1,
                        outgoing.iter().map(|t| (t.destination, &t.contents[..])),
                    );
                } else {
                    for (i, (local, socket)) in sockets.iter().enumerate() {
                        let mine = |t: &&Transmit| {
                            t.source == *local
                                || (t.source.ip() == local.ip()) // same address, other port: still ours
                                || (i == 0 && !sockets.iter().any(|(l, _)| l.ip() == t.source.ip()))
                        };
                        udp::send_batch(
                            socket,
                            outgoing
                                .iter()
                                .filter(mine)
                                .map(|t| (t.destination, &t.contents[..])),
                        );
                    }
                }
                sfu.recycle(outgoing.drain(..));
            }
            for request in sfu.drain_store_requests() {
                let reply_to = match &request {
                    StoreRequest::LoadHistory { session, .. }
                    | StoreRequest::SaveChat { session, .. } => outboxes.get(session).cloned(),
                    StoreRequest::CreateRoom { .. } => None,
                };
                if store_jobs.send((request, reply_to)).is_err() {
                    tracing::error!("the store thread is gone");
                }
            }
            for (session, message) in sfu.drain_signals() {
                if let Some(outbox) = outboxes.get(&session) {
                    // A closed outbox means the connection is going; its Disconnect follows.
                    let _ = outbox.send(message);
                }
            }
        }
    }
}

type StoreJob = (StoreRequest, Option<mpsc::UnboundedSender<ServerMessage>>);

/// SQLite work runs on its own thread, one job at a time, so chat keeps its order and the media
/// worker never waits for a disk.
fn spawn_store_thread(
    store: Arc<Store>,
    loopback: mpsc::UnboundedSender<Command>,
) -> Result<std::sync::mpsc::Sender<StoreJob>> {
    let (jobs, queue) = std::sync::mpsc::channel::<StoreJob>();
    std::thread::Builder::new()
        .name("parley-store".into())
        .spawn(move || {
            for (request, reply_to) in queue {
                let failed = |reply_to: &Option<mpsc::UnboundedSender<ServerMessage>>,
                              id,
                              what: &str| {
                    if let Some(outbox) = reply_to {
                        let _ = outbox.send(ServerMessage::error(id, ErrorCode::Internal, what));
                    }
                };
                match request {
                    StoreRequest::CreateRoom { name } => {
                        if let Err(e) = store.add_room(&name, now_ms()) {
                            tracing::error!(room = %name, "room not saved: {e:#}");
                        }
                    }
                    StoreRequest::SaveChat {
                        session,
                        request_id,
                        room,
                        author_id,
                        author,
                        text,
                    } => match store.add_chat(&room, author_id, &author, &text, now_ms()) {
                        Ok(message) => {
                            let _ = loopback.send(Command::ChatSaved {
                                session,
                                request_id,
                                message,
                            });
                        }
                        Err(e) => {
                            tracing::error!(room = %room, "chat message not saved: {e:#}");
                            failed(
                                &reply_to,
                                request_id,
                                "the message could not be saved; try again",
                            );
                        }
                    },
                    StoreRequest::LoadHistory {
                        request_id,
                        room,
                        before,
                        limit,
                        ..
                    } => match store.history(&room, before, limit) {
                        Ok((messages, has_more)) => {
                            if let Some(outbox) = &reply_to {
                                let _ = outbox.send(ServerMessage::ChatHistory {
                                    id: request_id,
                                    room,
                                    messages,
                                    has_more,
                                });
                            }
                        }
                        Err(e) => {
                            tracing::error!(room = %room, "history not read: {e:#}");
                            failed(&reply_to, request_id, "history could not be read");
                        }
                    },
                }
            }
        })?;
    Ok(jobs)
}

/// Waits until any socket has datagrams; returns its index.
async fn readable_any(sockets: &[(SocketAddr, UdpSocket)]) -> usize {
    poll_fn(|cx| {
        for (i, (_, socket)) in sockets.iter().enumerate() {
            if socket.poll_recv_ready(cx).is_ready() {
                return Poll::Ready(i);
            }
        }
        Poll::Pending
    })
    .await
}
