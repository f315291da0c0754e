//! The sans-IO [`Call`] against the SFU core on an in-memory network with a fake clock: no sockets, no
//! server process. Checks negotiation, forwarding both ways, probes and that the call's timers always move
//! forward (a timer stuck in the past would make the shell spin).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parley_client::audio::{SyntheticEncoding, SyntheticVoice};
use parley_client::call::{Call, CallConfig, Joined};
use parley_client::video::SyntheticVp8;
use parley_proto::{ClientMessage, MediaState, ParticipantId, Role, ServerMessage};
use parley_sfu::{Sfu, SfuConfig};

const SERVER: &str = "10.0.0.1:5000";

struct Peer {
    id: ParticipantId,
    addr: SocketAddr,
    call: Call,
}

struct Net {
    now: Instant,
    sfu: Sfu,
    peers: Vec<Peer>,
}

impl Net {
    fn new() -> Net {
        let server: SocketAddr = SERVER.parse().unwrap();
        let now = Instant::now();
        let mut sfu = Sfu::new_at(SfuConfig::new(vec![(server, server)]), now);
        sfu.create_room("band").unwrap();
        Net {
            now,
            sfu,
            peers: Vec::new(),
        }
    }

    fn join(&mut self, id: ParticipantId, role: Role, config: CallConfig) {
        let addr: SocketAddr = format!("10.0.0.{}:4000", 10 + id).parse().unwrap();
        self.sfu.connect(id);
        self.sfu.handle_message(
            id,
            ClientMessage::Join {
                id: Some(2),
                room: "band".into(),
                name: format!("p{id}"),
                state: MediaState::default(),
                role,
            },
            self.now,
        );
        let mut joined = None;
        let signals: Vec<_> = self.sfu.drain_signals().collect();
        for (to, message) in signals {
            if to == id {
                if let ServerMessage::Joined {
                    room,
                    you,
                    name,
                    participants,
                    active_speaker,
                    ..
                } = message
                {
                    joined = Some(Joined {
                        you,
                        room,
                        name,
                        participants,
                        active_speaker,
                    });
                }
            } else {
                self.deliver(to, message);
            }
        }
        let joined = joined.expect("joined");
        let call = Call::new(config, joined, addr, self.now, self.now).expect("call");
        self.peers.push(Peer { id, addr, call });
    }

    fn deliver(&mut self, to: ParticipantId, message: ServerMessage) {
        let now = self.now;
        if let Some(p) = self.peers.iter_mut().find(|p| p.id == to) {
            p.call.handle_server(&message, now);
        }
    }

    fn pump(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            let now = self.now;
            for i in 0..self.peers.len() {
                while let Some(m) = self.peers[i].call.pop_signal() {
                    moved = true;
                    let id = self.peers[i].id;
                    self.sfu.handle_message(id, m, now);
                }
                let out: Vec<_> = self.peers[i].call.drain_transmits().collect();
                for t in out {
                    moved = true;
                    self.sfu
                        .handle_datagram(now, t.source, t.destination, &t.contents);
                }
            }
            let signals: Vec<_> = self.sfu.drain_signals().collect();
            for (to, message) in signals {
                moved = true;
                self.deliver(to, message);
            }
            let transmits: Vec<_> = self.sfu.drain_transmits().collect();
            for t in transmits {
                moved = true;
                if let Some(p) = self.peers.iter_mut().find(|p| p.addr == t.destination) {
                    assert!(p
                        .call
                        .handle_datagram(now, t.source, t.destination, &t.contents));
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.pump();
            self.now += Duration::from_millis(2);
            let now = self.now;
            if self.sfu.poll_timeout().is_some_and(|t| t <= now) {
                self.sfu.handle_timeout(now);
            }
            for p in &mut self.peers {
                // A timer may come due again at once (str0m asks for an immediate poll now and then),
                // but it must move on: a timer stuck in the past would make the shell spin.
                for _ in 0..3 {
                    if p.call.poll_timeout() > now {
                        break;
                    }
                    p.call.handle_timeout(now);
                }
                assert!(
                    p.call.poll_timeout() > now,
                    "participant {}'s next timeout stays in the past",
                    p.id
                );
            }
        }
    }

    fn call(&self, id: ParticipantId) -> &Call {
        &self.peers.iter().find(|p| p.id == id).unwrap().call
    }
}

fn talker(seed: u64, video: bool) -> CallConfig {
    CallConfig {
        role: Role::Member,
        audio: Some(Box::new(SyntheticVoice::new(
            seed,
            1.0,
            SyntheticEncoding::Placeholder(60),
        ))),
        video: video.then(|| SyntheticVp8::new(seed, 15, 300_000)),
        probe: true,
        record_dir: None,
    }
}

#[test]
fn calls_publish_and_receive_through_the_sfu_core() {
    let mut net = Net::new();
    net.join(1, Role::Member, talker(1, true));
    net.join(2, Role::Member, talker(2, false));
    // A receive-only viewer and a member without any source: neither may spin.
    net.join(3, Role::Viewer, CallConfig::default());
    net.join(4, Role::Member, CallConfig::default());
    net.run(Duration::from_secs(3));

    for id in 1..=4 {
        let s = net.call(id).stats();
        assert!(s.connected, "{id} connected:\n{}", s.report());
        assert_eq!(s.own_media_received, 0, "{id} got its own media");
        assert!(net.call(id).failure().is_none());
    }
    let s2 = net.call(2).stats();
    assert!(s2.audio_packets_from(1) > 100, "{}", s2.report());
    let video = s2
        .stream(1, parley_client::stats::MediaKind::Video)
        .expect("video from 1");
    assert!(video.frames > 30 && video.keyframes >= 1, "{video:?}");
    assert_eq!(video.lost, 0);
    let s1 = net.call(1).stats();
    assert!(s1.audio_packets_from(2) > 100, "{}", s1.report());
    assert!(s1
        .stream(2, parley_client::stats::MediaKind::Video)
        .is_none());
    for id in [3, 4] {
        let s = net.call(id).stats();
        assert!(
            s.audio_packets_from(1) > 100 && s.audio_packets_from(2) > 100,
            "{}",
            s.report()
        );
        assert_eq!(s.sent_audio_packets, 0);
    }
    // Nobody receives from the viewer or the silent member.
    assert_eq!(s1.audio_packets_from(3) + s1.audio_packets_from(4), 0);
    // Probes measured the (in-memory, so instant) path.
    let lat = s2.latency.percentiles();
    assert!(lat.count > 100, "{lat:?}");
    assert!(lat.p99.is_some_and(|p| p < 5.0), "{lat:?}");
    assert!(s2.join_time.is_some());
    // The RFC 6464 levels of the talkers reach the server's speaker detection.
    let speaker = net.call(3).active_speaker();
    assert!(
        matches!(speaker, Some(1) | Some(2)),
        "active speaker {speaker:?}"
    );
}
