//! Applications as cluster objects: `argoproj.io/v1alpha1` Application
//! objects watched in the agent's namespaces, with their `.status` written
//! back in Argo CD's shape.
//!
//! - An Application object created, edited or deleted acts as soon as the
//!   watch delivers it (a file's Application works as before; the same key
//!   in both is refused for the object).
//! - `.status` gets `sync`, `health`, `resources[]`, `reconciledAt`,
//!   `history[]`, `operationState`, `conditions` and `sourceType`, written
//!   only when they change (plumb's own status writes come back through the
//!   watch and are recognised as such).
//! - The `argocd.argoproj.io/refresh` annotation (`normal` or `hard`)
//!   triggers a refresh that asks Git again, and is removed; an `operation:
//!   {sync: {...}}` runs a sync, records `operationState` and clears it.
//! - Deleting an Application carrying the finalizer
//!   `resources-finalizer.argocd.argoproj.io` deletes its managed objects
//!   first (cascade), then removes the finalizer; without it, the objects
//!   stay, as in Argo CD.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use plumb_kube::SyncOptions;
use plumb_model::application::{Application, Destination};
use plumb_model::{Origin, SyncStatus};
use plumb_render::application::ApplicationFile;
use serde_json::{Value, json};

use crate::agent::Agent;
use crate::state::{Reason, Slot, initial_status, lock_read, lock_write, now};
use crate::status::{AppStatus, HistoryEntry, Phase};

/// The annotation that asks for a refresh (`normal` or `hard`).
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// The finalizer that makes deleting an Application delete its objects.
pub const CASCADE_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// How many successful syncs `.status.history` keeps by default (Argo's).
const HISTORY_LIMIT: usize = 10;

/// The origin file name of Applications read from the cluster.
const CLUSTER_ORIGIN: &str = "cluster";

/// The Application resource.
pub fn application_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

/// What the object-side of the agent remembers per Application.
#[derive(Default)]
pub(crate) struct ObjectState {
    /// The last `.status` plumb wrote, by key (to write only changes).
    written: std::sync::Mutex<HashMap<String, Value>>,
    /// The last operation's state, by key.
    operations: std::sync::Mutex<HashMap<String, Value>>,
    /// The home cluster's client, once watching.
    client: std::sync::OnceLock<kube::Client>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Whether a slot's Application came from a cluster object.
pub(crate) fn from_cluster(slot: &Slot) -> bool {
    slot.file.origin.file == CLUSTER_ORIGIN
}

impl Agent {
    /// Watch Application objects in each of `namespaces` on the home cluster
    /// (the kubeconfig's current context, or the pod's own cluster).
    pub(crate) async fn watch_application_objects(
        &self,
        namespaces: &[String],
    ) -> Result<(), crate::AgentError> {
        if namespaces.is_empty() {
            return Ok(());
        }
        let home = Destination {
            server: Some(plumb_model::application::IN_CLUSTER_SERVER.to_string()),
            ..Default::default()
        };
        let (config, _) = plumb_kube::config_for(&home, self.inner.config.kubeconfig.as_deref())
            .await
            .map_err(plumb_pipeline::PipelineError::from)?;
        let client = kube::Client::try_from(config).map_err(|e| {
            crate::AgentError::Cluster(format!("cannot connect to the home cluster: {e}"))
        })?;
        let _ = self.inner.objects.client.set(client.clone());
        for ns in namespaces {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &application_resource());
            let agent = self.clone();
            let ns = ns.clone();
            tokio::spawn(async move {
                let mut seen = BTreeSet::new();
                let mut initial = BTreeSet::new();
                let stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
                futures::pin_mut!(stream);
                while let Some(event) = stream.next().await {
                    if agent
                        .inner
                        .stopping
                        .load(std::sync::atomic::Ordering::SeqCst)
                    {
                        return;
                    }
                    match event {
                        Ok(Event::Init) => initial.clear(),
                        Ok(Event::InitApply(obj)) => {
                            initial.insert(key_of(&obj));
                            agent.on_object(&api, obj).await;
                        }
                        Ok(Event::InitDone) => {
                            // Objects deleted while the watch was down.
                            for gone in seen.difference(&initial) {
                                agent.drop_object_app(gone);
                            }
                            seen = std::mem::take(&mut initial);
                        }
                        Ok(Event::Apply(obj)) => {
                            seen.insert(key_of(&obj));
                            agent.on_object(&api, obj).await;
                        }
                        Ok(Event::Delete(obj)) => {
                            let key = key_of(&obj);
                            seen.remove(&key);
                            agent.drop_object_app(&key);
                        }
                        Err(e) => {
                            tracing::warn!(namespace = %ns, error = %e, "the Application watch failed; retrying");
                        }
                    }
                }
            });
        }
        Ok(())
    }

    async fn on_object(&self, api: &Api<DynamicObject>, obj: DynamicObject) {
        let key = key_of(&obj);
        let name = obj.metadata.name.clone().unwrap_or_default();
        if obj.metadata.deletion_timestamp.is_some() {
            self.on_object_deleting(api, &key, &obj).await;
            return;
        }
        let value = match serde_json::to_value(&obj) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(app = %key, error = %e, "cannot read the Application object");
                return;
            }
        };
        let loaded = match Application::from_value(&value) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(app = %key, error = %e, "the Application object is invalid");
                let status = json!({"conditions": [{
                    "type": "InvalidSpecError",
                    "message": e.to_string(),
                    "lastTransitionTime": rfc3339(now()),
                }]});
                self.write_object_status(&key, status).await;
                return;
            }
        };
        for w in &loaded.warnings {
            tracing::warn!(app = %key, "{w}");
        }
        let file = ApplicationFile {
            application: loaded.application,
            origin: Origin {
                file: CLUSTER_ORIGIN.into(),
                line: 0,
                column: 0,
            },
            warnings: loaded.warnings,
        };
        let changed = {
            let mut apps = lock_write(&self.inner.apps);
            match apps.get_mut(&key) {
                Some(slot) if !from_cluster(slot) => {
                    tracing::error!(app = %key, "an Application file defines the same Application; the object is ignored");
                    return;
                }
                Some(slot) if slot.file.application == file.application => false,
                Some(slot) => {
                    let mut status = initial_status(&file);
                    status.revision = slot.status.revision.clone();
                    status.git_revision = slot.status.git_revision.clone();
                    slot.status = status;
                    slot.file = file;
                    slot.commits.clear();
                    slot.redefined = true;
                    true
                }
                None => {
                    let mut status = initial_status(&file);
                    if let Some(old) = self
                        .inner
                        .store
                        .statuses()
                        .unwrap_or_default()
                        .into_iter()
                        .find(|s| s.key == key)
                    {
                        status.revision = old.revision;
                        status.last_sync = old.last_sync;
                    }
                    apps.insert(key.clone(), Slot::new(file, status));
                    true
                }
            }
        };
        if changed {
            tracing::info!(app = %key, "Application object changed");
            self.update_gauges();
            self.trigger(&key, Reason::Refresh);
        }
        let annotations = obj.metadata.annotations.clone().unwrap_or_default();
        if annotations.contains_key(REFRESH_ANNOTATION) {
            // Both kinds look at Git again; renders are cached by commit, so
            // `hard` has nothing more to drop.
            self.forget_resolved_of(&key);
            self.trigger(&key, Reason::Refresh);
            let patch = json!({"metadata": {"annotations": {REFRESH_ANNOTATION: null}}});
            if let Err(e) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(app = %key, error = %e, "cannot remove the refresh annotation");
            }
        }
        if let Some(operation) = obj.data.get("operation").filter(|o| !o.is_null()) {
            self.run_operation(api, &key, &name, operation.clone());
        }
    }

    /// Run an `operation: {sync: {...}}` in the background, then record it
    /// and clear the request.
    fn run_operation(&self, api: &Api<DynamicObject>, key: &str, name: &str, operation: Value) {
        {
            let mut ops = lock(&self.inner.objects.operations);
            let running = ops
                .get(key)
                .is_some_and(|s| s["phase"] == "Running" && s["operation"] == operation);
            if running {
                return;
            }
            ops.insert(
                key.to_string(),
                json!({"operation": operation, "phase": "Running", "startedAt": rfc3339(now())}),
            );
        }
        let agent = self.clone();
        let api = api.clone();
        let key = key.to_string();
        let name = name.to_string();
        tokio::spawn(async move {
            let started = rfc3339(now());
            let sync = operation.get("sync").cloned().unwrap_or_default();
            let revision = sync
                .get("revision")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .map(str::to_string);
            let prune = sync.get("prune").and_then(Value::as_bool);
            let result = agent.sync(&key, revision.as_deref(), prune, false).await;
            let state = match &result {
                Ok(report) => json!({
                    "operation": operation,
                    "phase": if report.succeeded { "Succeeded" } else { "Failed" },
                    "message": if report.succeeded { "successfully synced".to_string() } else { crate::record::first_failure(report) },
                    "startedAt": started,
                    "finishedAt": rfc3339(now()),
                    "syncResult": {
                        "revision": report.revision.to_string(),
                        "resources": report.results.iter().map(sync_result_resource).collect::<Vec<_>>(),
                    },
                }),
                Err(e) => json!({
                    "operation": operation,
                    "phase": "Error",
                    "message": e.to_string(),
                    "startedAt": started,
                    "finishedAt": rfc3339(now()),
                }),
            };
            lock(&agent.inner.objects.operations).insert(key.clone(), state.clone());
            let patch = json!({"operation": null, "status": {"operationState": state}});
            if let Err(e) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(app = %key, error = %e, "cannot record the operation");
            }
        });
    }

    async fn on_object_deleting(&self, api: &Api<DynamicObject>, key: &str, obj: &DynamicObject) {
        let finalizers = obj.metadata.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == CASCADE_FINALIZER) {
            self.drop_object_app(key);
            return;
        }
        // After a restart the slot may not exist yet: the object itself says
        // what to delete.
        let app = lock_read(&self.inner.apps)
            .get(key)
            .map(|s| s.file.application.clone())
            .or_else(|| {
                let value = serde_json::to_value(obj).ok()?;
                Application::from_value(&value).ok().map(|l| l.application)
            });
        if let Some(app) = app
            && let Err(e) = self.cascade_delete(&app).await
        {
            tracing::error!(app = %key, error = %e, "cannot delete the Application's objects; the finalizer stays");
            return;
        }
        self.drop_object_app(key);
        let rest: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != CASCADE_FINALIZER)
            .collect();
        let name = obj.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"finalizers": rest}});
        if let Err(e) = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(app = %key, error = %e, "cannot remove the cascade finalizer");
        }
    }

    /// Delete every object the Application manages, and its inventory.
    async fn cascade_delete(&self, app: &Application) -> Result<(), crate::AgentError> {
        let key = app.key();
        let slot_lock = lock_read(&self.inner.apps)
            .get(&key)
            .map(|s| s.lock.clone());
        let _guard = match &slot_lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let cluster = self.inner.clusters.get(&app.spec.destination).await?;
        // Deleting everything is the point here: an empty render is intended.
        let mut app = app.clone();
        let policy = app.spec.sync_policy.get_or_insert_with(Default::default);
        let automated = policy.automated.get_or_insert_with(Default::default);
        automated.allow_empty = true;
        let app = &app;
        let engine = plumb_kube::Engine::new(&cluster, app);
        let Some(inventory) = engine
            .inventory()
            .await
            .map_err(plumb_pipeline::PipelineError::from)?
        else {
            return Ok(());
        };
        let revision = inventory
            .revision
            .clone()
            .or_else(|| plumb_model::Revision::single("cascade").ok())
            .ok_or_else(|| {
                crate::AgentError::Invalid("no revision to record the cascade under".into())
            })?;
        let options = SyncOptions {
            prune: true,
            force_prune: true,
            concurrency: self.inner.config.concurrency,
            ..Default::default()
        };
        let report = engine
            .sync(&[], &revision, &options, &())
            .await
            .map_err(plumb_pipeline::PipelineError::from)?;
        if !report.succeeded {
            return Err(crate::AgentError::SyncFailed {
                first: crate::record::first_failure(&report),
            });
        }
        plumb_kube::inventory::delete(cluster.client(), &key)
            .await
            .map_err(|e| crate::AgentError::Cluster(e.to_string()))?;
        tracing::info!(app = %key, deleted = report.counts.pruned, "Application deleted with its objects");
        Ok(())
    }

    fn drop_object_app(&self, key: &str) {
        let removed = {
            let mut apps = lock_write(&self.inner.apps);
            match apps.get(key) {
                Some(slot) if from_cluster(slot) => apps.remove(key).is_some(),
                _ => false,
            }
        };
        if removed {
            lock(&self.inner.objects.written).remove(key);
            lock(&self.inner.objects.operations).remove(key);
            tracing::info!(app = %key, "Application object removed");
            self.update_gauges();
        }
    }

    /// Write `status`'s Argo form to the Application object, if it came from
    /// one and it changed.
    pub(crate) fn publish_object_status(&self, status: &AppStatus) {
        let Some(slot_app) = lock_read(&self.inner.apps)
            .get(&status.key)
            .filter(|s| from_cluster(s))
            .map(|s| s.file.application.clone())
        else {
            return;
        };
        if self.inner.objects.client.get().is_none() {
            return;
        }
        let history = self.inner.store.history(&status.key).unwrap_or_default();
        let operation = lock(&self.inner.objects.operations)
            .get(&status.key)
            .cloned();
        let argo = argo_status(&slot_app, status, &history, operation);
        let agent = self.clone();
        let key = status.key.clone();
        tokio::spawn(async move { agent.write_object_status(&key, argo).await });
    }

    async fn write_object_status(&self, key: &str, status: Value) {
        let Some(client) = self.inner.objects.client.get() else {
            return;
        };
        {
            let written = lock(&self.inner.objects.written);
            if written.get(key) == Some(&status) {
                return;
            }
        }
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &application_resource());
        let patch = json!({"status": status});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                lock(&self.inner.objects.written).insert(key.to_string(), status);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                tracing::warn!(app = %key, error = %e, "cannot write the Application's status")
            }
        }
    }
}

fn key_of(obj: &DynamicObject) -> String {
    format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or(""),
        obj.metadata.name.as_deref().unwrap_or("")
    )
}

pub(crate) fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn sync_result_resource(r: &plumb_model::sync::ObjectResult) -> Value {
    use plumb_model::sync::Action;
    let status = match r.action {
        Action::Created | Action::Configured | Action::Unchanged => "Synced",
        Action::Pruned => "Pruned",
        Action::Skipped => "PruneSkipped",
        Action::Failed => "SyncFailed",
    };
    json!({
        "group": r.object.group,
        "version": r.version,
        "kind": r.object.kind,
        "namespace": r.object.namespace.clone().unwrap_or_default(),
        "name": r.object.name,
        "status": status,
        "message": r.message,
        "syncPhase": "Sync",
        "hookPhase": if r.action == Action::Failed { "Failed" } else { "Succeeded" },
    })
}

/// The Argo CD form of an Application's status.
pub(crate) fn argo_status(
    app: &Application,
    s: &AppStatus,
    history: &[HistoryEntry],
    operation: Option<Value>,
) -> Value {
    let source = app
        .sources()
        .first()
        .map(|s| serde_json::to_value(s).unwrap_or_default());
    let destination = serde_json::to_value(&app.spec.destination).unwrap_or_default();
    let mut compared = json!({"destination": destination});
    if let Some(src) = &source {
        compared["source"] = src.clone();
    }
    let resources: Vec<Value> = s
        .objects
        .iter()
        .map(|o| {
            let mut r = json!({
                "group": o.object.group,
                "version": o.version,
                "kind": o.object.kind,
                "name": o.object.name,
                "status": o.sync.to_string(),
                "health": {"status": o.health.to_string()},
            });
            if let Some(ns) = &o.object.namespace {
                r["namespace"] = json!(ns);
            }
            if !o.message.is_empty() {
                r["health"]["message"] = json!(o.message);
            }
            r
        })
        .collect();
    // Argo keeps successful deployments, oldest first, under ids that grow.
    let mut deployed: Vec<&HistoryEntry> =
        history.iter().filter(|h| h.result == "succeeded").collect();
    deployed.sort_by_key(|h| h.id);
    let skip = deployed.len().saturating_sub(HISTORY_LIMIT);
    let deployments: Vec<Value> = deployed[skip..]
        .iter()
        .map(|h| {
            let mut e = json!({
                "id": h.id,
                "revision": h.revision,
                "deployedAt": rfc3339(h.synced_at),
                "initiatedBy": {"automated": h.trigger != "manual" && h.trigger != "rollback"},
            });
            if let Some(src) = &source {
                e["source"] = src.clone();
            }
            e
        })
        .collect();
    let mut out = json!({
        "sync": {
            "status": s.sync.to_string(),
            "comparedTo": compared,
        },
        "health": {"status": s.health.to_string()},
        "resources": resources,
        "history": deployments,
    });
    if let Some(rev) = s.git_revision.as_ref().or(s.revision.as_ref()) {
        out["sync"]["revision"] = json!(rev);
    }
    if let Some(t) = s.last_reconcile {
        out["reconciledAt"] = json!(rfc3339(t));
    }
    if s.phase == Phase::Failed && !s.message.is_empty() {
        let kind = if !s.denials.is_empty() || !s.secret_findings.is_empty() {
            "SyncError"
        } else {
            "ComparisonError"
        };
        out["conditions"] = json!([{
            "type": kind,
            "message": s.message,
            "lastTransitionTime": rfc3339(s.last_reconcile.unwrap_or_else(now)),
        }]);
    } else {
        out["conditions"] = json!([]);
    }
    // The operation the agent itself ran last (automated or self-heal), as
    // Argo records it, unless a requested operation is newer.
    if let Some(op) = operation.or_else(|| history_operation(history.iter().max_by_key(|e| e.id))) {
        out["operationState"] = op;
    }
    if s.sync == SyncStatus::Unknown && s.phase == Phase::Pending {
        out["sync"]["status"] = json!("Unknown");
    }
    out
}

/// Argo's `operationState` for the agent's own last sync (automated,
/// self-heal or through the API).
fn history_operation(h: Option<&HistoryEntry>) -> Option<Value> {
    let h = h?;
    let succeeded = h.result == "succeeded";
    Some(json!({
        "operation": {
            "sync": {"revision": h.revision},
            "initiatedBy": {"automated": h.trigger != "manual" && h.trigger != "rollback"},
        },
        "phase": if succeeded { "Succeeded" } else { "Failed" },
        "message": if succeeded { "successfully synced".to_string() } else { h.error.clone() },
        "finishedAt": rfc3339(h.synced_at),
        "syncResult": {
            "revision": h.revision,
            "resources": h.actions.iter().map(sync_result_resource).collect::<Vec<_>>(),
        },
    }))
}
