//! The signalling decoder: one WebSocket text frame as the server reads it (`ClientMessage::parse`),
//! the checks the control plane then runs on what it got, and the error the client gets instead.
//! Also the other direction (`ServerMessage` as the Rust client reads it).
//!
//! Never panicking is the first property; the asserts below are the others.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_fuzz::fnv1a;
use parley_proto::{
    validate_chat_text, validate_display_name, validate_room_name, Access, ClientMessage,
    ErrorCode, MediaState, ServerMessage, MAX_CHAT_CHARS, MAX_DISPLAY_NAME_CHARS,
    MAX_MESSAGE_BYTES, MAX_ROOM_NAME_CHARS,
};

fuzz_target!(|data: &[u8]| {
    let text = parley_fuzz::text(data);
    let parsed = check_client_message(&text);
    // One input in 64 (by a hash of it, so a failure reproduces): the same message padded past the
    // size limit with spaces. Not more, as each costs a parse of 768 KiB.
    if fnv1a(data).is_multiple_of(64) && text.len() <= MAX_MESSAGE_BYTES {
        let mut big = text.clone().into_owned();
        big.extend(std::iter::repeat_n(' ', MAX_MESSAGE_BYTES + 1 - text.len()));
        check_too_large(&big, parsed.as_ref());
    }
    // The validators take any string, not only what a message carried.
    check_room_name(&text);
    check_display_name(&text);
    check_chat_text(&text, MAX_CHAT_CHARS);
    check_chat_text(&text, data.len() % 7);
    if let Some(access) = Access::parse(&text) {
        assert_eq!(access.as_str(), text);
    }
    check_server_message(&text);
});

/// Parses as the server does; returns the message when it parsed.
fn check_client_message(text: &str) -> Option<ClientMessage> {
    match ClientMessage::parse(text) {
        Ok(message) => {
            check_fields(&message);
            // The Rust client writes these with serde_json: the server reads back the same message,
            // and finds the same request id in it.
            let json = serde_json::to_string(&message).expect("a client message serializes");
            assert_eq!(
                ClientMessage::parse(&json).as_ref(),
                Ok(&message),
                "round trip through {json}"
            );
            let value: serde_json::Value = serde_json::from_str(&json).expect("it is JSON");
            assert_eq!(
                value.get("id").and_then(serde_json::Value::as_u64),
                message.request_id(),
                "{json}"
            );
            Some(message)
        }
        Err(reply) => {
            let code = check_error_reply(&reply, text);
            assert_eq!(
                code == ErrorCode::MessageTooLarge,
                text.len() > MAX_MESSAGE_BYTES,
                "{reply:?}"
            );
            assert!(
                matches!(code, ErrorCode::BadMessage | ErrorCode::MessageTooLarge),
                "{reply:?}"
            );
            None
        }
    }
}

/// The reply to a message that did not parse: an `error` that serializes (not the fallback), names
/// its code as `ErrorCode::as_str` does, reads back the same, and is short whatever the message
/// (the parser's detail is cut at 400 characters, at most 6 bytes each in JSON): a bad message
/// cannot make the server send back a large one.
fn check_error_reply(reply: &ServerMessage, text: &str) -> ErrorCode {
    let ServerMessage::Error { code, message, .. } = reply else {
        panic!("a parse failure answers with an error: {reply:?}");
    };
    assert!(!message.is_empty());
    let json = reply.to_json();
    assert!(
        json.contains(&format!(r#""code":"{}""#, code.as_str())),
        "{json}"
    );
    let back: ServerMessage = serde_json::from_str(&json).expect("the error reply reads back");
    assert_eq!(&back, reply);
    assert!(
        json.len() <= 4096,
        "a {} byte reply to a {} byte message",
        json.len(),
        text.len()
    );
    *code
}

/// Over the limit: `message_too_large`, with the request id when the message has one.
fn check_too_large(big: &str, parsed: Option<&ClientMessage>) {
    let reply = ClientMessage::parse(big).expect_err("too large");
    assert_eq!(check_error_reply(&reply, big), ErrorCode::MessageTooLarge);
    let ServerMessage::Error { id, .. } = reply else {
        unreachable!()
    };
    if let Some(message) = parsed {
        assert_eq!(
            id,
            message.request_id(),
            "the too-large error echoes the id"
        );
    }
}

/// What the control plane checks in a message it got.
fn check_fields(message: &ClientMessage) {
    match message {
        ClientMessage::CreateRoom { room, .. } => check_room_name(room),
        ClientMessage::Join {
            room, name, state, ..
        } => {
            check_room_name(room);
            check_display_name(name);
            let mut s = *state;
            s.apply(Default::default());
            assert_eq!(&s, state, "an empty change changes nothing");
        }
        ClientMessage::ChatSend { text, .. } => check_chat_text(text, MAX_CHAT_CHARS),
        ClientMessage::DeleteRoom { room, .. } => check_room_name(room),
        ClientMessage::ListRooms {
            after: Some(after), ..
        } => check_room_name(after),
        ClientMessage::SetState { change, .. } => {
            for before in [
                MediaState::default(),
                MediaState {
                    mic_muted: true,
                    deafened: true,
                    camera_off: true,
                    screen_sharing: true,
                },
            ] {
                let mut after = before;
                after.apply(*change);
                assert_eq!(
                    after.mic_muted,
                    change.mic_muted.unwrap_or(before.mic_muted)
                );
                assert_eq!(after.deafened, change.deafened.unwrap_or(before.deafened));
                assert_eq!(
                    after.camera_off,
                    change.camera_off.unwrap_or(before.camera_off)
                );
            }
        }
        _ => {}
    }
}

fn is_room_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.')
}

/// The text-direction controls of docs/protocol.md.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Room names: what is accepted is the name itself, 1–40 allowed characters with no space at either
/// end and something that is not a space; and a plain name of that kind is never refused.
fn check_room_name(name: &str) {
    let count = name.chars().count();
    match validate_room_name(name) {
        Ok(n) => {
            assert_eq!(n, name);
            assert!((1..=MAX_ROOM_NAME_CHARS).contains(&count), "{name:?}");
            assert_eq!(n.trim(), n, "{name:?}");
            assert!(n.chars().all(is_room_char), "{name:?}");
            assert!(n.chars().any(|c| !c.is_whitespace()), "{name:?}");
            assert!(!n.chars().any(is_bidi_control), "{name:?}");
        }
        Err(e) => {
            assert!(!e.is_empty());
            let plain = (1..=MAX_ROOM_NAME_CHARS).contains(&count)
                && name.trim() == name
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
                && name.chars().any(|c| c.is_ascii_alphanumeric());
            assert!(!plain, "{name:?} refused: {e}");
        }
    }
}

/// Display names: the trimmed name, 1–32 characters, no control or direction characters, something
/// that is not a space; and a plain name is never refused.
fn check_display_name(name: &str) {
    let trimmed = name.trim();
    let count = trimmed.chars().count();
    match validate_display_name(name) {
        Ok(n) => {
            assert_eq!(n, trimmed);
            assert!((1..=MAX_DISPLAY_NAME_CHARS).contains(&count), "{name:?}");
            assert!(!n.chars().any(char::is_control), "{name:?}");
            assert!(!n.chars().any(is_bidi_control), "{name:?}");
            assert!(n.chars().any(|c| !c.is_whitespace()), "{name:?}");
        }
        Err(e) => {
            assert!(!e.is_empty());
            let plain = (1..=MAX_DISPLAY_NAME_CHARS).contains(&count)
                && trimmed
                    .chars()
                    .all(|c| c.is_ascii_graphic() || c == ' ' || c.is_alphabetic())
                && !trimmed
                    .chars()
                    .any(|c| c.is_control() || is_bidi_control(c))
                && trimmed.chars().any(|c| c.is_ascii_alphanumeric());
            assert!(!plain, "{name:?} refused: {e}");
        }
    }
}

/// Chat: kept as written when accepted; empty means blank, too long means over the limit.
fn check_chat_text(text: &str, max: usize) {
    let blank = text.trim().is_empty();
    let count = text.chars().count();
    match validate_chat_text(text, max) {
        Ok(t) => {
            assert_eq!(t, text);
            assert!(!blank && count <= max);
        }
        Err((ErrorCode::EmptyMessage, _)) => assert!(blank),
        Err((ErrorCode::MessageTooLong, m)) => {
            assert!(!blank && count > max);
            assert!(m.contains(&count.to_string()), "{m}");
        }
        Err(other) => panic!("{other:?}"),
    }
}

/// The Rust client reads what the server sends: whatever it reads, it writes back the same.
fn check_server_message(text: &str) {
    if let Ok(message) = serde_json::from_str::<ServerMessage>(text) {
        let json = message.to_json();
        let back: ServerMessage = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, message, "round trip through {json}");
    }
}
