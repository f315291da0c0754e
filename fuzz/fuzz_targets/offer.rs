//! The SDP path of a client's `offer`, as the server runs it: a media core with the client's peer
//! in a room gets the offer (`MediaCommand::Offer`: parley's own checks of the m-lines, then str0m's
//! parser and negotiation) and must answer or refuse it, never panic; then a second offer, and the
//! client leaves.
//!
//! Input: an SDP offer, optionally followed by a NUL byte, a flags byte and a second offer. Flags:
//! bit 0, the client is a viewer; bit 1, it joins the room with a connected publisher in it (so an
//! answered offer is followed by a server offer, which the second offer then finds waiting).

#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_fuzz::{
    debug, offer_outcome, server_offer, text, with_world, Outcome, CHROMIUM_OFFER, CLIENT,
    EMPTY_ROOM, ROOM,
};

const VIEWER: u8 = 1;
const WITH_PUBLISHER: u8 = 2;

fuzz_target!(init: parley_fuzz::let_str0m_panics_unwind(), |data: &[u8]| {
    let (first, flags, second) = match data.iter().position(|b| *b == 0) {
        Some(at) => (
            &data[..at],
            data.get(at + 1).copied().unwrap_or(0),
            data.get(at + 2..).filter(|s| !s.is_empty()),
        ),
        None => (data, 0, None),
    };
    let first = text(first);
    let second = second.map(text);
    with_world(data, |media| {
        let room = if flags & WITH_PUBLISHER != 0 {
            ROOM
        } else {
            EMPTY_ROOM
        };
        media.add_peer(CLIENT, room, flags & VIEWER != 0);
        let events = media.offer(CLIENT, Some(2), &first);
        let outcome = offer_outcome(&events, CLIENT, Some(2), &first);
        debug("offer", &outcome);
        if outcome == Outcome::Lost {
            return;
        }
        if room == ROOM && matches!(outcome, Outcome::Answered(_)) {
            assert!(
                server_offer(&events, CLIENT).is_some(),
                "the publisher's tracks are offered: {events:?}"
            );
        }
        match (&second, &outcome) {
            (Some(second), _) => {
                let events = media.offer(CLIENT, Some(3), second);
                debug(
                    "second offer",
                    &offer_outcome(&events, CLIENT, Some(3), second),
                );
            }
            // A re-offer of the same.
            (None, Outcome::Answered(_)) => {
                let events = media.offer(CLIENT, Some(3), &first);
                let again = offer_outcome(&events, CLIENT, Some(3), &first);
                debug("the same again", &again);
                if room == ROOM {
                    assert_eq!(
                        again,
                        Outcome::Refused("an offer from the server is waiting for your answer")
                    );
                }
            }
            // "A refused offer changes nothing: the connection goes on as before" (protocol.md).
            (None, _) => {
                let events = media.offer(CLIENT, Some(3), CHROMIUM_OFFER);
                let again = offer_outcome(&events, CLIENT, Some(3), CHROMIUM_OFFER);
                debug("then Chromium's offer", &again);
                assert!(
                    matches!(again, Outcome::Answered(_)),
                    "a good offer after a refused one: {again:?}"
                );
            }
        }
        media.remove_peer(CLIENT);
    });
});
