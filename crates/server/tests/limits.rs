//! Server-wide limits and the admin's requests against a running `parley`, refusals first: who may
//! create rooms, rooms per address and in all, idle rooms expiring, chat retention, chat per
//! address, and the admin's overview, kick, close, chat deletion and limits (kept over SIGKILL).

use std::time::Duration;

use parley_testkit::server::*;
use serde_json::{json, Value};

fn start(args: &[&str]) -> Server {
    Server::start(env!("CARGO_BIN_EXE_parley"), args)
}

/// Reads (and drops) what `ws` gets for `time`: a connection that does not read answers no pings,
/// and the server drops it after 2.5 s.
async fn pump(ws: &mut Ws, time: Duration) {
    let _ = tokio::time::timeout(time, async {
        loop {
            next(ws).await;
        }
    })
    .await;
}

/// A new admin token for `server` (it takes effect at its next start: the server is restarted).
fn admin_token(server: &mut Server) -> String {
    let token = reset_admin_token(std::path::Path::new(env!("CARGO_BIN_EXE_parley")), server);
    server.restart();
    token
}

async fn login(server: &Server, token: &str) -> Ws {
    let mut ws = connect(server).await;
    let v = ask(&mut ws, json!({"type": "admin", "token": token}), 900).await;
    assert_eq!(v["type"], "admin", "{v}");
    ws
}

async fn create(ws: &mut Ws, room: &str, id: u64) -> Value {
    ask(ws, json!({"type": "create_room", "room": room}), id).await
}

async fn join(ws: &mut Ws, room: &str, name: &str, id: u64) -> Value {
    let v = ask(ws, json!({"type": "join", "room": room, "name": name}), id).await;
    assert_eq!(v["type"], "joined", "{v}");
    v
}

async fn listed(ws: &mut Ws, id: u64) -> Vec<String> {
    let v = ask(ws, json!({"type": "list_rooms"}), id).await;
    v["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn only_those_allowed_create_rooms() {
    // Admin only: nobody else, whatever they show.
    let mut server = start(&["--allow-room-creation", "admin"]);
    let token = admin_token(&mut server);
    let mut guest = connect(&server).await;
    assert_eq!(code(&create(&mut guest, "mine", 1).await), "forbidden");
    let mut admin = login(&server, &token).await;
    let made = create(&mut admin, "seed", 2).await;
    assert_eq!(made["type"], "room_created", "{made}");
    let key = made["owner_key"].as_str().unwrap().to_string();
    let proof = json!([{"room": "seed", "key": key}]);
    let v = ask(
        &mut guest,
        json!({"type": "create_room", "room": "mine", "owner_keys": proof}),
        3,
    )
    .await;
    assert_eq!(code(&v), "forbidden");
    drop(server);

    // Owners: a valid owner key of any room, not an edited one; the welcome says so.
    let mut server = start(&["--allow-room-creation", "owners"]);
    let token = admin_token(&mut server);
    let mut guest = connect_raw(&server).await;
    let welcome = until(&mut guest, "welcome").await;
    assert_eq!(welcome["room_creation"], "owners", "{welcome}");
    assert_eq!(code(&create(&mut guest, "mine", 1).await), "forbidden");
    let mut admin = login(&server, &token).await;
    let key = create(&mut admin, "seed", 2).await["owner_key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut edited = key.clone();
    edited.replace_range(0..1, if key.starts_with('A') { "B" } else { "A" });
    let with = |key: &str| {
        json!({"type": "create_room", "room": "mine", "owner_keys": [
            {"room": "General", "key": key}, {"room": "seed", "key": key}]})
    };
    assert_eq!(code(&ask(&mut guest, with(&edited), 3).await), "forbidden");
    let made = ask(&mut guest, with(&key), 4).await;
    assert_eq!(made["type"], "room_created", "{made}");
    // The new room's own key is proof enough for the next one.
    let own = made["owner_key"].as_str().unwrap();
    let next = ask(
        &mut guest,
        json!({"type": "create_room", "room": "mine2", "owner_keys": [{"room": "mine", "key": own}]}),
        5,
    )
    .await;
    assert_eq!(next["type"], "room_created", "{next}");
}

#[tokio::test]
async fn rooms_are_capped_per_address_and_in_all_even_after_sigkill() {
    let mut server = start(&["--max-rooms-per-ip", "2", "--max-rooms", "4"]);
    let mut ws = connect(&server).await;
    let key1 = create(&mut ws, "r1", 1).await["owner_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(create(&mut ws, "r2", 2).await["type"], "room_created");
    let v = create(&mut ws, "r3", 3).await;
    assert_eq!(code(&v), "too_many_rooms");
    assert!(v["message"].as_str().unwrap().contains("address"), "{v}");
    // Another connection from the same address counts the same.
    let mut other = connect(&server).await;
    assert_eq!(code(&create(&mut other, "r3", 4).await), "too_many_rooms");

    // The count is stored with the rooms.
    server.restart();
    let mut ws = connect(&server).await;
    assert_eq!(code(&create(&mut ws, "r3", 5).await), "too_many_rooms");
    // Deleting one gives its place back.
    let joined = ask(
        &mut ws,
        json!({"type": "join", "room": "r1", "name": "Ann", "owner_key": key1}),
        6,
    )
    .await;
    assert_eq!(joined["owner"], true, "{joined}");
    let deleted = ask(&mut ws, json!({"type": "delete_room", "room": "r1"}), 7).await;
    assert_eq!(deleted["type"], "ok", "{deleted}");
    assert_eq!(create(&mut ws, "r3", 8).await["type"], "room_created");

    // In all: General, r2, r3 and one more make 4; the admin is not counted against it.
    let token = admin_token(&mut server);
    let mut admin = login(&server, &token).await;
    let v = ask(
        &mut admin,
        json!({"type": "set_limits", "limits": {"max_rooms_per_address": 10}}),
        9,
    )
    .await;
    assert_eq!(v["type"], "limits", "{v}");
    let mut ws = connect(&server).await;
    assert_eq!(create(&mut ws, "r4", 10).await["type"], "room_created");
    let v = create(&mut ws, "r5", 11).await;
    assert_eq!(code(&v), "too_many_rooms");
    assert!(v["message"].as_str().unwrap().contains("server"), "{v}");
    assert_eq!(create(&mut admin, "r5", 12).await["type"], "room_created");
}

#[tokio::test]
async fn idle_rooms_expire_but_not_the_default_room_or_one_in_use() {
    let mut server = start(&["--room-idle-expiry", "2s"]);
    let mut lobby = connect(&server).await;
    create(&mut lobby, "brief", 1).await;
    create(&mut lobby, "kept", 2).await;
    let mut stay = connect(&server).await;
    join(&mut stay, "kept", "Ann", 3).await;
    let mut chat = ask(
        &mut stay,
        json!({"type": "chat_send", "text": "still here"}),
        4,
    )
    .await;
    assert_eq!(chat["type"], "chat", "{chat}");
    // `stay` keeps reading meanwhile (or the server drops it as silent).
    let removed = tokio::select! {
        v = first_within(&mut lobby, 6, "room_removed", |v| v["type"] == "room_removed") => v,
        () = pump(&mut stay, Duration::from_secs(10)) => unreachable!(),
    };
    assert_eq!(removed["room"], "brief");
    let rooms = listed(&mut lobby, 5).await;
    assert!(rooms.contains(&"kept".to_string()), "in use: {rooms:?}");
    assert!(rooms.contains(&"General".to_string()), "default: {rooms:?}");
    assert!(!rooms.contains(&"brief".to_string()), "{rooms:?}");

    // Once empty, it goes too, with its chat: a room made again under its name is new.
    ask(&mut stay, json!({"type": "leave"}), 6).await;
    let removed = first_within(&mut lobby, 6, "room_removed", |v| {
        v["type"] == "room_removed"
    })
    .await;
    assert_eq!(removed["room"], "kept");
    server.restart();
    let mut lobby = connect(&server).await;
    assert_eq!(listed(&mut lobby, 7).await, ["General"]);
    create(&mut lobby, "kept", 8).await;
    join(&mut lobby, "kept", "Bo", 9).await;
    chat = ask(&mut lobby, json!({"type": "chat_history"}), 10).await;
    assert_eq!(chat["messages"], json!([]), "{chat}");
}

#[tokio::test]
async fn chat_retention_deletes_old_messages_only() {
    // 0.00004 days is about 3.5 s.
    let server = start(&["--chat-retention-days", "0.00004"]);
    let mut ws = connect(&server).await;
    join(&mut ws, "General", "Ann", 1).await;
    ask(&mut ws, json!({"type": "chat_send", "text": "old"}), 2).await;
    pump(&mut ws, Duration::from_millis(3000)).await;
    ask(&mut ws, json!({"type": "chat_send", "text": "new"}), 3).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let texts = loop {
        let v = ask(&mut ws, json!({"type": "chat_history"}), 4).await;
        let texts: Vec<String> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect();
        if texts.len() < 2 || tokio::time::Instant::now() > deadline {
            break texts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(texts, ["new"]);
}

#[tokio::test]
async fn chat_from_one_address_shares_one_rate() {
    let server = start(&[
        "--chat-rate-per-ip",
        "0.1",
        "--chat-burst-per-ip",
        "4",
        "--chat-burst",
        "10",
    ]);
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    join(&mut a, "General", "Ann", 1).await;
    join(&mut b, "General", "Bo", 1).await;
    let mut replies = Vec::new();
    for i in 0..3 {
        replies.push(
            ask(
                &mut a,
                json!({"type": "chat_send", "text": format!("a{i}")}),
                10 + i,
            )
            .await,
        );
        replies.push(
            ask(
                &mut b,
                json!({"type": "chat_send", "text": format!("b{i}")}),
                20 + i,
            )
            .await,
        );
    }
    let sent = replies.iter().filter(|v| v["type"] == "chat").count();
    assert_eq!(sent, 4, "{replies:?}");
    let refused: Vec<&Value> = replies.iter().filter(|v| v["type"] == "error").collect();
    assert_eq!(refused.len(), 2);
    for v in refused {
        assert_eq!(code(v), "rate_limited");
        assert!(v["message"].as_str().unwrap().contains("address"), "{v}");
    }
}

#[tokio::test]
async fn the_admin_oversees_rooms_people_chat_and_limits() {
    let mut server = start(&[]);
    let token = admin_token(&mut server);
    // Not the admin: every admin request is refused.
    let mut guest = connect(&server).await;
    for (i, request) in [
        json!({"type": "admin_overview"}),
        json!({"type": "close_room", "room": "General"}),
        json!({"type": "delete_chat", "room": "General"}),
        json!({"type": "delete_recordings", "room": "General"}),
        json!({"type": "set_limits", "limits": {"max_participants": 2}}),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            code(&ask(&mut guest, request, i as u64 + 1).await),
            "forbidden"
        );
    }

    let mut ann = connect(&server).await;
    let made = ask(
        &mut ann,
        json!({"type": "create_room", "room": "hidden", "access": "private"}),
        1,
    )
    .await;
    let ann_key = made["owner_key"].clone();
    let mut bo = connect(&server).await;
    join(&mut bo, "General", "Bo", 1).await;
    ask(&mut bo, json!({"type": "chat_send", "text": "hello"}), 2).await;

    let mut admin = login(&server, &token).await;
    let view = ask(&mut admin, json!({"type": "admin_overview"}), 1).await;
    assert_eq!(view["type"], "admin_overview", "{view}");
    assert_eq!(
        (view["total_rooms"].as_u64(), view["in_rooms"].as_u64()),
        (Some(2), Some(1))
    );
    let rooms = view["rooms"].as_array().unwrap();
    let general = rooms.iter().find(|r| r["name"] == "General").unwrap();
    assert_eq!(general["default"], true);
    assert_eq!(general["participants"][0]["name"], "Bo");
    assert_eq!(general["participants"][0]["address"], "127.0.0.1");
    let hidden = rooms
        .iter()
        .find(|r| r["name"] == "hidden")
        .expect("private rooms too");
    assert_eq!(hidden["created_by"], "127.0.0.1");
    assert!(hidden["idle_since_ms"].as_i64().is_some(), "{hidden}");
    assert_eq!(view["limits"]["max_participants"], 16);

    // The admin's lobby hears of private rooms; nobody else's does.
    ask(
        &mut guest,
        json!({"type": "create_room", "room": "hidden2", "access": "private"}),
        8,
    )
    .await;
    let added = until(&mut admin, "room_added").await;
    assert_eq!(added["room"]["name"], "hidden2", "{added}");
    let quiet = tokio::time::timeout(
        Duration::from_millis(300),
        first_within(&mut bo, 1, "room_added", |v| v["type"] == "room_added"),
    )
    .await;
    assert!(
        quiet.is_err(),
        "a private room in someone's lobby: {quiet:?}"
    );

    // Chat deleted: those in the room hear of it, and the history is empty.
    let v = ask(
        &mut admin,
        json!({"type": "delete_chat", "room": "General"}),
        2,
    )
    .await;
    assert_eq!(v["type"], "ok", "{v}");
    assert_eq!(until(&mut bo, "chat_cleared").await["room"], "General");
    let history = ask(&mut bo, json!({"type": "chat_history"}), 3).await;
    assert_eq!(history["messages"], json!([]));

    // Kicked by the admin from outside the room.
    let joined = ask(
        &mut ann,
        json!({"type": "join", "room": "hidden", "name": "Ann", "owner_key": ann_key}),
        2,
    )
    .await;
    let ann_id = joined["you"].clone();
    let v = ask(
        &mut admin,
        json!({"type": "kick", "participant_id": ann_id}),
        3,
    )
    .await;
    assert_eq!(v["type"], "ok", "{v}");
    assert_eq!(until(&mut ann, "kicked").await["by"], "The admin");
    until(&mut ann, "left").await;

    // Closed: everyone leaves, the room stays.
    let mut cy = connect(&server).await;
    join(&mut cy, "General", "Cy", 1).await;
    let v = ask(
        &mut admin,
        json!({"type": "close_room", "room": "General"}),
        4,
    )
    .await;
    assert_eq!(v["type"], "ok", "{v}");
    for ws in [&mut bo, &mut cy] {
        assert_eq!(until(ws, "room_closed").await["room"], "General");
        until(ws, "left").await;
    }
    assert!(listed(&mut cy, 2).await.contains(&"General".to_string()));
    assert_eq!(
        code(
            &ask(
                &mut admin,
                json!({"type": "close_room", "room": "nowhere"}),
                5
            )
            .await
        ),
        "no_such_room"
    );
    for (i, request) in [
        json!({"type": "delete_recordings", "room": "nowhere"}),
        json!({"type": "delete_chat", "room": "nowhere"}),
    ]
    .into_iter()
    .enumerate()
    {
        let v = ask(&mut admin, request, 6 + i as u64).await;
        assert_eq!(code(&v), "no_such_room");
    }
    let v = ask(
        &mut admin,
        json!({"type": "delete_recordings", "room": "General"}),
        8,
    )
    .await;
    assert_eq!(v["type"], "ok", "{v}");

    // Limits: out of range or unknown refused; the change applies at once and outlasts SIGKILL.
    for (i, limits) in [
        json!({"max_participants": 0}),
        json!({"chat_rate": -1}),
        json!({"max_participants": 251}),
        json!({"room_creation": "everyone"}),
        json!({"not_a_limit": 1}),
    ]
    .into_iter()
    .enumerate()
    {
        let v = ask(
            &mut admin,
            json!({"type": "set_limits", "limits": limits}),
            10 + i as u64,
        )
        .await;
        assert!(
            ["invalid_limits", "bad_message"].contains(&code(&v)),
            "{limits} was taken: {v}"
        );
    }
    let v = ask(
        &mut admin,
        json!({"type": "set_limits", "limits": {"max_participants": 1, "room_creation": "admin"}}),
        20,
    )
    .await;
    assert_eq!(v["limits"]["max_participants"], 1, "{v}");
    assert_eq!(v["limits"]["room_creation"], "admin");
    join(&mut cy, "General", "Cy", 3).await;
    let mut dee = connect(&server).await;
    let full = ask(
        &mut dee,
        json!({"type": "join", "room": "General", "name": "Dee"}),
        1,
    )
    .await;
    assert_eq!(code(&full), "room_full");
    server.restart();
    let mut again = connect_raw(&server).await;
    let welcome = until(&mut again, "welcome").await;
    assert_eq!(
        (
            welcome["max_participants"].as_u64(),
            welcome["room_creation"].as_str()
        ),
        (Some(1), Some("admin")),
        "{welcome}"
    );
    assert_eq!(code(&create(&mut again, "new", 1).await), "forbidden");
}
