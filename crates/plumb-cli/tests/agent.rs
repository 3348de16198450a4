//! `plumb agent` as a process: kill -9 in the middle of a 1000-object sync,
//! SIGTERM, and the commands that talk to a running agent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use plumb_testenv::git::GitRepo;
use plumb_testenv::testenv;

struct AgentProcess {
    child: Child,
    url: String,
    token: Option<String>,
}

fn plumb(data: &Path) -> Command {
    let env = testenv();
    let mut path = std::ffi::OsString::new();
    if let Some(bin) = env.bin_dir() {
        path.push(bin);
        path.push(":");
    }
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let mut c = Command::new(env!("CARGO_BIN_EXE_plumb"));
    c.arg("--data-dir")
        .arg(data)
        .env("KUBECONFIG", env.kubeconfig())
        .env("PATH", path);
    c
}

fn start_agent(data: &Path, app: &Path, port: u16) -> AgentProcess {
    start_agent_with(data, app, port, &[])
}

fn start_agent_with(data: &Path, app: &Path, port: u16, extra: &[&str]) -> AgentProcess {
    let mut child = plumb(data)
        .args([
            "agent",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--poll-interval",
            "1s",
        ])
        .args(extra)
        .arg(app)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start plumb agent");
    // The first start prints the admin token alone on stdout.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let token = rx.recv_timeout(Duration::from_millis(1500)).ok();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "agent did not listen on {url}");
        std::thread::sleep(Duration::from_millis(50));
    }
    AgentProcess { child, url, token }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn app_file(dir: &Path, name: &str, repo: &GitRepo, ns: &str, policy: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\nspec:\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: app\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n{policy}",
            repo.url()
        ),
    )
    .unwrap();
    p
}

async fn count_labelled(api: &Api<ConfigMap>, app: &str) -> Vec<String> {
    api.list(&ListParams::default().labels(&format!("plumb.dev/app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect()
}

async fn inventory(client: &kube::Client, key: &str) -> Option<plumb_model::Inventory> {
    plumb_kube::inventory::load(client, key).await.unwrap()
}

#[tokio::test]
async fn kill_9_during_a_1000_object_sync_loses_nothing() {
    let env = testenv();
    let ns = env.namespace("crash").await;
    let client = env.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let repo = GitRepo::new();
    for file in 0..10 {
        let docs: Vec<String> = (0..100)
            .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{:04}\ndata:\n  i: \"{i}\"\n", file * 100 + i))
            .collect();
        repo.write(&format!("app/part-{file}.yaml"), docs.join("---\n"));
    }
    let commit = repo.commit("1000 objects");
    let dir = tempfile::tempdir().unwrap();
    let app = app_file(
        dir.path(),
        "crash",
        &repo,
        ns.name(),
        "  syncPolicy:\n    automated:\n      prune: true\n",
    );
    let data = dir.path().join("data");
    let port = plumb_testenv::free_port();

    // Kill at several points: as soon as anything exists, then mid-way, then
    // late. One apply at a time makes the sync slow enough to land in it.
    for threshold in [1usize, 350, 750] {
        let mut agent = start_agent_with(&data, &app, port, &["--concurrency", "1"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = count_labelled(&cms, "crash").await.len();
            if n >= threshold {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sync stalled below {threshold} objects (at {n})"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        agent.child.kill().unwrap(); // SIGKILL
        agent.child.wait().unwrap();
        let n = count_labelled(&cms, "crash").await.len();
        eprintln!("killed at {n} objects (threshold {threshold})");
        assert!(
            n < 1000,
            "the kill landed after the sync finished; nothing was tested"
        );
        // Whatever exists is named by the inventory: nothing orphaned.
        let inv = inventory(&client, "argocd/crash")
            .await
            .expect("inventory written before objects");
        let members: std::collections::BTreeSet<String> =
            inv.members.iter().map(|m| m.name.clone()).collect();
        for name in count_labelled(&cms, "crash").await {
            assert!(
                members.contains(&name),
                "{name} exists but is not in the inventory"
            );
        }
    }

    // A restart finishes the job.
    let _agent = start_agent(&data, &app, port);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let inv = inventory(&client, "argocd/crash").await.unwrap();
        if inv.revision.as_ref().is_some_and(|r| *r == commit) && inv.pending_revision.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sync did not complete after restart: {:?}",
            inv.pending_revision
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut names = count_labelled(&cms, "crash").await;
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicates");
    assert_eq!(names.len(), 1000);
    let expected: Vec<String> = (0..1000).map(|i| format!("cm-{i:04}")).collect();
    assert_eq!(names, expected);
    let inv = inventory(&client, "argocd/crash").await.unwrap();
    assert_eq!(
        inv.members.len(),
        1000,
        "inventory names exactly what exists"
    );
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn history_rollback_resume_through_a_running_agent_and_sigterm() {
    let env = testenv();
    let ns = env.namespace("cli-agent").await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client().await, ns.name());
    let repo = GitRepo::new();
    repo.write(
        "app/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"1\"\n",
    );
    let c1 = repo.commit("first version");
    repo.write(
        "app/a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"2\"\n",
    );
    let c2 = repo.commit("second version");
    let dir = tempfile::tempdir().unwrap();
    let app = app_file(
        dir.path(),
        "hist",
        &repo,
        ns.name(),
        "  syncPolicy:\n    automated:\n      selfHeal: true\n",
    );
    let data = dir.path().join("data");
    let mut agent = start_agent(&data, &app, plumb_testenv::free_port());
    let token = agent
        .token
        .clone()
        .expect("first start prints an admin token");
    assert!(token.starts_with("plumb_"));

    let wait_v = |want: &'static str| {
        let cms = cms.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let v = cms
                    .get_opt("a")
                    .await
                    .unwrap()
                    .and_then(|c| c.data)
                    .and_then(|d| d.get("v").cloned());
                if v.as_deref() == Some(want) {
                    return;
                }
                assert!(Instant::now() < deadline, "wanted v={want}, have {v:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_v("2").await;

    let server = ["--server", agent.url.as_str()];
    let (code, out, err) = run(plumb(&data)
        .args(["history", "hist", "--output", "json"])
        .args(server)
        .env("PLUMB_TOKEN", &token));
    assert_eq!(code, 0, "{err}");
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h[0]["revision"], c2.as_str());
    assert_eq!(h[0]["message"], "second version");
    assert_eq!(h[0]["author"], "Alice Example");
    let (code, out, _) = run(plumb(&data)
        .args(["history", "hist"])
        .args(server)
        .args(["--token", &token]));
    assert_eq!(code, 0);
    assert!(out.contains("second version"), "{out}");

    // Without a token: a clear 401 with a hint.
    let (code, _, err) = run(plumb(&data)
        .args(["history", "hist"])
        .args(server)
        .env_remove("PLUMB_TOKEN"));
    assert_eq!(code, 1);
    assert!(err.contains("401") && err.contains("--token"), "{err}");

    let (code, out, err) = run(plumb(&data)
        .args(["rollback", "hist", &c1[..10]])
        .args(server)
        .env("PLUMB_TOKEN", &token));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("paused"), "{out}");
    wait_v("1").await;
    // Paused: the next poll does not roll forward.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["v"], "1");
    let (code, out, _) = run(plumb(&data)
        .args(["resume", "hist"])
        .args(server)
        .env("PLUMB_TOKEN", &token));
    assert_eq!(code, 0);
    assert!(out.contains("resumed"), "{out}");
    wait_v("2").await;

    // SIGTERM: stop cleanly with exit 0.
    let status = Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "agent did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");

    // Nobody answers now: say so.
    let (code, _, err) = run(plumb(&data)
        .args(["history", "hist"])
        .args(server)
        .env("PLUMB_TOKEN", &token));
    assert_eq!(code, 1);
    assert!(err.contains("no plumb agent answers"), "{err}");
}
