//! Diff, sync, prune and health for one Application.
//!
//! A sync is an explicit sequence:
//!
//! 1. prepare the rendered manifests (resolve kinds, default namespaces, stamp
//!    tracking ids);
//! 2. record the union of the old inventory and the new desired set as the
//!    inventory, marked pending, *before* anything is created;
//! 3. apply step by step (waves, then CRDs → Namespaces → cluster-scoped →
//!    namespaced), objects within a step concurrently; after CRDs, wait until
//!    they are Established and refresh discovery;
//! 4. prune inventory members that left Git, newest wave first, only when they
//!    still carry this Application's tracking id;
//! 5. record the final inventory with the commit.
//!
//! A crash anywhere leaves an inventory that names every object the sync may
//! have created, so the next run finishes the job and prunes correctly.
//!
//! An object whose manifest hash and live `resourceVersion` both equal what
//! the inventory recorded after plumb's last apply is unchanged without any
//! request; everything else is asked of the server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PropagationPolicy,
};
use plumb_model::application::Application;
use plumb_model::diff::{IgnoreRules, comparable_pair, differs};
use plumb_model::health::{Health, assess};
use plumb_model::inventory::{FIELD_MANAGER, TRACKING_ANNOTATION, tracking_id};
use plumb_model::sync::{
    Action, ActionCounts, ObjectOptions, ObjectResult, Stage, Step, prune_allowed,
};
use plumb_model::{HealthStatus, Inventory, InventoryEntry, ObjectRef, SyncStatus};
use plumb_render::{Manifest, Origin};
use serde::Serialize;
use serde_json::Value;

use crate::cluster::{Cluster, ClusterError, Resolved};
use crate::inventory::{self, InventoryError};
use crate::prepare::{Desired, prepare};
use crate::textdiff;

/// Why a sync (or diff, or status) could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A manifest's kind is not served and no CRD in Git defines it.
    #[error(
        "{origin}: kind {kind} (apiVersion {api_version}) is not served by the cluster and no CustomResourceDefinition in the Application defines it"
    )]
    UnknownKind {
        /// Where the manifest is.
        origin: Origin,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// A namespaced object has no namespace and the destination names none.
    #[error(
        "{origin}: {object} is namespaced but names no namespace, and the destination has none"
    )]
    NoNamespace {
        /// Where.
        origin: Origin,
        /// Which.
        object: String,
    },
    /// A manifest is malformed in a way the render did not catch.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where.
        origin: Origin,
        /// What.
        message: String,
    },
    /// Prune refused to run.
    #[error("{0}")]
    PruneRefused(String),
    /// The inventory could not be read or written.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// Discovery failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// An API call outside a single object's apply failed.
    #[error("{context}: {source}")]
    Api {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: kube::Error,
    },
}

/// How to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Ask the server what would happen; change nothing.
    pub dry_run: bool,
    /// Delete inventory members that left Git.
    pub prune: bool,
    /// Prune even past `max_prune_share`.
    pub force_prune: bool,
    /// Largest share of the inventory a prune may delete unforced.
    pub max_prune_share: f64,
    /// Objects applied at once within a step.
    pub concurrency: usize,
    /// How long to wait for CRDs to be Established and for replaced objects to go.
    pub wait_timeout: Duration,
}

impl Default for SyncOptions {
    fn default() -> SyncOptions {
        SyncOptions {
            dry_run: false,
            prune: false,
            force_prune: false,
            max_prune_share: 0.5,
            concurrency: 32,
            wait_timeout: Duration::from_secs(120),
        }
    }
}

/// Told about each object as a sync goes.
pub trait Progress: Send + Sync {
    /// The number of objects the sync will consider.
    fn start(&self, _total: usize) {}
    /// One object is done.
    fn object(&self, _result: &ObjectResult) {}
}

/// A progress that says nothing.
impl Progress for () {}

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The Application (`namespace/name`).
    pub application: String,
    /// The commit applied.
    pub revision: String,
    /// Whether nothing was changed on purpose.
    pub dry_run: bool,
    /// Per object, in the order handled.
    pub results: Vec<ObjectResult>,
    /// Totals.
    pub counts: ActionCounts,
    /// Whether every object succeeded.
    pub succeeded: bool,
}

/// One object's difference between Git and the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectDiff {
    /// Which object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// API version.
    pub version: String,
    /// `added`, `modified`, `removed` (would be pruned) or `unchanged`.
    pub state: &'static str,
    /// Unified diff of the normalised YAML (live → desired).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
    /// Desired (as the server would store it), normalised.
    #[serde(skip)]
    pub desired: Option<Value>,
    /// Live, normalised.
    #[serde(skip)]
    pub live: Option<Value>,
}

impl ObjectDiff {
    /// Set both sides and the unified diff; Secret values are redacted first,
    /// so no diff plumb produces ever carries one.
    fn shown(&mut self, live: Option<Value>, desired: Option<Value>) {
        let (live, desired) = if plumb_model::diff::is_secret(&self.object.group, &self.object.kind)
        {
            plumb_model::diff::redact_secret_pair(live.as_ref(), desired.as_ref())
        } else {
            (live, desired)
        };
        self.diff = textdiff::unified(live.as_ref(), desired.as_ref(), &self.object.to_string());
        self.live = live;
        self.desired = desired;
    }
}

/// Every difference of an Application.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// The Application.
    pub application: String,
    /// The commit compared.
    pub revision: String,
    /// Objects that differ (and, with `all`, those that do not).
    pub objects: Vec<ObjectDiff>,
}

impl DiffReport {
    /// Whether the cluster equals Git.
    pub fn in_sync(&self) -> bool {
        self.objects.iter().all(|o| o.state == "unchanged")
    }
}

/// One object's status.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ObjectStatus {
    /// Which object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// API version.
    pub version: String,
    /// Synced or OutOfSync.
    pub sync: SyncStatus,
    /// Its health.
    pub health: HealthStatus,
    /// Why, when not simply healthy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// An Application's status.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The Application's name.
    pub name: String,
    /// Synced or OutOfSync.
    pub sync: SyncStatus,
    /// Rolled-up health.
    pub health: HealthStatus,
    /// Commit of the last completed sync.
    pub revision: Option<String>,
    /// The commit Git points at now.
    pub target_revision: String,
    /// Counts by state.
    pub resources: ResourceCounts,
    /// Per object.
    pub objects: Vec<ObjectStatus>,
}

/// Object counts of a status.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceCounts {
    /// Objects in Git.
    pub total: usize,
    /// Equal to Git.
    pub synced: usize,
    /// Different from Git (including missing).
    pub out_of_sync: usize,
    /// In Git, absent from the cluster.
    pub missing: usize,
    /// Left Git, still in the cluster.
    pub requires_pruning: usize,
    /// Healthy objects.
    pub healthy: usize,
}

/// The live metadata plumb needs to decide what to do with an object.
#[derive(Debug, Clone)]
struct LiveMeta {
    resource_version: String,
    tracking: Option<String>,
    /// Hash of plumb's applied field set, when plumb has applied it.
    fields_hash: Option<String>,
    /// Nobody but plumb has written anything except status since plumb's
    /// last apply (by `managedFields` times, strictly earlier).
    untouched: bool,
}

/// What `managedFields` say about plumb's last apply: the hash of its field
/// set, and whether any other writer touched more than status since.
pub(crate) fn apply_state(meta: &kube::core::ObjectMeta) -> (Option<String>, bool) {
    let Some(entries) = meta.managed_fields.as_ref() else {
        return (None, false);
    };
    let ours = entries.iter().find(|e| {
        e.manager.as_deref() == Some(FIELD_MANAGER)
            && e.operation.as_deref() == Some("Apply")
            && e.subresource.as_deref().unwrap_or("").is_empty()
    });
    let Some(ours) = ours else {
        return (None, false);
    };
    let hash = ours
        .fields_v1
        .as_ref()
        .map(|f| crate::prepare::hash_of(&f.0));
    let Some(at) = ours.time.as_ref().map(|t| t.0) else {
        return (hash, false);
    };
    // A writer since plumb's apply is harmless only when it wrote metadata
    // (labels, annotations: a controller's revision note) that plumb does not
    // own: the dry run keeps such fields, so they never read as drift. Any
    // write elsewhere counts, because the server may store a field under
    // another name than it was written (Secret `stringData` becomes `data`),
    // so disjoint field sets prove nothing there.
    type Fields = k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    let leaves = |f: Option<&Fields>| -> Vec<plumb_model::diff::FieldPath> {
        f.map(|f| plumb_model::diff::field_set_paths(&f.0))
            .unwrap_or_default()
    };
    let key = |p: &plumb_model::diff::FieldPath| serde_json::to_string(p).unwrap_or_default();
    let mine: BTreeSet<String> = leaves(ours.fields_v1.as_ref()).iter().map(key).collect();
    let in_metadata = |p: &plumb_model::diff::FieldPath| matches!(p.first(), Some(plumb_model::diff::PathElement::Field(f)) if f == "metadata");
    let untouched = entries.iter().all(|e| {
        if std::ptr::eq(e, ours) || e.subresource.as_deref() == Some("status") {
            return true;
        }
        if e.time.as_ref().is_some_and(|t| t.0 < at) {
            return true;
        }
        leaves(e.fields_v1.as_ref())
            .iter()
            .all(|p| in_metadata(p) && !mine.contains(&key(p)))
    });
    (hash, untouched)
}

/// Whether an object is exactly as plumb's recorded apply of this manifest left it.
fn unchanged_since_apply(e: &InventoryEntry, live: &LiveMeta, hash: &str) -> bool {
    if e.applied_hash.is_empty() || e.applied_hash != hash {
        return false;
    }
    if e.resource_version == live.resource_version {
        return true;
    }
    !e.fields_hash.is_empty()
        && live.fields_hash.as_deref() == Some(e.fields_hash.as_str())
        && live.untouched
}

/// The engine for one Application on one cluster.
pub struct Engine<'a> {
    cluster: &'a Cluster,
    app: &'a Application,
    app_key: String,
}

impl<'a> Engine<'a> {
    /// An engine for `app` against `cluster`.
    pub fn new(cluster: &'a Cluster, app: &'a Application) -> Engine<'a> {
        Engine {
            cluster,
            app,
            app_key: app.key(),
        }
    }

    fn destination_namespace(&self) -> Option<&str> {
        self.app
            .spec
            .destination
            .namespace
            .as_deref()
            .filter(|s| !s.is_empty())
    }

    async fn prepare(&self, manifests: &[Manifest]) -> Result<Vec<Desired>, SyncError> {
        prepare(
            self.cluster,
            &self.app_key,
            &self.app.metadata.name,
            self.destination_namespace(),
            manifests,
        )
        .await
    }

    /// The inventory stored in the cluster, if any.
    pub async fn inventory(&self) -> Result<Option<Inventory>, SyncError> {
        Ok(inventory::load(self.cluster.client(), &self.app_key).await?)
    }

    /// Sync the rendered manifests of `revision`.
    pub async fn sync(
        &self,
        manifests: &[Manifest],
        revision: &str,
        opts: &SyncOptions,
        progress: &dyn Progress,
    ) -> Result<SyncReport, SyncError> {
        let mut desired = self.prepare(manifests).await?;
        let old = self.inventory().await?.unwrap_or_else(|| Inventory {
            application: self.app_key.clone(),
            ..Default::default()
        });
        let old_by_ref = old.by_ref();
        let desired_refs: BTreeSet<ObjectRef> = desired.iter().map(|d| d.oref.clone()).collect();
        let prune_candidates: Vec<InventoryEntry> = old
            .members
            .iter()
            .filter(|m| !desired_refs.contains(&m.object_ref()))
            .cloned()
            .collect();

        // Refuse an unsafe prune before touching anything.
        let allow_empty = self.app.automated().is_some_and(|a| a.allow_empty);
        if opts.prune && !prune_candidates.is_empty() {
            if desired.is_empty() && !allow_empty {
                return Err(SyncError::PruneRefused(format!(
                    "the render is empty: pruning would delete all {} objects of {}; nothing was changed \
                     (set syncPolicy.automated.allowEmpty: true if an empty Application is intended)",
                    prune_candidates.len(),
                    self.app_key
                )));
            }
            if !opts.force_prune
                && !prune_allowed(
                    prune_candidates.len(),
                    old.members.len(),
                    opts.max_prune_share,
                )
            {
                return Err(SyncError::PruneRefused(format!(
                    "pruning would delete {} of {} objects of {} ({:.0}%, more than the allowed {:.0}%); \
                     nothing was changed (pass --force-prune if this is intended)",
                    prune_candidates.len(),
                    old.members.len(),
                    self.app_key,
                    100.0 * prune_candidates.len() as f64 / old.members.len() as f64,
                    100.0 * opts.max_prune_share
                )));
            }
        }

        progress.start(desired.len() + prune_candidates.len());

        // The inventory names everything this sync may create before it
        // creates it. Re-applying the synced commit over objects the inventory
        // already names (self-heal) creates nothing new, so needs no such note.
        let nothing_new = old.revision.as_deref() == Some(revision)
            && old.pending_revision.is_none()
            && desired.iter().all(|d| old_by_ref.contains_key(&d.oref));
        if !opts.dry_run && !nothing_new {
            let mut pending = old.clone();
            pending.merge(desired.iter().map(|d| {
                old_by_ref
                    .get(&d.oref)
                    .map(|e| (*e).clone())
                    .unwrap_or_else(|| entry_for(d, String::new(), String::new()))
            }));
            pending.pending_revision = Some(revision.to_string());
            inventory::save(self.cluster.client(), &pending).await?;
        }

        let mut results: Vec<ObjectResult> = Vec::new();
        let mut applied: BTreeMap<ObjectRef, InventoryEntry> = BTreeMap::new();
        let mut failed = false;

        if self.app.sync_option("CreateNamespace")
            && let Some(ns) = self.destination_namespace()
            && !desired
                .iter()
                .any(|d| d.gvk.group.is_empty() && d.gvk.kind == "Namespace" && d.oref.name == ns)
        {
            self.ensure_namespace(ns, opts.dry_run).await?;
        }

        let mut steps: Vec<Step> = desired
            .iter()
            .map(|d| d.step)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        steps.sort();
        let planned_namespaces: BTreeSet<String> = desired
            .iter()
            .filter(|d| d.gvk.group.is_empty() && d.gvk.kind == "Namespace")
            .map(|d| d.oref.name.clone())
            .chain(
                self.app
                    .sync_option("CreateNamespace")
                    .then(|| self.destination_namespace().map(str::to_string))
                    .flatten(),
            )
            .collect();

        for step in steps {
            // Kinds whose CRD was created in an earlier step resolve now.
            // The API server may list a new kind in discovery a moment after
            // its CRD reports Established, so an unresolved kind waits for
            // discovery to catch up, within the same timeout.
            let deadline = tokio::time::Instant::now() + opts.wait_timeout;
            for d in desired
                .iter_mut()
                .filter(|d| d.step == step && d.resolved.is_none())
            {
                d.resolved = self.cluster.resolve(&d.gvk).await;
                while d.resolved.is_none()
                    && !opts.dry_run
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.cluster.refresh().await?;
                    d.resolved = self.cluster.resolve(&d.gvk).await;
                }
                if d.resolved.is_none() && !opts.dry_run {
                    return Err(SyncError::UnknownKind {
                        origin: d.origin.clone(),
                        api_version: d.gvk.api_version(),
                        kind: d.gvk.kind.clone(),
                    });
                }
            }
            let batch: Vec<&Desired> = desired.iter().filter(|d| d.step == step).collect();
            let live = self.live_meta(&batch).await?;
            let ctx = ApplyCtx {
                engine: self,
                live: &live,
                inventory: &old_by_ref,
                dry_run: opts.dry_run,
                planned_namespaces: &planned_namespaces,
                wait_timeout: opts.wait_timeout,
            };
            // Futures are built first so the stream holds no closure (keeps
            // the whole sync future Send for callers that spawn it).
            let applies: Vec<_> = batch.iter().map(|d| ctx.apply(d)).collect();
            let outcomes: Vec<(ObjectResult, Option<InventoryEntry>)> = stream::iter(applies)
                .buffered(opts.concurrency.max(1))
                .collect()
                .await;
            for (r, entry) in outcomes {
                progress.object(&r);
                if r.action == Action::Failed {
                    failed = true;
                }
                if let Some(e) = entry {
                    applied.insert(e.object_ref(), e);
                }
                results.push(r);
            }
            if failed {
                break;
            }
            if step.stage == Stage::CustomResourceDefinitions && !opts.dry_run {
                let crds: Vec<&Desired> = batch.clone();
                self.wait_established(&crds, opts.wait_timeout).await?;
                self.cluster.refresh().await?;
            }
        }

        // Prune: only after everything applied, newest wave and namespaced first.
        let mut kept: Vec<InventoryEntry> = Vec::new();
        if !failed {
            let mut ordered = prune_candidates.clone();
            ordered.sort_by_key(|e| std::cmp::Reverse(prune_step(e)));
            for entry in ordered {
                let (r, keep) = if opts.prune {
                    self.prune_one(&entry, opts.dry_run).await
                } else {
                    (
                        result_for(
                            &entry,
                            Action::Skipped,
                            "left Git; prune is off (use --prune)",
                        ),
                        true,
                    )
                };
                progress.object(&r);
                if r.action == Action::Failed {
                    failed = true;
                }
                if keep {
                    kept.push(entry);
                }
                results.push(r);
            }
        } else {
            kept = prune_candidates;
        }

        if !opts.dry_run {
            let mut next = Inventory {
                application: self.app_key.clone(),
                revision: old.revision.clone(),
                pending_revision: None,
                members: Vec::new(),
            };
            // Desired objects that were not applied (a failed step) stay with
            // their old entry, or a blank one: they may exist.
            let mut members: Vec<InventoryEntry> = desired
                .iter()
                .map(|d| {
                    applied
                        .get(&d.oref)
                        .cloned()
                        .or_else(|| old_by_ref.get(&d.oref).map(|e| (*e).clone()))
                        .unwrap_or_else(|| entry_for(d, String::new(), String::new()))
                })
                .collect();
            members.extend(kept);
            next.merge(members);
            if failed {
                next.pending_revision = Some(revision.to_string());
            } else {
                next.revision = Some(revision.to_string());
            }
            inventory::save(self.cluster.client(), &next).await?;
        }

        let counts = ActionCounts::of(&results);
        Ok(SyncReport {
            application: self.app_key.clone(),
            revision: revision.to_string(),
            dry_run: opts.dry_run,
            succeeded: !failed,
            results,
            counts,
        })
    }

    /// Compare the rendered manifests with the cluster.
    pub async fn diff(
        &self,
        manifests: &[Manifest],
        revision: &str,
        all: bool,
    ) -> Result<DiffReport, SyncError> {
        Ok(self.diff_with(manifests, revision, all).await?.0)
    }

    /// The diff, plus the prepared objects and the inventory it used.
    async fn diff_with(
        &self,
        manifests: &[Manifest],
        revision: &str,
        all: bool,
    ) -> Result<(DiffReport, Vec<Desired>, Option<Inventory>), SyncError> {
        let desired = self.prepare(manifests).await?;
        let inventory = self.inventory().await?;
        let old = inventory.clone().unwrap_or_default();
        let old_by_ref = old.by_ref();
        let refs: Vec<&Desired> = desired.iter().collect();
        let live = self.live_meta(&refs).await?;
        let desired_refs: BTreeSet<ObjectRef> = desired.iter().map(|d| d.oref.clone()).collect();
        let diffs: Vec<_> = desired
            .iter()
            .map(|d| self.diff_one(d, live.get(&d.oref), old_by_ref.get(&d.oref).copied()))
            .collect();
        let objects: Vec<Result<ObjectDiff, SyncError>> =
            stream::iter(diffs).buffered(16).collect().await;
        let mut objects: Vec<ObjectDiff> = objects.into_iter().collect::<Result<_, _>>()?;
        for entry in old
            .members
            .iter()
            .filter(|m| !desired_refs.contains(&m.object_ref()))
        {
            if let Some(obj) = self
                .get_live(&entry.gvk_resolved(self.cluster).await, &entry.object_ref())
                .await?
            {
                if !owned_by(&obj, &tracking_id(&self.app_key, &entry.object_ref())) {
                    continue;
                }
                let mut o = ObjectDiff {
                    object: entry.object_ref(),
                    version: entry.version.clone(),
                    state: "removed",
                    diff: String::new(),
                    desired: None,
                    live: None,
                };
                o.shown(Some(plumb_model::diff::normalize(&obj)), None);
                objects.push(o);
            }
        }
        if !all {
            objects.retain(|o| o.state != "unchanged");
        }
        Ok((
            DiffReport {
                application: self.app_key.clone(),
                revision: revision.to_string(),
                objects,
            },
            desired,
            inventory,
        ))
    }

    /// Live objects of this Application, one labelled LIST per kind and namespace.
    async fn live_objects(
        &self,
        desired: &[&Desired],
    ) -> Result<BTreeMap<ObjectRef, Value>, SyncError> {
        let groups = by_kind_and_namespace(desired);
        let selector = format!(
            "{}={}",
            plumb_model::inventory::APP_LABEL,
            crate::prepare::label_value(&self.app.metadata.name)
        );
        let mut out = BTreeMap::new();
        for ((group, _, kind, ns), resolved) in groups {
            let api = self.cluster.api(&resolved, ns.as_deref());
            let mut params = ListParams::default().labels(&selector).limit(500);
            loop {
                let list = match api.list(&params).await {
                    Ok(l) => l,
                    Err(kube::Error::Api(s)) if s.code == 404 => break,
                    Err(source) => {
                        return Err(SyncError::Api {
                            context: format!("listing {kind}"),
                            source,
                        });
                    }
                };
                for item in list.items {
                    let Some(name) = item.metadata.name.clone() else {
                        continue;
                    };
                    out.insert(
                        ObjectRef {
                            group: group.clone(),
                            kind: kind.clone(),
                            namespace: ns.clone(),
                            name,
                        },
                        {
                            // List items carry no apiVersion/kind; health rules need them.
                            let mut v = serde_json::to_value(item).unwrap_or_default();
                            v["apiVersion"] = Value::from(resolved.resource.api_version.as_str());
                            v["kind"] = Value::from(resolved.resource.kind.as_str());
                            v
                        },
                    );
                }
                match list.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// Sync and health status of the rendered manifests against the cluster.
    pub async fn status(
        &self,
        manifests: &[Manifest],
        target_revision: &str,
    ) -> Result<StatusReport, SyncError> {
        let (diff, desired, inv) = self.diff_with(manifests, target_revision, true).await?;
        let by_ref: BTreeMap<&ObjectRef, &Desired> = desired.iter().map(|d| (&d.oref, d)).collect();
        let present: Vec<&Desired> = diff
            .objects
            .iter()
            .filter(|o| o.state != "added" && o.state != "removed")
            .filter_map(|o| by_ref.get(&o.object).copied())
            .collect();
        let mut live_objects = self.live_objects(&present).await?;
        let mut objects = Vec::new();
        let mut counts = ResourceCounts::default();
        let mut healths = Vec::new();
        for o in &diff.objects {
            let sync = if o.state == "unchanged" {
                SyncStatus::Synced
            } else {
                SyncStatus::OutOfSync
            };
            let health = match (o.state, by_ref.get(&o.object)) {
                ("removed", _) => None,
                ("added", _) => Some(Health::missing()),
                (_, Some(d)) => {
                    let live = match live_objects.remove(&d.oref) {
                        Some(v) => Some(v),
                        // Adopted without plumb's label yet: read it directly.
                        None => self.get_live(&d.resolved, &d.oref).await?,
                    };
                    Some(live.as_ref().and_then(assess).unwrap_or(Health {
                        status: HealthStatus::Healthy,
                        message: String::new(),
                    }))
                }
                _ => None,
            };
            match o.state {
                "removed" => counts.requires_pruning += 1,
                "added" => {
                    counts.total += 1;
                    counts.missing += 1;
                    counts.out_of_sync += 1;
                }
                "modified" => {
                    counts.total += 1;
                    counts.out_of_sync += 1;
                }
                _ => {
                    counts.total += 1;
                    counts.synced += 1;
                }
            }
            if let Some(h) = &health {
                healths.push(h.status);
                if h.status == HealthStatus::Healthy {
                    counts.healthy += 1;
                }
            }
            objects.push(ObjectStatus {
                object: o.object.clone(),
                version: o.version.clone(),
                sync,
                health: health
                    .as_ref()
                    .map(|h| h.status)
                    .unwrap_or(HealthStatus::Healthy),
                message: health.map(|h| h.message).unwrap_or_else(|| {
                    if o.state == "removed" {
                        "left Git; requires pruning".into()
                    } else {
                        String::new()
                    }
                }),
            });
        }
        Ok(StatusReport {
            name: self.app.metadata.name.clone(),
            sync: if diff.in_sync() {
                SyncStatus::Synced
            } else {
                SyncStatus::OutOfSync
            },
            health: HealthStatus::roll_up(healths),
            revision: inv.and_then(|i| i.revision),
            target_revision: target_revision.to_string(),
            resources: counts,
            objects,
        })
    }

    async fn diff_one(
        &self,
        d: &Desired,
        live: Option<&LiveMeta>,
        recorded: Option<&InventoryEntry>,
    ) -> Result<ObjectDiff, SyncError> {
        let base = |state: &'static str| ObjectDiff {
            object: d.oref.clone(),
            version: d.gvk.version.clone(),
            state,
            diff: String::new(),
            desired: None,
            live: None,
        };
        let Some(live_meta) = live else {
            let mut o = base("added");
            o.shown(None, Some(plumb_model::diff::normalize(&d.obj)));
            return Ok(o);
        };
        if let Some(e) = recorded
            && unchanged_since_apply(e, live_meta, &self.applied_hash(d))
        {
            return Ok(base("unchanged"));
        }
        let Some(resolved) = &d.resolved else {
            return Ok(base("added"));
        };
        let live_obj = self.get_live(&Some(resolved.clone()), &d.oref).await?;
        let Some(live_obj) = live_obj else {
            return Ok(base("added"));
        };
        let rules = self.ignore_rules(d);
        let mut body = d.obj.clone();
        rules.strip(&mut body, Some(&live_obj));
        let api = self.cluster.api(resolved, d.oref.namespace.as_deref());
        let dry = api
            .patch(
                &d.oref.name,
                &PatchParams::apply(FIELD_MANAGER).force().dry_run(),
                &Patch::Apply(&body),
            )
            .await;
        let dry = match dry {
            Ok(o) => serde_json::to_value(o).unwrap_or_default(),
            Err(e) => {
                let mut o = base("modified");
                o.diff = format!(
                    "# the server rejects the desired object: {}\n",
                    api_error_text(&e)
                );
                return Ok(o);
            }
        };
        if !differs(&dry, &live_obj, &rules) {
            return Ok(base("unchanged"));
        }
        let (desired_side, live_side) = comparable_pair(&dry, &live_obj, &rules);
        let mut o = base("modified");
        o.shown(Some(live_side), Some(desired_side));
        Ok(o)
    }

    /// The hash recorded for an apply: the manifest's, plus the ignore rules
    /// that shaped what was actually sent.
    fn applied_hash(&self, d: &Desired) -> String {
        let rules: Vec<&plumb_model::application::IgnoreDifferences> = self
            .app
            .spec
            .ignore_differences
            .iter()
            .filter(|r| {
                r.matches(
                    &d.gvk.group,
                    &d.gvk.kind,
                    d.oref.namespace.as_deref(),
                    &d.oref.name,
                )
            })
            .collect();
        if rules.is_empty() {
            d.hash.clone()
        } else {
            crate::prepare::hash_of(&serde_json::json!([d.hash, rules]))
        }
    }

    fn ignore_rules(&self, d: &Desired) -> IgnoreRules<'a> {
        IgnoreRules::for_object(
            &self.app.spec.ignore_differences,
            &d.gvk.group,
            &d.gvk.kind,
            d.oref.namespace.as_deref(),
            &d.oref.name,
        )
    }

    async fn get_live(
        &self,
        resolved: &Option<Resolved>,
        r: &ObjectRef,
    ) -> Result<Option<Value>, SyncError> {
        let Some(resolved) = resolved else {
            return Ok(None);
        };
        let api = self.cluster.api(resolved, r.namespace.as_deref());
        match api.get_opt(&r.name).await {
            Ok(o) => Ok(o.map(|o| serde_json::to_value(o).unwrap_or_default())),
            Err(source) => Err(SyncError::Api {
                context: format!("reading {r}"),
                source,
            }),
        }
    }

    /// Metadata of the live objects a batch names, one LIST per kind and namespace.
    async fn live_meta(
        &self,
        batch: &[&Desired],
    ) -> Result<BTreeMap<ObjectRef, LiveMeta>, SyncError> {
        let groups = by_kind_and_namespace(batch);
        let lists: Vec<Result<Vec<(ObjectRef, LiveMeta)>, SyncError>> = stream::iter(groups)
            .map(|((group, _v, kind, ns), resolved)| async move {
                let api = self.cluster.api(&resolved, ns.as_deref());
                let mut out = Vec::new();
                let mut params = ListParams::default().limit(5000);
                loop {
                    let list = match api.list_metadata(&params).await {
                        Ok(l) => l,
                        // The namespace does not exist yet: nothing lives there.
                        Err(kube::Error::Api(s)) if s.code == 404 => break,
                        Err(source) => {
                            return Err(SyncError::Api {
                                context: format!(
                                    "listing {kind} in {}",
                                    ns.as_deref().unwrap_or("the cluster")
                                ),
                                source,
                            });
                        }
                    };
                    for item in &list.items {
                        let Some(name) = item.metadata.name.clone() else {
                            continue;
                        };
                        let oref = ObjectRef {
                            group: group.clone(),
                            kind: kind.clone(),
                            namespace: ns.clone(),
                            name,
                        };
                        out.push((
                            oref,
                            LiveMeta {
                                resource_version: item
                                    .metadata
                                    .resource_version
                                    .clone()
                                    .unwrap_or_default(),
                                tracking: item
                                    .metadata
                                    .annotations
                                    .as_ref()
                                    .and_then(|a| a.get(TRACKING_ANNOTATION))
                                    .cloned(),
                                fields_hash: apply_state(&item.metadata).0,
                                untouched: apply_state(&item.metadata).1,
                            },
                        ));
                    }
                    match list.metadata.continue_.filter(|c| !c.is_empty()) {
                        Some(token) => params = params.continue_token(&token),
                        None => break,
                    }
                }
                Ok(out)
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut map = BTreeMap::new();
        for l in lists {
            map.extend(l?);
        }
        Ok(map)
    }

    async fn ensure_namespace(&self, ns: &str, dry_run: bool) -> Result<(), SyncError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> =
            Api::all(self.cluster.client().clone());
        if api
            .get_opt(ns)
            .await
            .map_err(|source| SyncError::Api {
                context: format!("reading namespace {ns}"),
                source,
            })?
            .is_some()
        {
            return Ok(());
        }
        let body =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        if dry_run {
            params = params.dry_run();
        }
        api.patch(ns, &params, &Patch::Apply(&body))
            .await
            .map_err(|source| SyncError::Api {
                context: format!("creating namespace {ns} (CreateNamespace=true)"),
                source,
            })?;
        Ok(())
    }

    async fn wait_established(
        &self,
        crds: &[&Desired],
        timeout: Duration,
    ) -> Result<(), SyncError> {
        let api: Api<DynamicObject> = Api::all_with(
            self.cluster.client().clone(),
            &kube::discovery::ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk(
                    "apiextensions.k8s.io",
                    "v1",
                    "CustomResourceDefinition",
                ),
                "customresourcedefinitions",
            ),
        );
        let deadline = tokio::time::Instant::now() + timeout;
        for d in crds {
            if d.gvk.kind != "CustomResourceDefinition" {
                continue;
            }
            loop {
                let obj = api
                    .get_opt(&d.oref.name)
                    .await
                    .map_err(|source| SyncError::Api {
                        context: format!("waiting for {}", d.oref),
                        source,
                    })?;
                let established = obj
                    .map(|o| serde_json::to_value(o).unwrap_or_default())
                    .and_then(|v| assess(&v))
                    .is_some_and(|h| h.status == HealthStatus::Healthy);
                if established {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(SyncError::Invalid {
                        origin: d.origin.clone(),
                        message: format!(
                            "{} was not Established within {}s",
                            d.oref,
                            timeout.as_secs()
                        ),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Delete one pruned object. Returns the result and whether the entry stays
    /// in the inventory.
    async fn prune_one(&self, entry: &InventoryEntry, dry_run: bool) -> (ObjectResult, bool) {
        let oref = entry.object_ref();
        let Some(resolved) = entry.gvk_resolved(self.cluster).await else {
            // The kind is gone (its CRD was deleted): so is the object.
            return (
                result_for(entry, Action::Pruned, "kind no longer served"),
                false,
            );
        };
        let api = self.cluster.api(&resolved, oref.namespace.as_deref());
        let live = match api.get_opt(&oref.name).await {
            Ok(Some(o)) => serde_json::to_value(o).unwrap_or_default(),
            Ok(None) => return (result_for(entry, Action::Pruned, "already gone"), false),
            Err(e) => return (result_for(entry, Action::Failed, &api_error_text(&e)), true),
        };
        if !owned_by(&live, &tracking_id(&self.app_key, &oref)) {
            return (
                result_for(
                    entry,
                    Action::Skipped,
                    "not created by this Application; left alone",
                ),
                false,
            );
        }
        if ObjectOptions::of(&live).no_prune {
            return (result_for(entry, Action::Skipped, "Prune=false"), true);
        }
        let mut params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        if dry_run {
            params = params.dry_run();
        }
        match api.delete(&oref.name, &params).await {
            Ok(_) => (
                result_for(
                    entry,
                    Action::Pruned,
                    if dry_run { "would prune" } else { "" },
                ),
                dry_run,
            ),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                (result_for(entry, Action::Pruned, "already gone"), false)
            }
            Err(e) => (result_for(entry, Action::Failed, &api_error_text(&e)), true),
        }
    }
}

/// What every apply in a step shares.
struct ApplyCtx<'e, 'a> {
    engine: &'e Engine<'a>,
    live: &'e BTreeMap<ObjectRef, LiveMeta>,
    inventory: &'e BTreeMap<ObjectRef, &'e InventoryEntry>,
    dry_run: bool,
    planned_namespaces: &'e BTreeSet<String>,
    wait_timeout: Duration,
}

impl ApplyCtx<'_, '_> {
    async fn apply(&self, d: &Desired) -> (ObjectResult, Option<InventoryEntry>) {
        let live = self.live.get(&d.oref);
        let result = |action: Action, message: &str| ObjectResult {
            object: d.oref.clone(),
            version: d.gvk.version.clone(),
            action,
            message: message.to_string(),
        };
        let hash = self.engine.applied_hash(d);
        if let (Some(l), Some(e)) = (live, self.inventory.get(&d.oref))
            && unchanged_since_apply(e, l, &hash)
        {
            let mut e = (*e).clone();
            e.resource_version = l.resource_version.clone();
            return (result(Action::Unchanged, ""), Some(e));
        }
        if let Some(owner) = live.and_then(|l| l.tracking.as_deref())
            && !owner.starts_with(&format!("{}:", engine_key(self.engine)))
        {
            let other = owner.split(':').next().unwrap_or(owner);
            return (
                result(
                    Action::Failed,
                    &format!("already managed by Application {other}; remove it there first"),
                ),
                None,
            );
        }
        let Some(resolved) = &d.resolved else {
            // Only in a dry run: the CRD would be created first.
            return (
                result(Action::Created, "would create (its CRD is created first)"),
                None,
            );
        };
        let engine = self.engine;
        let api = engine.cluster.api(resolved, d.oref.namespace.as_deref());
        let rules = engine.ignore_rules(d);
        let mut body = d.obj.clone();
        let mut live_full = None;
        if !rules.is_empty() && live.is_some() {
            live_full = engine.get_live(&d.resolved, &d.oref).await.ok().flatten();
            rules.strip(&mut body, live_full.as_ref());
        }
        let mut params = PatchParams::apply(FIELD_MANAGER).force();
        if self.dry_run {
            params = params.dry_run();
        }
        let outcome = api.patch(&d.oref.name, &params, &Patch::Apply(&body)).await;
        let applied = match outcome {
            Ok(o) => o,
            Err(e) if is_immutable(&e) && d.options.replace && !self.dry_run => {
                match self.replace(&api, d, &body).await {
                    Ok(o) => {
                        let rv = o.metadata.resource_version.clone().unwrap_or_default();
                        return (
                            result(Action::Configured, "replaced (Replace=true)"),
                            Some(entry_with_fields(
                                d,
                                hash,
                                rv,
                                apply_state(&o.metadata).0.unwrap_or_default(),
                            )),
                        );
                    }
                    Err(e) => return (result(Action::Failed, &api_error_text(&e)), None),
                }
            }
            Err(e) if is_immutable(&e) => {
                let msg = format!(
                    "{}; the field cannot change in place: annotate the object with \
                     argocd.argoproj.io/sync-options: Replace=true to recreate it",
                    api_error_text(&e)
                );
                return (result(Action::Failed, &msg), None);
            }
            Err(e) if self.dry_run && is_missing_namespace(&e, d, self.planned_namespaces) => {
                return (result(Action::Created, "would create"), None);
            }
            Err(e) => return (result(Action::Failed, &api_error_text(&e)), None),
        };
        let rv = applied
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let action = match live {
            None => Action::Created,
            Some(l) if self.dry_run => {
                let live_obj = match live_full {
                    Some(v) => Some(v),
                    None => engine.get_live(&d.resolved, &d.oref).await.ok().flatten(),
                };
                let applied_v = serde_json::to_value(&applied).unwrap_or_default();
                match live_obj {
                    Some(lv) if !differs(&applied_v, &lv, &rules) => Action::Unchanged,
                    _ => {
                        let _ = l;
                        Action::Configured
                    }
                }
            }
            Some(l) if l.resource_version == rv => Action::Unchanged,
            Some(_) => Action::Configured,
        };
        let message = if self.dry_run && action != Action::Unchanged {
            format!("would be {action}")
        } else {
            String::new()
        };
        let fields = apply_state(&applied.metadata).0.unwrap_or_default();
        let entry = (!self.dry_run).then(|| entry_with_fields(d, hash, rv, fields));
        (result(action, &message), entry)
    }

    async fn replace(
        &self,
        api: &Api<DynamicObject>,
        d: &Desired,
        body: &Value,
    ) -> Result<DynamicObject, kube::Error> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        };
        match api.delete(&d.oref.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
        let deadline = tokio::time::Instant::now() + self.wait_timeout;
        while api.get_opt(&d.oref.name).await?.is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        api.patch(
            &d.oref.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
    }
}

/// One entry per (group, version, kind, namespace) among resolved objects: what
/// one LIST reads.
type KindInNamespace = (String, String, String, Option<String>);

fn by_kind_and_namespace(objects: &[&Desired]) -> BTreeMap<KindInNamespace, Resolved> {
    let mut groups = BTreeMap::new();
    for d in objects {
        if let Some(r) = &d.resolved {
            groups
                .entry((
                    d.gvk.group.clone(),
                    d.gvk.version.clone(),
                    d.gvk.kind.clone(),
                    d.oref.namespace.clone(),
                ))
                .or_insert_with(|| r.clone());
        }
    }
    groups
}

fn engine_key<'x>(e: &'x Engine<'_>) -> &'x str {
    &e.app_key
}

fn entry_for(d: &Desired, hash: String, rv: String) -> InventoryEntry {
    entry_with_fields(d, hash, rv, String::new())
}

fn entry_with_fields(d: &Desired, hash: String, rv: String, fields_hash: String) -> InventoryEntry {
    InventoryEntry {
        group: d.gvk.group.clone(),
        version: d.gvk.version.clone(),
        kind: d.gvk.kind.clone(),
        namespace: d.oref.namespace.clone(),
        name: d.oref.name.clone(),
        applied_hash: hash,
        resource_version: rv,
        fields_hash,
        wave: d.step.wave,
    }
}

fn result_for(e: &InventoryEntry, action: Action, message: &str) -> ObjectResult {
    ObjectResult {
        object: e.object_ref(),
        version: e.version.clone(),
        action,
        message: message.to_string(),
    }
}

fn prune_step(e: &InventoryEntry) -> Step {
    Step {
        wave: e.wave,
        stage: Stage::of(&e.group, &e.kind, e.namespace.is_some()),
    }
}

/// Whether a live object carries exactly this tracking id.
fn owned_by(live: &Value, id: &str) -> bool {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(TRACKING_ANNOTATION))
        .and_then(Value::as_str)
        == Some(id)
}

fn is_immutable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 422 && s.message.contains("immutable"),
        _ => false,
    }
}

fn is_missing_namespace(e: &kube::Error, d: &Desired, planned: &BTreeSet<String>) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 404
                && d.oref
                    .namespace
                    .as_ref()
                    .is_some_and(|ns| planned.contains(ns) && s.message.contains("namespaces"))
        }
        _ => false,
    }
}

/// The API server's message, without the noise.
pub fn api_error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            if s.message.is_empty() {
                format!("{} ({})", s.reason, s.code)
            } else {
                s.message.clone()
            }
        }
        other => other.to_string(),
    }
}

trait ResolveEntry {
    async fn gvk_resolved(&self, cluster: &Cluster) -> Option<Resolved>;
}

impl ResolveEntry for InventoryEntry {
    async fn gvk_resolved(&self, cluster: &Cluster) -> Option<Resolved> {
        cluster.resolve(&self.gvk()).await
    }
}

/// A shared handle to the engine's progress for concurrent use.
pub type SharedProgress = Arc<dyn Progress>;
