//! The eXo side: reading spaces, memberships and users from eXo's REST API
//! (`../shared/docs/exo-rest-contract.md`, the Meeds 7 shapes).

mod client;
mod model;

pub use client::{ExoClient, ExoError};
pub use model::{Snapshot, Space, User};
