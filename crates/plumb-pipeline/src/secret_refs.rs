//! The references stage: Secrets whose `plumb.dev/secret-ref…` annotations
//! name values kept in Vault, in another Kubernetes Secret or in a file get
//! those values filled in, after the checks and before the engine.
//!
//! The values exist only in the prepared objects in memory: they are never
//! rendered, cached, logged or stored, and the engine's diff masks Secret
//! data, so what a diff shows of them is the hash annotation
//! ([`HASH_ANNOTATION`](plumb_secrets::refs::HASH_ANNOTATION)). Resolution
//! runs on every prepare, so a value rotated at its source reaches the
//! cluster on the next reconcile.
//!
//! `k8s://` reads go to the Application's destination cluster. A Secret may
//! copy another namespace's Secret only when that Secret lists the copying
//! namespace in `plumb.dev/secret-ref-allowed-namespaces`: committing to one
//! tenant's repository must not be a way to read another tenant's Secrets.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use plumb_model::Application;
use plumb_render::Rendered;
use plumb_secrets::refs::{
    self, ALLOWED_NAMESPACES_ANNOTATION, FileRoots, RefError, Source, Values, Vault, Wanted,
};
use zeroize::Zeroizing;

use crate::{Clusters, PipelineError};

/// Where references may be resolved from.
#[derive(Clone, Default)]
pub struct SecretRefs {
    files: FileRoots,
    vault: Option<Arc<Vault>>,
}

impl std::fmt::Debug for SecretRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRefs")
            .field("files", &self.files)
            .field("vault", &self.vault)
            .finish()
    }
}

impl SecretRefs {
    /// `file://` under `files`, and `vault://` through `vault` when given;
    /// `k8s://` always (from the destination cluster).
    pub fn new(files: FileRoots, vault: Option<Vault>) -> SecretRefs {
        SecretRefs {
            files,
            vault: vault.map(Arc::new),
        }
    }

    /// Fill every Secret of `rendered` that has references.
    pub(crate) async fn resolve(
        &self,
        app: &Application,
        rendered: &mut Rendered,
        clusters: Option<&Clusters>,
    ) -> Result<(), PipelineError> {
        let mut client = None;
        for manifest in &mut rendered.manifests {
            if !refs::has_refs(&manifest.object) {
                continue;
            }
            let origin = manifest.origin.clone();
            let fail = |e: RefError| PipelineError::SecretRef {
                origin: origin.clone(),
                source: e,
            };
            let namespace = manifest
                .object
                .pointer("/metadata/namespace")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .or_else(|| app.spec.destination.namespace.clone())
                .unwrap_or_else(|| "default".to_string());
            let mut filled = Values::new();
            for wanted in refs::wanted(&manifest.object).map_err(fail)? {
                let fields = match &wanted.reference.source {
                    Source::File { path } => self.files.read(path, &wanted).map_err(fail)?,
                    Source::Vault { path } => {
                        let Some(vault) = &self.vault else {
                            return Err(fail(RefError {
                                reference: wanted.reference.uri.clone(),
                                message: "no Vault is configured (--vault-addr, or VAULT_ADDR)"
                                    .into(),
                            }));
                        };
                        vault
                            .read(path, &wanted.reference.uri)
                            .await
                            .map_err(fail)?
                    }
                    Source::Kubernetes {
                        namespace: source_namespace,
                        name,
                    } => {
                        if client.is_none() {
                            let Some(clusters) = clusters else {
                                return Err(fail(RefError {
                                    reference: wanted.reference.uri.clone(),
                                    message: "this command cannot read Kubernetes Secrets".into(),
                                }));
                            };
                            client = Some(clusters.get(&app.spec.destination).await?);
                        }
                        let Some(cluster) = &client else {
                            continue;
                        };
                        let from = source_namespace.as_deref().unwrap_or(&namespace);
                        read_secret(cluster.client(), from, name, &namespace, &wanted)
                            .await
                            .map_err(fail)?
                    }
                };
                for (key, value) in refs::select(&wanted, fields).map_err(fail)? {
                    if filled.contains_key(&key) {
                        return Err(fail(RefError {
                            reference: wanted.annotation.clone(),
                            message: format!("key {key} is filled by another reference too"),
                        }));
                    }
                    filled.insert(key, value);
                }
            }
            refs::fill(&mut manifest.object, &filled).map_err(fail)?;
        }
        Ok(())
    }
}

/// The data of Secret `namespace/name`, when Secrets in `into` may copy it.
async fn read_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    into: &str,
    wanted: &Wanted,
) -> Result<Values, RefError> {
    let uri = wanted.reference.uri.as_str();
    let fail = |m: String| RefError {
        reference: uri.to_string(),
        message: m,
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get(name).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => fail(format!("no Secret {namespace}/{name}")),
        kube::Error::Api(s) if s.code == 403 => {
            fail(format!("not allowed to read Secret {namespace}/{name}"))
        }
        other => fail(format!("cannot read Secret {namespace}/{name}: {other}")),
    })?;
    if namespace != into {
        let allowed = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ALLOWED_NAMESPACES_ANNOTATION))
            .is_some_and(|list| {
                list.split(',')
                    .map(str::trim)
                    .any(|n| n == "*" || n == into)
            });
        if !allowed {
            return Err(fail(format!(
                "Secret {namespace}/{name} does not allow namespace {into} to copy it (annotation {ALLOWED_NAMESPACES_ANNOTATION} on it)"
            )));
        }
    }
    let mut out = Values::new();
    for (k, v) in secret.data.unwrap_or_default() {
        out.insert(k, Zeroizing::new(v.0));
    }
    for (k, v) in secret.string_data.unwrap_or_default() {
        out.insert(k, Zeroizing::new(v.into_bytes()));
    }
    Ok(out)
}
