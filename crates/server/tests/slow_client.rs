//! A client that stops reading, against the running `parley`: its outbox is bounded, so the server's
//! memory stays put while far more than that is addressed to it; everyone else keeps being served;
//! and when it finally reads, the last thing on its socket is a close frame (4008) saying why.
//! The flood is chat in the slow client's room: big messages (limits raised for the test) from
//! several members at once.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parley_testkit::server::*;
use serde_json::json;
use socket2::{Domain, Socket, Type};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

const MIB: u64 = 1024 * 1024;
/// The two tests load both cores: run one at a time, or the first one's timings are the second's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// How much the server's RSS may grow while the slow client is flooded.
const RSS_GROWTH_LIMIT: u64 = 32 * MIB;
/// Flooding stops once this much was addressed to every connection (or at `FLOOD_FOR`).
const FLOOD_TARGET: u64 = 3 * RSS_GROWTH_LIMIT;
/// The server gives up on a frame the client has not taken in 15 s (without a close frame): the slow
/// client starts reading well before that.
const FLOOD_FOR: Duration = Duration::from_secs(7);
/// Members that send big chat messages (each goes to everyone in the room, the slow client too).
const FLOODERS: usize = 4;
/// Characters per chat message (4 bytes each in UTF-8).
const CHAT_CHARS: usize = 25_000;

/// A WebSocket done by hand on a plain socket: frames are written masked, as clients must, and what
/// the server sends is read (or not) as bytes.
struct RawWs {
    stream: TcpStream,
    /// Bytes read past the handshake's headers.
    early: Vec<u8>,
}

impl RawWs {
    /// Connects with `recv_buffer` bytes of SO_RCVBUF, set before connect so that the window the
    /// server sees is that small (or large) from the start.
    fn connect(addr: SocketAddr, recv_buffer: usize) -> RawWs {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(recv_buffer).unwrap();
        socket.connect(&addr.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        write!(
            stream,
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        let end = loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed during the handshake");
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).to_string();
        assert!(text.starts_with("HTTP/1.1 101"), "{text}");
        RawWs {
            early: head[end..].to_vec(),
            stream,
        }
    }

    /// Sends one masked text frame.
    fn send_text(stream: &mut TcpStream, text: &str) -> std::io::Result<()> {
        let payload = text.as_bytes();
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x81];
        match payload.len() {
            n @ 0..=125 => frame.push(0x80 | n as u8),
            n @ 126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        stream.write_all(&frame)
    }

    /// Everything the server sends up to its close frame (or until it closes the socket), as
    /// (opcode, payload) frames, and the byte count.
    fn read_all(mut self) -> (Vec<(u8, Vec<u8>)>, u64) {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut raw = std::mem::take(&mut self.early);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(frames) = parse_frames(&raw) {
                if frames.last().is_some_and(|(op, _)| *op == 0x8) {
                    return (frames, raw.len() as u64);
                }
            }
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("reading after {} bytes: {e}", raw.len()),
            }
        }
        let frames =
            parse_frames(&raw).unwrap_or_else(|| panic!("a cut frame in {} bytes", raw.len()));
        (frames, raw.len() as u64)
    }
}

/// Server frames (never masked) in `raw`; `None` while the last one is incomplete.
fn parse_frames(raw: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        if raw.len() - at < 2 {
            return None;
        }
        let opcode = raw[at] & 0x0f;
        assert_eq!(raw[at + 1] & 0x80, 0, "server frames are not masked");
        let (len, header) = match raw[at + 1] & 0x7f {
            126 if raw.len() - at >= 4 => {
                (u16::from_be_bytes([raw[at + 2], raw[at + 3]]) as usize, 4)
            }
            127 if raw.len() - at >= 10 => (
                u64::from_be_bytes(raw[at + 2..at + 10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        let start = at + header;
        if start + len > raw.len() {
            return None;
        }
        frames.push((opcode, raw[start..start + len].to_vec()));
        at = start + len;
    }
    Some(frames)
}

fn rss(server: &Server) -> u64 {
    server.rss_kib().expect("VmRSS in /proc") * 1024
}

fn slow_closes(http: SocketAddr) -> f64 {
    let (_, body) = http_get(http, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix("parley_slow_client_closes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A chat message of `CHAT_CHARS` characters (most of them 4 bytes in UTF-8), unique per (flooder, i).
fn long_text(flooder: usize, i: usize) -> String {
    let mut text = format!("{flooder}-{i}-");
    let fill = CHAT_CHARS - text.chars().count();
    text.extend(std::iter::repeat_n('\u{1D400}', fill)); // MATHEMATICAL BOLD CAPITAL A
    text
}

/// A room name of 40 characters (most of them 4 bytes in UTF-8), unique per (flooder, i).
fn long_name(flooder: usize, i: usize) -> String {
    let mut name = format!("{flooder}-{i}-");
    while name.chars().count() < 40 {
        name.push('\u{1D400}');
    }
    name
}

fn join_general(stream: &mut TcpStream, name: &str) {
    let join = json!({"type": "join", "room": "General", "name": name});
    RawWs::send_text(stream, &join.to_string()).unwrap();
}

/// A normal client on a socket with a large receive buffer (so a moment's lag is absorbed).
async fn connect_buffered(server: &Server) -> Ws {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4 * MIB as usize).unwrap();
    socket.connect(&server.http.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(socket.into()).unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), MaybeTlsStream::Plain(tcp))
        .await
        .expect("websocket connects");
    next_of(&mut ws, "welcome").await;
    next_of(&mut ws, "rooms").await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_a_reason_and_memory_stays_bounded() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let chars = CHAT_CHARS.to_string();
    let server = Server::start(
        env!("CARGO_BIN_EXE_parley"),
        &[
            "--media-workers",
            "1",
            "--chat-max-chars",
            &chars,
            "--chat-rate",
            "100",
            "--chat-burst",
            "100",
            // The flooders all come from 127.0.0.1.
            "--chat-rate-per-ip",
            "10000",
            "--chat-burst-per-ip",
            "10000",
        ],
    );
    let stop_creating = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicBool::new(false));

    // The slow client: in the room, a `list_rooms` every 300 ms (so it is not silent), and it never
    // reads.
    let mut slow = RawWs::connect(server.http, 4096);
    join_general(&mut slow.stream, "Slow");
    let pinging = Arc::new(AtomicBool::new(true));
    let pinger = {
        let mut stream = slow.stream.try_clone().unwrap();
        let pinging = pinging.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while pinging.load(Ordering::Relaxed) {
                i += 1;
                let text = format!(r#"{{"type":"list_rooms","id":{i}}}"#);
                if RawWs::send_text(&mut stream, &text).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };

    // Flooders are in the room and send big messages, evenly, under the per-connection rate limit (a
    // burst at the start would hit the readers before their sockets' buffers have grown). Each one
    // goes to every member. They read all they are sent (and throw it away): none of them may be
    // closed.
    let flooders: Vec<RawWs> = (0..FLOODERS)
        .map(|f| {
            let mut ws = RawWs::connect(server.http, 4 * MIB as usize);
            join_general(&mut ws.stream, &format!("Flooder {f}"));
            ws
        })
        .collect();
    // A normal member that reads everything and asks for the room list three times a second.
    let mut probe = connect_buffered(&server).await;
    send(
        &mut probe,
        json!({"type": "join", "id": 1, "room": "General", "name": "Probe"}),
    )
    .await;
    next_of(&mut probe, "joined").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The server's memory, sampled every 20 ms from now on.
    let baseline = rss(&server);
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        let pid = server.pid();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
                let kib = status.ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                });
                if let Some(kib) = kib {
                    peak.fetch_max(kib * 1024, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let flood_start = Instant::now();
    let created = Arc::new(AtomicU64::new(0));
    let (mut writers, mut readers) = (Vec::new(), Vec::new());
    for (f, ws) in flooders.into_iter().enumerate() {
        let mut tx = ws.stream.try_clone().unwrap();
        let (done, failing, count) = (stop_creating.clone(), failed.clone(), created.clone());
        writers.push(std::thread::spawn(move || {
            let (stop_creating, failed, created) = (done, failing, count);
            let mut i = 0;
            while !stop_creating.load(Ordering::Relaxed) {
                let chat = json!({"type": "chat_send", "text": long_text(f, i)});
                if RawWs::send_text(&mut tx, &chat.to_string()).is_err() {
                    failed.store(true, Ordering::Relaxed);
                    return;
                }
                created.fetch_add(1, Ordering::Relaxed);
                i += 1;
                // About 13 MB/s to every member: the normal readers keep up on 2 busy cores.
                std::thread::sleep(Duration::from_millis(30));
            }
        }));
        let (stop, failed) = (stop.clone(), failed.clone());
        let mut rx = ws.stream;
        // Once the flood is over this thread writes too (the writer has stopped by then): a
        // `list_rooms` now and then, so that the server does not drop a silent connection.
        let (mut keepalive, writer_gone) = (rx.try_clone().unwrap(), stop_creating.clone());
        readers.push(std::thread::spawn(move || {
            rx.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = vec![0u8; 1024 * 1024];
            let mut said = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if writer_gone.load(Ordering::Relaxed)
                    && said.elapsed() > Duration::from_millis(500)
                {
                    // The writer sleeps 30 ms between messages: 500 ms after the stop it is done.
                    let _ = RawWs::send_text(&mut keepalive, r#"{"type":"list_rooms"}"#);
                    said = Instant::now();
                }
                match rx.read(&mut buf) {
                    Ok(0) => {
                        eprintln!("flooder {f}'s socket was closed");
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("flooder {f}: {e}");
                        failed.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }

    // The probe: every `list_rooms` must be answered promptly. It also counts the chat messages
    // pushed, which went to every member (the slow one too, until it was closed).
    let mut pushed = 0u64;
    let mut received = 0u64;
    let mut worst = Duration::ZERO;
    let mut asked = 0u64;
    let mut waiting: Option<Instant> = None;
    let mut queued_before_close = None;
    let mut writers_done = false;
    let mut slow = Some(slow);
    let mut slow_reading = None;
    let mut pinger = Some(pinger);
    let mut closes = tokio::task::spawn_blocking({
        let http = server.http;
        move || slow_closes(http)
    });
    let mut ask = tokio::time::interval(Duration::from_millis(300));
    loop {
        let flooding = flood_start.elapsed() < FLOOD_FOR && pushed < FLOOD_TARGET;
        if !flooding && !stop_creating.load(Ordering::Relaxed) {
            stop_creating.store(true, Ordering::Relaxed);
        }
        if !flooding && !writers_done {
            for w in writers.drain(..) {
                w.join().unwrap();
            }
            writers_done = true;
        }
        // Every message sent has come back to the probe: everything addressed was counted.
        if writers_done && received >= created.load(Ordering::Relaxed) && waiting.is_none() {
            break;
        }
        tokio::select! {
            msg = probe.next() => {
                let msg = msg.expect("the probe's socket stays open").expect("a frame");
                let Message::Text(t) = msg else {
                    assert!(!matches!(msg, Message::Close(_)), "the probe was closed: {msg:?}");
                    continue;
                };
                if t.starts_with(r#"{"type":"chat","#) {
                    pushed += t.len() as u64;
                    received += 1;
                    continue;
                }
                if !t.starts_with(r#"{"type":"rooms","id":"#) {
                    continue; // the room's news: joins, counts
                }
                assert!(
                    t.starts_with(&format!(r#"{{"type":"rooms","id":{asked},"#)),
                    "{}",
                    &t[..t.len().min(200)]
                );
                worst = worst.max(waiting.take().expect("a question").elapsed());
            }
            _ = ask.tick(), if waiting.is_none() => {
                asked += 1;
                waiting = Some(Instant::now());
                send(&mut probe, json!({"type": "list_rooms", "id": asked})).await;
            }
            n = &mut closes => {
                if n.unwrap() >= 1.0 {
                    queued_before_close.get_or_insert(pushed);
                    // The server has given up on it: the slow client reads at last (still pinging,
                    // so not silent), while the flood goes on for the others: first whatever the
                    // server had written to it, then the close frame. (Waiting longer would meet
                    // the 2.5 s write stall instead, a different close, tested below.)
                    if let Some(slow) = slow.take() {
                        slow_reading = Some(tokio::task::spawn_blocking(move || slow.read_all()));
                    }
                }
                let http = server.http;
                closes = tokio::task::spawn_blocking(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    slow_closes(http)
                });
            }
        }
        if let Some(at) = waiting {
            assert!(
                at.elapsed() < Duration::from_secs(5),
                "no answer for the probe in 5 s"
            );
        }
        assert!(
            flood_start.elapsed() < FLOOD_FOR + Duration::from_secs(6),
            "the server did not deliver every message: {received} of {}",
            created.load(Ordering::Relaxed)
        );
    }
    let flooded_for = flood_start.elapsed();
    let addressed = pushed;
    let mut slow_reading = slow_reading.expect("the slow client is being read");
    let log_now = || server.log();
    // Meanwhile the probe is read, so that it answers the server's pings.
    let (frames, slow_bytes) = loop {
        tokio::select! {
            done = &mut slow_reading => break done.unwrap_or_else(|e| {
                let log = log_now();
                let lines: Vec<&str> = log.lines().filter(|l| !l.contains("join") && !l.contains("leave")).collect();
                panic!("{e}\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
            }),
            _ = probe.next() => {}
        }
    };

    pinging.store(false, Ordering::Relaxed);
    if let Some(p) = pinger.take() {
        p.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    for t in readers {
        t.join().unwrap();
    }
    let peak = peak.load(Ordering::Relaxed);
    let growth = peak.saturating_sub(baseline);
    println!(
        "{} chat messages sent in {flooded_for:.1?}: {:.1} MiB of them addressed to every member \
         ({} MiB of them before the server decided to close the slow one); the slow client took \
         {:.2} MiB in {} frames; server RSS {:.1} MiB at the start, peak {:.1} MiB (+{:.1} MiB); \
         slowest probe answer {worst:?} of {asked}",
        created.load(Ordering::Relaxed),
        addressed as f64 / MIB as f64,
        queued_before_close.map_or("?".into(), |b| format!("{:.1}", b as f64 / MIB as f64)),
        slow_bytes as f64 / MIB as f64,
        frames.len(),
        baseline as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        growth as f64 / MIB as f64,
    );

    assert!(!failed.load(Ordering::Relaxed), "a normal client failed");
    assert!(
        queued_before_close.is_some(),
        "the slow client was never closed"
    );
    assert_eq!(slow_closes(server.http), 1.0, "only the slow client");
    assert!(
        growth < RSS_GROWTH_LIMIT,
        "RSS grew by {} MiB",
        growth / MIB
    );
    assert!(
        addressed > 2 * RSS_GROWTH_LIMIT,
        "the test did not address enough ({} MiB) to show a bound",
        addressed / MIB
    );
    assert!(
        worst < Duration::from_secs(2),
        "a probe answer took {worst:?}"
    );

    let (opcode, payload) = frames.last().expect("frames");
    assert_eq!(*opcode, 0x8, "the last frame is a close frame");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let reason = String::from_utf8_lossy(&payload[2..]);
    assert_eq!(code, 4008, "{reason}");
    assert!(reason.contains("stopped reading"), "{reason}");
    assert!(
        frames.iter().filter(|(op, _)| *op == 0x8).count() == 1,
        "one close frame"
    );

    // The others are still served.
    send(&mut probe, json!({"type": "list_rooms", "id": 999})).await;
    loop {
        let v = next(&mut probe).await;
        if v["type"] == "rooms" && v["id"] == 999 {
            break;
        }
    }
}

/// Two clients in a room stop reading while the server keeps sending them room lists and chat, too
/// little to fill their outboxes: one keeps talking (so it is not silent), one says nothing. Both are
/// dropped within the 2.5 s write stall of their sockets filling up (or the silence limit), not 15 s
/// later: the talker leaves the room, the silent one is held as reconnecting (a lost network looks
/// like that; `control/resume.rs`); and the
/// talking one, reading at last, finds a close frame 4008 saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_socket_stays_full_leaves_within_the_write_stall() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = Server::start(env!("CARGO_BIN_EXE_parley"), &["--media-workers", "1"]);
    // 150 rooms with long names: every room list is about 30 KiB.
    let mut lobby = connect_buffered(&server).await;
    for i in 0..150 {
        send(
            &mut lobby,
            json!({"type": "create_room", "id": i, "room": long_name(9, i)}),
        )
        .await;
        next_of(&mut lobby, "room_created").await;
        if i % 40 == 39 {
            tokio::time::sleep(Duration::from_secs(1)).await; // the per-connection rate limit
        }
    }
    let mut ann = connect_buffered(&server).await;
    send(
        &mut ann,
        json!({"type": "join", "id": 1, "room": "General", "name": "Ann"}),
    )
    .await;
    next_of(&mut ann, "joined").await;

    let mut stuck = Vec::new();
    for name in ["Talker", "Mute"] {
        let ws = RawWs::connect(server.http, 4096);
        let mut tx = ws.stream.try_clone().unwrap();
        let join = json!({"type": "join", "id": 1, "room": "General", "name": name});
        RawWs::send_text(&mut tx, &join.to_string()).unwrap();
        let joined = next_of(&mut ann, "participant_joined").await;
        assert_eq!(joined["participant"]["name"], name);
        stuck.push((ws, joined["participant"]["id"].clone()));
    }
    // From now on neither reads. The talker asks for the room list 20 times a second (about 450 KiB/s
    // addressed to it: its 4 MiB outbox would take 9 s to fill); both get Ann's chat (16 KiB five
    // times a second).
    let started = Instant::now();
    let chat = "\u{1D400}".repeat(3990);
    let mut say = tokio::time::interval(Duration::from_millis(210));
    let talking = Arc::new(AtomicBool::new(true));
    let talker = {
        let mut tx = stuck[0].0.stream.try_clone().unwrap();
        let talking = talking.clone();
        std::thread::spawn(move || {
            let mut i = 100;
            while talking.load(Ordering::Relaxed) {
                i += 1;
                let ask = format!(r#"{{"type":"list_rooms","id":{i}}}"#);
                if RawWs::send_text(&mut tx, &ask).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut left = Vec::new();
    while left.len() < 2 {
        tokio::select! {
            _ = say.tick() => send(&mut ann, json!({"type": "chat_send", "text": chat})).await,
            v = next(&mut ann) => {
                // Dropped: it leaves, or (the silent one: silence is how a lost network looks) its
                // place is kept for a while, shown as reconnecting.
                let reconnecting = v["type"] == "participant_updated"
                    && v["participant"]["reconnecting"] == true;
                if v["type"] == "participant_left" {
                    left.push((v["participant_id"].clone(), started.elapsed()));
                } else if reconnecting {
                    left.push((v["participant"]["id"].clone(), started.elapsed()));
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still in the room after {:?}: {left:?}",
            started.elapsed()
        );
    }
    talking.store(false, Ordering::Relaxed);
    talker.join().unwrap();
    for (who, at) in &left {
        println!("{who} left after {at:?}");
        // Its buffers fill within about a second; then 2.5 s of stall.
        assert!(*at < Duration::from_secs(5), "{who} left after {at:?}");
    }
    // Not the outbox's overflow: the stall.
    assert_eq!(slow_closes(server.http), 0.0);
    let (talker_ws, _) = stuck.remove(0);
    let (frames, _) = tokio::task::spawn_blocking(move || talker_ws.read_all())
        .await
        .unwrap();
    let (opcode, payload) = frames.last().expect("frames");
    assert_eq!(*opcode, 0x8, "the last frame is a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 4008);
    let reason = String::from_utf8_lossy(&payload[2..]);
    assert!(reason.contains("stopped reading"), "{reason}");
    assert!(reason.contains("nothing was taken"), "{reason}");
    send(&mut ann, json!({"type": "list_rooms", "id": 999})).await;
    loop {
        let v = next(&mut ann).await;
        if v["type"] == "rooms" && v["id"] == 999 {
            break;
        }
    }
}
