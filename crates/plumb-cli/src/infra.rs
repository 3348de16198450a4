//! `plumb infra`: Terraform's verbs, flags, exit codes and output shapes
//! over plumb-infra.
//!
//! This is the command line of the infrastructure-as-code engine and
//! nothing more: it parses arguments, resolves `-chdir` to the stack
//! directory it passes on, reads the process environment once, asks for
//! approval, draws progress, prints plans, outputs and state as text or
//! JSON, and presents errors with hints. Everything it does to a stack goes
//! through plumb-infra's typed API, inside the binary's one runtime.

mod args;
mod commands;
mod environment;
mod progress;
mod report;
mod run;
mod ui;

use std::process::ExitCode;

use clap::Parser;

/// Runs `plumb infra` with its arguments (those after `infra`).
pub async fn run(args: Vec<String>) -> miette::Result<ExitCode> {
    let mut full = vec!["plumb infra".to_string()];
    full.extend(args::normalize_args(args));
    let parsed = match args::InfraArgs::try_parse_from(full) {
        Ok(p) => p,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return Ok(ExitCode::from(code));
        }
    };
    commands::execute(parsed)
        .await
        .map(ExitCode::from)
        .map_err(report::Failure::into_report)
}
