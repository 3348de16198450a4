//! The sync sequence and prune (see the engine's own notes for the order and
//! why a crash anywhere in it loses nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PropagationPolicy};
use plumb_model::health::assess;
use plumb_model::inventory::{FIELD_MANAGER, tracking_id};
use plumb_model::sync::{
    Action, ActionCounts, ObjectOptions, ObjectResult, Stage, Step, prune_allowed,
};
use plumb_model::{HealthStatus, Inventory, InventoryEntry, Manifest, ObjectRef, Revision};

use super::apply::ApplyCtx;
use super::{Engine, ResolveEntry, entry_for, owned_by, prune_step, result_for};
use crate::error::{SyncError, api_error_text};
use crate::inventory;
use crate::prepare::Desired;
use crate::report::{Progress, SyncOptions, SyncReport};

impl Engine<'_> {
    /// Sync the rendered manifests of `revision`.
    pub async fn sync(
        &self,
        manifests: &[Manifest],
        revision: &Revision,
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
        let nothing_new = old.revision.as_ref() == Some(revision)
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
            pending.pending_revision = Some(revision.clone());
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

        for (index, &step) in steps.iter().enumerate() {
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
            // A later wave starts when everything of this one is Healthy
            // (child Applications of an app of apps included).
            let wave_ends = steps
                .get(index + 1)
                .is_some_and(|next| next.wave > step.wave);
            if wave_ends && !opts.dry_run {
                let wave: Vec<&Desired> = desired
                    .iter()
                    .filter(|d| d.step.wave == step.wave)
                    .collect();
                if let Some(r) = self.wait_wave_healthy(&wave, opts.wait_timeout).await? {
                    progress.object(&r);
                    results.push(r);
                    failed = true;
                    break;
                }
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
                next.pending_revision = Some(revision.clone());
            } else {
                next.revision = Some(revision.clone());
            }
            inventory::save(self.cluster.client(), &next).await?;
        }

        let counts = ActionCounts::of(&results);
        Ok(SyncReport {
            application: self.app_key.clone(),
            revision: revision.clone(),
            dry_run: opts.dry_run,
            succeeded: !failed,
            results,
            counts,
        })
    }

    pub(crate) async fn ensure_namespace(&self, ns: &str, dry_run: bool) -> Result<(), SyncError> {
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

    pub(crate) async fn wait_established(
        &self,
        crds: &[&Desired],
        timeout: Duration,
    ) -> Result<(), SyncError> {
        let api = self.cluster.crds();
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

    /// Wait until every object of a wave that has a notion of health is
    /// Healthy. `Some(result)` names the object that went Degraded or did not
    /// become Healthy within `timeout`.
    pub(crate) async fn wait_wave_healthy(
        &self,
        wave: &[&Desired],
        timeout: Duration,
    ) -> Result<Option<ObjectResult>, SyncError> {
        let deadline = tokio::time::Instant::now() + timeout;
        for d in wave {
            loop {
                let live = self.get_live(&d.resolved, &d.oref).await?;
                let health = live.as_ref().and_then(assess);
                let failure = |message: String| ObjectResult {
                    object: d.oref.clone(),
                    version: d.gvk.version.clone(),
                    action: Action::Failed,
                    message,
                };
                match health {
                    None => break,
                    Some(h) if h.status == HealthStatus::Healthy => break,
                    Some(h) if h.status == HealthStatus::Degraded => {
                        return Ok(Some(failure(format!(
                            "Degraded at the end of sync wave {}: {}; later waves were not applied",
                            d.step.wave, h.message
                        ))));
                    }
                    Some(h) => {
                        if tokio::time::Instant::now() > deadline {
                            return Ok(Some(failure(format!(
                                "not Healthy {}s after sync wave {} ({}: {}); later waves were not applied",
                                timeout.as_secs(),
                                d.step.wave,
                                h.status,
                                h.message
                            ))));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(None)
    }

    /// Delete one pruned object. Returns the result and whether the entry stays
    /// in the inventory.
    pub(crate) async fn prune_one(
        &self,
        entry: &InventoryEntry,
        dry_run: bool,
    ) -> (ObjectResult, bool) {
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
