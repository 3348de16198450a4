//! Diff and status: what applying would change, asked of the server with a
//! server-side-apply dry run and compared with the live object after
//! normalisation, so an empty diff never reads OutOfSync.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};
use kube::api::{Patch, PatchParams};
use plumb_model::diff::{comparable_pair, differs};
use plumb_model::health::Health;
use plumb_model::inventory::{FIELD_MANAGER, tracking_id};
use plumb_model::{
    HealthStatus, Inventory, InventoryEntry, Manifest, ObjectRef, Revision, SyncStatus,
};

use super::live::{LiveMeta, unchanged_since_apply};
use super::{Engine, ResolveEntry, owned_by};
use crate::error::{SyncError, api_error_text};
use crate::prepare::Desired;
use crate::report::{DiffReport, ObjectDiff, ObjectStatus, ResourceCounts, StatusReport};

impl Engine<'_> {
    /// Compare the rendered manifests with the cluster.
    pub async fn diff(
        &self,
        manifests: &[Manifest],
        revision: &Revision,
        all: bool,
    ) -> Result<DiffReport, SyncError> {
        Ok(self.diff_with(manifests, revision, all).await?.0)
    }

    /// The diff, plus the prepared objects and the inventory it used.
    async fn diff_with(
        &self,
        manifests: &[Manifest],
        revision: &Revision,
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
                revision: revision.clone(),
                objects,
            },
            desired,
            inventory,
        ))
    }

    /// Sync and health status of the rendered manifests against the cluster.
    pub async fn status(
        &self,
        manifests: &[Manifest],
        target_revision: &Revision,
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
                    let health = match &live {
                        Some(v) => self.health.assess(v).await,
                        None => None,
                    };
                    Some(health.unwrap_or(Health {
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
            target_revision: target_revision.clone(),
            resources: counts,
            objects,
        })
    }

    pub(crate) async fn diff_one(
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
}
