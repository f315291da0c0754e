// Studio mode on the call page (docs/protocol.md, "Studio mode"): the studio bar over the call controls
// (your role, the session's time, Record take, and for producers Record all artists, Marker with its label,
// Start / End segment), the Studio panel (studio mode on / off for owners, the session timeline with its
// markers and segments, the takes with their upload state and files, and the roles, which producers set),
// a role badge on every tile, and the server-clock estimate everything is placed by. An ended segment plays
// back in the panel: its Play button opens one player per track (the room recording's mix, each take that
// overlaps it), each made only then, since the server cuts the track when it is asked for.
//
// The server decides roles and keeps the session; this module asks and shows. Takes are recorded by
// take-recorder.js and uploaded by take-queue.js, which goes on after a reload (`resumeAll` at page load).
// Text from people (names, labels) is set with textContent only.

import { ClockPinger, ServerClock } from './studio-clock.js';
import { TakeQueue } from './take-queue.js';
import { openTakeStore } from './take-store.js';
import { TakeRecorder } from './take-recorder.js';
import { formatBytes, formatElapsed } from './recording.js';
import { deviceErrorText } from './media.js';

const $ = (id) => document.getElementById(id);

export const STUDIO_ROLES = ['producer', 'artist', 'listener'];
const ROLE_LABELS = { producer: 'Producer', artist: 'Artist', listener: 'Listener' };
const TAKE_STATE_LABELS = { uploading: 'Uploading', complete: 'Complete', incomplete: 'Incomplete', failed: 'Failed' };
const LABEL_MAX = 80;
const TICK_MS = 500;
const HEALTH_EVERY_MS = 2000;
// A take's player that waits for chunks looks again on each `take_updated`, and at the latest after this.
const PLAYER_RETRY_MS = 15_000;

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

function button(text, className, testid, attrs = {}) {
  const b = el('button', className, text);
  b.type = 'button';
  if (testid) b.dataset.testid = testid;
  for (const [k, v] of Object.entries(attrs)) b.setAttribute(k, v);
  return b;
}

/** mm:ss.t for a position on the session clock (ms). */
export function formatPosition(ms) {
  const tenths = Math.floor((Math.max(0, Number(ms) || 0) % 1000) / 100);
  return `${formatElapsed(ms)}.${tenths}`;
}

/** A take's length in ms from its frames (null when unknown). */
function takeMs(frames, rate) {
  return Number.isFinite(frames) && rate > 0 ? (frames / rate) * 1000 : null;
}

/** An ended segment's tracks to play (`playback`: the mix, then each take), as the server signed them. */
function playable(segment) {
  return Array.isArray(segment.playback) ? segment.playback.filter((t) => t && typeof t.url === 'string' && typeof t.track === 'string') : [];
}

/** Whether a key press was typed into something (markers must not drop while someone writes). */
function typing(target) {
  if (!target || !(target instanceof Element)) return false;
  return !!target.closest('input, textarea, select, [contenteditable=""], [contenteditable="true"]');
}

/**
 * The call's health, for the upload pacing: every 2 s, the selected candidate pair's round-trip time and
 * the loss the server reports for our audio (RTCP receiver reports). Congested: the RTT stands well above
 * the best of the last minute, or audio is being lost.
 */
class CallHealth {
  constructor(getPc) {
    this.getPc = getPc;
    this.timer = null;
    this.rtts = [];
    this.lost = null;
    this.congested = false;
  }

  start() {
    if (this.timer) return;
    this.timer = setInterval(() => this.sample(), HEALTH_EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.rtts = [];
    this.lost = null;
    this.congested = false;
  }

  async sample() {
    const pc = this.getPc();
    if (!pc) return;
    let stats;
    try {
      stats = await pc.getStats();
    } catch {
      return;
    }
    let rtt = null;
    let lost = null;
    let fraction = 0;
    let selected = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) selected = s.selectedCandidatePairId;
    });
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && (s.id === selected || (!selected && s.nominated && s.state === 'succeeded')) && Number.isFinite(s.currentRoundTripTime)) {
        rtt = s.currentRoundTripTime * 1000;
      }
      if (s.type === 'remote-inbound-rtp' && s.kind === 'audio') {
        if (Number.isFinite(s.packetsLost)) lost = (lost || 0) + s.packetsLost;
        if (Number.isFinite(s.fractionLost)) fraction = Math.max(fraction, s.fractionLost);
      }
    });
    let congested = fraction > 0.02;
    if (lost != null && this.lost != null && lost - this.lost > 2) congested = true;
    if (lost != null) this.lost = lost;
    if (rtt != null) {
      this.rtts.push(rtt);
      if (this.rtts.length > 30) this.rtts.shift();
      const base = Math.min(...this.rtts);
      if (this.rtts.length >= 3 && rtt > base + Math.max(60, base)) congested = true;
    }
    this.congested = congested;
  }
}

export class Studio {
  /**
   * @param {{signal: import('./signal.js').Signal, roster: import('./roster.js').Roster,
   *   tiles: () => Iterable<import('./tiles.js').Tile>, me: () => (number|null), room: () => (string|null),
   *   canManage: () => boolean, pc: () => (RTCPeerConnection|null), toast: Function,
   *   onSystem?: (text: string) => void, onListener?: (on: boolean) => void, onOpen?: () => void,
   *   onSettings?: (settings: object) => void}} opts
   */
  constructor({ signal, roster, tiles, me, room, canManage, pc, toast, onSystem = () => {}, onListener = () => {}, onOpen = () => {}, onSettings = () => {} }) {
    this.signal = signal;
    this.roster = roster;
    this.tiles = tiles;
    this.me = me;
    this.room = room;
    this.canManage = canManage;
    this.toast = toast;
    this.onSystem = onSystem;
    this.onListener = onListener;
    this.onOpen = onOpen;
    this.onSettings = onSettings;

    this.inRoom = false;
    this.on = false; // the room is in studio mode
    this.session = null; // {session_id, started_at_ms, recording_id?}
    this.role = null; // ours
    this.markers = new Map();
    this.segments = new Map();
    this.takes = new Map(); // take_id -> TakeInfo, as the server last said
    this.recordAll = false;
    this.listener = false;
    this.isOpen = false;
    this.busy = new Set();
    this.recorder = null;
    this.lastTakeId = null;
    // segment_id -> {el, tracks: Map(track -> player row)}: the segments whose players are open.
    this.players = new Map();

    this.clock = new ServerClock();
    this.pinger = new ClockPinger({
      clock: this.clock,
      ask: (clientMs) =>
        this.signal.request({ type: 'clock_sync', client_ms: clientMs }, { ownErrors: true, timeoutMs: 5000 }).then((r) => {
          if (r.client_ms != null && Math.abs(r.client_ms - clientMs) > 0.001) throw new Error('clock reply for another request');
          return r.server_ms;
        }),
    });
    this.health = new CallHealth(pc);

    this.queue = null;
    this.durable = true;
    this.queueReady = openTakeStore().then(({ store, durable }) => {
      this.durable = durable;
      const queue = new TakeQueue({ store, congested: () => this.health.congested });
      queue.addEventListener('change', () => this.renderTakeStatus());
      queue.addEventListener('error', (ev) => this.uploadError(ev.detail));
      this.queue = queue;
      queue.setCallActive(this.inRoom);
      // Takes this device recorded earlier (a reload, a crash) go on uploading, in any room or none.
      return queue.resumeAll().then((ids) => {
        if (ids.length) this.toast(`Uploading ${ids.length === 1 ? 'a take' : `${ids.length} takes`} recorded earlier on this device.`, { title: 'Studio', kind: 'info', code: 'takes_resumed', timeout: 6000 });
        this.renderTakes();
      });
    }).catch((err) => console.error('[parley] takes', err));

    this.build();
    this.tickTimer = null;

    roster.addEventListener('add', () => this.rosterChanged());
    roster.addEventListener('update', () => this.rosterChanged());
    roster.addEventListener('remove', () => this.rosterChanged());
    document.addEventListener('keydown', (ev) => this.onKey(ev));
    window.addEventListener('online', () => {
      if (this.queue) this.queue.retryNow();
    });
    // A closing or hidden page keeps what it has recorded (a phone may never bring it back).
    const keep = () => {
      if (this.recorder) this.recorder.flushPartial();
    };
    window.addEventListener('pagehide', keep);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') keep();
    });
    this.render();
  }

  // -------------------------------------------------------------------------------------------------------
  // Markup (built once; shown as the room's mode and our role say)

  build() {
    this.roomEl = $('room');
    this.toggleBtn = $('studio-toggle');
    this.toggleBtn.addEventListener('click', () => this.setOpen(!this.isOpen));

    const bar = $('studio-bar');
    this.bar = bar;
    bar.replaceChildren();
    bar.setAttribute('role', 'region');
    bar.setAttribute('aria-label', 'Studio');
    this.roleBadge = el('span', 'badge studio-role-badge');
    this.roleBadge.dataset.testid = 'studio-role';
    this.sessionTime = el('span', 'studio-session-time', '');
    this.sessionTime.dataset.testid = 'studio-session-time';
    const info = el('div', 'studio-info');
    info.append(this.roleBadge, this.sessionTime);

    this.takeBtn = button('', 'btn small studio-take-btn', 'take-toggle', { 'aria-pressed': 'false', 'aria-label': 'Record take' }); // one name; aria-pressed: recording
    const dot = el('span', 'studio-take-dot');
    dot.setAttribute('aria-hidden', 'true');
    this.takeLabel = el('span', 'studio-take-label', 'Record take');
    this.takeBtn.append(dot, this.takeLabel);
    this.takeBtn.addEventListener('click', () => this.toggleTake());
    this.takeStatus = el('span', 'studio-take-status');
    this.takeStatus.dataset.testid = 'take-status';
    this.takeGroup = el('div', 'studio-group studio-take-group');
    this.takeGroup.append(this.takeBtn, this.takeStatus);

    this.recordAllBtn = button('Record all artists', 'btn small studio-record-all', 'record-all', { 'aria-pressed': 'false', 'aria-label': 'Record all artists' });
    this.recordAllBtn.addEventListener('click', () => this.setRecordAll(!this.recordAll));
    this.labelInput = document.createElement('input');
    this.labelInput.className = 'studio-label-input';
    this.labelInput.dataset.testid = 'marker-label';
    this.labelInput.maxLength = LABEL_MAX;
    this.labelInput.placeholder = 'Label (optional)';
    this.labelInput.spellcheck = false;
    this.labelInput.enterKeyHint = 'done';
    this.labelInput.setAttribute('aria-label', 'Label for the next marker or segment (optional)');
    this.labelInput.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        this.addMarker();
      }
    });
    this.markerBtn = button('Marker', 'btn small studio-marker-btn', 'marker-add', { 'aria-keyshortcuts': 'M', title: 'Drop a marker now (M)' });
    this.markerBtn.addEventListener('click', () => this.addMarker());
    this.segmentBtn = button('Start segment', 'btn small studio-segment-btn', 'segment-toggle', { 'aria-pressed': 'false', 'aria-label': 'Segment' });
    this.segmentBtn.addEventListener('click', () => this.toggleSegment());
    this.producerGroup = el('div', 'studio-group studio-producer-group');
    this.producerGroup.append(this.recordAllBtn, this.labelInput, this.markerBtn, this.segmentBtn);

    this.announce = el('span', 'sr-only');
    this.announce.setAttribute('aria-live', 'polite');
    this.announce.dataset.testid = 'studio-announce';
    bar.append(info, this.takeGroup, this.producerGroup, this.announce);

    const panel = $('studio');
    this.panel = panel;
    panel.replaceChildren();
    const head = el('div', 'studio-head');
    const title = el('h2', '', 'Studio');
    title.id = 'studio-title';
    const close = button('', 'icon-btn', 'studio-close', { 'aria-label': 'Close studio panel' });
    close.append(this.icon('#i-close'));
    close.addEventListener('click', () => this.setOpen(false));
    head.append(title, close);
    const body = el('div', 'studio-body');

    // Owners: studio mode on / off.
    this.modeSection = el('section', 'studio-section studio-mode');
    this.modeSection.setAttribute('aria-labelledby', 'studio-mode-title');
    const modeTitle = el('h3', '', 'Studio mode');
    modeTitle.id = 'studio-mode-title';
    this.modeBtn = button('Turn studio mode on', 'btn small', 'studio-mode', { 'aria-pressed': 'false', 'aria-label': 'Studio mode' });
    this.modeBtn.addEventListener('click', () => this.setStudioMode(!this.on));
    this.modeText = el('p', 'muted studio-note');
    this.modeSection.append(modeTitle, this.modeText, this.modeBtn);

    // The session: timeline, markers, segments.
    this.sessionSection = el('section', 'studio-section');
    this.sessionSection.setAttribute('aria-labelledby', 'studio-session-title');
    const sessionTitle = el('h3', '', 'Session');
    sessionTitle.id = 'studio-session-title';
    this.timeline = el('div', 'studio-timeline');
    this.timeline.dataset.testid = 'studio-timeline';
    this.timeline.setAttribute('aria-hidden', 'true'); // the lists below say the same in words
    this.timelineTrack = el('div', 'studio-timeline-track');
    this.timelineNow = el('span', 'studio-timeline-now');
    this.timelineTrack.append(this.timelineNow);
    const axis = el('div', 'studio-timeline-axis');
    this.axisStart = el('span', '', '00:00');
    this.axisEnd = el('span', '', '');
    axis.append(this.axisStart, this.axisEnd);
    this.timeline.append(this.timelineTrack, axis);
    const markersTitle = el('h4', 'studio-subtitle', 'Markers');
    this.markerList = el('ol', 'studio-list');
    this.markerList.dataset.testid = 'studio-markers';
    this.markersEmpty = el('p', 'muted studio-empty', 'No markers yet.');
    const segmentsTitle = el('h4', 'studio-subtitle', 'Segments');
    this.segmentList = el('ol', 'studio-list');
    this.segmentList.dataset.testid = 'studio-segments';
    this.segmentsEmpty = el('p', 'muted studio-empty', 'No segments yet.');
    this.sessionSection.append(sessionTitle, this.timeline, markersTitle, this.markerList, this.markersEmpty, segmentsTitle, this.segmentList, this.segmentsEmpty);

    // Takes.
    this.takesSection = el('section', 'studio-section');
    this.takesSection.setAttribute('aria-labelledby', 'studio-takes-title');
    const takesTitle = el('h3', '', 'Takes');
    takesTitle.id = 'studio-takes-title';
    this.takeList = el('ol', 'studio-list');
    this.takeList.dataset.testid = 'studio-takes';
    this.takesEmpty = el('p', 'muted studio-empty', 'No takes yet. Artists record with Record take.');
    this.earlier = el('p', 'muted studio-note');
    this.earlier.dataset.testid = 'studio-earlier-uploads';
    this.takesSection.append(takesTitle, this.takeList, this.takesEmpty, this.earlier);

    // Roles.
    this.peopleSection = el('section', 'studio-section');
    this.peopleSection.setAttribute('aria-labelledby', 'studio-people-title');
    const peopleTitle = el('h3', '', 'Roles');
    peopleTitle.id = 'studio-people-title';
    this.peopleList = el('ul', 'studio-list studio-people');
    this.peopleList.dataset.testid = 'studio-people';
    this.peopleSection.append(peopleTitle, this.peopleList);

    body.append(this.modeSection, this.sessionSection, this.takesSection, this.peopleSection);
    panel.append(head, body);
    panel.setAttribute('aria-labelledby', 'studio-title');
  }

  icon(href) {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('aria-hidden', 'true');
    const use = document.createElementNS('http://www.w3.org/2000/svg', 'use');
    use.setAttribute('href', href);
    svg.append(use);
    return svg;
  }

  // -------------------------------------------------------------------------------------------------------
  // The room

  /** We joined: `joined.settings.studio` says whether the room is in studio mode; `studio` follows. */
  enter(joined) {
    this.inRoom = true;
    this.resetSession();
    this.on = !!(joined.settings && joined.settings.studio);
    this.role = this.on ? this.ownRole(joined) : null;
    if (this.queue) this.queue.setCallActive(true);
    this.changedMode();
  }

  /** We left (or lost the connection): a running take is ended (its uploads go on), the rest forgotten. */
  leave() {
    this.inRoom = false;
    this.stopTake();
    this.on = false;
    this.role = null;
    this.resetSession();
    if (this.queue) this.queue.setCallActive(false);
    this.setOpen(false);
    this.changedMode();
  }

  resetSession() {
    this.closeAllPlayers();
    this.session = null;
    this.markers.clear();
    this.segments.clear();
    this.takes.clear();
    this.recordAll = false;
  }

  /**
   * Our role: the server's word (`joined.studio_role`, then `participant_updated`), else, until it comes,
   * what the server's defaults give: owners produce, viewers listen, members play.
   */
  ownRole(info) {
    if (info && STUDIO_ROLES.includes(info.studio_role)) return info.studio_role;
    if (this.role) return this.role;
    if ((info && info.owner) || this.canManage()) return 'producer';
    return info && info.role === 'viewer' ? 'listener' : 'artist';
  }

  /** The room's settings changed (`room_settings`): studio mode may have turned on or off. */
  setSettings(settings) {
    if (!this.inRoom || !settings || !('studio' in settings)) return;
    const on = !!settings.studio;
    if (on === this.on) return;
    this.on = on;
    if (on) this.role = this.ownRole(null);
    else this.turnedOff();
    this.changedMode();
  }

  /** Our own ParticipantInfo changed (a producer gave us another role). */
  selfUpdated(p) {
    if (!this.inRoom || !p || !STUDIO_ROLES.includes(p.studio_role) || p.studio_role === this.role) return;
    const was = this.role;
    this.role = p.studio_role;
    if (this.on) {
      this.toast(`You are now ${this.role === 'artist' ? 'an artist' : `a ${this.role}`}${this.role === 'artist' && was === 'listener' ? ': unmute to be heard' : ''}.`, { title: 'Studio role', kind: 'info', code: 'studio_role', timeout: 6000 });
      if (this.role === 'listener') this.stopTake();
    }
    this.changedMode();
  }

  turnedOff() {
    this.stopTake();
    this.resetSession();
    this.role = null;
  }

  /** A server message; true when it was about the studio. */
  handle(msg) {
    if (!this.inRoom) return false;
    switch (msg.type) {
      case 'studio': {
        if (msg.room && this.room() && msg.room !== this.room()) return true;
        const wasOn = this.on;
        this.session = msg.session || null;
        this.markers = new Map((msg.markers || []).filter((m) => m && m.marker_id != null).map((m) => [m.marker_id, m]));
        this.segments = new Map((msg.segments || []).filter((s) => s && s.segment_id != null).map((s) => [s.segment_id, s]));
        this.takes = new Map((msg.takes || []).filter((t) => t && t.take_id != null).map((t) => [t.take_id, t]));
        this.on = !!this.session;
        this.recordAll = this.on && !!msg.record_all;
        this.prunePlayers();
        this.takeArrived(null);
        if (this.on) {
          this.role = this.ownRole(null);
          if (!wasOn) this.onSystem('Studio mode is on');
        } else if (wasOn) {
          this.turnedOff();
          this.onSystem('Studio mode is off');
        }
        this.changedMode();
        // Every artist is recording: one who joins now records too.
        if (this.recordAll && this.role === 'artist') this.takeRequested({ on: true, by: 'A producer' });
        return true;
      }
      case 'take_updated':
        if (msg.take && msg.take.take_id != null) {
          this.takes.set(msg.take.take_id, msg.take);
          this.renderTakes();
          this.takeArrived(msg.take.take_id);
        }
        return true;
      case 'marker_added':
        if (msg.marker && msg.marker.marker_id != null) {
          this.markers.set(msg.marker.marker_id, msg.marker);
          this.renderSession();
        }
        return true;
      case 'marker_deleted':
        this.markers.delete(msg.marker_id);
        this.renderSession();
        return true;
      case 'segment_updated':
        if (msg.segment && msg.segment.segment_id != null) {
          this.segments.set(msg.segment.segment_id, msg.segment);
          this.renderSession();
          this.renderBar();
        }
        return true;
      case 'segment_deleted':
        this.segments.delete(msg.segment_id);
        this.closePlayers(msg.segment_id);
        this.renderSession();
        this.renderBar();
        return true;
      case 'take_requested':
        this.takeRequested(msg);
        return true;
      default:
        return false;
    }
  }

  /** A producer's "record all artists": our take starts or ends. */
  takeRequested(msg) {
    if (!this.on || !this.canRecord()) return;
    const by = msg.by || 'A producer';
    if (msg.on) {
      if (this.recording) return;
      this.onSystem(`${by} started recording all artists`);
      this.startTake();
    } else if (this.recording) {
      this.onSystem(`${by} stopped recording all artists`);
      this.stopTake();
    }
  }

  changedMode() {
    const listener = this.inRoom && this.on && this.role === 'listener';
    if (listener !== this.listener) {
      this.listener = listener;
      this.onListener(listener);
    }
    if (this.inRoom && this.on) {
      this.pinger.start();
      this.health.start();
    } else {
      this.pinger.stop();
      this.health.stop();
    }
    clearInterval(this.tickTimer);
    this.tickTimer = this.inRoom && this.on ? setInterval(() => this.tick(), TICK_MS) : null;
    this.render();
  }

  rosterChanged() {
    // After the page's own listeners (which make the tiles) have run.
    queueMicrotask(() => {
      this.renderBadges();
      if (this.isOpen) this.renderPeople();
    });
  }

  // -------------------------------------------------------------------------------------------------------
  // Roles and permissions

  get isProducer() {
    return this.on && this.role === 'producer';
  }

  canRecord() {
    return this.on && (this.role === 'artist' || this.role === 'producer');
  }

  get recording() {
    return !!this.recorder && (this.recorder.state === 'starting' || this.recorder.state === 'recording');
  }

  /** The newest segment still open (no end), or null. */
  openSegment() {
    let open = null;
    for (const s of this.segments.values()) if (s.end_ms == null && (!open || s.start_ms > open.start_ms)) open = s;
    return open;
  }

  /** The session's clock: ms since it started, by the server's clock as we estimate it. */
  sessionMs(atMs = this.clock.serverNow()) {
    return this.session && Number.isFinite(this.session.started_at_ms) ? atMs - this.session.started_at_ms : 0;
  }

  roleOf(id) {
    if (String(id) === String(this.me())) return this.role;
    const p = this.roster.get(id);
    return p && STUDIO_ROLES.includes(p.studio_role) ? p.studio_role : null;
  }

  // -------------------------------------------------------------------------------------------------------
  // Producers' actions

  async act(key, msg, onOk) {
    if (this.busy.has(key)) return null;
    this.busy.add(key);
    this.renderBar();
    try {
      const reply = await this.signal.request(msg, { ownErrors: true });
      if (onOk) onOk(reply);
      return reply;
    } catch (err) {
      this.toast(err.message || String(err), { title: 'Studio', code: err.code || 'studio' });
      return null;
    } finally {
      this.busy.delete(key);
      this.renderBar();
    }
  }

  /** The label typed for the next marker or segment (then cleared). */
  consumeLabel() {
    const label = this.labelInput.value.trim().slice(0, LABEL_MAX);
    this.labelInput.value = '';
    return label;
  }

  addMarker() {
    if (!this.isProducer) return;
    const msg = { type: 'add_marker' };
    const label = this.consumeLabel();
    if (label) msg.label = label;
    // Our estimate of the server's clock when the producer pressed: nearer than when the server reads it.
    if (this.clock.locked) msg.at_ms = this.clock.serverNow();
    const at = this.sessionMs(msg.at_ms);
    this.act(`marker-${Date.now()}`, msg, () => this.say(`Marker${label ? ` “${label}”` : ''} at ${formatPosition(at)}`));
  }

  toggleSegment() {
    if (!this.isProducer) return;
    const open = this.openSegment();
    const now = this.clock.locked ? this.clock.serverNow() : undefined;
    if (open) {
      const msg = { type: 'end_segment', segment_id: open.segment_id };
      if (now != null) msg.end_ms = now;
      this.act('segment', msg, () => this.say('Segment ended'));
    } else {
      const msg = { type: 'add_segment' };
      const label = this.consumeLabel();
      if (label) msg.label = label;
      if (now != null) msg.start_ms = now;
      this.act('segment', msg, () => this.say('Segment started'));
    }
  }

  endSegment(segment) {
    const msg = { type: 'end_segment', segment_id: segment.segment_id };
    if (this.clock.locked) msg.end_ms = this.clock.serverNow();
    this.act(`segment-${segment.segment_id}`, msg);
  }

  setRecordAll(on) {
    if (!this.isProducer) return;
    this.act('record-all', { type: 'record_all_artists', on }, () => {
      this.recordAll = on;
      this.renderBar();
    });
  }

  setRole(pid, role) {
    this.act(`role-${pid}`, { type: 'set_studio_role', participant_id: Number(pid), studio_role: role });
  }

  setStudioMode(on) {
    if (!this.canManage()) return;
    this.act('mode', { type: 'room_settings', studio: on }, (reply) => {
      if (reply && reply.settings) this.onSettings(reply.settings);
    });
  }

  onKey(ev) {
    if (ev.key !== 'm' && ev.key !== 'M') return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat || ev.defaultPrevented) return;
    if (!this.inRoom || !this.isProducer || typing(ev.target) || document.querySelector('dialog[open]')) return;
    ev.preventDefault();
    this.addMarker();
  }

  say(text) {
    this.announce.textContent = text;
  }

  // -------------------------------------------------------------------------------------------------------
  // Takes

  toggleTake() {
    if (this.recording) this.stopTake();
    else this.startTake();
  }

  async startTake() {
    if (!this.canRecord() || this.recording || this.busy.has('take')) return;
    this.busy.add('take');
    try {
      await this.queueReady;
      if (!this.queue) throw new Error('This browser cannot keep takes (no storage).');
      const recorder = new TakeRecorder({
        request: (msg, opts) => this.signal.request(msg, opts),
        queue: this.queue,
        clock: this.clock,
        extras: () => ({ room: this.room(), recorded_by: this.me() }),
      });
      this.recorder = recorder;
      recorder.addEventListener('state', () => this.renderBar());
      recorder.addEventListener('problem', (ev) => this.toast(ev.detail.message, { title: 'Take stopped', code: `take_${ev.detail.code}` }));
      this.renderBar();
      const take = await recorder.start();
      this.lastTakeId = take.take_id;
      if (!this.durable) this.toast('This browser keeps the take in memory only: keep the page open until it is uploaded.', { title: 'Take', kind: 'info', code: 'take_memory' });
    } catch (err) {
      if (this.recorder && this.recorder.state === 'idle') this.recorder = null;
      const device = err && ['NotAllowedError', 'NotFoundError', 'NotReadableError', 'OverconstrainedError', 'SecurityError', 'AbortError', 'NotSupportedError'].includes(err.name);
      const text = device ? deviceErrorText(err, 'microphone') : err && err.message ? err.message : String(err);
      this.toast(text, { title: 'Could not record a take', code: err && err.code ? err.code : 'take' });
    } finally {
      this.busy.delete('take');
      this.renderBar();
    }
  }

  stopTake() {
    const r = this.recorder;
    if (!r || (r.state !== 'starting' && r.state !== 'recording')) return;
    r.stop()
      .catch((err) => this.toast(err.message || String(err), { title: 'Take', code: 'take' }))
      .finally(() => this.renderBar());
  }

  uploadError({ take_id: takeId, code, message, fatal }) {
    const live = this.recorder && this.recorder.take && this.recorder.take.take_id === takeId;
    if (live && (fatal || code === 'take_too_long')) this.stopTake();
    this.toast(message || code, { title: fatal ? 'Take upload stopped' : 'Take', code: code || 'take_upload', kind: fatal ? 'error' : 'info' });
  }

  // -------------------------------------------------------------------------------------------------------
  // Rendering

  setOpen(open) {
    open = !!open && this.inRoom && (this.on || this.canManage());
    this.isOpen = open;
    this.roomEl.classList.toggle('studio-open', open);
    this.panel.hidden = !open;
    this.toggleBtn.setAttribute('aria-pressed', String(open));
    this.toggleBtn.classList.toggle('is-active', open);
    if (open) {
      this.onOpen();
      this.renderPanel();
    }
  }

  render() {
    const shown = this.inRoom && this.on;
    this.bar.hidden = !shown;
    this.toggleBtn.hidden = !(this.inRoom && (this.on || this.canManage()));
    if (this.isOpen && this.toggleBtn.hidden) this.setOpen(false);
    this.roomEl.classList.toggle('studio-on', shown);
    this.renderBar();
    this.renderBadges();
    if (this.isOpen) this.renderPanel();
  }

  tick() {
    this.renderClock();
    this.renderTakeStatus();
    if (this.isOpen) this.renderTimeline();
  }

  renderClock() {
    const ms = this.session ? this.sessionMs() : null;
    this.sessionTime.textContent = ms == null ? 'Session starting…' : `Session ${formatElapsed(ms)}`;
  }

  renderBar() {
    if (!this.inRoom || !this.on) return;
    const role = this.role || 'artist';
    this.roleBadge.textContent = ROLE_LABELS[role];
    this.roleBadge.dataset.role = role;
    this.renderClock();

    this.takeGroup.hidden = !this.canRecord();
    const rec = this.recorder;
    const state = rec ? rec.state : 'idle';
    const on = state === 'starting' || state === 'recording';
    this.takeBtn.classList.toggle('is-recording', on);
    this.takeBtn.setAttribute('aria-pressed', String(on));
    this.takeBtn.disabled = state === 'starting' || state === 'stopping' || this.busy.has('take');
    this.takeLabel.textContent = state === 'starting' ? 'Starting…' : state === 'stopping' ? 'Stopping…' : on ? 'Stop take' : 'Record take';
    this.takeBtn.title = on ? 'Stop recording your take' : 'Record yourself losslessly on this device (uploaded as you play)';
    this.renderTakeStatus();

    const producer = this.isProducer;
    this.producerGroup.hidden = !producer;
    this.recordAllBtn.setAttribute('aria-pressed', String(this.recordAll));
    this.recordAllBtn.classList.toggle('is-active', this.recordAll);
    this.recordAllBtn.textContent = this.recordAll ? 'Stop all artists' : 'Record all artists';
    this.recordAllBtn.disabled = this.busy.has('record-all');
    const open = this.openSegment();
    this.segmentBtn.textContent = open ? 'End segment' : 'Start segment';
    this.segmentBtn.setAttribute('aria-pressed', String(!!open));
    this.segmentBtn.classList.toggle('is-active', !!open);
    this.segmentBtn.disabled = this.busy.has('segment');
  }

  /** "01:23 · 96% uploaded" while recording (of what is recorded so far); the upload's state after. */
  renderTakeStatus() {
    if (!this.inRoom || !this.on) return;
    const rec = this.recorder;
    const id = rec && rec.take ? rec.take.take_id : this.lastTakeId;
    const p = this.queue && id != null ? this.queue.progress(id) : null;
    let text = '';
    if (rec && rec.state === 'recording') {
      text = formatElapsed(rec.seconds * 1000);
      if (p && p.stored_samples > 0) text += ` · ${Math.floor(p.fraction * 100)}% uploaded`;
    } else if (p) {
      if (p.state === 'done') text = 'Take uploaded';
      else if (p.state === 'failed') text = `Upload stopped: ${p.error ? p.error.code : 'error'}`;
      else text = `Uploading ${Math.floor(p.fraction * 100)}%${p.retrying ? ' (waiting for the network)' : ''}`;
    }
    this.takeStatus.textContent = text;
    this.takeStatus.hidden = !text;
    if (this.isOpen) this.renderEarlier();
  }

  renderBadges() {
    for (const tile of this.tiles()) {
      if (typeof tile.setStudioRole !== 'function') continue;
      tile.setStudioRole(this.inRoom && this.on ? this.roleOf(tile.id) : null);
    }
  }

  renderPanel() {
    const manage = this.canManage();
    this.modeSection.hidden = !manage;
    this.modeBtn.setAttribute('aria-pressed', String(this.on));
    this.modeBtn.textContent = this.on ? 'Turn studio mode off' : 'Turn studio mode on';
    this.modeBtn.classList.toggle('primary', !this.on);
    this.modeBtn.disabled = this.busy.has('mode');
    this.modeText.textContent = this.on
      ? 'Everyone has a role: producers mark and cut the session, artists record lossless takes, listeners only listen.'
      : 'Studio mode gives everyone a role: producers drop markers and cut segments, artists record lossless takes on their own device while they play, listeners only listen. The room recording starts with the session.';
    for (const s of [this.sessionSection, this.takesSection, this.peopleSection]) s.hidden = !this.on;
    if (!this.on) return;
    this.renderSession();
    this.renderTakes();
    this.renderPeople();
  }

  renderSession() {
    if (!this.isOpen || !this.on) return;
    const producer = this.isProducer;
    const markers = [...this.markers.values()].sort((a, b) => a.at_ms - b.at_ms);
    this.markerList.replaceChildren(
      ...markers.map((m) => {
        const li = el('li', 'studio-item');
        li.dataset.testid = 'marker-item';
        li.dataset.markerId = String(m.marker_id);
        const time = el('span', 'studio-time', formatPosition(this.sessionMs(m.at_ms)));
        const label = el('span', 'studio-item-label', m.label || 'Marker');
        const by = el('span', 'studio-by', m.by ? `by ${m.by}` : '');
        li.append(time, label, by);
        if (producer) {
          const del = button('Delete', 'btn small studio-delete', 'marker-delete', { 'aria-label': `Delete marker ${m.label || formatPosition(this.sessionMs(m.at_ms))}` });
          del.addEventListener('click', () => this.act(`marker-del-${m.marker_id}`, { type: 'delete_marker', marker_id: m.marker_id }));
          li.append(del);
        }
        return li;
      }),
    );
    this.markersEmpty.hidden = markers.length > 0;

    const segments = [...this.segments.values()].sort((a, b) => a.start_ms - b.start_ms);
    this.segmentList.replaceChildren(
      ...segments.map((s) => {
        const li = el('li', 'studio-item');
        li.dataset.testid = 'segment-item';
        li.dataset.segmentId = String(s.segment_id);
        li.dataset.open = String(s.end_ms == null);
        const span = `${formatPosition(this.sessionMs(s.start_ms))} – ${s.end_ms == null ? 'now' : formatPosition(this.sessionMs(s.end_ms))}`;
        const name = s.label || 'Segment';
        li.append(el('span', 'studio-time', span), el('span', 'studio-item-label', name), el('span', 'studio-by', s.by ? `by ${s.by}` : ''));
        if (s.export_url) {
          const a = el('a', 'btn small studio-export', 'Export');
          a.href = s.export_url;
          a.download = '';
          a.dataset.testid = 'segment-export';
          a.setAttribute('aria-label', `Export ${name} (every track, zip)`);
          li.append(a);
        }
        if (s.end_ms != null && playable(s).length) {
          const open = this.players.has(s.segment_id);
          const play = button(open ? 'Hide players' : 'Play', 'btn small studio-play', 'segment-play', {
            'aria-expanded': String(open),
            'aria-controls': `studio-players-${s.segment_id}`,
            'aria-label': open ? `Hide the players of ${name}` : `Play ${name}`,
          });
          play.classList.toggle('is-active', open);
          play.addEventListener('click', () => this.togglePlayers(s.segment_id));
          li.append(play);
        }
        if (producer && s.end_ms == null) {
          const end = button('End', 'btn small', 'segment-end', { 'aria-label': `End segment ${name}` });
          end.addEventListener('click', () => this.endSegment(s));
          li.append(end);
        }
        if (producer) {
          const del = button('Delete', 'btn small studio-delete', 'segment-delete', { 'aria-label': `Delete segment ${name}` });
          del.addEventListener('click', () => this.act(`segment-del-${s.segment_id}`, { type: 'delete_segment', segment_id: s.segment_id }));
          li.append(del);
        }
        const players = this.players.get(s.segment_id);
        if (players) {
          this.syncPlayers(s, players);
          li.append(players.el);
        }
        return li;
      }),
    );
    this.segmentsEmpty.hidden = segments.length > 0;
    this.renderTimeline();
  }

  // -------------------------------------------------------------------------------------------------------
  // Segment playback (docs/protocol.md, "Segment playback"): a player per track of an ended segment, made
  // when its Play is pressed. A take whose chunks for the segment have not all arrived waits ("uploading…")
  // and is looked up again whenever `take_updated` says more came.

  togglePlayers(segmentId) {
    if (this.players.has(segmentId)) {
      this.closePlayers(segmentId);
    } else {
      const s = this.segments.get(segmentId);
      if (!s || s.end_ms == null) return;
      const box = el('div', 'studio-players');
      box.id = `studio-players-${segmentId}`;
      box.dataset.testid = 'segment-players';
      box.setAttribute('role', 'group');
      box.setAttribute('aria-label', `Players of ${s.label || 'Segment'}`);
      this.players.set(segmentId, { el: box, tracks: new Map() });
    }
    this.renderSession();
  }

  closePlayers(segmentId) {
    const players = this.players.get(segmentId);
    if (!players) return;
    for (const row of players.tracks.values()) this.dropPlayer(row);
    players.el.remove();
    this.players.delete(segmentId);
  }

  closeAllPlayers() {
    for (const id of [...this.players.keys()]) this.closePlayers(id);
  }

  /** Players of segments that are gone (or reopened) go too. */
  prunePlayers() {
    for (const id of [...this.players.keys()]) {
      const s = this.segments.get(id);
      if (!s || s.end_ms == null) this.closePlayers(id);
    }
  }

  dropPlayer(row) {
    row.closed = true;
    clearTimeout(row.retry);
    if (row.audio) {
      // Stops it and its download.
      row.audio.pause();
      row.audio.removeAttribute('src');
      row.audio.load();
    }
    row.el.remove();
  }

  /** The segment's tracks as player rows: new ones added (and looked up), ones it no longer has dropped. */
  syncPlayers(segment, players) {
    const tracks = playable(segment);
    const want = new Set(tracks.map((t) => t.track));
    for (const [track, row] of players.tracks) {
      if (want.has(track)) continue;
      this.dropPlayer(row);
      players.tracks.delete(track);
    }
    for (const t of tracks) {
      if (players.tracks.has(t.track)) continue;
      const row = this.playerRow(segment, t);
      players.tracks.set(t.track, row);
      players.el.append(row.el);
      this.probePlayer(row);
    }
  }

  playerRow(segment, t) {
    const m = /^take-(\d+)$/.exec(t.track);
    const takeId = t.take_id != null ? Number(t.take_id) : m ? Number(m[1]) : null;
    const take = takeId != null ? this.takes.get(takeId) : null;
    const label = t.track === 'mix' ? 'Mix (voice quality)' : `${t.label || (take && take.name) || 'Take'} (studio)`;
    const box = el('div', 'studio-player');
    box.dataset.testid = 'segment-player';
    box.dataset.track = t.track;
    const name = el('span', 'studio-player-label', label);
    const status = el('span', 'studio-player-status', '');
    status.dataset.testid = 'segment-player-status';
    status.setAttribute('role', 'status');
    box.append(name, status);
    const row = {
      segmentId: segment.segment_id,
      track: t.track,
      takeId,
      label: `${segment.label || 'Segment'}: ${label}`,
      el: box,
      status,
      audio: null,
      state: '',
      asked: 0,
      retry: null,
      closed: false,
    };
    this.setPlayerState(row, 'checking', 'Checking…');
    return row;
  }

  setPlayerState(row, state, text) {
    row.state = state;
    row.el.dataset.state = state;
    row.status.textContent = text;
    row.status.hidden = !text;
  }

  /** Whether the track plays now (HEAD: the server makes nothing for it); then its player, or why not. */
  async probePlayer(row) {
    const segment = this.segments.get(row.segmentId);
    const t = segment ? playable(segment).find((x) => x.track === row.track) : null;
    if (!t || row.closed) return;
    clearTimeout(row.retry);
    const asked = ++row.asked;
    let res = null;
    try {
      res = await fetch(t.url, { method: 'HEAD', cache: 'no-store', credentials: 'same-origin' });
    } catch {
      res = null;
    }
    if (row.closed || asked !== row.asked) return;
    if (res && res.ok) {
      this.showPlayer(row, t.url);
    } else if (res && res.status === 409 && row.takeId != null) {
      this.setPlayerState(row, 'waiting', 'uploading…');
      row.retry = setTimeout(() => this.probePlayer(row), PLAYER_RETRY_MS);
    } else {
      const why = !res ? 'Could not reach the server' : res.status === 403 ? 'Not available: the link has expired' : 'Not available';
      this.setPlayerState(row, 'error', why);
    }
  }

  showPlayer(row, url) {
    this.setPlayerState(row, 'ready', '');
    if (row.audio) return; // it keeps its place
    const audio = document.createElement('audio');
    audio.controls = true;
    audio.preload = 'none';
    audio.dataset.testid = 'segment-audio';
    audio.setAttribute('aria-label', row.label);
    audio.addEventListener('error', () => {
      if (!row.closed && audio.getAttribute('src')) this.setPlayerState(row, 'error', 'Could not play this track');
    });
    audio.src = url;
    row.audio = audio;
    row.el.append(audio);
  }

  /** More of a take (null: of any) may have arrived: its players still waiting look again. */
  takeArrived(takeId) {
    for (const players of this.players.values()) {
      for (const row of players.tracks.values()) {
        if (row.state === 'waiting' && (takeId == null || row.takeId === takeId)) this.probePlayer(row);
      }
    }
  }

  /** Markers and segments placed by server time since the session's start. */
  renderTimeline() {
    if (!this.session) {
      this.timeline.hidden = true;
      return;
    }
    this.timeline.hidden = false;
    const now = this.sessionMs();
    let end = Math.max(60_000, now);
    for (const m of this.markers.values()) end = Math.max(end, this.sessionMs(m.at_ms));
    for (const s of this.segments.values()) end = Math.max(end, this.sessionMs(s.end_ms == null ? s.start_ms : s.end_ms));
    const pct = (ms) => `${Math.max(0, Math.min(100, (ms / end) * 100)).toFixed(3)}%`;
    const items = [];
    for (const s of this.segments.values()) {
      const from = this.sessionMs(s.start_ms);
      const to = s.end_ms == null ? now : this.sessionMs(s.end_ms);
      const bar = el('span', 'studio-tl-segment');
      bar.classList.toggle('open', s.end_ms == null);
      bar.style.left = pct(from);
      bar.style.width = pct(Math.max(0, to - from));
      bar.title = s.label || 'Segment';
      items.push(bar);
    }
    for (const m of this.markers.values()) {
      const tick = el('span', 'studio-tl-marker');
      tick.style.left = pct(this.sessionMs(m.at_ms));
      tick.title = m.label || 'Marker';
      items.push(tick);
    }
    this.timelineNow.style.left = pct(now);
    this.timelineTrack.replaceChildren(...items, this.timelineNow);
    this.axisEnd.textContent = formatElapsed(end);
  }

  renderTakes() {
    if (!this.isOpen || !this.on) return;
    const takes = [...this.takes.values()].sort((a, b) => (a.started_at_ms || 0) - (b.started_at_ms || 0));
    this.takeList.replaceChildren(...takes.map((t) => this.takeItem(t)));
    this.takesEmpty.hidden = takes.length > 0;
    this.renderEarlier();
  }

  takeItem(t) {
    const li = el('li', 'studio-item studio-take');
    li.dataset.testid = 'take-item';
    li.dataset.takeId = String(t.take_id);
    li.dataset.state = t.state || '';
    const local = this.queue ? this.queue.progress(t.take_id) : null;
    const head = el('div', 'studio-take-head');
    head.append(el('span', 'studio-item-label', t.name || 'Take'));
    const frames = Number.isFinite(t.total_samples) ? t.total_samples : t.received_samples;
    const len = takeMs(frames, t.sample_rate);
    if (len != null) head.append(el('span', 'studio-time', formatElapsed(len)));
    if (Number.isFinite(t.started_at_ms) && this.session) head.append(el('span', 'studio-by', `from ${formatPosition(this.sessionMs(t.started_at_ms))}`));
    const state = el('span', 'badge studio-take-state', this.takeStateText(t, local));
    state.dataset.testid = 'take-state';
    state.dataset.state = t.state || '';
    head.append(state);
    li.append(head);
    const files = Array.isArray(t.files) ? t.files : [];
    if (files.length) {
      const ul = el('ul', 'studio-files');
      for (const f of files) {
        if (!f || !f.url) continue;
        const row = el('li', 'studio-file');
        const a = el('a', 'btn small', `Download ${String(f.name || 'file').split('.').pop().toUpperCase()}`);
        a.href = f.url;
        a.download = f.name || '';
        a.dataset.testid = 'take-download';
        const size = formatBytes(f.bytes);
        a.setAttribute('aria-label', `Download ${t.name || 'take'} ${f.name || ''}${size ? ` (${size})` : ''}`);
        row.append(a);
        if (size) row.append(el('span', 'studio-by', size));
        ul.append(row);
      }
      li.append(ul);
    }
    return li;
  }

  /** "Uploading 42%", "Complete", …: our own upload's progress where it is ours, else the server's. */
  takeStateText(t, local) {
    const label = TAKE_STATE_LABELS[t.state] || t.state || '';
    if (t.state !== 'uploading' && t.state !== 'incomplete') return label;
    let fraction = null;
    if (local && local.state !== 'failed') fraction = local.fraction;
    else if (Number.isFinite(t.total_samples) && t.total_samples > 0) fraction = (t.received_samples || 0) / t.total_samples;
    if (fraction == null) {
      const ms = takeMs(t.received_samples, t.sample_rate);
      return ms != null ? `${label} · ${formatElapsed(ms)} in` : label;
    }
    return `${label} ${Math.floor(Math.min(1, fraction) * 100)}%`;
  }

  /** Takes from earlier (another session, before a reload) still going up from this device. */
  renderEarlier() {
    const rows = this.queue ? this.queue.snapshot().filter((p) => p && !this.takes.has(p.take_id) && (p.state === 'ended' || p.state === 'recording')) : [];
    if (rows.length === 0) {
      this.earlier.hidden = true;
      return;
    }
    const total = rows.reduce((n, p) => n + (p.total_samples || p.stored_samples), 0);
    const acked = rows.reduce((n, p) => n + p.acked_samples, 0);
    this.earlier.hidden = false;
    this.earlier.textContent = `Uploading ${rows.length === 1 ? 'an earlier take' : `${rows.length} earlier takes`} from this device: ${total ? Math.floor((acked / total) * 100) : 0}%.`;
  }

  renderPeople() {
    if (!this.isOpen || !this.on) return;
    const producer = this.isProducer;
    const people = [...this.roster.members.values(), ...this.roster.viewers.values()];
    const rows = [];
    const me = this.me();
    const mine = el('li', 'studio-person');
    mine.dataset.testid = 'studio-person';
    mine.dataset.participantId = String(me);
    mine.append(el('span', 'studio-item-label', 'You'), el('span', 'badge studio-role-badge', ROLE_LABELS[this.role] || ''));
    mine.lastChild.dataset.role = this.role || '';
    rows.push(mine);
    for (const p of people) {
      const li = el('li', 'studio-person');
      li.dataset.testid = 'studio-person';
      li.dataset.participantId = String(p.id);
      const name = el('span', 'studio-item-label', p.name);
      li.append(name);
      const role = STUDIO_ROLES.includes(p.studio_role) ? p.studio_role : null;
      if (producer) {
        const select = document.createElement('select');
        select.className = 'select studio-role-select';
        select.dataset.testid = 'studio-role-select';
        select.setAttribute('aria-label', `Studio role of ${p.name}`);
        for (const r of STUDIO_ROLES) {
          const o = document.createElement('option');
          o.value = r;
          o.textContent = ROLE_LABELS[r];
          select.append(o);
        }
        select.value = role || '';
        select.disabled = this.busy.has(`role-${p.id}`);
        select.addEventListener('change', () => this.setRole(p.id, select.value));
        li.append(select);
      } else {
        const badge = el('span', 'badge studio-role-badge', role ? ROLE_LABELS[role] : '');
        badge.dataset.role = role || '';
        li.append(badge);
      }
      rows.push(li);
    }
    this.peopleList.replaceChildren(...rows);
  }

  // -------------------------------------------------------------------------------------------------------
  // For tests

  snapshot() {
    return {
      on: this.on,
      role: this.role,
      session: this.session ? { ...this.session } : null,
      markers: [...this.markers.values()].map((m) => ({ ...m })),
      segments: [...this.segments.values()].map((s) => ({ ...s, playback: playable(s).map((t) => ({ ...t })) })),
      players: [...this.players.entries()].flatMap(([segmentId, p]) =>
        [...p.tracks.values()].map((r) => ({ segment_id: segmentId, track: r.track, state: r.state, src: r.audio ? r.audio.src : null })),
      ),
      takes: [...this.takes.values()].map((t) => ({ ...t, files: (t.files || []).map((f) => ({ ...f })) })),
      recordAll: this.recordAll,
      clock: this.clock.snapshot(),
      recording: this.recorder ? this.recorder.snapshot() : null,
      uploads: this.queue ? this.queue.snapshot() : [],
      durable: this.durable,
    };
  }

  /** What IndexedDB holds: the takes with their chunk lines (acked, bytes) and no tokens. */
  async storedTakes() {
    await this.queueReady;
    return this.queue ? this.queue.stored() : [];
  }
}
