// Room chat: messages both ways within 200 ms with name and time, unread badge, plain text only (no markup,
// no script), links, /me and /leave, joins and leaves as system lines, history for a late joiner, nothing
// from other rooms.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, find, inbound, setup, waitFor, waitInRoom, withReport } from '../lib/harness.js';

const input = (page) => page.locator('[data-testid="chat-input"]');

async function say(page, text) {
  await input(page).fill(text);
  await input(page).press('Enter');
}

const lines = (page) => page.evaluate(() => window.parley.chat);
const texts = async (page) => (await lines(page)).filter((l) => l.kind !== 'system').map((l) => l.text);
const systemLines = async (page) => (await lines(page)).filter((l) => l.kind === 'system').map((l) => l.text);

/** Records in the page when each chat line (by its shown text) first appears (Date.now()). */
function watchArrivals(page) {
  return page.evaluate(() => {
    window.__arrivals = {};
    new MutationObserver((records) => {
      const now = Date.now();
      for (const r of records) {
        for (const n of r.addedNodes) {
          const text = n.querySelector && n.querySelector('.chat-text');
          if (text && !(text.textContent in window.__arrivals)) window.__arrivals[text.textContent] = now;
        }
      }
    }).observe(document.getElementById('chat-list'), { childList: true });
  });
}

/** Types `text` and presses Enter inside the page; returns the time of the key press (Date.now()). */
function sendTimed(page, text) {
  return page.evaluate((t) => {
    const el = document.getElementById('chat-input');
    el.value = t;
    el.dispatchEvent(new Event('input', { bubbles: true }));
    const at = Date.now();
    el.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
    return at;
  }, text);
}

const XSS = ['<script>window.__xss=1</script>', '<img src=x onerror="window.__xss=1">'];

/** Nothing in the page was made from chat text: no element, no script run, no dialog. */
async function assertInert(page, name, dialogs) {
  assert.equal(await page.locator('#chat-list script, #chat-list img, #chat-list b').count(), 0, `${name}: no element made from chat text`);
  assert.equal(await page.evaluate(() => typeof window.__xss), 'undefined', `${name}: no script from chat text ran`);
  assert.deepEqual(dialogs, [], `${name}: no dialog`);
}

test('chat: both ways in < 200 ms, names and times, unread, text never markup, links, /me, system lines, history, /leave', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    // No cameras: three pages on two cores, and this test is about text.
    const state = { camera_off: true };
    const [a, b, c] = await Promise.all([env.client('Ann', { state }), env.client('Bo', { state }), env.client('Cy', { state })]);
    const dialogs = { a: [], b: [], c: [] };
    for (const [k, p] of Object.entries({ a, b, c })) {
      p.on('dialog', (d) => {
        dialogs[k].push(d.message());
        d.dismiss().catch(() => {});
      });
    }
    await createRoom(a, 'talk');
    const idA = await waitInRoom(a, 'talk');
    await clickJoin(b, 'talk');
    const idB = await waitInRoom(b, 'talk');
    await createRoom(c, 'elsewhere');
    await waitInRoom(c, 'elsewhere');

    // Ann was there first: Bo's arrival is a quiet system line.
    await waitFor(async () => (await systemLines(a)).includes('Bo joined'), { what: 'A shows "Bo joined"' });

    // Both ways, timed from the key press to the line at the other end, once the call is up (the media
    // set-up keeps two browsers on two cores busy for a moment).
    for (const [page, from] of [[a, idB], [b, idA]]) {
      await waitFor(async () => (find(await inbound(page), from, 'audio') || { bytes: 0 }).bytes > 0, { timeout: 15_000, what: 'the call is up' });
    }
    await a.locator('[data-testid="chat-toggle"]').click();
    await input(a).waitFor({ state: 'visible' });
    await Promise.all([watchArrivals(a), watchArrivals(b)]);
    const delivery = [];
    for (let i = 1; i <= 3; i++) {
      for (const [from, to] of [[a, b], [b, a]]) {
        const text = `ping ${i} from ${from === a ? 'Ann' : 'Bo'}`;
        const sentAt = await sendTimed(from, text);
        const arrived = await waitFor(() => to.evaluate((x) => window.__arrivals[x], text), { interval: 20, what: `"${text}" arrives` });
        delivery.push(arrived - sentAt);
      }
    }
    t.diagnostic(`chat delivery (Enter -> shown at the other page): ${delivery.join(', ')} ms`);
    console.log(`[e2e] chat delivery ms: ${delivery.join(', ')}`);
    // Within 200 ms; one of the six may be late (a busy 2-core machine running two browsers), not by much.
    assert.ok(delivery.every((d) => d >= 0 && d < 400), `every message within 400 ms (${delivery})`);
    assert.ok(delivery.filter((d) => d >= 200).length <= 1, `all but at most one within 200 ms (${delivery})`);

    // Bo has the chat closed: the badge counts Ann's three messages.
    const badge = b.locator('[data-testid="chat-unread"]');
    await waitFor(async () => (await badge.isVisible()) && (await badge.textContent()) === '3', { what: 'B unread badge shows 3' });
    await b.locator('[data-testid="chat-toggle"]').click();
    await badge.waitFor({ state: 'hidden' });
    await input(b).fill('hi Ann, by the button');
    await b.locator('[data-testid="chat-send"]').click();
    await waitFor(async () => (await texts(a)).includes('hi Ann, by the button'), { what: "A gets B's reply" });
    assert.equal(await input(b).inputValue(), '', 'input cleared after sending');
    assert.equal(await a.locator('[data-testid="chat-unread"]').isVisible(), false, 'no badge while the chat is open');

    // Name and time with each message (grouped lines of one author show them once).
    const first = b.locator('#chat-list .chat-msg[data-kind="message"]').filter({ hasText: 'ping 1 from Ann' });
    assert.equal(await first.locator('.chat-author').textContent(), 'Ann');
    assert.match(await first.locator('.chat-time').textContent(), /\d{1,2}[:.]\d{2}/);
    const when = Date.parse(await first.locator('.chat-time').getAttribute('datetime'));
    assert.ok(Math.abs(Date.now() - when) < 60_000, 'the time is the time it was sent');
    const mine = a.locator('#chat-list .chat-msg.mine').filter({ hasText: 'ping 1 from Ann' });
    assert.equal(await mine.locator('.chat-author').textContent(), 'Ann (you)');

    // Markup is shown as the characters typed: no element, no script, no dialog.
    for (const x of XSS) await say(a, x);
    for (const page of [a, b]) await waitFor(async () => (await texts(page)).includes(XSS[1]), { what: 'the markup messages arrive' });
    for (const [name, page] of [['A', a], ['B', b]]) {
      const shown = (await lines(page)).filter((l) => XSS.includes(l.text)).map((l) => l.shown);
      assert.deepEqual(shown, XSS, `${name} shows the markup as text`);
      await assertInert(page, name, dialogs[name.toLowerCase()]);
    }

    // Addresses become links that open in a new tab without access to the page; nothing else does.
    await say(b, 'docs at https://example.com/guide?page=2, and javascript:alert(1) stays text');
    await waitFor(async () => (await texts(a)).at(-1).startsWith('docs at'), { what: 'A gets the link message' });
    const links = a.locator('#chat-list a');
    assert.equal(await links.count(), 1, 'one link');
    assert.equal(await links.textContent(), 'https://example.com/guide?page=2');
    assert.equal(await links.getAttribute('href'), 'https://example.com/guide?page=2');
    assert.equal(await links.getAttribute('target'), '_blank');
    assert.match(await links.getAttribute('rel'), /\bnoopener\b/);
    assert.equal((await lines(a)).at(-1).shown, 'docs at https://example.com/guide?page=2, and javascript:alert(1) stays text');

    // "/me waves" is an action line: "Ann waves".
    await say(a, '/me waves');
    await waitFor(async () => (await lines(b)).at(-1).kind === 'action', { what: 'B shows an action line' });
    assert.deepEqual((await lines(b)).at(-1), { id: (await lines(b)).at(-1).id, kind: 'action', author: 'Ann', text: '/me waves', shown: 'Ann waves' });
    assert.equal(await b.locator('#chat-list .chat-msg.action .chat-author').textContent(), 'Ann');

    // Blank messages are not sent: Send stays disabled, Enter does nothing.
    await input(a).fill('   ');
    assert.equal(await a.locator('[data-testid="chat-send"]').isDisabled(), true, 'Send disabled for a blank message');
    await input(a).press('Enter');

    // Cy, in another room, got nothing; on joining "talk" she gets the history, rendered the same way.
    assert.deepEqual(await lines(c), [], 'no chat from another room');
    await c.locator('[data-testid="leave"]').click();
    await waitFor(() => c.evaluate(() => window.parley.room === null), { what: 'C left' });
    await clickJoin(c, 'talk');
    await waitInRoom(c, 'talk');
    // (The author's copy can come after the others': wait for it.)
    await waitFor(async () => (await texts(a)).at(-1) === '/me waves', { what: "A's own /me" });
    const expected = await texts(a);
    assert.equal(expected.length, 6 + 1 + XSS.length + 2, 'A has every message once (and no blank one)');
    await waitFor(async () => (await texts(c)).length === expected.length, { what: 'C loads the history' });
    assert.deepEqual(await texts(c), expected, 'C sees the same messages in the same order');
    const authors = (await lines(c)).map((l) => l.author);
    assert.deepEqual(authors.slice(0, 2), ['Ann', 'Bo']);
    assert.equal((await lines(c)).at(-1).shown, 'Ann waves');
    assert.equal(await c.locator('#chat-list a[rel~="noopener"]').count(), 1);
    await assertInert(c, 'C', dialogs.c);
    for (const page of [a, b]) await waitFor(async () => (await systemLines(page)).includes('Cy joined'), { what: '"Cy joined" shown' });
    assert.deepEqual(await systemLines(c), [], 'C sees no system line for the history it loaded');

    // "/leave" typed in the chat leaves the room (and is not sent).
    await c.locator('[data-testid="chat-toggle"]').click();
    await say(c, '/leave');
    await waitFor(() => c.evaluate(() => window.parley.room === null), { what: 'C left with /leave' });
    await c.locator('[data-testid="create-room-input"]').waitFor({ state: 'visible' });
    for (const page of [a, b]) await waitFor(async () => (await systemLines(page)).at(-1) === 'Cy left', { what: '"Cy left" shown' });
    assert.deepEqual(await texts(a), expected, 'nothing was sent for /leave or the blank message');
    assert.equal(await b.locator(`.tile[data-participant-id="${idB}"]`).count(), 1);
  });
});
