//! The server's room recordings from a session: start, stop, list, and download their files (links the
//! server signed for members of the room; plain HTTP, like the rest of this client).

use std::path::{Path, PathBuf};
use std::time::Duration;

use parley_proto::{ClientMessage, RecordingInfo, RecordingNow, RecordingState, ServerMessage};

use crate::session::Session;
use crate::ClientError;

/// Starts the room's recording; returns it as everyone in the room now sees it.
pub async fn start(session: &Session) -> Result<RecordingNow, ClientError> {
    let id = session.next_request_id();
    match session
        .request(ClientMessage::RecordingStart { id: Some(id) })
        .await?
    {
        ServerMessage::RecordingState {
            recording: Some(r), ..
        } => Ok(*r),
        other => Err(ClientError::Protocol(format!(
            "expected recording_state, got {other:?}"
        ))),
    }
}

/// Stops the room's recording.
pub async fn stop(session: &Session) -> Result<(), ClientError> {
    let id = session.next_request_id();
    match session
        .request(ClientMessage::RecordingStop { id: Some(id) })
        .await?
    {
        ServerMessage::RecordingState {
            recording: None, ..
        } => Ok(()),
        other => Err(ClientError::Protocol(format!(
            "expected recording_state, got {other:?}"
        ))),
    }
}

/// The room's recordings, newest first, with download links.
pub async fn list(session: &Session) -> Result<Vec<RecordingInfo>, ClientError> {
    let id = session.next_request_id();
    match session
        .request(ClientMessage::ListRecordings { id: Some(id) })
        .await?
    {
        ServerMessage::Recordings { recordings, .. } => Ok(recordings),
        other => Err(ClientError::Protocol(format!(
            "expected recordings, got {other:?}"
        ))),
    }
}

/// Waits until recording `id` is made (ready, interrupted or failed), asking every half second.
pub async fn wait_until_made(
    session: &Session,
    id: i64,
    within: Duration,
) -> Result<RecordingInfo, ClientError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(r) = list(session)
            .await?
            .into_iter()
            .find(|r| r.recording_id == id)
        {
            if !matches!(
                r.state,
                RecordingState::Recording | RecordingState::Processing
            ) {
                return Ok(r);
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ClientError::Timeout(
                within.as_secs(),
                "the recording's files",
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Downloads every file of `recording` into `dir` (by the server's file names); returns the paths.
pub async fn download_all(
    server: &str,
    recording: &RecordingInfo,
    dir: &Path,
) -> Result<Vec<PathBuf>, ClientError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ClientError::io(format!("making {}", dir.display()), e))?;
    let mut paths = Vec::new();
    for file in &recording.files {
        let Some(url) = &file.url else { continue };
        let (status, body) = get(server, url).await?;
        if status != 200 {
            return Err(ClientError::Protocol(format!(
                "{url}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        // The server's names are plain (`mix.ogg`); anything else is not written.
        if !file
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            || file.name.starts_with('.')
        {
            continue;
        }
        let path = dir.join(&file.name);
        std::fs::write(&path, &body)
            .map_err(|e| ClientError::io(format!("writing {}", path.display()), e))?;
        paths.push(path);
    }
    Ok(paths)
}

/// A plain HTTP/1.1 GET of `path` on `server` (`http://host:port`): status and body.
pub async fn get(server: &str, path: &str) -> Result<(u16, Vec<u8>), ClientError> {
    let reply = crate::http::request(server, "GET", path, &[], &[]).await?;
    Ok((reply.status, reply.body))
}
