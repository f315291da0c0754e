//! An in-memory network for the SFU core: real str0m peers (full ICE, DTLS-SRTP) exchanging datagrams
//! with an `Sfu` through function calls, on a fake clock. Used by tests and by the forwarding benchmark.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parley_proto::{ClientMessage, MediaState, ParticipantId, ServerMessage};
use parley_sfu::{Sfu, SfuConfig};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SERVER: &str = "10.0.0.1:5000";

/// A browser stand-in: a full-ICE str0m peer in frame mode that publishes one audio track.
pub struct Client {
    pub id: ParticipantId,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub audio_mid: Option<Mid>,
    pub pending: Option<SdpPendingOffer>,
    /// Audio frames received, by stream id (the publisher's participant id).
    pub received: HashMap<String, usize>,
    /// The latest RTCP sender report seen with each stream's media, by stream id.
    pub sender_info: HashMap<String, str0m::rtp::rtcp::SenderInfo>,
    pub timeout: Instant,
    /// The last `active_speaker` this client was told.
    pub speaker: Option<ParticipantId>,
    /// Loudest meter level seen per participant in `levels` messages.
    pub meters: HashMap<ParticipantId, u8>,
    /// Level (-dBov) this client's audio carries in its RTP header extension.
    pub talk_level: i8,
}

pub struct Net {
    pub now: Instant,
    pub sfu: Sfu,
    pub clients: Vec<Client>,
    /// Real time spent inside the SFU core (for the benchmark).
    pub sfu_busy: Duration,
}

impl Net {
    pub fn new() -> Net {
        let server: SocketAddr = SERVER.parse().unwrap();
        let mut config = SfuConfig::new(vec![(server, server)]);
        config.max_participants = 64;
        let mut sfu = Sfu::new(config);
        sfu.create_room("band").unwrap();
        sfu.create_room("other").unwrap();
        Net {
            now: Instant::now(),
            sfu,
            clients: Vec::new(),
            sfu_busy: Duration::ZERO,
        }
    }

    /// Connects a client, joins `room` and sends its offer with one send-only audio track.
    pub fn join(&mut self, id: ParticipantId, room: &str) -> usize {
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
            sender_info: HashMap::new(),
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

    pub fn client(&mut self, id: ParticipantId) -> &mut Client {
        self.clients.iter_mut().find(|c| c.id == id).unwrap()
    }

    /// Delivers signalling, datagrams and timers until `duration` of fake time has passed.
    pub fn run(&mut self, duration: Duration, mut each_tick: impl FnMut(&mut Net)) {
        let end = self.now + duration;
        while self.now < end {
            each_tick(self);
            self.pump();
            self.now += Duration::from_millis(5);
            let busy = Instant::now();
            self.sfu.handle_timeout(self.now);
            self.sfu_busy += busy.elapsed();
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
            let busy = Instant::now();
            let transmits: Vec<_> = self.sfu.drain_transmits().collect();
            self.sfu_busy += busy.elapsed();
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
                            if let Some(info) = d.last_sender_info {
                                c.sender_info.insert(stream.clone(), info);
                            }
                            *c.received.entry(stream).or_default() += 1;
                        }
                        Output::Event(_) => {}
                    }
                }
            }
            for (source, destination, data) in outgoing {
                moved = true;
                let busy = Instant::now();
                self.sfu.handle_datagram(now, source, destination, &data);
                self.sfu_busy += busy.elapsed();
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
    pub fn speak(&mut self, frame: u64) {
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

pub fn talk_for(net: &mut Net, duration: Duration) {
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

pub fn got(net: &mut Net, at: ParticipantId, from: ParticipantId) -> usize {
    net.client(at)
        .received
        .get(&from.to_string())
        .copied()
        .unwrap_or(0)
}
