//! The HTTP side of a running `parley`: pages, status JSON, debug JSON, Prometheus metrics.

use parley_testkit::server::*;
use serde_json::{json, Value};

fn start(extra: &[&str]) -> Server {
    Server::start(env!("CARGO_BIN_EXE_parley"), extra)
}

/// A bare HTTP/1.0 GET: (status, body).
fn get(server: &Server, path: &str) -> (u16, String) {
    server.get(path)
}

#[test]
fn pages_are_served_and_nothing_else() {
    let server = start(&[]);
    for path in [
        "/",
        "/status",
        "/admin",
        "/admin.js",
        "/viewer/General",
        "/r/General",
        "/r/band%20practice",
        "/app.js",
    ] {
        let (status, body) = get(&server, path);
        assert_eq!(status, 200, "{path}");
        assert!(!body.is_empty(), "{path}");
    }
    for path in [
        "/nope.js",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/viewer/",
    ] {
        assert_eq!(get(&server, path).0, 404, "{path}");
    }
}

#[tokio::test]
async fn status_debug_and_metrics_describe_the_rooms() {
    let server = start(&[]);
    let mut ann = connect(&server).await;
    send(&mut ann, json!({"type": "join", "id": 1, "room": "General", "name": "Ann", "state": {"mic_muted": true}})).await;
    let ann_id = next_of(&mut ann, "joined").await["you"].clone();
    let mut wall = connect(&server).await;
    send(
        &mut wall,
        json!({"type": "join", "id": 1, "room": "General", "name": "Wall", "role": "viewer"}),
    )
    .await;
    next_of(&mut wall, "joined").await;
    // Ann sees the viewer arrive as a viewer.
    let joined = next_of(&mut ann, "participant_joined").await;
    assert_eq!(joined["participant"]["role"], "viewer");

    let (status, body) = get(&server, "/api/status");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let room = v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "General")
        .unwrap()
        .clone();
    let people = room["participants"].as_array().unwrap();
    assert_eq!(people.len(), 2);
    let ann_row = people.iter().find(|p| p["id"] == ann_id).unwrap();
    assert_eq!(
        (
            ann_row["name"].as_str(),
            ann_row["mic_muted"].as_bool(),
            ann_row["role"].as_str()
        ),
        (Some("Ann"), Some(true), Some("member"))
    );
    assert!(people.iter().any(|p| p["role"] == "viewer"));

    let (status, body) = get(&server, "/api/debug");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let rows = v["participants"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r["ice_state"].is_string() && r["room"] == "General"));

    // A refused request counts as a signalling error.
    send(&mut ann, json!({"type": "nonsense"})).await;
    next_of(&mut ann, "error").await;

    let (status, body) = get(&server, "/metrics");
    assert_eq!(status, 200);
    let mut values = std::collections::HashMap::new();
    for line in body.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (name, value) = line.split_once(' ').unwrap();
        values.insert(name.to_string(), value.parse::<f64>().unwrap());
    }
    assert_eq!(values["parley_participants"], 2.0);
    assert_eq!(values["parley_viewers"], 1.0);
    assert!(values["parley_rooms"] >= 1.0);
    assert!(values["parley_signalling_errors_total"] >= 1.0);
    for name in [
        "parley_forwarded_packets_total",
        "parley_active_speaker_switches_total",
        "parley_tracks",
    ] {
        assert!(values.contains_key(name), "{name} missing");
    }
    // No recording was made here: its counters are there, at zero.
    for name in [
        "parley_recordings_finalized_total",
        "parley_recording_recorded_seconds_total",
        "parley_recording_finalize_seconds_total",
    ] {
        assert_eq!(values.get(name), Some(&0.0), "{name}");
    }
}

#[tokio::test]
async fn status_and_metrics_show_the_media_workers() {
    let server = start(&["--media-workers", "2"]);
    let mut lobby = connect(&server).await;
    send(
        &mut lobby,
        json!({"type": "create_room", "id": 1, "room": "empty"}),
    )
    .await;
    next_of(&mut lobby, "room_created").await;
    let mut ann = connect(&server).await;
    send(
        &mut ann,
        json!({"type": "join", "id": 1, "room": "General", "name": "Ann"}),
    )
    .await;
    let ann_id = next_of(&mut ann, "joined").await["you"].clone();

    let status = server.get_json("/api/status");
    let room = |name: &str| {
        status["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {status}"))
            .clone()
    };
    let general = room("General");
    let worker = general["worker"]
        .as_u64()
        .unwrap_or_else(|| panic!("an occupied room has a worker: {general}"));
    assert!(worker < 2, "{general}");
    let empty = room("empty");
    assert!(
        empty.get("worker").is_some_and(|w| w.is_null()),
        "an empty room has worker null: {empty}"
    );

    // The participant's connection is on that worker.
    let debug = server.get_json("/api/debug");
    let row = debug["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["participant_id"] == ann_id)
        .unwrap_or_else(|| panic!("Ann in {debug}"))
        .clone();
    assert_eq!(row["worker"].as_u64(), Some(worker), "{row}");
    for field in ["loss_in", "loss_out", "rtt_ms"] {
        assert!(row.get(field).is_some(), "{field} in {row}");
    }
    // Audio only: no video to repair or to ask keyframes of.
    for field in [
        "nacks_received",
        "keyframe_requests_received",
        "nacks_sent",
        "keyframe_requests_sent",
    ] {
        assert_eq!(row[field].as_u64(), Some(0), "{field} in {row}");
    }

    let metrics = server.metrics();
    assert_eq!(metrics["parley_media_workers"], 2.0);
    for name in [
        "parley_dropped_levels_total",
        "parley_slow_client_closes_total",
        "parley_keyframe_requests_total",
    ] {
        assert_eq!(metrics.get(name), Some(&0.0), "{name}");
    }
}

/// The status endpoints want the admin token (as a bearer or `?token=`) unless `--public-status`;
/// then private rooms and addresses are still only for the admin.
#[tokio::test]
async fn status_endpoints_want_the_admin_token() {
    let bin = env!("CARGO_BIN_EXE_parley");
    let mut server = parley_testkit::server::Launch::new(bin)
        .private_status()
        .args(["--metrics-token", "scrape-me"])
        .start();
    let token = {
        let out = std::process::Command::new(bin)
            .arg("--data-dir")
            .arg(server.data_dir())
            .args(["admin", "reset-token"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("new admin token: "))
            .unwrap()
            .to_string()
    };
    server.restart();
    let request = |path: &str, auth: Option<&str>| {
        let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let r = http_request(
            server.http,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
                server.http
            ),
        );
        (r.status, r.body)
    };
    for path in ["/api/status", "/api/debug", "/metrics"] {
        assert_eq!(request(path, None).0, 401, "{path} without a token");
        assert_eq!(
            request(path, Some("wrong")).0,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            request(path, Some(&token)).0,
            200,
            "{path} with the admin token"
        );
        assert_eq!(
            request(&format!("{path}?token={token}"), None).0,
            200,
            "{path}?token="
        );
    }
    assert_eq!(
        request("/metrics", Some("scrape-me")).0,
        200,
        "the metrics token reads /metrics"
    );
    assert_eq!(
        request("/api/status", Some("scrape-me")).0,
        401,
        "and nothing else"
    );

    // --public-status: readable by anyone, without private rooms or addresses.
    let server = start(&[]);
    let mut ann = connect(&server).await;
    send(
        &mut ann,
        json!({"type": "create_room", "id": 1, "room": "hidden", "access": "private"}),
    )
    .await;
    let key = next_of(&mut ann, "room_created").await["owner_key"].clone();
    send(
        &mut ann,
        json!({"type": "join", "id": 2, "room": "hidden", "name": "Ann", "owner_key": key}),
    )
    .await;
    next_of(&mut ann, "joined").await;
    let (status, body) = get(&server, "/api/status");
    assert_eq!(status, 200);
    assert!(!body.contains("hidden") && !body.contains("Ann"), "{body}");
    let (_, debug) = get(&server, "/api/debug");
    assert!(!debug.contains("127.0.0.1"), "{debug}");
}
