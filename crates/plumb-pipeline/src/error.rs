//! Why the pipeline stopped, by stage, with what the user can do about it.

use plumb_git::GitError;
use plumb_kube::{ClusterError, DestinationError, SyncError};
use plumb_render::RenderError;

use crate::check::Refused;

/// A pipeline stage, for errors that are about the stage rather than its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Resolving and fetching commits.
    Fetch,
    /// Rendering objects.
    Render,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Fetch => "fetch",
            Stage::Render => "render",
        })
    }
}

/// Why an Application could not be taken from Git to the cluster. The text of
/// each variant is its cause's own; [`PipelineError::hint`] says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Git could not resolve, fetch or read a commit.
    #[error("{source}")]
    Git {
        /// The repository (credentials removed).
        repo: String,
        /// Why.
        #[source]
        source: GitError,
    },
    /// The commit does not render.
    #[error("{source}")]
    Render {
        /// The (first source's) commit.
        commit: String,
        /// Why.
        #[source]
        source: Box<RenderError>,
    },
    /// A check refused the rendered objects.
    #[error(transparent)]
    Refused(Refused),
    /// The destination names no cluster plumb can reach.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// The cluster's discovery failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The engine could not diff, sync or read status.
    #[error(transparent)]
    Engine(#[from] SyncError),
    /// The Secret named by `plumb.dev/decryption-secret` could not be used.
    #[error("decryption secret {secret}: {message}")]
    DecryptionSecret {
        /// `namespace/name` as the annotation gives it.
        secret: String,
        /// Why (never a key).
        message: String,
    },
    /// A Secret's `plumb.dev/secret-ref…` reference could not be resolved.
    #[error("{origin}: {source}")]
    SecretRef {
        /// The Secret's manifest.
        origin: plumb_model::Origin,
        /// Which reference, and why (never a value).
        #[source]
        source: plumb_secrets::refs::RefError,
    },
    /// The custom health scripts could not be read.
    #[error("health scripts from {origin}: {message}")]
    HealthScripts {
        /// The ConfigMap (`configmap NAMESPACE/NAME`).
        origin: String,
        /// Why.
        message: String,
    },
    /// Every source resolved to nothing (an Application without sources).
    #[error("the Application has no sources to resolve")]
    NoSources,
    /// A worker thread died.
    #[error("the {stage} stage stopped unexpectedly: {source}")]
    Task {
        /// Which stage.
        stage: Stage,
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl PipelineError {
    /// What the user can do next.
    pub fn hint(&self) -> &'static str {
        match self {
            PipelineError::Git { .. } => {
                "check spec.source.repoURL and targetRevision, and credentials (PLUMB_GIT_* or --git-credentials)"
            }
            PipelineError::Render { .. } | PipelineError::Refused(_) => {
                "fix the manifest in Git; nothing was changed in the cluster"
            }
            PipelineError::Destination(_) => "check spec.destination and your kubeconfig",
            PipelineError::Cluster(_) => "check that the cluster's API server is reachable",
            PipelineError::Engine(_) => {
                "nothing after the reported point was changed; fix the cause and sync again"
            }
            PipelineError::DecryptionSecret { .. } => {
                "create the Secret with an age identity under a key ending in .agekey, or fix the plumb.dev/decryption-secret annotation"
            }
            PipelineError::SecretRef { .. } => {
                "fix the reference, or the value at its source; nothing was changed in the cluster"
            }
            PipelineError::HealthScripts { .. } => {
                "let plumb read the ConfigMap (RBAC: get configmaps in its namespace), fix the resource.customizations key named, or drop --argocd-cm"
            }
            PipelineError::NoSources => "give the Application spec.source or spec.sources",
            PipelineError::Task { .. } => "this is a bug in plumb; the run can be retried",
        }
    }
}
