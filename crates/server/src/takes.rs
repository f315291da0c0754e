//! Studio takes: the lossless recordings artists make on their own device and upload in chunks while
//! they play. A sans-HTTP store: the HTTP handlers call it (from `spawn_blocking`: every call touches
//! the disk, most fsync) and turn its errors into the replies the protocol names.
//!
//! - Metadata is in SQLite, in its own database `<data_dir>/takes.db` (WAL), so uploads, which write
//!   often, never wait behind chat in the main database.
//! - Media is under `<data_dir>/takes/<take_id>/`, named only by the server: `chunk-<seq>.pcm` (the
//!   client's interleaved little-endian f32 samples, as sent) while a take uploads, then `take.wav`
//!   (32-bit float, the very samples) and `take.flac` (24-bit) once it is assembled.
//! - A chunk is acknowledged only once durable: its file is written to a temporary name, synced and
//!   renamed, then its row is committed. A crash can leave a file without a row (removed at open),
//!   never a row without a file.
//! - Chunks may come in any order, and again (an identical retry is a duplicate, not an error). Once
//!   the take's end is known and every frame of `[0, end)` is stored, the take is assembled, a chunk at
//!   a time, so a 4-hour take is never held in memory.
//!
//! [`TakeStore`] is `Sync`: share it in an `Arc`. Its calls on one take are serialized by a lock held
//! for the short bookkeeping (and a chunk's fsync); assembly runs outside that lock, so other takes'
//! uploads go on meanwhile.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use parley_media::flac::{float_to_i24, FlacWriter};
use parley_media::wav::{FloatWavWriter, FLOAT_DATA_OFFSET};
use rusqlite::{params, Connection, OptionalExtension, Row};
use sha2::{Digest, Sha256};

/// Each entry moves `takes.db` one schema version up; `PRAGMA user_version` records how far it is.
const MIGRATIONS: &[&str] = &[
    // 1: takes and their acknowledged chunks. AUTOINCREMENT: a deleted take's id (and so its
    // directory's name) is never given to another take.
    "CREATE TABLE takes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        room TEXT NOT NULL,
        session_id INTEGER NOT NULL,
        participant_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        sample_rate INTEGER NOT NULL,
        channels INTEGER NOT NULL,
        started_at_ms REAL NOT NULL,
        token_hash BLOB NOT NULL,
        state TEXT NOT NULL,
        received_samples INTEGER NOT NULL DEFAULT 0,
        total_samples INTEGER,
        bytes INTEGER NOT NULL DEFAULT 0,
        flac_exact INTEGER NOT NULL DEFAULT 0,
        wav_bytes INTEGER,
        flac_bytes INTEGER,
        created_at_ms INTEGER NOT NULL
    );
    CREATE INDEX takes_by_room ON takes (room, id);
    CREATE TABLE take_chunks (
        take_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        first_sample INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        PRIMARY KEY (take_id, seq)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX take_chunks_by_first ON take_chunks (take_id, first_sample);",
];

/// The assembled take, 32-bit float WAV (RF64 past 4 GiB).
pub const WAV_FILE: &str = "take.wav";
/// The assembled take, 24-bit FLAC.
pub const FLAC_FILE: &str = "take.flac";
/// The most frames one [`TakeStore::read_frames`] returns (about 87 s at 48 kHz): read longer spans
/// in pieces.
pub const MAX_READ_FRAMES: u64 = 1 << 22;

/// Sample rates a take may have.
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// Where all takes' files are, under the data dir.
pub fn takes_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("takes")
}

/// Where one take's files are, under the data dir.
pub fn take_dir(data_dir: &Path, id: i64) -> PathBuf {
    takes_dir(data_dir).join(id.to_string())
}

fn chunk_name(seq: u32) -> String {
    format!("chunk-{seq}.pcm")
}

/// The seq of a chunk file's name (`chunk-<seq>.pcm`), if it is one.
fn chunk_seq(file_name: &str) -> Option<u32> {
    let seq = file_name.strip_prefix("chunk-")?.strip_suffix(".pcm")?;
    // Only the names `chunk_name` makes: no sign, no leading zeros.
    let n: u32 = seq.parse().ok()?;
    (n.to_string() == seq).then_some(n)
}

/// What a take may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeLimits {
    /// Largest chunk body in bytes (2 MiB).
    pub max_chunk_bytes: usize,
    /// Longest chunk, in seconds of frames at the take's rate (10 s).
    pub max_chunk_seconds: u32,
    /// Longest take, in seconds of frames at the take's rate (4 h).
    pub max_take_seconds: u32,
    /// Bytes of take files a room may hold: chunks while uploading, WAV and FLAC once assembled
    /// (8 GiB: about 8 hours of 48 kHz mono takes with both files).
    pub max_room_bytes: u64,
}

impl Default for TakeLimits {
    fn default() -> Self {
        TakeLimits {
            max_chunk_bytes: 2 << 20,
            max_chunk_seconds: 10,
            max_take_seconds: 4 * 3600,
            max_room_bytes: 8 << 30,
        }
    }
}

/// Where a take is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeState {
    /// Recording or uploading; accepts chunks and `end`.
    Uploading,
    /// Assembled: `take.wav` and `take.flac` are there; accepts nothing new.
    Complete,
    /// Its artist left without ending it; still accepts chunks and `end`.
    Incomplete,
    /// Every frame arrived, but the files could not be made (the chunks are kept; assembly is tried
    /// again by `end` and by [`TakeStore::resume_assembly`]).
    Failed,
}

impl TakeState {
    /// The protocol's name: `uploading`, `complete`, `incomplete`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            TakeState::Uploading => "uploading",
            TakeState::Complete => "complete",
            TakeState::Incomplete => "incomplete",
            TakeState::Failed => "failed",
        }
    }

    /// The state a protocol name stands for.
    pub fn parse(s: &str) -> Option<TakeState> {
        Some(match s {
            "uploading" => TakeState::Uploading,
            "complete" => TakeState::Complete,
            "incomplete" => TakeState::Incomplete,
            "failed" => TakeState::Failed,
            _ => return None,
        })
    }

    /// Whether it still takes chunks.
    pub fn is_open(self) -> bool {
        matches!(self, TakeState::Uploading | TakeState::Incomplete)
    }
}

/// A take's assembled file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeFile {
    /// [`WAV_FILE`] or [`FLAC_FILE`].
    pub name: &'static str,
    pub bytes: u64,
}

/// A take as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Take {
    pub id: i64,
    pub room: String,
    /// The studio session it was recorded in.
    pub session_id: i64,
    pub participant_id: u64,
    /// The artist's name when it started.
    pub name: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// The server time (Unix ms) of its frame 0, as the client estimated it.
    pub started_at_ms: f64,
    pub state: TakeState,
    /// Frames stored (chunks never overlap, so this is how much of the take is here).
    pub received_samples: u64,
    /// Its length in frames, once `end` said so.
    pub total_samples: Option<u64>,
    /// Bytes of its files on disk (what counts against the room's quota).
    pub bytes: u64,
    /// Whether `take.flac` holds every sample exactly (the floats were all 24-bit values); false
    /// until assembled.
    pub flac_exact: bool,
    pub created_at_ms: i64,
    /// The assembled files (none until [`TakeState::Complete`]).
    pub files: Vec<TakeFile>,
}

/// What a take is created with.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTake {
    pub room: String,
    pub session_id: i64,
    pub participant_id: u64,
    pub name: String,
    /// 8000 to 192000.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
    /// The server time (Unix ms) of frame 0; finite.
    pub started_at_ms: f64,
    /// SHA-256 of the take's upload token ([`crate::secret::hash_token`]).
    pub token_hash: [u8; 32],
    pub created_at_ms: i64,
}

/// What a chunk's request headers say about its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub seq: u32,
    /// Index of its first frame in the take.
    pub first_sample: u64,
    /// Its frames.
    pub samples: u32,
    /// SHA-256 of the body.
    pub sha256: [u8; 32],
}

/// A stored chunk's acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkAck {
    /// Frames of the take stored now.
    pub received_samples: u64,
    /// It was stored before, identically (an idempotent retry).
    pub duplicate: bool,
    /// The take after it (complete, if this chunk closed its last gap).
    pub take: Take,
}

/// What a take request can fail with; each kind has its HTTP status and the protocol's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeErrorKind {
    BadRequest,
    Unauthorized,
    NoSuchTake,
    Conflict,
    Overlap,
    TakeClosed,
    ChunkTooLarge,
    TakeTooLong,
    HashMismatch,
    RoomDiskFull,
    /// Disk or database: the server's fault, not the request's.
    Internal,
}

/// A refused or failed take request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeError {
    pub kind: TakeErrorKind,
    /// What went wrong, for logs (for [`TakeErrorKind::Internal`] it may name paths; show people
    /// [`TakeError::message`]).
    pub detail: String,
}

impl TakeError {
    fn new(kind: TakeErrorKind, detail: impl Into<String>) -> TakeError {
        TakeError {
            kind,
            detail: detail.into(),
        }
    }

    fn internal(detail: impl fmt::Display) -> TakeError {
        TakeError::new(TakeErrorKind::Internal, detail.to_string())
    }

    /// The HTTP status of the reply.
    pub fn status(&self) -> u16 {
        match self.kind {
            TakeErrorKind::BadRequest => 400,
            TakeErrorKind::Unauthorized => 401,
            TakeErrorKind::NoSuchTake => 404,
            TakeErrorKind::Conflict | TakeErrorKind::Overlap | TakeErrorKind::TakeClosed => 409,
            TakeErrorKind::ChunkTooLarge | TakeErrorKind::TakeTooLong => 413,
            TakeErrorKind::HashMismatch => 422,
            TakeErrorKind::RoomDiskFull => 507,
            TakeErrorKind::Internal => 500,
        }
    }

    /// The protocol's machine code (`"error"` in the reply).
    pub fn code(&self) -> &'static str {
        match self.kind {
            TakeErrorKind::BadRequest => "bad_request",
            TakeErrorKind::Unauthorized => "unauthorized",
            TakeErrorKind::NoSuchTake => "no_such_take",
            TakeErrorKind::Conflict => "conflict",
            TakeErrorKind::Overlap => "overlap",
            TakeErrorKind::TakeClosed => "take_closed",
            TakeErrorKind::ChunkTooLarge => "chunk_too_large",
            TakeErrorKind::TakeTooLong => "take_too_long",
            TakeErrorKind::HashMismatch => "hash_mismatch",
            TakeErrorKind::RoomDiskFull => "room_disk_full",
            TakeErrorKind::Internal => "internal",
        }
    }

    /// For people (`"message"` in the reply): the detail, but for internal errors, whose detail stays
    /// in the logs.
    pub fn message(&self) -> String {
        match self.kind {
            TakeErrorKind::Internal => "the server could not store or read the take".into(),
            _ => self.detail.clone(),
        }
    }
}

impl fmt::Display for TakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail)
    }
}

impl std::error::Error for TakeError {}

impl From<rusqlite::Error> for TakeError {
    fn from(e: rusqlite::Error) -> Self {
        TakeError::internal(format!("takes.db: {e}"))
    }
}

impl From<io::Error> for TakeError {
    fn from(e: io::Error) -> Self {
        TakeError::internal(format!("i/o: {e}"))
    }
}

fn bad_request(detail: impl Into<String>) -> TakeError {
    TakeError::new(TakeErrorKind::BadRequest, detail)
}

fn no_such_take(id: i64) -> TakeError {
    TakeError::new(TakeErrorKind::NoSuchTake, format!("there is no take {id}"))
}

/// A stored chunk's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkRow {
    seq: u32,
    first_sample: u64,
    samples: u32,
    sha256: [u8; 32],
}

impl ChunkRow {
    fn end(&self) -> u64 {
        self.first_sample + u64::from(self.samples)
    }
}

/// What assembly made.
struct Assembled {
    wav_bytes: u64,
    flac_bytes: u64,
    flac_exact: bool,
}

const TAKE_COLUMNS: &str = "id, room, session_id, participant_id, name, sample_rate, channels,
    started_at_ms, state, received_samples, total_samples, bytes, flac_exact, created_at_ms,
    wav_bytes, flac_bytes";

/// An integer column that must fit `T` (anything else is a damaged database, not a panic).
fn int<T: TryFrom<i64>>(r: &Row, i: usize) -> rusqlite::Result<T> {
    let v: i64 = r.get(i)?;
    T::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, v))
}

fn take_from_row(r: &Row) -> rusqlite::Result<Take> {
    let state: String = r.get(8)?;
    let state = TakeState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            8,
            rusqlite::types::Type::Text,
            format!("take state {state:?}").into(),
        )
    })?;
    let total: Option<i64> = r.get(10)?;
    let wav: Option<i64> = r.get(14)?;
    let flac: Option<i64> = r.get(15)?;
    let mut files = Vec::new();
    if state == TakeState::Complete {
        for (name, bytes) in [(WAV_FILE, wav), (FLAC_FILE, flac)] {
            if let Some(bytes) = bytes.and_then(|b| u64::try_from(b).ok()) {
                files.push(TakeFile { name, bytes });
            }
        }
    }
    Ok(Take {
        id: r.get(0)?,
        room: r.get(1)?,
        session_id: r.get(2)?,
        // Stored as its bits: SQLite's integers are signed.
        participant_id: r.get::<_, i64>(3)? as u64,
        name: r.get(4)?,
        sample_rate: int(r, 5)?,
        channels: int(r, 6)?,
        started_at_ms: r.get(7)?,
        state,
        received_samples: int(r, 9)?,
        total_samples: total.and_then(|t| u64::try_from(t).ok()),
        bytes: int(r, 11)?,
        flac_exact: r.get::<_, i64>(12)? != 0,
        created_at_ms: r.get(13)?,
        files,
    })
}

fn chunk_from_row(r: &Row) -> rusqlite::Result<ChunkRow> {
    let hash: Vec<u8> = r.get(3)?;
    Ok(ChunkRow {
        seq: int(r, 0)?,
        first_sample: int(r, 1)?,
        samples: int(r, 2)?,
        sha256: hash.as_slice().try_into().map_err(|_| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Blob,
                "a chunk hash that is not 32 bytes".into(),
            )
        })?,
    })
}

fn load_take(conn: &Connection, id: i64) -> Result<Take, TakeError> {
    conn.query_row(
        &format!("SELECT {TAKE_COLUMNS} FROM takes WHERE id = ?1"),
        [id],
        take_from_row,
    )
    .optional()?
    .ok_or_else(|| no_such_take(id))
}

fn load_chunk(conn: &Connection, id: i64, seq: u32) -> Result<Option<ChunkRow>, TakeError> {
    Ok(conn
        .query_row(
            "SELECT seq, first_sample, samples, sha256 FROM take_chunks
             WHERE take_id = ?1 AND seq = ?2",
            params![id, seq],
            chunk_from_row,
        )
        .optional()?)
}

/// A take's chunks in the order of their frames.
fn load_chunks(conn: &Connection, id: i64) -> Result<Vec<ChunkRow>, TakeError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, first_sample, samples, sha256 FROM take_chunks
         WHERE take_id = ?1 ORDER BY first_sample",
    )?;
    let rows = stmt
        .query_map([id], chunk_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Constant-time equality of a stored hash and a presented one.
fn same_hash(stored: &[u8], presented: &[u8; 32]) -> bool {
    if stored.len() != presented.len() {
        return false;
    }
    let diff = stored
        .iter()
        .zip(presented)
        .fold(0u8, |d, (a, b)| d | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// Makes a rename or a removal in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to a new file at `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A temporary name for `path` that no other upload uses at the same time (ends in `.tmp`: open removes
/// those a crash left).
fn unique_tmp_path(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{n}.tmp"));
    path.with_file_name(name)
}

/// Where a file is written before it is renamed into place (open removes those a crash left).
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn le_floats(bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
}

/// Reads `out.len()` samples' worth of little-endian floats at byte `offset` of `path`.
fn read_floats_at(path: &Path, offset: u64, out: &mut [f32], buf: &mut Vec<u8>) -> io::Result<()> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    buf.resize(out.len() * 4, 0);
    file.read_exact(buf)?;
    for (o, b) in out.iter_mut().zip(buf.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    Ok(())
}

/// Removes its take from the set of takes being assembled when dropped.
struct Assembling<'a> {
    set: &'a Mutex<HashSet<i64>>,
    id: i64,
}

impl Drop for Assembling<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// The takes of one server: rows in `takes.db`, files under `takes/`.
pub struct TakeStore {
    conn: Mutex<Connection>,
    data_dir: PathBuf,
    limits: TakeLimits,
    /// Takes whose files are being made now (at most one assembly per take).
    assembling: Mutex<HashSet<i64>>,
}

impl TakeStore {
    /// Opens (or creates) `<data_dir>/takes.db` and `<data_dir>/takes/`, and tidies what a crash
    /// left: temporary files, chunk files without rows, directories of takes without rows, chunk rows
    /// whose file is gone. Takes that are due for assembly stay so: call
    /// [`TakeStore::resume_assembly`] (it may take long) once the server runs.
    pub fn open(data_dir: &Path, limits: TakeLimits) -> Result<TakeStore, TakeError> {
        fs::create_dir_all(takes_dir(data_dir))?;
        let path = data_dir.join("takes.db");
        let mut conn = Connection::open(&path)?;
        // WAL + FULL: a chunk's row is on disk before the chunk is acknowledged.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(TakeError::internal(format!(
                "{} is from a newer parley (schema {version}, this one knows {})",
                path.display(),
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        let store = TakeStore {
            conn: Mutex::new(conn),
            data_dir: data_dir.to_path_buf(),
            limits,
            assembling: Mutex::new(HashSet::new()),
        };
        store.recover()?;
        Ok(store)
    }

    /// The limits it applies.
    pub fn limits(&self) -> TakeLimits {
        self.limits
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent; keep serving.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dir(&self, id: i64) -> PathBuf {
        take_dir(&self.data_dir, id)
    }

    /// Brings the files in line with the rows after a crash (see [`TakeStore::open`]).
    fn recover(&self) -> Result<(), TakeError> {
        let mut conn = self.conn();
        let states: HashMap<i64, TakeState> = conn
            .prepare("SELECT id, state FROM takes")?
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|(id, s)| (id, TakeState::parse(&s).unwrap_or(TakeState::Failed)))
            .collect();
        for entry in fs::read_dir(takes_dir(&self.data_dir))? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.parse::<i64>().ok()) else {
                tracing::warn!(
                    "takes: {} is not a take's directory; left alone",
                    entry.path().display()
                );
                continue;
            };
            let Some(&state) = states.get(&id) else {
                tracing::info!("takes: removing the files of take {id}, which has no row");
                fs::remove_dir_all(entry.path())?;
                continue;
            };
            let acknowledged: HashSet<u32> =
                load_chunks(&conn, id)?.into_iter().map(|c| c.seq).collect();
            for file in fs::read_dir(entry.path())? {
                let file = file?;
                let fname = file.file_name();
                let fname = fname.to_string_lossy();
                let stray = if fname.ends_with(".tmp") {
                    true
                } else if let Some(seq) = chunk_seq(&fname) {
                    // A complete take's WAV holds its chunks; an open one's are those with rows.
                    state == TakeState::Complete || !acknowledged.contains(&seq)
                } else {
                    false
                };
                if stray {
                    fs::remove_file(file.path())?;
                }
            }
        }
        // A row whose file is gone (removed by hand, a damaged disk) would be a frame we claim to
        // have: forget it, so the take shows the gap and the client can send it again.
        let open: Vec<(i64, u16)> = conn
            .prepare("SELECT id, channels FROM takes WHERE state != 'complete'")?
            .query_map([], |r| Ok((r.get(0)?, int(r, 1)?)))?
            .collect::<Result<_, _>>()?;
        let tx = conn.transaction()?;
        for (id, channels) in open {
            for chunk in load_chunks(&tx, id)? {
                let path = self.dir(id).join(chunk_name(chunk.seq));
                let want = u64::from(chunk.samples) * u64::from(channels) * 4;
                let have = fs::metadata(&path).map(|m| m.len()).ok();
                if have != Some(want) {
                    tracing::warn!(
                        "takes: take {id}'s chunk {} is missing or cut ({have:?} of {want} bytes); \
                         forgotten",
                        chunk.seq
                    );
                    tx.execute(
                        "DELETE FROM take_chunks WHERE take_id = ?1 AND seq = ?2",
                        params![id, chunk.seq],
                    )?;
                    let _ = fs::remove_file(&path);
                }
            }
            tx.execute(
                "UPDATE takes SET
                    received_samples =
                        (SELECT COALESCE(SUM(samples), 0) FROM take_chunks WHERE take_id = ?1),
                    bytes = channels * 4 *
                        (SELECT COALESCE(SUM(samples), 0) FROM take_chunks WHERE take_id = ?1)
                 WHERE id = ?1",
                [id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A new take (state uploading), with a new id and an empty directory.
    pub fn create(&self, new: NewTake) -> Result<Take, TakeError> {
        if !SAMPLE_RATES.contains(&new.sample_rate) {
            return Err(bad_request(format!(
                "sample rate {} Hz: takes are {} to {} Hz",
                new.sample_rate,
                SAMPLE_RATES.start(),
                SAMPLE_RATES.end()
            )));
        }
        if !(1..=2).contains(&new.channels) {
            return Err(bad_request(format!(
                "{} channels: takes are mono or stereo",
                new.channels
            )));
        }
        if !new.started_at_ms.is_finite() {
            return Err(bad_request("the first sample's time is not a number"));
        }
        let conn = self.conn();
        conn.execute(
            "INSERT INTO takes (room, session_id, participant_id, name, sample_rate, channels,
                                started_at_ms, token_hash, state, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'uploading', ?9)",
            params![
                new.room,
                new.session_id,
                new.participant_id as i64,
                new.name,
                new.sample_rate,
                new.channels,
                new.started_at_ms,
                new.token_hash.as_slice(),
                new.created_at_ms
            ],
        )?;
        let id = conn.last_insert_rowid();
        // Made here so an empty take has its place; put_chunk makes it again if it is gone.
        if let Err(e) =
            fs::create_dir_all(self.dir(id)).and_then(|()| sync_dir(&takes_dir(&self.data_dir)))
        {
            let _ = conn.execute("DELETE FROM takes WHERE id = ?1", [id]);
            return Err(e.into());
        }
        load_take(&conn, id)
    }

    /// The take, if `token_hash` is its upload token's hash (compared in constant time).
    pub fn authorize(&self, take_id: i64, token_hash: &[u8; 32]) -> Result<Take, TakeError> {
        let conn = self.conn();
        let stored: Vec<u8> = conn
            .query_row(
                "SELECT token_hash FROM takes WHERE id = ?1",
                [take_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| no_such_take(take_id))?;
        if !same_hash(&stored, token_hash) {
            return Err(TakeError::new(
                TakeErrorKind::Unauthorized,
                "this upload token is not the take's",
            ));
        }
        load_take(&conn, take_id)
    }

    /// Stores one chunk durably (its file synced, then its row committed) and acknowledges it; if it
    /// closes the last gap of a take whose end is known, assembles the take before returning (see
    /// [`TakeStore::assemble`]: that can take a while).
    ///
    /// Checked in this order: the take exists (`no_such_take`); at least one frame, the body within
    /// `max_chunk_bytes` and its frames within `max_chunk_seconds` (`bad_request`,
    /// `chunk_too_large`); the body is frames × channels × 4 bytes (`bad_request`); its last frame
    /// within `max_take_seconds` (`take_too_long`); its SHA-256 (`hash_mismatch`); the seq: stored
    /// identically is a duplicate (also once the take is complete, so a retry whose reply was lost
    /// succeeds), stored otherwise is `conflict` (`take_closed` once complete); the take still takes
    /// chunks (`take_closed`); no frame past the end `end` recorded (`bad_request`); no frame of
    /// another chunk (`overlap`); the room's quota (`room_disk_full`).
    pub fn put_chunk(
        &self,
        take_id: i64,
        header: ChunkHeader,
        body: &[u8],
    ) -> Result<ChunkAck, TakeError> {
        // Hashed before the lock: it is the slow part of the checks, and needs no state.
        let digest: Option<[u8; 32]> =
            (body.len() <= self.limits.max_chunk_bytes).then(|| Sha256::digest(body).into());
        // Checked under the lock, written and fsynced outside it (the slow part: other uploads go on
        // meanwhile), then checked again and recorded under the lock.
        let digest = {
            let conn = self.conn();
            let take = load_take(&conn, take_id)?;
            let digest = self.check_chunk(&take, &header, body, digest)?;
            if let Some(known) = self.known_chunk(&conn, &take, &header, digest)? {
                return Ok(known);
            }
            self.check_new_chunk(&conn, &take, &header, body.len())?;
            digest
        };
        let dir = self.dir(take_id);
        fs::create_dir_all(&dir)?;
        let path = dir.join(chunk_name(header.seq));
        let tmp = unique_tmp_path(&path);
        if let Err(e) = write_synced(&tmp, body) {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        let (take, due) = {
            let mut conn = self.conn();
            let recorded = load_take(&conn, take_id).and_then(|take| {
                if let Some(known) = self.known_chunk(&conn, &take, &header, digest)? {
                    return Ok(Err(known));
                }
                self.check_new_chunk(&conn, &take, &header, body.len())?;
                fs::rename(&tmp, &path)?;
                sync_dir(&dir)?;
                if let Err(e) = insert_chunk(&mut conn, take_id, &header, body.len()) {
                    let _ = fs::remove_file(&path);
                    return Err(e.into());
                }
                let take = load_take(&conn, take_id)?;
                let due = take.total_samples == Some(take.received_samples);
                Ok(Ok((take, due)))
            });
            match recorded {
                Ok(Ok(done)) => done,
                Ok(Err(known)) => {
                    let _ = fs::remove_file(&tmp);
                    return Ok(known);
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        };
        let take = if due { self.assemble(take_id)? } else { take };
        Ok(ChunkAck {
            received_samples: take.received_samples,
            duplicate: false,
            take,
        })
    }

    /// The checks of a chunk that need no other chunk; its body's SHA-256.
    fn check_chunk(
        &self,
        take: &Take,
        header: &ChunkHeader,
        body: &[u8],
        digest: Option<[u8; 32]>,
    ) -> Result<[u8; 32], TakeError> {
        let rate = u64::from(take.sample_rate);
        let frames = u64::from(header.samples);
        if frames == 0 {
            return Err(bad_request("a chunk holds at least one frame"));
        }
        let Some(digest) = digest else {
            return Err(TakeError::new(
                TakeErrorKind::ChunkTooLarge,
                format!(
                    "a chunk of {} bytes: at most {} are taken",
                    body.len(),
                    self.limits.max_chunk_bytes
                ),
            ));
        };
        let max_frames = u64::from(self.limits.max_chunk_seconds) * rate;
        if frames > max_frames {
            return Err(TakeError::new(
                TakeErrorKind::ChunkTooLarge,
                format!(
                    "a chunk of {frames} frames: at most {} s ({max_frames} frames) are taken",
                    self.limits.max_chunk_seconds
                ),
            ));
        }
        let want = frames * u64::from(take.channels) * 4;
        if body.len() as u64 != want {
            return Err(bad_request(format!(
                "the body has {} bytes; {frames} frames of {} channel(s) of float32 are {want}",
                body.len(),
                take.channels
            )));
        }
        let max_take = u64::from(self.limits.max_take_seconds) * rate;
        if header
            .first_sample
            .checked_add(frames)
            .is_none_or(|end| end > max_take)
        {
            return Err(TakeError::new(
                TakeErrorKind::TakeTooLong,
                format!(
                    "the chunk ends past the take's longest, {} s ({max_take} frames)",
                    self.limits.max_take_seconds
                ),
            ));
        }
        if digest != header.sha256 {
            return Err(TakeError::new(
                TakeErrorKind::HashMismatch,
                "the body's SHA-256 is not the header's: send it again",
            ));
        }
        Ok(digest)
    }

    /// Stores a new chunk (the seq is not stored yet); whether the take is now due for assembly.
    /// A chunk of this seq stored already: identical (an idempotent retry: its acknowledgement again),
    /// or other content (refused). None: a new chunk.
    fn known_chunk(
        &self,
        conn: &Connection,
        take: &Take,
        header: &ChunkHeader,
        digest: [u8; 32],
    ) -> Result<Option<ChunkAck>, TakeError> {
        let Some(existing) = load_chunk(conn, take.id, header.seq)? else {
            return Ok(None);
        };
        let same = ChunkRow {
            seq: header.seq,
            first_sample: header.first_sample,
            samples: header.samples,
            sha256: digest,
        };
        if existing == same {
            Ok(Some(ChunkAck {
                received_samples: take.received_samples,
                duplicate: true,
                take: take.clone(),
            }))
        } else if !take.state.is_open() {
            Err(closed(take))
        } else {
            Err(TakeError::new(
                TakeErrorKind::Conflict,
                format!("chunk {} is stored with other content", header.seq),
            ))
        }
    }

    /// Whether a new chunk may be stored: the take is open, the chunk within its end, over no other
    /// chunk's frames, and the room has room for it.
    fn check_new_chunk(
        &self,
        conn: &Connection,
        take: &Take,
        header: &ChunkHeader,
        body_len: usize,
    ) -> Result<(), TakeError> {
        if !take.state.is_open() {
            return Err(closed(take));
        }
        let first = header.first_sample;
        let end = first + u64::from(header.samples);
        if let Some(total) = take.total_samples {
            if end > total {
                return Err(bad_request(format!(
                    "the chunk ends at frame {end}, past the take's end at {total}"
                )));
            }
        }
        // Chunks never overlap, so only the one starting last before this one's end can: if an
        // earlier one did, every one after it would too.
        let before: Option<ChunkRow> = conn
            .query_row(
                "SELECT seq, first_sample, samples, sha256 FROM take_chunks
                 WHERE take_id = ?1 AND first_sample < ?2 ORDER BY first_sample DESC LIMIT 1",
                params![take.id, end as i64],
                chunk_from_row,
            )
            .optional()?;
        if let Some(other) = before.filter(|c| c.end() > first) {
            return Err(TakeError::new(
                TakeErrorKind::Overlap,
                format!(
                    "frames {first}..{end} overlap chunk {}'s, {}..{}",
                    other.seq,
                    other.first_sample,
                    other.end()
                ),
            ));
        }
        let used: i64 = conn.query_row(
            "SELECT COALESCE(SUM(bytes), 0) FROM takes WHERE room = ?1",
            [&take.room],
            |r| r.get(0),
        )?;
        let used = u64::try_from(used).unwrap_or(0);
        if used.saturating_add(body_len as u64) > self.limits.max_room_bytes {
            return Err(TakeError::new(
                TakeErrorKind::RoomDiskFull,
                format!(
                    "the room's takes use {used} of its {} bytes",
                    self.limits.max_room_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Records the take's length in frames (what the artist recorded). Once every frame of
    /// `[0, total_samples)` is stored the take is assembled before this returns; until then it stays
    /// as it is (uploading or incomplete) and the chunk that closes the last gap assembles it.
    ///
    /// Again with the same length: the take as it is (a failed one is assembled again). Refused: a
    /// length past `max_take_seconds` (`take_too_long`), another length than recorded (`conflict`,
    /// `take_closed` once complete), a length shorter than the chunks stored (`bad_request`); chunks
    /// past it are refused from then on (`bad_request`).
    pub fn end(&self, take_id: i64, total_samples: u64) -> Result<Take, TakeError> {
        let due = {
            let conn = self.conn();
            let take = load_take(&conn, take_id)?;
            let max = u64::from(self.limits.max_take_seconds) * u64::from(take.sample_rate);
            if total_samples > max {
                return Err(TakeError::new(
                    TakeErrorKind::TakeTooLong,
                    format!(
                        "{total_samples} frames: a take is at most {} s ({max} frames)",
                        self.limits.max_take_seconds
                    ),
                ));
            }
            match take.total_samples {
                Some(t) if t == total_samples => {}
                Some(t) if take.state == TakeState::Complete => {
                    return Err(TakeError::new(
                        TakeErrorKind::TakeClosed,
                        format!("the take is complete, with {t} frames"),
                    ))
                }
                Some(t) => {
                    return Err(TakeError::new(
                        TakeErrorKind::Conflict,
                        format!("the take's end is recorded at {t} frames"),
                    ))
                }
                None => {
                    let stored: i64 = conn.query_row(
                        "SELECT COALESCE(MAX(first_sample + samples), 0) FROM take_chunks
                         WHERE take_id = ?1",
                        [take_id],
                        |r| r.get(0),
                    )?;
                    let stored = u64::try_from(stored).unwrap_or(0);
                    if stored > total_samples {
                        return Err(bad_request(format!(
                            "chunks up to frame {stored} are stored, past {total_samples}"
                        )));
                    }
                    conn.execute(
                        "UPDATE takes SET total_samples = ?2 WHERE id = ?1",
                        params![take_id, total_samples as i64],
                    )?;
                }
            }
            take.state != TakeState::Complete && take.received_samples == total_samples
        };
        if due {
            self.assemble(take_id)
        } else {
            self.take(take_id)
        }
    }

    /// Makes `take.wav` and `take.flac` from the chunks of a take whose every frame is stored, then
    /// removes the chunks and marks it complete; the take as it is then. Does nothing to a take that
    /// is complete, not fully stored, or being assembled by another call now (that one finishes it).
    ///
    /// Streams a chunk at a time (memory stays at one chunk), without holding the store's lock, so
    /// other takes' uploads go on. A failure to make the files (disk full, a chunk file damaged) marks
    /// the take failed and keeps its chunks; it is not an error of this call.
    pub fn assemble(&self, take_id: i64) -> Result<Take, TakeError> {
        if !self
            .assembling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(take_id)
        {
            return self.take(take_id);
        }
        let _assembling = Assembling {
            set: &self.assembling,
            id: take_id,
        };
        let (take, chunks) = {
            let conn = self.conn();
            let take = load_take(&conn, take_id)?;
            if take.state == TakeState::Complete
                || take.total_samples != Some(take.received_samples)
            {
                return Ok(take);
            }
            (take, load_chunks(&conn, take_id)?)
        };
        let made = self.write_files(&take, &chunks);
        let conn = self.conn();
        match made {
            Ok(made) => {
                let changed = conn.execute(
                    "UPDATE takes SET state = 'complete', bytes = ?2, flac_exact = ?3,
                        wav_bytes = ?4, flac_bytes = ?5
                     WHERE id = ?1",
                    params![
                        take_id,
                        (made.wav_bytes + made.flac_bytes) as i64,
                        made.flac_exact,
                        made.wav_bytes as i64,
                        made.flac_bytes as i64
                    ],
                )?;
                let dir = self.dir(take_id);
                if changed == 0 {
                    // Deleted (its room was) while its files were being made.
                    let _ = fs::remove_dir_all(&dir);
                    return Err(no_such_take(take_id));
                }
                // The WAV holds them now (open removes any a crash leaves here).
                for chunk in &chunks {
                    if let Err(e) = fs::remove_file(dir.join(chunk_name(chunk.seq))) {
                        if e.kind() != io::ErrorKind::NotFound {
                            tracing::warn!("takes: take {take_id}'s chunk {}: {e}", chunk.seq);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!("takes: take {take_id} could not be assembled: {e}");
                conn.execute(
                    "UPDATE takes SET state = 'failed' WHERE id = ?1 AND state != 'complete'",
                    [take_id],
                )?;
            }
        }
        load_take(&conn, take_id)
    }

    /// Writes the take's WAV and FLAC from its chunks (sorted by first frame, covering the take).
    fn write_files(&self, take: &Take, chunks: &[ChunkRow]) -> Result<Assembled, TakeError> {
        let dir = self.dir(take.id);
        let (wav_path, flac_path) = (dir.join(WAV_FILE), dir.join(FLAC_FILE));
        let (wav_tmp, flac_tmp) = (tmp_path(&wav_path), tmp_path(&flac_path));
        let result = encode_take(&dir, take, chunks, &wav_tmp, &flac_tmp).and_then(|made| {
            fs::rename(&wav_tmp, &wav_path)?;
            fs::rename(&flac_tmp, &flac_path)?;
            sync_dir(&dir)?;
            Ok(made)
        });
        if result.is_err() {
            let _ = fs::remove_file(&wav_tmp);
            let _ = fs::remove_file(&flac_tmp);
        }
        result
    }

    /// Assembles every take that is due (its end recorded, every frame stored) but not complete: those
    /// a crash or a restart interrupted, and failed ones (tried again). Call it once after
    /// [`TakeStore::open`], off the async runtime: it takes as long as their assembly. Returns the
    /// takes it touched, as they are now.
    pub fn resume_assembly(&self) -> Result<Vec<Take>, TakeError> {
        let due: Vec<i64> = self
            .conn()
            .prepare(
                "SELECT id FROM takes WHERE state != 'complete' AND total_samples = received_samples
                 ORDER BY id",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        due.into_iter().map(|id| self.assemble(id)).collect()
    }

    /// Marks an uploading take incomplete (its artist left without ending it); it still takes chunks
    /// and `end`. Other states are left as they are. The take as it is then.
    pub fn mark_incomplete(&self, take_id: i64) -> Result<Take, TakeError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE takes SET state = 'incomplete' WHERE id = ?1 AND state = 'uploading'",
            [take_id],
        )?;
        load_take(&conn, take_id)
    }

    /// One take.
    pub fn take(&self, take_id: i64) -> Result<Take, TakeError> {
        load_take(&self.conn(), take_id)
    }

    /// The seqs of a take's acknowledged chunks, in order (kept after assembly, so a client can tell
    /// what arrived).
    pub fn chunks(&self, take_id: i64) -> Result<Vec<u32>, TakeError> {
        let conn = self.conn();
        load_take(&conn, take_id)?;
        let seqs = conn
            .prepare_cached("SELECT seq FROM take_chunks WHERE take_id = ?1 ORDER BY seq")?
            .query_map([take_id], |r| int(r, 0))?
            .collect::<Result<Vec<u32>, _>>()?;
        Ok(seqs)
    }

    /// A room's takes, oldest first.
    pub fn list(&self, room: &str) -> Result<Vec<Take>, TakeError> {
        let conn = self.conn();
        let takes = conn
            .prepare_cached(&format!(
                "SELECT {TAKE_COLUMNS} FROM takes WHERE room = ?1 ORDER BY id"
            ))?
            .query_map([room], take_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(takes)
    }

    /// The path of an assembled take's file, for a download: `name` must be [`WAV_FILE`] or
    /// [`FLAC_FILE`] and the take complete.
    pub fn file_path(&self, take_id: i64, name: &str) -> Result<PathBuf, TakeError> {
        let take = self.take(take_id)?;
        let Some(file) = take.files.iter().find(|f| f.name == name) else {
            return Err(TakeError::new(
                TakeErrorKind::NoSuchTake,
                format!("take {take_id} has no file {name:?}"),
            ));
        };
        Ok(self.dir(take_id).join(file.name))
    }

    /// Deletes a room's takes: rows, then files (open removes files a crash leaves behind). How many.
    pub fn delete_room(&self, room: &str) -> Result<usize, TakeError> {
        let ids: Vec<i64> = {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let ids = tx
                .prepare("SELECT id FROM takes WHERE room = ?1")?
                .query_map([room], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?;
            tx.execute(
                "DELETE FROM take_chunks WHERE take_id IN (SELECT id FROM takes WHERE room = ?1)",
                [room],
            )?;
            tx.execute("DELETE FROM takes WHERE room = ?1", [room])?;
            tx.commit()?;
            ids
        };
        for &id in &ids {
            if let Err(e) = fs::remove_dir_all(self.dir(id)) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!("takes: removing take {id}'s files: {e}");
                }
            }
        }
        Ok(ids.len())
    }

    /// `count` frames from frame `first`, interleaved: from `take.wav` once assembled, else from the
    /// chunks; frames not stored (a gap, before or past the take) are 0.0. At most
    /// [`MAX_READ_FRAMES`] (`bad_request` past it).
    pub fn read_frames(&self, take_id: i64, first: u64, count: u64) -> Result<Vec<f32>, TakeError> {
        if count > MAX_READ_FRAMES {
            return Err(bad_request(format!(
                "{count} frames: read at most {MAX_READ_FRAMES} at a time"
            )));
        }
        // Held while reading chunks: assembly removes them under it.
        let conn = self.conn();
        let take = load_take(&conn, take_id)?;
        let channels = usize::from(take.channels);
        let mut out = vec![0.0f32; count as usize * channels];
        let end = first.saturating_add(count);
        let frame_bytes = channels as u64 * 4;
        let mut buf = Vec::new();
        if take.state == TakeState::Complete {
            drop(conn);
            let total = take.total_samples.unwrap_or(0);
            let (lo, hi) = (first.min(total), end.min(total));
            if hi > lo {
                let at = (lo - first) as usize * channels;
                let to = (hi - first) as usize * channels;
                read_floats_at(
                    &self.dir(take_id).join(WAV_FILE),
                    FLOAT_DATA_OFFSET + lo * frame_bytes,
                    &mut out[at..to],
                    &mut buf,
                )?;
            }
            return Ok(out);
        }
        // The chunks that hold part of [first, end): from the last one starting at or before
        // `first`, up to those starting before `end`.
        let chunks = conn
            .prepare_cached(
                "SELECT seq, first_sample, samples, sha256 FROM take_chunks
                 WHERE take_id = ?1 AND first_sample < ?3 AND first_sample >= COALESCE(
                    (SELECT MAX(first_sample) FROM take_chunks
                     WHERE take_id = ?1 AND first_sample <= ?2), 0)
                 ORDER BY first_sample",
            )?
            .query_map(
                params![
                    take_id,
                    first.min(i64::MAX as u64) as i64,
                    end.min(i64::MAX as u64) as i64
                ],
                chunk_from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in chunks {
            let (lo, hi) = (first.max(chunk.first_sample), end.min(chunk.end()));
            if hi <= lo {
                continue;
            }
            let at = (lo - first) as usize * channels;
            let to = (hi - first) as usize * channels;
            read_floats_at(
                &self.dir(take_id).join(chunk_name(chunk.seq)),
                (lo - chunk.first_sample) * frame_bytes,
                &mut out[at..to],
                &mut buf,
            )?;
        }
        Ok(out)
    }

    /// How many of frames `[first, end)` are stored (chunks never overlap), and where the last stored
    /// chunk ends (0 with none): whether a span of the take can be played yet.
    pub fn stored_frames(
        &self,
        take_id: i64,
        first: u64,
        end: u64,
    ) -> Result<StoredFrames, TakeError> {
        let conn = self.conn();
        load_take(&conn, take_id)?;
        let as_i64 = |v: u64| v.min(i64::MAX as u64) as i64;
        let (held, last_end): (i64, i64) = conn
            .prepare_cached(
                "SELECT
                    COALESCE(SUM(CASE WHEN first_sample < ?3 AND first_sample + samples > ?2
                        THEN MIN(first_sample + samples, ?3) - MAX(first_sample, ?2) END), 0),
                    COALESCE(MAX(first_sample + samples), 0)
                 FROM take_chunks WHERE take_id = ?1",
            )?
            .query_row(params![take_id, as_i64(first), as_i64(end)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        Ok(StoredFrames {
            held: held.max(0) as u64,
            last_end: last_end.max(0) as u64,
        })
    }
}

/// What [`TakeStore::stored_frames`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFrames {
    /// Frames of the span that are stored.
    pub held: u64,
    /// The end of the last stored chunk (a frame index).
    pub last_end: u64,
}

/// A stored chunk's row, and its frames and bytes added to its take's, in one transaction.
fn insert_chunk(
    conn: &mut Connection,
    take_id: i64,
    header: &ChunkHeader,
    bytes: usize,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO take_chunks (take_id, seq, first_sample, samples, sha256)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            take_id,
            header.seq,
            header.first_sample as i64,
            header.samples,
            header.sha256.as_slice()
        ],
    )?;
    tx.execute(
        "UPDATE takes SET received_samples = received_samples + ?2, bytes = bytes + ?3
         WHERE id = ?1",
        params![take_id, header.samples, bytes as i64],
    )?;
    tx.commit()
}

/// Encodes a take's chunks (sorted by first frame, covering the take) into its WAV and FLAC at
/// their temporary names, both synced.
fn encode_take(
    dir: &Path,
    take: &Take,
    chunks: &[ChunkRow],
    wav_tmp: &Path,
    flac_tmp: &Path,
) -> Result<Assembled, TakeError> {
    let channels = u64::from(take.channels);
    let mut wav = FloatWavWriter::create(wav_tmp, take.sample_rate, take.channels)?;
    let mut flac =
        FlacWriter::with_bits(flac_tmp, take.sample_rate, usize::from(take.channels), 24)
            .map_err(TakeError::internal)?;
    let (mut bytes, mut floats, mut ints) = (Vec::new(), Vec::new(), Vec::new());
    let mut next = 0u64;
    let mut exact = true;
    for chunk in chunks {
        if chunk.first_sample != next {
            return Err(TakeError::internal(format!(
                "chunk {} starts at frame {}, not {next}",
                chunk.seq, chunk.first_sample
            )));
        }
        bytes.clear();
        File::open(dir.join(chunk_name(chunk.seq)))?.read_to_end(&mut bytes)?;
        let want = u64::from(chunk.samples) * channels * 4;
        if bytes.len() as u64 != want || <[u8; 32]>::from(Sha256::digest(&bytes)) != chunk.sha256 {
            return Err(TakeError::internal(format!(
                "chunk {}'s file is not what was acknowledged",
                chunk.seq
            )));
        }
        le_floats(&bytes, &mut floats);
        wav.write(&floats)?;
        ints.clear();
        ints.extend(floats.iter().map(|&f| {
            let (v, e) = float_to_i24(f);
            exact &= e;
            v
        }));
        flac.write_i32(&ints).map_err(TakeError::internal)?;
        next = chunk.end();
    }
    if Some(next) != take.total_samples {
        return Err(TakeError::internal(format!(
            "the chunks end at frame {next}, not at the take's end"
        )));
    }
    let (wav_file, wav_bytes) = wav.finish()?;
    wav_file.sync_all()?;
    drop(wav_file);
    let flac_bytes = flac.finish().map_err(TakeError::internal)?;
    File::open(flac_tmp)?.sync_all()?;
    Ok(Assembled {
        wav_bytes,
        flac_bytes,
        flac_exact: exact,
    })
}

fn closed(take: &Take) -> TakeError {
    TakeError::new(
        TakeErrorKind::TakeClosed,
        format!(
            "the take is {} and takes no more chunks",
            take.state.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let d = std::env::temp_dir().join(format!(
                "parley-takes-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const TOKEN: [u8; 32] = [7; 32];

    fn new_take(room: &str, sample_rate: u32, channels: u16) -> NewTake {
        NewTake {
            room: room.into(),
            session_id: 3,
            participant_id: u64::MAX - 1,
            name: "Ann".into(),
            sample_rate,
            channels,
            started_at_ms: 1_700_000_000_123.25,
            token_hash: TOKEN,
            created_at_ms: 1_700_000_000_000,
        }
    }

    fn pcm(samples: &[f32]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn header(seq: u32, first_sample: u64, samples: u32, body: &[u8]) -> ChunkHeader {
        ChunkHeader {
            seq,
            first_sample,
            samples,
            sha256: Sha256::digest(body).into(),
        }
    }

    /// Splits interleaved `source` into chunks of these frame counts, seqs from 0: (header, body).
    fn cut(source: &[f32], channels: usize, frames: &[u32]) -> Vec<(ChunkHeader, Vec<u8>)> {
        let mut at = 0u64;
        frames
            .iter()
            .enumerate()
            .map(|(seq, &n)| {
                let lo = at as usize * channels;
                let body = pcm(&source[lo..lo + n as usize * channels]);
                let h = header(seq as u32, at, n, &body);
                at += u64::from(n);
                (h, body)
            })
            .collect()
    }

    fn kind(r: Result<impl std::fmt::Debug, TakeError>) -> TakeErrorKind {
        r.expect_err("refused").kind
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// A deterministic generator (xorshift).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// The samples of a float WAV's data chunk.
    fn wav_samples(path: &Path) -> Vec<f32> {
        let b = fs::read(path).unwrap();
        assert_eq!(&b[86..90], b"data");
        let n = u32::from_le_bytes(b[90..94].try_into().unwrap()) as usize;
        assert_eq!(b.len(), 94 + n);
        b[94..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|s| s.to_bits()).collect()
    }

    #[test]
    fn uploads_at_once_are_all_stored_once_and_the_take_made() {
        // Chunks are written and synced outside the store's lock: many at once, retries of the same
        // chunk among them, must still store each chunk once and make the take from all of them.
        let d = TempDir::new("parallel");
        let store = std::sync::Arc::new(TakeStore::open(&d.0, TakeLimits::default()).unwrap());
        let take = store.create(new_take("band", 48_000, 1)).unwrap();
        let source: Vec<f32> = (0..16 * 1200)
            .map(|i| (i as f32 * 0.01).sin() * 0.5)
            .collect();
        let chunks = cut(&source, 1, &[1200; 16]);
        store.end(take.id, source.len() as u64).unwrap();
        let mut threads = Vec::new();
        for worker in 0..8 {
            let store = store.clone();
            let chunks = chunks.clone();
            threads.push(std::thread::spawn(move || {
                let mut duplicates = 0;
                // Each worker sends every other chunk of its half, and chunk 0 as everyone's retry.
                for (i, (h, body)) in chunks.iter().enumerate() {
                    if i == 0 || i % 8 == worker {
                        let ack = store.put_chunk(take.id, *h, body).unwrap();
                        duplicates += usize::from(ack.duplicate);
                    }
                }
                duplicates
            }));
        }
        let duplicates: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(
            duplicates, 7,
            "chunk 0 is stored once, the other seven are retries"
        );
        let made = store.take(take.id).unwrap();
        assert_eq!(made.state, TakeState::Complete);
        assert_eq!(made.received_samples, source.len() as u64);
        let back = wav_samples(&take_dir(&d.0, take.id).join(WAV_FILE));
        assert!(back
            .iter()
            .zip(&source)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert_eq!(back.len(), source.len());
        assert!(
            !files_in(&take_dir(&d.0, take.id))
                .iter()
                .any(|f| f.ends_with(".tmp")),
            "no temporary file is left"
        );
    }

    #[test]
    fn chunks_in_any_order_assemble_to_the_very_samples() {
        let d = TempDir::new("order");
        let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
        let mut rng = Rng(0x5eed);
        let frames = [1_000u32, 4_096 + 7, 333];
        let n: usize = frames.iter().map(|&f| f as usize).sum::<usize>() * 2;
        // 24-bit values (k / 2^23), the extremes and -0.0: the FLAC can hold them exactly.
        let mut exact: Vec<f32> = (0..n)
            .map(|_| ((rng.next() % (1 << 24)) as i32 - (1 << 23)) as f32 / 8_388_608.0)
            .collect();
        exact[0] = -1.0;
        exact[1] = 8_388_607.0 / 8_388_608.0;
        exact[2] = -0.0;
        // Floats no 24-bit integer holds, and some a device should never send.
        let mut inexact: Vec<f32> = (0..n).map(|i| (i as f32 * 0.001).sin() * 0.9).collect();
        inexact[5] = 1.5;
        inexact[6] = f32::NAN;
        for (source, want_exact) in [(&exact, true), (&inexact, false)] {
            let take = store.create(new_take("band", 48_000, 2)).unwrap();
            assert_eq!(
                (take.state, take.received_samples, take.total_samples),
                (TakeState::Uploading, 0, None)
            );
            let chunks = cut(source, 2, &frames);
            for i in [2, 0, 1] {
                let (h, body) = &chunks[i];
                let ack = store.put_chunk(take.id, *h, body).unwrap();
                assert!(!ack.duplicate);
            }
            assert_eq!(store.chunks(take.id).unwrap(), [0, 1, 2]);
            let total = (n / 2) as u64;
            assert_eq!(store.take(take.id).unwrap().received_samples, total);
            let done = store.end(take.id, total).unwrap();
            assert_eq!(done.state, TakeState::Complete);
            assert_eq!(done.total_samples, Some(total));
            assert_eq!(done.flac_exact, want_exact);
            let dir = take_dir(&d.0, take.id);
            assert_eq!(files_in(&dir), [FLAC_FILE, WAV_FILE], "the chunks are gone");
            let wav = wav_samples(&dir.join(WAV_FILE));
            assert!(bits(&wav) == bits(source), "take.wav: bit-identical");
            let mut flac = claxon::FlacReader::open(dir.join(FLAC_FILE)).unwrap();
            let info = flac.streaminfo();
            assert_eq!(
                (
                    info.sample_rate,
                    info.channels,
                    info.bits_per_sample,
                    info.samples
                ),
                (48_000, 2, 24, Some(total))
            );
            let decoded: Vec<i32> = flac.samples().map(|s| s.unwrap()).collect();
            let want: Vec<i32> = source.iter().map(|&s| float_to_i24(s).0).collect();
            assert!(decoded == want, "take.flac: the samples at 24 bits");
            let sizes: Vec<(&str, u64)> = done.files.iter().map(|f| (f.name, f.bytes)).collect();
            let on_disk = |f: &str| fs::metadata(dir.join(f)).unwrap().len();
            assert_eq!(
                sizes,
                [
                    (WAV_FILE, on_disk(WAV_FILE)),
                    (FLAC_FILE, on_disk(FLAC_FILE))
                ]
            );
            assert_eq!(done.bytes, on_disk(WAV_FILE) + on_disk(FLAC_FILE));
            assert_eq!(
                store.file_path(take.id, FLAC_FILE).unwrap(),
                dir.join(FLAC_FILE)
            );
            assert_eq!(
                kind(store.file_path(take.id, "chunk-0.pcm")),
                TakeErrorKind::NoSuchTake
            );
        }
        let takes = store.list("band").unwrap();
        assert_eq!(takes.len(), 2);
        assert_eq!(
            (
                takes[0].participant_id,
                takes[0].started_at_ms,
                takes[0].name.as_str()
            ),
            (u64::MAX - 1, 1_700_000_000_123.25, "Ann")
        );
        assert!(store.list("other").unwrap().is_empty());
    }

    #[test]
    fn a_bad_hash_stores_nothing_and_the_good_chunk_is_taken_after() {
        let d = TempDir::new("hash");
        let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
        let take = store.create(new_take("band", 44_100, 1)).unwrap();
        let body = pcm(&[0.25; 441]);
        let mut bad = header(0, 0, 441, &body);
        bad.sha256[0] ^= 1;
        let e = store.put_chunk(take.id, bad, &body).unwrap_err();
        assert_eq!(
            (e.kind, e.status(), e.code()),
            (TakeErrorKind::HashMismatch, 422, "hash_mismatch")
        );
        assert!(store.chunks(take.id).unwrap().is_empty());
        assert_eq!(store.take(take.id).unwrap().received_samples, 0);
        assert!(
            files_in(&take_dir(&d.0, take.id)).is_empty(),
            "no file either"
        );
        // A body cut in transit: the header's hash is right, the body is not.
        let h = header(0, 0, 441, &body);
        let mut cut_body = body.clone();
        cut_body[100] ^= 0x40;
        assert_eq!(
            kind(store.put_chunk(take.id, h, &cut_body)),
            TakeErrorKind::HashMismatch
        );
        let ack = store.put_chunk(take.id, h, &body).unwrap();
        assert_eq!((ack.received_samples, ack.duplicate), (441, false));
        assert_eq!(store.chunks(take.id).unwrap(), [0]);
        assert_eq!(files_in(&take_dir(&d.0, take.id)), ["chunk-0.pcm"]);
    }

    #[test]
    fn refusals_say_why() {
        let d = TempDir::new("refuse");
        let limits = TakeLimits {
            max_chunk_bytes: 8_000,
            max_chunk_seconds: 1,
            max_take_seconds: 2,
            max_room_bytes: 10_000,
        };
        let store = TakeStore::open(&d.0, limits).unwrap();
        // Creation: rates, channels.
        for (rate, channels) in [(7_999, 1), (192_001, 1), (48_000, 0), (48_000, 3)] {
            let e = store.create(new_take("band", rate, channels)).unwrap_err();
            assert_eq!(
                (e.kind, e.status(), e.code()),
                (TakeErrorKind::BadRequest, 400, "bad_request")
            );
        }
        let mut nan = new_take("band", 8_000, 1);
        nan.started_at_ms = f64::NAN;
        assert_eq!(kind(store.create(nan)), TakeErrorKind::BadRequest);
        // 8 kHz mono: 1 s is 8000 frames, 32000 bytes; the limits cut before that.
        let take = store.create(new_take("band", 8_000, 1)).unwrap();
        let id = take.id;
        let e = store.authorize(id, &[8; 32]).unwrap_err();
        assert_eq!(
            (e.kind, e.status(), e.code()),
            (TakeErrorKind::Unauthorized, 401, "unauthorized")
        );
        assert_eq!(store.authorize(id, &TOKEN).unwrap().id, id);
        let e = store.authorize(id + 100, &TOKEN).unwrap_err();
        assert_eq!(
            (e.kind, e.status(), e.code()),
            (TakeErrorKind::NoSuchTake, 404, "no_such_take")
        );

        let a = pcm(&[0.5; 100]);
        let ha = header(0, 0, 100, &a);
        assert!(!store.put_chunk(id, ha, &a).unwrap().duplicate);
        // The identical retry.
        let again = store.put_chunk(id, ha, &a).unwrap();
        assert_eq!((again.duplicate, again.received_samples), (true, 100));
        // The same seq, other content; the same content at another place.
        let b = pcm(&[0.25; 100]);
        let e = store.put_chunk(id, header(0, 0, 100, &b), &b).unwrap_err();
        assert_eq!(
            (e.kind, e.status(), e.code()),
            (TakeErrorKind::Conflict, 409, "conflict")
        );
        assert_eq!(
            kind(store.put_chunk(id, header(0, 100, 100, &a), &a)),
            TakeErrorKind::Conflict
        );
        // Overlaps with the chunk before, and with the one after.
        let e = store.put_chunk(id, header(1, 99, 100, &b), &b).unwrap_err();
        assert_eq!(
            (e.kind, e.status(), e.code()),
            (TakeErrorKind::Overlap, 409, "overlap")
        );
        assert!(store.put_chunk(id, header(3, 300, 100, &b), &b).is_ok());
        assert_eq!(
            kind(store.put_chunk(id, header(2, 201, 100, &b), &b)),
            TakeErrorKind::Overlap
        );
        let three = pcm(&[0.1; 300]);
        assert_eq!(
            kind(store.put_chunk(id, header(2, 150, 300, &three), &three)),
            TakeErrorKind::Overlap
        );
        // Covering a stored chunk whole.
        let wide = pcm(&[0.1; 500]);
        assert_eq!(
            kind(store.put_chunk(id, header(2, 250, 500, &wide), &wide)),
            TakeErrorKind::Overlap
        );
        // Too large: bytes, then frames (1 s at 8 kHz is 8000 frames, 32000 bytes > 8000).
        let big = vec![0u8; 8_004];
        let e = store
            .put_chunk(id, header(4, 400, 2_001, &big), &big)
            .unwrap_err();
        assert_eq!(
            (e.kind, e.status(), e.code()),
            (TakeErrorKind::ChunkTooLarge, 413, "chunk_too_large")
        );
        let wide_dir = TempDir::new("refuse-wide");
        let store_wide = TakeStore::open(
            &wide_dir.0,
            TakeLimits {
                max_chunk_bytes: 1 << 20,
                ..limits
            },
        )
        .unwrap();
        let t2 = store_wide.create(new_take("band", 8_000, 1)).unwrap();
        let long = pcm(&vec![0.0; 8_001]);
        assert_eq!(
            kind(store_wide.put_chunk(t2.id, header(0, 0, 8_001, &long), &long)),
            TakeErrorKind::ChunkTooLarge
        );
        // Past the take's longest (2 s = 16000 frames).
        let c = pcm(&[0.0; 10]);
        let e = store
            .put_chunk(id, header(5, 15_995, 10, &c), &c)
            .unwrap_err();
        assert_eq!(
            (e.kind, e.status(), e.code()),
            (TakeErrorKind::TakeTooLong, 413, "take_too_long")
        );
        assert_eq!(
            kind(store.put_chunk(id, header(5, u64::MAX - 2, 10, &c), &c)),
            TakeErrorKind::TakeTooLong
        );
        assert!(
            store.put_chunk(id, header(5, 15_990, 10, &c), &c).is_ok(),
            "ends at the limit"
        );
        assert_eq!(kind(store.end(id, 16_001)), TakeErrorKind::TakeTooLong);
        // Malformed: no frames, a body of the wrong length.
        assert_eq!(
            kind(store.put_chunk(id, header(6, 500, 0, &[]), &[])),
            TakeErrorKind::BadRequest
        );
        assert_eq!(
            kind(store.put_chunk(id, header(6, 500, 11, &c), &c)),
            TakeErrorKind::BadRequest
        );
        assert_eq!(
            kind(store.put_chunk(id + 100, header(6, 500, 10, &c), &c)),
            TakeErrorKind::NoSuchTake
        );
        // The room's quota: 400 + 400 + 40 bytes stored of 10000.
        let used = store.take(id).unwrap().bytes;
        assert_eq!(used, 840);
        let other = store.create(new_take("band", 8_000, 1)).unwrap();
        let fill = pcm(&vec![0.0; 1_990]);
        assert!(store
            .put_chunk(other.id, header(0, 0, 1_990, &fill), &fill)
            .is_ok());
        let more = pcm(&[0.0; 400]);
        let e = store
            .put_chunk(other.id, header(1, 1_990, 400, &more), &more)
            .unwrap_err();
        assert_eq!(
            (e.kind, e.status(), e.code()),
            (TakeErrorKind::RoomDiskFull, 507, "room_disk_full")
        );
        assert!(store.chunks(other.id).unwrap() == [0]);
        let elsewhere = store.create(new_take("other room", 8_000, 1)).unwrap();
        let hundred = pcm(&[0.0; 100]);
        assert!(
            store
                .put_chunk(elsewhere.id, header(0, 0, 100, &hundred), &hundred)
                .is_ok(),
            "another room's quota"
        );
        // The end: not before stored chunks; chunks past it refused; another end is a conflict.
        assert_eq!(kind(store.end(id, 15_999)), TakeErrorKind::BadRequest);
        assert_eq!(
            store.end(elsewhere.id, 200).unwrap().state,
            TakeState::Uploading
        );
        let past = pcm(&[0.0; 101]);
        assert_eq!(
            kind(store.put_chunk(elsewhere.id, header(1, 100, 101, &past), &past)),
            TakeErrorKind::BadRequest
        );
        assert_eq!(kind(store.end(elsewhere.id, 300)), TakeErrorKind::Conflict);
        assert_eq!(
            store.end(elsewhere.id, 200).unwrap().total_samples,
            Some(200)
        );
        // Complete: nothing new; the identical retry still succeeds.
        let last = pcm(&[0.0; 100]);
        assert_eq!(
            store
                .put_chunk(elsewhere.id, header(1, 100, 100, &last), &last)
                .unwrap()
                .take
                .state,
            TakeState::Complete
        );
        let e = store
            .put_chunk(elsewhere.id, header(2, 200, 1, &pcm(&[0.0])), &pcm(&[0.0]))
            .unwrap_err();
        assert_eq!(
            (e.kind, e.status(), e.code()),
            (TakeErrorKind::TakeClosed, 409, "take_closed")
        );
        let changed = pcm(&[0.5; 100]);
        assert_eq!(
            kind(store.put_chunk(elsewhere.id, header(1, 100, 100, &changed), &changed)),
            TakeErrorKind::TakeClosed
        );
        assert!(
            store
                .put_chunk(elsewhere.id, header(1, 100, 100, &last), &last)
                .unwrap()
                .duplicate
        );
        assert_eq!(
            kind(store.end(elsewhere.id, 201)),
            TakeErrorKind::TakeClosed
        );
        assert_eq!(
            store.end(elsewhere.id, 200).unwrap().state,
            TakeState::Complete
        );
        // Internal errors keep their detail out of the message.
        let e = TakeError::from(io::Error::other("/secret/path"));
        assert_eq!((e.status(), e.code()), (500, "internal"));
        assert!(!e.message().contains("secret") && e.to_string().contains("secret"));
    }

    #[test]
    fn an_end_before_the_last_chunk_waits_for_it() {
        let d = TempDir::new("end");
        let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
        let source: Vec<f32> = (0..3_000).map(|i| i as f32 / 4_096.0).collect();
        let chunks = cut(&source, 1, &[1_000, 1_000, 1_000]);
        let take = store.create(new_take("band", 48_000, 1)).unwrap();
        store.put_chunk(take.id, chunks[0].0, &chunks[0].1).unwrap();
        store.put_chunk(take.id, chunks[2].0, &chunks[2].1).unwrap();
        let ended = store.end(take.id, 3_000).unwrap();
        assert_eq!(
            (ended.state, ended.received_samples, ended.total_samples),
            (TakeState::Uploading, 2_000, Some(3_000))
        );
        // The artist leaves; the page comes back and sends what is missing.
        assert_eq!(
            store.mark_incomplete(take.id).unwrap().state,
            TakeState::Incomplete
        );
        let ack = store.put_chunk(take.id, chunks[1].0, &chunks[1].1).unwrap();
        assert_eq!(
            (ack.take.state, ack.received_samples),
            (TakeState::Complete, 3_000)
        );
        assert!(ack.take.flac_exact);
        assert_eq!(
            store.mark_incomplete(take.id).unwrap().state,
            TakeState::Complete
        );
        let wav = wav_samples(&take_dir(&d.0, take.id).join(WAV_FILE));
        assert!(bits(&wav) == bits(&source));
        // A take of no frames at all.
        let empty = store.create(new_take("band", 48_000, 2)).unwrap();
        let done = store.end(empty.id, 0).unwrap();
        assert_eq!((done.state, done.flac_exact), (TakeState::Complete, true));
        assert!(wav_samples(&take_dir(&d.0, empty.id).join(WAV_FILE)).is_empty());
    }

    #[test]
    fn reopening_keeps_everything_and_tidies_what_a_crash_left() {
        let d = TempDir::new("reopen");
        let source: Vec<f32> = (0..1_200).map(|i| (i as f32 * 0.01).cos()).collect();
        let chunks = cut(&source, 2, &[200, 200, 200]);
        let (id, before) = {
            let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
            let take = store.create(new_take("band", 96_000, 2)).unwrap();
            store.put_chunk(take.id, chunks[0].0, &chunks[0].1).unwrap();
            store.put_chunk(take.id, chunks[1].0, &chunks[1].1).unwrap();
            store.end(take.id, 600).unwrap();
            (take.id, store.take(take.id).unwrap())
        };
        let dir = take_dir(&d.0, id);
        // What a crash can leave: a chunk written but not renamed, one renamed but with no row, a
        // directory of a take with no row; and a directory someone else made.
        fs::write(dir.join("chunk-2.pcm.tmp"), b"half").unwrap();
        fs::write(dir.join("chunk-9.pcm"), pcm(&[0.0; 8])).unwrap();
        fs::create_dir_all(takes_dir(&d.0).join("999")).unwrap();
        fs::write(takes_dir(&d.0).join("999").join("chunk-0.pcm"), b"x").unwrap();
        fs::create_dir_all(takes_dir(&d.0).join("notes")).unwrap();
        {
            let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
            assert_eq!(store.take(id).unwrap(), before);
            assert_eq!(store.chunks(id).unwrap(), [0, 1]);
            assert!(store.authorize(id, &TOKEN).is_ok());
            assert_eq!(files_in(&dir), ["chunk-0.pcm", "chunk-1.pcm"]);
            assert_eq!(files_in(&takes_dir(&d.0)), [id.to_string(), "notes".into()]);
            // A crash after the last chunk's row was committed, before the take was assembled.
            fs::write(dir.join("chunk-2.pcm"), &chunks[2].1).unwrap();
        }
        let conn = Connection::open(d.0.join("takes.db")).unwrap();
        conn.execute(
            "INSERT INTO take_chunks VALUES (?1, 2, 400, 200, ?2)",
            params![id, chunks[2].0.sha256.as_slice()],
        )
        .unwrap();
        conn.execute(
            "UPDATE takes SET received_samples = 600, bytes = 4800 WHERE id = ?1",
            [id],
        )
        .unwrap();
        drop(conn);
        let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
        assert_eq!(store.take(id).unwrap().state, TakeState::Uploading);
        let resumed = store.resume_assembly().unwrap();
        assert_eq!(resumed.len(), 1);
        assert_eq!((resumed[0].id, resumed[0].state), (id, TakeState::Complete));
        assert!(!resumed[0].flac_exact, "cosines are not 24-bit values");
        assert!(bits(&wav_samples(&dir.join(WAV_FILE))) == bits(&source));
        assert!(store.resume_assembly().unwrap().is_empty());
        // A new store's ids go on from the old ones.
        assert!(store.create(new_take("band", 48_000, 1)).unwrap().id > id);
    }

    #[test]
    fn a_row_whose_file_is_gone_is_forgotten_so_it_can_come_again() {
        let d = TempDir::new("lost");
        let chunks = cut(&[0.5; 300], 1, &[100, 100, 100]);
        let id = {
            let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
            let take = store.create(new_take("band", 48_000, 1)).unwrap();
            for (h, body) in &chunks {
                store.put_chunk(take.id, *h, body).unwrap();
            }
            take.id
        };
        fs::remove_file(take_dir(&d.0, id).join("chunk-1.pcm")).unwrap();
        fs::write(take_dir(&d.0, id).join("chunk-2.pcm"), b"cut").unwrap();
        let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
        assert_eq!(store.chunks(id).unwrap(), [0]);
        let take = store.take(id).unwrap();
        assert_eq!((take.received_samples, take.bytes), (100, 400));
        assert!(
            !store
                .put_chunk(id, chunks[1].0, &chunks[1].1)
                .unwrap()
                .duplicate
        );
    }

    #[test]
    fn read_frames_cuts_exact_spans_from_chunks_and_from_the_wav() {
        let d = TempDir::new("read");
        let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
        let source: Vec<f32> = (0..600).map(|i| i as f32 + 0.5).collect();
        let chunks = cut(&source, 2, &[100, 150, 50]);
        let take = store.create(new_take("band", 48_000, 2)).unwrap();
        let id = take.id;
        store.put_chunk(id, chunks[0].0, &chunks[0].1).unwrap();
        store.put_chunk(id, chunks[2].0, &chunks[2].1).unwrap();
        // Frames 100..250 are missing: zeros there.
        let want = |first: usize, count: usize, have: &dyn Fn(usize) -> bool| -> Vec<f32> {
            (first * 2..(first + count) * 2)
                .map(|i| {
                    if i < 600 && have(i / 2) {
                        source[i]
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let gap = |f: usize| !(100..250).contains(&f);
        for (first, count) in [
            (90, 30),
            (0, 300),
            (240, 20),
            (280, 40),
            (500, 10),
            (0, 0),
            (99, 1),
        ] {
            assert_eq!(
                store.read_frames(id, first, count).unwrap(),
                want(first as usize, count as usize, &gap),
                "{first}+{count} with a gap"
            );
        }
        store.put_chunk(id, chunks[1].0, &chunks[1].1).unwrap();
        let all = |_: usize| true;
        for (first, count) in [(90, 30), (95, 200), (249, 2)] {
            assert_eq!(
                store.read_frames(id, first, count).unwrap(),
                want(first as usize, count as usize, &all),
                "{first}+{count} from chunks"
            );
        }
        assert_eq!(store.end(id, 300).unwrap().state, TakeState::Complete);
        for (first, count) in [
            (90, 30),
            (0, 300),
            (99, 152),
            (280, 40),
            (300, 5),
            (u64::MAX - 1, 3),
        ] {
            let got = store.read_frames(id, first, count).unwrap();
            let first = first.min(10_000) as usize;
            assert_eq!(
                got,
                want(first, count as usize, &all),
                "{first}+{count} from the WAV"
            );
        }
        assert_eq!(
            kind(store.read_frames(id, 0, MAX_READ_FRAMES + 1)),
            TakeErrorKind::BadRequest
        );
        assert_eq!(
            kind(store.read_frames(id + 1, 0, 1)),
            TakeErrorKind::NoSuchTake
        );
    }

    #[test]
    fn the_store_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<TakeStore>();
    }

    #[test]
    fn deleting_a_room_removes_its_takes_only() {
        let d = TempDir::new("delete");
        let store = TakeStore::open(&d.0, TakeLimits::default()).unwrap();
        let body = pcm(&[0.5; 10]);
        let mut ids = Vec::new();
        for room in ["a", "a", "b"] {
            let take = store.create(new_take(room, 48_000, 1)).unwrap();
            store
                .put_chunk(take.id, header(0, 0, 10, &body), &body)
                .unwrap();
            ids.push(take.id);
        }
        store.end(ids[1], 10).unwrap();
        assert_eq!(store.delete_room("a").unwrap(), 2);
        assert!(store.list("a").unwrap().is_empty());
        assert_eq!(kind(store.take(ids[0])), TakeErrorKind::NoSuchTake);
        assert_eq!(kind(store.chunks(ids[1])), TakeErrorKind::NoSuchTake);
        assert!(!take_dir(&d.0, ids[0]).exists() && !take_dir(&d.0, ids[1]).exists());
        assert_eq!(store.chunks(ids[2]).unwrap(), [0]);
        assert!(take_dir(&d.0, ids[2]).join("chunk-0.pcm").exists());
        assert_eq!(store.delete_room("a").unwrap(), 0);
    }
}
