//! The MAS adapter against the fake MAS, with a real Synapse delegating to it.

mod support;

use std::time::Duration;

use exo_matrix_operator::mas::{ADMIN_SESSION_SCOPE, Error, Mas, NewUser, USER_SESSION_SCOPE};
use exo_matrix_operator::secret::SecretString;
use exo_matrix_operator::synapse::{AuthMode, Synapse};
use support::mas::{CLIENT_ID, MasPlatform};
use support::*;

const WAIT: Duration = Duration::from_secs(20);

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        skip_homeserver_check: false,
        displayname: Some(format!("{name} D")),
        avatar_url: None,
    }
}

#[tokio::test]
async fn tells_a_delegating_synapse_from_a_classic_one() {
    let pair = MasPlatform::start().await;
    let delegated = Synapse::new(&pair.synapse.url).expect("url");
    assert_eq!(delegated.auth_mode().await.expect("answers"), AuthMode::Delegated);
    let classic = Synapse::new(platform().synapse_url()).expect("url");
    assert_eq!(classic.auth_mode().await.expect("answers"), AuthMode::Classic);

    // As the contract observed: the delegating Synapse refuses to create accounts itself.
    let admin = pair.synapse_admin().await;
    let update = exo_matrix_operator::synapse::UserUpdate { displayname: Some("x".into()), ..Default::default() };
    let err = admin.put_user(&support::uid("@nobody-yet:exo.test"), &update).await.expect_err("refused");
    assert_eq!(err.status(), Some(403), "{err}");
}

#[tokio::test]
async fn the_admin_token_comes_from_client_credentials_and_is_renewed_before_it_expires() {
    let pair = MasPlatform::start().await;
    pair.mas.edit(|s| s.admin_token_lifetime = 3);
    let mas = pair.client();
    assert!(mas.user_by_username("nobody").await.expect("answers").is_none());
    assert!(mas.user_by_username("nobody2").await.expect("answers").is_none());
    assert_eq!(pair.mas.edit(|s| s.admin_tokens_issued), 1, "one token serves both calls");
    tokio::time::sleep(Duration::from_millis(2600)).await; // past 80% of its 3 s
    assert!(mas.user_by_username("nobody").await.expect("answers").is_none());
    assert_eq!(pair.mas.edit(|s| s.admin_tokens_issued), 2, "renewed before it expired");

    let wrong = Mas::new(&pair.mas.url, CLIENT_ID, SecretString::new("wrong")).expect("url");
    let err = wrong.user_by_username("x").await.expect_err("refused");
    assert!(matches!(err, Error::ClientRefused { status: 401, .. }), "{err:?}");
    assert!(err.to_string().contains("masClientSecret"), "{err}");

    pair.mas.set_reachable(false);
    let err = pair.client().user_by_username("x").await.expect_err("unreachable");
    assert_eq!(err.retry_kind(), exo_matrix_operator::synapse::RetryKind::Transient, "{err:?}");
}

#[tokio::test]
async fn users_and_emails_made_in_mas_reach_synapse() {
    let pair = MasPlatform::start().await;
    let admin = pair.synapse_admin().await;
    let mas = pair.client();
    let name = unique("nora");
    let user = mas.create_user(&new_user(&name)).await.expect("created");
    assert_eq!(mas.user_by_username(&name).await.expect("answers"), Some(user.clone()));
    let err = mas.create_user(&new_user(&name)).await.expect_err("exists");
    assert_eq!(err.status(), Some(409));
    let err = mas.create_user(&new_user("Not Valid")).await.expect_err("invalid");
    assert_eq!(err.status(), Some(400));

    let user_id = format!("@{name}:exo.test");
    let account =
        eventually("the account in Synapse", WAIT, || async { admin.get_user(&support::uid(&user_id)).await.ok()? })
            .await;
    assert_eq!(account.displayname.as_deref(), Some(format!("{name} D").as_str()));

    let email = mas.add_user_email(&user.id, &format!("{name}@example.org")).await.expect("added");
    assert_eq!(mas.user_emails(&user.id).await.expect("listed"), vec![email.clone()]);
    eventually("the email in Synapse", WAIT, || async {
        let a = admin.get_user(&support::uid(&user_id)).await.ok()??;
        a.threepids.iter().any(|t| t.address == email.email).then_some(())
    })
    .await;
    mas.delete_user_email(&email.id).await.expect("deleted");
    assert!(mas.user_emails(&user.id).await.expect("listed").is_empty());
    eventually("the email gone from Synapse", WAIT, || async {
        let a = admin.get_user(&support::uid(&user_id)).await.ok()??;
        a.threepids.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn personal_sessions_act_as_their_user_and_can_be_regenerated_and_revoked() {
    let pair = MasPlatform::start().await;
    let mas = pair.client();
    let name = unique("op");
    let user = mas.create_user(&new_user(&name)).await.expect("created");
    let user = mas.set_admin(&user.id, true).await.expect("admin");
    assert!(user.admin);
    let session = mas.create_personal_session(&user.id, "t", ADMIN_SESSION_SCOPE, Some(3600)).await.expect("made");
    assert!(session.expires_at.is_some());
    let synapse = Synapse::new(&pair.synapse.url).expect("url");
    let as_op = synapse.with_token(session.access_token.clone().expect("token"));
    let me = eventually("whoami", WAIT, || async { as_op.whoami().await.ok() }).await;
    assert_eq!(me.user_id, format!("@{name}:exo.test"));
    as_op.exempt_from_rate_limits(&me.user_id).await.expect("an admin call is allowed with the admin scope");

    let renewed = mas.regenerate_personal_session(&session.id, Some(3600)).await.expect("regenerated");
    assert_eq!(renewed.id, session.id);
    assert_ne!(renewed.access_token, session.access_token);
    let as_renewed = synapse.with_token(renewed.access_token.clone().expect("token"));
    assert_eq!(as_renewed.whoami().await.expect("new token works").user_id, me.user_id);

    // A session with the client scope only acts as the user, without admin rights.
    let plain = mas.create_personal_session(&user.id, "plain", USER_SESSION_SCOPE, Some(60)).await.expect("made");
    let as_plain = synapse.with_token(plain.access_token.clone().expect("token"));
    let err = as_plain.exempt_from_rate_limits(&me.user_id).await.expect_err("not an admin session");
    assert_eq!(err.status(), Some(403), "{err}");

    assert_eq!(mas.active_personal_sessions(&user.id).await.expect("listed").len(), 2);
    mas.revoke_personal_session(&plain.id).await.expect("revoked");
    mas.revoke_personal_session(&plain.id).await.expect("revoking twice is done, not an error");
    let active = mas.active_personal_sessions(&user.id).await.expect("listed");
    assert_eq!(active.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec![session.id.as_str()]);
}

#[tokio::test]
async fn deactivation_erases_only_when_asked_and_reactivation_keeps_the_lock() {
    let pair = MasPlatform::start().await;
    let admin = pair.synapse_admin().await;
    let mas = pair.client();
    let http = reqwest::Client::new();
    let raw_token = pair.synapse_admin_token().await;
    for (skip_erase, name) in [(true, unique("keep")), (false, unique("gone"))] {
        let user = mas.create_user(&new_user(&name)).await.expect("created");
        let user_id = format!("@{name}:exo.test");
        eventually("provisioned", WAIT, || async { admin.get_user(&support::uid(&user_id)).await.ok()? }).await;
        let after = mas.deactivate(&user.id, skip_erase).await.expect("deactivated");
        assert!(after.locked, "MAS locks at once and deactivates in the background");
        eventually("deactivated in Synapse", WAIT, || async {
            admin.get_user(&support::uid(&user_id)).await.ok()??.deactivated.then_some(())
        })
        .await;
        let raw: serde_json::Value = http
            .get(format!(
                "{}/_synapse/admin/v2/users/{}",
                pair.synapse.url,
                exo_matrix_operator::synapse::enc(&user_id)
            ))
            .bearer_auth(raw_token.expose())
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        assert_eq!(raw["erased"], serde_json::json!(!skip_erase), "{raw}");
        assert!(mas.user_by_username(&name).await.expect("answers").expect("kept").deactivated);
    }
    let name = unique("back");
    let user = mas.create_user(&new_user(&name)).await.expect("created");
    mas.deactivate(&user.id, true).await.expect("deactivated");
    let user_id = format!("@{name}:exo.test");
    eventually("deactivated", WAIT, || async {
        admin.get_user(&support::uid(&user_id)).await.ok()??.deactivated.then_some(())
    })
    .await;
    let back = mas.reactivate(&user.id).await.expect("reactivated");
    assert!(back.locked, "reactivation does not unlock");
    assert!(!mas.unlock(&user.id).await.expect("unlocked").locked);
    eventually("active in Synapse", WAIT, || async {
        (!admin.get_user(&support::uid(&user_id)).await.ok()??.deactivated).then_some(())
    })
    .await;
}
