// Screen sharing (docs/protocol.md, `set_state` `screen_sharing`): our own share, and the others' screens.
//
// Our side: the call's third transceiver (sendonly video, idle from the start, so sharing never renegotiates)
// gets the getDisplayMedia track with replaceTrack, and `set_state {screen_sharing: true}` tells the room.
// Stopping (the button again, the browser's own "Stop sharing" bar, which ends the track, or leaving the
// room) puts a null track back and sends `screen_sharing: false`.
//
// Their side: a publisher's screen arrives as its own track (the server names it `<n>-screen` in `a=msid`;
// call.js files it as `screen`). It is shown in a "screen" tile, "<name>'s screen", while the roster says
// that person shares; app.js lays it out large in either view while it exists.

import { Tile } from './tiles.js';

/** Whether this browser can share a screen at all (phones cannot: no getDisplayMedia). */
export const canShareScreen = typeof navigator !== 'undefined' && !!navigator.mediaDevices && typeof navigator.mediaDevices.getDisplayMedia === 'function';

export class ScreenShare {
  /**
   * @param {{
   *   button: HTMLButtonElement,            the "Share screen" toggle in the call controls
   *   container: HTMLElement,               the stage the tiles live in
   *   roster: import('./roster.js').Roster,  who is in the room, and who shares
   *   call: () => import('./call.js').Call | null,
   *   send: (msg: object) => Promise<unknown>, a signalling request
   *   onLayout: () => void,                 screen tiles came or went
   *   onError: (err: Error) => void,        sharing could not start
   * }} opts
   */
  constructor({ button, container, roster, call, send, onLayout, onError }) {
    this.button = button;
    this.container = container;
    this.roster = roster;
    this.call = call;
    this.send = send;
    this.onLayout = onLayout;
    this.onError = onError;
    this.track = null; // our display track while we share
    this.starting = false;
    this.allowed = true; // a studio listener publishes nothing
    this.inRoom = false;
    this.screens = new Map(); // participant id (string) -> Tile of their screen
    button.hidden = true;
    button.addEventListener('click', () => (this.track ? this.stop() : this.start()));
    roster.addEventListener('add', (ev) => this.refresh(ev.detail.id));
    roster.addEventListener('update', (ev) => this.refresh(ev.detail.id));
    roster.addEventListener('remove', (ev) => this.refresh(ev.detail.id));
    this.render();
  }

  /** We are in a room with `call`: the button shows where the browser can share; their screens arrive. */
  enter(call) {
    this.inRoom = true;
    call.addEventListener('remote', (ev) => {
      if (this.call() === call) this.refresh(ev.detail.pid);
    });
    this.render();
  }

  /** We left the room (or lost it): our share stops, the others' screens go. */
  leave() {
    this.inRoom = false;
    this.stopTrack();
    for (const tile of this.screens.values()) tile.destroy();
    this.screens.clear();
    this.render();
  }

  /** A studio listener may not share (the server refuses it too). */
  setAllowed(on) {
    this.allowed = on;
    if (!on && this.track) this.stop();
    this.render();
  }

  render() {
    const sharing = !!this.track;
    this.button.hidden = !canShareScreen || !this.inRoom || !this.allowed;
    this.button.setAttribute('aria-pressed', String(sharing));
    this.button.classList.toggle('is-active', sharing);
    this.button.title = sharing ? 'Stop sharing your screen' : 'Share your screen or a window';
  }

  async start() {
    if (this.track || this.starting || !this.inRoom || !canShareScreen) return;
    this.starting = true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch (err) {
      this.starting = false;
      // Cancelling the browser's picker is no error worth a word.
      if (err && err.name !== 'NotAllowedError' && err.name !== 'AbortError') this.onError(err);
      return;
    }
    this.starting = false;
    const track = stream.getVideoTracks()[0];
    for (const t of stream.getTracks()) if (t !== track) t.stop();
    const call = this.call();
    if (!track || !call || !this.inRoom) {
      if (track) track.stop();
      return;
    }
    if ('contentHint' in track) track.contentHint = 'detail'; // text stays sharp
    this.track = track;
    // The browser's own "Stop sharing" bar ends the track.
    track.addEventListener('ended', () => {
      if (this.track === track) this.stop();
    });
    this.render();
    try {
      await call.setSending('screen', track);
    } catch (err) {
      this.stop();
      this.onError(err);
      return;
    }
    if (this.track === track) this.send({ type: 'set_state', screen_sharing: true }).catch(() => {});
  }

  /** Stops our share: the track ends, nothing more is sent, the room is told. */
  stop() {
    if (!this.track) return;
    this.stopTrack();
    if (this.inRoom) this.send({ type: 'set_state', screen_sharing: false }).catch(() => {});
    this.render();
  }

  stopTrack() {
    const track = this.track;
    if (!track) return;
    this.track = null;
    track.stop();
    const call = this.call();
    if (call) call.setSending('screen', null).catch(() => {});
  }

  /** Shows or removes participant `pid`'s screen tile as the roster and the call say. */
  refresh(pid) {
    const id = String(pid);
    const p = this.inRoom ? this.roster.members.get(id) : null;
    const call = this.call();
    const remote = call ? call.remote.get(id) : null;
    let tile = this.screens.get(id);
    if (!p || !p.screen_sharing) {
      if (tile) {
        tile.destroy();
        this.screens.delete(id);
        this.onLayout();
      }
      return;
    }
    const added = !tile;
    if (!tile) {
      tile = new Tile({ id, name: '' });
      const el = tile.el;
      delete el.dataset.participantId; // the person's own tile has that
      el.dataset.screenOf = id;
      el.dataset.testid = 'screen-tile';
      el.classList.add('screen');
      this.screens.set(id, tile);
      this.container.appendChild(el);
    }
    tile.setInfo({ name: `${p.name}'s screen` });
    tile.setVideoTrack(remote ? remote.screen : null);
    if (added) this.onLayout();
  }

  /** The screen tiles, in the order they came. */
  tiles() {
    return [...this.screens.values()];
  }

  /** The screen shown large: the latest one shared. */
  largest() {
    const all = this.tiles();
    return all.length ? all[all.length - 1] : null;
  }

  /** For tests: {sharing, screens: [{id, name, live}]}. */
  snapshot() {
    return {
      sharing: !!this.track,
      screens: this.tiles().map((t) => ({
        id: Number(t.id),
        name: t.info.name,
        live: !!t.videoTrack && t.videoTrack.readyState === 'live',
        shown: t.el.classList.contains('has-video'),
      })),
    };
  }
}
