//! What must change when accounts live in MAS (Synapse delegates to it): MAS
//! owns existence, activity, the admin flag, passwords and emails; the display
//! name and avatar of an existing account still go through Synapse's admin API.

use std::collections::BTreeSet;

use super::{AvatarWish, DesiredUser};
use crate::mas::{User, UserEmail};
use crate::synapse::{AdminUser, UserUpdate};

/// The account as MAS and Synapse show it.
#[derive(Debug, Clone, Default)]
pub struct ObservedMasUser {
    pub user: Option<User>,
    pub emails: Vec<UserEmail>,
    /// Synapse's copy (made by MAS in the background; absent until then).
    pub synapse: Option<AdminUser>,
    pub email_pushers: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MasAction {
    Create {
        localpart: String,
        displayname: Option<String>,
        avatar_url: Option<String>,
    },
    /// Reactivate when deactivated, unlock when locked (MAS's reactivation keeps the lock).
    Reactivate {
        deactivated: bool,
        locked: bool,
    },
    /// Deactivate without erasing: a disabled account comes back as it was.
    Deactivate,
    SetAdmin(bool),
    SetPassword,
    AddEmail(String),
    DeleteEmail {
        id: String,
        email: String,
    },
    /// Display name / avatar through Synapse's admin API (allowed for existing accounts).
    UpdateProfile(UserUpdate),
    CreateEmailPusher(String),
}

impl MasAction {
    pub fn reason(&self) -> &'static str {
        match self {
            MasAction::Create { .. } => "AccountCreated",
            MasAction::Reactivate { .. } => "AccountReactivated",
            MasAction::Deactivate => "AccountDeactivated",
            MasAction::CreateEmailPusher(_) => "EmailNotificationsEnabled",
            _ => "AccountUpdated",
        }
    }

    /// A sentence for Events and logs; never holds a password.
    pub fn describe(&self, user_id: &str) -> String {
        match self {
            MasAction::Create { .. } => format!("created Matrix account {user_id} in MAS"),
            MasAction::Reactivate { .. } => format!("reactivated {user_id} in MAS"),
            MasAction::Deactivate => format!("deactivated {user_id} in MAS"),
            MasAction::SetAdmin(a) => format!("set the MAS admin flag of {user_id} to {a}"),
            MasAction::SetPassword => format!("set the password of {user_id} in MAS"),
            MasAction::AddEmail(e) => format!("added email {e} to {user_id} in MAS"),
            MasAction::DeleteEmail { email, .. } => format!("removed email {email} from {user_id} in MAS"),
            MasAction::UpdateProfile(u) => {
                let mut f = Vec::new();
                if u.displayname.is_some() {
                    f.push("display name");
                }
                if u.avatar_url.is_some() {
                    f.push("avatar");
                }
                format!("set {} of {user_id}", f.join(", "))
            }
            MasAction::CreateEmailPusher(e) => format!("enabled notification emails to {e} for {user_id}"),
        }
    }
}

/// The plan, and whether something waits on MAS copying data to Synapse (check again soon).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MasPlan {
    pub actions: Vec<MasAction>,
    pub waiting_for_sync: bool,
}

pub fn plan_mas_user(localpart: &str, desired: &DesiredUser, observed: &ObservedMasUser) -> MasPlan {
    let mut plan = MasPlan::default();
    let actions = &mut plan.actions;
    let wanted_email = desired.email.as_ref().map(|e| e.to_lowercase());
    match &observed.user {
        None if !desired.enabled => return plan,
        None => {
            let avatar_url = match &desired.avatar {
                AvatarWish::Set(mxc) => Some(mxc.clone()),
                AvatarWish::Leave | AvatarWish::Clear => None,
            };
            actions.push(MasAction::Create {
                localpart: localpart.to_owned(),
                displayname: desired.displayname.clone(),
                avatar_url,
            });
            if desired.admin {
                actions.push(MasAction::SetAdmin(true));
            }
            if desired.password.is_some() {
                actions.push(MasAction::SetPassword);
            }
            actions.extend(wanted_email.iter().cloned().map(MasAction::AddEmail));
            plan.waiting_for_sync = wanted_email.is_some();
            return plan;
        }
        Some(user) if !desired.enabled => {
            // A locked but not yet deactivated account is being deactivated (or locked by hand): leave it.
            if !user.deactivated && !user.locked {
                actions.push(MasAction::Deactivate);
            }
            return plan;
        }
        Some(user) => {
            let reviving = user.deactivated || user.locked;
            if reviving {
                actions.push(MasAction::Reactivate { deactivated: user.deactivated, locked: user.locked });
                if desired.password.is_some() {
                    actions.push(MasAction::SetPassword);
                }
            }
            if user.admin != desired.admin {
                actions.push(MasAction::SetAdmin(desired.admin));
            }
            // Synapse dropped its copy of the emails when it deactivated the account, and MAS is not
            // known to copy them again on reactivation: removing and adding them again makes it.
            let recopy = user.deactivated;
            let have: BTreeSet<String> = observed.emails.iter().map(|e| e.email.to_lowercase()).collect();
            for e in observed.emails.iter().filter(|e| recopy || Some(e.email.to_lowercase()) != wanted_email) {
                actions.push(MasAction::DeleteEmail { id: e.id.clone(), email: e.email.clone() });
            }
            if let Some(w) = &wanted_email
                && (recopy || !have.contains(w))
            {
                actions.push(MasAction::AddEmail(w.clone()));
            }
            if let Some(account) = observed.synapse.as_ref().filter(|a| !a.deactivated && !reviving) {
                let update = profile_diff(desired, account);
                if update != UserUpdate::default() {
                    actions.push(MasAction::UpdateProfile(update));
                }
            }
            if reviving {
                // The profile and pusher follow once Synapse shows the account active again.
                plan.waiting_for_sync = true;
                return plan;
            }
        }
    }
    if let Some(email) = &wanted_email
        && !observed.email_pushers.contains(email)
    {
        // Synapse refuses a pusher for an address it does not have yet.
        let synced = observed.synapse.as_ref().is_some_and(|a| {
            !a.deactivated && a.threepids.iter().any(|t| t.medium == "email" && t.address.eq_ignore_ascii_case(email))
        });
        if synced {
            actions.push(MasAction::CreateEmailPusher(email.clone()));
        } else {
            plan.waiting_for_sync = true;
        }
    }
    plan
}

fn profile_diff(desired: &DesiredUser, account: &AdminUser) -> UserUpdate {
    let mut update = UserUpdate::default();
    if let Some(name) = &desired.displayname
        && account.displayname.as_ref() != Some(name)
    {
        update.displayname = Some(name.clone());
    }
    match &desired.avatar {
        AvatarWish::Set(mxc) if account.avatar_url.as_ref() != Some(mxc) => update.avatar_url = Some(mxc.clone()),
        AvatarWish::Clear if account.avatar_url.as_deref().is_some_and(|a| !a.is_empty()) => {
            update.avatar_url = Some(String::new())
        }
        _ => {}
    }
    update
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;
    use crate::synapse::Threepid;

    fn desired() -> DesiredUser {
        DesiredUser {
            user_id: crate::ids::user_id("@nora:exo.test").unwrap(),
            displayname: Some("Nora".into()),
            email: Some("nora@example.org".into()),
            avatar: AvatarWish::Set("mxc://exo.test/a".into()),
            admin: false,
            enabled: true,
            password: None,
        }
    }

    fn mas_user(deactivated: bool, locked: bool) -> User {
        User { id: "01U".into(), username: "nora".into(), admin: false, locked, deactivated }
    }

    fn synced() -> ObservedMasUser {
        ObservedMasUser {
            user: Some(mas_user(false, false)),
            emails: vec![UserEmail { id: "01E".into(), email: "nora@example.org".into() }],
            synapse: Some(AdminUser {
                name: "@nora:exo.test".into(),
                displayname: Some("Nora".into()),
                avatar_url: Some("mxc://exo.test/a".into()),
                threepids: vec![Threepid::email("nora@example.org")],
                ..AdminUser::default()
            }),
            email_pushers: ["nora@example.org".to_owned()].into(),
        }
    }

    #[test]
    fn creates_in_mas_with_profile_admin_password_and_email() {
        let mut d = desired();
        d.admin = true;
        d.password = Some(SecretString::new("pw"));
        let plan = plan_mas_user("nora", &d, &ObservedMasUser::default());
        assert_eq!(
            plan.actions,
            vec![
                MasAction::Create {
                    localpart: "nora".into(),
                    displayname: Some("Nora".into()),
                    avatar_url: Some("mxc://exo.test/a".into())
                },
                MasAction::SetAdmin(true),
                MasAction::SetPassword,
                MasAction::AddEmail("nora@example.org".into()),
            ]
        );
        assert!(plan.waiting_for_sync, "the pusher waits for MAS to copy the address");
    }

    #[test]
    fn a_synced_account_needs_nothing() {
        assert_eq!(plan_mas_user("nora", &desired(), &synced()), MasPlan::default());
    }

    #[test]
    fn the_pusher_waits_until_synapse_has_the_address() {
        let mut o = synced();
        o.email_pushers.clear();
        o.synapse.as_mut().expect("account").threepids.clear();
        let plan = plan_mas_user("nora", &desired(), &o);
        assert!(plan.actions.is_empty() && plan.waiting_for_sync);
        let mut o = synced();
        o.email_pushers.clear();
        let plan = plan_mas_user("nora", &desired(), &o);
        assert_eq!(plan.actions, vec![MasAction::CreateEmailPusher("nora@example.org".into())]);
    }

    #[test]
    fn a_changed_email_replaces_the_old_one_in_mas() {
        let mut d = desired();
        d.email = Some("Nora@New.example".into());
        let plan = plan_mas_user("nora", &d, &synced());
        assert_eq!(
            plan.actions[..2],
            [
                MasAction::DeleteEmail { id: "01E".into(), email: "nora@example.org".into() },
                MasAction::AddEmail("nora@new.example".into())
            ]
        );
    }

    #[test]
    fn rename_goes_through_synapse_for_an_existing_account() {
        let mut d = desired();
        d.displayname = Some("Nora B.".into());
        let plan = plan_mas_user("nora", &d, &synced());
        let update = UserUpdate { displayname: Some("Nora B.".into()), ..UserUpdate::default() };
        assert_eq!(plan.actions, vec![MasAction::UpdateProfile(update)]);
    }

    #[test]
    fn disable_deactivates_once_and_enable_reactivates_and_unlocks() {
        let mut d = desired();
        d.enabled = false;
        assert_eq!(plan_mas_user("nora", &d, &synced()).actions, vec![MasAction::Deactivate]);
        let mut gone = synced();
        gone.user = Some(mas_user(true, true));
        assert!(plan_mas_user("nora", &d, &gone).actions.is_empty());
        let mut pending = synced();
        pending.user = Some(mas_user(false, true));
        assert!(plan_mas_user("nora", &d, &pending).actions.is_empty(), "deactivation under way");
        assert!(plan_mas_user("nora", &d, &ObservedMasUser::default()).actions.is_empty());

        let plan = plan_mas_user("nora", &desired(), &gone);
        assert_eq!(
            plan.actions,
            vec![
                MasAction::Reactivate { deactivated: true, locked: true },
                MasAction::DeleteEmail { id: "01E".into(), email: "nora@example.org".into() },
                MasAction::AddEmail("nora@example.org".into()),
            ],
            "the email is copied to Synapse again"
        );
        assert!(plan.waiting_for_sync);
        let plan = plan_mas_user("nora", &desired(), &pending);
        assert_eq!(plan.actions, vec![MasAction::Reactivate { deactivated: false, locked: true }]);
    }

    #[test]
    fn admin_flag_follows_the_spec_in_mas() {
        let mut d = desired();
        d.admin = true;
        assert_eq!(plan_mas_user("nora", &d, &synced()).actions, vec![MasAction::SetAdmin(true)]);
    }
}
