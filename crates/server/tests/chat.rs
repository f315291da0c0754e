//! Chat over a real WebSocket against a running `parley`: delivery, limits, history, durability.

use std::time::Duration;

use parley_testkit::server::*;
use serde_json::{json, Value};

fn start(extra: &[&str]) -> Server {
    Server::start(env!("CARGO_BIN_EXE_parley"), extra)
}

async fn join(server: &Server, room: &str, name: &str) -> (Ws, u64) {
    let mut ws = connect(server).await;
    send(
        &mut ws,
        json!({"type": "join", "id": 1, "room": room, "name": name}),
    )
    .await;
    let joined = next_of(&mut ws, "joined").await;
    (ws, joined["you"].as_u64().unwrap())
}

async fn say(ws: &mut Ws, id: u64, text: &str) -> Value {
    send(ws, json!({"type": "chat_send", "id": id, "text": text})).await;
    loop {
        let v = next(ws).await;
        if v["id"] == id && (v["type"] == "chat" || v["type"] == "error") {
            return v;
        }
    }
}

async fn history(ws: &mut Ws, before: Option<i64>, limit: u32) -> Value {
    send(
        ws,
        json!({"type": "chat_history", "id": 77, "before": before, "limit": limit}),
    )
    .await;
    next_of(ws, "chat_history").await
}

/// The next `chat` message, skipping presence updates.
async fn next_chat(ws: &mut Ws) -> Value {
    loop {
        let v = next(ws).await;
        if v["type"] == "chat" {
            return v;
        }
        assert!(v["type"] != "error", "unexpected {v}");
    }
}

#[tokio::test]
async fn two_people_chat_both_ways_and_late_joiners_see_history() {
    let server = start(&[]);
    let (mut ann, ann_id) = join(&server, "General", "Ann").await;
    let (mut bo, _) = join(&server, "General", "Bo").await;

    let ack = say(&mut ann, 10, "hello <script>alert(1)</script>").await;
    assert_eq!(ack["type"], "chat");
    assert_eq!(ack["message"]["author"], "Ann");
    assert_eq!(ack["message"]["author_id"], ann_id);
    let got = next_chat(&mut bo).await;
    assert_eq!(
        got["message"]["text"], "hello <script>alert(1)</script>",
        "text is kept verbatim"
    );
    assert!(
        got.get("id").is_none(),
        "only the author's copy carries the request id"
    );

    say(&mut bo, 11, "hi Ann").await;
    assert_eq!(next_chat(&mut ann).await["message"]["author"], "Bo");

    let (mut cy, _) = join(&server, "General", "Cy").await;
    let page = history(&mut cy, None, 100).await;
    let texts: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(
        texts,
        vec![json!("hi Ann"), json!("hello <script>alert(1)</script>")]
    );
    assert_eq!(page["has_more"], false);
}

#[tokio::test]
async fn limits_refuse_and_store_nothing() {
    let server = start(&["--chat-max-chars", "50"]);
    let (mut ann, _) = join(&server, "General", "Ann").await;
    let e = say(&mut ann, 1, &"x".repeat(51)).await;
    assert_eq!(e["code"], "message_too_long");
    let e = say(&mut ann, 2, "   \n\t ").await;
    assert_eq!(e["code"], "empty_message");
    assert_eq!(
        say(&mut ann, 3, &"é".repeat(50)).await["type"],
        "chat",
        "50 characters fit, whatever their bytes"
    );
    let page = history(&mut ann, None, 100).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn rate_limit_allows_a_burst_then_refuses() {
    let server = start(&["--chat-rate", "1", "--chat-burst", "10"]);
    let (mut ann, _) = join(&server, "General", "Ann").await;
    let mut accepted = 0;
    let mut limited = 0;
    for i in 0..15 {
        let v = say(&mut ann, 100 + i, &format!("m{i}")).await;
        match (v["type"].as_str(), v["code"].as_str()) {
            (Some("chat"), _) => accepted += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // 10 in the burst, and at most one more refilled while sending.
    assert!((10..=11).contains(&accepted), "accepted {accepted}");
    assert_eq!(accepted + limited, 15);
    let page = history(&mut ann, None, 100).await;
    assert_eq!(
        page["messages"].as_array().unwrap().len(),
        accepted as usize,
        "refused messages are not stored"
    );
}

#[tokio::test]
async fn only_members_read_history_and_rooms_do_not_mix() {
    let server = start(&[]);
    let mut lobby = connect(&server).await;
    send(
        &mut lobby,
        json!({"type": "create_room", "id": 1, "room": "secret"}),
    )
    .await;
    next_of(&mut lobby, "room_created").await;
    let (mut ann, _) = join(&server, "secret", "Ann").await;
    say(&mut ann, 5, "for members only").await;

    send(&mut lobby, json!({"type": "chat_history", "id": 9})).await;
    let e = next_of(&mut lobby, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("not_in_room"), Some(9))
    );
    send(
        &mut lobby,
        json!({"type": "chat_send", "id": 10, "text": "let me in"}),
    )
    .await;
    assert_eq!(next_of(&mut lobby, "error").await["code"], "not_in_room");

    let (mut bo, _) = join(&server, "General", "Bo").await;
    assert_eq!(history(&mut bo, None, 100).await["messages"], json!([]));
}

#[tokio::test]
async fn paging_by_id_newest_first() {
    let server = start(&["--chat-burst", "100"]);
    let (mut ann, _) = join(&server, "General", "Ann").await;
    for i in 0..25 {
        say(&mut ann, 1000 + i, &format!("m{i}")).await;
    }
    let p1 = history(&mut ann, None, 10).await;
    let m1 = p1["messages"].as_array().unwrap();
    assert_eq!(
        (m1.len(), m1[0]["text"].as_str(), p1["has_more"].as_bool()),
        (10, Some("m24"), Some(true))
    );
    let p3 = history(&mut ann, m1[9]["id"].as_i64().map(|id| id - 10), 10).await;
    let m3 = p3["messages"].as_array().unwrap();
    assert_eq!(
        (m3.len(), m3[4]["text"].as_str(), p3["has_more"].as_bool()),
        (5, Some("m0"), Some(false))
    );
}

#[tokio::test]
async fn acknowledged_message_survives_sigkill() {
    let mut server = start(&[]);
    let (mut ann, _) = join(&server, "General", "Ann").await;
    for i in 0..3 {
        say(&mut ann, i, &format!("before {i}")).await;
    }
    let before = history(&mut ann, None, 100).await["messages"].clone();
    let ack = say(&mut ann, 50, "the last word").await;
    assert_eq!(ack["type"], "chat");
    // Killed the moment the acknowledgement arrived.
    server.kill();
    drop(ann);
    server.restart();
    let (mut bo, _) = join(&server, "General", "Bo").await;
    let after = history(&mut bo, None, 100).await["messages"].clone();
    let after = after.as_array().unwrap();
    assert_eq!(after[0]["text"], "the last word");
    assert_eq!(after[0]["id"], ack["message"]["id"]);
    assert_eq!(
        &after[1..],
        before.as_array().unwrap().as_slice(),
        "older history identical"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Every acknowledged `room_created` is durable: 40 rooms created as fast as the server takes them,
/// SIGKILL the moment the last acknowledgement arrives, and all 40 are there after the restart.
#[tokio::test]
async fn acknowledged_rooms_survive_sigkill() {
    let mut server = start(&[]);
    let mut ws = connect(&server).await;
    for i in 0..40u64 {
        send(
            &mut ws,
            json!({"type": "create_room", "id": 100 + i, "room": format!("room {i:02}")}),
        )
        .await;
    }
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 40 {
        let v = next(&mut ws).await;
        match v["type"].as_str() {
            Some("room_created") => {
                acknowledged.push(v["room"]["name"].as_str().unwrap().to_string())
            }
            Some("error") => panic!("{v}"),
            _ => {}
        }
    }
    server.restart();
    let names = all_rooms(&mut connect(&server).await).await;
    let lost: Vec<_> = acknowledged.iter().filter(|n| !names.contains(n)).collect();
    assert!(lost.is_empty(), "lost to SIGKILL: {lost:?}");
}

/// Every room name, page by page.
async fn all_rooms(ws: &mut Ws) -> Vec<String> {
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    for page in 0.. {
        send(
            ws,
            json!({"type": "list_rooms", "id": 1000 + page, "after": after, "limit": 7}),
        )
        .await;
        let v = next_of(ws, "rooms").await;
        let rooms = v["rooms"].as_array().unwrap();
        assert!(rooms.len() <= 7);
        names.extend(
            rooms
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_string()),
        );
        if !v["has_more"].as_bool().unwrap() {
            break;
        }
        after = names.last().cloned();
    }
    names
}

/// The lobby gets changes, not the whole list: a new connection gets the first page of rooms, and
/// afterwards one small message per room created or count changed.
#[tokio::test]
async fn the_lobby_gets_deltas_and_pages() {
    let server = start(&[]);
    let mut maker = connect(&server).await;
    for i in 0..120u64 {
        send(
            &mut maker,
            json!({"type": "create_room", "id": i + 1, "room": format!("r{i:03}")}),
        )
        .await;
        if i % 40 == 39 {
            // Stay inside the per-connection message rate.
            tokio::time::sleep(Duration::from_millis(900)).await;
        }
    }
    let mut created = 0;
    while created < 120 {
        if next(&mut maker).await["type"] == "room_created" {
            created += 1;
        }
    }
    // A new connection: the first page only, and it says more follow.
    let mut url = connect_raw(&server).await;
    let welcome = next_of(&mut url, "welcome").await;
    assert_eq!(welcome["type"], "welcome");
    let first = next_of(&mut url, "rooms").await;
    assert!(first.get("id").is_none());
    assert_eq!(first["rooms"].as_array().unwrap().len(), 100);
    assert_eq!(first["has_more"], true);
    let names = all_rooms(&mut url).await;
    assert_eq!(names.len(), 121, "120 and the default room");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "pages are in name order");

    // Someone joins: the watcher gets one room_updated, not a list.
    let mut ann = connect(&server).await;
    send(
        &mut ann,
        json!({"type": "join", "id": 1, "room": "r007", "name": "Ann"}),
    )
    .await;
    let update = next_of(&mut url, "room_updated").await;
    assert_eq!(update["room"]["name"], "r007");
    assert_eq!(update["room"]["participants"], 1);
    assert!(update.to_string().len() < 200, "{update}");
    // A new room: room_added.
    send(
        &mut maker,
        json!({"type": "create_room", "id": 500, "room": "zz new"}),
    )
    .await;
    let added = next_of(&mut url, "room_added").await;
    assert_eq!(added["room"]["name"], "zz new");
}
