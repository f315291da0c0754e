//! One person's audio as an Ogg/Opus file: the packets exactly as they were sent (no re-encoding), placed
//! on the session clock, from the recording's start to its end, so that every per-person file of a
//! recording has the same length and they play in sync.
//!
//! [`finalize_opus_window`] makes only a [`SessionWindow`] of that file (a segment of a long running
//! recording): the placement is replayed from the journal's start without writing (it depends on every
//! packet before), and the file begins a decoder pre-roll before the window, which its `OpusHead`
//! pre-skip drops, so its frame 0 is the window's start.

use std::path::Path;

use serde::Serialize;

use crate::error::{FinalizeError, Result};
use crate::journal::{TrackHeader, TrackMedia};
use crate::ogg_opus::OggOpusWriter;
use crate::opus_packet::{self, empty_frames};
use crate::placement::{self, Placement};
use crate::track::Track;
use crate::{PRE_SKIP, SAMPLE_RATE};

/// Samples a windowed file decodes before its window (and its pre-skip drops): 500 ms. RFC 7845
/// §4.2 recommends at least 80 ms for the decoder to converge when a stream is cropped; measured on
/// speech (the windowed mix's test), 80 ms leaves up to 1,500 16-bit steps in the window's first
/// 100 ms, 200 ms a few, 500 ms none. Nothing is decoded here, and a reader decodes 0.5 s more.
pub const WINDOW_PREROLL: u64 = 24_000;

/// A span `[from_us, to_us)` of a recording's session time (µs from its start): what the windowed
/// finalizers make instead of the whole recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindow {
    pub from_us: u64,
    pub to_us: u64,
}

impl SessionWindow {
    /// The whole of a recording lasting `duration_us`.
    pub fn whole(duration_us: u64) -> SessionWindow {
        SessionWindow {
            from_us: 0,
            to_us: duration_us,
        }
    }

    /// Its first and end sample (48 kHz) inside a recording of `total` samples.
    pub fn samples_within(&self, total: u64) -> (u64, u64) {
        let to = samples_of_us(self.to_us).min(total);
        (samples_of_us(self.from_us).min(to), to)
    }
}

/// What finalizing one track did: the server stores it with the recording.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrackReport {
    pub participant_id: u64,
    pub name: String,
    pub codec: String,
    /// The output's length (the recording's, to the sample).
    pub duration_us: u64,
    /// Session time of the first packet written (a late joiner's start).
    pub first_packet_us: Option<u64>,
    /// Packets written as they were sent.
    pub packets: u64,
    /// Sequence numbers never received, duplicates dropped, packets that came too late to order.
    pub lost: u64,
    pub duplicates: u64,
    pub too_late: u64,
    /// Dropped to keep a fast sender clock in step, or after the recording's end.
    pub drift_dropped: u64,
    pub after_end: u64,
    /// Gaps (DTX, loss, mute, a late start) filled, and how long they were in all.
    pub gaps_filled: u64,
    pub filled_us: u64,
    pub bytes: u64,
    /// Journal records that were not RTP of the track's payload type (RTX, RED, garbage): none if the
    /// header's payload type is right.
    pub skipped: u64,
    /// Clock restarts (new SSRC, timestamp jump) plus one.
    pub segments: usize,
    pub sender_reports: u64,
    /// The journal ended in a cut record (a crash mid-write): everything before it was used.
    pub journal_truncated: bool,
}

/// A duration in µs as 48 kHz samples (rounded).
pub fn samples_of_us(us: u64) -> u64 {
    ((u128::from(us) * u128::from(SAMPLE_RATE) + 500_000) / 1_000_000) as u64
}

/// µs of `samples` at 48 kHz.
pub fn us_of_samples(samples: u64) -> u64 {
    (u128::from(samples) * 1_000_000 / u128::from(SAMPLE_RATE)) as u64
}

/// Writes the Opus track in `journal` to an Ogg/Opus file at `out` that starts at the recording's start
/// and lasts `recording_duration_us`.
pub fn finalize_opus_track(
    journal: &Path,
    out: &Path,
    recording_duration_us: u64,
) -> Result<TrackReport> {
    let track = opus_track(journal)?;
    let header = &track.header;
    let total = samples_of_us(recording_duration_us);
    let mut packets = track.packets()?;
    let channels = packets
        .peek()
        .and_then(|p| p.payload.first())
        .map_or(1, |toc| opus_packet::channels(*toc));
    let mut writer = OggOpusWriter::create(
        out,
        channels,
        stream_serial(header),
        "parley",
        &track_comments(header),
    )?;
    let mut report = report_of(&track);
    for packet in packets.by_ref() {
        let at = packet.session_sample();
        if at >= total as i64 || writer.position() >= total {
            report.after_end += 1;
            continue;
        }
        if writer.write_at(at, &packet.payload)? && report.first_packet_us.is_none() {
            let start = writer.position() - opus_packet::packet_samples(&packet.payload);
            report.first_packet_us = Some(us_of_samples(start));
        }
    }
    let stats = packets.stats.clone();
    report.journal_truncated = packets.truncated();
    report.packets = writer.packets;
    report.drift_dropped = writer.dropped;
    let (gaps, empty) = (writer.gaps, writer.empty_samples);
    let position = writer.position();
    let plays = writer.finish_at(total)?;
    // finish_at pads the tail (to the recording's end, past the pre-skip): a filled gap as well.
    let tail = (total + u64::from(crate::PRE_SKIP)).saturating_sub(position);
    report.gaps_filled = gaps + u64::from(tail > 0);
    report.filled_us = us_of_samples(empty + tail);
    report.duration_us = us_of_samples(plays);
    report.lost = stats.lost;
    report.duplicates = stats.duplicates;
    report.too_late = stats.too_late;
    report.bytes = std::fs::metadata(out)?.len();
    Ok(report)
}

/// The scanned journal, where it is Opus audio.
fn opus_track(journal: &Path) -> Result<Track> {
    let track = Track::scan(journal)?;
    let header = &track.header;
    if header.media != TrackMedia::Audio {
        return Err(FinalizeError::WrongMedia { expected: "audio" });
    }
    if !header.codec.eq_ignore_ascii_case("opus") {
        return Err(FinalizeError::UnsupportedCodec {
            codec: header.codec.clone(),
        });
    }
    Ok(track)
}

fn track_comments(header: &TrackHeader) -> Vec<String> {
    vec![
        format!("TITLE={}", header.name),
        format!("ARTIST={}", header.name),
        format!("PARLEY_PARTICIPANT={}", header.participant_id),
        format!(
            "PARLEY_RECORDING_START_MS={}",
            header.recording_start_unix_ms
        ),
    ]
}

/// The serial only has to differ between streams of one file; the participant's id is stable.
fn stream_serial(header: &TrackHeader) -> u32 {
    header.participant_id as u32 ^ 0x5041_524c
}

fn report_of(track: &Track) -> TrackReport {
    TrackReport {
        participant_id: track.header.participant_id,
        name: track.header.name.clone(),
        codec: track.header.codec.clone(),
        skipped: track.stats.skipped,
        segments: track.stats.segments,
        sender_reports: track.stats.sender_reports,
        ..TrackReport::default()
    }
}

/// Writes `window` of the file [`finalize_opus_track`] makes of `journal` for a recording lasting
/// `recording_duration_us` (the window is cut to it): the same packets in the same places, its frame 0
/// at the window's start. The file starts up to one packet more than [`WINDOW_PREROLL`] before the
/// window, and its pre-skip drops that, so a decoder has converged by frame 0: the samples match the
/// whole file's to within that convergence (exactly where a gap of over 120 ms comes before, which a
/// reader decodes with a fresh decoder either way). The report counts what this file holds
/// (`first_packet_us` in session time); `duration_us` is the window's length.
pub fn finalize_opus_window(
    journal: &Path,
    out: &Path,
    recording_duration_us: u64,
    window: SessionWindow,
) -> Result<TrackReport> {
    finalize_opus_span(journal, out, recording_duration_us, window, WINDOW_PREROLL)
}

/// [`finalize_opus_window`] with `preroll` samples decoded before the window.
pub(crate) fn finalize_opus_span(
    journal: &Path,
    out: &Path,
    recording_duration_us: u64,
    window: SessionWindow,
    preroll: u64,
) -> Result<TrackReport> {
    let track = opus_track(journal)?;
    let header = &track.header;
    let total = samples_of_us(recording_duration_us);
    let (from, to) = window.samples_within(total);
    let pre_skip = u64::from(PRE_SKIP);
    // Stream positions (granules) of the whole file: `from` plays at `from + pre_skip`.
    let target = (from + pre_skip).saturating_sub(preroll);
    let stop = to + pre_skip;
    // A packet is placed at most half a gap step before its time: one later than this, and those
    // after it, play after the window.
    let after_window = |at: i64| at >= (stop + placement::GAP_STEP / 2) as i64;
    let mut packets = track.packets()?;
    let channels = packets
        .peek()
        .and_then(|p| p.payload.first())
        .map_or(1, |toc| opus_packet::channels(*toc));
    let mut report = report_of(&track);

    // Replay the whole file's placement (as OggOpusWriter::write_at does it) up to the first packet
    // that reaches past `target`, writing nothing.
    let mut pos = 0u64;
    let mut last_toc = None;
    let mut first = None;
    for packet in packets.by_ref() {
        let at = packet.session_sample();
        if at >= total as i64 || pos >= total {
            report.after_end += 1;
            continue;
        }
        let Some(&toc) = packet.payload.first() else {
            continue;
        };
        let samples = opus_packet::packet_samples(&packet.payload);
        if let Placement::At { gap } = placement::place(pos, at, samples) {
            if pos + gap + samples > target {
                first = Some((packet, gap, toc));
                break;
            }
            pos += gap + samples;
            last_toc = Some(toc);
        }
    }
    // Start at the empty frame or packet that holds `target`: the gap before the first packet (or
    // the padding to the end) is filled with these frames in the whole file. Whole frames of it are
    // multiples of 10 ms, so the placement from there (translation-invariant) gives the same gap rest.
    let (gap, toc) = match &first {
        Some((_, gap, toc)) => (*gap, *toc),
        None => (
            placement::pad_to(pos, total + pre_skip),
            last_toc.unwrap_or(0xf8),
        ),
    };
    let mut base = pos;
    for (_, samples) in empty_frames(gap, toc) {
        if base + samples > target {
            break;
        }
        base += samples;
    }
    let skip = u16::try_from(from + pre_skip - base).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a window's pre-roll does not fit a pre-skip",
        )
    })?;
    let mut comments = track_comments(header);
    comments.push(format!("PARLEY_WINDOW_START_US={}", us_of_samples(from)));
    let mut writer = OggOpusWriter::create_with_pre_skip(
        out,
        channels,
        stream_serial(header),
        "parley",
        &comments,
        skip,
    )?;
    // Writes a packet whose session sample is `at` into the file that begins at the whole's `base`.
    let write = |writer: &mut OggOpusWriter, report: &mut TrackReport, at: i64, payload: &[u8]| {
        let placed = writer.write_at(at - base as i64, payload)?;
        if placed && report.first_packet_us.is_none() {
            let start = writer.position() - opus_packet::packet_samples(payload);
            report.first_packet_us = Some(us_of_samples(base + start));
        }
        std::io::Result::Ok(())
    };
    // The first packet was checked against the whole file's end where that file stood before it.
    let first = first.filter(|(packet, _, _)| !after_window(packet.session_sample()));
    if let Some((packet, _, _)) = &first {
        write(
            &mut writer,
            &mut report,
            packet.session_sample(),
            &packet.payload,
        )?;
    }
    // The rest, unless the first already plays after the window.
    for packet in packets.by_ref().take_while(|_| first.is_some()) {
        let at = packet.session_sample();
        let whole_pos = base + writer.position();
        if whole_pos >= stop || after_window(at) {
            break;
        }
        if at >= total as i64 || whole_pos >= total {
            report.after_end += 1;
            continue;
        }
        write(&mut writer, &mut report, at, &packet.payload)?;
    }
    let stats = packets.stats.clone();
    report.journal_truncated = packets.truncated();
    report.packets = writer.packets;
    report.drift_dropped = writer.dropped;
    let (gaps, empty) = (writer.gaps, writer.empty_samples);
    let position = writer.position();
    let length = to - from;
    let plays = writer.finish_at(length)?;
    let tail = (length + u64::from(skip)).saturating_sub(position);
    report.gaps_filled = gaps + u64::from(tail > 0);
    report.filled_us = us_of_samples(empty + tail);
    report.duration_us = us_of_samples(plays);
    report.lost = stats.lost;
    report.duplicates = stats.duplicates;
    report.too_late = stats.too_late;
    report.bytes = std::fs::metadata(out)?.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::TrackMedia;
    use crate::testutil::*;

    /// Fake 20 ms CELT packets that carry their index, so the test can find each in the output.
    fn numbered(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| vec![0xf8, (i >> 8) as u8, i as u8, 0xaa])
            .collect()
    }

    /// Where each numbered packet starts in the file (samples after pre-skip), checking granules.
    fn positions(path: &Path) -> (Vec<(usize, u64)>, OggRead) {
        let ogg = read_ogg(path);
        let mut pos = 0;
        let mut found = Vec::new();
        let last = ogg.packets.len() - 1;
        for (k, (p, gp)) in ogg.packets.iter().enumerate() {
            if p.len() == 4 {
                found.push(((usize::from(p[1]) << 8) | usize::from(p[2]), pos));
            } else {
                assert_eq!(p.len(), 1, "an empty frame is its TOC alone");
            }
            pos += crate::opus_packet::packet_samples(p);
            if let (Some(gp), true) = (gp, k < last) {
                assert_eq!(
                    *gp, pos,
                    "a page's granule counts the samples decoded to its end"
                );
            }
        }
        assert!(ogg.ended);
        (found, ogg)
    }

    #[test]
    fn tracks_that_start_apart_last_as_long_as_the_recording_and_sit_at_their_time() {
        let d = tmpdir("opus-track");
        let duration_us = 20_000_000;
        // Ann from 0.5 s, talking 2 s then silent 1 s (DTX: no packets); Bob joins at 7.3 s with a clock
        // 100 ppm fast. Both see 10 ms of network delay plus up to 30 ms of jitter.
        let ann = opus_stream(&numbered(900), 500_000.0, 0.0, 1, |i| i % 150 < 100);
        let bob = opus_stream(&numbered(600), 7_300_000.0, 100e-6, 2, |_| true);
        let mut reports = Vec::new();
        for (name, sent, id) in [("ann", &ann, 1), ("bob", &bob, 2)] {
            let j = d.join(format!("{name}.journal"));
            write_journal(
                &j,
                &header(TrackMedia::Audio, "opus", id),
                sent,
                10_000.0,
                30_000.0,
                id,
                &[],
            );
            let out = d.join(format!("{name}.opus"));
            let report = finalize_opus_track(&j, &out, duration_us).unwrap();
            let (found, ogg) = positions(&out);
            assert_eq!(
                ogg.last_granule - pre_skip(&ogg.head),
                samples_of_us(duration_us),
                "{name}: the recording's length exactly"
            );
            assert_eq!(found.len(), sent.len(), "{name}: every packet, in order");
            assert!(found.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
            // Every packet within 20 ms of when it was sent (+10 ms of network).
            let send_times: std::collections::HashMap<usize, f64> = sent
                .iter()
                .map(|s| {
                    let p = crate::rtp::parse(&s.packet).unwrap();
                    (
                        (usize::from(p.payload[1]) << 8) | usize::from(p.payload[2]),
                        s.sent_us,
                    )
                })
                .collect();
            let worst = found
                .iter()
                .map(|(i, pos)| (us_of_samples(*pos) as f64 - send_times[i] - 10_000.0).abs())
                .fold(0.0, f64::max);
            assert!(
                worst <= 20_000.0,
                "{name}: worst placement error {worst} µs"
            );
            eprintln!("{name}: worst placement error {worst:.0} µs, {report:?}");
            assert_eq!(report.packets, sent.len() as u64);
            assert_eq!(report.duration_us, duration_us);
            assert_eq!(report.bytes, std::fs::metadata(&out).unwrap().len());
            reports.push(report);
        }
        let bob_start = reports[1].first_packet_us.unwrap() as f64;
        assert!(
            (bob_start - 7_310_000.0).abs() <= 20_000.0,
            "late joiner at {bob_start}"
        );
        assert!(
            reports[0].gaps_filled >= 6,
            "DTX silences are filled: {:?}",
            reports[0]
        );
        assert_eq!(reports[0].lost, 0, "DTX is not loss");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn ten_minutes_of_a_drifting_clock_stay_in_place() {
        let d = tmpdir("opus-drift");
        // 10 minutes from a sender 100 ppm fast (60 ms over the whole), talking 20 s then 2 s of DTX.
        let sent = opus_stream(&numbered(30_000), 0.0, 100e-6, 1, |i| i % 1_100 < 1_000);
        let j = d.join("t.journal");
        write_journal(
            &j,
            &header(TrackMedia::Audio, "opus", 1),
            &sent,
            10_000.0,
            30_000.0,
            9,
            &[],
        );
        let out = d.join("t.opus");
        let report = finalize_opus_track(&j, &out, 601_000_000).unwrap();
        let (found, ogg) = positions(&out);
        assert_eq!(
            ogg.last_granule - pre_skip(&ogg.head),
            samples_of_us(601_000_000)
        );
        let sent_at: std::collections::HashMap<usize, f64> = sent
            .iter()
            .map(|s| {
                let p = crate::rtp::parse(&s.packet).unwrap();
                (
                    (usize::from(p.payload[1]) << 8) | usize::from(p.payload[2]),
                    s.sent_us,
                )
            })
            .collect();
        // The numbers wrap at 65 536: fine, 30 000 packets.
        let worst = found
            .iter()
            .map(|(i, pos)| (us_of_samples(*pos) as f64 - sent_at[i] - 10_000.0).abs())
            .fold(0.0, f64::max);
        eprintln!("10 min at +100 ppm: worst placement error {worst:.0} µs, {report:?}");
        assert!(worst <= 15_000.0, "worst placement error {worst} µs");
        // DTX silences absorb the drift: few or no packets dropped for it.
        assert!(report.drift_dropped <= 3, "{report:?}");
        assert_eq!(found.len() as u64 + report.drift_dropped, sent.len() as u64);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn duplicates_and_reordering_are_undone() {
        let d = tmpdir("opus-dups");
        let mut sent = opus_stream(&numbered(300), 0.0, 0.0, 1, |_| true);
        // Every 10th packet twice; the jitter (up to 60 ms) reorders many.
        let dups: Vec<Sent> = sent
            .iter()
            .step_by(10)
            .map(|s| Sent {
                sent_us: s.sent_us + 5_000.0,
                packet: s.packet.clone(),
            })
            .collect();
        sent.extend(dups);
        // Retransmissions on their own payload type (RTX) and a record that is not RTP: skipped.
        for i in 0..5u16 {
            let packet = crate::rtp::build(97, false, i, 0, 99, &[0, 1, 0xf8, 1]);
            sent.push(Sent {
                sent_us: f64::from(i) * 100_000.0,
                packet,
            });
        }
        sent.push(Sent {
            sent_us: 50_000.0,
            packet: vec![0x12, 0x34],
        });
        let j = d.join("t.journal");
        write_journal(
            &j,
            &header(TrackMedia::Audio, "opus", 1),
            &sent,
            0.0,
            60_000.0,
            3,
            &[],
        );
        let out = d.join("t.opus");
        let report = finalize_opus_track(&j, &out, 6_000_000).unwrap();
        assert_eq!(report.packets, 300);
        assert_eq!(report.duplicates, 30);
        assert_eq!(report.skipped, 6);
        assert_eq!(report.lost, 0);
        let (found, _) = positions(&out);
        assert!(
            found.iter().enumerate().all(|(k, (i, _))| k == *i),
            "in order"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_journal_cut_mid_write_still_finalizes() {
        let d = tmpdir("opus-cut");
        let sent = opus_stream(&numbered(500), 1_000_000.0, 0.0, 1, |_| true);
        let j = d.join("t.journal");
        write_journal(
            &j,
            &header(TrackMedia::Audio, "opus", 1),
            &sent,
            5_000.0,
            10_000.0,
            4,
            &[],
        );
        let whole = std::fs::read(&j).unwrap();
        // An odd byte somewhere in the middle of a record.
        let cut = whole.len() * 2 / 3 + 7;
        std::fs::write(&j, &whole[..cut]).unwrap();
        let out = d.join("t.opus");
        let report = finalize_opus_track(&j, &out, 12_000_000).unwrap();
        assert!(report.journal_truncated);
        assert!(report.packets > 250 && report.packets < 500, "{report:?}");
        let (found, ogg) = positions(&out);
        assert_eq!(found.len() as u64, report.packets);
        assert_eq!(
            ogg.last_granule - pre_skip(&ogg.head),
            samples_of_us(12_000_000)
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn other_codecs_and_unreadable_journals_are_errors() {
        let d = tmpdir("opus-errors");
        let j = d.join("v.journal");
        write_journal(
            &j,
            &header(TrackMedia::Video, "vp8", 1),
            &[],
            0.0,
            0.0,
            1,
            &[],
        );
        assert!(matches!(
            finalize_opus_track(&j, &d.join("v.opus"), 1_000_000),
            Err(FinalizeError::WrongMedia { .. })
        ));
        let mut h = header(TrackMedia::Audio, "pcmu", 1);
        h.clock_rate = 8_000;
        let j = d.join("g711.journal");
        write_journal(&j, &h, &[], 0.0, 0.0, 1, &[]);
        assert!(matches!(
            finalize_opus_track(&j, &d.join("a.opus"), 1_000_000),
            Err(FinalizeError::UnsupportedCodec { .. })
        ));
        std::fs::write(d.join("junk.journal"), b"garbage").unwrap();
        assert!(matches!(
            finalize_opus_track(&d.join("junk.journal"), &d.join("j.opus"), 1_000_000),
            Err(FinalizeError::Io(_))
        ));
        // An empty track is a file of silence as long as the recording.
        let j = d.join("empty.journal");
        write_journal(
            &j,
            &header(TrackMedia::Audio, "opus", 1),
            &[],
            0.0,
            0.0,
            1,
            &[],
        );
        let r = finalize_opus_track(&j, &d.join("e.opus"), 1_000_000).unwrap();
        assert_eq!((r.packets, r.duration_us), (0, 1_000_000));
        let ogg = read_ogg(&d.join("e.opus"));
        assert_eq!(ogg.last_granule - pre_skip(&ogg.head), 48_000);
        assert_eq!(decode_ogg(&d.join("e.opus")).len(), 48_000, "plays as long");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
