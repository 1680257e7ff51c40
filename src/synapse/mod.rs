//! The Synapse adapter: typed calls to the client and admin APIs. Every method
//! documents the wire call it makes; errors are classified here, once.

mod admin;
mod client;
mod directory;
mod error;
mod mode;
mod register;
mod rooms;

pub use admin::{AdminUser, ListedUser, Pusher, Threepid, UserListPage, UserUpdate};
pub use client::{Synapse, enc, total_calls};
pub use error::{Error, RetryKind};
pub use mode::AuthMode;
pub use register::{Registered, Registration, registration_mac};
pub use rooms::{CreateRoom, RoomDetails, RoomStateEvent, StateEvent};

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct WhoAmI {
    pub user_id: crate::ids::OwnedUserId,
}

impl Synapse {
    /// GET /_matrix/client/v3/account/whoami
    pub async fn whoami(&self) -> Result<WhoAmI, Error> {
        self.get("/_matrix/client/v3/account/whoami").await
    }
}
