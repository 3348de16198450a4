//! From rendered manifests to objects ready to apply.
//!
//! Each manifest is resolved against discovery (or against a CRD in the same
//! set, for custom resources whose CRD is created by this very sync), given the
//! destination namespace when it is namespaced and names none, stripped of a
//! namespace when it is cluster-scoped, and stamped with the tracking
//! annotation and label. Its hash is what a later sync compares to know it is
//! unchanged without asking the server.

use std::collections::BTreeMap;

use plumb_model::inventory::{APP_LABEL, TRACKING_ANNOTATION, tracking_id};
use plumb_model::sync::{ObjectOptions, Stage, Step, sync_wave};
use plumb_model::{Gvk, ObjectRef};
use plumb_model::{Manifest, Origin};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cluster::{Cluster, Resolved};
use crate::error::SyncError;

/// An object ready to apply.
#[derive(Debug, Clone)]
pub(crate) struct Desired {
    pub obj: Value,
    pub gvk: Gvk,
    pub oref: ObjectRef,
    /// `None` until its CRD exists.
    pub resolved: Option<Resolved>,
    pub step: Step,
    pub options: ObjectOptions,
    pub origin: Origin,
    pub hash: String,
}

/// A CRD in the desired set, as far as resolution needs it.
struct PlannedKind {
    namespaced: bool,
    versions: Vec<String>,
}

fn planned_kinds(manifests: &[Manifest]) -> BTreeMap<(String, String), PlannedKind> {
    let mut out = BTreeMap::new();
    for m in manifests {
        if m.kind() != "CustomResourceDefinition"
            || !m.api_version().starts_with("apiextensions.k8s.io/")
        {
            continue;
        }
        let spec = &m.object["spec"];
        let group = spec["group"].as_str().unwrap_or("").to_string();
        let kind = spec["names"]["kind"].as_str().unwrap_or("").to_string();
        let versions = spec["versions"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter_map(|x| x["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            (group, kind),
            PlannedKind {
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                versions,
            },
        );
    }
    out
}

/// Prepare every manifest of an Application.
pub(crate) async fn prepare(
    cluster: &Cluster,
    app_key: &str,
    app_name: &str,
    default_namespace: Option<&str>,
    manifests: &[Manifest],
) -> Result<Vec<Desired>, SyncError> {
    let planned = planned_kinds(manifests);
    let mut out = Vec::with_capacity(manifests.len());
    let mut cache: BTreeMap<Gvk, Option<Resolved>> = BTreeMap::new();
    for m in manifests {
        let gvk = Gvk::from_api_version(m.api_version(), m.kind());
        let resolved = match cache.get(&gvk) {
            Some(r) => r.clone(),
            None => {
                let r = cluster.resolve(&gvk).await;
                cache.insert(gvk.clone(), r.clone());
                r
            }
        };
        let namespaced = match (
            &resolved,
            planned.get(&(gvk.group.clone(), gvk.kind.clone())),
        ) {
            (Some(r), _) => r.namespaced,
            (None, Some(p)) if p.versions.contains(&gvk.version) => p.namespaced,
            _ => {
                return Err(SyncError::UnknownKind {
                    origin: m.origin.clone(),
                    api_version: m.api_version().to_string(),
                    kind: m.kind().to_string(),
                });
            }
        };
        let mut obj = m.object.clone();
        let namespace = if namespaced {
            let ns = m
                .namespace()
                .or(default_namespace)
                .ok_or_else(|| SyncError::NoNamespace {
                    origin: m.origin.clone(),
                    object: format!("{}/{}", m.kind(), m.name()),
                })?;
            obj["metadata"]["namespace"] = Value::from(ns);
            Some(ns.to_string())
        } else {
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("namespace");
            }
            None
        };
        let oref = ObjectRef::new(&gvk, namespace.as_deref(), m.name());
        let meta = obj["metadata"]
            .as_object_mut()
            .ok_or_else(|| SyncError::Invalid {
                origin: m.origin.clone(),
                message: "metadata must be a mapping".into(),
            })?;
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if !annotations.is_object() {
            *annotations = Value::Object(Default::default());
        }
        annotations[TRACKING_ANNOTATION] = Value::from(tracking_id(app_key, &oref));
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if !labels.is_object() {
            *labels = Value::Object(Default::default());
        }
        labels[APP_LABEL] = Value::from(label_value(app_name));
        // Fields the server owns must not be applied.
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "managedFields",
                "generation",
                "selfLink",
            ] {
                meta.remove(k);
            }
        }
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
        let wave = sync_wave(&obj).map_err(|message| SyncError::Invalid {
            origin: m.origin.clone(),
            message,
        })?;
        let step = Step {
            wave,
            stage: Stage::of(&gvk.group, &gvk.kind, namespaced),
        };
        let options = ObjectOptions::of(&obj);
        let hash = hash_of(&obj);
        out.push(Desired {
            obj,
            gvk,
            oref,
            resolved,
            step,
            options,
            origin: m.origin.clone(),
            hash,
        });
    }
    Ok(out)
}

/// A label value: at most 63 characters of the allowed set.
pub(crate) fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Hash of an object's canonical JSON (serde_json maps are sorted).
pub(crate) fn hash_of(obj: &Value) -> String {
    let digest = Sha256::digest(obj.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
