//! A short-lived memory of which commit a (repository, revision) resolved to.
//!
//! One push to a repository that a hundred Applications follow refreshes all
//! of them at once; without this, each would list the remote's refs again
//! within the same second. An entry lives for a few seconds at most, so a ref
//! that moves is seen on the next refresh after that; explicit refreshes and
//! webhooks forget the repository's entries first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use plumb_git::Commit;

type Key = (String, String);

/// (repository, revision) → commit, each for up to `ttl`.
pub(crate) struct ResolveCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, (Commit, Instant)>>,
}

impl ResolveCache {
    pub(crate) fn new(ttl: Duration) -> ResolveCache {
        ResolveCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Commit, Instant)>> {
        match self.entries.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The commit `revision` of `url` resolved to, if that was recent.
    pub(crate) fn get(&self, url: &str, revision: &str) -> Option<Commit> {
        if self.ttl.is_zero() {
            return None;
        }
        self.entries()
            .get(&(url.to_string(), revision.to_string()))
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(c, _)| c.clone())
    }

    /// Remember a resolution, unless a fresh one is already held (the first
    /// answer within a window stands, so concurrent resolves agree).
    pub(crate) fn put(&self, url: &str, revision: &str, commit: &Commit) {
        if self.ttl.is_zero() {
            return;
        }
        let key = (url.to_string(), revision.to_string());
        let mut entries = self.entries();
        if entries
            .get(&key)
            .is_none_or(|(_, at)| at.elapsed() >= self.ttl)
        {
            entries.insert(key, (commit.clone(), Instant::now()));
        }
    }

    /// Drop the entries of every repository whose URL `matches`.
    pub(crate) fn forget(&self, matches: impl Fn(&str) -> bool) {
        self.entries().retain(|(url, _), _| !matches(url));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(id: &str) -> Commit {
        Commit {
            id: id.into(),
            author: String::new(),
            email: String::new(),
            time: 0,
            subject: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let cache = ResolveCache::new(Duration::from_millis(50));
        cache.put("u", "main", &commit("a"));
        cache.put("u", "main", &commit("b"));
        assert_eq!(cache.get("u", "main").map(|c| c.id), Some("a".into()));
        cache.forget(|u| u == "u");
        assert!(cache.get("u", "main").is_none());
        cache.put("u", "main", &commit("c"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("u", "main").is_none());
    }

    #[test]
    fn a_zero_ttl_remembers_nothing() {
        let cache = ResolveCache::new(Duration::ZERO);
        cache.put("u", "main", &commit("a"));
        assert!(cache.get("u", "main").is_none());
    }
}
