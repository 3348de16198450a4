//! A client and what the API server serves.

use std::sync::Arc;

use kube::api::{Api, DynamicObject};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use plumb_model::Gvk;
use tokio::sync::RwLock;

/// Errors talking to the API server outside of a sync.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Discovery failed.
    #[error("cannot discover the API of {server}: {source}")]
    Discovery {
        /// The server.
        server: String,
        /// Why.
        source: kube::Error,
    },
}

/// A resolved kind: how to reach it and whether it is namespaced.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The resource (group, version, plural, kind).
    pub resource: ApiResource,
    /// Whether objects of this kind live in namespaces.
    pub namespaced: bool,
}

/// One API server: a client and a discovery cache.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    server: String,
    discovery: Arc<RwLock<Arc<Discovery>>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .finish()
    }
}

impl Cluster {
    /// Discover what `client`'s server serves.
    pub async fn new(
        client: kube::Client,
        server: impl Into<String>,
    ) -> Result<Cluster, ClusterError> {
        let server = server.into();
        let discovery = Discovery::new(client.clone())
            .run_aggregated()
            .await
            .map_err(|source| ClusterError::Discovery {
                server: server.clone(),
                source,
            })?;
        Ok(Cluster {
            client,
            server,
            discovery: Arc::new(RwLock::new(Arc::new(discovery))),
        })
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Re-run discovery (after CRDs were created).
    pub async fn refresh(&self) -> Result<(), ClusterError> {
        let discovery = Discovery::new(self.client.clone())
            .run_aggregated()
            .await
            .map_err(|source| ClusterError::Discovery {
                server: self.server.clone(),
                source,
            })?;
        *self.discovery.write().await = Arc::new(discovery);
        Ok(())
    }

    /// How to reach objects of `gvk`, if the server serves it.
    pub async fn resolve(&self, gvk: &Gvk) -> Option<Resolved> {
        let d = self.discovery.read().await.clone();
        let key = kube::api::GroupVersionKind::gvk(&gvk.group, &gvk.version, &gvk.kind);
        d.resolve_gvk(&key)
            .map(|(resource, caps)| to_resolved(resource, &caps))
    }

    /// Every listable kind the server serves, at its preferred version.
    pub async fn all_kinds(&self) -> Vec<Resolved> {
        let d = self.discovery.read().await.clone();
        let mut out = Vec::new();
        for group in d.groups() {
            for (ar, caps) in group.recommended_resources() {
                if caps.supports_operation(kube::discovery::verbs::LIST) {
                    out.push(to_resolved(ar, &caps));
                }
            }
        }
        out
    }

    /// CustomResourceDefinitions, cluster-wide (served by every API server,
    /// so they need no discovery).
    pub fn crds(&self) -> Api<DynamicObject> {
        Api::all_with(
            self.client.clone(),
            &ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk(
                    "apiextensions.k8s.io",
                    "v1",
                    "CustomResourceDefinition",
                ),
                "customresourcedefinitions",
            ),
        )
    }

    /// A dynamic API handle for a resolved kind in a namespace.
    pub fn api(&self, r: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
        match (r.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &r.resource),
            (true, None) => Api::all_with(self.client.clone(), &r.resource),
            (false, _) => Api::all_with(self.client.clone(), &r.resource),
        }
    }
}

fn to_resolved(resource: ApiResource, caps: &ApiCapabilities) -> Resolved {
    Resolved {
        resource,
        namespaced: caps.scope == Scope::Namespaced,
    }
}
