//! A team for fault tests: three people (ann, bob the manager, cat) in two
//! rooms, one per membership mode, and a way to prove that nobody was removed
//! or demoted, read from Synapse itself.

use std::collections::BTreeMap;
use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec, SpaceRoomLink, SpaceRoomLinkSpec};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::*;

pub const PEOPLE: [&str; 3] = ["ann", "bob", "cat"];
pub const MANAGER: &str = "bob";
const WAIT: Duration = Duration::from_secs(60);

pub struct Team {
    pub client: Client,
    pub ns: String,
    pub users: Api<MatrixUser>,
    pub links: Api<SpaceRoomLink>,
    pub tag: String,
    /// (mode, room id) for the `Enforce` and the `Invite` link.
    pub rooms: Vec<(String, String)>,
}

/// Per room and person: (membership, event id of the member event, power level).
/// A removal and a re-join in between two looks still changes the event id.
pub type Snapshot = BTreeMap<(String, String), (String, String, i64)>;

impl Team {
    /// A namespace with credentials pointing at `server_url` (the shared secret only).
    pub async fn new(prefix: &str, server_url: &str) -> Team {
        let client = kube_client().await;
        let ns = namespace(&client, prefix).await;
        let p = platform();
        credentials_secret(&client, &ns, "matrix", &[("sharedSecret", p.shared_secret()), ("serverUrl", server_url)])
            .await;
        Team {
            users: Api::namespaced(client.clone(), &ns),
            links: Api::namespaced(client.clone(), &ns),
            tag: ns.rsplit('-').next().unwrap_or("x").to_owned(),
            client,
            ns,
            rooms: Vec::new(),
        }
    }

    pub fn username(&self, short: &str) -> String {
        format!("{short}{}", self.tag)
    }

    pub fn id(&self, short: &str) -> String {
        format!("@{}:{}", self.username(short), platform().server_name())
    }

    /// Creates the people (with `extra` merged into each spec) and both links,
    /// and waits until both rooms hold everyone (joined, or invited).
    pub async fn populate(&mut self, extra: Value) {
        for short in PEOPLE {
            let mut spec = json!({"username": self.username(short)});
            merge(&mut spec, &extra);
            let spec: MatrixUserSpec = serde_json::from_value(spec).expect("user spec");
            self.users
                .create(&PostParams::default(), &MatrixUser::new(&self.username(short), spec))
                .await
                .expect("user");
        }
        for mode in ["Enforce", "Invite"] {
            let spec: SpaceRoomLinkSpec = serde_json::from_value(json!({
                "spaceGroupId": format!("{}_{}", mode.to_lowercase(), self.tag),
                "create": true,
                "displayName": format!("Team {mode}"),
                "membership": mode,
                "members": PEOPLE.iter().map(|p| self.username(p)).collect::<Vec<_>>(),
                "managers": [self.username(MANAGER)],
            }))
            .expect("link spec");
            let name = mode.to_lowercase();
            self.links.create(&PostParams::default(), &SpaceRoomLink::new(&name, spec)).await.expect("link");
        }
        for mode in ["Enforce", "Invite"] {
            let name = mode.to_lowercase();
            let room = eventually(&format!("link {name} with every member"), WAIT, || async {
                let l = self.links.get(&name).await.ok()?;
                let status = l.status?;
                let ready = condition(serde_json::to_value(&status).ok().as_ref(), "Ready")?.0 == "True";
                (ready && status.pending_member_count == Some(0)).then_some(status.room_id?)
            })
            .await;
            self.rooms.push((mode.to_owned(), room));
        }
        let snap = self.snapshot().await;
        for ((mode, person), (membership, _, level)) in &snap {
            let want = if mode == "Enforce" { "join" } else { "invite" };
            assert_eq!(membership, want, "{person} in the {mode} room: {snap:?}");
            let want_level = if person.starts_with(&format!("@{MANAGER}")) { 50 } else { 0 };
            assert_eq!(*level, want_level, "{person}'s power in the {mode} room");
        }
    }

    /// Every person's membership and power in both rooms, read from Synapse.
    pub async fn snapshot(&self) -> Snapshot {
        self.try_snapshot().await.expect("room state readable")
    }

    /// `None` while Synapse cannot be read.
    pub async fn try_snapshot(&self) -> Option<Snapshot> {
        let token = admin_token_cached().await;
        let mut snap = Snapshot::new();
        for (mode, room) in &self.rooms {
            let url = format!("{}/_synapse/admin/v1/rooms/{}/state", platform().synapse_url(), enc(room));
            let resp = reqwest::Client::new().get(url).bearer_auth(&token).send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body: Value = resp.json().await.ok()?;
            let state = body["state"].as_array()?;
            let levels = state.iter().find(|e| e["type"] == "m.room.power_levels")?;
            for short in PEOPLE {
                let id = self.id(short);
                let member = state.iter().find(|e| e["type"] == "m.room.member" && e["state_key"] == id.as_str());
                let (membership, event) = member.map_or((String::new(), String::new()), |e| {
                    (
                        e["content"]["membership"].as_str().unwrap_or_default().to_owned(),
                        e["event_id"].as_str().unwrap_or_default().to_owned(),
                    )
                });
                let level = levels["content"]["users"][&id].as_i64().unwrap_or(0);
                snap.insert((mode.clone(), id), (membership, event, level));
            }
        }
        Some(snap)
    }

    /// Reads Synapse every 500 ms for `how_long` (skipping moments it cannot be
    /// read) and fails at the first change from `before`.
    pub async fn unchanged_for(&self, before: &Snapshot, how_long: Duration, when: &str) {
        let deadline = tokio::time::Instant::now() + how_long;
        while tokio::time::Instant::now() < deadline {
            if let Some(now) = self.try_snapshot().await {
                assert_eq!(&now, before, "{when}: somebody was removed or demoted");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn patch_user(&self, short: &str, patch: Value) {
        self.users
            .patch(&self.username(short), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("user patched");
    }

    /// Waits until `short`'s MatrixUser has `Ready=<status>`; returns (reason, message).
    pub async fn user_ready(&self, short: &str, status: &str) -> (String, String) {
        let name = self.username(short);
        eventually(&format!("{name} Ready={status}"), WAIT, || async {
            let u = self.users.get(&name).await.ok()?;
            let fresh = u.status.as_ref()?.observed_generation == u.metadata.generation;
            let (st, reason, message) = condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready")?;
            (st == status && fresh).then_some((reason, message))
        })
        .await
    }

    /// Waits until a condition of `short`'s MatrixUser has `status`; returns its message.
    pub async fn user_condition(&self, short: &str, type_: &str, status: &str) -> String {
        let name = self.username(short);
        eventually(&format!("{name} {type_}={status}"), WAIT, || async {
            let u = self.users.get(&name).await.ok()?;
            let (st, _, message) = condition(serde_json::to_value(&u.status).ok().as_ref(), type_)?;
            (st == status).then_some(message)
        })
        .await
    }

    /// Every MatrixUser still names its account in status.
    pub async fn ids_kept(&self) {
        for short in PEOPLE {
            let u = self.users.get(&self.username(short)).await.expect("user");
            assert_eq!(u.status.and_then(|s| s.user_id), Some(self.id(short)), "status.userId of {short}");
        }
    }
}

fn merge(into: &mut Value, extra: &Value) {
    if let (Some(into), Some(extra)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            into.insert(k.clone(), v.clone());
        }
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One test admin per test binary (registration is bcrypt-slow).
async fn admin_token_cached() -> String {
    static TOKEN: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    TOKEN.get_or_init(|| async { admin_token().await.expose().to_owned() }).await.clone()
}
