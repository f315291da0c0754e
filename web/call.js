// One room's media session: ONE RTCPeerConnection to the SFU (docs/protocol.md, "Flow").
//
// The server offers first (`join` with `server_offer`): its first offer, right behind `joined`, begins
// with three recvonly m-lines for our microphone, camera and screen share, and carries everyone's tracks
// already there, so one offer/answer sets up the whole call (the old way, a client offer and then the
// server's, took a round trip and two SDP cycles more). We claim those three transceivers as sendonly (a
// null track when the device is off or missing, or nothing is shared: `replaceTrack` later, never
// renegotiate from the client). From then on the server offers whenever other participants' tracks come
// or go and the client answers. Every SDP step runs on one queue so server offers are handled strictly in
// order. A viewer (receive-only) still makes the one client offer: it has no tracks of its own.
//
// Incoming tracks are filed by publisher: `event.streams[0].id` is the participant id. Chromium reuses a
// receiver's track when the server recycles an m-line for someone else, so a track's owner can change.
// A publisher's screen share is the video whose `a=msid` track id (in the server's offer) ends in
// `-screen`: filed as `screen`, their camera as `video`.

const ANSWER_TIMEOUT_MS = 10_000;

export class Call extends EventTarget {
  /**
   * @param {{send: (msg: object) => boolean}} signal the signalling connection
   * @param {import('./media.js').LocalMedia | null} local null for a receive-only viewer
   */
  constructor(signal, local) {
    super();
    this.signal = signal;
    this.local = local;
    this.pc = null;
    this.audioTx = null;
    this.videoTx = null;
    this.screenTx = null;
    /** What `setSending` asked for before the server's first offer made the transceivers. */
    this.wanted = { audio: null, video: null, screen: null };
    /** True while the client's own offer is the first step (a viewer); false when the server offers first. */
    this.offersFirst = false;
    this.msidTracks = new Map(); // mid -> a=msid track id, from the server's latest offer
    this.queue = Promise.resolve();
    this.answerWaiter = null;
    this.firstOfferWaiter = null;
    this.offerSeen = null; // resolves `offerArrived`
    this.closed = false;
    /** participant id (string) -> {audio, video, screen: MediaStreamTrack|null} */
    this.remote = new Map();
    this.trackOwner = new Map(); // MediaStreamTrack -> participant id
    this.watchedStreams = new WeakSet();
    this.watchedTracks = new WeakSet();
  }

  /**
   * Creates the peer connection. Can run while the `join` request is still out. A participant then waits
   * for the server's first offer (`handleOffer`); a viewer (`receiveOnly`) prepares its one client offer
   * (two recvonly m-lines that only carry the transport), which `sendOffer` sends once the server has
   * said `joined`.
   */
  prepare({ receiveOnly = false } = {}) {
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    pc.addEventListener('track', (ev) => this.onTrack(ev));
    pc.addEventListener('connectionstatechange', () => {
      this.dispatchEvent(new CustomEvent('connectionstate', { detail: pc.connectionState }));
    });
    if (!receiveOnly) return Promise.resolve();

    this.offersFirst = true;
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    return this.enqueue(async () => {
      // The offer goes without waiting for ICE gathering: the server is ICE-lite and learns our
      // address from our connectivity checks (a peer-reflexive candidate), so our candidates would
      // only add the gathering time to the join.
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
    });
  }

  /**
   * Starts the media session once the server has said `joined`: a viewer sends its prepared offer; a
   * participant waits for the server's first offer (rejects when none comes in time).
   */
  start() {
    if (this.offersFirst) return this.sendOffer();
    if (this.audioTx) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.firstOfferWaiter = null;
        if (this.closed) resolve(); // left meanwhile: nothing to report
        else reject(new Error('The server did not offer the media connection'));
      }, ANSWER_TIMEOUT_MS);
      this.firstOfferWaiter = () => {
        clearTimeout(timer);
        this.firstOfferWaiter = null;
        resolve();
      };
    });
  }

  /**
   * Resolves once the server's first offer is being applied, or after `ms` (whichever comes first): the
   * app lets the offer's setRemoteDescription, which runs off the main thread, start before it draws the
   * room, which holds the main thread for tens of milliseconds.
   */
  offerArrived(ms) {
    if (this.offersFirst || this.audioTx || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.offerSeen = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Sends the prepared offer and applies the server's answer. Server offers queue up behind it. */
  sendOffer() {
    return this.enqueue(async () => {
      const pc = this.pc;
      const answered = new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.answerWaiter = null;
          reject(new Error('The server did not answer the media offer'));
        }, ANSWER_TIMEOUT_MS);
        this.answerWaiter = (sdp) => {
          clearTimeout(timer);
          this.answerWaiter = null;
          resolve(sdp);
        };
      });
      this.signal.send({ type: 'offer', sdp: pc.localDescription.sdp });
      const sdp = await answered;
      if (this.closed) return;
      await pc.setRemoteDescription({ type: 'answer', sdp });
    });
  }

  enqueue(step) {
    const run = this.queue.then(() => (this.closed ? undefined : step()));
    // Keep the chain alive after a failure; the caller still sees the rejection through `run`.
    this.queue = run.catch(() => {});
    return run;
  }

  /** The server's answer to the client offer. */
  handleAnswer(sdp) {
    if (this.answerWaiter) this.answerWaiter(sdp);
    else console.warn('[parley] unexpected answer from the server, ignored');
  }

  /** A server offer: other participants' tracks came or went (or the first one, with our own m-lines). */
  handleOffer(sdp) {
    const run = this.enqueue(async () => {
      const pc = this.pc;
      if (!pc || pc.signalingState === 'closed') return;
      this.msidTracks = msidTracks(sdp); // read by onTrack, which setRemoteDescription fires
      await pc.setRemoteDescription({ type: 'offer', sdp });
      // Our tracks go on while the answer is made: the SDP does not depend on them.
      const attached = !this.offersFirst && !this.audioTx ? this.claimOwnTransceivers() : null;
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (this.closed) return;
      this.signal.send({ type: 'answer', sdp: pc.localDescription.sdp });
      if (attached) {
        await attached;
        if (this.firstOfferWaiter) this.firstOfferWaiter();
      }
    });
    // Told after enqueueing, so that the SDP step starts before whatever the app does next.
    if (this.offerSeen) {
      this.offerSeen();
      this.offerSeen = null;
    }
    return run;
  }

  /**
   * The first three m-lines of the server's first offer are recvonly on its side: our microphone, camera
   * and screen share (the second video, which the server takes as the screen). They become our sendonly
   * transceivers at once (what the answer says); the returned promise settles when whatever `setSending`
   * asked for meanwhile is on them.
   */
  claimOwnTransceivers() {
    const [audio, video, screen] = this.pc.getTransceivers();
    const ok = audio && video && screen && audio.receiver.track.kind === 'audio'
      && video.receiver.track.kind === 'video' && screen.receiver.track.kind === 'video';
    if (!ok) throw new Error('The server\'s first offer has no room for our microphone and camera');
    const stream = this.local.stream;
    for (const tx of [audio, video, screen]) {
      tx.direction = 'sendonly';
      tx.sender.setStreams(stream);
    }
    this.audioTx = audio;
    this.videoTx = video;
    this.screenTx = screen;
    return Promise.all(['audio', 'video', 'screen'].map((kind) => this.setSending(kind, this.wanted[kind])));
  }

  /** Sends `track` (or nothing, when null) on the 'audio', 'video' or 'screen' transceiver without renegotiating. */
  async setSending(kind, track) {
    if (this.closed) return;
    this.wanted[kind] = track || null;
    const tx = kind === 'audio' ? this.audioTx : kind === 'screen' ? this.screenTx : this.videoTx;
    if (!tx) return; // applied when the server's first offer makes the transceivers
    await tx.sender.replaceTrack(track || null);
  }

  onTrack(ev) {
    const stream = ev.streams && ev.streams[0];
    if (!stream) {
      console.warn('[parley] incoming track without a stream id, cannot tell whose it is', ev.track.kind);
      return;
    }
    const pid = String(stream.id);
    const mid = ev.transceiver ? ev.transceiver.mid : null;
    const trackId = mid != null ? this.msidTracks.get(mid) : undefined;
    const slot = ev.track.kind === 'audio' ? 'audio' : trackId && trackId.endsWith('-screen') ? 'screen' : 'video';
    this.assign(pid, ev.track, slot);
    if (!this.watchedStreams.has(stream)) {
      this.watchedStreams.add(stream);
      stream.addEventListener('removetrack', (e) => this.unassign(String(stream.id), e.track));
    }
  }

  entry(pid) {
    let e = this.remote.get(pid);
    if (!e) {
      e = { audio: null, video: null, screen: null };
      this.remote.set(pid, e);
    }
    return e;
  }

  assign(pid, track, kind = track.kind === 'audio' ? 'audio' : 'video') {
    const prev = this.trackOwner.get(track);
    if (prev !== undefined && prev !== pid) this.unassign(prev, track);
    const e = this.entry(pid);
    if (e[kind] === track) return;
    // A recycled m-line may carry this publisher's other video now: the track leaves its old place.
    for (const k of ['audio', 'video', 'screen']) if (k !== kind && e[k] === track) e[k] = null;
    e[kind] = track;
    this.trackOwner.set(track, pid);
    if (!this.watchedTracks.has(track)) {
      this.watchedTracks.add(track);
      const changed = () => {
        const owner = this.trackOwner.get(track);
        if (owner !== undefined) this.emitRemote(owner);
      };
      track.addEventListener('mute', changed);
      track.addEventListener('unmute', changed);
      track.addEventListener('ended', () => {
        const owner = this.trackOwner.get(track);
        if (owner !== undefined) this.unassign(owner, track);
      });
    }
    this.emitRemote(pid);
  }

  unassign(pid, track) {
    const e = this.remote.get(pid);
    if (!e) return;
    let changed = false;
    for (const kind of ['audio', 'video', 'screen']) {
      if (e[kind] === track) {
        e[kind] = null;
        changed = true;
      }
    }
    if (this.trackOwner.get(track) === pid) this.trackOwner.delete(track);
    if (changed) this.emitRemote(pid);
  }

  /** Forgets a participant who left (their m-lines go away with the next server offer). */
  forget(pid) {
    pid = String(pid);
    const e = this.remote.get(pid);
    if (!e) return;
    for (const t of [e.audio, e.video, e.screen]) if (t && this.trackOwner.get(t) === pid) this.trackOwner.delete(t);
    this.remote.delete(pid);
  }

  emitRemote(pid) {
    this.dispatchEvent(new CustomEvent('remote', { detail: { pid } }));
  }

  /** The RTCRtpReceiver currently carrying `kind` ('audio' | 'video' | 'screen') from participant `pid`, if any. */
  receiverFor(pid, kind) {
    const e = this.remote.get(String(pid));
    const track = e && e[kind];
    if (!track || !this.pc) return null;
    const tr = this.pc.getTransceivers().find((t) => t.receiver.track === track);
    return tr ? tr.receiver : null;
  }

  close() {
    this.closed = true;
    this.answerWaiter = null;
    this.firstOfferWaiter = null;
    if (this.pc) {
      try {
        this.pc.close();
      } catch {
        // already closed
      }
    }
    this.pc = null;
    this.remote.clear();
    this.trackOwner.clear();
  }
}

/** mid -> the track id of its `a=msid:<stream> <track>` line, for every m-section of `sdp` that has both. */
export function msidTracks(sdp) {
  const out = new Map();
  let mid = null;
  let track = null;
  const flush = () => {
    if (mid != null && track != null) out.set(mid, track);
  };
  for (const raw of String(sdp).split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.startsWith('m=')) {
      flush();
      mid = null;
      track = null;
    } else if (line.startsWith('a=mid:')) {
      mid = line.slice(6).trim();
    } else if (line.startsWith('a=msid:')) {
      const parts = line.slice(7).trim().split(/\s+/);
      if (parts.length > 1) track = parts[1];
    }
  }
  flush();
  return out;
}
