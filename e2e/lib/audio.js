// Reading recorded files back the way a listener's player would: ffprobe for what a file holds, ffmpeg to
// decode it to 48 kHz mono samples, and the small signal tools the recording tests measure with (the
// dominant frequency by FFT, a tone's level over time by the Goertzel filter, where a tone starts).
// ffmpeg/ffprobe are Debian's (test.sh installs the `ffmpeg` package); nothing here knows parley's formats.

import { spawnSync } from 'node:child_process';

export const RATE = 48_000;

function run(cmd, args) {
  const r = spawnSync(cmd, args, { maxBuffer: 512 * 1024 * 1024 });
  if (r.error) throw new Error(`${cmd} did not run (apt-get install ffmpeg): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/**
 * What ffprobe finds in `file`: {format, duration (s, the container's), streams: [{type, codec, width,
 * height, duration, packets, start (s, its first packet's time)}]}.
 */
export function probe(file) {
  const out = JSON.parse(run('ffprobe', ['-v', 'error', '-count_packets', '-show_format', '-show_streams', '-of', 'json', file]).toString());
  return {
    format: out.format.format_name,
    duration: Number(out.format.duration),
    streams: out.streams.map((s) => ({
      type: s.codec_type,
      codec: s.codec_name,
      width: s.width,
      height: s.height,
      duration: s.duration === undefined ? null : Number(s.duration),
      packets: Number(s.nb_read_packets),
      start: s.start_time === undefined ? null : Number(s.start_time),
    })),
  };
}

/** `file`'s first audio stream decoded by ffmpeg to 48 kHz mono float samples. */
export function decode(file) {
  const bytes = run('ffmpeg', ['-v', 'error', '-i', file, '-map', '0:a:0', '-f', 'f32le', '-ac', '1', '-ar', String(RATE), '-']);
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return new Float32Array(copy.buffer, 0, Math.floor(bytes.length / 4));
}

/** Magnitudes of the FFT of `x` (length a power of two), bins 0..n/2. */
export function spectrum(x) {
  const n = x.length;
  if (n & (n - 1)) throw new Error('FFT length must be a power of two');
  const re = Float64Array.from(x);
  const im = new Float64Array(n);
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const ang = (-2 * Math.PI) / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(ang * k);
        const wi = Math.sin(ang * k);
        const a = i + k;
        const b = a + len / 2;
        const xr = re[b] * wr - im[b] * wi;
        const xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr;
        im[b] = im[a] - xi;
        re[a] += xr;
        im[a] += xi;
      }
    }
  }
  const mag = new Float64Array(n / 2 + 1);
  for (let k = 0; k <= n / 2; k++) mag[k] = Math.hypot(re[k], im[k]);
  return mag;
}

/** A Hann-windowed stretch of `n` samples (a power of two) of `x` from `start`. */
function windowed(x, start, n) {
  const w = new Float64Array(n);
  for (let i = 0; i < n; i++) w[i] = (x[start + i] || 0) * (0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1)));
  return w;
}

/** The strongest frequency (Hz, 50 Hz–8 kHz) in `n` samples of `x` from `start`. */
export function dominantFrequency(x, start, n = 8192) {
  const mag = spectrum(windowed(x, start, n));
  const lo = Math.ceil((50 * n) / RATE);
  const hi = Math.floor((8000 * n) / RATE);
  let best = lo;
  for (let k = lo; k <= hi; k++) if (mag[k] > mag[best]) best = k;
  // Parabolic interpolation between the neighbouring bins.
  const [a, b, c] = [mag[best - 1], mag[best], mag[best + 1]];
  const shift = (a - c) / (2 * (a - 2 * b + c)) || 0;
  return ((best + shift) * RATE) / n;
}

/**
 * The amplitude of each of `freqs` in `n` samples of `x` from `start`, in dB of full scale (a sine of
 * amplitude 1 is 0 dB; the Hann window's coherent gain is n/4 at the peak bin).
 */
export function toneLevels(x, start, freqs, n = 8192) {
  const mag = spectrum(windowed(x, start, n));
  return freqs.map((f) => {
    const k = Math.round((f * n) / RATE);
    const peak = Math.max(mag[k - 1], mag[k], mag[k + 1]);
    return 20 * Math.log10(Math.max(1e-12, (4 * peak) / n));
  });
}

/**
 * The level of a `freq` Hz tone in `x` over time: the Goertzel magnitude (as an amplitude, 1 = full
 * scale) of Hann-windowed `win`-sample windows every `hop` samples (20 ms windows part tones 100 Hz apart
 * by 30 dB and more). Returns {hop, win, levels}; a window's level is half the tone's when the tone
 * starts at its middle.
 */
export function toneEnvelope(x, freq, { win = 960, hop = 48 } = {}) {
  const coeff = 2 * Math.cos((2 * Math.PI * freq) / RATE);
  const w = new Float64Array(win);
  for (let i = 0; i < win; i++) w[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * (i + 0.5)) / win);
  const levels = new Float32Array(Math.max(0, Math.floor((x.length - win) / hop) + 1));
  for (let j = 0; j < levels.length; j++) {
    let s1 = 0;
    let s2 = 0;
    const at = j * hop;
    for (let i = 0; i < win; i++) {
      const s0 = x[at + i] * w[i] + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
    }
    const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    levels[j] = (4 * Math.sqrt(Math.max(0, power))) / win;
  }
  return { hop, win, levels };
}

/**
 * Where (seconds into `x`) the `freq` Hz tone starts after a silence, searching from `from` s: the moment its
 * level rises through half its steady level (the 90th percentile of its level after `from`), after at
 * least `quiet` s below a tenth of it. Null if there is no such moment.
 */
export function toneOnset(x, freq, { from = 0, quiet = 0.3 } = {}) {
  const { hop, win, levels } = toneEnvelope(x, freq);
  const perSecond = RATE / hop;
  const first = Math.max(1, Math.round(from * perSecond));
  const after = Array.from(levels.slice(first)).sort((p, q) => p - q);
  const steady = after[Math.floor(after.length * 0.9)] || 0;
  if (steady < 1e-3) return null;
  const need = Math.round(quiet * perSecond);
  let quietRun = 0;
  for (let j = first; j < levels.length; j++) {
    if (levels[j] < steady / 10) {
      quietRun += 1;
    } else if (levels[j] >= steady / 2 && quietRun >= need) {
      // Interpolate the crossing between hops; a window's level is half when its middle is at the onset.
      const prev = levels[j - 1];
      const frac = (steady / 2 - prev) / (levels[j] - prev);
      return (j - 1 + Math.min(1, Math.max(0, frac))) / perSecond + win / 2 / RATE;
    } else if (levels[j] >= steady / 2) {
      quietRun = 0;
    }
  }
  return null;
}
