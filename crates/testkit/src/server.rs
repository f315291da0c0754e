//! The one harness for tests that run the real `parley` binary and talk to it over HTTP and WebSocket.
//!
//! [`Launch`] says how to start it (binary, extra flags, environment, a hook on the [`Command`]);
//! [`Server`] is the running process: a temporary data dir, a free HTTP port on 127.0.0.1,
//! `--https-addr off`, `--media-port 0` (each media worker takes any free UDP port) and
//! `--media-bind 127.0.0.1` unless told otherwise. It is killed (SIGKILL) when dropped, and can be
//! killed and started again on the same data dir. Its stderr goes to a file beside the data dir; a
//! test that panics while a server is alive gets that log's tail printed.
//!
//! The WebSocket helpers ([`connect`], [`next`], [`next_of`], [`send`], [`still_works`]) are the ones
//! the server's tests use: JSON text in and out, with a 5 s limit on every wait.
//!
//! ```no_run
//! # async fn demo() {
//! use parley_testkit::server::{connect, next_of, send, Server};
//! let server = Server::start("target/release/parley", &["--max-participants", "2"]);
//! let mut ws = connect(&server).await;
//! send(&mut ws, serde_json::json!({"type": "list_rooms", "id": 1})).await;
//! assert_eq!(next_of(&mut ws, "rooms").await["id"], 1);
//! # }
//! ```

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket to the server's `/ws`.
pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How long [`Launch::try_start`] waits for the HTTP port to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the WebSocket helpers wait for a message.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// A directory removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty directory under the system's temp dir; `tag` is part of its name.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "parley-test-{tag}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            free_tcp_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// A binary of this workspace built by cargo: beside the running test (`target/<profile>/deps/…` →
/// `target/<profile>/NAME`), else in the workspace's `target/release`. Panics with how to build it.
/// (Integration tests of the crate that owns the binary use `env!("CARGO_BIN_EXE_…")` instead.)
pub fn built_binary(name: &str) -> PathBuf {
    let name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|dir| dir.join(&name)));
    let in_workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/release")
        .join(&name);
    for candidate in [beside, Some(in_workspace)].into_iter().flatten() {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the {name} binary is missing: build it first with `cargo build --release --workspace` \
         (the test command builds --workspace --all-targets)"
    );
}

/// What [`Launch::hook`] takes.
pub type CommandHook = Box<dyn FnMut(&mut Command) + Send>;

/// How to start `parley`. Everything but the binary has a default (see the module docs).
pub struct Launch {
    binary: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// Without `--public-status`: the status endpoints want the admin token.
    private_status: bool,
    media_port: u16,
    media_bind: Option<String>,
    tag: String,
    hook: Option<CommandHook>,
    https: bool,
}

impl Launch {
    /// Starts without `--public-status` (the harness passes it otherwise).
    pub fn private_status(mut self) -> Launch {
        self.private_status = true;
        self
    }

    pub fn new(binary: impl Into<PathBuf>) -> Launch {
        Launch {
            binary: binary.into(),
            args: Vec::new(),
            private_status: false,
            env: Vec::new(),
            media_port: 0,
            media_bind: Some("127.0.0.1".into()),
            tag: "srv".into(),
            hook: None,
            https: false,
        }
    }

    /// Extra flags, after the harness's own (so a later `--media-workers` etc. is the caller's).
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `--media-port`: 0 (the default) lets every worker take any free port; `p` gives worker i `p + i`.
    pub fn media_port(mut self, port: u16) -> Launch {
        self.media_port = port;
        self
    }

    /// `--media-bind`; `None` leaves the flag out (the server then binds every IPv4 address).
    pub fn media_bind(mut self, bind: Option<&str>) -> Launch {
        self.media_bind = bind.map(str::to_string);
        self
    }

    /// Serves HTTPS too, on a free port on 127.0.0.1 ([`Server::https`]), instead of `--https-addr off`.
    pub fn https(mut self) -> Launch {
        self.https = true;
        self
    }

    /// Part of the temp dir's name.
    pub fn tag(mut self, tag: &str) -> Launch {
        self.tag = tag.to_string();
        self
    }

    /// Called on the [`Command`] just before each spawn (e.g. to pin the server to CPUs).
    pub fn hook(mut self, hook: impl FnMut(&mut Command) + Send + 'static) -> Launch {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Starts the server in a fresh temp dir.
    pub fn try_start(self) -> Result<Server, String> {
        let dir = TempDir::new(&self.tag);
        self.try_start_in(dir)
    }

    /// Starts the server on `dir` (its data dir is `dir/data`), e.g. one kept from a killed server.
    pub fn try_start_in(self, dir: TempDir) -> Result<Server, String> {
        let mut server = Server {
            child: None,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            https: None,
            dir: Some(dir),
            launch: self,
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn start(self) -> Server {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn start_in(self, dir: TempDir) -> Server {
        self.try_start_in(dir).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A running `parley` (see the module docs).
pub struct Server {
    child: Option<Child>,
    /// The plain-HTTP address (fresh on every start).
    pub http: SocketAddr,
    /// The HTTPS address, with [`Launch::https`] (fresh on every start).
    pub https: Option<SocketAddr>,
    dir: Option<TempDir>,
    launch: Launch,
}

impl Server {
    /// `binary` with the harness's defaults and `extra` flags.
    pub fn start(binary: impl Into<PathBuf>, extra: &[&str]) -> Server {
        Launch::new(binary).args(extra.iter().copied()).start()
    }

    /// The data dir (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().expect("the server's dir").path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir().join("stderr.log")
    }

    /// Everything the server (all its starts) wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// `ws://127.0.0.1:PORT/ws`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http)
    }

    /// The process id; panics when it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// The process's resident memory (VmRSS) in KiB, from `/proc` (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Whether the process is still running (it may have exited by itself).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: no shutdown code runs. The data dir stays for [`Server::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs (SIGKILL) and starts it again on the same data dir, with the same
    /// flags and a fresh HTTP port.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    /// Kills the server and hands over its dir, for [`Launch::start_in`].
    pub fn kill_keeping_dir(mut self) -> TempDir {
        self.kill();
        self.dir.take().expect("the server's dir")
    }

    /// Starts the server on fresh free ports. Tests run side by side pick their ports the same way, so
    /// another test's server can take ours between our check and our bind: then ours exits (and the
    /// port answered was the other's), and it starts again on other ports.
    fn spawn(&mut self) -> Result<(), String> {
        for _ in 0..4 {
            self.spawn_once()?;
            std::thread::sleep(Duration::from_millis(100));
            if self.is_running() {
                return Ok(());
            }
            self.kill();
        }
        self.spawn_once()
    }

    fn spawn_once(&mut self) -> Result<(), String> {
        let data = self.data_dir();
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("{}: {e}", self.log_path().display()))?;
        self.http = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        self.https = self
            .launch
            .https
            .then(|| SocketAddr::from(([127, 0, 0, 1], free_tcp_port())));
        let https = self.https.map_or("off".to_string(), |a| a.to_string());
        let launch = &mut self.launch;
        let mut cmd = Command::new(&launch.binary);
        cmd.arg("--data-dir")
            .arg(&data)
            .args(["--http-addr", &self.http.to_string()])
            .args(["--https-addr", &https])
            .args(["--media-port", &launch.media_port.to_string()]);
        if let Some(bind) = &launch.media_bind {
            cmd.args(["--media-bind", bind]);
        }
        // Tests and the bench read the status endpoints without the admin token.
        if !launch.private_status {
            cmd.arg("--public-status");
        }
        // Every test client comes from 127.0.0.1: the per-address caps (rooms, connections) would stop
        // a test (or the bench) that makes many. Tests of the caps give their own.
        for (flag, value) in [
            ("--max-rooms-per-ip", "1000000"),
            ("--max-rooms", "1000000"),
            ("--max-connections-per-ip", "100000"),
        ] {
            if !launch.args.iter().any(|a| a == flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(hook) = launch.hook.as_mut() {
            hook(&mut cmd);
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "starting {}: {e} (build it with `cargo build --release -p parley`)",
                launch.binary.display()
            )
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(self.http).is_err() {
            if !self.is_running() {
                let log = self.log();
                self.kill();
                return Err(format!("parley exited before listening:\n{}", tail(&log)));
            }
            if Instant::now() > deadline {
                let log = self.log();
                self.kill();
                return Err(format!(
                    "parley did not listen on {} within {START_TIMEOUT:?}:\n{}",
                    self.http,
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// A bare HTTP/1.0 `GET path`: (status, body). Status 0 when the reply was unreadable.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    /// `/metrics` as name (with labels, if any) → value. Panics on a line that is not `name value`.
    pub fn metrics(&self) -> HashMap<String, f64> {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
                let value = value.parse().unwrap_or_else(|_| panic!("{l}"));
                (name.to_string(), value)
            })
            .collect()
    }

    /// `GET path` parsed as JSON (status 200 expected).
    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && self.dir.is_some() {
            eprintln!(
                "--- parley's stderr (last lines) ---\n{}",
                tail(&self.log())
            );
        }
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A bare HTTP/1.0 `GET path` to `addr`: (status, body). Status 0 when the reply was unreadable.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(MESSAGE_TIMEOUT));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return (0, String::new());
    }
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A reply read off a socket: status, headers (names lowercase, in order) and body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads an HTTP/1 reply (head, then the body until the server closes or `Content-Length` is read).
/// Status 0 when nothing readable came back.
pub fn read_response(stream: &mut impl Read) -> RawResponse {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut head_end = None;
    loop {
        if let Some(end) = head_end {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            // A 101 has no body; a known length is read exactly (the socket may stay open).
            if head.starts_with("http/1.1 101") || length.is_some_and(|n| raw.len() >= end + n) {
                break;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if head_end.is_none() {
            head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        }
    }
    let Some(end) = head_end else {
        return RawResponse {
            status: 0,
            headers: Vec::new(),
            body: String::new(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&raw[end..]).to_string(),
    }
}

/// Sends `request` (a whole HTTP/1 request, head and body, as written) to `addr` and reads the reply.
pub fn http_request(addr: SocketAddr, request: &str) -> RawResponse {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return read_response(&mut std::io::empty());
    };
    let _ = s.set_read_timeout(Some(MESSAGE_TIMEOUT));
    if s.write_all(request.as_bytes()).is_err() {
        return read_response(&mut std::io::empty());
    }
    read_response(&mut s)
}

/// A WebSocket to `/ws`, with `welcome` and the first `rooms` already read.
pub async fn connect(server: &Server) -> Ws {
    let mut ws = connect_raw(server).await;
    assert_eq!(next_of(&mut ws, "welcome").await["type"], "welcome");
    next_of(&mut ws, "rooms").await;
    ws
}

/// A WebSocket to `/ws`, nothing read yet.
pub async fn connect_raw(server: &Server) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("websocket connects");
    ws
}

/// The next JSON message, skipping pings; panics after [`MESSAGE_TIMEOUT`] or on a close.
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(MESSAGE_TIMEOUT, ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("server sends JSON"),
            Message::Close(frame) => panic!("the server closed the socket: {frame:?}"),
            _ => {}
        }
    }
}

/// The next message of `kind`, skipping lobby news (room lists and changes) and a `welcome`.
pub async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next(ws).await;
        if v["type"] == kind {
            return v;
        }
        let lobby = [
            "rooms",
            "room_added",
            "room_updated",
            "room_removed",
            "welcome",
        ];
        assert!(
            lobby.iter().any(|t| v["type"] == *t),
            "expected {kind}, got {v}"
        );
    }
}

/// The first message that `wanted`, whatever comes before it (at most `secs`).
pub async fn first_within(
    ws: &mut Ws,
    secs: u64,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let wait = async {
        loop {
            let v = next(ws).await;
            if wanted(&v) {
                return v;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(secs), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} in {secs} s"))
}

/// Sends `request` with request id `id` and waits (5 s) for its reply, or the error sent instead.
pub async fn ask(ws: &mut Ws, mut request: Value, id: u64) -> Value {
    request["id"] = serde_json::json!(id);
    send(ws, request).await;
    first_within(ws, 5, &format!("reply to request {id}"), |v| v["id"] == id).await
}

/// The next message of `kind`, whatever comes before it (at most 5 s).
pub async fn until(ws: &mut Ws, kind: &str) -> Value {
    first_within(ws, 5, kind, |v| v["type"] == kind).await
}

/// The code of an `error` (the test fails on anything else).
pub fn code(v: &Value) -> &str {
    assert_eq!(v["type"], "error", "expected an error, got {v}");
    v["code"].as_str().unwrap_or("")
}

/// `parley admin reset-token` on `server`'s data dir: the new admin token it prints.
pub fn reset_admin_token(binary: &Path, server: &Server) -> String {
    let out = Command::new(binary)
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["admin", "reset-token"])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("new admin token: ").map(str::to_string))
        .expect("the token is printed")
}

/// Sends `v` as one text frame.
pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("websocket send");
}

/// The socket still answers: `list_rooms` gets `rooms` with its id.
pub async fn still_works(ws: &mut Ws) {
    send(ws, json!({"type": "list_rooms", "id": 999})).await;
    let v = next_of(ws, "rooms").await;
    assert_eq!(v["id"], 999, "{v}");
}
