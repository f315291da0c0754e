// The room link's QR code (web/roomlink.js on the vendored qrcode-generator) and the pre-join check's
// device banner text (web/prejoin.js), without a browser.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLoopbackHost, modulesOfPath, qrMatrix, qrPath } from '../../web/roomlink.js';
import { deviceProblemText } from '../../web/prejoin.js';

const LINK = 'https://192.168.1.20:8443/r/band%20practice';

/** Whether the 7×7 finder pattern (dark ring, light ring, dark 3×3 core) sits with its corner at (r, c). */
function finderAt(m, r, c) {
  for (let i = 0; i < 7; i++) {
    for (let j = 0; j < 7; j++) {
      const ring = Math.max(Math.abs(i - 3), Math.abs(j - 3));
      const want = ring !== 2; // rings 3 (edge) and 0-1 (core) dark, ring 2 light
      if (m.dark(r + i, c + j) !== want) return false;
    }
  }
  return true;
}

test('the QR code of a room link is a well-formed symbol', () => {
  const m = qrMatrix(LINK);
  assert.equal((m.size - 17) % 4, 0, `a QR size is 17 + 4 × version (${m.size})`);
  const version = (m.size - 17) / 4;
  // 43 bytes in byte mode at level M fit version 3 (up to 42 bytes: no), so version 4 (up to 62).
  assert.equal(version, 4, `the smallest version that holds ${LINK.length} bytes at level M`);
  assert.ok(finderAt(m, 0, 0), 'finder pattern top left');
  assert.ok(finderAt(m, 0, m.size - 7), 'finder pattern top right');
  assert.ok(finderAt(m, m.size - 7, 0), 'finder pattern bottom left');
  assert.ok(!finderAt(m, m.size - 7, m.size - 7), 'none bottom right');
  // Timing pattern: row 6 alternates between the finders.
  for (let c = 8; c < m.size - 8; c++) assert.equal(m.dark(6, c), c % 2 === 0, `timing module (6, ${c})`);
  // Another link gives another symbol.
  const other = qrMatrix('https://192.168.1.20:8443/r/band%20practicf');
  let differ = 0;
  for (let r = 0; r < m.size; r++) for (let c = 0; c < m.size; c++) if (m.dark(r, c) !== other.dark(r, c)) differ++;
  assert.ok(differ > 10, `one character changes many modules (${differ})`);
});

test('the SVG path draws exactly the dark modules, shifted by the quiet zone', () => {
  const m = qrMatrix(LINK);
  for (const margin of [4, 2]) {
    const d = qrPath(m, margin);
    const drawn = modulesOfPath(d, margin);
    const dark = new Set();
    for (let r = 0; r < m.size; r++) for (let c = 0; c < m.size; c++) if (m.dark(r, c)) dark.add(`${r},${c}`);
    assert.deepEqual([...drawn].sort(), [...dark].sort(), `margin ${margin}`);
    assert.match(d, new RegExp(`^M${margin} ${margin}h7v1h-7z`), 'the first run is the top-left finder, 7 wide');
  }
});

test('text beyond ASCII is encoded as UTF-8 (not cut to 8 bits)', () => {
  // 'ā' (U+0101) cut to 8 bits would be U+0001; as UTF-8 it is two bytes, so the symbols differ.
  const utf8 = qrMatrix('https://h/r/\u0101');
  const cut = qrMatrix('https://h/r/\u0001');
  let differ = 0;
  for (let r = 0; r < utf8.size; r++) for (let c = 0; c < utf8.size; c++) if (utf8.dark(r, c) !== cut.dark(r, c)) differ++;
  assert.ok(differ > 10, `different symbols (${differ} modules)`);
});

test('loopback hosts are told apart from network addresses', () => {
  for (const h of ['localhost', '127.0.0.1', '127.1.2.3', '[::1]', 'app.localhost']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['192.168.1.20', 'chat.example.org', '10.0.0.1', 'localhost.example.org']) assert.equal(isLoopbackHost(h), false, h);
});

test('the pre-join banner: a refused permission says how to allow it; other problems their own words', () => {
  const denied = new Error('Permission denied');
  denied.name = 'NotAllowedError';
  const missing = new Error('none');
  missing.name = 'NotFoundError';

  assert.equal(deviceProblemText({}), '', 'nothing to say when both work');
  const both = deviceProblemText({ audio: denied, video: denied });
  assert.match(both, /does not let parley use your microphone and camera/);
  assert.match(both, /address bar/);
  assert.match(both, /press Retry/);
  assert.match(both, /join with the microphone and camera off/);

  const mic = deviceProblemText({ audio: denied });
  assert.match(mic, /your microphone\. To allow it/);
  assert.doesNotMatch(mic, /allow the microphone and camera|camera off/, 'only the microphone is named');

  const mixed = deviceProblemText({ audio: denied, video: missing });
  assert.match(mixed, /your microphone\. To allow it/);
  assert.match(mixed, /No camera was found\./);
  assert.match(mixed, /join with the microphone and camera off/);
  assert.doesNotMatch(deviceProblemText({ video: missing }), /Retry|allow/, 'no permission advice for a missing camera');
});
