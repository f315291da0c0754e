// The connection to the server drops mid-call. The pages keep the call on screen under "Reconnecting…"
// and come back into the room by themselves: after a network blip as the same participants (the resume
// token: docs/protocol.md, `join`), after a server restart on the same data dir as new ones in the same
// room. No click either way.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { clickJoin, createRoom, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

const speaking = { mic_muted: false, deafened: false, camera_off: true };

/** Ann and Bo in `room`, hearing each other. Their ids. */
async function inCall(env, room, { bo: boState = speaking } = {}) {
  const ann = await env.client('Ann', { state: { ...speaking, camera_off: false } });
  await createRoom(ann, room);
  const annId = await waitInRoom(ann, room);
  const bo = await env.client('Bo', { state: boState });
  await clickJoin(bo, room);
  const boId = await waitInRoom(bo, room);
  await hearEachOther(ann, annId, bo, boId, 'before');
  return { ann, bo, annId, boId };
}

async function hearEachOther(ann, annId, bo, boId, when, timeout = 10_000) {
  const hears = (page, id) => page.evaluate((x) => window.parley.remoteLevel(x), id);
  await waitFor(async () => (await hears(ann, boId)) > 0.01, { what: `Ann hears Bo (${when})`, timeout });
  await waitFor(async () => (await hears(bo, annId)) > 0.01, { what: `Bo hears Ann (${when})`, timeout });
}

/** Who `page` lists in its room: id -> {name, camera_off, reconnecting}. */
function listed(page) {
  return page.evaluate(() => Object.fromEntries(window.parley.participants.map((p) => [p.id, { name: p.name, camera_off: !!p.camera_off, reconnecting: !!p.reconnecting }])));
}

test('a network blip: both pages stay in the call and come back as the same participants', { timeout: 90_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const { ann, bo, annId, boId } = await inCall(env, 'blip');
    // Every TCP connection to the server is reset (the browser's sockets die without a close frame, as
    // when a phone changes networks). Needs root and the kernel's sock_destroy, as CI has.
    try {
      execFileSync('ss', ['-K', 'dst', '127.0.0.1', 'dport', '=', String(env.server.ports.http)], { stdio: 'pipe' });
    } catch (err) {
      t.skip(`ss -K could not reset the connections: ${err.message}`);
      return;
    }
    const dropped = Date.now();
    // Bo keeps Ann listed while she comes back (never a leave and a join): watched every 50 ms.
    const seen = [];
    const watch = setInterval(() => {
      listed(bo).then((l) => seen.push(l[annId] || null)).catch(() => {});
    }, 50);
    try {
      for (const [page, who] of [[ann, 'Ann'], [bo, 'Bo']]) {
        await waitFor(() => page.evaluate(() => window.parley.reconnects.length === 1 && window.parley.room !== null), {
          what: `${who} is back in the room`,
          timeout: 15_000,
        });
        const [back] = await page.evaluate(() => window.parley.reconnects);
        assert.equal(back.resumed, true, `${who} came back as the same participant`);
      }
      assert.equal(await ann.evaluate(() => window.parley.me), annId, "Ann's id is the same");
      assert.equal(await bo.evaluate(() => window.parley.me), boId, "Bo's id is the same");
      await hearEachOther(ann, annId, bo, boId, 'after the blip');
      console.log(`network blip: back and hearing each other ${((Date.now() - dropped) / 1000).toFixed(1)} s after the reset`);
    } finally {
      clearInterval(watch);
    }
    assert.ok(seen.length >= 5, `Bo's list was watched (${seen.length} looks)`);
    assert.ok(seen.every((p) => p && p.name === 'Ann'), `Bo listed Ann throughout: ${JSON.stringify(seen.filter((p) => !p || p.name !== 'Ann'))}`);
    const roster = await listed(bo);
    assert.equal(Object.keys(roster).length, 1, JSON.stringify(roster));
    assert.equal(roster[annId].reconnecting, false);
    assert.equal(await bo.locator('[data-testid="toast"][data-code="disconnected"]').count(), 0, 'no "disconnected" toast');
  });
});

test('the media connection alone is lost: the page comes back by itself as the same participant', { timeout: 90_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const { ann, bo, annId, boId } = await inCall(env, 'media');
    // Ann's peer connection goes (its DTLS says goodbye; the signalling socket stays up): the server
    // says media_lost and keeps her place; the page makes a new connection that takes the old one over.
    const lost = Date.now();
    await ann.evaluate(() => window.parley.pc.close());
    await waitFor(() => ann.evaluate(() => window.parley.reconnects.length === 1 && window.parley.room === 'media' && window.parley.pc !== null), {
      what: 'Ann is back in the room with a new media connection',
      timeout: 15_000,
    });
    const [back] = await ann.evaluate(() => window.parley.reconnects);
    assert.equal(back.resumed, true, 'Ann came back as the same participant');
    assert.equal(await ann.evaluate(() => window.parley.me), annId, "Ann's id is the same");
    await hearEachOther(ann, annId, bo, boId, 'after the media connection was lost');
    console.log(`media lost: back and hearing each other ${((Date.now() - lost) / 1000).toFixed(1)} s later`);
    const roster = await listed(bo);
    assert.deepEqual(Object.keys(roster), [String(annId)], 'Bo lists Ann once');
    assert.equal(roster[annId].reconnecting, false);
    assert.equal(await ann.locator('[data-testid="toast"][data-code="media_lost"]').count(), 0, 'no media_lost toast');
  });
});

test('the server restarts mid-call: both pages show Reconnecting… and are back in the room, hearing each other, within 10 s', { timeout: 90_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const { ann, bo } = await inCall(env, 'restart', { bo: { ...speaking, deafened: false } });
    const stopped = Date.now();
    // Stopped, down 2 s, started again on the same ports and data dir (the room is still there).
    const restarted = env.restartServer({ downMs: 2000 });
    // The call stays on screen under the overlay while the server is away.
    for (const [page, who] of [[ann, 'Ann'], [bo, 'Bo']]) {
      await page.locator('[data-testid="reconnecting"]').waitFor({ state: 'visible', timeout: 5_000 });
      assert.equal(await page.evaluate(() => window.parley.reconnecting), true, `${who} is reconnecting`);
      assert.equal(await page.evaluate(() => document.getElementById('app').dataset.view), 'room', `${who} stays on the call's page`);
      assert.ok((await page.locator('.tile').count()) >= 2, `${who}'s tiles stay`);
    }
    await restarted;
    for (const [page, who] of [[ann, 'Ann'], [bo, 'Bo']]) {
      await waitFor(() => page.evaluate(() => window.parley.reconnects.length === 1 && window.parley.room === 'restart'), {
        what: `${who} is back in the room`,
        timeout: 10_000,
      });
      await page.locator('[data-testid="reconnecting"]').waitFor({ state: 'hidden', timeout: 2_000 });
    }
    const annId = await ann.evaluate(() => window.parley.me);
    const boId = await bo.evaluate(() => window.parley.me);
    await hearEachOther(ann, annId, bo, boId, 'after the restart');
    const took = (Date.now() - stopped) / 1000;
    console.log(`server restart: back and hearing each other ${took.toFixed(1)} s after the server stopped (2 s of it down)`);
    assert.ok(took < 12, `back within 10 s of the server answering again (${took.toFixed(1)} s from the stop)`);
    // With their states: Ann's camera on, Bo's off, as each had it.
    const fromBo = await listed(bo);
    const fromAnn = await listed(ann);
    assert.equal(fromBo[annId] && fromBo[annId].camera_off, false, JSON.stringify(fromBo));
    assert.equal(fromAnn[boId] && fromAnn[boId].camera_off, true, JSON.stringify(fromAnn));
    // A new server knows no old tokens: they came back as new participants of the same room.
    assert.equal((await ann.evaluate(() => window.parley.reconnects))[0].resumed, false);
  });
});

test('a leave on purpose is quiet and needs no reconnecting', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const a = await env.client('Ann');
    await createRoom(a, 'quiet');
    await waitInRoom(a, 'quiet');
    await a.locator('[data-testid="leave"]').click();
    await waitFor(() => a.evaluate(() => window.parley.room === null), { what: 'left' });
    // The server hears `leave` before the media goes away.
    await sleep(300);
    assert.equal(await a.locator('[data-testid="toast"][data-code="internal"], [data-testid="toast"][data-code="not_in_room"]').count(), 0,
      'no "media connection lost" / not_in_room after leaving');
    assert.equal(await a.evaluate(() => window.parley.reconnecting), false);
    await clickJoin(a, 'quiet');
    await waitInRoom(a, 'quiet');
  });
});
