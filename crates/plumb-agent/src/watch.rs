//! Watching managed objects, and nothing else.
//!
//! One metadata-only watch per (cluster, kind, namespace) that some
//! Application manages, selected by plumb's label, so the agent never caches
//! an object it does not manage and never holds full objects in memory. An
//! event maps to its Application through the tracking annotation. Changes
//! written by plumb itself, or only to `status`, are told apart by the
//! object's newest `managedFields` entries: the former are ignored, the latter
//! refresh health without counting as drift.

use std::collections::HashMap;

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use plumb_kube::Cluster;
use plumb_model::inventory::{APP_LABEL, FIELD_MANAGER, TRACKING_ANNOTATION};
use plumb_model::{Gvk, ObjectRef};

/// Told which Application a changed object belongs to, and how it changed.
pub(crate) type OnChange = std::sync::Arc<dyn Fn(&str, Change) + Send + Sync>;

/// The running watches.
#[derive(Default)]
pub(crate) struct Watches {
    map: std::sync::Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

/// What a watch event means for the Application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// plumb wrote it: nothing to do.
    Own,
    /// Only status moved: refresh health.
    StatusOnly,
    /// Someone else changed or deleted it: drift.
    Foreign,
}

/// Classify an event by the object's newest managedFields entries.
pub(crate) fn classify(meta: &kube::core::ObjectMeta, deleted: bool) -> Change {
    if deleted {
        return Change::Foreign;
    }
    let Some(entries) = meta.managed_fields.as_ref().filter(|e| !e.is_empty()) else {
        return Change::Foreign;
    };
    let own = |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.manager.as_deref() == Some(FIELD_MANAGER) && e.operation.as_deref() == Some("Apply")
    };
    let status = |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.subresource.as_deref() == Some("status")
    };
    // Writes through some subresources (`kubectl scale` through `scale`)
    // leave an entry without a time, so they can't be ordered: someone else
    // owns fields, and that is drift until plumb's apply takes them back
    // (which removes the entry).
    if entries
        .iter()
        .any(|e| e.time.is_none() && !own(&e) && !status(&e))
    {
        return Change::Foreign;
    }
    let Some(newest) = entries
        .iter()
        .filter_map(|e| e.time.as_ref())
        .map(|t| t.0)
        .max()
    else {
        return Change::Foreign;
    };
    let latest: Vec<_> = entries
        .iter()
        .filter(|e| e.time.as_ref().map(|t| t.0) == Some(newest))
        .collect();
    if latest.iter().all(|e| own(e) || status(e)) {
        if latest.iter().any(own) {
            Change::Own
        } else {
            Change::StatusOnly
        }
    } else {
        Change::Foreign
    }
}

impl Watches {
    /// Make sure every (kind, namespace) of `objects` is watched on `cluster`.
    pub(crate) async fn ensure(
        &self,
        on_change: OnChange,
        cluster: &Cluster,
        objects: &[(ObjectRef, String)],
    ) {
        let mut wanted: HashMap<String, (Gvk, Option<String>)> = HashMap::new();
        for (o, version) in objects {
            let gvk = Gvk {
                group: o.group.clone(),
                version: version.clone(),
                kind: o.kind.clone(),
            };
            let key = format!(
                "{}|{}|{}",
                cluster.server(),
                gvk,
                o.namespace.as_deref().unwrap_or("")
            );
            wanted.entry(key).or_insert((gvk, o.namespace.clone()));
        }
        for (key, (gvk, ns)) in wanted {
            {
                let map = match self.map.lock() {
                    Ok(m) => m,
                    Err(p) => p.into_inner(),
                };
                if map.contains_key(&key) {
                    continue;
                }
            }
            let Some(resolved) = cluster.resolve(&gvk).await else {
                continue;
            };
            let api: kube::Api<PartialObjectMeta<DynamicObject>> =
                match (resolved.namespaced, ns.as_deref()) {
                    (true, Some(n)) => {
                        kube::Api::namespaced_with(cluster.client().clone(), n, &resolved.resource)
                    }
                    _ => kube::Api::all_with(cluster.client().clone(), &resolved.resource),
                };
            let on_change = on_change.clone();
            let label = key.clone();
            let handle = tokio::spawn(async move { run(api, on_change, label).await });
            let mut map = match self.map.lock() {
                Ok(m) => m,
                Err(p) => p.into_inner(),
            };
            map.insert(key, handle.abort_handle());
        }
    }

    /// Stop every watch.
    pub(crate) fn stop_all(&self) {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        for (_, h) in map.drain() {
            h.abort();
        }
    }
}

async fn run(api: kube::Api<PartialObjectMeta<DynamicObject>>, on_change: OnChange, label: String) {
    tracing::debug!(watch = %label, "watching");
    let config = watcher::Config::default().labels(APP_LABEL);
    let stream = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            // Objects seen by the initial (or a re-)list count too: a change
            // made before the watch started is still a change.
            Ok(Event::Apply(o)) | Ok(Event::InitApply(o)) => handle(&on_change, &o, false),
            Ok(Event::Delete(o)) => handle(&on_change, &o, true),
            Ok(_) => {}
            Err(e) => tracing::debug!(watch = %label, error = %e, "watch interrupted; retrying"),
        }
    }
}

fn handle(on_change: &OnChange, o: &PartialObjectMeta<DynamicObject>, deleted: bool) {
    let Some(app_key) = o
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TRACKING_ANNOTATION))
        .and_then(|t| t.split_once(':').map(|(k, _)| k.to_string()))
    else {
        return;
    };
    on_change(&app_key, classify(&o.metadata, deleted));
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    fn entry(manager: &str, op: &str, sub: Option<&str>, secs: i64) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            subresource: sub.map(str::to_string),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
            )),
            ..Default::default()
        }
    }

    fn meta(entries: Vec<ManagedFieldsEntry>) -> kube::core::ObjectMeta {
        kube::core::ObjectMeta {
            managed_fields: Some(entries),
            ..Default::default()
        }
    }

    #[test]
    fn changes_are_classified_by_the_newest_writers() {
        let m = meta(vec![
            entry("plumb", "Apply", None, 100),
            entry("kube-controller-manager", "Update", Some("status"), 90),
        ]);
        assert_eq!(classify(&m, false), Change::Own);
        let m = meta(vec![
            entry("plumb", "Apply", None, 100),
            entry("kube-controller-manager", "Update", Some("status"), 110),
        ]);
        assert_eq!(classify(&m, false), Change::StatusOnly);
        let m = meta(vec![
            entry("plumb", "Apply", None, 100),
            entry("kubectl-edit", "Update", None, 110),
        ]);
        assert_eq!(classify(&m, false), Change::Foreign);
        // A tie with someone else's write counts as theirs.
        let m = meta(vec![
            entry("plumb", "Apply", None, 100),
            entry("kubectl-edit", "Update", None, 100),
        ]);
        assert_eq!(classify(&m, false), Change::Foreign);
        assert_eq!(classify(&meta(vec![]), false), Change::Foreign);
        // `kubectl scale` leaves an entry without a time: drift, even when
        // a later status write is the newest entry with one.
        let mut scaled = entry("kubectl", "Update", Some("scale"), 0);
        scaled.time = None;
        let m = meta(vec![
            entry("plumb", "Apply", None, 100),
            scaled,
            entry("kube-controller-manager", "Update", Some("status"), 110),
        ]);
        assert_eq!(classify(&m, false), Change::Foreign);
        assert_eq!(classify(&m, true), Change::Foreign);
    }
}
