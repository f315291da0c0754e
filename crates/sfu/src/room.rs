//! A room as the media plane sees it: its peers, who receives which published track, and its
//! speaker detection. Membership rules (names, capacity, roles) belong to the control plane.

use std::collections::HashMap;

use crate::peer::TrackSource;
use crate::route::PeerId;
use crate::speaker::{SpeakerConfig, SpeakerDetector};

/// The control plane's id of a room placed on this worker.
pub type RoomId = u64;

#[derive(Debug)]
pub struct Room {
    /// Peers in join order.
    peers: Vec<PeerId>,
    /// Every published track → the peers that receive it, kept as subscriptions change so the
    /// forwarding path never recomputes targets from the member list.
    subscribers: HashMap<TrackSource, Vec<PeerId>>,
    pub(crate) speaker: SpeakerDetector,
    /// The last `levels` had a sound in it (so the silence after it is sent once).
    pub(crate) loud: bool,
}

impl Room {
    pub fn new(speaker: SpeakerConfig) -> Room {
        Room {
            peers: Vec::new(),
            subscribers: HashMap::new(),
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
            subs.retain(|p| *p != peer);
        }
    }

    /// `source` is published; nobody receives it yet.
    pub fn publish(&mut self, source: TrackSource) {
        self.subscribers.entry(source).or_default();
    }

    pub fn subscribe(&mut self, source: TrackSource, subscriber: PeerId) {
        let subs = self.subscribers.entry(source).or_default();
        if source.publisher != subscriber && !subs.contains(&subscriber) {
            subs.push(subscriber);
        }
    }

    /// Who receives `source` (empty for an unknown track).
    pub fn subscribers(&self, source: &TrackSource) -> &[PeerId] {
        self.subscribers.get(source).map_or(&[], Vec::as_slice)
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
            room.subscribers(&a1),
            [2, 3],
            "no duplicates, never back to the publisher"
        );
        let v2 = track(2, "1");
        room.publish(v2);
        room.subscribe(v2, 1);
        room.remove_peer(2);
        assert_eq!(room.subscribers(&a1), [3], "a leaver stops receiving");
        assert!(
            room.subscribers(&v2).is_empty(),
            "a leaver's tracks are gone"
        );
        assert_eq!(room.tracks().collect::<Vec<_>>(), [a1]);
        assert_eq!(room.peers(), [1, 3]);
        assert!(room.subscribers(&track(9, "0")).is_empty());
    }
}
