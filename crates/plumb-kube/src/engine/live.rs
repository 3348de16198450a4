//! What the cluster holds of an Application, read one LIST per kind and
//! namespace, and what `managedFields` say about plumb's last apply.
//!
//! Most of a warm sync is deciding that an object is unchanged without asking
//! the server to dry-run it: its manifest hash and resourceVersion equal what
//! the inventory recorded, or plumb's field set is unchanged and nobody but
//! plumb wrote anything but status since.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};
use kube::api::ListParams;
use plumb_model::inventory::{FIELD_MANAGER, TRACKING_ANNOTATION};
use plumb_model::{InventoryEntry, ObjectRef};
use serde_json::Value;

use super::{Engine, by_kind_and_namespace};
use crate::error::SyncError;
use crate::prepare::Desired;

/// The live metadata plumb needs to decide what to do with an object.
#[derive(Debug, Clone)]
pub(crate) struct LiveMeta {
    pub(crate) resource_version: String,
    pub(crate) tracking: Option<String>,
    /// Hash of plumb's applied field set, when plumb has applied it.
    pub(crate) fields_hash: Option<String>,
    /// Nobody but plumb has written anything except status since plumb's
    /// last apply (by `managedFields` times, strictly earlier).
    pub(crate) untouched: bool,
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
pub(crate) fn unchanged_since_apply(e: &InventoryEntry, live: &LiveMeta, hash: &str) -> bool {
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

impl Engine<'_> {
    /// Metadata of the live objects a batch names, one LIST per kind and namespace.
    pub(crate) async fn live_meta(
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

    /// Live objects of this Application, one labelled LIST per kind and namespace.
    pub(crate) async fn live_objects(
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
}
