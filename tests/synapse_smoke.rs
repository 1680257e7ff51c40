//! The Synapse adapter against the real homeserver of the test platform.

mod support;

use exo_matrix_operator::secret::SecretString;
use exo_matrix_operator::synapse::{CreateRoom, Registration, StateEvent, Synapse};
use serde_json::json;
use support::{platform, unique};

#[tokio::test]
async fn registers_through_shared_secret_and_creates_a_room() {
    let p = platform();
    let synapse = Synapse::new(p.synapse_url()).expect("valid URL");
    let username = unique("smoke").replace('-', "_");
    let reg = Registration {
        username: username.clone(),
        password: SecretString::new("a-long-test-password"),
        admin: false,
        displayname: Some("Smoke Test".into()),
    };
    let registered = synapse
        .register_with_shared_secret(&SecretString::new(p.shared_secret()), &reg)
        .await
        .expect("registration accepted");
    assert_eq!(registered.user_id, format!("@{username}:{}", p.server_name()));
    let token = registered.access_token.expect("a token for the new account");

    let as_user = synapse.with_token(token);
    assert_eq!(as_user.whoami().await.expect("token works").user_id, registered.user_id);

    let room_id = as_user
        .create_room(&CreateRoom {
            preset: Some("private_chat"),
            name: Some("Smoke room".into()),
            initial_state: vec![StateEvent {
                kind: "dev.exomatrix.link".into(),
                state_key: "smoke".into(),
                content: json!({"spaceGroupId": "smoke"}),
            }],
            ..Default::default()
        })
        .await
        .expect("room created");
    assert!(room_id.as_str().starts_with('!'), "{room_id}");
    let name = as_user.room_state(&room_id, "m.room.name", "").await.expect("state readable");
    assert_eq!(name, Some(json!({"name": "Smoke room"})));
    let marker = as_user.room_state(&room_id, "dev.exomatrix.link", "smoke").await.expect("state readable");
    assert_eq!(marker, Some(json!({"spaceGroupId": "smoke"})));
    let avatar = as_user.room_state(&room_id, "m.room.avatar", "").await.expect("absent state is not an error");
    assert_eq!(avatar, None);
}

#[tokio::test]
async fn a_wrong_shared_secret_is_refused_as_permanent() {
    let p = platform();
    let synapse = Synapse::new(p.synapse_url()).expect("valid URL");
    let reg = Registration {
        username: unique("wrong").replace('-', "_"),
        password: SecretString::new("pw-pw-pw-pw"),
        admin: false,
        displayname: None,
    };
    let err = synapse
        .register_with_shared_secret(&SecretString::new("not-the-secret"), &reg)
        .await
        .expect_err("HMAC must not match");
    assert_eq!(err.status(), Some(403), "{err}");
    assert_eq!(err.retry_kind(), exo_matrix_operator::synapse::RetryKind::Permanent);
    assert!(!err.to_string().contains("not-the-secret"));
}
