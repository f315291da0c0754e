//! parley's signalling messages, typed once and shared by the server, the docs and (later) the Rust client.
//!
//! Every message is a JSON object with a `"type"` tag. Requests that can fail carry an optional `id`, which
//! the server echoes in its reply or in the `error` it sends instead. See `docs/protocol.md`.

use serde::{Deserialize, Serialize};

/// Largest signalling message the server reads, in bytes. An SDP answer grows by ~830 bytes per track
/// received, so a room of hundreds of tracks needs a few hundred KiB; chat and names have their own
/// (character) limits.
pub const MAX_MESSAGE_BYTES: usize = 768 * 1024;
/// Room names: 1..=MAX_ROOM_NAME_CHARS characters.
pub const MAX_ROOM_NAME_CHARS: usize = 40;
/// Display names: 1..=MAX_DISPLAY_NAME_CHARS characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 32;
/// Chat messages: at most this many characters (the default; operators may change it).
pub const MAX_CHAT_CHARS: usize = 4000;
/// Chat history pages hold at most this many messages.
pub const MAX_HISTORY_PAGE: u32 = 100;
/// Pages of the room list hold at most this many rooms.
pub const MAX_ROOMS_PAGE: u32 = 100;
/// Owner keys a `create_room` may carry as proof.
pub const MAX_OWNER_PROOFS: usize = 32;
/// The most `max_participants` may be: each member may publish three tracks, and the server's offer
/// to everyone else (about 2.5 KB of SDP per publisher) must stay well inside the message limit.
pub const MAX_PARTICIPANTS_LIMIT: u16 = 250;

/// The parser's detail in a `bad_message` error is cut at this many characters. It may quote the
/// message (a string where a number belongs), escaped: uncut, a message of 768 KiB got a reply of
/// 2.7 MiB (found by `cargo fuzz`, see fuzz/).
const MAX_ERROR_DETAIL_CHARS: usize = 400;

/// Request id chosen by the client, echoed in the reply.
pub type RequestId = u64;
/// Server-assigned id of one participant (one browser tab in one room).
pub type ParticipantId = u64;

/// What a participant shares with the room about their own devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaState {
    /// Microphone off: the server forwards none of their audio.
    pub mic_muted: bool,
    /// Speaker off: they hear nothing (played locally; shown to others).
    pub deafened: bool,
    /// Camera off: the server forwards none of their camera's video.
    pub camera_off: bool,
    /// Sharing a screen or window: the server forwards their screen track (their second video
    /// m-line) only while this is true, whatever `camera_off` says.
    pub screen_sharing: bool,
}

/// A partial update of [`MediaState`]: absent fields keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaStateChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mic_muted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deafened: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_off: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen_sharing: Option<bool>,
}

impl MediaState {
    pub fn apply(&mut self, change: MediaStateChange) {
        if let Some(v) = change.mic_muted {
            self.mic_muted = v;
        }
        if let Some(v) = change.deafened {
            self.deafened = v;
        }
        if let Some(v) = change.camera_off {
            self.camera_off = v;
        }
        if let Some(v) = change.screen_sharing {
            self.screen_sharing = v;
        }
    }
}

/// How someone takes part in a room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Hears, sees, speaks and is shown as a tile.
    #[default]
    Member,
    /// Receive-only (a wall screen): sees and hears everyone, sends nothing, shown as a viewer, not a tile.
    Viewer,
}

/// Someone's part in a room in studio mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudioRole {
    /// Assigns roles, drops markers, cuts segments, starts every artist's take, exports.
    Producer,
    /// Records lossless takes of their own microphone.
    Artist,
    /// Hears and sees everything, publishes nothing; listed (unlike a viewer).
    Listener,
}

/// One person in a room as everyone else sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub name: String,
    #[serde(flatten)]
    pub state: MediaState,
    #[serde(default)]
    pub role: Role,
    /// An owner of the room (may change its settings, kick, invite).
    #[serde(default, skip_serializing_if = "is_false")]
    pub owner: bool,
    /// Their studio role, in a room in studio mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub studio_role: Option<StudioRole>,
    /// Their connection dropped: the server keeps their place for a few seconds while their client
    /// comes back (`join` with `resume`); they leave if it does not.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reconnecting: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Who may enter a room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Listed; anyone may join.
    #[default]
    Public,
    /// Listed; the password is needed to join.
    Password,
    /// Not listed; only an invite (or an owner key) gets in.
    Private,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Password => "password",
            Access::Private => "private",
        }
    }

    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "public" => Some(Access::Public),
            "password" => Some(Access::Password),
            "private" => Some(Access::Private),
            _ => None,
        }
    }
}

/// A room's settings as its members see them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    pub access: Access,
    pub locked: bool,
    pub has_password: bool,
    /// Studio mode: producers, artists and listeners; takes, markers and segments.
    #[serde(default)]
    pub studio: bool,
}

/// An invite as owners see it; `token` only in `invite_created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteInfo {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub role: Role,
    /// The studio role it gives (in studio mode), fixed when it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub studio_role: Option<StudioRole>,
    /// People it admits; absent: any number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
    pub used: u32,
    pub not_before_ms: i64,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
}

/// One participant's voice level for meters, 0 (silent) to 100 (loudest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub id: ParticipantId,
    pub level: u8,
}

/// A room as the lobby lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub name: String,
    pub participants: usize,
    pub max_participants: usize,
    #[serde(default)]
    pub access: Access,
    #[serde(default)]
    pub locked: bool,
}

/// One chat message as stored and shown. `text` is plain text: clients never interpret it as HTML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Increases with every message on this server: pages are cut by it.
    pub id: i64,
    pub room: String,
    pub author_id: ParticipantId,
    pub author: String,
    pub text: String,
    /// Unix time in milliseconds, from the server's clock.
    pub sent_at_ms: i64,
}

/// Who may create rooms (`--allow-room-creation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomCreation {
    #[default]
    Anyone,
    /// Those who own a room already (they show one of its owner keys), and the admin.
    Owners,
    Admin,
}

impl RoomCreation {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomCreation::Anyone => "anyone",
            RoomCreation::Owners => "owners",
            RoomCreation::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<RoomCreation> {
        match s {
            "anyone" => Some(RoomCreation::Anyone),
            "owners" => Some(RoomCreation::Owners),
            "admin" => Some(RoomCreation::Admin),
            _ => None,
        }
    }
}

/// Server-wide limits. Flags set them at start; the admin changes them with `set_limits`, and such
/// changes are kept (they outlast restarts and win over the flags).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerLimits {
    pub room_creation: RoomCreation,
    /// Rooms on the server, in all.
    pub max_rooms: u32,
    /// Rooms that people from one address have created and that still exist.
    pub max_rooms_per_address: u32,
    /// An empty room is deleted (with its chat) after this many seconds without anyone in it; 0:
    /// never. The default room never expires.
    pub room_idle_expiry_s: u64,
    /// People in one room (viewers have as many places again).
    pub max_participants: u16,
    /// Chat messages per second and burst, for each participant.
    pub chat_rate: f64,
    pub chat_burst: f64,
    /// Chat messages per second and burst, for all participants from one address together.
    pub chat_rate_per_address: f64,
    pub chat_burst_per_address: f64,
    /// Chat messages older than this many days are deleted; 0: kept for ever.
    pub chat_retention_days: f64,
}

impl ServerLimits {
    /// The ranges each limit must be in (the same for flags and for `set_limits`).
    pub fn validate(&self) -> Result<(), String> {
        fn range(name: &str, v: f64, lo: f64, hi: f64) -> Result<(), String> {
            if v.is_finite() && v >= lo && v <= hi {
                Ok(())
            } else {
                Err(format!("{name} must be from {lo} to {hi}"))
            }
        }
        range("max_rooms", self.max_rooms as f64, 1.0, 1e6)?;
        range(
            "max_rooms_per_address",
            self.max_rooms_per_address as f64,
            1.0,
            1e6,
        )?;
        range(
            "room_idle_expiry_s",
            self.room_idle_expiry_s as f64,
            0.0,
            10.0 * 365.0 * 86400.0,
        )?;
        range(
            "max_participants",
            f64::from(self.max_participants),
            1.0,
            MAX_PARTICIPANTS_LIMIT as f64,
        )?;
        range("chat_rate", self.chat_rate, 0.01, 1000.0)?;
        range("chat_burst", self.chat_burst, 1.0, 10_000.0)?;
        range(
            "chat_rate_per_address",
            self.chat_rate_per_address,
            0.01,
            10_000.0,
        )?;
        range(
            "chat_burst_per_address",
            self.chat_burst_per_address,
            1.0,
            100_000.0,
        )?;
        range(
            "chat_retention_days",
            self.chat_retention_days,
            0.0,
            36_500.0,
        )?;
        Ok(())
    }

    /// These limits with `change` applied (not yet validated).
    pub fn with(mut self, change: &LimitsChange) -> ServerLimits {
        macro_rules! apply {
            ($($f:ident),*) => { $( if let Some(v) = change.$f { self.$f = v; } )* };
        }
        apply!(
            room_creation,
            max_rooms,
            max_rooms_per_address,
            room_idle_expiry_s,
            max_participants,
            chat_rate,
            chat_burst,
            chat_rate_per_address,
            chat_burst_per_address,
            chat_retention_days
        );
        self
    }
}

/// Some of the [`ServerLimits`]; absent fields stay as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_creation: Option<RoomCreation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rooms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rooms_per_address: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_idle_expiry_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_burst: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_rate_per_address: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_burst_per_address: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_retention_days: Option<f64>,
}

impl LimitsChange {
    /// `self` followed by `later` (later values win).
    pub fn then(mut self, later: &LimitsChange) -> LimitsChange {
        macro_rules! merge {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        merge!(
            room_creation,
            max_rooms,
            max_rooms_per_address,
            room_idle_expiry_s,
            max_participants,
            chat_rate,
            chat_burst,
            chat_rate_per_address,
            chat_burst_per_address,
            chat_retention_days
        );
        self
    }
}

/// The recording running in a room, as everyone in it sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingNow {
    pub recording_id: i64,
    pub started_at_ms: i64,
    pub started_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    Recording,
    /// Stopped; the files are being made.
    Processing,
    Ready,
    /// The server stopped while it ran: made from what was on disk (at most the last second lost).
    Interrupted,
    /// Nothing usable could be made (the message says why).
    Failed,
}

impl RecordingState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Recording => "recording",
            RecordingState::Processing => "processing",
            RecordingState::Ready => "ready",
            RecordingState::Interrupted => "interrupted",
            RecordingState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RecordingState> {
        [
            RecordingState::Recording,
            RecordingState::Processing,
            RecordingState::Ready,
            RecordingState::Interrupted,
            RecordingState::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// One file of a recording, with a link to download it (valid for a while).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingFile {
    /// The file's name on the server (made by the server: `mix.ogg`, `p12-audio.ogg`, `p12.webm`, …).
    pub name: String,
    /// `mix` (everyone, denoised), `track` (one person's audio as sent), `video` (one person's camera
    /// with their audio).
    pub kind: String,
    /// `ogg`, `wav`, `flac`, `webm`.
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<ParticipantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_name: Option<String>,
    pub bytes: u64,
    /// A path on this server (`/api/recordings/…`) that downloads it until `url_expires_at_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A recording of a room as its members list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingInfo {
    pub recording_id: i64,
    pub room: String,
    pub state: RecordingState,
    pub started_at_ms: i64,
    pub started_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(default)]
    pub files: Vec<RecordingFile>,
    /// Why it failed or was cut short, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_expires_at_ms: Option<i64>,
}

impl RecordingInfo {
    /// A recording of `room` in `state`, with nothing known yet but its start.
    pub fn new(recording_id: i64, room: String, state: RecordingState, started_at_ms: i64) -> Self {
        RecordingInfo {
            recording_id,
            room,
            state,
            started_at_ms,
            started_by: String::new(),
            stopped_at_ms: None,
            stopped_by: None,
            duration_ms: None,
            files: Vec::new(),
            message: None,
            url_expires_at_ms: None,
        }
    }
}

/// Longest marker or segment label, in characters.
pub const MAX_STUDIO_LABEL_CHARS: usize = 100;

/// A studio session: from when a room goes into studio mode until it leaves it or empties. Its
/// markers, segments and takes are placed on the server's clock (Unix ms, fractional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudioSession {
    pub session_id: i64,
    pub started_at_ms: i64,
    /// The room recording it started (voice-quality playback and the export's mix and voices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<i64>,
}

/// A room's studio session with what it holds (the `studio` message).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StudioState {
    /// None: the room is not (or no longer) in a studio session.
    pub session: Option<StudioSession>,
    pub markers: Vec<Marker>,
    pub segments: Vec<Segment>,
    pub takes: Vec<TakeInfo>,
    /// A producer asked every artist to record (`record_all_artists`): an artist who joins starts a
    /// take.
    #[serde(default)]
    pub record_all: bool,
}

/// A point on the session's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub marker_id: i64,
    /// Server time, Unix ms.
    pub at_ms: f64,
    pub label: String,
    /// The producer who set it.
    pub by: String,
}

/// A span of the session's timeline; open (no `end_ms`) while the producer is still cutting it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub segment_id: i64,
    pub start_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<f64>,
    pub label: String,
    pub by: String,
    /// A signed link to the segment's export (a zip of every track cut to it), once it has an end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_url: Option<String>,
    /// Once it has an end: signed links that play one track cut to it in the page (a WAV), the room
    /// recording's mix first (when the session has one), then each take of the session that overlaps it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub playback: Vec<SegmentTrack>,
}

/// One track of a segment to play (`Segment::playback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentTrack {
    /// `mix` (the room recording's, voice quality) or `take-<take_id>` (a lossless take).
    pub track: String,
    /// For people: `Mix`, or the take's artist.
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take_id: Option<i64>,
    /// `/api/segments/<segment_id>/play/<track>.wav?exp=…&sig=…`.
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TakeState {
    /// Chunks are arriving (or the take has not ended yet).
    Uploading,
    /// Every chunk arrived and the take's files are made.
    Complete,
    /// Its artist left before ending it: what arrived is kept, and the rest may still come.
    Incomplete,
    Failed,
}

/// An artist's lossless take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TakeInfo {
    pub take_id: i64,
    pub participant_id: ParticipantId,
    pub name: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// Server time (Unix ms) of its first sample.
    pub started_at_ms: f64,
    pub state: TakeState,
    /// Frames (samples per channel) stored so far.
    pub received_samples: u64,
    /// Frames in the whole take, once it has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_samples: Option<u64>,
    /// The made files (WAV float, FLAC 24-bit) with signed links, once complete.
    #[serde(default)]
    pub files: Vec<RecordingFile>,
}

/// Proof that the sender owns a room: one of its owner keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerKeyProof {
    pub room: String,
    pub key: String,
}

/// A room as the admin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminRoom {
    pub name: String,
    pub settings: RoomSettings,
    pub participants: Vec<AdminParticipant>,
    /// The address the room was created from (none for the default room and older rooms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Empty since (Unix ms); absent while anyone is in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since_ms: Option<i64>,
    /// The server's default room (never expires).
    #[serde(default)]
    pub default: bool,
}

/// Someone in a room, as the admin sees them: with their address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminParticipant {
    #[serde(flatten)]
    pub participant: ParticipantInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Ask for a page of the room list (by name, those after `after`); answered by `rooms`.
    ListRooms {
        #[serde(default)]
        id: Option<RequestId>,
        #[serde(default)]
        after: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Create an empty room; answered by `room_created` (with the creator's owner key).
    CreateRoom {
        #[serde(default)]
        id: Option<RequestId>,
        room: String,
        #[serde(default)]
        access: Access,
        #[serde(default)]
        password: Option<String>,
        /// Owner keys of rooms the sender owns: where only owners may create rooms, one valid key
        /// is enough (at most [`MAX_OWNER_PROOFS`] are looked at).
        #[serde(default)]
        owner_keys: Vec<OwnerKeyProof>,
    },
    /// Enter a room; answered by `joined`. The client then sends its `offer`.
    Join {
        #[serde(default)]
        id: Option<RequestId>,
        room: String,
        name: String,
        #[serde(default)]
        state: MediaState,
        #[serde(default)]
        role: Role,
        #[serde(default, flatten)]
        credentials: Credentials,
        /// The `resume_token` of an earlier `joined` in this room: come back as that participant (same
        /// id, name and roles) if the server still keeps their place.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<String>,
        /// The server sends the first `offer` (right after `joined`, with recvonly m-lines for this
        /// participant's microphone, camera and screen share first) and the client answers it: one
        /// offer/answer for the whole call instead of the client's offer and then the server's.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        server_offer: bool,
    },
    /// Leave the current room; answered by `left`.
    Leave {
        #[serde(default)]
        id: Option<RequestId>,
    },
    /// The client's SDP offer (its own tracks); answered by `answer` (with the same `id`).
    Offer {
        #[serde(default)]
        id: Option<RequestId>,
        sdp: String,
    },
    /// The client's answer to a server `offer` (other participants' tracks). Nothing is sent back
    /// unless it cannot be used (an `error` with its `id`).
    Answer {
        #[serde(default)]
        id: Option<RequestId>,
        sdp: String,
    },
    /// Say something in your room; everyone there (you too, with your `id`) gets `chat`.
    ChatSend {
        #[serde(default)]
        id: Option<RequestId>,
        text: String,
    },
    /// Your room's messages older than `before` (a message id; newest when absent), newest first;
    /// answered by `chat_history`.
    ChatHistory {
        #[serde(default)]
        id: Option<RequestId>,
        #[serde(default)]
        before: Option<i64>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Change mic/deafen/camera/screen-sharing flags; everyone in the room gets `participant_updated`.
    SetState {
        #[serde(default)]
        id: Option<RequestId>,
        #[serde(flatten)]
        change: MediaStateChange,
    },
    /// Owners: change the room's access, password or lock.
    RoomSettings {
        #[serde(default)]
        id: Option<RequestId>,
        #[serde(default)]
        access: Option<Access>,
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        locked: Option<bool>,
        /// Studio mode on or off.
        #[serde(default)]
        studio: Option<bool>,
    },
    /// Owners: remove someone from the room (and keep their address out for a while).
    Kick {
        #[serde(default)]
        id: Option<RequestId>,
        participant_id: ParticipantId,
    },
    /// Owners: turn someone's microphone off.
    Mute {
        #[serde(default)]
        id: Option<RequestId>,
        participant_id: ParticipantId,
    },
    /// Owners: make someone an owner, or stop them (or yourself) being one.
    SetOwner {
        #[serde(default)]
        id: Option<RequestId>,
        participant_id: ParticipantId,
        owner: bool,
    },
    /// Owners: a link that admits `uses` people (any number when absent) with `role`.
    CreateInvite {
        #[serde(default)]
        id: Option<RequestId>,
        #[serde(default)]
        uses: Option<u32>,
        #[serde(default)]
        expires_in_s: Option<u64>,
        #[serde(default)]
        not_before_ms: Option<i64>,
        #[serde(default)]
        role: Role,
        /// The studio role the invite gives (the server keeps it: an edited link cannot change it).
        #[serde(default)]
        studio_role: Option<StudioRole>,
    },
    /// Owners: the room's invites (without tokens).
    ListInvites {
        #[serde(default)]
        id: Option<RequestId>,
    },
    /// Owners: no more joins with this invite; with `kick`, those who came by it leave.
    RevokeInvite {
        #[serde(default)]
        id: Option<RequestId>,
        invite_id: i64,
        #[serde(default)]
        kick: bool,
    },
    /// Owners (of their room) and the admin (of any): delete the room and its chat. `room` confirms.
    DeleteRoom {
        #[serde(default)]
        id: Option<RequestId>,
        room: String,
    },
    /// Become the admin with the admin token.
    Admin {
        #[serde(default)]
        id: Option<RequestId>,
        token: String,
    },
    /// Members: start recording the room for everyone in it; answered by `recording_state`.
    RecordingStart {
        #[serde(default)]
        id: Option<RequestId>,
    },
    /// Members: stop the room's recording; answered by `recording_state` (with `recording: null`).
    RecordingStop {
        #[serde(default)]
        id: Option<RequestId>,
    },
    /// Owners of the room (and the admin, in it): delete one of the room's finished recordings and its
    /// files; answered by `ok`, and everyone in the room gets `recordings_deleted`.
    DeleteRecording {
        #[serde(default)]
        id: Option<RequestId>,
        recording_id: i64,
    },
    /// Members: the room's recordings, newest first, with download links; answered by `recordings`.
    ListRecordings {
        #[serde(default)]
        id: Option<RequestId>,
    },
    /// The server's clock, for placing takes and markers; answered by `clock`. Any connection.
    ClockSync {
        #[serde(default)]
        id: Option<RequestId>,
        /// The client's clock when it sent this (echoed).
        client_ms: f64,
    },
    /// Producers (studio mode): give someone a studio role; answered by `ok`, everyone gets
    /// `participant_updated`.
    SetStudioRole {
        #[serde(default)]
        id: Option<RequestId>,
        participant_id: ParticipantId,
        studio_role: StudioRole,
    },
    /// Artists and producers (studio mode): begin a lossless take; answered by `take_started` with
    /// the token its chunks are uploaded with (HTTP).
    StartTake {
        #[serde(default)]
        id: Option<RequestId>,
        sample_rate: u32,
        channels: u16,
        /// The client's estimate of the server time (Unix ms) of the take's first sample.
        first_sample_server_ms: f64,
    },
    /// Producers: every artist in the room starts (`on`) or ends a take; answered by `ok`, each
    /// artist gets `take_requested`.
    RecordAllArtists {
        #[serde(default)]
        id: Option<RequestId>,
        on: bool,
    },
    /// Producers: a marker at `at_ms` (server time; now when absent); everyone gets `marker_added`.
    AddMarker {
        #[serde(default)]
        id: Option<RequestId>,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        at_ms: Option<f64>,
    },
    /// Producers: everyone gets `marker_deleted`.
    DeleteMarker {
        #[serde(default)]
        id: Option<RequestId>,
        marker_id: i64,
    },
    /// Producers: a segment from `start_ms` (now when absent) to `end_ms` (open when absent);
    /// everyone gets `segment_updated`.
    AddSegment {
        #[serde(default)]
        id: Option<RequestId>,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        start_ms: Option<f64>,
        #[serde(default)]
        end_ms: Option<f64>,
    },
    /// Producers: close an open segment at `end_ms` (now when absent); everyone gets
    /// `segment_updated`.
    EndSegment {
        #[serde(default)]
        id: Option<RequestId>,
        segment_id: i64,
        #[serde(default)]
        end_ms: Option<f64>,
    },
    /// Producers: everyone gets `segment_deleted`.
    DeleteSegment {
        #[serde(default)]
        id: Option<RequestId>,
        segment_id: i64,
    },
    /// Admin: a page of every room (private ones too) with who is in it and their addresses, and
    /// the server's limits; answered by `admin_overview`.
    AdminOverview {
        #[serde(default)]
        id: Option<RequestId>,
        #[serde(default)]
        after: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Admin: everyone in `room` leaves it (`room_closed`, then `left`); the room stays.
    CloseRoom {
        #[serde(default)]
        id: Option<RequestId>,
        room: String,
    },
    /// Admin: delete `room`'s chat history; its members get `chat_cleared`.
    DeleteChat {
        #[serde(default)]
        id: Option<RequestId>,
        room: String,
    },
    /// Admin: delete `room`'s recordings and their files (not one running or being made); its members
    /// get `recordings_deleted`.
    DeleteRecordings {
        #[serde(default)]
        id: Option<RequestId>,
        room: String,
    },
    /// Admin: change server-wide limits; answered by `limits`.
    SetLimits {
        #[serde(default)]
        id: Option<RequestId>,
        limits: LimitsChange,
    },
}

/// What a `join` may present to get in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_key: Option<String>,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// First message on every connection.
    Welcome {
        server_version: String,
        max_participants: usize,
        /// Longest chat message this server accepts, in characters.
        max_chat_chars: usize,
        /// Who may create rooms here.
        #[serde(default)]
        room_creation: RoomCreation,
    },
    /// A page of the room list, by name: the reply to `list_rooms` (with its id), and the first page
    /// on connecting (without). Changes after it come as `room_added`, `room_updated`, `room_removed`.
    Rooms {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        rooms: Vec<RoomSummary>,
        /// More rooms follow the last one of this page: ask with `after`.
        #[serde(default)]
        has_more: bool,
    },
    /// A listed room was created.
    RoomAdded {
        room: RoomSummary,
    },
    /// A listed room's count changed.
    RoomUpdated {
        room: RoomSummary,
    },
    /// A listed room is gone.
    RoomRemoved {
        room: String,
    },
    RoomCreated {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: RoomSummary,
        /// The creator's owner key: sent with a later `join`, it makes them an owner again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner_key: Option<String>,
    },
    /// You are in `room` as participant `you` called `name`; `participants` are the others already there.
    Joined {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: String,
        you: ParticipantId,
        name: String,
        participants: Vec<ParticipantInfo>,
        /// Who is speaking now, if anyone has yet.
        active_speaker: Option<ParticipantId>,
        /// You are an owner of the room.
        #[serde(default)]
        owner: bool,
        #[serde(default)]
        settings: RoomSettings,
        /// The room is being recorded (people must know): by whom, since when.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recording: Option<Box<RecordingNow>>,
        /// Your studio role, in a room in studio mode.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        studio_role: Option<StudioRole>,
        /// Send it as `join`'s `resume` after a dropped connection to come back as the same
        /// participant (each `joined` gives a new one; it is good while you are in the room and for
        /// a few seconds after your connection drops).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
        /// This join came back as the participant the `resume` token named (its place was kept).
        #[serde(default, skip_serializing_if = "is_false")]
        resumed: bool,
    },
    /// The dominant speaker changed (`null`: nobody, e.g. they muted).
    ActiveSpeaker {
        participant_id: Option<ParticipantId>,
    },
    /// Voice levels of the room, at most 10 times a second while anyone makes a sound.
    Levels {
        levels: Vec<Level>,
    },
    Left {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: String,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: ParticipantId,
    },
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    /// A reply to `set_state` with your resulting flags; without `id` and with `by` when an owner
    /// muted you.
    StateSet {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        state: MediaState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<ParticipantId>,
    },
    /// The room's settings: to everyone in it when they change, and the reply to `room_settings`.
    RoomSettings {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        settings: RoomSettings,
    },
    /// An owner's request was done.
    Ok {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    /// You were removed from `room` by `by`; `left` follows.
    Kicked {
        room: String,
        by: String,
    },
    /// You were made an owner of `room`: keep `key` for later joins.
    OwnerKey {
        room: String,
        key: String,
    },
    InviteCreated {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        invite: InviteInfo,
    },
    Invites {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        invites: Vec<InviteInfo>,
    },
    /// Your room was deleted; `left` follows.
    RoomDeleted {
        room: String,
    },
    /// This connection is the admin now.
    Admin {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    /// The room's recording started or stopped (to everyone in it; with `id` to who asked). `recording`
    /// is the one running, or null.
    RecordingState {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: String,
        recording: Option<Box<RecordingNow>>,
        /// Who stopped the last one (absent: it started, or nobody stopped it: the room emptied,
        /// or it failed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stopped_by: Option<String>,
        /// Why it stopped on its own (e.g. the disk is full).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The reply to `list_recordings`.
    Recordings {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: String,
        recordings: Vec<RecordingInfo>,
    },
    /// One of the room's recordings changed (its files are ready, it failed): to everyone in the room.
    RecordingUpdated {
        recording: Box<RecordingInfo>,
    },
    /// The reply to `admin_overview`: a page of rooms by name (`has_more`: ask again with `after`).
    AdminOverview {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        rooms: Vec<AdminRoom>,
        has_more: bool,
        /// Rooms on the server, connections open, people in rooms.
        total_rooms: usize,
        connections: usize,
        in_rooms: usize,
        limits: Box<ServerLimits>,
    },
    /// The server's limits now: the reply to `set_limits`.
    Limits {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        limits: Box<ServerLimits>,
    },
    /// The admin closed your room; `left` follows.
    RoomClosed {
        room: String,
    },
    /// Your room's recordings were deleted: all those finished (by the admin), or the one
    /// `recording_id` (by an owner). List them again.
    RecordingsDeleted {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recording_id: Option<i64>,
    },
    /// The admin deleted your room's chat history.
    ChatCleared {
        room: String,
    },
    /// A chat message in your room. `id` is set only in the copy sent to its author.
    Chat {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        message: ChatMessage,
    },
    /// A page of history, newest first; `has_more` when older messages exist.
    ChatHistory {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        room: String,
        messages: Vec<ChatMessage>,
        has_more: bool,
    },
    /// The server's answer to the client's offer, with the offer's `id`.
    Answer {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        sdp: String,
    },
    /// A server offer: other participants' tracks came or went. The client replies with `answer`.
    /// Each incoming track's stream id (msid) is the publishing participant's id.
    Offer {
        sdp: String,
    },
    /// The reply to `clock_sync`: the server's clock (Unix ms, fractional) when it answered.
    Clock {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        client_ms: f64,
        server_ms: f64,
    },
    /// The room's studio state: after `joined` in a studio room, and to everyone when studio mode
    /// turns on or off (`session: null`).
    Studio {
        room: String,
        #[serde(flatten)]
        state: Box<StudioState>,
    },
    /// The reply to `start_take`: upload its chunks with `upload_token` (`Authorization: Bearer`).
    TakeStarted {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        take: Box<TakeInfo>,
        upload_token: String,
    },
    /// A take started, progressed (at most once a second), ended or was made: to everyone in the room.
    TakeUpdated {
        take: Box<TakeInfo>,
    },
    /// A producer asks every artist to start (`on`) or end their take.
    TakeRequested {
        on: bool,
        by: String,
    },
    MarkerAdded {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        marker: Marker,
    },
    MarkerDeleted {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        marker_id: i64,
    },
    /// A segment was added or ended.
    SegmentUpdated {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        segment: Box<Segment>,
    },
    SegmentDeleted {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        segment_id: i64,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        code: ErrorCode,
        message: String,
    },
}

/// Machine-readable error codes; `message` says the same for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or not a known message, or missing fields.
    BadMessage,
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    MessageTooLarge,
    InvalidRoomName,
    InvalidName,
    NoSuchRoom,
    RoomExists,
    RoomFull,
    /// Joining while already in a room: leave first.
    AlreadyInRoom,
    /// The request needs a room and the client is in none.
    NotInRoom,
    /// An SDP that could not be used, or sent at the wrong time.
    BadSdp,
    /// Too many messages in a short time.
    RateLimited,
    /// The media connection closed or failed: you have left the room (a `left` follows).
    MediaLost,
    /// A chat message longer than [`MAX_CHAT_CHARS`].
    MessageTooLong,
    /// A chat message with nothing but spaces.
    EmptyMessage,
    /// The room has a password and the join carried none.
    PasswordRequired,
    WrongPassword,
    /// A private room: only an invite gets in.
    InviteRequired,
    /// The invite is unknown, revoked, used up, not yet valid or expired.
    InvalidInvite,
    RoomLocked,
    /// Kicked from this room a moment ago.
    Banned,
    /// Only owners (or the admin) may do that.
    Forbidden,
    /// A password that cannot be set (empty or too long).
    InvalidPassword,
    /// The server or your address has as many rooms as it may.
    TooManyRooms,
    /// A recording is running in this room already.
    RecordingRunning,
    /// No recording is running in this room.
    NotRecording,
    /// The room has no recording with that id.
    NoSuchRecording,
    /// Limits outside their ranges (`set_limits`).
    InvalidLimits,
    /// A studio request in a room that is not in studio mode.
    NotStudio,
    /// A take's sample rate or channels this server does not take.
    InvalidTake,
    /// A marker or segment time outside the session, an end before its start, or a label too long.
    InvalidTime,
    NoSuchMarker,
    NoSuchSegment,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::InvalidRoomName => "invalid_room_name",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::AlreadyInRoom => "already_in_room",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::BadSdp => "bad_sdp",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::MediaLost => "media_lost",
            ErrorCode::MessageTooLong => "message_too_long",
            ErrorCode::EmptyMessage => "empty_message",
            ErrorCode::PasswordRequired => "password_required",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::InviteRequired => "invite_required",
            ErrorCode::InvalidInvite => "invalid_invite",
            ErrorCode::RoomLocked => "room_locked",
            ErrorCode::Banned => "banned",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InvalidPassword => "invalid_password",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RecordingRunning => "recording_running",
            ErrorCode::NotRecording => "not_recording",
            ErrorCode::NoSuchRecording => "no_such_recording",
            ErrorCode::InvalidLimits => "invalid_limits",
            ErrorCode::NotStudio => "not_studio",
            ErrorCode::InvalidTake => "invalid_take",
            ErrorCode::InvalidTime => "invalid_time",
            ErrorCode::NoSuchMarker => "no_such_marker",
            ErrorCode::NoSuchSegment => "no_such_segment",
            ErrorCode::Internal => "internal",
        }
    }
}

impl ServerMessage {
    /// The request this message answers, if it is a reply.
    pub fn reply_id(&self) -> Option<RequestId> {
        match self {
            ServerMessage::Rooms { id, .. }
            | ServerMessage::RoomCreated { id, .. }
            | ServerMessage::Joined { id, .. }
            | ServerMessage::Left { id, .. }
            | ServerMessage::StateSet { id, .. }
            | ServerMessage::RoomSettings { id, .. }
            | ServerMessage::Ok { id }
            | ServerMessage::InviteCreated { id, .. }
            | ServerMessage::Invites { id, .. }
            | ServerMessage::Admin { id }
            | ServerMessage::Chat { id, .. }
            | ServerMessage::ChatHistory { id, .. }
            | ServerMessage::Answer { id, .. }
            | ServerMessage::AdminOverview { id, .. }
            | ServerMessage::Limits { id, .. }
            | ServerMessage::RecordingState { id, .. }
            | ServerMessage::Recordings { id, .. }
            | ServerMessage::Clock { id, .. }
            | ServerMessage::TakeStarted { id, .. }
            | ServerMessage::MarkerAdded { id, .. }
            | ServerMessage::MarkerDeleted { id, .. }
            | ServerMessage::SegmentUpdated { id, .. }
            | ServerMessage::SegmentDeleted { id, .. }
            | ServerMessage::Error { id, .. } => *id,
            _ => None,
        }
    }

    pub fn error(id: Option<RequestId>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            id,
            code,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing these plain types cannot fail (no maps with non-string keys, no custom impls).
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialization failed"}"#.to_string()
        })
    }
}

impl ClientMessage {
    /// Parses one client message, turning every failure into the error the client should get.
    // The error is a whole `ServerMessage` (its largest variant, `joined`, is ~150 bytes): a refused
    // message is rare and sent at once, so boxing it would buy nothing but an indirection.
    #[allow(clippy::result_large_err)]
    pub fn parse(text: &str) -> Result<ClientMessage, ServerMessage> {
        if text.len() > MAX_MESSAGE_BYTES {
            // The id still comes back, so the request does not hang (unknown fields are skipped).
            #[derive(Deserialize)]
            struct IdOnly {
                id: Option<RequestId>,
            }
            let id = serde_json::from_str::<IdOnly>(text).ok().and_then(|m| m.id);
            return Err(ServerMessage::error(
                id,
                ErrorCode::MessageTooLarge,
                format!("messages are limited to {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        serde_json::from_str(text).map_err(|e| {
            // Echo the id when the envelope was fine but the body was not.
            let id = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_u64()));
            let mut detail = e.to_string();
            if let Some((at, _)) = detail.char_indices().nth(MAX_ERROR_DETAIL_CHARS) {
                detail.truncate(at);
                detail.push('…');
            }
            ServerMessage::error(
                id,
                ErrorCode::BadMessage,
                format!("unreadable message: {detail}"),
            )
        })
    }

    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            ClientMessage::ListRooms { id, .. }
            | ClientMessage::CreateRoom { id, .. }
            | ClientMessage::Join { id, .. }
            | ClientMessage::Leave { id }
            | ClientMessage::SetState { id, .. }
            | ClientMessage::ChatSend { id, .. }
            | ClientMessage::ChatHistory { id, .. }
            | ClientMessage::Offer { id, .. }
            | ClientMessage::Answer { id, .. }
            | ClientMessage::RoomSettings { id, .. }
            | ClientMessage::Kick { id, .. }
            | ClientMessage::Mute { id, .. }
            | ClientMessage::SetOwner { id, .. }
            | ClientMessage::CreateInvite { id, .. }
            | ClientMessage::ListInvites { id }
            | ClientMessage::RevokeInvite { id, .. }
            | ClientMessage::DeleteRoom { id, .. }
            | ClientMessage::Admin { id, .. }
            | ClientMessage::AdminOverview { id, .. }
            | ClientMessage::CloseRoom { id, .. }
            | ClientMessage::DeleteChat { id, .. }
            | ClientMessage::DeleteRecordings { id, .. }
            | ClientMessage::SetLimits { id, .. }
            | ClientMessage::RecordingStart { id }
            | ClientMessage::RecordingStop { id }
            | ClientMessage::DeleteRecording { id, .. }
            | ClientMessage::ListRecordings { id }
            | ClientMessage::ClockSync { id, .. }
            | ClientMessage::SetStudioRole { id, .. }
            | ClientMessage::StartTake { id, .. }
            | ClientMessage::RecordAllArtists { id, .. }
            | ClientMessage::AddMarker { id, .. }
            | ClientMessage::DeleteMarker { id, .. }
            | ClientMessage::AddSegment { id, .. }
            | ClientMessage::EndSegment { id, .. }
            | ClientMessage::DeleteSegment { id, .. } => *id,
        }
    }
}

/// Checks a room name: 1–40 characters of letters, digits, space, `-`, `_` and `.`, not blank at
/// either end. Returns the name as it will be used.
pub fn validate_room_name(name: &str) -> Result<&str, &'static str> {
    let count = name.chars().count();
    if count == 0 || count > MAX_ROOM_NAME_CHARS {
        return Err("room names are 1 to 40 characters");
    }
    if name.trim() != name {
        return Err("room names cannot start or end with a space");
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
    {
        return Err("room names may contain letters, digits, spaces, '-', '_' and '.'");
    }
    // Letters that show as blanks (U+3164 HANGUL FILLER is one) would make an invisible room.
    if name.chars().all(is_invisible) {
        return Err("room names need at least one visible character");
    }
    Ok(name)
}

/// Characters that reorder the text around them: a name with one can make "Ann" look like "nnA" or
/// hide what follows it.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that show as nothing (or as a blank): a name made only of them looks empty.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}'
                | '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{3164}'
                | '\u{FFA0}'
                | '\u{2800}'
                | '\u{180E}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
}

/// Checks a display name: 1–32 characters, no control characters, no bidirectional overrides, not
/// only invisible characters. Surrounding spaces are trimmed.
pub fn validate_display_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    let count = name.chars().count();
    if count == 0 || count > MAX_DISPLAY_NAME_CHARS {
        return Err("names are 1 to 32 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("names cannot contain control characters");
    }
    if name.chars().any(is_bidi_control) {
        return Err("names cannot contain text-direction controls");
    }
    if name.chars().all(is_invisible) {
        return Err("names need at least one visible character");
    }
    Ok(name)
}

/// Checks a chat message: not blank, at most `max_chars` characters. Keeps the text as written.
pub fn validate_chat_text(text: &str, max_chars: usize) -> Result<&str, (ErrorCode, String)> {
    if text.trim().is_empty() {
        return Err((
            ErrorCode::EmptyMessage,
            "empty messages are not sent".into(),
        ));
    }
    let count = text.chars().count();
    if count > max_chars {
        return Err((
            ErrorCode::MessageTooLong,
            format!("messages are limited to {max_chars} characters (this one has {count})"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_join_with_defaults() {
        let m =
            ClientMessage::parse(r#"{"type":"join","id":7,"room":"band","name":"Ann"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Join {
                id: Some(7),
                room: "band".into(),
                name: "Ann".into(),
                state: MediaState::default(),
                role: Role::Member,
                credentials: Credentials::default(),
                resume: None,
                server_offer: false,
            }
        );
    }

    #[test]
    fn set_state_is_partial() {
        let m = ClientMessage::parse(r#"{"type":"set_state","mic_muted":true}"#).unwrap();
        let ClientMessage::SetState { change, .. } = m else {
            panic!("wrong variant")
        };
        let mut s = MediaState {
            camera_off: true,
            ..Default::default()
        };
        s.apply(change);
        assert!(s.mic_muted && s.camera_off && !s.deafened && !s.screen_sharing);
    }

    #[test]
    fn screen_sharing_is_a_flag_like_the_others() {
        let m =
            ClientMessage::parse(r#"{"type":"set_state","id":4,"screen_sharing":true}"#).unwrap();
        let ClientMessage::SetState { change, .. } = m else {
            panic!("wrong variant")
        };
        assert_eq!(change.screen_sharing, Some(true));
        assert_eq!(change.camera_off, None, "the camera is left as it is");
        let mut s = MediaState {
            camera_off: true,
            ..Default::default()
        };
        s.apply(change);
        assert!(s.screen_sharing && s.camera_off);
        // Sent to everyone with the other flags, false too; absent (older clients) means false.
        let info = ParticipantInfo {
            id: 9,
            name: "Bo".into(),
            state: s,
            role: Role::Member,
            owner: false,
            studio_role: None,
            reconnecting: false,
        };
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["screen_sharing"], true);
        assert_eq!(json["camera_off"], true);
        let off = serde_json::to_value(MediaState::default()).unwrap();
        assert_eq!(off["screen_sharing"], false);
        let old: ParticipantInfo = serde_json::from_str(
            r#"{"id":9,"name":"Bo","mic_muted":true,"deafened":false,"camera_off":false}"#,
        )
        .unwrap();
        assert!(!old.state.screen_sharing && old.state.mic_muted);
        let stop = ClientMessage::parse(r#"{"type":"set_state","screen_sharing":false}"#).unwrap();
        let ClientMessage::SetState { change, .. } = stop else {
            panic!("wrong variant")
        };
        s.apply(change);
        assert!(!s.screen_sharing && s.camera_off);
    }

    #[test]
    fn malformed_and_unknown_are_bad_message_with_id() {
        for text in [
            "{not json",
            r#"{"type":"dance","id":3}"#,
            r#"{"type":"join","id":3}"#,
        ] {
            match ClientMessage::parse(text) {
                Err(ServerMessage::Error { code, .. }) => assert_eq!(code, ErrorCode::BadMessage),
                other => panic!("{text}: {other:?}"),
            }
        }
        let Err(ServerMessage::Error { id, .. }) =
            ClientMessage::parse(r#"{"type":"dance","id":3}"#)
        else {
            panic!()
        };
        assert_eq!(id, Some(3));
    }

    #[test]
    fn oversized_is_refused() {
        let big = format!(
            r#"{{"type":"offer","sdp":"{}","id":77}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        let Err(ServerMessage::Error { code, id, .. }) = ClientMessage::parse(&big) else {
            panic!()
        };
        assert_eq!(code, ErrorCode::MessageTooLarge);
        assert_eq!(id, Some(77), "the error echoes the request id");
    }

    #[test]
    fn bad_message_replies_are_short() {
        // A soft hyphen is 2 bytes here and `\u{ad}` (8 bytes in JSON) where serde quotes it.
        let big = format!(
            r#"{{"type":"kick","id":9,"participant_id":"{}"}}"#,
            "\u{ad}".repeat(300_000)
        );
        let Err(reply @ ServerMessage::Error { code, id, .. }) = ClientMessage::parse(&big) else {
            panic!()
        };
        assert_eq!((code, id), (ErrorCode::BadMessage, Some(9)));
        let json = reply.to_json();
        assert!(json.len() < 2048, "a {} byte reply", json.len());
        assert!(
            json.contains("unreadable message: invalid type: string"),
            "{json}"
        );
    }

    #[test]
    fn room_names() {
        assert!(validate_room_name("band practice-2").is_ok());
        assert!(validate_room_name("Küche").is_ok());
        assert!(validate_room_name("").is_err());
        assert!(validate_room_name(" x").is_err());
        assert!(validate_room_name("a/b").is_err());
        assert!(validate_room_name("<script>").is_err());
        assert!(validate_room_name(&"x".repeat(41)).is_err());
        assert!(validate_display_name("  Ann ").unwrap() == "Ann");
        assert!(validate_display_name("a\u{7}").is_err());
        // Direction overrides and names that show as nothing.
        assert!(validate_display_name("Ann\u{202E}oB").is_err());
        assert!(validate_display_name("\u{2066}Ann").is_err());
        assert!(validate_display_name("\u{3164}\u{3164}").is_err());
        assert!(validate_display_name("\u{200B}\u{FEFF} \u{2800}").is_err());
        assert!(
            validate_display_name("Jo\u{200D}y").is_ok(),
            "invisible inside a visible name"
        );
        assert!(validate_display_name("李雷").is_ok());
        assert!(validate_room_name("\u{3164}\u{3164}").is_err());
        assert!(validate_room_name("a\u{202E}b").is_err());
    }

    #[test]
    fn chat_text_limits() {
        let max = MAX_CHAT_CHARS;
        assert!(validate_chat_text("hi <script>", max).is_ok());
        assert_eq!(
            validate_chat_text(" \n\t", max).unwrap_err().0,
            ErrorCode::EmptyMessage
        );
        assert!(validate_chat_text(&"é".repeat(max), max).is_ok());
        assert_eq!(
            validate_chat_text(&"é".repeat(max + 1), max).unwrap_err().0,
            ErrorCode::MessageTooLong
        );
    }

    #[test]
    fn lone_surrogates_are_refused() {
        let r = ClientMessage::parse(r#"{"type":"chat_send","text":"bad \ud800 text"}"#);
        assert!(
            matches!(
                r,
                Err(ServerMessage::Error {
                    code: ErrorCode::BadMessage,
                    ..
                })
            ),
            "{r:?}"
        );
    }

    #[test]
    fn error_code_names_match_serde() {
        let j = ServerMessage::error(Some(1), ErrorCode::RoomFull, "full").to_json();
        assert!(j.contains(r#""code":"room_full""#), "{j}");
        assert_eq!(ErrorCode::RoomFull.as_str(), "room_full");
    }
}
