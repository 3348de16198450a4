//! Test-only access to a real Kubernetes control plane.
//!
//! plumb's cluster tests are ordinary `cargo test` tests. The first test in a
//! test binary that asks for [`testenv()`] either reuses an environment that is
//! already running (one started by `eval "$(testenv/up)"`, recognised by
//! `PLUMB_TESTENV`), or starts a private one with `testenv/up` and arranges for
//! it to be torn down when the test binary exits. Each test then takes a
//! [`TestNamespace`] of its own, so tests run in parallel without seeing each
//! other's objects.
//!
//! A `KUBECONFIG` on its own is deliberately not enough to be reused: a
//! developer's kubeconfig may point at a real cluster. Set
//! `PLUMB_TEST_USE_KUBECONFIG=1` to run the tests against it anyway.
//!
//! This crate must never be a dependency of the product, only a
//! dev-dependency.

pub mod git;
pub mod proc;

pub use proc::{KillOnDrop, go_text_binary, output_text, run_ok, wait_for_port, webhook_sink};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// A loopback port that was free a moment ago, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// A running control plane the tests of this binary share.
#[derive(Debug, Clone)]
pub struct TestEnv {
    kubeconfig: PathBuf,
    bin_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
}

static ENV: OnceLock<TestEnv> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The repository's root, where `testenv/` lives.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Path of a tool the setup scripts cache: `kustomize`, `helm`, `kubectl`,
/// the control plane's binaries (pins in `testenv/versions.sh`), and the OCI
/// clients `crane`, `oras` and `cosign` (pins in `testenv/setup.d/oci.versions`),
/// the scanner's `cargo-auditable` and `osv-scanner` (pins in
/// `testenv/setup.d/scan.versions`), and `sops` and `vault` (pins in
/// `testenv/setup.d/secrets.versions`).
///
/// # Panics
/// When the tool is not built, with the command that builds it.
pub fn tool_path(name: &str) -> PathBuf {
    let pins = |file: &str| std::fs::read_to_string(repo_root().join(file)).expect(file);
    let versions = pins("testenv/versions.sh");
    let oci = pins("testenv/setup.d/oci.versions");
    let scan = pins("testenv/setup.d/scan.versions");
    let secrets = pins("testenv/setup.d/secrets.versions");
    let pin = |key: &str| {
        versions
            .lines()
            .chain(oci.lines())
            .chain(scan.lines())
            .chain(secrets.lines())
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} is not pinned in testenv/"))
            .trim()
            .to_string()
    };
    let cache = std::env::var_os("PLUMB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/plumb")
        });
    let dir = match name {
        "kustomize" => format!("kustomize-{}", pin("PLUMB_KUSTOMIZE_VERSION")),
        "helm" => format!("helm-{}", pin("PLUMB_HELM_VERSION")),
        "kubectl" | "kube-apiserver" | "kube-controller-manager" => {
            format!("kube-{}", pin("PLUMB_K8S_VERSION"))
        }
        "etcd" => format!("etcd-{}", pin("PLUMB_ETCD_VERSION")),
        "crane" => format!("crane-{}", pin("PLUMB_CRANE_VERSION")),
        "oras" => format!("oras-{}", pin("PLUMB_ORAS_VERSION")),
        "cosign" => format!("cosign-{}", pin("PLUMB_COSIGN_VERSION")),
        "cargo-auditable" => format!("cargo-auditable-{}", pin("PLUMB_CARGO_AUDITABLE_VERSION")),
        "osv-scanner" => format!("osv-scanner-{}", pin("PLUMB_OSV_SCANNER_VERSION")),
        "sops" => format!("sops-{}", pin("PLUMB_SOPS_VERSION")),
        "vault" => format!("vault-{}", pin("PLUMB_VAULT_VERSION")),
        other => panic!("unknown testenv tool {other}"),
    };
    let path = cache.join(dir).join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is not built; run testenv/setup (or testenv/build) first",
        path.display()
    );
    path
}

/// The Go vulnerability database's OSV records (`…/vulndb-<version>/osv`,
/// about 4,800 `GO-*.json` files) that `testenv/setup.d/51-advisories`
/// fetches (pin in `testenv/setup.d/advisories.versions`).
///
/// # Panics
/// When they are not fetched, with the command that fetches them.
pub fn vulndb_dir() -> PathBuf {
    let pins = std::fs::read_to_string(repo_root().join("testenv/setup.d/advisories.versions"))
        .expect("testenv/setup.d/advisories.versions");
    let version = pins
        .lines()
        .find_map(|l| l.strip_prefix("PLUMB_VULNDB_VERSION="))
        .expect("PLUMB_VULNDB_VERSION is not pinned")
        .trim()
        .to_string();
    let cache = std::env::var_os("PLUMB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/plumb")
        });
    let dir = cache.join(format!("vulndb-{version}")).join("osv");
    assert!(
        dir.join("GO-2021-0113.json").is_file(),
        "{} is not fetched; run testenv/setup.d/51-advisories (or testenv/setup) first",
        dir.display()
    );
    dir
}

/// Argo CD's `resource_customizations` directory (every built-in
/// `GROUP/KIND/health.lua` with its `health_test.yaml` and test objects),
/// which `testenv/setup.d/70-argocd` copies out of the Argo CD Go module
/// (pin in `testenv/setup.d/argocd.versions`), and the pinned version.
///
/// # Panics
/// When it is not fetched, with the command that fetches it.
pub fn argocd_customizations_dir() -> (PathBuf, String) {
    let pins = std::fs::read_to_string(repo_root().join("testenv/setup.d/argocd.versions"))
        .expect("testenv/setup.d/argocd.versions");
    let version = pins
        .lines()
        .find_map(|l| l.strip_prefix("PLUMB_ARGOCD_VERSION="))
        .expect("PLUMB_ARGOCD_VERSION is not pinned")
        .trim()
        .to_string();
    let cache = std::env::var_os("PLUMB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/plumb")
        });
    let dir = cache
        .join(format!("argocd-{version}"))
        .join("resource_customizations");
    assert!(
        dir.join("argoproj.io/Rollout/health.lua").is_file(),
        "{} is not fetched; run testenv/setup.d/70-argocd (or testenv/setup) first",
        dir.display()
    );
    (dir, version)
}

/// Install the TLS crypto provider the `plumb` binary installs in `main`,
/// once per test process: library code never installs one itself, and the
/// HTTP clients of Git fetches, notifications and registries need it.
/// Everything here that hands out a repository or a cluster calls it.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The shared control plane, started on first use.
///
/// # Panics
/// When no environment can be reused and `testenv/up` fails; its error output
/// is part of the panic message.
pub fn testenv() -> &'static TestEnv {
    install_crypto_provider();
    ENV.get_or_init(|| match TestEnv::reuse() {
        Some(env) => env,
        None => TestEnv::start(),
    })
}

impl TestEnv {
    fn reuse() -> Option<TestEnv> {
        let kubeconfig = std::env::var_os("KUBECONFIG").map(PathBuf::from)?;
        let state_dir = std::env::var_os("PLUMB_TESTENV").map(PathBuf::from);
        let forced = std::env::var("PLUMB_TEST_USE_KUBECONFIG").is_ok_and(|v| v == "1");
        if state_dir.is_none() && !forced {
            return None;
        }
        let bin_dir = state_dir.as_ref().map(|s| s.join("bin"));
        Some(TestEnv {
            kubeconfig,
            bin_dir,
            state_dir,
        })
    }

    fn start() -> TestEnv {
        let up = repo_root().join("testenv/up");
        let out = Command::new("bash")
            .arg(&up)
            .env("PLUMB_TESTENV_OWNER", std::process::id().to_string())
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", up.display()));
        assert!(
            out.status.success(),
            "{} failed with {}; its log is above",
            up.display(),
            out.status
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut kubeconfig = None;
        let mut bin_dir = None;
        let mut state_dir = None;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("export ") else {
                continue;
            };
            let Some((key, value)) = rest.split_once('=') else {
                continue;
            };
            match key {
                "KUBECONFIG" => kubeconfig = Some(PathBuf::from(value)),
                "PATH" => bin_dir = value.strip_suffix(":$PATH").map(PathBuf::from),
                "PLUMB_TESTENV" => state_dir = Some(PathBuf::from(value)),
                _ => {}
            }
        }
        TestEnv {
            kubeconfig: kubeconfig.expect("testenv/up printed no KUBECONFIG"),
            bin_dir,
            state_dir,
        }
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Directory holding `kubectl`, `kustomize` and `helm`, when known.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }

    /// The environment's state directory (`PLUMB_TESTENV`), when known.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// Path of a tool (`kubectl`, `kustomize`, `helm`) from the environment,
    /// or the bare name so that `PATH` decides.
    pub fn tool(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// A new client for the calling test's runtime.
    ///
    /// Clients are cheap and bound to the tokio runtime that made them, so each
    /// test makes its own.
    pub async fn client(&self) -> kube::Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("read testenv kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("load testenv kubeconfig");
        kube::Client::try_from(config).expect("build client")
    }

    /// A fresh namespace for one test, deleted (without waiting) when dropped.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        let name = format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos & 0xfffff);
        let client = self.client().await;
        let ns: Api<Namespace> = Api::all(client);
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": { "plumb.dev/test": "true" } }
        });
        ns.patch(
            &name,
            &PatchParams::apply("plumb-test"),
            &Patch::Apply(body),
        )
        .await
        .expect("create test namespace");
        TestNamespace {
            name,
            kubectl: self.tool("kubectl"),
            kubeconfig: self.kubeconfig.clone(),
        }
    }
}

/// A namespace owned by one test.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Delete the namespace and wait until it is gone.
    pub async fn delete_and_wait(self, client: kube::Client) {
        let ns: Api<Namespace> = Api::all(client);
        let _ = ns.delete(&self.name, &DeleteParams::default()).await;
        wait_gone(&ns, &self.name, std::time::Duration::from_secs(60)).await;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Best effort and non-blocking: the environment is torn down anyway.
        let _ = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// Wait until `name` no longer exists, panicking after `timeout`.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: std::time::Duration)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(None) = api.get_opt(name).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} still exists after {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
