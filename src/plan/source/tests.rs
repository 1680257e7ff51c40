use super::*;
use crate::exo::User;

fn space(id: &str, pretty: &str) -> Space {
    Space {
        id: id.into(),
        display_name: Some(format!("{pretty} team")),
        pretty_name: Some(pretty.into()),
        group_id: Some(format!("/spaces/{pretty}")),
        description: Some("about".into()),
        avatar_url: Some(format!("/portal/rest/v1/social/spaces/{id}/avatar?r=x&byId=true")),
        members_count: None,
        managers_count: None,
    }
}

fn user(name: &str, enabled: bool) -> User {
    User {
        username: name.into(),
        fullname: Some(format!("{name} Full")),
        email: Some(format!("{name}@example.org")),
        enabled,
        deleted: false,
        avatar: Some(format!("/portal/rest/v1/social/users/{name}/avatar")),
        is_default_avatar: false,
    }
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot {
        spaces: vec![space("12", "marketing"), space("15", "sandbox_1")],
        users: [user("ann", true), user("bob", true), user("cat", false)]
            .into_iter()
            .map(|u| (u.username.clone(), u))
            .collect(),
        ..Snapshot::default()
    };
    s.members.insert("12".into(), ["ann".into(), "bob".into()].into());
    s.managers.insert("12".into(), ["ann".into()].into());
    s.members.insert("15".into(), ["cat".into()].into());
    s
}

fn settings() -> SourceSettings {
    SourceSettings {
        base_url: "https://exo.example.org".into(),
        spaces: SpaceMatcher::new(&[], &["sandbox*".into()]).expect("patterns"),
        create_rooms: true,
        ..SourceSettings::default()
    }
}

/// Applies a plan to the existing objects, as the controller would.
fn apply(
    plan: &SourcePlan,
    links: &mut BTreeMap<String, Existing<SpaceRoomLinkSpec>>,
    users: &mut BTreeMap<String, Existing<MatrixUserSpec>>,
) {
    for a in &plan.actions {
        match a {
            SourceAction::ApplyLink { name, spec } => {
                links.insert(
                    name.clone(),
                    Existing { owned: true, labelled: true, key: spec.space_group_id.clone(), spec: spec.clone() },
                );
            }
            SourceAction::DeleteLink { name } => {
                links.remove(name);
            }
            SourceAction::ApplyUser { name, spec } => {
                users.insert(
                    name.clone(),
                    Existing { owned: true, labelled: true, key: spec.username.clone(), spec: spec.clone() },
                );
            }
            SourceAction::DisableUser { name } => {
                if let Some(u) = users.get_mut(name) {
                    u.spec.enabled = false;
                }
            }
        }
    }
}

#[test]
fn names_are_stable_valid_and_collision_free() {
    assert_eq!(link_name(&space("12", "x")), "exo-space-12");
    assert_eq!(user_name("jdoe"), "exo-user-jdoe");
    assert_ne!(user_name("John"), user_name("john"));
    assert!(user_name("John").starts_with("exo-user-john-"));
    assert!(user_name("a_b").starts_with("exo-user-a-b-"));
}

#[test]
fn globs_match_pretty_names() {
    let m = |include: &[&str], exclude: &[&str]| {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        SpaceMatcher::new(&owned(include), &owned(exclude)).expect("patterns")
    };
    assert!(m(&["sandbox*"], &[]).matches("sandbox_1"));
    assert!(m(&["m?rketing"], &[]).matches("marketing"));
    assert!(!m(&["sandbox*"], &[]).matches("marketing"));
    assert!(m(&[], &[]).matches("anything"));
    assert!(!m(&["*"], &["*_old"]).matches("sales_old"));
    // Only `*` and `?` are special: brackets and braces are literal.
    assert!(m(&["team[1]"], &[]).matches("team[1]"));
    assert!(!m(&["team[1]"], &[]).matches("team1"));
    assert!(m(&["{a,b}"], &[]).matches("{a,b}"));
}

/// The old recursive matcher took exponential time on these; the automaton is linear.
#[test]
fn patterns_with_many_stars_match_in_linear_time() {
    let pattern = "*a".repeat(40) + "b";
    let name = "a".repeat(5_000);
    let m = SpaceMatcher::new(&[pattern], &[]).expect("patterns");
    assert!(!m.matches(&name));
    assert!(m.matches(&format!("{name}b")));
}

#[test]
fn an_empty_roster_is_held_while_the_space_says_it_has_members() {
    let (mut links, mut users) = (BTreeMap::new(), BTreeMap::new());
    let mut first = snapshot();
    first.spaces[0].members_count = Some(2);
    first.spaces[0].managers_count = Some(1);
    apply(&plan_source(&first, &settings(), &links, &users), &mut links, &mut users);
    assert_eq!(links["exo-space-12"].spec.members, vec!["ann", "bob"]);

    // eXo 6 answering only the caller's memberships: the space says 2, the roster says none.
    let mut empty = first.clone();
    empty.members.insert("12".into(), BTreeSet::new());
    empty.managers.insert("12".into(), BTreeSet::new());
    let plan = plan_source(&empty, &settings(), &links, &users);
    assert!(plan.actions.is_empty(), "nothing changes for a held space: {:?}", plan.actions);
    assert_eq!(plan.held.len(), 1);
    assert!(plan.held[0].contains("marketing") && plan.held[0].contains("2 members"), "{:?}", plan.held);

    // Only the managers vanish while the space says it has one: held too.
    let mut no_managers = first.clone();
    no_managers.managers.insert("12".into(), BTreeSet::new());
    let plan = plan_source(&no_managers, &settings(), &links, &users);
    assert!(plan.actions.is_empty() && plan.held.len() == 1, "{plan:?}");

    // A real drop to zero goes through: the members leave the link, their accounts are disabled.
    let mut zero = empty.clone();
    zero.spaces[0].members_count = Some(0);
    zero.spaces[0].managers_count = Some(0);
    let plan = plan_source(&zero, &settings(), &links, &users);
    assert!(plan.held.is_empty());
    assert!(plan.actions.iter().any(|a| matches!(a, SourceAction::ApplyLink { spec, .. } if spec.members.is_empty())));
    assert!(plan.actions.contains(&SourceAction::DisableUser { name: user_name("bob") }), "{:?}", plan.actions);

    // A space without counts (eXo 5.3) is believed as it is.
    let mut x5 = empty.clone();
    x5.spaces[0].members_count = None;
    x5.spaces[0].managers_count = None;
    assert!(plan_source(&x5, &settings(), &links, &users).held.is_empty());
}

#[test]
fn writes_one_link_per_wanted_space_and_one_user_per_member_then_converges() {
    let (mut links, mut users) = (BTreeMap::new(), BTreeMap::new());
    let plan = plan_source(&snapshot(), &settings(), &links, &users);
    let link = plan
        .actions
        .iter()
        .find_map(|a| match a {
            SourceAction::ApplyLink { name, spec } if name == "exo-space-12" => Some(spec.clone()),
            _ => None,
        })
        .expect("marketing linked");
    assert_eq!(link.space_group_id, "marketing");
    assert_eq!(link.members, vec!["ann", "bob"]);
    assert_eq!(link.managers, vec!["ann"]);
    assert!(link.create);
    assert_eq!(
        link.avatar_url.as_deref(),
        Some("https://exo.example.org/portal/rest/v1/social/spaces/12/avatar?r=x&byId=true")
    );
    assert!(
        !plan.actions.iter().any(|a| matches!(a, SourceAction::ApplyLink { name, .. } if name == "exo-space-15")),
        "sandbox excluded"
    );
    assert!(
        !plan.actions.iter().any(|a| matches!(a, SourceAction::ApplyUser { spec, .. } if spec.username == "cat")),
        "cat is only in an excluded space"
    );
    apply(&plan, &mut links, &mut users);
    assert_eq!(
        plan_source(&snapshot(), &settings(), &links, &users),
        SourcePlan { spaces_synced: 1, users_synced: 2, ..SourcePlan::default() }
    );
}

#[test]
fn renames_demotions_removals_and_disabling_follow_exo() {
    let (mut links, mut users) = (BTreeMap::new(), BTreeMap::new());
    apply(&plan_source(&snapshot(), &settings(), &links, &users), &mut links, &mut users);
    let mut next = snapshot();
    next.spaces[0].display_name = Some("Marketing & Brand".into());
    next.managers.insert("12".into(), BTreeSet::new());
    next.members.insert("12".into(), ["ann".into()].into());
    next.users.get_mut("ann").expect("ann").enabled = false;
    let plan = plan_source(&next, &settings(), &links, &users);
    let link = plan.actions.iter().find_map(|a| match a {
        SourceAction::ApplyLink { spec, .. } => Some(spec.clone()),
        _ => None,
    });
    let link = link.expect("link updated");
    assert_eq!(link.display_name.as_deref(), Some("Marketing & Brand"));
    assert_eq!((link.members, link.managers), (vec!["ann".to_owned()], vec![]));
    assert!(plan.actions.contains(&SourceAction::DisableUser { name: user_name("bob") }), "{:?}", plan.actions);
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, SourceAction::ApplyUser { spec, .. } if spec.username == "ann" && !spec.enabled))
    );

    // The space deleted in eXo: its link goes.
    let mut gone = next.clone();
    gone.spaces.remove(0);
    let plan = plan_source(&gone, &settings(), &links, &users);
    assert!(plan.actions.contains(&SourceAction::DeleteLink { name: "exo-space-12".into() }));
}

#[test]
fn hand_written_objects_are_never_overwritten() {
    let mut links = BTreeMap::new();
    let spec: SpaceRoomLinkSpec =
        serde_json::from_value(serde_json::json!({"spaceGroupId": "marketing"})).expect("spec");
    links.insert("mine".to_owned(), Existing { owned: false, labelled: false, key: "marketing".into(), spec });
    let plan = plan_source(&snapshot(), &settings(), &links, &BTreeMap::new());
    assert!(
        !plan.actions.iter().any(|a| matches!(a, SourceAction::ApplyLink { .. } | SourceAction::DeleteLink { .. }))
    );
    assert_eq!(plan.conflicts.len(), 1);
}

#[test]
fn a_much_smaller_answer_is_not_trusted() {
    assert_eq!(shrink_guard(None, (0, 0), 0.5), None);
    assert_eq!(shrink_guard(Some((10, 100)), (9, 90), 0.5), None);
    let why = shrink_guard(Some((10, 100)), (2, 100), 0.5).expect("blocked");
    assert!(why.contains("2 spaces, down from 10"), "{why}");
    assert!(shrink_guard(Some((10, 100)), (10, 0), 0.5).is_some());
}

#[test]
fn a_hand_written_matrix_user_is_left_alone_and_reported() {
    let mut users = BTreeMap::new();
    let spec: MatrixUserSpec = serde_json::from_value(serde_json::json!({"username": "ann"})).expect("spec");
    users.insert("ann-by-hand".to_owned(), Existing { owned: false, labelled: false, key: "ann".into(), spec });
    let plan = plan_source(&snapshot(), &settings(), &BTreeMap::new(), &users);
    assert!(!plan.actions.iter().any(|a| matches!(a, SourceAction::ApplyUser { spec, .. } if spec.username == "ann")));
    assert!(plan.conflicts.iter().any(|c| c.contains("user ann")), "{:?}", plan.conflicts);
}

#[test]
fn an_owned_link_without_the_source_label_is_written_again() {
    let (mut links, mut users) = (BTreeMap::new(), BTreeMap::new());
    apply(&plan_source(&snapshot(), &settings(), &links, &users), &mut links, &mut users);
    links.get_mut("exo-space-12").expect("link").labelled = false;
    let plan = plan_source(&snapshot(), &settings(), &links, &users);
    assert!(
        matches!(plan.actions.as_slice(), [SourceAction::ApplyLink { name, spec }] if name == "exo-space-12" && *spec == links["exo-space-12"].spec),
        "{:?}",
        plan.actions
    );
}
