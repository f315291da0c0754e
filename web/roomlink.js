// A link per room: `/r/<room>` opens parley in that room (the server serves the page there; app.js reads the
// path and goes through the name prompt and the pre-join check). This module gives the room page its two
// ways to share it: the top bar's "Copy link" button, and, while you are alone in the room, the "Invite
// others" card with the link, a Copy button and a QR code of the link (for phones on the same network).
// The QR code is drawn as SVG from web/vendor/qrcode-generator.js (vendored, MIT); nothing is fetched.

import { qrcode } from './vendor/qrcode-generator.js';
import { copyText, roomLink } from './access.js';

const SVG = 'http://www.w3.org/2000/svg';
const $ = (id) => document.getElementById(id);

/**
 * The QR code of `text` (byte mode, UTF-8, error correction M, the smallest version that holds it):
 * `{size, dark(row, col)}` with `size` modules a side (the quiet zone not included).
 */
export function qrMatrix(text) {
  // The library turns each UTF-16 code unit into one byte: hand it the UTF-8 bytes as such units.
  const bytes = new TextEncoder().encode(String(text));
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  const qr = qrcode(0, 'M');
  qr.addData(binary, 'Byte');
  qr.make();
  const size = qr.getModuleCount();
  return { size, dark: (row, col) => qr.isDark(row, col) };
}

/**
 * SVG path data drawing the dark modules of `matrix` (one unit per module, shifted by `margin` modules of
 * quiet zone): one `M x y h n v1 h -n z` per run of dark modules in a row.
 */
export function qrPath(matrix, margin = 4) {
  const parts = [];
  for (let row = 0; row < matrix.size; row++) {
    let col = 0;
    while (col < matrix.size) {
      if (!matrix.dark(row, col)) {
        col++;
        continue;
      }
      const start = col;
      while (col < matrix.size && matrix.dark(row, col)) col++;
      parts.push(`M${start + margin} ${row + margin}h${col - start}v1h-${col - start}z`);
    }
  }
  return parts.join('');
}

/** The dark modules a `qrPath` draws, as "row,col" strings (tests read the page's code back with it). */
export function modulesOfPath(d, margin = 4) {
  const out = new Set();
  for (const m of String(d).matchAll(/M(\d+) (\d+)h(\d+)v1h-\d+z/g)) {
    const [x, y, n] = [Number(m[1]) - margin, Number(m[2]) - margin, Number(m[3])];
    for (let i = 0; i < n; i++) out.add(`${y},${x + i}`);
  }
  return out;
}

/** An <svg> QR code of `text`: dark modules on a white square with a 4-module quiet zone, scalable. */
export function qrSvg(text, { margin = 4, label = '' } = {}) {
  const matrix = qrMatrix(text);
  const side = matrix.size + 2 * margin;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${side} ${side}`);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.setAttribute('class', 'qr-code');
  svg.setAttribute('role', 'img');
  if (label) svg.setAttribute('aria-label', label);
  svg.dataset.text = text;
  svg.dataset.modules = String(matrix.size);
  const bg = document.createElementNS(SVG, 'rect');
  bg.setAttribute('width', String(side));
  bg.setAttribute('height', String(side));
  bg.setAttribute('fill', '#fff');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', qrPath(matrix, margin));
  path.setAttribute('fill', '#000');
  svg.append(bg, path);
  return svg;
}

/** Whether `hostname` is this machine only (a link with it works for nobody else). */
export function isLoopbackHost(hostname) {
  const h = String(hostname).replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\./.test(h);
}

export class RoomLinks {
  /**
   * @param {{room: () => (string|null), alone: () => boolean, settings: () => (object|null),
   *   toast: (message: string, opts?: object) => void}} opts `alone`: nobody else (no other member) is in
   *   the room; `settings`: the room's {access, ...}.
   */
  constructor({ room, alone, settings, toast }) {
    this.room = room;
    this.alone = alone;
    this.settings = settings;
    this.toast = toast;
    this.dismissed = null; // the room whose card was closed: it stays closed while we are in it
    this.shownFor = ''; // the link the card and its QR code were made for
    this.el = {
      button: $('room-link'),
      card: $('invite-card'),
      link: $('invite-card-link'),
      copy: $('invite-card-copy'),
      close: $('invite-card-close'),
      qr: $('invite-qr'),
      privateNote: $('invite-card-private'),
      localNote: $('invite-card-local'),
    };
    this.el.button.addEventListener('click', () => this.copy());
    this.el.copy.addEventListener('click', () => this.copy());
    this.el.close.addEventListener('click', () => {
      this.dismissed = this.room();
      this.render();
    });
    this.el.link.addEventListener('focus', () => this.el.link.select());
  }

  /** Copies the room's link and says so (the toast sits below the top bar: the button stays visible). */
  async copy() {
    const room = this.room();
    if (!room) return;
    const link = roomLink(room);
    const ok = await copyText(link);
    const s = this.settings();
    const note = s && s.access === 'private' ? ' Only invited people get in: owners make invites in the room settings.' : '';
    this.toast(`${link}${note}`, { title: ok ? 'Link copied' : 'Copy the room link', kind: 'info', code: 'room_link', timeout: 6000 });
  }

  /** Shows or hides the card: in a room, alone, not closed. Called on every change of those. */
  render() {
    const room = this.room();
    if (room !== this.dismissed) this.dismissed = null;
    const show = !!room && this.alone() && this.dismissed !== room;
    this.el.card.hidden = !show;
    if (!show) return;
    const link = roomLink(room);
    if (link !== this.shownFor) {
      this.shownFor = link;
      this.el.link.value = link;
      this.el.qr.replaceChildren(qrSvg(link, { label: `QR code of the link to ${room}` }));
    }
    const s = this.settings();
    this.el.privateNote.hidden = !(s && s.access === 'private');
    this.el.localNote.hidden = !isLoopbackHost(location.hostname);
  }
}
