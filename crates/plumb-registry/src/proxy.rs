//! Pull-through caches: repositories under a configured prefix mirror an
//! upstream registry.
//!
//! A pull of `dockerhub/library/alpine:3.20` (with the `proxy` entry of
//! prefix `dockerhub`) is answered from the local store when it can be and
//! from the upstream's `library/alpine` otherwise; what the upstream serves
//! is stored as ordinary content of the local repository, so GC, referrers
//! and the tag list behave as for pushed content. These repositories are
//! read-only: pushes and deletes are refused.
//!
//! - A manifest by tag is served from the cache when the tag was checked
//!   within `tag_ttl`; otherwise the upstream is asked with a HEAD, and the
//!   manifest fetched (by digest, verified) only when the tag moved. When
//!   the upstream is unreachable or fails, the cached tag is served (with a
//!   warning in the log and a count in `plumb_registry_proxy_upstream_errors`).
//! - A manifest by digest, or a blob, is served from the store, else fetched
//!   once and kept.
//! - An uncached blob is streamed to the client while it is written to an
//!   upload file and hashed; it is published only when its digest checks
//!   (a mismatch discards it and breaks the client's response before its
//!   last bytes). Concurrent requests for a blob being fetched wait for that
//!   one fetch and are then served from the store.
//!
//! Upstream calls go through plumb-oci's [`RegistryClient`], which answers
//! the upstream's Basic or Bearer challenges with the configured credentials;
//! the clients and the cache's bookkeeping live in [`crate::upstream`].

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use plumb_oci::client::ClientError;
use plumb_oci::{ContentHasher, Digest, RepositoryName, Tag};
use tokio::io::AsyncWriteExt as _;

use crate::error::RegistryError;
use crate::service::{ManifestRef, Registry, ServedManifest, now};

type Result<T> = std::result::Result<T, RegistryError>;

/// What a pull-through cache serves for a blob GET.
pub enum ProxiedBlob {
    /// The store holds it: serve it like any blob.
    Local,
    /// It is arriving from upstream: its length (when declared) and bytes.
    Streaming {
        /// Content length, when the upstream declared it.
        len: Option<u64>,
        /// The bytes, ending in an error if the fetch fails or the digest is wrong.
        body: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    },
}

/// A one-line description of an upstream failure (never credentials: the
/// client's errors carry URLs and the upstream's messages only).
fn describe(e: &ClientError) -> String {
    e.to_string()
}

impl Registry {
    /// Whether `repo` is a pull-through cache's (read-only) repository.
    pub fn is_mirror(&self, repo: &RepositoryName) -> bool {
        self.config.proxy_for(repo.as_str()).is_some()
    }

    /// The refusal of a write to a pull-through cache's repository.
    pub(crate) fn mirror_write_refused(&self, repo: &RepositoryName) -> RegistryError {
        let (rule, up) = self
            .config
            .proxy_for(repo.as_str())
            .map_or(("", ""), |(r, u)| (r.prefix.as_str(), u));
        RegistryError::Refused {
            message: format!(
                "{repo} is a read-only pull-through cache of {up} (proxy prefix {rule:?}): push to the upstream, or to a repository outside {rule}/"
            ),
            policy: "proxy",
        }
    }

    /// Serve a manifest of a pull-through cache's repository.
    pub(crate) async fn proxy_manifest(
        &self,
        repo: &RepositoryName,
        reference: &ManifestRef,
    ) -> Result<ServedManifest> {
        let Some((up, name)) = self.proxy.as_ref().and_then(|p| p.upstream_for(repo)) else {
            return self.get_manifest(repo, reference).await;
        };
        let proxy = self.proxy.as_ref().ok_or(RegistryError::NotFound)?;
        let m = &self.metrics;
        let host = up.rule.host.as_str();
        let upstream_err = |e: &ClientError| RegistryError::Upstream {
            upstream: up.rule.upstream.clone(),
            message: describe(e),
        };
        match reference {
            ManifestRef::Digest(d) => {
                if self.meta.manifest(repo.as_str(), d)?.is_some() {
                    m.proxy("manifest", "hit");
                    return self.get_manifest(repo, reference).await;
                }
                let fetched = match up.client.manifest_get(host, &name, &d.to_string()).await {
                    Ok(f) => f,
                    Err(ClientError::Status { status: 404, .. }) => {
                        return Err(RegistryError::ManifestUnknown(d.to_string()));
                    }
                    Err(e) => {
                        m.proxy_error("manifest");
                        tracing::warn!(%repo, upstream = %up.rule.upstream, error = %describe(&e), "pull-through fetch failed");
                        return Err(upstream_err(&e));
                    }
                };
                self.keep_manifest(repo, None, fetched).await?;
                m.proxy("manifest", "miss");
                self.get_manifest(repo, reference).await
            }
            ManifestRef::Tag(t) => {
                let key = format!("{repo}\0{t}");
                let cached = self.meta.tag(repo.as_str(), t.as_str())?;
                if cached.is_some() && proxy.fresh(&key, up.rule.tag_ttl) {
                    m.proxy("manifest", "hit");
                    return self.get_manifest(repo, reference).await;
                }
                let head = up.client.manifest_head(host, &name, t.as_str()).await;
                let result = match head {
                    Ok(Some((d, _, _))) => {
                        if cached.as_ref().is_some_and(|c| c.digest == d)
                            && self.meta.manifest(repo.as_str(), &d)?.is_some()
                        {
                            proxy.mark_checked(key);
                            m.proxy("manifest", "hit");
                            return self.get_manifest(repo, reference).await;
                        }
                        match up.client.manifest_get(host, &name, &d.to_string()).await {
                            Ok(fetched) => Ok(fetched),
                            Err(e) => Err(e),
                        }
                    }
                    Ok(None) => {
                        // The upstream no longer has the tag: neither does the mirror.
                        return Err(RegistryError::ManifestUnknown(t.to_string()));
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(fetched) => {
                        self.keep_manifest(repo, Some(t), fetched).await?;
                        proxy.mark_checked(key);
                        m.proxy("manifest", "miss");
                        self.get_manifest(repo, reference).await
                    }
                    Err(e) => {
                        m.proxy_error("manifest");
                        if cached.is_some() {
                            tracing::warn!(%repo, tag = %t, upstream = %up.rule.upstream, error = %describe(&e), "upstream unavailable: serving the cached tag");
                            m.proxy("manifest", "hit");
                            return self.get_manifest(repo, reference).await;
                        }
                        tracing::warn!(%repo, tag = %t, upstream = %up.rule.upstream, error = %describe(&e), "pull-through fetch failed");
                        Err(upstream_err(&e))
                    }
                }
            }
        }
    }

    /// Store a manifest fetched from upstream (verified by its digest) in
    /// `repo`, under `tag` when given.
    async fn keep_manifest(
        &self,
        repo: &RepositoryName,
        tag: Option<&Tag>,
        fetched: plumb_oci::client::FetchedManifest,
    ) -> Result<()> {
        let limit = self.config.max_manifest_bytes;
        if fetched.bytes.len() as u64 > limit {
            return Err(RegistryError::TooLarge {
                what: "upstream manifest",
                size: fetched.bytes.len() as u64,
                limit,
            });
        }
        let reference = match tag {
            Some(t) => ManifestRef::Tag(t.clone()),
            None => ManifestRef::Digest(fetched.digest.clone()),
        };
        self.store_manifest(
            repo,
            &reference,
            Some(&fetched.media_type),
            fetched.bytes,
            &[],
            true,
        )
        .await?;
        Ok(())
    }

    /// The size of a blob of a pull-through cache's repository: from the
    /// store, else from the upstream (without fetching it).
    pub(crate) async fn proxy_blob_size(&self, repo: &RepositoryName, d: &Digest) -> Result<u64> {
        if let Some(size) = self.cached_blob(repo, d)? {
            return Ok(size);
        }
        let Some((up, name)) = self.proxy.as_ref().and_then(|p| p.upstream_for(repo)) else {
            return self.blob_size(repo, d);
        };
        match up.client.blob_size(&up.rule.host, &name, d).await {
            Ok(Some(size)) => Ok(size),
            Ok(None) => Err(RegistryError::BlobUnknown(d.clone())),
            Err(e) => {
                self.metrics.proxy_error("blob");
                tracing::warn!(%repo, upstream = %up.rule.upstream, error = %describe(&e), "pull-through HEAD failed");
                Err(RegistryError::Upstream {
                    upstream: up.rule.upstream.clone(),
                    message: describe(&e),
                })
            }
        }
    }

    /// The size of blob `d` when the store holds it, linking it into `repo`
    /// when another repository brought it.
    fn cached_blob(&self, repo: &RepositoryName, d: &Digest) -> Result<Option<u64>> {
        if let Some(size) = self.meta.repo_blob(repo.as_str(), d)? {
            return Ok(Some(size));
        }
        if let Some(rec) = self.meta.blob(d)?
            && self.blobs.blob_path(d).exists()
            && self.meta.link_blob(repo.as_str(), d, now())?
        {
            return Ok(Some(rec.size));
        }
        Ok(None)
    }

    /// Serve a blob of a pull-through cache's repository: from the store, or
    /// by the one fetch of it from upstream (started here, or joined).
    pub(crate) async fn proxy_blob(
        self: &Arc<Self>,
        repo: &RepositoryName,
        d: &Digest,
    ) -> Result<ProxiedBlob> {
        let Some(proxy) = self.proxy.as_ref() else {
            return Ok(ProxiedBlob::Local);
        };
        let Some((up, name)) = proxy.upstream_for(repo) else {
            return Ok(ProxiedBlob::Local);
        };
        loop {
            if self.cached_blob(repo, d)?.is_some() {
                self.metrics.proxy("blob", "hit");
                return Ok(ProxiedBlob::Local);
            }
            let (tx, mut waiter) = {
                let mut inflight = proxy
                    .inflight
                    .lock()
                    .map_err(|_| RegistryError::Store("proxy state poisoned".into()))?;
                match inflight.get(d) {
                    Some(rx) => (None, Some(rx.clone())),
                    None => {
                        let (tx, rx) = tokio::sync::watch::channel(None);
                        inflight.insert(d.clone(), rx);
                        (Some(tx), None)
                    }
                }
            };
            if let Some(rx) = waiter.as_mut() {
                let outcome = rx
                    .wait_for(|v| v.is_some())
                    .await
                    .map(|v| v.clone())
                    .ok()
                    .flatten();
                match outcome {
                    Some(Ok(())) => continue,
                    Some(Err(message)) => {
                        return Err(RegistryError::Upstream {
                            upstream: up.rule.upstream.clone(),
                            message,
                        });
                    }
                    // The fetch ended without a word (its task died): try again.
                    None => continue,
                }
            }
            let Some(tx) = tx else { continue };
            let done = |outcome: std::result::Result<(), String>| {
                if let Ok(mut m) = proxy.inflight.lock() {
                    m.remove(d);
                }
                let _ = tx.send(Some(outcome));
            };
            // Another fetch may have finished between the check and the claim.
            if self.cached_blob(repo, d)?.is_some() {
                done(Ok(()));
                self.metrics.proxy("blob", "hit");
                return Ok(ProxiedBlob::Local);
            }
            let stream = match up.client.blob_stream(&up.rule.host, &name, d).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    done(Err(format!("the upstream has no blob {d}")));
                    return Err(RegistryError::BlobUnknown(d.clone()));
                }
                Err(e) => {
                    self.metrics.proxy_error("blob");
                    tracing::warn!(%repo, upstream = %up.rule.upstream, error = %describe(&e), "pull-through fetch failed");
                    done(Err(describe(&e)));
                    return Err(RegistryError::Upstream {
                        upstream: up.rule.upstream.clone(),
                        message: describe(&e),
                    });
                }
            };
            self.metrics.proxy("blob", "miss");
            let (body_tx, body_rx) = tokio::sync::mpsc::channel(8);
            let len = stream.len;
            let registry = Arc::clone(self);
            let (repo, d) = (repo.clone(), d.clone());
            let upstream = up.rule.upstream.clone();
            tokio::spawn(async move {
                let outcome = registry.fetch_blob(&repo, &d, stream, body_tx).await;
                if let Err(e) = &outcome {
                    registry.metrics.proxy_error("blob");
                    tracing::warn!(%repo, digest = %d, %upstream, error = %e, "pull-through blob fetch failed; nothing was stored");
                }
                if let Some(p) = registry.proxy.as_ref()
                    && let Ok(mut m) = p.inflight.lock()
                {
                    m.remove(&d);
                }
                let _ = tx.send(Some(outcome.map_err(|e| e.to_string())));
            });
            return Ok(ProxiedBlob::Streaming { len, body: body_rx });
        }
    }

    /// Write an upstream blob to an upload file while hashing it and passing
    /// it on to `client` (for as long as the client listens); publish it
    /// when its digest checks. The last chunk reaches the client only then.
    async fn fetch_blob(
        &self,
        repo: &RepositoryName,
        d: &Digest,
        mut stream: plumb_oci::client::BlobStream,
        client: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    ) -> Result<()> {
        let id = self.blobs.new_upload();
        let path = self.blobs.upload_path(&id);
        let result = async {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .await?;
            let mut hasher = ContentHasher::new(d.algorithm());
            let mut size = 0u64;
            let mut listening = true;
            let mut held: Option<Bytes> = None;
            while let Some(chunk) = stream.bytes.next().await {
                let chunk = chunk.map_err(|e| RegistryError::Upstream {
                    upstream: repo.to_string(),
                    message: describe(&e),
                })?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                self.metrics.proxy_fetched_bytes.inc_by(chunk.len() as u64);
                file.write_all(&chunk).await?;
                if let Some(prev) = held.replace(chunk)
                    && listening
                {
                    listening = client.send(Ok(prev)).await.is_ok();
                }
            }
            file.flush().await?;
            if self.blobs.fsync() {
                file.sync_all().await?;
            }
            drop(file);
            let actual = hasher.finish();
            if &actual != d {
                return Err(RegistryError::DigestInvalid(format!(
                    "the upstream served content with digest {actual} for {d}; it was discarded"
                )));
            }
            let staged = path.clone();
            tokio::task::block_in_place(|| -> Result<()> {
                let _guard = self.blobs.lock(d);
                let held = self.meta.blob(d)?.is_some() && self.blobs.blob_path(d).exists();
                if held {
                    let _ = std::fs::remove_file(&staged);
                } else {
                    self.blobs.publish(&staged, d)?;
                }
                self.meta.add_blob(repo.as_str(), d, size, now())?;
                Ok(())
            })?;
            self.touch(d);
            if let Some(last) = held
                && listening
            {
                let _ = client.send(Ok(last)).await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = &result {
            let _ = std::fs::remove_file(&path);
            let _ = client.send(Err(std::io::Error::other(e.to_string()))).await;
        }
        result
    }
}
