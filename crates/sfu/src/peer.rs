//! One participant's WebRTC connection: a str0m `Rtc` in RTP mode plus the bookkeeping of which tracks
//! it publishes (tracks in) and which other participants' tracks it receives (tracks out).

use std::collections::HashMap;
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
use str0m::rtp::{Extension, ExtensionValues, RtpPacket, RtpWrite, Ssrc, VideoOrientation};
use str0m::stats::{MediaEgressStats, MediaIngressStats, PeerStats};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::down_track::DownTrack;
use crate::receive::{self, AudioIn, REPORT_INTERVAL};
use crate::route::PeerId;
use crate::srtp::{self, KeySlot, SrtcpSender, SrtpReceiver, SrtpSender, SRTP_OVERHEAD};

/// A datagram to send, produced by the core and sent by the shell.
#[derive(Debug)]
pub struct Transmit {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// The kind of a published track, which decides which mute flag gates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Audio,
    Video,
}

/// Where a forwarded track comes from: the publisher's peer and the mid of the track in its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackSource {
    pub publisher: PeerId,
    pub mid: Mid,
}

/// A received RTP packet as forwarding needs it, whoever opened it (str0m, or our direct path).
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub pt: Pt,
    pub marker: bool,
    /// The publisher's extended sequence number (its SRTP index).
    pub seq: u64,
    pub timestamp: u32,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub video_orientation: Option<VideoOrientation>,
    pub payload: &'a [u8],
    /// The payload as str0m shares it, so video is written on without a copy.
    pub shared: Option<&'a Arc<[u8]>>,
    pub received: Instant,
}

impl<'a> Incoming<'a> {
    pub fn from_str0m(packet: &'a RtpPacket) -> Incoming<'a> {
        let ext = &packet.header.ext_vals;
        Incoming {
            pt: packet.header.payload_type,
            marker: packet.header.marker,
            seq: *packet.seq_no,
            timestamp: packet.header.timestamp,
            audio_level: ext.audio_level,
            voice_activity: ext.voice_activity,
            video_orientation: ext.video_orientation,
            payload: &packet.payload,
            shared: Some(&packet.payload),
            received: packet.timestamp,
        }
    }
}

/// A publisher's audio packet opened on the direct path: its payload is in the caller's buffer.
#[derive(Debug, Clone, Copy)]
pub struct DirectAudio {
    pub mid: Mid,
    pub params: PayloadParams,
    pub pt: Pt,
    pub marker: bool,
    pub seq: u64,
    pub timestamp: u32,
    pub level: Option<(i8, bool)>,
}

/// What [`Peer::receive_direct`] did with a datagram.
#[derive(Debug)]
pub enum Received {
    /// Opened: forward it.
    Audio(DirectAudio),
    /// Ours, and not to be forwarded (replayed, not authentic, unknown codec).
    Dropped,
    /// Not for the direct path: hand it to str0m.
    NotMine,
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
        /// The track is the client's screen share (see [`Peer::is_screen`]).
        screen: bool,
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
    /// An RTCP sender report for one of the client's own tracks: the sender's wall clock (NTP, 32.32
    /// fixed point) at RTP time `rtp_time` (what recordings use for lip sync and clock drift).
    SenderReport {
        mid: Mid,
        ntp: u64,
        rtp_time: u32,
        received: Instant,
    },
    /// The connection is closed or lost.
    Gone,
}

#[derive(Debug)]
struct TrackIn {
    mid: Mid,
    kind: TrackKind,
    /// The client's second video m-line: its screen share (the first is its camera).
    screen: bool,
    last_keyframe_request: Option<Instant>,
}

/// The client's own tracks when the server offers first.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnTracks {
    /// Not the server's to offer (the client offers them, or a viewer has none), or open already.
    None,
    /// To go in the next server offer.
    ToOffer,
    /// In the server offer waiting for its answer: (mid, kind, is the screen share).
    Offered(Vec<(Mid, TrackKind, bool)>),
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
    /// The publisher's participant id: the stream id (msid) the client groups tracks by.
    stream_id: ParticipantId,
    kind: TrackKind,
    /// The publisher's screen share: its msid track id is `{publisher}-screen`.
    screen: bool,
    state: OutState,
    /// Publisher payload type → our payload type, learned on first use.
    pt_map: PtMap,
    /// A packet has been forwarded on this track.
    forwarding: bool,
    /// This subscriber's numbering of the track (rollover 0, no gaps over mutes).
    down: DownTrack,
    /// For the direct SRTP path: our SSRC for this track and the audio level extension id.
    ssrc: Option<Ssrc>,
    audio_level_id: Option<u8>,
    /// When a packet of this (direct-path) track last went through str0m instead: that anchors the
    /// RTP-to-wall-clock mapping of the sender reports str0m sends for it.
    last_via_str0m: Option<Instant>,
}

/// Publisher payload type → ours, for the few payload types a track uses, kept inline in the track
/// (no pointer to chase per packet). A full map forgets its oldest entry: it is learned again.
#[derive(Debug)]
struct PtMap {
    entries: [(Pt, Option<Pt>); PtMap::SIZE],
    len: u8,
    next: u8,
}

impl Default for PtMap {
    fn default() -> PtMap {
        PtMap {
            entries: [(Pt::from(0), None); PtMap::SIZE],
            len: 0,
            next: 0,
        }
    }
}

impl PtMap {
    const SIZE: usize = 4;

    fn get(&self, pt: Pt) -> Option<Option<Pt>> {
        self.entries[..self.len as usize]
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, out)| *out)
    }

    fn insert(&mut self, pt: Pt, out: Option<Pt>) {
        let at = if (self.len as usize) < Self::SIZE {
            self.len += 1;
            self.len as usize - 1
        } else {
            let at = self.next as usize;
            self.next = (self.next + 1) % Self::SIZE as u8;
            at
        };
        self.entries[at] = (pt, out);
    }
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
    /// The media worker that holds the connection.
    pub worker: usize,
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
    /// Loss repair and keyframes, from RTCP (str0m's counts; the direct audio path sends no NACKs): what
    /// the client asked of the video we send it, and what we asked of the video it publishes.
    pub nacks_received: u64,
    pub keyframe_requests_received: u64,
    pub nacks_sent: u64,
    pub keyframe_requests_sent: u64,
}

/// Why the client's SDP could not be used: one short line for people (details go to the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpRefusal(pub &'static str);

/// What one participant may publish: one microphone, and video for a camera and a screen share.
/// Simulcast layers are rids inside one video m-line, at most [`MAX_RIDS`] of them.
pub const MAX_PUBLISHED_AUDIO: usize = 1;
pub const MAX_PUBLISHED_VIDEO: usize = 2;
pub const MAX_RIDS: usize = 3;

/// One m-section of a client's offer, as far as the limits need it (str0m parses it for real).
#[derive(Debug, PartialEq, Eq)]
pub struct OfferSection {
    pub kind: String,
    pub mid: Option<String>,
    /// The client sends on it (`sendonly` or `sendrecv`, the SDP default).
    pub sends: bool,
    pub rids: usize,
}

/// The m-sections of an SDP, in order.
pub fn offer_sections(sdp: &str) -> Vec<OfferSection> {
    let mut sections: Vec<OfferSection> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(media) = line.strip_prefix("m=") {
            sections.push(OfferSection {
                kind: media.split(' ').next().unwrap_or("").to_string(),
                mid: None,
                sends: true,
                rids: 0,
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            section.mid = Some(mid.trim().to_string());
        } else if line == "a=recvonly" || line == "a=inactive" {
            section.sends = false;
        } else if line.starts_with("a=rid:") {
            section.rids += 1;
        }
    }
    sections
}

/// Refuses an offer that would make this participant publish more than one audio and two video
/// tracks, that adds m-lines the participant does not send on, or that carries too many simulcast
/// layers. Without this, one re-offer with a thousand m-lines makes the server offer all of them
/// to everyone else, whose answers no longer fit in a message: the whole room is disconnected.
/// `known` says whether a mid is already part of the connection (the server's own tracks are).
pub fn check_offer_limits(
    sections: &[OfferSection],
    known: impl Fn(&str) -> bool,
) -> Result<(), SdpRefusal> {
    let too_many = SdpRefusal(
        "that offer has more tracks than a participant may send (one audio, one camera, one screen share)",
    );
    let (mut audio, mut video) = (0, 0);
    // New receive-only m-lines: a viewer's connection starts with one audio and one video (no more
    // than a sender's).
    let (mut recv_audio, mut recv_video) = (0, 0);
    for section in sections {
        let is_known = section.mid.as_deref().is_some_and(&known);
        if !section.sends {
            // The server's own tracks come back in a re-offer as the client's recvonly.
            if is_known {
                continue;
            }
            match section.kind.as_str() {
                "audio" => recv_audio += 1,
                "video" => recv_video += 1,
                _ => return Err(too_many),
            }
            if recv_audio > MAX_PUBLISHED_AUDIO || recv_video > MAX_PUBLISHED_VIDEO {
                return Err(too_many);
            }
            continue;
        }
        if section.rids > MAX_RIDS {
            return Err(SdpRefusal(
                "that offer has more simulcast layers than the server takes (three)",
            ));
        }
        match section.kind.as_str() {
            "audio" => audio += 1,
            "video" => video += 1,
            // The data channel's m-line: at most one (checked below).
            "application" => {}
            _ => return Err(too_many),
        }
    }
    if audio > MAX_PUBLISHED_AUDIO
        || video > MAX_PUBLISHED_VIDEO
        || sections.iter().filter(|s| s.kind == "application").count() > 1
    {
        return Err(too_many);
    }
    Ok(())
}

pub struct Peer {
    id: PeerId,
    participant: ParticipantId,
    /// A viewer (wall screen): whatever it offers is never forwarded.
    receive_only: bool,
    rtc: Rtc,
    /// Our ICE username fragment: STUN requests for this peer carry it.
    ufrag: String,
    /// The client's own offer has been answered, or the server offers first: server offers may follow.
    negotiated: bool,
    pending: Option<SdpPendingOffer>,
    /// The server offers first and its next offer carries the client's own three m-lines (recvonly
    /// here: microphone, camera, screen share), which open once answered ([`Peer::offer_first`]).
    own_tracks: OwnTracks,
    /// Events made outside [`Peer::drive`] (an answer opened the client's own tracks), handed out by it.
    queued: Vec<PeerEvent>,
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
    /// The latest RTCP-derived figures per track, for `/api/debug`.
    ingress: HashMap<Mid, MediaIngressStats>,
    egress: HashMap<Mid, MediaEgressStats>,
    /// The SRTP keys str0m's DTLS handshake exported, and our sender built from them once connected.
    keys: Arc<KeySlot>,
    srtp: Option<SrtpSender>,
    /// The (local, remote) addresses str0m sends media on: the selected candidate pair.
    path: Option<(SocketAddr, SocketAddr)>,
    /// Bytes sent on the direct path (str0m's stats do not see them).
    direct_bytes: u64,
    direct_bytes_at_last_stats: u64,
    /// The direct receive path: the publisher's audio we open ourselves, and our reports on it.
    srtp_rx: Option<SrtpReceiver>,
    srtcp: Option<SrtcpSender>,
    audio_in: Vec<AudioIn>,
    /// SSRCs str0m has delivered (so it reports on them): they stay with str0m.
    via_str0m: Vec<u32>,
    /// The SSRC our own receiver reports come from (never one str0m sends with).
    report_ssrc: u32,
    next_report: Option<Instant>,
    direct_bytes_in: u64,
    direct_bytes_in_at_last_stats: u64,
    /// Any fixed instant: arrival times for jitter count from it.
    epoch: Instant,
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

/// The RTP clock of Opus, the only audio codec negotiated.
const OPUS_CLOCK: u32 = 48_000;

/// SSRCs remembered as str0m's; a publisher does not have more streams than this.
const MAX_STR0M_SSRCS: usize = 64;

/// Keyframe requests to one publisher's track are sent at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

impl Peer {
    /// A connection for participant `id`, reachable at each of `candidates`
    /// (`(advertised, local socket)`: equal for host candidates, different behind 1:1 NAT).
    pub fn new(
        id: PeerId,
        participant: ParticipantId,
        receive_only: bool,
        candidates: &[(SocketAddr, SocketAddr)],
        now: Instant,
    ) -> Peer {
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
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        Peer {
            id,
            participant,
            receive_only,
            rtc,
            ufrag,
            negotiated: false,
            pending: None,
            own_tracks: OwnTracks::None,
            queued: Vec::new(),
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            next_timeout: now,
            gone: false,
            ice_state: IceConnectionState::New,
            dirty: false,
            stats: None,
            rates: (0, 0),
            ingress: HashMap::new(),
            egress: HashMap::new(),
            keys,
            srtp: None,
            path: None,
            direct_bytes: 0,
            direct_bytes_at_last_stats: 0,
            srtp_rx: None,
            srtcp: None,
            audio_in: Vec::new(),
            via_str0m: Vec::new(),
            report_ssrc: (id as u32).wrapping_mul(0x9E37_79B9).rotate_left(7) | 0x0100_0001,
            next_report: None,
            direct_bytes_in: 0,
            direct_bytes_in_at_last_stats: 0,
            epoch: now,
        }
    }

    pub fn id(&self) -> PeerId {
        self.id
    }

    pub fn participant(&self) -> ParticipantId {
        self.participant
    }

    pub fn is_receive_only(&self) -> bool {
        self.receive_only
    }

    /// Our ICE username fragment for this connection.
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    pub fn debug(&self) -> PeerDebug {
        let pair = self
            .stats
            .as_ref()
            .and_then(|s| s.selected_candidate_pair.as_ref());
        let mean = |values: &mut dyn Iterator<Item = f32>| {
            let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
            (n > 0).then(|| sum / n as f32)
        };
        PeerDebug {
            participant_id: self.participant,
            worker: 0,
            room: None,
            ice_state: format!("{:?}", self.ice_state).to_lowercase(),
            local_address: pair.map(|p| p.local.addr),
            remote_address: pair.map(|p| p.remote.addr),
            bitrate_in_bps: self.rates.0,
            bitrate_out_bps: self.rates.1,
            // str0m's peer-level loss and RTT come from TWCC, which we do not negotiate: use the
            // receiver reports, ours for what we receive and the client's for what we send.
            loss_in: mean(
                &mut self
                    .ingress
                    .values()
                    .filter_map(|s| s.loss)
                    .chain(self.audio_in.iter().filter_map(AudioIn::last_loss)),
            ),
            loss_out: mean(&mut self.egress.values().filter_map(|s| s.loss)),
            rtt_ms: mean(
                &mut self
                    .egress
                    .values()
                    .filter_map(|s| s.rtt)
                    .chain(self.ingress.values().filter_map(|s| s.rtt))
                    .map(|d| d.as_secs_f32() * 1000.0),
            )
            .map(f64::from),
            tracks_published: self.tracks_in.len(),
            tracks_received: self
                .tracks_out
                .iter()
                .filter(|t| matches!(t.state, OutState::Open(_)))
                .count(),
            nacks_received: self.egress.values().map(|s| s.nacks).sum(),
            keyframe_requests_received: self.egress.values().map(|s| s.plis + s.firs).sum(),
            nacks_sent: self.ingress.values().map(|s| s.nacks).sum(),
            keyframe_requests_sent: self.ingress.values().map(|s| s.plis + s.firs).sum(),
        }
    }

    /// When str0m's timer or our next receiver report is due.
    pub fn next_timeout(&self) -> Instant {
        self.next_report
            .map_or(self.next_timeout, |r| r.min(self.next_timeout))
    }

    /// Runs what is due: str0m's timers, and our receiver reports (sealed into `transmits`).
    pub fn handle_timeout(&mut self, now: Instant, transmits: &mut Vec<Transmit>) {
        if self.next_timeout <= now {
            self.handle_input(Input::Timeout(now));
        }
        if self.next_report.is_some_and(|r| r <= now) {
            self.next_report = Some(now + REPORT_INTERVAL);
            self.send_reports(transmits);
        }
    }

    fn send_reports(&mut self, transmits: &mut Vec<Transmit>) {
        let (Some(srtcp), Some((local, remote))) = (self.srtcp.as_mut(), self.path) else {
            return;
        };
        let blocks: Vec<_> = self
            .audio_in
            .iter_mut()
            .filter_map(AudioIn::report)
            .collect();
        if blocks.is_empty() || self.gone {
            return;
        }
        let mut packet = receive::receiver_report(self.report_ssrc, &blocks, "parley");
        if srtcp.seal(&mut packet) {
            transmits.push(Transmit {
                source: local,
                destination: remote,
                contents: packet,
            });
        }
    }

    /// Opens a publisher's audio packet ourselves, skipping str0m (which runs a full timeout pass
    /// per datagram). Only audio tracks str0m knows from the SDP and has never been handed go this
    /// way; everything else (video, RTCP, STUN, DTLS, the first streams) is [`Received::NotMine`].
    pub fn receive_direct(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
        payload: &mut Vec<u8>,
    ) -> Received {
        if self.gone || self.path.is_none_or(|(_, remote)| remote != source) {
            return Received::NotMine;
        }
        let Some(receiver) = self.srtp_rx.as_mut() else {
            return Received::NotMine;
        };
        let Some(head) = receive::parse_rtp(data) else {
            return Received::NotMine;
        };
        let at = match self.audio_in.iter().position(|a| a.ssrc == head.ssrc) {
            Some(at) => at,
            None => {
                if self.via_str0m.contains(&head.ssrc) {
                    return Received::NotMine;
                }
                let mid = self
                    .rtc
                    .direct_api()
                    .stream_rx(&Ssrc::from(head.ssrc))
                    .map(|s| s.mid());
                let audio = mid.filter(|m| {
                    self.tracks_in
                        .iter()
                        .any(|t| t.mid == *m && t.kind == TrackKind::Audio)
                });
                let Some(mid) = audio else {
                    return Received::NotMine;
                };
                let level_id = self
                    .rtc
                    .media(mid)
                    .and_then(|m| m.remote_extmap().id_of(Extension::AudioLevel));
                tracing::debug!(
                    participant = self.participant,
                    ssrc = head.ssrc,
                    "audio received on the direct path"
                );
                self.audio_in
                    .push(AudioIn::new(head.ssrc, mid, level_id, OPUS_CLOCK));
                self.audio_in.len() - 1
            }
        };
        let stream = &mut self.audio_in[at];
        let index = stream.index_of(head.seq);
        if stream.is_replay(index) || !receiver.open(data, head.header_len, index, payload) {
            return Received::Dropped;
        }
        if head.padding {
            let pad = payload.last().copied().map_or(0, usize::from);
            if pad == 0 || pad > payload.len() {
                return Received::Dropped;
            }
            payload.truncate(payload.len() - pad);
        }
        stream.received(index, head.timestamp, now, self.epoch);
        self.direct_bytes_in += data.len() as u64;
        self.next_report.get_or_insert(now + REPORT_INTERVAL);
        let pt = Pt::from(head.pt);
        let params = match stream.params.iter().find(|(p, _)| *p == pt) {
            Some((_, params)) => *params,
            None => {
                let params = self
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|p| p.pt() == pt)
                    .copied();
                stream.params.push((pt, params));
                params
            }
        };
        let Some(params) = params else {
            return Received::Dropped;
        };
        let level = stream
            .level_id
            .and_then(|id| receive::audio_level(data, &head, id));
        Received::Audio(DirectAudio {
            mid: stream.mid,
            params,
            pt,
            marker: head.marker,
            seq: index,
            timestamp: head.timestamp,
            level,
        })
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

    /// Whether `mid` is this participant's screen share: the second video m-line of its offer
    /// (the first is the camera). The screen is gated by `screen_sharing`, not `camera_off`.
    pub fn is_screen(&self, mid: Mid) -> bool {
        self.tracks_in.iter().any(|t| t.mid == mid && t.screen)
    }

    pub fn handle_input(&mut self, input: Input) {
        if self.gone {
            return;
        }
        // str0m panics only on its own bugs; one bad connection must not take the room down with it.
        match catch_unwind(AssertUnwindSafe(|| self.rtc.handle_input(input))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(participant = self.participant, "connection failed: {e}");
                self.close();
            }
            Err(_) => {
                tracing::error!(
                    participant = self.participant,
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

    /// The server makes the first offer of this connection: its next [`Peer::drive`] offers the
    /// room's tracks and, for a member, three recvonly m-lines first for the client's microphone,
    /// camera and screen share (one offer/answer sets the whole call up; no client offer needed).
    pub fn offer_first(&mut self) {
        self.negotiated = true;
        if !self.receive_only {
            self.own_tracks = OwnTracks::ToOffer;
        }
    }

    /// Applies the client's offer and returns the answer to send back.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, SdpRefusal> {
        if self.pending.is_some() {
            return Err(SdpRefusal(
                "an offer from the server is waiting for your answer",
            ));
        }
        let id = self.id;
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| {
            tracing::debug!(peer = id, "unreadable offer: {e}");
            SdpRefusal("that offer is not valid SDP")
        })?;
        let sections = offer_sections(sdp);
        let known = |mid: &str| self.rtc.media(Mid::from(mid)).is_some();
        check_offer_limits(&sections, known)?;
        let broke = SdpRefusal("that offer broke the media connection");
        let answer = match catch_unwind(AssertUnwindSafe(|| self.rtc.sdp_api().accept_offer(offer)))
        {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::debug!(peer = id, "offer refused: {e}");
                // Some refusals close the connection in str0m (a first offer without
                // a=fingerprint): then it does not go on as before, it is lost.
                if !self.rtc.is_alive() {
                    self.gone = true;
                    return Err(broke);
                }
                return Err(SdpRefusal(
                    "that offer cannot be used (no codec or transport in common)",
                ));
            }
            Err(_) => {
                tracing::warn!(peer = id, "an offer made str0m panic");
                self.gone = true;
                return Err(broke);
            }
        };
        self.negotiated = true;
        tracing::debug!(participant = self.participant, "client offer answered");
        Ok(answer.to_sdp_string())
    }

    /// Applies the client's answer to our last offer. Returns the sources of tracks that just opened.
    pub fn accept_answer(
        &mut self,
        sdp: &str,
    ) -> Result<Vec<(TrackSource, TrackKind)>, SdpRefusal> {
        let Some(pending) = self.pending.take() else {
            return Err(SdpRefusal("there is no server offer to answer"));
        };
        let id = self.id;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| {
            tracing::debug!(peer = id, "unreadable answer: {e}");
            SdpRefusal("that answer is not valid SDP")
        });
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.pending = Some(pending);
                return Err(e);
            }
        };
        if let Err(e) = self.rtc.sdp_api().accept_answer(pending, answer) {
            // The pending offer is consumed; roll every negotiating track back so we offer again.
            if matches!(self.own_tracks, OwnTracks::Offered(_)) {
                self.own_tracks = OwnTracks::ToOffer;
            }
            for t in &mut self.tracks_out {
                match t.state {
                    OutState::Negotiating(_) => t.state = OutState::ToOpen,
                    OutState::NegotiatingStop(m) => t.state = OutState::ToStop(m),
                    _ => {}
                }
            }
            tracing::debug!(peer = id, "answer refused: {e}");
            return Err(SdpRefusal("that answer does not fit the server's offer"));
        }
        tracing::debug!(participant = self.participant, "server offer answered");
        self.open_own_tracks();
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

    /// Starts receiving `source`'s track (negotiated with the next server offer); `screen`: it is
    /// the publisher's screen share.
    pub fn subscribe(
        &mut self,
        source: TrackSource,
        stream_id: ParticipantId,
        kind: TrackKind,
        screen: bool,
    ) {
        if self.tracks_out.iter().any(|t| t.source == source) {
            return;
        }
        self.tracks_out.push(TrackOut {
            source,
            stream_id,
            kind,
            screen,
            state: OutState::ToOpen,
            pt_map: PtMap::default(),
            forwarding: false,
            down: DownTrack::new(),
            ssrc: None,
            audio_level_id: None,
            last_via_str0m: None,
        });
    }

    /// The publisher holds `source` back for now (muted): its numbering closes the gap later.
    pub fn pause(&mut self, source: TrackSource) {
        if let Some(t) = self.tracks_out.iter_mut().find(|t| t.source == source) {
            t.down.pause();
        }
    }

    /// Stops receiving every track of `publisher`.
    pub fn unsubscribe_all_of(&mut self, publisher: PeerId) {
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

    /// Where `source` sits among the outgoing tracks: `slot` first (the caller's hint, right unless
    /// tracks were removed since), else a walk, which refreshes the hint.
    fn track_out_index(&self, source: TrackSource, slot: &mut u32) -> Option<usize> {
        let hint = *slot as usize;
        if self
            .tracks_out
            .get(hint)
            .is_some_and(|t| t.source == source)
        {
            return Some(hint);
        }
        let found = self.tracks_out.iter().position(|t| t.source == source)?;
        *slot = found as u32;
        Some(found)
    }

    /// Sends a packet of `source`'s track to this subscriber, numbered by its down-track. Audio goes out on the direct SRTP path once the connection is up: sealed into a
    /// buffer from `spare` and pushed to `transmits`. Everything else is written to str0m.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        source: TrackSource,
        slot: &mut u32,
        params: PayloadParams,
        packet: &Incoming<'_>,
        transmits: &mut Vec<Transmit>,
        spare: &mut Vec<Vec<u8>>,
    ) -> Forwarded {
        let Some(index) = self.track_out_index(source, slot) else {
            return Forwarded::Skipped;
        };
        let track = &mut self.tracks_out[index];
        let OutState::Open(mid) = track.state else {
            return Forwarded::Skipped;
        };
        let in_pt = packet.pt;
        let out_pt = match track.pt_map.get(in_pt) {
            Some(out) => out,
            None => {
                let out = self.rtc.codec_config().match_params(params).map(|p| p.pt());
                track.pt_map.insert(in_pt, out);
                out
            }
        };
        // A codec this subscriber did not accept: nothing we can send it.
        let Some(out_pt) = out_pt else {
            return Forwarded::Skipped;
        };
        let Some((out_seq, out_ts)) = track.down.rewrite(packet.seq, packet.timestamp) else {
            return Forwarded::Skipped;
        };
        if !track.forwarding {
            track.forwarding = true;
            tracing::debug!(participant = self.participant, from = source.publisher, kind = ?track.kind, "first packet forwarded");
        }
        let anchored = track.last_via_str0m.is_some_and(|at| {
            packet.received.saturating_duration_since(at) < SENDER_REPORT_ANCHOR_INTERVAL
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
                    .zip(packet.audio_level)
                    .filter(|(id, _)| (1..=14).contains(id));
                buf.push(if level.is_some() { 0x90 } else { 0x80 });
                buf.push(*out_pt | if packet.marker { 0x80 } else { 0 });
                buf.extend_from_slice(&(out_seq as u16).to_be_bytes());
                buf.extend_from_slice(&out_ts.to_be_bytes());
                buf.extend_from_slice(&ssrc.to_be_bytes());
                if let Some((id, level)) = level {
                    // RFC 8285 one-byte header: one 1-byte element, padded to a word.
                    let vad = if packet.voice_activity == Some(true) {
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
                if sender.seal(&mut buf, packet.payload, out_seq) {
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
            track.last_via_str0m = Some(packet.received);
        }
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return Forwarded::Skipped;
        };
        let ext_vals = ExtensionValues {
            audio_level: packet.audio_level,
            voice_activity: packet.voice_activity,
            video_orientation: packet.video_orientation,
            ..Default::default()
        };
        let payload = packet
            .shared
            .cloned()
            .unwrap_or_else(|| Arc::from(packet.payload));
        stream.write_rtp(
            RtpWrite::new(out_pt, out_seq.into(), out_ts, packet.received, payload)
                .marker(packet.marker)
                .ext_vals(ext_vals)
                .nackable(is_video),
        );
        Forwarded::Queued
    }

    /// Asks the client for a keyframe of its own track `mid` (throttled).
    /// Asks the publisher for a keyframe of `mid` (at most every 300 ms); true if a request went out.
    pub fn request_keyframe(&mut self, mid: Mid, kind: KeyframeRequestKind, now: Instant) -> bool {
        self.ask_for_keyframe(mid, kind, now, false)
    }

    /// [`Peer::request_keyframe`] even if one was asked for just now: a recording that starts needs a
    /// keyframe after its start, and the one a subscriber asked for a moment ago may have come before.
    pub fn request_keyframe_now(
        &mut self,
        mid: Mid,
        kind: KeyframeRequestKind,
        now: Instant,
    ) -> bool {
        self.ask_for_keyframe(mid, kind, now, true)
    }

    fn ask_for_keyframe(
        &mut self,
        mid: Mid,
        kind: KeyframeRequestKind,
        now: Instant,
        force: bool,
    ) -> bool {
        let Some(t) = self.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return false;
        };
        if t.kind != TrackKind::Video {
            return false;
        }
        if !force
            && t.last_keyframe_request
                .is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_REQUEST_INTERVAL)
        {
            return false;
        }
        let mut api = self.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            return false;
        };
        rx.request_keyframe(kind);
        t.last_keyframe_request = Some(now);
        true
    }

    /// Creates a server offer when tracks are waiting to be added or removed, and none is in flight.
    fn negotiate_if_needed(&mut self) -> Option<String> {
        if !self.negotiated || self.pending.is_some() {
            return None;
        }
        let mut change = self.rtc.sdp_api();
        if self.own_tracks == OwnTracks::ToOffer {
            // In this order, first in the offer: the client claims them as its microphone, camera and
            // screen share (docs/protocol.md, Flow).
            let own = [
                (TrackKind::Audio, false),
                (TrackKind::Video, false),
                (TrackKind::Video, true),
            ]
            .map(|(kind, screen)| {
                let media = match kind {
                    TrackKind::Audio => MediaKind::Audio,
                    TrackKind::Video => MediaKind::Video,
                };
                let mid = change.add_media(media, Direction::RecvOnly, None, None, None);
                (mid, kind, screen)
            });
            self.own_tracks = OwnTracks::Offered(own.to_vec());
        }
        for t in &mut self.tracks_out {
            match t.state {
                OutState::ToOpen => {
                    let kind = match t.kind {
                        TrackKind::Audio => MediaKind::Audio,
                        TrackKind::Video => MediaKind::Video,
                    };
                    // The stream id tells the client whose track this is; the track id whether it
                    // is their screen share (`{publisher}-screen`; others are `{publisher}-{mid}`).
                    let stream_id = t.stream_id.to_string();
                    let track_id = if t.screen {
                        format!("{}-screen", t.source.publisher)
                    } else {
                        format!("{}-{}", t.source.publisher, t.source.mid)
                    };
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
        tracing::debug!(participant = self.participant, "server offer sent");
        Some(offer.to_sdp_string())
    }

    /// The server's first offer was answered: the client's m-lines it sends on are its published tracks
    /// (one it answered `inactive` on stays unpublished).
    fn open_own_tracks(&mut self) {
        let OwnTracks::Offered(own) = std::mem::replace(&mut self.own_tracks, OwnTracks::None)
        else {
            return;
        };
        for (mid, kind, screen) in own {
            let sends = self
                .rtc
                .media(mid)
                .is_some_and(|m| m.direction() == Direction::RecvOnly);
            if !sends || self.tracks_in.iter().any(|t| t.mid == mid) {
                continue;
            }
            self.tracks_in.push(TrackIn {
                mid,
                kind,
                screen,
                last_keyframe_request: None,
            });
            self.queued.push(PeerEvent::TrackPublished { mid, kind });
        }
    }

    /// Runs the connection until it has nothing more to do now: datagrams go to `transmits`,
    /// everything the room must act on goes to `events`.
    pub fn drive(&mut self, transmits: &mut Vec<Transmit>, events: &mut Vec<PeerEvent>) {
        events.append(&mut self.queued);
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
                    tracing::info!(participant = self.participant, "connection error: {e}");
                    self.close();
                    continue;
                }
                Err(_) => {
                    tracing::error!(
                        participant = self.participant,
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
                tracing::debug!(participant = self.participant, "media connected (DTLS up)");
                let provider = srtp::crypto_provider();
                self.srtp = self
                    .keys
                    .get()
                    .and_then(|keys| SrtpSender::new(&provider, keys));
                if let Some(keys) = self.keys.get() {
                    self.srtp_rx = SrtpReceiver::new(&provider, keys);
                    self.srtcp = SrtcpSender::new(&provider, keys);
                }
                if self.srtp.is_none() {
                    tracing::info!(
                        participant = self.participant,
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
                            rate(stats.peer_bytes_rx, prev.peer_bytes_rx)
                                + rate(self.direct_bytes_in, self.direct_bytes_in_at_last_stats),
                            rate(stats.peer_bytes_tx, prev.peer_bytes_tx)
                                + rate(self.direct_bytes, self.direct_bytes_at_last_stats),
                        );
                    }
                }
                self.stats = Some(stats);
                self.direct_bytes_at_last_stats = self.direct_bytes;
                self.direct_bytes_in_at_last_stats = self.direct_bytes_in;
            }
            // Only the client's own (sending) tracks are published; our send-only tracks are not.
            Event::MediaIngressStats(stats) => {
                self.ingress.insert(stats.mid, stats);
            }
            Event::MediaEgressStats(stats) => {
                self.egress.insert(stats.mid, stats);
            }
            // A viewer's own tracks are never published: it is receive-only on the server.
            Event::MediaAdded(added)
                if added.direction == Direction::RecvOnly && self.receive_only =>
            {
                tracing::debug!(peer = self.id, "a viewer's track is not forwarded");
            }
            Event::MediaAdded(added) if added.direction == Direction::RecvOnly => {
                let kind = match added.kind {
                    MediaKind::Audio => TrackKind::Audio,
                    MediaKind::Video => TrackKind::Video,
                };
                if !self.tracks_in.iter().any(|t| t.mid == added.mid) {
                    // str0m reports the m-lines in the offer's order: a video after another
                    // video is the screen share.
                    let screen = kind == TrackKind::Video
                        && self.tracks_in.iter().any(|t| t.kind == TrackKind::Video);
                    self.tracks_in.push(TrackIn {
                        mid: added.mid,
                        kind,
                        screen,
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
                // str0m reports on what it received: that stream stays with it.
                if !self.via_str0m.contains(&*ssrc) && self.via_str0m.len() < MAX_STR0M_SSRCS {
                    self.via_str0m.push(*ssrc);
                }
                let Some(mid) = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else {
                    return;
                };
                let Some(track) = self.tracks_in.iter().find(|t| t.mid == mid) else {
                    return;
                };
                let (kind, screen) = (track.kind, track.screen);
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
                    screen,
                    params,
                    packet,
                });
            }
            Event::SenderFeedback(report)
                if report.rid.is_none() && self.tracks_in.iter().any(|t| t.mid == report.mid) =>
            {
                events.push(PeerEvent::SenderReport {
                    mid: report.mid,
                    ntp: ntp_of(report.sender_info.ntp_time),
                    rtp_time: report.sender_info.rtp_time.numer() as u32,
                    received: report.received_at,
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

/// A wall-clock time as NTP's 32.32 fixed point (seconds since 1900), as the sender report carried it.
fn ntp_of(t: std::time::SystemTime) -> u64 {
    const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;
    let since_unix = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET_S);
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_report_times_are_ntp_32_32() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        let ntp = ntp_of(t);
        assert_eq!(ntp >> 32, 2_208_988_801);
        assert_eq!(ntp & 0xffff_ffff, 1 << 31, "half a second");
    }

    fn sdp(sections: &[(&str, &str, &str)]) -> String {
        let mut s = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        for (kind, mid, direction) in sections {
            s += &format!("m={kind} 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{mid}\r\na={direction}\r\n");
        }
        s
    }

    #[test]
    fn offers_publish_one_audio_and_two_videos_at_most() {
        let none = |_: &str| false;
        let ok = sdp(&[("audio", "0", "sendonly"), ("video", "1", "sendonly")]);
        assert!(check_offer_limits(&offer_sections(&ok), none).is_ok());
        let screen = sdp(&[
            ("audio", "0", "sendonly"),
            ("video", "1", "sendonly"),
            ("video", "2", "sendonly"),
        ]);
        assert!(check_offer_limits(&offer_sections(&screen), none).is_ok());
        let two_mics = sdp(&[("audio", "0", "sendonly"), ("audio", "1", "sendrecv")]);
        assert!(check_offer_limits(&offer_sections(&two_mics), none).is_err());
        // The bomb: hundreds of m-lines.
        let bomb: Vec<(&str, String, &str)> = (0..1700)
            .map(|i| ("audio", i.to_string(), "sendonly"))
            .collect();
        let bomb: Vec<(&str, &str, &str)> =
            bomb.iter().map(|(k, m, d)| (*k, m.as_str(), *d)).collect();
        assert!(check_offer_limits(&offer_sections(&sdp(&bomb)), none).is_err());
        // A re-offer: the server's tracks come back recvonly and are known.
        let reoffer = sdp(&[
            ("audio", "0", "sendonly"),
            ("audio", "5", "recvonly"),
            ("video", "6", "recvonly"),
            ("audio", "7", "recvonly"),
        ]);
        let known = |m: &str| m != "0";
        assert!(check_offer_limits(&offer_sections(&reoffer), known).is_ok());
        // A viewer's first offer: one new recvonly audio and video; no more than that.
        let viewer = sdp(&[("audio", "0", "recvonly"), ("video", "1", "recvonly")]);
        assert!(check_offer_limits(&offer_sections(&viewer), none).is_ok());
        let greedy = sdp(&[("audio", "0", "recvonly"), ("audio", "1", "recvonly")]);
        assert!(check_offer_limits(&offer_sections(&greedy), none).is_err());
        let mut layers = sdp(&[("video", "1", "sendonly")]);
        layers += "a=rid:a send\r\na=rid:b send\r\na=rid:c send\r\na=rid:d send\r\n";
        assert!(check_offer_limits(&offer_sections(&layers), none).is_err());
        let sections = offer_sections(&sdp(&[
            ("application", "2", "sendrecv"),
            ("text", "3", "sendonly"),
        ]));
        assert_eq!(sections[0].kind, "application");
        assert!(
            check_offer_limits(&sections, none).is_err(),
            "unknown media kinds are refused"
        );
    }

    #[test]
    fn pt_map_learns_and_forgets_its_oldest_when_full() {
        let mut map = PtMap::default();
        assert_eq!(map.get(111.into()), None);
        map.insert(111.into(), Some(109.into()));
        map.insert(96.into(), None);
        assert_eq!(map.get(111.into()), Some(Some(109.into())));
        assert_eq!(
            map.get(96.into()),
            Some(None),
            "a refused codec is remembered too"
        );
        for pt in 100..103u8 {
            map.insert(pt.into(), Some(pt.into()));
        }
        assert_eq!(map.get(111.into()), None, "the oldest went to make room");
        assert_eq!(map.get(96.into()), Some(None));
        assert_eq!(map.get(102.into()), Some(Some(102.into())));
    }
}
