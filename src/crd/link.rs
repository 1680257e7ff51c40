use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns;

/// One eXo space, one Matrix room.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exomatrix.dev",
    version = "v1alpha1",
    kind = "SpaceRoomLink",
    namespaced,
    status = "SpaceRoomLinkStatus",
    shortname = "srl",
    category = "exomatrix",
    printcolumn = r#"{"name":"SPACE","type":"string","jsonPath":".spec.spaceGroupId"}"#,
    printcolumn = r#"{"name":"ROOM","type":"string","jsonPath":".status.roomId"}"#,
    printcolumn = r#"{"name":"MEMBERS","type":"integer","jsonPath":".status.joinedMembers"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SpaceRoomLinkSpec {
    /// eXo's group id of the space: the part after `/spaces/`, e.g. `support_team`. Immutable.
    #[schemars(length(min = 1, max = 200), regex(pattern = patterns::SPACE_GROUP_ID))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spaceGroupId is immutable: delete the link and create a new one"))]
    pub space_group_id: String,

    /// Link this existing room instead of creating one (`!opaque:server` or, from room version 12, `!opaque`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255), regex(pattern = patterns::ROOM_ID))]
    pub room_id: Option<String>,

    /// Create a room when `roomId` is empty. Ignored when `roomId` is set.
    #[serde(default)]
    pub create: bool,

    /// The space's name; becomes the room name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub display_name: Option<String>,

    /// The space's description; may contain HTML (kept in the `m.topic` text/html part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub description: Option<String>,

    /// http(s) URL of the space's avatar image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = patterns::HTTP_URL))]
    pub avatar_url: Option<String>,

    /// eXo usernames of the space's members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 100), regex(pattern = patterns::USERNAME)))]
    pub members: Vec<String>,

    /// eXo usernames of the space's managers (a manager is a member).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 100), regex(pattern = patterns::USERNAME)))]
    pub managers: Vec<String>,

    /// Power level given to managers; the operator keeps 100 so it can always demote them.
    #[serde(default = "default_manager_power_level")]
    #[schemars(range(min = 1, max = 99))]
    pub manager_power_level: i64,

    /// `Enforce` force-joins members and re-joins those who left; `Invite` only invites.
    #[serde(default)]
    pub membership: MembershipMode,

    /// What happens to the room when this link is deleted.
    #[serde(default)]
    pub deletion_policy: LinkDeletionPolicy,

    /// Apply nothing; show what would be done in `status.plan`.
    #[serde(default)]
    pub suspend: bool,
}

fn default_manager_power_level() -> i64 {
    50
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MembershipMode {
    #[default]
    Enforce,
    Invite,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LinkDeletionPolicy {
    #[default]
    Retain,
    Archive,
    Delete,
}

/// What the operator last saw and did; written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpaceRoomLinkStatus {
    /// The linked Matrix room, known as soon as it is created or linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// The room alias the operator created the room with (`#<prefix><spaceGroupId>:<server>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_alias: Option<String>,
    /// The `metadata.generation` the conditions describe; older than the generation: not looked at yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling=True` while work is under way, `Stalled=True` when a person must act.
    /// These are the kstatus conventions that Flux, kpt and Argo CD read.
    /// Also `RoomReady`, `MembersSynced`, `Conflict`, `Blocked`, `AvatarSynced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// People joined to the room, the operator's own account not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined_members: Option<i64>,
    /// Listed people without a Matrix account yet (capped list; see `pendingMemberCount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_members: Vec<String>,
    /// How many listed people have no ready MatrixUser yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_member_count: Option<i64>,
    /// What a reconcile would do (always filled while `suspend` is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// When the operator last changed something in Synapse to match the spec (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// The avatar last uploaded, so unchanged bytes are not uploaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<super::AvatarStatus>,
}

/// A readable dry run: how many actions of each kind, and the first few.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// Number of planned actions per kind, e.g. `JoinUser: 3`.
    #[serde(default)]
    pub counts: std::collections::BTreeMap<String, i64>,
    /// The first few planned actions, described.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_actions: Vec<String>,
}
