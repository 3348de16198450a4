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
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Refusal>> + Send + 'a>>;

/// One stage between render and apply.
pub trait Check: Send + Sync {
    /// A short name, for logs and refusals.
    fn name(&self) -> &'static str;

    /// Look at `rendered` (and adjust it where that is the check's job);
    /// refuse the Application by returning a [`Refusal`].
    fn check<'a>(&'a self, app: &'a Application, rendered: &'a mut Rendered) -> CheckFuture<'a>;
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
