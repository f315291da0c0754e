//! The sans-IO core of one participant: a full-ICE str0m `Rtc` in frame mode that publishes its own
//! send-only tracks with one offer, answers every server offer, sends audio and video on a media clock and
//! counts (and optionally records) what it receives.
//!
//! It is fed with server messages ([`Call::handle_server`]), datagrams ([`Call::handle_datagram`]) and the
//! time ([`Call::handle_timeout`]); it hands back datagrams ([`Call::drain_transmits`]) and signalling
//! ([`Call::pop_signal`]). It never touches a socket or reads a clock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use parley_proto::{ClientMessage, ParticipantId, ParticipantInfo, Role, ServerMessage};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaData, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::audio::{make_probe, read_probe, AudioFrame, AudioSource, SAMPLE_RATE, VOICE_LEVEL};
use crate::clock;
use crate::error::ClientError;
use crate::recorder::Recorder;
use crate::stats::{CallStats, MediaKind as StatKind};
use crate::video::SyntheticVp8;

/// When the media clock falls this far behind (a stalled task), it jumps ahead instead of bursting.
const MAX_MEDIA_LAG: Duration = Duration::from_millis(200);

/// What a participant publishes and does with what it receives.
#[derive(Default)]
pub struct CallConfig {
    /// `member` publishes, `viewer` only receives ([`crate::Session::join`] sets it from the role it joins
    /// with).
    pub role: Role,
    /// Audio to send (members only). A member with neither audio nor video offers no tracks at all.
    pub audio: Option<Box<dyn AudioSource>>,
    /// Synthetic VP8 video to send (members only).
    pub video: Option<SyntheticVp8>,
    /// Latency probes: outgoing audio payloads carry their send time, incoming ones are measured.
    /// Only meaningful between participants of one process (one clock epoch).
    pub probe: bool,
    /// Write every publisher's audio to `<dir>/<id>-<name>.opus`.
    pub record_dir: Option<PathBuf>,
}

/// The server's `joined` reply, as the call needs it.
#[derive(Debug, Clone)]
pub struct Joined {
    pub you: ParticipantId,
    pub room: String,
    pub name: String,
    pub participants: Vec<ParticipantInfo>,
    pub active_speaker: Option<ParticipantId>,
}

/// A datagram to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// A media clock: when the next frame is due and its RTP time.
#[derive(Debug, Clone, Copy)]
struct MediaClock {
    next: Instant,
    rtp: u64,
}

pub struct Call {
    rtc: Rtc,
    joined_at: Instant,
    you: ParticipantId,
    names: HashMap<ParticipantId, String>,
    /// Participants who left: their recordings are closed and not reopened by late packets.
    departed: HashSet<ParticipantId>,
    /// Who publishes what arrives on a track, when the server says so out of band (Janus).
    track_owners: HashMap<Mid, ParticipantId>,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    audio_pt: Option<Pt>,
    video_pt: Option<Pt>,
    pending: Option<SdpPendingOffer>,
    audio: Option<Box<dyn AudioSource>>,
    audio_clock: Option<MediaClock>,
    /// The previous audio slot was silence (DTX): the next packet starts a talk spurt.
    after_silence: bool,
    audio_ended: bool,
    video: Option<SyntheticVp8>,
    video_clock: Option<MediaClock>,
    probe: bool,
    recorder: Option<Recorder>,
    signals: VecDeque<ClientMessage>,
    transmits: Vec<Transmit>,
    rtc_timeout: Instant,
    failure: Option<String>,
    active_speaker: Option<ParticipantId>,
    stats: CallStats,
}

impl Call {
    /// Sets up the connection for a participant that just joined (`joined_at`: when the join was
    /// requested) with a UDP socket at `local`, and queues its one offer.
    pub fn new(
        config: CallConfig,
        joined: Joined,
        local: SocketAddr,
        joined_at: Instant,
        now: Instant,
    ) -> Result<Call, ClientError> {
        Call::build(config, joined, local, joined_at, now, true)
    }

    /// A connection that never offers: it waits for the server's offer and answers it (Janus's
    /// subscriber handles, which receive everything and send nothing). Every track it receives belongs
    /// to the publisher set with [`Call::set_track_owner`] (or, failing that, named by its stream id).
    pub fn answering(
        config: CallConfig,
        joined: Joined,
        local: SocketAddr,
        joined_at: Instant,
        now: Instant,
    ) -> Result<Call, ClientError> {
        Call::build(config, joined, local, joined_at, now, false)
    }

    fn build(
        config: CallConfig,
        joined: Joined,
        local: SocketAddr,
        joined_at: Instant,
        now: Instant,
        offer: bool,
    ) -> Result<Call, ClientError> {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            // Hold audio back for at most a few packets when one is missing.
            .set_reordering_size_audio(3)
            .build(now);
        let candidate = Candidate::host(local, Protocol::Udp)
            .map_err(|e| ClientError::Rtc(format!("local address {local}: {e}")))?;
        rtc.add_local_candidate(candidate);

        let stream_id = joined.you.to_string();
        // Viewers publish nothing, and neither do members with nothing to send: their tracks would only
        // make everyone else's SDP bigger.
        let publish = offer
            && config.role == Role::Member
            && (config.audio.is_some() || config.video.is_some());
        let mut signals = VecDeque::new();
        let mut pending = None;
        let (audio_mid, video_mid) = if offer {
            let (audio_mid, video_mid, sdp, p) =
                Call::first_offer(&mut rtc, &config, &stream_id, publish)?;
            signals.push_back(ClientMessage::Offer { id: None, sdp });
            pending = Some(p);
            (audio_mid, video_mid)
        } else {
            (None, None)
        };

        let recorder = match &config.record_dir {
            Some(dir) => Some(Recorder::new(dir, &joined.room)?),
            None => None,
        };
        let names = joined
            .participants
            .iter()
            .map(|p| (p.id, p.name.clone()))
            .collect();
        Ok(Call {
            rtc,
            joined_at,
            you: joined.you,
            names,
            departed: HashSet::new(),
            track_owners: HashMap::new(),
            audio_mid,
            video_mid,
            audio_pt: None,
            video_pt: None,
            pending,
            audio: if publish { config.audio } else { None },
            audio_clock: None,
            after_silence: true,
            audio_ended: false,
            video: if publish { config.video } else { None },
            video_clock: None,
            probe: config.probe,
            recorder,
            signals,
            transmits: Vec::new(),
            rtc_timeout: now,
            failure: None,
            active_speaker: joined.active_speaker,
            stats: CallStats {
                you: joined.you,
                room: joined.room,
                name: joined.name,
                ..Default::default()
            },
        })
    }

    /// The one offer a participant makes: its send-only tracks, or receive-only lines for the transport.
    /// Returns the audio and video mids (when publishing), the offer and its pending state.
    fn first_offer(
        rtc: &mut Rtc,
        config: &CallConfig,
        stream_id: &str,
        publish: bool,
    ) -> Result<(Option<Mid>, Option<Mid>, String, SdpPendingOffer), ClientError> {
        let stream_id = stream_id.to_string();
        let mut change = rtc.sdp_api();
        let (audio_mid, video_mid) = if publish {
            let audio = change.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(stream_id.clone()),
                Some(format!("{stream_id}-audio")),
                None,
            );
            let video = config.video.as_ref().map(|_| {
                change.add_media(
                    MediaKind::Video,
                    Direction::SendOnly,
                    Some(stream_id.clone()),
                    Some(format!("{stream_id}-video")),
                    None,
                )
            });
            (Some(audio), video)
        } else {
            // Receive-only lines only carry the transport; the server's offers bring the tracks.
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            (None, None)
        };
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| ClientError::Rtc("nothing to offer".into()))?;
        Ok((audio_mid, video_mid, offer.to_sdp_string(), pending))
    }

    pub fn you(&self) -> ParticipantId {
        self.you
    }

    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// The dominant speaker as the server last said.
    pub fn active_speaker(&self) -> Option<ParticipantId> {
        self.active_speaker
    }

    /// The names of the others in the room (and of those who left).
    pub fn participants(&self) -> &HashMap<ParticipantId, String> {
        &self.names
    }

    /// The audio source ran out (a file played without `--loop`).
    pub fn audio_ended(&self) -> bool {
        self.audio_ended
    }

    /// Why the call cannot go on, if it cannot.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    pub fn is_closed(&self) -> bool {
        self.failure.is_some() || !self.rtc.is_alive()
    }

    /// Files written by the recorder.
    pub fn recordings(&self) -> Vec<PathBuf> {
        self.recorder
            .as_ref()
            .map(|r| r.written.clone())
            .unwrap_or_default()
    }

    /// Media arriving on track `mid` comes from `publisher` (for servers whose stream ids are not
    /// participant ids, such as Janus).
    pub fn set_track_owner(&mut self, mid: &str, publisher: ParticipantId) {
        self.track_owners.insert(Mid::from(mid), publisher);
    }

    /// A remote ICE candidate sent apart from the SDP (trickle), as an SDP attribute value
    /// (`candidate:...`, with or without the `a=` prefix).
    pub fn add_remote_candidate(&mut self, candidate: &str, now: Instant) {
        let line = candidate.trim().trim_start_matches("a=");
        match Candidate::from_sdp_string(line) {
            Ok(c) => {
                self.rtc.add_remote_candidate(c);
                self.drive(now);
            }
            Err(e) => tracing::debug!("a remote candidate cannot be used ({e}): {line}"),
        }
    }

    /// Signalling is waiting to be sent.
    pub fn has_signal(&self) -> bool {
        !self.signals.is_empty()
    }

    /// The next signalling message to send.
    pub fn pop_signal(&mut self) -> Option<ClientMessage> {
        self.signals.pop_front()
    }

    /// Datagrams to send.
    pub fn drain_transmits(&mut self) -> std::vec::Drain<'_, Transmit> {
        self.transmits.drain(..)
    }

    /// When [`Call::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.rtc_timeout;
        for c in [self.audio_clock, self.video_clock].into_iter().flatten() {
            t = t.min(c.next);
        }
        t
    }

    /// A message from the server.
    pub fn handle_server(&mut self, message: &ServerMessage, now: Instant) {
        match message {
            ServerMessage::Answer { sdp, .. } => {
                let Some(pending) = self.pending.take() else {
                    tracing::warn!("an answer from the server without an offer of ours");
                    return;
                };
                let result = SdpAnswer::from_sdp_string(sdp)
                    .map_err(|e| e.to_string())
                    .and_then(|a| {
                        self.rtc
                            .sdp_api()
                            .accept_answer(pending, a)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = result {
                    self.fail(format!("the server's answer cannot be used: {e}"));
                }
            }
            ServerMessage::Offer { sdp } => {
                let result = SdpOffer::from_sdp_string(sdp)
                    .map_err(|e| e.to_string())
                    .and_then(|o| {
                        self.rtc
                            .sdp_api()
                            .accept_offer(o)
                            .map_err(|e| e.to_string())
                    });
                match result {
                    Ok(answer) => {
                        let sdp = answer.to_sdp_string();
                        let lines = sdp.matches("\nm=").count();
                        tracing::debug!(
                            participant = self.you,
                            "answer: {} bytes, {lines} m-lines",
                            sdp.len()
                        );
                        if sdp.len() + 64 > parley_proto::MAX_MESSAGE_BYTES {
                            tracing::warn!(
                                participant = self.you,
                                "our answer has {} bytes for {lines} tracks: over the server's {}-byte message limit",
                                sdp.len(),
                                parley_proto::MAX_MESSAGE_BYTES
                            );
                        }
                        self.signals
                            .push_back(ClientMessage::Answer { id: None, sdp });
                    }
                    Err(e) => tracing::warn!("a server offer cannot be used: {e}"),
                }
            }
            ServerMessage::ParticipantJoined { participant }
            | ServerMessage::ParticipantUpdated { participant } => {
                self.names.insert(participant.id, participant.name.clone());
            }
            ServerMessage::ParticipantLeft { participant_id } => {
                // The name stays known: packets still in flight are counted under it.
                self.departed.insert(*participant_id);
                if let Some(r) = &mut self.recorder {
                    r.close(*participant_id);
                }
            }
            ServerMessage::ActiveSpeaker { participant_id } => {
                self.active_speaker = *participant_id;
            }
            ServerMessage::Error {
                id: None,
                code,
                message,
            } => {
                tracing::warn!("server error {}: {message}", code.as_str());
                self.stats
                    .server_errors
                    .push(format!("{}: {message}", code.as_str()));
            }
            _ => {}
        }
        self.drive(now);
    }

    /// A datagram arrived on our socket. Returns false when it is not for this connection.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Ok(contents) = data.try_into() else {
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
        if !self.rtc.accepts(&input) {
            return false;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            self.fail(format!("connection failed: {e}"));
            return true;
        }
        self.drive(now);
        true
    }

    /// Time passed: sends the media that is due and runs str0m's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let sent = self.send_audio(now) | self.send_video(now);
        // After a write, str0m needs the current time to release the packet now rather than at its
        // next timer.
        if sent || now >= self.rtc_timeout {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                self.fail(format!("connection failed: {e}"));
            }
        }
        self.drive(now);
    }

    /// Closes the recordings and the connection.
    pub fn close(&mut self) {
        if let Some(r) = &mut self.recorder {
            r.finish();
        }
        self.rtc.disconnect();
    }

    fn fail(&mut self, why: String) {
        tracing::warn!(participant = self.you, "{why}");
        if self.failure.is_none() {
            self.failure = Some(why);
        }
    }

    /// Writes the audio that is due; true when something was written.
    fn send_audio(&mut self, now: Instant) -> bool {
        let mut sent = false;
        let (Some(mid), Some(source)) = (self.audio_mid, self.audio.as_mut()) else {
            return sent;
        };
        let Some(clock) = self.audio_clock.as_mut() else {
            return sent;
        };
        while clock.next <= now {
            let lag = now - clock.next;
            if lag > MAX_MEDIA_LAG {
                // Skip the lost time (as a real microphone would), keeping RTP time in step with it.
                let frames = lag.as_micros() / 20_000;
                clock.rtp += frames as u64 * 960;
                clock.next += Duration::from_millis(20) * frames as u32;
            }
            let Some(frame) = source.next_frame() else {
                self.audio_ended = true;
                self.audio_clock = None;
                return sent;
            };
            let samples = match frame {
                AudioFrame::Silence { samples } => {
                    self.after_silence = true;
                    samples
                }
                AudioFrame::Packet {
                    mut data,
                    samples,
                    level,
                } => {
                    if self.probe {
                        make_probe(&mut data, clock::nanos_since_epoch(now));
                    }
                    let Some(writer) = self.rtc.writer(mid) else {
                        return sent;
                    };
                    let Some(pt) = negotiated_pt(&mut self.audio_pt, &writer, Codec::Opus) else {
                        // The server did not accept Opus: nothing can be sent.
                        return sent;
                    };
                    let len = data.len();
                    let level = level.min(127);
                    let result = writer
                        .audio_level(-(level as i8), level <= VOICE_LEVEL)
                        .start_of_talkspurt(self.after_silence)
                        .write(
                            pt,
                            now,
                            MediaTime::new(clock.rtp, Frequency::FORTY_EIGHT_KHZ),
                            data,
                        );
                    match result {
                        Ok(()) => {
                            sent = true;
                            self.stats.sent_audio_packets += 1;
                            self.stats.sent_audio_bytes += len as u64;
                        }
                        Err(e) => tracing::debug!("audio not sent: {e}"),
                    }
                    self.after_silence = false;
                    samples
                }
            };
            clock.rtp += u64::from(samples);
            clock.next +=
                Duration::from_micros(u64::from(samples) * 1_000_000 / u64::from(SAMPLE_RATE));
        }
        sent
    }

    /// Writes the video frames that are due; true when something was written.
    fn send_video(&mut self, now: Instant) -> bool {
        let mut sent = false;
        let (Some(mid), Some(video)) = (self.video_mid, self.video.as_mut()) else {
            return sent;
        };
        let Some(clock) = self.video_clock.as_mut() else {
            return sent;
        };
        let interval = video.frame_interval();
        while clock.next <= now {
            let lag = now - clock.next;
            if lag > MAX_MEDIA_LAG {
                let frames = (lag.as_micros() / interval.as_micros().max(1)) as u32;
                clock.rtp += u64::from(frames) * video.rtp_step();
                clock.next += interval * frames;
            }
            let frame = video.next_frame();
            let Some(writer) = self.rtc.writer(mid) else {
                return sent;
            };
            let Some(pt) = negotiated_pt(&mut self.video_pt, &writer, Codec::Vp8) else {
                return sent;
            };
            let len = frame.data.len();
            match writer.write(
                pt,
                now,
                MediaTime::new(clock.rtp, Frequency::NINETY_KHZ),
                frame.data,
            ) {
                Ok(()) => {
                    sent = true;
                    self.stats.sent_video_frames += 1;
                    self.stats.sent_video_bytes += len as u64;
                }
                Err(e) => tracing::debug!("video not sent: {e}"),
            }
            clock.rtp += video.rtp_step();
            clock.next += interval;
        }
        sent
    }

    fn drive(&mut self, now: Instant) {
        loop {
            if !self.rtc.is_alive() {
                return;
            }
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.fail(format!("connection failed: {e}"));
                    self.rtc.disconnect();
                    return;
                }
            };
            match output {
                Output::Timeout(t) => {
                    self.rtc_timeout = t;
                    return;
                }
                Output::Transmit(t) => self.transmits.push(Transmit {
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Output::Event(e) => self.handle_event(e, now),
            }
        }
    }

    fn handle_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Connected if !self.stats.connected => {
                self.stats.connected = true;
                self.stats.connect_time = Some(now.saturating_duration_since(self.joined_at));
                tracing::debug!(participant = self.you, "media connected");
                // Media clocks start now, for the sources there are (a clock without a source would
                // stay due for ever).
                let start = MediaClock { next: now, rtp: 0 };
                if self.audio.is_some() && self.audio_mid.is_some() {
                    self.audio_clock = Some(start);
                }
                if self.video.is_some() && self.video_mid.is_some() {
                    self.video_clock = Some(start);
                }
            }
            Event::IceConnectionStateChange(state) => {
                tracing::debug!(participant = self.you, "ICE {state:?}");
                if state == IceConnectionState::Disconnected {
                    self.fail("the media connection was lost (ICE disconnected)".into());
                }
            }
            Event::MediaAdded(m) => {
                let stream = self
                    .rtc
                    .media(m.mid)
                    .map(|x| x.stream_id().to_string())
                    .unwrap_or_default();
                tracing::debug!(
                    participant = self.you,
                    "track {:?} {:?} from {stream}",
                    m.kind,
                    m.direction
                );
            }
            Event::KeyframeRequest(r) if Some(r.mid) == self.video_mid => {
                if let Some(v) = &mut self.video {
                    v.request_keyframe();
                }
            }
            Event::MediaData(d) => self.received(d),
            _ => {}
        }
    }

    fn received(&mut self, d: MediaData) {
        let Some(media) = self.rtc.media(d.mid) else {
            return;
        };
        let kind = match media.kind() {
            MediaKind::Audio => StatKind::Audio,
            MediaKind::Video => StatKind::Video,
        };
        let owner = self.track_owners.get(&d.mid).copied();
        let Some(publisher) = owner.or_else(|| media.stream_id().parse::<ParticipantId>().ok())
        else {
            tracing::debug!("media on a track without a participant stream id");
            return;
        };
        if publisher == self.you {
            self.stats.own_media_received += 1;
            return;
        }
        let name = self
            .names
            .get(&publisher)
            .map(String::as_str)
            .unwrap_or("unknown");
        let stream = self.stats.stream_mut(publisher, name, kind);
        stream.record(**d.seq_range.start(), **d.seq_range.end(), d.data.len());
        if kind == StatKind::Video {
            if d.is_keyframe() {
                stream.keyframes += 1;
            }
            return;
        }
        if self.stats.join_time.is_none() {
            self.stats.join_time = Some(d.network_time.saturating_duration_since(self.joined_at));
        }
        if self.probe {
            if let Some(sent) = read_probe(&d.data) {
                let sent_at = clock::instant_at(sent);
                self.stats.latency.push_at(
                    clock::nanos_since_epoch(d.network_time),
                    d.network_time.saturating_duration_since(sent_at),
                );
            }
        }
        if self.departed.contains(&publisher) {
            return;
        }
        if let Some(r) = &mut self.recorder {
            let rtp = d.time.rebase(Frequency::FORTY_EIGHT_KHZ).numer();
            let name = self
                .names
                .get(&publisher)
                .map(String::as_str)
                .unwrap_or("unknown");
            r.write(publisher, name, rtp, &d.data);
        }
    }
}

/// The payload type the server accepted for `codec` on this writer's track, looked up once.
fn negotiated_pt(
    cached: &mut Option<Pt>,
    writer: &str0m::media::Writer,
    codec: Codec,
) -> Option<Pt> {
    if cached.is_none() {
        *cached = writer
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt());
    }
    *cached
}
