//! plumb's infrastructure-as-code engine: Terraform-language stacks planned
//! and applied through the real provider binaries.
//!
//! This crate owns the language (parsing with hcl-edit, evaluation with
//! unknowns, sensitive marks and arbitrary-precision numbers, the built-in
//! functions), the dependency graph and its parallel walk, plan and apply,
//! provider installation from a local mirror with `.terraform.lock.hcl`, and
//! the `plumb infra` command line. It talks to providers only through
//! plumb-tfplugin and stores state only through plumb-state; it must not
//! reach into either's internals, and it knows nothing about Kubernetes.

pub mod addr;
pub mod cli;
pub mod coerce;
pub mod config;
pub mod diag;
pub mod engine;
pub mod eval;
pub mod fmt;
pub mod functions;
pub mod modules;
pub mod parse;
pub mod progress;
pub mod providers;
pub mod references;
pub mod render;
pub mod show;
pub mod statewriter;
pub mod ui;
pub mod validate;
pub mod vars;

pub use cli::{InfraArgs, run};
