//! Which peer a received datagram belongs to, in O(1) whatever the number of peers.
//!
//! A datagram from a known remote address goes to the peer that address was learned for. Anything
//! else must be a STUN binding request (ICE): its USERNAME attribute starts with the ufrag we gave
//! that peer, so one parse and one map lookup find it. Garbage costs one lookup and is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;

/// An id the media core gives each peer.
pub type PeerId = u64;

#[derive(Debug, Default)]
pub struct Routes {
    by_address: HashMap<SocketAddr, PeerId>,
    by_ufrag: HashMap<String, PeerId>,
}

impl Routes {
    /// `peer` answers STUN requests for our ICE username fragment `ufrag`.
    pub fn add_peer(&mut self, peer: PeerId, ufrag: String) {
        self.by_ufrag.insert(ufrag, peer);
    }

    /// Forgets every route to `peer`.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.by_address.retain(|_, p| *p != peer);
        self.by_ufrag.retain(|_, p| *p != peer);
    }

    /// Datagrams from `source` go to `peer` from now on (learned from a STUN request it accepted).
    pub fn learn(&mut self, source: SocketAddr, peer: PeerId) {
        self.by_address.insert(source, peer);
    }

    /// The peer a datagram from `source` belongs to, if any.
    pub fn find(&self, source: SocketAddr, data: &[u8]) -> Option<PeerId> {
        if let Some(peer) = self.by_address.get(&source) {
            return Some(*peer);
        }
        let ufrag = stun_local_ufrag(data)?;
        std::str::from_utf8(ufrag)
            .ok()
            .and_then(|u| self.by_ufrag.get(u))
            .copied()
    }

    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }
}

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_BINDING_REQUEST: u16 = 0x0001;
const STUN_ATTR_USERNAME: u16 = 0x0006;

/// The recipient's part of a STUN binding request's USERNAME (`ours:theirs`, RFC 8445 §7.2.2).
fn stun_local_ufrag(data: &[u8]) -> Option<&[u8]> {
    if data.len() < 20 || data[4..8] != STUN_MAGIC_COOKIE {
        return None;
    }
    if u16::from_be_bytes([data[0], data[1]]) != STUN_BINDING_REQUEST {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == STUN_ATTR_USERNAME {
            let colon = value.iter().position(|b| *b == b':')?;
            return Some(&value[..colon]);
        }
        // Attributes are padded to 4 bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        // PRIORITY first, as browsers send it, then USERNAME, padded.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&STUN_ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&STUN_BINDING_REQUEST.to_be_bytes());
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&STUN_MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_binding_request_finds_its_peer_by_ufrag() {
        let mut r = Routes::default();
        for p in 1..=1000 {
            r.add_peer(p, format!("uf{p}"));
        }
        assert_eq!(
            r.find(addr(1), &binding_request(b"uf777:browser")),
            Some(777)
        );
        assert_eq!(r.find(addr(1), &binding_request(b"nobody:browser")), None);
        // Learned: later datagrams (DTLS, SRTP) from that address need no STUN.
        r.learn(addr(1), 777);
        assert_eq!(r.find(addr(1), &[0x80, 0x6f, 0, 1]), Some(777));
        r.remove_peer(777);
        assert_eq!(r.find(addr(1), &[0x80, 0x6f, 0, 1]), None);
        assert_eq!(r.find(addr(1), &binding_request(b"uf777:browser")), None);
        assert!(r.is_empty());
    }

    #[test]
    fn garbage_routes_nowhere_and_never_panics() {
        let mut r = Routes::default();
        r.add_peer(1, "abc".into());
        let good = binding_request(b"abc:x");
        assert_eq!(r.find(addr(2), &good), Some(1));
        // Every truncation of a valid request, and junk.
        for cut in 0..good.len() {
            assert_eq!(r.find(addr(2), &good[..cut]), None, "cut at {cut}");
        }
        let mut wrong_cookie = good.clone();
        wrong_cookie[4] = 0;
        assert_eq!(r.find(addr(2), &wrong_cookie), None);
        let mut response = good.clone();
        response[1] = 0x01; // 0x0101: a binding success response, not a request
        response[0] = 0x01;
        assert_eq!(r.find(addr(2), &response), None);
        let mut no_colon = binding_request(b"abc");
        assert_eq!(r.find(addr(2), &no_colon), None);
        // A length field pointing past the end.
        no_colon[2] = 0xff;
        assert_eq!(r.find(addr(2), &no_colon), None);
        assert_eq!(r.find(addr(2), &[0xff; 64]), None);
    }
}
