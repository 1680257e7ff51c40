//! The HTTP core of the Synapse adapter: one place that sends requests,
//! decodes Matrix errors, honours `M_LIMIT_EXCEEDED`, and counts calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use crate::secret::SecretString;

/// How often a rate-limited call is retried before the error goes up.
const MAX_RATE_LIMIT_RETRIES: u32 = 5;
/// Longest wait we accept from `retry_after_ms` inside one call.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(30);

/// Requests sent to Synapse by this process (retries included).
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Requests sent to Synapse by this process so far.
pub fn total_calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// A client for one homeserver, optionally authenticated. Cheap to clone.
#[derive(Clone)]
pub struct Synapse {
    http: reqwest::Client,
    base: Url,
    token: Option<SecretString>,
}

#[derive(serde::Deserialize)]
struct MatrixError {
    #[serde(default)]
    errcode: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

impl Synapse {
    pub fn new(base_url: &str) -> Result<Self, Error> {
        let base = Url::parse(base_url.trim_end_matches('/')).map_err(|_| Error::InvalidUrl(base_url.to_owned()))?;
        let http = crate::tls::client_builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(Error::Url)?;
        Ok(Self { http, base, token: None })
    }

    /// The same client acting with `token` (the admin token, or a user's).
    pub fn with_token(&self, token: SecretString) -> Self {
        Self { token: Some(token), ..self.clone() }
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub(super) async fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, Error> {
        self.send::<(), R>(Method::GET, path, None).await
    }

    pub(super) async fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<R, Error> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub(super) async fn put<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<R, Error> {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// A PUT whose answer's status matters too (201 Created or 200 OK).
    pub(super) async fn put_with_status<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(R, u16), Error> {
        self.execute_with_status(Method::PUT, path, |req| req.json(body)).await
    }

    pub(super) async fn delete<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> Result<R, Error> {
        self.send(Method::DELETE, path, Some(body)).await
    }

    /// Sends raw bytes (media upload).
    pub(super) async fn post_bytes<R: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<R, Error> {
        self.execute(Method::POST, path, |req| {
            req.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes.clone())
        })
        .await
    }

    async fn send<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, Error> {
        self.execute(method, path, |req| match body {
            Some(b) => req.json(b),
            None => req,
        })
        .await
    }

    async fn execute<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<R, Error> {
        self.execute_with_status(method, path, build).await.map(|(r, _)| r)
    }

    async fn execute_with_status<R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<(R, u16), Error> {
        let url = self.base.join(path).map_err(|_| Error::InvalidUrl(path.to_owned()))?;
        let method_name = method_str(&method);
        // The span names the path without its query: a query may carry a filename.
        let span_path = path.split('?').next().unwrap_or(path).to_owned();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = build(self.http.request(method.clone(), url.clone()));
            if let Some(token) = &self.token {
                req = req.bearer_auth(token.expose());
            }
            // Writes only while this replica holds the lease; checked right before sending (see leader::fence).
            if method != Method::GET {
                crate::leader::fence::check().map_err(|source| Error::NotLeader {
                    method: method_name,
                    path: span_path.clone(),
                    source,
                })?;
                tracing::debug!(method = method_name, path = %span_path, "synapse write");
            }
            let started = Instant::now();
            CALLS.fetch_add(1, Ordering::Relaxed);
            let resp = req.send().await.map_err(|source| Error::Network {
                method: method_name,
                path: span_path.clone(),
                source,
            })?;
            let status = resp.status();
            // MSC4041: `Retry-After` (seconds) says the same as `retry_after_ms`, which may be dropped one day.
            let retry_header = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = resp.bytes().await.map_err(|source| Error::Network {
                method: method_name,
                path: span_path.clone(),
                source,
            })?;
            crate::metrics::global().synapse_call(method_name, &span_path, status.as_u16(), started.elapsed());
            tracing::debug!(
                method = method_name,
                path = %span_path,
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "synapse call"
            );
            if status.is_success() {
                // Some endpoints answer with an empty body; `{}` stands in for it.
                let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
                let decoded = serde_json::from_slice(bytes).map_err(|source| Error::Decode {
                    method: method_name,
                    path: span_path,
                    source,
                })?;
                return Ok((decoded, status.as_u16()));
            }
            let err: MatrixError = serde_json::from_slice(&bytes).unwrap_or(MatrixError {
                errcode: String::new(),
                error: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                retry_after_ms: None,
            });
            let retry_after = err.retry_after_ms.map(Duration::from_millis).or(retry_header);
            let wait = retry_after.unwrap_or(Duration::from_secs(1));
            // A longer wait than we hold a call for goes up as an error carrying it: the object is
            // retried after it (error_policy), never sooner than Synapse asked.
            if err.errcode == "M_LIMIT_EXCEEDED" && attempt <= MAX_RATE_LIMIT_RETRIES && wait <= MAX_RATE_LIMIT_WAIT {
                tracing::info!(method = method_name, path = %span_path, wait_ms = wait.as_millis() as u64, "rate limited by Synapse, waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(Error::Api {
                method: method_name,
                path: span_path,
                status: status.as_u16(),
                errcode: err.errcode,
                message: err.error,
                retry_after,
            });
        }
    }
}

fn method_str(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// Everything but RFC 3986's unreserved characters: `#`, `!`, `:` and `/` in ids never reach a path raw,
/// and Synapse accepts any segment encoded this way.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes one path segment (a user id, room id or alias).
pub fn enc(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_ids_for_paths() {
        assert_eq!(enc("#support_team:exo.test"), "%23support_team%3Aexo.test");
        assert_eq!(enc("@a.b-c:x"), "%40a.b-c%3Ax");
        assert_eq!(enc("!abc/def"), "%21abc%2Fdef");
        assert_eq!(enc("@é ?x"), "%40%C3%A9%20%3Fx");
    }
}
