//! The scanner `plumb registry serve` gives its registry when `scan.on_push`
//! is set: plumb-scan's extractors over the layer files in the registry's
//! store, matched against the advisory store `scan.advisories` names. A new
//! `plumb advisories import` into that directory replaces the store's file;
//! the scanner notices (by the file's identity), reopens it, and the
//! registry rescans every image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use plumb_registry::scan::{ImageScanner, ImageToScan, ScanOutcome, Scanning};
use plumb_registry::{Registry, RegistryConfig};
use plumb_scan::advisories::AdvisoryStore;

/// What identifies one imported store file: an import writes a new file and
/// renames it into place.
type Stamp = (u64, u64, std::time::SystemTime);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()?))
}

/// plumb-scan over an advisory store directory.
pub struct StoreScanner {
    dir: PathBuf,
    open: Mutex<Option<(Stamp, Arc<AdvisoryStore>)>>,
}

impl StoreScanner {
    /// A scanner reading the store imported into `dir`.
    pub fn new(dir: PathBuf) -> StoreScanner {
        StoreScanner {
            dir,
            open: Mutex::new(None),
        }
    }

    /// The store in force, reopened when a new import replaced it.
    fn current(&self) -> Option<Arc<AdvisoryStore>> {
        let file = self.dir.join(plumb_scan::advisories::STORE_FILE);
        let now = stamp(&file)?;
        let mut open = self.open.lock().ok()?;
        if let Some((s, store)) = open.as_ref()
            && *s == now
        {
            return Some(Arc::clone(store));
        }
        match AdvisoryStore::open(&self.dir) {
            Ok(store) => {
                let store = Arc::new(store);
                *open = Some((now, Arc::clone(&store)));
                Some(store)
            }
            Err(e) => {
                tracing::warn!(error = %e, "advisory store unreadable; keeping the previous one");
                open.as_ref().map(|(_, s)| Arc::clone(s))
            }
        }
    }
}

impl ImageScanner for StoreScanner {
    fn database(&self) -> Option<String> {
        self.current().map(|s| s.meta().digest.clone())
    }

    fn scan(&self, image: &ImageToScan) -> Result<ScanOutcome, String> {
        let store = self
            .current()
            .ok_or_else(|| format!("no advisory store in {}", self.dir.display()))?;
        let subject = format!("{}@{}", image.repository, image.digest);
        let mut merged: Option<plumb_scan::ScanDocument> = None;
        for layers in &image.images {
            let files: Vec<(String, PathBuf)> = layers
                .iter()
                .map(|l| (l.digest.to_string(), l.path.clone()))
                .collect();
            let sbom = plumb_scan::read_layer_files(
                subject.clone(),
                Some(image.digest.to_string()),
                &files,
            )
            .map_err(|e| e.to_string())?;
            let doc = plumb_scan::scan(&sbom, &store).map_err(|e| e.to_string())?;
            merged = Some(match merged {
                None => doc,
                Some(mut m) => {
                    // Each platform image adds what the others lack.
                    for f in doc.report.findings {
                        if !m.report.findings.iter().any(|g| {
                            g.id == f.id && g.package == f.package && g.version == f.version
                        }) {
                            m.report.findings.push(f);
                        }
                    }
                    m.subject.packages += doc.subject.packages;
                    m
                }
            });
        }
        let doc = merged.ok_or_else(|| "the manifest names no image to scan".to_string())?;
        let mut severities: BTreeMap<String, u64> = BTreeMap::new();
        for f in &doc.report.findings {
            *severities.entry(f.severity.to_string()).or_default() += 1;
        }
        Ok(ScanOutcome {
            report: serde_json::to_vec(&doc).map_err(|e| e.to_string())?,
            severities: severities.into_iter().collect(),
        })
    }
}

/// Start scanning on `registry` when its configuration asks for it; the
/// signing key's password comes from `COSIGN_PASSWORD`.
pub fn start(registry: &Arc<Registry>, config: &RegistryConfig) -> Result<(), String> {
    let settings = &config.scan;
    if !settings.on_push {
        return Ok(());
    }
    let dir = settings.advisories.clone().ok_or_else(|| {
        "scan.on_push needs scan.advisories: the directory `plumb advisories import --data-dir` wrote"
            .to_string()
    })?;
    let key = match &settings.sign_key {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("scan.sign_key {}: {e}", path.display()))?;
            let password = std::env::var("COSIGN_PASSWORD").unwrap_or_default();
            Some(
                plumb_oci::cosign::CosignSigningKey::from_pem(&text, password.as_bytes())
                    .map_err(|e| format!("scan.sign_key {}: {e}", path.display()))?,
            )
        }
    };
    let scanner = Arc::new(StoreScanner::new(dir));
    registry
        .start_scanning(Scanning::new(scanner, key, settings.queue))
        .map_err(|e| e.to_string())
}
