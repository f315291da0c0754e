//! The HTTP and WebSocket edge of a running `parley`: `Host` and `Origin` checks, security headers,
//! body limit, connection limits and header timeout, protocol violations' close codes, file modes and
//! HTTPS. Every test talks to the real binary over loopback; refusals are checked first.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_testkit::server::*;
use serde_json::json;
use socket2::{Domain, Socket, Type};
use tokio_tungstenite::MaybeTlsStream;

fn start(extra: &[&str]) -> Server {
    Server::start(env!("CARGO_BIN_EXE_parley"), extra)
}

/// A WebSocket upgrade request with `host` and, if given, `origin`.
fn upgrade(host: &str, origin: Option<&str>) -> String {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\n{origin}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[test]
fn cross_origin_websockets_are_refused_and_own_origins_accepted() {
    let server = start(&[]);
    let host = server.http.to_string();
    let port = server.http.port();
    for origin in [
        "https://evil.example".to_string(),
        "null".to_string(),
        format!("http://evil.example:{port}"),
        format!("http://localhost:{}", port + 1),
        format!("https://127.0.0.1:{port}"),
    ] {
        let reply = http_request(server.http, &upgrade(&host, Some(&origin)));
        assert_eq!(reply.status, 403, "{origin}: {reply:?}");
        assert!(reply.body.contains("cross-origin"), "{reply:?}");
    }
    for origin in [
        None,
        Some(format!("http://127.0.0.1:{port}")),
        Some(format!("http://localhost:{port}")),
        Some(format!("HTTP://LOCALHOST:{port}")),
    ] {
        let reply = http_request(server.http, &upgrade(&host, origin.as_deref()));
        assert_eq!(reply.status, 101, "{origin:?}: {reply:?}");
    }
}

#[test]
fn rebinding_host_names_are_refused() {
    let server = start(&[]);
    let port = server.http.port();
    for path in ["/", "/ws", "/api/status", "/app.js"] {
        for host in [
            format!("evil.example:{port}"),
            "evil.example".to_string(),
            "10.255.255.254".to_string(),
        ] {
            let request = if path == "/ws" {
                upgrade(&host, None)
            } else {
                get(path, &host)
            };
            let reply = http_request(server.http, &request);
            assert_eq!(reply.status, 403, "{path} {host}: {reply:?}");
            assert!(reply.body.contains("host"), "{reply:?}");
            // Refusals carry the security headers too.
            assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        }
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            http_request(server.http, &get("/", &host)).status,
            200,
            "{host}"
        );
    }
    assert_eq!(
        http_request(server.http, &upgrade(&format!("localhost:{port}"), None)).status,
        101
    );
}

#[test]
fn allowed_origins_and_hosts_are_taken() {
    // Not yet allowed.
    let server = start(&[]);
    let proxied = upgrade("chat.example.org", Some("https://chat.example.org"));
    assert_eq!(http_request(server.http, &proxied).status, 403);
    drop(server);

    let server = Launch::new(env!("CARGO_BIN_EXE_parley"))
        .args(["--allowed-origin", "https://chat.example.org"])
        .env("PARLEY_ALLOWED_HOST", "parley.lan,studio.example")
        .start();
    assert_eq!(http_request(server.http, &proxied).status, 101);
    // Another origin on the allowed host is still refused.
    let other = upgrade("chat.example.org", Some("https://evil.example"));
    assert_eq!(http_request(server.http, &other).status, 403);
    for host in ["parley.lan", "studio.example:8080", "chat.example.org"] {
        assert_eq!(
            http_request(server.http, &get("/", host)).status,
            200,
            "{host}"
        );
    }
    assert_eq!(
        http_request(server.http, &get("/", "evil.example")).status,
        403
    );
}

fn assert_security_headers(what: &str, reply: &RawResponse) {
    let csp = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: CSP"));
    for part in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'self'",
    ] {
        assert!(csp.contains(part), "{what}: {csp}");
    }
    // WebAssembly may compile (`'wasm-unsafe-eval'`), script text may not (`'unsafe-eval'`).
    assert!(!csp.contains("'unsafe-eval'"), "{what}: {csp}");
    assert!(
        !csp.split(';')
            .any(|d| d.trim().starts_with("script-src") && d.contains("unsafe-inline")),
        "{what}: {csp}"
    );
    let expect = [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        (
            "permissions-policy",
            "camera=(self), microphone=(self), display-capture=(self)",
        ),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    for (name, value) in expect {
        assert_eq!(reply.header(name), Some(value), "{what}: {name}");
    }
}

#[test]
fn every_response_carries_the_security_headers_and_bodies_are_bounded() {
    let server = start(&[]);
    let host = server.http.to_string();
    for path in ["/", "/app.js", "/api/status", "/status", "/nope.js"] {
        let reply = http_request(server.http, &get(path, &host));
        assert_eq!(
            reply.status,
            if path == "/nope.js" { 404 } else { 200 },
            "{path}"
        );
        assert_security_headers(path, &reply);
        assert_eq!(
            reply.header("strict-transport-security"),
            None,
            "{path}: HSTS on plain HTTP"
        );
    }
    // There are no uploads: a large body is refused before it is read.
    let post = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\nxx"
    );
    let reply = http_request(server.http, &post);
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_security_headers("413", &reply);
}

/// An HTTPS `GET path` to `addr`, trusting `cert_pem` for `localhost`.
async fn https_get(addr: SocketAddr, cert_pem: &[u8], path: &str) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem).expect("a PEM certificate"))
        .expect("a root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(MESSAGE_TIMEOUT, tls.read_to_end(&mut raw)).await;
    read_response(&mut raw.as_slice())
}

#[tokio::test]
async fn https_sends_hsts_only_with_the_operators_certificate() {
    // The self-signed certificate: no HSTS (it would lock browsers out of an accepted exception).
    let server = Launch::new(env!("CARGO_BIN_EXE_parley")).https().start();
    let https = server.https.unwrap();
    let tls_dir = server.data_dir().join("tls");
    let cert = std::fs::read(tls_dir.join("cert.pem")).unwrap();
    let reply = https_get(https, &cert, "/").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_security_headers("https /", &reply);
    assert_eq!(reply.header("strict-transport-security"), None);

    // The same certificate given as the operator's own: HSTS on HTTPS, never on plain HTTP.
    let own = TempDir::new("own-cert");
    for f in ["cert.pem", "key.pem"] {
        std::fs::copy(tls_dir.join(f), own.path().join(f)).unwrap();
    }
    let (cert_path, key_path) = (own.path().join("cert.pem"), own.path().join("key.pem"));
    let server = Launch::new(env!("CARGO_BIN_EXE_parley"))
        .https()
        .args([
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ])
        .start();
    for path in ["/", "/app.js", "/api/status"] {
        let reply = https_get(server.https.unwrap(), &cert, path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{path}"
        );
    }
    let plain = http_request(server.http, &get("/", &server.http.to_string()));
    assert_eq!(plain.header("strict-transport-security"), None);
}

fn raise_own_fd_limit() {
    // SAFETY: plain rlimit calls on a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// A TCP connection to `addr` from `from` (any 127.x address is loopback).
fn tcp_from(from: [u8; 4], addr: SocketAddr) -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_neither_lock_others_out_nor_stay() {
    raise_own_fd_limit();
    let server = start(&["--header-timeout-ms", "1500"]);
    // 2 000 connections from 127.0.0.1 that never send a byte (a slow-loris flood).
    let started = Instant::now();
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| tcp_from([127, 0, 0, 1], server.http).into())
        .collect();
    let opened = started.elapsed();

    // Someone else, on 127.0.0.2, is served at once: the page, and a room over the WebSocket.
    let t = Instant::now();
    let mut page: TcpStream = tcp_from([127, 0, 0, 2], server.http).into();
    page.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    page.write_all(get("/", &server.http.to_string()).as_bytes())
        .unwrap();
    let reply = read_response(&mut page);
    assert_eq!(reply.status, 200, "{reply:?}");
    let socket = tcp_from([127, 0, 0, 2], server.http);
    socket.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(socket.into()).unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), MaybeTlsStream::Plain(tcp))
        .await
        .expect("the WebSocket connects");
    next_of(&mut ws, "welcome").await;
    send(
        &mut ws,
        json!({"type": "join", "id": 1, "room": "General", "name": "Ann"}),
    )
    .await;
    next_of(&mut ws, "joined").await;
    let served_in = t.elapsed();
    assert!(
        served_in < Duration::from_secs(1),
        "served in {served_in:?}"
    );

    // Every idle one is closed: those over the per-address limit at once, the rest after the
    // header timeout (1.5 s).
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut open = 0;
        for mut s in idle {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            s.set_read_timeout(Some(left)).unwrap();
            let mut b = [0u8; 64];
            match s.read(&mut b) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(_) => open += 1,
            }
        }
        open
    })
    .await
    .unwrap();
    assert_eq!(
        closed, 0,
        "idle connections still open 4 s later (opened in {opened:?})"
    );
    // The legitimate WebSocket was not touched by the header timeout.
    send(&mut ws, json!({"type": "list_rooms", "id": 999})).await;
    while next_of(&mut ws, "rooms").await["id"] != 999 {}
}

#[test]
fn connections_per_address_are_capped() {
    let server = start(&["--max-connections-per-ip", "3"]);
    // The harness's own probe connection must be gone first (a loaded machine may take a moment).
    std::thread::sleep(Duration::from_millis(500));
    let held: Vec<TcpStream> = (0..3)
        .map(|_| tcp_from([127, 0, 0, 1], server.http).into())
        .collect();
    // The fourth from the same address is closed at once, before a byte is read.
    let mut fourth: TcpStream = tcp_from([127, 0, 0, 1], server.http).into();
    fourth
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = fourth.write_all(get("/", "localhost").as_bytes());
    let reply = read_response(&mut fourth);
    assert_eq!(reply.status, 0, "{reply:?}");
    // Another address is not affected; and a place freed is free again.
    let mut other: TcpStream = tcp_from([127, 0, 0, 3], server.http).into();
    other.write_all(get("/", "localhost").as_bytes()).unwrap();
    assert_eq!(read_response(&mut other).status, 200);
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.get("/").0, 200);
}

/// A WebSocket done by hand, for frames no library would send.
fn raw_ws(server: &Server) -> TcpStream {
    let mut s = TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(upgrade(&server.http.to_string(), None).as_bytes())
        .unwrap();
    let reply = read_response(&mut s);
    assert_eq!(reply.status, 101, "{reply:?}");
    s
}

/// A client frame: `first` is FIN/RSV/opcode, `masked` as clients must, `len` as declared.
fn frame(first: u8, payload: &[u8], masked: bool, declared: Option<u64>) -> Vec<u8> {
    let mut f = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    let len = declared.unwrap_or(payload.len() as u64);
    match len {
        0..=125 => f.push(mask_bit | len as u8),
        126..=65535 => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&len.to_be_bytes());
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    if masked {
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// Reads server frames until a close frame: its code; `None` when the socket ended without one.
fn close_code(s: &mut TcpStream) -> Option<u16> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // Parse what is there.
        let mut at = 0;
        while raw.len() >= at + 2 {
            let opcode = raw[at] & 0x0f;
            let (len, header) = match raw[at + 1] & 0x7f {
                126 if raw.len() >= at + 4 => {
                    (u16::from_be_bytes([raw[at + 2], raw[at + 3]]) as usize, 4)
                }
                126 => break,
                127 => break, // the server sends nothing that large here
                n => (n as usize, 2),
            };
            if raw.len() < at + header + len {
                break;
            }
            let payload = &raw[at + header..at + header + len];
            if opcode == 0x8 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
            at += header + len;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn protocol_violations_close_with_their_codes() {
    let server = start(&[]);
    let cases: [(&str, Vec<u8>, u16); 5] = [
        (
            "invalid UTF-8 in a text frame",
            frame(0x81, &[0x7b, 0xff, 0xfe, 0x7d], true, None),
            1007,
        ),
        // Only the header: the server refuses it before the payload could arrive.
        (
            "a frame over the 1 MiB limit",
            frame(0x82, &[], true, Some(2 * 1024 * 1024)),
            1009,
        ),
        (
            "an unmasked client frame",
            frame(0x81, b"{}", false, None),
            1002,
        ),
        ("reserved bits set", frame(0xC1, b"{}", true, None), 1002),
        ("an unknown opcode", frame(0x83, b"{}", true, None), 1002),
    ];
    for (what, bytes, code) in cases {
        let mut s = raw_ws(&server);
        s.write_all(&bytes).unwrap();
        assert_eq!(close_code(&mut s), Some(code), "{what}");
    }
    // A well-formed message still works afterwards (the server is fine).
    let mut s = raw_ws(&server);
    s.write_all(&frame(0x81, br#"{"type":"list_rooms","id":7}"#, true, None))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(r#""id":7"#) {
        let n = s.read(&mut buf).expect("the reply to list_rooms");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn the_data_dir_database_and_key_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = Launch::new(env!("CARGO_BIN_EXE_parley")).https().start();
    // A write, so that the database and its WAL exist.
    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type": "create_room", "id": 1, "room": "private"}),
    )
    .await;
    next_of(&mut ws, "room_created").await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    let data = server.data_dir();
    // The harness made the dir (0755 under its umask): the server makes it private.
    assert_eq!(mode(&data).unwrap(), 0o700);
    let db = data.join("parley.sqlite3");
    assert_eq!(mode(&db).unwrap(), 0o600, "{}", db.display());
    for f in ["parley.sqlite3-wal", "parley.sqlite3-shm"] {
        if let Ok(m) = mode(&data.join(f)) {
            assert_eq!(m, 0o600, "{f}");
        }
    }
    assert_eq!(mode(&data.join("tls/key.pem")).unwrap(), 0o600);
    assert_eq!(mode(&data.join("tls")).unwrap(), 0o700);
}
