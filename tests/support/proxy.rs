//! A small HTTP stub in front of the real Synapse: every request is passed on
//! unchanged, except media uploads, which it refuses the way a Synapse with a
//! smaller `max_upload_size` does (a failure the test Synapse cannot produce
//! for a 70-byte picture).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts the stub on a free loopback port; returns its base URL.
pub async fn refusing_uploads(synapse_url: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let upstream = synapse_url.trim_end_matches('/').to_owned();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let _ = handle(sock, &upstream).await;
            });
        }
    });
    base
}

async fn handle(mut sock: TcpStream, upstream: &str) -> std::io::Result<()> {
    // Read the head, then as much body as Content-Length says (the operator never sends chunked bodies).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_owned();
    let path = parts.next().unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    let mut length = 0usize;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().unwrap_or(0);
            }
            if !["host", "connection", "content-length"].iter().any(|h| k.eq_ignore_ascii_case(h)) {
                headers.push((k, v));
            }
        }
    }
    while buf.len() < head_end + length {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..].to_vec();

    let (status, content_type, answer) = if path.starts_with("/_matrix/media/v3/upload") {
        (
            413,
            "application/json".to_owned(),
            br#"{"errcode":"M_TOO_LARGE","error":"Uploaded file is too large"}"#.to_vec(),
        )
    } else {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = reqwest::Client::new().request(method, format!("{upstream}{path}")).body(body);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let ct = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/json")
                    .to_owned();
                (status, ct, resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
            }
            Err(_) => (502, "text/plain".to_owned(), b"bad gateway".to_vec()),
        }
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&answer).await?;
    sock.shutdown().await
}
