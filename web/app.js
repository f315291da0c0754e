// parley's browser client: name screen, lobby, room. The server is the authority for who is where and
// who may do what; this file renders what it says and drives the media session (call.js) over the
// signalling socket. Room access (passwords, invites, owners, the admin) has its dialogs in access.js;
// room recordings (the Record button, the indicator, the Recordings panel) are in recording.js; studio
// mode (roles, takes, markers, segments) in studio.js.

import { Signal, ServerError, signalUrl } from './signal.js';
import { prefs, checkDisplayName } from './prefs.js';
import { LocalMedia, deviceErrorText } from './media.js';
import { Call } from './call.js';
import { Tile, initials, hueFor, layoutStage, setAudioOutput } from './tiles.js';
import { audioContext, meterPosition, serverLevelPosition } from './levels.js';
import { Roster } from './roster.js';
import { ChatPanel, DEFAULT_MAX_CHARS } from './chat.js';
import { DeviceSettings } from './settings.js';
import { AdminDialog, ConfirmDialog, ParticipantMenu, PasswordDialog, RoomAdmin, linkFromLocation, roomPath } from './access.js';
import { RoomRecording } from './recording.js';
import { Studio } from './studio.js';
import { Prejoin } from './prejoin.js';
import { RoomLinks } from './roomlink.js';
import { MuteHint, Shortcuts, muteHintText, touchOnly } from './shortcuts.js';
import { PushToTalk } from './ptt.js';
import { Rejoin } from './rejoin.js';
import { PeoplePanel, chooseLarge, saveVolume, volumeFor } from './people.js';
import { ScreenShare } from './screenshare.js';

const $ = (id) => document.getElementById(id);

const ui = {
  app: $('app'),
  conn: $('conn'),
  connLabel: document.querySelector('#conn .conn-label'),
  meChip: $('me-chip'),
  meName: $('me-name'),
  meAvatar: $('me-avatar'),
  roomsToggle: $('rooms-toggle'),
  topbarRoom: $('topbar-room'),
  roomTitle: $('room-title'),
  roomCount: $('room-count'),
  roomAccess: $('room-access'),
  roomLink: $('room-link'),
  roomAdminOpen: $('room-admin-open'),
  nameLink: $('name-link'),
  nameLinkRoom: $('name-link-room'),
  createAccess: $('create-access'),
  createPasswordRow: $('create-password-row'),
  createPassword: $('create-password'),
  adminOpen: $('admin-open'),
  adminBadge: $('admin-badge'),
  viewToggle: $('view-toggle'),
  settingsOpen: $('settings-open'),
  nameForm: $('name-form'),
  nameInput: $('name-input'),
  nameError: $('name-error'),
  lobbyClose: $('lobby-close'),
  inRoomNote: $('in-room-note'),
  inRoomName: $('in-room-name'),
  lobbyLeave: $('lobby-leave'),
  createForm: $('create-form'),
  createInput: $('create-room-input'),
  createSubmit: $('create-room-submit'),
  createError: $('create-error'),
  createRule: $('create-rule'),
  roomList: $('room-list'),
  roomsEmpty: $('rooms-empty'),
  roomsMore: $('rooms-more'),
  tiles: $('tiles'),
  micToggle: $('mic-toggle'),
  speakerToggle: $('speaker-toggle'),
  cameraToggle: $('camera-toggle'),
  leave: $('leave'),
  room: $('room'),
  chatToggle: $('chat-toggle'),
  chatUnread: $('chat-unread'),
  chatClose: $('chat-close'),
  toasts: $('toasts'),
  roomItemTpl: $('room-item-tpl'),
};

const app = {
  name: prefs.name,
  state: prefs.state, // this tab's MediaState (mic_muted, deafened, camera_off)
  reconnects: [], // each time the page came back into its room by itself (rejoin.js)
  resumeToken: null, // the last joined's resume_token: comes back as the same participant after a drop
  maxParticipants: 16,
  maxChatChars: DEFAULT_MAX_CHARS,
  roomCreation: 'anyone', // who may create rooms here (welcome.room_creation): anyone, owners or admin
  rooms: [],
  roomsKnown: false,
  roomsMore: false,
  room: null, // name of the room we are in
  me: null, // our participant id (number) in that room
  joining: null, // name of the room a join is under way for
  viewMode: prefs.viewMode, // 'speaker': one person large, the others in a strip; 'grid': all the same
  featured: null, // id (string) of the person shown large in speaker view
  pinned: null, // id (string) of the person pinned large (People panel), in either view; null: automatic
  tabRoom: prefs.tabRoom, // the room this tab was in before a reload: joined again once
  tiles: new Map(), // id (string) -> Tile, including our own
  local: null, // LocalMedia while in a room
  call: null, // Call while in a room
  entering: null, // messages held while a room is being entered (all but the media offer), then handled
  mediaReady: Promise.resolve(), // settles when the devices asked for at join time are open (or failed)
  busy: new Set(), // controls with an operation under way
  owner: false, // we are an owner of the room we are in (joined.owner, owner_key, participant_updated)
  settings: null, // the room's {access, locked, has_password} while in it
  admin: false, // this connection is the admin (after `admin`)
  adminToken: '', // kept in memory only, to be the admin again after a reconnect
  deleting: null, // the room we asked to delete (its room_deleted is then our own doing)
  link: linkFromLocation(), // {room, invite} when the page was opened at /r/<room>[?invite=...]
  listener: false, // a studio listener: publishes nothing (studio.js says so)
};

const signal = new Signal(signalUrl());
// The others in the room (members get a tile, viewers do not), the active speaker and the voice levels.
const roster = new Roster();
// The pre-join check before entering a room (prejoin.js): preview, meter, devices, mic / camera switches.
const prejoin = new Prejoin({ signal, onShow: () => setView('prejoin') });

// ---------------------------------------------------------------------------------------------------------
// Views

function setView(view) {
  ui.app.dataset.view = view;
  document.body.dataset.view = view;
  const inRoom = view === 'room';
  ui.roomsToggle.hidden = !inRoom;
  ui.topbarRoom.hidden = !inRoom;
  ui.viewToggle.hidden = !inRoom;
  ui.roomLink.hidden = !inRoom;
  if (!inRoom) setRoomsOpen(false);
  ui.meChip.hidden = !app.name || view === 'name';
  ui.meChip.disabled = inRoom || view === 'prejoin';
  if (view !== 'prejoin') prejoin.clear(); // an open check ends as its Back does
  ui.meChip.title = inRoom ? 'Leave the room to change your name' : 'Change your name';
  document.title = inRoom && app.room ? `${app.room} · parley` : 'parley';
}

function setRoomsOpen(open) {
  ui.app.classList.toggle('rooms-open', open);
  ui.roomsToggle.setAttribute('aria-expanded', String(open));
}

function showNameScreen() {
  ui.nameInput.value = app.name;
  ui.nameError.hidden = true;
  ui.nameLink.hidden = !app.link;
  ui.nameLinkRoom.textContent = app.link ? app.link.room : '';
  setView('name');
  ui.nameInput.focus();
}

function showLobby() {
  setView('lobby');
  renderRooms();
  // Focus moves into the new screen (unless something there already has it): the create-room field, or on
  // a touch screen (where a focused field brings up the keyboard) the list's heading.
  if (!$('lobby').contains(document.activeElement)) {
    const touch = window.matchMedia && window.matchMedia('(pointer: coarse)').matches;
    (touch ? $('lobby-title') : ui.createInput).focus({ preventScroll: true });
  }
}

function renderMe() {
  ui.meName.textContent = app.name;
  ui.meAvatar.textContent = initials(app.name);
  ui.meAvatar.style.setProperty('--hue', String(hueFor(app.name)));
}

ui.nameForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const res = checkDisplayName(ui.nameInput.value);
  if (res.error) {
    ui.nameError.textContent = res.error;
    ui.nameError.hidden = false;
    ui.nameInput.focus();
    return;
  }
  app.name = res.name;
  prefs.name = res.name;
  renderMe();
  showLobby();
  joinFromLink();
});

ui.meChip.addEventListener('click', () => {
  if (!app.room && !app.joining) showNameScreen();
});

ui.roomsToggle.addEventListener('click', () => setRoomsOpen(!ui.app.classList.contains('rooms-open')));
ui.roomsMore.addEventListener('click', () => loadMoreRooms());
ui.lobbyClose.addEventListener('click', () => setRoomsOpen(false));
// Escape closes the room list first (shortcuts.js: closeTopPanel).

// ---------------------------------------------------------------------------------------------------------
// Toasts: every server error is shown here (role=alert), dismissable.

/** How long entering a room waits for the server's first offer before drawing the room anyway. */
const OFFER_HEAD_START_MS = 100;

const ERROR_TITLES = {
  bad_message: 'Request rejected',
  message_too_large: 'Request too large',
  invalid_room_name: 'Invalid room name',
  invalid_name: 'Invalid name',
  no_such_room: 'Room not found',
  room_exists: 'Room already exists',
  room_full: 'Room is full',
  already_in_room: 'Already in a room',
  not_in_room: 'Not in a room',
  bad_sdp: 'Media negotiation failed',
  rate_limited: 'Slow down',
  message_too_long: 'Message too long',
  empty_message: 'Empty message',
  password_required: 'Password needed',
  wrong_password: 'Wrong password',
  invite_required: 'Invite needed',
  invalid_invite: 'Invite link not valid',
  room_locked: 'Room is locked',
  banned: 'You were removed from this room',
  forbidden: 'Not allowed',
  invalid_password: 'Invalid password',
  recording_running: 'Already recording',
  not_recording: 'Not recording',
  internal: 'Server error',
};

function toast(message, { title = '', code = '', kind = 'error', action = null, timeout = 12_000 } = {}) {
  const el = document.createElement('div');
  el.className = `toast ${kind}`;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  el.dataset.testid = 'toast';
  if (code) el.dataset.code = code;
  const body = document.createElement('div');
  body.className = 'toast-body';
  if (title) {
    const t = document.createElement('strong');
    t.className = 'toast-title';
    t.textContent = title;
    body.appendChild(t);
  }
  const p = document.createElement('p');
  p.className = 'toast-msg';
  p.textContent = message;
  body.appendChild(p);
  el.appendChild(body);
  const close = () => {
    clearTimeout(timer);
    el.remove();
  };
  if (action) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn small toast-action';
    b.textContent = action.label;
    b.addEventListener('click', () => {
      close();
      action.run();
    });
    body.appendChild(b);
  }
  const x = document.createElement('button');
  x.type = 'button';
  x.className = 'icon-btn toast-close';
  x.dataset.testid = 'toast-dismiss';
  x.setAttribute('aria-label', 'Dismiss');
  x.textContent = '×';
  x.addEventListener('click', close);
  el.appendChild(x);
  ui.toasts.appendChild(el);
  while (ui.toasts.children.length > 4) ui.toasts.firstElementChild.remove();
  const timer = timeout ? setTimeout(close, timeout) : null;
  return el;
}

function serverErrorToast(msg) {
  const opts = { title: ERROR_TITLES[msg.code] || 'Error', code: msg.code || '' };
  if (msg.code === 'already_in_room' && app.room) {
    opts.action = { label: 'Leave current room', run: () => leaveRoom() };
    opts.timeout = 20_000;
  }
  toast(msg.message || msg.code || 'The server refused the request.', opts);
}

// ---------------------------------------------------------------------------------------------------------
// Connection

function setConn(state, label) {
  ui.conn.dataset.state = state;
  ui.connLabel.textContent = label;
}

signal.addEventListener('open', () => {
  setConn('online', 'Connected');
  resumeAfterDrop();
  if (app.adminToken) becomeAdmin(app.adminToken, { again: true }).catch((err) => {
    app.adminToken = '';
    toast(err.message, { title: 'No longer the admin', code: err.code || 'admin' });
  });
});

signal.addEventListener('reconnecting', () => {
  setConn('offline', 'Reconnecting…');
});

signal.addEventListener('close', () => {
  app.roomsKnown = false;
  setAdmin(false); // a new connection is not the admin until it says so again
  if (app.room && !app.joining) {
    // The call stays on screen under "Reconnecting…"; rejoin.js brings us back once the server answers.
    // The media connection went with the network: a new one is made on the way back.
    rejoin.start({ room: app.room, token: app.resumeToken });
    if (app.call) app.call.close();
    app.call = null;
  } else if (app.joining && !rejoin.active) {
    teardownRoom();
    showLobby();
    toast('The connection to the server was lost before you were in the room.', {
      title: 'Disconnected',
      code: 'disconnected',
    });
  }
  renderRooms();
});

/**
 * The media connection failed (the browser saw ICE or DTLS go, or the server said `media_lost`) while the
 * signalling socket is up: come back exactly as after a drop. A new socket joins with the resume token,
 * which takes our place over from the old one (the server closes that; closing it ourselves would leave the
 * room), and the call gets a new media connection. The overlay shows meanwhile; after a minute, Rejoin.
 */
function mediaLost() {
  if (!app.room || app.joining || rejoin.active) return;
  rejoin.start({ room: app.room, token: app.resumeToken });
  if (app.call) app.call.close();
  app.call = null;
  signal.replace();
}

// Gave up coming back (a minute without the server): the lobby, with a way back in.
const rejoin = new Rejoin({
  overlay: $('reconnecting'),
  label: $('reconnecting-label'),
  onGiveUp: (room) => {
    teardownRoom();
    showLobby();
    toast(`The server could not be reached for a minute, so you left ${room}.`, {
      title: 'Disconnected',
      code: 'disconnected',
      action: { label: 'Rejoin', run: () => joinRoom(room) },
      timeout: 0,
    });
  },
});

/**
 * The connection is back after a drop in a room: join it again as the same participant (resume token).
 * The old call stays on screen until the server has answered; then the room is entered anew.
 */
function resumeAfterDrop() {
  const again = rejoin.take();
  if (!again) return;
  joinRoom(again.room, { resume: again.token, checked: { state: { ...app.state } }, rejoin: true });
}

/** A rejoin that did not get in: another drop or no answer (try again), or the server said no. */
function rejoinFailed(room, err) {
  if (!(err instanceof ServerError)) {
    rejoin.retry();
    if (signal.connected) setTimeout(resumeAfterDrop, 1000); // no answer on an open connection
    return;
  }
  rejoin.done();
  teardownRoom();
  showLobby();
  serverErrorToast(err);
}

signal.addEventListener('message', (ev) => handleMessage(ev.detail));

function handleMessage(msg) {
  // Entering a room: the media offer goes at once; the rest waits until the room is drawn (joinRoom).
  if (app.entering && msg.type !== 'offer') {
    app.entering.push(msg);
    return;
  }
  switch (msg.type) {
    case 'welcome':
      if (Number.isFinite(msg.max_participants)) app.maxParticipants = msg.max_participants;
      if (Number.isFinite(msg.max_chat_chars)) app.maxChatChars = msg.max_chat_chars;
      app.roomCreation = typeof msg.room_creation === 'string' ? msg.room_creation : 'anyone';
      renderCreateRule();
      break;
    case 'rooms':
      // The first page on connecting; later pages (asked for with "More rooms") add to it.
      if (msg.id == null) app.rooms = [];
      for (const r of Array.isArray(msg.rooms) ? msg.rooms : []) putRoom(r);
      app.roomsMore = !!msg.has_more;
      app.roomsKnown = true;
      renderRooms();
      joinFromLink();
      rejoinAfterReload();
      break;
    case 'room_added':
    case 'room_updated':
      putRoom(msg.room);
      renderRooms();
      break;
    case 'room_removed':
      app.rooms = app.rooms.filter((r) => r.name !== msg.room);
      renderRooms();
      // A room made private leaves every lobby, the admin's too, though the admin may list it: ask again.
      if (app.admin) reloadRoomsSoon();
      break;
    case 'participant_updated':
      if (app.room && msg.participant && msg.participant.id === app.me) {
        setOwner(!!msg.participant.owner); // our own flags stay ours; only the owner mark comes from here
        studio.selfUpdated(msg.participant); // and our studio role
        break;
      }
      roster.handle(msg);
      break;
    case 'participant_joined':
    case 'participant_left':
    case 'active_speaker':
    case 'levels':
      roster.handle(msg); // its events update the tiles and the chat's system lines
      break;
    case 'offer':
      if (app.room && app.call) app.call.handleOffer(msg.sdp).catch((err) => mediaError(err));
      break;
    case 'answer':
      if (app.call) app.call.handleAnswer(msg.sdp);
      break;
    case 'left':
      // Our own leave tears down at once; a `left` we did not ask for means the server removed us.
      if (app.room && msg.room === app.room && !app.joining && msg.id == null) {
        prefs.tabRoom = '';
        teardownRoom();
        showLobby();
        toast(`You are no longer in ${msg.room}.`, { title: 'Left the room', kind: 'info' });
      }
      break;
    case 'chat':
      if (app.room && msg.message) chat.add(msg.message);
      break;
    case 'kicked':
      if (app.room && msg.room === app.room) {
        sentOut(msg.room, `${msg.by || 'An owner'} removed you from ${msg.room}.`, { title: 'Removed from the room', code: 'kicked' });
      }
      break;
    case 'room_closed':
      if (app.room && msg.room === app.room) {
        sentOut(msg.room, `The admin closed ${msg.room}: everyone left. You may join again.`, {
          title: 'Room closed',
          code: 'room_closed',
          kind: 'info',
        });
      }
      break;
    case 'chat_cleared':
      if (app.room && msg.room === app.room) {
        chat.reset(msg.room);
        toast(`The admin deleted the chat history of ${msg.room}.`, { title: 'Chat deleted', kind: 'info', timeout: 6000 });
      }
      break;
    case 'room_deleted':
      prefs.setOwnerKey(msg.room, '');
      // Gone from our list too (a private room the admin lists gets no room_removed).
      app.rooms = app.rooms.filter((r) => r.name !== msg.room);
      if (app.room && msg.room === app.room) {
        const mine = app.deleting === msg.room;
        sentOut(msg.room, mine ? `You deleted ${msg.room}.` : `${msg.room} was deleted.`, {
          title: 'Room deleted',
          code: 'room_deleted',
          kind: mine ? 'info' : 'error',
        });
      }
      app.deleting = null;
      break;
    case 'state_set':
      // Without an id: an owner muted us (`by` is their participant id). Replies to our own set_state have one.
      if (msg.id == null && app.room && msg.state) mutedByOwner(msg);
      break;
    case 'owner_key':
      if (msg.room && msg.key) prefs.setOwnerKey(msg.room, msg.key);
      if (app.room && msg.room === app.room) {
        setOwner(true);
        toast(`You are now an owner of ${msg.room}.`, { title: 'Owner', kind: 'info', timeout: 6000 });
      }
      break;
    case 'room_settings':
      if (msg.id == null && app.room && msg.settings) setRoomSettings(msg.settings);
      break;
    case 'recording_state':
    case 'recording_updated':
    case 'recordings_deleted':
      recording.handle(msg);
      break;
    case 'studio':
    case 'take_updated':
    case 'take_requested':
    case 'marker_added':
    case 'marker_deleted':
    case 'segment_updated':
    case 'segment_deleted':
      studio.handle(msg);
      break;
    case 'error':
      // The media connection was lost but our place is kept: come back as after a drop (no toast: the
      // overlay says it). Without a token the server sends `left` after it, as before.
      if (msg.code === 'media_lost' && app.room && app.resumeToken) {
        mediaLost();
        break;
      }
      serverErrorToast(msg);
      break;
    default:
      break; // joined, room_created, ok, invites, ...: answered through signal.request()
  }
}

function mediaError(err) {
  if (!app.call || app.call.closed) return;
  console.error('[parley] media', err);
  toast(err && err.message ? err.message : String(err), { title: 'Media problem', code: 'media' });
}

// ---------------------------------------------------------------------------------------------------------
// Lobby

/** Adds or updates one room of the list, which stays sorted by name as the server pages it. */
function putRoom(r) {
  if (!r || typeof r.name !== 'string') return;
  const i = app.rooms.findIndex((x) => x.name === r.name);
  if (i >= 0) {
    app.rooms[i] = r;
    return;
  }
  let at = app.rooms.findIndex((x) => x.name > r.name);
  if (at < 0) at = app.rooms.length;
  app.rooms.splice(at, 0, r);
}

async function loadMoreRooms() {
  const last = app.rooms[app.rooms.length - 1];
  ui.roomsMore.disabled = true;
  try {
    const reply = await signal.request({ type: 'list_rooms', after: last ? last.name : undefined });
    for (const r of Array.isArray(reply.rooms) ? reply.rooms : []) putRoom(r);
    app.roomsMore = !!reply.has_more;
  } catch (err) {
    toast(err.message || String(err), { title: 'Could not load more rooms', code: 'rooms' });
  } finally {
    ui.roomsMore.disabled = false;
    renderRooms();
  }
}

function renderRooms() {
  const list = ui.roomList;
  const byName = new Map();
  for (const li of list.children) byName.set(li.dataset.room, li);
  const seen = new Set();
  let prev = null;
  for (const r of app.rooms) {
    if (!r || typeof r.name !== 'string') continue;
    seen.add(r.name);
    let li = byName.get(r.name);
    if (!li) {
      li = ui.roomItemTpl.content.firstElementChild.cloneNode(true);
      li.dataset.room = r.name;
      li.querySelector('.room-name').textContent = r.name;
      const btn = li.querySelector('.join');
      btn.addEventListener('click', () => joinRoom(li.dataset.room));
    }
    const max = Number.isFinite(r.max_participants) ? r.max_participants : app.maxParticipants;
    const count = Number.isFinite(r.participants) ? r.participants : 0;
    li.querySelector('.count').textContent = String(count);
    li.querySelector('.max').textContent = ` / ${max}`;
    li.dataset.count = String(count);
    // Password rooms and locked rooms (and, for the admin, private ones) carry a lock badge.
    const access = r.access || 'public';
    const locks = [];
    if (access === 'password') locks.push('Password');
    if (access === 'private') locks.push('Private');
    if (r.locked) locks.push('Locked');
    li.dataset.access = access;
    li.classList.toggle('locked', !!r.locked);
    const lock = li.querySelector('.lock');
    lock.hidden = locks.length === 0;
    lock.querySelector('.lock-label').textContent = locks.join(' · ');
    const here = app.room === r.name;
    li.classList.toggle('current', here);
    li.querySelector('.here').hidden = !here;
    li.querySelector('.last').hidden = here || !!app.room || prefs.lastRoom !== r.name;
    const btn = li.querySelector('.join');
    const full = count >= max;
    // While in a room there is no Join: the note above the list offers "Leave current room" instead.
    btn.hidden = !!app.room;
    btn.disabled = full || !!app.joining || !signal.connected;
    btn.textContent = app.joining === r.name ? 'Joining…' : full ? 'Full' : 'Join';
    btn.setAttribute('aria-label', full ? `${r.name} is full` : `Join ${r.name}${locks.length ? ` (${locks.join(', ').toLowerCase()})` : ''}`);
    const want = prev ? prev.nextSibling : list.firstChild;
    if (want !== li) list.insertBefore(li, want);
    prev = li;
  }
  for (const [name, li] of byName) if (!seen.has(name)) li.remove();

  ui.roomsMore.hidden = !app.roomsMore || !signal.connected;
  ui.roomsEmpty.hidden = app.rooms.length > 0;
  ui.roomsEmpty.textContent = signal.connected ? 'No rooms yet. Create the first one.' : 'Connecting to the server…';
  if (!app.roomsKnown && !signal.connected) ui.roomsEmpty.hidden = false;

  ui.adminOpen.hidden = app.admin;
  ui.adminBadge.hidden = !app.admin;
  ui.inRoomNote.hidden = !app.room;
  ui.inRoomName.textContent = app.room || '';
  renderCreateRule();

  if (app.room) {
    const r = app.rooms.find((x) => x.name === app.room);
    const n = r ? r.participants : roster.members.size + 1;
    const v = roster.viewers.size;
    ui.roomCount.textContent = `${n} ${n === 1 ? 'person' : 'people'}${v ? ` · ${v} ${v === 1 ? 'viewer' : 'viewers'}` : ''}`;
  }
}

ui.createAccess.addEventListener('change', () => {
  ui.createPasswordRow.hidden = ui.createAccess.value !== 'password';
  if (ui.createAccess.value === 'password') ui.createPassword.focus();
});

ui.createForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const room = ui.createInput.value.trim();
  const access = ui.createAccess.value;
  const password = ui.createPassword.value;
  ui.createError.hidden = true;
  const refuse = (text, field) => {
    ui.createError.textContent = text;
    ui.createError.hidden = false;
    field.focus();
  };
  if (!room) {
    refuse('Please type a room name.', ui.createInput);
    return;
  }
  if (access === 'password' && !password) {
    refuse('Please choose a password for the room.', ui.createPassword);
    return;
  }
  const msg = { type: 'create_room', room };
  if (access !== 'public') msg.access = access;
  // Where only owners may create rooms, the keys we keep prove that we own one.
  if (app.roomCreation === 'owners') msg.owner_keys = prefs.ownerKeys().slice(0, 32);
  if (access === 'password') msg.password = password;
  ui.createSubmit.disabled = true;
  try {
    const reply = await signal.request(msg, { ownErrors: true }); // a refusal is shown by the form, once
    ui.createInput.value = '';
    ui.createPassword.value = '';
    const created = reply.room && reply.room.name ? reply.room.name : room;
    if (reply.owner_key) prefs.setOwnerKey(created, reply.owner_key);
    if (!app.room && !app.joining) joinRoom(created);
    else toast(`Room ${created} was created.`, { kind: 'info', timeout: 4000 });
  } catch (err) {
    // The server's own words, by the form only (no toast as well).
    ui.createError.textContent = err.message;
    ui.createError.dataset.code = err.code || 'client';
    ui.createError.hidden = false;
    ui.createInput.focus();
  } finally {
    renderCreateRule();
  }
});

ui.lobbyLeave.addEventListener('click', () => leaveRoom());

// ---------------------------------------------------------------------------------------------------------
// Room

/**
 * Joins `room`, with our owner key for it when we have one. `creds`: `password` (asked for in a dialog when
 * the room says it wants one, or the server does), `invite` (a link's token), `fromLink` (the page was
 * opened at /r/<room>: a refusal leaves the address at /). First comes the pre-join check (prejoin.js),
 * unless `skipPrejoin` or `checked` ({state}: how to enter, chosen before; with `local` and `media`: the
 * devices the check opened, which the room then uses).
 */
async function joinRoom(room, creds = {}) {
  if (app.room && !creds.rejoin) {
    toast(`You are in ${app.room}. Leave it first to join ${room}.`, {
      title: 'Already in a room',
      code: 'already_in_room',
      action: { label: 'Leave current room', run: () => leaveRoom() },
    });
    return;
  }
  if (app.joining || prejoin.isOpen) return;
  if (!app.name) {
    showNameScreen();
    return;
  }
  // The pre-join check (prejoin.js), unless already made for this join (a password asked again) or skipped
  // (a reload in the room, a rejoin): how we enter, and the devices it opened.
  if (!creds.checked && !creds.skipPrejoin) {
    const checked = await prejoin.open(room, app.name);
    if (!checked || app.room || app.joining) {
      if (checked) checked.media.then(() => checked.local.stop());
      if (ui.app.dataset.view === 'prejoin') showLobby();
      leaveLinkAddress(creds);
      return;
    }
    creds = { ...creds, checked };
  }
  if (creds.checked) {
    app.state = { ...app.state, ...creds.checked.state };
    if (ptt.on) app.state.mic_muted = true; // push-to-talk: in muted, the key unmutes
    updateControls();
  }
  const checkedMedia = creds.checked && creds.checked.local ? creds.checked : null;
  const dropChecked = () => {
    if (checkedMedia) checkedMedia.media.then(() => checkedMedia.local.stop());
    if (ui.app.dataset.view === 'prejoin') showLobby();
  };
  const ownerKey = prefs.ownerKey(room);
  const summary = app.rooms.find((r) => r.name === room);
  if (summary && summary.access === 'password' && !creds.password && !creds.invite && !ownerKey && !app.admin && !creds.rejoin) {
    const password = await passwords.ask(room);
    if (password == null) {
      dropChecked();
      leaveLinkAddress(creds);
      return;
    }
    if (app.room || app.joining) {
      dropChecked();
      passwords.close();
      return;
    }
    creds = { ...creds, password };
  }
  app.joining = room;
  renderRooms();
  audioContext(); // created inside the click, so the browser lets it run

  const want = { ...app.state };
  // The pre-join check's devices, or new ones. The devices open and the peer connection is made while the
  // server admits us: none of the three needs the others. Tracks join the transceivers
  // (replaceTrack) whenever the devices are ready, even after a slow permission prompt.
  const local = checkedMedia ? checkedMedia.local : new LocalMedia(prefs.devices, { effect: prefs.effect });
  const media = checkedMedia ? checkedMedia.media : local.acquire({ audio: true, video: !want.camera_off });
  const call = new Call(signal, local);
  call.prepare();
  // The server offers first: one offer/answer sets up the call (docs/protocol.md, `join`).
  const join = { type: 'join', room, name: app.name, state: want, server_offer: true };
  if (ownerKey) join.owner_key = ownerKey;
  if (creds.invite) join.invite = creds.invite;
  if (creds.password) join.password = creds.password;
  if (creds.resume) join.resume = creds.resume;
  let joined;
  try {
    joined = await signal.request(join, { ownErrors: true });
  } catch (err) {
    app.joining = null;
    call.close();
    media.then(() => local.stop());
    if (ui.app.dataset.view === 'prejoin') showLobby();
    renderRooms();
    if (creds.rejoin) {
      rejoinFailed(room, err);
      return;
    }
    // Asked again (a password), the join keeps the choices made but opens its devices anew.
    joinRefused(room, creds.checked ? { ...creds, checked: { state: creds.checked.state } } : creds, err);
    return;
  }

  passwords.close();
  // Back after a drop: the old call (kept on screen meanwhile) gives way to the room as it is now.
  if (creds.rejoin) teardownRoom();
  app.joining = null;
  app.room = joined.room || room;
  app.me = joined.you;
  app.resumeToken = joined.resume_token || null;
  if (creds.rejoin) {
    rejoin.done();
    app.reconnects.push({ resumed: !!joined.resumed, at: Date.now() });
    toast(joined.resumed ? 'You are back in the room.' : `You are back in ${app.room}.`, { title: 'Reconnected', kind: 'info', code: 'reconnected', timeout: 4000 });
  }
  app.local = local;
  app.call = call;
  prefs.lastRoom = app.room;
  prefs.tabRoom = app.room;
  ui.roomTitle.textContent = app.room;
  ui.tiles.replaceChildren();
  // The address is the room's link while we are in it (shareable; a reload comes back), never with an
  // invite token (spent: a reload must not reuse it).
  history.replaceState(null, '', roomPath(app.room));
  app.owner = !!joined.owner;
  app.settings = joined.settings || null;

  call.addEventListener('remote', (ev) => refreshRemote(ev.detail.pid));
  screens.enter(call); // the Share screen button; the others' screens as they come
  call.addEventListener('connectionstate', (ev) => {
    if (ev.detail === 'failed' && app.call === call && app.resumeToken) {
      mediaLost();
    } else if (ev.detail === 'failed' && app.call === call) {
      const again = app.room;
      toast('The media connection to the server failed.', {
        title: 'Connection problem',
        code: 'ice_failed',
        action: { label: 'Rejoin', run: () => leaveRoom().then(() => joinRoom(again, { skipPrejoin: true })) },
        timeout: 0,
      });
    }
  });
  call.start().catch((err) => mediaError(err));
  app.mediaReady = media.then(() => {});
  // The server's first offer comes right behind `joined`: its SDP work starts before the room is drawn,
  // which holds the main thread for tens of ms (a faster join). Other messages wait for the room. Not on
  // the way back after a drop: the room as it was stays listed until it is drawn anew, without a gap.
  app.entering = [];
  if (!creds.rejoin) await call.offerArrived(OFFER_HEAD_START_MS);
  const early = app.entering;
  app.entering = null;
  if (app.call !== call) return; // the connection dropped meanwhile: rejoin.js takes over

  chat.reset(app.room);
  const me = new Tile({ id: String(joined.you), name: joined.name || app.name, self: true });
  me.setInfo(app.state);
  app.tiles.set(me.id, me);
  ui.tiles.appendChild(me.el);
  roster.enter(joined, app.room); // the people already there get their tiles
  recording.enter(joined); // people must know they are recorded: the indicator, at once
  studio.enter(joined);
  updateControls();
  setView('room');
  // Focus moves into the room (not on a rejoin after a drop: the person may be typing in the chat).
  if (!creds.rejoin) ui.micToggle.focus({ preventScroll: true });
  roomLinks.render();
  renderRooms();
  renderOwner();
  renderRoomAccess();
  for (const msg of early) handleMessage(msg);

  const { audioError, videoError } = await media;
  if (app.local !== local) {
    local.stop(); // left (or lost the connection) while the devices were opening
    return;
  }
  if (audioError && !app.state.mic_muted) {
    toast(deviceErrorText(audioError, 'microphone'), { title: 'Microphone unavailable', code: 'device' });
    setState({ mic_muted: true }, { persist: false });
  }
  if (videoError && !app.state.camera_off) {
    toast(deviceErrorText(videoError, 'camera'), { title: 'Camera unavailable', code: 'device' });
    setState({ camera_off: true }, { persist: false });
  }
  if (app.state.camera_off) local.stopVideo(); // turned off while it was opening
  if (local.audioTrack) local.audioTrack.enabled = !app.state.mic_muted;
  refreshSelfTile();
  // Toggles made while the devices were opening have already set app.state; send what it says.
  await Promise.all([
    call.setSending('audio', app.state.mic_muted ? null : local.audioTrack),
    call.setSending('video', app.state.camera_off ? null : local.sendVideo),
  ]).catch((err) => mediaError(err));
}

/** A join the server refused (or that failed): the password dialog again where a password helps, else a toast. */
function joinRefused(room, creds, err) {
  if (!(err instanceof ServerError)) {
    passwords.close();
    leaveLinkAddress(creds);
    toast(err.message, { title: `Could not join ${room}` });
    return;
  }
  const passwordHelps = err.code === 'password_required' || err.code === 'wrong_password' || (err.code === 'rate_limited' && creds.password);
  // Asked again in the open dialog; a password sent from a dialog closed meanwhile gets a toast instead.
  if (passwordHelps && (!creds.password || passwords.isOpen)) {
    passwords.ask(room, { error: err.code === 'password_required' ? '' : err.message }).then((password) => {
      if (password != null) joinRoom(room, { ...creds, password });
      else leaveLinkAddress(creds);
    });
    return;
  }
  passwords.close();
  leaveLinkAddress(creds);
  serverErrorToast(err);
}

/** A join from a /r/<room> address did not happen: the lobby's address again. */
function leaveLinkAddress(creds) {
  if (creds.fromLink && !app.room && location.pathname !== '/') history.replaceState(null, '', '/');
}

/** Opened at /r/<room>[?invite=...]: joins that room once, as soon as we have a name and a connection. */
function joinFromLink() {
  const link = app.link;
  if (!link || !app.name || app.room || app.joining || !signal.connected) return;
  app.link = null;
  // A reload in the room (the address is the room's link then) goes back in as the tab was, without the
  // pre-join check; any other link decides where this tab goes, through the check.
  const reload = !link.invite && link.room === app.tabRoom;
  app.tabRoom = '';
  ui.nameLink.hidden = true;
  joinRoom(link.room, { invite: link.invite, fromLink: true, skipPrejoin: reload });
}

/** The server took us out of the room (kicked, room deleted): back to the lobby with `text`. */
function sentOut(room, text, opts) {
  prefs.tabRoom = '';
  teardownRoom();
  showLobby();
  toast(text, opts);
}

/**
 * Leaves the room: back to the lobby with the devices released at once; the media session closes once
 * the server has let us go (were it closed first, the server could see the media drop before the
 * `leave` and remove us with a "media connection lost" error).
 */
async function leaveRoom() {
  if (!app.room) return;
  rejoin.done(); // leaving while reconnecting: no coming back
  app.resumeToken = null;
  const wasIn = app.room;
  const call = app.call;
  prefs.tabRoom = '';
  teardownRoom({ keepCall: true });
  showLobby();
  try {
    await signal.request({ type: 'leave' }, { ownErrors: true, timeoutMs: 3000 });
  } catch (err) {
    // not_in_room: the server had removed us already; anything else: we are gone locally all the same.
    if (!(err instanceof ServerError)) console.warn('[parley] leave', wasIn, err.message);
  } finally {
    if (call) call.close();
  }
}

/**
 * Local clean-up only: devices released, tiles gone, peer connection closed (unless `keepCall`: the
 * caller closes it; it is no longer the room's).
 */
function teardownRoom({ keepCall = false } = {}) {
  if (app.call && !keepCall) app.call.close();
  app.call = null;
  if (app.local) app.local.stop();
  app.local = null;
  for (const t of app.tiles.values()) t.destroy();
  app.tiles.clear();
  roster.leave();
  screens.leave(); // our share stops; the others' screens go
  app.featured = null;
  app.pinned = null;
  people.clear();
  app.mediaReady = Promise.resolve();
  app.room = null;
  app.me = null;
  app.joining = null;
  ui.tiles.replaceChildren();
  ui.tiles.dataset.count = '0';
  setChatOpen(false);
  chat.reset(null);
  recording.leave();
  studio.leave();
  app.owner = false;
  app.settings = null;
  menu.close(false);
  roomAdmin.close();
  confirmDialog.close();
  shortcuts.close();
  renderOwner();
  renderRoomAccess();
  roomLinks.render();
  if (location.pathname !== '/') history.replaceState(null, '', '/');
}

// ---------------------------------------------------------------------------------------------------------
// Owners and the admin: the room settings panel, the menu on the others' tiles, being acted on

const passwords = new PasswordDialog();
const confirmDialog = new ConfirmDialog();
const menu = new ParticipantMenu({ onAction: (action, id) => participantAction(action, id) });
const roomAdmin = new RoomAdmin({
  signal,
  confirm: confirmDialog,
  room: () => app.room,
  settings: () => app.settings,
  me: () => app.me,
  onSettings: (settings) => setRoomSettings(settings),
  onDeleting: (room) => {
    app.deleting = room;
  },
  toast,
});
const adminDialog = new AdminDialog({ onToken: (token) => becomeAdmin(token) });

/** Owners (and the admin) may change the room and act on the people in it. */
function canManage() {
  return !!app.room && (app.owner || app.admin);
}

function setOwner(owner) {
  if (app.owner === owner) return;
  app.owner = owner;
  // No longer an owner (set_owner false): the key stopped working, so it is not sent again.
  if (!owner && app.room) prefs.setOwnerKey(app.room, '');
  renderOwner();
}

/** The owner controls as `canManage()` says: the settings button, the tiles' menus, our own crown. */
function renderOwner() {
  const can = canManage();
  ui.roomAdminOpen.hidden = !can;
  // Owners delete recordings from the panel.
  if (recording.isOpen) recording.renderList();
  studio.render(); // owners switch studio mode on and off
  people.render(); // owners' Mute and Remove in the People panel
  for (const tile of app.tiles.values()) {
    if (tile.self) tile.setInfo({ owner: app.owner });
    else setTileMenu(tile);
  }
  if (!can) {
    menu.close(false);
    roomAdmin.close();
  }
}

function setTileMenu(tile) {
  tile.setMenu(canManage() ? (button) => {
    const p = roster.get(tile.id);
    if (p) menu.open(button, tile.id, p);
  } : null);
}

function setRoomSettings(settings) {
  app.settings = settings;
  // Our own lobby entry follows at once (a room made private leaves the list with room_removed).
  const listed = app.rooms.find((r) => r.name === app.room);
  if (listed && (settings.access !== 'private' || app.admin)) {
    putRoom({ ...listed, access: settings.access, locked: !!settings.locked });
    renderRooms();
  }
  renderRoomAccess();
  roomLinks.render(); // a private room's card says who gets in
  if (roomAdmin.isOpen) roomAdmin.fill();
  studio.setSettings(settings);
}

/** The room's access beside its name in the top bar (nothing for a public, unlocked room). */
function renderRoomAccess() {
  const s = app.room ? app.settings : null;
  const labels = [];
  if (s && s.access === 'password') labels.push('Password');
  if (s && s.access === 'private') labels.push('Private');
  if (s && s.locked) labels.push('Locked');
  ui.roomAccess.textContent = labels.join(' · ');
  ui.roomAccess.hidden = labels.length === 0;
}

async function participantAction(action, id) {
  const p = roster.get(id);
  if (!p || !app.room) return;
  const pid = Number(id);
  try {
    if (action === 'mute') {
      await signal.request({ type: 'mute', participant_id: pid }, { ownErrors: true });
    } else if (action === 'owner') {
      await signal.request({ type: 'set_owner', participant_id: pid, owner: !p.owner }, { ownErrors: true });
    } else if (action === 'kick') {
      const yes = await confirmDialog.ask({
        title: `Remove ${p.name}?`,
        text: `${p.name} leaves ${app.room} at once and cannot come back for 10 minutes.`,
        ok: 'Remove',
      });
      if (!yes || !roster.get(id)) return;
      await signal.request({ type: 'kick', participant_id: pid }, { ownErrors: true });
    }
  } catch (err) {
    toast(err.message, { title: ERROR_TITLES[err.code] || 'Could not do that', code: err.code || 'owner' });
  }
}

/** An owner turned our microphone off (`state_set` with `by`): the button says so and nothing is sent. */
function mutedByOwner(msg) {
  const muted = !!msg.state.mic_muted;
  const was = app.state.mic_muted;
  app.state = { ...app.state, mic_muted: muted };
  if (muted && !was) {
    const local = app.local;
    if (local && local.audioTrack) local.audioTrack.enabled = false;
    if (app.call) app.call.setSending('audio', null).catch((err) => mediaError(err));
  }
  updateControls();
  refreshSelfTile();
  if (muted && msg.by != null) {
    // An owner is in the room; the admin may mute from anywhere (the admin page), so is not.
    const who = roster.get(msg.by);
    toast(`${who ? who.name : 'The admin'} muted you.`, { title: 'Microphone off', kind: 'info', code: 'muted_by', timeout: 8000 });
  }
}

/** Makes this connection the admin (`again`: after a reconnect, quietly). */
async function becomeAdmin(token, { again = false } = {}) {
  await signal.request({ type: 'admin', token }, { ownErrors: true });
  app.adminToken = token;
  setAdmin(true);
  if (!again) toast('This tab is the admin: an owner of every room; private rooms are listed too.', { title: 'Admin', kind: 'info', timeout: 6000 });
  await reloadRooms(); // now with the private rooms
}

/** The room list again from its first page. */
async function reloadRooms() {
  try {
    const reply = await signal.request({ type: 'list_rooms' });
    app.rooms = [];
    for (const r of Array.isArray(reply.rooms) ? reply.rooms : []) putRoom(r);
    app.roomsMore = !!reply.has_more;
    renderRooms();
  } catch (err) {
    toast(err.message, { title: 'Could not load the rooms', code: 'rooms' });
  }
}

let reloadTimer = null;
function reloadRoomsSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => {
    if (app.admin && signal.connected) reloadRooms();
  }, 250);
}

function setAdmin(on) {
  if (app.admin === on) return;
  app.admin = on;
  renderOwner();
  renderRooms();
  renderCreateRule();
}

/** Says who may create rooms when that is not everyone, and turns the form off for those who may not. */
function renderCreateRule() {
  let rule = '';
  if (!app.admin && app.roomCreation === 'admin') rule = 'Only the admin can create rooms on this server.';
  if (!app.admin && app.roomCreation === 'owners' && prefs.ownerKeys().length === 0) {
    rule = 'Only owners of a room can create rooms on this server.';
  }
  ui.createRule.textContent = rule;
  ui.createRule.hidden = !rule;
  for (const el of ui.createForm.querySelectorAll('input, select, button')) el.disabled = !!rule || (el === ui.createSubmit && !signal.connected);
}

ui.roomAdminOpen.addEventListener('click', () => {
  if (canManage()) roomAdmin.show();
});
ui.adminOpen.addEventListener('click', () => adminDialog.show());
// The room's link: the top bar's "Copy link" and, while alone, the "Invite others" card (roomlink.js).
// Screen sharing (screenshare.js): the Share screen button, and a large tile per screen the others share.
const screens = new ScreenShare({
  button: $('screen-toggle'),
  container: ui.tiles,
  roster,
  call: () => app.call,
  send: (msg) => signal.request(msg),
  onLayout: () => layoutTiles(),
  onError: (err) => toast(err.message || String(err), { title: 'Could not share the screen', code: 'screen' }),
});

const roomLinks = new RoomLinks({
  room: () => app.room,
  alone: () => roster.members.size === 0,
  settings: () => app.settings,
  toast,
});

// The People panel (people.js): everyone with their state, a local volume and a pin per person, owners' actions.
const people = new PeoplePanel({
  root: $('people'),
  button: $('people-toggle'),
  people: () => peopleList(),
  pinned: () => app.pinned,
  canManage,
  onVolume: (id, name, percent) => {
    const v = saveVolume(name, percent);
    const tile = app.tiles.get(id);
    if (tile && !tile.self) tile.setVolume(v);
  },
  onPin: (id) => {
    app.pinned = app.pinned === id ? null : id;
    layoutTiles();
    people.render();
  },
  onAction: (action, id) => participantAction(action, id),
});

/** Everyone in the room for the People panel, you first, then the others as the roster has them. */
function peopleList() {
  if (!app.room || app.me == null) return [];
  const mine = app.tiles.get(String(app.me));
  const out = [{ id: String(app.me), self: true, name: mine ? mine.info.name : app.name, ...app.state, owner: app.owner, studio_role: studio.on ? studio.role : null }];
  for (const [id, p] of roster.members) {
    const tile = app.tiles.get(id);
    out.push({ ...p, id, self: false, studio_role: studio.on ? p.studio_role : null, volume: tile ? Math.round(tile.volume * 100) : volumeFor(p.name) });
  }
  return out;
}

// What the roster says about the others: tiles for members (a viewer, a wall screen, receives everything and
// sends nothing, so it gets no tile), system lines in the chat, the lobby's count.

roster.addEventListener('add', (ev) => {
  const { id, participant: p, announced } = ev.detail;
  if (p.role !== 'viewer') {
    let tile = app.tiles.get(id);
    if (!tile) {
      tile = new Tile({ id, name: p.name });
      tile.onAutoplayBlocked = offerSoundUnlock;
      tile.setDeafened(app.state.deafened);
      tile.setVolume(volumeFor(p.name)); // remembered per name (people.js)
      app.tiles.set(id, tile);
      ui.tiles.appendChild(tile.el);
      setTileMenu(tile);
    }
    tile.setInfo({ owner: false, ...p }); // "owner" is absent for people who are not
    refreshRemote(id);
    layoutTiles();
  }
  roomLinks.render();
  renderRooms();
  people.render();
  if (announced) chat.system(p.role === 'viewer' ? `${p.name} joined as a viewer` : `${p.name} joined`);
});

roster.addEventListener('update', (ev) => {
  const { id, participant: p } = ev.detail;
  const tile = app.tiles.get(id);
  if (tile && !tile.self) {
    if (p.name !== tile.info.name) tile.setVolume(volumeFor(p.name));
    tile.setInfo({ owner: false, reconnecting: false, ...p }); // "reconnecting" is absent once they are back
  }
  menu.update(id, p);
  people.render();
  layoutTiles(); // a mute or a camera change may change who is shown large
});

roster.addEventListener('remove', (ev) => {
  const { id, participant: p } = ev.detail;
  const tile = app.tiles.get(id);
  if (menu.openFor === id) menu.close(false);
  if (tile && !tile.self) {
    tile.destroy();
    app.tiles.delete(id);
  }
  if (app.call) app.call.forget(id);
  if (app.pinned === id) app.pinned = null; // a pinned person who leaves unpins
  layoutTiles();
  people.render();
  roomLinks.render();
  renderRooms();
  if (p) chat.system(`${p.name} left`);
});

roster.addEventListener('speaker', () => {
  for (const t of app.tiles.values()) t.el.classList.toggle('dominant', t.id === roster.activeSpeaker);
  layoutTiles();
});

/** Attaches whatever tracks we currently receive from `pid` to their tile (if the tile exists yet). */
function refreshRemote(pid) {
  const id = String(pid);
  const tile = app.tiles.get(id);
  if (!tile || tile.self || !app.call) return;
  const e = app.call.remote.get(id) || { audio: null, video: null };
  tile.setAudioTrack(e.audio);
  tile.setVideoTrack(e.video);
}

function refreshSelfTile() {
  const tile = app.me != null ? app.tiles.get(String(app.me)) : null;
  if (!tile) return;
  tile.setInfo(app.state);
  const local = app.local;
  tile.setVideoTrack(local && !app.state.camera_off ? local.sendVideo : null);
  tile.setAudioTrack(local ? local.audioTrack : null);
}

/**
 * Who is shown large (people.js chooseLarge): the person pinned, in either view; else, in speaker view, the
 * active speaker who is on camera or unmuted, else whoever was shown before if still so, else someone on
 * camera, else the first of the others. Nobody in grid view (unpinned) or when you are alone.
 */
function featuredTile() {
  const others = [...app.tiles.values()].filter((t) => !t.self);
  const id = chooseLarge({
    people: others.map((t) => ({ id: t.id, camera: !t.info.camera_off && !t.info.reconnecting, muted: !!t.info.mic_muted || !!t.info.reconnecting })),
    pinned: app.pinned,
    speaker: roster.activeSpeaker,
    previous: app.featured,
    viewMode: app.viewMode,
  });
  return id == null ? null : app.tiles.get(id) || null;
}

function layoutTiles() {
  const featured = featuredTile();
  app.featured = featured ? featured.id : null;
  for (const t of app.tiles.values()) t.el.classList.toggle('pinned', t.id === app.pinned);
  ui.tiles.dataset.viewMode = app.viewMode;
  // A shared screen is the large one, in either view, while it exists (screenshare.js).
  const screen = screens.largest();
  layoutStage(ui.tiles, [...app.tiles.values(), ...screens.tiles()], screen || featured);
}

function setViewMode(mode) {
  app.viewMode = mode;
  prefs.viewMode = mode;
  const grid = mode === 'grid';
  ui.viewToggle.setAttribute('aria-pressed', String(grid));
  ui.viewToggle.dataset.mode = mode;
  ui.viewToggle.title = grid ? 'Grid view: click for speaker view' : 'Speaker view: click for grid view';
  ui.viewToggle.setAttribute('aria-label', 'Grid view');
  layoutTiles();
}

ui.viewToggle.addEventListener('click', () => setViewMode(app.viewMode === 'grid' ? 'speaker' : 'grid'));

/** After a reload in a room, goes back into it once (when it still exists and we are not elsewhere). */
function rejoinAfterReload() {
  const room = app.tabRoom;
  if (!room || !app.name || app.room || app.joining || !signal.connected) return;
  app.tabRoom = '';
  if (app.rooms.some((r) => r.name === room)) joinRoom(room, { skipPrejoin: true }); // we were in already
  else prefs.tabRoom = '';
}

new ResizeObserver(() => layoutTiles()).observe(ui.tiles);

let soundUnlockShown = false;
function offerSoundUnlock() {
  if (soundUnlockShown) return;
  soundUnlockShown = true;
  toast('Your browser blocked sound from starting by itself.', {
    title: 'Sound is paused',
    kind: 'info',
    timeout: 0,
    action: {
      label: 'Play sound',
      run: () => {
        soundUnlockShown = false;
        audioContext();
        for (const t of app.tiles.values()) t.resume();
      },
    },
  });
}

// ---------------------------------------------------------------------------------------------------------
// Controls

function setState(change, { persist = true } = {}) {
  app.state = { ...app.state, ...change };
  if (persist) {
    const saved = prefs.state;
    prefs.state = { ...saved, ...change };
  }
  updateControls();
  if ('deafened' in change) for (const t of app.tiles.values()) if (!t.self) t.setDeafened(app.state.deafened);
  refreshSelfTile();
  people.render();
  if (app.room) signal.request({ type: 'set_state', ...change }).catch(() => {});
}

/**
 * The toggles keep one name each (the visible label) and say their state with aria-pressed: "Mute"
 * pressed = muted. With push-to-talk on the mic button is "Push to talk", pressed while talking.
 */
function updateControls() {
  const s = app.state;
  const set = (btn, pressed, label, title) => {
    btn.setAttribute('aria-pressed', String(pressed));
    btn.querySelector('.ctl-label').textContent = label;
    btn.title = title;
  };
  const talk = ptt.on;
  set(ui.micToggle, talk ? !s.mic_muted : s.mic_muted, talk ? 'Push to talk' : 'Mute', talk ? ptt.holdText() : 'Mute (M)');
  ui.micToggle.classList.toggle('is-off', !talk && s.mic_muted);
  ui.micToggle.classList.toggle('is-ptt', talk);
  ui.micToggle.classList.toggle('is-talking', talk && !s.mic_muted);
  set(ui.speakerToggle, s.deafened, 'Deafen', 'Deafen (D)');
  ui.speakerToggle.classList.toggle('is-off', s.deafened);
  set(ui.cameraToggle, s.camera_off, 'Stop video', 'Stop video (V)');
  ui.cameraToggle.classList.toggle('is-off', s.camera_off);
}

async function exclusive(key, fn) {
  if (app.busy.has(key)) return;
  app.busy.add(key);
  try {
    await fn();
  } catch (err) {
    console.error('[parley]', key, err);
    toast(err && err.message ? err.message : String(err), { title: 'Something went wrong', code: 'client' });
  } finally {
    app.busy.delete(key);
  }
}

/** Mutes or unmutes the microphone (the mic button, M, push-to-talk); `persist`: remembered for next time. */
function setMicMuted(mute, { persist = true } = {}) {
  return exclusive('mic', async () => {
    await app.mediaReady;
    const local = app.local;
    if (!local) {
      setState({ mic_muted: mute }, { persist });
      return;
    }
    if (mute) {
      // Stop sending first, so nothing leaves after the button says muted.
      if (app.call) await app.call.setSending('audio', null);
      if (local.audioTrack) local.audioTrack.enabled = false;
    } else {
      let track;
      try {
        track = await local.startAudio();
      } catch (err) {
        toast(deviceErrorText(err, 'microphone'), { title: 'Microphone unavailable', code: 'device' });
        return;
      }
      if (app.local !== local) return;
      track.enabled = true;
      if (app.call) await app.call.setSending('audio', track);
    }
    setState({ mic_muted: mute }, { persist });
  });
}

ui.micToggle.addEventListener('click', () => {
  if (!ptt.on) setMicMuted(!app.state.mic_muted); // push-to-talk: the button is held instead (ptt.js)
});

ui.speakerToggle.addEventListener('click', () => {
  audioContext();
  setState({ deafened: !app.state.deafened });
});

ui.cameraToggle.addEventListener('click', () =>
  exclusive('camera', async () => {
    await app.mediaReady;
    const off = !app.state.camera_off;
    const local = app.local;
    if (!local) {
      setState({ camera_off: off });
      return;
    }
    if (off) {
      if (app.call) await app.call.setSending('video', null);
      local.stopVideo(); // camera light off
    } else {
      try {
        await local.startVideo();
      } catch (err) {
        toast(deviceErrorText(err, 'camera'), { title: 'Camera unavailable', code: 'device' });
        return;
      }
      if (app.local !== local) {
        return;
      }
      if (app.call) await app.call.setSending('video', local.sendVideo); // processed when an effect is on
    }
    setState({ camera_off: off });
  }),
);

ui.leave.addEventListener('click', () => leaveRoom());

// Push-to-talk (ptt.js), the "You're muted" hint and the keyboard shortcuts (shortcuts.js).
const ptt = new PushToTalk({
  button: ui.micToggle,
  setMuted: (muted) => setMicMuted(muted, { persist: false }),
  isMuted: () => app.state.mic_muted,
  inRoom: () => !!app.room,
  canTalk: () => !app.listener && !ui.micToggle.hidden,
  onChange: () => updateControls(),
  say: (text) => muteHint.say(text),
});
if (ptt.on) app.state = { ...app.state, mic_muted: true }; // joins muted; the key unmutes

const muteHint = new MuteHint({
  button: ui.micToggle,
  track: () => (app.local ? app.local.audioTrack : null),
  watching: () => !!app.room && !app.listener && app.state.mic_muted && !ui.micToggle.hidden,
  text: () => muteHintText({ talkKey: ptt.on ? ptt.label : '', mTaken: studio.isProducer, touch: touchOnly() }),
});

const shortcuts = new Shortcuts({
  inRoom: () => !!app.room,
  act: (action) => {
    if (action === 'mic') {
      if (ptt.on) muteHint.say(`Push-to-talk is on — hold ${ptt.label} to talk`); // M mutes nothing then
      else if (!ui.micToggle.hidden) setMicMuted(!app.state.mic_muted);
    } else if (action === 'camera') {
      if (!ui.cameraToggle.hidden) ui.cameraToggle.click();
    } else if (action === 'deafen') {
      ui.speakerToggle.click();
    } else if (action === 'chat') {
      ui.chatToggle.click();
    } else if (action === 'people') {
      people.toggle();
    }
  },
  escape: () => closeTopPanel(),
  talkKey: () => (ptt.on ? ptt.label : ''),
});

/** Escape: closes the room list, a tile's menu, the People panel, the studio panel or the chat (one a press); false if none was open. */
function closeTopPanel() {
  if (ui.app.classList.contains('rooms-open')) {
    setRoomsOpen(false);
    return true;
  }
  if (menu.openFor != null) {
    menu.close(true);
    return true;
  }
  if (people.isOpen) {
    people.setOpen(false, { refocus: true });
    return true;
  }
  if (studio.isOpen) {
    studio.setOpen(false);
    return true;
  }
  if (ui.room.classList.contains('chat-open')) {
    setChatOpen(false);
    ui.chatToggle.focus();
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Chat

const chat = new ChatPanel({
  signal,
  me: () => app.me,
  maxChars: () => app.maxChatChars,
  onUnread: (n) => {
    ui.chatUnread.hidden = n === 0;
    ui.chatUnread.textContent = n > 99 ? '99+' : String(n);
    // One accessible name ("Chat", aria-pressed says open); the count is its description.
    ui.chatToggle.title = n ? `${n} unread` : 'Chat (C)';
  },
  onError: (err) => toast(err.message, { title: ERROR_TITLES[err.code] || 'Chat', code: err.code || 'chat' }),
  onCommand: (name) => {
    if (name === 'leave') leaveRoom();
  },
});

function setChatOpen(open) {
  if (open) studio.setOpen(false); // one side panel at a time
  ui.room.classList.toggle('chat-open', open);
  ui.chatToggle.setAttribute('aria-pressed', String(open));
  ui.chatToggle.classList.toggle('is-active', open);
  chat.setOpen(open);
  layoutTiles();
  if (open && window.matchMedia('(min-width: 760px)').matches) chat.focus();
}

// The call controls' height (style.css: the phone chat drawer ends above them, toasts stay above them).
if (typeof ResizeObserver === 'function') {
  const controls = $('controls');
  new ResizeObserver(() => {
    if (controls.offsetHeight) document.documentElement.style.setProperty('--controls-live-h', `${controls.offsetHeight}px`);
  }).observe(controls);
}

ui.chatToggle.addEventListener('click', () => setChatOpen(!ui.room.classList.contains('chat-open')));
ui.chatClose.addEventListener('click', () => setChatOpen(false));

// ---------------------------------------------------------------------------------------------------------
// Recording (recording.js): any member records the room for everyone; everyone sees it

const recording = new RoomRecording({
  signal,
  room: () => app.room,
  toast,
  onSystem: (text) => chat.system(text),
  canDelete: canManage,
  confirm: (question) => confirmDialog.ask(question),
});

// ---------------------------------------------------------------------------------------------------------
// Studio mode (studio.js): roles, lossless takes, markers and segments. Takes recorded on this device
// earlier go on uploading from page load, in a room or not.

const studio = new Studio({
  signal,
  roster,
  tiles: () => app.tiles.values(),
  me: () => app.me,
  room: () => app.room,
  canManage,
  pc: () => (app.call ? app.call.pc : null),
  toast,
  onSystem: (text) => chat.system(text),
  onListener: (on) => setListener(on),
  onOpen: () => setChatOpen(false),
  onSettings: (settings) => setRoomSettings(settings),
});

/** A studio listener publishes nothing: devices released, the mic and camera buttons gone. */
function setListener(on) {
  app.listener = on;
  ui.micToggle.hidden = on;
  ui.cameraToggle.hidden = on;
  screens.setAllowed(!on);
  if (!on || !app.room) return;
  const local = app.local;
  if (app.call) {
    app.call.setSending('audio', null).catch((err) => mediaError(err));
    app.call.setSending('video', null).catch((err) => mediaError(err));
  }
  setState({ mic_muted: true, camera_off: true }, { persist: false });
  // Devices still opening (we are joining) are closed as soon as they are open.
  app.mediaReady.then(() => {
    if (app.listener && local && app.local === local) {
      local.stop();
      refreshSelfTile();
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Level meters

/** Own tile: the microphone through Web Audio. Everyone else: the server's levels. */
function drawMeters() {
  for (const tile of app.tiles.values()) {
    if (tile.self) tile.showLevel(app.state.mic_muted ? 0 : meterPosition(tile.level()));
    else tile.showLevel(tile.info.mic_muted ? 0 : serverLevelPosition(roster.levels.get(tile.id)));
  }
  requestAnimationFrame(drawMeters);
}

// ---------------------------------------------------------------------------------------------------------
// Device settings (microphone, camera, speaker), remembered in prefs.devices

const settings = new DeviceSettings({
  onChange: (kind, deviceId) => useDevice(kind, deviceId),
  onEffect: (mode) => useCameraEffect(mode),
  onError: (err, what) => toast(deviceErrorText(err, what), { title: 'Device unavailable', code: 'device' }),
});
ui.settingsOpen.addEventListener('click', () => settings.show());
setAudioOutput(prefs.devices.audiooutput);

/** Switches to another microphone / camera / speaker now (when in use) and remembers it. */
async function useDevice(kind, deviceId) {
  if (kind === 'audiooutput') {
    setAudioOutput(deviceId, app.tiles.values());
  } else if (app.local) {
    const local = app.local;
    await app.mediaReady;
    const track = await local.useDevice(kind, deviceId); // throws when that device cannot be opened
    if (track && app.local === local && app.call) {
      if (kind === 'audioinput' && !app.state.mic_muted) await app.call.setSending('audio', track);
      if (kind === 'videoinput' && !app.state.camera_off) await app.call.setSending('video', local.sendVideo);
      refreshSelfTile();
    }
  }
  prefs.devices = { ...prefs.devices, [kind]: deviceId };
}

// ---- Camera background effect (effects.js) -------------------------------------------------------------
/**
 * Turns the background effect to `mode` ('off' | 'blur' | 'replace') and remembers it. In a room with the
 * camera on, the camera transceiver gets the processed (or again the raw) track at once (replaceTrack, no
 * renegotiation) and the own tile shows it.
 */
async function useCameraEffect(mode) {
  prefs.effect = mode;
  const local = app.local;
  if (!local) return;
  await app.mediaReady;
  if (app.local !== local) return;
  const track = await local.setEffect(mode);
  if (app.call && !app.state.camera_off) await app.call.setSending('video', track);
  refreshSelfTile();
}
// ---- end camera background effect ----------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------------------
// Test and debugging hooks

window.parley = {
  /** Each time this page came back into its room by itself after a drop: [{resumed, at}]. */
  get reconnects() {
    return app.reconnects.map((r) => ({ ...r }));
  },
  /** Whether it is trying to get back into its room now. */
  get reconnecting() {
    return rejoin.active;
  },
  /** The current RTCPeerConnection, or null outside a room. */
  get pc() {
    return app.call ? app.call.pc : null;
  },
  /** Our participant id in the current room, or null. */
  get me() {
    return app.me;
  },
  /** The current room's name, or null. */
  get room() {
    return app.room;
  },
  /** Our MediaState. */
  get state() {
    return { ...app.state };
  },
  get name() {
    return app.name;
  },
  /** The others in the room, as the server described them. */
  get participants() {
    return roster.memberList();
  },
  get rooms() {
    return app.rooms.map((r) => ({ ...r }));
  },
  /** Whether we are an owner of the room we are in. */
  get owner() {
    return app.owner;
  },
  /** Whether this tab's connection is the admin. */
  get admin() {
    return app.admin;
  },
  /** The room's settings {access, locked, has_password} as the server last said, or null. */
  get settings() {
    return app.settings ? { ...app.settings } : null;
  },
  /** RMS level (0..1) of the audio received from participant `id`, measured by a Web Audio AnalyserNode. */
  remoteLevel(id) {
    const tile = app.tiles.get(String(id));
    return tile && !tile.self ? tile.level() : 0;
  },
  /** RMS level (0..1) of our own microphone (0 while muted). */
  localLevel() {
    const tile = app.me != null ? app.tiles.get(String(app.me)) : null;
    return tile && !app.state.mic_muted ? tile.level() : 0;
  },
  /** The tracks we receive, by publisher: [{id, kind, trackId, muted}]. */
  remoteTracks() {
    if (!app.call) return [];
    const out = [];
    for (const [id, e] of app.call.remote) {
      for (const kind of ['audio', 'video']) {
        const t = e[kind];
        if (t) out.push({ id, kind, trackId: t.id, muted: t.muted, readyState: t.readyState });
      }
    }
    return out;
  },
  /** The RTCRtpReceiver carrying `kind` ('audio' | 'video') from participant `id`, or null. */
  receiver(id, kind) {
    return app.call ? app.call.receiverFor(id, kind) : null;
  },
  /** The room's active speaker (participant id) as the server last said, or null. */
  get activeSpeaker() {
    return roster.activeSpeaker == null ? null : Number(roster.activeSpeaker);
  },
  /**
   * The chat lines shown in the room, oldest first: [{id, kind, author, text, shown}] with kind 'message',
   * 'action' (/me) or 'system' (joins and leaves), `text` as sent and `shown` as displayed.
   */
  get chat() {
    return chat.lineList();
  },
  /** Sends a chat message the way the Send button does (refusals shown in the panel); resolves true when sent. */
  chatSend(text) {
    return chat.send(text);
  },
  /** The latest server voice levels: {participant id: 0–100}. */
  get levels() {
    return roster.levels.snapshot();
  },
  /** Where participant `id`'s level meter stands on screen, 0..1. */
  meter(id) {
    const tile = app.tiles.get(String(id));
    return tile ? tile.meterShown : null;
  },
  /** The participant pinned large (People panel), or null. */
  get pinned() {
    return app.pinned == null ? null : Number(app.pinned);
  },
  /** The local volume (percent, 0–200) of participant `id`'s audio on this page, or null. */
  volume(id) {
    const tile = app.tiles.get(String(id));
    return tile && !tile.self ? Math.round(tile.volume * 100) : null;
  },
  /** 'speaker' or 'grid'. */
  get viewMode() {
    return app.viewMode;
  },
  /** The participant shown large in speaker view, or null. */
  /** Screen sharing as this page shows it: {sharing (ours), screens: [{id, name, live, shown}]}. */
  get screen() {
    return screens.snapshot();
  },
  get featured() {
    return app.featured == null ? null : Number(app.featured);
  },
  /** The device ids in use: {audioinput, videoinput} ('' when unknown). */
  devicesInUse() {
    const id = (t) => (t && t.getSettings().deviceId) || '';
    return { audioinput: id(app.local && app.local.audioTrack), videoinput: id(app.local && app.local.videoTrack) };
  },
  /**
   * The room's recording as this page shows it: {current: {recording_id, started_at_ms, started_by,
   * elapsed_ms} | null, recordings: [as the server listed them, updates applied]}.
   */
  get recording() {
    return recording.snapshot();
  },
  /**
   * Studio mode as this page sees it: {on, role, session, markers, segments, takes (the server's),
   * recordAll, clock: {offset, locked, bound, rtt, ...}, recording (the take being recorded), uploads}.
   */
  get studio() {
    return studio.snapshot();
  },
  /** Resolves with the takes IndexedDB holds: [{take_id, state, total_samples, chunks: [{seq, acked, ...}]}]. */
  studioTakes() {
    return studio.storedTakes();
  },
  /** Sends a raw signalling message on this tab's socket (replies and errors reach the UI as usual). */
  send(msg) {
    return signal.send(msg);
  },
  get connected() {
    return signal.connected;
  },
  /** The pre-join check as shown: {open, room, mic, camera, level (the meter, 0..1), banner, joining}. */
  get prejoin() {
    return prejoin.snapshot();
  },
};

// ---------------------------------------------------------------------------------------------------------
// Start

window.addEventListener('pagehide', () => signal.close());
window.addEventListener('pageshow', (ev) => {
  if (ev.persisted) signal.connect(); // back from the back/forward cache
});
updateControls();
setViewMode(app.viewMode);
if (app.name) {
  renderMe();
  showLobby();
} else {
  showNameScreen();
}
setConn('connecting', 'Connecting…');
signal.connect();
requestAnimationFrame(drawMeters);
