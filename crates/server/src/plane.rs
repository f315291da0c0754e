//! The control plane's shell: one tokio task that feeds the sans-IO [`Control`] with what connections,
//! media workers and the store report, and carries out what it decides: messages go to bounded
//! per-connection outboxes (serialized once however many receive them), commands to the worker
//! holding the room, durable work to the store thread.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use parley_proto::{ChatMessage, ClientMessage, RequestId, ServerMessage};
use parley_sfu::{MediaCounters, MediaEvent, MediaGauges, PeerDebug};
use tokio::sync::{mpsc, oneshot};

use crate::control::{
    take_info, AfterWrite, Control, Output, PasswordJob, PasswordResult, PasswordWork, RoomStatus,
    SessionId, StoreRequest, TakeRequest,
};
use crate::outbox::{Outbox, Queued};
use crate::secret;
use crate::store::{now_ms, Store};
use crate::takes::{NewTake, TakeStore};
use crate::worker::{WorkerCommand, WorkerSnapshot};

/// Everything the control plane is told, in one queue.
pub enum ControlInput {
    Connect {
        session: SessionId,
        outbox: Outbox,
        /// The client's address (for per-address limits and bans).
        addr: Option<std::net::IpAddr>,
    },
    Message {
        session: SessionId,
        message: ClientMessage,
    },
    Disconnect {
        session: SessionId,
        /// The connection broke (no close frame; not for not reading): a member keeps their place in
        /// their room a while (`control/resume.rs`).
        keep_place: bool,
    },
    /// An error for a message the connection refused itself (unreadable, too large, too many).
    Refused {
        session: SessionId,
        message: ServerMessage,
    },
    /// A media worker's event.
    Media(MediaEvent),
    /// The store did (or could not do) a write.
    Written {
        session: SessionId,
        request_id: Option<RequestId>,
        then: AfterWrite,
        stored: bool,
    },
    /// Argon2 work is done.
    PasswordDone {
        job: PasswordJob,
        result: PasswordResult,
    },
    ChatSaved {
        session: SessionId,
        request_id: Option<RequestId>,
        message: ChatMessage,
    },
    HistoryLoaded {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        messages: Vec<ChatMessage>,
        has_more: bool,
    },
    StoreFailed {
        session: SessionId,
        request_id: Option<RequestId>,
        what: &'static str,
    },
    Snapshot(oneshot::Sender<Snapshot>),
    /// A second has passed (idle rooms expire, chat retention runs).
    Tick,
    /// The admin token's hash as the store has it now.
    AdminHash(crate::secret::TokenHash),
    /// The recorder could not write a running recording.
    RecordingFailed {
        recording: i64,
        message: String,
    },
    /// The recorder made a recording's files (or could not).
    RecordingFinished {
        recording: i64,
        outcome: crate::control::RecordingOutcome,
    },
    RecordingsLoaded {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        recordings: Vec<parley_proto::RecordingInfo>,
    },
    RecordingDeleted {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        recording: i64,
        deleted: bool,
    },
    /// The take store made a take (or could not).
    TakeCreated {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        result: Result<parley_proto::TakeInfo, String>,
        token: String,
    },
    /// A take changed (a chunk came, it ended, it was made, it was abandoned).
    TakeChanged {
        room: String,
        take: parley_proto::TakeInfo,
    },
}

/// Inputs waiting for the control plane at most (connections wait; workers retry).
pub const INPUT_QUEUE: usize = 8192;

/// The live state of the whole server, for status pages and metrics.
pub struct Snapshot {
    pub rooms: Vec<RoomStatus>,
    pub peers: Vec<PeerDebug>,
    pub counters: MediaCounters,
    pub gauges: MediaGauges,
    pub refusals: u64,
    pub workers: usize,
    /// Levels not sent to clients that were behind, and connections closed for not reading.
    pub dropped_levels: u64,
    pub slow_closes: u64,
}

/// How often the control plane looks at the clock by itself.
const TICK: Duration = Duration::from_secs(1);

/// How long a snapshot waits for a worker.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

pub struct ControlPlane {
    control: Control,
    workers: Vec<mpsc::Sender<WorkerCommand>>,
    outboxes: HashMap<SessionId, Outbox>,
    /// Connections that came back as an earlier participant.
    sockets: Sockets,
    store_jobs: std::sync::mpsc::Sender<StoreRequest>,
    /// For results of work done off this task.
    inputs: mpsc::Sender<ControlInput>,
    dropped_levels: u64,
    slow_closes: u64,
    /// The HTTP side's copy of the admin token's hash (status endpoints).
    admin_hash: crate::metrics::AdminHash,
    recorder: std::sync::mpsc::Sender<crate::control::RecorderCommand>,
    takes: Arc<TakeStore>,
}

impl ControlPlane {
    pub fn new(
        control: Control,
        workers: Vec<mpsc::Sender<WorkerCommand>>,
        store: Arc<Store>,
        inputs: mpsc::Sender<ControlInput>,
        admin_hash: crate::metrics::AdminHash,
        recorder: std::sync::mpsc::Sender<crate::control::RecorderCommand>,
        takes: Arc<TakeStore>,
    ) -> Result<ControlPlane> {
        Ok(ControlPlane {
            takes,
            admin_hash,
            recorder,
            control,
            workers,
            outboxes: HashMap::new(),
            sockets: Sockets::default(),
            store_jobs: spawn_store_thread(store, inputs.clone())?,
            inputs,
            dropped_levels: 0,
            slow_closes: 0,
        })
    }

    /// Runs until every input sender is gone.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<ControlInput>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let input = tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => input,
                    None => return,
                },
                _ = tick.tick() => ControlInput::Tick,
            };
            self.handle(input);
            self.carry_out();
        }
    }

    fn handle(&mut self, input: ControlInput) {
        self.control.set_clock_ms(crate::store::now_ms_precise());
        match input {
            ControlInput::Connect {
                session,
                outbox,
                addr,
            } => {
                self.sockets.opened(session);
                self.outboxes.insert(session, outbox);
                self.control.connect_from(session, addr);
            }
            ControlInput::Message { session, message } => {
                if let Some(participant) = self.sockets.participant(session) {
                    self.control
                        .handle_message(participant, message, Instant::now())
                }
            }
            ControlInput::Disconnect {
                session,
                keep_place,
            } => {
                if let Some(participant) = self.sockets.closed(session) {
                    if keep_place {
                        self.control.connection_lost(participant);
                    } else {
                        self.control.disconnect(participant);
                    }
                    self.outboxes.remove(&participant);
                }
            }
            ControlInput::Refused { session, message } => {
                if let Some(participant) = self.sockets.participant(session) {
                    self.control.reply(participant, message)
                }
            }
            ControlInput::Media(event) => self.control.media_event(event),
            ControlInput::Written {
                session,
                request_id,
                then,
                stored,
            } => self
                .control
                .written(session, request_id, then, stored, Instant::now()),
            ControlInput::PasswordDone { job, result } => {
                self.control.password_done(job, result, Instant::now())
            }
            ControlInput::ChatSaved {
                session,
                request_id,
                message,
            } => self.control.chat_saved(session, request_id, message),
            ControlInput::HistoryLoaded {
                session,
                request_id,
                room,
                messages,
                has_more,
            } => self
                .control
                .history_loaded(session, request_id, room, (messages, has_more)),
            ControlInput::StoreFailed {
                session,
                request_id,
                what,
            } => self.control.store_failed(session, request_id, what),
            ControlInput::Snapshot(reply) => self.snapshot(reply),
            ControlInput::Tick => self.control.tick(),
            ControlInput::RecordingFailed { recording, message } => {
                self.control.recording_failed(recording, message)
            }
            ControlInput::RecordingFinished { recording, outcome } => {
                self.control.recording_finished(recording, outcome)
            }
            ControlInput::RecordingsLoaded {
                session,
                request_id,
                room,
                recordings,
            } => self
                .control
                .recordings_loaded(session, request_id, room, recordings),
            ControlInput::RecordingDeleted {
                session,
                request_id,
                room,
                recording,
                deleted,
            } => self
                .control
                .recording_deleted(session, request_id, room, recording, deleted),
            ControlInput::TakeCreated {
                session,
                request_id,
                room,
                result,
                token,
            } => self
                .control
                .take_created(session, request_id, &room, result, token),
            ControlInput::TakeChanged { room, take } => self.control.take_changed(&room, take),
            ControlInput::AdminHash(hash) => {
                *self.admin_hash.write().unwrap_or_else(|p| p.into_inner()) = hash;
                self.control.admin_hash_read(hash);
            }
        }
    }

    fn carry_out(&mut self) {
        // Closing a slow connection makes it leave its room, which produces more outputs.
        loop {
            let outputs: Vec<Output> = self.control.drain_outputs().collect();
            if outputs.is_empty() {
                return;
            }
            let mut too_slow = Vec::new();
            for output in outputs {
                match output {
                    Output::Send { sessions, message } => {
                        if sessions.is_empty() {
                            continue;
                        }
                        let droppable = matches!(message, ServerMessage::Levels { .. });
                        let text: axum::extract::ws::Utf8Bytes = message.to_json().into();
                        for session in sessions {
                            let Some(outbox) = self.outboxes.get(&session) else {
                                continue;
                            };
                            match outbox.push(text.clone(), droppable) {
                                Queued::Yes | Queued::Closed => {}
                                Queued::Dropped => self.dropped_levels += 1,
                                Queued::Overflow => too_slow.push(session),
                            }
                        }
                    }
                    Output::Media { worker, command } => {
                        let Some(tx) = self.workers.get(worker) else {
                            continue;
                        };
                        if let Err(e) = tx.try_send(WorkerCommand::Media(command)) {
                            tracing::error!(worker, "media worker not taking commands: {e}");
                        }
                    }
                    Output::Takes(request) => self.take_work(request),
                    Output::Store(request) => {
                        if let StoreRequest::Write {
                            write: crate::store::StoreWrite::DeleteRoom { room },
                            ..
                        } = &request
                        {
                            self.delete_takes(room.clone());
                        }
                        if self.store_jobs.send(request).is_err() {
                            tracing::error!("the store thread is gone");
                        }
                    }
                    Output::Password(job) => self.password_work(job),
                    Output::Rebind {
                        socket,
                        participant,
                    } => {
                        if let Some(mut old) = self.outboxes.remove(&participant) {
                            old.close("you joined again from another connection".into());
                        }
                        if let Some(outbox) = self.outboxes.remove(&socket) {
                            self.outboxes.insert(participant, outbox);
                        }
                        self.sockets.rebind(socket, participant);
                    }
                    Output::Recorder(command) => {
                        if self.recorder.send(command).is_err() {
                            tracing::error!("the recorder thread is gone");
                        }
                    }
                }
            }
            for session in too_slow {
                if let Some(mut outbox) = self.outboxes.remove(&session) {
                    self.slow_closes += 1;
                    tracing::info!(session, "closing a connection that stopped reading");
                    outbox.close(format!(
                        "you stopped reading: over {} messages or {} KiB were waiting",
                        crate::outbox::MAX_MESSAGES,
                        crate::outbox::MAX_BYTES / 1024
                    ));
                }
                self.control.disconnect(session);
            }
        }
    }

    /// The take store's SQLite and disk work: on the blocking pool, reported back as inputs.
    fn take_work(&self, request: TakeRequest) {
        let takes = self.takes.clone();
        let inputs = self.inputs.clone();
        let created_at_ms = now_ms();
        tokio::spawn(async move {
            let input = tokio::task::spawn_blocking(move || match request {
                TakeRequest::Create {
                    session,
                    request_id,
                    room,
                    session_id,
                    participant,
                    name,
                    sample_rate,
                    channels,
                    started_at_ms,
                    token,
                    token_hash,
                } => {
                    let result = takes
                        .create(NewTake {
                            room: room.clone(),
                            session_id,
                            participant_id: participant,
                            name,
                            sample_rate,
                            channels,
                            started_at_ms,
                            token_hash,
                            created_at_ms,
                        })
                        .map(|t| take_info(&t))
                        .map_err(|e| {
                            tracing::error!("take not made: {e}");
                            e.message()
                        });
                    Some(ControlInput::TakeCreated {
                        session,
                        request_id,
                        room,
                        result,
                        token,
                    })
                }
                TakeRequest::Abandon { take_id } => match takes.mark_incomplete(take_id) {
                    Ok(t) => Some(ControlInput::TakeChanged {
                        room: t.room.clone(),
                        take: take_info(&t),
                    }),
                    Err(e) => {
                        tracing::warn!(take = take_id, "not marked incomplete: {e}");
                        None
                    }
                },
            })
            .await;
            if let Ok(Some(input)) = input {
                let _ = inputs.send(input).await;
            }
        });
    }

    /// A deleted room's takes go with it.
    fn delete_takes(&self, room: String) {
        let takes = self.takes.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = takes.delete_room(&room) {
                tracing::warn!(room = %room, "takes not deleted: {e}");
            }
        });
    }

    /// Argon2 takes tens of milliseconds: on tokio's blocking pool, never on this task.
    fn password_work(&self, job: PasswordJob) {
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let work = job.clone();
            let result = tokio::task::spawn_blocking(move || match work.work {
                PasswordWork::Verify { hash } => {
                    PasswordResult::Matched(secret::verify_password(&work.password, &hash))
                }
                PasswordWork::Hash => match secret::hash_password(&work.password) {
                    Ok(h) => PasswordResult::Hashed(h),
                    Err(e) => {
                        tracing::error!("password not hashed: {e}");
                        PasswordResult::Failed
                    }
                },
            })
            .await
            .unwrap_or(PasswordResult::Failed);
            let _ = inputs
                .send(ControlInput::PasswordDone { job, result })
                .await;
        });
    }

    /// Answers with the control plane's state and every worker's, gathered off this task.
    fn snapshot(&self, reply: oneshot::Sender<Snapshot>) {
        let rooms = self.control.status();
        let refusals = self.control.refusals();
        let workers = self.workers.clone();
        let room_of: HashMap<u64, String> = rooms
            .iter()
            .flat_map(|r| r.participants.iter().map(|p| (p.id, r.name.clone())))
            .collect();
        let (dropped_levels, slow_closes) = (self.dropped_levels, self.slow_closes);
        tokio::spawn(async move {
            let mut snapshot = Snapshot {
                rooms,
                peers: Vec::new(),
                counters: MediaCounters::default(),
                gauges: MediaGauges::default(),
                refusals,
                workers: workers.len(),
                dropped_levels,
                slow_closes,
            };
            for worker in workers {
                let (tx, rx) = oneshot::channel::<WorkerSnapshot>();
                if worker.try_send(WorkerCommand::Snapshot(tx)).is_err() {
                    continue;
                }
                let Ok(Ok(w)) = tokio::time::timeout(SNAPSHOT_WAIT, rx).await else {
                    continue;
                };
                snapshot.counters.add(&w.counters);
                snapshot.gauges.rooms += w.gauges.rooms;
                snapshot.gauges.peers += w.gauges.peers;
                snapshot.gauges.tracks += w.gauges.tracks;
                snapshot.peers.extend(w.peers);
            }
            for p in &mut snapshot.peers {
                p.room = room_of.get(&p.participant_id).cloned();
            }
            snapshot.peers.sort_by_key(|p| p.participant_id);
            let _ = reply.send(snapshot);
        });
    }
}

/// SQLite work runs on its own thread, one job at a time, so chat keeps its order and neither plane
/// ever waits for a disk. Results come back as control-plane inputs.
fn spawn_store_thread(
    store: Arc<Store>,
    inputs: mpsc::Sender<ControlInput>,
) -> Result<std::sync::mpsc::Sender<StoreRequest>> {
    let (jobs, queue) = std::sync::mpsc::channel::<StoreRequest>();
    std::thread::Builder::new()
        .name("parley-store".into())
        .spawn(move || {
            for request in queue {
                let input = match request {
                    StoreRequest::LoadRecordings {
                        session,
                        request_id,
                        room,
                    } => match store.recordings(&room) {
                        Ok(recordings) => ControlInput::RecordingsLoaded {
                            session,
                            request_id,
                            room,
                            recordings,
                        },
                        Err(e) => {
                            tracing::error!(room = %room, "recordings not read: {e:#}");
                            ControlInput::StoreFailed {
                                session,
                                request_id,
                                what: "the recordings could not be read",
                            }
                        }
                    },
                    StoreRequest::DeleteRecording {
                        session,
                        request_id,
                        room,
                        recording,
                    } => match store.delete_recording(&room, recording) {
                        Ok(deleted) => ControlInput::RecordingDeleted {
                            session,
                            request_id,
                            room,
                            recording,
                            deleted,
                        },
                        Err(e) => {
                            tracing::error!(room = %room, recording, "recording not deleted: {e:#}");
                            ControlInput::StoreFailed {
                                session,
                                request_id,
                                what: "the recording could not be deleted",
                            }
                        }
                    },
                    StoreRequest::ReadAdminHash => match crate::admin::token_hash(&store) {
                        Ok(hash) => ControlInput::AdminHash(hash),
                        Err(e) => {
                            tracing::error!("the admin token could not be read: {e:#}");
                            continue;
                        }
                    },
                    StoreRequest::PruneChat { before_ms } => {
                        match store.prune_chat(before_ms) {
                            Ok(0) => {}
                            Ok(n) => tracing::info!("chat retention: {n} old messages deleted"),
                            Err(e) => tracing::error!("chat retention failed: {e:#}"),
                        }
                        continue;
                    }
                    StoreRequest::Write {
                        session,
                        request_id,
                        write,
                        then,
                    } => {
                        let stored = match store.write(&write, now_ms()) {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::error!("a change was not saved: {e:#}");
                                false
                            }
                        };
                        ControlInput::Written {
                            session,
                            request_id,
                            then,
                            stored,
                        }
                    }
                    StoreRequest::SaveChat {
                        session,
                        request_id,
                        room,
                        author_id,
                        author,
                        text,
                    } => match store.add_chat(&room, author_id, &author, &text, now_ms()) {
                        Ok(message) => ControlInput::ChatSaved {
                            session,
                            request_id,
                            message,
                        },
                        Err(e) => {
                            tracing::error!(room = %room, "chat message not saved: {e:#}");
                            ControlInput::StoreFailed {
                                session,
                                request_id,
                                what: "the message could not be saved; try again",
                            }
                        }
                    },
                    StoreRequest::LoadHistory {
                        session,
                        request_id,
                        room,
                        before,
                        limit,
                    } => match store.history(&room, before, limit) {
                        Ok((messages, has_more)) => ControlInput::HistoryLoaded {
                            session,
                            request_id,
                            room,
                            messages,
                            has_more,
                        },
                        Err(e) => {
                            tracing::error!(room = %room, "history not read: {e:#}");
                            ControlInput::StoreFailed {
                                session,
                                request_id,
                                what: "history could not be read",
                            }
                        }
                    },
                };
                if inputs.blocking_send(input).is_err() {
                    return;
                }
            }
        })
        .context("starting the store thread")?;
    Ok(jobs)
}

/// Which participant each connection speaks for. A connection is its own participant (same id)
/// until it comes back as an earlier one ([`Output::Rebind`]); the connection that spoke for that
/// participant before, if still open, is then stale: what it sends is ignored, and its close is not
/// theirs.
#[derive(Debug, Default)]
struct Sockets {
    open: HashSet<SessionId>,
    stale: HashSet<SessionId>,
    /// Connection → the participant it was rebound to.
    participant_of: HashMap<SessionId, SessionId>,
    /// Participant → the connection that now speaks for them (only for rebound participants).
    connection_of: HashMap<SessionId, SessionId>,
}

impl Sockets {
    fn opened(&mut self, socket: SessionId) {
        self.open.insert(socket);
    }

    /// The participant connection `socket` speaks for; `None`: a stale connection.
    fn participant(&self, socket: SessionId) -> Option<SessionId> {
        if self.stale.contains(&socket) {
            return None;
        }
        Some(self.participant_of.get(&socket).copied().unwrap_or(socket))
    }

    fn rebind(&mut self, socket: SessionId, participant: SessionId) {
        let previous = self
            .connection_of
            .insert(participant, socket)
            .unwrap_or(participant);
        if previous != socket {
            self.participant_of.remove(&previous);
            if self.open.contains(&previous) {
                self.stale.insert(previous);
            }
        }
        self.participant_of.insert(socket, participant);
    }

    /// `socket` closed: the participant that loses its connection, if any.
    fn closed(&mut self, socket: SessionId) -> Option<SessionId> {
        self.open.remove(&socket);
        if self.stale.remove(&socket) {
            return None;
        }
        let participant = self.participant_of.remove(&socket).unwrap_or(socket);
        if self.connection_of.get(&participant) == Some(&socket) {
            self.connection_of.remove(&participant);
        }
        Some(participant)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.open.is_empty()
            && self.stale.is_empty()
            && self.participant_of.is_empty()
            && self.connection_of.is_empty()
    }
}

#[cfg(test)]
mod socket_tests {
    use super::Sockets;

    #[test]
    fn a_rebound_connection_speaks_for_its_participant_and_the_old_one_for_nobody() {
        let mut s = Sockets::default();
        for socket in [1, 2, 3] {
            s.opened(socket);
        }
        assert_eq!(s.participant(1), Some(1));
        // Connection 2 comes back as participant 1 while 1's own connection is still open.
        s.rebind(2, 1);
        assert_eq!(s.participant(2), Some(1));
        assert_eq!(s.participant(1), None, "the old connection is stale");
        assert_eq!(s.closed(1), None, "its close is not the participant's");
        assert_eq!(s.participant(2), Some(1));
        // Connection 3 comes back as 1 in turn: 2 is stale now.
        s.rebind(3, 1);
        assert_eq!(s.participant(2), None);
        assert_eq!(s.closed(2), None);
        assert_eq!(s.closed(3), Some(1));
        assert!(s.is_empty(), "nothing kept: {s:?}");
    }

    #[test]
    fn coming_back_after_the_old_connection_closed_keeps_nothing_stale() {
        let mut s = Sockets::default();
        s.opened(1);
        assert_eq!(s.closed(1), Some(1));
        s.opened(5);
        s.rebind(5, 1);
        assert_eq!(s.participant(5), Some(1));
        assert_eq!(s.closed(5), Some(1));
        assert!(s.is_empty(), "nothing kept: {s:?}");
    }
}
