//! The registry's operations, independent of HTTP.
//!
//! [`Registry`] ties the blob store, the metadata store, upload sessions and
//! the configured policies together. Every write follows the same order: bytes
//! reach disk and are verified first, the blob is published by rename under its
//! digest's lock, and only then does a metadata transaction make it visible.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use plumb_oci::manifest::{ManifestSummary, OCI_INDEX};
use plumb_oci::{Algorithm, ContentHasher, Digest, RepositoryName, Tag};

use crate::auth::{Access, Htpasswd, basic_credentials};
use crate::blobs::BlobStore;
use crate::config::{RegistryConfig, Role};
use crate::error::RegistryError;
use crate::meta::{BlobIntent, ManifestRecord, ManifestWrite, Metadata};

type Result<T> = std::result::Result<T, RegistryError>;

/// Unix seconds now.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// An upload in progress.
#[derive(Debug)]
pub struct UploadSession {
    repo: String,
    size: u64,
    hasher: ContentHasher,
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
    pub(crate) uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadSession>>>>,
    /// Digests clients have recently seen (HEAD, mount): GC leaves them alone
    /// for the grace window, since a manifest naming them may be on its way.
    pub(crate) recent: Mutex<HashMap<Digest, i64>>,
    /// Serialises GC runs.
    pub(crate) gc_lock: tokio::sync::Mutex<()>,
    /// What the registry counts, for `GET /metrics`.
    pub metrics: crate::metrics::RegistryMetrics,
}

/// Why the registry could not open.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OpenError {
    /// Storage trouble.
    #[error("cannot open the registry at {root}: {cause}")]
    #[diagnostic(code(plumb::registry::open), help("{hint}"))]
    Storage {
        /// The root.
        root: PathBuf,
        /// Why.
        cause: RegistryError,
        /// What to do.
        hint: String,
    },
    /// htpasswd trouble.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Htpasswd(#[from] crate::auth::HtpasswdError),
}

impl Registry {
    /// Open the registry stored under `root`.
    pub fn open(root: &Path, config: RegistryConfig) -> std::result::Result<Self, OpenError> {
        let storage = |cause: RegistryError| {
            let text = cause.to_string();
            let hint = if text.contains("already open") || text.contains("lock") {
                "a running plumb registry holds this root: stop it first (a running registry \
                 collects garbage online every gc.interval of its --config)"
                    .to_owned()
            } else {
                "check that the directory is writable".to_owned()
            };
            OpenError::Storage {
                root: root.to_owned(),
                cause,
                hint,
            }
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
        Ok(Registry {
            blobs,
            meta: Arc::new(meta),
            config,
            htpasswd,
            uploads: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            gc_lock: tokio::sync::Mutex::new(()),
            metrics: crate::metrics::RegistryMetrics::new(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Decide what a request with this `Authorization` header may do.
    pub fn access(&self, authorization: Option<&str>) -> Access {
        let Some(htpasswd) = &self.htpasswd else {
            // No user database: the operator chose an open registry.
            return Access::User(String::new(), Role::Push);
        };
        match authorization.and_then(basic_credentials) {
            None => Access::Anonymous,
            Some((u, p)) if htpasswd.check(&u, &p) => {
                let role = self.config.role_of(&u);
                Access::User(u, role)
            }
            Some(_) => Access::Rejected,
        }
    }

    /// Check that `access` allows a read (`push = false`) or a write.
    pub fn authorize(&self, access: &Access, push: bool) -> Result<()> {
        match access {
            Access::User(_, Role::Push) => Ok(()),
            Access::User(_, Role::Read) if !push => Ok(()),
            Access::User(u, Role::Read) => Err(RegistryError::Denied(u.clone())),
            Access::Anonymous if !push && self.config.anonymous_pull => Ok(()),
            Access::Anonymous | Access::Rejected => Err(RegistryError::Unauthorized),
        }
    }

    fn touch(&self, digest: &Digest) {
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
        let linked = self.meta.link_blob(repo.as_str(), digest, now())?;
        if linked {
            self.touch(digest);
        }
        Ok(linked && self.blobs.blob_path(digest).exists())
    }

    /// Start an upload session in `repo`.
    pub fn start_upload(&self, repo: &RepositoryName) -> Result<String> {
        let id = self.blobs.new_upload();
        let session = UploadSession {
            repo: repo.to_string(),
            size: 0,
            hasher: ContentHasher::new(Algorithm::Sha256),
            touched: now(),
        };
        if let Ok(mut u) = self.uploads.lock() {
            u.insert(id.clone(), Arc::new(tokio::sync::Mutex::new(session)));
        }
        Ok(id)
    }

    fn session(&self, id: &str) -> Result<Arc<tokio::sync::Mutex<UploadSession>>> {
        let s = self
            .uploads
            .lock()
            .ok()
            .and_then(|u| u.get(id).cloned())
            .ok_or_else(|| RegistryError::UploadUnknown(id.to_owned()))?;
        Ok(s)
    }

    /// Bytes received so far by an upload.
    pub async fn upload_size(&self, repo: &RepositoryName, id: &str) -> Result<u64> {
        let s = self.session(id)?;
        let s = s.lock().await;
        if s.repo != repo.as_str() {
            return Err(RegistryError::UploadUnknown(id.to_owned()));
        }
        Ok(s.size)
    }

    /// Append a chunk to an upload. `range` is the chunk's claimed
    /// `(start, end)` from `Content-Range`; a start other than the current size
    /// is refused (416) and changes nothing.
    pub async fn append_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        range: Option<(u64, u64)>,
        body: axum::body::Body,
    ) -> Result<u64> {
        Ok(self.append(repo, id, range, body, false).await?.0)
    }

    /// [`Registry::append_upload`]; with `last`, the chunk ends the upload and,
    /// when the store fsyncs, the file's fsync starts while its hash finishes
    /// (returned to be awaited before the blob is recorded).
    async fn append(
        &self,
        repo: &RepositoryName,
        id: &str,
        range: Option<(u64, u64)>,
        body: axum::body::Body,
        last: bool,
    ) -> Result<(u64, Option<PendingSync>)> {
        let s = self.session(id)?;
        let mut s = s.lock().await;
        if s.repo != repo.as_str() {
            return Err(RegistryError::UploadUnknown(id.to_owned()));
        }
        if let Some((start, end)) = range
            && (start != s.size || end < start)
        {
            return Err(RegistryError::RangeInvalid {
                got: start,
                expected: s.size,
            });
        }
        let (hasher, written, pending) = match write_body(
            self.blobs.upload_path(id),
            s.hasher.clone(),
            body,
            self.blobs.fsync(),
            last && self.blobs.fsync(),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                // A broken body leaves the upload as it was before the chunk.
                if let Ok(f) = std::fs::OpenOptions::new()
                    .write(true)
                    .open(self.blobs.upload_path(id))
                {
                    let _ = f.set_len(s.size);
                }
                return Err(e);
            }
        };
        if let Some((start, end)) = range
            && written != end - start + 1
        {
            // The chunk did not match its declared range: undo it.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(self.blobs.upload_path(id))?;
            f.set_len(s.size)?;
            return Err(RegistryError::SizeInvalid(format!(
                "Content-Range declares {} bytes but the body has {written}",
                end - start + 1
            )));
        }
        s.hasher = hasher;
        s.size += written;
        s.touched = now();
        Ok((s.size, pending))
    }

    /// Finish an upload: append the final body, check the digest, publish.
    pub async fn finish_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        body: axum::body::Body,
    ) -> Result<()> {
        // The intent's durable commit runs while the last bytes arrive.
        let key = crate::blobs::random_id();
        let noted = {
            let (meta, key) = (Arc::clone(&self.meta), key.clone());
            let intent = BlobIntent {
                digest: digest.clone(),
                repo: repo.to_string(),
            };
            Pooled::spawn(move || meta.add_intent(&key, &intent))
        };
        match self.verify_upload(repo, id, digest, range, body).await {
            Ok((size, path, pending)) => {
                self.publish(repo, digest, size, &path, pending, (&key, noted))
                    .await
            }
            Err(e) => {
                tokio::task::block_in_place(|| {
                    if noted.join().is_ok_and(|r| r.is_ok()) {
                        let _ = self.meta.drop_intent(&key);
                    }
                });
                Err(e)
            }
        }
    }

    /// Append the final body of upload `id` and check its digest; returns the
    /// upload's size, its file and its fsync in flight.
    async fn verify_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        body: axum::body::Body,
    ) -> Result<(u64, PathBuf, Option<PendingSync>)> {
        let (_, pending) = self.append(repo, id, range, body, true).await?;
        let session = self.session(id)?;
        let s = session.lock().await;
        let path = self.blobs.upload_path(id);
        let actual = match digest.algorithm() {
            Algorithm::Sha256 => s.hasher.clone().finish(),
            other => {
                let p = path.clone();
                tokio::task::spawn_blocking(move || hash_file(&p, other))
                    .await
                    .map_err(|e| RegistryError::Io(std::io::Error::other(e)))??
            }
        };
        let size = s.size;
        drop(s);
        if let Ok(mut u) = self.uploads.lock() {
            u.remove(id);
        }
        if &actual != digest {
            let _ = std::fs::remove_file(&path);
            return Err(RegistryError::DigestInvalid(format!(
                "uploaded content has digest {actual}, not {digest}; nothing was stored"
            )));
        }
        Ok((size, path, pending))
    }

    /// Publish a verified upload. Its intent was committed while the body
    /// arrived; here the file is renamed into place and, with the store's
    /// fsync, its bytes and its name are made durable, and then the blob is
    /// recorded by a commit that needs no fsync of its own (see
    /// [`crate::meta`]). A crash before the record leaves at most an
    /// unrecorded file, which nothing serves and which the intent's recovery
    /// or GC settles. A blob the store already holds is not renamed over
    /// (same digest, same bytes): the upload is dropped and the repository
    /// linked.
    async fn publish(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        size: u64,
        staged: &Path,
        pending: Option<PendingSync>,
        (key, noted): (&str, Pooled<Result<()>>),
    ) -> Result<()> {
        let wait = |pending: Option<PendingSync>| -> std::io::Result<()> {
            match pending {
                Some(handle) => handle
                    .join()
                    .map_err(|_| std::io::Error::other("the fsync thread panicked"))?,
                None => Ok(()),
            }
        };
        // Publishing holds a std lock and does blocking I/O: keep it off the reactor.
        tokio::task::block_in_place(|| -> Result<()> {
            let _guard = self.blobs.lock(digest);
            let held = self.meta.blob(digest)?.is_some() && self.blobs.blob_path(digest).exists();
            let published = if held {
                let _ = wait(pending);
                let _ = std::fs::remove_file(staged);
                Ok(())
            } else {
                self.blobs
                    .publish(staged, digest)
                    .and_then(|()| wait(pending))
            };
            let noted = noted.join().map_err(RegistryError::from)?;
            match (published, noted) {
                (Ok(()), Ok(())) => self
                    .meta
                    .confirm_blob(key, repo.as_str(), digest, size, now()),
                (published, noted) => {
                    if noted.is_ok() {
                        let _ = self.meta.drop_intent(key);
                    }
                    if !held {
                        let _ = self.blobs.remove(digest);
                    }
                    published?;
                    noted
                }
            }
        })?;
        self.touch(digest);
        Ok(())
    }

    /// Drop upload sessions idle since before `idle_before` (unix seconds);
    /// returns how many went. Sessions busy with a chunk are left alone.
    pub fn expire_uploads(&self, idle_before: i64) -> usize {
        let expired: Vec<String> = self
            .uploads
            .lock()
            .map(|u| {
                u.iter()
                    .filter(|(_, s)| s.try_lock().is_ok_and(|s| s.touched < idle_before))
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for id in &expired {
            if let Ok(mut u) = self.uploads.lock() {
                u.remove(id);
            }
            let _ = std::fs::remove_file(self.blobs.upload_path(id));
        }
        expired.len()
    }

    /// Cancel an upload.
    pub async fn cancel_upload(&self, repo: &RepositoryName, id: &str) -> Result<()> {
        let s = self.session(id)?;
        let s = s.lock().await;
        if s.repo != repo.as_str() {
            return Err(RegistryError::UploadUnknown(id.to_owned()));
        }
        drop(s);
        if let Ok(mut u) = self.uploads.lock() {
            u.remove(id);
        }
        let _ = std::fs::remove_file(self.blobs.upload_path(id));
        Ok(())
    }

    /// Resolve a manifest reference in `repo`.
    pub fn resolve(
        &self,
        repo: &RepositoryName,
        reference: &ManifestRef,
    ) -> Result<(Digest, ManifestRecord)> {
        let digest = match reference {
            ManifestRef::Digest(d) => d.clone(),
            ManifestRef::Tag(t) => {
                self.meta
                    .tag(repo.as_str(), t.as_str())?
                    .ok_or_else(|| RegistryError::ManifestUnknown(t.to_string()))?
                    .digest
            }
        };
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
        let digest = match reference {
            ManifestRef::Digest(d) => d.clone(),
            ManifestRef::Tag(t) => {
                self.meta
                    .tag(repo.as_str(), t.as_str())?
                    .ok_or_else(|| RegistryError::ManifestUnknown(t.to_string()))?
                    .digest
            }
        };
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
        if tags.iter().any(|t| t.as_str() == "latest")
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
                },
                |t, current| {
                    let Some(current) = current else {
                        return Ok(());
                    };
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
        let found =
            match reference {
                ManifestRef::Digest(d) => self.meta.delete_manifest(repo.as_str(), d, |tags| {
                    match tags.iter().find_map(|t| self.immutable_denial(repo, t)) {
                        Some(e) => Err(e),
                        None => Ok(()),
                    }
                })?,
                ManifestRef::Tag(t) => self.meta.delete_tag(repo.as_str(), t.as_str(), |_| {
                    match self.immutable_denial(repo, t.as_str()) {
                        Some(e) => Err(e),
                        None => Ok(()),
                    }
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

fn hash_file(path: &Path, algorithm: Algorithm) -> Result<Digest> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut h = ContentHasher::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// Request body bytes are handed to the writer in batches of about this
/// size: small enough that hashing and writing keep pace with the network
/// (a 1 MB blob is mostly hashed by the time its last byte arrives), large
/// enough that each hand-off moves many chunks.
const HAND_OFF: usize = 256 << 10;
const FLUSH_EVERY: u64 = 32 << 20;
/// Uploads past this many bytes are hashed on a thread of their own.
const PARALLEL_HASH: u64 = 256 << 10;
/// Batches queued for the hashing thread before the writer waits for it
/// (32 MiB): the hash normally outruns the disk, and where it cannot (no
/// SHA extensions) memory stays bounded.
const HASH_BATCHES_IN_FLIGHT: usize = 128;

/// Write every chunk with as few system calls as the kernel allows (one
/// vectored write per up to 512 chunks; request bodies arrive in many small
/// pieces).
fn write_chunks(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write as _};
    for group in chunks.chunks(512) {
        let mut slices: Vec<IoSlice<'_>> = group.iter().map(|c| IoSlice::new(c)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = file.write_vectored(rest)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
    }
    Ok(())
}

/// Work running on a thread of the blocking pool, joined from another
/// blocking thread. The pool's threads outlive their tasks, so handing work
/// to one costs a wake-up, not a thread's creation.
struct Pooled<T>(std::sync::mpsc::Receiver<T>);

impl<T: Send + 'static> Pooled<T> {
    fn spawn(work: impl FnOnce() -> T + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(work());
        });
        Pooled(rx)
    }

    fn join(self) -> std::io::Result<T> {
        self.0
            .recv()
            .map_err(|_| std::io::Error::other("a blocking task panicked"))
    }
}

/// An upload file's fsync in flight.
type PendingSync = std::thread::JoinHandle<std::io::Result<()>>;

/// Where an upload's hash is computed: on the writer's thread for small
/// bodies, on a thread of its own (fed the same reference-counted chunks)
/// once a body is large enough that hashing would hold up writing.
enum Hashing {
    Inline(ContentHasher),
    Thread(
        std::sync::mpsc::SyncSender<Vec<Bytes>>,
        std::thread::JoinHandle<ContentHasher>,
    ),
}

impl Hashing {
    fn on_own_thread(self) -> Self {
        match self {
            Hashing::Inline(mut h) => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Bytes>>(HASH_BATCHES_IN_FLIGHT);
                let handle = std::thread::spawn(move || {
                    while let Ok(chunks) = rx.recv() {
                        for c in &chunks {
                            h.update(c);
                        }
                    }
                    h
                });
                Hashing::Thread(tx, handle)
            }
            threaded => threaded,
        }
    }

    fn update(&mut self, batch: &[Bytes]) {
        match self {
            Hashing::Inline(h) => {
                for c in batch {
                    h.update(c);
                }
            }
            // Cloning the batch clones reference counts, not bytes.
            Hashing::Thread(tx, _) => {
                let _ = tx.send(batch.to_vec());
            }
        }
    }

    fn finish(self) -> std::io::Result<ContentHasher> {
        match self {
            Hashing::Inline(h) => Ok(h),
            Hashing::Thread(tx, handle) => {
                drop(tx);
                handle
                    .join()
                    .map_err(|_| std::io::Error::other("the hashing thread panicked"))
            }
        }
    }
}

/// Stream `body` onto the end of the file at `path`, hashing as it goes, on a
/// blocking worker so hashing and disk writes overlap with network reads.
/// Past [`PARALLEL_HASH`] bytes the hash runs on a second thread that is fed
/// the same reference-counted chunks the writer writes, so neither waits for
/// the other.
async fn write_body(
    path: PathBuf,
    hasher: ContentHasher,
    body: axum::body::Body,
    early_writeback: bool,
    sync_at_end: bool,
) -> Result<(ContentHasher, u64, Option<PendingSync>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(32);
    let worker = tokio::task::spawn_blocking(
        move || -> std::io::Result<(ContentHasher, u64, Option<PendingSync>)> {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            let mut hashing = Hashing::Inline(hasher);
            let mut written = 0u64;
            let mut unflushed = 0u64;
            let mut flusher: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> =
                None;
            while let Some(batch) = rx.blocking_recv() {
                let len: u64 = batch.iter().map(|c| c.len() as u64).sum();
                if written + len >= PARALLEL_HASH {
                    hashing = hashing.on_own_thread();
                }
                hashing.update(&batch);
                write_chunks(&mut file, &batch)?;
                written += len;
                unflushed += len;
                if early_writeback && unflushed >= FLUSH_EVERY {
                    unflushed = 0;
                    // Large uploads start their writeback while bytes still
                    // arrive, so the fsync before publishing finds little left.
                    if flusher.is_none() {
                        let f = file.try_clone()?;
                        let (tx, rx) = std::sync::mpsc::channel::<()>();
                        let handle = std::thread::spawn(move || {
                            while rx.recv().is_ok() {
                                while rx.try_recv().is_ok() {}
                                let _ = f.sync_data();
                            }
                        });
                        flusher = Some((tx, handle));
                    }
                    if let Some((tx, _)) = &flusher {
                        let _ = tx.send(());
                    }
                }
            }
            if let Some((tx, handle)) = flusher {
                drop(tx);
                let _ = handle.join();
            }
            // The fsync runs while the hashing thread finishes its last chunks
            // and, after that, while the blob is renamed into place.
            let pending = sync_at_end.then(|| std::thread::spawn(move || file.sync_data()));
            let hasher = hashing.finish()?;
            Ok((hasher, written, pending))
        },
    );
    let mut stream = body.into_data_stream();
    let mut batch: Vec<Bytes> = vec![];
    let mut batch_len = 0usize;
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                // Chunks are handed over as they came (no copy), in batches.
                batch_len += c.len();
                batch.push(c);
                if batch_len >= HAND_OFF {
                    batch_len = 0;
                    if tx.send(std::mem::take(&mut batch)).await.is_err() {
                        break;
                    }
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
    drop(tx);
    let result = worker
        .await
        .map_err(|e| RegistryError::Io(std::io::Error::other(e)))??;
    if let Some(e) = failure {
        return Err(RegistryError::Io(std::io::Error::other(format!(
            "request body: {e}"
        ))));
    }
    Ok(result)
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
