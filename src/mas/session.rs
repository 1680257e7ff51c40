//! The operator's own account and session when Synapse delegates to MAS: the
//! account exists in MAS and is an admin, and a personal session acting as it
//! (client API + Synapse admin scopes) is kept in the token Secret, regenerated
//! before it expires and whenever Synapse refuses it; every other session the
//! operator made for itself is revoked. MAS's client credentials make a new one
//! whatever happened to the stored token, so the operator is never locked out.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams};

use super::{ADMIN_SESSION_SCOPE, Error, Mas, NewUser, PersonalSession};
use crate::secret::SecretString;
use crate::synapse::{self, Synapse};

/// `human_name` of the operator's own sessions: the sweep revokes only these.
pub const SESSION_NAME: &str = "exo-matrix-operator";
/// Lifetime asked for each token; it is renewed once less than a third remains.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);

const TOKEN_KEY: &str = "accessToken";
const USER_KEY: &str = "userId";
const SESSION_KEY: &str = "personalSessionId";
const EXPIRES_KEY: &str = "expiresAt";

#[derive(Debug, thiserror::Error)]
pub enum MasSessionError {
    #[error("MAS call failed")]
    Mas(#[from] Error),
    #[error("Synapse refused the operator's new personal session")]
    Synapse(#[source] synapse::Error),
    #[error(
        "Synapse does not treat the operator's personal session as an admin (is `urn:synapse:admin:*` allowed for the MAS client?)"
    )]
    NotAdmin(#[source] synapse::Error),
    #[error("cannot read or write Secret {0}")]
    Kube(String, #[source] kube::Error),
}

/// The operator's working session in MAS mode.
pub struct OwnSession {
    pub admin: Synapse,
    pub user_id: crate::ids::OwnedUserId,
    /// The MAS id (ULID) of the operator's account.
    pub mas_user_id: String,
    /// When to renew the token, if it expires.
    pub renew_at: Option<jiff::Timestamp>,
}

/// What the token Secret holds in MAS mode.
#[derive(Debug, Default, Clone)]
struct Stored {
    token: Option<SecretString>,
    session_id: Option<String>,
    expires_at: Option<jiff::Timestamp>,
}

fn renew_at(expires_at: Option<jiff::Timestamp>) -> Option<jiff::Timestamp> {
    let lifetime = jiff::SignedDuration::try_from(SESSION_LIFETIME).ok()?;
    expires_at.map(|t| t - lifetime / 3)
}

/// True when a token expiring at `expires_at` should be renewed now.
pub fn due(expires_at: Option<jiff::Timestamp>, now: jiff::Timestamp) -> bool {
    renew_at(expires_at).is_some_and(|r| r <= now)
}

/// Makes sure the operator's MAS account exists and is an active admin, then
/// returns a session Synapse accepts, stored in `secrets/name`.
pub async fn establish(
    mas: &Mas,
    synapse: &Synapse,
    secrets: &Api<Secret>,
    name: &str,
    localpart: &str,
) -> Result<OwnSession, MasSessionError> {
    let account = own_account(mas, localpart).await?;
    let stored = read(secrets, name).await?;
    let now = jiff::Timestamp::now();

    if let (Some(token), false) = (&stored.token, due(stored.expires_at, now)) {
        let admin = synapse.with_token(token.clone());
        match check(&admin).await {
            Ok(user_id) => {
                return Ok(OwnSession {
                    admin,
                    user_id,
                    mas_user_id: account.id,
                    renew_at: renew_at(stored.expires_at),
                });
            }
            Err(MasSessionError::Synapse(e)) if e.status() == Some(401) => {
                tracing::info!("Synapse refuses the stored personal session; making a new token")
            }
            Err(e) => return Err(e),
        }
    }
    let expires_in = u32::try_from(SESSION_LIFETIME.as_secs()).ok();
    let regenerated = match &stored.session_id {
        Some(id) => match mas.regenerate_personal_session(id, expires_in).await {
            Ok(s) if s.access_token.is_some() => Some(s),
            Ok(_) => None,
            // Revoked or gone: a new session replaces it.
            Err(e) if matches!(e.status(), Some(400 | 404 | 409 | 422)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let session = match regenerated {
        Some(s) => s,
        None => mas.create_personal_session(&account.id, SESSION_NAME, ADMIN_SESSION_SCOPE, expires_in).await?,
    };
    let Some(token) = session.access_token.clone() else {
        return Err(Error::Api {
            method: "POST",
            path: "/personal-sessions".into(),
            status: 200,
            title: "MAS returned no access token".into(),
        }
        .into());
    };
    // Stored before anything else, so a crash leaves no session the next start cannot find.
    write(secrets, name, &token, &session, None).await?;
    let admin = synapse.with_token(token.clone());
    let user_id = check_new(&admin).await?;
    write(secrets, name, &token, &session, Some(user_id.as_str())).await?;
    revoke_others(mas, &account.id, &session.id).await;
    tracing::info!(%user_id, "made a new MAS personal session for the operator");
    Ok(OwnSession { admin, user_id, mas_user_id: account.id, renew_at: renew_at(session.expires_at) })
}

/// The operator's account in MAS: created when missing, made admin, reactivated and unlocked.
async fn own_account(mas: &Mas, localpart: &str) -> Result<super::User, MasSessionError> {
    let mut account = match mas.user_by_username(localpart).await? {
        Some(a) => a,
        None => {
            let mut new = NewUser {
                username: localpart.to_owned(),
                skip_homeserver_check: false,
                displayname: Some("eXo Matrix operator".into()),
                avatar_url: None,
            };
            match mas.create_user(&new).await {
                Ok(a) => a,
                // Synapse already has the account (made in classic mode, before MAS): the same
                // account must keep its rooms and its creator power, so MAS adopts it.
                Err(e) if e.status() == Some(409) && mas.user_by_username(localpart).await?.is_none() => {
                    tracing::warn!(localpart, "the operator's account exists in Synapse only; adding it to MAS");
                    new.skip_homeserver_check = true;
                    mas.create_user(&new).await?
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    if account.deactivated {
        account = mas.reactivate(&account.id).await?;
    }
    if account.locked {
        account = mas.unlock(&account.id).await?;
    }
    if !account.admin {
        account = mas.set_admin(&account.id, true).await?;
    }
    Ok(account)
}

/// whoami, then an admin-only call (which also exempts the operator from rate limits).
async fn check(admin: &Synapse) -> Result<crate::ids::OwnedUserId, MasSessionError> {
    let me = admin.whoami().await.map_err(MasSessionError::Synapse)?;
    match admin.exempt_from_rate_limits(&me.user_id).await {
        Ok(()) => Ok(me.user_id),
        Err(e) if e.status() == Some(403) => Err(MasSessionError::NotAdmin(e)),
        Err(e) => Err(MasSessionError::Synapse(e)),
    }
}

/// Like `check`, waiting a little for MAS to provision a just-created account in Synapse.
async fn check_new(admin: &Synapse) -> Result<crate::ids::OwnedUserId, MasSessionError> {
    let mut last = None;
    for _ in 0..20 {
        match check(admin).await {
            Ok(user_id) => return Ok(user_id),
            // Synapse answers 500 "User not found" until MAS has provisioned the account.
            Err(MasSessionError::Synapse(e)) if e.status() == Some(500) => last = Some(e),
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(MasSessionError::Synapse(last.expect("at least one attempt")))
}

/// Revokes the operator's other active sessions; a failure is only logged (the next pass retries).
async fn revoke_others(mas: &Mas, actor: &str, keep: &str) {
    let sessions = match mas.active_personal_sessions(actor).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %crate::error_chain::chain(&e), "cannot list the operator's old sessions");
            return;
        }
    };
    for old in sessions.iter().filter(|s: &&PersonalSession| s.id != keep && s.human_name == SESSION_NAME) {
        match mas.revoke_personal_session(&old.id).await {
            Ok(()) => tracing::info!(session = %old.id, "revoked an old personal session of the operator"),
            Err(e) => tracing::warn!(error = %crate::error_chain::chain(&e), "cannot revoke an old session"),
        }
    }
}

async fn read(secrets: &Api<Secret>, name: &str) -> Result<Stored, MasSessionError> {
    let secret = secrets.get_opt(name).await.map_err(|e| MasSessionError::Kube(name.to_owned(), e))?;
    let data = secret.and_then(|s| s.data).unwrap_or_default();
    let text = |k: &str| data.get(k).and_then(|b| String::from_utf8(b.0.clone()).ok());
    Ok(Stored {
        token: text(TOKEN_KEY).map(SecretString::new),
        session_id: text(SESSION_KEY),
        expires_at: text(EXPIRES_KEY).and_then(|t| t.parse().ok()),
    })
}

async fn write(
    secrets: &Api<Secret>,
    name: &str,
    token: &SecretString,
    session: &PersonalSession,
    user_id: Option<&str>,
) -> Result<(), MasSessionError> {
    let mut pairs: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut put = |k: &str, v: &str| pairs.insert(k.to_owned(), ByteString(v.as_bytes().to_vec()));
    put(TOKEN_KEY, token.expose());
    put(SESSION_KEY, &session.id);
    if let Some(t) = session.expires_at {
        put(EXPIRES_KEY, &t.to_string());
    }
    if let Some(u) = user_id {
        put(USER_KEY, u);
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([("app.kubernetes.io/managed-by".to_owned(), crate::MANAGER.to_owned())].into()),
            ..ObjectMeta::default()
        },
        data: Some(pairs),
        ..Secret::default()
    };
    secrets
        .patch(name, &PatchParams::apply(crate::MANAGER).force(), &Patch::Apply(&secret))
        .await
        .map_err(|e| MasSessionError::Kube(name.to_owned(), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_once_a_third_of_the_lifetime_remains() {
        let now: jiff::Timestamp = "2026-11-26T12:00:00Z".parse().expect("ts");
        let hours = |h: i64| now + jiff::SignedDuration::from_hours(h);
        assert!(!due(Some(hours(9)), now));
        assert!(due(Some(hours(8)), now));
        assert!(due(Some(hours(-1)), now));
        assert!(!due(None, now), "a token without expiry is renewed only when refused");
    }
}
