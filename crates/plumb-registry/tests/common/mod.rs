//! Test support: an in-process registry on a loopback port, and the real OCI
//! clients built by `testenv/setup.d/30-oci`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use plumb_registry::{Registry, RegistryConfig};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland-7";
pub const READER: &str = "bob";
pub const READER_PASSWORD: &str = "builder-3";

/// A real OCI tool, found where the setup script caches it.
pub fn tool(name: &str) -> PathBuf {
    if name == "skopeo" {
        let p = PathBuf::from("/usr/bin/skopeo");
        assert!(
            p.exists(),
            "skopeo is missing: run testenv/setup (testenv/setup.d/30-oci installs Debian's skopeo)"
        );
        return p;
    }
    let versions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv/setup.d/oci.versions");
    let text = std::fs::read_to_string(&versions).expect("testenv/setup.d/oci.versions");
    let (key, dir_name, bin) = match name {
        "crane" => ("PLUMB_CRANE_VERSION", "crane", "crane"),
        "oras" => ("PLUMB_ORAS_VERSION", "oras", "oras"),
        "cosign" => ("PLUMB_COSIGN_VERSION", "cosign", "cosign"),
        "conformance" => (
            "PLUMB_CONFORMANCE_VERSION",
            "oci-conformance",
            "conformance.test",
        ),
        other => panic!("unknown tool {other}"),
    };
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing from {}", versions.display()))
        .trim();
    let cache = std::env::var_os("PLUMB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/plumb"));
    let p = cache.join(format!("{dir_name}-{version}/bin/{bin}"));
    assert!(
        p.exists(),
        "{name} {version} is missing at {}: run testenv/setup (testenv/setup.d/30-oci builds it)",
        p.display()
    );
    p
}

/// Run a command; panic with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A current-thread runtime to drive plumb-oci's async client from a test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Wait until what was pushed just now is older than a `grace: 0s` window
/// (push times are whole seconds).
pub fn past_grace() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

/// A registry served in-process on 127.0.0.1, stopped when dropped.
pub struct TestRegistry {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn htpasswd_line(user: &str, password: &str) -> String {
    // htpasswd -B writes $2y$; bcrypt the crate writes $2b$: the same algorithm.
    format!(
        "{user}:{}\n",
        bcrypt::hash(password, 5)
            .unwrap()
            .replacen("$2b$", "$2y$", 1)
    )
}

impl TestRegistry {
    /// Start with the default policy and the two test users (alice: push, bob: read).
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// Start with extra YAML configuration (the auth section is added).
    pub fn start_with(yaml: &str) -> Self {
        Self::start_full(yaml, None)
    }

    /// Start with configuration and optional TLS.
    pub fn start_full(yaml: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        // Pull-through caches make upstream clients when the registry opens.
        plumb_oci::client::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(
            &htpasswd,
            htpasswd_line(USER, PASSWORD) + &htpasswd_line(READER, READER_PASSWORD),
        )
        .unwrap();
        let config_text =
            format!("auth:\n  htpasswd: htpasswd\n  roles: {{ {READER}: read }}\n{yaml}");
        let config_path = dir.path().join("registry.yaml");
        std::fs::write(&config_path, &config_text).unwrap();
        let config = RegistryConfig::load(&config_path).unwrap();
        let registry = Arc::new(Registry::open(&dir.path().join("root"), config).unwrap());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let r = registry.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                plumb_registry::server::serve(listener, r, tls, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        TestRegistry {
            addr,
            registry,
            dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registry's root directory.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A docker config dir with the push user logged in (for crane, oras, cosign).
    pub fn docker_config(&self) -> PathBuf {
        use base64::Engine as _;
        let d = self.dir.path().join("docker");
        std::fs::create_dir_all(&d).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        std::fs::write(
            d.join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, self.host()),
        )
        .unwrap();
        d
    }

    /// A blocking HTTP client with the push user's credentials.
    pub fn http(&self) -> Http {
        plumb_oci::client::install_crypto_provider();
        Http {
            base: self.url(),
            client: reqwest::blocking::Client::new(),
            user: Some((USER.into(), PASSWORD.into())),
        }
    }

    /// Every file under the blob store.
    pub fn blob_files(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        walk(&e.path(), out);
                    } else {
                        out.push(e.path());
                    }
                }
            }
        }
        let mut v = vec![];
        walk(&self.root().join("blobs"), &mut v);
        v.sort();
        v
    }

    /// A plumb-oci client logged in as the push user.
    pub fn client(&self) -> plumb_oci::client::RegistryClient {
        plumb_oci::client::install_crypto_provider();
        plumb_oci::client::RegistryClient::new(plumb_oci::client::ClientOptions {
            plain_http: Some(true),
            credentials: Some(plumb_oci::client::Credentials {
                username: USER.into(),
                password: PASSWORD.into(),
            }),
            ca_file: None,
        })
        .unwrap()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A small blocking HTTP helper.
pub struct Http {
    pub base: String,
    pub client: reqwest::blocking::Client,
    pub user: Option<(String, String)>,
}

impl Http {
    pub fn with_user(mut self, user: &str, password: &str) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    pub fn anonymous(mut self) -> Self {
        self.user = None;
        self
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let r = self.client.request(method, url);
        match &self.user {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    /// Upload a blob monolithically; returns its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> plumb_oci::Digest {
        let d = plumb_oci::Digest::sha256_of(data);
        let r = self
            .req(
                reqwest::Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            )
            .body(data.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
        d
    }

    /// Push an image manifest with a config and the given layers; returns (digest, bytes).
    pub fn push_image(
        &self,
        repo: &str,
        reference: &str,
        layers: &[&[u8]],
    ) -> (plumb_oci::Digest, Vec<u8>) {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"n":"{reference}"}}"#
        );
        let c = self.push_blob(repo, config.as_bytes());
        let layer_json: Vec<String> = layers
            .iter()
            .map(|l| {
                let d = self.push_blob(repo, l);
                format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}"#, l.len())
            })
            .collect();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{}}},"layers":[{}]}}"#,
            config.len(),
            layer_json.join(",")
        );
        let r = self.put_manifest(repo, reference, manifest.as_bytes());
        assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
        (
            plumb_oci::Digest::sha256_of(manifest.as_bytes()),
            manifest.into_bytes(),
        )
    }

    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
    ) -> reqwest::blocking::Response {
        self.put_manifest_as(
            repo,
            reference,
            "application/vnd.oci.image.manifest.v1+json",
            body,
        )
    }

    /// PUT a manifest of any media type (an image index, say).
    pub fn put_manifest_as(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> reqwest::blocking::Response {
        self.req(
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
        )
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .unwrap()
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.req(reqwest::Method::GET, path).send().unwrap()
    }

    /// POST without a body.
    pub fn post(&self, path: &str) -> reqwest::blocking::Response {
        self.req(reqwest::Method::POST, path).send().unwrap()
    }

    /// DELETE what `path` names.
    pub fn delete(&self, path: &str) -> reqwest::blocking::Response {
        self.req(reqwest::Method::DELETE, path).send().unwrap()
    }

    /// Start a blob upload in `repo`; returns its absolute location.
    pub fn start_upload(&self, repo: &str) -> String {
        let r = self.post(&format!("/v2/{repo}/blobs/uploads/"));
        format!("{}{}", self.base, r.headers()["location"].to_str().unwrap())
    }
}

/// The OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image index with one child manifest of `size` bytes.
pub fn index_of(child: &plumb_oci::Digest, size: usize) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{child}","size":{size}}}]}}"#
    )
}

/// Assert that `r` is refused with `status` and the OCI error `code`.
#[track_caller]
pub fn assert_refused(r: reqwest::blocking::Response, status: u16, code: &str) {
    assert_eq!(r.status(), status);
    assert_eq!(error_code(&r.text().unwrap()), code);
}

/// The OCI error code of a response body.
pub fn error_code(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not an OCI error body: {body}"));
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
