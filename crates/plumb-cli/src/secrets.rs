//! `plumb secrets …`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

/// `plumb secrets` subcommands.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Find plaintext secrets in a directory, as `plumb sync` would refuse them (exit 1 when one would be refused).
    Scan(crate::secrets_scan::ScanArgs),
}

/// Run `plumb secrets …`.
pub async fn run(_data_dir: &Path, command: SecretsCommand) -> miette::Result<ExitCode> {
    match command {
        SecretsCommand::Scan(args) => crate::secrets_scan::run(args),
    }
}
