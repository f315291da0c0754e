//! Ogg/Opus files (RFC 7845) decoded back to PCM, a block at a time: the `OpusHead` pre-skip is
//! dropped, the end is trimmed to the last page's granule position, and the output is 48 kHz with the
//! channels the head names (mono or stereo, mapping family 0 — what [`crate::OggOpusWriter`] writes).
//!
//! Sample `n` of the output is the stream's decoded sample `n + pre_skip`, so a file written on a
//! session's grid ([`crate::OggOpusWriter::write_at`], the recorder's per-person files) reads back with
//! sample 0 at the session's start. Packets libopus refuses are concealed (its loss concealment, for
//! the packet's duration), so the timing holds through damage. Empty frames (a TOC byte only: how
//! gaps are filled) are concealed for up to [`CONCEAL_MAX`] after the last real packet and are
//! silence after that (as in the mix: libopus' concealment of a long gap is a fading tail, not
//! sound anyone made); the packet after such a silence starts a fresh decoder.
//!
//! [`OggOpusReader::skip`] moves ahead without decoding most of what it passes: packets' lengths are
//! read from their TOC bytes, and only the last [`PREROLL`] samples before the target are decoded, by a
//! fresh decoder (RFC 7845 §4.6: 80 ms of pre-roll lets the decoder converge). The samples after a skip
//! are at exactly the positions a decode from the start gives them; their values match it to within the
//! codec's convergence.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use crate::opus_packet::packet_samples;
use crate::SAMPLE_RATE;

/// Samples decoded and dropped before a skip's target (80 ms at 48 kHz).
pub const PREROLL: u64 = 3_840;
/// Empty frames concealed at most after a real packet (120 ms at 48 kHz); silence after.
pub const CONCEAL_MAX: u64 = 5_760;
/// The longest an Opus packet decodes to (120 ms at 48 kHz), per channel.
const MAX_PACKET: usize = 5_760;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// What an `OpusHead` says (RFC 7845 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    pub channels: u8,
    pub pre_skip: u16,
    /// The rate the source had (informative: Opus decodes at 48 kHz).
    pub input_rate: u32,
    /// Output gain, Q7.8 dB.
    pub gain: i16,
}

impl OpusHead {
    /// Reads a head packet; only mapping family 0 (mono or stereo) is taken.
    pub fn parse(packet: &[u8]) -> io::Result<OpusHead> {
        if packet.len() < 19 || &packet[..8] != b"OpusHead" {
            return Err(invalid("not an Ogg/Opus stream (no OpusHead)"));
        }
        if packet[8] >> 4 != 0 {
            return Err(invalid(format!("OpusHead version {}", packet[8])));
        }
        let channels = packet[9];
        let family = packet[18];
        if family != 0 || !(1..=2).contains(&channels) {
            return Err(invalid(format!(
                "{channels} channels in mapping family {family} (mono and stereo are read)"
            )));
        }
        Ok(OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([packet[10], packet[11]]),
            input_rate: u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]),
            gain: i16::from_le_bytes([packet[16], packet[17]]),
        })
    }
}

/// The `KEY=value` comments of an `OpusTags` packet (RFC 7845 §5.2), and its vendor string.
fn parse_tags(packet: &[u8]) -> (String, Vec<String>) {
    let mut at = 8usize;
    let take = |at: &mut usize| -> Option<String> {
        let len = u32::from_le_bytes(packet.get(*at..*at + 4)?.try_into().ok()?) as usize;
        *at += 4;
        let s = packet.get(*at..at.checked_add(len)?)?;
        *at += len;
        Some(String::from_utf8_lossy(s).into_owned())
    };
    if packet.get(..8) != Some(b"OpusTags") {
        return (String::new(), Vec::new());
    }
    let vendor = take(&mut at).unwrap_or_default();
    let count = packet
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    at += 4;
    let mut comments = Vec::new();
    for _ in 0..count.min(10_000) {
        match take(&mut at) {
            Some(c) => comments.push(c),
            None => break,
        }
    }
    (vendor, comments)
}

/// One Ogg/Opus file being decoded (the first logical stream in it).
pub struct OggOpusReader {
    packets: ogg::PacketReader<BufReader<File>>,
    serial: u32,
    decoder: opus::Decoder,
    head: OpusHead,
    vendor: String,
    comments: Vec<String>,
    /// Stream position (decoded samples per channel from the stream's start, the pre-skip among
    /// them) of `buf[read..]`'s first frame, or of the next packet when it is all read.
    pos: u64,
    /// Decoded samples (interleaved) of the last packet, `read` of them handed out.
    buf: Vec<f32>,
    read: usize,
    ended: bool,
    /// Samples of empty frames since the last real packet; past [`CONCEAL_MAX`] they are silence
    /// and the decoder is made afresh for the next real packet.
    gap: u64,
    stale: bool,
    /// Packets libopus refused (concealed instead), and Ogg damage that ended the stream early.
    pub concealed: u64,
    pub damaged: bool,
}

impl OggOpusReader {
    /// Opens `path`, reads its `OpusHead` and `OpusTags`, and drops the pre-skip.
    pub fn open(path: &Path) -> io::Result<OggOpusReader> {
        let mut packets =
            ogg::PacketReader::new(BufReader::with_capacity(1 << 16, File::open(path)?));
        let first = packets
            .read_packet()
            .map_err(|e| invalid(format!("ogg: {e}")))?
            .ok_or_else(|| invalid("an empty Ogg file"))?;
        let head = OpusHead::parse(&first.data)?;
        let serial = first.stream_serial();
        let (vendor, comments) = loop {
            match packets
                .read_packet()
                .map_err(|e| invalid(format!("ogg: {e}")))?
            {
                Some(p) if p.stream_serial() == serial => break parse_tags(&p.data),
                Some(_) => continue,
                None => break (String::new(), Vec::new()),
            }
        };
        let channels = if head.channels == 2 {
            opus::Channels::Stereo
        } else {
            opus::Channels::Mono
        };
        let decoder = opus::Decoder::new(SAMPLE_RATE, channels).map_err(io::Error::other)?;
        let mut reader = OggOpusReader {
            packets,
            serial,
            decoder,
            head,
            vendor,
            comments,
            pos: 0,
            buf: Vec::with_capacity(MAX_PACKET * usize::from(head.channels)),
            read: 0,
            ended: false,
            gap: 0,
            stale: false,
            concealed: 0,
            damaged: false,
        };
        // The pre-skip is decoded (it primes the decoder) and dropped.
        reader.discard(u64::from(head.pre_skip))?;
        Ok(reader)
    }

    pub fn head(&self) -> OpusHead {
        self.head
    }

    pub fn channels(&self) -> u16 {
        u16::from(self.head.channels)
    }

    pub fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    pub fn vendor(&self) -> &str {
        &self.vendor
    }

    /// The `OpusTags` comments, `KEY=value`.
    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// The value of the first comment named `key` (compared without case, as RFC 7845 says).
    pub fn comment(&self, key: &str) -> Option<&str> {
        self.comments.iter().find_map(|c| {
            let (k, v) = c.split_once('=')?;
            k.eq_ignore_ascii_case(key).then_some(v)
        })
    }

    /// The output position (frames after the pre-skip) of the next frame [`OggOpusReader::read`] gives.
    pub fn position(&self) -> u64 {
        self.pos.saturating_sub(u64::from(self.head.pre_skip))
    }

    fn channel_count(&self) -> usize {
        usize::from(self.head.channels)
    }

    fn buffered_frames(&self) -> usize {
        (self.buf.len() - self.read) / self.channel_count()
    }

    /// The next packet of the stream, `None` at its end (or where the file is damaged or cut).
    fn next_packet(&mut self) -> Option<ogg::Packet> {
        if self.ended {
            return None;
        }
        loop {
            match self.packets.read_packet() {
                Ok(Some(p)) if p.stream_serial() != self.serial => continue,
                Ok(Some(p)) => {
                    if p.last_in_stream() {
                        self.ended = true;
                    }
                    return Some(p);
                }
                Ok(None) => {
                    self.ended = true;
                    return None;
                }
                Err(_) => {
                    self.damaged = true;
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    /// Frames a packet may give at `start` (its stream position): all it holds, but the stream's last
    /// packet ends at its page's granule position (the end trim, RFC 7845 §4.4).
    fn frames_kept(packet: &ogg::Packet, start: u64, decoded: u64) -> u64 {
        if packet.last_in_stream() {
            decoded.min(packet.absgp_page().saturating_sub(start))
        } else {
            decoded
        }
    }

    /// Decodes the next packet into `buf` (all of it unread); false at the stream's end.
    fn decode_next(&mut self) -> bool {
        let Some(packet) = self.next_packet() else {
            return false;
        };
        self.decode_packet(&packet);
        true
    }

    /// Drops `frames` frames, decoding them.
    fn discard(&mut self, mut frames: u64) -> io::Result<()> {
        while frames > 0 {
            if self.buffered_frames() == 0 && !self.decode_next() {
                break;
            }
            let n = (self.buffered_frames() as u64).min(frames);
            self.read += n as usize * self.channel_count();
            self.pos += n;
            frames -= n;
        }
        Ok(())
    }

    /// Moves `frames` frames ahead: packets that end more than [`PREROLL`] before the target are
    /// passed over undecoded, then a fresh decoder decodes the rest up to it.
    pub fn skip(&mut self, frames: u64) -> io::Result<()> {
        let buffered = (self.buffered_frames() as u64).min(frames);
        self.read += buffered as usize * self.channel_count();
        self.pos += buffered;
        let target = self.pos + (frames - buffered);
        let mut passed = false;
        while self.pos < target {
            let Some(packet) = self.next_packet() else {
                return Ok(());
            };
            let samples = packet_samples(&packet.data);
            let n = Self::frames_kept(&packet, self.pos, samples);
            if self.pos + n + PREROLL <= target {
                self.pos += n;
                // The run of empty frames, as decoding through would count it.
                self.gap = if packet.data.len() <= 1 {
                    self.gap + n
                } else {
                    0
                };
                passed = true;
                continue;
            }
            // Close to the target: decode from here on, with a decoder that starts afresh (in a
            // long gap, what it conceals is silence either way).
            if passed {
                self.decoder = self.fresh_decoder()?;
                self.stale = self.gap > CONCEAL_MAX;
            }
            // Decode this packet (pushed back by decoding it now) and the rest up to the target.
            self.decode_packet(&packet);
            let rest = target - self.pos;
            return self.discard(rest);
        }
        Ok(())
    }

    fn fresh_decoder(&self) -> io::Result<opus::Decoder> {
        let channels = if self.head.channels == 2 {
            opus::Channels::Stereo
        } else {
            opus::Channels::Mono
        };
        opus::Decoder::new(SAMPLE_RATE, channels).map_err(io::Error::other)
    }

    /// Decodes `packet` into `buf` (all of it unread); one libopus refuses is concealed for its
    /// length, an empty frame too (or is silence, long after the last real packet).
    fn decode_packet(&mut self, packet: &ogg::Packet) {
        let channels = self.channel_count();
        self.buf.resize(MAX_PACKET * channels, 0.0);
        self.read = 0;
        let samples = (packet_samples(&packet.data) as usize).min(MAX_PACKET);
        let frames = if packet.data.len() <= 1 {
            self.gap += samples as u64;
            if self.gap > CONCEAL_MAX {
                self.stale = true;
                self.buf[..samples * channels].fill(0.0);
                samples
            } else {
                self.conceal(samples)
            }
        } else {
            if self.stale {
                match self.fresh_decoder() {
                    Ok(d) => self.decoder = d,
                    Err(_) => self.concealed += 1,
                }
                self.stale = false;
            }
            self.gap = 0;
            match self
                .decoder
                .decode_float(&packet.data, &mut self.buf, false)
            {
                Ok(n) => n,
                Err(_) => {
                    self.concealed += 1;
                    self.conceal(samples)
                }
            }
        };
        let kept = Self::frames_kept(packet, self.pos, frames as u64) as usize;
        self.buf.truncate(kept * channels);
    }

    /// libopus' concealment of `samples` into `buf` (silence if it refuses).
    fn conceal(&mut self, samples: usize) -> usize {
        let channels = self.channel_count();
        match self
            .decoder
            .decode_float(&[], &mut self.buf[..samples * channels], false)
        {
            Ok(n) => n,
            Err(_) => {
                self.buf[..samples * channels].fill(0.0);
                samples
            }
        }
    }

    /// Fills `out` (interleaved, whole frames) with the next frames; returns the frames given, fewer
    /// than asked only at the stream's end.
    pub fn read(&mut self, out: &mut [f32]) -> io::Result<usize> {
        let channels = self.channel_count();
        let want = out.len() / channels;
        let mut done = 0;
        while done < want {
            if self.buffered_frames() == 0 && !self.decode_next() {
                break;
            }
            let n = self.buffered_frames().min(want - done);
            out[done * channels..(done + n) * channels]
                .copy_from_slice(&self.buf[self.read..self.read + n * channels]);
            self.read += n * channels;
            self.pos += n as u64;
            done += n;
        }
        Ok(done)
    }

    /// [`OggOpusReader::read`] as 16-bit samples (scaled by 2^15, rounded, clamped).
    pub fn read_i16(&mut self, out: &mut [i16], scratch: &mut Vec<f32>) -> io::Result<usize> {
        scratch.resize(out.len(), 0.0);
        let frames = self.read(scratch)?;
        let n = frames * self.channel_count();
        for (o, s) in out[..n].iter_mut().zip(scratch.iter()) {
            *o = f32_to_i16(*s);
        }
        Ok(frames)
    }
}

/// A float sample (full scale ±1.0) as 16 bits: scaled by 2^15, rounded, clamped; NaN is 0.
pub fn f32_to_i16(s: f32) -> i16 {
    if s.is_nan() {
        return 0;
    }
    (f64::from(s) * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ogg_opus::OggOpusWriter;
    use crate::testutil::*;

    /// Normalized cross-correlation of two equally long signals.
    fn correlation(a: &[f32], b: &[f32]) -> f64 {
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (f64::from(*x), f64::from(*y));
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa * bb).sqrt().max(1e-30)
    }

    /// `pcm` (interleaved, `channels`) encoded by libopus in 20 ms packets into an Ogg/Opus file as
    /// the recorder writes them (pre-skip = the encoder's look-ahead, placed on the grid, the end
    /// trimmed to the input's length).
    fn encode_file(path: &Path, pcm: &[f32], channels: u8, lead_in: u64) -> u16 {
        let ch = if channels == 2 {
            opus::Channels::Stereo
        } else {
            opus::Channels::Mono
        };
        let mut enc = opus::Encoder::new(48_000, ch, opus::Application::Audio).unwrap();
        enc.set_bitrate(opus::Bitrate::Bits(128_000)).unwrap();
        let lookahead = enc.get_lookahead().unwrap() as u16;
        let mut w = OggOpusWriter::create_with_pre_skip(
            path,
            channels,
            7,
            "test",
            &["TITLE=Ann".into(), "PARLEY_PARTICIPANT=12".into()],
            lookahead,
        )
        .unwrap();
        let step = 960 * usize::from(channels);
        let frames = pcm.len() / usize::from(channels);
        // The encoder's delay: its first packet's sound plays `lookahead` late, which the
        // pre-skip takes back; `lead_in` samples of gap (empty frames) come first.
        let mut at = lead_in as i64;
        for c in pcm.chunks(step) {
            let mut frame = c.to_vec();
            frame.resize(step, 0.0);
            let packet = enc.encode_vec_float(&frame, 4000).unwrap();
            assert!(w.write_at(at, &packet).unwrap());
            at += 960;
        }
        // One more packet flushes the encoder's look-ahead.
        let packet = enc.encode_vec_float(&vec![0.0; step], 4000).unwrap();
        w.write_at(at, &packet).unwrap();
        w.finish_at(lead_in + frames as u64).unwrap();
        lookahead
    }

    fn read_all(r: &mut OggOpusReader) -> Vec<f32> {
        let mut out = Vec::new();
        let mut block = vec![0f32; 4_800 * r.channels() as usize];
        loop {
            let n = r.read(&mut block).unwrap();
            out.extend_from_slice(&block[..n * r.channels() as usize]);
            if n < 4_800 {
                break;
            }
        }
        out
    }

    #[test]
    fn decodes_a_tone_back_in_place_and_to_its_length() {
        let d = tmpdir("oggdec");
        let path = d.join("t.opus");
        // 2.5 s of a 440 Hz tone with a 300 Hz one on top, starting at 0.
        let x: Vec<f32> = tone(440.0, 0.4, 2.5)
            .iter()
            .zip(tone(300.0, 0.2, 2.5))
            .map(|(a, b)| a + b)
            .collect();
        let lookahead = encode_file(&path, &x, 1, 0);
        let mut r = OggOpusReader::open(&path).unwrap();
        assert_eq!(r.head().pre_skip, lookahead);
        assert_eq!((r.channels(), r.sample_rate()), (1, 48_000));
        assert_eq!(r.comment("title"), Some("Ann"));
        assert_eq!(r.comment("PARLEY_PARTICIPANT"), Some("12"));
        let y = read_all(&mut r);
        assert_eq!(
            y.len(),
            x.len(),
            "the length exactly (pre-skip and end trim)"
        );
        // Aligned by the pre-skip: no shift needed. (The first few ms are the encoder's start.)
        let c = correlation(&x[480..], &y[480..]);
        assert!(c >= 0.99, "correlation {c}");
        // Shifted by a millisecond either way it is worse: the alignment is the sample's.
        for shift in [-48i64, 48] {
            let (a, b) = if shift > 0 {
                (&x[480..x.len() - 48], &y[480 + 48..])
            } else {
                (&x[480 + 48..], &y[480..y.len() - 48])
            };
            assert!(correlation(a, b) < c, "shift {shift}");
        }
        assert_eq!((r.concealed, r.damaged), (0, false));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stereo_and_a_lead_in_of_empty_frames() {
        let d = tmpdir("oggdec2");
        let path = d.join("t.opus");
        let left = tone(500.0, 0.5, 1.0);
        let right = tone(700.0, 0.3, 1.0);
        let x: Vec<f32> = left
            .iter()
            .zip(&right)
            .flat_map(|(l, r)| [*l, *r])
            .collect();
        // Half a second of nothing (as when someone joins late), then the tone.
        encode_file(&path, &x, 2, 24_000);
        let mut r = OggOpusReader::open(&path).unwrap();
        assert_eq!(r.channels(), 2);
        let y = read_all(&mut r);
        assert_eq!(y.len(), (24_000 + 48_000) * 2);
        // Up to the tone's onset (less the codec's pre-echo of it, a few ms), silence.
        let silence = &y[..23_000 * 2];
        let loudest = silence.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        assert!(loudest < 1e-3, "empty frames decode to silence ({loudest})");
        let got = &y[24_000 * 2..];
        let c = correlation(&x[960..], &got[960..]);
        assert!(c >= 0.99, "stereo correlation {c}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn skipping_lands_on_the_same_samples_as_decoding_through() {
        let d = tmpdir("oggdec3");
        let path = d.join("t.opus");
        let x: Vec<f32> = tone(440.0, 0.4, 6.0)
            .iter()
            .enumerate()
            .map(|(i, s)| s * (1.0 + (i as f32 / 9_000.0).sin()) * 0.5)
            .collect();
        encode_file(&path, &x, 1, 0);
        let full = read_all(&mut OggOpusReader::open(&path).unwrap());
        for at in [0u64, 1, 333, 3_840, 3_841, 100_000, 200_001, 287_000] {
            let mut r = OggOpusReader::open(&path).unwrap();
            r.skip(at).unwrap();
            assert_eq!(r.position(), at);
            let mut block = vec![0f32; 960];
            let n = r.read(&mut block).unwrap();
            let want = &full[at as usize..(at as usize + 960).min(full.len())];
            assert_eq!(n, want.len(), "at {at}");
            let err = block[..n]
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 0.02, "at {at}: largest difference {err}");
        }
        // Past the end: nothing more.
        let mut r = OggOpusReader::open(&path).unwrap();
        r.skip(10 * 48_000).unwrap();
        assert_eq!(r.read(&mut [0f32; 10]).unwrap(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_long_gap_is_concealed_briefly_then_silent() {
        let d = tmpdir("oggdec5");
        let path = d.join("t.opus");
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio).unwrap();
        let lookahead = enc.get_lookahead().unwrap() as u16;
        let mut w = OggOpusWriter::create_with_pre_skip(&path, 1, 7, "t", &[], lookahead).unwrap();
        let x = tone(440.0, 0.4, 1.0);
        // A second of tone, a second with nothing sent (filled with empty frames), a second of tone.
        for start in [0i64, 96_000] {
            for (n, c) in x.chunks(960).enumerate() {
                let packet = enc.encode_vec_float(c, 4000).unwrap();
                assert!(w.write_at(start + n as i64 * 960, &packet).unwrap());
            }
        }
        w.finish_at(144_000).unwrap();
        let y = read_all(&mut OggOpusReader::open(&path).unwrap());
        assert_eq!(y.len(), 144_000);
        let quiet = &y[48_000 + CONCEAL_MAX as usize + 960..96_000 - 960];
        assert!(
            quiet.iter().all(|s| *s == 0.0),
            "silence after the concealment"
        );
        let tail = &y[48_000..48_000 + CONCEAL_MAX as usize];
        assert!(tail.iter().any(|s| s.abs() > 0.01), "concealed at first");
        let c = correlation(&x[960..], &y[96_000 + 960..]);
        assert!(c >= 0.99, "the tone after the gap: correlation {c}");
        // Skipping into the gap and reading on gives the same.
        let mut r = OggOpusReader::open(&path).unwrap();
        r.skip(70_000).unwrap();
        let mut block = vec![0f32; 40_000];
        assert_eq!(r.read(&mut block).unwrap(), 40_000);
        let err = block
            .iter()
            .zip(&y[70_000..110_000])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.02, "largest difference {err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_what_is_not_opus() {
        let d = tmpdir("oggdec4");
        let path = d.join("t.opus");
        std::fs::write(&path, b"not ogg at all").unwrap();
        assert!(OggOpusReader::open(&path).is_err());
        assert!(OpusHead::parse(b"OpusHead").is_err());
        let mut head = crate::ogg_opus::opus_head(6, 312, 48_000);
        head[18] = 1;
        assert!(OpusHead::parse(&head).is_err(), "surround is not read");
        assert_eq!(f32_to_i16(1.0), i16::MAX);
        assert_eq!(f32_to_i16(-1.0), i16::MIN);
        assert_eq!(f32_to_i16(f32::NAN), 0);
        assert_eq!(f32_to_i16(0.5), 16_384);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
