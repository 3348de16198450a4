//! What can go wrong in an agent operation, with its cause kept.
//!
//! The API maps each variant to an HTTP status, the UI to a page, the
//! reconcile loop to an Application's status message; all three show the
//! same text, and [`AgentError::hint`] says what the user can do.

use plumb_model::RevisionError;
use plumb_pipeline::PipelineError;
use plumb_render::application::LoadError;

use crate::store::StoreError;

/// Errors of agent operations.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No Application by that name.
    #[error("no Application named {0:?}")]
    NotFound(String),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A revision in the request (or a stored rollback pin) does not parse.
    #[error(transparent)]
    Revision(#[from] RevisionError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Loading Application files failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The Application could not be taken from Git to the cluster.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The home cluster (where Application objects live) is unusable.
    #[error("{0}")]
    Cluster(String),
    /// The sync ran, and an object failed to apply or prune.
    #[error("{first}")]
    SyncFailed {
        /// The first failure: `object: why`.
        first: String,
    },
}

impl AgentError {
    /// What the user can do next.
    pub fn hint(&self) -> &'static str {
        match self {
            AgentError::NotFound(_) => "list Applications with GET /api/v1/applications",
            AgentError::Invalid(_) | AgentError::Revision(_) => {
                "correct the request and send it again"
            }
            AgentError::Store(_) => {
                "check that the data directory is writable and not on a full disk"
            }
            AgentError::Load(_) => "fix the Application file; the previous definitions stay in use",
            AgentError::Pipeline(e) => e.hint(),
            AgentError::Cluster(_) => {
                "check the kubeconfig (or the pod's service account) and the API server"
            }
            AgentError::SyncFailed { .. } => {
                "read the object's message in the sync result; fix it in Git and sync again"
            }
        }
    }
}
