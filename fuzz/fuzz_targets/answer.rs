//! The SDP path of a client's `answer` to a server offer: a connected publisher and the client are
//! in a room, and either the client's (Chromium's) offer was answered and the server offered it the
//! publisher's audio and video, or (the input's first byte odd) the client joined with
//! `server_offer` and the server's first offer carries the client's own three m-lines with the
//! publisher's tracks. The input is the client's answer (`MediaCommand::Answer`: str0m's parser and
//! `accept_answer`, parley's bookkeeping of the tracks it opens, the client's own included).
//!
//! Besides never panicking, what docs/protocol.md promises: a taken answer leaves nothing to answer;
//! `that answer is not valid SDP` keeps the server's offer waiting; `that answer does not fit the
//! server's offer` is followed by a new server offer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_fuzz::{
    answer_outcome, debug, offer_outcome, server_offer, text, with_world, Outcome, CHROMIUM_OFFER,
    CLIENT, ROOM,
};

fuzz_target!(init: parley_fuzz::let_str0m_panics_unwind(), |data: &[u8]| {
    let answer = text(data);
    let offered_first = data.first().is_some_and(|b| b & 1 == 1);
    with_world(data, |media| {
        let events = if offered_first {
            media.add_peer_offered_first(CLIENT, ROOM)
        } else {
            media.add_peer(CLIENT, ROOM, false);
            let events = media.offer(CLIENT, Some(2), CHROMIUM_OFFER);
            assert!(matches!(
                offer_outcome(&events, CLIENT, Some(2), CHROMIUM_OFFER),
                Outcome::Answered(_)
            ));
            events
        };
        assert!(
            server_offer(&events, CLIENT).is_some(),
            "the publisher's tracks are offered: {events:?}"
        );

        let events = media.answer(CLIENT, Some(3), &answer);
        let outcome = answer_outcome(&events, CLIENT, Some(3));
        debug("answer", &outcome);
        match outcome {
            Outcome::Taken => {
                assert!(server_offer(&events, CLIENT).is_none(), "{events:?}");
                let events = media.answer(CLIENT, Some(4), &answer);
                assert_eq!(
                    answer_outcome(&events, CLIENT, Some(4)),
                    Outcome::Refused("there is no server offer to answer")
                );
            }
            Outcome::Refused("that answer is not valid SDP") => {
                assert!(server_offer(&events, CLIENT).is_none(), "{events:?}");
                let events = media.offer(CLIENT, Some(4), CHROMIUM_OFFER);
                assert_eq!(
                    offer_outcome(&events, CLIENT, Some(4), CHROMIUM_OFFER),
                    Outcome::Refused("an offer from the server is waiting for your answer")
                );
            }
            Outcome::Refused("that answer does not fit the server's offer") => {
                assert!(
                    server_offer(&events, CLIENT).is_some(),
                    "offered again: {events:?}"
                );
            }
            Outcome::Lost => {}
            other => panic!("{other:?}"),
        }
        media.remove_peer(CLIENT);
    });
});
