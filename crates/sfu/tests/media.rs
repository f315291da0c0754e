//! The SFU core with real str0m peers on an in-memory network and a fake clock: ICE, DTLS-SRTP,
//! negotiation and RTP forwarding, with no sockets.

mod support;

use std::time::Duration;

use parley_proto::{ClientMessage, MediaStateChange};
use support::{got, talk_for, Net};

fn set_mic_muted(net: &mut Net, who: u64, muted: bool) {
    let now = net.now;
    let change = MediaStateChange {
        mic_muted: Some(muted),
        ..Default::default()
    };
    net.sfu
        .handle_message(who, ClientMessage::SetState { id: None, change }, now);
}

#[test]
fn audio_reaches_everyone_else_in_the_room_only() {
    let mut net = Net::new();
    net.join(1, "band");
    net.join(2, "band");
    net.join(3, "band");
    net.join(4, "other");
    talk_for(&mut net, Duration::from_secs(3));

    for (at, from) in [(1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2)] {
        let n = got(&mut net, at, from);
        assert!(n > 50, "{at} got {n} frames from {from}");
    }
    for at in 1..=3 {
        assert_eq!(got(&mut net, at, at), 0, "{at} must not receive itself");
        assert_eq!(
            got(&mut net, at, 4),
            0,
            "{at} must not receive another room"
        );
        assert_eq!(got(&mut net, 4, at), 0, "4 must not receive room band");
    }
    // Once DTLS is up, audio leaves on the direct SRTP path, and the receivers above (str0m)
    // decrypted and authenticated it.
    let counters = net.sfu.counters();
    assert!(
        counters.direct_packets * 10 > counters.forwarded_packets * 9,
        "{counters:?}"
    );
}

#[test]
fn muted_audio_is_not_forwarded_and_leavers_stop() {
    let mut net = Net::new();
    net.join(1, "band");
    net.join(2, "band");
    net.join(3, "band");
    talk_for(&mut net, Duration::from_secs(2));
    assert!(got(&mut net, 2, 1) > 30);

    set_mic_muted(&mut net, 1, true);
    talk_for(&mut net, Duration::from_millis(200));
    let (at2, at3) = (got(&mut net, 2, 1), got(&mut net, 3, 1));
    let from3 = got(&mut net, 2, 3);
    talk_for(&mut net, Duration::from_secs(1));
    assert_eq!(got(&mut net, 2, 1), at2, "muted audio still reached 2");
    assert_eq!(got(&mut net, 3, 1), at3, "muted audio still reached 3");
    assert!(got(&mut net, 2, 3) > from3 + 30, "unmuted 3 keeps flowing");

    // Unmute: flows again, with contiguous sequence numbers.
    set_mic_muted(&mut net, 1, false);
    talk_for(&mut net, Duration::from_secs(1));
    assert!(got(&mut net, 2, 1) > at2 + 30, "unmuted audio flows again");

    // 3 leaves: 1 stops hearing it, and the room is down to two.
    let now = net.now;
    net.sfu.disconnect(3, now);
    let before = got(&mut net, 1, 3);
    talk_for(&mut net, Duration::from_secs(1));
    assert_eq!(got(&mut net, 1, 3), before);
    assert_eq!(net.sfu.rooms().room("band").unwrap().members().len(), 2);
}

#[test]
fn the_loud_participant_becomes_active_speaker_for_everyone() {
    let mut net = Net::new();
    net.join(1, "band");
    net.join(2, "band");
    net.join(3, "band");
    talk_for(&mut net, Duration::from_secs(1));
    net.client(2).talk_level = -20;
    talk_for(&mut net, Duration::from_secs(2));
    for at in [1, 2, 3] {
        assert_eq!(net.client(at).speaker, Some(2), "speaker as seen by {at}");
    }
    let meters = net.client(1).meters.clone();
    assert!(meters.get(&2).copied().unwrap_or(0) > 50, "{meters:?}");
    assert_eq!(meters.get(&3).copied().unwrap_or(0), 0, "{meters:?}");

    // Turn-taking: 2 stops, 3 talks.
    net.client(2).talk_level = -127;
    net.client(3).talk_level = -25;
    talk_for(&mut net, Duration::from_secs(2));
    assert_eq!(net.client(1).speaker, Some(3));

    // The speaker mutes: nobody is speaker any more.
    set_mic_muted(&mut net, 3, true);
    talk_for(&mut net, Duration::from_millis(300));
    assert_eq!(net.client(1).speaker, None);
    assert!(net.sfu.gauges().speaker_switches >= 3);
}

#[test]
fn sender_reports_for_direct_audio_map_rtp_time_to_the_clock() {
    let mut net = Net::new();
    net.join(1, "band");
    net.join(2, "band");
    // str0m reports audio every 5 s; run past two reports.
    talk_for(&mut net, Duration::from_secs(12));
    let info = net.client(2).sender_info.get("1").copied();
    let info = info.expect("2 got a sender report for 1's audio");
    // The report is anchored on real packets: a count and an RTP time, not zeros.
    assert!(info.sender_packet_count > 0, "{info:?}");
    assert!(info.rtp_time.numer() > 0, "{info:?}");
    // 1 speaks 50 frames/s from RTP time 960 on; the report's RTP time must be in that range.
    assert!(info.rtp_time.numer() < 13 * 48_000, "{info:?}");
}
