//! FLAC (16- or 24-bit) written block by block with `flacenc`, so a long recording is never held in
//! memory: STREAMINFO is written first and filled in (length, frame sizes, MD5) at the end.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, StreamInfo};
use flacenc::error::Verify;
use flacenc::source::{Context, Fill, FrameBuf};

use crate::error::{FinalizeError, Result};

/// Samples per FLAC block (the reference encoder's default).
pub const BLOCK: usize = 4096;

/// The largest magnitude of a 24-bit sample's scale: a float sample `x` in [-1, 1) is `x × 2^23`.
const I24_SCALE: f64 = 8_388_608.0;

/// A float sample (full scale ±1.0) as a 24-bit integer: scaled by 2^23, rounded to nearest (halves
/// away from zero), clamped to [-2^23, 2^23 - 1]; NaN becomes 0. The flag says whether the conversion
/// kept the value exactly (the float was a multiple of 2^-23 inside the range; -0.0 counts as 0).
pub fn float_to_i24(sample: f32) -> (i32, bool) {
    if sample.is_nan() {
        return (0, false);
    }
    let scaled = f64::from(sample) * I24_SCALE;
    let rounded = scaled.round().clamp(-I24_SCALE, I24_SCALE - 1.0);
    // In range, so the cast is exact.
    (rounded as i32, rounded == scaled)
}

/// Writes one FLAC stream to a file, a block at a time.
pub struct FlacWriter {
    out: BufWriter<File>,
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    info: StreamInfo,
    context: Context,
    frame: FrameBuf,
    block: Vec<i32>,
    channels: usize,
    /// 16 or 24.
    bits: u32,
    frames: usize,
    /// Frames (samples per channel) encoded so far.
    pub samples: u64,
}

fn flac_error(e: impl std::fmt::Display) -> FinalizeError {
    FinalizeError::Flac(e.to_string())
}

/// `fLaC` and a STREAMINFO block (the last metadata block).
fn stream_head(info: &StreamInfo) -> Result<Vec<u8>> {
    let mut sink = ByteSink::new();
    info.write(&mut sink).map_err(flac_error)?;
    let body = sink.as_slice();
    let mut head = b"fLaC".to_vec();
    head.push(0x80); // last metadata block, type 0 (STREAMINFO)
    head.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    head.extend_from_slice(body);
    Ok(head)
}

impl FlacWriter {
    /// A 16-bit stream.
    pub fn create(path: &Path, sample_rate: u32, channels: usize) -> Result<FlacWriter> {
        FlacWriter::with_bits(path, sample_rate, channels, 16)
    }

    /// A stream of `bits_per_sample` bits (16 or 24), `channels` 1 to 8.
    pub fn with_bits(
        path: &Path,
        sample_rate: u32,
        channels: usize,
        bits_per_sample: u32,
    ) -> Result<FlacWriter> {
        if bits_per_sample != 16 && bits_per_sample != 24 {
            return Err(flac_error(format!(
                "{bits_per_sample} bits per sample (16 or 24 are written)"
            )));
        }
        if !(1..=8).contains(&channels) {
            return Err(flac_error(format!(
                "{channels} channels (1 to 8 are written)"
            )));
        }
        let bits = bits_per_sample as usize;
        let mut config = flacenc::config::Encoder::default();
        config.block_size = BLOCK;
        config.multithread = false;
        let config = config.into_verified().map_err(|(_, e)| flac_error(e))?;
        let info = StreamInfo::new(sample_rate as usize, channels, bits).map_err(flac_error)?;
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&stream_head(&info)?)?;
        Ok(FlacWriter {
            out,
            config,
            info,
            context: Context::new(bits, channels),
            frame: FrameBuf::with_size(channels, BLOCK).map_err(flac_error)?,
            block: Vec::with_capacity(BLOCK * channels),
            channels,
            bits: bits_per_sample,
            frames: 0,
            samples: 0,
        })
    }

    /// Interleaved 16-bit samples (in a 24-bit stream they are the quiet low end of its range).
    pub fn write(&mut self, samples: &[i16]) -> Result<()> {
        for s in samples {
            self.push(i32::from(*s))?;
        }
        Ok(())
    }

    /// Interleaved samples of the stream's depth: each in [-2^(bits-1), 2^(bits-1) - 1], else an
    /// error (and the stream is not usable after it).
    pub fn write_i32(&mut self, samples: &[i32]) -> Result<()> {
        let max = (1i32 << (self.bits - 1)) - 1;
        let min = -max - 1;
        for &s in samples {
            if !(min..=max).contains(&s) {
                return Err(flac_error(format!(
                    "sample {s} does not fit {} bits",
                    self.bits
                )));
            }
            self.push(s)?;
        }
        Ok(())
    }

    fn push(&mut self, sample: i32) -> Result<()> {
        self.block.push(sample);
        if self.block.len() == BLOCK * self.channels {
            self.encode_block()?;
        }
        Ok(())
    }

    fn encode_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.frame
            .fill_interleaved(&self.block)
            .map_err(flac_error)?;
        self.context
            .fill_interleaved(&self.block)
            .map_err(flac_error)?;
        let frame =
            flacenc::encode_fixed_size_frame(&self.config, &self.frame, self.frames, &self.info)
                .map_err(flac_error)?;
        self.info.update_frame_info(&frame);
        let mut sink = ByteSink::new();
        frame.write(&mut sink).map_err(flac_error)?;
        self.out.write_all(sink.as_slice())?;
        self.frames += 1;
        self.samples += (self.block.len() / self.channels) as u64;
        self.block.clear();
        Ok(())
    }

    /// Encodes the last partial block, fills in STREAMINFO and closes the file; returns its length.
    pub fn finish(mut self) -> Result<u64> {
        self.encode_block()?;
        // update_frame_info counted the samples and frame sizes; the MD5 is of all samples. A fixed
        // block size stream says so (the last, shorter block does not count).
        self.info.set_md5_digest(&self.context.md5_digest());
        self.info
            .set_block_sizes(BLOCK, BLOCK)
            .map_err(flac_error)?;
        if self.frames == 0 {
            self.info.set_frame_sizes(0, 0).map_err(flac_error)?;
        }
        let len = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&stream_head(&self.info)?)?;
        self.out.flush()?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_back_to_the_same_samples() {
        let d = crate::testutil::tmpdir("flac");
        let path = d.join("t.flac");
        let x: Vec<i16> = (0..48_000 * 2 + 1_234)
            .map(|i| ((i as f64 * 0.031).sin() * 12_000.0 + (i % 7) as f64 * 100.0) as i16)
            .collect();
        let mut w = FlacWriter::create(&path, 48_000, 1).unwrap();
        for c in x.chunks(1_000) {
            w.write(c).unwrap();
        }
        let len = w.finish().unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        let mut r = claxon::FlacReader::open(&path).unwrap();
        let info = r.streaminfo();
        assert_eq!(
            (info.sample_rate, info.channels, info.bits_per_sample),
            (48_000, 1, 16)
        );
        assert_eq!(info.samples, Some(x.len() as u64));
        let back: Vec<i16> = r.samples().map(|s| s.unwrap() as i16).collect();
        assert_eq!(back, x);
        assert!(len < (x.len() * 2) as u64, "compressed");
        // Short last blocks, and no samples at all.
        for n in [0, 1, 5, 15, BLOCK + 1, BLOCK + 7] {
            let x: Vec<i16> = (0..n).map(|i| (i * 37 % 1000) as i16).collect();
            let mut w = FlacWriter::create(&path, 48_000, 1).unwrap();
            w.write(&x).unwrap();
            w.finish().unwrap();
            let mut r = claxon::FlacReader::open(&path).unwrap();
            let back: Vec<i16> = r.samples().map(|s| s.unwrap() as i16).collect();
            assert_eq!(back, x, "{n} samples");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn twenty_four_bit_stereo_decodes_back_exactly_at_full_scale() {
        let d = crate::testutil::tmpdir("flac24");
        let path = d.join("t.flac");
        let mut rng = crate::testutil::Rng::new(24);
        let frames = BLOCK * 3 + 123;
        let mut x: Vec<i32> = (0..frames * 2)
            .map(|i| {
                if i % 2 == 0 {
                    // A loud tone on the left, full-scale noise on the right.
                    ((i as f64 * 0.013).sin() * 8_000_000.0) as i32
                } else {
                    (rng.next_f64() * 16_777_215.0) as i32 - 8_388_608
                }
            })
            .collect();
        x[10] = 8_388_607;
        x[11] = -8_388_608;
        x[12] = -8_388_608;
        x[13] = 8_388_607;
        let mut w = FlacWriter::with_bits(&path, 96_000, 2, 24).unwrap();
        // Writes need not end on frames, nor on blocks.
        for c in x.chunks(1_999) {
            w.write_i32(c).unwrap();
        }
        let len = w.finish().unwrap();
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        let mut r = claxon::FlacReader::open(&path).unwrap();
        let info = r.streaminfo();
        assert_eq!(
            (info.sample_rate, info.channels, info.bits_per_sample),
            (96_000, 2, 24)
        );
        assert_eq!(info.samples, Some(frames as u64));
        let back: Vec<i32> = r.samples().map(|s| s.unwrap()).collect();
        assert!(back == x, "24-bit samples come back as written");
        // 16-bit samples in a 24-bit stream keep their values.
        let mut w = FlacWriter::with_bits(&path, 48_000, 1, 24).unwrap();
        w.write(&[i16::MIN, -1, 0, 1, i16::MAX]).unwrap();
        w.finish().unwrap();
        let mut r = claxon::FlacReader::open(&path).unwrap();
        let back: Vec<i32> = r.samples().map(|s| s.unwrap()).collect();
        assert_eq!(back, [-32_768, -1, 0, 1, 32_767]);
        // What does not fit is refused, not wrapped.
        let mut w = FlacWriter::with_bits(&path, 48_000, 1, 24).unwrap();
        assert!(w.write_i32(&[1 << 23]).is_err());
        let mut w = FlacWriter::create(&path, 48_000, 1).unwrap();
        assert!(w.write_i32(&[40_000]).is_err());
        assert!(FlacWriter::with_bits(&path, 48_000, 1, 20).is_err());
        assert!(FlacWriter::with_bits(&path, 48_000, 0, 24).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn float_to_i24_rounds_clamps_and_says_when_exact() {
        let lsb = 1.0 / 8_388_608.0;
        assert_eq!(float_to_i24(0.0), (0, true));
        assert_eq!(float_to_i24(-0.0), (0, true));
        assert_eq!(float_to_i24(0.5), (4_194_304, true));
        assert_eq!(float_to_i24(-1.0), (-8_388_608, true));
        assert_eq!(float_to_i24(3.0 * lsb), (3, true));
        assert_eq!(float_to_i24(-8_388_607.0 * lsb), (-8_388_607, true));
        // Halves round away from zero.
        assert_eq!(float_to_i24(2.5 * lsb), (3, false));
        assert_eq!(float_to_i24(-2.5 * lsb), (-3, false));
        assert_eq!(float_to_i24(2.25 * lsb), (2, false));
        assert_eq!(float_to_i24(0.1), (838_861, false));
        // +1.0 is one step past the top.
        assert_eq!(float_to_i24(1.0), (8_388_607, false));
        assert_eq!(float_to_i24(-2.0), (-8_388_608, false));
        assert_eq!(float_to_i24(f32::INFINITY), (8_388_607, false));
        assert_eq!(float_to_i24(f32::NEG_INFINITY), (-8_388_608, false));
        assert_eq!(float_to_i24(f32::NAN), (0, false));
        assert_eq!(float_to_i24(f32::MIN_POSITIVE), (0, false));
    }
}
