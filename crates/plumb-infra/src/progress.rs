//! What a walk reports while it runs, for whoever shows it.
//!
//! The engine calls a [`Progress`] as instances are counted, refreshed,
//! applied and finished; it neither knows nor cares whether that becomes a
//! bar on a terminal, periodic lines, a machine-readable stream or nothing
//! (`()`). Every method has an empty default, so a reporter implements only
//! what it shows. Calls come from many tasks at once.

use std::time::Duration;

use plumb_tfplugin::Value;

use crate::addr::InstanceAddr;
use crate::outcome::Action;

/// Receives a walk's progress; shared by every task of the walk.
pub trait Progress: Send + Sync {
    /// `n` more instances are known to be visited.
    fn add_total(&self, _n: u64) {}

    /// One instance finished (planned, applied or destroyed).
    fn instance_done(&self, _addr: &InstanceAddr) {}

    /// Refreshing an instance's state from its provider begins; `prior` is
    /// its stored value.
    fn refresh_start(&self, _addr: &InstanceAddr, _prior: &Value) {}

    /// Refreshing an instance ended with `value`.
    fn refresh_complete(&self, _addr: &InstanceAddr, _value: &Value) {}

    /// Refreshing found an instance changed outside plumb, or `gone`.
    fn drift(&self, _addr: &InstanceAddr, _gone: bool) {}

    /// An instance's provider call begins; `prior` is its value before.
    fn apply_start(&self, _addr: &InstanceAddr, _action: Action, _prior: &Value) {}

    /// An instance's provider call ended `elapsed` after it began: with the
    /// instance's new value, or `None` when it failed.
    fn apply_end(
        &self,
        _addr: &InstanceAddr,
        _action: Action,
        _outcome: Option<&Value>,
        _elapsed: Duration,
    ) {
    }

    /// The walk is over (a bar can go).
    fn finish(&self) {}
}

/// No progress.
impl Progress for () {}
