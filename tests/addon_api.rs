//! The original addon's REST endpoints, served by the operator: every status code.

mod support;

use std::time::Duration;

use exo_matrix_operator::crd::{ExoSource, SpaceRoomLink};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::*;

const TOKEN: &str = "addon-test-token";

async fn call(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("operator answers");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn linkroom_and_room_lookup_answer_like_the_addon_under_both_prefixes_and_follow_token_rotation() {
    let client = kube_client().await;
    let ns = namespace(&client, "addon").await;
    shared_secret_credentials(&client, &ns).await;
    credentials_secret(&client, &ns, "addon-token", &[("token", TOKEN)]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let _op = Operator::start(
        &ns,
        "matrix",
        &["--addon-api-addr", &format!("127.0.0.1:{port}"), "--addon-api-token-secret", &format!("{ns}/addon-token")],
    );
    eventually("the addon API listens with its token", Duration::from_secs(20), || async {
        let url = format!("http://127.0.0.1:{port}/rest/matrix?spaceId=x");
        let resp = reqwest::Client::new().get(url).bearer_auth(TOKEN).send().await.ok()?;
        (resp.status() == 404).then_some(())
    })
    .await;

    // The same answers under the addon's own path and the portal path eXo admins call.
    for prefix in ["/rest/matrix", "/portal/rest/matrix"] {
        // Room aliases live in the shared Synapse: each run needs space ids of its own.
        let alpha = unique("alpha").replace('-', "_");
        let linkroom = |q: &str| format!("{prefix}/linkroom?{q}");
        assert_eq!(call(port, &linkroom(&format!("spaceGroupId={alpha}&create=true")), None).await.0, 401);
        assert_eq!(call(port, &linkroom(&format!("spaceGroupId={alpha}&create=true")), Some("wrong")).await.0, 401);
        assert_eq!(call(port, &linkroom("create=true"), Some(TOKEN)).await.0, 400);
        assert_eq!(call(port, &linkroom("spaceGroupId=Not%20Valid&create=true"), Some(TOKEN)).await.0, 400);
        assert_eq!(call(port, &format!("{prefix}?spaceId={alpha}"), Some(TOKEN)).await.0, 404);

        let (status, name) = call(port, &linkroom(&format!("spaceGroupId={alpha}&create=true")), Some(TOKEN)).await;
        assert_eq!((status, name), (202, format!("linkroom-{}", alpha.replace('_', "-"))));
        let room = eventually("200 with the room id once Ready", Duration::from_secs(40), || async {
            let (status, body) = call(port, &linkroom(&format!("spaceGroupId={alpha}&create=true")), Some(TOKEN)).await;
            (status == 200).then_some(body)
        })
        .await;
        assert!(room.starts_with('!'), "{room}");
        // Both prefixes see the same link.
        for other in ["/rest/matrix", "/portal/rest/matrix"] {
            assert_eq!(call(port, &format!("{other}?spaceId={alpha}"), Some(TOKEN)).await, (200, room.clone()));
        }
    }

    // A space linked by some other object: 409.
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let other = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": "by-hand"}, "spec": {"spaceGroupId": "beta"}}))
    .expect("link");
    links.create(&PostParams::default(), &other).await.expect("created");
    for prefix in ["/rest/matrix", "/portal/rest/matrix"] {
        assert_eq!(call(port, &format!("{prefix}/linkroom?spaceGroupId=beta&create=true"), Some(TOKEN)).await.0, 409);
    }

    // With an ExoSource configured, a space it does not know: 404.
    let sources: Api<ExoSource> = Api::namespaced(client.clone(), &ns);
    let source = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "ExoSource",
        "metadata": {"name": "intranet"}, "spec": {"url": "http://127.0.0.1:9", "credentialsSecretRef": {"name": "none"}}}))
    .expect("source");
    sources.create(&PostParams::default(), &source).await.expect("created");
    for prefix in ["/rest/matrix", "/portal/rest/matrix"] {
        assert_eq!(call(port, &format!("{prefix}/linkroom?spaceGroupId=gamma&create=true"), Some(TOKEN)).await.0, 404);
    }

    // The token rotated in its Secret: the new one works and the old one is refused, without a restart.
    credentials_secret(&client, &ns, "addon-token", &[("token", "rotated-token")]).await;
    eventually("the rotated token in force", Duration::from_secs(20), || async {
        (call(port, "/portal/rest/matrix?spaceId=beta", Some("rotated-token")).await.0 == 404).then_some(())
    })
    .await;
    assert_eq!(call(port, "/rest/matrix?spaceId=beta", Some(TOKEN)).await.0, 401);
    assert_eq!(call(port, "/rest/matrix?spaceId=beta", Some("rotated-token")).await.0, 404);
}

#[tokio::test]
async fn the_addon_api_waits_for_its_token_secret() {
    let client = kube_client().await;
    let ns = namespace(&client, "addon").await;
    shared_secret_credentials(&client, &ns).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let _op = Operator::start(
        &ns,
        "matrix",
        &["--addon-api-addr", &format!("127.0.0.1:{port}"), "--addon-api-token-secret", &format!("{ns}/late-token")],
    );
    // No Secret yet: the endpoints answer, and refuse everything with 503.
    let status = eventually("the addon API listens", Duration::from_secs(20), || async {
        let resp = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/portal/rest/matrix?spaceId=x"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        Some(resp.status().as_u16())
    })
    .await;
    assert_eq!(status, 503);
    credentials_secret(&client, &ns, "late-token", &[("token", TOKEN)]).await;
    eventually("the token read once its Secret exists", Duration::from_secs(20), || async {
        (call(port, "/portal/rest/matrix?spaceId=x", Some(TOKEN)).await.0 == 404).then_some(())
    })
    .await;
}
