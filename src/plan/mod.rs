//! Pure decisions: compare what a resource wants with what Synapse shows and
//! return the calls that close the gap. No I/O here.

pub mod creation;
pub mod finalizer;
pub mod members;
pub mod room;
pub mod source;
pub mod space;
pub mod user;

/// What the avatar of an account, a room or a space should be.
#[derive(Debug, Clone, PartialEq)]
pub enum AvatarWish {
    /// No avatar managed (none in the spec, and none set by us before).
    Leave,
    /// This `mxc://` URI.
    Set(String),
    /// Remove the avatar we set earlier (the spec dropped `avatarUrl`).
    Clear,
}
