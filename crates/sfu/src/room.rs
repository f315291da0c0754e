//! A room as the media plane sees it: its peers, who receives which published track, and its
//! speaker detection. Membership rules (names, capacity, roles) belong to the control plane.

use rustc_hash::FxHashMap;

use crate::peer::TrackSource;
use crate::route::PeerId;
use crate::speaker::{SpeakerConfig, SpeakerDetector};

/// The control plane's id of a room placed on this worker.
pub type RoomId = u64;

/// One receiver of a published track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    pub peer: PeerId,
    /// Where the track sits among the subscriber's outgoing tracks, last time it was looked up: a
    /// hint that saves walking them per packet (checked, and refreshed when it is stale).
    pub slot: u32,
}

#[derive(Debug)]
pub struct Room {
    /// Peers in join order.
    peers: Vec<PeerId>,
    /// Every published track → the peers that receive it, kept as subscriptions change so the
    /// forwarding path never recomputes targets from the member list.
    subscribers: FxHashMap<TrackSource, Vec<Subscriber>>,
    pub(crate) speaker: SpeakerDetector,
    /// The last `levels` had a sound in it (so the silence after it is sent once).
    pub(crate) loud: bool,
}

impl Room {
    pub fn new(speaker: SpeakerConfig) -> Room {
        Room {
            peers: Vec::new(),
            subscribers: FxHashMap::default(),
            speaker: SpeakerDetector::new(speaker),
            loud: false,
        }
    }

    pub fn peers(&self) -> &[PeerId] {
        &self.peers
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn add_peer(&mut self, peer: PeerId) {
        if !self.peers.contains(&peer) {
            self.peers.push(peer);
        }
    }

    /// Removes `peer`, its published tracks and its subscriptions.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.peers.retain(|p| *p != peer);
        self.subscribers
            .retain(|source, _| source.publisher != peer);
        for subs in self.subscribers.values_mut() {
            subs.retain(|s| s.peer != peer);
        }
    }

    /// `source` is published; nobody receives it yet.
    pub fn publish(&mut self, source: TrackSource) {
        self.subscribers.entry(source).or_default();
    }

    pub fn subscribe(&mut self, source: TrackSource, subscriber: PeerId) {
        let subs = self.subscribers.entry(source).or_default();
        if source.publisher != subscriber && !subs.iter().any(|s| s.peer == subscriber) {
            subs.push(Subscriber {
                peer: subscriber,
                slot: 0,
            });
        }
    }

    /// Who receives `source` (none for an unknown track).
    pub fn subscribers(&self, source: &TrackSource) -> impl Iterator<Item = PeerId> + '_ {
        self.subscribers
            .get(source)
            .into_iter()
            .flatten()
            .map(|s| s.peer)
    }

    /// The receivers of `source` with their slot hints, for the forwarding path.
    pub fn subscribers_mut(&mut self, source: &TrackSource) -> &mut [Subscriber] {
        self.subscribers
            .get_mut(source)
            .map_or(&mut [], Vec::as_mut_slice)
    }

    /// Every published track of the room.
    pub fn tracks(&self) -> impl Iterator<Item = TrackSource> + '_ {
        self.subscribers.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use str0m::media::Mid;

    use super::*;

    fn track(publisher: PeerId, mid: &str) -> TrackSource {
        TrackSource {
            publisher,
            mid: Mid::from(mid),
        }
    }

    #[test]
    fn subscriptions_follow_joins_and_leaves() {
        let mut room = Room::new(SpeakerConfig::default());
        for p in [1, 2, 3] {
            room.add_peer(p);
        }
        let a1 = track(1, "0");
        room.publish(a1);
        room.subscribe(a1, 2);
        room.subscribe(a1, 3);
        room.subscribe(a1, 3);
        room.subscribe(a1, 1);
        assert_eq!(
            room.subscribers(&a1).collect::<Vec<_>>(),
            [2, 3],
            "no duplicates, never back to the publisher"
        );
        let v2 = track(2, "1");
        room.publish(v2);
        room.subscribe(v2, 1);
        room.remove_peer(2);
        assert_eq!(
            room.subscribers(&a1).collect::<Vec<_>>(),
            [3],
            "a leaver stops receiving"
        );
        assert!(
            room.subscribers(&v2).next().is_none(),
            "a leaver's tracks are gone"
        );
        assert_eq!(room.tracks().collect::<Vec<_>>(), [a1]);
        assert_eq!(room.peers(), [1, 3]);
        assert!(room.subscribers(&track(9, "0")).next().is_none());
    }
}
