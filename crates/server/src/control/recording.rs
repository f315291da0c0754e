//! Room recordings: any member starts one (one at a time per room) and any member stops it; everyone
//! in the room is told, late joiners too. The recorder (`recorder.rs`) writes and makes the files;
//! here are the rules, the state people see and the metadata in the store. Downloads are links the
//! server signs for members (`secret::sign_download`), to files named by the server.

use parley_proto::{
    ErrorCode, ParticipantId, RecordingFile, RecordingInfo, RecordingNow, RecordingState,
    RequestId, Role, ServerMessage,
};
use parley_sfu::{MediaCommand, RoomId};

use super::{AfterWrite, Control, Output, SessionId, StoreRequest};
use crate::rooms::Refusal;
use crate::store::StoreWrite;

/// How long a download link works.
pub const DOWNLOAD_LINK_LIFE_MS: i64 = 12 * 3600 * 1000;

/// A recording running in a room.
#[derive(Debug, Clone)]
pub(super) struct ActiveRecording {
    pub now: RecordingNow,
    pub room_id: RoomId,
    pub worker: usize,
}

/// What the recorder is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecorderCommand {
    /// Packets of `room` (on its worker) go into recording `recording` from now on.
    Start {
        recording: i64,
        room: RoomId,
        started_at_ms: i64,
        names: Vec<(ParticipantId, String)>,
    },
    /// Someone joined the recorded room (their name goes into their files).
    Name {
        recording: i64,
        participant: ParticipantId,
        name: String,
    },
    /// Stop, and make the files.
    Stop { recording: i64 },
    /// The server stopped while it ran: make the files from what is on disk.
    Recover { recording: i64, started_at_ms: i64 },
}

/// The files of a finished recording, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingOutcome {
    pub state: RecordingState,
    pub duration_ms: Option<i64>,
    pub files: Vec<RecordingFile>,
    pub message: Option<String>,
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

impl Control {
    /// The recording id that comes after the highest stored one.
    pub fn set_last_recording_id(&mut self, id: i64) {
        self.next_recording = self.next_recording.max(id + 1);
    }

    /// The key download links are signed with (the HTTP side checks them with the same key).
    pub fn set_download_key(&mut self, key: [u8; 32]) {
        self.download_key = Some(key);
    }

    /// A recording the last run left unfinished: its files are being made (it is listed so).
    pub fn note_interrupted_recording(&mut self, recording: i64, room: String, started_at_ms: i64) {
        self.finishing.insert(
            recording,
            RecordingInfo::new(recording, room, RecordingState::Processing, started_at_ms),
        );
    }

    /// The room `session` is a member (not a viewer) of.
    fn member_room(&self, session: SessionId) -> Result<String, Refusal> {
        let room = self
            .rooms
            .room_of(session)
            .ok_or_else(|| refusal(ErrorCode::NotInRoom, "you are not in a room"))?;
        match room.member(session) {
            Some(m) if m.role == Role::Member => Ok(room.name().to_string()),
            _ => Err(refusal(
                ErrorCode::Forbidden,
                "viewers cannot start or stop recordings",
            )),
        }
    }

    /// What a joiner is told about the room's recording.
    pub(super) fn recording_now(&self, room: &str) -> Option<RecordingNow> {
        self.recordings.get(room).map(|r| r.now.clone())
    }

    pub(super) fn recording_start(&mut self, session: SessionId, id: Option<RequestId>) {
        let room = match self.member_room(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        if let Some(running) = self.recordings.get(&room) {
            let message = format!(
                "{} is being recorded already (started by {})",
                room, running.now.started_by
            );
            return self.refuse(session, id, refusal(ErrorCode::RecordingRunning, message));
        }
        if self.starting_recordings.contains(&room) {
            return self.refuse(
                session,
                id,
                refusal(ErrorCode::RecordingRunning, "a recording is starting"),
            );
        }
        let name = self.name_of(session).unwrap_or_default();
        let recording = self.next_recording;
        self.next_recording += 1;
        self.starting_recordings.insert(room.clone());
        let started_at_ms = self.unix_ms;
        self.write(
            session,
            id,
            StoreWrite::RecordingStarted {
                id: recording,
                room: room.clone(),
                started_by: name.clone(),
                started_at_ms,
            },
            AfterWrite::RecordingStarted {
                room,
                recording,
                started_by: name,
                started_at_ms,
            },
        );
    }

    /// The recording is stored: it runs from now on.
    pub(super) fn recording_started(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        room: String,
        now: RecordingNow,
    ) {
        self.starting_recordings.remove(&room);
        let Some(placement) = self.placements.get(&room).copied() else {
            // Everyone left while it was being stored.
            self.recording_finished(
                now.recording_id,
                RecordingOutcome {
                    state: RecordingState::Failed,
                    duration_ms: Some(0),
                    files: Vec::new(),
                    message: Some("everyone left before it started".into()),
                },
            );
            return;
        };
        let names = self
            .rooms
            .room(&room)
            .map(|r| r.members().iter().map(|m| (m.id, m.name.clone())).collect())
            .unwrap_or_default();
        self.outputs.push(Output::Recorder(RecorderCommand::Start {
            recording: now.recording_id,
            room: placement.id,
            started_at_ms: now.started_at_ms,
            names,
        }));
        self.media(
            placement.worker,
            MediaCommand::SetRecording {
                room: placement.id,
                on: true,
            },
        );
        tracing::info!(room = %room, recording = now.recording_id, by = %now.started_by, "recording started");
        self.recordings.insert(
            room.clone(),
            ActiveRecording {
                now: now.clone(),
                room_id: placement.id,
                worker: placement.worker,
            },
        );
        self.studio_recording_started(&room, now.recording_id);
        self.tell_recording_state(&room, session, id, Some(now), None, None);
    }

    pub(super) fn recording_stop(&mut self, session: SessionId, id: Option<RequestId>) {
        let room = match self.member_room(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        if !self.recordings.contains_key(&room) {
            let message = format!("{room} is not being recorded");
            return self.refuse(session, id, refusal(ErrorCode::NotRecording, message));
        }
        let by = self.name_of(session);
        self.stop_recording(&room, by, None, session, id);
    }

    /// Ends `room`'s recording: `by` someone, or on its own (`message` says why).
    pub(super) fn stop_recording(
        &mut self,
        room: &str,
        by: Option<String>,
        message: Option<String>,
        session: SessionId,
        id: Option<RequestId>,
    ) {
        let Some(active) = self.recordings.remove(room) else {
            return;
        };
        let recording = active.now.recording_id;
        self.media(
            active.worker,
            MediaCommand::SetRecording {
                room: active.room_id,
                on: false,
            },
        );
        self.outputs
            .push(Output::Recorder(RecorderCommand::Stop { recording }));
        self.finishing.insert(
            recording,
            RecordingInfo {
                recording_id: recording,
                room: room.to_string(),
                state: RecordingState::Processing,
                started_at_ms: active.now.started_at_ms,
                started_by: active.now.started_by.clone(),
                stopped_at_ms: Some(self.unix_ms),
                stopped_by: by.clone(),
                duration_ms: Some(self.unix_ms - active.now.started_at_ms),
                files: Vec::new(),
                message: message.clone(),
                url_expires_at_ms: None,
            },
        );
        self.write(
            0,
            None,
            StoreWrite::RecordingStopped {
                id: recording,
                stopped_by: by.clone(),
                stopped_at_ms: self.unix_ms,
            },
            AfterWrite::Nothing,
        );
        tracing::info!(room, recording, by = ?by, "recording stopped");
        self.tell_recording_state(room, session, id, None, by, message);
    }

    /// Everyone in `room` hears of its recording's state; `session` with its request id.
    fn tell_recording_state(
        &mut self,
        room: &str,
        session: SessionId,
        id: Option<RequestId>,
        recording: Option<RecordingNow>,
        stopped_by: Option<String>,
        message: Option<String>,
    ) {
        let message = ServerMessage::RecordingState {
            id: None,
            room: room.to_string(),
            recording: recording.map(Box::new),
            stopped_by,
            message,
        };
        self.outputs.push(Output::Send {
            sessions: self.members_except(room, session),
            message: message.clone(),
        });
        if self.sessions.contains(&session) {
            let ServerMessage::RecordingState {
                room,
                recording,
                stopped_by,
                message,
                ..
            } = message
            else {
                return;
            };
            self.send(
                session,
                ServerMessage::RecordingState {
                    id,
                    room,
                    recording,
                    stopped_by,
                    message,
                },
            );
        }
    }

    /// A live write failed (the disk is full, say): the recording stops, and the room is told.
    pub fn recording_failed(&mut self, recording: i64, message: String) {
        let Some(room) = self
            .recordings
            .iter()
            .find(|(_, r)| r.now.recording_id == recording)
            .map(|(room, _)| room.clone())
        else {
            return;
        };
        self.stop_recording(&room, None, Some(message), 0, None);
    }

    /// The recorder made the files (or could not): stored, then the room hears of it.
    pub fn recording_finished(&mut self, recording: i64, outcome: RecordingOutcome) {
        let info = self.finishing.remove(&recording);
        let mut info =
            info.unwrap_or_else(|| RecordingInfo::new(recording, String::new(), outcome.state, 0));
        info.state = outcome.state;
        info.duration_ms = outcome.duration_ms.or(info.duration_ms);
        info.files = outcome.files.clone();
        info.message = outcome.message.clone().or(info.message);
        tracing::info!(
            recording,
            state = outcome.state.as_str(),
            files = outcome.files.len(),
            "recording finished"
        );
        self.write(
            0,
            None,
            StoreWrite::RecordingFinished {
                id: recording,
                state: outcome.state,
                duration_ms: info.duration_ms,
                files: outcome.files,
                message: info.message.clone(),
            },
            AfterWrite::RecordingFinished {
                info: Box::new(info),
            },
        );
    }

    /// Stored: the room's members get it with fresh links.
    pub(super) fn recording_stored(&mut self, mut info: Box<RecordingInfo>) {
        if info.room.is_empty() {
            return;
        }
        self.sign_links(&mut info);
        let members = self.members_except(&info.room, 0);
        self.outputs.push(Output::Send {
            sessions: members,
            message: ServerMessage::RecordingUpdated { recording: info },
        });
    }

    pub(super) fn list_recordings(&mut self, session: SessionId, id: Option<RequestId>) {
        let Some(room) = self.rooms.room_of(session).map(|r| r.name().to_string()) else {
            return self.refuse(
                session,
                id,
                refusal(ErrorCode::NotInRoom, "you are not in a room"),
            );
        };
        self.outputs
            .push(Output::Store(StoreRequest::LoadRecordings {
                session,
                request_id: id,
                room,
            }));
    }

    /// The store read `room`'s recordings for `session`: sent if it is still in that room.
    pub fn recordings_loaded(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        room: String,
        mut recordings: Vec<RecordingInfo>,
    ) {
        if !self.in_room(session, &room) {
            return self.refuse(
                session,
                id,
                refusal(ErrorCode::NotInRoom, "you are not in that room any more"),
            );
        }
        for r in &mut recordings {
            if let Some(running) = self.recordings.get(&room) {
                if running.now.recording_id == r.recording_id {
                    r.duration_ms = Some(self.unix_ms - r.started_at_ms);
                }
            }
            self.sign_links(r);
        }
        self.send(
            session,
            ServerMessage::Recordings {
                id,
                room,
                recordings,
            },
        );
    }

    /// Admin: `room`'s recordings go, but one running or being made.
    pub(super) fn delete_recordings(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        room: &str,
    ) {
        if !self.is_admin(session) {
            return self.refuse(
                session,
                id,
                refusal(ErrorCode::Forbidden, "only the admin can do that"),
            );
        }
        if self.rooms.summary_of(room).is_none() {
            let message = format!("there is no room called {room}");
            return self.refuse(session, id, refusal(ErrorCode::NoSuchRoom, message));
        }
        let keep: Vec<i64> = self
            .recordings
            .get(room)
            .map(|r| r.now.recording_id)
            .into_iter()
            .chain(
                self.finishing
                    .iter()
                    .filter(|(_, info)| info.room == room)
                    .map(|(id, _)| *id),
            )
            .collect();
        self.write(
            session,
            id,
            StoreWrite::DeleteRecordings {
                room: room.to_string(),
                keep,
            },
            AfterWrite::RecordingsDeleted {
                room: room.to_string(),
            },
        );
    }

    /// An owner (or the admin, in the room): one finished recording of the room goes, with its files.
    pub(super) fn delete_recording(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        recording: i64,
    ) {
        let room = match self.owned_room(session) {
            Ok(room) => room,
            Err(mut r) => {
                if r.code == ErrorCode::Forbidden {
                    r.message = "only the room's owners can delete its recordings".into();
                }
                return self.refuse(session, id, r);
            }
        };
        let running = self
            .recordings
            .get(&room)
            .is_some_and(|r| r.now.recording_id == recording);
        if running {
            let message = "that recording is still running: stop it first";
            return self.refuse(session, id, refusal(ErrorCode::RecordingRunning, message));
        }
        if self.finishing.contains_key(&recording) {
            let message = "that recording's files are still being made: try again in a moment";
            return self.refuse(session, id, refusal(ErrorCode::RecordingRunning, message));
        }
        self.outputs
            .push(Output::Store(StoreRequest::DeleteRecording {
                session,
                request_id: id,
                room,
                recording,
            }));
    }

    /// The store deleted `recording` of `room` (or found no such recording there).
    pub fn recording_deleted(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        room: String,
        recording: i64,
        deleted: bool,
    ) {
        if !deleted {
            let message = format!("{room} has no recording {recording}");
            return self.refuse(session, id, refusal(ErrorCode::NoSuchRecording, message));
        }
        tracing::info!(room = %room, recording, "recording deleted by an owner");
        let members = self.members_except(&room, 0);
        self.outputs.push(Output::Send {
            sessions: members,
            message: ServerMessage::RecordingsDeleted {
                room,
                recording_id: Some(recording),
            },
        });
        if self.sessions.contains(&session) {
            self.send(session, ServerMessage::Ok { id });
        }
    }

    /// Stored: the room's members list their recordings again.
    pub(super) fn recordings_deleted(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        room: String,
    ) {
        tracing::info!(room = %room, "recordings deleted by the admin");
        let members = self.members_except(&room, 0);
        self.outputs.push(Output::Send {
            sessions: members,
            message: ServerMessage::RecordingsDeleted {
                room,
                recording_id: None,
            },
        });
        if self.sessions.contains(&session) {
            self.send(session, ServerMessage::Ok { id });
        }
    }

    /// Download links for each file, valid for [`DOWNLOAD_LINK_LIFE_MS`].
    fn sign_links(&self, info: &mut RecordingInfo) {
        let Some(key) = self.download_key else {
            return;
        };
        let expires = self.unix_ms + DOWNLOAD_LINK_LIFE_MS;
        info.url_expires_at_ms = Some(expires);
        for file in &mut info.files {
            let sig = crate::secret::sign_download(&key, info.recording_id, &file.name, expires);
            file.url = Some(format!(
                "/api/recordings/{}/{}?exp={expires}&sig={sig}",
                info.recording_id, file.name
            ));
        }
    }
}
