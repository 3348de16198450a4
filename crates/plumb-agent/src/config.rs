//! How an agent runs: what it watches, how often, how much at once.
//!
//! Everything here is given by the caller (the CLI reads flags and the
//! environment); the agent reads no process-wide state of its own.

use std::path::PathBuf;
use std::time::Duration;

use plumb_git::Credentials;
use plumb_pipeline::{Checks, Keyring};
use plumb_render::Tools;

use crate::notify::NotificationConfig;

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
    /// Checks between render and apply (the deploy gate, ...).
    pub checks: Checks,
    /// age identities for SOPS files (an Application's
    /// `plumb.dev/decryption-secret` adds its own).
    pub keyring: Keyring,
    /// Where `plumb.dev/secret-ref…` references are resolved from (`k8s://`
    /// always works; files and Vault only when configured).
    pub secret_refs: plumb_pipeline::SecretRefs,
    /// Namespaces whose `argoproj.io` Application objects the agent watches
    /// (on the kubeconfig's current cluster, or its own in a pod).
    pub app_namespaces: Vec<String>,
    /// Custom health scripts from files, asked before the built-in rules
    /// (after `argocd_cm`'s).
    pub health: plumb_pipeline::HealthSource,
    /// Argo CD's ConfigMap to read health scripts from, in the cluster the
    /// agent runs in (re-read every [`plumb_pipeline::HEALTH_REFRESH`]).
    pub argocd_cm: Option<plumb_pipeline::ConfigMapRef>,
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
            tools: Tools::default(),
            checks: Checks::default(),
            keyring: Keyring::new(),
            secret_refs: plumb_pipeline::SecretRefs::default(),
            app_namespaces: Vec::new(),
            health: plumb_pipeline::HealthSource::default(),
            argocd_cm: None,
        }
    }
}
