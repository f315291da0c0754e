// Active speaker end to end: three people, each with its own fake microphone (a browser each), and a wall
// screen. Ann talks for the first 4 s after she joins, Bo is silent for 5 s after he joins and then talks,
// Cy never says anything (and is deafened, yet sees the meters move). Everyone's view, the wall screen and
// /api/status follow the server's active speaker; /metrics is valid Prometheus text.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, makeWav, setup, waitFor, waitInRoom, withReport } from '../lib/harness.js';

const ROOM = 'stage';

// Speech-like: a tone whose loudness swings four times a second (syllables), never a full pause.
const talkFirst = () => makeWav('talk-first-4s', ['synth', '4', 'sine', '300', 'vol', '0.6', 'tremolo', '4', '60', ':', 'synth', '26', 'sine', '300', 'vol', '0']);
const talkAfter5s = () => makeWav('talk-after-5s', ['synth', '5', 'sine', '250', 'vol', '0', ':', 'synth', '25', 'sine', '250', 'vol', '0.6', 'tremolo', '3', '60']);
const silence = () => makeWav('silence', ['synth', '30', 'sine', '300', 'vol', '0']);

/** Records in the page every change of `window.parley[prop]` with its time (Date.now(), one clock for all pages). */
function recordChanges(page, prop) {
  return page.evaluate((p) => {
    const log = [];
    window.__changes = window.__changes || {};
    window.__changes[p] = log;
    let last;
    setInterval(() => {
      const v = window.parley[p];
      if (v !== last) {
        last = v;
        log.push({ v, at: Date.now() });
      }
    }, 20);
  }, prop);
}
const changes = (page, prop) => page.evaluate((p) => window.__changes[p], prop);

/** Records when the page's own microphone first gets loud (its local Web Audio meter). */
function recordTalkStart(page) {
  return page.evaluate(() => {
    window.__talkStart = null;
    const timer = setInterval(() => {
      if (window.parley.localLevel() > 0.05) {
        window.__talkStart = Date.now();
        clearInterval(timer);
      }
    }, 20);
  });
}

/** Samples every tile's meter (0..1) and "speaking" ring in the page every 50 ms. */
function recordMeters(page) {
  return page.evaluate(() => {
    window.__meters = [];
    setInterval(() => {
      const m = {};
      for (const el of document.querySelectorAll('#tiles .tile')) {
        m[el.dataset.participantId] = { level: window.parley.meter(el.dataset.participantId), ring: el.classList.contains('speaking') };
      }
      window.__meters.push({ at: Date.now(), m });
    }, 50);
  });
}

/** The highest meter of participant `id` recorded in the page between `from` and `to`, and whether it rang. */
async function meterPeak(page, id, from = 0, to = Infinity) {
  const samples = await page.evaluate(() => window.__meters);
  let level = 0;
  let ring = false;
  for (const s of samples) {
    const v = s.m[String(id)];
    if (!v || s.at < from || s.at > to) continue;
    level = Math.max(level, v.level);
    ring = ring || v.ring;
  }
  return { level, ring, samples: samples.filter((s) => s.at >= from && s.at <= to).length };
}

async function getJson(url) {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url}: HTTP ${res.status}`);
  return res.json();
}

/** Prometheus text exposition: every sample line `name value`, with # HELP and # TYPE for each name. */
function parseMetrics(text) {
  const samples = new Map();
  const help = new Set();
  const type = new Map();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$/.exec(line))) {
      help.add(m[1]);
    } else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      type.set(m[1], m[2]);
    } else if (line.startsWith('#')) {
      continue;
    } else {
      m = /^([a-zA-Z_:][a-zA-Z0-9_:]*) (-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)$/.exec(line);
      assert.ok(m, `a Prometheus sample line "name value": ${JSON.stringify(line)}`);
      samples.set(m[1], Number(m[2]));
    }
  }
  for (const name of samples.keys()) {
    assert.ok(help.has(name), `# HELP for ${name}`);
    assert.ok(type.has(name), `# TYPE for ${name}`);
    if (type.get(name) === 'counter') assert.match(name, /_total$/, `counter ${name} ends in _total`);
  }
  return samples;
}

test('active speaker: views, wall screen, meters while deafened, /api/status and /metrics follow who talks', { timeout: 60_000 }, async (t) => {
  const env = await setup(t, { audioFile: silence() });
  await withReport(env, async () => {
    const [annBrowser, boBrowser] = await Promise.all([
      env.launchBrowser({ audioFile: talkFirst() }),
      env.launchBrowser({ audioFile: talkAfter5s() }),
    ]);
    const [ann, bo, cy] = await Promise.all([
      env.client('Ann', { browser: annBrowser }),
      env.client('Bo', { browser: boBrowser }),
      env.client('Cy'),
    ]);

    // Cy opens the room, deafens and turns her camera off; a wall screen (no devices) watches.
    await createRoom(cy, ROOM);
    const idC = await waitInRoom(cy, ROOM);
    await cy.locator('[data-testid="speaker-toggle"]').click();
    await cy.locator('[data-testid="camera-toggle"]').click();
    const wall = await env.page(`/viewer/${ROOM}`, {
      label: 'wall',
      initScript: () => {
        window.__deviceRequests = 0;
        const md = navigator.mediaDevices;
        if (md) md.getUserMedia = () => { window.__deviceRequests += 1; return Promise.reject(new DOMException('no', 'NotAllowedError')); };
      },
    });
    await waitFor(() => wall.evaluate(() => window.parley.room), { what: 'the wall screen joined' });
    await Promise.all([recordChanges(cy, 'activeSpeaker'), recordMeters(cy), recordChanges(wall, 'activeSpeaker'), recordChanges(wall, 'shown')]);
    // /api/status, polled all along: its active speaker must follow the same script.
    const statusSpeakers = [];
    const poll = setInterval(() => {
      fetch(`${env.url}/api/status`).then((r) => r.json()).then((st) => {
        const r = st.rooms.find((x) => x.name === ROOM);
        if (r && statusSpeakers.at(-1) !== r.active_speaker) statusSpeakers.push(r.active_speaker);
      }).catch(() => {});
    }, 100);
    t.after(() => clearInterval(poll));

    // Ann joins (and talks for 4 s), then Bo (silent for 5 s).
    await clickJoin(ann, ROOM);
    const idA = await waitInRoom(ann, ROOM);
    await Promise.all([recordTalkStart(ann), recordMeters(ann)]);
    await clickJoin(bo, ROOM);
    const idB = await waitInRoom(bo, ROOM);
    await Promise.all([recordTalkStart(bo), recordChanges(bo, 'activeSpeaker'), recordChanges(ann, 'activeSpeaker')]);

    // 1. Ann is the active speaker everywhere; the wall shows her. (Live checks only while she talks:
    //    the meters are recorded in the pages and checked afterwards.)
    for (const [name, page] of [['Cy', cy], ['Bo', bo], ['the wall', wall]]) {
      await waitFor(() => page.evaluate((a) => window.parley.activeSpeaker === a, idA), { timeout: 8000, what: `${name} sees Ann as the active speaker` });
    }
    const cyTile = (id, cls = '') => cy.locator(`.tile${cls}[data-participant-id="${id}"]`);
    await cyTile(idA, '.active-speaker').waitFor({ timeout: 3000 });
    assert.equal(await cy.evaluate(() => window.parley.viewMode), 'speaker', 'speaker view is the default');
    // Ann does not see herself large: speaker view shows one of the others.
    assert.ok([idB, idC].includes(await ann.evaluate(() => window.parley.featured)), 'Ann sees someone else large');
    // The wall shows only Ann, with her name (and gets her video).
    assert.equal(await wall.evaluate(() => window.parley.shown), idA, 'the wall shows Ann');
    assert.equal(await wall.locator('.tile:visible').count(), 1, 'the wall shows one person');
    assert.equal(await wall.locator('.tile:visible .tile-name').textContent(), 'Ann');
    await wall.locator(`.tile[data-participant-id="${idA}"].has-video`).waitFor({ state: 'attached', timeout: 8000 });
    assert.equal(await cy.evaluate(() => [...document.querySelectorAll('.tile-audio')].every((a) => a.muted)), true, 'Cy is deafened');

    // /api/status: everyone, with their flags; the wall as a viewer.
    const status = await getJson(`${env.url}/api/status`);
    const room = status.rooms.find((r) => r.name === ROOM);
    assert.ok(room, `/api/status lists ${ROOM}`);
    const byName = Object.fromEntries(room.participants.map((p) => [p.name, p]));
    assert.deepEqual(Object.keys(byName).sort(), ['Ann', 'Bo', 'Cy', 'Wall screen']);
    assert.equal(byName['Wall screen'].role, 'viewer');
    for (const n of ['Ann', 'Bo', 'Cy']) assert.equal(byName[n].role, 'member', `${n} is a member`);
    assert.deepEqual(
      Object.fromEntries(['Ann', 'Bo', 'Cy'].map((n) => [n, [byName[n].mic_muted, byName[n].deafened, byName[n].camera_off]])),
      { Ann: [false, false, false], Bo: [false, false, false], Cy: [false, true, true] },
      'flags (mic_muted, deafened, camera_off)',
    );
    assert.equal(await cy.locator('[data-testid="room-count"]').textContent(), '3 people · 1 viewer');

    // 2. Ann falls silent at 4 s, Bo starts at 5 s: Bo takes over everywhere.
    await waitFor(() => cy.evaluate((b) => window.parley.activeSpeaker === b, idB), { timeout: 15_000, what: 'Cy sees Bo as the active speaker' });
    for (const [name, page] of [['Ann', ann], ['the wall', wall]]) {
      await waitFor(() => page.evaluate((b) => window.parley.activeSpeaker === b, idB), { timeout: 3000, what: `${name} sees Bo as the active speaker` });
    }
    await cyTile(idB, '.active-speaker').waitFor({ timeout: 3000 });
    assert.equal(await ann.evaluate(() => window.parley.featured), idB, 'Ann sees Bo large');
    await waitFor(() => wall.evaluate((b) => window.parley.shown === b, idB), { timeout: 3000, what: 'the wall shows Bo' });
    await wall.locator(`.tile[data-participant-id="${idB}"].has-video`).waitFor({ timeout: 5000 });
    assert.equal(await wall.locator('.tile:visible .tile-name').textContent(), 'Bo');
    // ... and his picture is live (the video plays on, it is not a frozen frame).
    const videoTime = () => wall.evaluate((b) => {
      const v = document.querySelector(`.tile[data-participant-id="${b}"] video`);
      return v.paused ? -1 : v.currentTime;
    }, idB);
    const t0 = await videoTime();
    await waitFor(async () => (await videoTime()) > t0 + 0.3 && t0 >= 0, { timeout: 3000, what: "Bo's video plays on the wall" });
    await waitFor(() => cy.evaluate((b) => window.parley.meter(b) > 0.5, idB), { timeout: 3000, what: "Bo's meter moves at deafened Cy" });
    await waitFor(() => cy.evaluate((a) => window.parley.meter(a) < 0.1, idA), { timeout: 3000, what: "silent Ann's meter falls at Cy" });
    await cyTile(idB, '.speaking').waitFor({ timeout: 2000 });

    // The order everyone saw: Ann, then Bo; Cy never.
    const annTalk = await ann.evaluate(() => window.__talkStart);
    const boTalk = await bo.evaluate(() => window.__talkStart);
    assert.ok(annTalk && boTalk && boTalk > annTalk, `Ann's microphone got loud before Bo's (${annTalk}, ${boTalk})`);
    // Meters: deafened Cy saw Ann's meter rise and her tile ring while she talked (the server's levels),
    // and Bo's stay down until he talked; Ann's own meter (Web Audio) moved, silent Cy's never did.
    const annAtCy = await meterPeak(cy, idA, annTalk, annTalk + 3500);
    assert.ok(annAtCy.level > 0.5 && annAtCy.ring, `Ann's meter and ring at deafened Cy while she talked (${JSON.stringify(annAtCy)})`);
    const boBefore = await meterPeak(cy, idB, 0, boTalk - 200);
    assert.ok(boBefore.samples > 10 && boBefore.level < 0.1, `silent Bo's meter at Cy before he talked (${JSON.stringify(boBefore)})`);
    const annOwn = await meterPeak(ann, idA, annTalk, annTalk + 3500);
    assert.ok(annOwn.level > 0.5, `Ann's own meter while she talked (${JSON.stringify(annOwn)})`);
    const cyOwn = await meterPeak(cy, idC);
    assert.ok(cyOwn.samples > 50 && cyOwn.level < 0.1 && !cyOwn.ring, `silent Cy's own meter (${JSON.stringify(cyOwn)})`);

    const delays = {};
    for (const [name, page] of [['Cy', cy], ['the wall', wall], ['Ann', ann], ['Bo', bo]]) {
      const seen = (await changes(page, 'activeSpeaker')).filter((c) => c.v != null);
      const ids = seen.map((c) => c.v).filter((v, i, a) => i === 0 || a[i - 1] !== v);
      assert.ok(!ids.includes(idC), `${name} never saw Cy as the speaker (${JSON.stringify(ids)})`);
      // Bo may have joined before Ann was chosen; everyone else was there all along.
      const expected = name === 'Bo' && ids[0] === idB ? [idB] : [idA, idB];
      assert.deepEqual(ids, expected, `${name} saw Ann, then Bo`);
      const toBo = seen.find((c) => c.v === idB);
      delays[name] = toBo.at - boTalk;
    }
    // Before anyone spoke the wall showed the only person there (Cy); then Ann, then Bo.
    const wallShown = [...new Set((await changes(wall, 'shown')).map((c) => c.v).filter((v) => v != null))];
    assert.deepEqual(wallShown[0] === idC ? wallShown.slice(1) : wallShown, [idA, idB], `the wall showed Ann, then Bo (${wallShown})`);
    t.diagnostic(`Bo talks -> Bo is the active speaker: ${JSON.stringify(delays)} ms`);
    console.log(`[e2e] speaker switch delay (Bo's mic loud -> active_speaker seen): ${JSON.stringify(delays)} ms`);
    for (const [name, d] of Object.entries(delays)) assert.ok(d > 0 && d < 2500, `${name}: switch ${d} ms after Bo started`);
    assert.equal(await wall.evaluate(() => window.__deviceRequests), 0, 'the wall never asked for a camera or microphone');

    // 3. Bo mutes: /api/status says so and nobody is the active speaker (the wall keeps showing Bo).
    await bo.locator('[data-testid="mic-toggle"]').click();
    await waitFor(async () => {
      const r = (await getJson(`${env.url}/api/status`)).rooms.find((x) => x.name === ROOM);
      return r.participants.find((p) => p.name === 'Bo').mic_muted === true && r.active_speaker === null;
    }, { timeout: 5000, what: '/api/status: Bo muted, no active speaker' });
    await waitFor(() => cy.evaluate(() => window.parley.activeSpeaker === null), { timeout: 3000, what: 'Cy: no active speaker' });
    const statusScript = () => (statusSpeakers[0] === null ? statusSpeakers.slice(1) : statusSpeakers);
    await waitFor(() => statusScript().length >= 3, { timeout: 2000, what: '/api/status: three speaker changes' });
    assert.deepEqual(statusScript(), [idA, idB, null], `/api/status: Ann, then Bo, then nobody (${JSON.stringify(statusSpeakers)})`);
    await cy.locator(`.tile[data-participant-id="${idB}"] [data-testid="icon-mic-muted"]`).waitFor({ state: 'visible', timeout: 3000 });
    await waitFor(() => cy.evaluate((b) => window.parley.meter(b) === 0, idB), { timeout: 3000, what: "muted Bo's meter is empty" });
    assert.equal(await wall.evaluate(() => window.parley.shown), idB, 'the wall still shows the last speaker');

    // 4. /metrics: valid Prometheus text that agrees with /api/status.
    const res = await fetch(`${env.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/plain/);
    const metrics = parseMetrics(await res.text());
    const all = (await getJson(`${env.url}/api/status`)).rooms;
    const people = all.flatMap((r) => r.participants);
    const viewers = people.filter((p) => p.role === 'viewer').length;
    for (const name of ['parley_rooms', 'parley_participants', 'parley_viewers', 'parley_tracks', 'parley_forwarded_packets_total',
      'parley_forwarded_bytes_total', 'parley_direct_srtp_packets_total', 'parley_dropped_muted_packets_total', 'parley_active_speaker_switches_total']) {
      assert.ok(metrics.has(name), `/metrics has ${name}`);
    }
    assert.equal(metrics.get('parley_rooms'), all.length, 'parley_rooms');
    assert.equal(metrics.get('parley_participants'), people.length, `parley_participants (members ${people.length - viewers} + viewers ${viewers})`);
    assert.equal(metrics.get('parley_viewers'), 1, 'parley_viewers');
    assert.ok(metrics.get('parley_active_speaker_switches_total') >= 3, 'switches: Ann, Bo, nobody');
    assert.ok(metrics.get('parley_forwarded_packets_total') > 0, 'packets forwarded');
    // Chromium's audio arrived over parley's own SRTP path (the meters and levels above prove it decrypted).
    assert.ok(metrics.get('parley_direct_srtp_packets_total') > 0, 'audio forwarded on the direct SRTP path');
    // ...and was opened there too (the speaker switches above came from its audio levels).
    assert.ok(metrics.get('parley_direct_received_packets_total') > 100, 'audio received on the direct SRTP path');
    assert.equal(metrics.get('parley_direct_dropped_packets_total'), 0, 'nothing dropped as replayed or forged');
  });
});
