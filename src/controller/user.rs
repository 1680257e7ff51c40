//! The MatrixUser controller: one `MatrixUser`, one Synapse account.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use rand::distr::{Alphanumeric, SampleString};

use super::conditions::{self, Progress};
use super::directory::Listing;
use super::status::{self, publish};
use super::user_index::UserIndex;
use super::{Context, Error, UserCreation, avatar};
use crate::crd::{MatrixUser, UserDeletionPolicy};
use crate::ids::{self, UserId};
use crate::plan::user::{self as plan, CreationPusher, DesiredUser, ObservedUser, UserAction, plan_user};
use crate::secret::SecretString;
use crate::session::Session;
use crate::synapse::{Registration, UserUpdate};

mod mas;

pub const FINALIZER: &str = "exomatrix.dev/account";

pub async fn reconcile(user: Arc<MatrixUser>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (apply, cleanup): (status::Step<_>, status::Step<_>) =
        (|o, c| Box::pin(apply(o, c)), |o, c| Box::pin(cleanup(o, c)));
    status::reconcile_finalized("user", FINALIZER, user, &ctx, apply, cleanup).await
}

/// The owner of a localpart is the oldest MatrixUser claiming it; the others conflict.
pub fn localpart_owner(user: &MatrixUser, index: &UserIndex, all: &Store<MatrixUser>) -> Option<Arc<MatrixUser>> {
    // Looked up through the index: scanning every MatrixUser per reconcile made a resync O(users²).
    let (ns, name, uid) = index.owner(&ids::localpart(&user.spec.username))?;
    if user.uid().as_deref() == Some(uid.as_str()) {
        return None;
    }
    all.get(&ObjectRef::new(&name).within(&ns))
}

async fn apply(user: &MatrixUser, ctx: &Context) -> Result<Action, Error> {
    let session = ctx.session().await?;
    // Localpart collisions are judged from the cache: never from a half-filled one.
    ctx.caches_ready().await?;
    let mut status = status::begin(user);
    let generation = user.metadata.generation;

    if let Some(owner) = ctx.users.as_ref().and_then(|store| localpart_owner(user, &ctx.user_index, store)) {
        let localpart = ids::localpart(&user.spec.username);
        let message = format!(
            "Matrix localpart {localpart:?} is already claimed by MatrixUser {}/{} (username {:?}); nothing is changed for this object",
            owner.namespace().unwrap_or_default(),
            owner.name_any(),
            owner.spec.username
        );
        conditions::set(&mut status.conditions, "Conflict", true, "LocalpartTaken", &message, generation);
        status.user_id = None;
        status::show(user, ctx, &mut status, Progress::stalled("Conflict", message)).await?;
        return Ok(ctx.resync());
    }
    conditions::remove(&mut status.conditions, "Conflict");

    let user_id = ids::user_on(&ids::localpart(&user.spec.username), &session.server_name)?;
    let previous = user.status.as_ref().and_then(|s| s.avatar.clone());
    let resolved = avatar::resolve(ctx, &session, user.spec.avatar_url.as_deref(), previous).await?;
    if let Some(url) = &resolved.uploaded_from {
        // Repeats of an Event are counted in one series whose note stays the first
        // one, so the note names only what stays true: the source URL.
        publish(ctx, user, EventType::Normal, "AvatarUploaded", &format!("uploaded the avatar from {url}")).await;
    }
    let (avatar, avatar_status, avatar_problem) = (resolved.wish, resolved.status, resolved.problem);
    let desired = DesiredUser {
        user_id: user_id.clone(),
        displayname: user.spec.display_name.clone(),
        email: user.spec.email.as_ref().map(|e| e.to_lowercase()),
        avatar,
        admin: user.spec.admin,
        enabled: user.spec.enabled,
        password: password(user, ctx).await?,
    };
    // The account backend: Synapse's admin API, or MAS when Synapse delegates to it.
    let outcome = match &session.mas {
        Some(mas) => {
            let outcome = mas::sync(ctx, &session, mas, user, &desired).await?;
            if outcome.changed {
                // The time of the last change made: a quiet pass writes no status.
                status.last_sync_time = Some(conditions::now_rfc3339());
            }
            outcome
        }
        None => {
            let directory = &ctx.directory;
            let managed = || ctx.users.as_ref().map_or(0, |s| s.len());
            let listing = directory
                .listed(&session.admin, user_id.as_str(), ctx.settings.resync, managed)
                .await
                .map_err(Error::synapse("listing the accounts"))?;
            let current = settled(user, &user_id);
            let deep = !current || directory.deep_check_due(user_id.as_str(), ctx.settings.account_check).await;
            let listed = match &listing {
                Listing::Listed(l) => Some(l),
                Listing::Absent | Listing::Unknown => None,
            };
            let mut exists = listed.is_some();
            let known = listing != Listing::Unknown;
            if !(known && plan::listing_suffices(&desired, listed, !deep)) {
                // Absent from the listing: nothing to read. A password is never sent to an account that might
                // have appeared since the listing (that would reset it), so then the account is read first.
                let observed = if listing == Listing::Absent && desired.password.is_none() {
                    ObservedUser::default()
                } else {
                    observe(&session, &desired, deep).await?
                };
                // Shared-secret registration makes the account without its email: Synapse adds no pusher then.
                let creation = match ctx.settings.user_creation {
                    UserCreation::AdminApi => directory.creation_pusher().await,
                    UserCreation::SharedSecret => CreationPusher::NotMade,
                };
                let actions = plan_user(&desired, &observed, creation);
                let mut created = false;
                for action in &actions {
                    created |= execute(action, ctx, &session, user, created).await?;
                    publish(ctx, user, EventType::Normal, action.reason(), &action.describe()).await;
                }
                let after = plan::apply(&observed, &actions, creation);
                directory.record(user_id.as_str(), after.account.as_ref()).await;
                if deep {
                    directory.deep_checked(user_id.as_str(), ctx.settings.account_check).await;
                }
                exists = observed.account.is_some();
                if !actions.is_empty() {
                    // The time of the last change made in Synapse: a quiet pass writes no status.
                    status.last_sync_time = Some(conditions::now_rfc3339());
                }
            }
            mas::Outcome { exists, waiting_for_sync: false, changed: false }
        }
    };

    status.user_id = Some(user_id.to_string());
    status.avatar = avatar_status;
    match avatar_problem {
        Some(problem) => {
            conditions::set(&mut status.conditions, "AvatarSynced", false, "AvatarUnavailable", &problem, generation)
        }
        None => conditions::remove(&mut status.conditions, "AvatarSynced"),
    }
    let backend = if session.mas.is_some() { " (accounts in MAS: Synapse delegates to it)" } else { "" };
    let (reason, message) = if user.spec.enabled && outcome.waiting_for_sync {
        ("Synced", format!("account {user_id} matches the spec{backend}; waiting for MAS to copy it to Synapse"))
    } else if user.spec.enabled {
        ("Synced", format!("account {user_id} matches the spec{backend}"))
    } else if outcome.exists {
        ("Disabled", format!("account {user_id} is deactivated"))
    } else {
        ("Disabled", format!("disabled; no account is created for {user_id}"))
    };
    status::show(user, ctx, &mut status, Progress::ready(reason, message)).await?;
    if outcome.waiting_for_sync {
        return Ok(Action::requeue(std::time::Duration::from_secs(2)));
    }
    Ok(ctx.resync())
}

/// The last pass succeeded for this generation and account: only a listed difference needs a read.
fn settled(user: &MatrixUser, user_id: &UserId) -> bool {
    user.status.as_ref().is_some_and(|s| {
        s.observed_generation == user.metadata.generation
            && s.user_id.as_deref() == Some(user_id.as_str())
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// The account, and its email pushers when `pushers` (else they are taken to be as wanted: they are read on
/// the `--account-check` cadence).
async fn observe(session: &Session, desired: &DesiredUser, pushers: bool) -> Result<ObservedUser, Error> {
    let account = session.admin.get_user(&desired.user_id).await.map_err(Error::synapse("reading the account"))?;
    let mut email_pushers = std::collections::BTreeSet::new();
    let active = account.as_ref().is_some_and(|a| !a.deactivated);
    if active && !pushers {
        email_pushers.extend(desired.email.clone());
    } else if active && desired.email.is_some() {
        let pushers = session.admin.pushers(&desired.user_id).await.map_err(Error::synapse("listing pushers"))?;
        email_pushers = pushers.into_iter().filter(|p| p.kind == "email").map(|p| p.pushkey).collect();
    }
    Ok(ObservedUser { account, email_pushers })
}

/// Runs one action; returns whether it created the account. `created`: an earlier action of this pass did.
async fn execute(
    action: &UserAction,
    ctx: &Context,
    session: &Session,
    user: &MatrixUser,
    created: bool,
) -> Result<bool, Error> {
    let admin = &session.admin;
    match action {
        UserAction::CreateUser { user_id, update } if ctx.settings.user_creation == UserCreation::SharedSecret => {
            let secret = session.shared_secret.as_ref().ok_or_else(|| {
                Error::needs_person(
                    "CredentialsUnavailable",
                    "--user-creation shared-secret needs `sharedSecret` in the credentials Secret",
                )
            })?;
            // Registration requires a password; SSO users get a random one nobody knows.
            let password = update
                .password
                .clone()
                .unwrap_or_else(|| SecretString::new(Alphanumeric.sample_string(&mut rand::rng(), 32)));
            let reg = Registration {
                username: ids::localpart(&user.spec.username),
                password,
                admin: update.admin.unwrap_or(false),
                displayname: update.displayname.clone(),
            };
            match admin.register_with_shared_secret(secret, &reg).await {
                Ok(_) => {}
                // Registered by an earlier, interrupted reconcile: finish it below.
                Err(e) if e.errcode() == Some("M_USER_IN_USE") => {}
                Err(e) => return Err(Error::synapse("registering the account")(e)),
            }
            let profile = UserUpdate { password: None, ..update.clone() };
            admin.put_user(user_id, &profile).await.map_err(Error::synapse("setting the profile"))?;
        }
        UserAction::CreateUser { user_id, update } => {
            // The answer says whether this PUT made the account: only then does it show what a creation does.
            return admin.put_user_created(user_id, update).await.map_err(Error::synapse(action.describe()));
        }
        UserAction::UpdateUser { user_id, update } | UserAction::ReactivateUser { user_id, update } => {
            let mut update = update.clone();
            if update.password.is_some() {
                update.logout_devices = Some(false);
            }
            admin.put_user(user_id, &update).await.map_err(Error::synapse(action.describe()))?;
        }
        UserAction::DeactivateUser { user_id } => {
            admin.deactivate_user(user_id, false).await.map_err(Error::synapse("deactivating the account"))?;
        }
        UserAction::CreateEmailPusher { user_id, email } => {
            admin.add_email_pusher(user_id, email).await.map_err(Error::synapse("enabling notification emails"))?;
        }
        UserAction::ConfirmEmailPusher { user_id, email } => {
            let pushers = admin.pushers(user_id).await.map_err(Error::synapse("listing pushers"))?;
            let made = pushers.iter().any(|p| p.kind == "email" && &p.pushkey == email);
            if created {
                ctx.directory.learned_creation_pusher(made).await;
            }
            if !made {
                admin.add_email_pusher(user_id, email).await.map_err(Error::synapse("enabling notification emails"))?;
            }
        }
    }
    Ok(false)
}

async fn password(user: &MatrixUser, ctx: &Context) -> Result<Option<SecretString>, Error> {
    let Some(r) = &user.spec.password_secret_ref else {
        return Ok(None);
    };
    let ns = user.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.kube.clone(), &ns);
    let secret = secrets
        .get_opt(&r.name)
        .await
        .map_err(|e| Error::Kube(format!("reading password Secret {ns}/{}", r.name), e))?
        // GitOps may create the Secret after the MatrixUser: wait for it.
        .ok_or_else(|| Error::waiting("SecretNotFound", format!("password Secret {ns}/{} not found", r.name)))?;
    let value = secret.data.and_then(|d| d.get(&r.key).cloned()).ok_or_else(|| {
        Error::needs_person("SecretInvalid", format!("password Secret {ns}/{} has no key {:?}", r.name, r.key))
    })?;
    let text = String::from_utf8(value.0)
        .map_err(|_| Error::needs_person("SecretInvalid", format!("key {:?} of {ns}/{} is not text", r.key, r.name)))?;
    Ok(Some(SecretString::new(text.trim_end_matches('\n'))))
}

async fn cleanup(user: &MatrixUser, ctx: &Context) -> Result<Action, Error> {
    // An object that never owned an account (conflict, never reconciled) touches nothing.
    let Some(user_id) = user.status.as_ref().and_then(|s| s.user_id.as_deref()) else {
        return Ok(Action::await_change());
    };
    let user_id = &ids::user_id(user_id)?;
    let erase = match user.spec.deletion_policy {
        UserDeletionPolicy::Retain => None,
        UserDeletionPolicy::Deactivate => Some(false),
        UserDeletionPolicy::Erase => Some(true),
    };
    // Deleted along with its ExoSource (garbage collection), not by a decision about this person.
    if let Some(why) = super::cascade::retained_by_source(user, ctx).await? {
        publish(ctx, user, EventType::Normal, "AccountRetained", &format!("kept {user_id}: {why}")).await;
        return Ok(Action::await_change());
    }
    let session = ctx.session().await?;
    // Deleting a MatrixUser takes the person out of its links' rooms whatever happens to the account: once
    // the object is gone the account is no longer managed, and a link pass could come too late.
    super::link::leave::leave_rooms(ctx, &session, user, user_id).await?;
    let Some(erase) = erase else { return Ok(Action::await_change()) };
    if let Some(m) = &session.mas {
        if mas::delete(m, &ids::localpart(&user.spec.username), erase).await? {
            let what = if erase { "erased" } else { "deactivated" };
            let note = format!("{what} {user_id} in MAS: the MatrixUser was deleted");
            publish(ctx, user, EventType::Normal, "AccountDeactivated", &note).await;
        }
        return Ok(Action::await_change());
    }
    let account = session.admin.get_user(user_id).await.map_err(Error::synapse("reading the account"))?;
    if account.is_some_and(|a| !a.deactivated || erase) {
        session.admin.deactivate_user(user_id, erase).await.map_err(Error::synapse("deactivating the account"))?;
        let what = if erase { "erased" } else { "deactivated" };
        publish(
            ctx,
            user,
            EventType::Normal,
            "AccountDeactivated",
            &format!("{what} {user_id}: the MatrixUser was deleted"),
        )
        .await;
    }
    Ok(Action::await_change())
}
