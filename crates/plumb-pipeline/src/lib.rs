//! The GitOps pipeline: from an Application to the objects the cluster
//! engine applies.
//!
//! ```text
//! Application ──► resolve ──► fetch ──► render ──► checks ──► secret refs ──► engine (diff | sync | status)
//!                 (refs)      (commit)  (objects)  (refuse or   (values filled
//!                                                   adjust)      in memory)
//! ```
//!
//! `plumb sync|diff|status` and the agent both run exactly this code, so a
//! stage added here (a deploy gate, SOPS decryption, a secret scan) holds for
//! both. [`Pipeline::prepare`] runs resolve → fetch → render → checks →
//! secret references ([`SecretRefs`]) and
//! returns a [`Prepared`] Application; [`Clusters`] turns its destination into
//! a [`Cluster`](plumb_kube::Cluster); [`Prepared::engine`] hands both to
//! plumb-kube, with the custom health scripts a [`HealthSource`] gives. A
//! [`Check`] sees every rendered object before anything is
//! written to a cluster: refusing there changes nothing.
//!
//! This crate owns the order of the stages and the short-lived cache of
//! resolved revisions that lets many Applications share one ref lookup. It
//! does not schedule (the agent does), present (the CLI does) or render and
//! apply by itself (plumb-render and plumb-kube do).

mod check;
mod clusters;
mod decryption;
mod error;
mod health;
mod plaintext;
mod prepared;
mod resolve;
mod secret_refs;

pub use check::{Check, CheckContext, CheckFuture, Checks, Refusal, Refused};
pub use clusters::{ClientFactory, Clusters};
pub use decryption::{DECRYPTION_SECRET_ANNOTATION, secret_keyring};
pub use error::{PipelineError, Stage};
pub use health::{ConfigMapRef, DEFAULT_REFRESH as HEALTH_REFRESH, HealthSource};
pub use plaintext::{NAME as PLAINTEXT_SECRETS_CHECK, PlaintextSecrets, scan_application};
pub use plumb_render::Keyring;
pub use plumb_secrets::scan::Mode as SecretsMode;
pub use prepared::Prepared;
pub use secret_refs::SecretRefs;

use std::sync::Arc;
use std::time::Duration;

use plumb_git::{Commit, GitCache};
use plumb_model::{Application, Revision};
use plumb_render::{Rendered, Renderer};

use crate::resolve::ResolveCache;

/// Everything needed to take an Application from Git to rendered, checked
/// objects. Cheap to clone; clones share the resolve cache.
#[derive(Clone)]
pub struct Pipeline {
    git: GitCache,
    renderer: Renderer,
    checks: Checks,
    resolved: Arc<ResolveCache>,
    keys: Keyring,
    key_clusters: Option<Clusters>,
    secret_refs: SecretRefs,
    health: HealthSource,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("checks", &self.checks)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline fetching through `git` and rendering with `renderer`; no
    /// checks, and every resolve asks Git.
    pub fn new(git: GitCache, renderer: Renderer) -> Pipeline {
        Pipeline {
            git,
            renderer,
            checks: Checks::default(),
            resolved: Arc::new(ResolveCache::new(Duration::ZERO)),
            keys: Keyring::new(),
            key_clusters: None,
            secret_refs: SecretRefs::default(),
            health: HealthSource::default(),
        }
    }

    /// Decrypt SOPS files with these age identities (for every Application).
    pub fn with_keyring(mut self, keys: Keyring) -> Pipeline {
        self.keys = keys;
        self
    }

    /// Read Secrets from each Application's destination cluster: the one its
    /// `plumb.dev/decryption-secret` annotation names (its SOPS files are
    /// decrypted with the `.agekey` entries found there too), and those its
    /// Secrets' `k8s://` references name.
    pub fn with_decryption_secrets(mut self, clusters: Clusters) -> Pipeline {
        self.key_clusters = Some(clusters);
        self
    }

    /// Resolve `plumb.dev/secret-ref…` references of `file://` and
    /// `vault://` kinds through `refs` (`k8s://` references need only
    /// [`Pipeline::with_decryption_secrets`]'s clusters).
    pub fn with_secret_refs(mut self, refs: SecretRefs) -> Pipeline {
        self.secret_refs = refs;
        self
    }

    /// Assess health with the custom scripts `health` gives (re-read as it
    /// says) before plumb's built-in rules.
    pub fn with_health(mut self, health: HealthSource) -> Pipeline {
        self.health = health;
        self
    }

    /// Reuse a resolved (repository, revision) for up to `ttl`, so that the
    /// many Applications one push refreshes share one ref lookup. Pinned
    /// revisions are always resolved afresh.
    pub fn with_resolve_ttl(mut self, ttl: Duration) -> Pipeline {
        self.resolved = Arc::new(ResolveCache::new(ttl));
        self
    }

    /// Run `check` on every render, after the ones already added.
    pub fn with_check(mut self, check: Arc<dyn Check>) -> Pipeline {
        self.checks.0.push(check);
        self
    }

    /// Run each of `checks` on every render, after the ones already added.
    pub fn with_checks(mut self, checks: &Checks) -> Pipeline {
        self.checks.0.extend(checks.0.iter().cloned());
        self
    }

    /// The Git cache (for ref polling).
    pub fn git(&self) -> &GitCache {
        &self.git
    }

    /// Forget cached resolutions of repositories whose URL `matches`, so the
    /// next resolve asks Git.
    pub fn forget_resolved(&self, matches: impl Fn(&str) -> bool) {
        self.resolved.forget(matches);
    }

    /// Resolve → fetch → render → checks: the Application's objects at
    /// `pin` (default: each source's targetRevision), ready for the engine.
    pub async fn prepare(
        &self,
        app: &Application,
        pin: Option<&Revision>,
    ) -> Result<Prepared, PipelineError> {
        let commits = self.resolve(app, pin).await?;
        self.prepare_commits(app, commits, false).await
    }

    /// Render → checks → secret references at commits already resolved (one per source);
    /// `admitted` when the cluster already runs these commits (see
    /// [`CheckContext::admitted`]).
    pub async fn prepare_commits(
        &self,
        app: &Application,
        commits: Vec<Commit>,
        admitted: bool,
    ) -> Result<Prepared, PipelineError> {
        let mut rendered = self.render(app, &commits).await?;
        self.check(CheckContext { app, admitted }, &mut rendered)
            .await?;
        self.secret_refs
            .resolve(app, &mut rendered, self.key_clusters.as_ref())
            .await?;
        let health = self.health.scripts().await?;
        Ok(Prepared::new(app.clone(), commits, rendered)?.with_health(health))
    }

    /// The commit of each source: fetched (exactly that commit, shallow)
    /// from `pin`'s entry for the source or its targetRevision.
    pub async fn resolve(
        &self,
        app: &Application,
        pin: Option<&Revision>,
    ) -> Result<Vec<Commit>, PipelineError> {
        let wanted: Vec<(String, String)> = app
            .sources()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let rev = match pin {
                    Some(p) => p.for_source(i).to_string(),
                    None => s.revision().to_string(),
                };
                (s.repo_url.clone(), rev)
            })
            .collect();
        let git = self.git.clone();
        let cache = self.resolved.clone();
        let fresh_only = pin.is_some();
        let commits = blocking(Stage::Fetch, move || {
            wanted
                .iter()
                .map(|(url, rev)| {
                    if !fresh_only && let Some(c) = cache.get(url, rev) {
                        return Ok(c);
                    }
                    let commit = git.fetch(url, rev).map_err(|source| PipelineError::Git {
                        repo: plumb_git::redact_url(url),
                        source,
                    })?;
                    if !fresh_only {
                        cache.put(url, rev, &commit);
                    }
                    Ok(commit)
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(commits)
    }

    /// Render every source at its commit and merge them.
    pub async fn render(
        &self,
        app: &Application,
        commits: &[Commit],
    ) -> Result<Rendered, PipelineError> {
        let keys = self.keys_for(app).await?;
        let git = self.git.clone();
        let renderer = self.renderer.clone();
        let app = app.clone();
        let ids: Vec<String> = commits.iter().map(|c| c.id.clone()).collect();
        blocking(Stage::Render, move || {
            let snapshots = app
                .sources()
                .iter()
                .zip(&ids)
                .map(|(s, id)| {
                    git.snapshot(&s.repo_url, id)
                        .map_err(|source| PipelineError::Git {
                            repo: plumb_git::redact_url(&s.repo_url),
                            source,
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            renderer
                .render_application_with_keys(&app, &snapshots, &keys)
                .map_err(|source| PipelineError::Render {
                    commit: ids.first().cloned().unwrap_or_default(),
                    source: Box::new(source),
                })
        })
        .await
    }

    /// The identities that decrypt `app`'s SOPS files: the pipeline's own,
    /// plus those of the Secret its annotation names.
    async fn keys_for(&self, app: &Application) -> Result<Keyring, PipelineError> {
        let Some(reference) = app.metadata.annotations.get(DECRYPTION_SECRET_ANNOTATION) else {
            return Ok(self.keys.clone());
        };
        let Some(clusters) = &self.key_clusters else {
            return Err(PipelineError::DecryptionSecret {
                secret: reference.clone(),
                message:
                    "this command cannot read Secrets for decryption (use --sops-age-key-file)"
                        .into(),
            });
        };
        let cluster = clusters.get(&app.spec.destination).await?;
        let mut keys = self.keys.clone();
        keys.extend(
            &secret_keyring(
                cluster.client(),
                reference,
                app.metadata.namespace.as_deref(),
            )
            .await?,
        );
        Ok(keys)
    }

    /// Run every check, in order; the first that refuses stops the Application.
    pub async fn check(
        &self,
        ctx: CheckContext<'_>,
        rendered: &mut Rendered,
    ) -> Result<(), PipelineError> {
        for check in &self.checks.0 {
            check
                .check(ctx, rendered)
                .await
                .map_err(PipelineError::Refused)?;
        }
        Ok(())
    }
}

/// Run blocking work (Git, file system, render tools) off the async runtime.
async fn blocking<T, F>(stage: Stage, work: F) -> Result<T, PipelineError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, PipelineError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(source) => Err(PipelineError::Task { stage, source }),
    }
}
