//! The server's room recordings from a session: start, stop, list, and download their files (links the
//! server signed for members of the room; plain HTTP, like the rest of this client).

use std::path::{Path, PathBuf};
use std::time::Duration;

use parley_proto::{ClientMessage, RecordingInfo, RecordingNow, RecordingState, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::session::Session;
use crate::ClientError;

/// Largest file a download takes (a long recording's mix as WAV is big).
const MAX_DOWNLOAD: u64 = 4 << 30;

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
    let host = server
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Protocol(format!("{server}: only http:// is supported")))?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| ClientError::io(format!("connecting to {host}"), e))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| ClientError::io("sending the request", e))?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_DOWNLOAD)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| ClientError::io("reading the reply", e))?;
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(ClientError::Protocol("no HTTP reply".into()));
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = raw[end + 4..].to_vec();
    Ok((status, if chunked { dechunk(&body) } else { body }))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        body = &body[line_end + 2..];
        if size == 0 || body.len() < size {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
        assert_eq!(dechunk(b"zz\r\n"), b"");
        assert_eq!(dechunk(b"10\r\nshort"), b"");
    }
}
