//! The `plumb infra` command line: Terraform's verbs and flags, as clap
//! definitions.
//!
//! Terraform writes long flags with one dash (`-auto-approve`,
//! `-out=FILE`); plumb accepts both that and the usual two dashes, by
//! rewriting single-dash long flags before clap sees them
//! ([`normalize_args`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use plumb_infra::VariableArg;

use super::report::Failure;

/// Plan and apply Terraform-language stacks through real providers.
#[derive(Debug, Parser)]
#[command(
    name = "plumb infra",
    about = "plumb's infrastructure-as-code engine: Terraform-language stacks planned and applied through real providers.",
    disable_version_flag = true
)]
pub struct InfraArgs {
    /// Run as if started in DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// age key file for SOPS-encrypted variable files and sops_file() (also
    /// $SOPS_AGE_KEY_FILE; keys in $SOPS_AGE_KEY and
    /// ~/.config/sops/age/keys.txt are used too).
    #[arg(long, global = true, value_name = "FILE", env = "SOPS_AGE_KEY_FILE")]
    pub sops_age_key_file: Option<PathBuf>,
    /// age key file that opens an encrypted state (also
    /// $PLUMB_STATE_AGE_KEY_FILE); without it, the SOPS keys are used.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "PLUMB_STATE_AGE_KEY_FILE"
    )]
    pub state_age_key_file: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by plan, apply and destroy.
#[derive(Debug, Args, Clone, Default)]
pub struct PlanFlags {
    /// Set a variable: NAME=VALUE.
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Load variables from a .tfvars file.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<String>,
    /// Only these resources (and what they depend on).
    #[arg(long = "target", value_name = "ADDRESS")]
    pub targets: Vec<String>,
    /// Replace these instances even if unchanged.
    #[arg(long = "replace", value_name = "ADDRESS")]
    pub replace: Vec<String>,
    /// Refresh state from providers first (default true).
    #[arg(long, value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set)]
    pub refresh: bool,
    /// Concurrent provider operations.
    #[arg(long, default_value_t = 10)]
    pub parallelism: usize,
    /// Wait this long for the state lock (e.g. 30s).
    #[arg(long = "lock-timeout", default_value = "0s")]
    pub lock_timeout: String,
    /// Stream the machine-readable UI: one JSON object per line (for the
    /// plan as a JSON document, save it with -out and run show -json).
    #[arg(long)]
    pub json: bool,
    /// Never prompt.
    #[arg(long = "input", value_name = "BOOL", default_value = "true", action = clap::ArgAction::Set)]
    pub input: bool,
    /// Plaintext secrets in the configuration: refuse, warn or allow.
    #[arg(long = "secrets-plaintext", value_name = "MODE", default_value = "refuse", value_parser = crate::secrets_scan::parse_mode)]
    pub secrets_plaintext: plumb_secrets::scan::Mode,
}

impl PlanFlags {
    /// The variable sources in the order they apply: files first, then
    /// single values, so a -var always wins over a -var-file.
    pub fn variables(&self) -> Vec<VariableArg> {
        let files = self
            .var_files
            .iter()
            .map(|f| VariableArg::File(PathBuf::from(f)));
        let values = self.vars.iter().map(|v| VariableArg::Value(v.clone()));
        files.chain(values).collect()
    }

    /// How long to wait for the state lock.
    pub fn lock_timeout(&self) -> Result<Duration, Failure> {
        parse_duration(&self.lock_timeout)
    }
}

/// `plumb infra` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install providers from the plugin mirror and write .terraform.lock.hcl.
    Init {
        /// A plugin mirror directory (Terraform layout).
        #[arg(long = "plugin-dir")]
        plugin_dirs: Vec<PathBuf>,
        /// Accepted for compatibility.
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        upgrade: Option<bool>,
        /// Accepted for compatibility.
        #[arg(long = "input", value_name = "BOOL", action = clap::ArgAction::Set)]
        input: Option<bool>,
    },
    /// Check the configuration against provider schemas.
    Validate {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show what apply would change.
    Plan {
        /// Shared flags.
        #[command(flatten)]
        flags: PlanFlags,
        /// Save the plan to FILE.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exit 0 for no changes, 2 for changes, 1 for errors.
        #[arg(long = "detailed-exitcode")]
        detailed_exitcode: bool,
        /// Plan to destroy everything.
        #[arg(long)]
        destroy: bool,
    },
    /// Apply changes (or a saved plan).
    Apply {
        /// Shared flags.
        #[command(flatten)]
        flags: PlanFlags,
        /// Skip the approval prompt.
        #[arg(long = "auto-approve")]
        auto_approve: bool,
        /// Destroy instead.
        #[arg(long)]
        destroy: bool,
        /// A plan saved with plan -out.
        plan_file: Option<PathBuf>,
    },
    /// Destroy everything in state.
    Destroy {
        /// Shared flags.
        #[command(flatten)]
        flags: PlanFlags,
        /// Skip the approval prompt.
        #[arg(long = "auto-approve")]
        auto_approve: bool,
    },
    /// Show output values.
    Output {
        /// One output.
        name: Option<String>,
        /// JSON.
        #[arg(long)]
        json: bool,
        /// The raw string value.
        #[arg(long)]
        raw: bool,
    },
    /// Show the state or a saved plan.
    Show {
        /// A saved plan.
        plan_file: Option<PathBuf>,
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring an existing object under management.
    Import {
        /// Shared flags.
        #[command(flatten)]
        flags: PlanFlags,
        /// Resource address.
        address: String,
        /// The provider's id for it.
        id: String,
    },
    /// Rewrite .tf files in the canonical style.
    Fmt {
        /// Only check; exit 3 when files need formatting.
        #[arg(long)]
        check: bool,
        /// Files or directories.
        paths: Vec<PathBuf>,
    },
    /// Remove a lock by its ID.
    ForceUnlock {
        /// Do not ask.
        #[arg(long)]
        force: bool,
        /// The lock ID.
        id: String,
    },
    /// Inspect or change state.
    #[command(subcommand)]
    State(StateCommand),
}

/// `plumb infra state` subcommands.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List instance addresses.
    List {
        /// Filter by address prefix.
        filters: Vec<String>,
    },
    /// Show one instance.
    Show {
        /// Address.
        address: String,
    },
    /// Forget instances (the objects stay).
    Rm {
        /// Addresses.
        addresses: Vec<String>,
    },
    /// Move an instance to another address.
    Mv {
        /// From.
        source: String,
        /// To.
        destination: String,
    },
}

/// Rewrites Terraform-style single-dash long flags (`-auto-approve`,
/// `-out=plan`) as `--auto-approve`, `--out=plan`.
pub fn normalize_args(args: Vec<String>) -> Vec<String> {
    args.into_iter()
        .map(|a| {
            if a.len() > 2
                && a.starts_with('-')
                && !a.starts_with("--")
                && a.as_bytes()[1].is_ascii_alphabetic()
            {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

/// A duration like `30s`, `2m`, `1h`, `500ms` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, Failure> {
    let s = s.trim();
    let invalid = || {
        Failure::new(
            format!("invalid duration {s:?}"),
            "use a value like 30s or 2m",
        )
    };
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| invalid())?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(invalid()),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        let args = normalize_args(vec![
            "-auto-approve".into(),
            "-out=x".into(),
            "-v".into(),
            "--json".into(),
            "-1".into(),
        ]);
        assert_eq!(args, ["--auto-approve", "--out=x", "-v", "--json", "-1"]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("0").ok(), Some(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
    }
}
