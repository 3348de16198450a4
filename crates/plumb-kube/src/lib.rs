//! plumb's hands on a cluster.
//!
//! Everything that talks to a Kubernetes API server lives here, behind a small
//! surface: [`Cluster`] (a client plus a discovery cache that refreshes when a
//! kind is unknown), [`connect`] (an Application's destination resolved through
//! the kubeconfig), the [`inventory`] stored in the cluster, and the
//! [`engine`] that diffs, syncs, prunes and assesses health.
//!
//! The engine never compares a manifest with a live object by itself: it asks
//! the server, with a server-side-apply dry run, what applying would produce,
//! and compares that with the live object (see `plumb_model::diff`). It applies
//! with field manager `plumb`, forcing conflicts, in waves and stages, and
//! writes the inventory *before* it creates anything so that a crash never
//! leaves an object nobody owns. Prune deletes only inventory members that
//! carry this Application's tracking id.
//!
//! This crate must not fetch Git or render; it receives rendered manifests.

pub mod cluster;
pub mod destination;
pub mod engine;
pub mod error;
pub mod inventory;
mod prepare;
pub mod report;
pub mod textdiff;

pub use cluster::{Cluster, ClusterError};
pub use destination::{DestinationError, config_for, connect};
pub use engine::Engine;
pub use error::{SyncError, api_error_text};
pub use report::{
    DiffReport, ObjectDiff, ObjectStatus, Progress, ResourceCounts, StatusReport, SyncOptions,
    SyncReport,
};
