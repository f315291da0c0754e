//! WAV written as samples come; the sizes in the header are filled in at the end. [`WavWriter`]: 16-bit
//! PCM. [`FloatWavWriter`]: 32-bit IEEE float (`WAVE_FORMAT_IEEE_FLOAT`), the samples' bits kept
//! exactly, and RF64 (EBU Tech 3306) once the data is past what RIFF's 32-bit sizes hold.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// Writes a 16-bit PCM WAV file.
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
    /// Creates (or truncates) `path` and writes a header for no samples yet.
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

/// Where a float WAV's samples start: after `RIFF`/`RF64` (12 bytes), a 28-byte `JUNK` chunk that
/// becomes `ds64` if the file outgrows RIFF (36), `fmt ` with `cbSize` (26), `fact` (12) and the
/// `data` chunk's header (8).
pub const FLOAT_DATA_OFFSET: u64 = 94;

/// The header of a float WAV file holding `frames` frames of `channels` 32-bit float samples: RIFF
/// while the file's size fits 32 bits, else RF64 with the true sizes in `ds64` (and the 32-bit fields
/// all ones, as Tech 3306 says).
pub fn float_header(sample_rate: u32, channels: u16, frames: u64) -> [u8; 94] {
    let mut h = [0u8; 94];
    let block_align = u32::from(channels) * 4;
    let data_bytes = frames.saturating_mul(u64::from(block_align));
    let riff_bytes = data_bytes.saturating_add(FLOAT_DATA_OFFSET - 8);
    let small = riff_bytes <= u64::from(u32::MAX);
    let u32_or_ones = |v: u64| if small { v as u32 } else { u32::MAX };
    h[0..4].copy_from_slice(if small { b"RIFF" } else { b"RF64" });
    h[4..8].copy_from_slice(&u32_or_ones(riff_bytes).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    // Reserved for ds64: a reader skips JUNK.
    h[12..16].copy_from_slice(if small { b"JUNK" } else { b"ds64" });
    h[16..20].copy_from_slice(&28u32.to_le_bytes());
    if !small {
        h[20..28].copy_from_slice(&riff_bytes.to_le_bytes());
        h[28..36].copy_from_slice(&data_bytes.to_le_bytes());
        h[36..44].copy_from_slice(&frames.to_le_bytes());
        // 44..48: no table of other chunks' sizes.
    }
    h[48..52].copy_from_slice(b"fmt ");
    h[52..56].copy_from_slice(&18u32.to_le_bytes());
    h[56..58].copy_from_slice(&3u16.to_le_bytes()); // WAVE_FORMAT_IEEE_FLOAT
    h[58..60].copy_from_slice(&channels.to_le_bytes());
    h[60..64].copy_from_slice(&sample_rate.to_le_bytes());
    h[64..68].copy_from_slice(&sample_rate.saturating_mul(block_align).to_le_bytes());
    h[68..70].copy_from_slice(&(block_align as u16).to_le_bytes());
    h[70..72].copy_from_slice(&32u16.to_le_bytes());
    // 72..74: cbSize 0, no extension.
    h[74..78].copy_from_slice(b"fact");
    h[78..82].copy_from_slice(&4u32.to_le_bytes());
    h[82..86].copy_from_slice(&u32_or_ones(frames).to_le_bytes());
    h[86..90].copy_from_slice(b"data");
    h[90..94].copy_from_slice(&u32_or_ones(data_bytes).to_le_bytes());
    h
}

/// Writes a 32-bit float WAV file: every sample's bits as given (NaN payloads too).
pub struct FloatWavWriter {
    out: BufWriter<File>,
    sample_rate: u32,
    channels: u16,
    bytes: Vec<u8>,
    /// Samples (not frames) written so far.
    pub samples: u64,
}

impl FloatWavWriter {
    /// Creates (or truncates) `path` and writes a header for no samples yet.
    pub fn create(path: &Path, sample_rate: u32, channels: u16) -> io::Result<FloatWavWriter> {
        if channels == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a WAV file has at least one channel",
            ));
        }
        let mut out = BufWriter::with_capacity(1 << 16, File::create(path)?);
        out.write_all(&float_header(sample_rate, channels, 0))?;
        Ok(FloatWavWriter {
            out,
            sample_rate,
            channels,
            bytes: Vec::new(),
            samples: 0,
        })
    }

    /// Interleaved samples (writes need not end on a frame; the file should).
    pub fn write(&mut self, samples: &[f32]) -> io::Result<()> {
        self.bytes.clear();
        self.bytes.reserve(samples.len() * 4);
        for s in samples {
            self.bytes.extend_from_slice(&s.to_le_bytes());
        }
        self.out.write_all(&self.bytes)?;
        self.samples += samples.len() as u64;
        Ok(())
    }

    /// Fills in the sizes and flushes; returns the file and its length in bytes (the caller decides
    /// whether to sync it). A last partial frame counts as a frame in the header's sizes only as far as
    /// it goes: write whole frames.
    pub fn finish(mut self) -> io::Result<(File, u64)> {
        let frames = self.samples / u64::from(self.channels);
        self.out.seek(SeekFrom::Start(0))?;
        self.out
            .write_all(&float_header(self.sample_rate, self.channels, frames))?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        Ok((file, FLOAT_DATA_OFFSET + self.samples * 4))
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

    /// The chunks of a RIFF/RF64 file: (id, offset of its body, its size as the header says).
    fn chunks(b: &[u8]) -> Vec<(String, usize, u32)> {
        let mut out = Vec::new();
        let mut at = 12;
        while at + 8 <= b.len() {
            let id = String::from_utf8_lossy(&b[at..at + 4]).into_owned();
            let size = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap());
            out.push((id.clone(), at + 8, size));
            if id == "data" {
                break;
            }
            at += 8 + size as usize + (size as usize & 1);
        }
        out
    }

    #[test]
    fn float_writer_keeps_every_bit_and_says_what_it_holds() {
        let d = crate::testutil::tmpdir("wavf32");
        let path = d.join("t.wav");
        let x: Vec<f32> = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            1.5,
            f32::MIN_POSITIVE / 2.0,
            f32::from_bits(0x7fc0_1234),
            f32::INFINITY,
        ]
        .into_iter()
        .chain((0..2_000).map(|i| (i as f32 * 0.01).sin() * 0.7))
        .collect();
        let mut w = FloatWavWriter::create(&path, 44_100, 2).unwrap();
        for c in x.chunks(333) {
            w.write(c).unwrap();
        }
        let (_file, len) = w.finish().unwrap();
        let b = std::fs::read(&path).unwrap();
        assert_eq!(len, b.len() as u64);
        assert_eq!(b.len(), 94 + x.len() * 4);
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(b[i..i + 2].try_into().unwrap());
        assert_eq!(&b[0..4], b"RIFF");
        assert_eq!(u32_at(4) as usize, b.len() - 8);
        assert_eq!(&b[8..12], b"WAVE");
        let found = chunks(&b);
        let ids: Vec<&str> = found.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(ids, ["JUNK", "fmt ", "fact", "data"]);
        let fmt = found[1].1;
        assert_eq!(found[1].2, 18);
        assert_eq!(
            (
                u16_at(fmt),
                u16_at(fmt + 2),
                u32_at(fmt + 4),
                u32_at(fmt + 8)
            ),
            (3, 2, 44_100, 44_100 * 8),
            "IEEE float, stereo, rate, byte rate"
        );
        assert_eq!(
            (u16_at(fmt + 12), u16_at(fmt + 14), u16_at(fmt + 16)),
            (8, 32, 0)
        );
        assert_eq!(u32_at(found[2].1) as usize, x.len() / 2, "fact: frames");
        let (_, data, size) = found[3];
        assert_eq!(data as u64, FLOAT_DATA_OFFSET);
        assert_eq!(size as usize, x.len() * 4);
        let back: Vec<u32> = b[data..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let bits: Vec<u32> = x.iter().map(|s| s.to_bits()).collect();
        assert!(back == bits, "every sample's bits");
        assert!(FloatWavWriter::create(&path, 48_000, 0).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn float_header_becomes_rf64_past_four_gib() {
        let u32_at = |h: &[u8], i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap());
        let u64_at = |h: &[u8], i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap());
        // The largest RIFF: its size field (file minus 8) is exactly u32::MAX.
        let frames = (u64::from(u32::MAX) - 86) / 8;
        let h = float_header(48_000, 2, frames);
        assert_eq!((&h[0..4], &h[12..16]), (&b"RIFF"[..], &b"JUNK"[..]));
        assert_eq!(u64::from(u32_at(&h, 4)), 86 + frames * 8);
        // 4 h of 192 kHz stereo.
        let frames = 4 * 3_600 * 192_000u64;
        let h = float_header(192_000, 2, frames);
        assert_eq!((&h[0..4], &h[12..16]), (&b"RF64"[..], &b"ds64"[..]));
        assert_eq!(u32_at(&h, 4), u32::MAX);
        assert_eq!(u64_at(&h, 20), 86 + frames * 8, "ds64: RIFF size");
        assert_eq!(u64_at(&h, 28), frames * 8, "ds64: data size");
        assert_eq!(u64_at(&h, 36), frames, "ds64: frames");
        assert_eq!(u32_at(&h, 44), 0, "ds64: no table");
        assert_eq!((u32_at(&h, 82), u32_at(&h, 90)), (u32::MAX, u32::MAX));
        assert_eq!(&h[86..90], b"data");
    }
}
