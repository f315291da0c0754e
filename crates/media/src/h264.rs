//! H.264 access units put back together from RTP (RFC 6184, packetization-mode 1 as browsers send it),
//! without decoding. Packets carry one NAL unit (types 1–23), several (STAP-A, 24) or a fragment of one
//! (FU-A, 28); other packet types are counted and skipped. An access unit is the NAL units of one RTP
//! timestamp: the marker bit ends it, and so does a new timestamp (a sender that never sets the marker,
//! or lost it). It is given in AVCC form (each NAL unit after its 4-byte big-endian length), as Matroska
//! and MP4 store it.
//!
//! An access unit with a packet missing, a broken fragment, or without its first slice is dropped, not
//! passed on broken; after any loss the access units that follow refer to what was lost, so they are
//! dropped too until the next IDR. The latest SPS and PPS (sent in-band, usually in a STAP-A before each
//! IDR) are kept: they go into the codec private ([`codec_config`]) and into each keyframe's access unit
//! that lacks them. Everything here reads bytes from the network: every length is checked, sizes are
//! capped, nothing panics.

use std::borrow::Cow;
use std::collections::VecDeque;

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

use crate::av_mux::{Depacketizer, DepacketizerCounts, VideoFrame};
use crate::track::TrackPacket;

/// Largest access unit assembled (AVCC bytes); a larger one is dropped (a corrupt journal, or a sender
/// gone wrong).
pub const MAX_ACCESS_UNIT: usize = 4 << 20;
/// Largest SPS or PPS kept (real ones are tens of bytes).
pub const MAX_PARAMETER_SET: usize = 4096;

/// NAL unit types (H.264 Table 7-1).
pub const NAL_SLICE: u8 = 1;
pub const NAL_PARTITION_A: u8 = 2;
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;
/// RTP payload structures (RFC 6184 §5.2).
const STAP_A: u8 = 24;
const STAP_B: u8 = 25;
const MTAP16: u8 = 26;
const MTAP24: u8 = 27;
const FU_A: u8 = 28;
const FU_B: u8 = 29;

/// A NAL unit's type (the low 5 bits of its header).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|h| h & 0x1f)
}

/// The NAL units of an access unit in AVCC form (4-byte lengths); stops at a length that does not fit.
pub fn nal_units(au: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = au;
    std::iter::from_fn(move || {
        let len = rest.get(..4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let nal = rest.get(4..4usize.checked_add(len)?)?;
        rest = &rest[4 + len..];
        Some(nal)
    })
}

/// Appends `nal` to `au` in AVCC form.
fn push_avcc(au: &mut Vec<u8>, nal: &[u8]) {
    au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    au.extend_from_slice(nal);
}

/// The last SPS and PPS in an access unit (AVCC form).
pub fn parameter_sets(au: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut sps, mut pps) = (None, None);
    for nal in nal_units(au) {
        match nal_type(nal) {
            Some(NAL_SPS) => sps = Some(nal),
            Some(NAL_PPS) => pps = Some(nal),
            _ => {}
        }
    }
    (sps, pps)
}

/// What a container needs from an SPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpsInfo {
    /// The picture's size in pixels, cropping applied.
    pub width: u32,
    pub height: u32,
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
}

/// Reads an SPS NAL unit (its header byte included) with `h264-reader`; `None` if it is not one or does
/// not parse.
pub fn parse_sps(nal: &[u8]) -> Option<SpsInfo> {
    if nal_type(nal)? != NAL_SPS || nal.len() < 4 || nal.len() > MAX_PARAMETER_SET {
        return None;
    }
    // The bytes are a stranger's: should the parser ever panic on them, the recording's other files
    // must still be made, so a panic is a failed parse.
    std::panic::catch_unwind(|| {
        let rbsp: Cow<[u8]> = decode_nal(nal).ok()?;
        let sps = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).ok()?;
        let (width, height) = sps.pixel_dimensions().ok()?;
        let chroma = &sps.chroma_info;
        Some(SpsInfo {
            width,
            height,
            // Bytes 1..4 of an SPS are profile_idc, the constraint flags and level_idc, as sent.
            profile_idc: nal[1],
            constraint_flags: nal[2],
            level_idc: nal[3],
            chroma_format_idc: u8::try_from(chroma.chroma_format.to_u32()).ok()?,
            bit_depth_luma_minus8: chroma.bit_depth_luma_minus8,
            bit_depth_chroma_minus8: chroma.bit_depth_chroma_minus8,
        })
    })
    .ok()
    .flatten()
}

/// An AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1, `avcC`) of one SPS and one PPS, with
/// 4-byte NAL unit lengths: Matroska's CodecPrivate for `V_MPEG4/ISO/AVC`.
pub fn avc_decoder_configuration(sps_nal: &[u8], pps_nal: &[u8], sps: &SpsInfo) -> Option<Vec<u8>> {
    let sps_len = u16::try_from(sps_nal.len()).ok()?;
    let pps_len = u16::try_from(pps_nal.len()).ok()?;
    let mut c = vec![
        1,
        sps.profile_idc,
        sps.constraint_flags,
        sps.level_idc,
        0xfc | 3, // lengthSizeMinusOne: 4-byte lengths
        0xe0 | 1, // one SPS
    ];
    c.extend_from_slice(&sps_len.to_be_bytes());
    c.extend_from_slice(sps_nal);
    c.push(1); // one PPS
    c.extend_from_slice(&pps_len.to_be_bytes());
    c.extend_from_slice(pps_nal);
    if !matches!(sps.profile_idc, 66 | 77 | 88) {
        // High profiles: chroma format and bit depths, no SPS extensions.
        c.push(0xfc | (sps.chroma_format_idc & 3));
        c.push(0xf8 | (sps.bit_depth_luma_minus8 & 7));
        c.push(0xf8 | (sps.bit_depth_chroma_minus8 & 7));
        c.push(0);
    }
    Some(c)
}

/// A keyframe's picture size and the codec private its parameter sets make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecConfig {
    pub width: u16,
    pub height: u16,
    pub sps: SpsInfo,
    /// The `avcC` record.
    pub avcc: Vec<u8>,
}

/// The codec config of an access unit that carries an SPS and a PPS (a keyframe's, from
/// [`H264Depacketizer`]); `None` without them, or if the SPS does not parse.
pub fn codec_config(au: &[u8]) -> Option<CodecConfig> {
    let (Some(sps_nal), Some(pps_nal)) = parameter_sets(au) else {
        return None;
    };
    let sps = parse_sps(sps_nal)?;
    let width = u16::try_from(sps.width).ok().filter(|w| *w > 0)?;
    let height = u16::try_from(sps.height).ok().filter(|h| *h > 0)?;
    Some(CodecConfig {
        width,
        height,
        sps,
        avcc: avc_decoder_configuration(sps_nal, pps_nal, &sps)?,
    })
}

/// An FU-A being put together: where its length field is in the access unit, and its NAL type.
#[derive(Debug, Clone, Copy)]
struct Fragmented {
    at: usize,
    nal_type: u8,
}

struct Building {
    segment: usize,
    ts: i64,
    session_us: f64,
    data: Vec<u8>,
    fu: Option<Fragmented>,
    broken: bool,
}

/// Why a packet's payload could not be used.
enum Unusable {
    /// It cannot be read: the access unit is broken.
    Malformed,
    /// A packet type not handled here that carries NAL units of the access unit (it is broken).
    Unsupported,
    /// A packet type not handled here that carries nothing of it.
    Ignored,
}

/// Assembles access units from a track's packets in order.
#[derive(Default)]
pub struct H264Depacketizer {
    building: Option<Building>,
    /// Access units finished, to give: one packet can finish two (the one a new timestamp ends, and
    /// its own with the marker), so one may wait for the next push.
    ready: VecDeque<VideoFrame>,
    /// The next packet expected: segment and sequence number.
    expected: Option<(usize, i64)>,
    /// Something was lost: access units are dropped until the next IDR.
    need_idr: bool,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    pub frames: u64,
    pub keyframes: u64,
    /// Access units dropped because a packet of theirs was missing, a fragment was broken, their first
    /// slice was missing, or they grew over [`MAX_ACCESS_UNIT`].
    pub incomplete: u64,
    /// Of those, the ones over [`MAX_ACCESS_UNIT`].
    pub oversized: u64,
    /// Access units dropped after a loss while waiting for an IDR.
    pub after_loss: u64,
    /// Packets whose payload could not be read.
    pub malformed: u64,
    /// Packets of a type not handled (STAP-B, MTAP, FU-B, reserved types), skipped.
    pub unsupported: u64,
}

impl H264Depacketizer {
    pub fn new() -> H264Depacketizer {
        H264Depacketizer::default()
    }

    /// The latest SPS and PPS seen (NAL units, header byte included).
    pub fn parameter_sets(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        (self.sps.as_deref(), self.pps.as_deref())
    }

    /// Takes the next packet; returns an access unit when one is complete.
    pub fn push(&mut self, p: &TrackPacket) -> Option<VideoFrame> {
        let new_segment = self.expected.is_some_and(|(s, _)| s != p.segment);
        // Padding-only packets (bandwidth probes) take sequence numbers too: not a loss.
        let gap = self
            .expected
            .is_some_and(|(s, seq)| s == p.segment && seq != p.seq - i64::from(p.padding_before));
        self.expected = Some((p.segment, p.seq.saturating_add(1)));
        if let Some(b) = self.building.as_mut() {
            // Within an access unit a gap is a hole in it; before a new timestamp it is (at least) the
            // end of the one being built, which never saw its marker.
            b.broken |= gap;
            if b.ts != p.ts || b.segment != p.segment {
                let done = self.complete();
                self.ready.extend(done);
            }
        }
        if gap || new_segment {
            // What follows refers to what was lost (or to another stream's pictures).
            self.need_idr = true;
        }
        let b = self.building.get_or_insert_with(|| Building {
            segment: p.segment,
            ts: p.ts,
            session_us: p.session_us,
            data: Vec::new(),
            fu: None,
            broken: false,
        });
        match Self::add_payload(b, &mut self.sps, &mut self.pps, &p.payload) {
            Ok(()) => {}
            Err(Unusable::Malformed) => {
                self.malformed += 1;
                b.broken = true;
            }
            Err(Unusable::Unsupported) => {
                self.unsupported += 1;
                b.broken = true;
            }
            Err(Unusable::Ignored) => self.unsupported += 1,
        }
        if b.data.len() > MAX_ACCESS_UNIT && !b.broken {
            b.broken = true;
            self.oversized += 1;
        }
        if p.marker {
            let done = self.complete();
            self.ready.extend(done);
        }
        self.ready.pop_front()
    }

    /// The track ended: an access unit still waiting to be given (call until `None`). One still being
    /// built never saw its end and is incomplete: the journal may have been cut in it.
    pub fn finish(&mut self) -> Option<VideoFrame> {
        if self.building.take().is_some() {
            self.incomplete += 1;
        }
        self.ready.pop_front()
    }

    /// Adds one packet's NAL units to `b`; complete SPS and PPS are kept as they go by.
    fn add_payload(
        b: &mut Building,
        sps: &mut Option<Vec<u8>>,
        pps: &mut Option<Vec<u8>>,
        payload: &[u8],
    ) -> Result<(), Unusable> {
        let indicator = *payload.first().ok_or(Unusable::Malformed)?;
        if indicator & 0x80 != 0 {
            // The forbidden-zero bit: the sender says the payload holds errors.
            return Err(Unusable::Malformed);
        }
        match indicator & 0x1f {
            1..=23 => {
                if b.fu.take().is_some() {
                    // A fragmented NAL unit never saw its end.
                    b.broken = true;
                }
                Self::add_nal(b, sps, pps, payload);
                Ok(())
            }
            STAP_A => {
                if b.fu.take().is_some() {
                    b.broken = true;
                }
                let mut rest = &payload[1..];
                if rest.is_empty() {
                    return Err(Unusable::Malformed);
                }
                while !rest.is_empty() {
                    let size = rest.get(..2).ok_or(Unusable::Malformed)?;
                    let size = usize::from(u16::from_be_bytes([size[0], size[1]]));
                    let nal = rest.get(2..2 + size).ok_or(Unusable::Malformed)?;
                    match nal.first() {
                        Some(h) if h & 0x80 == 0 && matches!(h & 0x1f, 1..=23) => {}
                        _ => return Err(Unusable::Malformed),
                    }
                    Self::add_nal(b, sps, pps, nal);
                    rest = &rest[2 + size..];
                }
                Ok(())
            }
            FU_A => {
                let header = *payload.get(1).ok_or(Unusable::Malformed)?;
                let (start, end, nal_type) =
                    (header & 0x80 != 0, header & 0x40 != 0, header & 0x1f);
                if (start && end) || !matches!(nal_type, 1..=23) {
                    return Err(Unusable::Malformed);
                }
                let data = &payload[2..];
                if start {
                    if b.fu.is_some() {
                        b.broken = true;
                    }
                    let at = b.data.len();
                    b.fu = Some(Fragmented { at, nal_type });
                    if !b.broken {
                        b.data.extend_from_slice(&[0; 4]);
                        b.data.push(indicator & 0xe0 | nal_type);
                    }
                } else if b.fu.is_none_or(|f| f.nal_type != nal_type) {
                    // Its start (or a whole other fragmented unit's end) is missing.
                    b.fu = None;
                    b.broken = true;
                    return Ok(());
                }
                if !b.broken && b.data.len() <= MAX_ACCESS_UNIT {
                    b.data.extend_from_slice(data);
                }
                if end {
                    if let Some(f) = b.fu.take() {
                        if !b.broken && b.data.len() <= MAX_ACCESS_UNIT {
                            let len = (b.data.len() - f.at - 4) as u32;
                            b.data[f.at..f.at + 4].copy_from_slice(&len.to_be_bytes());
                            Self::keep_parameter_set(sps, pps, &b.data[f.at + 4..]);
                        }
                    }
                }
                Ok(())
            }
            STAP_B | MTAP16 | MTAP24 | FU_B => Err(Unusable::Unsupported),
            _ => Err(Unusable::Ignored),
        }
    }

    fn add_nal(b: &mut Building, sps: &mut Option<Vec<u8>>, pps: &mut Option<Vec<u8>>, nal: &[u8]) {
        Self::keep_parameter_set(sps, pps, nal);
        if !b.broken && b.data.len() <= MAX_ACCESS_UNIT {
            push_avcc(&mut b.data, nal);
        }
    }

    fn keep_parameter_set(sps: &mut Option<Vec<u8>>, pps: &mut Option<Vec<u8>>, nal: &[u8]) {
        if nal.len() > MAX_PARAMETER_SET {
            return;
        }
        match nal_type(nal) {
            Some(NAL_SPS) => *sps = Some(nal.to_vec()),
            Some(NAL_PPS) => *pps = Some(nal.to_vec()),
            _ => {}
        }
    }

    /// The access unit being built is done: checked, and given if it can be decoded.
    fn complete(&mut self) -> Option<VideoFrame> {
        let mut b = self.building.take()?;
        if b.fu.is_some() || b.data.len() > MAX_ACCESS_UNIT {
            b.broken = true;
        }
        if b.broken {
            self.incomplete += 1;
            self.need_idr = true;
            return None;
        }
        let (mut idr, mut sps, mut pps) = (false, false, false);
        // Whether the first slice starts the picture (first_mb_in_slice, ue(v), is 0: a single 1 bit).
        let mut first_slice_starts = None;
        for nal in nal_units(&b.data) {
            let t = nal_type(nal);
            idr |= t == Some(NAL_IDR);
            sps |= t == Some(NAL_SPS);
            pps |= t == Some(NAL_PPS);
            if matches!(t, Some(NAL_SLICE | NAL_PARTITION_A | NAL_IDR))
                && first_slice_starts.is_none()
            {
                first_slice_starts = Some(nal.get(1).is_some_and(|x| x & 0x80 != 0));
            }
        }
        match first_slice_starts {
            // Parameter sets or SEI alone, under their own timestamp: kept above, nothing to show.
            None => return None,
            Some(false) => {
                // Its first slice (or more) was lost before anything showed a gap.
                self.incomplete += 1;
                self.need_idr = true;
                return None;
            }
            Some(true) => {}
        }
        if self.need_idr && !idr {
            self.after_loss += 1;
            return None;
        }
        if idr {
            self.need_idr = false;
            if !(sps && pps) {
                b.data = self.with_parameter_sets(&b.data, !sps, !pps);
            }
            self.keyframes += 1;
        }
        self.frames += 1;
        Some(VideoFrame {
            session_us: b.session_us,
            ts: b.ts,
            keyframe: idr,
            data: b.data,
        })
    }

    /// `au` with the kept SPS and/or PPS put in front (after an access unit delimiter, which comes
    /// first).
    fn with_parameter_sets(&self, au: &[u8], add_sps: bool, add_pps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(au.len() + 64);
        let mut nals = nal_units(au).peekable();
        if let Some(aud) = nals.next_if(|n| nal_type(n) == Some(NAL_AUD)) {
            push_avcc(&mut out, aud);
        }
        if let Some(sps) = self.sps.as_deref().filter(|_| add_sps) {
            push_avcc(&mut out, sps);
        }
        if let Some(pps) = self.pps.as_deref().filter(|_| add_pps) {
            push_avcc(&mut out, pps);
        }
        for nal in nals {
            push_avcc(&mut out, nal);
        }
        out
    }
}

impl Depacketizer for H264Depacketizer {
    fn push(&mut self, p: &TrackPacket) -> Option<VideoFrame> {
        H264Depacketizer::push(self, p)
    }

    fn finish(&mut self) -> Option<VideoFrame> {
        H264Depacketizer::finish(self)
    }

    fn counts(&self) -> DepacketizerCounts {
        DepacketizerCounts {
            incomplete: self.incomplete,
            malformed: self.malformed + self.unsupported,
            after_loss: self.after_loss,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::Rng;

    /// 2 s of 96x64 at 15 fps, an IDR every 10 frames (`testdata/README.md` says how it was made).
    pub(crate) const FIXTURE: &[u8] = include_bytes!("../testdata/h264-96x64.h264");

    /// The NAL units of an Annex B stream (start codes `00 00 01` or `00 00 00 01`).
    pub(crate) fn annexb_nals(stream: &[u8]) -> Vec<Vec<u8>> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i + 3 <= stream.len() {
            if stream[i..i + 3] == [0, 0, 1] {
                starts.push(i + 3);
                i += 3;
            } else {
                i += 1;
            }
        }
        starts
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                let end = starts.get(k + 1).map_or(stream.len(), |n| n - 3);
                let mut nal = &stream[s..end];
                // A NAL unit never ends in a zero byte: those are the next start code's.
                while let [rest @ .., 0] = nal {
                    nal = rest;
                }
                nal.to_vec()
            })
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// NAL units grouped into access units: one ends before a non-slice NAL unit or a slice that starts
    /// a picture, once it has a slice.
    pub(crate) fn access_units(nals: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
        let mut aus: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut current: Vec<Vec<u8>> = Vec::new();
        for nal in nals {
            let t = nal[0] & 0x1f;
            let slice = matches!(t, 1..=5);
            let has_slice = current.iter().any(|n| matches!(n[0] & 0x1f, 1..=5));
            if has_slice && (!slice || nal[1] & 0x80 != 0) {
                aus.push(std::mem::take(&mut current));
            }
            current.push(nal);
        }
        if !current.is_empty() {
            aus.push(current);
        }
        aus
    }

    pub(crate) fn fixture_aus() -> Vec<Vec<Vec<u8>>> {
        access_units(annexb_nals(FIXTURE))
    }

    /// An access unit in AVCC form.
    pub(crate) fn avcc(au: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in au {
            push_avcc(&mut out, nal);
        }
        out
    }

    /// RTP payloads of an access unit as browsers send it: the NAL units before its slices (SPS, PPS,
    /// SEI) together in a STAP-A (alone, one that is by itself), slices alone if they fit `mtu`, else
    /// as FU-A fragments of at most `mtu` bytes.
    pub(crate) fn packetize(au: &[Vec<u8>], mtu: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let lead: Vec<&Vec<u8>> = au
            .iter()
            .take_while(|n| !matches!(n[0] & 0x1f, 1..=5))
            .collect();
        if lead.len() > 1 {
            let mut stap = vec![lead.iter().map(|n| n[0] & 0x60).max().unwrap_or(0) | STAP_A];
            for nal in &lead {
                stap.extend_from_slice(&(nal.len() as u16).to_be_bytes());
                stap.extend_from_slice(nal);
            }
            out.push(stap);
        } else {
            out.extend(lead.iter().map(|n| n.to_vec()));
        }
        for nal in &au[lead.len()..] {
            if nal.len() <= mtu {
                out.push(nal.clone());
                continue;
            }
            let chunks: Vec<&[u8]> = nal[1..].chunks(mtu - 2).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let mut header = nal[0] & 0x1f;
                if i == 0 {
                    header |= 0x80;
                }
                if i + 1 == chunks.len() {
                    header |= 0x40;
                }
                let mut p = vec![nal[0] & 0xe0 | FU_A, header];
                p.extend_from_slice(chunk);
                out.push(p);
            }
        }
        out
    }

    pub(crate) use crate::testutil::video_packet as packet;

    /// The fixture's packets at 15 fps: (frame, index in the frame, packet).
    fn fixture_packets(mtu: usize) -> Vec<(usize, usize, TrackPacket)> {
        let mut seq = 100;
        let mut out = Vec::new();
        for (i, au) in fixture_aus().iter().enumerate() {
            let payloads = packetize(au, mtu);
            let n = payloads.len();
            for (k, p) in payloads.into_iter().enumerate() {
                out.push((i, k, packet(seq, i as i64 * 6_000, k + 1 == n, p)));
                seq += 1;
            }
        }
        out
    }

    fn run(
        d: &mut H264Depacketizer,
        packets: impl IntoIterator<Item = TrackPacket>,
    ) -> Vec<VideoFrame> {
        let mut out = Vec::new();
        for p in packets {
            out.extend(d.push(&p));
        }
        while let Some(f) = d.finish() {
            out.push(f);
        }
        out
    }

    #[test]
    fn the_fixture_comes_back_access_unit_by_access_unit() {
        let aus = fixture_aus();
        assert_eq!(aus.len(), 30);
        let packets = fixture_packets(1_200);
        let kinds = |t: u8| {
            packets
                .iter()
                .filter(|p| p.2.payload[0] & 0x1f == t)
                .count()
        };
        assert_eq!(kinds(STAP_A), 3, "SPS and PPS before each IDR");
        assert!(kinds(FU_A) >= 6, "the IDRs are fragmented");
        assert_eq!(kinds(NAL_SLICE), 27, "P slices go alone");
        let mut d = H264Depacketizer::new();
        let frames = run(&mut d, packets.into_iter().map(|p| p.2));
        assert_eq!(frames.len(), 30);
        for (i, (f, au)) in frames.iter().zip(&aus).enumerate() {
            assert_eq!(f.data, avcc(au), "access unit {i}");
            assert_eq!(f.keyframe, i % 10 == 0, "access unit {i}");
            assert_eq!(f.ts, i as i64 * 6_000);
        }
        assert_eq!(
            (
                d.frames,
                d.keyframes,
                d.incomplete,
                d.after_loss,
                d.malformed,
                d.unsupported
            ),
            (30, 3, 0, 0, 0, 0)
        );
        let (sps, pps) = d.parameter_sets();
        assert_eq!(sps, Some(&aus[0][0][..]));
        assert_eq!(pps, Some(&aus[0][1][..]));
        let config = codec_config(&frames[0].data).unwrap();
        assert_eq!((config.width, config.height), (96, 64));
        assert_eq!(codec_config(&frames[1].data), None, "a P frame has no SPS");
    }

    #[test]
    fn a_loss_drops_its_frame_and_those_after_until_the_next_idr() {
        // A middle fragment of the second IDR (frame 10, four fragments at 500 bytes).
        let packets = fixture_packets(500);
        assert!(packets.iter().filter(|p| p.0 == 10).count() >= 4);
        let mut d = H264Depacketizer::new();
        let frames = run(
            &mut d,
            packets
                .into_iter()
                .filter(|p| !(p.0 == 10 && p.1 == 2))
                .map(|p| p.2),
        );
        let aus = fixture_aus();
        let kept: Vec<usize> = (0..10).chain(20..30).collect();
        assert_eq!(frames.len(), kept.len());
        for (f, i) in frames.iter().zip(&kept) {
            assert_eq!(f.data, avcc(&aus[*i]));
        }
        assert_eq!((d.incomplete, d.after_loss), (1, 9));

        // A whole P frame lost (its only packet): nothing of it is seen, the gap shows at the next.
        let mut d = H264Depacketizer::new();
        let frames = run(
            &mut d,
            fixture_packets(1_200)
                .into_iter()
                .filter(|p| p.0 != 3)
                .map(|p| p.2),
        );
        assert_eq!(frames.len(), 30 - 7, "frames 3 to 9 are gone");
        assert_eq!((d.incomplete, d.after_loss), (0, 6));
        assert!(frames[3].keyframe && frames[3].ts == 60_000);

        // The IDR's last fragment (with the marker) lost: it ends at the next timestamp, broken.
        let mut d = H264Depacketizer::new();
        let packets = fixture_packets(1_200);
        let last_of_idr = packets.iter().filter(|p| p.0 == 20).count() - 1;
        let frames = run(
            &mut d,
            packets
                .into_iter()
                .filter(|p| !(p.0 == 20 && p.1 == last_of_idr))
                .map(|p| p.2),
        );
        assert_eq!(frames.len(), 20);
        assert_eq!((d.incomplete, d.after_loss), (1, 9));
    }

    #[test]
    fn packet_kinds_and_broken_units() {
        let aus = fixture_aus();
        let (sps, pps, idr, p1) = (&aus[0][0], &aus[0][1], &aus[0][2], &aus[1][0]);
        let stap = |nals: &[&Vec<u8>]| {
            let mut s = vec![STAP_A];
            for n in nals {
                s.extend_from_slice(&(n.len() as u16).to_be_bytes());
                s.extend_from_slice(n);
            }
            s
        };
        let mut d = H264Depacketizer::new();
        // No marker: the next timestamp ends the access unit; and a packet that completes one more
        // with its marker gives the second at the next push.
        assert_eq!(d.push(&packet(0, 0, false, stap(&[sps, pps]))), None);
        assert_eq!(d.push(&packet(1, 0, false, idr.clone())), None);
        let first = d.push(&packet(2, 3_000, true, p1.clone())).unwrap();
        assert!(first.keyframe);
        assert_eq!(first.data, avcc(&[sps.clone(), pps.clone(), idr.clone()]));
        let second = d.push(&packet(3, 6_000, false, vec![0x1e, 1, 2])).unwrap();
        assert_eq!((second.ts, second.keyframe), (3_000, false));
        assert_eq!(d.unsupported, 1, "type 30 is counted and skipped");
        // (the type-30 packet left an empty access unit at 6000: it gives nothing)
        // An IDR sent without its parameter sets gets the kept ones, after its delimiter.
        let aud = vec![0x09, 0xf0];
        assert_eq!(d.push(&packet(4, 9_000, false, aud.clone())), None);
        let f = d.push(&packet(5, 9_000, true, idr.clone())).unwrap();
        assert_eq!(
            f.data,
            avcc(&[aud.clone(), sps.clone(), pps.clone(), idr.clone()])
        );
        assert_eq!(codec_config(&f.data).unwrap().width, 96);

        // An FU-A whose start is missing; one that never ends; one interrupted by another's start.
        let frag = |start: bool, end: bool, data: &[u8]| {
            let mut p = vec![
                0x60 | FU_A,
                (idr[0] & 0x1f) | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
            ];
            p.extend_from_slice(data);
            p
        };
        let incomplete = d.incomplete;
        assert_eq!(
            d.push(&packet(6, 12_000, true, frag(false, true, &idr[1..]))),
            None
        );
        assert_eq!(
            d.push(&packet(7, 15_000, true, frag(true, false, &idr[1..]))),
            None
        );
        assert_eq!(
            d.push(&packet(8, 18_000, false, frag(true, false, &idr[1..10]))),
            None
        );
        assert_eq!(
            d.push(&packet(9, 18_000, true, frag(true, true, &idr[1..]))),
            None
        );
        assert_eq!(d.incomplete, incomplete + 3);
        assert_eq!(d.malformed, 1, "S and E together");
        // After those, a P frame waits for an IDR; a whole FU-A IDR comes through.
        assert_eq!(d.push(&packet(10, 21_000, true, p1.clone())), None);
        assert_eq!(d.after_loss, 1);
        assert_eq!(
            d.push(&packet(11, 24_000, false, frag(true, false, &idr[1..100]))),
            None
        );
        let f = d
            .push(&packet(12, 24_000, true, frag(false, true, &idr[100..])))
            .unwrap();
        assert_eq!(f.data, avcc(&[sps.clone(), pps.clone(), idr.clone()]));

        // Unreadable or unhandled payloads break their access unit.
        let malformed = d.malformed;
        for (i, bad) in [
            vec![STAP_A, 0, 50, 0x67], // a size past the end
            vec![STAP_A],              // empty
            vec![STAP_A, 0, 0],        // a zero size
            vec![0x80 | NAL_SLICE, 1], // the forbidden bit
            vec![FU_A],                // no FU header
            vec![FU_A, 0x80],          // FU of type 0
        ]
        .into_iter()
        .enumerate()
        {
            let seq = 13 + 2 * i as i64;
            let ts = 27_000 + 3_000 * i as i64;
            assert_eq!(d.push(&packet(seq, ts, false, idr.clone())), None);
            assert_eq!(d.push(&packet(seq + 1, ts, true, bad)), None);
        }
        assert_eq!(d.malformed, malformed + 6);
        let unsupported = d.unsupported;
        assert_eq!(d.push(&packet(25, 60_000, false, idr.clone())), None);
        assert_eq!(
            d.push(&packet(
                26,
                60_000,
                true,
                vec![STAP_B, 0, 0, 0, 2, 0x41, 0x9a]
            )),
            None
        );
        assert_eq!(d.unsupported, unsupported + 1);

        // A slice that does not start its picture (first_mb_in_slice > 0): the start was lost.
        let mut tail = idr.clone();
        tail[1] &= 0x7f;
        let incomplete = d.incomplete;
        assert_eq!(d.push(&packet(27, 63_000, true, tail)), None);
        assert_eq!(d.incomplete, incomplete + 1);
        // Over the size cap: dropped and counted.
        let big = {
            let mut n = vec![0x65, 0x88];
            n.resize(60_000, 0x11);
            n
        };
        for k in 0..80 {
            assert_eq!(d.push(&packet(28 + k, 66_000, k == 79, big.clone())), None);
        }
        assert_eq!(d.oversized, 1);
        // A new stream (segment) starts over at its IDR; SPS/PPS alone under a timestamp give nothing.
        let mut p = packet(0, 0, true, stap(&[sps, pps]));
        p.segment = 1;
        assert_eq!(d.push(&p), None);
        let mut p = packet(1, 3_000, true, idr.clone());
        p.segment = 1;
        let f = d.push(&p).unwrap();
        assert_eq!(f.data, avcc(&[sps.clone(), pps.clone(), idr.clone()]));
        // Cut mid-unit: incomplete at the end.
        let incomplete = d.incomplete;
        let mut p = packet(2, 6_000, false, p1.clone());
        p.segment = 1;
        assert_eq!(d.push(&p), None);
        assert_eq!(d.finish(), None);
        assert_eq!(d.incomplete, incomplete + 1);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng::new(6184);
        let bytes =
            |rng: &mut Rng, n: usize| -> Vec<u8> { (0..n).map(|_| rng.below(256) as u8).collect() };
        let mut d = H264Depacketizer::new();
        for i in 0..20_000i64 {
            let len = rng.below(if i % 10 == 0 { 3_000 } else { 40 });
            let mut payload = bytes(&mut rng, len);
            // Mostly the kinds handled, so the parsers go deep.
            if let Some(first) = payload.first_mut() {
                *first = match rng.below(4) {
                    0 => (*first & 0xe0) | STAP_A,
                    1 => (*first & 0xe0) | FU_A,
                    _ => *first,
                };
            }
            let p = packet(
                i + rng.below(3) as i64,
                i / 3 * 3_000,
                rng.below(3) == 0,
                payload.clone(),
            );
            if let Some(f) = d.push(&p) {
                assert!(!f.data.is_empty());
                assert_eq!(
                    nal_units(&f.data).map(|n| n.len() + 4).sum::<usize>(),
                    f.data.len()
                );
            }
            let _ = parse_sps(&payload);
            let _ = codec_config(&payload);
            let _ = nal_units(&payload).count();
        }
        while d.finish().is_some() {}
        // The fixture's packets, bit-flipped and cut.
        let mut d = H264Depacketizer::new();
        for (_, _, mut p) in fixture_packets(300) {
            match rng.below(4) {
                0 => {
                    let at = rng.below(p.payload.len());
                    p.payload[at] ^= 1 << rng.below(8);
                }
                1 => {
                    let n = rng.below(p.payload.len());
                    p.payload.truncate(n);
                }
                _ => {}
            }
            let _ = d.push(&p);
        }
        let _ = d.finish();
        // SPS bytes cut and flipped.
        let sps = &fixture_aus()[0][0];
        for n in 0..=sps.len() {
            let _ = parse_sps(&sps[..n]);
            let mut flipped = sps.clone();
            flipped[n.min(sps.len() - 1)] ^= 0x55;
            let _ = parse_sps(&flipped);
        }
    }

    #[test]
    fn sps_sizes_and_avcc() {
        let aus = fixture_aus();
        let (sps, pps) = (&aus[0][0], &aus[0][1]);
        let info = parse_sps(sps).unwrap();
        assert_eq!((info.width, info.height, info.profile_idc), (96, 64, 66));
        let avcc = avc_decoder_configuration(sps, pps, &info).unwrap();
        assert_eq!(
            avcc.len(),
            6 + 2 + sps.len() + 1 + 2 + pps.len(),
            "baseline: no extension"
        );
        let record = h264_reader::avcc::AvcDecoderConfigurationRecord::try_from(&avcc[..]).unwrap();
        assert_eq!(record.length_size_minus_one(), 3);
        let sets: Vec<&[u8]> = record
            .sequence_parameter_sets()
            .map(|s| s.unwrap())
            .collect();
        assert_eq!(sets, vec![&sps[..]]);
        let sets: Vec<&[u8]> = record
            .picture_parameter_sets()
            .map(|s| s.unwrap())
            .collect();
        assert_eq!(sets, vec![&pps[..]]);
        record.create_context().unwrap();

        // High profile, 100x60 (cropped from 112x64): `ffmpeg -f lavfi -i testsrc2=size=100x60
        // -frames:v 1 -c:v libx264 -profile:v high -f h264`.
        let sps = hex("6764000aacd947279ef0110000030001000003001e0f122596");
        let pps = hex("68ebe3cb22c0");
        let info = parse_sps(&sps).unwrap();
        assert_eq!((info.width, info.height, info.profile_idc), (100, 60, 100));
        let avcc = avc_decoder_configuration(&sps, &pps, &info).unwrap();
        assert_eq!(
            &avcc[avcc.len() - 4..],
            &[0xfd, 0xf8, 0xf8, 0],
            "4:2:0, 8 bits"
        );
        let record = h264_reader::avcc::AvcDecoderConfigurationRecord::try_from(&avcc[..]).unwrap();
        assert_eq!(record.chroma_format(), Some(1));
        let au = super::tests::avcc(&[sps.clone(), pps.clone(), aus[0][2].clone()]);
        let config = codec_config(&au).unwrap();
        assert_eq!((config.width, config.height, config.avcc), (100, 60, avcc));

        assert_eq!(parse_sps(pps.as_slice()), None, "not an SPS");
        assert_eq!(parse_sps(&sps[..6]), None, "cut");
        assert_eq!(parse_sps(&[]), None);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
