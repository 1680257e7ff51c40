use super::*;

fn desired() -> DesiredUser {
    DesiredUser {
        user_id: crate::ids::user_id("@mary:exo.test").unwrap(),
        displayname: Some("Mary Kelly".into()),
        email: Some("mary@example.org".into()),
        avatar: AvatarWish::Leave,
        admin: false,
        enabled: true,
        password: None,
    }
}

fn account(f: impl FnOnce(&mut AdminUser)) -> ObservedUser {
    let mut a = AdminUser {
        name: "@mary:exo.test".into(),
        displayname: Some("Mary Kelly".into()),
        threepids: vec![Threepid::email("mary@example.org")],
        ..AdminUser::default()
    };
    f(&mut a);
    ObservedUser { account: Some(a), email_pushers: ["mary@example.org".to_owned()].into() }
}

use CreationPusher::{Made, NotMade, Unknown};

/// Most cases do not depend on what a creation does about the pusher.
fn plan(d: &DesiredUser, o: &ObservedUser) -> Vec<UserAction> {
    plan_user(d, o, Unknown)
}

/// Every case must converge under every Synapse setting: after applying its plan, planning again finds nothing.
fn assert_converges(d: &DesiredUser, o: &ObservedUser) -> Vec<UserAction> {
    for creation in [Made, NotMade] {
        let actions = plan_user(d, o, creation);
        let after = apply(o, &actions, creation);
        assert_eq!(plan_user(d, &after, creation), vec![], "not converged after {actions:?} ({creation:?})");
    }
    let actions = plan(d, o);
    for synapse in [Made, NotMade] {
        // Unknown: whichever Synapse does, the confirmation leaves one pusher.
        let after = apply(o, &actions, synapse);
        assert_eq!(plan_user(d, &after, synapse), vec![], "not converged after {actions:?} (Synapse: {synapse:?})");
    }
    actions
}

#[test]
fn creates_a_missing_account_with_its_profile_in_one_put() {
    let actions = assert_converges(&desired(), &ObservedUser::default());
    let UserAction::CreateUser { user_id, update } = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(user_id, "@mary:exo.test");
    assert_eq!(update.displayname.as_deref(), Some("Mary Kelly"));
    assert_eq!(update.threepids, Some(vec![Threepid::email("mary@example.org")]));
    assert_eq!(update.admin, Some(false));
    assert_eq!(update.password, None, "SSO accounts get no password");
}

#[test]
fn a_new_account_gets_its_pusher_from_synapse_when_synapse_makes_one() {
    let none = ObservedUser::default();
    // Synapse makes it (enable_notifs and notif_for_new_users): no login, no pushers/set.
    assert!(matches!(&plan_user(&desired(), &none, Made)[..], [UserAction::CreateUser { .. }]));
    // Synapse does not: the operator adds it.
    assert!(matches!(
        &plan_user(&desired(), &none, NotMade)[..],
        [UserAction::CreateUser { .. }, UserAction::CreateEmailPusher { email, .. }] if email == "mary@example.org"
    ));
    // Not known yet: the pushers are read after the creation.
    assert!(matches!(
        &plan_user(&desired(), &none, Unknown)[..],
        [UserAction::CreateUser { .. }, UserAction::ConfirmEmailPusher { email, .. }] if email == "mary@example.org"
    ));
    // Without an email there is nothing to confirm.
    let no_email = DesiredUser { email: None, ..desired() };
    assert!(matches!(&plan_user(&no_email, &none, Unknown)[..], [UserAction::CreateUser { .. }]));
}

#[test]
fn what_synapse_does_for_new_accounts_never_skips_the_pusher_elsewhere() {
    // A missing pusher on an existing account, and a reactivation (Synapse makes none there), get one anyway.
    let mut missing = account(|_| {});
    missing.email_pushers.clear();
    assert!(matches!(&plan_user(&desired(), &missing, Made)[..], [UserAction::CreateEmailPusher { .. }]));
    let mut deactivated = account(|a| a.deactivated = true);
    deactivated.email_pushers.clear();
    assert!(matches!(
        &plan_user(&desired(), &deactivated, Made)[..],
        [UserAction::ReactivateUser { .. }, UserAction::CreateEmailPusher { .. }]
    ));
}

#[test]
fn an_account_in_sync_needs_nothing() {
    assert_eq!(plan(&desired(), &account(|_| {})), vec![]);
}

#[test]
fn drifted_display_name_and_email_are_put_back_in_one_call() {
    let observed = account(|a| {
        a.displayname = Some("Someone Else".into());
        a.threepids =
            vec![Threepid::email("other@example.org"), Threepid { medium: "msisdn".into(), address: "331".into() }];
    });
    let actions = assert_converges(&desired(), &observed);
    let UserAction::UpdateUser { update, .. } = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(update.displayname.as_deref(), Some("Mary Kelly"));
    // The phone number is not ours to remove.
    assert_eq!(
        update.threepids,
        Some(vec![Threepid { medium: "msisdn".into(), address: "331".into() }, Threepid::email("mary@example.org")])
    );
    assert_eq!(update.admin, None);
    assert_eq!(actions.len(), 1);
}

#[test]
fn removing_the_email_from_the_spec_removes_it_from_the_account() {
    let mut d = desired();
    d.email = None;
    let actions = assert_converges(&d, &account(|_| {}));
    assert!(matches!(&actions[..], [UserAction::UpdateUser { update, .. }] if update.threepids == Some(vec![])));
}

#[test]
fn disabling_deactivates_once() {
    let mut d = desired();
    d.enabled = false;
    assert_eq!(assert_converges(&d, &account(|_| {})), vec![UserAction::DeactivateUser { user_id: d.user_id.clone() }]);
    assert_eq!(plan(&d, &account(|a| a.deactivated = true)), vec![]);
    // A disabled person without an account gets none.
    assert_eq!(plan(&d, &ObservedUser::default()), vec![]);
}

#[test]
fn enabling_again_reactivates_with_profile_password_and_pusher() {
    let mut d = desired();
    d.password = Some(SecretString::new("pw"));
    let mut observed = account(|a| {
        a.deactivated = true;
        a.threepids.clear();
    });
    observed.email_pushers.clear();
    let actions = assert_converges(&d, &observed);
    let UserAction::ReactivateUser { update, .. } = &actions[0] else { panic!("{actions:?}") };
    assert_eq!(update.deactivated, Some(false));
    assert_eq!(update.password, Some(SecretString::new("pw")));
    assert_eq!(update.threepids, Some(vec![Threepid::email("mary@example.org")]));
    assert!(matches!(actions[1], UserAction::CreateEmailPusher { .. }));
}

#[test]
fn avatar_is_set_replaced_and_cleared() {
    let mut d = desired();
    d.avatar = AvatarWish::Set("mxc://exo.test/new".into());
    let actions = assert_converges(&d, &account(|a| a.avatar_url = Some("mxc://exo.test/old".into())));
    assert!(
        matches!(&actions[..], [UserAction::UpdateUser { update, .. }] if update.avatar_url.as_deref() == Some("mxc://exo.test/new"))
    );
    d.avatar = AvatarWish::Clear;
    let actions = assert_converges(&d, &account(|a| a.avatar_url = Some("mxc://exo.test/old".into())));
    assert!(
        matches!(&actions[..], [UserAction::UpdateUser { update, .. }] if update.avatar_url.as_deref() == Some(""))
    );
    // An avatar we never managed is left alone.
    d.avatar = AvatarWish::Leave;
    assert_eq!(plan(&d, &account(|a| a.avatar_url = Some("mxc://exo.test/theirs".into()))), vec![]);
}

#[test]
fn admin_flag_follows_the_spec() {
    let mut d = desired();
    d.admin = true;
    let actions = assert_converges(&d, &account(|_| {}));
    assert!(matches!(&actions[..], [UserAction::UpdateUser { update, .. }] if update.admin == Some(true)));
}

#[test]
fn a_missing_pusher_is_added_without_touching_the_profile() {
    let mut observed = account(|_| {});
    observed.email_pushers.clear();
    let actions = assert_converges(&desired(), &observed);
    assert!(matches!(&actions[..], [UserAction::CreateEmailPusher { .. }]));
}

#[test]
fn descriptions_never_show_the_password() {
    let mut d = desired();
    d.password = Some(SecretString::new("hunter2"));
    for a in plan(&d, &ObservedUser::default()) {
        assert!(!a.describe().contains("hunter2"));
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}

fn listed(f: impl FnOnce(&mut ListedUser)) -> ListedUser {
    let mut l =
        ListedUser { name: "@mary:exo.test".into(), displayname: Some("Mary Kelly".into()), ..Default::default() };
    f(&mut l);
    l
}

#[test]
fn a_settled_account_shown_as_wanted_by_the_listing_needs_no_read() {
    assert!(listing_suffices(&desired(), Some(&listed(|_| {})), true));
    // Not settled (new generation, a failed pass, email check due): always read.
    assert!(!listing_suffices(&desired(), Some(&listed(|_| {})), false));
}

#[test]
fn any_listed_difference_means_a_read() {
    let d = desired();
    assert!(!listing_suffices(&d, None, true), "missing account");
    assert!(!listing_suffices(&d, Some(&listed(|l| l.displayname = Some("Other".into()))), true));
    assert!(!listing_suffices(&d, Some(&listed(|l| l.admin = true)), true));
    assert!(!listing_suffices(&d, Some(&listed(|l| l.deactivated = true)), true));
    let with_avatar = DesiredUser { avatar: AvatarWish::Set("mxc://exo.test/a".into()), ..desired() };
    assert!(!listing_suffices(&with_avatar, Some(&listed(|_| {})), true));
    assert!(listing_suffices(&with_avatar, Some(&listed(|l| l.avatar_url = Some("mxc://exo.test/a".into()))), true));
    let clear = DesiredUser { avatar: AvatarWish::Clear, ..desired() };
    assert!(!listing_suffices(&clear, Some(&listed(|l| l.avatar_url = Some("mxc://exo.test/a".into()))), true));
}

#[test]
fn a_disabled_user_is_settled_when_absent_or_deactivated() {
    let d = DesiredUser { enabled: false, ..desired() };
    assert!(listing_suffices(&d, None, true));
    assert!(listing_suffices(&d, Some(&listed(|l| l.deactivated = true)), true));
    assert!(!listing_suffices(&d, Some(&listed(|_| {})), true));
}
