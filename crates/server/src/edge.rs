//! The HTTP(S) edge: which connections are taken (per address and in all), how long a client has to
//! say what it wants, which `Host` and `Origin` a request may carry, and the headers every response
//! carries. Both listeners (plain HTTP and HTTPS) go through [`serve`].

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Descriptors kept back from the connection limit: the database, media sockets, the listeners,
/// certificate files and a margin for everything else the process opens.
const FD_RESERVE: u64 = 256;
/// Each connection's kernel send buffer (Linux doubles it). Fixed rather than autotuned up to 4 MiB:
/// a client that stops reading then holds little kernel memory, and is found out (its socket full)
/// within a fraction of a second rather than after megabytes; pages and signalling need no more.
const SEND_BUFFER: usize = 64 * 1024;
/// The largest request head (line and headers) taken: there is nothing bigger to send us.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Raises the open-file soft limit to the hard limit (every connection is a descriptor) and returns
/// the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// How many connections in all, given the open-file limit.
pub fn total_connections(fd_limit: u64) -> usize {
    usize::try_from(fd_limit.saturating_sub(FD_RESERVE).max(64)).unwrap_or(usize::MAX)
}

/// Connection counts, per client address and in all.
pub struct Slots {
    per_ip: usize,
    total: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    open_total: AtomicUsize,
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// One taken connection; dropping it gives the place back.
pub struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Slots {
    pub fn new(per_ip: usize, total: usize) -> Arc<Slots> {
        Arc::new(Slots {
            per_ip,
            total,
            open: Mutex::new(HashMap::new()),
            open_total: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        })
    }

    /// A place for a connection from `ip`, or `None` when that address (or everyone) is at the limit.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.entry(ip).or_insert(0);
        if *mine >= self.per_ip || self.open_total.load(Ordering::Relaxed) >= self.total {
            if *mine == 0 {
                open.remove(&ip);
            }
            drop(open);
            self.refused(ip);
            return None;
        }
        *mine += 1;
        self.open_total.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            slots: self.clone(),
            ip,
        })
    }

    /// Counts a refusal; says so in the log at most every 10 s (a flood must not flood the log).
    fn refused(&self, ip: IpAddr) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!(
                "connection from {ip} refused: over {} from one address or {} in all ({n} refused so far)",
                self.per_ip,
                self.total
            );
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        self.slots.open_total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When bytes last went out on a connection: a writer whose socket takes nothing is stalled.
#[derive(Clone, Default)]
pub struct Activity(Arc<AtomicU64>);

fn process_start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl Activity {
    fn touch(&self) {
        let ms = process_start().elapsed().as_millis() as u64;
        self.0.store(ms, Ordering::Relaxed);
    }

    /// How long since the socket last took a byte.
    pub fn idle(&self) -> Duration {
        let now = process_start().elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// What the handlers may know about the connection a request came on.
#[derive(Clone)]
pub struct ConnInfo {
    pub https: bool,
    pub activity: Activity,
    /// The client's address: per-address limits and bans in the control plane.
    pub peer: SocketAddr,
}

/// A connection's socket, holding its [`Slot`] for as long as it lives (also once it is a WebSocket:
/// the upgraded stream owns this), and noting write progress.
struct Counted<T> {
    inner: T,
    activity: Activity,
    _slot: Slot,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts connections on `listener` for ever, over TLS when `tls` is given, and serves `app` on each
/// (HTTP/1.1, WebSocket upgrades included). A client gets `header_timeout` for its TLS handshake and
/// for each request's head, idle keep-alive included.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    slots: Arc<Slots>,
    header_timeout: Duration,
) -> io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (EMFILE) or a connection reset before it was taken: wait a
                // moment rather than spin; the listener itself is fine.
                tracing::debug!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // Over the limit: closed at once, before a byte is read.
        let Some(slot) = slots.take(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        tokio::spawn(connection(
            stream,
            peer,
            slot,
            tls.clone(),
            app.clone(),
            header_timeout,
        ));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    tls: Option<TlsAcceptor>,
    app: Router,
    header_timeout: Duration,
) {
    let activity = Activity::default();
    let io = Counted {
        inner: stream,
        activity: activity.clone(),
        _slot: slot,
    };
    let info = ConnInfo {
        https: tls.is_some(),
        activity,
        peer,
    };
    match tls {
        None => http1(io, info, app, header_timeout).await,
        Some(acceptor) => match tokio::time::timeout(header_timeout, acceptor.accept(io)).await {
            Ok(Ok(stream)) => http1(stream, info, app, header_timeout).await,
            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake: {e}"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
    }
}

async fn http1<IO>(io: IO, info: ConnInfo, app: Router, header_timeout: Duration)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(info.clone());
        app.clone().oneshot(request.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
    {
        tracing::debug!("HTTP connection: {e}");
    }
}

/// Which `Host` and `Origin` values are this server's own (DNS rebinding and cross-site WebSocket
/// defence) and whether HTTPS responses carry HSTS.
pub struct Policy {
    /// Names (lowercase, no trailing dot) that are this machine or were allowed by the operator.
    names: HashSet<String>,
    /// This machine's addresses, refreshed when one that is not known shows up (a new DHCP lease).
    ips: RwLock<(HashSet<IpAddr>, Instant)>,
    fixed_ips: Vec<IpAddr>,
    /// `scheme://host[:port]` that may open the WebSocket besides this server's own pages.
    origins: HashSet<String>,
    http_port: u16,
    https_port: Option<u16>,
    hsts: bool,
}

pub struct PolicyConfig {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub public_ip: Option<IpAddr>,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: Vec<String>,
    /// The operator gave their own certificate: HSTS is safe to send (never with a self-signed one).
    pub hsts: bool,
}

/// This machine's host name, if it has one.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end])
        .ok()?
        .trim()
        .to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

fn machine_ips() -> HashSet<IpAddr> {
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip().to_canonical())
        .collect()
}

/// `scheme://host[:port]` in one spelling: lowercase, default port left out. `None` if not an origin.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let uri: Uri = origin.trim().trim_end_matches('/').parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    if uri
        .path_and_query()
        .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
    {
        return None;
    }
    let host = uri.host()?.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    Some(match uri.port_u16() {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// The host part of a `Host` value or an origin's host: no port, no brackets, lowercase, no final dot.
fn bare_host(host: &str) -> String {
    let host = host.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Policy {
    pub fn new(config: PolicyConfig) -> Policy {
        let mut names: HashSet<String> = ["localhost".to_string()].into();
        if let Some(host) = host_name() {
            names.insert(format!("{host}.local"));
            names.insert(host);
        }
        let mut origins = HashSet::new();
        for origin in &config.allowed_origins {
            if let Some(o) = normalize_origin(origin) {
                if let Ok(uri) = o.parse::<Uri>() {
                    if let Some(host) = uri.host() {
                        names.insert(bare_host(host));
                    }
                }
                origins.insert(o);
            }
        }
        names.extend(config.allowed_hosts.iter().map(|h| bare_host(h)));
        let mut fixed_ips = vec![config.http.ip().to_canonical()];
        fixed_ips.extend(config.https.map(|a| a.ip().to_canonical()));
        fixed_ips.extend(config.public_ip.map(|ip| ip.to_canonical()));
        Policy {
            names,
            ips: RwLock::new((machine_ips(), Instant::now())),
            fixed_ips,
            origins,
            http_port: config.http.port(),
            https_port: config.https.map(|a| a.port()),
            hsts: config.hsts,
        }
    }

    /// Whether `host` (a `Host` header's host part) names this server.
    fn is_own_host(&self, host: &str) -> bool {
        let host = bare_host(host);
        let Ok(ip) = host.parse::<IpAddr>() else {
            return self.names.contains(&host);
        };
        let ip = ip.to_canonical();
        if ip.is_loopback() || (!ip.is_unspecified() && self.fixed_ips.contains(&ip)) {
            return true;
        }
        {
            let ips = self.ips.read().unwrap_or_else(|e| e.into_inner());
            if ips.0.contains(&ip) {
                return true;
            }
            if ips.1.elapsed() < Duration::from_secs(10) {
                return false;
            }
        }
        let mut ips = self.ips.write().unwrap_or_else(|e| e.into_inner());
        *ips = (machine_ips(), Instant::now());
        ips.0.contains(&ip)
    }

    fn check_host(&self, request: &Request) -> Result<(), &'static str> {
        // An absolute request target names the host too, and wins over `Host` (RFC 9112 §3.2.2).
        let host = match request.uri().host() {
            Some(h) => h.to_string(),
            None => match request.headers().get(header::HOST) {
                Some(v) => v.to_str().map_err(|_| "bad Host header")?.to_string(),
                // Only HTTP/1.0 clients leave it out, never browsers: nothing to rebind.
                None => return Ok(()),
            },
        };
        if self.is_own_host(&host) {
            Ok(())
        } else {
            Err("this server does not answer to that host name (see --allowed-host)")
        }
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        // Browsers always send Origin on a WebSocket; programs (our client, the tests) need not.
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let refused = "cross-origin WebSocket refused (see --allowed-origin)";
        let origin = origin
            .to_str()
            .ok()
            .and_then(normalize_origin)
            .ok_or(refused)?;
        if self.origins.contains(&origin) {
            return Ok(());
        }
        let uri: Uri = origin.parse().map_err(|_| refused)?;
        let own_port = match (uri.scheme_str(), uri.port_u16()) {
            (Some("http"), port) => port.unwrap_or(80) == self.http_port,
            (Some("https"), port) => Some(port.unwrap_or(443)) == self.https_port,
            _ => false,
        };
        if own_port && uri.host().is_some_and(|h| self.is_own_host(h)) {
            Ok(())
        } else {
            Err(refused)
        }
    }
}

/// Middleware: refuses requests for other hosts and cross-origin WebSocket upgrades (403), and adds
/// HSTS to HTTPS responses when the certificate is the operator's.
pub async fn guard(State(policy): State<Arc<Policy>>, request: Request, next: Next) -> Response {
    let checked = policy.check_host(&request).and_then(|()| {
        if request.uri().path() == "/ws" {
            policy.check_origin(request.headers())
        } else {
            Ok(())
        }
    });
    if let Err(why) = checked {
        tracing::debug!(
            host = ?request.headers().get(header::HOST),
            origin = ?request.headers().get(header::ORIGIN),
            "refused: {why}"
        );
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let https = request
        .extensions()
        .get::<ConnInfo>()
        .is_some_and(|c| c.https);
    let mut response = next.run(request).await;
    if https && policy.hsts {
        response.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// The Content-Security-Policy of every response. No inline scripts and no `eval`; WebAssembly may be
/// compiled (`'wasm-unsafe-eval'`: the vendored background-blur segmentation model runs as wasm).
/// Inline styles stay allowed because `web/index.html` and `web/viewer.html` hide their SVG sprite
/// with `style="display:none"`.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers every response carries (pages, assets, JSON, errors).
pub fn security_headers() -> [(header::HeaderName, HeaderValue); 6] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self)"),
        ),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(PolicyConfig {
            http: "127.0.0.1:8080".parse().unwrap(),
            https: Some("0.0.0.0:8443".parse().unwrap()),
            public_ip: Some("203.0.113.7".parse().unwrap()),
            allowed_origins: vec!["https://Chat.Example.org/".into()],
            allowed_hosts: vec!["parley.lan".into()],
            hsts: false,
        })
    }

    fn origin(p: &Policy, o: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        p.check_origin(&h).is_ok()
    }

    #[test]
    fn hosts() {
        let p = policy();
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "127.0.0.2",
            "[::1]:8443",
            "203.0.113.7:8443",
            "parley.lan",
            "chat.example.org",
            "LOCALHOST.",
        ] {
            assert!(p.is_own_host(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "0.0.0.0:8080", "198.51.100.1", "[::]"] {
            assert!(!p.is_own_host(bad), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let p = policy();
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "https://localhost:8443",
            "https://parley.lan:8443",
            "https://chat.example.org",
            "https://chat.example.org:443",
        ] {
            assert!(origin(&p, ok), "{ok}");
        }
        for bad in [
            "null",
            "https://evil.example",
            "http://localhost:9999",
            "https://localhost:8080",
            "http://chat.example.org",
            "file://",
            "http://127.0.0.1:8080/path",
        ] {
            assert!(!origin(&p, bad), "{bad}");
        }
    }

    #[test]
    fn slots_per_address_and_in_all() {
        let slots = Slots::new(2, 3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert!(slots.take(a).is_none(), "per address");
        let _b1 = slots.take(b).unwrap();
        assert!(slots.take("127.0.0.2".parse().unwrap()).is_none(), "in all");
        drop(a1);
        assert!(slots.take(a).is_some(), "given back");
    }
}
