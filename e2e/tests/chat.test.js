// Room chat: messages reach everyone in the room as plain text, unread counts, history for late joiners,
// nothing leaks into other rooms.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, setup, waitFor, waitInRoom, withReport } from '../lib/harness.js';

async function say(page, text) {
  await page.locator('[data-testid="chat-input"]').fill(text);
  await page.locator('[data-testid="chat-input"]').press('Enter');
}

const texts = (page) => page.evaluate(() => window.parley.chat.map((m) => m.text));

test('chat: live messages, unread badge, history for late joiners, per room', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const [a, b, c] = await Promise.all([env.client('Ann'), env.client('Bo'), env.client('Cy')]);
    await createRoom(a, 'talk');
    await waitInRoom(a, 'talk');
    await clickJoin(b, 'talk');
    await waitInRoom(b, 'talk');
    await createRoom(c, 'elsewhere');
    await waitInRoom(c, 'elsewhere');

    await a.locator('[data-testid="chat-toggle"]').click();
    await a.locator('[data-testid="chat-input"]').waitFor({ state: 'visible' });
    const markup = 'look: <b>bold</b> <img src=x onerror=alert(1)>';
    await say(a, 'hello room');
    await say(a, markup);

    // B has the chat closed: the badge counts, the messages are there once opened.
    const badge = b.locator('[data-testid="chat-unread"]');
    await waitFor(async () => (await badge.isVisible()) && (await badge.textContent()) === '2', { what: 'B unread badge shows 2' });
    await b.locator('[data-testid="chat-toggle"]').click();
    await badge.waitFor({ state: 'hidden' });
    assert.deepEqual(await texts(b), ['hello room', markup]);
    assert.equal(await b.locator('#chat-list img, #chat-list b').count(), 0, 'chat text is never markup');
    assert.deepEqual(await texts(a), ['hello room', markup], "A sees its own messages once each");

    // B answers; a multi-line message keeps its lines.
    await b.locator('[data-testid="chat-input"]').fill('hi Ann');
    await b.locator('[data-testid="chat-send"]').click();
    await waitFor(async () => (await texts(a)).includes('hi Ann'), { what: "A gets B's reply" });
    assert.equal(await b.locator('[data-testid="chat-input"]').inputValue(), '', 'input cleared after sending');

    // C, in another room, got nothing; on joining "talk" it gets the history.
    assert.deepEqual(await texts(c), [], 'no chat from another room');
    await c.locator('[data-testid="leave"]').click();
    await waitFor(() => c.evaluate(() => window.parley.room === null), { what: 'C left' });
    await clickJoin(c, 'talk');
    await waitInRoom(c, 'talk');
    await waitFor(async () => (await texts(c)).length === 3, { what: 'C loads the history' });
    assert.deepEqual(await texts(c), ['hello room', markup, 'hi Ann']);
    const authors = await c.evaluate(() => window.parley.chat.map((m) => m.author));
    assert.deepEqual(authors, ['Ann', 'Ann', 'Bo']);

    // Blank messages are not sent.
    await c.locator('[data-testid="chat-toggle"]').click();
    await say(c, '   ');
    await say(c, 'late but here');
    await waitFor(async () => (await texts(a)).at(-1) === 'late but here', { what: "A gets C's message" });
    assert.equal((await texts(a)).length, 4, 'the blank message was not sent');
  });
});
