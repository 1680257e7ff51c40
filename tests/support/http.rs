//! A tiny HTTP server for avatar images: the "eXo" side that serves pictures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Path → (content type, body).
type Table = BTreeMap<String, (String, Vec<u8>)>;

#[derive(Clone, Default)]
pub struct Files(Arc<Mutex<Table>>);

impl Files {
    pub fn set(&self, path: &str, content_type: &str, body: &[u8]) {
        self.0.lock().expect("lock").insert(path.into(), (content_type.into(), body.to_vec()));
    }
}

/// Serves `files` on a free loopback port; returns the base URL.
pub async fn serve(files: Files) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let files = files.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let found = files.0.lock().expect("lock").get(&path).cloned();
                let (status, content_type, body) = match found {
                    Some((t, b)) => ("200 OK", t, b),
                    None => ("404 Not Found", "text/plain".into(), b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
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
