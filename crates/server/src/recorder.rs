//! The room recorder: one thread that takes the packets media workers copy from recorded rooms (a
//! bounded channel: when it falls behind, workers drop and count, forwarding never waits) and appends
//! them to a journal per track; at stop (or at start-up, for a recording a crash interrupted) another
//! thread makes the files from the journals and reports back to the control plane.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use parley_media::journal::{JournalReader, JournalWriter, TrackHeader, TrackMedia};
use parley_proto::{ParticipantId, RecordingFile, RecordingState};
use parley_sfu::{Recorded, RecordedPacket, RecordedSenderReport, RoomId, TrackKind};
use tokio::sync::mpsc;

use crate::control::{RecorderCommand, RecordingOutcome};
use crate::plane::ControlInput;
use crate::store::{journal_dir, recording_dir, JOURNAL_DIR};

/// Packets waiting for the recorder at most (about 4 s of a room of 10 talkers with video).
pub const PACKET_QUEUE: usize = 16_384;

/// What making files has cost so far (for `/metrics` and the benchmark): recordings finalized, the
/// time recorded in them, and the wall time their files took.
#[derive(Debug, Default)]
pub struct FinalizeStats {
    pub recordings: AtomicU64,
    pub recorded_ms: AtomicU64,
    pub making_us: AtomicU64,
}

/// What workers hold to hand packets on, and what they count when it is full.
#[derive(Clone)]
pub struct RecorderTap {
    pub packets: SyncSender<Recorded>,
    pub dropped: Arc<AtomicU64>,
}

impl RecorderTap {
    /// Never waits: a full queue drops the packet (and counts it).
    pub fn offer(&self, packet: Recorded) {
        if self.packets.try_send(packet).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Track {
    writer: JournalWriter,
}

struct Running {
    id: i64,
    room: RoomId,
    started: Instant,
    started_at_ms: i64,
    dir: PathBuf,
    names: HashMap<ParticipantId, String>,
    tracks: HashMap<(ParticipantId, String), Track>,
    /// A write failed: the recording is being stopped (the control plane was told).
    failed: bool,
}

/// Starts the recorder thread; `commands` come from the control plane, packets from `tap`s.
pub fn spawn(
    data_dir: PathBuf,
    commands: std::sync::mpsc::Receiver<RecorderCommand>,
    packets: Receiver<Recorded>,
    control: mpsc::Sender<ControlInput>,
    stats: Arc<FinalizeStats>,
) -> Result<()> {
    std::thread::Builder::new()
        .name("parley-recorder".into())
        .spawn(move || run(&data_dir, commands, packets, control, &stats))
        .context("starting the recorder thread")?;
    Ok(())
}

fn run(
    data_dir: &Path,
    commands: Receiver<RecorderCommand>,
    packets: Receiver<Recorded>,
    control: mpsc::Sender<ControlInput>,
    stats: &Arc<FinalizeStats>,
) {
    let mut running: HashMap<RoomId, Running> = HashMap::new();
    loop {
        // Commands first: a room's start is always seen before its packets.
        loop {
            match commands.try_recv() {
                Ok(command) => handle(data_dir, &mut running, command, &control, stats),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        match packets.recv_timeout(Duration::from_millis(100)) {
            Ok(packet) => {
                append(&mut running, packet, &control);
                // Whatever else is waiting, without a syscall per packet.
                for packet in packets.try_iter().take(4096) {
                    append(&mut running, packet, &control);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        for r in running.values_mut() {
            for t in r.tracks.values_mut() {
                if let Err(e) = t.writer.flush_if_due(now) {
                    fail(r, &format!("{e}"), &control);
                    break;
                }
            }
        }
    }
}

fn handle(
    data_dir: &Path,
    running: &mut HashMap<RoomId, Running>,
    command: RecorderCommand,
    control: &mpsc::Sender<ControlInput>,
    stats: &Arc<FinalizeStats>,
) {
    match command {
        RecorderCommand::Start {
            recording,
            room,
            started_at_ms,
            names,
        } => {
            let dir = recording_dir(data_dir, recording);
            if let Err(e) = std::fs::create_dir_all(journal_dir(data_dir, recording)) {
                tracing::error!(recording, "recording directory not made: {e}");
                let _ = control.blocking_send(ControlInput::RecordingFailed {
                    recording,
                    message: format!("the server could not write the recording: {e}"),
                });
                return;
            }
            tracing::info!(recording, room, "recording started");
            // The files' time 0 is the start everyone was told (`started_at_ms`), not the moment
            // this command arrived here.
            let lag = Duration::from_millis(
                (crate::store::now_ms() - started_at_ms).clamp(0, 2_000) as u64,
            );
            let now = Instant::now();
            running.insert(
                room,
                Running {
                    id: recording,
                    room,
                    started: now.checked_sub(lag).unwrap_or(now),
                    started_at_ms,
                    dir,
                    names: names.into_iter().collect(),
                    tracks: HashMap::new(),
                    failed: false,
                },
            );
        }
        RecorderCommand::Name {
            recording,
            participant,
            name,
        } => {
            if let Some(r) = running.values_mut().find(|r| r.id == recording) {
                r.names.insert(participant, name);
            }
        }
        RecorderCommand::Stop { recording } => {
            let Some(room) = running
                .iter()
                .find(|(_, r)| r.id == recording)
                .map(|(room, _)| *room)
            else {
                // It never ran here (its directory could not be made): no files, but the control
                // plane waits for its outcome all the same, or it would stay "processing".
                let outcome = RecordingOutcome {
                    state: RecordingState::Failed,
                    duration_ms: Some(0),
                    files: Vec::new(),
                    message: None,
                };
                let _ =
                    control.blocking_send(ControlInput::RecordingFinished { recording, outcome });
                return;
            };
            let Some(r) = running.remove(&room) else {
                return;
            };
            let duration_ms = r.started.elapsed().as_millis() as i64;
            for (_, t) in r.tracks {
                if let Err(e) = t.writer.finish() {
                    tracing::warn!(recording, "journal not synced: {e}");
                }
            }
            let dir = r.dir;
            let started_at_ms = r.started_at_ms;
            finish_elsewhere(
                recording,
                dir,
                Some(duration_ms),
                started_at_ms,
                RecordingState::Ready,
                control.clone(),
                stats.clone(),
            );
        }
        RecorderCommand::Recover {
            recording,
            started_at_ms,
        } => {
            let dir = recording_dir(data_dir, recording);
            finish_elsewhere(
                recording,
                dir,
                None,
                started_at_ms,
                RecordingState::Interrupted,
                control.clone(),
                stats.clone(),
            );
        }
    }
}

fn append(
    running: &mut HashMap<RoomId, Running>,
    recorded: Recorded,
    control: &mpsc::Sender<ControlInput>,
) {
    match recorded {
        Recorded::Packet(packet) => append_packet(running, packet, control),
        Recorded::SenderReport(report) => append_sender_report(running, report, control),
    }
}

/// `room`'s recording, if it is running and still writing.
fn writing(running: &mut HashMap<RoomId, Running>, room: RoomId) -> Option<&mut Running> {
    running.get_mut(&room).filter(|r| !r.failed)
}

impl Running {
    /// Microseconds since the recording's start at `received`.
    fn arrival_us(&self, received: Instant) -> u64 {
        received.saturating_duration_since(self.started).as_micros() as u64
    }
}

/// A sender report goes into its track's journal (one that has no packets yet has no journal: its
/// next report will do).
fn append_sender_report(
    running: &mut HashMap<RoomId, Running>,
    report: RecordedSenderReport,
    control: &mpsc::Sender<ControlInput>,
) {
    let Some(r) = writing(running, report.room) else {
        return;
    };
    let arrival_us = r.arrival_us(report.received);
    let Some(track) = r.tracks.get_mut(&(report.participant, report.mid)) else {
        return;
    };
    let written =
        track
            .writer
            .append_sender_report(arrival_us, report.ntp, report.rtp_time, Instant::now());
    if let Err(e) = written {
        fail(r, &format!("{e}"), control);
    }
}

fn append_packet(
    running: &mut HashMap<RoomId, Running>,
    packet: RecordedPacket,
    control: &mpsc::Sender<ControlInput>,
) {
    let Some(r) = writing(running, packet.room) else {
        return;
    };
    let arrival_us = r.arrival_us(packet.received);
    let key = (packet.participant, packet.mid.clone());
    if !r.tracks.contains_key(&key) {
        let header = TrackHeader {
            media: match packet.kind {
                TrackKind::Audio => TrackMedia::Audio,
                TrackKind::Video => TrackMedia::Video,
            },
            codec: packet.codec.to_string(),
            clock_rate: packet.clock_rate,
            payload_type: packet.pt,
            participant_id: packet.participant,
            name: r
                .names
                .get(&packet.participant)
                .cloned()
                .unwrap_or_default(),
            recording_start_unix_ms: r.started_at_ms,
            track_start_us: arrival_us,
        };
        let file = r.dir.join(JOURNAL_DIR).join(journal_name(&packet));
        match JournalWriter::create(&file, &header) {
            Ok(writer) => {
                r.tracks.insert(key.clone(), Track { writer });
            }
            Err(e) => return fail(r, &format!("{e}"), control),
        }
    }
    let Some(track) = r.tracks.get_mut(&key) else {
        return;
    };
    let rtp = rtp_packet(&packet);
    if let Err(e) = track.writer.append(arrival_us, &rtp, Instant::now()) {
        fail(r, &format!("{e}"), control);
    }
}

/// `p12-audio-0.journal`: made of server ids only (the mid is a client's string: only its
/// letters and digits are kept).
fn journal_name(packet: &RecordedPacket) -> String {
    let mid: String = packet
        .mid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    let kind = match packet.kind {
        TrackKind::Audio => "audio",
        TrackKind::Video => "video",
    };
    format!("p{}-{kind}-{mid}.journal", packet.participant)
}

/// The packet as RTP again: the header the publisher's stream had (less its extensions).
fn rtp_packet(packet: &RecordedPacket) -> Vec<u8> {
    let mut rtp = Vec::with_capacity(12 + packet.payload.len());
    rtp.push(0x80);
    rtp.push((u8::from(packet.marker) << 7) | (packet.pt & 0x7f));
    rtp.extend_from_slice(&(packet.seq as u16).to_be_bytes());
    rtp.extend_from_slice(&packet.timestamp.to_be_bytes());
    rtp.extend_from_slice(&(packet.participant as u32).to_be_bytes());
    rtp.extend_from_slice(&packet.payload);
    rtp
}

/// A write failed (disk full, say): the room is told and the recording stops; what was written is
/// kept and made into files.
fn fail(r: &mut Running, message: &str, control: &mpsc::Sender<ControlInput>) {
    if r.failed {
        return;
    }
    r.failed = true;
    tracing::error!(
        recording = r.id,
        room = r.room,
        "recording stopped: {message}"
    );
    let _ = control.blocking_send(ControlInput::RecordingFailed {
        recording: r.id,
        message: format!("the recording stopped: the server could not write it ({message})"),
    });
}

/// Makes the files on a thread of their own (decoding and encoding take seconds) and reports.
fn finish_elsewhere(
    recording: i64,
    dir: PathBuf,
    duration_ms: Option<i64>,
    started_at_ms: i64,
    state: RecordingState,
    control: mpsc::Sender<ControlInput>,
    stats: Arc<FinalizeStats>,
) {
    let spawned = std::thread::Builder::new()
        .name("parley-finalize".into())
        .spawn(move || {
            lower_priority();
            let making = Instant::now();
            let made = make_files(&dir, duration_ms, started_at_ms);
            if let Ok((_, recorded_ms)) = &made {
                stats.recordings.fetch_add(1, Ordering::Relaxed);
                stats
                    .recorded_ms
                    .fetch_add((*recorded_ms).max(0) as u64, Ordering::Relaxed);
                stats
                    .making_us
                    .fetch_add(making.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
            let outcome = match made {
                Ok((files, duration_ms)) => RecordingOutcome {
                    state,
                    duration_ms: Some(duration_ms),
                    files,
                    message: (state == RecordingState::Interrupted).then(|| {
                        "the server stopped during the recording: it ends there".to_string()
                    }),
                },
                Err(e) => {
                    tracing::error!(recording, "recording files not made: {e:#}");
                    RecordingOutcome {
                        state: RecordingState::Failed,
                        duration_ms,
                        files: Vec::new(),
                        message: Some(format!("the files could not be made: {e}")),
                    }
                }
            };
            let _ = control.blocking_send(ControlInput::RecordingFinished { recording, outcome });
        });
    if let Err(e) = spawned {
        tracing::error!(recording, "no thread to make the recording's files: {e}");
    }
}

/// Files are made beside live rooms: this thread (and the threads the mix spreads over, which inherit
/// it) runs at the lowest priority, so media workers always come first and finalizing takes what is
/// left of every core.
fn lower_priority() {
    // SAFETY: plain system calls about this thread itself; no memory is passed.
    let failed = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0
    };
    if failed {
        tracing::warn!(
            "finalizing at normal priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The journals' files: the denoised mix (Ogg/Opus, WAV, FLAC), one Ogg/Opus per person (their packets
/// as sent, on the recording's clock) and one video per camera with its person's audio (WebM for VP8,
/// Matroska for H.264). Returns the files and the recording's length (for an interrupted one: up to
/// its last packet).
fn make_files(
    dir: &Path,
    duration_ms: Option<i64>,
    _started_at_ms: i64,
) -> Result<(Vec<RecordingFile>, i64)> {
    let journals = dir.join(JOURNAL_DIR);
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(&journals) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context("reading the journals"),
    };
    paths.sort();
    let mut audio: Vec<(PathBuf, TrackHeader)> = Vec::new();
    let mut video: Vec<(PathBuf, TrackHeader)> = Vec::new();
    let mut last_us = 0u64;
    for path in paths {
        let Ok(mut reader) = JournalReader::open(&path) else {
            tracing::warn!("{} is not a journal: skipped", path.display());
            continue;
        };
        let header = reader.header.clone();
        if duration_ms.is_none() {
            for entry in reader.by_ref() {
                if let parley_media::journal::Entry::Rtp { arrival_us, .. } = entry {
                    last_us = last_us.max(arrival_us);
                }
            }
        }
        match header.media {
            TrackMedia::Audio if header.codec == "opus" => audio.push((path, header)),
            TrackMedia::Video => video.push((path, header)),
            TrackMedia::Audio => {}
        }
    }
    let duration_ms = duration_ms.unwrap_or((last_us / 1000) as i64);
    let duration_us = (duration_ms.max(0) as u64) * 1000;
    let started = Instant::now();
    let mut mixed = Duration::ZERO;
    let mut files = Vec::new();
    let file = |name: String, kind: &str, format: &str, who: Option<&TrackHeader>| RecordingFile {
        bytes: std::fs::metadata(dir.join(&name))
            .map(|m| m.len())
            .unwrap_or(0),
        name,
        kind: kind.into(),
        format: format.into(),
        participant_id: who.map(|h| h.participant_id),
        participant_name: who.map(|h| h.name.clone()),
        url: None,
    };
    if !audio.is_empty() {
        let voices: Vec<&Path> = audio.iter().map(|(p, _)| p.as_path()).collect();
        let outputs = parley_media::MixOutputs {
            ogg: Some(&dir.join("mix.ogg")),
            wav: Some(&dir.join("mix.wav")),
            flac: Some(&dir.join("mix.flac")),
        };
        let settings = parley_media::MixSettings {
            threads: 0,
            ..parley_media::MixSettings::default()
        };
        let report = parley_media::mix_tracks_with(&voices, outputs, duration_us, &settings)
            .context("making the mix")?;
        mixed = started.elapsed();
        for skipped in &report.skipped {
            tracing::warn!(
                "left out of the mix: {}: {}",
                skipped.path.display(),
                skipped.reason
            );
        }
        for (name, format) in [("mix.ogg", "ogg"), ("mix.wav", "wav"), ("mix.flac", "flac")] {
            files.push(file(name.into(), "mix", format, None));
        }
    }
    let tracks_from = Instant::now();
    // One file per person: a second audio track of theirs (a new microphone) gets its own.
    let mut taken = std::collections::HashSet::new();
    for (path, header) in &audio {
        let mut name = format!("p{}-audio.ogg", header.participant_id);
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("p{}-audio-{n}.ogg", header.participant_id);
            n += 1;
        }
        match parley_media::finalize_opus_track(path, &dir.join(&name), duration_us) {
            Ok(_) => files.push(file(name, "track", "ogg", Some(header))),
            Err(e) => tracing::warn!("{}: no track file: {e}", path.display()),
        }
    }
    let tracks_took = tracks_from.elapsed();
    let video_from = Instant::now();
    for (path, header) in &video {
        let Some(format) = parley_media::VideoFormat::for_codec(&header.codec) else {
            tracing::warn!(
                "{}: no video file: {} is not kept (VP8 and H.264 are)",
                path.display(),
                header.codec
            );
            continue;
        };
        let ext = format.extension();
        let mut name = format!("p{}.{ext}", header.participant_id);
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("p{}-{n}.{ext}", header.participant_id);
            n += 1;
        }
        let voice = audio
            .iter()
            .find(|(_, a)| a.participant_id == header.participant_id)
            .map(|(p, _)| p.as_path());
        match parley_media::finalize_video(path, voice, &dir.join(&name), duration_us) {
            Ok(report) => {
                tracing::info!(
                    participant = header.participant_id,
                    codec = %report.codec,
                    frames = report.video_frames,
                    keyframes = report.keyframes,
                    incomplete = report.incomplete_frames,
                    before_keyframe = report.frames_before_keyframe,
                    after_loss = report.frames_after_loss,
                    lost = report.video_lost,
                    skipped = report.video_skipped,
                    malformed = report.video_malformed,
                    lip_sync = %report.lip_sync,
                    "video file made"
                );
                files.push(file(name, "video", &report.format, Some(header)))
            }
            // A camera that never sent a keyframe (or, for H.264, its SPS/PPS) has nothing to show.
            Err(e) => tracing::warn!("{}: no video file: {e}", path.display()),
        }
    }
    tracing::info!(
        recording = %dir.display(),
        voices = audio.len(),
        cameras = video.len(),
        recorded_s = duration_ms as f64 / 1000.0,
        mix_s = mixed.as_secs_f64(),
        tracks_s = tracks_took.as_secs_f64(),
        video_s = video_from.elapsed().as_secs_f64(),
        "recording files made"
    );
    Ok((files, duration_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_names_are_made_of_server_ids() {
        let packet = RecordedPacket {
            room: 1,
            participant: 12,
            mid: "../../etc/passwd".into(),
            kind: TrackKind::Audio,
            codec: "opus",
            clock_rate: 48_000,
            pt: 111,
            marker: false,
            seq: 70_000,
            timestamp: 960,
            payload: vec![0xfc, 1, 2],
            received: Instant::now(),
        };
        assert_eq!(journal_name(&packet), "p12-audio-etcpasswd.journal");
        let rtp = rtp_packet(&packet);
        assert_eq!(&rtp[..2], &[0x80, 111]);
        assert_eq!(u16::from_be_bytes([rtp[2], rtp[3]]), 70_000u64 as u16);
        assert_eq!(&rtp[12..], &[0xfc, 1, 2]);
    }
}
