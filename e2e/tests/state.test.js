// Remembered choices: a person who left muted with the camera off comes back that way (the join carries
// the state), sends nothing, and starts sending by unmuting / turning the camera on: replaceTrack on the
// transceivers negotiated at join, no new offer from the client.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, find, inbound, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

test('join muted with the camera off (remembered), then unmute and start video', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const [a, b] = await Promise.all([env.client('Ann'), env.client('Bo')]);
    await a.evaluate(() => localStorage.setItem('parley.state', JSON.stringify({ mic_muted: true, deafened: false, camera_off: true })));
    const offersSent = [];
    a.on('websocket', (ws) => ws.on('framesent', (f) => {
      if (String(f.payload).includes('"type":"offer"')) offersSent.push(Date.now());
    }));
    await a.reload();
    await a.locator('[data-testid="create-room-input"]').waitFor({ state: 'visible' });

    await createRoom(b, 'st');
    const idB = await waitInRoom(b, 'st');
    await clickJoin(a, 'st');
    const idA = await waitInRoom(a, 'st');

    // The state came with the join: B shows both icons, A's controls show both off.
    for (const icon of ['icon-mic-muted', 'icon-camera-off']) {
      await b.locator(`[data-participant-id="${idA}"] [data-testid="${icon}"]`).waitFor({ state: 'visible', timeout: 5000 });
    }
    assert.equal(await a.locator('[data-testid="mic-toggle"]').getAttribute('aria-pressed'), 'true');
    assert.equal(await a.locator('[data-testid="camera-toggle"]').getAttribute('aria-pressed'), 'true');
    assert.deepEqual(await a.evaluate(() => window.parley.state), { mic_muted: true, deafened: false, camera_off: true });
    // A's own tile shows the avatar, not a preview.
    await a.locator(`.tile.self[data-participant-id="${idA}"] .avatar`).waitFor({ state: 'visible' });

    // A still hears and sees B.
    await waitFor(async () => {
      const s = await inbound(a);
      return ['audio', 'video'].every((k) => (find(s, idB, k) || { bytes: 0 }).bytes > 0);
    }, { timeout: 15_000, what: 'A receives B' });

    // A sends nothing: B gets no bytes from A.
    await sleep(1500);
    const s0 = await inbound(b);
    for (const kind of ['audio', 'video']) {
      const s = find(s0, idA, kind);
      assert.ok(!s || s.bytes === 0, `B received no ${kind} from muted A (${s && s.bytes})`);
    }

    // Unmute and camera on: B receives both, the tone is audible, video decodes.
    await a.locator('[data-testid="mic-toggle"]').click();
    await a.locator('[data-testid="camera-toggle"]').click();
    for (const icon of ['icon-mic-muted', 'icon-camera-off']) {
      await b.locator(`[data-participant-id="${idA}"] [data-testid="${icon}"]`).waitFor({ state: 'hidden', timeout: 5000 });
    }
    await waitFor(async () => {
      const s = await inbound(b);
      const au = find(s, idA, 'audio');
      const vi = find(s, idA, 'video');
      return au && vi && au.bytes > 0 && vi.frames > 0;
    }, { timeout: 10_000, what: "B receives A's audio and decodes A's video" });
    await waitFor(() => b.evaluate((id) => window.parley.remoteLevel(id) > 0, idA), { timeout: 5000, what: "A's tone at B" });
    await b.locator(`.tile[data-participant-id="${idA}"].has-video`).waitFor({ timeout: 5000 });
    await a.locator(`.tile.self[data-participant-id="${idA}"].has-video`).waitFor({ timeout: 5000 });
    assert.equal(offersSent.length, 1, 'the client sent exactly one offer');

    // The choices are remembered for next time.
    assert.deepEqual(
      await a.evaluate(() => JSON.parse(localStorage.getItem('parley.state'))),
      { mic_muted: false, deafened: false, camera_off: false },
    );
  });
});
