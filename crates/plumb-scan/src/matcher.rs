//! The matcher: which advisories of a store affect which packages of a
//! [`Sbom`].
//!
//! Each package is looked up by its ecosystem's OSV name and its own name,
//! and also by its `source` name when it has one (Debian and Alpine records
//! key on the source package). An entry whose ecosystem has a release
//! suffix (`Debian:12`, `Alpine:v3.20`) applies only to a package of that
//! release (a package that names no release is matched against every
//! release). A version is affected when it is in one of the entry's ranges
//! ([`in_range`], OSV's algorithm; SEMVER ranges in SemVer order, ECOSYSTEM
//! ranges in the ecosystem's, GIT ranges never stored) or listed in its
//! `versions`. Findings are one per (advisory id, package, version), with
//! every location the package was found at, the highest severity any
//! matching entry gives, and the lowest fixed version above the installed
//! one; they are sorted by severity (worst first), package, version, id.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::advisories::{AdvisoryStore, AffectedEntry, Event, Range, RangeKind, Result};
use crate::report::{DatabaseInfo, Finding, ScanDocument, ScanReport, ScannerInfo, Subject};
use crate::sbom::{Ecosystem, Package, Sbom};
use crate::version::VersionScheme;

/// Whether `version` is in `range`, by OSV's evaluation: events sorted by
/// version (`introduced: "0"` first), then walked in order, an `introduced`
/// at or below the version making it affected, a `fixed` at or below it or
/// a `last_affected` below it making it not, and a `limit` at or below it
/// ending the range.
pub fn in_range(range: &Range, scheme: VersionScheme, version: &str) -> bool {
    let scheme = match range.kind {
        RangeKind::Semver => VersionScheme::Semver,
        RangeKind::Ecosystem => scheme,
    };
    let mut events: Vec<&Event> = range.events.iter().collect();
    events.sort_by(|a, b| match (is_zero(a), is_zero(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => scheme.compare(a.version(), b.version()),
    });
    let mut affected = false;
    for event in events {
        let at_or_above = |v: &str| scheme.compare(version, v) != Ordering::Less;
        match event {
            Event::Introduced(v) => {
                if v == "0" || at_or_above(v) {
                    affected = true;
                }
            }
            Event::Fixed(v) => {
                if at_or_above(v) {
                    affected = false;
                }
            }
            Event::LastAffected(v) => {
                if scheme.compare(version, v) == Ordering::Greater {
                    affected = false;
                }
            }
            Event::Limit(v) => {
                if at_or_above(v) {
                    return false;
                }
            }
        }
    }
    affected
}

fn is_zero(e: &Event) -> bool {
    matches!(e, Event::Introduced(v) if v == "0")
}

/// Whether `entry` applies to a package of `release` (see the module text).
fn release_matches(entry: &AffectedEntry, release: Option<&str>) -> bool {
    let (Some(want), Some(have)) = (entry.release.as_deref(), release) else {
        return true;
    };
    let norm = |s: &str| s.trim().trim_start_matches('v').to_string();
    let (want, have) = (norm(want), norm(have));
    want == have || want.starts_with(&format!("{have}:"))
}

/// A package version as its ecosystem's ranges write it: Go toolchain
/// versions (`go1.20.1`, as Go binaries record the standard library) lose
/// their `go` prefix.
fn normalise_version(package: &Package) -> String {
    let v = package.version.trim();
    if package.ecosystem == Ecosystem::Go
        && let Some(rest) = v.strip_prefix("go")
        && rest.starts_with(|c: char| c.is_ascii_digit())
    {
        return rest.to_string();
    }
    v.to_string()
}

/// If `entry` affects `version`, the lowest version above it that a
/// `fixed` event names (`Some(None)` when no fix is known).
pub fn affects(
    entry: &AffectedEntry,
    scheme: VersionScheme,
    version: &str,
) -> Option<Option<String>> {
    let listed = entry
        .versions
        .iter()
        .any(|v| v == version || scheme.compare(v, version) == Ordering::Equal);
    let ranged = entry.ranges.iter().any(|r| in_range(r, scheme, version));
    if !listed && !ranged {
        return None;
    }
    let mut fixed: Option<&str> = None;
    for range in &entry.ranges {
        let order = match range.kind {
            RangeKind::Semver => VersionScheme::Semver,
            RangeKind::Ecosystem => scheme,
        };
        for event in &range.events {
            if let Event::Fixed(v) = event
                && order.compare(v, version) == Ordering::Greater
                && fixed.is_none_or(|f| order.compare(v, f) == Ordering::Less)
            {
                fixed = Some(v);
            }
        }
    }
    Some(fixed.map(str::to_string))
}

/// The findings for one package.
pub fn match_package(package: &Package, store: &AdvisoryStore) -> Result<Vec<Finding>> {
    let eco = package.ecosystem.osv_name();
    let scheme = package.ecosystem.scheme();
    let version = normalise_version(package);
    let mut names = vec![package.name.as_str()];
    if let Some(source) = package.source.as_deref()
        && source != package.name
    {
        names.push(source);
    }
    let mut by_id: BTreeMap<String, Finding> = BTreeMap::new();
    for name in names {
        for entry in store.lookup(eco, name)? {
            if !release_matches(&entry, package.release.as_deref()) {
                continue;
            }
            let Some(fixed) = affects(&entry, scheme, &version) else {
                continue;
            };
            let finding = by_id.entry(entry.id.clone()).or_insert_with(|| Finding {
                id: entry.id.clone(),
                aliases: entry.aliases.clone(),
                package: package.name.clone(),
                version: package.version.clone(),
                severity: entry.severity,
                fixed: None,
                summary: entry.summary.clone(),
                locations: vec![package.location.clone()],
            });
            finding.severity = finding.severity.max(entry.severity);
            if let Some(f) = fixed
                && finding
                    .fixed
                    .as_deref()
                    .is_none_or(|old| scheme.compare(&f, old) == Ordering::Less)
            {
                finding.fixed = Some(f);
            }
        }
    }
    Ok(by_id.into_values().collect())
}

/// Scan `sbom` against `store`: the findings, sorted, and what was scanned
/// against which database.
pub fn scan(sbom: &Sbom, store: &AdvisoryStore) -> Result<ScanDocument> {
    // (id, package, version) → finding, merging locations.
    let mut all: BTreeMap<(String, String, String), Finding> = BTreeMap::new();
    for package in &sbom.packages {
        for finding in match_package(package, store)? {
            let key = (
                finding.id.clone(),
                finding.package.clone(),
                finding.version.clone(),
            );
            match all.get_mut(&key) {
                None => {
                    all.insert(key, finding);
                }
                Some(old) => {
                    old.severity = old.severity.max(finding.severity);
                    if old.fixed.is_none() {
                        old.fixed = finding.fixed;
                    }
                    for l in finding.locations {
                        if !old.locations.contains(&l) {
                            old.locations.push(l);
                        }
                    }
                }
            }
        }
    }
    let mut findings: Vec<Finding> = all.into_values().collect();
    for f in &mut findings {
        f.locations.sort();
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| a.id.cmp(&b.id))
    });
    let meta = store.meta();
    Ok(ScanDocument {
        report: ScanReport {
            schema_version: 1,
            findings,
        },
        scanner: ScannerInfo {
            name: "plumb".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        database: DatabaseInfo {
            digest: meta.digest.clone(),
            advisories: meta.advisories,
            imported: meta.imported.clone(),
        },
        subject: Subject {
            name: sbom.subject.clone(),
            digest: sbom.digest.clone(),
            packages: sbom.packages.len(),
        },
        created: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Severity;

    fn ev(spec: &str) -> Vec<Event> {
        // "i:0 f:1.2 l:2.0 x:3.0" → events.
        spec.split_whitespace()
            .map(|t| {
                let (k, v) = t.split_once(':').unwrap();
                let v = v.to_string();
                match k {
                    "i" => Event::Introduced(v),
                    "f" => Event::Fixed(v),
                    "l" => Event::LastAffected(v),
                    "x" => Event::Limit(v),
                    _ => panic!("{k}"),
                }
            })
            .collect()
    }

    fn range(kind: RangeKind, spec: &str) -> Range {
        Range {
            kind,
            events: ev(spec),
        }
    }

    fn entry(ranges: Vec<Range>, versions: &[&str]) -> AffectedEntry {
        AffectedEntry {
            id: "X-1".into(),
            aliases: vec![],
            summary: None,
            release: None,
            ranges,
            versions: versions.iter().map(|v| v.to_string()).collect(),
            severity: Severity::High,
        }
    }

    #[test]
    fn introduced_fixed_and_last_affected() {
        let s = VersionScheme::Semver;
        let r = range(RangeKind::Semver, "i:0 f:1.2.0");
        assert!(in_range(&r, s, "0.0.1"));
        assert!(in_range(&r, s, "1.1.9"));
        assert!(!in_range(&r, s, "1.2.0"));
        assert!(!in_range(&r, s, "1.10.0"));
        let r = range(RangeKind::Semver, "i:1.0.0 l:1.4.0");
        assert!(!in_range(&r, s, "0.9.0"));
        assert!(in_range(&r, s, "1.0.0"));
        assert!(in_range(&r, s, "1.4.0"));
        assert!(!in_range(&r, s, "1.4.1"));
        // Events out of order, two intervals in one range.
        let r = range(RangeKind::Semver, "f:2.5.0 i:2.0.0 f:1.5.0 i:1.0.0");
        for (v, want) in [
            ("0.9.9", false),
            ("1.0.0", true),
            ("1.4.9", true),
            ("1.5.0", false),
            ("1.9.0", false),
            ("2.0.0", true),
            ("2.4.0", true),
            ("2.5.0", false),
            ("3.0.0", false),
        ] {
            assert_eq!(in_range(&r, s, v), want, "{v}");
        }
        // introduced only: affected from there on.
        let r = range(RangeKind::Semver, "i:1.0.0");
        assert!(in_range(&r, s, "99.0.0") && !in_range(&r, s, "0.1.0"));
        // limit: nothing at or above it.
        let r = range(RangeKind::Semver, "i:0 x:2.0.0");
        assert!(in_range(&r, s, "1.0.0") && !in_range(&r, s, "2.0.0"));
    }

    #[test]
    fn versions_lists_and_multiple_ranges() {
        let s = VersionScheme::Pep440;
        let e = entry(
            vec![
                range(RangeKind::Ecosystem, "i:0 f:1.0"),
                range(RangeKind::Ecosystem, "i:2.0 f:2.3"),
            ],
            &["1.5"],
        );
        assert_eq!(affects(&e, s, "0.5"), Some(Some("1.0".into())));
        assert_eq!(affects(&e, s, "1.5"), Some(Some("2.3".into())));
        assert_eq!(affects(&e, s, "1.6"), None);
        assert_eq!(affects(&e, s, "2.1"), Some(Some("2.3".into())));
        assert_eq!(affects(&e, s, "2.3"), None);
        // Listed only, no range: affected, no fix known.
        let e = entry(vec![], &["4.17.20", "4.17.19"]);
        assert_eq!(affects(&e, VersionScheme::Semver, "4.17.20"), Some(None));
        assert_eq!(affects(&e, VersionScheme::Semver, "4.17.21"), None);
    }

    #[test]
    fn dpkg_epochs_and_tildes() {
        let s = VersionScheme::Dpkg;
        let r = range(RangeKind::Ecosystem, "i:0 f:3.0.11-1~deb12u1");
        assert!(in_range(&r, s, "3.0.9-1"));
        assert!(in_range(&r, s, "3.0.11-1~deb12u0"));
        assert!(!in_range(&r, s, "3.0.11-1~deb12u1"));
        assert!(!in_range(&r, s, "3.0.11-1"));
        assert!(!in_range(&r, s, "3.0.15-1~deb12u1"));
        // An epoch outranks everything after it.
        let r = range(RangeKind::Ecosystem, "i:0 f:1:1.2.13.dfsg-1");
        assert!(in_range(&r, s, "1.2.13.dfsg-1"));
        assert!(in_range(&r, s, "1:1.2.11.dfsg-2+deb11u2"));
        assert!(!in_range(&r, s, "1:1.2.13.dfsg-1"));
        assert!(!in_range(&r, s, "2:0.1-1"));
        assert!(in_range(&r, s, "1.9-1"));
    }

    #[test]
    fn go_incompatible_and_pseudo_versions() {
        let s = VersionScheme::Semver;
        let r = range(RangeKind::Semver, "i:0 f:2.1.0+incompatible");
        assert!(in_range(&r, s, "v2.0.9+incompatible"));
        assert!(!in_range(&r, s, "v2.1.0+incompatible"));
        let r = range(RangeKind::Semver, "i:0 f:0.0.0-20220314234659-1baeb1ce4c0b");
        assert!(in_range(&r, s, "v0.0.0-20211202192323-5770296d904e"));
        assert!(!in_range(&r, s, "v0.0.0-20220315160706-3147a52a75dd"));
        // A pseudo-version after v1.2.3 is above it and below v1.2.4.
        let r = range(RangeKind::Semver, "i:1.2.3 f:1.2.4");
        assert!(in_range(&r, s, "v1.2.4-0.20191109021931-daa7c04131f5"));
        // A SEMVER range compares in SemVer order even for another
        // ecosystem's package.
        let r = range(RangeKind::Semver, "i:0 f:1.10.0");
        assert!(in_range(&r, VersionScheme::Pep440, "1.9.0"));
    }

    #[test]
    fn pep440_pre_and_post_releases() {
        let s = VersionScheme::Pep440;
        let r = range(RangeKind::Ecosystem, "i:0 f:2.0.0");
        assert!(in_range(&r, s, "2.0.0rc1"));
        assert!(in_range(&r, s, "2.0.0.dev3"));
        assert!(!in_range(&r, s, "2.0.0.post1"));
        let r = range(RangeKind::Ecosystem, "i:2.25.0 l:2.25.1");
        assert!(in_range(&r, s, "2.25.1"));
        assert!(!in_range(&r, s, "2.25.1.post1"));
        assert!(!in_range(&r, s, "2.25.0a1"));
    }

    #[test]
    fn releases_match_by_suffix() {
        let mut e = entry(vec![], &[]);
        e.release = Some("v3.20".into());
        assert!(release_matches(&e, Some("v3.20")));
        assert!(release_matches(&e, Some("3.20")));
        assert!(!release_matches(&e, Some("v3.19")));
        assert!(release_matches(&e, None));
        e.release = Some("22.04:LTS".into());
        assert!(release_matches(&e, Some("22.04")));
        e.release = None;
        assert!(release_matches(&e, Some("12")));
    }
}
