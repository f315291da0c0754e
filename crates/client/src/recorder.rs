//! Decode-free recording: each publisher's Opus packets go, as received, into an Ogg/Opus file of its own
//! (RFC 7845). Gaps in the RTP timestamps (DTX silences, lost packets) are filled with empty Opus frames
//! so the file keeps the real timing, and granule positions count 48 kHz samples.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ogg::writing::{PacketWriteEndInfo, PacketWriter};
use parley_proto::ParticipantId;

use crate::audio::SAMPLE_RATE;
use crate::error::ClientError;

/// Pre-skip written in OpusHead: libopus' usual encoder delay at 48 kHz.
const PRE_SKIP: u16 = 312;
/// Pages are closed after this many packets (about a second), so the file is readable while recording.
const PACKETS_PER_PAGE: u32 = 50;
/// Longest gap (in samples) filled with empty frames; longer jumps are taken as a new start.
const MAX_GAP_FILL: u64 = 60 * SAMPLE_RATE as u64;

/// Keeps only `[A-Za-z0-9_-]` of a display name (other characters become `_`, at most 32 of them), so
/// names sent by others never steer a path.
pub fn sanitize_name(name: &str) -> String {
    let s: String = name
        .chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "anonymous".into()
    } else {
        s
    }
}

/// The OpusHead identification header (RFC 7845 §5.1), channel mapping family 0.
pub fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1); // version
    h.push(channels);
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&input_rate.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // mapping family
    h
}

/// The OpusTags comment header (RFC 7845 §5.2).
pub fn opus_tags(vendor: &str, comments: &[String]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"OpusTags");
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor.as_bytes());
    t.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for c in comments {
        t.extend_from_slice(&(c.len() as u32).to_le_bytes());
        t.extend_from_slice(c.as_bytes());
    }
    t
}

/// Samples (at 48 kHz, per channel) in an Opus packet; 960 when it cannot be read.
pub fn packet_samples(packet: &[u8]) -> u64 {
    match opus::packet::get_nb_samples(packet, SAMPLE_RATE) {
        Ok(n) if n > 0 => n as u64,
        _ => 960,
    }
}

/// One Ogg/Opus file being written.
pub struct OggOpusWriter {
    writer: PacketWriter<'static, BufWriter<File>>,
    serial: u32,
    /// Samples written so far, pre-skip included (the granule position).
    granule: u64,
    /// RTP time (48 kHz, extended) at which the next packet is expected.
    next_rtp: Option<u64>,
    in_page: u32,
    /// The last packet is held back so the stream can be ended on it.
    held: Option<Vec<u8>>,
    pub path: PathBuf,
    pub packets: u64,
}

impl OggOpusWriter {
    pub fn create(
        path: &Path,
        channels: u8,
        serial: u32,
        comments: &[String],
    ) -> Result<OggOpusWriter, ClientError> {
        let file = File::create(path)
            .map_err(|e| ClientError::io(format!("creating {}", path.display()), e))?;
        let mut writer = PacketWriter::new(BufWriter::new(file));
        let io = |e| ClientError::io(format!("writing {}", path.display()), e);
        writer
            .write_packet(
                opus_head(channels, PRE_SKIP, SAMPLE_RATE),
                serial,
                PacketWriteEndInfo::EndPage,
                0,
            )
            .map_err(io)?;
        let vendor = concat!("parley-client ", env!("CARGO_PKG_VERSION"));
        writer
            .write_packet(
                opus_tags(vendor, comments),
                serial,
                PacketWriteEndInfo::EndPage,
                0,
            )
            .map_err(io)?;
        writer.inner_mut().flush().map_err(io)?;
        Ok(OggOpusWriter {
            writer,
            serial,
            granule: u64::from(PRE_SKIP),
            next_rtp: None,
            in_page: 0,
            held: None,
            path: path.to_path_buf(),
            packets: 0,
        })
    }

    /// Adds a packet whose RTP time (48 kHz, extended to 64 bits) is `rtp`.
    pub fn write(&mut self, rtp: u64, packet: &[u8]) -> std::io::Result<()> {
        if packet.is_empty() {
            return Ok(());
        }
        if let Some(expected) = self.next_rtp {
            let gap = rtp.saturating_sub(expected);
            if gap > 0 && gap <= MAX_GAP_FILL {
                // An empty frame (TOC only, code 0) means "no data for this frame": decoders conceal or
                // play silence for its duration.
                let toc = packet[0] & 0xfc;
                let step = opus::packet::get_samples_per_frame(&[toc], SAMPLE_RATE)
                    .map(|n| n as u64)
                    .unwrap_or(960)
                    .max(120);
                for _ in 0..gap / step {
                    self.push(vec![toc], step)?;
                }
            }
        }
        let samples = packet_samples(packet);
        self.push(packet.to_vec(), samples)?;
        self.next_rtp = Some(rtp.wrapping_add(samples));
        self.packets += 1;
        Ok(())
    }

    fn push(&mut self, packet: Vec<u8>, samples: u64) -> std::io::Result<()> {
        if let Some(prev) = self.held.take() {
            self.in_page += 1;
            let end = if self.in_page >= PACKETS_PER_PAGE {
                self.in_page = 0;
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            // The granule of the held packet is the count before this one.
            self.writer
                .write_packet(prev, self.serial, end, self.granule)?;
            if end == PacketWriteEndInfo::EndPage {
                self.writer.inner_mut().flush()?;
            }
        }
        self.granule += samples;
        self.held = Some(packet);
        Ok(())
    }

    /// Ends the stream and closes the file.
    pub fn finish(mut self) -> std::io::Result<PathBuf> {
        if let Some(last) = self.held.take() {
            self.writer.write_packet(
                last,
                self.serial,
                PacketWriteEndInfo::EndStream,
                self.granule,
            )?;
        }
        self.writer.inner_mut().flush()?;
        Ok(self.path)
    }
}

/// One Ogg/Opus file per publisher in a directory, named `<participant id>-<sanitized name>.opus`.
pub struct Recorder {
    dir: PathBuf,
    files: HashMap<ParticipantId, OggOpusWriter>,
    room: String,
    failed: bool,
    /// Every file started, in order.
    pub written: Vec<PathBuf>,
}

impl Recorder {
    pub fn new(dir: &Path, room: &str) -> Result<Recorder, ClientError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ClientError::io(format!("creating {}", dir.display()), e))?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            files: HashMap::new(),
            room: room.to_string(),
            failed: false,
            written: Vec::new(),
        })
    }

    /// The file name for a publisher: never the raw name.
    pub fn file_name(id: ParticipantId, name: &str) -> String {
        format!("{id}-{}.opus", sanitize_name(name))
    }

    /// Writes one packet of `publisher` (called `name`) with RTP time `rtp` (48 kHz, extended).
    pub fn write(&mut self, publisher: ParticipantId, name: &str, rtp: u64, packet: &[u8]) {
        if self.failed || packet.is_empty() {
            return;
        }
        if !self.files.contains_key(&publisher) {
            let path = self.dir.join(Recorder::file_name(publisher, name));
            // The stereo flag of the first packet's TOC; decoders cope with either.
            let channels = if packet[0] & 0x04 != 0 { 2 } else { 1 };
            let comments = vec![
                format!("TITLE={name}"),
                format!("PARLEY_PARTICIPANT={publisher}"),
                format!("PARLEY_ROOM={}", self.room),
            ];
            match OggOpusWriter::create(&path, channels, publisher as u32, &comments) {
                Ok(w) => {
                    tracing::info!("recording {name} to {}", path.display());
                    self.written.push(path);
                    self.files.insert(publisher, w);
                }
                Err(e) => {
                    tracing::error!("recording stopped: {e}");
                    self.failed = true;
                    return;
                }
            }
        }
        if let Some(w) = self.files.get_mut(&publisher) {
            if let Err(e) = w.write(rtp, packet) {
                tracing::error!("recording stopped: writing {}: {e}", w.path.display());
                self.failed = true;
            }
        }
    }

    /// Closes the file of a publisher who left.
    pub fn close(&mut self, publisher: ParticipantId) {
        if let Some(w) = self.files.remove(&publisher) {
            if let Err(e) = w.finish() {
                tracing::warn!("closing a recording: {e}");
            }
        }
    }

    /// Closes every file.
    pub fn finish(&mut self) {
        let ids: Vec<_> = self.files.keys().copied().collect();
        for id in ids {
            self.close(id);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("Ann"), "Ann");
        assert_eq!(sanitize_name("../../etc/passwd"), "______etc_passwd");
        assert_eq!(sanitize_name("Zoë Ü"), "Zo___");
        assert_eq!(sanitize_name(""), "anonymous");
        assert_eq!(Recorder::file_name(7, "a/b"), "7-a_b.opus");
    }

    #[test]
    fn writes_a_readable_ogg_opus_file_with_gaps_filled() {
        let dir = std::env::temp_dir().join(format!("parley-rec-test-{}", std::process::id()));
        let mut rec = Recorder::new(&dir, "band").unwrap();
        let mut enc = crate::audio::PcmEncoder::new(1, opus::Application::Voip).unwrap();
        let tone: Vec<i16> = (0..960)
            .map(|i| ((i as f64 * 0.05).sin() * 8000.0) as i16)
            .collect();
        // 10 packets, a 1 s gap (DTX), 10 more.
        for i in 0..20u64 {
            let rtp = 1_000_000 + i * 960 + if i >= 10 { 48_000 } else { 0 };
            rec.write(3, "Bo/x", rtp, &enc.encode(&tone).unwrap());
        }
        rec.finish();
        let path = dir.join("3-Bo_x.opus");
        let mut reader =
            ogg::PacketReader::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let head = reader.read_packet().unwrap().unwrap();
        assert_eq!(&head.data[..8], b"OpusHead");
        let tags = reader.read_packet().unwrap().unwrap();
        assert_eq!(&tags.data[..8], b"OpusTags");
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut pcm = vec![0i16; 5760];
        let (mut packets, mut samples, mut last_gp) = (0, 0usize, 0);
        while let Some(p) = reader.read_packet().unwrap() {
            packets += 1;
            samples += dec.decode(&p.data, &mut pcm, false).unwrap();
            last_gp = p.absgp_page();
        }
        assert_eq!(packets, 20 + 50, "1 s of gap is 50 empty frames");
        assert_eq!(samples, 70 * 960);
        assert_eq!(last_gp, 312 + 70 * 960);

        // The file plays back as it is, empty frames included (sent, then concealed by the receiver).
        use crate::audio::{AudioFrame, AudioSource, OggOpusSource};
        let mut source = OggOpusSource::open(&path, false).unwrap();
        let mut frames = Vec::new();
        while let Some(f) = source.next_frame() {
            frames.push(f);
        }
        assert_eq!(frames.len(), 70);
        let AudioFrame::Packet { samples, level, .. } = &frames[5] else {
            panic!("a packet")
        };
        assert_eq!(*samples, 960);
        assert!(*level < 40, "level of the tone: {level}");
        assert!(OggOpusSource::open(&dir.join("missing.opus"), false).is_err());
        std::fs::write(dir.join("not.opus"), b"OggS but not really").unwrap();
        assert!(OggOpusSource::open(&dir.join("not.opus"), false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
