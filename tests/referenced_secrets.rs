//! A Secret an object names (a MatrixUser's password, an ExoSource's credentials), fixed after
//! the object failed on it, is used at once: the object is not left to its backoff.
//!
//! A failure that needs a person is retried no sooner than 5 s after it (see `retry`). Both
//! tests fix the Secret as soon as the failure shows and compare the API server's own times:
//! Ready must follow the failure by less than those 5 s, which only a watch on the Secret gives.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{ExoSource, MatrixUser};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::exo::{CREDENTIALS, FakeExo, credentials_with};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

/// `lastTransitionTime` (whole seconds) of condition `type_` once it has `status`.
async fn transition<K>(api: &Api<K>, name: &str, type_: &str, status: &str) -> jiff::Timestamp
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    eventually(&format!("{name} {type_}={status}"), WAIT, || async {
        let obj = serde_json::to_value(api.get(name).await.ok()?).ok()?;
        let c = obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?.clone();
        (c["status"] == status).then(|| c["lastTransitionTime"].as_str()?.parse().ok()).flatten()
    })
    .await
}

fn sooner_than_a_retry(failed: jiff::Timestamp, ready: jiff::Timestamp, what: &str) {
    let waited = ready.duration_since(failed);
    // Whole seconds on both sides: a retry at failure + 5 s shows as at least 5 s here.
    assert!(
        waited < jiff::SignedDuration::from_secs(5),
        "{what}: Ready {waited:?} after the failure: no watch woke it"
    );
}

#[tokio::test]
async fn a_password_secret_fixed_later_is_used_at_once() {
    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, "pw-watch").await;
    shared_secret_credentials(&client, &ns).await;
    let _op = Operator::start(&ns, "matrix", &[]);
    let secret = |data: Value| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pw"}, "stringData": data}).to_string()
    };
    p.apply(&ns, &secret(json!({"wrong-key": "s3cret-password"})));
    let users: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let username = unique("pwwatch").replace('-', "");
    let user = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "MatrixUser",
        "metadata": {"name": "fay"}, "spec": {"username": username, "passwordSecretRef": {"name": "pw"}}}))
    .expect("user");
    users.create(&PostParams::default(), &user).await.expect("MatrixUser created");

    let failed = transition(&users, "fay", "Stalled", "True").await;
    p.apply(&ns, &secret(json!({"password": "s3cret-password"})));
    let ready = transition(&users, "fay", "Ready", "True").await;
    sooner_than_a_retry(failed, ready, "MatrixUser");

    // The account really has the password from the Secret.
    let login = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/login", p.synapse_url()))
        .json(&json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": username},
            "password": "s3cret-password"}))
        .send()
        .await
        .expect("Synapse answers");
    assert!(login.status().is_success(), "login with the Secret's password: {}", login.status());
}

#[tokio::test]
async fn exo_credentials_fixed_later_are_used_at_once() {
    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, "exo-watch").await;
    shared_secret_credentials(&client, &ns).await;
    let exo = FakeExo::start().await;
    let tag = unique("x").replace('-', "");
    exo.edit(|s| {
        s.spaces.insert("12".into(), (format!("mkt{tag}"), "Marketing".into(), String::new()));
        s.add_user(&format!("ann{tag}"));
        s.members.insert("12".into(), vec![format!("ann{tag}")]);
    });
    let _op = Operator::start(&ns, "matrix", &[]);
    p.apply(&ns, &credentials_with("wrong-password"));
    let sources: Api<ExoSource> = Api::namespaced(client.clone(), &ns);
    // An hour between polls: only the watch can bring the fix in soon.
    let source = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "ExoSource",
        "metadata": {"name": "intranet"},
        "spec": {"url": exo.url, "credentialsSecretRef": {"name": CREDENTIALS}, "interval": "1h"}}))
    .expect("source");
    sources.create(&PostParams::default(), &source).await.expect("ExoSource created");

    let failed = transition(&sources, "intranet", "Stalled", "True").await;
    p.apply(&ns, &exo.credentials_secret());
    let ready = transition(&sources, "intranet", "Ready", "True").await;
    sooner_than_a_retry(failed, ready, "ExoSource");
}
