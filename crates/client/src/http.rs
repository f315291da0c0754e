//! Plain HTTP/1.1 requests to the server (downloads, take uploads): one connection per request, no TLS
//! (like the rest of this client, it talks to the server's plain-HTTP address).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ClientError;

/// Largest reply body read (a recording's file, a segment's export).
pub const MAX_REPLY: u64 = 4 << 30;

/// `http://HOST:PORT` for a server address (`http://HOST:PORT`, `ws://HOST:PORT/ws` or `HOST:PORT`).
pub fn http_base(server: &str) -> Result<String, ClientError> {
    let ws = crate::session::ws_url(server)?;
    let rest = ws.strip_prefix("ws://").unwrap_or(&ws);
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(format!("http://{host}"))
}

/// A reply: status, headers (lowercase names) and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// `method path` on `server` (`http://host:port`) with `headers` and `body`.
pub async fn request(
    server: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, ClientError> {
    let host = server
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Protocol(format!("{server}: only http:// is supported")))?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| ClientError::io(format!("connecting to {host}"), e))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| ClientError::io("sending the request", e))?;
    stream
        .write_all(body)
        .await
        .map_err(|e| ClientError::io("sending the request body", e))?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_REPLY)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| ClientError::io("reading the reply", e))?;
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(ClientError::Protocol("no HTTP reply".into()));
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = raw[end + 4..].to_vec();
    Ok(Reply {
        status,
        headers,
        body: if chunked { dechunk(&body) } else { body },
    })
}

/// A chunked body, joined (a malformed one yields what came before the damage).
pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
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

    #[test]
    fn the_http_address_of_a_server() {
        assert_eq!(
            http_base("ws://127.0.0.1:8080/ws").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            http_base("http://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9"
        );
        assert_eq!(http_base("localhost:80").unwrap(), "http://localhost:80");
    }
}
