// One room's media session: ONE RTCPeerConnection to the SFU (docs/protocol.md, "Flow").
//
// The client offers once, right after `joined`, with one sendonly audio and one sendonly video
// transceiver (a null track when the device is off or missing). From then on only the server offers
// (whenever other participants' tracks come or go) and the client answers. Every SDP step runs on one
// queue so server offers are handled strictly in order.
//
// Incoming tracks are filed by publisher: `event.streams[0].id` is the participant id. Chromium reuses a
// receiver's track when the server recycles an m-line for someone else, so a track's owner can change.

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
    this.queue = Promise.resolve();
    this.answerWaiter = null;
    this.closed = false;
    /** participant id (string) -> {audio: MediaStreamTrack|null, video: MediaStreamTrack|null} */
    this.remote = new Map();
    this.trackOwner = new Map(); // MediaStreamTrack -> participant id
    this.watchedStreams = new WeakSet();
    this.watchedTracks = new WeakSet();
  }

  /**
   * Creates the peer connection with its two sendonly transceivers (no tracks yet: `setSending` attaches
   * them when the devices are open) and prepares the one client offer. Can run
   * while the `join` request is still out; `sendOffer` sends it once the server has said `joined`.
   */
  prepare({ receiveOnly = false } = {}) {
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    if (receiveOnly) {
      // A viewer publishes nothing: recvonly m-lines only carry the transport (the server's own offers
      // add everyone's tracks), and the server publishes no tracks for them.
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
    } else {
      const stream = this.local.stream;
      this.audioTx = pc.addTransceiver('audio', { direction: 'sendonly', streams: [stream] });
      this.videoTx = pc.addTransceiver('video', { direction: 'sendonly', streams: [stream] });
    }

    pc.addEventListener('track', (ev) => this.onTrack(ev));
    pc.addEventListener('connectionstatechange', () => {
      this.dispatchEvent(new CustomEvent('connectionstate', { detail: pc.connectionState }));
    });

    return this.enqueue(async () => {
      // The offer goes without waiting for ICE gathering: the server is ICE-lite and learns our
      // address from our connectivity checks (a peer-reflexive candidate), so our candidates would
      // only add the gathering time to the join.
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
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

  /** A server offer: other participants' tracks came or went. */
  handleOffer(sdp) {
    return this.enqueue(async () => {
      const pc = this.pc;
      if (!pc || pc.signalingState === 'closed') return;
      await pc.setRemoteDescription({ type: 'offer', sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      if (this.closed) return;
      this.signal.send({ type: 'answer', sdp: pc.localDescription.sdp });
    });
  }

  /** Sends `track` (or nothing, when null) on the audio or video transceiver without renegotiating. */
  async setSending(kind, track) {
    const tx = kind === 'audio' ? this.audioTx : this.videoTx;
    if (!tx || this.closed) return;
    await tx.sender.replaceTrack(track || null);
  }

  onTrack(ev) {
    const stream = ev.streams && ev.streams[0];
    if (!stream) {
      console.warn('[parley] incoming track without a stream id, cannot tell whose it is', ev.track.kind);
      return;
    }
    const pid = String(stream.id);
    this.assign(pid, ev.track);
    if (!this.watchedStreams.has(stream)) {
      this.watchedStreams.add(stream);
      stream.addEventListener('removetrack', (e) => this.unassign(String(stream.id), e.track));
    }
  }

  entry(pid) {
    let e = this.remote.get(pid);
    if (!e) {
      e = { audio: null, video: null };
      this.remote.set(pid, e);
    }
    return e;
  }

  assign(pid, track) {
    const kind = track.kind === 'audio' ? 'audio' : 'video';
    const prev = this.trackOwner.get(track);
    if (prev !== undefined && prev !== pid) this.unassign(prev, track);
    const e = this.entry(pid);
    if (e[kind] === track) return;
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
    for (const kind of ['audio', 'video']) {
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
    for (const t of [e.audio, e.video]) if (t && this.trackOwner.get(t) === pid) this.trackOwner.delete(t);
    this.remote.delete(pid);
  }

  emitRemote(pid) {
    this.dispatchEvent(new CustomEvent('remote', { detail: { pid } }));
  }

  /** The RTCRtpReceiver currently carrying `kind` from participant `pid`, if any. */
  receiverFor(pid, kind) {
    const e = this.remote.get(String(pid));
    const track = e && e[kind];
    if (!track || !this.pc) return null;
    const tr = this.pc.getTransceivers().find((t) => t.receiver.track === track);
    return tr ? tr.receiver : null;
  }

  close() {
    this.closed = true;
    if (this.answerWaiter) this.answerWaiter = null;
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
