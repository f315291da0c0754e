//! Who gets into a room and what owners and the admin may do: passwords, private rooms, owner keys,
//! invites, kicks and bans, locks, deleting rooms. Rules are checked here, on the server, for every
//! request; the client is never trusted. Secrets are compared as hashes; argon2 work leaves this task
//! (`Output::Password`) and durable changes are acknowledged only once stored (`Output::Store`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use parley_proto::{
    Access, Credentials, ErrorCode, InviteInfo, MediaState, MediaStateChange, ParticipantId,
    RequestId, Role, RoomSettings, ServerMessage, StudioRole,
};

use super::{AfterWrite, Control, MemberAccess, Output, RoomSecrets, SessionId, StoreRequest};
use crate::rooms::Refusal;
use crate::secret;
use crate::store::{StoreWrite, StoredInvite};

/// A kicked participant's address may not come back to that room for this long.
pub const KICK_BAN: Duration = Duration::from_secs(10 * 60);
/// Wrong passwords allowed per address and room before waiting.
const FREE_ATTEMPTS: u32 = 5;
const FIRST_WAIT: Duration = Duration::from_secs(1);
const LONGEST_WAIT: Duration = Duration::from_secs(5 * 60);
/// Invites last this long unless told otherwise, and at most a year.
const DEFAULT_INVITE_LIFE: Duration = Duration::from_secs(7 * 24 * 3600);
const LONGEST_INVITE_LIFE: Duration = Duration::from_secs(365 * 24 * 3600);
/// Invites a room may have at once (not revoked).
const MAX_INVITES: usize = 200;
/// The admin token's attempts count against this pseudo-room.
const ADMIN_ROOM: &str = "";

/// What a `create_invite` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InviteTerms {
    pub uses: Option<u32>,
    pub expires_in_s: Option<u64>,
    pub not_before_ms: Option<i64>,
    pub role: Role,
    pub studio_role: Option<StudioRole>,
}

/// A `join` waiting for its password to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJoin {
    pub id: Option<RequestId>,
    pub room: String,
    pub name: String,
    pub state: MediaState,
    pub role: Role,
    /// The server makes the first offer of the media connection (`join` with `server_offer`).
    pub server_offer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordWork {
    Verify { hash: String },
    Hash,
}

/// What to go on with once the password work is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterPassword {
    Join(PendingJoin),
    CreateRoom {
        id: Option<RequestId>,
        name: String,
    },
    Settings {
        id: Option<RequestId>,
        room: String,
        settings: RoomSettings,
    },
}

/// Argon2 work for the shell to do off the control plane's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordJob {
    pub session: SessionId,
    pub password: String,
    pub work: PasswordWork,
    pub then: AfterPassword,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordResult {
    Matched(bool),
    Hashed(String),
    Failed,
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

fn forbidden() -> Refusal {
    refusal(ErrorCode::Forbidden, "only the room's owners can do that")
}

impl Control {
    pub(super) fn is_admin(&self, session: SessionId) -> bool {
        self.session_info.get(&session).is_some_and(|i| i.admin)
    }

    pub(super) fn addr_of(&self, session: SessionId) -> Option<IpAddr> {
        self.session_info.get(&session).and_then(|i| i.addr)
    }

    /// The room `session` is in, if it is an owner there (or the admin).
    pub(super) fn owned_room(&self, session: SessionId) -> Result<String, Refusal> {
        let room = self
            .rooms
            .room_of(session)
            .ok_or_else(|| refusal(ErrorCode::NotInRoom, "you are not in a room"))?;
        let owner = room.member(session).is_some_and(|m| m.owner);
        if owner || self.is_admin(session) {
            Ok(room.name().to_string())
        } else {
            Err(forbidden())
        }
    }

    /// The room `session` owns, when `target` is in it too.
    /// The admin reaches anyone in any room, from anywhere (the admin page).
    fn owned_room_of(&self, session: SessionId, target: ParticipantId) -> Result<String, Refusal> {
        if self.is_admin(session) && self.rooms.room_of(session).is_none() {
            return self
                .rooms
                .room_of(target)
                .map(|r| r.name().to_string())
                .ok_or_else(|| refusal(ErrorCode::NotInRoom, "that participant is in no room"));
        }
        let room = self.owned_room(session)?;
        if !self.in_room(target, &room) {
            return Err(refusal(
                ErrorCode::NotInRoom,
                "that participant is not in your room",
            ));
        }
        Ok(room)
    }

    pub(super) fn write(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        write: StoreWrite,
        then: AfterWrite,
    ) {
        self.outputs.push(Output::Store(StoreRequest::Write {
            session,
            request_id: id,
            write,
            then,
        }));
    }

    fn new_token(&mut self, session: SessionId, id: Option<RequestId>) -> Option<String> {
        match secret::new_token() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!("no randomness from the OS: {e}");
                self.refuse(
                    session,
                    id,
                    refusal(ErrorCode::Internal, "the server could not make a secret"),
                );
                None
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Creating and entering rooms

    pub(super) fn create(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        name: &str,
        access: Access,
        password: Option<String>,
        owner_keys: &[parley_proto::OwnerKeyProof],
    ) {
        if let Err(r) = self.may_create_room(session, owner_keys) {
            return self.refuse(session, id, r);
        }
        let password = match (access, password) {
            (Access::Password, Some(p)) => match secret::validate_password(&p) {
                Ok(_) => Some(p),
                Err(m) => return self.refuse(session, id, refusal(ErrorCode::InvalidPassword, m)),
            },
            (Access::Password, None) => {
                return self.refuse(
                    session,
                    id,
                    refusal(
                        ErrorCode::InvalidPassword,
                        "a password room needs a password",
                    ),
                )
            }
            _ => None,
        };
        // The name is taken at once; the room opens, and the creator hears of it, once stored.
        let summary = match self.rooms.create_pending(name) {
            Ok(s) => s,
            Err(r) => return self.refuse(session, id, r),
        };
        self.note_room_creator(&summary.name, session);
        let settings = RoomSettings {
            studio: false,
            access,
            locked: false,
            has_password: password.is_some(),
        };
        self.rooms.set_settings(&summary.name, settings);
        match password {
            Some(password) => self.outputs.push(Output::Password(PasswordJob {
                session,
                password,
                work: PasswordWork::Hash,
                then: AfterPassword::CreateRoom {
                    id,
                    name: summary.name,
                },
            })),
            None => self.store_new_room(session, id, summary.name, access, None),
        }
    }

    fn store_new_room(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        name: String,
        access: Access,
        password_hash: Option<String>,
    ) {
        let Some(owner_key) = self.new_token(session, id) else {
            self.discard_pending_room(&name);
            return;
        };
        self.secrets.insert(
            name.clone(),
            RoomSecrets {
                password_hash: password_hash.clone(),
                ..Default::default()
            },
        );
        self.write(
            session,
            id,
            StoreWrite::CreateRoom {
                name: name.clone(),
                access,
                password_hash,
                owner_key: secret::hash_token(&owner_key),
                creator_addr: self.addr_of(session),
            },
            AfterWrite::RoomCreated { name, owner_key },
        );
    }

    /// Decides whether `session` may enter (see docs/protocol.md, "Who gets in").
    pub(super) fn join(
        &mut self,
        session: SessionId,
        join: PendingJoin,
        credentials: Credentials,
        now: Instant,
    ) {
        let id = join.id;
        if let Some(current) = self.rooms.room_of(session) {
            let message = format!("you are already in {}: leave it first", current.name());
            return self.refuse(session, id, refusal(ErrorCode::AlreadyInRoom, message));
        }
        let Ok(room_name) = parley_proto::validate_room_name(&join.room) else {
            return self.refuse(
                session,
                id,
                refusal(ErrorCode::InvalidRoomName, "that is not a room name"),
            );
        };
        let Some(settings) = self
            .rooms
            .room(room_name)
            .filter(|_| self.rooms.summary_of(room_name).is_some())
            .map(|r| r.settings())
        else {
            let message = format!("there is no room called {room_name}");
            return self.refuse(session, id, refusal(ErrorCode::NoSuchRoom, message));
        };
        let room_name = room_name.to_string();
        let secrets = self.secrets.get(&room_name).cloned().unwrap_or_default();
        // 1. The admin, or an owner key of the room.
        let key = credentials.owner_key.as_deref().map(secret::hash_token);
        if let Some(key) = key.filter(|k| secrets.owner_keys.contains(k)) {
            let how = MemberAccess {
                owner_key: Some(key),
                ..MemberAccess::default()
            };
            return self.admit(session, join, true, how);
        }
        if self.is_admin(session) {
            return self.admit(session, join, true, MemberAccess::default());
        }
        // 2. Kicked a moment ago.
        let addr = self.addr_of(session);
        if let Some(addr) = addr {
            let key = (room_name.clone(), addr);
            match self.bans.get(&key) {
                Some(until) if *until > now => {
                    return self.refuse(
                        session,
                        id,
                        refusal(
                            ErrorCode::Banned,
                            "you were removed from this room; you cannot come back yet",
                        ),
                    )
                }
                Some(_) => {
                    self.bans.remove(&key);
                }
                None => {}
            }
        }
        // 3. Locked.
        if settings.locked {
            let message = format!("{room_name} is locked: nobody new can come in");
            return self.refuse(session, id, refusal(ErrorCode::RoomLocked, message));
        }
        // 4. An invite.
        if let Some(token) = credentials.invite.as_deref() {
            let hash = secret::hash_token(token);
            let now_ms = self.unix_ms;
            let valid = secrets.invites.iter().find(|i| {
                i.token_hash == hash
                    && !i.revoked
                    && i.not_before_ms <= now_ms
                    && now_ms < i.expires_at_ms
                    && i.uses.is_none_or(|u| i.used < u)
            });
            let Some(invite) = valid.cloned() else {
                return self.refuse(
                    session,
                    id,
                    refusal(
                        ErrorCode::InvalidInvite,
                        "that invite link does not work (wrong, expired, used up or revoked)",
                    ),
                );
            };
            if let Some(i) = self
                .secrets
                .get_mut(&room_name)
                .and_then(|s| s.invites.iter_mut().find(|i| i.id == invite.id))
            {
                i.used += 1;
            }
            self.write(
                session,
                None,
                StoreWrite::InviteUsed { id: invite.id },
                AfterWrite::Nothing,
            );
            let join = PendingJoin {
                role: invite.role,
                ..join
            };
            let how = MemberAccess {
                owner_key: None,
                invite: Some(invite.id),
                studio_role: invite.studio_role,
            };
            return self.admit(session, join, false, how);
        }
        match settings.access {
            // 5. Private.
            Access::Private => self.refuse(
                session,
                id,
                refusal(
                    ErrorCode::InviteRequired,
                    "this room is private: you need an invite link",
                ),
            ),
            // 6. A password.
            Access::Password => {
                let Some(password) = credentials.password else {
                    let message = format!("{room_name} needs a password");
                    return self.refuse(session, id, refusal(ErrorCode::PasswordRequired, message));
                };
                if let Err(r) = self.check_attempts(addr, &room_name, now) {
                    return self.refuse(session, id, r);
                }
                let Some(hash) = secrets.password_hash else {
                    return self.admit(session, join, false, MemberAccess::default());
                };
                self.pending_joins.insert(session, join.clone());
                self.outputs.push(Output::Password(PasswordJob {
                    session,
                    password,
                    work: PasswordWork::Verify { hash },
                    then: AfterPassword::Join(join),
                }));
            }
            // 7. Public.
            Access::Public => self.admit(session, join, false, MemberAccess::default()),
        }
    }

    /// Refuses while `addr` is waiting after too many wrong passwords for `room`.
    fn check_attempts(
        &self,
        addr: Option<IpAddr>,
        room: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        let blocked = self
            .attempts
            .get(&(addr, room.to_string()))
            .and_then(|a| a.blocked_until)
            .filter(|until| *until > now);
        match blocked {
            Some(until) => Err(refusal(
                ErrorCode::RateLimited,
                format!(
                    "too many wrong attempts: try again in {} s",
                    until.saturating_duration_since(now).as_secs().max(1)
                ),
            )),
            None => Ok(()),
        }
    }

    fn attempt_failed(&mut self, addr: Option<IpAddr>, room: &str, now: Instant) {
        let a = self.attempts.entry((addr, room.to_string())).or_default();
        a.failures += 1;
        if a.failures >= FREE_ATTEMPTS {
            let doublings = (a.failures - FREE_ATTEMPTS).min(16);
            let wait = (FIRST_WAIT * 2u32.pow(doublings)).min(LONGEST_WAIT);
            a.blocked_until = Some(now + wait);
        }
    }

    /// The shell finished argon2 work for `job`.
    pub fn password_done(&mut self, job: PasswordJob, result: PasswordResult, now: Instant) {
        let session = job.session;
        if !self.sessions.contains(&session) {
            if let AfterPassword::CreateRoom { name, .. } = &job.then {
                self.discard_pending_room(name);
            }
            return;
        }
        match (job.then, result) {
            (AfterPassword::Join(join), PasswordResult::Matched(ok)) => {
                // A newer join (or a leave) replaced this one.
                if self.pending_joins.get(&session) != Some(&join) {
                    return;
                }
                self.pending_joins.remove(&session);
                let addr = self.addr_of(session);
                if ok {
                    self.attempts.remove(&(addr, join.room.clone()));
                    self.admit(session, join, false, MemberAccess::default());
                } else {
                    self.attempt_failed(addr, &join.room, now);
                    self.refuse(
                        session,
                        join.id,
                        refusal(ErrorCode::WrongPassword, "that is not the room's password"),
                    );
                }
            }
            (AfterPassword::CreateRoom { id, name }, PasswordResult::Hashed(hash)) => {
                let access = self
                    .rooms
                    .room(&name)
                    .map(|r| r.settings().access)
                    .unwrap_or(Access::Password);
                self.store_new_room(session, id, name, access, Some(hash));
            }
            (AfterPassword::Settings { id, room, settings }, PasswordResult::Hashed(hash)) => {
                self.store_settings(session, id, room, settings, Some(hash));
            }
            (then, _) => {
                let id = match then {
                    AfterPassword::Join(j) => {
                        self.pending_joins.remove(&session);
                        j.id
                    }
                    AfterPassword::CreateRoom { id, name } => {
                        self.discard_pending_room(&name);
                        id
                    }
                    AfterPassword::Settings { id, .. } => id,
                };
                self.refuse(
                    session,
                    id,
                    refusal(
                        ErrorCode::Internal,
                        "the password could not be checked; try again",
                    ),
                );
            }
        }
    }

    pub(super) fn admin_login(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        token: &str,
        now: Instant,
    ) {
        let addr = self.addr_of(session);
        if let Err(r) = self.check_attempts(addr, ADMIN_ROOM, now) {
            return self.refuse(session, id, r);
        }
        if self
            .admin_hash
            .is_some_and(|h| h == secret::hash_token(token))
        {
            self.attempts.remove(&(addr, ADMIN_ROOM.to_string()));
            if let Some(info) = self.session_info.get_mut(&session) {
                info.admin = true;
            }
            tracing::info!(session, "admin logged in");
            return self.send(session, ServerMessage::Admin { id });
        }
        self.attempt_failed(addr, ADMIN_ROOM, now);
        self.refuse(
            session,
            id,
            refusal(ErrorCode::Forbidden, "that is not the admin token"),
        );
    }

    // -----------------------------------------------------------------------------------------
    // Owners' requests

    pub(super) fn room_settings(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        access: Option<Access>,
        password: Option<String>,
        locked: Option<bool>,
        studio: Option<bool>,
    ) {
        let room = match self.owned_room(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        let current = self
            .rooms
            .room(&room)
            .map(|r| r.settings())
            .unwrap_or_default();
        let mut settings = current;
        if let Some(a) = access {
            settings.access = a;
        }
        if let Some(l) = locked {
            settings.locked = l;
        }
        if let Some(on) = studio {
            settings.studio = on;
        }
        match password {
            Some(p) => {
                if let Err(m) = secret::validate_password(&p) {
                    return self.refuse(session, id, refusal(ErrorCode::InvalidPassword, m));
                }
                settings.has_password = true;
                self.outputs.push(Output::Password(PasswordJob {
                    session,
                    password: p,
                    work: PasswordWork::Hash,
                    then: AfterPassword::Settings { id, room, settings },
                }));
            }
            None => {
                if settings.access == Access::Password && !current.has_password {
                    return self.refuse(
                        session,
                        id,
                        refusal(
                            ErrorCode::InvalidPassword,
                            "a password room needs a password",
                        ),
                    );
                }
                let hash = self
                    .secrets
                    .get(&room)
                    .and_then(|s| s.password_hash.clone());
                self.store_settings(session, id, room, settings, hash);
            }
        }
    }

    fn store_settings(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        room: String,
        settings: RoomSettings,
        password_hash: Option<String>,
    ) {
        self.write(
            session,
            id,
            StoreWrite::Settings {
                room: room.clone(),
                access: settings.access,
                password_hash: password_hash.clone(),
                locked: settings.locked,
                studio: settings.studio,
            },
            AfterWrite::Settings {
                room,
                settings,
                password_hash,
            },
        );
    }

    pub(super) fn kick(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        target: ParticipantId,
        now: Instant,
    ) {
        let room = match self.owned_room_of(session, target) {
            Ok(r) if target != session => r,
            Ok(_) => {
                let r = refusal(
                    ErrorCode::NotInRoom,
                    "you cannot remove yourself: leave instead",
                );
                return self.refuse(session, id, r);
            }
            Err(r) => return self.refuse(session, id, r),
        };
        let by = self.name_of(session).unwrap_or_else(|| "The admin".into());
        self.remove_from_room(target, &room, &by, now);
        self.send(session, ServerMessage::Ok { id });
    }

    /// Takes `target` out of `room` at once (media too) and keeps its address out for a while.
    fn remove_from_room(&mut self, target: SessionId, room: &str, by: &str, now: Instant) {
        if let Some(addr) = self.addr_of(target) {
            self.bans.insert((room.to_string(), addr), now + KICK_BAN);
        }
        tracing::info!(room, participant = target, by, "kicked");
        self.send(
            target,
            ServerMessage::Kicked {
                room: room.to_string(),
                by: by.to_string(),
            },
        );
        if let Some(room) = self.leave_room(target, true) {
            self.send(target, ServerMessage::Left { id: None, room });
        }
    }

    pub(super) fn mute(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        target: ParticipantId,
    ) {
        if let Err(r) = self.owned_room_of(session, target) {
            return self.refuse(session, id, r);
        }
        let change = MediaStateChange {
            mic_muted: Some(true),
            ..Default::default()
        };
        self.change_state(target, None, change, Some(session));
        self.send(session, ServerMessage::Ok { id });
    }

    pub(super) fn set_owner(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        target: ParticipantId,
        owner: bool,
    ) {
        let room = match self.owned_room_of(session, target) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        if owner {
            let Some(key) = self.new_token(session, id) else {
                return;
            };
            self.write(
                session,
                id,
                StoreWrite::AddOwnerKey {
                    room: room.clone(),
                    key: secret::hash_token(&key),
                },
                AfterWrite::OwnerAdded { room, target, key },
            );
            return;
        }
        let key = self.member_access.get(&target).and_then(|a| a.owner_key);
        let keys = self.secrets.get(&room).map_or(0, |s| s.owner_keys.len());
        if let Some(key) = key {
            if keys <= 1 {
                return self.refuse(
                    session,
                    id,
                    refusal(
                        ErrorCode::Forbidden,
                        "a room keeps at least one owner: make someone else an owner first",
                    ),
                );
            }
            self.write(
                session,
                id,
                StoreWrite::RemoveOwnerKey { key },
                AfterWrite::OwnerRemoved { room, target },
            );
        } else {
            self.owner_changed(target, false);
            self.send(session, ServerMessage::Ok { id });
        }
    }

    pub(super) fn create_invite(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        terms: InviteTerms,
    ) {
        let InviteTerms {
            uses,
            expires_in_s,
            not_before_ms,
            role,
            studio_role,
        } = terms;
        let room = match self.owned_room(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        let open = self.secrets.get(&room).map_or(0, |s| s.invites.len());
        if open >= MAX_INVITES {
            let message = format!("a room has at most {MAX_INVITES} invites: revoke some first");
            return self.refuse(session, id, refusal(ErrorCode::RateLimited, message));
        }
        if uses == Some(0) {
            return self.refuse(
                session,
                id,
                refusal(
                    ErrorCode::BadMessage,
                    "an invite admits at least one person",
                ),
            );
        }
        let life = expires_in_s
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_INVITE_LIFE)
            .min(LONGEST_INVITE_LIFE);
        let Some(token) = self.new_token(session, id) else {
            return;
        };
        let now_ms = self.unix_ms;
        let not_before_ms = not_before_ms.unwrap_or(now_ms).max(0);
        let invite = StoredInvite {
            id: self.next_invite,
            token_hash: secret::hash_token(&token),
            role,
            studio_role,
            uses,
            used: 0,
            not_before_ms,
            expires_at_ms: not_before_ms.max(now_ms) + life.as_millis() as i64,
            created_at_ms: now_ms,
            revoked: false,
        };
        self.next_invite += 1;
        self.write(
            session,
            id,
            StoreWrite::AddInvite {
                room: room.clone(),
                invite: invite.clone(),
            },
            AfterWrite::InviteCreated {
                room,
                invite,
                token,
            },
        );
    }

    pub(super) fn list_invites(&mut self, session: SessionId, id: Option<RequestId>) {
        let room = match self.owned_room(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        let mut invites: Vec<InviteInfo> = self
            .secrets
            .get(&room)
            .map(|s| s.invites.iter().map(|i| invite_info(i, None)).collect())
            .unwrap_or_default();
        invites.reverse();
        self.send(session, ServerMessage::Invites { id, invites });
    }

    pub(super) fn revoke_invite(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        invite: i64,
        kick: bool,
    ) {
        let room = match self.owned_room(session) {
            Ok(r) => r,
            Err(r) => return self.refuse(session, id, r),
        };
        // Refused at once, before the store has it.
        let found = self
            .secrets
            .get_mut(&room)
            .and_then(|s| s.invites.iter_mut().find(|i| i.id == invite))
            .map(|i| i.revoked = true)
            .is_some();
        if !found {
            return self.refuse(
                session,
                id,
                refusal(ErrorCode::InvalidInvite, "this room has no such invite"),
            );
        }
        self.write(
            session,
            id,
            StoreWrite::RevokeInvite { id: invite },
            AfterWrite::InviteRevoked { room, invite, kick },
        );
    }

    pub(super) fn delete_room(&mut self, session: SessionId, id: Option<RequestId>, room: &str) {
        let allowed = if self.is_admin(session) {
            self.rooms.summary_of(room).is_some()
        } else {
            self.owned_room(session).is_ok_and(|r| r == room)
        };
        if !allowed {
            let r = if self.is_admin(session) {
                refusal(
                    ErrorCode::NoSuchRoom,
                    format!("there is no room called {room}"),
                )
            } else if self.rooms.room_of(session).is_some() {
                refusal(
                    ErrorCode::Forbidden,
                    "to delete a room, be its owner, be in it, and give its exact name",
                )
            } else {
                refusal(ErrorCode::NotInRoom, "you are not in a room")
            };
            return self.refuse(session, id, r);
        }
        self.write(
            session,
            id,
            StoreWrite::DeleteRoom {
                room: room.to_string(),
            },
            AfterWrite::RoomDeleted {
                room: room.to_string(),
            },
        );
    }

    // -----------------------------------------------------------------------------------------
    // After the store

    /// The store did (`stored`) or could not do a write; `then` says what follows.
    pub fn written(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        then: AfterWrite,
        stored: bool,
        now: Instant,
    ) {
        if !stored {
            if let AfterWrite::RecordingStarted { room, .. } = &then {
                self.starting_recordings.remove(room);
            }
            if let AfterWrite::RoomCreated { name, .. } = &then {
                // Only a pending room is discarded; its name is free again.
                let name = name.clone();
                self.discard_pending_room(&name);
                self.secrets.remove(&name);
            }
            if !matches!(then, AfterWrite::Nothing) {
                self.store_failed(session, id, "that could not be saved; try again");
            }
            return;
        }
        let connected = self.sessions.contains(&session);
        match then {
            AfterWrite::StudioSessionStarted { room, session: s } => {
                self.studio_session_stored(room, s, session)
            }
            AfterWrite::MarkerAdded { room, marker } => {
                self.marker_stored(session, id, room, marker)
            }
            AfterWrite::MarkDeleted { room, mark } => self.mark_removed(session, id, room, mark),
            AfterWrite::SegmentStored { room, segment } => {
                self.segment_stored(session, id, room, segment)
            }
            AfterWrite::RoomCreated { name, owner_key } => {
                self.room_created(session, id, name, owner_key)
            }
            AfterWrite::Settings {
                room,
                settings,
                password_hash,
            } => {
                let was_listed = self.rooms.room(&room).is_some_and(|r| r.listed());
                let was_studio = self.rooms.room(&room).is_some_and(|r| r.settings().studio);
                self.rooms.set_settings(&room, settings);
                self.secrets.entry(room.clone()).or_default().password_hash = password_hash;
                let members = self.members_except(&room, session);
                self.outputs.push(Output::Send {
                    sessions: members,
                    message: ServerMessage::RoomSettings { id: None, settings },
                });
                if connected {
                    self.send(session, ServerMessage::RoomSettings { id, settings });
                }
                self.lobby_after_settings(&room, was_listed);
                if settings.studio != was_studio {
                    self.studio_switched(&room, settings.studio, session);
                }
            }
            AfterWrite::OwnerAdded { room, target, key } => {
                self.secrets
                    .entry(room.clone())
                    .or_default()
                    .owner_keys
                    .push(secret::hash_token(&key));
                if self.in_room(target, &room) {
                    self.member_access.entry(target).or_default().owner_key =
                        Some(secret::hash_token(&key));
                    self.send(target, ServerMessage::OwnerKey { room, key });
                    self.owner_changed(target, true);
                }
                if connected {
                    self.send(session, ServerMessage::Ok { id });
                }
            }
            AfterWrite::OwnerRemoved { room, target } => {
                let key = self
                    .member_access
                    .get_mut(&target)
                    .and_then(|a| a.owner_key.take());
                if let (Some(key), Some(s)) = (key, self.secrets.get_mut(&room)) {
                    s.owner_keys.retain(|k| *k != key);
                }
                if self.in_room(target, &room) {
                    self.owner_changed(target, false);
                }
                if connected {
                    self.send(session, ServerMessage::Ok { id });
                }
            }
            AfterWrite::InviteCreated {
                room,
                invite,
                token,
            } => {
                let info = invite_info(&invite, Some(token));
                self.secrets.entry(room).or_default().invites.push(invite);
                if connected {
                    self.send(session, ServerMessage::InviteCreated { id, invite: info });
                }
            }
            AfterWrite::InviteRevoked { room, invite, kick } => {
                if let Some(s) = self.secrets.get_mut(&room) {
                    s.invites.retain(|i| i.id != invite);
                }
                if kick {
                    let by = self.name_of(session).unwrap_or_else(|| "an owner".into());
                    let came_by: Vec<SessionId> = self
                        .member_access
                        .iter()
                        .filter(|(s, a)| a.invite == Some(invite) && self.in_room(**s, &room))
                        .map(|(s, _)| *s)
                        .collect();
                    for target in came_by {
                        self.remove_from_room(target, &room, &by, now);
                    }
                }
                if connected {
                    self.send(session, ServerMessage::Ok { id });
                }
            }
            AfterWrite::RoomDeleted { room } => {
                self.room_deleted(&room);
                if connected {
                    self.send(session, ServerMessage::Ok { id });
                }
            }
            AfterWrite::ChatDeleted { room } => self.chat_deleted(session, id, room),
            AfterWrite::RecordingsDeleted { room } => self.recordings_deleted(session, id, room),
            AfterWrite::RecordingStarted {
                room,
                recording,
                started_by,
                started_at_ms,
            } => {
                let now = parley_proto::RecordingNow {
                    recording_id: recording,
                    started_at_ms,
                    started_by,
                };
                self.recording_started(session, id, room, now)
            }
            AfterWrite::RecordingFinished { info } => self.recording_stored(info),
            AfterWrite::Limits { stored } => self.limits_stored(session, id, stored),
            AfterWrite::Nothing => {}
        }
    }

    fn room_created(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        name: String,
        owner_key: String,
    ) {
        let Some(room) = self.rooms.confirm(&name) else {
            return;
        };
        self.idle_since.insert(name.clone(), self.unix_ms);
        self.secrets
            .entry(name.clone())
            .or_default()
            .owner_keys
            .push(secret::hash_token(&owner_key));
        tracing::info!(room = %room.name, session, access = room.access.as_str(), "room created");
        if self.sessions.contains(&session) {
            self.send(
                session,
                ServerMessage::RoomCreated {
                    id,
                    room: room.clone(),
                    owner_key: Some(owner_key),
                },
            );
        }
        let sessions = if room.access != Access::Private {
            self.sessions.iter().copied().collect()
        } else {
            self.admins()
        };
        self.outputs.push(Output::Send {
            sessions,
            message: ServerMessage::RoomAdded { room },
        });
    }

    /// Everyone in `room` leaves it (told why), and the room is gone.
    pub(super) fn room_deleted(&mut self, room: &str) {
        // Its recordings go with it (the store removes their files).
        self.stop_recording(room, None, Some("the room was deleted".into()), 0, None);
        let members: Vec<SessionId> = self
            .rooms
            .room(room)
            .map(|r| r.members().iter().map(|m| m.id).collect())
            .unwrap_or_default();
        let listed = self.rooms.room(room).is_some_and(|r| r.listed());
        for m in members {
            self.send(
                m,
                ServerMessage::RoomDeleted {
                    room: room.to_string(),
                },
            );
            if let Some(left) = self.leave_room(m, true) {
                self.send(
                    m,
                    ServerMessage::Left {
                        id: None,
                        room: left,
                    },
                );
            }
        }
        self.rooms.remove(room);
        self.secrets.remove(room);
        self.room_creators.remove(room);
        self.idle_since.remove(room);
        self.bans.retain(|(r, _), _| r != room);
        tracing::info!(room, "room deleted");
        let sessions = if listed {
            self.sessions.iter().copied().collect()
        } else {
            self.admins()
        };
        self.outputs.push(Output::Send {
            sessions,
            message: ServerMessage::RoomRemoved {
                room: room.to_string(),
            },
        });
    }

    /// A room that became private leaves every lobby; one that became listed joins them.
    /// The admin's lobby lists private rooms too: for it the room only changed.
    fn lobby_after_settings(&mut self, room: &str, was_listed: bool) {
        let listed = self.rooms.room(room).is_some_and(|r| r.listed());
        let Some(summary) = self.rooms.summary_of(room) else {
            return;
        };
        let for_others = match (was_listed, listed) {
            (true, false) => Some(ServerMessage::RoomRemoved {
                room: room.to_string(),
            }),
            (false, true) => Some(ServerMessage::RoomAdded {
                room: summary.clone(),
            }),
            (true, true) => Some(ServerMessage::RoomUpdated {
                room: summary.clone(),
            }),
            (false, false) => None,
        };
        if let Some(message) = for_others {
            self.outputs.push(Output::Send {
                sessions: self.non_admins(),
                message,
            });
        }
        self.outputs.push(Output::Send {
            sessions: self.admins(),
            message: ServerMessage::RoomUpdated { room: summary },
        });
    }

    fn owner_changed(&mut self, target: SessionId, owner: bool) {
        let Some(updated) = self.rooms.set_owner(target, owner) else {
            return;
        };
        let room = self.rooms.room_of(target).map(|r| r.name().to_string());
        let everyone: Vec<SessionId> = room
            .and_then(|r| self.rooms.room(&r))
            .map(|r| r.members().iter().map(|m| m.id).collect())
            .unwrap_or_default();
        self.outputs.push(Output::Send {
            sessions: everyone,
            message: ServerMessage::ParticipantUpdated {
                participant: updated,
            },
        });
    }

    pub(super) fn in_room(&self, session: SessionId, room: &str) -> bool {
        self.rooms
            .room_of(session)
            .is_some_and(|r| r.name() == room)
    }

    pub(super) fn name_of(&self, session: SessionId) -> Option<String> {
        self.rooms
            .room_of(session)
            .and_then(|r| r.member(session))
            .map(|m| m.name.clone())
    }
}

fn invite_info(invite: &StoredInvite, token: Option<String>) -> InviteInfo {
    InviteInfo {
        id: invite.id,
        token,
        role: invite.role,
        studio_role: invite.studio_role,
        uses: invite.uses,
        used: invite.used,
        not_before_ms: invite.not_before_ms,
        expires_at_ms: invite.expires_at_ms,
        created_at_ms: invite.created_at_ms,
    }
}
