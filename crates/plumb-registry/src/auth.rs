//! Who may do what: htpasswd users with bcrypt passwords, and their roles.
//!
//! Basic credentials are checked against the htpasswd file (the bcrypt
//! `$2y$`/`$2b$`/`$2a$` entries `htpasswd -B` writes, as CNCF distribution
//! accepts them). A bcrypt check costs milliseconds by design, so a successful
//! check is remembered for the process's life keyed by a SHA-256 of the
//! credentials; passwords themselves are never stored or logged.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::Digest as _;

use crate::config::Role;

/// Why the htpasswd file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An entry that is not `user:$2y$...`.
    #[error("{path}:{line}:1: entry for {user:?} is not a bcrypt hash")]
    NotBcrypt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The user.
        user: String,
    },
}

/// The users of an htpasswd file.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    /// Read an htpasswd file.
    pub fn load(path: &Path) -> Result<Self, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').unwrap_or((line, ""));
            if !(hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$")) {
                return Err(HtpasswdError::NotBcrypt {
                    path: path.to_owned(),
                    line: i + 1,
                    user: user.to_owned(),
                });
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether `user`/`password` is a valid pair.
    pub fn check(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let mut h = sha2::Sha256::new();
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.update([0]);
        h.update(hash.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        if self
            .verified
            .lock()
            .map(|s| s.contains(&key))
            .unwrap_or(false)
        {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok && let Ok(mut s) = self.verified.lock() {
            s.insert(key);
        }
        ok
    }
}

/// Why an htpasswd entry could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A user name with `:` (the field separator), or an empty password.
    #[error("an htpasswd entry needs a user name without ':' and a non-empty password")]
    Invalid,
    /// bcrypt failed.
    #[error(transparent)]
    Hash(#[from] bcrypt::BcryptError),
}

/// The htpasswd line (`user:$2y$...`, bcrypt at its default cost) that lets
/// `user` in with `password`, as `htpasswd -B` writes it and [`Htpasswd::load`] reads it.
pub fn htpasswd_entry(user: &str, password: &str) -> Result<String, EntryError> {
    if user.contains(':') || password.is_empty() {
        return Err(EntryError::Invalid);
    }
    let hash = bcrypt::hash(password, bcrypt::DEFAULT_COST)?;
    // htpasswd -B writes the $2y$ prefix; the hash is the same algorithm.
    Ok(format!("{user}:{}", hash.replacen("$2b$", "$2y$", 1)))
}

/// What a request is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No credentials were given.
    Anonymous,
    /// A known user with a role.
    User(String, Role),
    /// A valid Bearer token with its claims.
    Token(Box<crate::token::Claims>),
    /// Credentials were given and are wrong (or a token failed verification).
    Rejected,
}

/// What a request needs to be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Any authenticated caller (the API base, metrics).
    Any,
    /// A repository: a pull, or a write (push or delete).
    Repository {
        /// The repository.
        name: &'a str,
        /// Whether the request writes.
        write: bool,
    },
    /// The catalog (`registry:catalog:*`).
    Catalog,
    /// plumb's GC endpoint (`registry:gc:*`, push role).
    Gc,
}

impl Need<'_> {
    /// Whether the need is a write.
    pub fn write(&self) -> bool {
        matches!(self, Need::Repository { write: true, .. } | Need::Gc)
    }

    /// The token scope that satisfies the need, as a challenge names it.
    pub fn scope(&self) -> Option<String> {
        match self {
            Need::Any => None,
            Need::Repository { name, write: false } => Some(format!("repository:{name}:pull")),
            Need::Repository { name, write: true } => Some(format!("repository:{name}:pull,push")),
            Need::Catalog => Some("registry:catalog:*".into()),
            Need::Gc => Some("registry:gc:*".into()),
        }
    }
}

/// Decode `Authorization: Basic ...` into (user, password).
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = String::from_utf8(B64.decode(b64.trim()).ok()?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_bcrypt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        let hash = bcrypt::hash("s3cret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        std::fs::write(&path, format!("# users\nalice:{hash}\n")).unwrap();
        let h = Htpasswd::load(&path).unwrap();
        assert!(h.check("alice", "s3cret"));
        assert!(h.check("alice", "s3cret"), "cached path");
        assert!(!h.check("alice", "wrong"));
        assert!(!h.check("bob", "s3cret"));
    }

    #[test]
    fn refuses_non_bcrypt_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h");
        std::fs::write(&path, "alice:$apr1$abc$def\n").unwrap();
        let e = Htpasswd::load(&path).unwrap_err();
        assert!(e.to_string().contains(":1:1"), "{e}");
    }

    #[test]
    fn decodes_basic() {
        let h = format!("Basic {}", B64.encode("u:p:q"));
        assert_eq!(basic_credentials(&h), Some(("u".into(), "p:q".into())));
        assert_eq!(basic_credentials("Bearer x"), None);
    }
}
