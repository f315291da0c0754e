// Audio levels for the meters.
// - Your own microphone: a Web Audio AnalyserNode on the local track (LevelMeter).
// - Everyone else: the server's `levels` messages (ServerLevels), taken from the RFC 6464 levels in the
//   RTP headers, so meters move even while you are deafened and nothing is decoded for them.
// Remote tracks also get a LevelMeter (never connected to the speakers: playback is the <audio>
// element's job); Chromium only feeds a remote WebRTC track into Web Audio while the same stream is also
// attached to a media element, which the room view always does.

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
    this.gain = null;
    this.output = false; // also played through the AudioContext (a volume above 100 %)
    this.analyser = null;
    this.buf = null;
    const ac = audioContext();
    if (!ac || stream.getAudioTracks().length === 0) return;
    try {
      this.source = ac.createMediaStreamSource(stream);
      // A local volume (people.js) sits between the source and the analyser: what is measured is what is heard.
      this.gain = ac.createGain();
      this.analyser = ac.createAnalyser();
      this.analyser.fftSize = 1024;
      this.analyser.smoothingTimeConstant = 0;
      this.source.connect(this.gain);
      this.gain.connect(this.analyser);
      this.buf = new Float32Array(this.analyser.fftSize);
    } catch (err) {
      console.warn('[parley] level meter unavailable', err);
      this.source = null;
      this.analyser = null;
    }
  }

  /** The local volume, 0..2 (1: as received). */
  setGain(g) {
    if (this.gain) this.gain.gain.value = g;
  }

  /** Plays the (volume-scaled) audio through the page's AudioContext too (on) or not. */
  setOutput(on) {
    if (!this.gain || on === !!this.output) return;
    const ac = audioContext();
    try {
      if (on) this.gain.connect(ac.destination);
      else this.gain.disconnect(ac.destination);
      this.output = on;
    } catch (err) {
      console.warn('[parley] volume output', err);
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
      if (this.gain) this.gain.disconnect();
    } catch {
      // already disconnected
    }
    this.source = null;
    this.gain = null;
    this.output = false;
    this.analyser = null;
  }
}

const METER_FLOOR_DB = -60; // the empty end of a meter

/** Maps an RMS level to a 0..1 meter position on a dB scale (-60 dB .. 0 dB). */
export function meterPosition(rms) {
  if (rms <= 0.001) return 0;
  const db = 20 * Math.log10(rms);
  return Math.max(0, Math.min(1, (db - METER_FLOOR_DB) / -METER_FLOOR_DB));
}

/**
 * Maps a server level (0–100, which is 100 × (1 − dBov / 127): 0 is silence at -127 dBov) to the same
 * 0..1 meter position as meterPosition().
 */
export function serverLevelPosition(level) {
  if (!(level > 0)) return 0;
  const db = -127 * (1 - Math.min(level, 100) / 100);
  return Math.max(0, Math.min(1, (db - METER_FLOOR_DB) / -METER_FLOOR_DB));
}

/** A meter position at or above this counts as talking (about -40 dB): the tile gets its ring. */
export const SPEAKING_POSITION = 0.33;

const LEVELS_STALE_MS = 1000; // the server sends ~10 a second while anyone makes a sound

/** The room's latest `levels` message: participant id -> 0–100. */
export class ServerLevels {
  constructor() {
    this.levels = new Map();
    this.at = 0;
  }

  /** A `levels` message; whoever it leaves out (muted, not sending) is silent. */
  update(list) {
    this.levels.clear();
    for (const l of Array.isArray(list) ? list : []) {
      if (l && l.id != null && Number.isFinite(l.level)) this.levels.set(String(l.id), l.level);
    }
    this.at = performance.now();
  }

  /** The level of participant `id`, 0–100 (0 once the messages have stopped for a while). */
  get(id) {
    if (performance.now() - this.at > LEVELS_STALE_MS) return 0;
    return this.levels.get(String(id)) || 0;
  }

  /** {id: level} of the latest message. */
  snapshot() {
    return Object.fromEntries(this.levels);
  }

  clear() {
    this.levels.clear();
    this.at = 0;
  }
}
