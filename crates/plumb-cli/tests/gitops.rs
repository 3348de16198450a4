//! `plumb sync`, `diff` and `status` as users run them: the real binary, real
//! Git repositories, the real control plane, real kustomize and helm.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use plumb_testenv::git::GitRepo;
use plumb_testenv::{TestNamespace, testenv};
use serde_json::Value;

/// The seed's example Application, verbatim but for repoURL and namespace.
const SEED: &str = r#"apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: myapp
  namespace: argocd
spec:
  project: default
  source:
    repoURL: https://github.com/myorg/k8s-manifests.git
    targetRevision: main
    path: apps/myapp
  destination:
    server: https://kubernetes.default.svc
    namespace: production
  syncPolicy:
    automated:
      prune: true # Delete resources removed from Git
      selfHeal: true # Revert manual cluster changes
    syncOptions:
      - CreateNamespace=true
"#;

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let env = testenv();
        let mut path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(bin) = env.bin_dir() {
            let mut p = std::ffi::OsString::from(bin);
            p.push(":");
            p.push(&path);
            path = p;
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(args)
            .env("KUBECONFIG", env.kubeconfig())
            .env("PATH", path)
            .env_remove("PLUMB_GIT_TOKEN")
            .output()
            .expect("run plumb")
    }

    fn write_app(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn seed_for(repo: &GitRepo, ns: &TestNamespace) -> String {
    SEED.replace("https://github.com/myorg/k8s-manifests.git", &repo.url())
        .replace(
            "namespace: production",
            &format!("namespace: {}", ns.name()),
        )
        .replace("name: myapp", &format!("name: {}", ns.name()))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n";

#[tokio::test]
async fn the_seed_example_syncs_diffs_reports_and_prunes() {
    let env = testenv();
    let ns = env.namespace("cli-seed").await;
    let repo = GitRepo::new();
    repo.write("apps/myapp/deploy.yaml", WEB);
    repo.write(
        "apps/myapp/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  color: blue\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n",
    );
    repo.write("apps/myapp/svc.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n");
    let c1 = repo.commit("first");
    let cli = Cli::new();
    let app = cli.write_app("app.yaml", &seed_for(&repo, &ns));

    let out = cli.run(&["sync", p(&app)]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("Deployment.apps {}/web created", ns.name())),
        "{text}"
    );
    assert!(
        text.contains(&format!("ConfigMap {}/web-config created", ns.name())),
        "{text}"
    );
    assert!(text.contains(&c1[..7]), "names the commit: {text}");

    let out = cli.run(&["diff", p(&app)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let out = cli.run(&["status", p(&app), "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["name"], ns.name());
    assert_eq!(status["sync"], "Synced");
    assert_eq!(status["health"], "Progressing");
    assert_eq!(status["revision"], c1.as_str());
    assert_eq!(status["resources"]["total"], 4);
    assert_eq!(status["resources"]["synced"], 4);

    // Someone changes the cluster: diff says so, with the field.
    let client = env.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    cms.patch(
        "web-config",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"data": {"color": "red"}})),
    )
    .await
    .unwrap();
    let out = cli.run(&["diff", p(&app)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("-  color: red"), "{}", stdout(&out));
    let out = cli.run(&["status", p(&app), "-o", "json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["sync"], "OutOfSync");

    // Git changes: an object leaves, one changes. prune follows syncPolicy.automated.prune.
    repo.remove("apps/myapp/svc.yaml");
    repo.write("apps/myapp/config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-config\ndata:\n  color: green\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n");
    let c2 = repo.commit("second");
    let out = cli.run(&["sync", p(&app), "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["revision"], c2.as_str());
    let action = |kind: &str, name: &str| {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .map(|r| r["action"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(action("Service", "web"), "pruned");
    assert_eq!(action("ConfigMap", "web-config"), "configured");
    assert_eq!(action("Deployment", "web"), "unchanged");
    assert_eq!(
        cms.get("web-config").await.unwrap().data.unwrap()["color"],
        "green"
    );

    // --revision syncs an older commit: the Service comes back.
    let out = cli.run(&["sync", p(&app), "--revision", &c1[..8]]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("Service {}/web created", ns.name())),
        "{}",
        stdout(&out)
    );

    // --no-prune overrides the policy.
    let out = cli.run(&["sync", p(&app), "--no-prune"]);
    assert!(
        stdout(&out).contains(&format!("Service {}/web skipped", ns.name())),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn kustomize_and_helm_sources_merge() {
    let env = testenv();
    let ns = env.namespace("cli-multi").await;
    let repo = GitRepo::new();
    repo.write("base/kustomization.yaml", "resources: [cm.yaml]\n");
    repo.write(
        "base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-kustomize\ndata:\n  env: base\n",
    );
    repo.write("overlay/kustomization.yaml", "resources: [../base]\npatches:\n- patch: |-\n    apiVersion: v1\n    kind: ConfigMap\n    metadata:\n      name: from-kustomize\n    data:\n      env: prod\n");
    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: chart\nversion: 1.0.0\n",
    );
    repo.write("chart/values.yaml", "greeting: hello\n");
    repo.write("chart/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-helm\ndata:\n  greeting: {{ .Values.greeting }}\n");
    repo.commit("sources");
    let app = format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: multi, namespace: argocd}}
spec:
  sources:
  - repoURL: {url}
    targetRevision: HEAD
    path: overlay
    kustomize:
      namePrefix: k-
  - repoURL: {url}
    targetRevision: main
    path: chart
    helm:
      releaseName: rel
      parameters:
      - name: greeting
        value: bonjour
  destination: {{server: "https://kubernetes.default.svc", namespace: {ns}}}
"#,
        url = repo.url(),
        ns = ns.name()
    );
    let cli = Cli::new();
    let file = cli.write_app("multi.yaml", &app);
    let out = cli.run(&["sync", p(&file)]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let cms: Api<ConfigMap> = Api::namespaced(env.client().await, ns.name());
    assert_eq!(
        cms.get("k-from-kustomize").await.unwrap().data.unwrap()["env"],
        "prod"
    );
    assert_eq!(
        cms.get("rel-helm").await.unwrap().data.unwrap()["greeting"],
        "bonjour"
    );
    let out = cli.run(&["diff", p(&file)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[tokio::test]
async fn destinations_resolve_through_the_kubeconfig() {
    let env = testenv();
    let ns = env.namespace("cli-dest").await;
    let repo = GitRepo::new();
    repo.write(
        "m/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: here\n",
    );
    repo.commit("one");
    let kubeconfig = std::fs::read_to_string(env.kubeconfig()).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    let cli = Cli::new();
    let app = |dest: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: dest}}\nspec:\n  source: {{repoURL: {}, path: m}}\n  destination: {{{dest}, namespace: {}}}\n",
            repo.url(),
            ns.name()
        )
    };
    let by_server = cli.write_app("by-server.yaml", &app(&format!("server: \"{server}\"")));
    let out = cli.run(&["sync", p(&by_server)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let by_name = cli.write_app("by-name.yaml", &app("name: plumb-testenv"));
    assert!(cli.run(&["diff", p(&by_name)]).status.success());

    let unknown = cli.write_app(
        "unknown.yaml",
        &app("server: \"https://elsewhere.example:6443\""),
    );
    let out = cli.run(&["sync", p(&unknown)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("https://elsewhere.example:6443"), "{err}");
    assert!(err.contains(&server), "lists the servers it knows: {err}");
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_changes_nothing() {
    let env = testenv();
    let ns = env.namespace("cli-bad").await;
    let repo = GitRepo::new();
    repo.write(
        "apps/ok/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n",
    );
    repo.write("apps/broken/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n---\nmetadata:\n  name: nokind\n");
    repo.write("apps/unknown/x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n---\napiVersion: gadgets.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n");
    repo.commit("inputs");
    let cli = Cli::new();
    let cms: Api<ConfigMap> = Api::namespaced(env.client().await, ns.name());
    let app_for = |path: &str, url: &str, rev: &str| {
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: bad}}\nspec:\n  source: {{repoURL: \"{url}\", targetRevision: {rev}, path: {path}}}\n  destination: {{server: https://kubernetes.default.svc, namespace: {}}}\n",
            ns.name()
        )
    };

    // Malformed Application YAML: file, line and column.
    let f = cli.write_app(
        "malformed.yaml",
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: [oops\n",
    );
    let out = cli.run(&["sync", p(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:4:", f.display())), "{err}");

    // Not an Application.
    let f = cli.write_app(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    );
    let out = cli.run(&["sync", p(&f)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not an Application"),
        "{}",
        stderr(&out)
    );

    // A manifest without kind, in Git: the repository file and line.
    let f = cli.write_app("a.yaml", &app_for("apps/broken", &repo.url(), "HEAD"));
    let out = cli.run(&["sync", p(&f)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("apps/broken/cm.yaml:6:1: manifest has no `kind`"),
        "{}",
        stderr(&out)
    );

    // A kind the cluster does not serve.
    let f = cli.write_app("u.yaml", &app_for("apps/unknown", &repo.url(), "HEAD"));
    let out = cli.run(&["sync", p(&f)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("apps/unknown/x.yaml:6:1"),
        "{}",
        stderr(&out)
    );
    let out = cli.run(&["diff", p(&f)]);
    assert_eq!(out.status.code(), Some(2), "diff errors exit 2");

    // A revision that does not exist; a repository that does not resolve.
    let f = cli.write_app("r.yaml", &app_for("apps/ok", &repo.url(), "no-such-branch"));
    let out = cli.run(&["sync", p(&f)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no-such-branch"), "{}", stderr(&out));
    let f = cli.write_app(
        "n.yaml",
        &app_for("apps/ok", "https://git.invalid/nothing.git", "main"),
    );
    let out = cli.run(&["sync", p(&f)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("git.invalid"), "{}", stderr(&out));

    // A path that climbs out of the repository.
    let f = cli.write_app("esc.yaml", &app_for("apps/../../..", &repo.url(), "HEAD"));
    let out = cli.run(&["sync", p(&f)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("leaves the repository"),
        "{}",
        stderr(&out)
    );

    assert!(
        cms.list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|c| c.metadata.name.as_deref() != Some("fine")),
        "none of the failed syncs applied anything"
    );

    // Unknown fields are warnings, not failures.
    let f = cli.write_app(
        "w.yaml",
        &app_for("apps/ok", &repo.url(), "HEAD").replace("spec:\n", "spec:\n  frobnicate: true\n"),
    );
    let out = cli.run(&["sync", p(&f)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown field `spec.frobnicate`"),
        "{}",
        stderr(&out)
    );
}

/// A certificate authority and a server certificate for 127.0.0.1, made with openssl.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let sh = |script: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(
        "openssl ecparam -name prime256v1 -genkey -noout -out ca.key && \
        openssl req -x509 -new -key ca.key -days 2 -subj /CN=plumb-test-ca -out ca.crt \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign && \
        openssl ecparam -name prime256v1 -genkey -noout -out srv.key && \
        openssl req -new -key srv.key -subj /CN=127.0.0.1 -out srv.csr && \
        printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > srv.ext && \
        openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile srv.ext -out srv.crt",
    );
    (dir.join("ca.crt"), dir.join("srv.crt"), dir.join("srv.key"))
}

#[tokio::test]
async fn https_git_with_a_token_and_the_token_never_shows() {
    let env = testenv();
    let ns = env.namespace("cli-https").await;
    let repo = GitRepo::new();
    repo.write(
        "m/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: over-https\n",
    );
    repo.commit("https");
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(pki.path());
    let server = plumb_testenv::git::GitHttpServer::start_with(
        repo.bare_path().parent().unwrap(),
        Some("s3cr3t-https-token"),
        Some((&cert, &key)),
    );
    let url = server.url("remote.git");
    assert!(url.starts_with("https://"));
    let cli = Cli::new();
    let app = cli.write_app(
        "https.yaml",
        &format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: https}}\nspec:\n  source: {{repoURL: \"{url}\", path: m}}\n  destination: {{server: https://kubernetes.default.svc, namespace: {}}}\n",
            ns.name()
        ),
    );
    let run = |token: &str| {
        let mut path = std::ffi::OsString::from(env.bin_dir().unwrap());
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        std::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
            .arg("--data-dir")
            .arg(cli.dir.path().join(format!("data-{}", token.len())))
            .args(["sync", "-v"])
            .arg(&app)
            .env("KUBECONFIG", env.kubeconfig())
            .env("PATH", path)
            .env("SSL_CERT_FILE", &ca)
            .env("PLUMB_GIT_USERNAME", "bot")
            .env("PLUMB_GIT_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = run("s3cr3t-https-token");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("s3cr3t-https-token"));
    assert!(
        stdout(&out).contains("over-https created"),
        "{}",
        stdout(&out)
    );
    let out = run("wrong-https-token-value");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(!err.contains("wrong-https-token-value"), "{err}");
    assert!(err.contains(&url.replace("/remote.git", "")), "{err}");
}
