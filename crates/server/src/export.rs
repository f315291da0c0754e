//! A segment's export: every track of its studio session cut to the segment, sample-accurate, as WAV,
//! FLAC and MP3 (320 kbit/s) in one zip, at `GET /api/segments/<id>/export.zip?exp=…&sig=…` (the
//! control plane signs the link for the members of the segment's room: `control/studio.rs`).
//!
//! Every track is placed on the server's clock (Unix ms, fractional); the segment is
//! `[start_ms, end_ms)`. A source whose frame 0 is at `origin` at `rate` gives the frames
//! `round((start − origin) × rate / 1000)` up to (without) `round((end − origin) × rate / 1000)`, and
//! silence wherever that lies outside what the source holds. So every exported file starts within
//! half a sample of the segment's start and the files line up with each other.
//! - **The mix and each person's voice**, from the session's room recording (48 kHz): its `mix.wav`
//!   and `p<id>-audio*.ogg` once it is made (frame 0 at the recording's `started_at_ms`), or, while
//!   it runs (or before an interrupted one is made), temporary files of the segment's span and
//!   [`LIVE_MARGIN_MS`] either side, made from its live journals as the recorder makes the whole
//!   ([`parley_media::mix_window`], [`parley_media::finalize_opus_window`]; frame 0 at the span's
//!   start, a whole ms from the recording's), so a segment hours in is made in about the time of a
//!   short recording. The voices' samples are the made files' (after a 0.5 s decoder pre-roll); the
//!   mix's within its denoiser's convergence (about -55 dB). As 16-bit WAV, 16-bit FLAC and MP3.
//! - **Each take of the session** (frame 0 at its `started_at_ms`; frames not uploaded yet are
//!   silence): 32-bit float WAV (the very samples), 24-bit FLAC and MP3 (at 48 kHz where the take's
//!   rate is not an MPEG-1 rate). Before it is cut, each take is lined up with its artist's voice
//!   in the recording ([`align_takes`]: the lag of its envelope against the voice's, where clear),
//!   so takes meet the recording and each other within a millisecond or two, not the tens of ms a
//!   page's clock estimate leaves; `segment.json` says how each was placed (`alignment`).
//! - `segment.json`: the segment, the session, each track (kind, participant, rate, channels, the
//!   server time of its first frame, frames, files) and the markers inside the segment.
//!
//! The zip is built in a temporary file under `<data_dir>/exports/` (names the server makes), a
//! track at a time and a second at a time (nothing holds a whole track in memory), on a thread of
//! its own at the lowest priority, one export at a time; the handler then opens it, unlinks it and
//! streams the open file, so nothing is left behind however the download ends.
//!
//! **Playback** (`GET /api/segments/<id>/play/<track>.wav?exp=…&sig=…`, [`segment_play`]) is one
//! track of the same cut as a WAV for the page's players: `mix` (16-bit, 48 kHz, as the
//! recording's mix) or `take-<take id>` (32-bit float at the take's rate and channels, which
//! Chromium plays). It goes the export's way (the same cut, the same temporary file, thread and
//! one-at-a-time slot) but for one file; a take is played only once every frame of it inside the
//! segment has arrived (`409 not_yet` until then; the export makes silence of what is missing).

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parley_media::align::{self, EnvelopeBuilder};
use parley_media::flac::{float_to_i24, FlacWriter};
use parley_media::journal::{JournalReader, TrackMedia};
use parley_media::mp3::Mp3Writer;
use parley_media::ogg_decode::OggOpusReader;
use parley_media::wav::{FloatWavWriter, WavWriter};
use parley_media::wav_read::{WavReader, WavSamples};
use parley_media::SessionWindow;
use parley_proto::{Marker, RecordingInfo, RecordingState, Segment};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::store::{journal_dir, now_ms, recording_dir, Store, StoredStudioSession};
use crate::takes::{Take, TakeStore, MAX_READ_FRAMES};
use crate::AppState;

/// The longest segment exported: an hour.
pub const MAX_SEGMENT_MS: f64 = 60.0 * 60.0 * 1000.0;
/// Where exports are built, under the data dir.
pub const EXPORTS_DIR: &str = "exports";
/// The "file" an export link is signed for (with the segment's id in place of a recording's).
pub const EXPORT_LINK_FILE: &str = "segment-export";
/// A playback link is signed for `segment-play:<track>` (with the segment's id): neither an export
/// link nor another track's link opens it.
pub const PLAY_LINK_PREFIX: &str = "segment-play:";
/// A finished recording's mix.
const MIX_FILE: &str = "mix.wav";
/// A live recording's mix and voices are made for a segment's span and this much either side (the
/// takes' alignment looks up to 250 ms outside it), not from the recording's start.
const LIVE_MARGIN_MS: f64 = 500.0;
/// Longest piece of a client's name or label in an entry's name.
const MAX_NAME_CHARS: usize = 40;

/// One track of a segment to play: the room recording's mix, or a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayTrack {
    Mix,
    Take(i64),
}

impl PlayTrack {
    /// `mix` or `take-<id>` (a positive id, at most 18 digits, no sign or leading zero).
    pub fn parse(text: &str) -> Option<PlayTrack> {
        if text == "mix" {
            return Some(PlayTrack::Mix);
        }
        let id = text.strip_prefix("take-")?;
        let digits = !id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_digit());
        if !digits || id.starts_with('0') {
            return None;
        }
        id.parse().ok().map(PlayTrack::Take)
    }

    /// The file its links are signed for.
    pub fn link_file(self) -> String {
        format!("{PLAY_LINK_PREFIX}{self}")
    }

    /// Its path, without the signature: `/api/segments/<id>/play/<track>.wav`.
    pub fn path(self, segment_id: i64) -> String {
        format!("/api/segments/{segment_id}/play/{self}.wav")
    }
}

impl fmt::Display for PlayTrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlayTrack::Mix => write!(f, "mix"),
            PlayTrack::Take(id) => write!(f, "take-{id}"),
        }
    }
}

/// Whether a take (its first frame at `started_at_ms`, `total_samples` long once ended) has frames
/// inside `[start_ms, end_ms)`: the takes a segment's export and playback hold.
pub fn take_overlaps(
    started_at_ms: f64,
    sample_rate: u32,
    total_samples: Option<u64>,
    start_ms: f64,
    end_ms: f64,
) -> bool {
    if started_at_ms >= end_ms {
        return false;
    }
    match total_samples {
        Some(total) if sample_rate > 0 => {
            started_at_ms + total as f64 * 1000.0 / f64::from(sample_rate) > start_ms
        }
        _ => true,
    }
}

/// What the handler needs beyond the recordings' and takes' state.
#[derive(Clone)]
pub struct Exports {
    pub store: Arc<Store>,
    /// One export or playback track is made at a time; others wait for it.
    pub slots: Arc<Semaphore>,
}

impl Exports {
    pub fn new(store: Arc<Store>) -> Exports {
        Exports {
            store,
            slots: Arc::new(Semaphore::new(1)),
        }
    }
}

/// Why a segment is not exported.
#[derive(Debug)]
pub enum ExportError {
    NoSuchSegment,
    /// It has no end yet.
    OpenSegment,
    /// Its end is not after its start (or its times are not numbers).
    EmptySegment,
    TooLong {
        ms: f64,
    },
    /// Playback: the segment has no such track (why, for people).
    NoSuchTrack(&'static str),
    /// Playback: frames of the take inside the segment have not arrived yet.
    NotYet {
        name: String,
        missing_frames: u64,
        sample_rate: u32,
    },
    Internal(String),
}

impl ExportError {
    pub fn status(&self) -> StatusCode {
        match self {
            ExportError::NoSuchSegment => StatusCode::NOT_FOUND,
            ExportError::OpenSegment | ExportError::EmptySegment => StatusCode::CONFLICT,
            ExportError::TooLong { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ExportError::NoSuchTrack(_) => StatusCode::NOT_FOUND,
            ExportError::NotYet { .. } => StatusCode::CONFLICT,
            ExportError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ExportError::NoSuchSegment => "no_such_segment",
            ExportError::OpenSegment => "open_segment",
            ExportError::EmptySegment => "empty_segment",
            ExportError::TooLong { .. } => "segment_too_long",
            ExportError::NoSuchTrack(_) => "no_such_track",
            ExportError::NotYet { .. } => "not_yet",
            ExportError::Internal(_) => "internal",
        }
    }

    /// For people (an internal error's detail stays in the log).
    pub fn message(&self) -> String {
        match self {
            ExportError::NoSuchSegment => "no such segment".into(),
            ExportError::OpenSegment => "the segment has no end yet: end it, then export it".into(),
            ExportError::EmptySegment => "the segment ends where it starts".into(),
            ExportError::TooLong { ms } => format!(
                "the segment is {:.1} minutes long: at most {} minutes are exported at once",
                ms / 60_000.0,
                MAX_SEGMENT_MS / 60_000.0
            ),
            ExportError::NoSuchTrack(why) => (*why).into(),
            ExportError::NotYet { name, .. } => {
                let name = name.trim();
                let whose = if name.is_empty() {
                    "this take".to_string()
                } else {
                    format!("{name}'s take")
                };
                let ms = self.missing_ms().unwrap_or(0.0);
                let missing = if ms < 1000.0 {
                    format!("{} ms", ms.ceil())
                } else {
                    format!("{:.1} s", ms / 1000.0)
                };
                format!(
                    "{missing} of {whose} in this segment have not arrived yet: it plays once they have"
                )
            }
            ExportError::Internal(_) => "the export could not be made".into(),
        }
    }

    /// How much of a take is still to come (`NotYet`), in ms.
    pub fn missing_ms(&self) -> Option<f64> {
        match self {
            ExportError::NotYet {
                missing_frames,
                sample_rate,
                ..
            } if *sample_rate > 0 => {
                Some(*missing_frames as f64 * 1000.0 / f64::from(*sample_rate))
            }
            _ => None,
        }
    }

    /// The refusal as the routes send it: `{"error", "message"}` (and `missing_ms` for `not_yet`).
    fn response(&self) -> Response {
        let mut body = json!({ "error": self.code(), "message": self.message() });
        if let Some(ms) = self.missing_ms() {
            body["missing_ms"] = json!((ms * 10.0).round() / 10.0);
        }
        (self.status(), Json(body)).into_response()
    }
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Internal(detail) => write!(f, "export: {detail}"),
            other => write!(f, "{}", other.message()),
        }
    }
}

impl std::error::Error for ExportError {}

fn internal(e: impl fmt::Display) -> ExportError {
    ExportError::Internal(e.to_string())
}

impl From<io::Error> for ExportError {
    fn from(e: io::Error) -> Self {
        internal(e)
    }
}

impl From<anyhow::Error> for ExportError {
    fn from(e: anyhow::Error) -> Self {
        ExportError::Internal(format!("{e:#}"))
    }
}

impl From<crate::takes::TakeError> for ExportError {
    fn from(e: crate::takes::TakeError) -> Self {
        internal(e)
    }
}

impl From<zip::result::ZipError> for ExportError {
    fn from(e: zip::result::ZipError) -> Self {
        internal(e)
    }
}

impl From<parley_media::FinalizeError> for ExportError {
    fn from(e: parley_media::FinalizeError) -> Self {
        internal(e)
    }
}

/// Frames `[first, first + frames)` of a source (its frame 0 is 0; a negative `first` is before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: i64,
    pub frames: u64,
}

/// The frames of `[start_ms, end_ms)` in a source at `rate` whose frame 0 is at `origin_ms`: the
/// frame of a time `t` is `round((t − origin) × rate / 1000)`.
pub fn span(origin_ms: f64, rate: u32, start_ms: f64, end_ms: f64) -> Span {
    let frame = |t: f64| ((t - origin_ms) * f64::from(rate) / 1000.0).round() as i64;
    let first = frame(start_ms);
    Span {
        first,
        frames: frame(end_ms).saturating_sub(first).max(0) as u64,
    }
}

impl Span {
    /// Frames of silence before the source's frame 0.
    fn silence_before(&self) -> u64 {
        if self.first < 0 {
            self.first.unsigned_abs().min(self.frames)
        } else {
            0
        }
    }

    /// The server time of its first frame.
    fn first_ms(&self, origin_ms: f64, rate: u32) -> f64 {
        origin_ms + self.first as f64 * 1000.0 / f64::from(rate)
    }
}

/// A client's name or label as part of an entry's name: ASCII letters, digits, `-` and `_` kept,
/// every other character `_`, at most 40 characters (so never a path separator, `.` or `..`).
pub fn entry_part(text: &str) -> String {
    text.chars()
        .take(MAX_NAME_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `<prefix>-<part>`, or `<prefix>` where the text leaves nothing.
fn named(prefix: &str, text: &str) -> String {
    let part = entry_part(text.trim());
    if part.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}-{part}")
    }
}

/// One file of an exported track.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedFile {
    /// Its path in the zip.
    pub name: String,
    /// `wav`, `flac`, `mp3`.
    pub format: &'static str,
    /// `s16` (16-bit PCM), `f32` (32-bit float), `s24` (24-bit), `mp3-320k-cbr`.
    pub samples: &'static str,
    pub sample_rate: u32,
    pub bytes: u64,
}

/// One exported track.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedTrack {
    /// `mix`, `voice` or `take`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<u64>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub take_id: Option<i64>,
    pub sample_rate: u32,
    pub channels: u16,
    /// The server time (Unix ms) of the first frame exported.
    pub first_sample_server_ms: f64,
    /// The source's index of that frame (negative: before the source began): for the mix and voices,
    /// counted from the room recording's start; for a take, from its first frame.
    pub first_source_frame: i64,
    pub frames: u64,
    /// Frames of silence before the source's first frame (the segment starts before it).
    pub silence_before: u64,
    /// A take's: how it was lined up with the others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alignment: Option<TakeAlignment>,
    pub files: Vec<ExportedFile>,
}

/// How a take was placed in an export.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TakeAlignment {
    /// `voice`: moved to match its artist's voice in the room recording (the same microphone through
    /// the call); `clock`: where the page's estimate of the server's clock put it (the artist has no
    /// voice in the recording there, or none matched clearly).
    pub method: &'static str,
    /// How far it was moved from the clock's placement, in ms (positive: later).
    pub shift_ms: f64,
    /// The voice track it was matched to (its file name without extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// The envelopes' correlation at that shift (0.5 to 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// What an export made.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub segment: Segment,
    /// The folder every entry is in.
    pub folder: String,
    pub tracks: Vec<ExportedTrack>,
    /// Every entry's name, in the zip's order.
    pub entries: Vec<String>,
    /// Where the mix and voices came from: `files`, `journals`, or none (`no_recording`,
    /// `recording_gone`, `recording_empty`).
    pub recording_source: &'static str,
    pub bytes: u64,
    pub took_s: f64,
}

/// Where a track's samples come from.
enum Source {
    /// A 16-bit WAV of the recording (the mix).
    Wav(PathBuf),
    /// A per-person Ogg/Opus of the recording.
    Ogg(PathBuf),
    Take(Take),
}

struct Plan {
    kind: &'static str,
    stem: String,
    participant_id: Option<u64>,
    name: String,
    take_id: Option<i64>,
    /// Server time of the source's frame 0.
    origin_ms: f64,
    source: Source,
    /// A take's: how it was lined up.
    alignment: Option<TakeAlignment>,
}

/// The recording's voice file `p<id>-audio.ogg` / `p<id>-audio-<n>.ogg`: its participant.
fn voice_file_participant(name: &str) -> Option<u64> {
    let stem = name.strip_prefix('p')?.strip_suffix(".ogg")?;
    let (id, rest) = stem.split_once("-audio")?;
    let numbered = rest
        .strip_prefix('-')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !(rest.is_empty() || numbered) || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// A recording's voice: its file, whose it is and their name.
struct Voice {
    path: PathBuf,
    participant_id: u64,
    name: String,
}

/// The made files of a finished recording: its mix (if anyone spoke) and (when `voices`) its
/// voices, in name order.
fn finished_files(
    dir: &Path,
    info: &RecordingInfo,
    voices: bool,
) -> io::Result<(Option<PathBuf>, Vec<Voice>)> {
    let mix = dir.join(MIX_FILE);
    let mix = mix.is_file().then_some(mix);
    if !voices {
        return Ok((mix, Vec::new()));
    }
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    names.sort();
    let voices = names
        .into_iter()
        .filter_map(|file| {
            let participant_id = voice_file_participant(&file)?;
            let name = info
                .files
                .iter()
                .find(|f| f.name == file)
                .and_then(|f| f.participant_name.clone());
            Some((file, participant_id, name))
        })
        .map(|(file, participant_id, name)| {
            let path = dir.join(&file);
            let name = name.unwrap_or_else(|| {
                OggOpusReader::open(&path)
                    .ok()
                    .and_then(|r| r.comment("TITLE").map(str::to_string))
                    .unwrap_or_default()
            });
            Voice {
                path,
                participant_id,
                name,
            }
        })
        .collect();
    Ok((mix, voices))
}

/// A running (or not yet made) recording's mix and (when `voices`) voices, made from its live
/// journals into `work` for `window` only: the samples the recorder's files of a recording lasting
/// `duration_us` would hold there (`recorder.rs`; the mix within its pre-roll's convergence, see
/// [`parley_media::mix_window`]), frame 0 at the window's start. Only the window and a few seconds
/// before it are decoded, however long the recording has run.
fn files_from_journals(
    journals: &Path,
    work: &Path,
    duration_us: u64,
    window: SessionWindow,
    voices_too: bool,
) -> Result<(Option<PathBuf>, Vec<Voice>), ExportError> {
    let mut paths: Vec<PathBuf> = match fs::read_dir(journals) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    paths.sort();
    let mut audio = Vec::new();
    for path in paths {
        let Ok(reader) = JournalReader::open(&path) else {
            continue;
        };
        if reader.header.media == TrackMedia::Audio && reader.header.codec == "opus" {
            audio.push((path, reader.header.clone()));
        }
    }
    if audio.is_empty() {
        return Ok((None, Vec::new()));
    }
    fs::create_dir_all(work)?;
    let mix = work.join("recording-mix.wav");
    let journal_paths: Vec<&Path> = audio.iter().map(|(p, _)| p.as_path()).collect();
    let outputs = parley_media::MixOutputs {
        ogg: None,
        wav: Some(&mix),
        flac: None,
    };
    let settings = parley_media::MixSettings {
        threads: 0,
        ..parley_media::MixSettings::default()
    };
    parley_media::mix_window(&journal_paths, outputs, duration_us, window, &settings)?;
    let mut taken = HashSet::new();
    let mut voices = Vec::new();
    let wanted = if voices_too { audio.as_slice() } else { &[] };
    for (path, header) in wanted {
        let mut name = format!("p{}-audio.ogg", header.participant_id);
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("p{}-audio-{n}.ogg", header.participant_id);
            n += 1;
        }
        let out = work.join(format!("recording-{name}"));
        match parley_media::finalize_opus_window(path, &out, duration_us, window) {
            Ok(_) => voices.push(Voice {
                path: out,
                participant_id: header.participant_id,
                name: header.name.clone(),
            }),
            Err(e) => tracing::warn!("export: {}: no voice track: {e}", path.display()),
        }
    }
    Ok((Some(mix), voices))
}

/// What a segment's export takes from the session's room recording.
struct RecordingTracks {
    /// `files`, `journals`, `no_recording`, `recording_gone` or `recording_empty`.
    source: &'static str,
    info: Option<RecordingInfo>,
    /// Server time of the mix's and the voices' frame 0: the recording's start, or (`journals`)
    /// the start of the window they were made for. None without a recording.
    origin_ms: Option<f64>,
    mix: Option<PathBuf>,
    voices: Vec<Voice>,
}

impl RecordingTracks {
    fn none(source: &'static str, info: Option<RecordingInfo>) -> RecordingTracks {
        RecordingTracks {
            source,
            origin_ms: info.as_ref().map(|i| i.started_at_ms as f64),
            info,
            mix: None,
            voices: Vec::new(),
        }
    }

    fn made(dir: &Path, info: RecordingInfo, voices: bool) -> Result<RecordingTracks, ExportError> {
        let (mix, voices) = finished_files(dir, &info, voices)?;
        let source = if mix.is_none() && voices.is_empty() {
            "recording_empty"
        } else {
            "files"
        };
        Ok(RecordingTracks {
            source,
            origin_ms: Some(info.started_at_ms as f64),
            info: Some(info),
            mix,
            voices,
        })
    }
}

/// Where a segment's recording tracks come from, before anything is made.
enum RecordingPlan {
    /// None: `no_recording`, `recording_gone` or `recording_empty`.
    Nothing(&'static str, Option<RecordingInfo>),
    /// Its made files, in `dir`.
    Made { dir: PathBuf, info: RecordingInfo },
    /// Its live journals, from which `window` of a recording `duration_us` long is to be made;
    /// `origin_ms` is the window's start (server time).
    Journals {
        journals: PathBuf,
        info: RecordingInfo,
        duration_us: u64,
        window: SessionWindow,
        origin_ms: f64,
    },
}

fn is_made(info: &RecordingInfo) -> bool {
    matches!(
        info.state,
        RecordingState::Ready | RecordingState::Interrupted
    )
}

/// Where the session's recording tracks for the segment `[start_ms, end_ms)` would come from.
fn recording_plan(
    data_dir: &Path,
    store: &Store,
    session: &StoredStudioSession,
    (start_ms, end_ms): (f64, f64),
) -> Result<RecordingPlan, ExportError> {
    let Some(id) = session.recording_id else {
        return Ok(RecordingPlan::Nothing("no_recording", None));
    };
    let Some(info) = store.recording(id)? else {
        return Ok(RecordingPlan::Nothing("recording_gone", None));
    };
    if is_made(&info) {
        let dir = recording_dir(data_dir, id);
        return Ok(RecordingPlan::Made { dir, info });
    }
    let journals = journal_dir(data_dir, id);
    if !journals.is_dir() {
        // A failed recording whose journals are gone, or one not begun on disk.
        return Ok(RecordingPlan::Nothing("recording_empty", Some(info)));
    }
    let recording_start_ms = info.started_at_ms as f64;
    // Whole ms from the recording's start: the window's frame 0 is then an exact server time, and
    // the segment's frames in it are exactly those of the whole recording's files.
    let from_ms = (start_ms - recording_start_ms - LIVE_MARGIN_MS)
        .floor()
        .max(0.0);
    let reach_ms = (end_ms - recording_start_ms + LIVE_MARGIN_MS).max(0.0);
    let duration_us = (reach_ms * 1000.0).ceil() as u64;
    Ok(RecordingPlan::Journals {
        journals,
        info,
        duration_us,
        window: SessionWindow {
            from_us: from_ms as u64 * 1000,
            to_us: duration_us,
        },
        origin_ms: recording_start_ms + from_ms,
    })
}

/// The recording's tracks for the segment `[start_ms, end_ms)` (its mix, and its voices when
/// `voices`): its made files, or files of the segment's span made in `work` from its journals
/// while it is not made yet.
fn recording_sources(
    data_dir: &Path,
    store: &Store,
    session: &StoredStudioSession,
    segment: (f64, f64),
    work: &Path,
    voices: bool,
) -> Result<RecordingTracks, ExportError> {
    match recording_plan(data_dir, store, session, segment)? {
        RecordingPlan::Nothing(source, info) => Ok(RecordingTracks::none(source, info)),
        RecordingPlan::Made { dir, info } => RecordingTracks::made(&dir, info, voices),
        RecordingPlan::Journals {
            journals,
            info,
            duration_us,
            window,
            origin_ms,
        } => match files_from_journals(&journals, work, duration_us, window, voices) {
            Ok((mix, voices)) => Ok(RecordingTracks {
                source: "journals",
                info: Some(info),
                origin_ms: Some(origin_ms),
                mix,
                voices,
            }),
            // Its files may have been made meanwhile (and the journals removed).
            Err(e) => match store.recording(info.recording_id)? {
                Some(now) if is_made(&now) => {
                    let dir = recording_dir(data_dir, info.recording_id);
                    RecordingTracks::made(&dir, now, voices)
                }
                _ => Err(e),
            },
        },
    }
}

/// Cuts `span` of a source with `channels` into blocks of `block` frames and hands each to `write`:
/// silence before the source's frame 0 and after its end (`read(at, out)` gives the frames from `at`,
/// fewer only at its end).
fn cut<T: Copy + Default>(
    span: Span,
    channels: usize,
    block: usize,
    mut read: impl FnMut(u64, &mut [T]) -> Result<usize, ExportError>,
    mut write: impl FnMut(&[T]) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let mut buf = vec![T::default(); block * channels];
    let end = span.first.saturating_add(span.frames as i64);
    let mut pos = span.first;
    let mut ended = false;
    while pos < end {
        let n = ((end - pos) as u64).min(block as u64) as usize;
        let chunk = &mut buf[..n * channels];
        chunk.fill(T::default());
        let lead = if pos < 0 {
            pos.unsigned_abs().min(n as u64) as usize
        } else {
            0
        };
        if lead < n && !ended {
            let at = (pos + lead as i64) as u64;
            let want = n - lead;
            let got = read(at, &mut chunk[lead * channels..])?.min(want);
            chunk[(lead + got) * channels..].fill(T::default());
            ended = got < want;
        }
        write(chunk)?;
        pos += n as i64;
    }
    Ok(())
}

/// The three files of a 16-bit track (mix, voices), made together in one pass.
struct Files16 {
    wav: WavWriter,
    flac: FlacWriter,
    mp3: Mp3Writer,
    rate: u32,
}

impl Files16 {
    fn create(stem: &Path, rate: u32, channels: u16) -> Result<Files16, ExportError> {
        Ok(Files16 {
            wav: WavWriter::create(&stem.with_extension("wav"), rate, channels)?,
            flac: FlacWriter::create(&stem.with_extension("flac"), rate, usize::from(channels))?,
            mp3: Mp3Writer::create(&stem.with_extension("mp3"), rate, channels)?,
            rate,
        })
    }

    fn write(&mut self, samples: &[i16]) -> Result<(), ExportError> {
        self.wav.write(samples)?;
        self.flac.write(samples)?;
        self.mp3.write_i16(samples)?;
        Ok(())
    }

    /// The MP3's rate.
    fn finish(self) -> Result<u32, ExportError> {
        let mp3_rate = self.mp3.output_rate();
        self.wav.finish(self.rate)?;
        self.flac.finish()?;
        self.mp3.finish()?;
        Ok(mp3_rate)
    }
}

/// The three files of a take: float WAV (its very samples), 24-bit FLAC, MP3.
struct FilesFloat {
    wav: FloatWavWriter,
    flac: FlacWriter,
    mp3: Mp3Writer,
    i24: Vec<i32>,
}

impl FilesFloat {
    fn create(stem: &Path, rate: u32, channels: u16) -> Result<FilesFloat, ExportError> {
        Ok(FilesFloat {
            wav: FloatWavWriter::create(&stem.with_extension("wav"), rate, channels)?,
            flac: FlacWriter::with_bits(
                &stem.with_extension("flac"),
                rate,
                usize::from(channels),
                24,
            )?,
            mp3: Mp3Writer::create(&stem.with_extension("mp3"), rate, channels)?,
            i24: Vec::new(),
        })
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), ExportError> {
        self.wav.write(samples)?;
        self.i24.clear();
        self.i24.extend(samples.iter().map(|s| float_to_i24(*s).0));
        self.flac.write_i32(&self.i24)?;
        self.mp3.write_f32(samples)?;
        Ok(())
    }

    fn finish(self) -> Result<u32, ExportError> {
        let mp3_rate = self.mp3.output_rate();
        self.wav.finish()?;
        self.flac.finish()?;
        self.mp3.finish()?;
        Ok(mp3_rate)
    }
}

/// Where a cut track's samples go: the export's files of it, or one WAV to play. A track's samples
/// are 16-bit (the recording's mix and voices) or 32-bit float (a take), as its [`Cut`] says.
trait TrackSink {
    fn write_i16(&mut self, samples: &[i16]) -> Result<(), ExportError>;
    fn write_f32(&mut self, samples: &[f32]) -> Result<(), ExportError>;
}

fn other_kind_of_samples() -> ExportError {
    internal("a track's samples are not the kind its files were made for")
}

/// The shape of one track's cut.
#[derive(Debug, Clone, Copy)]
struct Cut {
    rate: u32,
    channels: u16,
    /// 32-bit float samples (a take), else 16-bit.
    float: bool,
    span: Span,
}

/// Cuts `[start_ms, end_ms)` of a source whose frame 0 is at `origin_ms` into the sink `open` makes
/// once the source's rate and channels are known: a block of frames at a time, silence outside the
/// source. The one cutting path of exports and playback alike.
fn cut_source<S: TrackSink>(
    source: &Source,
    origin_ms: f64,
    takes: &TakeStore,
    segment: (f64, f64),
    open: impl FnOnce(&Cut) -> Result<S, ExportError>,
) -> Result<(Cut, S), ExportError> {
    let (start_ms, end_ms) = segment;
    match source {
        Source::Wav(path) => {
            let mut reader = WavReader::open(path)?;
            if reader.samples != WavSamples::Pcm16 {
                return Err(internal(format!("{}: not 16-bit", path.display())));
            }
            let (rate, channels) = (reader.sample_rate, reader.channels);
            let shape = Cut {
                rate,
                channels,
                float: false,
                span: span(origin_ms, rate, start_ms, end_ms),
            };
            let mut sink = open(&shape)?;
            cut(
                shape.span,
                usize::from(channels),
                rate as usize,
                |at, out: &mut [i16]| {
                    if reader.position() != at {
                        reader.seek(at)?;
                    }
                    Ok(reader.read_i16(out)?)
                },
                |block| sink.write_i16(block),
            )?;
            Ok((shape, sink))
        }
        Source::Ogg(path) => {
            let mut reader = OggOpusReader::open(path)?;
            let (rate, channels) = (reader.sample_rate(), reader.channels());
            let shape = Cut {
                rate,
                channels,
                float: false,
                span: span(origin_ms, rate, start_ms, end_ms),
            };
            let mut sink = open(&shape)?;
            let mut scratch = Vec::new();
            cut(
                shape.span,
                usize::from(channels),
                rate as usize,
                |at, out: &mut [i16]| {
                    let pos = reader.position();
                    if at < pos {
                        // A cut reads forward, so this does not happen: start again if it does.
                        reader = OggOpusReader::open(path)?;
                    }
                    let pos = reader.position();
                    if at > pos {
                        reader.skip(at - pos)?;
                    }
                    Ok(reader.read_i16(out, &mut scratch)?)
                },
                |block| sink.write_i16(block),
            )?;
            Ok((shape, sink))
        }
        Source::Take(take) => {
            let (rate, channels) = (take.sample_rate, take.channels);
            let shape = Cut {
                rate,
                channels,
                float: true,
                span: span(origin_ms, rate, start_ms, end_ms),
            };
            let mut sink = open(&shape)?;
            let block = (rate as u64).min(MAX_READ_FRAMES) as usize;
            cut(
                shape.span,
                usize::from(channels),
                block,
                |at, out: &mut [f32]| {
                    let frames = out.len() / usize::from(channels);
                    let got = takes.read_frames(take.id, at, frames as u64)?;
                    let n = got.len().min(out.len());
                    out[..n].copy_from_slice(&got[..n]);
                    // Frames not uploaded are silence: a take is never "ended" early.
                    Ok(frames)
                },
                |block| sink.write_f32(block),
            )?;
            Ok((shape, sink))
        }
    }
}

/// The export's three files of a track.
enum ExportFiles {
    S16(Files16),
    F32(FilesFloat),
}

impl ExportFiles {
    fn create(stem: &Path, cut: &Cut) -> Result<ExportFiles, ExportError> {
        Ok(if cut.float {
            ExportFiles::F32(FilesFloat::create(stem, cut.rate, cut.channels)?)
        } else {
            ExportFiles::S16(Files16::create(stem, cut.rate, cut.channels)?)
        })
    }

    /// The MP3's rate.
    fn finish(self) -> Result<u32, ExportError> {
        match self {
            ExportFiles::S16(files) => files.finish(),
            ExportFiles::F32(files) => files.finish(),
        }
    }
}

impl TrackSink for ExportFiles {
    fn write_i16(&mut self, samples: &[i16]) -> Result<(), ExportError> {
        match self {
            ExportFiles::S16(files) => files.write(samples),
            ExportFiles::F32(_) => Err(other_kind_of_samples()),
        }
    }

    fn write_f32(&mut self, samples: &[f32]) -> Result<(), ExportError> {
        match self {
            ExportFiles::F32(files) => files.write(samples),
            ExportFiles::S16(_) => Err(other_kind_of_samples()),
        }
    }
}

/// One track as a WAV to play: 16-bit PCM as the recording is, 32-bit float as a take is (the
/// export's WAV of it, byte for byte).
enum PlayWav {
    S16 { wav: WavWriter, rate: u32 },
    F32(FloatWavWriter),
}

impl PlayWav {
    fn create(path: &Path, cut: &Cut) -> Result<PlayWav, ExportError> {
        Ok(if cut.float {
            PlayWav::F32(FloatWavWriter::create(path, cut.rate, cut.channels)?)
        } else {
            PlayWav::S16 {
                wav: WavWriter::create(path, cut.rate, cut.channels)?,
                rate: cut.rate,
            }
        })
    }

    /// Its length in bytes.
    fn finish(self) -> Result<u64, ExportError> {
        match self {
            PlayWav::S16 { wav, rate } => Ok(wav.finish(rate)?),
            PlayWav::F32(wav) => Ok(wav.finish()?.1),
        }
    }
}

impl TrackSink for PlayWav {
    fn write_i16(&mut self, samples: &[i16]) -> Result<(), ExportError> {
        match self {
            PlayWav::S16 { wav, .. } => Ok(wav.write(samples)?),
            PlayWav::F32(_) => Err(other_kind_of_samples()),
        }
    }

    fn write_f32(&mut self, samples: &[f32]) -> Result<(), ExportError> {
        match self {
            PlayWav::F32(wav) => Ok(wav.write(samples)?),
            PlayWav::S16 { .. } => Err(other_kind_of_samples()),
        }
    }
}

/// The stretch of a segment compared when lining a take up: up to its first minute.
const ALIGN_SPAN_MS: f64 = 60_000.0;
/// How far from the clock's placement a take may be moved (the page's estimate is good to a few tens
/// of ms; a Bluetooth microphone's latency can reach 200).
const MAX_ALIGN_SHIFT_MS: u32 = 250;

/// A track's envelope (see [`parley_media::align`]) over `window` of the server's clock.
struct EnvelopeSink(EnvelopeBuilder);

impl TrackSink for EnvelopeSink {
    fn write_i16(&mut self, samples: &[i16]) -> Result<(), ExportError> {
        self.0.push_i16(samples);
        Ok(())
    }

    fn write_f32(&mut self, samples: &[f32]) -> Result<(), ExportError> {
        self.0.push_f32(samples);
        Ok(())
    }
}

fn envelope_of(
    plan: &Plan,
    takes: &TakeStore,
    window: (f64, f64),
) -> Result<Vec<f32>, ExportError> {
    let (_, sink) = cut_source(&plan.source, plan.origin_ms, takes, window, |cut| {
        Ok(EnvelopeSink(EnvelopeBuilder::new(cut.rate, cut.channels)))
    })?;
    Ok(sink.0.finish())
}

/// Lines each take up with its artist's voice in the room recording (theirs by participant or by
/// name: a reopened page joins as a new participant), over the segment's first minute: the take is
/// moved by the lag its envelope shows against the voice's, where that lag is clear (in most of the
/// 4 s stretches that show one: [`align::find_lag_in_windows`]). Both hear one
/// microphone, so this removes what the page's clock estimate cannot see (the device's input
/// latency, the audio graph's buffering); the takes then line up with the recording, its mix and
/// each other as the voices do. Where no voice matches, the clock's placement stands. A track that
/// cannot be read here is left to fail (or not) where it is made.
fn align_takes(plans: &mut [Plan], takes: &TakeStore, segment: (f64, f64)) {
    let (start_ms, end_ms) = segment;
    let margin = f64::from(MAX_ALIGN_SHIFT_MS);
    let window = (
        start_ms - margin,
        end_ms.min(start_ms + ALIGN_SPAN_MS) + margin,
    );
    let mut voices: Vec<(usize, Option<Vec<f32>>)> = Vec::new();
    for i in 0..plans.len() {
        if plans[i].kind != "take" {
            continue;
        }
        let mut best: Option<(usize, parley_media::align::Lag)> = None;
        let take_envelope = match envelope_of(&plans[i], takes, window) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("export: {}: not aligned: {e}", plans[i].stem);
                continue;
            }
        };
        for v in 0..plans.len() {
            let (take, voice) = (&plans[i], &plans[v]);
            let theirs = voice.kind == "voice"
                && (voice.participant_id == take.participant_id || voice.name == take.name);
            if !theirs {
                continue;
            }
            let cached = match voices.iter().position(|(at, _)| *at == v) {
                Some(k) => k,
                None => {
                    let envelope = envelope_of(voice, takes, window)
                        .map_err(|e| tracing::warn!("export: {}: no envelope: {e}", voice.stem))
                        .ok();
                    voices.push((v, envelope));
                    voices.len() - 1
                }
            };
            let Some(voice_envelope) = &voices[cached].1 else {
                continue;
            };
            if let Some(lag) =
                align::find_lag_in_windows(voice_envelope, &take_envelope, MAX_ALIGN_SHIFT_MS)
            {
                if best.is_none_or(|(_, b)| lag.score > b.score) {
                    best = Some((v, lag));
                }
            }
        }
        plans[i].alignment = Some(match best {
            Some((v, lag)) => {
                plans[i].origin_ms += lag.ms;
                TakeAlignment {
                    method: "voice",
                    shift_ms: lag.ms,
                    voice: Some(plans[v].stem.clone()),
                    score: Some(lag.score),
                }
            }
            None => TakeAlignment {
                method: "clock",
                shift_ms: 0.0,
                voice: None,
                score: None,
            },
        });
    }
}

/// What making one track's files gave: rate, channels, MP3 rate, file kinds.
struct Made {
    rate: u32,
    channels: u16,
    mp3_rate: u32,
    float: bool,
    span: Span,
}

fn make_track(
    plan: &Plan,
    takes: &TakeStore,
    segment: (f64, f64),
    stem: &Path,
) -> Result<Made, ExportError> {
    let (cut, files) = cut_source(&plan.source, plan.origin_ms, takes, segment, |cut| {
        ExportFiles::create(stem, cut)
    })?;
    let mp3_rate = files.finish()?;
    Ok(Made {
        rate: cut.rate,
        channels: cut.channels,
        mp3_rate,
        float: cut.float,
        span: cut.span,
    })
}

/// Adds the file at `path` to the zip as `name` (stored) and removes it; its length.
fn add_file(
    zip: &mut ZipWriter<BufWriter<File>>,
    name: &str,
    path: &Path,
    options: SimpleFileOptions,
) -> Result<u64, ExportError> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    zip.start_file(name, options.large_file(len >= u64::from(u32::MAX)))?;
    io::copy(&mut file, zip)?;
    drop(file);
    fs::remove_file(path)?;
    Ok(len)
}

/// A Unix time in ms as a zip entry's time (UTC; the zip format's range, 1980 to 2107).
fn zip_time(unix_ms: i64) -> zip::DateTime {
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    zip::DateTime::from_date_and_time(
        year.clamp(1980, 2107) as u16,
        month as u8,
        day as u8,
        (of_day / 3600) as u8,
        (of_day / 60 % 60) as u8,
        // DOS time counts seconds in twos: 59 is not one of them.
        (of_day % 60).min(58) as u8,
    )
    .unwrap_or_default()
}

/// Removes a directory when dropped (the export's working files, however it ends).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("export: {} not removed: {e}", self.0.display());
            }
        }
    }
}

/// A segment that may be cut: it exists, has ended, and is at most an hour long.
struct Checked {
    segment: Segment,
    session: StoredStudioSession,
    start_ms: f64,
    end_ms: f64,
}

fn checked_segment(store: &Store, segment_id: i64) -> Result<Checked, ExportError> {
    let (segment, session) = store
        .segment(segment_id)?
        .ok_or(ExportError::NoSuchSegment)?;
    let end_ms = segment.end_ms.ok_or(ExportError::OpenSegment)?;
    let start_ms = segment.start_ms;
    if !start_ms.is_finite() || !end_ms.is_finite() || end_ms <= start_ms {
        return Err(ExportError::EmptySegment);
    }
    if end_ms - start_ms > MAX_SEGMENT_MS {
        return Err(ExportError::TooLong {
            ms: end_ms - start_ms,
        });
    }
    Ok(Checked {
        segment,
        session,
        start_ms,
        end_ms,
    })
}

/// The directory beside `out` its working files go in (removed after).
fn work_dir(out: &Path) -> Result<RemoveOnDrop, ExportError> {
    let file_name = out.file_name().and_then(|n| n.to_str()).unwrap_or("export");
    let work = out.with_file_name(format!("{file_name}.work"));
    fs::create_dir_all(&work)?;
    Ok(RemoveOnDrop(work))
}

/// Writes segment `segment_id`'s export to `out` (a zip; working files go in a directory beside it,
/// removed after). Refuses a segment that does not exist, has no end, or is over an hour long.
pub fn write_segment_zip(
    data_dir: &Path,
    store: &Store,
    takes: &TakeStore,
    segment_id: i64,
    out: &Path,
) -> Result<ExportReport, ExportError> {
    let started = Instant::now();
    let Checked {
        segment,
        session,
        start_ms,
        end_ms,
    } = checked_segment(store, segment_id)?;
    let cleanup = work_dir(out)?;
    let work = cleanup.0.as_path();

    let RecordingTracks {
        source: recording_source,
        info: recording,
        origin_ms: recording_origin_ms,
        mix,
        voices,
    } = recording_sources(data_dir, store, &session, (start_ms, end_ms), work, true)?;
    let mut plans = Vec::new();
    let mut stems = HashSet::new();
    let mut unique = |stem: String| {
        let mut candidate = stem.clone();
        let mut n = 2;
        while !stems.insert(candidate.clone()) {
            candidate = format!("{stem}-{n}");
            n += 1;
        }
        candidate
    };
    if let Some(origin_ms) = recording_origin_ms {
        plans.extend(recording_plans(origin_ms, mix, voices, &mut unique));
    }
    for take in takes.list(&session.room)? {
        let inside = take_overlaps(
            take.started_at_ms,
            take.sample_rate,
            take.total_samples,
            start_ms,
            end_ms,
        );
        if take.session_id != session.id || !inside {
            continue;
        }
        let stem = unique(named(&format!("take-{}", take.id), &take.name));
        plans.push(take_plan(take, stem));
    }
    align_takes(&mut plans, takes, (start_ms, end_ms));

    let folder = named(&format!("segment-{segment_id}"), &segment.label);
    let exported_at_ms = now_ms();
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(zip_time(exported_at_ms))
        .unix_permissions(0o644);
    let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, File::create(out)?));
    zip.add_directory(format!("{folder}/"), options)?;
    let mut entries = vec![format!("{folder}/")];
    let mut tracks = Vec::new();
    for plan in &plans {
        let stem = work.join(&plan.stem);
        let made = make_track(plan, takes, (start_ms, end_ms), &stem)?;
        let mut files = Vec::new();
        let kinds: [(&str, &str, u32); 3] = if made.float {
            [
                ("wav", "f32", made.rate),
                ("flac", "s24", made.rate),
                ("mp3", "mp3-320k-cbr", made.mp3_rate),
            ]
        } else {
            [
                ("wav", "s16", made.rate),
                ("flac", "s16", made.rate),
                ("mp3", "mp3-320k-cbr", made.mp3_rate),
            ]
        };
        for (ext, samples, sample_rate) in kinds {
            let name = format!("{folder}/{}.{ext}", plan.stem);
            let bytes = add_file(&mut zip, &name, &stem.with_extension(ext), options)?;
            entries.push(name.clone());
            files.push(ExportedFile {
                name,
                format: ext,
                samples,
                sample_rate,
                bytes,
            });
        }
        tracks.push(ExportedTrack {
            kind: plan.kind,
            participant_id: plan.participant_id,
            name: plan.name.clone(),
            take_id: plan.take_id,
            sample_rate: made.rate,
            channels: made.channels,
            first_sample_server_ms: made.span.first_ms(plan.origin_ms, made.rate),
            first_source_frame: made.span.first
                + frames_into_recording(plan, recording.as_ref(), made.rate),
            frames: made.span.frames,
            silence_before: made.span.silence_before(),
            alignment: plan.alignment.clone(),
            files,
        });
    }

    let markers: Vec<serde_json::Value> = store
        .markers(session.id)?
        .into_iter()
        .filter(|m: &Marker| m.at_ms >= start_ms && m.at_ms < end_ms)
        .map(|m| {
            json!({
                "marker_id": m.marker_id,
                "at_ms": m.at_ms,
                "offset_ms": m.at_ms - start_ms,
                "label": m.label,
                "by": m.by,
            })
        })
        .collect();
    let description = json!({
        "format": "parley-segment-export/1",
        "exported_at_ms": exported_at_ms,
        "segment": {
            "segment_id": segment.segment_id,
            "start_ms": start_ms,
            "end_ms": end_ms,
            "duration_ms": end_ms - start_ms,
            "label": segment.label,
            "by": segment.by,
        },
        "session": {
            "session_id": session.id,
            "room": session.room,
            "started_at_ms": session.started_at_ms,
            "ended_at_ms": session.ended_at_ms,
            "recording_id": session.recording_id,
        },
        "recording": recording.as_ref().map(|r| json!({
            "recording_id": r.recording_id,
            "started_at_ms": r.started_at_ms,
            "state": r.state.as_str(),
        })),
        "recording_source": recording_source,
        "tracks": tracks,
        "markers": markers,
    });
    let name = format!("{folder}/segment.json");
    zip.start_file(&name, options)?;
    let text = serde_json::to_vec_pretty(&description).map_err(internal)?;
    zip.write_all(&text)?;
    entries.push(name);
    let mut file = zip.finish()?;
    file.flush()?;
    let bytes = file.get_ref().metadata()?.len();
    Ok(ExportReport {
        segment,
        folder,
        tracks,
        entries,
        recording_source,
        bytes,
        took_s: started.elapsed().as_secs_f64(),
    })
}

/// The plans of a recording's mix and voices (frame 0 at `origin_ms`), their stems made unique by
/// `unique`.
fn recording_plans(
    origin_ms: f64,
    mix: Option<PathBuf>,
    voices: Vec<Voice>,
    unique: &mut impl FnMut(String) -> String,
) -> Vec<Plan> {
    let mut plans = Vec::new();
    if let Some(path) = mix {
        plans.push(Plan {
            kind: "mix",
            stem: unique("mix".into()),
            participant_id: None,
            name: "mix".into(),
            take_id: None,
            origin_ms,
            source: Source::Wav(path),
            alignment: None,
        });
    }
    for voice in voices {
        plans.push(Plan {
            kind: "voice",
            stem: unique(named(
                &format!("voice-{}", voice.participant_id),
                &voice.name,
            )),
            participant_id: Some(voice.participant_id),
            name: voice.name,
            take_id: None,
            origin_ms,
            source: Source::Ogg(voice.path),
            alignment: None,
        });
    }
    plans
}

fn take_plan(take: Take, stem: String) -> Plan {
    Plan {
        kind: "take",
        stem,
        participant_id: Some(take.participant_id),
        name: take.name.clone(),
        take_id: Some(take.id),
        origin_ms: take.started_at_ms,
        source: Source::Take(take),
        alignment: None,
    }
}

/// Where the export places `take` in segment `checked`: its frame 0's server time once lined up
/// with its artist's voice ([`align_takes`], over the same voices, so playback and export cut the
/// same frames). Voices are made in `work` where the recording is still running.
fn placed_take_origin(
    data_dir: &Path,
    store: &Store,
    takes: &TakeStore,
    checked: &Checked,
    take: &Take,
    work: &Path,
) -> Result<f64, ExportError> {
    let recording = recording_sources(
        data_dir,
        store,
        &checked.session,
        (checked.start_ms, checked.end_ms),
        work,
        true,
    )?;
    let mut plans = match recording.origin_ms {
        Some(origin_ms) => recording_plans(origin_ms, None, recording.voices, &mut |stem| stem),
        None => Vec::new(),
    };
    plans.push(take_plan(take.clone(), format!("take-{}", take.id)));
    align_takes(&mut plans, takes, (checked.start_ms, checked.end_ms));
    Ok(plans.last().map_or(take.started_at_ms, |p| p.origin_ms))
}

/// How many frames of the recording lie before the frame 0 of a mix or voice made for the export (a
/// window of a running recording starts near the segment, not at the recording's start): so a
/// track's `first_source_frame` always counts from the recording's start. 0 for takes.
fn frames_into_recording(plan: &Plan, recording: Option<&RecordingInfo>, rate: u32) -> i64 {
    match (plan.kind, recording) {
        ("mix" | "voice", Some(info)) => {
            ((plan.origin_ms - info.started_at_ms as f64) * f64::from(rate) / 1000.0).round() as i64
        }
        _ => 0,
    }
}

/// What [`write_segment_track`] made.
#[derive(Debug, Clone)]
pub struct PlayReport {
    pub track: PlayTrack,
    pub sample_rate: u32,
    pub channels: u16,
    /// 32-bit float samples (a take), else 16-bit PCM.
    pub float: bool,
    /// The source's frames it holds.
    pub span: Span,
    /// `files` or `journals` (the mix), `take`.
    pub source: &'static str,
    pub bytes: u64,
    pub took_s: f64,
}

/// Why the mix is not there, for people.
fn no_mix(source: &'static str) -> ExportError {
    ExportError::NoSuchTrack(match source {
        "no_recording" | "recording_gone" => "the session has no room recording to play",
        _ => "the room recording has no mix for this segment (no one was heard)",
    })
}

const NOT_THIS_SEGMENTS: &str = "the segment has no such track";

/// Take `take_id`, where it is a take of the segment's session with frames inside the segment.
fn segment_take(takes: &TakeStore, checked: &Checked, take_id: i64) -> Result<Take, ExportError> {
    let take = match takes.take(take_id) {
        Ok(take) => take,
        Err(e) if e.kind == crate::takes::TakeErrorKind::NoSuchTake => {
            return Err(ExportError::NoSuchTrack(NOT_THIS_SEGMENTS))
        }
        Err(e) => return Err(e.into()),
    };
    let inside = take_overlaps(
        take.started_at_ms,
        take.sample_rate,
        take.total_samples,
        checked.start_ms,
        checked.end_ms,
    );
    if take.room != checked.session.room || take.session_id != checked.session.id || !inside {
        return Err(ExportError::NoSuchTrack(NOT_THIS_SEGMENTS));
    }
    Ok(take)
}

/// A take is played once every frame of it inside the segment has arrived: up to its end once it
/// has ended; while it has not, every frame to the segment's end, or (its artist left without
/// ending it: more may never come) to the end of what arrived last. Missing ones: `NotYet`.
fn take_arrived(
    takes: &TakeStore,
    take: &Take,
    start_ms: f64,
    end_ms: f64,
) -> Result<(), ExportError> {
    if take.state == crate::takes::TakeState::Complete {
        return Ok(());
    }
    let span = span(take.started_at_ms, take.sample_rate, start_ms, end_ms);
    let lo = span.first.max(0) as u64;
    let mut hi = span.first.saturating_add(span.frames as i64).max(0) as u64;
    if let Some(total) = take.total_samples {
        hi = hi.min(total);
    }
    let stored = takes.stored_frames(take.id, lo, hi.max(lo))?;
    if take.total_samples.is_none() && take.state == crate::takes::TakeState::Incomplete {
        hi = hi.min(stored.last_end);
    }
    let missing = hi.saturating_sub(lo).saturating_sub(stored.held);
    if missing > 0 {
        return Err(ExportError::NotYet {
            name: take.name.clone(),
            missing_frames: missing,
            sample_rate: take.sample_rate,
        });
    }
    Ok(())
}

/// Whether [`write_segment_track`] would make `track` of segment `segment_id`, without making it
/// (nothing is mixed: the answer to a `HEAD`, and the check before waiting for a slot).
pub fn check_segment_track(
    data_dir: &Path,
    store: &Store,
    takes: &TakeStore,
    segment_id: i64,
    track: PlayTrack,
) -> Result<(), ExportError> {
    let checked = checked_segment(store, segment_id)?;
    match track {
        PlayTrack::Mix => {
            let segment = (checked.start_ms, checked.end_ms);
            match recording_plan(data_dir, store, &checked.session, segment)? {
                RecordingPlan::Nothing(source, _) => Err(no_mix(source)),
                RecordingPlan::Made { dir, .. } if !dir.join(MIX_FILE).is_file() => {
                    Err(no_mix("recording_empty"))
                }
                _ => Ok(()),
            }
        }
        PlayTrack::Take(id) => {
            let take = segment_take(takes, &checked, id)?;
            take_arrived(takes, &take, checked.start_ms, checked.end_ms)
        }
    }
}

/// Writes one track of segment `segment_id` cut to it as a WAV at `out` (the mix from the room
/// recording's files or its live journals, made in a directory beside `out`, removed after; a take
/// once its frames for the segment have all arrived), by the export's cut.
pub fn write_segment_track(
    data_dir: &Path,
    store: &Store,
    takes: &TakeStore,
    segment_id: i64,
    track: PlayTrack,
    out: &Path,
) -> Result<PlayReport, ExportError> {
    let started = Instant::now();
    let checked = checked_segment(store, segment_id)?;
    let cleanup = work_dir(out)?;
    let (source, origin_ms, from) = match track {
        PlayTrack::Mix => {
            let recording = recording_sources(
                data_dir,
                store,
                &checked.session,
                (checked.start_ms, checked.end_ms),
                &cleanup.0,
                false,
            )?;
            match (recording.origin_ms, recording.mix) {
                (Some(origin_ms), Some(mix)) => (Source::Wav(mix), origin_ms, recording.source),
                _ => return Err(no_mix(recording.source)),
            }
        }
        PlayTrack::Take(id) => {
            let take = segment_take(takes, &checked, id)?;
            take_arrived(takes, &take, checked.start_ms, checked.end_ms)?;
            let origin_ms =
                placed_take_origin(data_dir, store, takes, &checked, &take, &cleanup.0)?;
            (Source::Take(take), origin_ms, "take")
        }
    };
    let segment = (checked.start_ms, checked.end_ms);
    let (cut, wav) = cut_source(&source, origin_ms, takes, segment, |cut| {
        PlayWav::create(out, cut)
    })?;
    let bytes = wav.finish()?;
    Ok(PlayReport {
        track,
        sample_rate: cut.rate,
        channels: cut.channels,
        float: cut.float,
        span: cut.span,
        source: from,
        bytes,
        took_s: started.elapsed().as_secs_f64(),
    })
}

/// Removes what an export the last run was building left behind (call at start-up).
pub fn clear_stale(data_dir: &Path) {
    let dir = data_dir.join(EXPORTS_DIR);
    if let Err(e) = fs::remove_dir_all(&dir) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("export: {} not cleared: {e}", dir.display());
        }
    }
}

/// Exports are made beside live rooms: this thread (and the threads a mix spreads over, which
/// inherit it) runs at the lowest priority, so media workers always come first. (The thread is the
/// export's own: a pool's thread would keep the priority after.)
fn lower_priority() {
    // SAFETY: plain system calls about this thread itself; no memory is passed.
    let failed = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0
    };
    if failed {
        tracing::warn!(
            "exporting at normal priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Makes a file under `<data_dir>/exports/` (`<stem>-<n>.<ext>`, names the server makes) with
/// `write` and hands back the open file, already unlinked, and its length.
fn build<R>(
    data_dir: &Path,
    stem: &str,
    ext: &str,
    write: impl FnOnce(&Path) -> Result<R, ExportError>,
) -> Result<(File, u64, R), ExportError> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let dir = data_dir.join(EXPORTS_DIR);
    fs::create_dir_all(&dir)?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let out = dir.join(format!("{stem}-{n}.{ext}"));
    let opened = write(&out).and_then(|report| {
        let file = File::open(&out)?;
        let len = file.metadata()?.len();
        Ok((file, len, report))
    });
    // Open or not, the name goes: the open file is all that is left of it.
    if let Err(e) = fs::remove_file(&out) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("export: {} not removed: {e}", out.display());
        }
    }
    opened
}

#[derive(Deserialize)]
pub struct Link {
    exp: Option<i64>,
    sig: Option<String>,
}

fn refused(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": code, "message": message.into() })),
    )
        .into_response()
}

/// A route's segment id: digits only, positive.
fn segment_id(text: &str) -> Option<i64> {
    (!text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<i64>().ok())
        .flatten()
        .filter(|n| *n > 0)
}

/// The refusal of a `link` that is not signed for `file` of segment `id` or has expired (`again`
/// says which link to take again); None for a good one.
fn link_refusal(
    state: &AppState,
    id: i64,
    file: &str,
    link: &Link,
    again: &str,
) -> Option<Response> {
    let (Some(exp), Some(sig)) = (link.exp, link.sig.as_deref()) else {
        return Some(refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this link is not signed: take the segment's {again} link again"),
        ));
    };
    if crate::secret::verify_download(&state.recordings.key, id, file, exp, sig, now_ms()) {
        return None;
    }
    Some(refused(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("this link is wrong or has expired: take the segment's {again} link again"),
    ))
}

/// Runs `job` on a thread of its own at the lowest priority, holding the one slot exports and
/// playback share (this waits for the job being done before it).
async fn on_export_thread<R: Send + 'static>(
    state: &AppState,
    job: impl FnOnce(&Path, &Store, &TakeStore) -> Result<R, ExportError> + Send + 'static,
) -> Result<R, ExportError> {
    let Ok(permit) = state.exports.slots.clone().acquire_owned().await else {
        return Err(internal("the server is stopping"));
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let data_dir = state.recordings.data_dir.clone();
    let store = state.exports.store.clone();
    let takes = state.takes.store.clone();
    std::thread::Builder::new()
        .name("parley-export".into())
        .spawn(move || {
            // Held until the job is done, even if the asker has gone.
            let _permit = permit;
            lower_priority();
            // The asker may have gone: what it made is then dropped (an open file closed) here.
            let _ = tx.send(job(&data_dir, &store, &takes));
        })
        .map_err(|e| {
            tracing::error!("no thread for a segment export or playback: {e}");
            internal(format!("no thread: {e}"))
        })?;
    rx.await
        .unwrap_or_else(|_| Err(internal("the export's thread ended")))
}

/// Streams an open (unlinked) file of `len` bytes.
fn file_response(file: File, len: u64, content_type: &'static str, disposition: &str) -> Response {
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    response
}

/// `GET /api/segments/<id>/export.zip?exp=…&sig=…`.
pub async fn segment_export(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    Query(link): Query<Link>,
) -> Response {
    let Some(id) = segment_id(&id) else {
        return ExportError::NoSuchSegment.response();
    };
    if let Some(refusal) = link_refusal(&state, id, EXPORT_LINK_FILE, &link, "export") {
        return refusal;
    }
    let built = on_export_thread(&state, move |data_dir, store, takes| {
        let result = build(data_dir, &format!("segment-{id}"), "zip", |out| {
            write_segment_zip(data_dir, store, takes, id, out)
        });
        match &result {
            Ok((_, bytes, report)) => tracing::info!(
                segment = id,
                tracks = report.tracks.len(),
                bytes,
                seconds = report.took_s,
                recording = report.recording_source,
                "segment exported"
            ),
            Err(ExportError::Internal(e)) => {
                tracing::error!(segment = id, "segment export failed: {e}")
            }
            Err(_) => {}
        }
        result
    })
    .await;
    match built {
        Ok((file, len, _)) => file_response(
            file,
            len,
            "application/zip",
            &format!("attachment; filename=\"segment-{id}.zip\""),
        ),
        Err(e) => e.response(),
    }
}

/// A playback refusal (an internal error's detail stays in the log).
fn play_refusal(e: &ExportError) -> Response {
    match e {
        ExportError::Internal(_) => refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the track could not be made",
        ),
        other => other.response(),
    }
}

/// `GET /api/segments/<id>/play/<track>.wav?exp=…&sig=…`: one track cut to the segment, a WAV
/// (`HEAD` answers whether it is there, without making it).
pub async fn segment_play(
    State(state): State<AppState>,
    method: Method,
    UrlPath((id, file)): UrlPath<(String, String)>,
    Query(link): Query<Link>,
) -> Response {
    let Some(id) = segment_id(&id) else {
        return ExportError::NoSuchSegment.response();
    };
    let Some(track) = file.strip_suffix(".wav").and_then(PlayTrack::parse) else {
        return refused(
            StatusCode::NOT_FOUND,
            "no_such_track",
            "no such track: mix.wav or take-<id>.wav",
        );
    };
    if let Some(refusal) = link_refusal(&state, id, &track.link_file(), &link, "playback") {
        return refusal;
    }
    // First without the slot (nothing is made): a take still arriving is told so at once.
    let data_dir = state.recordings.data_dir.clone();
    let store = state.exports.store.clone();
    let takes = state.takes.store.clone();
    let checked = tokio::task::spawn_blocking(move || {
        check_segment_track(&data_dir, &store, &takes, id, track)
    })
    .await
    .unwrap_or_else(|e| Err(internal(e)));
    if let Err(e) = checked {
        if let ExportError::Internal(detail) = &e {
            tracing::error!(segment = id, %track, "segment playback failed: {detail}");
        }
        return play_refusal(&e);
    }
    let disposition = format!("inline; filename=\"segment-{id}-{track}.wav\"");
    if method == Method::HEAD {
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        return response;
    }
    let built = on_export_thread(&state, move |data_dir, store, takes| {
        let result = build(data_dir, &format!("segment-{id}-{track}"), "wav", |out| {
            write_segment_track(data_dir, store, takes, id, track, out)
        });
        match &result {
            Ok((_, bytes, report)) => tracing::debug!(
                segment = id,
                %track,
                bytes,
                seconds = report.took_s,
                source = report.source,
                "segment track made for playback"
            ),
            Err(ExportError::Internal(e)) => {
                tracing::error!(segment = id, %track, "segment playback failed: {e}")
            }
            Err(_) => {}
        }
        result
    })
    .await;
    match built {
        Ok((file, len, _)) => {
            let mut response = file_response(file, len, "audio/wav", &disposition);
            // Each request cuts the track anew: a player gets the whole file, not ranges of it.
            response
                .headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
            response
        }
        Err(e) => play_refusal(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreWrite;
    use crate::takes::{ChunkHeader, NewTake, TakeLimits};
    use parley_media::ogg_opus::OggOpusWriter;
    use parley_media::wav::FLOAT_DATA_OFFSET;
    use parley_proto::RecordingFile;
    use sha2::{Digest, Sha256};
    use std::io::{Cursor, Read};

    /// The room recording's start (server time, Unix ms).
    const REC: i64 = 1_795_000_000_000;
    const RECF: f64 = REC as f64;
    /// A tone's onset, in the mix and in take A alike (server time).
    const ONSET: f64 = RECF + 4_000.3;
    /// Take A's first frame (44.1 kHz mono, complete) and take B's (96 kHz stereo, uploading).
    const TAKE_A: f64 = RECF + 2_000.37;
    const TAKE_B: f64 = RECF + 1_000.0;
    const SEG_START: f64 = RECF + 1_500.4;
    const SEG_END: f64 = RECF + 6_000.6;

    struct Fixture {
        dir: PathBuf,
        store: Store,
        takes: TakeStore,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("parley-export-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Fixture {
            store: Store::open(&dir).unwrap(),
            takes: TakeStore::open(&dir, TakeLimits::default()).unwrap(),
            dir,
        }
    }

    fn write(store: &Store, w: StoreWrite) {
        store.write(&w, REC).unwrap();
    }

    fn session(store: &Store, id: i64, room: &str, recording: Option<i64>) {
        write(
            store,
            StoreWrite::StudioSessionStarted {
                id,
                room: room.into(),
                started_at_ms: REC - 1_000,
            },
        );
        if let Some(recording_id) = recording {
            write(
                store,
                StoreWrite::StudioSessionRecording { id, recording_id },
            );
        }
    }

    fn segment(store: &Store, session_id: i64, id: i64, start: f64, end: Option<f64>, label: &str) {
        write(
            store,
            StoreWrite::PutSegment {
                session_id,
                segment: Segment {
                    segment_id: id,
                    start_ms: start,
                    end_ms: end,
                    label: label.into(),
                    by: "Pro".into(),
                    export_url: None,
                    playback: Vec::new(),
                },
            },
        );
    }

    fn marker(store: &Store, session_id: i64, id: i64, at_ms: f64, label: &str) {
        write(
            store,
            StoreWrite::AddMarker {
                session_id,
                marker: Marker {
                    marker_id: id,
                    at_ms,
                    label: label.into(),
                    by: "Pro".into(),
                },
            },
        );
    }

    /// The mix's source: a tiny pattern (every sample differs from its neighbours) with a 1 kHz
    /// cosine from `ONSET` on.
    fn mix_source() -> Vec<i16> {
        let onset = ((ONSET - RECF) * 48.0).round() as usize;
        (0..10 * 48_000usize)
            .map(|i| {
                let pattern = (i % 5) as i16 - 2;
                if i < onset {
                    pattern
                } else {
                    let t = (i - onset) as f64 / 48_000.0;
                    (16_000.0 * (2.0 * std::f64::consts::PI * 1_000.0 * t).cos()) as i16 + pattern
                }
            })
            .collect()
    }

    /// Take A's samples: a tiny pattern, and a 1 kHz cosine from `ONSET` on.
    fn take_a_source() -> Vec<f32> {
        let onset = ((ONSET - TAKE_A) * 44.1).round() as usize;
        (0..6 * 44_100usize)
            .map(|i| {
                let pattern = ((i % 11) as f32 - 5.0) * 1e-5;
                if i < onset {
                    pattern
                } else {
                    let t = (i - onset) as f64 / 44_100.0;
                    (0.5 * (2.0 * std::f64::consts::PI * 1_000.0 * t).cos()) as f32 + pattern
                }
            })
            .collect()
    }

    /// Take B's samples (stereo, interleaved), 5 s at 96 kHz.
    fn take_b_source() -> Vec<f32> {
        (0..5 * 96_000usize * 2)
            .map(|i| ((i as f32) * 0.001).sin() * 0.25)
            .collect()
    }

    fn upload(
        takes: &TakeStore,
        id: i64,
        source: &[f32],
        channels: usize,
        frames: usize,
        skip: &[u32],
    ) {
        for (seq, chunk) in source.chunks(frames * channels).enumerate() {
            let seq = seq as u32;
            if skip.contains(&seq) {
                continue;
            }
            let body: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            let header = ChunkHeader {
                seq,
                first_sample: u64::from(seq) * frames as u64,
                samples: (chunk.len() / channels) as u32,
                sha256: Sha256::digest(&body).into(),
            };
            takes.put_chunk(id, header, &body).unwrap();
        }
    }

    fn new_take(
        room: &str,
        session_id: i64,
        who: u64,
        name: &str,
        rate: u32,
        channels: u16,
        at: f64,
    ) -> NewTake {
        NewTake {
            room: room.into(),
            session_id,
            participant_id: who,
            name: name.into(),
            sample_rate: rate,
            channels,
            started_at_ms: at,
            token_hash: [1; 32],
            created_at_ms: REC,
        }
    }

    /// A voice file as the recorder makes one: libopus packets of a 600 Hz tone from 4.0 s to 8.0 s
    /// of the recording, on its grid, 10 s long.
    fn voice_file(path: &Path) {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let lookahead = enc.get_lookahead().unwrap() as u16;
        let comments = vec!["TITLE=../../etc/passwd".to_string()];
        let mut w =
            OggOpusWriter::create_with_pre_skip(path, 1, 12, "parley", &comments, lookahead)
                .unwrap();
        for n in 0..200usize {
            let frame: Vec<f32> = (0..960)
                .map(|k| {
                    let t = (n * 960 + k) as f64 / 48_000.0;
                    (0.4 * (2.0 * std::f64::consts::PI * 600.0 * t).sin()) as f32
                })
                .collect();
            let packet = enc.encode_vec_float(&frame, 1500).unwrap();
            w.write_at(192_000 + (n * 960) as i64, &packet).unwrap();
        }
        w.finish_at(480_000).unwrap();
    }

    /// A finished room recording (id 1) with its mix and one voice, a session (1) with two takes, a
    /// segment (5) and markers.
    fn studio(f: &Fixture) -> (Vec<i16>, Vec<f32>, Vec<f32>) {
        write(
            &f.store,
            StoreWrite::RecordingStarted {
                id: 1,
                room: "band".into(),
                started_by: "Pro".into(),
                started_at_ms: REC,
            },
        );
        let dir = recording_dir(&f.dir, 1);
        fs::create_dir_all(&dir).unwrap();
        let mix = mix_source();
        let mut w = WavWriter::create(&dir.join("mix.wav"), 48_000, 1).unwrap();
        w.write(&mix).unwrap();
        w.finish(48_000).unwrap();
        voice_file(&dir.join("p12-audio.ogg"));
        write(
            &f.store,
            StoreWrite::RecordingFinished {
                id: 1,
                state: RecordingState::Ready,
                duration_ms: Some(10_000),
                files: vec![RecordingFile {
                    name: "p12-audio.ogg".into(),
                    kind: "track".into(),
                    format: "ogg".into(),
                    participant_id: Some(12),
                    participant_name: Some("../../etc/passwd".into()),
                    bytes: 1,
                    url: None,
                }],
                message: None,
            },
        );
        session(&f.store, 1, "band", Some(1));
        segment(&f.store, 1, 5, SEG_START, Some(SEG_END), "Take 2 / verse");
        marker(&f.store, 1, 1, RECF + 3_000.0, "chorus");
        marker(&f.store, 1, 2, RECF + 9_000.0, "after");
        marker(&f.store, 1, 3, SEG_START, "at the start");
        marker(&f.store, 1, 4, SEG_END, "at the end: outside");

        let a = f
            .takes
            .create(new_take("band", 1, 12, "Ann", 44_100, 1, TAKE_A))
            .unwrap();
        let take_a = take_a_source();
        upload(&f.takes, a.id, &take_a, 1, 44_100, &[]);
        let a = f.takes.end(a.id, take_a.len() as u64).unwrap();
        assert_eq!(a.state, crate::takes::TakeState::Complete);
        let b = f
            .takes
            .create(new_take("band", 1, 13, "Bo \u{2603}/..", 96_000, 2, TAKE_B))
            .unwrap();
        let take_b = take_b_source();
        // Still uploading: its third second has not come yet.
        upload(&f.takes, b.id, &take_b, 2, 96_000, &[2, 4]);
        // Another session's take, and one of this session that starts after the segment.
        f.takes
            .create(new_take("band", 2, 12, "Ann", 48_000, 1, TAKE_A))
            .unwrap();
        f.takes
            .create(new_take("band", 1, 12, "Ann", 48_000, 1, SEG_END + 1.0))
            .unwrap();
        (mix, take_a, take_b)
    }

    fn entries(zip: &Path) -> Vec<String> {
        let archive = zip::ZipArchive::new(File::open(zip).unwrap()).unwrap();
        archive.file_names().map(str::to_string).collect()
    }

    fn entry(zip: &Path, name: &str) -> Vec<u8> {
        let mut archive = zip::ZipArchive::new(File::open(zip).unwrap()).unwrap();
        let mut file = archive.by_name(name).unwrap();
        assert_eq!(file.compression(), CompressionMethod::Stored);
        let mut out = Vec::new();
        file.read_to_end(&mut out).unwrap();
        out
    }

    /// An entry read by the WAV reader (from a file beside the zip).
    fn wav_entry(f: &Fixture, zip: &Path, name: &str) -> WavReader {
        let path = f.dir.join(format!("read-{}", name.replace('/', "_")));
        fs::write(&path, entry(zip, name)).unwrap();
        WavReader::open(&path).unwrap()
    }

    fn all_i16(mut r: WavReader) -> Vec<i16> {
        let mut out = vec![0i16; r.frames() as usize * usize::from(r.channels)];
        assert_eq!(r.read_i16(&mut out).unwrap() as u64, r.frames());
        out
    }

    fn all_f32(mut r: WavReader) -> Vec<f32> {
        let mut out = vec![0f32; r.frames() as usize * usize::from(r.channels)];
        assert_eq!(r.read_f32(&mut out).unwrap() as u64, r.frames());
        out
    }

    fn onset<T: Copy>(x: &[T], loud: impl Fn(T) -> bool) -> usize {
        x.iter().position(|s| loud(*s)).unwrap()
    }

    #[test]
    fn every_track_cut_to_the_segment_in_every_format_and_aligned() {
        let f = fixture("all");
        let (mix, take_a, take_b) = studio(&f);
        let out = f.dir.join("out.zip");
        let report = write_segment_zip(&f.dir, &f.store, &f.takes, 5, &out).unwrap();
        assert_eq!(report.recording_source, "files");
        let folder = "segment-5-Take_2___verse";
        assert_eq!(report.folder, folder);
        let names = entries(&out);
        let mut want = vec![format!("{folder}/"), format!("{folder}/segment.json")];
        for stem in [
            "mix",
            "voice-12-______etc_passwd",
            "take-1-Ann",
            "take-2-Bo_____",
        ] {
            for ext in ["wav", "flac", "mp3"] {
                want.push(format!("{folder}/{stem}.{ext}"));
            }
        }
        let mut sorted = names.clone();
        sorted.sort();
        want.sort();
        assert_eq!(sorted, want);
        assert_eq!(report.entries.len(), names.len());
        for name in &names {
            // One folder, no way out of it.
            assert!(name.starts_with(&format!("{folder}/")), "{name}");
            assert!(!name.contains("..") && !name.contains('\\'), "{name}");
            assert!(name.matches('/').count() == 1, "{name}");
        }

        // The mix: exactly the source's frames [round((start − rec) × 48), round((end − rec) × 48)).
        let (first, last) = (72_019usize, 288_029usize);
        assert_eq!(
            span(RECF, 48_000, SEG_START, SEG_END),
            Span {
                first: first as i64,
                frames: (last - first) as u64,
            }
        );
        let got = all_i16(wav_entry(&f, &out, &format!("{folder}/mix.wav")));
        assert_eq!(got.len(), last - first);
        assert_eq!((got[0], got[got.len() - 1]), (mix[first], mix[last - 1]));
        assert!(got == mix[first..last], "the mix's span, sample for sample");
        let flac = entry(&out, &format!("{folder}/mix.flac"));
        let mut r = claxon::FlacReader::new(Cursor::new(flac)).unwrap();
        assert_eq!(
            (r.streaminfo().bits_per_sample, r.streaminfo().sample_rate),
            (16, 48_000)
        );
        let back: Vec<i16> = r.samples().map(|s| s.unwrap() as i16).collect();
        assert!(back == got, "the mix's FLAC holds the same samples");

        // Take A: leading silence (the segment starts half a second before it), then its samples bit
        // for bit.
        let a = span(TAKE_A, 44_100, SEG_START, SEG_END);
        assert_eq!(
            a,
            Span {
                first: -22_049,
                frames: 198_459
            }
        );
        let got = all_f32(wav_entry(&f, &out, &format!("{folder}/take-1-Ann.wav")));
        assert_eq!(got.len(), 198_459);
        assert!(
            got[..22_049].iter().all(|s| s.to_bits() == 0),
            "silence, exactly as long"
        );
        let bits = |x: &[f32]| x.iter().map(|s| s.to_bits()).collect::<Vec<u32>>();
        assert_eq!(got[22_049], take_a[0]);
        assert!(
            bits(&got[22_049..]) == bits(&take_a[..176_410]),
            "the take's span, bit-exact"
        );
        let flac = entry(&out, &format!("{folder}/take-1-Ann.flac"));
        let mut r = claxon::FlacReader::new(Cursor::new(flac)).unwrap();
        assert_eq!(
            (r.streaminfo().bits_per_sample, r.streaminfo().sample_rate),
            (24, 44_100)
        );
        let back: Vec<i32> = r.samples().map(|s| s.unwrap()).collect();
        let want: Vec<i32> = got.iter().map(|s| float_to_i24(*s).0).collect();
        assert!(back == want, "the take's FLAC holds its 24-bit values");

        // The same onset in the mix and the take lands at the same offset in the two files.
        let mix_onset = onset(
            &all_i16(wav_entry(&f, &out, &format!("{folder}/mix.wav"))),
            |s| s.abs() > 8_000,
        );
        let take_onset = onset(&got, |s| s.abs() > 0.25);
        let mix_ms = mix_onset as f64 / 48.0;
        let take_ms = take_onset as f64 / 44.1;
        assert!(
            (mix_ms - take_ms).abs() <= 1.0,
            "mix onset at {mix_ms} ms, take's at {take_ms} ms"
        );
        assert!((mix_ms - (ONSET - SEG_START)).abs() <= 0.05, "{mix_ms}");

        // Take B (still uploading, stereo 96 kHz): the frames not uploaded and past its end are silence.
        let b = span(TAKE_B, 96_000, SEG_START, SEG_END);
        assert_eq!(
            b,
            Span {
                first: 48_038,
                frames: 432_020
            }
        );
        let got = all_f32(wav_entry(&f, &out, &format!("{folder}/take-2-Bo_____.wav")));
        assert_eq!(got.len(), 432_020 * 2);
        let at = |frame: usize| (frame - 48_038) * 2;
        assert!(bits(&got[..at(192_000)]) == bits(&take_b[48_038 * 2..192_000 * 2]));
        assert!(
            got[at(192_000)..at(288_000)].iter().all(|s| *s == 0.0),
            "a chunk not yet here"
        );
        assert!(bits(&got[at(288_000)..at(384_000)]) == bits(&take_b[288_000 * 2..384_000 * 2]));
        assert!(
            got[at(384_000)..].iter().all(|s| *s == 0.0),
            "past what arrived"
        );

        // The voice: decoded on the recording's grid, the segment's length.
        let voice = all_i16(wav_entry(
            &f,
            &out,
            &format!("{folder}/voice-12-______etc_passwd.wav"),
        ));
        assert_eq!(voice.len(), last - first);
        let voice_onset = onset(&voice, |s| s.abs() > 3_000) as f64 / 48.0;
        let want = 4_000.0 - (SEG_START - RECF);
        assert!(
            (voice_onset - want).abs() <= 3.0,
            "voice onset {voice_onset} ms, want {want}"
        );

        // MP3s: 320 kbit/s CBR, at the track's rate (48 kHz for 96 kHz), the span's length.
        for (stem, frames, rate, channels) in [
            ("mix", (last - first) as u64, 48_000, 1),
            (
                "voice-12-______etc_passwd",
                (last - first) as u64,
                48_000,
                1,
            ),
            ("take-1-Ann", 198_459, 44_100, 1),
            ("take-2-Bo_____", 432_020 / 2, 48_000, 2),
        ] {
            let scan = parley_media::mp3::scan(&entry(&out, &format!("{folder}/{stem}.mp3")));
            assert_eq!(scan.tag.as_deref(), Some("Info"), "{stem}");
            assert!(
                scan.frames.iter().all(|h| h.bitrate_kbps == 320
                    && h.sample_rate == rate
                    && h.channels == channels),
                "{stem}"
            );
            assert!(
                scan.samples().abs_diff(frames) <= 1_152,
                "{stem}: {} for {frames}",
                scan.samples()
            );
        }

        // segment.json: the segment, the session, every track and the markers inside.
        let json: serde_json::Value =
            serde_json::from_slice(&entry(&out, &format!("{folder}/segment.json"))).unwrap();
        assert_eq!(json["segment"]["segment_id"], 5);
        assert_eq!(json["segment"]["label"], "Take 2 / verse");
        assert_eq!(json["session"]["session_id"], 1);
        assert_eq!(json["session"]["recording_id"], 1);
        assert_eq!(json["recording"]["started_at_ms"], REC);
        let tracks = json["tracks"].as_array().unwrap();
        let kinds: Vec<&str> = tracks.iter().map(|t| t["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["mix", "voice", "take", "take"]);
        assert_eq!(tracks[1]["participant_id"], 12);
        assert_eq!(
            tracks[1]["name"], "../../etc/passwd",
            "the name as given, in the JSON"
        );
        assert_eq!(tracks[2]["take_id"], 1);
        assert_eq!(tracks[2]["silence_before"], 22_049);
        assert_eq!(tracks[2]["frames"], 198_459);
        assert_eq!(tracks[3]["channels"], 2);
        let first_ms = tracks[2]["first_sample_server_ms"].as_f64().unwrap();
        assert!((first_ms - SEG_START).abs() <= 0.5 / 44.1);
        let first_ms = tracks[0]["first_sample_server_ms"].as_f64().unwrap();
        assert!((first_ms - SEG_START).abs() <= 0.5 / 48.0);
        assert_eq!(tracks[0]["files"].as_array().unwrap().len(), 3);
        let markers: Vec<i64> = json["markers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["marker_id"].as_i64().unwrap())
            .collect();
        assert_eq!(markers, [3, 1], "inside [start, end), by time");

        // Nothing left beside the zip.
        let left: Vec<_> = fs::read_dir(&f.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".work"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn refuses_open_overlong_and_unknown_segments() {
        let f = fixture("refuse");
        session(&f.store, 1, "band", None);
        segment(&f.store, 1, 6, RECF, None, "open");
        segment(
            &f.store,
            1,
            7,
            RECF,
            Some(RECF + MAX_SEGMENT_MS + 0.5),
            "long",
        );
        let out = f.dir.join("out.zip");
        let export = |id| write_segment_zip(&f.dir, &f.store, &f.takes, id, &out);
        let refused = |r: Result<ExportReport, ExportError>| {
            let e = r.err().unwrap();
            (e.status().as_u16(), e.code())
        };
        assert_eq!(refused(export(6)), (409, "open_segment"));
        assert_eq!(refused(export(7)), (413, "segment_too_long"));
        assert_eq!(refused(export(99)), (404, "no_such_segment"));
        assert!(!out.exists());
        // An hour exactly is allowed; with no recording and no takes it is an empty folder.
        segment(&f.store, 1, 8, RECF, Some(RECF + MAX_SEGMENT_MS), "hour");
        let report = export(8).unwrap();
        assert_eq!(report.recording_source, "no_recording");
        assert!(report.tracks.is_empty());
        assert_eq!(
            entries(&out),
            ["segment-8-hour/", "segment-8-hour/segment.json"]
        );
    }

    #[test]
    fn names_from_clients_become_harmless_entry_names() {
        assert_eq!(entry_part("../../etc/passwd"), "______etc_passwd");
        assert_eq!(entry_part("Ann-Marie_2"), "Ann-Marie_2");
        assert_eq!(entry_part("C:\\x y\0é"), "C__x_y__");
        assert_eq!(entry_part(&"a".repeat(100)).len(), 40);
        assert_eq!(named("voice-3", "  "), "voice-3");
        assert_eq!(named("voice-3", ".."), "voice-3-__");
        assert_eq!(voice_file_participant("p12-audio.ogg"), Some(12));
        assert_eq!(voice_file_participant("p12-audio-2.ogg"), Some(12));
        for bad in [
            "p12.webm",
            "mix.ogg",
            "p-audio.ogg",
            "p12-audio-.ogg",
            "p1x-audio.ogg",
            "p12-audiox.ogg",
        ] {
            assert_eq!(voice_file_participant(bad), None, "{bad}");
        }
        // 2026-01-01 00:00:00 UTC; the zip's range is kept to.
        let t = zip_time(1_767_225_600_000);
        assert_eq!((t.year(), t.month(), t.day(), t.hour()), (2026, 1, 1, 0));
        let t = zip_time(951_827_696_000); // 2000-02-29 12:34:56
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2000, 2, 29, 12, 34, 56)
        );
        assert_eq!(zip_time(0).year(), 1980);
    }

    /// A journal of 20 ms Opus packets of a tone from `from_s` to `to_s` of the recording, each
    /// arriving 10 ms after it was sent.
    fn tone_journal(path: &Path, participant: u64, name: &str, from_s: f64, to_s: f64) {
        use parley_media::journal::{JournalWriter, TrackHeader};
        let header = TrackHeader {
            media: TrackMedia::Audio,
            codec: "opus".into(),
            clock_rate: 48_000,
            payload_type: 111,
            participant_id: participant,
            name: name.into(),
            recording_start_unix_ms: REC,
            track_start_us: 0,
        };
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut w = JournalWriter::create(path, &header).unwrap();
        let now = Instant::now();
        let packets = ((to_s - from_s) * 50.0) as usize;
        for n in 0..packets {
            let frame: Vec<f32> = (0..960)
                .map(|k| (0.4 * ((n * 960 + k) as f64 * 0.08).sin()) as f32)
                .collect();
            let payload = enc.encode_vec_float(&frame, 1500).unwrap();
            let mut rtp = vec![0x80, 111];
            rtp.extend_from_slice(&(n as u16).to_be_bytes());
            rtp.extend_from_slice(&((n * 960) as u32).to_be_bytes());
            rtp.extend_from_slice(&(participant as u32).to_be_bytes());
            rtp.extend_from_slice(&payload);
            let arrival_us = ((from_s + n as f64 * 0.02) * 1e6) as u64 + 10_000;
            w.append(arrival_us, &rtp, now).unwrap();
        }
        w.finish().unwrap();
    }

    /// Irregular 440 Hz bursts (like playing) from `from_s`, `seconds` of them at `rate`, as
    /// `gain` × the source: the same bursts whatever the rate.
    fn played(rate: u32, seconds: f64, from_s: f64, gain: f32) -> Vec<f32> {
        let n = (seconds * f64::from(rate)) as usize;
        let mut out = vec![0.0f32; n];
        let (mut t, mut k) = (from_s, 0u32);
        while t < seconds {
            let length = 0.08 + 0.05 * f64::from(k % 5);
            let first = (t * f64::from(rate)).round() as usize;
            let end = (((t + length) * f64::from(rate)).round() as usize).min(n);
            for (i, s) in out.iter_mut().enumerate().take(end).skip(first) {
                let x = (i - first) as f64 / f64::from(rate);
                let decay = (-x * 12.0).exp();
                *s = gain * (0.6 * decay * (2.0 * std::f64::consts::PI * 440.0 * x).sin()) as f32;
            }
            t += 0.23 + 0.11 * f64::from((k * 7) % 4);
            k += 1;
        }
        out
    }

    /// A finished recording (id 1, no mix) whose only voice is Cy's (participant 21) playing from
    /// 2.0 s, through libopus as the call sends it; a session with a take of Cy's (48 kHz mono) of
    /// the same playing, which the page's clock placed `clock_error_ms` late; segment 5 from 1.5 s
    /// to 9.5 s. Its take's id.
    fn played_together(f: &Fixture, clock_error_ms: f64) -> i64 {
        write(
            &f.store,
            StoreWrite::RecordingStarted {
                id: 1,
                room: "band".into(),
                started_by: "Pro".into(),
                started_at_ms: REC,
            },
        );
        let dir = recording_dir(&f.dir, 1);
        fs::create_dir_all(&dir).unwrap();
        let voice = played(48_000, 10.0, 2.0, 0.3);
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let lookahead = enc.get_lookahead().unwrap() as u16;
        let path = dir.join("p21-audio.ogg");
        let mut w =
            OggOpusWriter::create_with_pre_skip(&path, 1, 21, "parley", &[], lookahead).unwrap();
        // The encoder's lookahead delays its output: the pre-skip takes it away again.
        for (n, frame) in voice.chunks(960).enumerate() {
            let packet = enc.encode_vec_float(frame, 1500).unwrap();
            w.write_at((n * 960) as i64, &packet).unwrap();
        }
        w.finish_at(480_000).unwrap();
        write(
            &f.store,
            StoreWrite::RecordingFinished {
                id: 1,
                state: RecordingState::Ready,
                duration_ms: Some(10_000),
                files: vec![RecordingFile {
                    name: "p21-audio.ogg".into(),
                    kind: "track".into(),
                    format: "ogg".into(),
                    participant_id: Some(21),
                    participant_name: Some("Cy".into()),
                    bytes: 1,
                    url: None,
                }],
                message: None,
            },
        );
        session(&f.store, 1, "band", Some(1));
        segment(&f.store, 1, 5, RECF + 1_500.0, Some(RECF + 9_500.0), "");
        // The take begins at 1.0 s; the page thinks a little later.
        let take = played(48_000, 9.0, 1.0, 0.9);
        let t = f
            .takes
            .create(new_take(
                "band",
                1,
                21,
                "Cy",
                48_000,
                1,
                RECF + 1_000.0 + clock_error_ms,
            ))
            .unwrap();
        upload(&f.takes, t.id, &take, 1, 48_000, &[]);
        f.takes.end(t.id, take.len() as u64).unwrap();
        t.id
    }

    /// The first loud sample of the exported track `stem`, in ms from the segment's start.
    fn first_loud_ms(f: &Fixture, zip: &Path, stem: &str) -> f64 {
        let r = wav_entry(f, zip, &format!("segment-5/{stem}.wav"));
        let rate = f64::from(r.sample_rate);
        let x: Vec<f32> = if r.samples == WavSamples::Pcm16 {
            all_i16(r).iter().map(|s| f32::from(*s) / 32768.0).collect()
        } else {
            all_f32(r)
        };
        let peak = x.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        onset(&x, |s| s.abs() > peak * 0.3) as f64 * 1000.0 / rate
    }

    #[test]
    fn a_take_is_lined_up_with_its_artists_voice() {
        let f = fixture("align");
        let take_id = played_together(&f, 23.0);
        let out = f.dir.join("out.zip");
        let report = write_segment_zip(&f.dir, &f.store, &f.takes, 5, &out).unwrap();
        let take = report.tracks.iter().find(|t| t.kind == "take").unwrap();
        let alignment = take.alignment.clone().unwrap();
        assert_eq!(alignment.method, "voice", "{alignment:?}");
        assert_eq!(alignment.voice.as_deref(), Some("voice-21-Cy"));
        // The page placed it 23 ms late: it is moved 23 ms earlier.
        assert!((alignment.shift_ms + 23.0).abs() < 1.0, "{alignment:?}");
        assert!(alignment.score.unwrap() > 0.8, "{alignment:?}");
        let voice_ms = first_loud_ms(&f, &out, "voice-21-Cy");
        let take_ms = first_loud_ms(&f, &out, &format!("take-{take_id}-Cy"));
        assert!(
            (voice_ms - 500.0).abs() < 2.0,
            "the voice's first burst: {voice_ms} ms"
        );
        assert!(
            (take_ms - voice_ms).abs() < 1.0,
            "the take's first burst at {take_ms} ms, the voice's at {voice_ms} ms"
        );
        // segment.json says so.
        let json: serde_json::Value =
            serde_json::from_slice(&entry(&out, "segment-5/segment.json")).unwrap();
        let listed = json["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "take")
            .unwrap();
        assert_eq!(listed["alignment"]["method"], "voice");
        let listed_ms = listed["first_sample_server_ms"].as_f64().unwrap();
        assert!((listed_ms - take.first_sample_server_ms).abs() < 1e-3);
        // Within half a frame of the segment's start, wherever the take was moved.
        assert!((take.first_sample_server_ms - (RECF + 1_500.0)).abs() <= 0.5 / 48.0);
        // Playing the take gives the export's WAV of it, byte for byte: placed the same way.
        let played = f.dir.join("played.wav");
        let r = write_segment_track(
            &f.dir,
            &f.store,
            &f.takes,
            5,
            PlayTrack::Take(take_id),
            &played,
        )
        .unwrap();
        assert_eq!(r.span.first, take.first_source_frame);
        assert!(
            fs::read(&played).unwrap() == entry(&out, &format!("segment-5/take-{take_id}-Cy.wav")),
            "the played take is the exported one"
        );
        // The voice's own entry has no alignment.
        assert!(json["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"] != "take")
            .all(|t| t.get("alignment").is_none()));
    }

    #[test]
    fn a_take_with_no_voice_of_its_artist_keeps_its_clock() {
        let f = fixture("align-clock");
        let take_id = played_together(&f, 23.0);
        // Someone else's take of other playing: no voice of theirs, so where the clock put it.
        let other = played(48_000, 9.0, 1.37, 0.9);
        let t = f
            .takes
            .create(new_take("band", 1, 22, "Di", 48_000, 1, RECF + 1_000.0))
            .unwrap();
        upload(&f.takes, t.id, &other, 1, 48_000, &[]);
        f.takes.end(t.id, other.len() as u64).unwrap();
        let out = f.dir.join("out.zip");
        let report = write_segment_zip(&f.dir, &f.store, &f.takes, 5, &out).unwrap();
        let of = |id: i64| {
            report
                .tracks
                .iter()
                .find(|x| x.take_id == Some(id))
                .and_then(|x| x.alignment.clone())
                .unwrap()
        };
        assert_eq!(of(take_id).method, "voice");
        let clock = of(t.id);
        assert_eq!(
            clock,
            TakeAlignment {
                method: "clock",
                shift_ms: 0.0,
                voice: None,
                score: None
            }
        );
        let take_ms = first_loud_ms(&f, &out, &format!("take-{}-Di", t.id));
        assert!((take_ms - 870.0).abs() < 1.0, "{take_ms}");
    }

    #[test]
    fn a_running_recording_is_cut_from_its_live_journals() {
        let f = fixture("live");
        write(
            &f.store,
            StoreWrite::RecordingStarted {
                id: 2,
                room: "live".into(),
                started_by: "Pro".into(),
                started_at_ms: REC,
            },
        );
        let journals = journal_dir(&f.dir, 2);
        fs::create_dir_all(&journals).unwrap();
        tone_journal(&journals.join("p20-audio-0.journal"), 20, "Cy", 0.5, 3.0);
        tone_journal(&journals.join("p21-audio-0.journal"), 21, "Di", 1.0, 2.0);
        session(&f.store, 2, "live", Some(2));
        segment(&f.store, 2, 9, RECF + 1_000.0, Some(RECF + 2_500.0), "");
        let out = f.dir.join("live.zip");
        let report = write_segment_zip(&f.dir, &f.store, &f.takes, 9, &out).unwrap();
        assert_eq!(report.recording_source, "journals");
        let folder = "segment-9";
        let kinds: Vec<&str> = report.tracks.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, ["mix", "voice", "voice"]);
        assert!(report.tracks.iter().all(|t| t.frames == 72_000));
        let mix = all_i16(wav_entry(&f, &out, &format!("{folder}/mix.wav")));
        assert_eq!(mix.len(), 72_000);
        let loud = mix.iter().filter(|s| s.abs() > 1_000).count();
        assert!(
            loud > 10_000,
            "the tones are in the mix ({loud} loud samples)"
        );
        let voice = all_i16(wav_entry(&f, &out, &format!("{folder}/voice-21-Di.wav")));
        assert_eq!(voice.len(), 72_000);
        // Di spoke from 1.0 s (plus 10 ms of network) to 2.0 s: the segment's first second (and
        // then for 120 ms libopus conceals the gap).
        let on = onset(&voice, |s| s.abs() > 3_000) as f64 / 48.0;
        assert!(
            on < 20.0,
            "Di's voice starts at the segment's start ({on} ms)"
        );
        assert!(
            voice[56_000..].iter().all(|s| *s == 0),
            "and ends a second in"
        );
        // The journals are untouched, the temporary files gone.
        assert!(journals.join("p20-audio-0.journal").is_file());
        assert!(!f.dir.join("live.zip.work").exists());
        assert!(!recording_dir(&f.dir, 2).join("mix.wav").exists());

        // Playback while it runs: the same mix from the same journals, byte for byte.
        let play = f.dir.join("live-mix.wav");
        let report =
            write_segment_track(&f.dir, &f.store, &f.takes, 9, PlayTrack::Mix, &play).unwrap();
        assert_eq!(report.source, "journals");
        assert_eq!((report.sample_rate, report.channels), (48_000, 1));
        assert!(fs::read(&play).unwrap() == entry(&out, &format!("{folder}/mix.wav")));
        assert!(!f.dir.join("live-mix.wav.work").exists());
        assert!(journals.join("p21-audio-0.journal").is_file());
    }

    /// A journal of 20 ms Opus packets from `from_s` to `to_s` of the recording that sound like
    /// speech and do not repeat (syllables of 100–300 Hz with harmonics, some silent), each arriving
    /// 10 ms after it was sent.
    fn speech_journal(path: &Path, participant: u64, from_s: f64, to_s: f64) {
        use parley_media::journal::{JournalWriter, TrackHeader};
        let header = TrackHeader {
            media: TrackMedia::Audio,
            codec: "opus".into(),
            clock_rate: 48_000,
            payload_type: 111,
            participant_id: participant,
            name: format!("P{participant}"),
            recording_start_unix_ms: REC,
            track_start_us: 0,
        };
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut w = JournalWriter::create(path, &header).unwrap();
        let now = Instant::now();
        let mut seed = participant.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut pitch, mut level, mut phase) = (150.0, 0.3, 0.0f64);
        for n in 0..((to_s - from_s) * 50.0) as usize {
            // A syllable every 200 ms.
            if n % 10 == 0 {
                pitch = 100.0 + 200.0 * random();
                level = if random() < 0.25 {
                    0.0
                } else {
                    0.1 + 0.3 * random()
                };
            }
            let frame: Vec<f32> = (0..960)
                .map(|_| {
                    phase += 2.0 * std::f64::consts::PI * pitch / 48_000.0;
                    let v: f64 = (1..=5).map(|h| (phase * h as f64).sin() / h as f64).sum();
                    (level * v + 0.003 * (random() - 0.5)) as f32
                })
                .collect();
            let payload = enc.encode_vec_float(&frame, 1500).unwrap();
            let mut rtp = vec![0x80, 111];
            rtp.extend_from_slice(&(n as u16).to_be_bytes());
            rtp.extend_from_slice(&((n * 960) as u32).to_be_bytes());
            rtp.extend_from_slice(&(participant as u32).to_be_bytes());
            rtp.extend_from_slice(&payload);
            let arrival_us = ((from_s + n as f64 * 0.02) * 1e6) as u64 + 10_000;
            w.append(arrival_us, &rtp, now).unwrap();
        }
        w.finish().unwrap();
    }

    /// Makes recording `id`'s files from its journals as the recorder does (the mix, a voice per
    /// person) and marks it ready.
    fn make_recording(f: &Fixture, id: i64, duration_ms: i64) {
        let journals = journal_dir(&f.dir, id);
        let mut paths: Vec<PathBuf> = fs::read_dir(&journals)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        let dir = recording_dir(&f.dir, id);
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        let outputs = parley_media::MixOutputs {
            wav: Some(&dir.join(MIX_FILE)),
            ..parley_media::MixOutputs::default()
        };
        let settings = parley_media::MixSettings {
            threads: 0,
            ..parley_media::MixSettings::default()
        };
        let duration_us = duration_ms as u64 * 1000;
        parley_media::mix_tracks_with(&refs, outputs, duration_us, &settings).unwrap();
        let mut files = Vec::new();
        for path in &paths {
            let header = JournalReader::open(path).unwrap().header;
            let name = format!("p{}-audio.ogg", header.participant_id);
            parley_media::finalize_opus_track(path, &dir.join(&name), duration_us).unwrap();
            files.push(RecordingFile {
                name,
                kind: "track".into(),
                format: "ogg".into(),
                participant_id: Some(header.participant_id),
                participant_name: Some(header.name),
                bytes: 1,
                url: None,
            });
        }
        write(
            &f.store,
            StoreWrite::RecordingFinished {
                id,
                state: RecordingState::Ready,
                duration_ms: Some(duration_ms),
                files,
                message: None,
            },
        );
    }

    /// The difference's power against `a`'s (dB) and the largest difference.
    fn difference_db(a: &[i16], b: &[i16]) -> (f64, i32) {
        let (mut e, mut p, mut max) = (0.0, 1e-9, 0);
        for (x, y) in a.iter().zip(b) {
            let d = i32::from(*x) - i32::from(*y);
            e += f64::from(d) * f64::from(d);
            p += f64::from(*x) * f64::from(*x);
            max = max.max(d.abs());
        }
        (10.0 * (e.max(1e-9) / p).log10(), max)
    }

    #[test]
    fn a_live_segment_is_the_segment_of_the_made_recording() {
        let f = fixture("live-made");
        write(
            &f.store,
            StoreWrite::RecordingStarted {
                id: 4,
                room: "made".into(),
                started_by: "Pro".into(),
                started_at_ms: REC,
            },
        );
        let journals = journal_dir(&f.dir, 4);
        fs::create_dir_all(&journals).unwrap();
        speech_journal(&journals.join("p30-audio-0.journal"), 30, 0.3, 40.0);
        speech_journal(&journals.join("p31-audio-0.journal"), 31, 5.0, 40.0);
        session(&f.store, 4, "made", Some(4));
        // A segment late in the recording, at fractional ms.
        segment(&f.store, 4, 12, RECF + 30_200.37, Some(RECF + 35_700.6), "");
        let live = f.dir.join("live.zip");
        let report = write_segment_zip(&f.dir, &f.store, &f.takes, 12, &live).unwrap();
        assert_eq!(report.recording_source, "journals");
        let live_tracks = report.tracks;
        let live_play = f.dir.join("live-play.wav");
        write_segment_track(&f.dir, &f.store, &f.takes, 12, PlayTrack::Mix, &live_play).unwrap();

        make_recording(&f, 4, 40_000);
        let made = f.dir.join("made.zip");
        let report = write_segment_zip(&f.dir, &f.store, &f.takes, 12, &made).unwrap();
        assert_eq!(report.recording_source, "files");
        assert_eq!(report.tracks.len(), live_tracks.len());
        for (l, m) in live_tracks.iter().zip(&report.tracks) {
            assert_eq!(
                (l.kind, l.participant_id, l.frames),
                (m.kind, m.participant_id, m.frames)
            );
            assert!(
                (l.first_sample_server_ms - m.first_sample_server_ms).abs() < 1e-6,
                "the same frames of the recording: {} vs {}",
                l.first_sample_server_ms,
                m.first_sample_server_ms
            );
            // Counted from the recording's start either way (the live files begin near the segment).
            assert_eq!(l.first_source_frame, m.first_source_frame);
        }
        let folder = "segment-12";
        for name in ["mix", "voice-30-P30", "voice-31-P31"] {
            let entry = format!("{folder}/{name}.wav");
            let live = all_i16(wav_entry(&f, &live, &entry));
            let made = all_i16(wav_entry(&f, &made, &entry));
            assert_eq!(live.len(), made.len());
            let (db, max) = difference_db(&made, &live);
            eprintln!("{name}: live against made: {db:.1} dB, largest difference {max}");
            if name == "mix" {
                // Denoised from a few seconds before (see parley_media::mix_window).
                assert!(db < -45.0, "{name}: {db} dB");
            } else {
                assert!(max <= 8, "{name}: {max}");
            }
        }
        // Playback while it ran gave the live export's mix.
        assert!(fs::read(&live_play).unwrap() == entry(&live, &format!("{folder}/mix.wav")));
    }

    /// The time to export and to play a 10 s segment at the end of a 10-minute live recording of
    /// three people.
    #[test]
    #[ignore = "a measurement: cargo test --release -p parley live_export_time -- --ignored --nocapture"]
    fn live_export_time_at_the_end_of_a_long_recording() {
        let f = fixture("live-long");
        write(
            &f.store,
            StoreWrite::RecordingStarted {
                id: 5,
                room: "long".into(),
                started_by: "Pro".into(),
                started_at_ms: REC,
            },
        );
        let journals = journal_dir(&f.dir, 5);
        fs::create_dir_all(&journals).unwrap();
        let t = Instant::now();
        for p in 40..43 {
            speech_journal(
                &journals.join(format!("p{p}-audio-0.journal")),
                p,
                0.0,
                600.0,
            );
        }
        eprintln!("journals made in {:.1} s", t.elapsed().as_secs_f64());
        session(&f.store, 5, "long", Some(5));
        segment(
            &f.store,
            5,
            13,
            RECF + 590_000.0,
            Some(RECF + 600_000.0),
            "end",
        );
        let t = Instant::now();
        let report =
            write_segment_zip(&f.dir, &f.store, &f.takes, 13, &f.dir.join("e.zip")).unwrap();
        let export_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let play = f.dir.join("p.wav");
        write_segment_track(&f.dir, &f.store, &f.takes, 13, PlayTrack::Mix, &play).unwrap();
        let play_s = t.elapsed().as_secs_f64();
        eprintln!(
            "10 s segment at the end of a 10-minute live recording of 3 people: export {export_s:.2} s ({} tracks, from {}), playing the mix {play_s:.2} s",
            report.tracks.len(),
            report.recording_source
        );
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|s| s.to_bits()).collect()
    }

    #[test]
    fn playback_is_one_track_of_the_exports_cut() {
        let f = fixture("play");
        let (mix, take_a, _) = studio(&f);
        let zip = f.dir.join("out.zip");
        write_segment_zip(&f.dir, &f.store, &f.takes, 5, &zip).unwrap();
        let folder = "segment-5-Take_2___verse";

        // The mix: the recording's mix.wav from frame round((start − rec) × 48) to the segment's end,
        // to the sample; the export's mix.wav byte for byte.
        let out = f.dir.join("mix-play.wav");
        let r = write_segment_track(&f.dir, &f.store, &f.takes, 5, PlayTrack::Mix, &out).unwrap();
        assert_eq!(
            (r.sample_rate, r.channels, r.float, r.source),
            (48_000, 1, false, "files")
        );
        assert_eq!(r.span, span(RECF, 48_000, SEG_START, SEG_END));
        let mut reader = WavReader::open(&out).unwrap();
        assert_eq!(reader.samples, WavSamples::Pcm16);
        assert_eq!(reader.sample_rate, 48_000);
        let source = all_i16(WavReader::open(&recording_dir(&f.dir, 1).join(MIX_FILE)).unwrap());
        assert!(source == mix);
        let mut got = vec![0i16; reader.frames() as usize];
        reader.read_i16(&mut got).unwrap();
        assert!(
            got == source[72_019..288_029],
            "the mix's span, sample for sample"
        );
        assert!(fs::read(&out).unwrap() == entry(&zip, &format!("{folder}/mix.wav")));
        assert_eq!(r.bytes, fs::metadata(&out).unwrap().len());

        // Take A (complete, 44.1 kHz): silence until its first frame, then its take.wav bit for bit;
        // the export's WAV of it byte for byte.
        let out = f.dir.join("take-play.wav");
        let r =
            write_segment_track(&f.dir, &f.store, &f.takes, 5, PlayTrack::Take(1), &out).unwrap();
        assert_eq!(
            (r.sample_rate, r.channels, r.float, r.source),
            (44_100, 1, true, "take")
        );
        let made = f.takes.file_path(1, crate::takes::WAV_FILE).unwrap();
        let take_wav = all_f32(WavReader::open(&made).unwrap());
        assert!(bits(&take_wav) == bits(&take_a));
        let got = all_f32(WavReader::open(&out).unwrap());
        assert_eq!(got.len(), 198_459);
        assert!(got[..22_049].iter().all(|s| s.to_bits() == 0));
        assert!(
            bits(&got[22_049..]) == bits(&take_wav[..176_410]),
            "the take's span, bit-exact"
        );
        assert!(fs::read(&out).unwrap() == entry(&zip, &format!("{folder}/take-1-Ann.wav")));
        assert!(!f.dir.join("take-play.wav.work").exists());
        assert!(!f.dir.join("mix-play.wav.work").exists());
    }

    #[test]
    fn a_take_plays_once_its_frames_for_the_segment_have_arrived() {
        let f = fixture("not-yet");
        let (_, _, take_b) = studio(&f);
        let out = f.dir.join("b.wav");
        let play = || write_segment_track(&f.dir, &f.store, &f.takes, 5, PlayTrack::Take(2), &out);
        let check = || check_segment_track(&f.dir, &f.store, &f.takes, 5, PlayTrack::Take(2));
        // Take B (96 kHz stereo, still recording) holds frames [48 038, 480 058) of the segment:
        // its chunks 2 and 4 (a second each) have not come, nor the 58 frames after its fifth second.
        let e = play().unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (409, "not_yet"));
        assert_eq!(e.missing_ms(), Some(192_058.0 / 96.0));
        assert!(
            e.message()
                .starts_with("2.0 s of Bo \u{2603}/..'s take in this segment"),
            "{}",
            e.message()
        );
        assert_eq!(check().unwrap_err().missing_ms(), Some(192_058.0 / 96.0));
        assert!(!out.exists() && !f.dir.join("b.wav.work").exists());

        // Its artist left without ending it: the gap still counts, what never came after the last
        // chunk does not.
        f.takes.mark_incomplete(2).unwrap();
        assert_eq!(check().unwrap_err().missing_ms(), Some(1_000.0));
        // The page came back and sent the rest: it plays, the take's very samples.
        upload(&f.takes, 2, &take_b, 2, 96_000, &[0, 1, 3]);
        check().unwrap();
        let r = play().unwrap();
        assert_eq!((r.sample_rate, r.channels, r.float), (96_000, 2, true));
        let got = all_f32(WavReader::open(&out).unwrap());
        assert_eq!(got.len(), 432_020 * 2);
        assert!(bits(&got[..(480_000 - 48_038) * 2]) == bits(&take_b[48_038 * 2..]));
        assert!(got[(480_000 - 48_038) * 2..]
            .iter()
            .all(|s| s.to_bits() == 0));
        let incomplete = fs::read(&out).unwrap();
        // Ended and made: the same file.
        let made = f.takes.end(2, 480_000).unwrap();
        assert_eq!(made.state, crate::takes::TakeState::Complete);
        check().unwrap();
        play().unwrap();
        assert!(fs::read(&out).unwrap() == incomplete);
    }

    #[test]
    fn playback_has_only_the_segments_own_tracks() {
        let f = fixture("tracks");
        studio(&f);
        let refused = |segment: i64, track: PlayTrack| {
            let out = f.dir.join("t.wav");
            let made = write_segment_track(&f.dir, &f.store, &f.takes, segment, track, &out);
            let checked = check_segment_track(&f.dir, &f.store, &f.takes, segment, track);
            let (a, b) = (made.unwrap_err(), checked.unwrap_err());
            assert_eq!((a.code(), a.message()), (b.code(), b.message()));
            assert!(!out.exists());
            (a.status().as_u16(), a.code())
        };
        // Another session's take, one after the segment, one that is not there.
        for id in [3, 4, 99] {
            assert_eq!(
                refused(5, PlayTrack::Take(id)),
                (404, "no_such_track"),
                "{id}"
            );
        }
        // A session without a recording has no mix; an open segment, no tracks yet.
        session(&f.store, 2, "band", None);
        segment(&f.store, 2, 6, SEG_START, Some(SEG_END), "");
        assert_eq!(refused(6, PlayTrack::Mix), (404, "no_such_track"));
        segment(&f.store, 1, 7, SEG_START, None, "open");
        assert_eq!(refused(7, PlayTrack::Mix), (409, "open_segment"));
        assert_eq!(refused(8, PlayTrack::Mix), (404, "no_such_segment"));

        assert_eq!(PlayTrack::parse("mix"), Some(PlayTrack::Mix));
        assert_eq!(PlayTrack::parse("take-7"), Some(PlayTrack::Take(7)));
        assert_eq!(PlayTrack::Take(7).to_string(), "take-7");
        assert_eq!(PlayTrack::Take(7).link_file(), "segment-play:take-7");
        assert_eq!(
            PlayTrack::Mix.path(5),
            "/api/segments/5/play/mix.wav",
            "the route's path"
        );
        for bad in [
            "",
            "Mix",
            "mix.wav",
            "take",
            "take-",
            "take-0",
            "take-07",
            "take--1",
            "take-+1",
            "take-1x",
            "../mix",
            "take-1234567890123456789",
        ] {
            assert_eq!(PlayTrack::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_play_route_checks_its_link_and_sends_a_wav() {
        let f = fixture("play-route");
        studio(&f);
        let key = [9u8; 32];
        let store = Arc::new(Store::open(&f.dir).unwrap());
        let takes = Arc::new(TakeStore::open(&f.dir, TakeLimits::default()).unwrap());
        let state = app_state(&f, store, takes, key);
        let exp = now_ms() + 60_000;
        let sig =
            |id: i64, file: &str, exp: i64| Some(crate::secret::sign_download(&key, id, file, exp));
        let mix = PlayTrack::Mix.link_file();
        let take_1 = PlayTrack::Take(1).link_file();
        let call = |method: Method, id: &str, file: &str, exp: i64, sig: Option<String>| {
            let state = state.clone();
            let path = (id.to_string(), file.to_string());
            async move {
                segment_play(
                    State(state),
                    method,
                    UrlPath(path),
                    Query(Link {
                        exp: Some(exp),
                        sig,
                    }),
                )
                .await
            }
        };
        let get = |id: &'static str, file: &'static str, exp: i64, sig: Option<String>| {
            call(Method::GET, id, file, exp, sig)
        };
        let body = |r: Response| async move {
            axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap()
        };
        let error = |r: Response| async move {
            let status = r.status().as_u16();
            let json: serde_json::Value = serde_json::from_slice(&body(r).await).unwrap();
            (
                status,
                json["error"].as_str().unwrap_or("").to_string(),
                json,
            )
        };

        // Signed for something else: an export link, another track's, another segment's, an edited
        // expiry, an expired one.
        let (status, code, _) =
            error(get("5", "mix.wav", exp, sig(5, EXPORT_LINK_FILE, exp)).await).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "forbidden"),
            "an export link"
        );
        for (file, signed) in [("mix.wav", &take_1), ("take-1.wav", &mix)] {
            let r = get("5", file, exp, sig(5, signed, exp)).await;
            assert_eq!(r.status().as_u16(), 403, "{file} with {signed}'s signature");
        }
        assert_eq!(
            get("5", "mix.wav", exp, sig(6, &mix, exp)).await.status(),
            403
        );
        assert_eq!(
            get("5", "mix.wav", exp + 1, sig(5, &mix, exp))
                .await
                .status(),
            403
        );
        assert_eq!(
            get("5", "mix.wav", 1_000, sig(5, &mix, 1_000))
                .await
                .status(),
            403
        );
        assert_eq!(get("5", "mix.wav", exp, None).await.status(), 403);
        // A play link does not open the export either.
        let r = segment_export(
            State(state.clone()),
            UrlPath("5".into()),
            Query(Link {
                exp: Some(exp),
                sig: sig(5, &mix, exp),
            }),
        )
        .await;
        assert_eq!(r.status().as_u16(), 403);
        // Not a track, not a segment.
        for file in ["take-x.wav", "mix.mp3", "mix", "..%2Fmix.wav"] {
            let (status, code, _) = error(get("5", file, exp, sig(5, &mix, exp)).await).await;
            assert_eq!((status, code.as_str()), (404, "no_such_track"), "{file}");
        }
        let (status, code, _) = error(get("x", "mix.wav", exp, sig(5, &mix, exp)).await).await;
        assert_eq!((status, code.as_str()), (404, "no_such_segment"));

        // Take B is still uploading: not yet, and how much is missing.
        let take_2 = PlayTrack::Take(2).link_file();
        let (status, code, json) =
            error(get("5", "take-2.wav", exp, sig(5, &take_2, exp)).await).await;
        assert_eq!((status, code.as_str()), (409, "not_yet"));
        assert_eq!(json["missing_ms"], 2_000.6);
        assert!(json["message"]
            .as_str()
            .unwrap()
            .contains("not arrived yet"));
        let r = call(Method::HEAD, "5", "take-2.wav", exp, sig(5, &take_2, exp)).await;
        assert_eq!(r.status().as_u16(), 409, "HEAD says so too");

        // HEAD: there, nothing made. GET: the WAV.
        let r = call(Method::HEAD, "5", "take-1.wav", exp, sig(5, &take_1, exp)).await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "audio/wav");
        assert!(body(r).await.is_empty());
        let r = get("5", "take-1.wav", exp, sig(5, &take_1, exp)).await;
        assert_eq!(r.status().as_u16(), 200);
        let headers = r.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "audio/wav");
        assert_eq!(
            headers[header::CONTENT_DISPOSITION],
            "inline; filename=\"segment-5-take-1.wav\""
        );
        let wav = body(r).await;
        assert_eq!(
            headers[header::CONTENT_LENGTH].to_str().unwrap(),
            wav.len().to_string()
        );
        assert_eq!(wav.len() as u64, FLOAT_DATA_OFFSET + 198_459 * 4);
        let r = get("5", "mix.wav", exp, sig(5, &mix, exp)).await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(body(r).await.len(), 44 + 216_010 * 2);
        // Built, unlinked, streamed: nothing is left in exports/.
        assert_eq!(fs::read_dir(f.dir.join(EXPORTS_DIR)).unwrap().count(), 0);
    }

    fn app_state(f: &Fixture, store: Arc<Store>, takes: Arc<TakeStore>, key: [u8; 32]) -> AppState {
        AppState {
            control: tokio::sync::mpsc::channel(1).0,
            signalling_errors: Default::default(),
            status_access: crate::metrics::StatusAccess {
                admin: Default::default(),
                metrics: None,
                public: false,
            },
            recordings: crate::downloads::RecordingFiles {
                data_dir: f.dir.clone(),
                key,
            },
            recorder_dropped: Default::default(),
            finalize_stats: Default::default(),
            takes: crate::take_uploads::TakeUploads {
                store: takes,
                slots: Arc::new(Semaphore::new(1)),
                key,
            },
            exports: Exports::new(store),
        }
    }

    #[tokio::test]
    async fn the_route_checks_the_link_and_streams_the_zip() {
        let f = fixture("route");
        studio(&f);
        segment(&f.store, 1, 6, SEG_START, None, "open");
        let key = [9u8; 32];
        // The handler reads the same database and take store through its own handles.
        let store = Arc::new(Store::open(&f.dir).unwrap());
        let takes = Arc::new(TakeStore::open(&f.dir, TakeLimits::default()).unwrap());
        let state = app_state(&f, store, takes, key);
        let exp = now_ms() + 60_000;
        let call = |id: &str, exp: Option<i64>, sig: Option<String>| {
            let state = state.clone();
            let id = id.to_string();
            async move { segment_export(State(state), UrlPath(id), Query(Link { exp, sig })).await }
        };
        let sig = |id: i64, exp: i64| {
            Some(crate::secret::sign_download(
                &key,
                id,
                EXPORT_LINK_FILE,
                exp,
            ))
        };
        let status = |r: &Response| r.status().as_u16();
        let body_json = |r: Response| async move {
            let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        };

        let r = call("5", Some(exp), None).await;
        assert_eq!(status(&r), 403);
        let r = call("5", Some(exp + 1), sig(5, exp)).await;
        assert_eq!(status(&r), 403, "an edited expiry");
        assert_eq!(body_json(r).await["error"], "forbidden");
        let r = call("5", Some(exp), sig(6, exp)).await;
        assert_eq!(status(&r), 403, "another segment's signature");
        let r = call("5", Some(1_000), sig(5, 1_000)).await;
        assert_eq!(status(&r), 403, "expired");
        let r = call("abc", Some(exp), sig(5, exp)).await;
        assert_eq!(status(&r), 404);
        let r = call("99", Some(exp), sig(99, exp)).await;
        assert_eq!(status(&r), 404);
        assert_eq!(body_json(r).await["error"], "no_such_segment");
        let r = call("6", Some(exp), sig(6, exp)).await;
        assert_eq!(status(&r), 409);
        assert_eq!(body_json(r).await["error"], "open_segment");

        let r = call("5", Some(exp), sig(5, exp)).await;
        assert_eq!(status(&r), 200);
        let headers = r.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "application/zip");
        assert_eq!(
            headers[header::CONTENT_DISPOSITION],
            "attachment; filename=\"segment-5.zip\""
        );
        // Built, unlinked, and streamed from the open file: nothing is left in exports/.
        let left = fs::read_dir(f.dir.join(EXPORTS_DIR)).unwrap().count();
        assert_eq!(left, 0);
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            headers[header::CONTENT_LENGTH].to_str().unwrap(),
            bytes.len().to_string()
        );
        let archive = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
        assert_eq!(archive.len(), 14);
    }
}
