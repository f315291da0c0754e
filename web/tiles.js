// One tile per participant: video (or an avatar with initials), name, state icons (owner, muted,
// deafened, camera off), a level meter and, for room owners, a menu button on the others' tiles.
// Names come from other people: they are only ever set with textContent.

import { LevelMeter, SPEAKING_POSITION } from './levels.js';

const SVG = 'http://www.w3.org/2000/svg';
const STATE_ICONS = [
  ['icon-owner', 'Room owner', '#i-crown'],
  ['icon-mic-muted', 'Microphone muted', '#i-mic-off'],
  ['icon-deafened', 'Deafened', '#i-headphones-off'],
  ['icon-camera-off', 'Camera off', '#i-cam-off'],
];

function make(tag, className, attrs = {}) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/** The markup of one tile, shared by the room page and the wall screen (icons come from the page's sprite). */
function buildTile() {
  const figure = make('figure', 'tile');
  const video = make('video', 'tile-video', { autoplay: '', playsinline: '' });
  video.muted = true;
  const avatar = make('div', 'avatar', { 'aria-hidden': 'true' });
  avatar.append(make('span', 'initials'));
  const bar = make('figcaption', 'tile-bar');
  const meter = make('span', 'meter', { 'aria-hidden': 'true' });
  meter.append(make('span', 'meter-fill'));
  const icons = make('span', 'tile-icons');
  for (const [testid, label, href] of STATE_ICONS) {
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'state-icon');
    svg.setAttribute('data-testid', testid);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    svg.setAttribute('hidden', '');
    const use = document.createElementNS(SVG, 'use');
    use.setAttribute('href', href);
    svg.append(use);
    icons.append(svg);
  }
  // Studio mode: the person's role (studio.js sets it).
  const role = make('span', 'tile-role', { 'data-testid': 'tile-studio-role', hidden: '' });
  // Their connection dropped and the server keeps their place (people.js shows it in the panel too).
  const status = make('span', 'tile-status', { 'data-testid': 'tile-reconnecting', hidden: '' });
  status.textContent = 'Reconnecting…';
  bar.append(meter, make('span', 'tile-name'), role, status, icons);
  const menu = make('button', 'icon-btn tile-menu-btn', { type: 'button', 'data-testid': 'tile-menu', 'aria-haspopup': 'menu', 'aria-expanded': 'false', hidden: '' });
  const dots = document.createElementNS(SVG, 'svg');
  dots.setAttribute('aria-hidden', 'true');
  const dotsUse = document.createElementNS(SVG, 'use');
  dotsUse.setAttribute('href', '#i-more');
  dots.append(dotsUse);
  menu.append(dots);
  figure.append(video, avatar, bar, menu);
  return figure;
}

let audioOutput = ''; // the chosen speaker device ('' = the default), for every tile's <audio>

/** Plays everyone's sound on output device `deviceId` ('' = default) where the browser can choose. */
export function setAudioOutput(deviceId, tiles = []) {
  audioOutput = deviceId || '';
  for (const t of tiles) t.applyAudioOutput();
}

/** Whether this browser can choose the speaker device (HTMLMediaElement.setSinkId). */
export const canChooseAudioOutput = typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;

/** Up to two initials from a display name ("Ann Lee" -> "AL", "bo" -> "B"). */
export function initials(name) {
  const words = String(name || '').trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return '?';
  const first = (w) => Array.from(w)[0] || '';
  const s = words.length === 1 ? first(words[0]) : first(words[0]) + first(words[words.length - 1]);
  return s.toLocaleUpperCase();
}

/** A stable hue for a name, so a person keeps their avatar colour. */
export function hueFor(name) {
  let h = 0;
  for (const ch of String(name || '')) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

export class Tile {
  /**
   * @param {{id: string, name: string, self?: boolean}} opts
   */
  constructor({ id, name, self = false }) {
    this.id = String(id);
    this.self = self;
    this.info = { name, mic_muted: false, deafened: false, camera_off: false, owner: false };
    this.videoTrack = null;
    this.audioTrack = null;
    this.audioEl = null;
    this.meter = null;
    this.meterShown = 0; // the level meter's position, 0..1
    this.deafened = false;
    this.volume = 1; // this person's local volume, 0..2 (people.js)
    this.onAutoplayBlocked = null;

    const el = buildTile();
    this.el = el;
    el.dataset.participantId = this.id;
    if (self) el.classList.add('self');
    this.video = el.querySelector('.tile-video');
    this.avatar = el.querySelector('.avatar');
    this.initialsEl = el.querySelector('.initials');
    this.nameEl = el.querySelector('.tile-name');
    this.meterFill = el.querySelector('.meter-fill');
    this.menuBtn = el.querySelector('.tile-menu-btn');
    this.roleEl = el.querySelector('.tile-role');
    this.statusEl = el.querySelector('.tile-status');
    this.studioRole = null;
    this.onMenu = null;
    this.menuBtn.addEventListener('click', () => {
      if (this.onMenu) this.onMenu(this.menuBtn);
    });
    this.icons = {
      owner: el.querySelector('[data-testid="icon-owner"]'),
      mic_muted: el.querySelector('[data-testid="icon-mic-muted"]'),
      deafened: el.querySelector('[data-testid="icon-deafened"]'),
      camera_off: el.querySelector('[data-testid="icon-camera-off"]'),
    };
    this.video.muted = true; // video elements never play sound; audio has its own element
    this.video.addEventListener('loadeddata', () => this.refreshVideo());
    this.video.addEventListener('resize', () => this.refreshVideo());
    this.setInfo({ name });
  }

  /** Name, owner and mic / deafen / camera flags, as the server reports them. */
  setInfo(info) {
    Object.assign(this.info, info);
    const name = this.info.name || '';
    const label = `${name}${this.self ? ' (you)' : ''}${this.info.owner ? ', owner' : ''}${this.studioRole ? `, ${this.studioRole}` : ''}${this.info.reconnecting ? ', reconnecting' : ''}`;
    this.nameEl.textContent = this.self ? `${name} (you)` : name;
    this.el.setAttribute('aria-label', label);
    this.menuBtn.setAttribute('aria-label', `Actions for ${name}`);
    this.initialsEl.textContent = initials(name);
    this.avatar.style.setProperty('--hue', String(hueFor(name)));
    for (const [flag, icon] of Object.entries(this.icons)) {
      const on = !!this.info[flag];
      icon.toggleAttribute('hidden', !on); // SVG elements have no .hidden property
      this.el.classList.toggle(flag.replace('_', '-'), on);
    }
    this.statusEl.hidden = !this.info.reconnecting;
    this.el.classList.toggle('reconnecting', !!this.info.reconnecting);
    this.refreshVideo();
  }

  /** Studio mode: 'producer' | 'artist' | 'listener' shown on the tile (data-studio-role too); null: none. */
  setStudioRole(role) {
    const label = { producer: 'Producer', artist: 'Artist', listener: 'Listener' }[role] || '';
    if ((label ? role : null) === this.studioRole) return;
    this.studioRole = label ? role : null;
    this.roleEl.textContent = label;
    this.roleEl.hidden = !label;
    if (label) this.el.dataset.studioRole = role;
    else delete this.el.dataset.studioRole;
    this.setInfo({}); // the tile's label says the role too
  }

  /**
   * Shows the menu button (owners, on the others' tiles) that calls `onMenu(button)`; null hides it.
   */
  setMenu(onMenu) {
    this.onMenu = onMenu || null;
    this.menuBtn.hidden = !this.onMenu;
  }

  setVideoTrack(track) {
    if (track === this.videoTrack) {
      this.refreshVideo();
      return;
    }
    this.videoTrack = track || null;
    this.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) this.video.play().catch(() => {});
    this.refreshVideo();
  }

  /** Shows the video only when there is a live, unmuted track and the camera is on. */
  refreshVideo() {
    const t = this.videoTrack;
    const show = !!t && t.readyState === 'live' && !t.muted && !this.info.camera_off;
    this.el.classList.toggle('has-video', show);
  }

  /** Remote tiles: plays the track in an <audio> element and measures it. Own tile: measures only. */
  setAudioTrack(track) {
    if (track === this.audioTrack) return;
    this.audioTrack = track || null;
    if (this.meter) this.meter.close();
    this.meter = null;
    if (!track) {
      if (this.audioEl) this.audioEl.srcObject = null;
      return;
    }
    const stream = new MediaStream([track]);
    if (!this.self) {
      if (!this.audioEl) {
        this.audioEl = document.createElement('audio');
        this.audioEl.autoplay = true;
        this.audioEl.className = 'tile-audio';
        this.el.appendChild(this.audioEl);
        this.applyAudioOutput();
      }
      this.audioEl.muted = this.deafened;
      this.audioEl.srcObject = stream;
      this.audioEl.play().catch((err) => {
        if (err && err.name === 'NotAllowedError' && this.onAutoplayBlocked) this.onAutoplayBlocked();
      });
    }
    this.meter = new LevelMeter(stream);
    this.applyVolume();
  }

  /** This person's local volume in percent (0–200): 0 silences them here only. */
  setVolume(percent) {
    this.volume = Math.max(0, Math.min(2, Number(percent) / 100 || 0));
    this.applyVolume();
  }

  /**
   * Up to 100 % the <audio> element plays at that volume (the browser's own path: echo cancellation and the
   * chosen speaker stay); above it the element is muted and the Web Audio gain plays instead. The meter
   * (remoteLevel) always measures after the gain.
   */
  applyVolume() {
    if (this.self) return;
    const boost = this.volume > 1 && !this.deafened;
    if (this.meter) {
      this.meter.setGain(this.volume);
      this.meter.setOutput(boost);
    }
    if (this.audioEl) {
      this.audioEl.volume = Math.min(1, this.volume);
      this.audioEl.muted = this.deafened || boost;
    }
  }

  applyAudioOutput() {
    const el = this.audioEl;
    if (!el || !canChooseAudioOutput || el.sinkId === audioOutput) return;
    el.setSinkId(audioOutput).catch((err) => console.warn('[parley] speaker device', err.name, err.message));
  }

  /** Shows a level on the meter (0..1); from about -40 dB on, the tile gets its "speaking" ring. */
  showLevel(position) {
    if (Math.abs(position - this.meterShown) < 0.005) return;
    this.meterShown = position;
    this.meterFill.style.transform = `scaleX(${position.toFixed(3)})`;
    this.el.classList.toggle('speaking', position >= SPEAKING_POSITION);
  }

  setDeafened(deafened) {
    this.deafened = deafened;
    if (this.audioEl) this.audioEl.muted = deafened;
    this.applyVolume();
  }

  /** Retries playback after the browser blocked autoplay. */
  resume() {
    if (this.audioEl && this.audioEl.srcObject) this.audioEl.play().catch(() => {});
    if (this.video.srcObject) this.video.play().catch(() => {});
  }

  /** Current RMS level of this participant's audio, 0..1. */
  level() {
    return this.meter ? this.meter.level() : 0;
  }

  destroy() {
    if (this.meter) this.meter.close();
    this.meter = null;
    if (this.audioEl) {
      this.audioEl.srcObject = null;
      this.audioEl.remove();
    }
    this.video.srcObject = null;
    this.el.remove();
  }
}

/** The largest 16:9 tile width that fits `n` tiles into W x H, and the rows it takes. */
function fitTiles(n, W, H, gap) {
  let best = { width: 0, rows: 1 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const w = Math.min((W - gap * (cols - 1)) / cols, ((H - gap * (rows - 1)) / rows) * (16 / 9));
    if (w > best.width) best = { width: w, rows };
  }
  return best;
}

/**
 * Sizes the 16:9 tiles in `container` (a wrapping flex box) as large as it allows. With a `featured`
 * tile, that one is shown large and the others in a strip below (CSS: `.featured`, `.active-speaker`).
 */
export function layoutStage(container, tiles, featured = null) {
  const n = tiles.length;
  container.dataset.count = String(n);
  container.classList.toggle('featured', !!featured && n > 1);
  for (const t of tiles) t.el.classList.toggle('active-speaker', t === featured);
  if (n === 0) return;
  const style = getComputedStyle(container);
  const gap = parseFloat(style.columnGap) || 8;
  const W = container.clientWidth - (parseFloat(style.paddingLeft) || 0) - (parseFloat(style.paddingRight) || 0);
  const H = container.clientHeight - (parseFloat(style.paddingTop) || 0) - (parseFloat(style.paddingBottom) || 0);
  if (W <= 0 || H <= 0) return;
  const minW = Math.min(W, 150); // never smaller than a thumbnail a phone can show; the stage scrolls past that
  if (!featured || n === 1) {
    const { width } = fitTiles(n, W, H, gap);
    container.style.setProperty('--tile-w', `${Math.floor(Math.max(Math.min(width, W), minW))}px`);
    return;
  }
  // The strip gets about a quarter of the height and the speaker the rest; when the speaker is as wide
  // as the stage (phones), the strip may use whatever height is left.
  const stripHeight = (st) => st.rows * st.width * (9 / 16) + (st.rows - 1) * gap;
  let strip = fitTiles(n - 1, W, H * 0.26, gap);
  let big = Math.min(W, (H - stripHeight(strip) - 2 * gap) * (16 / 9));
  const spare = H - big * (9 / 16) - 2 * gap;
  if (spare > H * 0.26) {
    strip = fitTiles(n - 1, W, Math.min(spare, H * 0.45), gap);
    big = Math.min(W, (H - stripHeight(strip) - 2 * gap) * (16 / 9));
  }
  const small = Math.max(Math.min(strip.width, W), Math.min(W, 120));
  container.style.setProperty('--tile-w-small', `${Math.floor(small)}px`);
  container.style.setProperty('--tile-w', `${Math.floor(Math.max(big, minW))}px`);
}
