//! What the operator reads from eXo. Every field is optional on the wire
//! (eXo drops null and empty values), so defaults are explicit here.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Space {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub pretty_name: Option<String>,
    /// `/spaces/<suffix>`: stable across renames.
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
}

impl Space {
    /// The part of `groupId` after `/spaces/`, what a `SpaceRoomLink` calls `spaceGroupId`.
    pub fn group_suffix(&self) -> Option<&str> {
        self.group_id.as_deref()?.strip_prefix("/spaces/").filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub username: String,
    #[serde(default)]
    pub fullname: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub avatar: Option<String>,
    #[serde(default)]
    pub is_default_avatar: bool,
}

fn yes() -> bool {
    true
}

/// One complete, consistent read of an eXo server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub spaces: Vec<Space>,
    /// Space id → usernames with the `member` role (managers are members too).
    pub members: BTreeMap<String, BTreeSet<String>>,
    /// Space id → usernames with the `manager` role.
    pub managers: BTreeMap<String, BTreeSet<String>>,
    /// Every user eXo lists, enabled or not.
    pub users: BTreeMap<String, User>,
}
