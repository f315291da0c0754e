//! parley's sans-IO media core.
//!
//! [`Sfu`] holds every room of one worker, the participants' WebRTC connections ([`Peer`]) and the
//! signalling state. It is fed with client messages, received datagrams and the time, and hands back
//! datagrams to send and messages for clients. It never touches a socket or reads a clock, so it is
//! deterministic and testable without a network.

mod peer;
mod rate;
mod room;
mod speaker;
pub mod srtp;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use parley_proto::{
    validate_chat_text, ChatMessage, ClientMessage, ErrorCode, Level, MediaStateChange,
    ParticipantId, ParticipantInfo, RequestId, Role, ServerMessage, MAX_HISTORY_PAGE,
};
use serde::Serialize;
use str0m::media::KeyframeRequestKind;
use str0m::net::{Protocol, Receive};
use str0m::Input;

pub use peer::{Forwarded, Peer, PeerDebug, PeerEvent, TrackSource, Transmit};
pub use rate::{RateLimit, TokenBucket};
pub use room::{Refusal, Room, Rooms, TrackKind};
pub use speaker::{SpeakerConfig, SpeakerDetector, SPEAKER_TICK};

/// A signalling connection (one browser tab). When it joins a room, it is the participant of the same id.
pub type SessionId = ParticipantId;

#[derive(Debug, Clone)]
pub struct SfuConfig {
    pub max_participants: usize,
    /// Media addresses to offer, as `(advertised, local socket)`.
    pub candidates: Vec<(SocketAddr, SocketAddr)>,
    pub server_version: String,
    /// Longest chat message, in characters.
    pub chat_max_chars: usize,
    /// Chat messages per participant.
    pub chat_rate: RateLimit,
    pub speaker: SpeakerConfig,
}

/// A room as `/api/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RoomStatus {
    pub name: String,
    pub max_participants: usize,
    pub active_speaker: Option<ParticipantId>,
    pub participants: Vec<ParticipantInfo>,
}

impl SfuConfig {
    pub fn new(candidates: Vec<(SocketAddr, SocketAddr)>) -> SfuConfig {
        SfuConfig {
            max_participants: 16,
            candidates,
            server_version: String::new(),
            chat_max_chars: parley_proto::MAX_CHAT_CHARS,
            chat_rate: RateLimit {
                per_second: 5.0,
                burst: 10.0,
            },
            speaker: SpeakerConfig::default(),
        }
    }
}

/// Durable work the core asks the shell to do; the shell reports back (e.g. [`Sfu::chat_saved`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreRequest {
    CreateRoom {
        name: String,
    },
    /// Store this message, then call [`Sfu::chat_saved`] with it.
    SaveChat {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        author_id: ParticipantId,
        author: String,
        text: String,
    },
    /// Answer `session` with `chat_history` for `room`.
    LoadHistory {
        session: SessionId,
        request_id: Option<RequestId>,
        room: String,
        before: Option<i64>,
        limit: u32,
    },
}

/// Counters for operators, exported as metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct SfuCounters {
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Forwarded packets sealed on the direct SRTP path (the rest went through str0m).
    pub direct_packets: u64,
    pub dropped_muted_packets: u64,
    pub unrouted_datagrams: u64,
    /// Requests refused with an `error`.
    pub refusals: u64,
    pub speaker_switches: u64,
}

/// What is live now.
#[derive(Debug, Clone, Copy, Default)]
pub struct SfuGauges {
    pub rooms: usize,
    pub participants: usize,
    pub tracks: usize,
    pub speaker_switches: u64,
}

pub struct Sfu {
    config: SfuConfig,
    rooms: Rooms,
    sessions: BTreeSet<SessionId>,
    peers: HashMap<ParticipantId, Peer>,
    /// Remote address → participant, learned from ICE so later datagrams skip the search.
    routes: HashMap<SocketAddr, ParticipantId>,
    signals: Vec<(SessionId, ServerMessage)>,
    transmits: Vec<Transmit>,
    /// Sent datagram buffers handed back by the shell ([`Sfu::recycle`]), reused for direct sends.
    spare_buffers: Vec<Vec<u8>>,
    store_requests: Vec<StoreRequest>,
    chat_buckets: HashMap<ParticipantId, TokenBucket>,
    /// Dominant-speaker state per room with people in it.
    speakers: HashMap<String, SpeakerDetector>,
    /// Rooms whose last `levels` message had a sound in it (so silence is sent once).
    loud_rooms: BTreeSet<String>,
    next_speaker_tick: Instant,
    /// Subscribers written to and not yet driven (see [`Sfu::drain_transmits`]).
    dirty: Vec<ParticipantId>,
    /// The latest time any input carried.
    now: Instant,
    /// Events waiting to be acted on, in order, tagged with the participant they came from.
    queue: VecDeque<(ParticipantId, PeerEvent)>,
    scratch_events: Vec<PeerEvent>,
    scratch_ids: Vec<ParticipantId>,
    counters: SfuCounters,
}

impl Sfu {
    pub fn new(config: SfuConfig) -> Sfu {
        Sfu::new_at(config, Instant::now())
    }

    /// A core whose clock starts at `now` (tests drive a fake clock).
    pub fn new_at(config: SfuConfig, now: Instant) -> Sfu {
        Sfu {
            rooms: Rooms::new(config.max_participants),
            config,
            sessions: BTreeSet::new(),
            peers: HashMap::new(),
            routes: HashMap::new(),
            signals: Vec::new(),
            transmits: Vec::new(),
            spare_buffers: Vec::new(),
            store_requests: Vec::new(),
            chat_buckets: HashMap::new(),
            speakers: HashMap::new(),
            loud_rooms: BTreeSet::new(),
            next_speaker_tick: now,
            dirty: Vec::new(),
            now,
            queue: VecDeque::new(),
            scratch_events: Vec::new(),
            scratch_ids: Vec::new(),
            counters: SfuCounters::default(),
        }
    }

    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    pub fn counters(&self) -> SfuCounters {
        self.counters
    }

    /// Creates a room outside of signalling (rooms loaded at start-up, defaults, tests).
    pub fn create_room(&mut self, name: &str) -> Result<(), Refusal> {
        self.rooms.create(name).map(|_| ())
    }

    /// Durable work to do, in order.
    pub fn drain_store_requests(&mut self) -> std::vec::Drain<'_, StoreRequest> {
        self.store_requests.drain(..)
    }

    /// A chat message was stored: everyone in its room gets it, the author with its request id.
    pub fn chat_saved(
        &mut self,
        session: SessionId,
        request_id: Option<RequestId>,
        message: ChatMessage,
    ) {
        let members: Vec<_> = self
            .rooms
            .room(&message.room)
            .map(|r| r.members().iter().map(|m| m.id).collect())
            .unwrap_or_default();
        for member in members {
            if member != session {
                self.signal(
                    member,
                    ServerMessage::Chat {
                        id: None,
                        message: message.clone(),
                    },
                );
            }
        }
        if self.sessions.contains(&session) {
            self.signal(
                session,
                ServerMessage::Chat {
                    id: request_id,
                    message,
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
        let limit = self.config.chat_rate;
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
        self.store_requests.push(StoreRequest::SaveChat {
            session,
            request_id: id,
            room,
            author_id: session,
            author,
            text,
        });
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
        self.store_requests.push(StoreRequest::LoadHistory {
            session,
            request_id: id,
            room,
            before,
            limit: limit.unwrap_or(MAX_HISTORY_PAGE).clamp(1, MAX_HISTORY_PAGE),
        });
    }

    /// Takes back the buffers of sent datagrams, so forwarding does not allocate per packet.
    pub fn recycle(&mut self, sent: impl IntoIterator<Item = Transmit>) {
        for t in sent {
            if self.spare_buffers.len() >= MAX_SPARE_BUFFERS {
                break;
            }
            if t.contents.capacity() >= MIN_SPARE_CAPACITY {
                self.spare_buffers.push(t.contents);
            }
        }
    }

    /// Datagrams to send, in order.
    ///
    /// Subscribers that were written to since the last call are driven first: forwarding a burst of
    /// received packets polls each subscriber once, not once per packet.
    pub fn drain_transmits(&mut self) -> std::vec::Drain<'_, Transmit> {
        self.flush();
        self.transmits.drain(..)
    }

    /// Drives every peer with pending writes, and acts on what that produces.
    fn flush(&mut self) {
        let now = self.now;
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            for &id in &dirty {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.dirty = false;
                }
                self.drive(id, now);
            }
            dirty.clear();
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
            self.process_queue(now);
        }
    }

    /// Messages for clients, in order.
    pub fn drain_signals(&mut self) -> std::vec::Drain<'_, (SessionId, ServerMessage)> {
        self.signals.drain(..)
    }

    /// The next time [`Sfu::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().map(Peer::next_timeout).min();
        if self.peers.is_empty() {
            return peers;
        }
        Some(peers.map_or(self.next_speaker_tick, |p| p.min(self.next_speaker_tick)))
    }

    /// Every room with people in it, for status pages.
    pub fn status(&self) -> Vec<RoomStatus> {
        self.rooms
            .summary()
            .into_iter()
            .filter_map(|summary| {
                let room = self.rooms.room(&summary.name)?;
                Some(RoomStatus {
                    active_speaker: self.speakers.get(&summary.name).and_then(|d| d.current()),
                    participants: room.members().to_vec(),
                    name: summary.name,
                    max_participants: summary.max_participants,
                })
            })
            .collect()
    }

    /// Connection details of every participant, for `/api/debug`.
    pub fn debug(&self) -> Vec<PeerDebug> {
        let mut all: Vec<_> = self
            .peers
            .values()
            .map(|p| {
                let mut d = p.debug();
                d.room = self.rooms.room_of(p.id()).map(|r| r.name().to_string());
                d
            })
            .collect();
        all.sort_by_key(|d| d.participant_id);
        all
    }

    /// Counts of what is live now: rooms, participants, published tracks.
    pub fn gauges(&self) -> SfuGauges {
        SfuGauges {
            rooms: self.rooms.summary().len(),
            participants: self.peers.len(),
            tracks: self.peers.values().map(|p| p.published().count()).sum(),
            speaker_switches: self.counters.speaker_switches,
        }
    }

    pub fn connect(&mut self, session: SessionId) {
        self.sessions.insert(session);
        self.signal(
            session,
            ServerMessage::Welcome {
                server_version: self.config.server_version.clone(),
                max_participants: self.rooms.max_participants(),
                max_chat_chars: self.config.chat_max_chars,
            },
        );
        self.signal(
            session,
            ServerMessage::Rooms {
                id: None,
                rooms: self.rooms.summary(),
            },
        );
    }

    /// The signalling connection closed: the participant leaves its room.
    pub fn disconnect(&mut self, session: SessionId, now: Instant) {
        self.now = self.now.max(now);
        self.leave_room(session, now);
        self.sessions.remove(&session);
        self.chat_buckets.remove(&session);
    }

    /// Tells the session a message it sent could not be read.
    pub fn reject(&mut self, session: SessionId, error: ServerMessage) {
        self.signal(session, error);
    }

    pub fn handle_message(&mut self, session: SessionId, message: ClientMessage, now: Instant) {
        self.now = self.now.max(now);
        let id = message.request_id();
        match message {
            ClientMessage::ListRooms { .. } => {
                let rooms = self.rooms.summary();
                self.signal(session, ServerMessage::Rooms { id, rooms });
            }
            ClientMessage::CreateRoom { room, .. } => match self.rooms.create(&room) {
                Ok(room) => {
                    tracing::info!(room = %room.name, session, "room created");
                    self.store_requests.push(StoreRequest::CreateRoom {
                        name: room.name.clone(),
                    });
                    self.signal(session, ServerMessage::RoomCreated { id, room });
                    self.broadcast_rooms();
                }
                Err(r) => self.refuse(session, id, r),
            },
            ClientMessage::Join {
                room,
                name,
                state,
                role,
                ..
            } => self.join(session, id, (&room, &name, role), state, now),
            ClientMessage::Leave { .. } => match self.leave_room(session, now) {
                Some(room) => self.signal(session, ServerMessage::Left { id, room }),
                None => self.refuse(session, id, not_in_room()),
            },
            ClientMessage::Offer { sdp } => {
                let Some(peer) = self.peers.get_mut(&session) else {
                    return self.refuse(session, None, not_in_room());
                };
                match peer.accept_offer(&sdp) {
                    Ok(answer) => {
                        self.signal(session, ServerMessage::Answer { sdp: answer });
                        self.drive(session, now);
                    }
                    Err(e) => self.refuse(session, None, bad_sdp(e.0)),
                }
            }
            ClientMessage::Answer { sdp } => {
                let Some(peer) = self.peers.get_mut(&session) else {
                    return self.refuse(session, None, not_in_room());
                };
                match peer.accept_answer(&sdp) {
                    Ok(opened) => {
                        // New video subscribers need a keyframe before they can show anything.
                        for (source, kind) in opened {
                            if kind == TrackKind::Video {
                                self.request_keyframe(source, KeyframeRequestKind::Pli, now);
                            }
                        }
                        self.drive(session, now);
                    }
                    Err(e) => {
                        self.refuse(session, None, bad_sdp(e.0));
                        // A rolled-back negotiation is offered again.
                        self.drive(session, now);
                    }
                }
            }
            ClientMessage::SetState { change, .. } => self.set_state(session, id, change, now),
            ClientMessage::ChatSend { text, .. } => self.chat_send(session, id, text, now),
            ClientMessage::ChatHistory { before, limit, .. } => {
                self.chat_history(session, id, before, limit)
            }
        }
        self.process_queue(now);
    }

    fn join(
        &mut self,
        session: SessionId,
        id: Option<u64>,
        (room, name, role): (&str, &str, Role),
        state: parley_proto::MediaState,
        now: Instant,
    ) {
        let me = match self.rooms.join(session, room, name, state, role) {
            Ok(me) => me,
            Err(r) => return self.refuse(session, id, r),
        };
        let Some(joined_room) = self.rooms.room_of(session) else {
            return;
        };
        let room_name = joined_room.name().to_string();
        let active_speaker = self.speakers.get(&room_name).and_then(|d| d.current());
        let others: Vec<_> = joined_room
            .members()
            .iter()
            .filter(|m| m.id != session)
            .cloned()
            .collect();
        let mut peer = Peer::new(session, &self.config.candidates, now);
        for other in &others {
            if let Some(p) = self.peers.get(&other.id) {
                for (mid, kind) in p.published() {
                    peer.subscribe(
                        TrackSource {
                            publisher: other.id,
                            mid,
                        },
                        kind,
                    );
                }
            }
        }
        self.peers.insert(session, peer);
        tracing::info!(room = %room_name, participant = session, name = %me.name, "join");
        for other in &others {
            self.signal(
                other.id,
                ServerMessage::ParticipantJoined {
                    participant: me.clone(),
                },
            );
        }
        self.signal(
            session,
            ServerMessage::Joined {
                id,
                room: room_name,
                you: session,
                name: me.name.clone(),
                participants: others,
                active_speaker,
            },
        );
        self.broadcast_rooms();
    }

    /// Removes `participant` from its room and tells the others. Returns the room's name.
    fn leave_room(&mut self, participant: ParticipantId, now: Instant) -> Option<String> {
        let (room, remaining) = self.rooms.leave(participant)?;
        if let Some(mut peer) = self.peers.remove(&participant) {
            peer.close();
        }
        self.routes.retain(|_, p| *p != participant);
        self.queue.retain(|(p, _)| *p != participant);
        tracing::info!(room = %room, participant, "leave");
        self.forget_speaker(&room, participant, now);
        for other in remaining {
            if let Some(peer) = self.peers.get_mut(&other) {
                peer.unsubscribe_all_of(participant);
            }
            self.signal(
                other,
                ServerMessage::ParticipantLeft {
                    participant_id: participant,
                },
            );
            self.drive(other, now);
        }
        self.broadcast_rooms();
        Some(room)
    }

    fn set_state(
        &mut self,
        session: SessionId,
        id: Option<u64>,
        change: MediaStateChange,
        now: Instant,
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
        self.signal(
            session,
            ServerMessage::StateSet {
                id,
                state: updated.state,
            },
        );
        if let Some(room) = self.rooms.room_of(session) {
            let others: Vec<_> = room
                .members()
                .iter()
                .map(|m| m.id)
                .filter(|m| *m != session)
                .collect();
            for other in others {
                self.signal(
                    other,
                    ServerMessage::ParticipantUpdated {
                        participant: updated.clone(),
                    },
                );
            }
        }
        if updated.state.mic_muted {
            if let Some(room) = self.rooms.room_of(session).map(|r| r.name().to_string()) {
                self.forget_speaker(&room, session, now);
            }
        }
        // Camera back on: receivers need a fresh keyframe.
        if before.is_some_and(|b| b.camera_off) && !updated.state.camera_off {
            let video: Vec<_> = self
                .peers
                .get(&session)
                .map(|p| {
                    p.published()
                        .filter(|(_, k)| *k == TrackKind::Video)
                        .map(|(m, _)| m)
                        .collect()
                })
                .unwrap_or_default();
            for mid in video {
                self.request_keyframe(
                    TrackSource {
                        publisher: session,
                        mid,
                    },
                    KeyframeRequestKind::Pli,
                    now,
                );
            }
        }
    }

    /// Feeds one received datagram. Returns false when it belongs to no participant.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.now = self.now.max(now);
        let Ok(contents) = data.try_into() else {
            self.counters.unrouted_datagrams += 1;
            return false;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let known = self
            .routes
            .get(&source)
            .copied()
            .filter(|id| self.peers.get(id).is_some_and(|p| p.accepts(&input)));
        let target = known.or_else(|| {
            self.peers
                .values()
                .find(|p| p.accepts(&input))
                .map(Peer::id)
        });
        let Some(id) = target else {
            self.counters.unrouted_datagrams += 1;
            return false;
        };
        self.routes.insert(source, id);
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.handle_input(input);
        }
        self.drive(id, now);
        self.process_queue(now);
        true
    }

    /// Advances every connection whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let mut due = std::mem::take(&mut self.scratch_ids);
        due.clear();
        due.extend(
            self.peers
                .values()
                .filter(|p| p.next_timeout() <= now)
                .map(Peer::id),
        );
        for id in &due {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.handle_input(Input::Timeout(now));
            }
            self.drive(*id, now);
        }
        self.scratch_ids = due;
        self.speaker_tick(now);
        self.process_queue(now);
    }

    /// Polls one peer and queues what it reports.
    fn drive(&mut self, id: ParticipantId, _now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mut events = std::mem::take(&mut self.scratch_events);
        peer.drive(&mut self.transmits, &mut events);
        self.queue.extend(events.drain(..).map(|e| (id, e)));
        self.scratch_events = events;
    }

    fn process_queue(&mut self, now: Instant) {
        while let Some((from, event)) = self.queue.pop_front() {
            match event {
                PeerEvent::TrackPublished { mid, kind } => {
                    let source = TrackSource {
                        publisher: from,
                        mid,
                    };
                    let others: Vec<_> = self
                        .rooms
                        .room_of(from)
                        .map(|r| {
                            r.members()
                                .iter()
                                .map(|m| m.id)
                                .filter(|m| *m != from)
                                .collect()
                        })
                        .unwrap_or_default();
                    for other in others {
                        if let Some(peer) = self.peers.get_mut(&other) {
                            peer.subscribe(source, kind);
                        }
                        self.drive(other, now);
                    }
                }
                PeerEvent::Media {
                    mid,
                    kind,
                    params,
                    packet,
                } => self.forward(from, mid, kind, params, packet, now),
                PeerEvent::KeyframeWanted { source, kind } => {
                    self.request_keyframe(source, kind, now)
                }
                PeerEvent::Offer(sdp) => self.signal(from, ServerMessage::Offer { sdp }),
                PeerEvent::Gone => {
                    if let Some(room) = self.leave_room(from, now) {
                        self.signal(
                            from,
                            ServerMessage::error(
                                None,
                                ErrorCode::MediaLost,
                                "the media connection closed; you have left the room",
                            ),
                        );
                        self.signal(from, ServerMessage::Left { id: None, room });
                    }
                }
            }
        }
    }

    fn forward(
        &mut self,
        publisher: ParticipantId,
        mid: str0m::media::Mid,
        kind: TrackKind,
        params: str0m::format::PayloadParams,
        packet: str0m::rtp::RtpPacket,
        now: Instant,
    ) {
        let Some(room) = self.rooms.room_of(publisher) else {
            return;
        };
        let forwarded = room.is_forwarded(publisher, kind);
        let mut targets = std::mem::take(&mut self.scratch_ids);
        targets.clear();
        targets.extend(room.forward_targets(publisher, kind));
        let Some(peer) = self.peers.get_mut(&publisher) else {
            self.scratch_ids = targets;
            return;
        };
        let seq_no = peer.rewrite_seq(mid, packet.seq_no, forwarded);
        if !forwarded {
            self.counters.dropped_muted_packets += 1;
        }
        if forwarded && kind == TrackKind::Audio {
            if let Some(level) = packet.header.ext_vals.audio_level {
                let room = room.name();
                let detector = match self.speakers.get_mut(room) {
                    Some(d) => d,
                    None => self
                        .speakers
                        .entry(room.to_string())
                        .or_insert_with(|| SpeakerDetector::new(self.config.speaker)),
                };
                // RFC 6464 carries -dBov; str0m gives it as a negative number.
                detector.on_level(publisher, level.unsigned_abs().min(127), now);
            }
        }
        let source = TrackSource { publisher, mid };
        for &target in &targets {
            let Some(peer) = self.peers.get_mut(&target) else {
                continue;
            };
            let how = peer.forward(
                source,
                params,
                &packet,
                seq_no,
                &mut self.transmits,
                &mut self.spare_buffers,
            );
            if how == Forwarded::Skipped {
                continue;
            }
            self.counters.forwarded_packets += 1;
            self.counters.forwarded_bytes += packet.payload.len() as u64;
            if how == Forwarded::Sent {
                self.counters.direct_packets += 1;
            }
            if how == Forwarded::Queued && !peer.dirty {
                peer.dirty = true;
                self.dirty.push(target);
            }
        }
        self.scratch_ids = targets;
    }

    fn request_keyframe(&mut self, source: TrackSource, kind: KeyframeRequestKind, now: Instant) {
        if let Some(peer) = self.peers.get_mut(&source.publisher) {
            peer.request_keyframe(source.mid, kind, now);
            self.drive(source.publisher, now);
        }
    }

    fn signal(&mut self, session: SessionId, message: ServerMessage) {
        self.signals.push((session, message));
    }

    /// `who` can no longer be the speaker of `room` (muted or gone).
    fn forget_speaker(&mut self, room: &str, who: ParticipantId, now: Instant) {
        let Some(detector) = self.speakers.get_mut(room) else {
            return;
        };
        if let Some(next) = detector.remove(who, now) {
            self.counters.speaker_switches += 1;
            self.announce_speaker(room, next);
        }
    }

    fn announce_speaker(&mut self, room: &str, speaker: Option<ParticipantId>) {
        let members: Vec<_> = self
            .rooms
            .room(room)
            .map(|r| r.members().iter().map(|m| m.id).collect())
            .unwrap_or_default();
        for m in members {
            self.signal(
                m,
                ServerMessage::ActiveSpeaker {
                    participant_id: speaker,
                },
            );
        }
    }

    /// Every 100 ms: speaker decisions and the rooms' `levels`.
    fn speaker_tick(&mut self, now: Instant) {
        if now < self.next_speaker_tick {
            return;
        }
        self.next_speaker_tick = now + SPEAKER_TICK;
        let rooms: Vec<String> = self.speakers.keys().cloned().collect();
        for room in rooms {
            let Some(members) = self
                .rooms
                .room(&room)
                .filter(|r| !r.members().is_empty())
                .map(|r| r.members().iter().map(|m| m.id).collect::<Vec<_>>())
            else {
                self.speakers.remove(&room);
                self.loud_rooms.remove(&room);
                continue;
            };
            let Some(detector) = self.speakers.get_mut(&room) else {
                continue;
            };
            let changed = detector.tick(now);
            let mut levels: Vec<Level> = detector
                .meters()
                .map(|(id, m)| Level {
                    id,
                    level: (m * 100.0).round().clamp(0.0, 100.0) as u8,
                })
                .collect();
            levels.sort_by_key(|l| l.id);
            if let Some(speaker) = changed {
                self.counters.speaker_switches += 1;
                self.announce_speaker(&room, Some(speaker));
            }
            let loud = levels.iter().any(|l| l.level > 0);
            // Send while there is sound, and once more when it stops.
            if loud || self.loud_rooms.contains(&room) {
                for &m in &members {
                    self.signal(
                        m,
                        ServerMessage::Levels {
                            levels: levels.clone(),
                        },
                    );
                }
            }
            if loud {
                self.loud_rooms.insert(room);
            } else {
                self.loud_rooms.remove(&room);
            }
        }
    }

    fn refuse(&mut self, session: SessionId, id: Option<u64>, refusal: Refusal) {
        self.counters.refusals += 1;
        self.signal(
            session,
            ServerMessage::error(id, refusal.code, refusal.message),
        );
    }

    fn broadcast_rooms(&mut self) {
        let rooms = self.rooms.summary();
        let sessions: Vec<_> = self.sessions.iter().copied().collect();
        for s in sessions {
            self.signal(
                s,
                ServerMessage::Rooms {
                    id: None,
                    rooms: rooms.clone(),
                },
            );
        }
    }
}

/// Enough spare buffers for a large burst of fan-out; more are freed.
const MAX_SPARE_BUFFERS: usize = 2048;
/// Small buffers (STUN responses) are not worth keeping; direct sends allocate at least this much.
const MIN_SPARE_CAPACITY: usize = peer::SPARE_CAPACITY;

fn not_in_room() -> Refusal {
    Refusal {
        code: ErrorCode::NotInRoom,
        message: "you are not in a room".into(),
    }
}

fn bad_sdp(detail: String) -> Refusal {
    Refusal {
        code: ErrorCode::BadSdp,
        message: format!("could not use that SDP: {detail}"),
    }
}
