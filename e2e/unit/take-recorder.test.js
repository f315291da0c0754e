// The pure parts of web/take-recorder.js (no browser): cutting the worklet's blocks into chunks, and when
// sample 0 was captured.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChunkCutter, TAKE_CONSTRAINTS, littleEndian, sampleZeroLocalMs } from '../../web/take-recorder.js';

test('cutter: blocks of any size become consecutive chunks of exactly chunkFrames, samples kept exactly', () => {
  for (const channels of [1, 2]) {
    const cutter = new ChunkCutter({ channels, chunkFrames: 1000 });
    const all = [];
    const chunks = [];
    let frame = 0;
    for (const frames of [128, 3840, 1, 999, 2500, 7, 128, 3840]) {
      const block = new Float32Array(frames * channels + 16); // longer than needed, as recycled blocks are
      for (let i = 0; i < frames * channels; i++) {
        block[i] = Math.fround(Math.sin((frame * channels + i) * 0.37));
        all.push(block[i]);
      }
      block.fill(99, frames * channels); // never part of a chunk
      frame += frames;
      chunks.push(...cutter.push(block, frames));
    }
    const tail = cutter.flush();
    assert.ok(tail);
    chunks.push(tail);
    assert.equal(cutter.flush(), null);
    assert.equal(cutter.frames, frame);
    let first = 0;
    chunks.forEach((c, i) => {
      assert.equal(c.seq, i);
      assert.equal(c.first_sample, first);
      if (i < chunks.length - 1) assert.equal(c.samples, 1000);
      assert.equal(c.data.byteLength, c.samples * channels * 4);
      first += c.samples;
    });
    assert.equal(first, frame);
    const joined = new Float32Array(frame * channels);
    let at = 0;
    for (const c of chunks) {
      joined.set(new Float32Array(c.data), at);
      at += c.samples * channels;
    }
    assert.deepEqual(Array.from(joined), all, `${channels} channel(s): bit-exact`);
  }
});

test('cutter: a partial flush (the page is hiding) and recording on: the chunks stay consecutive', () => {
  const cutter = new ChunkCutter({ channels: 1, chunkFrames: 96000 });
  assert.equal(cutter.push(new Float32Array(3840), 3840).length, 0);
  const part = cutter.flush();
  assert.deepEqual([part.seq, part.first_sample, part.samples], [0, 0, 3840]);
  const out = cutter.push(new Float32Array(96000), 96000);
  assert.deepEqual(out.map((c) => [c.seq, c.first_sample, c.samples]), [[1, 3840, 96000]]);
});

test('sample 0: from the output timestamp, less the output and input latencies', () => {
  const t = sampleZeroLocalMs({
    frame: 48000 * 10, // context time 10 s
    sampleRate: 48000,
    outputTimestamp: { contextTime: 9.5, performanceTime: 20_000 },
    baseLatency: 0.01,
    outputLatency: 0.02,
    inputLatency: 0.005,
    timeOrigin: 1_795_430_000_000,
    perfNow: 20_600,
    currentTime: 10.1,
  });
  assert.equal(t.method, 'output-timestamp');
  // heard at 20 000 + 500 ms; rendered 30 ms before; captured 5 ms before that
  assert.ok(Math.abs(t.localMs - (1_795_430_000_000 + 20_500 - 30 - 5)) < 1e-6, t.localMs);
  assert.ok(Math.abs(t.outputLatencyMs - 30) < 1e-9);
  assert.ok(Math.abs(t.inputLatencyMs - 5) < 1e-9);
});

test('sample 0: currentTime against performance.now() without a timestamp; nonsense latencies ignored', () => {
  const t = sampleZeroLocalMs({
    frame: 480,
    sampleRate: 48000,
    outputTimestamp: { contextTime: 0, performanceTime: 0 },
    baseLatency: NaN,
    outputLatency: 5, // seconds: not believable
    inputLatency: undefined,
    timeOrigin: 1000,
    perfNow: 500,
    currentTime: 0.11,
  });
  assert.equal(t.method, 'current-time');
  assert.ok(Math.abs(t.localMs - (1000 + 500 - 100)) < 1e-9, t.localMs);
  assert.equal(t.inputLatencyMs, 0);
});

test('takes ask for an unprocessed microphone, little-endian samples stay as they are here', () => {
  assert.deepEqual(TAKE_CONSTRAINTS.audio, { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1, sampleRate: 48000 });
  const f = new Float32Array([1.5, -2.25]);
  const bytes = new Uint8Array(littleEndian(f.buffer));
  assert.deepEqual(Array.from(bytes.slice(0, 4)), [0x00, 0x00, 0xc0, 0x3f]); // 1.5f, little-endian
});
