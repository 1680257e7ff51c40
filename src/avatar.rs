//! Fetching avatar images from http(s) URLs, and deciding whether they changed.

use std::time::Duration;

use sha2::{Digest, Sha256};

/// Largest avatar accepted; bigger files are refused rather than uploaded.
const MAX_BYTES: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub bytes: Vec<u8>,
    pub content_type: String,
    /// Hex SHA-256 of the bytes: what `status` remembers to skip re-uploads.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    #[error("cannot download {url}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} is larger than {} MiB", MAX_BYTES / 1024 / 1024)]
    TooLarge { url: String },
    #[error("{url} is not an image (content type {content_type:?})")]
    NotImage { url: String, content_type: String },
}

pub fn http_client() -> reqwest::Client {
    crate::tls::client_builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// What the server said about the last download (`ETag`, `Last-Modified`): sent back so that an
/// unchanged image is not downloaded again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// 304: the image is the one these validators came with.
    NotModified,
    Image(Image, Validators),
}

/// GET the URL (conditionally when `known` is given) and check that it is an image. The body is read
/// chunk by chunk and refused as soon as it passes the limit, whatever `Content-Length` said.
pub async fn fetch(http: &reqwest::Client, url: &str, known: Option<&Validators>) -> Result<Fetched, AvatarError> {
    let fetch_err = |source| AvatarError::Fetch { url: url.to_owned(), source };
    let mut req = http.get(url);
    if let Some(v) = known {
        if let Some(etag) = &v.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = &v.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, date);
        }
    }
    let mut resp = req.send().await.map_err(fetch_err)?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED && known.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(AvatarError::Status { url: url.to_owned(), status: status.as_u16() });
    }
    if resp.content_length().is_some_and(|l| l > MAX_BYTES as u64) {
        return Err(AvatarError::TooLarge { url: url.to_owned() });
    }
    let header_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase());
    let header =
        |name| resp.headers().get(name).and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok()).map(str::to_owned);
    let validators =
        Validators { etag: header(reqwest::header::ETAG), last_modified: header(reqwest::header::LAST_MODIFIED) };
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(fetch_err)? {
        if bytes.len() + chunk.len() > MAX_BYTES {
            return Err(AvatarError::TooLarge { url: url.to_owned() });
        }
        bytes.extend_from_slice(&chunk);
    }
    let content_type = sniff(&bytes)
        .map(str::to_owned)
        .or(header_type.clone().filter(|t| t.starts_with("image/")))
        .ok_or_else(|| AvatarError::NotImage {
            url: url.to_owned(),
            content_type: header_type.unwrap_or_else(|| "none".into()),
        })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Fetched::Image(Image { bytes, content_type, sha256 }, validators))
}

/// The image type from the file's first bytes; servers often send a wrong header.
/// Only the types Matrix clients show as avatars.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let mime = infer::get(bytes)?.mime_type();
    matches!(mime, "image/png" | "image/jpeg" | "image/gif" | "image/webp").then_some(mime)
}

/// A file name for the media repository, from the URL's last path segment.
pub fn file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or("");
    if last.is_empty() { "avatar".into() } else { last.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_images_by_their_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\x1a\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"GIF89a\x01\0"), Some("image/gif"));
        assert_eq!(sniff(b"<html>"), None);
        // An image, but not one clients show as an avatar.
        assert_eq!(sniff(b"II*\0\x08\0\0\0"), None);
    }

    #[test]
    fn names_the_upload_after_the_url() {
        assert_eq!(file_name("https://exo/rest/v1/avatar/mary.png?v=3"), "mary.png");
        assert_eq!(file_name("https://exo/"), "avatar");
    }
}
