//! The fake's `/api/admin/v1` endpoints (shapes and statuses from MAS's OpenAPI document).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{
    Inner, Job, Session, User, error, now, reply, session_json, single, token, ulid, user_json, username_valid,
};

pub(super) async fn admin(
    inner: &Inner,
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    body: Value,
) -> Response {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("POST", ["users"]) => create_user(inner, body).await,
        ("GET", ["users", "by-username", name]) => {
            let name = percent_decode(name);
            let s = inner.state.lock().expect("lock");
            match s.users.iter().find(|(_, u)| u.username == name) {
                Some((id, u)) => single(user_json(id, u)),
                None => error(StatusCode::NOT_FOUND, &format!("User with username \"{name}\" not found")),
            }
        }
        ("GET", ["users", id]) => with_user(inner, id, |_, _| None),
        ("POST", ["users", id, "set-admin"]) => match body["admin"].as_bool() {
            Some(flag) => with_user(inner, id, |u, _| {
                u.admin = flag;
                None
            }),
            None => error(StatusCode::UNPROCESSABLE_ENTITY, "missing field `admin`"),
        },
        ("POST", ["users", id, "set-password"]) => {
            let Some(password) = body["password"].as_str().map(str::to_owned) else {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "missing field `password`");
            };
            let mut s = inner.state.lock().expect("lock");
            match s.users.get_mut(*id) {
                Some(u) => {
                    u.password = Some(password);
                    reply(StatusCode::NO_CONTENT, Value::Null)
                }
                None => error(StatusCode::NOT_FOUND, &format!("User ID {id} not found")),
            }
        }
        ("POST", ["users", id, "deactivate"]) => {
            // Contract: erases unless `skip_erase: true`. OpenAPI example: the answer shows the user locked.
            let erase = !body["skip_erase"].as_bool().unwrap_or(false);
            with_user(inner, id, |u, id| {
                u.locked = true;
                Some(Job::Delete { localpart: u.username.clone(), erase, user_id: id.to_owned() })
            })
        }
        ("POST", ["users", id, "reactivate"]) => {
            // OpenAPI: reactivation does not unlock.
            with_user(inner, id, |u, id| {
                Some(Job::Reactivate { localpart: u.username.clone(), user_id: id.to_owned() })
            })
        }
        ("POST", ["users", id, "lock"]) => with_user(inner, id, |u, _| {
            u.locked = true;
            None
        }),
        ("POST", ["users", id, "unlock"]) => with_user(inner, id, |u, _| {
            u.locked = false;
            None
        }),
        ("GET", ["user-emails"]) => {
            let s = inner.state.lock().expect("lock");
            let wanted = query.get("filter[user]");
            let data: Vec<Value> = s
                .emails
                .iter()
                .filter(|(_, (user, _))| wanted.is_none_or(|w| w == user))
                .map(|(id, (user, email))| email_json(id, user, email))
                .collect();
            page(data, "/api/admin/v1/user-emails")
        }
        ("POST", ["user-emails"]) => add_email(inner, &body),
        ("DELETE", ["user-emails", id]) => {
            let mut s = inner.state.lock().expect("lock");
            match s.emails.remove(*id) {
                Some((user, _)) => {
                    let localpart = s.users.get(&user).map(|u| u.username.clone()).unwrap_or_default();
                    drop(s);
                    let _ = inner.jobs.send(Job::Provision(localpart));
                    reply(StatusCode::NO_CONTENT, Value::Null)
                }
                None => error(StatusCode::NOT_FOUND, &format!("User email ID {id} not found")),
            }
        }
        ("POST", ["personal-sessions"]) => create_session(inner, &body),
        ("GET", ["personal-sessions"]) => {
            let s = inner.state.lock().expect("lock");
            let actor = query.get("filter[actor_user]");
            let status = query.get("filter[status]").map(String::as_str);
            let data: Vec<Value> = s
                .sessions
                .iter()
                .filter(|(_, x)| actor.is_none_or(|a| *a == x.actor))
                .filter(|(_, x)| match status {
                    Some("active") => !x.revoked,
                    Some("revoked") => x.revoked,
                    _ => true,
                })
                .map(|(id, x)| session_json(id, x, false))
                .collect();
            page(data, "/api/admin/v1/personal-sessions")
        }
        ("POST", ["personal-sessions", id, "regenerate"]) => {
            let mut s = inner.state.lock().expect("lock");
            let Some(session) = s.sessions.get_mut(*id) else {
                return error(StatusCode::NOT_FOUND, "Personal session not found");
            };
            if session.revoked {
                // ASSUMED: a revoked session cannot be regenerated (the OpenAPI lists no status for it).
                return error(StatusCode::CONFLICT, &format!("Personal session with ID {id} is revoked"));
            }
            session.token = token("mpt");
            session.expires_at = expiry(&body);
            let answer = session_json(id, session, true);
            let mut resp = single(answer);
            *resp.status_mut() = StatusCode::CREATED;
            resp
        }
        ("POST", ["personal-sessions", id, "revoke"]) => {
            let mut s = inner.state.lock().expect("lock");
            match s.sessions.get_mut(*id) {
                None => error(StatusCode::NOT_FOUND, &format!("Personal session with ID {id} not found")),
                Some(x) if x.revoked => {
                    error(StatusCode::CONFLICT, &format!("Personal session with ID {id} is already revoked"))
                }
                Some(x) => {
                    x.revoked = true;
                    single(session_json(id, x, false))
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

fn percent_decode(text: &str) -> String {
    let url = reqwest::Url::parse(&format!("http://x/?v={text}")).expect("url");
    url.query_pairs().next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

fn page(data: Vec<Value>, base: &str) -> Response {
    // One page holds everything, so there is no `next` link.
    let count = data.len();
    reply(
        StatusCode::OK,
        json!({"meta": {"count": count}, "data": data, "links": {"self": base, "first": base, "last": base}}),
    )
}

fn email_json(id: &str, user: &str, email: &str) -> Value {
    json!({"type": "user-email", "id": id, "attributes": {"created_at": "2026-11-26T00:00:00Z", "user_id": user,
        "email": email}, "links": {"self": format!("/api/admin/v1/user-emails/{id}")}})
}

fn expiry(body: &Value) -> Option<jiff::Timestamp> {
    body["expires_in"].as_i64().map(|s| now() + jiff::SignedDuration::from_secs(s))
}

/// Applies `change` to a user and answers with it; a returned job is queued for Synapse.
fn with_user(inner: &Inner, id: &str, change: impl FnOnce(&mut User, &str) -> Option<Job>) -> Response {
    let mut s = inner.state.lock().expect("lock");
    let Some(user) = s.users.get_mut(id) else {
        return error(StatusCode::NOT_FOUND, &format!("User ID {id} not found"));
    };
    let job = change(user, id);
    let answer = user_json(id, user);
    drop(s);
    if let Some(job) = job {
        let _ = inner.jobs.send(job);
    }
    single(answer)
}

async fn create_user(inner: &Inner, body: Value) -> Response {
    let Some(username) = body["username"].as_str().map(str::to_owned) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "missing field `username`");
    };
    if inner.state.lock().expect("lock").users.values().any(|u| u.username == username) {
        return error(StatusCode::CONFLICT, "User already exists");
    }
    if !username_valid(&username) {
        return error(StatusCode::BAD_REQUEST, "Username is not valid");
    }
    // Contract (observed): MAS asks Synapse first, and fails when Synapse is unreachable.
    if !body["skip_homeserver_check"].as_bool().unwrap_or(false) {
        match super::jobs::localpart_available(inner, &username).await {
            Ok(true) => {}
            Ok(false) => return error(StatusCode::CONFLICT, "Username is reserved by the homeserver"),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        }
    }
    let id = ulid();
    let user = User {
        username: username.clone(),
        displayname: body["displayname"].as_str().map(str::to_owned),
        avatar_url: body["avatar_url"].as_str().map(str::to_owned),
        ..User::default()
    };
    let answer = user_json(&id, &user);
    inner.state.lock().expect("lock").users.insert(id, user);
    let _ = inner.jobs.send(Job::Provision(username));
    let mut resp = single(answer);
    *resp.status_mut() = StatusCode::CREATED;
    resp
}

fn add_email(inner: &Inner, body: &Value) -> Response {
    let (Some(user), Some(email)) = (body["user_id"].as_str(), body["email"].as_str()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "missing field `user_id` or `email`");
    };
    if !email.contains('@') {
        return error(StatusCode::BAD_REQUEST, &format!("Email \"{email}\" is not valid"));
    }
    let mut s = inner.state.lock().expect("lock");
    let Some(localpart) = s.users.get(user).map(|u| u.username.clone()) else {
        return error(StatusCode::NOT_FOUND, &format!("User ID {user} not found"));
    };
    if s.emails.values().any(|(_, e)| e == email) {
        return error(StatusCode::CONFLICT, &format!("User email \"{email}\" already in use"));
    }
    let id = ulid();
    s.emails.insert(id.clone(), (user.to_owned(), email.to_owned()));
    drop(s);
    let _ = inner.jobs.send(Job::Provision(localpart));
    let mut resp = single(email_json(&id, user, email));
    *resp.status_mut() = StatusCode::CREATED;
    resp
}

fn create_session(inner: &Inner, body: &Value) -> Response {
    let (Some(actor), Some(name), Some(scope)) =
        (body["actor_user_id"].as_str(), body["human_name"].as_str(), body["scope"].as_str())
    else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "missing field");
    };
    let mut s = inner.state.lock().expect("lock");
    if !s.users.contains_key(actor) {
        return error(StatusCode::NOT_FOUND, "User not found");
    }
    let session = Session {
        actor: actor.to_owned(),
        human_name: name.to_owned(),
        scope: scope.to_owned(),
        token: token("mpt"),
        revoked: false,
        expires_at: expiry(body),
    };
    let id = ulid();
    let answer = session_json(&id, &session, true);
    s.sessions.insert(id, session);
    let mut resp = single(answer);
    *resp.status_mut() = StatusCode::CREATED;
    resp
}
