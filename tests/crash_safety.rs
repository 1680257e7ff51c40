//! Killing the operator at many points while 20 rooms are being created leaves
//! exactly one room per space, with the right members.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, SpaceRoomLink};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::*;

const LINKS: usize = 20;

#[tokio::test]
async fn killing_the_operator_mid_creation_leaves_exactly_one_room_per_space() {
    let client = kube_client().await;
    let ns = namespace(&client, "crash").await;
    shared_secret_credentials(&client, &ns).await;
    let tag = unique("c").replace('-', "");
    let usernames: Vec<String> = ["ann", "bob", "cat"].iter().map(|u| format!("{u}{tag}")).collect();
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    {
        let _op = Operator::start(&ns, "matrix", &[]);
        for u in &usernames {
            let user = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
                "metadata": {"name": u}, "spec": {"username": u}}))
            .expect("user");
            users.create(&PostParams::default(), &user).await.expect("user created");
        }
        for u in &usernames {
            eventually(&format!("{u} Ready"), Duration::from_secs(30), || async {
                let x = users.get(u).await.ok()?;
                condition(serde_json::to_value(&x.status).ok().as_ref(), "Ready").filter(|c| c.0 == "True")
            })
            .await;
        }
    }

    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    for i in 0..LINKS {
        let link = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
            "metadata": {"name": format!("s{i:02}")},
            "spec": {"spaceGroupId": format!("s{i:02}_{tag}"), "create": true, "displayName": format!("Space {i}"),
                     "members": usernames, "managers": [usernames[0]]}}))
        .expect("link");
        links.create(&PostParams::default(), &link).await.expect("link created");
    }

    // SIGKILL at varied moments: before, during and right after createRoom calls.
    let delays = [40u64, 90, 150, 220, 300, 420, 600, 850, 1200, 1700];
    for delay in delays {
        let op = Operator::start(&ns, "matrix", &["--concurrency", "8"]);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let _ = std::process::Command::new("kill").args(["-9", &op.pid().to_string()]).status();
        drop(op);
    }
    let with_room = links
        .list(&Default::default())
        .await
        .expect("links")
        .items
        .iter()
        .filter(|l| l.status.as_ref().and_then(|s| s.room_id.as_ref()).is_some())
        .count();
    let op = Operator::start(&ns, "matrix", &[]);
    eventually("all links Ready", Duration::from_secs(120), || async {
        let list = links.list(&Default::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|l| {
                condition(serde_json::to_value(&l.status).ok().as_ref(), "Ready").is_some_and(|c| c.0 == "True")
            })
            .count();
        (ready == LINKS).then_some(())
    })
    .await;

    let admin = synapse_admin().await;
    let server = platform().server_name().to_owned();
    let operator = format!("@op-{ns}:{server}");
    let mut rooms = admin.joined_rooms_of(&support::uid(&operator)).await.expect("operator's rooms");
    rooms.sort();
    let mut expected_members: Vec<String> = usernames.iter().map(|u| format!("@{u}:{server}")).collect();
    expected_members.push(operator.clone());
    expected_members.sort();
    let mut linked = Vec::new();
    for l in links.list(&Default::default()).await.expect("links").items {
        let room = l.status.and_then(|s| s.room_id).expect("roomId");
        let alias = format!("#space_{}:{server}", l.spec.space_group_id);
        assert_eq!(
            admin.resolve_alias(&support::alias(&alias)).await.expect("alias"),
            Some(support::rid(&room)),
            "{alias}"
        );
        let mut members = admin.room_members(&support::rid(&room)).await.expect("members");
        members.sort();
        assert_eq!(members, expected_members, "members of {room}");
        linked.push(room);
    }
    linked.sort();
    assert_eq!(rooms, linked, "the operator is in exactly one room per space, no leftovers");
    println!(
        "crash safety: {} kill cycles, {with_room} of {LINKS} links had a room before the last start, {} rooms in the end",
        delays.len(),
        rooms.len()
    );
    drop(op);
}
