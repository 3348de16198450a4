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
//!
//! Health is assessed by custom Lua scripts first (plumb-health), then by
//! the built-in rules of `plumb_model::health`.
//!
//! The steps live in their own rooms: [`sync`](self) (the sequence above and
//! prune), `apply` (one object's server-side apply, replace), `compare` (diff
//! and status by server-side dry run) and `live` (what the cluster holds, read
//! one LIST per kind and namespace).

mod apply;
mod compare;
mod live;
mod sync;

use std::collections::BTreeMap;

use plumb_health::HealthScripts;
use plumb_model::application::Application;
use plumb_model::diff::IgnoreRules;
use plumb_model::inventory::TRACKING_ANNOTATION;
use plumb_model::sync::{Action, ObjectResult, Stage, Step};
use plumb_model::{Inventory, InventoryEntry, Manifest, ObjectRef};
use serde_json::Value;

use crate::cluster::{Cluster, Resolved};
use crate::error::SyncError;
use crate::inventory;
use crate::prepare::{Desired, prepare};

/// The engine for one Application on one cluster.
pub struct Engine<'a> {
    cluster: &'a Cluster,
    app: &'a Application,
    app_key: String,
    health: HealthScripts,
}

impl<'a> Engine<'a> {
    /// An engine for `app` against `cluster`, assessing health with
    /// plumb's built-in rules only.
    pub fn new(cluster: &'a Cluster, app: &'a Application) -> Engine<'a> {
        Engine {
            cluster,
            app,
            app_key: app.key(),
            health: HealthScripts::default(),
        }
    }

    /// Assess health with `scripts` first: a custom script for an object's
    /// group and kind overrides the built-in rule, as in Argo CD.
    pub fn with_health(mut self, scripts: HealthScripts) -> Engine<'a> {
        self.health = scripts;
        self
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

trait ResolveEntry {
    async fn gvk_resolved(&self, cluster: &Cluster) -> Option<Resolved>;
}

impl ResolveEntry for InventoryEntry {
    async fn gvk_resolved(&self, cluster: &Cluster) -> Option<Resolved> {
        cluster.resolve(&self.gvk()).await
    }
}
