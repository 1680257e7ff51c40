//! The SpaceRoomLink controller against the real kube-apiserver and Synapse.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec, SpaceRoomLink, SpaceRoomLinkSpec};
use exo_matrix_operator::synapse::{CreateRoom, Synapse};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::*;

const WAIT: Duration = Duration::from_secs(40);

struct Space {
    client: Client,
    ns: String,
    links: Api<SpaceRoomLink>,
    users: Api<MatrixUser>,
    admin: Synapse,
    server: String,
    /// Suffix making this test's usernames unique on the shared Synapse.
    tag: String,
}

impl Space {
    async fn new(prefix: &str) -> Space {
        let p = platform();
        let client = kube_client().await;
        let ns = namespace(&client, prefix).await;
        shared_secret_credentials(&client, &ns).await;
        Space {
            links: Api::namespaced(client.clone(), &ns),
            users: Api::namespaced(client.clone(), &ns),
            client,
            tag: ns.rsplit('-').next().unwrap_or("x").to_owned(),
            ns,
            admin: synapse_admin().await,
            server: p.server_name().to_owned(),
        }
    }

    fn username(&self, short: &str) -> String {
        format!("{short}{}", self.tag)
    }

    fn id(&self, short: &str) -> String {
        format!("@{}:{}", self.username(short), self.server)
    }

    async fn people(&self, shorts: &[&str]) {
        for short in shorts {
            let spec: MatrixUserSpec = serde_json::from_value(json!({"username": self.username(short)})).expect("spec");
            self.users
                .create(&PostParams::default(), &MatrixUser::new(&self.username(short), spec))
                .await
                .expect("user");
        }
        for short in shorts {
            let name = self.username(short);
            eventually(&format!("{name} Ready"), WAIT, || async {
                let u = self.users.get(&name).await.ok()?;
                condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready").filter(|c| c.0 == "True")
            })
            .await;
        }
    }

    fn spec(&self, group: &str, members: &[&str], managers: &[&str]) -> SpaceRoomLinkSpec {
        serde_json::from_value(json!({
            "spaceGroupId": format!("{group}_{}", self.tag),
            "create": true,
            "displayName": format!("Space {group}"),
            "description": "The <b>best</b> space",
            "members": members.iter().map(|m| self.username(m)).collect::<Vec<_>>(),
            "managers": managers.iter().map(|m| self.username(m)).collect::<Vec<_>>(),
        }))
        .expect("spec")
    }

    async fn link(&self, name: &str, spec: SpaceRoomLinkSpec) {
        self.links.create(&PostParams::default(), &SpaceRoomLink::new(name, spec)).await.expect("link created");
    }

    async fn patch(&self, name: &str, patch: Value) {
        self.links.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patched");
    }

    /// Waits for a condition of the link and returns (reason, message, roomId).
    async fn wait(&self, name: &str, type_: &str, status: &str) -> (String, String, Option<String>) {
        eventually(&format!("{name} {type_}={status}"), WAIT, || async {
            let l = self.links.get(name).await.ok()?;
            let current = l.status.as_ref()?.observed_generation == l.metadata.generation;
            let (st, reason, message) = condition(serde_json::to_value(&l.status).ok().as_ref(), type_)?;
            (st == status && current).then(|| (reason, message, l.status.and_then(|s| s.room_id)))
        })
        .await
    }

    async fn room(&self, name: &str) -> String {
        self.wait(name, "Ready", "True").await.2.expect("roomId in status")
    }

    /// A state event's content, read through the admin API (the test admin is not in the room).
    /// A client acting as the operator's own account (it is in every room it manages).
    async fn as_operator(&self) -> Synapse {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(self.client.clone(), &self.ns);
        let data = secrets.get("matrix-operator-token").await.expect("token").data.expect("data");
        let token = String::from_utf8(data["accessToken"].0.clone()).expect("utf-8");
        self.admin.with_token(exo_matrix_operator::secret::SecretString::new(token))
    }

    async fn state_of(&self, room: &str, kind: &str, key: &str) -> Value {
        let state = self.admin.admin_room_state(&support::rid(room)).await.expect("state readable");
        state.into_iter().find(|e| e.kind == kind && e.state_key == key).map_or(Value::Null, |e| e.content)
    }

    async fn state(&self, room: &str, kind: &str) -> Value {
        self.state_of(room, kind, "").await
    }

    async fn joined(&self, room: &str) -> Vec<String> {
        let mut m = self.admin.room_members(&support::rid(room)).await.expect("members");
        m.retain(|u| !u.as_str().starts_with("@op-"));
        m.sort();
        m.into_iter().map(String::from).collect()
    }
}

#[tokio::test]
async fn creates_a_private_v12_room_with_state_power_and_members() {
    let s = Space::new("srl-create").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    s.people(&["ann", "bob"]).await;
    s.link("team", s.spec("team", &["ann", "bob"], &["ann"])).await;
    let room = s.room("team").await;
    // `kubectl wait` works on the Ready condition.
    let (ok, _, err) =
        platform().kubectl_run(&["wait", "-n", &s.ns, "--for=condition=Ready", "srl/team", "--timeout=10s"], None);
    assert!(ok, "{err}");

    assert!(!room.contains(':'), "a v12 room id has no server part: {room}");
    assert_eq!(s.joined(&room).await, vec![s.id("ann"), s.id("bob")]);
    assert_eq!(s.state(&room, "m.room.join_rules").await["join_rule"], "invite");
    assert_eq!(s.state(&room, "m.room.guest_access").await["guest_access"], "forbidden");
    assert_eq!(s.state(&room, "m.room.history_visibility").await["history_visibility"], "shared");
    assert_eq!(s.state(&room, "m.room.name").await["name"], "Space team");
    let topic = s.state(&room, "m.room.topic").await;
    assert_eq!(topic["topic"], "The best space");
    assert_eq!(topic["m.topic"]["m.text"][0]["body"], "The <b>best</b> space");
    let pl = s.state(&room, "m.room.power_levels").await;
    let users = pl["users"].as_object().expect("users map");
    assert_eq!(users.get(&s.id("ann")), Some(&json!(50)));
    assert!(users.keys().all(|u| !u.starts_with("@op-")), "the creator must not be listed: {users:?}");
    assert_eq!(pl["events"]["m.room.name"], 100);
    assert_eq!(pl["kick"], 50);
    let alias = format!("#space_team_{}:{}", s.tag, s.server);
    assert_eq!(s.admin.resolve_alias(&support::alias(&alias)).await.expect("alias"), Some(support::rid(&room)));
    let marker = s.state_of(&room, "dev.exomatrix.link", &format!("team_{}", s.tag)).await;
    assert_eq!(marker["spaceGroupId"], format!("team_{}", s.tag));

    let (ok, out, _) = platform().kubectl_run(&["get", "srl", "-n", &s.ns], None);
    assert!(ok && out.contains(&room) && out.contains("True"), "{out}");
}

#[tokio::test]
async fn membership_and_manager_changes_reach_the_room_and_strangers_stay() {
    let s = Space::new("srl-members").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    s.people(&["ann", "bob", "cat"]).await;
    s.link("team", s.spec("team", &["ann", "bob", "cat"], &["ann", "bob"])).await;
    let room = s.room("team").await;
    // Someone the operator does not manage joins through the admin API.
    let stranger = format!("@stranger{}:{}", s.tag, s.server);
    s.admin.put_user(&support::uid(&stranger), &Default::default()).await.expect("stranger");
    s.as_operator().await.admin_join(&support::rid(&room), &support::uid(&stranger)).await.expect("stranger joins");

    s.patch(
        "team",
        json!({"spec": {"members": [s.username("ann"), s.username("bob")], "managers": [s.username("ann")]}}),
    )
    .await;
    s.wait("team", "Ready", "True").await;
    let mut expected = vec![s.id("ann"), s.id("bob"), stranger.clone()];
    expected.sort();
    assert_eq!(s.joined(&room).await, expected, "cat kicked, the stranger left alone");
    let pl = s.state(&room, "m.room.power_levels").await;
    assert_eq!(pl["users"].get(s.id("ann")), Some(&json!(50)));
    assert_eq!(pl["users"].get(s.id("bob")), None, "bob is demoted");
}

#[tokio::test]
async fn a_member_whose_account_arrives_later_is_joined_then() {
    let s = Space::new("srl-pending").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    s.people(&["ann"]).await;
    s.link("team", s.spec("team", &["ann", "dan"], &[])).await;
    let room = s.room("team").await;
    let l = s.links.get("team").await.expect("link");
    let status = l.status.expect("status");
    assert_eq!(status.pending_members, vec![s.username("dan")]);
    assert_eq!(status.pending_member_count, Some(1));
    s.people(&["dan"]).await;
    eventually("dan joined", WAIT, || async { s.joined(&room).await.contains(&s.id("dan")).then_some(()) }).await;
}

#[tokio::test]
async fn drift_in_matrix_is_put_back_and_a_quiet_resync_writes_nothing() {
    let s = Space::new("srl-drift").await;
    let op = Operator::start(&s.ns, "matrix", &["--resync", "2s"]);
    s.people(&["ann", "bob"]).await;
    s.link("team", s.spec("team", &["ann", "bob"], &["ann"])).await;
    let room = s.room("team").await;
    let as_op = s.as_operator().await;

    // A quiet period: resyncs happen, but nothing is written.
    let before = op.log_text().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let quiet = &op.log_text()[before..];
    let reads = quiet.lines().filter(|l| l.contains("synapse call") && l.contains("method=\"GET\"")).count();
    let writes: Vec<&str> =
        quiet.lines().filter(|l| l.contains("synapse call") && !l.contains("method=\"GET\"")).collect();
    println!("no-change resyncs over 5 s: {reads} reads, {} writes", writes.len());
    assert!(reads > 0, "resyncs ran");
    assert!(writes.is_empty(), "a no-change resync wrote: {writes:?}");

    as_op
        .put_state(&support::rid(&room), "m.room.name", "", &json!({"name": "Renamed in Element"}))
        .await
        .expect("rename");
    as_op.kick(&support::rid(&room), &support::uid(s.id("bob")), "by hand").await.expect("kick");
    eventually("name and membership restored", WAIT, || async {
        let name = s.state(&room, "m.room.name").await;
        (name["name"] == "Space team" && s.joined(&room).await.contains(&s.id("bob"))).then_some(())
    })
    .await;
    // Spec edits reach the room too.
    s.patch("team", json!({"spec": {"displayName": "Renamed space", "description": "plain now"}})).await;
    eventually("rename mirrored", WAIT, || async {
        let name = s.state(&room, "m.room.name").await;
        let topic = s.state(&room, "m.room.topic").await;
        (name["name"] == "Renamed space" && topic["topic"] == "plain now").then_some(())
    })
    .await;
}

#[tokio::test]
async fn links_an_existing_v10_room_made_by_someone_else() {
    let s = Space::new("srl-adopt").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    s.people(&["ann", "bob"]).await;
    // A room an end user made, with the classic power rules of room version 10.
    let owner = format!("@owner{}:{}", s.tag, s.server);
    s.admin.put_user(&support::uid(&owner), &Default::default()).await.expect("owner");
    let owner_client = s.admin.with_token(s.admin.login_as(&support::uid(&owner)).await.expect("token"));
    let room = owner_client
        .create_room(&CreateRoom {
            preset: Some("private_chat"),
            room_version: Some("10".into()),
            ..Default::default()
        })
        .await
        .expect("v10 room")
        .to_string();
    assert!(room.contains(':'), "{room}");
    // Keys the operator does not model (another tool's, Synapse's `historical`) must survive its power-level writes.
    let mut levels = s.state(&room, "m.room.power_levels").await;
    levels["org.example.policy"] = json!({"strict": true});
    levels["notifications"] = json!({"room": 50, "org.example.ping": 30});
    owner_client.put_state(&support::rid(&room), "m.room.power_levels", "", &levels).await.expect("owner's levels");

    let mut spec = s.spec("legacy", &["ann", "bob"], &["ann"]);
    spec.room_id = Some(room.clone());
    spec.create = false;
    s.link("legacy", spec).await;
    assert_eq!(s.room("legacy").await, room);
    let joined = s.joined(&room).await;
    assert!(joined.contains(&s.id("ann")) && joined.contains(&s.id("bob")), "{joined:?}");
    let pl = s.state(&room, "m.room.power_levels").await;
    assert_eq!(pl["users"][s.id("ann")], 50);
    assert_eq!(pl["users"][&owner], 100, "the owner keeps its level");
    let op_level =
        pl["users"].as_object().expect("users").iter().find(|(u, _)| u.starts_with("@op-")).map(|(_, l)| l.clone());
    assert_eq!(op_level, Some(json!(100)), "in a classic room the operator is listed at 100");
    assert_eq!(pl["org.example.policy"], json!({"strict": true}), "{pl}");
    assert_eq!(pl["notifications"]["org.example.ping"], 30, "{pl}");
    assert_eq!(pl["historical"], 100, "{pl}");
}

#[tokio::test]
async fn a_link_without_a_room_waits_and_a_missing_room_is_a_condition() {
    let s = Space::new("srl-wait").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let mut idle = s.spec("idle", &[], &[]);
    idle.create = false;
    s.link("idle", idle).await;
    // A person must act: kstatus reads Stalled as Failed, so Flux reports the reason instead of a timeout.
    // (Before the session is up, Ready may briefly say so: wait for the Stalled verdict.)
    let (reason, message, room) = s.wait("idle", "Stalled", "True").await;
    assert_eq!(reason, "WaitingForRoom");
    assert!(message.contains("create: true"), "{message}");
    assert_eq!(room, None);
    assert_eq!(s.wait("idle", "Ready", "False").await.0, "WaitingForRoom");

    let mut ghost = s.spec("ghost", &[], &[]);
    ghost.room_id = Some(format!("!doesnotexist{}:{}", s.tag, s.server));
    s.link("ghost", ghost).await;
    let (reason, message, _) = s.wait("ghost", "Stalled", "True").await;
    assert_eq!(reason, "RoomNotFound", "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert_eq!(s.wait("ghost", "Ready", "False").await.0, "RoomNotFound");
}

#[tokio::test]
async fn a_second_link_for_the_same_space_conflicts() {
    let s = Space::new("srl-conflict").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    s.link("first", s.spec("dup", &[], &[])).await;
    let room = s.room("first").await;
    s.link("second", s.spec("dup", &[], &[])).await;
    let (reason, message, _) = s.wait("second", "Conflict", "True").await;
    assert_eq!(reason, "AlreadyLinked");
    assert!(message.contains("first"), "{message}");
    assert_eq!(s.wait("second", "Stalled", "True").await.0, "Conflict");
    assert_eq!(s.links.get("second").await.expect("get").status.and_then(|st| st.room_id), None);
    // Deleting the loser leaves the room alone.
    s.links.delete("second", &DeleteParams::default()).await.expect("delete");
    eventually("second gone", WAIT, || async { s.links.get_opt("second").await.ok()?.is_none().then_some(()) }).await;
    assert!(s.admin.room_details(&support::rid(&room)).await.expect("details").is_some());
}

#[tokio::test]
async fn a_suspended_link_shows_its_plan_and_changes_nothing() {
    let s = Space::new("srl-suspend").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    s.people(&["ann", "bob"]).await;
    s.link("team", s.spec("team", &["ann"], &[])).await;
    let room = s.room("team").await;
    s.patch("team", json!({"spec": {"suspend": true, "members": [s.username("bob")], "displayName": "Not yet"}})).await;
    // Suspended, the link does what it was told (nothing): Ready, neither Reconciling nor Stalled.
    let (reason, message, _) = s.wait("team", "Ready", "True").await;
    assert_eq!(reason, "Suspended", "{message}");
    let status = serde_json::to_value(s.links.get("team").await.expect("get").status).expect("json");
    assert_eq!(condition(Some(&status), "Stalled"), None);
    assert_eq!(condition(Some(&status), "Reconciling"), None);
    let plan = s.links.get("team").await.expect("get").status.and_then(|st| st.plan).expect("plan in status");
    assert_eq!(plan.counts.get("JoinUser"), Some(&1));
    assert_eq!(plan.counts.get("KickUser"), Some(&1));
    assert_eq!(plan.counts.get("SetRoomName"), Some(&1));
    assert!(plan.first_actions.iter().any(|a| a.contains(&s.id("bob"))), "{:?}", plan.first_actions);
    assert_eq!(s.joined(&room).await, vec![s.id("ann")], "nothing applied");
    s.patch("team", json!({"spec": {"suspend": false}})).await;
    s.wait("team", "Ready", "True").await;
    assert_eq!(s.joined(&room).await, vec![s.id("bob")]);
}

#[tokio::test]
async fn removing_most_members_at_once_is_blocked_until_allowed_for_one_pass() {
    let s = Space::new("srl-blast").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let ten = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    s.people(&ten).await;
    s.link("team", s.spec("team", &ten, &[])).await;
    let room = s.room("team").await;
    s.patch("team", json!({"spec": {"members": [s.username("a"), s.username("b")]}})).await;
    let (reason, message, _) = s.wait("team", "Blocked", "True").await;
    assert_eq!(reason, "BlastRadius");
    assert_eq!(s.wait("team", "Stalled", "True").await.0, "Blocked");
    assert!(message.contains("remove 8 of the room's 10"), "{message}");
    assert_eq!(s.joined(&room).await.len(), 10, "nobody kicked");

    s.links
        .patch(
            "team",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"exomatrix.dev/allow-mass-change": "true"}}})),
        )
        .await
        .expect("annotated");
    eventually("8 kicked", WAIT, || async { (s.joined(&room).await.len() == 2).then_some(()) }).await;
    eventually("annotation removed after the pass", WAIT, || async {
        let l = s.links.get("team").await.ok()?;
        (!l.metadata.annotations.unwrap_or_default().contains_key("exomatrix.dev/allow-mass-change")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn invite_mode_invites_instead_of_joining() {
    let s = Space::new("srl-invite").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    s.people(&["ann"]).await;
    let mut spec = s.spec("team", &["ann"], &[]);
    spec.membership = exo_matrix_operator::crd::MembershipMode::Invite;
    s.link("team", spec).await;
    let room = s.room("team").await;
    assert_eq!(s.joined(&room).await, Vec::<String>::new());
    let member = s.state_of(&room, "m.room.member", &s.id("ann")).await;
    assert_eq!(member["membership"], "invite");
}

#[tokio::test]
async fn deletion_follows_the_deletion_policy() {
    let s = Space::new("srl-delete").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    s.people(&["ann"]).await;
    let mut rooms = Vec::new();
    for (name, policy) in [("keep", "Retain"), ("arch", "Archive"), ("gone", "Delete")] {
        let mut spec = s.spec(name, &["ann"], &[]);
        spec.deletion_policy = serde_json::from_value(json!(policy)).expect("policy");
        s.link(name, spec).await;
        rooms.push(s.room(name).await);
    }
    for name in ["keep", "arch", "gone"] {
        s.links.delete(name, &DeleteParams::default()).await.expect("delete");
    }
    for name in ["keep", "arch", "gone"] {
        eventually(&format!("{name} gone"), WAIT, || async {
            s.links.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
    assert_eq!(s.joined(&rooms[0]).await, vec![s.id("ann")], "Retain leaves the room as it is");
    assert_eq!(s.joined(&rooms[1]).await, Vec::<String>::new(), "Archive kicks managed members");
    let topic = s.state(&rooms[1], "m.room.topic").await;
    assert!(topic["topic"].as_str().unwrap_or("").starts_with("[archived]"), "{topic}");
    assert_eq!(s.state(&rooms[1], "m.room.power_levels").await["events_default"], 100, "read-only");
    assert_eq!(s.admin.room_details(&support::rid(&rooms[2])).await.expect("details"), None, "Delete purges the room");
}

#[tokio::test]
async fn prints_synapse_calls_of_a_first_reconcile_and_of_a_quiet_resync() {
    const N: usize = 20;
    let s = Space::new("srl-calls").await;
    let op = Operator::start(&s.ns, "matrix", &["--resync", "3s"]);
    let shorts: Vec<String> = (0..N).map(|i| format!("m{i:02}x")).collect();
    let refs: Vec<&str> = shorts.iter().map(String::as_str).collect();
    s.people(&refs).await;
    s.link("big", s.spec("big", &refs, &refs[..2])).await;
    s.room("big").await;
    let link_calls = |log: &str| -> (usize, usize) {
        let calls: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("synapse call") && l.contains("SpaceRoomLink.v1alpha1.exomatrix.dev/big."))
            .collect();
        let writes = calls.iter().filter(|l| !l.contains("method=\"GET\"")).count();
        (calls.len(), writes)
    };
    let (first, first_writes) = link_calls(&op.log_text());
    let offset = op.log_text().len();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (quiet, quiet_writes) = link_calls(&op.log_text()[offset..]);
    println!(
        "link with {N} members: first reconciles {first} Synapse calls ({first_writes} writes); \
         no-change resyncs over 7 s: {quiet} calls ({quiet_writes} writes)"
    );
    assert!(quiet > 0, "resyncs ran");
    assert_eq!(quiet_writes, 0, "a no-change resync must not write");
    // createRoom + N joins + a handful of reads; anything near 2N+10 means repeated work.
    assert!(first_writes <= N + 3, "{first_writes} writes for {N} members");
}

#[tokio::test]
async fn the_space_avatar_becomes_the_room_avatar() {
    use support::http::{Files, png, serve};
    let s = Space::new("srl-avatar").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let files = Files::default();
    files.set("/space.png", "image/png", &png(7));
    let base = serve(files).await;
    let mut spec = s.spec("pic", &[], &[]);
    spec.avatar_url = Some(format!("{base}/space.png"));
    s.link("pic", spec).await;
    let room = s.room("pic").await;
    let uploaded = s.links.get("pic").await.expect("get").status.and_then(|st| st.avatar).expect("avatar in status");
    assert_eq!(s.state(&room, "m.room.avatar").await["url"], uploaded.content_uri.as_str());
}
