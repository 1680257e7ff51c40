use super::*;

const OP: &str = "@op:exo.test";

fn uid(id: &str) -> OwnedUserId {
    ids::user_id(id).expect("a user id")
}

fn op() -> OwnedUserId {
    uid(OP)
}

fn id(u: &str) -> OwnedUserId {
    uid(&format!("@{u}:exo.test"))
}

fn pl(content: Value) -> PowerLevels {
    PowerLevels::parse(&content).expect("power levels")
}

fn desired(members: &[&str], managers: &[&str]) -> DesiredRoom {
    DesiredRoom {
        space_group_id: "support_team".into(),
        name: Some("Support Team".into()),
        description: Some("Where the <b>support</b> team meets".into()),
        avatar: AvatarWish::Leave,
        members: members.iter().map(|u| id(u)).collect(),
        managers: managers.iter().map(|u| id(u)).collect(),
        manager_level: 50,
        mode: MembershipMode::Enforce,
        managed: ["ann", "bob", "cat", "dan", "eve", "fay", "gil", "hal", "ida", "joe", "kim"]
            .iter()
            .map(|u| id(u))
            .collect(),
        operator: op(),
        kick_reason: "left the space Support Team".into(),
    }
}

/// A v12 room freshly created by the operator (creator, absent from `users`).
fn v12_room() -> ObservedRoom {
    ObservedRoom {
        version: "12".into(),
        creators: [op()].into(),
        power_levels: pl(
            json!({"users": {}, "users_default": 0, "events_default": 0, "state_default": 50, "invite": 0}),
        ),
        membership: [(op(), Membership::Join)].into(),
        ..ObservedRoom::default()
    }
}

/// A v10 room made by someone else where the operator got power 100.
fn v10_room() -> ObservedRoom {
    ObservedRoom {
        version: "10".into(),
        creators: BTreeSet::new(),
        power_levels: pl(json!({"users": {"@owner:exo.test": 100, OP: 100}, "users_default": 0})),
        membership: [(op(), Membership::Join), (uid("@owner:exo.test"), Membership::Join)].into(),
        ..ObservedRoom::default()
    }
}

fn converge(d: &DesiredRoom, o: &ObservedRoom) -> Vec<RoomAction> {
    let actions = plan_room(d, o);
    let after = apply(o, &actions);
    assert_eq!(plan_room(d, &after), vec![], "not converged after {actions:?}");
    actions
}

fn pl_of(actions: &[RoomAction]) -> Value {
    actions
        .iter()
        .find_map(|a| match a {
            RoomAction::SetPowerLevels { levels } => Some(levels.content()),
            _ => None,
        })
        .expect("a power level change")
}

#[test]
fn new_v12_room_gets_state_members_and_manager_power_without_listing_the_creator() {
    let actions = converge(&desired(&["ann", "bob"], &["ann"]), &v12_room());
    let pl = pl_of(&actions);
    assert_eq!(pl["users"], json!({"@ann:exo.test": 50}), "the creator must not appear in users");
    assert_eq!(pl["events"]["m.room.power_levels"], 100);
    assert_eq!(PowerLevels::parse(&pl).unwrap().levels.kick, Int::from(50), "50 is also the default: may be left out");
    let joins: Vec<_> = actions.iter().filter(|a| matches!(a, RoomAction::JoinUser { .. })).collect();
    assert_eq!(joins.len(), 2);
    assert!(actions.iter().any(|a| matches!(a, RoomAction::SetRoomName { name, .. } if name == "Support Team")));
    assert!(actions.iter().any(|a| matches!(a, RoomAction::SetMarker { .. })));
}

#[test]
fn classic_room_keeps_the_operator_at_100_in_users() {
    let actions = converge(&desired(&["ann"], &["ann"]), &v10_room());
    let pl = pl_of(&actions);
    assert_eq!(pl["users"][OP], 100);
    assert_eq!(pl["users"]["@owner:exo.test"], 100, "unknown users keep their level");
    assert_eq!(pl["users"]["@ann:exo.test"], 50);
}

#[test]
fn a_manager_who_is_no_longer_one_is_demoted() {
    let d = desired(&["ann", "bob"], &["ann"]);
    let mut o = apply(&v12_room(), &plan_room(&desired(&["ann", "bob"], &["ann", "bob"]), &v12_room()));
    assert_eq!(o.power_levels.content()["users"]["@bob:exo.test"], 50);
    let actions = converge(&d, &o);
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(pl_of(&actions)["users"], json!({"@ann:exo.test": 50}));
    o = apply(&o, &actions);
    assert_eq!(plan_room(&d, &o), vec![]);
}

#[test]
fn removed_managed_members_are_kicked_and_strangers_left_alone() {
    let d = desired(&["ann"], &[]);
    let mut o = v12_room();
    for u in ["ann", "bob"] {
        o.membership.insert(id(u), Membership::Join);
    }
    o.membership.insert(uid("@stranger:exo.test"), Membership::Join);
    let actions = plan_room(&d, &o);
    let kicks: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            RoomAction::KickUser { user_id, reason, .. } => Some((user_id.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(kicks, vec![("@bob:exo.test", "left the space Support Team")]);
}

#[test]
fn invite_mode_invites_once_and_respects_leaving() {
    let mut d = desired(&["ann", "bob"], &[]);
    d.mode = MembershipMode::Invite;
    let mut o = v12_room();
    o.membership.insert(id("bob"), Membership::Leave);
    let actions = converge(&d, &o);
    let invites: Vec<_> = actions.iter().filter(|a| matches!(a, RoomAction::InviteUser { .. })).collect();
    assert_eq!(invites.len(), 1, "bob left and is not re-invited: {actions:?}");
    // Enforce re-joins whoever left.
    d.mode = MembershipMode::Enforce;
    assert!(
        plan_room(&d, &o)
            .iter()
            .any(|a| matches!(a, RoomAction::JoinUser { user_id, .. } if user_id == "@bob:exo.test"))
    );
}

#[test]
fn invite_mode_invites_again_whom_the_operator_removed_but_not_whom_a_person_removed() {
    let mut d = desired(&["ann", "bob", "cat"], &[]);
    d.mode = MembershipMode::Invite;
    let mut o = v12_room();
    for u in ["ann", "bob", "cat"] {
        o.membership.insert(id(u), Membership::Leave);
    }
    o.removed_by.insert(id("ann"), op()); // removed by the operator, listed again
    o.removed_by.insert(id("bob"), uid("@manager:exo.test")); // a manager's kick is a person's decision
    let invited: Vec<_> = converge(&d, &o)
        .into_iter()
        .filter_map(|a| match a {
            RoomAction::InviteUser { user_id, .. } => Some(user_id),
            _ => None,
        })
        .collect();
    assert_eq!(invited, vec![id("ann")], "cat left by herself");
}

#[test]
fn observes_who_removed_a_person() {
    let member = |user: &str, sender: &str, membership: &str| RoomStateEvent {
        kind: "m.room.member".into(),
        state_key: id(user).to_string(),
        sender: sender.into(),
        content: json!({"membership": membership}),
    };
    let o = observe(
        &[member("ann", OP, "leave"), member("bob", id("bob").as_str(), "leave"), member("cat", OP, "join")],
        "x",
    )
    .unwrap();
    assert_eq!(o.removed_by, [(id("ann"), op())].into());
}

#[test]
fn drifted_name_topic_and_power_are_put_back_and_nothing_else() {
    let d = desired(&["ann"], &["ann"]);
    let synced = apply(&v12_room(), &plan_room(&d, &v12_room()));
    assert_eq!(plan_room(&d, &synced), vec![]);
    let mut drifted = synced.clone();
    drifted.name = Some("Renamed in Element".into());
    drifted.power_levels.levels.users.insert(id("ann"), 100.into());
    let actions = converge(&d, &drifted);
    assert_eq!(actions.iter().map(RoomAction::kind).collect::<Vec<_>>(), ["SetRoomName", "SetPowerLevels"]);
}

#[test]
fn topic_strips_html_and_keeps_it_as_m_topic() {
    let c = topic_content("Where the <b>support</b> team meets &amp; talks");
    assert_eq!(c["topic"], "Where the support team meets & talks");
    assert_eq!(c["m.topic"]["m.text"][0]["mimetype"], "text/html");
    let plain = topic_content("Just text");
    assert_eq!(plain["m.topic"]["m.text"].as_array().map(Vec::len), Some(1));
}

#[test]
fn topic_text_is_what_a_browser_shows() {
    // A `<` that opens no tag is text, not the start of one that swallows the rest.
    assert_eq!(strip_html("1 < 2 and 3 > 2"), "1 < 2 and 3 > 2");
    // Every entity, named or numeric, not a handful.
    assert_eq!(strip_html("Caf&eacute; &#8364;5 &hellip; &#x263A;"), "Café €5 … ☺");
    // Blocks separate words; inline tags do not split them.
    assert_eq!(strip_html("<p>Support</p><p>team</p>"), "Support team");
    assert_eq!(strip_html("su<b>pp</b>ort<br>desk"), "support desk");
    assert_eq!(strip_html("<ul><li>one</li><li>two</li></ul>"), "one two");
    assert_eq!(strip_html("<a href=\"https://exo.test\">our site</a>"), "our site");
}

#[test]
fn observes_creators_only_for_v12() {
    let state = vec![
        RoomStateEvent {
            kind: "m.room.create".into(),
            state_key: "".into(),
            sender: OP.into(),
            content: json!({"room_version": "12"}),
        },
        RoomStateEvent {
            kind: "m.room.member".into(),
            state_key: id("ann").to_string(),
            sender: OP.into(),
            content: json!({"membership": "invite"}),
        },
        RoomStateEvent {
            kind: MARKER_TYPE.into(),
            state_key: "support_team".into(),
            sender: OP.into(),
            content: marker("support_team"),
        },
    ];
    let o = observe(&state, "support_team").unwrap();
    assert!(o.creators.contains(&op()));
    assert_eq!(o.membership.get(&id("ann")), Some(&Membership::Invite));
    assert!(o.marker.is_some());
    let mut v10 = state.clone();
    v10[0].content = json!({"room_version": "10"});
    assert!(observe(&v10, "support_team").unwrap().creators.is_empty());
}

#[test]
fn mass_removal_is_blocked_with_numbers() {
    let all = ["ann", "bob", "cat", "dan", "eve", "fay", "gil", "hal", "ida", "joe"];
    let mut o = v12_room();
    for u in all {
        o.membership.insert(id(u), Membership::Join);
    }
    let d = desired(&["ann", "bob"], &[]);
    let actions = plan_room(&d, &o);
    let why = guard(&d, &o, &actions, BlastRadius::default()).expect("blocked");
    assert!(why.contains("remove 8 of the room's 10"), "{why}");
    // Removing 3 of 10 passes.
    let d = desired(&all[..7], &[]);
    assert_eq!(guard(&d, &o, &plan_room(&d, &o), BlastRadius::default()), None);
}

#[test]
fn demoting_every_manager_is_blocked() {
    let d = desired(&["ann", "bob"], &["ann"]);
    let o = apply(&v12_room(), &plan_room(&d, &v12_room()));
    let none = desired(&["ann", "bob"], &[]);
    let why = guard(&none, &o, &plan_room(&none, &o), BlastRadius::default()).expect("blocked");
    assert!(why.contains("demote all 1 managers"), "{why}");
}

#[test]
fn a_creator_is_never_listed_and_keys_nobody_models_survive() {
    // A v12 room ann created (linked by roomId): she has creator power; the operator has its listed 100.
    let d = desired(&["ann", "bob"], &["ann", "bob"]);
    let o = ObservedRoom {
        version: "12".into(),
        creators: [id("ann")].into(),
        power_levels: pl(json!({
            "users": {OP: 100}, "historical": 100, "org.example.policy": {"strict": true},
            "notifications": {"room": 50, "org.example.ping": 30},
        })),
        membership: [(op(), Membership::Join), (id("ann"), Membership::Join)].into(),
        ..ObservedRoom::default()
    };
    let content = pl_of(&converge(&d, &o));
    assert_eq!(content["users"], json!({OP: 100, "@bob:exo.test": 50}), "ann created the room: never listed");
    assert_eq!(content["historical"], 100);
    assert_eq!(content["org.example.policy"], json!({"strict": true}));
    assert_eq!(content["notifications"]["org.example.ping"], 30);
}

#[test]
fn creators_have_power_from_room_version_12_on() {
    assert!(!version_has_creator_power("10"));
    assert!(!version_has_creator_power("11"));
    assert!(version_has_creator_power("12"));
    assert!(version_has_creator_power("13"), "a later version keeps the rule");
    assert!(version_has_creator_power("org.matrix.hydra.11"));
}

#[test]
fn unreadable_power_levels_stop_the_plan() {
    let state = [RoomStateEvent {
        kind: "m.room.power_levels".into(),
        state_key: "".into(),
        sender: OP.into(),
        content: json!({"ban": "lots"}),
    }];
    assert!(matches!(observe(&state, "x"), Err(StateError::PowerLevels(_))));
}

#[test]
fn a_pass_reports_its_membership_changes_in_one_event_per_kind() {
    let join = |u: &str| RoomAction::JoinUser { user_id: id(u) };
    let mut done: Vec<RoomAction> = (0..23).map(|i| join(&format!("u{i:02}"))).collect();
    done.push(RoomAction::KickUser { user_id: id("gone"), reason: "left".into() });
    done.push(RoomAction::SetRoomName { name: "x".into() });
    let events = membership_events(&done);
    assert_eq!(events.len(), 2, "joins and kicks; state changes have Events of their own");
    let (reason, note) = &events[0];
    assert_eq!(*reason, "JoinUser");
    assert!(note.starts_with("joined @u00:exo.test, @u01:exo.test"), "{note}");
    assert!(note.ends_with("@u19:exo.test and 3 more"), "{note}");
    assert_eq!(events[1], ("KickUser", "removed @gone:exo.test".to_owned()));
    assert!(membership_events(&[]).is_empty());
}
