// Audio levels: each audio track goes through a Web Audio AnalyserNode (never to the speakers: playback is
// the <audio> element's job). Chromium only feeds a remote WebRTC track into Web Audio while the same
// stream is also attached to a media element, which the room view always does.

let ctx = null;

/** The page's AudioContext, created on first use. Call from a user gesture so it may start running. */
export function audioContext() {
  if (!ctx) {
    const Ctor = window.AudioContext || window.webkitAudioContext;
    if (!Ctor) return null;
    ctx = new Ctor();
  }
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  return ctx;
}

export class LevelMeter {
  /** @param {MediaStream} stream a stream holding the audio track to measure */
  constructor(stream) {
    this.source = null;
    this.analyser = null;
    this.buf = null;
    const ac = audioContext();
    if (!ac || stream.getAudioTracks().length === 0) return;
    try {
      this.source = ac.createMediaStreamSource(stream);
      this.analyser = ac.createAnalyser();
      this.analyser.fftSize = 1024;
      this.analyser.smoothingTimeConstant = 0;
      this.source.connect(this.analyser);
      this.buf = new Float32Array(this.analyser.fftSize);
    } catch (err) {
      console.warn('[parley] level meter unavailable', err);
      this.source = null;
      this.analyser = null;
    }
  }

  /** {rms, peak} of the latest ~21 ms of audio, each 0..1. */
  read() {
    if (!this.analyser) return { rms: 0, peak: 0 };
    this.analyser.getFloatTimeDomainData(this.buf);
    let sum = 0;
    let peak = 0;
    for (let i = 0; i < this.buf.length; i++) {
      const v = this.buf[i];
      sum += v * v;
      const a = v < 0 ? -v : v;
      if (a > peak) peak = a;
    }
    return { rms: Math.min(1, Math.sqrt(sum / this.buf.length)), peak: Math.min(1, peak) };
  }

  /** The RMS level, 0..1. */
  level() {
    return this.read().rms;
  }

  close() {
    try {
      if (this.source) this.source.disconnect();
    } catch {
      // already disconnected
    }
    this.source = null;
    this.analyser = null;
  }
}

/** Maps an RMS level to a 0..1 meter position on a rough dB scale (-60 dB .. 0 dB). */
export function meterPosition(rms) {
  if (rms <= 0.001) return 0;
  const db = 20 * Math.log10(rms);
  return Math.max(0, Math.min(1, (db + 60) / 60));
}
