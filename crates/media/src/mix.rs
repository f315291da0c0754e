//! The room's mixed take: every voice decoded (libopus) onto the session clock, denoised (RNNoise),
//! summed, limited (no clipping, peaks ≤ −1 dBFS), then encoded to Ogg/Opus and, on request, written
//! as WAV and FLAC — one second at a time across all tracks, so memory stays the same for an hour as for
//! a minute. Packets are placed by the same rule as the per-track files ([`crate::placement`]), so the
//! mix lines up with them.
//!
//! [`mix_window`] makes only a window of that mix (a segment of a long running recording). Placement
//! depends on every packet before, so each voice still places all its packets from the start, but
//! only counts the samples they stand for: decoding, denoising, summing and limiting begin a
//! pre-roll before the window ([`MIX_PREROLL_US`], [`MIX_PREROLL_SOUND_US`]), and what is made
//! before it is dropped. The one-second steps stay on the whole mix's grid, so every voice asks its
//! decoder for the same pieces as the whole mix does (how a gap is split changes libopus'
//! concealment).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::denoise::{self, Denoiser};
use crate::error::Result;
use crate::flac::FlacWriter;
use crate::journal::TrackMedia;
use crate::limiter::Limiter;
use crate::ogg_opus::OggOpusWriter;
use crate::opus_packet::packet_samples;
use crate::opus_track::{samples_of_us, us_of_samples, SessionWindow};
use crate::placement::{self, Placement, GAP_STEP};
use crate::track::{Track, TrackPackets};
use crate::wav::WavWriter;
use crate::SAMPLE_RATE;

/// Samples mixed per step (one second).
pub const CHUNK: usize = SAMPLE_RATE as usize;
/// Opus frames of the mix: 20 ms.
const FRAME: usize = 960;
/// Gaps up to this long (samples) are concealed by libopus' PLC (and comfort noise after DTX); longer
/// ones are silence after it. Denoising removes comfort noise anyway, so it conceals less.
const CONCEAL_MAX: u64 = 500 * 48;
const CONCEAL_MAX_DENOISED: u64 = 60 * 48;
/// A window of the mix is made from at least this long before it, and that is dropped: each voice's
/// decoder and denoiser and the limiter start from nothing there instead of from what came before,
/// and need time to get where the whole mix's are. The limiter's gain recovers from a peak with a
/// 100 ms time constant (e^-10 of a difference is left after 1 s). The voices need more: see
/// [`MIX_PREROLL_SOUND_US`].
pub const MIX_PREROLL_US: u64 = 1_000_000;
/// Each voice is decoded and denoised from where its last 5 s of sound (packets) before the window
/// begin: silence (a pause, DTX) brings neither its decoder nor its denoiser closer to the whole
/// mix's, which remember the sound before it. libopus converges within 80 ms of packets (RFC 7845
/// §4.2) but its concealment remembers the noise floor longer; RNNoise's recurrent state follows
/// speech slowly: from nothing, its output is within about -40 dB of the whole mix's after a second
/// of speech and -55 to -65 dB after five (measured by the windowed mix's test; a second costs about
/// 10 ms of CPU per voice).
pub const MIX_PREROLL_SOUND_US: u64 = 5_000_000;
/// But no further back than this: a voice silent longer is taken up with what it has.
const MIX_PREROLL_MAX_US: u64 = 30_000_000;

/// How far before a window a windowed mix starts, in samples: `time` at least (the limiter), and
/// for each voice `sound` of its packets, within `max`.
#[derive(Debug, Clone, Copy)]
struct Preroll {
    time: u64,
    sound: u64,
    max: u64,
}

impl Preroll {
    const NONE: Preroll = Preroll {
        time: 0,
        sound: 0,
        max: 0,
    };

    fn default_for_windows() -> Preroll {
        Preroll {
            time: samples_of_us(MIX_PREROLL_US),
            sound: samples_of_us(MIX_PREROLL_SOUND_US),
            max: samples_of_us(MIX_PREROLL_MAX_US),
        }
    }
}

/// Where (in its decoder's samples, `Voice::pos`) `track` is decoded from for a mix made from
/// `start` whose window begins at `from`: `start`, or the start of the packet from which its last
/// `preroll.sound` of packets before `from` runs, where that is earlier (within `preroll.max`). This
/// replays the voice's placement (reading its journal once more, decoding nothing).
fn decode_start(track: &Track, start: u64, from: u64, preroll: Preroll) -> Result<u64> {
    let delay = u64::from(crate::PRE_SKIP);
    let (start, from) = (start + delay, from + delay);
    if start == delay {
        return Ok(0);
    }
    let earliest = from.saturating_sub(preroll.max);
    let mut recent: VecDeque<(u64, u64)> = VecDeque::new();
    let mut sound = 0;
    let mut pos = 0;
    for packet in track.packets()? {
        let samples = packet_samples(&packet.payload);
        let Placement::At { gap } = placement::place(pos, packet.session_sample(), samples) else {
            continue;
        };
        let at = pos + gap;
        if at >= from {
            break;
        }
        pos = at + samples;
        recent.push_back((at, samples));
        sound += samples;
        while let Some(&(first, n)) = recent.front() {
            if sound - n < preroll.sound && first >= earliest {
                break;
            }
            sound -= n;
            recent.pop_front();
        }
    }
    Ok(recent.front().map_or(start, |&(first, _)| first.min(start)))
}

/// Where the mix goes; each output is optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct MixOutputs<'a> {
    pub ogg: Option<&'a Path>,
    pub wav: Option<&'a Path>,
    pub flac: Option<&'a Path>,
}

#[derive(Debug, Clone)]
pub struct MixSettings {
    /// Run each voice through RNNoise.
    pub denoise: bool,
    /// The Ogg/Opus mix's bitrate (bit/s).
    pub bitrate: i32,
    /// Threads decoding and denoising voices; 0: one per core. One by default: finalizing runs beside
    /// live rooms, whose media workers must keep their cores.
    pub threads: usize,
}

impl Default for MixSettings {
    fn default() -> Self {
        MixSettings {
            denoise: true,
            bitrate: 64_000,
            threads: 1,
        }
    }
}

/// One voice's part in the mix.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MixTrack {
    pub participant_id: u64,
    pub name: String,
    pub packets: u64,
    /// Packets libopus refused (concealed instead).
    pub decode_errors: u64,
    /// Gaps concealed by PLC, and silence put in, in µs.
    pub concealed_us: u64,
    pub silence_us: u64,
    pub drift_dropped: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub too_late: u64,
    pub journal_truncated: bool,
    /// Journal records that were not RTP of the track's payload type.
    pub skipped: u64,
    /// 10 ms frames RNNoise ran on (silence is skipped).
    pub denoised_frames: u64,
}

/// A journal left out of the mix, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedJournal {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MixReport {
    pub duration_us: u64,
    pub samples: u64,
    pub tracks: Vec<MixTrack>,
    pub skipped: Vec<SkippedJournal>,
    /// Highest sample after the limiter (dBFS), the deepest gain reduction (dB, ≤ 0) and how many
    /// samples were turned down.
    pub peak_dbfs: f64,
    pub min_gain_db: f64,
    pub limited_samples: u64,
    pub ogg_bytes: Option<u64>,
    pub wav_bytes: Option<u64>,
    pub flac_bytes: Option<u64>,
}

/// One voice being decoded onto the session timeline.
struct Voice {
    packets: TrackPackets,
    decoder: opus::Decoder,
    denoiser: Option<Denoiser>,
    conceal_max: u64,
    /// Session samples decoded so far.
    pos: u64,
    /// Silence still to put before `next` (of it, `conceal` by PLC).
    gap: u64,
    conceal: u64,
    next: Option<Vec<u8>>,
    decoded_any: bool,
    /// Decoded samples still to drop: the sender's encoder delay (what a file's pre-skip removes).
    skip: usize,
    /// Packets are decoded from the one that reaches past `decode_from` (in `pos`'s samples) on;
    /// those before are placed and counted only (a window's voice).
    decode_from: u64,
    decoding: bool,
    /// Samples (after `skip`) that went to the denoiser, or to `ready` without it, decoded or not.
    fed: u64,
    /// Silence standing for output that was placed but not decoded, before `ready`'s samples.
    undecoded: u64,
    /// Output ready for the mix after `undecoded`: its last sample is the session's sample
    /// `pos - 1` less the denoiser's latency.
    ready: VecDeque<f32>,
    pcm: Vec<f32>,
    report: MixTrack,
}

impl Voice {
    /// A voice that decodes from `decode_from` (its `pos`; 0: from the start).
    fn new(track: &Track, settings: &MixSettings, decode_from: u64) -> Result<Voice> {
        Ok(Voice {
            packets: track.packets()?,
            decoder: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?,
            denoiser: settings.denoise.then(Denoiser::new),
            conceal_max: if settings.denoise {
                CONCEAL_MAX_DENOISED
            } else {
                CONCEAL_MAX
            },
            pos: 0,
            gap: 0,
            conceal: 0,
            next: None,
            decoded_any: false,
            skip: usize::from(crate::PRE_SKIP),
            decode_from,
            decoding: decode_from == 0,
            fed: 0,
            undecoded: 0,
            ready: VecDeque::with_capacity(2 * CHUNK),
            pcm: vec![0.0; 5_760],
            report: MixTrack {
                participant_id: track.header.participant_id,
                name: track.header.name.clone(),
                skipped: track.stats.skipped,
                ..MixTrack::default()
            },
        })
    }

    /// Adds this voice's next `out.len()` samples into `out`.
    fn render(&mut self, out: &mut [f32]) {
        let silent = self.take(out.len());
        let n = out.len() - silent;
        for (o, s) in out[silent..].iter_mut().zip(self.ready.drain(..n)) {
            *o += s;
        }
    }

    /// Goes past this voice's next `n` samples (before a window's pre-roll, where nothing is mixed).
    fn pass(&mut self, n: usize) {
        let silent = self.take(n);
        self.ready.drain(..n - silent);
    }

    /// Makes `n` samples ready; returns how many of them, at the front, are undecoded silence (taken
    /// already: the rest is in `ready`).
    fn take(&mut self, n: usize) -> usize {
        while self.undecoded + (self.ready.len() as u64) < n as u64 {
            let want = n as u64 - self.undecoded - self.ready.len() as u64;
            self.produce(want.div_ceil(GAP_STEP) * GAP_STEP);
        }
        let silent = self.undecoded.min(n as u64);
        self.undecoded -= silent;
        silent as usize
    }

    /// Decodes some more: part of a gap (at most `want` samples), a packet, or silence past the end.
    fn produce(&mut self, want: u64) {
        if self.gap > 0 {
            let n = self.gap.min(want);
            let concealed = if self.conceal > 0 {
                let m = n.min(self.conceal);
                self.conceal -= m;
                self.report.concealed_us += us_of_samples(m);
                if self.decoding {
                    self.conceal_into(m as usize);
                } else {
                    self.feed_undecoded(m);
                }
                m
            } else {
                0
            };
            let silent = (n - concealed) as usize;
            if silent > 0 {
                self.report.silence_us += us_of_samples(silent as u64);
                if self.decoding {
                    self.pcm.clear();
                    self.pcm.resize(silent, 0.0);
                    self.feed(silent);
                } else {
                    self.feed_undecoded(silent as u64);
                }
            }
            self.gap -= n;
            return;
        }
        if let Some(packet) = self.next.take() {
            let n = packet_samples(&packet) as usize;
            if !self.decoding {
                self.feed_undecoded(n as u64);
                self.report.packets += 1;
                self.decoded_any = true;
                return;
            }
            self.pcm.resize(self.pcm.len().max(n), 0.0);
            match self
                .decoder
                .decode_float(&packet, &mut self.pcm[..n], false)
            {
                Ok(got) if got == n => self.feed(n),
                _ => {
                    self.report.decode_errors += 1;
                    self.conceal_into(n);
                }
            }
            self.report.packets += 1;
            self.decoded_any = true;
            return;
        }
        match self.packets.next() {
            Some(p) => {
                let samples = packet_samples(&p.payload);
                match placement::place(self.pos, p.session_sample(), samples) {
                    Placement::Drop => self.report.drift_dropped += 1,
                    Placement::At { gap } => {
                        if !self.decoding && self.pos + gap + samples > self.decode_from {
                            self.start_decoding();
                        }
                        self.gap = gap;
                        self.conceal = if self.decoded_any {
                            gap.min(self.conceal_max)
                        } else {
                            0
                        };
                        self.next = Some(p.payload);
                    }
                }
            }
            None if !self.decoding => self.feed_undecoded(want),
            None => {
                // Past the track's end: silence as long as the mix asks.
                self.pcm.clear();
                self.pcm.resize(want as usize, 0.0);
                self.feed(want as usize);
            }
        }
    }

    /// `n` samples of packet loss concealment into `pcm`, then fed.
    fn conceal_into(&mut self, n: usize) {
        self.pcm.resize(self.pcm.len().max(n), 0.0);
        if !matches!(self.decoder.decode_float(&[], &mut self.pcm[..n], false), Ok(got) if got == n)
        {
            self.pcm[..n].fill(0.0);
        }
        self.feed(n);
    }

    /// Takes `n` samples onto the timeline without decoding them: the output they and the denoiser
    /// would have given is counted as silence.
    fn feed_undecoded(&mut self, n: u64) {
        self.pos += n;
        let start = (self.skip as u64).min(n);
        self.skip -= start as usize;
        let fed = self.fed + (n - start);
        self.undecoded += match self.denoiser {
            Some(_) => Denoiser::output_after(fed) - Denoiser::output_after(self.fed),
            None => fed - self.fed,
        };
        self.fed = fed;
    }

    /// From here on packets are decoded, by the decoder and denoiser that have had nothing yet. The
    /// whole mix's denoiser would hold the last samples fed (the latency and a part frame): the fresh
    /// one gets as many zeros in their place, so it gives out its first sample where that one would
    /// give out its next, and the voice stays on the session's samples.
    fn start_decoding(&mut self) {
        self.decoding = true;
        if let Some(d) = &mut self.denoiser {
            let held = self.fed % denoise::FRAME as u64 + denoise::LATENCY as u64;
            let zeros = vec![0.0; self.fed.min(held) as usize];
            d.push(&zeros, &mut self.ready);
            debug_assert!(self.ready.is_empty(), "the zeros give nothing out");
        }
    }

    /// Takes `pcm[..n]` (libopus' ±1.0) onto the timeline, through the denoiser (the i16 range).
    fn feed(&mut self, n: usize) {
        self.pos += n as u64;
        let start = self.skip.min(n);
        self.skip -= start;
        self.fed += (n - start) as u64;
        let pcm = &mut self.pcm[start..n];
        for s in pcm.iter_mut() {
            *s *= 32_768.0;
        }
        match &mut self.denoiser {
            Some(d) => d.push(pcm, &mut self.ready),
            None => self.ready.extend(pcm.iter().copied()),
        }
    }

    fn finish(mut self) -> MixTrack {
        let stats = &self.packets.stats;
        self.report.lost = stats.lost;
        self.report.duplicates = stats.duplicates;
        self.report.too_late = stats.too_late;
        self.report.journal_truncated = self.packets.truncated();
        self.report.denoised_frames = self.denoiser.as_ref().map_or(0, |d| d.frames);
        self.report
    }
}

/// The mix encoded as Ogg/Opus, 20 ms frames.
struct OpusMixEncoder {
    encoder: opus::Encoder,
    writer: OggOpusWriter,
    pending: Vec<f32>,
    rtp: u64,
    encoded: u64,
    lookahead: u64,
    packet: Vec<u8>,
}

impl OpusMixEncoder {
    fn create(path: &Path, bitrate: i32) -> Result<OpusMixEncoder> {
        let mut encoder =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Audio)?;
        encoder.set_bitrate(opus::Bitrate::Bits(bitrate))?;
        let lookahead = encoder.get_lookahead()?.clamp(0, 6_000) as u16;
        let comments = vec!["TITLE=mix".to_string()];
        let writer = OggOpusWriter::create_with_pre_skip(
            path,
            1,
            0x4d49_5821,
            "parley",
            &comments,
            lookahead,
        )?;
        Ok(OpusMixEncoder {
            encoder,
            writer,
            pending: Vec::with_capacity(FRAME),
            rtp: 0,
            encoded: 0,
            lookahead: u64::from(lookahead),
            packet: vec![0; 4_000],
        })
    }

    /// Samples in the i16 range.
    fn push(&mut self, samples: &[f32]) -> Result<()> {
        for s in samples {
            self.pending.push(s / 32_768.0);
            if self.pending.len() == FRAME {
                self.encode_frame()?;
            }
        }
        Ok(())
    }

    fn encode_frame(&mut self) -> Result<()> {
        let len = self.encoder.encode_float(&self.pending, &mut self.packet)?;
        self.writer.write(self.rtp, &self.packet[..len])?;
        self.rtp += FRAME as u64;
        self.encoded += FRAME as u64;
        self.pending.clear();
        Ok(())
    }

    /// Encodes until the encoder's delay is out too, ends the file at `total` samples.
    fn finish(mut self, total: u64) -> Result<u64> {
        while self.encoded < total + self.lookahead {
            self.pending.resize(FRAME, 0.0);
            self.encode_frame()?;
        }
        let path = self.writer.path.clone();
        self.writer.finish_at(total)?;
        Ok(std::fs::metadata(path)?.len())
    }
}

fn to_i16(s: f32) -> i16 {
    s.round().clamp(-32_768.0, 32_767.0) as i16
}

/// Mixes the Opus `journals` (one per voice) of a recording lasting `duration_us` into `outputs`, with
/// the default settings (denoised, 64 kbit/s).
pub fn mix_tracks(
    journals: &[&Path],
    outputs: MixOutputs<'_>,
    duration_us: u64,
) -> Result<MixReport> {
    mix_tracks_with(journals, outputs, duration_us, &MixSettings::default())
}

/// [`mix_tracks`] with settings. A journal that cannot be read, or is not Opus audio, is left out and
/// named in the report's `skipped`; the mix goes on with the others.
pub fn mix_tracks_with(
    journals: &[&Path],
    outputs: MixOutputs<'_>,
    duration_us: u64,
    settings: &MixSettings,
) -> Result<MixReport> {
    let window = SessionWindow::whole(duration_us);
    mix_span(
        journals,
        outputs,
        duration_us,
        window,
        Preroll::NONE,
        settings,
    )
}

/// `window` of the mix [`mix_tracks_with`] makes of a recording lasting `duration_us` (the window is
/// cut to it): frame 0 of the outputs is the window's start, and only the window and a pre-roll
/// before it are decoded, denoised and limited: [`MIX_PREROLL_US`], and for each voice from where
/// its last [`MIX_PREROLL_SOUND_US`] of sound before the window begin. The samples are the whole
/// mix's as far as its decoders, denoisers and limiter have converged in that pre-roll: exactly
/// where the pre-roll reaches the recording's start; otherwise the denoiser's state leaves about
/// -55 dB of difference (see the test), without it a few 16-bit steps. The Ogg/Opus output is
/// encoded afresh from the window's start. The report's `samples`, `duration_us` and peak are the
/// window's; its voices' counts cover the recording up to the window's end (decode errors and
/// denoised frames only what was decoded), the limiter's from the pre-roll on.
pub fn mix_window(
    journals: &[&Path],
    outputs: MixOutputs<'_>,
    duration_us: u64,
    window: SessionWindow,
    settings: &MixSettings,
) -> Result<MixReport> {
    let preroll = Preroll::default_for_windows();
    mix_span(journals, outputs, duration_us, window, preroll, settings)
}

/// The mix of `window`, made from `preroll` before it.
fn mix_span(
    journals: &[&Path],
    outputs: MixOutputs<'_>,
    duration_us: u64,
    window: SessionWindow,
    preroll: Preroll,
    settings: &MixSettings,
) -> Result<MixReport> {
    let total = samples_of_us(duration_us);
    let (from, to) = window.samples_within(total);
    // Mixed from `start`; up to `end`, since the limiter's output up to `to` looks that far ahead.
    let start = from.saturating_sub(preroll.time);
    let end = if to > from {
        (to + crate::limiter::LOOKAHEAD as u64).min(total)
    } else {
        0
    };
    let mut report = MixReport {
        duration_us: window.to_us.min(duration_us).saturating_sub(window.from_us),
        ..MixReport::default()
    };
    let mut voices = Vec::new();
    for path in journals {
        let track = match Track::scan(path) {
            Ok(t) => t,
            Err(e) => {
                report.skipped.push(SkippedJournal {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if track.header.media != TrackMedia::Audio
            || !track.header.codec.eq_ignore_ascii_case("opus")
        {
            report.skipped.push(SkippedJournal {
                path: path.to_path_buf(),
                reason: format!(
                    "not Opus audio: {:?} {}",
                    track.header.media, track.header.codec
                ),
            });
            continue;
        }
        let decode_from = decode_start(&track, start, from, preroll)?;
        voices.push(Voice::new(&track, settings, decode_from)?);
    }

    let mut ogg = outputs
        .ogg
        .map(|p| OpusMixEncoder::create(p, settings.bitrate))
        .transpose()?;
    let mut wav = outputs
        .wav
        .map(|p| WavWriter::create(p, SAMPLE_RATE, 1))
        .transpose()?;
    let mut flac = outputs
        .flac
        .map(|p| FlacWriter::create(p, SAMPLE_RATE, 1))
        .transpose()?;

    let threads = match settings.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .clamp(1, voices.len().max(1));
    let per_thread = voices.len().div_ceil(threads).max(1);
    let mut limiter = Limiter::default();
    let mut mix = vec![0f32; CHUNK];
    let mut limited = Vec::with_capacity(CHUNK + crate::limiter::LOOKAHEAD);
    let mut pcm16 = Vec::with_capacity(CHUNK + crate::limiter::LOOKAHEAD);
    let mut peak = 0i32;
    let mut done = 0u64;
    let mut write_out = |samples: &[f32], peak: &mut i32| -> Result<()> {
        pcm16.clear();
        pcm16.extend(samples.iter().map(|s| to_i16(*s)));
        *peak = pcm16.iter().fold(*peak, |m, s| m.max(i32::from(*s).abs()));
        if let Some(o) = ogg.as_mut() {
            o.push(samples)?;
        }
        if let Some(w) = wav.as_mut() {
            w.write(&pcm16)?;
        }
        if let Some(f) = flac.as_mut() {
            f.write(&pcm16)?;
        }
        Ok(())
    };
    // The mix's sample of the limiter's next output.
    let mut limited_at = None;
    // The part of limited samples from mix sample `at` on that lies in the window.
    let in_window = |samples: &[f32], at: u64| -> std::ops::Range<usize> {
        let len = samples.len() as u64;
        let lo = from.saturating_sub(at).min(len);
        lo as usize..to.saturating_sub(at).clamp(lo, len) as usize
    };
    while done < end {
        // Steps on the whole mix's grid, the last one too (see the module's doc).
        let n = (total - done).min(CHUNK as u64) as usize;
        if done + (n as u64) <= start {
            for v in &mut voices {
                v.pass(n);
            }
            done += n as u64;
            continue;
        }
        let at = *limited_at.get_or_insert(done);
        let mix = &mut mix[..n];
        mix.fill(0.0);
        if threads == 1 {
            for v in &mut voices {
                v.render(mix);
            }
        } else {
            let parts: Vec<Vec<f32>> = std::thread::scope(|s| {
                let handles: Vec<_> = voices
                    .chunks_mut(per_thread)
                    .map(|group| {
                        s.spawn(move || {
                            let mut part = vec![0f32; n];
                            for v in group {
                                v.render(&mut part);
                            }
                            part
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| vec![0f32; n]))
                    .collect()
            });
            for part in parts {
                for (m, p) in mix.iter_mut().zip(part) {
                    *m += p;
                }
            }
        }
        limited.clear();
        limiter.process(mix, &mut limited);
        write_out(&limited[in_window(&limited, at)], &mut peak)?;
        limited_at = Some(at + limited.len() as u64);
        done += n as u64;
    }
    if done == total {
        let at = limited_at.unwrap_or(done);
        limited.clear();
        limiter.finish(&mut limited);
        write_out(&limited[in_window(&limited, at)], &mut peak)?;
    }

    let total = to - from;
    report.samples = total;
    report.peak_dbfs = 20.0 * (f64::from(peak.max(1)) / 32_768.0).log10();
    report.min_gain_db = 20.0 * f64::from(limiter.min_gain).log10();
    report.limited_samples = limiter.limited;
    report.tracks = voices.into_iter().map(Voice::finish).collect();
    report.ogg_bytes = ogg.map(|o| o.finish(total)).transpose()?;
    report.wav_bytes = wav.map(|w| w.finish(SAMPLE_RATE)).transpose()?;
    report.flac_bytes = flac.map(FlacWriter::finish).transpose()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    /// A tone from `start_s` to `end_s` as a journal of libopus packets (10 ms network delay, up to
    /// 30 ms jitter).
    fn tone_journal(dir: &Path, id: u64, freq: f64, amp: f64, start_s: f64, end_s: f64) -> PathBuf {
        let packets = opus_packets(&tone(freq, amp, end_s - start_s), 64_000);
        let sent = opus_stream(&packets, start_s * 1e6, 0.0, id as u32, |_| true);
        let path = dir.join(format!("{id}.journal"));
        write_journal(
            &path,
            &header(TrackMedia::Audio, "opus", id),
            &sent,
            10_000.0,
            30_000.0,
            id,
            &[],
        );
        path
    }

    fn read_wav(path: &Path) -> Vec<f32> {
        let b = std::fs::read(path).unwrap();
        b[44..]
            .chunks(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32_768.0)
            .collect()
    }

    /// The first 10 ms hop (from `from`) where `freq` reaches half its power over `steady`.
    fn onset(x: &[f32], freq: f64, from: usize, steady: std::ops::Range<usize>) -> f64 {
        let level = goertzel(&x[steady], freq);
        let hop = 480;
        let mut i = from;
        while i + hop <= x.len() {
            if goertzel(&x[i..i + hop], freq) > level / 2.0 {
                return i as f64 / 48.0;
            }
            i += hop / 4;
        }
        f64::INFINITY
    }

    #[test]
    fn both_voices_are_in_the_mix_at_their_time() {
        let d = tmpdir("mix-tones");
        let a = tone_journal(&d, 1, 440.0, 0.25, 0.2, 4.0);
        let b = tone_journal(&d, 2, 880.0, 0.25, 1.2, 4.0);
        let (ogg, wav, flac) = (d.join("mix.opus"), d.join("mix.wav"), d.join("mix.flac"));
        let outputs = MixOutputs {
            ogg: Some(&ogg),
            wav: Some(&wav),
            flac: Some(&flac),
        };
        let report = mix_tracks(&[&a, &b], outputs, 5_000_000).unwrap();
        eprintln!("{report:?}");
        assert_eq!(report.samples, 240_000);
        assert_eq!(report.tracks.len(), 2);
        assert_eq!(report.tracks[0].packets, 190);
        let x = read_wav(&wav);
        assert_eq!(x.len(), 240_000);
        let (p440, p880) = (
            |r: std::ops::Range<usize>| goertzel(&x[r], 440.0),
            |r: std::ops::Range<usize>| goertzel(&x[r], 880.0),
        );
        // Before B joins: A only. After: both, neither swamped.
        assert!(p440(24_000..48_000) > 100.0 * p880(24_000..48_000));
        let (both_a, both_b) = (p440(96_000..168_000), p880(96_000..168_000));
        eprintln!(
            "440 Hz {:.1} dB, 880 Hz {:.1} dB",
            10.0 * both_a.log10(),
            10.0 * both_b.log10()
        );
        assert!(both_a > 1e-3 && both_b > 1e-3, "{both_a} {both_b}");
        assert!((10.0 * (both_a / both_b).log10()).abs() < 6.0);
        // Nothing after both stop.
        assert!(rms_db(&x[200_000..]) < -50.0);
        // Onsets where they were sent (plus the 10 ms of network), within 20 ms.
        let on_a = onset(&x, 440.0, 0, 96_000..168_000);
        let on_b = onset(&x, 880.0, 24_000, 96_000..168_000);
        eprintln!("onsets: A {on_a:.1} ms, B {on_b:.1} ms");
        assert!((on_a - 210.0).abs() <= 20.0, "A starts at {on_a} ms");
        assert!((on_b - 1_210.0).abs() <= 20.0, "B starts at {on_b} ms");
        // The Ogg mix has the same length and content; the FLAC the same samples.
        let decoded = decode_ogg(&ogg);
        assert_eq!(decoded.len(), 240_000);
        assert!(goertzel(&decoded[96_000..168_000], 880.0) > both_b / 2.0);
        let mut r = claxon::FlacReader::open(&flac).unwrap();
        let back: Vec<f32> = r.samples().map(|s| s.unwrap() as f32 / 32_768.0).collect();
        assert_eq!(back, x);
        assert_eq!(report.wav_bytes, Some(44 + 480_000));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn two_loud_voices_are_limited_under_minus_1_dbfs() {
        let d = tmpdir("mix-loud");
        let a = tone_journal(&d, 1, 440.0, 0.8, 0.0, 3.0);
        let b = tone_journal(&d, 2, 660.0, 0.8, 0.5, 3.0);
        let wav = d.join("mix.wav");
        for denoise in [true, false] {
            let settings = MixSettings {
                denoise,
                ..MixSettings::default()
            };
            let outputs = MixOutputs {
                wav: Some(&wav),
                ..MixOutputs::default()
            };
            let report = mix_tracks_with(&[&a, &b], outputs, 3_000_000, &settings).unwrap();
            let x = read_wav(&wav);
            let peak = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let peak_db = 20.0 * f64::from(peak).log10();
            eprintln!(
                "denoise {denoise}: peak {peak_db:.2} dBFS, gain down to {:.1} dB",
                report.min_gain_db
            );
            assert!(peak_db <= -1.0, "peak {peak_db} dBFS");
            assert!((report.peak_dbfs - peak_db).abs() < 0.01);
            assert!(
                report.limited_samples > 0 && report.min_gain_db < -2.0,
                "{report:?}"
            );
            // Limited, not silenced: the sum is still loud.
            assert!(rms_db(&x[48_000..120_000]) > -10.0);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_journals_are_skipped_and_cut_ones_mixed() {
        let d = tmpdir("mix-bad");
        let a = tone_journal(&d, 1, 440.0, 0.3, 0.0, 2.0);
        let whole = std::fs::read(&a).unwrap();
        std::fs::write(&a, &whole[..whole.len() / 2 + 3]).unwrap();
        let junk = d.join("junk.journal");
        std::fs::write(&junk, b"PARLEY-JOURNAL 1\n{not json").unwrap();
        let video = d.join("v.journal");
        write_journal(
            &video,
            &header(TrackMedia::Video, "vp8", 3),
            &[],
            0.0,
            0.0,
            1,
            &[],
        );
        let wav = d.join("mix.wav");
        let outputs = MixOutputs {
            wav: Some(&wav),
            ..MixOutputs::default()
        };
        let report =
            mix_tracks(&[&a, &junk, &video, &d.join("missing")], outputs, 2_000_000).unwrap();
        assert_eq!(report.skipped.len(), 3, "{report:?}");
        assert_eq!(report.tracks.len(), 1);
        assert!(report.tracks[0].journal_truncated);
        assert!(report.tracks[0].packets > 40 && report.tracks[0].packets < 60);
        let x = read_wav(&wav);
        assert_eq!(x.len(), 96_000);
        assert!(goertzel(&x[12_000..36_000], 440.0) > 1e-3);
        assert!(rms_db(&x[60_000..]) < -50.0, "silence after the cut");
        // No journals at all: a silent mix of the recording's length.
        let report = mix_tracks(&[], outputs, 1_000_000).unwrap();
        assert_eq!(read_wav(&wav).len(), 48_000);
        assert_eq!(report.limited_samples, 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn losses_are_concealed_and_garbage_packets_do_not_stop_the_mix() {
        let d = tmpdir("mix-loss");
        let mut packets = opus_packets(&tone(440.0, 0.3, 5.0), 64_000);
        // A packet of garbage that libopus refuses, and one it may take.
        packets[40] = vec![0x0b, 0xff, 0xff, 0xff];
        packets[41] = vec![0xfc; 30];
        let mut rng = Rng::new(5);
        let lost: Vec<bool> = (0..packets.len()).map(|_| rng.next_f64() < 0.1).collect();
        // 10 % lost, and nothing sent from 2.0 s to 2.4 s.
        let sent = opus_stream(&packets, 0.0, 0.0, 1, |i| {
            !lost[i] && !(100..120).contains(&i)
        });
        let j = d.join("t.journal");
        write_journal(
            &j,
            &header(TrackMedia::Audio, "opus", 1),
            &sent,
            10_000.0,
            20_000.0,
            1,
            &[],
        );
        let wav = d.join("mix.wav");
        for denoise in [false, true] {
            let settings = MixSettings {
                denoise,
                ..MixSettings::default()
            };
            let outputs = MixOutputs {
                wav: Some(&wav),
                ..MixOutputs::default()
            };
            let report = mix_tracks_with(&[&j], outputs, 5_000_000, &settings).unwrap();
            let t = &report.tracks[0];
            eprintln!("denoise {denoise}: {t:?}");
            assert!(t.concealed_us >= 500_000, "{t:?}");
            assert!(t.decode_errors >= 1);
            assert_eq!(
                t.lost, 0,
                "DTX-like silence and loss look alike: sequence numbers run on"
            );
            let x = read_wav(&wav);
            // The tone is there through the losses, on both sides of the silence.
            for r in [12_000..90_000, 120_000..230_000] {
                assert!(goertzel(&x[r.clone()], 440.0) > 1e-3, "{r:?}");
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Speech-like sound that does not repeat (RNNoise settles into another state on a signal that
    /// repeats exactly, whatever it starts from): syllables of [`voice`] at random pitches, lengths
    /// and levels.
    fn speech(rng: &mut Rng, seconds: f64) -> Vec<f32> {
        let n = (seconds * 48_000.0) as usize;
        let mut x = Vec::with_capacity(n + 96_000);
        while x.len() < n {
            let (v, _) = voice(90.0 + 200.0 * rng.next_f64(), 1.0 + rng.next_f64());
            let level = 0.3 + rng.next_f64() as f32;
            x.extend(v.iter().map(|s| s * level));
        }
        x.truncate(n);
        x
    }

    /// Three people over a noise floor for three minutes, all with a second of DTX silence every
    /// five: one speaking in turns, one loud (the two together are limited), one who joins late
    /// with a clock 100 ppm fast and loses 10 % of packets.
    fn three_minute_journals(d: &Path) -> (Vec<PathBuf>, u64) {
        let seconds = 180.0;
        let mut rng = Rng::new(11);
        let journals = (0..3u64)
            .map(|id| {
                let mut x = speech(&mut rng, seconds);
                for (i, s) in x.iter_mut().enumerate() {
                    let speaking = id != 0 || (i / 48_000) % 20 < 12;
                    let gain = [0.8, 1.6, 1.0][id as usize];
                    let v = if speaking { *s * gain } else { 0.0 };
                    *s = v + ((rng.next_f64() - 0.5) * 0.02) as f32;
                }
                let packets = opus_packets(&x, 32_000);
                let lost: Vec<bool> = (0..packets.len())
                    .map(|_| rng.next_f64() < 0.1 && id == 2)
                    .collect();
                let (start_us, drift) = if id == 2 { (20e6, 100e-6) } else { (0.0, 0.0) };
                let sent = opus_stream(&packets, start_us, drift, id as u32 + 1, |i| {
                    !lost[i] && i % 250 < 200
                });
                let path = d.join(format!("{id}.journal"));
                write_journal(
                    &path,
                    &header(TrackMedia::Audio, "opus", id + 1),
                    &sent,
                    10_000.0,
                    30_000.0,
                    id + 3,
                    &[],
                );
                path
            })
            .collect();
        (journals, (seconds * 1e6) as u64)
    }

    fn read_i16(path: &Path) -> Vec<i16> {
        let b = std::fs::read(path).unwrap();
        b[44..]
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    /// A person's file decoded as the export reads it (concealment of up to 120 ms, then silence).
    fn read_voice(path: &Path) -> Vec<i16> {
        let mut r = crate::ogg_decode::OggOpusReader::open(path).unwrap();
        let (mut out, mut block, mut scratch) = (Vec::new(), vec![0i16; 48_000], Vec::new());
        loop {
            let n = r.read_i16(&mut block, &mut scratch).unwrap();
            out.extend_from_slice(&block[..n]);
            if n < block.len() {
                return out;
            }
        }
    }

    /// How `b` differs from `a` moved `lag` samples later: the largest difference, how many
    /// differ, and the difference's power against `a`'s (dB).
    fn difference(a: &[i16], b: &[i16], lag: usize) -> (i32, usize, f64) {
        let (mut max, mut n, mut e, mut p) = (0, 0, 0.0, 1e-9);
        for (x, y) in a.iter().zip(&b[lag..]) {
            let d = i32::from(*x) - i32::from(*y);
            max = max.max(d.abs());
            n += usize::from(d != 0);
            e += f64::from(d) * f64::from(d);
            p += f64::from(*x) * f64::from(*x);
        }
        (max, n, 10.0 * (e.max(1e-9) / p).log10())
    }

    #[test]
    fn a_window_is_the_same_span_of_the_whole_mix() {
        let d = tmpdir("mix-window");
        let (journals, duration_us) = three_minute_journals(&d);
        let paths: Vec<&Path> = journals.iter().map(|p| p.as_path()).collect();
        let total = samples_of_us(duration_us);
        let windows = [
            // The last 10 s (a segment just cut; it starts in a DTX pause), one in the middle at
            // odd µs, one near the start (its pre-roll cut at 0: the whole mix's samples exactly).
            SessionWindow {
                from_us: duration_us - 10_000_000,
                to_us: duration_us,
            },
            SessionWindow {
                from_us: 95_300_021,
                to_us: 105_299_990,
            },
            SessionWindow {
                from_us: 200_000,
                to_us: 3_000_000,
            },
        ];
        for denoise in [true, false] {
            let settings = MixSettings {
                denoise,
                threads: 0,
                ..MixSettings::default()
            };
            let whole_wav = d.join("whole.wav");
            let outputs = MixOutputs {
                wav: Some(&whole_wav),
                ..MixOutputs::default()
            };
            let whole = mix_tracks_with(&paths, outputs, duration_us, &settings).unwrap();
            assert!(whole.limited_samples > 0, "the loud voices are limited");
            let whole_wav = read_i16(&whole_wav);
            for window in windows {
                let (from, to) = window.samples_within(total);
                let expected = &whole_wav[from as usize..to as usize];
                let wav = d.join("window.wav");
                let outputs = MixOutputs {
                    wav: Some(&wav),
                    ..MixOutputs::default()
                };
                let report = mix_window(&paths, outputs, duration_us, window, &settings).unwrap();
                let x = read_i16(&wav);
                assert_eq!(report.samples, to - from);
                assert_eq!(x.len(), expected.len(), "the window's length exactly");
                let (max, n, db) = difference(expected, &x, 0);
                // After its first 100 ms.
                let (settled, _, _) = difference(&expected[4_800..], &x[4_800..], 0);
                let (_, _, early) = difference(&expected[1..], &x, 0);
                let (_, _, late) = difference(&expected[..expected.len() - 1], &x, 1);
                eprintln!(
                    "denoise {denoise}, {window:?}: max difference {max} ({settled} after 100 ms), {n} of {} samples differ, difference {db:.1} dB (a sample early: {early:.1} dB, late: {late:.1} dB)",
                    x.len()
                );
                // Frame 0 is the window's start, to the sample.
                assert!(db < early.min(late) - 20.0, "{db} {early} {late}");
                if window.from_us < 1_000_000 {
                    assert_eq!(max, 0, "made from the recording's start: the very samples");
                } else if denoise {
                    assert!(db <= -50.0 && max <= 400, "{db} dB, {max}");
                } else {
                    assert!(max <= 64 && settled <= 8, "{max} {settled}");
                }
            }
        }

        // Each person's file: the same packets in the same places, decoded from the pre-roll.
        for (i, j) in paths.iter().enumerate() {
            let whole_ogg = d.join(format!("{i}-whole.opus"));
            crate::opus_track::finalize_opus_track(j, &whole_ogg, duration_us).unwrap();
            let whole_pcm = read_voice(&whole_ogg);
            for window in windows {
                let (from, to) = window.samples_within(total);
                let ogg = d.join(format!("{i}-window.opus"));
                let report =
                    crate::opus_track::finalize_opus_window(j, &ogg, duration_us, window).unwrap();
                let pcm = read_voice(&ogg);
                let expected = &whole_pcm[from as usize..to as usize];
                assert_eq!(pcm.len(), expected.len(), "voice {i}: the window's length");
                assert_eq!(report.duration_us, us_of_samples(to - from));
                let (max, n, _) = difference(expected, &pcm, 0);
                eprintln!(
                    "voice {i}, {window:?}: max difference {max}, {n} samples differ, {} packets",
                    report.packets
                );
                assert!(max <= 8, "voice {i}: max difference {max}");
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Finalize time per recorded minute for 10 voices over a noise floor, every track sending all the
    /// time (no DTX): a meeting where they speak in turn, and the worst case where all ten speak at
    /// once. The mix (denoise, limiter, Ogg + WAV + FLAC) and the ten per-person Ogg files.
    #[test]
    #[ignore = "a measurement: cargo test --release -p parley-media -- --ignored --nocapture"]
    fn finalize_time_per_recorded_minute() {
        let d = tmpdir("mix-bench");
        let seconds = 60.0;
        // CPU time of this process (Linux), which a machine shared with other work inflates less.
        let cpu_s = || -> f64 {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            (ticks(11) + ticks(12)) / 100.0
        };
        for turns in [true, false] {
            let mut rng = Rng::new(99);
            let journals: Vec<PathBuf> = (0..10u64)
                .map(|id| {
                    let (mut x, _) = voice(110.0 + 15.0 * id as f64, seconds);
                    for (i, s) in x.iter_mut().enumerate() {
                        let speaking = !turns || (i / 48_000) as u64 / 6 == id;
                        let v = if speaking { *s * 0.5 } else { 0.0 };
                        *s = v + ((rng.next_f64() - 0.5) * 0.02) as f32;
                    }
                    let sent =
                        opus_stream(&opus_packets(&x, 32_000), 0.0, 0.0, id as u32, |_| true);
                    let path = d.join(format!("{id}-{turns}.journal"));
                    write_journal(
                        &path,
                        &header(TrackMedia::Audio, "opus", id),
                        &sent,
                        10_000.0,
                        30_000.0,
                        id,
                        &[],
                    );
                    path
                })
                .collect();
            let paths: Vec<&Path> = journals.iter().map(|p| p.as_path()).collect();
            let (ogg, wav, flac) = (d.join("mix.opus"), d.join("mix.wav"), d.join("mix.flac"));
            let duration_us = (seconds * 1e6) as u64;
            for threads in [1, 0] {
                let settings = MixSettings {
                    threads,
                    ..MixSettings::default()
                };
                let cpu = cpu_s();
                let t = std::time::Instant::now();
                let outputs = MixOutputs {
                    ogg: Some(&ogg),
                    wav: Some(&wav),
                    flac: Some(&flac),
                };
                let report = mix_tracks_with(&paths, outputs, duration_us, &settings).unwrap();
                let mix_s = t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                for (i, j) in paths.iter().enumerate() {
                    crate::opus_track::finalize_opus_track(
                        j,
                        &d.join(format!("{i}.opus")),
                        duration_us,
                    )
                    .unwrap();
                }
                let tracks_s = t.elapsed().as_secs_f64();
                let per_min = (mix_s + tracks_s) * 60.0 / seconds;
                let cpu_per_min = (cpu_s() - cpu) * 60.0 / seconds;
                let denoised: u64 = report.tracks.iter().map(|t| t.denoised_frames).sum();
                eprintln!(
                    "10 tracks, {}, threads {threads}: mix {mix_s:.2} s + per-track files {tracks_s:.2} s = {per_min:.2} s per recorded minute ({cpu_per_min:.2} CPU-s); RNNoise on {:.0}% of frames, peak {:.1} dBFS",
                    if turns { "speaking in turn" } else { "all speaking at once" },
                    denoised as f64 * 100.0 / (10.0 * seconds * 100.0),
                    report.peak_dbfs,
                );
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
