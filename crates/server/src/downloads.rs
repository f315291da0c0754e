//! `/api/recordings/<id>/<file>`: a recording's files, for those holding a link the server signed
//! (it gives links only to members of the recording's room: `control/recording.rs`). Ids and file
//! names are the server's own; anything else is refused before the disk is touched.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::store::{now_ms, recording_dir};
use crate::AppState;

#[derive(Clone)]
pub struct RecordingFiles {
    pub data_dir: PathBuf,
    pub key: [u8; 32],
}

#[derive(Deserialize)]
pub struct Link {
    exp: Option<i64>,
    sig: Option<String>,
}

/// Only names the recorder makes: `mix.ogg`, `p12-audio.ogg`, `p12.webm`, `p12.mkv`.
fn server_file_name(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    matches!(ext, "ogg" | "wav" | "flac" | "webm" | "mkv")
        && !stem.is_empty()
        && stem.len() <= 64
        && stem
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("ogg") => "audio/ogg",
        Some("wav") => "audio/wav",
        Some("flac") => "audio/flac",
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        _ => "application/octet-stream",
    }
}

pub async fn recording_file(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    Query(link): Query<Link>,
    request: Request<Body>,
) -> Response {
    let refused = |status: StatusCode, why: &'static str| (status, why).into_response();
    let Ok(id) = id.parse::<i64>() else {
        return refused(StatusCode::NOT_FOUND, "no such recording");
    };
    if id <= 0 || !server_file_name(&file) {
        return refused(StatusCode::NOT_FOUND, "no such file");
    }
    let (Some(exp), Some(sig)) = (link.exp, link.sig) else {
        return refused(
            StatusCode::FORBIDDEN,
            "this link is not signed: ask for the room's recordings again",
        );
    };
    let key = &state.recordings.key;
    if !crate::secret::verify_download(key, id, &file, exp, &sig, now_ms()) {
        return refused(
            StatusCode::FORBIDDEN,
            "this link is wrong or has expired: ask for the room's recordings again",
        );
    }
    let path = recording_dir(&state.recordings.data_dir, id).join(&file);
    // ServeFile answers Range requests (the page's player seeks) and HEAD.
    let mut response = match ServeFile::new(&path).oneshot(request).await {
        Ok(r) => r.into_response(),
        Err(e) => {
            tracing::warn!("recording file {}: {e}", path.display());
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the file could not be read",
            );
        }
    };
    if response.status() == StatusCode::NOT_FOUND {
        return refused(StatusCode::NOT_FOUND, "no such file");
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file)),
    );
    let disposition = format!("attachment; filename=\"parley-recording-{id}-{file}\"");
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_own_file_names() {
        for ok in [
            "mix.ogg",
            "p12-audio.ogg",
            "p12.webm",
            "p12.mkv",
            "mix.flac",
            "mix.wav",
        ] {
            assert!(server_file_name(ok), "{ok}");
        }
        for bad in [
            "../parley.sqlite3",
            "..",
            "p12.journal",
            "journal",
            ".ogg",
            "Mix.ogg",
            "a/b.ogg",
            "a b.ogg",
            "p12.ogg\0",
            "x.exe",
        ] {
            assert!(!server_file_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn links_are_signed_for_one_file_until_they_expire() {
        let key = [7u8; 32];
        let sig = crate::secret::sign_download(&key, 3, "mix.ogg", 5_000);
        assert!(crate::secret::verify_download(
            &key, 3, "mix.ogg", 5_000, &sig, 4_000
        ));
        assert!(!crate::secret::verify_download(
            &key, 3, "mix.ogg", 5_000, &sig, 5_001
        ));
        assert!(!crate::secret::verify_download(
            &key, 4, "mix.ogg", 5_000, &sig, 4_000
        ));
        assert!(!crate::secret::verify_download(
            &key, 3, "mix.wav", 5_000, &sig, 4_000
        ));
        assert!(!crate::secret::verify_download(
            &key, 3, "mix.ogg", 9_000, &sig, 4_000
        ));
        assert!(!crate::secret::verify_download(
            &[8u8; 32], 3, "mix.ogg", 5_000, &sig, 4_000
        ));
        assert!(!crate::secret::verify_download(
            &key, 3, "mix.ogg", 5_000, "x", 4_000
        ));
    }
}
