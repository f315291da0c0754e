// Room recording through the web client: a member presses Record and everyone in the room sees the red
// indicator (with who started it and a running time that agrees between pages), a late joiner sees it
// too, a second start is refused (`recording_running`), another member stops it (indicators gone, "stopped
// by" toast), and the Recordings panel lists it (processing, then ready) with one Ogg/Opus file per
// talker: an <audio> player and a download link whose signed URL serves the file, while an edited URL is
// refused. Then the wall screen shows a recording too. One server, one browser, three pages.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';
import { describeRecording, fileLabel, formatBytes, formatElapsed, groupFiles, playerKind } from '../../web/recording.js';

const CAMERA_OFF = { mic_muted: false, deafened: false, camera_off: true }; // spares the CPU
const ROOM = 'studio';

test('recording helpers (web/recording.js, no browser)', () => {
  assert.equal(formatElapsed(0), '00:00');
  assert.equal(formatElapsed(61_999), '01:01');
  assert.equal(formatElapsed(3_600_000 + 5_000), '1:00:05');
  assert.equal(formatElapsed(-5), '00:00');
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(34_000), '34 KB');
  assert.equal(formatBytes(1_440_000), '1.4 MB');
  const files = [
    { name: 'p12-audio.ogg', kind: 'track', format: 'ogg', participant_id: 12, participant_name: 'Bo' },
    { name: 'p9.webm', kind: 'video', format: 'webm', participant_id: 9, participant_name: 'Ann' },
    { name: 'p9-audio.ogg', kind: 'track', format: 'ogg', participant_id: 9, participant_name: 'Ann' },
    { name: 'mix.flac', kind: 'mix', format: 'flac' },
    { name: 'x.bin', kind: 'hologram', format: 'bin' },
  ];
  const groups = groupFiles(files);
  assert.deepEqual(groups.map((g) => g.kind), ['mix', 'video', 'track', 'hologram'], 'known kinds first, new ones after');
  assert.deepEqual(groups[2].files.map(fileLabel), ['Ann', 'Bo'], 'tracks by person');
  assert.equal(fileLabel(files[3]), 'Everyone');
  assert.equal(groups[3].label, 'Hologram', 'an unknown kind is labelled by its name');
  assert.deepEqual(files.map(playerKind), ['audio', 'video', 'audio', 'audio', null]);
  assert.equal(describeRecording({ state: 'ready', duration_ms: 65_000, started_by: 'Ann', stopped_by: 'Bo' }), '01:05 · started by Ann · stopped by Bo');
});

/** The indicator's elapsed seconds on `page` (from its mm:ss text), or null while hidden. */
async function shownSeconds(page) {
  const ind = page.locator('[data-testid="recording-indicator"]');
  if (!(await ind.isVisible())) return null;
  const text = await ind.locator('[data-testid="recording-elapsed"]').textContent();
  const m = /^(\d+):(\d\d)$/.exec(text.trim());
  assert.ok(m, `mm:ss shown (${text})`);
  return Number(m[1]) * 60 + Number(m[2]);
}

async function expectIndicator(page, who, by) {
  const ind = page.locator('[data-testid="recording-indicator"]');
  await ind.waitFor({ state: 'visible', timeout: 5000 });
  const text = await ind.textContent();
  assert.match(text, /Recording/i, `${who}: the indicator says Recording`);
  assert.equal((await ind.locator('[data-testid="recording-by"]').textContent()).trim(), `by ${by}`, `${who}: by ${by}`);
  const color = await ind.locator('.rec-dot').evaluate((e) => getComputedStyle(e).backgroundColor);
  assert.equal(color, 'rgb(240, 82, 93)', `${who}: a red dot`);
}

test('recording: Record, the indicator for all and late joiners, refusals, Stop, the Recordings panel, files', { timeout: 120_000 }, async (t) => {
  const t0 = Date.now();
  const env = await setup(t);
  await withReport(env, async () => {
    const [a, b] = await Promise.all([env.client('Ann', { state: CAMERA_OFF }), env.client('Bo', { state: CAMERA_OFF })]);
    await createRoom(a, ROOM);
    const idA = await waitInRoom(a, ROOM);
    await clickJoin(b, ROOM);
    const idB = await waitInRoom(b, ROOM);
    // Both send the tone before recording starts.
    await waitFor(() => b.evaluate((id) => window.parley.remoteLevel(id) > 0, idA), { timeout: 10_000, what: 'B hears A' });
    await waitFor(() => a.evaluate((id) => window.parley.remoteLevel(id) > 0, idB), { timeout: 10_000, what: 'A hears B' });
    for (const p of [a, b]) {
      await p.locator('[data-testid="recording-indicator"]').waitFor({ state: 'hidden' });
      await p.locator('[data-testid="recordings-open"]').waitFor({ state: 'visible' });
    }
    const recA = a.locator('[data-testid="record-toggle"]');
    const recB = b.locator('[data-testid="record-toggle"]');
    assert.equal(await recA.getAttribute('aria-pressed'), 'false');
    assert.equal((await recA.textContent()).trim(), 'Record');

    let tStart;
    await t.test('Record: everyone in the room sees the indicator, by whom, with the same running time', async () => {
      tStart = Date.now();
      await recA.click();
      await Promise.all([expectIndicator(a, 'A', 'Ann'), expectIndicator(b, 'B', 'Ann')]);
      t.diagnostic(`indicator on both pages ${Date.now() - tStart} ms after the click`);
      for (const [who, btn] of [['A', recA], ['B', recB]]) {
        await waitFor(async () => (await btn.getAttribute('aria-pressed')) === 'true', { what: `${who}: the button is pressed` });
        assert.equal(await btn.getAttribute('aria-label'), 'Stop recording', `${who}: the button says Stop recording`);
        assert.match((await btn.textContent()).trim(), /^Stop recording$/, `${who}: Stop recording on a wide screen`);
      }
      // The toast for those who did not press it; a chat line for all.
      await b.locator('[data-testid="toast"][data-code="recording_on"]').waitFor({ state: 'visible', timeout: 3000 });
      assert.match(await b.locator('[data-testid="toast"][data-code="recording_on"]').textContent(), /Ann started recording this room/);
      assert.ok((await a.evaluate(() => window.parley.chat)).some((l) => l.kind === 'system' && /You started recording/.test(l.text)));
      assert.ok((await b.evaluate(() => window.parley.chat)).some((l) => l.kind === 'system' && /Ann started recording/.test(l.text)));

      await sleep(2200);
      const [ea, eb] = await Promise.all([a.evaluate(() => window.parley.recording.current), b.evaluate(() => window.parley.recording.current)]);
      assert.equal(ea.started_by, 'Ann');
      assert.equal(ea.recording_id, eb.recording_id);
      assert.ok(Math.abs(ea.elapsed_ms - eb.elapsed_ms) < 1000, `A and B agree within 1 s (${ea.elapsed_ms} vs ${eb.elapsed_ms} ms)`);
      assert.ok(ea.elapsed_ms >= 1500 && ea.elapsed_ms < 4500, `about 2 s shown (${ea.elapsed_ms} ms)`);
      const [sa, sb] = [await shownSeconds(a), await shownSeconds(b)];
      assert.ok(sa >= 1 && sa <= 4 && Math.abs(sa - sb) <= 1, `the ticking mm:ss agrees (${sa} s, ${sb} s)`);
    });

    let c;
    let idC;
    await t.test('a late joiner sees the recording at once, with the same time', async () => {
      c = await env.client('Cy', { state: CAMERA_OFF });
      await clickJoin(c, ROOM);
      idC = await waitInRoom(c, ROOM);
      await expectIndicator(c, 'C', 'Ann');
      await c.locator('[data-testid="toast"][data-code="recording_on"]').waitFor({ state: 'visible', timeout: 3000 });
      assert.match(await c.locator('[data-testid="toast"][data-code="recording_on"]').textContent(), /This room is being recorded \(started by Ann\)/);
      assert.equal(await c.locator('[data-testid="record-toggle"]').getAttribute('aria-pressed'), 'true', 'C can stop it too');
      await sleep(1200); // the server's reading of the time has come
      const [ea, ec] = await Promise.all([a.evaluate(() => window.parley.recording.current), c.evaluate(() => window.parley.recording.current)]);
      assert.ok(Math.abs(ea.elapsed_ms - ec.elapsed_ms) < 1000, `A and the late C agree within 1 s (${ea.elapsed_ms} vs ${ec.elapsed_ms} ms)`);
      // C talks too (the tone), so it gets a file of its own.
      await waitFor(() => a.evaluate((id) => window.parley.remoteLevel(id) > 0, idC), { timeout: 10_000, what: 'A hears C' });
    });

    await t.test('a second start while one runs is refused: recording_running, shown', async () => {
      // B's button is Stop now; a raw recording_start on B's socket is what a second Record would send.
      assert.equal(await b.evaluate(() => window.parley.send({ type: 'recording_start', id: 9001 })), true);
      const err = b.locator('[data-testid="toast"][data-code="recording_running"]');
      await err.waitFor({ state: 'visible', timeout: 3000 });
      assert.equal(await err.getAttribute('role'), 'alert');
      const text = await err.textContent();
      assert.match(text, /Already recording/);
      assert.match(text, /being recorded already \(started by Ann\)/, `the server's words (${text})`);
      t.diagnostic(`recording_running: ${text}`);
      await err.locator('[data-testid="toast-dismiss"]').click();
      // Still one recording, still shown.
      assert.equal(await b.evaluate(() => window.parley.recording.current && window.parley.recording.current.started_by), 'Ann');
    });

    let tStop;
    await t.test('Stop (by another member): the indicators go on every page, "stopped by Bo"', async () => {
      // At least ~6 s of sound from A and B in the recording.
      const elapsed = await a.evaluate(() => window.parley.recording.current.elapsed_ms);
      if (elapsed < 6500) await sleep(6500 - elapsed);
      tStop = Date.now();
      await recB.click();
      for (const [who, p] of [['A', a], ['B', b], ['C', c]]) {
        await p.locator('[data-testid="recording-indicator"]').waitFor({ state: 'hidden', timeout: 3000 });
        await waitFor(async () => (await p.locator('[data-testid="record-toggle"]').getAttribute('aria-pressed')) === 'false', { what: `${who}: Record again` });
        assert.equal((await p.locator('[data-testid="record-toggle"]').textContent()).trim(), 'Record');
        assert.equal(await p.evaluate(() => window.parley.recording.current), null);
        const toast = p.locator('[data-testid="toast"][data-code="recording_stopped"]');
        await toast.waitFor({ state: 'visible', timeout: 3000 });
        assert.match(await toast.textContent(), who === 'B' ? /You stopped the recording/ : /Recording stopped by Bo/, `${who}: the toast`);
      }
      t.diagnostic(`indicators gone ${Date.now() - tStop} ms after Stop`);
      // Stopping again: not_recording, the server's words shown.
      await b.evaluate(() => window.parley.send({ type: 'recording_stop', id: 9002 }));
      const err = b.locator('[data-testid="toast"][data-code="not_recording"]');
      await err.waitFor({ state: 'visible', timeout: 3000 });
      assert.match(await err.textContent(), /studio is not being recorded/);
    });

    await t.test('the Recordings panel lists it (processing, then ready), one audio file per talker', async () => {
      await c.locator('[data-testid="toast"][data-code="recording_stopped"] [data-testid="toast-dismiss"]').click();
      await c.locator('[data-testid="recordings-open"]').click();
      const panel = c.locator('[data-testid="recordings-panel"]');
      await panel.waitFor({ state: 'visible' });
      const item = panel.locator('[data-testid="recording-item"]');
      await item.first().waitFor({ state: 'visible', timeout: 5000 });
      assert.equal(await item.count(), 1, 'one recording');
      const firstState = await item.getAttribute('data-state');
      t.diagnostic(`state when the panel opened: ${firstState}`);
      assert.ok(['processing', 'ready'].includes(firstState), `processing or ready (${firstState})`);
      const tReady = Date.now();
      await panel.locator('[data-testid="recording-item"][data-state="ready"]').waitFor({ timeout: 20_000 });
      t.diagnostic(`ready ${Date.now() - tStop} ms after Stop (${Date.now() - tReady} ms after the panel showed ${firstState})`);
      assert.equal(await item.locator('[data-testid="recording-state"]').textContent(), 'Ready');
      const meta = await item.locator('.rec-meta').textContent();
      assert.match(meta, /^\d\d:\d\d · started by Ann · stopped by Bo$/, meta);
      const rec = (await c.evaluate(() => window.parley.recording.recordings))[0];
      const wall = tStop - tStart;
      assert.ok(Math.abs(rec.duration_ms - wall) < 1500, `duration ${rec.duration_ms} ms ≈ click to click ${wall} ms`);
      const when = await item.locator('time.rec-when').getAttribute('datetime');
      assert.ok(Math.abs(Date.parse(when) - tStart) < 2000, `start time shown (${when})`);

      const rows = item.locator('.rec-group[data-kind="track"] [data-testid="recording-file"]');
      assert.equal(await rows.count(), 3, 'one file per talker');
      const mix = await item.locator('.rec-group[data-kind="mix"] [data-testid="recording-file"]').evaluateAll((els) => els.map((e) => e.dataset.format));
      assert.deepEqual(mix, ['ogg', 'wav', 'flac'], 'the denoised mix, in three formats');
      const files = await rows.evaluateAll((els) => els.map((e) => ({
        kind: e.dataset.kind,
        format: e.dataset.format,
        pid: Number(e.dataset.participantId),
        name: e.querySelector('.rec-file-name').textContent,
        player: e.querySelector('[data-testid="recording-player"]') && {
          tag: e.querySelector('[data-testid="recording-player"]').tagName,
          preload: e.querySelector('[data-testid="recording-player"]').preload,
          src: e.querySelector('[data-testid="recording-player"]').getAttribute('src'),
        },
        href: e.querySelector('[data-testid="recording-download"]').getAttribute('href'),
        download: e.querySelector('[data-testid="recording-download"]').hasAttribute('download'),
      })));
      assert.deepEqual(files.map((f) => [f.pid, f.name]).sort(), [[idA, 'Ann'], [idB, 'Bo'], [idC, 'Cy']].sort(), 'Ann, Bo and Cy');
      for (const f of files) {
        assert.equal(f.kind, 'track');
        assert.equal(f.format, 'ogg');
        assert.equal(f.player.tag, 'AUDIO');
        assert.equal(f.player.preload, 'none');
        assert.equal(f.player.src, f.href, 'the player plays the download link');
        assert.ok(f.download, 'a download link');
        assert.match(f.href, /^\/api\/recordings\/\d+\/p\d+-audio\.ogg\?exp=\d+&sig=/);
      }
      await item.locator('.rec-group[data-kind="track"] h4').waitFor();
      assert.equal(await item.locator('.rec-group[data-kind="track"] h4').textContent(), 'Each person (3)');

      // The links work from the page, for that file only.
      const href = files.find((f) => f.pid === idA).href;
      const got = await c.evaluate(async (url) => {
        const r = await fetch(url);
        const buf = new Uint8Array(await r.arrayBuffer());
        const edited = url.replace(/sig=(.)/, (m, ch) => `sig=${ch === 'A' ? 'B' : 'A'}`);
        const other = url.replace(/\/p\d+-audio\.ogg/, '/p999-audio.ogg');
        const [r2, r3] = await Promise.all([fetch(edited), fetch(other)]);
        return {
          status: r.status,
          type: r.headers.get('content-type'),
          bytes: buf.length,
          magic: String.fromCharCode(...buf.slice(0, 4)),
          edited: r2.status,
          other: r3.status,
        };
      }, href);
      t.diagnostic(`A's file: ${JSON.stringify(got)}`);
      assert.equal(got.status, 200);
      assert.equal(got.type, 'audio/ogg');
      assert.equal(got.magic, 'OggS');
      assert.ok(got.bytes > 10_000, `more than 10 KB of Opus (${got.bytes} bytes)`);
      assert.equal(got.edited, 403, 'an edited link is refused');
      assert.equal(got.other, 403, 'a link is for one file only');
      // The player can load it (same origin, allowed by the CSP).
      const played = await c.evaluate(async (url) => {
        const p = [...document.querySelectorAll('[data-testid="recording-player"]')].find((e) => e.getAttribute('src') === url);
        p.muted = true;
        p.preload = 'auto';
        p.load();
        return new Promise((resolve) => {
          p.addEventListener('loadedmetadata', () => resolve({ ok: true, duration: p.duration }), { once: true });
          p.addEventListener('error', () => resolve({ ok: false, error: p.error && p.error.code }), { once: true });
          setTimeout(() => resolve({ ok: false, error: 'timeout' }), 5000);
        });
      }, href);
      assert.ok(played.ok, `the <audio> player loads the file (${JSON.stringify(played)})`);
      await panel.locator('[data-close]').first().click();
      await panel.waitFor({ state: 'hidden' });
    });

    await t.test('the wall screen shows a recording too', async () => {
      // A's page becomes the room's wall screen; Bo records.
      await a.goto(`${env.url}/viewer/${ROOM}?name=Wall`);
      await waitFor(() => a.evaluate((r) => window.parley.room === r, ROOM), { what: 'the wall screen joined' });
      await a.locator('[data-testid="recording-indicator"]').waitFor({ state: 'hidden' });
      await recB.click();
      await expectIndicator(a, 'wall', 'Bo');
      await expectIndicator(c, 'C', 'Bo');
      await recB.click();
      await a.locator('[data-testid="recording-indicator"]').waitFor({ state: 'hidden', timeout: 3000 });
      await c.locator('[data-testid="recording-indicator"]').waitFor({ state: 'hidden', timeout: 3000 });
    });
    console.log(`[e2e] recording test ${Date.now() - t0} ms`);
  });
});
