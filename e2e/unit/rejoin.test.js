// The rejoin state machine alone (web/rejoin.js), with a fake clock and timers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GIVE_UP_MS, Rejoin } from '../../web/rejoin.js';

function fakeTime() {
  let now = 1_000_000;
  let next = 1;
  const timers = new Map(); // id -> {at, fn}
  return {
    now: () => now,
    setTimer: (fn, ms) => {
      const id = next++;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimer: (id) => timers.delete(id),
    advance(ms) {
      const until = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = until;
    },
    pending: () => timers.size,
  };
}

test('one attempt per open connection, again after a drop, with the room and the token', () => {
  const t = fakeTime();
  const gaveUp = [];
  const r = new Rejoin({ onGiveUp: (room) => gaveUp.push(room), ...t });
  assert.equal(r.take(), null, 'nothing to do before a drop');
  r.start({ room: 'band', token: 'tok' });
  r.start({ room: 'other', token: 'x' }); // a second drop while trying changes nothing
  assert.ok(r.active);
  assert.deepEqual(r.take(), { room: 'band', token: 'tok', attempts: 1 });
  assert.equal(r.take(), null, 'not twice at once');
  r.retry();
  assert.deepEqual(r.take(), { room: 'band', token: 'tok', attempts: 2 });
  r.done();
  assert.ok(!r.active);
  assert.equal(r.take(), null);
  t.advance(GIVE_UP_MS * 2);
  assert.deepEqual(gaveUp, [], 'done: no giving up later');
  assert.equal(t.pending(), 0, 'no timers left');
});

test('gives up after a minute, once, and says which room', () => {
  const t = fakeTime();
  const gaveUp = [];
  const overlay = { hidden: true };
  const label = { textContent: '' };
  const r = new Rejoin({ overlay, label, onGiveUp: (room) => gaveUp.push(room), ...t });
  r.start({ room: 'band' });
  assert.equal(overlay.hidden, false, 'the overlay shows');
  assert.equal(label.textContent, 'Reconnecting…');
  t.advance(5_000);
  assert.equal(label.textContent, 'Reconnecting… (5 s)');
  t.advance(GIVE_UP_MS - 5_001);
  assert.deepEqual(gaveUp, []);
  t.advance(1);
  assert.deepEqual(gaveUp, ['band']);
  assert.equal(overlay.hidden, true);
  assert.ok(!r.active);
  t.advance(GIVE_UP_MS);
  assert.deepEqual(gaveUp, ['band'], 'once');
});
