//! How far one recording of a sound lies from another recording of the same sound, found from their
//! loudness envelopes. Sans-IO: fed samples, gives a lag.
//!
//! The segment export uses it to line an artist's lossless take up with the same person's voice in the
//! room recording. Both come from one microphone, but by different paths: the take is placed by the
//! page's estimate of the server's clock and of when its audio graph captured sample 0 (which no
//! browser states exactly: input latency is not exposed, and a Bluetooth or USB device adds tens of
//! ms), while the voice is placed by when its packets reached the server. The waveforms differ too
//! (the call's echo canceller, noise suppressor, gain control and a voice-quality codec), so the two
//! are compared by *envelope*: mean absolute level per millisecond, with its slow part (over
//! [`DETREND_BLOCKS`]) taken away so onsets and decays dominate, correlated (Pearson) over a bounded
//! range of lags. A lag is trusted only when its correlation is high ([`MIN_SCORE`]) and stands clear
//! of every other peak ([`MIN_MARGIN`]); a silent or unrelated pair, or a sound so periodic that two
//! lags fit alike, gives `None` and the clock's placement stands.

/// Envelope blocks per second: one per millisecond.
pub const BLOCKS_PER_SECOND: u32 = 1000;
/// The slow part of an envelope is its mean over this many blocks around each block (31 ms).
pub const DETREND_BLOCKS: usize = 31;
/// Lowest correlation trusted.
pub const MIN_SCORE: f64 = 0.5;
/// The best lag's correlation exceeds that of every lag further than [`PEAK_WIDTH_BLOCKS`] from it
/// by at least this.
pub const MIN_MARGIN: f64 = 0.1;
/// Lags this close to the best belong to its peak.
pub const PEAK_WIDTH_BLOCKS: usize = 8;
/// Fewer overlapping blocks than this (1 s) say too little.
pub const MIN_OVERLAP_BLOCKS: usize = 1000;

/// Builds a mono envelope (mean |sample| per millisecond) from interleaved samples, a block at a time.
/// At rates that are not a multiple of 1000 (44.1 kHz), a block holds the frames whose time falls in
/// its millisecond.
#[derive(Debug, Clone)]
pub struct EnvelopeBuilder {
    rate: u64,
    channels: usize,
    frame: u64,
    block: u64,
    sum: f64,
    count: u32,
    values: Vec<f32>,
}

impl EnvelopeBuilder {
    pub fn new(rate: u32, channels: u16) -> EnvelopeBuilder {
        EnvelopeBuilder {
            rate: u64::from(rate.max(1)),
            channels: usize::from(channels.max(1)),
            frame: 0,
            block: 0,
            sum: 0.0,
            count: 0,
            values: Vec::new(),
        }
    }

    fn push_frame(&mut self, level: f64) {
        let block = self.frame * u64::from(BLOCKS_PER_SECOND) / self.rate;
        if block != self.block {
            self.flush();
            self.block = block;
        }
        self.sum += level;
        self.count += 1;
        self.frame += 1;
    }

    fn flush(&mut self) {
        let mean = if self.count == 0 {
            0.0
        } else {
            self.sum / f64::from(self.count)
        };
        self.values.push(mean as f32);
        self.sum = 0.0;
        self.count = 0;
    }

    /// Interleaved float samples (full scale ±1).
    pub fn push_f32(&mut self, samples: &[f32]) {
        for frame in samples.chunks(self.channels) {
            let level = frame.iter().map(|s| f64::from(s.abs())).sum::<f64>() / frame.len() as f64;
            self.push_frame(if level.is_finite() { level } else { 0.0 });
        }
    }

    /// Interleaved 16-bit samples.
    pub fn push_i16(&mut self, samples: &[i16]) {
        for frame in samples.chunks(self.channels) {
            let level = frame
                .iter()
                .map(|s| f64::from(s.unsigned_abs()) / 32768.0)
                .sum::<f64>()
                / frame.len() as f64;
            self.push_frame(level);
        }
    }

    /// The envelope: one value per millisecond from the first frame pushed.
    pub fn finish(mut self) -> Vec<f32> {
        if self.count > 0 {
            self.flush();
        }
        self.values
    }
}

/// The envelope less its mean over [`DETREND_BLOCKS`] around each block.
fn detrend(envelope: &[f32]) -> Vec<f64> {
    let half = DETREND_BLOCKS / 2;
    let mut prefix = Vec::with_capacity(envelope.len() + 1);
    prefix.push(0.0f64);
    for v in envelope {
        let last = prefix.last().copied().unwrap_or(0.0);
        prefix.push(last + f64::from(*v));
    }
    (0..envelope.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(envelope.len());
            let mean = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
            f64::from(envelope[i]) - mean
        })
        .collect()
}

/// Pearson correlation of `a[i]` with `b[i - lag]` over the blocks where both exist; `None` where
/// they overlap too little or either is flat there.
fn correlation(a: &[f64], b: &[f64], lag: i64) -> Option<f64> {
    let first = lag.max(0) as usize;
    let end = (b.len() as i64 + lag).min(a.len() as i64);
    if end <= first as i64 || ((end as usize) - first) < MIN_OVERLAP_BLOCKS {
        return None;
    }
    let end = end as usize;
    let n = (end - first) as f64;
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in first..end {
        let x = a[i];
        let y = b[(i as i64 - lag) as usize];
        sa += x;
        sb += y;
        saa += x * x;
        sbb += y * y;
        sab += x * y;
    }
    let va = saa - sa * sa / n;
    let vb = sbb - sb * sb / n;
    // Flat: silence (digital or after a noise suppressor) says nothing about where a sound is.
    if va <= 1e-12 * n || vb <= 1e-12 * n {
        return None;
    }
    Some((sab - sa * sb / n) / (va * vb).sqrt())
}

/// Where `other` lies against `reference`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// `other`'s sound is heard this many ms later in `reference` (negative: earlier); moving `other`
    /// this much later lines it up.
    pub ms: f64,
    /// The correlation at that lag (−1 to 1).
    pub score: f64,
    /// The best correlation of any lag outside the peak.
    pub runner_up: f64,
}

/// The lag within ±`max_lag_ms` at which `other`'s envelope best matches `reference`'s (both from
/// [`EnvelopeBuilder`], block 0 at the same time), to a fraction of a millisecond (a parabola through
/// the peak); `None` unless it is trusted (see the module's comment).
pub fn find_lag(reference: &[f32], other: &[f32], max_lag_ms: u32) -> Option<Lag> {
    let a = detrend(reference);
    let b = detrend(other);
    let max = i64::from(max_lag_ms * BLOCKS_PER_SECOND / 1000);
    let scores: Vec<Option<f64>> = (-max..=max).map(|lag| correlation(&a, &b, lag)).collect();
    let (best, score) = scores
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .max_by(|x, y| x.1.total_cmp(&y.1))?;
    let runner_up = scores
        .iter()
        .enumerate()
        .filter(|(i, _)| i.abs_diff(best) > PEAK_WIDTH_BLOCKS)
        .filter_map(|(_, s)| *s)
        .fold(f64::NEG_INFINITY, f64::max);
    if score < MIN_SCORE || score - runner_up < MIN_MARGIN {
        return None;
    }
    // At the edge of the range the true peak may lie beyond it.
    if best == 0 || best == scores.len() - 1 {
        return None;
    }
    let (l, r) = (scores[best - 1]?, scores[best + 1]?);
    let curve = l - 2.0 * score + r;
    let fraction = if curve < 0.0 {
        (0.5 * (l - r) / curve).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    let blocks = best as f64 - max as f64 + fraction;
    Some(Lag {
        ms: blocks * 1000.0 / f64::from(BLOCKS_PER_SECOND),
        score,
        runner_up,
    })
}

/// Length of the stretches [`find_lag_in_windows`] compares, and how far apart they start.
pub const WINDOW_MS: u32 = 4_000;
pub const WINDOW_STEP_MS: u32 = 2_000;
/// Trusted windows' lags this close to their median agree with it.
pub const AGREE_MS: f64 = 3.0;

/// [`find_lag`] over stretches of [`WINDOW_MS`] (every [`WINDOW_STEP_MS`]) rather than the whole:
/// the median lag of the largest group of trusted stretches that agree (within [`AGREE_MS`]). A pause
/// in the playing, a glitch in one recording (a dropped buffer shifts what follows it) or a noisy
/// passage then costs its stretches, not the whole match. `score` is the group's median correlation
/// and `runner_up` the worst margin in it. `None` only when no stretch is trusted. Shorter than one
/// stretch: [`find_lag`].
pub fn find_lag_in_windows(reference: &[f32], other: &[f32], max_lag_ms: u32) -> Option<Lag> {
    let per_ms = f64::from(BLOCKS_PER_SECOND) / 1000.0;
    let margin = (f64::from(max_lag_ms) * per_ms) as usize;
    let window = (f64::from(WINDOW_MS) * per_ms) as usize + 2 * margin;
    let step = (f64::from(WINDOW_STEP_MS) * per_ms) as usize;
    let len = reference.len().min(other.len());
    if len < window + step {
        return find_lag(reference, other, max_lag_ms);
    }
    let mut lags = Vec::new();
    let mut first = 0;
    while first + window <= len {
        let range = first..first + window;
        if let Some(lag) = find_lag(&reference[range.clone()], &other[range], max_lag_ms) {
            lags.push(lag);
        }
        first += step;
    }
    // The largest group of stretches that agree (within AGREE_MS of one of them), the higher total
    // correlation breaking a tie: a recording that lost a few ms of input part-way (a glitch under
    // load) fits one shift before and another after it; the shift that fits most of it wins.
    let agreeing: Vec<&Lag> = lags
        .iter()
        .map(|centre| {
            lags.iter()
                .filter(|l| (l.ms - centre.ms).abs() <= AGREE_MS)
                .collect::<Vec<&Lag>>()
        })
        .max_by(|a, b| {
            let total = |g: &[&Lag]| g.iter().map(|l| l.score).sum::<f64>();
            a.len().cmp(&b.len()).then(total(a).total_cmp(&total(b)))
        })?;
    let mut at: Vec<f64> = agreeing.iter().map(|l| l.ms).collect();
    at.sort_by(f64::total_cmp);
    let mut scores: Vec<f64> = agreeing.iter().map(|l| l.score).collect();
    scores.sort_by(f64::total_cmp);
    let runner_up = agreeing
        .iter()
        .map(|l| l.runner_up - l.score)
        .fold(f64::NEG_INFINITY, f64::max);
    let score = scores[scores.len() / 2];
    Some(Lag {
        ms: at[at.len() / 2],
        score,
        runner_up: score + runner_up,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random source (xorshift), in [-1, 1).
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    /// Tone bursts of irregular length and spacing (like playing), `seconds` long at `rate`, the
    /// first burst at `delay_s`.
    fn bursts(rate: u32, seconds: f64, delay_s: f64, seed: u64) -> Vec<f32> {
        let mut noise = Noise(seed);
        let n = (seconds * f64::from(rate)) as usize;
        let mut out = vec![0.0f32; n];
        let mut t = delay_s;
        let mut k = 0u64;
        while t < seconds {
            let length = 0.08 + 0.05 * (k % 5) as f64;
            let start = (t * f64::from(rate)) as usize;
            let end = (((t + length) * f64::from(rate)) as usize).min(n);
            for (i, s) in out.iter_mut().enumerate().take(end).skip(start) {
                let x = (i - start) as f64 / f64::from(rate);
                let decay = (-x * 12.0).exp();
                *s = (0.6 * decay * (2.0 * std::f64::consts::PI * 440.0 * x).sin()) as f32
                    + 0.02 * noise.next();
            }
            t += 0.23 + 0.11 * ((k * 7) % 4) as f64;
            k += 1;
        }
        out
    }

    fn envelope_f32(samples: &[f32], rate: u32) -> Vec<f32> {
        let mut b = EnvelopeBuilder::new(rate, 1);
        b.push_f32(samples);
        b.finish()
    }

    fn envelope_i16(samples: &[f32], rate: u32, gain: f32, noise: f32, seed: u64) -> Vec<f32> {
        let mut n = Noise(seed);
        let pcm: Vec<i16> = samples
            .iter()
            .map(|s| ((s * gain + noise * n.next()) * 32767.0).clamp(-32768.0, 32767.0) as i16)
            .collect();
        let mut b = EnvelopeBuilder::new(rate, 1);
        b.push_i16(&pcm);
        b.finish()
    }

    #[test]
    fn a_later_copy_is_found_to_a_fraction_of_a_millisecond() {
        // The reference hears the sound 23.4 ms later, quieter, through noise and at another rate.
        let take = bursts(44_100, 12.0, 0.5, 1);
        let voice = bursts(48_000, 12.0, 0.5 + 0.0234, 1);
        let reference = envelope_i16(&voice, 48_000, 0.3, 0.01, 9);
        let other = envelope_f32(&take, 44_100);
        let lag = find_lag(&reference, &other, 250).expect("a lag");
        assert!((lag.ms - 23.4).abs() < 0.6, "{lag:?}");
        assert!(lag.score > 0.8, "{lag:?}");
        // And the other way round.
        let lag = find_lag(&other, &reference, 250).expect("a lag");
        assert!((lag.ms + 23.4).abs() < 0.6, "{lag:?}");
    }

    #[test]
    fn an_envelope_has_a_block_per_millisecond_at_any_rate() {
        for rate in [8_000, 44_100, 48_000, 96_000] {
            let mut b = EnvelopeBuilder::new(rate, 2);
            let frames = rate as usize * 3 / 2;
            // In odd-sized pieces: the blocks do not depend on how the samples arrive.
            let samples = vec![0.5f32; frames * 2];
            for piece in samples.chunks(2 * 333) {
                b.push_f32(piece);
            }
            let env = b.finish();
            assert_eq!(env.len(), 1500, "{rate}");
            assert!(env.iter().all(|v| (v - 0.5).abs() < 1e-6));
        }
    }

    #[test]
    fn silence_and_unrelated_sounds_give_no_lag() {
        let a = envelope_f32(&bursts(48_000, 8.0, 0.3, 1), 48_000);
        let silent = vec![0.0f32; a.len()];
        assert_eq!(find_lag(&a, &silent, 250), None);
        assert_eq!(find_lag(&silent, &a, 250), None);
        let mut noise = Noise(5);
        let hiss: Vec<f32> = (0..48_000 * 8).map(|_| 0.1 * noise.next()).collect();
        assert_eq!(find_lag(&a, &envelope_f32(&hiss, 48_000), 250), None);
        // Too short to say.
        let short = envelope_f32(&bursts(48_000, 0.5, 0.1, 1), 48_000);
        assert_eq!(find_lag(&short, &short, 250), None);
    }

    #[test]
    fn a_glitch_costs_its_stretch_not_the_match() {
        // 20 s of playing; the take lost 3 ms at 6 s (a dropped buffer): before it, its sound lies
        // 15 ms early against the reference, after it 18 ms. The longer part's stretches win.
        let rate = 48_000;
        let voice = bursts(rate, 20.0, 0.5, 2);
        let shift = |ms: f64| (ms * 48.0) as usize;
        let mut take = voice[shift(15.0)..shift(6_000.0)].to_vec();
        take.extend_from_slice(&voice[shift(6_000.0) + shift(3.0)..]);
        let reference = envelope_f32(&voice, rate);
        let other = envelope_f32(&take, rate);
        let lag = find_lag_in_windows(&reference, &other, 250).expect("a lag");
        assert!((lag.ms - 18.0).abs() < 0.6, "{lag:?}");
        // A short pair falls back to the whole.
        let short = find_lag_in_windows(&reference[..3_000], &other[..3_000], 250).expect("a lag");
        assert!((short.ms - 15.0).abs() < 0.6, "{short:?}");
        assert_eq!(
            find_lag_in_windows(&reference, &vec![0.0; other.len()], 250),
            None
        );
        // Lost half-way through 8 s: two stretches, one for each shift. The better-matching one is
        // taken, not nothing.
        let mut take = voice[shift(15.0)..shift(4_000.0)].to_vec();
        take.extend_from_slice(&voice[shift(4_000.0) + shift(10.0)..shift(8_000.0)]);
        let other = envelope_f32(&take, rate);
        let lag = find_lag_in_windows(&reference[..8_000], &other, 250).expect("a lag");
        assert!(
            (lag.ms - 15.0).abs() < 0.6 || (lag.ms - 25.0).abs() < 0.6,
            "{lag:?}"
        );
    }

    #[test]
    fn a_strictly_periodic_sound_is_ambiguous() {
        // A click every 100 ms fits at lags 100 ms apart alike: no lag is trusted.
        let rate = 48_000;
        let mut clicks = vec![0.0f32; rate as usize * 6];
        for (i, s) in clicks.iter_mut().enumerate() {
            if i % (rate as usize / 10) < 480 {
                *s = 0.5;
            }
        }
        let a = envelope_f32(&clicks, rate);
        assert_eq!(find_lag(&a, &a, 250), None);
    }

    #[test]
    fn a_lag_beyond_the_range_is_not_taken_for_its_edge() {
        let take = bursts(48_000, 10.0, 0.5, 3);
        let voice = bursts(48_000, 10.0, 0.9, 3);
        let lag = find_lag(
            &envelope_f32(&voice, 48_000),
            &envelope_f32(&take, 48_000),
            250,
        );
        assert_eq!(lag, None);
    }
}
