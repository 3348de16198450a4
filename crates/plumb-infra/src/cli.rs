//! `plumb infra`: Terraform's verbs, flags, exit codes and output shapes.
//!
//! Terraform writes flags with one dash (`-auto-approve`, `-out=FILE`); plumb
//! accepts both that and the usual two dashes, by rewriting single-dash long
//! flags before clap sees them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use plumb_state::{
    AnyBackend, LocalBackend, LockInfo, LockLease, PgBackend, StateBackend, StateSnapshot,
};
use plumb_tfplugin::Value;

use crate::addr::{InstanceKey, parse_instance};
use crate::config::ModuleConfig;
use crate::diag::{ConfigError, Diag};
use crate::engine::{Action, Walk, WalkInput, WalkMode, WalkOptions, WalkResult};
use crate::progress::Progress;
use crate::providers::ProviderCatalog;
use crate::render;
use crate::statewriter::StateWriter;

const TOOL_VERSION: &str = concat!("plumb-", env!("CARGO_PKG_VERSION"));

/// Plan and apply Terraform-language stacks through real providers.
#[derive(Debug, Parser)]
#[command(name = "plumb infra", about, disable_version_flag = true)]
pub struct InfraArgs {
    /// Run as if started in DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
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

/// A failure of `plumb infra`, shown by miette with a hint.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum InfraError {
    /// Configuration problems.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigError),
    /// Anything else, with a hint.
    #[error("{message}")]
    Other {
        /// What went wrong.
        message: String,
        /// What to do.
        #[help]
        hint: Option<String>,
    },
}

impl From<Diag> for InfraError {
    fn from(d: Diag) -> Self {
        if d.file.is_some() {
            InfraError::Config(d.into())
        } else {
            InfraError::Other {
                message: d.message,
                hint: d.hint,
            }
        }
    }
}

impl From<plumb_state::StateError> for InfraError {
    fn from(e: plumb_state::StateError) -> Self {
        let hint = match &e {
            plumb_state::StateError::Locked(info) => Some(format!(
                "wait for that operation to finish, retry with -lock-timeout=60s, or if it is stuck run: plumb infra force-unlock {}",
                info.id
            )),
            plumb_state::StateError::LockMismatch { .. } => {
                Some("run plumb infra force-unlock with the ID shown by the locked command".into())
            }
            _ => None,
        };
        InfraError::Other {
            message: e.to_string(),
            hint,
        }
    }
}

fn other(message: impl Into<String>, hint: impl Into<String>) -> InfraError {
    InfraError::Other {
        message: message.into(),
        hint: Some(hint.into()),
    }
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

/// Runs `plumb infra` with its arguments (after "infra"); returns the exit code.
pub fn run(args: Vec<String>) -> Result<i32, miette::Report> {
    let mut full = vec!["plumb infra".to_string()];
    full.extend(normalize_args(args));
    let parsed = match InfraArgs::try_parse_from(full) {
        Ok(p) => p,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return Ok(code);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| miette::miette!("cannot start the runtime: {e}"))?;
    rt.block_on(run_parsed(parsed)).map_err(miette::Report::new)
}

fn parse_duration(s: &str) -> Result<Duration, InfraError> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| {
        other(
            format!("invalid duration {s:?}"),
            "use a value like 30s or 2m",
        )
    })?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(other(
                format!("invalid duration {s:?}"),
                "use a value like 30s or 2m",
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

struct Stack {
    dir: PathBuf,
    config: Arc<ModuleConfig>,
}

impl Stack {
    fn load(dir: &Path) -> Result<Stack, InfraError> {
        let config = crate::parse::load(dir)?;
        Ok(Stack {
            dir: dir.to_path_buf(),
            config: Arc::new(config),
        })
    }

    fn backend(&self) -> Result<AnyBackend, InfraError> {
        match &self.config.backend {
            None => Ok(AnyBackend::Local(LocalBackend::new(
                self.dir.join("terraform.tfstate"),
            ))),
            Some(b) => {
                let attr = |name: &str| -> Result<Option<String>, InfraError> {
                    match b.body.get_attribute(name) {
                        Some(a) => {
                            let v = crate::vars::literal(&a.value, &b.origin.file, &self.dir)?;
                            Ok(v.as_str().map(str::to_string))
                        }
                        None => Ok(None),
                    }
                };
                match b.kind.as_str() {
                    "local" => {
                        let p = attr("path")?.unwrap_or_else(|| "terraform.tfstate".into());
                        Ok(AnyBackend::Local(LocalBackend::new(self.dir.join(p))))
                    }
                    "pg" => {
                        let conn = attr("conn_str")?
                            .or_else(|| std::env::var("PG_CONN_STR").ok())
                            .ok_or_else(|| {
                                InfraError::from(
                                    b.origin
                                        .diag("the pg backend needs conn_str")
                                        .hint("set conn_str in the backend block or PG_CONN_STR"),
                                )
                            })?;
                        Ok(AnyBackend::Pg(PgBackend::new(conn)))
                    }
                    other => Err(b
                        .origin
                        .diag(format!("backend {other:?} is not supported"))
                        .hint("use local or pg")
                        .into()),
                }
            }
        }
    }
}

async fn lock(backend: &AnyBackend, op: &str, timeout: &str) -> Result<LockLease, InfraError> {
    let info = LockInfo::for_operation(op, &backend.describe(), TOOL_VERSION, &lock_holder());
    let lease = backend.lock(info, parse_duration(timeout)?).await?;
    if let Some(stale) = &lease.took_over {
        eprintln!(
            "Taking over a stale state lock: {} — its holder is gone (Terraform would leave it for force-unlock).",
            stale.describe()
        );
    }
    Ok(lease)
}

/// Who takes state locks: the `USER` running plumb.
pub(crate) fn lock_holder() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

fn cli_vars(flags: &PlanFlags) -> Vec<(bool, String)> {
    // Files first, then single values: a -var always wins over a -var-file.
    let mut out: Vec<(bool, String)> = flags.var_files.iter().map(|f| (true, f.clone())).collect();
    out.extend(flags.vars.iter().map(|v| (false, v.clone())));
    out
}

fn options(flags: &PlanFlags, mode: WalkMode) -> Result<WalkOptions, InfraError> {
    let parse = |list: &[String]| -> Result<Vec<crate::addr::InstanceAddr>, InfraError> {
        list.iter()
            .map(|t| {
                parse_instance(t)
                    .map_err(|m| other(m, "write the address like random_id.a or random_id.a[0]"))
            })
            .collect()
    };
    // A target that is only a module path takes in everything in it.
    let (module_targets, targets): (Vec<_>, Vec<_>) = flags.targets.iter().cloned().partition(
        |t| matches!(crate::addr::split_module_path(t.trim()), Ok((p, "")) if !p.is_empty()),
    );
    let module_targets = module_targets
        .iter()
        .filter_map(|t| {
            crate::addr::split_module_path(t.trim())
                .ok()
                .map(|(p, _)| p)
        })
        .collect();
    Ok(WalkOptions {
        mode,
        refresh: flags.refresh,
        parallelism: flags.parallelism,
        targets: parse(&targets)?,
        module_targets,
        replace: parse(&flags.replace)?,
        expected: None,
        plan_only: false,
    })
}

/// Progress of a walk that plans: refresh lines with `-json`, else none.
fn planning_progress(flags: &PlanFlags) -> Progress {
    if flags.json {
        Progress::json(true)
    } else {
        Progress::hidden()
    }
}

/// `apply` and `destroy`: lock, plan, ask, apply, unlock.
async fn apply_cmd(
    dir: &Path,
    flags: &PlanFlags,
    auto_approve: bool,
    destroy: bool,
    plan_file: Option<&Path>,
) -> Result<i32, InfraError> {
    if flags.json {
        crate::ui::version(TOOL_VERSION);
    }
    let r = async {
        let stack = Stack::load(dir)?;
        let catalog = Arc::new(ProviderCatalog::load(dir, &stack.config)?);
        let backend = stack.backend()?;
        let lease = lock(&backend, "OperationTypeApply", &flags.lock_timeout).await?;
        let r = apply_inner(
            &stack,
            &catalog,
            &backend,
            flags,
            auto_approve,
            destroy,
            plan_file,
        )
        .await;
        backend.unlock(lease).await?;
        r
    }
    .await;
    json_errors(flags.json, r)
}

/// With `-json`, an error becomes `diagnostic` lines and exit code 1.
fn json_errors(json: bool, r: Result<i32, InfraError>) -> Result<i32, InfraError> {
    match r {
        Err(e) if json => {
            match &e {
                InfraError::Config(c) => c.diags.iter().for_each(crate::ui::diagnostic),
                InfraError::Other { message, hint } => {
                    let mut d = Diag::new(message.clone());
                    d.hint = hint.clone();
                    crate::ui::diagnostic(&d);
                }
            }
            Ok(1)
        }
        r => r,
    }
}

fn print_errors(result: &WalkResult, json: bool) {
    if json {
        for e in &result.errors {
            crate::ui::diagnostic(&e.diag);
        }
        return;
    }
    for e in &result.errors {
        let loc = e
            .diag
            .location()
            .map(|l| format!("\n  on {l}"))
            .unwrap_or_default();
        eprintln!("\nError: {}{loc}", e.diag.message);
        if let Some(h) = &e.diag.hint {
            eprintln!("  hint: {h}");
        }
    }
}

fn approve(what: &str) -> Result<bool, InfraError> {
    print!(
        "\nDo you want to {what}?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    );
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| other(format!("cannot read the answer: {e}"), "use -auto-approve"))?;
    Ok(line.trim() == "yes")
}

/// The saved plan file.
#[derive(serde::Serialize, serde::Deserialize)]
struct PlanFile {
    plumb_plan: u32,
    lineage: Option<String>,
    serial: Option<u64>,
    vars: BTreeMap<String, serde_json::Value>,
    targets: Vec<String>,
    replace: Vec<String>,
    refresh: bool,
    destroy: bool,
    actions: BTreeMap<String, Action>,
    rendered: String,
    json: serde_json::Value,
}

async fn run_parsed(args: InfraArgs) -> Result<i32, InfraError> {
    let mut dir = args.chdir.clone().unwrap_or_else(|| PathBuf::from("."));
    if !dir.is_dir() {
        return Err(other(
            format!("-chdir: {} is not a directory", dir.display()),
            "pass an existing stack directory",
        ));
    }
    if args.chdir.is_some() {
        // As with Terraform, -chdir switches the working directory before the
        // subcommand runs: relative -out, -var-file and plan-file paths are
        // read against the stack, not the shell's directory.
        dir = std::fs::canonicalize(&dir)
            .and_then(|d| std::env::set_current_dir(&d).map(|()| d))
            .map_err(|e| {
                other(
                    format!("-chdir: cannot enter {}: {e}", dir.display()),
                    "pass a stack directory plumb may read",
                )
            })?;
    }
    match args.command {
        Command::Init { plugin_dirs, .. } => {
            let stack = Stack::load(&dir)?;
            let dirs = if plugin_dirs.is_empty() {
                crate::providers::default_plugin_dirs()
            } else {
                plugin_dirs
            };
            let locked = ProviderCatalog::init(&dir, &stack.config, &dirs)?;
            for (source, l) in &locked {
                println!(
                    "- Installed {source} v{} ({})",
                    l.version,
                    l.hashes.join(", ")
                );
            }
            stack.backend()?;
            println!("\nplumb has been successfully initialized!");
            Ok(0)
        }
        Command::Validate { json } => {
            let stack = Stack::load(&dir)?;
            let catalog = ProviderCatalog::load(&dir, &stack.config)?;
            crate::engine::build_graph(&stack.config, None)?;
            let diags = crate::validate::check(&stack.config, &catalog).await;
            if json {
                let list: Vec<serde_json::Value> = diags.iter().map(|d| serde_json::json!({"severity": "error", "summary": d.message, "range": d.location()})).collect();
                println!(
                    "{}",
                    serde_json::json!({"valid": diags.is_empty(), "error_count": diags.len(), "warning_count": 0, "diagnostics": list})
                );
                return Ok(if diags.is_empty() { 0 } else { 1 });
            }
            if diags.is_empty() {
                println!("Success! The configuration is valid.");
                Ok(0)
            } else {
                Err(ConfigError::new(diags).into())
            }
        }
        Command::Plan {
            flags,
            out,
            detailed_exitcode,
            destroy,
        } => {
            if flags.json {
                crate::ui::version(TOOL_VERSION);
            }
            let r = async {
                let stack = Stack::load(&dir)?;
                let catalog = Arc::new(ProviderCatalog::load(&dir, &stack.config)?);
                let backend = stack.backend()?;
                let lease = lock(&backend, "OperationTypePlan", &flags.lock_timeout).await?;
                let result =
                    plan_inner(&stack, &catalog, &backend, &flags, destroy, out.as_deref()).await;
                backend.unlock(lease).await?;
                let (result, changed) = result?;
                if !result.errors.is_empty() {
                    print_errors(&result, flags.json);
                    return Ok(1);
                }
                Ok(if detailed_exitcode && changed { 2 } else { 0 })
            }
            .await;
            json_errors(flags.json, r)
        }
        Command::Apply {
            flags,
            auto_approve,
            destroy,
            plan_file,
        } => {
            let auto_approve = auto_approve || plan_file.is_some();
            apply_cmd(&dir, &flags, auto_approve, destroy, plan_file.as_deref()).await
        }
        Command::Destroy {
            flags,
            auto_approve,
        } => apply_cmd(&dir, &flags, auto_approve, true, None).await,
        Command::Output {
            name,
            json,
            raw: raw_flag,
        } => {
            let stack = Stack::load(&dir)?;
            let state = stack
                .backend()?
                .read()
                .await?
                .unwrap_or_else(|| StateSnapshot::new(TOOL_VERSION));
            output_cmd(&state, name.as_deref(), json, raw_flag)
        }
        Command::Show { plan_file, json } => {
            if let Some(p) = plan_file {
                let plan: PlanFile = read_plan(&p)?;
                if json {
                    println!("{}", plan.json);
                } else {
                    print!("{}", plan.rendered);
                }
                return Ok(0);
            }
            let stack = Stack::load(&dir)?;
            let state = stack.backend()?.read().await?;
            let Some(state) = state else {
                if json {
                    println!("{}", serde_json::json!({"format_version": "1.0"}));
                } else {
                    println!("No state.");
                }
                return Ok(0);
            };
            if json {
                println!("{}", crate::show::state_json(&state));
            } else {
                print!("{}", crate::show::state_human(&state, None));
            }
            Ok(0)
        }
        Command::Import { flags, address, id } => {
            let stack = Stack::load(&dir)?;
            let catalog = Arc::new(ProviderCatalog::load(&dir, &stack.config)?);
            let backend = stack.backend()?;
            let lease = lock(&backend, "OperationTypeImport", &flags.lock_timeout).await?;
            let r = crate::show::import(
                &stack.config,
                &catalog,
                &backend,
                &address,
                &id,
                TOOL_VERSION,
            )
            .await;
            backend.unlock(lease).await?;
            r?;
            println!(
                "{address}: Import prepared!\n\nImport successful!\n\nThe resources that were imported are shown above. These resources are now in\nyour plumb state and will henceforth be managed by plumb."
            );
            Ok(0)
        }
        Command::Fmt { check, paths } => crate::fmt::run(&dir, &paths, check),
        Command::ForceUnlock { id, .. } => {
            let stack = Stack::load(&dir)?;
            let info = stack.backend()?.force_unlock(&id).await?;
            println!(
                "plumb state has been successfully unlocked! (was: {})",
                info.describe()
            );
            Ok(0)
        }
        Command::State(sc) => {
            let stack = Stack::load(&dir)?;
            let backend = stack.backend()?;
            crate::show::state_cmd(sc, &backend, TOOL_VERSION).await
        }
    }
}

fn read_plan(p: &Path) -> Result<PlanFile, InfraError> {
    let bytes = std::fs::read(p).map_err(|e| {
        other(
            format!("cannot read plan {}: {e}", p.display()),
            "check the path",
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        other(
            format!("{} is not a plumb plan: {e}", p.display()),
            "create one with plumb infra plan -out=FILE",
        )
    })
}

async fn walk(
    stack: &Stack,
    catalog: &Arc<ProviderCatalog>,
    vars: BTreeMap<String, Value>,
    prior: StateSnapshot,
    opts: WalkOptions,
    writer: Option<StateWriter>,
    progress: Progress,
) -> Result<WalkResult, InfraError> {
    let r = Walk::run(
        WalkInput {
            root: stack.config.clone(),
            catalog: catalog.clone(),
            vars,
            prior,
            writer,
            progress: progress.clone(),
        },
        opts,
    )
    .await;
    progress.finish();
    Ok(r?)
}

async fn plan_inner(
    stack: &Stack,
    catalog: &Arc<ProviderCatalog>,
    backend: &AnyBackend,
    flags: &PlanFlags,
    destroy: bool,
    out: Option<&Path>,
) -> Result<(WalkResult, bool), InfraError> {
    let vars = crate::vars::collect(&stack.config, &cli_vars(flags))?;
    let existing = backend.read().await?;
    let prior = existing
        .clone()
        .unwrap_or_else(|| StateSnapshot::new(TOOL_VERSION));
    let mut opts = options(
        flags,
        if destroy {
            WalkMode::Destroy
        } else {
            WalkMode::Plan
        },
    )?;
    if destroy {
        opts.mode = WalkMode::Destroy;
    }
    let mut planning = opts.clone();
    planning.mode = if destroy {
        WalkMode::Destroy
    } else {
        WalkMode::Plan
    };
    // A destroy plan must not destroy: run it in plan mode over the state.
    let result = if destroy {
        destroy_plan(stack, catalog, vars.clone(), prior.clone(), planning).await?
    } else {
        walk(
            stack,
            catalog,
            vars.clone(),
            prior.clone(),
            planning,
            None,
            planning_progress(flags),
        )
        .await?
    };
    let rendered = render::human_plan(&result, destroy);
    let json = render::json_plan(&result);
    if result.errors.is_empty() {
        if flags.json {
            crate::ui::plan(&result);
        } else {
            print!("{rendered}");
        }
    }
    let changed = result
        .changes
        .iter()
        .any(|c| c.action != Action::NoOp || c.imported || c.moved_from.is_some())
        || !result.output_changes.is_empty();
    if let Some(path) = out
        && result.errors.is_empty()
    {
        let plan = PlanFile {
            plumb_plan: 1,
            lineage: existing.as_ref().map(|s| s.lineage.clone()),
            serial: existing.as_ref().map(|s| s.serial),
            vars: vars
                .iter()
                .map(|(k, v)| (k.clone(), plumb_tfplugin::value::to_json(v)))
                .collect(),
            targets: flags.targets.clone(),
            replace: flags.replace.clone(),
            refresh: flags.refresh,
            destroy,
            actions: result
                .changes
                .iter()
                .map(|c| (c.addr.to_string(), c.action))
                .collect(),
            rendered: rendered.clone(),
            json,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&plan).unwrap_or_default()).map_err(
            |e| {
                other(
                    format!("cannot write {}: {e}", path.display()),
                    "check the directory is writable",
                )
            },
        )?;
        if !flags.json {
            println!(
                "\nSaved the plan to: {}\n\nTo perform exactly these actions, run:\n    plumb infra apply {}",
                path.display(),
                path.display()
            );
        }
    }
    Ok((result, changed))
}

async fn destroy_plan(
    stack: &Stack,
    catalog: &Arc<ProviderCatalog>,
    vars: BTreeMap<String, Value>,
    prior: StateSnapshot,
    opts: WalkOptions,
) -> Result<WalkResult, InfraError> {
    // Plan-mode destroy: the walk records Delete changes without applying.
    let mut o = opts;
    o.mode = WalkMode::Destroy;
    let r = Walk::run(
        WalkInput {
            root: stack.config.clone(),
            catalog: catalog.clone(),
            vars,
            prior,
            writer: None,
            progress: Progress::hidden(),
        },
        WalkOptions {
            mode: WalkMode::Destroy,
            plan_only: true,
            ..o
        },
    )
    .await;
    Ok(r?)
}

#[allow(clippy::too_many_arguments)]
async fn apply_inner(
    stack: &Stack,
    catalog: &Arc<ProviderCatalog>,
    backend: &AnyBackend,
    flags: &PlanFlags,
    auto_approve: bool,
    destroy: bool,
    plan_file: Option<&Path>,
) -> Result<i32, InfraError> {
    let existing = backend.read().await?;
    let mut flags = flags.clone();
    let mut destroy = destroy;
    let (vars, expected) = match plan_file {
        Some(p) => {
            let plan = read_plan(p)?;
            let cur = (
                existing.as_ref().map(|s| s.lineage.clone()),
                existing.as_ref().map(|s| s.serial),
            );
            if cur != (plan.lineage.clone(), plan.serial) {
                return Err(other(
                    format!(
                        "saved plan is stale: it was made for state serial {:?} (lineage {:?}) but the state is now at serial {:?} (lineage {:?})",
                        plan.serial, plan.lineage, cur.1, cur.0
                    ),
                    "run plumb infra plan -out=FILE again and apply the new plan",
                ));
            }
            flags.targets = plan.targets.clone();
            flags.replace = plan.replace.clone();
            flags.refresh = plan.refresh;
            destroy = plan.destroy;
            let mut vars = BTreeMap::new();
            for (k, v) in &plan.vars {
                vars.insert(k.clone(), plumb_tfplugin::value::untyped_from_json(v));
            }
            (vars, Some(plan.actions))
        }
        None => (
            crate::vars::collect(&stack.config, &cli_vars(&flags))?,
            None,
        ),
    };
    let prior = existing
        .clone()
        .unwrap_or_else(|| StateSnapshot::new(TOOL_VERSION));
    if expected.is_none() {
        // Plan first, show it, ask.
        let mut o = options(
            &flags,
            if destroy {
                WalkMode::Destroy
            } else {
                WalkMode::Plan
            },
        )?;
        if !destroy {
            o.mode = WalkMode::Plan;
        }
        let planned = if destroy {
            destroy_plan(stack, catalog, vars.clone(), prior.clone(), o).await?
        } else {
            walk(
                stack,
                catalog,
                vars.clone(),
                prior.clone(),
                o,
                None,
                planning_progress(&flags),
            )
            .await?
        };
        if !planned.errors.is_empty() {
            print_errors(&planned, flags.json);
            return Ok(1);
        }
        if flags.json {
            crate::ui::plan(&planned);
        } else {
            print!("{}", render::human_plan(&planned, destroy));
        }
        let changed = planned
            .changes
            .iter()
            .any(|c| c.action != Action::NoOp || c.imported || c.moved_from.is_some())
            || !planned.output_changes.is_empty();
        if !changed && existing.is_some() {
            if flags.json {
                crate::ui::summary(if destroy { "destroy" } else { "apply" }, 0, 0, 0, 0);
                if !destroy {
                    crate::ui::outputs(&planned.outputs);
                }
            }
            return Ok(0);
        }
        if !auto_approve && flags.json {
            return Err(other(
                "-json cannot ask for approval",
                "pass -auto-approve, or apply a saved plan",
            ));
        }
        if !auto_approve {
            if !flags.input {
                return Err(other(
                    "approval is needed but -input=false was given",
                    "pass -auto-approve",
                ));
            }
            if !approve(if destroy {
                "really destroy all resources"
            } else {
                "perform these actions"
            })? {
                println!("\nApply cancelled.");
                return Ok(1);
            }
        }
    }
    // The journal needs a stored base snapshot.
    let mut base = prior.clone();
    if existing.is_none() {
        base.serial = 1;
        backend.write(&base).await?;
    }
    let backend_arc = Arc::new(match backend {
        AnyBackend::Local(b) => AnyBackend::Local(LocalBackend::new(b.path())),
        AnyBackend::Pg(_) => stack.backend()?,
    });
    let (writer, task) = StateWriter::start(backend_arc.clone(), base.clone());
    let mut opts = options(
        &flags,
        if destroy {
            WalkMode::Destroy
        } else {
            WalkMode::Apply
        },
    )?;
    opts.expected = expected;
    if destroy {
        opts.mode = WalkMode::Destroy;
    }
    let progress = if flags.json {
        Progress::json(false)
    } else {
        Progress::stderr(if destroy { "Destroying" } else { "Applying" })
    };
    let result = walk(
        stack,
        catalog,
        vars,
        base.clone(),
        opts,
        Some(writer),
        progress,
    )
    .await;
    let mut snap = task.finish().await?;
    let result = result?;
    // Outputs.
    let mut outputs = BTreeMap::new();
    if !destroy {
        for (name, (v, sensitive)) in &result.outputs {
            if v.is_wholly_known() {
                outputs.insert(
                    name.clone(),
                    plumb_state::OutputState {
                        value: plumb_tfplugin::value::to_json(v),
                        ty: v.deep_unmark().infer_type().to_json(),
                        sensitive: *sensitive,
                    },
                );
            }
        }
    }
    if outputs != snap.outputs || snap.serial != base.serial {
        snap.outputs = outputs;
        snap.serial = snap.serial.max(base.serial + 1);
        snap.terraform_version = TOOL_VERSION.to_string();
        backend_arc.write(&snap).await?;
    }
    let (a, c, d, i) = render::counts(&result.changes);
    if !result.errors.is_empty() {
        print_errors(&result, flags.json);
        return Ok(1);
    }
    if flags.json {
        crate::ui::summary(if destroy { "destroy" } else { "apply" }, a, c, d, i);
        if !destroy {
            crate::ui::outputs(&result.outputs);
        }
        return Ok(0);
    }
    if destroy {
        println!("\nDestroy complete! Resources: {d} destroyed.");
    } else {
        println!("\nApply complete! Resources: {a} added, {c} changed, {d} destroyed.");
        if !result.outputs.is_empty() {
            println!("\nOutputs:\n");
            for (name, (v, sensitive)) in &result.outputs {
                let shown = if *sensitive {
                    "<sensitive>".to_string()
                } else {
                    v.to_string()
                };
                println!("{name} = {shown}");
            }
        }
    }
    Ok(0)
}

fn output_cmd(
    state: &StateSnapshot,
    name: Option<&str>,
    json: bool,
    raw: bool,
) -> Result<i32, InfraError> {
    match name {
        Some(n) => {
            let o = state.outputs.get(n).ok_or_else(|| {
                other(
                    format!("output {n:?} not found"),
                    "run plumb infra output to list the outputs",
                )
            })?;
            if raw {
                match &o.value {
                    serde_json::Value::String(s) => print!("{s}"),
                    serde_json::Value::Number(x) => print!("{x}"),
                    serde_json::Value::Bool(b) => print!("{b}"),
                    _ => {
                        return Err(other(
                            "-raw works only with string, number and bool outputs",
                            "use -json",
                        ));
                    }
                }
            } else if json {
                println!("{}", o.value);
            } else {
                println!("{}", plumb_tfplugin::value::untyped_from_json(&o.value));
            }
        }
        None => {
            if json {
                let m: serde_json::Map<String, serde_json::Value> = state
                    .outputs
                    .iter()
                    .map(|(k, o)| (k.clone(), serde_json::json!({"sensitive": o.sensitive, "type": o.ty, "value": o.value})))
                    .collect();
                println!("{}", serde_json::Value::Object(m));
            } else {
                for (k, o) in &state.outputs {
                    let shown = if o.sensitive {
                        "<sensitive>".to_string()
                    } else {
                        plumb_tfplugin::value::untyped_from_json(&o.value).to_string()
                    };
                    println!("{k} = {shown}");
                }
            }
        }
    }
    Ok(0)
}

/// The instance key of an address string, for state commands.
pub fn key_json(k: &Option<InstanceKey>) -> Option<serde_json::Value> {
    k.as_ref().map(InstanceKey::to_json)
}
