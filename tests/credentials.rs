//! Credentials: the bootstrapped admin account, the addon's key names, rotation.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn user(username: &str) -> MatrixUser {
    let spec: MatrixUserSpec = serde_json::from_value(serde_json::json!({"username": username})).expect("spec");
    MatrixUser::new(&username.replace('_', "-"), spec)
}

/// Waits for the Ready condition to have `status` and returns (reason, message).
async fn ready(api: &Api<MatrixUser>, name: &str, status: &str) -> (String, String) {
    eventually(&format!("{name} Ready={status}"), WAIT, || async {
        let u = api.get(name).await.ok()?;
        let (st, reason, message) = condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready")?;
        (st == status).then_some((reason, message))
    })
    .await
}

async fn stored_token(secrets: &Api<Secret>) -> Vec<u8> {
    let s = secrets.get("matrix-operator-token").await.expect("token Secret written");
    s.data.and_then(|d| d.get("accessToken").cloned()).expect("accessToken stored").0
}

#[tokio::test]
async fn bootstraps_its_admin_once_and_reuses_the_token_after_a_restart() {
    let client = kube_client().await;
    let ns = namespace(&client, "cred-boot").await;
    shared_secret_credentials(&client, &ns).await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    let first = unique("hal").replace('-', "_");
    {
        let _op = Operator::start(&ns, "matrix", &[]);
        api.create(&PostParams::default(), &user(&first)).await.expect("created");
        ready(&api, &first.replace('_', "-"), "True").await;
    }
    let token = stored_token(&secrets).await;
    let owner = secrets.get("matrix-operator-token").await.expect("secret");
    assert_eq!(owner.labels().get("app.kubernetes.io/managed-by").map(String::as_str), Some("exo-matrix-operator"));

    let op = Operator::start(&ns, "matrix", &[]);
    let second = unique("ida").replace('-', "_");
    api.create(&PostParams::default(), &user(&second)).await.expect("created");
    ready(&api, &second.replace('_', "-"), "True").await;
    assert_eq!(stored_token(&secrets).await, token, "a restart must not register again");
    assert!(!op.log_text().contains("bootstrapped"), "{}", op.log_text());
    // The token never reaches the log.
    let token_text = String::from_utf8(token).expect("utf-8");
    assert!(!op.log_text().contains(&token_text));
}

#[tokio::test]
async fn accepts_the_addon_key_names_and_picks_up_a_rotated_secret() {
    let client = kube_client().await;
    let ns = namespace(&client, "cred-rotate").await;
    let p = platform();
    credentials_secret(
        &client,
        &ns,
        "matrix",
        &[("exo.matrix.server.url", p.synapse_url()), ("exo.matrix.access_token", "syt_not_a_real_token")],
    )
    .await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let op = Operator::start(&ns, "matrix", &[]);
    let name = unique("joe").replace('-', "_");
    api.create(&PostParams::default(), &user(&name)).await.expect("created");
    // The first reconcile may still see "connecting"; the refusal follows.
    let message = eventually("the refusal in the condition", WAIT, || async {
        let u = api.get(&name.replace('_', "-")).await.ok()?;
        let (_, reason, message) = condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready")?;
        (reason == "CredentialsUnavailable" && message.contains("refused")).then_some(message)
    })
    .await;
    assert!(!message.contains("syt_not_a_real_token"), "{message}");
    // Without a shared secret only a person can help: the condition says what to put where.
    assert!(
        message.contains(&format!("Secret {ns}/matrix"))
            && message.contains("put a working server-admin access token under `accessToken`")
            && message.contains("`sharedSecret`"),
        "{message}"
    );

    let token = admin_token().await;
    credentials_secret(
        &client,
        &ns,
        "matrix",
        &[("exo.matrix.server.url", p.synapse_url()), ("exo.matrix.access_token", token.expose())],
    )
    .await;
    ready(&api, &name.replace('_', "-"), "True").await;
    assert!(!op.log_text().contains(token.expose()), "token leaked into the log");
}

#[tokio::test]
async fn a_missing_secret_is_a_condition_not_a_crash() {
    let client = kube_client().await;
    let ns = namespace(&client, "cred-missing").await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let op = Operator::start(&ns, "absent", &[]);
    let name = unique("kim").replace('-', "_");
    api.create(&PostParams::default(), &user(&name)).await.expect("created");
    let message = eventually("the missing Secret in the condition", WAIT, || async {
        let u = api.get(&name.replace('_', "-")).await.ok()?;
        let (_, reason, message) = condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready")?;
        (reason == "CredentialsUnavailable" && message.contains("not found")).then_some(message)
    })
    .await;
    assert!(message.contains("absent"), "{message}");
    // Creating the Secret later is enough.
    let p = platform();
    credentials_secret(&client, &ns, "absent", &[("sharedSecret", p.shared_secret()), ("serverUrl", p.synapse_url())])
        .await;
    ready(&api, &name.replace('_', "-"), "True").await;
    drop(op);
}

#[tokio::test]
async fn a_revoked_operator_token_is_replaced_without_a_restart() {
    let client = kube_client().await;
    let ns = namespace(&client, "cred-revoke").await;
    shared_secret_credentials(&client, &ns).await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let op = Operator::start(&ns, "matrix", &[]);
    let first = unique("lou").replace('-', "_");
    api.create(&PostParams::default(), &user(&first)).await.expect("created");
    ready(&api, &first.replace('_', "-"), "True").await;

    // Someone logs the operator's session out in Synapse.
    let token = String::from_utf8(stored_token(&secrets).await).expect("utf-8");
    let resp = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/logout", platform().synapse_url()))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("logout");
    assert!(resp.status().is_success(), "{}", resp.status());

    let second = unique("mo").replace('-', "_");
    api.create(&PostParams::default(), &user(&second)).await.expect("created");
    ready(&api, &second.replace('_', "-"), "True").await;
    let new_token = String::from_utf8(stored_token(&secrets).await).expect("utf-8");
    assert_ne!(new_token, token, "a new token was stored");
    assert!(op.log_text().contains("establishing a new session"), "{}", op.log_text());
    // The same account as before, and an Event on the token Secret saying why.
    let synapse = exo_matrix_operator::synapse::Synapse::new(platform().synapse_url()).expect("url");
    let me =
        synapse.with_token(exo_matrix_operator::secret::SecretString::new(new_token)).whoami().await.expect("whoami");
    assert_eq!(me.user_id, format!("@op-{ns}:{}", platform().server_name()));
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .expect("events");
    let notes: Vec<String> = events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SessionRecovered"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("matrix-operator-token"))
        .filter_map(|e| e.note)
        .collect();
    assert!(notes.iter().any(|n| n.contains("refused the stored token")), "{notes:?}");
}
