// Chat history paging (scrolling up loads older pages) and the limits: the character counter near 4000,
// and the server's refusals (message_too_long, empty_message, rate_limited) shown in the panel.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

const input = (page) => page.locator('[data-testid="chat-input"]');
const texts = async (page) => (await page.evaluate(() => window.parley.chat)).filter((l) => l.kind !== 'system').map((l) => l.text);

test('chat history: a late joiner gets the last 100 messages, scrolling up loads the older ones', { timeout: 60_000 }, async (t) => {
  // A generous chat rate, so 130 messages go quickly (the connection limit of 50/s, bursts of 100, still applies).
  const env = await setup(t, { serverArgs: ['--chat-rate', '1000', '--chat-burst', '1000', '--chat-rate-per-ip', '1000', '--chat-burst-per-ip', '1000'] });
  await withReport(env, async () => {
    const state = { camera_off: true }; // text only: spare the CPU
    const [a, b] = await Promise.all([env.client('Ann', { state }), env.client('Bo', { state })]);
    await createRoom(a, 'log');
    await waitInRoom(a, 'log');
    const total = 130;
    const refused = await a.evaluate(async (n) => {
      const pause = () => new Promise((r) => setTimeout(r, 15));
      let refusals = 0;
      for (let i = 1; i <= n; i++) {
        // Sent the way the Send button sends, paced under the connection's limit (a refusal of that limit
        // carries no request id, so the request would only fail by timing out); a refusal is retried.
        while (!(await window.parley.chatSend(`message ${i}`))) refusals += 1;
        await pause();
      }
      return refusals;
    }, total);
    t.diagnostic(`sent ${total} messages (${refused} refusals retried)`);

    await clickJoin(b, 'log');
    await waitInRoom(b, 'log');
    await waitFor(async () => (await texts(b)).length === 100, { what: 'B loads the newest page' });
    const want = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => `message ${from + i}`);
    assert.deepEqual(await texts(b), want(total - 99, total), 'the last 100 messages, oldest first');

    await b.locator('[data-testid="chat-toggle"]').click();
    const log = b.locator('#chat-log');
    await waitFor(() => log.evaluate((el) => el.scrollTop > 0 && el.scrollHeight - el.scrollTop - el.clientHeight < 5), {
      what: 'the newest message is in view',
    });
    // Scroll up to the top: the older page arrives above, and the view stays on what was in view.
    const firstShown = b.locator('#chat-list .chat-msg', { hasText: `message ${total - 99}` });
    await log.evaluate((el) => { el.scrollTop = 0; });
    await waitFor(async () => (await texts(b)).length === total, { what: 'B loads the older page by scrolling up' });
    assert.deepEqual(await texts(b), want(1, total), 'every message once, in order');
    assert.ok(await log.evaluate((el) => el.scrollTop > 0), 'the view did not jump to the very top');
    assert.ok(await firstShown.isVisible(), 'the message that was at the top is still in view');
    await b.locator('[data-testid="chat-more"]').waitFor({ state: 'hidden' });
  });
});

test('chat limits: counter near 4000, nothing blank or too long is sent, server refusals shown in the panel', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const a = await env.client('Ann', { state: { camera_off: true } });
    await createRoom(a, 'limits');
    await waitInRoom(a, 'limits');
    await a.locator('[data-testid="chat-toggle"]').click();
    const counter = a.locator('[data-testid="chat-counter"]');
    const send = a.locator('[data-testid="chat-send"]');
    const error = a.locator('[data-testid="chat-error"]');

    // The counter appears near the limit and counts characters (an emoji is one).
    assert.equal(await send.isDisabled(), true, 'Send disabled while the input is empty');
    await input(a).fill('x'.repeat(3000));
    assert.equal(await counter.isVisible(), false, 'no counter far from the limit');
    assert.equal(await send.isEnabled(), true);
    await input(a).fill('x'.repeat(3600));
    assert.equal(await counter.textContent(), '3600 / 4000');
    await input(a).fill('😀'.repeat(4000));
    assert.equal(await counter.textContent(), '4000 / 4000', 'emoji count as one character each');
    assert.equal(await send.isEnabled(), true, 'exactly the limit can be sent');
    await send.click();
    await waitFor(async () => (await texts(a)).length === 1, { what: 'the 4000-character message is sent' });

    // One character over: the counter says so, Send is disabled, Enter explains instead of sending.
    await input(a).fill('x'.repeat(4001));
    assert.equal(await counter.textContent(), '1 over the 4000 limit');
    assert.match(await counter.getAttribute('class'), /\bover\b/);
    assert.equal(await send.isDisabled(), true, 'Send disabled over the limit');
    await input(a).press('Enter');
    await error.waitFor({ state: 'visible' });
    assert.equal(await error.getAttribute('data-code'), 'message_too_long');
    assert.equal(await input(a).inputValue(), 'x'.repeat(4001), 'the text stays for editing');

    // The server's own refusals (sent past the client's checks) are shown in the panel, role=alert.
    await input(a).fill('');
    await error.waitFor({ state: 'hidden' });
    assert.equal(await a.evaluate(() => window.parley.chatSend('y'.repeat(4001))), false);
    assert.equal(await error.getAttribute('data-code'), 'message_too_long');
    assert.match(await error.textContent(), /too long.*4000 characters \(this one has 4001\)/);
    assert.equal(await error.getAttribute('role'), 'alert');
    assert.equal(await a.evaluate(() => window.parley.chatSend(' \n ')), false);
    assert.equal(await error.getAttribute('data-code'), 'empty_message');
    assert.match(await error.textContent(), /Empty messages are not sent/);
    assert.equal(await a.locator('[data-testid="toast"]').count(), 0, 'shown in the panel, not twice as a toast');

    // Too fast: 5 a second in bursts of 10. Sending 15 at once gets rate_limited.
    await sleep(2200); // the bucket refills after the messages above
    const results = await a.evaluate(() => Promise.all(Array.from({ length: 15 }, (_, i) => window.parley.chatSend(`quick ${i}`))));
    const sent = results.filter(Boolean).length;
    assert.ok(sent >= 10 && sent < 15, `a burst of 10 passes, the rest is refused (${sent} sent)`);
    await error.waitFor({ state: 'visible' });
    assert.equal(await error.getAttribute('data-code'), 'rate_limited');
    assert.match(await error.textContent(), /too quickly/);
    assert.equal((await texts(a)).length, 1 + sent, 'only what the server accepted is shown');

    // After a pause, sending works again and the error goes away.
    await sleep(1000);
    await input(a).fill('calm again');
    await input(a).press('Enter');
    await waitFor(async () => (await texts(a)).at(-1) === 'calm again', { what: 'sending works again' });
    await error.waitFor({ state: 'hidden' });
  });
});
