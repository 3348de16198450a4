//! Git sources for plumb.
//!
//! plumb reads Git the way a deployer needs it, not the way a developer does:
//! it keeps one bare cache repository per URL under the data directory, fetches
//! only the commit a revision names (shallow, depth 1, by ref or by object id),
//! and reads files straight out of the commit's tree without ever checking out a
//! worktree. [`GitCache::fetch`] turns a `targetRevision` (branch, tag, full or
//! short SHA, `HEAD`) into a [`Commit`]; [`GitCache::remote_revision`] asks the
//! remote which commit a ref points to without fetching anything, which is what
//! a poller calls every minute; [`Snapshot`] reads the tree.
//!
//! Transports are gix's: `file://` and plain paths, `ssh://` and scp-like
//! `user@host:path` through the system `ssh`, and `http(s)://`. Credentials
//! ([`Credentials`]) come from the environment or a credentials file and are
//! handed to the transport only; they never appear in logs or errors, and URLs
//! are shown without their user-info part.
//!
//! This crate must not know about Kubernetes or rendering.

mod credentials;
mod snapshot;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use gix::bstr::ByteSlice;
use gix::protocol::transport::client::blocking_io::Transport as ClientTransport;
use gix::remote::Direction;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use credentials::{CredentialEntry, Credentials};
pub use snapshot::{FileEntry, Snapshot, SnapshotError};

/// Errors from fetching and resolving.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The cache directory could not be created or opened.
    #[error("cannot open the Git cache at {path}: {message}")]
    Cache {
        /// The cache repository.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The remote could not be reached or refused us.
    #[error("cannot reach {url}: {message}")]
    Remote {
        /// The repository URL, without credentials.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The revision names nothing in the repository.
    #[error("revision {revision:?} does not exist in {url}")]
    UnknownRevision {
        /// The repository URL, without credentials.
        url: String,
        /// The revision asked for.
        revision: String,
    },
    /// A short SHA matches several commits.
    #[error("revision {revision:?} is ambiguous in {url}; give more hex digits")]
    Ambiguous {
        /// The repository URL, without credentials.
        url: String,
        /// The revision asked for.
        revision: String,
    },
    /// The object named is not a commit.
    #[error("{id} in {url} is not a commit: {message}")]
    NotACommit {
        /// The repository URL, without credentials.
        url: String,
        /// The object id.
        id: String,
        /// What it is instead.
        message: String,
    },
}

/// A resolved commit and what its author said about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Full hex SHA.
    pub id: String,
    /// Author name.
    pub author: String,
    /// Author e-mail.
    pub email: String,
    /// Author time, seconds since the epoch.
    pub time: i64,
    /// Subject line of the message.
    pub subject: String,
    /// The whole message.
    pub message: String,
}

impl Commit {
    /// The abbreviated SHA people recognise.
    pub fn short(&self) -> &str {
        &self.id[..self.id.len().min(7)]
    }
}

/// How a revision string is to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RevisionKind {
    /// 40 hex digits.
    FullId(gix::ObjectId),
    /// 4–39 hex digits; may also be a branch or tag name.
    ShortId(String),
    /// A ref name: `HEAD`, a branch, a tag, or `refs/...`.
    Name(String),
}

fn classify(revision: &str) -> RevisionKind {
    let r = revision.trim();
    let hex = !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit());
    if hex
        && r.len() == 40
        && let Ok(id) = gix::ObjectId::from_hex(r.as_bytes())
    {
        return RevisionKind::FullId(id);
    }
    if hex && (4..40).contains(&r.len()) {
        return RevisionKind::ShortId(r.to_ascii_lowercase());
    }
    RevisionKind::Name(r.to_string())
}

/// The URL with any `user:password@` part removed, for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if let Some((_, host)) = authority.rsplit_once('@') {
            let user = authority.split('@').next().unwrap_or("");
            // `ssh://git@host` keeps its user: it is not a secret.
            if scheme == "ssh" && !user.contains(':') {
                return url.to_string();
            }
            return format!("{scheme}://{host}{path}");
        }
    }
    url.to_string()
}

/// One bare cache repository per remote URL, under a root directory.
#[derive(Debug, Clone)]
pub struct GitCache {
    root: PathBuf,
    credentials: Arc<Credentials>,
    locks: Arc<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>>,
}

impl GitCache {
    /// A cache under `root` (created on first fetch).
    ///
    /// HTTPS fetches need the process's TLS crypto provider installed (the
    /// `plumb` binary installs one in `main`).
    pub fn new(root: impl Into<PathBuf>, credentials: Credentials) -> GitCache {
        GitCache {
            root: root.into(),
            credentials: Arc::new(credentials),
            locks: Arc::default(),
        }
    }

    /// The directory of the cache repository for `url`.
    pub fn repo_dir(&self, url: &str) -> PathBuf {
        let normalized = normalize_url(url);
        let digest = Sha256::digest(normalized.as_bytes());
        let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
        let name: String = normalized
            .rsplit(['/', ':'])
            .next()
            .unwrap_or("repo")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .take(40)
            .collect();
        self.root.join(format!("{name}-{hex}.git"))
    }

    fn lock_for(&self, dir: &Path) -> Arc<Mutex<()>> {
        let mut map = match self.locks.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(dir.to_path_buf()).or_default().clone()
    }

    fn open_repo(&self, url: &str) -> Result<gix::Repository, GitError> {
        let dir = self.repo_dir(url);
        let cache_err = |e: &dyn std::fmt::Display| GitError::Cache {
            path: dir.clone(),
            message: e.to_string(),
        };
        let mut repo = if dir.join("HEAD").exists() {
            gix::open(&dir).map_err(|e| cache_err(&e))?
        } else {
            std::fs::create_dir_all(&self.root).map_err(|e| cache_err(&e))?;
            // Initialise beside the final path and rename, so a crash never
            // leaves a half-made repository where the next run looks.
            let tmp = self.root.join(format!(
                ".init-{}-{}",
                std::process::id(),
                dir.file_name().and_then(|n| n.to_str()).unwrap_or("repo")
            ));
            let _ = std::fs::remove_dir_all(&tmp);
            gix::init_bare(&tmp).map_err(|e| cache_err(&e))?;
            match std::fs::rename(&tmp, &dir) {
                Ok(()) => {}
                Err(_) if dir.join("HEAD").exists() => {
                    let _ = std::fs::remove_dir_all(&tmp);
                }
                Err(e) => return Err(cache_err(&e)),
            }
            gix::open(&dir).map_err(|e| cache_err(&e))?
        };
        repo.object_cache_size_if_unset(16 * 1024 * 1024);
        if let Some(cmd) = self.credentials.ssh_command(url) {
            let mut config = repo.config_snapshot_mut();
            config
                .set_raw_value("core.sshCommand", cmd.as_str())
                .map_err(|e| cache_err(&e))?;
            config.commit().map_err(|e| cache_err(&e))?;
        }
        Ok(repo)
    }

    /// Ask the remote which commit `revision` names, without fetching.
    ///
    /// Returns `None` for revisions that are commit ids (they never move).
    pub fn remote_revision(&self, url: &str, revision: &str) -> Result<Option<String>, GitError> {
        let name = match classify(revision) {
            RevisionKind::FullId(_) => return Ok(None),
            RevisionKind::ShortId(s) => s,
            RevisionKind::Name(n) => n,
        };
        let repo = self.open_repo(url)?;
        let refs = self.list_remote_refs(&repo, url)?;
        Ok(pick_ref(&refs, &name).map(|r| r.object.to_string()))
    }

    /// Every ref the remote advertises (branches, tags, `HEAD`), with the
    /// commit each names, in one round trip and without fetching objects.
    pub fn remote_refs(&self, url: &str) -> Result<RemoteRefs, GitError> {
        let repo = self.open_repo(url)?;
        Ok(RemoteRefs(self.list_remote_refs(&repo, url)?))
    }

    /// Make sure the commit `revision` names is in the cache and describe it.
    pub fn fetch(&self, url: &str, revision: &str) -> Result<Commit, GitError> {
        let dir = self.repo_dir(url);
        let lock = self.lock_for(&dir);
        let _guard = match lock.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let repo = self.open_repo(url)?;
        let shown = redact_url(url);
        let id = match classify(revision) {
            RevisionKind::FullId(id) => {
                if !repo.has_object(id) {
                    self.fetch_specs(&repo, url, &[format!("{id}:refs/plumb/commits/{id}")], true)?;
                }
                if !repo.has_object(id) {
                    return Err(GitError::UnknownRevision {
                        url: shown,
                        revision: revision.to_string(),
                    });
                }
                id
            }
            RevisionKind::ShortId(prefix) => match local_prefix(&repo, &prefix, &shown)? {
                Some(id) => id,
                None => {
                    let refs = self.list_remote_refs(&repo, url)?;
                    if let Some(r) = pick_ref(&refs, &prefix) {
                        self.fetch_ref(&repo, url, r)?
                    } else {
                        // A short SHA can only be found with history: fetch
                        // every branch and tag in full, then look again.
                        self.fetch_specs(
                            &repo,
                            url,
                            &[
                                "+refs/heads/*:refs/plumb/heads/*".to_string(),
                                "+refs/tags/*:refs/plumb/tags/*".to_string(),
                            ],
                            false,
                        )?;
                        local_prefix(&repo, &prefix, &shown)?.ok_or_else(|| {
                            GitError::UnknownRevision {
                                url: shown.clone(),
                                revision: revision.to_string(),
                            }
                        })?
                    }
                }
            },
            RevisionKind::Name(name) => {
                let refs = self.list_remote_refs(&repo, url)?;
                let r = pick_ref(&refs, &name).ok_or_else(|| GitError::UnknownRevision {
                    url: shown.clone(),
                    revision: revision.to_string(),
                })?;
                self.fetch_ref(&repo, url, r)?
            }
        };
        describe(&repo, id, &shown)
    }

    /// Read access to the tree of a commit already in the cache.
    pub fn snapshot(&self, url: &str, commit: &str) -> Result<Snapshot, GitError> {
        let repo = self.open_repo(url)?;
        let shown = redact_url(url);
        let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| GitError::NotACommit {
            url: shown.clone(),
            id: commit.to_string(),
            message: e.to_string(),
        })?;
        let tree = repo
            .find_commit(id)
            .and_then(|c| c.tree_id().map(|t| t.detach()))
            .map_err(|e| GitError::NotACommit {
                url: shown.clone(),
                id: commit.to_string(),
                message: e.to_string(),
            })?;
        Ok(Snapshot::new(repo.into_sync(), tree, commit.to_string()))
    }

    fn fetch_ref(
        &self,
        repo: &gix::Repository,
        url: &str,
        r: &RemoteRef,
    ) -> Result<gix::ObjectId, GitError> {
        if !repo.has_object(r.object) {
            let local = format!("refs/plumb/{}", r.name.trim_start_matches("refs/"));
            self.fetch_specs(repo, url, &[format!("+{}:{local}", r.name)], true)?;
        }
        Ok(r.object)
    }

    fn list_remote_refs(
        &self,
        repo: &gix::Repository,
        url: &str,
    ) -> Result<Vec<RemoteRef>, GitError> {
        let remote_err = |e: &dyn std::fmt::Debug| self.remote_error(url, e);
        let remote = repo
            .remote_at(url)
            .and_then(|r| {
                r.with_refspecs(
                    [
                        "HEAD",
                        "+refs/heads/*:refs/plumb/heads/*",
                        "+refs/tags/*:refs/plumb/tags/*",
                    ],
                    Direction::Fetch,
                )
            })
            .map_err(|e| remote_err(&e))?;
        let (ref_map, _) = self
            .connect(&remote, url)?
            .ref_map(
                gix::progress::Discard,
                gix::remote::ref_map::Options {
                    prefix_from_spec_as_filter_on_remote: false,
                    ..Default::default()
                },
            )
            .map_err(|e| remote_err(&e))?;
        Ok(ref_map
            .remote_refs
            .iter()
            .filter_map(RemoteRef::from_handshake)
            .collect())
    }

    /// A fetch connection to `remote` that answers credential prompts for `url`.
    fn connect<'a, 'repo>(
        &self,
        remote: &'a gix::Remote<'repo>,
        url: &str,
    ) -> Result<
        gix::remote::Connection<'a, 'static, 'repo, Box<dyn ClientTransport + Send>>,
        GitError,
    > {
        let connection = remote
            .connect(Direction::Fetch)
            .map_err(|e| self.remote_error(url, &e))?;
        let creds = self.credentials.clone();
        let url_owned = url.to_string();
        Ok(connection.with_credentials(move |action| creds.answer(&url_owned, action)))
    }

    /// A remote failure, with credentials scrubbed from the URL and message.
    fn remote_error(&self, url: &str, e: &dyn std::fmt::Debug) -> GitError {
        GitError::Remote {
            url: redact_url(url),
            message: self.credentials.scrub(&error_chain(e)),
        }
    }

    fn fetch_specs(
        &self,
        repo: &gix::Repository,
        url: &str,
        specs: &[String],
        shallow: bool,
    ) -> Result<(), GitError> {
        let remote_err = |e: &dyn std::fmt::Debug| self.remote_error(url, e);
        tracing::debug!(url = %redact_url(url), ?specs, shallow, "fetching");
        let remote = repo
            .remote_at(url)
            .and_then(|r| r.with_refspecs(specs.iter().map(String::as_str), Direction::Fetch))
            .map_err(|e| remote_err(&e))?;
        let mut prepare = self
            .connect(&remote, url)?
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| remote_err(&e))?;
        let is_shallow = repo.is_shallow().unwrap_or(false);
        if shallow {
            prepare =
                prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(NonZeroU32::MIN));
        } else if is_shallow {
            prepare = prepare.with_shallow(gix::remote::fetch::Shallow::undo());
        }
        let interrupt = AtomicBool::new(false);
        prepare
            .receive(gix::progress::Discard, &interrupt)
            .map_err(|e| remote_err(&e))?;
        Ok(())
    }
}

/// An error and its causes on one line: gix puts the useful part in the causes.
fn error_chain(e: &dyn std::fmt::Debug) -> String {
    let text = format!("{e:?}");
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line == "Caused by:" {
            continue;
        }
        let line = match line.split_once(": ") {
            Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
            _ => line,
        };
        parts.push(line.to_string());
    }
    parts.join(": ")
}

/// `https://Host/a/b.git/` and `https://host/a/b` name the same repository.
fn normalize_url(url: &str) -> String {
    let u = redact_url(url.trim());
    let u = u.trim_end_matches('/');
    let u = u.strip_suffix(".git").unwrap_or(u);
    match u.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            format!(
                "{}://{}/{}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase(),
                path
            )
        }
        None => u.to_string(),
    }
}

/// The refs of one remote, as [`GitCache::remote_refs`] read them.
#[derive(Debug, Clone, Default)]
pub struct RemoteRefs(Vec<RemoteRef>);

impl RemoteRefs {
    /// The commit `revision` names on the remote: `None` for commit ids (they
    /// never move) and for names the remote does not have.
    pub fn resolve(&self, revision: &str) -> Option<String> {
        match classify(revision) {
            RevisionKind::FullId(_) => None,
            RevisionKind::ShortId(s) => pick_ref(&self.0, &s).map(|r| r.object.to_string()),
            RevisionKind::Name(n) => pick_ref(&self.0, &n).map(|r| r.object.to_string()),
        }
    }
}

/// A ref the remote advertised, peeled to the commit it names.
#[derive(Debug, Clone)]
struct RemoteRef {
    name: String,
    object: gix::ObjectId,
}

impl RemoteRef {
    fn from_handshake(r: &gix::protocol::handshake::Ref) -> Option<RemoteRef> {
        use gix::protocol::handshake::Ref;
        match r {
            Ref::Peeled {
                full_ref_name,
                object,
                ..
            }
            | Ref::Direct {
                full_ref_name,
                object,
                ..
            }
            | Ref::Symbolic {
                full_ref_name,
                object,
                ..
            } => Some(RemoteRef {
                name: full_ref_name.to_str_lossy().into_owned(),
                object: *object,
            }),
            Ref::Unborn { .. } => None,
        }
    }
}

/// The ref `name` means, as `git` would pick it: exact, then branch, then tag.
fn pick_ref<'a>(refs: &'a [RemoteRef], name: &str) -> Option<&'a RemoteRef> {
    let candidates = [
        name.to_string(),
        format!("refs/heads/{name}"),
        format!("refs/tags/{name}"),
        format!("refs/{name}"),
    ];
    candidates
        .iter()
        .find_map(|c| refs.iter().find(|r| &r.name == c))
}

fn local_prefix(
    repo: &gix::Repository,
    prefix: &str,
    url: &str,
) -> Result<Option<gix::ObjectId>, GitError> {
    match repo.rev_parse_single(prefix) {
        Ok(id) => {
            let id = id.detach();
            // A prefix that happens to name a tree or blob is not what we want.
            match repo.find_commit(id) {
                Ok(_) => Ok(Some(id)),
                Err(_) => Ok(None),
            }
        }
        Err(e) => {
            let text = e.to_string();
            if text.contains("ambiguous") || text.contains("Ambiguous") {
                Err(GitError::Ambiguous {
                    url: url.to_string(),
                    revision: prefix.to_string(),
                })
            } else {
                Ok(None)
            }
        }
    }
}

fn describe(repo: &gix::Repository, id: gix::ObjectId, url: &str) -> Result<Commit, GitError> {
    let not_commit = |e: &dyn std::fmt::Display| GitError::NotACommit {
        url: url.to_string(),
        id: id.to_string(),
        message: e.to_string(),
    };
    let object = repo.find_object(id).map_err(|e| not_commit(&e))?;
    let commit = object.peel_to_commit().map_err(|e| not_commit(&e))?;
    let author = commit.author().map_err(|e| not_commit(&e))?;
    let time = author.time().map(|t| t.seconds).unwrap_or(0);
    let message = commit
        .message_raw()
        .map(|m| m.to_str_lossy().into_owned())
        .unwrap_or_default();
    Ok(Commit {
        id: commit.id.to_string(),
        author: author.name.to_str_lossy().into_owned(),
        email: author.email.to_str_lossy().into_owned(),
        time,
        subject: message.lines().next().unwrap_or("").to_string(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_classified() {
        assert!(matches!(
            classify("0123456789abcdef0123456789abcdef01234567"),
            RevisionKind::FullId(_)
        ));
        assert_eq!(classify("abc1234"), RevisionKind::ShortId("abc1234".into()));
        assert_eq!(classify("main"), RevisionKind::Name("main".into()));
        assert_eq!(classify("HEAD"), RevisionKind::Name("HEAD".into()));
        assert_eq!(classify("v1.2.3"), RevisionKind::Name("v1.2.3".into()));
        assert_eq!(classify("abc"), RevisionKind::Name("abc".into()));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://bot:s3cr3t@git.example.com/org/repo.git"),
            "https://git.example.com/org/repo.git"
        );
        assert_eq!(redact_url("ssh://git@host/repo"), "ssh://git@host/repo");
        assert_eq!(redact_url("file:///tmp/repo"), "file:///tmp/repo");
        assert_eq!(
            redact_url("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
    }

    #[test]
    fn equivalent_urls_share_a_cache() {
        let cache = GitCache::new("/tmp/x", Credentials::default());
        assert_eq!(
            cache.repo_dir("https://Example.com/org/repo.git/"),
            cache.repo_dir("https://example.com/org/repo")
        );
        assert_ne!(
            cache.repo_dir("https://example.com/org/repo"),
            cache.repo_dir("https://example.com/org/other")
        );
    }
}
