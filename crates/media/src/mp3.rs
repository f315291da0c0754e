//! MP3 (MPEG-1 Layer III, 320 kbit/s CBR) written block by block with LAME (`mp3lame-encoder`), so
//! a long track is never held in memory. The first frame is LAME's `Info` tag (the CBR form of the
//! Xing header), filled in at the end with the encoder delay and padding, so gapless-aware decoders
//! give back exactly the samples written. Input rates that MPEG-1 lacks are resampled by LAME: the
//! 44.1 kHz family (22.05, 88.2, 176.4 kHz, …) to 44.1 kHz, all others to 48 kHz
//! ([`output_rate`]).
//!
//! [`scan`] reads a file's frame headers and its `Info`/`Xing` tag back (tests, and checks of what was
//! written).

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::num::NonZeroU32;
use std::path::Path;

use mp3lame_encoder::{Bitrate, Builder, FlushGap, InterleavedPcm, Mode, MonoPcm, Quality};

/// The bitrate written, kbit/s.
pub const BITRATE_KBPS: u32 = 320;
/// Samples per channel in an MPEG-1 Layer III frame.
pub const FRAME_SAMPLES: u64 = 1152;

fn lame_error(what: &str, e: impl std::fmt::Debug) -> io::Error {
    io::Error::other(format!("lame: {what}: {e:?}"))
}

/// The rate an MP3 of input at `sample_rate` is written at: the input's own where MPEG-1 has it
/// (32, 44.1, 48 kHz), else 44.1 kHz for that family's multiples, else 48 kHz.
pub fn output_rate(sample_rate: u32) -> u32 {
    match sample_rate {
        32_000 | 44_100 | 48_000 => sample_rate,
        r if r % 11_025 == 0 => 44_100,
        _ => 48_000,
    }
}

/// Writes one MP3 file.
pub struct Mp3Writer {
    out: BufWriter<File>,
    encoder: mp3lame_encoder::Encoder,
    channels: u16,
    input_rate: u32,
    output_rate: u32,
    mp3: Vec<u8>,
    scratch: Vec<f32>,
    /// Frames (samples per channel) given so far.
    pub frames: u64,
}

impl Mp3Writer {
    /// Creates `path` for `channels` (1 or 2) of audio at `sample_rate`, 320 kbit/s CBR.
    pub fn create(path: &Path, sample_rate: u32, channels: u16) -> io::Result<Mp3Writer> {
        if !(1..=2).contains(&channels) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{channels} channels: MP3 is mono or stereo"),
            ));
        }
        let output_rate = output_rate(sample_rate);
        let mut b = Builder::new().ok_or_else(|| io::Error::other("lame: no memory"))?;
        b.set_num_channels(channels as u8)
            .map_err(|e| lame_error("channels", e))?;
        b.set_sample_rate(sample_rate)
            .map_err(|e| lame_error("sample rate", e))?;
        b.set_output_sample_rate(NonZeroU32::new(output_rate))
            .map_err(|e| lame_error("output rate", e))?;
        b.set_brate(Bitrate::Kbps320)
            .map_err(|e| lame_error("bitrate", e))?;
        b.set_vbr_mode(mp3lame_encoder::VbrMode::Off)
            .map_err(|e| lame_error("CBR", e))?;
        b.set_mode(if channels == 1 {
            Mode::Mono
        } else {
            Mode::JointStereo
        })
        .map_err(|e| lame_error("mode", e))?;
        // LAME's recommended setting (-q 2, "-h"): near its best, at a fraction of -q 0's time.
        b.set_quality(Quality::NearBest)
            .map_err(|e| lame_error("quality", e))?;
        b.set_to_write_vbr_tag(true)
            .map_err(|e| lame_error("Info tag", e))?;
        let encoder = b.build().map_err(|e| lame_error("parameters", e))?;
        Ok(Mp3Writer {
            out: BufWriter::with_capacity(1 << 16, File::create(path)?),
            encoder,
            channels,
            input_rate: sample_rate,
            output_rate,
            mp3: Vec::new(),
            scratch: Vec::new(),
            frames: 0,
        })
    }

    /// The rate the file is written at.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// Room for what `frames` of input may encode to (more frames out than in where LAME resamples
    /// up, plus what it held back).
    fn reserve(&mut self, frames: usize) {
        let out =
            (frames as u64 * u64::from(self.output_rate)).div_ceil(u64::from(self.input_rate));
        self.mp3.clear();
        self.mp3.reserve(mp3lame_encoder::max_required_buffer_size(
            out as usize + 2 * FRAME_SAMPLES as usize,
        ));
    }

    fn write_out(&mut self) -> io::Result<()> {
        self.out.write_all(&self.mp3)
    }

    /// Interleaved 16-bit samples (whole frames).
    pub fn write_i16(&mut self, samples: &[i16]) -> io::Result<()> {
        let frames = samples.len() / usize::from(self.channels);
        self.reserve(frames);
        let samples = &samples[..frames * usize::from(self.channels)];
        let written = if self.channels == 1 {
            self.encoder.encode_to_vec(MonoPcm(samples), &mut self.mp3)
        } else {
            self.encoder
                .encode_to_vec(InterleavedPcm(samples), &mut self.mp3)
        };
        written.map_err(|e| lame_error("encoding", e))?;
        self.frames += frames as u64;
        self.write_out()
    }

    /// Interleaved float samples (whole frames; full scale ±1.0: beyond it clips, NaN is silence).
    pub fn write_f32(&mut self, samples: &[f32]) -> io::Result<()> {
        let frames = samples.len() / usize::from(self.channels);
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend(
            samples[..frames * usize::from(self.channels)]
                .iter()
                .map(|s| if s.is_nan() { 0.0 } else { s.clamp(-1.0, 1.0) }),
        );
        self.reserve(frames);
        let written = if self.channels == 1 {
            self.encoder
                .encode_to_vec(MonoPcm(&scratch[..]), &mut self.mp3)
        } else {
            self.encoder
                .encode_to_vec(InterleavedPcm(&scratch[..]), &mut self.mp3)
        };
        self.scratch = scratch;
        written.map_err(|e| lame_error("encoding", e))?;
        self.frames += frames as u64;
        self.write_out()
    }

    /// Encodes what LAME holds back, writes the `Info` tag over the first frame and closes the file;
    /// returns its length in bytes.
    pub fn finish(mut self) -> io::Result<u64> {
        self.reserve(0);
        self.encoder
            .flush_to_vec::<FlushGap>(&mut self.mp3)
            .map_err(|e| lame_error("flushing", e))?;
        self.write_out()?;
        let len = self.out.stream_position()?;
        let mut tag = Vec::with_capacity(self.encoder.lame_tag_size().max(1));
        if self.encoder.lame_tag_encode_to_vec(&mut tag).is_some() {
            self.out.seek(SeekFrom::Start(0))?;
            self.out.write_all(&tag)?;
        }
        self.out.flush()?;
        Ok(len)
    }
}

/// An MPEG audio frame header (Layer III).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// 1 (MPEG-1), 2 (MPEG-2) or 25 (MPEG-2.5).
    pub version: u8,
    pub bitrate_kbps: u32,
    pub sample_rate: u32,
    pub channels: u16,
    /// The frame's length in bytes, header included.
    pub length: usize,
    pub samples: u64,
}

/// The Layer III frame header in `h`, if it is one.
pub fn frame_header(h: [u8; 4]) -> Option<FrameHeader> {
    if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
        return None;
    }
    let version = match (h[1] >> 3) & 3 {
        3 => 1,
        2 => 2,
        0 => 25,
        _ => return None,
    };
    if (h[1] >> 1) & 3 != 1 {
        return None; // not Layer III
    }
    const V1: [u32; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const V2: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let index = usize::from(h[2] >> 4);
    let bitrate_kbps = *if version == 1 { &V1 } else { &V2 }.get(index)?;
    let rates = match version {
        1 => [44_100, 48_000, 32_000],
        2 => [22_050, 24_000, 16_000],
        _ => [11_025, 12_000, 8_000],
    };
    let sample_rate = *rates.get(usize::from((h[2] >> 2) & 3))?;
    if bitrate_kbps == 0 {
        return None; // free format
    }
    let padding = usize::from((h[2] >> 1) & 1);
    let (samples, factor) = if version == 1 { (1152, 144) } else { (576, 72) };
    let length = (factor * bitrate_kbps as usize * 1000) / sample_rate as usize + padding;
    Some(FrameHeader {
        version,
        bitrate_kbps,
        sample_rate,
        channels: if h[3] >> 6 == 3 { 1 } else { 2 },
        length,
        samples,
    })
}

/// What an MP3 file's frames say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mp3Scan {
    /// Every frame's header, the tag frame's among them.
    pub frames: Vec<FrameHeader>,
    /// The first frame is an `Info` (CBR) or `Xing` (VBR) tag, not audio.
    pub tag: Option<String>,
    /// The encoder delay and padding (samples) in the LAME extension of the tag.
    pub delay: Option<u32>,
    pub padding: Option<u32>,
    /// Bytes that are not frames (an ID3v2 tag, damage).
    pub other_bytes: usize,
}

impl Mp3Scan {
    /// Frames of audio (the tag frame left out).
    pub fn audio_frames(&self) -> usize {
        self.frames.len() - usize::from(self.tag.is_some())
    }

    /// Samples per channel a gapless decoder gives: the audio frames less the delay and padding.
    pub fn samples(&self) -> u64 {
        let per = self.frames.first().map_or(FRAME_SAMPLES, |f| f.samples);
        (self.audio_frames() as u64 * per).saturating_sub(u64::from(
            self.delay.unwrap_or(0) + self.padding.unwrap_or(0),
        ))
    }
}

/// Reads the frame headers of an MP3 file held in `bytes`.
pub fn scan(bytes: &[u8]) -> Mp3Scan {
    let mut out = Mp3Scan::default();
    let mut at = 0usize;
    while at + 4 <= bytes.len() {
        let h = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let Some(header) = frame_header(h) else {
            at += 1;
            out.other_bytes += 1;
            continue;
        };
        if out.frames.is_empty() {
            // Side information: 32 bytes (MPEG-1 stereo), 17 (MPEG-1 mono), 17 / 9 (MPEG-2).
            let side = match (header.version, header.channels) {
                (1, 1) => 17,
                (1, _) => 32,
                (_, 1) => 9,
                _ => 17,
            };
            let tag_at = at + 4 + side;
            if let Some(name) = bytes.get(tag_at..tag_at + 4) {
                if name == b"Info" || name == b"Xing" {
                    out.tag = Some(String::from_utf8_lossy(name).into_owned());
                    let flags = bytes
                        .get(tag_at + 4..tag_at + 8)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    // Frames, bytes, TOC and quality, each present by its flag.
                    let mut lame = tag_at + 8;
                    for (bit, len) in [(1, 4), (2, 4), (4, 100), (8, 4)] {
                        if flags & bit != 0 {
                            lame += len;
                        }
                    }
                    if let Some(b) = bytes.get(lame + 21..lame + 24) {
                        if bytes.get(lame..lame + 4) == Some(b"LAME") {
                            out.delay = Some((u32::from(b[0]) << 4) | (u32::from(b[1]) >> 4));
                            out.padding = Some((u32::from(b[1] & 0x0f) << 8) | u32::from(b[2]));
                        }
                    }
                }
            }
        }
        out.frames.push(header);
        at += header.length;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &Path, frames_in: u64, in_rate: u32, out_rate: u32, channels: u16) -> Mp3Scan {
        let bytes = std::fs::read(path).unwrap();
        let s = scan(&bytes);
        assert_eq!(s.other_bytes, 0, "nothing but frames");
        assert_eq!(s.tag.as_deref(), Some("Info"), "a CBR Info tag first");
        assert!(
            s.frames
                .iter()
                .all(|f| f.bitrate_kbps == 320 && f.sample_rate == out_rate && f.version == 1),
            "every frame 320 kbit/s MPEG-1 at {out_rate} Hz"
        );
        assert!(s.frames.iter().all(|f| f.channels == channels));
        let want = frames_in * u64::from(out_rate) / u64::from(in_rate);
        let got = s.samples();
        assert!(
            got.abs_diff(want) <= FRAME_SAMPLES,
            "{got} samples for {want} in ({s:?})"
        );
        s
    }

    #[test]
    fn cbr_320k_with_an_info_tag_and_the_length_of_the_input() {
        let d = crate::testutil::tmpdir("mp3");
        let path = d.join("t.mp3");
        // 3.3 s of a mono tone, 16-bit, in blocks of a second.
        let x: Vec<i16> = crate::testutil::tone(440.0, 0.5, 3.3)
            .iter()
            .map(|s| (s * 32_767.0) as i16)
            .collect();
        let mut w = Mp3Writer::create(&path, 48_000, 1).unwrap();
        assert_eq!(w.output_rate(), 48_000);
        for c in x.chunks(48_000) {
            w.write_i16(c).unwrap();
        }
        let len = w.finish().unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        let s = check(&path, x.len() as u64, 48_000, 48_000, 1);
        assert_eq!(
            s.samples(),
            x.len() as u64,
            "exactly, by the tag's delay and padding"
        );
        // 320 kbit/s: the file is as long as the frames say.
        let secs = s.audio_frames() as f64 * 1152.0 / 48_000.0;
        assert!((len as f64 * 8.0 / secs / 1000.0 - 320.0).abs() < 5.0);

        // Stereo float at 96 kHz: resampled to 48 kHz.
        let f: Vec<f32> = crate::testutil::tone(1_000.0, 0.5, 2.0)
            .iter()
            .flat_map(|s| [*s, -*s, *s, -*s])
            .collect();
        let mut w = Mp3Writer::create(&path, 96_000, 2).unwrap();
        assert_eq!(w.output_rate(), 48_000);
        for c in f.chunks(96_000 * 2) {
            w.write_f32(c).unwrap();
        }
        w.finish().unwrap();
        check(&path, (f.len() / 2) as u64, 96_000, 48_000, 2);

        // 44.1 kHz stays; 88.2 kHz goes to 44.1 kHz; 16 kHz up to 48 kHz.
        for (rate, out) in [(44_100, 44_100), (88_200, 44_100), (16_000, 48_000)] {
            let mut w = Mp3Writer::create(&path, rate, 1).unwrap();
            assert_eq!(w.output_rate(), out);
            let x = vec![0.25f32; rate as usize];
            w.write_f32(&x).unwrap();
            w.finish().unwrap();
            check(&path, u64::from(rate), rate, out, 1);
        }
        assert!(Mp3Writer::create(&path, 48_000, 3).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn frame_headers() {
        // MPEG-1 Layer III, 320 kbit/s, 48 kHz, no padding, mono.
        let h = frame_header([0xff, 0xfb, 0xe4, 0xc0]).unwrap();
        assert_eq!(
            (
                h.version,
                h.bitrate_kbps,
                h.sample_rate,
                h.channels,
                h.length
            ),
            (1, 320, 48_000, 1, 960)
        );
        assert!(
            frame_header([0xff, 0xfb, 0xf4, 0xc0]).is_none(),
            "bad bitrate"
        );
        assert!(frame_header([0x00, 0xfb, 0xe4, 0xc0]).is_none());
        assert!(frame_header([0xff, 0xfd, 0xe4, 0xc0]).is_none(), "layer II");
    }
}
