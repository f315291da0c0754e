//! The two planes with real str0m peers on the in-memory network and a fake clock: the real control
//! plane places rooms on media workers; ICE, DTLS-SRTP, negotiation and RTP forwarding run with no
//! sockets.

use std::time::Duration;

use parley_proto::{ClientMessage, ErrorCode, MediaStateChange, Role};
use parley_testkit::net::{client_addr, got, talk_for, worker_addr, Browser, Net};
use str0m::media::{Direction, MediaKind};

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
    let counters = net.counters();
    assert!(
        counters.direct_packets * 10 > counters.forwarded_packets * 9,
        "{counters:?}"
    );
    // And it arrives on the direct path too: opened by us, not by str0m, none dropped.
    let sent_by_publishers = counters.forwarded_packets / 2;
    assert!(
        counters.direct_received * 10 > sent_by_publishers * 9,
        "{counters:?}"
    );
    assert_eq!(counters.direct_dropped, 0);
}

#[test]
fn our_receiver_reports_reach_the_publishers() {
    let mut net = Net::new();
    net.join(1, "band");
    net.join(2, "band");
    talk_for(&mut net, Duration::from_secs(4));
    // str0m (the browser here) opened our SRTCP, read the report block for its own audio, and
    // took its figures: the highest sequence number we had received, and no loss.
    let (highest, lost) = net
        .client(1)
        .reported
        .expect("a receiver report for 1's audio");
    assert!(highest > 100, "{highest}");
    assert_eq!(lost, 0);
    assert!(net.counters().direct_received > 200);
}

#[test]
fn muted_audio_is_not_forwarded_and_leavers_stop() {
    let mut net = Net::new();
    net.join(1, "band");
    net.join(2, "band");
    net.join(3, "band");
    talk_for(&mut net, Duration::from_secs(2));
    assert!(got(&mut net, 2, 1) > 30);

    net.set_mic_muted(1, true);
    talk_for(&mut net, Duration::from_millis(200));
    let (at2, at3) = (got(&mut net, 2, 1), got(&mut net, 3, 1));
    let from3 = got(&mut net, 2, 3);
    talk_for(&mut net, Duration::from_secs(1));
    assert_eq!(got(&mut net, 2, 1), at2, "muted audio still reached 2");
    assert_eq!(got(&mut net, 3, 1), at3, "muted audio still reached 3");
    assert!(got(&mut net, 2, 3) > from3 + 30, "unmuted 3 keeps flowing");
    assert!(net.counters().dropped_muted_packets > 30);

    // Unmute: flows again (the down-tracks close the gap, so str0m's receivers take it).
    net.set_mic_muted(1, false);
    talk_for(&mut net, Duration::from_secs(1));
    assert!(got(&mut net, 2, 1) > at2 + 30, "unmuted audio flows again");

    // 3 leaves: 1 stops hearing it, and the worker holds two peers.
    net.disconnect(3);
    let before = got(&mut net, 1, 3);
    talk_for(&mut net, Duration::from_secs(1));
    assert_eq!(got(&mut net, 1, 3), before);
    assert_eq!(net.gauges(0).peers, 2);
    net.disconnect(1);
    net.disconnect(2);
    talk_for(&mut net, Duration::from_millis(100));
    assert_eq!(net.gauges(0).rooms, 0, "an empty room leaves its worker");
}

/// The first joiner leaves, so every later track moves up in the others' lists of outgoing tracks
/// (the forwarding path's remembered positions go stale): everyone left still hears everyone.
#[test]
fn forwarding_survives_the_first_joiner_leaving() {
    let mut net = Net::new();
    for p in 1..=4 {
        net.join(p, "band");
    }
    talk_for(&mut net, Duration::from_secs(2));
    net.disconnect(1);
    talk_for(&mut net, Duration::from_secs(1));
    let before: Vec<_> = [(4, 2), (4, 3), (2, 4), (3, 2)]
        .iter()
        .map(|&(to, from)| got(&mut net, to, from))
        .collect();
    talk_for(&mut net, Duration::from_secs(1));
    for (i, &(to, from)) in [(4, 2), (4, 3), (2, 4), (3, 2)].iter().enumerate() {
        assert!(
            got(&mut net, to, from) > before[i] + 30,
            "{to} stopped hearing {from} after 1 left"
        );
    }
}

/// The track bomb: a participant re-offers with hundreds of m-lines. The offer is refused with its
/// request id, nothing is offered to anyone else, and everyone keeps hearing everyone.
#[test]
fn a_reoffer_with_hundreds_of_tracks_is_refused_and_the_room_goes_on() {
    let mut net = Net::new();
    for p in 1..=3 {
        net.join(p, "band");
    }
    talk_for(&mut net, Duration::from_secs(2));
    let offer = {
        let rtc = &mut net.client(3).rtc;
        let mut change = rtc.sdp_api();
        for _ in 0..300 {
            change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        }
        let (offer, _pending) = change.apply().expect("an offer");
        offer.to_sdp_string()
    };
    let offers_before: Vec<usize> = [1, 2].iter().map(|&p| net.client(p).offers).collect();
    net.send(
        3,
        ClientMessage::Offer {
            id: Some(42),
            sdp: offer,
        },
    );
    let before: Vec<_> = [(1, 2), (2, 1), (1, 3), (2, 3)]
        .iter()
        .map(|&(to, from)| got(&mut net, to, from))
        .collect();
    talk_for(&mut net, Duration::from_secs(1));
    assert!(
        net.errors(3).iter().any(|(id, code, m)| *id == Some(42)
            && *code == ErrorCode::BadSdp
            && m.contains("more tracks")),
        "{:?}",
        net.errors(3)
    );
    for (i, &(to, from)) in [(1, 2), (2, 1), (1, 3), (2, 3)].iter().enumerate() {
        assert!(
            got(&mut net, to, from) > before[i] + 30,
            "{to} stopped hearing {from}"
        );
    }
    let offers_after: Vec<usize> = [1, 2].iter().map(|&p| net.client(p).offers).collect();
    assert_eq!(
        offers_before, offers_after,
        "nobody else was offered the bomb's tracks"
    );
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
    net.set_mic_muted(3, true);
    talk_for(&mut net, Duration::from_millis(300));
    assert_eq!(net.client(1).speaker, None);
    assert!(net.counters().speaker_switches >= 3);
    // The control plane knows too (`joined` of a late joiner, /api/status).
    let band = net
        .control
        .status()
        .into_iter()
        .find(|r| r.name == "band")
        .unwrap();
    assert_eq!(band.active_speaker, None);
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

#[test]
fn two_rooms_on_two_workers_carry_media_at_once() {
    let mut net = Net::with_workers(2);
    net.join(1, "band");
    net.join(2, "band");
    net.join(3, "other");
    net.join(4, "other");
    let status = net.control.status();
    let worker_of = |name: &str| status.iter().find(|r| r.name == name).unwrap().worker;
    assert_eq!(worker_of("band"), Some(0));
    assert_eq!(
        worker_of("other"),
        Some(1),
        "a new room goes to the least loaded worker"
    );
    talk_for(&mut net, Duration::from_secs(3));
    for (at, from) in [(1, 2), (2, 1), (3, 4), (4, 3)] {
        assert!(got(&mut net, at, from) > 50, "{at} from {from}");
    }
    for (at, from) in [(1, 3), (3, 1), (2, 4), (4, 2)] {
        assert_eq!(
            got(&mut net, at, from),
            0,
            "{at} from {from}: rooms are apart"
        );
    }
    // Each worker forwarded its own room's packets and nothing else.
    for w in 0..2 {
        let c = net.workers[w].counters();
        assert!(c.forwarded_packets > 100, "worker {w}: {c:?}");
        assert_eq!(net.gauges(w).peers, 2, "worker {w}");
    }
}

#[test]
fn a_misbehaving_peer_on_one_worker_leaves_the_other_workers_rooms_alone() {
    let mut net = Net::with_workers(2);
    net.join(1, "band");
    net.join(2, "band");
    net.join(3, "other");
    net.join(4, "other");
    talk_for(&mut net, Duration::from_secs(2));
    let before = (got(&mut net, 1, 2), got(&mut net, 2, 1));
    let other_before = got(&mut net, 4, 3);

    // 3 (on worker 1) sends garbage from its own address and from strangers, a broken offer and a
    // broken answer, then vanishes without a word.
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..(i % 90) as u8).map(|b| b.wrapping_mul(37)).collect();
        net.injected
            .push((client_addr(3), worker_addr(1), junk.clone()));
        net.injected
            .push((client_addr(200 + u64::from(i % 50)), worker_addr(1), junk));
    }
    net.send(
        3,
        ClientMessage::Offer {
            id: Some(9),
            sdp: "v=0\r\nnot sdp".into(),
        },
    );
    net.send(
        3,
        ClientMessage::Answer {
            id: Some(10),
            sdp: "garbage".into(),
        },
    );
    talk_for(&mut net, Duration::from_millis(500));
    let errors = net.errors(3);
    assert!(
        errors.iter().any(|(id, code, m)| *id == Some(9)
            && *code == ErrorCode::BadSdp
            && !m.contains('\n')
            && m.len() < 100),
        "{errors:?}"
    );
    assert!(errors
        .iter()
        .any(|(id, code, _)| *id == Some(10) && *code == ErrorCode::BadSdp));
    net.client(3).rtc.disconnect();
    talk_for(&mut net, Duration::from_secs(3));

    // Worker 0's room never noticed.
    assert!(got(&mut net, 1, 2) > before.0 + 100);
    assert!(got(&mut net, 2, 1) > before.1 + 100);
    assert!(net.workers[0].counters().unrouted_datagrams == 0);
    assert!(net.workers[1].counters().unrouted_datagrams >= 100);
    assert!(
        got(&mut net, 4, 3) > other_before,
        "3 was heard before it went quiet"
    );
}

#[test]
fn a_viewer_is_receive_only() {
    let mut net: Net<Browser> = Net::new();
    net.join(1, "band");
    let now = net.now;
    // A viewer that offers audio and video anyway.
    net.join_with(2, "band", Role::Viewer, Browser::with_video(2, now));
    talk_for(&mut net, Duration::from_secs(3));
    assert!(got(&mut net, 2, 1) > 50, "the viewer hears the room");
    assert_eq!(got(&mut net, 1, 2), 0, "nobody receives a viewer's audio");
    let video = net.client(1).received_video.get("2").copied().unwrap_or(0);
    assert_eq!(video, 0, "nobody receives a viewer's video");
    assert_eq!(
        net.gauges(0).tracks,
        1,
        "only the member's track is published"
    );
}

/// Video frames `at` received from participant `from` on its screen track (`screen`) or its others.
fn video_frames(net: &Net, at: u64, from: u64, screen: bool) -> usize {
    net.endpoint(at)
        .received_video_tracks
        .iter()
        .filter(|((stream, track), _)| {
            *stream == from.to_string() && track.ends_with("-screen") == screen
        })
        .map(|(_, n)| *n)
        .sum()
}

/// A screen share is a publisher's second video m-line: it reaches the others as its own track
/// (msid track id `{publisher}-screen`, next to the camera's), late joiners included, and is gated
/// by `screen_sharing` alone, as the camera is by `camera_off` alone.
#[test]
fn a_screen_share_is_a_second_video_track_with_its_own_flag() {
    let mut net = Net::new();
    let now = net.now;
    net.join_with(1, "band", Role::Member, Browser::with_screen(1, now));
    net.join(2, "band");
    let sharing = |on: bool| MediaStateChange {
        screen_sharing: Some(on),
        ..Default::default()
    };
    let camera_off = |off: bool| MediaStateChange {
        camera_off: Some(off),
        ..Default::default()
    };
    // Not sharing: the camera flows, the screen track (negotiated all the same) carries nothing.
    talk_for(&mut net, Duration::from_secs(2));
    assert!(video_frames(&net, 2, 1, false) > 30, "the camera reaches 2");
    assert_eq!(
        video_frames(&net, 2, 1, true),
        0,
        "no screen before sharing"
    );
    let tracks: Vec<String> = net
        .endpoint(2)
        .received_video_tracks
        .keys()
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(tracks.len(), 1, "{tracks:?}");
    assert!(!tracks[0].ends_with("-screen"), "{tracks:?}");

    net.set_state(1, sharing(true));
    talk_for(&mut net, Duration::from_secs(2));
    let screen = video_frames(&net, 2, 1, true);
    assert!(screen > 30, "the screen reaches 2 while shared ({screen})");
    let ids: std::collections::BTreeSet<String> = net
        .endpoint(2)
        .received_video_tracks
        .keys()
        .filter(|(s, _)| s == "1")
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(ids.len(), 2, "two video tracks from one publisher: {ids:?}");

    // The camera off stops the camera only.
    net.set_state(1, camera_off(true));
    talk_for(&mut net, Duration::from_millis(200));
    let (cam0, scr0) = (
        video_frames(&net, 2, 1, false),
        video_frames(&net, 2, 1, true),
    );
    talk_for(&mut net, Duration::from_secs(1));
    assert_eq!(
        video_frames(&net, 2, 1, false),
        cam0,
        "camera off: no camera"
    );
    assert!(
        video_frames(&net, 2, 1, true) > scr0 + 20,
        "camera off: the screen goes on"
    );

    // A late joiner gets the screen too (its first server offer has both video tracks).
    net.join(3, "band");
    talk_for(&mut net, Duration::from_secs(2));
    assert!(video_frames(&net, 3, 1, true) > 20, "the screen reaches 3");
    assert_eq!(
        video_frames(&net, 3, 1, false),
        0,
        "the camera is still off"
    );

    // Stopping the share stops the screen; the camera back on flows again.
    net.set_state(1, sharing(false));
    net.set_state(1, camera_off(false));
    talk_for(&mut net, Duration::from_millis(200));
    let (cam1, scr1) = (
        video_frames(&net, 2, 1, false),
        video_frames(&net, 2, 1, true),
    );
    talk_for(&mut net, Duration::from_secs(1));
    assert_eq!(
        video_frames(&net, 2, 1, true),
        scr1,
        "no screen after stopping"
    );
    assert!(
        video_frames(&net, 2, 1, false) > cam1 + 20,
        "the camera again"
    );
    assert!(net.counters().dropped_muted_packets > 30);
}

#[test]
fn each_room_on_a_worker_has_its_own_speaker_and_levels() {
    let mut net = Net::new();
    net.join(1, "band");
    net.join(2, "band");
    net.join(3, "other");
    net.join(4, "other");
    net.client(1).talk_level = -20;
    net.client(4).talk_level = -25;
    talk_for(&mut net, Duration::from_secs(3));
    assert_eq!(net.client(2).speaker, Some(1));
    assert_eq!(net.client(3).speaker, Some(4));
    // Meters only ever carry the room's own people.
    let band = net.client(2).meters.clone();
    let other = net.client(3).meters.clone();
    assert!(band.keys().all(|id| [1, 2].contains(id)), "{band:?}");
    assert!(other.keys().all(|id| [3, 4].contains(id)), "{other:?}");
    assert!(band.get(&1).copied().unwrap_or(0) > 50);
    assert_eq!(net.gauges(0).rooms, 2);
}

#[test]
fn a_recorded_room_copies_its_packets_after_the_mute_check_and_its_sender_reports() {
    use parley_sfu::Recorded;
    let mut net = Net::new();
    net.join(1, "band");
    net.join(2, "band");
    net.join(3, "other");
    talk_for(&mut net, Duration::from_secs(1));
    assert!(net.recorded.is_empty(), "nothing is copied before a start");
    net.send(1, ClientMessage::RecordingStart { id: Some(1) });
    // str0m sends a sender report every few seconds: run past two.
    talk_for(&mut net, Duration::from_secs(11));
    let packets = |net: &Net<Browser>, from: u64| {
        net.recorded
            .iter()
            .filter(|r| matches!(r, Recorded::Packet(p) if p.participant == from))
            .count()
    };
    assert!(
        packets(&net, 1) > 400,
        "{} of 1's packets",
        packets(&net, 1)
    );
    assert!(
        packets(&net, 2) > 400,
        "{} of 2's packets",
        packets(&net, 2)
    );
    assert_eq!(packets(&net, 3), 0, "another room is not recorded");
    let reports: Vec<_> = net
        .recorded
        .iter()
        .filter_map(|r| match r {
            Recorded::SenderReport(s) => Some(s.clone()),
            Recorded::Packet(_) => None,
        })
        .collect();
    for from in [1, 2] {
        let mine: Vec<_> = reports.iter().filter(|s| s.participant == from).collect();
        assert!(
            !mine.is_empty(),
            "{from}'s sender reports reach the recorder"
        );
        for s in mine {
            // An RTP time within what 1 and 2 sent (50 frames/s from 960 on), NTP in this century.
            assert!(s.rtp_time > 0 && s.rtp_time < 13 * 48_000, "{s:?}");
            assert!((s.ntp >> 32) > 3_900_000_000, "{s:?}");
        }
    }
    // Muted: the worker drops 1's packets before the copy, as it does before forwarding.
    net.set_mic_muted(1, true);
    talk_for(&mut net, Duration::from_millis(300));
    let before = packets(&net, 1);
    talk_for(&mut net, Duration::from_secs(1));
    assert_eq!(packets(&net, 1), before, "muted audio was recorded");
    assert!(packets(&net, 2) > 500);
}

/// With `server_offer` one offer/answer sets up a whole call: the server's first offer carries the
/// joiner's own three m-lines (recvonly on the server) and the room's tracks, the joiner never offers,
/// and its microphone, camera and screen share are published like a client offer's (the second video is
/// the screen). Clients of both kinds share a room.
#[test]
fn the_server_can_make_the_first_offer() {
    let mut net = Net::new();
    let now = net.now;
    net.join_with(1, "band", Role::Member, Browser::with_screen(1, now));
    net.join_with(
        2,
        "band",
        Role::Member,
        Browser::answering_first_offer(2, now),
    );
    assert_eq!(net.endpoint(2).offers_sent, 0, "the joiner sends no offer");
    assert_eq!(
        net.endpoint(2).offers,
        1,
        "one server offer: own m-lines and the room's three tracks together"
    );
    assert!(net.errors(2).is_empty(), "{:?}", net.errors(2));
    for id in [1, 2] {
        net.set_state(
            id,
            MediaStateChange {
                screen_sharing: Some(true),
                ..Default::default()
            },
        );
    }
    talk_for(&mut net, Duration::from_secs(3));
    assert!(got(&mut net, 2, 1) > 50, "the joiner hears the room");
    assert!(got(&mut net, 1, 2) > 50, "the room hears the joiner");
    for (at, from) in [(1, 2), (2, 1)] {
        assert!(
            video_frames(&net, at, from, false) > 20,
            "{at} sees {from}'s camera"
        );
        assert!(
            video_frames(&net, at, from, true) > 20,
            "{at} sees {from}'s screen"
        );
    }
    assert_eq!(net.gauges(0).tracks, 6, "three tracks each");
    assert!(
        net.counters().keyframe_requests >= 4,
        "each new video subscription asks its publisher for a keyframe: {:?}",
        net.counters()
    );
}
