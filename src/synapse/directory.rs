//! Room aliases and the token account's own account data: what the private
//! population window of a new room needs (see `controller::link::window`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::client::enc;
use super::{Error, Synapse};
use crate::ids::{RoomAliasId, RoomId, UserId};

#[derive(Deserialize)]
struct Ignored {}

impl Synapse {
    /// PUT /_matrix/client/v3/directory/room/{roomAlias} — `false` when the alias exists already
    /// (Synapse answers 409), whichever room it points at.
    pub async fn put_alias(&self, alias: &RoomAliasId, room_id: &RoomId) -> Result<bool, Error> {
        let path = format!("/_matrix/client/v3/directory/room/{}", enc(alias.as_str()));
        match self.put::<_, Ignored>(&path, &json!({"room_id": room_id})).await {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// GET /_matrix/client/v3/user/{userId}/account_data/{type} — the token account's own
    /// global account data, readable by nobody else (but server admins); `None` when unset.
    pub async fn account_data(&self, user_id: &UserId, kind: &str) -> Result<Option<Value>, Error> {
        let path = format!("/_matrix/client/v3/user/{}/account_data/{}", enc(user_id.as_str()), enc(kind));
        match self.get(&path).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is(404, "M_NOT_FOUND") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PUT /_matrix/client/v3/user/{userId}/account_data/{type}
    pub async fn put_account_data(&self, user_id: &UserId, kind: &str, content: &Value) -> Result<(), Error> {
        let path = format!("/_matrix/client/v3/user/{}/account_data/{}", enc(user_id.as_str()), enc(kind));
        let _: Ignored = self.put(&path, content).await?;
        Ok(())
    }
}
