//! Scanning what is pushed: each image manifest is scanned in the background
//! and the report hangs on it as a referrer, where the deploy gate and any
//! OCI tool find it.
//!
//! The registry does not know how to scan: an [`ImageScanner`] (plumb-cli
//! supplies one over plumb-scan) gets the image's layer files in order and
//! returns the report's bytes. The registry owns the rest: a bounded queue
//! and a fixed number of workers, the report's referrer (`artifactType`
//! [`SCAN_REPORT_ARTIFACT_TYPE`], annotated with the advisory database's
//! digest), an optional cosign bundle signing it with the registry's key,
//! `GET /plumb/v1/scan/{repo}/{digest}`, metrics, and sweeps: at start and
//! whenever the scanner's database changes, every image without a report
//! from the current database is queued. A crash therefore loses nothing: what
//! was queued and not scanned is found again by the next start's sweep.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use plumb_oci::cosign::{CosignSigningKey, SigstoreBundle};
use plumb_oci::{Digest, RepositoryName};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Deserialize;

use crate::error::RegistryError;
use crate::service::Registry;

/// The `artifactType` of a scan report referrer (the same string plumb-scan
/// writes and the deploy gate reads).
pub const SCAN_REPORT_ARTIFACT_TYPE: &str = "application/vnd.plumb.scan.report.v1+json";
/// The annotation naming the advisory database a report was made from.
pub const DATABASE_ANNOTATION: &str = "dev.plumb.scan.database";
/// Path prefix of the report endpoint (`/plumb/v1/scan/{repo}/{digest}`).
pub const SCAN_PATH: &str = "/plumb/v1/scan/";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// One layer of an image, as a file in the registry's store.
#[derive(Debug, Clone)]
pub struct LayerFile {
    /// Its media type (tar, tar+gzip, tar+zstd).
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Where its bytes are (read-only; never modify).
    pub path: PathBuf,
}

/// What to scan: one image, or each platform image of an index.
#[derive(Debug, Clone)]
pub struct ImageToScan {
    /// The repository.
    pub repository: String,
    /// The manifest's digest (an image or an index).
    pub digest: Digest,
    /// The layers of each image in it, bottom layer first.
    pub images: Vec<Vec<LayerFile>>,
}

/// The outcome of one scan.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// The report document (JSON, media type [`SCAN_REPORT_ARTIFACT_TYPE`]).
    pub report: Vec<u8>,
    /// How many findings of each severity (`CRITICAL`, `HIGH`, …), for metrics.
    pub severities: Vec<(String, u64)>,
}

/// Something that scans images (plumb-cli's is plumb-scan over an advisory store).
pub trait ImageScanner: Send + Sync + 'static {
    /// The digest of the advisory database now in force; when it changes
    /// every image is scanned again. `None`: no database (nothing is scanned).
    fn database(&self) -> Option<String>;
    /// Scan one image (blocking; the registry calls it off the reactor).
    fn scan(&self, image: &ImageToScan) -> Result<ScanOutcome, String>;
}

/// The registry's scanning: queue, workers, key.
pub struct Scanning {
    scanner: Arc<dyn ImageScanner>,
    key: Option<CosignSigningKey>,
    queue: tokio::sync::mpsc::Sender<(String, Digest)>,
    receiver: Mutex<Option<tokio::sync::mpsc::Receiver<(String, Digest)>>>,
    /// Queued or being scanned, so one image is not queued twice.
    pending: Mutex<HashSet<(String, Digest)>>,
}

impl std::fmt::Debug for Scanning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanning")
            .field("signed", &self.key.is_some())
            .finish()
    }
}

impl Scanning {
    /// Scanning with `scanner`, reports signed with `key` when given;
    /// `queue` images wait at most.
    pub fn new(
        scanner: Arc<dyn ImageScanner>,
        key: Option<CosignSigningKey>,
        queue: usize,
    ) -> Scanning {
        let (tx, rx) = tokio::sync::mpsc::channel(queue.max(1));
        Scanning {
            scanner,
            key,
            queue: tx,
            receiver: Mutex::new(Some(rx)),
            pending: Mutex::new(HashSet::new()),
        }
    }

    /// Queue one image unless it is already waiting; false when the queue
    /// is full (the next sweep finds it).
    fn enqueue(&self, registry: &Registry, repo: &str, digest: &Digest) -> bool {
        let key = (repo.to_owned(), digest.clone());
        {
            let Ok(mut pending) = self.pending.lock() else {
                return false;
            };
            if !pending.insert(key.clone()) {
                return true;
            }
        }
        match self.queue.try_send(key.clone()) {
            Ok(()) => {
                registry.metrics.scan.queued(1);
                true
            }
            Err(_) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&key);
                }
                registry.metrics.scan.result("dropped");
                false
            }
        }
    }
}

/// The kind of manifest a record's media type and bytes describe.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestView {
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<DescriptorView>,
    #[serde(default)]
    layers: Vec<DescriptorView>,
    #[serde(default)]
    manifests: Vec<DescriptorView>,
    #[serde(default)]
    subject: Option<DescriptorView>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorView {
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<serde_json::Value>,
}

impl Registry {
    /// Queue `digest` in `repo` (its manifest `bytes` as just stored) for
    /// scanning if it is an image or an index of images (not a referrer,
    /// not an artifact) and scanning on push is on.
    pub fn scan_on_push(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        media_type: &str,
        bytes: &[u8],
    ) {
        let Some(scanning) = self.scanning.get() else {
            return;
        };
        if self.config.scan.on_push && scannable(media_type, bytes) {
            scanning.enqueue(self, repo.as_str(), digest);
        }
    }

    /// Start scanning with `scanning`: its workers, the database watch and
    /// the first sweep. Call once, inside the runtime, before serving.
    pub fn start_scanning(self: &Arc<Self>, scanning: Scanning) -> Result<(), RegistryError> {
        let workers = self.config.scan.workers.max(1);
        let poll = self.config.scan.database_poll;
        let receiver = scanning
            .receiver
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .ok_or_else(|| RegistryError::Io(std::io::Error::other("scanning started twice")))?;
        self.scanning
            .set(scanning)
            .map_err(|_| RegistryError::Io(std::io::Error::other("scanning started twice")))?;
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..workers {
            let (registry, receiver) = (Arc::clone(self), Arc::clone(&receiver));
            tokio::spawn(async move {
                loop {
                    let next = receiver.lock().await.recv().await;
                    let Some((repo, digest)) = next else {
                        return;
                    };
                    registry.metrics.scan.queued(-1);
                    let started = std::time::Instant::now();
                    let result = registry.scan_one(&repo, &digest).await;
                    registry.metrics.scan.took(started.elapsed().as_secs_f64());
                    match result {
                        Ok(Some(severities)) => {
                            registry.metrics.scan.result("ok");
                            registry.metrics.scan.findings(&severities);
                            tracing::info!(%repo, %digest, "scanned");
                        }
                        Ok(None) => {}
                        Err(e) => {
                            registry.metrics.scan.result("error");
                            tracing::warn!(%repo, %digest, error = %e, "scan failed");
                        }
                    }
                    if let Some(s) = registry.scanning.get()
                        && let Ok(mut p) = s.pending.lock()
                    {
                        p.remove(&(repo, digest));
                    }
                }
            });
        }
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen: Option<String> = None;
            let mut tick = tokio::time::interval(poll);
            loop {
                tick.tick().await;
                let Some(scanning) = registry.scanning.get() else {
                    return;
                };
                let current = scanning.scanner.database();
                if current.is_some() && current != seen {
                    let r = Arc::clone(&registry);
                    let db = current.clone();
                    let swept =
                        tokio::task::spawn_blocking(move || r.sweep(db.as_deref().unwrap_or("")))
                            .await;
                    match swept {
                        Ok(Ok(n)) => tracing::info!(
                            database = current.as_deref().unwrap_or(""),
                            queued = n,
                            "advisory database in force; images without its report queued"
                        ),
                        Ok(Err(e)) => tracing::warn!(error = %e, "scan sweep failed"),
                        Err(e) => tracing::warn!(error = %e, "scan sweep failed"),
                    }
                    seen = current;
                }
            }
        });
        Ok(())
    }

    /// Queue every image without a report from the database in force (the
    /// `POST /plumb/v1/scan` endpoint); how many were queued.
    pub async fn rescan(self: &Arc<Self>) -> Result<usize, RegistryError> {
        let Some(database) = self.scanning.get().and_then(|s| s.scanner.database()) else {
            return Err(RegistryError::Unsupported(
                "scanning is not configured here (scan.on_push and scan.advisories)".into(),
            ));
        };
        let r = Arc::clone(self);
        tokio::task::spawn_blocking(move || r.sweep(&database))
            .await
            .map_err(|e| RegistryError::Io(std::io::Error::other(e)))?
    }

    /// Queue every scannable image that has no report from `database`;
    /// returns how many were queued.
    pub fn sweep(&self, database: &str) -> Result<usize, RegistryError> {
        let Some(scanning) = self.scanning.get() else {
            return Ok(0);
        };
        let mut queued = 0;
        for repo in self.meta.repositories()? {
            for (digest, record) in self.meta.manifests(&repo)? {
                let Some((_, bytes)) = self.meta.manifest_with_bytes(&repo, &digest)? else {
                    continue;
                };
                if !scannable(&record.media_type, &bytes) {
                    continue;
                }
                if self.report_from(&repo, &digest, database)?.is_some() {
                    continue;
                }
                if scanning.enqueue(self, &repo, &digest) {
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    /// The newest report on `digest` made from `database` (any database when
    /// empty): its manifest digest and its layer's digest.
    fn report_from(
        &self,
        repo: &str,
        digest: &Digest,
        database: &str,
    ) -> Result<Option<(Digest, Digest)>, RegistryError> {
        let mut best: Option<(i64, Digest, Digest)> = None;
        for (d, record) in self.meta.referrers(repo, digest)? {
            if record.artifact_type.as_deref() != Some(SCAN_REPORT_ARTIFACT_TYPE) {
                continue;
            }
            let db = record.annotations.get(DATABASE_ANNOTATION);
            if !database.is_empty() && db.map(String::as_str) != Some(database) {
                continue;
            }
            let Some((_, bytes)) = self.meta.manifest_with_bytes(repo, &d)? else {
                continue;
            };
            let Ok(view) = serde_json::from_slice::<ManifestView>(&bytes) else {
                continue;
            };
            let Some(layer) = view
                .layers
                .first()
                .and_then(|l| l.digest.parse::<Digest>().ok())
            else {
                continue;
            };
            if best.as_ref().is_none_or(|(t, _, _)| record.pushed_at >= *t) {
                best = Some((record.pushed_at, d, layer));
            }
        }
        Ok(best.map(|(_, d, l)| (d, l)))
    }

    /// The newest scan report on `digest` in `repo`, as its JSON bytes.
    pub fn scan_report(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Bytes, RegistryError> {
        if self.meta.manifest(repo.as_str(), digest)?.is_none() {
            return Err(RegistryError::ManifestUnknown(digest.to_string()));
        }
        let (_, layer) = self
            .report_from(repo.as_str(), digest, "")?
            .ok_or(RegistryError::NotFound)?;
        let bytes = std::fs::read(self.blobs.blob_path(&layer))?;
        Ok(Bytes::from(bytes))
    }

    /// The layer files of each image `digest` names (itself, or an index's
    /// image children).
    fn images_of(&self, repo: &str, digest: &Digest) -> Result<Vec<Vec<LayerFile>>, String> {
        let view = self.view(repo, digest)?;
        let mut images = vec![];
        if view.config.is_some() {
            images.push(self.layers_of(&view));
        } else {
            for child in &view.manifests {
                let is_attestation = child
                    .platform
                    .as_ref()
                    .and_then(|p| p.get("os"))
                    .and_then(|o| o.as_str())
                    == Some("unknown");
                if is_attestation {
                    continue;
                }
                let d = child.digest.parse::<Digest>().map_err(|e| e.to_string())?;
                let v = self.view(repo, &d)?;
                if v.config
                    .as_ref()
                    .is_some_and(|c| IMAGE_CONFIGS.contains(&c.media_type.as_str()))
                {
                    images.push(self.layers_of(&v));
                }
            }
        }
        Ok(images)
    }

    fn view(&self, repo: &str, digest: &Digest) -> Result<ManifestView, String> {
        let (_, bytes) = self
            .meta
            .manifest_with_bytes(repo, digest)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("manifest {digest} is gone from {repo}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("manifest {digest}: {e}"))
    }

    fn layers_of(&self, view: &ManifestView) -> Vec<LayerFile> {
        view.layers
            .iter()
            .filter_map(|l| {
                let digest = l.digest.parse::<Digest>().ok()?;
                Some(LayerFile {
                    media_type: l.media_type.clone(),
                    path: self.blobs.blob_path(&digest),
                    digest,
                })
            })
            .collect()
    }

    /// Scan one image and attach the report; `None` when there was nothing
    /// to do (no database, already reported, gone).
    async fn scan_one(
        self: &Arc<Self>,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<(String, u64)>>, String> {
        let Some(scanning) = self.scanning.get() else {
            return Ok(None);
        };
        let Some(database) = scanning.scanner.database() else {
            return Ok(None);
        };
        let Some(subject) = self
            .meta
            .manifest(repo, digest)
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        if self
            .report_from(repo, digest, &database)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Ok(None);
        }
        let image = ImageToScan {
            repository: repo.to_owned(),
            digest: digest.clone(),
            images: self.images_of(repo, digest)?,
        };
        let scanner = Arc::clone(&scanning.scanner);
        let outcome = tokio::task::spawn_blocking(move || scanner.scan(&image))
            .await
            .map_err(|e| e.to_string())??;
        let name = RepositoryName::parse(repo).map_err(|e| e.to_string())?;
        let report = self
            .attach(
                &name,
                &Attachment {
                    subject: (digest, &subject.media_type, subject.size),
                    artifact_type: SCAN_REPORT_ARTIFACT_TYPE,
                    layer_media_type: SCAN_REPORT_ARTIFACT_TYPE,
                    content: Bytes::from(outcome.report),
                    annotations: vec![(DATABASE_ANNOTATION, database)],
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        if let Some(key) = &scanning.key {
            let bundle = SigstoreBundle::sign(key, &report.0).map_err(|e| e.to_string())?;
            let bytes = serde_json::to_vec(&bundle).map_err(|e| e.to_string())?;
            self.attach(
                &name,
                &Attachment {
                    subject: (&report.0, OCI_MANIFEST, report.1),
                    artifact_type: BUNDLE_MEDIA_TYPE,
                    layer_media_type: BUNDLE_MEDIA_TYPE,
                    content: Bytes::from(bytes),
                    annotations: vec![
                        ("dev.sigstore.bundle.content", "dsse-envelope".into()),
                        (
                            "dev.sigstore.bundle.predicateType",
                            "https://sigstore.dev/cosign/sign/v1".into(),
                        ),
                    ],
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        Ok(Some(outcome.severities))
    }

    /// Store `content` as a one-layer artifact referring to a subject;
    /// returns the artifact manifest's digest and size.
    async fn attach(
        &self,
        repo: &RepositoryName,
        a: &Attachment<'_>,
    ) -> Result<(Digest, u64), RegistryError> {
        let layer = self.put_blob(repo, a.content.clone()).await?;
        let empty = self.put_blob(repo, Bytes::from_static(b"{}")).await?;
        let created = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let mut annotations = serde_json::Map::new();
        annotations.insert("org.opencontainers.image.created".into(), created.into());
        for (k, v) in &a.annotations {
            annotations.insert((*k).into(), v.clone().into());
        }
        let (subject, subject_type, subject_size) = a.subject;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": a.artifact_type,
            "config": {"mediaType": EMPTY_JSON, "digest": empty.to_string(), "size": 2},
            "layers": [{"mediaType": a.layer_media_type, "digest": layer.to_string(), "size": a.content.len()}],
            "subject": {"mediaType": subject_type, "digest": subject.to_string(), "size": subject_size},
            "annotations": annotations,
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).map_err(std::io::Error::other)?);
        let digest = Digest::sha256_of(&bytes);
        let size = bytes.len() as u64;
        self.put_manifest(
            repo,
            &crate::service::ManifestRef::Digest(digest.clone()),
            Some(OCI_MANIFEST),
            bytes,
            &[],
        )
        .await?;
        Ok((digest, size))
    }

    /// Store `bytes` as a blob of `repo` through the ordinary upload path.
    async fn put_blob(&self, repo: &RepositoryName, bytes: Bytes) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256_of(&bytes);
        if self.meta.repo_blob(repo.as_str(), &digest)?.is_some() {
            return Ok(digest);
        }
        let id = self.start_upload(repo)?;
        self.finish_upload(repo, &id, &digest, None, axum::body::Body::from(bytes))
            .await?;
        Ok(digest)
    }
}

/// One artifact to attach.
struct Attachment<'a> {
    subject: (&'a Digest, &'a str, u64),
    artifact_type: &'a str,
    layer_media_type: &'a str,
    content: Bytes,
    annotations: Vec<(&'static str, String)>,
}

/// Whether a manifest of `media_type` with `bytes` is something to scan:
/// an image (with an image config) or an index of images, and not a
/// referrer or an artifact.
fn scannable(media_type: &str, bytes: &[u8]) -> bool {
    if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&media_type) {
        return false;
    }
    let Ok(view) = serde_json::from_slice::<ManifestView>(bytes) else {
        return false;
    };
    if view.subject.is_some() || view.artifact_type.is_some() {
        return false;
    }
    match &view.config {
        Some(c) => IMAGE_CONFIGS.contains(&c.media_type.as_str()),
        // An index: scannable when it names any manifest.
        None => !view.manifests.is_empty(),
    }
}

/// A `result` label of a scan.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok`, `error` or `dropped` (the queue was full).
    pub result: &'static str,
}

/// A `severity` label of findings.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    /// `CRITICAL`, `HIGH`, `MEDIUM`, `LOW` or `UNKNOWN`.
    pub severity: String,
}

/// What scanning counts (under `plumb_registry_scan_`).
#[derive(Clone, Debug)]
pub struct ScanMetrics {
    /// Scans by result.
    pub scans: Family<ResultLabel, Counter>,
    /// Images waiting.
    pub queue: Gauge,
    /// Time per scan.
    pub duration: Histogram,
    /// Findings reported, by severity.
    pub findings: Family<SeverityLabel, Counter>,
}

impl ScanMetrics {
    /// Register the scan metrics in `registry`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> ScanMetrics {
        let m = ScanMetrics {
            scans: Family::default(),
            queue: Gauge::default(),
            duration: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            findings: Family::default(),
        };
        registry.register("scans", "Image scans, by result", m.scans.clone());
        registry.register(
            "scan_queue",
            "Images waiting to be scanned",
            m.queue.clone(),
        );
        registry.register(
            "scan_duration_seconds",
            "Time to scan one image and attach its report",
            m.duration.clone(),
        );
        registry.register(
            "scan_findings",
            "Findings in attached reports, by severity",
            m.findings.clone(),
        );
        m
    }

    fn queued(&self, delta: i64) {
        self.queue.inc_by(delta);
    }

    fn result(&self, result: &'static str) {
        self.scans.get_or_create(&ResultLabel { result }).inc();
    }

    fn took(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    fn findings(&self, severities: &[(String, u64)]) {
        for (severity, n) in severities {
            self.findings
                .get_or_create(&SeverityLabel {
                    severity: severity.clone(),
                })
                .inc_by(*n);
        }
    }
}
