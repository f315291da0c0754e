// Two rooms are two worlds: people in different rooms get none of each other's media.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRoom, rawRtpStats, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

test('participants in different rooms receive nothing from each other', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const [a, b] = await Promise.all([env.client('Ann'), env.client('Bo')]);
    await createRoom(a, 'room-one');
    await waitInRoom(a, 'room-one');
    await createRoom(b, 'room-two');
    await waitInRoom(b, 'room-two');

    // Both are really connected and sending to the server (so "nothing received" means something).
    for (const [name, page] of [['A', a], ['B', b]]) {
      await waitFor(
        async () => {
          const s = await rawRtpStats(page);
          return s.connectionState === 'connected' && ['audio', 'video'].every((k) => s.outbound.some((o) => o.kind === k && o.bytes > 0));
        },
        { timeout: 15_000, what: `${name} connected and sending audio+video` },
      );
    }

    // Room counts reach the other room's sidebar without a reload.
    await waitFor(async () => (await b.locator('li[data-room="room-one"] .count').textContent()) === '1', {
      what: 'B sees 1 person in room-one',
    });
    await waitFor(async () => (await a.locator('li[data-room="room-two"] .count').textContent()) === '1', {
      what: 'A sees 1 person in room-two',
    });

    await sleep(3000);
    for (const [name, page] of [['A', a], ['B', b]]) {
      const s = await rawRtpStats(page);
      const received = s.inbound.filter((i) => i.bytes > 0 || i.packets > 0);
      assert.deepEqual(received, [], `${name} receives no RTP`);
      assert.deepEqual(await page.evaluate(() => window.parley.remoteTracks()), [], `${name} has no remote tracks`);
      assert.equal(await page.locator('.tile:not(.self)').count(), 0, `${name} shows no remote tiles`);
      assert.equal(await page.locator('.tile.self').count(), 1, `${name} shows their own tile`);
      assert.deepEqual(await page.evaluate(() => window.parley.participants), [], `${name} is alone in the room`);
    }
  });
});
