//! Avatars: downloaded from their URL, uploaded only when the bytes change,
//! and a broken avatar never stops the account from being made.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use support::http::{Files, png, serve};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn user(username: &str, avatar: &str) -> MatrixUser {
    let spec: MatrixUserSpec =
        serde_json::from_value(json!({"username": username, "avatarUrl": avatar})).expect("spec");
    MatrixUser::new(username, spec)
}

async fn uploads(client: &kube::Client, ns: &str) -> usize {
    let list = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.expect("events");
    // Repeats of one Event are counted in its series.
    list.items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("AvatarUploaded"))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count as usize))
        .sum()
}

#[tokio::test]
async fn avatar_is_uploaded_once_and_again_only_when_its_bytes_change() {
    let client = kube_client().await;
    let ns = namespace(&client, "avatar").await;
    shared_secret_credentials(&client, &ns).await;
    let files = Files::default();
    files.set("/u/lea.png", "image/png", &png(1));
    let base = serve(files.clone()).await;
    let admin = synapse_admin().await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let _op = Operator::start(&ns, "matrix", &["--resync", "1s"]);

    let name = unique("lea");
    api.create(&PostParams::default(), &user(&name, &format!("{base}/u/lea.png"))).await.expect("created");
    let first = eventually("avatar set", WAIT, || async {
        let u = api.get(&name).await.ok()?;
        let st = u.status?;
        let a = admin.get_user(&support::uid(st.user_id.as_deref()?)).await.ok()??;
        let mxc = st.avatar?.content_uri;
        (a.avatar_url.as_deref() == Some(mxc.as_str())).then_some(mxc)
    })
    .await;
    // Several resyncs later, the same bytes have not been uploaded again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(uploads(&client, &ns).await, 1);
    assert_eq!(
        api.get(&name).await.expect("get").status.and_then(|s| s.avatar).map(|a| a.content_uri),
        Some(first.clone())
    );

    files.set("/u/lea.png", "image/png", &png(2));
    let second = eventually("new avatar uploaded", WAIT, || async {
        let mxc = api.get(&name).await.ok()?.status?.avatar?.content_uri;
        (mxc != first).then_some(mxc)
    })
    .await;
    assert!(second.starts_with("mxc://"));
    assert_eq!(uploads(&client, &ns).await, 2);
}

#[tokio::test]
async fn an_avatar_that_is_not_an_image_is_a_condition_and_the_account_is_made() {
    let client = kube_client().await;
    let ns = namespace(&client, "avatar-bad").await;
    shared_secret_credentials(&client, &ns).await;
    let files = Files::default();
    files.set("/login.html", "text/html", b"<html>please log in</html>");
    let base = serve(files).await;
    let admin = synapse_admin().await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let _op = Operator::start(&ns, "matrix", &[]);

    for (name, path) in [(unique("max"), "/login.html"), (unique("ned"), "/missing.png")] {
        api.create(&PostParams::default(), &user(&name, &format!("{base}{path}"))).await.expect("created");
        let (message, user_id) = eventually("avatar condition", WAIT, || async {
            let u = api.get(&name).await.ok()?;
            let status = serde_json::to_value(&u.status).ok();
            let (ready, _, _) = condition(status.as_ref(), "Ready")?;
            let (avatar_ok, reason, message) = condition(status.as_ref(), "AvatarSynced")?;
            (ready == "True" && avatar_ok == "False" && reason == "AvatarUnavailable")
                .then_some((message, u.status?.user_id?))
        })
        .await;
        assert!(message.contains(path), "{message}");
        let a = admin.get_user(&support::uid(&user_id)).await.expect("synapse").expect("account made anyway");
        assert_eq!(a.avatar_url, None);
    }
}
