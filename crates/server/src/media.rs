//! The media worker: a thread that owns the sans-IO [`Sfu`], the UDP sockets and the clock.
//! Signalling tasks talk to it through a channel; it never shares its state, so the hot path takes no lock.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use parley_proto::{ClientMessage, ServerMessage};
use parley_sfu::{SessionId, Sfu, SfuConfig};
use tokio::io::ReadBuf;
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
}

pub struct MediaWorker {
    sockets: Vec<std::net::UdpSocket>,
    config: SfuConfig,
    default_room: String,
}

/// Largest datagram we read; WebRTC packets stay under ~1200 bytes.
const RECV_BUFFER: usize = 2048;
/// Datagrams read in one go before the worker sends what they produced.
const RECV_BATCH: usize = 64;

impl MediaWorker {
    /// Binds the media port on each address. Fails with a clear message when the port is taken.
    pub fn bind(
        ips: &[IpAddr],
        port: u16,
        public_ip: Option<IpAddr>,
        max_participants: usize,
        default_room: String,
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
                max_participants,
                candidates,
                server_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            default_room,
        })
    }

    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.config.candidates.iter().map(|(a, _)| *a).collect()
    }

    /// Starts the worker thread. It stops when every command sender is dropped.
    pub fn spawn(
        self,
        commands: mpsc::UnboundedReceiver<Command>,
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
                if let Err(e) = runtime.block_on(self.run(commands)) {
                    tracing::error!("media worker stopped: {e:#}");
                }
            })?;
        Ok(handle)
    }

    async fn run(self, mut commands: mpsc::UnboundedReceiver<Command>) -> Result<()> {
        let mut sfu = Sfu::new(self.config);
        if !self.default_room.is_empty() {
            if let Err(e) = sfu.create_room(&self.default_room) {
                tracing::warn!(
                    "default room {:?} not created: {}",
                    self.default_room,
                    e.message
                );
            }
        }
        let sockets: Vec<(SocketAddr, UdpSocket)> = self
            .sockets
            .into_iter()
            .map(|s| {
                let local = s.local_addr()?;
                Ok((local, UdpSocket::from_std(s)?))
            })
            .collect::<Result<_>>()?;
        let mut outboxes: HashMap<SessionId, mpsc::UnboundedSender<ServerMessage>> = HashMap::new();
        let mut buf = vec![0u8; RECV_BUFFER];

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
                    }
                }
                received = recv_any(&sockets, &mut buf) => {
                    let (index, n, source) = received;
                    let now = Instant::now();
                    let local = sockets[index].0;
                    sfu.handle_datagram(now, source, local, &buf[..n]);
                    // Drain what else is waiting before sending, so transmits go out in bursts.
                    for _ in 1..RECV_BATCH {
                        match sockets[index].1.try_recv_from(&mut buf) {
                            Ok((n, source)) => {
                                sfu.handle_datagram(Instant::now(), source, local, &buf[..n]);
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
            let now = Instant::now();
            if sfu.poll_timeout().is_some_and(|t| t <= now) {
                sfu.handle_timeout(now);
            }
            for t in sfu.drain_transmits() {
                let socket = sockets
                    .iter()
                    .find(|(local, _)| *local == t.source)
                    .or_else(|| {
                        sockets
                            .iter()
                            .find(|(local, _)| local.ip() == t.source.ip())
                    })
                    .unwrap_or(&sockets[0]);
                // UDP: a full send buffer drops the datagram, as the network would.
                if let Err(e) = socket.1.try_send_to(&t.contents, t.destination) {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::debug!(destination = %t.destination, "send failed: {e}");
                    }
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

/// Waits for a datagram on any socket: (socket index, length, source).
async fn recv_any(
    sockets: &[(SocketAddr, UdpSocket)],
    buf: &mut [u8],
) -> (usize, usize, SocketAddr) {
    poll_fn(|cx| {
        for (i, (_, socket)) in sockets.iter().enumerate() {
            let mut read = ReadBuf::new(buf);
            match socket.poll_recv_from(cx, &mut read) {
                Poll::Ready(Ok(source)) => return Poll::Ready((i, read.filled().len(), source)),
                // ICMP errors (port unreachable from a closed browser) surface here: keep reading.
                Poll::Ready(Err(e)) => {
                    tracing::trace!("media recv error: {e}");
                    cx.waker().wake_by_ref();
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await
}
