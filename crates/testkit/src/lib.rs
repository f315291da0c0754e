//! Dev-only helpers shared by parley's tests and benchmarks.
//!
//! - [`net`]: the in-memory network: the real control plane and media workers of the server, and real
//!   str0m peers (or any [`net::Endpoint`]), exchanging signalling and datagrams through function
//!   calls on a fake clock. No sockets, deterministic.
//! - [`server`]: the harness for the real `parley` binary: start (temp data dir, free ports), kill,
//!   restart on the same data, HTTP and WebSocket helpers.

pub mod net;
pub mod server;
