//! An OCI image as a source: resolve the manifest (from an index, the
//! linux/amd64 image, else the first), then read each layer in order,
//! gzip-compressed or plain tar, keeping what the extractors want. A layer
//! hides what lower layers had at the paths it names: a whiteout
//! `.wh.NAME` deletes `NAME` (and everything under it), an opaque whiteout
//! `.wh..wh..opq` empties its directory, and any entry replaces a lower
//! file at the same path. Whiteouts apply to lower layers only, so a layer
//! may delete a directory and recreate files in it.

use std::collections::BTreeMap;
use std::io::Read;

use plumb_oci::Digest;
use plumb_oci::client::RegistryClient;
use plumb_oci::reference::RepositoryName;
use serde::Deserialize;

use super::source::{FileSet, Found, Want, take, want};
use super::{Sbom, SbomError, extract};

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

/// Read the image `reference` (a tag or digest) of `repo` at `registry`
/// and list its packages.
pub async fn read_image(
    client: &RegistryClient,
    registry: &str,
    repo: &RepositoryName,
    reference: &str,
) -> Result<Sbom, SbomError> {
    let separator = if reference.parse::<Digest>().is_ok() {
        '@'
    } else {
        ':'
    };
    let subject = format!("{registry}/{repo}{separator}{reference}");
    let registry_error = |source| SbomError::Registry {
        subject: subject.clone(),
        source,
    };
    let top = client
        .manifest_get(registry, repo, reference)
        .await
        .map_err(registry_error)?;
    let mut bytes = top.bytes.clone();
    let mut layers = None;
    for _ in 0..3 {
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| SbomError::Image {
            subject: subject.clone(),
            message: format!("the manifest is not valid JSON: {e}"),
        })?;
        if manifest.manifests.is_empty() {
            layers = Some(manifest.layers);
            break;
        }
        let child = pick_platform(&manifest.manifests);
        bytes = client
            .manifest_get(registry, repo, &child.digest)
            .await
            .map_err(registry_error)?
            .bytes;
    }
    let layers = layers.ok_or_else(|| SbomError::Image {
        subject: subject.clone(),
        message: "indexes nested too deeply".into(),
    })?;
    let mut files = FileSet::new();
    for layer in layers {
        if !layer.media_type.is_empty() && !layer.media_type.contains("tar") {
            continue;
        }
        if layer.media_type.contains("zstd") {
            return Err(SbomError::Image {
                subject,
                message: format!(
                    "layer {} is zstd-compressed, which plumb does not read yet",
                    layer.digest
                ),
            });
        }
        let digest: Digest = layer.digest.parse().map_err(|e| SbomError::Image {
            subject: subject.clone(),
            message: format!("layer digest {}: {e}", layer.digest),
        })?;
        files = stream_layer(client, registry, repo, &digest, files, &subject).await?;
    }
    Ok(Sbom::new(
        subject,
        Some(top.digest.to_string()),
        extract(&files)?,
    ))
}

/// The packages of an image whose layers (bottom first) are the files
/// `layers` (tar, gzip-compressed or not), read as streams: memory holds
/// only what the extractors keep. `subject` and `digest` name the image in
/// the SBOM. A registry scanning its own store uses this.
pub fn read_layer_files(
    subject: String,
    digest: Option<String>,
    layers: &[(String, std::path::PathBuf)],
) -> Result<Sbom, SbomError> {
    let mut files = FileSet::new();
    for (name, path) in layers {
        let file = std::fs::File::open(path).map_err(|e| SbomError::Layer {
            layer: name.clone(),
            message: format!("{}: {e}", path.display()),
        })?;
        apply_layer(&mut files, name, file)?;
    }
    Ok(Sbom::new(subject, digest, extract(&files)?))
}

/// Lay the layer `digest` over `files` as its bytes arrive: a blocking
/// task reads the tar from a bounded channel the download fills, so memory
/// holds a few chunks of the layer, not the layer. Every byte is hashed on
/// the way (also those after the tar's end, which the reader leaves) and a
/// layer whose bytes do not match its digest is an error.
async fn stream_layer(
    client: &RegistryClient,
    registry: &str,
    repo: &RepositoryName,
    digest: &Digest,
    mut files: FileSet,
    subject: &str,
) -> Result<FileSet, SbomError> {
    use futures_util::StreamExt as _;
    let registry_error = |source| SbomError::Registry {
        subject: subject.to_owned(),
        source,
    };
    let mut blob = client
        .blob_stream(registry, repo, digest)
        .await
        .map_err(registry_error)?
        .ok_or_else(|| SbomError::Image {
            subject: subject.to_owned(),
            message: format!("layer {digest} is not in the registry"),
        })?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let name = digest.to_string();
    let reader = tokio::task::spawn_blocking(move || {
        apply_layer(
            &mut files,
            &name,
            ChannelReader {
                rx,
                chunk: bytes::Bytes::new(),
            },
        )?;
        Ok::<_, SbomError>(files)
    });
    let mut hasher = plumb_oci::ContentHasher::new(digest.algorithm());
    let mut tx = Some(tx);
    let mut failed = None;
    while let Some(chunk) = blob.bytes.next().await {
        match chunk {
            Ok(bytes) => {
                hasher.update(&bytes);
                if let Some(t) = &tx
                    && t.send(Ok(bytes)).await.is_err()
                {
                    // The reader is done (the tar ended, or it failed);
                    // the rest is still hashed.
                    tx = None;
                }
            }
            Err(e) => {
                failed = Some(e.to_string());
                if let Some(t) = tx.take() {
                    let _ = t.send(Err(std::io::Error::other(e.to_string()))).await;
                }
                break;
            }
        }
    }
    drop(tx);
    let files = reader.await.map_err(|e| SbomError::Image {
        subject: subject.to_owned(),
        message: format!("reading a layer stopped: {e}"),
    })??;
    if let Some(message) = failed {
        return Err(SbomError::Image {
            subject: subject.to_owned(),
            message: format!("layer {digest}: {message}"),
        });
    }
    let actual = hasher.finish();
    if &actual != digest {
        return Err(SbomError::Image {
            subject: subject.to_owned(),
            message: format!(
                "layer {digest} arrived with digest {actual}; nothing was read from it"
            ),
        });
    }
    Ok(files)
}

/// A blocking reader over chunks a download sends.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.chunk = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// The index entry to read: linux/amd64, else the first real platform
/// (attestation manifests say `unknown/unknown`), else the first.
fn pick_platform(manifests: &[Descriptor]) -> &Descriptor {
    fn platform(d: &Descriptor) -> Option<(&str, &str)> {
        d.platform
            .as_ref()
            .map(|p| (p.os.as_str(), p.architecture.as_str()))
    }
    manifests
        .iter()
        .find(|d| platform(d) == Some(("linux", "amd64")))
        .or_else(|| {
            manifests
                .iter()
                .find(|d| platform(d).is_some_and(|(os, _)| os != "unknown"))
        })
        .unwrap_or(&manifests[0])
}

/// `path` without a leading `./` or `/`, and without a trailing `/`.
fn clean(path: &str) -> String {
    let p = path.trim_start_matches("./").trim_start_matches('/');
    p.trim_end_matches('/').to_owned()
}

/// Whether `path` is `dir` itself or lies under it (`""` is the root).
fn under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Lay one layer (`bytes`: a tar, gzip-compressed or not) over `files`.
pub(crate) fn apply_layer(
    files: &mut FileSet,
    layer: &str,
    bytes: impl Read,
) -> Result<(), SbomError> {
    let broken = |e: std::io::Error| SbomError::Layer {
        layer: layer.to_owned(),
        message: e.to_string(),
    };
    let mut bytes = std::io::BufReader::with_capacity(256 << 10, bytes);
    let gzip = std::io::BufRead::fill_buf(&mut bytes)
        .map_err(broken)?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    // Some(found): kept; None: something unwanted now stands at this path.
    let mut added: BTreeMap<String, Option<Found>> = BTreeMap::new();
    let mut deleted: Vec<String> = Vec::new();
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let path = clean(&entry.path().map_err(broken)?.to_string_lossy());
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if name == ".wh..wh..opq" {
            deleted.push(parent.to_owned());
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            deleted.push(if parent.is_empty() {
                hidden.to_owned()
            } else {
                format!("{parent}/{hidden}")
            });
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        if kind.is_file() {
            let size = header.size().map_err(broken)?;
            let mode = header.mode().map_err(broken)?;
            let w = want(&path, mode & 0o111 != 0, size);
            let found = if w == Want::Nothing {
                None
            } else {
                take(&path, w, size, &mut entry, broken)?
            };
            if found.is_some() || files.contains_key(&path) {
                added.insert(path, found);
            }
        } else if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(broken)?
                .map(|t| clean(&t.to_string_lossy()));
            let found = target.and_then(|t| match added.get(&t) {
                Some(f) => f.clone(),
                None => files.get(&t).cloned(),
            });
            if found.is_some() || files.contains_key(&path) {
                added.insert(path, found);
            }
        } else if files.contains_key(&path) {
            added.insert(path, None);
        }
    }
    for gone in &deleted {
        files.retain(|p, _| !under(p, gone));
    }
    for (path, found) in added {
        match found {
            Some(f) => {
                files.insert(path, f);
            }
            None => {
                files.remove(&path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_hide_lower_layers_only() {
        let mut files = FileSet::new();
        apply_layer(
            &mut files,
            "one",
            &layer(&[
                ("./app/requirements.txt", b"a==1\n"),
                ("srv/package-lock.json", b"{}"),
                ("opt/x/requirements.txt", b"b==2\n"),
                ("etc/os-release", b"ID=debian\n"),
            ])[..],
        )
        .unwrap();
        assert_eq!(files.len(), 4);
        apply_layer(
            &mut files,
            "two",
            &layer(&[
                ("app/.wh.requirements.txt", b""),
                ("opt/.wh..wh..opq", b""),
                ("opt/y/requirements.txt", b"c==3\n"),
                ("etc/os-release", b"ID=ubuntu\n"),
            ])[..],
        )
        .unwrap();
        let paths: Vec<_> = files.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "etc/os-release",
                "opt/y/requirements.txt",
                "srv/package-lock.json"
            ]
        );
        assert_eq!(
            files["etc/os-release"],
            Found::Text(b"ID=ubuntu\n".to_vec())
        );
    }

    #[test]
    fn a_broken_layer_is_named() {
        let err =
            apply_layer(&mut FileSet::new(), "sha256:abc", &b"\x1f\x8bnot gzip"[..]).unwrap_err();
        assert!(err.to_string().contains("sha256:abc"), "{err}");
    }
}
