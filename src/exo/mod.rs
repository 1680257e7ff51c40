//! The eXo side: reading spaces, memberships and users from eXo's REST API
//! (`../shared/docs/exo-rest-contract.md`: the Meeds 7, eXo 6.x and eXo 5.3 shapes).

mod client;
mod model;

pub use client::{ExoClient, ExoError};
pub use model::{Dialect, Snapshot, Space, User};
