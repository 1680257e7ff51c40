//! Which rooms' `m.space.parent` a space pass reads. Reading it in every child room cost one Synapse call per
//! room and pass (1,000 per pass for a space of 1,000 rooms); the space room's own state, read once, says
//! almost as much.
//!
//! The plan writes a room's parent before its child (and removes the parent before the child), so a room
//! listed as a child with the wanted content had its parent written when it was added: its parent is taken
//! as written, and read only
//! - when the room is new to the space (no child yet, or a child with other content),
//! - when it leaves the space (listed as a child but no longer selected), to know whether a parent is left,
//! - and on a slow cadence (`due`), since a room's own admins (managers) could edit or remove it by hand.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{ObservedSpace, parent_content};
use crate::ids::{OwnedRoomId, RoomId, ServerName};

/// The rooms whose parent this pass reads, out of the wanted `children` and those the space lists.
pub fn parents_to_read(
    children: &BTreeSet<OwnedRoomId>,
    o: &ObservedSpace,
    child: &Value,
    mut due: impl FnMut(&RoomId) -> bool,
) -> BTreeSet<OwnedRoomId> {
    let listed = |room: &OwnedRoomId| o.children.get(room) == Some(child);
    children
        .iter()
        .chain(o.children.keys())
        .filter(|room| !children.contains(*room) || !listed(room) || due(room))
        .cloned()
        .collect()
}

/// The parents to plan with: those just `read` (a room without one is absent), and the one the operator
/// wrote in every other wanted room the space lists with the wanted child content.
pub fn observed_parents(
    children: &BTreeSet<OwnedRoomId>,
    o: &ObservedSpace,
    child: &Value,
    via: &ServerName,
    read: BTreeMap<OwnedRoomId, Option<Value>>,
) -> BTreeMap<OwnedRoomId, Value> {
    let assumed: Vec<(OwnedRoomId, Value)> = children
        .iter()
        .filter(|room| !read.contains_key(*room) && o.children.get(*room) == Some(child))
        .map(|room| (room.clone(), parent_content(via)))
        .collect();
    let read = read.into_iter().filter_map(|(room, content)| Some((room, content?)));
    assumed.into_iter().chain(read).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{SpaceAction, child_content, plan_space};
    use super::*;
    use crate::ids::{room_id, server_name};

    fn rid(id: &str) -> OwnedRoomId {
        room_id(id).expect("a room id")
    }

    fn rooms(ids: &[&str]) -> BTreeSet<OwnedRoomId> {
        ids.iter().map(|r| rid(r)).collect()
    }

    fn via() -> crate::ids::OwnedServerName {
        server_name("exo.test").expect("a server name")
    }

    /// A space listing `listed` as children with the wanted content, and `odd` with other content.
    fn space_listing(listed: &[&str], odd: &[&str]) -> ObservedSpace {
        let mut o = ObservedSpace::default();
        o.children.extend(listed.iter().map(|r| (rid(r), child_content(&via()))));
        o.children.extend(odd.iter().map(|r| (rid(r), json!({"via": ["elsewhere.test"]}))));
        o
    }

    #[test]
    fn a_quiet_pass_reads_no_parent_and_plans_nothing_for_the_rooms() {
        let children = rooms(&["!a", "!b", "!c"]);
        let o = space_listing(&["!a", "!b", "!c"], &[]);
        let child = child_content(&via());
        let read = parents_to_read(&children, &o, &child, |_| false);
        assert!(read.is_empty(), "{read:?}");
        let mut o2 = o.clone();
        o2.parents = observed_parents(&children, &o, &child, &via(), BTreeMap::new());
        let d_children = children.clone();
        let actions = plan_space_rooms(&d_children, &o2);
        assert!(actions.is_empty(), "{actions:?}");
    }

    #[test]
    fn new_leaving_oddly_listed_and_due_rooms_are_read() {
        let children = rooms(&["!kept", "!new", "!odd", "!due"]);
        let o = space_listing(&["!kept", "!gone", "!due"], &["!odd"]);
        let read = parents_to_read(&children, &o, &child_content(&via()), |r| r.as_str() == "!due");
        assert_eq!(read, rooms(&["!new", "!odd", "!due", "!gone"]));
    }

    #[test]
    fn a_parent_read_missing_is_put_back_even_where_the_child_is_listed() {
        let children = rooms(&["!a", "!b"]);
        let o = space_listing(&["!a", "!b"], &[]);
        let child = child_content(&via());
        // !b was due and its parent had been removed by hand.
        let read = [(rid("!b"), None)].into();
        let mut o2 = o.clone();
        o2.parents = observed_parents(&children, &o, &child, &via(), read);
        assert_eq!(o2.parents.keys().collect::<Vec<_>>(), vec![&rid("!a")]);
        let actions = plan_space_rooms(&children, &o2);
        assert_eq!(actions.len(), 1);
        assert!(matches!(&actions[0], SpaceAction::SetParent { room_id, .. } if room_id == &rid("!b")));
    }

    #[test]
    fn a_room_gets_its_parent_before_the_space_lists_it_and_loses_it_first() {
        let position = |actions: &[SpaceAction], kind: &str| actions.iter().position(|a| a.kind() == kind);
        let added = plan_space_rooms(&rooms(&["!a"]), &ObservedSpace::default());
        assert!(position(&added, "SetParent") < position(&added, "AddChild"), "{added:?}");
        let mut listed = space_listing(&["!a"], &[]);
        listed.parents.insert(rid("!a"), parent_content(&via()));
        let removed = plan_space_rooms(&BTreeSet::new(), &listed);
        assert!(position(&removed, "RemoveParent") < position(&removed, "RemoveChild"), "{removed:?}");
    }

    /// The room actions of a space whose own state is as wanted.
    fn plan_space_rooms(children: &BTreeSet<OwnedRoomId>, o: &ObservedSpace) -> Vec<SpaceAction> {
        let mut d = super::super::tests::desired(&[], &[], &[]);
        d.children = children.clone();
        let mut o = o.clone();
        let base = super::super::tests::converge(&d, &super::super::tests::fresh()).1;
        o.room = base.room;
        o.marker = base.marker;
        plan_space(&d, &super::super::tests::space(), &o)
            .into_iter()
            .filter(|a| matches!(a, SpaceAction::SetChild { .. } | SpaceAction::SetParent { .. }))
            .collect()
    }
}
