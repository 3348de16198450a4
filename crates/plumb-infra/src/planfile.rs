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
//!
//! Variable values that came from SOPS files never reach the plan file in
//! the clear: they are sealed together for the recipients of those files
//! (`sealed_vars`), and applying the plan opens them with the same keys and
//! marks them sensitive again.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use plumb_secrets::sealed::{self, Recipients};
use plumb_secrets::sops::Keyring;
use plumb_state::StateSnapshot;
use zeroize::Zeroizing;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_vars: Option<SealedVars>,
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
    /// form (as [`render::human_plan`] makes it). Sensitive variable values
    /// (from SOPS files) are sealed for `run`'s SOPS recipients.
    pub fn new(run: &Run, result: &WalkResult, rendered: String) -> Result<PlanFile, InfraError> {
        let (secret, clear): (Vec<_>, Vec<_>) =
            run.vars.iter().partition(|(_, v)| v.contains_sensitive());
        let sealed_vars = if secret.is_empty() {
            None
        } else {
            Some(SealedVars::seal(&secret, &run.sops_recipients)?)
        };
        Ok(PlanFile {
            plumb_plan: 1,
            lineage: run.state.as_ref().map(|s| s.lineage.clone()),
            serial: run.state.as_ref().map(|s| s.serial),
            vars: clear
                .into_iter()
                .map(|(k, v)| (k.clone(), plumb_tfplugin::value::to_json(v)))
                .collect(),
            sealed_vars,
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
        })
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
    /// Sealed variables are opened with `keys`.
    pub fn into_run(
        self,
        state: Option<StateSnapshot>,
        parallelism: usize,
        keys: &Keyring,
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
        let mut vars: BTreeMap<String, plumb_tfplugin::Value> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), plumb_tfplugin::value::untyped_from_json(v)))
            .collect();
        let mut sops_recipients = Vec::new();
        if let Some(sealed) = &self.sealed_vars {
            vars.extend(sealed.open(keys)?);
            sops_recipients = sealed.recipients.clone();
        }
        Ok(Run {
            state,
            vars,
            sops_recipients,
            targets: self.targets,
            replace: self.replace,
            refresh: self.refresh,
            parallelism,
            destroy: self.destroy,
            expected: Some(self.actions),
        })
    }
}

/// Variable values from SOPS files, sealed for those files' recipients.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SealedVars {
    /// Who may open them.
    recipients: Vec<String>,
    /// The variables inside (names only).
    names: Vec<String>,
    /// An age file (base64) holding a JSON object of the values.
    age: String,
}

impl SealedVars {
    fn seal(
        vars: &[(&String, &plumb_tfplugin::Value)],
        recipients: &[String],
    ) -> Result<SealedVars, InfraError> {
        let names: Vec<String> = vars.iter().map(|(k, _)| (*k).clone()).collect();
        let failed = |reason: String| InfraError::SealedVariables {
            names: names.clone(),
            reason,
        };
        if recipients.is_empty() {
            return Err(failed(
                "no SOPS file gave them, so there is no one to seal them for".into(),
            ));
        }
        let values: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| ((*k).clone(), plumb_tfplugin::value::to_json(v)))
            .collect();
        let plain = Zeroizing::new(serde_json::to_vec(&values).map_err(|e| failed(e.to_string()))?);
        let sealed = Recipients::parse(recipients)
            .and_then(|r| r.seal(&plain))
            .map_err(|e| failed(e.to_string()))?;
        Ok(SealedVars {
            recipients: recipients.to_vec(),
            names: names.clone(),
            age: base64::engine::general_purpose::STANDARD.encode(sealed),
        })
    }

    fn open(&self, keys: &Keyring) -> Result<BTreeMap<String, plumb_tfplugin::Value>, InfraError> {
        let failed = |reason: String| InfraError::SealedVariables {
            names: self.names.clone(),
            reason,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.age.trim())
            .map_err(|e| failed(format!("not base64: {e}")))?;
        let plain = sealed::open(keys, &bytes).map_err(|e| {
            failed(format!(
                "{e} (they are sealed for {})",
                self.recipients.join(", ")
            ))
        })?;
        let values: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&plain).map_err(|e| failed(e.to_string()))?;
        Ok(values
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    plumb_tfplugin::value::untyped_from_json(&v).mark_sensitive(),
                )
            })
            .collect())
    }
}
