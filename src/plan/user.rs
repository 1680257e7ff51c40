//! What must change in Synapse so an account matches its `MatrixUser`.

use std::collections::BTreeSet;

use super::AvatarWish;
use crate::ids::OwnedUserId;
use crate::secret::SecretString;
use crate::synapse::{AdminUser, ListedUser, Threepid, UserUpdate};

pub mod mas;

#[derive(Debug, Clone)]
pub struct DesiredUser {
    pub user_id: OwnedUserId,
    pub displayname: Option<String>,
    /// Lowercased, as Synapse stores it.
    pub email: Option<String>,
    pub avatar: AvatarWish,
    pub admin: bool,
    pub enabled: bool,
    /// Sent when the account is created or reactivated, never on updates:
    /// re-sending it would be a password reset.
    pub password: Option<SecretString>,
}

/// The account as Synapse shows it, plus its email pushers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedUser {
    pub account: Option<AdminUser>,
    pub email_pushers: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserAction {
    CreateUser {
        user_id: OwnedUserId,
        update: UserUpdate,
    },
    UpdateUser {
        user_id: OwnedUserId,
        update: UserUpdate,
    },
    DeactivateUser {
        user_id: OwnedUserId,
    },
    ReactivateUser {
        user_id: OwnedUserId,
        update: UserUpdate,
    },
    /// Synapse sends notification emails through an email pusher. It makes none when an address is added to an
    /// existing account or an account is reactivated (nor, under some settings, for a new one): the operator
    /// adds it then.
    CreateEmailPusher {
        user_id: OwnedUserId,
        email: String,
    },
    /// The account was just created and it is not known yet whether this Synapse gave it its email pusher: read
    /// its pushers, add the pusher if missing, and remember the answer for later creations.
    ConfirmEmailPusher {
        user_id: OwnedUserId,
        email: String,
    },
}

/// Whether Synapse itself gives an account that `PUT /_synapse/admin/v2/users/<id>` creates with an email
/// address its email pusher: it does when `email.enable_notifs` and `email.notif_for_new_users` (the default)
/// are set. Synapse's configuration cannot be read through its API, so it is learned from the first account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationPusher {
    Made,
    NotMade,
    Unknown,
}

impl UserAction {
    /// The Event reason for this action.
    pub fn reason(&self) -> &'static str {
        match self {
            UserAction::CreateUser { .. } => "AccountCreated",
            UserAction::UpdateUser { .. } => "AccountUpdated",
            UserAction::DeactivateUser { .. } => "AccountDeactivated",
            UserAction::ReactivateUser { .. } => "AccountReactivated",
            UserAction::CreateEmailPusher { .. } | UserAction::ConfirmEmailPusher { .. } => "EmailNotificationsEnabled",
        }
    }

    /// A sentence for Events and logs; never contains a password.
    pub fn describe(&self) -> String {
        match self {
            UserAction::CreateUser { user_id, .. } => format!("created Matrix account {user_id}"),
            UserAction::UpdateUser { user_id, update } => {
                format!("set {} of {user_id}", changed_fields(update).join(", "))
            }
            UserAction::DeactivateUser { user_id } => format!("deactivated {user_id}"),
            UserAction::ReactivateUser { user_id, .. } => format!("reactivated {user_id}"),
            UserAction::CreateEmailPusher { user_id, email } | UserAction::ConfirmEmailPusher { user_id, email } => {
                format!("enabled notification emails to {email} for {user_id}")
            }
        }
    }
}

fn changed_fields(u: &UserUpdate) -> Vec<&'static str> {
    let mut f = Vec::new();
    if u.displayname.is_some() {
        f.push("display name");
    }
    if u.threepids.is_some() {
        f.push("email");
    }
    if u.avatar_url.is_some() {
        f.push("avatar");
    }
    if u.admin.is_some() {
        f.push("admin flag");
    }
    f
}

/// The calls that make Synapse match `desired`, in order; `creation`: what a creation does about the pusher.
pub fn plan_user(desired: &DesiredUser, observed: &ObservedUser, creation: CreationPusher) -> Vec<UserAction> {
    let user_id = desired.user_id.clone();
    let mut actions = Vec::new();
    match &observed.account {
        None if !desired.enabled => return actions,
        None => {
            let mut update = full_profile(desired);
            update.password = desired.password.clone();
            actions.push(UserAction::CreateUser { user_id: user_id.clone(), update });
        }
        Some(account) if !desired.enabled => {
            if !account.deactivated {
                actions.push(UserAction::DeactivateUser { user_id });
            }
            return actions;
        }
        Some(account) if account.deactivated => {
            let mut update = full_profile(desired);
            update.deactivated = Some(false);
            // Deactivation keeps the avatar: one we set earlier and the spec dropped goes now.
            if desired.avatar == AvatarWish::Clear && account.avatar_url.as_deref().is_some_and(|a| !a.is_empty()) {
                update.avatar_url = Some(String::new());
            }
            update.password = desired.password.clone();
            actions.push(UserAction::ReactivateUser { user_id: user_id.clone(), update });
        }
        Some(account) => {
            let update = profile_diff(desired, account);
            if update != UserUpdate::default() {
                actions.push(UserAction::UpdateUser { user_id: user_id.clone(), update });
            }
        }
    }
    let Some(email) = desired.email.clone() else { return actions };
    match actions.first() {
        Some(UserAction::CreateUser { .. }) => match creation {
            CreationPusher::Made => {}
            CreationPusher::NotMade => actions.push(UserAction::CreateEmailPusher { user_id, email }),
            CreationPusher::Unknown => actions.push(UserAction::ConfirmEmailPusher { user_id, email }),
        },
        // Deactivation drops pushers and reactivation makes none, so a reactivated account needs its pusher again.
        Some(UserAction::ReactivateUser { .. }) => actions.push(UserAction::CreateEmailPusher { user_id, email }),
        _ if !observed.email_pushers.contains(&email) => actions.push(UserAction::CreateEmailPusher { user_id, email }),
        _ => {}
    }
    actions
}

/// Whether the bulk listing alone shows the account as wanted, so no per-account read is needed. `settled`:
/// the object's last pass succeeded for this generation and its email addresses and pushers were read
/// recently enough (the listing does not show them).
pub fn listing_suffices(desired: &DesiredUser, listed: Option<&ListedUser>, settled: bool) -> bool {
    if !settled {
        return false;
    }
    let Some(l) = listed else { return !desired.enabled };
    if !desired.enabled {
        return l.deactivated;
    }
    let avatar_ok = match &desired.avatar {
        AvatarWish::Leave => true,
        AvatarWish::Set(mxc) => l.avatar_url.as_ref() == Some(mxc),
        AvatarWish::Clear => l.avatar_url.as_deref().is_none_or(str::is_empty),
    };
    let name_ok = desired.displayname.as_ref().is_none_or(|d| l.displayname.as_ref() == Some(d));
    !l.deactivated && l.admin == desired.admin && avatar_ok && name_ok
}

fn full_profile(desired: &DesiredUser) -> UserUpdate {
    UserUpdate {
        displayname: desired.displayname.clone(),
        threepids: Some(desired.email.iter().map(|e| Threepid::email(e)).collect()),
        avatar_url: match &desired.avatar {
            AvatarWish::Set(mxc) => Some(mxc.clone()),
            AvatarWish::Leave | AvatarWish::Clear => None,
        },
        admin: Some(desired.admin),
        ..UserUpdate::default()
    }
}

fn profile_diff(desired: &DesiredUser, account: &AdminUser) -> UserUpdate {
    let mut update = UserUpdate::default();
    if let Some(name) = &desired.displayname
        && account.displayname.as_ref() != Some(name)
    {
        update.displayname = Some(name.clone());
    }
    let emails: BTreeSet<&str> =
        account.threepids.iter().filter(|t| t.medium == "email").map(|t| t.address.as_str()).collect();
    let wanted: BTreeSet<&str> = desired.email.iter().map(String::as_str).collect();
    if emails != wanted {
        // Keep other media (phone numbers); the spec owns the email addresses.
        let mut threepids: Vec<Threepid> = account.threepids.iter().filter(|t| t.medium != "email").cloned().collect();
        threepids.extend(wanted.iter().map(|e| Threepid::email(e)));
        update.threepids = Some(threepids);
    }
    match &desired.avatar {
        AvatarWish::Set(mxc) if account.avatar_url.as_ref() != Some(mxc) => update.avatar_url = Some(mxc.clone()),
        AvatarWish::Clear if account.avatar_url.as_deref().is_some_and(|a| !a.is_empty()) => {
            update.avatar_url = Some(String::new())
        }
        _ => {}
    }
    if account.admin != desired.admin {
        update.admin = Some(desired.admin);
    }
    update
}

/// What Synapse would show after `actions`, when its creations do as `creation` says: the model the
/// convergence test uses.
pub fn apply(observed: &ObservedUser, actions: &[UserAction], creation: CreationPusher) -> ObservedUser {
    let mut next = observed.clone();
    for action in actions {
        match action {
            UserAction::CreateUser { user_id, update } => {
                let mut account = AdminUser { name: user_id.to_string(), ..AdminUser::default() };
                merge(&mut account, update);
                if creation == CreationPusher::Made {
                    let emails = account.threepids.iter().filter(|t| t.medium == "email");
                    next.email_pushers.extend(emails.map(|t| t.address.clone()));
                }
                next.account = Some(account);
            }
            UserAction::UpdateUser { update, .. } | UserAction::ReactivateUser { update, .. } => {
                if let Some(account) = next.account.as_mut() {
                    merge(account, update);
                }
            }
            UserAction::DeactivateUser { .. } => {
                if let Some(account) = next.account.as_mut() {
                    account.deactivated = true;
                    account.threepids.clear();
                }
                next.email_pushers.clear();
            }
            UserAction::CreateEmailPusher { email, .. } | UserAction::ConfirmEmailPusher { email, .. } => {
                next.email_pushers.insert(email.clone());
            }
        }
    }
    next
}

fn merge(account: &mut AdminUser, update: &UserUpdate) {
    if let Some(d) = &update.displayname {
        account.displayname = Some(d.clone());
    }
    if let Some(t) = &update.threepids {
        account.threepids = t.clone();
    }
    if let Some(a) = &update.avatar_url {
        account.avatar_url = if a.is_empty() { None } else { Some(a.clone()) };
    }
    if let Some(a) = update.admin {
        account.admin = a;
    }
    if let Some(d) = update.deactivated {
        account.deactivated = d;
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
