//! A media worker: one thread that owns a sans-IO [`MediaCore`], its own UDP sockets and the clock,
//! for the rooms the control plane placed on it. No packet crosses a thread and no lock is taken on
//! the forwarding path; commands and events cross bounded channels.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use parley_sfu::{
    MediaCommand, MediaConfig, MediaCore, MediaCounters, MediaEvent, MediaGauges, PeerDebug,
    SpeakerConfig, Transmit,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::plane::ControlInput;
use crate::udp;

/// What the control plane sends a worker.
pub enum WorkerCommand {
    Media(MediaCommand),
    /// A copy of the worker's live state, for status pages and metrics.
    Snapshot(oneshot::Sender<WorkerSnapshot>),
}

pub struct WorkerSnapshot {
    pub peers: Vec<PeerDebug>,
    pub counters: MediaCounters,
    pub gauges: MediaGauges,
}

/// Commands waiting for a worker at most; a worker that far behind is refused more.
pub const COMMAND_QUEUE: usize = 4096;

/// Batches read in one go before the worker sends what they produced and checks its timers.
const RECV_ROUNDS: usize = 4;
/// How soon a worker retries events the control plane had no room for.
const EVENT_RETRY: Duration = Duration::from_millis(5);

/// A worker's sockets, bound before start-up finishes so a taken port is a clear error.
pub struct MediaWorker {
    index: usize,
    sockets: Vec<std::net::UdpSocket>,
    config: MediaConfig,
}

impl MediaWorker {
    /// Binds `port` on each of `ips` for worker `index` (port 0: any free port). With `public_ip`,
    /// also advertises that address for the first LAN socket (1:1 NAT, port forwarding).
    pub fn bind(
        index: usize,
        ips: &[IpAddr],
        port: u16,
        public_ip: Option<IpAddr>,
        speaker: SpeakerConfig,
    ) -> Result<MediaWorker> {
        let mut sockets = Vec::new();
        let mut candidates = Vec::new();
        for ip in ips {
            // With port 0 every address of a worker shares the port the first one got.
            let port = match (port, candidates.first()) {
                (0, Some((_, first))) => SocketAddr::port(first),
                _ => port,
            };
            let addr = SocketAddr::new(*ip, port);
            let socket = match std::net::UdpSocket::bind(addr) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    bail!("media port {addr} (UDP, worker {index}) is already in use: choose another range with --media-port or fewer --media-workers")
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
        let mut config = MediaConfig::new(candidates);
        config.speaker = speaker;
        config.worker = index;
        Ok(MediaWorker {
            index,
            sockets,
            config,
        })
    }

    /// The addresses this worker advertises.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.config.candidates.iter().map(|(a, _)| *a).collect()
    }

    /// Starts the worker thread. It stops when the control plane drops its command sender.
    pub fn spawn(
        self,
        commands: mpsc::Receiver<WorkerCommand>,
        control: mpsc::Sender<ControlInput>,
        recorder: crate::recorder::RecorderTap,
    ) -> Result<std::thread::JoinHandle<()>> {
        let name = format!("parley-media-{}", self.index);
        let handle = std::thread::Builder::new().name(name).spawn(move || {
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
            let index = self.index;
            if let Err(e) = runtime.block_on(self.run(commands, control, recorder)) {
                tracing::error!(worker = index, "media worker stopped: {e:#}");
            }
        })?;
        Ok(handle)
    }

    async fn run(
        self,
        mut commands: mpsc::Receiver<WorkerCommand>,
        control: mpsc::Sender<ControlInput>,
        recorder: crate::recorder::RecorderTap,
    ) -> Result<()> {
        let index = self.index;
        let mut core = MediaCore::new(self.config);
        let sockets: Vec<(SocketAddr, UdpSocket)> = self
            .sockets
            .into_iter()
            .map(|s| {
                let local = s.local_addr()?;
                Ok((local, UdpSocket::from_std(s)?))
            })
            .collect::<Result<_>>()?;
        let mut batch = udp::RecvBatch::default();
        let mut outgoing: Vec<Transmit> = Vec::with_capacity(1024);
        // Events the control plane's queue had no room for yet, oldest first.
        let mut unsent: VecDeque<MediaEvent> = VecDeque::new();
        // One timer, moved only when the deadline does: arming a new one every turn of the loop
        // (a timer-wheel insert and removal per received batch) showed in the profile.
        let mut armed = core.poll_timeout();
        let timer = tokio::time::sleep_until(armed.into());
        tokio::pin!(timer);

        loop {
            let mut deadline = core.poll_timeout();
            if !unsent.is_empty() {
                deadline = deadline.min(Instant::now() + EVENT_RETRY);
            }
            if deadline != armed {
                armed = deadline;
                timer.as_mut().reset(deadline.into());
            }
            tokio::select! {
                biased;
                command = commands.recv() => {
                    let Some(command) = command else { return Ok(()) };
                    match command {
                        WorkerCommand::Media(c) => core.handle_command(c, Instant::now()),
                        WorkerCommand::Snapshot(reply) => {
                            let _ = reply.send(WorkerSnapshot {
                                peers: core.debug(),
                                counters: core.counters(),
                                gauges: core.gauges(),
                            });
                        }
                    }
                }
                socket = readable_any(&sockets) => {
                    let (local, socket) = &sockets[socket];
                    // Drain what is waiting (bounded, so timers still run) before sending, so the
                    // transmits it causes leave in batches.
                    for _ in 0..RECV_ROUNDS {
                        match udp::recv_batch(socket, &mut batch) {
                            Ok(_) => {
                                let now = Instant::now();
                                for (source, data) in batch.iter() {
                                    core.handle_datagram(now, source, *local, data);
                                }
                                if batch.drained() {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            // ICMP errors (port unreachable from a closed browser) surface here.
                            Err(e) => tracing::trace!("media recv error: {e}"),
                        }
                    }
                }
                _ = &mut timer => {}
            }
            let now = Instant::now();
            if core.poll_timeout() <= now {
                core.handle_timeout(now);
            }
            outgoing.extend(core.drain_transmits());
            if !outgoing.is_empty() {
                send_all(&sockets, &outgoing);
                core.recycle(outgoing.drain(..));
            }
            for packet in core.drain_recorded() {
                recorder.offer(packet);
            }
            for event in core.drain_events() {
                // Behind a backlog, a room's levels are stale before they arrive.
                if !unsent.is_empty() && matches!(event, MediaEvent::Levels { .. }) {
                    continue;
                }
                unsent.push_back(event);
            }
            while let Some(event) = unsent.pop_front() {
                match control.try_send(ControlInput::Media(event)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(ControlInput::Media(event))) => {
                        unsent.push_front(event);
                        break;
                    }
                    Err(_) => return Ok(()),
                }
            }
            if unsent.len() > COMMAND_QUEUE {
                tracing::warn!(
                    worker = index,
                    "the control plane is not taking events; dropping levels"
                );
                unsent.retain(|e| !matches!(e, MediaEvent::Levels { .. }));
            }
        }
    }
}

/// Sends each datagram from the socket of its source address.
fn send_all(sockets: &[(SocketAddr, UdpSocket)], outgoing: &[Transmit]) {
    if sockets.len() == 1 {
        udp::send_batch(
            &sockets[0].1,
            outgoing.iter().map(|t| (t.destination, &t.contents[..])),
        );
        return;
    }
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
