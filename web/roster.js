// The room's people as the server reports them, for the call page and the wall screen alike: who is in
// the room (members and receive-only viewers, never ourselves), their name and mic / deafen / camera
// flags, the active speaker and the latest voice levels. It only keeps state and tells its users what
// changed; drawing tiles, chat lines and layouts stays with the pages.
//
// Fed with the `joined` reply (`enter`) and with every server message (`handle`), it sends events:
// - `add`    {id, participant, announced}: someone is new to us; `announced` when the server said
//            `participant_joined` (not for the people already there when we joined, nor for someone we
//            first hear of through `participant_updated`).
// - `update` {id, participant}: someone's name or flags changed.
// - `remove` {id, participant}: someone left (`participant` as last known; undefined if never known).
// - `speaker` {id}: the active speaker changed (id null: nobody, e.g. the speaker muted).
// Ids are strings throughout; participants are the server's ParticipantInfo objects (docs/protocol.md).

import { ServerLevels } from './levels.js';

export class Roster extends EventTarget {
  constructor() {
    super();
    this.room = null; // the room's name while we are in one
    this.me = null; // our own participant id (string)
    this.members = new Map(); // id -> ParticipantInfo of the others who take part (role member)
    this.viewers = new Map(); // id -> ParticipantInfo of receive-only wall screens
    this.activeSpeaker = null; // id of the room's dominant speaker, as the server decides it
    this.levels = new ServerLevels(); // everyone's voice levels, from the server's `levels`
  }

  get inRoom() {
    return this.room != null;
  }

  /** Someone in the room (member or viewer), or undefined. */
  get(id) {
    id = String(id);
    return this.members.get(id) || this.viewers.get(id);
  }

  /** Copies of the members' ParticipantInfo, in the order they became known. */
  memberList() {
    return [...this.members.values()].map((p) => ({ ...p }));
  }

  /** We are in `joined.room`: the people already there arrive as `add` events, then the speaker. */
  enter(joined, room = joined.room) {
    this.leave();
    this.room = room;
    this.me = joined.you == null ? null : String(joined.you);
    for (const p of joined.participants || []) this.add(p, false);
    this.setSpeaker(joined.active_speaker);
  }

  /** We left (or lost the connection): everything is forgotten, without events. */
  leave() {
    this.room = null;
    this.me = null;
    this.members.clear();
    this.viewers.clear();
    this.activeSpeaker = null;
    this.levels.clear();
  }

  /** A server message; the roster's own (participants, speaker, levels) change it while in a room. */
  handle(msg) {
    if (!this.inRoom || !msg) return;
    switch (msg.type) {
      case 'participant_joined':
        if (msg.participant) this.add(msg.participant, true);
        break;
      case 'participant_updated':
        if (msg.participant) this.update(msg.participant);
        break;
      case 'participant_left':
        this.remove(msg.participant_id);
        break;
      case 'active_speaker':
        this.setSpeaker(msg.participant_id);
        break;
      case 'levels':
        this.levels.update(msg.levels);
        break;
      default:
        break;
    }
  }

  isMe(id) {
    return this.me != null && String(id) === this.me;
  }

  mapFor(p) {
    return p.role === 'viewer' ? this.viewers : this.members;
  }

  add(p, announced) {
    if (!p || p.id == null || this.isMe(p.id)) return;
    const id = String(p.id);
    if (this.get(id)) {
      this.update(p);
      return;
    }
    this.mapFor(p).set(id, p);
    this.emit('add', { id, participant: p, announced });
  }

  update(p) {
    if (!p || p.id == null || this.isMe(p.id)) return; // our own flags: the page's local state
    const id = String(p.id);
    if (!this.get(id)) {
      this.add(p, false);
      return;
    }
    this.members.delete(id);
    this.viewers.delete(id);
    this.mapFor(p).set(id, p);
    this.emit('update', { id, participant: p });
  }

  remove(pid) {
    if (pid == null || this.isMe(pid)) return;
    const id = String(pid);
    const p = this.get(id);
    if (this.activeSpeaker === id) this.setSpeaker(null);
    this.members.delete(id);
    this.viewers.delete(id);
    this.emit('remove', { id, participant: p });
  }

  setSpeaker(pid) {
    this.activeSpeaker = pid == null ? null : String(pid);
    this.emit('speaker', { id: this.activeSpeaker });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
