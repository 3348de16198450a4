//! The agent against the real control plane and real Git repositories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use plumb_agent::notify::NotificationConfig;
use plumb_agent::{Agent, AgentConfig, AppStatus, Phase};
use plumb_model::SyncStatus;
use plumb_render::Tools;
use plumb_testenv::git::GitRepo;
use plumb_testenv::{TestNamespace, testenv, tool_path};

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

fn application(name: &str, repo: &GitRepo, ns: &str, policy: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\nspec:\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: app\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n{policy}",
        repo.url()
    )
}

const AUTO: &str = "  syncPolicy:\n    automated:\n      prune: true\n      selfHeal: true\n";
const AUTO_NO_HEAL: &str = "  syncPolicy:\n    automated:\n      prune: true\n";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn apps_dir(&self) -> PathBuf {
        let d = self.dir.path().join("apps");
        std::fs::create_dir_all(&d).unwrap();
        d
    }
    fn write_app(&self, file: &str, text: &str) {
        std::fs::write(self.apps_dir().join(file), text).unwrap();
    }
    fn config(&self, data: &str) -> AgentConfig {
        let env = testenv();
        let mut c = AgentConfig::new(self.dir.path().join(data), vec![self.apps_dir()]);
        c.kubeconfig = Some(env.kubeconfig().to_path_buf());
        c.poll_interval = Duration::from_millis(500);
        c.file_check_interval = Duration::from_millis(300);
        c.tools = Tools {
            kustomize: tool_path("kustomize"),
            helm: tool_path("helm"),
            timeout: Duration::from_secs(60),
        };
        c
    }
}

async fn wait_for(
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

async fn wait_value(
    api: &Api<ConfigMap>,
    name: &str,
    want: Option<&str>,
    timeout: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = api.get_opt(name).await.unwrap();
        let v = got
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .and_then(|d| d.get("value"))
            .cloned();
        if v.as_deref() == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{name}: wanted {want:?}, have {v:?} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn synced_at(rev: &str) -> impl Fn(&AppStatus) -> bool + '_ {
    move |s: &AppStatus| {
        s.sync == SyncStatus::Synced && s.revision.as_deref() == Some(rev) && s.phase == Phase::Idle
    }
}

async fn ns(prefix: &str) -> (TestNamespace, Api<ConfigMap>) {
    let env = testenv();
    let ns = env.namespace(prefix).await;
    let api = Api::namespaced(env.client().await, ns.name());
    (ns, api)
}

const WEB_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example.com/web:1.0.0
";

#[tokio::test]
async fn follows_git_by_poll_and_webhook_and_heals_drift() {
    let (ns, cms) = ns("agent-follow").await;
    let repo = GitRepo::new();
    repo.write("app/a.yaml", cm("a", "1"));
    repo.write("app/b.yaml", cm("b", "1"));
    repo.write("app/web.yaml", WEB_DEPLOYMENT);
    let c1 = repo.commit("one");
    let f = Fixture::new();
    f.write_app("app.yaml", &application("follow", &repo, ns.name(), AUTO));
    let mut config = f.config("data");
    config.poll_interval = Duration::from_secs(3600); // only the webhook moves it in the second half
    let agent = Agent::start(config).await.unwrap();
    wait_for(
        &agent,
        "follow",
        "first sync",
        Duration::from_secs(30),
        synced_at(&c1),
    )
    .await;
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["value"], "1");

    // A push, announced by a webhook: live within seconds, not at the next poll.
    repo.write("app/a.yaml", cm("a", "2"));
    repo.remove("app/b.yaml");
    let c2 = repo.commit("two");
    let refreshed = agent.refresh_repository(&[repo.url()]);
    assert_eq!(refreshed, vec!["argocd/follow".to_string()]);
    let took = wait_value(&cms, "a", Some("2"), Duration::from_secs(10)).await;
    eprintln!("webhook → live: {took:?}");
    wait_for(
        &agent,
        "follow",
        "second sync",
        Duration::from_secs(10),
        synced_at(&c2),
    )
    .await;
    assert!(
        cms.get_opt("b").await.unwrap().is_none() || {
            plumb_testenv::wait_gone(&cms, "b", Duration::from_secs(10)).await;
            true
        }
    );

    // Drift: an edit, a label change and a deletion are each reverted.
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"value": "tampered"}})),
    )
    .await
    .unwrap();
    let took = wait_value(&cms, "a", Some("2"), Duration::from_secs(10)).await;
    eprintln!("edit reverted in {took:?}");
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"plumb.dev/app": null}}})),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let labels = cms
            .get("a")
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap_or_default();
        if labels.get("plumb.dev/app").map(String::as_str) == Some("follow") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "label change not reverted: {labels:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let took = wait_value(&cms, "a", Some("2"), Duration::from_secs(10)).await;
    eprintln!("deletion reverted in {took:?}");

    // `kubectl scale` goes through the scale subresource, whose field
    // manager entry carries no time: still drift, still reverted.
    let deployments: Api<Deployment> = Api::namespaced(cms.clone().into_client(), ns.name());
    let replicas = |d: Deployment| d.spec.and_then(|s| s.replicas);
    assert_eq!(replicas(deployments.get("web").await.unwrap()), Some(2));
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if replicas(deployments.get("web").await.unwrap()) == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "scale not reverted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let history = agent.history("follow").unwrap();
    assert!(history.len() >= 3, "{history:#?}");
    assert_eq!(history.last().unwrap().revision, c1);
    assert_eq!(history.last().unwrap().author, "Alice Example");
    assert_eq!(history.last().unwrap().message, "one");
    assert!(history.iter().any(|h| h.trigger == "self-heal"));
    let metrics = agent.metrics().encode();
    for name in [
        "plumb_reconcile_duration_seconds_bucket",
        "plumb_syncs_total{result=\"succeeded\"}",
        "plumb_drift_events_total",
        "plumb_applications{",
        "plumb_git_fetch_duration_seconds_count",
        "plumb_kube_api_requests_total{verb=\"apply\"}",
        "plumb_kube_api_requests_total{verb=\"watch\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn polling_finds_new_commits_once_per_repository() {
    let (ns, cms) = ns("agent-poll").await;
    let repo = GitRepo::new();
    repo.write("app/a.yaml", cm("a", "1"));
    repo.write("other/b.yaml", cm("b", "1"));
    let c1 = repo.commit("one");
    let f = Fixture::new();
    f.write_app("one.yaml", &application("poll-one", &repo, ns.name(), AUTO));
    f.write_app(
        "two.yaml",
        &application("poll-two", &repo, ns.name(), AUTO).replace("path: app", "path: other"),
    );
    let agent = Agent::start(f.config("data")).await.unwrap();
    wait_for(
        &agent,
        "poll-one",
        "sync",
        Duration::from_secs(30),
        synced_at(&c1),
    )
    .await;
    wait_for(
        &agent,
        "poll-two",
        "sync",
        Duration::from_secs(30),
        synced_at(&c1),
    )
    .await;
    repo.write("app/a.yaml", cm("a", "2"));
    let c2 = repo.commit("two");
    wait_value(&cms, "a", Some("2"), Duration::from_secs(10)).await;
    wait_for(
        &agent,
        "poll-one",
        "poll sync",
        Duration::from_secs(10),
        synced_at(&c2),
    )
    .await;
    wait_for(
        &agent,
        "poll-two",
        "poll sync",
        Duration::from_secs(10),
        synced_at(&c2),
    )
    .await;
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn without_self_heal_drift_is_reported_not_reverted_and_manual_apps_wait() {
    let (ns, cms) = ns("agent-manual").await;
    let repo = GitRepo::new();
    repo.write("app/a.yaml", cm("a", "1"));
    let c1 = repo.commit("one");
    let f = Fixture::new();
    f.write_app(
        "noheal.yaml",
        &application("noheal", &repo, ns.name(), AUTO_NO_HEAL),
    );
    let other = GitRepo::new();
    other.write("app/m.yaml", cm("m", "1"));
    let m1 = other.commit("manual one");
    f.write_app("manual.yaml", &application("manual", &other, ns.name(), ""));
    let agent = Agent::start(f.config("data")).await.unwrap();
    wait_for(
        &agent,
        "noheal",
        "sync",
        Duration::from_secs(30),
        synced_at(&c1),
    )
    .await;

    // Not automated: OutOfSync, nothing applied until someone syncs.
    let s = wait_for(&agent, "manual", "status", Duration::from_secs(30), |s| {
        s.phase == Phase::Idle
    })
    .await;
    assert_eq!(s.sync, SyncStatus::OutOfSync);
    assert!(cms.get_opt("m").await.unwrap().is_none());
    let report = agent.sync("manual", None, None, false).await.unwrap();
    assert!(report.succeeded);
    assert_eq!(report.revision, m1);
    wait_for(
        &agent,
        "manual",
        "synced",
        Duration::from_secs(10),
        synced_at(&m1),
    )
    .await;

    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"value": "x"}})),
    )
    .await
    .unwrap();
    wait_for(
        &agent,
        "noheal",
        "OutOfSync",
        Duration::from_secs(10),
        |s| s.sync == SyncStatus::OutOfSync,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        cms.get("a").await.unwrap().data.unwrap()["value"],
        "x",
        "not reverted without selfHeal"
    );
    let diff = agent.diff("noheal", None).await.unwrap();
    assert!(
        diff.objects[0].diff.contains("value: x") || diff.objects[0].diff.contains("value: 'x'"),
        "{}",
        diff.objects[0].diff
    );
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn rollback_pins_an_old_commit_until_resume() {
    let (ns, cms) = ns("agent-rollback").await;
    let repo = GitRepo::new();
    repo.write("app/a.yaml", cm("a", "1"));
    let c1 = repo.commit("one");
    repo.write("app/a.yaml", cm("a", "2"));
    let c2 = repo.commit("two");
    let f = Fixture::new();
    f.write_app("app.yaml", &application("rb", &repo, ns.name(), AUTO));
    let agent = Agent::start(f.config("data")).await.unwrap();
    wait_for(
        &agent,
        "rb",
        "sync",
        Duration::from_secs(30),
        synced_at(&c2),
    )
    .await;

    let report = agent.rollback("rb", &c1[..8]).await.unwrap();
    assert!(report.succeeded);
    assert_eq!(report.revision, c1);
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["value"], "1");
    let s = wait_for(&agent, "rb", "pinned", Duration::from_secs(10), |s| {
        s.suspended.is_some() && s.phase == Phase::Idle
    })
    .await;
    assert_eq!(s.suspended.as_deref(), Some(c1.as_str()));
    // Git moves on; the agent does not roll forward while paused.
    repo.write("app/a.yaml", cm("a", "3"));
    repo.commit("three");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["value"], "1");
    // A rollback by history id.
    let hist = agent.history("rb").unwrap();
    let first = hist.iter().find(|h| h.revision == c2).unwrap().id;
    let report = agent.rollback("rb", &first.to_string()).await.unwrap();
    assert_eq!(report.revision, c2);
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["value"], "2");

    assert!(agent.resume("rb").unwrap());
    wait_value(&cms, "a", Some("3"), Duration::from_secs(15)).await;
    let h = agent.history("rb").unwrap();
    assert!(h.iter().any(|e| e.trigger == "rollback"));
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_failing_application_does_not_stall_the_others() {
    let (ns, cms) = ns("agent-failing").await;
    let repo = GitRepo::new();
    repo.write("app/a.yaml", cm("a", "1"));
    repo.write("fixed/b.yaml", cm("b", "1"));
    let c1 = repo.commit("one");
    let f = Fixture::new();
    f.write_app("good.yaml", &application("good", &repo, ns.name(), AUTO));
    let broken = application("broken", &repo, ns.name(), AUTO)
        .replace(&repo.url(), "file:///nonexistent/repo.git");
    f.write_app("broken.yaml", &broken);
    let agent = Agent::start(f.config("data")).await.unwrap();
    wait_for(
        &agent,
        "good",
        "sync",
        Duration::from_secs(30),
        synced_at(&c1),
    )
    .await;
    let b = wait_for(&agent, "broken", "failure", Duration::from_secs(30), |s| {
        s.phase == Phase::Failed
    })
    .await;
    assert!(b.message.contains("nonexistent"), "{}", b.message);
    assert!(cms.get_opt("a").await.unwrap().is_some());

    // A path missing from the commit fails after the commit resolved: it
    // retries on its backoff (5 s, then 10 s), not on every Git poll (0.5 s).
    f.write_app(
        "broken.yaml",
        &application("broken", &repo, ns.name(), AUTO).replace("path: app", "path: no-such-path"),
    );
    wait_for(
        &agent,
        "broken",
        "missing path",
        Duration::from_secs(30),
        |s| s.phase == Phase::Failed && s.message.contains("no-such-path"),
    )
    .await;
    let mut events = agent.subscribe();
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(7);
    let mut failures = 0;
    while let Ok(Ok(s)) = tokio::time::timeout_at(watch_until, events.recv()).await {
        if s.name == "broken" && s.phase == Phase::Failed {
            failures += 1;
        }
    }
    assert!(
        failures <= 2,
        "{failures} failed reconciles in 7 s: retries must follow the backoff"
    );

    // Application files are re-read: fixing the file fixes the Application.
    f.write_app(
        "broken.yaml",
        &application("broken", &repo, ns.name(), AUTO).replace("path: app", "path: fixed"),
    );
    wait_for(
        &agent,
        "broken",
        "recovery",
        Duration::from_secs(30),
        synced_at(&c1),
    )
    .await;
    assert!(cms.get_opt("b").await.unwrap().is_some());
    agent.shutdown(Duration::from_secs(5)).await;
}

async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let _ =
                                tx.send(format!("{} {}", head.lines().next().unwrap_or(""), body));
                            break;
                        }
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), rx)
}

#[tokio::test]
async fn notifications_are_sent_as_json_and_slack() {
    let (ns, _cms) = ns("agent-notify").await;
    let repo = GitRepo::new();
    repo.write("app/a.yaml", cm("a", "1"));
    repo.commit("one");
    let f = Fixture::new();
    f.write_app("app.yaml", &application("notify", &repo, ns.name(), AUTO));
    let (json_url, mut json_rx) = receiver().await;
    let (slack_url, mut slack_rx) = receiver().await;
    let mut config = f.config("data");
    config.notifications = serde_saphyr_config(&format!(
        "webhooks:\n- name: generic\n  url: {json_url}\n  events: [sync-succeeded]\n- name: chat\n  url: {slack_url}\n  format: slack\n"
    ));
    let agent = Agent::start(config).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), json_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(got.starts_with("POST /hook"), "{got}");
    assert!(got.contains("\"event\":\"sync-succeeded\""), "{got}");
    assert!(got.contains("\"application\":\"argocd/notify\""), "{got}");
    let slack = tokio::time::timeout(Duration::from_secs(30), slack_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(slack.contains("\"text\""), "{slack}");
    assert!(slack.contains("argocd/notify"), "{slack}");

    // Drift is announced too (to the target that takes every event).
    _cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"value": "x"}})),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, slack_rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no drift notification; status {:#?} history {:#?}",
                    agent
                        .get("notify")
                        .ok()
                        .map(|s| (s.sync, s.phase, s.message)),
                    agent
                        .history("notify")
                        .ok()
                        .map(|h| h.iter().map(|e| e.trigger.clone()).collect::<Vec<_>>())
                )
            })
            .unwrap();
        if msg.contains("drift-detected") {
            break;
        }
    }
    // The JSON target asked only for sync-succeeded: the self-heal sync.
    let got = tokio::time::timeout(Duration::from_secs(30), json_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(got.contains("\"event\":\"sync-succeeded\""), "{got}");
    agent.shutdown(Duration::from_secs(5)).await;
}

fn serde_saphyr_config(text: &str) -> NotificationConfig {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("n.yaml");
    std::fs::write(&p, text).unwrap();
    NotificationConfig::load(&p).unwrap()
}

#[tokio::test]
async fn a_new_agent_without_data_adopts_and_prunes_correctly() {
    let (ns, cms) = ns("agent-dr").await;
    let repo = GitRepo::new();
    repo.write("app/a.yaml", cm("a", "1"));
    repo.write("app/b.yaml", cm("b", "1"));
    let c1 = repo.commit("one");
    let f = Fixture::new();
    f.write_app("app.yaml", &application("dr", &repo, ns.name(), AUTO));
    let agent = Agent::start(f.config("first")).await.unwrap();
    wait_for(
        &agent,
        "dr",
        "sync",
        Duration::from_secs(30),
        synced_at(&c1),
    )
    .await;
    agent.shutdown(Duration::from_secs(5)).await;
    drop(agent);
    let uid_a = cms.get("a").await.unwrap().metadata.uid.unwrap();
    std::fs::remove_dir_all(f.dir.path().join("first")).unwrap();

    // Git changed while no agent ran.
    repo.remove("app/b.yaml");
    let c2 = repo.commit("drop b");
    let agent = Agent::start(f.config("second")).await.unwrap();
    wait_for(
        &agent,
        "dr",
        "sync",
        Duration::from_secs(30),
        synced_at(&c2),
    )
    .await;
    assert_eq!(
        cms.get("a").await.unwrap().metadata.uid.unwrap(),
        uid_a,
        "adopted, not recreated"
    );
    plumb_testenv::wait_gone(&cms, "b", Duration::from_secs(30)).await;
    agent.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_brand_new_cluster_is_rebuilt_from_git() {
    let repo = GitRepo::new();
    repo.write(
        "app/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: rebuilt\n",
    );
    repo.write("app/a.yaml", cm("a", "1"));
    let c1 = repo.commit("everything");
    // A second, empty control plane of its own.
    let fresh = FreshCluster::start();
    let f = Fixture::new();
    f.write_app("app.yaml", &application("rebuild", &repo, "rebuilt", AUTO));
    let mut config = f.config("data");
    config.kubeconfig = Some(fresh.kubeconfig.clone());
    let agent = Agent::start(config).await.unwrap();
    wait_for(
        &agent,
        "rebuild",
        "sync",
        Duration::from_secs(60),
        synced_at(&c1),
    )
    .await;
    let client = fresh.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "rebuilt");
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["value"], "1");
    agent.shutdown(Duration::from_secs(5)).await;
}

struct FreshCluster {
    state: PathBuf,
    kubeconfig: PathBuf,
}

impl FreshCluster {
    fn start() -> FreshCluster {
        let up = plumb_testenv::repo_root().join("testenv/up");
        let out = std::process::Command::new("bash")
            .arg(&up)
            .env("PLUMB_TESTENV_OWNER", std::process::id().to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {k}=")))
                .map(PathBuf::from)
                .unwrap()
        };
        FreshCluster {
            state: get("PLUMB_TESTENV"),
            kubeconfig: get("KUBECONFIG"),
        }
    }

    async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

impl Drop for FreshCluster {
    fn drop(&mut self) {
        let down = plumb_testenv::repo_root().join("testenv/down");
        let _ = std::process::Command::new("bash")
            .arg(down)
            .arg(&self.state)
            .status();
    }
}
