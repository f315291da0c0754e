// Camera background effects (web/effects.js), two pages in a browser whose fake camera plays ffmpeg's
// testsrc2 (made here: detail all over the frame): Ann picks Blur on the pre-join check (the preview
// goes soft, the choice is remembered), joins, and Bo receives her camera blurred: decoded frames whose
// detail (high-frequency energy) is a fraction of the raw camera's. In the call, Devices → Background Off
// puts the raw camera back on the same transceiver (replaceTrack: the sender's track is the camera device
// again; Bo's frames sharp again), Replace puts the built-in backdrop behind her (Bo's frames flat and
// blue). The cost is measured and printed: in the page, ms of compositing per frame and of segmentation
// per model run (mean / p95), the share of the main thread taken, the frame rate made and sent; and the
// CPU time of the whole browser (all its processes, from /proc), with the effect on and off.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { CHROMIUM, chromiumArgs, createRoom, clickJoin, find, inbound, passPrejoin, setup, sleep, tempDir, toneWav, waitFor, waitInRoom, withReport } from '../lib/harness.js';

const ROOM = 'fx';
const MEASURE_MS = 6000;

/**
 * Detail and colour of what `selector`'s <video> shows, scaled to 320 px wide: {detail: high-frequency
 * energy, the mean squared luma difference between neighbouring pixels (a blur spreads an edge over many
 * pixels: the same total step, far less energy), r, g, b: mean colour, w, h: the video's size}; null
 * before a frame.
 */
function frameLook(page, selector) {
  return page.evaluate((sel) => {
    const v = document.querySelector(sel);
    if (!v || !v.videoWidth) return null;
    const w = 320;
    const h = Math.round((w * v.videoHeight) / v.videoWidth);
    const c = new OffscreenCanvas(w, h);
    const ctx = c.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(v, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data;
    const luma = new Float32Array(w * h);
    let r = 0;
    let g = 0;
    let b = 0;
    for (let i = 0; i < w * h; i++) {
      r += d[4 * i];
      g += d[4 * i + 1];
      b += d[4 * i + 2];
      luma[i] = 0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2];
    }
    let sum = 0;
    let n = 0;
    for (let y = 0; y < h - 1; y++) {
      for (let x = 0; x < w - 1; x++) {
        const i = y * w + x;
        sum += (luma[i + 1] - luma[i]) ** 2 + (luma[i + w] - luma[i]) ** 2;
        n += 2;
      }
    }
    const px = w * h;
    return { detail: Math.round((sum / n) * 1000) / 1000, r: Math.round(r / px), g: Math.round(g / px), b: Math.round(b / px), w: v.videoWidth, h: v.videoHeight };
  }, selector);
}

/** With PARLEY_E2E_SHOTS=/dir: saves what `selector`'s <video> shows as /dir/effects-<name>.png. */
async function shot(page, selector, name) {
  const dir = process.env.PARLEY_E2E_SHOTS;
  if (!dir) return;
  const url = await page.evaluate((sel) => {
    const v = document.querySelector(sel);
    const c = document.createElement('canvas');
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    c.getContext('2d').drawImage(v, 0, 0);
    return c.toDataURL('image/png');
  }, selector);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, `effects-${name}.png`), Buffer.from(url.split(',')[1], 'base64'));
}

/** The median detail of `count` looks 150 ms apart (one odd frame does not decide). */
async function detailOf(page, selector, count = 5) {
  const looks = [];
  for (let i = 0; i < count; i++) {
    const l = await frameLook(page, selector);
    if (l) looks.push(l);
    await sleep(150);
  }
  assert.ok(looks.length, `a frame in ${selector}`);
  looks.sort((a, b) => a.detail - b.detail);
  return looks[Math.floor(looks.length / 2)];
}

/** CPU seconds (user + system) of every process under this test process: the browser and its children. */
function browserCpuSeconds() {
  const parent = new Map();
  const ticks = new Map();
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(pid), Number(f[1]));
      ticks.set(Number(pid), Number(f[11]) + Number(f[12]));
    } catch {
      // exited meanwhile
    }
  }
  const under = (pid) => {
    for (let p = parent.get(pid); p; p = parent.get(p)) if (p === process.pid) return true;
    return false;
  };
  let total = 0;
  for (const [pid, t] of ticks) if (under(pid)) total += t;
  return total / 100; // USER_HZ is 100 on Linux
}

/**
 * The camera sender's track as Ann's page sends it: {camera: whether it is the camera device's own track
 * (its label, and its deviceId that of the camera in use), live}; null while it sends nothing.
 */
function sentCamera(page) {
  return page.evaluate(() => {
    // Nothing is shared in this test: the one video sender with a track is the camera's.
    const tx = window.parley.pc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === 'video');
    const track = tx && tx.sender.track;
    if (!track) return null;
    const cameraId = window.parley.devicesInUse().videoinput;
    return { camera: !!track.label && !!cameraId && track.getSettings().deviceId === cameraId, live: track.readyState === 'live' };
  });
}

/** Frames Ann's camera sender encoded so far (outbound-rtp of the camera's m-line). */
function framesSent(page) {
  return page.evaluate(async () => {
    const tx = window.parley.pc.getTransceivers().find((t) => t.sender.track && t.sender.track.kind === 'video');
    let frames = 0;
    if (!tx) return 0;
    (await tx.sender.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp') frames += s.framesEncoded || 0;
    });
    return frames;
  });
}

/** Over MEASURE_MS: the page's effect figures, the frame rate sent and the browser's CPU use (% of one core). */
async function measure(page) {
  const cpu0 = browserCpuSeconds();
  const f0 = await framesSent(page);
  const t0 = Date.now();
  await sleep(MEASURE_MS);
  const cpu1 = browserCpuSeconds();
  const f1 = await framesSent(page);
  const secs = (Date.now() - t0) / 1000;
  const fx = await page.evaluate(() => import('/effects.js').then((m) => m.effectStats()));
  return { fx, sentFps: Math.round(((f1 - f0) / secs) * 10) / 10, cpuPct: Math.round(((cpu1 - cpu0) / secs) * 1000) / 10 };
}

function setEffectInSettings(page, mode) {
  return (async () => {
    await page.locator('[data-testid="settings-open"]').click();
    await page.locator('[data-testid="settings-effect"]').selectOption(mode);
    await waitFor(() => page.locator('[data-testid="settings-effect"]').isEnabled(), { what: 'the effect applied' });
    await page.locator('[data-testid="settings-done"]').click();
  })();
}

/**
 * A browser whose fake camera plays ffmpeg's testsrc2 (640×360, 20 fps: colour, text and gradients all
 * over the frame). Chromium's own fake camera is one flat colour with a shape in the middle, which the model
 * may well take for a person: then nothing is background, and a blur has nothing to show.
 */
async function browserWithPattern(t) {
  const dir = tempDir('parley-e2e-fx-');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const clip = path.join(dir, 'pattern.mjpeg');
  const r = spawnSync('ffmpeg', ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=20', '-t', '6', '-q:v', '4', clip], { encoding: 'utf8' });
  if (r.status !== 0 || !fs.existsSync(clip)) throw new Error(`ffmpeg could not make the camera clip (apt-get install ffmpeg): ${r.error || r.stderr}`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...chromiumArgs(toneWav()), `--use-file-for-fake-video-capture=${clip}`],
    timeout: 30_000,
  });
  t.after(() => browser.close().catch(() => {}));
  return browser;
}

test('background blur / replace: the pre-join choice, what the others receive, off again, the cost', { timeout: 150_000 }, async (t) => {
  const env = await setup(t);
  const browser = await browserWithPattern(t);
  await withReport(env, async () => {
    // Bo's own camera is not needed: off, to leave the two cores to Ann's effect.
    const [a, b] = await Promise.all([env.client('Ann', { browser }), env.client('Bo', { browser, state: { camera_off: true } })]);

    // The pre-join check: the raw preview first, then Blur.
    await createRoom(a, ROOM);
    await waitFor(() => a.evaluate(() => window.parley.prejoin.open && window.parley.prejoin.camera), { what: "Ann's check with the camera on" });
    assert.equal(await a.locator('[data-testid="prejoin-effect"]').inputValue(), 'off', 'no effect by default');
    await waitFor(() => frameLook(a, '[data-testid="prejoin-video"]').then((l) => l && l.detail > 0), { what: 'the raw preview' });
    const rawPreview = await detailOf(a, '[data-testid="prejoin-video"]');
    await a.locator('[data-testid="prejoin-effect"]').selectOption('blur');
    assert.equal(await a.evaluate(() => localStorage.getItem('parley.effect')), 'blur', 'the choice is remembered');
    const tModel = Date.now();
    await waitFor(() => a.evaluate(() => import('/effects.js').then((m) => m.effectStatus().state === 'on' && m.effectStats().maskFps > 0)), { timeout: 30_000, what: 'the model loaded and making masks' });
    const modelLoadMs = Date.now() - tModel;
    const blurredPreview = await detailOf(a, '[data-testid="prejoin-video"]');
    t.diagnostic(`preview detail raw ${rawPreview.detail}, blurred ${blurredPreview.detail}; model ready after ${modelLoadMs} ms`);
    assert.ok(blurredPreview.detail < rawPreview.detail * 0.5, `the preview is blurred (detail ${rawPreview.detail} -> ${blurredPreview.detail})`);
    assert.equal(await a.evaluate(() => window.parley.prejoin.effect), 'blur');
    await passPrejoin(a, ROOM);
    const idA = await waitInRoom(a, ROOM);

    await clickJoin(b, ROOM);
    await waitInRoom(b, ROOM);

    // Ann sends the processed track (a canvas track: no camera device), and Bo decodes it.
    const sentBlur = await waitFor(() => sentCamera(a), { what: "Ann's camera sender has a track" });
    assert.deepEqual(sentBlur, { camera: false, live: true }, 'the camera transceiver carries the processed track');
    await waitFor(async () => (find(await inbound(b), idA, 'video') || { frames: 0 }).frames > 10, { timeout: 20_000, what: "Bo decoding Ann's video" });
    const tileA = `.tile[data-participant-id="${idA}"] .tile-video`;
    await waitFor(() => frameLook(b, tileA), { what: "Ann's tile playing at Bo" });
    const blurAtBo = await detailOf(b, tileA);
    await shot(b, tileA, 'blur-at-bo');
    const blurCost = await measure(a);

    // Devices → Background Off: the raw camera again, on the same transceiver.
    await setEffectInSettings(a, 'off');
    const sentRaw = await sentCamera(a);
    assert.deepEqual(sentRaw, { camera: true, live: true }, "the camera device's own track is sent again");
    assert.equal(await a.evaluate(() => localStorage.getItem('parley.effect')), null, 'Off is the default again: nothing kept');
    assert.equal(await a.evaluate(() => import('/effects.js').then((m) => m.effectStatus().state)), 'off', 'the processing stopped');
    const rawAtBo = await waitFor(async () => {
      const l = await detailOf(b, tileA, 3);
      return l.detail > blurAtBo.detail * 2 && l;
    }, { timeout: 10_000, what: `Bo's frames of Ann sharp again (blurred detail ${blurAtBo.detail})` });
    await shot(b, tileA, 'off-at-bo');
    t.diagnostic(`at Bo: detail with blur ${blurAtBo.detail} (${blurAtBo.w}x${blurAtBo.h}), off ${rawAtBo.detail} (${rawAtBo.w}x${rawAtBo.h})`);
    const offCost = await measure(a);

    // Replace: the built-in backdrop (a dark blue gradient) behind her.
    await setEffectInSettings(a, 'replace');
    assert.equal(await a.evaluate(() => localStorage.getItem('parley.effect')), 'replace');
    assert.deepEqual(await sentCamera(a), { camera: false, live: true }, 'the processed track is sent again');
    const replaced = await waitFor(async () => {
      const l = await detailOf(b, tileA, 3);
      return l.detail < rawAtBo.detail * 0.5 && l.b > l.r + 20 && l;
    }, { timeout: 20_000, what: "Bo's frames of Ann showing the backdrop" });
    await shot(b, tileA, 'replace-at-bo');
    t.diagnostic(`at Bo with Replace: detail ${replaced.detail}, mean colour rgb(${replaced.r}, ${replaced.g}, ${replaced.b})`);
    const replaceCost = await measure(a);

    const line = (name, m) => `${name.padEnd(7)} compositing ${m.fx.meanMs} ms mean / ${m.fx.p95Ms} ms p95 per frame, model ${m.fx.modelMeanMs} / ${m.fx.modelP95Ms} ms per run at ${m.fx.maskFps} masks/s, main thread ${m.fx.busyPct} % busy, made ${m.fx.fps} fps, sent ${m.sentFps} fps, browser CPU ${m.cpuPct} % of a core`;
    for (const l of [line('blur', blurCost), line('replace', replaceCost), line('off', offCost)]) {
      t.diagnostic(l);
      console.log(`[e2e] effect cost: ${l}`);
    }
    assert.ok(blurCost.fx.frames > 0 && blurCost.fx.fps > 0, 'frames were made with blur on');
    assert.ok(offCost.sentFps > 0 && blurCost.sentFps > 0, 'video was sent in both cases');
  });
});
