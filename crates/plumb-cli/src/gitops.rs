//! `plumb sync`, `plumb diff`, `plumb status`: one Application at a time,
//! from its manifest file to the cluster.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use miette::{Diagnostic, IntoDiagnostic};
use plumb_git::{Credentials, GitCache};
use plumb_kube::{Cluster, Progress, SyncOptions};
use plumb_model::sync::ObjectResult;
use plumb_model::{Application, Revision};
use plumb_pipeline::{Clusters, Pipeline, PipelineError, Prepared};
use plumb_render::application::ApplicationFile;
use plumb_render::{Renderer, Tools};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// For scripts.
    Json,
}

/// Where plumb keeps its caches and store.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PLUMB_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("plumb");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/plumb"),
        None => PathBuf::from(".plumb"),
    }
}

/// Options every GitOps command shares.
#[derive(Debug, Args)]
pub struct Common {
    /// Application manifests (Argo CD `Application` YAML).
    #[arg(required = true, value_name = "APP.yaml")]
    pub apps: Vec<PathBuf>,
    /// Use this commit, branch or tag instead of each source's targetRevision.
    #[arg(long, value_name = "REV", value_parser = Revision::parse)]
    pub revision: Option<Revision>,
    /// Kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Git credentials file (default: DATA_DIR/git-credentials.yaml when present).
    #[arg(long, value_name = "PATH")]
    pub git_credentials: Option<PathBuf>,
    /// Deploy policy: refuse images that are not immutably tagged, signed and scanned (see docs/POLICY.md).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    #[command(flatten)]
    pub secrets: crate::secrets_scan::ModeArg,
    #[command(flatten)]
    pub keys: crate::secrets::KeyArgs,
    #[command(flatten)]
    pub refs: crate::secret_refs::RefArgs,
    #[command(flatten)]
    pub health: crate::health::HealthArgs,
}

/// Errors the GitOps commands show, with hints.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CommandError {
    /// The Application file is unusable.
    #[error("{0}")]
    #[diagnostic(help(
        "plumb reads Argo CD Application manifests (apiVersion argoproj.io/v1alpha1, kind Application)"
    ))]
    Load(#[from] plumb_render::application::LoadError),
    /// The Application could not be taken from Git to the cluster.
    #[error("{app}{at}: {cause}")]
    Pipeline {
        /// The Application.
        app: String,
        /// ` at COMMIT` when a commit is to blame.
        at: String,
        /// Why.
        cause: PipelineError,
        /// What to do.
        #[help]
        hint: &'static str,
    },
}

impl CommandError {
    fn of(app: &Application, cause: PipelineError) -> CommandError {
        let at = match &cause {
            PipelineError::Render { commit, .. } => format!(" at {}", short(commit)),
            _ => String::new(),
        };
        CommandError::Pipeline {
            app: app.metadata.name.clone(),
            at,
            hint: cause.hint(),
            cause,
        }
    }
}

/// Git credentials from the environment (`PLUMB_GIT_*`) and `file` (default:
/// `DATA_DIR/git-credentials.yaml` when present).
pub fn git_credentials(data_dir: &Path, file: Option<&Path>) -> miette::Result<Credentials> {
    let creds = Credentials::from_env();
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| Some(data_dir.join("git-credentials.yaml")).filter(|p| p.exists()));
    match file {
        Some(f) => creds.with_file(&f).into_diagnostic(),
        None => Ok(creds),
    }
}

/// The pipeline and the clusters, set up from the command line.
pub struct Session {
    pipeline: Pipeline,
    clusters: Clusters,
    revision: Option<Revision>,
}

impl Session {
    /// A session over `data_dir`, with the checks `--secrets-plaintext`
    /// and `--policy` ask for (secrets first: refusing them costs nothing).
    pub fn new(data_dir: &Path, common: &Common) -> miette::Result<Session> {
        let checks = crate::policy::checks(data_dir, common.policy.as_deref(), false)?;
        let mut session = Session::without_checks(data_dir, common)?;
        if let Some(c) = crate::secrets_scan::check(
            session.pipeline.git().clone(),
            common.secrets.secrets_plaintext,
        ) {
            session.pipeline = session.pipeline.with_check(c);
        }
        session.pipeline = session.pipeline.with_checks(&checks);
        Ok(session)
    }

    /// A session that only fetches and renders.
    pub fn without_checks(data_dir: &Path, common: &Common) -> miette::Result<Session> {
        let creds = git_credentials(data_dir, common.git_credentials.as_deref())?;
        let git = GitCache::new(data_dir.join("git"), creds);
        let renderer = Renderer::new(Tools::from_env(), data_dir.join("render"));
        let clusters = Clusters::new(common.kubeconfig.clone());
        let keys = crate::secrets::keyring(&common.keys)?;
        let health = crate::health::source(&common.health, &clusters)?;
        Ok(Session {
            pipeline: Pipeline::new(git, renderer)
                .with_keyring(keys)
                .with_decryption_secrets(clusters.clone())
                .with_secret_refs(crate::secret_refs::secret_refs(&common.refs)?)
                .with_health(health),
            clusters,
            revision: common.revision.clone(),
        })
    }

    /// Fetch, render and check one Application, without a cluster.
    pub async fn prepare_only(&self, file: ApplicationFile) -> Result<Prepared, CommandError> {
        let app = file.application;
        let prepared = self
            .pipeline
            .prepare(&app, self.revision.as_ref())
            .await
            .map_err(|e| CommandError::of(&app, e))?;
        for w in &prepared.rendered.warnings {
            eprintln!("warning: {}: {w}", prepared.app.metadata.name);
        }
        Ok(prepared)
    }

    /// Fetch, render and check one Application, and connect to its destination.
    pub async fn prepare(
        &self,
        file: ApplicationFile,
    ) -> Result<(Prepared, Cluster), CommandError> {
        let prepared = self.prepare_only(file).await?;
        let cluster = self
            .clusters
            .get(&prepared.app.spec.destination)
            .await
            .map_err(|e| CommandError::of(&prepared.app, e))?;
        Ok((prepared, cluster))
    }
}

pub(crate) fn load_all(paths: &[PathBuf]) -> miette::Result<Vec<ApplicationFile>> {
    let files = plumb_render::application::load_paths(paths).map_err(CommandError::Load)?;
    for f in &files {
        for w in &f.warnings {
            eprintln!("warning: {}: {w}", f.origin);
        }
    }
    Ok(files)
}

/// `plumb sync` arguments.
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    common: Common,
    /// Ask the server what would change; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Delete objects that left Git (default: syncPolicy.automated.prune).
    #[arg(long, overrides_with = "no_prune")]
    prune: bool,
    /// Never delete objects that left Git.
    #[arg(long, overrides_with = "prune")]
    no_prune: bool,
    /// Prune even when it would delete more than --max-prune-percent of the objects.
    #[arg(long)]
    force_prune: bool,
    /// Largest share of an Application's objects a prune may delete unforced.
    #[arg(long, default_value_t = 50.0, value_name = "PERCENT")]
    max_prune_percent: f64,
    /// Objects applied at once within a stage.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

/// A progress bar that appears only when work takes over a second on a TTY.
struct Bar {
    bar: ProgressBar,
    started: Instant,
    shown: Mutex<bool>,
    tty: bool,
}

impl Bar {
    fn new(label: &str) -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        Bar {
            bar,
            started: Instant::now(),
            shown: Mutex::new(false),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&self, total: usize) {
        self.bar.set_length(total as u64);
    }

    fn object(&self, _r: &ObjectResult) {
        self.bar.inc(1);
        if self.tty
            && self.started.elapsed() > Duration::from_secs(1)
            && let Ok(mut shown) = self.shown.lock()
            && !*shown
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            *shown = true;
        }
    }
}

fn object_line(r: &ObjectResult) -> String {
    let target = match &r.object.namespace {
        Some(ns) => format!("{ns}/{}", r.object.name),
        None => r.object.name.clone(),
    };
    let kind = if r.object.group.is_empty() {
        r.object.kind.clone()
    } else {
        format!("{}.{}", r.object.kind, r.object.group)
    };
    if r.message.is_empty() {
        format!("{kind} {target} {}", r.action)
    } else {
        format!("{kind} {target} {} ({})", r.action, r.message)
    }
}

/// Run `plumb sync`.
pub async fn sync(data_dir: &Path, args: SyncArgs) -> miette::Result<ExitCode> {
    let files = load_all(&args.common.apps)?;
    let session = Session::new(data_dir, &args.common)?;
    let mut ok = true;
    let mut reports = Vec::new();
    for file in files {
        let (prepared, cluster) = session.prepare(file).await?;
        let automated_prune = prepared.app.automated().is_some_and(|a| a.prune);
        let opts = SyncOptions {
            dry_run: args.dry_run,
            prune: if args.prune {
                true
            } else if args.no_prune {
                false
            } else {
                automated_prune
            },
            force_prune: args.force_prune,
            max_prune_share: (args.max_prune_percent / 100.0).clamp(0.0, 1.0),
            concurrency: args.concurrency.max(1),
            ..Default::default()
        };
        let bar = Bar::new(&format!("syncing {}", prepared.app.metadata.name));
        let report = prepared.sync(&cluster, &opts, &bar).await;
        bar.finish();
        let report = report.map_err(|e| CommandError::of(&prepared.app, e))?;
        ok &= report.succeeded;
        if args.output == Output::Text {
            for r in &report.results {
                println!("{}", object_line(r));
            }
            let c = report.counts;
            println!(
                "{} {} {} to {}: {} created, {} configured, {} unchanged, {} pruned, {} skipped, {} failed",
                if report.succeeded { "✓" } else { "✗" },
                if args.dry_run { "dry run of" } else { "synced" },
                prepared.app.metadata.name,
                prepared.revision.short(),
                c.created,
                c.configured,
                c.unchanged,
                c.pruned,
                c.skipped,
                c.failed
            );
        }
        reports.push(report);
    }
    finish(&reports, args.output, ok)
}

/// Print the reports as JSON when asked; exit 0 when `ok`, else 1.
pub(crate) fn finish<T: serde::Serialize>(
    reports: &[T],
    output: Output,
    ok: bool,
) -> miette::Result<ExitCode> {
    if output == Output::Json {
        print_json(reports)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_json<T: serde::Serialize>(items: &[T]) -> miette::Result<()> {
    let text = if items.len() == 1 {
        serde_json::to_string_pretty(&items[0])
    } else {
        serde_json::to_string_pretty(items)
    }
    .into_diagnostic()?;
    println!("{text}");
    Ok(())
}

/// Arguments of the commands that only look (`plumb diff`, `plumb status`).
#[derive(Debug, Args)]
pub struct ViewArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    pub(crate) output: Output,
}

/// Run `plumb diff`: exit 0 when the cluster matches Git, 1 when it differs.
pub async fn diff(data_dir: &Path, args: ViewArgs) -> miette::Result<ExitCode> {
    let files = load_all(&args.common.apps)?;
    let session = Session::new(data_dir, &args.common)?;
    let color = std::io::stdout().is_terminal();
    let mut in_sync = true;
    let mut reports = Vec::new();
    for file in files {
        let (prepared, cluster) = session.prepare(file).await?;
        let report = prepared
            .diff(&cluster, false)
            .await
            .map_err(|e| CommandError::of(&prepared.app, e))?;
        in_sync &= report.in_sync();
        if args.output == Output::Text {
            for o in &report.objects {
                let text = if color {
                    plumb_kube::textdiff::colorize(&o.diff)
                } else {
                    o.diff.clone()
                };
                println!("===== {} ({})", o.object, o.state);
                print!("{text}");
            }
        }
        reports.push(report);
    }
    finish(&reports, args.output, in_sync)
}

/// Run `plumb status`.
pub async fn status(data_dir: &Path, args: ViewArgs) -> miette::Result<ExitCode> {
    let files = load_all(&args.common.apps)?;
    let session = Session::new(data_dir, &args.common)?;
    let mut reports = Vec::new();
    for file in files {
        let (prepared, cluster) = session.prepare(file).await?;
        let report = prepared
            .status(&cluster)
            .await
            .map_err(|e| CommandError::of(&prepared.app, e))?;
        if args.output == Output::Text {
            let r = &report;
            println!("Name:      {}", r.name);
            println!("Sync:      {}", r.sync);
            println!("Health:    {}", r.health);
            println!(
                "Revision:  {} (Git is at {})",
                r.revision
                    .as_ref()
                    .map(|r| short(r.first()))
                    .unwrap_or("never synced"),
                short(r.target_revision.first())
            );
            println!(
                "Resources: {} total, {} synced, {} out of sync, {} missing, {} to prune, {} healthy",
                r.resources.total,
                r.resources.synced,
                r.resources.out_of_sync,
                r.resources.missing,
                r.resources.requires_pruning,
                r.resources.healthy
            );
            for o in &r.objects {
                println!(
                    "  {:<40} {:<10} {:<12} {}",
                    o.object.to_string(),
                    o.sync.to_string(),
                    o.health.to_string(),
                    o.message
                );
            }
        }
        reports.push(report);
    }
    finish(&reports, args.output, true)
}

fn short(s: &str) -> &str {
    &s[..s.len().min(7)]
}
