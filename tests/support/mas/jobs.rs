//! The fake's background worker: what MAS tells Synapse through `/_synapse/mas/*`
//! (Synapse's side of that API is the real one), one job at a time, retried while
//! Synapse does not answer.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Inner, Job};

/// GET /_synapse/mas/is_localpart_available: Ok(false) when Synapse refuses the name.
pub(super) async fn localpart_available(inner: &Inner, localpart: &str) -> Result<bool, String> {
    let (url, secret) = synapse(inner).ok_or("no homeserver configured")?;
    let resp = inner
        .http
        .get(format!("{url}/_synapse/mas/is_localpart_available"))
        .query(&[("localpart", localpart)])
        .bearer_auth(secret)
        .send()
        .await
        .map_err(|e| format!("cannot reach the homeserver: {e}"))?;
    match resp.status().as_u16() {
        200 => Ok(true),
        400 => Ok(false),
        s => Err(format!("the homeserver answered {s}")),
    }
}

fn synapse(inner: &Inner) -> Option<(String, String)> {
    let s = inner.state.lock().expect("lock");
    Some((s.synapse_url.clone()?, s.synapse_secret.clone()))
}

async fn post(inner: &Inner, path: &str, body: &Value) -> Result<(), String> {
    let (url, secret) = synapse(inner).ok_or("no homeserver configured")?;
    let resp = inner
        .http
        .post(format!("{url}/_synapse/mas/{path}"))
        .bearer_auth(secret)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("{path}: {}", resp.status())) }
}

/// The body of `provision_user`: the user's profile as MAS knows it, and all its emails.
fn provision_body(inner: &Inner, localpart: &str) -> Option<Value> {
    let s = inner.state.lock().expect("lock");
    let (id, user) = s.users.iter().find(|(_, u)| u.username == localpart)?;
    let emails: Vec<&String> = s.emails.values().filter(|(u, _)| u == id).map(|(_, e)| e).collect();
    let mut body = json!({"localpart": localpart});
    if emails.is_empty() {
        body["unset_emails"] = json!(true);
    } else {
        body["set_emails"] = json!(emails);
    }
    if let Some(d) = &user.displayname {
        body["set_displayname"] = json!(d);
    }
    if let Some(a) = &user.avatar_url {
        body["set_avatar_url"] = json!(a);
    }
    Some(body)
}

async fn run(inner: &Inner, job: &Job) -> Result<(), String> {
    match job {
        Job::Provision(localpart) => match provision_body(inner, localpart) {
            Some(body) => post(inner, "provision_user", &body).await,
            None => Ok(()),
        },
        Job::Delete { localpart, erase, user_id } => {
            post(inner, "delete_user", &json!({"localpart": localpart, "erase": erase})).await?;
            let mut s = inner.state.lock().expect("lock");
            if let Some(u) = s.users.get_mut(user_id) {
                u.deactivated = true;
            }
            // OpenAPI: deactivation "invalidates any existing session".
            for session in s.sessions.values_mut().filter(|x| x.actor == *user_id) {
                session.revoked = true;
            }
            Ok(())
        }
        Job::Reactivate { localpart, user_id } => {
            post(inner, "reactivate_user", &json!({"localpart": localpart})).await?;
            if let Some(u) = inner.state.lock().expect("lock").users.get_mut(user_id) {
                u.deactivated = false;
            }
            Ok(())
        }
    }
}

pub(super) async fn run_jobs(inner: std::sync::Arc<Inner>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        for attempt in 0.. {
            match run(&inner, &job).await {
                Ok(()) => {
                    inner.state.lock().expect("lock").jobs_done.push(job.clone());
                    break;
                }
                Err(e) if attempt < 50 => {
                    eprintln!("fake MAS: job {job:?} failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    eprintln!("fake MAS: job {job:?} abandoned: {e}");
                    break;
                }
            }
        }
    }
}
