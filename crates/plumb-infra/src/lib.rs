//! plumb's infrastructure-as-code engine: Terraform-language stacks planned
//! and applied through the real provider binaries, as a library.
//!
//! This crate owns the language (parsing with hcl-edit, evaluation with
//! unknowns, sensitive marks and arbitrary-precision numbers, the built-in
//! functions), the dependency graph and its parallel walk, plan and apply,
//! saved plans, state edits, provider installation from a local mirror with
//! `.terraform.lock.hcl`, the text and JSON representations of plans and
//! state, and the secrets a stack reads or keeps: SOPS-encrypted variable
//! files and `sops_file()` (decrypted in memory with plumb-secrets), and the
//! `encryption` block that keeps state sealed at rest. Its front door is [`Stack`]: a stack directory given explicitly,
//! opened with the caller's [`Environment`], whose operations return typed
//! [`InfraError`]s and report progress through the [`Progress`] trait.
//!
//! It has no command line (plumb-cli presents it), builds no runtime, never
//! changes the working directory and reads no environment variable; it
//! talks to providers only through plumb-tfplugin and stores state only
//! through plumb-state, and it knows nothing about Kubernetes. The age keys it
//! decrypts with are the caller's, passed in the [`Environment`].

pub mod addr;
pub mod coerce;
pub mod config;
pub mod diag;
pub mod encryption;
pub mod engine;
pub mod environment;
pub mod error;
pub mod eval;
pub mod expand;
pub mod fmt;
pub mod functions;
pub mod modules;
pub mod outcome;
pub mod parse;
pub mod planfile;
pub mod progress;
pub mod providers;
pub mod references;
pub mod render;
pub mod run;
pub mod show;
pub mod stack;
pub mod state_edit;
pub mod statewriter;
pub mod validate;
pub mod vars;

pub use environment::Environment;
pub use error::InfraError;
pub use outcome::{Action, Change, WalkResult};
pub use planfile::PlanFile;
pub use progress::Progress;
pub use providers::ProviderCatalog;
pub use run::Run;
pub use stack::{Stack, TOOL_VERSION};
pub use vars::{RootValues, VariableArg};
