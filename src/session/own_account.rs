//! The operator's own account, kept working through the registration shared
//! secret whatever happened to its stored token: a lost token Secret
//! (reinstall), a second installation, a password changed by a person, a
//! revoked token. The account stays the same one — it created the operator's
//! rooms and, in room version 12, holds the creator's unlimited power there.

use rand::distr::{Alphanumeric, SampleString};

use super::SessionError;
use super::store::TokenStore;
use crate::ids;
use crate::secret::SecretString;
use crate::synapse::{Registration, Synapse, UserUpdate};

/// How a session for the own account came about, for the Event and the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The stored token still works: nothing to say.
    Reused,
    /// The account did not exist: registered through the shared secret.
    Registered,
    /// Logged in again with the stored password.
    LoggedIn { why: String },
    /// The password was reset through a short-lived helper admin, then logged in.
    Recovered { why: String },
}

/// A working token for the operator's own account, and how it was obtained.
pub async fn session(
    synapse: &Synapse,
    store: &TokenStore,
    default_localpart: &str,
    shared_secret: &SecretString,
) -> Result<(SecretString, Outcome), SessionError> {
    let stored = store.read().await?;
    // A stored id that is not one (an older fallback wrote `@localpart`) falls back to the default.
    let localpart = stored
        .user_id
        .as_deref()
        .and_then(|id| ids::user_id(id).ok())
        .map(|id| id.localpart().to_owned())
        .unwrap_or_else(|| default_localpart.to_owned());

    let mut why = "no stored token (a first start, or its Secret was deleted)".to_owned();
    if let Some(token) = &stored.token {
        match synapse.with_token(token.clone()).whoami().await {
            Ok(me) if me.user_id.localpart() == localpart => {
                return Ok((token.clone(), Outcome::Reused));
            }
            Ok(me) => why = format!("the stored token belongs to {}, not to the operator's account", me.user_id),
            Err(e) if e.status() == Some(401) => {
                why = "Synapse refused the stored token (revoked or logged out)".into()
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(password) = &stored.password {
        match synapse.login_with_password(&localpart, password).await {
            Ok(token) => {
                store.write(&token, &user_id_of(synapse, &token, &localpart).await, password).await?;
                return Ok((token, Outcome::LoggedIn { why }));
            }
            Err(e) if e.status() == Some(403) => {
                why =
                    format!("{why}; the stored password no longer works (changed by a person or another installation)")
            }
            Err(e) => return Err(e.into()),
        }
    }

    // Stored before it is used, so a crash in between is healed by the next start.
    let password = SecretString::new(Alphanumeric.sample_string(&mut rand::rng(), 40));
    store.write_password(&password, stored.token.as_ref(), stored.user_id.as_deref()).await?;
    let reg = Registration {
        username: localpart.clone(),
        password: password.clone(),
        admin: true,
        displayname: Some("eXo Matrix operator".into()),
    };
    match synapse.register_with_shared_secret(shared_secret, &reg).await {
        Ok(r) => {
            let token = match r.access_token {
                Some(t) => t,
                None => synapse.login_with_password(&localpart, &password).await?,
            };
            store.write(&token, r.user_id.as_str(), &password).await?;
            return Ok((token, Outcome::Registered));
        }
        Err(e) if e.errcode() == Some("M_USER_IN_USE") => {}
        Err(e) => return Err(e.into()),
    }

    let token = reset_through_helper(synapse, shared_secret, &localpart, &password).await?;
    store.write(&token, &user_id_of(synapse, &token, &localpart).await, &password).await?;
    Ok((token, Outcome::Recovered { why }))
}

/// The account's full id, as Synapse names it.
async fn user_id_of(synapse: &Synapse, token: &SecretString, localpart: &str) -> String {
    match synapse.with_token(token.clone()).whoami().await {
        Ok(me) => me.user_id.to_string(),
        Err(_) => format!("@{localpart}"),
    }
}

/// Registers a uniquely named helper admin through the shared secret, lets it
/// give the account `password` (other sessions of the account — another
/// installation's — stay valid), logs in normally as the account, and
/// deactivates the helper. The session never depends on the helper: a token
/// from the admin login API would be a puppet of it.
async fn reset_through_helper(
    synapse: &Synapse,
    shared_secret: &SecretString,
    localpart: &str,
    password: &SecretString,
) -> Result<SecretString, SessionError> {
    let suffix = Alphanumeric.sample_string(&mut rand::rng(), 10).to_lowercase();
    let helper = Registration {
        username: format!("{localpart}-recovery-{suffix}"),
        password: SecretString::new(Alphanumeric.sample_string(&mut rand::rng(), 40)),
        admin: true,
        displayname: Some("eXo Matrix operator (recovery helper)".into()),
    };
    let registered = synapse.register_with_shared_secret(shared_secret, &helper).await?;
    let helper_id = registered.user_id;
    let token = registered.access_token.ok_or(SessionError::Helper("Synapse gave the helper no token"))?;
    let as_helper = synapse.with_token(token);
    let result = async {
        let user_id = ids::user_on(localpart, helper_id.server_name())?;
        let account = as_helper.get_user(&user_id).await?;
        let update = UserUpdate {
            password: Some(password.clone()),
            logout_devices: Some(false),
            admin: Some(true),
            deactivated: account.is_some_and(|a| a.deactivated).then_some(false),
            ..UserUpdate::default()
        };
        as_helper.put_user(&user_id, &update).await?;
        Ok::<_, SessionError>(synapse.login_with_password(localpart, password).await?)
    }
    .await;
    // The helper goes whatever happened (retired by the account once it works, else by itself).
    let retire_by = match &result {
        Ok(token) => synapse.with_token(token.clone()),
        Err(_) => as_helper,
    };
    if let Err(e) = retire_by.deactivate_user(&helper_id, false).await {
        tracing::warn!(helper = %helper_id, error = %crate::error_chain::chain(&e), "cannot deactivate the recovery helper");
    }
    result
}
