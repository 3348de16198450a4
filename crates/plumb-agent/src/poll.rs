//! Git polling and push webhooks: what tells the agent that a ref moved.
//!
//! Each repository is asked once per interval for its refs (a listing, no
//! fetch); an Application is refreshed only when the commit its revision
//! names differs from both what it last resolved and what the last poll saw,
//! so a failing Application retries on its backoff instead of on every poll.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::agent::Agent;
use crate::error::AgentError;
use crate::state::{Reason, lock_read, lock_write};

impl Agent {
    /// Check every repository once; refresh Applications whose ref moved.
    pub(crate) async fn poll_git(&self) {
        // Per repository: (Application, source index, revision, the commit
        // it last resolved to, what the last poll saw).
        type Entry = (String, usize, String, Option<String>, Option<String>);
        let mut by_repo: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for (key, slot) in lock_read(&self.inner.apps).iter() {
            if slot.status.suspended.is_some() {
                continue;
            }
            for (i, s) in slot.file.application.sources().iter().enumerate() {
                by_repo.entry(s.repo_url.clone()).or_default().push((
                    key.clone(),
                    i,
                    s.revision().to_string(),
                    slot.commits.get(i).map(|c| c.id.clone()),
                    slot.polled.get(&i).cloned(),
                ));
            }
        }
        for (url, apps) in by_repo {
            let git = self.inner.pipeline.git().clone();
            let started = Instant::now();
            let u = url.clone();
            let refs = tokio::task::spawn_blocking(move || git.remote_refs(&u)).await;
            self.inner
                .metrics
                .git_fetch_duration
                .observe(started.elapsed().as_secs_f64());
            let refs = match refs {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!(repo = %plumb_git::redact_url(&url), error = %e, "Git poll failed");
                    continue;
                }
                Err(_) => continue,
            };
            let mut moved: Vec<String> = Vec::new();
            {
                let mut slots = lock_write(&self.inner.apps);
                for (key, i, rev, known, polled) in apps {
                    let Some(now) = refs.resolve(&rev) else {
                        continue;
                    };
                    if Some(&now) != known.as_ref() && Some(&now) != polled.as_ref() {
                        moved.push(key.clone());
                    }
                    if let Some(slot) = slots.get_mut(&key) {
                        slot.polled.insert(i, now);
                    }
                }
            }
            moved.dedup();
            if !moved.is_empty() {
                self.forget_resolved(|u| u == url);
            }
            for key in moved {
                self.trigger(&key, Reason::Refresh);
            }
        }
    }

    /// Refresh every Application whose source is one of `urls` (a push webhook).
    /// Returns the keys refreshed.
    pub fn refresh_repository(&self, urls: &[String]) -> Vec<String> {
        let wanted: Vec<String> = urls
            .iter()
            .map(|u| crate::webhook::canonical_repo(u))
            .collect();
        let keys: Vec<String> = lock_read(&self.inner.apps)
            .iter()
            .filter(|(_, s)| {
                s.file
                    .application
                    .sources()
                    .iter()
                    .any(|src| wanted.contains(&crate::webhook::canonical_repo(&src.repo_url)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        self.forget_resolved(|url| wanted.contains(&crate::webhook::canonical_repo(url)));
        for k in &keys {
            self.trigger(k, Reason::Refresh);
        }
        keys
    }

    fn forget_resolved(&self, matches: impl Fn(&str) -> bool) {
        self.inner.pipeline.forget_resolved(matches);
    }

    /// Ask for a reconcile of one Application, looking at Git again.
    pub fn refresh(&self, name: &str) -> Result<(), AgentError> {
        let key = self.key_of(name)?;
        self.forget_resolved_of(&key);
        self.trigger(&key, Reason::Refresh);
        Ok(())
    }

    /// Drop the cached revision resolutions of `key`'s repositories, so that
    /// an explicit refresh or sync asks Git again rather than reusing a
    /// cached answer.
    pub(crate) fn forget_resolved_of(&self, key: &str) {
        let repos: Vec<String> = lock_read(&self.inner.apps)
            .get(key)
            .map(|s| {
                s.file
                    .application
                    .sources()
                    .iter()
                    .map(|src| crate::webhook::canonical_repo(&src.repo_url))
                    .collect()
            })
            .unwrap_or_default();
        self.forget_resolved(|url| repos.contains(&crate::webhook::canonical_repo(url)));
    }
}
