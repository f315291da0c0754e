//! The load generator: many participants in one process, in rooms of a given size, each talking part of
//! the time with a synthetic voice whose packets carry latency probes (optionally with synthetic video).
//! After the run it summarises what every participant received.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use parley_proto::Role;
use serde::Serialize;

use crate::audio::{SyntheticEncoding, SyntheticVoice};
use crate::call::CallConfig;
use crate::clock;
use crate::error::ClientError;
use crate::janus::{JanusConfig, JanusSession};
use crate::session::{ClientConfig, Session, SessionEnd};
use crate::stats::{CallStats, MediaKind, Percentiles, Samples};
use crate::video::SyntheticVp8;

/// Most participants one load run may start.
pub const MAX_PARTICIPANTS: usize = 1000;
/// Latency is measured from this long after the last join (or a quarter of the run, if shorter).
const STEADY_AFTER: Duration = Duration::from_secs(1);
/// Longest load run.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Which server the load goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// parley: `server` is its plain-HTTP address.
    #[default]
    Parley,
    /// A Janus videoroom: `server` is Janus's HTTP API (`http://HOST:8088/janus`). Rooms get numeric ids
    /// derived from the room prefix ([`janus_room_id`]).
    Janus,
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub server: String,
    pub backend: Backend,
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
            backend: Backend::Parley,
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
    /// The server the load went to.
    pub backend: Backend,
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
            if self.backend == Backend::Janus {
                " (Janus videoroom)"
            } else {
                ""
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

/// A participant of either server.
enum Participant {
    Parley(Session),
    Janus(JanusSession),
}

impl Participant {
    async fn stats(&self) -> Result<CallStats, ClientError> {
        match self {
            Participant::Parley(s) => s.stats().await,
            Participant::Janus(s) => s.stats().await,
        }
    }

    async fn wait(&mut self) -> Result<SessionEnd, ClientError> {
        match self {
            Participant::Parley(s) => s.wait().await,
            Participant::Janus(s) => s.wait().await,
        }
    }

    async fn leave(&mut self) -> Result<SessionEnd, ClientError> {
        match self {
            Participant::Parley(s) => s.leave().await,
            Participant::Janus(s) => s.leave().await,
        }
    }
}

struct Member {
    room: usize,
    speaker: bool,
    outcome: Result<Participant, ClientError>,
}

/// The numeric Janus room id of room `index` (from 0) of a run with this room prefix: runs with
/// different prefixes use different rooms.
pub fn janus_room_id(prefix: &str, index: usize) -> u64 {
    // FNV-1a of the prefix, then the room number.
    let mut h: u32 = 0x811c_9dc5;
    for b in prefix.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    u64::from(h % 1_000_000) * 10_000 + index as u64 + 1
}

/// The Janus publisher id of participant `i` of room `r` (from 0): unique in the run.
fn janus_participant_id(r: usize, i: usize) -> u64 {
    (r as u64 + 1) * 10_000 + i as u64 + 1
}

/// One participant's figures, as [`summarise`] takes them.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// It published (audio, and video if asked).
    pub speaker: bool,
    pub stats: Result<CallStats, String>,
}

/// Runs the load and returns its summary. Refuses more than [`MAX_PARTICIPANTS`] or longer than
/// [`MAX_DURATION`].
pub async fn run(config: LoadConfig) -> Result<LoadSummary, ClientError> {
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
            let name = format!("load-{}-{}", r + 1, i + 1);
            let task = match config.backend {
                Backend::Parley => {
                    let mut client = ClientConfig::new(&config.server, &room_name(r), &name);
                    client.create_room = true;
                    client.role = Role::Member;
                    client.local_ip = config.local_ip;
                    client.call = call;
                    tokio::spawn(
                        async move { Session::join(client).await.map(Participant::Parley) },
                    )
                }
                Backend::Janus => {
                    let mut client = JanusConfig::new(
                        &config.server,
                        janus_room_id(&config.room_prefix, r),
                        janus_participant_id(r, i),
                        &name,
                    );
                    client.room_name = room_name(r);
                    client.create_room = true;
                    client.max_publishers = u32::try_from(config.room_size).unwrap_or(u32::MAX);
                    client.local_ip = config.local_ip;
                    client.call = call;
                    tokio::spawn(
                        async move { JanusSession::join(client).await.map(Participant::Janus) },
                    )
                }
            };
            joining.push((r, speaker, task));
            tokio::time::sleep(config.join_interval).await;
        }
    }
    let mut members = Vec::with_capacity(total);
    for (room, speaker, handle) in joining {
        let outcome = match handle.await {
            Ok(o) => o,
            Err(_) => Err(ClientError::Ended),
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
            Err(e) => Err(e.to_string()),
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
        backend: config.backend,
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
