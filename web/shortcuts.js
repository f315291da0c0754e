// Keyboard shortcuts in a room, their help dialog, and the "You're muted" hint.
//
// Keys (ev.key, any case, Shift allowed; never with Ctrl, Alt or Meta, never while typing in a text field,
// never in the lobby; only Esc while a modal dialog is open, and that one the dialog handles itself):
//   M mute / unmute · V camera · D deafen · C chat · P people · Esc closes the open panel · ? lists the keys.
// With push-to-talk on (ptt.js), M mutes nothing: it says how to talk instead. A studio producer's M drops
// a marker (studio.js sees the key first and takes it).
//
// The hint: while the microphone is muted (by the button or waiting for push-to-talk), the page measures
// the microphone itself (a clone of the muted track, analysed only, never sent) and after ~0.5 s of voice
// shows "You're muted — press M to unmute" by the mic button; a few seconds of silence, unmuting or
// leaving hides it. The pure parts (which key does what, the voice detector) are exported for unit tests.

import { LevelMeter } from './levels.js';

/** The shortcuts as the help dialog lists them: [keys shown, what it does]. */
export const SHORTCUTS = [
  ['M', 'Mute or unmute the microphone'],
  ['V', 'Turn the camera on or off'],
  ['D', 'Deafen or undeafen (hear nobody)'],
  ['C', 'Open or close the chat'],
  ['P', 'Open or close the people list'],
  ['Esc', 'Close the open panel or dialog'],
  ['?', 'Show these shortcuts'],
];

const LETTERS = { m: 'mic', v: 'camera', d: 'deafen', c: 'chat', p: 'people' };

/**
 * Whether `target` (an event target) is a place where keys type: an input, textarea or select, or
 * editable content (itself or inside one). Works on anything element-like, so tests can pass plain objects.
 */
export function isTypingTarget(target) {
  if (!target || typeof target !== 'object') return false;
  if (target.isContentEditable) return true;
  if (typeof target.closest === 'function') {
    return !!target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"], [contenteditable="plaintext-only"]');
  }
  const tag = typeof target.tagName === 'string' ? target.tagName.toUpperCase() : '';
  return tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT';
}

/**
 * What a keydown does: 'mic' | 'camera' | 'deafen' | 'chat' | 'people' | 'help' | 'escape', or null (not ours).
 * `ctx`: {inRoom, modal (a modal dialog is open)}.
 * Esc counts while typing too (it types nothing): from the chat box it closes the chat.
 */
export function shortcutAction(ev, { inRoom = false, modal = false } = {}) {
  if (!ev || !inRoom) return null;
  if (ev.ctrlKey || ev.altKey || ev.metaKey || ev.isComposing || ev.defaultPrevented) return null;
  if (ev.key === 'Escape') return modal ? null : 'escape';
  if (modal || ev.repeat || isTypingTarget(ev.target)) return null;
  if (ev.key === '?') return 'help';
  if (typeof ev.key !== 'string' || ev.key.length !== 1) return null;
  return LETTERS[ev.key.toLowerCase()] || null;
}

/** Whether a modal dialog is open (everything outside it is inert then). */
export function modalOpen(doc = document) {
  try {
    return !!doc.querySelector('dialog:modal');
  } catch {
    return !!doc.querySelector('dialog[open]'); // no :modal in this browser
  }
}

// ---------------------------------------------------------------------------------------------------------
// The voice detector behind the hint (pure: times in ms are passed in)

/** Above this RMS (about -40 dBFS, where the tiles' "speaking" ring starts) the microphone hears voice. */
export const VOICE_RMS = 0.01;

export class VoiceDetector {
  /**
   * @param {{threshold?: number, showAfterMs?: number, gapMs?: number, hideAfterMs?: number}} opts
   * Shown after `showAfterMs` of voice (pauses up to `gapMs` belong to it); hidden after `hideAfterMs`
   * without voice.
   */
  constructor({ threshold = VOICE_RMS, showAfterMs = 500, gapMs = 300, hideAfterMs = 3000 } = {}) {
    Object.assign(this, { threshold, showAfterMs, gapMs, hideAfterMs });
    this.reset();
  }

  reset() {
    this.runStart = null; // when the current stretch of voice began
    this.lastVoice = null; // the latest moment with voice
    this.shown = false;
  }

  /** One measurement (`rms` 0..1 at time `now` ms); returns whether the hint should be shown. */
  update(rms, now) {
    const voiced = rms >= this.threshold;
    if (voiced) {
      if (this.lastVoice == null || now - this.lastVoice > this.gapMs) this.runStart = now;
      this.lastVoice = now;
      if (now - this.runStart >= this.showAfterMs) this.shown = true;
    } else if (this.lastVoice != null && now - this.lastVoice > this.gapMs) {
      this.runStart = null;
    }
    if (this.shown && (this.lastVoice == null || now - this.lastVoice >= this.hideAfterMs)) this.shown = false;
    return this.shown;
  }
}

/**
 * What the hint says: with push-to-talk on, how to talk; else how to unmute (M, unless M is taken, as a
 * studio producer's marker key, or there is no keyboard: a touch screen only).
 */
export function muteHintText({ talkKey = '', mTaken = false, touch = false } = {}) {
  if (talkKey) return `Hold ${talkKey} to talk`;
  if (mTaken || touch) return `You're muted — ${touch ? 'tap' : 'click'} Mute to unmute`;
  return "You're muted — press M to unmute";
}

/** Whether the page is on a touch screen without a mouse (so, most likely, without a keyboard). */
export function touchOnly() {
  try {
    return window.matchMedia('(pointer: coarse)').matches && !window.matchMedia('(any-pointer: fine)').matches;
  } catch {
    return false;
  }
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
 * The shortcut keys of the room page and their help dialog.
 * @param {{
 *   inRoom: () => boolean,
 *   act: (action: 'mic'|'camera'|'deafen'|'chat') => void,
 *   escape: () => boolean,   closes the topmost open panel; false when none was open
 *   talkKey: () => string,   push-to-talk's key label when it is on, else ''
 * }} opts
 */
export class Shortcuts {
  constructor({ inRoom, act, escape, talkKey }) {
    Object.assign(this, { inRoom, act, escape, talkKey });
    this.dialog = null;
    document.addEventListener('keydown', (ev) => this.onKey(ev));
  }

  onKey(ev) {
    const action = shortcutAction(ev, { inRoom: this.inRoom(), modal: modalOpen() });
    if (!action) return;
    if (action === 'escape') {
      if (this.escape()) ev.preventDefault();
      return;
    }
    ev.preventDefault();
    if (action === 'help') this.showHelp();
    else this.act(action);
  }

  /** The dialog listing every key (made on first use). */
  showHelp() {
    if (!this.dialog) this.dialog = this.buildHelp();
    const talk = this.talkKey();
    this.pttNote.textContent = talk
      ? `Push-to-talk is on: hold ${talk} to talk (M does not unmute then). Change it in Devices.`
      : 'Push-to-talk (hold a key to talk) can be turned on in Devices.';
    if (!this.dialog.open) this.dialog.showModal();
  }

  buildHelp() {
    const dialog = el('dialog', 'sheet shortcuts-sheet');
    dialog.id = 'shortcuts';
    dialog.dataset.testid = 'shortcuts-dialog';
    dialog.setAttribute('aria-labelledby', 'shortcuts-title');
    const form = el('form', 'sheet-form');
    form.method = 'dialog';
    const head = el('div', 'sheet-head');
    const h = el('h2', '', 'Keyboard shortcuts');
    h.id = 'shortcuts-title';
    const close = el('button', 'icon-btn');
    close.type = 'submit';
    close.setAttribute('aria-label', 'Close');
    close.innerHTML = '<svg aria-hidden="true"><use href="#i-close"/></svg>';
    head.append(h, close);
    const list = el('dl', 'shortcuts-list');
    list.dataset.testid = 'shortcuts-list';
    for (const [key, what] of SHORTCUTS) {
      const dt = el('dt');
      dt.append(el('kbd', '', key));
      list.append(dt, el('dd', '', what));
    }
    const note = el('p', 'muted sheet-text', 'In a room, not while typing in a text field.');
    this.pttNote = el('p', 'muted sheet-text');
    this.pttNote.dataset.testid = 'shortcuts-ptt';
    form.append(head, list, note, this.pttNote);
    dialog.append(form);
    document.body.append(dialog);
    return dialog;
  }

  /** Closes the help dialog (leaving the room). */
  close() {
    if (this.dialog && this.dialog.open) this.dialog.close();
  }
}

/**
 * "You're muted": shown by the mic button while the muted microphone hears voice.
 * @param {{
 *   button: HTMLElement,           the mic button (the hint sits above it)
 *   track: () => MediaStreamTrack | null,   the microphone (muted or not)
 *   watching: () => boolean,       whether it should listen now (in a room, muted, not a listener)
 *   text: () => string,            what the hint says
 * }} opts
 */
export class MuteHint {
  constructor({ button, track, watching, text }) {
    Object.assign(this, { button, track, watching, text });
    this.detector = new VoiceDetector();
    this.source = null; // the microphone track the clone was made from
    this.clone = null;
    this.meter = null;
    this.note = null; // {text, until}: a message shown for a while whatever the microphone hears
    this.el = el('div', 'mute-hint');
    this.el.id = 'mute-hint';
    this.el.dataset.testid = 'mute-hint';
    this.el.setAttribute('role', 'status');
    this.el.hidden = true;
    const stage = button.closest('.stage') || document.body;
    stage.append(this.el);
    this.timer = setInterval(() => this.tick(), 100);
  }

  /** Shows `text` by the button for `ms` (e.g. why M did nothing). */
  say(text, ms = 4000) {
    this.note = { text, until: performance.now() + ms };
    this.tick();
  }

  tick() {
    const now = performance.now();
    if (this.note && now >= this.note.until) this.note = null;
    let shown = false;
    let text = '';
    if (this.watching()) {
      const level = this.measure();
      shown = this.detector.update(level, now);
      text = this.text();
    } else {
      this.release();
      this.detector.reset();
    }
    if (this.note) {
      shown = true;
      text = this.note.text;
    }
    this.show(shown, text);
  }

  /** The microphone's RMS level now, through a clone of its track (the muted one itself is silent). */
  measure() {
    const track = this.track();
    if (!track || track.readyState !== 'live') {
      this.release();
      return 0;
    }
    if (track !== this.source) {
      this.release();
      this.source = track;
      try {
        this.clone = track.clone();
        this.clone.enabled = true;
        this.meter = new LevelMeter(new MediaStream([this.clone]));
      } catch (err) {
        console.warn('[parley] mute hint cannot listen', err);
        this.clone = null;
        this.meter = null;
      }
    }
    return this.meter ? this.meter.level() : 0;
  }

  release() {
    if (this.meter) this.meter.close();
    if (this.clone) this.clone.stop();
    this.meter = null;
    this.clone = null;
    this.source = null;
  }

  show(shown, text) {
    if (!shown) {
      if (!this.el.hidden) this.el.hidden = true;
      return;
    }
    const b = this.button;
    if (b.hidden || !b.offsetParent) {
      this.el.hidden = true;
      return;
    }
    if (this.el.hidden) this.el.hidden = false;
    if (this.el.textContent !== text) this.el.textContent = text;
    // Centred over the button (the stage is its positioned ancestor), kept inside the stage.
    const sr = this.el.parentElement.getBoundingClientRect();
    const br = b.getBoundingClientRect();
    const w = this.el.offsetWidth;
    const left = Math.max(8, Math.min(br.left + br.width / 2 - sr.left - w / 2, sr.width - w - 8));
    this.el.style.left = `${Math.round(left)}px`;
    this.el.style.bottom = `${Math.round(sr.bottom - br.top + 8)}px`;
  }
}
