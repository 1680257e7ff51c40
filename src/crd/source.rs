use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{LinkDeletionPolicy, patterns};

/// Optional: import an eXo server's spaces and users as SpaceRoomLinks and MatrixUsers.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exomatrix.dev",
    version = "v1alpha1",
    kind = "ExoSource",
    namespaced,
    status = "ExoSourceStatus",
    shortname = "exo",
    category = "exomatrix",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"SPACES","type":"integer","jsonPath":".status.spacesSeen"}"#,
    printcolumn = r#"{"name":"USERS","type":"integer","jsonPath":".status.usersSeen"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ExoSourceSpec {
    /// The eXo server's base URL, e.g. `https://exo.example.org`.
    #[schemars(length(max = 2048), regex(pattern = patterns::HTTP_URL))]
    pub url: String,

    /// A `kubernetes.io/basic-auth` Secret in this namespace (keys `username`,
    /// `password`) of an eXo spaces super manager.
    pub credentials_secret_ref: SecretRef,

    /// How often to read eXo, e.g. `5m`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = patterns::DURATION))]
    pub interval: String,

    #[serde(default)]
    pub spaces: SpaceFilter,

    /// Create rooms for imported spaces (`create` of the links it writes).
    #[serde(default = "default_true")]
    pub create_rooms: bool,

    /// `deletionPolicy` of the links it writes.
    #[serde(default)]
    pub deletion_policy: LinkDeletionPolicy,

    /// The intranet as one Matrix space: the source writes a MatrixSpace of its own
    /// name grouping the links it writes. Removing this field deletes that MatrixSpace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_space: Option<SourceSpace>,

    /// What happens in Matrix when this ExoSource is deleted and Kubernetes deletes the links
    /// and users it wrote with it: `Retain` (default) keeps every room, member and account;
    /// `ApplyPolicies` applies each object's own `deletionPolicy` (links: `deletionPolicy` above;
    /// users: `Deactivate`), as if each had been deleted by hand.
    #[serde(default)]
    pub on_source_deletion: OnSourceDeletion,
}

/// A Secret in the object's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

/// The MatrixSpace an ExoSource writes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpace {
    /// The space's name; the ExoSource's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub display_name: Option<String>,
    /// The space's topic; may contain HTML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub topic: Option<String>,
    /// http(s) URL of the space's avatar image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = patterns::HTTP_URL))]
    pub avatar_url: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum OnSourceDeletion {
    #[default]
    Retain,
    ApplyPolicies,
}

fn default_interval() -> String {
    "5m".to_owned()
}

fn default_true() -> bool {
    true
}

/// Glob patterns (`*`, `?`) on the space's pretty name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpaceFilter {
    /// Only spaces matching one of these; every space when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Spaces matching one of these are left out, even when included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// What the operator last read from eXo and wrote; written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExoSourceStatus {
    /// Spaces in eXo's last complete answer (before include/exclude).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spaces_seen: Option<i64>,
    /// Users in eXo's last complete answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_seen: Option<i64>,
    /// SpaceRoomLinks and MatrixUsers written since the ExoSource was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_written: Option<i64>,
    /// The `metadata.generation` the conditions describe; older than the generation: not looked at yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling=True` while work is under way, `Stalled=True` when a person must act.
    /// These are the kstatus conventions that Flux, kpt and Argo CD read.
    /// Also `Conflict` (objects it will not overwrite) and `RosterHeld`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When a complete eXo answer last led to a write, or was first acted on (RFC 3339): a pass that finds
    /// nothing to change writes no status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
}
