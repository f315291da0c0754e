// web/studio-clock.js on its own (no browser, no server): the server-clock estimator and its pinger on a
// synthetic link with a known offset, asymmetric jitter and delay spikes, in simulated time.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClockPinger, ServerClock } from '../../web/studio-clock.js';

const TRUE_OFFSET = 12345.6;
const START = 1_795_430_000_000.3; // a Unix-ms reading, like performance.timeOrigin + performance.now()

/** A small seeded PRNG (mulberry32), so every run sees the same link. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

/** Simulated time: timers run in order as `runUntil` advances the clock. */
function simTime(start = START) {
  const queue = [];
  let now = start;
  let n = 0;
  return {
    now: () => now,
    setTimer(fn, ms) {
      const t = { at: now + Math.max(0, ms), fn, n: n++ };
      queue.push(t);
      return t;
    },
    clearTimer(t) {
      const i = queue.indexOf(t);
      if (i >= 0) queue.splice(i, 1);
    },
    async runUntil(until) {
      for (;;) {
        queue.sort((a, b) => a.at - b.at || a.n - b.n);
        const next = queue[0];
        if (!next || next.at > until) break;
        queue.shift();
        now = next.at;
        next.fn();
        await flush();
      }
      now = until;
    },
  };
}

/**
 * The link: 15 ms each way plus jitter that is NOT symmetric (uplink uniform 0–40 ms, downlink mostly small:
 * 40·u³, so averaging round trips would be ~5 ms off), a 200 ms spike on one leg of 8% of round trips, 2%
 * lost (the request times out after 5 s). `offset(localMs)`: the true server − local offset at that moment.
 */
function link(time, seed, offset = () => TRUE_OFFSET) {
  const r = rng(seed);
  return (clientMs) =>
    new Promise((resolve, reject) => {
      if (r() < 0.02) {
        time.setTimer(() => reject(new Error('timed out')), 5000);
        return;
      }
      let up = 15 + 40 * r();
      let down = 15 + 40 * r() ** 3;
      if (r() < 0.08) {
        if (r() < 0.5) up += 200;
        else down += 200;
      }
      const readAt = clientMs + up;
      const serverMs = readAt + offset(readAt);
      time.setTimer(() => resolve(serverMs), up + down);
    });
}

function setup(seed, offset) {
  const time = simTime();
  const clock = new ServerClock({ now: time.now });
  const pinger = new ClockPinger({ clock, ask: link(time, seed, offset), now: time.now, setTimer: time.setTimer, clearTimer: time.clearTimer });
  return { time, clock, pinger };
}

test('clock: within 5 ms of the true offset after 30 s of pings, on 25 differently seeded links', async () => {
  let worst = 0;
  for (let seed = 1; seed <= 25; seed++) {
    const { time, clock, pinger } = setup(seed);
    pinger.start();
    await time.runUntil(START + 30_000);
    assert.ok(clock.locked, `seed ${seed}: locked`);
    const err = Math.abs(clock.offset - TRUE_OFFSET);
    worst = Math.max(worst, err);
    assert.ok(err < 5, `seed ${seed}: offset ${clock.offset} is ${err.toFixed(2)} ms off`);
    assert.ok(Math.abs(clock.serverNow() - (time.now() + TRUE_OFFSET)) < 5, `seed ${seed}: serverNow`);
    assert.ok(Math.abs(clock.toServer(START + 1000) - (START + 1000 + TRUE_OFFSET)) < 5, `seed ${seed}: toServer`);
    pinger.stop();
  }
  console.log(`# worst error after 30 s over 25 links: ${worst.toFixed(2)} ms`);
});

test('clock: the true offset is always inside the reported bound', async () => {
  const { time, clock, pinger } = setup(7);
  pinger.start();
  for (let t = 1000; t <= 60_000; t += 1000) {
    await time.runUntil(START + t);
    if (clock.estimate == null) continue;
    assert.ok(Math.abs(clock.estimate - TRUE_OFFSET) <= clock.bound + 1e-9, `at ${t} ms: estimate ${clock.estimate}, bound ${clock.bound}`);
  }
  // Half the fastest up- plus downlink: the 15 ms base delay each way (no round trip can split it) and
  // a few ms of jitter.
  assert.ok(clock.bound > 15 && clock.bound < 20, `bound ${clock.bound}`);
  pinger.stop();
});

test('clock: a 20 ms step of the true offset is slewed (≤ 1 ms per second), not jumped, and caught up', async () => {
  let offset = TRUE_OFFSET;
  const { time, clock, pinger } = setup(3, () => offset);
  pinger.start();
  await time.runUntil(START + 60_000);
  assert.ok(Math.abs(clock.offset - TRUE_OFFSET) < 5);
  const stepAt = time.now();
  offset = TRUE_OFFSET + 20;
  let last = clock.offset;
  let maxStep = 0;
  let caughtUpAt = null;
  for (let t = 100; t <= 120_000; t += 100) {
    await time.runUntil(stepAt + t);
    const now = clock.offset;
    maxStep = Math.max(maxStep, Math.abs(now - last));
    last = now;
    if (caughtUpAt == null && Math.abs(now - offset) < 5) caughtUpAt = t;
  }
  assert.ok(maxStep <= 0.1 + 1e-9, `moved ${maxStep} ms in 100 ms`);
  assert.ok(caughtUpAt != null, `within 5 ms of the new offset after 120 s (at ${clock.offset})`);
  assert.ok(caughtUpAt >= 10_000, `caught up after ${caughtUpAt} ms: too fast for a slew`);
  assert.ok(Math.abs(clock.offset - offset) < 5);
  assert.equal(clock.relocks, 0);
  console.log(`# 20 ms step: within 5 ms after ${(caughtUpAt / 1000).toFixed(1)} s, largest move ${(maxStep * 10).toFixed(2)} ms/s`);
  pinger.stop();
});

test('clock: a jump of over 1 s (a suspended laptop, a stepped server clock) re-locks at once', async () => {
  let offset = TRUE_OFFSET;
  const { time, clock, pinger } = setup(5, () => offset);
  pinger.start();
  await time.runUntil(START + 30_000);
  offset = TRUE_OFFSET + 3000;
  await time.runUntil(START + 40_000);
  assert.equal(clock.relocks, 1);
  assert.ok(Math.abs(clock.offset - offset) < 15, `offset ${clock.offset}`);
  await time.runUntil(START + 90_000);
  assert.ok(Math.abs(clock.offset - offset) < 5, `offset ${clock.offset}`);
  pinger.stop();
});

test('clock: follows a drifting clock (50 ppm) within 5 ms for 10 minutes', async () => {
  const { time, clock, pinger } = setup(11, (localMs) => TRUE_OFFSET + (localMs - START) * 50e-6);
  pinger.start();
  await time.runUntil(START + 30_000);
  for (let t = 30_000; t <= 600_000; t += 5000) {
    await time.runUntil(START + t);
    const truth = TRUE_OFFSET + t * 50e-6;
    assert.ok(Math.abs(clock.offset - truth) < 5, `at ${t / 1000} s: ${clock.offset} vs ${truth}`);
  }
  pinger.stop();
});

test('clock: refuses nonsense, publishes the first estimate before locking, and locks after four', () => {
  let now = START;
  const clock = new ServerClock({ now: () => now });
  assert.equal(clock.offset, 0);
  assert.equal(clock.sample(START + 10, START + 100, START), false, 'answer before the question');
  assert.equal(clock.sample(NaN, 1, 2), false);
  assert.ok(clock.sample(START, START + 1000 + 20, START + 40));
  assert.equal(clock.offset, 1000, 'midpoint of a single round trip');
  assert.equal(clock.locked, false);
  for (let i = 1; i <= 3; i++) {
    now = START + i * 100;
    clock.sample(now, now + 1000 + 10, now + 20);
  }
  assert.equal(clock.locked, true);
  assert.equal(clock.rtt, 20);
  return clock.whenLocked(10).then((v) => assert.equal(v, true));
});

test('pinger: five quick round trips, one a second up to twenty, then one every 2 s; stop() stops it', async () => {
  const time = simTime();
  const clock = new ServerClock({ now: time.now });
  const asked = [];
  const pinger = new ClockPinger({
    clock,
    ask: (clientMs) => {
      asked.push(clientMs - START);
      return new Promise((resolve) => time.setTimer(() => resolve(time.now() + TRUE_OFFSET), 10));
    },
    now: time.now,
    setTimer: time.setTimer,
    clearTimer: time.clearTimer,
  });
  pinger.start();
  await time.runUntil(START + 30_000);
  pinger.stop();
  const n = asked.length;
  await time.runUntil(START + 60_000);
  assert.equal(asked.length, n, 'nothing after stop()');
  const gaps = asked.slice(1).map((t, i) => Math.round(t - asked[i]));
  // each wait starts when the answer (10 ms) is in
  assert.deepEqual(gaps, [...Array(4).fill(260), ...Array(15).fill(1010), ...Array(gaps.length - 19).fill(2010)]);
  assert.ok(gaps.length > 19);
  assert.ok(clock.locked);
  assert.ok(Math.abs(clock.offset - TRUE_OFFSET) < 6);
});
