//! Properties of `plan_user` over arbitrary accounts and specs.

use proptest::prelude::*;

use super::*;

fn avatar() -> impl Strategy<Value = AvatarWish> {
    prop_oneof![Just(AvatarWish::Leave), Just(AvatarWish::Clear), "mxc://x/[a-c]".prop_map(AvatarWish::Set)]
}

fn creation() -> impl Strategy<Value = CreationPusher> {
    prop_oneof![Just(CreationPusher::Made), Just(CreationPusher::NotMade), Just(CreationPusher::Unknown)]
}

prop_compose! {
    fn desired()(
        displayname in proptest::option::of("[A-Za-z ]{0,8}"),
        email in proptest::option::of("[a-c]@example\\.org"),
        avatar in avatar(),
        admin in any::<bool>(),
        enabled in any::<bool>(),
        password in proptest::option::of(Just(SecretString::new("pw"))),
    ) -> DesiredUser {
        DesiredUser { user_id: crate::ids::user_id("@u:exo.test").unwrap(), displayname, email, avatar, admin, enabled, password }
    }
}

prop_compose! {
    fn observed()(
        exists in any::<bool>(),
        deactivated in any::<bool>(),
        admin in any::<bool>(),
        displayname in proptest::option::of("[A-Za-z ]{0,8}"),
        avatar_url in proptest::option::of("mxc://x/[a-c]"),
        emails in proptest::collection::vec("[a-c]@example\\.org", 0..3),
        phone in any::<bool>(),
        pushers in proptest::collection::btree_set("[a-c]@example\\.org", 0..3),
    ) -> ObservedUser {
        let mut threepids: Vec<Threepid> = emails.iter().map(|e| Threepid::email(e)).collect();
        if phone {
            threepids.push(Threepid { medium: "msisdn".into(), address: "33600000000".into() });
        }
        let account = exists.then(|| AdminUser {
            name: "@u:exo.test".into(), admin, deactivated, displayname, avatar_url, threepids,
        });
        ObservedUser { account, email_pushers: pushers }
    }
}

proptest! {
    #[test]
    fn applying_the_plan_then_planning_again_does_nothing(d in desired(), o in observed(), c in creation()) {
        // What Synapse really does: `Unknown` is the operator's view, Synapse does one or the other.
        for synapse in [CreationPusher::Made, CreationPusher::NotMade] {
            if c != CreationPusher::Unknown && c != synapse {
                continue;
            }
            let actions = plan_user(&d, &o, c);
            let after = apply(&o, &actions, synapse);
            prop_assert_eq!(plan_user(&d, &after, c), vec![]);
        }
    }

    #[test]
    fn an_enabled_account_with_an_email_ends_with_its_pusher(d in desired(), o in observed(), c in creation()) {
        for synapse in [CreationPusher::Made, CreationPusher::NotMade] {
            if c != CreationPusher::Unknown && c != synapse {
                continue;
            }
            let after = apply(&o, &plan_user(&d, &o, c), synapse);
            if let (true, Some(email)) = (d.enabled, &d.email) {
                prop_assert!(after.email_pushers.contains(email));
            }
        }
    }

    #[test]
    fn an_enabled_spec_never_deactivates_and_a_disabled_one_never_creates(d in desired(), o in observed(), c in creation()) {
        for action in plan_user(&d, &o, c) {
            match action {
                UserAction::DeactivateUser { .. } => prop_assert!(!d.enabled),
                UserAction::CreateUser { .. } | UserAction::ReactivateUser { .. } | UserAction::UpdateUser { .. }
                | UserAction::CreateEmailPusher { .. } | UserAction::ConfirmEmailPusher { .. } => prop_assert!(d.enabled),
            }
        }
    }

    #[test]
    fn a_password_is_only_sent_to_make_or_reactivate_an_account(d in desired(), o in observed(), c in creation()) {
        for action in plan_user(&d, &o, c) {
            if let UserAction::UpdateUser { update, .. } = action {
                prop_assert!(update.password.is_none(), "an update would reset the password");
            }
        }
    }

    #[test]
    fn other_kinds_of_threepid_are_kept(d in desired(), o in observed(), c in creation()) {
        let after = apply(&o, &plan_user(&d, &o, c), CreationPusher::NotMade);
        let phones = |u: &ObservedUser| u.account.as_ref().map_or(0, |a| a.threepids.iter().filter(|t| t.medium != "email").count());
        if d.enabled && o.account.as_ref().is_some_and(|a| !a.deactivated) {
            prop_assert_eq!(phones(&after), phones(&o));
        }
    }
}
