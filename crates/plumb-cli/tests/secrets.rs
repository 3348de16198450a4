//! SOPS-encrypted files in Git, synced by the real binary: a plain directory,
//! a Kustomize secretGenerator and a Helm values file, each encrypted by the
//! real `sops`; keys from a file or from a Secret in the cluster; and a marker
//! value that must show only in the cluster object, never in output or caches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use plumb_secrets::sops::generate_identity;
use plumb_testenv::git::GitRepo;
use plumb_testenv::output_text as text;
use plumb_testenv::testenv;

struct Cli {
    dir: tempfile::TempDir,
    key_file: PathBuf,
    key_text: String,
    recipient: String,
}

impl Cli {
    fn new() -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let (secret, recipient) = generate_identity();
        let key_file = dir.path().join("age.key");
        std::fs::write(&key_file, format!("{}\n", &*secret)).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Cli {
            dir,
            key_file,
            key_text: secret.to_string(),
            recipient,
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
        Command::new(env!("CARGO_BIN_EXE_plumb"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .env("KUBECONFIG", env.kubeconfig())
            .env("PATH", path)
            .env("HOME", self.dir.path().join("home"))
            .env_remove("SOPS_AGE_KEY")
            .env_remove("SOPS_AGE_KEY_FILE")
            .env_remove("PLUMB_GIT_TOKEN")
            .output()
            .expect("run plumb")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `sops -e` (the real one) of `plain` named like `name`.
    fn sops_encrypt(&self, name: &str, plain: &[u8], extra: &[&str]) -> Vec<u8> {
        let path = self.dir.path().join("plain").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, plain).unwrap();
        let mut args = vec!["-e", "--age", self.recipient.as_str()];
        args.extend_from_slice(extra);
        args.push(path.to_str().unwrap());
        let out = Command::new(plumb_testenv::tool_path("sops"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&path).unwrap();
        out.stdout
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn app(name: &str, repo: &GitRepo, path: &str, ns: &str, extra: &str, annotations: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\n{annotations}spec:\n  project: default\n  source:\n    repoURL: {}\n    targetRevision: main\n    path: {path}\n{extra}  destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n",
        repo.url()
    )
}

/// Every file under `dir`, searched for `needle` as bytes.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
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
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(path);
            }
        }
    }
    hits
}

fn secret_value(s: &Secret, key: &str) -> String {
    String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

const MARKER: &str = "plumb-sops-marker-7f3a";

#[tokio::test]
async fn sops_files_sync_decrypted_from_directories_kustomize_and_helm() {
    let env = testenv();
    let ns = env.namespace("sops-sync").await;
    let cli = Cli::new();
    let repo = GitRepo::new();

    // A plain directory: a Secret encrypted by sops with encrypted_regex.
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: plain-secret\ntype: Opaque\nstringData:\n  password: {MARKER}-plain\n"
    );
    repo.write(
        "plain/secret.yaml",
        cli.sops_encrypt(
            "secret.yaml",
            secret.as_bytes(),
            &["--encrypted-regex", "^(data|stringData)$"],
        ),
    );
    repo.write(
        "plain/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain-cm\ndata:\n  a: b\n",
    );

    // Kustomize: a secretGenerator over an encrypted dotenv and an encrypted binary file.
    repo.write(
        "kust/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\ngeneratorOptions:\n  disableNameSuffixHash: true\nsecretGenerator:\n  - name: generated\n    envs: [creds.env]\n    files: [cert.pem]\n",
    );
    repo.write(
        "kust/creds.env",
        cli.sops_encrypt(
            "creds.env",
            format!("USER=app\nPASSWORD={MARKER}-env\n").as_bytes(),
            &[],
        ),
    );
    repo.write(
        "kust/cert.pem",
        cli.sops_encrypt(
            "cert.pem",
            format!("-----BEGIN X-----\n{MARKER}-bin\n-----END X-----\n").as_bytes(),
            &[],
        ),
    );

    // Helm: a values file encrypted by sops.
    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    );
    repo.write("chart/values.yaml", "password: not-set\n");
    repo.write(
        "chart/templates/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: helm-secret\nstringData:\n  password: {{ .Values.password | quote }}\n",
    );
    repo.write(
        "chart/secrets.yaml",
        cli.sops_encrypt(
            "secrets.yaml",
            format!("password: {MARKER}-helm\n").as_bytes(),
            &[],
        ),
    );
    repo.commit("encrypted secrets");

    let apps = [
        cli.write(
            "plain.yaml",
            &app(
                &format!("{}-plain", ns.name()),
                &repo,
                "plain",
                ns.name(),
                "",
                "",
            ),
        ),
        cli.write(
            "kust.yaml",
            &app(
                &format!("{}-kust", ns.name()),
                &repo,
                "kust",
                ns.name(),
                "",
                "",
            ),
        ),
        cli.write(
            "helm.yaml",
            &app(
                &format!("{}-helm", ns.name()),
                &repo,
                "chart",
                ns.name(),
                "    helm:\n      valueFiles: [secrets.yaml]\n",
                "",
            ),
        ),
    ];
    let mut outputs = String::new();

    // Without a key: a clear error naming the file; nothing created.
    let out = cli.run(&["sync", p(&apps[0])]);
    outputs.push_str(&text(&out));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("plain/secret.yaml: SOPS-encrypted but no age key is configured"),
        "{}",
        text(&out)
    );
    let client = env.client().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    assert!(cms.get_opt("plain-cm").await.unwrap().is_none());

    // With the key: every source syncs, decrypted.
    for a in &apps {
        let out = cli.run(&["sync", "--sops-age-key-file", p(&cli.key_file), p(a)]);
        outputs.push_str(&text(&out));
        assert!(out.status.success(), "{}", text(&out));
    }
    let s = secrets.get("plain-secret").await.unwrap();
    assert_eq!(secret_value(&s, "password"), format!("{MARKER}-plain"));
    let s = secrets.get("generated").await.unwrap();
    assert_eq!(secret_value(&s, "PASSWORD"), format!("{MARKER}-env"));
    assert_eq!(secret_value(&s, "USER"), "app");
    assert!(secret_value(&s, "cert.pem").contains(&format!("{MARKER}-bin")));
    let s = secrets.get("helm-secret").await.unwrap();
    assert_eq!(secret_value(&s, "password"), format!("{MARKER}-helm"));

    // The key through the environment, and a diff: equal, and nothing printed.
    for a in &apps {
        let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
            .arg("--data-dir")
            .arg(cli.data_dir())
            .args(["diff", p(a)])
            .env("KUBECONFIG", env.kubeconfig())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    env.bin_dir()
                        .map(|b| b.display().to_string())
                        .unwrap_or_default(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("HOME", cli.dir.path().join("home"))
            .env("SOPS_AGE_KEY", &cli.key_text)
            .env_remove("SOPS_AGE_KEY_FILE")
            .output()
            .unwrap();
        outputs.push_str(&text(&out));
        assert!(out.status.success(), "{}", text(&out));
    }
    // A changed secret in Git: the diff shows that it differs, not the values.
    secrets
        .patch(
            "plain-secret",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({"stringData": {"password": "changed-in-cluster"}}),
            ),
        )
        .await
        .unwrap();
    let out = cli.run(&["diff", "--sops-age-key-file", p(&cli.key_file), p(&apps[0])]);
    outputs.push_str(&text(&out));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("changed-in-cluster"), "{}", text(&out));

    assert!(
        !outputs.contains(MARKER),
        "a decrypted value reached the output:\n{outputs}"
    );
    let hits = files_containing(&cli.data_dir(), MARKER.as_bytes());
    assert!(hits.is_empty(), "decrypted values on disk: {hits:?}");
}

#[tokio::test]
async fn the_decryption_secret_annotation_reads_keys_from_the_cluster() {
    let env = testenv();
    let ns = env.namespace("sops-ref").await;
    let cli = Cli::new();
    let repo = GitRepo::new();
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-ref\nstringData:\n  token: {MARKER}-ref\n"
    );
    repo.write(
        "app/secret.yaml",
        cli.sops_encrypt("secret.yaml", secret.as_bytes(), &[]),
    );
    repo.commit("one");
    let annotation = format!(
        "  annotations:\n    plumb.dev/decryption-secret: {}/sops-age\n",
        ns.name()
    );
    let a = cli.write(
        "app.yaml",
        &app(ns.name(), &repo, "app", ns.name(), "", &annotation),
    );

    // The Secret is not there yet: a clear error.
    let out = cli.run(&["sync", p(&a)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!(
            "decryption secret {}/sops-age: no such Secret",
            ns.name()
        )),
        "{}",
        text(&out)
    );

    let client = env.client().await;
    let secrets: Api<Secret> = Api::namespaced(client, ns.name());
    let key: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sops-age"},
        "stringData": {"identity.agekey": cli.key_text},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &key).await.unwrap();
    let out = cli.run(&["sync", p(&a)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(MARKER));
    let s = secrets.get("from-ref").await.unwrap();
    assert_eq!(secret_value(&s, "token"), format!("{MARKER}-ref"));
}

#[test]
fn secrets_encrypt_writes_what_sops_reads_and_decrypt_refuses_tampering() {
    let cli = Cli::new();
    let plain =
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\nstringData:\n  k: {MARKER}\n");
    let file = cli.write("s.yaml", &plain);
    let out = cli.run(&[
        "secrets",
        "encrypt",
        p(&file),
        "--age",
        &cli.recipient,
        "--encrypted-regex",
        "^stringData$",
        "--in-place",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(MARKER));
    let enc = std::fs::read_to_string(&file).unwrap();
    assert!(enc.contains("name: x") && !enc.contains(MARKER), "{enc}");

    // The real sops reads it.
    let out = Command::new(plumb_testenv::tool_path("sops"))
        .args(["-d", p(&file)])
        .env("SOPS_AGE_KEY_FILE", &cli.key_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("k: {MARKER}")));

    // plumb secrets decrypt prints it.
    let out = cli.run(&[
        "secrets",
        "decrypt",
        p(&file),
        "--sops-age-key-file",
        p(&cli.key_file),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("k: {MARKER}")));

    // A changed clear value breaks the MAC: refused, naming the file.
    std::fs::write(&file, enc.replace("name: x", "name: y")).unwrap();
    let out = cli.run(&[
        "secrets",
        "decrypt",
        p(&file),
        "--sops-age-key-file",
        p(&cli.key_file),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("{}: MAC mismatch", file.display())),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(MARKER));

    // .sops.yaml creation rules choose the recipient when --age is absent.
    std::fs::write(
        cli.dir.path().join(".sops.yaml"),
        format!(
            "creation_rules:\n  - path_regex: \\.env$\n    age: {}\n",
            cli.recipient
        ),
    )
    .unwrap();
    let env_file = cli.write("app.env", &format!("TOKEN={MARKER}\n"));
    let out = cli.run(&["secrets", "encrypt", p(&env_file)]);
    assert!(out.status.success(), "{}", text(&out));
    let enc_env = cli.write("app.enc.env", &String::from_utf8_lossy(&out.stdout));
    let out = Command::new(plumb_testenv::tool_path("sops"))
        .args(["-d", p(&enc_env)])
        .env("SOPS_AGE_KEY_FILE", &cli.key_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("TOKEN={MARKER}\n")
    );
}
