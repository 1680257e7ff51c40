//! The MatrixUser account backend when Synapse delegates to MAS: accounts are
//! made, switched on and off, and deleted through MAS's admin API; nothing here
//! calls an endpoint a delegating Synapse no longer serves (registration,
//! log-in-as-user, account creation through `PUT /_synapse/admin/v2/users`).

use kube::runtime::events::EventType;

use super::super::status::publish;
use super::super::{Context, Error};
use crate::crd::MatrixUser;
use crate::ids;
use crate::mas::{Mas, NewUser, USER_SESSION_SCOPE};
use crate::plan::user::DesiredUser;
use crate::plan::user::mas::{MasAction, ObservedMasUser, plan_mas_user};
use crate::session::Session;
use crate::synapse::Synapse;

/// What the reconcile reports after the account was brought in line.
pub struct Outcome {
    pub exists: bool,
    /// MAS has yet to copy something to Synapse (an email, a reactivation): look again soon.
    pub waiting_for_sync: bool,
    /// Something was changed in MAS or Synapse (the time of the last change is shown in status).
    pub changed: bool,
}

/// `human_name` of the short-lived sessions used to act as a user.
const HELPER_SESSION: &str = "exo-matrix-operator: email notifications";

pub(super) async fn sync(
    ctx: &Context,
    session: &Session,
    mas: &Mas,
    user: &MatrixUser,
    desired: &DesiredUser,
) -> Result<Outcome, Error> {
    let localpart = ids::localpart(&user.spec.username);
    let observed = observe(session, mas, &localpart, desired).await?;
    let plan = plan_mas_user(&localpart, desired, &observed);
    let mut mas_id = observed.user.as_ref().map(|u| u.id.clone());
    for action in &plan.actions {
        if let Some(id) = execute(action, session, mas, mas_id.as_deref(), desired).await? {
            mas_id = Some(id);
        }
        publish(ctx, user, EventType::Normal, action.reason(), &action.describe(desired.user_id.as_str())).await;
    }
    Ok(Outcome { exists: mas_id.is_some(), waiting_for_sync: plan.waiting_for_sync, changed: !plan.actions.is_empty() })
}

async fn observe(
    session: &Session,
    mas: &Mas,
    localpart: &str,
    desired: &DesiredUser,
) -> Result<ObservedMasUser, Error> {
    let user = mas.user_by_username(localpart).await.map_err(Error::mas("reading the account in MAS"))?;
    let mut observed = ObservedMasUser { user, ..ObservedMasUser::default() };
    let Some(u) = &observed.user else { return Ok(observed) };
    observed.emails = mas.user_emails(&u.id).await.map_err(Error::mas("listing the account's emails in MAS"))?;
    observed.synapse =
        session.admin.get_user(&desired.user_id).await.map_err(Error::synapse("reading the account in Synapse"))?;
    if observed.synapse.as_ref().is_some_and(|a| !a.deactivated) && desired.email.is_some() {
        let pushers = session.admin.pushers(&desired.user_id).await.map_err(Error::synapse("listing pushers"))?;
        observed.email_pushers = pushers.into_iter().filter(|p| p.kind == "email").map(|p| p.pushkey).collect();
    }
    Ok(observed)
}

/// Runs one action; returns the MAS id of an account it created.
async fn execute(
    action: &MasAction,
    session: &Session,
    mas: &Mas,
    mas_id: Option<&str>,
    desired: &DesiredUser,
) -> Result<Option<String>, Error> {
    if let MasAction::Create { localpart, displayname, avatar_url } = action {
        let new = NewUser {
            username: localpart.clone(),
            skip_homeserver_check: false,
            displayname: displayname.clone(),
            avatar_url: avatar_url.clone(),
        };
        let created = mas.create_user(&new).await.map_err(Error::mas("creating the account in MAS"))?;
        return Ok(Some(created.id));
    }
    let id = mas_id
        .ok_or_else(|| Error::waiting("MasAccountMissing", format!("no MAS account for {} yet", desired.user_id)))?;
    match action {
        MasAction::Create { .. } => {}
        MasAction::Reactivate { deactivated, locked } => {
            if *deactivated {
                mas.reactivate(id).await.map_err(Error::mas("reactivating the account in MAS"))?;
            }
            if *locked {
                mas.unlock(id).await.map_err(Error::mas("unlocking the account in MAS"))?;
            }
        }
        MasAction::Deactivate => {
            mas.deactivate(id, true).await.map_err(Error::mas("deactivating the account in MAS"))?;
        }
        MasAction::SetAdmin(admin) => {
            mas.set_admin(id, *admin).await.map_err(Error::mas("setting the admin flag in MAS"))?;
        }
        MasAction::SetPassword => {
            if let Some(password) = &desired.password {
                mas.set_password(id, password).await.map_err(Error::mas("setting the password in MAS"))?;
            }
        }
        MasAction::AddEmail(email) => {
            mas.add_user_email(id, email).await.map_err(Error::mas(format!("adding email {email} in MAS")))?;
        }
        MasAction::DeleteEmail { id: email_id, email } => {
            mas.delete_user_email(email_id).await.map_err(Error::mas(format!("removing email {email} in MAS")))?;
        }
        MasAction::UpdateProfile(update) => {
            session
                .admin
                .put_user(&desired.user_id, update)
                .await
                .map_err(Error::synapse(action.describe(desired.user_id.as_str())))?;
        }
        MasAction::CreateEmailPusher(email) => email_pusher(session, mas, id, email).await?,
    }
    Ok(None)
}

/// Sets the email pusher as the user, through a personal session made for it
/// and revoked right after, whatever happened: no token is left behind.
async fn email_pusher(session: &Session, mas: &Mas, mas_id: &str, email: &str) -> Result<(), Error> {
    let helper = mas
        .create_personal_session(mas_id, HELPER_SESSION, USER_SESSION_SCOPE, Some(300))
        .await
        .map_err(Error::mas("making a session acting as the user"))?;
    let result = match &helper.access_token {
        Some(token) => {
            let as_user: Synapse = session.admin.with_token(token.clone());
            as_user.set_own_email_pusher(email).await.map_err(Error::synapse("enabling notification emails"))
        }
        None => Err(Error::waiting("MasNoToken", "MAS returned no token for the helper session")),
    };
    if let Err(e) = mas.revoke_personal_session(&helper.id).await {
        tracing::warn!(error = %crate::error_chain::chain(&e), session = %helper.id, "cannot revoke a helper session; it expires within 5 minutes");
    }
    result
}

/// Deletion of the MatrixUser: deactivate in MAS, erasing only under `Erase`.
/// Returns whether MAS was asked to do anything.
pub(super) async fn delete(mas: &Mas, localpart: &str, erase: bool) -> Result<bool, Error> {
    let Some(account) = mas.user_by_username(localpart).await.map_err(Error::mas("reading the account in MAS"))? else {
        return Ok(false);
    };
    if account.deactivated && !erase {
        return Ok(false);
    }
    // MAS erases unless told to skip it.
    mas.deactivate(&account.id, !erase).await.map_err(Error::mas("deactivating the account in MAS"))?;
    Ok(true)
}
