//! The agent: keeps every Application equal to Git, for months.
//!
//! [`Agent`] owns the loop. Work arrives as triggers — a Git poll saw a new
//! commit, a push webhook named a repository, a watch saw a managed object
//! change, an Application file changed, an API user asked — and each trigger
//! reconciles one Application: resolve the commit, render (cached), diff with
//! the cluster, sync when the policy says so, record status and history,
//! notify. Reconciles of different Applications run concurrently up to
//! `parallelism`; one Application is never reconciled twice at once, and
//! triggers that arrive while it runs fold into one follow-up run. A failing
//! Application backs off exponentially and never holds up the others.
//!
//! Git is polled once per repository per interval with a ref listing (no
//! fetch unless a ref moved). The cluster is watched, metadata only, for
//! exactly the kinds and namespaces the Applications manage and only objects
//! carrying plumb's label, so nothing unmanaged is cached. Status, history and
//! rollback pins live in the [`store::Store`].
//!
//! Rendering goes through `plumb-pipeline`, the same code `plumb sync` runs,
//! so a check added there holds for the agent too.
//!
//! This crate must not serve HTTP; `plumb-server` does, through [`Agent`]'s
//! methods.

pub mod install;
pub mod metrics;
pub mod notify;
pub mod status;
pub mod store;
pub mod webhook;

mod agent;
mod config;
mod error;
mod files;
mod objects;
mod ops;
mod poll;
mod reconcile;
mod record;
mod state;
mod watch;

pub use agent::Agent;
pub use config::AgentConfig;
pub use error::AgentError;
pub use objects::{CASCADE_FINALIZER, REFRESH_ANNOTATION, application_resource};
pub use ops::{ApplicationFilter, Page};
pub use status::{AppStatus, HistoryEntry, Phase};
pub use store::{Role, Store};
