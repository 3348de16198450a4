//! What the agent holds while it runs: one slot per Application and the
//! shared parts every operation reaches for.
//!
//! A slot is the Application's definition, its last status and the commits it
//! last resolved, plus the scheduling state (the strongest queued reason, a
//! lock so one Application is never reconciled twice at once, its failure
//! count for backoff). Everything else an operation needs lives once in
//! [`Inner`]: the store, the pipeline, the clusters, metrics, notifications,
//! watches and the trigger queue.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use plumb_git::Commit;
use plumb_model::{HealthStatus, SyncStatus};
use plumb_pipeline::{Clusters, Pipeline};
use plumb_render::application::ApplicationFile;
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::config::AgentConfig;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::status::AppStatus;
use crate::store::Store;
use crate::watch::Watches;

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

/// One Application as the agent holds it.
pub(crate) struct Slot {
    pub(crate) file: ApplicationFile,
    pub(crate) status: AppStatus,
    pub(crate) lock: Arc<tokio::sync::Mutex<()>>,
    pub(crate) queued: Option<Reason>,
    pub(crate) attempts: u32,
    pub(crate) commits: Vec<Commit>,
    /// What the last Git poll saw for each source (by index), so that an
    /// Application whose reconcile fails after resolving is not refreshed by
    /// every poll (it retries on its backoff) until the ref really moves.
    pub(crate) polled: HashMap<usize, String>,
    /// The definition changed since the last successful sync: automation
    /// syncs it as it would a new commit (Argo CD syncs a changed source).
    pub(crate) redefined: bool,
}

impl Slot {
    /// A new slot, never reconciled.
    pub(crate) fn new(file: ApplicationFile, status: AppStatus) -> Slot {
        Slot {
            file,
            status,
            lock: Arc::new(tokio::sync::Mutex::new(())),
            queued: None,
            attempts: 0,
            commits: Vec::new(),
            polled: HashMap::new(),
            redefined: false,
        }
    }
}

/// The parts of a running agent that every operation shares.
pub(crate) struct Inner {
    pub(crate) config: AgentConfig,
    pub(crate) store: Store,
    /// Resolve → fetch → render → checks, with a short resolve cache.
    pub(crate) pipeline: Pipeline,
    pub(crate) clusters: Clusters,
    pub(crate) metrics: Metrics,
    pub(crate) notifier: Notifier,
    pub(crate) apps: RwLock<BTreeMap<String, Slot>>,
    pub(crate) triggers: mpsc::UnboundedSender<String>,
    pub(crate) events: broadcast::Sender<AppStatus>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) watches: Watches,
    pub(crate) stopping: AtomicBool,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) files_signature: std::sync::Mutex<Vec<(PathBuf, SystemTime, u64)>>,
    /// Application objects: what was written back, and operations.
    pub(crate) objects: crate::objects::ObjectState,
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn lock_read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match l.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) fn lock_write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    match l.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) fn initial_status(f: &ApplicationFile) -> AppStatus {
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
