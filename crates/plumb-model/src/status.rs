//! The words plumb uses to say how an Application stands.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether the live objects equal what Git declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SyncStatus {
    /// Live equals desired.
    Synced,
    /// Something differs.
    OutOfSync,
    /// Not yet compared.
    #[default]
    Unknown,
}

/// How well the live objects are doing, per object and rolled up.
///
/// Variants are ordered from best to worst, so the roll-up of several objects
/// is the maximum.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum HealthStatus {
    /// Working as intended.
    Healthy,
    /// Suspended on purpose (a paused Deployment, a suspended CronJob).
    Suspended,
    /// On its way to healthy.
    Progressing,
    /// Health cannot be assessed.
    #[default]
    Unknown,
    /// Expected but absent from the cluster.
    Missing,
    /// Failed or failing.
    Degraded,
}

impl HealthStatus {
    /// The worst of several statuses; `Healthy` for none.
    pub fn roll_up(statuses: impl IntoIterator<Item = HealthStatus>) -> HealthStatus {
        statuses.into_iter().max().unwrap_or(HealthStatus::Healthy)
    }
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_up_takes_the_worst() {
        use HealthStatus::*;
        assert_eq!(HealthStatus::roll_up([]), Healthy);
        assert_eq!(HealthStatus::roll_up([Healthy, Progressing]), Progressing);
        assert_eq!(
            HealthStatus::roll_up([Healthy, Degraded, Missing]),
            Degraded
        );
        assert_eq!(HealthStatus::roll_up([Suspended, Healthy]), Suspended);
    }
}
