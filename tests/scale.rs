//! 200 MatrixUsers applied at once all become Ready. Prints how long it took
//! and how many Synapse calls were made: a first figure, not a timed assertion.

mod support;

use std::time::{Duration, Instant};

use exo_matrix_operator::crd::{MatrixUser, MatrixUserSpec};
use futures::{StreamExt, TryStreamExt};
use kube::Api;
use kube::api::{ListParams, PostParams};
use support::*;

const USERS: usize = 200;

#[tokio::test]
async fn two_hundred_users_applied_at_once_all_become_ready() {
    let client = kube_client().await;
    let ns = namespace(&client, "scale").await;
    shared_secret_credentials(&client, &ns).await;
    let api: Api<MatrixUser> = Api::namespaced(client.clone(), &ns);
    let mut op = Operator::start(&ns, "matrix", &[]);
    let prefix = unique("s");

    let started = Instant::now();
    futures::stream::iter(0..USERS)
        .map(|i| {
            let api = api.clone();
            let username = format!("{prefix}-{i:03}");
            async move {
                let spec: MatrixUserSpec = serde_json::from_value(serde_json::json!({
                    "username": username,
                    "displayName": format!("Scale User {i}"),
                    "email": format!("{username}@example.org"),
                }))
                .expect("spec");
                api.create(&PostParams::default(), &MatrixUser::new(&username, spec)).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("all MatrixUsers created");
    let applied = started.elapsed();

    eventually("all users Ready", Duration::from_secs(300), || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        let ready = list
            .items
            .iter()
            .filter(|u| {
                condition(serde_json::to_value(&u.status).ok().as_ref(), "Ready").is_some_and(|(s, _, _)| s == "True")
            })
            .count();
        (ready == USERS).then_some(())
    })
    .await;
    let all_ready = started.elapsed();

    assert_eq!(op.terminate(Duration::from_secs(10)), Some(true));
    let log = op.log_text();
    let calls: u64 = log
        .lines()
        .filter(|l| l.contains("controllers stopped"))
        .filter_map(|l| l.split("synapse_calls=").nth(1))
        .filter_map(|v| v.trim().trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .next()
        .expect("the operator reports its Synapse calls at shutdown");
    println!(
        "scale: {USERS} MatrixUsers applied in {:.1}s, all Ready after {:.1}s ({:.1} users/s); {calls} Synapse calls ({:.1} per user)",
        applied.as_secs_f64(),
        all_ready.as_secs_f64(),
        USERS as f64 / all_ready.as_secs_f64(),
        calls as f64 / USERS as f64
    );
    // Creating an account with email and pusher takes 5 calls; more means repeated work.
    assert!(calls as usize <= USERS * 8, "{calls} Synapse calls for {USERS} users");
}
