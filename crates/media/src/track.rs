//! A recorded track read back from its journal for finalizing, in two passes so that memory does not grow
//! with the recording: [`Track::scan`] learns its clock (see [`crate::timeline`]) and counts; then
//! [`Track::packets`] reads the journal again and yields its RTP payloads in order, each with its
//! session time, duplicates dropped, reordering undone within [`HOLD_US`].

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::journal::{Entry, JournalReader, TrackHeader};
use crate::rtp;
use crate::timeline::{ClockEstimator, TrackClock, Unwrapped, Unwrapper};

/// A packet that arrives this long (µs) after its session time is too late to be put back in order.
pub const HOLD_US: f64 = 2_000_000.0;
/// Recently emitted packets remembered to tell duplicates from late packets.
const RECENT: usize = 4096;
/// Packets held for reordering at most (arrival times that run backwards, a corrupt journal, would
/// otherwise hold them all).
const MAX_PENDING: usize = 16_384;

/// What the first pass counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanStats {
    pub rtp_packets: u64,
    /// Not RTP, or of another payload type than the track's (RTX, RED, comfort noise).
    pub skipped: u64,
    pub sender_reports: u64,
    /// The journal ends in a cut record (a crash mid-write).
    pub truncated: bool,
    pub segments: usize,
    pub first_arrival_us: Option<u64>,
    pub last_arrival_us: Option<u64>,
}

/// One track's journal, scanned.
#[derive(Debug, Clone)]
pub struct Track {
    pub path: PathBuf,
    pub header: TrackHeader,
    pub clock: TrackClock,
    pub stats: ScanStats,
}

/// Parses and places one journal entry's RTP packet; both passes go through here so they agree.
fn classify<'a>(
    header: &TrackHeader,
    unwrapper: &mut Unwrapper,
    packet: &'a [u8],
    arrival_us: u64,
) -> Option<(rtp::RtpPacket<'a>, Unwrapped)> {
    let p = rtp::parse(packet)?;
    if p.payload_type != header.payload_type || p.payload.is_empty() {
        return None;
    }
    let at = unwrapper.push(p.ssrc, p.seq, p.timestamp, arrival_us)?;
    Some((p, at))
}

impl Track {
    /// First pass: the header, the clock, the counts.
    pub fn scan(path: &Path) -> Result<Track> {
        let mut reader = JournalReader::open(path)?;
        let header = reader.header.clone();
        let mut unwrapper = Unwrapper::new(header.clock_rate);
        let mut estimator = ClockEstimator::new(header.clock_rate);
        let mut stats = ScanStats::default();
        while let Some(entry) = reader.next_entry() {
            match entry {
                Entry::Rtp { arrival_us, packet } => {
                    match classify(&header, &mut unwrapper, &packet, arrival_us) {
                        Some((_, at)) => {
                            estimator.add_packet(at, arrival_us);
                            stats.rtp_packets += 1;
                            stats.first_arrival_us.get_or_insert(arrival_us);
                            stats.last_arrival_us = Some(arrival_us);
                        }
                        None => stats.skipped += 1,
                    }
                }
                Entry::SenderReport {
                    arrival_us,
                    ntp,
                    rtp,
                } => {
                    if let Some((segment, ts)) = unwrapper.place_report(rtp, arrival_us) {
                        estimator.add_sender_report(segment, ts, ntp);
                        stats.sender_reports += 1;
                    }
                }
            }
        }
        stats.truncated = reader.truncated;
        stats.segments = unwrapper.segments();
        Ok(Track {
            path: path.to_path_buf(),
            header,
            clock: estimator.finish(),
            stats,
        })
    }

    /// Second pass: the packets in session-time order.
    pub fn packets(&self) -> Result<TrackPackets> {
        Ok(TrackPackets {
            reader: JournalReader::open(&self.path)?,
            header: self.header.clone(),
            unwrapper: Unwrapper::new(self.header.clock_rate),
            clock: self.clock.clone(),
            pending: BTreeMap::new(),
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
            last_emitted: None,
            last_seq: Vec::new(),
            padding: VecDeque::new(),
            padding_seen: HashSet::new(),
            eof: false,
            stats: OrderStats::default(),
        })
    }
}

/// A packet's RTP payload placed on the session clock.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackPacket {
    /// Session time (µs since the recording's start) at which it was sent.
    pub session_us: f64,
    pub segment: usize,
    pub seq: i64,
    pub ts: i64,
    pub marker: bool,
    pub arrival_us: u64,
    pub payload: Vec<u8>,
    /// Padding-only packets (bandwidth probes, no media) right before this one in sequence: a gap of
    /// that many sequence numbers is not a loss.
    pub padding_before: u16,
}

impl TrackPacket {
    /// Its session time in 48 kHz samples.
    pub fn session_sample(&self) -> i64 {
        (self.session_us * f64::from(crate::SAMPLE_RATE) / 1e6).round() as i64
    }
}

/// What putting the packets in order found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrderStats {
    pub duplicates: u64,
    /// Arrived after later packets had been given out (more than [`HOLD_US`] late).
    pub too_late: u64,
    /// Sequence numbers never seen.
    pub lost: u64,
}

/// Ordering key: session time (ns), then segment and sequence number (a video frame's packets share a
/// timestamp).
type Key = (i64, usize, i64);

/// The second pass's iterator (see [`Track::packets`]).
pub struct TrackPackets {
    reader: JournalReader,
    header: TrackHeader,
    unwrapper: Unwrapper,
    clock: TrackClock,
    pending: BTreeMap<Key, TrackPacket>,
    recent: HashSet<(usize, i64)>,
    recent_order: VecDeque<(usize, i64)>,
    last_emitted: Option<Key>,
    last_seq: Vec<Option<i64>>,
    /// Sequence numbers (as sent, 16 bits) of recent padding-only packets, oldest first.
    padding: VecDeque<u16>,
    padding_seen: HashSet<u16>,
    eof: bool,
    pub stats: OrderStats,
}

/// Padding-only packets remembered (a few seconds of a sender's bandwidth probes).
const RECENT_PADDING: usize = 1_024;

impl TrackPackets {
    /// Reads entries until the oldest pending packet is safe to give out (or the journal ends).
    fn fill(&mut self) {
        while !self.eof {
            let newest = match self.reader.next_entry() {
                None => {
                    self.eof = true;
                    return;
                }
                Some(Entry::SenderReport { .. }) => continue,
                Some(Entry::Rtp { arrival_us, packet }) => {
                    let Some((p, at)) =
                        classify(&self.header, &mut self.unwrapper, &packet, arrival_us)
                    else {
                        self.note_padding(&packet);
                        continue;
                    };
                    let session_us = self.clock.session_us(at.segment, at.ts);
                    let key = ((session_us * 1e3).round() as i64, at.segment, at.seq);
                    if self.pending.contains_key(&key)
                        || self.recent.contains(&(at.segment, at.seq))
                    {
                        self.stats.duplicates += 1;
                    } else if self.last_emitted.is_some_and(|last| key <= last) {
                        self.stats.too_late += 1;
                    } else {
                        let packet = TrackPacket {
                            session_us,
                            segment: at.segment,
                            seq: at.seq,
                            ts: at.ts,
                            marker: p.marker,
                            arrival_us,
                            payload: p.payload.to_vec(),
                            padding_before: 0,
                        };
                        self.pending.insert(key, packet);
                    }
                    arrival_us as f64
                }
            };
            if self.pending.len() > MAX_PENDING
                || self
                    .pending
                    .first_key_value()
                    .is_some_and(|(k, _)| (k.0 as f64) / 1e3 < newest - HOLD_US)
            {
                return;
            }
        }
    }

    /// Remembers a padding-only packet of the track (the sender fills its sequence with them when it
    /// probes bandwidth without a retransmission stream).
    fn note_padding(&mut self, packet: &[u8]) {
        let Some(p) = rtp::parse(packet) else {
            return;
        };
        if p.payload_type != self.header.payload_type
            || !p.payload.is_empty()
            || !self.padding_seen.insert(p.seq)
        {
            return;
        }
        if self.padding.len() >= RECENT_PADDING {
            if let Some(old) = self.padding.pop_front() {
                self.padding_seen.remove(&old);
            }
        }
        self.padding.push_back(p.seq);
    }

    fn emit(&mut self, key: Key, mut packet: TrackPacket) -> TrackPacket {
        // Sequence numbers are 16 bits on the wire; the padding right before this packet.
        let mut before = 0u16;
        while before < u16::MAX
            && self
                .padding_seen
                .contains(&((packet.seq - 1 - i64::from(before)) as u16))
        {
            before += 1;
        }
        packet.padding_before = before;
        self.last_emitted = Some(key);
        if self.recent_order.len() >= RECENT {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
        self.recent.insert((packet.segment, packet.seq));
        self.recent_order.push_back((packet.segment, packet.seq));
        if self.last_seq.len() <= packet.segment {
            self.last_seq.resize(packet.segment + 1, None);
        }
        let last = &mut self.last_seq[packet.segment];
        if let Some(prev) = *last {
            self.stats.lost += (packet.seq - prev - 1 - i64::from(before)).max(0) as u64;
        }
        *last = Some(last.map_or(packet.seq, |prev| prev.max(packet.seq)));
        packet
    }

    /// The packet [`Iterator::next`] will give, without taking it.
    pub fn peek(&mut self) -> Option<&TrackPacket> {
        self.fill();
        self.pending.first_key_value().map(|(_, p)| p)
    }

    /// Whether the journal ended in a cut record.
    pub fn truncated(&self) -> bool {
        self.reader.truncated
    }
}

impl Iterator for TrackPackets {
    type Item = TrackPacket;

    fn next(&mut self) -> Option<TrackPacket> {
        self.fill();
        let (key, packet) = self.pending.pop_first()?;
        Some(self.emit(key, packet))
    }
}
