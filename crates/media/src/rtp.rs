//! The fixed RTP header (RFC 3550 §5.1) read from a journal's packet: enough to order, time and
//! depacketize it. Malformed packets give `None`, never a panic (a journal may be corrupt).

/// One RTP packet's header fields and payload (CSRCs, header extension and padding stripped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

/// Parses `packet`; `None` if it is not RTP version 2 or its lengths do not add up.
pub fn parse(packet: &[u8]) -> Option<RtpPacket<'_>> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let csrc_count = usize::from(packet[0] & 0x0f);
    let mut start = 12 + 4 * csrc_count;
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(start..start + 4)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        start += 4 + 4 * words;
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        let pad = usize::from(*packet.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    if start > end {
        return None;
    }
    Some(RtpPacket {
        marker: packet[1] & 0x80 != 0,
        payload_type: packet[1] & 0x7f,
        seq: u16::from_be_bytes([packet[2], packet[3]]),
        timestamp: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        payload: &packet[start..end],
    })
}

/// A plain RTP packet (no CSRC, no extension, no padding): for tests and tools that fabricate journals.
pub fn build(
    payload_type: u8,
    marker: bool,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(payload_type & 0x7f | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_build_wrote() {
        let p = build(111, true, 65_535, 0xdead_beef, 42, &[1, 2, 3]);
        let r = parse(&p).unwrap();
        assert!(r.marker);
        assert_eq!(
            (r.payload_type, r.seq, r.timestamp, r.ssrc),
            (111, 65_535, 0xdead_beef, 42)
        );
        assert_eq!(r.payload, &[1, 2, 3]);
    }

    #[test]
    fn strips_csrcs_extension_and_padding() {
        // Two CSRCs, a one-word extension, two bytes of padding.
        let mut p = vec![0x80 | 0x20 | 0x10 | 2, 96, 0, 7, 0, 0, 0, 9, 0, 0, 0, 1];
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
        p.extend_from_slice(&[5, 6, 7]);
        p.extend_from_slice(&[0, 2]);
        let r = parse(&p).unwrap();
        assert_eq!(r.payload, &[5, 6, 7]);
        assert_eq!(r.seq, 7);
    }

    #[test]
    fn malformed_packets_are_none() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x80; 11]).is_none());
        assert!(parse(&[0x40; 12]).is_none(), "version 1");
        let mut p = build(96, false, 1, 1, 1, &[]);
        p[0] |= 0x0f; // 15 CSRCs that are not there
        assert!(parse(&p).is_none());
        let mut p = build(96, false, 1, 1, 1, &[9]);
        p[0] |= 0x20;
        *p.last_mut().unwrap() = 200; // more padding than packet
        assert!(parse(&p).is_none());
        let mut p = build(96, false, 1, 1, 1, &[0xbe, 0xde, 0xff, 0xff]);
        p[0] |= 0x10; // an extension longer than the packet
        assert!(parse(&p).is_none());
    }
}
