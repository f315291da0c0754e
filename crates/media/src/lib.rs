//! parley's audio and containers (placeholder doc, rewritten at the end)

pub mod denoise;
pub mod error;
pub mod flac;
pub mod journal;
pub mod limiter;
pub mod mix;
pub mod ogg_opus;
pub mod opus_packet;
pub mod opus_track;
pub mod placement;
pub mod rtp;
#[cfg(test)]
mod testutil;
pub mod timeline;
pub mod track;
pub mod vp8;
pub mod wav;
pub mod webm_mux;

pub use ogg_opus::{opus_head, opus_tags, OggOpusWriter, PRE_SKIP};
pub use opus_packet::packet_samples;

/// Opus' clock: RTP timestamps and Ogg granule positions count 48 kHz samples.
pub const SAMPLE_RATE: u32 = 48_000;
