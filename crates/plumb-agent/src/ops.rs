//! What the API and the UI ask of the agent: list, read, diff, sync,
//! roll back, resume.
//!
//! Reads answer from memory (the slots), never from Git or the cluster; a
//! diff or sync goes through the same pipeline as a reconcile and takes the
//! Application's lock, so it never runs beside a reconcile of the same
//! Application.

use std::sync::atomic::Ordering;

use plumb_kube::{Cluster, DiffReport, SyncReport};
use plumb_model::{HealthStatus, Revision, SyncStatus};
use plumb_pipeline::{PipelineError, Prepared};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::state::{Reason, lock_read, lock_write};
use crate::status::{AppStatus, HistoryEntry, Phase};

/// Filters for listing Applications.
#[derive(Debug, Clone, Default)]
pub struct ApplicationFilter {
    /// Substring of the name.
    pub name: Option<String>,
    /// Sync status.
    pub sync: Option<SyncStatus>,
    /// Health status.
    pub health: Option<HealthStatus>,
}

/// A page of results.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Items to skip.
    pub offset: usize,
    /// Items to return.
    pub limit: usize,
}

impl Agent {
    pub(crate) fn key_of(&self, name: &str) -> Result<String, AgentError> {
        let apps = lock_read(&self.inner.apps);
        if apps.contains_key(name) {
            return Ok(name.to_string());
        }
        let matches: Vec<&String> = apps
            .iter()
            .filter(|(_, s)| s.status.name == name)
            .map(|(k, _)| k)
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(AgentError::NotFound(name.to_string())),
            many => Err(AgentError::Invalid(format!(
                "{name:?} names several Applications ({}); use namespace/name",
                many.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Applications matching `filter`, sorted by name, one page of them
    /// (without per-object detail), and the total that matched.
    pub fn list(&self, filter: &ApplicationFilter, page: Page) -> (Vec<AppStatus>, usize) {
        let apps = lock_read(&self.inner.apps);
        let needle = filter.name.as_deref().map(str::to_ascii_lowercase);
        let mut matched: Vec<&AppStatus> = apps
            .values()
            .map(|s| &s.status)
            .filter(|s| {
                needle
                    .as_deref()
                    .is_none_or(|n| s.name.to_ascii_lowercase().contains(n))
            })
            .filter(|s| filter.sync.is_none_or(|x| s.sync == x))
            .filter(|s| filter.health.is_none_or(|x| s.health == x))
            .collect();
        matched.sort_by(|a, b| a.name.cmp(&b.name).then(a.key.cmp(&b.key)));
        let total = matched.len();
        let items = matched
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .map(|s| {
                let mut s = s.clone();
                s.objects = Vec::new();
                s
            })
            .collect();
        (items, total)
    }

    /// One Application's full status.
    pub fn get(&self, name: &str) -> Result<AppStatus, AgentError> {
        let key = self.key_of(name)?;
        lock_read(&self.inner.apps)
            .get(&key)
            .map(|s| s.status.clone())
            .ok_or(AgentError::NotFound(name.to_string()))
    }

    /// History, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, AgentError> {
        let key = self.key_of(name)?;
        Ok(self.inner.store.history(&key)?)
    }

    /// The rollback pin of `key`, if it is suspended.
    pub(crate) fn pin(&self, key: &str) -> Result<Option<Revision>, AgentError> {
        match self.inner.store.suspension(key)? {
            None => Ok(None),
            Some(text) => Ok(Some(Revision::parse(&text)?)),
        }
    }

    /// `key` prepared at `revision` (default: its pin, else Git), and its cluster.
    async fn prepared(
        &self,
        key: &str,
        revision: Option<&str>,
    ) -> Result<(Prepared, Cluster), AgentError> {
        let (file, pinned) = {
            let apps = lock_read(&self.inner.apps);
            let slot = apps.get(key).ok_or(AgentError::NotFound(key.to_string()))?;
            (slot.file.clone(), slot.status.suspended.clone())
        };
        let app = file.application;
        let pin = match revision.map(str::to_string).or(pinned) {
            Some(text) => Some(parse_revision(&text)?),
            None => None,
        };
        let commits = self.resolve(&app, pin.as_ref()).await?;
        let prepared = self
            .inner
            .pipeline
            .prepare_commits(&app, commits, false)
            .await?;
        let cluster = self.inner.clusters.get(&app.spec.destination).await?;
        Ok((prepared, cluster))
    }

    /// What differs between Git (or `revision`) and the cluster.
    pub async fn diff(&self, name: &str, revision: Option<&str>) -> Result<DiffReport, AgentError> {
        let key = self.key_of(name)?;
        let (prepared, cluster) = self.prepared(&key, revision).await?;
        Ok(prepared.diff(&cluster, false).await?)
    }

    /// Sync now. `prune` defaults to the Application's policy.
    pub async fn sync(
        &self,
        name: &str,
        revision: Option<&str>,
        prune: Option<bool>,
        dry_run: bool,
    ) -> Result<SyncReport, AgentError> {
        let key = self.key_of(name)?;
        self.forget_resolved_of(&key);
        self.sync_key(&key, revision, prune, dry_run, "manual")
            .await
    }

    async fn sync_key(
        &self,
        key: &str,
        revision: Option<&str>,
        prune: Option<bool>,
        dry_run: bool,
        trigger: &str,
    ) -> Result<SyncReport, AgentError> {
        let lock = lock_read(&self.inner.apps)
            .get(key)
            .map(|s| s.lock.clone())
            .ok_or(AgentError::NotFound(key.to_string()))?;
        let _guard = lock.lock().await;
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = async {
            let (prepared, cluster) = self.prepared(key, revision).await?;
            let mut opts = self.sync_options(&prepared.app);
            if let Some(p) = prune {
                opts.prune = p;
            }
            opts.dry_run = dry_run;
            if !dry_run {
                self.set_phase(key, Phase::Syncing);
            }
            let report = match prepared.sync(&cluster, &opts, &()).await {
                Ok(r) => r,
                Err(e) => {
                    let error = AgentError::from(e);
                    if !dry_run {
                        self.record_failure(key, &prepared.commits, trigger, &error);
                        self.set_phase(key, Phase::Failed);
                    }
                    return Err(error);
                }
            };
            self.record_sync(key, &prepared.commits, trigger, &report);
            Ok(report)
        }
        .await;
        self.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        drop(_guard);
        // Bring status up to date (without Git, without syncing).
        if !dry_run {
            self.trigger(key, Reason::Health);
        }
        result
    }

    /// Sync an older commit (a SHA or a history id) and pause automated sync
    /// until [`Agent::resume`].
    pub async fn rollback(&self, name: &str, target: &str) -> Result<SyncReport, AgentError> {
        let key = self.key_of(name)?;
        let target = target.trim();
        let revision = if !target.is_empty()
            && target.len() <= 6
            && target.bytes().all(|b| b.is_ascii_digit())
        {
            let id: u64 = target
                .parse()
                .map_err(|_| AgentError::Invalid(format!("bad history id {target}")))?;
            self.inner
                .store
                .history(&key)?
                .into_iter()
                .find(|h| h.id == id)
                .map(|h| h.revision)
                .ok_or_else(|| AgentError::Invalid(format!("no history entry {id} for {name}")))?
        } else {
            target.to_string()
        };
        if revision.is_empty() {
            return Err(AgentError::Invalid(
                "a rollback needs a revision or a history id".into(),
            ));
        }
        let revision = parse_revision(&revision)?;
        // Resolve to full SHAs first, so the pin never moves.
        let app = lock_read(&self.inner.apps)
            .get(&key)
            .map(|s| s.file.application.clone())
            .ok_or(AgentError::NotFound(name.to_string()))?;
        let commits = self.resolve(&app, Some(&revision)).await?;
        let full = Revision::from_commits(commits.iter().map(|c| c.id.clone()))
            .ok_or(AgentError::Pipeline(PipelineError::NoSources))?
            .to_string();
        self.inner.store.suspend(&key, &full)?;
        {
            let mut apps = lock_write(&self.inner.apps);
            if let Some(slot) = apps.get_mut(&key) {
                slot.status.suspended = Some(full.clone());
            }
        }
        self.sync_key(&key, Some(&full), None, false, "rollback")
            .await
    }

    /// Lift a rollback's pause; the next reconcile follows Git again.
    pub fn resume(&self, name: &str) -> Result<bool, AgentError> {
        let key = self.key_of(name)?;
        let was = self.inner.store.resume(&key)?;
        {
            let mut apps = lock_write(&self.inner.apps);
            if let Some(slot) = apps.get_mut(&key) {
                slot.status.suspended = None;
            }
        }
        self.trigger(&key, Reason::Refresh);
        Ok(was)
    }

    /// The number of Applications.
    pub fn len(&self) -> usize {
        lock_read(&self.inner.apps).len()
    }

    /// Whether there are no Applications.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A revision a user typed (a SHA, branch, tag or history revision).
fn parse_revision(text: &str) -> Result<Revision, AgentError> {
    Ok(Revision::parse(text)?)
}
