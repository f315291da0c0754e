//! A recording's files made from journals of whatever a client sent: the input is a list of packets
//! (RTP headers and payloads as a publisher's browser could send them, with arrival times and sender
//! reports) written to one person's video journal (H.264 or VP8, from the first byte) and audio
//! journal (Opus), exactly as the server's recorder writes them; then both are finalized, as at Stop:
//! the person's Ogg/Opus track, their video (Matroska or WebM) and the denoised mix.
//!
//! Besides never panicking: every finalizer either makes its file or returns a typed error.

#![no_main]

use std::path::PathBuf;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use parley_media::journal::{JournalWriter, TrackHeader, TrackMedia};
use parley_media::{finalize_opus_track, finalize_video, mix_tracks_with, MixOutputs, MixSettings};

/// Where this process writes its journals and files (memory-backed when there is /dev/shm).
fn scratch() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("parley-fuzz-recording-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn header(media: TrackMedia, codec: &str, clock_rate: u32, payload_type: u8) -> TrackHeader {
    TrackHeader {
        media,
        codec: codec.into(),
        clock_rate,
        payload_type,
        participant_id: 7,
        name: "Fuzz".into(),
        recording_start_unix_ms: 0,
        track_start_us: 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    let (codec, video_pt) = if first & 1 == 0 {
        ("h264", 102)
    } else {
        ("vp8", 96)
    };
    let video_path = dir.join("video.journal");
    let audio_path = dir.join("audio.journal");
    // Journals are created new (as the recorder does): the last input's go first.
    for old in [&video_path, &audio_path] {
        let _ = std::fs::remove_file(old);
    }
    let now = Instant::now();
    let mut video = JournalWriter::create(
        &video_path,
        &header(TrackMedia::Video, codec, 90_000, video_pt),
    )
    .expect("video journal");
    let mut audio =
        JournalWriter::create(&audio_path, &header(TrackMedia::Audio, "opus", 48_000, 111))
            .expect("audio journal");
    // Records: [flags][arrival delta ms][length][packet bytes]; flags bit 0: audio, bit 1: a sender
    // report instead (its 12 bytes: NTP and RTP time).
    let mut arrival_us = 0u64;
    while rest.len() >= 3 {
        let (flags, delta, len) = (rest[0], rest[1], usize::from(rest[2]));
        rest = &rest[3..];
        let body = &rest[..len.min(rest.len())];
        rest = &rest[body.len()..];
        arrival_us += u64::from(delta) * 1_000;
        let writer = if flags & 1 == 1 {
            &mut audio
        } else {
            &mut video
        };
        if flags & 2 == 2 {
            if body.len() >= 12 {
                let ntp = u64::from_be_bytes(body[..8].try_into().unwrap_or_default());
                let rtp = u32::from_be_bytes(body[8..12].try_into().unwrap_or_default());
                writer
                    .append_sender_report(arrival_us, ntp, rtp, now)
                    .expect("append");
            }
        } else {
            writer.append(arrival_us, body, now).expect("append");
        }
    }
    video.finish().expect("finish");
    audio.finish().expect("finish");
    // Recordings of up to 10 s (arrival times say how long this one ran).
    let duration_us = arrival_us.min(10_000_000) + 20_000;
    let _ = finalize_opus_track(&audio_path, &dir.join("p7-audio.ogg"), duration_us);
    let _ = finalize_video(
        &video_path,
        Some(&audio_path),
        &dir.join("p7.video"),
        duration_us,
    );
    let settings = MixSettings {
        threads: 1,
        ..MixSettings::default()
    };
    let outputs = MixOutputs {
        ogg: Some(&dir.join("mix.ogg")),
        wav: None,
        flac: None,
    };
    let _ = mix_tracks_with(
        &[audio_path.as_path()],
        outputs,
        duration_us.min(1_000_000),
        &settings,
    );
});
