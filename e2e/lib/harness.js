// Test harness: a real parley server on free loopback ports, Debian's headless Chromium with fake
// devices (a 440 Hz tone as the microphone, or any WAV per browser), and small helpers to drive the client
// and read WebRTC stats.
//
// The server binary is NOT built here: build it first (`cargo build --release -p parley`) or point
// PARLEY_BIN at one. PARLEY_E2E_WEB_FROM_DISK=1 serves web/ from the work tree instead of the copy
// embedded in the binary (handy while editing the client); signalling and media still go to the server.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..');
export const BIN = process.env.PARLEY_BIN || path.join(REPO, 'target', 'release', 'parley');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export { sleep };

// ---------------------------------------------------------------------------------------------------------
// Ports and files

function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Distinct free ports: [http, https]. Media workers take any free UDP ports (`--media-port 0`). */
async function freePorts() {
  for (;;) {
    const http = await freeTcpPort();
    const https = await freeTcpPort();
    if (http !== https) return { http, https };
  }
}

/** A temp dir removed by the returned cleanup. */
export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

let mediaDir = null;
const wavCache = new Map();

/**
 * A 48 kHz, 16-bit mono WAV made by sox from `effects` (the arguments after the output file), e.g.
 * `['synth', '30', 'sine', '440', 'vol', '0.5']`; made once per process under `name`.
 */
export function makeWav(name, effects) {
  const key = `${name}\n${effects.join(' ')}`;
  if (wavCache.has(key) && fs.existsSync(wavCache.get(key))) return wavCache.get(key);
  if (!mediaDir) {
    mediaDir = tempDir('parley-e2e-media-');
    const dir = mediaDir;
    process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  }
  const file = path.join(mediaDir, `${name}.wav`);
  const r = spawnSync('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', file, ...effects], { encoding: 'utf8' });
  if (r.status !== 0 || !fs.existsSync(file)) {
    throw new Error(`sox could not make ${name}.wav (apt-get install sox): ${r.error || r.stderr}`);
  }
  wavCache.set(key, file);
  return file;
}

/** A 30 s, 48 kHz, 16-bit mono 440 Hz sine WAV (Chromium loops it as the fake microphone). */
export function toneWav() {
  return makeWav('tone440', ['synth', '30', 'sine', '440', 'vol', '0.5']);
}

// ---------------------------------------------------------------------------------------------------------
// Server

/**
 * A new admin token for the data dir `dataDir` (`parley --data-dir DIR admin reset-token`), made before the
 * server starts there so that it is the one in force.
 */
export function resetAdminToken(dataDir) {
  const r = spawnSync(BIN, ['--data-dir', dataDir, 'admin', 'reset-token'], { encoding: 'utf8', timeout: 20_000 });
  const m = /new admin token: (\S+)/.exec(r.stdout || '');
  if (r.status !== 0 || !m) throw new Error(`parley admin reset-token failed (${r.status}): ${r.error || r.stderr}`);
  return m[1];
}

/**
 * Starts `parley` on free loopback ports (or the given `ports`) with a fresh data dir. Resolves once
 * HTTP answers. With `adminToken`, the data dir gets an admin token first (`server.adminToken`).
 * @returns {Promise<{url: string, ports: object, logs: () => string, stop: () => Promise<void>, adminToken?: string}>}
 */
export async function startServer({ extraArgs = [], timeoutMs = 20_000, ports = null, adminToken = false, dataDir: keptDir = null } = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`no server binary at ${BIN}: build it first with \`cargo build --release -p parley\``);
  }
  // A server started again on a kept data dir (`stop({ keepData: true })`) finds what the last one stored.
  const dataDir = keptDir || tempDir('parley-e2e-data-');
  let token;
  if (adminToken) {
    try {
      token = resetAdminToken(dataDir);
    } catch (err) {
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
  }
  ports = ports || (await freePorts());
  const args = [
    '--data-dir', dataDir,
    '--http-addr', `127.0.0.1:${ports.http}`,
    '--https-addr', `127.0.0.1:${ports.https}`,
    '--media-port', '0',
    '--media-bind', '127.0.0.1',
    '--public-status', // the tests read /api/status and /metrics without the admin token
    // Every page comes from 127.0.0.1: the per-address room cap would stop the suite's many rooms.
    ...(extraArgs.includes('--max-rooms-per-ip') ? [] : ['--max-rooms-per-ip', '1000000']),
    ...extraArgs,
  ];
  const child = spawn(BIN, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' },
  });
  const lines = [];
  const keep = (buf) => {
    for (const l of String(buf).split('\n')) if (l.trim()) lines.push(l);
    if (lines.length > 400) lines.splice(0, lines.length - 400);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, sig) => {
      exited = { code, sig };
      resolve();
    });
  });
  const killOnExit = () => {
    try {
      child.kill('SIGKILL');
    } catch {
      // gone
    }
  };
  process.on('exit', killOnExit);

  const url = `http://127.0.0.1:${ports.http}`;
  const stop = async ({ keepData = false } = {}) => {
    process.off('exit', killOnExit);
    if (!exited) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exitPromise;
      clearTimeout(t);
    }
    if (!keepData) fs.rmSync(dataDir, { recursive: true, force: true });
  };
  const logs = () => lines.join('\n');

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`parley exited during start-up (${JSON.stringify(exited)}):\n${logs()}`);
    }
    try {
      const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`parley did not answer on ${url} within ${timeoutMs} ms:\n${logs()}`);
    }
    await sleep(100);
  }
  return { url, ports, dataDir, logs, stop, child, ...(token ? { adminToken: token } : {}) };
}

// ---------------------------------------------------------------------------------------------------------
// Browser

export function chromiumArgs(audioFile) {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--use-fake-device-for-media-stream',
    '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--autoplay-policy=no-user-gesture-required',
    `--use-file-for-fake-audio-capture=${audioFile}`,
    // Several "visible" pages share two cores: keep timers and rendering running in all of them.
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
    // Pages fulfilled by page.route() have no address space, so Chromium would block their WebSocket to
    // 127.0.0.1 as a local-network request: only when serving web/ from disk.
    ...(process.env.PARLEY_E2E_WEB_FROM_DISK ? ['--disable-features=LocalNetworkAccessChecks'] : []),
  ];
}

/**
 * One headless Chromium; each participant gets its own context (fresh storage, own fake devices). The fake
 * microphone plays `audioFile` (default: the 440 Hz tone) in a loop in every page of this browser: give
 * people who must sound different a browser each.
 */
export async function launchBrowser({ audioFile = toneWav() } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: chromiumArgs(audioFile),
    timeout: 30_000,
  });
}

/**
 * Opens the client in a fresh context, types `name` and waits for the lobby.
 * `state` ({mic_muted, deafened, camera_off}) is remembered before the first load, as if chosen on an
 * earlier visit (e.g. camera_off to spare the CPU in tests about something else).
 * `initScript` runs in the page before its own scripts (e.g. to prefer a codec, as some browsers do).
 * The returned page has `page.logs` (console lines and page errors) for failure reports.
 */
export async function openClient(browser, url, name, { viewport = { width: 1280, height: 800 }, pages = [], state = null, ignoreHTTPSErrors = false, initScript = null } = {}) {
  // ignoreHTTPSErrors stands in for a person accepting the self-signed certificate once.
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors, permissions: ['microphone', 'camera'] });
  if (initScript) await context.addInitScript(initScript);
  if (state) {
    await context.addInitScript((s) => {
      if (location.pathname === '/' && localStorage.getItem('parley.state') === null) localStorage.setItem('parley.state', s);
    }, JSON.stringify(state));
  }
  const page = await context.newPage();
  page.logs = [];
  pages.push(page);
  page.setDefaultTimeout(15_000);
  page.on('console', (m) => page.logs.push(`[${name} console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => page.logs.push(`[${name} pageerror] ${e.stack || e.message}`));
  if (process.env.PARLEY_E2E_WEB_FROM_DISK) await serveWebFromDisk(page, url);
  await page.goto(url);
  await page.locator('[data-testid="name-input"]').fill(name);
  await page.locator('[data-testid="name-submit"]').click();
  await page.locator('[data-testid="create-room-input"]').waitFor({ state: 'visible' });
  await waitFor(() => page.evaluate(() => window.parley && window.parley.connected), {
    what: `${name}: signalling connected`,
  });
  return page;
}

/**
 * Opens another page of the web client (e.g. /status, /viewer/<room>, /r/<room>) in a fresh context.
 * `initScript` runs in the page before its own scripts (e.g. to watch getUserMedia); `permissions` are
 * granted to the context (e.g. `['microphone', 'camera']` for a room link).
 */
export async function openPage(browser, url, pathname, { label = pathname, viewport = { width: 1280, height: 720 }, pages = [], initScript = null, permissions = [] } = {}) {
  const context = await browser.newContext({ viewport, permissions });
  const page = await context.newPage();
  if (initScript) await page.addInitScript(initScript);
  page.logs = [];
  pages.push(page);
  page.setDefaultTimeout(15_000);
  page.on('console', (m) => page.logs.push(`[${label} console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => page.logs.push(`[${label} pageerror] ${e.stack || e.message}`));
  if (process.env.PARLEY_E2E_WEB_FROM_DISK) await serveWebFromDisk(page, url);
  await page.goto(url + pathname);
  return page;
}

/** Serves web/ from the work tree to `page` for `url` (http or https origin); signalling goes to the server. */
export async function serveWebFromDisk(page, url) {
  const web = path.join(REPO, 'web');
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };
  await page.route(`${url}/**`, async (route) => {
    const u = new URL(route.request().url());
    if (u.pathname === '/ws') return route.continue();
    const rel = u.pathname === '/' || u.pathname.startsWith('/r/') ? 'index.html'
      : u.pathname === '/status' ? 'status.html'
      : u.pathname === '/admin' ? 'admin.html'
      : u.pathname.startsWith('/viewer/') ? 'viewer.html'
      : u.pathname.slice(1);
    const file = path.join(web, rel);
    if (!file.startsWith(web) || !fs.existsSync(file)) return route.continue();
    return route.fulfill({ status: 200, contentType: types[path.extname(file)] || 'application/octet-stream', body: fs.readFileSync(file) });
  });
}

// ---------------------------------------------------------------------------------------------------------
// Waiting

/**
 * Polls `fn` until it returns a truthy value (which is returned) or `timeout` ms pass (then throws with
 * `what` and the last value seen).
 */
export async function waitFor(fn, { timeout = 10_000, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const seen = lastErr ? `error: ${lastErr.message}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (${seen})`);
    }
    await sleep(interval);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Client actions

export function roomItem(page, room) {
  return page.locator(`li[data-room="${room}"]`);
}

/** Creates `room` with the lobby form; the client joins it right away when not in a room. */
export async function createRoom(page, room) {
  await page.locator('[data-testid="create-room-input"]').fill(room);
  await page.locator('[data-testid="create-room-submit"]').click();
}

/**
 * Clicks Join on `room` in the lobby, then Join on the pre-join check that opens (its choices as they are)
 * and returns the time of that second click (ms, Date.now()): when the join is sent.
 */
export async function clickJoin(page, room) {
  const btn = roomItem(page, room).locator('[data-testid="join-room"]');
  await btn.waitFor({ state: 'visible' });
  await waitFor(() => btn.isEnabled(), { what: `Join ${room} enabled` });
  await btn.click();
  return passPrejoin(page, room);
}

/**
 * Waits for the pre-join check (of `room`, when given) and clicks its Join; returns the click time. The
 * check's own tests drive it themselves.
 */
export async function passPrejoin(page, room = null, timeout = 10_000) {
  const join = page.locator('[data-testid="prejoin-join"]');
  await waitFor(() => page.evaluate((r) => {
    const p = window.parley && window.parley.prejoin;
    return !!p && p.open && (r == null || p.room === r) && !document.querySelector('[data-testid="prejoin-join"]').disabled;
  }, room), { timeout, what: `the pre-join check${room ? ` of ${room}` : ''} ready` });
  const t0 = Date.now();
  await join.click();
  return t0;
}

/**
 * Waits until the page is in `room` with a peer connection and returns its participant id. A pre-join
 * check on the way (after createRoom, a room or invite link) is passed with its choices as they are.
 */
export async function waitInRoom(page, room, timeout = 10_000) {
  await waitFor(async () => {
    const s = await page.evaluate((r) => {
      const p = window.parley;
      if (!p) return 'loading';
      if (p.room === r && p.pc !== null) return 'in';
      const c = p.prejoin;
      const join = document.querySelector('[data-testid="prejoin-join"]');
      return c && c.open && c.room === r && join && !join.disabled && !document.querySelector('dialog[open]') ? 'prejoin' : 'waiting';
    }, room);
    if (s === 'prejoin') await page.locator('[data-testid="prejoin-join"]').click({ timeout: 2000 }).catch(() => {});
    return s === 'in';
  }, {
    timeout,
    what: `in room ${room} with a peer connection`,
  });
  return page.evaluate(() => window.parley.me);
}

// ---------------------------------------------------------------------------------------------------------
// Stats

/**
 * Per remote track: {id (publisher), kind, bytes, packets, frames} from the receiver's inbound-rtp stats.
 */
export function inbound(page) {
  return page.evaluate(async () => {
    const p = window.parley;
    if (!p || !p.pc) return [];
    const out = [];
    for (const t of p.remoteTracks()) {
      const r = p.receiver(t.id, t.kind);
      if (!r) continue;
      const stats = await r.getStats();
      const s = { id: String(t.id), kind: t.kind, bytes: 0, packets: 0, frames: 0, rtp: 0 };
      stats.forEach((v) => {
        if (v.type !== 'inbound-rtp') return;
        s.rtp += 1;
        s.bytes += v.bytesReceived || 0;
        s.packets += v.packetsReceived || 0;
        s.frames += v.framesDecoded || 0;
      });
      out.push(s);
    }
    return out;
  });
}

/** Every inbound-rtp and outbound-rtp entry of the page's peer connection (no app bookkeeping involved). */
export function rawRtpStats(page) {
  return page.evaluate(async () => {
    const pc = window.parley && window.parley.pc;
    if (!pc) return { inbound: [], outbound: [], connectionState: null };
    const stats = await pc.getStats();
    const inboundRtp = [];
    const outboundRtp = [];
    stats.forEach((v) => {
      if (v.type === 'inbound-rtp') {
        inboundRtp.push({ kind: v.kind, ssrc: v.ssrc, bytes: v.bytesReceived || 0, packets: v.packetsReceived || 0, frames: v.framesDecoded || 0 });
      }
      if (v.type === 'outbound-rtp') {
        outboundRtp.push({ kind: v.kind, ssrc: v.ssrc, bytes: v.bytesSent || 0, packets: v.packetsSent || 0 });
      }
    });
    return { inbound: inboundRtp, outbound: outboundRtp, connectionState: pc.connectionState };
  });
}

export function find(stats, id, kind) {
  return stats.find((s) => s.id === String(id) && s.kind === kind);
}

// ---------------------------------------------------------------------------------------------------------
// Set-up / tear-down for one test

/**
 * Starts a server and a browser for test context `t` and registers their clean-up. On failure, call
 * `env.report()` to print the server log and the pages' console output.
 * - `serverArgs`: extra command-line flags for parley (e.g. `['--chat-burst', '500']`).
 * - `audioFile`: the fake microphone of the first browser (default: the 440 Hz tone).
 * - `adminToken`: give the server an admin token before it starts (`env.adminToken`).
 * `env.launchBrowser({audioFile})` starts more browsers (closed with the test); pass one as `browser` to
 * `env.client` / `env.page`.
 */
export async function setup(t, { serverArgs = [], audioFile, adminToken = false } = {}) {
  const server = await startServer({ extraArgs: serverArgs, adminToken });
  let browser;
  try {
    browser = await launchBrowser({ audioFile });
  } catch (err) {
    await server.stop();
    throw err;
  }
  const pages = [];
  const browsers = [browser];
  const env = {
    server,
    browser,
    url: server.url,
    adminToken: server.adminToken,
    pages,
    async launchBrowser(opts) {
      const b = await launchBrowser(opts);
      browsers.push(b);
      return b;
    },
    async client(name, { browser: b = browser, ...opts } = {}) {
      return openClient(b, server.url, name, { ...opts, pages });
    },
    async page(pathname, { browser: b = browser, ...opts } = {}) {
      return openPage(b, server.url, pathname, { ...opts, pages });
    },
    /** Stops the server (the pages lose their sockets). */
    async stopServer() {
      await env.server.stop();
    },
    /** Starts a fresh server (empty state) on the same ports. */
    async startServerAgain() {
      env.server = await startServer({ ports: server.ports, extraArgs: serverArgs, adminToken });
      env.adminToken = env.server.adminToken;
      return env.server;
    },
    /** Stops the server and starts it again on the same ports and data dir (its rooms and chat stay). */
    async restartServer({ downMs = 0 } = {}) {
      const dataDir = env.server.dataDir;
      await env.server.stop({ keepData: true });
      if (downMs) await sleep(downMs);
      env.server = await startServer({ ports: server.ports, extraArgs: serverArgs, dataDir });
      return env.server;
    },
    report() {
      const out = ['----- parley server log (tail) -----', env.server.logs().split('\n').slice(-80).join('\n')];
      for (const p of pages) if (p.logs.length) out.push(p.logs.slice(-40).join('\n'));
      return out.join('\n');
    },
  };
  t.after(async () => {
    await Promise.all(browsers.map((b) => b.close().catch(() => {})));
    await env.server.stop();
  });
  return env;
}

/** Runs `body`; on failure prints the server log and browser console before rethrowing. */
export async function withReport(env, body) {
  try {
    return await body();
  } catch (err) {
    console.error(env.report());
    throw err;
  }
}
