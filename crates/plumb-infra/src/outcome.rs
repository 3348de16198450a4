//! What a walk produces: for each instance the [`Action`] it needs and the
//! [`Change`] it makes, the changes to output values, and the errors that
//! stopped parts of the walk.
//!
//! These are the nouns plans, applies, progress reports, saved plans and
//! renderings all share, so they sit below the engine that makes them and
//! the code that shows them.

use std::collections::BTreeMap;

use plumb_tfplugin::{PathStep, Value};

use crate::addr::InstanceAddr;
use crate::diag::Diag;

/// What happens to one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing changes.
    NoOp,
    /// Create.
    Create,
    /// Update in place.
    Update,
    /// Destroy then create.
    DeleteThenCreate,
    /// Create the replacement, then destroy the old one.
    CreateThenDelete,
    /// Destroy.
    Delete,
    /// Read a data source.
    Read,
}

impl Action {
    /// Terraform's JSON action list.
    pub fn json_actions(self) -> Vec<&'static str> {
        match self {
            Action::NoOp => vec!["no-op"],
            Action::Create => vec!["create"],
            Action::Update => vec!["update"],
            Action::DeleteThenCreate => vec!["delete", "create"],
            Action::CreateThenDelete => vec!["create", "delete"],
            Action::Delete => vec!["delete"],
            Action::Read => vec!["read"],
        }
    }
}

/// One planned change.
#[derive(Clone, Debug)]
pub struct Change {
    /// Which instance.
    pub addr: InstanceAddr,
    /// What happens.
    pub action: Action,
    /// Before (null for create).
    pub before: Value,
    /// After (may hold unknowns; null for delete).
    pub after: Value,
    /// Attributes forcing replacement.
    pub replace_paths: Vec<Vec<PathStep>>,
    /// Imported during this plan.
    pub imported: bool,
    /// Moved from this address.
    pub moved_from: Option<InstanceAddr>,
}

impl Change {
    /// Whether a plan shows it: it acts, imports or moves.
    pub fn is_shown(&self) -> bool {
        self.action != Action::NoOp || self.imported || self.moved_from.is_some()
    }
}

/// An error during a walk, tied to a node.
#[derive(Debug, Clone)]
pub struct WalkError {
    /// What failed (an address, or a configuration item).
    pub what: String,
    /// The diagnostic.
    pub diag: Diag,
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, self.diag)
    }
}

/// One root output's change: name, before, after, and whether it is
/// sensitive.
pub type OutputChange = (String, Value, Value, bool);

/// The outcome of a walk.
#[derive(Debug, Default)]
pub struct WalkResult {
    /// Planned (or applied) changes, sorted by address.
    pub changes: Vec<Change>,
    /// Root output values after the walk (unknowns during plan), each with
    /// whether it is sensitive.
    pub outputs: BTreeMap<String, (Value, bool)>,
    /// Errors, each stopping only its dependents.
    pub errors: Vec<WalkError>,
    /// Output changes.
    pub output_changes: Vec<OutputChange>,
}

impl WalkResult {
    /// Whether applying it would change anything: an instance or an output.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(Change::is_shown) || !self.output_changes.is_empty()
    }
}
