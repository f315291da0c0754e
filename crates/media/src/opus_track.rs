//! One person's audio as an Ogg/Opus file: the packets exactly as they were sent (no re-encoding), placed
//! on the session clock, from the recording's start to its end, so that every per-person file of a
//! recording has the same length and they play in sync.

use std::path::Path;

use serde::Serialize;

use crate::error::{FinalizeError, Result};
use crate::journal::TrackMedia;
use crate::ogg_opus::OggOpusWriter;
use crate::opus_packet;
use crate::track::Track;
use crate::SAMPLE_RATE;

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
    let total = samples_of_us(recording_duration_us);
    let mut packets = track.packets()?;
    let channels = packets
        .peek()
        .and_then(|p| p.payload.first())
        .map_or(1, |toc| opus_packet::channels(*toc));
    let comments = vec![
        format!("TITLE={}", header.name),
        format!("ARTIST={}", header.name),
        format!("PARLEY_PARTICIPANT={}", header.participant_id),
        format!(
            "PARLEY_RECORDING_START_MS={}",
            header.recording_start_unix_ms
        ),
    ];
    // The serial only has to differ between streams of one file; the participant's id is stable.
    let serial = header.participant_id as u32 ^ 0x5041_524c;
    let mut writer = OggOpusWriter::create(out, channels, serial, "parley", &comments)?;
    let mut report = TrackReport {
        participant_id: header.participant_id,
        name: header.name.clone(),
        codec: header.codec.clone(),
        skipped: track.stats.skipped,
        segments: track.stats.segments,
        sender_reports: track.stats.sender_reports,
        ..TrackReport::default()
    };
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
