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
    /// What the space itself says of its roster (M6/M7; X5 has no counts). Used to
    /// tell an empty roster from one the server did not give us.
    #[serde(default, deserialize_with = "lenient_count")]
    pub members_count: Option<u64>,
    #[serde(default, deserialize_with = "lenient_count")]
    pub managers_count: Option<u64>,
}

/// A count as a number or a numeric string; anything else counts as unknown.
fn lenient_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
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

/// Which generation of eXo's REST API answered, told apart by what it answers
/// (`exo-rest-contract.md` §7): the rosters and user listings differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Meeds / eXo 7: rosters through `spacesMemberships?space={id}`.
    #[default]
    Meeds7,
    /// eXo 6.x: `spacesMemberships` lists only the caller's; rosters through `/spaces/{id}/users`.
    Exo6,
    /// eXo 5.3: no `prettyName` nor counts on spaces, no user filters, `size` is the page length.
    Exo5,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Meeds7 => "Meeds/eXo 7",
            Dialect::Exo6 => "eXo 6.x",
            Dialect::Exo5 => "eXo 5.x",
        })
    }
}

/// One complete, consistent read of an eXo server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub dialect: Dialect,
    pub spaces: Vec<Space>,
    /// Space id → usernames with the `member` role (managers are members too).
    pub members: BTreeMap<String, BTreeSet<String>>,
    /// Space id → usernames with the `manager` role.
    pub managers: BTreeMap<String, BTreeSet<String>>,
    /// Every user eXo lists, enabled or not.
    pub users: BTreeMap<String, User>,
}
