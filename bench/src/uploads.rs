//! Does a studio take's upload starve the call? An artist on a narrow uplink (a token bucket on the veth
//! of the load generator's network namespace, as a home router's upstream) talks in a call while a listener
//! hears them, first without and then with a take uploading at the browser's pace (1.5 × real time plus
//! 32 KB/s, one request at a time: `web/take-queue.js`), and the listener's loss and latency of the call's
//! audio are compared. `parley-client studio soak` is both people.

use std::process::Stdio;

use anyhow::{bail, Context, Result};
use parley_bench::janus::lab::{NetLab, CLIENT_IP};
use serde_json::Value;

use crate::anchor::start_parley;
use crate::Args;

/// The artist's uplink (kbit/s): room for the call (≈ 50 kbit/s) and a 48 kHz mono float take
/// (1536 kbit/s in real time), but not for the pace's bursts (2.8 Mbit/s): a tight home upstream.
pub const UPLINK_KBIT: u32 = 2500;

/// The uplink of this run: [`UPLINK_KBIT`], or `PARLEY_BENCH_UPLINK_KBIT` to try another.
fn uplink_kbit() -> u32 {
    std::env::var("PARLEY_BENCH_UPLINK_KBIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(UPLINK_KBIT)
}

pub struct UploadCost {
    pub uplink_kbit: u32,
    pub seconds: f64,
    /// `parley-client studio soak`'s reports: without, then with the upload.
    pub without: Value,
    pub with: Value,
}

fn soak(
    args: &Args,
    lab: &NetLab,
    server: &str,
    room: &str,
    seconds: f64,
    upload: bool,
) -> Result<Value> {
    let client = std::fs::canonicalize(&args.client_bin)
        .with_context(|| format!("{} (build it first)", args.client_bin.display()))?;
    let mut cmd = lab.client_command(&client);
    cmd.args(["studio", "soak", "--server", server, "--room", room])
        .args(["--seconds", &seconds.to_string()])
        .args(["--local-ip", &CLIENT_IP.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if upload {
        cmd.arg("--upload");
    }
    let out = cmd.output().context("running parley-client studio soak")?;
    if !out.status.success() {
        bail!("parley-client studio soak failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("reading the soak's report")
}

/// Runs both soaks on one fresh server in the lab, the uplink limited to [`UPLINK_KBIT`].
pub fn run(args: &Args, seconds: f64) -> Result<UploadCost> {
    let lab = NetLab::new()?;
    let tc = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.client_ns,
            "tc",
            "qdisc",
            "add",
            "dev",
            &lab.client_if,
        ])
        .args([
            "root",
            "tbf",
            "rate",
            &format!("{}kbit", uplink_kbit()),
            "burst",
            "16kb",
            "latency",
            "300ms",
        ])
        .status()
        .context("running tc")?;
    if !tc.success() {
        bail!("tc could not limit the uplink ({tc})");
    }
    let server = start_parley(args, &lab, 900)?;
    let without = soak(args, &lab, &server.url, "soak-1", seconds, false)?;
    let with = soak(args, &lab, &server.url, "soak-2", seconds, true)?;
    Ok(UploadCost {
        uplink_kbit: uplink_kbit(),
        seconds,
        without,
        with,
    })
}

impl UploadCost {
    pub fn markdown(&self) -> String {
        let cell = |v: &Value, key: &str, digits: usize| {
            v[key]
                .as_f64()
                .map_or("–".to_string(), |x| format!("{x:.digits$}"))
        };
        let mut md = format!(
            "\n## A studio take's upload and the call (artist's uplink {} kbit/s)\n\n\
             One artist talks (synthetic voice with latency probes, 80-byte packets every 20 ms) while a \
             listener hears them, on a fresh server in a network namespace; the artist's side is limited \
             by a token bucket (`tc tbf rate {} kbit`, 300 ms of queue) as a home router's upstream. \
             {} s without, then {} s with a take (48 kHz mono, 32-bit float: 1536 kbit/s in real time) \
             uploading its quarter-second chunks at the browser's pace (1.5 × real time plus 32 KB/s, one request \
             at a time). The target: no more loss in the call with the upload than without.\n\n\
             | take uploading | call audio loss % | packets heard | latency p50 ms | latency p99 ms | upload kbit/s | chunks (retries) |\n\
             |---|---|---|---|---|---|---|\n",
            self.uplink_kbit, self.uplink_kbit, self.seconds, self.seconds
        );
        for (label, v) in [("no", &self.without), ("yes", &self.with)] {
            md.push_str(&format!(
                "| {label} | {} | {} | {} | {} | {} | {} ({}) |\n",
                cell(v, "audio_loss_percent", 2),
                v["audio_packets"].as_u64().unwrap_or(0),
                cell(v, "latency_p50_ms", 1),
                cell(v, "latency_p99_ms", 1),
                cell(v, "upload_kbps", 0),
                v["chunks"].as_u64().unwrap_or(0),
                v["chunk_retries"].as_u64().unwrap_or(0),
            ));
        }
        let loss = |v: &Value| v["audio_loss_percent"].as_f64().unwrap_or(f64::NAN);
        let verdict = if loss(&self.with) <= loss(&self.without) + 0.1 {
            "met"
        } else {
            "**not met**"
        };
        md.push_str(&format!(
            "\n**Call loss with the upload vs without:** {:.2}% vs {:.2}% (target: no more: {verdict}).\n",
            loss(&self.with),
            loss(&self.without)
        ));
        md
    }
}
