//! A resync that finds nothing to change (users, a link, a MatrixSpace) writes nothing to Synapse or Kubernetes,
//! and reads Synapse at most once per object per pass; neither does a restart (no object shows a failure while the
//! operator connects); a change made behind the operator's back is still put back.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use exo_matrix_operator::crd::{MatrixSpace, MatrixUser, SpaceRoomLink};
use exo_matrix_operator::synapse::UserUpdate;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::core::object::HasSpec;
use serde_json::json;
use support::*;

const USERS: usize = 4;
const RESYNC_S: u64 = 2;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Synapse calls the operator made so far: (reads, writes).
async fn calls(port: u16) -> (u64, u64) {
    let text =
        reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.expect("metrics").text().await.expect("text");
    let (mut reads, mut writes) = (0, 0);
    for line in text.lines().filter(|l| l.starts_with("exomatrix_synapse_calls_total{")) {
        let n: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a count");
        if line.contains("method=\"GET\"") { reads += n as u64 } else { writes += n as u64 }
    }
    (reads, writes)
}

/// Every object's resourceVersion: any write to it (status included) changes it.
async fn versions(
    users: &Api<MatrixUser>,
    links: &Api<SpaceRoomLink>,
    spaces: &Api<MatrixSpace>,
) -> BTreeMap<String, String> {
    let lp = ListParams::default();
    let u =
        users.list(&lp).await.expect("users").items.into_iter().map(|o| (o.metadata.name, o.metadata.resource_version));
    let l =
        links.list(&lp).await.expect("links").items.into_iter().map(|o| (o.metadata.name, o.metadata.resource_version));
    let s = spaces
        .list(&lp)
        .await
        .expect("spaces")
        .items
        .into_iter()
        .map(|o| (o.metadata.name.map(|n| format!("space/{n}")), o.metadata.resource_version));
    u.chain(l).chain(s).map(|(n, v)| (n.unwrap_or_default(), v.unwrap_or_default())).collect()
}

#[tokio::test]
async fn a_quiet_resync_or_a_restart_writes_nothing_and_reads_synapse_at_most_once_per_object() {
    let client = kube_client().await;
    let ns = namespace(&client, "quiet").await;
    shared_secret_credentials(&client, &ns).await;
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let spaces: Api<MatrixSpace> = Api::namespaced(client.clone(), &ns);
    let port = free_port();
    let resync = format!("{RESYNC_S}s");
    let metrics = format!("127.0.0.1:{port}");
    let op = Operator::start(&ns, "matrix", &["--resync", &resync, "--metrics-addr", &metrics]);

    let prefix = unique("q").replace('-', "_");
    let names: Vec<String> = (0..USERS).map(|i| format!("{prefix}_{i}")).collect();
    for name in &names {
        let user = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
            "metadata": {"name": name.replace('_', "-")},
            "spec": {"username": name, "displayName": format!("Quiet {name}"), "email": format!("{name}@example.org")}}))
        .expect("user");
        users.create(&PostParams::default(), &user).await.expect("user created");
    }
    let link = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": "quiet"},
        "spec": {"spaceGroupId": prefix, "create": true, "displayName": "Quiet", "members": names, "managers": [names[0]]}}))
    .expect("link");
    links.create(&PostParams::default(), &link).await.expect("link created");
    let space = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixSpace",
        "metadata": {"name": "quiet"}, "spec": {"displayName": "Quiet", "linkSelector": {}}}))
    .expect("space");
    spaces.create(&PostParams::default(), &space).await.expect("space created");
    let done = eventually("the link Ready with everyone joined", Duration::from_secs(60), || async {
        let l = links.get("quiet").await.ok()?;
        let st = l.status.as_ref()?;
        let ready = st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && st.joined_members == Some(USERS as i64)).then_some(l)
    })
    .await;
    assert_eq!(done.spec().members.len(), USERS);
    eventually("the space with the room and everyone", Duration::from_secs(60), || async {
        let st = spaces.get("quiet").await.ok()?.status?;
        (st.rooms == Some(1) && st.members == Some(USERS as i64)).then_some(())
    })
    .await;
    // Let the passes that follow the last change run out.
    tokio::time::sleep(Duration::from_secs(2 * RESYNC_S + 1)).await;

    let (before, (reads0, writes0)) = (versions(&users, &links, &spaces).await, calls(port).await);
    let passes = 4;
    tokio::time::sleep(Duration::from_secs(passes * RESYNC_S)).await;
    let (after, (reads1, writes1)) = (versions(&users, &links, &spaces).await, calls(port).await);
    assert_eq!(before, after, "no object written during quiet resyncs");
    assert_eq!(writes1 - writes0, 0, "no Synapse write during quiet resyncs");
    let objects = (USERS + 2) as u64;
    // Resyncs are jittered by ±10%: allow one extra pass.
    assert!(
        reads1 - reads0 <= objects * (passes + 1),
        "{} Synapse reads for {objects} objects over {passes} passes",
        reads1 - reads0
    );

    // A restart over converged objects: each has its pass, and none is written (a pass that ran before the
    // operator's session was up used to show Ready=False "connecting to Synapse", then Ready again).
    drop(op);
    let before = versions(&users, &links, &spaces).await;
    let _op = Operator::start(&ns, "matrix", &["--resync", &resync, "--metrics-addr", &metrics]);
    eventually("every object's pass after the restart", Duration::from_secs(30), || async {
        let text = reqwest::get(format!("http://{metrics}/metrics")).await.ok()?.text().await.ok()?;
        let passes: f64 = text
            .lines()
            .filter(|l| l.starts_with("exomatrix_reconciles_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (passes >= objects as f64).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(before, versions(&users, &links, &spaces).await, "no object written by a restart");

    // Quiet does not mean blind: a display name changed in Synapse is put back at a resync.
    let admin = synapse_admin().await;
    let user_id =
        users.get(&names[1].replace('_', "-")).await.expect("user").status.and_then(|s| s.user_id).expect("id");
    let tamper = UserUpdate { displayname: Some("Changed by hand".into()), ..UserUpdate::default() };
    admin.put_user(&support::uid(&user_id), &tamper).await.expect("tampered");
    eventually("the display name put back", Duration::from_secs(30), || async {
        let a = admin.get_user(&support::uid(&user_id)).await.ok()??;
        (a.displayname.as_deref() == Some(format!("Quiet {}", names[1]).as_str())).then_some(())
    })
    .await;
}
