//! A small HTTP/1.1 JSON client for Janus's REST API: one kept-alive connection (hyper), reopened when the
//! server closes it. Plain HTTP only.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use parley_client::ClientError;

use super::JanusError;

/// Largest response body accepted (Janus's SDPs for big rooms are tens of KiB).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// `http://HOST:PORT/PATH` split into the authority and the path (no trailing '/').
pub fn split_url(url: &str) -> Result<(String, String), ClientError> {
    let bad = |reason: &str| ClientError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = match url.trim().split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err(bad("only plain http:// is supported for Janus")),
        None => url.trim(),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/janus"),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let path = path.trim_end_matches('/');
    let path = if path.is_empty() { "/janus" } else { path };
    Ok((authority, path.to_string()))
}

pub struct Http {
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    connection: Option<JoinHandle<()>>,
}

impl Http {
    pub fn new(authority: &str) -> Http {
        Http {
            authority: authority.to_string(),
            sender: None,
            connection: None,
        }
    }

    async fn connect(&mut self) -> Result<(), JanusError> {
        if let Some(c) = self.connection.take() {
            c.abort();
        }
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| ClientError::io(format!("connecting to {}", self.authority), e))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| JanusError::Http(format!("{}: {e}", self.authority)))?;
        self.connection = Some(tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!("HTTP connection ended: {e}");
            }
        }));
        self.sender = Some(sender);
        Ok(())
    }

    /// A ready connection: the kept-alive one, or a new one when the server closed it.
    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, JanusError> {
        let usable = match self.sender.as_mut() {
            Some(s) if !s.is_closed() => s.ready().await.is_ok(),
            _ => false,
        };
        if !usable {
            self.sender = None;
            self.connect().await?;
        }
        self.sender
            .as_mut()
            .ok_or_else(|| JanusError::Http("no connection".into()))
    }

    /// Sends a request (a JSON body for POST) and reads the JSON reply, within `timeout`.
    pub async fn call(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, JanusError> {
        let exchange = async {
            let authority = self.authority.clone();
            let body = match body {
                Some(v) => Bytes::from(
                    serde_json::to_vec(v)
                        .map_err(|e| ClientError::Protocol(format!("cannot encode: {e}")))?,
                ),
                None => Bytes::new(),
            };
            let request = Request::builder()
                .method(method)
                .uri(path_and_query)
                .header(hyper::header::HOST, authority.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))
                .map_err(|e| JanusError::Http(format!("bad request: {e}")))?;
            let sender = self.ready().await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| JanusError::Http(format!("{authority}{path_and_query}: {e}")))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| JanusError::Http(format!("reading the reply: {e}")))?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(JanusError::Http(format!(
                    "{authority}{path_and_query}: status {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                )));
            }
            serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                JanusError::from(ClientError::Protocol(format!(
                    "unreadable JSON from {authority}{path_and_query} ({e})"
                )))
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => {
                if r.is_err() {
                    // The connection may be in an unknown state: start afresh next time.
                    self.sender = None;
                }
                r
            }
            Err(_) => {
                self.sender = None;
                Err(ClientError::Timeout(timeout.as_secs(), "an HTTP reply").into())
            }
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(c) = self.connection.take() {
            c.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.2:8088/janus").unwrap(),
            ("127.0.0.2:8088".to_string(), "/janus".to_string())
        );
        assert_eq!(
            split_url("127.0.0.2:8088").unwrap(),
            ("127.0.0.2:8088".to_string(), "/janus".to_string())
        );
        assert_eq!(
            split_url("http://h/x/").unwrap(),
            ("h:80".to_string(), "/x".to_string())
        );
        assert!(split_url("https://h:1/janus").is_err());
        assert!(split_url("http:///janus").is_err());
    }
}
