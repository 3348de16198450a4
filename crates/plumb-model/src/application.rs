//! The Argo CD `Application` (`argoproj.io/v1alpha1`), as plumb reads it.
//!
//! The manifest is accepted verbatim: every field plumb honours has a typed
//! home here, and every field it does not know is reported as a warning by the
//! loader (see [`Application::from_value`]) instead of failing the load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API version plumb accepts for Applications.
pub const API_VERSION: &str = "argoproj.io/v1alpha1";
/// The kind plumb accepts for Applications.
pub const KIND: &str = "Application";
/// The server URL that means "the cluster plumb runs against".
pub const IN_CLUSTER_SERVER: &str = "https://kubernetes.default.svc";

/// One unit of GitOps: Git sources rendered into a destination under a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be [`KIND`].
    pub kind: String,
    /// Name and namespace of the Application itself.
    pub metadata: ApplicationMeta,
    /// What to deploy where, and how.
    pub spec: ApplicationSpec,
}

/// The Application's own metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationMeta {
    /// The Application's name; also the value of the tracking label.
    pub name: String,
    /// The namespace the Application lives in (Argo CD's `argocd`); part of
    /// its identity, not where its objects go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Finalizers (accepted, not acted on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// The Application's specification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// Argo CD project (accepted; plumb has no project policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// A single source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
    /// Several sources whose objects are merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ApplicationSource>,
    /// Where the objects go.
    pub destination: Destination,
    /// When and how to sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<SyncPolicy>,
    /// Differences that never count as drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<IgnoreDifferences>,
    /// How many history entries to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
    /// Informational links (accepted, not acted on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<Value>,
}

/// A Git source: a repository, a revision and a path in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSource {
    /// Repository URL: https, ssh (`ssh://` or `user@host:path`) or `file://`.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Branch, tag, full or short commit SHA, or `HEAD` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// Directory inside the repository (default: the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Helm chart name for Helm repositories (not supported: Git only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// Options for plain directories of manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<DirectorySource>,
    /// Options for Kustomize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<KustomizeSource>,
    /// Options for Helm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSource>,
    /// A reference name for multi-source value files (accepted, not acted on).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_name: Option<String>,
    /// A display name for the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ApplicationSource {
    /// The revision to resolve; `HEAD` when none is given.
    pub fn revision(&self) -> &str {
        match self.target_revision.as_deref() {
            Some(r) if !r.trim().is_empty() => r.trim(),
            _ => "HEAD",
        }
    }

    /// The path inside the repository, without leading `./` or `/`; empty for the root.
    pub fn path(&self) -> &str {
        let p = self.path.as_deref().unwrap_or("").trim();
        let p = p.trim_start_matches("./");
        let p = p.trim_matches('/');
        if p == "." { "" } else { p }
    }
}

/// Options for a directory of plain YAML or JSON manifests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectorySource {
    /// Descend into subdirectories.
    #[serde(default)]
    pub recurse: bool,
    /// Glob of files to include (`*.yaml`, `{a.yaml,b/*}`), matched against
    /// the path relative to the source path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,
    /// Glob of files to exclude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
    /// Jsonnet options (not supported; a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonnet: Option<Value>,
}

/// Options applied on top of a kustomization.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeSource {
    /// Prefix for every object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Suffix for every object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    /// Image overrides in kustomize's `name=newName:tag` / `name:tag` / `name@digest` form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Labels added to every object and selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations added to every object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_annotations: BTreeMap<String, String>,
    /// Namespace for every namespaced object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Options for `helm template`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmSource {
    /// Release name (default: the Application's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files, relative to the chart directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_files: Vec<String>,
    /// Inline values as a YAML string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// Inline values as an object (wins over `values`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_object: Option<Value>,
    /// `--set` style parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<HelmParameter>,
    /// Ignore value files that do not exist.
    #[serde(default)]
    pub ignore_missing_value_files: bool,
    /// Skip the chart's CRDs.
    #[serde(default)]
    pub skip_crds: bool,
    /// Pass credentials to all domains (accepted; nothing is fetched).
    #[serde(default)]
    pub pass_credentials: bool,
    /// Helm version (accepted; plumb drives Helm 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One Helm `--set` parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmParameter {
    /// Dotted key.
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
    /// Pass as `--set-string`.
    #[serde(default)]
    pub force_string: bool,
}

/// Where an Application's objects go.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// API server URL; [`IN_CLUSTER_SERVER`] means the current cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Cluster name: a kubeconfig context name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace for namespaced objects that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// When and how to sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Sync automatically when Git or the cluster changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<AutomatedPolicy>,
    /// `Name=value` options such as `CreateNamespace=true` and `PruneLast=true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_options: Vec<String>,
    /// Retry settings (plumb always retries with backoff in the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Value>,
    /// Managed namespace metadata (accepted, not acted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_namespace_metadata: Option<Value>,
}

impl SyncPolicy {
    /// Whether the option `name` is set to `true` (`CreateNamespace=true`).
    pub fn option(&self, name: &str) -> bool {
        sync_option(&self.sync_options, name)
    }
}

/// Whether the `Name=value` list holds `name=true`.
pub fn sync_option(options: &[String], name: &str) -> bool {
    sync_option_value(options.iter().map(String::as_str), name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The value of `name` in a list of `Name=value` options, if present.
pub fn sync_option_value<'a>(
    options: impl IntoIterator<Item = &'a str>,
    name: &str,
) -> Option<&'a str> {
    options.into_iter().find_map(|o| {
        let (k, v) = o.split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// Automated sync settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutomatedPolicy {
    /// Delete objects that left Git.
    #[serde(default)]
    pub prune: bool,
    /// Revert changes made in the cluster.
    #[serde(default)]
    pub self_heal: bool,
    /// Allow a sync whose render is empty.
    #[serde(default)]
    pub allow_empty: bool,
    /// Whether automation is enabled (Argo CD 3 field; default on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Differences to ignore for matching objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreDifferences {
    /// API group (empty or absent for core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
    /// Only this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// RFC 6901 pointers to ignore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// jq expressions (not supported; a warning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jq_path_expressions: Vec<String>,
    /// Field managers whose fields are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields_managers: Vec<String>,
}

impl IgnoreDifferences {
    /// Whether this rule applies to an object.
    pub fn matches(&self, group: &str, kind: &str, namespace: Option<&str>, name: &str) -> bool {
        self.group.as_deref().unwrap_or("") == group
            && self.kind == kind
            && self.name.as_deref().is_none_or(|n| n == name)
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| Some(n) == namespace)
    }
}

/// Why a value is not an Application.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplicationError {
    /// The kind or apiVersion is not an Argo CD Application.
    #[error("not an Application: found apiVersion {api_version:?}, kind {kind:?}")]
    NotAnApplication {
        /// The apiVersion found.
        api_version: String,
        /// The kind found.
        kind: String,
    },
    /// A field has the wrong shape.
    #[error("invalid Application: {0}")]
    Invalid(String),
}

/// An Application plus what the loader had to say about it.
#[derive(Debug, Clone)]
pub struct LoadedApplication {
    /// The Application.
    pub application: Application,
    /// Warnings: unknown or unsupported fields.
    pub warnings: Vec<String>,
}

impl Application {
    /// Read an Application from a parsed manifest, collecting unknown fields
    /// as warnings.
    pub fn from_value(value: &Value) -> Result<LoadedApplication, ApplicationError> {
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version != API_VERSION || kind != KIND {
            return Err(ApplicationError::NotAnApplication {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            });
        }
        let mut warnings = Vec::new();
        let application: Application = serde_ignored::deserialize(value, |path| {
            // serde_ignored marks `Option`s with `?`; users never wrote one.
            let p = path.to_string().replace(".?", "");
            if p != "status" && p != "operation" && !p.starts_with("metadata.") {
                warnings.push(format!("unknown field `{p}` ignored"));
            }
        })
        .map_err(|e| ApplicationError::Invalid(e.to_string()))?;
        application.validate()?;
        warnings.extend(application.unsupported());
        Ok(LoadedApplication {
            application,
            warnings,
        })
    }

    fn validate(&self) -> Result<(), ApplicationError> {
        if self.metadata.name.is_empty() {
            return Err(ApplicationError::Invalid("metadata.name is empty".into()));
        }
        if !is_dns_label(&self.metadata.name) && !is_dns_subdomain(&self.metadata.name) {
            return Err(ApplicationError::Invalid(format!(
                "metadata.name {:?} is not a valid Kubernetes name",
                self.metadata.name
            )));
        }
        if self.spec.source.is_none() && self.spec.sources.is_empty() {
            return Err(ApplicationError::Invalid(
                "spec.source or spec.sources is required".into(),
            ));
        }
        for s in self.sources() {
            if s.repo_url.trim().is_empty() {
                return Err(ApplicationError::Invalid(
                    "a source has an empty repoURL".into(),
                ));
            }
        }
        let d = &self.spec.destination;
        if d.server.is_none() && d.name.is_none() {
            return Err(ApplicationError::Invalid(
                "spec.destination needs server or name".into(),
            ));
        }
        Ok(())
    }

    fn unsupported(&self) -> Vec<String> {
        let mut w = Vec::new();
        for s in self.sources() {
            if s.chart.is_some() {
                w.push(format!(
                    "source {}: `chart` (Helm repositories) is not supported; charts are read from Git paths",
                    s.repo_url
                ));
            }
            if s.directory.as_ref().is_some_and(|d| d.jsonnet.is_some()) {
                w.push(
                    "directory.jsonnet is not supported; plain files are rendered as YAML/JSON"
                        .into(),
                );
            }
        }
        for r in &self.spec.ignore_differences {
            if !r.jq_path_expressions.is_empty() {
                w.push(format!(
                    "ignoreDifferences for {}: jqPathExpressions are not supported, use jsonPointers",
                    r.kind
                ));
            }
        }
        w
    }

    /// The sources, whether given as `source` or `sources`.
    pub fn sources(&self) -> Vec<&ApplicationSource> {
        match &self.spec.source {
            Some(s) if self.spec.sources.is_empty() => vec![s],
            _ => self.spec.sources.iter().collect(),
        }
    }

    /// The automated policy, when automation is on.
    pub fn automated(&self) -> Option<&AutomatedPolicy> {
        self.spec
            .sync_policy
            .as_ref()
            .and_then(|p| p.automated.as_ref())
            .filter(|a| a.enabled.unwrap_or(true))
    }

    /// Whether a sync option (`CreateNamespace`, `PruneLast`, ...) is `true`.
    pub fn sync_option(&self, name: &str) -> bool {
        self.spec
            .sync_policy
            .as_ref()
            .is_some_and(|p| p.option(name))
    }

    /// A stable identity: `namespace/name`, or `name` without a namespace.
    pub fn key(&self) -> String {
        match &self.metadata.namespace {
            Some(ns) => format!("{ns}/{}", self.metadata.name),
            None => self.metadata.name.clone(),
        }
    }
}

/// RFC 1123 label: what namespaces and most names must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed() -> Value {
        json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "myapp", "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": "https://github.com/myorg/k8s-manifests.git",
                    "targetRevision": "main",
                    "path": "apps/myapp"
                },
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "production"},
                "syncPolicy": {
                    "automated": {"prune": true, "selfHeal": true},
                    "syncOptions": ["CreateNamespace=true"]
                }
            }
        })
    }

    #[test]
    fn the_seed_example_loads_without_warnings() {
        let loaded = Application::from_value(&seed()).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let app = loaded.application;
        assert_eq!(app.key(), "argocd/myapp");
        assert_eq!(app.sources()[0].revision(), "main");
        assert_eq!(app.sources()[0].path(), "apps/myapp");
        assert!(app.automated().unwrap().prune);
        assert!(app.sync_option("CreateNamespace"));
        assert!(!app.sync_option("PruneLast"));
    }

    #[test]
    fn unknown_fields_are_warnings() {
        let mut v = seed();
        v["spec"]["source"]["plugin"] = json!({"name": "x"});
        v["spec"]["frobnicate"] = json!(1);
        let loaded = Application::from_value(&v).unwrap();
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("spec.frobnicate"))
        );
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("spec.source.plugin"))
        );
    }

    #[test]
    fn not_an_application() {
        let v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        assert!(matches!(
            Application::from_value(&v),
            Err(ApplicationError::NotAnApplication { .. })
        ));
    }

    #[test]
    fn missing_source_is_invalid() {
        let mut v = seed();
        v["spec"].as_object_mut().unwrap().remove("source");
        let err = Application::from_value(&v).unwrap_err();
        assert!(err.to_string().contains("spec.source"), "{err}");
    }

    #[test]
    fn revision_and_path_defaults() {
        let s = ApplicationSource {
            repo_url: "file:///r".into(),
            path: Some("./apps/x/".into()),
            ..Default::default()
        };
        assert_eq!(s.revision(), "HEAD");
        assert_eq!(s.path(), "apps/x");
        let root = ApplicationSource {
            repo_url: "file:///r".into(),
            path: Some(".".into()),
            ..Default::default()
        };
        assert_eq!(root.path(), "");
    }

    #[test]
    fn sync_options_parse() {
        let o = vec![
            "CreateNamespace=true".to_string(),
            "PruneLast = false".to_string(),
        ];
        assert!(sync_option(&o, "CreateNamespace"));
        assert!(!sync_option(&o, "PruneLast"));
        assert_eq!(
            sync_option_value(["Prune=false", "Replace=true"], "Replace"),
            Some("true")
        );
    }
}
