//! Credentials for Git remotes.
//!
//! Two sources, most specific first: a credentials file with one entry per URL
//! prefix (longest match wins), then the environment (`PLUMB_GIT_USERNAME`,
//! `PLUMB_GIT_PASSWORD` or `PLUMB_GIT_TOKEN`, `PLUMB_GIT_SSH_KEY`) for every
//! remote. Secrets are held in [`Secret`], whose `Debug` prints nothing, and
//! any error text from a transport is scrubbed of them before it is shown.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A value that must never be printed.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for handing to a transport.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for remotes whose URL starts with `url`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialEntry {
    /// URL prefix the entry applies to; empty matches every remote.
    #[serde(default)]
    pub url: String,
    /// User name for HTTPS.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for HTTPS.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A token for HTTPS, sent as the password.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Private key file for SSH.
    #[serde(default)]
    pub ssh_private_key_file: Option<PathBuf>,
    /// Command to run instead of `ssh` (as git's `core.sshCommand`).
    #[serde(default)]
    pub ssh_command: Option<String>,
}

impl CredentialEntry {
    fn secret(&self) -> Option<&Secret> {
        self.password.as_ref().or(self.token.as_ref())
    }
}

/// Errors reading a credentials file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a list of entries.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
}

/// Everything plumb knows to authenticate to Git remotes.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    entries: Vec<CredentialEntry>,
    fallback: Option<CredentialEntry>,
}

impl Credentials {
    /// Credentials from the environment only.
    pub fn from_env() -> Credentials {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let entry = CredentialEntry {
            url: String::new(),
            username: var("PLUMB_GIT_USERNAME"),
            password: var("PLUMB_GIT_PASSWORD").map(Secret),
            token: var("PLUMB_GIT_TOKEN").map(Secret),
            ssh_private_key_file: var("PLUMB_GIT_SSH_KEY").map(PathBuf::from),
            ssh_command: var("PLUMB_GIT_SSH_COMMAND"),
        };
        let any = entry.username.is_some()
            || entry.secret().is_some()
            || entry.ssh_private_key_file.is_some()
            || entry.ssh_command.is_some();
        Credentials {
            entries: Vec::new(),
            fallback: any.then_some(entry),
        }
    }

    /// Add the entries of a YAML credentials file (a list of [`CredentialEntry`]).
    pub fn with_file(mut self, path: &Path) -> Result<Credentials, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let entries: Vec<CredentialEntry> =
            serde_saphyr::from_str(&text).map_err(|e| CredentialsError::Parse {
                path: path.to_path_buf(),
                message: scrub_text(&e.to_string(), &[]),
            })?;
        self.entries.extend(entries);
        Ok(self)
    }

    /// Add one entry.
    pub fn with_entry(mut self, entry: CredentialEntry) -> Credentials {
        self.entries.push(entry);
        self
    }

    fn for_url(&self, url: &str) -> Option<&CredentialEntry> {
        self.entries
            .iter()
            .filter(|e| url.starts_with(&e.url))
            .max_by_key(|e| e.url.len())
            .or(self.fallback.as_ref())
    }

    /// The `core.sshCommand` to use for `url`, when a key is configured.
    pub(crate) fn ssh_command(&self, url: &str) -> Option<String> {
        let entry = self.for_url(url)?;
        let program = entry
            .ssh_command
            .clone()
            .unwrap_or_else(|| "ssh".to_string());
        match &entry.ssh_private_key_file {
            Some(key) => Some(format!(
                "{program} -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
                key.display().to_string().replace('\'', "")
            )),
            None => entry.ssh_command.clone(),
        }
    }

    /// Answer gix's credential requests for `url`.
    pub(crate) fn answer(
        &self,
        url: &str,
        action: gix::credentials::helper::Action,
    ) -> gix::Result<Option<gix::credentials::protocol::Outcome>> {
        use gix::credentials::helper::Action;
        let Action::Get(ctx) = action else {
            return Ok(None);
        };
        let Some(entry) = self.for_url(url) else {
            return Ok(None);
        };
        let Some(secret) = entry.secret() else {
            return Ok(None);
        };
        let username = entry
            .username
            .clone()
            .unwrap_or_else(|| "plumb".to_string());
        Ok(Some(gix::credentials::protocol::Outcome {
            identity: gix::sec::identity::Account {
                username,
                password: secret.expose().to_string(),
                oauth_refresh_token: None,
            },
            next: ctx.into(),
        }))
    }

    /// `text` with every configured secret replaced by `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        let secrets: Vec<&str> = self
            .entries
            .iter()
            .chain(self.fallback.iter())
            .filter_map(CredentialEntry::secret)
            .map(Secret::expose)
            .collect();
        scrub_text(text, &secrets)
    }
}

fn scrub_text(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 4 {
            out = out.replace(s, "<redacted>");
        }
    }
    // User-info in URLs inside messages.
    let mut result = String::with_capacity(out.len());
    for word in out.split_inclusive(char::is_whitespace) {
        let trimmed = word.trim_end();
        if trimmed.contains("://") && trimmed.contains('@') {
            result.push_str(&crate::redact_url(trimmed));
            result.push_str(&word[trimmed.len()..]);
        } else {
            result.push_str(word);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::default().with_entry(CredentialEntry {
            url: "https://git.example.com/".into(),
            username: Some("bot".into()),
            password: Some(Secret("hunter22".into())),
            ..Default::default()
        });
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter22"), "{shown}");
        assert_eq!(
            c.scrub("auth failed for hunter22 at https://bot:hunter22@git.example.com/x"),
            "auth failed for <redacted> at https://git.example.com/x"
        );
    }

    #[test]
    fn longest_prefix_wins() {
        let c = Credentials::default()
            .with_entry(CredentialEntry {
                url: "https://git.example.com/".into(),
                username: Some("a".into()),
                ..Default::default()
            })
            .with_entry(CredentialEntry {
                url: "https://git.example.com/team/".into(),
                username: Some("b".into()),
                ..Default::default()
            });
        assert_eq!(
            c.for_url("https://git.example.com/team/repo")
                .and_then(|e| e.username.as_deref()),
            Some("b")
        );
        assert_eq!(
            c.for_url("https://git.example.com/other")
                .and_then(|e| e.username.as_deref()),
            Some("a")
        );
        assert!(c.for_url("https://elsewhere/").is_none());
    }
}
