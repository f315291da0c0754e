// Push-to-talk: a mode (Devices dialog) in which the microphone is muted except while a key is held
// (Space unless the person picks another: "press a key"), or the mic button is held down (phones). Talking
// unmutes exactly the way the mic button does (the app's setMuted: replaceTrack, then set_state to the
// server, so the others see it); releasing the key, the window losing focus or the page being hidden mutes
// again. The key does nothing while typing in a text field, with a modal dialog open, or outside a room.
// Remembered in localStorage (parley.ptt: {on, code, label}); KeyboardEvent.code names the key, so it is
// the same physical key on every keyboard layout. The pure parts are exported for unit tests.

import { isTypingTarget, modalOpen } from './shortcuts.js';

const KEY_PTT = 'parley.ptt';
export const DEFAULT_PTT = { on: false, code: 'Space', label: 'Space' };

/** The remembered push-to-talk setting (the default when nothing or nonsense is stored). */
export function loadPtt(storage = safeStorage()) {
  try {
    const v = JSON.parse((storage && storage.getItem(KEY_PTT)) || 'null');
    if (!v || typeof v !== 'object') return { ...DEFAULT_PTT };
    const code = typeof v.code === 'string' && /^[A-Za-z0-9]{1,32}$/.test(v.code) ? v.code : DEFAULT_PTT.code;
    const label = typeof v.label === 'string' && v.label && v.label.length <= 32 ? v.label : keyLabel(code, '');
    return { on: v.on === true, code, label };
  } catch {
    return { ...DEFAULT_PTT };
  }
}

export function savePtt(value, storage = safeStorage()) {
  try {
    storage.setItem(KEY_PTT, JSON.stringify({ on: !!value.on, code: value.code, label: value.label }));
  } catch {
    // storage full or disabled: not remembered
  }
}

function safeStorage() {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

const MODIFIER_NAMES = { Control: 'Ctrl', Shift: 'Shift', Alt: 'Alt', Meta: 'Meta', OS: 'Meta' };

/** How a key (its KeyboardEvent `code`, and `key` when known) is named for people: "Space", "T", "Left Ctrl". */
export function keyLabel(code, key = '') {
  if (code === 'Space') return 'Space';
  let m = /^Key([A-Z])$/.exec(code);
  if (m) return m[1];
  m = /^Digit([0-9])$/.exec(code);
  if (m) return m[1];
  m = /^(Control|Shift|Alt|Meta|OS)(Left|Right)$/.exec(code);
  if (m) return `${m[2]} ${MODIFIER_NAMES[m[1]]}`;
  m = /^Numpad(.+)$/.exec(code);
  if (m) return `Numpad ${m[1]}`;
  if (/^F[0-9]{1,2}$/.test(code)) return code;
  if (typeof key === 'string' && [...key].length === 1 && key.trim()) return key.toUpperCase();
  return code.replace(/([a-z])([A-Z])/g, '$1 $2');
}

function isModifierCode(code) {
  return /^(Control|Alt|Meta|OS|Shift)(Left|Right)$/.test(code);
}

/** Keys the shortcuts use (shortcuts.js): not offered as the talk key. */
const SHORTCUT_KEYS = new Set(['m', 'v', 'd', 'c', 'p', '?']);

/**
 * What a key pressed while choosing the talk key means: {cancel: true} (Esc), {refuse: why}, or
 * {code, label} (the new key).
 */
export function captureVerdict(ev) {
  if (ev.key === 'Escape') return { cancel: true };
  const code = typeof ev.code === 'string' ? ev.code : '';
  if (!code || code === 'Unidentified' || !/^[A-Za-z0-9]{1,32}$/.test(code)) return { refuse: 'That key cannot be told apart from others; choose another.' };
  if (code === 'Tab') return { refuse: 'Tab moves between controls; choose another key.' };
  const key = typeof ev.key === 'string' ? ev.key.toLowerCase() : '';
  const label = keyLabel(code, ev.key);
  if (SHORTCUT_KEYS.has(key)) return { refuse: `${label} is a shortcut (press ? in a room for the list); choose another key.` };
  return { code, label };
}

/**
 * What a keydown means for push-to-talk: 'talk' (start talking), 'hold' (a repeat of the held key: keep
 * talking, swallow it) or null (not ours). `ctx`: {on, code, inRoom, modal}.
 */
export function pttKeyAction(ev, { on = false, code = DEFAULT_PTT.code, inRoom = false, modal = false } = {}) {
  if (!on || !inRoom || !ev || ev.code !== code) return null;
  if (modal || ev.isComposing || isTypingTarget(ev.target)) return null;
  // A modifier may be the talk key itself; any other key with Ctrl / Alt / Meta held is the browser's.
  if (!isModifierCode(code) && (ev.ctrlKey || ev.altKey || ev.metaKey)) return null;
  return ev.repeat ? 'hold' : 'talk';
}

const $ = (id) => document.getElementById(id);

/**
 * @param {{
 *   button: HTMLElement,                 the mic button (held down to talk while push-to-talk is on)
 *   setMuted: (muted: boolean) => Promise<void>,   mutes / unmutes as the mic button does (not remembered)
 *   isMuted: () => boolean,
 *   inRoom: () => boolean,
 *   canTalk: () => boolean,              false for a studio listener (no microphone)
 *   onChange: () => void,                the controls are drawn again (mode, key, talking)
 *   say: (text: string) => void,         a short hint by the mic button
 * }} opts
 */
export class PushToTalk {
  constructor({ button, setMuted, isMuted, inRoom, canTalk, onChange, say }) {
    Object.assign(this, { button, setMuted, isMuted, inRoom, canTalk, onChange, say });
    const saved = loadPtt();
    this.on = saved.on;
    this.code = saved.code;
    this.label = saved.label;
    this.holders = new Set(); // 'key' | 'pointer': what holds the talk on now
    this.syncing = false;
    this.again = false;
    this.capturing = false;
    this.swallowUp = null; // the key whose keyup belongs to choosing it

    document.addEventListener('keydown', (ev) => this.onKeyDown(ev), true);
    document.addEventListener('keyup', (ev) => this.onKeyUp(ev), true);
    window.addEventListener('blur', () => this.releaseAll());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.releaseAll();
    });
    window.addEventListener('pagehide', () => this.releaseAll());
    setInterval(() => {
      if (this.holders.size && !this.inRoom()) this.releaseAll(); // left the room while holding
    }, 250);

    // The mic button, held down.
    button.addEventListener('pointerdown', (ev) => {
      if (!this.on || ev.button !== 0) return;
      ev.preventDefault();
      try {
        button.setPointerCapture(ev.pointerId);
      } catch {
        // not capturable: pointerup still comes to the button
      }
      this.hold('pointer');
    });
    for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
      button.addEventListener(type, () => this.release('pointer'));
    }
    button.addEventListener('contextmenu', (ev) => {
      if (this.on) ev.preventDefault(); // a long press on a phone
    });
    button.addEventListener('click', (ev) => {
      if (this.on && ev.detail === 0) this.say(this.holdText()); // Enter on the button: says how it works
    });

    this.bindSettings();
  }

  /** "Hold Space to talk". */
  holdText() {
    return `Hold ${this.label} to talk`;
  }

  get talking() {
    return this.holders.size > 0;
  }

  onKeyDown(ev) {
    if (this.capturing) {
      this.captureKey(ev);
      return;
    }
    const action = pttKeyAction(ev, { on: this.on, code: this.code, inRoom: this.inRoom(), modal: modalOpen() });
    if (!action) return;
    ev.preventDefault(); // no scrolling, no button pressed by Space, no shortcut on the same key
    ev.stopPropagation();
    if (action === 'talk') this.hold('key');
  }

  onKeyUp(ev) {
    if (this.swallowUp && ev.code === this.swallowUp) {
      this.swallowUp = null;
      ev.preventDefault();
      ev.stopPropagation();
      return;
    }
    if (ev.code !== this.code || !this.holders.has('key')) return;
    ev.preventDefault();
    this.release('key');
  }

  hold(what) {
    if (!this.on || !this.inRoom() || !this.canTalk()) return;
    if (this.holders.has(what)) return;
    this.holders.add(what);
    this.sync();
  }

  release(what) {
    if (!this.holders.delete(what)) return;
    this.sync();
  }

  releaseAll() {
    if (this.holders.size === 0) return;
    this.holders.clear();
    this.sync();
  }

  /**
   * Brings the microphone to what push-to-talk wants (talking while held, muted otherwise), one change at a
   * time; a key released while unmuting is still in progress mutes as soon as that is done.
   */
  async sync() {
    if (this.syncing) {
      this.again = true;
      return;
    }
    this.syncing = true;
    try {
      do {
        this.again = false;
        if (!this.on) break;
        const want = this.talking && this.inRoom() && this.canTalk();
        if (want === !this.isMuted()) continue;
        await this.setMuted(!want);
        // Not there (the device failed, with a toast; or another change of the mic was under way): given up
        // until the next press or release.
      } while (this.again);
    } catch (err) {
      console.error('[parley] push-to-talk', err);
    } finally {
      this.syncing = false;
      this.onChange();
    }
  }

  /** Turns the mode on or off (remembered). On: the microphone is muted now. Off: it stays muted. */
  setOn(on) {
    this.on = !!on;
    this.holders.clear();
    this.save();
    if (this.box) this.box.checked = this.on;
    this.onChange();
    if (this.on && this.inRoom() && !this.isMuted()) this.setMuted(true).finally(() => this.onChange());
  }

  save() {
    savePtt({ on: this.on, code: this.code, label: this.label });
  }

  // -------------------------------------------------------------------------------------------------------
  // The settings (in the Devices dialog)

  bindSettings() {
    this.box = $('ptt-on');
    this.keyBtn = $('ptt-key');
    this.note = $('ptt-note');
    if (!this.box || !this.keyBtn) return;
    this.box.checked = this.on;
    this.box.addEventListener('change', () => this.setOn(this.box.checked));
    this.keyBtn.addEventListener('click', () => {
      if (this.capturing) this.stopCapture();
      else this.startCapture();
    });
    this.keyBtn.addEventListener('blur', () => this.stopCapture());
    const dialog = this.keyBtn.closest('dialog');
    if (dialog) dialog.addEventListener('close', () => this.stopCapture());
    this.renderSettings();
  }

  renderSettings(note = '') {
    if (!this.keyBtn) return;
    this.keyBtn.textContent = this.capturing ? 'Press a key…' : this.label;
    this.keyBtn.classList.toggle('is-capturing', this.capturing);
    if (this.note) this.note.textContent = note || (this.capturing ? 'Press the key to hold while you talk (Esc keeps the old one).' : '');
  }

  startCapture() {
    this.capturing = true;
    this.renderSettings();
  }

  stopCapture(note = '') {
    if (!this.capturing) return;
    this.capturing = false;
    this.renderSettings(note);
  }

  /** A key pressed while choosing: it becomes the talk key (Esc cancels; some keys are refused). */
  captureKey(ev) {
    ev.preventDefault();
    ev.stopPropagation(); // neither the dialog (Esc) nor a shortcut sees it
    if (ev.repeat) return;
    const v = captureVerdict(ev);
    if (v.cancel) {
      this.swallowUp = ev.code || null;
      this.stopCapture();
      return;
    }
    if (v.refuse) {
      this.renderSettings(v.refuse);
      return;
    }
    this.code = v.code;
    this.label = v.label;
    this.swallowUp = v.code;
    this.save();
    this.stopCapture(`Hold ${v.label} to talk.`);
    this.onChange();
  }
}
