//! An Application rendered at a commit and checked: what the engine takes.

use plumb_git::Commit;
use plumb_health::HealthScripts;
use plumb_kube::{Cluster, DiffReport, Engine, Progress, StatusReport, SyncOptions, SyncReport};
use plumb_model::{Application, Revision};
use plumb_render::Rendered;

use crate::error::PipelineError;

/// An Application, the commit of each of its sources, and its checked objects.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The Application.
    pub app: Application,
    /// The commit of each source, in source order.
    pub commits: Vec<Commit>,
    /// The same commits as one revision.
    pub revision: Revision,
    /// The rendered, checked objects.
    pub rendered: Rendered,
    /// The custom health scripts the engine asks before its built-in rules.
    pub health: HealthScripts,
}

impl Prepared {
    /// Bundle a render with its commits (at least one).
    pub fn new(
        app: Application,
        commits: Vec<Commit>,
        rendered: Rendered,
    ) -> Result<Prepared, PipelineError> {
        let revision = Revision::from_commits(commits.iter().map(|c| c.id.clone()))
            .ok_or(PipelineError::NoSources)?;
        Ok(Prepared {
            app,
            commits,
            revision,
            rendered,
            health: HealthScripts::default(),
        })
    }

    /// Assess health with `scripts` before the built-in rules.
    pub fn with_health(mut self, scripts: HealthScripts) -> Prepared {
        self.health = scripts;
        self
    }

    /// The Secrets whose values came from `plumb.dev/secret-ref…` references.
    pub fn referencing_secrets(&self) -> impl Iterator<Item = &plumb_model::Manifest> {
        self.rendered
            .manifests
            .iter()
            .filter(|m| plumb_secrets::refs::has_refs(&m.object))
    }

    /// The engine for this Application on `cluster`.
    pub fn engine<'a>(&'a self, cluster: &'a Cluster) -> Engine<'a> {
        Engine::new(cluster, &self.app).with_health(self.health.clone())
    }

    /// Make `cluster` equal to the rendered objects.
    pub async fn sync(
        &self,
        cluster: &Cluster,
        options: &SyncOptions,
        progress: &dyn Progress,
    ) -> Result<SyncReport, PipelineError> {
        Ok(self
            .engine(cluster)
            .sync(&self.rendered.manifests, &self.revision, options, progress)
            .await?)
    }

    /// What syncing would change (with `all`, unchanged objects too).
    pub async fn diff(&self, cluster: &Cluster, all: bool) -> Result<DiffReport, PipelineError> {
        Ok(self
            .engine(cluster)
            .diff(&self.rendered.manifests, &self.revision, all)
            .await?)
    }

    /// Sync and health status against `cluster`.
    pub async fn status(&self, cluster: &Cluster) -> Result<StatusReport, PipelineError> {
        Ok(self
            .engine(cluster)
            .status(&self.rendered.manifests, &self.revision)
            .await?)
    }
}
