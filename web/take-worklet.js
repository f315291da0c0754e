// The audio thread's half of a studio take (take-recorder.js is the page's half): registered as
// 'parley-take'. It copies every input frame, exactly as Web Audio delivers it (Float32, interleaved when
// there are 2 channels), into blocks that go to the page with their buffers transferred, not copied. The
// page sends used blocks back ('recycle') so that a steady take allocates nothing on the audio thread.
//
// Messages from the page: {type: 'start'}, {type: 'stop'}, {type: 'recycle', buffer: Float32Array}.
// To the page:
//   {type: 'started', frame, time, sampleRate}: take frame 0 is context frame `frame` (its currentFrame
//     then) at context time `time`, so the page can tell when sample 0 was captured;
//   {type: 'block', first, frames, data}: `frames` frames from take frame `first` (data: Float32Array of
//     frames × channels, possibly longer: only the first frames × channels values count);
//   {type: 'stopped', frames}: the last block has gone; `frames` were recorded in all.
// Quanta without input (the source not running yet or gone) are recorded as silence, so that frame n of
// the take is always context frame `frame + n`: the take's timeline never skips.

const DEFAULT_BLOCK_FRAMES = 3840; // 30 render quanta: 80 ms at 48 kHz

class TakeProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.channels = o.channels === 2 ? 2 : 1;
    this.blockFrames = Number.isInteger(o.blockFrames) && o.blockFrames >= 128 ? o.blockFrames : DEFAULT_BLOCK_FRAMES;
    this.free = [];
    this.block = null;
    this.fill = 0; // frames in the current block
    this.first = 0; // take frame of the current block's first frame
    this.recording = false;
    this.startPending = false; // 'started' goes with the first recorded quantum
    this.done = false;
    this.port.onmessage = (ev) => this.onMessage(ev.data || {});
  }

  onMessage(msg) {
    if (msg.type === 'start' && !this.recording && !this.done) {
      this.recording = true;
      this.startPending = true;
    } else if (msg.type === 'stop' && this.recording) {
      // Message handlers run between render quanta: the block holds whole quanta only.
      if (this.block && this.fill > 0) this.send();
      this.recording = false;
      this.done = true;
      this.port.postMessage({ type: 'stopped', frames: this.first });
    } else if (msg.type === 'recycle' && msg.buffer instanceof Float32Array && msg.buffer.length === this.blockFrames * this.channels) {
      if (this.free.length < 8) this.free.push(msg.buffer);
    }
  }

  newBlock() {
    this.block = this.free.pop() || new Float32Array(this.blockFrames * this.channels);
    this.fill = 0;
  }

  send() {
    const data = this.block;
    this.port.postMessage({ type: 'block', first: this.first, frames: this.fill, data }, [data.buffer]);
    this.first += this.fill;
    this.block = null;
    this.fill = 0;
  }

  process(inputs) {
    if (this.done) return false;
    if (!this.recording) return true;
    if (this.startPending) {
      this.startPending = false;
      // currentFrame / currentTime: the first frame of this render quantum, which becomes take frame 0.
      this.port.postMessage({ type: 'started', frame: currentFrame, time: currentTime, sampleRate });
    }
    const input = inputs[0] || [];
    const ch0 = input[0];
    const ch1 = this.channels === 2 ? input[1] || ch0 : null;
    const frames = ch0 ? ch0.length : 128;
    let done = 0;
    while (done < frames) {
      if (!this.block) this.newBlock();
      const n = Math.min(frames - done, this.blockFrames - this.fill);
      const buf = this.block;
      if (this.channels === 1) {
        if (ch0) buf.set(done === 0 && n === ch0.length ? ch0 : ch0.subarray(done, done + n), this.fill);
        else buf.fill(0, this.fill, this.fill + n);
      } else {
        let j = this.fill * 2;
        for (let i = done; i < done + n; i++) {
          buf[j++] = ch0 ? ch0[i] : 0;
          buf[j++] = ch1 ? ch1[i] : 0;
        }
      }
      this.fill += n;
      done += n;
      if (this.fill === this.blockFrames) this.send();
    }
    return true;
  }
}

registerProcessor('parley-take', TakeProcessor);
