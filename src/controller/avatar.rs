//! Avatars for accounts and rooms: downloaded, and uploaded only when the bytes change.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Context, Error};
use crate::avatar::{self, Fetched, Validators};
use crate::crd::AvatarStatus;
use crate::error_chain::chain;
use crate::plan::AvatarWish;
use crate::session::Session;
use crate::synapse::RetryKind;

pub struct Resolved {
    pub wish: AvatarWish,
    /// What to remember in status.
    pub status: Option<AvatarStatus>,
    /// Why the avatar could not be used; the object is still reconciled.
    pub problem: Option<String>,
    /// Set when new bytes were uploaded, to the URL they came from.
    pub uploaded_from: Option<String>,
}

/// Per URL, the validators of the last download and the SHA-256 of its bytes (in memory: after a restart
/// each avatar is downloaded once more).
#[derive(Default)]
pub struct AvatarCache(Mutex<BTreeMap<String, (Validators, String)>>);

impl AvatarCache {
    /// Validators worth sending: only those of the very bytes `sha256` names.
    fn known(&self, url: &str, sha256: &str) -> Option<Validators> {
        let cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(url).filter(|(_, sha)| sha == sha256).map(|(v, _)| v.clone())
    }

    fn remember(&self, url: &str, validators: Validators, sha256: &str) {
        if validators == Validators::default() {
            return;
        }
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(url.to_owned(), (validators, sha256.to_owned()));
    }
}

pub async fn resolve(
    ctx: &Context,
    session: &Session,
    url: Option<&str>,
    previous: Option<AvatarStatus>,
) -> Result<Resolved, Error> {
    let Some(url) = url else {
        let wish = if previous.is_some() { AvatarWish::Clear } else { AvatarWish::Leave };
        return Ok(Resolved { wish, status: None, problem: None, uploaded_from: None });
    };
    let known = previous.as_ref().filter(|p| p.source_url == url).and_then(|p| ctx.avatars.known(url, &p.sha256));
    let image = match avatar::fetch(&ctx.http, url, known.as_ref()).await {
        Ok(Fetched::NotModified) => {
            // Same bytes as last time (`known` exists only alongside `previous`).
            let wish = previous.as_ref().map_or(AvatarWish::Leave, |p| AvatarWish::Set(p.content_uri.clone()));
            return Ok(Resolved { wish, status: previous, problem: None, uploaded_from: None });
        }
        Ok(Fetched::Image(image, validators)) => {
            ctx.avatars.remember(url, validators, &image.sha256);
            image
        }
        Err(e) => {
            let wish = previous.as_ref().map_or(AvatarWish::Leave, |p| AvatarWish::Set(p.content_uri.clone()));
            return Ok(Resolved { wish, status: previous, problem: Some(chain(&e)), uploaded_from: None });
        }
    };
    if let Some(p) = previous.as_ref().filter(|p| p.sha256 == image.sha256) {
        let wish = AvatarWish::Set(p.content_uri.clone());
        let status = AvatarStatus { source_url: url.to_owned(), ..p.clone() };
        return Ok(Resolved { wish, status: Some(status), problem: None, uploaded_from: None });
    }
    let uploaded = session.admin.upload_media(&avatar::file_name(url), &image.content_type, image.bytes).await;
    let content_uri = match uploaded {
        Ok(uri) => uri,
        // Synapse refusing these bytes (too large for its media repo, a type it
        // bans) is a problem of the picture, like a failed download: keep the
        // previous avatar and go on. A refused token or an outage is retried.
        Err(e) if e.retry_kind() == RetryKind::Permanent && e.status() != Some(401) => {
            let wish = previous.as_ref().map_or(AvatarWish::Leave, |p| AvatarWish::Set(p.content_uri.clone()));
            let problem = format!("Synapse refused the avatar from {url}: {}", chain(&e));
            return Ok(Resolved { wish, status: previous, problem: Some(problem), uploaded_from: None });
        }
        Err(e) => return Err(Error::synapse("uploading the avatar")(e)),
    };
    let status = AvatarStatus { source_url: url.to_owned(), sha256: image.sha256, content_uri: content_uri.clone() };
    Ok(Resolved {
        wish: AvatarWish::Set(content_uri),
        status: Some(status),
        problem: None,
        uploaded_from: Some(url.to_owned()),
    })
}
