use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns;

/// A Matrix space grouping the rooms of the SpaceRoomLinks it selects: the
/// intranet as one entry in a person's Matrix client.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exomatrix.dev",
    version = "v1alpha1",
    kind = "MatrixSpace",
    namespaced,
    status = "MatrixSpaceStatus",
    shortname = "mxs",
    category = "exomatrix",
    printcolumn = r#"{"name":"ROOMS","type":"integer","jsonPath":".status.rooms"}"#,
    printcolumn = r#"{"name":"MEMBERS","type":"integer","jsonPath":".status.members"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MatrixSpaceSpec {
    /// The space's name in Matrix clients; the object's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub display_name: Option<String>,

    /// The space's topic (HTML is kept in the `m.topic` text/html part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub topic: Option<String>,

    /// http(s) URL of the space's avatar image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = patterns::HTTP_URL))]
    pub avatar_url: Option<String>,

    /// Which SpaceRoomLinks of this namespace are rooms of the space (`{}` selects
    /// every link; absent selects none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])").message("linkSelector: operator must be In, NotIn, Exists or DoesNotExist"))]
    pub link_selector: Option<LabelSelector>,

    /// eXo usernames of the space's managers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"), inner(length(min = 1, max = 100), regex(pattern = patterns::USERNAME)))]
    pub managers: Vec<String>,

    /// Power level given to managers; the operator keeps 100 so it can always demote them.
    #[serde(default = "default_manager_power_level")]
    #[schemars(range(min = 1, max = 99))]
    pub manager_power_level: i64,

    /// What happens to the space room when this object is deleted.
    #[serde(default)]
    pub deletion_policy: SpaceDeletionPolicy,
}

fn default_manager_power_level() -> i64 {
    50
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SpaceDeletionPolicy {
    /// Leave the space room as it is.
    #[default]
    Retain,
    /// Remove it from its rooms, then delete and purge it (Synapse admin API).
    Delete,
}

/// What the operator last saw and did; written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatrixSpaceStatus {
    /// The space's Matrix room (of type `m.space`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// The alias the operator created the space with; it makes creation idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_alias: Option<String>,
    /// Rooms in the space (`m.space.child`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<i64>,
    /// People joined to the space (the operator's own account not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
    /// The `metadata.generation` the conditions describe; older than the generation: not looked at yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling=True` while work is under way, `Stalled=True` when a person must act.
    /// These are the kstatus conventions that Flux, kpt and Argo CD read.
    /// Also `Blocked` and `AvatarSynced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When the space was last changed to match (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// The avatar last uploaded, so unchanged bytes are not uploaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<super::AvatarStatus>,
}
