//! Where a packet of audio goes on the session's sample grid. Packets are never stretched: a packet is
//! placed right after the one before unless its mapped time is a gap away (DTX, loss, mute: silence is
//! put in, in whole 10 ms steps so Opus can fill it with empty frames) or it would start more than half
//! a packet late (the sender's clock ran fast: the packet is dropped). So a track stays within a few ms
//! of its clock however long it runs. The per-track Ogg files, the WebM audio and the mix all place
//! packets with this one rule, so they agree.

/// Gaps are filled in steps of this many 48 kHz samples (10 ms: the shortest Opus frame that PLC and
/// every mode handle).
pub const GAP_STEP: u64 = 480;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Put `gap` samples of silence, then the packet.
    At { gap: u64 },
    /// The packet would start more than half its length before where the track already is.
    Drop,
}

/// Places a packet of `samples` whose mapped time is `target`, with the track written up to `pos`.
pub fn place(pos: u64, target: i64, samples: u64) -> Placement {
    let ahead = target.saturating_sub(pos as i64);
    if ahead < 0 && ahead.unsigned_abs() > samples / 2 {
        return Placement::Drop;
    }
    let step = GAP_STEP as i64;
    let gap = if ahead > 0 {
        (ahead + step / 2) / step * step
    } else {
        0
    };
    Placement::At { gap: gap as u64 }
}

/// The silence (whole steps, rounded up) that brings a track from `pos` to at least `end`.
pub fn pad_to(pos: u64, end: u64) -> u64 {
    end.saturating_sub(pos).div_ceil(GAP_STEP) * GAP_STEP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_round_to_10_ms_and_late_packets_drop() {
        assert_eq!(place(0, 0, 960), Placement::At { gap: 0 });
        assert_eq!(
            place(960, 1_000, 960),
            Placement::At { gap: 0 },
            "40 samples: no gap"
        );
        assert_eq!(place(960, 1_300, 960), Placement::At { gap: 480 });
        assert_eq!(place(0, 48_000 + 100, 960), Placement::At { gap: 48_000 });
        assert_eq!(
            place(960, 960 - 480, 960),
            Placement::At { gap: 0 },
            "half late: kept"
        );
        assert_eq!(place(960, 960 - 481, 960), Placement::Drop);
        assert_eq!(place(5_000, -10_000, 960), Placement::Drop);
        assert_eq!(pad_to(0, 1_000), 1_440);
        assert_eq!(pad_to(960, 960), 0);
        assert_eq!(pad_to(2_000, 1_000), 0);
    }
}
