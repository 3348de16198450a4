//! The `plumb` command.
//!
//! This binary is the edge of plumb: it parses arguments with clap, sets up
//! tracing, runs the library crates and turns their errors into messages that
//! say what went wrong and what to do next (miette). Domain logic does not live
//! here.

mod agent_cmd;
mod artifact;
mod gitops;
mod health;
mod infra;
mod install;
mod policy;
mod registry;
mod remote;
mod scan;
mod secret_refs;
mod secrets;
mod secrets_scan;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// plumb keeps real infrastructure exactly as Git declares it.
#[derive(Debug, Parser)]
#[command(name = "plumb", version, about, long_about = None)]
struct Cli {
    /// Where plumb keeps caches and state (default: $PLUMB_DATA_DIR, then ~/.local/share/plumb).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make the cluster equal to Git for each Application (server-side apply, staged, then prune).
    Sync(gitops::SyncArgs),
    /// Show what differs between Git and the cluster (exit 0: equal, 1: differs, 2: error).
    Diff(gitops::ViewArgs),
    /// Show sync and health status of each Application.
    Status(gitops::ViewArgs),
    /// Show the health plumb gives an object: custom Lua scripts first (as Argo CD), then built-in rules.
    Health(health::HealthCommandArgs),
    /// Keep Applications equal to Git continuously: poll and webhooks, self-heal, history, API, UI, metrics.
    Agent(agent_cmd::AgentArgs),
    /// Install plumb into the current cluster: Application, AppProject and ApplicationSet CRDs, RBAC, the agent.
    Install(install::InstallArgs),
    /// Show an Application's sync history (from a running agent).
    History(remote::HistoryArgs),
    /// Sync an older commit (SHA or history id) and pause automated sync until resume.
    Rollback(remote::RollbackArgs),
    /// Resume automated sync after a rollback.
    Resume(remote::ResumeArgs),
    /// Deploy policy: what images may run.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Secrets in Git: SOPS files with age keys (encrypt, which sops reads, and decrypt) and plaintext ones found.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run plumb's OCI registry.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Push, sign, verify and scan artifacts in any OCI registry.
    #[command(subcommand)]
    Artifact(artifact::ArtifactCommand),
    /// The offline OSV advisory database `plumb artifact scan` matches against.
    #[command(subcommand)]
    Advisories(scan::advisories::AdvisoriesCommand),
    /// Plan and apply Terraform-language stacks through real providers
    /// (`plumb infra --help`).
    #[command(disable_help_flag = true)]
    Infra {
        /// Arguments for plumb infra (Terraform-style flags accepted).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token (works whether or not an agent runs on the data dir); prints it alone on stdout.
    Create(agent_cmd::TokenCreateArgs),
    /// List tokens: id, name, role and creation time (never the tokens themselves).
    List(agent_cmd::TokenListArgs),
    /// Revoke a token by its id (from `plumb token list`) or its name; a running agent refuses it within 5 seconds.
    Revoke(agent_cmd::TokenRevokeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    // PLUMB_LOG, else the usual RUST_LOG, else -q/-v.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PLUMB_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    // Error text is data (URLs, paths): never wrap it.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(gitops::default_data_dir);
    // One TLS provider for every client and server in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let command = cli.command;
    let error_code = match command {
        Command::Diff(_) | Command::Artifact(artifact::ArtifactCommand::Scan(_)) => 2,
        _ => 1,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error_code);
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Sync(args) => gitops::sync(&data_dir, args).await,
            Command::Diff(args) => gitops::diff(&data_dir, args).await,
            Command::Status(args) => gitops::status(&data_dir, args).await,
            Command::Agent(args) => agent_cmd::agent(&data_dir, args).await,
            Command::Install(args) => install::install(args).await,
            Command::Health(args) => health::health(args).await,
            Command::History(args) => remote::history(args).await,
            Command::Rollback(args) => remote::rollback(args).await,
            Command::Resume(args) => remote::resume(args).await,
            Command::Token(TokenCommand::Create(args)) => agent_cmd::token_create(&data_dir, args),
            Command::Token(TokenCommand::List(args)) => agent_cmd::token_list(&data_dir, args),
            Command::Token(TokenCommand::Revoke(args)) => agent_cmd::token_revoke(&data_dir, args),
            Command::Registry(c) => registry::run(c).await,
            Command::Artifact(c) => artifact::run(&data_dir, c).await,
            Command::Advisories(c) => scan::advisories::run(&data_dir, c),
            Command::Infra { args } => infra::run(args).await,
            Command::Policy(c) => policy::run(&data_dir, c).await,
            Command::Secrets(c) => secrets::run(c),
        }
    });
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(error_code)
        }
    }
}
