//! A track's clock: the session time (µs since the recording started) at which each RTP timestamp was
//! sent. Sans-IO: fed `(ssrc, seq, timestamp, arrival)` in journal order.
//!
//! - [`Unwrapper`] extends 16-bit sequence numbers and 32-bit timestamps to 64 bits and splits a track
//!   into *segments* where the sender's RTP clock restarts (a new SSRC, or a timestamp jump that arrival
//!   times do not show); each segment has its own clock.
//! - [`ClockEstimator`] learns each segment's offset `arrival − rtp/clock`. Network jitter only ever adds
//!   delay, so the offset is the minimum over each [`WINDOW_S`] of RTP time (the minimum-delay envelope),
//!   and the session time of a timestamp interpolates linearly between those minima: the sender's clock
//!   drift is followed window by window instead of accumulating. A window whose minimum sits well above
//!   its neighbours' (a whole window of congestion) is dropped.
//! - Sender reports pair RTP time with the sender's wall clock: [`TrackClock::sync_to`] places a track on
//!   another track's clock through them (the same sender's video on its audio: lip sync as sent).

use std::collections::BTreeMap;

/// The length of RTP time over which one minimum of the offset is taken.
pub const WINDOW_S: f64 = 10.0;
/// Largest clock drift assumed between a sender and us (cheap crystals are within ±100 ppm).
const MAX_DRIFT: f64 = 500e-6;
/// A window's minimum this far above a neighbour's (beyond drift) was congested throughout.
const OUTLIER_US: f64 = 5_000.0;
/// A timestamp whose offset differs this much from its segment's has restarted the RTP clock.
const RESTART_US: f64 = 10e6;
/// More segments than this in one track is a corrupt journal: further restarts are dropped.
pub const MAX_SEGMENTS: usize = 64;

/// Extends `value` (`bits` wide) to the 64-bit value nearest `last`.
fn unwrap(last: i64, value: u64, bits: u32) -> i64 {
    let modulus = 1i64 << bits;
    let mut delta = (value as i64 - last.rem_euclid(modulus)).rem_euclid(modulus);
    if delta >= modulus / 2 {
        delta -= modulus;
    }
    last + delta
}

/// A packet's place in its track: segment, extended sequence number and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwrapped {
    pub segment: usize,
    pub seq: i64,
    pub ts: i64,
}

#[derive(Debug, Clone)]
struct SegmentState {
    ssrc: u32,
    max_seq: i64,
    max_ts: i64,
    min_offset_us: f64,
}

/// Extends and segments a track's packets. Deterministic: the same packets in the same order give the
/// same answers (finalizing reads a journal twice).
#[derive(Debug, Clone)]
pub struct Unwrapper {
    clock_rate: f64,
    segments: Vec<SegmentState>,
}

impl Unwrapper {
    pub fn new(clock_rate: u32) -> Unwrapper {
        Unwrapper {
            clock_rate: f64::from(clock_rate.max(1)),
            segments: Vec::new(),
        }
    }

    fn offset_us(&self, ts: i64, arrival_us: u64) -> f64 {
        arrival_us as f64 - ts as f64 * 1e6 / self.clock_rate
    }

    /// The segment a timestamp belongs to (the latest that fits), and the timestamp extended there.
    fn find(&self, ssrc: Option<u32>, ts: u32, arrival_us: u64) -> Option<(usize, i64)> {
        self.segments.iter().enumerate().rev().find_map(|(i, s)| {
            if ssrc.is_some_and(|ssrc| ssrc != s.ssrc) {
                return None;
            }
            let ext = unwrap(s.max_ts, u64::from(ts), 32);
            ((self.offset_us(ext, arrival_us) - s.min_offset_us).abs() <= RESTART_US)
                .then_some((i, ext))
        })
    }

    /// Places one RTP packet; `None` once a corrupt journal has restarted the clock too often.
    pub fn push(&mut self, ssrc: u32, seq: u16, ts: u32, arrival_us: u64) -> Option<Unwrapped> {
        if let Some((i, ext_ts)) = self.find(Some(ssrc), ts, arrival_us) {
            let offset = self.offset_us(ext_ts, arrival_us);
            let s = &mut self.segments[i];
            let ext_seq = unwrap(s.max_seq, u64::from(seq), 16);
            s.max_seq = s.max_seq.max(ext_seq);
            s.max_ts = s.max_ts.max(ext_ts);
            s.min_offset_us = s.min_offset_us.min(offset);
            return Some(Unwrapped {
                segment: i,
                seq: ext_seq,
                ts: ext_ts,
            });
        }
        if self.segments.len() >= MAX_SEGMENTS {
            return None;
        }
        let ts = i64::from(ts);
        self.segments.push(SegmentState {
            ssrc,
            max_seq: i64::from(seq),
            max_ts: ts,
            min_offset_us: self.offset_us(ts, arrival_us),
        });
        Some(Unwrapped {
            segment: self.segments.len() - 1,
            seq: i64::from(seq),
            ts,
        })
    }

    /// The segment and extended timestamp of a sender report's RTP time (reports carry no SSRC in a
    /// journal: the latest segment that fits).
    pub fn place_report(&self, rtp: u32, arrival_us: u64) -> Option<(usize, i64)> {
        self.find(None, rtp, arrival_us)
    }

    pub fn segments(&self) -> usize {
        self.segments.len()
    }
}

/// Window index → (timestamp, offset µs) of the window's lowest offset.
type Windows = BTreeMap<i64, (i64, f64)>;

/// Learns each segment's clock from arrival times (and keeps sender reports for [`TrackClock::sync_to`]).
#[derive(Debug, Clone)]
pub struct ClockEstimator {
    clock_rate: u32,
    window: i64,
    /// Per segment: its first timestamp, and its windows' minima.
    windows: Vec<(i64, Windows)>,
    reports: Vec<Vec<(i64, f64)>>,
}

impl ClockEstimator {
    pub fn new(clock_rate: u32) -> ClockEstimator {
        let clock_rate = clock_rate.max(1);
        ClockEstimator {
            clock_rate,
            window: (WINDOW_S * f64::from(clock_rate)) as i64,
            windows: Vec::new(),
            reports: Vec::new(),
        }
    }

    fn grow(&mut self, segment: usize, ts: i64) {
        while self.windows.len() <= segment {
            self.windows.push((ts, BTreeMap::new()));
            self.reports.push(Vec::new());
        }
    }

    pub fn add_packet(&mut self, at: Unwrapped, arrival_us: u64) {
        self.grow(at.segment, at.ts);
        let offset = arrival_us as f64 - at.ts as f64 * 1e6 / f64::from(self.clock_rate);
        let (first, windows) = &mut self.windows[at.segment];
        let index = (at.ts - *first).div_euclid(self.window);
        let slot = windows.entry(index).or_insert((at.ts, offset));
        if offset < slot.1 {
            *slot = (at.ts, offset);
        }
    }

    /// A sender report: the sender's wall clock (NTP, 32.32 fixed point) at RTP time `ts`.
    pub fn add_sender_report(&mut self, segment: usize, ts: i64, ntp: u64) {
        self.grow(segment, ts);
        let seconds = (ntp >> 32) as f64 + (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0;
        self.reports[segment].push((ts, seconds));
    }

    pub fn finish(self) -> TrackClock {
        let segments = self
            .windows
            .into_iter()
            .zip(self.reports)
            .map(|((_, windows), mut reports)| {
                reports.sort_by_key(|r| r.0);
                SegmentClock {
                    points: prune(windows.into_values().collect(), self.clock_rate),
                    reports,
                }
            })
            .collect();
        TrackClock {
            clock_rate: self.clock_rate,
            segments,
        }
    }
}

/// Drops the windows whose minimum sits above a neighbour's by more than drift can explain, until none
/// does (the lowest window always stays).
fn prune(mut points: Vec<(i64, f64)>, clock_rate: u32) -> Vec<(i64, f64)> {
    let slack = |a: (i64, f64), b: (i64, f64)| {
        OUTLIER_US + MAX_DRIFT * (a.0 - b.0).abs() as f64 * 1e6 / f64::from(clock_rate)
    };
    loop {
        let congested: Vec<bool> = (0..points.len())
            .map(|k| {
                let p = points[k];
                let above = |j: usize| p.1 - points[j].1 > slack(p, points[j]);
                (k > 0 && above(k - 1)) || (k + 1 < points.len() && above(k + 1))
            })
            .collect();
        if !congested.contains(&true) {
            return points;
        }
        let mut flags = congested.into_iter();
        points.retain(|_| !flags.next().unwrap_or(false));
    }
}

#[derive(Debug, Clone, Default)]
struct SegmentClock {
    /// (timestamp, offset µs), sorted by timestamp.
    points: Vec<(i64, f64)>,
    /// (timestamp, sender's wall clock in seconds), sorted by timestamp.
    reports: Vec<(i64, f64)>,
}

impl SegmentClock {
    fn offset_us(&self, ts: i64) -> f64 {
        let i = self.points.partition_point(|p| p.0 <= ts);
        match (i.checked_sub(1).map(|j| self.points[j]), self.points.get(i)) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                a.1 + (b.1 - a.1) * (ts - a.0) as f64 / (b.0 - a.0) as f64
            }
            (Some(a), _) => a.1,
            (None, Some(b)) => b.1,
            (None, None) => 0.0,
        }
    }

    /// The sender report nearest `ts`.
    fn nearest_report(&self, ts: i64) -> Option<(i64, f64)> {
        let i = self.reports.partition_point(|r| r.0 <= ts);
        [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|j| self.reports.get(j).copied())
            .min_by_key(|r| (r.0 - ts).abs())
    }
}

/// A track's RTP → session time mapping, one clock per segment.
#[derive(Debug, Clone)]
pub struct TrackClock {
    pub clock_rate: u32,
    segments: Vec<SegmentClock>,
}

impl TrackClock {
    /// Session time (µs since the recording's start) at which RTP time `ts` of `segment` was sent.
    pub fn session_us(&self, segment: usize, ts: i64) -> f64 {
        let offset = self.segments.get(segment).map_or(0.0, |s| s.offset_us(ts));
        ts as f64 * 1e6 / f64::from(self.clock_rate) + offset
    }

    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    pub fn sender_reports(&self) -> usize {
        self.segments.iter().map(|s| s.reports.len()).sum()
    }

    /// Session time at the sender's wall-clock time `ntp`, through the sender report nearest it.
    fn session_at_sender_time(&self, ntp: f64) -> Option<f64> {
        let (segment, (rts, rntp)) = self
            .segments
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.reports.iter().map(move |r| (i, *r)))
            .min_by(|a, b| (a.1 .1 - ntp).abs().total_cmp(&(b.1 .1 - ntp).abs()))?;
        let ts = rts + ((ntp - rntp) * f64::from(self.clock_rate)).round() as i64;
        Some(self.session_us(segment, ts))
    }

    /// Re-places this track on `reference`'s clock through both tracks' sender reports (the same
    /// sender's wall clock), where that moves it by less than a second; returns whether it did. With no
    /// reports on either side the arrival-based clock stays.
    pub fn sync_to(&mut self, reference: &TrackClock) -> bool {
        let rate = f64::from(self.clock_rate);
        let mut moved = false;
        for segment in &mut self.segments {
            for i in 0..segment.points.len() {
                let (ts, offset) = segment.points[i];
                let Some((rts, ntp)) = segment.nearest_report(ts) else {
                    continue;
                };
                let sent = ntp + (ts - rts) as f64 / rate;
                if let Some(session) = reference.session_at_sender_time(sent) {
                    let synced = session - ts as f64 * 1e6 / rate;
                    if (synced - offset).abs() < 1e6 {
                        segment.points[i].1 = synced;
                        moved = true;
                    }
                }
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    #[test]
    fn unwrap_picks_the_nearest() {
        assert_eq!(unwrap(65_535, 0, 16), 65_536);
        assert_eq!(unwrap(65_536, 65_535, 16), 65_535);
        assert_eq!(unwrap(10, 65_530, 16), -6);
        assert_eq!(unwrap(0xffff_fff0, 0x10, 32), 0x1_0000_0010);
        assert_eq!(unwrap(5, 5, 32), 5);
    }

    #[test]
    fn sequence_and_timestamp_wrap_in_one_segment() {
        let mut u = Unwrapper::new(48_000);
        let mut last = None;
        for i in 0..200u64 {
            let seq = (65_500 + i) as u16;
            let ts = (0xffff_0000u64 + i * 960) as u32;
            let got = u.push(7, seq, ts, 40_000 + i * 20_000).unwrap();
            assert_eq!(got.segment, 0);
            assert_eq!(got.seq, 65_500 + i as i64);
            assert_eq!(got.ts, 0xffff_0000 + i as i64 * 960);
            last = Some(got);
        }
        assert!(last.is_some());
        assert_eq!(u.segments(), 1);
    }

    #[test]
    fn a_restarted_clock_is_a_new_segment_and_old_packets_find_theirs() {
        let mut u = Unwrapper::new(48_000);
        assert_eq!(u.push(1, 100, 1_000, 0).unwrap().segment, 0);
        assert_eq!(u.push(1, 101, 1_960, 20_000).unwrap().segment, 0);
        // The sender's timestamps jump by an hour while 20 ms pass: a new clock.
        let b = u.push(1, 102, 1_960 + 48_000 * 3600, 40_000).unwrap();
        assert_eq!(b.segment, 1);
        // A late packet of the first clock still lands in the first segment.
        let late = u.push(1, 99, 40, 60_000).unwrap();
        assert_eq!((late.segment, late.seq, late.ts), (0, 99, 40));
        // A new SSRC is a new segment too.
        assert_eq!(u.push(2, 5, 5, 80_000).unwrap().segment, 2);
        // A report's timestamp finds the latest segment that fits.
        let jumped = 1_960 + 48_000 * 3600 + 960;
        assert_eq!(u.place_report(jumped as u32, 60_000), Some((1, jumped)));
    }

    /// Ten minutes of 20 ms packets from a sender whose clock runs 100 ppm fast, each delayed by 40 ms
    /// plus up to 30 ms of jitter, with talk spurts and DTX silences: the mapped time of every packet is
    /// within 5 ms of when it was really sent (plus the 40 ms the network always takes).
    #[test]
    fn the_mapping_follows_drift_under_jitter() {
        for drift in [100e-6, -100e-6] {
            let mut rng = Rng::new(12345);
            let mut u = Unwrapper::new(48_000);
            let mut est = ClockEstimator::new(48_000);
            let mut truth = Vec::new();
            let ts0: u64 = 0xffff_0000;
            let mut seq: u16 = 65_000;
            for i in 0..30_000u64 {
                // 3 s talk, 1 s silence (no packets).
                if i % 200 >= 150 {
                    continue;
                }
                let rtp = ts0 + i * 960;
                // Sent at rtp time as the sender counts it: with drift, session time differs.
                let sent_us = 2_000_000.0 + (i as f64 * 20_000.0) * (1.0 - drift);
                let arrival = sent_us + 40_000.0 + rng.next_f64() * 30_000.0;
                let at = u.push(9, seq, rtp as u32, arrival as u64).unwrap();
                seq = seq.wrapping_add(1);
                est.add_packet(at, arrival as u64);
                truth.push((at, sent_us + 40_000.0));
            }
            let clock = est.finish();
            let worst = truth
                .iter()
                .map(|(at, want)| (clock.session_us(at.segment, at.ts) - want).abs())
                .fold(0.0, f64::max);
            assert!(worst < 5_000.0, "drift {drift}: worst error {worst} µs");
            eprintln!("mapping error over 10 min, drift {drift}: worst {worst:.0} µs");
        }
    }

    #[test]
    fn a_congested_window_is_ignored() {
        let mut u = Unwrapper::new(48_000);
        let mut est = ClockEstimator::new(48_000);
        let mut truth = Vec::new();
        for i in 0..3_000u64 {
            let sent = i as f64 * 20_000.0;
            // 20 s to 30 s: every packet 200 ms late.
            let extra = if (1_000..1_500).contains(&i) {
                200_000.0
            } else {
                0.0
            };
            let arrival = sent + 10_000.0 + extra;
            let at = u
                .push(1, i as u16, (i * 960) as u32, arrival as u64)
                .unwrap();
            est.add_packet(at, arrival as u64);
            truth.push((at, sent + 10_000.0));
        }
        let clock = est.finish();
        for (at, want) in truth {
            assert!((clock.session_us(at.segment, at.ts) - want).abs() < 1_000.0);
        }
    }

    #[test]
    fn sender_reports_place_video_on_its_audio_clock() {
        // Audio and video of one sender captured together; video arrives 80 ms later than audio (its
        // encoder is slower), so by arrival alone it would sit 80 ms late.
        let (mut ua, mut ea) = (Unwrapper::new(48_000), ClockEstimator::new(48_000));
        let (mut uv, mut ev) = (Unwrapper::new(90_000), ClockEstimator::new(90_000));
        let ntp_at = |t_us: f64| {
            let s = 3_900_000_000.0 + t_us / 1e6;
            ((s.floor() as u64) << 32) | ((s.fract() * 4_294_967_296.0) as u64)
        };
        for i in 0..1_000u64 {
            let t = i as f64 * 20_000.0;
            let a = ua.push(1, i as u16, (5_000 + i * 960) as u32, (t + 30_000.0) as u64);
            ea.add_packet(a.unwrap(), (t + 30_000.0) as u64);
            let v = uv.push(
                2,
                i as u16,
                (7_000 + i * 1_800) as u32,
                (t + 110_000.0) as u64,
            );
            ev.add_packet(v.unwrap(), (t + 110_000.0) as u64);
            if i % 250 == 0 {
                let (seg, ts) = ua
                    .place_report((5_000 + i * 960) as u32, t as u64 + 30_000)
                    .unwrap();
                ea.add_sender_report(seg, ts, ntp_at(t));
                let (seg, ts) = uv
                    .place_report((7_000 + i * 1_800) as u32, t as u64 + 110_000)
                    .unwrap();
                ev.add_sender_report(seg, ts, ntp_at(t));
            }
        }
        let audio = ea.finish();
        let mut video = ev.finish();
        assert_eq!(video.sender_reports(), 4);
        let before =
            video.session_us(0, 7_000 + 500 * 1_800) - audio.session_us(0, 5_000 + 500 * 960);
        assert!((before - 80_000.0).abs() < 1_000.0, "{before}");
        assert!(video.sync_to(&audio));
        let after =
            video.session_us(0, 7_000 + 500 * 1_800) - audio.session_us(0, 5_000 + 500 * 960);
        assert!(after.abs() < 1_000.0, "{after}");
    }
}
