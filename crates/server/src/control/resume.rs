//! Coming back after a dropped connection. Each `joined` carries a resume token; when a member's
//! signalling connection drops, the server keeps their place in the room (id, name, roles, owner
//! key, studio takes) for [`HOLD_MS`], shown to the others as `reconnecting`, and drops only their
//! media connection (it died with the network). A `join` with the token in that time comes back as
//! the same participant: the new connection is rebound to their id ([`Output::Rebind`]), they get a
//! new media peer and a fresh `joined`, and the others see one person reconnecting, not a leave and
//! a join. A token also takes over a participant whose old connection the server has not yet seen
//! drop (a phone that changed networks): that connection is closed.

use parley_proto::{MediaState, MediaStateChange, RequestId, Role, ServerMessage};

use super::{Control, Output, SessionId};
use crate::secret;

/// How long a participant whose connection dropped keeps their place.
pub const HOLD_MS: i64 = 15_000;

/// A participant kept in their room without a connection.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    /// When they leave unless they come back (Unix ms).
    pub until_ms: i64,
}

impl Control {
    /// A new resume token for `session` (replacing any it had); `None` if no randomness was to
    /// be had (the client then simply joins anew after a drop).
    pub(super) fn new_resume_token(&mut self, session: SessionId) -> Option<String> {
        self.forget_resume(session);
        let token = secret::new_token().ok()?;
        let hash = secret::hash_token(&token);
        self.resume_tokens.insert(hash, session);
        self.resume_of.insert(session, hash);
        Some(token)
    }

    /// `session` left for good: its token is no good and nothing is held for it.
    pub(super) fn forget_resume(&mut self, session: SessionId) {
        if let Some(hash) = self.resume_of.remove(&session) {
            self.resume_tokens.remove(&hash);
        }
        self.held.remove(&session);
    }

    /// `session`'s connection dropped: keeps its place if it is in a room with a resume token
    /// (its media peer goes). False: nothing held (it leaves as before).
    pub(super) fn hold(&mut self, session: SessionId) -> bool {
        self.hold_place(session, true)
    }

    /// `session`'s media connection was lost (its worker dropped it: ICE or DTLS gone) while its
    /// signalling connection may still be up. A client that joined with `server_offer` keeps its
    /// place as after a drop: it comes back with `join` and `resume` on a new connection, which takes
    /// the old one over. False: nothing held (it leaves, as before).
    pub(super) fn hold_after_media_loss(&mut self, session: SessionId) -> bool {
        let comes_back = self.seats.get(&session).is_some_and(|s| s.server_offer);
        comes_back && self.hold_place(session, false)
    }

    /// Keeps `session`'s place (its media peer goes; `close_media`: the worker is told to drop it).
    fn hold_place(&mut self, session: SessionId, close_media: bool) -> bool {
        if !self.resume_of.contains_key(&session) || self.rooms.room_of(session).is_none() {
            return false;
        }
        self.remove_media_peer(session, close_media);
        self.held.insert(
            session,
            Held {
                until_ms: self.unix_ms.saturating_add(HOLD_MS),
            },
        );
        tracing::info!(
            participant = session,
            "connection or media lost: place kept"
        );
        if let Some(updated) = self.rooms.set_reconnecting(session, true) {
            self.tell_others(session, updated);
        }
        true
    }

    fn tell_others(&mut self, session: SessionId, participant: parley_proto::ParticipantInfo) {
        let room = self.rooms.room_of(session).map(|r| r.name().to_string());
        let others = room.map_or_else(Vec::new, |r| self.members_except(&r, session));
        self.outputs.push(Output::Send {
            sessions: others,
            message: ServerMessage::ParticipantUpdated { participant },
        });
    }

    /// Those held too long leave their rooms.
    pub(super) fn expire_held(&mut self) {
        let now = self.unix_ms;
        let gone: Vec<SessionId> = self
            .held
            .iter()
            .filter(|(_, h)| h.until_ms <= now)
            .map(|(s, _)| *s)
            .collect();
        for session in gone {
            tracing::info!(participant = session, "did not come back: leaves");
            // Its media peer went when it was held. A connection still open (its media was lost)
            // hears that it is out.
            if let Some(room) = self.leave_room(session, false) {
                if self.sessions.contains(&session) {
                    self.send(session, ServerMessage::Left { id: None, room });
                }
            }
        }
    }

    /// A `join` with `resume`: comes back as the participant the token names, if it is in `room`
    /// (held, or still connected elsewhere). False: the token names nobody there (expired, left,
    /// another room): the join goes on as a new one.
    pub(super) fn resume_join(
        &mut self,
        socket: SessionId,
        id: Option<RequestId>,
        room: &str,
        token: &str,
        state: MediaState,
        server_offer: bool,
    ) -> bool {
        let Some(&participant) = self.resume_tokens.get(&secret::hash_token(token)) else {
            return false;
        };
        let in_room = self
            .rooms
            .room_of(participant)
            .is_some_and(|r| r.name() == room);
        // The connection asking is already a participant somewhere: that is `already_in_room`.
        if !in_room || participant == socket || self.rooms.room_of(socket).is_some() {
            return false;
        }
        if self.sessions.contains(&participant) {
            // Its old connection is still open (not yet seen to drop, or up with its media lost and
            // held already): it is replaced.
            self.sessions.remove(&participant);
            if !self.held.contains_key(&participant) {
                self.hold(participant);
            }
            self.chat_buckets.remove(&participant);
            let addr = self.session_info.remove(&participant).and_then(|i| i.addr);
            self.pending_joins.remove(&participant);
            self.address_closed(addr);
        }
        self.held.remove(&participant);
        // The connection becomes the participant's: the shell delivers to it from now on.
        self.outputs.push(Output::Rebind {
            socket,
            participant,
        });
        self.sessions.remove(&socket);
        self.sessions.insert(participant);
        if let Some(info) = self.session_info.remove(&socket) {
            self.session_info.insert(participant, info);
        }
        self.chat_buckets.remove(&socket);
        self.pending_joins.remove(&socket);

        let Some(me) = self
            .rooms
            .room_of(participant)
            .and_then(|r| r.member(participant))
        else {
            return true;
        };
        let me = me.clone();
        // They come back as they are now (a listener stays silent).
        let listener = me.studio_role == Some(parley_proto::StudioRole::Listener);
        let state = MediaState {
            mic_muted: state.mic_muted || listener,
            camera_off: state.camera_off || listener,
            deafened: state.deafened,
            screen_sharing: state.screen_sharing && !listener,
        };
        let change = MediaStateChange {
            mic_muted: Some(state.mic_muted),
            deafened: Some(state.deafened),
            camera_off: Some(state.camera_off),
            screen_sharing: Some(state.screen_sharing),
        };
        let _ = self.rooms.set_state(participant, change);
        let me = self
            .rooms
            .set_reconnecting(participant, false)
            .unwrap_or(me);
        let worker = self.add_media_peer(
            participant,
            room,
            me.role == Role::Viewer,
            me.state,
            server_offer,
        );
        tracing::info!(room, participant, worker, "came back");
        let (others, settings) = match self.rooms.room_of(participant) {
            Some(r) => (
                r.members()
                    .iter()
                    .filter(|m| m.id != participant)
                    .cloned()
                    .collect::<Vec<_>>(),
                r.settings(),
            ),
            None => (Vec::new(), Default::default()),
        };
        let owner = me.owner;
        let studio_role = me.studio_role;
        let name = me.name.clone();
        self.tell_others(participant, me);
        let resume_token = self.new_resume_token(participant);
        let active_speaker = self.speakers.get(room).copied();
        let recording = self.recording_now(room).map(Box::new);
        self.send(
            participant,
            ServerMessage::Joined {
                id,
                room: room.to_string(),
                you: participant,
                name,
                participants: others,
                active_speaker,
                owner,
                settings,
                recording,
                studio_role,
                resume_token,
                resumed: true,
            },
        );
        if studio_role.is_some() && self.studio.contains_key(room) {
            self.tell_studio(room, Some(participant));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use parley_proto::{
        ClientMessage, ErrorCode, MediaState, ParticipantInfo, Role, ServerMessage,
    };
    use parley_sfu::{MediaCommand, MediaEvent};

    use super::super::{Control, ControlConfig, Output, SessionId};
    use super::HOLD_MS;

    const T0: i64 = 1_800_000_000_000;

    fn control() -> Control {
        let mut c = Control::new(ControlConfig::new(1));
        for room in ["a", "b"] {
            c.create_room(room).unwrap();
        }
        c.set_unix_ms(T0);
        c
    }

    fn join(
        c: &mut Control,
        session: SessionId,
        room: &str,
        name: &str,
        resume: Option<String>,
        state: MediaState,
    ) -> Vec<Output> {
        join_with(c, session, room, name, resume, state, false)
    }

    fn join_with(
        c: &mut Control,
        session: SessionId,
        room: &str,
        name: &str,
        resume: Option<String>,
        state: MediaState,
        server_offer: bool,
    ) -> Vec<Output> {
        c.connect(session);
        c.drain_outputs().for_each(drop);
        c.handle_message(
            session,
            ClientMessage::Join {
                id: Some(1),
                room: room.into(),
                name: name.into(),
                state,
                role: Role::Member,
                credentials: Default::default(),
                resume,
                server_offer,
            },
            Instant::now(),
        );
        c.drain_outputs().collect()
    }

    fn sent_to(outputs: &[Output], session: SessionId) -> Vec<ServerMessage> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send { sessions, message } if sessions.contains(&session) => {
                    Some(message.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// The `joined` among `outputs`: (you, name, resume token, resumed).
    fn joined(outputs: &[Output]) -> (SessionId, String, Option<String>, bool) {
        outputs
            .iter()
            .find_map(|o| match o {
                Output::Send {
                    message:
                        ServerMessage::Joined {
                            you,
                            name,
                            resume_token,
                            resumed,
                            ..
                        },
                    ..
                } => Some((*you, name.clone(), resume_token.clone(), *resumed)),
                _ => None,
            })
            .expect("joined")
    }

    fn updates(messages: &[ServerMessage]) -> Vec<ParticipantInfo> {
        messages
            .iter()
            .filter_map(|m| match m {
                ServerMessage::ParticipantUpdated { participant } => Some(participant.clone()),
                _ => None,
            })
            .collect()
    }

    /// Who `messages` say is reconnecting or back: (id, reconnecting) per update.
    fn reconnecting(messages: &[ServerMessage]) -> Vec<(SessionId, bool)> {
        updates(messages)
            .iter()
            .map(|p| (p.id, p.reconnecting))
            .collect()
    }

    fn left(messages: &[ServerMessage]) -> bool {
        messages
            .iter()
            .any(|m| matches!(m, ServerMessage::ParticipantLeft { .. }))
    }

    fn media(outputs: &[Output]) -> Vec<MediaCommand> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Media { command, .. } => Some(command.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_dropped_connection_comes_back_as_the_same_participant() {
        let mut c = control();
        let (ann, _, token, resumed) =
            joined(&join(&mut c, 1, "a", "Ann", None, MediaState::default()));
        assert!(!resumed);
        let token = token.expect("a resume token");
        join(&mut c, 2, "a", "Bo", None, MediaState::default());

        // Ann's connection drops: Bo sees her reconnecting, not leaving; her media peer goes.
        c.connection_lost(1);
        let out: Vec<Output> = c.drain_outputs().collect();
        let to_bo = sent_to(&out, 2);
        assert!(!left(&to_bo), "{to_bo:?}");
        assert_eq!(reconnecting(&to_bo), [(ann, true)]);
        assert!(media(&out)
            .iter()
            .any(|m| matches!(m, MediaCommand::RemovePeer { .. })));

        // A new connection (3) comes back with the token, muted now.
        c.set_unix_ms(T0 + HOLD_MS - 1);
        let muted = MediaState {
            mic_muted: true,
            ..MediaState::default()
        };
        let out = join(&mut c, 3, "a", "whatever", Some(token.clone()), muted);
        assert!(matches!(
            out.first(),
            Some(Output::Rebind {
                socket: 3,
                participant: 1
            })
        ));
        let (you, name, new_token, resumed) = joined(&out);
        assert_eq!((you, name.as_str(), resumed), (ann, "Ann", true));
        assert!(
            new_token.is_some_and(|t| t != token),
            "a new token each time"
        );
        let to_bo = sent_to(&out, 2);
        let back = updates(&to_bo);
        assert_eq!(back.len(), 1, "{to_bo:?}");
        assert!(!back[0].reconnecting && back[0].state.mic_muted, "{back:?}");
        assert!(!to_bo
            .iter()
            .any(|m| matches!(m, ServerMessage::ParticipantJoined { .. })));
        assert!(media(&out).iter().any(|m| matches!(
            m,
            MediaCommand::AddPeer {
                participant: 1,
                mic_muted: true,
                ..
            }
        )));
        // What participant 1 is sent reaches connection 3 (the shell rebinds); the old token is spent.
        c.connection_lost(1);
        c.drain_outputs().for_each(drop);
        let out = join(&mut c, 4, "a", "Ann", Some(token), MediaState::default());
        let (you, name, _, resumed) = joined(&out);
        assert!(!resumed);
        assert_ne!(you, ann);
        assert_eq!(name, "Ann (2)", "a new participant: Ann is still held");
    }

    #[test]
    fn a_participant_who_does_not_come_back_leaves() {
        let mut c = control();
        let (_, _, token, _) = joined(&join(&mut c, 1, "a", "Ann", None, MediaState::default()));
        join(&mut c, 2, "a", "Bo", None, MediaState::default());
        c.connection_lost(1);
        c.drain_outputs().for_each(drop);
        c.set_unix_ms(T0 + HOLD_MS - 1);
        c.tick();
        assert!(!left(&sent_to(&c.drain_outputs().collect::<Vec<_>>(), 2)));
        c.set_unix_ms(T0 + HOLD_MS);
        c.tick();
        assert!(left(&sent_to(&c.drain_outputs().collect::<Vec<_>>(), 2)));
        // Too late: the token joins anew.
        let (you, name, _, resumed) =
            joined(&join(&mut c, 3, "a", "Ann", token, MediaState::default()));
        assert_eq!((you, name.as_str(), resumed), (3, "Ann", false));
    }

    #[test]
    fn a_token_takes_over_a_connection_not_yet_seen_to_drop() {
        let mut c = control();
        let (_, _, token, _) = joined(&join(&mut c, 1, "a", "Ann", None, MediaState::default()));
        let out = join(&mut c, 5, "a", "Ann", token, MediaState::default());
        let (you, _, _, resumed) = joined(&out);
        assert_eq!((you, resumed), (1, true));
        assert!(media(&out)
            .iter()
            .any(|m| matches!(m, MediaCommand::RemovePeer { .. })));
        // One participant: the old connection's close is stale (the shell drops it).
        let a = c.status().into_iter().find(|r| r.name == "a").unwrap();
        assert_eq!(a.participants.len(), 1);
    }

    #[test]
    fn a_token_for_another_room_or_a_made_up_one_joins_anew() {
        let mut c = control();
        let (_, _, token, _) = joined(&join(&mut c, 1, "a", "Ann", None, MediaState::default()));
        c.connection_lost(1);
        let (you, _, _, resumed) =
            joined(&join(&mut c, 2, "b", "Ann", token, MediaState::default()));
        assert_eq!((you, resumed), (2, false));
        let (you, _, _, resumed) = joined(&join(
            &mut c,
            3,
            "a",
            "Cy",
            Some("not a token".into()),
            MediaState::default(),
        ));
        assert_eq!((you, resumed), (3, false));
    }

    #[test]
    fn leaving_on_purpose_spends_the_token() {
        let mut c = control();
        let (_, _, token, _) = joined(&join(&mut c, 1, "a", "Ann", None, MediaState::default()));
        c.handle_message(1, ClientMessage::Leave { id: None }, Instant::now());
        c.connection_lost(1);
        c.drain_outputs().for_each(drop);
        let (you, _, _, resumed) =
            joined(&join(&mut c, 2, "a", "Ann", token, MediaState::default()));
        assert_eq!((you, resumed), (2, false));
    }

    /// The media peer `participant` was given among `outputs`.
    fn peer_of(outputs: &[Output], who: SessionId) -> parley_sfu::PeerId {
        media(outputs)
            .iter()
            .find_map(|m| match m {
                MediaCommand::AddPeer {
                    peer, participant, ..
                } if *participant == who => Some(*peer),
                _ => None,
            })
            .expect("a media peer")
    }

    fn media_lost(messages: &[ServerMessage]) -> bool {
        messages.iter().any(|m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::MediaLost,
                    ..
                }
            )
        })
    }

    fn out_of_room(messages: &[ServerMessage]) -> bool {
        messages
            .iter()
            .any(|m| matches!(m, ServerMessage::Left { .. }))
    }

    #[test]
    fn a_lost_media_connection_keeps_the_place_of_a_client_that_comes_back_by_itself() {
        let mut c = control();
        let out = join_with(&mut c, 1, "a", "Ann", None, MediaState::default(), true);
        let ann_peer = peer_of(&out, 1);
        let (ann, _, token, _) = joined(&out);
        let out = join(&mut c, 2, "a", "Bo", None, MediaState::default());
        let bo_peer = peer_of(&out, 2);

        // Ann's media connection is lost, her socket is up: she is told, Bo sees her reconnecting.
        c.media_event(MediaEvent::PeerLost { peer: ann_peer });
        let out: Vec<Output> = c.drain_outputs().collect();
        let to_ann = sent_to(&out, 1);
        assert!(media_lost(&to_ann) && !out_of_room(&to_ann), "{to_ann:?}");
        let to_bo = sent_to(&out, 2);
        assert!(!left(&to_bo), "{to_bo:?}");
        assert_eq!(reconnecting(&to_bo), [(ann, true)]);

        // Bo joined without server_offer: losing his media connection is leaving, as before.
        c.media_event(MediaEvent::PeerLost { peer: bo_peer });
        let out: Vec<Output> = c.drain_outputs().collect();
        let to_bo = sent_to(&out, 2);
        assert!(media_lost(&to_bo) && out_of_room(&to_bo), "{to_bo:?}");
        assert!(left(&sent_to(&out, 1)), "Ann's open socket hears Bo leave");

        // Ann's new connection takes her place over from the old one, with a new media peer that
        // offers first again.
        let out = join_with(&mut c, 3, "a", "Ann", token, MediaState::default(), true);
        assert!(matches!(
            out.first(),
            Some(Output::Rebind {
                socket: 3,
                participant: 1
            })
        ));
        let (you, _, token, resumed) = joined(&out);
        assert_eq!((you, resumed), (ann, true));
        assert!(media(&out).iter().any(|m| matches!(
            m,
            MediaCommand::AddPeer {
                participant: 1,
                server_offer: true,
                ..
            }
        )));

        // Lost again and not back in time: out, and the socket still open hears it.
        let ann_peer = peer_of(&out, 1);
        c.media_event(MediaEvent::PeerLost { peer: ann_peer });
        c.drain_outputs().for_each(drop);
        c.set_unix_ms(T0 + HOLD_MS);
        c.tick();
        let to_ann = sent_to(&c.drain_outputs().collect::<Vec<_>>(), 1);
        assert!(out_of_room(&to_ann), "{to_ann:?}");
        assert!(token.is_some());
    }
}
