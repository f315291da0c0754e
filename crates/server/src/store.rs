//! Durable state in SQLite: rooms (with their access settings, owner keys and invites), chat history and
//! the admin token's hash. Schema changes are numbered migrations applied at open.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use parley_proto::{
    Access, ChatMessage, Marker, RecordingFile, RecordingInfo, RecordingState, Role, Segment,
    StudioRole,
};
use rusqlite::{params, Connection, OptionalExtension};

use crate::secret::TokenHash;

/// Each entry moves the schema one version up; `PRAGMA user_version` records how far a database is.
const MIGRATIONS: &[&str] = &[
    // 1: rooms and chat.
    "CREATE TABLE rooms (
        name TEXT PRIMARY KEY NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE chat_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        room TEXT NOT NULL,
        author_id INTEGER NOT NULL,
        author TEXT NOT NULL,
        text TEXT NOT NULL,
        sent_at_ms INTEGER NOT NULL
    );
    CREATE INDEX chat_messages_by_room ON chat_messages (room, id);",
    // 2: access. Secrets are stored only as hashes (SHA-256 for random tokens, argon2id for passwords).
    "ALTER TABLE rooms ADD COLUMN access TEXT NOT NULL DEFAULT 'public';
    ALTER TABLE rooms ADD COLUMN password_hash TEXT;
    ALTER TABLE rooms ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE owner_keys (
        key_hash BLOB PRIMARY KEY NOT NULL,
        room TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE invites (
        id INTEGER PRIMARY KEY NOT NULL,
        room TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE,
        role TEXT NOT NULL,
        uses INTEGER,
        used INTEGER NOT NULL DEFAULT 0,
        not_before_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );",
    // 3: limits. Who made a room (rooms per address) and when it was last empty or entered (idle
    // rooms expire); chat by time (retention).
    "ALTER TABLE rooms ADD COLUMN creator_addr TEXT;
    ALTER TABLE rooms ADD COLUMN last_active_ms INTEGER;
    CREATE INDEX chat_messages_by_time ON chat_messages (sent_at_ms);",
    // 4: room recordings. Files are in DATA_DIR/recordings/<id>/, named by the server.
    "CREATE TABLE recordings (
        id INTEGER PRIMARY KEY NOT NULL,
        room TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        started_by TEXT NOT NULL,
        stopped_at_ms INTEGER,
        stopped_by TEXT,
        duration_ms INTEGER,
        files TEXT NOT NULL DEFAULT '[]',
        message TEXT
    );
    CREATE INDEX recordings_by_room ON recordings (room, id);",
    // 5: studio mode. A session lasts from when a room goes into studio mode (or is entered in it)
    // until it leaves it or empties; its markers and segments are on the server's clock (Unix ms,
    // fractional). Takes are in takes.sqlite3 (`takes.rs`): their uploads must not wait behind chat.
    "ALTER TABLE rooms ADD COLUMN studio INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE invites ADD COLUMN studio_role TEXT;
    CREATE TABLE studio_sessions (
        id INTEGER PRIMARY KEY NOT NULL,
        room TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms INTEGER,
        recording_id INTEGER
    );
    CREATE TABLE markers (
        id INTEGER PRIMARY KEY NOT NULL,
        session_id INTEGER NOT NULL,
        at_ms REAL NOT NULL,
        label TEXT NOT NULL,
        by_name TEXT NOT NULL
    );
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY NOT NULL,
        session_id INTEGER NOT NULL,
        start_ms REAL NOT NULL,
        end_ms REAL,
        label TEXT NOT NULL,
        by_name TEXT NOT NULL
    );",
];

/// Where a recording's files are, under the data dir.
pub fn recording_dir(data_dir: &Path, id: i64) -> std::path::PathBuf {
    data_dir.join("recordings").join(id.to_string())
}

/// The journals a recording's files are made from, inside its directory: removed once the files are
/// made and stored, so a recording takes its files' room on disk, not twice that.
pub const JOURNAL_DIR: &str = "journal";

pub fn journal_dir(data_dir: &Path, id: i64) -> std::path::PathBuf {
    recording_dir(data_dir, id).join(JOURNAL_DIR)
}

/// A room as stored, with everything the access rules need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRoom {
    pub name: String,
    pub access: Access,
    pub password_hash: Option<String>,
    pub locked: bool,
    pub owner_keys: Vec<TokenHash>,
    pub invites: Vec<StoredInvite>,
    /// The address it was created from.
    pub creator_addr: Option<std::net::IpAddr>,
    /// When someone last entered it or it became empty (its creation, if never).
    pub last_active_ms: i64,
    pub studio: bool,
}

/// A studio session as stored (for exports after it ended).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStudioSession {
    pub id: i64,
    pub room: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub recording_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInvite {
    pub id: i64,
    pub token_hash: TokenHash,
    pub role: Role,
    pub studio_role: Option<StudioRole>,
    pub uses: Option<u32>,
    pub used: u32,
    pub not_before_ms: i64,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub revoked: bool,
}

/// A durable change, done by the store thread; the control plane acknowledges it after.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreWrite {
    CreateRoom {
        name: String,
        access: Access,
        password_hash: Option<String>,
        owner_key: TokenHash,
        creator_addr: Option<std::net::IpAddr>,
    },
    /// Someone entered the room, or its last person left (idle rooms expire by this).
    RoomActive {
        room: String,
    },
    /// The room's chat history, all of it.
    DeleteChat {
        room: String,
    },
    /// A room's recordings and their files, but for those in `keep` (running, being made).
    DeleteRecordings {
        room: String,
        keep: Vec<i64>,
    },
    /// A server setting (the admin's limits).
    Setting {
        key: String,
        value: String,
    },
    RecordingStarted {
        id: i64,
        room: String,
        started_by: String,
        started_at_ms: i64,
    },
    RecordingStopped {
        id: i64,
        stopped_by: Option<String>,
        stopped_at_ms: i64,
    },
    /// Its files are made (or could not be).
    RecordingFinished {
        id: i64,
        state: RecordingState,
        duration_ms: Option<i64>,
        files: Vec<RecordingFile>,
        message: Option<String>,
    },
    Settings {
        room: String,
        access: Access,
        password_hash: Option<String>,
        locked: bool,
        studio: bool,
    },
    StudioSessionStarted {
        id: i64,
        room: String,
        started_at_ms: i64,
    },
    /// The room recording the session started.
    StudioSessionRecording {
        id: i64,
        recording_id: i64,
    },
    StudioSessionEnded {
        id: i64,
        ended_at_ms: i64,
    },
    AddMarker {
        session_id: i64,
        marker: Marker,
    },
    DeleteMarker {
        id: i64,
    },
    /// A segment, new or with its end.
    PutSegment {
        session_id: i64,
        segment: Segment,
    },
    DeleteSegment {
        id: i64,
    },
    AddOwnerKey {
        room: String,
        key: TokenHash,
    },
    RemoveOwnerKey {
        key: TokenHash,
    },
    AddInvite {
        room: String,
        invite: StoredInvite,
    },
    InviteUsed {
        id: i64,
    },
    RevokeInvite {
        id: i64,
    },
    /// The room, its chat, keys and invites.
    DeleteRoom {
        room: String,
    },
}

pub struct Store {
    conn: Mutex<Connection>,
    /// The data dir (none for a database in memory): a deleted room's recordings go from here.
    dir: Option<std::path::PathBuf>,
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join("parley.sqlite3");
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut store = Store::with_connection(conn)
            .with_context(|| format!("preparing {}", path.display()))?;
        store.dir = Some(data_dir.to_path_buf());
        Ok(store)
    }

    fn with_connection(mut conn: Connection) -> Result<Store> {
        // WAL + FULL: a message is on disk before it is acknowledged, even if the process is killed.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "the database is from a newer parley (schema {version}, this one knows {})",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
            dir: None,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent; keep serving.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn rooms(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name FROM rooms ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }

    /// Every room with its settings, owner keys and invites that are not revoked.
    pub fn load_rooms(&self) -> Result<Vec<StoredRoom>> {
        let conn = self.conn();
        let mut rooms: Vec<StoredRoom> = conn
            .prepare(
                "SELECT name, access, password_hash, locked, creator_addr,
                        COALESCE(last_active_ms, created_at_ms), studio
                 FROM rooms ORDER BY name",
            )?
            .query_map([], |r| {
                let access: String = r.get(1)?;
                let creator: Option<String> = r.get(4)?;
                Ok(StoredRoom {
                    name: r.get(0)?,
                    access: Access::parse(&access).unwrap_or_default(),
                    password_hash: r.get(2)?,
                    locked: r.get::<_, i64>(3)? != 0,
                    creator_addr: creator.and_then(|a| a.parse().ok()),
                    last_active_ms: r.get(5)?,
                    studio: r.get::<_, i64>(6)? != 0,
                    ..Default::default()
                })
            })?
            .collect::<Result<_, _>>()?;
        let index: std::collections::HashMap<String, usize> = rooms
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let keys: Vec<(String, Vec<u8>)> = conn
            .prepare("SELECT room, key_hash FROM owner_keys")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (room, hash) in keys {
            if let (Some(&i), Ok(hash)) = (index.get(&room), TokenHash::try_from(hash.as_slice())) {
                rooms[i].owner_keys.push(hash);
            }
        }
        let mut stmt = conn.prepare(
            "SELECT room, id, token_hash, role, uses, used, not_before_ms, expires_at_ms, created_at_ms,
                    studio_role
             FROM invites WHERE revoked = 0 ORDER BY id",
        )?;
        let invites = stmt
            .query_map([], |r| {
                let hash: Vec<u8> = r.get(2)?;
                let role: String = r.get(3)?;
                Ok((
                    r.get::<_, String>(0)?,
                    hash,
                    StoredInvite {
                        id: r.get(1)?,
                        token_hash: TokenHash::default(),
                        role: if role == "viewer" {
                            Role::Viewer
                        } else {
                            Role::Member
                        },
                        uses: r
                            .get::<_, Option<i64>>(4)?
                            .map(|u| u.clamp(0, u32::MAX as i64) as u32),
                        used: r.get::<_, i64>(5)?.clamp(0, u32::MAX as i64) as u32,
                        not_before_ms: r.get(6)?,
                        expires_at_ms: r.get(7)?,
                        created_at_ms: r.get(8)?,
                        studio_role: r
                            .get::<_, Option<String>>(9)?
                            .and_then(|s| studio_role_parse(&s)),
                        revoked: false,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (room, hash, mut invite) in invites {
            if let (Some(&i), Ok(hash)) = (index.get(&room), TokenHash::try_from(hash.as_slice())) {
                invite.token_hash = hash;
                rooms[i].invites.push(invite);
            }
        }
        Ok(rooms)
    }

    /// Does `write`; returns only once it is durable.
    pub fn write(&self, write: &StoreWrite, now_ms: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut journals_done = None;
        match write {
            StoreWrite::CreateRoom {
                name,
                access,
                password_hash,
                owner_key,
                creator_addr,
            } => {
                tx.execute(
                    "INSERT INTO rooms (name, created_at_ms, access, password_hash, creator_addr, last_active_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?2)",
                    params![
                        name,
                        now_ms,
                        access.as_str(),
                        password_hash,
                        creator_addr.map(|a| a.to_string())
                    ],
                )?;
                tx.execute(
                    "INSERT INTO owner_keys (key_hash, room, created_at_ms) VALUES (?1, ?2, ?3)",
                    params![owner_key.as_slice(), name, now_ms],
                )?;
            }
            StoreWrite::Settings {
                room,
                access,
                password_hash,
                locked,
                studio,
            } => {
                tx.execute(
                    "UPDATE rooms SET access = ?2, password_hash = ?3, locked = ?4, studio = ?5
                     WHERE name = ?1",
                    params![
                        room,
                        access.as_str(),
                        password_hash,
                        *locked as i64,
                        *studio as i64
                    ],
                )?;
            }
            StoreWrite::StudioSessionStarted {
                id,
                room,
                started_at_ms,
            } => {
                tx.execute(
                    "INSERT INTO studio_sessions (id, room, started_at_ms) VALUES (?1, ?2, ?3)",
                    params![id, room, started_at_ms],
                )?;
            }
            StoreWrite::StudioSessionRecording { id, recording_id } => {
                tx.execute(
                    "UPDATE studio_sessions SET recording_id = ?2 WHERE id = ?1",
                    params![id, recording_id],
                )?;
            }
            StoreWrite::StudioSessionEnded { id, ended_at_ms } => {
                tx.execute(
                    "UPDATE studio_sessions SET ended_at_ms = ?2 WHERE id = ?1",
                    params![id, ended_at_ms],
                )?;
            }
            StoreWrite::AddMarker { session_id, marker } => {
                tx.execute(
                    "INSERT INTO markers (id, session_id, at_ms, label, by_name)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        marker.marker_id,
                        session_id,
                        marker.at_ms,
                        marker.label,
                        marker.by
                    ],
                )?;
            }
            StoreWrite::DeleteMarker { id } => {
                tx.execute("DELETE FROM markers WHERE id = ?1", params![id])?;
            }
            StoreWrite::PutSegment {
                session_id,
                segment,
            } => {
                tx.execute(
                    "INSERT INTO segments (id, session_id, start_ms, end_ms, label, by_name)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(id) DO UPDATE SET start_ms = excluded.start_ms,
                        end_ms = excluded.end_ms, label = excluded.label",
                    params![
                        segment.segment_id,
                        session_id,
                        segment.start_ms,
                        segment.end_ms,
                        segment.label,
                        segment.by
                    ],
                )?;
            }
            StoreWrite::DeleteSegment { id } => {
                tx.execute("DELETE FROM segments WHERE id = ?1", params![id])?;
            }
            StoreWrite::AddOwnerKey { room, key } => {
                tx.execute(
                    "INSERT OR IGNORE INTO owner_keys (key_hash, room, created_at_ms) VALUES (?1, ?2, ?3)",
                    params![key.as_slice(), room, now_ms],
                )?;
            }
            StoreWrite::RemoveOwnerKey { key } => {
                tx.execute(
                    "DELETE FROM owner_keys WHERE key_hash = ?1",
                    params![key.as_slice()],
                )?;
            }
            StoreWrite::AddInvite { room, invite } => {
                tx.execute(
                    "INSERT INTO invites (id, room, token_hash, role, uses, used, not_before_ms, expires_at_ms, created_at_ms, studio_role)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        invite.id,
                        room,
                        invite.token_hash.as_slice(),
                        match invite.role {
                            Role::Viewer => "viewer",
                            Role::Member => "member",
                        },
                        invite.uses.map(i64::from),
                        i64::from(invite.used),
                        invite.not_before_ms,
                        invite.expires_at_ms,
                        invite.created_at_ms,
                        invite.studio_role.map(studio_role_str)
                    ],
                )?;
            }
            StoreWrite::InviteUsed { id } => {
                tx.execute(
                    "UPDATE invites SET used = used + 1 WHERE id = ?1",
                    params![id],
                )?;
            }
            StoreWrite::RevokeInvite { id } => {
                tx.execute("UPDATE invites SET revoked = 1 WHERE id = ?1", params![id])?;
            }
            StoreWrite::RoomActive { room } => {
                tx.execute(
                    "UPDATE rooms SET last_active_ms = ?2 WHERE name = ?1",
                    params![room, now_ms],
                )?;
            }
            StoreWrite::DeleteRecordings { room, keep } => {
                let ids: Vec<i64> = tx
                    .prepare("SELECT id FROM recordings WHERE room = ?1")?
                    .query_map(params![room], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>()?
                    .into_iter()
                    .filter(|id| !keep.contains(id))
                    .collect();
                for id in &ids {
                    tx.execute("DELETE FROM recordings WHERE id = ?1", params![id])?;
                }
                if let Some(dir) = &self.dir {
                    for id in ids {
                        let _ = std::fs::remove_dir_all(recording_dir(dir, id));
                    }
                }
            }
            StoreWrite::DeleteChat { room } => {
                tx.execute("DELETE FROM chat_messages WHERE room = ?1", params![room])?;
            }
            StoreWrite::Setting { key, value } => {
                tx.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![key, value],
                )?;
            }
            StoreWrite::RecordingStarted {
                id,
                room,
                started_by,
                started_at_ms,
            } => {
                tx.execute(
                    "INSERT INTO recordings (id, room, state, started_at_ms, started_by)
                     VALUES (?1, ?2, 'recording', ?3, ?4)",
                    params![id, room, started_at_ms, started_by],
                )?;
            }
            StoreWrite::RecordingStopped {
                id,
                stopped_by,
                stopped_at_ms,
            } => {
                tx.execute(
                    "UPDATE recordings SET state = 'processing', stopped_at_ms = ?2, stopped_by = ?3
                     WHERE id = ?1",
                    params![id, stopped_at_ms, stopped_by],
                )?;
            }
            StoreWrite::RecordingFinished {
                id,
                state,
                duration_ms,
                files,
                message,
            } => {
                let files = serde_json::to_string(files)?;
                tx.execute(
                    "UPDATE recordings SET state = ?2, duration_ms = ?3, files = ?4, message = ?5,
                     stopped_at_ms = COALESCE(stopped_at_ms, ?6) WHERE id = ?1",
                    params![id, state.as_str(), duration_ms, files, message, now_ms],
                )?;
                // Made and stored: the journals have done their work. A failed one keeps them (the
                // files could be made again from them).
                if *state != RecordingState::Failed {
                    journals_done = Some(*id);
                }
            }
            StoreWrite::DeleteRoom { room } => {
                let ids: Vec<i64> = tx
                    .prepare("SELECT id FROM recordings WHERE room = ?1")?
                    .query_map(params![room], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                tx.execute("DELETE FROM recordings WHERE room = ?1", params![room])?;
                if let Some(dir) = &self.dir {
                    for id in ids {
                        let _ = std::fs::remove_dir_all(recording_dir(dir, id));
                    }
                }
                for table in ["markers", "segments"] {
                    tx.execute(
                        &format!(
                            "DELETE FROM {table} WHERE session_id IN
                             (SELECT id FROM studio_sessions WHERE room = ?1)"
                        ),
                        params![room],
                    )?;
                }
                for table in ["chat_messages", "owner_keys", "invites", "studio_sessions"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE room = ?1"),
                        params![room],
                    )?;
                }
                tx.execute("DELETE FROM rooms WHERE name = ?1", params![room])?;
            }
        }
        tx.commit()?;
        if let (Some(id), Some(dir)) = (journals_done, &self.dir) {
            if let Err(e) = std::fs::remove_dir_all(journal_dir(dir, id)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(recording = id, "journals not removed: {e}");
                }
            }
        }
        Ok(())
    }

    /// Ids continue after the highest stored: (studio session, marker, segment).
    pub fn last_studio_ids(&self) -> Result<(i64, i64, i64)> {
        let conn = self.conn();
        let max = |table: &str| -> Result<i64> {
            Ok(conn.query_row(
                &format!("SELECT COALESCE(MAX(id), 0) FROM {table}"),
                [],
                |r| r.get(0),
            )?)
        };
        Ok((max("studio_sessions")?, max("markers")?, max("segments")?))
    }

    /// Sessions the last run left open (the server stopped during them) end at `now_ms`.
    pub fn end_open_studio_sessions(&self, now_ms: i64) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE studio_sessions SET ended_at_ms = ?1 WHERE ended_at_ms IS NULL",
            params![now_ms],
        )?)
    }

    /// A segment and the session it belongs to (for its export).
    pub fn segment(&self, id: i64) -> Result<Option<(Segment, StoredStudioSession)>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT g.id, g.start_ms, g.end_ms, g.label, g.by_name,
                        s.id, s.room, s.started_at_ms, s.ended_at_ms, s.recording_id
                 FROM segments g JOIN studio_sessions s ON s.id = g.session_id WHERE g.id = ?1",
                params![id],
                |r| {
                    Ok((
                        Segment {
                            segment_id: r.get(0)?,
                            start_ms: r.get(1)?,
                            end_ms: r.get(2)?,
                            label: r.get(3)?,
                            by: r.get(4)?,
                            export_url: None,
                            playback: Vec::new(),
                        },
                        StoredStudioSession {
                            id: r.get(5)?,
                            room: r.get(6)?,
                            started_at_ms: r.get(7)?,
                            ended_at_ms: r.get(8)?,
                            recording_id: r.get(9)?,
                        },
                    ))
                },
            )
            .optional()?;
        Ok(row)
    }

    /// A session's markers, by time (for a segment's export).
    pub fn markers(&self, session_id: i64) -> Result<Vec<Marker>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at_ms, label, by_name FROM markers WHERE session_id = ?1
             ORDER BY at_ms, id",
        )?;
        let rows = stmt
            .query_map(params![session_id], |r| {
                Ok(Marker {
                    marker_id: r.get(0)?,
                    at_ms: r.get(1)?,
                    label: r.get(2)?,
                    by: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One recording (without download links), whatever its room (for a segment's export).
    pub fn recording(&self, id: i64) -> Result<Option<RecordingInfo>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT id, room, state, started_at_ms, started_by, stopped_at_ms, stopped_by,
                        duration_ms, files, message
                 FROM recordings WHERE id = ?1",
                params![id],
                recording_from_row,
            )
            .optional()?;
        Ok(row)
    }

    /// `room`'s recordings, newest first (without download links).
    pub fn recordings(&self, room: &str) -> Result<Vec<RecordingInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, room, state, started_at_ms, started_by, stopped_at_ms, stopped_by,
                    duration_ms, files, message
             FROM recordings WHERE room = ?1 ORDER BY id DESC LIMIT 200",
        )?;
        let rows = stmt
            .query_map(params![room], recording_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Deletes `room`'s finished recording `id` and its files; false when the room has no such
    /// recording (or it is still running or being made).
    pub fn delete_recording(&self, room: &str, id: i64) -> Result<bool> {
        let deleted = self.conn().execute(
            "DELETE FROM recordings WHERE id = ?1 AND room = ?2
             AND state NOT IN ('recording', 'processing')",
            params![id, room],
        )? > 0;
        if let (true, Some(dir)) = (deleted, &self.dir) {
            if let Err(e) = std::fs::remove_dir_all(recording_dir(dir, id)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(recording = id, "files not removed: {e}");
                }
            }
        }
        Ok(deleted)
    }

    /// The room a recording belongs to.
    pub fn recording_room(&self, id: i64) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT room FROM recordings WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Recordings that were running or being made when the server stopped: `(id, room, started_at_ms)`.
    pub fn unfinished_recordings(&self) -> Result<Vec<(i64, String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, room, started_at_ms FROM recordings
             WHERE state IN ('recording', 'processing') ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn last_recording_id(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT COALESCE(MAX(id), 0) FROM recordings", [], |r| {
                r.get(0)
            })?)
    }

    /// The highest invite id ever used (revoked ones too), so new ids never repeat.
    pub fn last_invite_id(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT COALESCE(MAX(id), 0) FROM invites", [], |r| r.get(0))?)
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT value FROM settings WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn add_room(&self, name: &str, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO rooms (name, created_at_ms) VALUES (?1, ?2)",
            params![name, now_ms],
        )?;
        Ok(())
    }

    /// Deletes chat messages sent before `before_ms`; returns how many.
    pub fn prune_chat(&self, before_ms: i64) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM chat_messages WHERE sent_at_ms < ?1",
            params![before_ms],
        )?)
    }

    /// Stores a message and returns it with its id. Returns only once it is durable.
    pub fn add_chat(
        &self,
        room: &str,
        author_id: u64,
        author: &str,
        text: &str,
        sent_at_ms: i64,
    ) -> Result<ChatMessage> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO chat_messages (room, author_id, author, text, sent_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![room, author_id as i64, author, text, sent_at_ms],
        )?;
        Ok(ChatMessage {
            id: conn.last_insert_rowid(),
            room: room.to_string(),
            author_id,
            author: author.to_string(),
            text: text.to_string(),
            sent_at_ms,
        })
    }

    /// Up to `limit` messages of `room` older than `before`, newest first, and whether older ones exist.
    pub fn history(
        &self,
        room: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool)> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, room, author_id, author, text, sent_at_ms FROM chat_messages
             WHERE room = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )?;
        let mut messages = stmt
            .query_map(
                params![room, before.unwrap_or(i64::MAX), i64::from(limit) + 1],
                |r| {
                    Ok(ChatMessage {
                        id: r.get(0)?,
                        room: r.get(1)?,
                        author_id: r.get::<_, i64>(2)? as u64,
                        author: r.get(3)?,
                        text: r.get(4)?,
                        sent_at_ms: r.get(5)?,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = messages.len() > limit as usize;
        messages.truncate(limit as usize);
        Ok((messages, has_more))
    }

    #[cfg(test)]
    fn in_memory() -> Store {
        Store::with_connection(Connection::open_in_memory().unwrap()).unwrap()
    }

    #[cfg(test)]
    fn message_count(&self) -> i64 {
        self.conn()
            .query_row("SELECT COUNT(*) FROM chat_messages", [], |r| r.get(0))
            .unwrap()
    }
}

/// A `recordings` row selected as `id, room, state, started_at_ms, started_by, stopped_at_ms,
/// stopped_by, duration_ms, files, message` (without download links).
fn recording_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordingInfo> {
    let state: String = r.get(2)?;
    let files: String = r.get(8)?;
    Ok(RecordingInfo {
        recording_id: r.get(0)?,
        room: r.get(1)?,
        state: RecordingState::parse(&state).unwrap_or(RecordingState::Failed),
        started_at_ms: r.get(3)?,
        started_by: r.get(4)?,
        stopped_at_ms: r.get(5)?,
        stopped_by: r.get(6)?,
        duration_ms: r.get(7)?,
        files: serde_json::from_str::<Vec<RecordingFile>>(&files).unwrap_or_default(),
        message: r.get(9)?,
        url_expires_at_ms: None,
    })
}

fn studio_role_str(role: StudioRole) -> &'static str {
    match role {
        StudioRole::Producer => "producer",
        StudioRole::Artist => "artist",
        StudioRole::Listener => "listener",
    }
}

fn studio_role_parse(s: &str) -> Option<StudioRole> {
    match s {
        "producer" => Some(StudioRole::Producer),
        "artist" => Some(StudioRole::Artist),
        "listener" => Some(StudioRole::Listener),
        _ => None,
    }
}

/// The wall clock in Unix ms, fractional: the server clock studio sessions are placed on.
pub fn now_ms_precise() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_pages_newest_first_with_exact_boundaries() {
        let store = Store::in_memory();
        for i in 1..=250 {
            store.add_chat("a", 1, "Ann", &format!("m{i}"), i).unwrap();
            store
                .add_chat("b", 2, "Bo", &format!("other{i}"), i)
                .unwrap();
        }
        let (page1, more1) = store.history("a", None, 100).unwrap();
        assert_eq!(page1.len(), 100);
        assert!(more1);
        assert_eq!(page1[0].text, "m250");
        assert_eq!(page1[99].text, "m151");
        let (page2, more2) = store.history("a", Some(page1[99].id), 100).unwrap();
        assert_eq!(
            (page2[0].text.as_str(), page2[99].text.as_str(), more2),
            ("m150", "m51", true)
        );
        let (page3, more3) = store.history("a", Some(page2[99].id), 100).unwrap();
        assert_eq!(page3.len(), 50);
        assert!(!more3, "the last page says so");
        assert_eq!(page3[49].text, "m1");
        assert!(page1
            .iter()
            .chain(&page2)
            .chain(&page3)
            .all(|m| m.room == "a"));
        // Exactly a page left: no phantom "more".
        let (exact, more) = store.history("a", Some(page3[0].id + 1), 50).unwrap();
        assert_eq!((exact.len(), more), (50, false));
        assert_eq!(store.message_count(), 500);
    }

    #[test]
    fn retention_deletes_only_older_messages_and_delete_chat_only_that_room() {
        let store = Store::in_memory();
        for t in [10, 20, 30, 40] {
            store.add_chat("a", 1, "Ann", &format!("a{t}"), t).unwrap();
            store.add_chat("b", 2, "Bo", &format!("b{t}"), t).unwrap();
        }
        // Strictly older than the cut: the message at exactly 30 stays.
        assert_eq!(store.prune_chat(30).unwrap(), 4);
        let (left, _) = store.history("a", None, 10).unwrap();
        let texts: Vec<&str> = left.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["a40", "a30"]);
        store
            .write(&StoreWrite::DeleteChat { room: "a".into() }, 50)
            .unwrap();
        assert!(store.history("a", None, 10).unwrap().0.is_empty());
        assert_eq!(store.history("b", None, 10).unwrap().0.len(), 2);
    }

    #[test]
    fn rooms_keep_their_creator_and_last_activity() {
        let store = Store::in_memory();
        let creator: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let create = StoreWrite::CreateRoom {
            name: "made".into(),
            access: Access::Public,
            password_hash: None,
            owner_key: TokenHash::default(),
            creator_addr: Some(creator),
        };
        store.write(&create, 100).unwrap();
        store.add_room("old", 5).unwrap();
        let rooms = store.load_rooms().unwrap();
        assert_eq!(
            (
                rooms[0].name.as_str(),
                rooms[0].creator_addr,
                rooms[0].last_active_ms
            ),
            ("made", Some(creator), 100)
        );
        // A room from before migration 3 is as old as its creation.
        assert_eq!((rooms[1].creator_addr, rooms[1].last_active_ms), (None, 5));
        let active = StoreWrite::RoomActive { room: "old".into() };
        store.write(&active, 900).unwrap();
        assert_eq!(store.load_rooms().unwrap()[1].last_active_ms, 900);
    }

    #[test]
    fn survives_reopen_and_keeps_text_verbatim() {
        let dir = std::env::temp_dir().join(format!("parley-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "<img src=x onerror=alert(1)> & 'quotes' \u{1F600}";
        {
            let store = Store::open(&dir).unwrap();
            store.add_room("band", 1).unwrap();
            store.add_chat("band", 7, "Ann", text, 42).unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.rooms().unwrap(), vec!["band".to_string()]);
        let (msgs, _) = store.history("band", None, 10).unwrap();
        assert_eq!(msgs[0].text, text);
        assert_eq!(msgs[0].sent_at_ms, 42);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
