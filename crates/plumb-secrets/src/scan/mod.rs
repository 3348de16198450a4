//! Plaintext secrets found before they reach a cluster or a state file.
//!
//! A [`Scan`] is fed the files of a source tree ([`Scan::add_file`]) and,
//! when there is a render, the rendered objects ([`Scan::add_manifest`]);
//! [`Scan::finish`] returns every [`Finding`], located at `file:line:col` in
//! the file the user wrote. Three kinds of thing are found:
//!
//! - a Kubernetes Secret whose `data`/`stringData` is not SOPS-encrypted, and
//!   a kustomize `secretGenerator` with literals or unencrypted files;
//! - credentials of known shapes (cloud keys, forge and chat tokens, private
//!   keys, JWTs) and high-entropy values under password-like keys, in any
//!   YAML, JSON, dotenv, `.tf` or `.tfvars` file and in rendered objects other
//!   than Secrets;
//! - string literals under password-like arguments in Terraform-language
//!   files.
//!
//! A finding never carries the value it found, nor any part of it: only the
//! rule, the place and a hint such as the key's name and the value's length.
//! Findings are allowed, with a reason, by an object annotation
//! ([`ALLOW_ANNOTATION`]), a comment on the line (`# plumb:allow-secret RULE
//! REASON`) or a [`IGNORE_FILE`] entry.

mod allow;
mod hcl;
mod patterns;
mod sarif;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use plumb_model::Origin;
use serde::Serialize;
use serde_json::Value;

pub use patterns::{ENTROPY_THRESHOLD, MIN_SECRET_LENGTH, shannon_entropy};
pub use sarif::sarif;

/// The annotation by which an object allows findings of some rules in it:
/// `"rule1,rule2 — reason"` (the reason is mandatory).
pub const ALLOW_ANNOTATION: &str = "plumb.dev/allow-secrets";

/// The annotation by which an Application asks for a stricter [`Mode`].
pub const MODE_ANNOTATION: &str = "plumb.dev/secrets-plaintext";

/// The file, at the root of a source tree (or any directory in it), whose
/// lines `path[:line] rule reason…` allow findings below that directory.
pub const IGNORE_FILE: &str = ".plumbignore-secrets";

/// What a plaintext secret does to a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Nothing is scanned.
    Allow,
    /// Findings are logged (never their values) and the sync proceeds.
    Warn,
    /// Findings refuse the sync (the default).
    #[default]
    Refuse,
}

impl Mode {
    /// The stricter of two modes: an Application may ask for more care than
    /// the process is configured with, never less.
    pub fn stricter(self, other: Mode) -> Mode {
        self.max(other)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Allow => "allow",
            Mode::Warn => "warn",
            Mode::Refuse => "refuse",
        })
    }
}

/// A mode that is none of `refuse`, `warn`, `allow`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown secrets mode {0:?}: use refuse, warn or allow")]
pub struct BadMode(pub String);

impl FromStr for Mode {
    type Err = BadMode;

    fn from_str(s: &str) -> Result<Mode, BadMode> {
        match s.trim() {
            "refuse" => Ok(Mode::Refuse),
            "warn" => Ok(Mode::Warn),
            "allow" => Ok(Mode::Allow),
            other => Err(BadMode(other.to_string())),
        }
    }
}

/// The rules a finding can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A Kubernetes Secret with `data`/`stringData` not SOPS-encrypted.
    PlaintextSecret,
    /// A kustomize `secretGenerator` with literals or unencrypted files.
    PlaintextSecretGenerator,
    /// An AWS access key id (`AKIA…`/`ASIA…`).
    AwsAccessKey,
    /// A GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken,
    /// A GitLab personal access token (`glpat-`).
    GitlabToken,
    /// A Slack token (`xoxa-`, `xoxb-`, `xoxp-`, `xoxr-`, `xoxs-`).
    SlackToken,
    /// A PEM private key.
    PrivateKey,
    /// A JSON Web Token.
    Jwt,
    /// A high-entropy value under a password-like key.
    GenericPassword,
    /// A string literal under a password-like Terraform argument or variable default.
    TfLiteralSecret,
    /// An allow entry (ignore file line, comment, annotation) without a reason,
    /// or an ignore file line that does not parse.
    BadAllow,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 11] = [
        Rule::PlaintextSecret,
        Rule::PlaintextSecretGenerator,
        Rule::AwsAccessKey,
        Rule::GithubToken,
        Rule::GitlabToken,
        Rule::SlackToken,
        Rule::PrivateKey,
        Rule::Jwt,
        Rule::GenericPassword,
        Rule::TfLiteralSecret,
        Rule::BadAllow,
    ];

    /// The rule's id, as refusals, allow entries and SARIF name it.
    pub fn id(self) -> &'static str {
        match self {
            Rule::PlaintextSecret => "plaintext-secret",
            Rule::PlaintextSecretGenerator => "plaintext-secret-generator",
            Rule::AwsAccessKey => "aws-access-key",
            Rule::GithubToken => "github-token",
            Rule::GitlabToken => "gitlab-token",
            Rule::SlackToken => "slack-token",
            Rule::PrivateKey => "private-key",
            Rule::Jwt => "jwt",
            Rule::GenericPassword => "generic-password",
            Rule::TfLiteralSecret => "tf-literal-secret",
            Rule::BadAllow => "bad-allow",
        }
    }

    /// One sentence about the rule.
    pub fn description(self) -> &'static str {
        match self {
            Rule::PlaintextSecret => {
                "a Kubernetes Secret in Git whose data/stringData is not SOPS-encrypted"
            }
            Rule::PlaintextSecretGenerator => {
                "a kustomize secretGenerator with literals, or files/envs that are not SOPS-encrypted"
            }
            Rule::AwsAccessKey => "an AWS access key id",
            Rule::GithubToken => "a GitHub token",
            Rule::GitlabToken => "a GitLab personal access token",
            Rule::SlackToken => "a Slack token",
            Rule::PrivateKey => "a PEM private key",
            Rule::Jwt => "a JSON Web Token",
            Rule::GenericPassword => "a high-entropy value under a password-like key",
            Rule::TfLiteralSecret => {
                "a string literal under a password-like Terraform argument or variable default"
            }
            Rule::BadAllow => "an allow entry without a reason, or one that does not parse",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Rule, String> {
        Rule::ALL
            .iter()
            .copied()
            .find(|r| r.id() == s.trim())
            .ok_or_else(|| format!("unknown rule {:?}", s.trim()))
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// One plaintext secret, located; never the value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The file, relative to the scanned root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The rule.
    pub rule: Rule,
    /// What was found, without the value: a key name, a length.
    pub hint: String,
}

impl Finding {
    /// Where, as an [`Origin`].
    pub fn origin(&self) -> Origin {
        Origin {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.rule, self.hint
        )
    }
}

/// A scan in progress: files and rendered objects in, findings out.
#[derive(Debug, Default)]
pub struct Scan {
    files: BTreeMap<String, String>,
    manifests: Vec<(Value, Origin)>,
}

impl Scan {
    /// An empty scan.
    pub fn new() -> Scan {
        Scan::default()
    }

    /// Add a file of the source tree (path relative to the scanned root,
    /// `/`-separated). Files that are not text are skipped; text files that
    /// [`is_scanned_file`] does not name are only read when a kustomize
    /// generator refers to them.
    pub fn add_file(&mut self, path: &str, data: &[u8]) {
        if let Ok(text) = std::str::from_utf8(data) {
            self.files.insert(path.to_string(), text.to_string());
        }
    }

    /// Whether a file with this path was added.
    pub fn has_file(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Add a rendered object. Secrets are skipped (they may hold values
    /// decrypted from SOPS files; Secrets are judged in the source files).
    pub fn add_manifest(&mut self, object: &Value, origin: &Origin) {
        if object.get("kind").and_then(Value::as_str) == Some("Secret") {
            return;
        }
        self.manifests.push((object.clone(), origin.clone()));
    }

    /// Every finding that no allow entry covers, sorted, each once.
    pub fn finish(self) -> Vec<Finding> {
        let mut found: BTreeSet<Finding> = BTreeSet::new();
        let mut allows = allow::Allows::default();
        for (path, text) in &self.files {
            let name = path.rsplit('/').next().unwrap_or(path);
            if name == IGNORE_FILE {
                let dir = path.strip_suffix(IGNORE_FILE).unwrap_or("");
                found.extend(allows.read_ignore_file(path, dir, text));
                continue;
            }
            if is_scanned_file(path) {
                found.extend(scan_file(path, text, &self.files, &mut allows));
            }
        }
        for (object, origin) in &self.manifests {
            found.extend(yaml::scan_rendered(object, origin, &self.files));
        }
        // One finding per place and rule (a value in a plain manifest is
        // seen in the file and in the rendered object).
        let mut seen = BTreeSet::new();
        found
            .into_iter()
            .filter(|f| !allows.covers(f))
            .filter(|f| seen.insert((f.file.clone(), f.line, f.column, f.rule)))
            .collect()
    }
}

/// Which files a scan of a directory reads.
pub fn is_scanned_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == IGNORE_FILE || name == "Kustomization" || name == ".env" {
        return true;
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    matches!(
        ext,
        "yaml" | "yml" | "json" | "tf" | "tfvars" | "env" | "hcl"
    ) || name.ends_with(".tf.json")
}

/// The paths a kustomization at `path` (repository-relative) refers to:
/// `resources`, `components`, `bases`, patches and generator files, resolved
/// against its directory; remote references and paths leaving the
/// repository are left out. Each may be a file or a directory.
pub fn kustomize_references(path: &str, text: &str) -> Vec<String> {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let Some(doc) = yaml::parse(text) else {
        return Vec::new();
    };
    let mut refs = Vec::new();
    let mut add = |entry: &str| {
        let entry = entry.split_once('=').map_or(entry, |(_, f)| f).trim();
        if entry.is_empty() || entry.contains("://") || entry.starts_with("git@") {
            return;
        }
        let joined = if dir.is_empty() {
            entry.to_string()
        } else {
            format!("{dir}/{entry}")
        };
        if let Some(p) = yaml::normalize(&joined) {
            refs.push(p);
        }
    };
    let strings = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("path").and_then(Value::as_str).map(String::from),
                    _ => None,
                })
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    for field in [
        "resources",
        "components",
        "bases",
        "patches",
        "patchesStrategicMerge",
        "patchesJson6902",
        "crds",
    ] {
        strings(doc.get(field)).iter().for_each(|s| add(s));
    }
    for field in ["secretGenerator", "configMapGenerator"] {
        for g in doc
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for key in ["files", "envs", "env"] {
                strings(g.get(key)).iter().for_each(|s| add(s));
            }
        }
    }
    refs
}

fn scan_file(
    path: &str,
    text: &str,
    files: &BTreeMap<String, String>,
    allows: &mut allow::Allows,
) -> Vec<Finding> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let mut out = allows.read_comments(path, text);
    out.extend(match ext {
        "tf" | "tfvars" | "hcl" => hcl::scan(path, text, ext == "tfvars"),
        "yaml" | "yml" | "json" => yaml::scan_file(path, text, files, allows),
        _ if name == "Kustomization" => yaml::scan_file(path, text, files, allows),
        _ => patterns::scan_lines(path, text, 1, text.lines().count()),
    });
    out
}

#[cfg(test)]
mod tests;
