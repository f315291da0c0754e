// The pre-join check: before entering a room (from the lobby, a room link or an invite link) a screen with
// the camera preview, a live microphone meter, the device pickers (microphone, camera, and the speaker where
// the browser can choose one: setSinkId), the camera's background effect (effects.js: the preview shows
// the processed camera, as the others will see it) and microphone / camera switches. What is chosen there
// is how one enters (the `join` message's `state`) and is remembered (prefs.state, prefs.devices,
// prefs.effect). The devices it opens are handed to the room as they are (no second getUserMedia), the
// effect's processing with them. When the browser refuses a device, one lasting banner on the screen says
// how to fix it, with a Retry button; one can still join with that device off (that forced "off" is not
// remembered as a choice).
//
// `open(room)` shows it and resolves with `{state, local, media}` on Join (`local`: the LocalMedia with
// the open devices; `media`: resolves `{audioError, videoError}` like LocalMedia.acquire once every
// device operation started here has settled) or null on Back (devices released).

import { prefs } from './prefs.js';
import { LocalMedia, deviceErrorText } from './media.js';
import { LevelMeter, audioContext, meterPosition } from './levels.js';
import { fillDeviceSelects } from './settings.js';
import { setAudioOutput, canChooseAudioOutput, initials } from './tiles.js';
import { effectEvents, effectMode, effectStatus, effectStatusText } from './effects.js';

const $ = (id) => document.getElementById(id);

const live = (track) => !!track && track.readyState === 'live';
const denied = (err) => !!err && (err.name === 'NotAllowedError' || err.name === 'SecurityError');

const WHAT = { audioinput: 'microphone', videoinput: 'camera', audiooutput: 'speaker' };

/**
 * What the banner says for the devices that could not be opened (`audio`, `video`: the getUserMedia errors,
 * null where that device is fine), or '' when there is nothing to say. A refused permission gets how to
 * allow it; every other problem its own sentence. Pure: tested without a browser.
 */
export function deviceProblemText({ audio = null, video = null } = {}) {
  const refused = [audio && denied(audio) ? 'microphone' : '', video && denied(video) ? 'camera' : ''].filter(Boolean);
  const lines = [];
  if (refused.length) {
    const them = refused.join(' and ');
    lines.push(`The browser does not let parley use your ${them}. To allow ${refused.length > 1 ? 'them' : 'it'}, click the camera or lock icon in the address bar (or open this site's settings), allow the ${them}, then press Retry.`);
  }
  if (audio && !denied(audio)) lines.push(deviceErrorText(audio, 'microphone'));
  if (video && !denied(video)) lines.push(deviceErrorText(video, 'camera'));
  if (!lines.length) return '';
  const off = [audio ? 'microphone' : '', video ? 'camera' : ''].filter(Boolean).join(' and ');
  lines.push(`You can still join with the ${off} off.`);
  return lines.join(' ');
}

export class Prejoin {
  /**
   * @param {{signal: import('./signal.js').Signal, onShow: () => void}} opts `onShow` puts the page in the
   *   pre-join view; leaving that view (the app calls `clear()`) ends an open check as Back does.
   */
  constructor({ signal, onShow }) {
    this.signal = signal;
    this.onShow = onShow;
    this.session = null; // the check on screen: {room, local, want, errors, pending, inflight, resolve, ...}
    this.meter = null; // LevelMeter on the microphone track shown
    this.meterTrack = null;
    this.raf = 0;
    this.level = 0; // the meter's position, 0..1
    this.el = {
      root: $('prejoin'),
      title: $('prejoin-title'),
      room: $('prejoin-room'),
      who: $('prejoin-name'),
      banner: $('prejoin-banner'),
      bannerText: $('prejoin-banner-text'),
      retry: $('prejoin-retry'),
      preview: $('prejoin-preview'),
      video: $('prejoin-video'),
      initials: $('prejoin-initials'),
      meter: $('prejoin-meter'),
      meterFill: $('prejoin-meter-fill'),
      mic: $('prejoin-mic'),
      camera: $('prejoin-camera'),
      back: $('prejoin-back'),
      join: $('prejoin-join'),
      speakerRow: $('prejoin-speaker-row'),
      effect: $('prejoin-effect'),
      effectNote: $('prejoin-effect-note'),
    };
    this.selects = {
      audioinput: $('prejoin-mic-select'),
      videoinput: $('prejoin-camera-select'),
      audiooutput: $('prejoin-speaker-select'),
    };
    this.el.speakerRow.hidden = !canChooseAudioOutput;
    this.el.mic.addEventListener('click', () => this.toggleMic());
    this.el.camera.addEventListener('click', () => this.toggleCamera());
    this.el.retry.addEventListener('click', () => this.retry());
    this.el.back.addEventListener('click', () => this.cancel());
    this.el.join.addEventListener('click', () => this.join());
    for (const [kind, select] of Object.entries(this.selects)) {
      select.addEventListener('change', () => this.choose(kind, select.value));
    }
    this.el.effect.addEventListener('change', () => this.chooseEffect(this.el.effect.value));
    effectEvents.addEventListener('change', () => this.renderEffectNote());
    // An AudioContext made outside a click (a room link opened directly) starts suspended: any click here
    // lets the meter run.
    this.el.root.addEventListener('pointerdown', () => audioContext());
    this.el.root.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && this.session && !document.querySelector('dialog[open]')) {
        ev.preventDefault();
        this.cancel();
      }
    });
    signal.addEventListener('open', () => this.renderJoin());
    signal.addEventListener('close', () => this.renderJoin());
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener('devicechange', () => {
        if (this.session) this.fillSelects();
      });
    }
  }

  get isOpen() {
    return !!this.session && !this.session.done;
  }

  /** Shows the check for `room` (as `name`); resolves as the class comment says. */
  open(room, name = '') {
    this.clear();
    return new Promise((resolve) => {
      const saved = prefs.state;
      const s = {
        room,
        local: new LocalMedia(prefs.devices, { effect: prefs.effect }),
        want: { mic: !saved.mic_muted, camera: !saved.camera_off }, // the remembered choice
        errors: { audio: null, video: null, other: '' },
        pending: Promise.resolve(),
        inflight: 0,
        resolve,
        done: false,
        joining: false,
      };
      this.session = s;
      this.el.room.textContent = room;
      this.el.who.textContent = name;
      this.el.initials.textContent = initials(name);
      this.el.effect.value = prefs.effect;
      this.onShow();
      audioContext();
      this.render();
      this.fillSelects();
      (this.el.join.disabled ? this.el.back : this.el.join).focus();
      this.run(s, async () => {
        const r = await s.local.acquire({ audio: true, video: s.want.camera });
        s.errors.audio = r.audioError;
        s.errors.video = r.videoError;
        await this.fillSelects(); // names and ids show once the browser may use the devices
      });
      this.startMeter();
    });
  }

  /** Runs device operation `fn` after the ones before it, then redraws. */
  run(s, fn) {
    s.inflight += 1;
    this.render();
    s.pending = s.pending
      .then(fn)
      .catch((err) => console.warn('[parley] pre-join', err))
      .then(() => {
        s.inflight -= 1;
        if (this.session === s && !s.done) {
          if (s.local.audioTrack) s.local.audioTrack.enabled = s.want.mic;
          this.render();
        }
      });
    return s.pending;
  }

  /** Remembers a switch for the next visit (only what the person chose, never a forced "off"). */
  remember(change) {
    prefs.state = { ...prefs.state, ...change };
  }

  micOn(s = this.session) {
    return !!s && s.want.mic && live(s.local.audioTrack);
  }

  cameraOn(s = this.session) {
    return !!s && s.want.camera && live(s.local.videoTrack);
  }

  toggleMic() {
    const s = this.session;
    if (!s || s.done) return;
    audioContext();
    this.run(s, async () => {
      if (this.micOn(s)) {
        s.want.mic = false;
        this.remember({ mic_muted: true });
        return;
      }
      try {
        await s.local.startAudio();
        s.errors.audio = null;
        s.want.mic = true;
        this.remember({ mic_muted: false });
      } catch (err) {
        s.errors.audio = err;
      }
    });
  }

  toggleCamera() {
    const s = this.session;
    if (!s || s.done) return;
    this.run(s, async () => {
      if (this.cameraOn(s)) {
        s.want.camera = false;
        s.local.stopVideo(); // the camera light goes off
        this.remember({ camera_off: true });
        return;
      }
      try {
        await s.local.startVideo();
        s.errors.video = null;
        s.want.camera = true;
        this.remember({ camera_off: false });
      } catch (err) {
        s.errors.video = err;
      }
    });
  }

  /** Asks again for the devices that are not open (after allowing them in the browser). */
  retry() {
    const s = this.session;
    if (!s || s.done) return;
    audioContext();
    this.run(s, async () => {
      s.errors.other = '';
      const audio = !live(s.local.audioTrack);
      const video = s.want.camera && !live(s.local.videoTrack);
      const r = await s.local.acquire({ audio, video });
      if (audio) s.errors.audio = r.audioError;
      if (video) s.errors.video = r.videoError;
      if (!s.want.camera) s.errors.video = null;
      await this.fillSelects();
    });
  }

  /** Another device of `kind`: used for the preview now and remembered. */
  choose(kind, deviceId) {
    const s = this.session;
    const select = this.selects[kind];
    if (!s || s.done) return;
    this.run(s, async () => {
      select.disabled = true;
      try {
        if (kind === 'audiooutput') setAudioOutput(deviceId);
        else await s.local.useDevice(kind, deviceId); // throws when it cannot be opened; the old one stays
        prefs.devices = { ...prefs.devices, [kind]: deviceId };
        select.dataset.value = deviceId;
        s.errors.other = '';
      } catch (err) {
        select.value = select.dataset.value || '';
        s.errors.other = deviceErrorText(err, WHAT[kind]);
      } finally {
        select.disabled = false;
      }
    });
  }

  /** Another background effect: the preview shows it now (the camera's processing starts or stops); remembered. */
  chooseEffect(value) {
    const s = this.session;
    if (!s || s.done) return;
    const mode = effectMode(value);
    prefs.effect = mode;
    this.run(s, () => s.local.setEffect(mode));
  }

  renderEffectNote() {
    const s = this.session;
    this.el.effectNote.textContent = s && !s.done ? effectStatusText(effectStatus()) : '';
  }

  async fillSelects() {
    await fillDeviceSelects(this.selects);
  }

  join() {
    const s = this.session;
    if (!s || s.done || s.joining || !this.signal.connected) return;
    audioContext(); // inside the click, so that the room's sound may start
    s.joining = true;
    // Devices still opening count as chosen; the room says so if they then fail.
    const settled = s.inflight === 0;
    const state = {
      mic_muted: !(settled ? this.micOn(s) : s.want.mic),
      camera_off: !(settled ? this.cameraOn(s) : s.want.camera),
    };
    const media = s.pending.then(() => ({
      audioError: live(s.local.audioTrack) ? null : s.errors.audio,
      videoError: live(s.local.videoTrack) ? null : s.errors.video,
    }));
    this.renderJoin();
    this.finish(s, { state, local: s.local, media }, { keepPreview: true });
  }

  /** Back: the devices are released and the check resolves null. */
  cancel() {
    const s = this.session;
    if (s && !s.done) this.finish(s, null);
  }

  /**
   * The page left the pre-join view: an open check ends as Back does; a handed-over one stops showing its
   * preview (the tracks are the room's now).
   */
  clear() {
    const s = this.session;
    if (!s) return;
    if (!s.done) this.finish(s, null);
    this.session = null;
    this.stopPreview();
  }

  finish(s, result, { keepPreview = false } = {}) {
    s.done = true;
    if (!result) {
      // Operations still under way may open a device after this: release whatever they leave.
      s.local.stop();
      s.pending.then(() => s.local.stop());
    }
    if (!keepPreview || !result) {
      if (this.session === s) this.session = null;
      this.stopPreview();
    } else {
      this.stopMeter();
    }
    s.resolve(result);
  }

  stopPreview() {
    this.stopMeter();
    this.el.video.srcObject = null;
    this.el.preview.classList.remove('has-video');
    this.el.effectNote.textContent = '';
  }

  startMeter() {
    this.stopMeter();
    const tick = () => {
      const s = this.session;
      if (!s || s.done) return;
      const track = this.micOn(s) ? s.local.audioTrack : null;
      if (track !== this.meterTrack) {
        if (this.meter) this.meter.close();
        this.meter = track ? new LevelMeter(new MediaStream([track])) : null;
        this.meterTrack = track;
      }
      const position = this.meter ? meterPosition(this.meter.level()) : 0;
      if (Math.abs(position - this.level) >= 0.005 || (position === 0 && this.level !== 0)) {
        this.level = position;
        this.el.meterFill.style.transform = `scaleX(${position.toFixed(3)})`;
        this.el.meter.dataset.level = position.toFixed(3);
        this.el.meter.setAttribute('aria-valuenow', String(Math.round(position * 100)));
      }
      this.raf = requestAnimationFrame(tick);
    };
    this.raf = requestAnimationFrame(tick);
  }

  stopMeter() {
    cancelAnimationFrame(this.raf);
    this.raf = 0;
    if (this.meter) this.meter.close();
    this.meter = null;
    this.meterTrack = null;
    this.level = 0;
    this.el.meterFill.style.transform = 'scaleX(0)';
    this.el.meter.dataset.level = '0';
    this.el.meter.setAttribute('aria-valuenow', '0');
  }

  renderJoin() {
    const s = this.session;
    const connected = this.signal.connected;
    this.el.join.disabled = !s || s.done || s.joining || !connected;
    this.el.join.textContent = s && s.joining ? 'Joining…' : connected ? 'Join' : 'Connecting…';
  }

  render() {
    const s = this.session;
    if (!s || s.done) return;
    const mic = this.micOn(s);
    const camera = this.cameraOn(s);
    // Like the room's buttons: one name each, the state in aria-pressed ("Mute" pressed = muted).
    const setToggle = (btn, off, title) => {
      btn.setAttribute('aria-pressed', String(off));
      btn.classList.toggle('is-off', off);
      btn.title = title;
    };
    setToggle(this.el.mic, !mic, mic ? 'Microphone on: click to mute' : 'Microphone off: click to unmute');
    setToggle(this.el.camera, !camera, camera ? 'Camera on: click to stop it' : 'Camera off: click to start it');
    this.el.meter.classList.toggle('is-off', !mic);

    const track = camera ? s.local.sendVideo : null; // processed when an effect is on
    const shown = this.el.video.srcObject ? this.el.video.srcObject.getVideoTracks()[0] : null;
    if (track !== shown) {
      this.el.video.srcObject = track ? new MediaStream([track]) : null;
      if (track) this.el.video.play().catch(() => {});
    }
    this.el.preview.classList.toggle('has-video', !!track);

    // One banner for every device problem; it stays until they are solved (Retry, a switch, a picker).
    const problem = deviceProblemText({
      audio: live(s.local.audioTrack) ? null : s.errors.audio,
      video: live(s.local.videoTrack) || !s.want.camera ? null : s.errors.video,
    });
    const text = [problem, s.errors.other].filter(Boolean).join(' ');
    this.el.bannerText.textContent = text;
    this.el.banner.hidden = !text;
    this.el.retry.hidden = !problem;
    this.el.retry.disabled = s.inflight > 0;
    this.renderEffectNote();
    this.renderJoin();
  }

  /** What the screen shows, for tests: {open, room, mic, camera, level, banner, joining, effect}. */
  snapshot() {
    const s = this.session;
    return {
      open: !!s && !s.done,
      room: s ? s.room : null,
      mic: this.micOn(s),
      camera: this.cameraOn(s),
      level: this.level,
      banner: this.el.banner.hidden ? '' : this.el.bannerText.textContent,
      joining: !!s && s.joining,
      effect: s ? s.local.effectMode : null,
    };
  }
}
