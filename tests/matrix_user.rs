//! The MatrixUser controller against the real kube-apiserver and Synapse.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec, SecretKeyRef, UserDeletionPolicy};
use exo_matrix_operator::synapse::{AdminUser, Synapse, Threepid, UserUpdate};
use k8s_openapi::api::core::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

async fn create(api: &Api<MatrixUser>, name: &str, spec: MatrixUserSpec) {
    api.create(&PostParams::default(), &MatrixUser::new(name, spec)).await.expect("MatrixUser created");
}

/// Waits until the object's Ready condition has `status`, and returns the object.
async fn ready(api: &Api<MatrixUser>, name: &str, status: &str) -> MatrixUser {
    eventually(&format!("{name} Ready={status}"), WAIT, || async {
        let u = api.get(name).await.ok()?;
        let s = serde_json::to_value(&u.status).ok()?;
        let (st, _, _) = condition(Some(&s), "Ready")?;
        let current = u.status.as_ref()?.observed_generation == u.metadata.generation;
        (st == status && current).then_some(u)
    })
    .await
}

async fn account(admin: &Synapse, user_id: &str) -> AdminUser {
    admin.get_user(&support::uid(user_id)).await.expect("Synapse answers").expect("account exists")
}

async fn events(client: &Client, ns: &str, object: &str) -> Vec<(String, String)> {
    let list = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("events listed");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(object))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

struct Setup {
    client: Client,
    ns: String,
    api: Api<MatrixUser>,
    admin: Synapse,
    server: String,
}

async fn setup(prefix: &str) -> Setup {
    let p = platform();
    let client = kube_client().await;
    let ns = namespace(&client, prefix).await;
    shared_secret_credentials(&client, &ns).await;
    let api = Api::namespaced(client.clone(), &ns);
    Setup { client, api, ns, admin: synapse_admin().await, server: p.server_name().to_owned() }
}

#[tokio::test]
async fn creates_the_account_with_profile_email_and_notification_pusher() {
    let s = setup("mxu-create").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let username = unique("Ann").replace('-', "_");
    create(&s.api, "ann", user_spec(&username)).await;
    let u = ready(&s.api, "ann", "True").await;

    let user_id = format!("@{}:{}", username.to_lowercase(), s.server);
    assert_eq!(u.status.as_ref().and_then(|st| st.user_id.clone()), Some(user_id.clone()));
    let a = account(&s.admin, &user_id).await;
    assert_eq!(a.displayname, Some(format!("{username} Display")));
    assert_eq!(a.threepids, vec![Threepid::email(&format!("{}@example.org", username.to_lowercase()))]);
    assert!(!a.admin && !a.deactivated);
    let pushers = s.admin.pushers(&support::uid(&user_id)).await.expect("pushers");
    assert!(
        pushers.iter().any(|p| p.kind == "email" && p.pushkey == format!("{}@example.org", username.to_lowercase())),
        "{pushers:?}"
    );
    let ev = events(&s.client, &s.ns, "ann").await;
    assert!(ev.iter().any(|(r, m)| r == "AccountCreated" && m.contains(&user_id)), "{ev:?}");

    // `kubectl get mxu` shows the Matrix ID and readiness.
    let (ok, out, err) = platform().kubectl_run(&["get", "mxu", "-n", &s.ns], None);
    assert!(ok, "{err}");
    assert!(out.contains(&user_id) && out.contains("True"), "{out}");
}

#[tokio::test]
async fn puts_back_a_display_name_and_email_changed_in_synapse() {
    let s = setup("mxu-drift").await;
    let _op = Operator::start(&s.ns, "matrix", &["--resync", "2s"]);
    let username = unique("bob").replace('-', "_");
    create(&s.api, "bob", user_spec(&username)).await;
    let u = ready(&s.api, "bob", "True").await;
    let user_id = u.status.and_then(|st| st.user_id).expect("userId");

    let tamper = UserUpdate {
        displayname: Some("Changed by hand".into()),
        threepids: Some(vec![Threepid::email("elsewhere@example.org")]),
        ..UserUpdate::default()
    };
    s.admin.put_user(&support::uid(&user_id), &tamper).await.expect("tampered");
    let expected_email = format!("{username}@example.org");
    eventually("drift corrected", WAIT, || async {
        let a = s.admin.get_user(&support::uid(&user_id)).await.ok()??;
        (a.displayname == Some(format!("{username} Display")) && a.threepids == vec![Threepid::email(&expected_email)])
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn spec_changes_reach_synapse() {
    let s = setup("mxu-edit").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let username = unique("cat").replace('-', "_");
    create(&s.api, "cat", user_spec(&username)).await;
    let user_id = ready(&s.api, "cat", "True").await.status.and_then(|st| st.user_id).expect("userId");

    let change = json!({"spec": {"displayName": "Catherine", "email": "Catherine@Example.org", "admin": true}});
    s.api.patch("cat", &PatchParams::default(), &Patch::Merge(&change)).await.expect("patched");
    eventually("profile updated", WAIT, || async {
        let a = s.admin.get_user(&support::uid(&user_id)).await.ok()??;
        (a.displayname.as_deref() == Some("Catherine")
            && a.threepids == vec![Threepid::email("catherine@example.org")]
            && a.admin)
            .then_some(())
    })
    .await;
    // The pusher follows the new address.
    eventually("pusher for the new address", WAIT, || async {
        let p = s.admin.pushers(&support::uid(&user_id)).await.ok()?;
        p.iter().any(|p| p.pushkey == "catherine@example.org").then_some(())
    })
    .await;
}

#[tokio::test]
async fn disabling_deactivates_and_enabling_reactivates() {
    let s = setup("mxu-enable").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let username = unique("dan").replace('-', "_");
    create(&s.api, "dan", user_spec(&username)).await;
    let user_id = ready(&s.api, "dan", "True").await.status.and_then(|st| st.user_id).expect("userId");

    s.api
        .patch("dan", &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": false}})))
        .await
        .expect("patched");
    let u = ready(&s.api, "dan", "True").await;
    let (_, reason, _) = condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready").expect("Ready");
    assert_eq!(reason, "Disabled");
    assert!(account(&s.admin, &user_id).await.deactivated);

    s.api
        .patch("dan", &PatchParams::default(), &Patch::Merge(json!({"spec": {"enabled": true}})))
        .await
        .expect("patched");
    eventually("reactivated with its email", WAIT, || async {
        let a = s.admin.get_user(&support::uid(&user_id)).await.ok()??;
        (!a.deactivated && a.threepids.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deletion_follows_the_deletion_policy() {
    let s = setup("mxu-delete").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let mut ids = Vec::new();
    for (name, policy) in [
        ("keep", UserDeletionPolicy::Retain),
        ("off", UserDeletionPolicy::Deactivate),
        ("gone", UserDeletionPolicy::Erase),
    ] {
        let mut sp = user_spec(&unique(name).replace('-', "_"));
        sp.deletion_policy = policy;
        create(&s.api, name, sp).await;
        ids.push(ready(&s.api, name, "True").await.status.and_then(|st| st.user_id).expect("userId"));
    }
    for name in ["keep", "off", "gone"] {
        s.api.delete(name, &DeleteParams::default()).await.expect("deleted");
    }
    for name in ["keep", "off", "gone"] {
        eventually(&format!("{name} removed"), WAIT, || async {
            s.api.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
    assert!(!account(&s.admin, &ids[0]).await.deactivated, "Retain keeps the account");
    assert!(account(&s.admin, &ids[1]).await.deactivated, "Deactivate deactivates");
    let erased = account(&s.admin, &ids[2]).await;
    assert!(erased.deactivated && erased.displayname.is_none(), "Erase erases: {erased:?}");
}

#[tokio::test]
async fn two_usernames_with_one_localpart_conflict() {
    let s = setup("mxu-conflict").await;
    let _op = Operator::start(&s.ns, "matrix", &[]);
    let base = unique("eve").replace('-', "_");
    create(&s.api, "first", user_spec(&base)).await;
    ready(&s.api, "first", "True").await;
    let mut upper = user_spec(&base.to_uppercase());
    upper.display_name = Some("Impostor".into());
    create(&s.api, "second", upper).await;
    let u = ready(&s.api, "second", "False").await;
    let st = serde_json::to_value(&u.status).ok();
    let (status, reason, message) = condition(st.as_ref(), "Conflict").expect("Conflict condition");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "LocalpartTaken"));
    assert!(message.contains("first"), "{message}");
    let user_id = format!("@{base}:{}", s.server);
    assert_eq!(account(&s.admin, &user_id).await.displayname, Some(format!("{base} Display")));
    // Deleting the loser leaves the winner's account alone.
    s.api.delete("second", &DeleteParams::default()).await.expect("deleted");
    eventually("second removed", WAIT, || async { s.api.get_opt("second").await.ok()?.is_none().then_some(()) }).await;
    assert!(!account(&s.admin, &user_id).await.deactivated);
}

#[tokio::test]
async fn shared_secret_creation_sets_the_given_password() {
    let s = setup("mxu-register").await;
    let _op = Operator::start(&s.ns, "matrix", &["--user-creation", "shared-secret"]);
    credentials_secret(&s.client, &s.ns, "fay-password", &[("password", "fay-password-123")]).await;
    let username = unique("fay").replace('-', "_");
    let mut sp = user_spec(&username);
    sp.password_secret_ref = Some(SecretKeyRef { name: "fay-password".into(), key: "password".into() });
    create(&s.api, "fay", sp).await;
    let user_id = ready(&s.api, "fay", "True").await.status.and_then(|st| st.user_id).expect("userId");
    assert_eq!(account(&s.admin, &user_id).await.displayname, Some(format!("{username} Display")));
    let anonymous = Synapse::new(platform().synapse_url()).expect("url");
    let token = anonymous
        .login_with_password(&username, &exo_matrix_operator::secret::SecretString::new("fay-password-123"))
        .await
        .expect("the password from the Secret works");
    assert_eq!(anonymous.with_token(token).whoami().await.expect("whoami").user_id, user_id);
}

#[tokio::test]
async fn sigterm_stops_the_operator_cleanly() {
    let s = setup("mxu-sigterm").await;
    let mut op = Operator::start(&s.ns, "matrix", &[]);
    create(&s.api, "gil", user_spec(&unique("gil").replace('-', "_"))).await;
    ready(&s.api, "gil", "True").await;
    assert_eq!(op.terminate(Duration::from_secs(10)), Some(true), "{}", op.log_text());
}
