// What the browser remembers between visits: the display name, the last room and the mic / speaker /
// camera choices. localStorage can be unavailable (private modes, storage disabled): then nothing is kept.

const KEY_NAME = 'parley.name';
const KEY_ROOM = 'parley.lastRoom';
const KEY_STATE = 'parley.state';

function read(key) {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

function write(key, value) {
  try {
    if (value == null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    // Storage full or disabled: the preference just is not remembered.
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
    let s = {};
    try {
      s = JSON.parse(read(KEY_STATE) || '{}') || {};
    } catch {
      s = {};
    }
    return { mic_muted: s.mic_muted === true, deafened: s.deafened === true, camera_off: s.camera_off === true };
  },
  set state(s) {
    write(KEY_STATE, JSON.stringify({ mic_muted: !!s.mic_muted, deafened: !!s.deafened, camera_off: !!s.camera_off }));
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
