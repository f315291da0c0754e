//! Signalling over a real WebSocket against a running `parley` process.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use parley_testkit::server::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn start(extra: &[&str]) -> Server {
    Server::start(env!("CARGO_BIN_EXE_parley"), extra)
}

#[tokio::test]
async fn malformed_json_gets_error_and_socket_stays() {
    let server = start(&[]);
    let mut ws = connect(&server).await;
    ws.send(Message::Text("{this is not json".into()))
        .await
        .unwrap();
    let e = next_of(&mut ws, "error").await;
    assert_eq!(e["code"], "bad_message");
    assert!(e["message"].as_str().unwrap().len() > 5);
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(next_of(&mut ws, "error").await["code"], "bad_message");
    still_works(&mut ws).await;
}

#[tokio::test]
async fn unknown_type_and_missing_fields_echo_the_id() {
    let server = start(&[]);
    let mut ws = connect(&server).await;
    send(&mut ws, json!({"type": "teleport", "id": 41})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("bad_message"), Some(41))
    );
    send(&mut ws, json!({"type": "join", "id": 42})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("bad_message"), Some(42))
    );
    still_works(&mut ws).await;
}

#[tokio::test]
async fn oversized_message_is_refused_and_socket_stays() {
    let server = start(&[]);
    let mut ws = connect(&server).await;
    let huge = "x".repeat(800 * 1024);
    send(
        &mut ws,
        json!({"type": "create_room", "id": 5, "room": huge}),
    )
    .await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(e["code"], "message_too_large");
    still_works(&mut ws).await;
}

#[tokio::test]
async fn joining_a_second_room_is_refused() {
    let server = start(&[]);
    let mut ws = connect(&server).await;
    for (id, room) in [(1, "alpha"), (2, "beta")] {
        send(
            &mut ws,
            json!({"type": "create_room", "id": id, "room": room}),
        )
        .await;
        assert_eq!(next_of(&mut ws, "room_created").await["room"]["name"], room);
    }
    send(
        &mut ws,
        json!({"type": "join", "id": 3, "room": "alpha", "name": "Ann"}),
    )
    .await;
    let joined = next_of(&mut ws, "joined").await;
    assert_eq!(joined["room"], "alpha");
    send(
        &mut ws,
        json!({"type": "join", "id": 4, "room": "beta", "name": "Ann"}),
    )
    .await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("already_in_room"), Some(4))
    );
    // Still in alpha, and leaving then joining beta works.
    send(&mut ws, json!({"type": "leave", "id": 5})).await;
    assert_eq!(next_of(&mut ws, "left").await["room"], "alpha");
    send(
        &mut ws,
        json!({"type": "join", "id": 6, "room": "beta", "name": "Ann"}),
    )
    .await;
    assert_eq!(next_of(&mut ws, "joined").await["room"], "beta");
}

#[tokio::test]
async fn bad_room_names_and_missing_rooms() {
    let server = start(&[]);
    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type": "create_room", "id": 1, "room": "../../etc"}),
    )
    .await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "invalid_room_name");
    send(
        &mut ws,
        json!({"type": "join", "id": 2, "room": "nowhere", "name": "Ann"}),
    )
    .await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "no_such_room");
    send(&mut ws, json!({"type": "offer", "sdp": "v=0"})).await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "not_in_room");
    send(
        &mut ws,
        json!({"type": "join", "id": 3, "room": "General", "name": "Ann"}),
    )
    .await;
    next_of(&mut ws, "joined").await;
    send(&mut ws, json!({"type": "offer", "sdp": "this is no sdp"})).await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "bad_sdp");
    still_works(&mut ws).await;
}

#[tokio::test]
async fn room_full_and_leave_on_close() {
    let server = start(&["--max-participants", "2"]);
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    let mut c = connect(&server).await;
    send(
        &mut a,
        json!({"type": "join", "id": 1, "room": "General", "name": "A"}),
    )
    .await;
    let me_a = next_of(&mut a, "joined").await["you"].clone();
    send(
        &mut b,
        json!({"type": "join", "id": 1, "room": "General", "name": "B"}),
    )
    .await;
    let joined_b = next_of(&mut b, "joined").await;
    assert_eq!(joined_b["participants"][0]["name"], "A");
    let me_b = joined_b["you"].clone();
    assert_eq!(
        next_of(&mut a, "participant_joined").await["participant"]["id"],
        me_b
    );

    send(
        &mut c,
        json!({"type": "join", "id": 1, "room": "General", "name": "C"}),
    )
    .await;
    let e = next_of(&mut c, "error").await;
    assert_eq!(e["code"], "room_full");

    // State changes reach the other member.
    send(
        &mut b,
        json!({"type": "set_state", "id": 2, "mic_muted": true}),
    )
    .await;
    assert_eq!(
        next_of(&mut b, "state_set").await["state"]["mic_muted"],
        true
    );
    let upd = next_of(&mut a, "participant_updated").await;
    assert_eq!(
        (
            upd["participant"]["id"].clone(),
            upd["participant"]["mic_muted"].clone()
        ),
        (me_b.clone(), json!(true))
    );

    // B closes its socket: A learns it left, and C can now join.
    b.close(None).await.unwrap();
    drop(b);
    assert_eq!(
        next_of(&mut a, "participant_left").await["participant_id"],
        me_b
    );
    send(
        &mut c,
        json!({"type": "join", "id": 2, "room": "General", "name": "C"}),
    )
    .await;
    let joined_c = next_of(&mut c, "joined").await;
    assert_eq!(joined_c["participants"][0]["id"], me_a);
}

#[tokio::test]
async fn room_counts_are_pushed_to_the_lobby() {
    let server = start(&[]);
    let mut watcher = connect(&server).await;
    let mut a = connect(&server).await;
    send(
        &mut a,
        json!({"type": "join", "room": "General", "name": "A"}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = next(&mut watcher).await;
        if v["type"] == "room_updated"
            && v["room"]["name"] == "General"
            && v["room"]["participants"] == 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "no room count update");
    }
}

#[test]
fn port_in_use_gives_a_clear_message() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let data = TempDir::new("port");
    let out = Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("--data-dir")
        .arg(data.path())
        .args(["--http-addr", &addr.to_string(), "--https-addr", "off"])
        .args([
            "--media-port",
            &free_udp_port().to_string(),
            "--media-bind",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already in use") && err.contains("--http-addr"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn flooding_is_refused_with_the_request_id() {
    let server = start(&[]);
    let mut ws = connect(&server).await;
    for i in 0..150u64 {
        send(&mut ws, json!({"type": "list_rooms", "id": 10_000 + i})).await;
    }
    let (mut answered, mut limited) = (0, 0);
    while answered + limited < 150 {
        let v = next(&mut ws).await;
        match v["type"].as_str() {
            Some("rooms") if v["id"].is_u64() => answered += 1,
            Some("error") => {
                assert_eq!(v["code"], "rate_limited");
                assert!(v["id"].as_u64().is_some_and(|id| id >= 10_000), "{v}");
                limited += 1;
            }
            _ => {}
        }
    }
    assert!(limited >= 40, "answered {answered}, limited {limited}");
    assert!(answered >= 100);
}

/// A message for people: one short line, nothing from a parser's insides.
fn assert_one_short_line(message: &str) {
    assert!(!message.is_empty(), "an empty message");
    assert!(
        !message.contains('\n') && !message.contains('\r'),
        "{message:?}"
    );
    assert!(message.chars().count() < 100, "{message:?}");
    assert!(!message.contains("0x"), "an address in {message:?}");
    let lower = message.to_lowercase();
    for internal in ["parse error", "parse", "error(", "{", "nom::", "line "] {
        assert!(!lower.contains(internal), "{internal:?} in {message:?}");
    }
}

async fn joined(server: &Server, name: &str) -> Ws {
    let mut ws = connect(server).await;
    send(
        &mut ws,
        json!({"type": "join", "id": 1, "room": "General", "name": name}),
    )
    .await;
    next_of(&mut ws, "joined").await;
    ws
}

#[tokio::test]
async fn sdp_errors_echo_the_request_id_in_one_short_line() {
    let server = start(&[]);
    let mut ws = joined(&server, "Ann").await;

    let garbage = "v=0\r\no=- 0x7ffd3a 2 IN IP4 127.0.0.1\r\nm=audio what 9\r\na=rtpmap:x\r\n";
    send(&mut ws, json!({"type": "offer", "id": 5, "sdp": garbage})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("bad_sdp"), Some(5)),
        "{e}"
    );
    assert_one_short_line(e["message"].as_str().unwrap());

    send(
        &mut ws,
        json!({"type": "offer", "id": 6, "sdp": "this is no sdp"}),
    )
    .await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("bad_sdp"), Some(6)),
        "{e}"
    );
    assert_one_short_line(e["message"].as_str().unwrap());

    // No server offer is waiting for an answer.
    send(&mut ws, json!({"type": "answer", "id": 7, "sdp": garbage})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("bad_sdp"), Some(7)),
        "{e}"
    );
    assert_one_short_line(e["message"].as_str().unwrap());

    // Without an id the error has none.
    send(&mut ws, json!({"type": "offer", "sdp": "nope"})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(e["code"], "bad_sdp");
    assert!(e.get("id").is_none(), "{e}");
    still_works(&mut ws).await;
}

#[tokio::test]
async fn a_message_too_large_is_refused_with_its_id() {
    let server = start(&[]);
    let mut ws = joined(&server, "Ann").await;
    // Above the protocol's 768 KiB, below the 1 MiB at which the WebSocket layer cuts it off.
    let huge = "v".repeat(800 * 1024);
    send(&mut ws, json!({"type": "offer", "id": 31, "sdp": huge})).await;
    let e = next_of(&mut ws, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["id"].as_u64()),
        (Some("message_too_large"), Some(31)),
        "{e}"
    );
    assert_one_short_line(e["message"].as_str().unwrap());
    still_works(&mut ws).await;
}

#[tokio::test]
async fn a_valid_offer_is_answered_with_its_id() {
    use str0m::change::SdpAnswer;
    use str0m::media::{Direction, MediaKind};
    use str0m::net::Protocol;
    use str0m::{Candidate, Rtc};

    let server = start(&[]);
    let mut ws = joined(&server, "Ann").await;

    // What a browser sends: one audio track, a host candidate.
    let mut rtc = Rtc::builder().build(Instant::now());
    let host = Candidate::host("127.0.0.1:9".parse().unwrap(), Protocol::Udp).unwrap();
    rtc.add_local_candidate(host);
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().expect("an offer");

    send(
        &mut ws,
        json!({"type": "offer", "id": 12, "sdp": offer.to_sdp_string()}),
    )
    .await;
    let answer = next_of(&mut ws, "answer").await;
    assert_eq!(answer["id"], 12, "{answer}");
    let sdp = answer["sdp"].as_str().unwrap();
    let sdp = SdpAnswer::from_sdp_string(sdp).expect("the answer is SDP");
    rtc.sdp_api()
        .accept_answer(pending, sdp)
        .expect("the answer fits the offer");
    still_works(&mut ws).await;
}

/// A connection that breaks (no close frame) keeps its participant's place: the others see them
/// reconnecting, not leaving, and a new connection with the resume token comes back as the same
/// participant. A closed connection (close frame) leaves at once.
#[tokio::test]
async fn a_broken_connection_comes_back_with_its_resume_token() {
    let server = start(&[]);
    let mut a = connect(&server).await;
    send(
        &mut a,
        json!({"type": "join", "id": 1, "room": "General", "name": "A"}),
    )
    .await;
    let me_a = next_of(&mut a, "joined").await["you"].clone();
    let mut b = connect(&server).await;
    send(
        &mut b,
        json!({"type": "join", "id": 1, "room": "General", "name": "B"}),
    )
    .await;
    let joined_b = next_of(&mut b, "joined").await;
    let me_b = joined_b["you"].clone();
    let token = joined_b["resume_token"]
        .as_str()
        .expect("a resume token")
        .to_string();
    assert!(token.len() >= 16, "{token}");

    assert_eq!(
        next_of(&mut a, "participant_joined").await["participant"]["id"],
        me_b
    );

    // B's connection breaks: the socket goes without a close frame. A sees B reconnecting (and no
    // leave: `next_of` fails on anything else).
    drop(b);
    let upd = next_of(&mut a, "participant_updated").await;
    assert_eq!(upd["participant"]["id"], me_b);
    assert_eq!(upd["participant"]["reconnecting"], true);

    // B comes back on a new connection, muted now.
    let mut b = connect(&server).await;
    send(
        &mut b,
        json!({"type": "join", "id": 2, "room": "General", "name": "B", "resume": token,
               "state": {"mic_muted": true}}),
    )
    .await;
    let back = next_of(&mut b, "joined").await;
    assert_eq!(back["you"], me_b, "the same participant");
    assert_eq!(back["resumed"], true);
    assert_eq!(back["participants"][0]["id"], me_a);
    let new_token = back["resume_token"].as_str().unwrap().to_string();
    assert_ne!(new_token, token);
    let upd = next_of(&mut a, "participant_updated").await;
    assert_eq!(upd["participant"]["id"], me_b);
    assert!(upd["participant"].get("reconnecting").is_none(), "{upd}");
    assert_eq!(upd["participant"]["mic_muted"], true);
    // The new connection speaks for B: a chat from it is B's.
    send(
        &mut b,
        json!({"type": "chat_send", "id": 3, "text": "back"}),
    )
    .await;
    let chat = next_of(&mut a, "chat").await;
    assert_eq!(chat["message"]["author_id"], me_b);

    // A made-up token joins anew; a socket closed with a close frame leaves at once.
    let newcomer = {
        let mut a2 = connect(&server).await;
        send(
            &mut a2,
            json!({"type": "join", "id": 1, "room": "General", "name": "A", "resume": "made-up"}),
        )
        .await;
        let j = next_of(&mut a2, "joined").await;
        assert_ne!(j["you"], me_a, "a made-up token joins anew");
        assert!(j.get("resumed").is_none());
        a2.close(None).await.unwrap();
        j["you"].clone()
    };
    assert_eq!(
        until(&mut b, "participant_left").await["participant_id"],
        newcomer
    );
}
