//! One person's VP8 video, with their voice, as WebM: VP8 frames put back together from RTP and the
//! Opus packets as sent, muxed with libwebm (the `webm` crate), nothing re-encoded. Timestamps are
//! session time, so the file lines up with the recording's other files; it starts at the first keyframe
//! (a decoder cannot start before one) and its Duration is the recording's. The video is placed on the
//! audio's clock through sender reports where both have them (lip sync as sent), else by arrival; all of
//! that is shared with the Matroska muxer ([`crate::av_mux`]).
//!
//! H.264 (RFC 6184) goes into Matroska instead ([`crate::mkv_mux`]): WebM does not carry it, and the
//! `webm` crate muxes only VP8, VP9 and AV1. [`finalize_webm`] refuses it with
//! [`FinalizeError::UnsupportedCodec`]; [`crate::finalize_video`] picks the container by codec.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use webm::mux::{
    AudioCodecId, AudioTrack, Segment, SegmentBuilder, SegmentMode, VideoCodecId, VideoTrack,
    Writer,
};

use crate::av_mux::{find_start, interleave, Frames, Inputs, PlacedAudio, Sink, VideoFrame};
use crate::error::{FinalizeError, Result};
use crate::ogg_opus::{opus_head, PRE_SKIP};
use crate::vp8::{keyframe_size, Vp8Depacketizer};
use crate::SAMPLE_RATE;

/// The report of [`finalize_webm`]: a [`crate::VideoReport`] with `format` `"webm"`.
pub type WebmReport = crate::av_mux::VideoReport;

fn webm_error(e: webm::mux::Error) -> FinalizeError {
    FinalizeError::Webm(e.to_string())
}

/// Muxes the VP8 track in `video_journal` and, if given, the Opus track in `audio_journal` (the same
/// person's) into a WebM file at `out`, for a recording lasting `duration_us`.
pub fn finalize_webm(
    video_journal: &Path,
    audio_journal: Option<&Path>,
    out: &Path,
    duration_us: u64,
) -> Result<WebmReport> {
    write_webm(
        Inputs::open(video_journal, audio_journal)?,
        out,
        duration_us,
    )
}

/// libwebm's segment and its tracks.
struct WebmSink {
    segment: Segment<BufWriter<File>>,
    video: VideoTrack,
    audio: Option<AudioTrack>,
}

impl Sink for WebmSink {
    fn video(&mut self, frame: &VideoFrame, ns: u64) -> Result<()> {
        self.segment
            .add_frame(self.video, &frame.data, ns, frame.keyframe)
            .map_err(webm_error)
    }

    fn audio(&mut self, packet: &[u8], ns: u64) -> Result<()> {
        match self.audio {
            Some(track) => self
                .segment
                .add_frame(track, packet, ns, true)
                .map_err(webm_error),
            None => Ok(()),
        }
    }
}

pub(crate) fn write_webm(inputs: Inputs, out: &Path, duration_us: u64) -> Result<WebmReport> {
    inputs.expect_codec("vp8")?;
    let Inputs {
        video,
        audio,
        mut report,
    } = inputs;
    report.format = "webm".into();
    report.duration_us = duration_us;
    let (start_us, (width, height)) = find_start(
        &video,
        Vp8Depacketizer::new(),
        duration_us,
        FinalizeError::NoKeyframe,
        |f| keyframe_size(&f.data),
    )?;
    report.first_keyframe_us = start_us.max(0.0) as u64;
    report.width = width;
    report.height = height;

    let file = BufWriter::new(File::create(out)?);
    let builder = SegmentBuilder::new(Writer::new(file))
        .and_then(|b| b.set_mode(SegmentMode::File))
        .and_then(|b| b.set_writing_app("parley"))
        .map_err(webm_error)?;
    let (mut builder, video_track) = builder
        .add_video_track(u32::from(width), u32::from(height), VideoCodecId::VP8, None)
        .map_err(webm_error)?;
    let mut placed = None;
    let mut audio_track = None;
    if let Some(a) = &audio {
        let (packets, channels) = PlacedAudio::open(a)?;
        let (b, t) = builder
            .add_audio_track(SAMPLE_RATE, u32::from(channels), AudioCodecId::Opus, None)
            .map_err(webm_error)?;
        builder = b
            .set_codec_private(t, &opus_head(channels, PRE_SKIP, SAMPLE_RATE))
            .map_err(webm_error)?;
        audio_track = Some(t);
        placed = Some(packets);
    }
    let mut sink = WebmSink {
        segment: builder.build(),
        video: video_track,
        audio: audio_track,
    };
    let frames = Frames::new(&video, Vp8Depacketizer::new())?;
    interleave(
        frames,
        placed,
        start_us,
        duration_us,
        &mut report,
        &mut sink,
        |f| keyframe_size(&f.data),
    )?;
    sink.segment
        .finalize(Some(duration_us / 1_000))
        .map_err(|_| FinalizeError::Webm("libwebm could not finalize the segment".into()))?;
    report.bytes = std::fs::metadata(out)?.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::TrackMedia;
    use crate::testutil::ebml::*;
    use crate::testutil::*;
    use crate::vp8::tests::{frame, packetize};

    const NTP_BASE: f64 = 3_900_000_000.0;

    fn ntp(t_us: f64) -> u64 {
        let s = NTP_BASE + t_us / 1e6;
        ((s.floor() as u64) << 32) | ((s.fract() * 4_294_967_296.0) as u64)
    }

    #[test]
    fn vp8_and_opus_mux_into_webm_on_the_audio_clock() {
        let d = tmpdir("webm");
        // Video: 30 fps for 6 s, three packets a frame; inter frames until the keyframe at 0.5 s, another
        // at 4 s; frame 60 loses a packet. It arrives 60 ms later than the audio (a slower encoder).
        let mut video = Vec::new();
        let mut seq = 0u16;
        for i in 0..180u32 {
            let key = i == 15 || i == 120;
            let data = frame(key, 640, 360, 3_000, i as u8);
            let parts = packetize(&data, 3, i as u16);
            let t = f64::from(i) * 1e6 / 30.0;
            for (k, p) in parts.iter().enumerate() {
                let packet = crate::rtp::build(96, k == 2, seq, 1_000 + i * 3_000, 7, p);
                seq = seq.wrapping_add(1);
                if i == 60 && k == 1 {
                    continue;
                }
                video.push(Sent {
                    sent_us: t + k as f64 * 200.0,
                    packet,
                });
            }
        }
        let video_reports: Vec<(u64, u64, u32)> = (0..6)
            .map(|s| {
                let t = f64::from(s) * 1e6;
                ((t + 70_000.0) as u64, ntp(t), 1_000 + s * 90_000)
            })
            .collect();
        let vj = d.join("v.journal");
        write_journal(
            &vj,
            &header(TrackMedia::Video, "vp8", 5),
            &video,
            70_000.0,
            10_000.0,
            1,
            &video_reports,
        );
        // Audio: fake 20 ms packets from 0.2 s, the same sender's wall clock in its reports.
        let payloads: Vec<Vec<u8>> = (0..290).map(|i| vec![0xf8, i as u8, 0xaa]).collect();
        let audio = opus_stream(&payloads, 200_000.0, 0.0, 8, |_| true);
        let audio_reports: Vec<(u64, u64, u32)> = (1..6)
            .map(|s| {
                let t = f64::from(s) * 1e6;
                // The stream's timestamp 0xfff00000 was sent at 0.2 s.
                let rtp = (0xfff0_0000u64 + ((t - 200_000.0) * 0.048) as u64) as u32;
                ((t + 10_000.0) as u64, ntp(t), rtp)
            })
            .collect();
        let aj = d.join("a.journal");
        write_journal(
            &aj,
            &header(TrackMedia::Audio, "opus", 5),
            &audio,
            10_000.0,
            5_000.0,
            2,
            &audio_reports,
        );

        let out = d.join("p.webm");
        let report = finalize_webm(&vj, Some(&aj), &out, 8_000_000).unwrap();
        eprintln!("{report:?}");
        assert_eq!(report.lip_sync, "sender_reports");
        assert_eq!(
            (report.format.as_str(), report.codec.as_str()),
            ("webm", "vp8")
        );
        assert_eq!((report.width, report.height), (640, 360));
        assert_eq!(report.frames_before_keyframe, 15);
        assert_eq!(report.incomplete_frames, 1);
        assert_eq!(report.video_frames, 164);
        assert_eq!(report.keyframes, 2);
        // On the audio's clock: 500 ms plus the audio's 10 ms of network, not the video's 70.
        let first = report.first_keyframe_us as f64;
        assert!(
            (first - 510_000.0).abs() < 5_000.0,
            "first keyframe at {first} µs"
        );

        let b = std::fs::read(&out).unwrap();
        assert_eq!(report.bytes, b.len() as u64);
        let top = elements(&b);
        assert_eq!(top[0].0, 0x1A45_DFA3, "EBML header");
        assert_eq!(child(top[0].1, 0x4282), Some(&b"webm"[..]), "DocType");
        assert_eq!(top[1].0, 0x1853_8067, "Segment");
        let segment = top[1].1;
        let info = child(segment, 0x1549_A966).unwrap();
        let scale = child(info, 0x2AD7B1).map_or(1_000_000, uint);
        let duration = child(info, 0x4489).unwrap();
        let duration = match duration.len() {
            4 => f64::from(f32::from_be_bytes(duration.try_into().unwrap())),
            _ => f64::from_be_bytes(duration.try_into().unwrap()),
        };
        assert!(
            (duration * scale as f64 / 1e6 - 8_000.0).abs() < 1.0,
            "Duration {duration}"
        );
        let tracks: Vec<_> = elements(child(segment, 0x1654_AE6B).unwrap())
            .into_iter()
            .filter(|e| e.0 == 0xAE)
            .map(|e| e.1)
            .collect();
        assert_eq!(tracks.len(), 2);
        let codec = |t: &[u8]| child(t, 0x86).map(|c| String::from_utf8_lossy(c).to_string());
        let vtrack = tracks
            .iter()
            .find(|t| codec(t).as_deref() == Some("V_VP8"))
            .unwrap();
        let atrack = tracks
            .iter()
            .find(|t| codec(t).as_deref() == Some("A_OPUS"))
            .unwrap();
        let v = child(vtrack, 0xE0).unwrap();
        assert_eq!(
            (child(v, 0xB0).map(uint), child(v, 0xBA).map(uint)),
            (Some(640), Some(360))
        );
        assert_eq!(&child(atrack, 0x63A2).unwrap()[..8], b"OpusHead");
        let (vnum, anum) = (
            uint(child(vtrack, 0xD7).unwrap()),
            uint(child(atrack, 0xD7).unwrap()),
        );

        let mut blocks: Vec<(u64, u64, bool, usize)> = Vec::new();
        for (id, cluster) in elements(segment) {
            if id != 0x1F43_B675 {
                continue;
            }
            let base = child(cluster, 0xE7).map_or(0, uint);
            for (id, block) in elements(cluster) {
                if id == 0xA3 {
                    let (track, n) = vint(block, 0, false);
                    let rel = i16::from_be_bytes([block[n], block[n + 1]]);
                    let t = (base as i64 + i64::from(rel)) as u64 * scale / 1_000;
                    blocks.push((track, t, block[n + 2] & 0x80 != 0, block.len() - n - 3));
                }
            }
        }
        let vblocks: Vec<_> = blocks.iter().filter(|b| b.0 == vnum).collect();
        let ablocks: Vec<_> = blocks.iter().filter(|b| b.0 == anum).collect();
        assert_eq!(vblocks.len() as u64, report.video_frames);
        assert_eq!(
            ablocks.len() as u64,
            report.audio_packets + report.audio_empty_frames
        );
        assert!(vblocks[0].2, "the first video block is a keyframe");
        assert_eq!(vblocks.iter().filter(|b| b.2).count(), 2);
        assert_eq!(
            vblocks[0].3, 3_010,
            "a keyframe's bytes, descriptors stripped"
        );
        assert!(
            blocks.windows(2).all(|w| w[0].1 <= w[1].1),
            "timestamps never go back"
        );
        assert!(
            ablocks[0].1 >= vblocks[0].1,
            "audio from the first keyframe on"
        );
        // Audio blocks every 20 ms.
        assert!(ablocks.windows(2).all(|w| w[1].1 - w[0].1 == 20_000));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn h264_and_keyframeless_video_are_typed_errors() {
        let d = tmpdir("webm-errors");
        let j = d.join("h264.journal");
        write_journal(
            &j,
            &header(TrackMedia::Video, "h264", 1),
            &[],
            0.0,
            0.0,
            1,
            &[],
        );
        let err = finalize_webm(&j, None, &d.join("x.webm"), 1_000_000).unwrap_err();
        assert!(matches!(err, FinalizeError::UnsupportedCodec { ref codec } if codec == "h264"));
        let inter: Vec<Sent> = (0..30u32)
            .map(|i| Sent {
                sent_us: f64::from(i) * 33_000.0,
                packet: crate::rtp::build(
                    96,
                    true,
                    i as u16,
                    i * 3_000,
                    1,
                    &packetize(&frame(false, 0, 0, 50, 1), 1, 0)[0],
                ),
            })
            .collect();
        let j = d.join("inter.journal");
        write_journal(
            &j,
            &header(TrackMedia::Video, "vp8", 1),
            &inter,
            0.0,
            0.0,
            1,
            &[],
        );
        assert!(matches!(
            finalize_webm(&j, None, &d.join("y.webm"), 1_000_000),
            Err(FinalizeError::NoKeyframe)
        ));
        let a = d.join("a.journal");
        write_journal(
            &a,
            &header(TrackMedia::Audio, "opus", 1),
            &[],
            0.0,
            0.0,
            1,
            &[],
        );
        assert!(matches!(
            finalize_webm(&a, None, &d.join("z.webm"), 1_000_000),
            Err(FinalizeError::WrongMedia { .. })
        ));
        // Video alone, cut mid-write: a shorter valid file.
        let video: Vec<Sent> = (0..60u32)
            .map(|i| Sent {
                sent_us: f64::from(i) * 33_333.0,
                packet: crate::rtp::build(
                    96,
                    true,
                    i as u16,
                    i * 3_000,
                    1,
                    &packetize(&frame(i % 30 == 0, 320, 240, 500, 1), 1, 0)[0],
                ),
            })
            .collect();
        let j = d.join("cut.journal");
        write_journal(
            &j,
            &header(TrackMedia::Video, "vp8", 1),
            &video,
            0.0,
            0.0,
            1,
            &[],
        );
        let whole = std::fs::read(&j).unwrap();
        std::fs::write(&j, &whole[..whole.len() * 3 / 4 + 1]).unwrap();
        let r = finalize_webm(&j, None, &d.join("cut.webm"), 2_000_000).unwrap();
        assert!(r.video_frames > 30 && r.video_frames < 60, "{r:?}");
        assert_eq!(r.lip_sync, "arrival");
        assert_eq!(
            &std::fs::read(d.join("cut.webm")).unwrap()[..4],
            &[0x1A, 0x45, 0xDF, 0xA3]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}

/// Writes real files for a person to look at (`ffprobe`, a player): set `PARLEY_IVF` to a VP8 IVF file
/// (`ffmpeg -f lavfi -i testsrc=size=320x240:rate=30 -t 6 -c:v libvpx -g 60 t.ivf`) and
/// `PARLEY_OUT` to a folder.
#[cfg(test)]
mod inspect {
    use super::*;
    use crate::journal::TrackMedia;
    use crate::testutil::*;
    use crate::vp8::tests::packetize;

    #[test]
    #[ignore = "writes files for inspection: PARLEY_IVF=... PARLEY_OUT=... cargo test -- --ignored inspect"]
    fn write_files_for_inspection() {
        let (Ok(ivf), Ok(out)) = (std::env::var("PARLEY_IVF"), std::env::var("PARLEY_OUT")) else {
            return;
        };
        let out = std::path::PathBuf::from(out);
        let ivf = std::fs::read(ivf).unwrap();
        let mut at = 32;
        let mut video = Vec::new();
        let mut seq = 0u16;
        let mut i = 0u32;
        while at + 12 <= ivf.len() {
            let size = u32::from_le_bytes(ivf[at..at + 4].try_into().unwrap()) as usize;
            let frame = &ivf[at + 12..at + 12 + size];
            at += 12 + size;
            let parts = packetize(frame, frame.len().div_ceil(1_100), i as u16);
            let n = parts.len();
            for (k, p) in parts.into_iter().enumerate() {
                let packet = crate::rtp::build(96, k + 1 == n, seq, i * 3_000, 7, &p);
                seq = seq.wrapping_add(1);
                video.push(Sent {
                    sent_us: 300_000.0 + f64::from(i) * 1e6 / 30.0,
                    packet,
                });
            }
            i += 1;
        }
        let vj = out.join("v.journal");
        let aj = out.join("a.journal");
        let bj = out.join("b.journal");
        for p in [&vj, &aj, &bj] {
            let _ = std::fs::remove_file(p);
        }
        write_journal(
            &vj,
            &header(TrackMedia::Video, "vp8", 1),
            &video,
            30_000.0,
            20_000.0,
            1,
            &[],
        );
        let (voice_a, _) = voice(140.0, 6.0);
        let a = opus_stream(&opus_packets(&voice_a, 32_000), 0.0, 0.0, 1, |i| {
            i % 100 < 80
        });
        write_journal(
            &aj,
            &header(TrackMedia::Audio, "opus", 1),
            &a,
            10_000.0,
            20_000.0,
            2,
            &[],
        );
        let b = opus_stream(
            &opus_packets(&tone(660.0, 0.3, 4.0), 32_000),
            2_500_000.0,
            0.0,
            2,
            |_| true,
        );
        write_journal(
            &bj,
            &header(TrackMedia::Audio, "opus", 2),
            &b,
            10_000.0,
            20_000.0,
            3,
            &[],
        );
        let duration = 7_000_000;
        eprintln!(
            "{:?}",
            finalize_webm(&vj, Some(&aj), &out.join("p1.webm"), duration).unwrap()
        );
        eprintln!(
            "{:?}",
            crate::finalize_opus_track(&aj, &out.join("p1.opus"), duration).unwrap()
        );
        eprintln!(
            "{:?}",
            crate::finalize_opus_track(&bj, &out.join("p2.opus"), duration).unwrap()
        );
        let (ogg, wav, flac) = (
            out.join("mix.opus"),
            out.join("mix.wav"),
            out.join("mix.flac"),
        );
        let outputs = crate::MixOutputs {
            ogg: Some(&ogg),
            wav: Some(&wav),
            flac: Some(&flac),
        };
        eprintln!(
            "{:?}",
            crate::mix_tracks(&[&aj, &bj], outputs, duration).unwrap()
        );
    }
}
