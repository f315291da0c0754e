// The device settings dialog: which microphone, camera and speaker to use, and the camera's background
// effect (effects.js). The choice is remembered (prefs.devices, prefs.effect) and applied by the app, at
// once when in a room.

import { prefs } from './prefs.js';
import { canChooseAudioOutput } from './tiles.js';
import { effectEvents, effectMode, effectStatus, effectStatusText } from './effects.js';

const $ = (id) => document.getElementById(id);

const KINDS = {
  audioinput: { select: 'settings-mic', noun: 'Microphone', what: 'microphone' },
  videoinput: { select: 'settings-camera', noun: 'Camera', what: 'camera' },
  audiooutput: { select: 'settings-speaker', noun: 'Speaker', what: 'speaker' },
};

function option(value, label) {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = label;
  return o;
}

/**
 * Fills `selects` ({audioinput, videoinput, audiooutput}: <select> elements, any of them) with the devices
 * of each kind, the remembered one (prefs.devices) selected ('' = the system default). Resolves true when
 * some devices have no name yet (the browser shows names once it may use the microphone and camera).
 * Used by this dialog and by the pre-join check (prejoin.js).
 */
export async function fillDeviceSelects(selects) {
  let devices = [];
  try {
    devices = navigator.mediaDevices ? await navigator.mediaDevices.enumerateDevices() : [];
  } catch (err) {
    console.warn('[parley] enumerateDevices', err);
  }
  const chosen = prefs.devices;
  let unnamed = false;
  for (const [kind, select] of Object.entries(selects)) {
    if (!select) continue;
    const list = devices.filter((d) => d.kind === kind && d.deviceId && d.deviceId !== 'default');
    select.replaceChildren(
      option('', 'System default'),
      ...list.map((d, i) => option(d.deviceId, d.label || `${KINDS[kind].noun} ${i + 1}`)),
    );
    select.value = list.some((d) => d.deviceId === chosen[kind]) ? chosen[kind] : '';
    select.dataset.value = select.value;
    if (devices.some((d) => d.kind === kind && !d.label)) unnamed = true;
  }
  return unnamed;
}

export class DeviceSettings {
  /**
   * @param {{onChange: (kind: string, deviceId: string) => Promise<void>, onEffect: (mode: string) => Promise<void>, onError: (err: Error, what: string) => void}} opts
   * `onChange` switches to the device (and remembers it); when it throws, the choice is undone. `onEffect`
   * applies a background effect ('off' | 'blur' | 'replace') and remembers it, likewise.
   */
  constructor({ onChange, onEffect, onError }) {
    this.onChange = onChange;
    this.onEffect = onEffect;
    this.onError = onError;
    this.dialog = $('settings');
    this.note = $('settings-note');
    this.selects = Object.fromEntries(Object.entries(KINDS).map(([kind, k]) => [kind, $(k.select)]));
    $('settings-speaker-row').hidden = !canChooseAudioOutput;
    for (const [kind, select] of Object.entries(this.selects)) {
      select.addEventListener('change', () => this.choose(kind, select.value));
    }
    this.effect = $('settings-effect');
    this.effectNote = $('settings-effect-note');
    this.effect.addEventListener('change', () => this.chooseEffect(this.effect.value));
    effectEvents.addEventListener('change', () => this.renderEffectNote());
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener('devicechange', () => {
        if (this.dialog.open) this.fill();
      });
    }
  }

  async show() {
    this.effect.value = prefs.effect;
    this.effect.dataset.value = this.effect.value;
    this.renderEffectNote();
    await this.fill();
    if (!this.dialog.open) this.dialog.showModal();
  }

  /** Lists the devices of each kind, the remembered one selected ('' = the system default). */
  async fill() {
    this.note.hidden = !(await fillDeviceSelects(this.selects));
  }

  async chooseEffect(value) {
    const mode = effectMode(value);
    this.effect.disabled = true;
    try {
      await this.onEffect(mode);
      this.effect.dataset.value = mode;
    } catch (err) {
      this.effect.value = this.effect.dataset.value || 'off';
      this.onError(err, 'camera');
    } finally {
      this.effect.disabled = false;
    }
  }

  renderEffectNote() {
    this.effectNote.textContent = effectStatusText(effectStatus());
  }

  async choose(kind, deviceId) {
    const select = this.selects[kind];
    select.disabled = true;
    try {
      await this.onChange(kind, deviceId);
      select.dataset.value = deviceId;
    } catch (err) {
      select.value = select.dataset.value || '';
      this.onError(err, KINDS[kind].what);
    } finally {
      select.disabled = false;
    }
  }
}
