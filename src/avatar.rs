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
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// GET the URL and check that it is an image.
pub async fn fetch(http: &reqwest::Client, url: &str) -> Result<Image, AvatarError> {
    let fetch_err = |source| AvatarError::Fetch { url: url.to_owned(), source };
    let resp = http.get(url).send().await.map_err(fetch_err)?;
    let status = resp.status();
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
    let bytes = resp.bytes().await.map_err(fetch_err)?;
    if bytes.len() > MAX_BYTES {
        return Err(AvatarError::TooLarge { url: url.to_owned() });
    }
    let content_type = sniff(&bytes)
        .map(str::to_owned)
        .or(header_type.clone().filter(|t| t.starts_with("image/")))
        .ok_or_else(|| AvatarError::NotImage {
            url: url.to_owned(),
            content_type: header_type.unwrap_or_else(|| "none".into()),
        })?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Image { bytes: bytes.to_vec(), content_type, sha256 })
}

/// The image type from the file's first bytes; servers often send a wrong header.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0x89, b'P', b'N', b'G', ..] => Some("image/png"),
        [0xff, 0xd8, 0xff, ..] => Some("image/jpeg"),
        [b'G', b'I', b'F', b'8', ..] => Some("image/gif"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some("image/webp"),
        _ => None,
    }
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
        assert_eq!(sniff(b"<html>"), None);
    }

    #[test]
    fn names_the_upload_after_the_url() {
        assert_eq!(file_name("https://exo/rest/v1/avatar/mary.png?v=3"), "mary.png");
        assert_eq!(file_name("https://exo/"), "avatar");
    }
}
