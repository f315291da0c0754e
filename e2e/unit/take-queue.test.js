// web/take-queue.js on its own (no browser, no server): the upload queue against an in-memory store and a
// fake take server that follows the spec (hashes, duplicates, conflicts, limits, assembly), in virtual
// time. Ordering, one request at a time, retries, 422 hash_mismatch, lost acknowledgements, resume after a
// closed tab, the errors that stop a take, and the pacing arithmetic.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { MemoryTakeStore } from '../../web/take-store.js';
import { TakeQueue, UploadPacer, realtimeBytesPerSecond, sha256Hex, takeLockName } from '../../web/take-queue.js';

const RATE = 48000;
const CHUNK = 2 * RATE; // frames of a 2 s chunk

const hex = (buf) => createHash('sha256').update(Buffer.from(buf)).digest('hex');
const json = (status, body, headers = {}) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

/** `frames` mono float32 frames of a test signal starting at frame `first` (every chunk differs). */
function pcm(first, frames) {
  const a = new Float32Array(frames);
  for (let i = 0; i < frames; i++) a[i] = Math.sin((first + i) * 0.01) * 0.5 + ((first + i) % 7) * 1e-6;
  return a.buffer;
}

/** The server's side of the spec, in memory. */
class FakeServer {
  constructor({ now }) {
    this.now = now;
    this.takes = new Map();
    this.log = []; // [method, take_id, seq?]
    this.faults = []; // {when(req), act(req) → Response | Error | 'corrupt' | 'drop-after-store', times}
    this.gate = null; // a promise every request waits for (to line things up)
    this.strictClosed = false; // an assembled take refuses even identical copies (409 take_closed)
    this.inFlight = 0;
    this.maxInFlight = 0;
    this.bytesPerMs = Infinity; // link speed (virtual time passes while a body goes up)
    this.advance = () => {};
  }

  /** `act` for the next `times` requests that `when` matches. */
  fault(when, act, times = 1) {
    this.faults.push({ when, act, times });
  }

  addTake(id, { token = `tok-${id}`, channels = 1, maxSamples = Infinity } = {}) {
    this.takes.set(id, { id, token, channels, maxSamples, chunks: new Map(), total: null, state: 'uploading' });
  }

  info(t) {
    let received = 0;
    for (const c of t.chunks.values()) received += c.samples;
    return { take_id: t.id, sample_rate: RATE, channels: t.channels, state: t.state, received_samples: received, total_samples: t.total, files: [] };
  }

  assembleIfWhole(t) {
    if (t.total == null || t.state === 'complete') return;
    let covered = 0;
    for (const c of [...t.chunks.values()].sort((a, b) => a.first - b.first)) {
      if (c.first !== covered) return;
      covered += c.samples;
    }
    if (covered >= t.total) t.state = 'complete';
  }

  /** The assembled take's bytes (chunks in order). */
  bytes(id) {
    const t = this.takes.get(id);
    return Buffer.concat([...t.chunks.values()].sort((a, b) => a.first - b.first).map((c) => Buffer.from(c.body)));
  }

  fetch = async (url, init = {}) => {
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      return await this.handle(url, init);
    } finally {
      this.inFlight -= 1;
    }
  };

  async handle(url, init) {
    const m = /^\/api\/takes\/([^/]+)(?:\/(chunks)\/(\d+)|\/(end))?$/.exec(url);
    assert.ok(m, `unexpected url ${url}`);
    if (this.gate) await this.gate;
    const id = decodeURIComponent(m[1]);
    const method = init.method || 'GET';
    const seq = m[3] != null ? Number(m[3]) : undefined;
    this.log.push(seq != null ? [method, id, seq] : [method, id]);
    let body = init.body;
    if (body instanceof ArrayBuffer && Number.isFinite(this.bytesPerMs)) this.advance(body.byteLength / this.bytesPerMs);
    const req = { method, id, seq, headers: init.headers || {}, body };
    const f = this.faults.find((x) => x.times > 0 && x.when(req));
    if (f) f.times -= 1;
    const fault = f ? f.act(req) : undefined;
    if (fault instanceof Error) throw fault;
    if (fault instanceof Response) return fault;
    if (fault === 'corrupt') {
      body = body.slice(0);
      new Uint8Array(body)[5] ^= 0x40; // damaged on the way
    }
    const res = this.answer(id, method, seq, init.headers || {}, body, m[4] === 'end' ? init.body : null);
    if (fault === 'drop-after-store') throw new TypeError('network error (the answer was lost)');
    return res;
  }

  answer(id, method, seq, headers, body, endBody) {
    const t = this.takes.get(id);
    if (!t) return json(404, { error: 'no_such_take', message: 'no such take' });
    if (headers.Authorization !== `Bearer ${t.token}`) return json(401, { error: 'unauthorized', message: 'bad token' });
    if (method === 'GET') return json(200, { take: this.info(t), chunks: [...t.chunks.keys()].sort((a, b) => a - b) });
    if (method === 'POST') {
      const { samples } = JSON.parse(endBody);
      t.total = samples;
      this.assembleIfWhole(t);
      return json(200, { take: this.info(t) });
    }
    const first = Number(headers['X-Parley-First-Sample']);
    const samples = Number(headers['X-Parley-Samples']);
    const sha = headers['X-Parley-Sha256'];
    if (!Number.isInteger(first) || !Number.isInteger(samples) || !/^[0-9a-f]{64}$/.test(sha) || body.byteLength !== samples * t.channels * 4) {
      return json(400, { error: 'bad_request', message: 'bad headers' });
    }
    if (hex(body) !== sha) return json(422, { error: 'hash_mismatch', message: 'send it again' });
    if (this.strictClosed && t.state === 'complete') return json(409, { error: 'take_closed', message: 'assembled' });
    const old = t.chunks.get(seq);
    if (old) {
      if (old.sha === sha && old.first === first) return json(200, { take_id: id, seq, received_samples: this.info(t).received_samples, duplicate: true });
      return json(409, { error: 'conflict', message: 'other content' });
    }
    if (t.state === 'complete') return json(409, { error: 'take_closed', message: 'assembled' });
    for (const c of t.chunks.values()) {
      if (first < c.first + c.samples && c.first < first + samples) return json(409, { error: 'overlap', message: 'overlap' });
    }
    if (first + samples > t.maxSamples) return json(413, { error: 'take_too_long', message: 'past the maximum length' });
    t.chunks.set(seq, { first, samples, sha, body: body.slice(0) });
    this.assembleIfWhole(t);
    return json(200, { take_id: id, seq, received_samples: this.info(t).received_samples, duplicate: false });
  }
}

/** Virtual time: `sleep` moves the clock on at once; fetches may too (transfer time). */
function world({ server: serverOpts = {}, queue: queueOpts = {}, store = new MemoryTakeStore() } = {}) {
  let t = 1_795_430_000_000;
  const now = () => t;
  const sleeps = [];
  const server = new FakeServer({ now, ...serverOpts });
  server.advance = (ms) => {
    t += ms;
  };
  const starts = []; // [time, method, seq]
  const fetch = (url, init) => {
    starts.push([t, init.method, url.includes('/chunks/') ? Number(url.split('/').pop()) : null]);
    return server.fetch(url, init);
  };
  const queue = new TakeQueue({
    store,
    fetch,
    now,
    sleep: async (ms) => {
      sleeps.push(ms);
      t += ms;
    },
    random: () => 0.5,
    locks: { acquire: async () => () => {} },
    ...queueOpts,
  });
  const errors = [];
  queue.addEventListener('error', (ev) => errors.push(ev.detail));
  return { queue, server, store, sleeps, starts, errors, now, advance: (ms) => (t += ms) };
}

async function record(queue, id, chunks, { total = true, frames = CHUNK } = {}) {
  await queue.addTake({ take_id: id, upload_token: `tok-${id}`, sample_rate: RATE, channels: 1, first_sample_server_ms: 1.5 });
  for (let seq = 0; seq < chunks; seq++) {
    const data = pcm(seq * frames, frames);
    await queue.addChunk(id, { seq, first_sample: seq * frames, samples: frames, sha256: await sha256Hex(data), data });
  }
  if (total) await queue.endTake(id, chunks * frames);
}

const puts = (log, id) => log.filter((l) => l[0] === 'PUT' && l[1] === id).map((l) => l[2]);

test('queue: chunks go up in order, one request at a time; acked data leaves the device; the take assembles bit-exact', async () => {
  const w = world();
  w.server.addTake('t1');
  await record(w.queue, 't1', 5);
  await w.queue.idle();
  assert.deepEqual(puts(w.server.log, 't1'), [0, 1, 2, 3, 4]);
  assert.equal(w.server.maxInFlight, 1);
  assert.equal(w.server.takes.get('t1').state, 'complete');
  const expected = Buffer.concat([0, 1, 2, 3, 4].map((s) => Buffer.from(pcm(s * CHUNK, CHUNK))));
  assert.ok(w.server.bytes('t1').equals(expected), 'the server holds exactly the recorded samples');
  const p = w.queue.progress('t1');
  assert.equal(p.state, 'done');
  assert.equal(p.fraction, 1);
  const stored = await w.queue.stored();
  assert.equal(stored[0].state, 'done');
  assert.ok(stored[0].chunks.every((c) => c.acked));
  for (let s = 0; s < 5; s++) assert.equal(await w.store.getChunkData('t1', s), null, `chunk ${s}'s samples deleted`);
  assert.equal(stored[0].upload_token, undefined, 'the token is not shown');
  assert.deepEqual(w.errors, []);
});

test('queue: the end is sent as soon as the take stops, before a backlog of chunks', async () => {
  const w = world();
  w.server.addTake('t1');
  let open;
  w.server.gate = new Promise((resolve) => {
    open = resolve;
  });
  await record(w.queue, 't1', 3, { total: false });
  await w.queue.endTake('t1', 3 * CHUNK);
  w.server.gate = null;
  open();
  await w.queue.idle();
  const kinds = w.server.log.map((l) => (l[0] === 'PUT' ? `PUT${l[2]}` : l[0]));
  // chunk 0 was already on its way when the take ended; `end` overtakes the rest.
  assert.deepEqual(kinds, ['PUT0', 'POST', 'PUT1', 'PUT2']);
  assert.equal(w.server.takes.get('t1').total, 3 * CHUNK);
  assert.equal(w.server.takes.get('t1').state, 'complete');
});

test('queue: 422 hash_mismatch → read again from storage and sent again; gives up after 3 more tries', async () => {
  const w = world();
  w.server.addTake('t1');
  w.server.fault((r) => r.seq === 1, () => 'corrupt', 2);
  await record(w.queue, 't1', 3);
  await w.queue.idle();
  assert.deepEqual(puts(w.server.log, 't1'), [0, 1, 1, 1, 2]);
  assert.equal(w.server.takes.get('t1').state, 'complete');
  assert.deepEqual(w.errors, []);

  const v = world();
  v.server.addTake('t2');
  v.server.fault((r) => r.seq === 0, () => 'corrupt', 10);
  await record(v.queue, 't2', 2);
  await v.queue.idle();
  assert.deepEqual(puts(v.server.log, 't2'), [0, 0, 0, 0], 'first try and 3 more');
  assert.equal(v.queue.progress('t2').state, 'failed');
  assert.equal(v.errors.length, 1);
  assert.equal(v.errors[0].code, 'hash_mismatch');
  assert.equal(v.errors[0].fatal, true);
  assert.ok(await v.store.getChunkData('t2', 0), 'a failed take keeps its samples on the device');
});

test('queue: a chunk damaged in storage is not sent again and again', async () => {
  const w = world();
  w.server.addTake('t1');
  await record(w.queue, 't1', 1, { total: false });
  await w.queue.idle(); // uploaded
  await w.queue.addChunk('t1', { seq: 1, first_sample: CHUNK, samples: CHUNK, sha256: 'f'.repeat(64), data: pcm(CHUNK, CHUNK) });
  await w.queue.idle();
  assert.deepEqual(puts(w.server.log, 't1'), [0, 1]);
  assert.equal(w.errors[0].code, 'corrupt_chunk');
  assert.equal(w.queue.progress('t1').state, 'failed');
});

test('queue: a lost acknowledgement is retried after a delay and the duplicate counts as acked', async () => {
  const w = world();
  w.server.addTake('t1');
  w.server.fault((r) => r.seq === 1, () => 'drop-after-store');
  await record(w.queue, 't1', 3);
  await w.queue.idle();
  assert.deepEqual(puts(w.server.log, 't1'), [0, 1, 1, 2]);
  assert.equal(w.server.takes.get('t1').state, 'complete');
  assert.equal(w.queue.progress('t1').state, 'done');
  assert.ok(w.sleeps.includes(1000), `a 1 s backoff first (sleeps ${w.sleeps})`);
});

test('queue: network errors and 5xx back off (1, 2, 4, 8 s …, jittered, capped at 30 s) and keep trying', async () => {
  const w = world({ queue: { random: () => 1 } });
  w.server.addTake('t1');
  const err = () => new TypeError('Failed to fetch');
  for (const act of [err, () => json(503, { error: 'internal', message: 'busy' }), err, () => json(500, {}), err, err, err, () => json(429, { error: 'rate_limited' }, { 'retry-after': '45' })]) {
    w.server.fault(() => true, act);
  }
  await record(w.queue, 't1', 1);
  await w.queue.idle();
  const backoffs = w.sleeps.filter((ms) => ms >= 1000);
  assert.deepEqual(backoffs, [1250, 2500, 5000, 10000, 20000, 37500, 37500, 45000], 'random() = 1: ×1.25, capped at 30 s (×1.25), Retry-After honoured');
  assert.equal(w.queue.progress('t1').state, 'done');
  assert.equal(w.server.takes.get('t1').state, 'complete');
});

test('queue: 409 conflict, 401, 404, 507 stop that take (surfaced), the other goes on', async () => {
  for (const [status, body] of [
    [409, { error: 'conflict', message: 'this seq is stored with other content' }],
    [401, { error: 'unauthorized', message: 'no' }],
    [404, { error: 'no_such_take', message: 'gone' }],
    [507, { error: 'room_disk_full', message: "the room's quota is used" }],
    [413, { error: 'chunk_too_large', message: 'too large' }],
    [400, { error: 'bad_request', message: 'bad' }],
  ]) {
    const w = world();
    w.server.addTake('bad');
    w.server.addTake('good');
    w.server.fault((r) => r.id === 'bad' && r.seq === 1, () => json(status, body));
    const bad = [];
    w.queue.addEventListener('change', (ev) => {
      if (ev.detail.take_id === 'bad') bad.push(w.queue.progress('bad').state);
    });
    await record(w.queue, 'bad', 3);
    await record(w.queue, 'good', 2);
    await w.queue.idle();
    assert.deepEqual(puts(w.server.log, 'bad'), [0, 1], `${status}: nothing more for that take`);
    assert.equal(w.queue.progress('bad').state, 'failed');
    assert.equal(w.queue.progress('bad').error.code, body.error);
    assert.equal(w.queue.progress('bad').error.status, status);
    assert.deepEqual(w.errors.map((e) => [e.take_id, e.code, e.fatal]), [['bad', body.error, true]]);
    assert.equal(w.queue.progress('good').state, 'done', `${status}: the other take is uploaded`);
    assert.equal(bad.at(-1), 'failed');
  }
});

test('queue: 413 take_too_long ends the take where the server cut it', async () => {
  const w = world();
  w.server.addTake('t1', { maxSamples: 2 * CHUNK });
  await record(w.queue, 't1', 4, { total: false });
  await w.queue.idle();
  assert.deepEqual(w.errors.map((e) => [e.code, e.fatal]), [['take_too_long', false]]);
  await w.queue.endTake('t1', 4 * CHUNK); // the recorder stopping afterwards changes nothing
  await w.queue.idle();
  const t = w.server.takes.get('t1');
  assert.equal(t.total, 2 * CHUNK);
  assert.equal(t.state, 'complete');
  assert.deepEqual(puts(w.server.log, 't1'), [0, 1, 2]);
  assert.equal(w.queue.progress('t1').state, 'done');
  assert.deepEqual((await w.store.listChunks('t1')).map((c) => c.seq), [0, 1]);
});

test('queue: take_closed after a lost final acknowledgement: the server is asked, the take is done', async () => {
  const w = world();
  w.server.addTake('t1');
  w.server.strictClosed = true;
  // The end goes first; the last chunk completes the take on the server but its answer is lost.
  let open;
  w.server.gate = new Promise((resolve) => {
    open = resolve;
  });
  w.server.fault((r) => r.seq === 1, () => 'drop-after-store');
  await record(w.queue, 't1', 2, { total: false });
  await w.queue.endTake('t1', 2 * CHUNK);
  w.server.gate = null;
  open();
  await w.queue.idle();
  const t = w.server.takes.get('t1');
  assert.deepEqual(w.server.log.map((l) => l.slice(0, 1).concat(l.slice(2))), [['PUT', 0], ['POST'], ['PUT', 1], ['PUT', 1], ['GET']]);
  assert.equal(t.state, 'complete');
  assert.equal(w.queue.progress('t1').state, 'done');
  assert.deepEqual(w.errors, []);
});

test('queue: resume after a closed tab: the take is ended at its last stored frame, only what the server lacks is sent', async () => {
  const store = new MemoryTakeStore();
  // What the closed tab left: chunks 0–3 stored, 0 and 1 acknowledged, 2 on the server but its ack lost.
  await store.putTake({ take_id: 't1', upload_token: 'tok-t1', sample_rate: RATE, channels: 1, state: 'recording', created_ms: 1 });
  for (let seq = 0; seq < 4; seq++) {
    const data = pcm(seq * CHUNK, CHUNK);
    await store.putChunk({ take_id: 't1', seq, first_sample: seq * CHUNK, samples: CHUNK, sha256: await sha256Hex(data), data });
    if (seq < 2) await store.ackChunk('t1', seq);
  }
  // …and a finished take, and an old finished one that is forgotten.
  await store.putTake({ take_id: 'old', upload_token: 'x', state: 'done', finished_ms: 1 });
  const w = world({ store });
  w.server.addTake('t1');
  for (let seq = 0; seq < 3; seq++) {
    const data = pcm(seq * CHUNK, CHUNK);
    w.server.answer('t1', 'PUT', seq, { Authorization: 'Bearer tok-t1', 'X-Parley-First-Sample': String(seq * CHUNK), 'X-Parley-Samples': String(CHUNK), 'X-Parley-Sha256': hex(data) }, data);
  }
  const resumed = await w.queue.resumeAll();
  assert.deepEqual(resumed, ['t1']);
  await w.queue.idle();
  assert.deepEqual(w.server.log.map((l) => l.slice(0, 1).concat(l.slice(2))), [['GET'], ['POST'], ['PUT', 3]]);
  const t = w.server.takes.get('t1');
  assert.equal(t.total, 4 * CHUNK);
  assert.equal(t.state, 'complete');
  const expected = Buffer.concat([0, 1, 2, 3].map((s) => Buffer.from(pcm(s * CHUNK, CHUNK))));
  assert.ok(w.server.bytes('t1').equals(expected));
  assert.equal((await store.getTake('t1')).state, 'done');
  assert.equal(await store.getTake('old'), null, 'a week-old finished take is forgotten');
});

test('queue: resume cuts a take whose stored chunks have a gap at the gap; skips takes another tab holds', async () => {
  const store = new MemoryTakeStore();
  for (const id of ['gap', 'held']) {
    await store.putTake({ take_id: id, upload_token: `tok-${id}`, sample_rate: RATE, channels: 1, state: 'recording', created_ms: 1 });
    for (const seq of [0, 1, 3]) {
      const data = pcm(seq * CHUNK, CHUNK);
      await store.putChunk({ take_id: id, seq, first_sample: seq * CHUNK, samples: CHUNK, sha256: await sha256Hex(data), data });
    }
  }
  const w = world({ store, queue: { locks: { acquire: async (name) => (name === takeLockName('held') ? null : () => {}) } } });
  w.server.addTake('gap');
  assert.deepEqual(await w.queue.resumeAll(), ['gap']);
  await w.queue.idle();
  assert.equal(w.server.takes.get('gap').total, 2 * CHUNK);
  assert.equal(w.server.takes.get('gap').state, 'complete');
  assert.deepEqual(puts(w.server.log, 'gap'), [0, 1]);
  assert.deepEqual((await store.listChunks('gap')).map((c) => c.seq), [0, 1]);
  assert.equal((await store.getTake('held')).state, 'recording', 'untouched');
  assert.equal(w.server.log.filter((l) => l[1] === 'held').length, 0);
});

test('queue: the take being recorded goes before an earlier backlog', async () => {
  const store = new MemoryTakeStore();
  await store.putTake({ take_id: 'old', upload_token: 'tok-old', sample_rate: RATE, channels: 1, state: 'ended', total_samples: 3 * CHUNK, end_acked: false, created_ms: 1 });
  for (let seq = 0; seq < 3; seq++) {
    const data = pcm(seq * CHUNK, CHUNK);
    await store.putChunk({ take_id: 'old', seq, first_sample: seq * CHUNK, samples: CHUNK, sha256: await sha256Hex(data), data });
  }
  const w = world({ store });
  w.server.addTake('old');
  w.server.addTake('live');
  let open;
  w.server.gate = new Promise((resolve) => {
    open = resolve;
  });
  await w.queue.resumeAll(); // its GET waits at the gate
  await record(w.queue, 'live', 2, { total: false });
  w.server.gate = null;
  open();
  await w.queue.idle();
  const order = w.server.log.map((l) => `${l[0]} ${l[1]}${l[2] != null ? l[2] : ''}`);
  assert.deepEqual(order, ['GET old', 'PUT live0', 'PUT live1', 'POST old', 'PUT old0', 'PUT old1', 'PUT old2']);
  assert.equal(w.server.takes.get('old').state, 'complete');
});

test('pacer: the arithmetic (cap, link-bound halving, additive increase, congestion cuts, unpaced)', () => {
  const p = new UploadPacer();
  p.setRealtime(realtimeBytesPerSecond({ sample_rate: 48000, channels: 1 }));
  assert.equal(p.realtime, 192_000);
  assert.equal(p.cap, 1.5 * 192_000 + 32_000);
  assert.equal(p.rate, 320_000);
  assert.equal(p.delay(0), 0);
  // A fast link: 384 KB (2 s of audio) in 10 ms; the next may start 1.2 s after this one did.
  p.sent({ start: 0, end: 10, bytes: 384_000 });
  assert.equal(p.rate, 320_000);
  assert.equal(p.delay(10), 1190);
  // A slow link: it took 3 s (more than half its 1.2 s slot): half the measured 128 KB/s.
  p.sent({ start: 2000, end: 5000, bytes: 384_000 });
  assert.equal(p.rate, 64_000);
  assert.equal(p.delay(5000), 3000); // next at 2000 + 6000
  // Quick again: a tenth of the cap back per chunk.
  p.sent({ start: 8000, end: 8100, bytes: 384_000 });
  assert.equal(p.rate, 96_000);
  assert.equal(p.delay(8100), 3900);
  // The call suffers: ×0.7, at most once a second, never below the minimum.
  p.congestion(13_000);
  assert.ok(Math.abs(p.rate - 67_200) < 1e-6);
  p.congestion(13_500);
  assert.ok(Math.abs(p.rate - 67_200) < 1e-6);
  p.congestion(14_100);
  assert.ok(Math.abs(p.rate - 47_040) < 1e-6);
  for (let i = 0; i < 20; i++) p.congestion(20_000 + i * 1000);
  assert.equal(p.rate, 16_000);
  // No call: no pacing.
  p.setPaced(false);
  assert.equal(p.rate, Infinity);
  p.sent({ start: 50_000, end: 50_001, bytes: 384_000 });
  assert.equal(p.delay(50_001), 0);
});

test('queue: paced at 1.5× real time plus the floor during a call; unpaced after it', async () => {
  const w = world();
  w.server.addTake('t1');
  await record(w.queue, 't1', 6, { total: false });
  await w.queue.idle();
  const chunkStarts = w.starts.filter((s) => s[1] === 'PUT').map((s) => s[0]);
  const gaps = chunkStarts.slice(1).map((t, i) => t - chunkStarts[i]);
  for (const g of gaps) assert.ok(Math.abs(g - 1200) < 1e-6, `chunk starts ${gaps} ms apart`);

  const v = world();
  v.server.addTake('t1');
  v.queue.setCallActive(false);
  await record(v.queue, 't1', 6, { total: false });
  await v.queue.idle();
  assert.deepEqual(v.sleeps, [], 'no waiting without a call');
});

test('queue: a slow link lowers the rate to half of what it measured; a congested call cuts it', async () => {
  const w = world({ server: {} });
  w.server.addTake('t1');
  w.server.bytesPerMs = 100; // 100 KB/s: a 384 KB chunk takes 3.84 s
  await record(w.queue, 't1', 4, { total: false });
  await w.queue.idle();
  assert.ok(Math.abs(w.queue.pacer.rate - 50_000) < 1, `rate ${w.queue.pacer.rate}`);
  const chunkStarts = w.starts.filter((s) => s[1] === 'PUT').map((s) => s[0]);
  const gap = chunkStarts[2] - chunkStarts[1];
  assert.ok(Math.abs(gap - 7680) < 1, `the uplink is busy half the time at most: ${gap} ms between chunks`);

  let congested = true;
  const v = world({ queue: { congested: () => congested } });
  v.server.addTake('t1');
  await record(v.queue, 't1', 3, { total: false });
  await v.queue.idle();
  assert.ok(v.queue.pacer.rate < 320_000 * 0.7 * 0.7 + 1, `rate ${v.queue.pacer.rate}: cut on every chunk, never raised`);
  congested = false;
});
