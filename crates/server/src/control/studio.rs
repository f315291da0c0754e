//! Studio mode: producers, artists and listeners; lossless takes; markers and segments on the
//! server's clock.
//!
//! An owner switches a room into studio mode. A *session* runs from then (or from when someone enters
//! the studio room) until the room leaves studio mode or empties; it starts the room recording (the
//! voice-quality tracks that segments are played back and exported from). Roles are checked here on
//! every request. Takes' chunks do not pass through this task: they are HTTP uploads authorized by the
//! take's token (`takes.rs`, `http.rs`); the control plane creates takes, hears how they progress and
//! tells the room.

use std::collections::HashMap;

use parley_proto::{
    ErrorCode, Marker, MediaStateChange, ParticipantId, RecordingFile, RequestId, Role, Segment,
    SegmentTrack, ServerMessage, StudioRole, StudioSession, StudioState, TakeInfo, TakeState,
    MAX_STUDIO_LABEL_CHARS,
};

use super::{AfterWrite, Control, Output, SessionId};
use crate::export::{self, PlayTrack};
use crate::rooms::Refusal;
use crate::secret::{self, TokenHash};
use crate::store::StoreWrite;

/// Takes one participant may have uploading at once (a new take while the last one still uploads
/// is normal; dozens are not).
pub const MAX_OPEN_TAKES: usize = 4;
/// Markers and segments a session may hold.
const MAX_MARKS: usize = 2000;
/// A take's progress is told to the room at most this often.
const PROGRESS_EVERY_MS: f64 = 1000.0;
/// Times a client gives may be this far ahead of the server's clock (its estimate is off a little).
const FUTURE_SLACK_MS: f64 = 2000.0;

/// The live state of a room's studio session.
#[derive(Debug, Clone)]
pub(crate) struct StudioRoom {
    pub session: StudioSession,
    pub markers: Vec<Marker>,
    pub segments: Vec<Segment>,
    pub takes: Vec<TakeInfo>,
    /// Every artist was asked to record (and not yet to stop).
    pub record_all: bool,
    /// When each take's progress was last told (server ms).
    progress_told: HashMap<i64, f64>,
}

/// A marker or a segment of a session, by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Marker(i64),
    Segment(i64),
}

/// Work for the take store (SQLite and disk: done off the control plane's task).
#[derive(Debug, Clone, PartialEq)]
pub enum TakeRequest {
    /// Make a take; reported with [`Control::take_created`].
    Create {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        session_id: i64,
        participant: ParticipantId,
        name: String,
        sample_rate: u32,
        channels: u16,
        started_at_ms: f64,
        /// Given to the artist once the take is stored; only its hash is kept.
        token: String,
        token_hash: TokenHash,
    },
    /// Its artist left without ending it: it is incomplete unless it has ended.
    Abandon { take_id: i64 },
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// A label as stored: trimmed, without control characters, at most [`MAX_STUDIO_LABEL_CHARS`].
fn clean_label(label: Option<String>) -> Result<String, Refusal> {
    let label: String = label
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let label = label.trim();
    if label.chars().count() > MAX_STUDIO_LABEL_CHARS {
        return Err(refusal(
            ErrorCode::InvalidTime,
            format!("labels are at most {MAX_STUDIO_LABEL_CHARS} characters"),
        ));
    }
    Ok(label.to_string())
}

impl Control {
    /// Ids continue after the stored ones (sessions, markers, segments).
    pub fn set_last_studio_ids(&mut self, (session, marker, segment): (i64, i64, i64)) {
        self.next_studio_session = self.next_studio_session.max(session + 1);
        self.next_marker = self.next_marker.max(marker + 1);
        self.next_segment = self.next_segment.max(segment + 1);
    }

    /// The studio role someone gets on entering a studio room: owners produce, viewers listen,
    /// an invite's role is kept, everyone else is an artist (they were already allowed to speak).
    pub(super) fn studio_role_on_join(
        &self,
        owner: bool,
        role: Role,
        invited_as: Option<StudioRole>,
    ) -> StudioRole {
        if owner {
            StudioRole::Producer
        } else if role == Role::Viewer {
            StudioRole::Listener
        } else {
            invited_as.unwrap_or(StudioRole::Artist)
        }
    }

    fn studio_of(&self, session: SessionId) -> Result<(String, StudioRole), Refusal> {
        let room = self
            .rooms
            .room_of(session)
            .ok_or_else(|| refusal(ErrorCode::NotInRoom, "you are not in a room"))?;
        if !room.settings().studio {
            return Err(refusal(
                ErrorCode::NotStudio,
                format!("{} is not in studio mode", room.name()),
            ));
        }
        let name = room.name().to_string();
        if !self.studio.contains_key(&name) {
            return Err(refusal(
                ErrorCode::NotStudio,
                "the studio session is starting; try again in a moment",
            ));
        }
        let role = room
            .member(session)
            .and_then(|m| m.studio_role)
            .unwrap_or(StudioRole::Listener);
        Ok((name, role))
    }

    /// The sender's studio room, if the sender is a producer there.
    fn produced_room(&self, session: SessionId) -> Result<String, Refusal> {
        let (room, role) = self.studio_of(session)?;
        if role != StudioRole::Producer {
            return Err(refusal(ErrorCode::Forbidden, "only producers may do that"));
        }
        Ok(room)
    }

    /// A listener may not turn their microphone or camera on, nor share a screen.
    pub(super) fn listener_refuses(
        &self,
        session: SessionId,
        change: &MediaStateChange,
    ) -> Option<Refusal> {
        let member = self.rooms.room_of(session)?.member(session)?;
        let publishes = change.mic_muted == Some(false)
            || change.camera_off == Some(false)
            || change.screen_sharing == Some(true);
        (member.studio_role == Some(StudioRole::Listener) && publishes).then(|| {
            refusal(
                ErrorCode::Forbidden,
                "listeners publish nothing: a producer can make you an artist",
            )
        })
    }

    /// Silences a listener (they publish nothing): their microphone and camera are off and their
    /// screen share stopped, by the server.
    pub(super) fn silence_listener(&mut self, session: SessionId, by: Option<SessionId>) {
        let Some(state) = self
            .rooms
            .room_of(session)
            .and_then(|r| r.member(session))
            .map(|m| m.state)
        else {
            return;
        };
        if !state.mic_muted || !state.camera_off || state.screen_sharing {
            self.change_state(
                session,
                None,
                MediaStateChange {
                    mic_muted: Some(true),
                    camera_off: Some(true),
                    deafened: None,
                    screen_sharing: Some(false),
                },
                by,
            );
        }
    }

    /// The room went into studio mode or left it (its settings are stored).
    pub(super) fn studio_switched(&mut self, room: &str, on: bool, by: SessionId) {
        let members: Vec<(ParticipantId, bool, Role)> = self
            .rooms
            .room(room)
            .map(|r| {
                r.members()
                    .iter()
                    .map(|m| (m.id, m.owner, m.role))
                    .collect()
            })
            .unwrap_or_default();
        for (id, owner, role) in &members {
            let studio_role = on.then(|| {
                let invited = self.member_access.get(id).and_then(|a| a.studio_role);
                self.studio_role_on_join(*owner, *role, invited)
            });
            self.studio_role_changed(*id, studio_role, Some(by));
        }
        if on {
            if !members.is_empty() {
                self.start_studio_session(room, by);
            }
        } else {
            self.end_studio_session(room);
            self.outputs.push(Output::Send {
                sessions: members.iter().map(|m| m.0).collect(),
                message: ServerMessage::Studio {
                    room: room.to_string(),
                    state: Box::default(),
                },
            });
        }
    }

    /// Sets `target`'s studio role and tells the room; a new listener is silenced.
    fn studio_role_changed(
        &mut self,
        target: ParticipantId,
        role: Option<StudioRole>,
        by: Option<SessionId>,
    ) {
        let Some(updated) = self.rooms.set_studio_role(target, role) else {
            return;
        };
        let room = self
            .rooms
            .room_of(target)
            .map(|r| r.name().to_string())
            .unwrap_or_default();
        let everyone = self.members_except(&room, ParticipantId::MAX);
        self.outputs.push(Output::Send {
            sessions: everyone,
            message: ServerMessage::ParticipantUpdated {
                participant: updated,
            },
        });
        if role == Some(StudioRole::Listener) {
            self.silence_listener(target, by);
        }
    }

    /// A session begins in `room` (people are in it and it is in studio mode).
    pub(super) fn start_studio_session(&mut self, room: &str, by: SessionId) {
        if self.studio.contains_key(room) || self.starting_studio.contains(room) {
            return;
        }
        let session = StudioSession {
            session_id: self.next_studio_session,
            started_at_ms: self.unix_ms,
            recording_id: None,
        };
        self.next_studio_session += 1;
        self.starting_studio.insert(room.to_string());
        self.write(
            by,
            None,
            StoreWrite::StudioSessionStarted {
                id: session.session_id,
                room: room.to_string(),
                started_at_ms: session.started_at_ms,
            },
            AfterWrite::StudioSessionStarted {
                room: room.to_string(),
                session,
            },
        );
    }

    /// The session is stored: it runs, everyone is told, and the room recording starts with it.
    pub(super) fn studio_session_stored(
        &mut self,
        room: String,
        mut session: StudioSession,
        by: SessionId,
    ) {
        self.starting_studio.remove(&room);
        let still_studio = self
            .rooms
            .room(&room)
            .is_some_and(|r| r.settings().studio && !r.members().is_empty());
        if !still_studio {
            // It left studio mode or emptied while being stored: it ends at once.
            self.write(
                by,
                None,
                StoreWrite::StudioSessionEnded {
                    id: session.session_id,
                    ended_at_ms: self.unix_ms,
                },
                AfterWrite::Nothing,
            );
            return;
        }
        session.recording_id = self.recording_now(&room).map(|r| r.recording_id);
        if let Some(recording_id) = session.recording_id {
            self.note_session_recording(&session, recording_id, by);
        }
        tracing::info!(room = %room, session = session.session_id, "studio session started");
        self.studio.insert(
            room.clone(),
            StudioRoom {
                session,
                markers: Vec::new(),
                segments: Vec::new(),
                takes: Vec::new(),
                record_all: false,
                progress_told: HashMap::new(),
            },
        );
        self.tell_studio(&room, None);
        if self.recording_now(&room).is_none() {
            // Any member may start a recording; the one who caused the session does, as the
            // session. Someone already in the room starts it if that one left meanwhile.
            let starter = if self.in_room(by, &room) {
                Some(by)
            } else {
                self.rooms
                    .room(&room)
                    .and_then(|r| r.members().iter().find(|m| m.role == Role::Member))
                    .map(|m| m.id)
            };
            if let Some(starter) = starter {
                self.recording_start(starter, None);
            }
        }
    }

    fn note_session_recording(
        &mut self,
        session: &StudioSession,
        recording_id: i64,
        by: SessionId,
    ) {
        self.write(
            by,
            None,
            StoreWrite::StudioSessionRecording {
                id: session.session_id,
                recording_id,
            },
            AfterWrite::Nothing,
        );
    }

    /// A room recording started: in a studio session without one, it is the session's.
    pub(super) fn studio_recording_started(&mut self, room: &str, recording_id: i64) {
        let Some(studio) = self.studio.get_mut(room) else {
            return;
        };
        if studio.session.recording_id.is_some() {
            return;
        }
        studio.session.recording_id = Some(recording_id);
        let session = studio.session.clone();
        self.note_session_recording(&session, recording_id, 0);
        self.tell_studio(room, None);
    }

    /// The session ends (the room left studio mode or emptied); takes still recording are abandoned.
    pub(super) fn end_studio_session(&mut self, room: &str) {
        let Some(studio) = self.studio.remove(room) else {
            return;
        };
        tracing::info!(room = %room, session = studio.session.session_id, "studio session ended");
        for take in &studio.takes {
            if take.state == TakeState::Uploading && take.total_samples.is_none() {
                self.outputs.push(Output::Takes(TakeRequest::Abandon {
                    take_id: take.take_id,
                }));
            }
        }
        self.write(
            0,
            None,
            StoreWrite::StudioSessionEnded {
                id: studio.session.session_id,
                ended_at_ms: self.unix_ms,
            },
            AfterWrite::Nothing,
        );
    }

    /// Someone left a studio room: their takes still recording are abandoned (a page that comes back
    /// resumes them with their tokens).
    pub(super) fn studio_member_left(&mut self, room: &str, session: SessionId) {
        let Some(studio) = self.studio.get(room) else {
            return;
        };
        let abandoned: Vec<i64> = studio
            .takes
            .iter()
            .filter(|t| {
                t.participant_id == session
                    && t.state == TakeState::Uploading
                    && t.total_samples.is_none()
            })
            .map(|t| t.take_id)
            .collect();
        for take_id in abandoned {
            self.outputs
                .push(Output::Takes(TakeRequest::Abandon { take_id }));
        }
    }

    /// The room's studio state, to `to` (or to everyone in the room).
    pub(super) fn tell_studio(&mut self, room: &str, to: Option<SessionId>) {
        let Some(studio) = self.studio.get(room) else {
            return;
        };
        let mut takes = studio.takes.clone();
        for take in &mut takes {
            self.sign_take_links(take);
        }
        let mut segments = studio.segments.clone();
        for segment in &mut segments {
            self.sign_segment_links(studio, segment);
        }
        let message = ServerMessage::Studio {
            room: room.to_string(),
            state: Box::new(StudioState {
                session: Some(studio.session.clone()),
                markers: studio.markers.clone(),
                segments,
                takes,
                record_all: studio.record_all,
            }),
        };
        let sessions = match to {
            Some(s) => vec![s],
            None => self.members_except(room, ParticipantId::MAX),
        };
        self.outputs.push(Output::Send { sessions, message });
    }

    pub(super) fn set_studio_role(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        target: ParticipantId,
        role: StudioRole,
    ) {
        let room = match self.produced_room(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        let Some(member) = self
            .rooms
            .room(&room)
            .and_then(|r| r.member(target))
            .cloned()
        else {
            return self.refuse(
                session,
                id,
                refusal(ErrorCode::NotInRoom, "nobody with that id is in your room"),
            );
        };
        if member.owner && role != StudioRole::Producer {
            return self.refuse(
                session,
                id,
                refusal(
                    ErrorCode::Forbidden,
                    "owners are producers: take away their ownership first",
                ),
            );
        }
        if member.role == Role::Viewer && role != StudioRole::Listener {
            return self.refuse(
                session,
                id,
                refusal(ErrorCode::Forbidden, "a viewer (wall screen) only listens"),
            );
        }
        if member.studio_role != Some(role) {
            self.studio_role_changed(target, Some(role), Some(session));
        }
        self.send(session, ServerMessage::Ok { id });
    }

    pub(super) fn start_take(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        sample_rate: u32,
        channels: u16,
        first_sample_server_ms: f64,
    ) {
        let (room, role) = match self.studio_of(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        if role == StudioRole::Listener {
            return self.refuse(
                session,
                id,
                refusal(ErrorCode::Forbidden, "listeners do not record takes"),
            );
        }
        if !(8000..=192_000).contains(&sample_rate) || !(1..=2).contains(&channels) {
            return self.refuse(
                session,
                id,
                refusal(
                    ErrorCode::InvalidTake,
                    "takes are 8000 to 192000 Hz, with 1 or 2 channels",
                ),
            );
        }
        let Some(studio) = self.studio.get(&room) else {
            return;
        };
        let open = studio
            .takes
            .iter()
            .filter(|t| t.participant_id == session && t.state == TakeState::Uploading)
            .count();
        if open >= MAX_OPEN_TAKES {
            let message =
                format!("at most {MAX_OPEN_TAKES} takes of yours may be uploading at once");
            return self.refuse(session, id, refusal(ErrorCode::RateLimited, message));
        }
        let session_start = studio.session.started_at_ms as f64;
        let now = self.clock_ms;
        if !first_sample_server_ms.is_finite()
            || first_sample_server_ms < session_start - FUTURE_SLACK_MS
            || first_sample_server_ms > now + FUTURE_SLACK_MS
        {
            return self.refuse(
                session,
                id,
                refusal(
                    ErrorCode::InvalidTime,
                    "the take's first sample must be in this session, not in the future",
                ),
            );
        }
        let session_id = studio.session.session_id;
        let Some(name) = self.name_of(session) else {
            return;
        };
        let token = match secret::new_token() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("no randomness from the OS: {e}");
                return self.refuse(
                    session,
                    id,
                    refusal(ErrorCode::Internal, "the server could not make a secret"),
                );
            }
        };
        self.outputs.push(Output::Takes(TakeRequest::Create {
            session,
            request_id: id,
            room,
            session_id,
            participant: session,
            name,
            sample_rate,
            channels,
            started_at_ms: first_sample_server_ms,
            token_hash: secret::hash_token(&token),
            token,
        }));
    }

    /// The take store made (or could not make) a take asked for by `session`.
    pub fn take_created(
        &mut self,
        session: SessionId,
        request_id: Option<RequestId>,
        room: &str,
        result: Result<TakeInfo, String>,
        token: String,
    ) {
        let take = match result {
            Ok(t) => t,
            Err(message) => {
                if self.sessions.contains(&session) {
                    self.refuse(session, request_id, refusal(ErrorCode::Internal, message));
                }
                return;
            }
        };
        if let Some(studio) = self.studio.get_mut(room) {
            studio.takes.push(take.clone());
            studio.progress_told.insert(take.take_id, self.clock_ms);
        }
        if self.in_room(session, room) {
            self.send(
                session,
                ServerMessage::TakeStarted {
                    id: request_id,
                    take: Box::new(take.clone()),
                    upload_token: token,
                },
            );
        } else {
            // The artist left while it was being made.
            self.outputs.push(Output::Takes(TakeRequest::Abandon {
                take_id: take.take_id,
            }));
        }
        let everyone = self.members_except(room, session);
        self.outputs.push(Output::Send {
            sessions: everyone,
            message: ServerMessage::TakeUpdated {
                take: Box::new(take),
            },
        });
    }

    /// A take changed in the store (a chunk arrived, it ended, it was made): the room hears of it —
    /// of progress at most once a second, of anything else at once.
    pub fn take_changed(&mut self, room: &str, take: TakeInfo) {
        let now = self.clock_ms;
        let Some(studio) = self.studio.get_mut(room) else {
            return;
        };
        let previous = studio.takes.iter_mut().find(|t| t.take_id == take.take_id);
        let state_changed = match previous {
            Some(p) => {
                let changed = p.state != take.state || p.total_samples != take.total_samples;
                *p = take.clone();
                changed
            }
            // A take of an earlier session (a page resumed its upload): not this session's.
            None => return,
        };
        let told = studio.progress_told.get(&take.take_id).copied();
        if !state_changed && told.is_some_and(|t| now - t < PROGRESS_EVERY_MS) {
            return;
        }
        studio.progress_told.insert(take.take_id, now);
        let mut take = take;
        self.sign_take_links(&mut take);
        let everyone = self.members_except(room, ParticipantId::MAX);
        self.outputs.push(Output::Send {
            sessions: everyone,
            message: ServerMessage::TakeUpdated {
                take: Box::new(take),
            },
        });
    }

    fn sign_take_links(&self, take: &mut TakeInfo) {
        let Some(key) = self.download_key else {
            return;
        };
        let expires = self.unix_ms + super::DOWNLOAD_LINK_LIFE_MS;
        for file in &mut take.files {
            let signed = format!("take:{}", file.name);
            let sig = secret::sign_download(&key, take.take_id, &signed, expires);
            file.url = Some(format!(
                "/api/takes/{}/files/{}?exp={expires}&sig={sig}",
                take.take_id, file.name
            ));
        }
    }

    /// An ended segment's signed links: its export, and playback of the session's room recording's
    /// mix (when it has one) and of each of the session's takes with frames inside the segment.
    fn sign_segment_links(&self, studio: &StudioRoom, segment: &mut Segment) {
        segment.export_url = None;
        segment.playback.clear();
        let (Some(key), Some(end_ms)) = (self.download_key, segment.end_ms) else {
            return;
        };
        let id = segment.segment_id;
        let expires = self.unix_ms + super::DOWNLOAD_LINK_LIFE_MS;
        let sig = secret::sign_download(&key, id, export::EXPORT_LINK_FILE, expires);
        segment.export_url = Some(format!(
            "/api/segments/{id}/export.zip?exp={expires}&sig={sig}"
        ));
        let signed = |track: PlayTrack, label: String, take_id: Option<i64>| {
            let sig = secret::sign_download(&key, id, &track.link_file(), expires);
            SegmentTrack {
                track: track.to_string(),
                label,
                take_id,
                url: format!("{}?exp={expires}&sig={sig}", track.path(id)),
            }
        };
        if studio.session.recording_id.is_some() {
            segment
                .playback
                .push(signed(PlayTrack::Mix, "Mix".into(), None));
        }
        for take in &studio.takes {
            let inside = export::take_overlaps(
                take.started_at_ms,
                take.sample_rate,
                take.total_samples,
                segment.start_ms,
                end_ms,
            );
            if inside {
                let track = PlayTrack::Take(take.take_id);
                segment
                    .playback
                    .push(signed(track, take.name.clone(), Some(take.take_id)));
            }
        }
    }

    pub(super) fn record_all_artists(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        on: bool,
    ) {
        let room = match self.produced_room(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        if let Some(studio) = self.studio.get_mut(&room) {
            studio.record_all = on;
        }
        let by = self.name_of(session).unwrap_or_default();
        let artists: Vec<SessionId> = self
            .rooms
            .room(&room)
            .map(|r| {
                r.members()
                    .iter()
                    .filter(|m| m.studio_role == Some(StudioRole::Artist))
                    .map(|m| m.id)
                    .collect()
            })
            .unwrap_or_default();
        self.outputs.push(Output::Send {
            sessions: artists,
            message: ServerMessage::TakeRequested { on, by },
        });
        self.send(session, ServerMessage::Ok { id });
    }

    /// A time a producer gave (or now), checked against the session.
    fn session_time(&self, room: &str, at_ms: Option<f64>) -> Result<f64, Refusal> {
        let start = self
            .studio
            .get(room)
            .map_or(0.0, |s| s.session.started_at_ms as f64);
        let at = at_ms.unwrap_or(self.clock_ms);
        if !at.is_finite() || at < start || at > self.clock_ms + FUTURE_SLACK_MS {
            return Err(refusal(
                ErrorCode::InvalidTime,
                "that time is not in this studio session",
            ));
        }
        Ok(at)
    }

    fn marks_full(&self, room: &str) -> Option<Refusal> {
        let studio = self.studio.get(room)?;
        (studio.markers.len() + studio.segments.len() >= MAX_MARKS).then(|| {
            refusal(
                ErrorCode::RateLimited,
                format!("a session holds at most {MAX_MARKS} markers and segments"),
            )
        })
    }

    pub(super) fn add_marker(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        label: Option<String>,
        at_ms: Option<f64>,
    ) {
        let checked = self.produced_room(session).and_then(|room| {
            if let Some(full) = self.marks_full(&room) {
                return Err(full);
            }
            Ok((self.session_time(&room, at_ms)?, clean_label(label)?, room))
        });
        let (at_ms, label, room) = match checked {
            Ok(c) => c,
            Err(r) => return self.refuse(session, id, r),
        };
        let Some(session_id) = self.studio.get(&room).map(|s| s.session.session_id) else {
            return;
        };
        let marker = Marker {
            marker_id: self.next_marker,
            at_ms,
            label,
            by: self.name_of(session).unwrap_or_default(),
        };
        self.next_marker += 1;
        self.write(
            session,
            id,
            StoreWrite::AddMarker {
                session_id,
                marker: marker.clone(),
            },
            AfterWrite::MarkerAdded { room, marker },
        );
    }

    pub(super) fn marker_stored(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        room: String,
        marker: Marker,
    ) {
        let Some(studio) = self.studio.get_mut(&room) else {
            return;
        };
        studio.markers.push(marker.clone());
        studio.markers.sort_by(|a, b| {
            a.at_ms
                .total_cmp(&b.at_ms)
                .then(a.marker_id.cmp(&b.marker_id))
        });
        self.tell_room_and_asker(&room, session, id, |id| ServerMessage::MarkerAdded {
            id,
            marker: marker.clone(),
        });
    }

    pub(super) fn add_segment(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        label: Option<String>,
        start_ms: Option<f64>,
        end_ms: Option<f64>,
    ) {
        let checked = self.produced_room(session).and_then(|room| {
            if let Some(full) = self.marks_full(&room) {
                return Err(full);
            }
            let start = self.session_time(&room, start_ms)?;
            let end = end_ms
                .map(|e| self.session_time(&room, Some(e)))
                .transpose()?;
            if end.is_some_and(|e| e <= start) {
                return Err(refusal(
                    ErrorCode::InvalidTime,
                    "a segment ends after it starts",
                ));
            }
            Ok((start, end, clean_label(label)?, room))
        });
        let (start_ms, end_ms, label, room) = match checked {
            Ok(c) => c,
            Err(r) => return self.refuse(session, id, r),
        };
        let Some(session_id) = self.studio.get(&room).map(|s| s.session.session_id) else {
            return;
        };
        let segment = Segment {
            segment_id: self.next_segment,
            start_ms,
            end_ms,
            label,
            by: self.name_of(session).unwrap_or_default(),
            export_url: None,
            playback: Vec::new(),
        };
        self.next_segment += 1;
        self.write(
            session,
            id,
            StoreWrite::PutSegment {
                session_id,
                segment: segment.clone(),
            },
            AfterWrite::SegmentStored {
                room,
                segment: Box::new(segment),
            },
        );
    }

    pub(super) fn end_segment(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        segment_id: i64,
        end_ms: Option<f64>,
    ) {
        let checked = self.produced_room(session).and_then(|room| {
            let studio = self.studio.get(&room);
            let segment = studio
                .and_then(|s| s.segments.iter().find(|g| g.segment_id == segment_id))
                .cloned()
                .ok_or_else(|| {
                    refusal(ErrorCode::NoSuchSegment, "this session has no such segment")
                })?;
            let end = self.session_time(&room, end_ms)?;
            if end <= segment.start_ms {
                return Err(refusal(
                    ErrorCode::InvalidTime,
                    "a segment ends after it starts",
                ));
            }
            let session_id = studio.map_or(0, |s| s.session.session_id);
            Ok((
                Segment {
                    end_ms: Some(end),
                    ..segment
                },
                session_id,
                room,
            ))
        });
        let (segment, session_id, room) = match checked {
            Ok(c) => c,
            Err(r) => return self.refuse(session, id, r),
        };
        self.write(
            session,
            id,
            StoreWrite::PutSegment {
                session_id,
                segment: segment.clone(),
            },
            AfterWrite::SegmentStored {
                room,
                segment: Box::new(segment),
            },
        );
    }

    pub(super) fn segment_stored(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        room: String,
        mut segment: Box<Segment>,
    ) {
        let Some(studio) = self.studio.get_mut(&room) else {
            return;
        };
        match studio
            .segments
            .iter_mut()
            .find(|g| g.segment_id == segment.segment_id)
        {
            Some(g) => *g = (*segment).clone(),
            None => studio.segments.push((*segment).clone()),
        }
        studio.segments.sort_by(|a, b| {
            a.start_ms
                .total_cmp(&b.start_ms)
                .then(a.segment_id.cmp(&b.segment_id))
        });
        if let Some(studio) = self.studio.get(&room) {
            self.sign_segment_links(studio, &mut segment);
        }
        self.tell_room_and_asker(&room, session, id, |id| ServerMessage::SegmentUpdated {
            id,
            segment: segment.clone(),
        });
    }

    /// Producers delete a marker or a segment of their session: once stored, everyone is told.
    pub(super) fn delete_mark(&mut self, session: SessionId, id: Option<RequestId>, mark: Mark) {
        let room = match self.produced_room(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        let known = self.studio.get(&room).is_some_and(|s| match mark {
            Mark::Marker(m) => s.markers.iter().any(|x| x.marker_id == m),
            Mark::Segment(g) => s.segments.iter().any(|x| x.segment_id == g),
        });
        if !known {
            let refused = match mark {
                Mark::Marker(_) => {
                    refusal(ErrorCode::NoSuchMarker, "this session has no such marker")
                }
                Mark::Segment(_) => {
                    refusal(ErrorCode::NoSuchSegment, "this session has no such segment")
                }
            };
            return self.refuse(session, id, refused);
        }
        let write = match mark {
            Mark::Marker(m) => StoreWrite::DeleteMarker { id: m },
            Mark::Segment(g) => StoreWrite::DeleteSegment { id: g },
        };
        self.write(session, id, write, AfterWrite::MarkDeleted { room, mark });
    }

    pub(super) fn mark_removed(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        room: String,
        mark: Mark,
    ) {
        if let Some(studio) = self.studio.get_mut(&room) {
            match mark {
                Mark::Marker(m) => studio.markers.retain(|x| x.marker_id != m),
                Mark::Segment(g) => studio.segments.retain(|x| x.segment_id != g),
            }
        }
        self.tell_room_and_asker(&room, session, id, |id| match mark {
            Mark::Marker(marker_id) => ServerMessage::MarkerDeleted { id, marker_id },
            Mark::Segment(segment_id) => ServerMessage::SegmentDeleted { id, segment_id },
        });
    }

    /// Everyone in `room` gets `message(None)`; the asker, if still there, `message(id)`.
    fn tell_room_and_asker(
        &mut self,
        room: &str,
        asker: SessionId,
        id: Option<RequestId>,
        message: impl Fn(Option<RequestId>) -> ServerMessage,
    ) {
        let others = self.members_except(room, asker);
        self.outputs.push(Output::Send {
            sessions: others,
            message: message(None),
        });
        if self.in_room(asker, room) {
            self.send(asker, message(id));
        }
    }
}

/// A take as the store keeps it, as clients see it (links are signed when it is sent).
pub fn take_info(take: &crate::takes::Take) -> TakeInfo {
    let files = take
        .files
        .iter()
        .map(|f| RecordingFile {
            name: f.name.to_string(),
            kind: "take".to_string(),
            format: f.name.rsplit('.').next().unwrap_or_default().to_string(),
            participant_id: Some(take.participant_id),
            participant_name: Some(take.name.clone()),
            bytes: f.bytes,
            url: None,
        })
        .collect();
    TakeInfo {
        take_id: take.id,
        participant_id: take.participant_id,
        name: take.name.clone(),
        sample_rate: take.sample_rate,
        channels: take.channels,
        started_at_ms: take.started_at_ms,
        state: match take.state {
            crate::takes::TakeState::Uploading => TakeState::Uploading,
            crate::takes::TakeState::Complete => TakeState::Complete,
            crate::takes::TakeState::Incomplete => TakeState::Incomplete,
            crate::takes::TakeState::Failed => TakeState::Failed,
        },
        received_samples: take.received_samples,
        total_samples: take.total_samples,
        files,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use parley_proto::{ClientMessage, Credentials, MediaState, ServerMessage};

    use super::super::{ControlConfig, StoreRequest};
    use super::*;

    /// A control plane whose store writes succeed at once; what each session was sent is kept.
    struct Studio {
        c: Control,
        sent: HashMap<SessionId, Vec<ServerMessage>>,
        takes: Vec<TakeRequest>,
        recordings_started: usize,
    }

    impl Studio {
        fn new() -> Studio {
            let mut c = Control::new(ControlConfig::new(1));
            c.set_clock_ms(1_000_000.0);
            c.set_download_key([7; 32]);
            Studio {
                c,
                sent: HashMap::new(),
                takes: Vec::new(),
                recordings_started: 0,
            }
        }

        fn pump(&mut self) {
            loop {
                let outputs: Vec<Output> = self.c.drain_outputs().collect();
                if outputs.is_empty() {
                    return;
                }
                for output in outputs {
                    match output {
                        Output::Send { sessions, message } => {
                            for s in sessions {
                                self.sent.entry(s).or_default().push(message.clone());
                            }
                        }
                        Output::Store(StoreRequest::Write {
                            session,
                            request_id,
                            write,
                            then,
                        }) => {
                            if matches!(write, StoreWrite::RecordingStarted { .. }) {
                                self.recordings_started += 1;
                            }
                            self.c
                                .written(session, request_id, then, true, Instant::now())
                        }
                        Output::Takes(t) => self.takes.push(t),
                        _ => {}
                    }
                }
            }
        }

        fn ask(&mut self, session: SessionId, message: ClientMessage) -> Vec<ServerMessage> {
            self.sent.remove(&session);
            self.c.handle_message(session, message, Instant::now());
            self.pump();
            self.sent.remove(&session).unwrap_or_default()
        }

        fn join(&mut self, session: SessionId, role: Role, credentials: Credentials) {
            self.c.connect(session);
            let replies = self.ask(
                session,
                ClientMessage::Join {
                    id: Some(1),
                    room: "band".into(),
                    name: format!("p{session}"),
                    state: MediaState::default(),
                    role,
                    credentials,
                    resume: None,
                    server_offer: false,
                },
            );
            assert!(
                replies
                    .iter()
                    .any(|m| matches!(m, ServerMessage::Joined { .. })),
                "{replies:?}"
            );
        }

        /// Session 1 creates "band" and joins it as its owner; 2 joins as a member, 3 as a viewer;
        /// the owner switches studio mode on.
        fn session() -> Studio {
            let mut s = Studio::new();
            s.c.connect(1);
            let replies = s.ask(
                1,
                ClientMessage::CreateRoom {
                    id: Some(1),
                    room: "band".into(),
                    access: Default::default(),
                    password: None,
                    owner_keys: Vec::new(),
                },
            );
            let key = replies
                .iter()
                .find_map(|m| match m {
                    ServerMessage::RoomCreated { owner_key, .. } => owner_key.clone(),
                    _ => None,
                })
                .expect("room created");
            s.join(
                1,
                Role::Member,
                Credentials {
                    owner_key: Some(key),
                    ..Default::default()
                },
            );
            s.join(2, Role::Member, Credentials::default());
            s.join(3, Role::Viewer, Credentials::default());
            let replies = s.ask(
                1,
                ClientMessage::RoomSettings {
                    id: Some(2),
                    access: None,
                    password: None,
                    locked: None,
                    studio: Some(true),
                },
            );
            assert!(replies.iter().any(|m| matches!(
                m,
                ServerMessage::RoomSettings { settings, .. } if settings.studio
            )));
            // What the owner was sent stays readable like everyone else's.
            s.sent.insert(1, replies);
            s
        }

        fn role(&self, id: ParticipantId) -> Option<StudioRole> {
            self.c.rooms.room("band")?.member(id)?.studio_role
        }
    }

    fn refused(replies: &[ServerMessage]) -> Option<ErrorCode> {
        replies.iter().find_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
    }

    fn marker(label: &str, at_ms: Option<f64>) -> ClientMessage {
        ClientMessage::AddMarker {
            id: Some(9),
            label: Some(label.into()),
            at_ms,
        }
    }

    fn take(at: f64) -> ClientMessage {
        ClientMessage::StartTake {
            id: Some(5),
            sample_rate: 48_000,
            channels: 1,
            first_sample_server_ms: at,
        }
    }

    #[test]
    fn studio_mode_gives_roles_starts_a_session_and_its_recording() {
        let mut s = Studio::session();
        assert_eq!(s.role(1), Some(StudioRole::Producer));
        assert_eq!(s.role(2), Some(StudioRole::Artist));
        assert_eq!(s.role(3), Some(StudioRole::Listener));
        assert_eq!(
            s.recordings_started, 1,
            "studio mode starts the room recording"
        );
        for who in [1, 2, 3] {
            let studio = s.sent[&who].iter().find_map(|m| match m {
                ServerMessage::Studio { state, .. } => state.session.clone(),
                _ => None,
            });
            let studio = studio.expect("everyone is told of the session");
            assert_eq!(studio.started_at_ms, 1_000_000);
        }
        // A late joiner gets the studio state after `joined`, as an artist.
        s.join(4, Role::Member, Credentials::default());
        assert_eq!(s.role(4), Some(StudioRole::Artist));
        // Studio mode off: no roles, the session ends.
        let replies = s.ask(
            1,
            ClientMessage::RoomSettings {
                id: Some(3),
                access: None,
                password: None,
                locked: None,
                studio: Some(false),
            },
        );
        assert_eq!(refused(&replies), None);
        assert_eq!(s.role(2), None);
        assert!(s.c.studio.is_empty());
        let replies = s.ask(1, marker("late", None));
        assert_eq!(refused(&replies), Some(ErrorCode::NotStudio));
    }

    #[test]
    fn roles_are_checked_on_every_request() {
        let mut s = Studio::session();
        // Artists and listeners may not set markers, segments or roles.
        for who in [2, 3] {
            assert_eq!(
                refused(&s.ask(who, marker("x", None))),
                Some(ErrorCode::Forbidden)
            );
            let seg = ClientMessage::AddSegment {
                id: Some(1),
                label: None,
                start_ms: None,
                end_ms: None,
            };
            assert_eq!(refused(&s.ask(who, seg)), Some(ErrorCode::Forbidden));
            let promote = ClientMessage::SetStudioRole {
                id: Some(1),
                participant_id: who,
                studio_role: StudioRole::Producer,
            };
            assert_eq!(refused(&s.ask(who, promote)), Some(ErrorCode::Forbidden));
            let all = ClientMessage::RecordAllArtists {
                id: Some(1),
                on: true,
            };
            assert_eq!(refused(&s.ask(who, all)), Some(ErrorCode::Forbidden));
        }
        // A listener records no take and cannot turn their microphone on.
        assert_eq!(
            refused(&s.ask(3, take(1_000_000.0))),
            Some(ErrorCode::Forbidden)
        );
        let unmute = ClientMessage::SetState {
            id: Some(1),
            change: MediaStateChange {
                mic_muted: Some(false),
                ..Default::default()
            },
        };
        assert_eq!(
            refused(&s.ask(3, unmute.clone())),
            Some(ErrorCode::Forbidden)
        );
        // The artist starts a take: the store is asked to make it.
        assert_eq!(refused(&s.ask(2, take(1_000_000.0))), None);
        assert!(matches!(
            s.takes.as_slice(),
            [TakeRequest::Create {
                participant: 2,
                sample_rate: 48_000,
                ..
            }]
        ));
        // Made a listener by the producer: silenced, no takes, no unmuting.
        let demote = ClientMessage::SetStudioRole {
            id: Some(4),
            participant_id: 2,
            studio_role: StudioRole::Listener,
        };
        let replies = s.ask(1, demote);
        assert!(replies
            .iter()
            .any(|m| matches!(m, ServerMessage::Ok { id: Some(4) })));
        let state =
            s.c.rooms
                .room("band")
                .and_then(|r| r.member(2))
                .unwrap()
                .state;
        assert!(state.mic_muted && state.camera_off);
        assert_eq!(
            refused(&s.ask(2, take(1_000_000.0))),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(refused(&s.ask(2, unmute)), Some(ErrorCode::Forbidden));
        // The owner stays a producer; a viewer stays a listener.
        for (target, role) in [(1, StudioRole::Artist), (3, StudioRole::Artist)] {
            let m = ClientMessage::SetStudioRole {
                id: Some(1),
                participant_id: target,
                studio_role: role,
            };
            assert_eq!(refused(&s.ask(1, m)), Some(ErrorCode::Forbidden));
        }
        // Takes need sane formats and times in the session.
        let bad = ClientMessage::StartTake {
            id: Some(1),
            sample_rate: 1_000_000,
            channels: 1,
            first_sample_server_ms: 1_000_000.0,
        };
        assert_eq!(refused(&s.ask(1, bad)), Some(ErrorCode::InvalidTake));
        assert_eq!(
            refused(&s.ask(1, take(2_000_000.0))),
            Some(ErrorCode::InvalidTime)
        );
        assert_eq!(
            refused(&s.ask(1, take(f64::NAN))),
            Some(ErrorCode::InvalidTime)
        );
    }

    #[test]
    fn record_all_artists_asks_only_the_artists() {
        let mut s = Studio::session();
        s.join(4, Role::Member, Credentials::default());
        for who in [2, 4] {
            s.sent.remove(&who);
        }
        let replies = s.ask(
            1,
            ClientMessage::RecordAllArtists {
                id: Some(3),
                on: true,
            },
        );
        assert!(replies
            .iter()
            .any(|m| matches!(m, ServerMessage::Ok { id: Some(3) })));
        for who in [2, 4] {
            assert!(s.sent[&who]
                .iter()
                .any(|m| matches!(m, ServerMessage::TakeRequested { on: true, by } if by == "p1")));
        }
        assert!(!s.sent.get(&3).is_some_and(|m| m
            .iter()
            .any(|m| matches!(m, ServerMessage::TakeRequested { .. }))));
    }

    #[test]
    fn markers_and_segments_are_on_the_session_clock() {
        let mut s = Studio::session();
        s.c.set_clock_ms(1_005_000.5);
        let replies = s.ask(1, marker("  verse\n1 ", None));
        let m = replies
            .iter()
            .find_map(|m| match m {
                ServerMessage::MarkerAdded {
                    id: Some(9),
                    marker,
                } => Some(marker.clone()),
                _ => None,
            })
            .expect("the producer's marker is acknowledged with its id");
        assert_eq!(m.at_ms, 1_005_000.5);
        assert_eq!(m.label, "verse 1");
        assert_eq!(m.by, "p1");
        assert!(s.sent[&2]
            .iter()
            .any(|x| matches!(x, ServerMessage::MarkerAdded { id: None, marker } if marker.marker_id == m.marker_id)));
        // Before the session or in the future: refused. A label too long: refused.
        assert_eq!(
            refused(&s.ask(1, marker("early", Some(999_999.0)))),
            Some(ErrorCode::InvalidTime)
        );
        assert_eq!(
            refused(&s.ask(1, marker("later", Some(1_010_000.0)))),
            Some(ErrorCode::InvalidTime)
        );
        let long = "x".repeat(MAX_STUDIO_LABEL_CHARS + 1);
        assert_eq!(
            refused(&s.ask(1, marker(&long, None))),
            Some(ErrorCode::InvalidTime)
        );
        // A segment cut in real time: opened now, closed later; its export link comes with its end.
        let replies = s.ask(
            1,
            ClientMessage::AddSegment {
                id: Some(10),
                label: Some("chorus".into()),
                start_ms: Some(1_001_000.0),
                end_ms: None,
            },
        );
        let open = replies
            .iter()
            .find_map(|m| match m {
                ServerMessage::SegmentUpdated { segment, .. } => Some((**segment).clone()),
                _ => None,
            })
            .expect("segment");
        assert_eq!(open.end_ms, None);
        assert_eq!(open.export_url, None);
        let end = |at| ClientMessage::EndSegment {
            id: Some(11),
            segment_id: open.segment_id,
            end_ms: Some(at),
        };
        assert_eq!(
            refused(&s.ask(1, end(1_000_500.0))),
            Some(ErrorCode::InvalidTime)
        );
        let replies = s.ask(1, end(1_004_000.0));
        let closed = replies
            .iter()
            .find_map(|m| match m {
                ServerMessage::SegmentUpdated { segment, .. } => Some((**segment).clone()),
                _ => None,
            })
            .expect("segment ended");
        assert_eq!(closed.end_ms, Some(1_004_000.0));
        assert!(closed.export_url.as_deref().is_some_and(
            |u| u.starts_with(&format!("/api/segments/{}/export.zip?", open.segment_id))
        ));
        let gone = ClientMessage::DeleteMarker {
            id: Some(12),
            marker_id: 999,
        };
        assert_eq!(refused(&s.ask(1, gone)), Some(ErrorCode::NoSuchMarker));
        let del = ClientMessage::DeleteSegment {
            id: Some(13),
            segment_id: open.segment_id,
        };
        assert_eq!(refused(&s.ask(1, del)), None);
        assert!(s.c.studio["band"].segments.is_empty());
    }

    #[test]
    fn ended_segments_carry_signed_playback_links() {
        let mut s = Studio::session();
        if s.c.studio["band"].session.recording_id.is_none() {
            s.c.studio_recording_started("band", 3);
            s.pump();
        }
        let take_info = |take_id: i64, started_at_ms: f64, total_samples: Option<u64>| TakeInfo {
            take_id,
            participant_id: 2,
            name: "p2".into(),
            sample_rate: 48_000,
            channels: 1,
            started_at_ms,
            state: TakeState::Uploading,
            received_samples: 0,
            total_samples,
            files: Vec::new(),
        };
        // Takes 7 (uploading, from before the segment), 8 (ended before it) and 9 (after it).
        for (info, token) in [
            (take_info(7, 1_000_500.0, None), "a"),
            (take_info(8, 1_000_100.0, Some(48_000)), "b"),
            (take_info(9, 1_004_500.0, None), "c"),
        ] {
            s.c.take_created(2, None, "band", Ok(info), token.into());
        }
        s.pump();
        s.c.set_clock_ms(1_005_000.0);
        let add = ClientMessage::AddSegment {
            id: Some(10),
            label: None,
            start_ms: Some(1_002_000.0),
            end_ms: None,
        };
        let segment_of = |replies: &[ServerMessage]| {
            replies.iter().find_map(|m| match m {
                ServerMessage::SegmentUpdated { segment, .. } => Some((**segment).clone()),
                _ => None,
            })
        };
        let open = segment_of(&s.ask(1, add)).expect("segment");
        assert!(open.playback.is_empty(), "an open segment has none yet");
        let end = ClientMessage::EndSegment {
            id: Some(11),
            segment_id: open.segment_id,
            end_ms: Some(1_004_000.0),
        };
        let closed = segment_of(&s.ask(1, end)).expect("segment ended");
        let tracks: Vec<(&str, &str, Option<i64>)> = closed
            .playback
            .iter()
            .map(|t| (t.track.as_str(), t.label.as_str(), t.take_id))
            .collect();
        assert_eq!(
            tracks,
            [("mix", "Mix", None), ("take-7", "p2", Some(7))],
            "the mix and the takes inside the segment"
        );
        let id = closed.segment_id;
        for t in &closed.playback {
            let (path, query) = t.url.split_once('?').expect("signed");
            assert_eq!(path, format!("/api/segments/{id}/play/{}.wav", t.track));
            let exp: i64 = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("exp="))
                .and_then(|v| v.parse().ok())
                .expect("exp");
            let sig = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("sig="))
                .expect("sig");
            let ok = |file: &str| secret::verify_download(&[7; 32], id, file, exp, sig, 0);
            assert!(ok(&format!("segment-play:{}", t.track)));
            assert!(!ok(export::EXPORT_LINK_FILE), "not an export link");
            assert!(!ok("segment-play:take-8"), "nor another track's");
        }
        // A late joiner's `studio` carries them too.
        s.c.connect(4);
        let join = ClientMessage::Join {
            id: Some(1),
            room: "band".into(),
            name: "p4".into(),
            state: MediaState::default(),
            role: Role::Member,
            credentials: Credentials::default(),
            resume: None,
            server_offer: false,
        };
        let told = s.ask(4, join).into_iter().find_map(|m| match m {
            ServerMessage::Studio { state, .. } => Some(state.segments.clone()),
            _ => None,
        });
        let told = told.expect("studio state");
        assert_eq!(told[0].playback.len(), 2);
    }

    #[test]
    fn an_invite_fixes_the_studio_role_it_gives() {
        let mut s = Studio::session();
        let replies = s.ask(
            1,
            ClientMessage::CreateInvite {
                id: Some(6),
                uses: None,
                expires_in_s: None,
                not_before_ms: None,
                role: Role::Member,
                studio_role: Some(StudioRole::Listener),
            },
        );
        let invite = replies
            .iter()
            .find_map(|m| match m {
                ServerMessage::InviteCreated { invite, .. } => Some(invite.clone()),
                _ => None,
            })
            .expect("invite");
        assert_eq!(invite.studio_role, Some(StudioRole::Listener));
        let token = invite.token.expect("token");
        s.join(
            5,
            Role::Member,
            Credentials {
                invite: Some(token.clone()),
                ..Default::default()
            },
        );
        assert_eq!(s.role(5), Some(StudioRole::Listener));
        let state =
            s.c.rooms
                .room("band")
                .and_then(|r| r.member(5))
                .unwrap()
                .state;
        assert!(state.mic_muted, "a listener comes in silent");
        // An edited token is no invite (the room is public, so an edited link gets in as an artist,
        // never as anything the link did not say): in a private room it is refused.
        let private = ClientMessage::RoomSettings {
            id: Some(7),
            access: Some(parley_proto::Access::Private),
            password: None,
            locked: None,
            studio: None,
        };
        assert_eq!(refused(&s.ask(1, private)), None);
        let mut edited = token.into_bytes();
        edited[0] = if edited[0] == b'A' { b'B' } else { b'A' };
        s.c.connect(6);
        let replies = s.ask(
            6,
            ClientMessage::Join {
                id: Some(1),
                room: "band".into(),
                name: "mallory".into(),
                state: MediaState::default(),
                role: Role::Member,
                credentials: Credentials {
                    invite: Some(String::from_utf8(edited).unwrap()),
                    ..Default::default()
                },
                resume: None,
                server_offer: false,
            },
        );
        assert_eq!(refused(&replies), Some(ErrorCode::InvalidInvite));
    }

    #[test]
    fn take_progress_is_told_at_most_once_a_second() {
        let mut s = Studio::session();
        s.ask(2, take(1_000_000.0));
        let Some(TakeRequest::Create { token, .. }) = s.takes.first().cloned() else {
            panic!("no take asked for");
        };
        let mut info = TakeInfo {
            take_id: 7,
            participant_id: 2,
            name: "p2".into(),
            sample_rate: 48_000,
            channels: 1,
            started_at_ms: 1_000_000.0,
            state: TakeState::Uploading,
            received_samples: 0,
            total_samples: None,
            files: Vec::new(),
        };
        s.c.take_created(2, Some(5), "band", Ok(info.clone()), token.clone());
        s.pump();
        assert!(s.sent[&2].iter().any(|m| matches!(
            m,
            ServerMessage::TakeStarted { id: Some(5), upload_token, .. } if *upload_token == token
        )));
        let updates = |s: &mut Studio| {
            s.sent
                .remove(&3)
                .unwrap_or_default()
                .into_iter()
                .filter(|m| matches!(m, ServerMessage::TakeUpdated { .. }))
                .count()
        };
        updates(&mut s);
        for i in 1..=5 {
            info.received_samples = i * 96_000;
            s.c.set_clock_ms(1_000_000.0 + i as f64 * 100.0);
            s.c.take_changed("band", info.clone());
            s.pump();
        }
        assert_eq!(updates(&mut s), 0, "progress within a second is not told");
        s.c.set_clock_ms(1_001_200.0);
        s.c.take_changed("band", info.clone());
        s.pump();
        assert_eq!(updates(&mut s), 1);
        info.state = TakeState::Complete;
        info.total_samples = Some(info.received_samples);
        info.files = vec![RecordingFile {
            name: "take.flac".into(),
            kind: "take".into(),
            format: "flac".into(),
            participant_id: Some(2),
            participant_name: Some("p2".into()),
            bytes: 10,
            url: None,
        }];
        s.c.take_changed("band", info);
        s.pump();
        let sent = s.sent.remove(&3).unwrap_or_default();
        let complete = sent.iter().find_map(|m| match m {
            ServerMessage::TakeUpdated { take } => Some((**take).clone()),
            _ => None,
        });
        let complete = complete.expect("a state change is told at once");
        assert!(complete.files[0]
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("/api/takes/7/files/take.flac?exp=")));
        // The artist leaves mid-take: nothing to abandon (it ended). A new open take is abandoned.
        s.ask(2, take(1_001_000.0));
        s.c.take_created(
            2,
            None,
            "band",
            Ok(TakeInfo {
                take_id: 8,
                state: TakeState::Uploading,
                total_samples: None,
                files: Vec::new(),
                ..complete
            }),
            "t".into(),
        );
        s.pump();
        s.takes.clear();
        s.c.disconnect(2);
        s.pump();
        assert_eq!(s.takes, vec![TakeRequest::Abandon { take_id: 8 }]);
    }

    #[test]
    fn clock_sync_echoes_the_client_time() {
        let mut s = Studio::new();
        s.c.connect(1);
        s.c.set_clock_ms(1_234.567);
        let replies = s.ask(
            1,
            ClientMessage::ClockSync {
                id: Some(3),
                client_ms: 42.5,
            },
        );
        let clocks: Vec<&ServerMessage> = replies
            .iter()
            .filter(|m| matches!(m, ServerMessage::Clock { .. }))
            .collect();
        assert_eq!(
            clocks,
            vec![&ServerMessage::Clock {
                id: Some(3),
                client_ms: 42.5,
                server_ms: 1_234.567
            }]
        );
    }
}
