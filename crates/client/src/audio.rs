//! Audio to publish: Opus packets from a WAV file (encoded here), from an Ogg/Opus file (sent as they
//! are) or from a synthetic voice (talk spurts and silences, deterministic from a seed), each with its
//! RFC 6464 level.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::error::ClientError;

/// Opus in WebRTC always runs at 48 kHz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// The level of digital silence in RFC 6464 (-dBov).
pub const SILENT_LEVEL: u8 = 127;
/// Levels at or below this (-dBov) are flagged as voice in the header extension.
pub const VOICE_LEVEL: u8 = 50;
/// The largest Opus packet we produce.
const MAX_PACKET: usize = 1500;

/// What an audio source has for the next slot of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioFrame {
    /// An Opus packet lasting `samples` (per channel, at 48 kHz), `level` in -dBov (0 loudest, 127 silent).
    Packet {
        data: Vec<u8>,
        samples: u32,
        level: u8,
    },
    /// Silence: nothing is sent for `samples` (DTX), time moves on.
    Silence { samples: u32 },
}

/// A source of Opus packets, asked for one frame each time the previous one has been played out.
pub trait AudioSource: Send {
    /// The next frame, or `None` when the source is exhausted.
    fn next_frame(&mut self) -> Option<AudioFrame>;
}

/// RFC 6464 level of 16-bit PCM: the RMS in -dBov, 0 (full scale) to 127 (silence).
pub fn level_dbov(pcm: &[i16]) -> u8 {
    if pcm.is_empty() {
        return SILENT_LEVEL;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / pcm.len() as f64).sqrt() / 32768.0;
    if rms <= 0.0 {
        return SILENT_LEVEL;
    }
    let dbov = 20.0 * rms.log10();
    (-dbov).round().clamp(0.0, f64::from(SILENT_LEVEL)) as u8
}

/// A small deterministic PRNG (SplitMix64): the same seed gives the same voice.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5EED_0F9A_41E7)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// Encodes 20 ms frames of 48 kHz PCM to Opus.
pub struct PcmEncoder {
    encoder: opus::Encoder,
    channels: usize,
    out: Vec<u8>,
}

impl PcmEncoder {
    pub fn new(channels: usize, application: opus::Application) -> Result<PcmEncoder, ClientError> {
        let ch = match channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            n => {
                return Err(ClientError::Media(format!(
                    "{n} channels: only mono and stereo can be sent"
                )))
            }
        };
        let mut encoder = opus::Encoder::new(SAMPLE_RATE, ch, application)
            .map_err(|e| ClientError::Media(format!("Opus encoder: {e}")))?;
        let bitrate = if channels == 1 { 32_000 } else { 64_000 };
        encoder
            .set_bitrate(opus::Bitrate::Bits(bitrate))
            .map_err(|e| ClientError::Media(format!("Opus encoder: {e}")))?;
        Ok(PcmEncoder {
            encoder,
            channels,
            out: vec![0; MAX_PACKET],
        })
    }

    /// Encodes one frame of `FRAME_SAMPLES` samples per channel (interleaved).
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>, ClientError> {
        debug_assert_eq!(pcm.len(), FRAME_SAMPLES * self.channels);
        let n = self
            .encoder
            .encode(pcm, &mut self.out)
            .map_err(|e| ClientError::Media(format!("Opus encoding failed: {e}")))?;
        Ok(self.out[..n].to_vec())
    }
}

/// 16-bit PCM read from a WAV file, at 48 kHz.
#[derive(Debug, Clone)]
pub struct Pcm {
    pub channels: usize,
    /// Interleaved samples at 48 kHz.
    pub samples: Vec<i16>,
    /// The file's own rate (before resampling).
    pub source_rate: u32,
}

/// Reads a 16-bit PCM WAV file (mono or stereo). Other rates than 48 kHz are resampled (linear
/// interpolation, 8–192 kHz accepted).
pub fn read_wav(path: &Path) -> Result<Pcm, ClientError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ClientError::io(format!("reading {}", path.display()), e))?;
    parse_wav(&bytes).map_err(|why| ClientError::Media(format!("{}: {why}", path.display())))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a WAV file held in memory.
pub fn parse_wav(b: &[u8]) -> Result<Pcm, String> {
    if b.get(0..4) != Some(b"RIFF") || b.get(8..12) != Some(b"WAVE") {
        return Err("not a WAV file (no RIFF/WAVE header)".into());
    }
    let mut at = 12;
    let mut format: Option<(u16, usize, u32, u16)> = None;
    let mut data: Option<&[u8]> = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let size = u32_at(b, at + 4).unwrap_or(0) as usize;
        let body_start = at + 8;
        let body_end = body_start.saturating_add(size).min(b.len());
        let body = &b[body_start..body_end];
        match id {
            b"fmt " => {
                let (Some(mut tag), Some(channels), Some(rate), Some(bits)) = (
                    u16_at(body, 0),
                    u16_at(body, 2),
                    u32_at(body, 4),
                    u16_at(body, 14),
                ) else {
                    return Err("truncated fmt chunk".into());
                };
                if tag == 0xFFFE {
                    // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID.
                    tag = u16_at(body, 24).ok_or("truncated extensible fmt chunk")?;
                }
                format = Some((tag, usize::from(channels), rate, bits));
            }
            b"data" => {
                data = Some(body);
                break;
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body_start.saturating_add(size).saturating_add(size & 1);
    }
    let (tag, channels, rate, bits) = format.ok_or("no fmt chunk")?;
    let data = data.ok_or("no data chunk")?;
    if tag != 1 {
        return Err(format!(
            "WAV format {tag} is not supported: use 16-bit PCM (format 1)"
        ));
    }
    if bits != 16 {
        return Err(format!(
            "{bits}-bit samples are not supported: use 16-bit PCM"
        ));
    }
    if channels != 1 && channels != 2 {
        return Err(format!(
            "{channels} channels are not supported: use mono or stereo"
        ));
    }
    if !(8_000..=192_000).contains(&rate) {
        return Err(format!(
            "a sample rate of {rate} Hz is not supported: use 8000 to 192000 Hz (48000 is sent as is)"
        ));
    }
    let frames = data.len() / (2 * channels);
    let samples: Vec<i16> = data[..frames * 2 * channels]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let samples = if rate == SAMPLE_RATE {
        samples
    } else {
        resample_linear(&samples, channels, rate, SAMPLE_RATE)
    };
    Ok(Pcm {
        channels,
        samples,
        source_rate: rate,
    })
}

/// Linear-interpolation resampling of interleaved PCM. Good enough for bots and tests.
pub fn resample_linear(input: &[i16], channels: usize, from: u32, to: u32) -> Vec<i16> {
    let frames_in = input.len() / channels;
    if frames_in == 0 {
        return Vec::new();
    }
    let frames_out = (frames_in as u64 * u64::from(to) / u64::from(from)) as usize;
    let mut out = Vec::with_capacity(frames_out * channels);
    let step = f64::from(from) / f64::from(to);
    for i in 0..frames_out {
        let pos = i as f64 * step;
        let i0 = (pos.floor() as usize).min(frames_in - 1);
        let i1 = (i0 + 1).min(frames_in - 1);
        let frac = pos - i0 as f64;
        for c in 0..channels {
            let a = f64::from(input[i0 * channels + c]);
            let b = f64::from(input[i1 * channels + c]);
            out.push((a + (b - a) * frac).round() as i16);
        }
    }
    out
}

/// Writes 16-bit PCM as a WAV file (used by tests and examples).
pub fn wav_bytes(samples: &[i16], channels: u16, rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    b.extend_from_slice(&(channels * 2).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
}

/// Plays 48 kHz PCM (from a WAV file) as Opus, optionally looping.
pub struct WavSource {
    pcm: Pcm,
    encoder: PcmEncoder,
    position: usize,
    looping: bool,
    frame: Vec<i16>,
}

impl WavSource {
    pub fn open(path: &Path, looping: bool) -> Result<WavSource, ClientError> {
        let pcm = read_wav(path)?;
        if pcm.source_rate != SAMPLE_RATE {
            tracing::info!(
                "{}: resampling {} Hz to 48000 Hz",
                path.display(),
                pcm.source_rate
            );
        }
        WavSource::new(pcm, looping)
    }

    pub fn new(pcm: Pcm, looping: bool) -> Result<WavSource, ClientError> {
        if pcm.samples.is_empty() {
            return Err(ClientError::Media("the WAV file has no samples".into()));
        }
        let encoder = PcmEncoder::new(pcm.channels, opus::Application::Audio)?;
        Ok(WavSource {
            frame: Vec::with_capacity(FRAME_SAMPLES * pcm.channels),
            pcm,
            encoder,
            position: 0,
            looping,
        })
    }
}

impl AudioSource for WavSource {
    fn next_frame(&mut self) -> Option<AudioFrame> {
        let len = FRAME_SAMPLES * self.pcm.channels;
        if self.position >= self.pcm.samples.len() {
            if !self.looping {
                return None;
            }
            self.position = 0;
        }
        let end = (self.position + len).min(self.pcm.samples.len());
        self.frame.clear();
        self.frame
            .extend_from_slice(&self.pcm.samples[self.position..end]);
        self.frame.resize(len, 0);
        self.position = end;
        let level = level_dbov(&self.frame);
        match self.encoder.encode(&self.frame) {
            Ok(data) => Some(AudioFrame::Packet {
                data,
                samples: FRAME_SAMPLES as u32,
                level,
            }),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }
}

/// Sends the packets of an Ogg/Opus file as they are (mono or stereo, channel mapping family 0).
pub struct OggOpusSource {
    packets: Vec<(Vec<u8>, u32, u8)>,
    position: usize,
    looping: bool,
}

impl OggOpusSource {
    pub fn open(path: &Path, looping: bool) -> Result<OggOpusSource, ClientError> {
        let file = File::open(path)
            .map_err(|e| ClientError::io(format!("opening {}", path.display()), e))?;
        let bad = |why: String| ClientError::Media(format!("{}: {why}", path.display()));
        let mut reader = ogg::PacketReader::new(BufReader::new(file));
        let mut serial = None;
        let mut channels = 0usize;
        let mut headers = 0;
        let mut decoder = None;
        let mut pcm = vec![0i16; 5760 * 2];
        let mut packets = Vec::new();
        loop {
            let packet = match reader.read_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(bad(format!("not a readable Ogg file: {e}"))),
            };
            let stream = *serial.get_or_insert(packet.stream_serial());
            if packet.stream_serial() != stream {
                continue; // Only the first logical stream is played.
            }
            let data = packet.data;
            match headers {
                0 => {
                    if data.len() < 19 || &data[..8] != b"OpusHead" {
                        return Err(bad("not an Ogg/Opus file (no OpusHead)".into()));
                    }
                    channels = usize::from(data[9]);
                    let family = data[18];
                    if family != 0 || !(1..=2).contains(&channels) {
                        return Err(bad(format!(
                            "{channels} channels with mapping family {family}: only mono or stereo (family 0) can be sent"
                        )));
                    }
                    let ch = if channels == 1 {
                        opus::Channels::Mono
                    } else {
                        opus::Channels::Stereo
                    };
                    decoder = Some(
                        opus::Decoder::new(SAMPLE_RATE, ch)
                            .map_err(|e| bad(format!("Opus decoder: {e}")))?,
                    );
                    headers = 1;
                }
                1 => {
                    if data.len() < 8 || &data[..8] != b"OpusTags" {
                        return Err(bad("missing OpusTags header".into()));
                    }
                    headers = 2;
                }
                _ => {
                    let samples = match opus::packet::get_nb_samples(&data, SAMPLE_RATE) {
                        Ok(n) if n > 0 && n <= 5760 => n as u32,
                        _ => {
                            tracing::debug!("skipping an unreadable Opus packet");
                            continue;
                        }
                    };
                    // The level is measured on the decoded audio (decoding is cheap; sending is not changed).
                    let level = match decoder.as_mut().map(|d| d.decode(&data, &mut pcm, false)) {
                        Some(Ok(n)) => level_dbov(&pcm[..n * channels]),
                        _ => SILENT_LEVEL,
                    };
                    packets.push((data, samples, level));
                }
            }
        }
        if packets.is_empty() {
            return Err(bad("no audio packets".into()));
        }
        Ok(OggOpusSource {
            packets,
            position: 0,
            looping,
        })
    }
}

impl AudioSource for OggOpusSource {
    fn next_frame(&mut self) -> Option<AudioFrame> {
        if self.position >= self.packets.len() {
            if !self.looping {
                return None;
            }
            self.position = 0;
        }
        let (data, samples, level) = self.packets[self.position].clone();
        self.position += 1;
        if data.len() <= 1 {
            // A frame without data (DTX or a filled gap): send nothing, as an encoder in DTX would.
            return Some(AudioFrame::Silence { samples });
        }
        Some(AudioFrame::Packet {
            data,
            samples,
            level,
        })
    }
}

/// How a synthetic voice turns its PCM into packets.
pub enum SyntheticEncoding {
    /// Real Opus (a decoder hears the tones).
    Opus(Box<PcmEncoder>),
    /// Opus-shaped placeholders of this many bytes (TOC 0xf8, then zeros): no encoder CPU, for load tests
    /// where the payload is replaced by a latency probe anyway.
    Placeholder(usize),
}

/// A voice-like test signal: talk spurts (1–3 s of a buzzy tone with harmonics, syllable rhythm and a
/// little noise) separated by silences during which nothing is sent (DTX). Deterministic from its seed.
/// It starts with a talk spurt.
pub struct SyntheticVoice {
    rng: Rng,
    encoding: SyntheticEncoding,
    /// Share of time spent talking, 0..=1.
    talk_fraction: f64,
    talking: bool,
    /// Samples left in the current spurt or silence.
    left: u64,
    /// Samples into the current spurt.
    t: u64,
    f0: f64,
    phase: f64,
    pcm: Vec<i16>,
    /// Frames left before the source ends (None: endless).
    frames_left: Option<u64>,
}

impl SyntheticVoice {
    /// `talk_fraction` is the share of time spent talking (0 to 1; 1 = never silent).
    pub fn new(seed: u64, talk_fraction: f64, encoding: SyntheticEncoding) -> SyntheticVoice {
        let mut v = SyntheticVoice {
            rng: Rng::new(seed),
            encoding,
            talk_fraction: talk_fraction.clamp(0.0, 1.0),
            talking: false,
            left: 0,
            t: 0,
            f0: 150.0,
            phase: 0.0,
            pcm: vec![0; FRAME_SAMPLES],
            frames_left: None,
        };
        v.start_spurt();
        v
    }

    /// A synthetic voice encoded with Opus.
    pub fn encoded(seed: u64, talk_fraction: f64) -> Result<SyntheticVoice, ClientError> {
        let encoder = PcmEncoder::new(1, opus::Application::Voip)?;
        Ok(SyntheticVoice::new(
            seed,
            talk_fraction,
            SyntheticEncoding::Opus(Box::new(encoder)),
        ))
    }

    /// Ends the source after `seconds`.
    pub fn limit_seconds(mut self, seconds: f64) -> SyntheticVoice {
        self.frames_left = Some((seconds * 50.0).ceil().max(0.0) as u64);
        self
    }

    fn start_spurt(&mut self) {
        self.talking = true;
        self.left = (self.rng.range(1.0, 3.0) * f64::from(SAMPLE_RATE)) as u64;
        self.t = 0;
        self.f0 = self.rng.range(100.0, 240.0);
    }

    fn start_silence(&mut self) {
        self.talking = false;
        // Talk spurts last 2 s on average: choose silences so the share of talk is as asked.
        let f = self.talk_fraction;
        let mean = if f >= 1.0 {
            0.0
        } else if f <= 0.0 {
            f64::from(u32::MAX)
        } else {
            2.0 * (1.0 - f) / f
        };
        self.left = (self.rng.range(0.5 * mean, 1.5 * mean) * f64::from(SAMPLE_RATE)) as u64;
    }

    /// Synthesises the frame into `pcm`, every `stride`-th sample only (placeholders need just the level);
    /// returns how many samples were written.
    fn fill_pcm(&mut self, stride: usize) -> usize {
        let rate = f64::from(SAMPLE_RATE);
        let total = self.t + self.left;
        let table = wavetable();
        let mut syllable = 0.0;
        let mut step = 0.0;
        let count = FRAME_SAMPLES / stride;
        for k in 0..count {
            let i = k * stride;
            let n = self.t + i as u64;
            if i.is_multiple_of(48) {
                // Slow modulations, updated every millisecond: a 4 Hz syllable rhythm and a pitch wobble.
                let secs = n as f64 / rate;
                syllable = 0.6 + 0.4 * (std::f64::consts::TAU * 4.0 * secs).sin();
                let f = self.f0 * (1.0 + 0.05 * (std::f64::consts::TAU * 1.5 * secs).sin());
                step = f / rate * stride as f64;
            }
            // 30 ms fades at both ends of the spurt.
            let edge = ((n as f64).min(total.saturating_sub(n) as f64) / (0.03 * rate)).min(1.0);
            self.phase = (self.phase + step).fract();
            let tone = table[(self.phase * WAVETABLE_LEN as f64) as usize % WAVETABLE_LEN];
            let noise = self.rng.range(-1.0, 1.0) * 0.08;
            let s = 0.22 * edge * syllable * (tone + noise);
            // Float-to-int casts saturate.
            self.pcm[k] = (s * 32767.0) as i16;
        }
        count
    }
}

const WAVETABLE_LEN: usize = 4096;

/// One period of a buzzy tone (fundamental and two harmonics), normalised to ±1.
fn wavetable() -> &'static [f64; WAVETABLE_LEN] {
    static TABLE: std::sync::OnceLock<Box<[f64; WAVETABLE_LEN]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0.0; WAVETABLE_LEN]);
        for (i, v) in t.iter_mut().enumerate() {
            let p = std::f64::consts::TAU * i as f64 / WAVETABLE_LEN as f64;
            *v = (p.sin() + 0.5 * (2.0 * p).sin() + 0.25 * (3.0 * p).sin()) / 1.75;
        }
        t
    })
}

impl AudioSource for SyntheticVoice {
    fn next_frame(&mut self) -> Option<AudioFrame> {
        if let Some(left) = &mut self.frames_left {
            if *left == 0 {
                return None;
            }
            *left -= 1;
        }
        let samples = FRAME_SAMPLES as u32;
        if self.left == 0 {
            if self.talking && self.talk_fraction < 1.0 {
                self.start_silence();
            } else {
                self.start_spurt();
            }
        }
        if !self.talking {
            self.left = self.left.saturating_sub(u64::from(samples));
            return Some(AudioFrame::Silence { samples });
        }
        let stride = match self.encoding {
            SyntheticEncoding::Opus(_) => 1,
            SyntheticEncoding::Placeholder(_) => 4,
        };
        let count = self.fill_pcm(stride);
        self.t += u64::from(samples);
        self.left = self.left.saturating_sub(u64::from(samples));
        let level = level_dbov(&self.pcm[..count]);
        let data = match &mut self.encoding {
            SyntheticEncoding::Opus(encoder) => match encoder.encode(&self.pcm) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("{e}");
                    return None;
                }
            },
            SyntheticEncoding::Placeholder(len) => {
                let mut d = vec![0u8; (*len).max(1)];
                d[0] = PROBE_TOC;
                d
            }
        };
        Some(AudioFrame::Packet {
            data,
            samples,
            level,
        })
    }
}

/// TOC byte of probe packets: CELT-only, fullband, 20 ms, mono, one frame.
pub const PROBE_TOC: u8 = 0xf8;
/// Follows the send time in a probe packet, so ordinary Opus packets are not taken for probes.
pub const PROBE_MAGIC: [u8; 4] = *b"PRLY";
/// The smallest probe packet: TOC, 8 bytes of send time, magic.
pub const PROBE_MIN_LEN: usize = 1 + 8 + PROBE_MAGIC.len();

/// Turns `data` into a latency probe of the same length (at least [`PROBE_MIN_LEN`]): TOC, then the send
/// time in nanoseconds since the process epoch (big endian), then the magic.
pub fn make_probe(data: &mut Vec<u8>, send_nanos: u64) {
    if data.len() < PROBE_MIN_LEN {
        data.resize(PROBE_MIN_LEN, 0);
    }
    data[0] = PROBE_TOC;
    data[1..9].copy_from_slice(&send_nanos.to_be_bytes());
    data[9..PROBE_MIN_LEN].copy_from_slice(&PROBE_MAGIC);
}

/// The send time of a probe packet, if `data` is one.
pub fn read_probe(data: &[u8]) -> Option<u64> {
    if data.len() < PROBE_MIN_LEN || data[0] != PROBE_TOC || data[9..PROBE_MIN_LEN] != PROBE_MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(data[1..9].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_dbov(&[0; 960]), 127);
        let full: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert_eq!(level_dbov(&full), 0);
        let quiet: Vec<i16> = full.iter().map(|s| s / 100).collect();
        assert_eq!(level_dbov(&quiet), 40);
    }

    #[test]
    fn wav_round_trip_and_resample() {
        let tone: Vec<i16> = (0..16_000)
            .map(|i| ((i as f64 * 0.1).sin() * 10_000.0) as i16)
            .collect();
        let pcm = parse_wav(&wav_bytes(&tone, 1, 16_000)).unwrap();
        assert_eq!(pcm.channels, 1);
        assert_eq!(pcm.source_rate, 16_000);
        assert_eq!(pcm.samples.len(), 48_000);
        let same = parse_wav(&wav_bytes(&tone, 2, 48_000)).unwrap();
        assert_eq!(same.samples, tone);
        assert!(parse_wav(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(parse_wav(b"hello").is_err());
        let mut b = wav_bytes(&tone, 1, 4_000);
        assert!(parse_wav(&b).unwrap_err().contains("4000 Hz"));
        b[34] = 8; // 8-bit
        assert!(parse_wav(&b).is_err());
    }

    #[test]
    fn synthetic_voice_is_deterministic_and_has_silences() {
        let run = |seed| {
            let mut v = SyntheticVoice::new(seed, 0.5, SyntheticEncoding::Placeholder(40));
            (0..1000)
                .map(|_| v.next_frame().unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        let talking = a
            .iter()
            .filter(|f| matches!(f, AudioFrame::Packet { .. }))
            .count();
        assert!(matches!(a[0], AudioFrame::Packet { .. }), "starts talking");
        assert!(
            (200..800).contains(&talking),
            "{talking} of 1000 frames talk"
        );
        for f in &a {
            if let AudioFrame::Packet { level, .. } = f {
                assert!(*level < 60, "voice level {level}");
            }
        }
    }

    #[test]
    fn encoded_voice_decodes() {
        let mut v = SyntheticVoice::encoded(1, 1.0).unwrap();
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 960];
        let mut loud = 0;
        for _ in 0..50 {
            let Some(AudioFrame::Packet { data, .. }) = v.next_frame() else {
                panic!("always talking")
            };
            let n = dec.decode(&data, &mut pcm, false).unwrap();
            if level_dbov(&pcm[..n]) < 40 {
                loud += 1;
            }
        }
        assert!(loud > 40, "{loud}");
    }

    #[test]
    fn probes() {
        let mut d = vec![1, 2, 3];
        make_probe(&mut d, 123_456_789);
        assert_eq!(d.len(), PROBE_MIN_LEN);
        assert_eq!(read_probe(&d), Some(123_456_789));
        let mut long = vec![0; 80];
        make_probe(&mut long, 5);
        assert_eq!(long.len(), 80);
        assert_eq!(read_probe(&long), Some(5));
        assert_eq!(read_probe(&[0xf8, 0, 0]), None);
        assert_eq!(read_probe(&[0xf8; 40]), None);
    }
}
