// Accessibility and layout, desktop (1280x800) and phone (390x844): axe-core (npm, pinned) on the lobby, the
// pre-join check, the room with two people (chat closed and open) and /status, with no `serious` or
// `critical` violation; focus moves into each new screen; the room list is collapsed in a call; the phone
// chat drawer leaves the call controls in reach; a toast covers neither the call controls nor the top bar;
// tile state icons are large; /status fits a 390 px screen. PARLEY_E2E_SHOTS=DIR saves screenshots there.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { clickJoin, createRoom, setup, waitFor, waitInRoom, withReport } from '../lib/harness.js';

const require = createRequire(import.meta.url);
// The server's Content-Security-Policy allows no inline script (addScriptTag): evaluated instead.
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const SHOTS = process.env.PARLEY_E2E_SHOTS || '';

/** axe on the page as it is: the serious and critical violations, each with its targets, as text. */
async function axe(t, page, what) {
  if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(`${AXE}\n;void 0`);
  const violations = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${(n.failureSummary || '').replace(/\s+/g, ' ')}`),
    }));
  });
  const bad = [];
  for (const v of violations) {
    const line = `${what}: [${v.impact}] ${v.id} (${v.help})\n    ${v.nodes.slice(0, 8).join('\n    ')}`;
    t.diagnostic(line);
    if (v.impact === 'serious' || v.impact === 'critical') bad.push(line);
  }
  return bad;
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

/** axe and a screenshot at both sizes, back at the desktop size after. */
async function check(t, page, name, bad) {
  for (const [size, vp] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewportSize(vp);
    await page.waitForTimeout(150);
    bad.push(...(await axe(t, page, `${name} (${size})`)));
    await shot(page, `${name}-${size}`);
  }
  await page.setViewportSize(DESKTOP);
}

/** Whether two boxes overlap. */
const overlap = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

/** The element at the centre of `locator` is it (or inside it): nothing covers it. */
function topmost(locator) {
  return locator.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const at = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
    return !!at && (at === el || el.contains(at));
  });
}

const activeId = (page) => page.evaluate(() => (document.activeElement ? document.activeElement.id : ''));

test('a11y: axe (no serious/critical) on lobby, pre-join, room and /status; focus, layout at 1280 and 390 px', { timeout: 90_000 }, async (t) => {
  const env = await setup(t);
  await withReport(env, async () => {
    const bad = [];
    const a = await env.client('Ann', { viewport: DESKTOP, state: { camera_off: true } });

    // Lobby: focus in the create-room field; the room list is no live region.
    assert.equal(await activeId(a), 'create-room-input', 'lobby: focus in the create-room field');
    assert.equal(await a.locator('[data-testid="room-list"]').getAttribute('aria-live'), null, 'the room list is not a live region');
    await check(t, a, 'lobby', bad);

    // Pre-join check: focus on Join.
    await createRoom(a, 'a11y');
    await waitFor(() => a.evaluate(() => {
      const p = window.parley.prejoin;
      return !!p && p.open && !document.querySelector('[data-testid="prejoin-join"]').disabled;
    }), { what: 'the pre-join check ready' });
    assert.equal(await activeId(a), 'prejoin-join', 'pre-join: focus on Join');
    await check(t, a, 'prejoin', bad);
    await waitInRoom(a, 'a11y');
    assert.equal(await activeId(a), 'mic-toggle', 'room: focus on the mic button');

    const b = await env.client('Bo', { viewport: DESKTOP, state: { camera_off: true } });
    await clickJoin(b, 'a11y');
    await waitInRoom(b, 'a11y');
    await a.locator('[data-testid="tiles"] .tile').nth(1).waitFor();
    // Bo mutes: the icon on his tile at Ann's is large enough to read at a glance.
    await b.locator('[data-testid="mic-toggle"]').click();
    const icon = a.locator('.tile:not(.self) [data-testid="icon-mic-muted"]');
    await icon.waitFor({ state: 'visible' });
    const ib = await icon.boundingBox();
    assert.ok(ib.width >= 28 && ib.height >= 28, `the muted icon is at least 28 px (${ib.width}x${ib.height})`);

    // Desktop: the room list is collapsed in the call; Rooms opens it beside the stage, Esc closes it.
    assert.equal(await a.locator('#lobby').isVisible(), false, 'desktop: no room list in the call');
    const stage = await a.locator('.stage').boundingBox();
    assert.ok(stage.x < 2 && stage.width > DESKTOP.width - 4, `the stage takes the whole width (${JSON.stringify(stage)})`);
    await a.locator('[data-testid="rooms-toggle"]').click();
    await a.locator('#lobby').waitFor({ state: 'visible' });
    await a.locator('[data-testid="rooms-toggle"]').click();
    await a.locator('#lobby').waitFor({ state: 'hidden' });

    await check(t, a, 'room', bad);

    // A toast (Copy link) covers neither the call controls nor the top bar, at both sizes.
    for (const [size, vp] of [['desktop', DESKTOP], ['phone', PHONE]]) {
      await a.setViewportSize(vp);
      await a.locator('[data-testid="room-link"]').click();
      const toast = a.locator('[data-testid="toast"]').last();
      await toast.waitFor({ state: 'visible' });
      await a.waitForTimeout(250); // its entry animation
      const tb = await toast.boundingBox();
      for (const sel of ['#controls', '.topbar']) {
        const cb = await a.locator(sel).boundingBox();
        assert.equal(overlap(tb, cb), false, `${size}: the toast ${JSON.stringify(tb)} leaves ${sel} ${JSON.stringify(cb)} uncovered`);
      }
      await shot(a, `room-toast-${size}`);
      await toast.locator('[data-testid="toast-dismiss"]').click();
      await toast.waitFor({ state: 'detached' });
    }

    // Phone: the chat drawer open, the mic, camera and leave buttons still in reach, the chat box too.
    await a.setViewportSize(PHONE);
    await a.locator('[data-testid="chat-toggle"]').click();
    await a.locator('[data-testid="chat-input"]').waitFor({ state: 'visible' });
    for (const id of ['mic-toggle', 'camera-toggle', 'leave', 'chat-toggle']) {
      assert.equal(await topmost(a.locator(`[data-testid="${id}"]`)), true, `phone, chat open: ${id} is not covered`);
    }
    // Every call control shown fits the phone's width.
    const boxes = await a.locator('#controls > .ctl:visible').evaluateAll((els) => els.map((e) => {
      const r = e.getBoundingClientRect();
      return { id: e.id, left: r.left, right: r.right };
    }));
    assert.ok(boxes.length >= 5, `the call controls (${boxes.length})`);
    for (const c of boxes) assert.ok(c.left >= 0 && c.right <= PHONE.width, `phone: ${c.id} inside the screen (${c.left}..${c.right})`);
    assert.equal(await topmost(a.locator('[data-testid="chat-input"]')), true, 'phone, chat open: the chat box is not covered');
    assert.equal(await a.locator('[data-testid="chat-toggle"]').getAttribute('aria-pressed'), 'true');
    bad.push(...(await axe(t, a, 'room, chat open (phone)')));
    await shot(a, 'room-chat-phone');
    await a.setViewportSize(DESKTOP);
    await shot(a, 'room-chat-desktop');
    await a.locator('[data-testid="chat-toggle"]').click();

    // /status: fits a phone (no horizontal scroll).
    const s = await env.page('/status', { label: 'status', viewport: DESKTOP });
    await s.locator('[data-room="a11y"]').waitFor();
    await check(t, s, 'status', bad);
    await s.setViewportSize(PHONE);
    await s.waitForTimeout(150);
    const widths = await s.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
    assert.ok(widths.scroll <= widths.client, `/status at 390 px: no horizontal scroll (${JSON.stringify(widths)})`);

    assert.deepEqual(bad, [], `serious or critical axe violations:\n${bad.join('\n')}`);
  });
});
