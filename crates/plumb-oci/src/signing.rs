//! Signing and verifying artifacts in a registry, the way cosign does.
//!
//! [`sign`] attaches a key-based signature to a manifest in one or both of
//! cosign's formats: a simple-signing layer on the `sha256-<hex>.sig` tag
//! (appended to the signatures already there), or a Sigstore bundle pushed as
//! an OCI referrer whose `subject` is the signed manifest. [`verify`] looks in
//! both places and reports each signature that checks out under the key.
//! No transparency log is written or read: these are key-based signatures.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use oci_spec::image::{DescriptorBuilder, ImageManifest, ImageManifestBuilder, MediaType};

use crate::client::{ClientError, RegistryClient};
use crate::cosign::{
    BUNDLE_MEDIA_TYPE, BUNDLE_PREDICATE_ANNOTATION, CosignPublicKey, CosignSigningKey, KeyError,
    SIGN_PREDICATE_TYPE, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE, SigstoreBundle,
    SimpleSigningPayload, verify_simple_signing,
};
use crate::digest::Digest;
use crate::manifest::{EMPTY_JSON, OCI_MANIFEST, canonical_json};
use crate::reference::Reference;

/// Where a signature lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureFormat {
    /// A Sigstore bundle referrer (cosign v3's default).
    Bundle,
    /// A simple-signing layer on the `sha256-<hex>.sig` tag (cosign's classic format).
    Tag,
    /// Both.
    Both,
}

/// Why signing or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// Registry trouble.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Key trouble.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The reference names nothing.
    #[error("{0} does not exist in the registry")]
    NotFound(String),
    /// Building a manifest failed.
    #[error("cannot build the signature manifest: {0}")]
    Build(String),
}

fn build_err(e: impl std::fmt::Display) -> SigningError {
    SigningError::Build(e.to_string())
}

/// A signature that was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WrittenSignature {
    /// Its format.
    pub format: SignatureFormat,
    /// Where: the `.sig` tag or the referrer manifest digest.
    pub location: String,
}

/// The outcome of [`sign`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignReport {
    /// The signed manifest.
    pub digest: Digest,
    /// What was written.
    pub signatures: Vec<WrittenSignature>,
}

/// A signature that verified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifiedSignature {
    /// Its format.
    pub format: SignatureFormat,
    /// The manifest that carries it (the `.sig` tag's or the referrer's digest).
    pub carrier: Digest,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// The manifest whose signatures were checked.
    pub digest: Digest,
    /// Signatures by the key.
    pub verified: Vec<VerifiedSignature>,
    /// Signatures found that are not by the key (or do not name the digest).
    pub rejected: usize,
}

async fn resolve(
    client: &RegistryClient,
    reference: &Reference,
) -> Result<(Digest, String, u64), SigningError> {
    client
        .manifest_head(
            &reference.registry,
            &reference.repository,
            &reference.manifest_key(),
        )
        .await?
        .ok_or_else(|| SigningError::NotFound(reference.to_string()))
}

/// `created` as the bundle referrer records it: the time given in seconds
/// since the epoch (`SOURCE_DATE_EPOCH`), else now.
fn created_at(source_date_epoch: Option<i64>) -> String {
    source_date_epoch
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or_else(jiff::Timestamp::now)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Sign the manifest `reference` points at with `key`. A bundle referrer
/// records `source_date_epoch` (seconds; the caller's `SOURCE_DATE_EPOCH`)
/// as its creation time, or the current time when there is none.
pub async fn sign(
    client: &RegistryClient,
    reference: &Reference,
    key: &CosignSigningKey,
    format: SignatureFormat,
    source_date_epoch: Option<i64>,
) -> Result<SignReport, SigningError> {
    let (digest, media_type, size) = resolve(client, reference).await?;
    let mut signatures = vec![];
    if matches!(format, SignatureFormat::Tag | SignatureFormat::Both) {
        let tag = sign_tag(client, reference, key, &digest).await?;
        signatures.push(WrittenSignature {
            format: SignatureFormat::Tag,
            location: tag,
        });
    }
    if matches!(format, SignatureFormat::Bundle | SignatureFormat::Both) {
        let created = created_at(source_date_epoch);
        let d = sign_bundle(client, reference, key, &digest, &media_type, size, &created).await?;
        signatures.push(WrittenSignature {
            format: SignatureFormat::Bundle,
            location: d.to_string(),
        });
    }
    Ok(SignReport { digest, signatures })
}

async fn sign_tag(
    client: &RegistryClient,
    reference: &Reference,
    key: &CosignSigningKey,
    digest: &Digest,
) -> Result<String, SigningError> {
    let (registry, repo) = (&reference.registry, &reference.repository);
    let payload = serde_json::to_vec(&SimpleSigningPayload::new(
        &reference.repository_ref(),
        digest,
    ))
    .map_err(build_err)?;
    let signature = B64.encode(key.sign(&payload));
    let payload_digest = client
        .blob_push(registry, repo, Bytes::from(payload.clone()))
        .await?;

    let tag = digest.cosign_signature_tag();
    let mut layers = vec![];
    if client.manifest_head(registry, repo, &tag).await?.is_some() {
        let existing = client.manifest_get(registry, repo, &tag).await?;
        let m: ImageManifest = serde_json::from_slice(&existing.bytes).map_err(build_err)?;
        layers = m.layers().clone();
    }
    let already = layers.iter().any(|l| {
        l.digest().to_string() == payload_digest.to_string()
            && l.annotations()
                .as_ref()
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .is_some_and(|s| s == &signature)
    });
    if !already {
        let layer = DescriptorBuilder::default()
            .media_type(MediaType::Other(SIMPLE_SIGNING_MEDIA_TYPE.into()))
            .digest(payload_digest.to_oci().map_err(build_err)?)
            .size(payload.len() as u64)
            .annotations(
                [(SIGNATURE_ANNOTATION.to_owned(), signature)]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .map_err(build_err)?;
        layers.push(layer);
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest().to_string()).collect();
    let config = serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    });
    let config = serde_json::to_vec(&config).map_err(build_err)?;
    let config_digest = client
        .blob_push(registry, repo, Bytes::from(config.clone()))
        .await?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageConfig)
                .digest(config_digest.to_oci().map_err(build_err)?)
                .size(config.len() as u64)
                .build()
                .map_err(build_err)?,
        )
        .layers(layers)
        .build()
        .map_err(build_err)?;
    let bytes = canonical_json(&manifest).map_err(build_err)?;
    client
        .manifest_put(registry, repo, &tag, OCI_MANIFEST, Bytes::from(bytes))
        .await?;
    Ok(tag)
}

async fn sign_bundle(
    client: &RegistryClient,
    reference: &Reference,
    key: &CosignSigningKey,
    digest: &Digest,
    subject_media_type: &str,
    subject_size: u64,
    created: &str,
) -> Result<Digest, SigningError> {
    let (registry, repo) = (&reference.registry, &reference.repository);
    let bundle = SigstoreBundle::sign(key, digest)?;
    let bundle_bytes = serde_json::to_vec(&bundle).map_err(build_err)?;
    let bundle_digest = client
        .blob_push(registry, repo, Bytes::from(bundle_bytes.clone()))
        .await?;
    let empty = client
        .blob_push(registry, repo, Bytes::from_static(b"{}"))
        .await?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_JSON, "digest": empty.to_string(), "size": 2},
        "layers": [{"mediaType": BUNDLE_MEDIA_TYPE, "digest": bundle_digest.to_string(), "size": bundle_bytes.len()}],
        "subject": {"mediaType": subject_media_type, "digest": digest.to_string(), "size": subject_size},
        "annotations": {
            "org.opencontainers.image.created": created,
            "dev.sigstore.bundle.content": "dsse-envelope",
            BUNDLE_PREDICATE_ANNOTATION: SIGN_PREDICATE_TYPE,
        }
    });
    let bytes = canonical_json(&manifest).map_err(build_err)?;
    let manifest_digest = Digest::sha256_of(&bytes);
    client
        .manifest_put(
            registry,
            repo,
            &manifest_digest.to_string(),
            OCI_MANIFEST,
            Bytes::from(bytes),
        )
        .await?;
    Ok(manifest_digest)
}

/// Check the signatures on the manifest `reference` points at against `key`.
pub async fn verify(
    client: &RegistryClient,
    reference: &Reference,
    key: &CosignPublicKey,
    format: SignatureFormat,
) -> Result<VerifyReport, SigningError> {
    let (digest, _, _) = resolve(client, reference).await?;
    let found = signatures(
        client,
        reference,
        &digest,
        std::slice::from_ref(key),
        format,
    )
    .await?;
    Ok(VerifyReport {
        digest,
        verified: found
            .verified
            .into_iter()
            .map(|s| VerifiedSignature {
                format: s.format,
                carrier: s.carrier,
            })
            .collect(),
        rejected: found.rejected,
    })
}

/// A signature that verified under one of several keys.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyedSignature {
    /// Its format.
    pub format: SignatureFormat,
    /// The manifest that carries it.
    pub carrier: Digest,
    /// Which of the keys signed it (index into the keys given).
    pub key: usize,
    /// The claims signed with it: a simple-signing payload's `optional`
    /// section, or a bundle referrer's manifest annotations (string values
    /// only).
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Every signature on `digest` (in `reference`'s repository) and which of
/// `keys` signed it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SignatureSearch {
    /// Signatures by one of the keys that name the digest.
    pub verified: Vec<KeyedSignature>,
    /// Signatures found that are by none of the keys (or name another digest).
    pub rejected: usize,
}

fn string_claims(
    map: Option<&serde_json::Map<String, serde_json::Value>>,
) -> std::collections::BTreeMap<String, String> {
    map.into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

/// Look for signatures on `digest` in both of cosign's places and check each
/// against every key in `keys`.
pub async fn signatures(
    client: &RegistryClient,
    reference: &Reference,
    digest: &Digest,
    keys: &[CosignPublicKey],
    format: SignatureFormat,
) -> Result<SignatureSearch, SigningError> {
    let (registry, repo) = (&reference.registry, &reference.repository);
    let mut search = SignatureSearch::default();
    let signer = |check: &dyn Fn(&CosignPublicKey) -> bool| keys.iter().position(check);
    if matches!(format, SignatureFormat::Tag | SignatureFormat::Both) {
        let tag = digest.cosign_signature_tag();
        if client.manifest_head(registry, repo, &tag).await?.is_some() {
            let sig_manifest = client.manifest_get(registry, repo, &tag).await?;
            let m: ImageManifest =
                serde_json::from_slice(&sig_manifest.bytes).map_err(build_err)?;
            for layer in m.layers() {
                let Some(sig) = layer
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                else {
                    continue;
                };
                let Ok(layer_digest) = layer.digest().to_string().parse::<Digest>() else {
                    search.rejected += 1;
                    continue;
                };
                let payload = client.blob_get(registry, repo, &layer_digest).await?;
                let by =
                    signer(&|k| verify_simple_signing(k, &payload, sig, digest).unwrap_or(false));
                match by {
                    Some(key) => {
                        let claims = serde_json::from_slice::<SimpleSigningPayload>(&payload)
                            .ok()
                            .and_then(|p| p.optional);
                        search.verified.push(KeyedSignature {
                            format: SignatureFormat::Tag,
                            carrier: sig_manifest.digest.clone(),
                            key,
                            annotations: string_claims(claims.as_ref()),
                        });
                    }
                    None => search.rejected += 1,
                }
            }
        }
    }
    if matches!(format, SignatureFormat::Bundle | SignatureFormat::Both) {
        for d in client
            .referrers(registry, repo, digest, Some(BUNDLE_MEDIA_TYPE))
            .await?
        {
            let Some(carrier) = d["digest"].as_str().and_then(|s| s.parse::<Digest>().ok()) else {
                continue;
            };
            let m = client
                .manifest_get(registry, repo, &carrier.to_string())
                .await?;
            let Ok(m) = serde_json::from_slice::<ImageManifest>(&m.bytes) else {
                search.rejected += 1;
                continue;
            };
            let claims: std::collections::BTreeMap<String, String> = m
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect();
            for layer in m.layers() {
                if layer.media_type().to_string() != BUNDLE_MEDIA_TYPE {
                    continue;
                }
                let Ok(layer_digest) = layer.digest().to_string().parse::<Digest>() else {
                    continue;
                };
                let bytes = client.blob_get(registry, repo, &layer_digest).await?;
                let bundle = serde_json::from_slice::<SigstoreBundle>(&bytes).ok();
                let by = bundle.and_then(|b| signer(&|k| b.verify(k, digest).unwrap_or(false)));
                match by {
                    Some(key) => search.verified.push(KeyedSignature {
                        format: SignatureFormat::Bundle,
                        carrier: carrier.clone(),
                        key,
                        annotations: claims.clone(),
                    }),
                    None => search.rejected += 1,
                }
            }
        }
    }
    Ok(search)
}
