//! Noise suppression for one voice: RNNoise (the `nnnoiseless` port) on 10 ms frames at 48 kHz, with
//! its delay taken out so a denoised voice stays sample-aligned with the session clock, and long
//! silences passed through without running the network.

use nnnoiseless::DenoiseState;

/// RNNoise works on frames of this many samples (10 ms at 48 kHz).
pub const FRAME: usize = DenoiseState::FRAME_SIZE;
/// Its output lags its input by one frame (overlap-add of 20 ms windows).
pub const LATENCY: usize = FRAME;

/// A streaming denoiser for one track; samples are f32 in the i16 range (±32768).
pub struct Denoiser {
    state: Box<DenoiseState<'static>>,
    pending: Vec<f32>,
    frame: Vec<f32>,
    /// Output samples still to drop (the latency, at the start).
    skip: usize,
    /// Input frames of pure zeros in a row: after two, the state holds nothing but zeros.
    quiet: u32,
    pub frames: u64,
    pub skipped_frames: u64,
}

impl Default for Denoiser {
    fn default() -> Self {
        Denoiser::new()
    }
}

impl Denoiser {
    pub fn new() -> Denoiser {
        Denoiser {
            state: DenoiseState::new(),
            pending: Vec::with_capacity(FRAME),
            frame: vec![0.0; FRAME],
            skip: LATENCY,
            quiet: 0,
            frames: 0,
            skipped_frames: 0,
        }
    }

    /// Denoises `input`; appends what is ready to `out`. Over a whole stream, output sample `n` is the
    /// denoised input sample `n` (feed [`LATENCY`] more samples, e.g. zeros, to get the last ones out).
    pub fn push(&mut self, mut input: &[f32], out: &mut impl Extend<f32>) {
        while !input.is_empty() {
            let take = (FRAME - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() == FRAME {
                self.run(out);
                self.pending.clear();
            }
        }
    }

    fn run(&mut self, out: &mut impl Extend<f32>) {
        if self.pending.iter().all(|s| *s == 0.0) {
            self.quiet = self.quiet.saturating_add(1);
        } else {
            self.quiet = 0;
        }
        if self.quiet > 2 {
            self.frame.fill(0.0);
            self.skipped_frames += 1;
        } else {
            self.state.process_frame(&mut self.frame, &self.pending);
            self.frames += 1;
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

    /// A voice-like signal: 150 Hz and its harmonics, syllables of amplitude modulation, and silent
    /// gaps; `voiced(i)` says whether sample `i` is in a syllable.
    fn voice(seconds: f64) -> (Vec<f32>, impl Fn(usize) -> bool) {
        let voiced = |i: usize| {
            let t = i as f64 / 48_000.0;
            t % 1.0 < 0.6 // 600 ms voiced, 400 ms of silence
        };
        let x = (0..(seconds * 48_000.0) as usize)
            .map(|i| {
                if !voiced(i) {
                    return 0.0;
                }
                let t = i as f64 / 48_000.0;
                let syllable = (std::f64::consts::PI * (t % 1.0) / 0.6).sin();
                let am = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
                let f0 = 150.0 * (1.0 + 0.05 * (2.0 * std::f64::consts::PI * 0.7 * t).sin());
                let mut v = 0.0;
                for h in 1..=12 {
                    let h = f64::from(h);
                    v += (2.0 * std::f64::consts::PI * f0 * h * t).sin() / h;
                }
                (0.25 * syllable * am * v) as f32
            })
            .collect();
        (x, voiced)
    }

    fn denoise_all(x: &[f32]) -> Vec<f32> {
        let mut d = Denoiser::new();
        let mut out = Vec::new();
        let scaled: Vec<f32> = x.iter().map(|v| v * 32768.0).collect();
        d.push(&scaled, &mut out);
        d.push(&[0.0; LATENCY], &mut out);
        out.truncate(x.len());
        out.iter().map(|v| v / 32768.0).collect()
    }

    #[test]
    fn lowers_the_noise_floor_and_keeps_the_voice_aligned() {
        let (clean, voiced) = voice(8.0);
        let mut rng = Rng::new(7);
        // White noise at -30 dBFS RMS.
        let sigma = 10f64.powf(-30.0 / 20.0) * 3f64.sqrt();
        let noisy: Vec<f32> = clean
            .iter()
            .map(|v| v + ((rng.next_f64() * 2.0 - 1.0) * sigma) as f32)
            .collect();
        let out = denoise_all(&noisy);
        assert_eq!(out.len(), noisy.len());
        // Measure after the first second (the network settles), in the middle of gaps and syllables.
        let (mut gap_in, mut gap_out, mut voice_in, mut voice_out) =
            (vec![], vec![], vec![], vec![]);
        for s in 1..8 {
            let gap = (s * 48_000 + 31_000)..(s * 48_000 + 46_000);
            let syl = (s * 48_000 + 10_000)..(s * 48_000 + 20_000);
            gap_in.extend_from_slice(&noisy[gap.clone()]);
            gap_out.extend_from_slice(&out[gap]);
            voice_in.extend_from_slice(&clean[syl.clone()]);
            voice_out.extend_from_slice(&out[syl]);
            assert!(!voiced(s * 48_000 + 31_000));
        }
        let floor_drop = rms_db(&gap_in) - rms_db(&gap_out);
        // The voice band (the first harmonics), measured where the voice is.
        let band = |x: &[f32]| {
            (1..=6)
                .map(|h| goertzel(x, 150.0 * f64::from(h)))
                .sum::<f64>()
        };
        let voice_change = 10.0 * (band(&voice_out) / band(&voice_in)).log10();
        eprintln!("denoise: noise floor -{floor_drop:.1} dB, voice band {voice_change:+.1} dB");
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
    }

    #[test]
    fn silence_costs_nothing_and_stays_silent() {
        let mut d = Denoiser::new();
        let mut out = Vec::new();
        d.push(&vec![0.0; 48_000], &mut out);
        assert_eq!(out.len(), 48_000 - LATENCY);
        assert!(out.iter().all(|v| *v == 0.0));
        assert!(d.skipped_frames >= 97, "{}", d.skipped_frames);
        // Odd chunk sizes come out whole.
        let mut out = Vec::new();
        let mut d = Denoiser::new();
        for _ in 0..100 {
            d.push(&[1.0; 333], &mut out);
        }
        assert_eq!(out.len(), 33_300 / FRAME * FRAME - LATENCY);
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
        let mut d = Denoiser::new();
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
