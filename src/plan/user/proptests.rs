//! Properties of `plan_user` over arbitrary accounts and specs.

use proptest::prelude::*;

use super::*;

fn avatar() -> impl Strategy<Value = AvatarWish> {
    prop_oneof![Just(AvatarWish::Leave), Just(AvatarWish::Clear), "mxc://x/[a-c]".prop_map(AvatarWish::Set)]
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
    fn applying_the_plan_then_planning_again_does_nothing(d in desired(), o in observed()) {
        let actions = plan_user(&d, &o);
        let after = apply(&o, &actions);
        prop_assert_eq!(plan_user(&d, &after), vec![]);
    }

    #[test]
    fn an_enabled_spec_never_deactivates_and_a_disabled_one_never_creates(d in desired(), o in observed()) {
        for action in plan_user(&d, &o) {
            match action {
                UserAction::DeactivateUser { .. } => prop_assert!(!d.enabled),
                UserAction::CreateUser { .. } | UserAction::ReactivateUser { .. } | UserAction::UpdateUser { .. }
                | UserAction::CreateEmailPusher { .. } => prop_assert!(d.enabled),
            }
        }
    }

    #[test]
    fn a_password_is_only_sent_to_make_or_reactivate_an_account(d in desired(), o in observed()) {
        for action in plan_user(&d, &o) {
            if let UserAction::UpdateUser { update, .. } = action {
                prop_assert!(update.password.is_none(), "an update would reset the password");
            }
        }
    }

    #[test]
    fn other_kinds_of_threepid_are_kept(d in desired(), o in observed()) {
        let after = apply(&o, &plan_user(&d, &o));
        let phones = |u: &ObservedUser| u.account.as_ref().map_or(0, |a| a.threepids.iter().filter(|t| t.medium != "email").count());
        if d.enabled && o.account.as_ref().is_some_and(|a| !a.deactivated) {
            prop_assert_eq!(phones(&after), phones(&o));
        }
    }
}
