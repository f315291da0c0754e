//! parley's audio and containers: what is known about Opus packets without decoding them, and Ogg/Opus
//! files (RFC 7845) written packet by packet as they arrive. No rooms, no transport, no codec library: the
//! headless client's recorder uses it, and the server's room recorder will use it next.
//!
//! - [`opus_packet`]: samples, frame length and channels from an Opus packet's TOC (RFC 6716 §3.1).
//! - [`journal`]: a recording's raw packets per track with their arrival times, written live and cut-safe.
//! - [`ogg_opus`]: [`OggOpusWriter`], which writes one Opus stream to a file, fills RTP timestamp gaps
//!   with empty frames so the file keeps the real timing, and the `OpusHead` / `OpusTags` headers.

pub mod journal;
pub mod ogg_opus;
pub mod opus_packet;

pub use ogg_opus::{opus_head, opus_tags, OggOpusWriter, PRE_SKIP};
pub use opus_packet::packet_samples;

/// Opus' clock: RTP timestamps and Ogg granule positions count 48 kHz samples.
pub const SAMPLE_RATE: u32 = 48_000;
