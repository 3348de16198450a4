//! What the agent knows and says about each Application.

use plumb_kube::ObjectStatus;
use plumb_kube::ResourceCounts;
use plumb_model::sync::{ActionCounts, ObjectResult};
use plumb_model::{HealthStatus, SyncStatus};
use serde::{Deserialize, Serialize};

/// What the agent is doing with an Application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Phase {
    /// Not yet reconciled.
    #[default]
    Pending,
    /// Reconciled; nothing to do or automation off.
    Idle,
    /// A sync is running.
    Syncing,
    /// The last reconcile or sync failed; retrying with backoff.
    Failed,
}

/// An Application's status, as the API and UI show it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// `namespace/name` (the identity).
    pub key: String,
    /// Name.
    pub name: String,
    /// The Application's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The file it was read from.
    pub source_file: String,
    /// Repository of the first source.
    pub repo_url: String,
    /// Path of the first source.
    pub path: String,
    /// targetRevision of the first source.
    pub target_revision: String,
    /// Destination server.
    pub destination_server: String,
    /// Destination namespace.
    pub destination_namespace: String,
    /// Synced, OutOfSync or Unknown.
    pub sync: SyncStatus,
    /// Rolled-up health.
    pub health: HealthStatus,
    /// Commit of the last completed sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Commit Git points at now (or the pinned commit while suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
    /// Automated sync configured.
    pub automated: bool,
    /// Self-heal configured.
    pub self_heal: bool,
    /// Prune configured.
    pub prune: bool,
    /// Pinned by a rollback to this commit; automated sync paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<String>,
    /// What the agent is doing.
    pub phase: Phase,
    /// The last error, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Why the deploy gate refused the last commit (one line per image and
    /// rule); empty when it was admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<String>,
    /// Why the secret scan refused the last commit (one line per finding:
    /// `file:line:col: rule: what`, never a value); empty when admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_findings: Vec<String>,
    /// When the last sync finished (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<i64>,
    /// When it was last compared with Git (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile: Option<i64>,
    /// Counts.
    #[serde(default)]
    pub resources: ResourceCounts,
    /// Per object.
    #[serde(default)]
    pub objects: Vec<ObjectStatus>,
}

/// One sync, as history keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Per-Application sequence number.
    pub id: u64,
    /// The commit synced.
    pub revision: String,
    /// Its author.
    #[serde(default)]
    pub author: String,
    /// Its subject line.
    #[serde(default)]
    pub message: String,
    /// Its time (seconds since the epoch).
    #[serde(default)]
    pub commit_time: i64,
    /// When the sync finished (seconds since the epoch).
    #[serde(default)]
    pub synced_at: i64,
    /// What started it: `automated`, `self-heal`, `manual`, `rollback`.
    #[serde(default)]
    pub trigger: String,
    /// `succeeded` or `failed`.
    #[serde(default)]
    pub result: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Totals.
    #[serde(default)]
    pub counts: ActionCounts,
    /// Per object.
    #[serde(default)]
    pub actions: Vec<ObjectResult>,
}
