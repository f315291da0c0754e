// Coming back by itself after the connection to the server drops. The call stays on screen under a
// "Reconnecting…" overlay while the signalling socket retries (signal.js backs off on its own); each time
// it is open again, the app joins the same room with the resume token of its last `joined`
// (docs/protocol.md, `join`), so the others see one person reconnecting, not a leave and a join. After
// GIVE_UP_MS without getting back in, it gives up: the app returns to the lobby with a Rejoin button.

export const GIVE_UP_MS = 60_000;

export class Rejoin {
  /**
   * @param {{overlay?: HTMLElement|null, label?: HTMLElement|null, onGiveUp: (room: string) => void,
   *   now?: () => number, setTimer?: Function, clearTimer?: Function}} opts
   */
  constructor({ overlay = null, label = null, onGiveUp, now = () => Date.now(), setTimer = (fn, ms) => setTimeout(fn, ms), clearTimer = (id) => clearTimeout(id) }) {
    this.overlay = overlay;
    this.label = label;
    this.onGiveUp = onGiveUp;
    this.now = now;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.pending = null; // {room, token, since, inFlight, attempts}
    this.timer = null;
    this.ticker = null;
  }

  /** Trying to get back into a room. */
  get active() {
    return this.pending !== null;
  }

  /** The connection dropped while in `room` (token: the last `joined`'s resume_token, if any). */
  start({ room, token = null }) {
    if (this.pending) return;
    this.pending = { room, token, since: this.now(), inFlight: false, attempts: 0 };
    this.timer = this.setTimer(() => this.giveUp(), GIVE_UP_MS);
    this.show();
  }

  /** The connection is open again: what to join with, once per attempt (null: nothing to do now). */
  take() {
    const p = this.pending;
    if (!p || p.inFlight) return null;
    p.inFlight = true;
    p.attempts += 1;
    return { room: p.room, token: p.token, attempts: p.attempts };
  }

  /** That attempt was cut short by another drop: the next open connection tries again. */
  retry() {
    if (this.pending) this.pending.inFlight = false;
  }

  /** Back in (or given up, or left on purpose): nothing more to do. */
  done() {
    if (this.timer !== null) this.clearTimer(this.timer);
    if (this.ticker !== null) this.clearTimer(this.ticker);
    this.timer = null;
    this.ticker = null;
    this.pending = null;
    if (this.overlay) this.overlay.hidden = true;
  }

  giveUp() {
    const p = this.pending;
    this.done();
    if (p) this.onGiveUp(p.room);
  }

  /** Seconds since the connection dropped. */
  elapsedS() {
    return this.pending ? Math.floor((this.now() - this.pending.since) / 1000) : 0;
  }

  show() {
    if (!this.overlay) return;
    this.overlay.hidden = false;
    const tick = () => {
      if (!this.pending) return;
      const s = this.elapsedS();
      if (this.label) this.label.textContent = s < 3 ? 'Reconnecting…' : `Reconnecting… (${s} s)`;
      this.ticker = this.setTimer(tick, 1000);
    };
    tick();
  }
}
