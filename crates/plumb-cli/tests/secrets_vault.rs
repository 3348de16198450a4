//! `vault://` secret references against a real Vault dev server (built from
//! its Go module by testenv/setup.d/61-vault) and the real control plane:
//! KV v2 reads with a token, a rotated value seen by `plumb diff` as a hash
//! and applied by `plumb sync`, a refused token, and Kubernetes auth where
//! Vault checks plumb's service account token with the API server's
//! TokenReview.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, PostParams};
use plumb_testenv::git::GitRepo;
use plumb_testenv::{KillOnDrop, output_text as text, testenv};

const FIRST: &str = "vault-mk-Pq7Rz2Lx9Kd4";
const SECOND: &str = "vault-mk-Wb3Nc8Ty5Fh1";
const USER: &str = "vault-mk-user-Ah6Es2";

struct Vault {
    _server: KillOnDrop,
    addr: String,
    token: String,
    http: reqwest::Client,
}

impl Vault {
    async fn start() -> Vault {
        let port = plumb_testenv::free_port();
        let token = format!("root-{}", std::process::id());
        let server = Command::new(plumb_testenv::tool_path("vault"))
            .args(["server", "-dev"])
            .arg(format!("-dev-root-token-id={token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .env("HOME", std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let vault = Vault {
            _server: KillOnDrop(server),
            addr: format!("http://127.0.0.1:{port}"),
            token,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = vault
                .http
                .get(format!("{}/v1/sys/health", vault.addr))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "vault did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        vault
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: serde_json::Value) {
        let resp = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            resp.text().await.unwrap()
        );
    }

    async fn put(&self, password: &str) {
        self.call(
            reqwest::Method::POST,
            "secret/data/app",
            serde_json::json!({"data": {"password": password, "user": USER}}),
        )
        .await;
    }
}

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_plumb"));
        c.arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(args)
            .env("KUBECONFIG", testenv().kubeconfig())
            .env("HOME", self.dir.path())
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_NAMESPACE");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn value(s: &Secret, key: &str) -> String {
    let bytes = s
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone());
    String::from_utf8(bytes.unwrap_or_default()).unwrap()
}

fn assert_no_value(what: &str, out: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    for m in [FIRST, SECOND, USER] {
        assert!(
            !out.contains(m) && !out.contains(&b64.encode(m)),
            "{what} shows a value:\n{out}"
        );
    }
}

/// A service account token for `name` in `namespace`, from the TokenRequest
/// API, for `audience` (default: the API server itself).
async fn token_for(namespace: &str, name: &str, audience: Option<&str>) -> String {
    let client = testenv().client().await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
    let sa: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    accounts.create(&PostParams::default(), &sa).await.unwrap();
    let audiences: Vec<&str> = audience.into_iter().collect();
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": audiences, "expirationSeconds": 3600}
    }))
    .unwrap();
    let tr: TokenRequest = accounts
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .unwrap();
    tr.status.unwrap().token
}

#[tokio::test]
async fn vault_references_with_a_token_and_with_kubernetes_auth() {
    let env = testenv();
    let ns = env.namespace("vault-refs").await;
    let vault = Vault::start().await;
    vault.put(FIRST).await;
    let cli = Cli {
        dir: tempfile::tempdir().unwrap(),
    };
    let repo = GitRepo::new();
    repo.write(
        "app/db.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  annotations:\n    plumb.dev/secret-ref.password: \"vault://secret/data/app#password\"\n    plumb.dev/secret-ref.login: \"vault://secret/data/app#user\"\ntype: Opaque\n",
    );
    repo.commit("a Secret from Vault");
    let app = cli.path("app.yaml");
    std::fs::write(
        &app,
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {0}\n  namespace: argocd\nspec:\n  project: default\n  source:\n    repoURL: {1}\n    targetRevision: main\n    path: app\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {0}\n",
            ns.name(),
            repo.url()
        ),
    )
    .unwrap();
    let app = app.to_str().unwrap();
    let secrets: Api<Secret> = Api::namespaced(env.client().await, ns.name());
    let with_token = [
        ("VAULT_ADDR", vault.addr.as_str()),
        ("VAULT_TOKEN", vault.token.as_str()),
    ];
    let mut outputs = String::new();

    // Without a Vault configured: refused, naming the reference.
    let out = cli.run(&["sync", app], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .contains("app/db.yaml:1:1: vault://secret/data/app#password: no Vault is configured")
            || text(&out).contains("vault://secret/data/app#user: no Vault is configured"),
        "{}",
        text(&out)
    );
    assert!(secrets.get_opt("db").await.unwrap().is_none());

    // With a token: the values arrive.
    let out = cli.run(&["sync", app], &with_token);
    assert!(out.status.success(), "{}", text(&out));
    outputs.push_str(&text(&out));
    let s = secrets.get("db").await.unwrap();
    assert_eq!(value(&s, "password"), FIRST);
    assert_eq!(value(&s, "login"), USER);

    // Rotated in Vault: diff shows the hash, sync applies the new value.
    vault.put(SECOND).await;
    let out = cli.run(&["diff", app], &with_token);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("plumb.dev/secret-ref-hash"),
        "{}",
        text(&out)
    );
    outputs.push_str(&text(&out));
    let out = cli.run(&["sync", app], &with_token);
    assert!(out.status.success(), "{}", text(&out));
    outputs.push_str(&text(&out));
    assert_eq!(value(&secrets.get("db").await.unwrap(), "password"), SECOND);

    // A token Vault does not know: 403, nothing changed.
    let out = cli.run(
        &["sync", app],
        &[
            ("VAULT_ADDR", vault.addr.as_str()),
            ("VAULT_TOKEN", "not-a-token"),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Vault refused the read (403)"),
        "{}",
        text(&out)
    );
    outputs.push_str(&text(&out));

    // Kubernetes auth: Vault reviews plumb's service account token with the
    // API server, and the role's policy allows reading the secret.
    let reviewer = token_for(ns.name(), "vault-reviewer", None).await;
    let bindings: Api<ClusterRoleBinding> = Api::all(env.client().await);
    let binding_name = format!("{}-vault-reviewer", ns.name());
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": binding_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "vault-reviewer", "namespace": ns.name()}]
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(env.kubeconfig()).unwrap();
    let cluster = kubeconfig.clusters[0].cluster.clone().unwrap();
    let ca = std::fs::read_to_string(cluster.certificate_authority.unwrap()).unwrap();
    vault
        .call(
            reqwest::Method::POST,
            "sys/auth/kubernetes",
            serde_json::json!({"type": "kubernetes"}),
        )
        .await;
    vault
        .call(
            reqwest::Method::POST,
            "auth/kubernetes/config",
            serde_json::json!({
                "kubernetes_host": cluster.server.unwrap(),
                "kubernetes_ca_cert": ca,
                "token_reviewer_jwt": reviewer,
                "disable_local_ca_jwt": true,
            }),
        )
        .await;
    vault
        .call(
            reqwest::Method::PUT,
            "sys/policies/acl/read-app",
            serde_json::json!({"policy": "path \"secret/data/app\" { capabilities = [\"read\"] }"}),
        )
        .await;
    vault
        .call(
            reqwest::Method::POST,
            "auth/kubernetes/role/plumb",
            serde_json::json!({
                "bound_service_account_names": ["plumb"],
                "bound_service_account_namespaces": [ns.name()],
                "audience": "vault",
                "token_policies": ["read-app"],
                "token_ttl": "10m",
            }),
        )
        .await;
    let jwt = cli.path("sa-token");
    std::fs::write(&jwt, token_for(ns.name(), "plumb", Some("vault")).await).unwrap();
    vault.put(FIRST).await;
    let out = cli.run(
        &[
            "sync",
            "--vault-addr",
            &vault.addr,
            "--vault-role",
            "plumb",
            "--vault-jwt-file",
            jwt.to_str().unwrap(),
            app,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    outputs.push_str(&text(&out));
    assert_eq!(value(&secrets.get("db").await.unwrap(), "password"), FIRST);

    // A role the service account is not bound to: refused by Vault.
    let out = cli.run(
        &[
            "sync",
            "--vault-addr",
            &vault.addr,
            "--vault-role",
            "nobody",
            "--vault-jwt-file",
            jwt.to_str().unwrap(),
            app,
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Vault refused the Kubernetes login for role nobody"),
        "{}",
        text(&out)
    );
    outputs.push_str(&text(&out));

    assert_no_value("plumb's output", &outputs);
    let _ = bindings
        .delete(&binding_name, &DeleteParams::default())
        .await;
}
