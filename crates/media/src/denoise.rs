//! Noise suppression for one voice: RNNoise (the `nnnoiseless` port) on 10 ms frames at 48 kHz, with
//! its delay taken out so a denoised voice stays sample-aligned with the session clock.
//!
//! RNNoise costs about 0.4 s of CPU per minute of audio, and in a meeting most tracks carry nobody's
//! voice most of the time. So a cheap gate runs first: a frame more than [`SPEECH_ABOVE_FLOOR_DB`] above
//! the track's noise floor (the lowest level of the last [`FLOOR_WINDOW_FRAMES`]) is speech; RNNoise runs from [`LOOKAHEAD_FRAMES`]
//! before speech to [`HANGOVER_FRAMES`] after it (warmed up on the frames before, and cross-faded in and
//! out), and elsewhere the track is only turned down by [`GATE_DB`], about what RNNoise does to noise.
//! The gate errs towards running RNNoise: a frame louder than −35 dBFS always counts as speech, and a
//! frame it misses is within 3 dB of the noise, which RNNoise would have suppressed too.

use std::collections::VecDeque;

use nnnoiseless::DenoiseState;

/// RNNoise works on frames of this many samples (10 ms at 48 kHz).
pub const FRAME: usize = DenoiseState::FRAME_SIZE;
/// Frames looked at ahead, so RNNoise is running before a word starts.
pub const LOOKAHEAD_FRAMES: usize = 2;
/// Frames RNNoise keeps running after the last speech frame.
pub const HANGOVER_FRAMES: u32 = 30;
/// Frames RNNoise is fed (output discarded) before it takes over, so its window and pitch buffers hold
/// the real signal.
const WARMUP_FRAMES: usize = 4;
/// A frame this far above the noise floor is speech.
pub const SPEECH_ABOVE_FLOOR_DB: f32 = 3.0;
/// Below this a frame is silence whatever the floor (and does not move it).
const SILENT_DBFS: f32 = -70.0;
/// Above this a frame is always treated as speech: a wrong floor can only cost CPU on loud tracks.
const LOUD_DBFS: f32 = -35.0;
/// The noise floor is the lowest level (averaged over 40 ms) of the last 10 s of sound: long
/// enough that words always have pauses in it, short enough that a quiet moment is forgotten soon.
pub const FLOOR_WINDOW_FRAMES: u64 = 1_000;
/// Frames whose mean power is a level (40 ms: one odd frame moves it little).
const LEVEL_FRAMES: usize = 4;
/// What the gate does to a track with no voice.
pub const GATE_DB: f32 = -30.0;
/// Output lags input by this much inside (RNNoise's frame plus the look-ahead); [`Denoiser`] drops it.
pub const LATENCY: usize = (LOOKAHEAD_FRAMES + 1) * FRAME;

/// A streaming denoiser for one track; samples are f32 in the i16 range (±32768).
pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    gate: bool,
    pending: Vec<f32>,
    /// Recent input frames (oldest first) and whether each is speech.
    recent: VecDeque<(Vec<f32>, bool)>,
    spare: Vec<Vec<f32>>,
    /// Sliding minimum of the 20 ms level: (frame number, dB), increasing in dB.
    floor: VecDeque<(u64, f32)>,
    /// Power of the last [`LEVEL_FRAMES`] sound (not silent) frames, and how many there were so far.
    powers: VecDeque<f32>,
    sound_frames: u64,
    hang: u32,
    /// RNNoise ran on the previous frame (its state is current).
    running: bool,
    denoised: Vec<f32>,
    frame: Vec<f32>,
    /// Output samples still to drop at the start (the frame before the first).
    skip: usize,
    /// Frames RNNoise ran on, and frames only the gate handled.
    pub frames: u64,
    pub gated_frames: u64,
}

impl Default for Denoiser {
    fn default() -> Self {
        Denoiser::new()
    }
}

impl Denoiser {
    /// A denoiser with the gate.
    pub fn new() -> Denoiser {
        Denoiser::with_gate(true)
    }

    /// `gate: false` runs RNNoise on every frame.
    pub fn with_gate(gate: bool) -> Denoiser {
        Denoiser {
            state: DenoiseState::new(),
            gate,
            pending: Vec::with_capacity(FRAME),
            recent: VecDeque::with_capacity(WARMUP_FRAMES + LOOKAHEAD_FRAMES + 2),
            spare: Vec::new(),
            floor: VecDeque::new(),
            powers: VecDeque::with_capacity(LEVEL_FRAMES),
            sound_frames: 0,
            hang: 0,
            running: false,
            denoised: vec![0.0; FRAME],
            frame: vec![0.0; FRAME],
            skip: FRAME,
            frames: 0,
            gated_frames: 0,
        }
    }

    /// Samples [`Denoiser::push`] has given out once `input` samples went in: whole frames, less
    /// the [`LATENCY`] still inside (what the mix's pre-roll counts on to stand in for a denoiser it
    /// did not run).
    pub fn output_after(input: u64) -> u64 {
        (input / FRAME as u64).saturating_sub(LOOKAHEAD_FRAMES as u64 + 1) * FRAME as u64
    }

    /// Denoises `input`; appends what is ready to `out`. Over a whole stream, output sample `n` is the
    /// denoised input sample `n` (feed [`LATENCY`] more samples, e.g. zeros, to get the last ones out).
    pub fn push(&mut self, mut input: &[f32], out: &mut impl Extend<f32>) {
        while !input.is_empty() {
            let take = (FRAME - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() == FRAME {
                let mut next = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(FRAME));
                next.clear();
                let frame = std::mem::replace(&mut self.pending, next);
                self.run(frame, out);
            }
        }
    }

    /// Whether `frame` is speech, updating the noise floor.
    fn is_speech(&mut self, frame: &[f32]) -> bool {
        if !self.gate {
            return true;
        }
        let energy =
            frame.iter().map(|s| s * s).sum::<f32>() / (FRAME as f32 * 32_768.0 * 32_768.0);
        let db = 10.0 * energy.max(1e-12).log10();
        if db <= SILENT_DBFS {
            return false;
        }
        if self.powers.len() == LEVEL_FRAMES {
            self.powers.pop_front();
        }
        self.powers.push_back(energy);
        let n = self.sound_frames;
        self.sound_frames += 1;
        if self.powers.len() < LEVEL_FRAMES {
            // No floor yet: speech, so RNNoise runs.
            return true;
        }
        let level = 10.0 * (self.powers.iter().sum::<f32>() / LEVEL_FRAMES as f32).log10();
        while self.floor.back().is_some_and(|f| f.1 >= level) {
            self.floor.pop_back();
        }
        self.floor.push_back((n, level));
        while self
            .floor
            .front()
            .is_some_and(|f| f.0 + FLOOR_WINDOW_FRAMES <= n)
        {
            self.floor.pop_front();
        }
        let floor = self.floor.front().map_or(level, |f| f.1);
        db > LOUD_DBFS || db > floor + SPEECH_ABOVE_FLOOR_DB
    }

    fn run(&mut self, frame: Vec<f32>, out: &mut impl Extend<f32>) {
        let speech = self.is_speech(&frame);
        self.recent.push_back((frame, speech));
        // Frame k, LOOKAHEAD_FRAMES behind the newest, is processed now; its output is frame k - 1's.
        let Some(k) = self.recent.len().checked_sub(1 + LOOKAHEAD_FRAMES) else {
            return;
        };
        let ahead = self.recent.range(k..).any(|f| f.1);
        let active = if ahead {
            self.hang = HANGOVER_FRAMES;
            true
        } else if self.hang > 0 {
            self.hang -= 1;
            true
        } else {
            false
        };
        if active || self.running {
            if !self.running {
                for w in k.saturating_sub(WARMUP_FRAMES)..k {
                    self.state
                        .process_frame(&mut self.denoised, &self.recent[w].0);
                    self.frames += 1;
                }
            }
            self.state
                .process_frame(&mut self.denoised, &self.recent[k].0);
            self.frames += 1;
        } else {
            self.gated_frames += 1;
        }
        let gain = 10f32.powf(GATE_DB / 20.0);
        let previous = k.checked_sub(1).map(|p| &self.recent[p].0);
        for (i, o) in self.frame.iter_mut().enumerate() {
            let gated = previous.map_or(0.0, |p| p[i] * gain);
            let fade = (i as f32 + 0.5) / FRAME as f32;
            *o = match (self.running, active) {
                (true, true) => self.denoised[i],
                (false, true) => gated + (self.denoised[i] - gated) * fade,
                (true, false) => self.denoised[i] + (gated - self.denoised[i]) * fade,
                (false, false) => gated,
            };
        }
        self.running = active;
        while self.recent.len() > WARMUP_FRAMES + 1 + LOOKAHEAD_FRAMES {
            if let Some((old, _)) = self.recent.pop_front() {
                self.spare.push(old);
            }
        }
        let drop = self.skip.min(FRAME);
        self.skip -= drop;
        out.extend(self.frame[drop..].iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn denoise_all(x: &[f32], gate: bool) -> (Vec<f32>, Denoiser) {
        let mut d = Denoiser::with_gate(gate);
        let mut out = Vec::new();
        let scaled: Vec<f32> = x.iter().map(|v| v * 32768.0).collect();
        d.push(&scaled, &mut out);
        d.push(&[0.0; LATENCY], &mut out);
        out.truncate(x.len());
        (out.iter().map(|v| v / 32768.0).collect(), d)
    }

    #[test]
    fn lowers_the_noise_floor_and_keeps_the_voice_aligned() {
        // White noise at -30 dBFS RMS (the gate lets RNNoise run throughout), and at -45 dBFS (the gate
        // takes the silences).
        for noise_db in [-30.0, -45.0] {
            noisy_voice(noise_db);
        }
    }

    fn noisy_voice(noise_db: f64) {
        let (clean, voiced) = voice(150.0, 8.0);
        let mut rng = Rng::new(7);
        let sigma = 10f64.powf(noise_db / 20.0) * 3f64.sqrt();
        let noisy: Vec<f32> = clean
            .iter()
            .map(|v| v + ((rng.next_f64() * 2.0 - 1.0) * sigma) as f32)
            .collect();
        let mut outs = Vec::new();
        for gate in [true, false] {
            let (out, d) = denoise_all(&noisy, gate);
            assert_eq!(out.len(), noisy.len());
            // After the first second (the network settles), in the middle of gaps and syllables.
            let (mut gap_in, mut gap_out, mut voice_in, mut voice_out) =
                (vec![], vec![], vec![], vec![]);
            for s in 1..8 {
                let gap = (s * 48_000 + 31_000)..(s * 48_000 + 46_000);
                let syl = (s * 48_000 + 10_000)..(s * 48_000 + 20_000);
                assert!(!voiced(gap.start) && voiced(syl.start));
                gap_in.extend_from_slice(&noisy[gap.clone()]);
                gap_out.extend_from_slice(&out[gap]);
                voice_in.extend_from_slice(&clean[syl.clone()]);
                voice_out.extend_from_slice(&out[syl]);
            }
            let floor_drop = rms_db(&gap_in) - rms_db(&gap_out);
            // The voice band (the first harmonics), where the voice is.
            let band = |x: &[f32]| {
                (1..=6)
                    .map(|h| goertzel(x, 150.0 * f64::from(h)))
                    .sum::<f64>()
            };
            let voice_change = 10.0 * (band(&voice_out) / band(&voice_in)).log10();
            eprintln!(
                "denoise (noise {noise_db} dBFS, gate {gate}): noise floor -{floor_drop:.1} dB, voice band {voice_change:+.1} dB, RNNoise on {} of {} frames",
                d.frames,
                d.frames + d.gated_frames
            );
            assert!(
                floor_drop >= 10.0,
                "noise floor only {floor_drop:.1} dB lower"
            );
            assert!(
                voice_change.abs() <= 3.0,
                "voice band changed {voice_change:.1} dB"
            );
            // Aligned: the output correlates best with the input at lag 0.
            let corr = |lag: usize| -> f64 {
                (48_000..96_000)
                    .map(|i| f64::from(out[i + lag]) * f64::from(clean[i]))
                    .sum()
            };
            let best = (0..960)
                .max_by(|a, b| corr(*a).total_cmp(&corr(*b)))
                .unwrap();
            assert!(best < 48, "denoised voice lags by {best} samples");
            outs.push(out);
        }
        // The gate changes nothing where the voice is; in a syllable's first 20 ms, where the voice is
        // still under the noise, the two differ by a few dB of residual noise.
        for s in 1..8 {
            let onset = (s * 48_000)..(s * 48_000 + 960);
            let body = (s * 48_000 + 960)..(s * 48_000 + 28_000);
            for r in [onset, body] {
                let diff = rms_db(&outs[0][r.clone()]) - rms_db(&outs[1][r.clone()]);
                let allowed = if r.len() == 960 { 4.0 } else { 0.5 };
                assert!(
                    diff.abs() < allowed,
                    "gated differs by {diff:.1} dB at {r:?}"
                );
            }
        }
    }

    #[test]
    fn silence_and_steady_noise_are_gated() {
        let mut d = Denoiser::new();
        let mut out = Vec::new();
        d.push(&vec![0.0; 48_000], &mut out);
        assert_eq!(out.len(), 48_000 - LATENCY);
        assert!(out.iter().all(|v| *v == 0.0));
        assert_eq!(d.frames, 0);
        // Steady noise: RNNoise only on the first frames (before the floor is known).
        let mut rng = Rng::new(3);
        let noise: Vec<f32> = (0..48_000 * 5)
            .map(|_| (rng.next_f64() as f32 - 0.5) * 600.0)
            .collect();
        let mut d = Denoiser::new();
        let mut out = Vec::new();
        d.push(&noise, &mut out);
        assert!(d.frames < 50, "RNNoise ran on {} frames of noise", d.frames);
        assert!(rms_db(&out[48_000..]) < rms_db(&noise) - 25.0);
        // Odd chunk sizes come out whole.
        let mut out = Vec::new();
        let mut d = Denoiser::new();
        for _ in 0..100 {
            d.push(&[1.0; 333], &mut out);
        }
        assert_eq!(out.len(), 33_300 / FRAME * FRAME - LATENCY);
        assert_eq!(out.len() as u64, Denoiser::output_after(33_300));
        assert_eq!(Denoiser::output_after(LATENCY as u64 + FRAME as u64 - 1), 0);
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    #[test]
    #[ignore = "a measurement: cargo test --release -p parley-media -- --ignored --nocapture"]
    fn denoise_speed() {
        let mut rng = crate::testutil::Rng::new(1);
        let x: Vec<f32> = (0..48_000 * 60)
            .map(|_| (rng.next_f64() as f32 - 0.5) * 3000.0)
            .collect();
        let mut d = Denoiser::with_gate(false);
        let mut out = Vec::with_capacity(x.len());
        let t = std::time::Instant::now();
        d.push(&x, &mut out);
        eprintln!(
            "denoise: {:.3} s per minute of one track",
            t.elapsed().as_secs_f64()
        );
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let packets = crate::testutil::opus_packets(&x[..48_000 * 60], 32_000);
        let mut buf = vec![0f32; 960];
        let t = std::time::Instant::now();
        for p in &packets {
            dec.decode_float(p, &mut buf, false).unwrap();
        }
        eprintln!("opus decode: {:.3} s per minute", t.elapsed().as_secs_f64());
    }
}
