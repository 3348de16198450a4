//! Git push webhooks: GitHub, GitLab and Gitea.
//!
//! A push tells the agent which repository moved so it can refresh the
//! Applications that use it at once instead of at the next poll. The request
//! is authenticated the way each forge does it: GitHub's
//! `X-Hub-Signature-256` and Gitea's `X-Gitea-Signature` are HMAC-SHA256 of
//! the body with the shared secret, GitLab's `X-Gitlab-Token` is the secret.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Which forge sent a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// GitHub.
    GitHub,
    /// GitLab.
    GitLab,
    /// Gitea (and Forgejo).
    Gitea,
}

/// A verified push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Who sent it.
    pub forge: Forge,
    /// Every URL the payload gives for the repository.
    pub urls: Vec<String>,
    /// The ref pushed (`refs/heads/main`).
    pub git_ref: String,
    /// The new commit.
    pub after: String,
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    /// Not a push from a known forge.
    #[error("not a push event from GitHub, GitLab or Gitea")]
    Unknown,
    /// The signature or token is wrong or missing.
    #[error("the webhook signature does not verify")]
    BadSignature,
    /// The body is not JSON of the expected shape.
    #[error("malformed push payload: {0}")]
    Malformed(String),
}

/// Header lookup, case-insensitive.
pub trait Headers {
    /// The value of `name`, if present.
    fn get(&self, name: &str) -> Option<String>;
}

impl Headers for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(body);
    Some(mac.finalize().into_bytes().to_vec())
}

fn verify_hmac(secret: &str, body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Constant-time comparison of two secrets.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parse and verify a push. With no secret configured, any well-formed push is
/// accepted (it can only make the agent look at Git sooner).
pub fn parse(
    headers: &impl Headers,
    body: &[u8],
    secret: Option<&str>,
) -> Result<Push, WebhookError> {
    let forge = if headers.get("X-GitHub-Event").is_some() {
        Forge::GitHub
    } else if headers.get("X-Gitlab-Event").is_some() {
        Forge::GitLab
    } else if headers.get("X-Gitea-Event").is_some() || headers.get("X-Gogs-Event").is_some() {
        Forge::Gitea
    } else {
        return Err(WebhookError::Unknown);
    };
    if let Some(secret) = secret.filter(|s| !s.is_empty()) {
        let ok = match forge {
            Forge::GitHub => headers
                .get("X-Hub-Signature-256")
                .and_then(|s| s.strip_prefix("sha256=").map(str::to_string))
                .is_some_and(|s| verify_hmac(secret, body, &s)),
            Forge::Gitea => headers
                .get("X-Gitea-Signature")
                .or_else(|| headers.get("X-Gogs-Signature"))
                .is_some_and(|s| verify_hmac(secret, body, &s)),
            Forge::GitLab => headers
                .get("X-Gitlab-Token")
                .is_some_and(|t| same_secret(&t, secret)),
        };
        if !ok {
            return Err(WebhookError::BadSignature);
        }
    }
    let event = headers
        .get("X-GitHub-Event")
        .or_else(|| headers.get("X-Gitlab-Event"))
        .or_else(|| headers.get("X-Gitea-Event"))
        .unwrap_or_default();
    if !(event.eq_ignore_ascii_case("push") || event.eq_ignore_ascii_case("Push Hook")) {
        return Err(WebhookError::Unknown);
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let urls: Vec<String> = match forge {
        Forge::GitLab => [
            "/project/git_http_url",
            "/project/git_ssh_url",
            "/project/web_url",
            "/repository/git_http_url",
            "/repository/url",
        ]
        .iter()
        .filter_map(|p| s(p))
        .collect(),
        Forge::GitHub | Forge::Gitea => [
            "/repository/clone_url",
            "/repository/ssh_url",
            "/repository/html_url",
            "/repository/git_url",
        ]
        .iter()
        .filter_map(|p| s(p))
        .collect(),
    };
    if urls.is_empty() {
        return Err(WebhookError::Malformed("no repository URL".into()));
    }
    Ok(Push {
        forge,
        urls,
        git_ref: s("/ref").unwrap_or_default(),
        after: s("/after").unwrap_or_default(),
    })
}

/// A repository URL reduced to host and path, so `https://h/o/r.git`,
/// `git@h:o/r` and `ssh://git@h/o/r` compare equal.
pub fn canonical_repo(url: &str) -> String {
    let u = url.trim().trim_end_matches('/');
    let u = u.strip_suffix(".git").unwrap_or(u);
    let (host_path, is_file) = match u.split_once("://") {
        Some(("file", rest)) => (rest.to_string(), true),
        Some((_, rest)) => (
            rest.rsplit_once('@')
                .map(|(_, h)| h)
                .unwrap_or(rest)
                .to_string(),
            false,
        ),
        None => match u.split_once(':') {
            // scp-like user@host:path
            Some((left, path)) if !left.contains('/') => {
                let host = left.rsplit_once('@').map(|(_, h)| h).unwrap_or(left);
                (format!("{host}/{}", path.trim_start_matches('/')), false)
            }
            _ => (u.to_string(), true),
        },
    };
    if is_file {
        return format!("file:{host_path}");
    }
    let (host, path) = host_path.split_once('/').unwrap_or((&host_path, ""));
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    format!("{host}/{}", path.to_ascii_lowercase())
}

/// The signature header value GitHub would send for `body` (for tests and tools).
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_hex(secret, body).unwrap_or_default())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const GITHUB: &str = r#"{"ref":"refs/heads/main","after":"abc","repository":{"clone_url":"https://github.com/myorg/k8s-manifests.git","ssh_url":"git@github.com:myorg/k8s-manifests.git","html_url":"https://github.com/myorg/k8s-manifests"}}"#;

    #[test]
    fn github_pushes_verify_their_signature() {
        let sig = github_signature("s3cret", GITHUB.as_bytes());
        let ok = parse(
            &h(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]),
            GITHUB.as_bytes(),
            Some("s3cret"),
        )
        .unwrap();
        assert_eq!(ok.forge, Forge::GitHub);
        assert_eq!(ok.after, "abc");
        assert!(
            ok.urls
                .iter()
                .any(|u| canonical_repo(u) == canonical_repo("git@github.com:myorg/k8s-manifests"))
        );
        let bad = parse(
            &h(&[
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", "sha256=00"),
            ]),
            GITHUB.as_bytes(),
            Some("s3cret"),
        );
        assert_eq!(bad, Err(WebhookError::BadSignature));
        let missing = parse(
            &h(&[("X-GitHub-Event", "push")]),
            GITHUB.as_bytes(),
            Some("s3cret"),
        );
        assert_eq!(missing, Err(WebhookError::BadSignature));
        let ping = parse(&h(&[("X-GitHub-Event", "ping")]), GITHUB.as_bytes(), None);
        assert_eq!(ping, Err(WebhookError::Unknown));
    }

    #[test]
    fn gitlab_and_gitea() {
        let gl = r#"{"ref":"refs/heads/main","after":"def","project":{"git_http_url":"https://gitlab.example.com/g/r.git","git_ssh_url":"git@gitlab.example.com:g/r.git"}}"#;
        let p = parse(
            &h(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "tok")]),
            gl.as_bytes(),
            Some("tok"),
        )
        .unwrap();
        assert_eq!(p.forge, Forge::GitLab);
        assert_eq!(canonical_repo(&p.urls[0]), "gitlab.example.com/g/r");
        assert_eq!(
            parse(
                &h(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "nope")]),
                gl.as_bytes(),
                Some("tok")
            ),
            Err(WebhookError::BadSignature)
        );
        let sig = hex::encode(hmac_hex("k", GITHUB.as_bytes()).unwrap());
        let p = parse(
            &h(&[("X-Gitea-Event", "push"), ("X-Gitea-Signature", &sig)]),
            GITHUB.as_bytes(),
            Some("k"),
        )
        .unwrap();
        assert_eq!(p.forge, Forge::Gitea);
    }

    #[test]
    fn repository_urls_compare_by_host_and_path() {
        let same = [
            "https://github.com/Org/Repo.git",
            "https://user:tok@github.com/org/repo",
            "git@github.com:org/repo.git",
            "ssh://git@github.com:22/org/repo",
        ];
        for u in same {
            assert_eq!(canonical_repo(u), "github.com/org/repo", "{u}");
        }
        assert_eq!(canonical_repo("file:///tmp/x/repo.git"), "file:/tmp/x/repo");
        assert_ne!(
            canonical_repo("https://github.com/org/other"),
            "github.com/org/repo"
        );
    }
}
