//! Registry configuration (`--config FILE`, YAML) and the policies it defines.
//!
//! ```yaml
//! auth:
//!   htpasswd: /etc/plumb/htpasswd   # bcrypt entries
//!   anonymous_pull: false
//!   roles: { ci: push, deploy: read } # users not listed get default_role
//!   default_role: push
//!   scheme: basic                   # basic | token | both (token: Bearer tokens from /token)
//!   token:                          # only read with scheme token or both
//!     key: token-key.pem            # P-256 private key (PEM); default ROOT/token/key.pem, made on first start
//!     service: plumb-registry       # the `service` of challenges and the tokens' audience
//!     issuer: plumb-registry
//!     realm: https://registry.example/token  # default: /token at the address the client used
//!     expiry: 5m
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
//! proxy:                      # pull-through caches: dockerhub/library/alpine -> upstream library/alpine
//!   - prefix: dockerhub
//!     upstream: https://registry-1.docker.io
//!     tag_ttl: 5m             # a cached tag is checked upstream (HEAD) at most this often
//!     credentials: { username: me, password_file: hub-token }  # or password: ..., or
//!                             # { docker_config: config.json, entry: https://index.docker.io/v1/ }
//!     ca: upstream-ca.pem     # extra CA to trust for the upstream
//! quotas:                     # storage per repository prefix (see `Quota`)
//!   - { prefix: team-a/, max_bytes: 10GiB }
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
    /// A `proxy` entry that cannot work.
    #[error("{path}: proxy {prefix:?}: {message}")]
    Proxy {
        /// The file.
        path: PathBuf,
        /// The entry's prefix.
        prefix: String,
        /// What is wrong.
        message: String,
    },
    /// A `quotas` entry that cannot work.
    #[error("{path}: quota {prefix:?}: {message}")]
    Quota {
        /// The file.
        path: PathBuf,
        /// The entry's prefix.
        prefix: String,
        /// What is wrong.
        message: String,
    },
    /// An `auth` setting that cannot work.
    #[error("{path}: auth.{field}: {message}")]
    Auth {
        /// The file.
        path: PathBuf,
        /// Which setting.
        field: String,
        /// What is wrong.
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
    #[serde(default)]
    proxy: Vec<RawProxy>,
    #[serde(default)]
    quotas: Vec<RawQuota>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    prefix: String,
    max_bytes: RawSize,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

/// Parse `10GiB`, `500MB`, `1024` (bytes): units B, KB/MB/GB/TB (powers of
/// 1000) and KiB/MiB/GiB/TiB (powers of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let i = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..i].parse().ok()?;
    let mul: u64 = match s[i..].trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000_u64.pow(2),
        "GB" => 1000_u64.pow(3),
        "TB" => 1000_u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// A storage quota on the repositories under a prefix.
///
/// A repository is under the prefix `team-a/` (or `team-a`) when it is
/// named `team-a` or its name starts with `team-a/`. Usage is the sum of
/// the sizes of the distinct blobs linked into those repositories (a blob
/// shared by several of them counts once) plus the sizes of their
/// manifests. Uploads not yet finished do not count, and neither does
/// content GC has yet to remove from a repository.
#[derive(Debug, Clone)]
pub struct Quota {
    /// The prefix, without a trailing `/`.
    pub prefix: String,
    /// The most bytes the prefix's repositories may use.
    pub max_bytes: u64,
}

impl Quota {
    /// Whether `repo` is under the quota's prefix.
    pub fn covers(&self, repo: &str) -> bool {
        repo.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    prefix: String,
    upstream: String,
    tag_ttl: Option<String>,
    credentials: Option<RawCredentials>,
    ca: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    docker_config: Option<PathBuf>,
    entry: Option<String>,
}

impl std::fmt::Debug for RawCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawCredentials(<redacted>)")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    key: Option<PathBuf>,
    service: Option<String>,
    issuer: Option<String>,
    realm: Option<String>,
    expiry: Option<String>,
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
    scheme: Option<AuthScheme>,
    token: Option<RawToken>,
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

/// How clients authenticate to the registry's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// HTTP Basic with htpasswd users on every request (the default).
    #[default]
    Basic,
    /// Bearer tokens issued by the registry's `/token` endpoint (the
    /// Docker/OCI token flow); Basic only at `/token`.
    Token,
    /// Both: Bearer challenges, and Basic still accepted on every request.
    Both,
}

impl AuthScheme {
    /// Whether Bearer tokens are issued and accepted.
    pub fn tokens(self) -> bool {
        matches!(self, AuthScheme::Token | AuthScheme::Both)
    }

    /// Whether Basic credentials are accepted on API requests.
    pub fn basic(self) -> bool {
        matches!(self, AuthScheme::Basic | AuthScheme::Both)
    }
}

/// How the registry issues Bearer tokens (with [`AuthScheme::Token`] or [`AuthScheme::Both`]).
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The P-256 signing key (PEM); `None`: `ROOT/token/key.pem`, made on
    /// first start.
    pub key: Option<PathBuf>,
    /// The `service` named in challenges and the tokens' audience.
    pub service: String,
    /// The tokens' issuer.
    pub issuer: String,
    /// The realm clients fetch tokens from; `None`: `/token` at the scheme
    /// and host the client used.
    pub realm: Option<String>,
    /// How long a token is valid.
    pub expiry: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            key: None,
            service: "plumb-registry".into(),
            issuer: "plumb-registry".into(),
            realm: None,
            expiry: Duration::from_secs(300),
        }
    }
}

/// Where a pull-through cache finds the credentials it presents upstream.
#[derive(Clone, Default)]
pub enum ProxyCredentials {
    /// None: the upstream is asked anonymously.
    #[default]
    Anonymous,
    /// A user name and password written in the configuration.
    Password {
        /// User name.
        username: String,
        /// Password (never printed).
        password: String,
    },
    /// A user name, and a password read from a file when the registry opens.
    PasswordFile {
        /// User name.
        username: String,
        /// The file (its content, without a trailing newline, is the password).
        path: PathBuf,
    },
    /// An `auths` entry of a docker `config.json`, read when the registry opens.
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// The entry's key; `None`: the upstream's host.
        entry: Option<String>,
    },
}

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyCredentials::Anonymous => f.write_str("Anonymous"),
            ProxyCredentials::Password { username, .. } => {
                write!(f, "Password({username}, <redacted>)")
            }
            ProxyCredentials::PasswordFile { username, path } => {
                write!(f, "PasswordFile({username}, {})", path.display())
            }
            ProxyCredentials::DockerConfig { path, entry } => {
                write!(f, "DockerConfig({}, {entry:?})", path.display())
            }
        }
    }
}

/// A pull-through cache: repositories under `prefix/` mirror the upstream's
/// repositories of the same name without the prefix.
#[derive(Debug, Clone)]
pub struct ProxyRule {
    /// The repository prefix (`dockerhub` serves `dockerhub/library/alpine`).
    pub prefix: String,
    /// The upstream as configured (`https://registry-1.docker.io`).
    pub upstream: String,
    /// The upstream's `host[:port]`.
    pub host: String,
    /// Whether the upstream speaks plain HTTP.
    pub plain_http: bool,
    /// How long a cached tag is served before it is checked upstream again.
    pub tag_ttl: Duration,
    /// What the cache presents upstream.
    pub credentials: ProxyCredentials,
    /// An extra CA certificate (PEM) to trust for the upstream.
    pub ca: Option<PathBuf>,
}

impl ProxyRule {
    /// The upstream repository `repo` mirrors, when `repo` is under this prefix.
    pub fn upstream_name<'a>(&self, repo: &'a str) -> Option<&'a str> {
        repo.strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')
            .filter(|rest| !rest.is_empty())
    }
}

/// Split `scheme://host[:port][/]` into (plain HTTP, host), refusing anything else.
fn upstream_host(url: &str) -> Result<(bool, String), String> {
    let (plain, rest) = if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else {
        return Err(format!(
            "upstream {url:?} must start with https:// (or http:// for a registry without TLS)"
        ));
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() || host.contains(['/', '?', '#', '@']) || host.contains(char::is_whitespace)
    {
        return Err(format!(
            "upstream {url:?} must be scheme://host[:port], without a path or user info"
        ));
    }
    Ok((plain, host.to_owned()))
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
    /// How clients authenticate.
    pub auth_scheme: AuthScheme,
    /// How tokens are issued, when [`AuthScheme::tokens`].
    pub token: TokenSettings,
    /// Pull-through caches, first matching prefix wins.
    pub proxies: Vec<ProxyRule>,
    /// Storage quotas; every quota covering a repository applies.
    pub quotas: Vec<Quota>,
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
            auth_scheme: AuthScheme::Basic,
            token: TokenSettings::default(),
            proxies: vec![],
            quotas: vec![],
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
        cfg.auth_scheme = raw.auth.scheme.unwrap_or_default();
        if let Some(t) = raw.auth.token {
            let auth = |field: &str, message: String| ConfigError::Auth {
                path: path.to_owned(),
                field: field.to_owned(),
                message,
            };
            let token = &mut cfg.token;
            token.key = t.key.map(|k| base.join(k));
            if let Some(s) = t.service {
                token.service = s;
            }
            if let Some(i) = t.issuer {
                token.issuer = i;
            }
            if let Some(r) = t.realm {
                if !(r.starts_with("https://") || r.starts_with("http://")) || r.contains('"') {
                    return Err(auth("token.realm", format!("{r:?} is not an http(s) URL")));
                }
                token.realm = Some(r);
            }
            if let Some(e) = t.expiry {
                token.expiry = duration("auth.token.expiry", &e)?;
                if token.expiry.is_zero() {
                    return Err(auth(
                        "token.expiry",
                        "a token must live longer than 0s".into(),
                    ));
                }
            }
            for (field, v) in [
                ("token.service", &token.service),
                ("token.issuer", &token.issuer),
            ] {
                if v.is_empty() || v.contains(['"', '\\']) {
                    return Err(auth(
                        field,
                        format!("{v:?} must be non-empty, without quotes"),
                    ));
                }
            }
        }
        for p in raw.proxy {
            cfg.proxies.push(proxy_rule(p, path, base, &duration)?);
        }
        for q in raw.quotas {
            let prefix = q.prefix.trim_end_matches('/').to_owned();
            let bad = |message: String| ConfigError::Quota {
                path: path.to_owned(),
                prefix: q.prefix.clone(),
                message,
            };
            if let Err(e) = plumb_oci::RepositoryName::parse(&prefix) {
                return Err(bad(format!("the prefix is not a repository name: {e}")));
            }
            let max_bytes = match &q.max_bytes {
                RawSize::Bytes(n) => *n,
                RawSize::Text(t) => parse_size(t).ok_or_else(|| {
                    bad(format!(
                        "max_bytes {t:?} is not a size (use e.g. 500MB, 10GiB or a number of bytes)"
                    ))
                })?,
            };
            cfg.quotas.push(Quota { prefix, max_bytes });
        }
        Ok(cfg)
    }

    /// The pull-through cache serving `repo`, and the upstream name it mirrors.
    #[inline]
    pub fn proxy_for<'a>(&self, repo: &'a str) -> Option<(&ProxyRule, &'a str)> {
        if self.proxies.is_empty() {
            return None;
        }
        self.proxies
            .iter()
            .find_map(|p| Some((p, p.upstream_name(repo)?)))
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

/// Check and resolve one `proxy` entry.
fn proxy_rule(
    p: RawProxy,
    path: &Path,
    base: &Path,
    duration: &dyn Fn(&str, &str) -> Result<Duration, ConfigError>,
) -> Result<ProxyRule, ConfigError> {
    let fail = |message: String| ConfigError::Proxy {
        path: path.to_owned(),
        prefix: p.prefix.clone(),
        message,
    };
    if let Err(e) = plumb_oci::RepositoryName::parse(&p.prefix) {
        return Err(fail(format!("the prefix is not a repository name: {e}")));
    }
    let (plain_http, host) = upstream_host(&p.upstream).map_err(&fail)?;
    let tag_ttl = match &p.tag_ttl {
        Some(t) => duration("proxy.tag_ttl", t)?,
        None => Duration::from_secs(300),
    };
    let credentials = match p.credentials {
        None => ProxyCredentials::Anonymous,
        Some(c) => match (c.username, c.password, c.password_file, c.docker_config) {
            (Some(username), Some(password), None, None) if c.entry.is_none() => {
                ProxyCredentials::Password { username, password }
            }
            (Some(username), None, Some(file), None) if c.entry.is_none() => {
                ProxyCredentials::PasswordFile {
                    username,
                    path: base.join(file),
                }
            }
            (None, None, None, Some(file)) => ProxyCredentials::DockerConfig {
                path: base.join(file),
                entry: c.entry,
            },
            _ => {
                return Err(fail(
                    "credentials are {username, password}, {username, password_file} or {docker_config[, entry]}".into(),
                ));
            }
        },
    };
    Ok(ProxyRule {
        prefix: p.prefix.clone(),
        upstream: p.upstream.clone(),
        host,
        plain_http,
        tag_ttl,
        credentials,
        ca: p.ca.map(|c| base.join(c)),
    })
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
    fn parses_proxies_and_token_auth() {
        let text = r#"
auth:
  scheme: both
  token: { key: k.pem, service: reg.example, expiry: 10m, realm: "https://reg.example/token" }
proxy:
  - prefix: dockerhub
    upstream: https://registry-1.docker.io/
    credentials: { username: me, password: s3cret }
  - prefix: mirror/ghcr
    upstream: http://127.0.0.1:5001
    tag_ttl: 30s
    credentials: { docker_config: docker/config.json }
"#;
        let c = RegistryConfig::parse(text, Path::new("/etc/plumb/registry.yaml")).unwrap();
        assert_eq!(c.auth_scheme, AuthScheme::Both);
        assert!(c.auth_scheme.tokens() && c.auth_scheme.basic());
        assert_eq!(c.token.key.as_deref(), Some(Path::new("/etc/plumb/k.pem")));
        assert_eq!(c.token.expiry, Duration::from_secs(600));
        assert_eq!(c.token.issuer, "plumb-registry");
        let (p, up) = c.proxy_for("dockerhub/library/alpine").unwrap();
        assert_eq!(
            (p.host.as_str(), up),
            ("registry-1.docker.io", "library/alpine")
        );
        assert!(!p.plain_http);
        assert_eq!(p.tag_ttl, Duration::from_secs(300));
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "credentials are never printed"
        );
        let (p, up) = c.proxy_for("mirror/ghcr/org/app").unwrap();
        assert_eq!(
            (p.host.as_str(), up, p.plain_http),
            ("127.0.0.1:5001", "org/app", true)
        );
        assert!(
            matches!(&p.credentials, ProxyCredentials::DockerConfig { path, entry: None }
            if path == Path::new("/etc/plumb/docker/config.json"))
        );
        assert!(c.proxy_for("dockerhub").is_none());
        assert!(c.proxy_for("dockerhubx/a").is_none());
        assert!(c.proxy_for("team/app").is_none());
        assert!(RegistryConfig::default().proxy_for("dockerhub/a").is_none());
        assert_eq!(RegistryConfig::default().auth_scheme, AuthScheme::Basic);
    }

    #[test]
    fn bad_proxies_and_token_settings_are_refused() {
        let bad = [
            (
                "proxy: [{prefix: hub, upstream: registry-1.docker.io}]",
                "https://",
            ),
            (
                "proxy: [{prefix: hub, upstream: 'https://h/v2/'}]",
                "without a path",
            ),
            (
                "proxy: [{prefix: Hub, upstream: 'https://h'}]",
                "repository name",
            ),
            (
                "proxy: [{prefix: hub, upstream: 'https://h', credentials: {username: u}}]",
                "credentials are",
            ),
            ("auth: {token: {realm: 'reg/token'}}", "auth.token.realm"),
            ("auth: {scheme: kerberos}", "line"),
        ];
        for (text, wanted) in bad {
            let e = RegistryConfig::parse(text, Path::new("r.yaml")).unwrap_err();
            assert!(e.to_string().contains(wanted), "{text}: {e}");
        }
    }

    #[test]
    fn parses_quotas() {
        let text = "quotas:\n  - { prefix: team-a/, max_bytes: 10GiB }\n  - { prefix: b, max_bytes: 1000 }\n";
        let c = RegistryConfig::parse(text, Path::new("r.yaml")).unwrap();
        assert_eq!(c.quotas[0].max_bytes, 10 << 30);
        assert_eq!(c.quotas[1].max_bytes, 1000);
        assert!(c.quotas[0].covers("team-a/app") && c.quotas[0].covers("team-a"));
        assert!(!c.quotas[0].covers("team-ab/app"));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("5 PB"), None);
        let e = RegistryConfig::parse(
            "quotas: [{prefix: a, max_bytes: lots}]",
            Path::new("r.yaml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_bytes"), "{e}");
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
