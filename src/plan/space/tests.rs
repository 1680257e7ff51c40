use super::*;

const OP: &str = "@op:exo.test";
const SPACE: &str = "!space";

fn uid(id: &str) -> OwnedUserId {
    crate::ids::user_id(id).expect("a user id")
}

fn op() -> OwnedUserId {
    uid(OP)
}

fn rid(id: &str) -> OwnedRoomId {
    crate::ids::room_id(id).expect("a room id")
}

pub(super) fn space() -> OwnedRoomId {
    rid(SPACE)
}

fn id(u: &str) -> OwnedUserId {
    uid(&format!("@{u}:exo.test"))
}

pub(super) fn desired(members: &[&str], managers: &[&str], children: &[&str]) -> DesiredSpace {
    DesiredSpace {
        marker_key: marker_key("ns", "intranet"),
        marker: marker("ns", "intranet"),
        name: "Intranet".into(),
        topic: Some("All our <b>teams</b>".into()),
        avatar: AvatarWish::Leave,
        members: members.iter().map(|u| id(u)).collect(),
        managers: managers.iter().map(|u| id(u)).collect(),
        manager_level: 50,
        managed: ["ann", "bob", "cat", "dan", "eve", "fay", "gil", "hal"].iter().map(|u| id(u)).collect(),
        operator: op(),
        kick_reason: "no longer in any room of the space".into(),
        children: children.iter().map(|r| rid(r)).collect(),
        via: crate::ids::server_name("exo.test").expect("a server name"),
    }
}

/// A v12 space freshly created by the operator.
pub(super) fn fresh() -> ObservedSpace {
    ObservedSpace {
        room: ObservedRoom {
            version: "12".into(),
            creators: [op()].into(),
            power_levels: PowerLevels::parse(
                &json!({"users": {}, "users_default": 0, "events_default": 0, "state_default": 50}),
            )
            .expect("power levels"),
            membership: [(op(), Membership::Join)].into(),
            ..ObservedRoom::default()
        },
        ..ObservedSpace::default()
    }
}

pub(super) fn converge(d: &DesiredSpace, o: &ObservedSpace) -> (Vec<SpaceAction>, ObservedSpace) {
    let actions = plan_space(d, &space(), o);
    let after = apply(o, &actions);
    assert_eq!(plan_space(d, &space(), &after), vec![], "not converged after {actions:?}");
    (actions, after)
}

fn kinds(actions: &[SpaceAction]) -> Vec<&'static str> {
    actions.iter().map(SpaceAction::kind).collect()
}

#[test]
fn a_new_space_gets_its_rooms_both_ways_and_its_members_then_converges() {
    let d = desired(&["ann", "bob"], &["ann"], &["!a", "!b:old.server"]);
    let (actions, after) = converge(&d, &fresh());
    // Child and parent for each room, via the server name, never the room id's server part.
    for room in ["!a", "!b:old.server"] {
        assert!(actions.contains(&SpaceAction::SetChild {
            space_id: space(),
            room_id: rid(room),
            content: json!({"via": ["exo.test"]})
        }));
        assert!(actions.contains(&SpaceAction::SetParent {
            room_id: rid(room),
            space_id: space(),
            content: json!({"via": ["exo.test"], "canonical": true})
        }));
    }
    assert_eq!(after.room.membership.get(&id("ann")), Some(&Membership::Join));
    assert_eq!(after.room.membership.get(&id("bob")), Some(&Membership::Join));
    let pl = &after.room.power_levels.content();
    assert_eq!(pl["users"][id("ann").as_str()], 50);
    assert!(pl["users"].get(OP).is_none(), "a v12 creator must not be listed");
    assert_eq!(pl["events"][CHILD], 100, "only the operator adds or removes rooms");
    assert_eq!(after.marker, Some(marker("ns", "intranet")));
    assert_eq!(after.room.topic.as_ref().and_then(|t| t["topic"].as_str()), Some("All our teams"));
}

#[test]
fn a_room_no_longer_selected_loses_child_and_parent() {
    let (_, before) = converge(&desired(&["ann"], &[], &["!a", "!b"]), &fresh());
    let d = desired(&["ann"], &[], &["!a"]);
    let (actions, after) = converge(&d, &before);
    assert_eq!(kinds(&actions), vec!["RemoveParent", "RemoveChild"], "the parent first: a listed child has one");
    assert!(actions.iter().all(|a| a.state_event().is_some_and(|(_, _, _, c)| c == json!({}))));
    assert_eq!(after.children.keys().collect::<Vec<_>>(), vec![&rid("!a")]);
    assert_eq!(after.parents.keys().collect::<Vec<_>>(), vec![&rid("!a")]);
}

#[test]
fn a_parent_left_in_a_room_after_its_child_went_is_removed() {
    let mut o = converge(&desired(&[], &[], &["!a"]), &fresh()).1;
    o.children.clear();
    let actions = plan_space(&desired(&[], &[], &[]), &space(), &o);
    assert_eq!(kinds(&actions), vec!["RemoveParent"]);
}

#[test]
fn people_who_leave_every_room_leave_the_space_others_and_strangers_stay() {
    let mut o = converge(&desired(&["ann", "bob"], &[], &["!a"]), &fresh()).1;
    o.room.membership.insert(uid("@stranger:exo.test"), Membership::Join);
    let (actions, after) = converge(&desired(&["ann"], &[], &["!a"]), &o);
    assert_eq!(kinds(&actions), vec!["KickUser"]);
    assert_eq!(after.room.membership.get(&id("bob")), Some(&Membership::Leave));
    assert_eq!(after.room.membership.get(&uid("@stranger:exo.test")), Some(&Membership::Join), "unmanaged: left alone");
}

#[test]
fn someone_who_left_the_space_is_joined_again_but_a_ban_is_respected() {
    let mut o = converge(&desired(&["ann", "bob"], &[], &[]), &fresh()).1;
    o.room.membership.insert(id("ann"), Membership::Leave);
    o.room.membership.insert(id("bob"), Membership::Ban);
    let actions = plan_space(&desired(&["ann", "bob"], &[], &[]), &space(), &o);
    assert_eq!(actions, vec![SpaceAction::JoinUser { room_id: space(), user_id: id("ann") }]);
}

#[test]
fn removing_most_members_at_once_is_blocked() {
    let everyone = ["ann", "bob", "cat", "dan", "eve", "fay", "gil", "hal"];
    let o = converge(&desired(&everyone, &["ann"], &[]), &fresh()).1;
    let d = desired(&["ann"], &["ann"], &[]);
    let actions = plan_space(&d, &space(), &o);
    let why = guard(&d, &o, &actions, BlastRadius::default()).expect("blocked");
    assert!(why.contains("remove 7 of the room's 8"), "{why}");
    let d = desired(&everyone[..6], &["ann"], &[]);
    assert_eq!(guard(&d, &o, &plan_space(&d, &space(), &o), BlastRadius::default()), None);
    // Demoting every manager is blocked too.
    let d = desired(&everyone, &[], &[]);
    assert!(guard(&d, &o, &plan_space(&d, &space(), &o), BlastRadius::default()).is_some());
}

#[test]
fn membership_follows_intent_not_health() {
    let accounts: BTreeMap<String, Account> = [
        ("ann", Some(id("ann")), true, false),
        // Not Ready (its Secret is missing, Synapse was down…) but exists, enabled, has an id: a member.
        ("bob", Some(id("bob")), true, false),
        ("cat", Some(id("cat")), false, false),
        ("dan", Some(id("dan")), true, true),
        ("eve", None, true, false),
    ]
    .into_iter()
    .map(|(u, user_id, enabled, deleting)| (u.to_owned(), Account { user_id, enabled, deleting }))
    .collect();
    let listed: BTreeSet<String> = ["ann", "bob", "cat", "dan", "eve", "zed"].iter().map(|s| s.to_string()).collect();
    let m = space_members(&listed, &["ann".to_owned(), "boss".to_owned()], &accounts);
    assert_eq!(m.members, [id("ann"), id("bob")].into());
    assert_eq!(m.managers, [id("ann")].into());
    assert_eq!(m.pending, ["boss", "cat", "dan", "eve", "zed"].iter().map(|s| s.to_string()).collect());
}

#[test]
fn aliases_never_meet_a_link_alias_nor_another_namespace() {
    assert_eq!(alias_localpart("exo_", "team-a", "intranet"), "exo_space=team-a=intranet");
    assert_ne!(alias_localpart("", "a-b", "c"), alias_localpart("", "a", "b-c"));
    // A link's alias is `<prefix><spaceGroupId>`, and `=` is not allowed in a spaceGroupId.
    let group_id_chars = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-');
    assert!(crate::crd::patterns::SPACE_GROUP_ID.contains("[a-z0-9_.\\-]") && !group_id_chars('='));
    let long = alias_localpart("", &"n".repeat(63), &"x".repeat(253));
    assert!(long.len() <= 180, "{}", long.len());
    assert_ne!(long, alias_localpart("", &"n".repeat(63), &format!("{}y", "x".repeat(252))));
}

#[test]
fn observes_children_marker_and_ignores_removed_children() {
    let ev = |kind: &str, key: &str, content: Value| RoomStateEvent {
        kind: kind.into(),
        state_key: key.into(),
        sender: OP.into(),
        content,
    };
    let state = vec![
        ev("m.room.create", "", json!({"room_version": "12", "type": "m.space"})),
        ev(CHILD, "!a", json!({"via": ["exo.test"]})),
        ev(CHILD, "!gone", json!({})),
        ev(SPACE_MARKER_TYPE, "ns/intranet", marker("ns", "intranet")),
        ev(SPACE_MARKER_TYPE, "other/x", marker("other", "x")),
    ];
    let o = observe(&state, "ns/intranet").unwrap();
    assert_eq!(o.children.keys().collect::<Vec<_>>(), vec![&rid("!a")]);
    assert_eq!(o.marker, Some(marker("ns", "intranet")));
    assert!(o.room.creators.contains(&op()));
}
