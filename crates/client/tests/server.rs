//! The client against the real `parley` binary of this workspace, over loopback: audio flows to the others
//! (never back to its sender) and is recorded to a decodable Ogg/Opus file, muting stops it, a refused join
//! shows the server's code, and a small load run connects everyone with little loss.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use parley_client::audio::{wav_bytes, SyntheticVoice, WavSource};
use parley_client::call::CallConfig;
use parley_client::load::{self, LoadConfig};
use parley_client::session::{ClientConfig, Session};
use parley_client::ClientError;
use parley_proto::{ErrorCode, MediaStateChange};
use parley_testkit::server::{built_binary, Server, TempDir};

/// The servers of these tests share two cores: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `parley` next to this test binary (`target/release/deps/…`), else under the workspace, with the
/// harness's defaults (temp data dir, free ports, media on 127.0.0.1).
fn start_server() -> Server {
    Server::start(built_binary("parley"), &[])
}

fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("client-{tag}"))
}

fn url(server: &Server) -> String {
    server.url()
}

/// A WAV file of a 440 Hz tone, `seconds` long, written by the test.
fn tone_wav(dir: &Path, seconds: f64) -> PathBuf {
    let samples: Vec<i16> = (0..(48_000.0 * seconds) as usize)
        .map(|i| {
            ((i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 48_000.0).sin() * 9_000.0) as i16
        })
        .collect();
    let path = dir.join("tone.wav");
    std::fs::write(&path, wav_bytes(&samples, 1, 48_000)).expect("WAV written");
    path
}

fn player(server: &Server, room: &str, name: &str, wav: &Path) -> ClientConfig {
    let mut c = ClientConfig::new(&url(server), room, name);
    c.call = CallConfig {
        audio: Some(Box::new(WavSource::open(wav, true).expect("WAV opens"))),
        ..Default::default()
    };
    c
}

async fn packets_from(session: &Session, publisher: u64) -> u64 {
    session
        .stats()
        .await
        .expect("stats")
        .audio_packets_from(publisher)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn audio_reaches_the_other_is_recorded_and_never_comes_back() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_server();
    let dir = temp_dir("rec");
    let wav = tone_wav(dir.path(), 2.0);
    let out = dir.path().join("recordings");
    runtime().block_on(async {
        let mut a = Session::join(player(&server, "General", "Ann", &wav))
            .await
            .expect("A joins");
        let mut b_config = ClientConfig::new(&url(&server), "General", "Bo ../x");
        b_config.call = CallConfig {
            audio: Some(Box::new(SyntheticVoice::encoded(5, 1.0).expect("encoder"))),
            record_dir: Some(out.clone()),
            ..Default::default()
        };
        let mut b = Session::join(b_config).await.expect("B joins");
        assert_eq!(b.participants.len(), 1, "B sees A in the room");
        // A receive-only viewer (a wall screen, or `record`'s default).
        let mut c_config = ClientConfig::new(&url(&server), "General", "Wall");
        c_config.role = parley_proto::Role::Viewer;
        let mut c = Session::join(c_config).await.expect("C joins as a viewer");
        tokio::time::sleep(Duration::from_secs(3)).await;

        let b_stats = b.stats().await.expect("stats");
        let from_a = b_stats.audio_packets_from(a.you);
        assert!(
            from_a > 100,
            "B got {from_a} packets from A in 3 s:\n{}",
            b_stats.report()
        );
        assert_eq!(b_stats.own_media_received, 0, "B received its own audio");
        let a_stats = a.stats().await.expect("stats");
        assert!(
            a_stats.audio_packets_from(b.you) > 100,
            "{}",
            a_stats.report()
        );
        assert_eq!(a_stats.own_media_received, 0, "A received its own audio");
        assert!(b_stats.join_time.is_some(), "join time measured");
        assert!(
            b_stats.streams.iter().all(|s| s.publisher == a.you),
            "{:?}",
            b_stats.streams
        );

        let c_stats = c.stats().await.expect("stats");
        assert!(
            c_stats.audio_packets_from(a.you) > 100 && c_stats.audio_packets_from(b.you) > 100,
            "the viewer hears both:\n{}",
            c_stats.report()
        );
        assert_eq!(c_stats.sent_audio_packets, 0);
        assert!(
            a_stats.streams.iter().all(|s| s.publisher == b.you),
            "A gets nothing from the viewer: {:?}",
            a_stats.streams
        );
        c.leave().await.expect("C leaves");

        let a_end = a.leave().await.expect("A leaves");
        assert!(a_end.stats.sent_audio_packets > 100);
        let b_end = b.leave().await.expect("B leaves");
        assert_eq!(b_end.recordings.len(), 1, "{:?}", b_end.recordings);
    });

    // One file, named by id and sanitized name.
    let files: Vec<_> = std::fs::read_dir(&out)
        .expect("recordings dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.ends_with("-Ann.opus"), "{name}");
    let bytes = std::fs::read(&files[0]).expect("recording");
    assert_eq!(&bytes[..4], b"OggS");
    assert!(bytes.windows(8).any(|w| w == b"OpusHead"));

    // It decodes to the tone (not silence).
    let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut pcm = vec![0i16; 5760];
    let (mut packets, mut loud_frames) = (0, 0);
    while let Some(p) = reader.read_packet().expect("readable Ogg") {
        if p.data.starts_with(b"OpusHead") || p.data.starts_with(b"OpusTags") {
            continue;
        }
        packets += 1;
        let n = decoder
            .decode(&p.data, &mut pcm, false)
            .expect("decodable Opus");
        if parley_client::audio::level_dbov(&pcm[..n]) < 30 {
            loud_frames += 1;
        }
    }
    assert!(packets > 100, "{packets} packets recorded");
    assert!(
        loud_frames > 80,
        "{loud_frames} of {packets} frames are loud"
    );
}

#[test]
fn muting_stops_forwarding_and_unmuting_resumes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_server();
    let dir = temp_dir("mute");
    let wav = tone_wav(dir.path(), 1.0);
    runtime().block_on(async {
        let mut a = Session::join(player(&server, "General", "Ann", &wav))
            .await
            .expect("A joins");
        let mut b = Session::join(ClientConfig::new(&url(&server), "General", "Bo"))
            .await
            .expect("B joins");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            packets_from(&b, a.you).await > 30,
            "audio flows before muting"
        );

        let state = a
            .set_state(MediaStateChange {
                mic_muted: Some(true),
                ..Default::default()
            })
            .await
            .expect("state_set");
        assert!(state.mic_muted);
        // Packets sent before the mute may still be on their way (a busy machine delays them): wait
        // until the count holds still.
        let mut muted_at = packets_from(&b, a.you).await;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = packets_from(&b, a.you).await;
            if now == muted_at {
                break;
            }
            muted_at = now;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let later = packets_from(&b, a.you).await;
        assert_eq!(later, muted_at, "muted audio still reaches B");
        let a_stats = a.stats().await.expect("stats");
        assert!(
            a_stats.sent_audio_packets > 120,
            "A keeps sending while muted"
        );

        a.set_state(MediaStateChange {
            mic_muted: Some(false),
            ..Default::default()
        })
        .await
        .expect("state_set");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let stats = b.stats().await.expect("stats");
        let resumed = stats.audio_packets_from(a.you);
        assert!(
            resumed > later + 30,
            "unmuted audio flows again: {resumed} after {later}"
        );
        // The server hides the muted stretch: no gap in sequence numbers, so no loss.
        let stream = stats
            .streams
            .iter()
            .find(|s| s.publisher == a.you)
            .expect("A's stream");
        assert_eq!(stream.lost, 0, "{}", stats.report());

        a.leave().await.expect("A leaves");
        b.leave().await.expect("B leaves");
    });
}

#[test]
fn a_refused_join_carries_the_servers_code_and_message() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_server();
    runtime().block_on(async {
        let err = Session::join(ClientConfig::new(&url(&server), "Nowhere", "Ann"))
            .await
            .err()
            .expect("joining a missing room fails");
        assert_eq!(err.code(), Some(ErrorCode::NoSuchRoom), "{err}");
        let text = err.to_string();
        assert!(text.contains("no_such_room"), "{text}");

        let err = Session::join(ClientConfig::new(&url(&server), "General", "  "))
            .await
            .err()
            .expect("a blank name fails");
        assert_eq!(err.code(), Some(ErrorCode::InvalidName), "{err}");

        // With create, the room is made first.
        let mut c = ClientConfig::new(&url(&server), "Nowhere", "Ann");
        c.create_room = true;
        let mut s = Session::join(c).await.expect("joins the new room");
        assert_eq!(s.room, "Nowhere");
        s.leave().await.expect("leaves");

        let err = Session::join(ClientConfig::new("127.0.0.1:1", "General", "Ann"))
            .await
            .err()
            .expect("no server there");
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    });
}

#[test]
fn a_small_load_run_connects_everyone_with_little_loss() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_server();
    let summary = runtime().block_on(async {
        let config = LoadConfig::new(&url(&server), 2, 3, Duration::from_secs(3));
        load::run(config).await.expect("load run")
    });
    println!("{}", summary.report());
    let t = &summary.totals;
    assert_eq!(t.participants, 6, "{t:?}");
    assert_eq!(t.connected, 6, "every participant connected: {t:?}");
    assert!(t.failures.is_empty(), "{:?}", t.failures);
    assert_eq!(t.streams_expected, 12);
    assert_eq!(
        t.streams_received, 12,
        "everyone heard everyone else in the room"
    );
    assert!(t.loss_percent < 5.0, "loss {} %", t.loss_percent);
    assert_eq!(t.own_media_received, 0);
    assert!(t.latency_ms.count > 100, "{:?}", t.latency_ms);
    // Loopback: well under a second even on a busy machine.
    assert!(
        t.latency_ms.p50.is_some_and(|p| p < 500.0),
        "{:?}",
        t.latency_ms
    );
    assert_eq!(t.join_ms.count, 6, "{:?}", t.join_ms);
    for r in &summary.per_room {
        assert_eq!(r.summary.connected, 3, "{}: {:?}", r.room, r.summary);
        assert_eq!(r.summary.streams_received, 6, "{}", r.room);
    }
    let json = serde_json::to_value(&summary).expect("JSON");
    assert_eq!(json["totals"]["connected"], 6);
    assert!(json["totals"]["latency_ms"]["p99"].is_number(), "{json}");
}

/// The Ogg page granule positions of an Ogg/Opus file: the last one is its length in 48 kHz samples
/// (pre-skip included).
fn last_granule(ogg: &[u8]) -> u64 {
    let mut last = 0;
    let mut at = 0;
    while let Some(i) = ogg[at..].windows(4).position(|w| w == b"OggS") {
        let page = at + i;
        if page + 14 > ogg.len() {
            break;
        }
        let granule = u64::from_le_bytes(ogg[page + 6..page + 14].try_into().unwrap());
        if granule != u64::MAX {
            last = last.max(granule);
        }
        at = page + 4;
    }
    last
}

#[test]
fn a_room_recording_is_shared_with_the_room_and_only_with_it() {
    use parley_client::room_recording;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = start_server();
    let dir = temp_dir("room-rec");
    let wav = tone_wav(dir.path(), 2.0);
    runtime().block_on(async {
        let a = Session::join(player(&server, "General", "Ann", &wav))
            .await
            .expect("A joins");
        let b = Session::join(player(&server, "General", "Bo", &wav))
            .await
            .expect("B joins");
        // A viewer may list recordings but not start one.
        let mut v_config = ClientConfig::new(&url(&server), "General", "Wall");
        v_config.role = parley_proto::Role::Viewer;
        let mut viewer = Session::join(v_config).await.expect("viewer joins");
        let refused = room_recording::start(&viewer).await.unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "{refused}");
        assert_eq!(
            room_recording::stop(&a).await.unwrap_err().code(),
            Some(ErrorCode::NotRecording)
        );

        let now = room_recording::start(&a).await.expect("recording starts");
        assert_eq!(now.started_by, "Ann");
        let twice = room_recording::start(&b).await.unwrap_err();
        assert_eq!(twice.code(), Some(ErrorCode::RecordingRunning), "{twice}");
        // A late joiner is told at once.
        let late = Session::join(ClientConfig::new(&url(&server), "General", "Cy"))
            .await
            .expect("C joins");
        assert_eq!(
            late.recording.as_ref().map(|r| r.recording_id),
            Some(now.recording_id),
            "the late joiner knows it is being recorded"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        room_recording::stop(&b).await.expect("B stops it");
        let made = room_recording::wait_until_made(&a, now.recording_id, Duration::from_secs(20))
            .await
            .expect("the files are made");
        assert_eq!(made.state, parley_proto::RecordingState::Ready, "{made:?}");
        assert_eq!(made.started_by, "Ann");
        assert_eq!(made.stopped_by.as_deref(), Some("Bo"));
        let tracks: Vec<_> = made.files.iter().filter(|f| f.kind == "track").collect();
        assert_eq!(tracks.len(), 2, "one track per talker: {:?}", made.files);
        let recording_dir = server
            .data_dir()
            .join("recordings")
            .join(made.recording_id.to_string());
        assert!(recording_dir.join("mix.ogg").exists());
        assert!(
            !recording_dir.join("journal").exists(),
            "the journals go once the files are made"
        );
        let out = dir.path().join("downloaded");
        let paths = room_recording::download_all(&server.url(), &made, &out)
            .await
            .expect("members download");
        assert!(!paths.is_empty());
        let mixes: Vec<_> = made.files.iter().filter(|f| f.kind == "mix").collect();
        let formats: Vec<&str> = mixes.iter().map(|f| f.format.as_str()).collect();
        assert_eq!(formats, ["ogg", "wav", "flac"], "the mix: {:?}", made.files);
        for path in &paths {
            let bytes = std::fs::read(path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".wav") {
                assert_eq!(&bytes[..4], b"RIFF");
                // 16-bit mono at 48 kHz after a 44-byte header.
                let seconds = (bytes.len() - 44) as f64 / 96_000.0;
                assert!(
                    (2.5..=4.5).contains(&seconds),
                    "the WAV mix lasts {seconds:.2} s"
                );
                continue;
            }
            if name.ends_with(".flac") {
                assert_eq!(&bytes[..4], b"fLaC");
                continue;
            }
            assert_eq!(&bytes[..4], b"OggS", "{}", path.display());
            let seconds = last_granule(&bytes) as f64 / 48_000.0;
            assert!(
                (2.0..=4.5).contains(&seconds),
                "{} lasts {seconds:.2} s for about 3 s of recording",
                path.display()
            );
        }

        // Links are capabilities for one file, signed by the server: edited ones are refused.
        let url = made.files[0].url.clone().unwrap();
        let edited = url.replace("sig=", "sig=A");
        let (status, _) = room_recording::get(&server.url(), &edited).await.unwrap();
        assert_eq!(status, 403);
        let other = url.replace(&made.files[0].name, "mix.wav");
        let (status, _) = room_recording::get(&server.url(), &other).await.unwrap();
        assert_eq!(status, 403, "a link for one file opens no other");
        let (status, _) = room_recording::get(
            &server.url(),
            &format!("/api/recordings/{}/../parley.sqlite3", now.recording_id),
        )
        .await
        .unwrap();
        assert!(status == 404 || status == 400, "{status}");
        // Someone in another room sees none of them.
        let mut elsewhere = ClientConfig::new(&url_of(&server), "Other", "Dee");
        elsewhere.create_room = true;
        let dee = Session::join(elsewhere)
            .await
            .expect("D joins another room");
        assert!(room_recording::list(&dee).await.expect("list").is_empty());
        viewer.leave().await.ok();
    });
    // A recording running when the server is killed is made from its journals, as interrupted.
    runtime().block_on(async {
        let a = Session::join(player(&server, "General", "Ann", &wav))
            .await
            .expect("A joins");
        let now = room_recording::start(&a).await.expect("starts");
        let started = std::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        // The recording ran at least this long when the server was killed.
        let ran = started.elapsed().as_secs_f64();
        server.restart();
        let again = Session::join(ClientConfig::new(&url(&server), "General", "Ann"))
            .await
            .expect("A joins the restarted server");
        let made =
            room_recording::wait_until_made(&again, now.recording_id, Duration::from_secs(20))
                .await
                .expect("made after the restart");
        assert_eq!(
            made.state,
            parley_proto::RecordingState::Interrupted,
            "{made:?}"
        );
        let track = made
            .files
            .iter()
            .find(|f| f.kind == "track")
            .expect("a track");
        let (status, bytes) = room_recording::get(&server.url(), track.url.as_ref().unwrap())
            .await
            .unwrap();
        assert_eq!(status, 200);
        let seconds = last_granule(&bytes) as f64 / 48_000.0;
        // At most the last second is lost (the journal is flushed every half second).
        assert!(
            seconds >= ran - 1.0 && seconds <= ran + 1.0,
            "the interrupted track lasts {seconds:.2} s of the {ran:.2} s before the kill"
        );
        assert!(
            !server
                .data_dir()
                .join("recordings")
                .join(now.recording_id.to_string())
                .join("journal")
                .exists(),
            "the journals go once the interrupted recording's files are made"
        );
    });
}

fn url_of(server: &Server) -> String {
    server.url()
}

/// A recording the server cannot write ends at once with a message to the room, is listed as failed,
/// and the call goes on; the next recording works.
#[test]
fn a_recording_that_cannot_be_written_ends_cleanly_and_the_call_goes_on() {
    use parley_client::room_recording;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_server();
    let dir = temp_dir("rec-fail");
    let wav = tone_wav(dir.path(), 2.0);
    // Recording 1's directory cannot be made: a file is in its place (as a full or broken disk
    // would refuse it).
    let recordings = server.data_dir().join("recordings");
    std::fs::create_dir_all(&recordings).unwrap();
    std::fs::write(recordings.join("1"), b"in the way").unwrap();
    runtime().block_on(async {
        let a = Session::join(player(&server, "General", "Ann", &wav))
            .await
            .expect("A joins");
        let b = Session::join(player(&server, "General", "Bo", &wav))
            .await
            .expect("B joins");
        let now = room_recording::start(&a).await.expect("the start is taken");
        assert_eq!(now.recording_id, 1);
        let made = room_recording::wait_until_made(&a, 1, Duration::from_secs(10))
            .await
            .expect("listed as finished");
        assert_eq!(made.state, parley_proto::RecordingState::Failed, "{made:?}");
        assert!(made.files.is_empty());
        let message = made.message.clone().unwrap_or_default();
        assert!(message.contains("could not write"), "{made:?}");
        let b_sees = room_recording::list(&b).await.expect("B lists");
        assert_eq!(
            b_sees[0].state,
            parley_proto::RecordingState::Failed,
            "{b_sees:?}"
        );
        // The call went on: B still hears A.
        let heard = packets_from(&b, a.you).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            packets_from(&b, a.you).await > heard + 10,
            "A's audio still reaches B"
        );
        // The next recording is written.
        let next = room_recording::start(&b).await.expect("a second recording");
        tokio::time::sleep(Duration::from_secs(1)).await;
        room_recording::stop(&b).await.expect("stops");
        let made = room_recording::wait_until_made(&a, next.recording_id, Duration::from_secs(10))
            .await
            .expect("made");
        assert_eq!(made.state, parley_proto::RecordingState::Ready, "{made:?}");
        assert!(made.files.iter().any(|f| f.kind == "mix"), "{made:?}");
    });
}
