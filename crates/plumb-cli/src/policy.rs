//! `--policy FILE` for `plumb sync|diff|status|agent`, and `plumb policy check`.
//!
//! The gate itself lives in plumb-policy; this module reads the file, builds
//! the gate with registry credentials from this process's environment
//! (`PLUMB_REGISTRY_USERNAME`/`_PASSWORD`, else the docker `config.json`),
//! and presents verdicts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use miette::Diagnostic;
use plumb_oci::credentials::Credentials;
use plumb_pipeline::Checks;
use plumb_policy::{Gate, ImageVerdict, PolicyError, PolicyFile, RegistryAccess};

use crate::gitops::{Output, Session, ViewArgs};

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error(transparent)]
#[diagnostic(help(
    "fix the policy file; nothing was checked or applied (see docs/POLICY.md for the format)"
))]
pub struct BadPolicy(#[from] PolicyError);

/// The deploy gate for `file`, reaching registries as this process would and
/// remembering proven signatures under `data_dir`.
pub fn gate(data_dir: &Path, file: &Path, enforce_on_drift: bool) -> Result<Gate, BadPolicy> {
    let policies = PolicyFile::load(file)?;
    let access = RegistryAccess {
        credentials: Arc::new(|host: &str| {
            Credentials::from_environment(host, |name: &str| std::env::var_os(name))
        }),
        ..Default::default()
    };
    Ok(Gate::new(policies, access)
        .with_cache_dir(data_dir.join("policy"))
        .with_enforce_on_drift(enforce_on_drift))
}

/// The checks a `--policy` flag asks for (none without it).
pub fn checks(
    data_dir: &Path,
    file: Option<&Path>,
    enforce_on_drift: bool,
) -> Result<Checks, BadPolicy> {
    Ok(Checks(match file {
        Some(f) => vec![Arc::new(gate(data_dir, f, enforce_on_drift)?)],
        None => Vec::new(),
    }))
}

/// `plumb policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the deploy gate's verdict for every image of each Application, without touching the cluster (exit 1 when one is refused).
    Check(CheckArgs),
}

/// `plumb policy check` arguments.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    view: ViewArgs,
}

/// Run `plumb policy …`.
pub async fn run(data_dir: &Path, command: PolicyCommand) -> miette::Result<ExitCode> {
    match command {
        PolicyCommand::Check(args) => check(data_dir, args).await,
    }
}

#[derive(serde::Serialize)]
struct Report {
    application: String,
    admitted: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    application_denials: Vec<String>,
    images: Vec<ImageVerdict>,
}

async fn check(data_dir: &Path, args: CheckArgs) -> miette::Result<ExitCode> {
    let Some(policy) = args.view.common.policy.clone() else {
        return Err(miette::miette!(
            help = "pass the policy to check against: plumb policy check APP.yaml --policy FILE",
            "no --policy given"
        ));
    };
    let gate = gate(data_dir, &policy, false)?;
    // Render without the gate: its verdicts are what this command prints.
    let session = Session::without_checks(data_dir, &args.view.common)?;
    let files = crate::gitops::load_all(&args.view.common.apps)?;
    let mut reports = Vec::new();
    let mut all_admitted = true;
    for file in files {
        let app = file.application.clone();
        let prepared = session
            .prepare_only(file)
            .await
            .map_err(miette::Report::from)?;
        let eval = gate.evaluate(&app, &prepared.rendered.manifests).await;
        all_admitted &= eval.admitted();
        let report = Report {
            application: app.key(),
            admitted: eval.admitted(),
            application_denials: eval.application.iter().map(|d| d.reason.clone()).collect(),
            images: eval.verdicts,
        };
        if args.view.output == Output::Text {
            print_text(&report);
        }
        reports.push(report);
    }
    crate::gitops::finish(&reports, args.view.output, all_admitted)
}

fn print_text(r: &Report) {
    println!(
        "{} {}: {}",
        if r.admitted { "✓" } else { "✗" },
        r.application,
        if r.admitted { "admitted" } else { "refused" }
    );
    for d in &r.application_denials {
        println!("  ✗ {d}");
    }
    for v in &r.images {
        let digest = v
            .digest
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "  {} {} {} ({}) {digest}",
            if v.admitted() { "✓" } else { "✗" },
            v.object,
            v.image,
            v.origin
        );
        for d in &v.denials {
            println!("      ✗ [{}, policy {}]: {}", d.rule, d.policy, d.reason);
        }
    }
}

/// Where a `--policy` flag points, for commands that also take the agent's
/// extra switch.
#[derive(Debug, Args, Default, Clone)]
pub struct AgentPolicyArgs {
    /// Deploy policy: refuse images that are not immutably tagged, signed and scanned (see docs/POLICY.md).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Refuse a self-heal of an already admitted commit when the policy no longer admits it (default: warn and heal).
    #[arg(long, requires = "policy")]
    pub enforce_on_drift: bool,
}
