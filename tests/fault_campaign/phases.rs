//! The faults, one kind after another, each after ordinary changes in eXo.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use exo_matrix_operator::crd::{ExoSource, MatrixUser, SpaceRoomLink};
use kube::Api;
use serde_json::json;

use crate::Campaign;
use crate::support::exo::{Garbage, Misbehaviour};
use crate::support::{condition, platform, repo_root};

/// Sleeps `d` while keeping the operator running.
async fn pass(c: &mut Campaign, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        c.operator.ensure();
        tokio::time::sleep(Duration::from_millis(200).min(end - Instant::now())).await;
    }
}

fn changes(c: &mut Campaign, new_space: bool) {
    c.world.churn();
    c.world.churn();
    if new_space {
        let (lo, hi) = c.size.members;
        let members = c.world.rng_range(lo, hi);
        c.world.add_space(members);
    }
}

pub async fn kills(c: &mut Campaign) {
    let kills = c.size.kills.max(1);
    c.operator.ensure_started();
    // The first kill lands in the initial import.
    let delay = c.world.rng_range(1_000, 15_000) as u64;
    pass(c, Duration::from_millis(delay)).await;
    let t = Instant::now();
    c.operator.kill();
    c.converged("SIGKILL", format!("1/{kills}, {delay} ms into the initial import"), t).await;
    for i in 2..=kills {
        changes(c, i % 3 == 0);
        let delay = c.world.rng_range(200, 6_000) as u64;
        pass(c, Duration::from_millis(delay)).await;
        let t = Instant::now();
        c.operator.kill();
        c.converged("SIGKILL", format!("{i}/{kills}, {delay} ms after eXo changed"), t).await;
    }
}

/// A link whose Ready message names since when it has failed, if any.
async fn lasting_message(c: &Campaign) -> Option<String> {
    let links = Api::<SpaceRoomLink>::namespaced(c.checker.client.clone(), &c.checker.ns);
    links.list(&Default::default()).await.ok()?.items.into_iter().find_map(|l| {
        let (status, _, message) = condition(serde_json::to_value(&l.status).ok().as_ref(), "Ready")?;
        (status == "False" && message.contains("not Ready since")).then_some(message)
    })
}

pub async fn synapse_restart(c: &mut Campaign) {
    changes(c, true);
    pass(c, Duration::from_secs(1)).await;
    let pid_file = repo_root().join("target/platform/synapse.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("synapse.pid").trim().to_owned();
    assert!(std::process::Command::new("kill").arg(&pid).status().expect("kill").success());
    let alive = || std::process::Command::new("kill").args(["-0", &pid]).stderr(std::process::Stdio::null()).status();
    while alive().is_ok_and(|s| s.success()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down = Duration::from_secs(c.size.synapse_down_secs);
    let stopped = Instant::now();
    let mut lasting = None;
    while stopped.elapsed() < down {
        if lasting.is_none()
            && let Some(message) = lasting_message(c).await
        {
            println!(
                "[campaign] after {:.0} s without Synapse a link says: {message}",
                stopped.elapsed().as_secs_f64()
            );
            lasting = Some(stopped.elapsed());
        }
        pass(c, Duration::from_secs(1)).await;
    }
    let up = std::process::Command::new(repo_root().join("tests/platform.sh")).arg("up").status().expect("platform.sh");
    assert!(up.success(), "Synapse started again");
    let t = Instant::now();
    // Named as lasting from `--lasting-failure` on (failures are retried at most 30 s apart).
    if down > Duration::from_secs(c.size.lasting_secs) {
        assert!(lasting.is_some(), "no link said since when Synapse failed it, in {down:?}");
    }
    let detail = match lasting {
        Some(after) => {
            format!("stopped {} s; links said 'not Ready since' after {:.0} s", down.as_secs(), after.as_secs_f64())
        }
        None => format!("stopped {} s", down.as_secs()),
    };
    c.converged("Synapse restart", detail, t).await;
}

async fn uids(c: &Campaign) -> BTreeSet<String> {
    let (client, ns) = (c.checker.client.clone(), c.checker.ns.as_str());
    let links = Api::<SpaceRoomLink>::namespaced(client.clone(), ns).list(&Default::default()).await.expect("links");
    let users = Api::<MatrixUser>::namespaced(client.clone(), ns).list(&Default::default()).await.expect("users");
    let sources = Api::<ExoSource>::namespaced(client, ns).list(&Default::default()).await.expect("sources");
    let links = links.items.into_iter().filter_map(|o| o.metadata.uid);
    let users = users.items.into_iter().filter_map(|o| o.metadata.uid);
    links.chain(users).chain(sources.items.into_iter().filter_map(|o| o.metadata.uid)).collect()
}

pub async fn apiserver_restart(c: &mut Campaign) {
    let before = uids(c).await;
    changes(c, true);
    pass(c, Duration::from_secs(1)).await;
    let secs = c.size.apiserver_down_secs.to_string();
    let restart = tokio::process::Command::new(repo_root().join("tests/platform.sh"))
        .args(["restart-apiserver", &secs])
        .status()
        .await
        .expect("platform.sh");
    assert!(restart.success(), "tests/platform.sh restart-apiserver");
    let t = Instant::now();
    let after = uids(c).await;
    let lost = before.difference(&after).count();
    assert_eq!(lost, 0, "objects lost by the API server restart");
    let detail = format!("process stopped {secs} s, restarted on the same etcd: all {} objects kept", before.len());
    c.converged("kube-apiserver restart", detail, t).await;
}

/// The Ready reason of the source and whether `user` is still joined to `space`'s room.
async fn during(c: &Campaign, space: &str, user: &str) -> (String, bool) {
    let sources = Api::<ExoSource>::namespaced(c.checker.client.clone(), &c.checker.ns);
    let source = sources.get("intranet").await.expect("source");
    let (status, reason, _) =
        condition(serde_json::to_value(&source.status).ok().as_ref(), "Ready").unwrap_or_default();
    let links = Api::<SpaceRoomLink>::namespaced(c.checker.client.clone(), &c.checker.ns);
    let room = links.get(&format!("exo-space-{space}")).await.ok().and_then(|l| l.status?.room_id).expect("room");
    let state = c.checker.admin.admin_room_state(&crate::support::rid(&room)).await.expect("room state");
    let id = format!("@{user}:{}", platform().server_name());
    let joined =
        state.iter().any(|e| e.kind == "m.room.member" && e.state_key == id && e.content["membership"] == "join");
    (format!("{status}/{reason}"), joined)
}

pub async fn exo_faults(c: &mut Campaign) {
    let garbage: Vec<Garbage> = if c.size.all_garbage {
        Garbage::ALL.to_vec()
    } else {
        vec![Garbage::Html, Garbage::RosterEntriesWithoutUsername]
    };
    let mut faults: Vec<(&'static str, Misbehaviour)> = vec![("eXo 500s", Misbehaviour::ServerError)];
    faults.extend(garbage.into_iter().map(|g| ("eXo garbage", Misbehaviour::Garbage(g))));
    faults
        .extend([("eXo half pages", Misbehaviour::HalfPages), ("eXo truncated bodies", Misbehaviour::TruncatedBodies)]);
    for (kind, fault) in faults {
        c.world.exo.edit(|s| s.misbehave = Some(fault));
        // Someone leaves a space while eXo misbehaves: a failed read must not act on anything.
        let left = loop {
            if let Some(left) = c.world.churn() {
                break left;
            }
        };
        pass(c, Duration::from_secs(c.size.exo_fault_secs)).await;
        let (source, still_joined) = during(c, &left.0, &left.1).await;
        c.world.exo.edit(|s| s.misbehave = None);
        let t = Instant::now();
        let detail = if fault == Misbehaviour::HalfPages {
            // Half pages are still a whole listing: the change goes through.
            format!("{fault:?} {} s, source {source}", c.size.exo_fault_secs)
        } else {
            assert!(!source.starts_with("True"), "{fault:?}: the source says {source} on a failed read");
            assert!(still_joined, "{fault:?}: {} was removed from space {}'s room on a failed read", left.1, left.0);
            format!("{fault:?} {} s: source {source}, nothing acted on", c.size.exo_fault_secs)
        };
        c.converged(kind, detail, t).await;
    }
}

pub fn report(c: &Campaign) {
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in &c.records {
        by_kind.entry(r.kind).or_default().push(r.recovered.as_secs_f64());
    }
    let last = c.records.last().map(|r| r.figures.clone()).unwrap_or_default();
    println!(
        "\nFAULT CAMPAIGN, seed {}: {} people, {} spaces at the end, {} changes made in eXo, {} removals",
        c.size.seed,
        c.world.user_count(),
        last.rooms,
        c.world.changes,
        c.world.removed.len()
    );
    println!("| fault | injected | survived | recovery min / median / max (s) |");
    println!("|---|---|---|---|");
    let mut rows = Vec::new();
    for (kind, mut times) in by_kind {
        times.sort_by(f64::total_cmp);
        let (min, median, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
        println!("| {kind} | {} | {} | {min:.1} / {median:.1} / {max:.1} |", times.len(), times.len());
        rows.push(json!({"kind": kind, "injected": times.len(), "recovery_s": times}));
    }
    println!(
        "end: {} objects Current, {} rooms, {} members, {} kicks (all of people eXo dropped), 0 duplicates, 0 missing, 0 wrongly kicked",
        last.objects, last.rooms, last.members, last.kicks
    );
    let details: Vec<_> = c
        .records
        .iter()
        .map(|r| {
            json!({"kind": r.kind, "detail": r.detail,
        "recovery_s": r.recovered.as_secs_f64(), "rooms": r.figures.rooms, "members": r.figures.members})
        })
        .collect();
    let out = json!({"seed": c.size.seed, "size": format!("{:?}", c.size), "kinds": rows, "faults": details,
        "people": c.world.user_count(), "changes": c.world.changes, "removals": c.world.removed.len()});
    let path = repo_root().join("target/fault-campaign.json");
    let _ = std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap_or_default());
    println!("figures: {}", path.display());
}
