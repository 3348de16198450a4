//! Everything an operation on a stack can fail with, as one typed error.
//!
//! Configuration problems keep their file, line and column ([`ConfigError`]);
//! state and lock failures keep plumb-state's error; everything else is a
//! variant of its own carrying what the caller needs to explain it (the
//! path, the address, the serials of a stale plan) and, where there is one,
//! the underlying error as its source. What to do next is the caller's to
//! say: the command line attaches hints, an agent may attach others.

use std::path::PathBuf;

use plumb_state::StateError;

use crate::addr::ResourceAddr;
use crate::diag::{ConfigError, Diag};
use crate::statewriter::WriteError;

/// A failure of an operation on a stack.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// Configuration problems, placed in their files.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A problem found outside the configuration's text (a provider missing
    /// from the mirror, a stack not initialized ...), with its own hint.
    #[error("{}", .0.message)]
    Problem(Diag),
    /// Reading or writing state, or its lock.
    #[error(transparent)]
    State(#[from] StateError),
    /// Writing state while an apply ran.
    #[error(transparent)]
    StateWrite(#[from] WriteError),
    /// A `-target` or `-replace` address that does not parse.
    #[error("{message}")]
    TargetAddress {
        /// Why.
        message: String,
    },
    /// An address given to a state command or `import` that does not parse.
    #[error("{message}")]
    StateAddress {
        /// Why.
        message: String,
    },
    /// A saved plan could not be read.
    #[error("cannot read plan {}: {source}", path.display())]
    PlanRead {
        /// The plan file, as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a saved plan.
    #[error("{} is not a plumb plan: {source}", path.display())]
    NotAPlan {
        /// The file, as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A plan could not be saved.
    #[error("cannot write {}: {source}", path.display())]
    PlanWrite {
        /// The plan file, as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The variables a saved plan holds from SOPS files could not be sealed
    /// into it, or opened from it.
    #[error("the saved plan's variables from SOPS files ({}): {reason}", names.join(", "))]
    SealedVariables {
        /// The variables (names only).
        names: Vec<String>,
        /// Why.
        reason: String,
    },
    /// A saved plan was made against another state than the current one.
    #[error(
        "saved plan is stale: it was made for state serial {planned_serial:?} (lineage {planned_lineage:?}) but the state is now at serial {serial:?} (lineage {lineage:?})"
    )]
    StalePlan {
        /// The state serial the plan was made against.
        planned_serial: Option<u64>,
        /// The state lineage the plan was made against.
        planned_lineage: Option<String>,
        /// The state's serial now.
        serial: Option<u64>,
        /// The state's lineage now.
        lineage: Option<String>,
    },
    /// An address names no instance in state.
    #[error("no instance {address} in state")]
    NotInState {
        /// The address, as given.
        address: String,
    },
    /// `state rm` matched nothing.
    #[error("no matching instances in state")]
    NothingRemoved,
    /// `state mv` would overwrite an instance.
    #[error("{address} already exists in state")]
    AlreadyInState {
        /// The destination, as given.
        address: String,
    },
    /// `import` names a module the configuration does not call.
    #[error("module {module} is not in the configuration")]
    ModuleNotConfigured {
        /// The module call's name.
        module: String,
    },
    /// `import` names a resource the configuration does not declare.
    #[error("{resource} is not in the configuration")]
    NotConfigured {
        /// The resource.
        resource: ResourceAddr,
    },
    /// `import` names an instance that is already in state.
    #[error("{address} is already managed")]
    AlreadyManaged {
        /// The address, as given.
        address: String,
    },
    /// A provider call for `address` failed.
    #[error("{address}: {source}")]
    Provider {
        /// The instance, as given.
        address: String,
        /// Why.
        #[source]
        source: plumb_tfplugin::Error,
    },
    /// The provider found nothing under an import id.
    #[error("nothing found to import under {id:?}")]
    NothingToImport {
        /// The id.
        id: String,
    },
    /// The provider says the object to import does not exist.
    #[error("cannot import non-existent object {id:?}")]
    ImportGone {
        /// The id.
        id: String,
    },
    /// `fmt` could not read or write a file or directory.
    #[error("{}: {source}", path.display())]
    FormatIo {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `fmt` found a file that does not parse.
    #[error("{}: syntax error: {message}", path.display())]
    FormatSyntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

impl From<Diag> for InfraError {
    /// A diagnostic placed in a file is a configuration error; one without
    /// a place is a [`InfraError::Problem`].
    fn from(d: Diag) -> Self {
        if d.file.is_some() {
            InfraError::Config(d.into())
        } else {
            InfraError::Problem(d)
        }
    }
}
