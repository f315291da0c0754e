//! WAV files read back a block at a time: 16-bit PCM (what [`crate::wav::WavWriter`] and the mix write)
//! and 32-bit float ([`crate::wav::FloatWavWriter`], RIFF or RF64). A data size the header saturated
//! (a file past 4 GiB written as RIFF) or left at 0 (a file still being written) is taken from the
//! file's length instead.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// How a WAV file's samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavSamples {
    Pcm16,
    Float32,
}

/// One WAV file being read.
pub struct WavReader {
    file: BufReader<File>,
    pub sample_rate: u32,
    pub channels: u16,
    pub samples: WavSamples,
    data_offset: u64,
    /// Frames in the file.
    frames: u64,
    /// The next frame read gives.
    pos: u64,
    bytes: Vec<u8>,
}

impl WavReader {
    pub fn open(path: &Path) -> io::Result<WavReader> {
        let mut file = BufReader::with_capacity(1 << 16, File::open(path)?);
        let file_len = file.get_ref().metadata()?.len();
        let mut head = [0u8; 12];
        file.read_exact(&mut head)?;
        let rf64 = &head[0..4] == b"RF64";
        if !(&head[0..4] == b"RIFF" || rf64) || &head[8..12] != b"WAVE" {
            return Err(invalid("not a WAV file"));
        }
        let mut at = 12u64;
        let mut format: Option<(u16, u16, u32, u16)> = None;
        let mut ds64_data: Option<u64> = None;
        loop {
            let mut chunk = [0u8; 8];
            if file.read_exact(&mut chunk).is_err() {
                return Err(invalid("a WAV file without a data chunk"));
            }
            let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            let body = at + 8;
            match &chunk[0..4] {
                b"fmt " => {
                    let mut fmt = [0u8; 16];
                    if size < 16 {
                        return Err(invalid("a short fmt chunk"));
                    }
                    file.read_exact(&mut fmt)?;
                    let tag = u16::from_le_bytes([fmt[0], fmt[1]]);
                    let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
                    let rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
                    let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
                    format = Some((tag, channels, rate, bits));
                }
                b"ds64" if rf64 => {
                    let mut ds = [0u8; 16];
                    file.read_exact(&mut ds)?;
                    ds64_data = Some(u64::from_le_bytes([
                        ds[8], ds[9], ds[10], ds[11], ds[12], ds[13], ds[14], ds[15],
                    ]));
                }
                b"data" => {
                    let (tag, channels, rate, bits) =
                        format.ok_or_else(|| invalid("the data chunk comes before fmt"))?;
                    // WAVE_FORMAT_EXTENSIBLE keeps its real format in the extension: taken by bits.
                    let samples = match (tag, bits) {
                        (1 | 0xfffe, 16) => WavSamples::Pcm16,
                        (3 | 0xfffe, 32) => WavSamples::Float32,
                        _ => {
                            return Err(invalid(format!(
                                "WAV format {tag} with {bits} bits (16-bit PCM and 32-bit float are read)"
                            )))
                        }
                    };
                    if channels == 0 || rate == 0 {
                        return Err(invalid("a WAV file of no channels or no rate"));
                    }
                    let in_file = file_len.saturating_sub(body);
                    let declared = match ds64_data {
                        Some(d) if size == u32::MAX => d,
                        _ => u64::from(size),
                    };
                    // Saturated (past 4 GiB) or not filled in yet: the file says how much there is.
                    let data = if declared == 0 || declared >= u64::from(u32::MAX - 36) {
                        in_file
                    } else {
                        declared.min(in_file)
                    };
                    let frame_bytes = u64::from(channels) * u64::from(bits / 8);
                    return Ok(WavReader {
                        file,
                        sample_rate: rate,
                        channels,
                        samples,
                        data_offset: body,
                        frames: data / frame_bytes,
                        pos: 0,
                        bytes: Vec::new(),
                    });
                }
                _ => {}
            }
            // Chunks are padded to even sizes.
            at = body + u64::from(size) + u64::from(size & 1);
            file.seek(SeekFrom::Start(at))?;
        }
    }

    /// Frames in the file.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The next frame a read gives.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn frame_bytes(&self) -> u64 {
        let width = match self.samples {
            WavSamples::Pcm16 => 2,
            WavSamples::Float32 => 4,
        };
        u64::from(self.channels) * width
    }

    /// Goes to frame `frame` (at most the end).
    pub fn seek(&mut self, frame: u64) -> io::Result<()> {
        self.pos = frame.min(self.frames);
        let at = self.data_offset + self.pos * self.frame_bytes();
        self.file.seek(SeekFrom::Start(at))?;
        Ok(())
    }

    /// Reads the raw bytes of up to `frames` frames; how many frames.
    fn read_bytes(&mut self, frames: usize) -> io::Result<usize> {
        let n = (frames as u64).min(self.frames - self.pos) as usize;
        self.bytes.resize(n * self.frame_bytes() as usize, 0);
        self.file.read_exact(&mut self.bytes)?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Fills `out` (interleaved) from a 16-bit file; the frames given, fewer only at its end.
    pub fn read_i16(&mut self, out: &mut [i16]) -> io::Result<usize> {
        if self.samples != WavSamples::Pcm16 {
            return Err(invalid("not a 16-bit WAV file"));
        }
        let n = self.read_bytes(out.len() / usize::from(self.channels))?;
        for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(2)) {
            *o = i16::from_le_bytes([b[0], b[1]]);
        }
        Ok(n)
    }

    /// Fills `out` (interleaved) from a float file, every sample's bits as stored; the frames given.
    pub fn read_f32(&mut self, out: &mut [f32]) -> io::Result<usize> {
        if self.samples != WavSamples::Float32 {
            return Err(invalid("not a 32-bit float WAV file"));
        }
        let n = self.read_bytes(out.len() / usize::from(self.channels))?;
        for (o, b) in out.iter_mut().zip(self.bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav::{FloatWavWriter, WavWriter};

    #[test]
    fn reads_back_what_the_writers_wrote_from_any_frame() {
        let d = crate::testutil::tmpdir("wavread");
        let path = d.join("t.wav");
        let x: Vec<i16> = (0..10_001)
            .map(|i| (i * 7 % 65_536 - 32_768) as i16)
            .collect();
        let mut w = WavWriter::create(&path, 48_000, 1).unwrap();
        w.write(&x).unwrap();
        w.finish(48_000).unwrap();
        let mut r = WavReader::open(&path).unwrap();
        assert_eq!(
            (r.sample_rate, r.channels, r.samples, r.frames()),
            (48_000, 1, WavSamples::Pcm16, 10_001)
        );
        let mut out = vec![0i16; 4_000];
        r.seek(6_500).unwrap();
        assert_eq!(r.read_i16(&mut out).unwrap(), 3_501, "to the end");
        assert_eq!(&out[..3_501], &x[6_500..]);
        r.seek(3).unwrap();
        assert_eq!(r.read_i16(&mut out[..2]).unwrap(), 2);
        assert_eq!(&out[..2], &x[3..5]);
        assert!(r.read_f32(&mut [0.0; 2]).is_err());

        let f: Vec<f32> = (0..3_000).map(|i| (i as f32 * 0.01).sin()).collect();
        let mut w = FloatWavWriter::create(&path, 96_000, 2).unwrap();
        w.write(&f).unwrap();
        w.finish().unwrap();
        let mut r = WavReader::open(&path).unwrap();
        assert_eq!(
            (r.sample_rate, r.channels, r.samples, r.frames()),
            (96_000, 2, WavSamples::Float32, 1_500)
        );
        r.seek(100).unwrap();
        let mut out = vec![0f32; 20];
        assert_eq!(r.read_f32(&mut out).unwrap(), 10);
        assert_eq!(&out[..], &f[200..220]);
        std::fs::write(&path, b"RIFF\0\0\0\0WAVEjunk").unwrap();
        assert!(WavReader::open(&path).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
