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
    // Devices go on and off by replaceTrack: the client never renegotiates (the server offers first).
    assert.equal(offersSent.length, 0, 'the client sent no offer of its own');

    // The choices are remembered for next time.
    assert.deepEqual(
      await a.evaluate(() => JSON.parse(localStorage.getItem('parley.state'))),
      { mic_muted: false, deafened: false, camera_off: false },
    );
  });
});

// Keyboard shortcuts (web/shortcuts.js), push-to-talk (web/ptt.js) and the "You're muted" hint, in two
// pages. The other page's roster says every change (set_state went to the server); push-to-talk is judged
// by the audio bytes the other page receives from that publisher while the key is held and not.
test('shortcuts M/V/D/C/?/Esc, push-to-talk and the "You\'re muted" hint', { timeout: 150_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const state = { mic_muted: false, deafened: false, camera_off: true };
    const [a, b] = await Promise.all([env.client('Ann', { state }), env.client('Bo', { state })]);
    await createRoom(a, 'keys');
    const idA = await waitInRoom(a, 'keys');
    await clickJoin(b, 'keys');
    await waitInRoom(b, 'keys');

    /** A's flag `f` as B's roster has it (from the server), or null before A is there. */
    const seen = (f) => b.evaluate(([id, flag]) => {
      const p = window.parley.participants.find((x) => String(x.id) === String(id));
      return p ? !!p[flag] : null;
    }, [idA, f]);
    const seenBecomes = (f, v, what) => waitFor(async () => (await seen(f)) === v, { timeout: 5000, what });
    const audioFromA = async () => (find(await inbound(b), idA, 'audio') || { bytes: 0 }).bytes;
    const own = () => a.evaluate(() => window.parley.state);
    await waitFor(async () => (await audioFromA()) > 0, { timeout: 15_000, what: "A's audio at B" });
    await a.evaluate(() => document.activeElement && document.activeElement.blur());

    // M mutes and unmutes; the button keeps its one name and says the state with aria-pressed, drawn red.
    const mic = a.locator('[data-testid="mic-toggle"]');
    const micRed = () => mic.evaluate((el) => {
      const [r, g] = getComputedStyle(el.querySelector('svg.off').checkVisibility() ? el.querySelector('svg.off') : el.querySelector('svg.on')).color.match(/\d+/g).map(Number);
      return r > 200 && g < 150;
    });
    assert.equal(await a.getByRole('button', { name: 'Mute', exact: true, pressed: false }).count(), 1);
    assert.equal(await micRed(), false, 'unmuted: not red');
    await a.keyboard.press('m');
    await seenBecomes('mic_muted', true, 'B sees A muted after M');
    assert.equal(await a.getByRole('button', { name: 'Mute', exact: true, pressed: true }).count(), 1, 'still "Mute", now pressed');
    assert.equal(await micRed(), true, 'muted: drawn red');

    // Muted, the fake microphone's tone is heard locally: the hint appears (~0.5 s of voice), and goes on unmute.
    const hint = a.locator('[data-testid="mute-hint"]');
    const tHint = Date.now();
    await hint.waitFor({ state: 'visible', timeout: 5000 });
    t.diagnostic(`"You're muted" shown ${Date.now() - tHint} ms after M`);
    assert.equal(await hint.textContent(), "You're muted — press M to unmute");
    await a.keyboard.press('M'); // Shift / Caps Lock: the same key
    await hint.waitFor({ state: 'hidden', timeout: 1000 });
    await seenBecomes('mic_muted', false, 'B sees A unmuted after M');
    await sleep(1500);
    assert.equal(await hint.isVisible(), false, 'no hint while unmuted and talking');

    // V and D, there and back.
    for (const [k, flag, first] of [['v', 'camera_off', false], ['d', 'deafened', true]]) {
      await a.keyboard.press(k);
      await seenBecomes(flag, first, `B sees ${flag}=${first} after ${k}`);
      assert.equal((await own())[flag], first);
      await a.keyboard.press(k);
      await seenBecomes(flag, !first, `B sees ${flag}=${!first} after ${k} again`);
    }
    assert.equal(await a.locator('[data-testid="speaker-toggle"]').getAttribute('aria-pressed'), 'false');

    // Not with Ctrl held.
    await a.keyboard.press('Control+m');
    await a.keyboard.press('Alt+v');
    await sleep(600);
    assert.deepEqual(await own(), state, 'Ctrl+M and Alt+V change nothing');

    // C opens the chat (focus in its box); typing m, v, d there types, and mutes nothing; Esc closes it.
    await a.keyboard.press('c');
    await a.locator('#room.chat-open').waitFor({ timeout: 3000 });
    await waitFor(() => a.evaluate(() => document.activeElement && document.activeElement.dataset.testid === 'chat-input'), { timeout: 3000, what: 'focus in the chat box' });
    await a.keyboard.type('mvdc?');
    assert.equal(await a.locator('[data-testid="chat-input"]').inputValue(), 'mvdc?');
    await sleep(600);
    assert.deepEqual(await own(), state, 'keys typed into the chat change nothing');
    assert.equal(await seen('mic_muted'), false);
    await a.keyboard.press('Escape');
    await a.locator('#room.chat-open').waitFor({ state: 'detached', timeout: 3000 });
    await a.evaluate(() => {
      const box = document.querySelector('[data-testid="chat-input"]');
      box.value = '';
      box.dispatchEvent(new Event('input'));
    });

    // ? lists the shortcuts; inside that dialog M does nothing; Esc closes it.
    await a.keyboard.press('?');
    const help = a.locator('[data-testid="shortcuts-dialog"]');
    await help.waitFor({ state: 'visible', timeout: 3000 });
    const keys = await help.locator('dt kbd').allTextContents();
    assert.deepEqual(keys, ['M', 'V', 'D', 'C', 'P', 'Esc', '?']);
    await a.keyboard.press('m');
    await sleep(400);
    assert.equal((await own()).mic_muted, false, 'M in the dialog mutes nothing');
    await a.keyboard.press('Escape');
    await help.waitFor({ state: 'hidden', timeout: 3000 });

    // Push-to-talk on (Devices): muted at once, the button says so.
    await a.locator('[data-testid="settings-open"]').click();
    await a.locator('[data-testid="ptt-on"]').check();
    await seenBecomes('mic_muted', true, 'B sees A muted when push-to-talk goes on');
    await a.locator('[data-testid="settings-done"]').click();
    await a.locator('[data-testid="settings"]').waitFor({ state: 'hidden' });
    assert.equal(await a.getByRole('button', { name: 'Push to talk', exact: true, pressed: false }).count(), 1);
    await hint.waitFor({ state: 'visible', timeout: 5000 });
    assert.equal(await hint.textContent(), 'Hold Space to talk', 'the hint says the key');

    /** Audio bytes from A at B over `ms`, after `settle` ms (packets on the way). */
    const bytesOver = async (ms, settle = 500) => {
      await sleep(settle);
      const b0 = await audioFromA();
      await sleep(ms);
      return (await audioFromA()) - b0;
    };
    assert.equal(await bytesOver(1500), 0, 'nothing arrives while the key is up');

    // Held: A talks, B receives; released: silence again.
    const tDown = Date.now();
    await a.keyboard.down('Space');
    await seenBecomes('mic_muted', false, 'B sees A talking while Space is held');
    t.diagnostic(`Space down -> B sees A unmuted: ${Date.now() - tDown} ms`);
    assert.equal(await a.getByRole('button', { name: 'Push to talk', exact: true, pressed: true }).count(), 1);
    const held = await bytesOver(1500, 300);
    assert.ok(held > 2000, `audio arrives while Space is held (${held} bytes in 1.5 s)`);
    assert.equal(await hint.isVisible(), false, 'no hint while talking');
    await a.keyboard.up('Space');
    await seenBecomes('mic_muted', true, 'B sees A muted when Space is released');
    assert.equal(await bytesOver(1500), 0, 'nothing arrives after the release');

    // The window losing focus, or the page hidden, ends talking with the key still down.
    for (const [what, lose] of [
      ['blur', () => window.dispatchEvent(new Event('blur'))],
      ['hidden', () => {
        Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
        document.dispatchEvent(new Event('visibilitychange'));
        delete document.visibilityState;
      }],
    ]) {
      await a.keyboard.down('Space');
      await seenBecomes('mic_muted', false, `A talking before ${what}`);
      await a.evaluate(lose);
      await seenBecomes('mic_muted', true, `${what} ends talking`);
      await a.keyboard.up('Space');
    }

    // M toggles nothing now: it says how to talk.
    await a.keyboard.press('m');
    await waitFor(async () => (await hint.textContent()) === 'Push-to-talk is on — hold Space to talk', { timeout: 2000, what: 'M explains push-to-talk' });
    await sleep(400);
    assert.equal((await own()).mic_muted, true, 'M does not unmute under push-to-talk');

    // Space typed into the chat box types a space.
    await a.keyboard.press('c');
    await waitFor(() => a.evaluate(() => document.activeElement && document.activeElement.dataset.testid === 'chat-input'), { timeout: 3000, what: 'focus in the chat box' });
    await a.keyboard.down('Space');
    await sleep(700);
    assert.equal((await own()).mic_muted, true, 'Space in the chat box does not talk');
    await a.keyboard.up('Space');
    assert.equal(await a.locator('[data-testid="chat-input"]').inputValue(), ' ');
    await a.keyboard.press('Escape');
    await a.locator('#room.chat-open').waitFor({ state: 'detached', timeout: 3000 });

    // Another key ("press a key"): shortcut letters refused, T taken; then T talks and Space does not.
    await a.locator('[data-testid="settings-open"]').click();
    const keyBtn = a.locator('[data-testid="ptt-key"]');
    await keyBtn.click();
    assert.equal(await keyBtn.textContent(), 'Press a key…');
    await a.keyboard.press('m');
    assert.match(await a.locator('[data-testid="ptt-note"]').textContent(), /shortcut/);
    await a.keyboard.press('t');
    assert.equal(await keyBtn.textContent(), 'T');
    assert.equal(await a.locator('[data-testid="settings"]').isVisible(), true, 'the dialog is still open');
    await a.locator('[data-testid="settings-done"]').click();
    await a.locator('[data-testid="settings"]').waitFor({ state: 'hidden' });
    await a.keyboard.down('Space');
    await sleep(700);
    assert.equal((await own()).mic_muted, true, 'Space is no longer the key');
    await a.keyboard.up('Space');
    await a.keyboard.down('t');
    await seenBecomes('mic_muted', false, 'B sees A talking while T is held');
    await a.keyboard.up('t');
    await seenBecomes('mic_muted', true, 'B sees A muted when T is released');

    // Remembered: after a reload A is back in the room, muted, push-to-talk on with T.
    assert.deepEqual(await a.evaluate(() => JSON.parse(localStorage.getItem('parley.ptt'))), { on: true, code: 'KeyT', label: 'T' });
    await a.reload();
    const idA2 = await waitInRoom(a, 'keys', 15_000);
    assert.equal((await own()).mic_muted, true, 'joins muted with push-to-talk on');
    assert.equal(await a.getByRole('button', { name: 'Push to talk', exact: true, pressed: false }).count(), 1);
    assert.equal(await mic.getAttribute('title'), 'Hold T to talk');
    assert.notEqual(idA2, null);
  });
});
