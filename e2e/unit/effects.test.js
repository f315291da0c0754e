// web/effects.js and its preference in web/prefs.js alone (no browser): the stored effect (off by default,
// nonsense read as off, Off not kept), the cost figures (mean, p95), the model's duty cycle, the blur
// radius and the status line's words.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EFFECT_MODES, blurRadius, effectMode, effectStatus, effectStatusText, nextModelRun, summarize } from '../../web/effects.js';
import { prefs } from '../../web/prefs.js';

function memStorage() {
  const mem = new Map();
  return { mem, getItem: (k) => (mem.has(k) ? mem.get(k) : null), setItem: (k, v) => mem.set(k, String(v)), removeItem: (k) => mem.delete(k) };
}

test('the effect preference: off by default, only known modes, Off not kept', () => {
  const st = memStorage();
  globalThis.window = { localStorage: st };
  try {
    assert.deepEqual(EFFECT_MODES, ['off', 'blur', 'replace']);
    assert.equal(prefs.effect, 'off', 'nothing stored: off');
    prefs.effect = 'blur';
    assert.equal(st.mem.get('parley.effect'), 'blur');
    assert.equal(prefs.effect, 'blur');
    prefs.effect = 'replace';
    assert.equal(prefs.effect, 'replace');
    prefs.effect = 'off';
    assert.equal(st.mem.has('parley.effect'), false, 'the default is not stored');
    st.setItem('parley.effect', 'sparkles');
    assert.equal(prefs.effect, 'off', 'an unknown stored value is off');
    prefs.effect = 'sparkles';
    assert.equal(st.mem.has('parley.effect'), false, 'an unknown mode is not stored');
  } finally {
    delete globalThis.window;
  }
  assert.equal(prefs.effect, 'off', 'no storage at all: off');
  assert.equal(effectMode('blur'), 'blur');
  assert.equal(effectMode(undefined), 'off');
  assert.equal(effectMode('BLUR'), 'off');
});

test('cost figures: mean and 95th percentile', () => {
  assert.deepEqual(summarize([]), { mean: 0, p95: 0 });
  assert.deepEqual(summarize([4]), { mean: 4, p95: 4 });
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
  assert.deepEqual(summarize(hundred), { mean: 50.5, p95: 95 });
  assert.deepEqual(summarize([3, 1, 2]), { mean: 2, p95: 3 }, 'order does not matter');
  assert.deepEqual(summarize([0.123, 0.456]), { mean: 0.3, p95: 0.5 }, 'rounded to 0.1 ms');
});

test('the model takes at most a third of the time; the blur scales with the frame', () => {
  assert.equal(nextModelRun(1000, 10), 1020, 'a 10 ms run: the next one 20 ms after it ends');
  assert.equal(nextModelRun(1000, 300), 1600, 'slow (software WebGL): other frames reuse the mask meanwhile');
  assert.equal(nextModelRun(1000, 0), 1000, 'instant: every frame');
  assert.equal(nextModelRun(0, 10, 0.5), 10);
  assert.equal(blurRadius(640), 16);
  assert.equal(blurRadius(1280), 32);
  assert.equal(blurRadius(100), 4, 'never below 4 px');
});

test('the status line', () => {
  assert.deepEqual(effectStatus(), { state: 'off', error: '' }, 'nothing running at first');
  assert.equal(effectStatusText({ state: 'off' }), '');
  assert.equal(effectStatusText({ state: 'on' }), '');
  assert.match(effectStatusText({ state: 'loading' }), /Loading/);
  const failed = effectStatusText({ state: 'failed', error: 'no WebGL' });
  assert.match(failed, /could not start \(no WebGL\)/);
  assert.match(failed, /Turn the effect off/);
});
