//! The revision of an Application: one Git revision per source.
//!
//! An Application with several sources is synced at one commit of each, and
//! everything that records or compares "what was synced" (the inventory, the
//! history, a rollback pin, the API) needs all of them at once. Written out,
//! a revision is the sources' revisions joined by commas, in source order
//! (`3f2a…,9c1e…`), which is also how the inventory stores it; that text is
//! parsed in exactly one place, [`Revision::parse`]. A revision asked for by
//! a user (`--revision`, a rollback target) may name branches, tags or short
//! ids, and one entry then stands for every source; once resolved, each entry
//! is a full commit id.

use serde::{Deserialize, Serialize};

/// One Git revision per source (at least one), in source order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Revision {
    parts: Vec<String>,
}

/// Why a revision does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevisionError {
    /// Nothing was given.
    #[error("a revision needs at least one commit, branch or tag")]
    Empty,
    /// One of the comma-separated entries is empty.
    #[error("revision {0:?} has an empty entry")]
    EmptyEntry(String),
}

impl Revision {
    /// Read the comma-joined form (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Revision, RevisionError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(RevisionError::Empty);
        }
        let parts: Vec<String> = text.split(',').map(|p| p.trim().to_string()).collect();
        if parts.iter().any(String::is_empty) {
            return Err(RevisionError::EmptyEntry(text.to_string()));
        }
        Ok(Revision { parts })
    }

    /// A revision of these commits; `None` when there are none or one is empty.
    pub fn from_commits<I, S>(commits: I) -> Option<Revision>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let parts: Vec<String> = commits.into_iter().map(Into::into).collect();
        (!parts.is_empty() && parts.iter().all(|p| !p.is_empty())).then_some(Revision { parts })
    }

    /// A revision of a single source.
    pub fn single(commit: impl Into<String>) -> Result<Revision, RevisionError> {
        Revision::parse(&commit.into())
    }

    /// The entries, in source order.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// The first source's entry.
    pub fn first(&self) -> &str {
        self.parts.first().map(String::as_str).unwrap_or_default()
    }

    /// The entry for source `index`: its own when there is one per source,
    /// the only one when a single entry stands for every source.
    pub fn for_source(&self, index: usize) -> &str {
        match self.parts.get(index) {
            Some(p) => p,
            None => self.first(),
        }
    }

    /// Each entry cut to 7 characters, comma-joined: for people.
    pub fn short(&self) -> String {
        self.parts
            .iter()
            .map(|p| p.get(..7).unwrap_or(p))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.parts.join(","))
    }
}

impl std::str::FromStr for Revision {
    type Err = RevisionError;

    fn from_str(s: &str) -> Result<Revision, RevisionError> {
        Revision::parse(s)
    }
}

impl TryFrom<String> for Revision {
    type Error = RevisionError;

    fn try_from(s: String) -> Result<Revision, RevisionError> {
        Revision::parse(&s)
    }
}

impl From<Revision> for String {
    fn from(r: Revision) -> String {
        r.to_string()
    }
}

/// A revision equals its comma-joined text.
impl PartialEq<str> for Revision {
    fn eq(&self, other: &str) -> bool {
        let mut parts = other.split(',');
        self.parts.iter().all(|p| parts.next() == Some(p.as_str())) && parts.next().is_none()
    }
}

impl PartialEq<&str> for Revision {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for Revision {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_comma_joined_form() {
        let r = Revision::parse(" abcdef0123,0123456789 ").unwrap();
        assert_eq!(r.parts(), ["abcdef0123", "0123456789"]);
        assert_eq!(r.to_string(), "abcdef0123,0123456789");
        assert_eq!(r.short(), "abcdef0,0123456");
        assert_eq!(r, "abcdef0123,0123456789");
        assert_ne!(r, "abcdef0123");
        assert_eq!(r, String::from("abcdef0123,0123456789"));
    }

    #[test]
    fn one_entry_stands_for_every_source() {
        let r = Revision::parse("main").unwrap();
        assert_eq!((r.for_source(0), r.for_source(2)), ("main", "main"));
        let two = Revision::parse("a,b").unwrap();
        assert_eq!((two.for_source(0), two.for_source(1)), ("a", "b"));
    }

    #[test]
    fn empty_revisions_are_refused() {
        assert_eq!(Revision::parse("  "), Err(RevisionError::Empty));
        assert!(matches!(
            Revision::parse("a,,b"),
            Err(RevisionError::EmptyEntry(_))
        ));
        assert_eq!(Revision::from_commits(Vec::<String>::new()), None);
    }

    #[test]
    fn serialises_as_text() {
        let r = Revision::parse("a,b").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"a,b\"");
        let back: Revision = serde_json::from_str("\"a,b\"").unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Revision>("\"\"").is_err());
    }
}
