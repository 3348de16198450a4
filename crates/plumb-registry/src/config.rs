//! Registry configuration (`--config FILE`, YAML) and the policies it defines.
//!
//! ```yaml
//! auth:
//!   htpasswd: /etc/plumb/htpasswd   # bcrypt entries
//!   anonymous_pull: false
//!   roles: { ci: push, deploy: read } # users not listed get default_role
//!   default_role: push
//! limits:
//!   max_manifest_bytes: 4194304
//! immutable_tags: ['^[0-9a-f]{40}$', '^v[0-9]+\.[0-9]+\.[0-9]+$']
//! repositories:
//!   - match: "team/**"        # glob: * within a path component, ** across them
//!     forbid_latest: true
//!     retention: { keep_last: 10, keep_tags: '^v', keep_within: 30d }
//! gc:
//!   interval: 1h              # 0 turns online GC off
//!   grace: 1h
//! tls: { cert: server.pem, key: server-key.pem }
//! storage:
//!   fsync: true               # false: acknowledge blobs from the page cache
//! scan:                       # vulnerability scanning (docs/SCAN.md)
//!   on_push: true             # scan each pushed image in the background
//!   advisories: advisories    # the store `plumb advisories import --data-dir` wrote
//!   workers: 1                # scans at once
//!   queue: 256                # images waiting at most (the rest wait for the next sweep)
//!   sign_key: cosign.key      # sign each report (COSIGN_PASSWORD unlocks it)
//!   database_poll: 30s        # a new import is noticed this fast; all images are rescanned
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// YAML that does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde-saphyr's message (with line and column).
        message: String,
    },
    /// A pattern that is not a valid regex.
    #[error("{path}: {field} pattern {pattern:?} is not a valid regular expression: {message}")]
    Pattern {
        /// The file.
        path: PathBuf,
        /// Which setting.
        field: String,
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// A duration like `30d` that does not parse.
    #[error("{path}: {field} = {value:?} is not a duration (use e.g. 90s, 15m, 12h, 30d, 2w)")]
    Duration {
        /// The file.
        path: PathBuf,
        /// Which setting.
        field: String,
        /// The value.
        value: String,
    },
}

/// A role a user holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pull only.
    Read,
    /// Pull, push and delete.
    Push,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    limits: RawLimits,
    immutable_tags: Option<Vec<String>>,
    #[serde(default)]
    repositories: Vec<RawRepository>,
    #[serde(default)]
    gc: RawGc,
    tls: Option<RawTls>,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    scan: RawScan,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    #[serde(default)]
    on_push: bool,
    workers: Option<usize>,
    queue: Option<usize>,
    advisories: Option<PathBuf>,
    sign_key: Option<PathBuf>,
    database_poll: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    fsync: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    htpasswd: Option<PathBuf>,
    #[serde(default)]
    anonymous_pull: bool,
    #[serde(default)]
    roles: std::collections::BTreeMap<String, Role>,
    default_role: Option<Role>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_manifest_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    #[serde(rename = "match")]
    pattern: String,
    #[serde(default)]
    forbid_latest: bool,
    retention: Option<RawRetention>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<usize>,
    keep_tags: Option<String>,
    keep_within: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGc {
    interval: Option<String>,
    grace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

/// Which tags may be overwritten, and where `latest` is refused.
#[derive(Debug, Clone)]
pub struct TagPolicy {
    /// Tags matching any of these never move once set.
    pub immutable: Vec<Regex>,
}

impl Default for TagPolicy {
    fn default() -> Self {
        TagPolicy {
            immutable: default_immutable_patterns()
                .iter()
                .filter_map(|p| Regex::new(p).ok())
                .collect(),
        }
    }
}

fn default_immutable_patterns() -> [&'static str; 2] {
    [r"^[0-9a-f]{40}$", r"^v[0-9]+\.[0-9]+\.[0-9]+$"]
}

impl TagPolicy {
    /// The pattern making `tag` immutable, if any.
    pub fn immutable_by(&self, tag: &str) -> Option<&Regex> {
        self.immutable.iter().find(|r| r.is_match(tag))
    }
}

/// What retention keeps in one repository.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// The N most recently pushed tags.
    pub keep_last: Option<usize>,
    /// Tags matching this.
    pub keep_tags: Option<Regex>,
    /// Tags pushed within this long.
    pub keep_within: Option<Duration>,
}

/// Rules for repositories matching a glob.
#[derive(Debug, Clone)]
pub struct RepositoryRule {
    /// The glob as written.
    pub pattern: String,
    matcher: Regex,
    /// Refuse the `latest` tag.
    pub forbid_latest: bool,
    /// Retention, if any.
    pub retention: Option<Retention>,
}

impl RepositoryRule {
    /// Whether the rule applies to `repo`.
    pub fn matches(&self, repo: &str) -> bool {
        self.matcher.is_match(repo)
    }
}

/// Translate a repository glob (`*` within a component, `**` across) to a regex.
fn glob_regex(glob: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' {
            if chars.peek() == Some(&'*') {
                chars.next();
                re.push_str(".*");
            } else {
                re.push_str("[^/]*");
            }
        } else {
            re.push_str(&regex::escape(&c.to_string()));
        }
    }
    re.push('$');
    Regex::new(&re)
}

/// Parse `90s`, `15m`, `12h`, `30d`, `2w` (or a bare number of seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(mul)?))
}

/// The whole registry configuration.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// htpasswd file with bcrypt entries.
    pub htpasswd: Option<PathBuf>,
    /// Whether pulls need no credentials.
    pub anonymous_pull: bool,
    /// Per-user roles.
    pub roles: std::collections::BTreeMap<String, Role>,
    /// Role of users not listed in `roles`.
    pub default_role: Role,
    /// Largest manifest accepted.
    pub max_manifest_bytes: u64,
    /// Tag immutability.
    pub tag_policy: TagPolicy,
    /// Per-repository rules, first match wins.
    pub repositories: Vec<RepositoryRule>,
    /// How often online GC runs (`None`: never).
    pub gc_interval: Option<Duration>,
    /// How long new content is safe from GC before anything references it.
    pub gc_grace: Duration,
    /// TLS certificate chain and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// fsync blobs before acknowledging them (default). Off, a blob survives
    /// a process crash but not necessarily a power loss, like CNCF
    /// distribution; metadata transactions stay durable either way.
    pub fsync: bool,
    /// Vulnerability scanning of pushed images.
    pub scan: ScanSettings,
}

/// How the registry scans what is pushed (see [`crate::scan`]).
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Scan each image manifest pushed, in the background.
    pub on_push: bool,
    /// Scans run at once (each is CPU-bound).
    pub workers: usize,
    /// Images waiting at most; a push past it is still accepted, and the
    /// image is scanned by the next sweep.
    pub queue: usize,
    /// The advisory store the scanner reads (plumb-cli opens it).
    pub advisories: Option<PathBuf>,
    /// A cosign private key (PEM) that signs each report.
    pub sign_key: Option<PathBuf>,
    /// How often the advisory database is checked for a new import, after
    /// which every image is scanned again.
    pub database_poll: Duration,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            on_push: false,
            workers: 1,
            queue: 256,
            advisories: None,
            sign_key: None,
            database_poll: Duration::from_secs(30),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            htpasswd: None,
            anonymous_pull: false,
            roles: Default::default(),
            default_role: Role::Push,
            max_manifest_bytes: 4 << 20,
            tag_policy: TagPolicy::default(),
            repositories: vec![],
            gc_interval: None,
            gc_grace: Duration::from_secs(3600),
            tls: None,
            fsync: true,
            scan: ScanSettings::default(),
        }
    }
}

impl RegistryConfig {
    /// Read and validate a YAML configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse configuration text (`path` is used in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?
        };
        let pattern = |field: &str, p: &str| {
            Regex::new(p).map_err(|e| ConfigError::Pattern {
                path: path.to_owned(),
                field: field.to_owned(),
                pattern: p.to_owned(),
                message: e.to_string(),
            })
        };
        let duration = |field: &str, v: &str| {
            parse_duration(v).ok_or_else(|| ConfigError::Duration {
                path: path.to_owned(),
                field: field.to_owned(),
                value: v.to_owned(),
            })
        };
        let mut cfg = RegistryConfig::default();
        // Relative paths in the file are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.htpasswd = raw.auth.htpasswd.map(|p| base.join(p));
        cfg.anonymous_pull = raw.auth.anonymous_pull;
        cfg.roles = raw.auth.roles;
        cfg.default_role = raw.auth.default_role.unwrap_or(Role::Push);
        if let Some(m) = raw.limits.max_manifest_bytes {
            cfg.max_manifest_bytes = m;
        }
        if let Some(list) = raw.immutable_tags {
            cfg.tag_policy.immutable = list
                .iter()
                .map(|p| pattern("immutable_tags", p))
                .collect::<Result<_, _>>()?;
        }
        for r in raw.repositories {
            let matcher = glob_regex(&r.pattern).map_err(|e| ConfigError::Pattern {
                path: path.to_owned(),
                field: "repositories.match".into(),
                pattern: r.pattern.clone(),
                message: e.to_string(),
            })?;
            let retention = match r.retention {
                Some(ret) => Some(Retention {
                    keep_last: ret.keep_last,
                    keep_tags: ret
                        .keep_tags
                        .map(|p| pattern("retention.keep_tags", &p))
                        .transpose()?,
                    keep_within: ret
                        .keep_within
                        .map(|v| duration("retention.keep_within", &v))
                        .transpose()?,
                }),
                None => None,
            };
            cfg.repositories.push(RepositoryRule {
                pattern: r.pattern,
                matcher,
                forbid_latest: r.forbid_latest,
                retention,
            });
        }
        if let Some(i) = raw.gc.interval {
            let d = duration("gc.interval", &i)?;
            cfg.gc_interval = (!d.is_zero()).then_some(d);
        }
        if let Some(g) = raw.gc.grace {
            cfg.gc_grace = duration("gc.grace", &g)?;
        }
        cfg.tls = raw.tls.map(|t| (base.join(t.cert), base.join(t.key)));
        cfg.fsync = raw.storage.fsync.unwrap_or(true);
        cfg.scan.on_push = raw.scan.on_push;
        cfg.scan.workers = raw.scan.workers.unwrap_or(1).max(1);
        cfg.scan.queue = raw.scan.queue.unwrap_or(256).max(1);
        cfg.scan.advisories = raw.scan.advisories.map(|p| base.join(p));
        cfg.scan.sign_key = raw.scan.sign_key.map(|p| base.join(p));
        if let Some(p) = raw.scan.database_poll {
            cfg.scan.database_poll =
                duration("scan.database_poll", &p)?.max(Duration::from_secs(1));
        }
        Ok(cfg)
    }

    /// The first repository rule matching `repo`.
    pub fn rule_for(&self, repo: &str) -> Option<&RepositoryRule> {
        self.repositories.iter().find(|r| r.matches(repo))
    }

    /// The role of `user`.
    pub fn role_of(&self, user: &str) -> Role {
        self.roles.get(user).copied().unwrap_or(self.default_role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_duration("1y"), None);
        assert_eq!(parse_duration("h"), None);
    }

    #[test]
    fn globs() {
        let r = glob_regex("team/*").unwrap();
        assert!(r.is_match("team/app"));
        assert!(!r.is_match("team/app/x"));
        let r = glob_regex("team/**").unwrap();
        assert!(r.is_match("team/app/x"));
        assert!(!glob_regex("a.b").unwrap().is_match("aXb"));
    }

    #[test]
    fn parses_a_full_config() {
        let text = r#"
auth:
  htpasswd: users.htpasswd
  roles: { deploy: read }
repositories:
  - match: "team/**"
    forbid_latest: true
    retention: { keep_last: 3, keep_tags: '^v', keep_within: 7d }
gc: { interval: 10m, grace: 30s }
storage: { fsync: false }
"#;
        let c = RegistryConfig::parse(text, Path::new("/etc/plumb/registry.yaml")).unwrap();
        assert_eq!(
            c.htpasswd.as_deref(),
            Some(Path::new("/etc/plumb/users.htpasswd"))
        );
        assert_eq!(c.role_of("deploy"), Role::Read);
        assert_eq!(c.role_of("ci"), Role::Push);
        let rule = c.rule_for("team/a/b").unwrap();
        assert!(rule.forbid_latest);
        assert_eq!(rule.retention.as_ref().unwrap().keep_last, Some(3));
        assert_eq!(c.gc_interval, Some(Duration::from_secs(600)));
        assert!(!c.fsync);
        assert!(RegistryConfig::default().fsync);
        assert!(c.tag_policy.immutable_by("v1.2.3").is_some());
        assert!(c.tag_policy.immutable_by(&"a".repeat(40)).is_some());
        assert!(c.tag_policy.immutable_by("latest").is_none());
    }

    #[test]
    fn bad_config_names_the_place() {
        let e = RegistryConfig::parse("gc:\n  grace: forever\n", Path::new("r.yaml")).unwrap_err();
        assert!(e.to_string().contains("gc.grace"), "{e}");
        let e = RegistryConfig::parse("auth:\n  bogus: 1\n", Path::new("r.yaml")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("r.yaml") && msg.contains("line"), "{msg}");
        let e = RegistryConfig::parse("immutable_tags: ['(']\n", Path::new("r.yaml")).unwrap_err();
        assert!(e.to_string().contains("immutable_tags"), "{e}");
    }
}
