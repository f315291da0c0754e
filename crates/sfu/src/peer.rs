//! One participant's WebRTC connection: a str0m `Rtc` in RTP mode plus the bookkeeping of which tracks
//! it publishes (tracks in) and which other participants' tracks it receives (tracks out).

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_proto::ParticipantId;
use serde::Serialize;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::PayloadParams;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::Protocol;
use str0m::rtp::{Extension, ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::stats::PeerStats;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::room::TrackKind;
use crate::srtp::{self, KeySlot, SrtpSender, SRTP_OVERHEAD};

/// A datagram to send, produced by the core and sent by the shell.
#[derive(Debug)]
pub struct Transmit {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// Where a forwarded track comes from: the publisher and the mid of the track in its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackSource {
    pub publisher: ParticipantId,
    pub mid: Mid,
}

/// What a peer reports to the room core after being driven.
// Media is by far the most frequent variant; boxing it would cost an allocation per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum PeerEvent {
    /// The client offered a new track of its own.
    TrackPublished { mid: Mid, kind: TrackKind },
    /// An RTP packet of one of the client's own tracks, with the codec its payload type stands for.
    Media {
        mid: Mid,
        kind: TrackKind,
        params: PayloadParams,
        packet: RtpPacket,
    },
    /// A subscriber asked for a keyframe of a track it receives from `source`.
    KeyframeWanted {
        source: TrackSource,
        kind: KeyframeRequestKind,
    },
    /// A server offer to send to the client.
    Offer(String),
    /// The connection is closed or lost.
    Gone,
}

#[derive(Debug)]
struct TrackIn {
    mid: Mid,
    kind: TrackKind,
    /// Packets not forwarded (muted) so far: subtracted from sequence numbers so receivers see no gap.
    dropped: u64,
    last_keyframe_request: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

#[derive(Debug)]
struct TrackOut {
    source: TrackSource,
    kind: TrackKind,
    state: OutState,
    /// Publisher payload type → our payload type, learned on first use.
    pt_map: Vec<(Pt, Option<Pt>)>,
    /// A packet has been forwarded on this track.
    forwarding: bool,
    /// Subtracted from the publisher's extended sequence numbers so every subscriber's stream starts
    /// in SRTP rollover 0, as receivers assume (set by the first forwarded packet).
    seq_base: Option<u64>,
    /// For the direct SRTP path: our SSRC for this track and the audio level extension id.
    ssrc: Option<Ssrc>,
    audio_level_id: Option<u8>,
    /// When a packet of this (direct-path) track last went through str0m instead: that anchors the
    /// RTP-to-wall-clock mapping of the sender reports str0m sends for it.
    last_via_str0m: Option<Instant>,
}

impl TrackOut {
    fn mid(&self) -> Option<Mid> {
        match self.state {
            OutState::ToOpen => None,
            OutState::Negotiating(m)
            | OutState::Open(m)
            | OutState::ToStop(m)
            | OutState::NegotiatingStop(m) => Some(m),
        }
    }
}

/// One connection as `/api/debug` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerDebug {
    pub participant_id: ParticipantId,
    pub room: Option<String>,
    pub ice_state: String,
    /// The selected candidate pair.
    pub local_address: Option<SocketAddr>,
    pub remote_address: Option<SocketAddr>,
    pub bitrate_in_bps: u64,
    pub bitrate_out_bps: u64,
    /// Fraction of packets lost, as reported by RTCP (0..=1).
    pub loss_in: Option<f32>,
    pub loss_out: Option<f32>,
    pub rtt_ms: Option<f64>,
    pub tracks_published: usize,
    pub tracks_received: usize,
}

/// Why the client's SDP could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpRefusal(pub String);

pub struct Peer {
    id: ParticipantId,
    rtc: Rtc,
    /// The client's own offer has been answered: server offers may follow.
    negotiated: bool,
    pending: Option<SdpPendingOffer>,
    tracks_in: Vec<TrackIn>,
    tracks_out: Vec<TrackOut>,
    next_timeout: Instant,
    gone: bool,
    ice_state: IceConnectionState,
    /// Written to since last driven (the core drives it before sending).
    pub(crate) dirty: bool,
    /// The last two stats reports, for rates.
    stats: Option<PeerStats>,
    rates: (u64, u64),
    /// The SRTP keys str0m's DTLS handshake exported, and our sender built from them once connected.
    keys: Arc<KeySlot>,
    srtp: Option<SrtpSender>,
    /// The (local, remote) addresses str0m sends media on: the selected candidate pair.
    path: Option<(SocketAddr, SocketAddr)>,
    /// Bytes sent on the direct path (str0m's stats do not see them).
    direct_bytes: u64,
    direct_bytes_at_last_stats: u64,
}

/// How [`Peer::forward`] handled a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// Encrypted and queued for sending already.
    Sent,
    /// Written to str0m: the peer must be driven to send it.
    Queued,
    /// Not sent (track not open, codec not accepted, ...).
    Skipped,
}

/// Capacity of the buffers the direct path seals into (and the spare pool keeps).
pub(crate) const SPARE_CAPACITY: usize = 512;

/// A direct-path audio track still sends one packet this often through str0m, so the sender
/// reports str0m makes for it map RTP time to wall-clock time correctly (receivers use them to
/// line audio up with the same person's video), without the clocks drifting apart.
const SENDER_REPORT_ANCHOR_INTERVAL: Duration = Duration::from_secs(4);

/// How much sent video each subscriber keeps for retransmission (answering NACKs).
const RTX_CACHE_PACKETS: usize = 512;
const RTX_CACHE_AGE: Duration = Duration::from_secs(1);

/// Keyframe requests to one publisher's track are sent at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

impl Peer {
    /// A connection for participant `id`, reachable at each of `candidates`
    /// (`(advertised, local socket)`: equal for host candidates, different behind 1:1 NAT).
    pub fn new(id: ParticipantId, candidates: &[(SocketAddr, SocketAddr)], now: Instant) -> Peer {
        let mut config = Rtc::builder()
            .set_crypto_provider(srtp::crypto_provider())
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .set_stats_interval(Some(Duration::from_secs(1)));
        if let Some(cert) = srtp::shared_certificate() {
            config = config.set_dtls_cert(cert);
        }
        let (mut rtc, keys) = srtp::build_with_key_slot(|| config.build(now));
        for &(advertised, local) in candidates {
            let candidate = if advertised == local {
                Candidate::host(local, Protocol::Udp)
            } else {
                Candidate::server_reflexive(advertised, local, Protocol::Udp)
            };
            match candidate {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!(%advertised, "unusable media address: {e}"),
            }
        }
        Peer {
            id,
            rtc,
            negotiated: false,
            pending: None,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            next_timeout: now,
            gone: false,
            ice_state: IceConnectionState::New,
            dirty: false,
            stats: None,
            rates: (0, 0),
            keys,
            srtp: None,
            path: None,
            direct_bytes: 0,
            direct_bytes_at_last_stats: 0,
        }
    }

    pub fn id(&self) -> ParticipantId {
        self.id
    }

    pub fn debug(&self) -> PeerDebug {
        let pair = self
            .stats
            .as_ref()
            .and_then(|s| s.selected_candidate_pair.as_ref());
        PeerDebug {
            participant_id: self.id,
            room: None,
            ice_state: format!("{:?}", self.ice_state).to_lowercase(),
            local_address: pair.map(|p| p.local.addr),
            remote_address: pair.map(|p| p.remote.addr),
            bitrate_in_bps: self.rates.0,
            bitrate_out_bps: self.rates.1,
            loss_in: self.stats.as_ref().and_then(|s| s.ingress_loss_fraction),
            loss_out: self.stats.as_ref().and_then(|s| s.egress_loss_fraction),
            rtt_ms: self
                .stats
                .as_ref()
                .and_then(|s| s.rtt)
                .map(|d| d.as_secs_f64() * 1000.0),
            tracks_published: self.tracks_in.len(),
            tracks_received: self
                .tracks_out
                .iter()
                .filter(|t| matches!(t.state, OutState::Open(_)))
                .count(),
        }
    }

    pub fn next_timeout(&self) -> Instant {
        self.next_timeout
    }

    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Whether a received datagram belongs to this connection (ICE credentials or known remote address).
    pub fn accepts(&self, input: &Input) -> bool {
        !self.gone && self.rtc.accepts(input)
    }

    /// The tracks this participant publishes.
    pub fn published(&self) -> impl Iterator<Item = (Mid, TrackKind)> + '_ {
        self.tracks_in.iter().map(|t| (t.mid, t.kind))
    }

    pub fn handle_input(&mut self, input: Input) {
        if self.gone {
            return;
        }
        // str0m panics only on its own bugs; one bad connection must not take the room down with it.
        match catch_unwind(AssertUnwindSafe(|| self.rtc.handle_input(input))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(participant = self.id, "connection failed: {e}");
                self.close();
            }
            Err(_) => {
                tracing::error!(
                    participant = self.id,
                    "connection dropped after a panic in str0m"
                );
                self.close();
            }
        }
    }

    pub fn close(&mut self) {
        self.gone = true;
        self.rtc.disconnect();
    }

    /// Applies the client's offer and returns the answer to send back.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, SdpRefusal> {
        if self.pending.is_some() {
            return Err(SdpRefusal(
                "an offer from the server is waiting for your answer".into(),
            ));
        }
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| SdpRefusal(e.to_string()))?;
        let answer = catch_unwind(AssertUnwindSafe(|| self.rtc.sdp_api().accept_offer(offer)))
            .map_err(|_| {
                self.gone = true;
                SdpRefusal("the offer broke the connection".into())
            })?
            .map_err(|e| SdpRefusal(e.to_string()))?;
        self.negotiated = true;
        tracing::debug!(participant = self.id, "client offer answered");
        Ok(answer.to_sdp_string())
    }

    /// Applies the client's answer to our last offer. Returns the sources of tracks that just opened.
    pub fn accept_answer(
        &mut self,
        sdp: &str,
    ) -> Result<Vec<(TrackSource, TrackKind)>, SdpRefusal> {
        let Some(pending) = self.pending.take() else {
            return Err(SdpRefusal("there is no server offer to answer".into()));
        };
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| SdpRefusal(e.to_string()));
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.pending = Some(pending);
                return Err(e);
            }
        };
        if let Err(e) = self.rtc.sdp_api().accept_answer(pending, answer) {
            // The pending offer is consumed; roll every negotiating track back so we offer again.
            for t in &mut self.tracks_out {
                match t.state {
                    OutState::Negotiating(_) => t.state = OutState::ToOpen,
                    OutState::NegotiatingStop(m) => t.state = OutState::ToStop(m),
                    _ => {}
                }
            }
            return Err(SdpRefusal(e.to_string()));
        }
        tracing::debug!(participant = self.id, "server offer answered");
        let mut opened = Vec::new();
        for t in &mut self.tracks_out {
            if let OutState::Negotiating(m) = t.state {
                t.state = OutState::Open(m);
                let mut api = self.rtc.direct_api();
                let stream = api.stream_tx_by_mid(m, None);
                t.ssrc = stream.as_ref().map(|s| s.ssrc());
                if let (Some(stream), TrackKind::Video) = (stream, t.kind) {
                    // NACKs come within a few round trips; str0m's default keeps 3 s of every
                    // subscriber's video (and the publisher's payloads alive with it).
                    stream.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, Some(0.15));
                }
                t.audio_level_id = self
                    .rtc
                    .media(m)
                    .and_then(|media| media.remote_extmap().id_of(Extension::AudioLevel));
                opened.push((t.source, t.kind));
            }
        }
        self.tracks_out
            .retain(|t| !matches!(t.state, OutState::NegotiatingStop(_)));
        Ok(opened)
    }

    /// Starts receiving `source`'s track (negotiated with the next server offer).
    pub fn subscribe(&mut self, source: TrackSource, kind: TrackKind) {
        if self.tracks_out.iter().any(|t| t.source == source) {
            return;
        }
        self.tracks_out.push(TrackOut {
            source,
            kind,
            state: OutState::ToOpen,
            pt_map: Vec::new(),
            forwarding: false,
            seq_base: None,
            ssrc: None,
            audio_level_id: None,
            last_via_str0m: None,
        });
    }

    /// Stops receiving every track of `publisher`.
    pub fn unsubscribe_all_of(&mut self, publisher: ParticipantId) {
        self.tracks_out.retain_mut(|t| {
            if t.source.publisher != publisher {
                return true;
            }
            match t.state {
                // Never offered: forget it.
                OutState::ToOpen => false,
                OutState::Open(m) | OutState::Negotiating(m) => {
                    t.state = OutState::ToStop(m);
                    true
                }
                OutState::ToStop(_) | OutState::NegotiatingStop(_) => true,
            }
        });
    }

    /// Sends a packet of `source`'s track to this subscriber. `seq_no` is already rewritten over
    /// muted gaps. Audio goes out on the direct SRTP path once the connection is up: sealed into a
    /// buffer from `spare` and pushed to `transmits`. Everything else is written to str0m.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        source: TrackSource,
        params: PayloadParams,
        packet: &RtpPacket,
        seq_no: SeqNo,
        transmits: &mut Vec<Transmit>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Forwarded {
        let Some(track) = self.tracks_out.iter_mut().find(|t| t.source == source) else {
            return Forwarded::Skipped;
        };
        let OutState::Open(mid) = track.state else {
            return Forwarded::Skipped;
        };
        let in_pt = packet.header.payload_type;
        let out_pt = match track.pt_map.iter().find(|(p, _)| *p == in_pt) {
            Some((_, out)) => *out,
            None => {
                let out = self.rtc.codec_config().match_params(params).map(|p| p.pt());
                track.pt_map.push((in_pt, out));
                out
            }
        };
        // A codec this subscriber did not accept: nothing we can send it.
        let Some(out_pt) = out_pt else {
            return Forwarded::Skipped;
        };
        // Start this subscriber's stream in rollover 0 (a receiver assumes it), keeping the low
        // 16 bits so the numbers stay the publisher's.
        let seq = *seq_no;
        let base = *track.seq_base.get_or_insert(seq & !0xffff);
        // Reordered from before the stream started here: not representable.
        let Some(out_seq) = seq.checked_sub(base) else {
            return Forwarded::Skipped;
        };
        if !track.forwarding {
            track.forwarding = true;
            tracing::debug!(participant = self.id, from = source.publisher, kind = ?track.kind, "first packet forwarded");
        }
        let ext = &packet.header.ext_vals;
        let anchored = track.last_via_str0m.is_some_and(|at| {
            packet.timestamp.saturating_duration_since(at) < SENDER_REPORT_ANCHOR_INTERVAL
        });
        if track.kind == TrackKind::Audio && anchored {
            if let (Some(sender), Some((local, remote)), Some(ssrc)) =
                (self.srtp.as_mut(), self.path, track.ssrc)
            {
                let mut buf = spare.pop().unwrap_or_default();
                buf.clear();
                // A size every audio packet fits, so the buffer comes back to the spare pool.
                buf.reserve((20 + packet.payload.len() + SRTP_OVERHEAD).max(SPARE_CAPACITY));
                let level = track
                    .audio_level_id
                    .zip(ext.audio_level)
                    .filter(|(id, _)| (1..=14).contains(id));
                buf.push(if level.is_some() { 0x90 } else { 0x80 });
                buf.push(*out_pt | if packet.header.marker { 0x80 } else { 0 });
                buf.extend_from_slice(&(out_seq as u16).to_be_bytes());
                buf.extend_from_slice(&packet.header.timestamp.to_be_bytes());
                buf.extend_from_slice(&ssrc.to_be_bytes());
                if let Some((id, level)) = level {
                    // RFC 8285 one-byte header: one 1-byte element, padded to a word.
                    let vad = if ext.voice_activity == Some(true) {
                        0x80
                    } else {
                        0
                    };
                    buf.extend_from_slice(&[
                        0xBE,
                        0xDE,
                        0,
                        1,
                        id << 4,
                        vad | (level.unsigned_abs() & 0x7f),
                        0,
                        0,
                    ]);
                }
                if sender.seal(&mut buf, &packet.payload, out_seq) {
                    self.direct_bytes += buf.len() as u64;
                    transmits.push(Transmit {
                        source: local,
                        destination: remote,
                        contents: buf,
                    });
                    return Forwarded::Sent;
                }
                spare.push(buf);
                return Forwarded::Skipped;
            }
        }
        let is_video = track.kind == TrackKind::Video;
        if !is_video {
            track.last_via_str0m = Some(packet.timestamp);
        }
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return Forwarded::Skipped;
        };
        let ext_vals = ExtensionValues {
            audio_level: ext.audio_level,
            voice_activity: ext.voice_activity,
            video_orientation: ext.video_orientation,
            ..Default::default()
        };
        stream.write_rtp(
            RtpWrite::new(
                out_pt,
                out_seq.into(),
                packet.header.timestamp,
                packet.timestamp,
                packet.payload.clone(),
            )
            .marker(packet.header.marker)
            .ext_vals(ext_vals)
            .nackable(is_video),
        );
        Forwarded::Queued
    }

    /// Counts a packet of our track `mid` that was not forwarded; returns the sequence number to forward
    /// a packet with instead (when `forwarded`).
    pub fn rewrite_seq(&mut self, mid: Mid, seq_no: SeqNo, forwarded: bool) -> SeqNo {
        let Some(t) = self.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return seq_no;
        };
        if !forwarded {
            t.dropped += 1;
        }
        (*seq_no).wrapping_sub(t.dropped).into()
    }

    /// Asks the client for a keyframe of its own track `mid` (throttled).
    pub fn request_keyframe(&mut self, mid: Mid, kind: KeyframeRequestKind, now: Instant) {
        let Some(t) = self.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if t.kind != TrackKind::Video {
            return;
        }
        if t.last_keyframe_request
            .is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, None).as_mut() {
            rx.request_keyframe(kind);
            t.last_keyframe_request = Some(now);
        }
    }

    /// Creates a server offer when tracks are waiting to be added or removed, and none is in flight.
    fn negotiate_if_needed(&mut self) -> Option<String> {
        if !self.negotiated || self.pending.is_some() {
            return None;
        }
        let mut change = self.rtc.sdp_api();
        for t in &mut self.tracks_out {
            match t.state {
                OutState::ToOpen => {
                    let kind = match t.kind {
                        TrackKind::Audio => MediaKind::Audio,
                        TrackKind::Video => MediaKind::Video,
                    };
                    // The stream id tells the client whose track this is.
                    let stream_id = t.source.publisher.to_string();
                    let track_id = format!("{}-{}", t.source.publisher, t.source.mid);
                    let mid = change.add_media(
                        kind,
                        Direction::SendOnly,
                        Some(stream_id),
                        Some(track_id),
                        None,
                    );
                    t.state = OutState::Negotiating(mid);
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    t.state = OutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return None;
        }
        let (offer, pending) = change.apply()?;
        self.pending = Some(pending);
        tracing::debug!(participant = self.id, "server offer sent");
        Some(offer.to_sdp_string())
    }

    /// Runs the connection until it has nothing more to do now: datagrams go to `transmits`,
    /// everything the room must act on goes to `events`.
    pub fn drive(&mut self, transmits: &mut Vec<Transmit>, events: &mut Vec<PeerEvent>) {
        if let Some(offer) = self.negotiate_if_needed() {
            events.push(PeerEvent::Offer(offer));
        }
        loop {
            if self.gone || !self.rtc.is_alive() {
                if !self.gone {
                    self.gone = true;
                }
                events.push(PeerEvent::Gone);
                return;
            }
            let output = match catch_unwind(AssertUnwindSafe(|| self.rtc.poll_output())) {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => {
                    tracing::info!(participant = self.id, "connection error: {e}");
                    self.close();
                    continue;
                }
                Err(_) => {
                    tracing::error!(
                        participant = self.id,
                        "connection dropped after a panic in str0m"
                    );
                    self.close();
                    continue;
                }
            };
            match output {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    // str0m sends DTLS and SRTP (first byte 20 and up; STUN is 0 or 1) only on
                    // the selected pair: that is where the direct path sends too.
                    if t.contents.first().is_some_and(|b| *b >= 20) {
                        self.path = Some((t.source, t.destination));
                    }
                    transmits.push(Transmit {
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    })
                }
                Output::Event(e) => self.handle_event(e, events),
            }
        }
    }

    fn handle_event(&mut self, event: Event, events: &mut Vec<PeerEvent>) {
        match event {
            Event::IceConnectionStateChange(state) => {
                self.ice_state = state;
                if state == IceConnectionState::Disconnected {
                    self.close();
                }
            }
            Event::Closed => self.close(),
            Event::Connected => {
                tracing::debug!(participant = self.id, "media connected (DTLS up)");
                self.srtp = self
                    .keys
                    .get()
                    .and_then(|keys| SrtpSender::new(&srtp::crypto_provider(), keys));
                if self.srtp.is_none() {
                    tracing::info!(
                        participant = self.id,
                        "no direct SRTP path: str0m sends everything"
                    );
                }
            }
            Event::PeerStats(stats) => {
                if let Some(prev) = &self.stats {
                    let secs = stats
                        .timestamp
                        .saturating_duration_since(prev.timestamp)
                        .as_secs_f64();
                    if secs > 0.0 {
                        let rate = |now: u64, before: u64| {
                            (now.saturating_sub(before) as f64 * 8.0 / secs) as u64
                        };
                        self.rates = (
                            rate(stats.peer_bytes_rx, prev.peer_bytes_rx),
                            rate(stats.peer_bytes_tx, prev.peer_bytes_tx)
                                + rate(self.direct_bytes, self.direct_bytes_at_last_stats),
                        );
                    }
                }
                self.stats = Some(stats);
                self.direct_bytes_at_last_stats = self.direct_bytes;
            }
            // Only the client's own (sending) tracks are published; our send-only tracks are not.
            Event::MediaAdded(added) if added.direction == Direction::RecvOnly => {
                let kind = match added.kind {
                    MediaKind::Audio => TrackKind::Audio,
                    MediaKind::Video => TrackKind::Video,
                };
                if !self.tracks_in.iter().any(|t| t.mid == added.mid) {
                    self.tracks_in.push(TrackIn {
                        mid: added.mid,
                        kind,
                        dropped: 0,
                        last_keyframe_request: None,
                    });
                    events.push(PeerEvent::TrackPublished {
                        mid: added.mid,
                        kind,
                    });
                }
            }
            Event::RtpPacket(packet) => {
                let ssrc = packet.header.ssrc;
                let Some(mid) = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else {
                    return;
                };
                let Some(track) = self.tracks_in.iter().find(|t| t.mid == mid) else {
                    return;
                };
                let kind = track.kind;
                let pt = packet.header.payload_type;
                let Some(params) = self
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|p| p.pt() == pt)
                    .copied()
                else {
                    return;
                };
                events.push(PeerEvent::Media {
                    mid,
                    kind,
                    params,
                    packet,
                });
            }
            Event::KeyframeRequest(req) => {
                if let Some(t) = self.tracks_out.iter().find(|t| t.mid() == Some(req.mid)) {
                    events.push(PeerEvent::KeyframeWanted {
                        source: t.source,
                        kind: req.kind,
                    });
                }
            }
            _ => {}
        }
    }
}
