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

fn asset(path: &str) -> Response {
    let Some(file) = WebAssets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut response = Response::new(Body::from(file.data.into_owned()));
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    // The client changes with the binary: always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
