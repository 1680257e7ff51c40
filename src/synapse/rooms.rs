//! Rooms through the client API, acting as the token's account.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::enc;
use super::{Error, Synapse};

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
    pub preset: Option<&'static str>,
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
    room_id: String,
}

impl Synapse {
    /// POST /_matrix/client/v3/createRoom
    pub async fn create_room(&self, req: &CreateRoom) -> Result<String, Error> {
        let r: RoomIdBody = self.post("/_matrix/client/v3/createRoom", req).await?;
        Ok(r.room_id)
    }

    /// GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
    /// `None` when the room has no such state event.
    pub async fn room_state(&self, room_id: &str, kind: &str, state_key: &str) -> Result<Option<Value>, Error> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/{}/{}",
            enc(room_id),
            enc(kind),
            enc(state_key)
        );
        match self.get(&path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is(404, "M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e),
        }
    }
}
