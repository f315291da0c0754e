//! The `parley` server: flags, HTTP(S), the control plane and the media workers. The binary is
//! `main.rs`; the library exists so the in-memory test network (`crates/testkit`) can drive the very
//! control plane the binary runs.
//!
//! Two planes: the control plane (`control.rs`, run by `plane.rs` on tokio) owns people, rooms, chat
//! and the placement of rooms on media workers, and alone speaks the protocol with clients; each media
//! worker (`worker.rs`, one thread per core) owns the rooms placed on it and its own UDP socket.

mod admin;
mod config;
pub mod control;
mod downloads;
mod edge;
pub mod export;
mod http;
mod metrics;
mod net;
mod outbox;
mod plane;
pub mod rate;
mod recorder;
pub mod rooms;
pub mod secret;
mod signalling;
pub mod store;
mod take_uploads;
pub mod takes;
mod tls;
mod udp;
mod worker;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::control::{Control, ControlConfig};
use crate::plane::{ControlInput, ControlPlane, INPUT_QUEUE};
use crate::store::{now_ms, Store};
use crate::worker::{MediaWorker, COMMAND_QUEUE};

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub control: mpsc::Sender<ControlInput>,
    /// Messages refused before they reached the core (unreadable, too large, too many).
    pub signalling_errors: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Who may read the status endpoints.
    pub status_access: metrics::StatusAccess,
    /// Where recordings are, and the key their download links are signed with.
    pub recordings: downloads::RecordingFiles,
    /// Packets the recorder had no room for.
    pub recorder_dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// What making recordings' files has cost.
    pub finalize_stats: std::sync::Arc<recorder::FinalizeStats>,
    /// Studio takes' uploads.
    pub takes: take_uploads::TakeUploads,
    /// Segment exports (the store they are read from; one built at a time).
    pub exports: export::Exports,
}

/// `parley admin reset-token`: a new admin token in the data dir's database, printed once.
fn reset_admin_token(data_dir: &std::path::Path) -> ExitCode {
    let result = std::fs::create_dir_all(data_dir)
        .map_err(anyhow::Error::from)
        .and_then(|()| Store::open(data_dir))
        .and_then(|store| admin::reset_token(&store));
    match result {
        Ok(token) => {
            println!("new admin token: {token}");
            println!("(shown this once; the old one no longer works. A running parley takes it within seconds.)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("parley: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Makes `path` readable by its owner only (a data dir or file made before umask was set, or by hand).
fn make_private(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if !path.exists() {
        return;
    }
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!("cannot make {} private: {e}", path.display());
    }
}

/// Runs the server as the command line says; the process's exit code.
pub fn main_with_args() -> ExitCode {
    // Everything this process creates (data dir, database and its -wal/-shm, certificate, key,
    // recordings) is for its owner only: other users of the machine must not read chat or keys.
    // SAFETY: umask only sets the process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
    let config = Config::parse();
    if let Some(config::Command::Admin {
        action: config::AdminAction::ResetToken,
    }) = &config.command
    {
        return reset_admin_token(&config.data_dir);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("parley=info,warn")),
        )
        .init();
    // Half the cores by default: the media workers (one per core) carry the load, the control plane's
    // work is small and bursty, and each thread fewer saves wake-ups. On 2 cores, one control thread
    // instead of two cut the control plane's CPU by a fifth (24 rooms of 10: 43–47 → 33–38 ticks in 10 s).
    let control_threads = config
        .control_threads
        .map_or_else(|| (cores() / 2).max(1), usize::from);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(control_threads)
        .thread_name("parley-control")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("parley: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    // The umask covers what is made from now on; these may be older, or made by someone else.
    make_private(&config.data_dir, 0o700);
    for file in [
        "parley.sqlite3",
        "parley.sqlite3-wal",
        "parley.sqlite3-shm",
        "takes.db",
        "takes.db-wal",
        "takes.db-shm",
        "tls/key.pem",
    ] {
        make_private(&config.data_dir.join(file), 0o600);
    }
    let fd_limit = edge::raise_fd_limit();
    let max_connections = config
        .max_connections
        .map_or_else(|| edge::total_connections(fd_limit), |n| n as usize);
    tracing::info!(
        "open-file limit {fd_limit}: at most {max_connections} connections, {} per address",
        config.max_connections_per_ip
    );

    let media_ips = if config.media_bind.is_empty() {
        net::local_ipv4_addresses()
    } else {
        config.media_bind.clone()
    };
    let store = std::sync::Arc::new(Store::open(&config.data_dir)?);
    export::clear_stale(&config.data_dir);
    let exports = export::Exports::new(store.clone());
    let speaker = parley_sfu::SpeakerConfig {
        voice_level: config.speaker_voice_level,
        min_speech: std::time::Duration::from_millis(config.speaker_min_speech_ms),
        hold: std::time::Duration::from_millis(config.speaker_hold_ms),
        ..Default::default()
    };
    let worker_count = config.media_workers.map_or_else(cores, usize::from);
    let mut workers = Vec::with_capacity(worker_count);
    for i in 0..worker_count {
        let port = match config.media_port {
            0 => 0,
            p => u16::try_from(usize::from(p) + i).map_err(|_| {
                anyhow::anyhow!("--media-port {p} leaves no room for {worker_count} media workers")
            })?,
        };
        workers.push(MediaWorker::bind(
            i,
            &media_ips,
            port,
            config.public_ip,
            speaker,
        )?);
    }
    let media_addrs: Vec<Vec<SocketAddr>> = workers.iter().map(MediaWorker::addresses).collect();

    let mut control_config = ControlConfig::new(worker_count);
    control_config.chat_max_chars = config.chat_max_chars as usize;
    control_config.limits = parley_proto::ServerLimits {
        room_creation: config.allow_room_creation,
        max_rooms: config.max_rooms,
        max_rooms_per_address: config.max_rooms_per_ip,
        room_idle_expiry_s: config.room_idle_expiry,
        max_participants: config.max_participants,
        chat_rate: config.chat_rate,
        chat_burst: config.chat_burst,
        chat_rate_per_address: config.chat_rate_per_ip,
        chat_burst_per_address: config.chat_burst_per_ip,
        chat_retention_days: config.chat_retention_days,
    };
    control_config
        .limits
        .validate()
        .map_err(|e| anyhow::anyhow!("limits: {e}"))?;
    control_config.default_room =
        (!config.default_room.is_empty()).then(|| config.default_room.clone());
    control_config.server_version = env!("CARGO_PKG_VERSION").to_string();
    let mut control = Control::new(control_config);
    control.set_unix_ms(now_ms());
    if let Some(json) = store.setting(control::LIMITS_SETTING)? {
        match serde_json::from_str::<parley_proto::LimitsChange>(&json)
            .map_err(|e| e.to_string())
            .and_then(|change| control.load_admin_limits(change).map(|()| change))
        {
            Ok(change) => tracing::info!(
                "the admin's limits apply over the flags: {}",
                serde_json::to_string(&change).unwrap_or_default()
            ),
            Err(e) => tracing::warn!("the admin's stored limits are not used: {e}"),
        }
    }
    if let Some(keep) = control::retention(&control.limits()) {
        tracing::info!("chat retention: messages older than {keep:?} are deleted");
    }
    let stored = store.load_rooms().context("loading rooms")?;
    let stored_names: Vec<String> = stored.iter().map(|r| r.name.clone()).collect();
    for room in stored {
        let name = room.name.clone();
        if let Err(e) = control.load_room(room) {
            tracing::warn!("stored room {name:?} skipped: {}", e.message);
        }
    }
    control.set_last_invite_id(store.last_invite_id()?);
    control.set_last_recording_id(store.last_recording_id()?);
    control.set_last_studio_ids(store.last_studio_ids()?);
    let ended = store.end_open_studio_sessions(now_ms())?;
    if ended > 0 {
        tracing::info!("{ended} studio session(s) of the last run ended when it stopped");
    }
    let download_key = admin::download_key(&store)?;
    control.set_download_key(download_key);
    let admin_token = admin::ensure_token(&store)?;
    let admin_hash = admin::token_hash(&store)?;
    control.set_admin_hash(Some(admin_hash));
    if !config.default_room.is_empty() && !stored_names.contains(&config.default_room) {
        match control.create_room(&config.default_room) {
            Ok(()) => store.add_room(&config.default_room, now_ms())?,
            Err(e) => tracing::warn!(
                "default room {:?} not created: {}",
                config.default_room,
                e.message
            ),
        }
    }

    let https = match config.https_addr.0 {
        Some(addr) => {
            let (cert, key, generated) = match (&config.tls_cert, &config.tls_key) {
                (Some(c), Some(k)) => (c.clone(), k.clone(), None),
                _ => {
                    let files = tls::ensure_certificate(&config.data_dir)?;
                    (files.cert, files.key, files.generated)
                }
            };
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .with_context(|| format!("loading TLS certificate {}", cert.display()))?;
            // HTTP/1.1 only: hyper's header timeout (the slow-loris defence) is HTTP/1's, and the
            // WebSocket is HTTP/1.1 anyway.
            let mut rustls = (*tls.get_inner()).clone();
            rustls.alpn_protocols = vec![b"http/1.1".to_vec()];
            let listener = bind_tcp(addr, "--https-addr").await?;
            if let Some(why) = generated {
                tracing::info!("made a self-signed certificate ({why}): {}", cert.display());
            }
            Some((
                listener,
                tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(rustls)),
            ))
        }
        None => None,
    };

    // Bound last: once it takes connections, the certificate is made and HTTPS listens too.
    let http_listener = bind_tcp(config.http_addr, "--http-addr").await?;

    let (inputs, input_rx) = mpsc::channel(INPUT_QUEUE);
    let (recorder_commands, recorder_rx) = std::sync::mpsc::channel();
    let (packets, packets_rx) = std::sync::mpsc::sync_channel(recorder::PACKET_QUEUE);
    let tap = recorder::RecorderTap {
        packets,
        dropped: Default::default(),
    };
    let finalize_stats = std::sync::Arc::new(recorder::FinalizeStats::default());
    recorder::spawn(
        config.data_dir.clone(),
        recorder_rx,
        packets_rx,
        inputs.clone(),
        finalize_stats.clone(),
    )?;
    // Recordings the last run left unfinished are made from their journals, as interrupted.
    for (recording, room, started_at_ms) in store.unfinished_recordings()? {
        tracing::info!(recording, room = %room, "finishing a recording the last run left");
        control.note_interrupted_recording(recording, room, started_at_ms);
        let _ = recorder_commands.send(control::RecorderCommand::Recover {
            recording,
            started_at_ms,
        });
    }
    let mut worker_commands = Vec::with_capacity(worker_count);
    for worker in workers {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        worker.spawn(rx, inputs.clone(), tap.clone())?;
        worker_commands.push(tx);
    }
    let shared_admin_hash = std::sync::Arc::new(std::sync::RwLock::new(admin_hash));
    let takes = std::sync::Arc::new(
        takes::TakeStore::open(&config.data_dir, takes::TakeLimits::default())
            .map_err(|e| anyhow::anyhow!("opening the take store: {e}"))?,
    );
    {
        // Takes the last run had all the chunks of, but had not made files of yet.
        let takes = takes.clone();
        tokio::task::spawn_blocking(move || match takes.resume_assembly() {
            Ok(made) if !made.is_empty() => {
                tracing::info!("made {} take(s) the last run left", made.len())
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("takes of the last run not made: {e}"),
        });
    }
    let plane = ControlPlane::new(
        control,
        worker_commands,
        store,
        inputs.clone(),
        shared_admin_hash.clone(),
        recorder_commands,
        takes.clone(),
    )?;
    tokio::spawn(plane.run(input_rx));
    let policy = edge::Policy::new(edge::PolicyConfig {
        http: http_listener.local_addr()?,
        https: https.as_ref().and_then(|(l, _)| l.local_addr().ok()),
        public_ip: config.public_ip,
        allowed_origins: config.allowed_origins.clone(),
        allowed_hosts: config.allowed_hosts.clone(),
        hsts: config.tls_cert.is_some(),
    });
    let app = http::router(
        AppState {
            control: inputs,
            signalling_errors: Default::default(),
            status_access: metrics::StatusAccess {
                admin: shared_admin_hash,
                metrics: config.metrics_token.as_deref().map(secret::hash_token),
                public: config.public_status,
            },
            recordings: downloads::RecordingFiles {
                data_dir: config.data_dir.clone(),
                key: download_key,
            },
            recorder_dropped: tap.dropped.clone(),
            finalize_stats,
            takes: take_uploads::TakeUploads {
                store: takes,
                slots: std::sync::Arc::new(tokio::sync::Semaphore::new(take_uploads::UPLOAD_SLOTS)),
                key: download_key,
            },
            exports,
        },
        std::sync::Arc::new(policy),
    );
    let slots = edge::Slots::new(config.max_connections_per_ip as usize, max_connections);
    let header_timeout = std::time::Duration::from_millis(config.header_timeout_ms);

    println!("parley {} is running", env!("CARGO_PKG_VERSION"));
    println!("  on this machine:  http://{}", config.http_addr);
    if let Some((listener, _)) = &https {
        let addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            for ip in net::lan_addresses() {
                println!(
                    "  on your network:  https://{}",
                    SocketAddr::new(ip, addr.port())
                );
            }
            println!(
                "  (https://localhost:{} works here too; accept the self-signed certificate once)",
                addr.port()
            );
        } else {
            println!("  over HTTPS:       https://{addr}");
        }
    }
    println!(
        "  media (UDP):      {} ({worker_count} worker{})",
        media_ranges(&media_addrs).join(", "),
        if worker_count == 1 { "" } else { "s" }
    );
    println!("  data:             {}", config.data_dir.display());
    if let Some(token) = &admin_token {
        println!("  admin token:      {token}");
        println!("  (shown this once: keep it. `parley admin reset-token` makes a new one.)");
    }

    let http_server = edge::serve(
        http_listener,
        None,
        app.clone(),
        slots.clone(),
        header_timeout,
    );
    let http_server = async move { http_server.await.context("HTTP server") };
    match https {
        Some((listener, tls)) => {
            let https_server = async move {
                edge::serve(listener, Some(tls), app, slots, header_timeout)
                    .await
                    .context("HTTPS server")
            };
            tokio::try_join!(http_server, https_server)?;
        }
        None => http_server.await?,
    }
    Ok(())
}

/// Each advertised address with its workers' ports: `127.0.0.1:8443-8444`.
fn media_ranges(per_worker: &[Vec<SocketAddr>]) -> Vec<String> {
    let Some(first) = per_worker.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let ports: Vec<u16> = per_worker
                .iter()
                .filter_map(|w| w.get(i).map(SocketAddr::port))
                .collect();
            let (lo, hi) = (
                ports.iter().min().copied().unwrap_or(addr.port()),
                ports.iter().max().copied().unwrap_or(addr.port()),
            );
            let contiguous = usize::from(hi - lo) + 1 == ports.len();
            match (lo == hi, contiguous) {
                (true, _) => format!("{}:{lo}", addr.ip()),
                (false, true) => format!("{}:{lo}-{hi}", addr.ip()),
                (false, false) => {
                    let list: Vec<_> = ports.iter().map(u16::to_string).collect();
                    format!("{}:{}", addr.ip(), list.join(","))
                }
            }
        })
        .collect()
}

async fn bind_tcp(addr: SocketAddr, flag: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| port_error(addr, flag, e))
}

fn port_error(addr: SocketAddr, flag: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!("{addr} is already in use: stop the other program or choose another address with {flag}")
    } else {
        anyhow::anyhow!("cannot listen on {addr} ({flag}): {e}")
    }
}

/// This machine's cores: the default count of media workers (and twice that of control-plane threads).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
