//! Saved plans: what `plan -out=FILE` writes and `apply FILE` and
//! `show FILE` read.
//!
//! A saved plan records the state it was made against (lineage and serial),
//! the variable values and flags that shaped it, and each instance's
//! action; applying it checks the state has not moved and that every
//! instance still needs the action the plan promised. It also carries its
//! human and JSON renderings, so `show` needs neither the configuration nor
//! the providers. Paths are given as the user wrote them and read against
//! the stack's directory, as Terraform does after `-chdir`.

use std::collections::BTreeMap;
use std::path::Path;

use plumb_state::StateSnapshot;

use crate::config::in_stack;
use crate::error::InfraError;
use crate::outcome::{Action, WalkResult};
use crate::render;
use crate::run::Run;

/// The saved plan file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PlanFile {
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

impl PlanFile {
    /// The plan of `run`, whose walk gave `result`; `rendered` is its human
    /// form (as [`render::human_plan`] makes it).
    pub fn new(run: &Run, result: &WalkResult, rendered: String) -> PlanFile {
        PlanFile {
            plumb_plan: 1,
            lineage: run.state.as_ref().map(|s| s.lineage.clone()),
            serial: run.state.as_ref().map(|s| s.serial),
            vars: run
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), plumb_tfplugin::value::to_json(v)))
                .collect(),
            targets: run.targets.clone(),
            replace: run.replace.clone(),
            refresh: run.refresh,
            destroy: run.destroy,
            actions: result
                .changes
                .iter()
                .map(|c| (c.addr.to_string(), c.action))
                .collect(),
            rendered,
            json: render::json_plan(result),
        }
    }

    /// Reads the plan at `path` (relative to the stack directory `dir`).
    pub fn read(dir: &Path, path: &Path) -> Result<PlanFile, InfraError> {
        let bytes = std::fs::read(in_stack(dir, path)).map_err(|source| InfraError::PlanRead {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| InfraError::NotAPlan {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the plan to `path` (relative to the stack directory `dir`).
    pub fn write(&self, dir: &Path, path: &Path) -> Result<(), InfraError> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::write(in_stack(dir, path), bytes).map_err(|source| InfraError::PlanWrite {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The plan for people, as `plan` printed it.
    pub fn rendered(&self) -> &str {
        &self.rendered
    }

    /// The plan as Terraform's JSON plan representation.
    pub fn json(&self) -> &serde_json::Value {
        &self.json
    }

    /// The run that applies exactly this plan over `state` (the state now),
    /// with `parallelism`; refused when the state moved since the plan.
    pub fn into_run(
        self,
        state: Option<StateSnapshot>,
        parallelism: usize,
    ) -> Result<Run, InfraError> {
        let lineage = state.as_ref().map(|s| s.lineage.clone());
        let serial = state.as_ref().map(|s| s.serial);
        if (&lineage, serial) != (&self.lineage, self.serial) {
            return Err(InfraError::StalePlan {
                planned_serial: self.serial,
                planned_lineage: self.lineage,
                serial,
                lineage,
            });
        }
        Ok(Run {
            state,
            vars: self
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), plumb_tfplugin::value::untyped_from_json(v)))
                .collect(),
            targets: self.targets,
            replace: self.replace,
            refresh: self.refresh,
            parallelism,
            destroy: self.destroy,
            expected: Some(self.actions),
        })
    }
}
