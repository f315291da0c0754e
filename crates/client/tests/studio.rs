//! Studio mode against the real `parley` binary, over loopback, with the headless client as producer,
//! artist and listener: roles are checked by the server, a take's chunks go up in any order (a bad hash
//! is refused and sent again, a retry is idempotent, an overlap is refused), the take is resumed by a
//! "reloaded" client holding only its token, and the made take.wav equals the source, bit for bit.

use std::time::Duration;

use parley_client::session::{ClientConfig, Session};
use parley_client::studio::{self, f32_bytes, sha256_hex, TakeUpload};
use parley_client::ClientError;
use parley_proto::{ClientMessage, ErrorCode, ServerMessage, StudioRole, TakeState};
use parley_testkit::server::{built_binary, Server};

async fn join(server: &Server, name: &str, create: bool) -> Session {
    let mut config = ClientConfig::new(&server.url(), "band", name);
    config.create_room = create;
    Session::join(config).await.expect("joined")
}

async fn ask(
    session: &Session,
    message: impl FnOnce(u64) -> ClientMessage,
) -> Result<ServerMessage, ClientError> {
    let id = session.next_request_id();
    session.request(message(id)).await
}

fn refused(result: Result<ServerMessage, ClientError>) -> Option<ErrorCode> {
    match result {
        Err(e) => e.code(),
        Ok(_) => None,
    }
}

/// A take's source: a sweep of floats that are not all 24-bit values (the WAV keeps them exactly).
fn source(frames: usize) -> Vec<f32> {
    (0..frames)
        .map(|i| ((i as f32) * 0.001).sin() * 0.5 + (i % 7) as f32 * 1e-7)
        .collect()
}

#[tokio::test]
async fn a_take_goes_up_in_chunks_survives_a_reload_and_is_made_bit_exact() {
    let server = Server::start(built_binary("parley"), &[]);
    let producer = join(&server, "Ann", true).await;
    let reply = ask(&producer, |id| ClientMessage::RoomSettings {
        id: Some(id),
        access: None,
        password: None,
        locked: None,
        studio: Some(true),
    })
    .await
    .expect("studio mode on");
    assert!(matches!(reply, ServerMessage::RoomSettings { settings, .. } if settings.studio));
    let artist = join(&server, "Bo", false).await;
    let mut events = artist.events();
    let clock = studio::sync_clock(&artist, 6).await.expect("clock");
    assert!(clock.best_rtt().unwrap() < 50.0, "{clock:?}");
    // The server's clock is this machine's: the estimate is close to the truth.
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0;
    let estimate = clock.to_server(studio::local_ms()).unwrap();
    assert!((estimate - wall).abs() < 20.0, "{estimate} vs {wall}");

    // The producer is a producer, the artist an artist; a listener (made so) may not start a take.
    let listener = join(&server, "Cy", false).await;
    let demote = ask(&producer, |id| ClientMessage::SetStudioRole {
        id: Some(id),
        participant_id: listener.you,
        studio_role: StudioRole::Listener,
    })
    .await;
    assert!(matches!(demote, Ok(ServerMessage::Ok { .. })), "{demote:?}");
    let start = |at: f64| {
        move |id| ClientMessage::StartTake {
            id: Some(id),
            sample_rate: 48_000,
            channels: 1,
            first_sample_server_ms: at,
        }
    };
    let now = clock.to_server(studio::local_ms()).unwrap();
    assert_eq!(
        refused(ask(&listener, start(now)).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        refused(
            ask(&artist, |id| ClientMessage::AddMarker {
                id: Some(id),
                label: None,
                at_ms: None
            })
            .await
        ),
        Some(ErrorCode::Forbidden)
    );

    let upload = studio::start_take(&artist, 48_000, 1, now)
        .await
        .expect("take started");
    assert_eq!(upload.take.state, TakeState::Uploading);
    let frames = 96_000 * 3 + 5_000;
    let samples = source(frames);
    let chunks: Vec<(u32, u64, &[f32])> = samples
        .chunks(96_000)
        .enumerate()
        .map(|(i, c)| (i as u32, (i * 96_000) as u64, c))
        .collect();
    // Chunk 2 first, then 0; a damaged body is refused and nothing is stored.
    let (seq, first, data) = chunks[2];
    let reply = upload.put_chunk(seq, first, data).await.expect("chunk 2");
    assert_eq!((reply.status, reply.received_samples), (200, Some(96_000)));
    let body = f32_bytes(chunks[0].2);
    let mut damaged = body.clone();
    damaged[100] ^= 1;
    let reply = upload
        .put_raw(0, 0, 96_000, &sha256_hex(&body), &damaged)
        .await
        .expect("damaged chunk");
    assert_eq!(
        (reply.status, reply.error.as_deref()),
        (422, Some("hash_mismatch"))
    );
    let reply = upload.put_chunk(0, 0, chunks[0].2).await.expect("chunk 0");
    assert_eq!(reply.status, 200);
    // A retry of what is stored is acknowledged again; another chunk over the same frames is not.
    let reply = upload.put_chunk(0, 0, chunks[0].2).await.expect("retry");
    assert_eq!((reply.status, reply.duplicate), (200, true));
    let reply = upload
        .put_chunk(9, 1_000, &samples[1_000..2_000])
        .await
        .expect("overlap");
    assert_eq!(
        (reply.status, reply.error.as_deref()),
        (409, Some("overlap"))
    );
    // Without the token, or with another, nothing is taken.
    let stranger = TakeUpload::resume(artist.server(), upload.take.clone(), "x".repeat(22));
    let reply = stranger
        .put_chunk(1, 96_000, chunks[1].2)
        .await
        .expect("stranger");
    assert_eq!(reply.status, 401);

    // The artist's page "closes": the session leaves. The take is incomplete, not lost.
    let token = upload.token.clone();
    let take = upload.take.clone();
    drop(events);
    let mut artist = artist;
    artist.leave().await.expect("left");
    let mut producer_events = producer.events();
    let incomplete = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match producer_events.recv().await {
                Ok(ServerMessage::TakeUpdated { take: t })
                    if t.take_id == take.take_id && t.state == TakeState::Incomplete =>
                {
                    return t
                }
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("the room hears the take is incomplete");
    assert_eq!(incomplete.received_samples, 192_000);

    // "Reloaded": a new session, the same token. The server says what it holds; the rest goes up.
    let back = join(&server, "Bo", false).await;
    events = back.events();
    let resumed = TakeUpload::resume(back.server(), take.clone(), token);
    let (held, acked) = resumed.status().await.expect("status");
    assert_eq!(acked, vec![0, 2]);
    assert_eq!(held.state, TakeState::Incomplete);
    for (seq, first, data) in &chunks {
        if !acked.contains(seq) {
            let reply = resumed.put_chunk(*seq, *first, data).await.expect("chunk");
            assert_eq!(reply.status, 200, "{reply:?}");
        }
    }
    let ended = resumed.end(frames as u64).await.expect("ended");
    assert_eq!(ended.total_samples, Some(frames as u64));
    let made = resumed
        .wait_complete(Duration::from_secs(30))
        .await
        .expect("made");
    assert_eq!(made.state, TakeState::Complete, "{made:?}");
    drop(events);

    // Its files come by links the server signs for the room's members: a new member gets them in
    // the `studio` state that follows `joined`.
    let member = join(&server, "Di", false).await;
    let mut ev = member.events();
    let takes = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ev.recv().await {
                Ok(ServerMessage::Studio { state, .. }) => return state.takes,
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("the studio state follows joined");
    let listed = takes
        .iter()
        .find(|t| t.take_id == take.take_id)
        .expect("the take is listed");
    assert_eq!(listed.state, TakeState::Complete);
    let url = listed
        .files
        .iter()
        .find(|f| f.name == "take.wav")
        .and_then(|f| f.url.clone())
        .expect("a signed link");
    let (status, body) = parley_client::room_recording::get(member.server(), &url)
        .await
        .expect("download");
    assert_eq!(status, 200);
    let data = body
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk");
    assert_eq!(
        &body[data + 8..],
        f32_bytes(&samples).as_slice(),
        "take.wav is the source, bit for bit"
    );
    // An edited link is refused.
    let (status, _) =
        parley_client::room_recording::get(member.server(), &url.replace("take.wav", "take.flac"))
            .await
            .expect("edited link");
    assert_eq!(status, 403);
}
