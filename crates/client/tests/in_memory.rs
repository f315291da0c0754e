//! The sans-IO [`Call`] against the server's control plane and media worker on the in-memory network with a fake clock: no sockets, no
//! server process. Checks negotiation, forwarding both ways, probes and that the call's timers always move
//! forward (a timer stuck in the past would make the shell spin).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parley_client::audio::{SyntheticEncoding, SyntheticVoice};
use parley_client::call::{Call, CallConfig, Joined};
use parley_client::video::SyntheticVp8;
use parley_proto::{ClientMessage, ParticipantId, Role, ServerMessage};
use parley_testkit::net::{client_addr, Datagram, Endpoint, Net};

/// A [`Call`] as an endpoint of the in-memory network: it exists once the server says `joined`.
struct CallEndpoint {
    id: ParticipantId,
    addr: SocketAddr,
    config: Option<CallConfig>,
    call: Option<Call>,
}

impl CallEndpoint {
    fn new(id: ParticipantId, config: CallConfig) -> CallEndpoint {
        CallEndpoint {
            id,
            addr: client_addr(id),
            config: Some(config),
            call: None,
        }
    }

    fn signals(&mut self) -> Vec<ClientMessage> {
        let mut out = Vec::new();
        if let Some(call) = &mut self.call {
            while let Some(m) = call.pop_signal() {
                out.push(m);
            }
        }
        out
    }
}

impl Endpoint for CallEndpoint {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn on_message(&mut self, message: &ServerMessage, now: Instant) -> Vec<ClientMessage> {
        match (&mut self.call, message) {
            (
                None,
                ServerMessage::Joined {
                    room,
                    you,
                    name,
                    participants,
                    active_speaker,
                    ..
                },
            ) => {
                let joined = Joined {
                    you: *you,
                    room: room.clone(),
                    name: name.clone(),
                    participants: participants.clone(),
                    active_speaker: *active_speaker,
                };
                let config = self.config.take().expect("joined once");
                self.call = Some(Call::new(config, joined, self.addr, now, now).expect("call"));
            }
            (Some(call), message) => call.handle_server(message, now),
            (None, _) => {}
        }
        self.signals()
    }

    fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let call = self.call.as_mut().expect("datagrams only once in a call");
        assert!(call.handle_datagram(now, source, destination, data));
    }

    fn poll(&mut self, _now: Instant) -> Vec<Datagram> {
        let Some(call) = &mut self.call else {
            return Vec::new();
        };
        call.drain_transmits()
            .map(|t| (t.source, t.destination, t.contents.to_vec()))
            .collect()
    }

    fn next_timeout(&self) -> Instant {
        self.call.as_ref().map_or_else(
            || Instant::now() + Duration::from_secs(3600),
            Call::poll_timeout,
        )
    }

    fn on_timeout(&mut self, now: Instant) {
        let Some(call) = &mut self.call else { return };
        // A timer may come due again at once (str0m asks for an immediate poll now and then), but
        // it must move on: a timer stuck in the past would make the shell spin.
        for _ in 0..3 {
            if call.poll_timeout() > now {
                break;
            }
            call.handle_timeout(now);
        }
        assert!(
            call.poll_timeout() > now,
            "participant {}'s next timeout stays in the past",
            self.id
        );
    }

    fn take_messages(&mut self) -> Vec<ClientMessage> {
        self.signals()
    }
}

fn join(net: &mut Net<CallEndpoint>, id: ParticipantId, role: Role, config: CallConfig) {
    net.join_with(id, "band", role, CallEndpoint::new(id, config));
}

fn call(net: &Net<CallEndpoint>, id: ParticipantId) -> &Call {
    net.endpoint(id).call.as_ref().expect("in a call")
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
fn calls_publish_and_receive_through_the_server_planes() {
    let mut net: Net<CallEndpoint> = Net::with_workers(1);
    join(&mut net, 1, Role::Member, talker(1, true));
    join(&mut net, 2, Role::Member, talker(2, false));
    // A receive-only viewer and a member without any source: neither may spin.
    join(&mut net, 3, Role::Viewer, CallConfig::default());
    join(&mut net, 4, Role::Member, CallConfig::default());
    net.run(Duration::from_secs(3), |_| {});

    for id in 1..=4 {
        let s = call(&net, id).stats();
        assert!(s.connected, "{id} connected:\n{}", s.report());
        assert_eq!(s.own_media_received, 0, "{id} got its own media");
        assert!(call(&net, id).failure().is_none());
    }
    let s2 = call(&net, 2).stats();
    assert!(s2.audio_packets_from(1) > 100, "{}", s2.report());
    let video = s2
        .stream(1, parley_client::stats::MediaKind::Video)
        .expect("video from 1");
    assert!(video.frames > 30 && video.keyframes >= 1, "{video:?}");
    assert_eq!(video.lost, 0);
    let s1 = call(&net, 1).stats();
    assert!(s1.audio_packets_from(2) > 100, "{}", s1.report());
    assert!(s1
        .stream(2, parley_client::stats::MediaKind::Video)
        .is_none());
    for id in [3, 4] {
        let s = call(&net, id).stats();
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
    let speaker = call(&net, 3).active_speaker();
    assert!(
        matches!(speaker, Some(1) | Some(2)),
        "active speaker {speaker:?}"
    );
}
