//! One object's server-side apply: skip what is provably unchanged, refuse
//! what another Application owns, recreate on `Replace=true` when a field is
//! immutable, and record what the inventory needs to know afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use plumb_model::diff::differs;
use plumb_model::inventory::FIELD_MANAGER;
use plumb_model::sync::{Action, ObjectResult};
use plumb_model::{InventoryEntry, ObjectRef};
use serde_json::Value;

use super::live::{LiveMeta, apply_state, unchanged_since_apply};
use super::{Engine, engine_key, entry_with_fields};
use crate::error::api_error_text;
use crate::prepare::Desired;

/// What every apply in a step shares.
pub(crate) struct ApplyCtx<'e, 'a> {
    pub(crate) engine: &'e Engine<'a>,
    pub(crate) live: &'e BTreeMap<ObjectRef, LiveMeta>,
    pub(crate) inventory: &'e BTreeMap<ObjectRef, &'e InventoryEntry>,
    pub(crate) dry_run: bool,
    pub(crate) planned_namespaces: &'e BTreeSet<String>,
    pub(crate) wait_timeout: Duration,
}

impl ApplyCtx<'_, '_> {
    pub(crate) async fn apply(&self, d: &Desired) -> (ObjectResult, Option<InventoryEntry>) {
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
