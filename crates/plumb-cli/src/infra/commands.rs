//! One function per `plumb infra` command, from parsed arguments to an exit
//! code: each opens the stack, calls plumb-infra, and prints what the
//! command prints.
//!
//! `-chdir` is resolved here and only here: the stack directory is passed to
//! plumb-infra, which reads every relative path against it; the process's
//! working directory never changes.

use std::path::PathBuf;
use std::sync::Arc;

use plumb_infra::diag::ConfigError;
use plumb_infra::{PlanFile, Stack, TOOL_VERSION, show};
use plumb_state::{StateBackend, StateSnapshot};

use super::args::{Command, InfraArgs, StateCommand};
use super::environment;
use super::report::Failure;
use super::run::{self, under_lock};

/// Runs a parsed `plumb infra` command; returns its exit code.
pub async fn execute(args: InfraArgs) -> Result<u8, Failure> {
    let given = args.chdir.clone().unwrap_or_else(|| PathBuf::from("."));
    if !given.is_dir() {
        return Err(Failure::new(
            format!("-chdir: {} is not a directory", given.display()),
            "pass an existing stack directory",
        ));
    }
    // As with Terraform, -chdir makes the stack directory the working
    // directory of the run: relative -out, -var-file and plan-file paths
    // are read against the stack, and path.cwd is the stack.
    let (dir, cwd) = match &args.chdir {
        Some(_) => {
            let dir = std::fs::canonicalize(&given).map_err(|e| {
                Failure::new(
                    format!("-chdir: cannot enter {}: {e}", given.display()),
                    "pass a stack directory plumb may read",
                )
            })?;
            (dir.clone(), dir)
        }
        None => (given, environment::process_cwd()),
    };
    let keys = environment::keys(
        &cwd,
        args.sops_age_key_file.as_deref(),
        args.state_age_key_file.as_deref(),
    )?;
    let env = Arc::new(environment::read(cwd, keys));
    let open = || Stack::open(dir.clone(), env.clone());
    match args.command {
        Command::Init { plugin_dirs, .. } => {
            let stack = open()?;
            let locked = stack.init(&plugin_dirs)?;
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
            let stack = open()?;
            let providers = stack.providers()?;
            let diags = stack.validate(&providers).await?;
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
            secrets_precheck(&dir, &flags)?;
            run::plan(
                &dir,
                env,
                &flags,
                out.as_deref(),
                detailed_exitcode,
                destroy,
            )
            .await
        }
        Command::Apply {
            flags,
            auto_approve,
            destroy,
            plan_file,
        } => {
            let auto_approve = auto_approve || plan_file.is_some();
            if plan_file.is_none() {
                secrets_precheck(&dir, &flags)?;
            }
            run::apply(
                &dir,
                env,
                &flags,
                auto_approve,
                destroy,
                plan_file.as_deref(),
            )
            .await
        }
        Command::Destroy {
            flags,
            auto_approve,
        } => run::apply(&dir, env, &flags, auto_approve, true, None).await,
        Command::Output { name, json, raw } => {
            let stack = open()?;
            let state = read_state(&stack).await?;
            output(&state, name.as_deref(), json, raw)
        }
        Command::Show { plan_file, json } => {
            if let Some(p) = plan_file {
                let plan = PlanFile::read(&dir, &p)?;
                if json {
                    println!("{}", plan.json());
                } else {
                    print!("{}", plan.rendered());
                }
                return Ok(0);
            }
            let stack = open()?;
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
                println!("{}", show::state_json(&state));
            } else {
                print!("{}", show::state_human(&state, None));
            }
            Ok(0)
        }
        Command::Import { flags, address, id } => {
            let stack = open()?;
            under_lock(
                &stack,
                "OperationTypeImport",
                &flags,
                async |providers, backend| {
                    Ok(stack.import(providers, backend, &address, &id).await?)
                },
            )
            .await?;
            println!(
                "{address}: Import prepared!\n\nImport successful!\n\nThe resources that were imported are shown above. These resources are now in\nyour plumb state and will henceforth be managed by plumb."
            );
            Ok(0)
        }
        Command::Fmt { check, paths } => {
            let changed = plumb_infra::fmt::format_files(&dir, &paths, check, |shown| {
                println!("{}", shown.display());
            })?;
            Ok(if check && changed { 3 } else { 0 })
        }
        Command::ForceUnlock { id, .. } => {
            let stack = open()?;
            let info = stack.backend()?.force_unlock(&id).await?;
            println!(
                "plumb state has been successfully unlocked! (was: {})",
                info.describe()
            );
            Ok(0)
        }
        Command::State(command) => state(&open()?, command).await,
    }
}

/// The stack's state, or an empty one.
/// Refuse a configuration with plaintext secrets before anything is
/// planned (a saved plan was checked when it was made).
fn secrets_precheck(dir: &std::path::Path, flags: &super::args::PlanFlags) -> Result<(), Failure> {
    crate::secrets_scan::infra_precheck(dir, flags.secrets_plaintext)
        .map_err(|(message, hint)| Failure::new(message, hint))
}

async fn read_state(stack: &Stack) -> Result<StateSnapshot, Failure> {
    Ok(stack
        .backend()?
        .read()
        .await?
        .unwrap_or_else(|| StateSnapshot::new(TOOL_VERSION)))
}

/// `state list|show|rm|mv`.
async fn state(stack: &Stack, command: StateCommand) -> Result<u8, Failure> {
    let backend = stack.backend()?;
    match command {
        StateCommand::List { filters } => {
            let state = read_state(stack).await?;
            for address in show::addresses(&state, &filters) {
                println!("{address}");
            }
        }
        StateCommand::Show { address } => {
            let state = read_state(stack).await?;
            print!("{}", show::instance(&state, &address)?);
        }
        StateCommand::Rm { addresses } => {
            let removed = stack.state_rm(&backend, &addresses).await?;
            println!("Successfully removed {removed} resource instance(s).");
        }
        StateCommand::Mv {
            source,
            destination,
        } => {
            stack.state_mv(&backend, &source, &destination).await?;
            println!("Move \"{source}\" to \"{destination}\"\nSuccessfully moved 1 object(s).");
        }
    }
    Ok(0)
}

/// `output [NAME]`: every output, or one, as text, JSON or raw.
fn output(state: &StateSnapshot, name: Option<&str>, json: bool, raw: bool) -> Result<u8, Failure> {
    let Some(n) = name else {
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
        return Ok(0);
    };
    let o = state.outputs.get(n).ok_or_else(|| {
        Failure::new(
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
                return Err(Failure::new(
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
    Ok(0)
}
