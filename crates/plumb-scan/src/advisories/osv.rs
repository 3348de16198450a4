//! OSV records as plumb reads them, and the compact form the store keeps.
//!
//! Only the fields a scan needs are read (`id`, `aliases`, `modified`,
//! `withdrawn`, `summary`, `severity[]`, `affected[]` with its package,
//! ranges, explicit versions and the `severity` that GHSA and others put in
//! `database_specific`/`ecosystem_specific`); every other field is ignored,
//! so records of newer schema versions still read. A record whose fields
//! that plumb reads have the wrong shape is invalid.

use serde::{Deserialize, Serialize};

use crate::cvss;
use crate::report::Severity;

/// One OSV record, as far as plumb reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvRecord {
    /// The advisory id (`GO-2021-0113`, `GHSA-…`, `DSA-…`).
    pub id: String,
    /// Other ids of the same vulnerability.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// When the record last changed (RFC 3339).
    #[serde(default)]
    pub modified: Option<String>,
    /// When the record was withdrawn, if it was.
    #[serde(default)]
    pub withdrawn: Option<String>,
    /// One line about it.
    #[serde(default)]
    pub summary: Option<String>,
    /// Scores (CVSS vectors).
    #[serde(default)]
    pub severity: Vec<OsvSeverity>,
    /// The packages and versions it affects.
    #[serde(default)]
    pub affected: Vec<OsvAffected>,
    /// The database's own fields (GHSA: `severity`).
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

/// A score of a record or an affected package.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvSeverity {
    /// `CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu`, ….
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector (or, for `Ubuntu`, a rating name).
    pub score: String,
}

/// One affected package.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvAffected {
    /// Which package.
    pub package: Option<OsvPackage>,
    /// Version ranges.
    #[serde(default)]
    pub ranges: Vec<OsvRange>,
    /// Versions listed one by one.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Scores for this package alone.
    #[serde(default)]
    pub severity: Vec<OsvSeverity>,
    /// The database's own fields.
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
    /// The ecosystem's own fields.
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
}

/// The package of an affected entry.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvPackage {
    /// `Go`, `Debian:12`, `Alpine:v3.20`, `crates.io`, `npm`, `PyPI`, ….
    pub ecosystem: String,
    /// Its name in that ecosystem.
    pub name: String,
    /// Its package URL, when given.
    #[serde(default)]
    pub purl: Option<String>,
}

/// A range of affected versions.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvRange {
    /// `SEMVER`, `ECOSYSTEM` or `GIT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where vulnerability starts and stops.
    #[serde(default)]
    pub events: Vec<OsvEvent>,
}

/// One event of a range: exactly one of its fields is set.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OsvEvent {
    /// The first affected version (`"0"`: from the beginning).
    pub introduced: Option<String>,
    /// The first version no longer affected.
    pub fixed: Option<String>,
    /// The last affected version.
    pub last_affected: Option<String>,
    /// An upper bound past which nothing is affected.
    pub limit: Option<String>,
}

/// How a range's versions are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeKind {
    /// SemVer 2.0 order, whatever the ecosystem.
    Semver,
    /// The ecosystem's own order.
    Ecosystem,
}

/// One event of a stored range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Vulnerable from this version on (`"0"`: from the first).
    Introduced(String),
    /// Not vulnerable from this version on.
    Fixed(String),
    /// Vulnerable up to and including this version.
    LastAffected(String),
    /// Nothing at or above this version is in the range.
    Limit(String),
}

impl Event {
    /// The version the event names.
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

/// A stored range: its order and its events as the record lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// How its versions compare.
    pub kind: RangeKind,
    /// Its events.
    pub events: Vec<Event>,
}

/// What the store keeps of one record for one package: enough to decide
/// whether a version is affected and to write a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedEntry {
    /// The advisory id.
    pub id: String,
    /// Its aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// One line about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The ecosystem suffix (`12` of `Debian:12`), when the record has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// SEMVER and ECOSYSTEM ranges (GIT ranges are dropped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    /// Versions listed one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// The highest severity the record gives this package.
    pub severity: Severity,
}

/// The ecosystem's base name (`Debian` of `Debian:12`) and its suffix.
pub fn split_ecosystem(ecosystem: &str) -> (&str, Option<&str>) {
    match ecosystem.split_once(':') {
        Some((base, suffix)) if !suffix.is_empty() => (base, Some(suffix)),
        Some((base, _)) => (base, None),
        None => (ecosystem, None),
    }
}

/// The name a package is indexed under: PyPI names are compared in their
/// normalised form (PEP 503: lowercase, runs of `-`, `_`, `.` as one `-`);
/// others as written.
pub fn index_name(ecosystem_base: &str, name: &str) -> String {
    if ecosystem_base != "PyPI" {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// The rating a `severity` field of `database_specific` or
/// `ecosystem_specific` gives (`"HIGH"`, `"MODERATE"`), if any.
fn named_severity(value: Option<&serde_json::Value>) -> Option<Severity> {
    value?.get("severity")?.as_str().and_then(Severity::parse)
}

/// The rating of one score: a CVSS v3 vector's base score, a v4 vector's
/// macro-vector rating, or a rating name (as `Ubuntu` scores give).
fn score_severity(s: &OsvSeverity) -> Option<Severity> {
    match s.kind.as_str() {
        "CVSS_V3" => cvss::v3_base_score(&s.score).map(cvss::severity_of_score),
        "CVSS_V4" => cvss::v4_severity(&s.score),
        _ => Severity::parse(&s.score),
    }
}

impl OsvRecord {
    /// The highest severity the record gives `affected`: over the record's
    /// and the package's CVSS v3/v4 vectors and the `severity` named in
    /// `database_specific` or `ecosystem_specific`; Unknown when none.
    pub fn severity_for(&self, affected: &OsvAffected) -> Severity {
        let scores = self
            .severity
            .iter()
            .chain(&affected.severity)
            .filter_map(score_severity);
        let named = [
            named_severity(self.database_specific.as_ref()),
            named_severity(affected.database_specific.as_ref()),
            named_severity(affected.ecosystem_specific.as_ref()),
        ];
        scores
            .chain(named.into_iter().flatten())
            .max()
            .unwrap_or(Severity::Unknown)
    }

    /// The entries to index: `((ecosystem base, index name), entry)` for
    /// every affected package.
    pub fn entries(&self) -> Vec<((String, String), AffectedEntry)> {
        let mut out = Vec::new();
        for affected in &self.affected {
            let Some(package) = &affected.package else {
                continue;
            };
            let (base, release) = split_ecosystem(&package.ecosystem);
            let ranges = affected
                .ranges
                .iter()
                .filter_map(|r| {
                    let kind = match r.kind.as_str() {
                        "SEMVER" => RangeKind::Semver,
                        "ECOSYSTEM" => RangeKind::Ecosystem,
                        _ => return None,
                    };
                    let events = r
                        .events
                        .iter()
                        .filter_map(|e| {
                            e.introduced
                                .clone()
                                .map(Event::Introduced)
                                .or_else(|| e.fixed.clone().map(Event::Fixed))
                                .or_else(|| e.last_affected.clone().map(Event::LastAffected))
                                .or_else(|| e.limit.clone().map(Event::Limit))
                        })
                        .collect();
                    Some(Range { kind, events })
                })
                .collect();
            let entry = AffectedEntry {
                id: self.id.clone(),
                aliases: self.aliases.clone(),
                summary: self.summary.clone().filter(|s| !s.is_empty()),
                release: release.map(str::to_string),
                ranges,
                versions: affected.versions.clone(),
                severity: self.severity_for(affected),
            };
            out.push(((base.to_string(), index_name(base, &package.name)), entry));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> OsvRecord {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn severity_is_the_highest_the_record_gives() {
        let r = record(
            r#"{"id":"GHSA-1","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"}],
                "affected":[{"package":{"ecosystem":"npm","name":"x"}}],
                "database_specific":{"severity":"HIGH"}}"#,
        );
        // The vector scores 6.1 (medium); the database says high.
        assert_eq!(r.severity_for(&r.affected[0]), Severity::High);
        let r = record(
            r#"{"id":"X","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected":[{"package":{"ecosystem":"npm","name":"x"}}],"database_specific":{"severity":"MODERATE"}}"#,
        );
        assert_eq!(r.severity_for(&r.affected[0]), Severity::Critical);
        let r = record(
            r#"{"id":"X","severity":[{"type":"CVSS_V4","score":"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:P/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"}],
                "affected":[{"package":{"ecosystem":"npm","name":"x"}}]}"#,
        );
        assert_eq!(r.severity_for(&r.affected[0]), Severity::Medium);
        let r = record(r#"{"id":"GO-1","affected":[{"package":{"ecosystem":"Go","name":"x"}}]}"#);
        assert_eq!(r.severity_for(&r.affected[0]), Severity::Unknown);
        let r = record(
            r#"{"id":"X","affected":[{"package":{"ecosystem":"PyPI","name":"x"},"ecosystem_specific":{"severity":"LOW"}}]}"#,
        );
        assert_eq!(r.severity_for(&r.affected[0]), Severity::Low);
    }

    #[test]
    fn entries_key_on_base_ecosystem_and_drop_git_ranges() {
        let r = record(
            r#"{"id":"DSA-1","affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},
                "ranges":[{"type":"GIT","repo":"r","events":[{"introduced":"0"}]},
                          {"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u1"}]}]},
                {"package":{"ecosystem":"PyPI","name":"Zope.Interface"},"versions":["1.0"]}]}"#,
        );
        let e = r.entries();
        assert_eq!(e[0].0, ("Debian".to_string(), "openssl".to_string()));
        assert_eq!(e[0].1.release.as_deref(), Some("12"));
        assert_eq!(e[0].1.ranges.len(), 1);
        assert_eq!(
            e[0].1.ranges[0].events,
            vec![
                Event::Introduced("0".into()),
                Event::Fixed("3.0.11-1~deb12u1".into())
            ]
        );
        assert_eq!(e[1].0, ("PyPI".to_string(), "zope-interface".to_string()));
        assert_eq!(index_name("PyPI", "Foo__Bar..baz"), "foo-bar-baz");
        assert_eq!(
            split_ecosystem("Ubuntu:22.04:LTS"),
            ("Ubuntu", Some("22.04:LTS"))
        );
    }
}
