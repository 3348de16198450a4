//! What kind of walk to run and how: plan, apply or destroy; refresh,
//! parallelism, targets, forced replacements, and a saved plan's actions.

use std::collections::BTreeMap;

use crate::addr::InstanceAddr;
use crate::outcome::Action;

/// What kind of walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkMode {
    /// Plan only.
    Plan,
    /// Plan and apply each instance.
    Apply,
    /// Destroy everything in state.
    Destroy,
}

/// Options for a walk.
#[derive(Clone, Debug)]
pub struct WalkOptions {
    /// Plan, apply or destroy.
    pub mode: WalkMode,
    /// Refresh state from providers first.
    pub refresh: bool,
    /// Concurrent provider operations.
    pub parallelism: usize,
    /// Only these resources (and what they depend on).
    pub targets: Vec<InstanceAddr>,
    /// Only the resources in these module instances (and what they depend
    /// on): `-target=module.net` or `-target=module.net["eu"]`.
    pub module_targets: Vec<Vec<String>>,
    /// Force replacement of these instances.
    pub replace: Vec<InstanceAddr>,
    /// A saved plan's actions that apply must reproduce.
    pub expected: Option<BTreeMap<String, Action>>,
    /// Destroy mode that only plans (`plan -destroy`).
    pub plan_only: bool,
}
