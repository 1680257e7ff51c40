//! Pure decisions: compare what a resource wants with what Synapse shows and
//! return the calls that close the gap. No I/O here.

pub mod members;
pub mod room;
pub mod source;
pub mod space;
pub mod user;
