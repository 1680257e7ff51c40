//! A deleted `MatrixUser` leaves the rooms of the links that list it before
//! its object goes: once the object is gone the account is no longer managed,
//! and a link pass that comes too late would leave the person in the room
//! (with `deletionPolicy: Retain` nothing else takes them out).

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::super::status::publish;
use super::super::{Context, Error};
use crate::crd::{MatrixUser, SpaceRoomLink};
use crate::ids::{self, UserId};
use crate::session::Session;

/// Rooms of the links in `user`'s namespace that list it, except suspended
/// links (they apply nothing): (link name, room id).
pub fn rooms_listing(user: &MatrixUser, links: &[Arc<SpaceRoomLink>]) -> Vec<(String, String)> {
    links
        .iter()
        .filter(|l| l.namespace() == user.namespace() && !l.spec.suspend)
        .filter(|l| l.spec.members.contains(&user.spec.username) || l.spec.managers.contains(&user.spec.username))
        .filter_map(|l| Some((l.name_any(), l.status.as_ref()?.room_id.clone()?)))
        .collect()
}

/// Removes `user_id` from every room `rooms_listing` names where it is still joined or invited.
pub async fn leave_rooms(ctx: &Context, session: &Session, user: &MatrixUser, user_id: &UserId) -> Result<(), Error> {
    let links = ctx.links.as_ref().map(|s| s.state()).unwrap_or_default();
    for (link, room) in rooms_listing(user, &links) {
        let room = ids::room_id(&room)?;
        let member = session
            .admin
            .room_state(&room, "m.room.member", user_id.as_str())
            .await
            .map_err(Error::synapse("reading a membership"))?;
        let present = member
            .as_ref()
            .and_then(|m| m.get("membership"))
            .and_then(|m| m.as_str())
            .is_some_and(|m| m == "join" || m == "invite");
        if present {
            let reason = "the MatrixUser was deleted";
            session.admin.kick(&room, user_id, reason).await.map_err(Error::synapse("removing the account"))?;
            let note = format!("removed {user_id} from room {room} of SpaceRoomLink {link}: {reason}");
            publish(ctx, user, EventType::Normal, "KickUser", &note).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, ns: &str, members: &[&str], room: Option<&str>, suspend: bool) -> Arc<SpaceRoomLink> {
        let spec = serde_json::from_value(serde_json::json!({
            "spaceGroupId": name, "members": members, "suspend": suspend,
        }))
        .expect("spec");
        let mut l = SpaceRoomLink::new(name, spec);
        l.metadata.namespace = Some(ns.into());
        l.status = room.map(|r| crate::crd::SpaceRoomLinkStatus { room_id: Some(r.into()), ..Default::default() });
        Arc::new(l)
    }

    #[test]
    fn only_rooms_of_links_in_its_namespace_that_list_it_and_act() {
        let spec = serde_json::from_value(serde_json::json!({"username": "ann"})).expect("spec");
        let mut ann = MatrixUser::new("ann", spec);
        ann.metadata.namespace = Some("a".into());
        let links = [
            link("listed", "a", &["ann"], Some("!r1"), false),
            link("elsewhere", "b", &["ann"], Some("!r2"), false),
            link("unlisted", "a", &["bob"], Some("!r3"), false),
            link("suspended", "a", &["ann"], Some("!r4"), true),
            link("no-room-yet", "a", &["ann"], None, false),
        ];
        assert_eq!(rooms_listing(&ann, &links), vec![("listed".to_owned(), "!r1".to_owned())]);
    }
}
