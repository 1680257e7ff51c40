//! The checks after each fault, read from Synapse itself and from kstatus:
//! one room per space (alias and operator's rooms), exactly the listed people
//! joined, managers at the manager level and nobody else raised, nobody who
//! stayed listed ever left (membership history, not only the end state), and
//! every object Current.

use std::collections::{BTreeMap, BTreeSet};

use exo_matrix_operator::crd::SpaceRoomLink;
use exo_matrix_operator::synapse::Synapse;
use kube::Api;
use serde_json::Value;

use crate::support::platform;
use crate::world::World;

/// The default `managerPowerLevel` of a link the source writes.
const MANAGER_LEVEL: i64 = 50;

#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub objects: usize,
    pub rooms: usize,
    pub members: usize,
    /// Membership `leave` events in the rooms' histories, all allowed (people eXo dropped).
    pub kicks: usize,
}

pub struct Checker {
    pub client: kube::Client,
    pub ns: String,
    pub admin: Synapse,
    pub token: String,
    pub operator: String,
    pub server: String,
}

/// Why the platform is not (yet) where it must be; `Broken` never heals.
pub enum NotYet {
    Waiting(String),
    Broken(String),
}

fn waiting(why: impl Into<String>) -> NotYet {
    NotYet::Waiting(why.into())
}

impl Checker {
    fn id(&self, username: &str) -> String {
        format!("@{}:{}", username.to_lowercase(), self.server)
    }

    /// kstatus' verdict on every SpaceRoomLink, MatrixUser and ExoSource: the ones not Current.
    fn not_current(&self) -> Result<(usize, Vec<String>), String> {
        let p = platform();
        let (ok, out, err) = p.kubectl_run(&["get", "srl,mxu,exo", "-n", &self.ns, "-o", "json"], None);
        if !ok {
            return Err(format!("kubectl get: {err}"));
        }
        let mut child = std::process::Command::new(p.var("KSTATUS"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), out.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let lines: Vec<Value> =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let bad = lines
            .iter()
            .filter(|v| v["status"] != "Current")
            .map(|v| format!("{} {}: {} {}", v["kind"], v["name"], v["status"], v["message"]))
            .collect();
        Ok((lines.len(), bad))
    }

    /// Leave and ban events in a room's whole history, by target.
    async fn leaves(&self, room: &str) -> Result<Vec<String>, String> {
        let http = reqwest::Client::new();
        let base = format!(
            "{}/_synapse/admin/v1/rooms/{}/messages?dir=f&limit=1000",
            platform().synapse_url(),
            room.replace('!', "%21").replace(':', "%3A")
        );
        let mut from: Option<String> = None;
        let mut out = Vec::new();
        for _ in 0..1000 {
            let url = match &from {
                Some(token) => format!("{base}&from={token}"),
                None => base.clone(),
            };
            let resp = http.get(url).bearer_auth(&self.token).send().await.map_err(|e| e.to_string())?;
            let body: Value =
                resp.error_for_status().map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
            let chunk = body["chunk"].as_array().cloned().unwrap_or_default();
            out.extend(
                chunk
                    .iter()
                    .filter(|e| e["type"] == "m.room.member")
                    .filter(|e| matches!(e["content"]["membership"].as_str(), Some("leave" | "ban")))
                    .filter_map(|e| e["state_key"].as_str().map(str::to_owned)),
            );
            match body["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => return Ok(out),
            }
        }
        Err(format!("{room}: history without end"))
    }

    /// Every invariant at once.
    pub async fn check(&self, world: &World) -> Result<Figures, NotYet> {
        let expected = world.expected();
        let (objects, bad) = self.not_current().map_err(waiting)?;
        if let Some(first) = bad.first() {
            return Err(waiting(format!("{} objects not Current, e.g. {first}", bad.len())));
        }
        let links = Api::<SpaceRoomLink>::namespaced(self.client.clone(), &self.ns)
            .list(&Default::default())
            .await
            .map_err(|e| waiting(e.to_string()))?
            .items;
        let by_space: BTreeMap<String, &SpaceRoomLink> = links
            .iter()
            .filter_map(|l| Some((l.metadata.name.as_deref()?.strip_prefix("exo-space-")?.to_owned(), l)))
            .collect();
        if by_space.keys().ne(expected.keys()) {
            return Err(waiting(format!("{} links for {} spaces", by_space.len(), expected.len())));
        }
        let mut figures = Figures { objects, ..Figures::default() };
        let mut rooms = BTreeSet::new();
        for (space, (members, managers)) in &expected {
            let status = by_space[space].status.as_ref().ok_or_else(|| waiting(format!("{space}: no status")))?;
            let room = status.room_id.clone().ok_or_else(|| waiting(format!("{space}: no room")))?;
            let alias = status.room_alias.clone().ok_or_else(|| waiting(format!("{space}: no alias")))?;
            match self.admin.resolve_alias(&crate::support::alias(&alias)).await {
                Ok(Some(r)) if r == room => {}
                Ok(other) => return Err(NotYet::Broken(format!("{alias} names {other:?}, the link {room}"))),
                Err(e) => return Err(waiting(e.to_string())),
            }
            if !rooms.insert(room.clone()) {
                return Err(NotYet::Broken(format!("{room} linked twice")));
            }
            let state =
                self.admin.admin_room_state(&crate::support::rid(&room)).await.map_err(|e| waiting(e.to_string()))?;
            let joined: BTreeSet<String> = state
                .iter()
                .filter(|e| e.kind == "m.room.member" && e.content["membership"] == "join")
                .map(|e| e.state_key.clone())
                .filter(|u| *u != self.operator)
                .collect();
            let want: BTreeSet<String> = members.iter().map(|u| self.id(u)).collect();
            if joined != want {
                let missing: Vec<_> = want.difference(&joined).collect();
                let extra: Vec<_> = joined.difference(&want).collect();
                return Err(waiting(format!("{space}: missing {missing:?}, extra {extra:?}")));
            }
            let levels = state.iter().find(|e| e.kind == "m.room.power_levels").map(|e| e.content["users"].clone());
            let level = |u: &str| levels.as_ref().and_then(|l| l[u].as_i64()).unwrap_or(0);
            for u in members {
                let (id, manager) = (self.id(u), managers.contains(u));
                if manager != (level(&id) >= MANAGER_LEVEL) {
                    return Err(waiting(format!("{space}: {id} at power {} (manager: {manager})", level(&id))));
                }
            }
            figures.rooms += 1;
            figures.members += joined.len();
        }
        // No duplicate: the operator is in exactly the linked rooms (a room made twice keeps its creator).
        let mine: BTreeSet<String> = self
            .admin
            .joined_rooms_of(&crate::support::uid(&self.operator))
            .await
            .map_err(|e| waiting(e.to_string()))?
            .into_iter()
            .map(String::from)
            .collect();
        if mine != rooms {
            let extra: Vec<_> = mine.difference(&rooms).collect();
            return Err(waiting(format!("the operator is in rooms no link names: {extra:?}")));
        }
        // Nobody who stayed listed ever left: the whole history, not the end state.
        for space in expected.keys() {
            let room = by_space[space].status.as_ref().and_then(|s| s.room_id.clone()).unwrap_or_default();
            for target in self.leaves(&room).await.map_err(waiting)? {
                let allowed = world.removed.iter().any(|(s, u)| s == space && self.id(u) == target);
                if !allowed {
                    return Err(NotYet::Broken(format!("{target} left or was kicked from space {space}'s room")));
                }
                figures.kicks += 1;
            }
        }
        Ok(figures)
    }
}
