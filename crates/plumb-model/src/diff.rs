//! Comparing desired and live objects.
//!
//! plumb never compares a manifest from Git with a live object directly: the
//! server fills in defaults, normalises quantities and adds metadata, so such a
//! comparison would always differ. Instead the desired object is sent through a
//! server-side-apply dry run, and the *result* is compared with the live object.
//! Both come from the same server, so they differ only where applying would
//! really change something, after the fields that change on every write are
//! dropped ([`normalize`]) and the fields the Application says to ignore are
//! removed from both sides ([`IgnoreRules`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::application::IgnoreDifferences;

/// Metadata fields that change on every write and never count as drift.
const VOLATILE_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
];

/// Annotations written by tools, not by users.
const VOLATILE_ANNOTATIONS: &[&str] = &["kubectl.kubernetes.io/last-applied-configuration"];

/// Drop the fields that change on every write: `status`, and
/// `metadata.{managedFields, resourceVersion, uid, creationTimestamp,
/// generation, selfLink}`.
pub fn normalize(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in VOLATILE_METADATA {
                meta.remove(*k);
            }
            if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                for k in VOLATILE_ANNOTATIONS {
                    ann.remove(*k);
                }
                if ann.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    out
}

/// Remove the value at an RFC 6901 JSON pointer; a missing path is no error.
pub fn remove_pointer(obj: &mut Value, pointer: &str) {
    if pointer.is_empty() || pointer == "/" {
        return;
    }
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        Some(obj)
    } else {
        obj.pointer_mut(parent)
    };
    match target {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// One step of a path through an object, as server-side apply's field sets
/// (`fieldsV1`) name them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PathElement {
    /// A map field (`f:name`).
    Field(String),
    /// A list element identified by its key fields (`k:{"name":"web"}`).
    Key(Map<String, Value>),
    /// A set element identified by its value (`v:"a"`).
    Value(Value),
    /// A list element by position (`i:0`).
    Index(usize),
}

/// A path from an object's root to one field.
pub type FieldPath = Vec<PathElement>;

/// The leaf fields of a `fieldsV1` set, as paths.
pub fn field_set_paths(fields_v1: &Value) -> Vec<FieldPath> {
    let mut out = Vec::new();
    walk_field_set(fields_v1, &mut Vec::new(), &mut out);
    out
}

fn walk_field_set(node: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
    let Some(map) = node.as_object() else {
        return;
    };
    let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return;
    }
    for (k, v) in children {
        let Some(el) = parse_element(k) else {
            continue;
        };
        prefix.push(el);
        walk_field_set(v, prefix, out);
        prefix.pop();
    }
}

fn parse_element(key: &str) -> Option<PathElement> {
    let (tag, rest) = key.split_once(':')?;
    match tag {
        "f" => Some(PathElement::Field(rest.to_string())),
        "k" => serde_json::from_str::<Map<String, Value>>(rest)
            .ok()
            .map(PathElement::Key),
        "v" => serde_json::from_str::<Value>(rest)
            .ok()
            .map(PathElement::Value),
        "i" => rest.parse().ok().map(PathElement::Index),
        _ => None,
    }
}

/// Remove the field at `path` from `obj`; a missing path is no error.
pub fn remove_field_path(obj: &mut Value, path: &[PathElement]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for el in parents {
        let Some(next) = step_mut(cur, el) else {
            return;
        };
        cur = next;
    }
    match (last, cur) {
        (PathElement::Field(name), Value::Object(m)) => {
            m.remove(name);
        }
        (PathElement::Key(keys), Value::Array(a)) => a.retain(|item| !key_matches(item, keys)),
        (PathElement::Value(v), Value::Array(a)) => a.retain(|item| item != v),
        (PathElement::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

fn key_matches(item: &Value, keys: &Map<String, Value>) -> bool {
    keys.iter().all(|(k, v)| item.get(k) == Some(v))
}

fn step_mut<'a>(cur: &'a mut Value, el: &PathElement) -> Option<&'a mut Value> {
    match (el, cur) {
        (PathElement::Field(name), Value::Object(m)) => m.get_mut(name),
        (PathElement::Key(keys), Value::Array(a)) => a.iter_mut().find(|i| key_matches(i, keys)),
        (PathElement::Value(v), Value::Array(a)) => a.iter_mut().find(|i| *i == v),
        (PathElement::Index(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    }
}

/// The leaf fields that any of `managers` owns in a live object.
pub fn fields_owned_by(live: &Value, managers: &[String]) -> Vec<FieldPath> {
    let Some(entries) = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| {
            e.get("manager")
                .and_then(Value::as_str)
                .is_some_and(|m| managers.iter().any(|want| want == m))
        })
        .filter_map(|e| e.get("fieldsV1"))
        .flat_map(field_set_paths)
        .collect()
}

/// The `ignoreDifferences` rules of an Application, applied to one object.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules<'a> {
    rules: Vec<&'a IgnoreDifferences>,
}

impl<'a> IgnoreRules<'a> {
    /// The rules among `all` that match the object.
    pub fn for_object(
        all: &'a [IgnoreDifferences],
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> IgnoreRules<'a> {
        IgnoreRules {
            rules: all
                .iter()
                .filter(|r| r.matches(group, kind, namespace, name))
                .collect(),
        }
    }

    /// Whether no rule applies.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Remove ignored fields from `obj`. `live` supplies the field ownership
    /// that `managedFieldsManagers` rules need.
    pub fn strip(&self, obj: &mut Value, live: Option<&Value>) {
        for r in &self.rules {
            for p in &r.json_pointers {
                remove_pointer(obj, p);
            }
            if let Some(live) = live
                && !r.managed_fields_managers.is_empty()
            {
                for path in fields_owned_by(live, &r.managed_fields_managers) {
                    remove_field_path(obj, &path);
                }
            }
        }
    }
}

/// Whether applying would change the live object: the dry-run result and the
/// live object, both normalised and stripped of ignored fields, differ.
pub fn differs(dry_run: &Value, live: &Value, ignore: &IgnoreRules<'_>) -> bool {
    let (a, b) = comparable_pair(dry_run, live, ignore);
    a != b
}

/// The two sides of a comparison as they are compared (and shown in a diff).
pub fn comparable_pair(desired: &Value, live: &Value, ignore: &IgnoreRules<'_>) -> (Value, Value) {
    let mut a = normalize(desired);
    let mut b = normalize(live);
    ignore.strip(&mut a, Some(live));
    ignore.strip(&mut b, Some(live));
    (a, b)
}

/// What a redacted Secret value reads as when both sides hold the same value.
pub const SECRET_SAME: &str = "(redacted)";
/// What the cluster's side of a Secret value that differs from Git reads as.
pub const SECRET_LIVE: &str = "(redacted: value in the cluster)";
/// What Git's side of a Secret value that differs from the cluster reads as.
pub const SECRET_GIT: &str = "(redacted: value in Git)";

/// Whether objects of this group and kind hold secret values.
pub fn is_secret(group: &str, kind: &str) -> bool {
    group.is_empty() && kind == "Secret"
}

/// Replace every value of a Secret's `data` and `stringData` on both sides
/// with a marker that says only whether the two sides agree, so a diff still
/// shows *which* keys differ and never *what* they hold. The two sides of a
/// differing value get different markers, so a unified diff of the redacted
/// objects still has a changed line for it.
pub fn redact_secret_pair(
    live: Option<&Value>,
    desired: Option<&Value>,
) -> (Option<Value>, Option<Value>) {
    let mut l = live.cloned();
    let mut d = desired.cloned();
    for field in ["data", "stringData"] {
        let live_values = live.and_then(|v| v.get(field)).cloned();
        let desired_values = desired.and_then(|v| v.get(field)).cloned();
        if let Some(v) = l.as_mut().and_then(|v| v.get_mut(field)) {
            mask(v, desired_values.as_ref(), SECRET_LIVE);
        }
        if let Some(v) = d.as_mut().and_then(|v| v.get_mut(field)) {
            mask(v, live_values.as_ref(), SECRET_GIT);
        }
    }
    for side in [l.as_mut(), d.as_mut()].into_iter().flatten() {
        if let Some(a) = side
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            for k in VOLATILE_ANNOTATIONS {
                if let Some(v) = a.get_mut(*k) {
                    *v = Value::from(SECRET_SAME);
                }
            }
        }
    }
    (l, d)
}

fn mask(values: &mut Value, other: Option<&Value>, differs: &str) {
    match values.as_object_mut() {
        Some(map) => {
            for (k, v) in map.iter_mut() {
                let same = other.and_then(|o| o.get(k)) == Some(&*v);
                *v = Value::from(if same { SECRET_SAME } else { differs });
            }
        }
        None => *values = Value::from(SECRET_SAME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_never_survive_redaction() {
        let live = json!({"kind": "Secret", "data": {"a": "c2VjcmV0MQ==", "b": "c2FtZQ=="},
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"a\":\"c2VjcmV0MQ==\"}}"}}});
        let git = json!({"kind": "Secret", "data": {"a": "c2VjcmV0Mg==", "b": "c2FtZQ=="}, "stringData": {"c": "hunter2"}});
        let (l, d) = redact_secret_pair(Some(&live), Some(&git));
        let text = format!("{l:?}{d:?}");
        for secret in ["c2VjcmV0MQ==", "c2VjcmV0Mg==", "c2FtZQ==", "hunter2"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let (l, d) = (l.unwrap(), d.unwrap());
        assert_eq!(l["data"]["a"], SECRET_LIVE);
        assert_eq!(d["data"]["a"], SECRET_GIT);
        assert_eq!(l["data"]["b"], SECRET_SAME);
        assert_eq!(d["stringData"]["c"], SECRET_GIT);
        assert!(is_secret("", "Secret") && !is_secret("x.io", "Secret"));
    }

    #[test]
    fn normalize_drops_volatile_fields() {
        let live = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "a", "namespace": "n", "uid": "u", "resourceVersion": "9",
                "creationTimestamp": "t", "generation": 3, "managedFields": [],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
            },
            "data": {"k": "v"},
            "status": {"x": 1}
        });
        assert_eq!(
            normalize(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn pointers_are_removed() {
        let mut v = json!({"spec": {"replicas": 3, "a/b": 1, "list": [1, 2, 3]}});
        remove_pointer(&mut v, "/spec/replicas");
        remove_pointer(&mut v, "/spec/a~1b");
        remove_pointer(&mut v, "/spec/list/1");
        remove_pointer(&mut v, "/spec/missing/deep");
        assert_eq!(v, json!({"spec": {"list": [1, 3]}}));
    }

    #[test]
    fn field_sets_become_paths() {
        let fs = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:image": {}}
                }}},
                "f:finalizers": {"v:\"x\"": {}}
            }
        });
        let paths = field_set_paths(&fs);
        assert_eq!(paths.len(), 4, "{paths:?}");
        assert!(paths.contains(&vec![
            PathElement::Field("spec".into()),
            PathElement::Field("replicas".into())
        ]));
        let mut obj = json!({
            "metadata": {"labels": {"app": "x", "keep": "y"}},
            "spec": {
                "replicas": 5,
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "a", "ports": []},
                    {"name": "side", "image": "b"}
                ]}},
                "finalizers": ["x", "y"]
            }
        });
        for p in &paths {
            remove_field_path(&mut obj, p);
        }
        assert_eq!(
            obj,
            json!({
                "metadata": {"labels": {"keep": "y"}},
                "spec": {
                    "template": {"spec": {"containers": [
                        {"name": "web", "ports": []},
                        {"name": "side", "image": "b"}
                    ]}},
                    "finalizers": ["y"]
                }
            })
        );
    }

    #[test]
    fn ignore_rules_strip_pointers_and_manager_fields() {
        let rules = vec![
            IgnoreDifferences {
                group: Some("apps".into()),
                kind: "Deployment".into(),
                json_pointers: vec!["/spec/replicas".into()],
                ..Default::default()
            },
            IgnoreDifferences {
                group: Some("apps".into()),
                kind: "Deployment".into(),
                managed_fields_managers: vec!["kube-hpa".into()],
                ..Default::default()
            },
        ];
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "managedFields": [
                {"manager": "kube-hpa", "operation": "Update", "fieldsV1": {"f:spec": {"f:minReadySeconds": {}}}}
            ]},
            "spec": {"replicas": 7, "minReadySeconds": 9, "paused": false}
        });
        let desired = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"replicas": 2, "minReadySeconds": 0, "paused": false}
        });
        let ignore = IgnoreRules::for_object(&rules, "apps", "Deployment", None, "d");
        assert!(!differs(&desired, &live, &ignore));
        let none = IgnoreRules::for_object(&rules, "", "ConfigMap", None, "d");
        assert!(none.is_empty());
        assert!(differs(&desired, &live, &none));
    }
}
