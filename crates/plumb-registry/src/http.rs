//! The distribution API over HTTP (axum).
//!
//! Repository names contain slashes, so routes are not expressed as axum
//! path patterns: [`dispatch`] splits `/v2/<name>/<endpoint>` itself, from the
//! right, validates the name and hands off to one handler per endpoint. Every
//! request is authorised before anything is read from its body.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plumb_oci::{Digest, RepositoryName, Tag};

use crate::auth::Need;
use crate::error::RegistryError;
use crate::proxy::ProxiedBlob;
use crate::service::{ManifestRef, Registry};

type Result<T> = std::result::Result<T, RegistryError>;

/// Path of plumb's GC endpoint (an extension outside `/v2/`).
pub const GC_PATH: &str = "/plumb/v1/gc";

/// Path of the Prometheus metrics (outside `/v2/`; readable by anyone who
/// may pull).
pub const METRICS_PATH: &str = "/metrics";

/// The axum application serving `registry`.
pub fn router(registry: Arc<Registry>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(registry)
}

enum Endpoint<'a> {
    Base,
    /// The token endpoint of the Bearer token flow (`GET|POST /token`).
    Token,
    /// plumb's own extension: run GC now (`POST /plumb/v1/gc[?dry_run=true]`).
    Gc,
    /// Prometheus metrics (`GET /metrics`).
    Metrics,
    /// plumb's own extension: the newest scan report of an image
    /// (`GET /plumb/v1/scan/{repo}/{digest}`).
    ScanReport(RepositoryName, &'a str),
    /// plumb's own extension: scan again every image without a report from
    /// the database in force (`POST /plumb/v1/scan`).
    Rescan,
    Catalog,
    Tags(RepositoryName),
    Manifest(RepositoryName, &'a str),
    Blob(RepositoryName, &'a str),
    Uploads(RepositoryName),
    Upload(RepositoryName, &'a str),
    Referrers(RepositoryName, &'a str),
}

fn name(s: &str) -> Result<RepositoryName> {
    RepositoryName::parse(s).map_err(|e| RegistryError::NameInvalid(e.to_string()))
}

impl Endpoint<'_> {
    /// The endpoint kind, as the request metrics label it.
    fn kind(&self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Token => "token",
            Endpoint::Gc => "gc",
            Endpoint::Metrics => "metrics",
            Endpoint::ScanReport(..) | Endpoint::Rescan => "scan",
            Endpoint::Catalog => "catalog",
            Endpoint::Tags(_) => "tags",
            Endpoint::Manifest(..) => "manifest",
            Endpoint::Blob(..) => "blob",
            Endpoint::Uploads(_) => "uploads",
            Endpoint::Upload(..) => "upload",
            Endpoint::Referrers(..) => "referrers",
        }
    }
}

fn route(path: &str) -> Result<Endpoint<'_>> {
    if path == GC_PATH {
        return Ok(Endpoint::Gc);
    }
    if path == METRICS_PATH {
        return Ok(Endpoint::Metrics);
    }
    if path == crate::scan::SCAN_PATH.trim_end_matches('/') {
        return Ok(Endpoint::Rescan);
    }
    if let Some(rest) = path.strip_prefix(crate::scan::SCAN_PATH) {
        let (n, d) = rest.rsplit_once('/').ok_or(RegistryError::NotFound)?;
        return Ok(Endpoint::ScanReport(name(n)?, d));
    }
    if path == crate::token::TOKEN_PATH {
        return Ok(Endpoint::Token);
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return Err(RegistryError::NotFound);
    };
    if rest.is_empty() || rest == "/" {
        return Ok(Endpoint::Base);
    }
    let rest = rest.strip_prefix('/').ok_or(RegistryError::NotFound)?;
    if rest == "_catalog" {
        return Ok(Endpoint::Catalog);
    }
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Endpoint::Tags(name(n)?));
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Endpoint::Uploads(name(n)?));
    }
    if let Some((n, id)) = rest.rsplit_once("/blobs/uploads/") {
        return Ok(Endpoint::Upload(name(n)?, id));
    }
    if let Some((n, r)) = rest.rsplit_once("/manifests/") {
        return Ok(Endpoint::Manifest(name(n)?, r));
    }
    if let Some((n, d)) = rest.rsplit_once("/blobs/") {
        return Ok(Endpoint::Blob(name(n)?, d));
    }
    if let Some((n, d)) = rest.rsplit_once("/referrers/") {
        return Ok(Endpoint::Referrers(name(n)?, d));
    }
    Err(RegistryError::NotFound)
}

fn query_params(uri: &axum::http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((percent_decode(k)?, percent_decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e: plumb_oci::DigestError| RegistryError::DigestInvalid(e.to_string()))
}

/// Parse `Content-Range: <start>-<end>` (optionally prefixed `bytes `/`bytes=`).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("");
    let s = s
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' ']);
    let s = s.split('/').next().unwrap_or(s);
    let parsed = s
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    match parsed {
        Some(r) => Ok(Some(r)),
        None => Err(RegistryError::RangeInvalid {
            got: 0,
            expected: 0,
        }),
    }
}

fn json_response(v: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn upload_response(status: StatusCode, repo: &RepositoryName, id: &str, size: u64) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        hv(&format!("/v2/{repo}/blobs/uploads/{id}")),
    );
    h.insert(header::RANGE, hv(&format!("0-{}", size.saturating_sub(1))));
    h.insert("docker-upload-uuid", hv(id));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn blob_created(repo: &RepositoryName, d: &Digest) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{repo}/blobs/{d}")));
    h.insert("docker-content-digest", hv(&d.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// `response` with the headers a blob's HEAD and GET both carry: the length
/// of what is sent, its type and the blob's digest.
#[inline]
fn blob_response(response: impl IntoResponse, len: u64, d: &Digest) -> Response {
    let mut r = response.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("docker-content-digest", hv(&d.to_string()));
    r
}

/// Read a whole body, refusing more than `limit` bytes (413).
async fn read_limited(body: Body, limit: u64, what: &'static str) -> Result<bytes::Bytes> {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Io(std::io::Error::other(e.to_string())))?;
        seen += chunk.len() as u64;
        if seen > limit {
            // Read (and drop) a bounded amount more, so a client still
            // sending gets the 413 rather than a reset connection.
            let cap = limit.saturating_mul(DRAIN_FACTOR);
            while seen <= cap {
                match stream.next().await {
                    Some(Ok(c)) => seen += c.len() as u64,
                    _ => break,
                }
            }
            return Err(RegistryError::TooLarge {
                what,
                size: seen,
                limit,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// How far past a size limit a refused body is still read before answering.
const DRAIN_FACTOR: u64 = 16;

/// The single entry point: authorise, route, handle, count.
pub async fn dispatch(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let endpoint = route(parts.uri.path());
    let kind = endpoint.as_ref().map_or("unknown", Endpoint::kind);
    let declared = content_length(&parts.headers);
    let response = match handle(&registry, &parts, body, endpoint).await {
        Ok(r) => r,
        Err(e) => {
            let policy = match &e {
                RegistryError::PolicyDenied { policy, .. } => Some(policy.clone()),
                RegistryError::Refused { policy, .. } => Some((*policy).to_owned()),
                _ => None,
            };
            if let Some(policy) = policy {
                registry
                    .metrics
                    .policy_refusals
                    .get_or_create(&crate::metrics::PolicyLabel { policy })
                    .inc();
            }
            e.into_response()
        }
    };
    let m = &registry.metrics;
    let status = response.status();
    match (kind, &method) {
        ("upload" | "uploads" | "manifest", &Method::PUT | &Method::PATCH | &Method::POST)
            if status.is_success() =>
        {
            m.bytes_received.inc_by(declared);
        }
        ("blob" | "manifest", &Method::GET) if status.is_success() => {
            m.bytes_sent.inc_by(content_length(response.headers()));
        }
        _ => {}
    }
    m.observe(kind, method.as_str(), status.as_u16(), started.elapsed());
    response
}

/// A message's declared body length (0 when absent or unreadable).
fn content_length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

async fn handle(
    registry: &Arc<Registry>,
    parts: &axum::http::request::Parts,
    body: Body,
    endpoint: Result<Endpoint<'_>>,
) -> Result<Response> {
    let method = parts.method.clone();
    let push = !matches!(method, Method::GET | Method::HEAD);
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Ok(Endpoint::Token) = endpoint
        && registry.tokens().is_some()
    {
        return issue_token(registry, parts, authorization, body).await;
    }
    let access = registry.access(authorization);
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    // Unknown paths still ask for credentials first, so they reveal nothing.
    let need = match &endpoint {
        Ok(Endpoint::Catalog) => Need::Catalog,
        // A rescan is an operator's act, like GC: the push role and the
        // `registry:gc:*` scope.
        Ok(Endpoint::Gc | Endpoint::Rescan) => Need::Gc,
        Ok(Endpoint::ScanReport(r, _)) => Need::Repository {
            name: r.as_str(),
            write: false,
        },
        Ok(
            Endpoint::Tags(r)
            | Endpoint::Manifest(r, _)
            | Endpoint::Blob(r, _)
            | Endpoint::Uploads(r)
            | Endpoint::Upload(r, _)
            | Endpoint::Referrers(r, _),
        ) => Need::Repository {
            name: r.as_str(),
            write: push,
        },
        _ => Need::Any,
    };
    registry.authorize(&access, need, host)?;
    if push
        && let Ok(
            Endpoint::Manifest(r, _)
            | Endpoint::Blob(r, _)
            | Endpoint::Uploads(r)
            | Endpoint::Upload(r, _),
        ) = &endpoint
        && registry.is_mirror(r)
    {
        return Err(registry.mirror_write_refused(r));
    }
    let endpoint = endpoint?;
    let params = query_params(&parts.uri);
    let headers = &parts.headers;
    match (endpoint, method) {
        (Endpoint::Base, Method::GET | Method::HEAD) => Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::HeaderName::from_static("docker-distribution-api-version"),
                    "registry/2.0",
                ),
            ],
            "{}",
        )
            .into_response()),
        (Endpoint::Metrics, Method::GET) => Ok((
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            registry.metrics.encode(),
        )
            .into_response()),
        (Endpoint::ScanReport(repo, d), Method::GET) => {
            let digest: plumb_oci::Digest = d
                .parse()
                .map_err(|e: plumb_oci::DigestError| RegistryError::DigestInvalid(e.to_string()))?;
            let report = registry.scan_report(&repo, &digest)?;
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, crate::scan::SCAN_REPORT_ARTIFACT_TYPE)],
                report,
            )
                .into_response())
        }
        (Endpoint::Rescan, Method::POST) => {
            let queued = registry.rescan().await?;
            Ok(json_response(serde_json::json!({ "queued": queued })))
        }
        (Endpoint::Gc, Method::POST) => {
            let dry_run = param(&params, "dry_run").is_some_and(|v| v == "true" || v == "1");
            let report = crate::gc::collect(registry, dry_run).await?;
            Ok(json_response(serde_json::to_value(&report)?))
        }
        (Endpoint::Catalog, Method::GET) => {
            let n = param(&params, "n").and_then(|n| n.parse().ok());
            let (repos, more) = registry.catalog(n, param(&params, "last"))?;
            let mut r = json_response(serde_json::json!({ "repositories": repos }));
            if more && let (Some(n), Some(last)) = (n, repos.last()) {
                r.headers_mut().insert(
                    header::LINK,
                    hv(&format!("</v2/_catalog?n={n}&last={last}>; rel=\"next\"")),
                );
            }
            Ok(r)
        }
        (Endpoint::Tags(repo), Method::GET) => {
            let n: Option<usize> = param(&params, "n").and_then(|n| n.parse().ok());
            let (tags, more) = registry.list_tags(&repo, n, param(&params, "last"))?;
            let mut r = json_response(serde_json::json!({ "name": repo.as_str(), "tags": tags }));
            if more && let (Some(n), Some(last)) = (n, tags.last()) {
                r.headers_mut().insert(
                    header::LINK,
                    hv(&format!(
                        "</v2/{repo}/tags/list?n={n}&last={last}>; rel=\"next\""
                    )),
                );
            }
            Ok(r)
        }
        (Endpoint::Manifest(repo, reference), m @ (Method::GET | Method::HEAD)) => {
            let reference = ManifestRef::parse(reference)?;
            let served = if registry.is_mirror(&repo) {
                registry.proxy_manifest(&repo, &reference).await?
            } else {
                registry.get_manifest(&repo, &reference).await?
            };
            let mut r = if m == Method::HEAD {
                StatusCode::OK.into_response()
            } else {
                Body::from(served.bytes.clone()).into_response()
            };
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, hv(&served.record.media_type));
            h.insert(header::CONTENT_LENGTH, hv(&served.bytes.len().to_string()));
            h.insert("docker-content-digest", hv(&served.digest.to_string()));
            Ok(r)
        }
        (Endpoint::Manifest(repo, reference), Method::PUT) => {
            let reference = ManifestRef::parse(reference)?;
            let limit = registry.config().max_manifest_bytes;
            if let Some(len) = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                && len > limit.saturating_mul(DRAIN_FACTOR)
            {
                // Far too large to read at all.
                return Err(RegistryError::TooLarge {
                    what: "manifest",
                    size: len,
                    limit,
                });
            }
            let bytes = read_limited(body, limit, "manifest").await?;
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let extra_tags = params
                .iter()
                .filter(|(k, _)| k == "tag")
                .map(|(_, v)| Tag::parse(v).map_err(|e| RegistryError::TagInvalid(e.to_string())))
                .collect::<Result<Vec<_>>>()?;
            let pushed = registry
                .put_manifest(&repo, &reference, content_type, bytes, &extra_tags)
                .await?;
            let mut r = StatusCode::CREATED.into_response();
            let h = r.headers_mut();
            h.insert(
                header::LOCATION,
                hv(&format!("/v2/{repo}/manifests/{}", pushed.digest)),
            );
            h.insert("docker-content-digest", hv(&pushed.digest.to_string()));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            if let Some(s) = pushed.subject {
                h.insert("oci-subject", hv(&s.to_string()));
            }
            for t in &pushed.tags {
                h.append("oci-tag", hv(t));
            }
            Ok(r)
        }
        (Endpoint::Manifest(repo, reference), Method::DELETE) => {
            let reference = ManifestRef::parse(reference)?;
            registry.delete_manifest(&repo, &reference)?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Endpoint::Blob(repo, d), m @ (Method::GET | Method::HEAD)) => {
            let d = digest(d)?;
            let mirror = registry.is_mirror(&repo);
            if m == Method::HEAD {
                let size = if mirror {
                    registry.proxy_blob_size(&repo, &d).await?
                } else {
                    registry.blob_size(&repo, &d)?
                };
                return Ok(blob_response(StatusCode::OK, size, &d));
            }
            if mirror
                && let ProxiedBlob::Streaming { len, body } = registry.proxy_blob(&repo, &d).await?
            {
                let stream = futures_util::stream::unfold(body, |mut rx| async move {
                    rx.recv().await.map(|item| (item, rx))
                });
                let mut r = Body::from_stream(stream).into_response();
                let h = r.headers_mut();
                if let Some(len) = len {
                    h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
                }
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                h.insert("docker-content-digest", hv(&d.to_string()));
                return Ok(r);
            }
            let (file, size) = registry.blob_open(&repo, &d)?;
            let (status, start, len, range) = match byte_range(headers, size)
                .map_err(|()| RegistryError::RangeUnsatisfiable(size))?
            {
                Some((start, end)) => (
                    StatusCode::PARTIAL_CONTENT,
                    start,
                    end - start + 1,
                    Some((start, end)),
                ),
                None => (StatusCode::OK, 0, size, None),
            };
            let stream = file_stream(file, start, len);
            let mut r = blob_response((status, Body::from_stream(stream)), len, &d);
            let h = r.headers_mut();
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Some((s, e)) = range {
                h.insert(header::CONTENT_RANGE, hv(&format!("bytes {s}-{e}/{size}")));
            }
            Ok(r)
        }
        (Endpoint::Blob(repo, d), Method::DELETE) => {
            let d = digest(d)?;
            registry.delete_blob(&repo, &d)?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Endpoint::Uploads(repo), Method::POST) => {
            if let Some(mount) = param(&params, "mount") {
                let d = digest(mount)?;
                let from = param(&params, "from").map(name).transpose()?;
                if registry.mount(&repo, &d, from.as_ref())? {
                    return Ok(blob_created(&repo, &d));
                }
            }
            let monolithic = param(&params, "digest").map(digest).transpose()?;
            let id = registry.start_upload(&repo)?;
            if let Some(d) = monolithic {
                // Single-POST monolithic upload.
                registry.finish_upload(&repo, &id, &d, None, body).await?;
                return Ok(blob_created(&repo, &d));
            }
            Ok(upload_response(StatusCode::ACCEPTED, &repo, &id, 0))
        }
        (Endpoint::Upload(repo, id), Method::PATCH) => {
            let range = content_range(headers)?;
            let size = registry.append_upload(&repo, id, range, body).await?;
            Ok(upload_response(StatusCode::ACCEPTED, &repo, id, size))
        }
        (Endpoint::Upload(repo, id), Method::PUT) => {
            let d = param(&params, "digest")
                .ok_or_else(|| {
                    RegistryError::DigestInvalid("the final PUT of an upload needs ?digest=".into())
                })
                .and_then(digest)?;
            let range = content_range(headers)?;
            registry.finish_upload(&repo, id, &d, range, body).await?;
            Ok(blob_created(&repo, &d))
        }
        (Endpoint::Upload(repo, id), Method::GET) => {
            let size = registry.upload_size(&repo, id).await?;
            Ok(upload_response(StatusCode::NO_CONTENT, &repo, id, size))
        }
        (Endpoint::Upload(repo, id), Method::DELETE) => {
            registry.cancel_upload(&repo, id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Endpoint::Referrers(repo, d), Method::GET) => {
            let d = digest(d)?;
            let artifact_type = param(&params, "artifactType");
            let index = registry.referrers(&repo, &d, artifact_type)?;
            let mut r = (
                StatusCode::OK,
                [(header::CONTENT_TYPE, plumb_oci::manifest::OCI_INDEX)],
                index.to_string(),
            )
                .into_response();
            if artifact_type.is_some() {
                r.headers_mut().insert(
                    "oci-filters-applied",
                    HeaderValue::from_static("artifactType"),
                );
            }
            Ok(r)
        }
        _ => Err(RegistryError::Unsupported(
            "method not allowed on this endpoint".into(),
        )),
    }
}

/// `GET /token` (Basic credentials, `service`, `scope` repeated) or `POST
/// /token` (the OAuth2 password grant: a form with `grant_type=password`,
/// `username`, `password`, `service` and space-separated `scope`): a token
/// granting the requested actions the caller's role allows.
async fn issue_token(
    registry: &Arc<Registry>,
    parts: &axum::http::request::Parts,
    authorization: Option<&str>,
    body: Body,
) -> Result<Response> {
    use crate::token::{Holder, Scope, grant};
    let Some(tokens) = registry.tokens() else {
        return Err(RegistryError::NotFound);
    };
    let oauth_error = |status: StatusCode, error: &str, description: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": error, "error_description": description }).to_string(),
        )
            .into_response()
    };
    let (params, user) = match parts.method {
        Method::GET => {
            let params = query_params(&parts.uri);
            (params, registry.basic_user(authorization))
        }
        Method::POST => {
            let form = read_limited(body, 64 << 10, "token request").await?;
            let text = String::from_utf8_lossy(&form);
            let params: Vec<(String, String)> = text
                .split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((percent_decode(k)?, percent_decode(v)?))
                })
                .collect();
            if param(&params, "grant_type") != Some("password") {
                return Ok(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "plumb issues tokens for grant_type=password (or GET /token with Basic credentials)",
                ));
            }
            let user = match (param(&params, "username"), param(&params, "password")) {
                (Some(u), Some(p)) => {
                    use base64::Engine as _;
                    let basic = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                    );
                    registry.basic_user(Some(&basic))
                }
                _ => registry.basic_user(None),
            };
            (params, user)
        }
        _ => {
            return Err(RegistryError::Unsupported(
                "the token endpoint takes GET or POST".into(),
            ));
        }
    };
    let service = &tokens.settings().service;
    if let Some(s) = param(&params, "service")
        && s != service
    {
        return Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("this registry issues tokens for service {service:?}"),
        ));
    }
    let (sub, holder) = match user {
        Ok(Some((u, role))) => (u, Holder::User(role)),
        Ok(None) if !registry.has_users() => {
            (String::new(), Holder::User(crate::config::Role::Push))
        }
        Ok(None) if registry.config().anonymous_pull => (String::new(), Holder::Anonymous),
        Ok(None) | Err(_) => {
            let mut r = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "a user name and password of this registry are required",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"plumb-registry\""),
            );
            return Ok(r);
        }
    };
    let scopes: Vec<Scope> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter_map(Scope::parse).collect::<Vec<_>>())
        .collect();
    let issued_at = crate::service::now();
    let token = tokens.issue(&sub, grant(holder, &scopes), issued_at);
    let issued = jiff::Timestamp::from_second(issued_at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut r = json_response(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": tokens.settings().expiry.as_secs(),
        "issued_at": issued,
    }));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// Stream `len` bytes of `file` from `start`, read in 1 MiB chunks on a
/// blocking thread (fewer hand-offs than async file reads).
fn file_stream(
    file: std::fs::File,
    start: u64,
    len: u64,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Seek as _};
        let mut file = file;
        if let Err(e) = file.seek(std::io::SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        while left > 0 {
            let want = left.min(1 << 20);
            // read_to_end fills spare capacity without zeroing it first.
            let mut buf = Vec::with_capacity(want as usize);
            match (&mut file).take(want).read_to_end(&mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::ErrorKind::UnexpectedEof.into()));
                    return;
                }
                Ok(n) => {
                    left -= n as u64;
                    if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// A single `Range: bytes=a-b` within `size`: `Ok(None)` when absent or not
/// a single byte range (served whole), `Err(())` when unsatisfiable (416).
fn byte_range(headers: &HeaderMap, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let parsed = match (a.trim(), b.trim()) {
        ("", suffix) => suffix
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0 && size > 0)
            .map(|n| (size.saturating_sub(n), size - 1)),
        (a, "") => a.parse().ok().map(|a| (a, size.saturating_sub(1))),
        (a, b) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if b >= a => Some((a, b.min(size.saturating_sub(1)))),
            _ => None,
        },
    };
    match parsed {
        Some((start, end)) if start < size && start <= end => Ok(Some((start, end))),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_names_with_slashes() {
        assert!(matches!(route("/v2/").ok(), Some(Endpoint::Base)));
        assert!(
            matches!(route("/v2/a/b/manifests/v1").ok(), Some(Endpoint::Manifest(n, "v1")) if n.as_str() == "a/b")
        );
        assert!(matches!(
            route("/v2/a/blobs/uploads/").ok(),
            Some(Endpoint::Uploads(_))
        ));
        assert!(matches!(
            route("/v2/a/blobs/uploads/xyz").ok(),
            Some(Endpoint::Upload(_, "xyz"))
        ));
        assert!(matches!(
            route("/v2/a/b/tags/list").ok(),
            Some(Endpoint::Tags(_))
        ));
        assert!(matches!(
            route("/v2/a/../b/manifests/v1"),
            Err(RegistryError::NameInvalid(_))
        ));
        assert!(matches!(
            route("/v2/A/manifests/v1"),
            Err(RegistryError::NameInvalid(_))
        ));
        assert!(matches!(route("/v3/x"), Err(RegistryError::NotFound)));
    }

    #[test]
    fn decodes_query() {
        let uri: axum::http::Uri = "/x?mount=sha256%3Aab&from=a%2Fb&n=3".parse().unwrap();
        let p = query_params(&uri);
        assert_eq!(param(&p, "mount"), Some("sha256:ab"));
        assert_eq!(param(&p, "from"), Some("a/b"));
    }

    #[test]
    fn byte_ranges() {
        let mut h = HeaderMap::new();
        assert_eq!(byte_range(&h, 10), Ok(None));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=2-5"));
        assert_eq!(byte_range(&h, 10), Ok(Some((2, 5))));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=-3"));
        assert_eq!(byte_range(&h, 10), Ok(Some((7, 9))));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=20-"));
        assert_eq!(byte_range(&h, 10), Err(()));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=5-0"));
        assert_eq!(byte_range(&h, 10), Err(()));
    }
}
