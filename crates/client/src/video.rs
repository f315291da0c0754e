//! Synthetic VP8 video: frames shaped like VP8 (a valid frame tag, keyframes with the start code and
//! size fields) filled with deterministic filler at a target bitrate. An SFU forwards them like real
//! video; a decoder would not show anything sensible.

use crate::audio::Rng;

/// Makes VP8-shaped frames at a steady rate and bitrate.
#[derive(Debug, Clone)]
pub struct SyntheticVp8 {
    pub fps: u32,
    pub bitrate_bps: u32,
    /// A keyframe every this many frames (and whenever one is asked for).
    pub keyframe_interval: u32,
    pub width: u16,
    pub height: u16,
    frame: u64,
    since_key: u32,
    want_key: bool,
    rng: Rng,
}

/// One frame to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Index of the frame since the start.
    pub index: u64,
}

impl SyntheticVp8 {
    pub fn new(seed: u64, fps: u32, bitrate_bps: u32) -> SyntheticVp8 {
        let fps = fps.clamp(1, 120);
        SyntheticVp8 {
            fps,
            bitrate_bps,
            keyframe_interval: fps * 4,
            width: 640,
            height: 360,
            frame: 0,
            since_key: 0,
            want_key: true,
            rng: Rng::new(seed ^ 0x0056_5038),
        }
    }

    /// The next frame is a keyframe (a receiver asked for one).
    pub fn request_keyframe(&mut self) {
        self.want_key = true;
    }

    /// Time between frames, in 90 kHz RTP units.
    pub fn rtp_step(&self) -> u64 {
        90_000 / u64::from(self.fps)
    }

    pub fn frame_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1) / self.fps
    }

    /// Sizes that keep the average at the target bitrate: keyframes are four times a delta frame.
    fn sizes(&self) -> (usize, usize) {
        let per_frame = (f64::from(self.bitrate_bps) / 8.0 / f64::from(self.fps)).max(64.0);
        let n = f64::from(self.keyframe_interval.max(1));
        let delta = per_frame * n / (n + 3.0);
        ((delta * 4.0) as usize, (delta as usize).max(16))
    }

    pub fn next_frame(&mut self) -> VideoFrame {
        let keyframe = self.want_key || self.since_key >= self.keyframe_interval;
        let (key_size, delta_size) = self.sizes();
        let size = if keyframe { key_size } else { delta_size };
        // Some frame-to-frame variation, as an encoder would have (±10 %).
        let size = ((size as f64) * self.rng.range(0.9, 1.1)) as usize;
        let data = vp8_frame(keyframe, size, self.width, self.height, &mut self.rng);
        if keyframe {
            self.want_key = false;
            self.since_key = 1;
        } else {
            self.since_key += 1;
        }
        let index = self.frame;
        self.frame += 1;
        VideoFrame {
            data,
            keyframe,
            index,
        }
    }
}

/// A VP8 frame of `size` bytes (RFC 6386 §9.1): the 3-byte frame tag (keyframe flag, version 0, shown,
/// first partition size), for keyframes the start code 9d 01 2a and 14-bit width and height, then filler.
pub fn vp8_frame(keyframe: bool, size: usize, width: u16, height: u16, rng: &mut Rng) -> Vec<u8> {
    let header = if keyframe { 10 } else { 3 };
    let size = size.max(header + 8);
    // The first partition takes part of the rest; it must fit in 19 bits.
    let first_part = ((size - header) / 4).min((1 << 19) - 1) as u32;
    // Bit 0: frame type (0 = key frame); bits 1-3: version 0; bit 4: show_frame; then the size.
    let tag: u32 = u32::from(!keyframe) | (1 << 4) | (first_part << 5);
    let mut d = Vec::with_capacity(size);
    d.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        d.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        d.extend_from_slice(&(width & 0x3fff).to_le_bytes());
        d.extend_from_slice(&(height & 0x3fff).to_le_bytes());
    }
    while d.len() < size {
        d.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    d.truncate(size);
    d
}

/// Whether `data` starts like a VP8 keyframe.
pub fn is_vp8_keyframe(data: &[u8]) -> bool {
    data.len() >= 10 && data[0] & 1 == 0 && data[3..6] == [0x9d, 0x01, 0x2a]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_vp8_headers_and_the_bitrate() {
        let mut v = SyntheticVp8::new(1, 15, 500_000);
        let frames: Vec<_> = (0..150).map(|_| v.next_frame()).collect();
        assert!(frames[0].keyframe && is_vp8_keyframe(&frames[0].data));
        assert!(!frames[1].keyframe && !is_vp8_keyframe(&frames[1].data));
        assert_eq!(frames.iter().filter(|f| f.keyframe).count(), 3);
        let bits: usize = frames.iter().map(|f| f.data.len() * 8).sum();
        let bps = bits as f64 / 10.0;
        assert!((450_000.0..550_000.0).contains(&bps), "{bps}");
        // Width and height fields.
        assert_eq!(
            u16::from_le_bytes([frames[0].data[6], frames[0].data[7]]),
            640
        );
        v.request_keyframe();
        assert!(v.next_frame().keyframe);
    }
}
