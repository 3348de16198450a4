//! Retention and garbage collection, safe to run while the registry serves.
//!
//! One run has four phases:
//!
//! 1. **Retention** removes tags a repository's policy no longer keeps (keep
//!    the last N, keep tags matching a pattern, keep what was pushed within a
//!    duration; a tag any rule keeps stays).
//! 2. **Manifests** not reachable from a remaining tag are collected: reachable
//!    means tagged, listed by a reachable index, or a referrer (signature,
//!    SBOM, ...) of a reachable manifest. cosign's `sha256-<hex>.sig` tags do
//!    not keep anything alive on their own: they live exactly as long as the
//!    manifest they sign, so signatures of deleted subjects are collected.
//! 3. **Blobs** no manifest references are deleted.
//! 4. **Leftovers**: blob files without an index entry (a crash between
//!    rename and commit) and upload sessions idle for a day.
//!
//! Safety does not depend on timing: each deletion is a write transaction that
//! re-checks, against the current state, that nothing references its target,
//! and manifest pushes check and record their references in a transaction of
//! their own. The grace window (`gc.grace`) only protects content that a client
//! has uploaded or looked at but not yet referenced from a manifest.

use std::collections::{BTreeMap, BTreeSet};

use plumb_oci::Digest;
use serde::Serialize;

use crate::error::RegistryError;
use crate::meta::{ManifestRecord, TagRecord};
use crate::service::{Registry, now};

/// Idle upload sessions older than this are abandoned.
pub const UPLOAD_EXPIRY_SECS: i64 = 24 * 3600;

/// What a GC run removed (or, in a dry run, would remove).
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct GcReport {
    /// True when nothing was deleted.
    pub dry_run: bool,
    /// `repo:tag` removed by retention.
    pub tags: Vec<String>,
    /// `repo@digest` of collected manifests.
    pub manifests: Vec<String>,
    /// Collected blob digests.
    pub blobs: Vec<String>,
    /// Bytes freed by collected blobs.
    pub bytes_freed: u64,
    /// Abandoned uploads removed.
    pub uploads: usize,
}

/// Whether `tag` is one of cosign's attachment tags (`sha256-<hex>.sig|.att|.sbom`);
/// returns the digest it attaches to.
pub fn attachment_subject(tag: &str) -> Option<Digest> {
    let (stem, suffix) = tag.rsplit_once('.')?;
    if !matches!(suffix, "sig" | "att" | "sbom") {
        return None;
    }
    let (alg, hex) = stem.split_once('-')?;
    format!("{alg}:{hex}").parse().ok()
}

fn retained(
    tags: &[(String, TagRecord)],
    retention: &crate::config::Retention,
    now: i64,
) -> BTreeSet<String> {
    let mut by_age: Vec<&(String, TagRecord)> = tags.iter().collect();
    by_age.sort_by(|a, b| b.1.pushed_at.cmp(&a.1.pushed_at).then(a.0.cmp(&b.0)));
    let mut keep = BTreeSet::new();
    for (i, (name, rec)) in by_age.iter().enumerate() {
        let last = retention.keep_last.is_some_and(|n| i < n);
        let pattern = retention
            .keep_tags
            .as_ref()
            .is_some_and(|r| r.is_match(name));
        let recent = retention
            .keep_within
            .is_some_and(|d| rec.pushed_at >= now - d.as_secs() as i64);
        if last || pattern || recent {
            keep.insert(name.clone());
        }
    }
    keep
}

/// Which manifests of one repository are alive.
fn live_manifests(
    manifests: &BTreeMap<Digest, ManifestRecord>,
    tags: &[(String, TagRecord)],
    protect_after: i64,
) -> BTreeSet<Digest> {
    let mut live: BTreeSet<Digest> = BTreeSet::new();
    for (name, rec) in tags {
        if attachment_subject(name).is_none() {
            live.insert(rec.digest.clone());
        }
    }
    for (d, rec) in manifests {
        if rec.pushed_at >= protect_after {
            live.insert(d.clone());
        }
    }
    loop {
        let before = live.len();
        let mut add = vec![];
        for d in &live {
            if let Some(rec) = manifests.get(d) {
                add.extend(rec.children.iter().cloned());
            }
        }
        for (d, rec) in manifests {
            if rec.subject.as_ref().is_some_and(|s| live.contains(s)) {
                add.push(d.clone());
            }
        }
        for (name, rec) in tags {
            if attachment_subject(name).is_some_and(|s| live.contains(&s)) {
                add.push(rec.digest.clone());
            }
        }
        live.extend(add);
        if live.len() == before {
            return live;
        }
    }
}

/// Run GC once. Holds the registry's GC lock; other work continues.
pub async fn collect(registry: &Registry, dry_run: bool) -> Result<GcReport, RegistryError> {
    let _only_one = registry.gc_lock.lock().await;
    let report = tokio::task::block_in_place(|| collect_now(registry, dry_run, now()))?;
    if !report.dry_run {
        registry.metrics.gc_run(
            [
                ("tag", report.tags.len()),
                ("manifest", report.manifests.len()),
                ("blob", report.blobs.len()),
                ("upload", report.uploads),
            ],
            report.bytes_freed,
        );
    }
    Ok(report)
}

/// Run GC synchronously at time `now` (the caller serialises runs).
pub fn collect_now(
    registry: &Registry,
    dry_run: bool,
    now: i64,
) -> Result<GcReport, RegistryError> {
    let meta = &registry.meta;
    let cutoff = now - registry.config.gc_grace.as_secs() as i64;
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    let mut still_referenced: BTreeSet<Digest> = BTreeSet::new();

    for repo in meta.repositories()? {
        // Phase 1: retention.
        let mut tags = meta.tags(&repo)?;
        if let Some(retention) = registry
            .config
            .rule_for(&repo)
            .and_then(|r| r.retention.as_ref())
        {
            let candidates: Vec<(String, TagRecord)> = tags
                .iter()
                .filter(|(n, _)| attachment_subject(n).is_none())
                .cloned()
                .collect();
            let keep = retained(&candidates, retention, now);
            let mut removed = BTreeSet::new();
            for (name, rec) in &candidates {
                if keep.contains(name) {
                    continue;
                }
                if dry_run || meta.delete_tag_if(&repo, name, rec)? {
                    report.tags.push(format!("{repo}:{name}"));
                    removed.insert(name.clone());
                }
            }
            tags.retain(|(n, _)| !removed.contains(n));
        }

        // Phase 2: manifests.
        let manifests: BTreeMap<Digest, ManifestRecord> =
            meta.manifests(&repo)?.into_iter().collect();
        let live = live_manifests(&manifests, &tags, cutoff);
        // Subjects before their referrers, so a referrer's re-check sees its
        // subject already gone.
        let mut dead: Vec<(&Digest, &ManifestRecord)> = manifests
            .iter()
            .filter(|(d, _)| !live.contains(*d))
            .collect();
        dead.sort_by_key(|(_, r)| r.subject.is_some());
        let mut collected = BTreeSet::new();
        for (d, rec) in dead {
            let removable: Vec<String> = tags
                .iter()
                .filter(|(n, t)| &t.digest == d && attachment_subject(n).is_some())
                .map(|(n, _)| n.clone())
                .collect();
            let gone = dry_run
                || meta.collect_manifest(&repo, d, cutoff, &removable, rec.subject.is_some())?;
            if gone {
                report.manifests.push(format!("{repo}@{d}"));
                collected.insert(d.clone());
            }
        }
        for (d, rec) in &manifests {
            if !collected.contains(d) {
                still_referenced.insert(d.clone());
                still_referenced.extend(rec.references.iter().cloned());
            }
        }
    }

    // Phase 3: blobs.
    let recent: BTreeMap<Digest, i64> = registry
        .recent
        .lock()
        .map(|mut r| {
            r.retain(|_, t| *t >= cutoff);
            r.iter().map(|(d, t)| (d.clone(), *t)).collect()
        })
        .unwrap_or_default();
    for (d, rec) in meta.blobs()? {
        if rec.touched >= cutoff || recent.contains_key(&d) {
            continue;
        }
        if dry_run {
            if !still_referenced.contains(&d) {
                report.bytes_freed += rec.size;
                report.blobs.push(d.to_string());
            }
            continue;
        }
        if meta.blob_in_use(&d)? {
            continue;
        }
        let _guard = registry.blobs.lock(&d);
        if let Some(size) = meta.collect_blob(&d, cutoff)? {
            registry.blobs.remove(&d)?;
            report.bytes_freed += size;
            report.blobs.push(d.to_string());
        }
    }

    // Phase 4: leftovers.
    if !dry_run {
        sweep_unindexed_files(registry, cutoff)?;
        report.uploads = registry.expire_uploads(now - UPLOAD_EXPIRY_SECS);
    }
    Ok(report)
}

/// Remove blob files that no index entry names and that are older than the
/// grace window (left by a crash between publishing and committing).
fn sweep_unindexed_files(registry: &Registry, cutoff: i64) -> Result<(), RegistryError> {
    let root = registry.blobs.blob_path(&Digest::sha256_of(b""));
    // .../blobs/sha256/xx/hex -> .../blobs
    let Some(blobs_dir) = root
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.parent())
    else {
        return Ok(());
    };
    for alg in std::fs::read_dir(blobs_dir)?.flatten() {
        for shard in std::fs::read_dir(alg.path())?.flatten() {
            for file in std::fs::read_dir(shard.path())?.flatten() {
                let name = format!(
                    "{}:{}",
                    alg.file_name().to_string_lossy(),
                    file.file_name().to_string_lossy()
                );
                let Ok(d) = name.parse::<Digest>() else {
                    continue;
                };
                let old = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .is_some_and(|age| (age.as_secs() as i64) < cutoff);
                if !old {
                    continue;
                }
                let _guard = registry.blobs.lock(&d);
                if registry.meta.blob(&d)?.is_none() {
                    registry.blobs.remove(&d)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_tags() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(attachment_subject(&d.cosign_signature_tag()), Some(d));
        assert_eq!(attachment_subject("v1.2.3"), None);
        assert_eq!(attachment_subject("sha256-zz.sig"), None);
    }

    #[test]
    fn retention_keeps_any_rule_match() {
        let rec = |t: i64| TagRecord {
            digest: Digest::sha256_of(b"x"),
            pushed_at: t,
        };
        let tags = vec![
            ("a".to_string(), rec(100)),
            ("b".to_string(), rec(200)),
            ("c".to_string(), rec(300)),
            ("v1.0.0".to_string(), rec(50)),
            ("d".to_string(), rec(990)),
        ];
        let r = crate::config::Retention {
            keep_last: Some(2),
            keep_tags: Some(regex::Regex::new("^v").unwrap()),
            keep_within: Some(std::time::Duration::from_secs(15)),
        };
        let keep = retained(&tags, &r, 1000);
        assert_eq!(
            keep.into_iter().collect::<Vec<_>>(),
            vec!["c", "d", "v1.0.0"]
        );
    }
}
