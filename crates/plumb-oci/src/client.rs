//! A client for any OCI distribution registry.
//!
//! [`RegistryClient`] speaks the distribution spec over reqwest: it answers
//! Basic and Bearer-token challenges, pushes blobs monolithically (streaming
//! files from disk), pushes and fetches manifests, and lists referrers. It
//! verifies every digest it is handed back. Loopback registries are reached
//! over plain HTTP unless told otherwise; everything else over HTTPS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION, WWW_AUTHENTICATE,
};

use crate::digest::Digest;
use crate::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::reference::RepositoryName;

pub use crate::credentials::Credentials;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Force plain HTTP (true) or HTTPS (false); `None` picks HTTP for loopback hosts only.
    pub plain_http: Option<bool>,
    /// Credentials, tried when a registry asks for them.
    pub credentials: Option<Credentials>,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Transport-level failure.
    #[error("cannot reach the registry: {0}")]
    Http(#[from] reqwest::Error),
    /// The registry refused.
    #[error("{method} {url} returned {status}: {body}")]
    Status {
        /// HTTP method.
        method: String,
        /// Request URL (credentials are never part of it).
        url: String,
        /// Status code.
        status: u16,
        /// Response body (the OCI error JSON, trimmed).
        body: String,
    },
    /// The registry asked for credentials and none were accepted.
    #[error(
        "the registry {registry} requires credentials (set PLUMB_REGISTRY_USERNAME and PLUMB_REGISTRY_PASSWORD, or log in with docker/crane/oras)"
    )]
    Unauthorized {
        /// Registry host.
        registry: String,
    },
    /// Content came back with a different digest than asked for.
    #[error("content from the registry has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// Asked for.
        expected: Digest,
        /// Received.
        actual: Digest,
    },
    /// A response the spec does not allow.
    #[error("unexpected response from the registry: {0}")]
    Protocol(String),
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A manifest as fetched.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Raw bytes.
    pub bytes: Bytes,
    /// Its media type.
    pub media_type: String,
    /// Its digest (verified when requested by digest).
    pub digest: Digest,
}

/// A registry client. Cheap to clone.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    options: ClientOptions,
    auth: Arc<Mutex<HashMap<String, HeaderValue>>>,
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether `registry` is on this machine (spoken to over plain HTTP unless told otherwise).
pub fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(registry);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// Install ring as rustls's process-wide crypto provider (idempotent).
///
/// The provider is the process's choice, so library code never calls this:
/// the `plumb` binary installs it once in `main`, and tests and benches that
/// make clients or TLS servers call it for themselves.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn challenge_param(header: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let start = header.find(&needle)? + needle.len();
    let end = header[start..].find('"')?;
    Some(header[start..start + end].to_owned())
}

/// The digest of `bytes` fetched as `expected`, or the mismatch.
fn fetched_digest(expected: &Digest, bytes: &[u8]) -> Result<Digest, ClientError> {
    let actual = Digest::of(expected.algorithm(), bytes);
    if &actual != expected {
        return Err(ClientError::DigestMismatch {
            expected: expected.clone(),
            actual,
        });
    }
    Ok(actual)
}

impl RegistryClient {
    /// A client with `options`. The process's rustls crypto provider must be
    /// installed first (see [`install_crypto_provider`]).
    pub fn new(options: ClientOptions) -> Result<Self, ClientError> {
        let mut builder =
            reqwest::Client::builder().user_agent(concat!("plumb/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &options.ca_file {
            let pem = std::fs::read(ca).map_err(|source| ClientError::File {
                path: ca.clone(),
                source,
            })?;
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        } else if options.plain_http == Some(true) {
            // A client that never speaks TLS need not load the platform's
            // root certificates (milliseconds per client).
            builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
        }
        Ok(RegistryClient {
            http: builder.build()?,
            options,
            auth: Arc::default(),
        })
    }

    /// `scheme://registry`.
    pub fn base_url(&self, registry: &str) -> String {
        let plain = self
            .options
            .plain_http
            .unwrap_or_else(|| is_loopback(registry));
        format!("{}://{registry}", if plain { "http" } else { "https" })
    }

    fn manifest_url(&self, registry: &str, repo: &RepositoryName, key: &str) -> String {
        format!("{}/v2/{repo}/manifests/{key}", self.base_url(registry))
    }

    fn blob_url(&self, registry: &str, repo: &RepositoryName, digest: &Digest) -> String {
        format!("{}/v2/{repo}/blobs/{digest}", self.base_url(registry))
    }

    fn auth_key(registry: &str, repo: &RepositoryName) -> String {
        format!("{registry}/{repo}")
    }

    fn cached_auth(&self, key: &str) -> Option<HeaderValue> {
        self.auth.lock().ok().and_then(|m| m.get(key).cloned())
    }

    async fn answer_challenge(
        &self,
        registry: &str,
        repo: &RepositoryName,
        challenge: &str,
    ) -> Result<HeaderValue, ClientError> {
        let unauthorized = || ClientError::Unauthorized {
            registry: registry.to_owned(),
        };
        let basic = self.options.credentials.as_ref().map(|c| {
            let token = B64.encode(format!("{}:{}", c.username, c.password));
            format!("Basic {token}")
        });
        let value = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let realm = challenge_param(challenge, "realm")
                .ok_or_else(|| ClientError::Protocol("Bearer challenge without realm".into()))?;
            let mut req = self
                .http
                .get(&realm)
                .query(&[("scope", format!("repository:{repo}:pull,push"))]);
            // A challenge that names a scope outside the repository (a
            // registry's own endpoint, say) is asked for as well.
            if let Some(scope) = challenge_param(challenge, "scope")
                && !scope.starts_with(&format!("repository:{repo}:"))
            {
                req = req.query(&[("scope", scope)]);
            }
            if let Some(service) = challenge_param(challenge, "service") {
                req = req.query(&[("service", service)]);
            }
            if let Some(b) = &basic {
                req = req.header(AUTHORIZATION, b);
            }
            let resp = req.send().await?;
            if !resp.status().is_success() {
                return Err(unauthorized());
            }
            let v: serde_json::Value = resp.json().await?;
            let token = v["token"]
                .as_str()
                .or_else(|| v["access_token"].as_str())
                .ok_or_else(|| ClientError::Protocol("token response without token".into()))?;
            format!("Bearer {token}")
        } else {
            basic.ok_or_else(unauthorized)?
        };
        let mut hv =
            HeaderValue::from_str(&value).map_err(|e| ClientError::Protocol(e.to_string()))?;
        hv.set_sensitive(true);
        if let Ok(mut m) = self.auth.lock() {
            m.insert(Self::auth_key(registry, repo), hv.clone());
        }
        Ok(hv)
    }

    /// Send a request built by `build`, answering one auth challenge.
    async fn send<F>(
        &self,
        registry: &str,
        repo: &RepositoryName,
        build: F,
    ) -> Result<reqwest::Response, ClientError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let key = Self::auth_key(registry, repo);
        let mut req = build(&self.http);
        if let Some(h) = self.cached_auth(&key) {
            req = req.header(AUTHORIZATION, h);
        }
        let resp = req.send().await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = header(&resp, WWW_AUTHENTICATE)
            .unwrap_or("Basic")
            .to_owned();
        let h = self.answer_challenge(registry, repo, &challenge).await?;
        let resp = build(&self.http).header(AUTHORIZATION, h).send().await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized {
                registry: registry.to_owned(),
            });
        }
        Ok(resp)
    }

    async fn fail(method: &str, resp: reqwest::Response) -> ClientError {
        let status = resp.status().as_u16();
        let url = resp.url().to_string();
        let mut body = resp.text().await.unwrap_or_default();
        // An OCI error body reads better as "CODE: message".
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
            && let Some(errors) = v["errors"].as_array()
        {
            let parts: Vec<String> = errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["code"].as_str().unwrap_or("UNKNOWN"),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect();
            if !parts.is_empty() {
                body = parts.join("; ");
            }
        }
        body.truncate(2000);
        ClientError::Status {
            method: method.to_owned(),
            url,
            status,
            body,
        }
    }

    /// Resolve `key` (tag or digest) to the manifest's digest, media type and
    /// size, or `None` when the registry has no such manifest.
    pub async fn manifest_head(
        &self,
        registry: &str,
        repo: &RepositoryName,
        key: &str,
    ) -> Result<Option<(Digest, String, u64)>, ClientError> {
        let url = self.manifest_url(registry, repo, key);
        let resp = self
            .send(registry, repo, |c| {
                c.head(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::fail("HEAD", resp).await);
        }
        let media = header(&resp, CONTENT_TYPE)
            .unwrap_or(OCI_MANIFEST)
            .to_owned();
        let size = header(&resp, reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        match header(&resp, "docker-content-digest").and_then(|v| v.parse::<Digest>().ok()) {
            Some(d) => Ok(Some((d, media, size))),
            // Registries may omit the header; fetch and hash instead.
            None => Ok(self
                .manifest_get(registry, repo, key)
                .await
                .map(|m| Some((m.digest, m.media_type, m.bytes.len() as u64)))?),
        }
    }

    /// Fetch a manifest by tag or digest.
    pub async fn manifest_get(
        &self,
        registry: &str,
        repo: &RepositoryName,
        key: &str,
    ) -> Result<FetchedManifest, ClientError> {
        let url = self.manifest_url(registry, repo, key);
        let resp = self
            .send(registry, repo, |c| {
                c.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Self::fail("GET", resp).await);
        }
        let media_type = header(&resp, CONTENT_TYPE)
            .unwrap_or(OCI_MANIFEST)
            .to_owned();
        let bytes = resp.bytes().await?;
        let digest = match key.parse::<Digest>() {
            Ok(expected) => fetched_digest(&expected, &bytes)?,
            Err(_) => Digest::sha256_of(&bytes),
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Push a manifest under `key` (a tag or its digest); returns its digest.
    pub async fn manifest_put(
        &self,
        registry: &str,
        repo: &RepositoryName,
        key: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, ClientError> {
        let url = self.manifest_url(registry, repo, key);
        let resp = self
            .send(registry, repo, |c| {
                c.put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        Self::created(resp).await?;
        Ok(Digest::sha256_of(&bytes))
    }

    /// POST to a registry's own extension endpoint (outside `/v2/`, e.g.
    /// plumb's `/plumb/v1/gc`) and return its JSON answer.
    pub async fn post_extension(
        &self,
        registry: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}{path}", self.base_url(registry));
        // Credentials are cached per repository; extensions share one slot.
        let slot = RepositoryName::parse("plumb-extension")
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self
            .send(registry, &slot, |c| c.post(&url).query(query))
            .await?;
        if !resp.status().is_success() {
            return Err(Self::fail("POST", resp).await);
        }
        Ok(resp.json().await?)
    }

    /// Whether the repository has the blob.
    pub async fn blob_exists(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool, ClientError> {
        let url = self.blob_url(registry, repo, digest);
        let resp = self.send(registry, repo, |c| c.head(&url)).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(Self::fail("HEAD", resp).await),
        }
    }

    async fn start_upload(
        &self,
        registry: &str,
        repo: &RepositoryName,
    ) -> Result<String, ClientError> {
        let base = self.base_url(registry);
        let url = format!("{base}/v2/{repo}/blobs/uploads/");
        let resp = self.send(registry, repo, |c| c.post(&url)).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(Self::fail("POST", resp).await);
        }
        let loc = header(&resp, LOCATION)
            .ok_or_else(|| ClientError::Protocol("upload started without Location".into()))?;
        Ok(if loc.starts_with('/') {
            format!("{base}{loc}")
        } else {
            loc.to_owned()
        })
    }

    fn with_digest(location: &str, digest: &Digest) -> String {
        let sep = if location.contains('?') { '&' } else { '?' };
        format!("{location}{sep}digest={digest}")
    }

    /// Where to PUT the bytes of blob `digest`: a new upload session's
    /// location, with the digest; `None` when the repository has the blob.
    async fn upload_target(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<String>, ClientError> {
        if self.blob_exists(registry, repo, digest).await? {
            return Ok(None);
        }
        let location = self.start_upload(registry, repo).await?;
        Ok(Some(Self::with_digest(&location, digest)))
    }

    /// The answer to a PUT of a manifest or of an upload's bytes: `201 Created`, or an error.
    async fn created(resp: reqwest::Response) -> Result<(), ClientError> {
        if resp.status() != StatusCode::CREATED {
            return Err(Self::fail("PUT", resp).await);
        }
        Ok(())
    }

    /// Upload `bytes` as blob `digest` unless the repository has it.
    pub async fn blob_put(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<(), ClientError> {
        let Some(loc) = self.upload_target(registry, repo, digest).await? else {
            return Ok(());
        };
        let resp = self
            .send(registry, repo, |c| {
                c.put(&loc)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(bytes.clone())
            })
            .await?;
        Self::created(resp).await
    }

    /// Upload `bytes` as a sha256 blob unless the repository has it; returns its digest.
    pub async fn blob_push(
        &self,
        registry: &str,
        repo: &RepositoryName,
        bytes: Bytes,
    ) -> Result<Digest, ClientError> {
        let digest = Digest::sha256_of(&bytes);
        self.blob_put(registry, repo, &digest, bytes).await?;
        Ok(digest)
    }

    /// Upload the file at `path` as blob `digest`, streaming it; `on_bytes`
    /// hears how many bytes each sent chunk carried (for progress bars).
    pub async fn blob_put_file(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
        path: &Path,
        on_bytes: Option<ByteCounter>,
    ) -> Result<(), ClientError> {
        let Some(loc) = self.upload_target(registry, repo, digest).await? else {
            return Ok(());
        };
        let file_err = |source| ClientError::File {
            path: path.to_owned(),
            source,
        };
        let size = tokio::fs::metadata(path).await.map_err(file_err)?.len();
        let file = tokio::fs::File::open(path).await.map_err(file_err)?;
        let mut req = self
            .http
            .put(&loc)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(tokio_util_stream(
                file, on_bytes,
            )));
        // The POST above resolved any challenge; reuse its answer.
        if let Some(h) = self.cached_auth(&Self::auth_key(registry, repo)) {
            req = req.header(AUTHORIZATION, h);
        }
        Self::created(req.send().await?).await
    }

    /// Fetch a blob and check its digest.
    pub async fn blob_get(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Bytes, ClientError> {
        let url = self.blob_url(registry, repo, digest);
        let resp = self.send(registry, repo, |c| c.get(&url)).await?;
        if !resp.status().is_success() {
            return Err(Self::fail("GET", resp).await);
        }
        let bytes = resp.bytes().await?;
        fetched_digest(digest, &bytes)?;
        Ok(bytes)
    }

    /// The size of blob `digest` in the repository, as a HEAD reports it;
    /// `None` when the repository does not hold it.
    pub async fn blob_size(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, ClientError> {
        let url = self.blob_url(registry, repo, digest);
        let resp = self.send(registry, repo, |c| c.head(&url)).await?;
        match resp.status() {
            // A HEAD has no body, so the header, not the body's length, says it.
            s if s.is_success() => Ok(Some(
                header(&resp, reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(Self::fail("HEAD", resp).await),
        }
    }

    /// Start fetching blob `digest`: its length when the registry declares
    /// it, and its bytes as they arrive. The bytes are not verified here: a
    /// caller that streams them on hashes them as they pass. `None` when the
    /// repository does not hold the blob.
    pub async fn blob_stream(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobStream>, ClientError> {
        use futures_util::StreamExt as _;
        let url = self.blob_url(registry, repo, digest);
        let resp = self.send(registry, repo, |c| c.get(&url)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Self::fail("GET", resp).await);
        }
        Ok(Some(BlobStream {
            len: header(&resp, reqwest::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            bytes: Box::pin(resp.bytes_stream().map(|r| r.map_err(ClientError::Http))),
        }))
    }

    /// The referrers of `digest`, optionally filtered by artifact type, as the
    /// registry's image index `manifests` array.
    pub async fn referrers(
        &self,
        registry: &str,
        repo: &RepositoryName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        let url = format!("{}/v2/{repo}/referrers/{digest}", self.base_url(registry));
        let resp = self
            .send(registry, repo, |c| {
                let r = c.get(&url).header(ACCEPT, OCI_INDEX);
                match artifact_type {
                    Some(t) => r.query(&[("artifactType", t)]),
                    None => r,
                }
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(vec![]);
        }
        if !resp.status().is_success() {
            return Err(Self::fail("GET", resp).await);
        }
        let v: serde_json::Value = resp.json().await?;
        let mut list = v["manifests"].as_array().cloned().unwrap_or_default();
        // A registry that ignores the filter still gets filtered here.
        if let Some(t) = artifact_type {
            list.retain(|d| d["artifactType"].as_str() == Some(t));
        }
        Ok(list)
    }
}

/// A blob on its way from a registry (see [`RegistryClient::blob_stream`]).
pub struct BlobStream {
    /// Its length, when the registry declared one.
    pub len: Option<u64>,
    /// Its bytes, unverified, as they arrive.
    pub bytes: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<Bytes, ClientError>> + Send + 'static>,
    >,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStream")
            .field("len", &self.len)
            .finish()
    }
}

/// A response header's value, when it is text.
fn header(resp: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether `media_type` is one a manifest endpoint serves.
pub fn is_manifest_media_type(media_type: &str) -> bool {
    [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ]
    .contains(&media_type)
}

/// A callback told how many bytes went out.
pub type ByteCounter = Arc<dyn Fn(u64) + Send + Sync>;

fn tokio_util_stream(
    file: tokio::fs::File,
    on_bytes: Option<ByteCounter>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt as _;
    futures_util::stream::unfold(Some(file), move |state| {
        let on_bytes = on_bytes.clone();
        async move {
            let mut file = state?;
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    if let Some(f) = &on_bytes {
                        f(n as u64);
                    }
                    Some((Ok(Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge() {
        let h = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#;
        assert_eq!(
            challenge_param(h, "realm").as_deref(),
            Some("https://auth.example/token")
        );
        assert_eq!(
            challenge_param(h, "service").as_deref(),
            Some("registry.example")
        );
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:1"));
        assert!(!is_loopback("registry.example:443"));
    }
}
