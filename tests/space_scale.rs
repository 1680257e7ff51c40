//! A typical installation at a tenth of its size: one ExoSource writing N SpaceRoomLinks (default 100,
//! `EXO_TEST_SPACE_LINKS`) and its MatrixSpace grouping them all. Prints the Synapse calls and the space
//! and source passes during convergence and per quiet resync pass (figures for bench/README), and checks
//! the quiet target: no Synapse or Kubernetes write, at most one Synapse read per object per pass, and
//! no more space or source passes than resyncs.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use exo_matrix_operator::crd::{ExoSource, MatrixSpace, MatrixUser, SpaceRoomLink};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use support::exo::{CREDENTIALS, FakeExo};
use support::*;

const PEOPLE: usize = 10;
const RESYNC_S: u64 = 20;
const QUIET_PASSES: u64 = 3;

fn links_wanted() -> usize {
    std::env::var("EXO_TEST_SPACE_LINKS").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// What the operator's /metrics counted so far.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    reads: u64,
    writes: u64,
    /// `GET …/state/m.space.parent/…`: one per child room and pass before the parents were planned from the
    /// space's own state.
    parent_reads: u64,
    space_passes: u64,
    source_passes: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            reads: self.reads - o.reads,
            writes: self.writes - o.writes,
            parent_reads: self.parent_reads - o.parent_reads,
            space_passes: self.space_passes - o.space_passes,
            source_passes: self.source_passes - o.source_passes,
        }
    }
}

async fn counts(port: u16) -> Counts {
    let text =
        reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.expect("metrics").text().await.expect("text");
    let mut c = Counts::default();
    for line in text.lines() {
        let Some(n) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).map(|n| n as u64) else { continue };
        if line.starts_with("exomatrix_synapse_calls_total{") {
            if !line.contains("method=\"GET\"") {
                c.writes += n;
            } else {
                c.reads += n;
                if line.contains("/state/m.space.parent/") {
                    c.parent_reads += n;
                }
            }
        } else if line.starts_with("exomatrix_reconciles_total{") {
            if line.contains("controller=\"space\"") {
                c.space_passes += n;
            } else if line.contains("controller=\"source\"") {
                c.source_passes += n;
            }
        }
    }
    c
}

/// Every object's resourceVersion: any write to it (status included) changes it.
async fn versions(client: &kube::Client, ns: &str) -> BTreeMap<String, String> {
    let lp = ListParams::default();
    let mut all = BTreeMap::new();
    let mut add = |kind: &str, items: Vec<kube::api::ObjectMeta>| {
        for m in items {
            all.insert(format!("{kind}/{}", m.name.unwrap_or_default()), m.resource_version.unwrap_or_default());
        }
    };
    let users = Api::<MatrixUser>::namespaced(client.clone(), ns).list(&lp).await.expect("users");
    add("user", users.items.into_iter().map(|o| o.metadata).collect());
    let links = Api::<SpaceRoomLink>::namespaced(client.clone(), ns).list(&lp).await.expect("links");
    add("link", links.items.into_iter().map(|o| o.metadata).collect());
    let spaces = Api::<MatrixSpace>::namespaced(client.clone(), ns).list(&lp).await.expect("spaces");
    add("space", spaces.items.into_iter().map(|o| o.metadata).collect());
    let sources = Api::<ExoSource>::namespaced(client.clone(), ns).list(&lp).await.expect("sources");
    add("source", sources.items.into_iter().map(|o| o.metadata).collect());
    all
}

#[tokio::test]
async fn one_source_and_its_space_over_many_links_converge_and_then_stay_quiet() {
    let n = links_wanted();
    let client = kube_client().await;
    let ns = namespace(&client, "spacescale").await;
    shared_secret_credentials(&client, &ns).await;
    let tag = unique("z").replace('-', "");
    let people: Vec<String> = (0..PEOPLE).map(|i| format!("p{i}{tag}")).collect();
    let exo = FakeExo::start().await;
    exo.edit(|s| {
        s.page_cap = 100;
        for i in 0..n {
            let id = format!("{}", 1000 + i);
            s.spaces.insert(id.clone(), (format!("team{i}{tag}"), format!("Team {i}"), String::new()));
            s.members.insert(id, vec![people[i % PEOPLE].clone()]);
        }
        for p in &people {
            s.add_user(p);
        }
    });
    platform().apply(&ns, &exo.credentials_secret());
    let port = free_port();
    let (resync, metrics) = (format!("{RESYNC_S}s"), format!("127.0.0.1:{port}"));
    let _op = Operator::start(&ns, "matrix", &["--resync", &resync, "--metrics-addr", &metrics]);
    eventually("the operator's metrics", Duration::from_secs(30), || async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok().map(|_| ())
    })
    .await;
    let start = (Instant::now(), counts(port).await);

    let sources: Api<ExoSource> = Api::namespaced(client.clone(), &ns);
    let source = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "ExoSource",
        "metadata": {"name": "intranet"},
        "spec": {"url": exo.url, "credentialsSecretRef": {"name": CREDENTIALS}, "interval": resync,
                 "matrixSpace": {"displayName": "Intranet"}}}))
    .expect("source");
    sources.create(&PostParams::default(), &source).await.expect("source created");

    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let spaces: Api<MatrixSpace> = Api::namespaced(client.clone(), &ns);
    let wait = Duration::from_secs(60 + 6 * n as u64);
    eventually("every room made with its member", wait, || async {
        let list = links.list(&ListParams::default()).await.ok()?;
        let joined = list.items.iter().filter(|l| l.status.as_ref().and_then(|s| s.joined_members) == Some(1)).count();
        (joined == n).then_some(())
    })
    .await;
    eventually("the space with every room and person", wait, || async {
        let st = spaces.get("intranet").await.ok()?.status?;
        let ready = st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && st.rooms == Some(n as i64) && st.members == Some(PEOPLE as i64)).then_some(())
    })
    .await;
    let converged = (start.0.elapsed(), counts(port).await - start.1);

    // Let the passes that follow the last change run out, then count a few quiet resync periods.
    tokio::time::sleep(Duration::from_secs(RESYNC_S + 5)).await;
    let (before, quiet0) = (versions(&client, &ns).await, counts(port).await);
    tokio::time::sleep(Duration::from_secs(QUIET_PASSES * RESYNC_S)).await;
    let (after, quiet) = (versions(&client, &ns).await, counts(port).await - quiet0);
    let written: Vec<&String> = after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k).collect();

    let (time, c) = converged;
    println!(
        "space_scale: {n} links, {PEOPLE} people, one ExoSource and its MatrixSpace: converged in {:.1}s with {} \
         Synapse reads ({} of m.space.parent) and {} writes, {} space passes, {} source passes",
        time.as_secs_f64(),
        c.reads,
        c.parent_reads,
        c.writes,
        c.space_passes,
        c.source_passes
    );
    let objects = (n + PEOPLE + 1) as u64;
    println!(
        "space_scale: quiet, {QUIET_PASSES} resync periods of {RESYNC_S}s: {} Synapse reads ({:.2} per object and \
         pass; {} of m.space.parent), {} writes, {} Kubernetes objects written, {} space passes, {} source passes",
        quiet.reads,
        quiet.reads as f64 / (objects * QUIET_PASSES) as f64,
        quiet.parent_reads,
        quiet.writes,
        written.len(),
        quiet.space_passes,
        quiet.source_passes
    );
    assert!(written.is_empty(), "objects written during quiet resyncs: {written:?}");
    assert_eq!(quiet.writes, 0, "no Synapse write during quiet resyncs");
    // Resyncs are jittered by ±10%: allow one extra pass.
    assert!(quiet.reads <= objects * (QUIET_PASSES + 1), "{} Synapse reads for {objects} objects", quiet.reads);
    assert!(quiet.space_passes <= QUIET_PASSES + 1, "{} space passes in {QUIET_PASSES} resyncs", quiet.space_passes);
    assert!(quiet.source_passes <= QUIET_PASSES + 1, "{} source passes in {QUIET_PASSES} resyncs", quiet.source_passes);
}
