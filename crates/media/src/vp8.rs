//! VP8 frames put back together from RTP (RFC 7741), without decoding: a frame starts at a packet whose
//! payload descriptor has S set and partition 0, and ends at the marker bit (or where the timestamp
//! changes). A frame with a packet missing is dropped, not passed on broken.

use crate::av_mux::{Depacketizer, DepacketizerCounts, VideoFrame};
use crate::track::TrackPacket;

/// Largest frame assembled; a longer run of packets is a corrupt journal.
pub const MAX_FRAME: usize = 8 << 20;

/// Reads the payload descriptor: whether this packet starts a frame, and the VP8 data after it.
pub fn parse_descriptor(payload: &[u8]) -> Option<(bool, &[u8])> {
    let first = *payload.first()?;
    let start = first & 0x10 != 0 && first & 0x07 == 0;
    let mut at = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(at)?;
        at += 1;
        if ext & 0x80 != 0 {
            // Picture id: 7 bits, or 15 with the M bit.
            at += if *payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID / Y / KEYIDX
        }
    }
    Some((start, payload.get(at..)?))
}

/// A keyframe has the P bit (inverse key frame flag) of its frame tag clear.
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// A keyframe's width and height (after its 3-byte frame tag and start code `9d 01 2a`).
pub fn keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if !is_keyframe(frame) || frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([*frame.get(6)?, *frame.get(7)?]) & 0x3fff;
    let h = u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff;
    (w > 0 && h > 0).then_some((w, h))
}

/// One whole VP8 frame on the session clock.
pub type Vp8Frame = VideoFrame;

/// A frame's identity: segment and timestamp.
type FrameId = (usize, i64);

struct Building {
    segment: usize,
    ts: i64,
    session_us: f64,
    next_seq: i64,
    data: Vec<u8>,
    broken: bool,
}

/// Assembles frames from a track's packets in order.
#[derive(Default)]
pub struct Vp8Depacketizer {
    building: Option<Building>,
    /// The frame whose start was missing (its other packets are skipped).
    headless: Option<FrameId>,
    pub frames: u64,
    /// Frames dropped because a packet of theirs was missing (or their start, or their end).
    pub incomplete: u64,
    /// Packets whose payload descriptor could not be read.
    pub malformed: u64,
}

impl Vp8Depacketizer {
    pub fn new() -> Vp8Depacketizer {
        Vp8Depacketizer::default()
    }

    /// Takes the next packet; returns a frame when this packet completes one.
    pub fn push(&mut self, p: &TrackPacket) -> Option<VideoFrame> {
        let Some((start, data)) = parse_descriptor(&p.payload) else {
            self.malformed += 1;
            if let Some(b) = &mut self.building {
                b.broken = true;
            }
            return None;
        };
        if self
            .building
            .as_ref()
            .is_some_and(|b| b.ts != p.ts || b.segment != p.segment || start)
        {
            // The frame being built never saw its marker.
            self.building = None;
            self.incomplete += 1;
        }
        if start {
            self.building = Some(Building {
                segment: p.segment,
                ts: p.ts,
                session_us: p.session_us,
                next_seq: p.seq,
                data: Vec::new(),
                broken: false,
            });
        }
        let Some(b) = self.building.as_mut() else {
            if self.headless != Some((p.segment, p.ts)) {
                self.headless = Some((p.segment, p.ts));
                self.incomplete += 1;
            }
            return None;
        };
        if p.seq != b.next_seq || b.data.len() + data.len() > MAX_FRAME {
            b.broken = true;
        }
        b.next_seq = p.seq + 1;
        b.data.extend_from_slice(data);
        if !p.marker {
            return None;
        }
        let b = self.building.take()?;
        if b.broken || b.data.is_empty() {
            self.incomplete += 1;
            return None;
        }
        self.frames += 1;
        Some(VideoFrame {
            session_us: b.session_us,
            ts: b.ts,
            keyframe: is_keyframe(&b.data),
            data: b.data,
        })
    }

    /// The track ended: a frame still open is incomplete.
    pub fn finish(&mut self) {
        if self.building.take().is_some() {
            self.incomplete += 1;
        }
    }
}

impl Depacketizer for Vp8Depacketizer {
    fn push(&mut self, p: &TrackPacket) -> Option<VideoFrame> {
        Vp8Depacketizer::push(self, p)
    }

    fn finish(&mut self) -> Option<VideoFrame> {
        Vp8Depacketizer::finish(self);
        None
    }

    fn counts(&self) -> DepacketizerCounts {
        DepacketizerCounts {
            incomplete: self.incomplete,
            malformed: self.malformed,
            after_loss: 0,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal VP8 frame: a keyframe's tag, start code and size, or an inter frame's tag; `fill`
    /// bytes of made-up data after.
    pub(crate) fn frame(keyframe: bool, width: u16, height: u16, fill: usize, tag: u8) -> Vec<u8> {
        let mut f = if keyframe {
            let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
            f.extend_from_slice(&width.to_le_bytes());
            f.extend_from_slice(&height.to_le_bytes());
            f
        } else {
            vec![0x11, 0x02, 0x00]
        };
        f.extend(std::iter::repeat_n(tag, fill));
        f
    }

    /// RTP payloads (descriptor + data) of `frame` split into `parts`, with a 15-bit picture id.
    pub(crate) fn packetize(frame: &[u8], parts: usize, picture_id: u16) -> Vec<Vec<u8>> {
        let size = frame.len().div_ceil(parts);
        frame
            .chunks(size)
            .enumerate()
            .map(|(i, chunk)| {
                let mut p = vec![0x80 | if i == 0 { 0x10 } else { 0 }, 0x80];
                p.extend_from_slice(&(0x8000 | picture_id).to_be_bytes());
                p.extend_from_slice(chunk);
                p
            })
            .collect()
    }

    use crate::testutil::video_packet as packet;

    #[test]
    fn descriptors() {
        assert_eq!(parse_descriptor(&[0x10, 1, 2]), Some((true, &[1u8, 2][..])));
        assert_eq!(
            parse_descriptor(&[0x11, 1]),
            Some((false, &[1u8][..])),
            "partition 1"
        );
        assert_eq!(parse_descriptor(&[0x00, 1]), Some((false, &[1u8][..])));
        // X with I (7-bit id), L, T/K.
        assert_eq!(
            parse_descriptor(&[0x90, 0xf0, 0x05, 0x07, 0x20, 9]),
            Some((true, &[9u8][..]))
        );
        // X with a 15-bit picture id.
        assert_eq!(
            parse_descriptor(&[0x90, 0x80, 0x81, 0x02, 9]),
            Some((true, &[9u8][..]))
        );
        assert_eq!(parse_descriptor(&[]), None);
        assert_eq!(
            parse_descriptor(&[0x90, 0x80, 0x81]),
            None,
            "cut picture id"
        );
        assert_eq!(parse_descriptor(&[0x90]), None);
        let key = frame(true, 640, 360, 5, 0);
        assert!(is_keyframe(&key));
        assert_eq!(keyframe_size(&key), Some((640, 360)));
        let inter = frame(false, 0, 0, 5, 0);
        assert!(!is_keyframe(&inter));
        assert_eq!(keyframe_size(&inter), None);
        assert_eq!(keyframe_size(&[0x10]), None);
    }

    #[test]
    fn frames_are_assembled_and_broken_ones_dropped() {
        let mut d = Vp8Depacketizer::new();
        let key = frame(true, 320, 240, 3_000, 7);
        let parts = packetize(&key, 3, 1);
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            out.extend(d.push(&packet(10 + i as i64, 0, i == 2, p.clone())));
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, key);
        assert!(out[0].keyframe);
        // The next frame loses its middle packet: dropped.
        let inter = frame(false, 0, 0, 2_000, 8);
        let parts = packetize(&inter, 3, 2);
        out.extend(d.push(&packet(13, 3_000, false, parts[0].clone())));
        out.extend(d.push(&packet(15, 3_000, true, parts[2].clone())));
        assert_eq!((out.len(), d.incomplete), (1, 1));
        // A frame whose marker was lost ends when the next one starts.
        let parts = packetize(&inter, 2, 3);
        out.extend(d.push(&packet(16, 6_000, false, parts[0].clone())));
        let parts = packetize(&inter, 1, 4);
        out.extend(d.push(&packet(18, 9_000, true, parts[0].clone())));
        assert_eq!((out.len(), d.incomplete), (2, 2));
        assert_eq!(out[1].data, inter);
        assert!(!out[1].keyframe);
        // A frame without its start is dropped; garbage is counted.
        out.extend(d.push(&packet(20, 12_000, false, vec![0x00, 1, 2])));
        out.extend(d.push(&packet(21, 12_000, true, vec![0x00, 3])));
        assert_eq!((out.len(), d.incomplete), (2, 3));
        out.extend(d.push(&packet(22, 15_000, true, vec![])));
        assert_eq!((out.len(), d.malformed), (2, 1));
        out.extend(d.push(&packet(23, 18_000, false, parts[0].clone())));
        d.finish();
        assert_eq!((out.len(), d.incomplete, d.frames), (2, 4, 2));
    }
}
