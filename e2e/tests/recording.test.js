// Room recording through the web client, with known inputs: three people in three browsers, each fake
// microphone a tone of its own (440, 700, 1100 Hz), Ann's camera on (VP8) and Cy's (offering H.264 only). A member presses Record and everyone
// in the room sees the red indicator (with who started it and a running time that agrees between pages), a
// late joiner sees it too, a second start is refused (`recording_running`), everyone falls silent and
// starts again at one moment, another member stops it (indicators gone, "stopped by" toast), and the
// Recordings panel lists it (processing, then ready) with one Ogg/Opus file per talker: an <audio> player
// and a download link whose signed URL serves the file, while an edited URL is refused. Then every file is
// downloaded and read back with ffmpeg: each person's file holds their own tone (FFT), the mix holds all
// three, every file lasts as long as the others (within 100 ms), the common onset sits at the same moment
// in every file (within 20 ms), and Ann's WebM has VP8 video and Cy's Matroska H.264, each with their Opus
// audio (ffprobe). Then the wall
// screen shows a recording too. One server, three browsers, four pages.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { decode, dominantFrequency, probe, RATE, toneOnset, toneLevels } from '../lib/audio.js';
import { clickJoin, createRoom, makeWav, setup, sleep, tempDir, waitFor, waitInRoom, withReport } from '../lib/harness.js';
import { describeRecording, fileLabel, formatBytes, formatElapsed, groupFiles, playerKind } from '../../web/recording.js';

const CAMERA_OFF = { mic_muted: false, deafened: false, camera_off: true }; // spares the CPU
const CAMERA_ON = { mic_muted: false, deafened: false, camera_off: false };
const ROOM = 'studio';
/** Each person's fake microphone: a sine of its own. */
const TONES = { Ann: 440, Bo: 700, Cy: 1100 };
const toneFile = (hz) => makeWav(`tone${hz}`, ['synth', '30', 'sine', String(hz), 'vol', '0.5']);

/**
 * Makes the page send its camera only as H.264, as a browser or device without VP8 would: the server's
 * offer loses VP8 on the m-lines the page sends on (recvonly on the server's side), and an offer of the
 * page's own lists only H.264. The server prefers VP8 when both are possible, so this is how its H.264
 * path gets a real sender. (Codec preferences alone do not do it for an answer: Chromium still sends the
 * offer's first codec.)
 */
function offerOnlyH264() {
  const withoutVp8WhereWeSend = (sdp) => {
    const [head, ...sections] = sdp.split(/\r\n(?=m=)/);
    return [head, ...sections.map((section) => {
      const lines = section.split('\r\n');
      if (!lines[0].startsWith('m=video') || !lines.includes('a=recvonly')) return section;
      const vp8 = new Set(lines.filter((l) => /^a=rtpmap:\d+ VP8\//.test(l)).map((l) => l.match(/^a=rtpmap:(\d+)/)[1]));
      for (const l of lines) {
        const rtx = l.match(/^a=fmtp:(\d+) apt=(\d+)/);
        if (rtx && vp8.has(rtx[2])) vp8.add(rtx[1]);
      }
      return lines
        .filter((l) => !vp8.has((l.match(/^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)/) || [])[1]))
        .map((l, i) => (i === 0 ? l.split(' ').filter((pt, j) => j < 3 || !vp8.has(pt)).join(' ') : l))
        .join('\r\n');
    })].join('\r\n');
  };
  const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (desc, ...rest) {
    if (desc && desc.type === 'offer') desc = { type: 'offer', sdp: withoutVp8WhereWeSend(desc.sdp) };
    return setRemote.call(this, desc, ...rest);
  };
  const offer = RTCPeerConnection.prototype.createOffer;
  RTCPeerConnection.prototype.createOffer = function (...args) {
    const h264 = RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/H264' && /packetization-mode=1/.test(c.sdpFmtpLine || ''));
    for (const t of this.getTransceivers()) {
      if (t.receiver.track.kind === 'video' && t.direction === 'sendonly') t.setCodecPreferences(h264);
    }
    return offer.apply(this, args);
  };
}

/** Turns the microphone track we send on or off (not the app's mute: the server must not gate it); the wall time. */
function setSending(page, on) {
  return page.evaluate((enabled) => {
    const sender = window.parley.pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
    sender.track.enabled = enabled;
    return Date.now();
  }, on);
}

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

test('the audio tools the checks rely on (e2e/lib/audio.js, synthetic signals, ffmpeg round trip)', () => {
  // 1 s of silence, then 440 Hz and 1100 Hz at once (a mix), then 2 s of both.
  const x = new Float32Array(3 * RATE);
  for (let i = RATE; i < x.length; i++) x[i] = 0.3 * Math.sin((2 * Math.PI * 440 * i) / RATE) + 0.2 * Math.sin((2 * Math.PI * 1100 * i) / RATE);
  assert.ok(Math.abs(dominantFrequency(x, RATE + 4800) - 440) < 1);
  const [l440, l700, l1100] = toneLevels(x, RATE + 4800, [440, 700, 1100]);
  assert.ok(Math.abs(l440 - 20 * Math.log10(0.3)) < 0.5 && Math.abs(l1100 - 20 * Math.log10(0.2)) < 0.5 && l700 < -60, `levels ${l440}, ${l700}, ${l1100} dBFS`);
  for (const hz of [440, 1100]) {
    const onset = toneOnset(x, hz, { from: 0.2 });
    assert.ok(Math.abs(onset - 1) < 0.002, `${hz} Hz onset at ${onset} s`);
  }
  assert.equal(toneOnset(x, 700, { from: 0.2 }), null, 'no 700 Hz tone');
  assert.equal(toneOnset(x, 440, { from: 1.5 }), null, 'no silence before a tone after 1.5 s');
  // Through Opus and back with ffmpeg: the onset moves by less than a millisecond.
  const dir = tempDir('parley-e2e-audio-');
  try {
    const wav = path.join(dir, 'x.wav');
    const data = Buffer.alloc(x.length * 2);
    x.forEach((v, i) => data.writeInt16LE(Math.round(v * 32767), i * 2));
    const header = Buffer.alloc(44);
    header.write('RIFF', 0); header.writeUInt32LE(36 + data.length, 4); header.write('WAVEfmt ', 8);
    header.writeUInt32LE(16, 16); header.writeUInt16LE(1, 20); header.writeUInt16LE(1, 22);
    header.writeUInt32LE(RATE, 24); header.writeUInt32LE(RATE * 2, 28); header.writeUInt16LE(2, 32);
    header.writeUInt16LE(16, 34); header.write('data', 36); header.writeUInt32LE(data.length, 40);
    fs.writeFileSync(wav, Buffer.concat([header, data]));
    const back = decode(wav);
    assert.equal(back.length, x.length);
    assert.ok(Math.abs(toneOnset(back, 440, { from: 0.2 }) - 1) < 0.002);
    assert.ok(Math.abs(probe(wav).duration - 3) < 0.001);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
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

test('recording: Record, the indicator for all and late joiners, refusals, Stop, the Recordings panel, files', { timeout: 180_000 }, async (t) => {
  const t0 = Date.now();
  const env = await setup(t, { audioFile: toneFile(TONES.Ann) });
  const [browserB, browserC] = await Promise.all([
    env.launchBrowser({ audioFile: toneFile(TONES.Bo) }),
    env.launchBrowser({ audioFile: toneFile(TONES.Cy) }),
  ]);
  await withReport(env, async () => {
    const [a, b] = await Promise.all([
      env.client('Ann', { state: CAMERA_ON }),
      env.client('Bo', { state: CAMERA_OFF, browser: browserB }),
    ]);
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
        assert.equal(await btn.getAttribute('aria-label'), 'Record', `${who}: the button keeps its one name (aria-pressed says recording)`);
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
      c = await env.client('Cy', { state: CAMERA_ON, browser: browserC, initScript: offerOnlyH264 });
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

    let enabledAt;
    await t.test('everyone falls silent, then all three start at one moment', async () => {
      await Promise.all([a, b, c].map((p) => setSending(p, false)));
      await waitFor(() => a.evaluate((ids) => ids.every((id) => window.parley.remoteLevel(id) === 0), [idB, idC]), { timeout: 5000, what: 'A hears silence' });
      await sleep(1000);
      const [ta, tb, tc] = await Promise.all([a, b, c].map((p) => setSending(p, true)));
      enabledAt = { Ann: ta, Bo: tb, Cy: tc };
      t.diagnostic(`the three microphones came on within ${Math.max(ta, tb, tc) - Math.min(ta, tb, tc)} ms of each other`);
      await waitFor(() => a.evaluate((ids) => ids.every((id) => window.parley.remoteLevel(id) > 0), [idB, idC]), { timeout: 5000, what: 'A hears B and C again' });
      await sleep(2500); // sound after the onset, for the FFT
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

    await t.test('the files, read back: own tones, all three in the mix, one length, one onset, WebM with video and audio', async () => {
      const rec = (await c.evaluate(() => window.parley.recording.recordings))[0];
      const dir = tempDir('parley-e2e-recording-');
      t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
      const local = {};
      for (const f of rec.files) {
        assert.match(f.name, /^[a-z0-9][a-z0-9.-]*$/, 'a server-made name');
        const r = await fetch(env.url + f.url);
        assert.equal(r.status, 200, `${f.name} downloads`);
        local[f.name] = path.join(dir, f.name);
        fs.writeFileSync(local[f.name], Buffer.from(await r.arrayBuffer()));
      }
      const who = { [idA]: 'Ann', [idB]: 'Bo', [idC]: 'Cy' };
      const track = (name) => local[rec.files.find((f) => f.kind === 'track' && who[f.participant_id] === name).name];
      const videos = rec.files.filter((f) => f.kind === 'video');
      assert.deepEqual(videos.map((f) => [who[f.participant_id], f.format]).sort(), [['Ann', 'webm'], ['Cy', 'mkv']], "Ann's camera (VP8) and Cy's (H.264)");

      // One length: every file lasts the recording's time, within 100 ms of each other.
      const lengths = {};
      for (const name of Object.keys(local)) lengths[name] = probe(local[name]).duration;
      const spread = Math.max(...Object.values(lengths)) - Math.min(...Object.values(lengths));
      t.diagnostic(`lengths (s): ${JSON.stringify(lengths)}; spread ${(spread * 1000).toFixed(1)} ms; recording ${rec.duration_ms} ms`);
      assert.ok(spread <= 0.1, `the files' lengths agree within 100 ms (spread ${(spread * 1000).toFixed(1)} ms)`);
      for (const [name, len] of Object.entries(lengths)) {
        assert.ok(Math.abs(len * 1000 - rec.duration_ms) <= 100, `${name}: ${len} s ≈ the recording's ${rec.duration_ms} ms`);
      }

      // Own tone per file (dominant frequency, the others far below), all three in the mix.
      const names = Object.keys(TONES);
      const freqs = names.map((n) => TONES[n]);
      const expected = Object.fromEntries(names.map((n) => [n, (enabledAt[n] - rec.started_at_ms) / 1000]));
      const pcm = Object.fromEntries(names.map((n) => [n, decode(track(n))]));
      const mixes = { 'mix.wav': decode(local['mix.wav']), 'mix.ogg': decode(local['mix.ogg']), 'mix.flac': decode(local['mix.flac']) };
      for (const n of names) {
        const at = Math.round((expected[n] + 0.8) * RATE);
        const f = dominantFrequency(pcm[n], at);
        const levels = toneLevels(pcm[n], at, freqs);
        t.diagnostic(`${n}: dominant ${f.toFixed(1)} Hz; ${freqs.map((hz, i) => `${hz} Hz ${levels[i].toFixed(0)} dBFS`).join(', ')}`);
        assert.ok(Math.abs(f - TONES[n]) < 3, `${n}'s file holds ${n}'s ${TONES[n]} Hz tone (dominant ${f.toFixed(1)} Hz)`);
        freqs.forEach((hz, i) => {
          if (hz !== TONES[n]) assert.ok(levels[i] < levels[names.indexOf(n)] - 30, `${n}'s file does not hold ${hz} Hz (${levels[i].toFixed(0)} dBFS)`);
        });
      }
      const mixAt = Math.round((Math.max(...Object.values(expected)) + 0.8) * RATE);
      const own = names.map((n) => toneLevels(pcm[n], mixAt, [TONES[n]])[0]);
      for (const [name, x] of Object.entries(mixes)) {
        const levels = toneLevels(x, mixAt, freqs);
        t.diagnostic(`${name}: ${freqs.map((hz, i) => `${hz} Hz ${levels[i].toFixed(1)} dBFS (${(levels[i] - own[i]).toFixed(1)} dB against their file)`).join(', ')}`);
        // Denoising keeps a steady tone; the sum of three stays below the limiter, so each is as loud as sent.
        levels.forEach((db, i) => assert.ok(db > own[i] - 6 && db > -45, `${name} holds ${names[i]}'s ${freqs[i]} Hz (${db.toFixed(1)} dBFS; ${own[i].toFixed(1)} in their file)`));
      }

      // One onset: the moment all three came on sits at the same place in every file.
      const residual = {};
      for (const n of names) {
        const onset = toneOnset(pcm[n], TONES[n], { from: expected[n] - 0.8 });
        assert.ok(onset !== null, `${n}: the tone starts again in their file`);
        residual[n] = onset - expected[n];
        for (const [name, x] of Object.entries(mixes)) {
          const inMix = toneOnset(x, TONES[n], { from: expected[n] - 0.8 });
          assert.ok(inMix !== null, `${name}: ${n}'s tone starts again in the mix`);
          t.diagnostic(`${n}: onset ${(onset * 1000).toFixed(1)} ms in their file, ${(inMix * 1000).toFixed(1)} ms in ${name}`);
          assert.ok(Math.abs(inMix - onset) <= 0.02, `${n}'s onset in ${name} is within 20 ms of their file's (${((inMix - onset) * 1000).toFixed(1)} ms)`);
        }
      }
      const offsets = Object.values(residual);
      const onsetSpread = Math.max(...offsets) - Math.min(...offsets);
      t.diagnostic(`file position − (page's wall time − recording start), ms: ${names.map((n) => `${n} ${(residual[n] * 1000).toFixed(1)}`).join(', ')}; spread ${(onsetSpread * 1000).toFixed(1)} ms`);
      assert.ok(onsetSpread <= 0.02, `the onsets line up across the three files within 20 ms (spread ${(onsetSpread * 1000).toFixed(1)} ms)`);
      for (const n of names) assert.ok(residual[n] > -0.02 && residual[n] < 0.2, `${n}: the file is on the recording's clock (${(residual[n] * 1000).toFixed(0)} ms after the page's wall time)`);

      for (const line of env.server.logs().split('\n').filter((l) => /video file made|no video file|recording files made/.test(l))) t.diagnostic(`server: ${line.trim()}`);
      // Each camera as sent, with its person's voice: Ann's VP8 in WebM, Cy's H.264 in Matroska.
      for (const [name, container, codec] of [['Ann', 'matroska,webm', 'vp8'], ['Cy', 'matroska,webm', 'h264']]) {
        const f = videos.find((v) => who[v.participant_id] === name);
        const info = probe(local[f.name]);
        t.diagnostic(`${f.name}: ${JSON.stringify(info)}`);
        assert.equal(info.format, container);
        const v = info.streams.find((st) => st.type === 'video');
        const au = info.streams.find((st) => st.type === 'audio');
        assert.ok(v && v.codec === codec && v.width > 0 && v.height > 0, `${name}: ${codec} video with a size`);
        // Cy joined late, so their camera has fewer seconds in the recording.
        const minFrames = name === 'Cy' ? 20 : 5 * info.duration;
        // The recording asks every camera for a keyframe as it starts: Ann's video starts with it.
        if (name === 'Ann') assert.ok(v.start < 1, `Ann's video starts ${v.start} s into the recording`);
        assert.ok(v.packets >= minFrames, `${name}: ${v.packets} video frames in ${info.duration} s (at least ${minFrames})`);
        assert.ok(au && au.codec === 'opus', `${name}: Opus audio`);
        const audio = decode(local[f.name]);
        const hz = dominantFrequency(audio, audio.length - 8192 - RATE);
        assert.ok(Math.abs(hz - TONES[name]) < 3, `${name}'s tone in their video file (${hz.toFixed(1)} Hz)`);
        // And the page's <video> plays it as served (type, range requests, the CSP).
        const shown = await c.evaluate((url) => new Promise((resolve) => {
          const v = document.createElement('video');
          v.muted = true;
          v.preload = 'auto';
          v.addEventListener('loadeddata', () => resolve({ ok: true, width: v.videoWidth, duration: v.duration }), { once: true });
          v.addEventListener('error', () => resolve({ ok: false, error: v.error && v.error.code }), { once: true });
          setTimeout(() => resolve({ ok: false, error: 'timeout' }), 5000);
          v.src = url;
        }), f.url);
        t.diagnostic(`${name}'s ${f.format} in a <video>: ${JSON.stringify(shown)}`);
        assert.ok(shown.ok && shown.width > 0, `the page plays ${f.name} (${JSON.stringify(shown)})`);
      }
    });

    await t.test('an owner deletes the recording for everyone; a member cannot', async () => {
      const rec = (await c.evaluate(() => window.parley.recording.recordings))[0];
      const href = rec.files[0].url;
      // Cy is a member: no Delete in the panel.
      await c.locator('[data-testid="recordings-open"]').click();
      const panelC = c.locator('[data-testid="recordings-panel"]');
      await panelC.locator('[data-testid="recording-item"]').first().waitFor();
      assert.equal(await panelC.locator('[data-testid="recording-delete"]').count(), 0, 'a member has no Delete');
      // Ann created the room: she is its owner.
      assert.equal(await a.evaluate(() => window.parley.owner), true);
      await a.locator('[data-testid="recordings-open"]').click();
      const panelA = a.locator('[data-testid="recordings-panel"]');
      const del = panelA.locator('[data-testid="recording-item"][data-state="ready"] [data-testid="recording-delete"]');
      await del.waitFor({ state: 'visible', timeout: 5000 });
      await del.click();
      const confirm = a.locator('[data-testid="confirm-dialog"]');
      await confirm.waitFor({ state: 'visible' });
      assert.match(await confirm.textContent(), /Delete this recording\?[\s\S]*for everyone in the room/);
      await a.locator('#confirm-ok').click();
      // Gone from both pages at once, and its files with it.
      await panelA.locator('[data-testid="recording-item"]').waitFor({ state: 'detached', timeout: 5000 });
      await panelC.locator('[data-testid="recording-item"]').waitFor({ state: 'detached', timeout: 5000 });
      assert.match(await panelC.locator('#recordings-empty').textContent(), /No recordings of this room yet/);
      assert.deepEqual(await c.evaluate(() => window.parley.recording.recordings), []);
      const r = await fetch(env.url + href);
      assert.equal(r.status, 404, 'its files are gone');
      for (const p of [a, c]) {
        await p.locator('[data-testid="recordings-panel"] [data-close]').first().click();
        await p.locator('[data-testid="recordings-panel"]').waitFor({ state: 'hidden' });
      }
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
