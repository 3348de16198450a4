//! Checks: the stage between render and apply.
//!
//! A check sees every rendered object of an Application before anything is
//! written to a cluster, and either lets them through (possibly adjusted:
//! an image tag pinned to its digest, a decrypted value filled in) or refuses
//! the whole Application with a [`Refusal`] that names the rule and the
//! manifest's `file:line:col`. Because it runs before the engine, a refused
//! commit changes nothing in the cluster, for `plumb sync` and the agent alike.
//! A refusal's message must never carry a secret value.

use std::future::Future;
use std::pin::Pin;

use plumb_model::{Application, Origin};
use plumb_render::Rendered;

/// What [`Check::check`] returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Refused>> + Send + 'a>>;

/// What a check knows about the render it looks at.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    /// The Application.
    pub app: &'a Application,
    /// These commits are already applied to the cluster (a self-heal or a
    /// status of what was synced), as opposed to a new commit on its way
    /// in. A check may choose to only warn about what it already let through.
    pub admitted: bool,
}

/// One stage between render and apply.
pub trait Check: Send + Sync {
    /// A short name, for logs and refusals.
    fn name(&self) -> &'static str;

    /// Look at `rendered` (and adjust it where that is the check's job);
    /// refuse the Application by returning every [`Refusal`] at once.
    fn check<'a>(&'a self, ctx: CheckContext<'a>, rendered: &'a mut Rendered) -> CheckFuture<'a>;
}

/// Why a check refused an Application: the rule, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{rule}: {message}", origin.as_ref().map(|o| format!("{o}: ")).unwrap_or_default())]
pub struct Refusal {
    /// The check that refused.
    pub check: &'static str,
    /// The rule that was broken.
    pub rule: String,
    /// The manifest it was broken in, when one is to blame.
    pub origin: Option<Origin>,
    /// What is wrong and what to do (never a secret value).
    pub message: String,
}

/// The checks a pipeline runs, in order (cheap to clone).
#[derive(Clone, Default)]
pub struct Checks(pub Vec<std::sync::Arc<dyn Check>>);

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|c| c.name()))
            .finish()
    }
}

/// Everything a check refused in one render, one refusal per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct Refused(pub Vec<Refusal>);

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Refused {
        Refused(vec![r])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_place_and_the_rule() {
        let r = Refusal {
            check: "tags",
            rule: "immutable-tag".into(),
            origin: Some(Origin {
                file: "apps/web.yaml".into(),
                line: 12,
                column: 14,
            }),
            message: "image web:latest has a mutable tag".into(),
        };
        assert_eq!(
            r.to_string(),
            "apps/web.yaml:12:14: immutable-tag: image web:latest has a mutable tag"
        );
    }
}
