// What the browser remembers between visits: the display name, the last room, the owner keys of rooms
// (parley.ownerKeys: room -> key, from room_created and owner_key), the mic / speaker /
// camera switches and devices, the camera's background effect, and the view mode. localStorage can be
// unavailable (private modes, storage disabled): then nothing is kept. The room this tab is in is kept for
// the tab only (sessionStorage), so a reload goes back into it.

const KEY_NAME = 'parley.name';
const KEY_ROOM = 'parley.lastRoom';
const KEY_STATE = 'parley.state';
const KEY_VIEW = 'parley.viewMode';
const KEY_DEVICES = 'parley.devices';
const KEY_TAB_ROOM = 'parley.tabRoom';
const KEY_OWNER_KEYS = 'parley.ownerKeys';
const KEY_EFFECT = 'parley.effect';

export const VIEW_MODES = ['speaker', 'grid'];
/** The camera's background effects (effects.js): 'off' (the default), 'blur', 'replace'. */
export const EFFECT_MODES = ['off', 'blur', 'replace'];
/** The device kinds of enumerateDevices() that can be chosen. */
export const DEVICE_KINDS = ['audioinput', 'videoinput', 'audiooutput'];

function storage(kind) {
  try {
    return kind === 'session' ? window.sessionStorage : window.localStorage;
  } catch {
    return null;
  }
}

function read(key, kind = 'local') {
  try {
    return storage(kind).getItem(key);
  } catch {
    return null;
  }
}

function write(key, value, kind = 'local') {
  try {
    if (value == null) storage(kind).removeItem(key);
    else storage(kind).setItem(key, value);
  } catch {
    // Storage full or disabled: the preference just is not remembered.
  }
}

function readJson(key) {
  try {
    const v = JSON.parse(read(key) || '{}');
    return v && typeof v === 'object' ? v : {};
  } catch {
    return {};
  }
}

export const prefs = {
  get name() {
    return read(KEY_NAME) || '';
  },
  set name(v) {
    write(KEY_NAME, v || null);
  },
  get lastRoom() {
    return read(KEY_ROOM) || '';
  },
  set lastRoom(v) {
    write(KEY_ROOM, v || null);
  },
  /** The remembered MediaState; every flag defaults to false. */
  get state() {
    const s = readJson(KEY_STATE);
    return { mic_muted: s.mic_muted === true, deafened: s.deafened === true, camera_off: s.camera_off === true };
  },
  set state(s) {
    write(KEY_STATE, JSON.stringify({ mic_muted: !!s.mic_muted, deafened: !!s.deafened, camera_off: !!s.camera_off }));
  },
  /** 'speaker' (the default: the active speaker large, the others in a strip) or 'grid'. */
  get viewMode() {
    const v = read(KEY_VIEW);
    return VIEW_MODES.includes(v) ? v : 'speaker';
  },
  set viewMode(v) {
    write(KEY_VIEW, VIEW_MODES.includes(v) ? v : null);
  },
  /** The chosen device id per kind ('' = the system default): {audioinput, videoinput, audiooutput}. */
  get devices() {
    const d = readJson(KEY_DEVICES);
    return Object.fromEntries(DEVICE_KINDS.map((k) => [k, typeof d[k] === 'string' ? d[k] : '']));
  },
  set devices(d) {
    write(KEY_DEVICES, JSON.stringify(Object.fromEntries(DEVICE_KINDS.map((k) => [k, (d && d[k]) || '']))));
  },
  /** The camera's background effect: 'off' (the default, also for anything unknown), 'blur' or 'replace'. */
  get effect() {
    const v = read(KEY_EFFECT);
    return EFFECT_MODES.includes(v) ? v : 'off';
  },
  set effect(v) {
    write(KEY_EFFECT, EFFECT_MODES.includes(v) && v !== 'off' ? v : null);
  },
  /** The room this tab is in (kept across a reload of the tab, not for new tabs). */
  get tabRoom() {
    return read(KEY_TAB_ROOM, 'session') || '';
  },
  set tabRoom(v) {
    write(KEY_TAB_ROOM, v || null, 'session');
  },
  /** The owner key of `room` (from `room_created` or `owner_key`), or ''. */
  ownerKey(room) {
    const keys = readJson(KEY_OWNER_KEYS);
    return typeof keys[room] === 'string' ? keys[room] : '';
  },
  /** Every owner key kept, as `[{room, key}]` (proof of owning a room, where only owners create rooms). */
  ownerKeys() {
    const keys = readJson(KEY_OWNER_KEYS);
    return Object.entries(keys)
      .filter(([, key]) => typeof key === 'string' && key)
      .map(([room, key]) => ({ room, key }));
  },
  /** Keeps `key` as the owner key of `room`; an empty key forgets it. */
  setOwnerKey(room, key) {
    const keys = readJson(KEY_OWNER_KEYS);
    if (key) keys[room] = key;
    else delete keys[room];
    write(KEY_OWNER_KEYS, JSON.stringify(keys));
  },
};

/** The same rules as the server's (crates/proto): 1–32 characters after trimming, no control characters. */
export function checkDisplayName(raw) {
  const name = String(raw ?? '').trim();
  const chars = [...name].length;
  if (chars === 0) return { error: 'Please type a name.' };
  if (chars > 32) return { error: 'Names are at most 32 characters.' };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return { error: 'Names cannot contain control characters.' };
  return { name };
}
