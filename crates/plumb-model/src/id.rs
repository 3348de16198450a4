//! Identities of Kubernetes objects.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A group, version and kind: what an `apiVersion` plus `kind` name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Gvk {
    /// API group; empty for the core group.
    pub group: String,
    /// API version within the group.
    pub version: String,
    /// Kind, as written in manifests.
    pub kind: String,
}

impl Gvk {
    /// Build from an `apiVersion` (`apps/v1`, `v1`) and a kind.
    pub fn from_api_version(api_version: &str, kind: &str) -> Gvk {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Gvk {
            group,
            version,
            kind: kind.to_string(),
        }
    }

    /// The `apiVersion` string for this group and version.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for Gvk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Kind={}", self.api_version(), self.kind)
    }
}

/// One object in a cluster: group, kind, namespace and name.
///
/// The version is deliberately not part of the identity: the same object is
/// readable at several versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    /// API group; empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to an object of `gvk` named `name` in `namespace`.
    pub fn new(gvk: &Gvk, namespace: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef {
            group: gvk.group.clone(),
            kind: gvk.kind.clone(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    /// `Kind/namespace/name`, or `Kind/name` when cluster-scoped; the group is
    /// appended after a dot to the kind when it is not core (`Deployment.apps`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "/{ns}")?;
        }
        write!(f, "/{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_round_trips() {
        for av in ["v1", "apps/v1", "apiextensions.k8s.io/v1"] {
            assert_eq!(Gvk::from_api_version(av, "X").api_version(), av);
        }
        let core = Gvk::from_api_version("v1", "ConfigMap");
        assert_eq!(core.group, "");
        assert_eq!(core.version, "v1");
    }

    #[test]
    fn object_ref_display() {
        let d = ObjectRef::new(
            &Gvk::from_api_version("apps/v1", "Deployment"),
            Some("prod"),
            "web",
        );
        assert_eq!(d.to_string(), "Deployment.apps/prod/web");
        let n = ObjectRef::new(&Gvk::from_api_version("v1", "Namespace"), None, "prod");
        assert_eq!(n.to_string(), "Namespace/prod");
    }
}
