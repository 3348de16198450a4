//! plumb's domain model, free of I/O.
//!
//! Everything here is plain data and pure functions over it: the identity of a
//! Kubernetes object ([`Gvk`], [`ObjectRef`]), the vocabulary of sync and
//! health ([`SyncStatus`], [`HealthStatus`]). Other crates fetch, render,
//! apply and store; this crate only describes. It must never depend on tokio,
//! the file system or the network, so that every rule it encodes can be unit
//! tested in microseconds.

pub mod id;
pub mod status;

pub use id::{Gvk, ObjectRef};
pub use status::{HealthStatus, SyncStatus};
