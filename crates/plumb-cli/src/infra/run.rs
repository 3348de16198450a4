//! `plan`, `apply` and `destroy`: lock, plan, show the plan, ask, apply,
//! unlock, and the exit code.
//!
//! This is the interactive half of a run (what to print, when to ask, how
//! `-json`, `-input=false` and `-auto-approve` change that); the run itself,
//! from variables and state to the walk and the state it leaves, is
//! plumb-infra's.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use plumb_infra::{
    Environment, PlanFile, Progress, ProviderCatalog, RootValues, Run, Stack, TOOL_VERSION,
    WalkResult, render,
};
use plumb_state::{AnyBackend, LockLease, StateBackend, StateSnapshot};

use super::args::PlanFlags;
use super::progress::Reporter;
use super::report::{Failure, json_errors, print_errors};
use super::ui;

/// The run the flags describe, with `vars` over `state`.
fn run_of(flags: &PlanFlags, vars: RootValues, state: Option<StateSnapshot>, destroy: bool) -> Run {
    Run {
        state,
        vars: vars.values,
        sops_recipients: vars.sops_recipients,
        targets: flags.targets.clone(),
        replace: flags.replace.clone(),
        refresh: flags.refresh,
        parallelism: flags.parallelism,
        destroy,
        expected: None,
    }
}

/// Progress of a walk that plans: refresh lines with `-json`, else none.
fn planning_progress(flags: &PlanFlags) -> Arc<dyn Progress> {
    if flags.json {
        Arc::new(Reporter::json(true))
    } else {
        Arc::new(())
    }
}

/// `plan`: lock, plan, show, save with `-out`, unlock.
pub async fn plan(
    dir: &Path,
    env: Arc<Environment>,
    flags: &PlanFlags,
    out: Option<&Path>,
    detailed_exitcode: bool,
    destroy: bool,
) -> Result<u8, Failure> {
    if flags.json {
        ui::version(TOOL_VERSION);
    }
    let r = async {
        let stack = Stack::open(dir, env)?;
        let (result, changed) = under_lock(
            &stack,
            "OperationTypePlan",
            flags,
            async |providers, backend| {
                plan_locked(&stack, providers, backend, flags, destroy, out).await
            },
        )
        .await?;
        if !result.errors.is_empty() {
            print_errors(&result, flags.json);
            return Ok(1);
        }
        Ok(if detailed_exitcode && changed { 2 } else { 0 })
    }
    .await;
    json_errors(flags.json, r)
}

async fn plan_locked(
    stack: &Stack,
    providers: &Arc<ProviderCatalog>,
    backend: &AnyBackend,
    flags: &PlanFlags,
    destroy: bool,
    out: Option<&Path>,
) -> Result<(WalkResult, bool), Failure> {
    let vars = stack.variables(&flags.variables())?;
    let state = backend.read().await?;
    note_migration(backend, flags);
    let run = run_of(flags, vars, state, destroy);
    let result = stack
        .plan(providers, &run, planning_progress(flags))
        .await?;
    let rendered = render::human_plan(&result, destroy);
    if result.errors.is_empty() {
        if flags.json {
            ui::plan(&result);
        } else {
            print!("{rendered}");
        }
    }
    let changed = result.has_changes();
    if let Some(path) = out
        && result.errors.is_empty()
    {
        PlanFile::new(&run, &result, rendered)?.write(stack.dir(), path)?;
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

/// `apply` and `destroy`: lock, plan, ask, apply, unlock.
pub async fn apply(
    dir: &Path,
    env: Arc<Environment>,
    flags: &PlanFlags,
    auto_approve: bool,
    destroy: bool,
    plan_file: Option<&Path>,
) -> Result<u8, Failure> {
    if flags.json {
        ui::version(TOOL_VERSION);
    }
    let r = async {
        let stack = Stack::open(dir, env)?;
        under_lock(
            &stack,
            "OperationTypeApply",
            flags,
            async |providers, backend| {
                apply_locked(
                    &stack,
                    providers,
                    backend,
                    flags,
                    auto_approve,
                    destroy,
                    plan_file,
                )
                .await
            },
        )
        .await
    }
    .await;
    json_errors(flags.json, r)
}

async fn apply_locked(
    stack: &Stack,
    providers: &Arc<ProviderCatalog>,
    backend: &AnyBackend,
    flags: &PlanFlags,
    auto_approve: bool,
    destroy: bool,
    plan_file: Option<&Path>,
) -> Result<u8, Failure> {
    let existing = backend.read().await?;
    note_migration(backend, flags);
    let run = match plan_file {
        Some(p) => PlanFile::read(stack.dir(), p)?.into_run(
            existing,
            flags.parallelism,
            &stack.environment().sops_keys,
        )?,
        None => run_of(
            flags,
            stack.variables(&flags.variables())?,
            existing,
            destroy,
        ),
    };
    let destroy = run.destroy;
    let verb = if destroy { "destroy" } else { "apply" };
    if run.expected.is_none() {
        // Plan first, show it, ask.
        let planned = stack
            .plan(providers, &run, planning_progress(flags))
            .await?;
        if !planned.errors.is_empty() {
            print_errors(&planned, flags.json);
            return Ok(1);
        }
        if flags.json {
            ui::plan(&planned);
        } else {
            print!("{}", render::human_plan(&planned, destroy));
        }
        if !planned.has_changes() && run.state.is_some() && !backend.migrating() {
            if flags.json {
                ui::summary(verb, 0, 0, 0, 0);
                if !destroy {
                    ui::outputs(&planned.outputs);
                }
            }
            return Ok(0);
        }
        if !auto_approve && flags.json {
            return Err(Failure::new(
                "-json cannot ask for approval",
                "pass -auto-approve, or apply a saved plan",
            ));
        }
        if !auto_approve {
            if !flags.input {
                return Err(Failure::new(
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
    let progress = Arc::new(if flags.json {
        Reporter::json(false)
    } else {
        Reporter::stderr(if destroy { "Destroying" } else { "Applying" })
    });
    let result = stack.apply(providers, backend, &run, progress).await?;
    let (added, changed, destroyed, imported) = render::counts(&result.changes);
    if !result.errors.is_empty() {
        print_errors(&result, flags.json);
        return Ok(1);
    }
    if flags.json {
        ui::summary(verb, added, changed, destroyed, imported);
        if !destroy {
            ui::outputs(&result.outputs);
        }
        return Ok(0);
    }
    if destroy {
        println!("\nDestroy complete! Resources: {destroyed} destroyed.");
    } else {
        println!(
            "\nApply complete! Resources: {added} added, {changed} changed, {destroyed} destroyed."
        );
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

/// Says so when the state was read in plain text under a configured (not
/// enforced) state encryption: the next apply writes it encrypted.
fn note_migration(backend: &AnyBackend, flags: &PlanFlags) {
    if backend.migrating() && !flags.json {
        eprintln!(
            "Note: the state ({}) is stored in plain text; the next apply writes it encrypted as the encryption block says.",
            backend.describe()
        );
    }
}

/// Asks on the terminal; only `yes` approves.
fn approve(what: &str) -> Result<bool, Failure> {
    print!(
        "\nDo you want to {what}?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    );
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::new(format!("cannot read the answer: {e}"), "use -auto-approve"))?;
    Ok(line.trim() == "yes")
}

/// Runs `step` with the stack's providers and backend under the state lock
/// for `operation`; the lock is released whatever `step` returns.
pub async fn under_lock<T>(
    stack: &Stack,
    operation: &str,
    flags: &PlanFlags,
    step: impl AsyncFnOnce(&Arc<ProviderCatalog>, &AnyBackend) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let providers = Arc::new(stack.providers()?);
    let backend = stack.backend()?;
    let lease = lock(stack, &backend, operation, flags).await?;
    let r = step(&providers, &backend).await;
    backend.unlock(lease).await?;
    r
}

/// Takes the state lock for `operation`, saying so when it takes over a
/// stale one.
async fn lock(
    stack: &Stack,
    backend: &plumb_state::AnyBackend,
    operation: &str,
    flags: &PlanFlags,
) -> Result<LockLease, Failure> {
    let lease = stack
        .lock(backend, operation, flags.lock_timeout()?)
        .await?;
    if let Some(stale) = &lease.took_over {
        eprintln!(
            "Taking over a stale state lock: {} — its holder is gone (Terraform would leave it for force-unlock).",
            stale.describe()
        );
    }
    Ok(lease)
}
