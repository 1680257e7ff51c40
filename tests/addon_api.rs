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
async fn linkroom_and_room_lookup_answer_like_the_addon() {
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
    // Room aliases live in the shared Synapse: each run needs space ids of its own.
    let alpha = unique("alpha").replace('-', "_");
    eventually("the addon API listens", Duration::from_secs(20), || async {
        reqwest::get(format!("http://127.0.0.1:{port}/rest/matrix")).await.ok().map(|_| ())
    })
    .await;

    assert_eq!(call(port, &format!("/rest/matrix/linkroom?spaceGroupId={alpha}&create=true"), None).await.0, 401);
    assert_eq!(
        call(port, &format!("/rest/matrix/linkroom?spaceGroupId={alpha}&create=true"), Some("wrong")).await.0,
        401
    );
    assert_eq!(call(port, "/rest/matrix/linkroom?create=true", Some(TOKEN)).await.0, 400);
    assert_eq!(call(port, "/rest/matrix/linkroom?spaceGroupId=Not%20Valid&create=true", Some(TOKEN)).await.0, 400);
    assert_eq!(call(port, &format!("/rest/matrix?spaceId={alpha}"), Some(TOKEN)).await.0, 404);

    let (status, name) =
        call(port, &format!("/rest/matrix/linkroom?spaceGroupId={alpha}&create=true"), Some(TOKEN)).await;
    assert_eq!((status, name), (202, format!("linkroom-{}", alpha.replace('_', "-"))));
    let room = eventually("200 with the room id once Ready", Duration::from_secs(40), || async {
        let (status, body) =
            call(port, &format!("/rest/matrix/linkroom?spaceGroupId={alpha}&create=true"), Some(TOKEN)).await;
        (status == 200).then_some(body)
    })
    .await;
    assert!(room.starts_with('!'), "{room}");
    assert_eq!(call(port, &format!("/rest/matrix?spaceId={alpha}"), Some(TOKEN)).await, (200, room));

    // A space linked by some other object: 409.
    let links: Api<SpaceRoomLink> = Api::namespaced(client.clone(), &ns);
    let other = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "SpaceRoomLink",
        "metadata": {"name": "by-hand"}, "spec": {"spaceGroupId": "beta"}}))
    .expect("link");
    links.create(&PostParams::default(), &other).await.expect("created");
    assert_eq!(call(port, "/rest/matrix/linkroom?spaceGroupId=beta&create=true", Some(TOKEN)).await.0, 409);

    // With an ExoSource configured, a space it does not know: 404.
    let sources: Api<ExoSource> = Api::namespaced(client.clone(), &ns);
    let source = serde_json::from_value(json!({"apiVersion": "exomatrix.dev/v1alpha1", "kind": "ExoSource",
        "metadata": {"name": "intranet"}, "spec": {"url": "http://127.0.0.1:9", "credentialsSecretRef": "none"}}))
    .expect("source");
    sources.create(&PostParams::default(), &source).await.expect("created");
    assert_eq!(call(port, "/rest/matrix/linkroom?spaceGroupId=gamma&create=true", Some(TOKEN)).await.0, 404);
}
