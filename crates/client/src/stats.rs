//! What a participant received and how well: per publisher packet and byte counts, loss from RTP
//! sequence gaps, join time and (with probes) one-way forwarding latency.

use std::time::Duration;

use parley_proto::ParticipantId;
use serde::Serialize;

/// Latency samples kept per participant; later ones are dropped (the count still grows).
const MAX_LATENCY_SAMPLES: usize = 200_000;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

/// One incoming track: everything received from one publisher of one kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamStats {
    pub publisher: ParticipantId,
    /// The publisher's name as the server gave it.
    pub name: String,
    #[serde(skip)]
    pub kind: Option<MediaKind>,
    /// RTP packets received (counted from each frame's sequence range).
    pub packets: u64,
    /// Payload bytes received (depacketized).
    pub bytes: u64,
    /// Frames (audio packets, video pictures) received.
    pub frames: u64,
    pub keyframes: u64,
    /// Packets missing from the sequence numbers seen so far.
    pub lost: u64,
    #[serde(skip)]
    first_seq: Option<u64>,
    #[serde(skip)]
    max_seq: u64,
}

impl StreamStats {
    pub fn new(publisher: ParticipantId, name: &str, kind: MediaKind) -> StreamStats {
        StreamStats {
            publisher,
            name: name.to_string(),
            kind: Some(kind),
            ..Default::default()
        }
    }

    /// Counts one frame made of the packets `first..=last` (extended sequence numbers).
    pub fn record(&mut self, first: u64, last: u64, bytes: usize) {
        let count = last.saturating_sub(first) + 1;
        self.packets += count;
        self.frames += 1;
        self.bytes += bytes as u64;
        match self.first_seq {
            None => {
                self.first_seq = Some(first);
                self.max_seq = last;
            }
            Some(f) => {
                if first < f {
                    self.first_seq = Some(first);
                }
                self.max_seq = self.max_seq.max(last);
            }
        }
        let expected = self.expected();
        self.lost = expected.saturating_sub(self.packets);
    }

    /// Packets the sequence numbers say were sent.
    pub fn expected(&self) -> u64 {
        match self.first_seq {
            Some(f) => self.max_seq.saturating_sub(f) + 1,
            None => 0,
        }
    }

    /// Lost share of expected packets, 0..=1.
    pub fn loss(&self) -> f64 {
        let e = self.expected();
        if e == 0 {
            0.0
        } else {
            self.lost as f64 / e as f64
        }
    }
}

/// Durations collected for percentiles.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// (when, in nanoseconds since the process epoch; the duration in microseconds)
    values: Vec<(u64, u64)>,
    pub count: u64,
}

impl Samples {
    /// Adds a duration observed at `at` (nanoseconds since [`crate::clock::epoch`]).
    pub fn push_at(&mut self, at: u64, d: Duration) {
        self.count += 1;
        if self.values.len() < MAX_LATENCY_SAMPLES {
            self.values
                .push((at, u64::try_from(d.as_micros()).unwrap_or(u64::MAX)));
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.push_at(0, d);
    }

    pub fn extend(&mut self, other: &Samples) {
        self.count += other.count;
        self.values.extend_from_slice(&other.values);
    }

    /// Only the samples observed at or after `from` (nanoseconds since the process epoch).
    pub fn since(&self, from: u64) -> Samples {
        let values: Vec<_> = self
            .values
            .iter()
            .copied()
            .filter(|(at, _)| *at >= from)
            .collect();
        Samples {
            count: values.len() as u64,
            values,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn percentiles(&self) -> Percentiles {
        let mut v: Vec<u64> = self.values.iter().map(|(_, d)| *d).collect();
        v.sort_unstable();
        let at = |p: f64| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            // Nearest rank.
            let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
            let i = rank.clamp(1, v.len()) - 1;
            Some(v[i] as f64 / 1000.0)
        };
        Percentiles {
            count: self.count,
            p50: at(50.0),
            p99: at(99.0),
            max: v.last().map(|&m| m as f64 / 1000.0),
        }
    }
}

/// p50/p99/max of some durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
        write!(
            f,
            "p50 {} p99 {} max {} (n={})",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// Everything one participant measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallStats {
    pub you: ParticipantId,
    pub room: String,
    pub name: String,
    /// ICE (and DTLS) came up.
    pub connected: bool,
    /// Join request → ICE connected.
    #[serde(serialize_with = "ser_ms")]
    pub connect_time: Option<Duration>,
    /// Join request → first audio packet from anyone else.
    #[serde(serialize_with = "ser_ms")]
    pub join_time: Option<Duration>,
    pub sent_audio_packets: u64,
    pub sent_audio_bytes: u64,
    pub sent_video_frames: u64,
    pub sent_video_bytes: u64,
    /// Media received whose stream id is our own (the SFU must never send it).
    pub own_media_received: u64,
    /// Incoming tracks, by publisher and kind.
    pub streams: Vec<StreamStats>,
    /// One-way latency of probe packets (send time from the same process).
    #[serde(skip)]
    pub latency: Samples,
    /// Server messages of type `error` that were not an answer to a request of ours.
    pub server_errors: Vec<String>,
}

fn ser_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
        None => s.serialize_none(),
    }
}

impl CallStats {
    pub fn stream_mut(
        &mut self,
        publisher: ParticipantId,
        name: &str,
        kind: MediaKind,
    ) -> &mut StreamStats {
        let i = match self
            .streams
            .iter()
            .position(|s| s.publisher == publisher && s.kind == Some(kind))
        {
            Some(i) => i,
            None => {
                self.streams.push(StreamStats::new(publisher, name, kind));
                self.streams.len() - 1
            }
        };
        &mut self.streams[i]
    }

    pub fn stream(&self, publisher: ParticipantId, kind: MediaKind) -> Option<&StreamStats> {
        self.streams
            .iter()
            .find(|s| s.publisher == publisher && s.kind == Some(kind))
    }

    /// Audio packets received from `publisher` so far.
    pub fn audio_packets_from(&self, publisher: ParticipantId) -> u64 {
        self.stream(publisher, MediaKind::Audio)
            .map_or(0, |s| s.packets)
    }

    /// Human-readable lines, one per incoming stream.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| {
                format!("{:.0} ms", d.as_secs_f64() * 1000.0)
            })
        };
        out.push_str(&format!(
            "{} (participant {}) in {}: connected {} after {}, first audio after {}\n",
            self.name,
            self.you,
            self.room,
            if self.connected { "yes" } else { "no" },
            ms(self.connect_time),
            ms(self.join_time),
        ));
        out.push_str(&format!(
            "  sent: {} audio packets ({} bytes), {} video frames ({} bytes)\n",
            self.sent_audio_packets,
            self.sent_audio_bytes,
            self.sent_video_frames,
            self.sent_video_bytes
        ));
        if self.streams.is_empty() {
            out.push_str("  received: nothing\n");
        }
        for s in &self.streams {
            let kind = match s.kind {
                Some(MediaKind::Video) => "video",
                _ => "audio",
            };
            out.push_str(&format!(
                "  from {} ({}) {kind}: {} packets, {} bytes, {} frames, lost {} ({:.2} %)\n",
                s.name,
                s.publisher,
                s.packets,
                s.bytes,
                s.frames,
                s.lost,
                s.loss() * 100.0
            ));
        }
        if !self.latency.is_empty() {
            out.push_str(&format!("  latency: {}\n", self.latency.percentiles()));
        }
        if self.own_media_received > 0 {
            out.push_str(&format!(
                "  WARNING: received {} frames of our own media\n",
                self.own_media_received
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_from_sequence_gaps() {
        let mut s = StreamStats::new(1, "a", MediaKind::Audio);
        for seq in [10, 11, 12, 14, 15, 18] {
            s.record(seq, seq, 50);
        }
        assert_eq!(s.expected(), 9);
        assert_eq!(s.packets, 6);
        assert_eq!(s.lost, 3);
        // A late packet fills a gap.
        s.record(13, 13, 50);
        assert_eq!(s.lost, 2);
        // A video frame of three packets.
        s.record(19, 21, 3000);
        assert_eq!(s.lost, 2);
        assert_eq!(s.packets, 10);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s = Samples::default();
        for ms in 1..=100 {
            s.push(Duration::from_millis(ms));
        }
        let p = s.percentiles();
        assert_eq!(p.p50, Some(50.0));
        assert_eq!(p.p99, Some(99.0));
        assert_eq!(p.max, Some(100.0));
        assert_eq!(Samples::default().percentiles().p50, None);
    }
}
