//! Plaintext secrets end to end: a Git repository served to the real `plumb`
//! binary, `plumb sync` against the real control plane, `plumb secrets scan`
//! on directories, and `plumb infra plan` on a stack with real providers. A
//! refused commit changes nothing in the cluster, and no output ever holds
//! the secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../plumb-state/tests/support/infra_tools.rs"]
mod infra_tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use plumb_testenv::git::GitRepo;
use plumb_testenv::output_text as text;
use plumb_testenv::{TestNamespace, testenv};

/// Fake credentials, built at run time so this file holds none.
fn github_token() -> String {
    let body: String = (0..36)
        .map(|i| (b'a' + ((i * 7 + 3) % 26) as u8) as char)
        .collect();
    format!("gh{}_{body}", "p")
}

fn password() -> String {
    format!("Xq7{}-pZ2{}-vW9{}", "mK", "rT", "nB")
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, body: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
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
            .stdin(Stdio::null())
            .output()
            .expect("run plumb")
    }
}

fn application(repo: &GitRepo, ns: &TestNamespace, annotations: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {ns}\n  namespace: argocd\n{annotations}spec:\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: apps\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n",
        repo.url(),
        ns = ns.name()
    )
}

fn config_map(name: &str, data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}")
}

async fn exists<K>(ns: &TestNamespace, name: &str) -> bool
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(testenv().client().await, ns.name());
    api.get_opt(name).await.unwrap().is_some()
}

#[tokio::test]
async fn a_plaintext_secret_commit_is_refused_and_the_cluster_unchanged() {
    let f = Fixture::new();
    let ns = testenv().namespace("secscan").await;
    let repo = GitRepo::new();
    repo.write(
        "apps/settings.yaml",
        config_map("settings", "  level: info\n"),
    );
    repo.commit("settings");
    let app = f.write("app.yaml", &application(&repo, &ns, ""));
    let app = app.to_str().unwrap();
    let out = f.plumb(&["sync", app]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(exists::<ConfigMap>(&ns, "settings").await);

    // A plaintext Secret and an unrelated object in one commit.
    let pw = password();
    repo.write(
        "apps/db.yaml",
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\nstringData:\n  username: app\n  password: \"{pw}\"\n"
        ),
    );
    repo.write("apps/extra.yaml", config_map("extra", "  colour: blue\n"));
    repo.commit("a plaintext secret");
    let out = f.plumb(&["sync", app]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "apps/db.yaml:7:13: plaintext-secret: Secret db: stringData key \"username\""
        ),
        "{said}"
    );
    assert!(
        said.contains(
            "apps/db.yaml:8:14: plaintext-secret: Secret db: stringData key \"password\""
        ),
        "{said}"
    );
    assert!(!said.contains(&pw), "the secret leaked: {said}");
    assert!(!exists::<Secret>(&ns, "db").await, "the Secret was applied");
    assert!(
        !exists::<ConfigMap>(&ns, "extra").await,
        "the commit was partly applied"
    );
    // diff refuses the same way, and an Application cannot ask for less care.
    let out = f.plumb(&["diff", app]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let lax = f.write(
        "lax.yaml",
        &application(
            &repo,
            &ns,
            "  annotations:\n    plumb.dev/secrets-plaintext: allow\n",
        ),
    );
    let out = f.plumb(&["sync", lax.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!exists::<Secret>(&ns, "db").await);

    // Warn: logged without the value, and the sync goes on.
    let out = f.plumb(&["sync", app, "--secrets-plaintext", "warn"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("apps/db.yaml:8:14: plaintext-secret"),
        "{said}"
    );
    assert!(!said.contains(&pw), "the secret leaked: {said}");
    assert!(exists::<Secret>(&ns, "db").await);
    assert!(exists::<ConfigMap>(&ns, "extra").await);

    // A credential in a ConfigMap is refused too, located at the value; the
    // cluster keeps the previous commit's objects.
    repo.remove("apps/db.yaml");
    let token = github_token();
    repo.write(
        "apps/extra.yaml",
        config_map("extra", &format!("  colour: red\n  ci: \"{token}\"\n")),
    );
    repo.commit("a token in a config map");
    let out = f.plumb(&["sync", app]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(
            "apps/extra.yaml:7:8: github-token: ConfigMap/extra: a GitHub token (40 characters)"
        ) || said.contains("apps/extra.yaml:7:8: github-token: a GitHub token (40 characters)"),
        "{said}"
    );
    assert!(!said.contains(&token), "the token leaked: {said}");
    let api: Api<ConfigMap> = Api::namespaced(testenv().client().await, ns.name());
    let extra = api.get("extra").await.unwrap();
    assert_eq!(extra.data.unwrap()["colour"], "blue");

    // Allowed on its line, with a reason: it syncs.
    repo.write(
        "apps/extra.yaml",
        config_map(
            "extra",
            &format!("  colour: red\n  ci: \"{token}\" # plumb:allow-secret github-token revoked, kept for the demo\n"),
        ),
    );
    repo.commit("allowed with a reason");
    let out = f.plumb(&["sync", app]);
    assert!(out.status.success(), "{}", text(&out));
    let extra = api.get("extra").await.unwrap();
    assert_eq!(extra.data.unwrap()["colour"], "red");
}

fn scan_dir(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (p, body) in files {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

fn scan(dir: &Path, format: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["secrets", "scan"])
        .arg(dir)
        .args(["--format", format])
        .output()
        .unwrap()
}

#[test]
fn secrets_scan_reports_text_json_and_sarif_and_passes_sops_files() {
    let pw = password();
    let token = github_token();
    let sops = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: ENC[AES256_GCM,data:q83vEj0=,iv:1D4d6vL0o8b8kD6t2b2Q3w==,tag:7cA1Ln0S5w==,type:str]\nsops:\n  age:\n  - recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n  lastmodified: \"2026-12-06T00:00:00Z\"\n  mac: ENC[AES256_GCM,data:zz9=,iv:aa==,tag:bb==,type:str]\n  version: 3.13.0\n";
    let dir = scan_dir(&[
        ("apps/db.enc.yaml", sops.to_string()),
        ("apps/deploy.yaml", config_map("web", "  mode: fast\n")),
        ("charts/web/values.yaml", format!("image: web\ndatabase:\n  adminPassword: {pw}\n")),
        (
            "apps/kustomization.yaml",
            "resources:\n- db.enc.yaml\nsecretGenerator:\n- name: api\n  literals:\n  - key=value\n".to_string(),
        ),
        ("apps/ci.yaml", config_map("ci", &format!("  t: {token}\n"))),
        ("apps/.plumbignore-secrets", "ci.yaml:6 github-token revoked demo token\n".to_string()),
    ]);
    let out = scan(dir.path(), "sarif");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let results: Vec<(String, String, u64, u64)> = log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let loc = &r["locations"][0]["physicalLocation"];
            (
                r["ruleId"].as_str().unwrap().to_string(),
                loc["artifactLocation"]["uri"].as_str().unwrap().to_string(),
                loc["region"]["startLine"].as_u64().unwrap(),
                loc["region"]["startColumn"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        results,
        vec![
            (
                "plaintext-secret-generator".into(),
                "apps/kustomization.yaml".into(),
                6,
                5
            ),
            (
                "generic-password".into(),
                "charts/web/values.yaml".into(),
                3,
                18
            ),
        ]
    );
    let all = text(&out);
    assert!(!all.contains(&pw) && !all.contains(&token), "{all}");

    let out = scan(dir.path(), "text");
    let said = text(&out);
    assert!(said.contains("charts/web/values.yaml:3:18: generic-password: key \"adminPassword\" holds a 17-character value"), "{said}");
    assert!(!said.contains(&pw), "{said}");
    let out = scan(dir.path(), "json");
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 2);

    // Clean after the fixes; warn never fails.
    std::fs::write(
        dir.path().join("charts/web/values.yaml"),
        "image: web\ndatabase:\n  adminPassword: \"\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("apps/kustomization.yaml"),
        "resources:\n- db.enc.yaml\n",
    )
    .unwrap();
    let out = scan(dir.path(), "text");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["secrets", "scan", "--secrets-plaintext", "warn"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // An ignore entry without a reason is itself refused.
    std::fs::write(
        dir.path().join("apps/.plumbignore-secrets"),
        "ci.yaml github-token\n",
    )
    .unwrap();
    let out = scan(dir.path(), "text");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("apps/.plumbignore-secrets:1:1: bad-allow"),
        "{}",
        text(&out)
    );
}

#[test]
fn infra_plan_refuses_a_literal_password_without_showing_it() {
    let pw = password();
    let dir = tempfile::tempdir().unwrap();
    let main = format!(
        "terraform {{\n  required_providers {{\n    random = {{ source = \"hashicorp/random\" }}\n  }}\n}}\n\nvariable \"db_password\" {{\n  type      = string\n  sensitive = true\n  default   = \"{pw}\"\n}}\n\nresource \"random_id\" \"db\" {{\n  byte_length = 4\n  keepers = {{\n    password = var.db_password\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("main.tf"), &main).unwrap();
    let infra = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_plumb"))
            .arg("infra")
            .arg(format!("-chdir={}", dir.path().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let mirror = infra_tools::infra_tools(&["mirror"], "mirror");
    let out = infra(&["init", &format!("-plugin-dir={mirror}")]);
    assert!(out.status.success(), "{}", text(&out));
    for verb in [&["plan"][..], &["apply", "-auto-approve"][..]] {
        let out = infra(verb);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(
            said.contains("main.tf:10:16: tf-literal-secret: variable \"db_password\" default is a literal (17 characters)"),
            "{said}"
        );
        assert!(!said.contains(&pw), "the password leaked: {said}");
    }
    assert!(
        !dir.path().join("terraform.tfstate").exists(),
        "something was applied"
    );
    // A tfvars literal is refused the same way.
    std::fs::write(
        dir.path().join("main.tf"),
        main.replace(&format!("  default   = \"{pw}\"\n"), ""),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prod.tfvars"),
        format!("db_password = \"{pw}\"\n"),
    )
    .unwrap();
    let out = infra(&["plan", "-var-file=prod.tfvars"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("prod.tfvars:1:16: tf-literal-secret"),
        "{said}"
    );
    assert!(!said.contains(&pw), "{said}");
    // warn plans anyway; marked with a reason, it plans.
    let out = infra(&["plan", "-var-file=prod.tfvars", "-secrets-plaintext=warn"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(
        dir.path().join("prod.tfvars"),
        format!("db_password = \"{pw}\" # plumb:allow-secret tf-literal-secret throwaway test database\n"),
    )
    .unwrap();
    let out = infra(&["plan", "-var-file=prod.tfvars"]);
    assert!(out.status.success(), "{}", text(&out));
}
