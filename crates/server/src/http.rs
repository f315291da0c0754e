//! HTTP routes: the embedded web client and the signalling WebSocket.

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use rust_embed::RustEmbed;

use std::sync::Arc;

use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::edge::{self, Policy};
use crate::{metrics, signalling, AppState};

/// Request bodies taken at most, but for take chunks (`take_uploads.rs`).
const BODY_LIMIT: usize = 64 * 1024;

/// The browser client, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "../../web/"]
struct WebAssets;

/// Every route, behind the edge's checks; every response (refusals too) carries the security headers.
pub fn router(state: AppState, policy: Arc<Policy>) -> Router {
    // Take chunks are the only large bodies: their routes have their own bound.
    let chunk_limit = crate::take_uploads::chunk_body_limit(&state.takes.store);
    let uploads = Router::new()
        .route(
            "/api/takes/{id}/chunks/{seq}",
            put(crate::take_uploads::put_chunk),
        )
        .layer(DefaultBodyLimit::max(chunk_limit))
        .layer(RequestBodyLimitLayer::new(chunk_limit));
    let mut router = Router::new()
        .route("/ws", get(signalling::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::prometheus))
        .route("/api/status", get(metrics::status))
        .route("/api/debug", get(metrics::debug))
        .route(
            "/api/recordings/{id}/{file}",
            get(crate::downloads::recording_file),
        )
        .route("/api/takes/{id}", get(crate::take_uploads::get_take))
        .route("/api/takes/{id}/end", post(crate::take_uploads::end_take))
        .route(
            "/api/takes/{id}/files/{file}",
            get(crate::take_uploads::take_file),
        )
        .route(
            "/api/segments/{id}/export.zip",
            get(crate::export::segment_export),
        )
        .route(
            "/api/segments/{id}/play/{file}",
            get(crate::export::segment_play),
        )
        .route("/status", get(|| async { asset("status.html") }))
        .route("/admin", get(|| async { asset("admin.html") }))
        .route("/viewer/{room}", get(|| async { asset("viewer.html") }))
        // A room's link (and, with `?invite=`, an invite): the client reads the path.
        .route("/r/{room}", get(|| async { asset("index.html") }))
        .route("/", get(|| async { asset("index.html") }))
        .route(
            "/{*path}",
            get(|Path(path): Path<String>| async move { asset(&path) }),
        )
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .merge(uploads)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(policy, edge::guard));
    for (name, value) in edge::security_headers() {
        router = router.layer(SetResponseHeaderLayer::overriding(name, value));
    }
    router
}

/// For working on the client: `PARLEY_WEB_DIR=web` serves it from that folder, read anew on every
/// request, instead of the copy compiled in (a change to the page then needs no rebuild).
fn web_dir() -> Option<&'static std::path::Path> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("PARLEY_WEB_DIR").map(std::path::PathBuf::from))
        .as_deref()
}

/// A client file: from `PARLEY_WEB_DIR` when set (plain names only: no `..`, no root), else compiled in.
fn asset_bytes(path: &str) -> Option<Vec<u8>> {
    match web_dir() {
        Some(dir) => read_in(dir, path),
        None => WebAssets::get(path).map(|file| file.data.into_owned()),
    }
}

/// The file `path` names inside `dir`, where it is a plain relative name.
fn read_in(dir: &std::path::Path, path: &str) -> Option<Vec<u8>> {
    let relative = std::path::Path::new(path);
    let plain = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return None;
    }
    std::fs::read(dir.join(relative)).ok()
}

fn asset(path: &str) -> Response {
    let Some(data) = asset_bytes(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut response = Response::new(Body::from(data));
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    // The client changes with the binary: always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod web_dir_tests {
    use super::read_in;

    #[test]
    fn only_plain_names_inside_the_folder_are_read() {
        let dir = std::env::temp_dir().join(format!("parley-webdir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a.js"), b"x").unwrap();
        assert_eq!(read_in(&dir, "sub/a.js").as_deref(), Some(&b"x"[..]));
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "sub/../sub/a.js",
            "./sub/a.js",
            "missing.js",
        ] {
            assert_eq!(read_in(&dir, bad), None, "{bad}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
