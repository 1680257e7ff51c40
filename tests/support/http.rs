//! A tiny HTTP server for avatar images: the "eXo" side that serves pictures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// Path (with its query, if any) → (content type, body).
type Table = BTreeMap<String, (String, Vec<u8>)>;

#[derive(Clone, Default)]
pub struct Files(Arc<Mutex<Table>>);

impl Files {
    pub fn set(&self, path: &str, content_type: &str, body: &[u8]) {
        self.0.lock().expect("lock").insert(path.into(), (content_type.into(), body.to_vec()));
    }
}

async fn file(State(files): State<Files>, uri: Uri) -> Response {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    match files.0.lock().expect("lock").get(path).cloned() {
        Some((content_type, body)) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// Serves `files` on a free loopback port; returns the base URL.
pub async fn serve(files: Files) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(file).with_state(files);
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// A valid 1×1 PNG; `variant` changes one palette byte so the bytes differ.
pub fn png(variant: u8) -> Vec<u8> {
    let mut p = vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00,
        0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff,
        0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    // A trailing chunk-free byte after IEND keeps the image decodable while changing its hash.
    p.push(variant);
    p
}
