//! A look-ahead peak limiter: the mix never clips and never exceeds its ceiling, and loud passages are
//! turned down smoothly (a 5 ms attack that starts before the peak, a 100 ms release) instead of being
//! cut off.
//!
//! The gain that would put each sample exactly at the ceiling is `r[n] = min(1, ceiling / |x[n]|)`. The
//! limiter takes the minimum of `r` over the next `L` samples, lets it recover no faster than the
//! release, and averages it over the last `L` samples. Every value averaged at a peak's sample is at or
//! below the peak's own `r`, so the output never passes the ceiling; the average makes the gain change
//! as a ramp over `L` samples. The output is `L - 1` samples late inside; [`Limiter`] hides that.

use std::collections::VecDeque;

/// The ceiling: −1 dBFS, in the i16 range.
pub const CEILING: f32 = 29_203.0;
/// Look-ahead and attack: 5 ms.
pub const LOOKAHEAD: usize = 240;
/// Release time constant: 100 ms.
const RELEASE_S: f32 = 0.1;

pub struct Limiter {
    ceiling: f32,
    release: f32,
    /// Input samples not yet output (the look-ahead).
    delay: VecDeque<f32>,
    /// Sliding minimum of `r` over the look-ahead: (input index, r), increasing in r.
    mins: VecDeque<(u64, f32)>,
    /// The release-limited minima of the last `LOOKAHEAD` samples and their sum.
    smoothed: VecDeque<f32>,
    sum: f64,
    held: f32,
    index: u64,
    /// Lowest gain applied, and samples turned down.
    pub min_gain: f32,
    pub limited: u64,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(CEILING)
    }
}

impl Limiter {
    pub fn new(ceiling: f32) -> Limiter {
        Limiter {
            ceiling,
            release: 1.0 - (-1.0 / (RELEASE_S * crate::SAMPLE_RATE as f32)).exp(),
            delay: VecDeque::with_capacity(LOOKAHEAD),
            mins: VecDeque::with_capacity(LOOKAHEAD),
            smoothed: VecDeque::from(vec![1.0; LOOKAHEAD]),
            sum: LOOKAHEAD as f64,
            held: 1.0,
            index: 0,
            min_gain: 1.0,
            limited: 0,
        }
    }

    /// Limits `input`, appending to `out` what is ready; over the whole stream the output has exactly
    /// the input's samples once [`Limiter::finish`] has run.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        for &x in input {
            self.step(x, out);
        }
    }

    /// Outputs the samples still held by the look-ahead.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let want = out.len() + self.delay.len();
        while out.len() < want {
            self.step(0.0, out);
        }
    }

    fn step(&mut self, x: f32, out: &mut Vec<f32>) {
        let r = if x.abs() > self.ceiling {
            self.ceiling / x.abs()
        } else {
            1.0
        };
        let n = self.index;
        self.index += 1;
        while self.mins.back().is_some_and(|m| m.1 >= r) {
            self.mins.pop_back();
        }
        self.mins.push_back((n, r));
        while self
            .mins
            .front()
            .is_some_and(|m| m.0 + LOOKAHEAD as u64 <= n)
        {
            self.mins.pop_front();
        }
        self.delay.push_back(x);
        if self.delay.len() < LOOKAHEAD {
            return;
        }
        // Minimum of r over [k, k + L - 1] for the sample k = n - L + 1 now leaving the delay line.
        let m = self.mins.front().map_or(1.0, |m| m.1);
        self.held = m.min(self.held + (1.0 - self.held) * self.release);
        self.sum += f64::from(self.held) - f64::from(self.smoothed.pop_front().unwrap_or(1.0));
        self.smoothed.push_back(self.held);
        let gain = ((self.sum / LOOKAHEAD as f64) as f32).min(1.0);
        let x = self.delay.pop_front().unwrap_or(0.0);
        let y = (x * gain).clamp(-self.ceiling, self.ceiling);
        if gain < 1.0 {
            self.min_gain = self.min_gain.min(gain);
            self.limited += 1;
        }
        out.push(y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_audio_passes_unchanged_and_aligned() {
        let x: Vec<f32> = (0..10_000)
            .map(|i| ((i as f32) * 0.01).sin() * 20_000.0)
            .collect();
        let mut l = Limiter::default();
        let mut out = Vec::new();
        for c in x.chunks(777) {
            l.process(c, &mut out);
        }
        l.finish(&mut out);
        assert_eq!(out, x);
        assert_eq!(l.limited, 0);
    }

    #[test]
    fn loud_audio_stays_under_the_ceiling_smoothly() {
        // A quiet tone, then a burst at twice full scale, then quiet again.
        let x: Vec<f32> = (0..48_000)
            .map(|i| {
                let a = if (10_000..20_000).contains(&i) {
                    65_000.0
                } else {
                    8_000.0
                };
                a * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin()
            })
            .collect();
        let mut l = Limiter::default();
        let mut out = Vec::new();
        l.process(&x, &mut out);
        l.finish(&mut out);
        assert_eq!(out.len(), x.len());
        let peak = out.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak <= CEILING, "peak {peak}");
        assert!(20.0 * (peak / 32_768.0).log10() <= -1.0);
        // Gain ramps: no step larger than a ramp over the look-ahead allows.
        let gains: Vec<f32> = x
            .iter()
            .zip(&out)
            .filter(|(a, _)| a.abs() > 1_000.0)
            .map(|(a, b)| b / a)
            .collect();
        let worst = gains
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max);
        assert!(worst < 0.02, "gain jumps by {worst}");
        // Before the burst untouched; long after it back to (nearly) full gain.
        assert_eq!(&out[..9_000], &x[..9_000]);
        assert!((out[40_000] / x[40_000] - 1.0).abs() < 0.01 || x[40_000].abs() < 1.0);
        assert!(l.min_gain < 0.5);
    }
}
