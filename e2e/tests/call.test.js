// Three people in one room: everyone hears and sees the two others, mute reaches the others and stops
// the audio, leaving removes the tile.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, find, inbound, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

const ROOM = 'e2e';

/** Resolves with ms from `t0` until the page receives audio packets from `fromId` (polled every 25 ms). */
async function firstAudio(page, fromId, t0, timeout = 15_000) {
  await waitFor(
    async () => {
      const s = find(await inbound(page), fromId, 'audio');
      return s && s.packets > 0;
    },
    { timeout, interval: 25, what: `first audio packets from participant ${fromId}` },
  );
  return Date.now() - t0;
}

test('three participants in one room: media flows; mute, camera, deafen and leave propagate', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const [a, b, c] = await Promise.all([env.client('Ann'), env.client('Bo'), env.client('Cy')]);

    // A creates the room (the client joins a room it creates), B and C join from the lobby.
    const tA = Date.now();
    await createRoom(a, ROOM);
    const idA = await waitInRoom(a, ROOM);

    const tB = await clickJoin(b, ROOM);
    const idB = await waitInRoom(b, ROOM);
    const joinToAudioB = await firstAudio(b, idA, tB);

    const tC = await clickJoin(c, ROOM);
    const idC = await waitInRoom(c, ROOM);
    const joinToAudioC = await firstAudio(c, idA, tC);
    const createToAudioA = await firstAudio(a, idB, tA);

    t.diagnostic(`join -> first remote audio: B ${joinToAudioB} ms, C ${joinToAudioC} ms (A, from create: ${createToAudioA} ms, includes B joining)`);
    console.log(`[e2e] join->first-audio B=${joinToAudioB}ms C=${joinToAudioC}ms`);

    const pages = [
      { page: a, id: idA, name: 'A' },
      { page: b, id: idB, name: 'B' },
      { page: c, id: idC, name: 'C' },
    ];
    assert.equal(new Set([idA, idB, idC]).size, 3, 'participant ids are distinct');

    // Every page gets 2 audio + 2 video tracks, all carrying bytes.
    for (const me of pages) {
      const others = pages.filter((p) => p !== me).map((p) => String(p.id));
      await waitFor(
        async () => {
          const s = await inbound(me.page);
          return others.every((id) => ['audio', 'video'].every((k) => (find(s, id, k) || { bytes: 0 }).bytes > 0));
        },
        { timeout: 20_000, what: `${me.name} receiving audio+video from ${others.join(', ')}` },
      );
    }

    // ... and keeps receiving: bytes grow over 2 s on all four streams; video frames are decoded.
    const before = await Promise.all(pages.map((p) => inbound(p.page)));
    await sleep(2000);
    const after = await Promise.all(pages.map((p) => inbound(p.page)));
    pages.forEach((me, i) => {
      const others = pages.filter((p) => p !== me);
      const remote = after[i].filter((s) => others.some((o) => String(o.id) === s.id));
      assert.equal(remote.filter((s) => s.kind === 'audio').length, 2, `${me.name} has 2 remote audio tracks`);
      assert.equal(remote.filter((s) => s.kind === 'video').length, 2, `${me.name} has 2 remote video tracks`);
      for (const o of others) {
        for (const kind of ['audio', 'video']) {
          const s0 = find(before[i], o.id, kind);
          const s1 = find(after[i], o.id, kind);
          assert.ok(s0 && s1, `${me.name} has ${kind} stats for ${o.name}`);
          assert.ok(s1.bytes > s0.bytes, `${me.name}: ${kind} bytes from ${o.name} grow over 2 s (${s0.bytes} -> ${s1.bytes})`);
        }
        assert.ok(find(after[i], o.id, 'video').frames > 0, `${me.name} decodes video frames from ${o.name}`);
      }
    });

    // The received audio is the 440 Hz tone, not silence: the Web Audio analyser sees a level.
    for (const me of pages) {
      for (const o of pages.filter((p) => p !== me)) {
        const level = await waitFor(() => me.page.evaluate((id) => window.parley.remoteLevel(id), o.id), {
          timeout: 5000,
          what: `${me.name}: audio level from ${o.name} > 0`,
        });
        assert.ok(level > 0 && level <= 1, `${me.name}: level from ${o.name} is ${level}`);
      }
    }

    // Each tile is there, with video showing.
    for (const me of pages) {
      for (const o of pages) {
        await me.page.locator(`.tile[data-participant-id="${o.id}"]`).waitFor({ state: 'visible' });
      }
    }

    // A mutes: B and C see the icon, and A's audio stops arriving while A's video keeps coming.
    const tMute = Date.now();
    await a.locator('[data-testid="mic-toggle"]').click();
    for (const p of [b, c]) {
      await p.locator(`[data-participant-id="${idA}"] [data-testid="icon-mic-muted"]`).waitFor({ state: 'visible', timeout: 3000 });
    }
    t.diagnostic(`mute icon shown at B and C after ${Date.now() - tMute} ms`);
    assert.equal(await a.evaluate(() => window.parley.state.mic_muted), true, 'A state says muted');
    assert.equal(await a.locator('[data-testid="mic-toggle"]').getAttribute('aria-pressed'), 'true');
    const sending = await a.evaluate(() =>
      window.parley.pc
        .getTransceivers()
        .filter((t) => t.direction === 'sendonly')
        .map((t) => ({ kind: t.receiver.track.kind, track: t.sender.track ? t.sender.track.kind : null })),
    );
    assert.deepEqual(sending, [{ kind: 'audio', track: null }, { kind: 'video', track: 'video' }], 'A sends video but no audio track');
    assert.equal(await b.locator(`[data-participant-id="${idB}"] [data-testid="icon-mic-muted"]`).isVisible(), false, "B's own tile is not muted");

    await sleep(500);
    const m0 = await Promise.all([inbound(b), inbound(c)]);
    await sleep(1500);
    const m1 = await Promise.all([inbound(b), inbound(c)]);
    ['B', 'C'].forEach((who, i) => {
      const a0 = find(m0[i], idA, 'audio');
      const a1 = find(m1[i], idA, 'audio');
      const v0 = find(m0[i], idA, 'video');
      const v1 = find(m1[i], idA, 'video');
      assert.ok(a0 && a1 && v0 && v1, `${who} still has A's tracks`);
      assert.equal(a1.bytes, a0.bytes, `${who}: no audio bytes from muted A (${a0.bytes} -> ${a1.bytes})`);
      assert.ok(v1.bytes > v0.bytes, `${who}: A's video still flows (${v0.bytes} -> ${v1.bytes})`);
    });
    // B's audio to C is unaffected by A's mute.
    const bAtC0 = find(m0[1], idB, 'audio');
    const bAtC1 = find(m1[1], idB, 'audio');
    assert.ok(bAtC1.bytes > bAtC0.bytes, "C still receives B's audio");

    // B turns the camera off: the others show the avatar and the icon, and B's video stops arriving.
    await b.locator('[data-testid="camera-toggle"]').click();
    for (const p of [a, c]) {
      await p.locator(`[data-participant-id="${idB}"] [data-testid="icon-camera-off"]`).waitFor({ state: 'visible', timeout: 3000 });
      await p.locator(`[data-participant-id="${idB}"] .avatar`).waitFor({ state: 'visible', timeout: 3000 });
    }
    await waitFor(() => b.evaluate(() => window.parley.pc.getTransceivers().every((t) => t.direction !== 'sendonly' || t.receiver.track.kind !== 'video' || t.sender.track === null)), {
      timeout: 3000,
      what: 'B sends no video track',
    });
    await sleep(500);
    const cam0 = find(await inbound(a), idB, 'video');
    await sleep(1500);
    const cam1 = find(await inbound(a), idB, 'video');
    assert.equal(cam1.bytes, cam0.bytes, `A: no video bytes from B with the camera off (${cam0.bytes} -> ${cam1.bytes})`);
    // ... and back on: video flows and is decoded again.
    await b.locator('[data-testid="camera-toggle"]').click();
    await a.locator(`[data-participant-id="${idB}"] [data-testid="icon-camera-off"]`).waitFor({ state: 'hidden', timeout: 3000 });
    await waitFor(async () => {
      const s = find(await inbound(a), idB, 'video');
      return s && s.bytes > cam1.bytes && s.frames > find(after[0], idB, 'video').frames;
    }, { timeout: 5000, what: "A decodes B's video again after camera on" });

    // B deafens: the others see it, B's remote playback is muted locally.
    await b.locator('[data-testid="speaker-toggle"]').click();
    await a.locator(`[data-participant-id="${idB}"] [data-testid="icon-deafened"]`).waitFor({ state: 'visible', timeout: 3000 });
    const playback = await b.evaluate(() => [...document.querySelectorAll('.tile audio')].map((el) => el.muted));
    assert.ok(playback.length >= 1 && playback.every((m) => m), `B's remote audio elements are muted (${playback})`);
    await b.locator('[data-testid="speaker-toggle"]').click();
    await a.locator(`[data-participant-id="${idB}"] [data-testid="icon-deafened"]`).waitFor({ state: 'hidden', timeout: 3000 });

    // C leaves: its tile disappears at A and B; C is back in the lobby with no peer connection.
    await c.locator('[data-testid="leave"]').click();
    for (const p of [a, b]) {
      await p.locator(`.tile[data-participant-id="${idC}"]`).waitFor({ state: 'detached', timeout: 5000 });
    }
    await c.locator('[data-testid="create-room-input"]').waitFor({ state: 'visible' });
    assert.equal(await c.evaluate(() => window.parley.pc), null, 'C closed its peer connection');
    assert.equal(await c.evaluate(() => window.parley.room), null);
    assert.equal(await c.locator('.tile').count(), 0, 'C shows no tiles');
    await waitFor(async () => (await a.locator('.tile').count()) === 2 && (await b.locator('.tile').count()) === 2, {
      timeout: 5000,
      what: 'A and B show two tiles each',
    });
    // The lobby count follows (pushed by the server, no reload).
    await waitFor(async () => (await c.locator(`li[data-room="${ROOM}"] .count`).textContent()) === '2', {
      timeout: 5000,
      what: 'C sees 2 people in the room list',
    });
  });
});
