//! Secrets through the agent, end to end with the real binary, the real
//! control plane and files encrypted by the real `sops`: a SOPS file
//! decrypted with a key kept in a cluster Secret, Secrets whose values come
//! from references (another Secret, one in another namespace, a file)
//! resolved at apply and rotated at their source, a plaintext Secret refused
//! with its findings on the API, the UI, a metric and a notification, and a
//! reference the source namespace does not allow.
//!
//! Every secret value here is a marker. The test ends by looking for each
//! marker, plain and base64, in everything a user or an operator sees: the
//! agent's debug log, every API answer and UI page, the metrics, every
//! notification body, the CLI's diff output and the data directory. It must
//! find none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_secrets::sops::generate_identity;
use plumb_testenv::git::GitRepo;
use plumb_testenv::{output_text as text, testenv};

/// The values the test seeds; none may be seen outside the cluster's Secrets.
const SOPS_VALUE: &str = "mk-sops-Vq3ZtR8pLw2N";
const REF_VALUE: &str = "mk-ref-Hx7Kc2PdQ9sB";
const ROTATED_VALUE: &str = "mk-rot-Jm5Wn8TfYa3E";
const SHARED_VALUE: &str = "mk-shared-Rb6Gu4XeKz1C";
const FILE_VALUE: &str = "mk-file-Ls9Dq2VhNc7A";
const PRIVATE_VALUE: &str = "mk-private-Te4Mw8JbPx6F";
const PLAIN_VALUE: &str = "mk-plain-Ug2Yk7RsLq5H";
const MARKERS: [&str; 7] = [
    SOPS_VALUE,
    REF_VALUE,
    ROTATED_VALUE,
    SHARED_VALUE,
    FILE_VALUE,
    PRIVATE_VALUE,
    PLAIN_VALUE,
];

struct Fixture {
    dir: tempfile::TempDir,
    recipient: String,
    key_text: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (secret, recipient) = generate_identity();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Fixture {
            dir,
            recipient,
            key_text: secret.to_string(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `sops -e` (the real one) of a Kubernetes manifest.
    fn sops_encrypt(&self, plain: &str) -> Vec<u8> {
        let path = self.path("plain.yaml");
        std::fs::write(&path, plain).unwrap();
        let out = Command::new(plumb_testenv::tool_path("sops"))
            .args(["-e", "--age", &self.recipient])
            .args(["--encrypted-regex", "^(data|stringData)$"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        std::fs::remove_file(&path).unwrap();
        out.stdout
    }

    fn plumb(&self) -> Command {
        let env = testenv();
        let mut c = Command::new(env!("CARGO_BIN_EXE_plumb"));
        c.arg("--data-dir")
            .arg(self.path("data"))
            .env("KUBECONFIG", env.kubeconfig())
            .env("HOME", self.path("home"))
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("VAULT_ADDR")
            .env_remove("PLUMB_GIT_TOKEN");
        c
    }
}

struct Agent {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Agent {
    fn start(f: &Fixture, apps: &Path, extra: &[&str], log: &str) -> Agent {
        let port = plumb_testenv::free_port();
        let log = f.path(log);
        let child = f
            .plumb()
            .args(["agent", "--insecure-no-auth", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--poll-interval", "1s", "--resync-interval", "2s"])
            .args(extra)
            .arg(apps)
            .env("PLUMB_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        plumb_testenv::wait_for_port(&format!("127.0.0.1:{port}"));
        Agent { child, port, log }
    }

    async fn get(&self, path: &str) -> String {
        reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn wait(
        &self,
        name: &str,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(90);
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

    /// Everything a viewer can read from this agent about `name`.
    async fn everything(&self, name: &str) -> String {
        let mut all = String::new();
        for path in [
            "/".to_string(),
            "/metrics".to_string(),
            "/api/v1/applications".to_string(),
            format!("/api/v1/applications/{name}"),
            format!("/api/v1/applications/{name}/diff"),
            format!("/api/v1/applications/{name}/history"),
            format!("/applications/argocd%2F{name}"),
            format!("/applications/argocd%2F{name}/live"),
            format!("/applications/argocd%2F{name}/diff"),
        ] {
            all.push_str(&format!("\n== {path}\n"));
            all.push_str(&self.get(&path).await);
        }
        all
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

fn hash_of(s: &Secret) -> String {
    s.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("plumb.dev/secret-ref-hash"))
        .cloned()
        .unwrap_or_default()
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where any marker (or its base64) shows in `text`.
fn leaks(what: &str, text: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    MARKERS
        .iter()
        .flat_map(|m| [m.to_string(), b64.encode(m)])
        .filter(|needle| text.contains(needle.as_str()))
        .map(|needle| format!("{what}: {needle}"))
        .collect()
}

fn files_leaking(dir: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                hits.extend(leaks(
                    &path.display().to_string(),
                    &String::from_utf8_lossy(&bytes),
                ));
            }
        }
    }
    hits
}

fn secret(name: &str, annotations: &[(&str, String)]) -> String {
    let mut s = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n");
    if !annotations.is_empty() {
        s.push_str("  annotations:\n");
        for (k, v) in annotations {
            s.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    s.push_str("type: Opaque\n");
    s
}

#[tokio::test]
async fn the_agent_decrypts_resolves_refuses_and_never_shows_a_value() {
    let env = testenv();
    let f = Fixture::new();
    let ns = env.namespace("secrets-agent").await;
    let other = env.namespace("secrets-src").await;
    let client = env.client().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    let other_secrets: Api<Secret> = Api::namespaced(client.clone(), other.name());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let create = |name: &str, data: serde_json::Value, annotations: serde_json::Value| {
        serde_json::from_value::<Secret>(serde_json::json!({
            "metadata": {"name": name, "annotations": annotations},
            "stringData": data,
        }))
        .unwrap()
    };
    let pp = PostParams::default();
    // The age key lives in the cluster, as Flux's decryption.secretRef.
    secrets
        .create(
            &pp,
            &create(
                "sops-age",
                serde_json::json!({"identity.agekey": f.key_text}),
                serde_json::json!({}),
            ),
        )
        .await
        .unwrap();
    secrets
        .create(
            &pp,
            &create(
                "db-source",
                serde_json::json!({"pw": REF_VALUE}),
                serde_json::json!({}),
            ),
        )
        .await
        .unwrap();
    other_secrets
        .create(
            &pp,
            &create(
                "shared",
                serde_json::json!({"v": SHARED_VALUE}),
                serde_json::json!({"plumb.dev/secret-ref-allowed-namespaces": ns.name()}),
            ),
        )
        .await
        .unwrap();
    other_secrets
        .create(
            &pp,
            &create(
                "private",
                serde_json::json!({"v": PRIVATE_VALUE}),
                serde_json::json!({}),
            ),
        )
        .await
        .unwrap();
    let root = f.path("mounted");
    std::fs::create_dir_all(root.join("db")).unwrap();
    std::fs::write(root.join("db/dbpass"), FILE_VALUE).unwrap();

    let repo = GitRepo::new();
    repo.write(
        "app/decrypted.yaml",
        f.sops_encrypt(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: decrypted\nstringData:\n  token: {SOPS_VALUE}\n"
        )),
    );
    repo.write(
        "app/from-refs.yaml",
        secret(
            "from-refs",
            &[
                ("plumb.dev/secret-ref.password", "k8s://db-source#pw".into()),
                (
                    "plumb.dev/secret-ref.shared",
                    format!("k8s://{}/shared#v", other.name()),
                ),
                (
                    "plumb.dev/secret-ref",
                    format!("file://{}", root.join("db").display()),
                ),
            ],
        ),
    );
    repo.write(
        "app/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: one\n",
    );
    repo.commit("secrets by SOPS and by reference");
    let apps = f.path("apps");
    std::fs::create_dir_all(&apps).unwrap();
    let name = ns.name().to_string();
    let app_file = apps.join("app.yaml");
    std::fs::write(
        &app_file,
        format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\n  annotations:\n    plumb.dev/decryption-secret: {name}/sops-age\nspec:\n  project: default\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: app\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {name}\n  syncPolicy:\n    automated: {{prune: true}}\n",
            repo.url()
        ),
    )
    .unwrap();
    let (hook_url, hooks) = plumb_testenv::webhook_sink();
    let notify = f.path("notify.yaml");
    std::fs::write(
        &notify,
        format!(
            "webhooks:\n- name: hook\n  url: {hook_url}\n  events: [sync-succeeded, sync-failed, health-degraded, drift-detected, policy-denied, secrets-refused]\n"
        ),
    )
    .unwrap();
    let root_arg = root.display().to_string();
    let agent_args = [
        "--secret-ref-root",
        root_arg.as_str(),
        "--notifications",
        notify.to_str().unwrap(),
    ];
    let synced = |v: &serde_json::Value| v["sync"] == "Synced" && v["phase"] == "Idle";
    let mut seen = String::new();
    let mut logs = String::new();

    // 1. Decrypted with the key from the cluster; references resolved.
    let agent = Agent::start(&f, &apps, &agent_args, "agent-1.log");
    agent.wait(&name, "the first sync", synced).await;
    let s = secrets.get("decrypted").await.unwrap();
    assert_eq!(value(&s, "token"), SOPS_VALUE);
    let s = secrets.get("from-refs").await.unwrap();
    assert_eq!(value(&s, "password"), REF_VALUE);
    assert_eq!(value(&s, "shared"), SHARED_VALUE);
    // The directory's one file, `dbpass`, became a key of its own.
    assert_eq!(value(&s, "dbpass"), FILE_VALUE);
    let first_hash = hash_of(&s);
    assert!(first_hash.starts_with("sha256:"), "{:?}", s.metadata);
    seen.push_str(&agent.everything(&name).await);

    // 2. The value rotates at its source: applied on the next resync
    //    (automated, without self-heal), with a new hash.
    secrets
        .patch(
            "db-source",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"stringData": {"pw": ROTATED_VALUE}})),
        )
        .await
        .unwrap();
    let rotated = wait_for("the rotated value", async || {
        let s = secrets.get("from-refs").await.unwrap();
        (value(&s, "password") == ROTATED_VALUE).then_some(s)
    })
    .await;
    assert_ne!(hash_of(&rotated), first_hash);
    assert_eq!(value(&rotated, "shared"), SHARED_VALUE);
    seen.push_str(&agent.everything(&name).await);
    logs.push_str(&agent.stop());

    // While the agent is stopped the file's value changes: `plumb diff`
    // reports the Secret by its hash, never its values.
    std::fs::write(root.join("db/dbpass"), format!("{FILE_VALUE}-2")).unwrap();
    let out = f
        .plumb()
        .args(["diff", "--secret-ref-root", &root_arg])
        .arg(&app_file)
        .output()
        .unwrap();
    let diff = text(&out);
    assert_eq!(out.status.code(), Some(1), "{diff}");
    assert!(diff.contains("plumb.dev/secret-ref-hash"), "{diff}");
    seen.push_str(&diff);
    std::fs::write(root.join("db/dbpass"), FILE_VALUE).unwrap();

    // 3. A plaintext Secret (and a ConfigMap change) in one commit: refused,
    //    shown, counted and announced; nothing of it reaches the cluster.
    let agent = Agent::start(&f, &apps, &agent_args, "agent-2.log");
    agent.wait(&name, "the sync after restart", synced).await;
    repo.write(
        "app/leak.yaml",
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: leak\nstringData:\n  password: {PLAIN_VALUE}\n"
        ),
    );
    repo.write(
        "app/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: two\n",
    );
    repo.commit("a plaintext secret");
    let v = agent
        .wait(&name, "the refusal", |v| {
            v["secretFindings"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
        })
        .await;
    let finding = v["secretFindings"][0].as_str().unwrap();
    assert!(
        finding.starts_with("app/leak.yaml:6:13: plaintext-secret:"),
        "{v}"
    );
    assert!(secrets.get_opt("leak").await.unwrap().is_none());
    let cm = config_maps.get("settings").await.unwrap();
    assert_eq!(
        cm.data.unwrap()["mode"],
        "one",
        "nothing of the commit applied"
    );
    let page = agent
        .get(&format!("/applications/argocd%2F{name}/live"))
        .await;
    assert!(
        page.contains("This commit holds plaintext secrets") && page.contains("app/leak.yaml:6:13"),
        "{page}"
    );
    let metrics = agent.get("/metrics").await;
    assert!(
        metrics.contains("plumb_secret_refusals_total{rule=\"plaintext-secret\"} 1"),
        "{metrics}"
    );
    wait_for("the secrets-refused notification", async || {
        hooks
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.contains("\"event\":\"secrets-refused\"") && b.contains("app/leak.yaml"))
            .then_some(())
    })
    .await;
    seen.push_str(&agent.everything(&name).await);

    // 4. The leak is replaced by a reference another namespace does not
    //    allow: refused, naming the reference; then fixed.
    repo.remove("app/leak.yaml");
    repo.write(
        "app/stolen.yaml",
        secret(
            "stolen",
            &[(
                "plumb.dev/secret-ref.v",
                format!("k8s://{}/private#v", other.name()),
            )],
        ),
    );
    repo.commit("copy another namespace's Secret");
    let v = agent
        .wait(&name, "the reference refusal", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("does not allow namespace"))
        })
        .await;
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("app/stolen.yaml") && message.contains("private#v"),
        "{v}"
    );
    assert!(secrets.get_opt("stolen").await.unwrap().is_none());
    assert_eq!(
        config_maps.get("settings").await.unwrap().data.unwrap()["mode"],
        "one"
    );
    seen.push_str(&agent.everything(&name).await);
    repo.remove("app/stolen.yaml");
    repo.commit("drop the copy");
    agent.wait(&name, "the fixed commit", synced).await;
    assert_eq!(
        config_maps.get("settings").await.unwrap().data.unwrap()["mode"],
        "two"
    );
    seen.push_str(&agent.everything(&name).await);
    logs.push_str(&agent.stop());

    // Nothing anyone but the cluster's Secret readers can see holds a value.
    let mut found = leaks("agent log", &logs);
    found.extend(leaks("API, UI, metrics and CLI", &seen));
    for body in hooks.lock().unwrap().iter() {
        found.extend(leaks("notification", body));
    }
    found.extend(files_leaking(&f.path("data")));
    assert!(found.is_empty(), "secret values leaked: {found:?}");
    let hook_count = hooks.lock().unwrap().len();
    assert!(
        logs.contains("DEBUG") && logs.contains("reconcile failed") && hook_count >= 3,
        "the check must look at real logs and notifications ({hook_count} notifications):\n{logs}"
    );
}
