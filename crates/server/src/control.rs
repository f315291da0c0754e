//! The control plane: everything about people and rooms, as a sans-IO state machine.
//!
//! It owns the room registry and lobby, membership and roles, chat, and the placement of rooms on
//! media workers, and it alone speaks the wire protocol with clients. It is fed with client messages,
//! media workers' events and store results, and hands back [`Output`]s: messages for sessions,
//! commands for a worker, durable work for the store. The shell (`plane.rs`) moves them.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use parley_proto::{
    validate_chat_text, ChatMessage, ClientMessage, ErrorCode, LimitsChange, MediaStateChange,
    ParticipantId, ParticipantInfo, RequestId, Role, RoomCreation, ServerLimits, ServerMessage,
    MAX_HISTORY_PAGE, MAX_ROOMS_PAGE,
};
use parley_sfu::{MediaCommand, MediaEvent, PeerId, RoomId};
use serde::Serialize;

use crate::rate::TokenBucket;
use crate::rooms::{Refusal, Rooms};
use crate::secret::TokenHash;
use crate::store::{StoreWrite, StoredInvite, StoredRoom};

mod access;
mod limits;
mod recording;
mod resume;
mod studio;

pub use access::{AfterPassword, PasswordJob, PasswordResult, PasswordWork, PendingJoin};
pub use limits::{retention, LIMITS_SETTING};
pub use recording::{RecorderCommand, RecordingOutcome, DOWNLOAD_LINK_LIFE_MS};
pub use studio::{take_info, TakeRequest, MAX_OPEN_TAKES};

/// A signalling connection (one browser tab). When it joins a room, it is the participant of the same id.
pub type SessionId = ParticipantId;

#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub server_version: String,
    /// Longest chat message, in characters.
    pub chat_max_chars: usize,
    /// The limits the flags set (the admin's changes apply over them).
    pub limits: ServerLimits,
    /// The room that always exists (it never expires).
    pub default_room: Option<String>,
    /// Media workers to place rooms on.
    pub workers: usize,
}

impl ControlConfig {
    pub fn new(workers: usize) -> ControlConfig {
        ControlConfig {
            server_version: String::new(),
            chat_max_chars: parley_proto::MAX_CHAT_CHARS,
            limits: ServerLimits {
                room_creation: RoomCreation::Anyone,
                max_rooms: 1000,
                max_rooms_per_address: 20,
                room_idle_expiry_s: 30 * 86_400,
                max_participants: 16,
                chat_rate: 5.0,
                chat_burst: 10.0,
                chat_rate_per_address: 20.0,
                chat_burst_per_address: 40.0,
                chat_retention_days: 0.0,
            },
            default_room: None,
            workers: workers.max(1),
        }
    }
}

/// Durable work for the store; results come back through [`Control::written`],
/// [`Control::chat_saved`] and [`Control::history_loaded`].
#[derive(Debug, Clone, PartialEq)]
pub enum StoreRequest {
    /// A durable change; the store reports back with [`Control::written`] and `then`.
    Write {
        session: SessionId,
        request_id: Option<RequestId>,
        write: StoreWrite,
        then: AfterWrite,
    },
    SaveChat {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        author_id: ParticipantId,
        author: String,
        text: String,
    },
    LoadHistory {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        before: Option<i64>,
        limit: u32,
    },
    /// Chat retention: delete messages sent before this (Unix ms). Nothing is reported back.
    PruneChat { before_ms: i64 },
    /// A room's recordings (metadata), reported with [`Control::recordings_loaded`].
    LoadRecordings {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
    },
    /// Delete one finished recording of `room` (and its files), reported with
    /// [`Control::recording_deleted`].
    DeleteRecording {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        recording: i64,
    },
    /// Read the admin token's hash again (`parley admin reset-token` may have changed it); reported
    /// with [`Control::admin_hash_read`].
    ReadAdminHash,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A message for each of `sessions` (one serialization for all of them).
    Send {
        sessions: Vec<SessionId>,
        message: ServerMessage,
    },
    Media {
        worker: usize,
        command: MediaCommand,
    },
    Store(StoreRequest),
    /// Argon2 work, too slow for this task: done elsewhere, reported with [`Control::password_done`].
    Password(PasswordJob),
    /// For the room recorder.
    Recorder(RecorderCommand),
    /// For the take store (blocking work: done elsewhere, reported with [`Control::take_created`]).
    Takes(TakeRequest),
    /// The connection `socket` is now `participant`'s (it came back with a resume token): what is
    /// sent to `participant` goes to it, and what it sends comes from `participant`. A connection
    /// `participant` had before is closed and ignored from now on.
    Rebind {
        socket: SessionId,
        participant: SessionId,
    },
}

/// What the control plane does once a write is durable.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterWrite {
    RoomCreated {
        name: String,
        owner_key: String,
    },
    Settings {
        room: String,
        settings: parley_proto::RoomSettings,
        password_hash: Option<String>,
    },
    OwnerAdded {
        room: String,
        target: SessionId,
        key: String,
    },
    OwnerRemoved {
        room: String,
        target: SessionId,
    },
    InviteCreated {
        room: String,
        invite: StoredInvite,
        token: String,
    },
    InviteRevoked {
        room: String,
        invite: i64,
        kick: bool,
    },
    RoomDeleted {
        room: String,
    },
    ChatDeleted {
        room: String,
    },
    RecordingsDeleted {
        room: String,
    },
    /// The admin's limits (all their changes so far).
    Limits {
        stored: LimitsChange,
    },
    RecordingStarted {
        room: String,
        recording: i64,
        started_by: String,
        started_at_ms: i64,
    },
    RecordingFinished {
        info: Box<parley_proto::RecordingInfo>,
    },
    StudioSessionStarted {
        room: String,
        session: parley_proto::StudioSession,
    },
    MarkerAdded {
        room: String,
        marker: parley_proto::Marker,
    },
    /// A marker or a segment was deleted.
    MarkDeleted {
        room: String,
        mark: studio::Mark,
    },
    SegmentStored {
        room: String,
        segment: Box<parley_proto::Segment>,
    },
    /// Nothing to tell anyone (an invite's use count).
    Nothing,
}

/// A room as `/api/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RoomStatus {
    pub name: String,
    pub max_participants: usize,
    /// The media worker holding the room while anyone is in it.
    pub worker: Option<usize>,
    pub active_speaker: Option<ParticipantId>,
    pub participants: Vec<ParticipantInfo>,
    pub access: parley_proto::Access,
}

/// Where a room with people in it lives.
#[derive(Debug, Clone, Copy)]
struct Placement {
    id: RoomId,
    worker: usize,
}

/// A session's media connection.
#[derive(Debug, Clone, Copy)]
struct MediaSeat {
    peer: PeerId,
    worker: usize,
    /// The client joined with `server_offer`: it knows to come back with its resume token when the
    /// media connection is lost, so its place is kept then (others leave, as before).
    server_offer: bool,
}

/// What the control plane knows of a connection besides its id.
#[derive(Debug, Clone, Copy, Default)]
struct SessionInfo {
    /// The client's address (none in tests without sockets).
    addr: Option<IpAddr>,
    /// Logged in with the admin token.
    admin: bool,
}

/// How a member got in, for revoking it later.
#[derive(Debug, Clone, Copy, Default)]
struct MemberAccess {
    owner_key: Option<TokenHash>,
    invite: Option<i64>,
    /// The studio role the invite gave.
    studio_role: Option<parley_proto::StudioRole>,
}

/// A room's secrets: only hashes.
#[derive(Debug, Clone, Default)]
struct RoomSecrets {
    password_hash: Option<String>,
    owner_keys: Vec<TokenHash>,
    invites: Vec<StoredInvite>,
}

/// Wrong passwords (or admin tokens) from one address for one room.
#[derive(Debug, Clone, Copy, Default)]
struct Attempts {
    failures: u32,
    blocked_until: Option<Instant>,
}

pub struct Control {
    config: ControlConfig,
    rooms: Rooms,
    sessions: BTreeSet<SessionId>,
    session_info: HashMap<SessionId, SessionInfo>,
    secrets: HashMap<String, RoomSecrets>,
    member_access: HashMap<SessionId, MemberAccess>,
    /// (room, address) → kicked until.
    bans: HashMap<(String, IpAddr), Instant>,
    attempts: HashMap<(Option<IpAddr>, String), Attempts>,
    pending_joins: HashMap<SessionId, PendingJoin>,
    admin_hash: Option<TokenHash>,
    next_invite: i64,
    /// Wall-clock time (Unix ms) of the input being handled: invites expire by it.
    unix_ms: i64,
    /// The same, fractional: the server clock of studio sessions.
    clock_ms: f64,
    /// Rooms in a studio session; rooms whose session is being stored.
    studio: HashMap<String, studio::StudioRoom>,
    starting_studio: std::collections::HashSet<String>,
    next_studio_session: i64,
    next_marker: i64,
    next_segment: i64,
    chat_buckets: HashMap<SessionId, TokenBucket>,
    placements: HashMap<String, Placement>,
    room_names: HashMap<RoomId, String>,
    /// Peers per worker: a new room goes to the least loaded.
    worker_load: Vec<usize>,
    seats: HashMap<SessionId, MediaSeat>,
    /// Live media peers → their session (events for a peer that is gone are stale and ignored).
    peers: HashMap<PeerId, SessionId>,
    speakers: HashMap<String, ParticipantId>,
    next_peer: PeerId,
    next_room: RoomId,
    outputs: Vec<Output>,
    refusals: u64,
    /// The limits in force: the flags' with the admin's changes.
    limits: ServerLimits,
    admin_limits: LimitsChange,
    /// The address each room was created from (rooms per address).
    room_creators: HashMap<String, IpAddr>,
    /// Empty rooms, since when (Unix ms): they expire.
    idle_since: HashMap<String, i64>,
    /// Chat from all of one address's connections.
    address_chat: HashMap<IpAddr, TokenBucket>,
    /// When chat retention runs next (Unix ms).
    next_prune_ms: i64,
    /// When the store is next asked for the admin token's hash (Unix ms).
    next_admin_check_ms: i64,
    /// Recordings running, by room; rooms whose recording is being stored; stopped ones whose
    /// files are being made.
    recordings: HashMap<String, recording::ActiveRecording>,
    starting_recordings: std::collections::HashSet<String>,
    finishing: HashMap<i64, parley_proto::RecordingInfo>,
    next_recording: i64,
    download_key: Option<[u8; 32]>,
    /// Participants whose connection dropped, kept in their rooms for a while.
    held: HashMap<SessionId, resume::Held>,
    /// Resume tokens (hashes) → their participant, and back.
    resume_tokens: HashMap<TokenHash, SessionId>,
    resume_of: HashMap<SessionId, TokenHash>,
}

impl Control {
    pub fn new(config: ControlConfig) -> Control {
        Control {
            rooms: Rooms::new(usize::from(config.limits.max_participants)),
            limits: config.limits,
            admin_limits: LimitsChange::default(),
            room_creators: HashMap::new(),
            idle_since: HashMap::new(),
            address_chat: HashMap::new(),
            next_prune_ms: 0,
            next_admin_check_ms: 0,
            recordings: HashMap::new(),
            starting_recordings: std::collections::HashSet::new(),
            finishing: HashMap::new(),
            next_recording: 1,
            download_key: None,
            held: HashMap::new(),
            resume_tokens: HashMap::new(),
            resume_of: HashMap::new(),
            worker_load: vec![0; config.workers.max(1)],
            config,
            sessions: BTreeSet::new(),
            session_info: HashMap::new(),
            secrets: HashMap::new(),
            member_access: HashMap::new(),
            bans: HashMap::new(),
            attempts: HashMap::new(),
            pending_joins: HashMap::new(),
            admin_hash: None,
            next_invite: 1,
            unix_ms: 0,
            clock_ms: 0.0,
            studio: HashMap::new(),
            starting_studio: std::collections::HashSet::new(),
            next_studio_session: 1,
            next_marker: 1,
            next_segment: 1,
            chat_buckets: HashMap::new(),
            placements: HashMap::new(),
            room_names: HashMap::new(),
            seats: HashMap::new(),
            peers: HashMap::new(),
            speakers: HashMap::new(),
            next_peer: 1,
            next_room: 1,
            outputs: Vec::new(),
            refusals: 0,
        }
    }

    /// Requests answered with an `error`.
    pub fn refusals(&self) -> u64 {
        self.refusals
    }

    /// Peers on each worker.
    #[cfg(test)]
    pub fn worker_load(&self) -> &[usize] {
        &self.worker_load
    }

    /// Creates a room outside of signalling (the default room, tests).
    pub fn create_room(&mut self, name: &str) -> Result<(), Refusal> {
        self.rooms.create(name)?;
        self.idle_since.insert(name.to_string(), self.unix_ms);
        Ok(())
    }

    /// A room loaded from the store, with its settings and secrets.
    pub fn load_room(&mut self, stored: StoredRoom) -> Result<(), Refusal> {
        self.rooms.create(&stored.name)?;
        let settings = parley_proto::RoomSettings {
            access: stored.access,
            locked: stored.locked,
            has_password: stored.password_hash.is_some(),
            studio: stored.studio,
        };
        self.rooms.set_settings(&stored.name, settings);
        self.idle_since
            .insert(stored.name.clone(), stored.last_active_ms);
        if let Some(addr) = stored.creator_addr {
            self.room_creators.insert(stored.name.clone(), addr);
        }
        self.next_invite = self
            .next_invite
            .max(stored.invites.iter().map(|i| i.id + 1).max().unwrap_or(1));
        self.secrets.insert(
            stored.name,
            RoomSecrets {
                password_hash: stored.password_hash,
                owner_keys: stored.owner_keys,
                invites: stored.invites,
            },
        );
        Ok(())
    }

    /// Invite ids continue after this one (revoked invites are not loaded, their ids stay used).
    pub fn set_last_invite_id(&mut self, id: i64) {
        self.next_invite = self.next_invite.max(id + 1);
    }

    /// The admin token's hash (none: nobody is admin).
    pub fn set_admin_hash(&mut self, hash: Option<TokenHash>) {
        self.admin_hash = hash;
    }

    /// The wall clock for the inputs that follow (Unix ms).
    pub fn set_unix_ms(&mut self, unix_ms: i64) {
        self.unix_ms = unix_ms;
        self.clock_ms = unix_ms as f64;
    }

    /// The wall clock with sub-millisecond precision (clock sync, markers, takes).
    pub fn set_clock_ms(&mut self, clock_ms: f64) {
        self.clock_ms = clock_ms;
        self.unix_ms = clock_ms.floor() as i64;
    }

    /// What to do, in order.
    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    /// Every room, for status pages.
    pub fn status(&self) -> Vec<RoomStatus> {
        self.rooms
            .summary()
            .into_iter()
            .filter_map(|summary| {
                let room = self.rooms.room(&summary.name)?;
                Some(RoomStatus {
                    worker: self.placements.get(&summary.name).map(|p| p.worker),
                    active_speaker: self.speakers.get(&summary.name).copied(),
                    participants: room.members().to_vec(),
                    access: room.settings().access,
                    name: summary.name,
                    max_participants: summary.max_participants,
                })
            })
            .collect()
    }

    pub fn connect(&mut self, session: SessionId) {
        self.connect_from(session, None);
    }

    /// A new connection from `addr`.
    pub fn connect_from(&mut self, session: SessionId, addr: Option<IpAddr>) {
        self.sessions.insert(session);
        self.session_info
            .insert(session, SessionInfo { addr, admin: false });
        self.send(
            session,
            ServerMessage::Welcome {
                server_version: self.config.server_version.clone(),
                max_participants: self.rooms.max_participants(),
                max_chat_chars: self.config.chat_max_chars,
                room_creation: self.limits.room_creation,
            },
        );
        let (rooms, has_more) = self.rooms.page(None, MAX_ROOMS_PAGE as usize, false);
        self.send(
            session,
            ServerMessage::Rooms {
                id: None,
                rooms,
                has_more,
            },
        );
    }

    /// The client closed its signalling connection (a close frame: the tab closed), or stopped
    /// reading: the participant leaves its room.
    pub fn disconnect(&mut self, session: SessionId) {
        self.end_connection(session, false);
    }

    /// The signalling connection broke (no close frame: the network dropped, the client went
    /// silent): a member of a room keeps their place for a few seconds, since their client may come
    /// back (`resume.rs`).
    pub fn connection_lost(&mut self, session: SessionId) {
        self.end_connection(session, true);
    }

    fn end_connection(&mut self, session: SessionId, keep_place: bool) {
        if !self.sessions.remove(&session) {
            return;
        }
        if !(keep_place && self.hold(session)) {
            self.leave_room(session, true);
        }
        self.chat_buckets.remove(&session);
        let addr = self.session_info.remove(&session).and_then(|i| i.addr);
        self.pending_joins.remove(&session);
        self.address_closed(addr);
    }

    /// Sends `message` to `session` in order with everything else it is sent.
    pub fn reply(&mut self, session: SessionId, message: ServerMessage) {
        if self.sessions.contains(&session) {
            self.send(session, message);
        }
    }

    pub fn handle_message(&mut self, session: SessionId, message: ClientMessage, now: Instant) {
        if !self.sessions.contains(&session) {
            return;
        }
        let id = message.request_id();
        match message {
            ClientMessage::ListRooms { after, limit, .. } => {
                let limit = limit.unwrap_or(MAX_ROOMS_PAGE).clamp(1, MAX_ROOMS_PAGE) as usize;
                let (rooms, has_more) =
                    self.rooms
                        .page(after.as_deref(), limit, self.is_admin(session));
                self.send(
                    session,
                    ServerMessage::Rooms {
                        id,
                        rooms,
                        has_more,
                    },
                );
            }
            ClientMessage::CreateRoom {
                room,
                access,
                password,
                owner_keys,
                ..
            } => self.create(session, id, &room, access, password, &owner_keys),
            ClientMessage::Join {
                room,
                name,
                state,
                role,
                credentials,
                resume,
                server_offer,
                ..
            } => {
                if let Some(token) = resume {
                    if self.resume_join(session, id, &room, &token, state, server_offer) {
                        return;
                    }
                }
                self.join(
                    session,
                    PendingJoin {
                        id,
                        room,
                        name,
                        state,
                        role,
                        server_offer,
                    },
                    credentials,
                    now,
                )
            }
            ClientMessage::Leave { .. } => match self.leave_room(session, true) {
                Some(room) => self.send(session, ServerMessage::Left { id, room }),
                None => self.refuse(session, id, not_in_room()),
            },
            ClientMessage::Offer { sdp, .. } => {
                let Some(seat) = self.seats.get(&session).copied() else {
                    return self.refuse(session, id, not_in_room());
                };
                self.media(
                    seat.worker,
                    MediaCommand::Offer {
                        peer: seat.peer,
                        request: id,
                        sdp,
                    },
                );
            }
            ClientMessage::Answer { sdp, .. } => {
                let Some(seat) = self.seats.get(&session).copied() else {
                    return self.refuse(session, id, not_in_room());
                };
                self.media(
                    seat.worker,
                    MediaCommand::Answer {
                        peer: seat.peer,
                        request: id,
                        sdp,
                    },
                );
            }
            ClientMessage::SetState { change, .. } => self.set_state(session, id, change),
            ClientMessage::ChatSend { text, .. } => self.chat_send(session, id, text, now),
            ClientMessage::ChatHistory { before, limit, .. } => {
                self.chat_history(session, id, before, limit)
            }
            ClientMessage::RoomSettings {
                access,
                password,
                locked,
                studio,
                ..
            } => self.room_settings(session, id, access, password, locked, studio),
            ClientMessage::Kick { participant_id, .. } => {
                self.kick(session, id, participant_id, now)
            }
            ClientMessage::Mute { participant_id, .. } => self.mute(session, id, participant_id),
            ClientMessage::SetOwner {
                participant_id,
                owner,
                ..
            } => self.set_owner(session, id, participant_id, owner),
            ClientMessage::CreateInvite {
                uses,
                expires_in_s,
                not_before_ms,
                role,
                studio_role,
                ..
            } => self.create_invite(
                session,
                id,
                access::InviteTerms {
                    uses,
                    expires_in_s,
                    not_before_ms,
                    role,
                    studio_role,
                },
            ),
            ClientMessage::ListInvites { .. } => self.list_invites(session, id),
            ClientMessage::RevokeInvite {
                invite_id, kick, ..
            } => self.revoke_invite(session, id, invite_id, kick),
            ClientMessage::DeleteRoom { room, .. } => self.delete_room(session, id, &room),
            ClientMessage::Admin { token, .. } => self.admin_login(session, id, &token, now),
            ClientMessage::AdminOverview { after, limit, .. } => {
                self.admin_overview(session, id, after, limit)
            }
            ClientMessage::CloseRoom { room, .. } => self.close_room(session, id, &room),
            ClientMessage::DeleteChat { room, .. } => self.delete_chat(session, id, &room),
            ClientMessage::DeleteRecordings { room, .. } => {
                self.delete_recordings(session, id, &room)
            }
            ClientMessage::SetLimits { limits, .. } => self.set_limits(session, id, limits),
            ClientMessage::RecordingStart { .. } => self.recording_start(session, id),
            ClientMessage::RecordingStop { .. } => self.recording_stop(session, id),
            ClientMessage::ListRecordings { .. } => self.list_recordings(session, id),
            ClientMessage::DeleteRecording { recording_id, .. } => {
                self.delete_recording(session, id, recording_id)
            }
            ClientMessage::ClockSync { client_ms, .. } => {
                let server_ms = self.clock_ms;
                self.send(
                    session,
                    ServerMessage::Clock {
                        id,
                        client_ms,
                        server_ms,
                    },
                );
            }
            ClientMessage::SetStudioRole {
                participant_id,
                studio_role,
                ..
            } => self.set_studio_role(session, id, participant_id, studio_role),
            ClientMessage::StartTake {
                sample_rate,
                channels,
                first_sample_server_ms,
                ..
            } => self.start_take(session, id, sample_rate, channels, first_sample_server_ms),
            ClientMessage::RecordAllArtists { on, .. } => self.record_all_artists(session, id, on),
            ClientMessage::AddMarker { label, at_ms, .. } => {
                self.add_marker(session, id, label, at_ms)
            }
            ClientMessage::DeleteMarker { marker_id, .. } => {
                self.delete_mark(session, id, studio::Mark::Marker(marker_id))
            }
            ClientMessage::AddSegment {
                label,
                start_ms,
                end_ms,
                ..
            } => self.add_segment(session, id, label, start_ms, end_ms),
            ClientMessage::EndSegment {
                segment_id, end_ms, ..
            } => self.end_segment(session, id, segment_id, end_ms),
            ClientMessage::DeleteSegment { segment_id, .. } => {
                self.delete_mark(session, id, studio::Mark::Segment(segment_id))
            }
        }
    }

    /// A media worker reports.
    pub fn media_event(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::Answer { peer, request, sdp } => {
                if let Some(session) = self.peers.get(&peer).copied() {
                    self.send(session, ServerMessage::Answer { id: request, sdp });
                }
            }
            MediaEvent::Offer { peer, sdp } => {
                if let Some(session) = self.peers.get(&peer).copied() {
                    self.send(session, ServerMessage::Offer { sdp });
                }
            }
            MediaEvent::SdpRefused {
                peer,
                request,
                reason,
            } => {
                if let Some(session) = self.peers.get(&peer).copied() {
                    self.refuse(
                        session,
                        request,
                        Refusal {
                            code: ErrorCode::BadSdp,
                            message: reason.to_string(),
                        },
                    );
                }
            }
            MediaEvent::PeerLost { peer } => {
                let Some(session) = self.peers.get(&peer).copied() else {
                    return;
                };
                // A client that comes back by itself keeps its place, as after a drop.
                if self.hold_after_media_loss(session) {
                    self.send(
                        session,
                        ServerMessage::error(
                            None,
                            ErrorCode::MediaLost,
                            "the media connection was lost: join again with your resume token to come back",
                        ),
                    );
                    return;
                }
                // The worker has already dropped the connection.
                if let Some(room) = self.leave_room(session, false) {
                    self.send(
                        session,
                        ServerMessage::error(
                            None,
                            ErrorCode::MediaLost,
                            "the media connection closed; you have left the room",
                        ),
                    );
                    self.send(session, ServerMessage::Left { id: None, room });
                }
            }
            MediaEvent::Levels { room, levels } => {
                if let Some(members) = self.members_of_room_id(room) {
                    self.outputs.push(Output::Send {
                        sessions: members,
                        message: ServerMessage::Levels { levels },
                    });
                }
            }
            MediaEvent::ActiveSpeaker { room, participant } => {
                let Some(name) = self.room_names.get(&room).cloned() else {
                    return;
                };
                match participant {
                    Some(p) => self.speakers.insert(name, p),
                    None => self.speakers.remove(&name),
                };
                if let Some(members) = self.members_of_room_id(room) {
                    self.outputs.push(Output::Send {
                        sessions: members,
                        message: ServerMessage::ActiveSpeaker {
                            participant_id: participant,
                        },
                    });
                }
            }
        }
    }

    /// A chat message was stored: everyone in its room gets it, the author with its request id.
    pub fn chat_saved(
        &mut self,
        session: SessionId,
        request_id: Option<RequestId>,
        message: ChatMessage,
    ) {
        let others = self.members_except(&message.room, session);
        self.outputs.push(Output::Send {
            sessions: others,
            message: ServerMessage::Chat {
                id: None,
                message: message.clone(),
            },
        });
        if self.sessions.contains(&session) {
            self.send(
                session,
                ServerMessage::Chat {
                    id: request_id,
                    message,
                },
            );
        }
    }

    /// A page of history was read for `session`.
    pub fn history_loaded(
        &mut self,
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        (messages, has_more): (Vec<ChatMessage>, bool),
    ) {
        if self.sessions.contains(&session) {
            self.send(
                session,
                ServerMessage::ChatHistory {
                    id: request_id,
                    room,
                    messages,
                    has_more,
                },
            );
        }
    }

    /// The store could not do what `session` asked.
    pub fn store_failed(
        &mut self,
        session: SessionId,
        request_id: Option<RequestId>,
        what: &'static str,
    ) {
        if self.sessions.contains(&session) {
            self.send(
                session,
                ServerMessage::error(request_id, ErrorCode::Internal, what),
            );
        }
    }

    /// Puts `session` in the room it asked for: the access rules (`access.rs`) let it in.
    fn admit(&mut self, session: SessionId, join: PendingJoin, owner: bool, how: MemberAccess) {
        let PendingJoin {
            id,
            room,
            name,
            state,
            role,
            server_offer,
        } = join;
        // In studio mode everyone has a studio role; a listener comes in silent.
        let studio_role = self
            .rooms
            .room(&room)
            .filter(|r| r.settings().studio)
            .map(|_| self.studio_role_on_join(owner, role, how.studio_role));
        let state = if studio_role == Some(parley_proto::StudioRole::Listener) {
            parley_proto::MediaState {
                mic_muted: true,
                camera_off: true,
                screen_sharing: false,
                ..state
            }
        } else {
            state
        };
        let me = match self.rooms.join(session, &room, &name, state, role, owner) {
            Ok(me) => me,
            Err(r) => return self.refuse(session, id, r),
        };
        let me = match studio_role {
            Some(r) => self.rooms.set_studio_role(session, Some(r)).unwrap_or(me),
            None => me,
        };
        self.member_access.insert(session, how);
        let settings = self
            .rooms
            .room_of(session)
            .map(|r| r.settings())
            .unwrap_or_default();
        let Some(joined_room) = self.rooms.room_of(session) else {
            return;
        };
        let room_name = joined_room.name().to_string();
        let others: Vec<ParticipantInfo> = joined_room
            .members()
            .iter()
            .filter(|m| m.id != session)
            .cloned()
            .collect();
        if others.is_empty() {
            self.room_occupied(&room_name);
        }
        if let Some(r) = self.recordings.get(&room_name) {
            self.outputs.push(Output::Recorder(RecorderCommand::Name {
                recording: r.now.recording_id,
                participant: session,
                name: me.name.clone(),
            }));
        }
        let worker = self.add_media_peer(
            session,
            &room_name,
            role == Role::Viewer,
            state,
            server_offer,
        );
        tracing::info!(room = %room_name, participant = session, name = %me.name, worker, "join");
        self.outputs.push(Output::Send {
            sessions: others.iter().map(|o| o.id).collect(),
            message: ServerMessage::ParticipantJoined {
                participant: me.clone(),
            },
        });
        let active_speaker = self.speakers.get(&room_name).copied();
        let counted = me.role == Role::Member;
        let resume_token = self.new_resume_token(session);
        self.send(
            session,
            ServerMessage::Joined {
                id,
                room: room_name.clone(),
                you: session,
                name: me.name,
                participants: others,
                active_speaker,
                owner,
                settings,
                recording: self.recording_now(&room_name).map(Box::new),
                studio_role,
                resume_token,
                resumed: false,
            },
        );
        if counted {
            self.room_count_changed(&room_name);
        }
        if studio_role.is_some() {
            if self.studio.contains_key(&room_name) {
                self.tell_studio(&room_name, Some(session));
            } else {
                self.start_studio_session(&room_name, session);
            }
        }
    }

    /// Gives `session` a media peer in `room_name` on the room's worker (placing the room on the least
    /// loaded one if it has none yet). Returns the worker.
    fn add_media_peer(
        &mut self,
        session: SessionId,
        room_name: &str,
        receive_only: bool,
        state: parley_proto::MediaState,
        server_offer: bool,
    ) -> usize {
        let placement = match self.placements.get(room_name) {
            Some(p) => *p,
            None => {
                let placement = Placement {
                    id: self.next_room,
                    worker: self.least_loaded_worker(),
                };
                self.next_room += 1;
                self.placements.insert(room_name.to_string(), placement);
                self.room_names.insert(placement.id, room_name.to_string());
                placement
            }
        };
        let peer = self.next_peer;
        self.next_peer += 1;
        self.worker_load[placement.worker] += 1;
        self.seats.insert(
            session,
            MediaSeat {
                peer,
                worker: placement.worker,
                server_offer,
            },
        );
        self.peers.insert(peer, session);
        self.media(
            placement.worker,
            MediaCommand::AddPeer {
                peer,
                room: placement.id,
                participant: session,
                receive_only,
                mic_muted: state.mic_muted,
                camera_off: state.camera_off,
                screen_sharing: state.screen_sharing,
                server_offer,
            },
        );
        placement.worker
    }

    /// Takes `session`'s media peer away (its worker forgets it when `close_media`).
    fn remove_media_peer(&mut self, session: SessionId, close_media: bool) {
        if let Some(seat) = self.seats.remove(&session) {
            self.peers.remove(&seat.peer);
            self.worker_load[seat.worker] = self.worker_load[seat.worker].saturating_sub(1);
            if close_media {
                self.media(seat.worker, MediaCommand::RemovePeer { peer: seat.peer });
            }
        }
    }

    fn least_loaded_worker(&self) -> usize {
        // Rooms, not peers, are what a new room adds first; ties go to the lowest index.
        let rooms_on = |w: usize| self.placements.values().filter(|p| p.worker == w).count();
        (0..self.worker_load.len())
            .min_by_key(|&w| (self.worker_load[w], rooms_on(w), w))
            .unwrap_or(0)
    }

    /// Removes `session` from its room and tells the others. Returns the room's name.
    fn leave_room(&mut self, session: SessionId, close_media: bool) -> Option<String> {
        let counted = self
            .rooms
            .room_of(session)
            .and_then(|r| r.member(session))
            .is_some_and(|m| m.role == Role::Member);
        let (room, remaining) = self.rooms.leave(session)?;
        self.member_access.remove(&session);
        self.forget_resume(session);
        self.remove_media_peer(session, close_media);
        tracing::info!(room = %room, participant = session, "leave");
        // A wall screen alone does not keep a recording going: it ends with the last member.
        let members_left = self
            .rooms
            .room(&room)
            .is_some_and(|r| r.members().iter().any(|m| m.role == Role::Member));
        self.studio_member_left(&room, session);
        if !members_left {
            self.stop_recording(&room, None, Some("everyone left the room".into()), 0, None);
            self.end_studio_session(&room);
        }
        if remaining.is_empty() {
            if let Some(p) = self.placements.remove(&room) {
                self.room_names.remove(&p.id);
            }
            self.speakers.remove(&room);
            self.room_emptied(&room);
        }
        self.outputs.push(Output::Send {
            sessions: remaining,
            message: ServerMessage::ParticipantLeft {
                participant_id: session,
            },
        });
        if counted {
            self.room_count_changed(&room);
        }
        Some(room)
    }

    fn set_state(&mut self, session: SessionId, id: Option<RequestId>, change: MediaStateChange) {
        if let Some(refusal) = self.listener_refuses(session, &change) {
            return self.refuse(session, id, refusal);
        }
        self.change_state(session, id, change, None);
    }

    /// Applies a state change of `session`'s flags, by itself or (`by`) by an owner.
    fn change_state(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        change: MediaStateChange,
        by: Option<SessionId>,
    ) {
        let before = self
            .rooms
            .room_of(session)
            .and_then(|r| r.member(session))
            .map(|m| m.state);
        let updated = match self.rooms.set_state(session, change) {
            Ok(u) => u,
            Err(r) => return self.refuse(session, id, r),
        };
        self.send(
            session,
            ServerMessage::StateSet {
                id,
                state: updated.state,
                by,
            },
        );
        let room = self.rooms.room_of(session).map(|r| r.name().to_string());
        let others = room.map_or_else(Vec::new, |r| self.members_except(&r, session));
        self.outputs.push(Output::Send {
            sessions: others,
            message: ServerMessage::ParticipantUpdated {
                participant: updated.clone(),
            },
        });
        let media_changed = before.is_none_or(|b| {
            b.mic_muted != updated.state.mic_muted
                || b.camera_off != updated.state.camera_off
                || b.screen_sharing != updated.state.screen_sharing
        });
        if let (true, Some(seat)) = (media_changed, self.seats.get(&session).copied()) {
            self.media(
                seat.worker,
                MediaCommand::SetMute {
                    peer: seat.peer,
                    mic_muted: updated.state.mic_muted,
                    camera_off: updated.state.camera_off,
                    screen_sharing: updated.state.screen_sharing,
                },
            );
        }
    }

    fn chat_send(&mut self, session: SessionId, id: Option<RequestId>, text: String, now: Instant) {
        let Some(room) = self.rooms.room_of(session) else {
            return self.refuse(session, id, not_in_room());
        };
        let Some(me) = room.member(session) else {
            return self.refuse(session, id, not_in_room());
        };
        let (room, author) = (room.name().to_string(), me.name.clone());
        if let Err((code, message)) = validate_chat_text(&text, self.config.chat_max_chars) {
            return self.refuse(session, id, Refusal { code, message });
        }
        let limit = self.chat_limit();
        let bucket = self
            .chat_buckets
            .entry(session)
            .or_insert_with(|| TokenBucket::full(limit));
        if !bucket.take(limit, now) {
            let message = format!(
                "slow down: at most {} messages a second (bursts of {})",
                limit.per_second, limit.burst
            );
            return self.refuse(
                session,
                id,
                Refusal {
                    code: ErrorCode::RateLimited,
                    message,
                },
            );
        }
        if let Err(r) = self.address_chat_allowed(session, now) {
            return self.refuse(session, id, r);
        }
        self.outputs.push(Output::Store(StoreRequest::SaveChat {
            session,
            request_id: id,
            room,
            author_id: session,
            author,
            text,
        }));
    }

    fn chat_history(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        before: Option<i64>,
        limit: Option<u32>,
    ) {
        let Some(room) = self.rooms.room_of(session) else {
            return self.refuse(session, id, not_in_room());
        };
        let room = room.name().to_string();
        self.outputs.push(Output::Store(StoreRequest::LoadHistory {
            session,
            request_id: id,
            room,
            before,
            limit: limit.unwrap_or(MAX_HISTORY_PAGE).clamp(1, MAX_HISTORY_PAGE),
        }));
    }

    /// Everyone in `room` but `session`.
    fn members_except(&self, room: &str, session: SessionId) -> Vec<SessionId> {
        self.rooms.room(room).map_or_else(Vec::new, |r| {
            r.members()
                .iter()
                .map(|m| m.id)
                .filter(|m| *m != session)
                .collect()
        })
    }

    fn members_of_room_id(&self, room: RoomId) -> Option<Vec<SessionId>> {
        let name = self.room_names.get(&room)?;
        let room = self.rooms.room(name)?;
        Some(room.members().iter().map(|m| m.id).collect())
    }

    fn media(&mut self, worker: usize, command: MediaCommand) {
        self.outputs.push(Output::Media { worker, command });
    }

    fn send(&mut self, session: SessionId, message: ServerMessage) {
        self.outputs.push(Output::Send {
            sessions: vec![session],
            message,
        });
    }

    fn refuse(&mut self, session: SessionId, id: Option<RequestId>, refusal: Refusal) {
        self.refusals += 1;
        self.send(
            session,
            ServerMessage::error(id, refusal.code, refusal.message),
        );
    }

    /// Everyone connected hears a room's new count (a small delta, not the whole list).
    /// Private rooms: only the admin's lobby hears of them.
    fn room_count_changed(&mut self, room: &str) {
        let listed = self.rooms.room(room).is_some_and(|r| r.listed());
        let Some(room) = self.rooms.summary_of(room) else {
            return;
        };
        let sessions = if listed {
            self.sessions.iter().copied().collect()
        } else {
            self.admins()
        };
        self.outputs.push(Output::Send {
            sessions,
            message: ServerMessage::RoomUpdated { room },
        });
    }

    /// Connections of the admin (they see private rooms in the lobby too).
    fn admins(&self) -> Vec<SessionId> {
        self.session_info
            .iter()
            .filter(|(_, i)| i.admin)
            .map(|(s, _)| *s)
            .collect()
    }

    fn non_admins(&self) -> Vec<SessionId> {
        self.sessions
            .iter()
            .copied()
            .filter(|s| !self.session_info.get(s).is_some_and(|i| i.admin))
            .collect()
    }
}

fn not_in_room() -> Refusal {
    Refusal {
        code: ErrorCode::NotInRoom,
        message: "you are not in a room".into(),
    }
}

#[cfg(test)]
mod tests {
    use parley_proto::{MediaState, ServerMessage};

    use super::*;

    fn control(workers: usize) -> Control {
        let mut c = Control::new(ControlConfig::new(workers));
        for room in ["a", "b", "c"] {
            c.create_room(room).unwrap();
        }
        c
    }

    fn join(c: &mut Control, session: SessionId, room: &str, role: Role) -> Vec<Output> {
        c.connect(session);
        c.handle_message(
            session,
            ClientMessage::Join {
                id: Some(1),
                room: room.into(),
                name: format!("p{session}"),
                state: MediaState::default(),
                role,
                credentials: Default::default(),
                resume: None,
                server_offer: false,
            },
            Instant::now(),
        );
        c.drain_outputs().collect()
    }

    fn add_peer(outputs: &[Output]) -> Option<(usize, PeerId, RoomId, bool)> {
        outputs.iter().find_map(|o| match o {
            Output::Media {
                worker,
                command:
                    MediaCommand::AddPeer {
                        peer,
                        room,
                        receive_only,
                        ..
                    },
            } => Some((*worker, *peer, *room, *receive_only)),
            _ => None,
        })
    }

    fn sent_to(outputs: &[Output], session: SessionId) -> Vec<ServerMessage> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send { sessions, message } if sessions.contains(&session) => {
                    Some(message.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn new_rooms_go_to_the_least_loaded_worker_and_stay_there() {
        let mut c = control(2);
        let (wa, ..) = add_peer(&join(&mut c, 1, "a", Role::Member)).unwrap();
        let (wb, ..) = add_peer(&join(&mut c, 2, "b", Role::Member)).unwrap();
        assert_ne!(wa, wb, "two rooms, two workers");
        // More people in a: they follow the room, whatever the load.
        for s in 3..6 {
            let (w, ..) = add_peer(&join(&mut c, s, "a", Role::Member)).unwrap();
            assert_eq!(w, wa);
        }
        assert_eq!(c.worker_load()[wa], 4);
        // A third room goes where b is (less loaded).
        let (wc, ..) = add_peer(&join(&mut c, 6, "c", Role::Member)).unwrap();
        assert_eq!(wc, wb);
        // Once a empties, it is placed anew (on the least loaded worker) by its next joiner.
        for s in [1, 3, 4, 5] {
            c.disconnect(s);
        }
        c.drain_outputs().for_each(drop);
        assert_eq!(c.worker_load()[wa], 0);
        let (w, ..) = add_peer(&join(&mut c, 7, "a", Role::Member)).unwrap();
        assert_eq!(w, wa, "the empty worker is now the least loaded");
    }

    #[test]
    fn a_viewer_is_receive_only_on_its_worker() {
        let mut c = control(1);
        let (.., receive_only) = add_peer(&join(&mut c, 1, "a", Role::Viewer)).unwrap();
        assert!(receive_only);
        let (.., receive_only) = add_peer(&join(&mut c, 2, "a", Role::Member)).unwrap();
        assert!(!receive_only);
    }

    #[test]
    fn sdp_goes_to_the_rooms_worker_and_errors_keep_the_request_id() {
        let mut c = control(2);
        join(&mut c, 1, "a", Role::Member);
        let (worker, peer, ..) = add_peer(&join(&mut c, 2, "b", Role::Member)).unwrap();
        c.handle_message(
            2,
            ClientMessage::Offer {
                id: Some(7),
                sdp: "v=0".into(),
            },
            Instant::now(),
        );
        let out: Vec<_> = c.drain_outputs().collect();
        assert_eq!(
            out,
            [Output::Media {
                worker,
                command: MediaCommand::Offer {
                    peer,
                    request: Some(7),
                    sdp: "v=0".into()
                }
            }]
        );
        c.media_event(MediaEvent::SdpRefused {
            peer,
            request: Some(7),
            reason: "that offer is not valid SDP",
        });
        let out: Vec<_> = c.drain_outputs().collect();
        assert!(matches!(
            &sent_to(&out, 2)[..],
            [ServerMessage::Error {
                id: Some(7),
                code: ErrorCode::BadSdp,
                ..
            }]
        ));
        c.media_event(MediaEvent::Answer {
            peer,
            request: Some(8),
            sdp: "answer".into(),
        });
        let out: Vec<_> = c.drain_outputs().collect();
        assert!(matches!(
            &sent_to(&out, 2)[..],
            [ServerMessage::Answer { id: Some(8), .. }]
        ));
        // Not in a room: refused with the id, nothing reaches a worker.
        c.connect(3);
        c.drain_outputs().for_each(drop);
        c.handle_message(
            3,
            ClientMessage::Answer {
                id: Some(9),
                sdp: "x".into(),
            },
            Instant::now(),
        );
        let out: Vec<_> = c.drain_outputs().collect();
        assert!(matches!(
            &out[..],
            [Output::Send {
                message: ServerMessage::Error {
                    id: Some(9),
                    code: ErrorCode::NotInRoom,
                    ..
                },
                ..
            }]
        ));
    }

    #[test]
    fn a_lost_peer_leaves_and_stale_events_are_ignored() {
        let mut c = control(1);
        let (_, old_peer, room, _) = add_peer(&join(&mut c, 1, "a", Role::Member)).unwrap();
        join(&mut c, 2, "a", Role::Member);
        c.media_event(MediaEvent::PeerLost { peer: old_peer });
        let out: Vec<_> = c.drain_outputs().collect();
        let to_1 = sent_to(&out, 1);
        assert!(to_1.iter().any(|m| matches!(
            m,
            ServerMessage::Error {
                code: ErrorCode::MediaLost,
                ..
            }
        )));
        assert!(to_1.iter().any(|m| matches!(m, ServerMessage::Left { .. })));
        assert!(sent_to(&out, 2)
            .iter()
            .any(|m| matches!(m, ServerMessage::ParticipantLeft { participant_id: 1 })));
        // The worker already dropped it: no RemovePeer is sent back.
        assert!(!out.iter().any(|o| matches!(o, Output::Media { .. })));
        // 1 joins again: a new peer. A late event for the old one changes nothing.
        let out = join_again(&mut c, 1, "a");
        let (_, new_peer, _, _) = add_peer(&out).unwrap();
        assert_ne!(new_peer, old_peer);
        c.media_event(MediaEvent::PeerLost { peer: old_peer });
        c.media_event(MediaEvent::Offer {
            peer: old_peer,
            sdp: "stale".into(),
        });
        assert!(c.drain_outputs().next().is_none());
        // Room events reach the room's members.
        c.media_event(MediaEvent::ActiveSpeaker {
            room,
            participant: Some(2),
        });
        let out: Vec<_> = c.drain_outputs().collect();
        assert_eq!(sent_to(&out, 1).len(), 1);
        assert_eq!(c.status()[0].active_speaker, Some(2));
    }

    fn join_again(c: &mut Control, session: SessionId, room: &str) -> Vec<Output> {
        c.handle_message(
            session,
            ClientMessage::Join {
                id: Some(2),
                room: room.into(),
                name: "again".into(),
                state: MediaState::default(),
                role: Role::Member,
                credentials: Default::default(),
                resume: None,
                server_offer: false,
            },
            Instant::now(),
        );
        c.drain_outputs().collect()
    }

    #[test]
    fn mute_changes_reach_the_worker_once() {
        let mut c = control(1);
        let (worker, peer, ..) = add_peer(&join(&mut c, 1, "a", Role::Member)).unwrap();
        let mute = |c: &mut Control, change: MediaStateChange| {
            c.handle_message(
                1,
                ClientMessage::SetState { id: None, change },
                Instant::now(),
            );
            c.drain_outputs()
                .filter(|o| matches!(o, Output::Media { .. }))
                .collect::<Vec<_>>()
        };
        let out = mute(
            &mut c,
            MediaStateChange {
                mic_muted: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(
            out,
            [Output::Media {
                worker,
                command: MediaCommand::SetMute {
                    peer,
                    mic_muted: true,
                    camera_off: false,
                    screen_sharing: false,
                }
            }]
        );
        // Sharing a screen gates the screen track: the worker is told, the camera flag unchanged.
        let out = mute(
            &mut c,
            MediaStateChange {
                screen_sharing: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(
            out,
            [Output::Media {
                worker,
                command: MediaCommand::SetMute {
                    peer,
                    mic_muted: true,
                    camera_off: false,
                    screen_sharing: true,
                }
            }]
        );
        // Deafening is for the other clients to show: nothing changes in the media plane.
        let out = mute(
            &mut c,
            MediaStateChange {
                deafened: Some(true),
                ..Default::default()
            },
        );
        assert!(out.is_empty());
    }
}
