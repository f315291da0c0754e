//! `/api/takes/…`: studio takes' chunks come up here while the artist plays, authorized by the
//! take's upload token (`Authorization: Bearer`), so a page that reloads resumes without its old
//! signalling session. The store's work (hashing, fsync, SQLite, assembly) runs on the blocking pool;
//! the control plane hears of each change and tells the room.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::control::take_info;
use crate::plane::ControlInput;
use crate::secret;
use crate::store::now_ms;
use crate::takes::{ChunkHeader, Take, TakeError, TakeStore};
use crate::AppState;

/// Chunk bodies read at most (twice the store's limit, so a slightly oversized chunk gets the
/// store's `chunk_too_large` rather than a bare 413).
pub fn chunk_body_limit(store: &TakeStore) -> usize {
    store.limits().max_chunk_bytes * 2
}

/// Chunks stored at once, server-wide: each holds its body in memory and fsyncs.
pub const UPLOAD_SLOTS: usize = 8;

#[derive(Clone)]
pub struct TakeUploads {
    pub store: Arc<TakeStore>,
    pub slots: Arc<Semaphore>,
    /// The key take file links are signed with (`control/studio.rs` signs them).
    pub key: [u8; 32],
}

fn refused(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": code, "message": message.into() })),
    )
        .into_response()
}

fn take_refused(e: &TakeError) -> Response {
    if e.code() == "internal" {
        tracing::error!("take store: {e}");
    }
    refused(
        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        e.code(),
        e.message(),
    )
}

/// The upload token's hash, from `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<secret::TokenHash> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty() && token.len() <= 64).then(|| secret::hash_token(token))
}

fn number<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn sha256_header(headers: &HeaderMap) -> Option<[u8; 32]> {
    let hex = headers.get("x-parley-sha256")?.to_str().ok()?.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The take a request is for and its upload token's hash, or the refusal.
fn take_and_token(
    take_id: &str,
    headers: &HeaderMap,
) -> Result<(i64, secret::TokenHash), Box<Response>> {
    let Some(take_id) = id(take_id) else {
        return Err(Box::new(refused(
            StatusCode::NOT_FOUND,
            "no_such_take",
            "no such take",
        )));
    };
    let Some(token) = bearer(headers) else {
        return Err(Box::new(refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the upload token is needed",
        )));
    };
    Ok((take_id, token))
}

/// Ids in paths are the server's: decimal, positive.
fn id(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|n| *n > 0)
}

/// Runs store work off the async threads. The work, and telling the control plane what it changed,
/// run in a task of their own: a client that hangs up while a take is being made (seconds for a long
/// one) must not keep the room from hearing that it is complete.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, TakeError> + Send + 'static,
    changed: impl FnOnce(&T) -> Option<Take> + Send + 'static,
) -> Result<T, Response> {
    let control = state.control.clone();
    let task = tokio::spawn(async move {
        let result = tokio::task::spawn_blocking(work).await;
        if let Ok(Ok(value)) = &result {
            if let Some(take) = changed(value) {
                let input = ControlInput::TakeChanged {
                    room: take.room.clone(),
                    take: take_info(&take),
                };
                if control.send(input).await.is_err() {
                    tracing::warn!("the control plane is gone");
                }
            }
        }
        result
    });
    let joined = match task.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("take work failed: {e}");
            return Err(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server could not store the chunk",
            ));
        }
    };
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(take_refused(&e)),
        Err(e) => {
            tracing::error!("take work failed: {e}");
            Err(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server could not store the chunk",
            ))
        }
    }
}

pub async fn put_chunk(
    State(state): State<AppState>,
    Path((take_id, seq)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Some(take_id), Some(seq)) = (id(&take_id), seq.parse::<u32>().ok()) else {
        return refused(
            StatusCode::NOT_FOUND,
            "no_such_take",
            "no such take or chunk",
        );
    };
    let Some(token) = bearer(&headers) else {
        return refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the take's upload token is needed (Authorization: Bearer …)",
        );
    };
    let (Some(first_sample), Some(samples), Some(sha256)) = (
        number::<u64>(&headers, "x-parley-first-sample"),
        number::<u32>(&headers, "x-parley-samples"),
        sha256_header(&headers),
    ) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "X-Parley-First-Sample, X-Parley-Samples and X-Parley-Sha256 (64 hex digits) are needed",
        );
    };
    let uploads = state.takes.clone();
    let Ok(_slot) = uploads.slots.clone().acquire_owned().await else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "internal",
            "the server is stopping",
        );
    };
    let store = uploads.store.clone();
    let header = ChunkHeader {
        seq,
        first_sample,
        samples,
        sha256,
    };
    let result = blocking(
        &state,
        move || {
            store.authorize(take_id, &token)?;
            store.put_chunk(take_id, header, &body)
        },
        |ack| Some(ack.take.clone()),
    )
    .await;
    match result {
        Ok(ack) => Json(json!({
                "take_id": take_id,
                "seq": seq,
                "received_samples": ack.received_samples,
                "duplicate": ack.duplicate,
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// A take as its uploader sees it: its info and the chunks the server holds.
pub async fn get_take(
    State(state): State<AppState>,
    Path(take_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (take_id, token) = match take_and_token(&take_id, &headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let store = state.takes.store.clone();
    match blocking(
        &state,
        move || {
            let take = store.authorize(take_id, &token)?;
            Ok((take, store.chunks(take_id)?))
        },
        |_| None,
    )
    .await
    {
        Ok((take, chunks)) => {
            Json(json!({ "take": take_info(&take), "chunks": chunks })).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct End {
    samples: u64,
}

pub async fn end_take(
    State(state): State<AppState>,
    Path(take_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (take_id, token) = match take_and_token(&take_id, &headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let Ok(end) = serde_json::from_slice::<End>(&body) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body is {\"samples\": <frames in the take>}",
        );
    };
    let store = state.takes.store.clone();
    match blocking(
        &state,
        move || {
            store.authorize(take_id, &token)?;
            store.end(take_id, end.samples)
        },
        |take| Some(take.clone()),
    )
    .await
    {
        Ok(take) => Json(json!({ "take": take_info(&take) })).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct Link {
    exp: Option<i64>,
    sig: Option<String>,
}

/// An assembled take's file, for a link the control plane signed (for members of its room).
pub async fn take_file(
    State(state): State<AppState>,
    Path((take_id, file)): Path<(String, String)>,
    Query(link): Query<Link>,
    request: Request<Body>,
) -> Response {
    let Some(take_id) = id(&take_id) else {
        return refused(StatusCode::NOT_FOUND, "no_such_take", "no such take");
    };
    if file != crate::takes::WAV_FILE && file != crate::takes::FLAC_FILE {
        return refused(StatusCode::NOT_FOUND, "no_such_take", "no such file");
    }
    let (Some(exp), Some(sig)) = (link.exp, link.sig) else {
        return refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this link is not signed",
        );
    };
    let signed = format!("take:{file}");
    if !secret::verify_download(&state.takes.key, take_id, &signed, exp, &sig, now_ms()) {
        return refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this link is not valid (or has expired): list the takes again",
        );
    }
    let store = state.takes.store.clone();
    let path = match blocking(&state, move || store.file_path(take_id, &file), |_| None).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("take")
        .to_string();
    let mut response = match ServeFile::new(&path).oneshot(request).await {
        Ok(r) => r.into_response(),
        Err(e) => {
            tracing::error!("take file {}: {e}", path.display());
            return refused(StatusCode::INTERNAL_SERVER_ERROR, "internal", "unreadable");
        }
    };
    let content_type = if name.ends_with(".flac") {
        "audio/flac"
    } else {
        "audio/wav"
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"take-{take_id}-{name}\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
