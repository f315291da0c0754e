//! Command-line flags (each with an environment variable) and their embedded defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// parley: self-hosted group voice, video and text chat in one binary.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Where parley keeps its database, certificate and recordings.
    #[arg(long, env = "PARLEY_DATA_DIR", default_value = "./parley-data")]
    pub data_dir: PathBuf,

    /// Plain-HTTP listener, meant for the person at the machine (browsers allow media on localhost).
    #[arg(long, env = "PARLEY_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// HTTPS listener for everyone else (phones and laptops on the LAN). Use "off" to disable.
    #[arg(long, env = "PARLEY_HTTPS_ADDR", default_value = "0.0.0.0:8443", value_parser = parse_optional_addr)]
    pub https_addr: OptionalAddr,

    /// PEM certificate for HTTPS; without it parley makes a self-signed one in the data dir.
    #[arg(long, env = "PARLEY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key matching --tls-cert.
    #[arg(long, env = "PARLEY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// First UDP port for media (WebRTC): media worker i uses this port + i. 0: any free ports.
    #[arg(long, env = "PARLEY_MEDIA_PORT", default_value_t = 8443)]
    pub media_port: u16,

    /// Media worker threads, each with its own rooms and UDP port. Default: one per core.
    #[arg(long, env = "PARLEY_MEDIA_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub media_workers: Option<u16>,

    /// Threads of the control plane (signalling, lobby, chat, HTTP). Default: half the cores (at least 1).
    // Its work is small next to the media's, and fewer threads cost fewer wake-ups: on 2 cores at 240
    // participants, one thread used a fifth less control-plane CPU than two (about 1% of the server's).
    #[arg(long, env = "PARLEY_CONTROL_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub control_threads: Option<u16>,

    /// Local addresses to receive media on (repeatable). Default: every IPv4 address of this machine.
    #[arg(long = "media-bind", env = "PARLEY_MEDIA_BIND", value_delimiter = ',')]
    pub media_bind: Vec<IpAddr>,

    /// Public address to advertise for media, e.g. the router's address when the media port is forwarded.
    #[arg(long, env = "PARLEY_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,

    /// Most people in one room (and, separately, most viewers).
    // At most 250: each member may publish three tracks, and the server's offer to everyone else
    // (about 2.5 KB of SDP per publisher) must stay well inside the 768 KiB message limit.
    #[arg(long, env = "PARLEY_MAX_PARTICIPANTS", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=i64::from(parley_proto::MAX_PARTICIPANTS_LIMIT)))]
    pub max_participants: u16,

    /// Longest chat message, in characters.
    #[arg(long, env = "PARLEY_CHAT_MAX_CHARS", default_value_t = parley_proto::MAX_CHAT_CHARS as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub chat_max_chars: u32,

    /// Chat messages each participant may send per second, on average.
    #[arg(long, env = "PARLEY_CHAT_RATE", default_value_t = 5.0)]
    pub chat_rate: f64,

    /// Chat messages a participant may send in a quick burst.
    #[arg(long, env = "PARLEY_CHAT_BURST", default_value_t = 10.0)]
    pub chat_burst: f64,

    /// Chat messages per second from one address, all its participants together (a class behind
    /// one router shares it).
    #[arg(long, env = "PARLEY_CHAT_RATE_PER_IP", default_value_t = 20.0)]
    pub chat_rate_per_ip: f64,

    /// Chat messages in a quick burst from one address.
    #[arg(long, env = "PARLEY_CHAT_BURST_PER_IP", default_value_t = 40.0)]
    pub chat_burst_per_ip: f64,

    /// Chat messages older than this many days are deleted (fractions allowed). 0: keep them all.
    #[arg(long, env = "PARLEY_CHAT_RETENTION_DAYS", default_value_t = 0.0)]
    pub chat_retention_days: f64,

    /// Who may create rooms: anyone, owners (people who own a room already) or admin.
    #[arg(long, env = "PARLEY_ALLOW_ROOM_CREATION", default_value = "anyone", value_parser = parse_room_creation)]
    pub allow_room_creation: parley_proto::RoomCreation,

    /// Most rooms on the server.
    #[arg(long, env = "PARLEY_MAX_ROOMS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_rooms: u32,

    /// Most rooms created from one address that exist at once.
    #[arg(long, env = "PARLEY_MAX_ROOMS_PER_IP", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_rooms_per_ip: u32,

    /// An empty room is deleted, with its chat, after this long without anyone in it (e.g. 30d,
    /// 12h, 90s; 0 or never: rooms stay). The default room stays.
    #[arg(long, env = "PARLEY_ROOM_IDLE_EXPIRY", default_value = "30d", value_parser = parse_duration_s)]
    pub room_idle_expiry: u64,

    /// Active speaker: audio at or above this level counts as voice (-dBov; smaller is louder).
    #[arg(long, env = "PARLEY_SPEAKER_VOICE_LEVEL", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=127))]
    pub speaker_voice_level: u8,

    /// Active speaker: milliseconds of continuous talk before someone takes over (coughs are shorter).
    #[arg(long, env = "PARLEY_SPEAKER_MIN_SPEECH_MS", default_value_t = 400)]
    pub speaker_min_speech_ms: u64,

    /// Active speaker: least milliseconds between two switches.
    #[arg(long, env = "PARLEY_SPEAKER_HOLD_MS", default_value_t = 1000)]
    pub speaker_hold_ms: u64,

    /// Room that exists from the start, so a first visitor has somewhere to go. Empty for none.
    #[arg(long, env = "PARLEY_DEFAULT_ROOM", default_value = "General")]
    pub default_room: String,

    /// Another origin (scheme://host[:port]) whose pages may open the WebSocket, e.g. the public URL
    /// of a reverse proxy (repeatable). Its host is allowed as a `Host` too.
    #[arg(long = "allowed-origin", env = "PARLEY_ALLOWED_ORIGIN", value_delimiter = ',', value_parser = parse_origin)]
    pub allowed_origins: Vec<String>,

    /// Another host name requests may carry in `Host` besides this machine's names and addresses
    /// (repeatable): a DNS name for this machine. Other names get 403 (DNS rebinding defence).
    #[arg(
        long = "allowed-host",
        env = "PARLEY_ALLOWED_HOST",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Most open connections (HTTP and WebSocket together) from one client address.
    #[arg(long, env = "PARLEY_MAX_CONNECTIONS_PER_IP", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,

    /// Most open connections in all. Default: the open-file limit less a reserve of 256.
    #[arg(long, env = "PARLEY_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Milliseconds a client has for its TLS handshake and for each request's headers (idle
    /// keep-alive included).
    #[arg(long, env = "PARLEY_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub header_timeout_ms: u64,

    /// Serve /status, /api/status, /api/debug and /metrics without the admin token (private rooms
    /// and addresses stay hidden from those without it).
    #[arg(long, env = "PARLEY_PUBLIC_STATUS")]
    pub public_status: bool,

    /// A token that reads /metrics only (for a Prometheus scraper), besides the admin token.
    #[arg(long, env = "PARLEY_METRICS_TOKEN")]
    pub metrics_token: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Administration on the data dir (parley itself need not run).
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminAction {
    /// Make a new admin token and print it; the old one stops working (a running parley takes the
    /// new one within seconds, and whoever was logged in with the old one is not the admin any more).
    ResetToken,
}

fn parse_room_creation(s: &str) -> Result<parley_proto::RoomCreation, String> {
    parley_proto::RoomCreation::parse(s)
        .ok_or_else(|| format!("{s}: expected anyone, owners or admin"))
}

/// `30d`, `12h`, `15m`, `90s` or plain seconds, in seconds; `0` and `never` are 0.
fn parse_duration_s(s: &str) -> Result<u64, String> {
    if s.eq_ignore_ascii_case("never") {
        return Ok(0);
    }
    let (number, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_lowercase()),
        _ => (s, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("{s}: the unit is s, m, h or d")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n <= 10 * 365 * 86_400)
        .ok_or_else(|| {
            format!("{s}: expected a duration such as 30d, 12h, 15m or 90s (at most 10 years)")
        })
}

fn parse_origin(s: &str) -> Result<String, String> {
    crate::edge::normalize_origin(s)
        .ok_or_else(|| format!("{s}: expected an origin such as https://chat.example.org"))
}

/// A listen address, or "off".
#[derive(Debug, Clone, Copy)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(OptionalAddr(None));
    }
    s.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|e| format!("{s}: {e} (expected ADDR:PORT or off)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_refuse_nonsense() {
        assert_eq!(parse_duration_s("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration_s("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration_s("15m"), Ok(900));
        assert_eq!(parse_duration_s("90s"), Ok(90));
        assert_eq!(parse_duration_s("90"), Ok(90));
        assert_eq!(parse_duration_s("never"), Ok(0));
        assert_eq!(parse_duration_s("0"), Ok(0));
        for bad in ["", "d", "-1d", "1.5h", "3w", "99999999999d", "1dd"] {
            assert!(parse_duration_s(bad).is_err(), "{bad:?} accepted");
        }
    }
}
