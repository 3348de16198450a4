//! The agent itself: start-up, the trigger queue and the timers.
//!
//! A trigger names an Application and a [`Reason`]; triggers for an
//! Application that is queued or running fold into one follow-up run with the
//! strongest reason, a semaphore bounds how many run at once, and the
//! Application's own lock keeps one run at a time. What a run does lives in
//! `reconcile`; what the API asks for, in `ops`; the Application files and Git
//! polling that raise triggers, in `files` and `poll`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use plumb_git::GitCache;
use plumb_pipeline::{Clusters, Pipeline};
use plumb_render::Renderer;
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::state::{Inner, Reason, lock_read, lock_write};
use crate::status::AppStatus;
use crate::store::Store;
use crate::watch::{Change, OnChange, Watches};

/// How long a resolved revision is reused, so the many Applications one push
/// refreshes share one ref lookup.
const RESOLVED_TTL: Duration = Duration::from_secs(2);

/// The agent. Cheap to clone; all clones share one loop.
#[derive(Clone)]
pub struct Agent {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

impl Agent {
    /// Open the store, load the Applications and start the loop (poller, file
    /// checks, scheduler). Every Application is reconciled once at start.
    pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        let store = Store::open(&config.data_dir)?;
        let git = GitCache::new(config.data_dir.join("git"), config.credentials.clone());
        let renderer = Renderer::new(config.tools.clone(), config.data_dir.join("render"));
        let metrics = Metrics::new();
        let layer = metrics.kube_layer();
        let clusters = Clusters::new(config.kubeconfig.clone()).with_client_factory(Arc::new(
            move |config: kube::Config| {
                Ok(kube::client::ClientBuilder::try_from(config)?
                    .with_layer(&layer)
                    .build())
            },
        ));
        let mut health = config.health.clone();
        if let Some(cm) = &config.argocd_cm {
            health = health.with_configmap(cm.clone(), clusters.clone());
        }
        let pipeline = Pipeline::new(git, renderer)
            .with_resolve_ttl(RESOLVED_TTL)
            .with_checks(&config.checks)
            .with_keyring(config.keyring.clone())
            .with_decryption_secrets(clusters.clone())
            .with_secret_refs(config.secret_refs.clone())
            .with_health(health);
        let notifier = Notifier::start(config.notifications.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(config.parallelism.max(1))),
            config,
            store,
            pipeline,
            clusters,
            metrics,
            notifier,
            apps: RwLock::new(BTreeMap::new()),
            triggers: tx,
            events,
            watches: Watches::default(),
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            files_signature: std::sync::Mutex::new(Vec::new()),
            objects: Default::default(),
        });
        let agent = Agent { inner };
        agent.reload_files(true)?;
        let namespaces = agent.inner.config.app_namespaces.clone();
        agent.watch_application_objects(&namespaces).await?;
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

    /// What watches call when a managed object changes in the cluster.
    pub(crate) fn on_change(&self) -> OnChange {
        let agent = self.clone();
        Arc::new(move |app_key: &str, change: Change| match change {
            Change::Own => {}
            Change::StatusOnly => agent.trigger(app_key, Reason::Health),
            Change::Foreign => {
                agent.inner.metrics.drift_events.inc();
                agent.trigger(app_key, Reason::Drift);
            }
        })
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
        let floor = Duration::from_millis(200);
        self.every(
            self.inner.config.poll_interval.max(floor),
            |agent| async move {
                agent.poll_git().await;
            },
        );
        self.every(
            self.inner.config.file_check_interval.max(floor),
            |agent| async move {
                if let Err(e) = agent.reload_files(false) {
                    tracing::error!(error = %e, "Application files could not be reloaded; keeping the previous ones");
                }
            },
        );
        let resync = self.inner.config.resync_interval;
        if !resync.is_zero() {
            self.every(resync, |agent| async move {
                let keys: Vec<String> = lock_read(&agent.inner.apps).keys().cloned().collect();
                for k in keys {
                    agent.trigger(&k, Reason::Resync);
                }
            });
        }
    }

    /// Run `work` every `period`, first after one period, until the agent stops.
    fn every<F, Fut>(&self, period: Duration, work: F)
    where
        F: Fn(Agent) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let agent = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                if agent.inner.stopping.load(Ordering::SeqCst) {
                    return;
                }
                work(agent.clone()).await;
            }
        });
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
}
