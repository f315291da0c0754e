//! parley's audio and containers: what is known about Opus packets without decoding them, Ogg/Opus files
//! written packet by packet, a recording's per-track journals, and finalizing those journals into the
//! files a recording keeps. No rooms, no transport: the headless client's recorder and the server's room
//! recorder use it.
//!
//! Live, while recording:
//! - [`journal`]: a recording's raw packets per track with their arrival times, written live and cut-safe.
//! - [`ogg_opus`]: [`OggOpusWriter`], which writes one Opus stream to a file, fills RTP timestamp gaps
//!   with empty frames so the file keeps the real timing, and the `OpusHead` / `OpusTags` headers.
//! - [`opus_packet`]: samples, frame length and channels from an Opus packet's TOC (RFC 6716 §3.1).
//!
//! At a recording's stop (or at start-up, for one a crash cut short), from its journals:
//! - [`opus_track::finalize_opus_track`]: one person's Ogg/Opus, the packets as sent, on the session
//!   clock from the recording's start to its end (every per-person file has the recording's length).
//! - [`mix::mix_tracks`]: the mixed take — decoded, denoised ([`denoise`]), summed, limited
//!   ([`limiter`]), as Ogg/Opus and, on request, [`wav`] and [`flac`]; streamed a second at a time.
//! - While a recording runs (a segment's export): [`mix::mix_window`] and
//!   [`opus_track::finalize_opus_window`] make only a [`SessionWindow`] of the mix and of a person's
//!   file, decoding little more than the window itself.
//! - [`finalize_video`]: one person's video with their Opus audio, as sent: VP8 ([`vp8`]) as WebM
//!   ([`webm_mux`], libwebm), H.264 ([`h264`]) as Matroska ([`mkv_mux`]; WebM cannot carry it);
//!   [`VideoFormat::for_codec`] names the container (`webm`, `mkv`) before the file is written, and
//!   [`av_mux`] holds what both share (audio placement, lip sync, the interleaving on the session clock).
//! - Underneath: [`rtp`] (headers), [`timeline`] (RTP time → session time: unwrapping, clock restarts,
//!   the minimum-delay envelope that follows clock drift, sender-report lip sync), [`track`] (a journal
//!   read back in order, twice, so memory does not grow with the recording), [`placement`] (the one
//!   rule that puts audio packets on the session's sample grid). Every finalizer returns a report
//!   (durations, packet counts, gaps filled, bytes) for the server to store; a corrupt or cut journal
//!   finalizes to what it holds, and what cannot be handled is a [`FinalizeError`], never a panic.
//!
//! For exports: [`align`] finds how far two recordings of one sound lie apart (a take against its
//! artist's voice in the room recording), from their envelopes.

pub mod align;
pub mod av_mux;
pub mod denoise;
pub mod error;
pub mod flac;
pub mod h264;
pub mod journal;
pub mod limiter;
pub mod mix;
pub mod mkv_mux;
pub mod mp3;
pub mod ogg_decode;
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
pub mod wav_read;
pub mod webm_mux;

pub use av_mux::{finalize_video, VideoFormat, VideoReport};
pub use error::FinalizeError;
pub use mix::{mix_tracks, mix_tracks_with, mix_window, MixOutputs, MixReport, MixSettings};
pub use mkv_mux::finalize_mkv;
pub use mp3::Mp3Writer;
pub use ogg_decode::OggOpusReader;
pub use ogg_opus::{opus_head, opus_tags, OggOpusWriter, PRE_SKIP};
pub use opus_packet::packet_samples;
pub use opus_track::{finalize_opus_track, finalize_opus_window, SessionWindow, TrackReport};
pub use wav_read::WavReader;
pub use webm_mux::{finalize_webm, WebmReport};

/// Opus' clock: RTP timestamps and Ogg granule positions count 48 kHz samples.
pub const SAMPLE_RATE: u32 = 48_000;
