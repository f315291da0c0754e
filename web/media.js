// The local microphone and camera. One MediaStream holds whatever tracks are live; the camera track is
// stopped (light off) when the camera is turned off and asked for again when it is turned on. The mic
// track stays open while muted (disabled, so it records silence) to make unmuting instant. The chosen
// devices (prefs.devices) are asked for exactly when the browser lists them (Chromium does not honour an
// `ideal` audio device), else the default is used, and the remembered one is tried again once the browser
// shows device ids (after the first permission). With a background effect on (effects.js, prefs.effect) the
// camera is processed in the page: `sendVideo` is then the processed track, the one to show and to send,
// while `videoTrack` stays the raw camera (its device, its light).

import { CameraEffect, effectMode } from './effects.js';

const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const VIDEO_CONSTRAINTS = {
  width: { ideal: 640 },
  height: { ideal: 360 },
  frameRate: { ideal: 24, max: 30 },
};

function gum(constraints) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return Promise.reject(Object.assign(new Error('This browser cannot use a microphone or camera here'), { name: 'NotSupportedError' }));
  }
  return navigator.mediaDevices.getUserMedia(constraints);
}

/** A short sentence for people about why a device could not be used. */
export function deviceErrorText(err, what) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `Access to the ${what} was blocked. Allow it in the browser's site settings.`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${what} was found.`;
    case 'NotReadableError':
    case 'AbortError':
      return `The ${what} is in use by another program or could not be started.`;
    case 'NotSupportedError':
      return `This browser cannot use a ${what} on this page (it needs HTTPS or localhost).`;
    default:
      return `The ${what} could not be started${err && err.message ? `: ${err.message}` : '.'}`;
  }
}

/** Constraints for `base` on exactly device `deviceId` ('' = the default). */
function onDevice(base, deviceId) {
  return deviceId ? { ...base, deviceId: { exact: deviceId } } : { ...base };
}

async function listedDeviceIds() {
  try {
    return new Set((await navigator.mediaDevices.enumerateDevices()).map((d) => d.deviceId).filter(Boolean));
  } catch {
    return new Set();
  }
}

export class LocalMedia {
  /**
   * @param {{audioinput?: string, videoinput?: string}} devices the device ids to use ('' = default)
   * @param {{effect?: string}} opts the camera's background effect ('off' | 'blur' | 'replace')
   */
  constructor(devices = {}, { effect = 'off' } = {}) {
    this.stream = new MediaStream();
    this.audioTrack = null;
    this.videoTrack = null;
    this.devices = { audioinput: devices.audioinput || '', videoinput: devices.videoinput || '' };
    this.effectMode = effectMode(effect);
    this.effect = null; // the CameraEffect processing videoTrack, while both are on
  }

  /** The camera as shown and sent: the processed track while an effect is on, else the raw one (or null). */
  get sendVideo() {
    if (!this.videoTrack || this.videoTrack.readyState !== 'live') return null;
    return this.effect && this.effect.track ? this.effect.track : this.videoTrack;
  }

  /**
   * Uses background effect `mode` from now on; starts or stops the processing when the camera is open.
   * Resolves with `sendVideo` (what the camera transceiver should carry now).
   */
  async setEffect(mode) {
    this.effectMode = effectMode(mode);
    this.applyEffect();
    return this.sendVideo;
  }

  /** Matches the processing to the effect mode and the camera: running exactly when both are on. */
  applyEffect() {
    const camera = this.videoTrack && this.videoTrack.readyState === 'live' ? this.videoTrack : null;
    if (this.effectMode === 'off' || !camera) {
      if (this.effect) this.effect.stop();
      this.effect = null;
      return;
    }
    if (!this.effect) this.effect = new CameraEffect(this.effectMode);
    this.effect.setMode(this.effectMode);
    if (this.effect.input !== camera) this.effect.start(camera);
  }

  /**
   * Opens the devices asked for. Falls back to whichever of audio / video works; never throws.
   * Returns {audioError, videoError} for the devices that could not be opened.
   */
  async acquire({ audio = true, video = true } = {}) {
    const result = { audioError: null, videoError: null };
    if (!audio && !video) return result;
    try {
      const s = await gum({
        audio: audio ? onDevice(AUDIO_CONSTRAINTS, await this.listed('audioinput')) : false,
        video: video ? onDevice(VIDEO_CONSTRAINTS, await this.listed('videoinput')) : false,
      });
      for (const t of s.getTracks()) this.adopt(t);
      await this.useRemembered();
      return result;
    } catch (err) {
      if (!(audio && video)) {
        if (audio) result.audioError = err;
        else result.videoError = err;
        return result;
      }
    }
    // Both together failed: try each on its own so one missing device does not cost the other.
    try {
      await this.startAudio();
    } catch (err) {
      result.audioError = err;
    }
    try {
      await this.startVideo();
    } catch (err) {
      result.videoError = err;
    }
    return result;
  }

  adopt(track) {
    if (track.kind === 'audio') {
      if (this.audioTrack) this.dropTrack(this.audioTrack);
      this.audioTrack = track;
    } else {
      // A camera switch: the effect moves to the new track (applyEffect below), keeping its output track.
      if (this.videoTrack) this.dropTrack(this.videoTrack, { switching: true });
      this.videoTrack = track;
    }
    this.stream.addTrack(track);
    track.addEventListener('ended', () => {
      // The device went away (unplugged, revoked): forget it.
      if (this.audioTrack === track) this.audioTrack = null;
      if (this.videoTrack === track) this.videoTrack = null;
      this.stream.removeTrack(track);
      if (track.kind === 'video') this.applyEffect();
    });
    if (track.kind === 'video') this.applyEffect();
  }

  dropTrack(track, { switching = false } = {}) {
    track.stop();
    this.stream.removeTrack(track);
    if (this.audioTrack === track) this.audioTrack = null;
    if (this.videoTrack === track) this.videoTrack = null;
    if (track.kind === 'video' && !switching) this.applyEffect();
  }

  /** The remembered device of `kind` when the browser lists it, else '' (the default). */
  async listed(kind) {
    const id = this.devices[kind];
    return id && (await listedDeviceIds()).has(id) ? id : '';
  }

  /**
   * After a first permission the browser may list devices it hid before: switches open tracks to the
   * remembered devices they are not on yet (keeping the current ones if that fails).
   */
  async useRemembered() {
    const ids = await listedDeviceIds();
    for (const [kind, track] of [['audioinput', this.audioTrack], ['videoinput', this.videoTrack]]) {
      const want = this.devices[kind];
      if (!track || !want || !ids.has(want) || track.getSettings().deviceId === want) continue;
      await this.useDevice(kind, want).catch(() => {});
    }
  }

  /** Opens the microphone if it is not open yet (the default one if the chosen one fails); throws the getUserMedia error. */
  async startAudio() {
    if (this.audioTrack && this.audioTrack.readyState === 'live') return this.audioTrack;
    const device = await this.listed('audioinput');
    const s = await gum({ audio: onDevice(AUDIO_CONSTRAINTS, device), video: false })
      .catch((err) => (device ? gum({ audio: AUDIO_CONSTRAINTS, video: false }) : Promise.reject(err)));
    this.adopt(s.getAudioTracks()[0]);
    return this.audioTrack;
  }

  /** Opens the camera if it is not open yet (the default one if the chosen one fails); throws the getUserMedia error. */
  async startVideo() {
    if (this.videoTrack && this.videoTrack.readyState === 'live') return this.videoTrack;
    const device = await this.listed('videoinput');
    const s = await gum({ audio: false, video: onDevice(VIDEO_CONSTRAINTS, device) })
      .catch((err) => (device ? gum({ audio: false, video: VIDEO_CONSTRAINTS }) : Promise.reject(err)));
    this.adopt(s.getVideoTracks()[0]);
    return this.videoTrack;
  }

  /**
   * Uses device `deviceId` for `kind` ('audioinput' | 'videoinput') from now on. When that kind is open,
   * the new device is opened (exactly that one) and replaces the old track, which is stopped; resolves
   * with the new track, or null when that kind is not open. Throws the getUserMedia error (the old track
   * stays then).
   */
  async useDevice(kind, deviceId) {
    const audio = kind === 'audioinput';
    const old = audio ? this.audioTrack : this.videoTrack;
    if (!old || old.readyState !== 'live') {
      this.devices[kind] = deviceId || '';
      return null;
    }
    const s = await gum(audio
      ? { audio: onDevice(AUDIO_CONSTRAINTS, deviceId), video: false }
      : { audio: false, video: onDevice(VIDEO_CONSTRAINTS, deviceId) });
    this.devices[kind] = deviceId || '';
    const track = audio ? s.getAudioTracks()[0] : s.getVideoTracks()[0];
    track.enabled = old.enabled;
    this.adopt(track); // stops the old one
    return track;
  }

  stopVideo() {
    if (this.videoTrack) this.dropTrack(this.videoTrack);
  }

  stop() {
    for (const t of this.stream.getTracks()) t.stop();
    this.stream = new MediaStream();
    this.audioTrack = null;
    this.videoTrack = null;
    this.applyEffect(); // the processing and its track end with the camera
  }
}
