//! One media worker's sans-IO core: the rooms placed on it, their peers and the forwarding between them.
//!
//! It takes typed [`MediaCommand`]s from the control plane, received datagrams and the time, and hands
//! back datagrams to send and [`MediaEvent`]s. It knows nothing of chat, the lobby, names or JSON,
//! never touches a socket and never reads a clock.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parley_proto::{Level, ParticipantId, RequestId};
use str0m::media::KeyframeRequestKind;
use str0m::net::{Protocol, Receive};
use str0m::Input;

use crate::peer::{
    Forwarded, Incoming, Peer, PeerDebug, PeerEvent, Received, TrackKind, TrackSource, Transmit,
};
use crate::room::{Room, RoomId};
use crate::route::{PeerId, Routes};
use crate::speaker::{SpeakerConfig, SPEAKER_TICK};

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Media addresses to offer, as `(advertised, local socket)`.
    pub candidates: Vec<(SocketAddr, SocketAddr)>,
    pub speaker: SpeakerConfig,
    /// This worker's index, shown in `/api/debug`.
    pub worker: usize,
}

impl MediaConfig {
    pub fn new(candidates: Vec<(SocketAddr, SocketAddr)>) -> MediaConfig {
        MediaConfig {
            candidates,
            speaker: SpeakerConfig::default(),
            worker: 0,
        }
    }
}

/// What the control plane tells a media worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// A participant entered `room` (placed on this worker): make its connection. Its `offer` follows.
    AddPeer {
        peer: PeerId,
        room: RoomId,
        /// Its id for clients: the stream id of its tracks, the id in levels and speaker events.
        participant: ParticipantId,
        /// A viewer: nothing it sends is forwarded.
        receive_only: bool,
        mic_muted: bool,
        camera_off: bool,
        screen_sharing: bool,
        /// The server offers first: a [`MediaEvent::Offer`] follows at once (with recvonly m-lines
        /// for a member's own microphone, camera and screen share), and no client offer is expected.
        server_offer: bool,
    },
    /// The client's offer (its own tracks); answered by [`MediaEvent::Answer`].
    Offer {
        peer: PeerId,
        request: Option<RequestId>,
        sdp: String,
    },
    /// The client's answer to a [`MediaEvent::Offer`].
    Answer {
        peer: PeerId,
        request: Option<RequestId>,
        sdp: String,
    },
    /// Mute flags changed: muted audio and camera-off video are not forwarded, nor a screen track
    /// (the publisher's second video) while `screen_sharing` is false.
    SetMute {
        peer: PeerId,
        mic_muted: bool,
        camera_off: bool,
        screen_sharing: bool,
    },
    /// The participant left: close its connection.
    RemovePeer { peer: PeerId },
    /// Copy (or stop copying) every packet the room forwards for its recorder
    /// ([`MediaCore::drain_recorded`]).
    SetRecording { room: RoomId, on: bool },
}

/// What a recorded room's recorder gets: its packets, and its senders' clock readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Packet(RecordedPacket),
    SenderReport(RecordedSenderReport),
}

/// An RTCP sender report of a recorded room's track: the sender's wall clock (NTP, 32.32 fixed point)
/// at RTP time `rtp_time`; the recorder keeps it in the track's journal (lip sync, clock drift).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSenderReport {
    pub room: RoomId,
    pub participant: ParticipantId,
    pub mid: String,
    pub ntp: u64,
    pub rtp_time: u32,
    pub received: Instant,
}

/// A packet of a recorded room as forwarded (opened, after the mute check), for the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPacket {
    pub room: RoomId,
    pub participant: ParticipantId,
    /// The publisher's track (its SDP mid).
    pub mid: String,
    pub kind: TrackKind,
    /// `opus`, `vp8`, `h264`, `vp9`, `av1`.
    pub codec: &'static str,
    pub clock_rate: u32,
    pub pt: u8,
    pub marker: bool,
    pub seq: u64,
    pub timestamp: u32,
    pub payload: Vec<u8>,
    pub received: Instant,
}

/// What a media worker tells the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The answer to the client's offer.
    Answer {
        peer: PeerId,
        request: Option<RequestId>,
        sdp: String,
    },
    /// A server offer for the client (tracks of others came or went).
    Offer { peer: PeerId, sdp: String },
    /// The client's offer or answer could not be used; `reason` is one short line for people.
    SdpRefused {
        peer: PeerId,
        request: Option<RequestId>,
        reason: &'static str,
    },
    /// The room's voice levels (every 100 ms while anyone makes a sound, and once after).
    Levels { room: RoomId, levels: Vec<Level> },
    /// The room's dominant speaker changed.
    ActiveSpeaker {
        room: RoomId,
        participant: Option<ParticipantId>,
    },
    /// The connection closed or failed; the peer is gone from this worker.
    PeerLost { peer: PeerId },
}

/// Counters for operators, exported as metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaCounters {
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    /// Forwarded packets sealed on the direct SRTP path (the rest went through str0m).
    pub direct_packets: u64,
    pub dropped_muted_packets: u64,
    pub unrouted_datagrams: u64,
    pub speaker_switches: u64,
    /// Packets copied for a room's recorder.
    pub recorded_packets: u64,
    /// Publishers' audio packets opened on the direct path (not handed to str0m).
    pub direct_received: u64,
    /// Direct-path packets dropped: replayed or not authentic.
    pub direct_dropped: u64,
    /// Keyframe requests (PLI/FIR) sent to publishers: new subscribers, their own requests
    /// (throttled), recordings that start.
    pub keyframe_requests: u64,
}

impl MediaCounters {
    pub fn add(&mut self, other: &MediaCounters) {
        self.forwarded_packets += other.forwarded_packets;
        self.forwarded_bytes += other.forwarded_bytes;
        self.direct_packets += other.direct_packets;
        self.dropped_muted_packets += other.dropped_muted_packets;
        self.unrouted_datagrams += other.unrouted_datagrams;
        self.speaker_switches += other.speaker_switches;
        self.recorded_packets += other.recorded_packets;
        self.direct_received += other.direct_received;
        self.direct_dropped += other.direct_dropped;
        self.keyframe_requests += other.keyframe_requests;
    }
}

/// What is live on one worker now.
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaGauges {
    pub rooms: usize,
    pub peers: usize,
    pub tracks: usize,
}

/// Where a peer sits and what it may send.
#[derive(Debug, Clone, Copy)]
struct Seat {
    room: RoomId,
    mic_muted: bool,
    camera_off: bool,
    screen_sharing: bool,
}

impl Seat {
    /// Whether a track of `kind` is forwarded now; `screen`: it is the publisher's screen track.
    fn forwards(&self, kind: TrackKind, screen: bool) -> bool {
        match kind {
            TrackKind::Audio => !self.mic_muted,
            TrackKind::Video if screen => self.screen_sharing,
            TrackKind::Video => !self.camera_off,
        }
    }
}

pub struct MediaCore {
    config: MediaConfig,
    rooms: FxHashMap<RoomId, Room>,
    peers: FxHashMap<PeerId, Peer>,
    seats: FxHashMap<PeerId, Seat>,
    routes: Routes,
    transmits: Vec<Transmit>,
    /// Sent datagram buffers handed back by the shell ([`MediaCore::recycle`]), reused for direct sends.
    spare_buffers: Vec<Vec<u8>>,
    events: Vec<MediaEvent>,
    next_speaker_tick: Instant,
    /// No peer's timer is due before this (may be early: then a timeout pass finds nothing due).
    earliest_timeout: Instant,
    /// Subscribers written to and not yet driven (see [`MediaCore::drain_transmits`]).
    dirty: Vec<PeerId>,
    /// The latest time any input carried.
    now: Instant,
    /// Peer events waiting to be acted on, in order, tagged with the peer they came from.
    queue: VecDeque<(PeerId, PeerEvent)>,
    scratch_events: Vec<PeerEvent>,
    scratch_ids: Vec<PeerId>,
    /// The payload of the audio packet being opened on the direct path.
    rx_payload: Vec<u8>,
    counters: MediaCounters,
    /// Rooms being recorded, and their packets waiting for the shell.
    recording: Vec<RoomId>,
    recorded: Vec<Recorded>,
    /// Recorded rooms whose cameras are asked for a keyframe again at these times.
    keyframes_again: Vec<(Instant, RoomId)>,
}

/// How long a core with no peers sleeps.
const IDLE_TIMEOUT: Duration = Duration::from_millis(500);
/// When a recording starts its cameras are asked for a keyframe, and again after these delays:
/// browsers ignore a request within 300 ms of the last one (a subscriber may just have asked, and
/// got its keyframe before the recording began), and a request can be lost.
const RECORDING_KEYFRAME_RETRIES: [Duration; 2] =
    [Duration::from_millis(400), Duration::from_millis(1_500)];

impl MediaCore {
    pub fn new(config: MediaConfig) -> MediaCore {
        MediaCore::new_at(config, Instant::now())
    }

    /// A core whose clock starts at `now` (tests drive a fake clock).
    pub fn new_at(config: MediaConfig, now: Instant) -> MediaCore {
        MediaCore {
            config,
            rooms: FxHashMap::default(),
            peers: FxHashMap::default(),
            seats: FxHashMap::default(),
            routes: Routes::default(),
            transmits: Vec::new(),
            spare_buffers: Vec::new(),
            events: Vec::new(),
            next_speaker_tick: now,
            earliest_timeout: now,
            dirty: Vec::new(),
            now,
            queue: VecDeque::new(),
            scratch_events: Vec::new(),
            scratch_ids: Vec::new(),
            rx_payload: Vec::with_capacity(1500),
            counters: MediaCounters::default(),
            recording: Vec::new(),
            recorded: Vec::new(),
            keyframes_again: Vec::new(),
        }
    }

    pub fn counters(&self) -> MediaCounters {
        self.counters
    }

    pub fn gauges(&self) -> MediaGauges {
        MediaGauges {
            rooms: self.rooms.len(),
            peers: self.peers.len(),
            tracks: self.peers.values().map(|p| p.published().count()).sum(),
        }
    }

    /// Connection details of every peer, for `/api/debug` (the control plane adds room names).
    pub fn debug(&self) -> Vec<PeerDebug> {
        let mut all: Vec<_> = self
            .peers
            .values()
            .map(|p| {
                let mut d = p.debug();
                d.worker = self.config.worker;
                d
            })
            .collect();
        all.sort_by_key(|d| d.participant_id);
        all
    }

    /// The room's current dominant speaker.
    pub fn active_speaker(&self, room: RoomId) -> Option<ParticipantId> {
        self.rooms.get(&room).and_then(|r| r.speaker.current())
    }

    /// Events for the control plane, in order.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, MediaEvent> {
        self.events.drain(..)
    }

    /// Packets of recorded rooms, for the recorder (the shell hands them on without waiting).
    pub fn drain_recorded(&mut self) -> std::vec::Drain<'_, Recorded> {
        self.recorded.drain(..)
    }

    /// Every video track published in `room` sends a keyframe soon.
    fn request_keyframes_in(&mut self, room: RoomId) {
        let sources: Vec<TrackSource> = self
            .seats
            .iter()
            .filter(|(_, s)| s.room == room)
            .filter_map(|(id, _)| self.peers.get(id))
            .flat_map(|p| {
                let publisher = p.id();
                p.published()
                    .filter(|(_, kind)| *kind == TrackKind::Video)
                    .map(move |(mid, _)| TrackSource { publisher, mid })
                    .collect::<Vec<_>>()
            })
            .collect();
        let now = self.now;
        for source in sources {
            if let Some(peer) = self.peers.get_mut(&source.publisher) {
                if peer.request_keyframe_now(source.mid, KeyframeRequestKind::Pli, now) {
                    self.counters.keyframe_requests += 1;
                }
                self.drive(source.publisher);
            }
        }
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

    /// The next time [`MediaCore::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Instant {
        if self.peers.is_empty() {
            return self.now + IDLE_TIMEOUT;
        }
        let retry = self.keyframes_again.iter().map(|(at, _)| *at).min();
        let earliest = self.earliest_timeout.min(self.next_speaker_tick);
        retry.map_or(earliest, |at| earliest.min(at))
    }

    pub fn handle_command(&mut self, command: MediaCommand, now: Instant) {
        self.now = self.now.max(now);
        match command {
            MediaCommand::AddPeer {
                peer,
                room,
                participant,
                receive_only,
                mic_muted,
                camera_off,
                screen_sharing,
                server_offer,
            } => {
                self.add_peer(
                    peer,
                    room,
                    participant,
                    receive_only,
                    (mic_muted, camera_off, screen_sharing),
                    server_offer,
                );
                if server_offer {
                    self.drive(peer);
                }
            }
            MediaCommand::Offer { peer, request, sdp } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                match p.accept_offer(&sdp) {
                    Ok(answer) => {
                        self.events.push(MediaEvent::Answer {
                            peer,
                            request,
                            sdp: answer,
                        });
                        self.drive(peer);
                    }
                    Err(e) => {
                        self.events.push(MediaEvent::SdpRefused {
                            peer,
                            request,
                            reason: e.0,
                        });
                        // An offer that broke the connection: the peer is lost now (not at its next
                        // timer), so no later offer is answered on a connection that is gone.
                        if self.peers.get(&peer).is_some_and(Peer::is_gone) {
                            self.drive(peer);
                        }
                    }
                }
            }
            MediaCommand::Answer { peer, request, sdp } => {
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                match p.accept_answer(&sdp) {
                    Ok(opened) => {
                        // New video subscribers need a keyframe before they can show anything.
                        for (source, kind) in opened {
                            if kind == TrackKind::Video {
                                self.request_keyframe(source, KeyframeRequestKind::Pli);
                            }
                        }
                        self.drive(peer);
                    }
                    Err(e) => {
                        self.events.push(MediaEvent::SdpRefused {
                            peer,
                            request,
                            reason: e.0,
                        });
                        // A rolled-back negotiation is offered again.
                        self.drive(peer);
                    }
                }
            }
            MediaCommand::SetMute {
                peer,
                mic_muted,
                camera_off,
                screen_sharing,
            } => self.set_mute(peer, mic_muted, camera_off, screen_sharing),
            MediaCommand::RemovePeer { peer } => self.remove_peer(peer),
            MediaCommand::SetRecording { room, on } => {
                self.recording.retain(|r| *r != room);
                self.keyframes_again.retain(|(_, r)| *r != room);
                if on {
                    self.recording.push(room);
                    // The recording starts with a picture: ask every camera in the room for one.
                    self.request_keyframes_in(room);
                    let now = self.now;
                    self.keyframes_again
                        .extend(RECORDING_KEYFRAME_RETRIES.iter().map(|d| (now + *d, room)));
                }
            }
        }
        self.process_queue();
    }

    fn add_peer(
        &mut self,
        id: PeerId,
        room_id: RoomId,
        participant: ParticipantId,
        receive_only: bool,
        (mic_muted, camera_off, screen_sharing): (bool, bool, bool),
        server_offer: bool,
    ) {
        if self.peers.contains_key(&id) {
            return;
        }
        let mut peer = Peer::new(
            id,
            participant,
            receive_only,
            &self.config.candidates,
            self.now,
        );
        if server_offer {
            peer.offer_first();
        }
        let room = self
            .rooms
            .entry(room_id)
            .or_insert_with(|| Room::new(self.config.speaker));
        // Everything already published in the room, negotiated with the first server offer.
        for source in room.tracks() {
            let (Some(publisher), Some(kind)) = (
                self.peers.get(&source.publisher),
                self.peers
                    .get(&source.publisher)
                    .and_then(|p| p.published().find(|(m, _)| *m == source.mid))
                    .map(|(_, k)| k),
            ) else {
                continue;
            };
            let screen = publisher.is_screen(source.mid);
            peer.subscribe(source, publisher.participant(), kind, screen);
        }
        let sources: Vec<_> = room.tracks().collect();
        for source in sources {
            room.subscribe(source, id);
        }
        room.add_peer(id);
        self.routes.add_peer(id, peer.ufrag().to_string());
        self.earliest_timeout = self.earliest_timeout.min(peer.next_timeout());
        self.peers.insert(id, peer);
        self.seats.insert(
            id,
            Seat {
                room: room_id,
                mic_muted,
                camera_off,
                screen_sharing,
            },
        );
    }

    fn remove_peer(&mut self, id: PeerId) {
        let Some(seat) = self.seats.remove(&id) else {
            return;
        };
        let participant = self.peers.remove(&id).map(|mut peer| {
            peer.close();
            peer.participant()
        });
        self.routes.remove_peer(id);
        self.queue.retain(|(p, _)| *p != id);
        self.dirty.retain(|p| *p != id);
        let Some(room) = self.rooms.get_mut(&seat.room) else {
            return;
        };
        room.remove_peer(id);
        if room.is_empty() {
            self.rooms.remove(&seat.room);
            return;
        }
        let remaining = room.peers().to_vec();
        if let Some(participant) = participant {
            self.forget_speaker(seat.room, participant);
        }
        for other in remaining {
            if let Some(peer) = self.peers.get_mut(&other) {
                peer.unsubscribe_all_of(id);
            }
            self.drive(other);
        }
    }

    fn set_mute(&mut self, id: PeerId, mic_muted: bool, camera_off: bool, screen_sharing: bool) {
        let Some(seat) = self.seats.get_mut(&id) else {
            return;
        };
        let before = *seat;
        seat.mic_muted = mic_muted;
        seat.camera_off = camera_off;
        seat.screen_sharing = screen_sharing;
        let seat = *seat;
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let participant = peer.participant();
        let tracks: Vec<_> = peer
            .published()
            .map(|(mid, kind)| (mid, kind, peer.is_screen(mid)))
            .collect();
        // Held-back tracks: every subscriber's numbering closes the gap when they resume.
        for &(mid, kind, screen) in &tracks {
            let held_back = before.forwards(kind, screen) && !seat.forwards(kind, screen);
            if !held_back {
                continue;
            }
            let source = TrackSource { publisher: id, mid };
            let subscribers = self
                .rooms
                .get(&seat.room)
                .map(|r| r.subscribers(&source).collect::<Vec<_>>())
                .unwrap_or_default();
            for s in subscribers {
                if let Some(p) = self.peers.get_mut(&s) {
                    p.pause(source);
                }
            }
        }
        if mic_muted && !before.mic_muted {
            self.forget_speaker(seat.room, participant);
        }
        // Camera back on, or a screen share started: receivers need a fresh keyframe.
        for (mid, kind, screen) in tracks {
            if kind == TrackKind::Video
                && !before.forwards(kind, screen)
                && seat.forwards(kind, screen)
            {
                self.request_keyframe(TrackSource { publisher: id, mid }, KeyframeRequestKind::Pli);
            }
        }
    }

    /// Feeds one received datagram. Returns false when it belongs to no peer.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        self.now = self.now.max(now);
        let Some(id) = self.routes.find(source, data) else {
            self.counters.unrouted_datagrams += 1;
            return false;
        };
        // A publisher's audio: opened here and forwarded, str0m never sees it.
        if let Some(peer) = self.peers.get_mut(&id) {
            let mut payload = std::mem::take(&mut self.rx_payload);
            match peer.receive_direct(now, source, data, &mut payload) {
                Received::Audio(a) => {
                    self.counters.direct_received += 1;
                    let packet = Incoming {
                        pt: a.pt,
                        marker: a.marker,
                        seq: a.seq,
                        timestamp: a.timestamp,
                        audio_level: a.level.map(|(l, _)| l),
                        voice_activity: a.level.map(|(_, v)| v),
                        video_orientation: None,
                        payload: &payload,
                        shared: None,
                        received: now,
                    };
                    self.forward(id, a.mid, TrackKind::Audio, false, a.params, &packet);
                    self.rx_payload = payload;
                    return true;
                }
                Received::Dropped => {
                    self.counters.direct_dropped += 1;
                    self.rx_payload = payload;
                    return true;
                }
                Received::NotMine => self.rx_payload = payload,
            }
        }
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
        let Some(peer) = self.peers.get_mut(&id) else {
            self.counters.unrouted_datagrams += 1;
            return false;
        };
        if !peer.accepts(&input) {
            self.counters.unrouted_datagrams += 1;
            return false;
        }
        peer.handle_input(input);
        self.routes.learn(source, id);
        self.drive(id);
        self.process_queue();
        true
    }

    /// Advances every connection whose timer is due, and the rooms' speaker detection.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let mut due = std::mem::take(&mut self.scratch_ids);
        due.clear();
        let mut earliest = now + IDLE_TIMEOUT;
        for p in self.peers.values() {
            if p.next_timeout() <= now {
                due.push(p.id());
            } else {
                earliest = earliest.min(p.next_timeout());
            }
        }
        self.earliest_timeout = earliest;
        for id in &due {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.handle_timeout(now, &mut self.transmits);
            }
            self.drive(*id);
        }
        self.scratch_ids = due;
        self.speaker_tick(now);
        if self.keyframes_again.iter().any(|(at, _)| *at <= now) {
            let rooms: Vec<RoomId> = self
                .keyframes_again
                .iter()
                .filter(|(at, _)| *at <= now)
                .map(|(_, room)| *room)
                .collect();
            self.keyframes_again.retain(|(at, _)| *at > now);
            for room in rooms {
                self.request_keyframes_in(room);
            }
        }
        self.process_queue();
    }

    /// Drives every peer with pending writes, and acts on what that produces.
    fn flush(&mut self) {
        while !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            for &id in &dirty {
                if let Some(peer) = self.peers.get_mut(&id) {
                    peer.dirty = false;
                }
                self.drive(id);
            }
            dirty.clear();
            if self.dirty.is_empty() {
                self.dirty = dirty;
            }
            self.process_queue();
        }
    }

    /// Polls one peer and queues what it reports.
    fn drive(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mut events = std::mem::take(&mut self.scratch_events);
        peer.drive(&mut self.transmits, &mut events);
        self.earliest_timeout = self.earliest_timeout.min(peer.next_timeout());
        self.queue.extend(events.drain(..).map(|e| (id, e)));
        self.scratch_events = events;
    }

    fn process_queue(&mut self) {
        while let Some((from, event)) = self.queue.pop_front() {
            match event {
                PeerEvent::TrackPublished { mid, kind } => self.publish(from, mid, kind),
                PeerEvent::Media {
                    mid,
                    kind,
                    screen,
                    params,
                    packet,
                } => self.forward(
                    from,
                    mid,
                    kind,
                    screen,
                    params,
                    &Incoming::from_str0m(&packet),
                ),
                PeerEvent::KeyframeWanted { source, kind } => self.request_keyframe(source, kind),
                PeerEvent::Offer(sdp) => self.events.push(MediaEvent::Offer { peer: from, sdp }),
                PeerEvent::SenderReport {
                    mid,
                    ntp,
                    rtp_time,
                    received,
                } => self.sender_report(from, mid, ntp, rtp_time, received),
                PeerEvent::Gone => {
                    if self.seats.contains_key(&from) {
                        self.remove_peer(from);
                        self.events.push(MediaEvent::PeerLost { peer: from });
                    }
                }
            }
        }
    }

    /// `publisher` offered a new track: everyone else in its room receives it.
    fn publish(&mut self, publisher: PeerId, mid: str0m::media::Mid, kind: TrackKind) {
        let Some(seat) = self.seats.get(&publisher) else {
            return;
        };
        let Some((participant, screen)) = self
            .peers
            .get(&publisher)
            .map(|p| (p.participant(), p.is_screen(mid)))
        else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&seat.room) else {
            return;
        };
        let source = TrackSource { publisher, mid };
        room.publish(source);
        let others: Vec<_> = room
            .peers()
            .iter()
            .copied()
            .filter(|p| *p != publisher)
            .collect();
        for other in others {
            room.subscribe(source, other);
            if let Some(peer) = self.peers.get_mut(&other) {
                peer.subscribe(source, participant, kind, screen);
            }
        }
        for other in room.peers().to_vec() {
            if other != publisher {
                self.drive(other);
            }
        }
    }

    /// A recorded room's sender report goes to its recorder.
    fn sender_report(
        &mut self,
        publisher: PeerId,
        mid: str0m::media::Mid,
        ntp: u64,
        rtp_time: u32,
        received: Instant,
    ) {
        let Some(seat) = self.seats.get(&publisher) else {
            return;
        };
        if !self.recording.contains(&seat.room) {
            return;
        }
        if let Some(p) = self.peers.get(&publisher) {
            self.recorded
                .push(Recorded::SenderReport(RecordedSenderReport {
                    room: seat.room,
                    participant: p.participant(),
                    mid: mid.to_string(),
                    ntp,
                    rtp_time,
                    received,
                }));
        }
    }

    fn forward(
        &mut self,
        publisher: PeerId,
        mid: str0m::media::Mid,
        kind: TrackKind,
        screen: bool,
        params: str0m::format::PayloadParams,
        packet: &Incoming<'_>,
    ) {
        let Some(seat) = self.seats.get(&publisher) else {
            return;
        };
        if !seat.forwards(kind, screen) {
            self.counters.dropped_muted_packets += 1;
            return;
        }
        if !self.recording.is_empty() && self.recording.contains(&seat.room) {
            if let Some(p) = self.peers.get(&publisher) {
                self.counters.recorded_packets += 1;
                self.recorded.push(Recorded::Packet(RecordedPacket {
                    room: seat.room,
                    participant: p.participant(),
                    mid: mid.to_string(),
                    kind,
                    codec: codec_name(params.spec().codec),
                    clock_rate: params.spec().clock_rate.get(),
                    pt: *packet.pt,
                    marker: packet.marker,
                    seq: packet.seq,
                    timestamp: packet.timestamp,
                    payload: packet.payload.to_vec(),
                    received: packet.received,
                }));
            }
        }
        let Some(room) = self.rooms.get_mut(&seat.room) else {
            return;
        };
        if kind == TrackKind::Audio {
            if let (Some(level), Some(p)) = (packet.audio_level, self.peers.get(&publisher)) {
                // RFC 6464 carries -dBov; str0m gives it as a negative number.
                room.speaker
                    .on_level(p.participant(), level.unsigned_abs().min(127), self.now);
            }
        }
        let source = TrackSource { publisher, mid };
        // Split borrows: the room's subscriber list is walked in place (no copy per packet) while
        // the subscribers' peers are written to.
        let peers = &mut self.peers;
        let counters = &mut self.counters;
        for subscriber in room.subscribers_mut(&source) {
            let Some(peer) = peers.get_mut(&subscriber.peer) else {
                continue;
            };
            let how = peer.forward(
                source,
                &mut subscriber.slot,
                params,
                packet,
                &mut self.transmits,
                &mut self.spare_buffers,
            );
            if how == Forwarded::Skipped {
                continue;
            }
            counters.forwarded_packets += 1;
            counters.forwarded_bytes += packet.payload.len() as u64;
            if how == Forwarded::Sent {
                counters.direct_packets += 1;
            }
            if how == Forwarded::Queued && !peer.dirty {
                peer.dirty = true;
                self.dirty.push(subscriber.peer);
            }
        }
    }

    fn request_keyframe(&mut self, source: TrackSource, kind: KeyframeRequestKind) {
        let now = self.now;
        if let Some(peer) = self.peers.get_mut(&source.publisher) {
            if peer.request_keyframe(source.mid, kind, now) {
                self.counters.keyframe_requests += 1;
            }
            self.drive(source.publisher);
        }
    }

    /// `who` can no longer be the speaker of `room` (muted or gone).
    fn forget_speaker(&mut self, room_id: RoomId, who: ParticipantId) {
        let now = self.now;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        if let Some(next) = room.speaker.remove(who, now) {
            self.counters.speaker_switches += 1;
            self.events.push(MediaEvent::ActiveSpeaker {
                room: room_id,
                participant: next,
            });
        }
    }

    /// Every 100 ms: speaker decisions and the rooms' levels.
    fn speaker_tick(&mut self, now: Instant) {
        if now < self.next_speaker_tick {
            return;
        }
        self.next_speaker_tick = now + SPEAKER_TICK;
        for (&id, room) in self.rooms.iter_mut() {
            if let Some(speaker) = room.speaker.tick(now) {
                self.counters.speaker_switches += 1;
                self.events.push(MediaEvent::ActiveSpeaker {
                    room: id,
                    participant: Some(speaker),
                });
            }
            let mut levels: Vec<Level> = room
                .speaker
                .meters()
                .map(|(id, m)| Level {
                    id,
                    level: (m * 100.0).round().clamp(0.0, 100.0) as u8,
                })
                .collect();
            let loud = levels.iter().any(|l| l.level > 0);
            // Send while there is sound, and once more when it stops.
            if loud || room.loud {
                levels.sort_by_key(|l| l.id);
                self.events.push(MediaEvent::Levels { room: id, levels });
            }
            room.loud = loud;
        }
    }
}

/// Enough spare buffers for a large burst of fan-out; more are freed.
const MAX_SPARE_BUFFERS: usize = 2048;
/// Small buffers (STUN responses) are not worth keeping; direct sends allocate at least this much.
const MIN_SPARE_CAPACITY: usize = crate::peer::SPARE_CAPACITY;

/// The codec's name as in SDP, lower case.
fn codec_name(codec: str0m::format::Codec) -> &'static str {
    use str0m::format::Codec;
    match codec {
        Codec::Opus => "opus",
        Codec::Vp8 => "vp8",
        Codec::Vp9 => "vp9",
        Codec::H264 => "h264",
        Codec::Av1 => "av1",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core_with_peers(n: u64, now: Instant) -> MediaCore {
        let server = SocketAddr::from(([10, 0, 0, 1], 5000));
        let mut core = MediaCore::new_at(MediaConfig::new(vec![(server, server)]), now);
        for p in 1..=n {
            core.handle_command(
                MediaCommand::AddPeer {
                    peer: p,
                    room: p % 7,
                    participant: p,
                    receive_only: false,
                    mic_muted: false,
                    camera_off: false,
                    screen_sharing: false,
                    server_offer: false,
                },
                now,
            );
        }
        core
    }

    #[test]
    fn garbage_from_strangers_routes_nowhere() {
        let now = Instant::now();
        let mut core = core_with_peers(300, now);
        let server = SocketAddr::from(([10, 0, 0, 1], 5000));
        let mut routed = 0;
        for i in 0..5_000u32 {
            let source =
                SocketAddr::from(([192, 0, 2, (i % 250) as u8], 1000 + (i % 60_000) as u16));
            let len = (i % 300) as usize;
            let junk: Vec<u8> = (0..len).map(|b| (b as u32 * 31 + i) as u8).collect();
            if core.handle_datagram(now, source, server, &junk) {
                routed += 1;
            }
        }
        assert_eq!(routed, 0);
        assert_eq!(core.counters().unrouted_datagrams, 5_000);
        assert!(core.drain_events().next().is_none(), "nobody was lost");
        assert_eq!(core.gauges().peers, 300);
    }

    #[test]
    fn rooms_come_and_go_with_their_peers_and_stale_commands_are_ignored() {
        let now = Instant::now();
        let mut core = core_with_peers(14, now);
        assert_eq!(core.gauges().rooms, 7);
        for p in [7, 14] {
            core.handle_command(MediaCommand::RemovePeer { peer: p }, now);
        }
        assert_eq!(core.gauges().rooms, 6, "room 0 emptied");
        // Commands for peers that are gone (raced with a leave) do nothing.
        core.handle_command(MediaCommand::RemovePeer { peer: 7 }, now);
        core.handle_command(
            MediaCommand::Offer {
                peer: 7,
                request: Some(1),
                sdp: "v=0".into(),
            },
            now,
        );
        core.handle_command(
            MediaCommand::SetMute {
                peer: 99,
                mic_muted: true,
                camera_off: true,
                screen_sharing: false,
            },
            now,
        );
        assert!(core.drain_events().next().is_none());
        assert_eq!(core.gauges().peers, 12);
        // A broken offer from a live peer: one short line, with the request id.
        core.handle_command(
            MediaCommand::Offer {
                peer: 1,
                request: Some(5),
                sdp: "v=0\r\nm=garbage".into(),
            },
            now,
        );
        let events: Vec<_> = core.drain_events().collect();
        assert!(
            matches!(&events[..], [MediaEvent::SdpRefused { peer: 1, request: Some(5), reason }] if !reason.contains('\n')),
            "{events:?}"
        );
        // The timer is kept, not searched for.
        assert!(core.poll_timeout() <= now + IDLE_TIMEOUT);
        core.handle_timeout(now + Duration::from_millis(200));
        assert!(core.poll_timeout() > now);
    }

    /// Offers that break the connection (found by `cargo fuzz`, fuzz/): the refusal says so and the
    /// peer is lost at once, so a later offer is not answered on a connection that is gone.
    #[test]
    fn an_offer_that_breaks_the_connection_loses_the_peer_at_once() {
        // str0m (0.25.0) closes the connection on a first offer without a=fingerprint; and it
        // panics ("Pt locked multiple times", caught by the peer) on this one, whose payload types
        // take up every dynamic one.
        let no_fingerprint =
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
            a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\n\
            a=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";
        let str0m_panics = include_str!("../testdata/str0m-panic-offer.sdp");
        for sdp in [no_fingerprint, str0m_panics] {
            let now = Instant::now();
            let mut core = core_with_peers(2, now);
            core.handle_command(
                MediaCommand::Offer {
                    peer: 1,
                    request: Some(5),
                    sdp: sdp.into(),
                },
                now,
            );
            let events: Vec<_> = core.drain_events().collect();
            assert_eq!(
                events,
                [
                    MediaEvent::SdpRefused {
                        peer: 1,
                        request: Some(5),
                        reason: "that offer broke the media connection"
                    },
                    MediaEvent::PeerLost { peer: 1 }
                ]
            );
            assert_eq!(core.gauges().peers, 1);
            core.handle_command(
                MediaCommand::Offer {
                    peer: 1,
                    request: Some(6),
                    sdp: sdp.into(),
                },
                now,
            );
            assert!(core.drain_events().next().is_none(), "the peer is gone");
        }
    }
}
