//! Applications as cluster objects, end to end with the real binary, the real
//! API server and the real kubectl: `plumb install` puts the CRDs in place,
//! Applications are created, edited and deleted with kubectl, the agent
//! writes `.status` in Argo CD's shape (read back with kubectl and compared
//! field by field), and the refresh annotation, the `operation` field and the
//! cascade finalizer behave as in Argo CD.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use plumb_testenv::git::GitRepo;
use plumb_testenv::{output_text as text, testenv, tool_path};

fn plumb(dir: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_plumb"));
    c.arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("KUBECONFIG", testenv().kubeconfig())
        .env("HOME", dir.path());
    c
}

/// kubectl, showing `log()` when it fails.
fn kubectl_or(log: &dyn Fn() -> String, args: &[&str], stdin: Option<&str>) -> String {
    let out = Command::new(tool_path("kubectl"))
        .args(args)
        .env("KUBECONFIG", testenv().kubeconfig())
        .output()
        .unwrap();
    assert!(stdin.is_none());
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}\nagent log:\n{}",
        text(&out),
        log()
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let mut c = Command::new(tool_path("kubectl"));
    c.args(args)
        .env("KUBECONFIG", testenv().kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn application(name: &str, ns: &str, repo: &GitRepo, path: &str, extra: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: {ns}\n{extra}spec:\n  project: default\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: {path}\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n",
        repo.url()
    )
}

/// The Application object, or null while it does not exist.
fn object(ns: &str, name: &str) -> serde_json::Value {
    let out = Command::new(tool_path("kubectl"))
        .args([
            "get",
            "applications.argoproj.io",
            "-n",
            ns,
            name,
            "-o",
            "json",
        ])
        .env("KUBECONFIG", testenv().kubeconfig())
        .output()
        .unwrap();
    if !out.status.success() {
        assert!(text(&out).contains("NotFound"), "{}", text(&out));
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Poll the Application object until `f` holds; the object, and how long.
fn wait(
    ns: &str,
    name: &str,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> (serde_json::Value, Duration) {
    let start = Instant::now();
    loop {
        let v = object(ns, name);
        if f(&v) {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn application_objects_are_watched_and_their_status_written_back_as_argo_does() {
    let env = testenv();
    let ns = env.namespace("cluster-apps").await;
    let ns = ns.name().to_string();
    let dir = tempfile::tempdir().unwrap();

    // The manifest prints, and installs (twice: it is idempotent).
    let out = plumb(&dir)
        .args(["install", "--print", "--namespace", &ns])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "name: applications.argoproj.io",
        "name: appprojects.argoproj.io",
        "name: applicationsets.argoproj.io",
        "kind: PodDisruptionBudget",
        "--in-cluster",
        "readinessProbe",
    ] {
        assert!(printed.contains(needle), "{needle} missing:\n{printed}");
    }
    for _ in 0..2 {
        let out = plumb(&dir)
            .args(["install", "--namespace", &ns])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("deployment/plumb-agent in"),
            "{}",
            text(&out)
        );
    }
    let crd: serde_json::Value = serde_json::from_str(&kubectl(
        &["get", "crd", "applications.argoproj.io", "-o", "json"],
        None,
    ))
    .unwrap();
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["app", "apps"])
    );

    let repo = GitRepo::new();
    repo.write(
        "one/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\ndata:\n  v: one\n",
    );
    repo.write(
        "two/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\ndata:\n  v: two\n",
    );
    repo.write(
        "three/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: three\ndata:\n  v: three\n",
    );
    // Each path shares one object, so switching paths prunes half (the
    // agent refuses to prune everything an Application has unforced).
    for path in ["one", "two"] {
        repo.write(
            &format!("{path}/shared.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  v: shared\n",
        );
    }
    let first = repo.commit("two apps");

    let port = plumb_testenv::free_port();
    let _agent = Agent(
        plumb(&dir)
            .args(["agent", "--insecure-no-auth", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--poll-interval", "1h", "--app-namespace", &ns])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    plumb_testenv::wait_for_port(&format!("127.0.0.1:{port}"));

    // Created with kubectl: synced, and the status reads as Argo's.
    let automated = "  syncPolicy:\n    automated: {prune: true}\n";
    kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "{}{automated}",
            application(
                "auto",
                &ns,
                &repo,
                "one",
                "  finalizers: [resources-finalizer.argocd.argoproj.io]\n"
            )
        )),
    );
    let (v, took) = wait(&ns, "auto", "Synced and Healthy", |v| {
        v["status"]["sync"]["status"] == "Synced" && v["status"]["health"]["status"] == "Healthy"
    });
    eprintln!("created → Synced and Healthy in {took:?}");
    let status = &v["status"];
    assert_eq!(status["sync"]["revision"], first.as_str());
    assert_eq!(status["sync"]["comparedTo"]["source"]["path"], "one");
    assert_eq!(
        status["sync"]["comparedTo"]["destination"]["namespace"],
        ns.as_str()
    );
    let resources = status["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2, "{status:#}");
    let one = resources.iter().find(|r| r["name"] == "one").unwrap();
    assert_eq!(one["kind"], "ConfigMap");
    assert_eq!(one["group"], "");
    assert_eq!(one["version"], "v1");
    assert_eq!(one["namespace"], ns.as_str());
    assert_eq!(one["status"], "Synced");
    assert_eq!(one["health"]["status"], "Healthy");
    assert!(jiff::Timestamp::from_str(status["reconciledAt"].as_str().unwrap()).is_ok());
    let history = status["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["revision"], first.as_str());
    assert!(history[0]["id"].is_u64());
    assert!(jiff::Timestamp::from_str(history[0]["deployedAt"].as_str().unwrap()).is_ok());
    assert_eq!(status["operationState"]["phase"], "Succeeded");
    assert_eq!(
        status["operationState"]["syncResult"]["revision"],
        first.as_str()
    );
    assert_eq!(
        status["operationState"]["operation"]["initiatedBy"]["automated"],
        true
    );
    assert_eq!(status["conditions"], serde_json::json!([]));
    let table = kubectl(&["get", "applications", "-n", &ns], None);
    assert!(
        table.contains("SYNC STATUS")
            && table
                .lines()
                .any(|l| l.starts_with("auto") && l.contains("Synced") && l.contains("Healthy")),
        "{table}"
    );

    // Edited: the change acts at once.
    let edited = format!(
        "{}{automated}",
        application(
            "auto",
            &ns,
            &repo,
            "two",
            "  finalizers: [resources-finalizer.argocd.argoproj.io]\n"
        )
    );
    kubectl(&["apply", "-f", "-"], Some(&edited));
    let (_, took) = wait(&ns, "auto", "the edited path", |v| {
        v["status"]["sync"]["comparedTo"]["source"]["path"] == "two"
            && v["status"]["sync"]["status"] == "Synced"
    });
    eprintln!("edited → Synced in {took:?}");
    let cms: Api<ConfigMap> = Api::namespaced(env.client().await, &ns);
    assert!(cms.get_opt("two").await.unwrap().is_some());
    assert!(cms.get_opt("one").await.unwrap().is_none(), "pruned");

    // A manual Application: a new commit shows only after a refresh
    // (the poll is an hour away), and `operation` syncs it.
    kubectl(
        &["apply", "-f", "-"],
        Some(&application("manual", &ns, &repo, "three", "")),
    );
    wait(&ns, "manual", "the first comparison", |v| {
        v["status"]["sync"]["status"] == "OutOfSync"
    });
    kubectl(
        &[
            "patch",
            "applications.argoproj.io",
            "manual",
            "-n",
            &ns,
            "--type",
            "merge",
            "-p",
            r#"{"operation": {"sync": {"prune": true}}}"#,
        ],
        None,
    );
    let (v, _) = wait(&ns, "manual", "the requested sync", |v| {
        v["status"]["operationState"]["phase"] == "Succeeded"
            && v.get("operation").is_none_or(|o| o.is_null())
            && v["status"]["sync"]["status"] == "Synced"
    });
    assert_eq!(
        v["status"]["operationState"]["operation"]["sync"]["prune"],
        true
    );
    assert!(cms.get_opt("three").await.unwrap().is_some());
    repo.write(
        "three/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: three\ndata:\n  v: changed\n",
    );
    let second = repo.commit("change one");
    kubectl(
        &[
            "annotate",
            "applications.argoproj.io",
            "manual",
            "-n",
            &ns,
            "argocd.argoproj.io/refresh=normal",
        ],
        None,
    );
    let (v, took) = wait(&ns, "manual", "the refresh", |v| {
        v["status"]["sync"]["revision"] == second.as_str()
            && v["metadata"]["annotations"]
                .get("argocd.argoproj.io/refresh")
                .is_none()
    });
    eprintln!("refresh annotation → new revision seen in {took:?}");
    assert_eq!(v["status"]["sync"]["status"], "OutOfSync");

    // Deleted without the finalizer: the objects stay. With it: they go.
    kubectl(
        &["delete", "applications.argoproj.io", "manual", "-n", &ns],
        None,
    );
    assert!(
        cms.get_opt("three").await.unwrap().is_some(),
        "no cascade without the finalizer"
    );
    let log = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    kubectl_or(
        &log,
        &[
            "delete",
            "applications.argoproj.io",
            "auto",
            "-n",
            &ns,
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );
    for name in ["two", "shared"] {
        assert!(
            cms.get_opt(name).await.unwrap().is_none(),
            "the cascade finalizer deletes the managed objects ({name})"
        );
    }
}

use std::str::FromStr as _;

fn child(name: &str, ns: &str, repo: &GitRepo, path: &str, wave: i32) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n    argocd.argoproj.io/sync-wave: \"{wave}\"\n  finalizers: [resources-finalizer.argocd.argoproj.io]\nspec:\n  project: default\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: {path}\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n  syncPolicy:\n    automated: {{prune: true}}\n",
        repo.url()
    )
}

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: {name}\n")
}

#[tokio::test]
async fn an_app_of_apps_three_levels_deep_syncs_in_waves_and_prunes_with_cascade() {
    let env = testenv();
    let ns = env.namespace("app-of-apps").await;
    let ns = ns.name().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = plumb(&dir)
        .args(["install", "--namespace", &ns])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // root → mid-a (wave 0), mid-b (wave 1) → leaves → ConfigMaps. mid-a's
    // leaf also has a Deployment, which never becomes Available here (the
    // test control plane runs no pods): wave 1 must wait for it.
    let repo = GitRepo::new();
    repo.write(
        "root/apps.yaml",
        format!(
            "{}---\n{}",
            child("mid-a", &ns, &repo, "mid-a", 0),
            child("mid-b", &ns, &repo, "mid-b", 1)
        ),
    );
    repo.write(
        "mid-a/apps.yaml",
        child("leaf-a1", &ns, &repo, "leaf-a1", 0),
    );
    repo.write(
        "mid-b/apps.yaml",
        format!(
            "{}---\n{}",
            child("leaf-b1", &ns, &repo, "leaf-b1", 0),
            child("leaf-b2", &ns, &repo, "leaf-b2", 0)
        ),
    );
    repo.write("leaf-a1/cm.yaml", config_map("a1"));
    repo.write(
        "leaf-a1/web.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: registry.invalid/web:1\n",
    );
    repo.write("leaf-b1/cm.yaml", config_map("b1"));
    repo.write("leaf-b2/cm.yaml", config_map("b2"));
    repo.commit("three levels");

    let port = plumb_testenv::free_port();
    let _agent = Agent(
        plumb(&dir)
            .args(["agent", "--insecure-no-auth", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--poll-interval", "1s", "--app-namespace", &ns])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    plumb_testenv::wait_for_port(&format!("127.0.0.1:{port}"));
    kubectl(
        &["apply", "-f", "-"],
        Some(&child("root", &ns, &repo, "root", 0)),
    );

    let cms: Api<ConfigMap> = Api::namespaced(env.client().await, &ns);
    let (v, _) = wait(&ns, "leaf-a1", "the wave-0 leaf, Progressing", |v| {
        v["status"]["sync"]["status"] == "Synced"
            && v["status"]["health"]["status"] == "Progressing"
    });
    assert!(
        v["status"]["resources"]
            .as_array()
            .is_some_and(|r| r.len() == 2),
        "{v:#}"
    );
    assert!(cms.get_opt("a1").await.unwrap().is_some());
    // Wave 1 waits while wave 0 is not Healthy.
    std::thread::sleep(Duration::from_secs(3));
    let apps = kubectl(
        &["get", "applications.argoproj.io", "-n", &ns, "-o", "name"],
        None,
    );
    assert!(
        !apps.contains("mid-b"),
        "wave 1 started before wave 0 was Healthy: {apps}"
    );

    // Wave 0 heals (the Deployment leaves Git): wave 1 follows, down to the leaves.
    repo.remove("leaf-a1/web.yaml");
    repo.commit("no web");
    for leaf in ["leaf-b1", "leaf-b2"] {
        wait(&ns, leaf, "the wave-1 leaves", |v| {
            v["status"]["sync"]["status"] == "Synced"
                && v["status"]["health"]["status"] == "Healthy"
        });
    }
    wait(&ns, "root", "the root, Healthy", |v| {
        v["status"]["health"]["status"] == "Healthy" && v["status"]["sync"]["status"] == "Synced"
    });
    for name in ["a1", "b1", "b2"] {
        assert!(cms.get_opt(name).await.unwrap().is_some(), "{name}");
    }

    // A leaf leaves Git: its Application is pruned, and its finalizer
    // takes its ConfigMap with it.
    repo.write(
        "mid-b/apps.yaml",
        child("leaf-b1", &ns, &repo, "leaf-b1", 0),
    );
    repo.commit("drop leaf-b2");
    let start = Instant::now();
    while cms.get_opt("b2").await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "leaf-b2's ConfigMap stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let apps = kubectl(
        &["get", "applications.argoproj.io", "-n", &ns, "-o", "name"],
        None,
    );
    assert!(!apps.contains("leaf-b2"), "{apps}");
    assert!(cms.get_opt("b1").await.unwrap().is_some());
}
