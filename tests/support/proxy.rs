//! A small HTTP stub in front of the real Synapse: every request is passed on
//! unchanged, except media uploads, which it refuses the way a Synapse with a
//! smaller `max_upload_size` does (a failure the test Synapse cannot produce
//! for a 70-byte picture).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// Starts the stub on a free loopback port; returns its base URL.
pub async fn refusing_uploads(synapse_url: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let upstream = synapse_url.trim_end_matches('/').to_owned();
    let app = axum::Router::new().fallback(handle).with_state(upstream);
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn handle(State(upstream): State<String>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.path().starts_with("/_matrix/media/v3/upload") {
        let refusal = r#"{"errcode":"M_TOO_LARGE","error":"Uploaded file is too large"}"#;
        return (StatusCode::PAYLOAD_TOO_LARGE, [(header::CONTENT_TYPE, "application/json")], refusal).into_response();
    }
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let mut forwarded = headers;
    for hop in [header::HOST, header::CONNECTION, header::CONTENT_LENGTH, header::TRANSFER_ENCODING] {
        forwarded.remove(hop);
    }
    let sent =
        reqwest::Client::new().request(method, format!("{upstream}{target}")).headers(forwarded).body(body).send();
    match sent.await {
        Ok(resp) => {
            let status = resp.status();
            let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
            let answer = resp.bytes().await.unwrap_or_default();
            let mut reply = (status, answer).into_response();
            if let Some(ct) = content_type {
                reply.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            reply
        }
        Err(_) => (StatusCode::BAD_GATEWAY, "bad gateway").into_response(),
    }
}
