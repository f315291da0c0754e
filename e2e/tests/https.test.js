// The LAN path: the page over HTTPS with the self-signed certificate (as a phone would use it, after
// accepting the warning once), signalling over wss://, media flowing both ways.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRoom, clickJoin, inbound, openClient, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

test('a call over the HTTPS address with the self-signed certificate', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const httpsUrl = `https://127.0.0.1:${env.server.ports.https}`;
    const opts = { pages: env.pages, ignoreHTTPSErrors: true };
    const a = await openClient(env.browser, httpsUrl, 'Laptop', opts);
    const b = await openClient(env.browser, httpsUrl, 'Phone', opts);
    assert.equal(await a.evaluate(() => window.isSecureContext), true, 'HTTPS is a secure context');
    assert.match(await a.evaluate(() => location.protocol), /^https:$/);

    await createRoom(a, 'lan');
    await waitInRoom(a, 'lan');
    await clickJoin(b, 'lan');
    await waitInRoom(b, 'lan');

    for (const [name, page] of [['Laptop', a], ['Phone', b]]) {
      const audio = await waitFor(
        async () => (await inbound(page)).find((s) => s.kind === 'audio' && s.bytes > 0),
        { timeout: 15_000, what: `${name} receives audio over HTTPS/wss` },
      );
      await sleep(1500);
      const later = (await inbound(page)).find((s) => s.kind === 'audio' && s.id === audio.id);
      assert.ok(later && later.bytes > audio.bytes, `${name}: audio keeps flowing`);
    }
  });
});
