//! What a room recording costs: one room of 10 talkers on one media worker, its CPU over the same
//! window without and with a recording running (the live part: copying packets for the recorder),
//! the recorder thread's CPU, and the time to make the files after stop, per recorded minute.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::procstat;

/// The figures of one run.
pub struct RecordingCost {
    pub talkers: usize,
    pub window_s: f64,
    /// The media worker's CPU (% of one core) without and with the recording.
    pub worker_without: f64,
    pub worker_with: f64,
    /// The recorder thread's CPU (% of one core) while recording.
    pub recorder: f64,
    pub recorded_s: f64,
    /// The server's time making the files (its `parley_recording_finalize_seconds_total`), and
    /// from stop until a client had downloaded them all.
    pub finalize_s: f64,
    pub stop_to_downloaded_s: f64,
    pub files: usize,
    pub dropped: f64,
}

impl RecordingCost {
    pub fn markdown(&self) -> String {
        let live = self.worker_with - self.worker_without;
        let per_minute = self.finalize_s / (self.recorded_s / 60.0).max(1e-9);
        format!(
            "## Recording cost (one room of {t} talkers, one media worker)\n\n\
             | | value |\n|---|---|\n\
             | media worker CPU without a recording | {a:.1}% of a core |\n\
             | media worker CPU with a recording | {b:.1}% of a core |\n\
             | live part (difference; goal < 2%) | {live:+.1} points |\n\
             | recorder thread CPU while recording | {r:.1}% of a core |\n\
             | packets the recorder had no room for | {d:.0} |\n\
             | recorded | {s:.1} s, {f} files |\n\
             | making the files after stop (mix, denoise, encode, mux) | {fin:.2} s ({pm:.2} s per recorded minute; goal < 3 s) |\n\
             | from stop until a client had downloaded every file | {dl:.2} s |\n\n\
             Each window {w:.0} s; CPU from /proc (utime + stime) of the `parley-media` and \
             `parley-recorder` threads; the files' time from the server's \
             `parley_recording_finalize_seconds_total` (they are made at the lowest priority, over \
             every core, while the load goes on).\n",
            t = self.talkers,
            a = self.worker_without,
            b = self.worker_with,
            r = self.recorder,
            d = self.dropped,
            s = self.recorded_s,
            f = self.files,
            fin = self.finalize_s,
            pm = per_minute,
            dl = self.stop_to_downloaded_s,
            w = self.window_s,
        )
    }
}

/// CPU so far of the process's threads named `name`.
fn thread_cpu(pid: u32, name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let dir = t.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            (comm.trim_end() == name).then_some(())?;
            procstat::cpu_of_stat(dir.join("stat").to_str()?)
        })
        .sum()
}

fn percent(d: Duration, wall: f64) -> f64 {
    100.0 * d.as_secs_f64() / wall.max(1e-9)
}

/// `parley-client recording <action>` in `room`; its stdout.
fn recording_cli(
    client_bin: &std::path::Path,
    http: &str,
    room: &str,
    action: &[&str],
) -> Result<String> {
    let out = Command::new(client_bin)
        .arg("recording")
        .args(action)
        .args(["--server", &format!("http://{http}"), "--room", room])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {}", client_bin.display()))?;
    if !out.status.success() {
        bail!("parley-client recording {action:?} failed: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Runs the load, measures a window without and one with a recording, stops it and times the files.
pub fn run(
    client_bin: &std::path::Path,
    http: &str,
    pid: u32,
    window: f64,
    metric: impl Fn(&str) -> Option<f64>,
) -> Result<RecordingCost> {
    let talkers = 10;
    let room = "rec-1";
    let total = 2.0 * window + 12.0;
    let mut load = Command::new(client_bin)
        .arg("load")
        .args(["--server", &format!("http://{http}")])
        .args(["--rooms", "1", "--room-size", &talkers.to_string()])
        .args(["--duration", &total.to_string(), "--talk", "1.0"])
        .args(["--room-prefix", "rec"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", client_bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric("parley_participants").unwrap_or(0.0) < talkers as f64 {
        if Instant::now() > deadline || load.try_wait()?.is_some() {
            bail!("the load's participants did not all join");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let measure = |what: &str| -> (f64, f64) {
        let w0 = thread_cpu(pid, "parley-media-0") + thread_cpu(pid, "parley-media");
        let r0 = thread_cpu(pid, "parley-recorder");
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(window));
        let wall = t0.elapsed().as_secs_f64();
        let w1 = thread_cpu(pid, "parley-media-0") + thread_cpu(pid, "parley-media");
        let r1 = thread_cpu(pid, "parley-recorder");
        let (w, r) = (percent(w1 - w0, wall), percent(r1 - r0, wall));
        eprintln!("  {what}: media worker {w:.1}%, recorder {r:.1}%");
        (w, r)
    };
    let (without, _) = measure("without a recording");
    recording_cli(client_bin, http, room, &["start"])?;
    let started = Instant::now();
    let (with, recorder) = measure("with a recording");
    let dropped = metric("parley_recorder_dropped_packets_total").unwrap_or(0.0);
    let made_before = metric("parley_recordings_finalized_total").unwrap_or(0.0);
    let making_before = metric("parley_recording_finalize_seconds_total").unwrap_or(0.0);
    recording_cli(client_bin, http, room, &["stop"])?;
    let recorded_s = started.elapsed().as_secs_f64();
    let stopped = Instant::now();
    let listed = recording_cli(
        client_bin,
        http,
        room,
        &[
            "download",
            "--out",
            &std::env::temp_dir()
                .join(format!("parley-bench-rec-{}", std::process::id()))
                .to_string_lossy(),
        ],
    )?;
    let stop_to_downloaded_s = stopped.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric("parley_recordings_finalized_total").unwrap_or(0.0) <= made_before {
        if Instant::now() > deadline {
            bail!("the server never counted the recording as made");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let finalize_s =
        metric("parley_recording_finalize_seconds_total").unwrap_or(0.0) - making_before;
    let files = listed
        .lines()
        .filter(|l| l.starts_with("downloaded"))
        .count();
    let _ = load.wait();
    Ok(RecordingCost {
        talkers,
        window_s: window,
        worker_without: without,
        worker_with: with,
        recorder,
        recorded_s,
        finalize_s,
        stop_to_downloaded_s,
        files,
        dropped,
    })
}
