//! Destinations to clusters, each connected and discovered once.
//!
//! Discovery costs several requests, so a [`Cluster`] is kept per destination
//! (server URL or context name) and shared by every Application that deploys
//! there. How a client is built from its configuration is the caller's: the
//! agent wraps every request in its metrics layer, the CLI does not.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use plumb_kube::{Cluster, DestinationError};
use plumb_model::application::Destination;

/// Builds a client from its configuration.
pub type ClientFactory =
    Arc<dyn Fn(kube::Config) -> Result<kube::Client, kube::Error> + Send + Sync>;

/// The clusters Applications deploy to, connected on first use.
#[derive(Clone)]
pub struct Clusters {
    kubeconfig: Option<PathBuf>,
    factory: ClientFactory,
    connected: Arc<tokio::sync::Mutex<HashMap<String, Cluster>>>,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clusters")
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl Clusters {
    /// Destinations resolved through `kubeconfig` (default: `$KUBECONFIG`,
    /// `~/.kube/config`, then in-cluster), with plain clients.
    pub fn new(kubeconfig: Option<PathBuf>) -> Clusters {
        Clusters {
            kubeconfig,
            factory: Arc::new(kube::Client::try_from),
            connected: Arc::new(tokio::sync::Mutex::new(HashMap::new())),
        }
    }

    /// Build clients with `factory` instead (to add layers).
    pub fn with_client_factory(mut self, factory: ClientFactory) -> Clusters {
        self.factory = factory;
        self
    }

    /// The cluster `destination` names, connected and discovered.
    pub async fn get(&self, destination: &Destination) -> Result<Cluster, crate::PipelineError> {
        let key = format!(
            "{}|{}",
            destination.server.as_deref().unwrap_or(""),
            destination.name.as_deref().unwrap_or("")
        );
        let mut connected = self.connected.lock().await;
        if let Some(c) = connected.get(&key) {
            return Ok(c.clone());
        }
        let (config, server) =
            plumb_kube::config_for(destination, self.kubeconfig.as_deref()).await?;
        let client = (self.factory)(config).map_err(|e| DestinationError::Client {
            server: server.clone(),
            message: e.to_string(),
        })?;
        let cluster = Cluster::new(client, server).await?;
        connected.insert(key, cluster.clone());
        Ok(cluster)
    }
}
