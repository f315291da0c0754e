//! The in-memory network: the server's real control plane ([`Control`]) and media workers
//! ([`MediaCore`]), and endpoints that speak the protocol and exchange datagrams with them through
//! function calls, on a fake clock. No sockets, no threads: deterministic.
//!
//! [`Browser`] is the stand-in for a browser tab: a full-ICE str0m peer in frame mode that publishes
//! one audio track (and optionally a camera and a screen-share video track). Other endpoints (the Rust client's `Call`)
//! implement [`Endpoint`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parley::control::{
    Control, ControlConfig, Output, PasswordResult, PasswordWork, SessionId, StoreRequest,
};
use parley_proto::{
    ChatMessage, ClientMessage, ErrorCode, MediaState, MediaStateChange, ParticipantId, Role,
    ServerMessage,
};
use parley_sfu::{MediaConfig, MediaCore, MediaCounters, MediaGauges};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};

/// A datagram in flight: (source, destination, contents).
pub type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

/// Anything that takes part in a call: it gets the server's messages and datagrams, and answers.
pub trait Endpoint {
    /// The address its datagrams come from.
    fn addr(&self) -> SocketAddr;
    /// A message from the server; returns the messages it sends in reply.
    fn on_message(&mut self, message: &ServerMessage, now: Instant) -> Vec<ClientMessage>;
    fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    );
    /// Runs it until it has nothing more to do now; returns the datagrams it sends.
    fn poll(&mut self, now: Instant) -> Vec<Datagram>;
    /// When it next needs [`Endpoint::on_timeout`].
    fn next_timeout(&self) -> Instant;
    fn on_timeout(&mut self, now: Instant);
    /// Messages it sends of its own accord (not in reply to one), drained.
    fn take_messages(&mut self) -> Vec<ClientMessage> {
        Vec::new()
    }
    /// It joins with `server_offer`: the server makes the first offer, it answers.
    fn server_offer(&self) -> bool {
        false
    }
}

/// The address of media worker `w`.
pub fn worker_addr(w: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, w as u8, 1], 5000))
}

/// The address of participant `id`'s endpoint.
pub fn client_addr(id: ParticipantId) -> SocketAddr {
    SocketAddr::from(([10, 1, (id >> 8) as u8, id as u8], 4000))
}

pub struct Net<E: Endpoint = Browser> {
    pub now: Instant,
    pub control: Control,
    pub workers: Vec<MediaCore>,
    pub clients: Vec<(SessionId, E)>,
    /// Real time spent inside the media cores (for the forwarding benchmark).
    pub media_busy: Duration,
    /// What the control plane told the recorder, and the packets workers copied for it.
    pub recorder: Vec<parley::control::RecorderCommand>,
    /// What the control plane asked of the take store.
    pub takes: Vec<parley::control::TakeRequest>,
    pub recorded: Vec<parley_sfu::Recorded>,
    /// Every message the server sent, by session (for assertions).
    pub sent: HashMap<SessionId, Vec<ServerMessage>>,
    /// Messages from clients not yet handed to the control plane.
    inbox: Vec<(SessionId, ClientMessage)>,
    next_chat_id: i64,
    /// Datagrams a test injects as if from the network: delivered on the next pump.
    pub injected: Vec<Datagram>,
}

impl<E: Endpoint> Net<E> {
    /// A server with `workers` media workers and rooms "band" and "other".
    pub fn with_workers(workers: usize) -> Net<E> {
        let now = Instant::now();
        let mut config = ControlConfig::new(workers);
        config.limits.max_participants = 64;
        let mut control = Control::new(config);
        control.create_room("band").unwrap();
        control.create_room("other").unwrap();
        let workers = (0..workers)
            .map(|w| {
                let addr = worker_addr(w);
                let mut config = MediaConfig::new(vec![(addr, addr)]);
                config.worker = w;
                MediaCore::new_at(config, now)
            })
            .collect();
        Net {
            now,
            control,
            workers,
            clients: Vec::new(),
            media_busy: Duration::ZERO,
            recorder: Vec::new(),
            takes: Vec::new(),
            recorded: Vec::new(),
            sent: HashMap::new(),
            inbox: Vec::new(),
            next_chat_id: 1,
            injected: Vec::new(),
        }
    }

    /// Connects `endpoint` as session `id` and asks to join `room` with `role`.
    pub fn join_with(&mut self, id: SessionId, room: &str, role: Role, endpoint: E) {
        let server_offer = endpoint.server_offer();
        self.clients.push((id, endpoint));
        self.control.connect(id);
        self.send(
            id,
            ClientMessage::Join {
                id: Some(1),
                room: room.into(),
                name: format!("p{id}"),
                state: MediaState::default(),
                role,
                credentials: Default::default(),
                resume: None,
                server_offer,
            },
        );
        self.pump();
    }

    /// A client message from session `id`, handled on the next pump.
    pub fn send(&mut self, id: SessionId, message: ClientMessage) {
        self.inbox.push((id, message));
    }

    /// The signalling connection of `id` closes.
    pub fn disconnect(&mut self, id: SessionId) {
        self.control.disconnect(id);
        self.pump();
    }

    pub fn set_mic_muted(&mut self, id: SessionId, muted: bool) {
        self.set_state(
            id,
            MediaStateChange {
                mic_muted: Some(muted),
                ..Default::default()
            },
        );
    }

    /// `set_state` from session `id`.
    pub fn set_state(&mut self, id: SessionId, change: MediaStateChange) {
        self.send(id, ClientMessage::SetState { id: None, change });
        self.pump();
    }

    pub fn client(&mut self, id: SessionId) -> &mut E {
        &mut self
            .clients
            .iter_mut()
            .find(|(s, _)| *s == id)
            .expect("a client with that id")
            .1
    }

    pub fn endpoint(&self, id: SessionId) -> &E {
        &self
            .clients
            .iter()
            .find(|(s, _)| *s == id)
            .expect("a client with that id")
            .1
    }

    /// Everything the media workers counted, added up.
    pub fn counters(&self) -> MediaCounters {
        let mut all = MediaCounters::default();
        for w in &self.workers {
            all.add(&w.counters());
        }
        all
    }

    pub fn gauges(&self, worker: usize) -> MediaGauges {
        self.workers[worker].gauges()
    }

    /// Errors session `id` was sent, with their codes.
    pub fn errors(&self, id: SessionId) -> Vec<(Option<u64>, ErrorCode, String)> {
        self.sent
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|m| match m {
                ServerMessage::Error { id, code, message } => Some((*id, *code, message.clone())),
                _ => None,
            })
            .collect()
    }

    /// Delivers signalling, datagrams and timers until `duration` of fake time has passed.
    pub fn run(&mut self, duration: Duration, mut each_tick: impl FnMut(&mut Net<E>)) {
        let end = self.now + duration;
        while self.now < end {
            each_tick(self);
            self.pump();
            self.now += Duration::from_millis(5);
            let now = self.now;
            let busy = Instant::now();
            for w in &mut self.workers {
                if w.poll_timeout() <= now {
                    w.handle_timeout(now);
                }
            }
            self.media_busy += busy.elapsed();
            for (_, c) in &mut self.clients {
                if c.next_timeout() <= now {
                    c.on_timeout(now);
                }
            }
        }
    }

    /// Moves everything that is waiting until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            let now = self.now;
            for (session, message) in std::mem::take(&mut self.inbox) {
                moved = true;
                self.control.handle_message(session, message, now);
            }
            let outputs: Vec<Output> = self.control.drain_outputs().collect();
            for output in outputs {
                moved = true;
                self.carry_out(output);
            }
            let busy = Instant::now();
            let mut events = Vec::new();
            let mut transmits = Vec::new();
            for w in &mut self.workers {
                events.extend(w.drain_events());
                self.recorded.extend(w.drain_recorded());
                transmits.extend(w.drain_transmits());
            }
            self.media_busy += busy.elapsed();
            for event in events {
                moved = true;
                self.control.media_event(event);
            }
            for t in transmits {
                moved = true;
                if let Some((_, c)) = self
                    .clients
                    .iter_mut()
                    .find(|(_, c)| c.addr() == t.destination)
                {
                    c.on_datagram(now, t.source, t.destination, &t.contents);
                }
            }
            let mut outgoing = std::mem::take(&mut self.injected);
            for (session, c) in &mut self.clients {
                outgoing.extend(c.poll(now));
                for m in c.take_messages() {
                    self.inbox.push((*session, m));
                }
            }
            let busy = Instant::now();
            for (source, destination, data) in outgoing {
                moved = true;
                if let Some(w) = self
                    .workers
                    .iter_mut()
                    .enumerate()
                    .find(|(i, _)| worker_addr(*i) == destination)
                    .map(|(_, w)| w)
                {
                    w.handle_datagram(now, source, destination, &data);
                }
            }
            self.media_busy += busy.elapsed();
            if !moved {
                return;
            }
        }
    }

    fn carry_out(&mut self, output: Output) {
        let now = self.now;
        match output {
            Output::Send { sessions, message } => {
                for session in sessions {
                    self.sent.entry(session).or_default().push(message.clone());
                    if let Some((_, c)) = self.clients.iter_mut().find(|(s, _)| *s == session) {
                        for reply in c.on_message(&message, now) {
                            self.inbox.push((session, reply));
                        }
                    }
                }
            }
            Output::Media { worker, command } => {
                let busy = Instant::now();
                self.workers[worker].handle_command(command, now);
                self.media_busy += busy.elapsed();
            }
            Output::Store(StoreRequest::SaveChat {
                session,
                request_id,
                room,
                author_id,
                author,
                text,
            }) => {
                let message = ChatMessage {
                    id: self.next_chat_id,
                    room,
                    author_id,
                    author,
                    text,
                    sent_at_ms: 0,
                };
                self.next_chat_id += 1;
                self.control.chat_saved(session, request_id, message);
            }
            Output::Store(StoreRequest::LoadHistory {
                session,
                request_id,
                room,
                ..
            }) => self
                .control
                .history_loaded(session, request_id, room, (Vec::new(), false)),
            Output::Store(StoreRequest::PruneChat { .. } | StoreRequest::ReadAdminHash) => {}
            Output::Store(StoreRequest::LoadRecordings {
                session,
                request_id,
                room,
            }) => self
                .control
                .recordings_loaded(session, request_id, room, Vec::new()),
            // The in-memory network keeps no recordings: there is none to delete.
            Output::Store(StoreRequest::DeleteRecording {
                session,
                request_id,
                room,
                recording,
            }) => self
                .control
                .recording_deleted(session, request_id, room, recording, false),
            Output::Recorder(command) => self.recorder.push(command),
            Output::Takes(request) => self.takes.push(request),
            // The in-memory clients never send `join` with `resume` (the real binary's tests do).
            Output::Rebind { .. } => {}
            Output::Store(StoreRequest::Write {
                session,
                request_id,
                then,
                ..
            }) => self
                .control
                .written(session, request_id, then, true, self.now),
            Output::Password(job) => {
                let result = match &job.work {
                    PasswordWork::Verify { hash } => PasswordResult::Matched(
                        parley::secret::verify_password(&job.password, hash),
                    ),
                    PasswordWork::Hash => parley::secret::hash_password(&job.password)
                        .map_or(PasswordResult::Failed, PasswordResult::Hashed),
                };
                let now = self.now;
                self.control.password_done(job, result, now);
            }
        }
    }
}

impl Net<Browser> {
    /// One worker, rooms "band" and "other".
    pub fn new() -> Net<Browser> {
        Net::with_workers(1)
    }

    /// A browser stand-in `id` joins `room` and offers one send-only audio track.
    pub fn join(&mut self, id: SessionId, room: &str) {
        self.join_with(id, room, Role::Member, Browser::new(id, self.now));
    }

    /// Every browser writes one 20 ms Opus frame (and a VP8 frame if it sends video).
    pub fn speak(&mut self, frame: u64) {
        let now = self.now;
        for (_, c) in &mut self.clients {
            c.speak(frame, now);
        }
    }
}

impl Default for Net<Browser> {
    fn default() -> Self {
        Net::new()
    }
}

/// A browser stand-in: a full-ICE str0m peer in frame mode.
pub struct Browser {
    pub id: ParticipantId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    /// Offer video too (a viewer that tries to publish, in tests).
    pub with_video: bool,
    /// Offer a second video m-line (a screen share) after the camera's.
    pub with_screen: bool,
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    pub screen_mid: Option<Mid>,
    pub pending: Option<SdpPendingOffer>,
    /// Frames received, by stream id (the publisher's participant id).
    pub received: HashMap<String, usize>,
    /// Video frames received, by stream id.
    pub received_video: HashMap<String, usize>,
    /// Video frames received, by (stream id, track id) as the server's `a=msid` names them.
    pub received_video_tracks: HashMap<(String, String), usize>,
    /// What the server's receiver reports last said of this browser's own audio: the highest
    /// sequence number it received, and its cumulative loss.
    pub reported: Option<(u64, u64)>,
    /// The latest RTCP sender report seen with each stream's media, by stream id.
    pub sender_info: HashMap<String, str0m::rtp::rtcp::SenderInfo>,
    timeout: Instant,
    /// The last `active_speaker` this client was told.
    pub speaker: Option<ParticipantId>,
    /// Loudest meter level seen per participant in `levels` messages.
    pub meters: HashMap<ParticipantId, u8>,
    /// Level (-dBov) this client's audio carries in its RTP header extension.
    pub talk_level: i8,
    pub answered: bool,
    /// Offers the server sent this client.
    pub offers: usize,
    /// Joins with `server_offer`: sends no offer of its own, and takes the first three m-lines of the
    /// server's first offer as its microphone, camera and screen share.
    pub answers_first_offer: bool,
    /// Offers it sent the server.
    pub offers_sent: usize,
}

impl Browser {
    pub fn new(id: ParticipantId, now: Instant) -> Browser {
        let addr = client_addr(id);
        let mut rtc = Rtc::builder()
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).expect("a host candidate"));
        Browser {
            id,
            addr,
            rtc,
            with_video: false,
            with_screen: false,
            audio_mid: None,
            video_mid: None,
            screen_mid: None,
            pending: None,
            received: HashMap::new(),
            received_video: HashMap::new(),
            received_video_tracks: HashMap::new(),
            reported: None,
            sender_info: HashMap::new(),
            timeout: now,
            speaker: None,
            meters: HashMap::new(),
            talk_level: -127,
            answered: false,
            offers: 0,
            answers_first_offer: false,
            offers_sent: 0,
        }
    }

    /// A browser that publishes audio, a camera and a screen share on the server's first offer.
    pub fn answering_first_offer(id: ParticipantId, now: Instant) -> Browser {
        let mut b = Browser::with_screen(id, now);
        b.answers_first_offer = true;
        b
    }

    /// A browser that publishes audio and video.
    pub fn with_video(id: ParticipantId, now: Instant) -> Browser {
        let mut b = Browser::new(id, now);
        b.with_video = true;
        b
    }

    /// A browser that publishes audio, a camera and a screen share (three m-lines, in that order).
    pub fn with_screen(id: ParticipantId, now: Instant) -> Browser {
        let mut b = Browser::with_video(id, now);
        b.with_screen = true;
        b
    }

    fn speak(&mut self, frame: u64, now: Instant) {
        use str0m::format::Codec;
        use str0m::media::Frequency;
        let level = self.talk_level;
        // Errors before DTLS is up are expected: nothing can be sent yet.
        self.write(self.audio_mid, Codec::Opus, |writer, pt| {
            let time = MediaTime::new(frame * 960, Frequency::FORTY_EIGHT_KHZ);
            let _ = writer.audio_level(level, level > -60).write(
                pt,
                now,
                time,
                vec![0xf8u8, 0xff, 0xfe],
            );
        });
        // A tiny VP8 keyframe-looking payload (the SFU does not decode it).
        for mid in [self.video_mid, self.screen_mid] {
            self.write(mid, Codec::Vp8, |writer, pt| {
                let time = MediaTime::new(frame * 1800, Frequency::NINETY_KHZ);
                let _ = writer.write(pt, now, time, vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
            });
        }
    }

    /// Hands the writer of track `mid` and its payload type for `codec` to `write`.
    fn write(
        &mut self,
        mid: Option<Mid>,
        codec: str0m::format::Codec,
        write: impl FnOnce(str0m::media::Writer<'_>, str0m::media::Pt),
    ) {
        let Some(writer) = mid.and_then(|m| self.rtc.writer(m)) else {
            return;
        };
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt());
        if let Some(pt) = pt {
            write(writer, pt);
        }
    }
}

impl Endpoint for Browser {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn server_offer(&self) -> bool {
        self.answers_first_offer
    }

    fn on_message(&mut self, message: &ServerMessage, _now: Instant) -> Vec<ClientMessage> {
        match message {
            ServerMessage::Joined { .. } if self.answers_first_offer => Vec::new(),
            ServerMessage::Joined { .. } => {
                self.offers_sent += 1;
                let mut change = self.rtc.sdp_api();
                self.audio_mid =
                    Some(change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
                if self.with_video {
                    self.video_mid = Some(change.add_media(
                        MediaKind::Video,
                        Direction::SendOnly,
                        None,
                        None,
                        None,
                    ));
                }
                if self.with_screen {
                    self.screen_mid = Some(change.add_media(
                        MediaKind::Video,
                        Direction::SendOnly,
                        None,
                        None,
                        None,
                    ));
                }
                let Some((offer, pending)) = change.apply() else {
                    return Vec::new();
                };
                self.pending = Some(pending);
                vec![ClientMessage::Offer {
                    id: Some(2),
                    sdp: offer.to_sdp_string(),
                }]
            }
            ServerMessage::Answer { sdp, .. } => {
                let answer = SdpAnswer::from_sdp_string(sdp).expect("the server's answer parses");
                let pending = self.pending.take().expect("an offer was pending");
                self.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .expect("the server's answer fits");
                self.answered = true;
                Vec::new()
            }
            ServerMessage::Offer { sdp } => {
                self.offers += 1;
                let offer = SdpOffer::from_sdp_string(sdp).expect("the server's offer parses");
                let answer = self
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .expect("the server's offer is acceptable");
                if self.answers_first_offer && self.offers == 1 {
                    // Recvonly on the server's side, so ours to send on (str0m answers sendonly).
                    let mut mids = sdp
                        .lines()
                        .filter_map(|l| l.trim_end().strip_prefix("a=mid:"))
                        .map(Mid::from);
                    self.audio_mid = mids.next();
                    self.video_mid = mids.next();
                    self.screen_mid = mids.next();
                }
                vec![ClientMessage::Answer {
                    id: None,
                    sdp: answer.to_sdp_string(),
                }]
            }
            ServerMessage::ActiveSpeaker { participant_id } => {
                self.speaker = *participant_id;
                Vec::new()
            }
            ServerMessage::Levels { levels } => {
                for l in levels {
                    let m = self.meters.entry(l.id).or_default();
                    *m = (*m).max(l.level);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Ok(contents) = data.try_into() else {
            return;
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
        let _ = self.rtc.handle_input(input);
    }

    fn poll(&mut self, _now: Instant) -> Vec<Datagram> {
        let mut out = Vec::new();
        loop {
            match self.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) => {
                    self.timeout = t;
                    break;
                }
                Ok(RtcOutput::Transmit(t)) => {
                    out.push((t.source, t.destination, t.contents.to_vec()))
                }
                Ok(RtcOutput::Event(Event::MediaData(d))) => {
                    let Some(media) = self.rtc.media(d.mid) else {
                        continue;
                    };
                    let stream = media.stream_id().to_string();
                    let video = media.kind() == MediaKind::Video;
                    if video {
                        let key = (stream.clone(), media.track_id().to_string());
                        *self.received_video_tracks.entry(key).or_default() += 1;
                    }
                    if let Some(info) = d.last_sender_info {
                        self.sender_info.insert(stream.clone(), info);
                    }
                    let counter = if video {
                        &mut self.received_video
                    } else {
                        &mut self.received
                    };
                    *counter.entry(stream).or_default() += 1;
                }
                Ok(RtcOutput::Event(Event::MediaEgressStats(stats))) => {
                    if let (Some(remote), true) = (stats.remote, Some(stats.mid) == self.audio_mid)
                    {
                        self.reported =
                            Some((*remote.maximum_sequence_number, remote.packets_lost));
                    }
                }
                Ok(RtcOutput::Event(_)) => {}
                Err(_) => break,
            }
        }
        out
    }

    fn next_timeout(&self) -> Instant {
        self.timeout
    }

    fn on_timeout(&mut self, now: Instant) {
        let _ = self.rtc.handle_input(Input::Timeout(now));
    }
}

/// Everyone talks (20 ms frames) for `duration` of fake time.
pub fn talk_for(net: &mut Net<Browser>, duration: Duration) {
    let mut frame = 0u64;
    let mut last = net.now;
    net.run(duration, |n| {
        if n.now.duration_since(last) >= Duration::from_millis(20) {
            last = n.now;
            frame += 1;
            n.speak(frame);
        }
    });
}

/// Audio frames `at` received from `from`.
pub fn got(net: &mut Net<Browser>, at: ParticipantId, from: ParticipantId) -> usize {
    net.client(at)
        .received
        .get(&from.to_string())
        .copied()
        .unwrap_or(0)
}
