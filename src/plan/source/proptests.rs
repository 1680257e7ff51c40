//! Properties of `plan_source` over arbitrary eXo answers and namespaces: it
//! converges, never writes over an object it does not own, and the shrink guard holds.

use proptest::prelude::*;

use super::*;
use crate::exo::User;

const USERS: [&str; 6] = ["ann", "Bob", "cat", "dan", "eve", "fay"];

prop_compose! {
    fn snapshot()(
        spaces in proptest::collection::btree_map(1u32..8, ("[a-z_]{1,6}", proptest::option::of("[a-z]{0,5}")), 0..6),
        rosters in proptest::collection::vec((proptest::collection::btree_set(0..USERS.len(), 0..5), proptest::collection::btree_set(0..USERS.len(), 0..3)), 8),
        users in proptest::collection::btree_map(0..USERS.len(), (any::<bool>(), any::<bool>()), 0..USERS.len()),
    ) -> Snapshot {
        let mut snap = Snapshot::default();
        for (id, (pretty, description)) in spaces {
            let id = id.to_string();
            let (members, managers) = &rosters[id.parse::<usize>().unwrap_or(0) % rosters.len()];
            snap.members.insert(id.clone(), members.iter().map(|i| USERS[*i].to_owned()).collect());
            snap.managers.insert(id.clone(), managers.iter().map(|i| USERS[*i].to_owned()).collect());
            snap.spaces.push(Space {
                id,
                display_name: Some(pretty.clone()),
                pretty_name: Some(pretty.clone()),
                group_id: Some(format!("/spaces/{pretty}")),
                description,
                ..Space::default()
            });
        }
        for (i, (enabled, deleted)) in users {
            let username = USERS[i].to_owned();
            let user = User { username: username.clone(), enabled, deleted, ..User::default() };
            snap.users.insert(username, user);
        }
        snap
    }
}

/// Objects already in the namespace: some written by this source, some by hand (possibly with
/// a name the source would pick, possibly about a space or person eXo lists).
fn existing(snap: &Snapshot, hand: &[(bool, usize)]) -> Plans {
    let mut links = BTreeMap::new();
    let mut users = BTreeMap::new();
    for (k, (is_link, i)) in hand.iter().enumerate() {
        if *is_link {
            let Some(space) = snap.spaces.get(i % snap.spaces.len().max(1)) else { continue };
            let key = space.group_suffix().unwrap_or("x").to_owned();
            let name = if k % 2 == 0 { link_name(space) } else { format!("hand-{k}") };
            let spec: SpaceRoomLinkSpec =
                serde_json::from_value(serde_json::json!({"spaceGroupId": key})).expect("link spec");
            links.insert(name, Existing { owned: false, labelled: false, key, spec });
        } else {
            let username = USERS[i % USERS.len()].to_owned();
            let name = if k % 2 == 0 { user_name(&username) } else { format!("hand-{k}") };
            let spec: MatrixUserSpec =
                serde_json::from_value(serde_json::json!({"username": username})).expect("user spec");
            users.insert(name, Existing { owned: false, labelled: false, key: username, spec });
        }
    }
    Plans { links, users }
}

#[derive(Debug, Clone)]
struct Plans {
    links: BTreeMap<String, Existing<SpaceRoomLinkSpec>>,
    users: BTreeMap<String, Existing<MatrixUserSpec>>,
}

/// What the namespace holds after the source wrote `actions`.
fn apply(mut p: Plans, actions: &[SourceAction]) -> Plans {
    for a in actions {
        match a {
            SourceAction::ApplyLink { name, spec } => {
                let key = spec.space_group_id.clone();
                p.links.insert(name.clone(), Existing { owned: true, labelled: true, key, spec: spec.clone() });
            }
            SourceAction::DeleteLink { name } => {
                p.links.remove(name);
            }
            SourceAction::ApplyUser { name, spec } => {
                let key = spec.username.clone();
                p.users.insert(name.clone(), Existing { owned: true, labelled: true, key, spec: spec.clone() });
            }
            SourceAction::DisableUser { name } => {
                if let Some(u) = p.users.get_mut(name) {
                    u.spec.enabled = false;
                }
            }
        }
    }
    p
}

fn settings(create_rooms: bool) -> SourceSettings {
    SourceSettings { base_url: "https://exo.example.org".into(), create_rooms, ..SourceSettings::default() }
}

proptest! {
    #[test]
    fn applying_the_plan_then_planning_again_does_nothing(
        snap in snapshot(), hand in proptest::collection::vec((any::<bool>(), 0usize..8), 0..4), create in any::<bool>(),
    ) {
        let s = settings(create);
        let before = existing(&snap, &hand);
        let plan = plan_source(&snap, &s, &before.links, &before.users);
        let after = apply(before, &plan.actions);
        prop_assert_eq!(plan_source(&snap, &s, &after.links, &after.users).actions, vec![]);
    }

    #[test]
    fn objects_written_by_hand_are_never_touched(
        snap in snapshot(), hand in proptest::collection::vec((any::<bool>(), 0usize..8), 0..4),
    ) {
        let before = existing(&snap, &hand);
        let plan = plan_source(&snap, &settings(true), &before.links, &before.users);
        for a in &plan.actions {
            let touched = match a {
                SourceAction::ApplyLink { name, .. } | SourceAction::DeleteLink { name } => before.links.get(name).map(|e| e.owned),
                SourceAction::ApplyUser { name, .. } | SourceAction::DisableUser { name } => before.users.get(name).map(|e| e.owned),
            };
            prop_assert!(touched.is_none_or(|owned| owned), "{:?} touches a hand-written object", a);
        }
    }

    #[test]
    fn the_shrink_guard_stops_every_drop_beyond_the_limit(
        before in (0usize..500, 0usize..500), now in (0usize..500, 0usize..500), max_drop in 0.0f64..1.0,
    ) {
        let refused = shrink_guard(Some(before), now, max_drop).is_some();
        let too_small = |b: usize, n: usize| b > 0 && (n as f64) < b as f64 * (1.0 - max_drop);
        prop_assert_eq!(refused, too_small(before.0, now.0) || too_small(before.1, now.1));
        prop_assert!(shrink_guard(None, now, max_drop).is_none(), "the first sync has nothing to compare with");
    }
}
