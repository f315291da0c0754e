// "Record take": the artist's microphone captured losslessly on this device for studio mode, independent of
// the call. Its own getUserMedia stream without echo cancellation, noise suppression or gain control (the
// call's track keeps its processing), an AudioContext at the device's rate (48 kHz where the device gives
// it), and the 'parley-take' AudioWorklet (take-worklet.js), whose float samples are kept exactly. They are
// cut into chunks of 0.25 s; each is hashed (SHA-256) and stored on the device (take-store.js) before the upload
// queue (take-queue.js) sends it. Stopping stores the last partial chunk and ends the take at its total.
//
// Alignment: `start_take` carries `first_sample_server_ms`, our estimate of the server time at which sample 0
// was captured (see `sampleZeroLocalMs`), so the server can place the take on the session clock.

import { sha256Hex, takeLockName, webLocks } from './take-queue.js';

/** The take's own microphone: nothing between the device and the samples. */
export const TAKE_CONSTRAINTS = Object.freeze({
  audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1, sampleRate: 48000 },
  video: false,
});
// Small chunks keep each upload a short burst: a whole request goes out as fast as TCP allows, and on a
// narrow uplink it queues the call's packets behind it (parley-bench's upload step: at 2.5 Mbit/s up, 2 s
// chunks put 114 ms on the call's median latency and lost 0.65% of its packets; 0.25 s chunks lost none,
// p99 105 ms). A closed tab also loses at most this much.
export const CHUNK_SECONDS = 0.25;
const BLOCK_FRAMES = 3840; // the worklet's blocks: 30 render quanta
const START_TIMEOUT_MS = 3000;
const LOCK_WAIT_MS = 3000;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The spec's byte order (little-endian float32) of an ArrayBuffer of float32, swapped in place if need be. */
export function littleEndian(buffer) {
  if (LITTLE_ENDIAN) return buffer;
  const b = new Uint8Array(buffer);
  for (let i = 0; i + 3 < b.length; i += 4) {
    const x = b[i];
    b[i] = b[i + 3];
    b[i + 3] = x;
    const y = b[i + 1];
    b[i + 1] = b[i + 2];
    b[i + 2] = y;
  }
  return buffer;
}

/**
 * Cuts the worklet's blocks (interleaved float32) into chunks of `chunkFrames` frames:
 * {seq, first_sample, samples, data: ArrayBuffer}. Seqs count from 0; first_sample is the sum of the
 * frames before, as the server checks.
 */
export class ChunkCutter {
  constructor({ channels, chunkFrames }) {
    this.channels = channels;
    this.chunkFrames = chunkFrames;
    this.buf = null;
    this.fill = 0;
    this.first = 0;
    this.seq = 0;
    this.frames = 0; // all frames pushed
  }

  /** Takes `frames` frames of `data`; returns the chunks they completed (usually none). */
  push(data, frames) {
    const out = [];
    const ch = this.channels;
    let off = 0;
    while (off < frames) {
      if (!this.buf) {
        this.buf = new Float32Array(this.chunkFrames * ch);
        this.fill = 0;
      }
      const n = Math.min(frames - off, this.chunkFrames - this.fill);
      this.buf.set(data.subarray(off * ch, (off + n) * ch), this.fill * ch);
      this.fill += n;
      off += n;
      this.frames += n;
      if (this.fill === this.chunkFrames) out.push(this.cut());
    }
    return out;
  }

  /** The partial chunk so far (null when there is none); the next chunk starts after it. */
  flush() {
    return this.buf && this.fill > 0 ? this.cut() : null;
  }

  cut() {
    const samples = this.fill;
    const data = samples === this.chunkFrames ? this.buf.buffer : this.buf.slice(0, samples * this.channels).buffer;
    const chunk = { seq: this.seq, first_sample: this.first, samples, data };
    this.seq += 1;
    this.first += samples;
    this.buf = null;
    this.fill = 0;
    return chunk;
  }
}

/**
 * When take frame 0 was captured, on this page's clock (Unix ms: performance.timeOrigin + performance.now()).
 *
 * What is measured: the worklet says which context frame became take frame 0 (`frame`). The context's clock
 * is tied to performance.now() by getOutputTimestamp(): the frame at `contextTime` leaves the speakers at
 * `performanceTime`. A frame is rendered (and the microphone's frame of the same context time consumed)
 * baseLatency + outputLatency before it is heard, and that microphone frame was captured the track's input
 * latency (getSettings().latency, where the browser reports it) before it was consumed. Without a usable
 * output timestamp, currentTime against performance.now() is the fallback (good to a render quantum or so).
 * The error that remains is the browser's capture buffering it does not report, typically a few ms.
 */
export function sampleZeroLocalMs({ frame, sampleRate, outputTimestamp = null, baseLatency = 0, outputLatency = 0, inputLatency = 0, timeOrigin, perfNow, currentTime }) {
  const t = frame / sampleRate;
  const lat = (v) => (Number.isFinite(v) && v > 0 && v < 1 ? v : 0);
  const ts = outputTimestamp;
  let renderPerf;
  let method;
  if (ts && ts.contextTime > 0 && ts.performanceTime > 0) {
    renderPerf = ts.performanceTime + (t - ts.contextTime) * 1000 - (lat(baseLatency) + lat(outputLatency)) * 1000;
    method = 'output-timestamp';
  } else {
    renderPerf = perfNow - (currentTime - t) * 1000;
    method = 'current-time';
  }
  const inputLatencyMs = lat(inputLatency) * 1000;
  return {
    localMs: timeOrigin + renderPerf - inputLatencyMs,
    method,
    contextTime: t,
    inputLatencyMs,
    outputLatencyMs: (lat(baseLatency) + lat(outputLatency)) * 1000,
  };
}

function withTimeout(promise, ms, message) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function namedError(name, message) {
  const err = new Error(message);
  err.name = name;
  return err;
}

/**
 * One take at a time: `start()` (resolves with the server's TakeInfo once recording), `stop()` (resolves once
 * every chunk is stored and the take is ended in the queue). Events: `state` {state}, `problem` {code,
 * message}: the take stopped by itself (device gone, audio interrupted, storage full).
 */
export class TakeRecorder extends EventTarget {
  /**
   * @param {{request: (msg: object, opts?: object) => Promise<object>, queue: import('./take-queue.js').TakeQueue,
   *   clock: import('./studio-clock.js').ServerClock, locks?: object, chunkSeconds?: number, workletUrl?: string,
   *   extras?: () => object}} opts `request`: the signalling request (start_take); `extras()`: fields stored
   *   with the take (the room's name, ours).
   */
  constructor({ request, queue, clock, locks = webLocks, chunkSeconds = CHUNK_SECONDS, workletUrl = '/take-worklet.js', extras = () => ({}) }) {
    super();
    this.request = request;
    this.queue = queue;
    this.clock = clock;
    this.locks = locks;
    this.chunkSeconds = chunkSeconds;
    this.workletUrl = workletUrl;
    this.extras = extras;
    this.state = 'idle'; // idle → starting → recording → stopping → stopped
    this.take = null;
    this.timing = null;
    this.stream = null;
    this.ctx = null;
    this.node = null;
    this.cutter = null;
    this.frames = 0; // frames captured
    this.storedFrames = 0; // frames stored on the device, contiguous from 0
    this.storageBroken = false;
    this.pipeline = Promise.resolve();
    this.takeReady = null;
    this.waiters = { started: null, stopped: null };
    this.starting = null;
    this.stopping = null;
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state } }));
  }

  /** Seconds captured so far. */
  get seconds() {
    return this.ctx ? this.frames / this.ctx.sampleRate : 0;
  }

  start() {
    if (this.state !== 'idle') return Promise.reject(new Error('This take has started already.'));
    this.starting = this.doStart();
    return this.starting;
  }

  async doStart() {
    this.setState('starting');
    let markReady;
    let failReady;
    this.takeReady = new Promise((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    this.takeReady.catch(() => {});
    try {
      const media = globalThis.navigator && navigator.mediaDevices;
      if (!media || !media.getUserMedia) throw namedError('NotSupportedError', 'This browser cannot use a microphone here');
      this.stream = await media.getUserMedia(TAKE_CONSTRAINTS);
      const track = this.stream.getAudioTracks()[0];
      if (!track) throw namedError('NotFoundError', 'No microphone was found.');
      const settings = track.getSettings ? track.getSettings() : {};
      const channels = settings.channelCount === 2 ? 2 : 1;
      const rate = Number.isFinite(settings.sampleRate) && settings.sampleRate > 0 ? settings.sampleRate : 48000;
      const source = await this.openContext(rate);
      this.node = new AudioWorkletNode(this.ctx, 'parley-take', {
        numberOfInputs: 1,
        numberOfOutputs: 1, // to the destination (silent), so the context surely renders it
        outputChannelCount: [1],
        channelCount: channels,
        channelCountMode: 'explicit',
        channelInterpretation: 'discrete', // no up- or down-mixing: the device's channels as they are
        processorOptions: { channels, blockFrames: BLOCK_FRAMES },
      });
      this.node.port.onmessage = (ev) => this.onWorklet(ev.data || {});
      source.connect(this.node);
      this.node.connect(this.ctx.destination);
      if (this.ctx.state !== 'running') await withTimeout(this.ctx.resume(), 2000, 'audio did not start').catch(() => {});
      if (this.ctx.state !== 'running') throw namedError('NotAllowedError', 'The browser did not let the recording start. Press Record take again.');
      this.cutter = new ChunkCutter({ channels, chunkFrames: Math.round(this.chunkSeconds * this.ctx.sampleRate) });

      const started = await this.workletSays('started', { type: 'start' });
      let ts = null;
      try {
        ts = this.ctx.getOutputTimestamp ? this.ctx.getOutputTimestamp() : null;
      } catch {
        ts = null;
      }
      this.timing = sampleZeroLocalMs({
        frame: started.frame,
        sampleRate: this.ctx.sampleRate,
        outputTimestamp: ts,
        baseLatency: this.ctx.baseLatency,
        outputLatency: this.ctx.outputLatency,
        inputLatency: settings.latency,
        timeOrigin: performance.timeOrigin,
        perfNow: performance.now(),
        currentTime: this.ctx.currentTime,
      });
      // The sample's local time is fixed now; its server time is read off the best offset we can wait for.
      const locked = await this.clock.whenLocked(LOCK_WAIT_MS);
      const firstSampleServerMs = this.clock.toServer(this.timing.localMs);
      Object.assign(this.timing, { clockLocked: locked, clockBoundMs: this.clock.bound, offsetMs: this.clock.offset });

      const reply = await this.request(
        { type: 'start_take', sample_rate: this.ctx.sampleRate, channels, first_sample_server_ms: firstSampleServerMs },
        { ownErrors: true },
      );
      const take = reply && reply.take;
      if (!take || take.take_id == null || !reply.upload_token) throw new Error('The server did not start the take.');
      if (this.state !== 'starting') throw new Error('The take was stopped while it started.');
      const release = await withTimeout(this.locks.acquire(takeLockName(take.take_id)), 2000, 'lock').catch(() => null);
      await this.queue.addTake(
        {
          ...take,
          upload_token: reply.upload_token,
          sample_rate: this.ctx.sampleRate,
          channels,
          first_sample_server_ms: firstSampleServerMs,
          timing: { ...this.timing },
          ...this.extras(),
        },
        { release },
      );
      this.take = take;
      this.watch(track);
      markReady();
      this.setState('recording');
      return take;
    } catch (err) {
      failReady(err);
      this.teardown();
      this.setState('idle');
      throw err;
    }
  }

  /** A context at `rate` where the browser can (else its own), with the worklet; returns the source node. */
  async openContext(rate) {
    const Ctor = globalThis.AudioContext || globalThis.webkitAudioContext;
    if (!Ctor || typeof AudioWorkletNode === 'undefined') throw namedError('NotSupportedError', 'This browser cannot record takes (no AudioWorklet).');
    const make = async (opts) => {
      this.ctx = new Ctor(opts);
      await this.ctx.audioWorklet.addModule(this.workletUrl);
      return this.ctx.createMediaStreamSource(this.stream);
    };
    try {
      return await make({ sampleRate: rate, latencyHint: 'interactive' });
    } catch (err) {
      // Some browsers take a microphone only into a context at its own rate.
      if (this.ctx) this.ctx.close().catch(() => {});
      this.ctx = null;
      if (err && err.name === 'NotAllowedError') throw err;
      return make({ latencyHint: 'interactive' });
    }
  }

  /** Posts `msg` to the worklet and waits for its `type` message. */
  workletSays(type, msg) {
    const p = new Promise((resolve) => {
      this.waiters[type] = resolve;
    });
    this.node.port.postMessage(msg);
    return withTimeout(p, START_TIMEOUT_MS, `the recorder did not answer (${type})`);
  }

  onWorklet(msg) {
    if (msg.type === 'block' && msg.data instanceof Float32Array && this.cutter) {
      if (msg.first !== this.cutter.frames) console.warn('[parley] take: block out of order', msg.first, this.cutter.frames);
      for (const chunk of this.cutter.push(msg.data, msg.frames)) this.enqueue(chunk);
      this.frames = this.cutter.frames;
      // The buffer goes back to the audio thread: a steady take allocates nothing there.
      if (this.node) this.node.port.postMessage({ type: 'recycle', buffer: msg.data }, [msg.data.buffer]);
    } else if (msg.type === 'started' || msg.type === 'stopped') {
      const w = this.waiters[msg.type];
      this.waiters[msg.type] = null;
      if (w) w(msg);
    }
  }

  /** Hashes and stores chunks strictly in order, once the take exists on the server. */
  enqueue(chunk) {
    this.pipeline = this.pipeline
      .then(() => this.takeReady)
      .then(() => this.store(chunk))
      .catch((err) => {
        if (this.take && !this.storageBroken) {
          // Nothing after a chunk that could not be stored may be: the take ends at the last stored frame.
          this.storageBroken = true;
          this.problem('storage', `This device could not store the take (${err && err.message ? err.message : err}); it stopped at ${Math.floor(this.storedFrames / (this.ctx ? this.ctx.sampleRate : 48000))} s.`);
        }
      });
  }

  async store(chunk) {
    if (this.storageBroken) return;
    const data = littleEndian(chunk.data);
    const sha256 = await sha256Hex(data);
    const kept = await this.queue.addChunk(this.take.take_id, { seq: chunk.seq, first_sample: chunk.first_sample, samples: chunk.samples, sha256, data });
    if (kept) this.storedFrames = chunk.first_sample + chunk.samples;
    else this.storageBroken = true; // the queue ended the take (the server's length limit): no more
  }

  /** The device or the audio went away: the take stops by itself. */
  watch(track) {
    track.addEventListener('ended', () => {
      if (this.state === 'recording') this.problem('device', 'The microphone went away: the take stopped.');
    });
    this.ctx.addEventListener('statechange', () => {
      // Frames missed while the context is not running would shift everything after them: the take ends.
      if (this.state === 'recording' && this.ctx && this.ctx.state !== 'running') this.problem('interrupted', 'The browser interrupted the audio: the take stopped.');
    });
  }

  problem(code, message) {
    this.dispatchEvent(new CustomEvent('problem', { detail: { code, message } }));
    this.stop().catch(() => {});
  }

  /** Stores what the worklet has given so far as a (short) chunk: the page may be about to go. */
  flushPartial() {
    if (this.state !== 'recording' || !this.cutter) return;
    const tail = this.cutter.flush();
    if (tail) this.enqueue(tail);
  }

  /** Stops capturing, stores the rest and ends the take at its total. Safe to call more than once. */
  async stop() {
    if (this.state === 'starting' && this.starting) await this.starting.catch(() => {});
    if (this.state !== 'recording') return this.stopping || undefined;
    this.setState('stopping');
    this.stopping = (async () => {
      if (this.node && this.ctx && this.ctx.state === 'running') {
        await this.workletSays('stopped', { type: 'stop' }).catch(() => {});
      }
      const tail = this.cutter ? this.cutter.flush() : null;
      if (tail) this.enqueue(tail);
      this.teardown();
      await this.pipeline;
      await this.queue.endTake(this.take.take_id, this.storedFrames);
      this.setState('stopped');
    })();
    return this.stopping;
  }

  teardown() {
    if (this.node) {
      this.node.port.onmessage = null;
      try {
        this.node.disconnect();
      } catch {
        // not connected
      }
    }
    this.node = null;
    if (this.ctx) this.ctx.close().catch(() => {});
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
  }

  snapshot() {
    return {
      state: this.state,
      take_id: this.take ? this.take.take_id : null,
      sample_rate: this.ctx ? this.ctx.sampleRate : this.take ? this.take.sample_rate : null,
      frames: this.frames,
      stored_frames: this.storedFrames,
      timing: this.timing ? { ...this.timing } : null,
    };
  }
}
