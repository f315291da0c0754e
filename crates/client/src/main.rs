//! `parley-client`: a headless participant for parley. Plays audio into a room, records a room, or loads a
//! server with many participants. See `docs/client.md`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use parley_client::audio::{AudioSource, OggOpusSource, SyntheticVoice, WavSource};
use parley_client::call::CallConfig;
use parley_client::load;
use parley_client::session::{ClientConfig, Session, SessionEnd};
use parley_client::video::SyntheticVp8;
use parley_client::ClientError;
use parley_proto::{MediaState, Role};
use tracing_subscriber::EnvFilter;

/// A headless parley participant: bots that play or record, and a load generator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join a room and publish audio from a file or a synthetic voice (and optionally synthetic video).
    Play(PlayArgs),
    /// Join a room and write everyone's audio to one Ogg/Opus file per speaker.
    Record(RecordArgs),
    /// Run many participants in rooms of a given size and print what they received.
    Load(LoadArgs),
    /// The server's room recordings: start, stop, list, download, or record for a while and fetch.
    Recording(RecordingArgs),
    /// Studio mode: upload a WAV file as an artist's lossless take, list the session, export a segment.
    Studio(StudioArgs),
}

#[derive(Debug, Args)]
struct StudioArgs {
    #[command(subcommand)]
    action: StudioAction,
    /// The server's plain-HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    /// The room (in studio mode).
    #[arg(long, default_value = "General", global = true)]
    room: String,
    /// Display name.
    #[arg(long, default_value = "Studio bot", global = true)]
    name: String,
}

#[derive(Debug, Subcommand)]
enum StudioAction {
    /// Join as an artist and upload a WAV file as a take (in 2-second chunks, as a browser does),
    /// placed on the server's clock now; prints the made take.
    Take {
        #[arg(long)]
        wav: PathBuf,
        /// Upload pace, in times the file's own speed (1: as it plays; 0: as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        realtime: f64,
    },
    /// The session's markers, segments and takes.
    List,
    /// Download a segment's export: a zip of every track cut to it (WAV, FLAC, MP3).
    Export {
        #[arg(long)]
        segment: i64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a new studio room with an artist who talks and a listener, for --seconds, with (--upload)
    /// or without a take uploading at the browser's pace; prints the call's loss and latency as JSON
    /// (the benchmark's upload step).
    Soak {
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
        #[arg(long)]
        upload: bool,
        #[arg(long, default_value = "127.0.0.1")]
        local_ip: IpAddr,
    },
}

#[derive(Debug, Args)]
struct RecordingArgs {
    #[command(subcommand)]
    action: RecordingAction,
    /// The server's plain-HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    server: String,
    /// The room.
    #[arg(long, default_value = "General", global = true)]
    room: String,
    /// Display name (others see it: "recording started by …").
    #[arg(long, default_value = "Recorder", global = true)]
    name: String,
}

#[derive(Debug, Subcommand)]
enum RecordingAction {
    /// Start the room's recording (it runs while anyone is in the room).
    Start,
    /// Stop the room's recording.
    Stop,
    /// List the room's recordings and their files.
    List,
    /// Download a recording's files (the newest made one unless --id), waiting until they are made.
    Download {
        #[arg(long)]
        id: Option<i64>,
        #[arg(long, default_value = "recordings")]
        out: PathBuf,
    },
    /// Start a recording, stay in the room for --duration seconds, stop it and download its files.
    Run {
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        #[arg(long, default_value = "recordings")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// The server's plain-HTTP address (as printed by parley), or ws://HOST:PORT/ws.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Room to join.
    #[arg(long, default_value = "General")]
    room: String,
    /// Create the room first when it does not exist.
    #[arg(long)]
    create: bool,
    /// Local address for the media (UDP) socket.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// Stop after this many seconds (default: until the audio ends, or Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Member,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Member => Role::Member,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

#[derive(Debug, Args)]
struct PlayArgs {
    #[command(flatten)]
    common: Common,
    /// Display name.
    #[arg(long, default_value = "Bot")]
    name: String,
    /// Audio to play: a 16-bit PCM WAV file (48 kHz is sent as is; other rates are resampled) or an
    /// Ogg/Opus file (.opus/.ogg, sent without re-encoding).
    #[arg(long, conflicts_with = "synthetic")]
    file: Option<PathBuf>,
    /// Play a synthetic voice instead of a file: talk spurts and silences (DTX).
    #[arg(long)]
    synthetic: bool,
    /// Share of time the synthetic voice talks (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    talk: f64,
    /// Seed of the synthetic voice and video.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start again at the end of the file.
    #[arg(long = "loop")]
    looping: bool,
    /// Also publish synthetic VP8 video.
    #[arg(long)]
    video: bool,
    /// Synthetic video bitrate, kbit/s.
    #[arg(long, default_value_t = 500)]
    video_kbps: u32,
    /// Synthetic video frame rate.
    #[arg(long, default_value_t = 15)]
    video_fps: u32,
    /// Join with the microphone muted.
    #[arg(long)]
    muted: bool,
    /// Also record the others to this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RecordArgs {
    #[command(flatten)]
    common: Common,
    /// Display name.
    #[arg(long, default_value = "Recorder")]
    name: String,
    /// Directory for the recordings (`<participant id>-<name>.opus`).
    #[arg(long, default_value = "recordings")]
    out: PathBuf,
    /// `viewer` (receive-only, not shown as a tile) or `member`.
    #[arg(long, value_enum, default_value_t = RoleArg::Viewer)]
    role: RoleArg,
}

#[derive(Debug, Args)]
struct LoadArgs {
    /// The server's plain-HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    #[command(flatten)]
    load: load::LoadArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("parley_client=info,warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    parley_client::clock::epoch();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("parley-client: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Play(args) => play(args).await,
            Command::Record(args) => record(args).await,
            Command::Load(args) => load(args).await,
            Command::Recording(args) => recording(args).await,
            Command::Studio(args) => studio(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley-client: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn seconds(s: f64, what: &str) -> anyhow::Result<Duration> {
    if !(0.0..=86_400.0).contains(&s) {
        anyhow::bail!("{what} must be between 0 and 86400 seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

fn open_audio(args: &PlayArgs) -> anyhow::Result<Box<dyn AudioSource>> {
    if let Some(path) = &args.file {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let source: Box<dyn AudioSource> = match ext.as_str() {
            "wav" | "wave" => Box::new(WavSource::open(path, args.looping)?),
            "opus" | "ogg" | "oga" => Box::new(OggOpusSource::open(path, args.looping)?),
            _ => {
                // Sniff the content.
                let head = std::fs::read(path)
                    .map(|b| b.get(..4).map(<[u8]>::to_vec).unwrap_or_default())
                    .map_err(|e| ClientError::io(format!("reading {}", path.display()), e))?;
                match head.as_slice() {
                    b"RIFF" => Box::new(WavSource::open(path, args.looping)?),
                    b"OggS" => Box::new(OggOpusSource::open(path, args.looping)?),
                    _ => anyhow::bail!("{}: not a WAV or Ogg/Opus file", path.display()),
                }
            }
        };
        return Ok(source);
    }
    if args.synthetic {
        return Ok(Box::new(SyntheticVoice::encoded(args.seed, args.talk)?));
    }
    anyhow::bail!("choose what to play: --file FILE or --synthetic")
}

/// Runs a session until it ends by itself, the duration passes or Ctrl-C.
async fn run_session(
    mut session: Session,
    duration: Option<Duration>,
) -> anyhow::Result<SessionEnd> {
    enum Why {
        Ended(Box<Result<SessionEnd, ClientError>>),
        Stop,
    }
    let why = {
        let timer = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = session.wait() => Why::Ended(Box::new(r)),
            _ = timer => Why::Stop,
            _ = tokio::signal::ctrl_c() => Why::Stop,
        }
    };
    let end = match why {
        Why::Ended(r) => (*r)?,
        Why::Stop => session.leave().await?,
    };
    Ok(end)
}

async fn studio(args: StudioArgs) -> anyhow::Result<()> {
    use parley_client::studio;
    use parley_proto::ServerMessage;
    if let StudioAction::Soak {
        seconds,
        upload,
        local_ip,
    } = args.action
    {
        let report = studio::soak(
            &args.server,
            &args.room,
            seconds.clamp(1.0, 3600.0),
            upload,
            local_ip,
        )
        .await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let mut config = ClientConfig::new(&args.server, &args.room, &args.name);
    // Listing and exporting need no seat: a viewer (a listener in studio mode) is enough.
    if !matches!(args.action, StudioAction::Take { .. }) {
        config.role = Role::Viewer;
    }
    config.state = MediaState {
        mic_muted: true,
        camera_off: true,
        ..Default::default()
    };
    let mut session = Session::join(config).await?;
    let mut events = session.events();
    let result = async {
        match args.action {
            StudioAction::Take { wav, realtime } => {
                let clock = studio::sync_clock(&session, 8).await?;
                let take = studio::upload_wav_take(&session, &clock, &wav, realtime).await?;
                println!("{}", serde_json::to_string_pretty(&take)?);
            }
            StudioAction::Soak { .. } => {}
            StudioAction::List | StudioAction::Export { .. } => {
                let state = tokio::time::timeout(Duration::from_secs(5), async {
                    loop {
                        match events.recv().await {
                            Ok(m @ ServerMessage::Studio { .. }) => return Some(m),
                            Ok(_) => {}
                            Err(_) => return None,
                        }
                    }
                })
                .await
                .ok()
                .flatten();
                let Some(ServerMessage::Studio { state, .. }) = state else {
                    anyhow::bail!("{} is not in a studio session", args.room);
                };
                let parley_proto::StudioState {
                    session: Some(_),
                    markers,
                    segments,
                    takes,
                    ..
                } = *state
                else {
                    anyhow::bail!("{} is not in a studio session", args.room);
                };
                if let StudioAction::Export { segment, out } = args.action {
                    let url = segments
                        .iter()
                        .find(|s| s.segment_id == segment)
                        .ok_or_else(|| anyhow::anyhow!("the session has no segment {segment}"))?
                        .export_url
                        .clone()
                        .ok_or_else(|| anyhow::anyhow!("segment {segment} has not ended yet"))?;
                    let bytes = studio::download_export(session.server(), &url, &out).await?;
                    println!(
                        "exported segment {segment} to {} ({bytes} bytes)",
                        out.display()
                    );
                } else {
                    for m in markers {
                        println!(
                            "marker {}  {:.1}  {}  (by {})",
                            m.marker_id, m.at_ms, m.label, m.by
                        );
                    }
                    for g in segments {
                        let end = g.end_ms.map_or("open".to_string(), |e| format!("{e:.1}"));
                        println!(
                            "segment {}  {:.1} – {end}  {}  (by {})",
                            g.segment_id, g.start_ms, g.label, g.by
                        );
                    }
                    for t in takes {
                        println!(
                            "take {}  {}  {:?}  {} of {} frames at {} Hz",
                            t.take_id,
                            t.name,
                            t.state,
                            t.received_samples,
                            t.total_samples.map_or("?".into(), |n| n.to_string()),
                            t.sample_rate
                        );
                    }
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    let _ = session.leave().await;
    result
}

async fn recording(args: RecordingArgs) -> anyhow::Result<()> {
    use parley_client::room_recording as rec;
    let mut config = ClientConfig::new(&args.server, &args.room, &args.name);
    // Listing and downloading need no seat in the room; starting and stopping need a member.
    if matches!(
        args.action,
        RecordingAction::List | RecordingAction::Download { .. }
    ) {
        config.role = Role::Viewer;
    }
    config.state = MediaState {
        mic_muted: true,
        camera_off: true,
        ..Default::default()
    };
    let mut session = Session::join(config).await?;
    let result = async {
        match args.action {
            RecordingAction::Start => {
                let r = rec::start(&session).await?;
                println!("recording {} started by {}", r.recording_id, r.started_by);
            }
            RecordingAction::Stop => {
                rec::stop(&session).await?;
                println!("recording stopped");
            }
            RecordingAction::List => {
                for r in rec::list(&session).await? {
                    println!(
                        "{}  {}  {:.1} s  started by {}  {} file(s){}",
                        r.recording_id,
                        r.state.as_str(),
                        r.duration_ms.unwrap_or(0) as f64 / 1000.0,
                        r.started_by,
                        r.files.len(),
                        r.message.map(|m| format!("  ({m})")).unwrap_or_default()
                    );
                    for f in r.files {
                        println!("    {}  {} bytes", f.name, f.bytes);
                    }
                }
            }
            RecordingAction::Download { id, out } => {
                let id = match id {
                    Some(id) => id,
                    None => rec::list(&session)
                        .await?
                        .first()
                        .map(|r| r.recording_id)
                        .ok_or_else(|| anyhow::anyhow!("{} has no recordings", args.room))?,
                };
                let made = rec::wait_until_made(&session, id, Duration::from_secs(300)).await?;
                for path in rec::download_all(&args.server, &made, &out).await? {
                    println!("downloaded {}", path.display());
                }
            }
            RecordingAction::Run { duration, out } => {
                let r = rec::start(&session).await?;
                println!("recording {} started", r.recording_id);
                tokio::select! {
                    _ = tokio::time::sleep(seconds(duration, "--duration")?) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                rec::stop(&session).await?;
                let made = rec::wait_until_made(&session, r.recording_id, Duration::from_secs(300))
                    .await?;
                println!("recording {}: {}", made.recording_id, made.state.as_str());
                for path in rec::download_all(&args.server, &made, &out).await? {
                    println!("downloaded {}", path.display());
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    let _ = session.leave().await;
    result
}

fn print_end(end: &SessionEnd) {
    print!("{}", end.stats.report());
    for path in &end.recordings {
        println!("  recorded: {}", path.display());
    }
    println!("  ended: {}", end.reason);
}

async fn play(args: PlayArgs) -> anyhow::Result<()> {
    let audio = open_audio(&args)?;
    let duration = args
        .common
        .duration
        .map(|d| seconds(d, "--duration"))
        .transpose()?;
    let mut config = ClientConfig::new(&args.common.server, &args.common.room, &args.name);
    config.create_room = args.common.create;
    config.local_ip = args.common.local_ip;
    config.state = MediaState {
        mic_muted: args.muted,
        camera_off: !args.video,
        ..Default::default()
    };
    config.leave_when_audio_ends = true;
    config.call = CallConfig {
        role: Role::Member,
        audio: Some(audio),
        video: args.video.then(|| {
            SyntheticVp8::new(
                args.seed,
                args.video_fps,
                args.video_kbps.saturating_mul(1000),
            )
        }),
        probe: false,
        record_dir: args.out.clone(),
    };
    let session = Session::join(config).await?;
    println!(
        "joined {} as {} (participant {}), {} others there",
        session.room,
        session.name,
        session.you,
        session.participants.len()
    );
    let end = run_session(session, duration).await?;
    print_end(&end);
    Ok(())
}

async fn record(args: RecordArgs) -> anyhow::Result<()> {
    let duration = args
        .common
        .duration
        .map(|d| seconds(d, "--duration"))
        .transpose()?;
    let mut config = ClientConfig::new(&args.common.server, &args.common.room, &args.name);
    config.create_room = args.common.create;
    config.local_ip = args.common.local_ip;
    config.role = args.role.into();
    config.state = MediaState {
        mic_muted: true,
        camera_off: true,
        ..Default::default()
    };
    config.call = CallConfig {
        role: args.role.into(),
        audio: None,
        video: None,
        probe: false,
        record_dir: Some(args.out.clone()),
    };
    let session = Session::join(config).await?;
    println!(
        "recording {} as {} (participant {}) to {}",
        session.room,
        session.name,
        session.you,
        args.out.display()
    );
    let end = run_session(session, duration).await?;
    print_end(&end);
    Ok(())
}

async fn load(args: LoadArgs) -> anyhow::Result<()> {
    args.load.run_on(&load::Parley, &args.server).await?;
    Ok(())
}
