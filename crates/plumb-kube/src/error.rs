//! Why a sync, diff or status could not run or finish.
//!
//! One object failing to apply is not an error here: it is an
//! [`ObjectResult`](plumb_model::sync::ObjectResult) with action `Failed`,
//! and the sync goes on with the rest of its step. A [`SyncError`] stops the
//! whole operation, and every variant says where (a manifest's origin) or
//! what (the API call) so the user can act on it.

use plumb_model::Origin;

use crate::cluster::ClusterError;
use crate::inventory::InventoryError;

/// Why a sync (or diff, or status) could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A manifest's kind is not served and no CRD in Git defines it.
    #[error(
        "{origin}: kind {kind} (apiVersion {api_version}) is not served by the cluster and no CustomResourceDefinition in the Application defines it"
    )]
    UnknownKind {
        /// Where the manifest is.
        origin: Origin,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
    },
    /// A namespaced object has no namespace and the destination names none.
    #[error(
        "{origin}: {object} is namespaced but names no namespace, and the destination has none"
    )]
    NoNamespace {
        /// Where.
        origin: Origin,
        /// Which.
        object: String,
    },
    /// A manifest is malformed in a way the render did not catch.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where.
        origin: Origin,
        /// What.
        message: String,
    },
    /// Prune refused to run.
    #[error("{0}")]
    PruneRefused(String),
    /// The inventory could not be read or written.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// Discovery failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// An API call outside a single object's apply failed.
    #[error("{context}: {source}")]
    Api {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: kube::Error,
    },
}

/// The API server's message, without the noise.
pub fn api_error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            if s.message.is_empty() {
                format!("{} ({})", s.reason, s.code)
            } else {
                s.message.clone()
            }
        }
        other => other.to_string(),
    }
}
