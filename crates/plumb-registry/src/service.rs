//! The registry's operations, independent of HTTP.
//!
//! [`Registry`] ties the blob store, the metadata store, upload sessions and
//! the configured policies together. This module owns the registry's state
//! and its read and metadata operations: opening a root (and finishing what a
//! crash interrupted), who may do what, blob reads and mounts, and manifests,
//! tags and referrers with their tag policies. Writing blobs is
//! [`crate::upload`]'s job; collecting them, [`crate::gc`]'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use plumb_oci::manifest::{ManifestSummary, OCI_INDEX};
use plumb_oci::{ContentHasher, Digest, RepositoryName, Tag};

use crate::auth::{Access, Htpasswd, Need, basic_credentials};
use crate::blobs::{BlobStore, hash_file};
use crate::config::{RegistryConfig, Role};
use crate::error::RegistryError;
use crate::meta::{ManifestRecord, ManifestWrite, Metadata};

type Result<T> = std::result::Result<T, RegistryError>;

/// Unix seconds now.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// An upload in progress.
#[derive(Debug)]
pub struct UploadSession {
    pub(crate) repo: String,
    pub(crate) size: u64,
    pub(crate) hasher: ContentHasher,
    /// Unix seconds of the last chunk.
    pub touched: i64,
}

/// A tag or a digest, as written after `/manifests/`.
#[derive(Debug, Clone)]
pub enum ManifestRef {
    /// By tag.
    Tag(Tag),
    /// By digest.
    Digest(Digest),
}

impl ManifestRef {
    /// Parse a manifest reference.
    pub fn parse(s: &str) -> Result<Self> {
        if s.contains(':') {
            s.parse()
                .map(ManifestRef::Digest)
                .map_err(|e| RegistryError::DigestInvalid(e.to_string()))
        } else {
            Tag::parse(s)
                .map(ManifestRef::Tag)
                .map_err(|e| RegistryError::TagInvalid(e.to_string()))
        }
    }
}

/// A manifest ready to serve.
#[derive(Debug)]
pub struct ServedManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its record.
    pub record: ManifestRecord,
    /// Its bytes.
    pub bytes: Bytes,
}

/// The result of a manifest push.
#[derive(Debug)]
pub struct PushedManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its subject, for the `OCI-Subject` header.
    pub subject: Option<Digest>,
    /// Tags set through `?tag=` parameters, for the `OCI-Tag` header.
    pub tags: Vec<String>,
}

/// The registry.
#[derive(Debug)]
pub struct Registry {
    pub(crate) blobs: BlobStore,
    pub(crate) meta: Arc<Metadata>,
    pub(crate) config: RegistryConfig,
    htpasswd: Option<Htpasswd>,
    /// The token issuer, when the scheme uses Bearer tokens.
    pub(crate) tokens: Option<crate::token::TokenIssuer>,
    /// The pull-through caches, when configured.
    pub(crate) proxy: Option<crate::upstream::Proxy>,
    pub(crate) uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadSession>>>>,
    /// Digests clients have recently seen (HEAD, mount): GC leaves them alone
    /// for the grace window, since a manifest naming them may be on its way.
    pub(crate) recent: Mutex<HashMap<Digest, i64>>,
    /// Serialises GC runs.
    pub(crate) gc_lock: tokio::sync::Mutex<()>,
    /// What the registry counts, for `GET /metrics`.
    pub metrics: crate::metrics::RegistryMetrics,
    /// Scanning of pushed images, once started ([`crate::scan`]).
    pub(crate) scanning: std::sync::OnceLock<crate::scan::Scanning>,
}

/// Why the registry could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Storage trouble (a running registry may hold the root).
    #[error("cannot open the registry at {root}: {cause}")]
    Storage {
        /// The root.
        root: PathBuf,
        /// Why.
        cause: RegistryError,
    },
    /// htpasswd trouble.
    #[error(transparent)]
    Htpasswd(#[from] crate::auth::HtpasswdError),
    /// The token signing key is unusable.
    #[error(transparent)]
    TokenKey(#[from] crate::token::KeyError),
    /// A pull-through cache cannot be set up.
    #[error(transparent)]
    Proxy(#[from] crate::upstream::ProxyError),
}

impl Registry {
    /// Open the registry stored under `root`.
    pub fn open(root: &Path, config: RegistryConfig) -> std::result::Result<Self, OpenError> {
        let storage = |cause: RegistryError| OpenError::Storage {
            root: root.to_owned(),
            cause,
        };
        let blobs = BlobStore::open(root, config.fsync).map_err(|e| storage(e.into()))?;
        let meta = Metadata::open(&root.join("metadata.redb")).map_err(storage)?;
        recover_intents(&blobs, &meta).map_err(storage)?;
        // Upload sessions do not survive a restart: their files are partial
        // content nobody can finish, so they go.
        if let Ok(entries) = std::fs::read_dir(blobs.uploads_dir()) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let htpasswd = config.htpasswd.as_deref().map(Htpasswd::load).transpose()?;
        let tokens = if config.auth_scheme.tokens() {
            Some(crate::token::TokenIssuer::open(
                config.token.clone(),
                &root.join("token").join("key.pem"),
            )?)
        } else {
            None
        };
        let proxy = if config.proxies.is_empty() {
            None
        } else {
            Some(crate::upstream::Proxy::new(&config.proxies)?)
        };
        Ok(Registry {
            blobs,
            meta: Arc::new(meta),
            config,
            htpasswd,
            tokens,
            proxy,
            uploads: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            gc_lock: tokio::sync::Mutex::new(()),
            metrics: crate::metrics::RegistryMetrics::new(),
            scanning: std::sync::OnceLock::new(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Decide what a request with this `Authorization` header may do.
    /// Bearer tokens count only when the scheme issues them; Basic
    /// credentials only when the scheme accepts them on API requests
    /// (otherwise they are ignored, and the client is challenged for a token).
    pub fn access(&self, authorization: Option<&str>) -> Access {
        if let (Some(tokens), Some(token)) = (
            &self.tokens,
            authorization.and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            }),
        ) {
            return match tokens.verify(token.trim(), now()) {
                Ok(claims) => Access::Token(Box::new(claims)),
                Err(e) => {
                    // The reason, never the token.
                    tracing::debug!(reason = %e, "bearer token refused");
                    Access::Rejected
                }
            };
        }
        let Some(htpasswd) = &self.htpasswd else {
            // No user database: the operator chose an open registry.
            return Access::User(String::new(), Role::Push);
        };
        if !self.config.auth_scheme.basic() {
            return Access::Anonymous;
        }
        match authorization.and_then(basic_credentials) {
            None => Access::Anonymous,
            Some((u, p)) if htpasswd.check(&u, &p) => {
                let role = self.config.role_of(&u);
                Access::User(u, role)
            }
            Some(_) => Access::Rejected,
        }
    }

    /// Check the user/password pair of a Basic header against the user
    /// store: `Ok(None)` without a header, `Err` when wrong.
    pub fn basic_user(&self, authorization: Option<&str>) -> Result<Option<(String, Role)>> {
        let Some(header) = authorization else {
            return Ok(None);
        };
        let Some(htpasswd) = &self.htpasswd else {
            return Ok(Some((String::new(), Role::Push)));
        };
        match basic_credentials(header) {
            Some((u, p)) if htpasswd.check(&u, &p) => {
                let role = self.config.role_of(&u);
                Ok(Some((u, role)))
            }
            _ => Err(RegistryError::Unauthorized),
        }
    }

    /// Whether the registry has a user store (without one it is open).
    pub fn has_users(&self) -> bool {
        self.htpasswd.is_some()
    }

    /// The token issuer, when the scheme issues tokens.
    pub fn tokens(&self) -> Option<&crate::token::TokenIssuer> {
        self.tokens.as_ref()
    }

    /// Check that `access` allows what the request `need`s. A refusal of a
    /// caller who may authenticate carries the challenge: Bearer (with the
    /// scope to ask for, and the realm at `host` unless configured) when the
    /// scheme issues tokens, Basic otherwise.
    pub fn authorize(&self, access: &Access, need: Need<'_>, host: Option<&str>) -> Result<()> {
        let challenge = |insufficient: bool| match &self.tokens {
            None => RegistryError::Unauthorized,
            Some(t) => {
                let s = t.settings();
                let realm = match &s.realm {
                    Some(r) => r.clone(),
                    None => {
                        let scheme = if self.config.tls.is_some() {
                            "https"
                        } else {
                            "http"
                        };
                        let host = host
                            .filter(|h| !h.contains(['"', '\\', ' ']))
                            .unwrap_or("127.0.0.1");
                        format!("{scheme}://{host}{}", crate::token::TOKEN_PATH)
                    }
                };
                let mut v = format!("Bearer realm=\"{realm}\",service=\"{}\"", s.service);
                if let Some(scope) = need.scope() {
                    v.push_str(&format!(",scope=\"{scope}\""));
                }
                if insufficient {
                    v.push_str(",error=\"insufficient_scope\"");
                }
                RegistryError::Challenge(v)
            }
        };
        match access {
            Access::User(_, Role::Push) => Ok(()),
            Access::User(_, Role::Read) if !need.write() => Ok(()),
            Access::User(u, Role::Read) => Err(RegistryError::Denied(u.clone())),
            Access::Token(claims) => {
                let ok = match need {
                    Need::Any => true,
                    Need::Repository { name, write } => {
                        claims.allows("repository", name, if write { "push" } else { "pull" })
                    }
                    Need::Catalog => claims.allows("registry", "catalog", "*"),
                    Need::Gc => claims.allows("registry", "gc", "*"),
                };
                if ok { Ok(()) } else { Err(challenge(true)) }
            }
            Access::Anonymous if !need.write() && self.config.anonymous_pull => Ok(()),
            Access::Anonymous | Access::Rejected => Err(challenge(false)),
        }
    }

    /// Refuse a write to `repo` that would take a quota covering it over
    /// its limit: `add` more bytes, or blob `digest` of `add` bytes (which
    /// costs nothing when the quota's repositories hold it already).
    pub(crate) fn check_quota(
        &self,
        repo: &RepositoryName,
        digest: Option<&Digest>,
        add: u64,
    ) -> Result<()> {
        for q in self
            .config
            .quotas
            .iter()
            .filter(|q| q.covers(repo.as_str()))
        {
            let (used, held) =
                tokio::task::block_in_place(|| self.meta.usage(|r| q.covers(r), digest))?;
            let add = if held { 0 } else { add };
            if used.saturating_add(add) > q.max_bytes {
                return Err(RegistryError::Refused {
                    message: format!(
                        "storage quota of prefix {:?} ({} bytes) would be exceeded: {used} bytes are in use and this push adds {add}; delete content (and let GC run) or raise quotas[{:?}].max_bytes",
                        q.prefix, q.max_bytes, q.prefix
                    ),
                    policy: "quota",
                });
            }
        }
        Ok(())
    }

    /// Note that a client saw `digest`, so online GC spares it for the grace window.
    pub(crate) fn touch(&self, digest: &Digest) {
        // Only online GC reads this; without it the map would only grow.
        if self.config.gc_interval.is_none() {
            return;
        }
        if let Ok(mut r) = self.recent.lock() {
            let t = now();
            if r.len() >= 100_000 {
                let cutoff = t - self.config.gc_grace.as_secs() as i64;
                r.retain(|_, seen| *seen >= cutoff);
            }
            r.insert(digest.clone(), t);
        }
    }

    /// Size of a blob in `repo`.
    pub fn blob_size(&self, repo: &RepositoryName, digest: &Digest) -> Result<u64> {
        let size = self
            .meta
            .repo_blob(repo.as_str(), digest)?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        self.touch(digest);
        Ok(size)
    }

    /// Open a blob of `repo` for reading.
    pub fn blob_open(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<(std::fs::File, u64)> {
        let size = self.blob_size(repo, digest)?;
        match std::fs::File::open(self.blobs.blob_path(digest)) {
            Ok(f) => Ok((f, size)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(RegistryError::BlobUnknown(digest.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Unlink a blob from `repo` (its bytes go when GC finds them unused).
    pub fn delete_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        if !self.meta.unlink_blob(repo.as_str(), digest)? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        Ok(())
    }

    /// Link `digest` from repository `from` into `repo`; false when `from` does
    /// not hold it (the client then uploads).
    pub fn mount(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        from: Option<&RepositoryName>,
    ) -> Result<bool> {
        let held = match from {
            Some(f) => self.meta.repo_blob(f.as_str(), digest)?.is_some(),
            // Mount without a source: any blob the registry holds. Names are
            // not secrets here: every user may read every repository.
            None => self.meta.blob(digest)?.is_some(),
        };
        if !held {
            return Ok(false);
        }
        if !self.config.quotas.is_empty() {
            let size = self.meta.blob(digest)?.map_or(0, |b| b.size);
            self.check_quota(repo, Some(digest), size)?;
        }
        let linked = self.meta.link_blob(repo.as_str(), digest, now())?;
        if linked {
            self.touch(digest);
        }
        Ok(linked && self.blobs.blob_path(digest).exists())
    }

    /// The digest `reference` names in `repo` (a tag is looked up).
    fn digest_of(&self, repo: &RepositoryName, reference: &ManifestRef) -> Result<Digest> {
        match reference {
            ManifestRef::Digest(d) => Ok(d.clone()),
            ManifestRef::Tag(t) => Ok(self
                .meta
                .tag(repo.as_str(), t.as_str())?
                .ok_or_else(|| RegistryError::ManifestUnknown(t.to_string()))?
                .digest),
        }
    }

    /// Resolve a manifest reference in `repo`.
    pub fn resolve(
        &self,
        repo: &RepositoryName,
        reference: &ManifestRef,
    ) -> Result<(Digest, ManifestRecord)> {
        let digest = self.digest_of(repo, reference)?;
        let record = self
            .meta
            .manifest(repo.as_str(), &digest)?
            .ok_or_else(|| RegistryError::ManifestUnknown(digest.to_string()))?;
        Ok((digest, record))
    }

    /// Fetch a manifest.
    pub async fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &ManifestRef,
    ) -> Result<ServedManifest> {
        let digest = self.digest_of(repo, reference)?;
        let (record, bytes) = self
            .meta
            .manifest_with_bytes(repo.as_str(), &digest)?
            .ok_or_else(|| RegistryError::ManifestUnknown(digest.to_string()))?;
        Ok(ServedManifest {
            digest,
            record,
            bytes: Bytes::from(bytes),
        })
    }

    /// Store a manifest under a tag or its digest.
    pub async fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &ManifestRef,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
    ) -> Result<PushedManifest> {
        self.check_quota(repo, None, bytes.len() as u64)?;
        self.store_manifest(repo, reference, content_type, bytes, extra_tags, false)
            .await
    }

    /// Store a manifest. A `mirror` write (a pull-through cache storing what
    /// its upstream served) follows the upstream: tag policies do not apply
    /// and the blobs it names need not be present yet (they are fetched when
    /// first pulled).
    pub(crate) async fn store_manifest(
        &self,
        repo: &RepositoryName,
        reference: &ManifestRef,
        content_type: Option<&str>,
        bytes: Bytes,
        extra_tags: &[Tag],
        mirror: bool,
    ) -> Result<PushedManifest> {
        let digest = match reference {
            ManifestRef::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if &actual != d {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest body has digest {actual}, not {d}; nothing was stored"
                    )));
                }
                actual
            }
            ManifestRef::Tag(_) => Digest::sha256_of(&bytes),
        };
        let summary = ManifestSummary::parse(&bytes, content_type)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        let mut tags: Vec<Tag> = extra_tags.to_vec();
        if let ManifestRef::Tag(t) = reference {
            tags.insert(0, t.clone());
        }
        if !mirror
            && tags.iter().any(|t| t.as_str() == "latest")
            && let Some(rule) = self.config.rule_for(repo.as_str())
            && rule.forbid_latest
        {
            return Err(RegistryError::PolicyDenied {
                message: format!(
                    "tag \"latest\" is forbidden in {repo} by policy forbid_latest (repositories rule {:?}): tag with the git SHA or a version",
                    rule.pattern
                ),
                policy: "forbid_latest".into(),
            });
        }
        let mut references = summary.blobs.clone();
        references.extend(summary.children.iter().cloned());
        let record = ManifestRecord {
            media_type: summary.media_type.clone(),
            size: bytes.len() as u64,
            artifact_type: summary.artifact_type.clone(),
            annotations: summary.annotations.clone(),
            subject: summary.subject.as_ref().map(|s| s.digest.clone()),
            references,
            children: summary.children.clone(),
            pushed_at: now(),
        };
        let policy = &self.config.tag_policy;
        let tag_names: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
        tokio::task::block_in_place(|| -> Result<()> {
            self.meta.put_manifest(
                ManifestWrite {
                    repo: repo.as_str(),
                    digest: &digest,
                    record,
                    required_blobs: &summary.blobs,
                    required_manifests: &summary.children,
                    tags: &tag_names,
                    bytes: &bytes,
                    check_references: !mirror,
                },
                |t, current| {
                    let Some(current) = current else {
                        return Ok(());
                    };
                    if mirror {
                        return Ok(());
                    }
                    if current.digest == digest {
                        return Ok(());
                    }
                    match policy.immutable_by(t) {
                        Some(pattern) => Err(RegistryError::PolicyDenied {
                            message: format!(
                                "tag {t} is immutable under policy immutable_tags (pattern {:?}): it already names {}; push under a new tag",
                                pattern.as_str(),
                                current.digest
                            ),
                            policy: "immutable_tags".into(),
                        }),
                        None => Ok(()),
                    }
                },
            )
        })?;
        self.scan_on_push(repo, &digest, &summary.media_type, &bytes);
        Ok(PushedManifest {
            digest,
            subject: summary.subject.map(|s| s.digest),
            tags: extra_tags.iter().map(|t| t.to_string()).collect(),
        })
    }

    fn immutable_denial(&self, repo: &RepositoryName, tag: &str) -> Option<RegistryError> {
        self.config.tag_policy.immutable_by(tag).map(|p| RegistryError::PolicyDenied {
            message: format!(
                "tag {tag} in {repo} is immutable under policy immutable_tags (pattern {:?}): it cannot be deleted through the API; retention policies remove such tags",
                p.as_str()
            ),
            policy: "immutable_tags".into(),
        })
    }

    /// Delete a manifest (by digest, with its tags) or a tag.
    pub fn delete_manifest(&self, repo: &RepositoryName, reference: &ManifestRef) -> Result<()> {
        let found = match reference {
            ManifestRef::Digest(d) => self.meta.delete_manifest(repo.as_str(), d, |tags| {
                tags.iter()
                    .find_map(|t| self.immutable_denial(repo, t))
                    .map_or(Ok(()), Err)
            })?,
            ManifestRef::Tag(t) => self.meta.delete_tag(repo.as_str(), t.as_str(), |_| {
                self.immutable_denial(repo, t.as_str()).map_or(Ok(()), Err)
            })?,
        };
        if !found {
            return Err(RegistryError::ManifestUnknown(match reference {
                ManifestRef::Digest(d) => d.to_string(),
                ManifestRef::Tag(t) => t.to_string(),
            }));
        }
        Ok(())
    }

    /// Tags of `repo`, lexically sorted, after `last`, at most `n`; the bool
    /// says whether more follow.
    pub fn list_tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool)> {
        let tags = self.meta.tags(repo.as_str())?;
        if tags.is_empty() && !self.meta.repo_exists(repo.as_str())? {
            return Err(RegistryError::NameUnknown(repo.to_string()));
        }
        let mut names: Vec<String> = tags.into_iter().map(|(t, _)| t).collect();
        names.sort();
        Ok(page(names, n, last))
    }

    /// The referrers index of `subject` in `repo`.
    pub fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<serde_json::Value> {
        let mut manifests = vec![];
        for (digest, rec) in self.meta.referrers(repo.as_str(), subject)? {
            if let Some(t) = artifact_type
                && rec.artifact_type.as_deref() != Some(t)
            {
                continue;
            }
            let mut d = serde_json::json!({
                "mediaType": rec.media_type,
                "digest": digest,
                "size": rec.size,
            });
            if let Some(t) = &rec.artifact_type {
                d["artifactType"] = serde_json::json!(t);
            }
            if !rec.annotations.is_empty() {
                d["annotations"] = serde_json::json!(rec.annotations);
            }
            manifests.push(d);
        }
        Ok(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
    }

    /// Repository names, sorted, after `last`, at most `n`.
    pub fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        Ok(page(self.meta.repositories()?, n, last))
    }
}

/// One page of sorted `names`: those after `last`, at most `n`, and whether
/// more follow (the distribution API's `n` and `last` pagination).
fn page(mut names: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    if let Some(last) = last {
        names.retain(|name| name.as_str() > last);
    }
    match n {
        Some(n) if names.len() > n => {
            names.truncate(n);
            (names, true)
        }
        _ => (names, false),
    }
}

/// Finish what a crash interrupted between an upload's intent and its
/// record: a blob whose file holds exactly its digest's bytes is made durable
/// (the crash may have come before its fsync) and recorded; a file that does
/// not, and that nothing records, goes.
fn recover_intents(blobs: &BlobStore, meta: &Metadata) -> Result<()> {
    let mut checked: HashMap<Digest, bool> = HashMap::new();
    for (key, intent) in meta.intents()? {
        let digest = &intent.digest;
        let path = blobs.blob_path(digest);
        let intact = match checked.get(digest) {
            Some(known) => *known,
            None => {
                let intact = path.exists() && hash_file(&path, digest.algorithm())? == *digest;
                if intact {
                    blobs.sync_blob(digest)?;
                }
                if !intact && meta.blob(digest)?.is_none() {
                    blobs.remove(digest)?;
                }
                checked.insert(digest.clone(), intact);
                intact
            }
        };
        if intact {
            let size = std::fs::metadata(&path)?.len();
            meta.add_blob(&intent.repo, digest, size, now())?;
        }
        meta.drop_intent(&key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::page;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages_follow_last_and_stop_at_n() {
        let all = names(&["a", "b", "c", "d"]);
        assert_eq!(page(all.clone(), Some(2), None), (names(&["a", "b"]), true));
        assert_eq!(
            page(all.clone(), Some(2), Some("b")),
            (names(&["c", "d"]), false)
        );
        assert_eq!(page(all.clone(), None, Some("c")), (names(&["d"]), false));
        assert_eq!(page(all.clone(), Some(4), None), (all, false));
    }
}
