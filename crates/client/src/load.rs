//! The load generator: many participants in one process, in rooms of a given size, each talking part of
//! the time with a synthetic voice whose packets carry latency probes (optionally with synthetic video).
//! After the run it summarises what every participant received.
//!
//! The participants join parley ([`Parley`], what [`run`] uses) or any other server a caller can join
//! the same media to: a [`Backend`] turns each [`Seat`] (which room, which member, what it publishes)
//! into a [`Participant`], and [`run_on`] does the rest (the benchmark drives a Janus videoroom this way).
//! [`LoadArgs`] are the command-line flags of a load run, shared by the programs that run one.

use std::fmt::Display;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use parley_proto::Role;
use serde::Serialize;

use crate::audio::{SyntheticEncoding, SyntheticVoice};
use crate::call::CallConfig;
use crate::clock;
use crate::error::ClientError;
use crate::session::{ClientConfig, Session, SessionEnd};
use crate::stats::{CallStats, MediaKind, Percentiles, Samples};
use crate::video::SyntheticVp8;

/// Most participants one load run may start.
pub const MAX_PARTICIPANTS: usize = 1000;
/// Latency is measured from this long after the last join (or a quarter of the run, if shorter).
const STEADY_AFTER: Duration = Duration::from_secs(1);
/// Longest load run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// One participant of a load run, however it joined.
pub trait Participant: Send + 'static {
    /// What it measured so far; [`ClientError::Ended`] once it has ended by itself.
    fn stats(&self) -> impl Future<Output = Result<CallStats, ClientError>> + Send;
    /// Waits until it ends by itself (and says why).
    fn wait(&mut self) -> impl Future<Output = Result<SessionEnd, ClientError>> + Send;
    /// Leaves and returns the final figures.
    fn leave(&mut self) -> impl Future<Output = Result<SessionEnd, ClientError>> + Send;
}

impl Participant for Session {
    fn stats(&self) -> impl Future<Output = Result<CallStats, ClientError>> + Send {
        Session::stats(self)
    }

    fn wait(&mut self) -> impl Future<Output = Result<SessionEnd, ClientError>> + Send {
        Session::wait(self)
    }

    fn leave(&mut self) -> impl Future<Output = Result<SessionEnd, ClientError>> + Send {
        Session::leave(self)
    }
}

/// One place in a load run, as the load generator hands it to a [`Backend`] to join.
pub struct Seat {
    /// The room's index (from 0) and its name (`<prefix>-<index + 1>`).
    pub room: usize,
    pub room_name: String,
    /// The participant's index in its room (from 0) and its display name.
    pub index: usize,
    pub name: String,
    /// What it publishes (synthetic voice with probes, optional synthetic video; nothing for listeners).
    pub call: CallConfig,
}

/// How the load generator's participants join a server: parley's signalling ([`Parley`]) or another's.
pub trait Backend: Sync {
    type Participant: Participant;
    type Error: Display + Send + 'static;
    /// The server's kind in the JSON summary (`"backend"`).
    const NAME: &'static str;
    /// How the report's first line names it (empty: nothing is said).
    const TITLE: &'static str = "";
    /// Joins `seat` (to `load.server`, from `load.local_ip`); creates the room when missing.
    fn join(
        &self,
        load: &LoadConfig,
        seat: Seat,
    ) -> impl Future<Output = Result<Self::Participant, Self::Error>> + Send + 'static;
}

/// parley itself: `server` is its plain-HTTP address.
#[derive(Debug, Clone, Copy, Default)]
pub struct Parley;

impl Backend for Parley {
    type Participant = Session;
    type Error = ClientError;
    const NAME: &'static str = "parley";

    fn join(
        &self,
        load: &LoadConfig,
        seat: Seat,
    ) -> impl Future<Output = Result<Session, ClientError>> + Send + 'static {
        let mut client = ClientConfig::new(&load.server, &seat.room_name, &seat.name);
        client.create_room = true;
        client.role = Role::Member;
        client.local_ip = load.local_ip;
        client.call = seat.call;
        Session::join(client)
    }
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where the backend joins: parley's plain-HTTP address, or the other server's URL.
    pub server: String,
    pub rooms: usize,
    pub room_size: usize,
    /// How long media flows once everyone has joined.
    pub duration: Duration,
    /// Rooms are named `<prefix>-1`, `<prefix>-2`, …, and created when missing.
    pub room_prefix: String,
    /// Share of time each speaker talks (0 to 1).
    pub talk_fraction: f64,
    /// Speakers per room: the first this many of each room publish, the others only listen.
    /// `None`: everyone speaks.
    pub speakers: Option<usize>,
    /// Bytes per synthetic audio packet (80 bytes every 20 ms is 32 kbit/s).
    pub audio_packet_bytes: usize,
    pub video: bool,
    pub video_bitrate_bps: u32,
    pub video_fps: u32,
    pub seed: u64,
    /// Pause between two joins, to avoid a thundering herd.
    pub join_interval: Duration,
    pub local_ip: IpAddr,
    /// Written (empty) once everyone has joined, when the media phase starts: a benchmark measures the
    /// server from then on.
    pub ready_file: Option<PathBuf>,
}

impl LoadConfig {
    pub fn new(server: &str, rooms: usize, room_size: usize, duration: Duration) -> LoadConfig {
        LoadConfig {
            server: server.to_string(),
            rooms,
            room_size,
            duration,
            room_prefix: "load".into(),
            talk_fraction: 0.5,
            speakers: None,
            audio_packet_bytes: 80,
            video: false,
            video_bitrate_bps: 500_000,
            video_fps: 15,
            seed: 1,
            join_interval: Duration::from_millis(20),
            local_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            ready_file: None,
        }
    }
}

/// The flags of a load run, less the server's address (each program names that its own way:
/// `parley-client load --server URL`, the benchmark's `parley-bench load --janus URL`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Number of rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Participants per room.
    #[arg(long, default_value_t = 4)]
    pub room_size: usize,
    /// Seconds of media once everyone has joined.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Rooms are PREFIX-1, PREFIX-2, … (created when missing).
    #[arg(long, default_value = "load")]
    pub room_prefix: String,
    /// Share of time each speaker talks (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    pub talk: f64,
    /// Speakers per room (the first N who join); the others only listen. Default: everyone speaks.
    #[arg(long)]
    pub speakers: Option<usize>,
    /// Also publish synthetic VP8 video from every speaker.
    #[arg(long)]
    pub video: bool,
    /// Synthetic video bitrate, kbit/s.
    #[arg(long, default_value_t = 500)]
    pub video_kbps: u32,
    /// Synthetic video frame rate.
    #[arg(long, default_value_t = 15)]
    pub video_fps: u32,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = 20)]
    pub join_interval_ms: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Local address for the media sockets.
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: IpAddr,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Create this (empty) file once everyone has joined, when the media phase starts.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

impl LoadArgs {
    /// The run these flags describe, against `server`.
    pub fn config(&self, server: &str) -> Result<LoadConfig, ClientError> {
        if !(0.0..=86_400.0).contains(&self.duration) {
            return Err(ClientError::Media(
                "--duration must be between 0 and 86400 seconds".into(),
            ));
        }
        let mut config = LoadConfig::new(
            server,
            self.rooms,
            self.room_size,
            Duration::from_secs_f64(self.duration),
        );
        config.ready_file = self.ready_file.clone();
        config.room_prefix = self.room_prefix.clone();
        config.talk_fraction = self.talk.clamp(0.0, 1.0);
        config.speakers = self.speakers;
        config.video = self.video;
        config.video_bitrate_bps = self.video_kbps.saturating_mul(1000);
        config.video_fps = self.video_fps;
        config.join_interval = Duration::from_millis(self.join_interval_ms);
        config.seed = self.seed;
        config.local_ip = self.local_ip;
        Ok(config)
    }

    /// Runs the load on `server` through `backend`, prints the report and writes the JSON summary
    /// when `--json` asks for it.
    pub async fn run_on<B: Backend>(
        &self,
        backend: &B,
        server: &str,
    ) -> Result<LoadSummary, ClientError> {
        let summary = run_on(backend, self.config(server)?).await?;
        print!("{}", summary.report());
        if let Some(path) = &self.json {
            let json = serde_json::to_string_pretty(&summary)
                .map_err(|e| ClientError::Media(format!("the JSON summary: {e}")))?;
            std::fs::write(path, json + "\n")
                .map_err(|e| ClientError::io(format!("writing {}", path.display()), e))?;
            println!("summary written to {}", path.display());
        }
        Ok(summary)
    }
}

/// Figures for a group of participants (one room, or all of them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupSummary {
    pub participants: usize,
    /// Joined and got their media connection up.
    pub connected: usize,
    /// Joins the server refused or that failed, with the reason.
    pub failures: Vec<String>,
    /// Incoming streams (receiver, publisher, kind) that delivered anything.
    pub streams_received: usize,
    /// Streams there should have been among the connected participants.
    pub streams_expected: usize,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub packets_lost: u64,
    pub loss_percent: f64,
    /// One-way latency, publisher's send to subscriber's receive, through the server, once everyone
    /// has joined (steady state).
    pub latency_ms: Percentiles,
    /// The same, including the join phase (connections being set up, renegotiations).
    pub latency_with_joins_ms: Percentiles,
    /// Join request to first audio from someone else.
    pub join_ms: Percentiles,
    /// Join request to media connected.
    pub connect_ms: Percentiles,
    /// Frames a participant received of its own media (must be 0).
    pub own_media_received: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomSummary {
    pub room: String,
    #[serde(flatten)]
    pub summary: GroupSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    /// The kind of server the load went to ([`Backend::NAME`]: `"parley"`, …).
    pub backend: String,
    /// How the report names it ([`Backend::TITLE`]).
    #[serde(skip)]
    pub backend_title: String,
    pub rooms: usize,
    pub room_size: usize,
    pub duration_s: f64,
    pub video: bool,
    pub talk_fraction: f64,
    /// Speakers per room (`None`: everyone).
    pub speakers: Option<usize>,
    pub per_room: Vec<RoomSummary>,
    pub totals: GroupSummary,
}

impl LoadSummary {
    /// A plain-text table for people.
    pub fn report(&self) -> String {
        let speakers = match self.speakers {
            Some(n) => format!(", {n} speaking in each"),
            None => String::new(),
        };
        let mut out = format!(
            "load{}: {} rooms x {} participants{speakers}, {:.0} s{}\n",
            if self.backend_title.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.backend_title)
            },
            self.rooms,
            self.room_size,
            self.duration_s,
            if self.video { ", with video" } else { "" }
        );
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        out.push_str(&format!(
            "{:<12} {:>9} {:>9} {:>9} {:>8} {:>11} {:>11} {:>10} {:>10}\n",
            "room",
            "connected",
            "streams",
            "packets",
            "loss %",
            "lat p50 ms",
            "lat p99 ms",
            "join p50",
            "join p99"
        ));
        let line = |name: &str, s: &GroupSummary| {
            format!(
                "{:<12} {:>9} {:>9} {:>9} {:>8.2} {:>11} {:>11} {:>10} {:>10}\n",
                name,
                format!("{}/{}", s.connected, s.participants),
                format!("{}/{}", s.streams_received, s.streams_expected),
                s.packets_received,
                s.loss_percent,
                ms(s.latency_ms.p50),
                ms(s.latency_ms.p99),
                ms(s.join_ms.p50),
                ms(s.join_ms.p99),
            )
        };
        for r in &self.per_room {
            out.push_str(&line(&r.room, &r.summary));
        }
        out.push_str(&line("total", &self.totals));
        let mut failures: Vec<(&String, usize)> = Vec::new();
        for f in &self.totals.failures {
            match failures.iter_mut().find(|(g, _)| *g == f) {
                Some((_, n)) => *n += 1,
                None => failures.push((f, 1)),
            }
        }
        for (f, n) in failures {
            out.push_str(&format!("failed ({n}x): {f}\n"));
        }
        out
    }
}

struct Member<P> {
    room: usize,
    speaker: bool,
    /// The participant, or why it could not join.
    outcome: Result<P, String>,
}

/// One participant's figures, as [`summarise`] takes them.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// It published (audio, and video if asked).
    pub speaker: bool,
    pub stats: Result<CallStats, String>,
}

/// Runs the load on parley and returns its summary. Refuses more than [`MAX_PARTICIPANTS`] or longer
/// than [`MAX_DURATION`].
pub async fn run(config: LoadConfig) -> Result<LoadSummary, ClientError> {
    run_on(&Parley, config).await
}

/// Runs the load on the server `backend` joins, and returns its summary (as [`run`]).
pub async fn run_on<B: Backend>(
    backend: &B,
    config: LoadConfig,
) -> Result<LoadSummary, ClientError> {
    let total = config.rooms.saturating_mul(config.room_size);
    if total == 0 || total > MAX_PARTICIPANTS {
        return Err(ClientError::Media(format!(
            "{total} participants: a load run has 1 to {MAX_PARTICIPANTS}"
        )));
    }
    if config.duration > MAX_DURATION {
        return Err(ClientError::Media(format!(
            "a load run lasts at most {} s",
            MAX_DURATION.as_secs()
        )));
    }
    clock::epoch();
    let room_name = |r: usize| format!("{}-{}", config.room_prefix, r + 1);

    // Join everyone, room by room, a little apart; joins run concurrently.
    let mut joining = Vec::with_capacity(total);
    for i in 0..config.room_size {
        for r in 0..config.rooms {
            let speaker = config.speakers.is_none_or(|n| i < n);
            let seed = config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add((r * 10_000 + i) as u64);
            let call = CallConfig {
                role: Role::Member,
                audio: speaker.then(|| {
                    Box::new(SyntheticVoice::new(
                        seed,
                        config.talk_fraction,
                        SyntheticEncoding::Placeholder(config.audio_packet_bytes),
                    )) as Box<dyn crate::audio::AudioSource>
                }),
                video: (speaker && config.video)
                    .then(|| SyntheticVp8::new(seed, config.video_fps, config.video_bitrate_bps)),
                probe: true,
                record_dir: None,
            };
            let seat = Seat {
                room: r,
                room_name: room_name(r),
                index: i,
                name: format!("load-{}-{}", r + 1, i + 1),
                call,
            };
            let task = tokio::spawn(backend.join(&config, seat));
            joining.push((r, speaker, task));
            tokio::time::sleep(config.join_interval).await;
        }
    }
    let mut members = Vec::with_capacity(total);
    for (room, speaker, handle) in joining {
        let outcome = match handle.await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(ClientError::Ended.to_string()),
        };
        if let Err(e) = &outcome {
            tracing::warn!("{}: {e}", room_name(room));
        }
        members.push(Member {
            room,
            speaker,
            outcome,
        });
    }
    if let Some(path) = &config.ready_file {
        if let Err(e) = std::fs::write(path, b"") {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }
    let started = Instant::now();
    // Latency counts in the steady state: from a moment after the last join, once its renegotiations
    // are done.
    let steady_from = clock::nanos_since_epoch(started + STEADY_AFTER.min(config.duration / 4));
    tracing::info!(
        "everyone joined; media for {} s",
        config.duration.as_secs_f64()
    );
    tokio::time::sleep(config.duration).await;

    // Read everyone's figures before anyone leaves (leaving renegotiates the others).
    let mut results: Vec<(usize, Outcome)> = Vec::with_capacity(total);
    for m in &mut members {
        let stats = match &mut m.outcome {
            Ok(session) => match session.stats().await {
                Ok(stats) => Ok(stats),
                // It ended early: say why.
                Err(ClientError::Ended) => match session.wait().await {
                    Ok(end) => Err(format!("ended early: {}", end.reason)),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.clone()),
        };
        results.push((
            m.room,
            Outcome {
                speaker: m.speaker,
                stats,
            },
        ));
    }
    let ran_for = started.elapsed();
    // Everyone leaves at once.
    let leaving: Vec<_> = members
        .into_iter()
        .filter_map(|m| m.outcome.ok())
        .map(|mut session| tokio::spawn(async move { session.leave().await }))
        .collect();
    for l in leaving {
        if let Ok(Err(e)) = l.await {
            tracing::debug!("leaving: {e}");
        }
    }

    let per_room: Vec<RoomSummary> = (0..config.rooms)
        .map(|r| RoomSummary {
            room: room_name(r),
            summary: summarise(
                results
                    .iter()
                    .filter(|(room, _)| *room == r)
                    .map(|(_, s)| s),
                config.video,
                steady_from,
            ),
        })
        .collect();
    let mut totals = summarise(results.iter().map(|(_, s)| s), config.video, steady_from);
    // Streams only exist within a room.
    totals.streams_expected = per_room.iter().map(|r| r.summary.streams_expected).sum();
    Ok(LoadSummary {
        backend: B::NAME.to_string(),
        backend_title: B::TITLE.to_string(),
        rooms: config.rooms,
        room_size: config.room_size,
        duration_s: ran_for.as_secs_f64(),
        video: config.video,
        talk_fraction: config.talk_fraction,
        speakers: config.speakers,
        per_room,
        totals,
    })
}

/// Adds up the figures of some participants (of one room, for `streams_expected` to be right).
/// `steady_from` (nanoseconds since the process epoch) starts the steady-state latency window.
pub fn summarise<'a>(
    results: impl Iterator<Item = &'a Outcome>,
    video: bool,
    steady_from: u64,
) -> GroupSummary {
    let mut s = GroupSummary::default();
    let mut latency = Samples::default();
    let mut join = Samples::default();
    let mut connect = Samples::default();
    let mut speakers_connected = 0;
    for r in results {
        s.participants += 1;
        let stats = match &r.stats {
            Ok(stats) => stats,
            Err(e) => {
                s.failures.push(e.clone());
                continue;
            }
        };
        if stats.connected {
            s.connected += 1;
            if r.speaker {
                speakers_connected += 1;
            }
        }
        s.own_media_received += stats.own_media_received;
        for st in &stats.streams {
            if st.packets > 0 {
                s.streams_received += 1;
            }
            s.packets_received += st.packets;
            s.bytes_received += st.bytes;
            s.packets_lost += st.lost;
        }
        latency.extend(&stats.latency);
        if let Some(d) = stats.join_time {
            join.push(d);
        }
        if let Some(d) = stats.connect_time {
            connect.push(d);
        }
    }
    let per_publisher = if video { 2 } else { 1 };
    // Every connected participant receives every connected speaker but itself.
    s.streams_expected = speakers_connected * s.connected.saturating_sub(1) * per_publisher;
    let expected = s.packets_received + s.packets_lost;
    s.loss_percent = if expected == 0 {
        0.0
    } else {
        s.packets_lost as f64 * 100.0 / expected as f64
    };
    s.latency_ms = latency.since(steady_from).percentiles();
    s.latency_with_joins_ms = latency.percentiles();
    s.join_ms = join.percentiles();
    s.connect_ms = connect.percentiles();
    s
}

/// Counts streams of one kind in some stats (for reports and tests).
pub fn streams_of(stats: &CallStats, kind: MediaKind) -> usize {
    stats
        .streams
        .iter()
        .filter(|s| s.kind == Some(kind) && s.packets > 0)
        .count()
}
