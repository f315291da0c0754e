// The wall screen (/viewer/<room>) and the status page (/status).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, find, inbound, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

test('wall screen: receives everyone, sends nothing, is no tile; status page lists the room', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    // A screen for a room that does not exist yet waits for it.
    const wall = await env.page('/viewer/wall', { label: 'wall' });
    await waitFor(async () => (await wall.locator('[data-testid="wall-message"]').textContent()).includes('Waiting for wall'), {
      what: 'the wall screen waits for the room',
    });

    const [a, b] = await Promise.all([env.client('Ann'), env.client('Bo')]);
    await createRoom(a, 'wall');
    const idA = await waitInRoom(a, 'wall');
    await clickJoin(b, 'wall');
    const idB = await waitInRoom(b, 'wall');

    // The screen joins by itself and gets both people's audio and video.
    await waitFor(() => wall.evaluate(() => window.parley.room === 'wall'), { timeout: 10_000, what: 'the wall screen joined' });
    await waitFor(async () => {
      const s = await inbound(wall);
      return [idA, idB].every((id) => ['audio', 'video'].every((k) => (find(s, id, k) || { frames: 0, bytes: 0 }).bytes > 0))
        && [idA, idB].every((id) => find(s, id, 'video').frames > 0);
    }, { timeout: 15_000, what: 'the wall screen receives A and B' });
    for (const id of [idA, idB]) {
      await waitFor(() => wall.evaluate((pid) => window.parley.remoteLevel(pid) > 0, id), { timeout: 5000, what: `sound from ${id} on the wall` });
      // Only the person on screen is visible; the others' video is still there for when they speak.
      await wall.locator(`.tile[data-participant-id="${id}"].has-video`).waitFor({ state: 'attached', timeout: 5000 });
    }
    assert.equal(await wall.locator('[data-testid="wall-message"]').isVisible(), false, 'no message over the tiles');
    const idW = await wall.evaluate(() => window.parley.me);

    // Members show no tile for the screen and receive nothing from it.
    await sleep(1000);
    for (const [name, page, other] of [['A', a, idB], ['B', b, idA]]) {
      assert.equal(await page.locator(`.tile[data-participant-id="${idW}"]`).count(), 0, `${name} shows no tile for the screen`);
      assert.equal(await page.locator('.tile').count(), 2, `${name} shows two tiles`);
      const ids = [...new Set((await page.evaluate(() => window.parley.remoteTracks())).map((x) => x.id))];
      assert.deepEqual(ids, [String(other)], `${name} receives tracks only from the other member`);
    }
    await waitFor(async () => (await a.locator('[data-testid="room-count"]').textContent()) === '2 people · 1 viewer', {
      what: 'A sees that a viewer watches',
    });
    // The lobby count leaves the screen out.
    assert.equal(await a.locator('li[data-room="wall"] .count').textContent(), '2');

    // An active speaker is chosen from the tones and shown large.
    const speaker = await waitFor(() => wall.evaluate(() => window.parley.activeSpeaker), { timeout: 8000, what: 'an active speaker' });
    assert.ok([idA, idB].includes(speaker), `the speaker is a member (${speaker})`);
    await wall.locator(`.tile.active-speaker[data-participant-id="${speaker}"]`).waitFor({ timeout: 3000 });
    assert.equal(await wall.locator('.tile:visible').count(), 1, 'the wall shows only the active speaker');

    // The status page lists the room, the people, their flags and the screen, and follows changes live.
    const status = await env.page('/status', { label: 'status' });
    const row = (id) => status.locator(`[data-room="wall"] tr[data-participant-id="${id}"]`);
    await row(idA).waitFor({ timeout: 5000 });
    assert.match(await row(idA).textContent(), /Ann/);
    assert.match(await row(idW).textContent(), /Viewer/);
    assert.doesNotMatch(await row(idB).textContent(), /Muted/);
    await waitFor(async () => (await row(speaker).textContent()).includes('Speaking'), { timeout: 5000, what: 'status marks the speaker' });
    await b.locator('[data-testid="mic-toggle"]').click();
    await waitFor(async () => (await row(idB).textContent()).includes('Muted'), { timeout: 5000, what: 'status shows B muted' });
  });
});
