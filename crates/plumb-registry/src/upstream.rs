//! The state of the pull-through caches: one upstream client per `proxy`
//! entry (with its credentials and CA, read when the registry opens), when
//! each cached tag was last checked upstream, and the blob fetches in flight.
//! What the caches do with it is [`crate::proxy`]'s.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use plumb_oci::client::{ClientError, ClientOptions, Credentials, RegistryClient};
use plumb_oci::{Digest, RepositoryName};

use crate::config::{ProxyCredentials, ProxyRule};

/// Why a pull-through cache cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Credentials that cannot be read.
    #[error("proxy {prefix:?}: {message}")]
    Credentials {
        /// The entry's prefix.
        prefix: String,
        /// What is wrong (never the secret).
        message: String,
    },
    /// The upstream client cannot be made (an unreadable CA, say).
    #[error("proxy {prefix:?}: {source}")]
    Client {
        /// The entry's prefix.
        prefix: String,
        /// Why.
        source: ClientError,
    },
}

/// One upstream and the client that speaks to it.
pub(crate) struct Upstream {
    pub(crate) rule: ProxyRule,
    pub(crate) client: RegistryClient,
}

/// How the one fetch of a blob ended, as its waiters learn it.
pub(crate) type FetchOutcome = Option<std::result::Result<(), String>>;

/// The pull-through caches of a registry.
pub struct Proxy {
    upstreams: Vec<Upstream>,
    /// When each cached `repo\0tag` was last checked upstream.
    checked: Mutex<HashMap<String, Instant>>,
    /// Blobs being fetched, and how their fetch ends.
    pub(crate) inflight: Mutex<HashMap<Digest, tokio::sync::watch::Receiver<FetchOutcome>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<&str> = self
            .upstreams
            .iter()
            .map(|u| u.rule.prefix.as_str())
            .collect();
        f.debug_struct("Proxy")
            .field("prefixes", &prefixes)
            .finish()
    }
}

/// The credentials `rule` presents upstream, read now.
fn credentials(rule: &ProxyRule) -> std::result::Result<Option<Credentials>, ProxyError> {
    let fail = |message: String| ProxyError::Credentials {
        prefix: rule.prefix.clone(),
        message,
    };
    Ok(match &rule.credentials {
        ProxyCredentials::Anonymous => None,
        ProxyCredentials::Password { username, password } => Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }),
        ProxyCredentials::PasswordFile { username, path } => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| fail(format!("cannot read password_file {}: {e}", path.display())))?;
            let password = text.trim_end_matches(['\n', '\r']).to_owned();
            if password.is_empty() {
                return Err(fail(format!("password_file {} is empty", path.display())));
            }
            Some(Credentials {
                username: username.clone(),
                password,
            })
        }
        ProxyCredentials::DockerConfig { path, entry } => {
            let key = entry.as_deref().unwrap_or(&rule.host);
            Some(Credentials::from_docker_config(path, key).ok_or_else(|| {
                fail(format!(
                    "{} has no usable auths entry {key:?} (an `auth` of base64 user:password)",
                    path.display()
                ))
            })?)
        }
    })
}

impl Proxy {
    /// Clients for every rule (credentials and CA files are read now). The
    /// process's rustls crypto provider must be installed.
    pub fn new(rules: &[ProxyRule]) -> std::result::Result<Self, ProxyError> {
        let mut upstreams = vec![];
        for rule in rules {
            let client = RegistryClient::new(ClientOptions {
                plain_http: Some(rule.plain_http),
                credentials: credentials(rule)?,
                ca_file: rule.ca.clone(),
            })
            .map_err(|source| ProxyError::Client {
                prefix: rule.prefix.clone(),
                source,
            })?;
            upstreams.push(Upstream {
                rule: rule.clone(),
                client,
            });
        }
        Ok(Proxy {
            upstreams,
            checked: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// The upstream mirrored by `repo` and the upstream repository's name.
    pub(crate) fn upstream_for(
        &self,
        repo: &RepositoryName,
    ) -> Option<(&Upstream, RepositoryName)> {
        self.upstreams.iter().find_map(|u| {
            let name = u.rule.upstream_name(repo.as_str())?;
            Some((u, RepositoryName::parse(name).ok()?))
        })
    }

    pub(crate) fn fresh(&self, key: &str, ttl: std::time::Duration) -> bool {
        self.checked
            .lock()
            .ok()
            .and_then(|m| m.get(key).map(|t| t.elapsed() < ttl))
            .unwrap_or(false)
    }

    pub(crate) fn mark_checked(&self, key: String) {
        if let Ok(mut m) = self.checked.lock() {
            m.insert(key, Instant::now());
        }
    }
}
