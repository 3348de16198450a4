//! What a manifest says about the content it names.
//!
//! [`ManifestSummary::parse`] reads image manifests and indexes (OCI and the
//! Docker v2 equivalents) through oci-spec's types and extracts the facts a
//! registry needs: which blobs and child manifests must exist, the subject it
//! refers to, its artifact type and annotations.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The empty JSON config descriptor's media type.
pub const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
/// Media types of layers that are never pushed (foreign / non-distributable).
const NON_DISTRIBUTABLE: &[&str] = &[
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Image manifest or index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    /// Config plus layers.
    Image,
    /// A list of manifests.
    Index,
}

/// A descriptor reduced to what plumb keeps.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DescriptorSummary {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

/// Facts extracted from a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestSummary {
    /// The media type the manifest is stored and served under.
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// `artifactType`, or for an image without one, the config's media type.
    pub artifact_type: Option<String>,
    /// The manifest this one refers to (`subject`).
    pub subject: Option<DescriptorSummary>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Blobs that must exist in the repository (config and distributable layers).
    pub blobs: Vec<Digest>,
    /// Manifests an index lists.
    pub children: Vec<Digest>,
}

/// Why bytes are not an acceptable manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, wrong shape, or a descriptor is broken.
    #[error("manifest is invalid: {0}")]
    Invalid(String),
    /// A media type plumb does not store as a manifest.
    #[error(
        "manifest media type {0:?} is not supported (use an OCI or Docker v2 image manifest or index)"
    )]
    UnsupportedMediaType(String),
}

fn descriptor(d: &Descriptor) -> Result<DescriptorSummary, ManifestError> {
    let digest: Digest = d
        .digest()
        .to_string()
        .parse()
        .map_err(|e| ManifestError::Invalid(format!("descriptor digest: {e}")))?;
    Ok(DescriptorSummary {
        media_type: d.media_type().to_string(),
        digest,
        size: d.size(),
    })
}

/// A manifest's annotations, in key order (absent: none).
fn annotations(a: &Option<std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    a.iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn kind_of(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

impl ManifestSummary {
    /// Parse `bytes`, served with `content_type` (the request's Content-Type, if any).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::Invalid(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| ManifestError::Invalid("not a JSON object".into()))?;
        if obj.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
            return Err(ManifestError::Invalid("schemaVersion must be 2".into()));
        }
        let body_type = obj.get("mediaType").and_then(|v| v.as_str());
        let header_type = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim())
            .filter(|c| kind_of(c).is_some());
        if let (Some(b), Some(h)) = (body_type, header_type)
            && b != h
        {
            return Err(ManifestError::Invalid(format!(
                "mediaType {b:?} in the body differs from Content-Type {h:?}"
            )));
        }
        let media_type = match body_type.or(header_type) {
            Some(t) => t.to_owned(),
            None if obj.contains_key("manifests") => OCI_INDEX.to_owned(),
            None if obj.contains_key("config") => OCI_MANIFEST.to_owned(),
            None => {
                return Err(ManifestError::Invalid(
                    "neither config nor manifests present".into(),
                ));
            }
        };
        let kind = kind_of(&media_type)
            .ok_or_else(|| ManifestError::UnsupportedMediaType(media_type.clone()))?;
        match kind {
            ManifestKind::Image => {
                let m: ImageManifest = serde_json::from_slice(bytes)
                    .map_err(|e| ManifestError::Invalid(e.to_string()))?;
                let config = descriptor(m.config())?;
                let mut blobs = vec![config.digest.clone()];
                for l in m.layers() {
                    let l = descriptor(l)?;
                    if !NON_DISTRIBUTABLE.contains(&l.media_type.as_str()) {
                        blobs.push(l.digest);
                    }
                }
                let artifact_type = m
                    .artifact_type()
                    .as_ref()
                    .map(|t| t.to_string())
                    .or_else(|| Some(config.media_type.clone()));
                Ok(ManifestSummary {
                    media_type,
                    kind,
                    artifact_type,
                    subject: m.subject().as_ref().map(descriptor).transpose()?,
                    annotations: annotations(m.annotations()),
                    blobs,
                    children: vec![],
                })
            }
            ManifestKind::Index => {
                let m: ImageIndex = serde_json::from_slice(bytes)
                    .map_err(|e| ManifestError::Invalid(e.to_string()))?;
                let children = m
                    .manifests()
                    .iter()
                    .map(|d| descriptor(d).map(|d| d.digest))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(ManifestSummary {
                    media_type,
                    kind,
                    artifact_type: m.artifact_type().as_ref().map(|t| t.to_string()),
                    subject: m.subject().as_ref().map(descriptor).transpose()?,
                    annotations: annotations(m.annotations()),
                    blobs: vec![],
                    children,
                })
            }
        }
    }
}

/// Serialise any value as JSON with object keys sorted, so the same content
/// always produces the same bytes (and digest).
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    // serde_json::Value keeps object keys in a BTreeMap: re-serialising through
    // it sorts every map, including oci-spec's HashMap annotations.
    let v = serde_json::to_value(value)?;
    serde_json::to_vec(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(extra: &str) -> String {
        let c = Digest::sha256_of(b"{}");
        let l = Digest::sha256_of(b"layer");
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{l}","size":5}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest_names_its_blobs() {
        let s = ManifestSummary::parse(image("").as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(s.kind, ManifestKind::Image);
        assert_eq!(s.blobs.len(), 2);
        assert_eq!(
            s.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn subject_and_artifact_type() {
        let d = Digest::sha256_of(b"x");
        let extra = format!(
            r#","artifactType":"application/x.sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1}}"#
        );
        let s = ManifestSummary::parse(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(s.subject.unwrap().digest, d);
        assert_eq!(s.artifact_type.as_deref(), Some("application/x.sig"));
    }

    #[test]
    fn malformed_manifests_are_refused() {
        assert!(ManifestSummary::parse(b"nope", None).is_err());
        assert!(ManifestSummary::parse(b"[]", None).is_err());
        assert!(ManifestSummary::parse(br#"{"schemaVersion":1}"#, None).is_err());
        assert!(ManifestSummary::parse(image("").as_bytes(), Some(OCI_INDEX)).is_err());
        let bad_digest = image("").replace("sha256:", "sha256:zz");
        assert!(ManifestSummary::parse(bad_digest.as_bytes(), None).is_err());
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut m = std::collections::HashMap::new();
        for k in ["z", "a", "m", "b"] {
            m.insert(k.to_string(), 1);
        }
        assert_eq!(canonical_json(&m).unwrap(), br#"{"a":1,"b":1,"m":1,"z":1}"#);
    }
}
