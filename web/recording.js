// Room recordings in the browser (docs/protocol.md, "Room recordings"): the Record / Stop recording
// button, the red "Recording" indicator everyone in the room sees (the wall screen too), and the
// Recordings panel with a player and a download link for each file. The server decides everything (who
// may record, one at a time, what the files are); these only ask and show. Text from the server and from
// people is set with textContent only.
//
// Files are shown as the server lists them, grouped by `kind` and labelled by kind, format and person,
// so kinds the server adds later (a mix, video) appear without changes here.

const $ = (id) => document.getElementById(id);

/** Formats the browser plays in an <audio> element; `VIDEO_FORMATS` get a <video>. */
const AUDIO_FORMATS = new Set(['ogg', 'opus', 'wav', 'flac', 'mp3', 'm4a', 'aac']);
const VIDEO_FORMATS = new Set(['webm', 'mp4', 'mkv']);

/** Groups in this order; kinds not named here follow, by name. */
const KIND_ORDER = ['mix', 'video', 'track'];
const KIND_LABELS = { mix: 'Everyone together', video: 'Video', track: 'Each person' };

const STATE_LABELS = {
  recording: 'Recording',
  processing: 'Processing',
  ready: 'Ready',
  interrupted: 'Interrupted',
  failed: 'Failed',
};

/** Download links are asked for again this long before they expire. */
const LINK_MARGIN_MS = 60_000;

/** mm:ss (h:mm:ss from an hour on) for `ms` milliseconds. */
export function formatElapsed(ms) {
  const total = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const two = (n) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${two(m)}:${two(s)}`;
}

/** 1.2 MB, 340 KB, 512 B. */
export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return '';
  if (n < 1000) return `${n} B`;
  if (n < 1_000_000) return `${Math.round(n / 1000)} KB`;
  if (n < 1_000_000_000) return `${(n / 1_000_000).toFixed(1)} MB`;
  return `${(n / 1_000_000_000).toFixed(2)} GB`;
}

/** The heading of a group of files of `kind`. */
export function kindLabel(kind) {
  if (KIND_LABELS[kind]) return KIND_LABELS[kind];
  const k = String(kind || 'file');
  return k.charAt(0).toUpperCase() + k.slice(1);
}

/** What a file is called in the panel: its person, else its kind; the format is shown beside it. */
export function fileLabel(file) {
  if (file.participant_name) return file.participant_name;
  if (file.kind === 'mix') return 'Everyone';
  if (file.participant_id != null) return `Participant ${file.participant_id}`;
  return file.name || kindLabel(file.kind);
}

/** 'audio', 'video' or null (no player: download only). */
export function playerKind(file) {
  const format = String(file.format || (file.name || '').split('.').pop() || '').toLowerCase();
  if (VIDEO_FORMATS.has(format) || file.kind === 'video') return 'video';
  if (AUDIO_FORMATS.has(format)) return 'audio';
  return null;
}

/** `files` grouped by kind, in KIND_ORDER, then the other kinds by name: [{kind, label, files}]. */
export function groupFiles(files) {
  const groups = new Map();
  for (const f of Array.isArray(files) ? files : []) {
    if (!f || typeof f !== 'object') continue;
    const kind = typeof f.kind === 'string' && f.kind ? f.kind : 'file';
    if (!groups.has(kind)) groups.set(kind, []);
    groups.get(kind).push(f);
  }
  const rank = (k) => {
    const i = KIND_ORDER.indexOf(k);
    return i < 0 ? KIND_ORDER.length : i;
  };
  return [...groups.keys()]
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    .map((kind) => ({
      kind,
      label: kindLabel(kind),
      files: groups.get(kind).slice().sort((a, b) => fileLabel(a).localeCompare(fileLabel(b))),
    }));
}

/** One line under a recording: how long, who started and stopped it. */
export function describeRecording(rec) {
  const parts = [];
  if (rec.state !== 'recording' && Number.isFinite(rec.duration_ms)) parts.push(formatElapsed(rec.duration_ms));
  if (rec.started_by) parts.push(`started by ${rec.started_by}`);
  if (rec.stopped_by) parts.push(`stopped by ${rec.stopped_by}`);
  return parts.join(' · ');
}

function when(ms) {
  const d = new Date(ms);
  const today = d.toDateString() === new Date().toDateString();
  const opts = today
    ? { hour: '2-digit', minute: '2-digit', second: '2-digit' }
    : { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
  return `${today ? 'Today ' : ''}${d.toLocaleString(undefined, opts)}`;
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

/** recording, then processing, then a final state. */
function stateRank(state) {
  return state === 'recording' ? 0 : state === 'processing' ? 1 : 2;
}

/** Whether a recording's links are (nearly) expired. */
function linksExpired(rec, now = Date.now()) {
  return (rec.files || []).length > 0 && Number.isFinite(rec.url_expires_at_ms) && rec.url_expires_at_ms - LINK_MARGIN_MS <= now;
}

// ---------------------------------------------------------------------------------------------------------
// The indicator

/**
 * The red "● Recording 01:23 by Ann" pill in `container` (built here). `show(now, elapsedMs)` with the
 * server's RecordingNow and how long it has been running; the time ticks on the page's monotonic clock,
 * on whole seconds from the start, so pages that were told at the same moment tick together.
 */
export class RecordingIndicator {
  constructor(container) {
    this.el = container;
    this.el.replaceChildren();
    const dot = el('span', 'rec-dot');
    dot.setAttribute('aria-hidden', 'true');
    this.word = el('span', 'rec-word', 'Recording');
    this.time = el('span', 'rec-time', '00:00');
    this.time.dataset.testid = 'recording-elapsed';
    this.by = el('span', 'rec-by', '');
    this.by.dataset.testid = 'recording-by';
    this.el.append(dot, this.word, this.time, this.by);
    this.el.hidden = true;
    this.now = null;
    this.zero = 0; // performance.now() when it started
    this.timer = null;
  }

  get shown() {
    return this.now != null;
  }

  /** How long it has been running, by this page's clock (ms). */
  get elapsedMs() {
    return this.now ? Math.max(0, performance.now() - this.zero) : 0;
  }

  show(now, elapsedMs = 0) {
    this.now = now;
    this.zero = performance.now() - Math.max(0, elapsedMs);
    this.by.textContent = now.started_by ? `by ${now.started_by}` : '';
    this.el.title = now.started_by ? `This room is being recorded (started by ${now.started_by})` : 'This room is being recorded';
    this.el.hidden = false;
    this.tick();
  }

  /** The running time as another clock reading says (`elapsedMs` at this moment). */
  correct(elapsedMs) {
    if (!this.now) return;
    this.zero = performance.now() - Math.max(0, elapsedMs);
    this.tick();
  }

  hide() {
    clearTimeout(this.timer);
    this.timer = null;
    this.now = null;
    this.el.hidden = true;
  }

  tick() {
    clearTimeout(this.timer);
    if (!this.now) return;
    const e = this.elapsedMs;
    this.time.textContent = formatElapsed(e);
    this.timer = setTimeout(() => this.tick(), 1000 - (e % 1000) + 5);
  }
}

/**
 * How long `recordingId` has been running by the server's clock, from a `list_recordings` reply (the
 * running one's `duration_ms` is its age as the server answered, plus half the round trip); null when
 * the server does not say. Clocks of the page and the server need not agree.
 */
export async function serverElapsed(signal, recordingId) {
  const sent = performance.now();
  let reply;
  try {
    reply = await signal.request({ type: 'list_recordings' }, { ownErrors: true });
  } catch {
    return null;
  }
  const running = (Array.isArray(reply.recordings) ? reply.recordings : []).find((r) => r && r.recording_id === recordingId);
  return running && Number.isFinite(running.duration_ms) ? running.duration_ms + (performance.now() - sent) / 2 : null;
}

// ---------------------------------------------------------------------------------------------------------
// The room's recording: button, indicator, panel

/**
 * @param {{signal: import('./signal.js').Signal, room: () => (string|null),
 *   toast: (msg: string, opts?: object) => void, onSystem?: (text: string) => void}} opts
 * Feed it `enter(joined)` on joining, every `recording_state` / `recording_updated` through `handle(msg)`,
 * and `leave()` on leaving. Refusals of our own requests reach the page's error toasts as every server
 * error does (they are not asked with `ownErrors`).
 */
export class RoomRecording {
  /**
   * `canDelete()`: whether we may delete the room's recordings (an owner, or the admin);
   * `confirm({title, text, ok})` asks first (resolves null when cancelled).
   */
  constructor({ signal, room, toast, onSystem = () => {}, canDelete = () => false, confirm = async () => null }) {
    this.signal = signal;
    this.room = room;
    this.toast = toast;
    this.onSystem = onSystem;
    this.canDelete = canDelete;
    this.confirm = confirm;
    this.button = $('record-toggle');
    this.label = this.button.querySelector('.ctl-label');
    this.indicator = new RecordingIndicator($('recording-indicator'));
    this.openButton = $('recordings-open');
    this.dialog = $('recordings');
    this.list = $('recordings-list');
    this.empty = $('recordings-empty');
    this.error = $('recordings-error');
    this.current = null; // the RecordingNow while one runs
    this.busy = false;
    this.allowed = true; // false once the server said we may not (a viewer)
    this.recordings = []; // the latest list, newest first
    this.listed = false;
    this.listing = null; // the list_recordings under way
    this.expiryTimer = null;

    this.button.addEventListener('click', () => this.toggle());
    this.openButton.addEventListener('click', () => this.open());
    for (const b of this.dialog.querySelectorAll('[data-close]')) b.addEventListener('click', () => this.close());
    this.dialog.addEventListener('close', () => {
      clearTimeout(this.expiryTimer);
      // Nothing keeps playing in a closed panel.
      for (const m of this.list.querySelectorAll('audio, video')) m.pause();
    });
    this.render();
  }

  get isOpen() {
    return this.dialog.open;
  }

  /** We joined: `joined.recording` says whether the room is being recorded now. */
  enter(joined) {
    this.current = null;
    this.allowed = true;
    this.recordings = [];
    this.listed = false;
    this.listing = null;
    this.openButton.hidden = false;
    const now = joined.recording;
    if (now && typeof now === 'object') {
      this.current = now;
      // Until the server's own reading comes (below), assume this clock agrees with the server's.
      this.indicator.show(now, Date.now() - now.started_at_ms);
      this.toast(`This room is being recorded (started by ${now.started_by || 'someone'}).`, {
        title: 'Recording',
        kind: 'info',
        code: 'recording_on',
        timeout: 8000,
      });
      this.refresh({ correctClock: true });
    }
    this.render();
  }

  /** We left (or lost the connection): nothing of the room stays. */
  leave() {
    this.current = null;
    this.busy = false;
    this.recordings = [];
    this.listed = false;
    this.listing = null;
    this.indicator.hide();
    this.close();
    this.list.replaceChildren();
    this.openButton.hidden = true;
    this.render();
  }

  /** A server message; true when it was about recordings. */
  handle(msg) {
    if (msg.type === 'recording_state') {
      if (!this.room() || msg.room !== this.room()) return true;
      if (msg.recording) this.started(msg.recording, msg.id != null);
      else this.stopped(msg);
      return true;
    }
    if (msg.type === 'recordings_deleted') {
      if (!this.room() || msg.room !== this.room()) return true;
      if (Number.isFinite(msg.recording_id)) {
        // An owner deleted that one.
        this.recordings = this.recordings.filter((r) => r.recording_id !== msg.recording_id);
        if (this.isOpen) this.renderList();
        return true;
      }
      // The admin deleted all finished ones: only the running one (or one being made) is left.
      this.recordings = this.recordings.filter((r) => r.state === 'recording' || r.state === 'processing');
      if (this.isOpen) {
        this.renderList();
        this.refresh();
      }
      return true;
    }
    if (msg.type === 'recording_updated') {
      const rec = msg.recording;
      if (!this.room() || !rec || (rec.room && rec.room !== this.room())) return true;
      this.put(rec);
      if (this.isOpen) this.renderList();
      if (rec.state === 'failed') {
        this.toast(rec.message || 'The recording could not be made.', { title: 'Recording failed', code: 'recording_failed' });
      }
      return true;
    }
    return false;
  }

  started(now, mine) {
    const was = this.current;
    this.current = now;
    // Told as it starts (the server stamps the start, stores it, then tells everyone at once).
    if (!was || was.recording_id !== now.recording_id) this.indicator.show(now, 0);
    this.render();
    if (!was) {
      const who = now.started_by || 'Someone';
      this.onSystem(mine ? 'You started recording the room' : `${who} started recording the room`);
      if (!mine) this.toast(`${who} started recording this room.`, { title: 'Recording', kind: 'info', code: 'recording_on', timeout: 6000 });
    }
    if (this.isOpen) this.refresh();
  }

  stopped(msg) {
    if (!this.current) return;
    this.current = null;
    this.indicator.hide();
    this.render();
    const mine = msg.id != null;
    const text = msg.stopped_by
      ? mine ? 'You stopped the recording.' : `Recording stopped by ${msg.stopped_by}`
      : msg.message ? `Recording stopped: ${msg.message}` : 'Recording stopped';
    this.onSystem(text.replace(/\.$/, ''));
    this.toast(text, {
      title: 'Recording stopped',
      kind: msg.stopped_by ? 'info' : 'error',
      code: 'recording_stopped',
      timeout: 8000,
      action: { label: 'Recordings', run: () => this.open() },
    });
    // It is being processed now: the panel says so.
    if (this.isOpen) this.refresh();
    else this.listed = false;
  }

  /** Record, or Stop recording while one runs. */
  async toggle() {
    if (this.busy || !this.room()) return;
    const type = this.current ? 'recording_stop' : 'recording_start';
    this.busy = true;
    this.render();
    try {
      await this.signal.request({ type });
    } catch (err) {
      // The server's refusal is shown by the page (an error toast); a lost connection is ours to say.
      if (err && err.code === 'forbidden') this.allowed = false;
      if (!(err && err.code)) this.toast(err.message || String(err), { title: 'Recording', code: 'recording' });
    } finally {
      this.busy = false;
      this.render();
    }
  }

  /** The button as things stand. */
  render() {
    const on = !!this.current;
    this.button.hidden = !this.allowed;
    this.button.classList.toggle('is-recording', on);
    this.button.setAttribute('aria-pressed', String(on));
    this.button.disabled = this.busy;
    this.label.textContent = on ? 'Stop' : 'Record';
    if (on) {
      const more = el('span', 'ctl-label-more', ' recording');
      this.label.appendChild(more);
    }
    this.button.setAttribute('aria-label', 'Record'); // one name; aria-pressed says it is recording
    this.button.title = on ? 'Stop recording the room (for everyone)' : 'Record the room (everyone sees it)';
  }

  // -------------------------------------------------------------------------------------------------------
  // The panel

  open() {
    if (!this.room()) return;
    if (this.recordings.some((r) => linksExpired(r))) {
      // Links that no longer work are not offered while fresh ones come.
      this.recordings = [];
      this.listed = false;
    }
    this.renderList();
    if (!this.dialog.open) this.dialog.showModal();
    this.refresh();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  /**
   * Asks for the room's recordings (fresh links). With `correctClock`, the running recording's
   * `duration_ms` (its age by the server's clock as it answered) sets the indicator's time.
   */
  async refresh({ correctClock = false } = {}) {
    const room = this.room();
    if (!room) return;
    const sent = performance.now();
    const p = this.signal.request({ type: 'list_recordings' }, { ownErrors: true });
    this.listing = p;
    let reply;
    try {
      reply = await p;
    } catch (err) {
      if (this.listing !== p || this.room() !== room) return;
      this.listing = null;
      this.showError(`Could not load the recordings: ${err.message}`);
      return;
    }
    if (this.room() !== room) return;
    if (this.listing === p) this.listing = null;
    const recs = Array.isArray(reply.recordings) ? reply.recordings.filter((r) => r && Number.isFinite(r.recording_id)) : [];
    // A `recording_updated` that overtook this reply is newer: a state never goes back.
    const known = new Map(this.recordings.map((r) => [r.recording_id, r]));
    this.recordings = recs.map((r) => {
      const k = known.get(r.recording_id);
      return k && stateRank(k.state) > stateRank(r.state) ? k : r;
    });
    this.listed = true;
    this.showError('');
    if (correctClock && this.current) {
      const running = recs.find((r) => r.recording_id === this.current.recording_id);
      if (running && Number.isFinite(running.duration_ms)) {
        this.indicator.correct(running.duration_ms + (performance.now() - sent) / 2);
      }
    }
    if (this.isOpen) this.renderList();
  }

  /** Deletes `rec` (an owner's choice, confirmed first); the server tells everyone in the room. */
  async remove(rec, label, button) {
    const files = (rec.files || []).length;
    const yes = await this.confirm({
      title: 'Delete this recording?',
      text: `The recording of ${label}${files ? ` and its ${files} file${files === 1 ? '' : 's'}` : ''} will be deleted for everyone in the room. This cannot be undone.`,
      ok: 'Delete',
    });
    if (!yes || this.room() == null) return;
    button.disabled = true;
    try {
      await this.signal.request({ type: 'delete_recording', recording_id: rec.recording_id }, { ownErrors: true });
      // `recordings_deleted` (to everyone, us too) takes it off the list.
    } catch (err) {
      button.disabled = false;
      this.showError(`Not deleted: ${err.message}`);
    }
  }

  /** One recording, new or changed (`recording_updated`). */
  put(rec) {
    if (!rec || !Number.isFinite(rec.recording_id)) return;
    const i = this.recordings.findIndex((r) => r.recording_id === rec.recording_id);
    if (i >= 0) this.recordings[i] = { ...this.recordings[i], ...rec };
    else if (this.listed) this.recordings.unshift(rec);
    this.recordings.sort((a, b) => (b.started_at_ms || 0) - (a.started_at_ms || 0) || b.recording_id - a.recording_id);
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }

  /** The list, keeping the items (and their players) whose recording did not change. */
  renderList() {
    const old = new Map();
    for (const li of this.list.children) old.set(li.dataset.recordingId, li);
    const items = this.recordings.map((rec) => {
      const key = JSON.stringify([rec.state, rec.duration_ms, rec.message, rec.stopped_by, (rec.files || []).map((f) => f.name), this.canDelete()]);
      const li = old.get(String(rec.recording_id));
      // Same state and files: the item stays (a player may be playing) until its links near expiry.
      if (li && li.dataset.key === key && !linksExpired({ files: rec.files, url_expires_at_ms: Number(li.dataset.expires) })) return li;
      return this.item(rec, key);
    });
    this.list.replaceChildren(...items);
    this.empty.hidden = this.recordings.length > 0 || !this.listed;
    this.empty.textContent = 'No recordings of this room yet. Anyone in the room may start one with Record.';
    if (!this.listed && this.recordings.length === 0) {
      this.empty.hidden = false;
      this.empty.textContent = 'Loading…';
    }
    // Fresh links before these expire, while the panel is open.
    clearTimeout(this.expiryTimer);
    const expiries = this.recordings.filter((r) => (r.files || []).length && Number.isFinite(r.url_expires_at_ms)).map((r) => r.url_expires_at_ms);
    if (expiries.length && this.isOpen) {
      const wait = Math.max(1000, Math.min(...expiries) - LINK_MARGIN_MS - Date.now());
      this.expiryTimer = setTimeout(() => {
        if (this.isOpen) this.refresh();
      }, Math.min(wait, 2 ** 31 - 1));
    }
  }

  item(rec, key) {
    const li = el('li', 'rec-item');
    li.dataset.testid = 'recording-item';
    li.dataset.recordingId = String(rec.recording_id);
    li.dataset.state = rec.state || '';
    li.dataset.key = key;
    li.dataset.expires = String(rec.url_expires_at_ms || 0);

    const head = el('div', 'rec-head');
    const time = el('time', 'rec-when', Number.isFinite(rec.started_at_ms) ? when(rec.started_at_ms) : 'Recording');
    if (Number.isFinite(rec.started_at_ms)) {
      time.dateTime = new Date(rec.started_at_ms).toISOString();
      time.title = new Date(rec.started_at_ms).toLocaleString();
    }
    const state = el('span', 'badge rec-state', STATE_LABELS[rec.state] || rec.state || '');
    state.dataset.testid = 'recording-state';
    state.dataset.state = rec.state || '';
    head.append(time, state);
    li.appendChild(head);
    if (this.canDelete() && rec.state !== 'recording' && rec.state !== 'processing') {
      const del = el('button', 'btn small rec-delete', 'Delete');
      del.type = 'button';
      del.dataset.testid = 'recording-delete';
      del.setAttribute('aria-label', `Delete the recording of ${time.textContent}`);
      del.addEventListener('click', () => this.remove(rec, time.textContent, del));
      head.appendChild(del);
    }

    const meta = describeRecording(rec);
    if (meta) li.appendChild(el('p', 'rec-meta', meta));
    const notes = {
      recording: 'Recording now. Its files are made when it stops.',
      processing: 'Stopped: the files are being made…',
      interrupted: 'The server stopped while this was being recorded; the files hold what was saved.',
    };
    if (rec.message) li.appendChild(el('p', rec.state === 'failed' ? 'rec-message form-error' : 'rec-message', rec.message));
    else if (notes[rec.state]) li.appendChild(el('p', 'rec-message', notes[rec.state]));

    for (const group of groupFiles(rec.files)) {
      const section = el('div', 'rec-group');
      section.dataset.kind = group.kind;
      section.appendChild(el('h4', 'rec-group-title', `${group.label} (${group.files.length})`));
      const ul = el('ul', 'rec-files');
      for (const f of group.files) ul.appendChild(this.fileRow(rec, f));
      section.appendChild(ul);
      li.appendChild(section);
    }
    if (!(rec.files || []).length && (rec.state === 'ready' || rec.state === 'interrupted')) {
      li.appendChild(el('p', 'rec-message muted', 'No files: nobody sent sound while it ran.'));
    }
    return li;
  }

  fileRow(rec, f) {
    const row = el('li', 'rec-file');
    row.dataset.testid = 'recording-file';
    row.dataset.kind = f.kind || '';
    row.dataset.format = f.format || '';
    row.dataset.name = f.name || '';
    if (f.participant_id != null) row.dataset.participantId = String(f.participant_id);
    const label = el('div', 'rec-file-label');
    label.appendChild(el('span', 'rec-file-name', fileLabel(f)));
    const info = [String(f.format || '').toUpperCase(), formatBytes(f.bytes)].filter(Boolean).join(' · ');
    if (info) label.appendChild(el('span', 'rec-file-meta', info));
    row.appendChild(label);
    if (!f.url) {
      row.appendChild(el('span', 'rec-file-meta', 'No link'));
      return row;
    }
    const kind = playerKind(f);
    if (kind) {
      const player = document.createElement(kind);
      player.controls = true;
      player.preload = 'none';
      player.src = f.url;
      player.className = `rec-player rec-${kind}`;
      player.dataset.testid = 'recording-player';
      player.setAttribute('aria-label', `${fileLabel(f)}, ${kindLabel(f.kind)}`);
      row.appendChild(player);
    }
    const a = el('a', 'btn small rec-download', 'Download');
    a.href = f.url;
    a.download = `parley-${(rec.room || this.room() || 'room').replace(/[^\w.-]+/g, '_')}-${rec.recording_id}-${f.name || 'file'}`;
    a.dataset.testid = 'recording-download';
    a.setAttribute('aria-label', `Download ${fileLabel(f)} (${info || f.name})`);
    row.appendChild(a);
    return row;
  }

  /** For tests: what the panel knows. */
  snapshot() {
    return {
      current: this.current ? { ...this.current, elapsed_ms: Math.round(this.indicator.elapsedMs) } : null,
      recordings: this.recordings.map((r) => ({ ...r, files: (r.files || []).map((f) => ({ ...f })) })),
    };
  }
}
