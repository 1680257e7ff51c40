//! Properties of `plan_room` over arbitrary rooms and links: it converges, it
//! never touches people the operator does not manage, and the guard holds.

use proptest::prelude::*;

use super::*;

const OP: &str = "@op:exo.test";
/// A small universe, so that members, managers, managed and present people overlap often.
const PEOPLE: usize = 10;

fn person(i: usize) -> OwnedUserId {
    ids::user_id(&format!("@p{i}:exo.test")).expect("a user id")
}

fn op() -> OwnedUserId {
    ids::user_id(OP).expect("a user id")
}

fn membership() -> impl Strategy<Value = Option<Membership>> {
    prop_oneof![
        3 => Just(None),
        3 => Just(Some(Membership::Join)),
        1 => Just(Some(Membership::Invite)),
        1 => Just(Some(Membership::Leave)),
        1 => Just(Some(Membership::Ban)),
        1 => Just(Some(Membership::Knock)),
    ]
}

fn text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-zA-Z <>&;/b]{0,12}")
}

prop_compose! {
    fn desired()(
        members in proptest::collection::btree_set(0..PEOPLE, 0..PEOPLE),
        managers in proptest::collection::btree_set(0..PEOPLE, 0..4),
        extra_managed in proptest::collection::btree_set(0..PEOPLE, 0..PEOPLE),
        manager_level in 1i64..100,
        invite in any::<bool>(),
        name in text(),
        description in text(),
        avatar in prop_oneof![Just(AvatarWish::Leave), Just(AvatarWish::Clear), Just(AvatarWish::Set("mxc://x/a".into()))],
    ) -> DesiredRoom {
        // Managers are members; members and managers are managed accounts.
        let managers: BTreeSet<OwnedUserId> = managers.iter().filter(|m| members.contains(m)).map(|i| person(*i)).collect();
        let members: BTreeSet<OwnedUserId> = members.iter().map(|i| person(*i)).collect();
        let managed = members.iter().cloned().chain(extra_managed.iter().map(|i| person(*i))).collect();
        DesiredRoom {
            space_group_id: "s".into(),
            name,
            description,
            avatar,
            members,
            managers,
            manager_level,
            mode: if invite { MembershipMode::Invite } else { MembershipMode::Enforce },
            managed,
            operator: op(),
            kick_reason: "gone".into(),
        }
    }
}

prop_compose! {
    fn observed()(
        v12 in any::<bool>(),
        present in proptest::collection::vec(membership(), PEOPLE),
        levels in proptest::collection::vec(proptest::option::of(-10i64..150), PEOPLE),
        creator in proptest::option::of(0..PEOPLE),
        name in text(),
        avatar in proptest::option::of(Just("mxc://x/old".to_owned())),
    ) -> ObservedRoom {
        let mut membership: BTreeMap<OwnedUserId, Membership> =
            present.into_iter().enumerate().filter_map(|(i, m)| Some((person(i), m?))).collect();
        membership.insert(op(), Membership::Join);
        let mut creators = BTreeSet::new();
        if v12 {
            creators.insert(op());
            creators.extend(creator.map(person));
        }
        // As Synapse keeps them: a creator is never listed in `users`.
        let users: serde_json::Map<String, Value> = levels
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !creators.contains(&person(*i)))
            .filter_map(|(i, l)| Some((person(i).to_string(), json!(l?))))
            .collect();
        ObservedRoom {
            version: if v12 { "12".into() } else { "10".into() },
            creators,
            name,
            topic: None,
            avatar_url: avatar,
            power_levels: PowerLevels::parse(&json!({"users": users, "users_default": 0})).expect("power levels"),
            membership,
            marker: None,
            ..ObservedRoom::default()
        }
    }
}

fn kicked(actions: &[RoomAction]) -> Vec<&OwnedUserId> {
    actions
        .iter()
        .filter_map(|a| match a {
            RoomAction::KickUser { user_id, .. } => Some(user_id),
            _ => None,
        })
        .collect()
}

proptest! {
    #[test]
    fn only_the_managed_people_the_room_or_the_list_names_matter(d in desired(), o in observed()) {
        // The controller asks the MatrixUser index only about these (at 10,000 accounts, copying all per pass
        // was the cost of a link pass).
        let named: BTreeSet<&OwnedUserId> = o.named().chain(&d.members).chain(&d.managers).collect();
        let narrowed = DesiredRoom { managed: d.managed.iter().filter(|u| named.contains(u)).cloned().collect(), ..d.clone() };
        prop_assert_eq!(plan_room(&narrowed, &o), plan_room(&d, &o));
    }

    #[test]
    fn applying_the_plan_then_planning_again_does_nothing(d in desired(), o in observed()) {
        let actions = plan_room(&d, &o);
        let after = apply(&o, &actions);
        prop_assert_eq!(plan_room(&d, &after), vec![]);
    }

    #[test]
    fn only_managed_non_members_are_ever_kicked(d in desired(), o in observed()) {
        for user in kicked(&plan_room(&d, &o)) {
            prop_assert!(d.managed.contains(user), "kicked {} whom the operator does not manage", user);
            prop_assert!(!d.members.contains(user), "kicked {}, a member", user);
            prop_assert!(*user != op() && !o.creators.contains(user), "kicked the operator or a creator");
        }
    }

    #[test]
    fn power_of_unmanaged_people_is_never_changed(d in desired(), o in observed()) {
        let pl = desired_power_levels(&d, &o.power_levels, &o.creators);
        for i in 0..PEOPLE {
            let who = person(i);
            if !d.managed.contains(&who) {
                prop_assert_eq!(pl.listed(&who), o.power_levels.listed(&who), "{}", who);
            }
        }
    }

    #[test]
    fn a_plan_the_guard_lets_through_stays_within_the_blast_radius(
        d in desired(), o in observed(), min_kicks in 0usize..6, share in 0.0f64..1.0,
    ) {
        let limits = BlastRadius { min_kicks, max_share: share };
        let actions = plan_room(&d, &o);
        if guard(&d, &o, &actions, limits).is_none() {
            let kicks = kicked(&actions).len();
            let present = o.membership.iter().filter(|(u, m)| {
                matches!(m, Membership::Join | Membership::Invite) && d.managed.contains(*u) && **u != op()
            }).count();
            prop_assert!(kicks <= min_kicks || kicks as f64 <= share * present as f64, "{} kicks of {}", kicks, present);
            let had_managers = o.power_levels.levels.users.iter().any(|(id, l)| {
                d.managed.contains(id) && *id != op() && i64::from(*l) > 0 && i64::from(*l) < SPACE_OWNED_LEVEL
            });
            prop_assert!(!had_managers || !d.managers.is_empty(), "all managers demoted");
        }
    }
}
