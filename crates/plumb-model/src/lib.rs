//! plumb's domain model, free of I/O.
//!
//! Everything here is plain data and pure functions over it: the identity of a
//! Kubernetes object ([`Gvk`], [`ObjectRef`]); the Argo CD [`Application`] as
//! plumb reads it; a rendered object and where it came from ([`Manifest`],
//! [`Origin`]); which commit of each source is meant ([`Revision`]); how
//! desired and live objects are compared ([`diff`]); how healthy a live
//! object is ([`health`]); what an Application owns ([`inventory`]); and how
//! a sync is ordered and what it did ([`sync`]).
//! Other crates fetch, render, apply and store; this crate only describes. It
//! must never depend on tokio, the file system or the network, so that every
//! rule it encodes can be unit tested in microseconds.

pub mod application;
pub mod diff;
pub mod health;
pub mod id;
pub mod inventory;
pub mod manifest;
pub mod revision;
pub mod status;
pub mod sync;

pub use application::Application;
pub use health::Health;
pub use id::{Gvk, ObjectRef};
pub use inventory::{Inventory, InventoryEntry};
pub use manifest::{Manifest, Origin};
pub use revision::{Revision, RevisionError};
pub use status::{HealthStatus, SyncStatus};
