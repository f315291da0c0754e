// The wall screen at /viewer/<room>: joins as a receive-only `viewer` (docs/protocol.md), never asks for
// a camera or microphone, shows only the active speaker (full screen, with their name), plays the room's
// sound, and keeps itself connected unattended (rejoins after a dropped connection, waits for a room that
// does not exist yet).

import { Signal, ServerError, signalUrl } from './signal.js';
import { Call } from './call.js';
import { Tile, layoutStage } from './tiles.js';
import { audioContext, serverLevelPosition } from './levels.js';
import { Roster } from './roster.js';
import { RecordingIndicator, serverElapsed } from './recording.js';

const RETRY_MS = 5000;

const $ = (id) => document.getElementById(id);
const ui = {
  tiles: $('tiles'),
  message: $('wall-message'),
  messageTitle: $('wall-message-title'),
  messageDetail: $('wall-message-detail'),
  room: $('wall-room'),
  conn: $('conn'),
  connLabel: document.querySelector('#conn .conn-label'),
  sound: $('wall-sound'),
  fullscreen: $('wall-fullscreen'),
};
// The room is being recorded: the people in front of the screen must know too.
const recIndicator = new RecordingIndicator($('recording-indicator'));

const prefix = '/viewer/';
const room = (() => {
  const raw = location.pathname.startsWith(prefix) ? location.pathname.slice(prefix.length) : '';
  try {
    return decodeURIComponent(raw).replace(/\/+$/, '');
  } catch {
    return raw;
  }
})();
const name = (new URLSearchParams(location.search).get('name') || 'Wall screen').trim().slice(0, 32) || 'Wall screen';

const wall = {
  inRoom: false,
  joining: false,
  call: null,
  tiles: new Map(), // participant id (string) -> Tile, members only
  shown: null, // id of the one person on screen
  retryTimer: null,
};
// Who is in the room (members get a tile, viewers do not), the active speaker (null: nobody, e.g. the
// speaker muted) and the voice levels, as the server says.
const roster = new Roster();

const signal = new Signal(signalUrl());

function say(title, detail = '') {
  ui.messageTitle.textContent = title;
  ui.messageDetail.textContent = detail;
  refreshMessage();
}

function refreshMessage() {
  const empty = wall.tiles.size === 0;
  ui.message.hidden = wall.inRoom && !empty;
  if (wall.inRoom && empty) {
    ui.messageTitle.textContent = `Nobody is in ${room} yet`;
    ui.messageDetail.textContent = 'People appear here as soon as they join.';
  }
}

function setConn(state, label) {
  ui.conn.dataset.state = state;
  ui.connLabel.textContent = label;
}

function retryLater() {
  clearTimeout(wall.retryTimer);
  wall.retryTimer = setTimeout(join, RETRY_MS);
}

async function join() {
  clearTimeout(wall.retryTimer);
  if (!room) {
    say('No room chosen', 'Open /viewer/<room name> to show a room on this screen.');
    return;
  }
  if (wall.inRoom || wall.joining || !signal.connected) return;
  wall.joining = true;
  say(`Joining ${room}…`);
  let joined;
  try {
    joined = await signal.request({ type: 'join', room, name, role: 'viewer' });
  } catch (err) {
    wall.joining = false;
    if (err instanceof ServerError && err.code === 'no_such_room') {
      say(`Waiting for ${room}`, 'The room does not exist yet; this screen joins as soon as it does.');
    } else {
      say(`Cannot show ${room}`, err.message);
    }
    if (signal.connected) retryLater();
    return;
  }
  wall.joining = false;
  wall.inRoom = true;
  const call = new Call(signal, null);
  wall.call = call;
  call.addEventListener('remote', (ev) => refreshRemote(ev.detail.pid));
  call.prepare({ receiveOnly: true }).catch(() => {});
  call.start().catch((err) => console.error('[parley] viewer media', err));
  roster.enter(joined, room);
  refreshMessage();
  if (joined.recording) showRecording(joined.recording, true);
}

/** A recording runs: shown; `late`: it started before we came (its age comes from the server). */
function showRecording(now, late) {
  recIndicator.show(now, late ? Date.now() - now.started_at_ms : 0);
  if (late) {
    serverElapsed(signal, now.recording_id).then((ms) => {
      if (ms != null && recIndicator.now && recIndicator.now.recording_id === now.recording_id) recIndicator.correct(ms);
    });
  }
}

function leftRoom(reason) {
  if (wall.call) wall.call.close();
  wall.call = null;
  for (const t of wall.tiles.values()) t.destroy();
  wall.tiles.clear();
  wall.inRoom = false;
  wall.joining = false;
  roster.leave();
  recIndicator.hide();
  wall.shown = null;
  layout();
  say(reason);
}

roster.addEventListener('add', (ev) => {
  const { id, participant: p } = ev.detail;
  if (p.role === 'viewer') return;
  let tile = wall.tiles.get(id);
  if (!tile) {
    tile = new Tile({ id, name: p.name });
    tile.onAutoplayBlocked = () => {
      ui.sound.hidden = false;
    };
    wall.tiles.set(id, tile);
    ui.tiles.appendChild(tile.el);
  }
  tile.setInfo({ owner: false, ...p }); // "owner" is absent for everyone else
  refreshRemote(id);
  layout();
  refreshMessage();
});

roster.addEventListener('update', (ev) => {
  const tile = wall.tiles.get(ev.detail.id);
  if (tile) tile.setInfo({ owner: false, ...ev.detail.participant });
});

roster.addEventListener('remove', (ev) => {
  const id = ev.detail.id;
  const tile = wall.tiles.get(id);
  if (tile) tile.destroy();
  wall.tiles.delete(id);
  if (wall.call) wall.call.forget(id);
  layout();
  refreshMessage();
});

roster.addEventListener('speaker', () => layout());

function refreshRemote(pid) {
  const tile = wall.tiles.get(String(pid));
  if (!tile || !wall.call) return;
  const e = wall.call.remote.get(String(pid)) || { audio: null, video: null };
  tile.setAudioTrack(e.audio);
  tile.setVideoTrack(e.video);
}

/**
 * One person fills the screen: the active speaker; when there is none, whoever was shown before (else the
 * first to join). The others' tiles stay (hidden) so their sound keeps playing.
 */
function layout() {
  const tile = (id) => (id ? wall.tiles.get(id) || null : null);
  const shown = tile(roster.activeSpeaker) || tile(wall.shown) || wall.tiles.values().next().value || null;
  wall.shown = shown ? shown.id : null;
  for (const t of wall.tiles.values()) t.el.hidden = t !== shown;
  layoutStage(ui.tiles, shown ? [shown] : [], shown);
}

signal.addEventListener('open', () => {
  setConn('online', 'Connected');
  join();
});
signal.addEventListener('reconnecting', () => setConn('offline', 'Reconnecting…'));
signal.addEventListener('close', () => {
  clearTimeout(wall.retryTimer);
  leftRoom('Connection lost. Reconnecting…');
});
signal.addEventListener('message', (ev) => {
  const msg = ev.detail;
  switch (msg.type) {
    case 'participant_joined':
    case 'participant_updated':
    case 'participant_left':
    case 'active_speaker':
    case 'levels':
      roster.handle(msg); // its events update the tiles
      break;
    case 'offer':
      if (wall.call) wall.call.handleOffer(msg.sdp).catch((err) => console.error('[parley] viewer media', err));
      break;
    case 'answer':
      if (wall.call) wall.call.handleAnswer(msg.sdp);
      break;
    case 'left':
      if (wall.inRoom) {
        leftRoom(`No longer showing ${room}`);
        retryLater();
      }
      break;
    case 'recording_state':
      if (!wall.inRoom || msg.room !== room) break;
      if (!msg.recording) recIndicator.hide();
      else if (!recIndicator.now || recIndicator.now.recording_id !== msg.recording.recording_id) showRecording(msg.recording, false);
      break;
    case 'error':
      console.warn('[parley] server error', msg.code, msg.message);
      break;
    default:
      break;
  }
});

// Full screen for a TV or projector (browsers allow it only from a click).
ui.fullscreen.hidden = !document.fullscreenEnabled;
ui.fullscreen.addEventListener('click', () => {
  document.documentElement.requestFullscreen().catch((err) => console.warn('[parley] full screen', err.message));
});
document.addEventListener('fullscreenchange', () => {
  ui.fullscreen.hidden = !!document.fullscreenElement || !document.fullscreenEnabled;
});

// The pointer hides when left alone, so nothing covers the picture.
let idleTimer = null;
function pointerMoved() {
  document.body.classList.remove('idle');
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => document.body.classList.add('idle'), 3000);
}
document.addEventListener('pointermove', pointerMoved);
pointerMoved();

ui.sound.addEventListener('click', () => {
  ui.sound.hidden = true;
  audioContext();
  for (const t of wall.tiles.values()) t.resume();
});

new ResizeObserver(() => layout()).observe(ui.tiles);

function drawMeters() {
  for (const tile of wall.tiles.values()) {
    tile.showLevel(tile.info.mic_muted ? 0 : serverLevelPosition(roster.levels.get(tile.id)));
  }
  requestAnimationFrame(drawMeters);
}

window.parley = {
  get pc() {
    return wall.call ? wall.call.pc : null;
  },
  get me() {
    return roster.me == null ? null : Number(roster.me);
  },
  get room() {
    return wall.inRoom ? room : null;
  },
  get activeSpeaker() {
    return roster.activeSpeaker == null ? null : Number(roster.activeSpeaker);
  },
  /** The participant on screen, or null. */
  get shown() {
    return wall.shown == null ? null : Number(wall.shown);
  },
  /** The latest server voice levels: {participant id: 0–100}. */
  get levels() {
    return roster.levels.snapshot();
  },
  get participants() {
    return roster.memberList();
  },
  remoteLevel(id) {
    const tile = wall.tiles.get(String(id));
    return tile ? tile.level() : 0;
  },
  remoteTracks() {
    if (!wall.call) return [];
    const out = [];
    for (const [id, e] of wall.call.remote) {
      for (const kind of ['audio', 'video']) {
        const t = e[kind];
        if (t) out.push({ id, kind, trackId: t.id, muted: t.muted, readyState: t.readyState });
      }
    }
    return out;
  },
  receiver(id, kind) {
    return wall.call ? wall.call.receiverFor(id, kind) : null;
  },
  /** The recording shown: {recording_id, started_at_ms, started_by, elapsed_ms}, or null. */
  get recording() {
    return recIndicator.now ? { ...recIndicator.now, elapsed_ms: Math.round(recIndicator.elapsedMs) } : null;
  },
  get connected() {
    return signal.connected;
  },
};

ui.room.textContent = room;
document.title = room ? `${room} · parley wall screen` : 'parley wall screen';
say('Connecting…');
setConn('connecting', 'Connecting…');
window.addEventListener('pagehide', () => signal.close());
signal.connect();
requestAnimationFrame(drawMeters);
