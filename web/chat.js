// Room chat (docs/protocol.md: chat_send, chat, chat_history). Messages are plain text from other
// people: every piece of them is set with textContent; only web addresses become links (linkify.js).
//
// The list holds three kinds of lines, ordered by a numeric key:
// - messages (key = the server's message id): `/me waves` is shown as an action line ("Ann waves");
// - system lines ("Bo joined"), which the server does not store: key = the newest message id + 0.5, so
//   they stay after what was said before them and before what is said next.

import { linkify } from './linkify.js';

const HISTORY_PAGE = 100;
const GROUP_MS = 3 * 60 * 1000; // consecutive messages of one author within this time share a header
/** The server's default limit (operators may change it; the server's refusal is shown then). */
export const DEFAULT_MAX_CHARS = 4000;
const COUNTER_MARGIN = 500; // the character counter shows from this many characters before the limit
const LOAD_OLDER_AT_PX = 60; // scrolling this close to the top loads the previous page

const ACTION_RE = /^\/me\s+(\S[\s\S]*)$/;

const ERROR_TEXT = {
  rate_limited: 'You are sending messages too quickly. Wait a moment, then send again.',
  message_too_long: 'That message is too long', // + the server's words: the limit and the length
  empty_message: 'Empty messages are not sent.',
  not_in_room: 'You are not in a room.',
  internal: 'The server could not save the message. Nothing was sent; try again.',
};
const WITH_DETAIL = new Set(['message_too_long']);

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });

function formatTime(ms) {
  const d = new Date(ms);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

function timeEl(ms) {
  const time = document.createElement('time');
  time.className = 'chat-time';
  time.dateTime = new Date(ms).toISOString();
  time.textContent = formatTime(ms);
  time.title = new Date(ms).toLocaleString();
  return time;
}

function span(className, text) {
  const s = document.createElement('span');
  s.className = className;
  s.textContent = text;
  return s;
}

/** Characters as the server counts them (Unicode scalar values, not UTF-16 units). */
export function charCount(text) {
  let n = 0;
  for (const _ of text) n += 1; // eslint-disable-line no-unused-vars
  return n;
}

export class ChatPanel {
  /**
   * @param {{signal: import('./signal.js').Signal, me: () => (number|null), onUnread: (n: number) => void,
   *          onError: (err: Error) => void, onCommand: (name: string) => void, maxChars?: () => number}} opts
   * `onCommand('leave')` runs for `/leave`; `onError` gets problems that have no place in the panel.
   */
  constructor({ signal, me, onUnread, onError, onCommand, maxChars = () => DEFAULT_MAX_CHARS }) {
    this.signal = signal;
    this.me = me;
    this.onUnread = onUnread;
    this.onError = onError;
    this.onCommand = onCommand;
    this.maxChars = maxChars;
    this.el = {
      panel: document.getElementById('chat'),
      log: document.getElementById('chat-log'),
      list: document.getElementById('chat-list'),
      empty: document.getElementById('chat-empty'),
      more: document.getElementById('chat-more'),
      form: document.getElementById('chat-form'),
      input: document.getElementById('chat-input'),
      send: document.getElementById('chat-send'),
      counter: document.getElementById('chat-counter'),
      error: document.getElementById('chat-error'),
    };
    this.room = null;
    this.generation = 0; // bumped by reset(): replies for an earlier stay in a room are dropped
    this.byId = new Map(); // message id -> <li>
    this.lines = new WeakMap(); // <li> -> {key, kind, id, author, text}
    this.newestId = 0;
    this.historyLoaded = false; // the first page is in: system lines can be placed
    this.pendingSystem = []; // system lines that came before the first page
    this.sends = 0; // chat_send requests made so far
    this.errorFrom = 0; // the request whose refusal is shown; only a later one's success clears it
    this.open = false;
    this.unread = 0;
    this.hasMore = false;
    this.loading = false;

    this.el.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.sendFromInput();
    });
    this.el.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.sendFromInput();
      }
    });
    this.el.input.addEventListener('input', () => {
      this.autosize();
      this.renderCounter();
      this.showError(null);
    });
    this.el.more.addEventListener('click', () => this.loadHistory(true));
    this.el.log.addEventListener('scroll', () => {
      if (this.el.log.scrollTop < LOAD_OLDER_AT_PX && this.hasMore) this.loadHistory(true);
    }, { passive: true });
  }

  /** A new room (or none): forget the old lines; load the newest page when in a room. */
  reset(room) {
    this.room = room;
    this.generation += 1;
    this.loading = false;
    this.byId.clear();
    this.el.list.replaceChildren();
    this.newestId = 0;
    this.historyLoaded = false;
    this.pendingSystem = [];
    this.hasMore = false;
    this.el.more.hidden = true;
    this.el.input.value = '';
    this.autosize();
    this.renderCounter();
    this.showError(null);
    this.setUnread(0);
    this.renderEmpty();
    if (room) this.loadHistory(false);
  }

  setOpen(open) {
    this.open = open;
    if (open) {
      this.setUnread(0);
      this.scrollToEnd();
    }
  }

  setUnread(n) {
    this.unread = n;
    this.onUnread(n);
  }

  async loadHistory(older) {
    if (!this.room || this.loading) return;
    const gen = this.generation;
    this.loading = true;
    this.el.more.disabled = true;
    const req = { type: 'chat_history', limit: HISTORY_PAGE };
    if (older && this.byId.size > 0) req.before = Math.min(...this.byId.keys());
    const log = this.el.log;
    const fromBottom = log.scrollHeight - log.scrollTop;
    try {
      const reply = await this.signal.request(req);
      if (this.generation !== gen) return;
      for (const m of reply.messages || []) this.add(m, { live: false });
      this.hasMore = !!reply.has_more;
      this.el.more.hidden = !this.hasMore;
      // Keep the view where it was when older messages arrive above; else show the newest.
      if (older) log.scrollTop = log.scrollHeight - fromBottom;
      else this.scrollToEnd();
    } catch (err) {
      if (this.generation === gen && err.name !== 'ServerError') this.onError(err);
    } finally {
      if (this.generation === gen) {
        this.loading = false;
        this.el.more.disabled = false;
        if (!older) this.placePendingSystem();
      }
    }
  }

  /** A `chat` message from the server (`live`) or one from a history page. */
  add(m, { live = true } = {}) {
    if (!m || m.id == null || (this.room && m.room && m.room !== this.room)) return;
    if (this.byId.has(m.id)) return;
    const atEnd = this.isAtEnd();
    const mine = this.me() != null && String(m.author_id) === String(this.me());
    const action = ACTION_RE.exec(m.text);
    const li = document.createElement('li');
    li.className = `chat-msg${mine ? ' mine' : ''}${action ? ' action' : ''}`;
    li.dataset.id = String(m.id);
    li.dataset.kind = action ? 'action' : 'message';
    li.dataset.author = String(m.author_id);
    li.dataset.time = String(m.sent_at_ms);
    const text = document.createElement('p');
    text.className = 'chat-text';
    if (action) {
      // "/me waves" from Ann: "Ann waves", with the time after it.
      text.append(span('chat-author', m.author), ' ', linkify(action[1]));
      li.append(text, timeEl(m.sent_at_ms));
    } else {
      const meta = document.createElement('div');
      meta.className = 'chat-meta';
      meta.append(span('chat-author', mine ? `${m.author} (you)` : m.author), timeEl(m.sent_at_ms));
      text.appendChild(linkify(m.text));
      li.append(meta, text);
    }
    this.insert(li, { key: m.id, kind: li.dataset.kind, id: m.id, author: m.author, text: m.text });
    this.byId.set(m.id, li);
    this.newestId = Math.max(this.newestId, m.id);

    if (live) {
      if (mine || atEnd) this.scrollToEnd();
      if (!this.open && !mine) this.setUnread(this.unread + 1);
    }
  }

  /** A quiet line such as "Bo joined" (not stored by the server, not counted as unread). */
  system(text, atMs = Date.now()) {
    if (!this.room) return;
    if (!this.historyLoaded) {
      this.pendingSystem.push({ text, atMs });
      return;
    }
    const atEnd = this.isAtEnd();
    const li = document.createElement('li');
    li.className = 'chat-msg system';
    li.dataset.kind = 'system';
    const p = document.createElement('p');
    p.className = 'chat-text';
    p.textContent = text;
    li.append(p, timeEl(atMs));
    this.insert(li, { key: this.newestId + 0.5, kind: 'system', id: null, author: null, text });
    if (atEnd) this.scrollToEnd();
  }

  placePendingSystem() {
    this.historyLoaded = true;
    const pending = this.pendingSystem;
    this.pendingSystem = [];
    for (const s of pending) this.system(s.text, s.atMs);
  }

  /** Puts `li` in key order (equal keys keep their arrival order); lines are almost always added last. */
  insert(li, line) {
    this.lines.set(li, line);
    let before = null;
    for (let n = this.el.list.lastElementChild; n; n = n.previousElementSibling) {
      if (this.lines.get(n).key <= line.key) break;
      before = n;
    }
    this.el.list.insertBefore(li, before);
    this.regroup(li);
    if (li.nextElementSibling) this.regroup(li.nextElementSibling);
    this.renderEmpty();
  }

  /** Hides the author line of a message that follows the same author's shortly before. */
  regroup(li) {
    const prev = li.previousElementSibling;
    const cont = !!prev && li.dataset.kind === 'message' && prev.dataset.kind === 'message'
      && prev.dataset.author === li.dataset.author
      && Number(li.dataset.time) - Number(prev.dataset.time) < GROUP_MS;
    li.classList.toggle('cont', cont);
  }

  /** The lines shown, oldest first: [{id, kind: 'message'|'action'|'system', author, text, shown}]. */
  lineList() {
    return [...this.el.list.children].map((li) => {
      const { id, kind, author, text } = this.lines.get(li);
      return { id, kind, author, text, shown: li.querySelector('.chat-text').textContent };
    });
  }

  renderEmpty() {
    this.el.empty.hidden = this.el.list.childElementCount > 0;
  }

  isAtEnd() {
    const log = this.el.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  scrollToEnd() {
    const log = this.el.log;
    log.scrollTop = log.scrollHeight;
  }

  autosize() {
    const input = this.el.input;
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, 140)}px`;
  }

  /** The character counter near the limit, and Send only for something sendable. */
  renderCounter() {
    const text = this.el.input.value;
    const n = charCount(text);
    const max = this.maxChars();
    const over = n > max;
    const counter = this.el.counter;
    counter.hidden = n < max - COUNTER_MARGIN;
    counter.textContent = over ? `${n - max} over the ${max} limit` : `${n} / ${max}`;
    counter.classList.toggle('over', over);
    this.el.send.disabled = over || !text.trim();
    this.el.input.setAttribute('aria-invalid', String(over));
  }

  /** Shows a problem with sending under the input (null hides it). */
  showError(err) {
    const box = this.el.error;
    if (!err) {
      box.hidden = true;
      box.textContent = '';
      delete box.dataset.code;
      return;
    }
    const code = err.code || 'client';
    const friendly = ERROR_TEXT[code];
    if (friendly && WITH_DETAIL.has(code) && err.message) box.textContent = `${friendly}: ${err.message}.`;
    else box.textContent = friendly || err.message;
    box.dataset.code = code;
    box.hidden = false;
  }

  async sendFromInput() {
    const text = this.el.input.value;
    if (!this.room) return;
    if (text.trim() === '/leave') {
      this.el.input.value = '';
      this.autosize();
      this.renderCounter();
      this.onCommand('leave');
      return;
    }
    if (!text.trim()) return;
    const max = this.maxChars();
    if (charCount(text) > max) {
      this.showError({ code: 'message_too_long', message: `at most ${max} characters` });
      return;
    }
    this.el.input.value = '';
    this.autosize();
    this.renderCounter();
    const sent = await this.send(text);
    if (sent === false && !this.el.input.value) {
      // Give the words back so nothing typed is lost.
      this.el.input.value = text;
      this.autosize();
      this.renderCounter();
    }
  }

  /**
   * Sends `text` as is (the input's path, also used by tests); refusals are shown in the panel. Resolves
   * true when sent, false when refused, null when the room was left meanwhile.
   */
  async send(text) {
    const gen = this.generation;
    const seq = ++this.sends;
    try {
      const reply = await this.signal.request({ type: 'chat_send', text }, { ownErrors: true });
      if (this.generation !== gen) return null;
      if (reply.message) this.add(reply.message);
      // Refusals can overtake earlier acceptances (those are saved first): only a newer success clears.
      if (seq > this.errorFrom) this.showError(null);
      return true;
    } catch (err) {
      if (this.generation !== gen) return null;
      this.errorFrom = Math.max(this.errorFrom, seq);
      if (this.open) this.showError(err);
      else this.onError(err);
      return false;
    }
  }

  focus() {
    this.el.input.focus();
  }
}
