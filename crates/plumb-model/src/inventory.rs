//! The Inventory: exactly the objects an Application owns.
//!
//! Prune deletes only inventory members that left Git, so the inventory is the
//! line between "ours" and "someone else's". It is stored in the destination
//! cluster (so an agent with no local data, or a new agent, recovers it) and is
//! written *before* anything new is applied: a crash between the two leaves
//! objects that the inventory already names, never orphans.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::{Gvk, ObjectRef};
use crate::revision::Revision;

/// Annotation carrying an object's tracking id.
pub const TRACKING_ANNOTATION: &str = "plumb.dev/tracking-id";
/// Label carrying the owning Application's name (for selectors).
pub const APP_LABEL: &str = "plumb.dev/app";
/// Field manager plumb applies with.
pub const FIELD_MANAGER: &str = "plumb";

/// One owned object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// API group.
    #[serde(rename = "g", default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version it was applied at.
    #[serde(rename = "v")]
    pub version: String,
    /// Kind.
    #[serde(rename = "k")]
    pub kind: String,
    /// Namespace, for namespaced objects.
    #[serde(rename = "ns", default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    #[serde(rename = "n")]
    pub name: String,
    /// Hash of the manifest last applied; with `resource_version`, lets a
    /// later sync know the object is untouched without asking the server.
    #[serde(rename = "h", default, skip_serializing_if = "String::is_empty")]
    pub applied_hash: String,
    /// The object's resourceVersion right after plumb's last apply.
    #[serde(rename = "rv", default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Hash of the field set plumb's apply owns (from `managedFields`) right
    /// after the last apply: if it is the same and nobody else has written
    /// anything but status since, the object is as plumb left it even when
    /// its resourceVersion moved.
    #[serde(rename = "f", default, skip_serializing_if = "String::is_empty")]
    pub fields_hash: String,
    /// Sync wave it was applied in (prune runs in reverse).
    #[serde(rename = "w", default, skip_serializing_if = "is_zero")]
    pub wave: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl InventoryEntry {
    /// The group, version and kind.
    pub fn gvk(&self) -> Gvk {
        Gvk {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
        }
    }

    /// The object's identity.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            group: self.group.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// The set of objects an Application owns, with the revision that last
/// completed a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The owning Application (`namespace/name`).
    pub application: String,
    /// Commit of the last completed sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    /// A sync that started and has not completed: its commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_revision: Option<Revision>,
    /// The members, keyed by identity.
    #[serde(default)]
    pub members: Vec<InventoryEntry>,
}

impl Inventory {
    /// Members keyed by identity.
    pub fn by_ref(&self) -> BTreeMap<ObjectRef, &InventoryEntry> {
        self.members.iter().map(|m| (m.object_ref(), m)).collect()
    }

    /// Add or replace members; existing members not in `entries` stay.
    pub fn merge(&mut self, entries: impl IntoIterator<Item = InventoryEntry>) {
        let mut map: BTreeMap<ObjectRef, InventoryEntry> = self
            .members
            .drain(..)
            .map(|m| (m.object_ref(), m))
            .collect();
        for e in entries {
            map.insert(e.object_ref(), e);
        }
        self.members = map.into_values().collect();
    }
}

/// The tracking id plumb writes on every object it applies:
/// `<application>:<group>/<kind>:<namespace>/<name>`.
pub fn tracking_id(application: &str, r: &ObjectRef) -> String {
    format!(
        "{application}:{}/{}:{}/{}",
        r.group,
        r.kind,
        r.namespace.as_deref().unwrap_or(""),
        r.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, h: &str) -> InventoryEntry {
        InventoryEntry {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("n".into()),
            name: name.into(),
            applied_hash: h.into(),
            resource_version: String::new(),
            fields_hash: String::new(),
            wave: 0,
        }
    }

    #[test]
    fn merge_replaces_and_keeps() {
        let mut inv = Inventory {
            application: "argocd/app".into(),
            members: vec![entry("a", "1"), entry("b", "1")],
            ..Default::default()
        };
        inv.merge([entry("b", "2"), entry("c", "2")]);
        let names: Vec<_> = inv
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.applied_hash.as_str()))
            .collect();
        assert_eq!(names, vec![("a", "1"), ("b", "2"), ("c", "2")]);
    }

    #[test]
    fn tracking_ids_name_the_object() {
        let r = ObjectRef::new(
            &Gvk::from_api_version("apps/v1", "Deployment"),
            Some("prod"),
            "web",
        );
        assert_eq!(
            tracking_id("argocd/app", &r),
            "argocd/app:apps/Deployment:prod/web"
        );
        let ns = ObjectRef::new(&Gvk::from_api_version("v1", "Namespace"), None, "prod");
        assert_eq!(tracking_id("app", &ns), "app:/Namespace:/prod");
    }

    #[test]
    fn serialised_form_is_compact() {
        let s = serde_json::to_string(&entry("a", "")).unwrap();
        assert_eq!(s, r#"{"v":"v1","k":"ConfigMap","ns":"n","n":"a"}"#);
    }
}
