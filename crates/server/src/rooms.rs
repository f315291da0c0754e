//! Room membership as plain data (the control plane's): names, capacity per role, one room per
//! participant, and everyone's media flags. No WebRTC, no sockets, no clock.

use std::collections::BTreeMap;

use parley_proto::{
    validate_display_name, validate_room_name, Access, ErrorCode, MediaState, MediaStateChange,
    ParticipantId, ParticipantInfo, Role, RoomSettings, RoomSummary, StudioRole,
};

/// Why a membership change was refused; becomes an `error` message for that client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Room {
    name: String,
    /// Participants in join order.
    members: Vec<ParticipantInfo>,
    /// Created but not yet stored: the name is taken, but nobody sees or enters it until the store
    /// says it is durable (an acknowledged room survives a crash).
    pending: bool,
    /// Who may enter (the secrets themselves are the control plane's).
    settings: RoomSettings,
}

impl Room {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn members(&self) -> &[ParticipantInfo] {
        &self.members
    }

    pub fn member(&self, id: ParticipantId) -> Option<&ParticipantInfo> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn settings(&self) -> RoomSettings {
        self.settings
    }

    /// Listed in the lobby (private rooms are not).
    pub fn listed(&self) -> bool {
        !self.pending && self.settings.access != Access::Private
    }
}

/// All rooms of a node and who is in which: enforces room names, capacity and one room per participant.
#[derive(Debug, Clone)]
pub struct Rooms {
    max_participants: usize,
    rooms: BTreeMap<String, Room>,
    /// participant → the room they are in.
    located: BTreeMap<ParticipantId, String>,
}

impl Rooms {
    pub fn new(max_participants: usize) -> Self {
        Rooms {
            max_participants: max_participants.max(1),
            rooms: BTreeMap::new(),
            located: BTreeMap::new(),
        }
    }

    pub fn max_participants(&self) -> usize {
        self.max_participants
    }

    /// A new capacity (the admin's limits): those already in a fuller room stay.
    pub fn set_max_participants(&mut self, max: usize) {
        self.max_participants = max.max(1);
    }

    /// Rooms, those being created included.
    pub fn count(&self) -> usize {
        self.rooms.len()
    }

    /// Creates a room that is usable at once (rooms loaded from the store, the default room).
    pub fn create(&mut self, name: &str) -> Result<RoomSummary, Refusal> {
        let summary = self.create_pending(name)?;
        self.confirm(&summary.name);
        Ok(summary)
    }

    /// Takes the name for a room that is being stored; [`Rooms::confirm`] opens it, [`Rooms::discard`]
    /// gives the name back.
    pub fn create_pending(&mut self, name: &str) -> Result<RoomSummary, Refusal> {
        let name =
            validate_room_name(name).map_err(|m| Refusal::new(ErrorCode::InvalidRoomName, m))?;
        if self.rooms.contains_key(name) {
            return Err(Refusal::new(
                ErrorCode::RoomExists,
                format!("a room called {name} already exists"),
            ));
        }
        let room = Room {
            name: name.to_string(),
            members: Vec::new(),
            pending: true,
            settings: RoomSettings::default(),
        };
        self.rooms.insert(name.to_string(), room);
        Ok(RoomSummary {
            name: name.to_string(),
            participants: 0,
            max_participants: self.max_participants,
            access: Access::Public,
            locked: false,
        })
    }

    pub fn set_settings(&mut self, name: &str, settings: RoomSettings) {
        if let Some(room) = self.rooms.get_mut(name) {
            room.settings = settings;
        }
    }

    /// Deletes a room; returns who was in it (they are in no room now).
    pub fn remove(&mut self, name: &str) -> Option<Vec<ParticipantId>> {
        let room = self.rooms.remove(name)?;
        let members: Vec<ParticipantId> = room.members.iter().map(|m| m.id).collect();
        for m in &members {
            self.located.remove(m);
        }
        Some(members)
    }

    /// Member `id`, wherever it is, to change.
    fn member_mut(&mut self, id: ParticipantId) -> Option<&mut ParticipantInfo> {
        let name = self.located.get(&id)?;
        self.rooms
            .get_mut(name)?
            .members
            .iter_mut()
            .find(|m| m.id == id)
    }

    /// Marks `id` an owner or not; returns the member as others see them now.
    pub fn set_owner(&mut self, id: ParticipantId, owner: bool) -> Option<ParticipantInfo> {
        let member = self.member_mut(id)?;
        member.owner = owner;
        Some(member.clone())
    }

    /// Gives `id` a studio role (or none: the room left studio mode); returns the member as others
    /// see them now.
    pub fn set_studio_role(
        &mut self,
        id: ParticipantId,
        role: Option<StudioRole>,
    ) -> Option<ParticipantInfo> {
        let member = self.member_mut(id)?;
        member.studio_role = role;
        Some(member.clone())
    }

    /// Marks `id` as reconnecting (its connection dropped; its place is kept) or back.
    pub fn set_reconnecting(&mut self, id: ParticipantId, on: bool) -> Option<ParticipantInfo> {
        let member = self.member_mut(id)?;
        member.reconnecting = on;
        Some(member.clone())
    }

    /// The room is stored: it is listed and can be joined.
    pub fn confirm(&mut self, name: &str) -> Option<RoomSummary> {
        self.rooms.get_mut(name)?.pending = false;
        self.summary_of(name)
    }

    /// The room could not be stored: as if it had never been asked for.
    pub fn discard(&mut self, name: &str) {
        if self.rooms.get(name).is_some_and(|r| r.pending) {
            self.rooms.remove(name);
        }
    }

    /// Every open room, by name.
    pub fn summary(&self) -> Vec<RoomSummary> {
        self.rooms
            .keys()
            .filter_map(|name| self.summary_of(name))
            .collect()
    }

    /// Up to `limit` open rooms named after `after` (from the first when absent), by name, and
    /// whether more follow.
    /// Private rooms only `with_private` (for the admin).
    pub fn page(
        &self,
        after: Option<&str>,
        limit: usize,
        with_private: bool,
    ) -> (Vec<RoomSummary>, bool) {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded(a.to_string()),
            None => Bound::Unbounded,
        };
        let mut open = self
            .rooms
            .range((start, Bound::Unbounded))
            .filter(|(_, r)| with_private || r.listed())
            .filter_map(|(name, _)| self.summary_of(name));
        let page: Vec<RoomSummary> = open.by_ref().take(limit).collect();
        let more = open.next().is_some();
        (page, more)
    }

    /// An open room as the lobby lists it.
    pub fn summary_of(&self, name: &str) -> Option<RoomSummary> {
        self.rooms
            .get(name)
            .filter(|r| !r.pending)
            .map(|r| RoomSummary {
                name: r.name.clone(),
                participants: r.members.iter().filter(|m| m.role == Role::Member).count(),
                max_participants: self.max_participants,
                access: r.settings.access,
                locked: r.settings.locked,
            })
    }

    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.get(name)
    }

    pub fn room_of(&self, participant: ParticipantId) -> Option<&Room> {
        self.located
            .get(&participant)
            .and_then(|n| self.rooms.get(n))
    }

    /// Adds `id` to room `name`. Returns the joined member as others will see them.
    pub fn join(
        &mut self,
        id: ParticipantId,
        room: &str,
        display_name: &str,
        state: MediaState,
        role: Role,
        owner: bool,
    ) -> Result<ParticipantInfo, Refusal> {
        if let Some(current) = self.located.get(&id) {
            return Err(Refusal::new(
                ErrorCode::AlreadyInRoom,
                format!("you are already in {current}: leave it first"),
            ));
        }
        let room_name =
            validate_room_name(room).map_err(|m| Refusal::new(ErrorCode::InvalidRoomName, m))?;
        let display_name = validate_display_name(display_name)
            .map_err(|m| Refusal::new(ErrorCode::InvalidName, m))?;
        let max = self.max_participants;
        let room = self
            .rooms
            .get_mut(room_name)
            .filter(|r| !r.pending)
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NoSuchRoom,
                    format!("there is no room called {room_name}"),
                )
            })?;
        // Members and viewers each have their own capacity: a wall screen never takes a seat.
        let same_role = room.members.iter().filter(|m| m.role == role).count();
        if same_role >= max {
            let what = match role {
                Role::Member => "full",
                Role::Viewer => "full of viewers",
            };
            return Err(Refusal::new(
                ErrorCode::RoomFull,
                format!("{room_name} is {what} ({max} of {max})"),
            ));
        }
        // Names are unique in a room: a second "Ann" is "Ann (2)".
        let taken = |n: &str| room.members.iter().any(|m| m.name == n);
        let mut name = display_name.to_string();
        let mut n = 2;
        while taken(&name) {
            name = format!("{display_name} ({n})");
            n += 1;
        }
        let info = ParticipantInfo {
            id,
            name,
            state,
            role,
            owner,
            studio_role: None,
            reconnecting: false,
        };
        room.members.push(info.clone());
        self.located.insert(id, room_name.to_string());
        Ok(info)
    }

    /// Removes `id` from its room. Returns the room's name and the members who remain.
    pub fn leave(&mut self, id: ParticipantId) -> Option<(String, Vec<ParticipantId>)> {
        let name = self.located.remove(&id)?;
        let room = self.rooms.get_mut(&name)?;
        room.members.retain(|m| m.id != id);
        let remaining = room.members.iter().map(|m| m.id).collect();
        Some((name, remaining))
    }

    /// Applies a state change; returns the updated member.
    pub fn set_state(
        &mut self,
        id: ParticipantId,
        change: MediaStateChange,
    ) -> Result<ParticipantInfo, Refusal> {
        let not_in_room = || Refusal::new(ErrorCode::NotInRoom, "you are not in a room");
        let name = self.located.get(&id).ok_or_else(not_in_room)?;
        let room = self.rooms.get_mut(name).ok_or_else(not_in_room)?;
        let member = room
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or_else(not_in_room)?;
        member.state.apply(change);
        Ok(member.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms_with(names: &[&str], max: usize) -> Rooms {
        let mut r = Rooms::new(max);
        for n in names {
            r.create(n).unwrap();
        }
        r
    }

    #[test]
    fn join_lists_members_in_order_and_counts() {
        let mut r = rooms_with(&["band"], 16);
        r.join(1, "band", "Ann", MediaState::default(), Role::Member, false)
            .unwrap();
        r.join(
            2,
            "band",
            " Bo ",
            MediaState::default(),
            Role::Member,
            false,
        )
        .unwrap();
        let room = r.room("band").unwrap();
        let names: Vec<_> = room.members().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["Ann", "Bo"]);
        assert_eq!(r.summary()[0].participants, 2);
    }

    #[test]
    fn one_room_at_a_time() {
        let mut r = rooms_with(&["a", "b"], 16);
        r.join(1, "a", "Ann", MediaState::default(), Role::Member, false)
            .unwrap();
        let e = r
            .join(1, "b", "Ann", MediaState::default(), Role::Member, false)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AlreadyInRoom);
        assert!(r.room("b").unwrap().members().is_empty());
        // After leaving, the other room can be joined.
        r.leave(1).unwrap();
        r.join(1, "b", "Ann", MediaState::default(), Role::Member, false)
            .unwrap();
        assert_eq!(r.room_of(1).unwrap().name(), "b");
    }

    #[test]
    fn room_full_refuses_the_next() {
        let mut r = rooms_with(&["a"], 2);
        r.join(1, "a", "A", MediaState::default(), Role::Member, false)
            .unwrap();
        r.join(2, "a", "B", MediaState::default(), Role::Member, false)
            .unwrap();
        let e = r
            .join(3, "a", "C", MediaState::default(), Role::Member, false)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::RoomFull);
        assert!(r.room_of(3).is_none());
        r.leave(1);
        r.join(3, "a", "C", MediaState::default(), Role::Member, false)
            .unwrap();
    }

    #[test]
    fn viewers_have_their_own_capacity_and_are_not_counted() {
        let mut r = rooms_with(&["a"], 1);
        r.join(1, "a", "A", MediaState::default(), Role::Member, false)
            .unwrap();
        r.join(2, "a", "Wall", MediaState::default(), Role::Viewer, false)
            .unwrap();
        assert_eq!(r.summary()[0].participants, 1);
        let e = r
            .join(3, "a", "Wall 2", MediaState::default(), Role::Viewer, false)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::RoomFull);
        let e = r
            .join(4, "a", "B", MediaState::default(), Role::Member, false)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::RoomFull);
    }

    #[test]
    fn bad_names_and_missing_rooms() {
        let mut r = rooms_with(&["a"], 4);
        assert_eq!(r.create("a").unwrap_err().code, ErrorCode::RoomExists);
        assert_eq!(
            r.create("../etc").unwrap_err().code,
            ErrorCode::InvalidRoomName
        );
        let e = r
            .join(1, "nope", "A", MediaState::default(), Role::Member, false)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NoSuchRoom);
        let e = r
            .join(1, "a", "   ", MediaState::default(), Role::Member, false)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidName);
        assert!(r.room_of(1).is_none());
    }

    #[test]
    fn leave_cleans_up() {
        let mut r = rooms_with(&["a"], 4);
        r.join(1, "a", "A", MediaState::default(), Role::Member, false)
            .unwrap();
        r.join(2, "a", "B", MediaState::default(), Role::Member, false)
            .unwrap();
        let (name, remaining) = r.leave(1).unwrap();
        assert_eq!(name, "a");
        assert_eq!(remaining, vec![2]);
        assert!(r.room_of(1).is_none());
        assert!(r.leave(1).is_none(), "leaving twice is a no-op");
        assert_eq!(
            r.set_state(1, MediaStateChange::default())
                .unwrap_err()
                .code,
            ErrorCode::NotInRoom
        );
        assert_eq!(r.room("a").unwrap().members().len(), 1);
    }

    #[test]
    fn state_changes_apply_to_the_member_only() {
        let mut r = rooms_with(&["a", "b"], 8);
        for (id, room) in [(1, "a"), (2, "a"), (4, "b")] {
            r.join(id, room, "x", MediaState::default(), Role::Member, false)
                .unwrap();
        }
        let updated = r
            .set_state(
                1,
                MediaStateChange {
                    mic_muted: Some(true),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(updated.state.mic_muted && !updated.state.camera_off);
        let room = r.room("a").unwrap();
        assert!(room.member(1).unwrap().state.mic_muted);
        assert!(!room.member(2).unwrap().state.mic_muted);
        assert!(!r.room("b").unwrap().member(4).unwrap().state.mic_muted);
    }
}
