// Room chat (docs/protocol.md: chat_send, chat, chat_history). Messages are plain text from other
// people: every piece of them is set with textContent.

const HISTORY_PAGE = 100;
const GROUP_MS = 3 * 60 * 1000; // consecutive messages of one author within this time share a header

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });

function formatTime(ms) {
  const d = new Date(ms);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

export class ChatPanel {
  /**
   * @param {{signal: import('./signal.js').Signal, me: () => (number|null), onUnread: (n: number) => void,
   *          onError: (err: Error) => void}} opts
   */
  constructor({ signal, me, onUnread, onError }) {
    this.signal = signal;
    this.me = me;
    this.onUnread = onUnread;
    this.onError = onError;
    this.el = {
      panel: document.getElementById('chat'),
      log: document.getElementById('chat-log'),
      list: document.getElementById('chat-list'),
      empty: document.getElementById('chat-empty'),
      more: document.getElementById('chat-more'),
      form: document.getElementById('chat-form'),
      input: document.getElementById('chat-input'),
      send: document.getElementById('chat-send'),
    };
    this.room = null;
    this.byId = new Map();
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
    this.el.input.addEventListener('input', () => this.autosize());
    this.el.more.addEventListener('click', () => this.loadHistory(true));
  }

  /** A new room (or none): forget the old messages; load the newest page when in a room. */
  reset(room) {
    this.room = room;
    this.byId.clear();
    this.el.list.replaceChildren();
    this.hasMore = false;
    this.el.more.hidden = true;
    this.el.input.value = '';
    this.autosize();
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
    const room = this.room;
    this.loading = true;
    this.el.more.disabled = true;
    const req = { type: 'chat_history', limit: HISTORY_PAGE };
    if (older && this.byId.size > 0) req.before = Math.min(...this.byId.keys());
    const log = this.el.log;
    const fromBottom = log.scrollHeight - log.scrollTop;
    try {
      const reply = await this.signal.request(req);
      if (this.room !== room) return;
      for (const m of reply.messages || []) this.add(m, { quiet: true });
      this.hasMore = !!reply.has_more;
      this.el.more.hidden = !this.hasMore;
      // Keep the view where it was when older messages arrive above; else show the newest.
      if (older) log.scrollTop = log.scrollHeight - fromBottom;
      else this.scrollToEnd();
    } catch (err) {
      if (this.room === room && err.name !== 'ServerError') this.onError(err);
    } finally {
      this.loading = false;
      this.el.more.disabled = false;
    }
  }

  /** A `chat` message from the server (or one from a history page). */
  add(m, { quiet = false } = {}) {
    if (!m || m.id == null || (this.room && m.room && m.room !== this.room)) return;
    if (this.byId.has(m.id)) return;
    const log = this.el.log;
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 40;

    const li = document.createElement('li');
    li.className = 'chat-msg';
    li.dataset.id = String(m.id);
    li.dataset.author = String(m.author_id);
    li.dataset.time = String(m.sent_at_ms);
    const mine = this.me() != null && String(m.author_id) === String(this.me());
    if (mine) li.classList.add('mine');
    const meta = document.createElement('div');
    meta.className = 'chat-meta';
    const author = document.createElement('span');
    author.className = 'chat-author';
    author.textContent = mine ? `${m.author} (you)` : m.author;
    const time = document.createElement('time');
    time.className = 'chat-time';
    time.dateTime = new Date(m.sent_at_ms).toISOString();
    time.textContent = formatTime(m.sent_at_ms);
    meta.append(author, time);
    const text = document.createElement('p');
    text.className = 'chat-text';
    text.textContent = m.text;
    li.append(meta, text);

    // Messages are ordered by id; new ones almost always go last.
    let before = null;
    for (let n = this.el.list.lastElementChild; n; n = n.previousElementSibling) {
      if (Number(n.dataset.id) < m.id) break;
      before = n;
    }
    this.el.list.insertBefore(li, before);
    this.byId.set(m.id, li);
    this.regroup(li);
    if (li.nextElementSibling) this.regroup(li.nextElementSibling);
    this.renderEmpty();

    if (!quiet) {
      if (mine || atEnd) this.scrollToEnd();
      if (!this.open && !mine) this.setUnread(this.unread + 1);
    }
  }

  /** Hides the author line of a message that follows the same author's shortly before. */
  regroup(li) {
    const prev = li.previousElementSibling;
    const cont = !!prev && prev.dataset.author === li.dataset.author && Number(li.dataset.time) - Number(prev.dataset.time) < GROUP_MS;
    li.classList.toggle('cont', cont);
  }

  renderEmpty() {
    this.el.empty.hidden = this.byId.size > 0;
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

  async sendFromInput() {
    const text = this.el.input.value;
    if (!text.trim() || !this.room) return;
    this.el.input.value = '';
    this.autosize();
    try {
      const reply = await this.signal.request({ type: 'chat_send', text });
      if (reply.message) this.add(reply.message);
    } catch (err) {
      // Give the words back so nothing typed is lost; the error itself is shown by the app.
      if (!this.el.input.value) {
        this.el.input.value = text;
        this.autosize();
      }
      if (err.name !== 'ServerError') this.onError(err);
    }
  }

  focus() {
    this.el.input.focus();
  }
}
