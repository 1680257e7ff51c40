//! The operator contender: CRs applied, the release binary started, converged links checked in Synapse;
//! then a restart and a quiet period at a short resync.

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec, SpaceRoomLink, SpaceRoomLinkSpec};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::platform::{Platform, cpu_seconds, peak_rss_mib, repo_root};
use crate::scenario::Scenario;

pub const NS: &str = "bench";

pub async fn kube(p: &Platform) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(p.var("KUBECONFIG")?)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// CRDs, namespace, credentials Secret, and every MatrixUser and SpaceRoomLink of the scenario. `idle`: every
/// MatrixUser `enabled: false` and every link `suspend: true`, so that Synapse has (almost) nothing to do and
/// only the Kubernetes side is measured (memory, restart).
pub async fn apply_scenario(p: &Platform, client: &Client, s: &Scenario, idle: bool) -> anyhow::Result<()> {
    let kubectl = p.var("KUBECTL")?;
    let crds = repo_root().join("crds");
    for args in [
        vec!["apply", "--server-side", "--force-conflicts", "-f"],
        vec!["wait", "--for=condition=Established", "--timeout=60s", "-f"],
    ] {
        let ok = Command::new(kubectl)
            .args(&args)
            .arg(&crds)
            .env("KUBECONFIG", p.var("KUBECONFIG")?)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !ok.success() {
            bail!("kubectl {args:?} crds failed");
        }
    }
    let ns = Namespace { metadata: ObjectMeta { name: Some(NS.into()), ..Default::default() }, ..Default::default() };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    let secret = Secret {
        metadata: ObjectMeta { name: Some("matrix".into()), ..Default::default() },
        string_data: Some(BTreeMap::from([
            ("sharedSecret".to_owned(), p.var("SYNAPSE_SHARED_SECRET")?.to_owned()),
            ("serverUrl".to_owned(), p.var("SYNAPSE_URL")?.to_owned()),
        ])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), NS).create(&PostParams::default(), &secret).await?;
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(0..s.users)
        .map(|i| {
            let users = users.clone();
            async move {
                let spec: MatrixUserSpec = serde_json::from_value(serde_json::json!({
                    "username": Scenario::username(i),
                    "displayName": Scenario::display_name(i),
                    "email": Scenario::email(i),
                    "enabled": !idle,
                }))?;
                users.create(&PostParams::default(), &MatrixUser::new(&Scenario::username(i), spec)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(&s.rooms)
        .map(|room| {
            let links = links.clone();
            async move {
                let spec: SpaceRoomLinkSpec = serde_json::from_value(serde_json::json!({
                    "spaceGroupId": room.id,
                    "create": true,
                    "displayName": room.name,
                    "description": Scenario::topic(room),
                    "members": room.members.iter().map(|m| Scenario::username(*m)).collect::<Vec<_>>(),
                    "managers": room.managers.iter().map(|m| Scenario::username(*m)).collect::<Vec<_>>(),
                    "suspend": idle,
                }))?;
                let name = room.id.replace('_', "-");
                links.create(&PostParams::default(), &SpaceRoomLink::new(&name, spec)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

pub struct Operator {
    child: Child,
    pub metrics: String,
}

impl Operator {
    /// The release binary with `--resync resync` and the `extra` flags (e.g. `--one-event-joins`).
    pub fn start(p: &Platform, resync: &str, log_name: &str, extra: &[String]) -> anyhow::Result<Operator> {
        let port = free_port()?;
        let log = std::fs::File::create(p.dir().join(log_name))?;
        let bin = repo_root().join("target/release/exo-matrix-operator");
        let child = Command::new(&bin)
            .args(["run", "--namespace", NS, "--credentials-secret", &format!("{NS}/matrix")])
            .args(["--resync", resync, "--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("KUBECONFIG", p.var("KUBECONFIG")?)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Operator { child, metrics: format!("http://127.0.0.1:{port}/metrics") })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The operator's counters: (metric name, labels) → value.
    pub async fn scrape(&self) -> anyhow::Result<Metrics> {
        let text = reqwest::get(&self.metrics).await?.text().await?;
        Ok(parse_metrics(&text))
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Prometheus text lines: `name{labels} value` → (name, labels) → value.
pub type Metrics = BTreeMap<(String, String), f64>;

pub fn parse_metrics(text: &str) -> Metrics {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (name, labels) = match key.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (key, ""),
            };
            Some(((name.to_owned(), labels.to_owned()), value.parse().ok()?))
        })
        .collect()
}

pub fn sum(m: &Metrics, name: &str, filter: impl Fn(&str) -> bool) -> f64 {
    m.iter().filter(|((n, l), _)| n == name && filter(l)).map(|(_, v)| v).sum()
}

/// The value of label `name` in a series' labels as `parse_metrics` keeps them (`a="x",b="y"`).
pub fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| kv.strip_prefix(&format!("{name}=\""))).map(|v| v.trim_end_matches('"'))
}

/// Synapse calls in the operator's metrics, by "METHOD endpoint".
pub fn synapse_calls(m: &Metrics) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ((name, labels), v) in m {
        if name != "exomatrix_synapse_calls_total" {
            continue;
        }
        let key = format!("{} {}", label(labels, "method").unwrap_or("?"), label(labels, "endpoint").unwrap_or("?"));
        *out.entry(key).or_insert(0) += *v as u64;
    }
    out
}

/// Waits until every link is Ready with all its members joined; returns the room ids in scenario order.
pub async fn wait_converged(client: &Client, s: &Scenario, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let (links, _watch) = cache::<SpaceRoomLink>(client).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let by_space: BTreeMap<String, Arc<SpaceRoomLink>> =
            links.state().into_iter().map(|l| (l.spec.space_group_id.clone(), l)).collect();
        let mut rooms = Vec::new();
        for room in &s.rooms {
            let Some(status) = by_space.get(&room.id).and_then(|l| l.status.as_ref()) else { break };
            let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
            let all_joined = status.joined_members == Some(room.members.len() as i64)
                && status.pending_member_count.unwrap_or(0) == 0;
            match (&status.room_id, ready && all_joined) {
                (Some(id), true) => rooms.push(id.clone()),
                _ => break,
            }
        }
        if rooms.len() == s.rooms.len() {
            return Ok(rooms);
        }
        if Instant::now() > deadline {
            bail!("not converged after {timeout:?}: {} of {} links done", rooms.len(), s.rooms.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until every MatrixUser and SpaceRoomLink shows `Ready=True` for its current generation (`--idle`).
pub async fn wait_ready(client: &Client, s: &Scenario, timeout: Duration) -> anyhow::Result<()> {
    let ((users, _user_watch), (links, _link_watch)) = (cache::<MatrixUser>(client).await?, cache(client).await?);
    let deadline = Instant::now() + timeout;
    fn ready(generation: Option<i64>, observed: Option<i64>, conditions: &[Condition]) -> bool {
        observed == generation && conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    }
    loop {
        let u = users
            .state()
            .iter()
            .filter(|u| {
                u.status.as_ref().is_some_and(|st| ready(u.metadata.generation, st.observed_generation, &st.conditions))
            })
            .count();
        let l = links
            .state()
            .iter()
            .filter(|l: &&Arc<SpaceRoomLink>| {
                l.status.as_ref().is_some_and(|st| ready(l.metadata.generation, st.observed_generation, &st.conditions))
            })
            .count();
        if u == s.users && l == s.rooms.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not ready after {timeout:?}: {u} of {} MatrixUsers, {l} of {} links", s.users, s.rooms.len());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The scenario's objects of one kind, kept current by one watch (stopped when the handle is dropped). The bench
/// used to LIST them every half second: at B10k that is 2.9 MB of links per LIST, about one a second, served by
/// the same two cores as Synapse, a cost the operator's contender paid and the minimal client's did not.
async fn cache<K>(client: &Client) -> anyhow::Result<(Store<K>, AbortOnDrop)>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let events = watcher(Api::<K>::namespaced(client.clone(), NS), watcher::Config::default()).default_backoff();
    let task = tokio::spawn(reflector::reflector(writer, events).for_each(|_| async {}));
    store.wait_until_ready().await?;
    Ok((store, AbortOnDrop(task)))
}

pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The operator's resident memory over time: (seconds since `started`, VmRSS MiB, VmHWM MiB) every `every`,
/// a line on stderr each minute, until the returned handle is aborted or the process is gone.
pub fn sample_memory(pid: u32, phase: &'static str, every: Duration) -> MemorySamples {
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = samples.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut printed = Instant::now();
        loop {
            let (rss, hwm) = (crate::platform::rss_mib(pid), peak_rss_mib(pid));
            if rss.is_nan() {
                return;
            }
            let t = started.elapsed().as_secs_f64();
            out.lock().unwrap_or_else(|p| p.into_inner()).push((t, rss, hwm));
            if printed.elapsed() >= Duration::from_secs(60) {
                eprintln!("bench: {phase} t={t:.0}s operator RSS {rss:.0} MiB (peak {hwm:.0} MiB)");
                printed = Instant::now();
            }
            tokio::time::sleep(every).await;
        }
    });
    MemorySamples { samples, task }
}

pub struct MemorySamples {
    samples: std::sync::Arc<std::sync::Mutex<Vec<(f64, f64, f64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MemorySamples {
    /// Stops sampling; the samples so far.
    pub fn finish(self) -> Vec<(f64, f64, f64)> {
        self.task.abort();
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Waits until reconciles stop: at least `objects` done since `before`, none in flight, no new one for `calm`.
pub async fn wait_settled(op: &Operator, before: f64, objects: usize, calm: Duration) -> anyhow::Result<Metrics> {
    let mut last = (f64::NAN, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(m) = op.scrape().await else { continue };
        let done = sum(&m, "exomatrix_reconciles_total", |_| true);
        let in_flight = sum(&m, "exomatrix_reconciles_in_flight", |_| true);
        if done != last.0 {
            last = (done, Instant::now());
        }
        if done - before >= objects as f64 && in_flight == 0.0 && last.1.elapsed() >= calm {
            return Ok(m);
        }
    }
}

/// Process figures of one phase.
pub struct Usage {
    pub seconds: f64,
    pub synapse_cpu: f64,
    pub operator_cpu: f64,
    pub peak_rss_mib: f64,
}

pub fn usage(started: Instant, synapse_pid: u32, synapse_cpu0: f64, op: &Operator, op_cpu0: f64) -> Usage {
    Usage {
        seconds: started.elapsed().as_secs_f64(),
        synapse_cpu: cpu_seconds(synapse_pid) - synapse_cpu0,
        operator_cpu: cpu_seconds(op.pid()) - op_cpu0,
        peak_rss_mib: peak_rss_mib(op.pid()),
    }
}

/// With every object converged and watched, one member is added to one link at a time (`samples` links
/// spread over the scenario): seconds from the patch until the link's status counts the member joined
/// (the status is written right after Synapse answered the join). The added person is the first member of
/// the next room, so their account exists. Returns the latencies and the (room index, user index) pairs.
pub async fn join_latencies(
    client: &Client,
    s: &Scenario,
    samples: usize,
    timeout: Duration,
) -> anyhow::Result<(Vec<f64>, Vec<(usize, usize)>)> {
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), NS);
    let step = (s.rooms.len() / samples.max(1)).max(1);
    let (mut latencies, mut added) = (Vec::new(), Vec::new());
    for r in (0..s.rooms.len()).step_by(step).take(samples) {
        let room = &s.rooms[r];
        let size = room.members.len();
        let newcomer = (r * size + size) % s.users;
        if room.members.contains(&newcomer) {
            continue;
        }
        let name = room.id.replace('_', "-");
        let mut members: Vec<String> = room.members.iter().map(|m| Scenario::username(*m)).collect();
        members.push(Scenario::username(newcomer));
        let patch = serde_json::json!({"spec": {"members": members}});
        let started = Instant::now();
        links.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await?;
        loop {
            let st = links.get(&name).await?.status.unwrap_or_default();
            if st.joined_members == Some(size as i64 + 1) {
                break;
            }
            if started.elapsed() > timeout {
                bail!("{newcomer} not joined to {name} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies.push(started.elapsed().as_secs_f64());
        added.push((r, newcomer));
    }
    Ok((latencies, added))
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Reconciles per kind and the room-state reads per link pass, from the operator's counters.
#[derive(Debug, serde::Serialize)]
pub struct Passes {
    pub user: f64,
    pub link: f64,
    pub per_user: f64,
    pub per_link: f64,
    pub room_state_reads: u64,
    pub room_state_reads_per_link_pass: f64,
}

impl std::fmt::Display for Passes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} user passes ({:.2}/user), {} link passes ({:.2}/link), {} room-state reads ({:.2}/link pass)",
            self.user,
            self.per_user,
            self.link,
            self.per_link,
            self.room_state_reads,
            self.room_state_reads_per_link_pass
        )
    }
}

pub fn passes(m: &Metrics, calls: &BTreeMap<String, u64>, s: &Scenario) -> Passes {
    let of = |c: &str| sum(m, "exomatrix_reconciles_total", |l| l.contains(&format!("controller=\"{c}\"")));
    let (user, link) = (of("user"), of("link"));
    let room_state_reads = calls
        .iter()
        .filter(|(k, _)| k.starts_with("GET ") && k.contains("/rooms/{id}/state"))
        .map(|(_, v)| v)
        .sum::<u64>();
    Passes {
        user,
        link,
        per_user: user / s.users as f64,
        per_link: link / s.rooms.len() as f64,
        room_state_reads,
        room_state_reads_per_link_pass: room_state_reads as f64 / link.max(1.0),
    }
}
