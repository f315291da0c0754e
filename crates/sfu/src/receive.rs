//! A publisher's audio as we receive it ourselves, past str0m: the RTP header, the SRTP index,
//! replay protection, and the reception statistics our receiver reports carry (RFC 3550 §6.4.1, A.3,
//! A.8).
//!
//! str0m runs a full timeout pass for every datagram it is handed; for audio (many small packets,
//! never retransmitted) that was the largest cost of receiving. Video and RTCP still go to str0m.

use std::time::{Duration, Instant};

use str0m::format::PayloadParams;
use str0m::media::{Mid, Pt};

/// The parts of an RTP header forwarding needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHead {
    pub header_len: usize,
    pub padding: bool,
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Where the header extension's elements are (`profile`, start, end), if any.
    pub extension: Option<(u16, usize, usize)>,
}

/// Parses an RTP header (not RTCP: payload types 64..=95 are refused). `None` for anything that is
/// not a complete RTP header.
pub fn parse_rtp(data: &[u8]) -> Option<RtpHead> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let pt = data[1] & 0x7f;
    if (64..=95).contains(&pt) {
        return None;
    }
    let csrcs = usize::from(data[0] & 0x0f);
    let mut header_len = 12 + 4 * csrcs;
    let mut extension = None;
    if data[0] & 0x10 != 0 {
        let at = header_len;
        let ext = data.get(at..at + 4)?;
        let profile = u16::from_be_bytes([ext[0], ext[1]]);
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        header_len = at + 4 + 4 * words;
        extension = Some((profile, at + 4, header_len));
    }
    if header_len > data.len() {
        return None;
    }
    Some(RtpHead {
        header_len,
        padding: data[0] & 0x20 != 0,
        marker: data[1] & 0x80 != 0,
        pt,
        seq: u16::from_be_bytes([data[2], data[3]]),
        timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        extension,
    })
}

/// The RFC 6464 audio level (-dBov, as str0m gives it: a negative number) and voice flag carried by
/// extension element `id`, in RFC 8285's one-byte or two-byte form.
pub fn audio_level(data: &[u8], head: &RtpHead, id: u8) -> Option<(i8, bool)> {
    let (profile, start, end) = head.extension?;
    let elements = data.get(start..end)?;
    let two_byte = match profile {
        0xBEDE => false,
        p if p & 0xfff0 == 0x1000 => true,
        _ => return None,
    };
    let mut at = 0;
    while at < elements.len() {
        let (element, len, value_at) = if two_byte {
            let element = elements[at];
            if element == 0 {
                at += 1;
                continue;
            }
            let len = usize::from(*elements.get(at + 1)?);
            (element, len, at + 2)
        } else {
            let byte = elements[at];
            if byte == 0 {
                at += 1;
                continue;
            }
            let element = byte >> 4;
            if element == 15 {
                return None;
            }
            (element, usize::from(byte & 0x0f) + 1, at + 1)
        };
        let value = elements.get(value_at..value_at + len)?;
        if element == id {
            let v = *value.first()?;
            return Some((-((v & 0x7f) as i8), v & 0x80 != 0));
        }
        at = value_at + len;
    }
    None
}

/// The extended sequence number of `seq`: the one of the three 16-bit cycles around `highest` that
/// lies closest to it (RFC 3711 appendix A's rollover guess).
pub fn extend_seq(highest: u64, seq: u16) -> u64 {
    let cycle = highest >> 16;
    let candidates = [cycle.wrapping_sub(1), cycle, cycle + 1];
    candidates
        .into_iter()
        .filter(|c| *c <= u64::MAX >> 16)
        .map(|c| (c << 16) | u64::from(seq))
        .min_by_key(|ext| ext.abs_diff(highest))
        .unwrap_or(u64::from(seq))
}

/// Packets behind the newest one that may still arrive (late) once.
const REPLAY_WINDOW: u64 = 64;

/// One publisher audio stream we open ourselves.
#[derive(Debug)]
pub struct AudioIn {
    pub ssrc: u32,
    pub mid: Mid,
    /// Their payload type → the codec it stands for, learned on first use.
    pub params: Vec<(Pt, Option<PayloadParams>)>,
    /// The client's id for the audio level extension on this track.
    pub level_id: Option<u8>,
    /// The RTP clock, for jitter.
    pub clock_rate: u32,
    stats: Reception,
}

/// RFC 3550 reception statistics of one source.
#[derive(Debug, Default)]
struct Reception {
    first: Option<u64>,
    highest: u64,
    /// Bit i set: `highest - i` was received.
    window: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in RTP units, scaled by 16 as RFC 3550 A.8 keeps it.
    jitter_q4: u64,
    last_transit: Option<i64>,
    pub(crate) last_fraction: f32,
}

/// What a report block says about one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    pub highest: u32,
    pub jitter: u32,
}

impl AudioIn {
    pub fn new(ssrc: u32, mid: Mid, level_id: Option<u8>, clock_rate: u32) -> AudioIn {
        AudioIn {
            ssrc,
            mid,
            params: Vec::new(),
            level_id,
            clock_rate: clock_rate.max(1),
            stats: Reception::default(),
        }
    }

    /// The SRTP index of an arriving packet, before it is authenticated.
    pub fn index_of(&self, seq: u16) -> u64 {
        match self.stats.first {
            None => u64::from(seq),
            Some(_) => extend_seq(self.stats.highest, seq),
        }
    }

    /// Whether a packet of this index would be a replay (or too old to tell).
    pub fn is_replay(&self, index: u64) -> bool {
        let s = &self.stats;
        if s.first.is_none() || index > s.highest {
            return false;
        }
        let behind = s.highest - index;
        behind >= REPLAY_WINDOW || s.window & (1 << behind) != 0
    }

    /// An authenticated packet arrived at `at` (`epoch` is any fixed instant, for jitter).
    pub fn received(&mut self, index: u64, timestamp: u32, at: Instant, epoch: Instant) {
        let s = &mut self.stats;
        match s.first {
            None => {
                s.first = Some(index);
                s.highest = index;
                s.window = 1;
            }
            Some(_) if index > s.highest => {
                let ahead = index - s.highest;
                s.window = if ahead >= 64 {
                    1
                } else {
                    (s.window << ahead) | 1
                };
                s.highest = index;
            }
            // Late: is_replay let it through only inside the window.
            Some(_) => {
                let behind = u32::try_from(s.highest - index).unwrap_or(u32::MAX);
                if let Some(bit) = 1u64.checked_shl(behind) {
                    s.window |= bit;
                }
            }
        }
        s.received += 1;
        // RFC 3550 A.8, in RTP units.
        let arrival =
            at.saturating_duration_since(epoch).as_secs_f64() * f64::from(self.clock_rate);
        let transit = arrival as i64 - i64::from(timestamp);
        if let Some(last) = s.last_transit {
            let d = transit.abs_diff(last);
            // jitter += (|D| - jitter) / 16, with jitter kept ×16.
            s.jitter_q4 = s.jitter_q4 + d - (s.jitter_q4 + 8) / 16;
        }
        s.last_transit = Some(transit);
    }

    /// The report block for now; the loss fraction covers the time since the last one.
    pub fn report(&mut self) -> Option<ReportBlock> {
        let s = &mut self.stats;
        let first = s.first?;
        let expected = s.highest - first + 1;
        let lost = expected as i64 - s.received as i64;
        let expected_interval = expected - s.expected_prior;
        let received_interval = s.received - s.received_prior;
        s.expected_prior = expected;
        s.received_prior = s.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        s.last_fraction = f32::from(fraction) / 256.0;
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost: fraction,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest: s.highest as u32,
            jitter: (s.jitter_q4 / 16) as u32,
        })
    }

    /// The loss fraction of the last report (0..=1).
    pub fn last_loss(&self) -> Option<f32> {
        self.stats.first.map(|_| self.stats.last_fraction)
    }
}

/// How often we report on the audio we open (RFC 3550 leaves it to us; browsers use reports for
/// loss-driven Opus FEC and their `remote-inbound-rtp` figures).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A compound RTCP packet: a receiver report from `reporter` with `blocks` (at most 31), and the
/// SDES CNAME RFC 3550 §6.1 asks every compound packet to carry.
pub fn receiver_report(reporter: u32, blocks: &[ReportBlock], cname: &str) -> Vec<u8> {
    let blocks = &blocks[..blocks.len().min(31)];
    let mut out = Vec::with_capacity(8 + 24 * blocks.len() + 12 + cname.len());
    let words = 1 + 6 * blocks.len();
    out.push(0x80 | blocks.len() as u8);
    out.push(201);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&reporter.to_be_bytes());
    for b in blocks {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let lost = (b.cumulative_lost as u32) & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&b.highest.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        // No sender report of theirs is read here: LSR and DLSR stay 0, as RFC 3550 says then.
        out.extend_from_slice(&[0; 8]);
    }
    // SDES: one chunk, CNAME, end marker, padded to a word.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let start = out.len();
    out.extend_from_slice(&[0x81, 202, 0, 0]);
    out.extend_from_slice(&reporter.to_be_bytes());
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.push(0);
    while (out.len() - start) % 4 != 0 {
        out.push(0);
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ext: &[u8], ext_profile: u16, padding: bool) -> Vec<u8> {
        let mut p = vec![
            0x80 | if ext.is_empty() { 0 } else { 0x10 } | if padding { 0x20 } else { 0 },
            0x80 | 111,
        ];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&960u32.to_be_bytes());
        p.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
        if !ext.is_empty() {
            p.extend_from_slice(&ext_profile.to_be_bytes());
            p.extend_from_slice(&((ext.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(ext);
        }
        p.extend_from_slice(&[1, 2, 3]);
        p
    }

    #[test]
    fn headers_and_audio_levels_in_both_extension_forms() {
        // One-byte form: padding, a 2-byte element (id 3), then audio level id 1 = voice, 30 dB.
        let one = packet(7, &[0x00, 0x31, 9, 9, 0x10, 0x80 | 30, 0, 0], 0xBEDE, false);
        let head = parse_rtp(&one).unwrap();
        assert_eq!(
            (head.seq, head.pt, head.marker, head.ssrc),
            (7, 111, true, 0xabcd_0001)
        );
        assert_eq!(head.header_len, 12 + 4 + 8);
        assert_eq!(audio_level(&one, &head, 1), Some((-30, true)));
        assert_eq!(audio_level(&one, &head, 2), None);
        // Two-byte form: id 5, length 1, level 127, no voice.
        let two = packet(8, &[5, 1, 127, 0], 0x1000, true);
        let head = parse_rtp(&two).unwrap();
        assert!(head.padding);
        assert_eq!(audio_level(&two, &head, 5), Some((-127, false)));
        // No extension at all.
        let none = packet(9, &[], 0, false);
        let head = parse_rtp(&none).unwrap();
        assert_eq!(head.header_len, 12);
        assert_eq!(audio_level(&none, &head, 1), None);
    }

    #[test]
    fn truncated_or_foreign_packets_are_refused_without_panics() {
        let good = packet(7, &[0x10, 0x80 | 30, 0, 0], 0xBEDE, false);
        for cut in 0..16 {
            if let Some(head) = parse_rtp(&good[..cut]) {
                let _ = audio_level(&good[..cut], &head, 1);
            }
        }
        assert!(parse_rtp(&good[..15]).is_none(), "extension header cut off");
        let mut rtcp = good.clone();
        rtcp[1] = 200; // an SR
        assert!(parse_rtp(&rtcp).is_none());
        let mut v1 = good.clone();
        v1[0] = 0x50;
        assert!(parse_rtp(&v1).is_none());
        // An element claiming more bytes than the extension has.
        let bad = packet(7, &[0x1f, 1, 2, 3], 0xBEDE, false);
        let head = parse_rtp(&bad).unwrap();
        assert_eq!(audio_level(&bad, &head, 1), None);
        for b in 0..=255u8 {
            let junk = packet(7, &[b, b, b, b, b.wrapping_mul(7), 0, b, 1], 0xBEDE, false);
            if let Some(head) = parse_rtp(&junk) {
                let _ = audio_level(&junk, &head, b & 0x0f);
            }
        }
    }

    #[test]
    fn sequence_numbers_extend_across_wraps_both_ways() {
        assert_eq!(extend_seq(65_535, 0), 65_536);
        assert_eq!(
            extend_seq(65_536, 65_535),
            65_535,
            "late, from before the wrap"
        );
        assert_eq!(extend_seq(3 * 65_536 + 10, 5), 3 * 65_536 + 5);
        assert_eq!(extend_seq(10, 65_530), 65_530, "no cycle below 0");
        assert_eq!(extend_seq(2 * 65_536 + 65_000, 100), 3 * 65_536 + 100);
    }

    #[test]
    fn replays_and_stale_packets_are_refused_late_ones_are_not() {
        let epoch = Instant::now();
        let mut a = AudioIn::new(1, Mid::from("0"), None, 48_000);
        assert!(!a.is_replay(a.index_of(100)));
        a.received(100, 0, epoch, epoch);
        a.received(102, 1920, epoch, epoch);
        assert!(a.is_replay(100) && a.is_replay(102));
        assert!(!a.is_replay(101), "late but new");
        a.received(101, 960, epoch, epoch);
        assert!(a.is_replay(101));
        a.received(300, 0, epoch, epoch);
        assert!(a.is_replay(200), "too old to tell: refused");
        assert!(!a.is_replay(299));
    }

    #[test]
    fn reports_count_loss_per_interval_and_jitter() {
        let epoch = Instant::now();
        let mut a = AudioIn::new(9, Mid::from("0"), None, 48_000);
        assert_eq!(a.report(), None, "nothing received, nothing to report");
        // 100 packets at 20 ms with 10 missing: fraction 10/100 = 25/256.
        for i in 0..100u64 {
            if i % 10 == 3 {
                continue;
            }
            let at = epoch + Duration::from_millis(20 * i);
            a.received(1000 + i, (960 * i) as u32, at, epoch);
        }
        let r = a.report().unwrap();
        assert_eq!(r.ssrc, 9);
        assert_eq!(r.cumulative_lost, 10);
        assert_eq!(r.fraction_lost, 25);
        assert_eq!(r.highest, 1099);
        assert!(r.jitter <= 2, "a steady stream has no jitter: {}", r.jitter);
        // The next interval loses nothing; cumulative loss stays.
        for i in 100..150u64 {
            let at = epoch + Duration::from_millis(20 * i + if i % 2 == 0 { 10 } else { 0 });
            a.received(1000 + i, (960 * i) as u32, at, epoch);
        }
        let r = a.report().unwrap();
        assert_eq!((r.fraction_lost, r.cumulative_lost), (0, 10));
        assert!(
            r.jitter > 100,
            "10 ms of arrival jitter is 480 RTP units at most: {}",
            r.jitter
        );
        assert!(a.last_loss() == Some(0.0));
    }

    #[test]
    fn a_receiver_report_is_laid_out_as_rfc_3550_says() {
        let block = ReportBlock {
            ssrc: 0x0102_0304,
            fraction_lost: 25,
            cumulative_lost: -1,
            highest: 0x0001_0005,
            jitter: 77,
        };
        let rr = receiver_report(0xaabb_ccdd, &[block, block], "parley");
        assert_eq!(rr[0], 0x82, "V=2, two blocks");
        assert_eq!(rr[1], 201);
        assert_eq!(
            u16::from_be_bytes([rr[2], rr[3]]),
            13,
            "length in words - 1"
        );
        assert_eq!(&rr[4..8], &0xaabb_ccddu32.to_be_bytes());
        assert_eq!(&rr[8..12], &0x0102_0304u32.to_be_bytes());
        assert_eq!(rr[12], 25);
        assert_eq!(&rr[13..16], &[0xff, 0xff, 0xff], "-1 in 24 bits");
        let sdes = &rr[8 + 48..];
        assert_eq!(sdes[0], 0x81);
        assert_eq!(sdes[1], 202);
        assert_eq!(sdes.len() % 4, 0);
        assert_eq!(
            usize::from(u16::from_be_bytes([sdes[2], sdes[3]])),
            sdes.len() / 4 - 1
        );
        assert_eq!(&sdes[8..10], &[1, 6]);
        assert_eq!(&sdes[10..16], b"parley");
    }
}
