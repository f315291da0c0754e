// The server's clock as seen from this page, for studio mode: takes, markers and segments are placed on the
// server's session clock, so every page needs to know how far its own clock is from the server's.
//
// `clock_sync { client_ms }` → `clock { client_ms, server_ms }` is one round trip. The server read its clock
// at some moment between our send (t0) and our receipt (t1), so the offset θ (server − local) lies within
// [server_ms − t1, server_ms − t0] for sure: an interval exactly one round trip wide. ServerClock keeps a
// window of recent round trips and intersects their intervals. That is NTP's clock filter idea (trust the
// fastest round trips) carried one step further: the intersection's lower edge comes from the fastest
// downlink and its upper edge from the fastest uplink, even when they were different round trips, so
// asymmetric jitter and delay spikes cost nothing but a wider interval. The midpoint is the estimate; half
// the width is a hard bound on its error (given symmetric base delays, which no round trip can reveal).
//
// The published `offset` is SLEWED toward the estimate (at most `slewMsPerS`, 1 ms per second by default)
// once locked, so a take's timeline never jumps under it; an estimate more than `relockMs` (1 s) away is a
// different clock (a suspended laptop, a stepped server clock) and is taken at once.

const defaultNow = () => performance.timeOrigin + performance.now();

export class ServerClock {
  /**
   * @param {{now?: () => number, windowSize?: number, slewMsPerS?: number, relockMs?: number,
   *   lockSamples?: number, resolutionMs?: number}} opts `now()`: this page's clock in Unix ms (the same clock
   *   the round trips' t0 and t1 are read on).
   */
  constructor({ now = defaultNow, windowSize = 24, slewMsPerS = 1, relockMs = 1000, lockSamples = 4, resolutionMs = 0.1 } = {}) {
    this.now = now;
    this.windowSize = windowSize;
    this.slewMsPerS = slewMsPerS;
    this.relockMs = relockMs;
    this.lockSamples = lockSamples;
    // performance.now() is coarsened (100 µs without cross-origin isolation): the bounds allow for it.
    this.resolutionMs = resolutionMs;
    this.samples = []; // oldest first: {t0, t1, rtt, lo, hi}
    this.lo = -Infinity;
    this.hi = Infinity;
    this.estimate = null;
    this.published = null;
    this.slewedAt = 0;
    this.isLocked = false;
    this.relocks = 0;
    this.count = 0; // round trips taken in all
    this.lockWaiters = [];
  }

  /** One round trip: sent at local `t0`, the server's clock said `serverMs`, answered at local `t1`. */
  sample(t0, serverMs, t1) {
    if (![t0, serverMs, t1].every(Number.isFinite) || t1 < t0) return false;
    const r = this.resolutionMs;
    this.samples.push({ t0, t1, rtt: t1 - t0, lo: serverMs - t1 - r, hi: serverMs - t0 + r });
    if (this.samples.length > this.windowSize) this.samples.shift();
    this.count += 1;
    // The newest run of round trips that agree with each other: older ones that contradict a newer one
    // predate a change of either clock (or drift beyond what the window allows) and are dropped.
    let lo = -Infinity;
    let hi = Infinity;
    let keep = 0;
    for (let i = this.samples.length - 1; i >= 0; i--) {
      const s = this.samples[i];
      const nlo = Math.max(lo, s.lo);
      const nhi = Math.min(hi, s.hi);
      if (nlo > nhi) break;
      lo = nlo;
      hi = nhi;
      keep += 1;
    }
    if (keep < this.samples.length) this.samples.splice(0, this.samples.length - keep);
    this.lo = lo;
    this.hi = hi;
    this.advance(Math.max(t1, this.slewedAt));
    this.estimate = (lo + hi) / 2;
    if (!this.isLocked) {
      this.published = this.estimate;
      if (this.samples.length >= this.lockSamples) this.lock();
    } else if (Math.abs(this.estimate - this.published) > this.relockMs) {
      this.published = this.estimate;
      this.relocks += 1;
    }
    return true;
  }

  lock() {
    this.isLocked = true;
    for (const resolve of this.lockWaiters.splice(0)) resolve(true);
  }

  /** Moves the published offset toward the estimate by what the time since the last move allows. */
  advance(at) {
    const dt = at - this.slewedAt;
    this.slewedAt = at;
    if (!this.isLocked || this.estimate == null || !(dt > 0)) return;
    const room = (this.slewMsPerS * dt) / 1000;
    const want = this.estimate - this.published;
    this.published += Math.max(-room, Math.min(room, want));
  }

  /** Server − local, in ms (0 until the first round trip). */
  get offset() {
    if (this.published == null) return 0;
    this.advance(Math.max(this.now(), this.slewedAt));
    return this.published;
  }

  /** Whether enough round trips agree for the offset to be used (and from now on only slewed). */
  get locked() {
    return this.isLocked;
  }

  /** Half the width of the round trips' intersection: the estimate is at most this far off (ms). */
  get bound() {
    return Number.isFinite(this.hi - this.lo) ? (this.hi - this.lo) / 2 : Infinity;
  }

  /** The fastest round trip in the window (ms), or null. */
  get rtt() {
    return this.samples.length ? Math.min(...this.samples.map((s) => s.rtt)) : null;
  }

  /** The server's clock now, in Unix ms. */
  serverNow() {
    return this.toServer(this.now());
  }

  /** A moment of this page's clock (Unix ms, as `now()` reads it) on the server's clock. */
  toServer(localMs) {
    return localMs + this.offset;
  }

  /** Resolves true once locked, or false after `timeoutMs`. */
  whenLocked(timeoutMs = 3000) {
    if (this.isLocked) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.lockWaiters = this.lockWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (v) => {
        clearTimeout(timer);
        resolve(v);
      };
      this.lockWaiters.push(done);
    });
  }

  /** For tests and the debug hook. */
  snapshot() {
    return {
      offset: this.offset,
      locked: this.isLocked,
      estimate: this.estimate,
      bound: this.bound,
      rtt: this.rtt,
      samples: this.samples.length,
      count: this.count,
      relocks: this.relocks,
    };
  }
}

/**
 * Keeps a ServerClock fed: a quick burst of round trips first (so a take can start on a locked clock within
 * about a second of joining), one a second until `quick` round trips (the window fills with fast ones sooner:
 * on a jittery link that halves the error at 30 s), then one every `periodMs`. One round trip at a time; a
 * lost or refused one (rate_limited) is simply skipped.
 *
 * `ask(clientMs)` sends `clock_sync` and resolves with the reply's `server_ms`.
 */
export class ClockPinger {
  constructor({ clock, ask, now = clock.now, setTimer = (fn, ms) => setTimeout(fn, ms), clearTimer = (t) => clearTimeout(t), burst = 5, burstGapMs = 250, quick = 20, quickPeriodMs = 1000, periodMs = 2000 }) {
    this.clock = clock;
    this.ask = ask;
    this.now = now;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.burst = burst;
    this.burstGapMs = burstGapMs;
    this.quick = quick;
    this.quickPeriodMs = quickPeriodMs;
    this.periodMs = periodMs;
    this.timer = null;
    this.running = false;
    this.sent = 0;
    this.generation = 0;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.sent = 0;
    this.generation += 1;
    this.ping(this.generation);
  }

  stop() {
    this.running = false;
    this.generation += 1;
    if (this.timer != null) this.clearTimer(this.timer);
    this.timer = null;
  }

  async ping(generation) {
    this.timer = null;
    const t0 = this.now();
    try {
      const serverMs = await this.ask(t0);
      const t1 = this.now();
      if (generation === this.generation) this.clock.sample(t0, Number(serverMs), t1);
    } catch {
      // Lost, timed out or refused: the next one will do.
    }
    if (generation !== this.generation || !this.running) return;
    this.sent += 1;
    const wait = this.sent < this.burst ? this.burstGapMs : this.sent < this.quick ? this.quickPeriodMs : this.periodMs;
    this.timer = this.setTimer(() => this.ping(generation), wait);
  }
}
