//! Decode-free recording: each publisher's Opus packets go, as received, into an Ogg/Opus file of its own,
//! written by [`parley_media::OggOpusWriter`] (gaps filled with empty frames, so the file keeps the real
//! timing). This module names the files and keeps one per publisher.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parley_media::{opus_packet, OggOpusWriter};
use parley_proto::ParticipantId;

use crate::error::ClientError;

/// The vendor string in every file's OpusTags.
const VENDOR: &str = concat!("parley-client ", env!("CARGO_PKG_VERSION"));

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
            let channels = opus_packet::channels(packet[0]);
            let comments = vec![
                format!("TITLE={name}"),
                format!("PARLEY_PARTICIPANT={publisher}"),
                format!("PARLEY_ROOM={}", self.room),
            ];
            let created =
                OggOpusWriter::create(&path, channels, publisher as u32, VENDOR, &comments)
                    .map_err(|e| ClientError::io(format!("creating {}", path.display()), e));
            match created {
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
            ogg::PacketReader::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
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
        assert_eq!(last_gp, 70 * 960);

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
