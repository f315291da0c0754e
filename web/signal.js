// The signalling connection: one WebSocket at /ws speaking docs/protocol.md.
//
// - `request(msg)` gives the message an `id` and resolves with the reply that echoes it (or rejects with a
//   ServerError when the server answers `error` with that id).
// - Every message is also dispatched as a `message` event (detail = the parsed message), so pushes such as
//   `rooms`, `participant_joined` or a server `offer` reach the app, and so does every `error`, except the
//   error answering a request made with `ownErrors: true` (its caller shows it in place).
// - The socket reconnects by itself with a backoff; `open` / `close` events tell the app.

export class ServerError extends Error {
  constructor(msg) {
    super(msg.message || msg.code || 'server error');
    this.name = 'ServerError';
    this.code = msg.code;
    this.id = msg.id;
  }
}

const REQUEST_TIMEOUT_MS = 10_000;
const BACKOFF_MS = [250, 500, 1000, 2000, 3000, 5000];
// A socket given up by `replace` that the server did not close meanwhile (it took nobody over) is closed
// by us after this long: by then the new socket's `join` has long been handled.
const ABANDONED_CLOSE_MS = 10_000;

export class Signal extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer}
    this.attempt = 0;
    this.reconnectTimer = null;
    this.stopped = false;
    this.welcome = null;
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.stopped = false;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      console.error('[parley] websocket', err);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.dispatchEvent(new Event('open'));
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws) return;
      this.onText(ev.data);
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.welcome = null;
      this.failPending('connection closed');
      this.dispatchEvent(new CustomEvent('close', { detail: { code: ev.code, reason: ev.reason } }));
      if (!this.stopped) this.scheduleReconnect();
    });
    // 'error' is always followed by 'close'; nothing to do here.
  }

  /**
   * Opens a new socket now and stops listening to the current one, which stays open for the server to
   * close: a `join` with `resume` on the new socket takes the participant over from it (closing it from
   * here would leave the room first). Requests waiting on the old socket fail. Left open by a server that
   * did not take it over, it is closed after ABANDONED_CLOSE_MS.
   */
  replace() {
    const old = this.ws;
    this.ws = null;
    this.welcome = null;
    this.failPending('connection replaced');
    if (old) setTimeout(() => old.close(), ABANDONED_CLOSE_MS);
    this.connect();
  }

  /** Closes the socket now (without reconnecting when `stop` is true). */
  close(stop = true) {
    this.stopped = stop;
    clearTimeout(this.reconnectTimer);
    if (this.ws) this.ws.close();
  }

  scheduleReconnect() {
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.dispatchEvent(new CustomEvent('reconnecting', { detail: { delay } }));
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  onText(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      console.warn('[parley] unreadable message from server', text);
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    if (msg.type === 'welcome') this.welcome = msg;
    if (msg.id != null && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.type === 'error') {
        p.reject(new ServerError(msg));
        if (p.ownErrors) return;
      } else {
        p.resolve(msg);
      }
    }
    this.dispatchEvent(new CustomEvent('message', { detail: msg }));
  }

  /** Sends a message as is. Returns false when the socket is not open. */
  send(msg) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /**
   * Sends a request with a fresh id and resolves with the server's reply to it. With `ownErrors` the
   * caller shows a refusal itself: the `error` is not dispatched as a `message` event.
   */
  request(msg, { timeoutMs = REQUEST_TIMEOUT_MS, ownErrors = false } = {}) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...msg, id })) {
        reject(new Error('Not connected to the server'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`The server did not answer ${msg.type}`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, ownErrors });
    });
  }

  failPending(reason) {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(reason));
    }
    this.pending.clear();
  }
}

/** The WebSocket URL for this page: same host and port, ws:// on HTTP and wss:// on HTTPS. */
export function signalUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}
