//! The `parley` binary: flags, sockets, HTTP(S) and the media worker.

mod config;
mod http;
mod media;
mod metrics;
mod net;
mod signalling;
mod store;
mod tls;
mod udp;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

use crate::config::Config;
use crate::media::{Command, Limits, MediaWorker};
use crate::store::Store;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub commands: mpsc::UnboundedSender<Command>,
    /// Messages refused before they reached the core (unreadable, too large, too many).
    pub signalling_errors: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("parley=info,warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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

    let media_ips = if config.media_bind.is_empty() {
        net::local_ipv4_addresses()
    } else {
        config.media_bind.clone()
    };
    let store = std::sync::Arc::new(Store::open(&config.data_dir)?);
    let limits = Limits {
        max_participants: usize::from(config.max_participants),
        chat_max_chars: config.chat_max_chars as usize,
        chat_rate: parley_sfu::RateLimit {
            per_second: config.chat_rate,
            burst: config.chat_burst,
        },
        speaker: parley_sfu::SpeakerConfig {
            voice_level: config.speaker_voice_level,
            min_speech: std::time::Duration::from_millis(config.speaker_min_speech_ms),
            hold: std::time::Duration::from_millis(config.speaker_hold_ms),
            ..Default::default()
        },
    };
    let worker = MediaWorker::bind(
        &media_ips,
        config.media_port,
        config.public_ip,
        limits,
        config.default_room.clone(),
        store,
    )?;
    let media_addrs = worker.addresses();

    let http_listener = bind_tcp(config.http_addr, "--http-addr").await?;
    let https = match config.https_addr.0 {
        Some(addr) => {
            let (cert, key, generated) = match (&config.tls_cert, &config.tls_key) {
                (Some(c), Some(k)) => (c.clone(), k.clone(), false),
                _ => {
                    let files = tls::ensure_certificate(&config.data_dir)?;
                    (files.cert, files.key, files.generated)
                }
            };
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .with_context(|| format!("loading TLS certificate {}", cert.display()))?;
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| port_error(addr, "--https-addr", e))?;
            listener.set_nonblocking(true)?;
            if generated {
                tracing::info!("made a self-signed certificate: {}", cert.display());
            }
            Some((listener, tls))
        }
        None => None,
    };

    let (commands, command_rx) = mpsc::unbounded_channel();
    let _media_thread = worker.spawn(command_rx, commands.clone())?;
    let app = http::router(AppState {
        commands,
        signalling_errors: Default::default(),
    });

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
    let media: Vec<_> = media_addrs.iter().map(|a| a.to_string()).collect();
    println!("  media (UDP):      {}", media.join(", "));
    println!("  data:             {}", config.data_dir.display());

    let http_app = app.clone();
    let http_server = async move {
        axum::serve(http_listener, http_app)
            .await
            .context("HTTP server")
    };
    match https {
        Some((listener, tls)) => {
            let https_server = async move {
                axum_server::from_tcp_rustls(listener, tls)?
                    .serve(app.into_make_service())
                    .await
                    .context("HTTPS server")
            };
            tokio::try_join!(http_server, https_server)?;
        }
        None => http_server.await?,
    }
    Ok(())
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
