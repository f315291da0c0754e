// Lobby and room-switching behaviour: server errors reach the UI, one room at a time, remembered name.
// Room links (web/roomlink.js): /r/<room> lands in the room, "Copy link", the "Invite others" card.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, roomItem, setup, waitFor, waitInRoom, withReport } from '../lib/harness.js';
import { modulesOfPath, qrMatrix } from '../../web/roomlink.js';

test('joining a second room while in one shows already_in_room and offers to leave', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const a = await env.client('Ann');
    await createRoom(a, 'one');
    await waitInRoom(a, 'one');
    // In a call the room list is collapsed (desktop too), focus is on the mic; the top bar's Rooms opens it.
    assert.equal(await a.locator('#lobby').isVisible(), false, 'the room list is collapsed in a room');
    assert.equal(await a.evaluate(() => document.activeElement && document.activeElement.id), 'mic-toggle', 'focus on the mic button');
    await a.locator('[data-testid="rooms-toggle"]').click();
    await a.locator('#lobby').waitFor({ state: 'visible' });
    // Creating while in a room only creates it.
    await createRoom(a, 'two');
    await roomItem(a, 'two').waitFor();
    assert.equal(await a.evaluate(() => window.parley.room), 'one');

    // The UI offers no Join while in a room: it leads to "Leave current room" instead.
    assert.equal(await roomItem(a, 'two').locator('[data-testid="join-room"]').isVisible(), false, 'no Join button while in a room');
    assert.equal(await a.locator('[data-testid="lobby-leave"]').isVisible(), true, 'Leave current room is offered');

    // A join sent anyway (on the client's own socket) is refused, and the refusal is shown.
    await a.evaluate(() => window.parley.send({ type: 'join', id: 9001, room: 'two', name: 'Ann' }));
    const alert = a.locator('[role="alert"][data-code="already_in_room"]');
    await alert.waitFor({ state: 'visible', timeout: 5000 });
    const text = (await alert.locator('.toast-msg').textContent()).trim();
    assert.ok(text.length > 0, 'the server message is shown');
    t.diagnostic(`already_in_room message: ${text}`);
    assert.equal(await alert.getByRole('button', { name: 'Leave current room' }).isVisible(), true);
    assert.equal(await a.evaluate(() => window.parley.room), 'one', 'still in the first room');

    // The banner is dismissable.
    await alert.locator('[data-testid="toast-dismiss"]').click();
    await alert.waitFor({ state: 'detached', timeout: 2000 });

    // Leaving brings the Join buttons back, and then the other room can be joined.
    await a.locator('[data-testid="lobby-leave"]').click();
    await waitFor(() => a.evaluate(() => window.parley.room === null), { what: 'A left the room' });
    await clickJoin(a, 'two');
    await waitInRoom(a, 'two');
    await a.locator('[data-testid="rooms-toggle"]').click(); // the list is collapsed in a call
    assert.equal(await roomItem(a, 'two').locator('.here').isVisible(), true, 'the list marks the current room');
  });
});

test('lobby: server errors for create, live counts, remembered name and room', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const [a, b] = await Promise.all([env.client('Ann'), env.client('Bo')]);

    // Invalid name: the server's message appears once, under the form (an alert there), not as a toast too.
    await createRoom(a, 'bad/name');
    const invalid = a.locator('[role="alert"][data-code="invalid_room_name"]');
    await invalid.waitFor({ state: 'visible', timeout: 5000 });
    assert.equal(await invalid.getAttribute('data-testid'), 'create-room-error', 'the alert is the form error');
    assert.ok((await invalid.textContent()).trim().length > 0, 'the server message is shown');
    assert.equal(await a.locator('[data-testid="toast"]').count(), 0, 'no toast repeats the form error');

    // B makes a room; A's list shows it, then the count changes live when B joins (B auto-joins it).
    await createRoom(b, 'live');
    await waitInRoom(b, 'live');
    await waitFor(async () => (await roomItem(a, 'live').locator('.count').textContent()) === '1', {
      what: "A's list shows 1 person in live",
    });

    // A second create of the same name is refused with room_exists.
    await createRoom(a, 'live');
    await a.locator('[role="alert"][data-code="room_exists"]').waitFor({ state: 'visible', timeout: 5000 });
    assert.equal(await a.locator('[data-testid="toast"]').count(), 0, 'no toast repeats room_exists');
    assert.equal(await a.evaluate(() => window.parley.room), null, 'A did not join anything');

    // B leaves: the count drops at A without a reload.
    await b.locator('[data-testid="leave"]').click();
    await waitFor(async () => (await roomItem(a, 'live').locator('.count').textContent()) === '0', {
      what: "A's list shows 0 people in live",
    });

    // The name and the last room are remembered: a reload skips the name screen.
    await b.reload();
    await b.locator('[data-testid="create-room-input"]').waitFor({ state: 'visible' });
    assert.equal(await b.locator('[data-testid="name-input"]').isVisible(), false, 'name screen skipped');
    assert.equal((await b.locator('#me-name').textContent()).trim(), 'Bo');
    await roomItem(b, 'live').locator('.last').waitFor({ state: 'visible' });
    // ... and can be changed.
    await b.locator('[data-testid="change-name"]').click();
    assert.equal(await b.locator('[data-testid="name-input"]').inputValue(), 'Bo');
    await b.locator('[data-testid="name-input"]').fill('Bea');
    await b.locator('[data-testid="name-submit"]').click();
    assert.equal((await b.locator('#me-name').textContent()).trim(), 'Bea');

    // Names are text, never markup.
    const evil = '<img src=x onerror=alert(1)>';
    await b.locator('[data-testid="change-name"]').click();
    await b.locator('[data-testid="name-input"]').fill(evil);
    await b.locator('[data-testid="name-submit"]').click();
    await clickJoin(b, 'live');
    await waitInRoom(b, 'live');
    await clickJoin(a, 'live');
    const idB = await b.evaluate(() => window.parley.me);
    await waitInRoom(a, 'live');
    const nameAtA = a.locator(`.tile[data-participant-id="${idB}"] .tile-name`);
    await waitFor(async () => (await nameAtA.textContent()) === evil, { what: 'the name shown as text at A' });
    assert.equal(await a.locator('.tile img').count(), 0, 'no element was made from the name');
  });
});

/** Keeps what the page copies (window.__copied) instead of touching the real clipboard. */
function spyClipboard() {
  window.__copied = [];
  navigator.clipboard.writeText = async (text) => {
    window.__copied.push(String(text));
  };
}

test('room links: /r/<room> after the name and the check, Copy link, the invite card and its QR code', { timeout: 90_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const CAMERA_OFF = { mic_muted: false, deafened: false, camera_off: true };
    const a = await env.client('Ann', { state: CAMERA_OFF, initScript: spyClipboard });
    await createRoom(a, 'meet up');
    await waitInRoom(a, 'meet up');
    const link = `${env.url}/r/meet%20up`;
    assert.equal(await a.evaluate(() => location.pathname), '/r/meet%20up', 'the address shows the room');

    // Alone: the card with the link and its QR code.
    const card = a.locator('[data-testid="invite-card"]');
    await card.waitFor({ state: 'visible' });
    assert.equal(await a.locator('[data-testid="invite-card-link"]').inputValue(), link);
    const qr = await a.evaluate(() => {
      const svg = document.querySelector('[data-testid="invite-qr"] svg');
      const box = svg.getBoundingClientRect();
      return { text: svg.dataset.text, d: svg.querySelector('path').getAttribute('d'), width: box.width, height: box.height };
    });
    assert.equal(qr.text, link);
    assert.ok(qr.width >= 80 && Math.abs(qr.width - qr.height) < 1, `a square code big enough to scan (${qr.width}×${qr.height})`);
    const m = qrMatrix(link);
    const dark = new Set();
    for (let r = 0; r < m.size; r++) for (let c = 0; c < m.size; c++) if (m.dark(r, c)) dark.add(`${r},${c}`);
    assert.deepEqual([...modulesOfPath(qr.d)].sort(), [...dark].sort(), 'the page draws the code of the link, module for module');

    // The top bar's Copy link: the link on the clipboard, a toast that leaves the button visible.
    const button = a.getByRole('button', { name: 'Copy link', exact: true });
    await button.click();
    await waitFor(() => a.evaluate(() => window.__copied.length === 1), { what: 'copied once' });
    assert.deepEqual(await a.evaluate(() => window.__copied), [link]);
    const toast = a.locator('[data-testid="toast"][data-code="room_link"]');
    await toast.waitFor({ state: 'visible' });
    assert.equal((await toast.locator('.toast-title').textContent()).trim(), 'Link copied');
    const [tb, bb] = [await toast.boundingBox(), await button.boundingBox()];
    const overlap = tb.x < bb.x + bb.width && bb.x < tb.x + tb.width && tb.y < bb.y + bb.height && bb.y < tb.y + tb.height;
    assert.equal(overlap, false, `the toast does not cover the button (toast ${JSON.stringify(tb)}, button ${JSON.stringify(bb)})`);
    assert.equal(await a.evaluate(() => {
      const r = document.querySelector('[data-testid="room-link"]').getBoundingClientRect();
      const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
      return !!top && !!top.closest('[data-testid="room-link"]');
    }), true, 'the button is still the topmost thing at its place');
    await a.locator('[data-testid="invite-card-copy"]').click();
    await waitFor(() => a.evaluate(() => window.__copied.length === 2), { what: 'copied from the card' });
    assert.equal(await a.evaluate(() => window.__copied[1]), link);

    // Bo, new here (no name yet), opens the link: the name, then the check, then the room.
    const b = await env.page('/r/meet%20up', { label: 'Bo', permissions: ['microphone', 'camera'] });
    await b.locator('[data-testid="name-input"]').waitFor({ state: 'visible' });
    assert.match(await b.locator('[data-testid="name-link"]').textContent(), /joining meet up/);
    await b.locator('[data-testid="name-input"]').fill('Bo');
    await b.locator('[data-testid="name-submit"]').click();
    await b.locator('[data-testid="prejoin"]').waitFor({ state: 'visible' });
    assert.equal((await b.locator('[data-testid="prejoin-room"]').textContent()).trim(), 'meet up');
    await b.locator('[data-testid="prejoin-camera"]').click(); // spares the CPU
    await b.locator('[data-testid="prejoin-join"]').click();
    const idB = await waitInRoom(b, 'meet up');
    assert.equal(await b.evaluate(() => location.pathname), '/r/meet%20up');
    await a.locator(`.tile[data-participant-id="${idB}"]`).waitFor({ state: 'visible' });

    // Not alone any more: no card, on either page. Bo leaves: Ann's card is back; Bo's address is /.
    await card.waitFor({ state: 'hidden' });
    assert.equal(await b.locator('[data-testid="invite-card"]').isVisible(), false, "no card for Bo: Ann is there");
    await b.locator('[data-testid="leave"]').click();
    await waitFor(() => b.evaluate(() => window.parley.room === null && location.pathname === '/'), { what: 'Bo out, at /' });
    await card.waitFor({ state: 'visible' });
    // Closed, the card stays away while Ann is in the room.
    await a.locator('[data-testid="invite-card-close"]').click();
    await card.waitFor({ state: 'hidden' });
  });
});
