//! Packaging files and directories as an OCI artifact tied to a git commit.
//!
//! [`ArtifactPlan::prepare`] turns paths into layers the way oras lays them
//! out (a file is one layer titled with its name; a directory is a gzipped tar
//! marked for unpacking), reads the commit facts from git, and builds the
//! manifest. Everything that feeds the manifest is deterministic: tar entries
//! are sorted with fixed owners, modes and times, gzip carries no timestamp,
//! JSON keys are sorted and `created` comes from the caller's
//! `SOURCE_DATE_EPOCH` ([`ArtifactSpec::source_date_epoch`]) or the commit
//! time; so the same inputs always give the same digest. [`ArtifactPlan::push`]
//! uploads it, telling a [`PushProgress`] how far it got.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder, MediaType};

use crate::client::{ByteCounter, ClientError, RegistryClient};
use crate::digest::{ContentHasher, Digest};
use crate::manifest::{OCI_MANIFEST, canonical_json};
use crate::reference::{RepositoryName, Tag};

/// Artifact type plumb gives pushed artifacts unless told otherwise.
pub const DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.plumb.artifact.v1";
/// Layer media type of a single file.
pub const FILE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Layer media type of a packed directory.
pub const DIRECTORY_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TITLE: &str = "org.opencontainers.image.title";

/// Why an artifact could not be packed or pushed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A path could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Git could not tell the commit.
    #[error("cannot read the current git commit in {dir}: {detail}")]
    Git {
        /// Where git ran.
        dir: PathBuf,
        /// git's message.
        detail: String,
    },
    /// Two inputs would have the same title.
    #[error("two inputs are both named {0:?}; artifact layers need distinct names")]
    DuplicateTitle(String),
    /// A path that is neither file nor directory.
    #[error("{0} is neither a regular file nor a directory")]
    Unsupported(PathBuf),
    /// SOURCE_DATE_EPOCH is not a number.
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds")]
    BadEpoch(String),
    /// Registry trouble.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Manifest building failed.
    #[error("cannot build the manifest: {0}")]
    Build(String),
}

fn build_err(e: impl std::fmt::Display) -> ArtifactError {
    ArtifactError::Build(e.to_string())
}

/// What git says about the commit being published.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitFacts {
    /// Full commit SHA of HEAD.
    pub revision: String,
    /// `vX.Y.Z` tags pointing at HEAD.
    pub version_tags: Vec<String>,
    /// Commit time, seconds since the epoch.
    pub commit_time: i64,
    /// `remote.origin.url`, when there is one.
    pub source: Option<String>,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, ArtifactError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| ArtifactError::Git {
            dir: dir.to_owned(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ArtifactError::Git {
            dir: dir.to_owned(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether `tag` is a release tag `vX.Y.Z`.
pub fn is_version_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

impl CommitFacts {
    /// Read the facts of HEAD in the repository containing `dir`.
    pub fn read(dir: &Path) -> Result<Self, ArtifactError> {
        let revision = git(dir, &["rev-parse", "--verify", "HEAD"])?;
        let commit_time = git(dir, &["log", "-1", "--format=%ct", "HEAD"])?
            .parse()
            .map_err(|e| ArtifactError::Git {
                dir: dir.to_owned(),
                detail: format!("commit time: {e}"),
            })?;
        let mut version_tags: Vec<String> = git(dir, &["tag", "--points-at", "HEAD"])?
            .lines()
            .filter(|t| is_version_tag(t))
            .map(str::to_owned)
            .collect();
        version_tags.sort();
        let source = git(dir, &["remote", "get-url", "origin"])
            .ok()
            .filter(|s| !s.is_empty());
        Ok(CommitFacts {
            revision,
            version_tags,
            commit_time,
            source,
        })
    }
}

/// One layer, ready to upload.
#[derive(Debug, Clone)]
struct PackedLayer {
    title: String,
    media_type: &'static str,
    digest: Digest,
    size: u64,
    /// Where its bytes are (the input file, or a packed temporary file).
    path: PathBuf,
    annotations: BTreeMap<String, String>,
}

/// An artifact ready to push.
#[derive(Debug)]
pub struct ArtifactPlan {
    layers: Vec<PackedLayer>,
    /// The commit it comes from.
    pub commit: CommitFacts,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The manifest digest.
    pub digest: Digest,
    /// Tags it will be pushed under.
    pub tags: Vec<Tag>,
    _scratch: tempfile::TempDir,
}

/// How to build an artifact.
#[derive(Debug, Clone)]
pub struct ArtifactSpec {
    /// Files and directories.
    pub paths: Vec<PathBuf>,
    /// `artifactType`.
    pub artifact_type: String,
    /// Overrides `org.opencontainers.image.source` (default: git's origin URL).
    pub source: Option<String>,
    /// Where to ask git (default: the current directory).
    pub git_dir: PathBuf,
    /// `SOURCE_DATE_EPOCH`: the creation time to record; the commit time when absent.
    pub source_date_epoch: Option<i64>,
}

impl ArtifactSpec {
    /// The creation time a `SOURCE_DATE_EPOCH` value asks for (the caller
    /// reads the variable; absent: `None`, the commit time then).
    pub fn parse_source_date_epoch(value: Option<&str>) -> Result<Option<i64>, ArtifactError> {
        match value {
            Some(s) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| ArtifactError::BadEpoch(s.to_owned())),
            None => Ok(None),
        }
    }
}

/// One step of [`ArtifactPlan::push`].
#[derive(Debug, Clone, Copy)]
pub enum PushStep<'a> {
    /// A layer's upload starts (the registry may already hold it).
    Layer {
        /// Its title (the input's file name).
        title: &'a str,
        /// Its size in bytes.
        size: u64,
        /// Its digest.
        digest: &'a Digest,
    },
    /// The manifest is put under a tag.
    Tag(&'a Tag),
}

/// What [`ArtifactPlan::push`] reports as it goes; the command line draws it
/// as a progress bar. Both methods default to saying nothing, and `()` is the
/// progress that says nothing.
pub trait PushProgress: Send + Sync {
    /// A step starts.
    fn step(&self, _step: PushStep<'_>) {}
    /// `bytes` more layer bytes went out.
    fn sent(&self, _bytes: u64) {}
}

impl PushProgress for () {}

fn hash_file(path: &Path) -> Result<(Digest, u64), ArtifactError> {
    use std::io::Read as _;
    let err = |source| ArtifactError::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = ContentHasher::new(crate::digest::Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((h.finish(), size))
}

/// Hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: ContentHasher,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn collect_entries(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        let r = rel.join(&n);
        out.push(r.clone());
        if std::fs::symlink_metadata(root.join(&r))?.is_dir() {
            collect_entries(root, &r, out)?;
        }
    }
    Ok(())
}

/// Pack `dir` as `<name>/...` into a deterministic tar.gz at `dest`; returns
/// (digest of the gzip, size, digest of the uncompressed tar).
fn pack_directory(
    dir: &Path,
    name: &str,
    mtime: u64,
    dest: &Path,
) -> Result<(Digest, u64, Digest), ArtifactError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| ArtifactError::Read { path, source }
    };
    let file = std::fs::File::create(dest).map_err(err(dest))?;
    let gz_hashing = HashingWriter {
        inner: std::io::BufWriter::new(file),
        hasher: ContentHasher::new(crate::digest::Algorithm::Sha256),
    };
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(gz_hashing, flate2::Compression::default());
    let tar_hashing = HashingWriter {
        inner: gz,
        hasher: ContentHasher::new(crate::digest::Algorithm::Sha256),
    };
    let mut builder = tar::Builder::new(tar_hashing);
    builder.mode(tar::HeaderMode::Deterministic);
    let mut entries = vec![];
    collect_entries(dir, Path::new(""), &mut entries).map_err(err(dir))?;
    let header_for = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_size(size);
        h
    };
    let mut root = header_for(tar::EntryType::Directory, 0o755, 0);
    builder
        .append_data(&mut root, format!("{name}/"), std::io::empty())
        .map_err(err(dir))?;
    for rel in entries {
        let full = dir.join(&rel);
        let meta = std::fs::symlink_metadata(&full).map_err(err(&full))?;
        let path_in_tar = Path::new(name).join(&rel);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).map_err(err(&full))?;
            let mut h = header_for(tar::EntryType::Symlink, 0o777, 0);
            builder
                .append_link(&mut h, &path_in_tar, &target)
                .map_err(err(&full))?;
        } else if meta.is_dir() {
            let mut h = header_for(tar::EntryType::Directory, 0o755, 0);
            builder
                .append_data(
                    &mut h,
                    format!("{}/", path_in_tar.display()),
                    std::io::empty(),
                )
                .map_err(err(&full))?;
        } else if meta.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let mut h = header_for(tar::EntryType::Regular, mode, meta.len());
            let f = std::fs::File::open(&full).map_err(err(&full))?;
            builder
                .append_data(&mut h, &path_in_tar, f)
                .map_err(err(&full))?;
        }
    }
    let tar_hashing = builder.into_inner().map_err(err(dest))?;
    let tar_digest = tar_hashing.hasher.finish();
    let mut gz_hashing = tar_hashing.inner.finish().map_err(err(dest))?;
    gz_hashing.flush().map_err(err(dest))?;
    let gz_digest = gz_hashing.hasher.finish();
    let size = std::fs::metadata(dest).map_err(err(dest))?.len();
    Ok((gz_digest, size, tar_digest))
}

impl ArtifactPlan {
    /// Pack the inputs and build the manifest (nothing is uploaded).
    pub fn prepare(spec: &ArtifactSpec) -> Result<ArtifactPlan, ArtifactError> {
        let commit = CommitFacts::read(&spec.git_dir)?;
        let created_secs = spec.source_date_epoch.unwrap_or(commit.commit_time);
        let created = jiff::Timestamp::from_second(created_secs)
            .map_err(build_err)?
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let scratch = tempfile::tempdir().map_err(|source| ArtifactError::Read {
            path: std::env::temp_dir(),
            source,
        })?;
        let mut layers = vec![];
        let mut seen = std::collections::BTreeSet::new();
        for (i, path) in spec.paths.iter().enumerate() {
            let meta = std::fs::metadata(path).map_err(|source| ArtifactError::Read {
                path: path.clone(),
                source,
            })?;
            let title = path
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| path.display().to_string());
            if !seen.insert(title.clone()) {
                return Err(ArtifactError::DuplicateTitle(title));
            }
            let mut annotations = BTreeMap::from([(TITLE.to_owned(), title.clone())]);
            if meta.is_file() {
                let (digest, size) = hash_file(path)?;
                layers.push(PackedLayer {
                    title,
                    media_type: FILE_LAYER,
                    digest,
                    size,
                    path: path.clone(),
                    annotations,
                });
            } else if meta.is_dir() {
                let dest = scratch.path().join(format!("layer-{i}.tar.gz"));
                let (digest, size, tar_digest) = pack_directory(
                    path,
                    &title,
                    u64::try_from(created_secs).unwrap_or(0),
                    &dest,
                )?;
                annotations.insert("io.deis.oras.content.digest".into(), tar_digest.to_string());
                annotations.insert("io.deis.oras.content.unpack".into(), "true".into());
                layers.push(PackedLayer {
                    title,
                    media_type: DIRECTORY_LAYER,
                    digest,
                    size,
                    path: dest,
                    annotations,
                });
            } else {
                return Err(ArtifactError::Unsupported(path.clone()));
            }
        }
        let mut annotations: HashMap<String, String> = HashMap::from([
            (
                "org.opencontainers.image.revision".to_owned(),
                commit.revision.clone(),
            ),
            ("org.opencontainers.image.created".to_owned(), created),
        ]);
        if let Some(source) = spec.source.clone().or_else(|| commit.source.clone()) {
            annotations.insert("org.opencontainers.image.source".to_owned(), source);
        }
        let empty = Digest::sha256_of(b"{}");
        let config = DescriptorBuilder::default()
            .media_type(MediaType::EmptyJSON)
            .digest(empty.to_oci().map_err(build_err)?)
            .size(2u64)
            .build()
            .map_err(build_err)?;
        let layer_descriptors = layers
            .iter()
            .map(|l| {
                DescriptorBuilder::default()
                    .media_type(MediaType::Other(l.media_type.to_owned()))
                    .digest(l.digest.to_oci().map_err(build_err)?)
                    .size(l.size)
                    .annotations(l.annotations.clone().into_iter().collect::<HashMap<_, _>>())
                    .build()
                    .map_err(build_err)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .artifact_type(MediaType::Other(spec.artifact_type.clone()))
            .config(config)
            .layers(layer_descriptors)
            .annotations(annotations)
            .build()
            .map_err(build_err)?;
        let manifest = canonical_json(&manifest).map_err(build_err)?;
        let digest = Digest::sha256_of(&manifest);
        let mut tags = vec![Tag::parse(&commit.revision).map_err(build_err)?];
        for v in &commit.version_tags {
            tags.push(Tag::parse(v).map_err(build_err)?);
        }
        Ok(ArtifactPlan {
            layers,
            commit,
            manifest,
            digest,
            tags,
            _scratch: scratch,
        })
    }

    /// Total bytes of the layers.
    pub fn layer_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// Upload the layers and the manifest under every tag, telling
    /// `progress` each step and each chunk of layer bytes sent.
    pub async fn push(
        &self,
        client: &RegistryClient,
        registry: &str,
        repo: &RepositoryName,
        progress: Arc<dyn PushProgress>,
    ) -> Result<(), ArtifactError> {
        client
            .blob_push(registry, repo, Bytes::from_static(b"{}"))
            .await?;
        let on_bytes: ByteCounter = {
            let progress = Arc::clone(&progress);
            Arc::new(move |n| progress.sent(n))
        };
        for l in &self.layers {
            progress.step(PushStep::Layer {
                title: &l.title,
                size: l.size,
                digest: &l.digest,
            });
            client
                .blob_put_file(registry, repo, &l.digest, &l.path, Some(on_bytes.clone()))
                .await?;
        }
        for t in &self.tags {
            progress.step(PushStep::Tag(t));
            client
                .manifest_put(
                    registry,
                    repo,
                    t.as_str(),
                    OCI_MANIFEST,
                    Bytes::from(self.manifest.clone()),
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_tags() {
        assert!(is_version_tag("v1.2.3"));
        assert!(is_version_tag("v10.0.0"));
        assert!(!is_version_tag("v1.2"));
        assert!(!is_version_tag("1.2.3"));
        assert!(!is_version_tag("v1.2.3-rc1"));
    }

    #[test]
    fn directory_packing_is_deterministic() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("site");
        std::fs::create_dir_all(src.join("b")).unwrap();
        std::fs::write(src.join("a.txt"), "a").unwrap();
        std::fs::write(src.join("b/c.txt"), "c").unwrap();
        let one = pack_directory(&src, "site", 1_700_000_000, &d.path().join("1.tgz")).unwrap();
        // Touch the files: mtimes must not matter.
        std::fs::write(src.join("a.txt"), "a").unwrap();
        let two = pack_directory(&src, "site", 1_700_000_000, &d.path().join("2.tgz")).unwrap();
        assert_eq!(one, two);
        std::fs::write(src.join("a.txt"), "A").unwrap();
        let three = pack_directory(&src, "site", 1_700_000_000, &d.path().join("3.tgz")).unwrap();
        assert_ne!(one.0, three.0);
    }
}
