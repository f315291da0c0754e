// The upload queue of studio takes (docs/protocol.md, "Take uploads"). Chunks are stored on this device first
// (take-store.js) and then sent, oldest first, as idempotent PUTs authorized by the take's upload token:
//
//   PUT  /api/takes/{id}/chunks/{seq}   X-Parley-First-Sample, X-Parley-Samples, X-Parley-Sha256; body: PCM
//   POST /api/takes/{id}/end            {"samples": total frames}
//   GET  /api/takes/{id}                which seqs the server holds (after a reload)
//
// - 200 (a duplicate too): the chunk is acknowledged; its samples are deleted from the device.
// - 422 hash_mismatch: read again from storage (and checked against its hash) and sent again, a few times.
// - Network errors, 5xx, 429: tried again with a growing, jittered delay, for as long as it takes.
// - 409 take_closed: the server may have assembled the take from an earlier, unacknowledged copy: asked.
// - 413 take_too_long: the take ends where the server's limit cut it.
// - Anything else (400, 401, 404, 409, 413 chunk_too_large, 507): the take stops; the error is surfaced.
// A take whose tab died mid-recording is ended, on the next page load (`resumeAll`), at its last stored frame.
//
// Pacing: the call comes first. One request at a time for the whole page, and chunks no faster than a
// byte-rate cap (1.5 × the live takes' real-time rate, plus a floor for catching up): enough to keep up
// while leaving the uplink mostly idle, so the call's packets seldom queue behind an upload. When a chunk's
// upload took over half its pacing interval, the link itself is the limit and the rate drops to half of
// what it measured; a congested call (its RTT or loss, as the page reports) cuts it too. Takes that fall
// behind are safe on the device and catch up once the call is over (unpaced: `setCallActive(false)`).
//
// `fetch`, the store, the clock, `sleep` and the locks are injectable: e2e/unit/take-queue.test.js drives it
// all in memory.

const KEEP_FINISHED_MS = 7 * 24 * 3600 * 1000; // finished takes' lines stay on the device a week
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

/** Lowercase hex SHA-256 of an ArrayBuffer (WebCrypto: browsers on secure origins, Node). */
export async function sha256Hex(buffer) {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) throw new Error('This page cannot compute SHA-256 (it needs HTTPS or localhost)');
  const digest = new Uint8Array(await subtle.digest('SHA-256', buffer));
  let hex = '';
  for (const b of digest) hex += b.toString(16).padStart(2, '0');
  return hex;
}

/** The lock a tab holds while it records or uploads take `takeId`, so two tabs never both do. */
export function takeLockName(takeId) {
  return `parley-take:${takeId}`;
}

/**
 * Web Locks (held by a tab until released or closed). `acquire(name)` resolves with a release function, or
 * null when another tab holds it. Without the API, every acquire succeeds (one tab is assumed).
 */
export const webLocks = {
  acquire(name) {
    const locks = globalThis.navigator && globalThis.navigator.locks;
    if (!locks) return Promise.resolve(() => {});
    return new Promise((resolve) => {
      locks
        .request(name, { ifAvailable: true }, (lock) => {
          if (!lock) {
            resolve(null);
            return undefined;
          }
          return new Promise((release) => resolve(() => release()));
        })
        .catch(() => resolve(null));
    });
  },
};

/** The take's byte rate in real time (interleaved float32). */
export function realtimeBytesPerSecond(take) {
  return (Number(take.sample_rate) || 48000) * (Number(take.channels) || 1) * 4;
}

/**
 * The byte-rate arithmetic (pure). `delay(now)`: how long the next chunk must wait; `sent({start, end,
 * bytes})` after each upload; `congestion(now)` when the call suffers.
 */
export class UploadPacer {
  constructor({ factor = 1.5, floorBytesPerS = 32_000, minBytesPerS = 16_000, dutyLimit = 0.5, increaseShare = 0.1, cutFactor = 0.7, cutEveryMs = 1000 } = {}) {
    this.factor = factor;
    this.floor = floorBytesPerS;
    this.min = minBytesPerS;
    this.dutyLimit = dutyLimit;
    this.increaseShare = increaseShare;
    this.cutFactor = cutFactor;
    this.cutEveryMs = cutEveryMs;
    this.realtime = 0;
    this.paced = true;
    this.current = null; // the adapted rate (null: the cap)
    this.nextAt = -Infinity;
    this.lastCut = -Infinity;
  }

  /** The live takes' real-time byte rate (their sum). */
  setRealtime(bytesPerS) {
    this.realtime = Math.max(0, Number(bytesPerS) || 0);
  }

  /** Unpaced while no call runs (one request at a time still). */
  setPaced(on) {
    this.paced = !!on;
  }

  get cap() {
    return this.factor * this.realtime + this.floor;
  }

  /** Bytes per second allowed now. */
  get rate() {
    if (!this.paced) return Infinity;
    return Math.max(this.min, Math.min(this.cap, this.current == null ? this.cap : this.current));
  }

  delay(now) {
    return this.paced ? Math.max(0, this.nextAt - now) : 0;
  }

  sent({ start, end, bytes }) {
    if (!this.paced) {
      this.nextAt = end;
      return;
    }
    const rate = this.rate;
    const interval = (bytes / rate) * 1000;
    const busy = Math.max(0, end - start);
    if (busy > this.dutyLimit * interval) {
      // The upload filled the link for over half its slot: the link is the limit, not our cap.
      const measured = (bytes / Math.max(busy, 1)) * 1000;
      this.current = Math.max(this.min, Math.min(rate, this.dutyLimit * measured));
    } else if (busy < 0.8 * this.dutyLimit * interval && start - this.lastCut > 2 * this.cutEveryMs) {
      // Room to spare and the call is fine: a little faster (between the two: as it is, so it settles).
      this.current = Math.min(this.cap, rate + this.increaseShare * this.cap);
    } else {
      this.current = rate;
    }
    this.nextAt = start + (bytes / this.rate) * 1000;
  }

  congestion(now) {
    if (!this.paced || now - this.lastCut < this.cutEveryMs) return;
    this.lastCut = now;
    this.current = Math.max(this.min, this.rate * this.cutFactor);
  }
}

async function readJson(res) {
  try {
    const v = await res.json();
    return v && typeof v === 'object' ? v : {};
  } catch {
    return {};
  }
}

function retryAfterMs(res) {
  const v = res.headers && typeof res.headers.get === 'function' ? res.headers.get('retry-after') : null;
  const s = Number(v);
  return Number.isFinite(s) && s > 0 ? Math.min(s, 300) * 1000 : 0;
}

export class TakeQueue extends EventTarget {
  /**
   * @param {{store: object, fetch?: Function, sha256?: (b: ArrayBuffer) => Promise<string>, locks?: object,
   *   now?: () => number, sleep?: (ms: number) => Promise<void>, random?: () => number, pacer?: UploadPacer,
   *   congested?: () => boolean, maxHashRetries?: number, backoffBaseMs?: number, backoffMaxMs?: number,
   *   baseUrl?: string}} opts
   */
  constructor({
    store,
    fetch = (...args) => globalThis.fetch(...args),
    sha256 = sha256Hex,
    locks = webLocks,
    now = () => Date.now(),
    sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    random = Math.random,
    pacer = new UploadPacer(),
    congested = () => false,
    maxHashRetries = 3,
    backoffBaseMs = 1000,
    backoffMaxMs = 30_000,
    baseUrl = '',
  }) {
    super();
    this.store = store;
    this.fetch = fetch;
    this.sha256 = sha256;
    this.locks = locks;
    this.now = now;
    this.sleep = sleep;
    this.random = random;
    this.pacer = pacer;
    this.congested = congested;
    this.maxHashRetries = maxHashRetries;
    this.backoffBaseMs = backoffBaseMs;
    this.backoffMaxMs = backoffMaxMs;
    this.baseUrl = baseUrl;
    /** take_id -> {take, chunks: Map seq -> line, release, retryAt, attempts, hashTries, needsSync, ...} */
    this.entries = new Map();
    this.running = false;
    this.idlePromise = null;
    this.wake = null;
    this.closed = false;
    this.inFlight = 0; // never above 1; kept for the tests and the debug hook
    this.requests = 0;
  }

  // -------------------------------------------------------------------------------------------------------
  // What the recorder and the page call

  /**
   * A take that is being recorded on this page (`take`: the server's TakeInfo with `upload_token` and the
   * recorder's extras). `release`: the take's lock, given back once it is finished here.
   */
  async addTake(take, { release = null } = {}) {
    const record = { ...take, state: 'recording', created_ms: this.now(), end_acked: false };
    delete record.total_samples;
    await this.store.putTake(record);
    this.entries.set(take.take_id, this.entry(record, [], release));
    this.updateRealtime();
    this.changed(take.take_id);
  }

  /**
   * Stores one chunk {seq, first_sample, samples, sha256, data} (durably), then queues its upload. Resolves
   * false (nothing stored) once the take no longer records: the server cut it short, or it failed.
   */
  async addChunk(takeId, chunk) {
    const e = this.entries.get(takeId);
    if (!e) throw new Error(`take ${takeId} is not being recorded here`);
    if (e.take.state !== 'recording') return false; // cut short (take_too_long) or failed: nothing more
    const line = { take_id: takeId, seq: chunk.seq, first_sample: chunk.first_sample, samples: chunk.samples, sha256: chunk.sha256, data: chunk.data };
    await this.store.putChunk(line);
    e.chunks.set(chunk.seq, { take_id: takeId, seq: chunk.seq, first_sample: chunk.first_sample, samples: chunk.samples, sha256: chunk.sha256, bytes: chunk.data.byteLength, acked: false });
    this.changed(takeId);
    this.kick();
    return true;
  }

  /** The take was stopped after `totalSamples` frames (all of them stored): `end` goes next. */
  async endTake(takeId, totalSamples) {
    const e = this.entries.get(takeId);
    if (!e || e.take.state !== 'recording') return; // failed, or ended already where the server cut it
    e.take = (await this.store.updateTake(takeId, { state: 'ended', total_samples: totalSamples, end_acked: false })) || e.take;
    this.updateRealtime();
    this.changed(takeId);
    this.kick();
  }

  /**
   * After a page load: every take on this device with work left (unacknowledged chunks, an `end` not yet
   * acknowledged) whose lock is free is uploaded; one still marked as recording is ended at its last
   * stored frame. Finished takes older than a week are forgotten. Resolves with the resumed take ids.
   */
  async resumeAll() {
    const resumed = [];
    const now = this.now();
    for (const t of await this.store.listTakes()) {
      if (this.entries.has(t.take_id)) continue;
      if (t.state === 'done' || t.state === 'failed') {
        if (now - (t.finished_ms || t.created_ms || 0) > KEEP_FINISHED_MS) await this.store.deleteTake(t.take_id);
        continue;
      }
      const release = await this.locks.acquire(takeLockName(t.take_id));
      if (!release) continue; // another tab has it
      let chunks = await this.store.listChunks(t.take_id);
      let take = t;
      if (t.state === 'recording') {
        // Its page closed mid-take: it ends where the stored frames stop being contiguous.
        let total = 0;
        let cut = null;
        for (let i = 0; i < chunks.length; i++) {
          if (chunks[i].seq !== i || chunks[i].first_sample !== total) {
            cut = chunks[i].seq;
            break;
          }
          total += chunks[i].samples;
        }
        if (cut != null) {
          await this.store.deleteChunksFrom(t.take_id, cut);
          chunks = chunks.filter((c) => c.seq < cut);
        }
        take = (await this.store.updateTake(t.take_id, { state: 'ended', total_samples: total, end_acked: false, ended_on_resume: true })) || t;
      }
      const e = this.entry(take, chunks, release);
      e.needsSync = true; // the server may hold chunks whose acknowledgement never arrived
      this.entries.set(take.take_id, e);
      resumed.push(take.take_id);
      this.changed(take.take_id);
    }
    this.updateRealtime();
    this.kick();
    return resumed;
  }

  /** Tries every waiting take now (the browser came back online). */
  retryNow() {
    for (const e of this.entries.values()) {
      e.retryAt = 0;
      e.attempts = 0;
    }
    this.kick();
  }

  /** A call runs (paced) or not (unpaced: the uplink is ours). */
  setCallActive(on) {
    this.pacer.setPaced(on);
    this.kick();
  }

  /** Upload state of one take on this page, or null. */
  progress(takeId) {
    const e = this.entries.get(takeId);
    if (!e) return null;
    let stored = 0;
    let acked = 0;
    let ackedChunks = 0;
    for (const c of e.chunks.values()) {
      stored += c.samples;
      if (c.acked) {
        acked += c.samples;
        ackedChunks += 1;
      }
    }
    const total = Number.isFinite(e.take.total_samples) ? e.take.total_samples : null;
    const whole = total != null ? total : stored;
    return {
      take_id: e.take.take_id,
      state: e.take.state,
      total_samples: total,
      stored_samples: stored,
      acked_samples: acked,
      chunks: e.chunks.size,
      acked_chunks: ackedChunks,
      fraction: e.take.state === 'done' ? 1 : whole > 0 ? acked / whole : 0,
      sample_rate: e.take.sample_rate,
      error: e.take.error || null,
      retrying: e.retryAt > this.now() ? e.lastError || 'waiting' : null,
    };
  }

  /** Every take this page serves: their progress. */
  snapshot() {
    return [...this.entries.keys()].map((id) => this.progress(id));
  }

  /** What the device's storage holds, for tests and debugging: takes with their chunk lines. */
  async stored() {
    const out = [];
    for (const t of await this.store.listTakes()) {
      const take = { ...t };
      delete take.upload_token;
      const chunks = await this.store.listChunks(t.take_id);
      out.push({ ...take, chunks: chunks.map((c) => ({ ...c })) });
    }
    return out;
  }

  /** Resolves once nothing is left to do (or everything left waits on a retry: then after that too). */
  idle() {
    return this.idlePromise || Promise.resolve();
  }

  close() {
    this.closed = true;
    this.wakeUp();
    for (const e of this.entries.values()) this.releaseLock(e);
  }

  // -------------------------------------------------------------------------------------------------------
  // The loop

  entry(take, chunks, release) {
    return {
      take,
      chunks: new Map(chunks.map((c) => [c.seq, c])),
      release,
      retryAt: 0,
      attempts: 0,
      hashTries: new Map(),
      needsSync: false,
      closedSeen: false,
      lastError: null,
    };
  }

  updateRealtime() {
    let rate = 0;
    for (const e of this.entries.values()) if (e.take.state === 'recording') rate += realtimeBytesPerSecond(e.take);
    // Catching up on earlier takes, with none recording: as if one were.
    if (rate === 0) {
      for (const e of this.entries.values()) {
        if (e.take.state === 'ended') rate = Math.max(rate, realtimeBytesPerSecond(e.take));
      }
    }
    this.pacer.setRealtime(rate);
  }

  changed(takeId) {
    this.dispatchEvent(new CustomEvent('change', { detail: { take_id: takeId } }));
  }

  kick() {
    this.wakeUp();
    if (this.running || this.closed) return;
    this.running = true;
    this.idlePromise = this.pump();
  }

  wakeUp() {
    const w = this.wake;
    this.wake = null;
    if (w) w();
  }

  /** Waits `ms`, or less when kicked (the loop then looks again). */
  async pause(ms) {
    const woken = new Promise((resolve) => {
      this.wake = resolve;
    });
    await Promise.race([this.sleep(ms), woken]);
    this.wake = null;
  }

  /** The next thing to do: {entry, kind: 'sync' | 'end' | 'chunk', chunk?}, {wait: ms}, or null. */
  pick(now) {
    const active = [...this.entries.values()].filter((e) => (e.take.state === 'recording' || e.take.state === 'ended') && this.work(e));
    if (active.length === 0) return null;
    // The take being recorded first (a producer may want to hear it already), then the oldest.
    active.sort((a, b) => (a.take.state === 'recording' ? 0 : 1) - (b.take.state === 'recording' ? 0 : 1) || (a.take.created_ms || 0) - (b.take.created_ms || 0));
    const ready = active.find((e) => e.retryAt <= now);
    if (!ready) return { wait: Math.min(...active.map((e) => e.retryAt)) - now };
    return { entry: ready, ...this.work(ready) };
  }

  work(e) {
    if (e.needsSync) return { kind: 'sync' };
    if (e.take.state === 'ended' && !e.take.end_acked) return { kind: 'end' };
    let next = null;
    for (const c of e.chunks.values()) if (!c.acked && (!next || c.seq < next.seq)) next = c;
    return next ? { kind: 'chunk', chunk: next } : null;
  }

  async pump() {
    try {
      for (;;) {
        if (this.closed) return;
        const now = this.now();
        const job = this.pick(now);
        if (!job) return;
        if (job.wait != null) {
          await this.pause(job.wait);
          continue;
        }
        if (job.kind === 'chunk') {
          if (this.congested()) this.pacer.congestion(now);
          const wait = this.pacer.delay(now);
          if (wait > 0) {
            await this.pause(wait);
            continue;
          }
        }
        this.inFlight += 1;
        this.requests += 1;
        try {
          if (job.kind === 'sync') await this.sync(job.entry);
          else if (job.kind === 'end') await this.end(job.entry);
          else await this.put(job.entry, job.chunk);
        } catch (err) {
          // Storage failed under us (quota, a closed database): the take cannot go on here.
          await this.fail(job.entry, 'storage', err && err.message ? err.message : String(err));
        } finally {
          this.inFlight -= 1;
        }
      }
    } finally {
      this.running = false;
    }
  }

  url(takeId, tail = '') {
    return `${this.baseUrl}/api/takes/${encodeURIComponent(takeId)}${tail}`;
  }

  auth(e) {
    return { Authorization: `Bearer ${e.take.upload_token}` };
  }

  async request(e, url, init) {
    try {
      return await this.fetch(url, { cache: 'no-store', ...init, headers: { ...this.auth(e), ...(init.headers || {}) } });
    } catch (err) {
      this.retryLater(e, `network: ${err && err.message ? err.message : err}`);
      return null;
    }
  }

  async put(e, chunk) {
    const id = e.take.take_id;
    const data = await this.store.getChunkData(id, chunk.seq);
    if (!data) {
      await this.fail(e, 'missing_chunk', `Chunk ${chunk.seq} of this take is no longer on this device.`);
      return;
    }
    const start = this.now();
    const res = await this.request(e, this.url(id, `/chunks/${chunk.seq}`), {
      method: 'PUT',
      headers: {
        'Content-Type': 'application/octet-stream',
        'X-Parley-First-Sample': String(chunk.first_sample),
        'X-Parley-Samples': String(chunk.samples),
        'X-Parley-Sha256': chunk.sha256,
      },
      body: data,
    });
    if (!res) return;
    const body = await readJson(res);
    this.pacer.sent({ start, end: this.now(), bytes: data.byteLength });
    if (res.ok) {
      await this.store.ackChunk(id, chunk.seq);
      chunk.acked = true;
      e.attempts = 0;
      e.lastError = null;
      e.hashTries.delete(chunk.seq);
      if (Number.isFinite(body.received_samples)) e.received = body.received_samples;
      this.changed(id);
      await this.maybeDone(e);
      return;
    }
    const code = body.error || `http_${res.status}`;
    const message = body.message || `The server answered ${res.status}.`;
    if (res.status === 422 && code === 'hash_mismatch') {
      const tries = (e.hashTries.get(chunk.seq) || 0) + 1;
      e.hashTries.set(chunk.seq, tries);
      // Damaged on the way (it is read again and sent again), unless our own copy no longer matches.
      if (tries > this.maxHashRetries) await this.fail(e, code, message, res.status);
      else if ((await this.sha256(await this.store.getChunkData(id, chunk.seq))) !== chunk.sha256) {
        await this.fail(e, 'corrupt_chunk', `This device's copy of chunk ${chunk.seq} is damaged.`, res.status);
      }
      return;
    }
    if (res.status === 409 && code === 'take_closed') {
      e.closedSeen = true;
      e.needsSync = true;
      return;
    }
    if (res.status === 413 && code === 'take_too_long') {
      await this.truncate(e, chunk, message);
      return;
    }
    if (RETRYABLE.has(res.status)) {
      this.retryLater(e, `${res.status} ${code}`, retryAfterMs(res));
      return;
    }
    await this.fail(e, code, message, res.status);
  }

  async end(e) {
    const id = e.take.take_id;
    const res = await this.request(e, this.url(id, '/end'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ samples: e.take.total_samples }),
    });
    if (!res) return;
    const body = await readJson(res);
    if (res.ok) {
      e.attempts = 0;
      e.lastError = null;
      e.take = (await this.store.updateTake(id, { end_acked: true })) || { ...e.take, end_acked: true };
      if (body.take && body.take.state === 'complete') await this.markComplete(e);
      this.changed(id);
      await this.maybeDone(e);
      return;
    }
    const code = body.error || `http_${res.status}`;
    if (res.status === 409 && code === 'take_closed') {
      e.closedSeen = true;
      e.needsSync = true;
      return;
    }
    if (RETRYABLE.has(res.status)) {
      this.retryLater(e, `${res.status} ${code}`, retryAfterMs(res));
      return;
    }
    await this.fail(e, code, body.message || `The server answered ${res.status}.`, res.status);
  }

  /** Asks the server which chunks it holds (after a reload, or a `take_closed`). */
  async sync(e) {
    const id = e.take.take_id;
    const res = await this.request(e, this.url(id), { method: 'GET' });
    if (!res) return;
    const body = await readJson(res);
    if (!res.ok) {
      const code = body.error || `http_${res.status}`;
      if (RETRYABLE.has(res.status)) this.retryLater(e, `${res.status} ${code}`, retryAfterMs(res));
      else await this.fail(e, code, body.message || `The server answered ${res.status}.`, res.status);
      return;
    }
    e.needsSync = false;
    e.attempts = 0;
    e.lastError = null;
    const held = new Set(Array.isArray(body.chunks) ? body.chunks : []);
    for (const c of e.chunks.values()) {
      if (!c.acked && held.has(c.seq)) {
        await this.store.ackChunk(id, c.seq);
        c.acked = true;
      }
    }
    const server = body.take || {};
    if (server.state === 'complete') {
      await this.markComplete(e);
    } else if (e.closedSeen) {
      await this.fail(e, 'take_closed', 'The server closed this take before all of it arrived.', 409);
      return;
    } else if (e.take.state === 'ended' && !e.take.end_acked && server.total_samples === e.take.total_samples) {
      e.take = (await this.store.updateTake(id, { end_acked: true })) || e.take; // our `end` had arrived
    }
    this.changed(id);
    await this.maybeDone(e);
  }

  /** The server assembled the take: everything of it is there. */
  async markComplete(e) {
    const id = e.take.take_id;
    for (const c of e.chunks.values()) {
      if (!c.acked) {
        await this.store.ackChunk(id, c.seq);
        c.acked = true;
      }
    }
    const patch = { end_acked: true };
    if (e.take.state === 'recording') Object.assign(patch, { state: 'ended' });
    e.take = (await this.store.updateTake(id, patch)) || { ...e.take, ...patch };
  }

  /** The server's length limit cut the take before `chunk`: it ends there. */
  async truncate(e, chunk, message) {
    const id = e.take.take_id;
    await this.store.deleteChunksFrom(id, chunk.seq);
    for (const seq of [...e.chunks.keys()]) if (seq >= chunk.seq) e.chunks.delete(seq);
    e.take = (await this.store.updateTake(id, { state: 'ended', total_samples: chunk.first_sample, end_acked: false, truncated: true })) || e.take;
    this.updateRealtime();
    this.dispatchEvent(new CustomEvent('error', { detail: { take_id: id, code: 'take_too_long', message, fatal: false } }));
    this.changed(id);
  }

  async maybeDone(e) {
    if (e.take.state !== 'ended' || !e.take.end_acked) return;
    for (const c of e.chunks.values()) if (!c.acked) return;
    e.take = (await this.store.updateTake(e.take.take_id, { state: 'done', finished_ms: this.now() })) || { ...e.take, state: 'done' };
    this.releaseLock(e);
    this.updateRealtime();
    this.changed(e.take.take_id);
  }

  async fail(e, code, message, status = 0) {
    const error = { code, message, status };
    const id = e.take.take_id;
    e.take = { ...e.take, state: 'failed', error };
    try {
      e.take = (await this.store.updateTake(id, { state: 'failed', error, finished_ms: this.now() })) || e.take;
    } catch {
      // The failure stays known on this page.
    }
    this.releaseLock(e);
    this.updateRealtime();
    this.dispatchEvent(new CustomEvent('error', { detail: { take_id: id, code, message, fatal: true } }));
    this.changed(id);
  }

  retryLater(e, reason, atLeastMs = 0) {
    e.attempts += 1;
    const base = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (e.attempts - 1));
    const delay = Math.max(atLeastMs, base * (0.75 + this.random() * 0.5));
    e.retryAt = this.now() + delay;
    e.lastError = reason;
    this.changed(e.take.take_id);
  }

  releaseLock(e) {
    const r = e.release;
    e.release = null;
    if (r) r();
  }
}
