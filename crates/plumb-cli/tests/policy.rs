//! The deploy gate end to end: plumb's registry started here, images pushed
//! with crane, signed with the real cosign and with `plumb artifact sign`, a
//! scan report attached with oras, and `plumb sync --policy` against the real
//! control plane. A refused commit changes nothing in the cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use plumb_testenv::git::GitRepo;
use plumb_testenv::{TestNamespace, testenv, tool_path};
use plumb_testenv::{output_text as text, run_ok as ok};

const PASSWORD: &str = "gate-keys";

struct Fixture {
    dir: tempfile::TempDir,
    registry: Child,
    host: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.registry.kill();
        let _ = self.registry.wait();
    }
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let port = plumb_testenv::free_port();
        let registry = Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["registry", "serve", "--no-auth", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--root")
            .arg(dir.path().join("registry"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(Instant::now() < deadline, "the registry did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Fixture {
            dir,
            registry,
            host,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(tool_path(name));
        c.current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("COSIGN_PASSWORD", PASSWORD)
            .env("SIGSTORE_NO_CACHE", "1")
            .env("TUF_ROOT", self.path("tuf"));
        c
    }

    /// Push a one-layer image whose layer holds `content`; its digest.
    fn push(&self, repo: &str, tag: &str, content: &str) -> String {
        let layer_dir = self.path(&format!("layer-{}", content.len() + tag.len() + repo.len()));
        std::fs::create_dir_all(&layer_dir).unwrap();
        std::fs::write(layer_dir.join("content"), content).unwrap();
        let tar = layer_dir.with_extension("tar");
        ok(Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&layer_dir)
            .arg("content"));
        let reference = format!("{}/{repo}:{tag}", self.host);
        ok(self
            .tool("crane")
            .args(["append", "--insecure", "--oci-empty-base", "-f"])
            .arg(&tar)
            .args(["-t", &reference]));
        ok(self
            .tool("crane")
            .args(["digest", "--insecure", &reference]))
    }

    /// A cosign key pair in a directory of its own.
    fn keys(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        ok(self
            .tool("cosign")
            .current_dir(&dir)
            .arg("generate-key-pair"));
        dir
    }

    /// Sign with the real cosign, in its classic `.sig` tag format.
    fn cosign_sign(&self, keys: &Path, repo: &str, digest: &str, claims: &[&str]) {
        let mut c = self.tool("cosign");
        c.current_dir(keys).args([
            "sign",
            "--key",
            "cosign.key",
            "--use-signing-config=false",
            "--tlog-upload=false",
            "--new-bundle-format=false",
            "--yes",
            "--allow-http-registry",
        ]);
        for claim in claims {
            c.args(["-a", claim]);
        }
        ok(c.arg(format!("{}/{repo}@{digest}", self.host)));
    }

    /// Sign with `plumb artifact sign` (a Sigstore bundle referrer).
    fn plumb_sign(&self, keys: &Path, repo: &str, digest: &str) {
        ok(Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["artifact", "sign", "--format", "bundle", "--key"])
            .arg(keys.join("cosign.key"))
            .arg(format!("{}/{repo}@{digest}", self.host))
            .env("COSIGN_PASSWORD", PASSWORD));
    }

    fn write(&self, name: &str, body: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn plumb(&self, args: &[&str]) -> Output {
        let env = testenv();
        Command::new(env!("CARGO_BIN_EXE_plumb"))
            .arg("--data-dir")
            .arg(self.path("data"))
            .args(args)
            .env("KUBECONFIG", env.kubeconfig())
            .env("HOME", self.dir.path())
            .env("DOCKER_CONFIG", self.path("docker"))
            .output()
            .expect("run plumb")
    }
}

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: main\n        image: {image}\n"
    )
}

fn application(repo: &GitRepo, ns: &TestNamespace) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {ns}\n  namespace: argocd\nspec:\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: apps\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n",
        repo.url(),
        ns = ns.name()
    )
}

async fn live_image(ns: &TestNamespace, name: &str) -> Option<String> {
    let api: Api<Deployment> = Api::namespaced(testenv().client().await, ns.name());
    let d = api.get_opt(name).await.unwrap()?;
    d.spec?.template.spec?.containers.first()?.image.clone()
}

#[tokio::test]
async fn only_signed_immutable_images_reach_the_cluster_pinned_to_their_digest() {
    let f = Fixture::new();
    let ns = testenv().namespace("gate").await;
    let (k1, k2, k3) = (f.keys("k1"), f.keys("k2"), f.keys("k3"));
    f.write(
        "policy.yaml",
        &format!(
            "apiVersion: plumb.dev/v1alpha1\nkind: DeployPolicy\npolicies:\n- name: signed\n  images: [\"{}/team/**\"]\n  tags: {{}}\n  signatures:\n    keys: [k1/cosign.pub, k2/cosign.pub]\n  pinDigests: true\n",
            f.host
        ),
    );
    let policy = f.path("policy.yaml");
    let policy = policy.to_str().unwrap();
    // Two keys listed (a rotation): one image signed by each, in each format.
    let web = f.push("team/web", "v1.0.0", "web one");
    f.cosign_sign(&k1, "team/web", &web, &["git-sha=v1.0.0"]);
    let api = f.push("team/api", "v1.0.0", "api one");
    f.plumb_sign(&k2, "team/api", &api);
    let repo = GitRepo::new();
    repo.write(
        "apps/web.yaml",
        deployment("web", &format!("{}/team/web:v1.0.0", f.host)),
    );
    repo.write(
        "apps/api.yaml",
        deployment("api", &format!("{}/team/api:v1.0.0", f.host)),
    );
    repo.commit("signed images");
    let app = f.write("app.yaml", &application(&repo, &ns));
    let app = app.to_str().unwrap();

    let out = f.plumb(&["sync", app, "--policy", policy]);
    assert!(out.status.success(), "{}", text(&out));
    // Pinned: the tag still shows, the digest decides what runs.
    assert_eq!(
        live_image(&ns, "web").await.unwrap(),
        format!("{}/team/web:v1.0.0@{web}", f.host)
    );
    assert_eq!(
        live_image(&ns, "api").await.unwrap(),
        format!("{}/team/api:v1.0.0@{api}", f.host)
    );
    // No drift reads from the pin.
    let out = f.plumb(&["diff", app, "--policy", policy]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // An unsigned image refuses the whole commit, naming file, object, rule.
    let worker = f.push("team/worker", "v1.0.0", "worker");
    repo.write(
        "apps/worker.yaml",
        deployment("worker", &format!("{}/team/worker:v1.0.0", f.host)),
    );
    repo.write(
        "apps/web.yaml",
        deployment("web", &format!("{}/team/web:v1.0.0", f.host))
            .replace("name: main", "name: changed"),
    );
    repo.commit("unsigned worker");
    let out = f.plumb(&["sync", app, "--policy", policy]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("apps/worker.yaml:1:1: signature:"), "{said}");
    assert!(
        said.contains(&format!("Deployment/{}/worker", ns.name())),
        "{said}"
    );
    assert!(
        said.contains("unsigned: no signature by k1/cosign.pub or k2/cosign.pub"),
        "{said}"
    );
    assert!(
        live_image(&ns, "worker").await.is_none(),
        "nothing is applied"
    );
    let api_deploy: Api<Deployment> = Api::namespaced(testenv().client().await, ns.name());
    let live_web = api_deploy.get("web").await.unwrap();
    assert_eq!(
        live_web.spec.unwrap().template.spec.unwrap().containers[0].name,
        "main",
        "the admitted objects of a refused commit are not applied either"
    );

    // Signed by a key the policy does not list.
    f.cosign_sign(&k3, "team/worker", &worker, &[]);
    let out = f.plumb(&["sync", app, "--policy", policy]);
    assert!(
        text(&out).contains("signed by an unknown key"),
        "{}",
        text(&out)
    );
    assert!(live_image(&ns, "worker").await.is_none());

    // A mutable tag is refused before any registry is asked.
    repo.write(
        "apps/worker.yaml",
        deployment("worker", &format!("{}/team/worker:latest", f.host)),
    );
    repo.commit("latest");
    let out = f.plumb(&["sync", app, "--policy", policy]);
    assert!(text(&out).contains("tag: "), "{}", text(&out));
    assert!(
        text(&out).contains("tag \"latest\" is mutable"),
        "{}",
        text(&out)
    );

    // A tag re-pointed at an unsigned image (this tag is mutable on the
    // registry) is refused, though the name is the one that was signed.
    let cache = f.push("team/cache", "3f2a9c1", "cache one");
    f.cosign_sign(&k1, "team/cache", &cache, &[]);
    repo.remove("apps/worker.yaml");
    repo.write(
        "apps/cache.yaml",
        deployment("cache", &format!("{}/team/cache:3f2a9c1", f.host)),
    );
    repo.commit("cache");
    let out = f.plumb(&["sync", app, "--policy", policy]);
    assert!(out.status.success(), "{}", text(&out));
    let pinned = live_image(&ns, "cache").await.unwrap();
    assert!(pinned.ends_with(&cache), "{pinned}");
    let retagged = f.push("team/cache", "3f2a9c1", "cache tampered");
    assert_ne!(retagged, cache);
    let out = f.plumb(&["sync", app, "--policy", policy]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unsigned"), "{}", text(&out));
    assert_eq!(
        live_image(&ns, "cache").await.unwrap(),
        pinned,
        "what runs did not move"
    );
}

#[tokio::test]
async fn claims_scans_and_a_registry_outage() {
    let mut f = Fixture::new();
    let ns = testenv().namespace("gate-scan").await;
    let k1 = f.keys("k1");
    f.write(
        "policy.yaml",
        &format!(
            "apiVersion: plumb.dev/v1alpha1\nkind: DeployPolicy\npolicies:\n- name: audited\n  images: [\"{}/**\"]\n  signatures:\n    keys: [k1/cosign.pub]\n    annotations: {{git-sha: \"{{tag}}\"}}\n  scan:\n    failOn: high\n    accept:\n    - {{id: CVE-2099-0002, expires: 2099-12-31, reason: not reachable}}\n",
            f.host
        ),
    );
    let policy = f.path("policy.yaml");
    let policy = policy.to_str().unwrap();
    let digest = f.push("svc/app", "v2.0.0", "app two");
    let repo = GitRepo::new();
    repo.write(
        "apps/app.yaml",
        deployment("app", &format!("{}/svc/app:v2.0.0", f.host)),
    );
    repo.commit("app");
    let app = f.write("app.yaml", &application(&repo, &ns));
    let app = app.to_str().unwrap();

    // Signed, but without the claim the policy wants.
    f.cosign_sign(&k1, "svc/app", &digest, &[]);
    let out = f.plumb(&["policy", "check", app, "--policy", policy]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no signature carries git-sha=v2.0.0"),
        "{}",
        text(&out)
    );
    f.cosign_sign(&k1, "svc/app", &digest, &["git-sha=v2.0.0"]);
    // Now signed as required, but never scanned.
    let out = f.plumb(&["policy", "check", app, "--policy", policy, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["admitted"], false);
    assert_eq!(v["images"][0]["denials"][0]["rule"], "scan", "{v}");
    assert_eq!(v["images"][0]["digest"], digest.as_str());

    // A report with an accepted HIGH finding and a LOW one passes; one with
    // another HIGH finding does not.
    let attach = |name: &str, findings: &str| {
        let file = f.write(
            name,
            &format!("{{\"schemaVersion\":1,\"findings\":[{findings}]}}"),
        );
        let media = "application/vnd.plumb.scan.report.v1+json";
        ok(f.tool("oras")
            .args(["attach", "--plain-http", "--artifact-type", media])
            .arg(format!("{}/svc/app@{digest}", f.host))
            .arg(format!(
                "{}:{media}",
                file.file_name().unwrap().to_str().unwrap()
            )));
    };
    attach(
        "report1.json",
        r#"{"id":"CVE-2099-0002","severity":"HIGH","package":"libx","version":"1"},{"id":"CVE-2099-0003","severity":"LOW"}"#,
    );
    let out = f.plumb(&["sync", app, "--policy", policy]);
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(1100));
    attach(
        "report2.json",
        r#"{"id":"CVE-2099-0004","severity":"CRITICAL","package":"liby","version":"2"}"#,
    );
    let out = f.plumb(&["policy", "check", app, "--policy", policy]);
    assert!(
        text(&out).contains("finding CVE-2099-0004 at CRITICAL in liby 2"),
        "{}",
        text(&out)
    );

    // The registry goes away: nothing is admitted, nothing changes.
    repo.write(
        "apps/app.yaml",
        deployment("app", &format!("{}/svc/app:v2.0.0", f.host))
            .replace("name: main", "name: other"),
    );
    repo.commit("while the registry is down");
    f.registry.kill().unwrap();
    f.registry.wait().unwrap();
    let out = f.plumb(&["sync", app, "--policy", policy]);
    assert!(!out.status.success());
    assert!(text(&out).contains("registry: "), "{}", text(&out));
    let live: Api<Deployment> = Api::namespaced(testenv().client().await, ns.name());
    let d = live.get("app").await.unwrap();
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0].name,
        "main"
    );
}

#[test]
fn a_bad_policy_file_names_its_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "policies:\n- name: a\n  scan:\n    failOn: severe\n",
    )
    .unwrap();
    let app = dir.path().join("app.yaml");
    std::fs::write(&app, "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: x}\nspec:\n  source: {repoURL: file:///nonexistent, path: .}\n  destination: {server: https://kubernetes.default.svc, namespace: x}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "sync",
            app.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains(&format!(
            "{}:4:13: failOn must be critical, high, medium or low",
            policy.display()
        )),
        "{said}"
    );
}

/// A running `plumb agent` without auth on a free port.
struct Agent {
    child: Child,
    port: u16,
}

impl Agent {
    fn start(f: &Fixture, apps: &Path, policy: &Path, extra: &[&str]) -> Agent {
        let port = plumb_testenv::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_plumb"))
            .arg("--data-dir")
            .arg(f.path("data"))
            .args([
                "agent",
                "--insecure-no-auth",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--poll-interval", "1s", "--policy"])
            .arg(policy)
            .args(extra)
            .arg(apps)
            .env("KUBECONFIG", testenv().kubeconfig())
            .env("HOME", f.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the agent did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Agent { child, port }
    }

    async fn get(&self, path: &str) -> String {
        reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Poll the Application's status until `f` holds.
    async fn wait(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = self.get(&format!("/api/v1/applications/{name}")).await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_agent_refuses_new_commits_and_heals_admitted_ones() {
    let f = Fixture::new();
    let ns = testenv().namespace("gate-agent").await;
    let (k1, _k2) = (f.keys("k1"), f.keys("k2"));
    let policy = |name: &str, key: &str| {
        f.write(
            name,
            &format!(
                "policies:\n- name: signed\n  images: [\"{}/**\"]\n  signatures:\n    keys: [{key}/cosign.pub]\n",
                f.host
            ),
        )
    };
    let by_k1 = policy("k1.yaml", "k1");
    let by_k2 = policy("k2.yaml", "k2");
    let web = f.push("team/web", "v1.0.0", "web");
    f.cosign_sign(&k1, "team/web", &web, &[]);
    let repo = GitRepo::new();
    repo.write(
        "apps/web.yaml",
        deployment("web", &format!("{}/team/web:v1.0.0", f.host)),
    );
    repo.commit("web");
    std::fs::create_dir_all(f.path("apps")).unwrap();
    f.write(
        "apps/app.yaml",
        &format!(
            "{}  syncPolicy:\n    automated: {{prune: true, selfHeal: true}}\n",
            application(&repo, &ns)
        ),
    );
    let apps = f.path("apps");
    let name = ns.name().to_string();
    let synced = |v: &serde_json::Value| v["sync"] == "Synced" && v["phase"] == "Idle";

    let agent = Agent::start(&f, &apps, &by_k1, &[]);
    agent.wait(&name, "the first sync", synced).await;
    agent.stop();

    // The policy changes under a commit it admitted: a self-heal still runs.
    let agent = Agent::start(&f, &apps, &by_k2, &[]);
    let v = agent
        .wait(&name, "a reconcile under the new policy", synced)
        .await;
    assert!(v["denials"].is_null(), "{v}");
    let deployments: Api<Deployment> = Api::namespaced(testenv().client().await, ns.name());
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while deployments.get("web").await.unwrap().spec.unwrap().replicas != Some(1) {
        assert!(Instant::now() < deadline, "the drift was not healed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop();

    // ...unless the agent enforces the policy on drift too.
    let agent = Agent::start(&f, &apps, &by_k2, &["--enforce-on-drift"]);
    let v = agent
        .wait(&name, "the refusal", |v| {
            v["denials"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    assert!(
        v["denials"][0]
            .as_str()
            .unwrap()
            .contains("signed by an unknown key"),
        "{v}"
    );
    agent.stop();

    // A new, unsigned commit: refused, recorded, counted, shown, announced.
    let (hook_url, hooks) = plumb_testenv::webhook_sink();
    f.write(
        "notify.yaml",
        &format!("webhooks:\n- name: hook\n  url: {hook_url}\n  events: [policy-denied]\n"),
    );
    let notify = f.path("notify.yaml");
    let agent = Agent::start(
        &f,
        &apps,
        &by_k1,
        &["--notifications", notify.to_str().unwrap()],
    );
    agent.wait(&name, "the sync under k1", synced).await;
    let worker = f.push("team/worker", "v1.0.0", "worker");
    let _ = worker;
    repo.write(
        "apps/worker.yaml",
        deployment("worker", &format!("{}/team/worker:v1.0.0", f.host)),
    );
    repo.commit("unsigned worker");
    let v = agent
        .wait(&name, "the refusal", |v| {
            v["denials"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    let denial = v["denials"][0].as_str().unwrap();
    assert!(
        denial.contains("apps/worker.yaml:1:1: signature:") && denial.contains("unsigned"),
        "{v}"
    );
    assert!(
        deployments.get_opt("worker").await.unwrap().is_none(),
        "nothing was applied"
    );
    let metrics = agent.get("/metrics").await;
    assert!(
        metrics.contains("plumb_policy_denials_total{rule=\"signature\"} 1"),
        "{metrics}"
    );
    let page = agent.get(&format!("/applications/argocd%2F{name}")).await;
    assert!(
        page.contains("The deploy policy refused this commit"),
        "{page}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = hooks.lock().unwrap().clone();
        if got
            .iter()
            .any(|b| b.contains("\"event\":\"policy-denied\"") && b.contains("unsigned"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no policy-denied notification: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop();
}
