//! One person's H.264 video, with their voice, as Matroska (`.mkv`): access units put back together from
//! RTP ([`crate::h264`]) and the Opus packets as sent, nothing re-encoded. WebM cannot carry H.264 and
//! libwebm (the `webm` crate) writes only VP8, VP9 and AV1, so this file is written with `webm-iterable`
//! (Matroska elements through `ebml-iterable`). The rules are the WebM path's, through the same code
//! ([`crate::av_mux`]): session time, the file starts at the first keyframe, the recording's Duration,
//! lip sync through sender reports.
//!
//! The file: an EBML header (DocType `matroska`), then a Segment holding Info, Tracks (`V_MPEG4/ISO/AVC`
//! with an `avcC` CodecPrivate built from the first keyframe's SPS and PPS, pixel size from the SPS;
//! `A_OPUS` with OpusHead, CodecDelay and SeekPreRoll), Clusters, and Cues for every keyframe so players
//! can seek. It is written as it goes, one Cluster (at most [`CLUSTER_MS`], a new one at each keyframe)
//! in memory at a time: the Segment starts with an unknown size and room for a SeekHead, and at the end
//! the Cues are written after the Clusters, then the SeekHead and the Segment's size are written into
//! the room kept for them. A file cut short (a crash while finalizing) is still an unknown-size Segment
//! of whole Clusters that players read.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use webm_iterable::matroska_spec::{Master, MatroskaSpec, SimpleBlock};
use webm_iterable::{WebmWriter, WriteOptions};

use crate::av_mux::{find_start, interleave, Frames, Inputs, PlacedAudio, Sink, VideoFrame};
use crate::error::{FinalizeError, Result};
use crate::h264::{codec_config, H264Depacketizer};
use crate::ogg_opus::{opus_head, PRE_SKIP};
use crate::SAMPLE_RATE;

/// A Cluster is closed once it spans this long (ms), or at the next keyframe.
pub const CLUSTER_MS: u64 = 5_000;
/// A Cluster is closed once it holds this many bytes (a high bitrate, or a corrupt journal).
const CLUSTER_BYTES: usize = 16 << 20;
/// Timestamps count milliseconds (TimestampScale, ns).
const TIMESTAMP_SCALE: u64 = 1_000_000;
/// Room kept after the Segment's start for the SeekHead (written at the end) and a Void.
const SEEK_HEAD_ROOM: usize = 128;
/// Opus decoders need 80 ms before a seek point to converge (RFC 7845 §4.6).
const OPUS_SEEK_PRE_ROLL_NS: u64 = 80_000_000;
const VIDEO_TRACK: u64 = 1;
const AUDIO_TRACK: u64 = 2;
/// Element ids the SeekHead points at.
const INFO_ID: u32 = 0x1549_A966;
const TRACKS_ID: u32 = 0x1654_AE6B;
const CUES_ID: u32 = 0x1C53_BB6B;

fn mkv_error(e: impl std::fmt::Display) -> FinalizeError {
    FinalizeError::Matroska(e.to_string())
}

/// Muxes the H.264 track in `video_journal` and, if given, the Opus track in `audio_journal` (the same
/// person's) into a Matroska file at `out`, for a recording lasting `duration_us`.
pub fn finalize_mkv(
    video_journal: &Path,
    audio_journal: Option<&Path>,
    out: &Path,
    duration_us: u64,
) -> Result<crate::VideoReport> {
    write_mkv(
        Inputs::open(video_journal, audio_journal)?,
        out,
        duration_us,
    )
}

pub(crate) fn write_mkv(
    inputs: Inputs,
    out: &Path,
    duration_us: u64,
) -> Result<crate::VideoReport> {
    inputs.expect_codec("h264")?;
    let Inputs {
        video,
        audio,
        mut report,
    } = inputs;
    report.format = "mkv".into();
    report.duration_us = duration_us;
    let (start_us, config) = find_start(
        &video,
        H264Depacketizer::new(),
        duration_us,
        FinalizeError::NoParameterSets,
        |f| codec_config(&f.data),
    )?;
    report.first_keyframe_us = start_us.max(0.0) as u64;
    report.width = config.width;
    report.height = config.height;

    let mut video_entry = vec![
        MatroskaSpec::TrackNumber(VIDEO_TRACK),
        MatroskaSpec::TrackUID(VIDEO_TRACK),
        MatroskaSpec::TrackType(1),
        MatroskaSpec::FlagLacing(0),
        MatroskaSpec::CodecID("V_MPEG4/ISO/AVC".into()),
        MatroskaSpec::CodecPrivate(config.avcc.clone()),
    ];
    video_entry.push(MatroskaSpec::Video(Master::Full(vec![
        MatroskaSpec::PixelWidth(u64::from(config.width)),
        MatroskaSpec::PixelHeight(u64::from(config.height)),
    ])));
    let mut tracks = vec![MatroskaSpec::TrackEntry(Master::Full(video_entry))];
    let mut placed = None;
    if let Some(a) = &audio {
        let (packets, channels) = PlacedAudio::open(a)?;
        let pre_skip_ns = u64::from(PRE_SKIP) * 1_000_000_000 / u64::from(SAMPLE_RATE);
        tracks.push(MatroskaSpec::TrackEntry(Master::Full(vec![
            MatroskaSpec::TrackNumber(AUDIO_TRACK),
            MatroskaSpec::TrackUID(AUDIO_TRACK),
            MatroskaSpec::TrackType(2),
            MatroskaSpec::FlagLacing(0),
            MatroskaSpec::CodecID("A_OPUS".into()),
            MatroskaSpec::CodecPrivate(opus_head(channels, PRE_SKIP, SAMPLE_RATE)),
            MatroskaSpec::CodecDelay(pre_skip_ns),
            MatroskaSpec::SeekPreRoll(OPUS_SEEK_PRE_ROLL_NS),
            MatroskaSpec::Audio(Master::Full(vec![
                MatroskaSpec::SamplingFrequency(f64::from(SAMPLE_RATE)),
                MatroskaSpec::Channels(u64::from(channels)),
            ])),
        ])));
        placed = Some(packets);
    }

    let mut sink = MkvWriter::create(out, duration_us, tracks)?;
    let frames = Frames::new(&video, H264Depacketizer::new())?;
    interleave(
        frames,
        placed,
        start_us,
        duration_us,
        &mut report,
        &mut sink,
        |f| codec_config(&f.data).map(|c| (c.width, c.height)),
    )?;
    report.bytes = sink.finish()?;
    Ok(report)
}

/// Counts the bytes written, so the writer knows where each element starts.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The Cluster being filled.
struct Cluster {
    ms: u64,
    bytes: usize,
}

/// A Matroska file being written: positions are relative to the Segment's data, as SeekHead and Cues
/// count them.
struct MkvWriter {
    w: WebmWriter<Counting<BufWriter<File>>>,
    /// File offset of the Segment's size field, and of its data.
    segment_size_at: u64,
    segment_data: u64,
    info_at: u64,
    tracks_at: u64,
    cluster: Option<Cluster>,
    /// (time in ms, Cluster position) of each keyframe.
    cues: Vec<(u64, u64)>,
}

impl MkvWriter {
    fn create(out: &Path, duration_us: u64, tracks: Vec<MatroskaSpec>) -> Result<MkvWriter> {
        let file = Counting {
            inner: BufWriter::new(File::create(out)?),
            written: 0,
        };
        let mut w = WebmWriter::new(file);
        w.write(&MatroskaSpec::Ebml(Master::Full(vec![
            MatroskaSpec::EbmlVersion(1),
            MatroskaSpec::EbmlReadVersion(1),
            MatroskaSpec::EbmlMaxIdLength(4),
            MatroskaSpec::EbmlMaxSizeLength(8),
            MatroskaSpec::DocType("matroska".into()),
            MatroskaSpec::DocTypeVersion(4),
            MatroskaSpec::DocTypeReadVersion(2),
        ])))
        .map_err(mkv_error)?;
        let segment_at = w.get_ref().written;
        // An unknown size (8 bytes, all ones) for now: the real one is written at the end.
        w.write_advanced(
            &MatroskaSpec::Segment(Master::Start),
            WriteOptions::is_unknown_sized_element(),
        )
        .map_err(mkv_error)?;
        w.write_advanced(
            &MatroskaSpec::Void(vec![0; SEEK_HEAD_ROOM - 9]),
            WriteOptions::set_size_byte_count(8),
        )
        .map_err(mkv_error)?;
        let segment_data = segment_at + 12;
        let info_at = w.get_ref().written;
        if info_at != segment_data + SEEK_HEAD_ROOM as u64 {
            return Err(mkv_error(
                "the Segment's start is not where it was expected",
            ));
        }
        w.write(&MatroskaSpec::Info(Master::Full(vec![
            MatroskaSpec::TimestampScale(TIMESTAMP_SCALE),
            MatroskaSpec::Duration(duration_us as f64 * 1_000.0 / TIMESTAMP_SCALE as f64),
            MatroskaSpec::MuxingApp("parley".into()),
            MatroskaSpec::WritingApp("parley".into()),
        ])))
        .map_err(mkv_error)?;
        let tracks_at = w.get_ref().written;
        w.write(&MatroskaSpec::Tracks(Master::Full(tracks)))
            .map_err(mkv_error)?;
        Ok(MkvWriter {
            w,
            segment_size_at: segment_at + 4,
            segment_data,
            info_at: info_at - segment_data,
            tracks_at: tracks_at - segment_data,
            cluster: None,
            cues: Vec::new(),
        })
    }

    /// Writes one SimpleBlock at `ns`, opening a new Cluster where one is due.
    fn block(&mut self, track: u64, data: &[u8], ns: u64, keyframe: bool) -> Result<()> {
        let ms = ns.saturating_add(TIMESTAMP_SCALE / 2) / TIMESTAMP_SCALE;
        let video_key = track == VIDEO_TRACK && keyframe;
        let due = self.cluster.as_ref().is_none_or(|c| {
            video_key || ms.saturating_sub(c.ms) >= CLUSTER_MS || c.bytes >= CLUSTER_BYTES
        });
        if due {
            self.close_cluster()?;
            // Nothing is held back between top-level elements: this is where the Cluster starts.
            let at = self.w.get_ref().written - self.segment_data;
            self.w
                .write(&MatroskaSpec::Cluster(Master::Start))
                .map_err(mkv_error)?;
            self.w
                .write(&MatroskaSpec::Timestamp(ms))
                .map_err(mkv_error)?;
            self.cluster = Some(Cluster { ms, bytes: 0 });
            if video_key {
                self.cues.push((ms, at));
            }
        }
        let Some(cluster) = self.cluster.as_mut() else {
            return Err(mkv_error("no Cluster open"));
        };
        let relative = i16::try_from(ms.saturating_sub(cluster.ms)).map_err(mkv_error)?;
        cluster.bytes += data.len();
        let block = SimpleBlock::new_uncheked(data, track, relative, false, None, false, keyframe);
        self.w.write(&MatroskaSpec::from(block)).map_err(mkv_error)
    }

    fn close_cluster(&mut self) -> Result<()> {
        if self.cluster.take().is_some() {
            self.w
                .write(&MatroskaSpec::Cluster(Master::End))
                .map_err(mkv_error)?;
        }
        Ok(())
    }

    /// Closes the last Cluster, writes the Cues, then the SeekHead and the Segment's size into their
    /// room; returns the file's length.
    fn finish(mut self) -> Result<u64> {
        self.close_cluster()?;
        let cues_at = self.w.get_ref().written - self.segment_data;
        let points = self
            .cues
            .iter()
            .map(|&(ms, at)| {
                MatroskaSpec::CuePoint(Master::Full(vec![
                    MatroskaSpec::CueTime(ms),
                    MatroskaSpec::CueTrackPositions(Master::Full(vec![
                        MatroskaSpec::CueTrack(VIDEO_TRACK),
                        MatroskaSpec::CueClusterPosition(at),
                    ])),
                ]))
            })
            .collect();
        self.w
            .write(&MatroskaSpec::Cues(Master::Full(points)))
            .map_err(mkv_error)?;
        let counting = self.w.into_inner().map_err(mkv_error)?;
        let end = counting.written;
        let mut file = counting.inner.into_inner().map_err(|e| e.into_error())?;

        let seek = |id: u32, at: u64| {
            MatroskaSpec::Seek(Master::Full(vec![
                MatroskaSpec::SeekID(id.to_be_bytes().to_vec()),
                MatroskaSpec::SeekPosition(at),
            ]))
        };
        let seek_head = MatroskaSpec::SeekHead(Master::Full(vec![
            seek(INFO_ID, self.info_at),
            seek(TRACKS_ID, self.tracks_at),
            seek(CUES_ID, cues_at),
        ]));
        let mut room = segment_child_bytes(&seek_head, None)?;
        let void = SEEK_HEAD_ROOM
            .checked_sub(room.len() + 9)
            .ok_or_else(|| mkv_error("the SeekHead does not fit its room"))?;
        room.extend(segment_child_bytes(
            &MatroskaSpec::Void(vec![0; void]),
            Some(8),
        )?);
        file.seek(SeekFrom::Start(self.segment_data))?;
        file.write_all(&room)?;
        let size = end - self.segment_data;
        if size >= 1 << 56 {
            return Err(mkv_error("the Segment is too large"));
        }
        // An 8-byte size: the marker bit, then 56 bits.
        let mut size_field = size.to_be_bytes();
        size_field[0] = 0x01;
        file.seek(SeekFrom::Start(self.segment_size_at))?;
        file.write_all(&size_field)?;
        file.flush()?;
        Ok(end)
    }
}

/// The bytes of `tag` as a child of a Segment (`ebml-iterable` checks where an element may go, so it is
/// written inside one whose header is then left out), with a size field of `size_len` bytes if given.
fn segment_child_bytes(tag: &MatroskaSpec, size_len: Option<usize>) -> Result<Vec<u8>> {
    let mut w = WebmWriter::new(Vec::new());
    w.write_advanced(
        &MatroskaSpec::Segment(Master::Start),
        WriteOptions::is_unknown_sized_element(),
    )
    .map_err(mkv_error)?;
    match size_len {
        Some(n) => w.write_advanced(tag, WriteOptions::set_size_byte_count(n)),
        None => w.write(tag),
    }
    .map_err(mkv_error)?;
    let bytes = w.into_inner().map_err(mkv_error)?;
    // The Segment's id (4 bytes) and unknown size (8).
    bytes
        .get(12..)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| mkv_error("no element written"))
}

impl Sink for MkvWriter {
    fn video(&mut self, frame: &VideoFrame, ns: u64) -> Result<()> {
        self.block(VIDEO_TRACK, &frame.data, ns, frame.keyframe)
    }

    fn audio(&mut self, packet: &[u8], ns: u64) -> Result<()> {
        self.block(AUDIO_TRACK, packet, ns, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::av_mux::VideoFormat;
    use crate::h264::tests::{avcc, fixture_aus, packetize};
    use crate::journal::TrackMedia;
    use crate::testutil::ebml::*;
    use crate::testutil::*;

    const SEGMENT: u64 = 0x1853_8067;
    const CLUSTER: u64 = 0x1F43_B675;

    /// `aus` sent as RTP at 15 fps from `start_us`, sequence numbers wrapping; `keep(frame, packet,
    /// packets)` says which packets are sent.
    fn h264_journal(
        path: &Path,
        codec: &str,
        aus: &[Vec<Vec<u8>>],
        start_us: f64,
        keep: impl Fn(usize, usize, usize) -> bool,
    ) {
        h264_journal_probed(path, codec, aus, start_us, keep, |_| 0)
    }

    /// [`h264_journal`] with `probes(frame)` padding-only packets after each frame (what Chromium sends
    /// on the media stream to probe bandwidth when no RTX stream was negotiated).
    fn h264_journal_probed(
        path: &Path,
        codec: &str,
        aus: &[Vec<Vec<u8>>],
        start_us: f64,
        keep: impl Fn(usize, usize, usize) -> bool,
        probes: impl Fn(usize) -> u16,
    ) {
        let mut sent = Vec::new();
        let mut seq = 65_500u16;
        for (i, au) in aus.iter().enumerate() {
            let ts = 0x4000_0000u32.wrapping_add(i as u32 * 6_000);
            for k in 0..probes(i) {
                sent.push(Sent {
                    sent_us: start_us + i as f64 * 1e6 / 15.0 - 1_000.0 + f64::from(k),
                    packet: crate::rtp::build(96, false, seq, ts.wrapping_sub(6_000), 0x264, &[]),
                });
                seq = seq.wrapping_add(1);
            }
            let payloads = packetize(au, 1_200);
            let n = payloads.len();
            for (k, p) in payloads.iter().enumerate() {
                let ts = 0x4000_0000u32.wrapping_add(i as u32 * 6_000);
                let packet = crate::rtp::build(96, k + 1 == n, seq, ts, 0x264, p);
                seq = seq.wrapping_add(1);
                if keep(i, k, n) {
                    sent.push(Sent {
                        sent_us: start_us + i as f64 * 1e6 / 15.0 + k as f64 * 100.0,
                        packet,
                    });
                }
            }
        }
        write_journal(
            path,
            &header(TrackMedia::Video, codec, 3),
            &sent,
            20_000.0,
            4_000.0,
            11,
            &[],
        );
    }

    /// 10 s of a tone as 20 ms Opus packets from 0 s.
    fn opus_journal(path: &Path) {
        let payloads = opus_packets(&tone(440.0, 0.3, 10.0), 32_000);
        let audio = opus_stream(&payloads, 0.0, 0.0, 9, |_| true);
        write_journal(
            path,
            &header(TrackMedia::Audio, "opus", 3),
            &audio,
            20_000.0,
            4_000.0,
            12,
            &[],
        );
    }

    /// What a written Matroska file holds.
    struct Parsed {
        doc_type: String,
        duration_ms: f64,
        codec_private: Vec<u8>,
        size: (u64, u64),
        audio_track: Vec<(u64, Vec<u8>)>,
        /// (track, ms, keyframe, bytes, cluster index).
        blocks: Vec<(u64, u64, bool, Vec<u8>, usize)>,
        /// (cue time, index of the cluster it points at).
        cues: Vec<(u64, usize)>,
        cluster_times: Vec<u64>,
    }

    fn parse(b: &[u8]) -> Parsed {
        let top = elements(b);
        assert_eq!(top.len(), 2, "EBML header and one Segment");
        assert_eq!(top[0].0, 0x1A45_DFA3);
        let doc_type = String::from_utf8(child(top[0].1, 0x4282).unwrap().to_vec()).unwrap();
        assert_eq!(top[1].0, SEGMENT);
        let segment = top[1].1;
        assert_eq!(
            offset_in(b, segment) + segment.len(),
            b.len(),
            "the Segment's size is written and covers the file"
        );
        let children = elements(segment);
        // The SeekHead comes first and finds Info, Tracks and Cues.
        assert_eq!(children[0].0, 0x114D_9B74);
        assert_eq!(children[1].0, 0xEC, "Void after the SeekHead");
        let seeks: Vec<(u64, usize)> = elements(children[0].1)
            .into_iter()
            .map(|(_, seek)| {
                (
                    uint(child(seek, 0x53AB).unwrap()),
                    uint(child(seek, 0x53AC).unwrap()) as usize,
                )
            })
            .collect();
        assert_eq!(seeks.len(), 3);
        for (id, at) in &seeks {
            assert_eq!(element_at(segment, *at).0, *id, "SeekHead entry {id:x}");
        }
        assert!(
            seeks.iter().any(|s| s.0 == 0x1C53_BB6B),
            "Cues are in the SeekHead"
        );
        let info = child(segment, 0x1549_A966).unwrap();
        assert_eq!(child(info, 0x2AD7B1).map(uint), Some(1_000_000));
        let duration_ms = float(child(info, 0x4489).unwrap());
        let tracks: Vec<&[u8]> = elements(child(segment, 0x1654_AE6B).unwrap())
            .into_iter()
            .filter(|e| e.0 == 0xAE)
            .map(|e| e.1)
            .collect();
        let video = tracks[0];
        assert_eq!(child(video, 0xD7).map(uint), Some(VIDEO_TRACK));
        assert_eq!(child(video, 0x83).map(uint), Some(1));
        assert_eq!(child(video, 0x86), Some(&b"V_MPEG4/ISO/AVC"[..]));
        let v = child(video, 0xE0).unwrap();
        let size = (
            child(v, 0xB0).map(uint).unwrap(),
            child(v, 0xBA).map(uint).unwrap(),
        );
        let audio_track = tracks
            .get(1)
            .map(|a| {
                elements(a)
                    .into_iter()
                    .map(|(id, body)| (id, body.to_vec()))
                    .collect()
            })
            .unwrap_or_default();

        let mut blocks = Vec::new();
        let mut cluster_at = Vec::new();
        let mut cluster_times = Vec::new();
        for (id, cluster) in &children {
            if *id != CLUSTER {
                continue;
            }
            let index = cluster_at.len();
            // Cue positions count from the Segment's data to the Cluster's id.
            cluster_at.push(cluster_offset(segment, cluster));
            let base = child(cluster, 0xE7).map(uint).unwrap();
            cluster_times.push(base);
            for (id, block) in elements(cluster) {
                if id == 0xA3 {
                    let (track, n) = vint(block, 0, false);
                    let rel = i16::from_be_bytes([block[n], block[n + 1]]);
                    assert!(rel >= 0);
                    let keyframe = block[n + 2] & 0x80 != 0;
                    assert_eq!(block[n + 2] & 0x06, 0, "no lacing");
                    blocks.push((
                        track,
                        base + rel as u64,
                        keyframe,
                        block[n + 3..].to_vec(),
                        index,
                    ));
                }
            }
        }
        let cues = elements(child(segment, 0x1C53_BB6B).unwrap())
            .into_iter()
            .map(|(id, point)| {
                assert_eq!(id, 0xBB);
                let time = uint(child(point, 0xB3).unwrap());
                let positions = child(point, 0xB7).unwrap();
                assert_eq!(child(positions, 0xF7).map(uint), Some(VIDEO_TRACK));
                let at = uint(child(positions, 0xF1).unwrap()) as usize;
                let index = cluster_at.iter().position(|c| *c == at).expect("a Cluster");
                (time, index)
            })
            .collect();
        Parsed {
            doc_type,
            duration_ms,
            codec_private: child(video, 0x63A2).unwrap().to_vec(),
            size,
            audio_track,
            blocks,
            cues,
            cluster_times,
        }
    }

    /// Where a Cluster (its body a slice of `segment`) starts: its id, 4 bytes, and its size before the
    /// body.
    fn cluster_offset(segment: &[u8], body: &[u8]) -> usize {
        let start = offset_in(segment, body);
        (0..start)
            .rev()
            .find(|&at| {
                segment[at..].starts_with(&[0x1F, 0x43, 0xB6, 0x75])
                    && element_at(segment, at).1.as_ptr() == body.as_ptr()
            })
            .unwrap()
    }

    /// ffprobe's `key=value` lines for the file's streams, and whether ffmpeg decodes it without a
    /// word; `None` without ffmpeg.
    fn ffprobe(path: &Path) -> Option<(Vec<String>, String)> {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-show_streams"])
            .arg(path)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let decoded = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-f", "null", "-"])
            .output()
            .ok()?;
        assert!(decoded.status.success());
        Some((lines, String::from_utf8_lossy(&decoded.stderr).to_string()))
    }

    #[test]
    fn h264_and_opus_mux_into_matroska_on_the_session_clock() {
        let d = tmpdir("mkv");
        let aus = fixture_aus();
        let (vj, aj) = (d.join("v.journal"), d.join("a.journal"));
        h264_journal(&vj, "h264", &aus, 500_000.0, |_, _, _| true);
        opus_journal(&aj);
        assert_eq!(VideoFormat::for_codec("H264"), Some(VideoFormat::Mkv));
        let out = d.join("p3.mkv");
        let report = crate::finalize_video(&vj, Some(&aj), &out, 11_000_000).unwrap();
        eprintln!("{report:?}");
        assert_eq!(
            (report.format.as_str(), report.codec.as_str()),
            ("mkv", "h264")
        );
        assert_eq!((report.width, report.height), (96, 64));
        assert_eq!((report.video_frames, report.keyframes), (30, 3));
        assert_eq!(
            (
                report.frames_before_keyframe,
                report.incomplete_frames,
                report.frames_after_loss
            ),
            (0, 0, 0)
        );
        assert_eq!(report.lip_sync, "arrival");
        assert_eq!(report.duration_us, 11_000_000);
        // Sent at 0.5 s, 20 ms of network.
        let first = report.first_keyframe_us as f64;
        assert!(
            (first - 520_000.0).abs() < 3_000.0,
            "first keyframe at {first} µs"
        );

        let b = std::fs::read(&out).unwrap();
        assert_eq!(report.bytes, b.len() as u64);
        let m = parse(&b);
        assert_eq!(m.doc_type, "matroska");
        assert!(
            (m.duration_ms - 11_000.0).abs() < 0.01,
            "Duration {}",
            m.duration_ms
        );
        assert_eq!(m.size, (96, 64));
        let record =
            h264_reader::avcc::AvcDecoderConfigurationRecord::try_from(&m.codec_private[..])
                .unwrap();
        let sps: Vec<&[u8]> = record
            .sequence_parameter_sets()
            .map(|s| s.unwrap())
            .collect();
        let pps: Vec<&[u8]> = record
            .picture_parameter_sets()
            .map(|s| s.unwrap())
            .collect();
        assert_eq!((sps, pps), (vec![&aus[0][0][..]], vec![&aus[0][1][..]]));
        assert_eq!(record.length_size_minus_one(), 3);
        let audio = |id: u64| {
            m.audio_track
                .iter()
                .find(|e| e.0 == id)
                .map(|e| e.1.clone())
        };
        assert_eq!(audio(0x86).as_deref(), Some(&b"A_OPUS"[..]));
        assert_eq!(&audio(0x63A2).unwrap()[..8], b"OpusHead");
        assert_eq!(
            audio(0x56AA).map(|v| uint(&v)),
            Some(6_500_000),
            "CodecDelay: pre-skip"
        );
        assert_eq!(
            audio(0x56BB).map(|v| uint(&v)),
            Some(80_000_000),
            "SeekPreRoll"
        );

        let video: Vec<_> = m.blocks.iter().filter(|b| b.0 == VIDEO_TRACK).collect();
        let audio: Vec<_> = m.blocks.iter().filter(|b| b.0 == AUDIO_TRACK).collect();
        assert_eq!(video.len(), 30);
        for (i, (block, au)) in video.iter().zip(&aus).enumerate() {
            assert_eq!(
                block.3,
                avcc(au),
                "frame {i}: the access unit as sent, in AVCC form"
            );
            assert_eq!(block.2, i % 10 == 0, "frame {i}'s keyframe flag");
            let expected = 520.0 + i as f64 * 1_000.0 / 15.0;
            assert!(
                (block.1 as f64 - expected).abs() <= 3.0,
                "frame {i} at {} ms, sent for {expected}",
                block.1
            );
        }
        assert_eq!(
            audio.len() as u64,
            report.audio_packets + report.audio_empty_frames
        );
        assert!(audio[0].1 >= video[0].1, "audio from the first keyframe on");
        assert!(audio.windows(2).all(|w| w[1].1 - w[0].1 == 20));
        assert!((audio[audio.len() - 1].1 as f64 - 10_000.0).abs() < 30.0);
        assert!(m.blocks.windows(2).all(|w| w[0].1 <= w[1].1), "time order");
        // Clusters: a new one at each keyframe, none longer than 5 s (the audio goes on alone).
        let keyframes: Vec<_> = video.iter().filter(|b| b.2).collect();
        for k in &keyframes {
            let first_in_cluster = m.blocks.iter().find(|b| b.4 == k.4).unwrap();
            assert_eq!(first_in_cluster.1, k.1, "a keyframe starts its Cluster");
            assert_eq!(first_in_cluster.0, VIDEO_TRACK);
        }
        for b in &m.blocks {
            assert!(b.1 - m.cluster_times[b.4] < CLUSTER_MS);
        }
        // Three keyframes' Clusters, then the audio alone from 1.85 s to 10 s: one more after 5 s.
        assert_eq!(m.cluster_times.len(), 4, "{:?}", m.cluster_times);
        // A Cue for each keyframe, at its Cluster.
        assert_eq!(
            m.cues,
            keyframes.iter().map(|k| (k.1, k.4)).collect::<Vec<_>>()
        );

        match ffprobe(&out) {
            Some((streams, errors)) => {
                let has = |l: &str| streams.iter().any(|s| s == l);
                assert!(
                    has("codec_name=h264") && has("width=96") && has("height=64"),
                    "{streams:?}"
                );
                assert!(has("codec_name=opus"), "{streams:?}");
                assert!(has("nb_read_frames=30"), "{streams:?}");
                assert_eq!(errors, "", "ffmpeg decodes it without complaint");
            }
            None => eprintln!("no ffprobe/ffmpeg on PATH: the file was not checked with them"),
        }
        if let Ok(keep) = std::env::var("PARLEY_OUT") {
            // For a person to look at: PARLEY_OUT=/some/dir cargo test ... matroska
            std::fs::copy(&out, Path::new(&keep).join("p3.mkv")).unwrap();
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn padding_only_probes_between_frames_are_not_losses() {
        let d = tmpdir("mkv-probes");
        let aus = fixture_aus();
        let vj = d.join("v.journal");
        // Probes before most frames, across the sequence number wrap; frame 12's last packet lost.
        h264_journal_probed(
            &vj,
            "h264",
            &aus,
            0.0,
            |i, k, n| !(i == 12 && k + 1 == n),
            |i| if i % 3 == 0 { 0 } else { (i % 4) as u16 + 1 },
        );
        let out = d.join("p3.mkv");
        let report = crate::finalize_mkv(&vj, None, &out, 3_000_000).unwrap();
        assert_eq!(report.video_lost, 1, "only the real loss: {report:?}");
        // Frame 12 is one packet: it is gone whole, and 13 to 19 refer to it.
        assert_eq!((report.incomplete_frames, report.frames_after_loss), (0, 7));
        assert_eq!((report.video_frames, report.keyframes), (22, 3));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_lost_fragment_drops_frames_until_the_next_idr() {
        let d = tmpdir("mkv-loss");
        let aus = fixture_aus();
        let vj = d.join("v.journal");
        // Frame 10's IDR loses its last fragment (the marker's).
        h264_journal(&vj, "h264", &aus, 0.0, |i, k, n| !(i == 10 && k + 1 == n));
        let out = d.join("p3.mkv");
        let report = crate::finalize_mkv(&vj, None, &out, 3_000_000).unwrap();
        assert_eq!((report.incomplete_frames, report.frames_after_loss), (1, 9));
        assert_eq!(
            (report.video_frames, report.keyframes, report.video_lost),
            (20, 2, 1)
        );
        let m = parse(&std::fs::read(&out).unwrap());
        assert!(m.audio_track.is_empty());
        let kept: Vec<usize> = (0..10).chain(20..30).collect();
        assert_eq!(m.blocks.len(), kept.len());
        for (block, i) in m.blocks.iter().zip(kept) {
            assert_eq!(block.3, avcc(&aus[i]));
        }
        assert_eq!(m.cues.len(), 2);
        if let Some((streams, errors)) = ffprobe(&out) {
            assert!(
                streams.iter().any(|s| s == "nb_read_frames=20"),
                "{streams:?}"
            );
            assert_eq!(errors, "");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_parameter_sets_keyframes_and_codecs_are_typed_errors() {
        let d = tmpdir("mkv-errors");
        let aus = fixture_aus();
        // IDRs, but never an SPS or PPS.
        let bare: Vec<Vec<Vec<u8>>> = aus
            .iter()
            .map(|au| {
                au.iter()
                    .filter(|n| !matches!(n[0] & 0x1f, 7 | 8))
                    .cloned()
                    .collect()
            })
            .collect();
        let j = d.join("bare.journal");
        h264_journal(&j, "h264", &bare, 0.0, |_, _, _| true);
        assert!(matches!(
            crate::finalize_video(&j, None, &d.join("bare.mkv"), 3_000_000),
            Err(FinalizeError::NoParameterSets)
        ));
        // P frames only.
        let j = d.join("inter.journal");
        h264_journal(&j, "h264", &aus[1..10], 0.0, |_, _, _| true);
        assert!(matches!(
            crate::finalize_video(&j, None, &d.join("inter.mkv"), 3_000_000),
            Err(FinalizeError::NoKeyframe)
        ));
        // A codec neither muxer takes; H.264 for WebM; VP8 for Matroska.
        let j = d.join("av1.journal");
        h264_journal(&j, "av1", &aus, 0.0, |_, _, _| true);
        assert_eq!(VideoFormat::for_codec("av1"), None);
        assert!(matches!(
            crate::finalize_video(&j, None, &d.join("x"), 3_000_000),
            Err(FinalizeError::UnsupportedCodec { ref codec }) if codec == "av1"
        ));
        let j = d.join("h264.journal");
        h264_journal(&j, "h264", &aus, 0.0, |_, _, _| true);
        assert!(matches!(
            crate::finalize_webm(&j, None, &d.join("x.webm"), 3_000_000),
            Err(FinalizeError::UnsupportedCodec { .. })
        ));
        // Cut mid-write: a shorter valid file.
        let whole = std::fs::read(&j).unwrap();
        std::fs::write(&j, &whole[..whole.len() * 2 / 3]).unwrap();
        let r = crate::finalize_video(&j, None, &d.join("cut.mkv"), 3_000_000).unwrap();
        assert!(r.video_frames > 10 && r.video_frames < 30, "{r:?}");
        let m = parse(&std::fs::read(d.join("cut.mkv")).unwrap());
        assert_eq!(m.blocks.len() as u64, r.video_frames);

        // VP8 goes to WebM through the same entry point.
        let vp8: Vec<Sent> = (0..30u32)
            .map(|i| Sent {
                sent_us: f64::from(i) * 33_333.0,
                packet: crate::rtp::build(
                    96,
                    true,
                    i as u16,
                    i * 3_000,
                    1,
                    &crate::vp8::tests::packetize(
                        &crate::vp8::tests::frame(i % 10 == 0, 160, 120, 200, 1),
                        1,
                        0,
                    )[0],
                ),
            })
            .collect();
        let j = d.join("vp8.journal");
        write_journal(
            &j,
            &header(TrackMedia::Video, "vp8", 1),
            &vp8,
            0.0,
            0.0,
            1,
            &[],
        );
        assert!(matches!(
            crate::finalize_mkv(&j, None, &d.join("x.mkv"), 3_000_000),
            Err(FinalizeError::UnsupportedCodec { .. })
        ));
        assert_eq!(
            VideoFormat::for_codec("VP8").map(VideoFormat::extension),
            Some("webm")
        );
        let r = crate::finalize_video(&j, None, &d.join("p1.webm"), 3_000_000).unwrap();
        assert_eq!((r.format.as_str(), r.video_frames), ("webm", 30));
        let b = std::fs::read(d.join("p1.webm")).unwrap();
        assert_eq!(child(elements(&b)[0].1, 0x4282), Some(&b"webm"[..]));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
