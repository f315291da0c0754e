// web/call.js alone (no browser): a publisher's screen share is told from their camera by the server's
// `a=msid` track id (`<n>-screen`), read from the offer by mid, and filed as `screen`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Call, msidTracks } from '../../web/call.js';

const OFFER = [
  'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:0', 'a=sendonly',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:3', 'a=sendonly', 'a=msid:12 7-0',
  'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:4', 'a=sendonly', 'a=msid:12 7-1',
  'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:5', 'a=sendonly', 'a=msid:12 7-screen',
  'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:6', 'a=msid:- -',
  '',
].join('\r\n');

test('msidTracks: mid -> the a=msid track id, per m-section', () => {
  const m = msidTracks(OFFER);
  assert.deepEqual([...m], [['3', '7-0'], ['4', '7-1'], ['5', '7-screen'], ['6', '-']]);
  assert.equal(m.has('0'), false, 'an m-section without msid has none');
  assert.deepEqual([...msidTracks('m=video 9 X 96\na=msid:1 2-screen\na=mid:a\n')], [['a', '2-screen']], 'any order, LF only');
});

function fakeTrack(kind) {
  const t = new EventTarget();
  t.kind = kind;
  return t;
}

test('Call files a publisher\'s screen apart from the camera, and forgets both', () => {
  const call = new Call({ send: () => true }, null);
  call.msidTracks = msidTracks(OFFER);
  const stream = new EventTarget();
  stream.id = '12';
  const events = [];
  call.addEventListener('remote', (ev) => events.push(ev.detail.pid));
  const mic = fakeTrack('audio');
  const cam = fakeTrack('video');
  const screen = fakeTrack('video');
  call.onTrack({ streams: [stream], track: mic, transceiver: { mid: '3' } });
  call.onTrack({ streams: [stream], track: cam, transceiver: { mid: '4' } });
  call.onTrack({ streams: [stream], track: screen, transceiver: { mid: '5' } });
  const e = call.remote.get('12');
  assert.equal(e.audio, mic);
  assert.equal(e.video, cam, 'the camera stays the camera');
  assert.equal(e.screen, screen, 'the -screen track is the screen');
  assert.deepEqual(events, ['12', '12', '12']);
  // A recycled m-line: the screen's receiver track now carries the camera (mid 4 is someone's camera).
  call.onTrack({ streams: [stream], track: screen, transceiver: { mid: '4' } });
  assert.equal(e.video, screen);
  assert.equal(e.screen, null, 'a track sits in one place only');
  // The screen track ends: it is forgotten.
  call.assign('12', cam, 'screen');
  cam.dispatchEvent(new Event('ended'));
  assert.equal(e.screen, null);
  call.forget('12');
  assert.equal(call.remote.has('12'), false);
});
