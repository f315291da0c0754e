//! The anchor: the same load, from the same client, on Janus's videoroom (Debian's `janus`) in the same
//! run, so that parley's figures stand as ratios to Janus's on identical work.
//!
//! Janus refuses loopback for ICE, so both servers run here in a network namespace of their own, reached
//! over a veth pair from a second namespace where the load generator runs ([`parley_bench::janus::lab`]):
//! `parley-client load --server URL` for parley, `parley-bench load --janus URL` (the same load generator
//! with [`parley_bench::janus::Janus`] participants) for Janus.
//! Each step runs twice, against a fresh parley and then against a fresh Janus, under that identical
//! arrangement. Both servers' sent packets are counted on their veth (every packet they send: RTP, RTCP,
//! STUN and signalling alike); CPU and memory come from /proc as in the main table.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use parley_bench::janus::lab::{self, JanusServer, NetLab, CLIENT_IP, SERVER_IP};

use crate::{opt, procstat, room_prefix, workers_args, Args, LoadSummary, Measured, Row, Step};

/// Set by SIGINT/SIGTERM while the anchor runs: it stops, and its guards clean up the namespaces.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches SIGINT/SIGTERM until dropped (so that a Ctrl-C unwinds through the cleanup guards).
struct Signals;

impl Signals {
    fn catch() -> Signals {
        let handler: extern "C" fn(libc::c_int) = on_signal;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
            libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        }
        Signals
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        // SAFETY: restoring the default disposition.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps, waking early when interrupted.
fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        check_interrupted()?;
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
    check_interrupted()
}

/// One step measured on parley and on each Janus configuration (`None`: that run failed; the reason was
/// printed).
pub struct Pair {
    pub parley: Option<Row>,
    /// (Janus's `event_loops`, its row)
    pub janus: Vec<(u32, Option<Row>)>,
}

pub struct Anchor {
    pub pairs: Vec<Pair>,
    pub janus_version: String,
    /// How parley's media workers were set ("2 media workers").
    pub parley_workers: String,
    /// Where the processes were pinned ("server on CPU 0, load generator on CPU 1"; empty: not pinned).
    pub pinning: String,
}

/// How a Janus configuration is named in the tables.
fn janus_name(event_loops: u32) -> String {
    if event_loops == 0 {
        "Janus (default)".into()
    } else {
        format!("Janus (event_loops={event_loops})")
    }
}

/// Janus's binary, installing Debian's package when it is missing and we may.
fn ensure_janus() -> Result<PathBuf, String> {
    if let Some(p) = lab::janus_binary() {
        return Ok(p);
    }
    if let Some(why) = lab::unavailable() {
        return Err(why);
    }
    eprintln!(
        "parley-bench: janus is missing; installing Debian's package (apt-get install janus)"
    );
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "janus"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
    };
    let mut installed = install();
    if !matches!(&installed, Ok(s) if s.success()) {
        // Stale or missing package lists: update them once and try again.
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .stdout(Stdio::null())
            .status();
        installed = install();
    }
    match installed {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("apt-get install janus failed ({s})")),
        Err(e) => return Err(format!("cannot run apt-get: {e}")),
    }
    // The package may start Janus as a service on every interface: it must only run in our namespace.
    let _ = Command::new("systemctl")
        .args(["disable", "--now", "janus"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    lab::janus_binary().ok_or_else(|| "janus is still missing after apt-get install".into())
}

fn janus_version(binary: &PathBuf) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
                // "Janus version: 1102 (1.1.2)": the part in brackets.
                let v = l.strip_prefix("Janus version:")?;
                Some(
                    v.split_once('(')
                        .map_or(v, |(_, x)| x.trim_end_matches(')'))
                        .trim()
                        .to_string(),
                )
            })
        })
        .unwrap_or_else(|| "unknown version".into())
}

/// parley started in the lab's server namespace; killed when dropped.
pub(crate) struct ParleyInLab {
    child: Child,
    data: PathBuf,
    pub(crate) url: String,
}

impl Drop for ParleyInLab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

pub(crate) fn start_parley(args: &Args, lab: &NetLab, index: usize) -> Result<ParleyInLab> {
    let data = std::env::temp_dir().join(format!(
        "parley-bench-anchor-{}-{index}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    // Ports of a namespace of our own: free; new ones per step all the same (worker i of N binds
    // media_port + i).
    let workers = args.workers();
    let http_port = 18_000 + index as u16;
    let media_port = u16::try_from(20_000 + index * workers).context("too many media workers")?;
    let server_bin = std::fs::canonicalize(&args.server_bin)
        .with_context(|| format!("{} (build it first)", args.server_bin.display()))?;
    let child = lab
        .server_command(&server_bin)
        .arg("--data-dir")
        .arg(&data)
        .args(["--http-addr", &format!("{SERVER_IP}:{http_port}")])
        .args(["--https-addr", "off"])
        .args(["--media-port", &media_port.to_string()])
        .args(["--media-bind", &SERVER_IP.to_string()])
        .arg("--public-status")
        // The load generator makes every room from one address.
        .args(["--max-rooms-per-ip", "1000000", "--max-rooms", "1000000"])
        // Every simulated participant comes from the load generator's one address.
        .args(["--max-connections-per-ip", "100000"])
        .args(workers_args(args, workers))
        .args(["--max-participants", "250"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting parley in the namespace")?;
    let mut server = ParleyInLab {
        child,
        data,
        url: format!("http://{SERVER_IP}:{http_port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab::tcp_listening(server.child.id(), SERVER_IP, http_port) {
        if let Some(status) = server.child.try_wait()? {
            bail!("parley exited at start ({status})");
        }
        if Instant::now() > deadline {
            bail!("parley did not start in the namespace");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(server)
}

/// The server a step's load goes to, by its URL.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// parley's plain-HTTP address: `parley-client load --server URL`.
    Parley(&'a str),
    /// Janus's HTTP API: `parley-bench load --janus URL`.
    Janus(&'a str),
}

/// Runs one step's load against the server with process id `pid` (in the lab's server namespace).
fn measure(
    args: &Args,
    lab: &NetLab,
    pid: u32,
    target: Target,
    step: &Step,
    duration: f64,
) -> Result<Row> {
    let rss_idle = procstat::process_rss(pid).unwrap_or(0);
    let (kind, url, program) = match target {
        Target::Parley(url) => (
            "parley",
            url,
            std::fs::canonicalize(&args.client_bin)
                .with_context(|| format!("{} (build it first)", args.client_bin.display()))?,
        ),
        Target::Janus(url) => (
            "janus",
            url,
            std::env::current_exe().context("finding parley-bench itself")?,
        ),
    };
    let tag = format!("{}-{kind}-{}", std::process::id(), room_prefix(step));
    let json = std::env::temp_dir().join(format!("parley-bench-{tag}.json"));
    let ready = std::env::temp_dir().join(format!("parley-bench-{tag}.ready"));
    let _ = std::fs::remove_file(&ready);
    let mut cmd = lab.client_command(&program);
    cmd.arg("load")
        .arg(match target {
            Target::Parley(_) => "--server",
            Target::Janus(_) => "--janus",
        })
        .arg(url)
        .args(["--local-ip", &CLIENT_IP.to_string()])
        .args(["--rooms", &step.rooms.to_string()])
        .args(["--room-size", &step.room_size.to_string()])
        .args(["--duration", &duration.to_string()])
        .args(["--talk", &step.talk.to_string()])
        .args(["--room-prefix", &room_prefix(step)])
        .arg("--json")
        .arg(&json)
        .arg("--ready-file")
        .arg(&ready)
        .args(step.extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if step.video {
        cmd.arg("--video");
    }
    let client = cmd
        .spawn()
        .with_context(|| format!("starting the load generator ({})", program.display()))?;
    // Killed if we leave early.
    struct Client(Child);
    impl Drop for Client {
        fn drop(&mut self) {
            if let Ok(None) = self.0.try_wait() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let mut client = Client(client);
    let client_pid = client.0.id();

    // Measure the media phase only: from a moment after everyone has joined.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready.exists() {
        check_interrupted()?;
        if Instant::now() > deadline {
            bail!("the participants did not all join within 120 s");
        }
        if client.0.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&ready);
    sleep(Duration::from_millis(1500))?; // negotiation settles
    let rss = procstat::PeakRss::watch(pid, rss_idle);
    let window = (duration - 2.5).max(1.0);
    let sent0 = lab::tx_packets(pid, &lab.server_if).unwrap_or(0);
    let cpu0 = procstat::process_cpu(pid).unwrap_or_default();
    let wcpu0 = procstat::media_threads_cpu(pid);
    let ccpu0 = procstat::process_cpu(client_pid).unwrap_or_default();
    let t0 = Instant::now();
    let slept = sleep(Duration::from_secs_f64(window));
    let wall = t0.elapsed().as_secs_f64();
    let sent1 = lab::tx_packets(pid, &lab.server_if).unwrap_or(0);
    let cpu1 = procstat::process_cpu(pid).unwrap_or_default();
    let wcpu1 = procstat::media_threads_cpu(pid);
    let ccpu1 = procstat::process_cpu(client_pid).unwrap_or_default();
    let rss_peak = rss.stop();
    slept?;
    let deadline = Instant::now() + Duration::from_secs_f64(duration + 60.0);
    let status = loop {
        check_interrupted()?;
        if let Some(s) = client.0.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            bail!("the load generator did not end");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        bail!("the load generator failed ({status})");
    }
    let summary: LoadSummary = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let _ = std::fs::remove_file(&json);
    Ok(Row::measured(
        step,
        summary.totals,
        Measured {
            wall,
            packets: sent1.saturating_sub(sent0) as f64,
            server_cpu: (cpu1 - cpu0).as_secs_f64(),
            client_cpu: (ccpu1 - ccpu0).as_secs_f64(),
            rss_growth: rss_peak.saturating_sub(rss_idle),
            participants: step.rooms * step.room_size,
            // Janus has no parley-media threads: no worker figures.
            workers: (!wcpu1.is_empty()).then_some(wcpu1.len()),
            worker_cpu: procstat::media_workers_percent(&wcpu0, &wcpu1, wall),
            rooms_per_worker: Vec::new(),
        },
    ))
}

fn report(server: &str, step: &Step, row: &Result<Row>) {
    match row {
        Ok(r) => eprintln!(
            "  anchor {server} {} {}: held={} server cpu={:.0}% {:.0} pkt/s per core",
            r.scenario,
            r.step,
            r.held(),
            r.server_cpu_percent,
            r.pps_per_core
        ),
        Err(e) => eprintln!(
            "  anchor {server} {} {}: failed: {e:#}",
            step.scenario, step.label
        ),
    }
}

/// The anchor's steps: scenario (a) at a few sizes and scenario (c).
fn steps(quick: bool) -> Vec<Step<'static>> {
    // Up to 16 rooms: past where Janus's default configuration can keep up on two cores.
    let audio: &[usize] = if quick { &[1, 4] } else { &[1, 4, 8, 16] };
    let video: &[usize] = if quick { &[1] } else { &[1, 2] };
    let mut steps: Vec<Step<'static>> = audio
        .iter()
        .map(|&rooms| Step::audio_rooms(rooms))
        .collect();
    steps.extend(video.iter().map(|&rooms| Step {
        scenario: "c-video-rooms-of-6",
        label: format!("{rooms}x6"),
        rooms,
        room_size: 6,
        talk: 0.5,
        video: true,
        extra: &["--video-kbps", "500"],
    }));
    steps
}

/// Runs the anchor. `Ok(None)`: Janus or namespaces are unavailable here (the reason is printed and
/// the benchmark goes on without the anchor). An error means it was interrupted.
pub fn run(args: &Args, duration: f64) -> Result<Option<Anchor>> {
    let janus = match ensure_janus() {
        Ok(j) => j,
        Err(why) => {
            eprintln!("parley-bench: no Janus anchor in this run: {why}");
            return Ok(None);
        }
    };
    let janus_version = janus_version(&janus);
    let _signals = Signals::catch();
    let lab = match NetLab::new() {
        Ok(mut l) => {
            // Everything started in a namespace is pinned as asked: parley and Janus alike.
            l.server_cpus = args.server_cpus.clone();
            l.client_cpus = args.client_cpus.clone();
            l
        }
        Err(e) => {
            eprintln!(
                "parley-bench: no Janus anchor in this run: cannot make network namespaces: {e:#}"
            );
            return Ok(None);
        }
    };
    eprintln!(
        "parley-bench: anchor: parley and Janus {janus_version} in namespace {} ({SERVER_IP}), load from {} ({CLIENT_IP})",
        lab.server_ns, lab.client_ns
    );
    let mut pairs = Vec::new();
    for (i, step) in steps(args.quick).iter().enumerate() {
        check_interrupted()?;
        let parley = start_parley(args, &lab, i).and_then(|server| {
            measure(
                args,
                &lab,
                server.child.id(),
                Target::Parley(&server.url),
                step,
                duration,
            )
        });
        check_interrupted()?;
        report("parley", step, &parley);
        let mut janus = Vec::new();
        for &loops in &args.janus_event_loops {
            let name = janus_name(loops);
            let row = match JanusServer::start(&lab, loops) {
                Ok(server) => {
                    let row = measure(
                        args,
                        &lab,
                        server.pid(),
                        Target::Janus(&server.url),
                        step,
                        duration,
                    );
                    if row.is_err() {
                        eprintln!("  Janus's log ends with:\n{}", server.log_tail(10));
                    }
                    row
                }
                Err(e) if i == 0 => {
                    eprintln!(
                        "parley-bench: no Janus anchor in this run: Janus does not start: {e:#}"
                    );
                    return Ok(None);
                }
                Err(e) => Err(e),
            };
            check_interrupted()?;
            report(&name, step, &row);
            janus.push((loops, row.ok()));
        }
        pairs.push(Pair {
            parley: parley.ok(),
            janus,
        });
    }
    Ok(Some(Anchor {
        pairs,
        janus_version,
        parley_workers: if args.server_has_workers {
            format!("{} media workers", args.workers())
        } else {
            "its single media path".into()
        },
        pinning: crate::pinning(args).trim_start_matches("; ").to_string(),
    }))
}

/// `a ÷ b`, when both are there.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl Anchor {
    /// The section for `results.md`.
    pub fn markdown(&self, cores: usize, duration: f64) -> String {
        let mut md = String::from("\n## Anchor: Janus videoroom\n\n");
        md.push_str(&format!(
            "The same steps, with the same client, in the same run against Janus {} (Debian's `janus`: \
             videoroom plugin driven through its HTTP API by `parley-bench load --janus`, the load \
             generator of `parley-client load` with Janus participants; logging at warnings, like \
             parley); parley ran with {}. Janus is measured as it comes (`Janus (default)`: a thread per \
             handle) and with its `event_loops` setting (a few shared event loops instead), the \
             configuration its documentation suggests for many handles. Janus refuses loopback for ICE, \
             so for this comparison **all** servers ran in a network namespace of their own (one veth end, \
             {SERVER_IP}) and the load generator in a second one ({CLIENT_IP}); every step had a fresh \
             server, {duration} s of media, and {}. \
             Unlike the table above, \"forwarded pkt/s\" here is every packet the server sent on its \
             veth during the measurement window (RTP, RTCP, STUN, signalling), counted the same way for \
             all; the per-core and per-stream figures use it.\n\n",
            self.janus_version,
            self.parley_workers,
            if self.pinning.is_empty() {
                format!("the {cores} cores shared by server and load generator")
            } else {
                format!("the {cores} cores pinned apart ({})", self.pinning)
            },
        ));
        md.push_str(
            "Signalling differs by design and the load generator follows each server's model: a parley \
             participant has one PeerConnection (publishing and receiving, WebSocket signalling); a Janus \
             participant has two, a publisher handle and one multistream subscriber handle (each with its \
             own ICE and DTLS), with HTTP requests and a long poll. The media are identical: the same \
             synthetic Opus talk spurts (latency probes, 80 bytes every 20 ms) and the same synthetic \
             VP8, from the same seeds.\n\n",
        );
        let mut header = vec!["server"];
        header.extend(Row::COLUMNS.iter().map(|(title, _)| *title));
        md.push_str(&format!("| {} |\n", header.join(" | ")));
        md.push_str(&format!("|{}\n", "---|".repeat(header.len())));
        for p in &self.pairs {
            if let Some(r) = &p.parley {
                md.push_str(&format!("| parley | {} |\n", r.cells().join(" | ")));
            }
            for (loops, row) in &p.janus {
                if let Some(r) = row {
                    md.push_str(&format!(
                        "| {} | {} |\n",
                        janus_name(*loops),
                        r.cells().join(" | ")
                    ));
                }
            }
        }
        md.push_str(
            "\n**parley ÷ Janus, step by step** (packets per core above 1: parley forwards more per CPU \
             second; CPU and memory below 1: parley needs less). \"Held\" is the main table's criterion \
             (everyone connected, < 1% loss): a server past its capacity may still hold it while its \
             latency grows to seconds, so read the latency columns too.\n\n\
             | scenario | step | against | fwd pkt/s per core | server CPU % per 100 audio streams | \
             server CPU % | server RSS / participant | latency p50 ms (parley / Janus) | \
             latency p99 ms (parley / Janus) | join p50 ms (parley / Janus) |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let mut missing = Vec::new();
        for p in &self.pairs {
            for (loops, janus) in &p.janus {
                let (Some(a), Some(b)) = (&p.parley, janus) else {
                    let r = p.parley.as_ref().or(janus.as_ref());
                    missing.push(r.map_or_else(
                        || "a step".to_string(),
                        |r| format!("{} {} ({})", r.scenario, r.step, janus_name(*loops)),
                    ));
                    continue;
                };
                let both = |x: Option<f64>, y: Option<f64>, d: usize| {
                    format!("{} / {}", opt(x, d), opt(y, d))
                };
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    a.scenario,
                    a.step,
                    janus_name(*loops),
                    opt(ratio(Some(a.pps_per_core), Some(b.pps_per_core)), 2),
                    opt(
                        ratio(a.cpu_per_100_audio_streams, b.cpu_per_100_audio_streams),
                        2
                    ),
                    opt(
                        ratio(Some(a.server_cpu_percent), Some(b.server_cpu_percent)),
                        2
                    ),
                    opt(
                        ratio(
                            Some(a.rss_per_participant_kib),
                            Some(b.rss_per_participant_kib)
                        ),
                        2
                    ),
                    both(a.latency_p50, b.latency_p50, 2),
                    both(a.latency_p99, b.latency_p99, 2),
                    both(a.join_p50, b.join_p50, 0),
                ));
            }
        }
        md.push_str(&self.summary());
        if !missing.is_empty() {
            md.push_str(&format!(
                "\nNot compared (one of the two runs failed; see the log): {}.\n",
                missing.join(", ")
            ));
        }
        md
    }

    /// One line per Janus configuration: the range of the ratios over the steps both held, by kind of
    /// load, and the largest step each held.
    fn summary(&self) -> String {
        let mut out = String::from("\nIn short, parley relative to Janus:\n\n");
        let Some(first) = self.pairs.first() else {
            return out;
        };
        for (k, (loops, _)) in first.janus.iter().enumerate() {
            let mut parts = Vec::new();
            for (prefix, kind) in [("a-", "audio"), ("c-", "video")] {
                let held: Vec<(&Row, &Row)> = self
                    .pairs
                    .iter()
                    .filter_map(|p| Some((p.parley.as_ref()?, p.janus.get(k)?.1.as_ref()?)))
                    .filter(|(a, b)| a.scenario.starts_with(prefix) && a.held() && b.held())
                    .collect();
                if held.is_empty() {
                    continue;
                }
                let range = |f: &dyn Fn(&Row) -> f64| {
                    let r: Vec<f64> = held.iter().map(|(a, b)| f(a) / f(b).max(1e-9)).collect();
                    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = r.iter().copied().fold(0.0f64, f64::max);
                    if (hi - lo).abs() < 0.005 {
                        format!("{lo:.2}")
                    } else {
                        format!("{lo:.2}–{hi:.2}")
                    }
                };
                parts.push(format!(
                    "{kind} {}× the packets per CPU second and {}× the memory per participant",
                    range(&|r| r.pps_per_core),
                    range(&|r| r.rss_per_participant_kib)
                ));
            }
            let largest = |rows: &mut dyn Iterator<Item = Option<&Row>>| {
                rows.flatten()
                    .filter(|r| r.scenario.starts_with("a-") && r.held())
                    .max_by_key(|r| r.participants)
                    .map_or("none".to_string(), |r| {
                        format!("{} (latency p50 {} ms)", r.step, opt(r.latency_p50, 1))
                    })
            };
            let parley_largest = largest(&mut self.pairs.iter().map(|p| p.parley.as_ref()));
            let janus_largest = largest(
                &mut self
                    .pairs
                    .iter()
                    .map(|p| p.janus.get(k).and_then(|(_, r)| r.as_ref())),
            );
            out.push_str(&format!(
                "- against {}, on the steps both held: {}; largest audio step held: parley {parley_largest}, Janus {janus_largest}.\n",
                janus_name(*loops),
                if parts.is_empty() {
                    "–".to_string()
                } else {
                    parts.join("; ")
                },
            ));
        }
        out
    }

    /// Rows for `results.csv`: the main table's columns, the scenario prefixed with the server.
    pub fn csv_rows(&self) -> String {
        let mut csv = String::new();
        for p in &self.pairs {
            let rows = std::iter::once(("anchor-parley".to_string(), &p.parley)).chain(
                p.janus
                    .iter()
                    .map(|(loops, r)| (format!("anchor-janus-event-loops-{loops}"), r)),
            );
            for (server, row) in rows {
                if let Some(r) = row {
                    let mut cells = r.cells();
                    cells[0] = format!("{server}:{}", cells[0]);
                    csv.push_str(&(cells.join(",") + "\n"));
                }
            }
        }
        csv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &'static str, step: &str, pps_per_core: f64, rss: f64, loss: f64) -> Row {
        Row {
            scenario,
            step: step.into(),
            rooms: 1,
            workers: Some(2),
            participants: 10,
            connected: 10,
            streams: 90,
            streams_expected: 90,
            loss_percent: loss,
            forwarded_pps: 2000.0,
            server_cpu_percent: 10.0,
            worker_cpu: vec![5.0, 5.0],
            rooms_per_worker: Vec::new(),
            client_cpu_percent: 10.0,
            pps_per_core,
            cpu_per_100_audio_streams: Some(5.0),
            rss_per_participant_kib: rss,
            latency_p50: Some(0.5),
            latency_p99: Some(1.0),
            join_p50: Some(20.0),
            join_p99: Some(50.0),
            own_media: 0,
        }
    }

    #[test]
    fn ratios_and_summary() {
        let a = "a-audio-rooms-of-10";
        let anchor = Anchor {
            janus_version: "1.1.2".into(),
            parley_workers: "2 media workers".into(),
            pinning: String::new(),
            pairs: vec![
                Pair {
                    parley: Some(row(a, "1x10", 40_000.0, 800.0, 0.0)),
                    janus: vec![(0, Some(row(a, "1x10", 10_000.0, 800.0, 0.0)))],
                },
                Pair {
                    parley: Some(row(a, "4x10", 60_000.0, 400.0, 0.0)),
                    janus: vec![(0, Some(row(a, "4x10", 20_000.0, 800.0, 3.0)))],
                },
                Pair {
                    parley: Some(row("c-video-rooms-of-6", "1x6", 30_000.0, 2000.0, 0.0)),
                    janus: vec![(0, None)],
                },
            ],
        };
        let md = anchor.markdown(2, 12.0);
        assert!(md.contains("## Anchor: Janus videoroom"), "{md}");
        assert!(
            md.contains("| a-audio-rooms-of-10 | 1x10 | Janus (default) | 4.00 |"),
            "{md}"
        );
        // Only the step both held counts; Janus lost packets at 4x10.
        assert!(
            md.contains("- against Janus (default), on the steps both held: audio 4.00× the packets per CPU second and 1.00× the memory per participant; largest audio step held: parley 4x10 (latency p50 0.5 ms), Janus 1x10 (latency p50 0.5 ms)."),
            "{md}"
        );
        assert!(md.contains("Not compared"), "{md}");
        let csv = anchor.csv_rows();
        assert_eq!(csv.lines().count(), 5, "{csv}");
        assert!(
            csv.starts_with("anchor-parley:a-audio-rooms-of-10,1x10,"),
            "{csv}"
        );
    }
}
