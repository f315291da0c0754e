//! parley's media plane: one sans-IO media core per worker.
//!
//! A [`MediaCore`] holds the rooms placed on one worker, their peers' WebRTC connections ([`Peer`],
//! str0m in RTP mode) and the forwarding between them: each published track has its subscribers,
//! each subscriber a [`DownTrack`] that numbers what it receives. It is fed with typed commands from
//! the control plane ([`MediaCommand`]), received datagrams and the time, and hands back datagrams to
//! send and [`MediaEvent`]s. It knows nothing of chat, the lobby or JSON, never touches a socket and
//! never reads a clock, so it is deterministic and testable without a network.

mod core;
mod down_track;
pub mod layers;
mod peer;
mod receive;
mod room;
mod route;
mod speaker;
pub mod srtp;
pub mod vp8;

pub use crate::core::{
    MediaCommand, MediaConfig, MediaCore, MediaCounters, MediaEvent, MediaGauges, Recorded,
    RecordedPacket, RecordedSenderReport,
};
pub use down_track::DownTrack;
pub use layers::{wanted_layers, Layer, LayerConfig, LayerSelector, Tile, VideoFeed};
pub use peer::{Forwarded, Peer, PeerDebug, PeerEvent, TrackKind, TrackSource, Transmit};
pub use room::{Room, RoomId};
pub use route::{PeerId, Routes};
pub use speaker::{SpeakerConfig, SpeakerDetector, SPEAKER_TICK};
pub use vp8::{Vp8Descriptor, Vp8Error, Vp8Rewriter};
