//! From an Application's destination to a client.
//!
//! `https://kubernetes.default.svc` (Argo CD's name for "this cluster") is the
//! current kubeconfig context, or the in-cluster service account when there is
//! no kubeconfig. Any other server URL is the kubeconfig context whose cluster
//! has that URL; `destination.name` is a context name.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use plumb_model::application::{Destination, IN_CLUSTER_SERVER};

/// Why a destination cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// No kubeconfig and not in a cluster.
    #[error("no kubeconfig found ({0}); pass --kubeconfig or set KUBECONFIG")]
    NoConfig(String),
    /// The kubeconfig does not parse.
    #[error("cannot read kubeconfig {path}: {message}")]
    BadConfig {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// No context serves the destination server.
    #[error("no kubeconfig context has a cluster with server {server}; known servers: {known}")]
    UnknownServer {
        /// The server asked for.
        server: String,
        /// What the kubeconfig has.
        known: String,
    },
    /// No context of that name.
    #[error("no kubeconfig context named {0:?}")]
    UnknownContext(String),
    /// The client could not be built.
    #[error("cannot build a client for {server}: {message}")]
    Client {
        /// The server.
        server: String,
        /// Why.
        message: String,
    },
}

fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A client for `dest`, and the URL of the server it talks to.
pub async fn connect(
    dest: &Destination,
    kubeconfig: Option<&Path>,
) -> Result<(kube::Client, String), DestinationError> {
    let (config, server) = config_for(dest, kubeconfig).await?;
    let client = kube::Client::try_from(config).map_err(|e| DestinationError::Client {
        server: server.clone(),
        message: e.to_string(),
    })?;
    Ok((client, server))
}

/// The client configuration for `dest`, and the URL of its server.
pub async fn config_for(
    dest: &Destination,
    kubeconfig: Option<&Path>,
) -> Result<(kube::Config, String), DestinationError> {
    let kc = match kubeconfig {
        Some(p) => Some(
            Kubeconfig::read_from(p).map_err(|e| DestinationError::BadConfig {
                path: p.display().to_string(),
                message: e.to_string(),
            })?,
        ),
        None => Kubeconfig::read().ok(),
    };
    let want_server = dest.server.as_deref().filter(|s| !s.is_empty());
    let in_cluster =
        want_server.is_none_or(|s| same_server(s, IN_CLUSTER_SERVER)) && dest.name.is_none();
    let Some(kc) = kc else {
        if in_cluster && let Ok(config) = kube::Config::incluster() {
            let server = config.cluster_url.to_string();
            return Ok((config, server));
        }
        return Err(DestinationError::NoConfig(
            "KUBECONFIG unset and ~/.kube/config missing".into(),
        ));
    };
    let context = if let Some(name) = dest
        .name
        .as_deref()
        .filter(|n| !n.is_empty() && *n != "in-cluster")
    {
        if !kc.contexts.iter().any(|c| c.name == name) {
            return Err(DestinationError::UnknownContext(name.to_string()));
        }
        Some(name.to_string())
    } else if in_cluster {
        None
    } else {
        let server = want_server.unwrap_or_default();
        let cluster = kc
            .clusters
            .iter()
            .find(|c| {
                c.cluster
                    .as_ref()
                    .and_then(|c| c.server.as_deref())
                    .is_some_and(|s| same_server(s, server))
            })
            .map(|c| c.name.clone());
        let ctx = cluster.and_then(|cl| {
            kc.contexts
                .iter()
                .find(|c| c.context.as_ref().is_some_and(|x| x.cluster == cl))
                .map(|c| c.name.clone())
        });
        match ctx {
            Some(c) => Some(c),
            None => {
                let known: Vec<String> = kc
                    .clusters
                    .iter()
                    .filter_map(|c| c.cluster.as_ref().and_then(|c| c.server.clone()))
                    .collect();
                return Err(DestinationError::UnknownServer {
                    server: server.to_string(),
                    known: known.join(", "),
                });
            }
        }
    };
    let opts = KubeConfigOptions {
        context,
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| DestinationError::Client {
            server: want_server.unwrap_or(IN_CLUSTER_SERVER).to_string(),
            message: e.to_string(),
        })?;
    let server = config.cluster_url.to_string();
    Ok((config, server))
}
