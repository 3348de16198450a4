//! Scan reports: the JSON plumb writes and the deploy gate reads.
//!
//! A scan report is an OCI artifact whose `subject` is the scanned image's
//! manifest: `artifactType` [`SCAN_REPORT_ARTIFACT_TYPE`], one layer of
//! media type [`SCAN_REPORT_MEDIA_TYPE`] holding the JSON below. Any tool can
//! attach one (`oras attach --artifact-type …`); `plumb artifact scan --attach`
//! attaches plumb's own ([`crate::attach_report`]). The newest report (by its
//! `org.opencontainers.image.created` annotation) is the one that counts.
//!
//! ```json
//! {"schemaVersion": 1,
//!  "findings": [{"id": "CVE-2024-0001", "aliases": ["GHSA-…"],
//!                "package": "openssl", "version": "3.0.1",
//!                "severity": "HIGH", "fixed": "3.0.2"}]}
//! ```

use serde::{Deserialize, Serialize};

/// The `artifactType` of a scan report referrer.
pub const SCAN_REPORT_ARTIFACT_TYPE: &str = "application/vnd.plumb.scan.report.v1+json";
/// The media type of the report layer.
pub const SCAN_REPORT_MEDIA_TYPE: &str = "application/vnd.plumb.scan.report.v1+json";

/// How bad a finding is, from least to most.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// No severity given.
    #[default]
    #[serde(alias = "NONE", alias = "UNKNOWN")]
    Unknown,
    /// Low.
    Low,
    /// Medium (also "moderate").
    #[serde(alias = "MODERATE")]
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Read a severity name, case-insensitively.
    pub fn parse(text: &str) -> Option<Severity> {
        match text.trim().to_ascii_lowercase().as_str() {
            "critical" => Some(Severity::Critical),
            "high" => Some(Severity::High),
            "medium" | "moderate" => Some(Severity::Medium),
            "low" => Some(Severity::Low),
            "unknown" | "none" => Some(Severity::Unknown),
            _ => None,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        })
    }
}

/// One vulnerability found in one package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The advisory id (CVE-…, GHSA-…, RUSTSEC-…).
    pub id: String,
    /// Other ids of the same vulnerability.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The affected package.
    #[serde(default)]
    pub package: String,
    /// Its installed version.
    #[serde(default)]
    pub version: String,
    /// How bad it is.
    #[serde(default = "unknown")]
    pub severity: Severity,
    /// The first version with a fix, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// The advisory's one-line summary, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Where the package was found (files relative to the image root or
    /// directory scanned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
}

fn unknown() -> Severity {
    Severity::Unknown
}

/// A scan report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanReport {
    /// Always 1.
    pub schema_version: u32,
    /// What was found.
    #[serde(default)]
    pub findings: Vec<Finding>,
}

impl Finding {
    /// Whether `id` names this finding (its id or an alias).
    pub fn is(&self, id: &str) -> bool {
        self.id.eq_ignore_ascii_case(id) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
    }
}

/// What plumb writes: a [`ScanReport`] (the part the gate reads) plus what
/// was scanned, by what, and against which advisory database. Serialised
/// flat, so every reader of a [`ScanReport`] reads this too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanDocument {
    /// `schemaVersion` and `findings`.
    #[serde(flatten)]
    pub report: ScanReport,
    /// The scanner that wrote it.
    pub scanner: ScannerInfo,
    /// The advisory database the findings come from.
    pub database: DatabaseInfo,
    /// What was scanned.
    pub subject: Subject,
    /// When the scan ran (RFC 3339).
    pub created: String,
}

/// The scanner that wrote a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScannerInfo {
    /// Its name ("plumb").
    pub name: String,
    /// Its version.
    pub version: String,
}

/// The advisory database a scan used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseInfo {
    /// The content digest of what was imported (`sha256:…`).
    pub digest: String,
    /// How many advisories it holds.
    pub advisories: u64,
    /// When it was imported (RFC 3339).
    pub imported: String,
}

/// What a scan looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// The image reference or directory as given.
    pub name: String,
    /// The image manifest's digest, for an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// How many packages were found.
    pub packages: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_read() {
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Unknown);
        assert_eq!(Severity::parse("Moderate"), Some(Severity::Medium));
        let r: ScanReport = serde_json::from_str(
            r#"{"schemaVersion":1,"findings":[{"id":"CVE-1","aliases":["GHSA-x"],"severity":"HIGH"}]}"#,
        )
        .unwrap();
        assert!(r.findings[0].is("ghsa-x"));
        assert_eq!(r.findings[0].severity, Severity::High);
    }

    #[test]
    fn a_document_reads_as_a_report() {
        let doc = ScanDocument {
            report: ScanReport {
                schema_version: 1,
                findings: vec![Finding {
                    id: "CVE-1".into(),
                    aliases: vec![],
                    package: "p".into(),
                    version: "1".into(),
                    severity: Severity::Low,
                    fixed: Some("2".into()),
                    ..Finding::default()
                }],
            },
            scanner: ScannerInfo {
                name: "plumb".into(),
                version: "0".into(),
            },
            database: DatabaseInfo {
                digest: "sha256:00".into(),
                advisories: 1,
                imported: "2026-01-01T00:00:00Z".into(),
            },
            subject: Subject {
                name: "dir".into(),
                digest: None,
                packages: 1,
            },
            created: "2026-01-01T00:00:00Z".into(),
        };
        let text = serde_json::to_string(&doc).unwrap();
        assert!(
            text.starts_with(r#"{"schemaVersion":1,"findings":[{"id":"CVE-1""#),
            "{text}"
        );
        let r: ScanReport = serde_json::from_str(&text).unwrap();
        assert_eq!(r, doc.report);
        let back: ScanDocument = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
    }
}
