// Preferences survive a reload: the view mode (speaker / grid), the chosen microphone and speaker, the
// mute switch, the name, and the room itself (a reload in a room goes back into it).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

/** The widths of the tiles in the page, by participant id. */
const tileWidths = (page) => page.evaluate(() => Object.fromEntries(
  [...document.querySelectorAll('#tiles .tile')].map((el) => [el.dataset.participantId, Math.round(el.getBoundingClientRect().width)]),
));

test('view mode, devices, mute, name and room are restored on reload', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const [a, b] = await Promise.all([env.client('Ann'), env.client('Bo')]);
    await createRoom(a, 'prefs');
    const idA = await waitInRoom(a, 'prefs');
    await clickJoin(b, 'prefs');
    const idB = await waitInRoom(b, 'prefs');

    // Speaker view by default: Bo large, Ann (herself) in the strip.
    const toggle = a.locator('[data-testid="view-toggle"]');
    await waitFor(() => a.evaluate(() => window.parley.featured), { what: 'someone is shown large' });
    assert.equal(await a.evaluate(() => window.parley.viewMode), 'speaker');
    assert.equal(await a.evaluate(() => window.parley.featured), idB);
    await a.locator(`#tiles.featured .tile.active-speaker[data-participant-id="${idB}"]`).waitFor();
    let w = await tileWidths(a);
    assert.ok(w[idB] > 2 * w[idA], `Bo's tile is much larger than Ann's (${JSON.stringify(w)})`);

    // One click: grid view, same size for everyone; remembered.
    await toggle.click();
    assert.equal(await a.evaluate(() => window.parley.viewMode), 'grid');
    assert.equal(await toggle.getAttribute('aria-pressed'), 'true');
    assert.equal(await a.locator('#tiles.featured').count(), 0);
    w = await tileWidths(a);
    assert.equal(w[idA], w[idB], `tiles of equal size in grid view (${JSON.stringify(w)})`);
    assert.equal(await a.evaluate(() => localStorage.getItem('parley.viewMode')), 'grid');

    // Devices: pick the second microphone and the second speaker; the microphone changes at once.
    await a.locator('[data-testid="settings-open"]').click();
    const mic = a.locator('[data-testid="settings-mic"]');
    const speaker = a.locator('[data-testid="settings-speaker"]');
    await mic.waitFor({ state: 'visible' });
    const micOption = await mic.locator('option', { hasText: 'Fake Audio Input 2' }).getAttribute('value');
    const speakerOption = await speaker.locator('option', { hasText: 'Fake Audio Output 2' }).getAttribute('value');
    await mic.selectOption(micOption);
    await waitFor(() => a.evaluate((id) => window.parley.devicesInUse().audioinput === id, micOption), { what: 'the new microphone is in use' });
    await speaker.selectOption(speakerOption);
    await waitFor(() => a.evaluate((id) => [...document.querySelectorAll('.tile-audio')].every((el) => el.sinkId === id), speakerOption), {
      what: "the others' sound plays on the chosen speaker",
    });
    await a.locator('[data-testid="settings-done"]').click();
    await a.locator('[data-testid="settings"]').waitFor({ state: 'hidden' });
    // Bo still hears Ann on the new microphone.
    await waitFor(() => b.evaluate((id) => window.parley.remoteLevel(id) > 0, idA), { timeout: 5000, what: "Bo hears Ann's new microphone" });

    // Muted, then a reload: back in the room, in grid view, muted, on the same devices.
    await a.locator('[data-testid="mic-toggle"]').click();
    await waitFor(() => a.evaluate(() => window.parley.state.mic_muted), { what: 'Ann muted' });
    await a.reload();
    const idA2 = await waitInRoom(a, 'prefs', 15_000);
    assert.notEqual(idA2, idA, 'a new participant after the reload');
    assert.equal((await a.locator('#me-name').textContent()).trim(), 'Ann', 'name remembered');
    assert.equal(await a.evaluate(() => window.parley.viewMode), 'grid', 'grid view remembered');
    assert.equal(await a.locator('[data-testid="view-toggle"]').getAttribute('aria-pressed'), 'true');
    assert.equal(await a.locator('#tiles.featured').count(), 0);
    assert.equal(await a.locator('[data-testid="mic-toggle"]').getAttribute('aria-pressed'), 'true', 'still muted');
    await waitFor(() => a.evaluate((id) => window.parley.devicesInUse().audioinput === id, micOption), { what: 'the chosen microphone again' });
    await waitFor(() => a.evaluate((id) => {
      const els = [...document.querySelectorAll('.tile-audio')];
      return els.length > 0 && els.every((el) => el.sinkId === id);
    }, speakerOption), { what: 'the chosen speaker again' });
    await b.locator(`.tile[data-participant-id="${idA2}"] [data-testid="icon-mic-muted"]`).waitFor({ state: 'visible', timeout: 5000 });

    // Back to speaker view; leaving on purpose means a reload stays in the lobby.
    await a.locator('[data-testid="view-toggle"]').click();
    assert.equal(await a.evaluate(() => localStorage.getItem('parley.viewMode')), 'speaker');
    await a.locator('[data-testid="leave"]').click();
    await waitFor(() => a.evaluate(() => window.parley.room === null), { what: 'Ann left' });
    await a.reload();
    await a.locator('[data-testid="create-room-input"]').waitFor({ state: 'visible' });
    await a.locator('li[data-room="prefs"] .last').waitFor({ state: 'visible' });
    await sleep(1000);
    assert.equal(await a.evaluate(() => window.parley.room), null, 'no rejoin after leaving on purpose');
  });
});
