//! parley's load benchmark. Starts the server, drives it with `parley-client load` on loopback, samples
//! the server's CPU (whole and per media worker) and memory from /proc, measures a plain UDP fan-out
//! in the same run, and prints a markdown table (also written to `bench/results.md` and
//! `bench/results.csv`).
//!
//! Run: `cargo build --release --workspace && target/release/parley-bench` (`--quick` for a short run).
//! The same run compares 1 and N media workers on one step ([`workers`]) and measures the anchor, the
//! same load on Janus's videoroom ([`anchor`]; `--no-janus` skips it), and what a room recording costs
//! ([`recording`]; `--recording-only` for just that). `parley-bench load --janus URL`
//! is the load generator on Janus, which the anchor runs in its client namespace.

mod anchor;
mod fanout;
mod procstat;
mod recording;
mod uploads;
mod workers;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use parley_bench::cpus::{self, CpuList};
use parley_bench::janus::Janus;
use serde::Deserialize;

#[derive(Parser)]
#[command(
    about = "parley load benchmark: prints participants held, CPU, memory, latency and join time",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Tool>,
    /// Shorter runs and fewer steps (for a quick look; figures are noisier).
    #[arg(long)]
    quick: bool,
    /// Seconds of media per step.
    #[arg(long)]
    duration: Option<f64>,
    /// Where the tables go (`results.md`, `results.csv`).
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    #[arg(long, default_value = "target/release/parley")]
    server_bin: PathBuf,
    #[arg(long, default_value = "target/release/parley-client")]
    client_bin: PathBuf,
    /// Only run the raw UDP fan-out reference for this many rooms of 10 (25 packets/s per sender)
    /// and print it.
    #[arg(long)]
    reference_only: Option<usize>,
    /// Skip the anchor (the same load on Janus's videoroom, in network namespaces; needs root and
    /// Debian's `janus`, installed when missing).
    #[arg(long)]
    no_janus: bool,
    /// Only run the anchor (parley and Janus in namespaces) and print its section; writes no files.
    #[arg(long, conflicts_with = "no_janus")]
    anchor_only: bool,
    /// Only run the 1 vs N media workers comparison and print its section; writes no files.
    #[arg(long, conflicts_with = "anchor_only")]
    workers_only: bool,
    /// Only measure what a room recording costs (a room of 10 talkers on one media worker, without
    /// and with a recording, and making its files) and print it; writes no files.
    #[arg(long, conflicts_with_all = ["anchor_only", "workers_only"])]
    recording_only: bool,
    /// Only measure whether a studio take's upload costs the call (an artist on a narrow uplink in a
    /// network namespace; needs root) and print it; writes no files.
    #[arg(long, conflicts_with_all = ["anchor_only", "workers_only", "recording_only"])]
    uploads_only: bool,
    /// Janus configurations for the anchor, by their `event_loops` setting (0: Janus's default, a
    /// thread per handle; N: N shared loops): each is measured at every anchor step.
    #[arg(long, value_delimiter = ',', default_value = "0,2")]
    janus_event_loops: Vec<u32>,
    /// Media worker threads of the server under test (`parley --media-workers N`); default: the number
    /// of cores. One step also runs with 1 worker and with N, to compare.
    #[arg(long, value_name = "N")]
    media_workers: Option<usize>,
    /// Pin the server (parley, and Janus in the anchor) to these CPUs, e.g. `0` or `0-3`.
    #[arg(long, value_name = "LIST")]
    server_cpus: Option<CpuList>,
    /// Pin the load generator to these CPUs, e.g. `1` or `4-7`.
    #[arg(long, value_name = "LIST")]
    client_cpus: Option<CpuList>,
    /// Whether the server binary takes `--media-workers` (found out at start).
    #[arg(skip)]
    server_has_workers: bool,
}

#[derive(Subcommand)]
enum Tool {
    /// The load generator on a Janus videoroom: `parley-client load`'s flags, with Janus's HTTP API in
    /// place of --server (the anchor runs it in its client namespace).
    Load(JanusLoad),
}

#[derive(clap::Args)]
struct JanusLoad {
    /// Janus's HTTP API, e.g. http://127.0.0.2:8088/janus.
    #[arg(long, value_name = "URL")]
    janus: String,
    #[command(flatten)]
    load: parley_client::load::LoadArgs,
}

impl Args {
    /// The media workers the main table's servers run with.
    fn workers(&self) -> usize {
        self.media_workers.unwrap_or_else(cores).max(1)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// What `parley-client load --json` writes (the fields we use).
#[derive(Debug, Deserialize)]
struct LoadSummary {
    totals: Totals,
}

#[derive(Debug, Deserialize)]
struct Totals {
    participants: usize,
    connected: usize,
    streams_received: usize,
    streams_expected: usize,
    loss_percent: f64,
    latency_ms: Percentiles,
    join_ms: Percentiles,
    own_media_received: u64,
}

#[derive(Debug, Deserialize)]
struct Percentiles {
    p50: Option<f64>,
    p99: Option<f64>,
}

/// One step of one scenario, measured.
struct Row {
    scenario: &'static str,
    step: String,
    rooms: usize,
    /// The server's media workers (`None`: not parley, or it does not say).
    workers: Option<usize>,
    participants: usize,
    connected: usize,
    streams: usize,
    streams_expected: usize,
    loss_percent: f64,
    forwarded_pps: f64,
    server_cpu_percent: f64,
    /// Each media worker thread's CPU %, in worker order (empty: unknown).
    worker_cpu: Vec<f64>,
    /// Rooms with people on each worker, from `/api/status` (empty: unknown).
    rooms_per_worker: Vec<usize>,
    client_cpu_percent: f64,
    pps_per_core: f64,
    cpu_per_100_audio_streams: Option<f64>,
    rss_per_participant_kib: f64,
    latency_p50: Option<f64>,
    latency_p99: Option<f64>,
    join_p50: Option<f64>,
    join_p99: Option<f64>,
    own_media: u64,
}

impl Row {
    /// (table title, CSV key) of every column, in the order of [`Row::cells`].
    const COLUMNS: [(&'static str, &'static str); 18] = [
        ("scenario", "scenario"),
        ("step", "step"),
        ("workers", "workers"),
        ("connected", "connected"),
        ("streams", "streams"),
        ("loss %", "loss_percent"),
        ("forwarded pkt/s", "forwarded_pps"),
        ("server CPU %", "server_cpu_percent"),
        ("server CPU % per worker", "worker_cpu_percent"),
        ("client CPU %", "client_cpu_percent"),
        ("fwd pkt/s per core", "pps_per_core"),
        (
            "server CPU % per 100 audio streams",
            "cpu_per_100_audio_streams",
        ),
        ("server RSS KiB / participant", "rss_per_participant_kib"),
        ("latency p50 ms", "latency_p50_ms"),
        ("latency p99 ms", "latency_p99_ms"),
        ("join p50 ms", "join_p50_ms"),
        ("join p99 ms", "join_p99_ms"),
        ("held (<1% loss)", "held"),
    ];

    /// The row's values, formatted once for both the markdown table and the CSV (no commas inside).
    fn cells(&self) -> Vec<String> {
        vec![
            self.scenario.to_string(),
            self.step.clone(),
            self.workers.map_or("–".into(), |w| w.to_string()),
            format!("{}/{}", self.connected, self.participants),
            format!("{}/{}", self.streams, self.streams_expected),
            format!("{:.2}", self.loss_percent),
            format!("{:.0}", self.forwarded_pps),
            format!("{:.0}", self.server_cpu_percent),
            workers::percents(&self.worker_cpu),
            format!("{:.0}", self.client_cpu_percent),
            format!("{:.0}", self.pps_per_core),
            opt(self.cpu_per_100_audio_streams, 1),
            format!("{:.0}", self.rss_per_participant_kib),
            opt(self.latency_p50, 2),
            opt(self.latency_p99, 2),
            opt(self.join_p50, 0),
            opt(self.join_p99, 0),
            if self.held() { "yes" } else { "no" }.to_string(),
        ]
    }

    fn held(&self) -> bool {
        self.connected == self.participants && self.loss_percent < 1.0 && self.own_media == 0
    }
}

/// What one step measured on the server and the load generator, over `wall` seconds.
struct Measured {
    wall: f64,
    /// Packets the server forwarded (or sent) in the window.
    packets: f64,
    /// CPU seconds used in the window.
    server_cpu: f64,
    client_cpu: f64,
    /// Peak RSS minus the idle server's, bytes.
    rss_growth: u64,
    participants: usize,
    workers: Option<usize>,
    /// Each media worker's CPU %, in worker order.
    worker_cpu: Vec<f64>,
    rooms_per_worker: Vec<usize>,
}

impl Row {
    /// The row of `step`, from what the load generator reported and what was measured.
    fn measured(step: &Step, t: Totals, m: Measured) -> Row {
        let server_cpu_percent = 100.0 * m.server_cpu / m.wall;
        let audio_streams = (!step.video).then_some(t.streams_received);
        Row {
            scenario: step.scenario,
            step: step.label.clone(),
            rooms: step.rooms,
            workers: m.workers,
            participants: t.participants,
            connected: t.connected,
            streams: t.streams_received,
            streams_expected: t.streams_expected,
            loss_percent: t.loss_percent,
            forwarded_pps: m.packets / m.wall,
            server_cpu_percent,
            worker_cpu: m.worker_cpu,
            rooms_per_worker: m.rooms_per_worker,
            client_cpu_percent: 100.0 * m.client_cpu / m.wall,
            pps_per_core: m.packets / m.server_cpu.max(1e-9),
            cpu_per_100_audio_streams: audio_streams
                .filter(|s| *s > 0)
                .map(|s| 100.0 * server_cpu_percent / s as f64),
            rss_per_participant_kib: m.rss_growth as f64 / 1024.0 / m.participants.max(1) as f64,
            latency_p50: t.latency_ms.p50,
            latency_p99: t.latency_ms.p99,
            join_p50: t.join_ms.p50,
            join_p99: t.join_ms.p99,
            own_media: t.own_media_received,
        }
    }
}

/// A server under test: the testkit's harness (temp data dir, free ports, killed on drop).
struct Server {
    server: parley_testkit::server::Server,
    http: String,
    /// The media workers it was started with.
    workers: usize,
}

/// Whether the server binary takes `--media-workers` (a server with one media thread does not).
fn takes_media_workers(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--help")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--media-workers"))
}

/// The flags that give a server `workers` media workers, when it takes them.
fn workers_args(args: &Args, workers: usize) -> Vec<String> {
    if args.server_has_workers {
        vec!["--media-workers".into(), workers.to_string()]
    } else {
        Vec::new()
    }
}

/// A fresh server with `workers` media workers (if it takes the flag), on `--server-cpus`; its
/// workers take any free UDP ports.
fn start_server(args: &Args, workers: usize) -> Result<Server> {
    let cpus = args.server_cpus.clone();
    let server = parley_testkit::server::Launch::new(&args.server_bin)
        .tag("bench")
        .args(workers_args(args, workers))
        .args(["--max-participants", "250"])
        .env("RUST_LOG", "warn")
        .hook(move |cmd| cpus::pin(cmd, cpus.as_ref()))
        .try_start()
        .map_err(|e| {
            anyhow::anyhow!(
                "starting {}: {e} (build it with cargo build --release --workspace)",
                args.server_bin.display()
            )
        })?;
    let http = server.url().trim_start_matches("http://").to_string();
    Ok(Server {
        server,
        http,
        workers,
    })
}

/// The body of `GET path` with a bare HTTP/1.0 request.
fn http_get(http: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(http).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {http}\r\n\r\n").ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

/// Reads one counter from `/metrics`.
fn metric(http: &str, name: &str) -> Option<f64> {
    let body = http_get(http, "/metrics")?;
    body.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

struct Step<'a> {
    scenario: &'static str,
    label: String,
    rooms: usize,
    room_size: usize,
    talk: f64,
    video: bool,
    extra: &'a [&'a str],
}

impl Step<'static> {
    /// Scenario (a): `rooms` audio rooms of 10 people, each talking half of the time.
    fn audio_rooms(rooms: usize) -> Step<'static> {
        Step {
            scenario: "a-audio-rooms-of-10",
            label: format!("{rooms}x10"),
            rooms,
            room_size: 10,
            talk: 0.5,
            video: false,
            extra: &[],
        }
    }
}

/// Room names allow letters, digits and '-': "b-one-speaker-1+20" becomes "b-one-speaker-1-20".
fn room_prefix(step: &Step) -> String {
    format!("{}-{}", step.scenario, step.label)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Rooms with people on each of the server's media workers (empty when it does not say).
fn rooms_per_worker(http: &str, workers: usize) -> Vec<usize> {
    http_get(http, "/api/status")
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .map_or_else(Vec::new, |v| workers::rooms_per_worker(&v, workers))
}

fn run_step(args: &Args, server: &Server, step: &Step, duration: f64) -> Result<Row> {
    let pid = server.server.pid();
    let rss_idle = procstat::process_rss(pid).unwrap_or(0);
    let json = std::env::temp_dir().join(format!(
        "parley-bench-{}-{}.json",
        std::process::id(),
        step.label
    ));
    let mut cmd = Command::new(&args.client_bin);
    cmd.arg("load")
        .args(["--server", &format!("http://{}", server.http)])
        .args([
            "--rooms",
            &step.rooms.to_string(),
            "--room-size",
            &step.room_size.to_string(),
        ])
        .args([
            "--duration",
            &duration.to_string(),
            "--talk",
            &step.talk.to_string(),
        ])
        .args(["--room-prefix", &room_prefix(step)])
        .arg("--json")
        .arg(&json)
        .args(step.extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if step.video {
        cmd.arg("--video");
    }
    cpus::pin(&mut cmd, args.client_cpus.as_ref());
    let mut client = cmd
        .spawn()
        .with_context(|| format!("starting {}", args.client_bin.display()))?;
    let client_pid = client.id();

    // Sample during the media phase only: wait until the server has everyone, then measure.
    let participants = step.rooms * step.room_size;
    let join_deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server.http, "parley_participants").unwrap_or(0.0) < participants as f64 {
        if Instant::now() > join_deadline || client.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500)); // negotiation settles
    let rss = procstat::PeakRss::watch(pid, rss_idle);
    let measure = (duration - 2.5).max(1.0);
    let placed = rooms_per_worker(&server.http, server.workers);
    let fwd0 = metric(&server.http, "parley_forwarded_packets_total").unwrap_or(0.0);
    let cpu0 = procstat::process_cpu(pid).unwrap_or_default();
    let wcpu0 = procstat::media_threads_cpu(pid);
    let ccpu0 = procstat::process_cpu(client_pid).unwrap_or_default();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(measure));
    let wall = t0.elapsed().as_secs_f64();
    let fwd1 = metric(&server.http, "parley_forwarded_packets_total").unwrap_or(0.0);
    let cpu1 = procstat::process_cpu(pid).unwrap_or_default();
    let wcpu1 = procstat::media_threads_cpu(pid);
    let ccpu1 = procstat::process_cpu(client_pid).unwrap_or_default();
    let rss_peak = rss.stop();
    // The server's own count, else its media threads.
    let workers = metric(&server.http, "parley_media_workers")
        .map(|w| w as usize)
        .or((!wcpu1.is_empty()).then_some(wcpu1.len()));
    let status = client.wait()?;
    if !status.success() {
        bail!(
            "parley-client load failed ({status}) in {} {}",
            step.scenario,
            step.label
        );
    }
    let summary: LoadSummary = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let _ = std::fs::remove_file(&json);
    Ok(Row::measured(
        step,
        summary.totals,
        Measured {
            wall,
            packets: fwd1 - fwd0,
            server_cpu: (cpu1 - cpu0).as_secs_f64(),
            client_cpu: (ccpu1 - ccpu0).as_secs_f64(),
            rss_growth: rss_peak.saturating_sub(rss_idle),
            participants,
            workers,
            worker_cpu: procstat::media_workers_percent(&wcpu0, &wcpu1, wall),
            rooms_per_worker: placed,
        },
    ))
}

/// Runs growing steps until one is not held (loss, failed joins) or the server's worker is saturated.
/// Each step gets a fresh server, so its memory growth belongs to that step's participants alone.
fn sweep<'a>(
    args: &Args,
    duration: f64,
    steps: impl Iterator<Item = Step<'a>>,
    rows: &mut Vec<Row>,
) -> Result<()> {
    for step in steps {
        let server = start_server(args, args.workers())?;
        let row = run_step(args, &server, &step, duration)?;
        eprintln!(
            "  {} {}: held={} server cpu={:.0}% (workers {})",
            row.scenario,
            row.step,
            row.held(),
            row.server_cpu_percent,
            workers::percents(&row.worker_cpu)
        );
        // Saturated: a worker (or, without per-worker figures, the server) uses a whole core.
        let busiest = row
            .worker_cpu
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, c| Some(m.map_or(c, |m| m.max(c))));
        let stop = !row.held() || busiest.unwrap_or(row.server_cpu_percent) > 95.0;
        rows.push(row);
        if stop {
            break;
        }
    }
    Ok(())
}

/// How the run's processes were pinned, for the log and the table's header (empty: not at all).
fn pinning(args: &Args) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &args.server_cpus {
        parts.push(format!("server on CPU {c}"));
    }
    if let Some(c) = &args.client_cpus {
        parts.push(format!("load generator on CPU {c}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// `parley-bench load --janus URL …`: the load generator's participants in Janus videorooms.
fn janus_load(args: JanusLoad) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("parley_bench=info,parley_client=info,warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    parley_client::clock::epoch();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(args.load.run_on(&Janus, &args.janus))
                .map_err(anyhow::Error::from)
        });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley-bench load: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(Tool::Load(load)) = args.command.take() {
        return janus_load(load);
    }
    match bench(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs 1 and N media workers, alternating, on one step of scenario (a).
fn compare_workers(args: &Args, duration: f64) -> Result<workers::Comparison> {
    let n = args.workers();
    let rooms = if args.quick { 4 } else { 8 };
    let repeats = if args.quick { 1 } else { 5 };
    let step = Step::audio_rooms(rooms);
    let mut cmp = workers::Comparison {
        workers: n,
        step: step.label.clone(),
        rooms,
        conditions: format!("{duration} s per step{}", pinning(args)),
        one: Vec::new(),
        many: Vec::new(),
    };
    for _ in 0..repeats {
        for w in [1, n] {
            let server = start_server(args, w)?;
            let row = run_step(args, &server, &step, duration)?;
            eprintln!(
                "  workers {w}: {} {}: held={} server cpu={:.0}% ({}) {:.0} pkt/s per core",
                row.scenario,
                row.step,
                row.held(),
                row.server_cpu_percent,
                workers::percents(&row.worker_cpu),
                row.pps_per_core
            );
            if w == 1 {
                cmp.one.push(row);
            } else {
                cmp.many.push(row);
            }
        }
    }
    Ok(cmp)
}

fn bench(mut args: Args) -> Result<()> {
    for (flag, list) in [
        ("--server-cpus", &args.server_cpus),
        ("--client-cpus", &args.client_cpus),
    ] {
        if let Some(why) = list.as_ref().and_then(CpuList::unavailable) {
            bail!("{flag}: {why}");
        }
    }
    if let Some(rooms) = args.reference_only {
        for sinks in [fanout::Sinks::Waiting, fanout::Sinks::Polled] {
            let r = fanout::run(rooms, 10, 25, 100, sinks, Duration::from_secs(6))?;
            println!(
                "{sinks:?} receivers: {:.0} packets/s per core ({} in, {} out, {:.2} CPU-s, {} arrived)",
                r.packets_per_core_second(),
                r.packets_in,
                r.packets_out,
                r.cpu.as_secs_f64(),
                r.received_by_sinks
            );
        }
        return Ok(());
    }
    let duration = args.duration.unwrap_or(if args.quick { 6.0 } else { 12.0 });
    let cores = cores();
    args.server_has_workers = takes_media_workers(&args.server_bin);
    if !args.server_has_workers {
        eprintln!(
            "parley-bench: {} takes no --media-workers: its single media path is measured, and 1 vs N \
             workers is not compared",
            args.server_bin.display()
        );
    }
    let pinning = pinning(&args);
    eprintln!(
        "parley-bench: {cores} cores, {duration} s per step, {} media workers{pinning}",
        args.workers()
    );
    if args.anchor_only {
        if let Some(a) = anchor::run(&args, duration)? {
            println!("{}", a.markdown(cores, duration));
        }
        return Ok(());
    }
    if args.recording_only {
        let server = start_server(&args, 1)?;
        let http = server.http.clone();
        let cost = recording::run(
            &args.client_bin,
            &server.http,
            server.server.pid(),
            duration,
            |name| metric(&http, name),
        )?;
        println!("{}", cost.markdown());
        return Ok(());
    }
    if args.uploads_only {
        println!("{}", uploads::run(&args, duration)?.markdown());
        return Ok(());
    }
    if args.workers_only {
        if !args.server_has_workers || args.workers() < 2 {
            bail!("--workers-only needs a server that takes --media-workers, and N of at least 2");
        }
        println!("{}", compare_workers(&args, duration)?.markdown());
        return Ok(());
    }
    let mut rows: Vec<Row> = Vec::new();

    // (a) audio rooms of 10, everyone talking half the time: add rooms until something gives.
    let room_steps: &[usize] = if args.quick {
        &[1, 4]
    } else {
        &[1, 2, 4, 8, 12, 16, 24]
    };
    let steps = room_steps.iter().map(|&rooms| Step::audio_rooms(rooms));
    sweep(&args, duration, steps, &mut rows)?;

    // (b) one large room: one speaker, N listeners.
    let listener_steps: &[usize] = if args.quick {
        &[20]
    } else {
        &[25, 50, 100, 200]
    };
    let steps = listener_steps.iter().map(|&listeners| Step {
        scenario: "b-one-speaker",
        label: format!("1+{listeners}"),
        rooms: 1,
        room_size: listeners + 1,
        talk: 1.0,
        video: false,
        extra: &["--speakers", "1"],
    });
    sweep(&args, duration, steps, &mut rows)?;

    // (c) video rooms of 6 at ~500 kbit/s each.
    let video_steps: &[usize] = if args.quick { &[1] } else { &[1, 2, 4] };
    let steps = video_steps.iter().map(|&rooms| Step {
        scenario: "c-video-rooms-of-6",
        label: format!("{rooms}x6"),
        rooms,
        room_size: 6,
        talk: 0.5,
        video: true,
        extra: &["--video-kbps", "500"],
    });
    sweep(&args, duration, steps, &mut rows)?;

    // The physical reference: the busiest held audio step's load (same rooms, senders, packet
    // rate and size), fanned out raw. Twice: to receivers that wait in epoll like the load
    // generator's (the work parley's kernel does in that step) and to receivers polled without
    // blocking (the kernel's floor).
    let best_row = rows
        .iter()
        .filter(|r| r.held() && r.scenario == "a-audio-rooms-of-10")
        .max_by(|a, b| a.pps_per_core.total_cmp(&b.pps_per_core));
    let (ref_rooms, ref_rate) = match best_row {
        Some(r) => {
            let rooms = r.participants / 10;
            let rate = r.forwarded_pps / (r.participants.max(1) * 9) as f64;
            (rooms.max(1), rate.round().max(1.0) as u32)
        }
        None => (8, 25),
    };
    let ref_duration = Duration::from_secs_f64(duration.min(8.0));
    let reference = fanout::run(
        ref_rooms,
        10,
        ref_rate,
        100,
        fanout::Sinks::Waiting,
        ref_duration,
    )?;
    let floor = fanout::run(
        ref_rooms,
        10,
        ref_rate,
        100,
        fanout::Sinks::Polled,
        ref_duration,
    )?;
    let best = rows
        .iter()
        .filter(|r| r.held())
        .map(|r| r.pps_per_core)
        .fold(0.0f64, f64::max);

    // 1 vs N media workers on the same step, in the same run.
    let comparison = if !args.server_has_workers {
        None
    } else if args.workers() < 2 {
        eprintln!("parley-bench: 1 media worker: no 1 vs N comparison");
        None
    } else {
        Some(compare_workers(&args, duration)?)
    };

    // The anchor: the same load on Janus, in the same run.
    let anchor = if args.no_janus {
        eprintln!("parley-bench: --no-janus: no Janus anchor in this run");
        None
    } else {
        anchor::run(&args, duration)?
    };

    // What a room recording costs: a room of 10 talkers on a fresh server with one media worker.
    let recording_cost = {
        let server = start_server(&args, 1)?;
        let http = server.http.clone();
        match recording::run(
            &args.client_bin,
            &server.http,
            server.server.pid(),
            duration,
            |name| metric(&http, name),
        ) {
            Ok(cost) => Some(cost),
            Err(e) => {
                eprintln!("parley-bench: the recording cost was not measured: {e:#}");
                None
            }
        }
    };
    // Whether a studio take's upload costs the call, on a narrow uplink.
    let upload_cost = match uploads::run(&args, duration) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("parley-bench: the upload's cost to the call was not measured: {e:#}");
            None
        }
    };
    let mut md = String::new();
    let workers_note = if args.server_has_workers {
        format!("the server with {} media workers", args.workers())
    } else {
        "a server with a single media path (no --media-workers)".to_string()
    };
    md.push_str(&format!(
        "# parley benchmark\n\n{cores} cores; load generator and server on the same machine (loopback); {duration} s per step; {workers_note}{pinning}.\n\n"
    ));
    let header: Vec<&str> = Row::COLUMNS.iter().map(|(title, _)| *title).collect();
    md.push_str(&format!("| {} |\n", header.join(" | ")));
    md.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    let mut csv = Row::COLUMNS
        .iter()
        .map(|(_, key)| *key)
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for r in &rows {
        let cells = r.cells();
        md.push_str(&format!("| {} |\n", cells.join(" | ")));
        csv.push_str(&(cells.join(",") + "\n"));
    }
    md.push_str(&format!(
        "\n**Reference (plain UDP fan-out of the same load, sendmmsg, no crypto, same run):** \
         {ref_rooms} rooms of 10, each member sending {ref_rate} packets/s of 100 bytes, every packet sent to the 9 others.\n\n\
         - receivers waiting in epoll, as the load generator's participants do: **{:.0} packets/s per core** \
         ({} in, {} out in {:.1} s, {:.2} CPU-s; {} arrived);\n\
         - receivers polled without blocking (no wake-ups; the kernel's floor): {:.0} packets/s per core.\n\n\
         **parley's best forwarding rate with SRTP in and out (held steps):** {:.0} packets/s per core \
         = **{:.0}%** of the same-receiver fan-out ({:.0}% of the polled one).\n",
        reference.packets_per_core_second(),
        reference.packets_in,
        reference.packets_out,
        reference.wall.as_secs_f64(),
        reference.cpu.as_secs_f64(),
        reference.received_by_sinks,
        floor.packets_per_core_second(),
        best,
        100.0 * best / reference.packets_per_core_second().max(1.0),
        100.0 * best / floor.packets_per_core_second().max(1.0),
    ));
    md.push_str(&workers::balance_summary(&rows));
    md.push_str(&format!(
        "\nCPU % is of one core (100 = one core busy). \"client CPU\" is the load generator, which runs on the same {cores} cores (unless pinned apart) and does the SRTP work of every simulated participant; the server's media path runs on its media worker threads (\"workers\"; each `parley-media-i` thread's CPU in \"server CPU % per worker\").\n"
    ));
    if let Some(c) = &recording_cost {
        md.push('\n');
        md.push_str(&c.markdown());
    }
    if let Some(c) = &upload_cost {
        md.push_str(&c.markdown());
    }
    if let Some(c) = &comparison {
        md.push_str(&c.markdown());
        csv.push_str(&c.csv_rows());
    }
    if let Some(a) = &anchor {
        md.push_str(&a.markdown(cores, duration));
        csv.push_str(&a.csv_rows());
    }
    println!("{md}");
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("results.md"), &md)?;
    std::fs::write(args.out.join("results.csv"), &csv)?;
    eprintln!("written to {}", args.out.join("results.md").display());
    Ok(())
}
