// web/roster.js on its own (no browser, no server): the room's people as the server's messages describe
// them, and the events the call page and the wall screen draw from.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Roster } from '../../web/roster.js';

const person = (id, name, more = {}) => ({ id, name, mic_muted: false, deafened: false, camera_off: false, role: 'member', ...more });

function recorder(roster) {
  const events = [];
  for (const type of ['add', 'update', 'remove', 'speaker']) {
    roster.addEventListener(type, (ev) => {
      const d = ev.detail;
      events.push([type, d.id, ...(type === 'add' ? [d.announced] : []), ...(d.participant ? [d.participant.name] : [])]);
    });
  }
  return events;
}

test('roster: joined, joins, updates, leaves, speaker and levels', () => {
  const roster = new Roster();
  const events = recorder(roster);
  roster.handle({ type: 'participant_joined', participant: person(1, 'Early') });
  assert.equal(events.length, 0, 'nothing before the room is entered');

  roster.enter({ room: 'r', you: 5, participants: [person(2, 'Ann'), person(3, 'Wall', { role: 'viewer' })], active_speaker: 2 });
  assert.deepEqual(events.splice(0), [['add', '2', false, 'Ann'], ['add', '3', false, 'Wall'], ['speaker', '2']]);
  assert.equal(roster.inRoom, true);
  assert.deepEqual([...roster.members.keys()], ['2']);
  assert.deepEqual([...roster.viewers.keys()], ['3']);

  roster.handle({ type: 'participant_joined', participant: person(5, 'Me') });
  roster.handle({ type: 'participant_updated', participant: person(5, 'Me', { mic_muted: true }) });
  assert.equal(events.length, 0, 'our own entries are not the roster\'s');

  roster.handle({ type: 'participant_joined', participant: person(4, 'Bo') });
  roster.handle({ type: 'participant_updated', participant: person(4, 'Bo', { mic_muted: true }) });
  roster.handle({ type: 'participant_updated', participant: person(6, 'Cy') });
  assert.deepEqual(events.splice(0), [['add', '4', true, 'Bo'], ['update', '4', 'Bo'], ['add', '6', false, 'Cy']]);
  assert.equal(roster.get(4).mic_muted, true);
  assert.deepEqual(roster.memberList().map((p) => p.name), ['Ann', 'Bo', 'Cy']);

  roster.handle({ type: 'levels', levels: [{ id: 2, level: 80 }, { id: 4 }] });
  assert.deepEqual(roster.levels.snapshot(), { 2: 80 });
  assert.equal(roster.levels.get(2), 80);

  // The speaker leaves: no speaker first, then the leave (with what was known of them).
  roster.handle({ type: 'participant_left', participant_id: 2 });
  roster.handle({ type: 'participant_left', participant_id: 99 });
  roster.handle({ type: 'active_speaker', participant_id: 4 });
  roster.handle({ type: 'active_speaker', participant_id: null });
  assert.deepEqual(events.splice(0), [['speaker', null], ['remove', '2', 'Ann'], ['remove', '99'], ['speaker', '4'], ['speaker', null]]);
  assert.equal(roster.get(2), undefined);

  roster.leave();
  assert.equal(roster.inRoom, false);
  assert.equal(roster.members.size + roster.viewers.size, 0);
  assert.deepEqual(roster.levels.snapshot(), {});
  roster.handle({ type: 'participant_joined', participant: person(7, 'Late') });
  assert.equal(events.length, 0, 'nothing after leaving');
});
