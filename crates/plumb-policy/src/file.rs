//! The policy file: what an image must be to run, for which Applications.
//!
//! ```yaml
//! apiVersion: plumb.dev/v1alpha1
//! kind: DeployPolicy
//! policies:
//! - name: production
//!   applications: ["prod-*"]          # Application name (or namespace/name) globs; default all
//!   projects: ["*"]                   # spec.project globs; default all
//!   images: ["registry.example.com/**"]  # repository globs; default all
//!   tags: {}                          # immutable tags only (default patterns below)
//!   signatures:
//!     keys: [keys/ci.pub]             # PEM files (relative to this file) or inline PEM
//!     annotations: {git-sha: "{tag}"} # claims every signature must carry
//!   scan:
//!     failOn: high                    # critical | high | medium | low
//!     accept:
//!     - {id: CVE-2024-0001, expires: 2027-01-31, reason: "not reachable"}
//!   pinDigests: true
//! imagePaths:                         # where custom resources keep images
//! - {group: argoproj.io, kind: Rollout, paths: ["/spec/template/spec/containers/*/image"]}
//! ```
//!
//! Everything is checked when the file is read: a bad glob, regular
//! expression, key, severity or date is an error naming `file:line:col`, and
//! nothing is gated by a half-read policy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::GlobMatcher;
use plumb_model::Origin;
use plumb_oci::cosign::CosignPublicKey;
use plumb_render::yaml::{origin_at, parse_typed};
use regex::Regex;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::report::Severity;

/// Tags accepted as immutable when a policy's `tags` lists none: a full git
/// SHA, a short git SHA, and a semantic version `vX.Y.Z`.
pub const DEFAULT_TAG_PATTERNS: &[&str] = &[
    "^[0-9a-f]{40}$",
    "^[0-9a-f]{7,12}$",
    r"^v[0-9]+\.[0-9]+\.[0-9]+$",
];

/// The largest policy file read.
const MAX_POLICY_FILE: u64 = 1024 * 1024;

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is too large to be a policy.
    #[error("{path}: {size} bytes is too large for a policy file (limit {limit})")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The YAML does not parse or has the wrong shape.
    #[error(transparent)]
    Syntax(#[from] plumb_render::yaml::ParseError),
    /// A value is wrong.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where.
        origin: Origin,
        /// What and how to fix it.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFile {
    #[serde(default)]
    api_version: Option<Spanned<String>>,
    #[serde(default)]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    #[serde(default)]
    image_paths: Vec<RawImagePath>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPolicy {
    name: Spanned<String>,
    #[serde(default)]
    applications: Vec<Spanned<String>>,
    #[serde(default)]
    projects: Vec<Spanned<String>>,
    #[serde(default)]
    images: Vec<Spanned<String>>,
    #[serde(default)]
    tags: Option<RawTags>,
    #[serde(default)]
    signatures: Option<RawSignatures>,
    #[serde(default)]
    scan: Option<RawScan>,
    #[serde(default)]
    pin_digests: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTags {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSignatures {
    keys: Vec<Spanned<String>>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawScan {
    fail_on: Spanned<String>,
    #[serde(default)]
    accept: Vec<RawAccept>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAccept {
    id: String,
    expires: Spanned<String>,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawImagePath {
    #[serde(default)]
    group: String,
    kind: String,
    paths: Vec<Spanned<String>>,
}

/// A glob as written, and its matcher.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    matcher: GlobMatcher,
}

impl Pattern {
    /// Whether `candidate` matches.
    pub fn matches(&self, candidate: &str) -> bool {
        self.matcher.is_match(candidate)
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Immutable tags: the patterns a tag must match (a digest always passes;
/// `latest` and untagged images never do).
#[derive(Debug, Clone)]
pub struct TagRule {
    /// Regular expressions, any of which admits a tag.
    pub patterns: Vec<Regex>,
}

/// Signatures: who must have signed, and what they must have claimed.
#[derive(Debug, Clone)]
pub struct SignatureRule {
    /// The keys, any of which may have signed, with how the file named each.
    pub keys: Vec<(String, CosignPublicKey)>,
    /// Claims a verifying signature must carry; `{tag}` in a value stands for
    /// the image's tag.
    pub annotations: BTreeMap<String, String>,
}

/// An accepted vulnerability, until its expiry date (inclusive).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The vulnerability id (or an alias of it).
    pub id: String,
    /// The last day the acceptance holds.
    pub expires: jiff::civil::Date,
    /// Why it is accepted.
    pub reason: String,
}

/// Scanning: the image's scan report must have no finding at or above
/// `fail_on`, accepted ids aside.
#[derive(Debug, Clone)]
pub struct ScanRule {
    /// The lowest severity that refuses.
    pub fail_on: Severity,
    /// Accepted vulnerabilities.
    pub accept: Vec<Accepted>,
}

/// One named policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its name (for the `plumb.dev/policy` annotation and in verdicts).
    pub name: String,
    /// Where it is defined.
    pub origin: Origin,
    /// Application name globs (empty: all).
    pub applications: Vec<Pattern>,
    /// Project globs (empty: all).
    pub projects: Vec<Pattern>,
    /// Image repository globs (empty: all).
    pub images: Vec<Pattern>,
    /// Tag rule.
    pub tags: Option<TagRule>,
    /// Signature rule.
    pub signatures: Option<SignatureRule>,
    /// Scan rule.
    pub scan: Option<ScanRule>,
    /// Send `image@sha256:…` to the cluster.
    pub pin_digests: bool,
}

impl Policy {
    /// Whether the policy's Application scope covers `app` in `project`.
    pub fn covers_application(&self, namespace: Option<&str>, name: &str, project: &str) -> bool {
        let key = format!("{}/{name}", namespace.unwrap_or_default());
        let by_name = self.applications.is_empty()
            || self
                .applications
                .iter()
                .any(|p| p.matches(name) || p.matches(&key));
        let by_project =
            self.projects.is_empty() || self.projects.iter().any(|p| p.matches(project));
        by_name && by_project
    }

    /// Whether the policy's image scope covers `repository` (`host/path`).
    pub fn covers_image(&self, repository: &str) -> bool {
        self.images.is_empty() || self.images.iter().any(|p| p.matches(repository))
    }
}

/// Where a custom resource keeps its images: JSON pointers, `*` standing for
/// any array index or object key.
#[derive(Debug, Clone)]
pub struct ImagePath {
    /// API group (empty: core).
    pub group: String,
    /// Kind.
    pub kind: String,
    /// The pointers.
    pub paths: Vec<String>,
}

/// A loaded, checked policy file.
#[derive(Debug, Clone, Default)]
pub struct PolicyFile {
    /// The file.
    pub path: PathBuf,
    /// Its policies, in file order.
    pub policies: Vec<Policy>,
    /// Image locations in custom resources.
    pub image_paths: Vec<ImagePath>,
}

struct Reader<'a> {
    file: &'a str,
    dir: &'a Path,
}

impl Reader<'_> {
    fn invalid(&self, at: &serde_saphyr::Location, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            origin: origin_at(self.file, at),
            message: message.into(),
        }
    }

    fn globs(
        &self,
        list: &[Spanned<String>],
        literal_separator: bool,
    ) -> Result<Vec<Pattern>, PolicyError> {
        list.iter()
            .map(|g| {
                let glob = globset::GlobBuilder::new(&g.value)
                    .literal_separator(literal_separator)
                    .build()
                    .map_err(|e| self.invalid(&g.referenced, format!("glob {:?}: {e}", g.value)))?;
                Ok(Pattern {
                    text: g.value.clone(),
                    matcher: glob.compile_matcher(),
                })
            })
            .collect()
    }

    fn tags(&self, raw: &RawTags) -> Result<TagRule, PolicyError> {
        let patterns = if raw.allow.is_empty() {
            DEFAULT_TAG_PATTERNS
                .iter()
                .filter_map(|p| Regex::new(p).ok())
                .collect()
        } else {
            raw.allow
                .iter()
                .map(|p| {
                    Regex::new(&p.value).map_err(|e| {
                        self.invalid(&p.referenced, format!("tag pattern {:?}: {e}", p.value))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        Ok(TagRule { patterns })
    }

    fn key(&self, entry: &Spanned<String>) -> Result<(String, CosignPublicKey), PolicyError> {
        let text = entry.value.trim();
        let (label, pem) = if text.starts_with("-----BEGIN") {
            ("inline key".to_string(), text.to_string())
        } else {
            let path = self.dir.join(text);
            let pem = std::fs::read_to_string(&path).map_err(|e| {
                self.invalid(
                    &entry.referenced,
                    format!("cannot read key file {}: {e}", path.display()),
                )
            })?;
            (text.to_string(), pem)
        };
        let key = CosignPublicKey::from_pem(&pem).map_err(|e| {
            self.invalid(
                &entry.referenced,
                format!("{label} is not a cosign public key: {e}"),
            )
        })?;
        Ok((label, key))
    }

    fn signatures(&self, raw: &RawSignatures, at: &Origin) -> Result<SignatureRule, PolicyError> {
        if raw.keys.is_empty() {
            return Err(PolicyError::Invalid {
                origin: at.clone(),
                message: "signatures needs at least one key".into(),
            });
        }
        Ok(SignatureRule {
            keys: raw
                .keys
                .iter()
                .map(|k| self.key(k))
                .collect::<Result<_, _>>()?,
            annotations: raw.annotations.clone(),
        })
    }

    fn scan(&self, raw: &RawScan) -> Result<ScanRule, PolicyError> {
        let fail_on = Severity::parse(&raw.fail_on.value).ok_or_else(|| {
            self.invalid(
                &raw.fail_on.referenced,
                format!(
                    "failOn must be critical, high, medium or low, not {:?}",
                    raw.fail_on.value
                ),
            )
        })?;
        let accept = raw
            .accept
            .iter()
            .map(|a| {
                let expires: jiff::civil::Date = a.expires.value.parse().map_err(|e| {
                    self.invalid(
                        &a.expires.referenced,
                        format!(
                            "expires must be a date (YYYY-MM-DD), not {:?}: {e}",
                            a.expires.value
                        ),
                    )
                })?;
                Ok(Accepted {
                    id: a.id.clone(),
                    expires,
                    reason: a.reason.clone(),
                })
            })
            .collect::<Result<_, PolicyError>>()?;
        Ok(ScanRule { fail_on, accept })
    }
}

impl PolicyFile {
    /// Read and check the policy file at `path`.
    pub fn load(path: &Path) -> Result<PolicyFile, PolicyError> {
        let read = |source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_POLICY_FILE {
            return Err(PolicyError::TooLarge {
                path: path.to_path_buf(),
                size,
                limit: MAX_POLICY_FILE,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        PolicyFile::parse(&text, &path.display().to_string(), dir).map(|mut f| {
            f.path = path.to_path_buf();
            f
        })
    }

    /// Check policy `text` read from `file`; key files are found relative to `dir`.
    pub fn parse(text: &str, file: &str, dir: &Path) -> Result<PolicyFile, PolicyError> {
        let raw: RawFile = parse_typed(text, file)?;
        let reader = Reader { file, dir };
        if let Some(v) = &raw.api_version
            && v.value != "plumb.dev/v1alpha1"
        {
            return Err(reader.invalid(
                &v.referenced,
                format!("apiVersion must be plumb.dev/v1alpha1, not {:?}", v.value),
            ));
        }
        if let Some(k) = &raw.kind
            && k.value != "DeployPolicy"
        {
            return Err(reader.invalid(
                &k.referenced,
                format!("kind must be DeployPolicy, not {:?}", k.value),
            ));
        }
        let mut policies: Vec<Policy> = Vec::new();
        for p in &raw.policies {
            let origin = origin_at(file, &p.name.referenced);
            if p.name.value.trim().is_empty() {
                return Err(reader.invalid(&p.name.referenced, "a policy needs a name"));
            }
            if let Some(first) = policies.iter().find(|q| q.name == p.name.value) {
                return Err(reader.invalid(
                    &p.name.referenced,
                    format!(
                        "policy {:?} is also defined at {}",
                        p.name.value, first.origin
                    ),
                ));
            }
            policies.push(Policy {
                name: p.name.value.clone(),
                applications: reader.globs(&p.applications, false)?,
                projects: reader.globs(&p.projects, false)?,
                images: reader.globs(&p.images, true)?,
                tags: p.tags.as_ref().map(|t| reader.tags(t)).transpose()?,
                signatures: p
                    .signatures
                    .as_ref()
                    .map(|s| reader.signatures(s, &origin))
                    .transpose()?,
                scan: p.scan.as_ref().map(|s| reader.scan(s)).transpose()?,
                pin_digests: p.pin_digests,
                origin,
            });
        }
        let image_paths = raw
            .image_paths
            .iter()
            .map(|ip| {
                for path in &ip.paths {
                    if !path.value.starts_with('/') {
                        return Err(reader.invalid(
                            &path.referenced,
                            format!(
                                "{:?} is not a JSON pointer (it starts with '/')",
                                path.value
                            ),
                        ));
                    }
                }
                Ok(ImagePath {
                    group: ip.group.clone(),
                    kind: ip.kind.clone(),
                    paths: ip.paths.iter().map(|p| p.value.clone()).collect(),
                })
            })
            .collect::<Result<_, PolicyError>>()?;
        Ok(PolicyFile {
            path: PathBuf::from(file),
            policies,
            image_paths,
        })
    }

    /// The policy called `name`.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PolicyFile, PolicyError> {
        PolicyFile::parse(text, "policy.yaml", Path::new("."))
    }

    #[test]
    fn a_full_policy_reads() {
        let f = parse(
            "apiVersion: plumb.dev/v1alpha1\nkind: DeployPolicy\npolicies:\n- name: prod\n  applications: [\"prod-*\"]\n  images: [\"reg.example.com/**\"]\n  tags: {}\n  scan:\n    failOn: high\n    accept:\n    - {id: CVE-2024-1, expires: 2027-01-31, reason: unreachable}\n  pinDigests: true\nimagePaths:\n- {group: argoproj.io, kind: Rollout, paths: [\"/spec/template/spec/containers/*/image\"]}\n",
        )
        .unwrap();
        let p = f.policy("prod").unwrap();
        assert!(p.covers_application(Some("argocd"), "prod-web", "default"));
        assert!(!p.covers_application(Some("argocd"), "dev-web", "default"));
        assert!(p.covers_image("reg.example.com/team/app"));
        assert!(!p.covers_image("docker.io/library/nginx"));
        assert_eq!(p.tags.as_ref().unwrap().patterns.len(), 3);
        assert_eq!(p.scan.as_ref().unwrap().fail_on, Severity::High);
        assert!(p.pin_digests);
        assert_eq!(f.image_paths[0].kind, "Rollout");
    }

    #[test]
    fn bad_values_name_their_place() {
        let err = parse("policies:\n- name: a\n  scan:\n    failOn: severe\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy.yaml:4:13: failOn must be critical, high, medium or low, not \"severe\""
        );
        let err = parse("policies:\n- name: a\n  tags:\n    allow: [\"(\"]\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("policy.yaml:4:13: tag pattern \"(\""),
            "{err}"
        );
        let err =
            parse("policies:\n- name: a\n  signatures:\n    keys: [missing.pub]\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("policy.yaml:4:12: cannot read key file"),
            "{err}"
        );
        let err = parse("policies:\n- name: a\n- name: a\n").unwrap_err();
        assert!(
            err.to_string().contains("also defined at policy.yaml:2"),
            "{err}"
        );
        let err = parse("policies:\n- name: a\n  colour: red\n").unwrap_err();
        assert!(err.to_string().starts_with("policy.yaml:3:"), "{err}");
    }
}
