//! Rooms through the client API, acting as the token's account.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::enc;
use super::{Error, Synapse};
use crate::ids::{OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, UserId};

/// One state event to put into the room as it is created.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StateEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub state_key: String,
    pub content: Value,
}

/// Body of `createRoom`; only what the operator uses.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CreateRoom {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invite: Vec<OwnedUserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_alias_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub initial_state: Vec<StateEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_level_content_override: Option<Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub creation_content: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct RoomIdBody {
    room_id: OwnedRoomId,
}

/// One current state event as `GET /rooms/{id}/state` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RoomStateEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub state_key: String,
    #[serde(default)]
    pub sender: String,
    #[serde(default)]
    pub content: Value,
}

#[derive(Deserialize)]
struct Ignored {}

#[derive(Deserialize)]
struct EventId {
    #[serde(default)]
    event_id: String,
}

#[derive(Deserialize)]
struct DeleteId {
    delete_id: String,
}

#[derive(Deserialize)]
struct DeleteStatus {
    status: String,
}

/// What the admin room details say about a room.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RoomDetails {
    pub room_id: OwnedRoomId,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub creator: Option<OwnedUserId>,
    #[serde(default)]
    pub joined_local_members: i64,
    /// Events in the room's current state: 1 while only the create event exists.
    #[serde(default)]
    pub state_events: i64,
}

#[derive(Deserialize)]
struct Members {
    #[serde(default)]
    members: Vec<OwnedUserId>,
}

#[derive(Deserialize)]
struct JoinedRooms {
    #[serde(default)]
    joined_rooms: Vec<OwnedRoomId>,
}

impl Synapse {
    /// POST /_matrix/client/v3/createRoom
    pub async fn create_room(&self, req: &CreateRoom) -> Result<OwnedRoomId, Error> {
        let r: RoomIdBody = self.post("/_matrix/client/v3/createRoom", req).await?;
        Ok(r.room_id)
    }

    /// GET /_matrix/client/v3/capabilities — the room version new rooms get.
    pub async fn default_room_version(&self) -> Result<String, Error> {
        let caps: Value = self.get("/_matrix/client/v3/capabilities").await?;
        Ok(caps["capabilities"]["m.room_versions"]["default"].as_str().unwrap_or("10").to_owned())
    }

    /// GET /_matrix/client/v3/rooms/{roomId}/state — every current state event, one call.
    pub async fn full_state(&self, room_id: &RoomId) -> Result<Vec<RoomStateEvent>, Error> {
        self.get(&format!("/_matrix/client/v3/rooms/{}/state", enc(room_id.as_str()))).await
    }

    /// GET /_synapse/admin/v1/rooms/{roomId}/state — the room's state without being in it.
    pub async fn admin_room_state(&self, room_id: &RoomId) -> Result<Vec<RoomStateEvent>, Error> {
        #[derive(Deserialize)]
        struct State {
            state: Vec<RoomStateEvent>,
        }
        let s: State = self.get(&format!("/_synapse/admin/v1/rooms/{}/state", enc(room_id.as_str()))).await?;
        Ok(s.state)
    }

    /// PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
    pub async fn put_state(
        &self,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
        content: &Value,
    ) -> Result<String, Error> {
        let path = format!("/_matrix/client/v3/rooms/{}/state/{}/{}", enc(room_id.as_str()), enc(kind), enc(state_key));
        let e: EventId = self.put(&path, content).await?;
        Ok(e.event_id)
    }

    /// GET /_matrix/client/v3/directory/room/{roomAlias} — `None` for an unknown alias.
    pub async fn resolve_alias(&self, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>, Error> {
        match self.get::<RoomIdBody>(&format!("/_matrix/client/v3/directory/room/{}", enc(alias.as_str()))).await {
            Ok(r) => Ok(Some(r.room_id)),
            Err(e) if e.is(404, "M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// DELETE /_matrix/client/v3/directory/room/{roomAlias} — a server admin may remove any local alias.
    pub async fn delete_alias(&self, alias: &RoomAliasId) -> Result<(), Error> {
        let path = format!("/_matrix/client/v3/directory/room/{}", enc(alias.as_str()));
        let _: Ignored = self.delete(&path, &serde_json::json!({})).await?;
        Ok(())
    }

    /// GET /_synapse/admin/v1/rooms/{roomId} — `None` for a room this server does not know.
    pub async fn room_details(&self, room_id: &RoomId) -> Result<Option<RoomDetails>, Error> {
        match self.get(&format!("/_synapse/admin/v1/rooms/{}", enc(room_id.as_str()))).await {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GET /_synapse/admin/v1/rooms/{roomId}/members — joined members.
    pub async fn room_members(&self, room_id: &RoomId) -> Result<Vec<OwnedUserId>, Error> {
        let m: Members = self.get(&format!("/_synapse/admin/v1/rooms/{}/members", enc(room_id.as_str()))).await?;
        Ok(m.members)
    }

    /// GET /_synapse/admin/v1/users/{userId}/joined_rooms
    pub async fn joined_rooms_of(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>, Error> {
        let r: JoinedRooms =
            self.get(&format!("/_synapse/admin/v1/users/{}/joined_rooms", enc(user_id.as_str()))).await?;
        Ok(r.joined_rooms)
    }

    /// POST /_synapse/admin/v1/join/{roomId} — joins a local user; "already in the room" counts as done.
    pub async fn admin_join(&self, room_id: &RoomId, user_id: &UserId) -> Result<(), Error> {
        let body = serde_json::json!({"user_id": user_id});
        match self.post::<_, Ignored>(&format!("/_synapse/admin/v1/join/{}", enc(room_id.as_str())), &body).await {
            Ok(_) => Ok(()),
            Err(e) if e.is(403, "M_FORBIDDEN") && e.to_string().contains("already in the room") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// POST /_matrix/client/v3/rooms/{roomId}/invite — "already in the room" counts as done.
    pub async fn invite(&self, room_id: &RoomId, user_id: &UserId) -> Result<(), Error> {
        let body = serde_json::json!({"user_id": user_id});
        match self
            .post::<_, Ignored>(&format!("/_matrix/client/v3/rooms/{}/invite", enc(room_id.as_str())), &body)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(403, "M_FORBIDDEN") && e.to_string().contains("already in the room") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// POST /_matrix/client/v3/rooms/{roomId}/kick — "not in the room" counts as done.
    pub async fn kick(&self, room_id: &RoomId, user_id: &UserId, reason: &str) -> Result<(), Error> {
        let body = serde_json::json!({"user_id": user_id, "reason": reason});
        match self.post::<_, Ignored>(&format!("/_matrix/client/v3/rooms/{}/kick", enc(room_id.as_str())), &body).await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is(403, "M_FORBIDDEN") && e.to_string().contains("not in the room") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// POST /_synapse/admin/v1/rooms/{roomId}/make_room_admin — gives `user_id` power 100
    /// (and, in an invite-only room, an invite).
    pub async fn make_room_admin(&self, room_id: &RoomId, user_id: &UserId) -> Result<(), Error> {
        let body = serde_json::json!({"user_id": user_id});
        let _: Ignored =
            self.post(&format!("/_synapse/admin/v1/rooms/{}/make_room_admin", enc(room_id.as_str())), &body).await?;
        Ok(())
    }

    /// POST /_matrix/client/v3/join/{roomId} — the token's own account joins.
    pub async fn join(&self, room_id: &RoomId) -> Result<(), Error> {
        let _: Ignored =
            self.post(&format!("/_matrix/client/v3/join/{}", enc(room_id.as_str())), &serde_json::json!({})).await?;
        Ok(())
    }

    /// DELETE /_synapse/admin/v2/rooms/{roomId} with purge — returns the delete id.
    pub async fn delete_room(&self, room_id: &RoomId) -> Result<String, Error> {
        let body = serde_json::json!({"block": true, "purge": true});
        let d: DeleteId = self.delete(&format!("/_synapse/admin/v2/rooms/{}", enc(room_id.as_str())), &body).await?;
        Ok(d.delete_id)
    }

    /// GET /_synapse/admin/v2/rooms/delete_status/{deleteId} — `active`, `complete`, `failed`, …
    pub async fn delete_status(&self, delete_id: &str) -> Result<String, Error> {
        let d: DeleteStatus = self.get(&format!("/_synapse/admin/v2/rooms/delete_status/{}", enc(delete_id))).await?;
        Ok(d.status)
    }

    /// GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
    /// `None` when the room has no such state event.
    pub async fn room_state(&self, room_id: &RoomId, kind: &str, state_key: &str) -> Result<Option<Value>, Error> {
        let path = format!("/_matrix/client/v3/rooms/{}/state/{}/{}", enc(room_id.as_str()), enc(kind), enc(state_key));
        match self.get(&path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is(404, "M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e),
        }
    }
}
