//! What parley's fuzz targets share: a media core driven the way the server drives it, a room with a
//! connected publisher in it, and the checks of what the core may answer.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use parley_proto::RequestId;
use parley_sfu::{MediaCommand, MediaConfig, MediaCore, MediaEvent, MediaGauges, PeerId};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output, Rtc};

/// A Chromium 156 offer as `web/call.js` makes it: one sendonly audio and one sendonly video
/// transceiver, no candidates. The `answer` target's corpus holds Chromium's answers to the server
/// offer that follows it.
pub const CHROMIUM_OFFER: &str = include_str!("../corpus/offer/chromium-member.sdp");

/// The room with the publisher in it.
pub const ROOM: u64 = 1;
/// An empty room.
pub const EMPTY_ROOM: u64 = 2;
/// The publisher's peer id; the targets' own peer is [`CLIENT`].
pub const PUBLISHER: PeerId = 1;
pub const CLIENT: PeerId = 2;

/// str0m draws mids, ICE credentials and SSRCs from fastrand's thread-local generator. Seeded before
/// each input, an input is negotiated the same way on every run (a crash reproduces), and the server
/// offers the mids that the answers in the corpus name.
const SEED: u64 = 0x7061_726c_6579;

/// The server's media address.
const SERVER: ([u8; 4], u16) = ([192, 0, 2, 1], 40_000);
/// The publisher's.
const PUBLISHER_ADDR: ([u8; 4], u16) = ([192, 0, 2, 7], 50_000);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// One media worker's core on a fake clock, as the server's media thread runs it.
pub struct Media {
    pub core: MediaCore,
    pub now: Instant,
}

impl Media {
    /// A core with nobody in it.
    pub fn new() -> Media {
        fastrand::seed(SEED);
        let now = epoch();
        let server = SocketAddr::from(SERVER);
        Media {
            core: MediaCore::new_at(MediaConfig::new(vec![(server, server)]), now),
            now,
        }
    }

    /// A core with a publisher in [`ROOM`]: a str0m client that offered one audio and one video
    /// track and connected (ICE and DTLS, in memory, on the fake clock), so its tracks are published
    /// and whoever joins the room is offered them.
    pub fn with_publisher() -> Media {
        let mut media = Media::new();
        let addr = SocketAddr::from(PUBLISHER_ADDR);
        let mut client = Rtc::builder().build(media.now);
        client.add_local_candidate(Candidate::host(addr, Protocol::Udp).expect("a host candidate"));
        let mut change = client.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().expect("an offer");
        let offer = offer.to_sdp_string();
        media.add_peer(PUBLISHER, ROOM, false);
        let events = media.offer(PUBLISHER, Some(1), &offer);
        let Outcome::Answered(answer) = offer_outcome(&events, PUBLISHER, Some(1), &offer) else {
            panic!("the publisher's offer is answered: {events:?}");
        };
        let answer = SdpAnswer::from_sdp_string(&answer).expect("the answer parses");
        client
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("the answer fits");

        // str0m reports offered tracks once the connection is up: then they are published.
        let mut rounds = 0;
        while media.core.gauges().tracks < 2 {
            rounds += 1;
            assert!(rounds < 10_000, "the publisher connects");
            let client_timeout = loop {
                match client.poll_output().expect("the publisher runs") {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        media
                            .core
                            .handle_datagram(media.now, t.source, t.destination, &t.contents);
                    }
                    Output::Event(_) => {}
                }
            };
            let sent: Vec<_> = media.core.drain_transmits().collect();
            for t in &sent {
                let contents = t.contents.as_slice().try_into().expect("a datagram");
                client
                    .handle_input(Input::Receive(
                        media.now,
                        Receive {
                            proto: Protocol::Udp,
                            source: t.source,
                            destination: t.destination,
                            contents,
                        },
                    ))
                    .expect("the publisher takes it");
            }
            media.core.recycle(sent);
            check_quiet(&media.events());
            let next = client_timeout.min(media.core.poll_timeout());
            media.now = media
                .now
                .max(next.min(media.now + Duration::from_millis(50)));
            client
                .handle_input(Input::Timeout(media.now))
                .expect("the publisher runs");
            media.core.handle_timeout(media.now);
            check_quiet(&media.events());
        }
        media
    }

    /// A participant joins `room`; its offer follows.
    pub fn add_peer(&mut self, peer: PeerId, room: u64, receive_only: bool) {
        self.command(MediaCommand::AddPeer {
            peer,
            room,
            participant: 100 + peer,
            receive_only,
            mic_muted: false,
            camera_off: false,
            screen_sharing: false,
            server_offer: false,
        });
        let events = self.events();
        assert!(events.is_empty(), "a new peer reports nothing: {events:?}");
    }

    /// A participant joins `room` with `server_offer`: returns the events, the server's first offer
    /// among them.
    pub fn add_peer_offered_first(&mut self, peer: PeerId, room: u64) -> Vec<MediaEvent> {
        self.command(MediaCommand::AddPeer {
            peer,
            room,
            participant: 100 + peer,
            receive_only: false,
            mic_muted: false,
            camera_off: false,
            screen_sharing: false,
            server_offer: true,
        });
        self.events()
    }

    /// The participant leaves.
    pub fn remove_peer(&mut self, peer: PeerId) {
        self.command(MediaCommand::RemovePeer { peer });
        check_quiet(&self.events());
    }

    pub fn offer(
        &mut self,
        peer: PeerId,
        request: Option<RequestId>,
        sdp: &str,
    ) -> Vec<MediaEvent> {
        self.command(MediaCommand::Offer {
            peer,
            request,
            sdp: sdp.to_string(),
        });
        self.events()
    }

    pub fn answer(
        &mut self,
        peer: PeerId,
        request: Option<RequestId>,
        sdp: &str,
    ) -> Vec<MediaEvent> {
        self.command(MediaCommand::Answer {
            peer,
            request,
            sdp: sdp.to_string(),
        });
        self.events()
    }

    fn command(&mut self, command: MediaCommand) {
        self.core.handle_command(command, self.now);
    }

    fn events(&mut self) -> Vec<MediaEvent> {
        self.core.drain_events().collect()
    }
}

impl Default for Media {
    fn default() -> Self {
        Media::new()
    }
}

/// libfuzzer-sys's panic hook aborts on every panic, before unwinding: also on a panic in str0m
/// that parley catches (`Peer` calls str0m in `catch_unwind` where it has panicked before: "str0m
/// panics only on its own bugs; one bad connection must not take the room down with it"). This
/// hook lets a panic raised in str0m's code unwind, so parley's `catch_unwind` sees it, and prints it
/// (once per place: they are str0m bugs to report). One that parley does not catch still aborts the
/// input (libfuzzer-sys catches it around the input and aborts), as does any other panic.
pub fn let_str0m_panics_unwind() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let Some(place) = info
            .location()
            .filter(|l| l.file().contains("/str0m-"))
            .map(|l| format!("{}:{}", l.file(), l.line()))
        else {
            return abort(info);
        };
        STR0M_PANICS.set(STR0M_PANICS.get() + 1);
        static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
        if SEEN.lock().is_ok_and(|mut seen| seen.insert(place.clone())) {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("str0m panicked at {place}: {message} (if parley does not catch it, the input aborts)");
        }
    }));
}

/// A str0m panic unwound during this input (see [`let_str0m_panics_unwind`]).
fn str0m_panicked() -> bool {
    STR0M_PANICS.get() > 0
}

thread_local! {
    static STR0M_PANICS: Cell<u32> = const { Cell::new(0) };
    static WORLD: RefCell<Option<(Media, MediaGauges)>> = const { RefCell::new(None) };
    /// Whether the SDP the server produces is parsed back for this input (see [`with_world`]).
    static PARSE_BACK: Cell<bool> = const { Cell::new(true) };
}

/// Runs the input `data` on the one [`Media::with_publisher`] of this process (connecting a
/// publisher per input would cost more than the input). The fake clock stands still, so the
/// publisher stays connected; `input` must leave the core as it found it (remove its peers), which
/// is checked: a peer that left leaves nothing behind.
///
/// The SDP the server produces is parsed back for one input in four, chosen by a hash of the input
/// (so a failure reproduces): str0m's parser is most of the time an input takes.
pub fn with_world(data: &[u8], input: impl FnOnce(&mut Media)) {
    PARSE_BACK.set(fnv1a(data).is_multiple_of(4));
    STR0M_PANICS.set(0);
    WORLD.with(|world| {
        let mut world = world.borrow_mut();
        let (media, gauges) = world.get_or_insert_with(|| {
            let media = Media::with_publisher();
            let gauges = media.core.gauges();
            (media, gauges)
        });
        fastrand::seed(SEED);
        input(media);
        let after = media.core.gauges();
        assert_eq!(
            (after.rooms, after.peers, after.tracks),
            (gauges.rooms, gauges.peers, gauges.tracks),
            "the core is back as it was"
        );
    });
}

/// With `PARLEY_FUZZ_DEBUG` set, prints what the server made of an input (to see what a corpus file
/// or a crash does: run the target on the file).
pub fn debug(what: &str, outcome: &Outcome) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("PARLEY_FUZZ_DEBUG").is_some()) {
        let outcome = match outcome {
            Outcome::Answered(sdp) => format!("answered ({} bytes)", sdp.len()),
            Outcome::Taken => "taken".to_string(),
            Outcome::Refused(reason) => format!("refused: {reason}"),
            Outcome::Lost => "the peer was lost".to_string(),
        };
        eprintln!("{what}: {outcome}");
    }
}

/// FNV-1a: a cheap, stable hash of an input.
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the server made of a client's offer or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The answer to an offer.
    Answered(String),
    /// An answer was taken (nothing is sent back).
    Taken,
    Refused(&'static str),
    /// The peer was lost with it (`PeerLost`): refused with `that offer broke the media connection`,
    /// or a str0m panic that parley caught closed the connection.
    Lost,
}

/// The events of one `offer` from `peer`: exactly one `Answer` or `SdpRefused` for it, with its
/// request id, and besides only server offers; then `PeerLost` for it when the connection broke.
/// Every SDP the server produces must parse, and a refusal is one short line.
pub fn offer_outcome(
    events: &[MediaEvent],
    peer: PeerId,
    request: Option<RequestId>,
    offer: &str,
) -> Outcome {
    let mut outcome = None;
    if let Some(lost) = lost(events, peer) {
        let (before, after) = events.split_at(lost);
        assert!(after.len() == 1, "nothing after PeerLost: {events:?}");
        let outcome = offer_outcome(before, peer, request, offer);
        assert!(
            outcome == Outcome::Refused(BROKE) || str0m_panicked(),
            "lost after {outcome:?} with no str0m panic: {events:?}"
        );
        return Outcome::Lost;
    }
    for event in events {
        match event {
            MediaEvent::Answer {
                peer: p,
                request: r,
                sdp,
            } if *p == peer && *r == request => {
                assert!(outcome.is_none(), "two outcomes for one offer: {events:?}");
                check_answer_sdp(sdp, offer);
                outcome = Some(Outcome::Answered(sdp.clone()));
            }
            MediaEvent::SdpRefused {
                peer: p,
                request: r,
                reason,
            } if *p == peer && *r == request => {
                assert!(outcome.is_none(), "two outcomes for one offer: {events:?}");
                check_reason(reason);
                outcome = Some(Outcome::Refused(reason));
            }
            MediaEvent::Offer { sdp, .. } => check_offer_sdp(sdp),
            other => panic!("an offer caused {other:?}: {events:?}"),
        }
    }
    outcome.unwrap_or_else(|| panic!("an offer got neither an answer nor a refusal: {events:?}"))
}

/// The events of one `answer` from `peer`: nothing or server offers when it was taken; one
/// `SdpRefused` with its request id (and maybe a new server offer) when it was not; then `PeerLost`
/// for it when a str0m panic (caught) closed the connection.
pub fn answer_outcome(events: &[MediaEvent], peer: PeerId, request: Option<RequestId>) -> Outcome {
    if let Some(lost) = lost(events, peer) {
        let (before, after) = events.split_at(lost);
        assert!(after.len() == 1, "nothing after PeerLost: {events:?}");
        let outcome = answer_outcome(before, peer, request);
        assert!(
            str0m_panicked(),
            "lost after {outcome:?} with no str0m panic: {events:?}"
        );
        return Outcome::Lost;
    }
    let mut outcome = Outcome::Taken;
    for event in events {
        match event {
            MediaEvent::SdpRefused {
                peer: p,
                request: r,
                reason,
            } if *p == peer && *r == request => {
                assert_eq!(outcome, Outcome::Taken, "two refusals: {events:?}");
                check_reason(reason);
                outcome = Outcome::Refused(reason);
            }
            MediaEvent::Offer { sdp, .. } => check_offer_sdp(sdp),
            other => panic!("an answer caused {other:?}: {events:?}"),
        }
    }
    outcome
}

const BROKE: &str = "that offer broke the media connection";

/// Where `PeerLost` for `peer` is in `events`.
fn lost(events: &[MediaEvent], peer: PeerId) -> Option<usize> {
    events
        .iter()
        .position(|e| matches!(e, MediaEvent::PeerLost { peer: p } if *p == peer))
}

/// A server offer to `peer` is among `events`.
pub fn server_offer(events: &[MediaEvent], peer: PeerId) -> Option<&str> {
    events.iter().find_map(|e| match e {
        MediaEvent::Offer { peer: p, sdp } if *p == peer => Some(sdp.as_str()),
        _ => None,
    })
}

/// Events with no media flowing: server offers only (and no connection is lost).
pub fn check_quiet(events: &[MediaEvent]) {
    for event in events {
        match event {
            MediaEvent::Offer { sdp, .. } => check_offer_sdp(sdp),
            other => panic!("unexpected with no media flowing: {other:?}: {events:?}"),
        }
    }
}

fn check_reason(reason: &str) {
    assert!(
        !reason.is_empty() && reason.len() < 200 && !reason.contains('\n'),
        "a refusal is one short line: {reason:?}"
    );
}

/// The server's answer parses (as the client's str0m or browser will read it), and is not much
/// larger than the offer it answers: one message cannot make the server send a huge one.
fn check_answer_sdp(sdp: &str, offer: &str) {
    if PARSE_BACK.get() {
        if let Err(e) = SdpAnswer::from_sdp_string(sdp) {
            panic!("the server's answer does not parse ({e}):\n{sdp}");
        }
    }
    assert!(
        sdp.len() <= 16 * 1024 + 2 * offer.len(),
        "a {} byte answer to a {} byte offer",
        sdp.len(),
        offer.len()
    );
}

fn check_offer_sdp(sdp: &str) {
    if !PARSE_BACK.get() {
        return;
    }
    if let Err(e) = SdpOffer::from_sdp_string(sdp) {
        panic!("the server's offer does not parse ({e}):\n{sdp}");
    }
}

/// The fuzz input as the server would have it: WebSocket text frames are UTF-8 (tungstenite refuses
/// other text with close code 1007), so invalid bytes are replaced.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
