//! What an Opus packet's TOC byte says (RFC 6716 §3.1), read without a decoder: the same answers as
//! libopus' `opus_packet_get_samples_per_frame` / `_get_nb_frames` / `_get_nb_samples` at 48 kHz.

/// Samples (at 48 kHz, per channel) in one frame of a packet whose TOC byte is `toc`: 120 to 2880.
pub fn samples_per_frame(toc: u8) -> u32 {
    let size = u32::from((toc >> 3) & 0x3);
    if toc & 0x80 != 0 {
        // CELT-only: 2.5, 5, 10 or 20 ms.
        (crate::SAMPLE_RATE << size) / 400
    } else if toc & 0x60 == 0x60 {
        // Hybrid: 10 or 20 ms.
        if toc & 0x08 != 0 {
            crate::SAMPLE_RATE / 50
        } else {
            crate::SAMPLE_RATE / 100
        }
    } else if size == 3 {
        // SILK-only 60 ms.
        crate::SAMPLE_RATE * 60 / 1000
    } else {
        // SILK-only: 10, 20 or 40 ms.
        (crate::SAMPLE_RATE << size) / 100
    }
}

/// Frames in a packet (code 0: one, codes 1 and 2: two, code 3: the count in the second byte); `None` for
/// an empty packet or a code 3 packet without its count byte.
pub fn frame_count(packet: &[u8]) -> Option<u32> {
    match packet.first()? & 0x3 {
        0 => Some(1),
        3 => packet.get(1).map(|b| u32::from(b & 0x3f)),
        _ => Some(2),
    }
}

/// Samples (at 48 kHz, per channel) in a packet; `None` where its TOC cannot be read or it claims more than
/// the 120 ms a packet may hold.
pub fn nb_samples(packet: &[u8]) -> Option<u32> {
    let samples = frame_count(packet)? * samples_per_frame(packet[0]);
    (samples * 25 <= crate::SAMPLE_RATE * 3).then_some(samples)
}

/// Samples (at 48 kHz, per channel) in an Opus packet; 960 (20 ms) when it cannot be read or holds none.
pub fn packet_samples(packet: &[u8]) -> u64 {
    match nb_samples(packet) {
        Some(n) if n > 0 => u64::from(n),
        _ => 960,
    }
}

/// Channels coded in a packet whose TOC byte is `toc` (its stereo flag): 1 or 2.
pub fn channels(toc: u8) -> u8 {
    if toc & 0x04 != 0 {
        2
    } else {
        1
    }
}

/// The TOC of a 10 ms frame in the same mode, bandwidth and channels as `toc` (one frame, code 0).
pub fn ten_ms_toc(toc: u8) -> u8 {
    let config = toc >> 3;
    let config = if config < 12 {
        config & !3 // SILK: size 0 is 10 ms
    } else if config < 16 {
        config & !1 // hybrid: size 0 is 10 ms
    } else {
        (config & !3) | 2 // CELT: size 2 is 10 ms
    };
    config << 3 | (toc & 0x04)
}

/// Empty frames (TOC only, which decoders conceal or play as silence) that fill `gap` samples, as
/// `(toc, samples)`: frames as long as `toc`'s where they fit, 10 ms ones for the rest (`gap` is meant
/// to be whole 10 ms steps; a remainder under 10 ms is left out).
pub fn empty_frames(gap: u64, toc: u8) -> impl Iterator<Item = (u8, u64)> {
    let long = u64::from(samples_per_frame(toc));
    let (long, long_toc) = if long >= 480 {
        (long, toc & 0xfc)
    } else {
        (480, ten_ms_toc(toc))
    };
    let short = (gap % long) / 480;
    std::iter::repeat_n((long_toc, long), (gap / long) as usize)
        .chain(std::iter::repeat_n((ten_ms_toc(toc), 480), short as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_of_each_mode() {
        // SILK 10/20/40/60 ms, hybrid 10/20 ms, CELT 2.5/5/10/20 ms.
        assert_eq!(samples_per_frame(0x00), 480);
        assert_eq!(samples_per_frame(0x08), 960);
        assert_eq!(samples_per_frame(0x10), 1920);
        assert_eq!(samples_per_frame(0x18), 2880);
        assert_eq!(samples_per_frame(0x60), 480);
        assert_eq!(samples_per_frame(0x68), 960);
        assert_eq!(samples_per_frame(0x80), 120);
        assert_eq!(samples_per_frame(0x88), 240);
        assert_eq!(samples_per_frame(0x90), 480);
        assert_eq!(samples_per_frame(0xf8), 960);
        assert_eq!(packet_samples(&[0x78, 1, 2]), 960, "20 ms hybrid, code 0");
        assert_eq!(packet_samples(&[0x79]), 1920, "two frames");
        assert_eq!(packet_samples(&[0x7b, 3]), 2880, "code 3, three frames");
        assert_eq!(
            packet_samples(&[0x1b, 3]),
            960,
            "3 x 60 ms is too long: unreadable"
        );
        assert_eq!(packet_samples(&[0x7b]), 960, "code 3 without its count");
        assert_eq!(packet_samples(&[0x7b, 0]), 960, "no frames");
        assert_eq!(packet_samples(&[]), 960);
        assert_eq!((channels(0x78), channels(0x7c)), (1, 2));
    }

    #[test]
    fn ten_ms_and_empty_frames_keep_the_mode() {
        for toc in 0..=255u8 {
            let t = ten_ms_toc(toc);
            assert_eq!(samples_per_frame(t), 480, "toc {toc:#04x}");
            assert_eq!(t & 0x84, toc & 0x84, "CELT bit and stereo flag kept");
            assert_eq!(t & 0x03, 0, "one frame");
            if toc & 0x80 == 0 {
                assert_eq!(toc & 0x60 == 0x60, t & 0x60 == 0x60, "SILK or hybrid kept");
            }
        }
        let frames: Vec<_> = empty_frames(960 * 3 + 480, 0x79).collect();
        assert_eq!(
            frames,
            vec![(0x78, 960), (0x78, 960), (0x78, 960), (0x70, 480)]
        );
        let frames: Vec<_> = empty_frames(960, 0x80).collect();
        assert_eq!(
            frames,
            vec![(0x90, 480), (0x90, 480)],
            "2.5 ms CELT: 10 ms steps"
        );
        let frames: Vec<_> = empty_frames(2_880 + 960, 0x18).collect();
        assert_eq!(frames, vec![(0x18, 2_880), (0x00, 480), (0x00, 480)]);
        assert_eq!(empty_frames(0, 0xf8).count(), 0);
    }

    #[test]
    fn agrees_with_libopus_on_every_toc() {
        for toc in 0..=255u8 {
            assert_eq!(
                samples_per_frame(toc) as usize,
                opus::packet::get_samples_per_frame(&[toc], crate::SAMPLE_RATE).unwrap(),
                "toc {toc:#04x}"
            );
            assert_eq!(
                channels(toc) == 2,
                opus::packet::get_nb_channels(&[toc]).unwrap() == opus::Channels::Stereo
            );
            let mut packets = vec![vec![toc], vec![toc, 0, 0, 0]];
            packets.extend((0..=255u8).map(|count| vec![toc, count, 0, 0]));
            for p in packets {
                let theirs = opus::packet::get_nb_samples(&p, crate::SAMPLE_RATE).ok();
                assert_eq!(nb_samples(&p).map(|n| n as usize), theirs, "packet {p:?}");
            }
        }
        assert_eq!(nb_samples(&[]), None);
    }
}
