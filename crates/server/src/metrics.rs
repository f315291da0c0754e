//! `/metrics` in the Prometheus text format, and the JSON status endpoints.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::oneshot;

use crate::plane::{ControlInput, Snapshot};
use crate::secret::{self, TokenHash};
use crate::AppState;

/// Who may read the status endpoints: the admin token (or the metrics token, for `/metrics`) as
/// `Authorization: Bearer …` or `?token=…`; everyone with `--public-status`, but then private rooms
/// and addresses stay hidden from those without a token.
#[derive(Debug, Clone)]
pub struct StatusAccess {
    /// Shared with the control plane, which replaces it when the token is reset.
    pub admin: AdminHash,
    pub metrics: Option<TokenHash>,
    pub public: bool,
}

/// The admin token's hash as the HTTP side sees it.
pub type AdminHash = std::sync::Arc<std::sync::RwLock<TokenHash>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Admin,
    Anyone,
}

fn presented_token<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or_else(|| query?.split('&').find_map(|kv| kv.strip_prefix("token=")))
}

/// Who is asking; `None`: nobody who may read (answer with [`unauthorized`]).
fn reader(state: &AppState, headers: &HeaderMap, uri: &Uri, metrics: bool) -> Option<Reader> {
    let access = &state.status_access;
    if let Some(token) = presented_token(headers, uri.query()) {
        let hash = secret::hash_token(token);
        let admin = *access.admin.read().unwrap_or_else(|p| p.into_inner());
        if hash == admin || (metrics && access.metrics == Some(hash)) {
            return Some(Reader::Admin);
        }
    }
    access.public.then_some(Reader::Anyone)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "this needs the admin token: Authorization: Bearer <token>, or ?token=<token>",
    )
        .into_response()
}

async fn snapshot(state: &AppState) -> Option<Snapshot> {
    let (reply, answer) = oneshot::channel();
    state
        .control
        .send(ControlInput::Snapshot(reply))
        .await
        .ok()?;
    tokio::time::timeout(std::time::Duration::from_secs(3), answer)
        .await
        .ok()?
        .ok()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is not answering",
    )
        .into_response()
}

/// Rooms, their participants and flags, and the active speaker.
pub async fn status(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let Some(reader) = reader(&state, &headers, &uri, false) else {
        return unauthorized();
    };
    match snapshot(&state).await {
        Some(mut s) => {
            if reader == Reader::Anyone {
                s.rooms
                    .retain(|r| r.access != parley_proto::Access::Private);
            }
            Json(serde_json::json!({ "rooms": s.rooms })).into_response()
        }
        None => unavailable(),
    }
}

/// Per connection: ICE state, selected pair, bitrates, loss, RTT.
pub async fn debug(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let Some(reader) = reader(&state, &headers, &uri, false) else {
        return unauthorized();
    };
    match snapshot(&state).await {
        Some(mut s) => {
            if reader == Reader::Anyone {
                // Addresses are for the admin; and nothing of private rooms.
                let private: Vec<String> = s
                    .rooms
                    .iter()
                    .filter(|r| r.access == parley_proto::Access::Private)
                    .map(|r| r.name.clone())
                    .collect();
                s.peers
                    .retain(|p| p.room.as_ref().is_none_or(|r| !private.contains(r)));
                for p in &mut s.peers {
                    p.local_address = None;
                    p.remote_address = None;
                }
            }
            Json(serde_json::json!({ "participants": s.peers })).into_response()
        }
        None => unavailable(),
    }
}

pub async fn prometheus(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    if reader(&state, &headers, &uri, true).is_none() {
        return unauthorized();
    }
    let Some(s) = snapshot(&state).await else {
        return unavailable();
    };
    let signalling_errors = state.signalling_errors.load(Ordering::Relaxed) + s.refusals;
    let rows: [(&str, &str, &str, u64); 19] = [
        (
            "parley_rooms",
            "gauge",
            "Rooms that exist.",
            s.rooms.len() as u64,
        ),
        (
            "parley_participants",
            "gauge",
            "Participants connected to a room.",
            s.gauges.peers as u64,
        ),
        (
            "parley_tracks",
            "gauge",
            "Tracks being published.",
            s.gauges.tracks as u64,
        ),
        (
            "parley_forwarded_packets_total",
            "counter",
            "RTP packets forwarded to subscribers.",
            s.counters.forwarded_packets,
        ),
        (
            "parley_direct_srtp_packets_total",
            "counter",
            "Forwarded RTP packets sealed on the direct SRTP path (audio), not through str0m's queue.",
            s.counters.direct_packets,
        ),
        (
            "parley_direct_received_packets_total",
            "counter",
            "Publishers' audio packets opened on the direct SRTP path (not handed to str0m).",
            s.counters.direct_received,
        ),
        (
            "parley_direct_dropped_packets_total",
            "counter",
            "Direct-path audio packets dropped as replayed or not authentic.",
            s.counters.direct_dropped,
        ),
        (
            "parley_forwarded_bytes_total",
            "counter",
            "RTP payload bytes forwarded to subscribers.",
            s.counters.forwarded_bytes,
        ),
        (
            "parley_dropped_muted_packets_total",
            "counter",
            "RTP packets not forwarded because the track was muted.",
            s.counters.dropped_muted_packets,
        ),
        (
            "parley_unrouted_datagrams_total",
            "counter",
            "Datagrams that belonged to no participant.",
            s.counters.unrouted_datagrams,
        ),
        (
            "parley_signalling_errors_total",
            "counter",
            "Signalling messages answered with an error.",
            signalling_errors,
        ),
        (
            "parley_active_speaker_switches_total",
            "counter",
            "Changes of a room's active speaker.",
            s.counters.speaker_switches,
        ),
        (
            "parley_keyframe_requests_total",
            "counter",
            "Keyframe requests (PLI/FIR) sent to publishers of video.",
            s.counters.keyframe_requests,
        ),
        (
            "parley_media_workers",
            "gauge",
            "Media worker threads (each with its own rooms and UDP port).",
            s.workers as u64,
        ),
        (
            "parley_dropped_levels_total",
            "counter",
            "levels messages not sent to clients that were behind in reading.",
            s.dropped_levels,
        ),
        (
            "parley_recorded_packets_total",
            "counter",
            "Packets media workers copied for room recordings.",
            s.counters.recorded_packets,
        ),
        (
            "parley_recorder_dropped_packets_total",
            "counter",
            "Recorded packets dropped because the recorder was behind.",
            state
                .recorder_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "parley_slow_client_closes_total",
            "counter",
            "Connections closed because the client stopped reading.",
            s.slow_closes,
        ),
        (
            "parley_viewers",
            "gauge",
            "Receive-only viewers connected to a room.",
            s.rooms
                .iter()
                .flat_map(|r| &r.participants)
                .filter(|p| p.role == parley_proto::Role::Viewer)
                .count() as u64,
        ),
    ];
    let mut body = String::new();
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            body,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let made = &state.finalize_stats;
    let seconds = [
        (
            "parley_recordings_finalized_total",
            "Recordings whose files were made.",
            made.recordings.load(Ordering::Relaxed) as f64,
        ),
        (
            "parley_recording_recorded_seconds_total",
            "Time recorded in the recordings whose files were made.",
            made.recorded_ms.load(Ordering::Relaxed) as f64 / 1e3,
        ),
        (
            "parley_recording_finalize_seconds_total",
            "Wall time spent making recordings' files (mix, denoise, encode, mux).",
            made.making_us.load(Ordering::Relaxed) as f64 / 1e6,
        ),
    ];
    for (name, help, value) in seconds {
        let _ = writeln!(
            body,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
