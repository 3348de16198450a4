//! Sync plans and their results.
//!
//! A sync applies the desired set in steps. Waves (`argocd.argoproj.io/sync-wave`)
//! come first; within a wave, stages follow what the API server needs to accept
//! the next object: CustomResourceDefinitions (then plumb waits until they are
//! Established and refreshes discovery), Namespaces, other cluster-scoped
//! objects, and finally namespaced objects. Objects within one step are
//! independent and applied concurrently. Prune runs last, in reverse order.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::application::sync_option_value;
use crate::id::ObjectRef;

/// Annotation naming an object's sync wave.
pub const SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";
/// Annotation holding per-object sync options (`Prune=false,Replace=true`).
pub const SYNC_OPTIONS_ANNOTATION: &str = "argocd.argoproj.io/sync-options";

/// Where in a wave an object is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    /// CustomResourceDefinitions.
    CustomResourceDefinitions,
    /// Namespaces.
    Namespaces,
    /// Other cluster-scoped objects.
    ClusterScoped,
    /// Namespaced objects.
    Namespaced,
}

impl Stage {
    /// The stage of an object of `group`/`kind`, cluster-scoped or not.
    pub fn of(group: &str, kind: &str, namespaced: bool) -> Stage {
        match (group, kind) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                Stage::CustomResourceDefinitions
            }
            ("", "Namespace") => Stage::Namespaces,
            _ if !namespaced => Stage::ClusterScoped,
            _ => Stage::Namespaced,
        }
    }
}

/// The position of an object in a sync: wave first, then stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Step {
    /// Sync wave; lower first; default 0.
    pub wave: i64,
    /// Stage within the wave.
    pub stage: Stage,
}

/// The sync wave an object asks for; 0 when absent or not an integer.
pub fn sync_wave(obj: &Value) -> Result<i64, String> {
    match obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SYNC_WAVE_ANNOTATION))
        .and_then(Value::as_str)
    {
        None => Ok(0),
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("annotation {SYNC_WAVE_ANNOTATION}: {s:?} is not an integer")),
    }
}

/// Per-object sync options from the `argocd.argoproj.io/sync-options` annotation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectOptions {
    /// `Prune=false`: never delete this object.
    pub no_prune: bool,
    /// `Replace=true`: recreate instead of applying when fields are immutable.
    pub replace: bool,
}

impl ObjectOptions {
    /// Read the options of an object.
    pub fn of(obj: &Value) -> ObjectOptions {
        let raw = obj
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(SYNC_OPTIONS_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or("");
        let parts = raw.split(',').map(str::trim);
        ObjectOptions {
            no_prune: sync_option_value(parts.clone(), "Prune")
                .is_some_and(|v| v.eq_ignore_ascii_case("false")),
            replace: sync_option_value(parts, "Replace")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }
}

/// What a sync did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It did not exist and was created.
    Created,
    /// It existed and was changed.
    Configured,
    /// It already matched Git.
    Unchanged,
    /// It left Git and was deleted.
    Pruned,
    /// It was left alone on purpose (see the message).
    Skipped,
    /// Applying or deleting it failed.
    Failed,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Pruned => "pruned",
            Action::Skipped => "skipped",
            Action::Failed => "failed",
        })
    }
}

/// The outcome for one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectResult {
    /// Which object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// API version it was applied at.
    pub version: String,
    /// What happened.
    pub action: Action,
    /// Why, for skips and failures; what a dry run would do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Counts of actions in a sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCounts {
    /// Created objects.
    pub created: usize,
    /// Configured objects.
    pub configured: usize,
    /// Unchanged objects.
    pub unchanged: usize,
    /// Pruned objects.
    pub pruned: usize,
    /// Skipped objects.
    pub skipped: usize,
    /// Failures.
    pub failed: usize,
}

impl ActionCounts {
    /// Count the actions of `results`.
    pub fn of(results: &[ObjectResult]) -> ActionCounts {
        let mut c = ActionCounts::default();
        for r in results {
            match r.action {
                Action::Created => c.created += 1,
                Action::Configured => c.configured += 1,
                Action::Unchanged => c.unchanged += 1,
                Action::Pruned => c.pruned += 1,
                Action::Skipped => c.skipped += 1,
                Action::Failed => c.failed += 1,
            }
        }
        c
    }
}

/// How many inventory members a prune may delete before it must be forced.
pub fn prune_allowed(to_delete: usize, inventory_size: usize, max_share: f64) -> bool {
    if inventory_size == 0 || to_delete == 0 {
        return true;
    }
    (to_delete as f64) / (inventory_size as f64) <= max_share
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steps_order_waves_then_stages() {
        let mut steps = [
            Step {
                wave: 0,
                stage: Stage::Namespaced,
            },
            Step {
                wave: -1,
                stage: Stage::Namespaced,
            },
            Step {
                wave: 0,
                stage: Stage::CustomResourceDefinitions,
            },
            Step {
                wave: 0,
                stage: Stage::Namespaces,
            },
            Step {
                wave: 0,
                stage: Stage::ClusterScoped,
            },
        ];
        steps.sort();
        assert_eq!(
            steps[0],
            Step {
                wave: -1,
                stage: Stage::Namespaced
            }
        );
        assert_eq!(steps[1].stage, Stage::CustomResourceDefinitions);
        assert_eq!(steps[2].stage, Stage::Namespaces);
        assert_eq!(steps[3].stage, Stage::ClusterScoped);
        assert_eq!(steps[4].stage, Stage::Namespaced);
    }

    #[test]
    fn stage_of_kinds() {
        assert_eq!(
            Stage::of("apiextensions.k8s.io", "CustomResourceDefinition", false),
            Stage::CustomResourceDefinitions
        );
        assert_eq!(Stage::of("", "Namespace", false), Stage::Namespaces);
        assert_eq!(
            Stage::of("rbac.authorization.k8s.io", "ClusterRole", false),
            Stage::ClusterScoped
        );
        assert_eq!(Stage::of("apps", "Deployment", true), Stage::Namespaced);
    }

    #[test]
    fn waves_and_options_from_annotations() {
        let o = json!({"metadata": {"annotations": {
            "argocd.argoproj.io/sync-wave": "-2",
            "argocd.argoproj.io/sync-options": "Prune=false, Replace=true"
        }}});
        assert_eq!(sync_wave(&o), Ok(-2));
        assert_eq!(
            ObjectOptions::of(&o),
            ObjectOptions {
                no_prune: true,
                replace: true
            }
        );
        assert_eq!(sync_wave(&json!({})), Ok(0));
        assert!(
            sync_wave(&json!({"metadata": {"annotations": {"argocd.argoproj.io/sync-wave": "x"}}}))
                .is_err()
        );
    }

    #[test]
    fn prune_share() {
        assert!(prune_allowed(0, 0, 0.5));
        assert!(prune_allowed(5, 10, 0.5));
        assert!(!prune_allowed(6, 10, 0.5));
        assert!(prune_allowed(10, 10, 1.0));
    }
}
