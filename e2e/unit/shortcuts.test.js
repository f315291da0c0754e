// web/shortcuts.js and web/ptt.js alone (no browser): which keys do what and when they are ignored
// (typing, modifiers, dialogs, the lobby, repeats), the talk key's rules and names, the remembered
// setting, and the voice detector behind the "You're muted" hint, in virtual time.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SHORTCUTS, VoiceDetector, isTypingTarget, muteHintText, shortcutAction } from '../../web/shortcuts.js';
import { DEFAULT_PTT, captureVerdict, keyLabel, loadPtt, pttKeyAction, savePtt } from '../../web/ptt.js';

const body = { tagName: 'BODY' };
const key = (k, extra = {}) => ({ key: k, code: '', target: body, ...extra });
const inRoom = { inRoom: true, modal: false };

test('M, V, D, C, P, ? and Esc in a room', () => {
  assert.equal(shortcutAction(key('m'), inRoom), 'mic');
  assert.equal(shortcutAction(key('M', { shiftKey: true }), inRoom), 'mic'); // Shift or Caps Lock
  assert.equal(shortcutAction(key('v'), inRoom), 'camera');
  assert.equal(shortcutAction(key('d'), inRoom), 'deafen');
  assert.equal(shortcutAction(key('c'), inRoom), 'chat');
  assert.equal(shortcutAction(key('p'), inRoom), 'people');
  assert.equal(shortcutAction(key('?', { shiftKey: true }), inRoom), 'help');
  assert.equal(shortcutAction(key('Escape'), inRoom), 'escape');
  for (const k of ['x', 'Enter', ' ', 'ArrowUp', 'F1', '1', 'µ']) assert.equal(shortcutAction(key(k), inRoom), null, k);
  // The help dialog lists every key that does something.
  assert.deepEqual(SHORTCUTS.map(([k]) => k), ['M', 'V', 'D', 'C', 'P', 'Esc', '?']);
});

test('no shortcut in the lobby, with Ctrl / Alt / Meta, on a repeat, while composing or once taken', () => {
  for (const k of ['m', 'v', 'd', 'c', 'p', '?', 'Escape']) {
    assert.equal(shortcutAction(key(k), { inRoom: false }), null, `${k} in the lobby`);
    for (const mod of ['ctrlKey', 'altKey', 'metaKey']) assert.equal(shortcutAction(key(k, { [mod]: true }), inRoom), null, `${mod}+${k}`);
    assert.equal(shortcutAction(key(k, { isComposing: true }), inRoom), null, `${k} composing`);
    assert.equal(shortcutAction(key(k, { defaultPrevented: true }), inRoom), null, `${k} taken (a studio marker)`);
  }
  assert.equal(shortcutAction(key('m', { repeat: true }), inRoom), null, 'holding M toggles once');
  assert.equal(shortcutAction(null, inRoom), null);
});

test('never while typing; only Esc (left to the dialog) with a modal dialog open', () => {
  const fields = [
    { tagName: 'INPUT' },
    { tagName: 'textarea' },
    { tagName: 'SELECT' },
    { tagName: 'DIV', isContentEditable: true },
    // a span inside a contenteditable, as a browser element answers closest()
    { tagName: 'SPAN', closest: (sel) => (sel.includes('[contenteditable="true"]') ? {} : null) },
  ];
  for (const target of fields) {
    assert.equal(isTypingTarget(target), true, JSON.stringify(target));
    for (const k of ['m', 'v', 'd', 'c', 'p', '?']) assert.equal(shortcutAction(key(k, { target }), inRoom), null, `${k} in ${target.tagName}`);
    // Esc types nothing: from the chat box it closes the chat.
    assert.equal(shortcutAction(key('Escape', { target }), inRoom), 'escape');
  }
  for (const target of [body, { tagName: 'BUTTON', closest: () => null }, null, undefined]) assert.equal(isTypingTarget(target), false);
  const modal = { inRoom: true, modal: true };
  for (const k of ['m', 'v', 'd', 'c', 'p', '?', 'Escape']) assert.equal(shortcutAction(key(k), modal), null, `${k} with a dialog open`);
});

test('push-to-talk key: talk, hold on repeats, ignored where a shortcut would be', () => {
  const on = { on: true, code: 'Space', inRoom: true, modal: false };
  const space = (extra = {}) => ({ key: ' ', code: 'Space', target: body, ...extra });
  assert.equal(pttKeyAction(space(), on), 'talk');
  assert.equal(pttKeyAction(space({ repeat: true }), on), 'hold');
  assert.equal(pttKeyAction(space(), { ...on, on: false }), null, 'push-to-talk off');
  assert.equal(pttKeyAction(space(), { ...on, inRoom: false }), null, 'lobby');
  assert.equal(pttKeyAction(space(), { ...on, modal: true }), null, 'dialog');
  assert.equal(pttKeyAction(space({ target: { tagName: 'TEXTAREA' } }), on), null, 'typing a space in the chat');
  assert.equal(pttKeyAction(space({ ctrlKey: true }), on), null, 'Ctrl+Space is the browser\'s');
  assert.equal(pttKeyAction({ key: 't', code: 'KeyT', target: body }, on), null, 'another key');
  // The key is the physical one (code): T on any layout.
  const t = { ...on, code: 'KeyT' };
  assert.equal(pttKeyAction({ key: 't', code: 'KeyT', target: body }, t), 'talk');
  assert.equal(pttKeyAction({ key: 'T', code: 'KeyT', shiftKey: true, target: body }, t), 'talk');
  // A modifier as the talk key: held with its own flag set.
  const ctrl = { ...on, code: 'ControlLeft' };
  assert.equal(pttKeyAction({ key: 'Control', code: 'ControlLeft', ctrlKey: true, target: body }, ctrl), 'talk');
  assert.equal(pttKeyAction({ key: 'Control', code: 'ControlRight', ctrlKey: true, target: body }, ctrl), null);
});

test('choosing the talk key: Esc cancels; Tab and the shortcut letters are refused', () => {
  assert.deepEqual(captureVerdict({ key: 'Escape', code: 'Escape' }), { cancel: true });
  assert.deepEqual(captureVerdict({ key: 't', code: 'KeyT' }), { code: 'KeyT', label: 'T' });
  assert.deepEqual(captureVerdict({ key: ' ', code: 'Space' }), { code: 'Space', label: 'Space' });
  assert.deepEqual(captureVerdict({ key: 'F13', code: 'F13' }), { code: 'F13', label: 'F13' });
  assert.ok(captureVerdict({ key: 'Tab', code: 'Tab' }).refuse);
  for (const [k, code] of [['m', 'KeyM'], ['V', 'KeyV'], ['d', 'KeyD'], ['c', 'KeyC'], ['p', 'KeyP'], ['?', 'Slash']]) {
    assert.match(captureVerdict({ key: k, code }).refuse || '', /shortcut/, k);
  }
  assert.ok(captureVerdict({ key: 'x', code: '' }).refuse, 'no code');
  assert.ok(captureVerdict({ key: 'x', code: 'Unidentified' }).refuse);
});

test('key names', () => {
  assert.equal(keyLabel('Space'), 'Space');
  assert.equal(keyLabel('KeyT', 't'), 'T');
  assert.equal(keyLabel('Digit5', '5'), '5');
  assert.equal(keyLabel('ControlLeft', 'Control'), 'Left Ctrl');
  assert.equal(keyLabel('AltRight', 'AltGraph'), 'Right Alt');
  assert.equal(keyLabel('Numpad0', '0'), 'Numpad 0');
  assert.equal(keyLabel('F9', 'F9'), 'F9');
  assert.equal(keyLabel('Backquote', '`'), '`');
  assert.equal(keyLabel('CapsLock', 'CapsLock'), 'Caps Lock');
});

test('the setting is remembered; nonsense in storage gives the default', () => {
  const mem = new Map();
  const storage = { getItem: (k) => (mem.has(k) ? mem.get(k) : null), setItem: (k, v) => mem.set(k, String(v)) };
  assert.deepEqual(loadPtt(storage), DEFAULT_PTT);
  assert.equal(DEFAULT_PTT.on, false);
  savePtt({ on: true, code: 'KeyT', label: 'T' }, storage);
  assert.deepEqual(loadPtt(storage), { on: true, code: 'KeyT', label: 'T' });
  for (const bad of ['{', '"x"', '[]', '{"on":"yes","code":"<script>"}', 'null']) {
    mem.set('parley.ptt', bad);
    const v = loadPtt(storage);
    assert.equal(v.on, false, bad);
    assert.equal(v.code, 'Space', bad);
  }
  assert.deepEqual(loadPtt(null), DEFAULT_PTT);
  assert.deepEqual(loadPtt({ getItem: () => { throw new Error('denied'); } }), DEFAULT_PTT);
});

test('voice detector: shown after 0.5 s of voice, not for a click; hidden after 3 s of silence', () => {
  const d = new VoiceDetector();
  let t = 0;
  const run = (rms, ms) => {
    let shown;
    for (const end = t + ms; t < end; t += 100) shown = d.update(rms, t);
    return shown;
  };
  assert.equal(run(0, 1000), false, 'silence');
  assert.equal(run(0.2, 200), false, 'a click');
  assert.equal(run(0, 1000), false);
  assert.equal(run(0.005, 2000), false, 'below the threshold (-46 dB)');
  assert.equal(run(0.05, 400), false, '0.4 s of voice');
  assert.equal(run(0.05, 200), true, '0.6 s of voice');
  assert.equal(run(0, 2800), true, 'still shown 2.8 s into the silence');
  assert.equal(run(0, 300), false, 'gone after 3 s of silence');
  // Speech has short pauses: they count as one stretch of voice.
  d.reset();
  t = 0;
  let shown = false;
  for (let i = 0; i < 4 && !shown; i++) {
    shown = run(0.05, 200);
    if (!shown) shown = run(0, 200);
  }
  assert.equal(shown, true, 'voice with 0.2 s pauses shows it');
  // reset() (unmuted) hides it at once.
  d.reset();
  assert.equal(d.update(0, t), false);
});

test('what the hint says', () => {
  assert.equal(muteHintText(), "You're muted — press M to unmute");
  assert.equal(muteHintText({ talkKey: 'Space' }), 'Hold Space to talk');
  assert.equal(muteHintText({ talkKey: 'T', mTaken: true, touch: true }), 'Hold T to talk');
  assert.equal(muteHintText({ mTaken: true }), "You're muted — click Mute to unmute", 'a studio producer: M drops a marker');
  assert.equal(muteHintText({ touch: true }), "You're muted — tap Mute to unmute");
});
