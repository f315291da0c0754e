//! Helpers for this crate's tests: synthetic journals with known send times and jitter, tones encoded
//! with libopus, an Ogg reader, and a small EBML reader for WebM and Matroska files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::journal::{JournalWriter, TrackHeader, TrackMedia};

/// A small deterministic generator (xorshift): tests need jitter, not cryptography.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A whole number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_f64() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// A fresh directory under the system's temp dir.
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("parley-media-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn header(media: TrackMedia, codec: &str, id: u64) -> TrackHeader {
    TrackHeader {
        media,
        codec: codec.into(),
        clock_rate: if media == TrackMedia::Audio {
            48_000
        } else {
            90_000
        },
        payload_type: if media == TrackMedia::Audio { 111 } else { 96 },
        participant_id: id,
        name: format!("person {id}"),
        recording_start_unix_ms: 1_795_430_000_000,
        track_start_us: 0,
    }
}

/// One packet to journal: when it was sent (session µs), and its RTP packet.
pub struct Sent {
    pub sent_us: f64,
    pub packet: Vec<u8>,
}

/// Writes `sent` as a journal: each packet arrives `base_us` plus up to `jitter_us` (random) after it
/// was sent, in arrival order; `reports` are sender reports `(arrival_us, ntp, rtp)`.
pub fn write_journal(
    path: &Path,
    header: &TrackHeader,
    sent: &[Sent],
    base_us: f64,
    jitter_us: f64,
    seed: u64,
    reports: &[(u64, u64, u32)],
) {
    let mut rng = Rng::new(seed);
    let mut arrivals: Vec<(u64, &[u8])> = sent
        .iter()
        .map(|s| {
            let a = s.sent_us + base_us + rng.next_f64() * jitter_us;
            (a.max(0.0) as u64, s.packet.as_slice())
        })
        .collect();
    arrivals.sort_by_key(|a| a.0);
    let now = Instant::now();
    let mut w = JournalWriter::create(path, header).unwrap();
    let mut reports = reports.iter().peekable();
    for (arrival, packet) in arrivals {
        while let Some(r) = reports.next_if(|r| r.0 <= arrival) {
            w.append_sender_report(r.0, r.1, r.2, now).unwrap();
        }
        w.append(arrival, packet, now).unwrap();
    }
    w.finish().unwrap();
}

/// 20 ms Opus packets (libopus, mono, 48 kHz) of `pcm`.
pub fn opus_packets(pcm: &[f32], bitrate: i32) -> Vec<Vec<u8>> {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(bitrate)).unwrap();
    pcm.chunks(960)
        .map(|c| {
            let mut frame = c.to_vec();
            frame.resize(960, 0.0);
            enc.encode_vec_float(&frame, 1500).unwrap()
        })
        .collect()
}

/// A sine at `freq` Hz, `amplitude` (1.0 is full scale), `seconds` long.
pub fn tone(freq: f64, amplitude: f64, seconds: f64) -> Vec<f32> {
    (0..(seconds * 48_000.0) as usize)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / 48_000.0).sin()) as f32
        })
        .collect()
}

/// RTP packets of 20 ms Opus `payloads`, sent from `start_us` one every 20 ms (by a clock that runs
/// `drift` fast), `(sent, packet)`; `keep(i)` says which are sent (DTX, mute).
pub fn opus_stream(
    payloads: &[Vec<u8>],
    start_us: f64,
    drift: f64,
    ssrc: u32,
    keep: impl Fn(usize) -> bool,
) -> Vec<Sent> {
    // Sequence numbers run on over DTX silences (nothing is lost), timestamps jump.
    payloads
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .enumerate()
        .map(|(n, (i, p))| Sent {
            sent_us: start_us + i as f64 * 20_000.0 * (1.0 - drift),
            packet: crate::rtp::build(
                111,
                false,
                (60_000 + n) as u16,
                (0xfff0_0000u64 + i as u64 * 960) as u32,
                ssrc,
                p,
            ),
        })
        .collect()
}

/// An Ogg file's packets with their page granule (set on a page's last packet), and OpusHead.
pub struct OggRead {
    pub head: Vec<u8>,
    pub packets: Vec<(Vec<u8>, Option<u64>)>,
    pub last_granule: u64,
    pub ended: bool,
}

pub fn read_ogg(path: &Path) -> OggRead {
    let mut r = ogg::PacketReader::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let head = r.read_packet().unwrap().unwrap().data;
    let _tags = r.read_packet().unwrap().unwrap();
    let mut out = OggRead {
        head,
        packets: Vec::new(),
        last_granule: 0,
        ended: false,
    };
    while let Some(p) = r.read_packet().unwrap() {
        let gp = p.last_in_page().then(|| p.absgp_page());
        if let Some(g) = gp {
            out.last_granule = g;
        }
        out.ended |= p.last_in_stream();
        out.packets.push((p.data.clone(), gp));
    }
    out
}

/// The pre-skip in an OpusHead.
pub fn pre_skip(head: &[u8]) -> u64 {
    u64::from(u16::from_le_bytes([head[10], head[11]]))
}

/// Decodes an Ogg/Opus file to mono f32 at 48 kHz, pre-skip and end trim applied.
pub fn decode_ogg(path: &Path) -> Vec<f32> {
    let ogg = read_ogg(path);
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0f32; 5_760];
    for (p, _) in &ogg.packets {
        let n = crate::opus_packet::packet_samples(p) as usize;
        let got = dec.decode_float(p, &mut buf[..n], false).unwrap();
        pcm.extend_from_slice(&buf[..got]);
    }
    let skip = pre_skip(&ogg.head) as usize;
    let end = (ogg.last_granule as usize).min(pcm.len());
    pcm[skip.min(end)..end].to_vec()
}

/// Power of `freq` in `x` (Goertzel), normalized so a full-scale sine gives about 0.25.
pub fn goertzel(x: &[f32], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    p / (x.len() as f64 * x.len() as f64)
}

/// RMS in dBFS of samples in full-scale-1.0 units.
pub fn rms_db(x: &[f32]) -> f64 {
    let e: f64 =
        x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / x.len().max(1) as f64;
    10.0 * e.max(1e-20).log10()
}

/// A voice-like signal: `f0` Hz and its harmonics with a slow vibrato, syllables of amplitude
/// modulation, and silent gaps (600 ms voiced, 400 ms silent each second); `voiced(i)` says whether
/// sample `i` is in a syllable. Full scale is 1.0; peaks reach about 0.5.
pub fn voice(f0: f64, seconds: f64) -> (Vec<f32>, impl Fn(usize) -> bool) {
    let voiced = |i: usize| (i as f64 / 48_000.0) % 1.0 < 0.6;
    let x = (0..(seconds * 48_000.0) as usize)
        .map(|i| {
            if !voiced(i) {
                return 0.0;
            }
            let t = i as f64 / 48_000.0;
            let syllable = (std::f64::consts::PI * (t % 1.0) / 0.6).sin();
            let am = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
            let f = f0 * (1.0 + 0.05 * (2.0 * std::f64::consts::PI * 0.7 * t).sin());
            let v: f64 = (1..=12)
                .map(|h| (2.0 * std::f64::consts::PI * f * f64::from(h) * t).sin() / f64::from(h))
                .sum();
            (0.25 * syllable * am * v) as f32
        })
        .collect();
    (x, voiced)
}

/// A small EBML reader (WebM, Matroska) for checking written files, on trusted bytes (it panics on
/// what it cannot read).
pub mod ebml {
    /// A variable-length EBML integer at `at`: (value, length); with `marker` the length bits stay (ids).
    pub fn vint(b: &[u8], at: usize, marker: bool) -> (u64, usize) {
        let first = b[at];
        let len = first.leading_zeros() as usize + 1;
        let mut v = if marker {
            u64::from(first)
        } else {
            u64::from(first) & (0xff >> len)
        };
        for i in 1..len {
            v = v << 8 | u64::from(b[at + i]);
        }
        (v, len)
    }

    /// The elements at one level: (id, body).
    pub fn elements(b: &[u8]) -> Vec<(u64, &[u8])> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let (id, n) = vint(b, at, true);
            at += n;
            let (size, n) = vint(b, at, false);
            at += n;
            // Both muxers write every size in the end (no unknown-size elements).
            let end = (at + size as usize).min(b.len());
            out.push((id, &b[at..end]));
            at = end;
        }
        out
    }

    pub fn child(b: &[u8], id: u64) -> Option<&[u8]> {
        elements(b).into_iter().find(|e| e.0 == id).map(|e| e.1)
    }

    pub fn uint(b: &[u8]) -> u64 {
        b.iter().fold(0, |v, x| v << 8 | u64::from(*x))
    }

    /// The element starting at `at` in `b`: (id, body).
    pub fn element_at(b: &[u8], at: usize) -> (u64, &[u8]) {
        let (id, n) = vint(b, at, true);
        let (size, m) = vint(b, at + n, false);
        let start = at + n + m;
        (id, &b[start..start + size as usize])
    }

    /// Where `inner` (a slice of `outer`) starts in `outer`.
    pub fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
        inner.as_ptr() as usize - outer.as_ptr() as usize
    }

    /// A float element's value (4 or 8 bytes).
    pub fn float(b: &[u8]) -> f64 {
        match b.len() {
            4 => f64::from(f32::from_be_bytes(b.try_into().unwrap())),
            _ => f64::from_be_bytes(b.try_into().unwrap()),
        }
    }
}

/// A video packet as the track reader gives it: segment 0, on a 90 kHz clock from session time 0.
pub fn video_packet(
    seq: i64,
    ts: i64,
    marker: bool,
    payload: Vec<u8>,
) -> crate::track::TrackPacket {
    crate::track::TrackPacket {
        padding_before: 0,
        session_us: ts as f64 / 90.0,
        segment: 0,
        seq,
        ts,
        marker,
        arrival_us: 0,
        payload,
    }
}
