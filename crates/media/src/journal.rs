//! A recording's journal: one file per recorded track, the packets exactly as they arrived (plain RTP,
//! after SRTP and the mute check) with their arrival time, appended live and finalized later into
//! Ogg/Opus, WAV, FLAC or WebM. Janus's `.mjr` is the idea.
//!
//! Layout: the magic line `PARLEY-JOURNAL 1\n`, one line of JSON ([`TrackHeader`]) ending in `\n`, then
//! records: `kind: u8`, `len: u32 LE`, `arrival_us: u64 LE` (since the recording started), `len` bytes.
//! Kinds: 1 an RTP packet, 2 an RTCP sender report's `(ntp: u64, rtp: u32)` (12 bytes). A journal cut
//! anywhere (a crash mid-write) reads up to its last whole record.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"PARLEY-JOURNAL 1\n";
/// Longest header line and longest record accepted when reading (a corrupt length ends the read).
const MAX_HEADER: usize = 64 * 1024;
pub const MAX_RECORD: usize = 64 * 1024;
/// Buffered records are written out at least this often, so a crash loses at most this much.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

const KIND_RTP: u8 = 1;
const KIND_SENDER_REPORT: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackMedia {
    Audio,
    Video,
}

/// What a journal holds: whose track, which codec, and when the recording began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackHeader {
    pub media: TrackMedia,
    /// `opus`, `vp8`, `h264` (lower case, as in SDP).
    pub codec: String,
    pub clock_rate: u32,
    pub payload_type: u8,
    /// The participant (and their name when recording began) who sent it.
    pub participant_id: u64,
    pub name: String,
    /// Wall clock (Unix ms) of the recording's start: `arrival_us` counts from there.
    pub recording_start_unix_ms: i64,
    /// When this track's first packet may come, from the recording's start (late joiners).
    pub track_start_us: u64,
}

/// One thing a journal recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Rtp { arrival_us: u64, packet: Vec<u8> },
    SenderReport { arrival_us: u64, ntp: u64, rtp: u32 },
}

/// Appends to one journal. Writes are buffered and flushed at least every [`FLUSH_EVERY`] (by
/// [`JournalWriter::append`] itself, or [`JournalWriter::flush_if_due`] from a timer).
pub struct JournalWriter {
    out: BufWriter<File>,
    last_flush: Instant,
    pub bytes: u64,
    pub records: u64,
}

impl JournalWriter {
    pub fn create(path: &Path, header: &TrackHeader) -> io::Result<JournalWriter> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        let json = serde_json::to_vec(header).map_err(io::Error::other)?;
        out.write_all(MAGIC)?;
        out.write_all(&json)?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(JournalWriter {
            out,
            last_flush: Instant::now(),
            bytes: (MAGIC.len() + json.len() + 1) as u64,
            records: 0,
        })
    }

    fn record(
        &mut self,
        kind: u8,
        arrival_us: u64,
        body: &[&[u8]],
        now: Instant,
    ) -> io::Result<()> {
        let len: usize = body.iter().map(|b| b.len()).sum();
        if len > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a record over 64 KiB",
            ));
        }
        self.out.write_all(&[kind])?;
        self.out.write_all(&(len as u32).to_le_bytes())?;
        self.out.write_all(&arrival_us.to_le_bytes())?;
        for b in body {
            self.out.write_all(b)?;
        }
        self.bytes += 13 + len as u64;
        self.records += 1;
        self.flush_if_due(now)
    }

    /// An RTP packet as received, `arrival_us` after the recording's start.
    pub fn append(&mut self, arrival_us: u64, packet: &[u8], now: Instant) -> io::Result<()> {
        self.record(KIND_RTP, arrival_us, &[packet], now)
    }

    /// A sender report's NTP time and the RTP timestamp it pairs with (lip sync, clock drift).
    pub fn append_sender_report(
        &mut self,
        arrival_us: u64,
        ntp: u64,
        rtp: u32,
        now: Instant,
    ) -> io::Result<()> {
        self.record(
            KIND_SENDER_REPORT,
            arrival_us,
            &[&ntp.to_le_bytes(), &rtp.to_le_bytes()],
            now,
        )
    }

    pub fn flush_if_due(&mut self, now: Instant) -> io::Result<()> {
        if now.saturating_duration_since(self.last_flush) >= FLUSH_EVERY {
            self.flush()?;
            self.last_flush = now;
        }
        Ok(())
    }

    /// Hands everything buffered to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and syncs to disk (at the end of a recording).
    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }
}

/// Reads a journal back, stopping quietly at a cut or corrupt tail.
pub struct JournalReader {
    input: BufReader<File>,
    pub header: TrackHeader,
    /// The last record was cut short or corrupt (the journal ends there).
    pub truncated: bool,
}

impl JournalReader {
    pub fn open(path: &Path) -> io::Result<JournalReader> {
        let mut input = BufReader::new(File::open(path)?);
        let mut magic = [0u8; MAGIC.len()];
        input.read_exact(&mut magic)?;
        if magic != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a parley journal",
            ));
        }
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            input.read_exact(&mut byte)?;
            if byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
            if line.len() > MAX_HEADER {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "journal header too long",
                ));
            }
        }
        let header: TrackHeader = serde_json::from_slice(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(JournalReader {
            input,
            header,
            truncated: false,
        })
    }

    /// The next entry; `None` at the end (or at a cut: then `truncated`).
    pub fn next_entry(&mut self) -> Option<Entry> {
        loop {
            let mut head = [0u8; 13];
            match read_full(&mut self.input, &mut head) {
                Ok(0) => return None,
                Ok(13) => {}
                _ => {
                    self.truncated = true;
                    return None;
                }
            }
            let kind = head[0];
            let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut arrival = [0u8; 8];
            arrival.copy_from_slice(&head[5..13]);
            let arrival_us = u64::from_le_bytes(arrival);
            if len > MAX_RECORD {
                self.truncated = true;
                return None;
            }
            let mut body = vec![0u8; len];
            if read_full(&mut self.input, &mut body).ok() != Some(len) {
                self.truncated = true;
                return None;
            }
            match kind {
                KIND_RTP => {
                    return Some(Entry::Rtp {
                        arrival_us,
                        packet: body,
                    })
                }
                KIND_SENDER_REPORT if len == 12 => {
                    let mut ntp = [0u8; 8];
                    ntp.copy_from_slice(&body[..8]);
                    let rtp = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
                    return Some(Entry::SenderReport {
                        arrival_us,
                        ntp: u64::from_le_bytes(ntp),
                        rtp,
                    });
                }
                // A kind from a newer writer: skipped.
                _ => continue,
            }
        }
    }
}

impl Iterator for JournalReader {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        self.next_entry()
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> TrackHeader {
        TrackHeader {
            media: TrackMedia::Audio,
            codec: "opus".into(),
            clock_rate: 48_000,
            payload_type: 111,
            participant_id: 7,
            name: "Ann".into(),
            recording_start_unix_ms: 1_795_430_000_000,
            track_start_us: 250_000,
        }
    }

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("parley-journal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_back_what_was_written() {
        let d = dir("roundtrip");
        let path = d.join("t.journal");
        let now = Instant::now();
        let mut w = JournalWriter::create(&path, &header()).unwrap();
        for i in 0..100u64 {
            w.append(i * 20_000, &[0x80, 111, i as u8, 1, 2, 3], now)
                .unwrap();
        }
        w.append_sender_report(2_000_000, 0xAABB_CCDD_0011_2233, 960_000, now)
            .unwrap();
        w.finish().unwrap();
        let mut r = JournalReader::open(&path).unwrap();
        assert_eq!(r.header, header());
        let entries: Vec<Entry> = r.by_ref().collect();
        assert_eq!(entries.len(), 101);
        assert_eq!(
            entries[99],
            Entry::Rtp {
                arrival_us: 99 * 20_000,
                packet: vec![0x80, 111, 99, 1, 2, 3]
            }
        );
        assert_eq!(
            entries[100],
            Entry::SenderReport {
                arrival_us: 2_000_000,
                ntp: 0xAABB_CCDD_0011_2233,
                rtp: 960_000
            }
        );
        assert!(!r.truncated);
        // Exists already: never overwritten.
        assert!(JournalWriter::create(&path, &header()).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_journal_cut_anywhere_reads_to_its_last_whole_record() {
        let d = dir("cut");
        let path = d.join("t.journal");
        let now = Instant::now();
        let mut w = JournalWriter::create(&path, &header()).unwrap();
        for i in 0..10u64 {
            w.append(i, &[i as u8; 40], now).unwrap();
        }
        w.finish().unwrap();
        let whole = std::fs::read(&path).unwrap();
        let body_start = whole.len() - 10 * (13 + 40);
        for cut in body_start..whole.len() {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let mut r = JournalReader::open(&path).unwrap();
            let n = r.by_ref().count();
            assert_eq!(n, (cut - body_start) / 53, "cut at {cut}");
            assert_eq!(
                r.truncated,
                !(cut - body_start).is_multiple_of(53),
                "cut at {cut}"
            );
        }
        // A corrupt length ends the read instead of allocating it.
        let mut bad = whole.clone();
        bad[body_start + 1..body_start + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        let mut r = JournalReader::open(&path).unwrap();
        assert_eq!(r.by_ref().count(), 0);
        assert!(r.truncated);
        std::fs::write(&path, b"not a journal at all").unwrap();
        assert!(JournalReader::open(&path).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
