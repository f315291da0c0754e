//! HTTP routes: the embedded web client and the signalling WebSocket.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use std::sync::Arc;

use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::edge::{self, Policy};
use crate::{metrics, signalling, AppState};

/// Request bodies taken at most: nothing is uploaded yet, so this is only a bound.
const BODY_LIMIT: usize = 64 * 1024;

/// The browser client, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "../../web/"]
struct WebAssets;

/// Every route, behind the edge's checks; every response (refusals too) carries the security headers.
pub fn router(state: AppState, policy: Arc<Policy>) -> Router {
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
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
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
