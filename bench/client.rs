//! A plain Synapse HTTP client that counts its calls per endpoint, and the two client contenders:
//! the fewest calls at concurrency 4, and the original eXo addon's sequential pattern.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use exo_matrix_operator::secret::SecretString;
use exo_matrix_operator::synapse::{Registration, Synapse};
use futures::{StreamExt, TryStreamExt};
use rand::distr::{Alphanumeric, SampleString};
use reqwest::Method;
use serde_json::{Value, json};

use crate::scenario::{Room, Scenario};

/// Calls by (method, endpoint with ids hidden).
pub type Calls = BTreeMap<(String, String), u64>;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    pub server_name: String,
    calls: Arc<Mutex<Calls>>,
}

pub fn enc(s: &str) -> String {
    exo_matrix_operator::synapse::enc(s)
}

impl Client {
    /// Registers a fresh admin through the shared secret and exempts it from rate limits (not counted).
    pub async fn admin(base: &str, shared_secret: &str, name: &str) -> anyhow::Result<Client> {
        let synapse = Synapse::new(base)?;
        let reg = Registration {
            username: name.to_owned(),
            password: SecretString::new(Alphanumeric.sample_string(&mut rand::rng(), 24)),
            admin: true,
            displayname: None,
        };
        let r = synapse.register_with_shared_secret(&SecretString::new(shared_secret), &reg).await?;
        let token = r.access_token.context("registration gave no token")?.expose().to_owned();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        let mut c = Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            server_name: String::new(),
            calls: Default::default(),
        };
        let who = c.call(Method::GET, "/_matrix/client/v3/account/whoami", None).await?;
        let me = who["user_id"].as_str().context("whoami")?.to_owned();
        c.server_name = me.split_once(':').context("user id")?.1.to_owned();
        let path = format!("/_synapse/admin/v1/users/{}/override_ratelimit", enc(&me));
        c.call(Method::POST, &path, Some(json!({"messages_per_second": 0, "burst_count": 0}))).await?;
        c.calls.lock().unwrap().clear();
        Ok(c)
    }

    pub fn user_id(&self, i: usize) -> String {
        format!("@{}:{}", Scenario::username(i), self.server_name)
    }

    pub fn calls(&self) -> Calls {
        self.calls.lock().unwrap().clone()
    }

    /// One request; 429 waits `retry_after_ms` and retries (each try counted, as the operator's metrics do).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        for _ in 0..20 {
            let key = (method.to_string(), exo_matrix_operator::metrics::endpoint(path));
            *self.calls.lock().unwrap().entry(key).or_default() += 1;
            let mut req = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
            let status = resp.status();
            let value: Value = resp.json().await.unwrap_or(Value::Null);
            if status.as_u16() == 429 {
                let ms = value["retry_after_ms"].as_u64().unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
                continue;
            }
            if !status.is_success() {
                bail!("{method} {path}: HTTP {status}: {value}");
            }
            return Ok(value);
        }
        bail!("{method} {path}: still rate limited")
    }

    /// Checks one room in Synapse: exactly `members` (plus `extra` such as the creator) joined,
    /// managers at `manager_level` or more, join rule invite. Returns what is wrong.
    pub async fn verify_room(
        &self,
        room_id: &str,
        members: &BTreeSet<String>,
        managers: &BTreeSet<String>,
        manager_level: i64,
    ) -> anyhow::Result<Vec<String>> {
        let state = self.call(Method::GET, &format!("/_synapse/admin/v1/rooms/{}/state", enc(room_id)), None).await?;
        let mut joined = BTreeSet::new();
        let (mut join_rule, mut users) = (String::new(), BTreeMap::new());
        let mut creator = String::new();
        for e in state["state"].as_array().context("state list")? {
            match e["type"].as_str() {
                Some("m.room.member") if e["content"]["membership"] == "join" => {
                    joined.insert(e["state_key"].as_str().unwrap_or_default().to_owned());
                }
                Some("m.room.join_rules") => join_rule = e["content"]["join_rule"].as_str().unwrap_or("").into(),
                Some("m.room.power_levels") => {
                    users = serde_json::from_value::<BTreeMap<String, i64>>(e["content"]["users"].clone())
                        .unwrap_or_default()
                }
                Some("m.room.create") => creator = e["sender"].as_str().unwrap_or_default().to_owned(),
                _ => {}
            }
        }
        joined.remove(&creator);
        let mut wrong = Vec::new();
        if &joined != members {
            let missing = members.difference(&joined).count();
            let extra = joined.difference(members).count();
            wrong.push(format!("{room_id}: {missing} member(s) missing, {extra} unexpected"));
        }
        for m in managers {
            if users.get(m).copied().unwrap_or(0) < manager_level {
                wrong.push(format!("{room_id}: manager {m} below power {manager_level}"));
            }
        }
        if join_rule != "invite" {
            wrong.push(format!("{room_id}: join rule {join_rule:?}"));
        }
        Ok(wrong)
    }
}

/// What a contender built: room ids in scenario order.
pub type Built = Vec<String>;

/// The fewest calls: a password-less user PUT each, one complete createRoom per space, one admin join
/// per membership; 4 in flight.
pub async fn minimal(c: &Client, s: &Scenario) -> anyhow::Result<Built> {
    const CONCURRENCY: usize = 4;
    futures::stream::iter(0..s.users)
        .map(|i| {
            let body = json!({
                "displayname": Scenario::display_name(i),
                "threepids": [{"medium": "email", "address": Scenario::email(i)}],
            });
            async move { c.call(Method::PUT, &format!("/_synapse/admin/v2/users/{}", enc(&c.user_id(i))), Some(body)).await }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let rooms: Vec<String> =
        futures::stream::iter(&s.rooms).map(|room| create_room(c, room)).buffered(CONCURRENCY).try_collect().await?;
    let joins: Vec<(String, usize)> =
        s.rooms.iter().zip(&rooms).flat_map(|(r, id)| r.members.iter().map(move |m| (id.clone(), *m))).collect();
    futures::stream::iter(joins)
        .map(|(room, m)| async move {
            let body = json!({"user_id": c.user_id(m)});
            c.call(Method::POST, &format!("/_synapse/admin/v1/join/{}", enc(&room)), Some(body)).await
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(rooms)
}

async fn create_room(c: &Client, room: &Room) -> anyhow::Result<String> {
    let managers: BTreeMap<String, i64> = room.managers.iter().map(|m| (c.user_id(*m), 50)).collect();
    let body = json!({
        "preset": "private_chat",
        "visibility": "private",
        "name": room.name,
        "topic": Scenario::topic(room),
        "room_alias_name": format!("space_{}", room.id),
        "initial_state": [
            {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "shared"}},
        ],
        "power_level_content_override": {
            "users": managers,
            "invite": 50, "kick": 50, "ban": 50, "redact": 50,
            "events": {"m.room.name": 100, "m.room.topic": 100, "m.room.avatar": 100, "m.room.power_levels": 100},
        },
    });
    let r = c.call(Method::POST, "/_matrix/client/v3/createRoom", Some(body)).await?;
    Ok(r["room_id"].as_str().context("createRoom gave no room_id")?.to_owned())
}

/// The original eXo addon, replayed: sequential; a user PUT with a random password (bcrypt), display name
/// and email; a bare createRoom; per manager a join and make_room_admin; per member a join; then GET and
/// PUT of the power levels with `invite: 100`.
pub async fn addon(c: &Client, s: &Scenario) -> anyhow::Result<Built> {
    for i in 0..s.users {
        let body = json!({
            "password": Alphanumeric.sample_string(&mut rand::rng(), 16),
            "displayname": Scenario::display_name(i),
            "threepids": [{"medium": "email", "address": Scenario::email(i)}],
        });
        c.call(Method::PUT, &format!("/_synapse/admin/v2/users/{}", enc(&c.user_id(i))), Some(body)).await?;
    }
    let mut rooms = Vec::new();
    for room in &s.rooms {
        let body = json!({
            "preset": "private_chat",
            "name": room.name,
            "topic": Scenario::topic(room),
            "initial_state": [{"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}}],
        });
        let r = c.call(Method::POST, "/_matrix/client/v3/createRoom", Some(body)).await?;
        let id = r["room_id"].as_str().context("createRoom gave no room_id")?.to_owned();
        for m in &room.members {
            let user = c.user_id(*m);
            c.call(Method::POST, &format!("/_synapse/admin/v1/join/{}", enc(&id)), Some(json!({"user_id": user})))
                .await?;
            if room.managers.contains(m) {
                let path = format!("/_synapse/admin/v1/rooms/{}/make_room_admin", enc(&id));
                c.call(Method::POST, &path, Some(json!({"user_id": user}))).await?;
            }
        }
        let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&id));
        let mut pl = c.call(Method::GET, &path, None).await?;
        pl["invite"] = json!(100);
        c.call(Method::PUT, &path, Some(pl)).await?;
        rooms.push(id);
    }
    Ok(rooms)
}

/// Checks every room of the scenario in Synapse; returns the problems (empty: all good).
pub async fn verify(c: &Client, s: &Scenario, rooms: &[String], manager_level: i64) -> anyhow::Result<Vec<String>> {
    let checks = s.rooms.iter().zip(rooms).map(|(room, id)| {
        let members: BTreeSet<String> = room.members.iter().map(|m| c.user_id(*m)).collect();
        let managers: BTreeSet<String> = room.managers.iter().map(|m| c.user_id(*m)).collect();
        async move { c.verify_room(id, &members, &managers, manager_level).await }
    });
    let found: Vec<Vec<String>> = futures::stream::iter(checks).buffer_unordered(4).try_collect().await?;
    Ok(found.into_iter().flatten().collect())
}
