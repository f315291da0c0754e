//! FLAC (16-bit) written block by block with `flacenc`, so a long recording is never held in memory:
//! STREAMINFO is written first and filled in (length, frame sizes, MD5) at the end.

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

pub struct FlacWriter {
    out: BufWriter<File>,
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    info: StreamInfo,
    context: Context,
    frame: FrameBuf,
    block: Vec<i32>,
    channels: usize,
    frames: usize,
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
    pub fn create(path: &Path, sample_rate: u32, channels: usize) -> Result<FlacWriter> {
        let mut config = flacenc::config::Encoder::default();
        config.block_size = BLOCK;
        config.multithread = false;
        let config = config.into_verified().map_err(|(_, e)| flac_error(e))?;
        let info = StreamInfo::new(sample_rate as usize, channels, 16).map_err(flac_error)?;
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&stream_head(&info)?)?;
        Ok(FlacWriter {
            out,
            config,
            info,
            context: Context::new(16, channels),
            frame: FrameBuf::with_size(channels, BLOCK).map_err(flac_error)?,
            block: Vec::with_capacity(BLOCK * channels),
            channels,
            frames: 0,
            samples: 0,
        })
    }

    /// Interleaved samples.
    pub fn write(&mut self, samples: &[i16]) -> Result<()> {
        for s in samples {
            self.block.push(i32::from(*s));
            if self.block.len() == BLOCK * self.channels {
                self.encode_block()?;
            }
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
}
