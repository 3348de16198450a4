//! `vault://` references: reads from HashiCorp Vault (or an API-compatible
//! server) over its HTTP API, with a token or Kubernetes auth.
//!
//! `vault://kv/data/app#password` reads `GET {addr}/v1/kv/data/app`; a KV v2
//! answer's fields are under `data.data`, a KV v1 (or any other engine's)
//! under `data`. Kubernetes auth logs in at `POST /v1/auth/{mount}/login` with
//! the service account token read from a file, keeps the client token until
//! its lease runs out, and logs in again once when Vault says 403.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use super::{RefError, Values, json_fields};

/// How plumb proves itself to Vault.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token (`VAULT_TOKEN`).
    Token(SecretString),
    /// Kubernetes auth: a role, the auth mount, and the service account
    /// token file.
    Kubernetes {
        /// The Vault role.
        role: String,
        /// The mount of the auth method (`kubernetes`).
        mount: String,
        /// The service account token (JWT) file.
        jwt_file: PathBuf,
    },
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token(..)"),
            VaultAuth::Kubernetes { role, mount, .. } => f
                .debug_struct("Kubernetes")
                .field("role", role)
                .field("mount", mount)
                .finish_non_exhaustive(),
        }
    }
}

/// Where Vault is and how to log in.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `http(s)://host:port`, without `/v1`.
    pub addr: String,
    /// Authentication.
    pub auth: VaultAuth,
    /// A Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// How long one request may take.
    pub timeout: Duration,
    /// Extra PEM CA certificates to trust for Vault's TLS (`VAULT_CACERT`).
    pub ca_pem: Option<Vec<u8>>,
}

/// A Vault client.
pub struct Vault {
    config: VaultConfig,
    http: reqwest::Client,
    token: Mutex<Option<(SecretString, Option<Instant>)>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("addr", &self.config.addr)
            .field("auth", &self.config.auth)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// A client for `config` (no request is made yet).
    pub fn new(config: VaultConfig) -> Result<Vault, RefError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("plumb/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                RefError::new(&config.addr, format!("the Vault CA file is not PEM: {e}"))
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| RefError::new(&config.addr, format!("cannot make an HTTP client: {e}")))?;
        Ok(Vault {
            config,
            http,
            token: Mutex::new(None),
        })
    }

    /// The fields at `path` (`kv/data/app`).
    pub async fn read(&self, path: &str, uri: &str) -> Result<Values, RefError> {
        let mut relogged = false;
        loop {
            let token = self.token(uri).await?;
            let url = format!("{}/v1/{}", self.config.addr.trim_end_matches('/'), path);
            let mut req = self
                .http
                .get(&url)
                .header("X-Vault-Token", token.expose_secret());
            if let Some(ns) = &self.config.namespace {
                req = req.header("X-Vault-Namespace", ns);
            }
            let resp = req.send().await.map_err(|e| {
                RefError::new(
                    uri,
                    format!(
                        "cannot reach Vault at {}: {}",
                        self.config.addr,
                        without_url(&e)
                    ),
                )
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::FORBIDDEN
                && !relogged
                && matches!(self.config.auth, VaultAuth::Kubernetes { .. })
            {
                // The token may have expired early: log in once more.
                *self.token.lock().await = None;
                relogged = true;
                continue;
            }
            match status.as_u16() {
                200 => {}
                403 => {
                    return Err(RefError::new(
                        uri,
                        "Vault refused the read (403): check the token's policy",
                    ));
                }
                404 => return Err(RefError::new(uri, "Vault has no secret at this path (404)")),
                other => {
                    return Err(RefError::new(
                        uri,
                        format!("Vault answered {other}{}", vault_errors(resp).await),
                    ));
                }
            }
            let body: Value = resp
                .json()
                .await
                .map_err(|_| RefError::new(uri, "Vault's answer is not JSON"))?;
            let data = body
                .get("data")
                .ok_or_else(|| RefError::new(uri, "Vault's answer has no data"))?;
            // KV v2 nests the fields under data.data, next to data.metadata.
            let fields = match (data.get("data"), data.get("metadata")) {
                (Some(inner @ Value::Object(_)), Some(_)) => inner,
                (Some(Value::Null), Some(_)) => {
                    return Err(RefError::new(
                        uri,
                        "the secret's current version is deleted",
                    ));
                }
                _ => data,
            };
            return json_fields(fields, uri);
        }
    }

    async fn token(&self, uri: &str) -> Result<SecretString, RefError> {
        let (role, mount, jwt_file) = match &self.config.auth {
            VaultAuth::Token(t) => return Ok(t.clone()),
            VaultAuth::Kubernetes {
                role,
                mount,
                jwt_file,
            } => (role, mount, jwt_file),
        };
        let mut cached = self.token.lock().await;
        if let Some((token, expiry)) = cached.as_ref()
            && expiry.is_none_or(|e| Instant::now() < e)
        {
            return Ok(token.clone());
        }
        let jwt = std::fs::read_to_string(jwt_file).map_err(|e| {
            RefError::new(
                uri,
                format!(
                    "cannot read the service account token {}: {e}",
                    jwt_file.display()
                ),
            )
        })?;
        let url = format!(
            "{}/v1/auth/{}/login",
            self.config.addr.trim_end_matches('/'),
            mount.trim_matches('/')
        );
        let mut req = self
            .http
            .post(&url)
            .json(&serde_json::json!({ "role": role, "jwt": jwt.trim() }));
        if let Some(ns) = &self.config.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        let resp = req.send().await.map_err(|e| {
            RefError::new(
                uri,
                format!(
                    "cannot reach Vault at {}: {}",
                    self.config.addr,
                    without_url(&e)
                ),
            )
        })?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            return Err(RefError::new(
                uri,
                format!(
                    "Vault refused the Kubernetes login for role {role} at auth/{mount} ({status}{})",
                    vault_errors(resp).await
                ),
            ));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|_| RefError::new(uri, "Vault's login answer is not JSON"))?;
        let token = body
            .pointer("/auth/client_token")
            .and_then(Value::as_str)
            .ok_or_else(|| RefError::new(uri, "Vault's login answer has no client token"))?;
        let lease = body
            .pointer("/auth/lease_duration")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0)
            // Renew a little before the lease runs out.
            .map(|s| Instant::now() + Duration::from_secs(s.saturating_sub(s / 10 + 1)));
        let token = SecretString::from(token.to_string());
        *cached = Some((token.clone(), lease));
        Ok(token)
    }
}

/// Vault's `errors` list, as `: a; b` (at most 300 characters). Vault's
/// errors describe requests (permission denied, role not found); they hold
/// no secret values.
async fn vault_errors(resp: reqwest::Response) -> String {
    let Ok(body) = resp.json::<Value>().await else {
        return String::new();
    };
    let errors: Vec<&str> = body
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        return String::new();
    }
    let text: String = errors.join("; ").chars().take(300).collect();
    format!(": {text}")
}

/// A reqwest error's gist, without its URL (ours anyway) or any body.
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return "connection failed".into();
    }
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "…");
    }
    s
}
