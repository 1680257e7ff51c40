//! The Matrix Authentication Service adapter: MAS's admin API, used when
//! Synapse delegates authentication to MAS (`../shared/docs/mas-contract.md`).

mod client;
mod error;
mod model;
pub mod session;

pub use client::Mas;
pub use error::Error;
pub use model::{NewUser, PersonalSession, User, UserEmail};

/// Scopes of a personal session that acts as an account on the client API and
/// Synapse's admin API (a Synapse admin is whoever holds the second scope).
pub const ADMIN_SESSION_SCOPE: &str = "urn:matrix:client:api:* urn:synapse:admin:*";
/// Scope of a session that only acts as the user (e.g. to set a pusher).
pub const USER_SESSION_SCOPE: &str = "urn:matrix:client:api:*";
