// /admin: the admin's page (docs/protocol.md, "admin", "admin_overview", "close_room", "delete_chat",
// "set_limits"). It signs this tab's connection in with the admin token (kept in sessionStorage: this tab
// only, so a reload stays signed in and "Log out" forgets it), lists every room with who is in it and
// from which address, refreshed every 3 s while the tab is visible, and acts on them: close a room,
// delete its chat or the room, mute or remove someone. The server-wide limits have their own form, which
// sends only what changed. Names, room names and addresses come from people: set with textContent only.

import { ConfirmDialog } from './access.js';
import { ServerError, Signal, signalUrl } from './signal.js';

const TOKEN_KEY = 'parley.adminToken';
const REFRESH_MS = 3000;
const MAX_PAGES = 20; // admin_overview pages of 100 rooms: at most 2000 rooms on this page

// ---------------------------------------------------------------------------------------------------------
// Limits: pure helpers (also used by e2e/tests/admin.test.js without a browser)

/** Every field of ServerLimits, with how the form reads it. */
export const LIMIT_FIELDS = [
  { field: 'room_creation', kind: 'choice', label: 'who may create rooms' },
  { field: 'max_rooms', kind: 'int', label: 'rooms on the server' },
  { field: 'max_rooms_per_address', kind: 'int', label: 'rooms per address' },
  { field: 'room_idle_expiry_s', kind: 'duration', label: 'empty rooms deleted after' },
  { field: 'max_participants', kind: 'int', label: 'people in a room' },
  { field: 'chat_rate', kind: 'num', label: 'chat messages per second, per person' },
  { field: 'chat_burst', kind: 'num', label: 'chat burst per person' },
  { field: 'chat_rate_per_address', kind: 'num', label: 'chat messages per second, per address' },
  { field: 'chat_burst_per_address', kind: 'num', label: 'chat burst per address' },
  { field: 'chat_retention_days', kind: 'num', label: 'chat kept for (days)' },
];

export const UNITS = [
  { s: 86400, name: 'days', one: 'day' },
  { s: 3600, name: 'hours', one: 'hour' },
  { s: 60, name: 'minutes', one: 'minute' },
  { s: 1, name: 'seconds', one: 'second' },
];

/** The largest unit (seconds in it) that shows `seconds` as a whole number; days for 0. */
export function bestUnit(seconds) {
  for (const u of UNITS) if (seconds % u.s === 0) return u.s;
  return 1;
}

/** Seconds from what was typed in `unit`s: a whole number of seconds, or throws with a message for people. */
export function toSeconds(text, unit) {
  const v = Number(String(text).trim());
  if (String(text).trim() === '' || !Number.isFinite(v) || v < 0) throw new Error('empty rooms deleted after: a number of 0 or more, please');
  const s = v * unit;
  const whole = Math.round(s);
  if (Math.abs(s - whole) > 1e-6) throw new Error('empty rooms deleted after: that is not a whole number of seconds');
  return whole;
}

/** `seconds` shown in `unit`s (exact: toSeconds gives `seconds` back). */
export function inUnit(seconds, unit) {
  return String(seconds / unit);
}

/** A duration for people: "30 days", "1 hour", "90 seconds", "never" for 0. */
export function describeDuration(seconds) {
  if (seconds === 0) return 'never';
  const u = UNITS.find((x) => x.s === bestUnit(seconds));
  const n = seconds / u.s;
  return `${n} ${n === 1 ? u.one : u.name}`;
}

/** A number field's value, or throws with a message for people. */
export function parseNumber(text, kind, label) {
  const t = String(text).trim();
  const v = Number(t);
  if (t === '' || !Number.isFinite(v)) throw new Error(`${label}: a number, please`);
  if (kind === 'int' && !Number.isInteger(v)) throw new Error(`${label}: a whole number, please`);
  return v;
}

/**
 * What `set_limits` should send: the fields of `values` (what the form holds, already parsed) that differ
 * from `base` (the limits the server last said). Fields absent from `values` are left out.
 */
export function limitsChange(base, values) {
  const change = {};
  for (const { field } of LIMIT_FIELDS) {
    if (!(field in values)) continue;
    if (!base || values[field] !== base[field]) change[field] = values[field];
  }
  return change;
}

// ---------------------------------------------------------------------------------------------------------
// DOM helpers

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function show(node, text, code = '') {
  node.textContent = text || '';
  node.hidden = !text;
  if (code) node.dataset.code = code;
  else delete node.dataset.code;
}

function button(text, testid, kind = '') {
  const b = el('button', `btn small${kind ? ` ${kind}` : ''}`, text);
  b.type = 'button';
  b.dataset.testid = testid;
  return b;
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function ago(ms, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.round(h / 24)} days ago`;
}

const ACCESS = { public: 'Public', password: 'Password', private: 'Private' };

// ---------------------------------------------------------------------------------------------------------
// The page

function start() {
  const signal = new Signal(signalUrl());
  const confirm = new ConfirmDialog();
  const ui = {
    conn: $('conn'),
    logout: $('logout'),
    login: $('login'),
    loginForm: $('login-form'),
    loginToken: $('login-token'),
    loginError: $('login-error'),
    loginSubmit: $('login-submit'),
    panel: $('panel'),
    totalRooms: $('total-rooms'),
    connections: $('connections'),
    inRooms: $('in-rooms'),
    actionError: $('action-error'),
    actionOk: $('action-ok'),
    updated: $('updated'),
    table: $('rooms-table'),
    empty: $('rooms-empty'),
    more: $('rooms-more'),
    limitsForm: $('limits-form'),
    limitsError: $('limits-error'),
    limitsOk: $('limits-ok'),
    limitsSave: $('limits-save'),
    limitsReset: $('limits-reset'),
    expiry: $('limit-room_idle_expiry'),
    expiryUnit: $('limit-room_idle_expiry_unit'),
  };

  const page = {
    token: readToken(),
    signedIn: false, // this connection is the admin
    signingIn: false,
    signIns: 0, // times this page signed in (by hand or again after a reconnect)
    rooms: new Map(), // name -> {body, cells, people: Map(id -> row)}
    pagesWanted: 1,
    busy: new Set(), // actions in flight ('close:<room>', 'kick:<id>', ...): their buttons stay disabled
    limits: null, // the limits the server last said, which the form shows unless edited
    refreshing: false,
    refreshAgain: false,
    soonTimer: null,
  };

  function readToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch {
      return '';
    }
  }

  function keepToken(token) {
    page.token = token;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // storage refused: signed in until the page is reloaded
    }
  }

  function setConn(state, label) {
    ui.conn.dataset.state = state;
    setText(ui.conn.querySelector('.conn-label'), label);
  }

  // ----- signing in and out -----

  function showLogin(error = '') {
    page.signedIn = false;
    ui.panel.hidden = true;
    ui.logout.hidden = true;
    ui.login.hidden = false;
    show(ui.loginError, error);
    clearRooms();
    page.limits = null;
    if (!confirm.dialog.open) ui.loginToken.focus();
  }

  function showPanel() {
    ui.login.hidden = true;
    ui.panel.hidden = false;
    ui.logout.hidden = false;
  }

  async function signIn(token) {
    page.signingIn = true;
    try {
      await signal.request({ type: 'admin', token }, { ownErrors: true });
    } finally {
      page.signingIn = false;
    }
    keepToken(token);
    page.signedIn = true;
    page.signIns += 1;
    showPanel();
    refresh();
  }

  ui.loginForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = ui.loginToken.value.trim();
    if (!token) {
      show(ui.loginError, 'Please paste the admin token.');
      ui.loginToken.focus();
      return;
    }
    ui.loginSubmit.disabled = true;
    show(ui.loginError, '');
    try {
      await signIn(token);
      ui.loginToken.value = '';
    } catch (err) {
      show(ui.loginError, err.message || String(err), err.code || '');
      ui.loginToken.focus();
      ui.loginToken.select();
    } finally {
      ui.loginSubmit.disabled = false;
    }
  });

  ui.logout.addEventListener('click', () => {
    keepToken('');
    confirm.close();
    showLogin();
    // The server still knows this connection as the admin: start a fresh one.
    signal.close(false);
  });

  signal.addEventListener('open', () => {
    setConn('online', 'Connected');
    if (!page.token) return;
    // On load with a kept token, and after every reconnect: sign in again by ourselves.
    signIn(page.token).catch((err) => {
      if (err instanceof ServerError) {
        keepToken('');
        showLogin(`Signed out: ${err.message}`);
      }
      // A lost connection: the next 'open' tries again.
    });
  });

  signal.addEventListener('close', () => {
    page.signedIn = false;
    setConn('offline', 'Reconnecting…');
  });

  signal.addEventListener('message', (ev) => {
    const msg = ev.detail;
    // Rooms came, went or changed their counts: look again soon (several changes, one look).
    if (page.signedIn && (msg.type === 'room_added' || msg.type === 'room_removed' || msg.type === 'room_updated')) {
      refreshSoon();
    }
  });

  // ----- the overview -----

  function refreshSoon(delay = 250) {
    clearTimeout(page.soonTimer);
    page.soonTimer = setTimeout(refresh, delay);
  }

  async function refresh() {
    if (!page.signedIn || !signal.connected) return;
    if (page.refreshing) {
      page.refreshAgain = true;
      return;
    }
    page.refreshing = true;
    try {
      let first = null;
      let after = null;
      let hasMore = false;
      const rooms = [];
      for (let i = 0; i < page.pagesWanted; i++) {
        const reply = await signal.request({ type: 'admin_overview', ...(after != null ? { after } : {}) }, { ownErrors: true });
        if (!first) first = reply;
        rooms.push(...(reply.rooms || []));
        hasMore = !!reply.has_more;
        if (!hasMore || !reply.rooms || reply.rooms.length === 0) break;
        after = reply.rooms[reply.rooms.length - 1].name;
      }
      if (!page.signedIn) return; // logged out meanwhile
      render(first, rooms, hasMore);
      setText(ui.updated, `Updated ${new Date().toLocaleTimeString()}`);
    } catch (err) {
      if (err instanceof ServerError && err.code === 'forbidden') {
        keepToken('');
        showLogin(`Signed out: ${err.message}`);
      } else if (page.signedIn) {
        setText(ui.updated, `Could not update: ${err.message}`);
      }
    } finally {
      page.refreshing = false;
      if (page.refreshAgain) {
        page.refreshAgain = false;
        refreshSoon(0);
      }
    }
  }

  setInterval(() => {
    if (document.visibilityState === 'visible') refresh();
  }, REFRESH_MS);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') refresh();
  });

  ui.more.addEventListener('click', () => {
    page.pagesWanted = Math.min(MAX_PAGES, page.pagesWanted + 1);
    refresh();
  });

  function render(overview, rooms, hasMore) {
    setText(ui.totalRooms, String(overview.total_rooms));
    setText(ui.connections, String(overview.connections));
    setText(ui.inRooms, String(overview.in_rooms));
    renderRooms(rooms);
    ui.empty.hidden = rooms.length > 0;
    ui.more.hidden = !hasMore || page.pagesWanted >= MAX_PAGES;
    if (overview.limits) showLimits(overview.limits);
  }

  function clearRooms() {
    for (const entry of page.rooms.values()) entry.body.remove();
    page.rooms.clear();
    page.pagesWanted = 1;
    for (const n of [ui.totalRooms, ui.connections, ui.inRooms]) n.textContent = '–';
    ui.empty.hidden = true;
    ui.more.hidden = true;
    setText(ui.updated, '');
    show(ui.actionError, '');
    show(ui.actionOk, '');
  }

  /** Updates the table in place: rows are kept by room name and participant id, so focus stays put. */
  function renderRooms(rooms) {
    const seen = new Set();
    let prev = ui.table.tHead;
    for (const room of rooms) {
      seen.add(room.name);
      let entry = page.rooms.get(room.name);
      if (!entry) {
        entry = roomEntry(room.name);
        page.rooms.set(room.name, entry);
      }
      updateRoom(entry, room);
      if (prev.nextSibling !== entry.body) ui.table.insertBefore(entry.body, prev.nextSibling);
      prev = entry.body;
    }
    for (const [name, entry] of page.rooms) {
      if (!seen.has(name)) {
        entry.body.remove();
        page.rooms.delete(name);
      }
    }
  }

  function roomEntry(name) {
    const body = el('tbody', 'admin-room');
    body.dataset.room = name;
    const row = el('tr', 'admin-room-row');
    const nameCell = el('th', 'admin-room-name');
    nameCell.scope = 'row';
    const nameText = el('span', null, name);
    const defaultMark = el('span', 'flag viewer', 'Default');
    defaultMark.dataset.testid = 'room-default';
    nameCell.append(nameText, defaultMark);
    const accessCell = el('td');
    const accessText = el('span');
    accessText.dataset.testid = 'room-access';
    const lockedMark = el('span', 'flag muted', 'Locked');
    lockedMark.dataset.testid = 'room-locked';
    accessCell.append(accessText, lockedMark);
    const peopleCell = el('td');
    peopleCell.dataset.testid = 'room-people';
    const createdCell = el('td');
    createdCell.dataset.testid = 'room-created-by';
    const idleCell = el('td');
    idleCell.dataset.testid = 'room-idle';
    const actions = el('td', 'admin-actions');
    const close = button('Close', 'room-close');
    const delChat = button('Delete chat', 'room-delete-chat');
    const delRecs = button('Delete recordings', 'room-delete-recordings');
    const delRoom = button('Delete room', 'room-delete', 'danger');
    actions.append(close, delChat, delRecs, delRoom);
    row.append(nameCell, accessCell, peopleCell, createdCell, idleCell, actions);

    const peopleRow = el('tr', 'admin-people-row');
    const peopleTd = el('td');
    peopleTd.colSpan = 6;
    const nobody = el('p', 'muted admin-nobody', 'Nobody here.');
    const peopleTable = el('table', 'status-table admin-people');
    peopleTable.dataset.testid = 'room-people-table';
    const caption = el('caption', 'sr-only', `People in ${name}`);
    const head = el('thead');
    const hr = el('tr');
    for (const h of ['Name', 'Role', 'Microphone', 'Address']) {
      const th = el('th', null, h);
      th.scope = 'col';
      hr.appendChild(th);
    }
    const actionsTh = el('th');
    actionsTh.scope = 'col';
    actionsTh.appendChild(el('span', 'sr-only', 'Actions'));
    hr.appendChild(actionsTh);
    head.appendChild(hr);
    const peopleBody = el('tbody');
    peopleTable.append(caption, head, peopleBody);
    peopleTd.append(nobody, peopleTable);
    peopleRow.appendChild(peopleTd);
    body.append(row, peopleRow);

    const entry = {
      body,
      name,
      room: null,
      nameText,
      defaultMark,
      accessText,
      lockedMark,
      peopleCell,
      createdCell,
      idleCell,
      close,
      delChat,
      delRecs,
      delRoom,
      nobody,
      peopleTable,
      peopleBody,
      people: new Map(),
    };
    close.addEventListener('click', () => closeRoom(entry));
    delChat.addEventListener('click', () => deleteChat(entry));
    delRecs.addEventListener('click', () => deleteRecordings(entry));
    delRoom.addEventListener('click', () => deleteRoom(entry));
    return entry;
  }

  function updateRoom(entry, room) {
    entry.room = room;
    const s = room.settings || {};
    entry.defaultMark.hidden = !room.default;
    setText(entry.accessText, ACCESS[s.access] || s.access || '–');
    entry.lockedMark.hidden = !s.locked;
    const ps = room.participants || [];
    const viewers = ps.filter((p) => p.role === 'viewer').length;
    const members = ps.length - viewers;
    setText(entry.peopleCell, viewers ? `${members} + ${plural(viewers, 'viewer', 'viewers')}` : String(members));
    setText(entry.createdCell, room.created_by || (room.default ? 'the server' : '–'));
    if (ps.length > 0) {
      setText(entry.idleCell, 'in use');
      entry.idleCell.removeAttribute('title');
    } else if (Number.isFinite(room.idle_since_ms)) {
      setText(entry.idleCell, ago(room.idle_since_ms));
      entry.idleCell.title = new Date(room.idle_since_ms).toLocaleString();
    } else {
      setText(entry.idleCell, '–');
      entry.idleCell.removeAttribute('title');
    }
    entry.close.disabled = ps.length === 0 || page.busy.has(`close:${room.name}`);
    entry.delChat.disabled = page.busy.has(`chat:${room.name}`);
    entry.delRecs.disabled = page.busy.has(`recs:${room.name}`);
    entry.delRecs.setAttribute('aria-label', `Delete recordings of ${room.name}`);
    entry.delRoom.disabled = page.busy.has(`delete:${room.name}`);
    entry.close.setAttribute('aria-label', `Close ${room.name}`);
    entry.delChat.setAttribute('aria-label', `Delete chat of ${room.name}`);
    entry.delRoom.setAttribute('aria-label', `Delete room ${room.name}`);

    entry.nobody.hidden = ps.length > 0;
    entry.peopleTable.hidden = ps.length === 0;
    const seen = new Set();
    let prev = null;
    for (const p of ps) {
      const key = String(p.id);
      seen.add(key);
      let row = entry.people.get(key);
      if (!row) {
        row = personRow(entry, p);
        entry.people.set(key, row);
      }
      updatePerson(row, p);
      const want = prev ? prev.tr.nextSibling : entry.peopleBody.firstChild;
      if (want !== row.tr) entry.peopleBody.insertBefore(row.tr, want);
      prev = row;
    }
    for (const [key, row] of entry.people) {
      if (!seen.has(key)) {
        row.tr.remove();
        entry.people.delete(key);
      }
    }
  }

  function personRow(entry, p) {
    const tr = el('tr', 'admin-person');
    tr.dataset.participantId = String(p.id);
    const nameCell = el('td');
    const nameBox = el('div', 'status-name');
    const nameText = el('span', null, p.name);
    nameText.dataset.testid = 'person-name';
    const ownerMark = el('span', 'flag speaking', 'Owner');
    ownerMark.dataset.testid = 'person-owner';
    nameBox.append(nameText, ownerMark);
    nameCell.appendChild(nameBox);
    const roleCell = el('td');
    roleCell.dataset.testid = 'person-role';
    const micCell = el('td');
    const micText = el('span');
    micText.dataset.testid = 'person-mic';
    micCell.appendChild(micText);
    const addrCell = el('td');
    addrCell.dataset.testid = 'person-address';
    const actions = el('td', 'admin-actions');
    const mute = button('Mute', 'person-mute');
    const kick = button('Kick', 'person-kick', 'danger');
    actions.append(mute, kick);
    tr.append(nameCell, roleCell, micCell, addrCell, actions);
    const row = { tr, p, nameText, ownerMark, roleCell, micText, addrCell, mute, kick };
    mute.addEventListener('click', () => mutePerson(entry, row));
    kick.addEventListener('click', () => kickPerson(entry, row));
    return row;
  }

  function updatePerson(row, p) {
    row.p = p;
    setText(row.nameText, p.name);
    row.ownerMark.hidden = !p.owner;
    setText(row.roleCell, p.role === 'viewer' ? 'viewer' : 'member');
    const muted = !!p.mic_muted;
    setText(row.micText, muted ? 'Muted' : 'On');
    row.micText.className = muted ? 'flag muted' : '';
    setText(row.addrCell, p.address || '–');
    row.mute.disabled = muted || p.role === 'viewer' || page.busy.has(`mute:${p.id}`);
    row.kick.disabled = page.busy.has(`kick:${p.id}`);
    row.mute.setAttribute('aria-label', `Mute ${p.name}`);
    row.kick.setAttribute('aria-label', `Kick ${p.name}`);
  }

  // ----- actions -----

  /** Runs one admin request with its button disabled; shows the outcome above the table; refreshes. */
  async function act(key, buttonEl, msg, done) {
    if (page.busy.has(key)) return;
    page.busy.add(key);
    buttonEl.disabled = true;
    show(ui.actionError, '');
    show(ui.actionOk, '');
    try {
      await signal.request(msg, { ownErrors: true });
      show(ui.actionOk, done);
    } catch (err) {
      show(ui.actionError, err.message || String(err), err.code || 'client');
    } finally {
      page.busy.delete(key);
      buttonEl.disabled = false;
      refresh();
    }
  }

  async function closeRoom(entry) {
    const room = entry.name;
    const n = (entry.room && entry.room.participants.length) || 0;
    const ok = await confirm.ask({
      title: `Close ${room}?`,
      text: `Everyone in ${room} (${plural(n, 'person', 'people')}) leaves it at once; they may join again. The room and its chat stay.`,
      ok: 'Close room',
    });
    if (!ok) return;
    act(`close:${room}`, entry.close, { type: 'close_room', room }, `Closed ${room}: everyone in it left.`);
  }

  async function deleteChat(entry) {
    const room = entry.name;
    const ok = await confirm.ask({
      title: `Delete the chat of ${room}?`,
      text: `The whole chat history of ${room} is deleted for good; the people in it see their chat emptied.`,
      ok: 'Delete chat',
    });
    if (!ok) return;
    act(`chat:${room}`, entry.delChat, { type: 'delete_chat', room }, `Deleted the chat of ${room}.`);
  }

  async function deleteRecordings(entry) {
    const room = entry.name;
    const ok = await confirm.ask({
      title: `Delete the recordings of ${room}?`,
      text: `Every finished recording of ${room} is deleted with its files, for good (one running or being made stays).`,
      ok: 'Delete recordings',
    });
    if (!ok) return;
    act(`recs:${room}`, entry.delRecs, { type: 'delete_recordings', room }, `Deleted the recordings of ${room}.`);
  }

  async function deleteRoom(entry) {
    const room = entry.name;
    const ok = await confirm.ask({
      title: `Delete ${room}?`,
      text: `${room} is deleted with its chat, its owners' keys and its invites; everyone in it leaves. This cannot be undone.${entry.room && entry.room.default ? ' It is the default room.' : ''}`,
      ok: 'Delete room',
      typed: room,
    });
    if (!ok) return;
    act(`delete:${room}`, entry.delRoom, { type: 'delete_room', room }, `Deleted ${room}.`);
  }

  function mutePerson(entry, row) {
    const { id, name } = row.p;
    act(`mute:${id}`, row.mute, { type: 'mute', participant_id: id }, `Muted ${name} in ${entry.name}.`);
  }

  async function kickPerson(entry, row) {
    const { id, name } = row.p;
    const ok = await confirm.ask({
      title: `Kick ${name}?`,
      text: `${name} is removed from ${entry.name} at once and cannot come back from that address (${row.p.address || 'unknown'}) for 10 minutes.`,
      ok: 'Kick',
    });
    if (!ok) return;
    act(`kick:${id}`, row.kick, { type: 'kick', participant_id: id }, `Removed ${name} from ${entry.name}.`);
  }

  // ----- limits -----

  const inputs = new Map(LIMIT_FIELDS.filter((f) => f.kind !== 'duration').map((f) => [f.field, $(`limit-${f.field}`)]));
  let expiryUnit = Number(ui.expiryUnit.value);

  /** What the form holds, parsed; throws with a message for people. */
  function formValues() {
    const values = {};
    for (const f of LIMIT_FIELDS) {
      if (f.kind === 'duration') values[f.field] = toSeconds(ui.expiry.value, Number(ui.expiryUnit.value));
      else if (f.kind === 'choice') values[f.field] = inputs.get(f.field).value;
      else values[f.field] = parseNumber(inputs.get(f.field).value, f.kind, f.label);
    }
    return values;
  }

  /** The form's value for one field, or undefined when it does not parse. */
  function formValue(f) {
    try {
      if (f.kind === 'duration') return toSeconds(ui.expiry.value, Number(ui.expiryUnit.value));
      if (f.kind === 'choice') return inputs.get(f.field).value;
      return parseNumber(inputs.get(f.field).value, f.kind, f.label);
    } catch {
      return undefined;
    }
  }

  function writeField(f, value) {
    if (f.kind === 'duration') {
      expiryUnit = bestUnit(value);
      ui.expiryUnit.value = String(expiryUnit);
      ui.expiry.value = inUnit(value, expiryUnit);
    } else {
      inputs.get(f.field).value = String(value);
    }
  }

  /**
   * The server's limits into the form. With `all`, every field; else (a refresh) only the fields the
   * server changed and the admin has not edited, so typing is never undone under the admin's hands.
   */
  function showLimits(limits, all = false) {
    const base = page.limits;
    for (const f of LIMIT_FIELDS) {
      const v = limits[f.field];
      if (v === undefined) continue;
      if (all || !base) writeField(f, v);
      else if (v !== base[f.field] && formValue(f) === base[f.field]) writeField(f, v);
    }
    page.limits = { ...limits };
  }

  ui.expiryUnit.addEventListener('change', () => {
    // The same time in the new unit.
    const unit = Number(ui.expiryUnit.value);
    try {
      const s = toSeconds(ui.expiry.value, expiryUnit);
      ui.expiry.value = inUnit(s, unit);
    } catch {
      // leave what was typed; Save says what is wrong
    }
    expiryUnit = unit;
  });

  ui.limitsReset.addEventListener('click', () => {
    if (page.limits) showLimits(page.limits, true);
    show(ui.limitsError, '');
    show(ui.limitsOk, '');
  });

  ui.limitsForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    show(ui.limitsError, '');
    show(ui.limitsOk, '');
    if (!page.limits) return;
    let change;
    try {
      change = limitsChange(page.limits, formValues());
    } catch (err) {
      show(ui.limitsError, err.message, 'form');
      return;
    }
    if (Object.keys(change).length === 0) {
      show(ui.limitsOk, 'Nothing to save: no limit was changed.');
      return;
    }
    ui.limitsSave.disabled = true;
    try {
      const reply = await signal.request({ type: 'set_limits', limits: change }, { ownErrors: true });
      const now = reply.limits || {};
      page.limits = null;
      showLimits(now, true);
      const said = LIMIT_FIELDS.filter((f) => f.field in change).map((f) => {
        const v = now[f.field];
        return `${f.label} ${f.kind === 'duration' ? describeDuration(v) : v}`;
      });
      show(ui.limitsOk, `Saved. In force now: ${said.join('; ')}.`);
    } catch (err) {
      show(ui.limitsError, err.message || String(err), err.code || 'client');
    } finally {
      ui.limitsSave.disabled = false;
    }
  });

  // ----- start -----

  window.addEventListener('pagehide', () => signal.close());
  window.addEventListener('pageshow', (ev) => {
    if (ev.persisted) signal.connect();
  });
  if (!page.token) showLogin();
  setConn('connecting', 'Connecting…');
  signal.connect();

  // For tests and debugging.
  window.parleyAdmin = {
    get signedIn() {
      return page.signedIn;
    },
    get limits() {
      return page.limits ? { ...page.limits } : null;
    },
    get connected() {
      return signal.connected;
    },
    get signIns() {
      return page.signIns;
    },
    /** Drops the WebSocket as a network failure would (the page reconnects and signs in again). */
    dropConnection() {
      if (signal.ws) signal.ws.close();
    },
    refresh,
  };
}

if (typeof document !== 'undefined') start();
