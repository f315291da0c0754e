//! Helpers for tests that run the real `parley` binary and talk to it over WebSocket.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Server {
    pub child: Child,
    pub http: SocketAddr,
    /// Removed when the server is dropped, unless taken by [`Server::kill_keeping_data`].
    pub data: Option<TempDir>,
    extra: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGKILL: no shutdown code runs. Returns the data dir for a restart.
    pub fn kill_keeping_data(mut self) -> (TempDir, Vec<String>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (
            self.data.take().expect("data dir"),
            std::mem::take(&mut self.extra),
        )
    }
}

pub struct TempDir(pub std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "parley-test-{tag}-{}-{}",
        std::process::id(),
        free_tcp_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub fn start(extra: &[&str]) -> Server {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    start_in(temp_dir("srv"), extra)
}

/// Starts parley on `data` (fresh ports each time).
pub fn start_in(data: TempDir, extra: Vec<String>) -> Server {
    let http: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("--data-dir")
        .arg(&data.0)
        .args(["--http-addr", &http.to_string()])
        .args(["--https-addr", "off"])
        .args(["--media-port", &free_udp_port().to_string()])
        .args(["--media-bind", "127.0.0.1"])
        .args(&extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("parley starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(http).is_err() {
        assert!(Instant::now() < deadline, "parley did not listen on {http}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        http,
        data: Some(data),
        extra,
    }
}

pub async fn connect(server: &Server) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.http))
        .await
        .expect("websocket connects");
    assert_eq!(next_of(&mut ws, "welcome").await["type"], "welcome");
    next_of(&mut ws, "rooms").await;
    ws
}

/// The next JSON message, skipping pings.
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("server sends JSON");
        }
    }
}

/// The next message of `kind`, skipping pushed room lists.
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next(ws).await;
        if v["type"] == kind {
            return v;
        }
        assert!(
            v["type"] == "rooms" || v["type"] == "welcome",
            "expected {kind}, got {v}"
        );
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

pub async fn still_works(ws: &mut Ws) {
    send(ws, json!({"type": "list_rooms", "id": 999})).await;
    let v = next_of(ws, "rooms").await;
    assert_eq!(v["id"], 999, "{v}");
}
