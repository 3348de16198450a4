//! What the agent writes down: status for the API and UI (store, event
//! stream, gauges), history and notifications for each sync.

use std::collections::HashMap;

use plumb_git::Commit;
use plumb_kube::SyncReport;
use plumb_model::{HealthStatus, Revision, SyncStatus};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::metrics::{AppLabels, ResultLabel};
use crate::notify::{Event, EventKind};
use crate::state::{lock_read, lock_write, now};
use crate::status::{AppStatus, HistoryEntry, Phase};

impl Agent {
    pub(crate) fn set_phase(&self, key: &str, phase: Phase) {
        let status = {
            let mut apps = lock_write(&self.inner.apps);
            let Some(slot) = apps.get_mut(key) else {
                return;
            };
            slot.status.phase = phase;
            slot.status.clone()
        };
        let _ = self.inner.events.send(status);
    }

    pub(crate) fn publish(&self, status: &AppStatus) {
        if let Err(e) = self.inner.store.put_status(status) {
            tracing::error!(error = %e, "cannot save status");
        }
        let _ = self.inner.events.send(status.clone());
        self.publish_object_status(status);
        self.update_gauges();
    }

    pub(crate) fn update_gauges(&self) {
        let mut counts: HashMap<(SyncStatus, HealthStatus), i64> = HashMap::new();
        for slot in lock_read(&self.inner.apps).values() {
            *counts
                .entry((slot.status.sync, slot.status.health))
                .or_default() += 1;
        }
        self.inner.metrics.applications.clear();
        for ((sync, health), n) in counts {
            self.inner
                .metrics
                .applications
                .get_or_create(&AppLabels {
                    sync: sync.to_string(),
                    health: health.to_string(),
                })
                .set(n);
        }
    }

    pub(crate) fn record_sync(
        &self,
        key: &str,
        commits: &[Commit],
        trigger: &str,
        report: &SyncReport,
    ) {
        let result = if report.succeeded {
            "succeeded"
        } else {
            "failed"
        };
        self.inner
            .metrics
            .syncs
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        if report.dry_run {
            return;
        }
        let first = commits.first();
        let entry = HistoryEntry {
            id: 0,
            revision: report.revision.to_string(),
            author: first.map(|c| c.author.clone()).unwrap_or_default(),
            message: first.map(|c| c.subject.clone()).unwrap_or_default(),
            commit_time: first.map(|c| c.time).unwrap_or_default(),
            synced_at: now(),
            trigger: trigger.into(),
            result: result.into(),
            error: if report.succeeded {
                String::new()
            } else {
                first_failure(report)
            },
            counts: report.counts,
            actions: report.results.clone(),
        };
        if let Err(e) = self
            .inner
            .store
            .add_history(key, entry, self.inner.config.history_limit)
        {
            tracing::error!(error = %e, "cannot record history");
        }
        {
            let mut apps = lock_write(&self.inner.apps);
            if let Some(slot) = apps.get_mut(key) {
                slot.status.last_sync = Some(now());
            }
        }
        self.inner.notifier.send(Event {
            event: if report.succeeded {
                EventKind::SyncSucceeded
            } else {
                EventKind::SyncFailed
            },
            application: key.to_string(),
            revision: report.revision.to_string(),
            message: format!(
                "{} created, {} configured, {} pruned, {} failed",
                report.counts.created,
                report.counts.configured,
                report.counts.pruned,
                report.counts.failed
            ),
            time: now(),
        });
    }

    pub(crate) fn record_failure(
        &self,
        key: &str,
        commits: &[Commit],
        trigger: &str,
        error: &AgentError,
    ) {
        self.inner
            .metrics
            .syncs
            .get_or_create(&ResultLabel {
                result: "failed".into(),
            })
            .inc();
        let first = commits.first();
        let entry = HistoryEntry {
            revision: Revision::from_commits(commits.iter().map(|c| c.id.clone()))
                .map(|r| r.to_string())
                .unwrap_or_default(),
            author: first.map(|c| c.author.clone()).unwrap_or_default(),
            message: first.map(|c| c.subject.clone()).unwrap_or_default(),
            commit_time: first.map(|c| c.time).unwrap_or_default(),
            synced_at: now(),
            trigger: trigger.into(),
            result: "failed".into(),
            error: error.to_string(),
            ..Default::default()
        };
        let _ = self
            .inner
            .store
            .add_history(key, entry, self.inner.config.history_limit);
        self.inner.notifier.send(Event {
            event: EventKind::SyncFailed,
            application: key.to_string(),
            revision: first.map(|c| c.id.clone()).unwrap_or_default(),
            message: error.to_string(),
            time: now(),
        });
    }
}

/// The first object that failed, as `object: why`.
pub(crate) fn first_failure(r: &SyncReport) -> String {
    r.results
        .iter()
        .find(|x| x.action == plumb_model::sync::Action::Failed)
        .map(|x| format!("{}: {}", x.object, x.message))
        .unwrap_or_else(|| "sync failed".into())
}
