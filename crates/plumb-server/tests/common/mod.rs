//! What the server's tests share: an agent on the real control plane with real
//! Git repositories, served on a loopback port with real tokens.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use plumb_agent::{Agent, AgentConfig, AppStatus, Phase, Role};
use plumb_model::SyncStatus;
use plumb_render::Tools;
use plumb_server::AuthMode;
use plumb_testenv::git::GitRepo;
use plumb_testenv::{testenv, tool_path};

/// A ConfigMap with one value.
pub fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

/// An Argo CD Application for `path` of `repo` into `ns`. The Application
/// itself lives in `ns` too, so its key (`ns/name`), and with it its
/// inventory in the cluster, is unique to the test that made it.
pub fn application(name: &str, repo: &GitRepo, path: &str, ns: &str, policy: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: {path}\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n{policy}",
        repo.url()
    )
}

/// Automated sync with prune and self-heal.
pub const AUTO: &str = "  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n";
/// Automated sync with prune, without self-heal: drift is reported, not reverted.
pub const AUTO_NO_HEAL: &str = "  syncPolicy:\n    automated:\n      prune: true\n";
/// No automation: only people sync.
pub const MANUAL: &str = "";

/// A directory for Application files and the agent's data.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn apps_dir(&self) -> PathBuf {
        let d = self.dir.path().join("apps");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub fn write_app(&self, file: &str, text: &str) {
        std::fs::write(self.apps_dir().join(file), text).unwrap();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config(&self) -> AgentConfig {
        let env = testenv();
        let mut c = AgentConfig::new(self.data_dir(), vec![self.apps_dir()]);
        c.kubeconfig = Some(env.kubeconfig().to_path_buf());
        c.poll_interval = Duration::from_secs(3600);
        c.file_check_interval = Duration::from_millis(300);
        c.tools = Tools {
            kustomize: tool_path("kustomize"),
            helm: tool_path("helm"),
            timeout: Duration::from_secs(60),
        };
        c
    }
}

/// An HTTP client for the tests: no redirects followed, so tests see them.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// An agent served over HTTP on a loopback port.
pub struct Served {
    pub agent: Agent,
    pub addr: SocketAddr,
    pub admin: String,
    pub readonly: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Served {
    /// Start `config`'s agent and serve it with `auth`; make one admin and
    /// one read-only token.
    pub async fn start(config: AgentConfig, auth: AuthMode) -> Served {
        let agent = Agent::start(config).await.unwrap();
        let admin = plumb_agent::store::new_token();
        let readonly = plumb_agent::store::new_token();
        agent
            .store()
            .add_token(&admin, Role::Admin, "test admin")
            .unwrap();
        agent
            .store()
            .add_token(&readonly, Role::Readonly, "test reader")
            .unwrap();
        let listener = plumb_server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let router = plumb_server::router(agent.clone(), auth);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(plumb_server::serve_on(listener, router, async move {
            let _ = rx.await;
        }));
        Served {
            agent,
            addr,
            admin,
            readonly,
            stop: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Wait until `name`'s status satisfies `f`.
pub async fn wait_for(
    agent: &Agent,
    name: &str,
    what: &str,
    timeout: Duration,
    f: impl Fn(&AppStatus) -> bool,
) -> AppStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = agent.get(name)
            && f(&s)
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: timed out waiting for {what}; status: {:#?}",
            agent.get(name).ok()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Synced at `rev` and idle.
pub fn synced_at(rev: &str) -> impl Fn(&AppStatus) -> bool + '_ {
    move |s: &AppStatus| {
        s.sync == SyncStatus::Synced && s.revision.as_deref() == Some(rev) && s.phase == Phase::Idle
    }
}

/// Reconciled at least once.
pub fn reconciled(s: &AppStatus) -> bool {
    s.phase != Phase::Pending && s.last_reconcile.is_some()
}

pub mod browser;
