//! The SFU core with real str0m peers on an in-memory network and a fake clock: ICE, DTLS-SRTP,
//! negotiation and RTP forwarding, with no sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parley_proto::{ClientMessage, MediaState, MediaStateChange, ParticipantId, ServerMessage};
use parley_sfu::{Sfu, SfuConfig};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SERVER: &str = "10.0.0.1:5000";

/// A browser stand-in: a full-ICE str0m peer in frame mode that publishes one audio track.
struct Client {
    id: ParticipantId,
    addr: SocketAddr,
    rtc: Rtc,
    audio_mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    /// Audio frames received, by stream id (the publisher's participant id).
    received: HashMap<String, usize>,
    timeout: Instant,
    /// The last `active_speaker` this client was told.
    speaker: Option<ParticipantId>,
    /// Loudest meter level seen per participant in `levels` messages.
    meters: HashMap<ParticipantId, u8>,
    /// Level (-dBov) this client's audio carries in its RTP header extension.
    talk_level: i8,
}

struct Net {
    now: Instant,
    sfu: Sfu,
    clients: Vec<Client>,
}

impl Net {
    fn new() -> Net {
        let server: SocketAddr = SERVER.parse().unwrap();
        let mut sfu = Sfu::new(SfuConfig::new(vec![(server, server)]));
        sfu.create_room("band").unwrap();
        sfu.create_room("other").unwrap();
        Net {
            now: Instant::now(),
            sfu,
            clients: Vec::new(),
        }
    }

    /// Connects a client, joins `room` and sends its offer with one send-only audio track.
    fn join(&mut self, id: ParticipantId, room: &str) -> usize {
        let addr: SocketAddr = format!("10.0.0.{}:4000", 10 + id).parse().unwrap();
        let mut rtc = Rtc::builder().build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).unwrap());
        self.sfu.connect(id);
        self.sfu.handle_message(
            id,
            ClientMessage::Join {
                id: Some(1),
                room: room.into(),
                name: format!("p{id}"),
                state: MediaState::default(),
                role: Default::default(),
            },
            self.now,
        );
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        self.clients.push(Client {
            id,
            addr,
            rtc,
            audio_mid: Some(mid),
            pending: Some(pending),
            received: HashMap::new(),
            timeout: self.now,
            speaker: None,
            meters: HashMap::new(),
            talk_level: -127,
        });
        self.sfu.handle_message(
            id,
            ClientMessage::Offer {
                sdp: offer.to_sdp_string(),
            },
            self.now,
        );
        self.clients.len() - 1
    }

    fn client(&mut self, id: ParticipantId) -> &mut Client {
        self.clients.iter_mut().find(|c| c.id == id).unwrap()
    }

    /// Delivers signalling, datagrams and timers until `duration` of fake time has passed.
    fn run(&mut self, duration: Duration, mut each_tick: impl FnMut(&mut Net)) {
        let end = self.now + duration;
        while self.now < end {
            each_tick(self);
            self.pump();
            self.now += Duration::from_millis(5);
            self.sfu.handle_timeout(self.now);
            for c in &mut self.clients {
                if c.timeout <= self.now {
                    c.rtc.handle_input(Input::Timeout(self.now)).unwrap();
                }
            }
        }
    }

    fn pump(&mut self) {
        for _ in 0..50 {
            let mut moved = false;
            let signals: Vec<_> = self.sfu.drain_signals().collect();
            for (to, msg) in signals {
                moved = true;
                self.deliver_signal(to, msg);
            }
            let transmits: Vec<_> = self.sfu.drain_transmits().collect();
            for t in transmits {
                moved = true;
                let now = self.now;
                if let Some(c) = self.clients.iter_mut().find(|c| c.addr == t.destination) {
                    let input = Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source: t.source,
                            destination: t.destination,
                            contents: t.contents.as_slice().try_into().unwrap(),
                        },
                    );
                    c.rtc.handle_input(input).unwrap();
                }
            }
            let now = self.now;
            let mut outgoing = Vec::new();
            for c in &mut self.clients {
                loop {
                    match c.rtc.poll_output().unwrap() {
                        Output::Timeout(t) => {
                            c.timeout = t;
                            break;
                        }
                        Output::Transmit(t) => {
                            outgoing.push((t.source, t.destination, t.contents.to_vec()))
                        }
                        Output::Event(Event::MediaData(d)) => {
                            let stream = c
                                .rtc
                                .media(d.mid)
                                .map(|m| m.stream_id().to_string())
                                .unwrap_or_default();
                            *c.received.entry(stream).or_default() += 1;
                        }
                        Output::Event(_) => {}
                    }
                }
            }
            for (source, destination, data) in outgoing {
                moved = true;
                self.sfu.handle_datagram(now, source, destination, &data);
            }
            if !moved {
                return;
            }
        }
    }

    fn deliver_signal(&mut self, to: ParticipantId, msg: ServerMessage) {
        let now = self.now;
        let Some(c) = self.clients.iter_mut().find(|c| c.id == to) else {
            return;
        };
        match msg {
            ServerMessage::Answer { sdp } => {
                let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                let pending = c.pending.take().expect("an offer was pending");
                c.rtc.sdp_api().accept_answer(pending, answer).unwrap();
            }
            ServerMessage::Offer { sdp } => {
                let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                let answer = c.rtc.sdp_api().accept_offer(offer).unwrap();
                let id = c.id;
                self.sfu.handle_message(
                    id,
                    ClientMessage::Answer {
                        sdp: answer.to_sdp_string(),
                    },
                    now,
                );
            }
            ServerMessage::Error { code, message, .. } => {
                panic!("unexpected error {code:?}: {message}")
            }
            ServerMessage::ActiveSpeaker { participant_id } => c.speaker = participant_id,
            ServerMessage::Levels { levels } => {
                for l in levels {
                    let m = c.meters.entry(l.id).or_default();
                    *m = (*m).max(l.level);
                }
            }
            _ => {}
        }
    }

    /// Every client writes one 20 ms Opus frame.
    fn speak(&mut self, frame: u64) {
        let now = self.now;
        for c in &mut self.clients {
            let Some(mid) = c.audio_mid else { continue };
            let Some(writer) = c.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer
                .payload_params()
                .find(|p| p.spec().codec == str0m::format::Codec::Opus)
                .map(|p| p.pt())
            else {
                continue;
            };
            let time = MediaTime::new(frame * 960, str0m::media::Frequency::FORTY_EIGHT_KHZ);
            let voiced = c.talk_level > -60;
            // Errors before DTLS is up are expected: nothing can be sent yet.
            let _ = writer.audio_level(c.talk_level, voiced).write(
                pt,
                now,
                time,
                vec![0xf8u8, 0xff, 0xfe],
            );
        }
    }
}

fn talk_for(net: &mut Net, duration: Duration) {
    let mut frame = 0u64;
    let mut last = net.now;
    net.run(duration, |n| {
        if n.now.duration_since(last) >= Duration::from_millis(20) {
            last = n.now;
            frame += 1;
            n.speak(frame);
        }
    });
}

fn got(net: &mut Net, at: ParticipantId, from: ParticipantId) -> usize {
    net.client(at)
        .received
        .get(&from.to_string())
        .copied()
        .unwrap_or(0)
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
}

#[test]
fn muted_audio_is_not_forwarded_and_leavers_stop() {
    let mut net = Net::new();
    net.join(1, "band");
    net.join(2, "band");
    net.join(3, "band");
    talk_for(&mut net, Duration::from_secs(2));
    assert!(got(&mut net, 2, 1) > 30);

    let now = net.now;
    net.sfu.handle_message(
        1,
        ClientMessage::SetState {
            id: None,
            change: MediaStateChange {
                mic_muted: Some(true),
                ..Default::default()
            },
        },
        now,
    );
    talk_for(&mut net, Duration::from_millis(200));
    let (at2, at3) = (got(&mut net, 2, 1), got(&mut net, 3, 1));
    let from3 = got(&mut net, 2, 3);
    talk_for(&mut net, Duration::from_secs(1));
    assert_eq!(got(&mut net, 2, 1), at2, "muted audio still reached 2");
    assert_eq!(got(&mut net, 3, 1), at3, "muted audio still reached 3");
    assert!(got(&mut net, 2, 3) > from3 + 30, "unmuted 3 keeps flowing");

    // Unmute: flows again, with contiguous sequence numbers.
    let now = net.now;
    net.sfu.handle_message(
        1,
        ClientMessage::SetState {
            id: None,
            change: MediaStateChange {
                mic_muted: Some(false),
                ..Default::default()
            },
        },
        now,
    );
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
    let now = net.now;
    net.sfu.handle_message(
        3,
        ClientMessage::SetState {
            id: None,
            change: MediaStateChange {
                mic_muted: Some(true),
                ..Default::default()
            },
        },
        now,
    );
    talk_for(&mut net, Duration::from_millis(300));
    assert_eq!(net.client(1).speaker, None);
    assert!(net.sfu.gauges().speaker_switches >= 3);
}
