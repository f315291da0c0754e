// web/people.js alone (no browser): the per-person volume kept per display name (clamped, 100 % not kept,
// nonsense in storage ignored, the oldest names dropped past 200), who is shown large (pinned first, then
// an active speaker on camera or unmuted, never a muted camera-off person over someone on camera) and the
// state words of a person.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseLarge, clampVolume, loadVolumes, saveVolume, stateLabels, volumeFor } from '../../web/people.js';

function memStorage() {
  const mem = new Map();
  return { mem, getItem: (k) => (mem.has(k) ? mem.get(k) : null), setItem: (k, v) => mem.set(k, String(v)) };
}

test('volumes are kept per name, clamped to 0–200, 100 % forgotten', () => {
  const st = memStorage();
  assert.equal(volumeFor('Ann', st), 100, 'nothing stored: 100 %');
  assert.equal(saveVolume('Ann', 0, st), 0);
  assert.equal(saveVolume('Bo', 250, st), 200, 'clamped');
  assert.equal(saveVolume('Cy', 37.4, st), 37, 'whole percent');
  assert.equal(volumeFor('Ann', st), 0, '0 is kept (not mistaken for "none")');
  assert.equal(volumeFor('Bo', st), 200);
  assert.equal(volumeFor('Ann (2)', st), 100, 'another name is another person');
  saveVolume('Cy', 100, st);
  assert.deepEqual(loadVolumes(st), { Ann: 0, Bo: 200 }, '100 % is not kept');
  assert.equal(clampVolume(-5), 0);
  assert.equal(clampVolume('x'), 100);
});

test('nonsense in storage gives 100 %; storage that throws is survived', () => {
  const st = memStorage();
  for (const bad of ['{', '[]', '"x"', 'null', '{"Ann":"loud","Bo":null}']) {
    st.mem.set('parley.volumes', bad);
    assert.equal(volumeFor('Ann', st), 100, bad);
    assert.equal(volumeFor('Bo', st), 100, bad);
  }
  const throwing = { getItem: () => { throw new Error('denied'); }, setItem: () => { throw new Error('full'); } };
  assert.equal(volumeFor('Ann', throwing), 100);
  assert.equal(saveVolume('Ann', 50, throwing), 50);
  assert.equal(volumeFor('Ann', null), 100);
});

test('at most 200 names are remembered, the oldest go first', () => {
  const st = memStorage();
  for (let i = 0; i < 205; i++) saveVolume(`p${i}`, 50, st);
  const kept = Object.keys(loadVolumes(st));
  assert.equal(kept.length, 200);
  assert.equal(kept.includes('p0'), false);
  assert.equal(kept.includes('p4'), false);
  assert.equal(kept.includes('p5'), true);
  assert.equal(kept.includes('p204'), true);
  saveVolume('p5', 60, st); // touched again: now the newest
  for (let i = 205; i < 210; i++) saveVolume(`p${i}`, 50, st);
  assert.equal(volumeFor('p5', st), 60);
  assert.equal(volumeFor('p6', st), 100, 'the oldest untouched name dropped');
});

test('who is shown large: pinned, then an active speaker on camera or unmuted, then someone on camera', () => {
  const ann = { id: '1', camera: false, muted: true }; // muted, camera off
  const bo = { id: '2', camera: true, muted: true }; // on camera, muted
  const cy = { id: '3', camera: false, muted: false }; // camera off, unmuted
  const people = [ann, bo, cy];
  // The bug: a muted, camera-off person (here the previous one and first in order) stayed large.
  assert.equal(chooseLarge({ people, previous: '1' }), '2', 'someone on camera wins over a muted camera-off previous');
  assert.equal(chooseLarge({ people, speaker: '1' }), '2', 'a muted camera-off "speaker" is not shown large');
  assert.equal(chooseLarge({ people }), '2', 'nobody speaking: the first on camera');
  assert.equal(chooseLarge({ people, speaker: '3' }), '3', 'an unmuted speaker, camera off');
  assert.equal(chooseLarge({ people, speaker: '2' }), '2');
  assert.equal(chooseLarge({ people, previous: '3' }), '3', 'the previous one stays while unmuted');
  assert.equal(chooseLarge({ people, speaker: '9', previous: '3' }), '3', 'a speaker not on the stage (you) keeps the previous');
  // Pinned wins over everything, in either view; unknown pins are ignored.
  assert.equal(chooseLarge({ people, pinned: '1', speaker: '2' }), '1');
  assert.equal(chooseLarge({ people, pinned: '1', viewMode: 'grid' }), '1', 'pinned is large in grid view too');
  assert.equal(chooseLarge({ people, pinned: '7', speaker: '3' }), '3', 'a pinned person who left: automatic');
  assert.equal(chooseLarge({ people, speaker: '3', viewMode: 'grid' }), null, 'grid view, nobody pinned: nobody large');
  // Everyone muted with the camera off: still someone large (the first).
  assert.equal(chooseLarge({ people: [ann, { id: '4', camera: false, muted: true }] }), '1');
  assert.equal(chooseLarge({ people: [] }), null, 'alone');
});

test('the state words of a person', () => {
  assert.deepEqual(stateLabels({ mic_muted: false, camera_off: false, deafened: false }), []);
  assert.deepEqual(
    stateLabels({ reconnecting: true, owner: true, studio_role: 'artist', mic_muted: true, camera_off: true, deafened: true }).map(([t]) => t),
    ['Reconnecting…', 'Owner', 'Artist', 'Muted', 'Camera off', 'Deafened'],
  );
  assert.deepEqual(stateLabels({ studio_role: 'nonsense' }), []);
});
