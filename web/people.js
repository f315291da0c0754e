// The People panel of a room: everyone in it (you first) with their state (mic, camera, deafened, owner,
// studio role, reconnecting), a local volume per person (0–200 %, remembered per display name: ids change
// from visit to visit), a pin (that person is shown large, in grid and speaker view) and, for owners, the
// tile menu's Mute and Remove. It only shows and asks; app.js owns the tiles, the roster and the actions.
// The pure parts (volume storage, who is shown large) are exported for unit tests.

const VOLUMES_KEY = 'parley.volumes';
const MAX_REMEMBERED = 200; // names kept; the oldest go first

function defaultStorage() {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage;
  } catch {
    return null;
  }
}

/** A volume in percent as it is kept: a whole number 0–200; anything else is 100. */
export function clampVolume(v) {
  const n = Number(v);
  if (!Number.isFinite(n)) return 100;
  return Math.max(0, Math.min(200, Math.round(n)));
}

/** Everyone's remembered volume: {name: percent} (names whose volume is 100 % are not kept). */
export function loadVolumes(storage = defaultStorage()) {
  let raw = null;
  try {
    raw = storage ? storage.getItem(VOLUMES_KEY) : null;
  } catch {
    return {};
  }
  let obj;
  try {
    obj = JSON.parse(raw);
  } catch {
    return {};
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return {};
  const out = {};
  for (const [name, v] of Object.entries(obj)) if (typeof v === 'number' && Number.isFinite(v)) out[name] = clampVolume(v);
  return out;
}

/** The volume (percent) remembered for display name `name`; 100 when none. */
export function volumeFor(name, storage = defaultStorage()) {
  const all = loadVolumes(storage);
  return Object.prototype.hasOwnProperty.call(all, name) ? all[name] : 100;
}

/** Remembers `percent` for display name `name` (100 forgets it); returns the value kept. */
export function saveVolume(name, percent, storage = defaultStorage()) {
  const v = clampVolume(percent);
  const all = loadVolumes(storage);
  delete all[name]; // re-added last: the newest at the end
  if (v !== 100) all[name] = v;
  const names = Object.keys(all);
  for (const old of names.slice(0, Math.max(0, names.length - MAX_REMEMBERED))) delete all[old];
  try {
    if (storage) storage.setItem(VOLUMES_KEY, JSON.stringify(all));
  } catch {
    // storage full or refused: the volume holds for this visit only
  }
  return v;
}

/**
 * Who is shown large. `people`: the others on the stage, [{id, camera (on), muted}] in stage order;
 * `pinned`: the id pinned (wins in either view); `speaker`: the room's active speaker; `previous`: who was
 * large before. Grid view: only a pinned person. Speaker view: the active speaker who is on camera or
 * unmuted, else whoever was large before if still on camera or unmuted, else the first on camera, else the
 * first of the others. A muted person with the camera off is never kept large over someone on camera.
 * Returns an id or null.
 */
export function chooseLarge({ people = [], pinned = null, speaker = null, previous = null, viewMode = 'speaker' } = {}) {
  const byId = (id) => (id == null ? null : people.find((p) => String(p.id) === String(id)) || null);
  const pin = byId(pinned);
  if (pin) return pin.id;
  if (viewMode !== 'speaker' || people.length === 0) return null;
  const shows = (p) => !!p && (p.camera || !p.muted);
  const s = byId(speaker);
  if (shows(s)) return s.id;
  const prev = byId(previous);
  if (shows(prev)) return prev.id;
  const onCamera = people.find((p) => p.camera);
  if (onCamera) return onCamera.id;
  return people[0].id;
}

/** The state words shown for a person: [text, key] pairs, in a fixed order. */
export function stateLabels(p) {
  const out = [];
  if (p.reconnecting) out.push(['Reconnecting…', 'reconnecting']);
  if (p.owner) out.push(['Owner', 'owner']);
  const role = { producer: 'Producer', artist: 'Artist', listener: 'Listener' }[p.studio_role];
  if (role) out.push([role, 'studio-role']);
  if (p.mic_muted) out.push(['Muted', 'muted']);
  if (p.camera_off) out.push(['Camera off', 'camera-off']);
  if (p.deafened) out.push(['Deafened', 'deafened']);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// In the page

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

/**
 * @param {{
 *   root: HTMLElement,            the panel's element (built here)
 *   button: HTMLElement,          the controls' People button (aria-pressed follows)
 *   people: () => Array<object>,  everyone: {id, name, self, mic_muted, camera_off, deafened, owner, studio_role, reconnecting}, you first
 *   pinned: () => string | null,
 *   canManage: () => boolean,
 *   onVolume: (id, name, percent) => void,
 *   onPin: (id) => void,          pins `id`, or unpins when it is pinned already
 *   onAction: (action, id) => void,  'mute' | 'kick' (app.js participantAction)
 * }} opts
 */
export class PeoplePanel {
  constructor(opts) {
    Object.assign(this, opts);
    this.rows = new Map(); // id -> {li, ...parts}
    const root = this.root;
    root.replaceChildren();
    root.setAttribute('role', 'region');
    root.setAttribute('aria-labelledby', 'people-title');
    const head = el('div', 'people-head');
    const h = el('h2', '', 'People');
    h.id = 'people-title';
    this.count = el('span', 'people-count muted');
    h.append(' ', this.count);
    const close = el('button', 'icon-btn');
    close.type = 'button';
    close.dataset.testid = 'people-close';
    close.setAttribute('aria-label', 'Close people');
    close.innerHTML = '<svg aria-hidden="true"><use href="#i-close"/></svg>';
    close.addEventListener('click', () => this.setOpen(false, { refocus: true }));
    head.append(h, close);
    this.list = el('ul', 'people-list');
    this.list.dataset.testid = 'people-list';
    root.append(head, this.list);
    this.button.addEventListener('click', () => this.toggle());
    root.hidden = true;
  }

  get isOpen() {
    return !this.root.hidden;
  }

  toggle() {
    this.setOpen(!this.isOpen);
  }

  setOpen(open, { refocus = false } = {}) {
    this.root.hidden = !open;
    this.button.setAttribute('aria-pressed', String(open));
    this.button.classList.toggle('is-active', open);
    if (open) {
      this.render();
      this.root.focus({ preventScroll: true }); // the region itself: P closes it again, Tab reaches the sliders
    } else if (refocus) {
      this.button.focus();
    }
  }

  /** Draws the list again from `people()` (rows are kept by id, so a slider being dragged stays). */
  render() {
    if (!this.isOpen) return;
    const people = this.people();
    this.count.textContent = `(${people.length})`;
    const seen = new Set();
    let prev = null;
    for (const p of people) {
      const id = String(p.id);
      seen.add(id);
      let row = this.rows.get(id);
      if (!row || row.self !== !!p.self) {
        if (row) row.li.remove();
        row = this.buildRow(id, !!p.self);
        this.rows.set(id, row);
      }
      this.fillRow(row, p);
      const want = prev ? prev.nextSibling : this.list.firstChild;
      if (want !== row.li) this.list.insertBefore(row.li, want);
      prev = row.li;
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.li.remove();
        this.rows.delete(id);
      }
    }
  }

  buildRow(id, self) {
    const li = el('li', 'people-row');
    li.dataset.participantId = id;
    li.dataset.testid = 'people-row';
    const top = el('div', 'people-top');
    const name = el('span', 'people-name');
    name.dataset.testid = 'people-name';
    const states = el('span', 'people-states');
    states.dataset.testid = 'people-states';
    top.append(name, states);
    li.append(top);
    const row = { li, self, name, states };
    if (self) return row;
    const volume = el('div', 'people-volume');
    const sliderId = `people-volume-${id}`;
    const label = el('label', 'people-volume-label');
    label.htmlFor = sliderId;
    const slider = el('input', 'people-slider');
    slider.type = 'range';
    slider.id = sliderId;
    slider.min = '0';
    slider.max = '200';
    slider.step = '5';
    slider.dataset.testid = 'people-volume';
    const out = el('output', 'people-volume-value');
    out.htmlFor = sliderId;
    slider.addEventListener('input', () => {
      out.textContent = `${slider.value}%`;
      this.onVolume(id, row.personName, Number(slider.value));
    });
    volume.append(label, slider, out);
    const actions = el('div', 'people-actions');
    const pin = el('button', 'btn small');
    pin.type = 'button';
    pin.dataset.testid = 'people-pin';
    pin.addEventListener('click', () => this.onPin(id));
    const mute = el('button', 'btn small');
    mute.type = 'button';
    mute.dataset.testid = 'people-mute';
    mute.addEventListener('click', () => this.onAction('mute', id));
    const kick = el('button', 'btn small danger');
    kick.type = 'button';
    kick.dataset.testid = 'people-kick';
    kick.textContent = 'Remove';
    kick.addEventListener('click', () => this.onAction('kick', id));
    actions.append(pin, mute, kick);
    li.append(volume, actions);
    return Object.assign(row, { label, slider, out, pin, mute, kick });
  }

  fillRow(row, p) {
    const name = p.name || '';
    row.personName = name;
    row.name.textContent = p.self ? `${name} (you)` : name;
    row.states.replaceChildren();
    for (const [text, key] of stateLabels(p)) {
      const b = el('span', `people-state ${key}`, text);
      b.dataset.state = key;
      row.states.append(b);
    }
    row.li.classList.toggle('reconnecting', !!p.reconnecting);
    if (row.self) return;
    row.label.textContent = `Volume for ${name}`;
    if (document.activeElement !== row.slider) row.slider.value = String(p.volume);
    row.out.textContent = `${row.slider.value}%`;
    const pinned = this.pinned() === row.li.dataset.participantId;
    row.pin.textContent = pinned ? 'Unpin' : 'Pin';
    row.pin.setAttribute('aria-pressed', String(pinned));
    row.pin.setAttribute('aria-label', `${pinned ? 'Unpin' : 'Pin'} ${name}`);
    const can = this.canManage();
    row.mute.hidden = !can;
    row.kick.hidden = !can;
    row.mute.disabled = !!p.mic_muted;
    row.mute.textContent = p.mic_muted ? 'Muted' : 'Mute';
    row.mute.setAttribute('aria-label', p.mic_muted ? `${name} is muted` : `Mute ${name}`);
    row.kick.setAttribute('aria-label', `Remove ${name} from the room`);
  }

  /** Left the room: closed and emptied. */
  clear() {
    this.setOpen(false);
    this.list.replaceChildren();
    this.rows.clear();
  }
}
