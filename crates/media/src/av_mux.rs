//! One person's video file with their voice, whatever the codec and container: VP8 goes into WebM
//! ([`crate::webm_mux`], libwebm), H.264 into Matroska ([`crate::mkv_mux`]; WebM cannot carry it).
//! [`finalize_video`] picks by the journal's codec; [`VideoFormat::for_codec`] tells the caller the
//! file's extension before it is written.
//!
//! What both share lives here, once: reading the journals and checking them, lip sync, the first
//! keyframe (where a file starts), the Opus packets placed on the session's sample grid, and the loop
//! that interleaves video frames and audio packets in time order on the session clock, keeps what lies
//! between the first keyframe and the recording's end, and counts what it leaves out. A muxer only
//! says how to write a frame and a packet (a `Sink`).

use std::collections::VecDeque;
use std::path::Path;

use serde::Serialize;

use crate::error::{FinalizeError, Result};
use crate::journal::TrackMedia;
use crate::opus_packet::{self, empty_frames, packet_samples};
use crate::opus_track::samples_of_us;
use crate::placement::{self, Placement};
use crate::track::{Track, TrackPacket, TrackPackets};
use crate::SAMPLE_RATE;

/// One whole video frame (VP8) or access unit (H.264) on the session clock.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    pub session_us: f64,
    pub ts: i64,
    pub keyframe: bool,
    /// The codec's bytes as the container stores them (VP8 as is, H.264 length-prefixed NAL units).
    pub data: Vec<u8>,
}

/// What a depacketizer counted besides the frames it gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerCounts {
    /// Frames dropped because a packet of theirs was missing (or their start, or their end).
    pub incomplete: u64,
    /// Packets that could not be read (or of a kind that is not handled).
    pub malformed: u64,
    /// Whole frames dropped after a loss while waiting for the next keyframe (they refer to what was
    /// lost).
    pub after_loss: u64,
}

/// Puts a track's frames back together from its RTP packets, in order ([`crate::vp8`],
/// [`crate::h264`]).
pub trait Depacketizer {
    /// Takes the next packet; returns a frame when one is complete.
    fn push(&mut self, p: &TrackPacket) -> Option<VideoFrame>;
    /// The track ended: a frame still held is given, one a call, until `None` (an unfinished one is
    /// counted incomplete).
    fn finish(&mut self) -> Option<VideoFrame>;
    fn counts(&self) -> DepacketizerCounts;
}

/// The container a video codec's file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoFormat {
    /// VP8 and Opus in WebM (DocType `webm`).
    Webm,
    /// H.264 and Opus in Matroska (DocType `matroska`).
    Mkv,
}

impl VideoFormat {
    /// The container for a journal's codec (`vp8`, `h264`, as in SDP, any case); `None` for a codec
    /// [`finalize_video`] does not handle.
    pub fn for_codec(codec: &str) -> Option<VideoFormat> {
        if codec.eq_ignore_ascii_case("vp8") {
            Some(VideoFormat::Webm)
        } else if codec.eq_ignore_ascii_case("h264") {
            Some(VideoFormat::Mkv)
        } else {
            None
        }
    }

    /// The file's extension and the report's `format`: `"webm"` or `"mkv"`.
    pub fn extension(self) -> &'static str {
        match self {
            VideoFormat::Webm => "webm",
            VideoFormat::Mkv => "mkv",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VideoReport {
    /// The container written: `"webm"` (VP8) or `"mkv"` (H.264); also the file's extension.
    pub format: String,
    /// The video's codec as in the journal (`vp8`, `h264`).
    pub codec: String,
    pub participant_id: u64,
    pub name: String,
    pub width: u16,
    pub height: u16,
    /// Session time of the first keyframe: where the file starts.
    pub first_keyframe_us: u64,
    pub duration_us: u64,
    pub video_frames: u64,
    pub keyframes: u64,
    /// Frames dropped for a missing packet, before the first keyframe, or after the end.
    pub incomplete_frames: u64,
    pub frames_before_keyframe: u64,
    pub frames_after_end: u64,
    /// Frames dropped after a loss until the next keyframe (H.264: they refer to what was lost).
    pub frames_after_loss: u64,
    /// Keyframes whose size differs from the first one's (VP8 and H.264 change size in-band).
    pub size_changes: u64,
    pub video_lost: u64,
    /// Journal records that were not RTP of the video track's payload type (RTX, FEC).
    pub video_skipped: u64,
    /// Video packets whose payload could not be read, or of a kind not handled.
    pub video_malformed: u64,
    pub audio_packets: u64,
    /// Empty Opus frames written for DTX and gaps.
    pub audio_empty_frames: u64,
    /// "sender_reports": the video sits on the audio's clock through RTCP; "arrival": each track's own.
    pub lip_sync: String,
    pub bytes: u64,
}

/// Muxes the video track in `video_journal` and, if given, the Opus track in `audio_journal` (the same
/// person's) into one file at `out`, for a recording lasting `duration_us`: VP8 as WebM, H.264 as
/// Matroska. The caller names the file from [`VideoFormat::for_codec`]; the report's `format` says which
/// was written.
pub fn finalize_video(
    video_journal: &Path,
    audio_journal: Option<&Path>,
    out: &Path,
    duration_us: u64,
) -> Result<VideoReport> {
    let inputs = Inputs::open(video_journal, audio_journal)?;
    match VideoFormat::for_codec(&inputs.video.header.codec) {
        Some(VideoFormat::Webm) => crate::webm_mux::write_webm(inputs, out, duration_us),
        Some(VideoFormat::Mkv) => crate::mkv_mux::write_mkv(inputs, out, duration_us),
        None => Err(FinalizeError::UnsupportedCodec {
            codec: inputs.video.header.codec.clone(),
        }),
    }
}

/// A person's journals, scanned and checked, with the report begun.
pub(crate) struct Inputs {
    pub video: Track,
    pub audio: Option<Track>,
    pub report: VideoReport,
}

impl Inputs {
    /// Scans both journals: the video one must hold video, the audio one Opus. With sender reports on
    /// both the video is put on the audio's clock.
    pub fn open(video_journal: &Path, audio_journal: Option<&Path>) -> Result<Inputs> {
        let mut video = Track::scan(video_journal)?;
        if video.header.media != TrackMedia::Video {
            return Err(FinalizeError::WrongMedia { expected: "video" });
        }
        let audio = audio_journal.map(Track::scan).transpose()?;
        if let Some(a) = &audio {
            if a.header.media != TrackMedia::Audio {
                return Err(FinalizeError::WrongMedia { expected: "audio" });
            }
            if !a.header.codec.eq_ignore_ascii_case("opus") {
                return Err(FinalizeError::UnsupportedCodec {
                    codec: a.header.codec.clone(),
                });
            }
        }
        let mut report = VideoReport {
            codec: video.header.codec.to_ascii_lowercase(),
            video_skipped: video.stats.skipped,
            participant_id: video.header.participant_id,
            name: video.header.name.clone(),
            lip_sync: "arrival".into(),
            ..VideoReport::default()
        };
        if let Some(a) = &audio {
            if video.clock.sync_to(&a.clock) {
                report.lip_sync = "sender_reports".into();
            }
        }
        Ok(Inputs {
            video,
            audio,
            report,
        })
    }

    /// Refuses a video codec other than `codec`.
    pub fn expect_codec(&self, codec: &str) -> Result<()> {
        if self.video.header.codec.eq_ignore_ascii_case(codec) {
            Ok(())
        } else {
            Err(FinalizeError::UnsupportedCodec {
                codec: self.video.header.codec.clone(),
            })
        }
    }
}

/// A track's video frames, in order.
pub(crate) struct Frames<D> {
    packets: TrackPackets,
    depacketizer: D,
}

impl<D: Depacketizer> Frames<D> {
    pub fn new(track: &Track, depacketizer: D) -> Result<Frames<D>> {
        Ok(Frames {
            packets: track.packets()?,
            depacketizer,
        })
    }
}

impl<D: Depacketizer> Iterator for Frames<D> {
    type Item = VideoFrame;

    fn next(&mut self) -> Option<VideoFrame> {
        loop {
            let Some(p) = self.packets.next() else {
                return self.depacketizer.finish();
            };
            if let Some(frame) = self.depacketizer.push(&p) {
                return Some(frame);
            }
        }
    }
}

/// First pass over the video: the session time of the first keyframe that `probe` can read (a VP8
/// keyframe's size, an H.264 one's parameter sets) and what it read. No keyframe at all, or only after
/// the recording's end, is [`FinalizeError::NoKeyframe`]; keyframes that `probe` cannot read are
/// `unreadable`.
pub(crate) fn find_start<D: Depacketizer, T>(
    video: &Track,
    depacketizer: D,
    duration_us: u64,
    unreadable: FinalizeError,
    mut probe: impl FnMut(&VideoFrame) -> Option<T>,
) -> Result<(f64, T)> {
    let mut keyframes = 0u64;
    let found = Frames::new(video, depacketizer)?
        .filter(|f| f.keyframe)
        .find_map(|f| {
            keyframes += 1;
            probe(&f).map(|t| (f.session_us, t))
        });
    let Some((start_us, info)) = found else {
        return Err(if keyframes == 0 {
            FinalizeError::NoKeyframe
        } else {
            unreadable
        });
    };
    if samples_of_us(start_us.max(0.0) as u64) >= samples_of_us(duration_us) {
        // The first keyframe came after the recording's end: nothing to write.
        return Err(FinalizeError::NoKeyframe);
    }
    Ok((start_us, info))
}

/// A track's Opus packets placed on the session's sample grid, gaps filled with empty frames, as
/// `(sample position, packet, is it an empty frame)`.
pub(crate) struct PlacedAudio {
    packets: TrackPackets,
    pos: u64,
    queue: VecDeque<(u64, Vec<u8>, bool)>,
}

impl PlacedAudio {
    /// The track's packets to place, and its channel count (from the first packet's TOC; mono if none).
    pub fn open(track: &Track) -> Result<(PlacedAudio, u8)> {
        let mut packets = track.packets()?;
        let channels = packets
            .peek()
            .and_then(|p| p.payload.first())
            .map_or(1, |toc| opus_packet::channels(*toc));
        let placed = PlacedAudio {
            packets,
            pos: 0,
            queue: VecDeque::new(),
        };
        Ok((placed, channels))
    }
}

impl Iterator for PlacedAudio {
    type Item = (u64, Vec<u8>, bool);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(f) = self.queue.pop_front() {
                return Some(f);
            }
            let p = self.packets.next()?;
            let samples = packet_samples(&p.payload);
            if let Placement::At { gap } = placement::place(self.pos, p.session_sample(), samples) {
                for (toc, n) in empty_frames(gap, p.payload[0]) {
                    self.queue.push_back((self.pos, vec![toc], true));
                    self.pos += n;
                }
                self.queue.push_back((self.pos, p.payload, false));
                self.pos += samples;
            }
        }
    }
}

pub(crate) fn ns_of_us(us: f64) -> u64 {
    (us.max(0.0) * 1_000.0).round() as u64
}

pub(crate) fn ns_of_samples(samples: u64) -> u64 {
    (u128::from(samples) * 1_000_000_000 / u128::from(SAMPLE_RATE)) as u64
}

/// Where the interleaved frames and packets go: a container's writer. Timestamps are session time in
/// ns and never go back, across tracks.
pub(crate) trait Sink {
    fn video(&mut self, frame: &VideoFrame, ns: u64) -> Result<()>;
    fn audio(&mut self, packet: &[u8], ns: u64) -> Result<()>;
}

/// Second pass: gives `sink` the video frames and audio packets in time order, from the first keyframe
/// at or after `start_us` to the recording's end (`duration_us`), and fills the report's counts.
/// `size` reads a keyframe's width and height (to count size changes against the report's).
pub(crate) fn interleave<D: Depacketizer>(
    mut frames: Frames<D>,
    mut audio: Option<PlacedAudio>,
    start_us: f64,
    duration_us: u64,
    report: &mut VideoReport,
    sink: &mut impl Sink,
    mut size: impl FnMut(&VideoFrame) -> Option<(u16, u16)>,
) -> Result<()> {
    let start_ns = ns_of_us(start_us);
    let end_ns = ns_of_samples(samples_of_us(duration_us));
    let mut next_video = frames.next();
    let mut next_audio = audio.as_mut().and_then(|a| a.next());
    let mut started = false;
    // Muxers want timestamps that never go back, across tracks.
    let mut last_ns = 0;
    loop {
        let take_video = match (&next_video, &next_audio) {
            (None, None) => break,
            (Some(v), Some(a)) => ns_of_us(v.session_us) <= ns_of_samples(a.0),
            (Some(_), None) => true,
            (None, Some(_)) => false,
        };
        if take_video {
            let Some(f) = next_video.take() else { break };
            next_video = frames.next();
            let ns = ns_of_us(f.session_us);
            let starts = f.keyframe && ns >= start_ns;
            if !(started || starts) {
                report.frames_before_keyframe += 1;
                continue;
            }
            if ns >= end_ns {
                report.frames_after_end += 1;
                continue;
            }
            started = true;
            if f.keyframe {
                report.keyframes += 1;
                if size(&f).is_some_and(|s| s != (report.width, report.height)) {
                    report.size_changes += 1;
                }
            }
            last_ns = last_ns.max(ns);
            sink.video(&f, last_ns)?;
            report.video_frames += 1;
        } else {
            let Some((pos, packet, empty)) = next_audio.take() else {
                break;
            };
            next_audio = audio.as_mut().and_then(|a| a.next());
            let ns = ns_of_samples(pos);
            if !(started && ns >= start_ns && ns < end_ns) {
                continue;
            }
            last_ns = last_ns.max(ns);
            sink.audio(&packet, last_ns)?;
            if empty {
                report.audio_empty_frames += 1;
            } else {
                report.audio_packets += 1;
            }
        }
    }
    let counts = frames.depacketizer.counts();
    report.incomplete_frames = counts.incomplete;
    report.frames_after_loss = counts.after_loss;
    report.video_malformed = counts.malformed;
    report.video_lost = frames.packets.stats.lost;
    Ok(())
}
