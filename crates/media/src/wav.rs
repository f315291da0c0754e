//! WAV (RIFF, 16-bit PCM) written as samples come; the sizes in the header are filled in at the end.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

pub struct WavWriter {
    out: BufWriter<File>,
    channels: u16,
    pub samples: u64,
}

/// The 44-byte header of a PCM WAV file holding `data_bytes` of samples.
pub fn header(sample_rate: u32, channels: u16, data_bytes: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let block_align = channels * 2;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_bytes.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

impl WavWriter {
    pub fn create(path: &Path, sample_rate: u32, channels: u16) -> io::Result<WavWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(&header(sample_rate, channels, 0))?;
        Ok(WavWriter {
            out,
            channels,
            samples: 0,
        })
    }

    /// Interleaved samples.
    pub fn write(&mut self, samples: &[i16]) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        self.out.write_all(&bytes)?;
        self.samples += samples.len() as u64;
        Ok(())
    }

    /// Fills in the sizes (saturated past 4 GiB, as other writers do) and closes the file; returns its
    /// length in bytes.
    pub fn finish(mut self, sample_rate: u32) -> io::Result<u64> {
        let data = u32::try_from(self.samples * 2).unwrap_or(u32::MAX - 36);
        self.out.seek(SeekFrom::Start(0))?;
        self.out
            .write_all(&header(sample_rate, self.channels, data))?;
        self.out.flush()?;
        Ok(44 + self.samples * 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let d = crate::testutil::tmpdir("wav");
        let path = d.join("t.wav");
        let mut w = WavWriter::create(&path, 48_000, 1).unwrap();
        w.write(&[0, 1, -1, i16::MAX, i16::MIN]).unwrap();
        assert_eq!(w.finish(48_000).unwrap(), 54);
        let b = std::fs::read(&path).unwrap();
        assert_eq!(b.len(), 54);
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap());
        assert_eq!(&b[0..4], b"RIFF");
        assert_eq!(u32_at(4), 46, "RIFF size: file minus 8");
        assert_eq!(&b[8..16], b"WAVEfmt ");
        assert_eq!(
            (u32_at(16), u16_at(20), u16_at(22)),
            (16, 1, 1),
            "PCM, mono"
        );
        assert_eq!(
            (u32_at(24), u32_at(28)),
            (48_000, 96_000),
            "rate, byte rate"
        );
        assert_eq!((u16_at(32), u16_at(34)), (2, 16), "block align, bits");
        assert_eq!(&b[36..40], b"data");
        assert_eq!(u32_at(40), 10);
        assert_eq!(&b[44..48], &[0, 0, 1, 0]);
        assert_eq!(&b[50..54], &[0xff, 0x7f, 0x00, 0x80]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
