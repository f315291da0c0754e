// The signalling socket drops (server restart): the client leaves the room, says so, reconnects by itself
// and can join again.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clickJoin, createRoom, roomItem, setup, sleep, waitFor, waitInRoom, withReport } from '../lib/harness.js';

test('a dropped connection returns to the lobby and reconnects', { timeout: 60_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const a = await env.client('Ann');
    await createRoom(a, 'before');
    await waitInRoom(a, 'before');

    await env.stopServer();
    await a.locator('[role="alert"][data-code="disconnected"]').waitFor({ state: 'visible', timeout: 10_000 });
    assert.equal(await a.evaluate(() => window.parley.room), null, 'out of the room');
    assert.equal(await a.evaluate(() => window.parley.pc), null, 'peer connection closed');
    assert.equal(await a.locator('.tile').count(), 0, 'no tiles left');
    await a.locator('[data-testid="create-room-input"]').waitFor({ state: 'visible' });
    assert.equal(await a.locator('[data-testid="connection"]').getAttribute('data-state'), 'offline');

    await env.startServerAgain();
    await waitFor(() => a.evaluate(() => window.parley.connected), { timeout: 15_000, what: 'signalling reconnected' });
    assert.equal(await a.locator('[data-testid="connection"]').getAttribute('data-state'), 'online');
    // The new server's list replaces the old one (a fresh server has no room "before").
    await roomItem(a, 'before').waitFor({ state: 'detached', timeout: 5000 });
    await createRoom(a, 'after');
    await waitInRoom(a, 'after');
    await a.locator('[data-testid="leave"]').click();
    await waitFor(() => a.evaluate(() => window.parley.room === null), { what: 'left after' });
    // A leave on purpose is quiet: the server hears `leave` before the media goes away.
    await sleep(300);
    assert.equal(await a.locator('[data-testid="toast"][data-code="internal"], [data-testid="toast"][data-code="not_in_room"]').count(), 0,
      'no "media connection lost" / not_in_room after leaving');
    await clickJoin(a, 'after');
    await waitInRoom(a, 'after');
  });
});
