//! The Janus driver against a real Janus (Debian's `janus`, 1.x) in a network namespace: participants of
//! one videoroom, run by `parley-bench load --janus` (the load generator with Janus participants) in the
//! client namespace, publish and receive each other's audio and video.
//!
//! Needs root (network namespaces) and `janus`; without them the test says why and passes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use parley_bench::janus::lab::{self, JanusServer, NetLab, CLIENT_IP};
use serde_json::Value;

/// Why this machine cannot run the test, if it cannot.
fn skip_reason() -> Option<String> {
    if let Some(why) = lab::unavailable() {
        return Some(why);
    }
    if lab::janus_binary().is_none() {
        return Some("janus is not installed (apt-get install janus)".into());
    }
    None
}

/// Runs `parley-bench load --janus` in the lab's client namespace and returns its JSON summary.
fn load(lab: &NetLab, janus: &JanusServer, args: &[&str], json: &Path) -> Value {
    let mut child = lab
        .client_command(env!("CARGO_BIN_EXE_parley-bench"))
        .args(["load", "--janus", &janus.url, "--local-ip"])
        .arg(CLIENT_IP.to_string())
        .args(args)
        .arg("--json")
        .arg(json)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("parley-bench load starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for parley-bench load") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "parley-bench load did not finish within 60 s; Janus's log:\n{}",
                janus.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "parley-bench load failed ({status}); Janus's log:\n{}",
        janus.log_tail(30)
    );
    let text = std::fs::read_to_string(json).expect("the JSON summary");
    let _ = std::fs::remove_file(json);
    serde_json::from_str(&text).expect("a JSON summary")
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn a_janus_videoroom_carries_the_load_generators_media() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let lab = match NetLab::new() {
        Ok(l) => l,
        Err(e) => {
            // Root but no namespaces (a restricted container): nothing this test can check.
            eprintln!("SKIPPED: cannot make network namespaces: {e:#}");
            return;
        }
    };
    let janus = JanusServer::start(&lab, 0).expect("janus starts in the namespace");
    let json = std::env::temp_dir().join(format!("parley-janus-test-{}.json", std::process::id()));

    // Three members, each sending audio (latency probes) and video, each receiving the other two.
    let summary = load(
        &lab,
        &janus,
        &[
            "--rooms",
            "1",
            "--room-size",
            "3",
            "--duration",
            "4",
            "--talk",
            "1",
            "--video",
            "--video-kbps",
            "200",
            "--room-prefix",
            "talk",
        ],
        &json,
    );
    assert_eq!(summary["backend"], "janus", "{summary}");
    let t = &summary["totals"];
    assert_eq!(count(t, "connected"), 3, "{t}");
    assert!(
        t["failures"].as_array().is_some_and(|f| f.is_empty()),
        "{t}"
    );
    // 3 publishers x 2 receivers x (audio + video).
    assert_eq!(count(t, "streams_expected"), 12, "{t}");
    assert_eq!(count(t, "streams_received"), 12, "{t}");
    // ~4 s of audio at 50 packets/s from 2 others, plus video, per receiver.
    assert!(count(t, "packets_received") > 3 * 2 * 100, "{t}");
    assert!(t["loss_percent"].as_f64().is_some_and(|l| l < 2.0), "{t}");
    assert_eq!(count(t, "own_media_received"), 0, "{t}");
    // Probes came through Janus unchanged and were measured.
    assert!(
        t["latency_ms"]["count"].as_u64().is_some_and(|n| n > 100),
        "{t}"
    );
    assert!(
        t["latency_ms"]["p50"].as_f64().is_some_and(|ms| ms < 100.0),
        "{t}"
    );
    assert!(t["join_ms"]["count"].as_u64() == Some(3), "{t}");

    // One speaker and two listeners (who publish nothing and only subscribe), in a room of its own.
    let summary = load(
        &lab,
        &janus,
        &[
            "--rooms",
            "1",
            "--room-size",
            "3",
            "--speakers",
            "1",
            "--duration",
            "3",
            "--talk",
            "1",
            "--room-prefix",
            "listen",
        ],
        &json,
    );
    let t = &summary["totals"];
    assert_eq!(count(t, "connected"), 3, "{t}");
    assert_eq!(count(t, "streams_expected"), 2, "{t}");
    assert_eq!(count(t, "streams_received"), 2, "{t}");
    assert!(count(t, "packets_received") > 2 * 80, "{t}");
    assert!(t["loss_percent"].as_f64().is_some_and(|l| l < 2.0), "{t}");

    // The lab cleans up: Janus is killed, the namespaces go.
    let names = (lab.server_ns.clone(), lab.client_ns.clone());
    drop(janus);
    drop(lab);
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.contains(&names.0) && !list.contains(&names.1),
        "namespaces left behind: {list}"
    );
}
