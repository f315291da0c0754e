// Camera background effects: blur or replace what is behind the person, in this page, before anything is
// sent. The raw camera plays in a detached <video>; MediaPipe's selfie segmentation (vendored in
// web/vendor/selfie-segmentation/: wasm, a small tflite model and its graph; nothing is fetched from
// elsewhere) makes a mask of the person from a 256-px copy of the frame, and every frame is drawn on a
// canvas: the person through the mask over a blurred copy of the frame or over a built-in backdrop. The
// canvas's captureStream() track is what the preview shows and the camera transceiver sends. Off by
// default (prefs.effect). One model instance serves the page; it loads on first use only, so people who
// never turn an effect on never download it.
//
// The model runs at most a third of the time (nextModelRun): with a GPU that is every frame; without one
// (WebGL in software) the frame rate holds and the mask updates less often. Until the model is ready, or
// if it cannot load, the whole frame gets the background treatment: turning an effect on never sends the
// unprocessed background, not even for the first second.

import { EFFECT_MODES } from './prefs.js';

export { EFFECT_MODES };

const VENDOR = '/vendor/selfie-segmentation/';

/** A stored or chosen value as an effect mode: anything unknown is 'off'. */
export function effectMode(value) {
  return EFFECT_MODES.includes(value) ? value : 'off';
}

/** The blur radius in pixels for a frame `width` wide: strong enough that faces and text behind are unreadable. */
export function blurRadius(width) {
  return Math.max(4, Math.round(width / 40));
}

/**
 * Mean and 95th percentile of `samples` (ms), rounded to 0.1 ms; {mean: 0, p95: 0} when empty. Pure:
 * tested without a browser.
 */
export function summarize(samples) {
  if (!samples.length) return { mean: 0, p95: 0 };
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((s, v) => s + v, 0) / sorted.length;
  const p95 = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.95) - 1)];
  return { mean: Math.round(mean * 10) / 10, p95: Math.round(p95 * 10) / 10 };
}

/** What the pickers' status line says for `status` ({state, error}); '' when there is nothing to say. */
export function effectStatusText({ state, error } = {}) {
  switch (state) {
    case 'loading':
      return 'Loading the background effect…';
    case 'failed':
      return `The background effect could not start${error ? ` (${error})` : ''}: your whole picture is covered. Turn the effect off to send your camera as it is.`;
    default:
      return '';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Status and cost, for the pickers and for tests

/** Fires 'change' whenever `effectStatus()` changes. */
export const effectEvents = new EventTarget();
let status = { state: 'off', error: '' }; // 'off' | 'loading' | 'on' | 'failed'

function setStatus(state, error = '') {
  if (status.state === state && status.error === error) return;
  status = { state, error };
  effectEvents.dispatchEvent(new Event('change'));
}

/** {state: 'off' | 'loading' | 'on' | 'failed', error}: the effect running in this page. */
export function effectStatus() {
  return { ...status };
}

const STATS_WINDOW = 300; // samples kept for the figures (~12 s at 24 fps)
const stats = { mode: 'off', frames: 0, times: [], stamps: [], model: [], width: 0, height: 0 };

/**
 * The cost of the running effect, measured in the page (performance.now()): {mode, state, frames, meanMs,
 * p95Ms, modelMeanMs, modelP95Ms, busyPct, fps, maskFps, width, height}. meanMs / p95Ms: compositing one
 * frame; modelMeanMs / modelP95Ms: one run of the model (segmentation, from the frame to its mask, waits
 * included); busyPct: the share of the main thread the effect itself held over the last 2 s (compositing
 * and the model's calls); fps / maskFps: frames made and masks computed per second over the last 2 s.
 */
export function effectStats() {
  const frame = summarize(stats.times);
  const model = summarize(stats.model.map((m) => m.ms));
  const now = performance.now();
  const recent = stats.stamps.filter((s) => now - s.at <= 2000);
  const recentModel = stats.model.filter((m) => now - m.at <= 2000);
  const busy = [...recent, ...recentModel].reduce((sum, s) => sum + s.busy, 0);
  return {
    mode: stats.mode,
    state: status.state,
    frames: stats.frames,
    meanMs: frame.mean,
    p95Ms: frame.p95,
    modelMeanMs: model.mean,
    modelP95Ms: model.p95,
    busyPct: Math.round(busy / 2) / 10,
    fps: recent.length / 2,
    maskFps: recentModel.length / 2,
    width: stats.width,
    height: stats.height,
  };
}

function resetStats(mode) {
  Object.assign(stats, { mode, frames: 0, times: [], stamps: [], model: [], width: 0, height: 0 });
}

function keep(list, value) {
  list.push(value);
  if (list.length > STATS_WINDOW) list.shift();
}

function recordFrame(ms, busyMs, width, height) {
  stats.frames += 1;
  keep(stats.times, ms);
  keep(stats.stamps, { at: performance.now(), busy: busyMs });
  stats.width = width;
  stats.height = height;
}

function recordModel(ms, busyMs) {
  keep(stats.model, { ms, busy: busyMs, at: performance.now() });
}

// ---------------------------------------------------------------------------------------------------------
// The model: one instance per page, loaded on first use

let modelPromise = null;
let modelUser = null; // the CameraEffect whose frame is in the model right now (it takes the mask)
let modelLock = Promise.resolve(); // one frame in the model at a time, whoever sends it

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = src;
    s.async = true;
    s.addEventListener('load', () => resolve());
    s.addEventListener('error', () => reject(new Error('the segmentation model could not be downloaded')));
    document.head.appendChild(s);
  });
}

function loadModel() {
  if (!modelPromise) {
    modelPromise = (async () => {
      // The MediaPipe solution is a classic script that defines window.SelfieSegmentation; it then loads
      // its own wasm loader, the wasm and the model from the folder locateFile names.
      if (typeof window.SelfieSegmentation !== 'function') await loadScript(`${VENDOR}selfie_segmentation.js`);
      if (typeof window.SelfieSegmentation !== 'function') throw new Error('the segmentation model did not load');
      const model = new window.SelfieSegmentation({ locateFile: (file) => VENDOR + file });
      // modelSelection 1: the "landscape" model (144×256 input), made for video calls and the cheaper one.
      model.setOptions({ modelSelection: 1, selfieMode: false });
      model.onResults((results) => {
        if (modelUser) modelUser.takeMask(results);
      });
      await model.initialize();
      return model;
    })();
    // A failed load (no WebGL, a network hiccup) is tried again the next time an effect starts.
    modelPromise.catch(() => {
      modelPromise = null;
    });
  }
  return modelPromise;
}

/** Drops a model that failed or got stuck: the next effect started loads a fresh one. */
function forgetModel(model) {
  modelPromise = null;
  modelLock = Promise.resolve(); // not behind a run that never ends
  Promise.resolve()
    .then(() => model.close())
    .catch(() => {});
}

/**
 * Runs `image` through the model; `effect.takeMask` gets the result before this resolves, with the ms the
 * main thread spent in the call itself (the rest of a run waits on WebGL).
 */
function segment(model, effect, image) {
  const run = modelLock.then(async () => {
    modelUser = effect;
    try {
      const t = performance.now();
      const sent = model.send({ image });
      const syncMs = performance.now() - t;
      await sent;
      return syncMs;
    } finally {
      modelUser = null;
    }
  });
  modelLock = run.catch(() => {});
  return run;
}

// ---------------------------------------------------------------------------------------------------------
// One camera's processing

const MODEL_WIDTH = 256; // the landscape model's input is 256×144: a frame this size is all it needs
const MODEL_DUTY = 1 / 3; // the model takes at most this share of the time; other frames reuse the last mask
const BLUR_SCALE = 4; // the background is blurred at 1/4 of the frame's size
const MODEL_TIMEOUT_MS = 10_000; // a run that long means a stuck model (a lost WebGL context): give it up

/**
 * When the model may run next, after a run that took `ms` and ended at `end`: the model then takes at most
 * MODEL_DUTY of the time, so that where it is slow (no GPU: WebGL in software) the picture keeps its frame
 * rate and only the mask updates less often; where it is fast it runs on every frame. Pure.
 */
export function nextModelRun(end, ms, duty = MODEL_DUTY) {
  return end + ms * (1 / duty - 1);
}

export class CameraEffect {
  /**
   * @param {string} mode 'blur' | 'replace'
   * @param {{fps?: number}} opts the most frames per second made (the camera asks for 24)
   */
  constructor(mode, { fps = 24 } = {}) {
    this.mode = effectMode(mode);
    this.fps = fps;
    this.rate = fps; // frames made per second: the camera's rate, at most `fps`
    this.input = null; // the raw camera track
    this.track = null; // the processed track (canvas.captureStream)
    this.model = null;
    this.running = false;
    this.timer = 0;
    this.nextModelAt = 0;
    this.modelBusy = false;
    this.modelRuns = 0; // runs of the current model by this effect
    this.video = document.createElement('video');
    this.video.muted = true;
    this.video.playsInline = true;
    this.canvas = document.createElement('canvas'); // the output
    this.ctx = this.canvas.getContext('2d');
    this.modelInput = document.createElement('canvas'); // the frame, scaled down for the model
    this.mask = document.createElement('canvas'); // the last mask (alpha: the person)
    this.hasMask = false;
    this.small = null; // the background, scaled down and blurred
    this.backdrop = null; // the replace mode's background, made per frame size
  }

  /**
   * Processes raw camera track `input` from now on (a camera switch keeps the same output track, so the
   * sender needs no replaceTrack for it). Returns the processed track.
   */
  start(input) {
    this.input = input;
    this.hasMask = false; // another camera: its own mask
    const { width, height, frameRate } = input.getSettings();
    // No faster than the camera: more frames would only repeat its last one.
    this.rate = Math.min(this.fps, frameRate || this.fps);
    if (!this.track) {
      // The right size from the first frame on, so the receiver's decoder is not reset a moment later.
      if (width && height) this.resize(width, height);
      this.track = this.canvas.captureStream(this.fps).getVideoTracks()[0];
      this.track.contentHint = 'motion';
    }
    this.video.srcObject = new MediaStream([input]);
    this.video.play().catch(() => {});
    if (!this.running) {
      this.running = true;
      resetStats(this.mode);
      this.loadModel();
      this.tick();
    }
    return this.track;
  }

  setMode(mode) {
    this.mode = effectMode(mode);
    stats.mode = this.mode;
  }

  async loadModel() {
    setStatus('loading');
    try {
      const model = await loadModel();
      if (!this.running) return;
      this.model = model;
      this.modelRuns = 0;
      setStatus('on');
    } catch (err) {
      console.warn('[parley] background effect', err);
      if (this.running) setStatus('failed', err && err.message ? err.message : String(err));
    }
  }

  /** Makes one frame, then schedules the next so that frames come at most `fps` a second. */
  tick() {
    if (!this.running) return;
    const t0 = performance.now();
    const video = this.video;
    if (video.readyState >= 2 && video.videoWidth) {
      try {
        if (video.videoWidth !== this.canvas.width || video.videoHeight !== this.canvas.height) {
          this.resize(video.videoWidth, video.videoHeight);
        }
        // The model runs beside the frames: while it works (its WebGL may wait on the GPU) frames go on
        // with the last mask.
        if (this.model && !this.modelBusy && t0 >= this.nextModelAt) {
          this.modelBusy = true;
          this.runModel(video).finally(() => {
            this.modelBusy = false;
          });
        }
        const t1 = performance.now();
        if (this.hasMask) this.composite(video);
        else this.cover(video);
        const t2 = performance.now();
        recordFrame(t2 - t1, t2 - t0, this.canvas.width, this.canvas.height);
      } catch (err) {
        // One bad frame (a camera switch mid-frame) must not end the effect; the next frame tries again.
        console.warn('[parley] background effect frame', err);
      }
    }
    if (!this.running) return;
    const wait = Math.max(0, 1000 / this.rate - (performance.now() - t0));
    this.timer = setTimeout(() => this.tick(), wait);
  }

  /** A new mask from the current frame (scaled down first: less to upload to the model's WebGL). */
  async runModel(video) {
    const t = performance.now();
    const w = MODEL_WIDTH;
    const h = Math.max(1, Math.round((MODEL_WIDTH * video.videoHeight) / video.videoWidth));
    if (this.modelInput.width !== w || this.modelInput.height !== h) {
      this.modelInput.width = w;
      this.modelInput.height = h;
    }
    this.modelInput.getContext('2d').drawImage(video, 0, 0, w, h);
    let timer = 0;
    let syncMs = 0;
    try {
      syncMs = await Promise.race([
        segment(this.model, this, this.modelInput),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error('the model stopped answering')), MODEL_TIMEOUT_MS);
        }),
      ]);
    } catch (err) {
      if (!this.running) return;
      // The model is gone for this effect (its frames keep the background treatment, never the raw
      // camera); choosing the effect again loads it anew.
      console.warn('[parley] background effect model', err);
      forgetModel(this.model);
      this.model = null;
      this.hasMask = false;
      setStatus('failed', err && err.message ? err.message : String(err));
      return;
    } finally {
      clearTimeout(timer);
    }
    if (!this.running) return;
    const end = performance.now();
    // The first run compiles the model's shaders (seconds without a GPU): load time, not a frame's cost.
    if (this.modelRuns > 0) recordModel(end - t, syncMs);
    this.modelRuns += 1;
    this.nextModelAt = nextModelRun(end, end - t);
  }

  /** The model's result (called while `segment` runs): kept, since it is only valid inside the callback. */
  takeMask({ segmentationMask }) {
    if (!this.running || !segmentationMask) return;
    const { width, height } = this.modelInput;
    if (this.mask.width !== width || this.mask.height !== height) {
      this.mask.width = width;
      this.mask.height = height;
    }
    const m = this.mask.getContext('2d');
    m.globalCompositeOperation = 'copy';
    m.drawImage(segmentationMask, 0, 0, width, height);
    this.hasMask = true;
  }

  resize(width, height) {
    this.canvas.width = width;
    this.canvas.height = height;
    this.backdrop = null;
  }

  /** The person (the mask's alpha, scaled up smoothly: a soft edge) over the chosen background. */
  composite(source) {
    const { ctx } = this;
    const { width: w, height: h } = this.canvas;
    ctx.save();
    ctx.imageSmoothingEnabled = true;
    ctx.globalCompositeOperation = 'copy';
    ctx.drawImage(this.mask, 0, 0, w, h);
    ctx.globalCompositeOperation = 'source-in';
    ctx.drawImage(source, 0, 0, w, h);
    ctx.globalCompositeOperation = 'destination-over';
    this.background(source, w, h);
    ctx.restore();
  }

  /** No mask (yet): the whole frame gets the background treatment. */
  cover(source) {
    const { ctx } = this;
    const { width: w, height: h } = this.canvas;
    ctx.save();
    ctx.globalCompositeOperation = 'copy';
    this.background(source, w, h);
    ctx.restore();
  }

  background(source, w, h) {
    const { ctx } = this;
    if (this.mode === 'replace') {
      ctx.drawImage(this.backdropFor(w, h), 0, 0);
      return;
    }
    // Blurred at a quarter of the size and scaled back up: the same look for a 16th of the pixels.
    if (!this.small) this.small = document.createElement('canvas');
    const sctx = this.small.getContext('2d');
    const filters = 'filter' in sctx;
    // Without canvas filters (older Safari) a much smaller copy, scaled up smoothly, is the blur.
    const scale = filters ? BLUR_SCALE : blurRadius(w);
    const sw = Math.max(1, Math.round(w / scale));
    const sh = Math.max(1, Math.round(h / scale));
    if (this.small.width !== sw || this.small.height !== sh) {
      this.small.width = sw;
      this.small.height = sh;
    }
    sctx.imageSmoothingEnabled = true;
    sctx.imageSmoothingQuality = 'high';
    if (filters) {
      const r = blurRadius(w) / scale;
      sctx.filter = `blur(${r}px)`;
      // Drawn larger than the canvas: the blur then reads real pixels at the edges, not transparent
      // ones (which would darken a border).
      sctx.drawImage(source, -2 * r, -2 * r, sw + 4 * r, sh + 4 * r);
      sctx.filter = 'none';
    } else {
      sctx.drawImage(source, 0, 0, sw, sh);
    }
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(this.small, 0, 0, w, h);
  }

  /** The built-in backdrop for "Replace": a calm, even gradient (nothing uploaded, nothing fetched). */
  backdropFor(w, h) {
    if (this.backdrop && this.backdrop.width === w && this.backdrop.height === h) return this.backdrop;
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const g = c.getContext('2d');
    const grad = g.createLinearGradient(0, 0, w, h);
    grad.addColorStop(0, '#2b4162');
    grad.addColorStop(1, '#385f71');
    g.fillStyle = grad;
    g.fillRect(0, 0, w, h);
    const glow = g.createRadialGradient(w * 0.75, h * 0.2, 0, w * 0.75, h * 0.2, Math.max(w, h) * 0.6);
    glow.addColorStop(0, 'rgba(255, 255, 255, 0.18)');
    glow.addColorStop(1, 'rgba(255, 255, 255, 0)');
    g.fillStyle = glow;
    g.fillRect(0, 0, w, h);
    this.backdrop = c;
    return c;
  }

  /** Ends the processing and the processed track; the raw camera track is the caller's to stop. */
  stop() {
    if (!this.running && !this.track) return;
    this.running = false;
    clearTimeout(this.timer);
    this.video.pause();
    this.video.srcObject = null;
    if (this.track) this.track.stop();
    this.track = null;
    this.input = null;
    this.model = null;
    this.hasMask = false;
    resetStats('off');
    setStatus('off');
  }
}
