//! The registry's metadata: an embedded transactional store (redb).
//!
//! Blobs live on disk ([`crate::blobs`]); everything *about* them lives here,
//! changed only inside write transactions, so a crash leaves either the old or
//! the new state and never half of a manifest push:
//!
//! | table | key | value |
//! |---|---|---|
//! | `blobs` | digest | size, last touched |
//! | `repo_blobs` | digest `\0` repo | linked at |
//! | `manifests` | repo `\0` digest | [`ManifestRecord`] |
//! | `manifest_bytes` | repo `\0` digest | the manifest itself |
//! | `tags` | repo `\0` tag | [`TagRecord`] |
//! | `blob_users` | blob `\0` repo `\0` manifest | - (a manifest's reference to a blob or child manifest) |
//! | `referrers` | repo `\0` subject `\0` referrer | - |
//! | `repos` | repo | created at |
//! | `blob_intents` | random key per finishing upload | [`BlobIntent`] |
//!
//! `blob_users` is what makes garbage collection safe: a manifest push checks
//! its blobs and records its references in one transaction, and a blob is
//! deleted only by a transaction that finds no reference to it; redb runs
//! write transactions one at a time, so the two cannot interleave.
//!
//! Finishing a blob upload costs one durable commit, made while the last
//! bytes still arrive: a `blob_intents` entry naming the digest and the
//! repository. Once the file is verified and durable, a commit that is not
//! fsynced records the blob and removes the intent ([`Metadata::confirm_blob`]);
//! the next durable commit (any manifest push that uses the blob is one)
//! carries it to disk. After a crash, [`Metadata::intents`] names the uploads
//! whose files must be checked again, and the blob is recorded then if its
//! file is intact.

use std::collections::BTreeMap;
use std::path::Path;

use plumb_oci::Digest;
use redb::{ReadableDatabase as _, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;

type Result<T> = std::result::Result<T, RegistryError>;

const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
const REPO_BLOBS: TableDefinition<&str, u64> = TableDefinition::new("repo_blobs");
const MANIFESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("manifests");
const TAGS: TableDefinition<&str, &[u8]> = TableDefinition::new("tags");
const BLOB_USERS: TableDefinition<&str, u8> = TableDefinition::new("blob_users");
const REFERRERS: TableDefinition<&str, u8> = TableDefinition::new("referrers");
const REPOS: TableDefinition<&str, u64> = TableDefinition::new("repos");
const MANIFEST_BYTES: TableDefinition<&str, &[u8]> = TableDefinition::new("manifest_bytes");
const INTENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("blob_intents");

/// A stored blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobRecord {
    /// Size in bytes.
    pub size: u64,
    /// Unix seconds of the last upload or mount.
    pub touched: i64,
}

/// An upload about to publish a blob (see the module's documentation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlobIntent {
    /// The digest the upload claims.
    pub digest: Digest,
    /// The repository it is uploaded to.
    pub repo: String,
}

/// A stored manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManifestRecord {
    /// Media type it is served with.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// Artifact type for the referrers API.
    pub artifact_type: Option<String>,
    /// Annotations for the referrers API.
    pub annotations: BTreeMap<String, String>,
    /// Its subject, if it is a referrer.
    pub subject: Option<Digest>,
    /// Blobs and child manifests it references.
    pub references: Vec<Digest>,
    /// Child manifests (an index's entries), a subset of `references`.
    pub children: Vec<Digest>,
    /// Unix seconds of the push.
    pub pushed_at: i64,
}

/// A tag.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagRecord {
    /// The manifest it names.
    pub digest: Digest,
    /// Unix seconds of the push that set it.
    pub pushed_at: i64,
}

fn k2(a: &str, b: &str) -> String {
    format!("{a}\0{b}")
}

fn k3(a: &str, b: &str, c: &str) -> String {
    format!("{a}\0{b}\0{c}")
}

/// The `[start, end)` key range of everything under `prefix\0`.
fn prefix_range(prefix: &str) -> (String, String) {
    (format!("{prefix}\0"), format!("{prefix}\u{1}"))
}

fn last_part(key: &str) -> &str {
    key.rsplit('\0').next().unwrap_or(key)
}

/// The entries of `table` under `prefix\0`, in key order.
fn under<'t, V: redb::Value + 'static>(
    table: &'t impl ReadableTable<&'static str, V>,
    prefix: &str,
) -> Result<redb::Range<'t, &'static str, V>> {
    let (a, b) = prefix_range(prefix);
    Ok(table.range(a.as_str()..b.as_str())?)
}

/// The tags of `repo` (in `tags`) that name `digest`, in name order.
fn tags_naming(
    tags: &impl ReadableTable<&'static str, &'static [u8]>,
    repo: &str,
    digest: &Digest,
) -> Result<Vec<String>> {
    let mut naming = vec![];
    for item in under(tags, repo)? {
        let (k, v) = item?;
        let rec: TagRecord = serde_json::from_slice(v.value())?;
        if &rec.digest == digest {
            naming.push(last_part(k.value()).to_owned());
        }
    }
    Ok(naming)
}

/// The JSON record `table` holds under `key`, decoded.
#[inline]
fn get_record<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>> {
    Ok(match table.get(key)? {
        Some(v) => Some(serde_json::from_slice(v.value())?),
        None => None,
    })
}

/// The entries of `entries` whose key `name` accepts, each named by it and
/// with its JSON record decoded; the others are skipped undecoded.
fn records<K, T: DeserializeOwned>(
    entries: redb::Range<'_, &'static str, &'static [u8]>,
    name: impl Fn(&str) -> Option<K>,
) -> Result<Vec<(K, T)>> {
    let mut out = vec![];
    for item in entries {
        let (k, v) = item?;
        if let Some(name) = name(k.value()) {
            out.push((name, serde_json::from_slice(v.value())?));
        }
    }
    Ok(out)
}

/// The metadata store.
#[derive(Debug)]
pub struct Metadata {
    db: redb::Database,
}

/// What a manifest push must satisfy, checked inside its transaction.
pub struct ManifestWrite<'a> {
    /// Repository.
    pub repo: &'a str,
    /// Manifest digest.
    pub digest: &'a Digest,
    /// What to store.
    pub record: ManifestRecord,
    /// The manifest's bytes (kept in the same transaction: one fsync per push).
    pub bytes: &'a [u8],
    /// Blobs that must be in the repository.
    pub required_blobs: &'a [Digest],
    /// Child manifests that must be in the repository.
    pub required_manifests: &'a [Digest],
    /// Tags to point at it.
    pub tags: &'a [&'a str],
    /// Refuse the write when a required blob or manifest is missing (off
    /// only for a pull-through cache, whose blobs arrive when first pulled).
    pub check_references: bool,
}

impl Metadata {
    /// Open or create the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = redb::Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(BLOBS)?;
        txn.open_table(REPO_BLOBS)?;
        txn.open_table(MANIFESTS)?;
        txn.open_table(TAGS)?;
        txn.open_table(BLOB_USERS)?;
        txn.open_table(REFERRERS)?;
        txn.open_table(REPOS)?;
        txn.open_table(MANIFEST_BYTES)?;
        txn.open_table(INTENTS)?;
        txn.commit()?;
        Ok(Metadata { db })
    }

    /// The blob's record, if the store holds it.
    pub fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        let txn = self.db.begin_read()?;
        get_record(&txn.open_table(BLOBS)?, &digest.to_string())
    }

    /// Whether `repo` holds blob `digest`; returns its size.
    pub fn repo_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let txn = self.db.begin_read()?;
        let links = txn.open_table(REPO_BLOBS)?;
        if links.get(k2(&digest.to_string(), repo).as_str())?.is_none() {
            return Ok(None);
        }
        let blobs = txn.open_table(BLOBS)?;
        let rec: Option<BlobRecord> = get_record(&blobs, &digest.to_string())?;
        Ok(rec.map(|r| r.size))
    }

    /// Record a published blob and link it into `repo`.
    pub fn add_blob(&self, repo: &str, digest: &Digest, size: u64, now: i64) -> Result<()> {
        self.record_blob(repo, digest, size, now, None)
    }

    /// Durably note, under `key`, that an upload is about to publish
    /// `intent.digest`.
    pub fn add_intent(&self, key: &str, intent: &BlobIntent) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(INTENTS)?
            .insert(key, serde_json::to_vec(intent)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Drop the intent noted under `key` (the upload failed, or recovery
    /// settled it).
    pub fn drop_intent(&self, key: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        txn.open_table(INTENTS)?.remove(key)?;
        txn.commit()?;
        Ok(())
    }

    /// Record a verified, durable blob and link it into `repo`, ending the
    /// intent noted under `key`, in a commit that is not fsynced: lost in a
    /// crash, it is made again from the intent when the store opens.
    pub fn confirm_blob(
        &self,
        key: &str,
        repo: &str,
        digest: &Digest,
        size: u64,
        now: i64,
    ) -> Result<()> {
        self.record_blob(repo, digest, size, now, Some(key))
    }

    /// Intents left by uploads a crash interrupted.
    pub fn intents(&self) -> Result<Vec<(String, BlobIntent)>> {
        let txn = self.db.begin_read()?;
        records(txn.open_table(INTENTS)?.iter()?, |k| Some(k.to_owned()))
    }

    fn record_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        now: i64,
        intent: Option<&str>,
    ) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        if let Some(key) = intent {
            txn.set_durability(redb::Durability::None)?;
            txn.open_table(INTENTS)?.remove(key)?;
        }
        {
            let mut blobs = txn.open_table(BLOBS)?;
            let rec = serde_json::to_vec(&BlobRecord { size, touched: now })?;
            blobs.insert(digest.to_string().as_str(), rec.as_slice())?;
            let mut links = txn.open_table(REPO_BLOBS)?;
            links.insert(k2(&digest.to_string(), repo).as_str(), now as u64)?;
            let mut repos = txn.open_table(REPOS)?;
            if repos.get(repo)?.is_none() {
                repos.insert(repo, now as u64)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Link an existing blob into `repo` (cross-repository mount); false when
    /// the store does not hold it.
    pub fn link_blob(&self, repo: &str, digest: &Digest, now: i64) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let mut blobs = txn.open_table(BLOBS)?;
            let key = digest.to_string();
            let Some(mut rec) = get_record::<BlobRecord>(&blobs, &key)? else {
                return Ok(false);
            };
            rec.touched = now;
            let rec = serde_json::to_vec(&rec)?;
            blobs.insert(key.as_str(), rec.as_slice())?;
            let mut links = txn.open_table(REPO_BLOBS)?;
            links.insert(k2(&key, repo).as_str(), now as u64)?;
            let mut repos = txn.open_table(REPOS)?;
            if repos.get(repo)?.is_none() {
                repos.insert(repo, now as u64)?;
            }
        }
        txn.commit()?;
        Ok(true)
    }

    /// Remove `repo`'s link to a blob; false when there was none.
    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let txn = self.db.begin_write()?;
        let removed = {
            let mut links = txn.open_table(REPO_BLOBS)?;
            links
                .remove(k2(&digest.to_string(), repo).as_str())?
                .is_some()
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Store a manifest (and optionally a tag) after checking, in the same
    /// transaction, that everything it references is present. `check_tag`
    /// sees the tag's current record and may refuse the write.
    pub fn put_manifest(
        &self,
        write: ManifestWrite<'_>,
        check_tag: impl Fn(&str, Option<&TagRecord>) -> Result<()>,
    ) -> Result<()> {
        let ManifestWrite {
            repo,
            digest,
            record,
            required_blobs,
            required_manifests,
            tags: tag_names,
            bytes,
            check_references,
        } = write;
        let now = record.pushed_at;
        let txn = self.db.begin_write()?;
        {
            let links = txn.open_table(REPO_BLOBS)?;
            let blobs = txn.open_table(BLOBS)?;
            let required_blobs = if check_references {
                required_blobs
            } else {
                &[]
            };
            let required_manifests = if check_references {
                required_manifests
            } else {
                &[]
            };
            for b in required_blobs {
                let key = b.to_string();
                if links.get(k2(&key, repo).as_str())?.is_none()
                    || blobs.get(key.as_str())?.is_none()
                {
                    return Err(RegistryError::ManifestBlobUnknown(b.clone()));
                }
            }
            drop((links, blobs));
            let mut manifests = txn.open_table(MANIFESTS)?;
            for m in required_manifests {
                if manifests.get(k2(repo, &m.to_string()).as_str())?.is_none() {
                    return Err(RegistryError::ManifestBlobUnknown(m.clone()));
                }
            }
            let mut tags = txn.open_table(TAGS)?;
            for tag in tag_names {
                let current: Option<TagRecord> = get_record(&tags, &k2(repo, tag))?;
                check_tag(tag, current.as_ref())?;
                if current.as_ref().map(|c| &c.digest) != Some(digest) {
                    let rec = serde_json::to_vec(&TagRecord {
                        digest: digest.clone(),
                        pushed_at: now,
                    })?;
                    tags.insert(k2(repo, tag).as_str(), rec.as_slice())?;
                }
            }
            let key = k2(repo, &digest.to_string());
            let existed = manifests.get(key.as_str())?.is_some();
            if !existed {
                let mut users = txn.open_table(BLOB_USERS)?;
                for r in record.references.iter().chain(std::iter::once(digest)) {
                    users.insert(k3(&r.to_string(), repo, &digest.to_string()).as_str(), 0)?;
                }
                if let Some(subject) = &record.subject {
                    let mut referrers = txn.open_table(REFERRERS)?;
                    referrers.insert(
                        k3(repo, &subject.to_string(), &digest.to_string()).as_str(),
                        0,
                    )?;
                }
                let rec = serde_json::to_vec(&record)?;
                manifests.insert(key.as_str(), rec.as_slice())?;
                let mut content = txn.open_table(MANIFEST_BYTES)?;
                content.insert(key.as_str(), bytes)?;
            }
            let mut repos = txn.open_table(REPOS)?;
            if repos.get(repo)?.is_none() {
                repos.insert(repo, now as u64)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// A manifest's record.
    pub fn manifest(&self, repo: &str, digest: &Digest) -> Result<Option<ManifestRecord>> {
        let txn = self.db.begin_read()?;
        get_record(&txn.open_table(MANIFESTS)?, &k2(repo, &digest.to_string()))
    }

    /// A manifest's record and bytes.
    pub fn manifest_with_bytes(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<(ManifestRecord, Vec<u8>)>> {
        let txn = self.db.begin_read()?;
        let key = k2(repo, &digest.to_string());
        let Some(rec) = get_record::<ManifestRecord>(&txn.open_table(MANIFESTS)?, &key)? else {
            return Ok(None);
        };
        let content = txn.open_table(MANIFEST_BYTES)?;
        let Some(bytes) = content.get(key.as_str())? else {
            return Ok(None);
        };
        Ok(Some((rec, bytes.value().to_vec())))
    }

    /// A tag's record.
    pub fn tag(&self, repo: &str, tag: &str) -> Result<Option<TagRecord>> {
        let txn = self.db.begin_read()?;
        get_record(&txn.open_table(TAGS)?, &k2(repo, tag))
    }

    /// All tags of `repo`, sorted by name.
    pub fn tags(&self, repo: &str) -> Result<Vec<(String, TagRecord)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(TAGS)?;
        records(under(&t, repo)?, |k| Some(last_part(k).to_owned()))
    }

    /// All manifests of `repo`.
    pub fn manifests(&self, repo: &str) -> Result<Vec<(Digest, ManifestRecord)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(MANIFESTS)?;
        records(under(&t, repo)?, |k| last_part(k).parse().ok())
    }

    /// The storage a repository prefix uses, for quotas: the sizes of the
    /// distinct blobs linked into the repositories `under` accepts (a blob
    /// in several of them counts once), plus their manifests' sizes; and
    /// whether blob `digest` is among those blobs already.
    pub fn usage(
        &self,
        under: impl Fn(&str) -> bool,
        digest: Option<&Digest>,
    ) -> Result<(u64, bool)> {
        let txn = self.db.begin_read()?;
        let links = txn.open_table(REPO_BLOBS)?;
        let blobs = txn.open_table(BLOBS)?;
        let wanted = digest.map(|d| d.to_string());
        let mut total = 0u64;
        let mut held = false;
        let mut last: Option<String> = None;
        // Keys are `digest\0repo`, sorted: a digest's links are adjacent.
        for item in links.iter()? {
            let (k, _) = item?;
            let Some((d, repo)) = k.value().split_once('\0') else {
                continue;
            };
            if !under(repo) || last.as_deref() == Some(d) {
                continue;
            }
            last = Some(d.to_owned());
            if wanted.as_deref() == Some(d) {
                held = true;
            }
            if let Some(rec) = get_record::<BlobRecord>(&blobs, d)? {
                total += rec.size;
            }
        }
        let manifests = txn.open_table(MANIFESTS)?;
        for item in manifests.iter()? {
            let (k, v) = item?;
            let repo = k.value().split('\0').next().unwrap_or("");
            if under(repo) {
                let rec: ManifestRecord = serde_json::from_slice(v.value())?;
                total += rec.size;
            }
        }
        Ok((total, held))
    }

    /// Whether the repository has ever received content.
    pub fn repo_exists(&self, repo: &str) -> Result<bool> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(REPOS)?.get(repo)?.is_some())
    }

    /// All repository names, sorted.
    pub fn repositories(&self) -> Result<Vec<String>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(REPOS)?;
        let mut out = vec![];
        for item in t.iter()? {
            out.push(item?.0.value().to_owned());
        }
        Ok(out)
    }

    /// Manifests in `repo` whose subject is `subject`.
    pub fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<(Digest, ManifestRecord)>> {
        let txn = self.db.begin_read()?;
        let refs = txn.open_table(REFERRERS)?;
        let manifests = txn.open_table(MANIFESTS)?;
        let mut out = vec![];
        for item in under(&refs, &k2(repo, &subject.to_string()))? {
            let (k, _) = item?;
            let Ok(d) = last_part(k.value()).parse::<Digest>() else {
                continue;
            };
            if let Some(v) = manifests.get(k2(repo, &d.to_string()).as_str())? {
                out.push((d, serde_json::from_slice(v.value())?));
            }
        }
        Ok(out)
    }

    /// Delete a manifest and the tags naming it. `check` sees those tags and
    /// may refuse. False when there was no such manifest.
    pub fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        check: impl FnOnce(&[String]) -> Result<()>,
    ) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let naming = tags_naming(&txn.open_table(TAGS)?, repo, digest)?;
            check(&naming)?;
            if !Self::remove_manifest_in(&txn, repo, digest, &naming)? {
                return Ok(false);
            }
        }
        txn.commit()?;
        Ok(true)
    }

    fn remove_manifest_in(
        txn: &redb::WriteTransaction,
        repo: &str,
        digest: &Digest,
        tags_naming: &[String],
    ) -> Result<bool> {
        let mut manifests = txn.open_table(MANIFESTS)?;
        let Some(raw) = manifests
            .remove(k2(repo, &digest.to_string()).as_str())?
            .map(|v| v.value().to_vec())
        else {
            return Ok(false);
        };
        let rec: ManifestRecord = serde_json::from_slice(&raw)?;
        let mut users = txn.open_table(BLOB_USERS)?;
        for r in rec.references.iter().chain(std::iter::once(digest)) {
            users.remove(k3(&r.to_string(), repo, &digest.to_string()).as_str())?;
        }
        if let Some(subject) = &rec.subject {
            let mut referrers = txn.open_table(REFERRERS)?;
            referrers.remove(k3(repo, &subject.to_string(), &digest.to_string()).as_str())?;
        }
        let mut tags = txn.open_table(TAGS)?;
        for t in tags_naming {
            tags.remove(k2(repo, t).as_str())?;
        }
        let mut content = txn.open_table(MANIFEST_BYTES)?;
        content.remove(k2(repo, &digest.to_string()).as_str())?;
        Ok(true)
    }

    /// Delete a tag (not the manifest). `check` sees the tag's record and may
    /// refuse. False when there was no such tag.
    pub fn delete_tag(
        &self,
        repo: &str,
        tag: &str,
        check: impl FnOnce(&TagRecord) -> Result<()>,
    ) -> Result<bool> {
        self.remove_tag_when(repo, tag, |rec| check(rec).map(|()| true))
    }

    /// Delete `tag` only if it still names `expected` (retention, online).
    pub fn delete_tag_if(&self, repo: &str, tag: &str, expected: &TagRecord) -> Result<bool> {
        self.remove_tag_when(repo, tag, |rec| Ok(rec == expected))
    }

    /// Remove `tag` in one transaction if it exists and `decide` says so;
    /// true when it went.
    fn remove_tag_when(
        &self,
        repo: &str,
        tag: &str,
        decide: impl FnOnce(&TagRecord) -> Result<bool>,
    ) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let mut tags = txn.open_table(TAGS)?;
            let Some(rec) = get_record(&tags, &k2(repo, tag))? else {
                return Ok(false);
            };
            if !decide(&rec)? {
                return Ok(false);
            }
            tags.remove(k2(repo, tag).as_str())?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Delete a manifest during GC, re-checking inside the transaction that it
    /// is still collectable: no tag names it (other than orphaned signature
    /// tags, passed in `removable_tags`), no other manifest references it, it
    /// was pushed before `older_than`, and its subject (if any) is still absent
    /// when `require_subject_absent`.
    pub fn collect_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        older_than: i64,
        removable_tags: &[String],
        require_subject_absent: bool,
    ) -> Result<bool> {
        let txn = self.db.begin_write()?;
        {
            let manifests = txn.open_table(MANIFESTS)?;
            let Some(rec) =
                get_record::<ManifestRecord>(&manifests, &k2(repo, &digest.to_string()))?
            else {
                return Ok(false);
            };
            if rec.pushed_at >= older_than {
                return Ok(false);
            }
            if require_subject_absent
                && let Some(s) = &rec.subject
                && manifests.get(k2(repo, &s.to_string()).as_str())?.is_some()
            {
                return Ok(false);
            }
            drop(manifests);
            let naming = tags_naming(&txn.open_table(TAGS)?, repo, digest)?;
            if naming.iter().any(|name| !removable_tags.contains(name)) {
                return Ok(false);
            }
            let users = txn.open_table(BLOB_USERS)?;
            for item in under(&users, &k2(&digest.to_string(), repo))? {
                let (k, _) = item?;
                if last_part(k.value()) != digest.to_string() {
                    return Ok(false);
                }
            }
            drop(users);
            Self::remove_manifest_in(&txn, repo, digest, &naming)?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Every stored blob.
    pub fn blobs(&self) -> Result<Vec<(Digest, BlobRecord)>> {
        let txn = self.db.begin_read()?;
        records(txn.open_table(BLOBS)?.iter()?, |k| k.parse().ok())
    }

    /// Whether any manifest references `digest`.
    pub fn blob_in_use(&self, digest: &Digest) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(BLOB_USERS)?;
        Ok(under(&users, &digest.to_string())?.next().is_some())
    }

    /// Remove a blob's record and every repository link to it, if no manifest
    /// references it and it was not touched since `older_than`. The caller
    /// holds the blob's store lock and deletes the file after this commits.
    pub fn collect_blob(&self, digest: &Digest, older_than: i64) -> Result<Option<u64>> {
        let key = digest.to_string();
        let txn = self.db.begin_write()?;
        let size = {
            let users = txn.open_table(BLOB_USERS)?;
            let (a, b) = prefix_range(&key);
            if users.range(a.as_str()..b.as_str())?.next().is_some() {
                return Ok(None);
            }
            drop(users);
            let mut blobs = txn.open_table(BLOBS)?;
            let Some(rec) = get_record::<BlobRecord>(&blobs, &key)? else {
                return Ok(None);
            };
            if rec.touched >= older_than {
                return Ok(None);
            }
            blobs.remove(key.as_str())?;
            let mut links = txn.open_table(REPO_BLOBS)?;
            let doomed: Vec<String> = links
                .range(a.as_str()..b.as_str())?
                .map(|item| item.map(|(k, _)| k.value().to_owned()))
                .collect::<std::result::Result<_, _>>()?;
            for k in doomed {
                links.remove(k.as_str())?;
            }
            rec.size
        };
        txn.commit()?;
        Ok(Some(size))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tag_manifest(meta: &Metadata, bytes: &[u8], tag: &str, pushed_at: i64) -> TagRecord {
        let digest = Digest::sha256_of(bytes);
        let record = ManifestRecord {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
            subject: None,
            references: vec![],
            children: vec![],
            pushed_at,
        };
        let write = ManifestWrite {
            repo: "app",
            digest: &digest,
            record,
            bytes,
            required_blobs: &[],
            required_manifests: &[],
            tags: &[tag],
            check_references: true,
        };
        meta.put_manifest(write, |_, _| Ok(())).unwrap();
        meta.tag("app", tag).unwrap().unwrap()
    }

    #[test]
    fn a_tag_moved_since_retention_planned_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        let planned = tag_manifest(&meta, b"{\"first\":1}", "build-1", 100);
        let moved = tag_manifest(&meta, b"{\"second\":2}", "build-1", 200);
        assert_ne!(planned, moved);
        assert!(!meta.delete_tag_if("app", "build-1", &planned).unwrap());
        assert_eq!(meta.tag("app", "build-1").unwrap(), Some(moved.clone()));
        assert!(meta.delete_tag_if("app", "build-1", &moved).unwrap());
        assert_eq!(meta.tag("app", "build-1").unwrap(), None);
        assert!(!meta.delete_tag_if("app", "build-1", &moved).unwrap());
    }

    #[test]
    fn a_tag_delete_refused_by_its_check_keeps_the_tag() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&dir.path().join("m.redb")).unwrap();
        let rec = tag_manifest(&meta, b"{}", "v1.0.0", 100);
        let refused = meta.delete_tag("app", "v1.0.0", |_| {
            Err(RegistryError::TagInvalid("immutable".into()))
        });
        assert!(refused.is_err());
        assert_eq!(meta.tag("app", "v1.0.0").unwrap(), Some(rec));
        assert!(meta.delete_tag("app", "v1.0.0", |_| Ok(())).unwrap());
        assert_eq!(meta.tag("app", "v1.0.0").unwrap(), None);
    }
}
