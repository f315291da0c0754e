//! Server-wide limits and the admin's requests: who may create rooms, how many rooms in all and per
//! address, idle rooms expiring, chat rates per address and chat retention; the admin's overview,
//! closing rooms, deleting chat and changing these limits (kept in the store, they win over flags).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use parley_proto::{
    AdminParticipant, AdminRoom, ErrorCode, LimitsChange, OwnerKeyProof, RequestId, RoomCreation,
    ServerLimits, ServerMessage, MAX_OWNER_PROOFS, MAX_ROOMS_PAGE,
};

use super::{AfterWrite, Control, Output, SessionId, StoreRequest};
use crate::rate::{RateLimit, TokenBucket};
use crate::rooms::Refusal;
use crate::secret;
use crate::store::StoreWrite;

/// The settings key of the admin's limits (a JSON [`LimitsChange`]).
pub const LIMITS_SETTING: &str = "limits";
/// Retention runs at least this often (and every quarter of the retention time when that is less).
const LONGEST_PRUNE_INTERVAL_MS: i64 = 3_600_000;
const SHORTEST_PRUNE_INTERVAL_MS: i64 = 1_000;
/// How often the store is asked whether the admin token was reset.
const ADMIN_HASH_INTERVAL_MS: i64 = 3_000;

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

fn admin_only() -> Refusal {
    refusal(ErrorCode::Forbidden, "only the admin can do that")
}

impl Control {
    /// The limits in force now.
    pub fn limits(&self) -> ServerLimits {
        self.limits
    }

    /// The admin's changes, as stored: they apply over the flags' limits.
    pub fn load_admin_limits(&mut self, change: LimitsChange) -> Result<(), String> {
        let limits = self.config.limits.with(&change);
        limits.validate()?;
        self.admin_limits = change;
        self.apply_limits(limits);
        Ok(())
    }

    fn apply_limits(&mut self, limits: ServerLimits) {
        self.limits = limits;
        self.rooms
            .set_max_participants(usize::from(limits.max_participants));
        // Retention may have become shorter: prune at the next tick.
        self.next_prune_ms = 0;
    }

    pub(super) fn chat_limit(&self) -> RateLimit {
        RateLimit {
            per_second: self.limits.chat_rate,
            burst: self.limits.chat_burst,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Rooms: creation, counts, idleness

    /// Whether `session` may create one more room.
    pub(super) fn may_create_room(
        &self,
        session: SessionId,
        proofs: &[OwnerKeyProof],
    ) -> Result<(), Refusal> {
        if self.is_admin(session) {
            return Ok(());
        }
        match self.limits.room_creation {
            RoomCreation::Anyone => {}
            RoomCreation::Owners if self.owns_a_room(session, proofs) => {}
            RoomCreation::Owners => {
                return Err(refusal(
                    ErrorCode::Forbidden,
                    "on this server only owners of a room can create rooms",
                ))
            }
            RoomCreation::Admin => {
                return Err(refusal(
                    ErrorCode::Forbidden,
                    "on this server only the admin can create rooms",
                ))
            }
        }
        if self.rooms.count() >= self.limits.max_rooms as usize {
            return Err(refusal(
                ErrorCode::TooManyRooms,
                format!(
                    "this server has as many rooms as it may ({}); delete one first",
                    self.limits.max_rooms
                ),
            ));
        }
        if let Some(addr) = self.addr_of(session) {
            let mine = self.room_creators.values().filter(|a| **a == addr).count();
            if mine >= self.limits.max_rooms_per_address as usize {
                return Err(refusal(
                    ErrorCode::TooManyRooms,
                    format!(
                        "your address has made as many rooms as it may ({}); delete one first",
                        self.limits.max_rooms_per_address
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An owner now, in their room, or by one of `proofs`.
    fn owns_a_room(&self, session: SessionId, proofs: &[OwnerKeyProof]) -> bool {
        let owner_here = self
            .rooms
            .room_of(session)
            .and_then(|r| r.member(session))
            .is_some_and(|m| m.owner);
        owner_here
            || proofs.iter().take(MAX_OWNER_PROOFS).any(|p| {
                let hash = secret::hash_token(&p.key);
                self.secrets
                    .get(&p.room)
                    .is_some_and(|s| s.owner_keys.contains(&hash))
            })
    }

    /// A room being created from `session`'s address counts against that address at once.
    pub(super) fn note_room_creator(&mut self, room: &str, session: SessionId) {
        if let Some(addr) = self.addr_of(session) {
            self.room_creators.insert(room.to_string(), addr);
        }
    }

    /// A room that is being created could not be: its name and its count are free again.
    pub(super) fn discard_pending_room(&mut self, room: &str) {
        if self.rooms.summary_of(room).is_none() {
            self.room_creators.remove(room);
        }
        self.rooms.discard(room);
    }

    /// Someone entered an empty room.
    pub(super) fn room_occupied(&mut self, room: &str) {
        if self.idle_since.remove(room).is_some() {
            self.note_activity(room);
        }
    }

    /// The last person left `room`: it may expire from now.
    pub(super) fn room_emptied(&mut self, room: &str) {
        self.idle_since.insert(room.to_string(), self.unix_ms);
        self.note_activity(room);
    }

    fn note_activity(&mut self, room: &str) {
        if self.is_default_room(room) {
            return;
        }
        self.outputs.push(Output::Store(StoreRequest::Write {
            session: 0,
            request_id: None,
            write: StoreWrite::RoomActive {
                room: room.to_string(),
            },
            then: AfterWrite::Nothing,
        }));
    }

    fn is_default_room(&self, room: &str) -> bool {
        self.config.default_room.as_deref() == Some(room)
    }

    /// Time passes: idle rooms expire, old chat goes, stale per-address state is dropped.
    pub fn tick(&mut self) {
        self.expire_held();
        if self.limits.room_idle_expiry_s > 0 {
            let cutoff = self
                .unix_ms
                .saturating_sub((self.limits.room_idle_expiry_s as i64).saturating_mul(1000));
            let expired: Vec<String> = self
                .idle_since
                .iter()
                .filter(|(room, since)| **since <= cutoff && !self.is_default_room(room))
                .filter(|(room, _)| {
                    self.rooms
                        .room(room)
                        .is_some_and(|r| r.members().is_empty())
                        && self.rooms.summary_of(room).is_some()
                })
                .map(|(room, _)| room.clone())
                .collect();
            for room in expired {
                tracing::info!(room = %room, "idle room expired");
                // Gone from memory first: a join or a new room of that name from now on is
                // ordered after the deletion on the store thread.
                self.room_deleted(&room);
                self.outputs.push(Output::Store(StoreRequest::Write {
                    session: 0,
                    request_id: None,
                    write: StoreWrite::DeleteRoom { room },
                    then: AfterWrite::Nothing,
                }));
            }
        }
        if self.unix_ms >= self.next_admin_check_ms {
            self.outputs
                .push(Output::Store(StoreRequest::ReadAdminHash));
            self.next_admin_check_ms = self.unix_ms + ADMIN_HASH_INTERVAL_MS;
        }
        let retention_ms = (self.limits.chat_retention_days * 86_400_000.0) as i64;
        if retention_ms > 0 && self.unix_ms >= self.next_prune_ms {
            self.outputs.push(Output::Store(StoreRequest::PruneChat {
                before_ms: self.unix_ms - retention_ms,
            }));
            self.next_prune_ms = self.unix_ms
                + (retention_ms / 4).clamp(SHORTEST_PRUNE_INTERVAL_MS, LONGEST_PRUNE_INTERVAL_MS);
        }
    }

    /// The admin token's hash as stored now: after a reset, the old token stops at once, and those
    /// logged in with it are not the admin any more.
    pub fn admin_hash_read(&mut self, hash: crate::secret::TokenHash) {
        if self.admin_hash == Some(hash) {
            return;
        }
        let was_set = self.admin_hash.is_some();
        self.admin_hash = Some(hash);
        if was_set {
            let mut demoted = 0;
            for info in self.session_info.values_mut() {
                demoted += usize::from(info.admin);
                info.admin = false;
            }
            tracing::info!(
                demoted,
                "the admin token was reset: the old one works no more"
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Chat per address

    /// Every participant from one address together sends chat at most this fast.
    pub(super) fn address_chat_allowed(
        &mut self,
        session: SessionId,
        now: Instant,
    ) -> Result<(), Refusal> {
        let Some(addr) = self.addr_of(session) else {
            return Ok(());
        };
        let limit = RateLimit {
            per_second: self.limits.chat_rate_per_address,
            burst: self.limits.chat_burst_per_address,
        };
        let bucket = self
            .address_chat
            .entry(addr)
            .or_insert_with(|| TokenBucket::full(limit));
        if bucket.take(limit, now) {
            Ok(())
        } else {
            Err(refusal(
                ErrorCode::RateLimited,
                format!(
                    "slow down: everyone from your address together may send {} messages a second",
                    limit.per_second
                ),
            ))
        }
    }

    /// Per-address state of `addr` (a connection from it closed).
    pub(super) fn address_closed(&mut self, addr: Option<IpAddr>) {
        let Some(addr) = addr else { return };
        let still_open = self.session_info.values().any(|i| i.addr == Some(addr));
        if !still_open {
            self.address_chat.remove(&addr);
        }
    }

    // -----------------------------------------------------------------------------------------
    // The admin's requests

    pub(super) fn admin_overview(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        after: Option<String>,
        limit: Option<u32>,
    ) {
        if !self.is_admin(session) {
            return self.refuse(session, id, admin_only());
        }
        let limit = limit.unwrap_or(MAX_ROOMS_PAGE).clamp(1, MAX_ROOMS_PAGE) as usize;
        let (page, has_more) = self.rooms.page(after.as_deref(), limit, true);
        let rooms = page
            .into_iter()
            .filter_map(|summary| {
                let room = self.rooms.room(&summary.name)?;
                let participants = room
                    .members()
                    .iter()
                    .map(|m| AdminParticipant {
                        participant: m.clone(),
                        address: self.addr_of(m.id).map(|a| a.to_string()),
                    })
                    .collect();
                Some(AdminRoom {
                    settings: room.settings(),
                    participants,
                    created_by: self.room_creators.get(&summary.name).map(|a| a.to_string()),
                    idle_since_ms: self.idle_since.get(&summary.name).copied(),
                    default: self.is_default_room(&summary.name),
                    name: summary.name,
                })
            })
            .collect();
        let message = ServerMessage::AdminOverview {
            id,
            rooms,
            has_more,
            total_rooms: self.rooms.count(),
            connections: self.sessions.len(),
            in_rooms: self.seats.len(),
            limits: Box::new(self.limits),
        };
        self.send(session, message);
    }

    /// Everyone in `room` leaves it; the room stays.
    pub(super) fn close_room(&mut self, session: SessionId, id: Option<RequestId>, room: &str) {
        if !self.is_admin(session) {
            return self.refuse(session, id, admin_only());
        }
        let Some(members) = self
            .rooms
            .room(room)
            .map(|r| r.members().iter().map(|m| m.id).collect::<Vec<_>>())
        else {
            let message = format!("there is no room called {room}");
            return self.refuse(session, id, refusal(ErrorCode::NoSuchRoom, message));
        };
        tracing::info!(room, people = members.len(), "closed by the admin");
        for member in members {
            self.send(
                member,
                ServerMessage::RoomClosed {
                    room: room.to_string(),
                },
            );
            if let Some(left) = self.leave_room(member, true) {
                self.send(
                    member,
                    ServerMessage::Left {
                        id: None,
                        room: left,
                    },
                );
            }
        }
        self.send(session, ServerMessage::Ok { id });
    }

    pub(super) fn delete_chat(&mut self, session: SessionId, id: Option<RequestId>, room: &str) {
        if !self.is_admin(session) {
            return self.refuse(session, id, admin_only());
        }
        if self.rooms.summary_of(room).is_none() {
            let message = format!("there is no room called {room}");
            return self.refuse(session, id, refusal(ErrorCode::NoSuchRoom, message));
        }
        self.write(
            session,
            id,
            StoreWrite::DeleteChat {
                room: room.to_string(),
            },
            AfterWrite::ChatDeleted {
                room: room.to_string(),
            },
        );
    }

    /// The store deleted `room`'s chat.
    pub(super) fn chat_deleted(&mut self, session: SessionId, id: Option<RequestId>, room: String) {
        tracing::info!(room = %room, "chat deleted by the admin");
        let members = self.members_except(&room, 0);
        self.outputs.push(Output::Send {
            sessions: members,
            message: ServerMessage::ChatCleared { room },
        });
        if self.sessions.contains(&session) {
            self.send(session, ServerMessage::Ok { id });
        }
    }

    pub(super) fn set_limits(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        change: LimitsChange,
    ) {
        if !self.is_admin(session) {
            return self.refuse(session, id, admin_only());
        }
        let stored = self.admin_limits.then(&change);
        if let Err(message) = self.config.limits.with(&stored).validate() {
            return self.refuse(session, id, refusal(ErrorCode::InvalidLimits, message));
        }
        let value = serde_json::to_string(&stored).unwrap_or_default();
        self.write(
            session,
            id,
            StoreWrite::Setting {
                key: LIMITS_SETTING.to_string(),
                value,
            },
            AfterWrite::Limits { stored },
        );
    }

    /// The admin's limits are stored: they apply now.
    pub(super) fn limits_stored(
        &mut self,
        session: SessionId,
        id: Option<RequestId>,
        stored: LimitsChange,
    ) {
        let limits = self.config.limits.with(&stored);
        self.admin_limits = stored;
        self.apply_limits(limits);
        tracing::info!(?limits, "limits changed by the admin");
        if self.sessions.contains(&session) {
            let limits = Box::new(limits);
            self.send(session, ServerMessage::Limits { id, limits });
        }
    }
}

/// Chat retention as a duration, for logs.
pub fn retention(limits: &ServerLimits) -> Option<Duration> {
    (limits.chat_retention_days > 0.0)
        .then(|| Duration::from_secs_f64(limits.chat_retention_days * 86_400.0))
}
