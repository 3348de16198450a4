//! What the gate asks registries, and what it remembers of the answers.
//!
//! One client per registry host, each with the credentials the caller's
//! lookup finds for that host (a docker `config.json`, plumb's variables).
//! A tag is resolved to its digest on every evaluation, so a re-tag is seen
//! at once; what is proven about a digest is remembered: a signature that
//! verified under a policy's keys for good (a digest's content cannot
//! change), a scan report for a few minutes (a rescan may attach a newer
//! one). Failures are never remembered, and every failure is an answer the
//! gate refuses on: an unreachable registry admits nothing. With a cache
//! directory, proven signatures also outlive the process (one empty file
//! per digest and key set), so `plumb sync` runs warm like the agent.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plumb_oci::client::{ClientOptions, Credentials, RegistryClient};
use plumb_oci::cosign::CosignPublicKey;
use plumb_oci::signing::{SignatureFormat, SignatureSearch};
use plumb_oci::{Digest, Reference};

use crate::image::ImageName;
use crate::report::{SCAN_REPORT_ARTIFACT_TYPE, SCAN_REPORT_MEDIA_TYPE, ScanReport};

/// How long a scan report is reused before it is looked up again.
const SCAN_TTL: Duration = Duration::from_secs(300);

/// Finds the credentials for a registry host.
pub type CredentialLookup = Arc<dyn Fn(&str) -> Option<Credentials> + Send + Sync>;

/// How to reach registries.
#[derive(Clone)]
pub struct RegistryAccess {
    /// Force plain HTTP (true) or HTTPS (false); `None`: HTTP for loopback hosts only.
    pub plain_http: Option<bool>,
    /// An extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Credentials per registry host.
    pub credentials: CredentialLookup,
}

impl Default for RegistryAccess {
    fn default() -> RegistryAccess {
        RegistryAccess {
            plain_http: None,
            ca_file: None,
            credentials: Arc::new(|_| None),
        }
    }
}

impl std::fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAccess")
            .field("plain_http", &self.plain_http)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The registries the gate talks to, and what it has proven.
pub struct Registries {
    access: RegistryAccess,
    clients: Mutex<HashMap<String, RegistryClient>>,
    /// (repository@digest, key-set fingerprint) whose signature verified.
    signed: Mutex<HashSet<(String, String)>>,
    /// Where proven signatures are also written down, if anywhere.
    cache_dir: Option<PathBuf>,
    /// repository@digest → (when, newest report).
    scans: Mutex<HashMap<String, (Instant, Option<ScanReport>)>>,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Registries {
    /// Registries reached with `access`.
    pub fn new(access: RegistryAccess) -> Registries {
        Registries {
            access,
            clients: Mutex::new(HashMap::new()),
            signed: Mutex::new(HashSet::new()),
            scans: Mutex::new(HashMap::new()),
            cache_dir: None,
        }
    }

    /// Also remember proven signatures under `dir`, across processes.
    pub fn with_cache_dir(mut self, dir: PathBuf) -> Registries {
        self.cache_dir = Some(dir);
        self
    }

    /// The marker file of a proven (digest, key set), when there is a cache dir.
    fn marker(&self, key: &(String, String)) -> Option<PathBuf> {
        let name = Digest::sha256_of(format!("{}\n{}", key.0, key.1).as_bytes());
        Some(self.cache_dir.as_ref()?.join("signed").join(name.hex()))
    }

    fn proven(&self, key: &(String, String)) -> bool {
        if lock(&self.signed).contains(key) {
            return true;
        }
        let on_disk = self.marker(key).is_some_and(|m| m.is_file());
        if on_disk {
            lock(&self.signed).insert(key.clone());
        }
        on_disk
    }

    /// How registries are reached.
    pub fn access(&self) -> &RegistryAccess {
        &self.access
    }

    fn client(&self, host: &str) -> Result<RegistryClient, String> {
        if let Some(c) = lock(&self.clients).get(host) {
            return Ok(c.clone());
        }
        let plain_http = self
            .access
            .plain_http
            .or(plumb_oci::client::is_loopback(host).then_some(true));
        let client = RegistryClient::new(ClientOptions {
            plain_http,
            credentials: (self.access.credentials)(host),
            ca_file: self.access.ca_file.clone(),
        })
        .map_err(|e| format!("cannot make a client for {host}: {e}"))?;
        lock(&self.clients).insert(host.to_string(), client.clone());
        Ok(client)
    }

    fn reference(image: &ImageName) -> Result<Reference, String> {
        image.reference().map_err(|e| e.message)
    }

    /// The digest `image` names now: the written digest, else the tag's.
    pub async fn resolve(&self, image: &ImageName) -> Result<Digest, String> {
        if let Some(d) = &image.digest {
            return Ok(d.clone());
        }
        let reference = Self::reference(image)?;
        let client = self.client(&reference.registry)?;
        match client
            .manifest_head(
                &reference.registry,
                &reference.repository,
                &reference.manifest_key(),
            )
            .await
        {
            Ok(Some((digest, _, _))) => Ok(digest),
            Ok(None) => Err(format!("{} is not in the registry", image.written)),
            Err(e) => Err(format!(
                "registry {} could not be asked: {e}",
                image.registry
            )),
        }
    }

    /// The signatures on `digest` checked against `keys`; `None` when a
    /// signature that passes the rule named by `fingerprint` was already
    /// proven for it (see [`Registries::remember_signed`]).
    pub async fn signatures(
        &self,
        image: &ImageName,
        digest: &Digest,
        keys: &[CosignPublicKey],
        fingerprint: &str,
    ) -> Result<Option<SignatureSearch>, String> {
        let key = (
            format!("{}@{digest}", image.repository_ref()),
            fingerprint.to_string(),
        );
        if self.proven(&key) {
            return Ok(None);
        }
        let reference = Self::reference(image)?.with_digest(digest.clone());
        let client = self.client(&reference.registry)?;
        let search = plumb_oci::signing::signatures(
            &client,
            &reference,
            digest,
            keys,
            SignatureFormat::Both,
        )
        .await
        .map_err(|e| {
            format!(
                "registry {} could not be asked for signatures: {e}",
                image.registry
            )
        })?;
        Ok(Some(search))
    }

    /// Remember that `digest` carries a signature that passes the rule named
    /// by `fingerprint` (a digest's content never changes).
    pub fn remember_signed(&self, image: &ImageName, digest: &Digest, fingerprint: &str) {
        let key = (
            format!("{}@{digest}", image.repository_ref()),
            fingerprint.to_string(),
        );
        if let Some(marker) = self.marker(&key)
            && let Some(dir) = marker.parent()
            && let Err(e) = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&marker, b""))
        {
            // Only a cache: the next run verifies again.
            tracing::debug!(error = %e, "cannot write the signature cache");
        }
        lock(&self.signed).insert(key);
    }

    /// The newest scan report attached to `digest`, if any.
    pub async fn scan_report(
        &self,
        image: &ImageName,
        digest: &Digest,
    ) -> Result<Option<ScanReport>, String> {
        let key = format!("{}@{digest}", image.repository_ref());
        if let Some((at, report)) = lock(&self.scans).get(&key)
            && at.elapsed() < SCAN_TTL
        {
            return Ok(report.clone());
        }
        let report = self.fetch_scan_report(image, digest).await?;
        lock(&self.scans).insert(key, (Instant::now(), report.clone()));
        Ok(report)
    }

    async fn fetch_scan_report(
        &self,
        image: &ImageName,
        digest: &Digest,
    ) -> Result<Option<ScanReport>, String> {
        let reference = Self::reference(image)?;
        let client = self.client(&reference.registry)?;
        let asked = |e: &dyn std::fmt::Display| {
            format!(
                "registry {} could not be asked for scan reports: {e}",
                image.registry
            )
        };
        let (registry, repo) = (&reference.registry, &reference.repository);
        let mut referrers = client
            .referrers(registry, repo, digest, Some(SCAN_REPORT_ARTIFACT_TYPE))
            .await
            .map_err(|e| asked(&e))?;
        let created = |d: &serde_json::Value| {
            d["annotations"]["org.opencontainers.image.created"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        referrers.sort_by_key(|d| std::cmp::Reverse(created(d)));
        let Some(newest) = referrers.first() else {
            return Ok(None);
        };
        let Some(carrier) = newest["digest"].as_str() else {
            return Err(asked(&"a referrer without a digest"));
        };
        let manifest = client
            .manifest_get(registry, repo, carrier)
            .await
            .map_err(|e| asked(&e))?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest.bytes).map_err(|e| asked(&e))?;
        let layer = manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["mediaType"].as_str() == Some(SCAN_REPORT_MEDIA_TYPE))
            .and_then(|l| l["digest"].as_str())
            .and_then(|d| d.parse::<Digest>().ok())
            .ok_or_else(|| asked(&format!("scan report {carrier} has no report layer")))?;
        let bytes = client
            .blob_get(registry, repo, &layer)
            .await
            .map_err(|e| asked(&e))?;
        let report: ScanReport = serde_json::from_slice(&bytes)
            .map_err(|e| format!("scan report {carrier} does not parse: {e}"))?;
        Ok(Some(report))
    }
}
