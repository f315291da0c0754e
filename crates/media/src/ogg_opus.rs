//! Ogg/Opus files (RFC 7845) written packet by packet, without decoding: gaps in the RTP timestamps (DTX
//! silences, lost packets) are filled with empty Opus frames so the file keeps the real timing, and granule
//! positions count the 48 kHz samples decoded from the stream's start, the pre-skip among them (a player
//! drops the first `pre_skip` of them: output time is granule − pre-skip, RFC 7845 §4). [`OggOpusWriter::write_at`] places packets on a session's sample grid
//! instead (see [`crate::placement`]), and [`OggOpusWriter::finish_at`] ends the file at an exact length
//! (the last page's granule trims the end, RFC 7845 §4.4).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use crate::opus_packet::{empty_frames, packet_samples, samples_per_frame};
use crate::placement::{self, Placement};
use crate::SAMPLE_RATE;

/// Pre-skip written in OpusHead: libopus' usual encoder delay at 48 kHz.
pub const PRE_SKIP: u16 = 312;
/// Pages are closed after this many packets (about a second), so the file is readable while recording.
const PACKETS_PER_PAGE: u32 = 50;
/// Longest gap (in samples) filled with empty frames; longer jumps are taken as a new start.
const MAX_GAP_FILL: u64 = 60 * SAMPLE_RATE as u64;

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

/// One Ogg/Opus file being written.
pub struct OggOpusWriter {
    writer: PacketWriter<'static, BufWriter<File>>,
    serial: u32,
    /// Samples the packets so far decode to, the pre-skip among them (the granule position).
    granule: u64,
    /// RTP time (48 kHz, extended) at which the next packet is expected.
    next_rtp: Option<u64>,
    in_page: u32,
    /// The last packet is held back so the stream can be ended on it.
    held: Option<Vec<u8>>,
    pre_skip: u16,
    /// The TOC of the last packet written (empty frames copy its mode).
    last_toc: Option<u8>,
    pub path: PathBuf,
    pub packets: u64,
    /// Gaps filled with empty frames, those frames, and the samples they cover.
    pub gaps: u64,
    pub empty_frames: u64,
    pub empty_samples: u64,
    /// Packets [`OggOpusWriter::write_at`] dropped because they would have started too late.
    pub dropped: u64,
}

impl OggOpusWriter {
    /// Creates the file at `path` and writes its headers: `channels` in OpusHead, `vendor` and
    /// `comments` (`KEY=value`) in OpusTags; `serial` is the Ogg stream's serial number.
    pub fn create(
        path: &Path,
        channels: u8,
        serial: u32,
        vendor: &str,
        comments: &[String],
    ) -> std::io::Result<OggOpusWriter> {
        Self::create_with_pre_skip(path, channels, serial, vendor, comments, PRE_SKIP)
    }

    /// [`OggOpusWriter::create`] with the encoder delay to skip (an encoder's `lookahead`).
    pub fn create_with_pre_skip(
        path: &Path,
        channels: u8,
        serial: u32,
        vendor: &str,
        comments: &[String],
        pre_skip: u16,
    ) -> std::io::Result<OggOpusWriter> {
        let mut writer = PacketWriter::new(BufWriter::new(File::create(path)?));
        writer.write_packet(
            opus_head(channels, pre_skip, SAMPLE_RATE),
            serial,
            PacketWriteEndInfo::EndPage,
            0,
        )?;
        writer.write_packet(
            opus_tags(vendor, comments),
            serial,
            PacketWriteEndInfo::EndPage,
            0,
        )?;
        writer.inner_mut().flush()?;
        Ok(OggOpusWriter {
            writer,
            serial,
            granule: 0,
            next_rtp: None,
            in_page: 0,
            held: None,
            pre_skip,
            last_toc: None,
            path: path.to_path_buf(),
            packets: 0,
            gaps: 0,
            empty_frames: 0,
            empty_samples: 0,
            dropped: 0,
        })
    }

    /// Samples the packets written so far decode to: where the next packet goes.
    pub fn position(&self) -> u64 {
        self.granule
    }

    /// Places a packet whose mapped time is `at` (48 kHz samples from the file's start): a gap before it
    /// is filled with empty frames, a packet that would start too late is dropped (`Ok(false)`). A
    /// packet decodes delayed by its encoder's look-ahead, which the pre-skip takes out again: so placed,
    /// its sound plays at `at`.
    pub fn write_at(&mut self, at: i64, packet: &[u8]) -> std::io::Result<bool> {
        if packet.is_empty() {
            return Ok(false);
        }
        let samples = packet_samples(packet);
        match placement::place(self.position(), at, samples) {
            Placement::Drop => {
                self.dropped += 1;
                Ok(false)
            }
            Placement::At { gap } => {
                self.fill(gap, packet[0])?;
                self.push(packet.to_vec(), samples)?;
                self.last_toc = Some(packet[0]);
                self.packets += 1;
                Ok(true)
            }
        }
    }

    fn fill(&mut self, gap: u64, toc: u8) -> std::io::Result<()> {
        if gap == 0 {
            return Ok(());
        }
        self.gaps += 1;
        for (toc, samples) in empty_frames(gap, toc) {
            self.push(vec![toc], samples)?;
            self.empty_frames += 1;
            self.empty_samples += samples;
        }
        Ok(())
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
                let step = u64::from(samples_per_frame(toc)).max(120);
                for _ in 0..gap / step {
                    self.push(vec![toc], step)?;
                }
            }
        }
        let samples = packet_samples(packet);
        self.push(packet.to_vec(), samples)?;
        self.next_rtp = Some(rtp.wrapping_add(samples));
        self.last_toc = Some(packet[0]);
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

    /// Fills the file with empty frames until it plays `total` samples (after the pre-skip), ends the
    /// stream there exactly (the last granule trims what the frames overshoot) and closes the file;
    /// returns the samples it plays. A file already longer ends where it is.
    pub fn finish_at(mut self, total: u64) -> std::io::Result<u64> {
        // With nothing written, any mode does: CELT fullband, 20 ms, mono.
        let toc = self.last_toc.unwrap_or(0xf8);
        let pre_skip = u64::from(self.pre_skip);
        let gap = placement::pad_to(self.position(), total + pre_skip);
        self.fill(gap, toc)?;
        // The last packet's granule may trim at most into that packet.
        let floor = self.granule - self.held.as_ref().map_or(0, |p| packet_samples(p));
        self.granule = (total + pre_skip).clamp(floor, self.granule);
        let plays = self.granule.saturating_sub(pre_skip);
        self.finish()?;
        Ok(plays)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_rfc_7845() {
        let head = opus_head(2, 312, 48_000);
        assert_eq!(head.len(), 19);
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!((head[8], head[9]), (1, 2), "version 1, two channels");
        assert_eq!(u16::from_le_bytes([head[10], head[11]]), 312);
        assert_eq!(u32::from_le_bytes(head[12..16].try_into().unwrap()), 48_000);
        assert_eq!(&head[16..], &[0, 0, 0], "no gain, mapping family 0");

        let tags = opus_tags("v", &["A=b".to_string(), "CC=dd".to_string()]);
        let mut want = b"OpusTags".to_vec();
        want.extend_from_slice(&[1, 0, 0, 0, b'v', 2, 0, 0, 0]);
        want.extend_from_slice(&[3, 0, 0, 0, b'A', b'=', b'b']);
        want.extend_from_slice(&[5, 0, 0, 0, b'C', b'C', b'=', b'd', b'd']);
        assert_eq!(tags, want);
    }

    #[test]
    fn pages_granules_and_gaps() {
        let path =
            std::env::temp_dir().join(format!("parley-media-test-{}.opus", std::process::id()));
        let comments = vec!["TITLE=Ann".to_string()];
        let mut w = OggOpusWriter::create(&path, 1, 9, "parley-media test", &comments).unwrap();
        // 20 ms CELT packets (TOC 0xf8) with made-up payloads: 60 of them, then 100 ms lost, 10 more.
        // An empty packet is ignored.
        w.write(0, &[]).unwrap();
        for i in 0..70u64 {
            let rtp = 5_000 + i * 960 + if i >= 60 { 4_800 } else { 0 };
            w.write(rtp, &[0xf8, i as u8, 0xaa]).unwrap();
        }
        assert_eq!(w.packets, 70);
        assert_eq!(w.finish().unwrap(), path);

        let mut reader =
            ogg::PacketReader::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let head = reader.read_packet().unwrap().unwrap();
        assert_eq!(head.data, opus_head(1, PRE_SKIP, SAMPLE_RATE));
        assert_eq!(head.stream_serial(), 9);
        let tags = reader.read_packet().unwrap().unwrap();
        assert_eq!(tags.data, opus_tags("parley-media test", &comments));
        let mut packets = Vec::new();
        let mut page_ends = Vec::new();
        while let Some(p) = reader.read_packet().unwrap() {
            if p.last_in_page() {
                page_ends.push((packets.len(), p.absgp_page()));
            }
            packets.push(p.data.clone());
            if p.last_in_stream() {
                break;
            }
        }
        assert_eq!(packets.len(), 75, "100 ms of gap is 5 empty frames");
        assert_eq!(packets[59], [0xf8, 59, 0xaa]);
        assert!(
            packets[60..65].iter().all(|p| p == &[0xf8]),
            "empty frames: TOC only"
        );
        assert_eq!(packets[65], [0xf8, 60, 0xaa]);
        // A page every 50 packets, granules counting the samples decoded (the pre-skip among them).
        assert_eq!(page_ends[0], (49, 50 * 960));
        assert_eq!(*page_ends.last().unwrap(), (74, 75 * 960));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_long_jump_is_a_new_start() {
        let path =
            std::env::temp_dir().join(format!("parley-media-jump-{}.opus", std::process::id()));
        let mut w = OggOpusWriter::create(&path, 2, 1, "t", &[]).unwrap();
        w.write(0, &[0xfc, 1]).unwrap();
        w.write(61 * 48_000, &[0xfc, 2]).unwrap();
        w.finish().unwrap();
        let mut reader =
            ogg::PacketReader::new(std::io::BufReader::new(File::open(&path).unwrap()));
        let mut n = 0;
        let mut last_gp = 0;
        while let Some(p) = reader.read_packet().unwrap() {
            n += 1;
            last_gp = p.absgp_page();
        }
        assert_eq!(n, 2 + 2, "no fill for more than 60 s");
        assert_eq!(last_gp, 2 * 960);
        std::fs::remove_file(&path).unwrap();
    }
}
