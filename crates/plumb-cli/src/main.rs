//! The `plumb` command.
//!
//! This binary is the edge of plumb: it parses arguments with clap, sets up
//! tracing, runs the library crates and turns their errors into messages that
//! say what went wrong and what to do next. Domain logic does not live here.

use clap::Parser;

/// plumb keeps real infrastructure exactly as Git declares it.
#[derive(Debug, Parser)]
#[command(name = "plumb", version, about, long_about = None)]
struct Cli {
    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Option<Commands>,
}

#[derive(Debug, clap::Subcommand)]
enum Commands {
    /// Plan and apply Terraform-language stacks through real providers
    /// (`plumb infra --help`).
    #[command(disable_help_flag = true)]
    Infra {
        /// Arguments for plumb infra (Terraform-style flags accepted).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> miette::Result<()> {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PLUMB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Some(Commands::Infra { args }) => std::process::exit(plumb_infra::run(args)?),
        None => Ok(()),
    }
}
