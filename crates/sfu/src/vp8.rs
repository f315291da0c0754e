//! The VP8 RTP payload descriptor (RFC 7741 §4.2) and the rewriting a layer switch needs.
//!
//! With simulcast each layer is its own VP8 stream, with its own PictureID and TL0PICIDX counters.
//! A subscriber must see one stream: a decoder that sees the picture id jump (or go back) after a
//! layer switch takes it for loss and asks for a keyframe, or drops frames. So every forwarded
//! packet gets the subscriber's numbering written over the publisher's, in place (no copy, same
//! field width so the payload keeps its length).
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |X|R|N|S|R| PID | (required)
//!      +-+-+-+-+-+-+-+-+
//!  X:  |I|L|T|K| RSV   |
//!      +-+-+-+-+-+-+-+-+
//!  I:  |M| PictureID   | (15 bits with M, 7 without)
//!      +-+-+-+-+-+-+-+-+
//!  M:  |   PictureID   |
//!      +-+-+-+-+-+-+-+-+
//!  L:  |   TL0PICIDX   |
//!      +-+-+-+-+-+-+-+-+
//! T/K: |TID|Y| KEYIDX  |
//!      +-+-+-+-+-+-+-+-+
//! ```

use std::fmt;

/// Why a packet cannot be parsed or rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vp8Error {
    /// The payload ends inside the descriptor, or has nothing after it.
    Truncated,
    /// The packet belongs to a picture from before the current run of numbering (before the last
    /// layer switch or pause): every id it could get is already taken. Drop it.
    Stale,
}

impl fmt::Display for Vp8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vp8Error::Truncated => f.write_str("truncated VP8 payload descriptor"),
            Vp8Error::Stale => f.write_str("VP8 packet from before the current layer"),
        }
    }
}

impl std::error::Error for Vp8Error {}

/// A PictureID and the width it was sent with (which a rewrite keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureId {
    pub value: u16,
    /// 15 bits (M=1) rather than 7.
    pub long: bool,
}

impl PictureId {
    /// Where the counter wraps: 32 768 for 15 bits, 128 for 7.
    pub fn modulus(self) -> u16 {
        if self.long {
            1 << 15
        } else {
            1 << 7
        }
    }
}

/// The parsed descriptor of one packet. Values only; it does not borrow the payload, and keeps
/// where the rewritable fields are so that writing them is O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// N: no other frame references this one (it can be dropped).
    pub non_reference: bool,
    /// S: the packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition index (0..=7).
    pub partition_index: u8,
    pub picture_id: Option<PictureId>,
    pub tl0_pic_idx: Option<u8>,
    /// TID, when T is set.
    pub temporal_id: Option<u8>,
    /// Y: layer sync (only meaningful with T).
    pub layer_sync: bool,
    /// KEYIDX, when K is set.
    pub key_index: Option<u8>,
    /// The packet starts a keyframe: S=1, PID=0 and the VP8 payload header's P bit is 0.
    pub keyframe: bool,
    /// Bytes of descriptor; the VP8 payload starts here.
    pub header_len: usize,
    picture_id_at: usize,
    tl0_at: usize,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of an RTP payload. Never panics; a payload that ends
    /// inside the descriptor or carries no VP8 data after it is [`Vp8Error::Truncated`].
    pub fn parse(payload: &[u8]) -> Result<Vp8Descriptor, Vp8Error> {
        let byte = |at: usize| payload.get(at).copied().ok_or(Vp8Error::Truncated);
        let first = byte(0)?;
        let mut d = Vp8Descriptor {
            non_reference: first & 0x20 != 0,
            start_of_partition: first & 0x10 != 0,
            partition_index: first & 0x07,
            picture_id: None,
            tl0_pic_idx: None,
            temporal_id: None,
            layer_sync: false,
            key_index: None,
            keyframe: false,
            header_len: 1,
            picture_id_at: 0,
            tl0_at: 0,
        };
        if first & 0x80 != 0 {
            let x = byte(1)?;
            let mut at = 2;
            if x & 0x80 != 0 {
                let b = byte(at)?;
                d.picture_id_at = at;
                if b & 0x80 != 0 {
                    let low = byte(at + 1)?;
                    d.picture_id = Some(PictureId {
                        value: u16::from(b & 0x7f) << 8 | u16::from(low),
                        long: true,
                    });
                    at += 2;
                } else {
                    d.picture_id = Some(PictureId {
                        value: u16::from(b),
                        long: false,
                    });
                    at += 1;
                }
            }
            if x & 0x40 != 0 {
                d.tl0_at = at;
                d.tl0_pic_idx = Some(byte(at)?);
                at += 1;
            }
            // One byte carries TID/Y and KEYIDX, present when either T or K is set.
            if x & 0x30 != 0 {
                let b = byte(at)?;
                if x & 0x20 != 0 {
                    d.temporal_id = Some(b >> 6);
                    d.layer_sync = b & 0x20 != 0;
                }
                if x & 0x10 != 0 {
                    d.key_index = Some(b & 0x1f);
                }
                at += 1;
            }
            d.header_len = at;
        }
        // The first byte of the VP8 payload; in the first packet of a frame it is the payload
        // header, whose lowest bit P is 0 for a keyframe (RFC 6386 §9.1).
        let vp8 = byte(d.header_len)?;
        d.keyframe = d.start_of_partition && d.partition_index == 0 && vp8 & 0x01 == 0;
        Ok(d)
    }

    /// Writes `value` (taken modulo the field's width) as the PictureID of `payload`, the buffer
    /// this descriptor was parsed from. Nothing happens when the packet has no PictureID.
    pub fn write_picture_id(&self, payload: &mut [u8], value: u16) -> Result<(), Vp8Error> {
        let Some(id) = self.picture_id else {
            return Ok(());
        };
        if id.long {
            let field = payload
                .get_mut(self.picture_id_at..self.picture_id_at + 2)
                .ok_or(Vp8Error::Truncated)?;
            field[0] = 0x80 | ((value >> 8) as u8 & 0x7f);
            field[1] = value as u8;
        } else {
            let field = payload
                .get_mut(self.picture_id_at)
                .ok_or(Vp8Error::Truncated)?;
            *field = value as u8 & 0x7f;
        }
        Ok(())
    }

    /// Writes `value` as the TL0PICIDX of `payload`; nothing happens when the packet has none.
    pub fn write_tl0_pic_idx(&self, payload: &mut [u8], value: u8) -> Result<(), Vp8Error> {
        if self.tl0_pic_idx.is_none() {
            return Ok(());
        }
        let field = payload.get_mut(self.tl0_at).ok_or(Vp8Error::Truncated)?;
        *field = value;
        Ok(())
    }
}

/// Whether an RTP payload starts a VP8 keyframe (false for anything unparseable).
pub fn is_keyframe(payload: &[u8]) -> bool {
    Vp8Descriptor::parse(payload).is_ok_and(|d| d.keyframe)
}

/// One counter (PictureID or TL0PICIDX) of one subscriber's stream: the publisher's values of the
/// current run, unwrapped, plus an offset onto ours.
#[derive(Debug, Clone, Default)]
struct Continuity {
    /// Highest value sent so far, unwrapped (our numbering).
    last_out: Option<i64>,
    run: Option<Run>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    /// The run's first and highest publisher values, unwrapped.
    start: i64,
    last: i64,
    /// Added to the publisher's unwrapped value.
    offset: i64,
}

impl Continuity {
    /// The next value starts a new run (a layer switch or a resume): it follows the last one sent.
    fn restart(&mut self) {
        self.run = None;
    }

    fn map(&mut self, value: u16, modulus: u16) -> Result<u16, Vp8Error> {
        let modulus = i64::from(modulus);
        let value = i64::from(value) % modulus;
        let (ext, offset) = match &mut self.run {
            None => {
                // A new picture of a new run: one past the last sent. The first run keeps the
                // publisher's values.
                let offset = self.last_out.map_or(0, |last| last + 1 - value);
                self.run = Some(Run {
                    start: value,
                    last: value,
                    offset,
                });
                (value, offset)
            }
            Some(run) => {
                // Nearest unwrapped value to the run's newest: within half the counter either way.
                let mut diff = (value - run.last).rem_euclid(modulus);
                if diff >= modulus / 2 {
                    diff -= modulus;
                }
                let ext = run.last + diff;
                if ext < run.start {
                    return Err(Vp8Error::Stale);
                }
                run.last = run.last.max(ext);
                (ext, run.offset)
            }
        };
        let out = ext + offset;
        self.last_out = Some(self.last_out.map_or(out, |last| last.max(out)));
        Ok(out.rem_euclid(modulus) as u16)
    }
}

/// Keeps one subscriber's PictureID and TL0PICIDX continuous for one published video track across
/// layer switches and pauses.
///
/// Feed it, in arrival order, only the packets forwarded to the subscriber, each with the source
/// layer it came from; the caller switches `source` at a keyframe of the new layer (the first
/// packet it passes from the new layer should be that keyframe's first). The new layer's first
/// picture then goes out as the last picture id sent + 1 (TL0PICIDX likewise), and later ones
/// follow the new layer's own steps; packets of one picture share its id, late packets within the
/// current layer get the id their picture got. Packets from before the switch are
/// [`Vp8Error::Stale`]: they would reuse ids of the old layer.
#[derive(Debug, Clone, Default)]
pub struct Vp8Rewriter {
    source: Option<u32>,
    picture_id: Continuity,
    tl0: Continuity,
}

impl Vp8Rewriter {
    pub fn new() -> Vp8Rewriter {
        Vp8Rewriter::default()
    }

    /// Packets are held back from now on (mute, camera off): the next one continues our numbering
    /// even if it comes from the same layer.
    pub fn pause(&mut self) {
        self.picture_id.restart();
        self.tl0.restart();
    }

    /// The subscriber's PictureID and TL0PICIDX for a packet of `source` (any number naming the
    /// layer's stream, e.g. its SSRC) with descriptor `desc`; `None` where the packet has no such
    /// field. Updates the numbering state.
    pub fn map(
        &mut self,
        source: u32,
        desc: &Vp8Descriptor,
    ) -> Result<(Option<u16>, Option<u8>), Vp8Error> {
        if self.source != Some(source) {
            self.source = Some(source);
            self.pause();
        }
        let picture_id = match desc.picture_id {
            Some(id) => Some(self.picture_id.map(id.value, id.modulus())?),
            None => None,
        };
        let tl0 = match desc.tl0_pic_idx {
            Some(idx) => Some(self.tl0.map(u16::from(idx), 256)? as u8),
            None => None,
        };
        Ok((picture_id, tl0))
    }

    /// Parses `payload` (a packet of `source`) and writes the subscriber's numbering into it in
    /// place. Returns the descriptor with the values now in the payload. On error the payload is
    /// unchanged and should not be forwarded.
    pub fn rewrite(&mut self, source: u32, payload: &mut [u8]) -> Result<Vp8Descriptor, Vp8Error> {
        let mut desc = Vp8Descriptor::parse(payload)?;
        let (picture_id, tl0) = self.map(source, &desc)?;
        if let Some(value) = picture_id {
            desc.write_picture_id(payload, value)?;
            if let Some(id) = desc.picture_id.as_mut() {
                id.value = value;
            }
        }
        if let Some(value) = tl0 {
            desc.write_tl0_pic_idx(payload, value)?;
            desc.tl0_pic_idx = Some(value);
        }
        Ok(desc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet: descriptor fields then one VP8 payload byte (`p` is its P bit: 1 = interframe).
    fn packet(s: bool, pid: Option<(u16, bool)>, tl0: Option<u8>, p: u8) -> Vec<u8> {
        let mut out = vec![if s { 0x10 } else { 0x00 }];
        if pid.is_some() || tl0.is_some() {
            out[0] |= 0x80;
            let mut x = 0;
            if pid.is_some() {
                x |= 0x80;
            }
            if tl0.is_some() {
                x |= 0x40 | 0x20; // L requires T
            }
            out.push(x);
            match pid {
                Some((v, true)) => out.extend([0x80 | (v >> 8) as u8, v as u8]),
                Some((v, false)) => out.push(v as u8 & 0x7f),
                None => {}
            }
            if let Some(t) = tl0 {
                out.push(t);
                out.push(0x00); // TID 0
            }
        }
        out.push(p);
        out
    }

    #[test]
    fn parses_the_minimal_descriptor() {
        let d = Vp8Descriptor::parse(&[0x10, 0x00]).unwrap();
        assert!(d.start_of_partition && !d.non_reference);
        assert_eq!(d.partition_index, 0);
        assert_eq!(d.picture_id, None);
        assert_eq!(d.tl0_pic_idx, None);
        assert_eq!(d.header_len, 1);
        assert!(d.keyframe);

        let d = Vp8Descriptor::parse(&[0x25, 0xaa, 0xbb]).unwrap();
        assert!(d.non_reference && !d.start_of_partition);
        assert_eq!(d.partition_index, 5);
        assert!(!d.keyframe);
    }

    #[test]
    fn parses_7_and_15_bit_picture_ids() {
        let d = Vp8Descriptor::parse(&[0x90, 0x80, 0x55, 0x01]).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x55,
                long: false
            })
        );
        assert_eq!(d.header_len, 3);
        assert_eq!(d.picture_id.unwrap().modulus(), 128);

        let d = Vp8Descriptor::parse(&[0x90, 0x80, 0x81, 0x23, 0x01]).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x0123,
                long: true
            })
        );
        assert_eq!(d.header_len, 4);
        assert_eq!(d.picture_id.unwrap().modulus(), 32_768);
    }

    #[test]
    fn parses_tl0picidx_tid_y_and_keyidx() {
        // X, I (15-bit 0x7fff), L, T, K; TL0PICIDX 200; TID 2, Y, KEYIDX 17.
        let buf = [0x90, 0xf0, 0xff, 0xff, 200, 0b1011_0001, 0x9d];
        let d = Vp8Descriptor::parse(&buf).unwrap();
        assert_eq!(d.picture_id.map(|p| p.value), Some(0x7fff));
        assert_eq!(d.tl0_pic_idx, Some(200));
        assert_eq!(d.temporal_id, Some(2));
        assert!(d.layer_sync);
        assert_eq!(d.key_index, Some(17));
        assert_eq!(d.header_len, 6);
        assert!(!d.keyframe, "P=1 in 0x9d");

        // T without K: no KEYIDX; K without T: no TID; either takes the byte.
        let d = Vp8Descriptor::parse(&[0x80, 0x20, 0x40, 0x00]).unwrap();
        assert_eq!(
            (d.temporal_id, d.key_index, d.layer_sync),
            (Some(1), None, false)
        );
        let d = Vp8Descriptor::parse(&[0x80, 0x10, 0x45, 0x00]).unwrap();
        assert_eq!((d.temporal_id, d.key_index), (None, Some(5)));
        assert_eq!(d.header_len, 3);
        // X with no optional fields at all.
        let d = Vp8Descriptor::parse(&[0x90, 0x00, 0x00]).unwrap();
        assert_eq!(d.header_len, 2);
        assert!(d.keyframe);
    }

    #[test]
    fn detects_keyframes() {
        assert!(is_keyframe(&packet(true, Some((5, true)), Some(1), 0)));
        assert!(
            !is_keyframe(&packet(true, Some((5, true)), Some(1), 1)),
            "P=1"
        );
        assert!(
            !is_keyframe(&packet(false, Some((5, true)), Some(1), 0)),
            "S=0"
        );
        // S=1 but partition 1: the byte after the descriptor is not the payload header.
        assert!(!is_keyframe(&[0x11, 0x00]));
        assert!(!is_keyframe(&[]));
        assert!(!is_keyframe(&[0x10]), "nothing after the descriptor");
    }

    #[test]
    fn truncated_descriptors_are_errors() {
        for buf in [
            &[][..],
            &[0x80],
            &[0x80, 0x80],
            &[0x80, 0x80, 0x81],
            &[0x80, 0x40],
            &[0x80, 0x20],
            &[0x80, 0xe0, 0x01, 0x02],
            &[0x80, 0xe0, 0x81, 0x01, 0x02, 0x00],
        ] {
            assert_eq!(
                Vp8Descriptor::parse(buf),
                Err(Vp8Error::Truncated),
                "{buf:02x?}"
            );
        }
    }

    #[test]
    fn rewrites_in_place_keeping_the_width() {
        let mut buf = packet(true, Some((0x1234, true)), Some(7), 0);
        let d = Vp8Descriptor::parse(&buf).unwrap();
        d.write_picture_id(&mut buf, 0x7ffe).unwrap();
        d.write_tl0_pic_idx(&mut buf, 255).unwrap();
        let again = Vp8Descriptor::parse(&buf).unwrap();
        assert_eq!(
            again.picture_id,
            Some(PictureId {
                value: 0x7ffe,
                long: true
            })
        );
        assert_eq!(again.tl0_pic_idx, Some(255));
        assert_eq!(again.header_len, d.header_len);
        assert!(again.keyframe);
        // Values beyond the width wrap: 32 768 + 3 → 3 in 15 bits.
        d.write_picture_id(&mut buf, 0x8003).unwrap();
        assert_eq!(
            Vp8Descriptor::parse(&buf)
                .unwrap()
                .picture_id
                .unwrap()
                .value,
            3
        );

        let mut buf = packet(false, Some((100, false)), None, 1);
        let d = Vp8Descriptor::parse(&buf).unwrap();
        d.write_picture_id(&mut buf, 130).unwrap();
        let again = Vp8Descriptor::parse(&buf).unwrap();
        assert_eq!(
            again.picture_id,
            Some(PictureId {
                value: 2,
                long: false
            }),
            "7 bits wrap at 128, M stays 0"
        );
        // A packet without the fields is left alone.
        let mut buf = packet(true, None, None, 0);
        let before = buf.clone();
        let d = Vp8Descriptor::parse(&buf).unwrap();
        d.write_picture_id(&mut buf, 9).unwrap();
        d.write_tl0_pic_idx(&mut buf, 9).unwrap();
        assert_eq!(buf, before);
        // A shorter buffer than the one parsed is an error, not a panic.
        let d = Vp8Descriptor::parse(&packet(true, Some((1, true)), None, 0)).unwrap();
        assert_eq!(
            d.write_picture_id(&mut [0x90, 0x80, 0x81], 5),
            Err(Vp8Error::Truncated)
        );
    }

    /// Feeds (source, picture id, tl0) packets (15- or 7-bit ids), returning what went out.
    fn run(
        w: &mut Vp8Rewriter,
        packets: &[(u32, u16, u8)],
        long: bool,
    ) -> Vec<Result<(u16, u8), Vp8Error>> {
        packets
            .iter()
            .map(|&(source, pid, tl0)| {
                let mut buf = packet(true, Some((pid, long)), Some(tl0), 1);
                w.rewrite(source, &mut buf).map(|d| {
                    let parsed = Vp8Descriptor::parse(&buf).unwrap();
                    assert_eq!(
                        parsed, d,
                        "the returned descriptor is what is in the payload"
                    );
                    (d.picture_id.unwrap().value, d.tl0_pic_idx.unwrap())
                })
            })
            .collect()
    }

    #[test]
    fn a_single_layer_keeps_the_publishers_numbering() {
        let mut w = Vp8Rewriter::new();
        let out = run(
            &mut w,
            &[(1, 500, 9), (1, 500, 9), (1, 501, 10), (1, 503, 11)],
            true,
        );
        assert_eq!(
            out,
            [Ok((500, 9)), Ok((500, 9)), Ok((501, 10)), Ok((503, 11))]
        );
    }

    #[test]
    fn a_layer_switch_continues_the_numbering() {
        let mut w = Vp8Rewriter::new();
        // Low layer at picture ids around 100, then the high one (ids around 20 000) from its
        // keyframe on.
        let out = run(
            &mut w,
            &[
                (1, 100, 50),
                (1, 101, 51),
                (1, 101, 51),
                (3, 20_000, 7),
                (3, 20_000, 7),
                (3, 20_001, 8),
                (3, 20_003, 8),
                (3, 20_002, 8), // reordered
                (3, 20_001, 8), // late packet of an earlier picture of this layer
            ],
            true,
        );
        assert_eq!(
            out,
            [
                Ok((100, 50)),
                Ok((101, 51)),
                Ok((101, 51)),
                Ok((102, 52)),
                Ok((102, 52)),
                Ok((103, 53)),
                Ok((105, 53)),
                Ok((104, 53)),
                Ok((103, 53)),
            ]
        );
        // Anything from before the switch point of the high layer would collide: dropped.
        assert_eq!(run(&mut w, &[(3, 19_999, 6)], true), [Err(Vp8Error::Stale)]);
        // And back down: follows the highest id sent (105), not the last one (103).
        assert_eq!(
            run(&mut w, &[(1, 140, 60), (1, 141, 61)], true),
            [Ok((106, 54)), Ok((107, 55))]
        );
    }

    #[test]
    fn a_switch_crosses_the_15_bit_wrap() {
        let mut w = Vp8Rewriter::new();
        let out = run(
            &mut w,
            &[
                (1, 32_766, 254),
                (1, 32_767, 255),
                (2, 5, 100),
                (2, 6, 101),
                (1, 32_760, 0),
                (1, 0, 1),
                (1, 1, 2),
            ],
            true,
        );
        assert_eq!(
            out,
            [
                Ok((32_766, 254)),
                Ok((32_767, 255)),
                Ok((0, 0)),
                Ok((1, 1)),
                Ok((2, 2)),
                // The source's own wrap 32 760 → 0 is 8 pictures: kept.
                Ok((10, 3)),
                Ok((11, 4)),
            ]
        );
    }

    #[test]
    fn seven_bit_ids_wrap_at_128_across_a_switch() {
        let mut w = Vp8Rewriter::new();
        let out = run(
            &mut w,
            &[(1, 126, 0), (1, 127, 0), (2, 40, 0), (2, 41, 0), (2, 40, 0)],
            false,
        );
        let ids: Vec<_> = out.into_iter().map(|r| r.unwrap().0).collect();
        assert_eq!(ids, [126, 127, 0, 1, 0]);
        // A 7-bit layer followed by a 15-bit one: the 15-bit field continues the count.
        assert_eq!(
            run(&mut w, &[(3, 9_000, 0)], true).remove(0).unwrap().0,
            130
        );
    }

    #[test]
    fn a_pause_continues_on_the_same_layer() {
        let mut w = Vp8Rewriter::new();
        assert_eq!(run(&mut w, &[(1, 10, 1)], true), [Ok((10, 1))]);
        w.pause();
        // 200 pictures were held back.
        assert_eq!(
            run(&mut w, &[(1, 210, 80), (1, 211, 81)], true),
            [Ok((11, 2)), Ok((12, 3))]
        );
    }

    #[test]
    fn packets_without_the_fields_pass_untouched() {
        let mut w = Vp8Rewriter::new();
        let mut buf = packet(true, None, None, 0);
        let before = buf.clone();
        let d = w.rewrite(1, &mut buf).unwrap();
        assert_eq!(buf, before);
        assert!(d.keyframe);
        assert_eq!(w.rewrite(1, &mut []), Err(Vp8Error::Truncated));
    }

    fn check(buf: &[u8], w: &mut Vp8Rewriter) {
        let mut copy = [0u8; 8];
        let copy = &mut copy[..buf.len()];
        let parsed = Vp8Descriptor::parse(buf);
        if let Ok(d) = parsed {
            assert!(d.header_len < buf.len());
            assert_eq!(is_keyframe(buf), d.keyframe);
            copy.copy_from_slice(buf);
            d.write_picture_id(copy, 0xffff).unwrap();
            d.write_tl0_pic_idx(copy, 0xff).unwrap();
            let again = Vp8Descriptor::parse(copy).unwrap();
            assert_eq!(again.header_len, d.header_len, "{buf:02x?}");
            assert_eq!(again.keyframe, d.keyframe);
        }
        copy.copy_from_slice(buf);
        let r = w.rewrite((buf.len() % 3) as u32, copy);
        if parsed.is_err() {
            assert_eq!(r, Err(Vp8Error::Truncated));
            assert_eq!(copy, buf, "an error leaves the payload unchanged");
        }
    }

    #[test]
    fn no_short_input_panics() {
        let mut w = Vp8Rewriter::new();
        // Every string of up to 3 bytes.
        check(&[], &mut w);
        for a in 0..=255u8 {
            check(&[a], &mut w);
            for b in 0..=255u8 {
                check(&[a, b], &mut w);
                for c in 0..=255u8 {
                    check(&[a, b, c], &mut w);
                }
            }
        }
        // Up to 6 bytes: every first and second byte (all flag combinations), the rest from values
        // at the edges of the fields.
        const EDGES: [u8; 4] = [0x00, 0x7f, 0x80, 0xff];
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for c in EDGES {
                    for d in EDGES {
                        check(&[a, b, c, d], &mut w);
                        for e in EDGES {
                            check(&[a, b, c, d, e], &mut w);
                            for f in EDGES {
                                check(&[a, b, c, d, e, f], &mut w);
                            }
                        }
                    }
                }
            }
        }
    }
}
