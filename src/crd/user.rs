use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns;

/// One person, one Matrix account.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exomatrix.dev",
    version = "v1alpha1",
    kind = "MatrixUser",
    namespaced,
    status = "MatrixUserStatus",
    shortname = "mxu",
    category = "exomatrix",
    printcolumn = r#"{"name":"USER","type":"string","jsonPath":".spec.username"}"#,
    printcolumn = r#"{"name":"MATRIX ID","type":"string","jsonPath":".status.userId"}"#,
    printcolumn = r#"{"name":"EMAIL","type":"string","jsonPath":".spec.email"}"#,
    printcolumn = r#"{"name":"ENABLED","type":"boolean","jsonPath":".spec.enabled"}"#,
    printcolumn = r#"{"name":"READY","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MatrixUserSpec {
    /// The eXo username. Immutable; the Matrix localpart is derived from it (lowercased).
    #[schemars(length(min = 1, max = 100), regex(pattern = patterns::USERNAME))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("username is immutable: delete the MatrixUser and create a new one"))]
    pub username: String,

    /// The person's display name in Matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub display_name: Option<String>,

    /// Where Synapse sends notification emails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 320), regex(pattern = patterns::EMAIL))]
    pub email: Option<String>,

    /// http(s) URL of the person's avatar image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = patterns::HTTP_URL))]
    pub avatar_url: Option<String>,

    /// `false` deactivates the account, `true` reactivates it.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Make the account a Synapse server admin.
    #[serde(default)]
    pub admin: bool,

    /// A Secret key holding the account's password; without it the account has
    /// no password (people sign in through SSO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// What happens to the account when this object is deleted.
    #[serde(default)]
    pub deletion_policy: UserDeletionPolicy,
}

fn default_true() -> bool {
    true
}

/// A key of a Secret in the object's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
    /// Key in the Secret holding the value; `password` when absent.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UserDeletionPolicy {
    #[default]
    Deactivate,
    Retain,
    Erase,
}

/// What the operator last saw and did; written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatrixUserStatus {
    /// `@localpart:server_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The `metadata.generation` the conditions describe; older than the generation: not looked at yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling=True` while work is under way, `Stalled=True` when a person must act.
    /// These are the kstatus conventions that Flux, kpt and Argo CD read.
    /// Also `Conflict` and `AvatarSynced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When the operator last changed something in Synapse to match the spec (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// The avatar last uploaded, so unchanged bytes are not uploaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<AvatarStatus>,
}

/// An avatar image the operator uploaded to the media repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvatarStatus {
    /// The `avatarUrl` it was downloaded from.
    pub source_url: String,
    /// SHA-256 of the image bytes.
    pub sha256: String,
    /// The `mxc://` URI Synapse gave it.
    pub content_uri: String,
}
