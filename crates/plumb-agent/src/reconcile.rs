//! The reconcile loop and the operations the API offers.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use plumb_git::{Commit, Credentials, GitCache};
use plumb_kube::{Cluster, DiffReport, Engine, SyncOptions, SyncReport};
use plumb_model::application::Application;
use plumb_model::{HealthStatus, SyncStatus};
use plumb_render::application::ApplicationFile;
use plumb_render::{Rendered, Renderer, Tools};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::metrics::{AppLabels, Metrics, ResultLabel};
use crate::notify::{Event, EventKind, NotificationConfig, Notifier};
use crate::status::{AppStatus, HistoryEntry, Phase};
use crate::store::{Store, StoreError};
use crate::watch::Watches;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where caches and the store live.
    pub data_dir: PathBuf,
    /// Application files and directories of them.
    pub app_paths: Vec<PathBuf>,
    /// Kubeconfig for destinations (default: $KUBECONFIG, ~/.kube/config, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// How often each repository is checked for new commits.
    pub poll_interval: Duration,
    /// How often every Application is compared with the cluster regardless
    /// of events (zero: never).
    pub resync_interval: Duration,
    /// How often Application files are checked for changes.
    pub file_check_interval: Duration,
    /// Applications reconciled at once.
    pub parallelism: usize,
    /// History entries kept per Application.
    pub history_limit: usize,
    /// Secret that push webhooks must be signed with.
    pub webhook_secret: Option<String>,
    /// Notification targets.
    pub notifications: NotificationConfig,
    /// Objects applied at once within a sync step.
    pub concurrency: usize,
    /// Largest share of an Application a prune may delete unforced.
    pub max_prune_share: f64,
    /// Git credentials.
    pub credentials: Credentials,
    /// kustomize and helm.
    pub tools: Tools,
}

impl AgentConfig {
    /// Defaults for a data directory and Application paths.
    pub fn new(data_dir: PathBuf, app_paths: Vec<PathBuf>) -> AgentConfig {
        AgentConfig {
            data_dir,
            app_paths,
            kubeconfig: None,
            poll_interval: Duration::from_secs(60),
            resync_interval: Duration::from_secs(30 * 60),
            file_check_interval: Duration::from_secs(2),
            parallelism: 8,
            history_limit: 50,
            webhook_secret: None,
            notifications: NotificationConfig::default(),
            concurrency: 32,
            max_prune_share: 0.5,
            credentials: Credentials::default(),
            tools: Tools::from_env(),
        }
    }
}

/// Errors of agent operations.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No Application by that name.
    #[error("no Application named {0:?}")]
    NotFound(String),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Loading Application files failed.
    #[error("{0}")]
    Load(String),
    /// Reconciling or syncing failed.
    #[error("{0}")]
    Failed(String),
}

/// Why an Application is being reconciled; stronger reasons do more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reason {
    /// A managed object's status changed: refresh health only.
    Health,
    /// A managed object changed or vanished.
    Drift,
    /// Periodic comparison.
    Resync,
    /// Look at Git again (poll, webhook, file change, start, user).
    Refresh,
}

struct Slot {
    file: ApplicationFile,
    status: AppStatus,
    lock: Arc<tokio::sync::Mutex<()>>,
    queued: Option<Reason>,
    attempts: u32,
    commits: Vec<Commit>,
    /// What the last Git poll saw for each source (by index), so that an
    /// Application whose reconcile fails after resolving is not refreshed by
    /// every poll (it retries on its backoff) until the ref really moves.
    polled: HashMap<usize, String>,
}

/// Filters for listing Applications.
#[derive(Debug, Clone, Default)]
pub struct ApplicationFilter {
    /// Substring of the name.
    pub name: Option<String>,
    /// Sync status.
    pub sync: Option<SyncStatus>,
    /// Health status.
    pub health: Option<HealthStatus>,
}

/// A page of results.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Items to skip.
    pub offset: usize,
    /// Items to return.
    pub limit: usize,
}

struct Inner {
    config: AgentConfig,
    store: Store,
    git: GitCache,
    renderer: Renderer,
    metrics: Metrics,
    notifier: Notifier,
    apps: RwLock<BTreeMap<String, Slot>>,
    clusters: tokio::sync::Mutex<HashMap<String, Cluster>>,
    triggers: mpsc::UnboundedSender<String>,
    events: broadcast::Sender<AppStatus>,
    permits: Arc<Semaphore>,
    watches: Watches,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
    files_signature: std::sync::Mutex<Vec<(PathBuf, SystemTime, u64)>>,
    /// Recently resolved (repository, revision) → commit, so the many
    /// Applications a push refreshes share one ref lookup.
    resolved: std::sync::Mutex<HashMap<(String, String), (Commit, Instant)>>,
}

/// How long a resolved revision is reused.
const RESOLVED_TTL: Duration = Duration::from_secs(2);

/// The agent. Cheap to clone; all clones share one loop.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn lock_read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match l.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn lock_write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    match l.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn initial_status(f: &ApplicationFile) -> AppStatus {
    let app = &f.application;
    let first = app
        .sources()
        .first()
        .map(|s| (*s).clone())
        .unwrap_or_default();
    let automated = app.automated();
    AppStatus {
        key: app.key(),
        name: app.metadata.name.clone(),
        namespace: app.metadata.namespace.clone(),
        source_file: f.origin.file.clone(),
        repo_url: first.repo_url.clone(),
        path: first.path().to_string(),
        target_revision: first.revision().to_string(),
        destination_server: app
            .spec
            .destination
            .server
            .clone()
            .or_else(|| app.spec.destination.name.clone())
            .unwrap_or_default(),
        destination_namespace: app.spec.destination.namespace.clone().unwrap_or_default(),
        sync: SyncStatus::Unknown,
        health: HealthStatus::Unknown,
        automated: automated.is_some(),
        self_heal: automated.is_some_and(|a| a.self_heal),
        prune: automated.is_some_and(|a| a.prune),
        ..Default::default()
    }
}

impl Agent {
    /// Open the store, load the Applications and start the loop (poller, file
    /// checks, scheduler). Every Application is reconciled once at start.
    pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        let store = Store::open(&config.data_dir)?;
        let git = GitCache::new(config.data_dir.join("git"), config.credentials.clone());
        let renderer = Renderer::new(config.tools.clone(), config.data_dir.join("render"));
        let notifier = Notifier::start(config.notifications.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(config.parallelism.max(1))),
            config,
            store,
            git,
            renderer,
            metrics: Metrics::new(),
            notifier,
            apps: RwLock::new(BTreeMap::new()),
            clusters: tokio::sync::Mutex::new(HashMap::new()),
            triggers: tx,
            events,
            watches: Watches::default(),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            files_signature: std::sync::Mutex::new(Vec::new()),
            resolved: std::sync::Mutex::new(HashMap::new()),
        });
        let agent = Agent { inner };
        agent.reload_files(true)?;
        agent.spawn_scheduler(rx);
        agent.spawn_timers();
        Ok(agent)
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The webhook secret, if one is configured.
    pub fn webhook_secret(&self) -> Option<&str> {
        self.inner.config.webhook_secret.as_deref()
    }

    /// Status changes as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<AppStatus> {
        self.inner.events.subscribe()
    }

    // ---- scheduling -------------------------------------------------------

    pub(crate) fn trigger(&self, key: &str, reason: Reason) {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let send = {
            let mut apps = lock_write(&self.inner.apps);
            let Some(slot) = apps.get_mut(key) else {
                return;
            };
            let was_queued = slot.queued.is_some();
            slot.queued = Some(slot.queued.map_or(reason, |q| q.max(reason)));
            !was_queued
        };
        if send {
            let _ = self.inner.triggers.send(key.to_string());
        }
    }

    /// A managed object changed in the cluster (called by watches).
    pub(crate) fn object_changed(&self, app_key: &str, status_only: bool) {
        if status_only {
            self.trigger(app_key, Reason::Health);
        } else {
            self.inner.metrics.drift_events.inc();
            self.trigger(app_key, Reason::Drift);
        }
    }

    fn spawn_scheduler(&self, mut rx: mpsc::UnboundedReceiver<String>) {
        let agent = self.clone();
        tokio::spawn(async move {
            while let Some(key) = rx.recv().await {
                let agent = agent.clone();
                tokio::spawn(async move { agent.run_queued(key).await });
            }
        });
    }

    async fn run_queued(&self, key: String) {
        let Ok(_permit) = self.inner.permits.clone().acquire_owned().await else {
            return;
        };
        let Some(lock) = lock_read(&self.inner.apps)
            .get(&key)
            .map(|s| s.lock.clone())
        else {
            return;
        };
        let _guard = lock.lock().await;
        let reason = {
            let mut apps = lock_write(&self.inner.apps);
            match apps.get_mut(&key).and_then(|s| s.queued.take()) {
                Some(r) => r,
                None => return,
            }
        };
        if self.inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        self.reconcile(&key, reason).await;
        self.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn spawn_timers(&self) {
        let agent = self.clone();
        let poll = self.inner.config.poll_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll.max(Duration::from_millis(200)));
            tick.tick().await;
            loop {
                tick.tick().await;
                if agent.inner.stopping.load(Ordering::SeqCst) {
                    return;
                }
                agent.poll_git().await;
            }
        });
        let agent = self.clone();
        let files = self.inner.config.file_check_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(files.max(Duration::from_millis(200)));
            tick.tick().await;
            loop {
                tick.tick().await;
                if agent.inner.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(e) = agent.reload_files(false) {
                    tracing::error!(error = %e, "Application files could not be reloaded; keeping the previous ones");
                }
            }
        });
        let resync = self.inner.config.resync_interval;
        if !resync.is_zero() {
            let agent = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(resync);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if agent.inner.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let keys: Vec<String> = lock_read(&agent.inner.apps).keys().cloned().collect();
                    for k in keys {
                        agent.trigger(&k, Reason::Resync);
                    }
                }
            });
        }
    }

    /// Stop taking work, let running reconciles finish (up to `grace`), and
    /// stop watching. Everything already recorded is in the store.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        while self.inner.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.inner.watches.stop_all();
    }

    // ---- Application files --------------------------------------------------

    fn file_signature(&self) -> Vec<(PathBuf, SystemTime, u64)> {
        let mut out = Vec::new();
        for p in &self.inner.config.app_paths {
            let mut push = |f: &std::path::Path| {
                if let Ok(m) = std::fs::metadata(f) {
                    out.push((
                        f.to_path_buf(),
                        m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        m.len(),
                    ));
                }
            };
            if p.is_dir() {
                if let Ok(rd) = std::fs::read_dir(p) {
                    let mut files: Vec<PathBuf> =
                        rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    files.sort();
                    for f in files {
                        push(&f);
                    }
                }
            } else {
                push(p);
            }
        }
        out
    }

    /// Re-read the Application files when they changed (or always on `force`).
    fn reload_files(&self, force: bool) -> Result<(), AgentError> {
        let sig = self.file_signature();
        {
            let mut last = match self.inner.files_signature.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if !force && *last == sig {
                return Ok(());
            }
            *last = sig;
        }
        let files = plumb_render::application::load_paths(&self.inner.config.app_paths)
            .map_err(|e| AgentError::Load(e.to_string()))?;
        for f in &files {
            for w in &f.warnings {
                tracing::warn!(file = %f.origin, "{w}");
            }
        }
        let stored: HashMap<String, AppStatus> = self
            .inner
            .store
            .statuses()
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect();
        let mut to_trigger = Vec::new();
        {
            let mut apps = lock_write(&self.inner.apps);
            let mut seen = std::collections::BTreeSet::new();
            for f in files {
                let key = f.application.key();
                if !seen.insert(key.clone()) {
                    tracing::error!(app = %key, file = %f.origin, "defined twice; the first definition wins");
                    continue;
                }
                match apps.get_mut(&key) {
                    Some(slot) if slot.file.application == f.application => {}
                    Some(slot) => {
                        let mut status = initial_status(&f);
                        status.revision = slot.status.revision.clone();
                        status.git_revision = slot.status.git_revision.clone();
                        slot.status = status;
                        slot.file = f;
                        slot.commits.clear();
                        to_trigger.push(key);
                    }
                    None => {
                        let mut status = initial_status(&f);
                        if let Some(old) = stored.get(&key) {
                            status.revision = old.revision.clone();
                            status.last_sync = old.last_sync;
                        }
                        apps.insert(
                            key.clone(),
                            Slot {
                                file: f,
                                status,
                                lock: Arc::new(tokio::sync::Mutex::new(())),
                                queued: None,
                                attempts: 0,
                                commits: Vec::new(),
                                polled: HashMap::new(),
                            },
                        );
                        to_trigger.push(key);
                    }
                }
            }
            let gone: Vec<String> = apps
                .keys()
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for k in gone {
                tracing::info!(app = %k, "Application removed from its files; its objects are left in place");
                apps.remove(&k);
            }
        }
        for k in to_trigger {
            self.trigger(&k, Reason::Refresh);
        }
        self.update_gauges();
        Ok(())
    }

    // ---- Git ------------------------------------------------------------------

    /// Check every repository once; refresh Applications whose ref moved.
    async fn poll_git(&self) {
        // Per repository: (Application, source index, revision, the commit
        // it last resolved to, what the last poll saw).
        type Entry = (String, usize, String, Option<String>, Option<String>);
        let mut by_repo: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for (key, slot) in lock_read(&self.inner.apps).iter() {
            if slot.status.suspended.is_some() {
                continue;
            }
            for (i, s) in slot.file.application.sources().iter().enumerate() {
                by_repo.entry(s.repo_url.clone()).or_default().push((
                    key.clone(),
                    i,
                    s.revision().to_string(),
                    slot.commits.get(i).map(|c| c.id.clone()),
                    slot.polled.get(&i).cloned(),
                ));
            }
        }
        for (url, apps) in by_repo {
            let git = self.inner.git.clone();
            let started = Instant::now();
            let u = url.clone();
            let refs = tokio::task::spawn_blocking(move || git.remote_refs(&u)).await;
            self.inner
                .metrics
                .git_fetch_duration
                .observe(started.elapsed().as_secs_f64());
            let refs = match refs {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!(repo = %plumb_git::redact_url(&url), error = %e, "Git poll failed");
                    continue;
                }
                Err(_) => continue,
            };
            let mut moved: Vec<String> = Vec::new();
            {
                let mut slots = lock_write(&self.inner.apps);
                for (key, i, rev, known, polled) in apps {
                    let Some(now) = refs.resolve(&rev) else {
                        continue;
                    };
                    if Some(&now) != known.as_ref() && Some(&now) != polled.as_ref() {
                        moved.push(key.clone());
                    }
                    if let Some(slot) = slots.get_mut(&key) {
                        slot.polled.insert(i, now);
                    }
                }
            }
            moved.dedup();
            if !moved.is_empty() {
                self.forget_resolved(|u| u == url);
            }
            for key in moved {
                self.trigger(&key, Reason::Refresh);
            }
        }
    }

    /// Refresh every Application whose source is one of `urls` (a push webhook).
    /// Returns the keys refreshed.
    pub fn refresh_repository(&self, urls: &[String]) -> Vec<String> {
        let wanted: Vec<String> = urls
            .iter()
            .map(|u| crate::webhook::canonical_repo(u))
            .collect();
        let keys: Vec<String> = lock_read(&self.inner.apps)
            .iter()
            .filter(|(_, s)| {
                s.file
                    .application
                    .sources()
                    .iter()
                    .any(|src| wanted.contains(&crate::webhook::canonical_repo(&src.repo_url)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        self.forget_resolved(|url| wanted.contains(&crate::webhook::canonical_repo(url)));
        for k in &keys {
            self.trigger(k, Reason::Refresh);
        }
        keys
    }

    fn forget_resolved(&self, matches: impl Fn(&str) -> bool) {
        let mut cache = match self.inner.resolved.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        cache.retain(|(url, _), _| !matches(url));
    }

    /// Ask for a reconcile of one Application, looking at Git again.
    pub fn refresh(&self, name: &str) -> Result<(), AgentError> {
        let key = self.key_of(name)?;
        self.forget_resolved_of(&key);
        self.trigger(&key, Reason::Refresh);
        Ok(())
    }

    /// Drop the cached revision resolutions of `key`'s repositories, so that
    /// an explicit refresh or sync asks Git again rather than reusing an
    /// answer up to [`RESOLVED_TTL`] old.
    fn forget_resolved_of(&self, key: &str) {
        let repos: Vec<String> = lock_read(&self.inner.apps)
            .get(key)
            .map(|s| {
                s.file
                    .application
                    .sources()
                    .iter()
                    .map(|src| crate::webhook::canonical_repo(&src.repo_url))
                    .collect()
            })
            .unwrap_or_default();
        self.forget_resolved(|url| repos.contains(&crate::webhook::canonical_repo(url)));
    }

    async fn resolve_commits(
        &self,
        app: &Application,
        pinned: Option<&str>,
    ) -> Result<Vec<Commit>, String> {
        let git = self.inner.git.clone();
        let sources: Vec<(String, String)> = app
            .sources()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let rev = match pinned {
                    Some(p) => p.split(',').nth(i).unwrap_or(p).to_string(),
                    None => s.revision().to_string(),
                };
                (s.repo_url.clone(), rev)
            })
            .collect();
        let started = Instant::now();
        let cache = self
            .inner
            .resolved
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let pinned_all = pinned.is_some();
        let out = tokio::task::spawn_blocking(move || {
            sources
                .iter()
                .map(|(url, rev)| {
                    if !pinned_all
                        && let Some((c, at)) = cache.get(&(url.clone(), rev.clone()))
                        && at.elapsed() < RESOLVED_TTL
                    {
                        return Ok(c.clone());
                    }
                    git.fetch(url, rev).map_err(|e| e.to_string())
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| e.to_string())?;
        self.inner
            .metrics
            .git_fetch_duration
            .observe(started.elapsed().as_secs_f64());
        if let (Ok(commits), None) = (&out, pinned)
            && let Ok(mut cache) = self.inner.resolved.lock()
        {
            for (s, c) in app.sources().iter().zip(commits) {
                let k = (s.repo_url.clone(), s.revision().to_string());
                if cache
                    .get(&k)
                    .is_none_or(|(_, at)| at.elapsed() >= RESOLVED_TTL)
                {
                    cache.insert(k, (c.clone(), Instant::now()));
                }
            }
        }
        out
    }

    async fn render(&self, app: &Application, commits: &[Commit]) -> Result<Rendered, String> {
        let git = self.inner.git.clone();
        let renderer = self.inner.renderer.clone();
        let app = app.clone();
        let ids: Vec<String> = commits.iter().map(|c| c.id.clone()).collect();
        tokio::task::spawn_blocking(move || {
            let snaps = app
                .sources()
                .iter()
                .zip(ids.iter())
                .map(|(s, id)| git.snapshot(&s.repo_url, id).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            renderer
                .render_application(&app, &snaps)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn cluster_for(&self, app: &Application) -> Result<Cluster, String> {
        let d = &app.spec.destination;
        let key = format!(
            "{}|{}",
            d.server.as_deref().unwrap_or(""),
            d.name.as_deref().unwrap_or("")
        );
        let mut clusters = self.inner.clusters.lock().await;
        if let Some(c) = clusters.get(&key) {
            return Ok(c.clone());
        }
        let (config, server) = plumb_kube::config_for(d, self.inner.config.kubeconfig.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let client = kube::client::ClientBuilder::try_from(config)
            .map_err(|e| e.to_string())?
            .with_layer(&self.inner.metrics.kube_layer())
            .build();
        let cluster = Cluster::new(client, server)
            .await
            .map_err(|e| e.to_string())?;
        clusters.insert(key, cluster.clone());
        Ok(cluster)
    }

    fn sync_options(&self, app: &Application) -> SyncOptions {
        SyncOptions {
            prune: app.automated().is_some_and(|a| a.prune),
            concurrency: self.inner.config.concurrency,
            max_prune_share: self.inner.config.max_prune_share,
            ..Default::default()
        }
    }

    // ---- reconcile --------------------------------------------------------------

    async fn reconcile(&self, key: &str, reason: Reason) {
        let started = Instant::now();
        let result = self.reconcile_inner(key, reason).await;
        self.inner
            .metrics
            .reconcile_duration
            .observe(started.elapsed().as_secs_f64());
        if let Err(message) = result {
            let (attempts, status) = {
                let mut apps = lock_write(&self.inner.apps);
                let Some(slot) = apps.get_mut(key) else {
                    return;
                };
                slot.attempts += 1;
                slot.status.phase = Phase::Failed;
                slot.status.message = message.clone();
                slot.status.last_reconcile = Some(now());
                (slot.attempts, slot.status.clone())
            };
            tracing::warn!(app = %key, attempt = attempts, error = %message, "reconcile failed");
            self.publish(&status);
            let delay =
                Duration::from_secs(5u64.saturating_mul(1 << attempts.min(6).saturating_sub(1)))
                    .min(Duration::from_secs(300));
            let agent = self.clone();
            let key = key.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                agent.trigger(&key, Reason::Refresh);
            });
        }
    }

    fn announce_drift(&self, key: &str, revision: &str, message: String) {
        self.inner.notifier.send(Event {
            event: EventKind::DriftDetected,
            application: key.to_string(),
            revision: revision.to_string(),
            message,
            time: now(),
        });
    }

    async fn reconcile_inner(&self, key: &str, reason: Reason) -> Result<(), String> {
        let (file, cached_commits, previous) = {
            let apps = lock_read(&self.inner.apps);
            let Some(slot) = apps.get(key) else {
                return Ok(());
            };
            (slot.file.clone(), slot.commits.clone(), slot.status.clone())
        };
        let app = &file.application;
        let pinned = self
            .inner
            .store
            .suspension(key)
            .map_err(|e| e.to_string())?;
        let commits = if pinned.is_some() || reason == Reason::Refresh || cached_commits.is_empty()
        {
            self.resolve_commits(app, pinned.as_deref()).await?
        } else {
            cached_commits
        };
        let revision = commits
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let rendered = self.render(app, &commits).await?;
        let cluster = self.cluster_for(app).await?;
        let engine = Engine::new(&cluster, app);
        let automated = app.automated().filter(|_| pinned.is_none());
        // A new commit under automation is synced straight away: the sync
        // itself finds what changed, and status is computed once, after.
        let synced_revision = engine
            .inventory()
            .await
            .map_err(|e| e.to_string())?
            .and_then(|i| i.revision);
        let new_commit = synced_revision.as_deref() != Some(revision.as_str());
        let skip_first_status = automated.is_some() && new_commit && reason != Reason::Health;
        let mut report = None;
        let mut out_of_sync = new_commit;
        let mut drift_announced = false;
        if !skip_first_status {
            let r = engine
                .status(&rendered.manifests, &revision)
                .await
                .map_err(|e| e.to_string())?;
            out_of_sync = r.sync == SyncStatus::OutOfSync;
            // Drift is the move from Synced to OutOfSync without a new
            // commit, whichever trigger's reconcile sees it first (a health
            // reconcile racing the drift one must not swallow the event).
            if out_of_sync && !new_commit && previous.sync != SyncStatus::OutOfSync {
                drift_announced = true;
                self.announce_drift(
                    key,
                    &revision,
                    format!("{} objects differ from Git", r.resources.out_of_sync),
                );
            }
            report = Some(r);
        }
        let should_sync = match automated {
            Some(a) if reason != Reason::Health => new_commit || (out_of_sync && a.self_heal),
            _ => false,
        };
        if should_sync {
            self.set_phase(key, Phase::Syncing);
            let trigger = if new_commit { "automated" } else { "self-heal" };
            let opts = self.sync_options(app);
            let sync = engine
                .sync(&rendered.manifests, &revision, &opts, &())
                .await;
            let sync = match sync {
                Ok(s) => s,
                Err(e) => {
                    self.record_failure(key, &commits, trigger, &e.to_string());
                    return Err(e.to_string());
                }
            };
            self.record_sync(key, &commits, trigger, &sync);
            if !sync.succeeded {
                return Err(first_failure(&sync));
            }
            report = None;
        }
        let report = match report {
            Some(r) => r,
            None => engine
                .status(&rendered.manifests, &revision)
                .await
                .map_err(|e| e.to_string())?,
        };
        // Reaching here after `should_sync` means the sync succeeded.
        if should_sync && !drift_announced && report.sync == SyncStatus::OutOfSync {
            // Someone changed a managed object between this sync and the
            // status taken after it: drift, and the watch's own reconcile
            // will find the status already OutOfSync, so announce it here.
            self.announce_drift(
                key,
                &revision,
                format!(
                    "{} objects differ from Git right after a sync",
                    report.resources.out_of_sync
                ),
            );
        }
        let ensure: Vec<_> = report
            .objects
            .iter()
            .map(|o| (o.object.clone(), o.version.clone()))
            .collect();
        self.inner.watches.ensure(self, &cluster, &ensure).await;
        let status = {
            let mut apps = lock_write(&self.inner.apps);
            let Some(slot) = apps.get_mut(key) else {
                return Ok(());
            };
            slot.commits = commits;
            slot.attempts = 0;
            let s = &mut slot.status;
            s.sync = report.sync;
            s.health = report.health;
            s.revision = report.revision.clone();
            s.git_revision = Some(revision.clone());
            s.suspended = pinned.clone();
            s.phase = Phase::Idle;
            s.message = rendered.warnings.join("; ");
            s.last_reconcile = Some(now());
            s.resources = report.resources;
            s.objects = report.objects.clone();
            s.clone()
        };
        if status.health == HealthStatus::Degraded && previous.health != HealthStatus::Degraded {
            let why: Vec<String> = status
                .objects
                .iter()
                .filter(|o| o.health == HealthStatus::Degraded)
                .map(|o| format!("{}: {}", o.object, o.message))
                .collect();
            self.inner.notifier.send(Event {
                event: EventKind::HealthDegraded,
                application: key.to_string(),
                revision: revision.clone(),
                message: why.join("; "),
                time: now(),
            });
        }
        self.publish(&status);
        Ok(())
    }

    fn set_phase(&self, key: &str, phase: Phase) {
        let status = {
            let mut apps = lock_write(&self.inner.apps);
            let Some(slot) = apps.get_mut(key) else {
                return;
            };
            slot.status.phase = phase;
            slot.status.clone()
        };
        let _ = self.inner.events.send(status);
    }

    fn publish(&self, status: &AppStatus) {
        if let Err(e) = self.inner.store.put_status(status) {
            tracing::error!(error = %e, "cannot save status");
        }
        let _ = self.inner.events.send(status.clone());
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let mut counts: HashMap<(SyncStatus, HealthStatus), i64> = HashMap::new();
        for slot in lock_read(&self.inner.apps).values() {
            *counts
                .entry((slot.status.sync, slot.status.health))
                .or_default() += 1;
        }
        self.inner.metrics.applications.clear();
        for ((sync, health), n) in counts {
            self.inner
                .metrics
                .applications
                .get_or_create(&AppLabels {
                    sync: sync.to_string(),
                    health: health.to_string(),
                })
                .set(n);
        }
    }

    fn record_sync(&self, key: &str, commits: &[Commit], trigger: &str, report: &SyncReport) {
        let result = if report.succeeded {
            "succeeded"
        } else {
            "failed"
        };
        self.inner
            .metrics
            .syncs
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        if report.dry_run {
            return;
        }
        let first = commits.first();
        let entry = HistoryEntry {
            id: 0,
            revision: report.revision.clone(),
            author: first.map(|c| c.author.clone()).unwrap_or_default(),
            message: first.map(|c| c.subject.clone()).unwrap_or_default(),
            commit_time: first.map(|c| c.time).unwrap_or_default(),
            synced_at: now(),
            trigger: trigger.into(),
            result: result.into(),
            error: if report.succeeded {
                String::new()
            } else {
                first_failure(report)
            },
            counts: report.counts,
            actions: report.results.clone(),
        };
        if let Err(e) = self
            .inner
            .store
            .add_history(key, entry, self.inner.config.history_limit)
        {
            tracing::error!(error = %e, "cannot record history");
        }
        {
            let mut apps = lock_write(&self.inner.apps);
            if let Some(slot) = apps.get_mut(key) {
                slot.status.last_sync = Some(now());
            }
        }
        self.inner.notifier.send(Event {
            event: if report.succeeded {
                EventKind::SyncSucceeded
            } else {
                EventKind::SyncFailed
            },
            application: key.to_string(),
            revision: report.revision.clone(),
            message: format!(
                "{} created, {} configured, {} pruned, {} failed",
                report.counts.created,
                report.counts.configured,
                report.counts.pruned,
                report.counts.failed
            ),
            time: now(),
        });
    }

    fn record_failure(&self, key: &str, commits: &[Commit], trigger: &str, error: &str) {
        self.inner
            .metrics
            .syncs
            .get_or_create(&ResultLabel {
                result: "failed".into(),
            })
            .inc();
        let first = commits.first();
        let entry = HistoryEntry {
            revision: commits
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
            author: first.map(|c| c.author.clone()).unwrap_or_default(),
            message: first.map(|c| c.subject.clone()).unwrap_or_default(),
            commit_time: first.map(|c| c.time).unwrap_or_default(),
            synced_at: now(),
            trigger: trigger.into(),
            result: "failed".into(),
            error: error.into(),
            ..Default::default()
        };
        let _ = self
            .inner
            .store
            .add_history(key, entry, self.inner.config.history_limit);
        self.inner.notifier.send(Event {
            event: EventKind::SyncFailed,
            application: key.to_string(),
            revision: first.map(|c| c.id.clone()).unwrap_or_default(),
            message: error.to_string(),
            time: now(),
        });
    }

    // ---- API operations -----------------------------------------------------------

    fn key_of(&self, name: &str) -> Result<String, AgentError> {
        let apps = lock_read(&self.inner.apps);
        if apps.contains_key(name) {
            return Ok(name.to_string());
        }
        let matches: Vec<&String> = apps
            .iter()
            .filter(|(_, s)| s.status.name == name)
            .map(|(k, _)| k)
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(AgentError::NotFound(name.to_string())),
            many => Err(AgentError::Invalid(format!(
                "{name:?} names several Applications ({}); use namespace/name",
                many.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Applications matching `filter`, sorted by name, one page of them
    /// (without per-object detail), and the total that matched.
    pub fn list(&self, filter: &ApplicationFilter, page: Page) -> (Vec<AppStatus>, usize) {
        let apps = lock_read(&self.inner.apps);
        let needle = filter.name.as_deref().map(str::to_ascii_lowercase);
        let mut matched: Vec<&AppStatus> = apps
            .values()
            .map(|s| &s.status)
            .filter(|s| {
                needle
                    .as_deref()
                    .is_none_or(|n| s.name.to_ascii_lowercase().contains(n))
            })
            .filter(|s| filter.sync.is_none_or(|x| s.sync == x))
            .filter(|s| filter.health.is_none_or(|x| s.health == x))
            .collect();
        matched.sort_by(|a, b| a.name.cmp(&b.name).then(a.key.cmp(&b.key)));
        let total = matched.len();
        let items = matched
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .map(|s| {
                let mut s = s.clone();
                s.objects = Vec::new();
                s
            })
            .collect();
        (items, total)
    }

    /// One Application's full status.
    pub fn get(&self, name: &str) -> Result<AppStatus, AgentError> {
        let key = self.key_of(name)?;
        lock_read(&self.inner.apps)
            .get(&key)
            .map(|s| s.status.clone())
            .ok_or(AgentError::NotFound(name.to_string()))
    }

    /// History, newest first.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, AgentError> {
        let key = self.key_of(name)?;
        Ok(self.inner.store.history(&key)?)
    }

    async fn prepared(
        &self,
        key: &str,
        revision: Option<&str>,
    ) -> Result<(Application, Vec<Commit>, Rendered, Cluster), AgentError> {
        let (file, pinned) = {
            let apps = lock_read(&self.inner.apps);
            let slot = apps.get(key).ok_or(AgentError::NotFound(key.to_string()))?;
            (slot.file.clone(), slot.status.suspended.clone())
        };
        let app = file.application;
        let pin = revision.map(str::to_string).or(pinned);
        let commits = self
            .resolve_commits(&app, pin.as_deref())
            .await
            .map_err(AgentError::Failed)?;
        let rendered = self
            .render(&app, &commits)
            .await
            .map_err(AgentError::Failed)?;
        let cluster = self.cluster_for(&app).await.map_err(AgentError::Failed)?;
        Ok((app, commits, rendered, cluster))
    }

    /// What differs between Git (or `revision`) and the cluster.
    pub async fn diff(&self, name: &str, revision: Option<&str>) -> Result<DiffReport, AgentError> {
        let key = self.key_of(name)?;
        let (app, commits, rendered, cluster) = self.prepared(&key, revision).await?;
        let rev = commits
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Engine::new(&cluster, &app)
            .diff(&rendered.manifests, &rev, false)
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))
    }

    /// Sync now. `prune` defaults to the Application's policy.
    pub async fn sync(
        &self,
        name: &str,
        revision: Option<&str>,
        prune: Option<bool>,
        dry_run: bool,
    ) -> Result<SyncReport, AgentError> {
        let key = self.key_of(name)?;
        self.forget_resolved_of(&key);
        self.sync_key(&key, revision, prune, dry_run, "manual")
            .await
    }

    async fn sync_key(
        &self,
        key: &str,
        revision: Option<&str>,
        prune: Option<bool>,
        dry_run: bool,
        trigger: &str,
    ) -> Result<SyncReport, AgentError> {
        let lock = lock_read(&self.inner.apps)
            .get(key)
            .map(|s| s.lock.clone())
            .ok_or(AgentError::NotFound(key.to_string()))?;
        let _guard = lock.lock().await;
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let result = async {
            let (app, commits, rendered, cluster) = self.prepared(key, revision).await?;
            let rev = commits
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let mut opts = self.sync_options(&app);
            if let Some(p) = prune {
                opts.prune = p;
            }
            opts.dry_run = dry_run;
            if !dry_run {
                self.set_phase(key, Phase::Syncing);
            }
            let engine = Engine::new(&cluster, &app);
            let report = match engine.sync(&rendered.manifests, &rev, &opts, &()).await {
                Ok(r) => r,
                Err(e) => {
                    if !dry_run {
                        self.record_failure(key, &commits, trigger, &e.to_string());
                        self.set_phase(key, Phase::Failed);
                    }
                    return Err(AgentError::Failed(e.to_string()));
                }
            };
            self.record_sync(key, &commits, trigger, &report);
            Ok(report)
        }
        .await;
        self.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        drop(_guard);
        // Bring status up to date (without Git, without syncing).
        if !dry_run {
            self.trigger(key, Reason::Health);
        }
        result
    }

    /// Sync an older commit (a SHA or a history id) and pause automated sync
    /// until [`Agent::resume`].
    pub async fn rollback(&self, name: &str, target: &str) -> Result<SyncReport, AgentError> {
        let key = self.key_of(name)?;
        let target = target.trim();
        let revision = if !target.is_empty()
            && target.len() <= 6
            && target.bytes().all(|b| b.is_ascii_digit())
        {
            let id: u64 = target
                .parse()
                .map_err(|_| AgentError::Invalid(format!("bad history id {target}")))?;
            self.inner
                .store
                .history(&key)?
                .into_iter()
                .find(|h| h.id == id)
                .map(|h| h.revision)
                .ok_or_else(|| AgentError::Invalid(format!("no history entry {id} for {name}")))?
        } else {
            target.to_string()
        };
        if revision.is_empty() {
            return Err(AgentError::Invalid(
                "a rollback needs a revision or a history id".into(),
            ));
        }
        // Resolve to full SHAs first, so the pin never moves.
        let app = lock_read(&self.inner.apps)
            .get(&key)
            .map(|s| s.file.application.clone())
            .ok_or(AgentError::NotFound(name.to_string()))?;
        let commits = self
            .resolve_commits(&app, Some(&revision))
            .await
            .map_err(AgentError::Failed)?;
        let full = commits
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        self.inner.store.suspend(&key, &full)?;
        {
            let mut apps = lock_write(&self.inner.apps);
            if let Some(slot) = apps.get_mut(&key) {
                slot.status.suspended = Some(full.clone());
            }
        }
        self.sync_key(&key, Some(&full), None, false, "rollback")
            .await
    }

    /// Lift a rollback's pause; the next reconcile follows Git again.
    pub fn resume(&self, name: &str) -> Result<bool, AgentError> {
        let key = self.key_of(name)?;
        let was = self.inner.store.resume(&key)?;
        {
            let mut apps = lock_write(&self.inner.apps);
            if let Some(slot) = apps.get_mut(&key) {
                slot.status.suspended = None;
            }
        }
        self.trigger(&key, Reason::Refresh);
        Ok(was)
    }

    /// The number of Applications.
    pub fn len(&self) -> usize {
        lock_read(&self.inner.apps).len()
    }

    /// Whether there are no Applications.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn first_failure(r: &SyncReport) -> String {
    r.results
        .iter()
        .find(|x| x.action == plumb_model::sync::Action::Failed)
        .map(|x| format!("{}: {}", x.object, x.message))
        .unwrap_or_else(|| "sync failed".into())
}
