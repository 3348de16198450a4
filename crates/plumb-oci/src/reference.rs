//! Repository names, tags and references (`host[:port]/repo[:tag][@digest]`).
//!
//! The grammars are those of the OCI distribution spec; a name that passes
//! [`RepositoryName::parse`] contains no `..`, no empty component and no
//! character outside `[a-z0-9._/-]`, so it is safe as a key and in a URL.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Longest repository name accepted (the limit CNCF distribution applies).
pub const MAX_REPOSITORY_NAME: usize = 255;

/// A validated repository name, e.g. `team/app`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

/// A validated tag, e.g. `v1.2.3` or a 40-hex git SHA.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// Why a reference, name or tag is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The repository name breaks the distribution-spec grammar.
    #[error(
        "repository name {0:?} is invalid: use lowercase path components of [a-z0-9] separated by '.', '_', '__' or '-', joined by '/'"
    )]
    InvalidName(String),
    /// The tag breaks the grammar.
    #[error(
        "tag {0:?} is invalid: use up to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    InvalidTag(String),
    /// The digest part is invalid.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// No registry host in front of the repository.
    #[error(
        "reference {0:?} names no registry host: write it as HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]"
    )]
    MissingHost(String),
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

impl RepositoryName {
    /// Validate a repository name.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() || s.len() > MAX_REPOSITORY_NAME || !s.split('/').all(valid_component) {
            return Err(ReferenceError::InvalidName(s.to_owned()));
        }
        Ok(RepositoryName(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Tag {
    /// Validate a tag.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
        if !ok {
            return Err(ReferenceError::InvalidTag(s.to_owned()));
        }
        Ok(Tag(s.to_owned()))
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! display_as_str {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }
    };
}
display_as_str!(RepositoryName);
display_as_str!(Tag);

/// What a reference points at inside a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A tag (resolved by the registry).
    Tag(Tag),
    /// A digest (content-addressed).
    Digest(Digest),
    /// Both: the tag is informational, the digest is what counts.
    TagAndDigest(Tag, Digest),
}

/// A full reference to content in a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// The repository.
    pub repository: RepositoryName,
    /// Tag and/or digest; `latest` when neither was written.
    pub target: Target,
}

impl Reference {
    /// The digest, when the reference carries one.
    pub fn digest(&self) -> Option<&Digest> {
        match &self.target {
            Target::Digest(d) | Target::TagAndDigest(_, d) => Some(d),
            Target::Tag(_) => None,
        }
    }

    /// The string to put after `/manifests/` to fetch this reference.
    pub fn manifest_key(&self) -> String {
        match &self.target {
            Target::Tag(t) => t.to_string(),
            Target::Digest(d) | Target::TagAndDigest(_, d) => d.to_string(),
        }
    }

    /// The same repository pinned to `digest`.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            target: Target::Digest(digest),
        }
    }

    /// `host/repo` without tag or digest.
    pub fn repository_ref(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// Parse `host[:port]/repo` (no tag, no digest).
pub fn parse_repository_ref(s: &str) -> Result<(String, RepositoryName), ReferenceError> {
    let Some((host, repo)) = s.split_once('/') else {
        return Err(ReferenceError::MissingHost(s.to_owned()));
    };
    if !looks_like_host(host) {
        return Err(ReferenceError::MissingHost(s.to_owned()));
    }
    Ok((host.to_owned(), RepositoryName::parse(repo)?))
}

fn looks_like_host(h: &str) -> bool {
    !h.is_empty() && (h.contains('.') || h.contains(':') || h == "localhost")
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        let Some((host, path)) = rest.split_once('/') else {
            return Err(ReferenceError::MissingHost(s.to_owned()));
        };
        if !looks_like_host(host) {
            return Err(ReferenceError::MissingHost(s.to_owned()));
        }
        // A ':' after the last '/' separates the tag.
        let (repo, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(Tag::parse(t)?)),
            _ => (path, None),
        };
        let repository = RepositoryName::parse(repo)?;
        let target = match (tag, digest) {
            (Some(t), Some(d)) => Target::TagAndDigest(t, d),
            (None, Some(d)) => Target::Digest(d),
            (Some(t), None) => Target::Tag(t),
            (None, None) => Target::Tag(Tag("latest".to_owned())),
        };
        Ok(Reference {
            registry: host.to_owned(),
            repository,
            target,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match &self.target {
            Target::Tag(t) => write!(f, ":{t}"),
            Target::Digest(d) => write!(f, "@{d}"),
            Target::TagAndDigest(t, d) => write!(f, ":{t}@{d}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names() {
        for ok in [
            "a",
            "team/app",
            "a.b_c__d---e/f",
            "conformance/repo1",
            "x0/y-1",
        ] {
            assert!(RepositoryName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/../b", "..", "a/", "/a", "a//b", "a_-b", "a___b", "-a", "a.", "a b", "a..b",
        ] {
            assert!(RepositoryName::parse(bad).is_err(), "{bad}");
        }
        assert!(RepositoryName::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn tags() {
        assert!(Tag::parse("v1.2.3").is_ok());
        assert!(Tag::parse("_x").is_ok());
        assert!(Tag::parse(&"a".repeat(128)).is_ok());
        assert!(Tag::parse(&"a".repeat(129)).is_err());
        assert!(Tag::parse(".x").is_err());
        assert!(Tag::parse("-x").is_err());
        assert!(Tag::parse("a/b").is_err());
    }

    #[test]
    fn references() {
        let r: Reference = "127.0.0.1:5000/team/app:v1".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository.as_str(), "team/app");
        assert_eq!(r.manifest_key(), "v1");
        let d = Digest::sha256_of(b"");
        let r: Reference = format!("localhost/app@{d}").parse().unwrap();
        assert_eq!(r.digest(), Some(&d));
        assert_eq!(r.to_string(), format!("localhost/app@{d}"));
        assert!(matches!(
            "app:v1".parse::<Reference>(),
            Err(ReferenceError::MissingHost(_))
        ));
        let r: Reference = "localhost:5000/app".parse().unwrap();
        assert_eq!(r.manifest_key(), "latest");
    }
}
