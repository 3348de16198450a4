//! What the engine is asked to do and what it reports back.
//!
//! Options in ([`SyncOptions`], [`Progress`]) and reports out ([`SyncReport`],
//! [`DiffReport`], [`StatusReport`]): plain data the CLI, the agent and the
//! API serialise as they are. A diff never carries a Secret's values: they are
//! redacted in [`ObjectDiff`] before any text is made.

use std::time::Duration;

use plumb_model::sync::{ActionCounts, ObjectResult};
use plumb_model::{HealthStatus, ObjectRef, Revision, SyncStatus};
use serde::Serialize;
use serde_json::Value;

use crate::textdiff;

/// How to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Ask the server what would happen; change nothing.
    pub dry_run: bool,
    /// Delete inventory members that left Git.
    pub prune: bool,
    /// Prune even past `max_prune_share`.
    pub force_prune: bool,
    /// Largest share of the inventory a prune may delete unforced.
    pub max_prune_share: f64,
    /// Objects applied at once within a step.
    pub concurrency: usize,
    /// How long to wait for CRDs to be Established and for replaced objects to go.
    pub wait_timeout: Duration,
}

impl Default for SyncOptions {
    fn default() -> SyncOptions {
        SyncOptions {
            dry_run: false,
            prune: false,
            force_prune: false,
            max_prune_share: 0.5,
            concurrency: 32,
            wait_timeout: Duration::from_secs(120),
        }
    }
}

/// Told about each object as a sync goes.
pub trait Progress: Send + Sync {
    /// The number of objects the sync will consider.
    fn start(&self, _total: usize) {}
    /// One object is done.
    fn object(&self, _result: &ObjectResult) {}
}

/// A progress that says nothing.
impl Progress for () {}

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The Application (`namespace/name`).
    pub application: String,
    /// The commit applied.
    pub revision: Revision,
    /// Whether nothing was changed on purpose.
    pub dry_run: bool,
    /// Per object, in the order handled.
    pub results: Vec<ObjectResult>,
    /// Totals.
    pub counts: ActionCounts,
    /// Whether every object succeeded.
    pub succeeded: bool,
}

/// One object's difference between Git and the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectDiff {
    /// Which object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// API version.
    pub version: String,
    /// `added`, `modified`, `removed` (would be pruned) or `unchanged`.
    pub state: &'static str,
    /// Unified diff of the normalised YAML (live → desired).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub diff: String,
    /// Desired (as the server would store it), normalised.
    #[serde(skip)]
    pub desired: Option<Value>,
    /// Live, normalised.
    #[serde(skip)]
    pub live: Option<Value>,
}

impl ObjectDiff {
    /// Set both sides and the unified diff; Secret values are redacted first,
    /// so no diff plumb produces ever carries one.
    pub(crate) fn shown(&mut self, live: Option<Value>, desired: Option<Value>) {
        let (live, desired) = if plumb_model::diff::is_secret(&self.object.group, &self.object.kind)
        {
            plumb_model::diff::redact_secret_pair(live.as_ref(), desired.as_ref())
        } else {
            (live, desired)
        };
        self.diff = textdiff::unified(live.as_ref(), desired.as_ref(), &self.object.to_string());
        self.live = live;
        self.desired = desired;
    }
}

/// Every difference of an Application.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// The Application.
    pub application: String,
    /// The commit compared.
    pub revision: Revision,
    /// Objects that differ (and, with `all`, those that do not).
    pub objects: Vec<ObjectDiff>,
}

impl DiffReport {
    /// Whether the cluster equals Git.
    pub fn in_sync(&self) -> bool {
        self.objects.iter().all(|o| o.state == "unchanged")
    }
}

/// One object's status.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ObjectStatus {
    /// Which object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// API version.
    pub version: String,
    /// Synced or OutOfSync.
    pub sync: SyncStatus,
    /// Its health.
    pub health: HealthStatus,
    /// Why, when not simply healthy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// An Application's status.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The Application's name.
    pub name: String,
    /// Synced or OutOfSync.
    pub sync: SyncStatus,
    /// Rolled-up health.
    pub health: HealthStatus,
    /// Commit of the last completed sync.
    pub revision: Option<Revision>,
    /// The commit Git points at now.
    pub target_revision: Revision,
    /// Counts by state.
    pub resources: ResourceCounts,
    /// Per object.
    pub objects: Vec<ObjectStatus>,
}

/// Object counts of a status.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceCounts {
    /// Objects in Git.
    pub total: usize,
    /// Equal to Git.
    pub synced: usize,
    /// Different from Git (including missing).
    pub out_of_sync: usize,
    /// In Git, absent from the cluster.
    pub missing: usize,
    /// Left Git, still in the cluster.
    pub requires_pruning: usize,
    /// Healthy objects.
    pub healthy: usize,
}
