//! One reconcile of one Application: the heart of the agent.
//!
//! A run takes the Application's commits (resolved again on a refresh, the
//! cached ones otherwise), renders and checks them through the pipeline,
//! compares with the cluster and, when the sync policy says so, syncs: a new
//! commit under automation straight away, drift when `selfHeal` is on. Then
//! it records status, makes sure the managed kinds are watched and announces
//! drift and degraded health. A failed run backs off exponentially (5 s
//! doubling to 5 min) and never holds up other Applications.

use std::time::{Duration, Instant};

use plumb_git::Commit;
use plumb_kube::{Engine, StatusReport, SyncOptions};
use plumb_model::application::{Application, AutomatedPolicy};
use plumb_model::{HealthStatus, Revision, SyncStatus};
use plumb_pipeline::{PipelineError, Prepared};

use crate::agent::Agent;
use crate::error::AgentError;
use crate::notify::{Event, EventKind};
use crate::state::{Reason, lock_read, lock_write, now};
use crate::status::{AppStatus, Phase};

impl Agent {
    /// Run one reconcile and record its failure, with a backoff retry.
    pub(crate) async fn reconcile(&self, key: &str, reason: Reason) {
        let started = Instant::now();
        let result = self.reconcile_inner(key, reason).await;
        self.inner
            .metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        let Err(error) = result else {
            return;
        };
        let message = error.to_string();
        let refusals = Refusals::of(&error);
        let (attempts, status, newly_refused) = {
            let mut apps = lock_write(&self.inner.apps);
            let Some(slot) = apps.get_mut(key) else {
                return;
            };
            slot.attempts += 1;
            slot.status.phase = Phase::Failed;
            slot.status.message = message.clone();
            slot.status.last_reconcile = Some(now());
            let newly_refused = !refusals.is_empty()
                && (slot.status.denials != refusals.policy_lines()
                    || slot.status.secret_findings != refusals.secret_lines());
            slot.status.denials = refusals.policy_lines();
            slot.status.secret_findings = refusals.secret_lines();
            (slot.attempts, slot.status.clone(), newly_refused)
        };
        if newly_refused {
            self.announce_refusals(key, &status, &refusals);
        }
        tracing::warn!(app = %key, attempt = attempts, error = %message, hint = error.hint(), "reconcile failed");
        self.publish(&status);
        let delay =
            Duration::from_secs(5u64.saturating_mul(1 << attempts.min(6).saturating_sub(1)))
                .min(Duration::from_secs(300));
        let agent = self.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            agent.trigger(&key, Reason::Refresh);
        });
    }

    /// Count and announce a check's refusal (once per new set of reasons,
    /// not on every retry): deploy-gate denials and secret findings each as
    /// their own event and metric.
    fn announce_refusals(&self, key: &str, status: &AppStatus, refusals: &Refusals) {
        for (rule, _) in &refusals.policy {
            self.inner
                .metrics
                .policy_denials
                .get_or_create(&crate::metrics::RuleLabel { rule: rule.clone() })
                .inc();
        }
        for (rule, _) in &refusals.secrets {
            self.inner
                .metrics
                .secret_refusals
                .get_or_create(&crate::metrics::RuleLabel { rule: rule.clone() })
                .inc();
        }
        let revision = status.git_revision.clone().unwrap_or_default();
        if !refusals.policy.is_empty() {
            self.inner.notifier.send(Event {
                event: EventKind::PolicyDenied,
                application: key.to_string(),
                revision: revision.clone(),
                message: status.denials.join("; "),
                time: now(),
            });
        }
        if !refusals.secrets.is_empty() {
            self.inner.notifier.send(Event {
                event: EventKind::SecretsRefused,
                application: key.to_string(),
                revision,
                message: status.secret_findings.join("; "),
                time: now(),
            });
        }
    }

    /// The commits of `app` at `pin` (default: its targetRevisions), timed.
    pub(crate) async fn resolve(
        &self,
        app: &Application,
        pin: Option<&Revision>,
    ) -> Result<Vec<Commit>, AgentError> {
        let started = Instant::now();
        let commits = self.inner.pipeline.resolve(app, pin).await;
        self.inner
            .metrics
            .git_fetch_duration
            .observe(started.elapsed().as_secs_f64());
        Ok(commits?)
    }

    /// The sync options the agent uses for `app`.
    pub(crate) fn sync_options(&self, app: &Application) -> SyncOptions {
        SyncOptions {
            prune: app.automated().is_some_and(|a| a.prune),
            concurrency: self.inner.config.concurrency,
            max_prune_share: self.inner.config.max_prune_share,
            ..Default::default()
        }
    }

    fn announce_drift(&self, key: &str, revision: &Revision, message: String) {
        self.inner.notifier.send(Event {
            event: EventKind::DriftDetected,
            application: key.to_string(),
            revision: revision.to_string(),
            message,
            time: now(),
        });
    }

    async fn reconcile_inner(&self, key: &str, reason: Reason) -> Result<(), AgentError> {
        let (file, cached_commits, previous, redefined) = {
            let apps = lock_read(&self.inner.apps);
            let Some(slot) = apps.get(key) else {
                return Ok(());
            };
            (
                slot.file.clone(),
                slot.commits.clone(),
                slot.status.clone(),
                slot.redefined,
            )
        };
        let app = &file.application;
        let pinned = self.pin(key)?;
        let commits = if pinned.is_some() || reason == Reason::Refresh || cached_commits.is_empty()
        {
            let resolved = self.resolve(app, pinned.as_ref()).await?;
            // Later resyncs look at what Git said last, even if this
            // reconcile is refused: a refused commit must not give way to a
            // status of the commit before it.
            if pinned.is_none()
                && let Some(slot) = lock_write(&self.inner.apps).get_mut(key)
            {
                slot.commits = resolved.clone();
            }
            resolved
        } else {
            cached_commits
        };
        let cluster = self.inner.clusters.get(&app.spec.destination).await?;
        let synced_revision = Engine::new(&cluster, app)
            .inventory()
            .await
            .map_err(PipelineError::from)?
            .and_then(|i| i.revision);
        let new_commit = synced_revision.is_none_or(|synced| {
            !commits
                .iter()
                .map(|c| c.id.as_str())
                .eq(synced.parts().iter().map(String::as_str))
        });
        // Checks may let through what the cluster already runs (a self-heal)
        // and refuse only what is new.
        let prepared = self
            .inner
            .pipeline
            .prepare_commits(app, commits, !new_commit)
            .await?;
        let engine = prepared.engine(&cluster);
        let automated = app.automated().filter(|_| pinned.is_none());
        let revision = &prepared.revision;
        // A new commit under automation is synced straight away: the sync
        // itself finds what changed, and status is computed once, after.
        let skip_first_status = automated.is_some() && new_commit && reason != Reason::Health;
        let mut report = None;
        let mut out_of_sync = new_commit;
        let mut rotated = false;
        let mut drift_announced = false;
        if !skip_first_status {
            let r = self.status_of(&engine, &prepared).await?;
            out_of_sync = r.sync == SyncStatus::OutOfSync;
            rotated = out_of_sync && referenced_secret_differs(&prepared, &r);
            // Drift is the move from Synced to OutOfSync without a new
            // commit, whichever trigger's reconcile sees it first (a health
            // reconcile racing the drift one must not swallow the event).
            if out_of_sync && !new_commit && previous.sync != SyncStatus::OutOfSync {
                drift_announced = true;
                self.announce_drift(
                    key,
                    revision,
                    format!("{} objects differ from Git", r.resources.out_of_sync),
                );
            }
            report = Some(r);
        }
        // A value rotated at a reference's source is a new desired state
        // from outside Git: automation applies it as it would a commit.
        let should_sync = should_sync(
            automated,
            reason,
            new_commit || rotated || (redefined && out_of_sync),
            out_of_sync,
        );
        if should_sync {
            self.set_phase(key, Phase::Syncing);
            let trigger = if new_commit || rotated || redefined {
                "automated"
            } else {
                "self-heal"
            };
            let opts = self.sync_options(app);
            let sync = match prepared.sync(&cluster, &opts, &()).await {
                Ok(s) => s,
                Err(e) => {
                    let error = AgentError::from(e);
                    self.record_failure(key, &prepared.commits, trigger, &error);
                    return Err(error);
                }
            };
            self.record_sync(key, &prepared.commits, trigger, &sync);
            if sync.succeeded
                && let Some(slot) = lock_write(&self.inner.apps).get_mut(key)
                && slot.file.application == *app
            {
                slot.redefined = false;
            }
            if !sync.succeeded {
                return Err(AgentError::SyncFailed {
                    first: crate::record::first_failure(&sync),
                });
            }
            report = None;
        }
        let report = match report {
            Some(r) => r,
            None => self.status_of(&engine, &prepared).await?,
        };
        // Reaching here after `should_sync` means the sync succeeded.
        if should_sync && !drift_announced && report.sync == SyncStatus::OutOfSync {
            // Someone changed a managed object between this sync and the
            // status taken after it: drift, and the watch's own reconcile
            // will find the status already OutOfSync, so announce it here.
            self.announce_drift(
                key,
                revision,
                format!(
                    "{} objects differ from Git right after a sync",
                    report.resources.out_of_sync
                ),
            );
        }
        let ensure: Vec<_> = report
            .objects
            .iter()
            .map(|o| (o.object.clone(), o.version.clone()))
            .collect();
        self.inner
            .watches
            .ensure(self.on_change(), &cluster, &ensure)
            .await;
        let Some(status) = self.record_status(key, &prepared, pinned.as_ref(), report) else {
            return Ok(());
        };
        if status.health == HealthStatus::Degraded && previous.health != HealthStatus::Degraded {
            self.announce_degraded(key, revision, &status);
        }
        self.publish(&status);
        Ok(())
    }

    async fn status_of(
        &self,
        engine: &Engine<'_>,
        prepared: &Prepared,
    ) -> Result<StatusReport, AgentError> {
        engine
            .status(&prepared.rendered.manifests, &prepared.revision)
            .await
            .map_err(|e| AgentError::Pipeline(e.into()))
    }

    /// Keep what this reconcile found in the Application's slot; `None` when
    /// the Application went away meanwhile.
    fn record_status(
        &self,
        key: &str,
        prepared: &Prepared,
        pinned: Option<&Revision>,
        report: StatusReport,
    ) -> Option<AppStatus> {
        let mut apps = lock_write(&self.inner.apps);
        let slot = apps.get_mut(key)?;
        slot.commits = prepared.commits.clone();
        slot.attempts = 0;
        let s = &mut slot.status;
        s.sync = report.sync;
        s.health = report.health;
        s.revision = report.revision.as_ref().map(Revision::to_string);
        s.git_revision = Some(prepared.revision.to_string());
        s.suspended = pinned.map(Revision::to_string);
        s.phase = Phase::Idle;
        s.denials.clear();
        s.secret_findings.clear();
        s.message = prepared.rendered.warnings.join("; ");
        s.last_reconcile = Some(now());
        s.resources = report.resources;
        s.objects = report.objects;
        Some(s.clone())
    }

    fn announce_degraded(&self, key: &str, revision: &Revision, status: &AppStatus) {
        let why: Vec<String> = status
            .objects
            .iter()
            .filter(|o| o.health == HealthStatus::Degraded)
            .map(|o| format!("{}: {}", o.object, o.message))
            .collect();
        self.inner.notifier.send(Event {
            event: EventKind::HealthDegraded,
            application: key.to_string(),
            revision: revision.to_string(),
            message: why.join("; "),
            time: now(),
        });
    }
}

/// The deploy gate's refusals in `error`: (rule, refusal text) each.
/// The refusals of the checks whose findings the agent shows on the
/// Application, as (rule, line) pairs.
#[derive(Debug, Default)]
struct Refusals {
    /// The deploy gate's.
    policy: Vec<(String, String)>,
    /// The plaintext-secret scan's (places and rules, never values).
    secrets: Vec<(String, String)>,
}

impl Refusals {
    fn of(error: &AgentError) -> Refusals {
        let mut out = Refusals::default();
        if let AgentError::Pipeline(PipelineError::Refused(refused)) = error {
            for r in &refused.0 {
                let entry = (r.rule.clone(), r.to_string());
                match r.check {
                    "deploy-gate" => out.policy.push(entry),
                    plumb_pipeline::PLAINTEXT_SECRETS_CHECK => out.secrets.push(entry),
                    _ => {}
                }
            }
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.policy.is_empty() && self.secrets.is_empty()
    }

    fn policy_lines(&self) -> Vec<String> {
        self.policy.iter().map(|(_, l)| l.clone()).collect()
    }

    fn secret_lines(&self) -> Vec<String> {
        self.secrets.iter().map(|(_, l)| l.clone()).collect()
    }
}

/// Whether an out-of-sync object of `report` is a Secret whose values come
/// from `plumb.dev/secret-ref…` references (so its source changed, or
/// someone edited the values the references own).
fn referenced_secret_differs(prepared: &Prepared, report: &StatusReport) -> bool {
    let referenced: Vec<(Option<&str>, &str)> = prepared
        .referencing_secrets()
        .map(|m| {
            (
                m.object
                    .pointer("/metadata/namespace")
                    .and_then(|v| v.as_str()),
                m.object
                    .pointer("/metadata/name")
                    .and_then(|v| v.as_str())
                    .unwrap_or(""),
            )
        })
        .collect();
    if referenced.is_empty() {
        return false;
    }
    let default_ns = prepared.app.spec.destination.namespace.as_deref();
    report.objects.iter().any(|o| {
        o.sync == SyncStatus::OutOfSync
            && o.object.kind == "Secret"
            && o.object.group.is_empty()
            && referenced.iter().any(|(ns, name)| {
                *name == o.object.name && ns.or(default_ns) == o.object.namespace.as_deref()
            })
    })
}

/// Whether a reconcile syncs: only under automation, never for a status-only
/// change; a new commit always, drift only with self-heal.
fn should_sync(
    automated: Option<&AutomatedPolicy>,
    reason: Reason,
    new_commit: bool,
    out_of_sync: bool,
) -> bool {
    match automated {
        Some(a) if reason != Reason::Health => new_commit || (out_of_sync && a.self_heal),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_automation_syncs_and_drift_needs_self_heal() {
        let heal = AutomatedPolicy {
            self_heal: true,
            ..Default::default()
        };
        let plain = AutomatedPolicy::default();
        assert!(!should_sync(None, Reason::Refresh, true, true));
        assert!(should_sync(Some(&plain), Reason::Refresh, true, false));
        assert!(!should_sync(Some(&plain), Reason::Drift, false, true));
        assert!(should_sync(Some(&heal), Reason::Drift, false, true));
        assert!(!should_sync(Some(&heal), Reason::Health, true, true));
    }
}
