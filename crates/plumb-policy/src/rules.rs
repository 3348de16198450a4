//! The rules themselves, as pure functions over what the registry said.

use std::collections::BTreeMap;

use plumb_model::Origin;
use plumb_oci::Digest;
use plumb_oci::signing::KeyedSignature;
use serde::Serialize;

use crate::file::{ScanRule, SignatureRule, TagRule};
use crate::image::ImageName;
use crate::report::ScanReport;

/// Which rule refused an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// The tag is missing or mutable.
    Tag,
    /// No signature by a listed key (with the required claims).
    Signature,
    /// The scan report is missing or has a finding at or above the threshold.
    Scan,
    /// The registry could not answer, or the name is unusable.
    Registry,
    /// The Application names a policy the file does not define.
    Policy,
}

impl Rule {
    /// The rule's name, as metrics and refusals show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Tag => "tag",
            Rule::Signature => "signature",
            Rule::Scan => "scan",
            Rule::Registry => "registry",
            Rule::Policy => "policy",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an image may not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// The rule.
    pub rule: Rule,
    /// The policy that holds the rule.
    pub policy: String,
    /// Why, in words (never a secret).
    pub reason: String,
}

/// The gate's answer for one image in one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageVerdict {
    /// `Kind/namespace/name` of the object naming the image.
    pub object: String,
    /// Where the object is defined.
    pub origin: Origin,
    /// The image as written.
    pub image: String,
    /// The digest it resolved to, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The policies that apply to it.
    pub policies: Vec<String>,
    /// Why it may not run (empty: admitted).
    pub denials: Vec<Denial>,
}

impl ImageVerdict {
    /// Whether the image may run.
    pub fn admitted(&self) -> bool {
        self.denials.is_empty()
    }
}

/// The tag rule: a digest always passes; no tag, `latest`, or a tag outside
/// the patterns does not.
pub fn check_tag(image: &ImageName, rule: &TagRule) -> Result<(), String> {
    if image.digest.is_some() {
        return Ok(());
    }
    match image.tag.as_deref() {
        None => Err("the image has no tag (it means \"latest\", which moves); tag it with a git SHA or vX.Y.Z, or pin a digest".into()),
        Some("latest") => Err("tag \"latest\" is mutable; tag the image with a git SHA or vX.Y.Z, or pin a digest".into()),
        Some(tag) if rule.patterns.iter().any(|p| p.is_match(tag)) => Ok(()),
        Some(tag) => Err(format!(
            "tag {tag:?} is not immutable (allowed: {}); tag the image with a git SHA or vX.Y.Z, or pin a digest",
            rule.patterns.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The signature rule over the signatures found: one by a listed key that
/// carries every required claim (`{tag}` in a claim stands for the tag).
pub fn check_signatures(
    image: &ImageName,
    rule: &SignatureRule,
    found: &[KeyedSignature],
    rejected: usize,
) -> Result<(), String> {
    let wanted: BTreeMap<&str, String> = rule
        .annotations
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                v.replace("{tag}", image.tag.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let carries = |s: &KeyedSignature| {
        wanted
            .iter()
            .all(|(k, v)| s.annotations.get(*k).is_some_and(|got| got == v))
    };
    if found.iter().any(carries) {
        return Ok(());
    }
    let keys: Vec<&str> = rule.keys.iter().map(|(label, _)| label.as_str()).collect();
    if !found.is_empty() {
        let claims: Vec<String> = wanted.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Err(format!(
            "signed by {}, but no signature carries {}",
            keys.join(" or "),
            claims.join(", ")
        ));
    }
    if rejected > 0 {
        return Err(format!(
            "signed by an unknown key ({rejected} signature(s), none by {})",
            keys.join(" or ")
        ));
    }
    Err(format!("unsigned: no signature by {}", keys.join(" or ")))
}

/// The scan rule over the image's newest report, on `today`.
pub fn check_scan(
    rule: &ScanRule,
    report: Option<&ScanReport>,
    today: jiff::civil::Date,
) -> Result<(), String> {
    let Some(report) = report else {
        return Err("not scanned: no scan report is attached to the image".into());
    };
    let blocking: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity >= rule.fail_on)
        .filter(|f| {
            !rule
                .accept
                .iter()
                .any(|a| f.is(&a.id) && a.expires >= today)
        })
        .map(|f| {
            let package = if f.package.is_empty() {
                String::new()
            } else {
                format!(" in {} {}", f.package, f.version)
            };
            format!("{} at {}{package}", f.id, f.severity)
        })
        .collect();
    if blocking.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "finding {} (failOn: {})",
            blocking.join(", "),
            rule.fail_on
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::Accepted;
    use crate::report::{Finding, Severity};
    use regex::Regex;

    fn tags() -> TagRule {
        TagRule {
            patterns: crate::file::DEFAULT_TAG_PATTERNS
                .iter()
                .map(|p| Regex::new(p).unwrap())
                .collect(),
        }
    }

    #[test]
    fn tags_must_be_immutable() {
        let ok = |s: &str| check_tag(&ImageName::parse(s).unwrap(), &tags());
        assert!(ok("reg.io/app:v1.2.3").is_ok());
        assert!(ok(&format!("reg.io/app:{}", "a1".repeat(20))).is_ok());
        assert!(ok("reg.io/app:3f2a9c1").is_ok());
        assert!(ok(&format!("reg.io/app@sha256:{}", "b".repeat(64))).is_ok());
        assert!(ok("reg.io/app").unwrap_err().contains("no tag"));
        assert!(
            ok("reg.io/app:latest")
                .unwrap_err()
                .contains("\"latest\" is mutable")
        );
        assert!(ok("reg.io/app:main").unwrap_err().contains("not immutable"));
    }

    #[test]
    fn findings_at_or_above_the_threshold_refuse_unless_accepted() {
        let finding = |id: &str, sev| Finding {
            id: id.into(),
            aliases: vec![],
            package: "openssl".into(),
            version: "3.0.1".into(),
            severity: sev,
            fixed: None,
            ..Finding::default()
        };
        let report = ScanReport {
            schema_version: 1,
            findings: vec![
                finding("CVE-1", Severity::High),
                finding("CVE-2", Severity::Low),
            ],
        };
        let today: jiff::civil::Date = "2026-12-06".parse().unwrap();
        let mut rule = ScanRule {
            fail_on: Severity::High,
            accept: vec![],
        };
        let err = check_scan(&rule, Some(&report), today).unwrap_err();
        assert!(
            err.contains("CVE-1 at HIGH in openssl 3.0.1") && !err.contains("CVE-2"),
            "{err}"
        );
        rule.accept.push(Accepted {
            id: "CVE-1".into(),
            expires: "2026-12-06".parse().unwrap(),
            reason: String::new(),
        });
        assert!(check_scan(&rule, Some(&report), today).is_ok());
        let tomorrow: jiff::civil::Date = "2026-12-07".parse().unwrap();
        assert!(
            check_scan(&rule, Some(&report), tomorrow).is_err(),
            "an expired acceptance no longer holds"
        );
        assert!(
            check_scan(&rule, None, today)
                .unwrap_err()
                .contains("not scanned")
        );
    }
}
