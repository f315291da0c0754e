//! Access rules against a running `parley`, negative cases first: passwords, private rooms and
//! invites, owners' requests from non-owners, kicks and bans, deleting rooms, and that all of it
//! survives SIGKILL.

use parley_testkit::server::*;
use serde_json::{json, Value};

fn start() -> Server {
    Server::start(env!("CARGO_BIN_EXE_parley"), &[])
}

#[tokio::test]
async fn password_rooms_refuse_wrong_and_missing_passwords_and_keep_them_after_sigkill() {
    let mut server = start();
    let mut owner = connect(&server).await;
    let created = ask(
        &mut owner,
        json!({"type": "create_room", "room": "band", "access": "password", "password": "s3cret"}),
        1,
    )
    .await;
    assert_eq!(created["type"], "room_created", "{created}");
    assert_eq!(created["room"]["access"], "password");
    let key = created["owner_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 22);
    // A password room needs a password to be made.
    let v = ask(
        &mut owner,
        json!({"type": "create_room", "room": "x", "access": "password"}),
        2,
    )
    .await;
    assert_eq!(code(&v), "invalid_password");

    let mut guest = connect(&server).await;
    let join = |extra: Value| {
        let mut j = json!({"type": "join", "room": "band", "name": "Guest"});
        for (k, v) in extra.as_object().unwrap() {
            j[k] = v.clone();
        }
        j
    };
    assert_eq!(
        code(&ask(&mut guest, join(json!({})), 3).await),
        "password_required"
    );
    assert_eq!(
        code(&ask(&mut guest, join(json!({"password": "S3cret"})), 4).await),
        "wrong_password"
    );
    // An owner key that was changed is nobody's.
    let mut edited = key.clone();
    edited.replace_range(0..1, if key.starts_with('A') { "B" } else { "A" });
    assert_eq!(
        code(&ask(&mut guest, join(json!({"owner_key": edited})), 5).await),
        "password_required"
    );
    let joined = ask(&mut guest, join(json!({"password": "s3cret"})), 6).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["owner"], false);
    assert_eq!(joined["settings"]["access"], "password");
    // Too many wrong passwords from one address: a wait.
    let mut other = connect(&server).await;
    let mut last = Value::Null;
    for i in 0..6 {
        last = ask(&mut other, join(json!({"password": "nope"})), 10 + i).await;
    }
    assert_eq!(code(&last), "rate_limited", "{last}");

    // SIGKILL: the room, its password and its owner key are still there.
    server.restart();
    let mut guest = connect(&server).await;
    assert_eq!(
        code(&ask(&mut guest, join(json!({})), 20).await),
        "password_required"
    );
    let mut owner = connect(&server).await;
    let back = ask(&mut owner, join(json!({"owner_key": key})), 21).await;
    assert_eq!(back["type"], "joined", "{back}");
    assert_eq!(back["owner"], true);
}

#[tokio::test]
async fn private_rooms_take_only_valid_invites() {
    let server = start();
    let mut owner = connect(&server).await;
    let created = ask(
        &mut owner,
        json!({"type": "create_room", "room": "hideout", "access": "private"}),
        1,
    )
    .await;
    let key = created["owner_key"].as_str().unwrap().to_string();
    // Not listed for anyone else.
    let mut guest = connect(&server).await;
    let rooms = ask(&mut guest, json!({"type": "list_rooms"}), 2).await;
    assert!(
        !rooms["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "hideout"),
        "{rooms}"
    );
    let join = |invite: Option<&str>| {
        let mut j = json!({"type": "join", "room": "hideout", "name": "Guest"});
        if let Some(t) = invite {
            j["invite"] = json!(t);
        }
        j
    };
    assert_eq!(
        code(&ask(&mut guest, join(None), 3).await),
        "invite_required"
    );
    // A non-owner asks for an invite: forbidden (not even in the room: not_in_room).
    assert_eq!(
        code(&ask(&mut guest, json!({"type": "create_invite"}), 4).await),
        "not_in_room"
    );
    let joined = ask(
        &mut owner,
        json!({"type": "join", "room": "hideout", "name": "Owner", "owner_key": key}),
        5,
    )
    .await;
    assert_eq!(joined["owner"], true);
    let one = ask(&mut owner, json!({"type": "create_invite", "uses": 1}), 6).await;
    assert_eq!(one["type"], "invite_created", "{one}");
    let token = one["invite"]["token"].as_str().unwrap().to_string();
    let expired = ask(
        &mut owner,
        json!({"type": "create_invite", "expires_in_s": 0}),
        7,
    )
    .await;
    let expired = expired["invite"]["token"].as_str().unwrap().to_string();
    let later = ask(
        &mut owner,
        json!({"type": "create_invite", "not_before_ms": 4_000_000_000_000i64}),
        8,
    )
    .await;
    let later = later["invite"]["token"].as_str().unwrap().to_string();

    let mut edited = token.clone();
    edited.pop();
    edited.push(if token.ends_with('x') { 'y' } else { 'x' });
    assert_eq!(
        code(&ask(&mut guest, join(Some(&edited)), 10).await),
        "invalid_invite"
    );
    assert_eq!(
        code(&ask(&mut guest, join(Some(&expired)), 11).await),
        "invalid_invite"
    );
    assert_eq!(
        code(&ask(&mut guest, join(Some(&later)), 12).await),
        "invalid_invite"
    );
    let ok = ask(&mut guest, join(Some(&token)), 13).await;
    assert_eq!(ok["type"], "joined", "{ok}");
    // Used up.
    let mut third = connect(&server).await;
    assert_eq!(
        code(&ask(&mut third, join(Some(&token)), 14).await),
        "invalid_invite"
    );
    // Only owners list invites; tokens are never listed.
    assert_eq!(
        code(&ask(&mut guest, json!({"type": "list_invites"}), 15).await),
        "forbidden"
    );
    let list = ask(&mut owner, json!({"type": "list_invites"}), 16).await;
    let invites = list["invites"].as_array().unwrap();
    assert_eq!(invites.len(), 3);
    assert!(invites.iter().all(|i| i.get("token").is_none()), "{list}");
    assert_eq!(invites.iter().find(|i| i["uses"] == 1).unwrap()["used"], 1);

    // A revoked link admits nobody, at once.
    let open = ask(&mut owner, json!({"type": "create_invite"}), 17).await;
    let (open_id, open_token) = (
        open["invite"]["id"].clone(),
        open["invite"]["token"].clone(),
    );
    let revoked = ask(
        &mut owner,
        json!({"type": "revoke_invite", "invite_id": open_id}),
        18,
    )
    .await;
    assert_eq!(revoked["type"], "ok", "{revoked}");
    let mut fourth = connect(&server).await;
    let refused = ask(
        &mut fourth,
        json!({"type": "join", "room": "hideout", "name": "Fourth", "invite": open_token}),
        19,
    )
    .await;
    assert_eq!(code(&refused), "invalid_invite");
    // With kick, those who came by it leave (and, from this address, are kept out for a while).
    let shared = ask(&mut owner, json!({"type": "create_invite"}), 20).await;
    let (shared_id, shared_token) = (
        shared["invite"]["id"].clone(),
        shared["invite"]["token"].clone(),
    );
    let came = ask(
        &mut fourth,
        json!({"type": "join", "room": "hideout", "name": "Fourth", "invite": shared_token}),
        21,
    )
    .await;
    assert_eq!(came["type"], "joined", "{came}");
    let revoked = ask(
        &mut owner,
        json!({"type": "revoke_invite", "invite_id": shared_id, "kick": true}),
        22,
    )
    .await;
    assert_eq!(revoked["type"], "ok", "{revoked}");
    assert_eq!(until(&mut fourth, "kicked").await["room"], "hideout");
    // The one who came by the single-use invite stays: a member still reads the room's history.
    let history = ask(&mut guest, json!({"type": "chat_history"}), 23).await;
    assert_eq!(history["type"], "chat_history", "{history}");
}

#[tokio::test]
async fn owners_kick_mute_and_delete_and_nobody_else_can() {
    let server = start();
    let mut owner = connect(&server).await;
    let created = ask(
        &mut owner,
        json!({"type": "create_room", "room": "class"}),
        1,
    )
    .await;
    let key = created["owner_key"].as_str().unwrap().to_string();
    ask(
        &mut owner,
        json!({"type": "join", "room": "class", "name": "Teacher", "owner_key": key}),
        2,
    )
    .await;
    let mut kid = connect(&server).await;
    let joined = ask(
        &mut kid,
        json!({"type": "join", "room": "class", "name": "Kid"}),
        3,
    )
    .await;
    let kid_id = joined["you"].clone();
    let owner_id = joined["participants"][0]["id"].clone();
    assert_eq!(joined["participants"][0]["owner"], true);

    // A member is no owner.
    for (i, request) in [
        json!({"type": "kick", "participant_id": owner_id}),
        json!({"type": "mute", "participant_id": owner_id}),
        json!({"type": "set_owner", "participant_id": kid_id, "owner": true}),
        json!({"type": "room_settings", "locked": true}),
        json!({"type": "delete_room", "room": "class"}),
        json!({"type": "admin", "token": "not-the-token"}),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            code(&ask(&mut kid, request, 10 + i as u64).await),
            "forbidden"
        );
    }

    // Mute: the kid's mic is off, and it says who did it.
    let ok = ask(
        &mut owner,
        json!({"type": "mute", "participant_id": kid_id}),
        20,
    )
    .await;
    assert_eq!(ok["type"], "ok");
    let muted = until(&mut kid, "state_set").await;
    assert_eq!(muted["state"]["mic_muted"], true);
    assert_eq!(muted["by"], owner_id);

    // Lock: nobody new gets in.
    let locked = ask(
        &mut owner,
        json!({"type": "room_settings", "locked": true}),
        21,
    )
    .await;
    assert_eq!(locked["settings"]["locked"], true, "{locked}");
    let mut late = connect(&server).await;
    assert_eq!(
        code(
            &ask(
                &mut late,
                json!({"type": "join", "room": "class", "name": "Late"}),
                22
            )
            .await
        ),
        "room_locked"
    );
    ask(
        &mut owner,
        json!({"type": "room_settings", "locked": false}),
        23,
    )
    .await;

    // Kick: out at once, and the same address may not come back.
    let ok = ask(
        &mut owner,
        json!({"type": "kick", "participant_id": kid_id}),
        24,
    )
    .await;
    assert_eq!(ok["type"], "ok");
    let kicked = until(&mut kid, "kicked").await;
    assert_eq!(kicked["by"], "Teacher");
    assert_eq!(until(&mut kid, "left").await["room"], "class");
    assert_eq!(
        code(
            &ask(
                &mut kid,
                json!({"type": "join", "room": "class", "name": "Kid"}),
                25
            )
            .await
        ),
        "banned"
    );
    // A non-member cannot read the room's history.
    assert_eq!(
        code(&ask(&mut kid, json!({"type": "chat_history"}), 26).await),
        "not_in_room"
    );

    // Delete needs the exact name; then everyone in it is told, and it is gone from every lobby.
    let mut watcher = connect(&server).await;
    assert_eq!(
        code(
            &ask(
                &mut owner,
                json!({"type": "delete_room", "room": "Class"}),
                27
            )
            .await
        ),
        "forbidden"
    );
    let ok = ask(
        &mut owner,
        json!({"type": "delete_room", "room": "class"}),
        28,
    )
    .await;
    assert_eq!(ok["type"], "ok", "{ok}");
    assert_eq!(until(&mut watcher, "room_removed").await["room"], "class");
    let rooms = ask(&mut watcher, json!({"type": "list_rooms"}), 29).await;
    assert!(!rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "class"));
}

#[tokio::test]
async fn names_are_unique_in_a_room() {
    let server = start();
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    let first = ask(
        &mut a,
        json!({"type": "join", "room": "General", "name": "Ann"}),
        1,
    )
    .await;
    assert_eq!(first["name"], "Ann");
    let second = ask(
        &mut b,
        json!({"type": "join", "room": "General", "name": "Ann"}),
        1,
    )
    .await;
    assert_eq!(second["name"], "Ann (2)");
}

/// `parley admin reset-token` prints a new token; after a restart it makes a connection the admin
/// (an owner everywhere, private rooms listed), and the old one is refused.
#[tokio::test]
async fn the_admin_token_from_reset_token_works_and_the_old_one_does_not() {
    let mut server = start();
    let mut owner = connect(&server).await;
    ask(
        &mut owner,
        json!({"type": "create_room", "room": "secret", "access": "private"}),
        1,
    )
    .await;
    let reset = |server: &Server| {
        reset_admin_token(std::path::Path::new(env!("CARGO_BIN_EXE_parley")), server)
    };
    let old = reset(&server);
    let new = reset(&server);
    assert_ne!(old, new);
    server.restart();
    let mut admin = connect(&server).await;
    assert_eq!(
        code(&ask(&mut admin, json!({"type": "admin", "token": old}), 2).await),
        "forbidden"
    );
    assert_eq!(
        ask(&mut admin, json!({"type": "admin", "token": new}), 3).await["type"],
        "admin"
    );
    let rooms = ask(&mut admin, json!({"type": "list_rooms"}), 4).await;
    assert!(
        rooms["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "secret"),
        "the admin sees private rooms: {rooms}"
    );
    let joined = ask(
        &mut admin,
        json!({"type": "join", "room": "secret", "name": "Admin"}),
        5,
    )
    .await;
    assert_eq!(joined["owner"], true, "{joined}");
}

/// A reset takes effect in the running server within seconds: the new token works (WebSocket and
/// status endpoints), the old one does not, and a connection logged in with it is the admin no more.
#[tokio::test]
async fn a_reset_admin_token_takes_effect_without_a_restart() {
    let mut server = Launch::new(env!("CARGO_BIN_EXE_parley"))
        .private_status()
        .start();
    let old = reset_admin_token(std::path::Path::new(env!("CARGO_BIN_EXE_parley")), &server);
    server.restart();
    let mut before = connect(&server).await;
    assert_eq!(
        ask(&mut before, json!({"type": "admin", "token": old}), 1).await["type"],
        "admin"
    );
    assert_eq!(
        ask(&mut before, json!({"type": "admin_overview"}), 2).await["type"],
        "admin_overview"
    );
    let new = reset_admin_token(std::path::Path::new(env!("CARGO_BIN_EXE_parley")), &server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while server.get(&format!("/api/status?token={new}")).0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new token never worked"
        );
        // Keep reading: a connection that does not answer pings is dropped.
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(200), next(&mut before)).await;
    }
    assert_eq!(server.get(&format!("/api/status?token={old}")).0, 401);
    assert_eq!(
        code(&ask(&mut before, json!({"type": "admin_overview"}), 3).await),
        "forbidden",
        "logged in with the old token: not the admin any more"
    );
    let mut after = connect(&server).await;
    assert_eq!(
        code(&ask(&mut after, json!({"type": "admin", "token": old}), 1).await),
        "forbidden"
    );
    assert_eq!(
        ask(&mut after, json!({"type": "admin", "token": new}), 2).await["type"],
        "admin"
    );
}

#[tokio::test]
async fn owners_delete_one_finished_recording_and_nobody_else_does() {
    let server = start();
    let mut owner = connect(&server).await;
    let created = ask(
        &mut owner,
        json!({"type": "create_room", "room": "band", "name": "Ann"}),
        1,
    )
    .await;
    assert_eq!(created["type"], "room_created", "{created}");
    let joined = ask(
        &mut owner,
        json!({"type": "join", "room": "band", "name": "Ann", "owner_key": created["owner_key"]}),
        2,
    )
    .await;
    assert_eq!(joined["owner"], true, "{joined}");
    let mut member = connect(&server).await;
    let joined = ask(
        &mut member,
        json!({"type": "join", "room": "band", "name": "Bo"}),
        3,
    )
    .await;
    assert_eq!(joined["owner"], false, "{joined}");
    let mut elsewhere = connect(&server).await;
    assert_eq!(
        ask(
            &mut elsewhere,
            json!({"type": "join", "room": "General", "name": "Cy"}),
            4
        )
        .await["type"],
        "joined"
    );

    // Two recordings: one made, one running.
    let made = ask(&mut member, json!({"type": "recording_start"}), 5).await;
    let first = made["recording"]["recording_id"].as_i64().expect("an id");
    ask(&mut member, json!({"type": "recording_stop"}), 6).await;
    first_within(&mut owner, 10, "the first recording made", |v| {
        v["type"] == "recording_updated" && v["recording"]["state"] == "ready"
    })
    .await;
    let running = ask(&mut member, json!({"type": "recording_start"}), 7).await;
    let second = running["recording"]["recording_id"]
        .as_i64()
        .expect("an id");
    let dir = |id: i64| server.data_dir().join("recordings").join(id.to_string());
    assert!(dir(first).exists(), "the first recording's directory");

    let delete = |recording: i64| json!({"type": "delete_recording", "recording_id": recording});
    // A member is not an owner; someone in another room has no such recording; nor does a number
    // that was never a recording; and a running one is stopped first.
    let v = ask(&mut member, delete(first), 8).await;
    assert_eq!(code(&v), "forbidden", "{v}");
    assert!(v["message"].as_str().unwrap().contains("owners"), "{v}");
    let v = ask(&mut elsewhere, delete(first), 9).await;
    assert_eq!(code(&v), "forbidden", "Cy owns no room: {v}");
    let v = ask(&mut owner, delete(9_999), 10).await;
    assert_eq!(code(&v), "no_such_recording", "{v}");
    let v = ask(&mut owner, delete(second), 11).await;
    assert_eq!(code(&v), "recording_running", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("stop it first"),
        "{v}"
    );
    let v = ask(
        &mut owner,
        json!({"type": "delete_recording", "recording_id": "1"}),
        12,
    )
    .await;
    assert_eq!(code(&v), "bad_message", "{v}");
    assert!(dir(first).exists(), "nothing was deleted by the refusals");

    // The owner deletes the first: gone from the store and the disk, everyone in the room told.
    let v = ask(&mut owner, delete(first), 13).await;
    assert_eq!(v["type"], "ok", "{v}");
    let told = until(&mut member, "recordings_deleted").await;
    assert_eq!(
        told,
        json!({"type": "recordings_deleted", "room": "band", "recording_id": first})
    );
    assert!(!dir(first).exists(), "its files are gone");
    let listed = ask(&mut member, json!({"type": "list_recordings"}), 14).await;
    let ids: Vec<i64> = listed["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recording_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [second], "only the running one is left");
    // Twice is no such recording; the running one can go once it is made.
    assert_eq!(
        code(&ask(&mut owner, delete(first), 15).await),
        "no_such_recording"
    );
    ask(&mut owner, json!({"type": "recording_stop"}), 16).await;
    first_within(&mut owner, 10, "the second recording made", |v| {
        v["type"] == "recording_updated" && v["recording"]["state"] == "ready"
    })
    .await;
    assert_eq!(ask(&mut owner, delete(second), 17).await["type"], "ok");
    assert!(!dir(second).exists());
}
