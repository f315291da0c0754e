// Preferences survive a reload: the view mode (speaker / grid), the chosen microphone and speaker, the
// mute switch, the name, and the room itself (a reload in a room goes back into it). The pre-join check
// (web/prejoin.js): what is chosen there is how one enters, and is remembered; refused devices.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, roomItem, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

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

/** Keeps every track getUserMedia hands out (window.__tracks), to tell whether they were all released. */
function watchTracks() {
  window.__tracks = [];
  const md = navigator.mediaDevices;
  const real = md.getUserMedia.bind(md);
  md.getUserMedia = async (c) => {
    const s = await real(c);
    window.__tracks.push(...s.getTracks());
    return s;
  };
}

const CAMERA_OFF = { mic_muted: false, deafened: false, camera_off: true };

test('pre-join: preview, meter, devices; mic and camera chosen there are how one enters, remembered', { timeout: 90_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const [a, b] = await Promise.all([env.client('Ann', { state: CAMERA_OFF }), env.client('Bo', { initScript: watchTracks })]);
    await createRoom(a, 'check');
    await waitInRoom(a, 'check');

    // Bo opens the room's link: the check, not the room.
    await b.goto(`${env.url}/r/check`);
    await b.locator('[data-testid="prejoin"]').waitFor({ state: 'visible' });
    assert.equal((await b.locator('[data-testid="prejoin-room"]').textContent()).trim(), 'check');
    assert.equal(await b.evaluate(() => window.parley.room), null, 'not in the room yet');
    assert.equal(await b.evaluate(() => document.getElementById('prejoin').contains(document.activeElement)), true, 'focus is in the check');
    // The camera preview plays, the meter follows the (440 Hz) microphone.
    await waitFor(() => b.evaluate(() => {
      const v = document.querySelector('[data-testid="prejoin-video"]');
      return v.srcObject && v.srcObject.getVideoTracks()[0].readyState === 'live' && v.videoWidth > 0;
    }), { what: 'the camera preview plays' });
    await waitFor(() => b.evaluate(() => window.parley.prejoin.level > 0.2), { what: 'the mic meter moves' });
    assert.equal(Number(await b.locator('[data-testid="prejoin-meter"]').getAttribute('aria-valuenow')) > 20, true, 'the meter says so');
    // The pickers list the devices; Bo takes the second microphone.
    const micSelect = b.locator('[data-testid="prejoin-mic-select"]');
    await waitFor(async () => (await micSelect.locator('option', { hasText: 'Fake Audio Input 2' }).count()) === 1, { what: 'the microphones listed by name' });
    assert.equal(await b.locator('[data-testid="prejoin-camera-select"] option', { hasText: 'fake_device_0' }).count(), 1, 'the camera listed');
    const mic2 = await micSelect.locator('option', { hasText: 'Fake Audio Input 2' }).getAttribute('value');
    await micSelect.selectOption(mic2);
    await waitFor(() => b.evaluate((id) => JSON.parse(localStorage.getItem('parley.devices') || '{}').audioinput === id, mic2), { what: 'the microphone remembered' });

    // Mic off: the meter drops to nothing. Camera off: the preview goes, the camera is released.
    const micBtn = b.locator('[data-testid="prejoin-mic"]');
    const camBtn = b.locator('[data-testid="prejoin-camera"]');
    assert.equal(await micBtn.getAttribute('aria-pressed'), 'false');
    await micBtn.click();
    await waitFor(async () => (await micBtn.getAttribute('aria-pressed')) === 'true', { what: 'mic switch off' });
    await waitFor(() => b.evaluate(() => window.parley.prejoin.level === 0), { what: 'the meter at zero' });
    await camBtn.click();
    await waitFor(async () => (await camBtn.getAttribute('aria-pressed')) === 'true', { what: 'camera switch off' });
    assert.equal(await b.evaluate(() => document.querySelector('[data-testid="prejoin-video"]').srcObject), null, 'no preview');
    assert.equal(await b.evaluate(() => window.__tracks.filter((x) => x.kind === 'video' && x.readyState === 'live').length), 0, 'the camera is off');
    assert.deepEqual(await b.evaluate(() => JSON.parse(localStorage.getItem('parley.state'))), { mic_muted: true, deafened: false, camera_off: true }, 'the choices remembered');

    // Join: Bo is in muted with the camera off, as Ann sees him, on the microphone chosen.
    const opened = await b.evaluate(() => window.__tracks.length);
    await b.locator('[data-testid="prejoin-join"]').click();
    const idB = await waitInRoom(b, 'check');
    assert.equal(await b.evaluate(() => location.pathname), '/r/check', 'the address is the room link');
    const seen = async (id) => waitFor(() => a.evaluate((pid) => window.parley.participants.find((p) => p.id === pid), id), { what: `Ann knows ${id}` });
    let atA = await seen(idB);
    assert.equal(atA.mic_muted, true, 'muted at Ann');
    assert.equal(atA.camera_off, true, 'camera off at Ann');
    for (const icon of ['icon-mic-muted', 'icon-camera-off']) await a.locator(`.tile[data-participant-id="${idB}"] [data-testid="${icon}"]`).waitFor({ state: 'visible' });
    assert.deepEqual(await b.evaluate(() => window.parley.state), { mic_muted: true, deafened: false, camera_off: true });
    assert.equal(await b.evaluate(() => window.parley.devicesInUse().audioinput), mic2, 'the microphone chosen in the check is the one in use');
    assert.equal(await b.evaluate(() => window.__tracks.length), opened, 'the check handed its microphone to the room (no getUserMedia on joining)');
    assert.equal(await b.evaluate(() => window.__tracks.filter((x) => x.kind === 'audio' && x.readyState === 'live').length), 1, 'one microphone open');

    // A reload in the room goes back in without the check (nothing is clicked here), still muted, camera off.
    await b.reload();
    await waitFor(() => b.evaluate(() => window.parley && window.parley.room === 'check' && window.parley.pc !== null), { timeout: 15_000, what: 'Bo back in after the reload' });
    const idB2 = await b.evaluate(() => window.parley.me);
    assert.notEqual(idB2, idB);
    atA = await seen(idB2);
    assert.equal(atA.mic_muted, true, 'still muted at Ann after the reload');
    assert.equal(atA.camera_off, true, 'camera still off at Ann after the reload');

    // Leaving: the address is / again. Joining from the lobby shows the check with the remembered choices;
    // Back returns to the lobby, releases the devices and joins nothing.
    await b.locator('[data-testid="leave"]').click();
    await waitFor(() => b.evaluate(() => window.parley.room === null && location.pathname === '/'), { what: 'Bo left, address /' });
    await roomItem(b, 'check').locator('[data-testid="join-room"]').click();
    await b.locator('[data-testid="prejoin"]').waitFor({ state: 'visible' });
    await waitFor(() => b.evaluate(() => window.__tracks.some((x) => x.kind === 'audio' && x.readyState === 'live')), { what: 'the check opened the microphone' });
    assert.equal(await micBtn.getAttribute('aria-pressed'), 'true', 'mic off, as chosen last time');
    assert.equal(await camBtn.getAttribute('aria-pressed'), 'true', 'camera off, as chosen last time');
    assert.equal(await b.evaluate(() => window.__tracks.filter((x) => x.kind === 'video' && x.readyState === 'live').length), 0, 'the camera stays off');
    assert.equal(await b.evaluate((id) => document.querySelector('[data-testid="prejoin-mic-select"]').value === id, mic2), true, 'the chosen microphone selected');
    await b.locator('[data-testid="prejoin-back"]').click();
    await b.locator('[data-testid="create-room-input"]').waitFor({ state: 'visible' });
    assert.equal(await b.locator('[data-testid="prejoin"]').isVisible(), false);
    await waitFor(() => b.evaluate(() => window.__tracks.every((x) => x.readyState === 'ended')), { what: 'every device released after Back' });
    await sleep(500);
    assert.equal(await b.evaluate(() => window.parley.room), null, 'Back joins nothing');
    assert.equal(await a.evaluate(() => window.parley.participants.length), 0, 'Ann is alone');
  });
});

test('pre-join: refused devices get one lasting banner with Retry; one can still join with them off', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    // The browser refuses the microphone and camera until the test lets it (window.__deny).
    const deny = () => {
      window.__deny = true;
      const md = navigator.mediaDevices;
      const real = md.getUserMedia.bind(md);
      md.getUserMedia = (c) => (window.__deny ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError')) : real(c));
    };
    const c = await env.client('Cy', { initScript: deny });
    const banner = c.locator('[data-testid="prejoin-banner"]');
    const retry = c.locator('[data-testid="prejoin-retry"]');
    const toasts = c.locator('[data-testid="toast"]');
    await createRoom(c, 'denied');
    await banner.waitFor({ state: 'visible' });
    assert.match(await banner.textContent(), /does not let parley use your microphone and camera.*Retry/s);
    assert.equal(await banner.getAttribute('role'), 'alert');
    assert.equal(await c.locator('[data-testid="prejoin-mic"]').getAttribute('aria-pressed'), 'true', 'mic shown off');
    assert.equal(await c.locator('[data-testid="prejoin-camera"]').getAttribute('aria-pressed'), 'true', 'camera shown off');

    // Retry while still refused, and the mic switch: the same one banner, no toasts.
    await retry.click();
    await waitFor(() => retry.isEnabled(), { what: 'retry done' });
    await c.locator('[data-testid="prejoin-mic"]').click();
    await sleep(300);
    assert.equal(await c.locator('[data-testid="prejoin-banner"]:visible').count(), 1, 'one banner');
    assert.equal(await toasts.count(), 0, 'no toasts');
    assert.equal(await c.evaluate(() => window.parley.prejoin.mic), false);

    // Allowed now: Retry brings the preview and the meter, the banner goes.
    await c.evaluate(() => {
      window.__deny = false;
    });
    await retry.click();
    await banner.waitFor({ state: 'hidden' });
    await waitFor(() => c.evaluate(() => window.parley.prejoin.mic && window.parley.prejoin.camera), { what: 'mic and camera on after Retry' });
    await waitFor(() => c.evaluate(() => window.parley.prejoin.level > 0), { what: 'the meter moves after Retry' });

    // Refused again: Back, then Join from the lobby with nothing allowed enters with both off, quietly.
    await c.evaluate(() => {
      window.__deny = true;
    });
    await c.locator('[data-testid="prejoin-back"]').click();
    await roomItem(c, 'denied').locator('[data-testid="join-room"]').click();
    await banner.waitFor({ state: 'visible' });
    await c.locator('[data-testid="prejoin-join"]').click();
    await waitInRoom(c, 'denied');
    assert.deepEqual(await c.evaluate(() => window.parley.state), { mic_muted: true, deafened: false, camera_off: true }, 'in with both off');
    assert.equal(await c.locator('[data-testid="mic-toggle"]').getAttribute('aria-pressed'), 'true', 'the room says muted');
    await sleep(1000);
    assert.equal(await toasts.count(), 0, 'no "unavailable" toasts on entering');
    const saved = await c.evaluate(() => JSON.parse(localStorage.getItem('parley.state') || '{}'));
    assert.notEqual(saved.mic_muted, true, 'a refused device is not remembered as a choice');
    assert.notEqual(saved.camera_off, true, 'a refused camera is not remembered as a choice');
  });
});
