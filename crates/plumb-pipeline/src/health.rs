//! Where an Application's custom health scripts come from.
//!
//! Argo CD reads its users' Lua health scripts from the `argocd-cm`
//! ConfigMap in the namespace it runs in; plumb reads the same ConfigMap
//! from the cluster it runs in (the kubeconfig's current context, or the
//! in-cluster service account: the cluster Argo CD calls
//! `https://kubernetes.default.svc`), and scripts given as files
//! (`plumb --health-scripts`: a directory laid out as Argo CD's
//! `resource_customizations`, or an `argocd-cm` manifest). The ConfigMap
//! comes first, then the files in the order given: the first with a script
//! for a kind wins.
//!
//! Files are read once, when plumb starts. The ConfigMap is read again when
//! its copy is older than the refresh interval (10 s by default), so an
//! agent follows edits without a restart; a ConfigMap that does not exist
//! gives no scripts (with a warning), one that cannot be read stops the
//! Application with an error. A script from the cluster that does not
//! parse makes its objects Unknown, as in Argo CD; a file's stops plumb at
//! start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use plumb_health::{HealthScripts, Limits, ScriptSet};
use plumb_model::application::{Destination, IN_CLUSTER_SERVER};

use crate::clusters::Clusters;
use crate::error::PipelineError;

/// How long a read of the ConfigMap is used before it is read again.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10);

/// The ConfigMap Argo CD keeps its settings in, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    /// Its namespace (Argo CD's: usually `argocd`).
    pub namespace: String,
    /// Its name (`argocd-cm`).
    pub name: String,
}

impl ConfigMapRef {
    /// `NAMESPACE` (the ConfigMap `argocd-cm` there) or `NAMESPACE/NAME`.
    pub fn parse(s: &str) -> Result<ConfigMapRef, String> {
        let (namespace, name) = match s.split_once('/') {
            Some((ns, name)) => (ns, name),
            None => (s, "argocd-cm"),
        };
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(format!(
                "{s:?} is not NAMESPACE or NAMESPACE/NAME (as in argocd or argocd/argocd-cm)"
            ));
        }
        Ok(ConfigMapRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for ConfigMapRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Custom health scripts from files and, optionally, the cluster's
/// `argocd-cm`. Cheap to clone; clones share the ConfigMap's cached read.
#[derive(Debug, Clone, Default)]
pub struct HealthSource {
    files: HealthScripts,
    configmap: Option<(ConfigMapRef, Clusters)>,
    refresh: Duration,
    cached: Arc<tokio::sync::Mutex<Option<(Instant, HealthScripts)>>>,
    warned_missing: Arc<AtomicBool>,
}

impl HealthSource {
    /// Scripts from `files` (asked in order), each run within `limits`.
    pub fn new(files: Vec<ScriptSet>, limits: Limits) -> HealthSource {
        HealthSource {
            files: HealthScripts::new(files, limits),
            refresh: DEFAULT_REFRESH,
            ..Default::default()
        }
    }

    /// Also read `configmap` from the cluster plumb runs in, through
    /// `clusters`; its scripts come before the files'.
    pub fn with_configmap(mut self, configmap: ConfigMapRef, clusters: Clusters) -> HealthSource {
        self.configmap = Some((configmap, clusters));
        self
    }

    /// Read the ConfigMap again once its copy is older than `refresh`.
    pub fn with_refresh(mut self, refresh: Duration) -> HealthSource {
        self.refresh = refresh;
        self
    }

    /// Whether no script can ever come from here.
    pub fn is_empty(&self) -> bool {
        self.configmap.is_none() && self.files.is_empty()
    }

    /// The scripts as they stand now.
    pub async fn scripts(&self) -> Result<HealthScripts, PipelineError> {
        let Some((reference, clusters)) = &self.configmap else {
            return Ok(self.files.clone());
        };
        let mut cached = self.cached.lock().await;
        if let Some((at, scripts)) = cached.as_ref()
            && at.elapsed() < self.refresh
        {
            return Ok(scripts.clone());
        }
        let set = self.read_configmap(reference, clusters).await?;
        let scripts = self.files.with_first(set);
        *cached = Some((Instant::now(), scripts.clone()));
        Ok(scripts)
    }

    async fn read_configmap(
        &self,
        reference: &ConfigMapRef,
        clusters: &Clusters,
    ) -> Result<ScriptSet, PipelineError> {
        let here = Destination {
            server: Some(IN_CLUSTER_SERVER.to_string()),
            ..Default::default()
        };
        let cluster = clusters.get(&here).await?;
        let api: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), &reference.namespace);
        let origin = format!("configmap {reference}");
        let cm = api
            .get_opt(&reference.name)
            .await
            .map_err(|e| PipelineError::HealthScripts {
                origin: origin.clone(),
                message: plumb_kube::api_error_text(&e),
            })?;
        let Some(cm) = cm else {
            if !self.warned_missing.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    configmap = %reference,
                    "the ConfigMap with health scripts does not exist; built-in health rules only until it does"
                );
            }
            return Ok(ScriptSet::default());
        };
        self.warned_missing.store(false, Ordering::SeqCst);
        let data: BTreeMap<String, String> = cm.data.unwrap_or_default();
        let set = ScriptSet::from_configmap_data(&origin, &data).map_err(|e| {
            PipelineError::HealthScripts {
                origin: origin.clone(),
                message: e.to_string(),
            }
        })?;
        if let Err(e) = set.check_syntax() {
            tracing::warn!(configmap = %reference, "{e}; objects of its kind are Unknown");
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_references() {
        assert_eq!(
            ConfigMapRef::parse("argocd").unwrap(),
            ConfigMapRef {
                namespace: "argocd".into(),
                name: "argocd-cm".into()
            }
        );
        assert_eq!(
            ConfigMapRef::parse("ops/health").unwrap().to_string(),
            "ops/health"
        );
        assert!(ConfigMapRef::parse("a/b/c").is_err());
        assert!(ConfigMapRef::parse("/x").is_err());
        assert!(ConfigMapRef::parse("").is_err());
    }
}
