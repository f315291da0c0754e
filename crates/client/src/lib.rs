//! parley's headless client: joins rooms like a browser does (signalling over a WebSocket, WebRTC with str0m),
//! publishes Opus audio (WAV, Ogg/Opus or a synthetic voice) and optional synthetic VP8 video, records
//! what others send to one Ogg/Opus file per speaker, and measures what it receives.
//!
//! - [`call::Call`] is the sans-IO core of one participant: fed with server messages, datagrams and the
//!   time, it produces datagrams, signalling and statistics. It never touches a socket or reads a clock.
//! - [`session::Session`] is the thin tokio shell around it: WebSocket, one UDP socket, timers.
//! - [`load`] runs many sessions in one process and summarises them (the `load` command); other servers'
//!   participants plug into it as a [`load::Backend`] (the benchmark's Janus anchor does).
//!
//! See `docs/client.md` for the command line.

pub mod audio;
pub mod call;
pub mod clock;
pub mod error;
pub mod http;
pub mod load;
pub mod recorder;
pub mod room_recording;
pub mod session;
pub mod stats;
pub mod studio;
pub mod video;

pub use call::{Call, CallConfig};
pub use error::ClientError;
pub use session::{ClientConfig, Session};
pub use stats::{CallStats, Percentiles, StreamStats};
