//! Studio mode from the headless client: the server's clock, lossless takes uploaded in chunks (as the
//! browser's artists do), and segment exports.
//!
//! [`ServerClock`] is sans-IO: it is fed round trips and the local time and says what time it is on the
//! server. The rest is the thin async part over a [`Session`] and plain HTTP.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use parley_proto::{ClientMessage, ServerMessage, TakeInfo, TakeState};
use sha2::{Digest, Sha256};

use crate::http;
use crate::session::Session;
use crate::ClientError;

/// Round trips the clock filter keeps (the newest): half a minute at one a second.
const WINDOW: usize = 32;
/// How fast the published offset follows a new estimate, in ms per second of local time: the
/// timeline must not jump under a take, and a few ms of error spread over seconds is inaudible.
pub const SLEW_MS_PER_S: f64 = 2.0;
/// Round trips taken as they come (the first, quick ones) before the published offset only slews.
const LOCK_SAMPLES: usize = 5;
/// An estimate this far from the published offset is a new clock, not drift: jump to it.
const RELOCK_MS: f64 = 1000.0;

/// The server's clock as this client estimates it: offset = server − local.
///
/// Each round trip gives `offset ≈ server − (sent + received) / 2`, wrong by half the difference of the
/// two directions' delays; queueing only ever adds delay, so the quickest trips each way are the least
/// wrong (see [`ServerClock::estimate`]). The published offset slews toward the estimate at
/// [`SLEW_MS_PER_S`], so times already handed out stay consistent.
#[derive(Debug, Clone, Default)]
pub struct ServerClock {
    /// (round trip, offset, local time of receipt) of the newest round trips, ms.
    samples: VecDeque<(f64, f64, f64)>,
    published: Option<f64>,
    /// Local time the published offset was last moved, ms.
    moved_at: f64,
}

impl ServerClock {
    pub fn new() -> ServerClock {
        ServerClock::default()
    }

    /// A round trip: sent at local `sent_ms`, the server's `server_ms`, received at local `received_ms`.
    pub fn sample(&mut self, sent_ms: f64, server_ms: f64, received_ms: f64) {
        let rtt = received_ms - sent_ms;
        if !(rtt.is_finite() && server_ms.is_finite()) || rtt < 0.0 {
            return;
        }
        let offset = server_ms - (sent_ms + received_ms) / 2.0;
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((rtt, offset, received_ms));
        let estimate = self.estimate().unwrap_or(offset);
        match self.published {
            Some(p) if self.samples.len() > LOCK_SAMPLES && (estimate - p).abs() <= RELOCK_MS => {
                let elapsed_s = ((received_ms - self.moved_at) / 1000.0).max(0.0);
                let step = (SLEW_MS_PER_S * elapsed_s).max(0.0);
                self.published = Some(p + (estimate - p).clamp(-step, step));
            }
            _ => self.published = Some(estimate),
        }
        self.moved_at = received_ms;
    }

    /// The filter's estimate. Each round trip bounds the offset: the server read its clock between
    /// `sent` and `received`, so `server − received ≤ offset ≤ server − sent`. The bounds of the round
    /// trips kept intersect in a narrow interval (the quickest way up tightens one end, the quickest way
    /// down the other), whose middle is the estimate. When they do not intersect (the server's clock
    /// stepped), the quickest round trip's offset is.
    pub fn estimate(&self) -> Option<f64> {
        let lower = self
            .samples
            .iter()
            .map(|(rtt, offset, _)| offset - rtt / 2.0)
            .reduce(f64::max)?;
        let upper = self
            .samples
            .iter()
            .map(|(rtt, offset, _)| offset + rtt / 2.0)
            .reduce(f64::min)?;
        if lower <= upper {
            return Some((lower + upper) / 2.0);
        }
        self.samples
            .iter()
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|s| s.1)
    }

    /// The published offset (server − local, ms); none before the first round trip.
    pub fn offset(&self) -> Option<f64> {
        self.published
    }

    /// The server time of local time `local_ms`.
    pub fn to_server(&self, local_ms: f64) -> Option<f64> {
        self.published.map(|o| local_ms + o)
    }

    /// The quickest round trip kept, ms.
    pub fn best_rtt(&self) -> Option<f64> {
        self.samples.iter().map(|s| s.0).reduce(f64::min)
    }
}

/// Local time in ms on one monotonic clock for this process.
pub fn local_ms() -> f64 {
    crate::clock::epoch().elapsed().as_secs_f64() * 1000.0
}

/// Measures the server's clock with `rounds` round trips of `clock_sync`.
pub async fn sync_clock(session: &Session, rounds: usize) -> Result<ServerClock, ClientError> {
    let mut clock = ServerClock::new();
    for _ in 0..rounds {
        let sent = local_ms();
        let id = session.next_request_id();
        let reply = session
            .request(ClientMessage::ClockSync {
                id: Some(id),
                client_ms: sent,
            })
            .await?;
        let received = local_ms();
        if let ServerMessage::Clock { server_ms, .. } = reply {
            clock.sample(sent, server_ms, received);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(clock)
}

/// A take being uploaded: its id and the token its chunks are authorized with.
#[derive(Debug, Clone)]
pub struct TakeUpload {
    pub take: TakeInfo,
    pub token: String,
    server: String,
}

/// What the server said of one chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkReply {
    pub status: u16,
    /// The refusal's code (`hash_mismatch`, `overlap`, …); none when stored.
    pub error: Option<String>,
    pub received_samples: Option<u64>,
    pub duplicate: bool,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Interleaved samples as the upload's bytes (little-endian float32).
pub fn f32_bytes(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Starts a take in the session's studio room; `first_sample_server_ms` is when its first sample is
/// (on the server's clock).
pub async fn start_take(
    session: &Session,
    sample_rate: u32,
    channels: u16,
    first_sample_server_ms: f64,
) -> Result<TakeUpload, ClientError> {
    let id = session.next_request_id();
    match session
        .request(ClientMessage::StartTake {
            id: Some(id),
            sample_rate,
            channels,
            first_sample_server_ms,
        })
        .await?
    {
        ServerMessage::TakeStarted {
            take, upload_token, ..
        } => Ok(TakeUpload {
            take: *take,
            token: upload_token,
            server: session.server().to_string(),
        }),
        other => Err(ClientError::Protocol(format!("{other:?}"))),
    }
}

impl TakeUpload {
    /// A take to go on uploading (a resumed one: its id and token were kept).
    pub fn resume(server: &str, take: TakeInfo, token: String) -> TakeUpload {
        TakeUpload {
            take,
            token,
            server: server.to_string(),
        }
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Sends chunk `seq` as given (the hash too: a test may send a wrong one).
    pub async fn put_raw(
        &self,
        seq: u32,
        first_sample: u64,
        frames: u32,
        sha256: &str,
        body: &[u8],
    ) -> Result<ChunkReply, ClientError> {
        let auth = self.auth();
        let (first, frames_s) = (first_sample.to_string(), frames.to_string());
        let reply = http::request(
            &self.server,
            "PUT",
            &format!("/api/takes/{}/chunks/{seq}", self.take.take_id),
            &[
                ("Authorization", &auth),
                ("X-Parley-First-Sample", &first),
                ("X-Parley-Samples", &frames_s),
                ("X-Parley-Sha256", sha256),
                ("Content-Type", "application/octet-stream"),
            ],
            body,
        )
        .await?;
        let json = reply.json();
        Ok(ChunkReply {
            status: reply.status,
            error: json["error"].as_str().map(str::to_string),
            received_samples: json["received_samples"].as_u64(),
            duplicate: json["duplicate"].as_bool().unwrap_or(false),
        })
    }

    /// Sends chunk `seq` of interleaved `samples` starting at frame `first_sample`.
    pub async fn put_chunk(
        &self,
        seq: u32,
        first_sample: u64,
        samples: &[f32],
    ) -> Result<ChunkReply, ClientError> {
        let channels = usize::from(self.take.channels.max(1));
        let body = f32_bytes(samples);
        let frames = u32::try_from(samples.len() / channels).unwrap_or(u32::MAX);
        self.put_raw(seq, first_sample, frames, &sha256_hex(&body), &body)
            .await
    }

    /// The take is `frames` long.
    pub async fn end(&self, frames: u64) -> Result<TakeInfo, ClientError> {
        let auth = self.auth();
        let body = serde_json::json!({ "samples": frames }).to_string();
        let reply = http::request(
            &self.server,
            "POST",
            &format!("/api/takes/{}/end", self.take.take_id),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await?;
        take_from(&reply)
    }

    /// The take as the server has it, and the chunks it acknowledged.
    pub async fn status(&self) -> Result<(TakeInfo, Vec<u32>), ClientError> {
        let auth = self.auth();
        let reply = http::request(
            &self.server,
            "GET",
            &format!("/api/takes/{}", self.take.take_id),
            &[("Authorization", &auth)],
            &[],
        )
        .await?;
        let take = take_from(&reply)?;
        let chunks = reply.json()["chunks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()))
                    .collect()
            })
            .unwrap_or_default();
        Ok((take, chunks))
    }

    /// Waits (polling) until the take is made or `timeout` passes.
    pub async fn wait_complete(&self, timeout: Duration) -> Result<TakeInfo, ClientError> {
        let until = Instant::now() + timeout;
        loop {
            let (take, _) = self.status().await?;
            if take.state == TakeState::Complete || Instant::now() >= until {
                return Ok(take);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn take_from(reply: &http::Reply) -> Result<TakeInfo, ClientError> {
    let json = reply.json();
    if reply.status != 200 {
        return Err(ClientError::Protocol(format!(
            "the server refused ({}): {}",
            reply.status,
            json["message"].as_str().unwrap_or("")
        )));
    }
    serde_json::from_value(json["take"].clone())
        .map_err(|e| ClientError::Protocol(format!("an unreadable take: {e}")))
}

/// Frames per uploaded chunk: a quarter of a second, as the browser sends them (web/take-recorder.js:
/// a short request is a short burst on the artist's uplink, which the call shares).
pub fn chunk_frames(sample_rate: u32) -> usize {
    (sample_rate as usize / 4).max(1)
}

/// Uploads a whole WAV file as one take of the session's room, paced at `realtime` × its own rate
/// (1.0: as fast as it plays; an artist bot), and waits until the server has made it.
pub async fn upload_wav_take(
    session: &Session,
    clock: &ServerClock,
    wav: &Path,
    realtime: f64,
) -> Result<TakeInfo, ClientError> {
    let (rate, channels, samples) = read_wav_f32(wav)?;
    let now = clock
        .to_server(local_ms())
        .ok_or_else(|| ClientError::Protocol("the server's clock is not known yet".into()))?;
    let upload = start_take(session, rate, channels, now).await?;
    let per_chunk = chunk_frames(rate) * usize::from(channels);
    let started = Instant::now();
    let mut first = 0u64;
    for (seq, chunk) in samples.chunks(per_chunk).enumerate() {
        let seq = u32::try_from(seq).unwrap_or(u32::MAX);
        // Retries: a hash the server says is wrong means the bytes were damaged on the way.
        let mut tries = 0;
        loop {
            let reply = upload.put_chunk(seq, first, chunk).await?;
            match (reply.status, reply.error.as_deref()) {
                (200, _) => break,
                (422, _) | (500..=599, _) if tries < 3 => tries += 1,
                (status, error) => {
                    return Err(ClientError::Protocol(format!(
                        "chunk {seq} refused ({status}): {}",
                        error.unwrap_or("")
                    )))
                }
            }
        }
        first += (chunk.len() / usize::from(channels)) as u64;
        if realtime > 0.0 {
            let due = Duration::from_secs_f64(first as f64 / f64::from(rate) / realtime);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    upload.end(first).await?;
    upload.wait_complete(Duration::from_secs(60)).await
}

/// A WAV file's rate, channels and samples as floats (PCM 16/24/32-bit or float 32-bit).
pub fn read_wav_f32(path: &Path) -> Result<(u32, u16, Vec<f32>), ClientError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ClientError::io(format!("reading {}", path.display()), e))?;
    parse_wav_f32(&bytes).ok_or_else(|| {
        ClientError::Protocol(format!("{}: not a PCM or float WAV file", path.display()))
    })
}

fn parse_wav_f32(bytes: &[u8]) -> Option<(u32, u16, Vec<f32>)> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let (mut format, mut channels, mut rate, mut bits) = (0u16, 0u16, 0u32, 0u16);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let body = bytes.get(at + 8..(at + 8 + len).min(bytes.len()))?;
        if id == b"fmt " && body.len() >= 16 {
            format = u16::from_le_bytes([body[0], body[1]]);
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
            bits = u16::from_le_bytes([body[14], body[15]]);
            if format == 0xfffe && body.len() >= 26 {
                format = u16::from_le_bytes([body[24], body[25]]);
            }
        } else if id == b"data" {
            let samples = match (format, bits) {
                (1, 16) => body
                    .chunks_exact(2)
                    .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
                    .collect(),
                (1, 24) => body
                    .chunks_exact(3)
                    .map(|b| (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0)
                    .collect(),
                (1, 32) => body
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0)
                    .collect(),
                (3, 32) => body
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                _ => return None,
            };
            return (channels > 0 && rate > 0).then_some((rate, channels, samples));
        }
        at += 8 + len + (len & 1);
    }
    None
}

/// Downloads a segment's export (its `export_url`) to `out`; returns its size.
pub async fn download_export(server: &str, url: &str, out: &Path) -> Result<u64, ClientError> {
    let reply = http::request(server, "GET", url, &[], &[]).await?;
    if reply.status != 200 {
        return Err(ClientError::Protocol(format!(
            "the export was refused ({}): {}",
            reply.status,
            reply.json()["message"].as_str().unwrap_or("")
        )));
    }
    std::fs::write(out, &reply.body)
        .map_err(|e| ClientError::io(format!("writing {}", out.display()), e))?;
    Ok(reply.body.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator (xorshift), so the synthetic link is the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Pings over a link whose two directions each add 5 ms plus 0–40 ms of jitter, and now and then
    /// a 200 ms spike; the server's clock is `offset(t)` ahead.
    fn run(
        clock: &mut ServerClock,
        rng: &mut Rng,
        from_ms: f64,
        to_ms: f64,
        offset: impl Fn(f64) -> f64,
    ) {
        let mut t = from_ms;
        while t < to_ms {
            let spike = |r: &mut Rng| if r.next() < 0.05 { 200.0 } else { 0.0 };
            let up = 5.0 + 40.0 * rng.next() + spike(rng);
            let down = 5.0 + 40.0 * rng.next() + spike(rng);
            let at_server = t + up;
            clock.sample(t, at_server + offset(at_server), at_server + down);
            t += if t - from_ms < 1000.0 { 200.0 } else { 1000.0 };
        }
    }

    #[test]
    fn the_offset_converges_within_5_ms_on_a_jittery_link() {
        let truth = 12_345.6;
        // Many links, each its own seed: the worst must converge too.
        let mut worst: f64 = 0.0;
        for seed in 1..=200u64 {
            let mut clock = ServerClock::new();
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            run(&mut clock, &mut rng, 0.0, 30_000.0, |_| truth);
            worst = worst.max((clock.offset().unwrap() - truth).abs());
        }
        assert!(worst < 5.0, "off by {worst} ms");
    }

    #[test]
    fn a_step_of_the_server_clock_is_slewed_not_jumped() {
        let mut clock = ServerClock::new();
        let mut rng = Rng(42);
        run(&mut clock, &mut rng, 0.0, 30_000.0, |_| 500.0);
        let before = clock.offset().unwrap();
        // The server's clock is stepped 20 ms: the published offset moves at most 2 ms a second.
        let (mut last, mut last_at) = (before, 30_000.0);
        let mut t = 30_000.0;
        while t < 60_000.0 {
            let up = 5.0 + 40.0 * rng.next();
            let down = 5.0 + 40.0 * rng.next();
            clock.sample(t, t + up + 520.0, t + up + down);
            let now = clock.offset().unwrap();
            let allowed = SLEW_MS_PER_S * (t + up + down - last_at) / 1000.0 + 1e-9;
            assert!((now - last).abs() <= allowed, "jumped {} ms", now - last);
            (last, last_at) = (now, t + up + down);
            t += 1000.0;
        }
        assert!(
            (clock.offset().unwrap() - 520.0).abs() < 5.0,
            "{:?}",
            clock.offset()
        );
        assert!((before - 500.0).abs() < 5.0);
    }

    #[test]
    fn a_new_clock_far_away_relocks() {
        let mut clock = ServerClock::new();
        clock.sample(0.0, 10.0, 10.0);
        assert_eq!(clock.offset(), Some(5.0));
        // Twenty quick round trips of a clock 2 s away: the filter's best says 2005, and it jumps.
        for i in 1..=20 {
            let t = f64::from(i) * 1000.0;
            clock.sample(t, t + 2005.0, t);
        }
        assert_eq!(clock.offset(), Some(2005.0));
        // Garbage is ignored.
        clock.sample(5.0, f64::NAN, 6.0);
        clock.sample(9.0, 1.0, 8.0);
        assert_eq!(clock.offset(), Some(2005.0));
    }

    #[test]
    fn wav_files_are_read_as_floats() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&1u16.to_le_bytes());
        wav.extend_from_slice(&48_000u32.to_le_bytes());
        wav.extend_from_slice(&96_000u32.to_le_bytes());
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&4u32.to_le_bytes());
        wav.extend_from_slice(&16384i16.to_le_bytes());
        wav.extend_from_slice(&(-32768i16).to_le_bytes());
        assert_eq!(parse_wav_f32(&wav), Some((48_000, 1, vec![0.5, -1.0])));
        assert_eq!(parse_wav_f32(b"RIFF"), None);
    }
}

/// What [`soak`] measured: the call's audio (one artist heard by a listener) while a take uploads, or
/// not.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoakReport {
    pub uploading: bool,
    pub seconds: f64,
    /// The artist's audio packets the listener did not receive, %.
    pub audio_loss_percent: f64,
    pub audio_packets: u64,
    /// One-way latency of the artist's audio (probes), ms.
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Take bytes acknowledged, and their rate.
    pub uploaded_bytes: u64,
    pub upload_kbps: f64,
    pub chunks: u32,
    /// Chunks refused or failed (each sent again).
    pub chunk_retries: u32,
}

/// The browser's upload pace (web/take-queue.js): 1.5 × the take's real-time byte rate plus 32 KB/s,
/// one request in flight.
pub fn paced_bytes_per_second(sample_rate: u32, channels: u16) -> f64 {
    1.5 * f64::from(sample_rate) * f64::from(channels) * 4.0 + 32_768.0
}

/// A call and a take at once, as an artist's page makes them: in a new studio room, an artist (its owner,
/// a producer who records) talks with a synthetic voice that carries latency probes while a listener
/// receives it; with `upload`, the artist also records a take (48 kHz mono) in real time and uploads its
/// quarter-second chunks at the browser's pace. Measures the listener's loss and latency of the artist's audio
/// over `seconds` (after a warm-up of 2 s).
pub async fn soak(
    server: &str,
    room: &str,
    seconds: f64,
    upload: bool,
    local_ip: std::net::IpAddr,
) -> Result<SoakReport, ClientError> {
    use crate::audio::{SyntheticEncoding, SyntheticVoice};
    use crate::call::CallConfig;
    use crate::stats::MediaKind;
    use parley_proto::Role;
    let mut config = crate::session::ClientConfig::new(server, room, "artist");
    config.create_room = true;
    config.local_ip = local_ip;
    config.call = CallConfig {
        role: Role::Member,
        audio: Some(Box::new(SyntheticVoice::new(
            7,
            1.0,
            SyntheticEncoding::Placeholder(80),
        ))),
        video: None,
        probe: true,
        record_dir: None,
    };
    let mut artist = Session::join(config).await?;
    let id = artist.next_request_id();
    artist
        .request(ClientMessage::RoomSettings {
            id: Some(id),
            access: None,
            password: None,
            locked: None,
            studio: Some(true),
        })
        .await?;
    let mut listen = crate::session::ClientConfig::new(server, room, "listener");
    listen.local_ip = local_ip;
    listen.role = Role::Viewer;
    listen.call.probe = true;
    let mut listener = Session::join(listen).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let clock = sync_clock(&artist, 6).await?;
    let (rate, channels) = (48_000u32, 1u16);
    let take = if upload {
        let now = clock
            .to_server(local_ms())
            .ok_or_else(|| ClientError::Protocol("no server clock".into()))?;
        Some(start_take(&artist, rate, channels, now).await?)
    } else {
        None
    };
    let before = listener.stats().await?;
    let from_ns = crate::clock::nanos_since_epoch(Instant::now());
    let started = Instant::now();
    let run = Duration::from_secs_f64(seconds);
    let (mut uploaded, mut chunks, mut retries) = (0u64, 0u32, 0u32);
    if let Some(take) = &take {
        let pace = paced_bytes_per_second(rate, channels);
        let frames = chunk_frames(rate);
        let mut seq = 0u32;
        while started.elapsed() < run {
            // The chunk is ready once it has been played.
            let ready =
                Duration::from_secs_f64(f64::from(seq + 1) * frames as f64 / f64::from(rate));
            if let Some(wait) = ready.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
            let first = u64::from(seq) * frames as u64;
            let samples: Vec<f32> = (0..frames as u64)
                .map(|i| ((first + i) as f32 * 0.0573).sin() * 0.3)
                .collect();
            let sent = Instant::now();
            let reply = take.put_chunk(seq, first, &samples).await?;
            if reply.status != 200 {
                retries += 1;
                continue;
            }
            let bytes = samples.len() as u64 * 4;
            uploaded += bytes;
            chunks += 1;
            seq += 1;
            // Never faster than the pace, on average.
            let due = Duration::from_secs_f64(bytes as f64 / pace);
            if let Some(wait) = due.checked_sub(sent.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        take.end(u64::from(seq) * frames as u64).await?;
    } else {
        tokio::time::sleep(run).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = listener.stats().await?;
    let of = |s: &crate::stats::CallStats| {
        s.stream(artist.you, MediaKind::Audio)
            .map_or((0, 0), |x| (x.packets, x.expected()))
    };
    let ((p0, e0), (p1, e1)) = (of(&before), of(&after));
    let (packets, expected) = (p1.saturating_sub(p0), e1.saturating_sub(e0));
    let latency = after.latency.since(from_ns).percentiles();
    let _ = listener.leave().await;
    let _ = artist.leave().await;
    Ok(SoakReport {
        uploading: upload,
        seconds: elapsed,
        audio_loss_percent: if expected == 0 {
            0.0
        } else {
            100.0 * expected.saturating_sub(packets) as f64 / expected as f64
        },
        audio_packets: packets,
        latency_p50_ms: latency.p50,
        latency_p99_ms: latency.p99,
        uploaded_bytes: uploaded,
        upload_kbps: uploaded as f64 * 8.0 / 1000.0 / elapsed.max(1e-9),
        chunks,
        chunk_retries: retries,
    })
}
