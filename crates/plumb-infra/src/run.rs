//! Plans and applies: one [`Run`] of a stack, from the inputs a command
//! gives to the state it leaves behind.
//!
//! A run starts from the state as read, the root variable values and the
//! flags that shape the walk (targets, replacements, refresh, parallelism,
//! destroy). [`Stack::plan`] walks it without changing anything;
//! [`Stack::apply`] walks it again with a state writer, so every instance
//! that completes is durable at once, and then records the outputs. Between
//! the two the caller may show the plan and ask for approval, or skip the
//! plan altogether when applying a saved one.

use std::collections::BTreeMap;
use std::sync::Arc;

use plumb_state::{AnyBackend, StateBackend, StateSnapshot};
use plumb_tfplugin::Value;

use crate::addr::{InstanceAddr, module_path_of, parse_instance};
use crate::engine::{Walk, WalkInput, WalkMode, WalkOptions};
use crate::error::InfraError;
use crate::outcome::{Action, WalkResult};
use crate::progress::Progress;
use crate::providers::ProviderCatalog;
use crate::stack::{Stack, TOOL_VERSION};
use crate::statewriter::StateWriter;

/// One plan or apply of a stack: where it starts and what shapes it.
#[derive(Clone, Debug)]
pub struct Run {
    /// The state as read before the run; `None` when there is none yet.
    pub state: Option<StateSnapshot>,
    /// Root variable values.
    pub vars: BTreeMap<String, Value>,
    /// The age recipients of the SOPS files that gave variable values: a
    /// saved plan seals the sensitive ones for them.
    pub sops_recipients: Vec<String>,
    /// Only these resources or module instances (and what they depend on),
    /// as written with `-target`.
    pub targets: Vec<String>,
    /// Replace these instances even if unchanged (`-replace`).
    pub replace: Vec<String>,
    /// Refresh state from providers first.
    pub refresh: bool,
    /// Concurrent provider operations.
    pub parallelism: usize,
    /// Destroy everything in state (or everything targeted).
    pub destroy: bool,
    /// A saved plan's actions, which applying must reproduce.
    pub expected: Option<BTreeMap<String, Action>>,
}

impl Run {
    /// The state the walk starts from: as read, or a new empty one.
    pub fn prior(&self) -> StateSnapshot {
        self.state
            .clone()
            .unwrap_or_else(|| StateSnapshot::new(TOOL_VERSION))
    }

    fn walk_options(&self, mode: WalkMode) -> Result<WalkOptions, InfraError> {
        let parse = |list: &[String]| -> Result<Vec<InstanceAddr>, InfraError> {
            list.iter()
                .map(|t| parse_instance(t).map_err(|message| InfraError::TargetAddress { message }))
                .collect()
        };
        // A target that is only a module path takes in everything in it.
        let (module_targets, targets): (Vec<_>, Vec<_>) = self
            .targets
            .iter()
            .cloned()
            .partition(|t| module_path_of(t).is_some());
        Ok(WalkOptions {
            mode,
            refresh: self.refresh,
            parallelism: self.parallelism,
            targets: parse(&targets)?,
            module_targets: module_targets
                .iter()
                .filter_map(|t| module_path_of(t))
                .collect(),
            replace: parse(&self.replace)?,
            expected: None,
            plan_only: false,
        })
    }
}

impl Stack {
    /// Plans `run` without changing anything: what applying it would do.
    /// A destroy run lists what would be destroyed, refreshing nothing.
    pub async fn plan(
        &self,
        providers: &Arc<ProviderCatalog>,
        run: &Run,
        progress: Arc<dyn Progress>,
    ) -> Result<WalkResult, InfraError> {
        // A destroy plan reports no progress.
        let (options, walk_progress): (_, Arc<dyn Progress>) = if run.destroy {
            let options = WalkOptions {
                plan_only: true,
                ..run.walk_options(WalkMode::Destroy)?
            };
            (options, Arc::new(()))
        } else {
            (run.walk_options(WalkMode::Plan)?, progress.clone())
        };
        let result = self
            .walk(providers, run, run.prior(), options, None, walk_progress)
            .await;
        if !run.destroy {
            progress.finish();
        }
        result
    }

    /// Applies `run`: every instance that completes is written to state as
    /// it completes, then the root outputs. Errors of single instances are
    /// in the result (they stop only what depends on them). A plaintext
    /// state read under state encryption is written (sealed) even when
    /// nothing changed.
    pub async fn apply(
        &self,
        providers: &Arc<ProviderCatalog>,
        backend: &AnyBackend,
        run: &Run,
        progress: Arc<dyn Progress>,
    ) -> Result<WalkResult, InfraError> {
        let migrating = backend.migrating();
        // The journal needs a stored base snapshot.
        let mut base = run.prior();
        if run.state.is_none() {
            base.serial = 1;
            backend.write(&base).await?;
        }
        let store = Arc::new(backend.reopen());
        let (writer, task) = StateWriter::start(store.clone(), base.clone());
        let mut options = run.walk_options(if run.destroy {
            WalkMode::Destroy
        } else {
            WalkMode::Apply
        })?;
        options.expected = run.expected.clone();
        let result = self
            .walk(
                providers,
                run,
                base.clone(),
                options,
                Some(writer),
                progress.clone(),
            )
            .await;
        progress.finish();
        let mut snapshot = task.finish().await?;
        let result = result?;
        let mut outputs = BTreeMap::new();
        if !run.destroy {
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
        if outputs != snapshot.outputs || snapshot.serial != base.serial || migrating {
            snapshot.outputs = outputs;
            snapshot.serial = snapshot.serial.max(base.serial + 1);
            snapshot.terraform_version = TOOL_VERSION.to_string();
            store.write(&snapshot).await?;
        }
        Ok(result)
    }

    /// Walks the configuration with `run`'s variables.
    async fn walk(
        &self,
        providers: &Arc<ProviderCatalog>,
        run: &Run,
        prior: StateSnapshot,
        options: WalkOptions,
        writer: Option<StateWriter>,
        progress: Arc<dyn Progress>,
    ) -> Result<WalkResult, InfraError> {
        let input = WalkInput {
            root: self.config().clone(),
            catalog: providers.clone(),
            env: self.environment().clone(),
            vars: run.vars.clone(),
            prior,
            writer,
            progress,
        };
        Ok(Walk::run(input, options).await?)
    }
}
