//! One subscriber's copy of one published track: the sequence numbers and timestamps it sees.
//!
//! A subscriber must see one continuous stream whatever the publisher did before it joined or while
//! it was muted:
//! - its stream starts in SRTP rollover 0, as every receiver assumes (a late joiner to a publisher
//!   past 65 536 packets could not decrypt otherwise), keeping the publisher's low 16 bits;
//! - packets not forwarded (muted, camera off) leave no hole: after a pause the next packet follows
//!   the last one sent, so receivers count no loss and ask for no retransmission;
//! - timestamps keep the publisher's clock: a pause is real time passing, and the receiver's jitter
//!   buffer needs to see it. The offset exists for layer switches (simulcast), which change clocks.

/// Publisher's extended sequence numbers and RTP timestamps → this subscriber's.
#[derive(Debug, Clone, Default)]
pub struct DownTrack {
    /// Subtracted from the publisher's extended sequence number; set by the first packet.
    seq_offset: Option<u64>,
    /// Added (wrapping) to the publisher's timestamp.
    ts_offset: u32,
    /// Highest publisher sequence number forwarded, and what it became.
    last_in: u64,
    last_out: u64,
    /// Packets were held back since the last forwarded one: the next one continues our numbering.
    paused: bool,
    /// The publisher's first sequence number after the last pause: anything older maps onto slots
    /// of the earlier run.
    run_start: u64,
}

/// How far behind the newest forwarded packet a reordered one may be and still go out.
const REORDER_WINDOW: u64 = 512;

impl DownTrack {
    pub fn new() -> DownTrack {
        DownTrack::default()
    }

    /// The publisher's packets are held back from now on (mute, camera off): the numbering closes
    /// the gap when they resume.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Whether anything has been forwarded yet.
    pub fn started(&self) -> bool {
        self.seq_offset.is_some()
    }

    /// The sequence number and timestamp to forward the publisher's packet `seq` (extended) with,
    /// or `None` when it cannot be sent without confusing the receiver (older than what the stream
    /// started at, or from before a pause).
    pub fn rewrite(&mut self, seq: u64, timestamp: u32) -> Option<(u64, u32)> {
        let offset = match self.seq_offset {
            None => {
                let offset = seq & !0xffff;
                self.seq_offset = Some(offset);
                self.last_in = seq;
                self.last_out = seq - offset;
                self.paused = false;
                return Some((seq - offset, timestamp.wrapping_add(self.ts_offset)));
            }
            Some(o) => o,
        };
        if seq > self.last_in {
            if self.paused {
                // Continue right after the last packet sent.
                self.paused = false;
                let offset = seq - (self.last_out + 1);
                self.seq_offset = Some(offset);
                self.run_start = seq;
                self.last_in = seq;
                self.last_out += 1;
                return Some((self.last_out, timestamp.wrapping_add(self.ts_offset)));
            }
            self.last_in = seq;
            self.last_out = seq - offset;
            return Some((self.last_out, timestamp.wrapping_add(self.ts_offset)));
        }
        // Late (reordered or retransmitted by the publisher): only within the current run of
        // numbering, where it maps to a slot the receiver has not seen filled.
        if self.paused || seq < self.run_start || self.last_in - seq > REORDER_WINDOW {
            return None;
        }
        let out = seq.checked_sub(offset)?;
        Some((out, timestamp.wrapping_add(self.ts_offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(track: &mut DownTrack, input: impl IntoIterator<Item = u64>) -> Vec<Option<u64>> {
        input
            .into_iter()
            .map(|s| track.rewrite(s, 0).map(|(o, _)| o))
            .collect()
    }

    #[test]
    fn a_fresh_stream_keeps_the_low_bits_in_rollover_0() {
        let mut t = DownTrack::new();
        assert_eq!(
            seqs(&mut t, [1000, 1001, 1002]),
            [Some(1000), Some(1001), Some(1002)]
        );
    }

    #[test]
    fn a_late_joiner_starts_in_rollover_0() {
        // The publisher has sent 3 × 65 536 + 100 packets already.
        let first = 3 * 65_536 + 100;
        let mut t = DownTrack::new();
        assert_eq!(
            seqs(&mut t, [first, first + 1]),
            [Some(100), Some(101)],
            "the receiver's rollover counter starts at 0"
        );
    }

    #[test]
    fn numbering_crosses_the_16_bit_wrap_as_the_publisher_does() {
        let mut t = DownTrack::new();
        let out = seqs(&mut t, [65_534, 65_535, 65_536, 65_537]);
        assert_eq!(
            out,
            [Some(65_534), Some(65_535), Some(65_536), Some(65_537)]
        );
        // On the wire: ..., 65535, 0, 1 with the rollover counter moving to 1.
        assert_eq!(out[2].map(|s| s as u16), Some(0));
    }

    #[test]
    fn a_mute_leaves_no_gap() {
        let mut t = DownTrack::new();
        assert_eq!(seqs(&mut t, [10, 11, 12]), [Some(10), Some(11), Some(12)]);
        t.pause();
        // 13..=512 were dropped while muted.
        assert_eq!(seqs(&mut t, [513, 514]), [Some(13), Some(14)]);
        // A second mute, over a wrap of the publisher's 16 bits.
        t.pause();
        assert_eq!(seqs(&mut t, [70_000, 70_001]), [Some(15), Some(16)]);
    }

    #[test]
    fn reordered_packets_go_out_in_their_slot_but_never_across_a_pause() {
        let mut t = DownTrack::new();
        assert_eq!(
            seqs(&mut t, [100, 102, 101]),
            [Some(100), Some(102), Some(101)]
        );
        t.pause();
        assert_eq!(seqs(&mut t, [200]), [Some(103)]);
        // 199 is from the paused stretch, 101 from before: either would land on a used slot.
        assert_eq!(seqs(&mut t, [199, 101]), [None, None]);
        assert_eq!(seqs(&mut t, [201]), [Some(104)]);
    }

    #[test]
    fn packets_from_before_the_stream_started_are_not_sent() {
        let mut t = DownTrack::new();
        assert_eq!(seqs(&mut t, [65_536 + 5]), [Some(5)]);
        // Older than the start, below the rollover base: not representable.
        assert_eq!(seqs(&mut t, [65_535]), [None]);
        // A jump ahead, then a late packet inside the window goes out in its own slot.
        assert_eq!(seqs(&mut t, [65_536 + 5 + 10]), [Some(15)]);
        assert_eq!(seqs(&mut t, [65_536 + 6]), [Some(6)]);
    }

    #[test]
    fn timestamps_keep_the_publishers_clock_over_a_pause() {
        let mut t = DownTrack::new();
        assert_eq!(t.rewrite(1, 960), Some((1, 960)));
        t.pause();
        // One second later on a 48 kHz clock: the receiver must see the time pass.
        assert_eq!(t.rewrite(60, 960 + 48_000), Some((2, 48_960)));
        // Timestamps wrap at 32 bits.
        assert_eq!(t.rewrite(61, u32::MAX), Some((3, u32::MAX)));
        assert_eq!(t.rewrite(62, 959), Some((4, 959)));
    }
}
