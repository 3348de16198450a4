//! Rendering: a commit's tree in, Kubernetes objects out.
//!
//! An Application's source path is one of three things, decided by what is in
//! it: a Helm chart (`Chart.yaml`), a kustomization (`kustomization.yaml`,
//! `kustomization.yml` or `Kustomization`), or a directory of plain YAML and
//! JSON manifests. Plain directories are read straight out of the Git object
//! database. Kustomize and Helm need files, so the commit's tree is written out
//! once per commit (in-repository symlinks become copies, escaping ones are
//! refused) and the real `kustomize build` / `helm template` binaries run on it
//! with a time limit.
//!
//! Every rendered object remembers where it came from ([`yaml::Origin`]), so a
//! manifest without `kind` or a kind the cluster does not know is reported as
//! `file:line:column`. Renders are deterministic functions of (commit, path,
//! options) and are cached on disk under that key.
//!
//! SOPS-encrypted files ([`plumb_secrets::sops`]) are decrypted with the
//! [`Keyring`] the caller passes: in memory for plain directories; for
//! Kustomize and Helm, which read files, in a copy of the tree staged in a
//! private directory on tmpfs (`/dev/shm`, mode 0700) that is removed when the
//! render ends, failed or not. A render that decrypted anything is never
//! cached, so decrypted values reach neither the cache nor the work trees.
//!
//! This crate must not talk to a cluster.

pub mod application;
mod secrets;
mod tool;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use plumb_git::{Snapshot, SnapshotError};
use plumb_model::application::{ApplicationSource, HelmSource, KustomizeSource};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use plumb_model::{Manifest, Origin};
pub use plumb_secrets::sops::Keyring;
use plumb_secrets::sops::{self, SopsError};
pub use tool::Tools;
pub use yaml::ParseError;

/// Bumped whenever rendering changes, so old cache entries are not reused.
const RENDER_VERSION: u32 = 2;

/// Where decrypted trees are staged for Kustomize and Helm: memory-backed.
pub const DEFAULT_SECRETS_DIR: &str = "/dev/shm";

/// Files named like this make a directory a kustomization.
const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How a source was rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// Plain YAML/JSON files.
    Directory,
    /// `kustomize build`.
    Kustomize,
    /// `helm template`.
    Helm,
}

/// The objects of one Application at one commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    /// Commit per source, in source order.
    pub commits: Vec<String>,
    /// How each source was rendered.
    pub source_types: Vec<SourceType>,
    /// The objects.
    pub manifests: Vec<Manifest>,
    /// Things worth telling the user.
    pub warnings: Vec<String>,
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A manifest does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A document is not a Kubernetes object.
    #[error("{origin}: {message}")]
    InvalidObject {
        /// Where.
        origin: Origin,
        /// What is missing or wrong.
        message: String,
    },
    /// Two documents describe the same object.
    #[error("{second}: {object} is also defined at {first}")]
    Duplicate {
        /// The object.
        object: String,
        /// First definition.
        first: Origin,
        /// Second definition.
        second: Origin,
    },
    /// Reading the commit failed, or a path escapes the repository.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The source path does not exist at this commit.
    #[error("path {path:?} does not exist in commit {commit}")]
    NoSuchPath {
        /// The path.
        path: String,
        /// The commit.
        commit: String,
    },
    /// An option is invalid.
    #[error("{0}")]
    InvalidOption(String),
    /// `kustomize` or `helm` failed.
    #[error("{tool} failed for {path}: {message}")]
    Tool {
        /// Which tool.
        tool: String,
        /// The source path.
        path: String,
        /// Its error output.
        message: String,
    },
    /// A SOPS file could not be decrypted (wrong or missing key, tampered).
    #[error(transparent)]
    Decrypt(#[from] SopsError),
    /// Decrypted files would have to be written where they could persist.
    #[error(
        "{file} is SOPS-encrypted and {tool} needs it as a file, but {dir} (tmpfs) is not available; plumb does not write decrypted files to disk"
    )]
    NoTmpfs {
        /// The first encrypted file.
        file: String,
        /// kustomize or helm.
        tool: &'static str,
        /// The directory tried.
        dir: PathBuf,
    },
    /// Local I/O failed (work directories, cache).
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl RenderError {
    fn io(path: &Path, source: std::io::Error) -> RenderError {
        RenderError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What to render: one source of an Application.
#[derive(Debug, Clone)]
pub struct RenderRequest<'a> {
    /// The Application's name (Helm's default release name).
    pub app_name: &'a str,
    /// The destination namespace (Helm's `--namespace`).
    pub namespace: Option<&'a str>,
    /// The source.
    pub source: &'a ApplicationSource,
}

/// Renders sources, with a work area and an on-disk cache.
#[derive(Debug, Clone)]
pub struct Renderer {
    tools: Tools,
    work: PathBuf,
    max_file_size: u64,
    secrets_dir: PathBuf,
}

impl Renderer {
    /// A renderer keeping its work trees and cache under `work`.
    pub fn new(tools: Tools, work: impl Into<PathBuf>) -> Renderer {
        Renderer {
            tools,
            work: work.into(),
            max_file_size: 10 * 1024 * 1024,
            secrets_dir: PathBuf::from(DEFAULT_SECRETS_DIR),
        }
    }

    /// Stage decrypted trees for Kustomize and Helm under `dir` (default
    /// `/dev/shm`); it must be memory-backed for decrypted bytes to stay off disk.
    pub fn with_secrets_dir(mut self, dir: impl Into<PathBuf>) -> Renderer {
        self.secrets_dir = dir.into();
        self
    }

    /// Refuse manifest files over `bytes` (default 10 MiB).
    pub fn with_max_file_size(mut self, bytes: u64) -> Renderer {
        self.max_file_size = bytes;
        self
    }

    /// Render several sources (each with the snapshot of its commit) and merge
    /// them; an object defined twice is an error.
    pub fn render_all(
        &self,
        parts: &[(RenderRequest<'_>, &Snapshot)],
    ) -> Result<Rendered, RenderError> {
        self.render_all_with_keys(parts, &Keyring::new())
    }

    /// [`Renderer::render_all`], decrypting SOPS files with `keys`.
    pub fn render_all_with_keys(
        &self,
        parts: &[(RenderRequest<'_>, &Snapshot)],
        keys: &Keyring,
    ) -> Result<Rendered, RenderError> {
        let mut out = Rendered {
            commits: Vec::new(),
            source_types: Vec::new(),
            manifests: Vec::new(),
            warnings: Vec::new(),
        };
        for (req, snap) in parts {
            let r = self.render_with_keys(req, snap, keys)?;
            out.commits.extend(r.commits);
            out.source_types.extend(r.source_types);
            out.manifests.extend(r.manifests);
            out.warnings.extend(r.warnings);
        }
        check_duplicates(&out.manifests)?;
        Ok(out)
    }

    /// Render every source of `app`, each at its snapshot (in source order),
    /// into the destination namespace, and merge them.
    pub fn render_application(
        &self,
        app: &plumb_model::Application,
        snapshots: &[Snapshot],
    ) -> Result<Rendered, RenderError> {
        self.render_application_with_keys(app, snapshots, &Keyring::new())
    }

    /// [`Renderer::render_application`], decrypting SOPS files with `keys`.
    pub fn render_application_with_keys(
        &self,
        app: &plumb_model::Application,
        snapshots: &[Snapshot],
        keys: &Keyring,
    ) -> Result<Rendered, RenderError> {
        let sources = app.sources();
        if sources.len() != snapshots.len() {
            return Err(RenderError::InvalidOption(format!(
                "{} sources but {} commits",
                sources.len(),
                snapshots.len()
            )));
        }
        let parts: Vec<(RenderRequest<'_>, &Snapshot)> = sources
            .iter()
            .zip(snapshots)
            .map(|(s, snap)| {
                (
                    RenderRequest {
                        app_name: &app.metadata.name,
                        namespace: app.spec.destination.namespace.as_deref(),
                        source: s,
                    },
                    snap,
                )
            })
            .collect();
        self.render_all_with_keys(&parts, keys)
    }

    /// Render one source at the snapshot's commit, from cache when possible.
    pub fn render(
        &self,
        req: &RenderRequest<'_>,
        snap: &Snapshot,
    ) -> Result<Rendered, RenderError> {
        self.render_with_keys(req, snap, &Keyring::new())
    }

    /// [`Renderer::render`], decrypting SOPS files with `keys`. A render that
    /// decrypted a file is not cached (a cached render never held a SOPS
    /// file, so reading the cache stays safe).
    pub fn render_with_keys(
        &self,
        req: &RenderRequest<'_>,
        snap: &Snapshot,
        keys: &Keyring,
    ) -> Result<Rendered, RenderError> {
        let key = cache_key(req, snap.commit());
        let cache_file = self.work.join("cache").join(format!("{key}.json"));
        if let Ok(bytes) = std::fs::read(&cache_file)
            && let Ok(cached) = serde_json::from_slice::<Rendered>(&bytes)
        {
            tracing::debug!(
                commit = snap.commit(),
                path = req.source.path(),
                "render cache hit"
            );
            return Ok(cached);
        }
        let (rendered, decrypted) = self.render_uncached(req, snap, keys)?;
        if decrypted {
            tracing::debug!(
                commit = snap.commit(),
                path = req.source.path(),
                "render holds decrypted SOPS data; not cached"
            );
            return Ok(rendered);
        }
        if let Err(e) = write_atomic(
            &cache_file,
            &serde_json::to_vec(&rendered).unwrap_or_default(),
        ) {
            tracing::warn!(error = %e, "could not write the render cache");
        }
        Ok(rendered)
    }

    fn render_uncached(
        &self,
        req: &RenderRequest<'_>,
        snap: &Snapshot,
        keys: &Keyring,
    ) -> Result<(Rendered, bool), RenderError> {
        let path = req.source.path().to_string();
        if !path.is_empty() && !snap.is_dir(&path)? {
            return Err(RenderError::NoSuchPath {
                path,
                commit: snap.commit().to_string(),
            });
        }
        let mut warnings = Vec::new();
        let in_path = |f: &str| {
            if path.is_empty() {
                f.to_string()
            } else {
                format!("{path}/{f}")
            }
        };
        let source_type = if snap.is_file(&in_path("Chart.yaml"))? {
            SourceType::Helm
        } else if KUSTOMIZATION_FILES
            .iter()
            .any(|f| snap.is_file(&in_path(f)).unwrap_or(false))
        {
            SourceType::Kustomize
        } else {
            SourceType::Directory
        };
        if source_type != SourceType::Kustomize && req.source.kustomize.is_some() {
            warnings.push(format!(
                "{path}: kustomize options given but the path has no kustomization"
            ));
        }
        if source_type != SourceType::Helm && req.source.helm.is_some() {
            warnings.push(format!(
                "{path}: helm options given but the path has no Chart.yaml"
            ));
        }
        let mut decrypted = false;
        let docs = match source_type {
            SourceType::Directory => {
                self.render_directory(req, snap, &path, keys, &mut warnings, &mut decrypted)?
            }
            SourceType::Kustomize => {
                let root = self.materialize(snap)?;
                let staged = self.stage_decrypted(&root, keys, "kustomize")?;
                decrypted = staged.is_some();
                let text = match &staged {
                    None => self.kustomize(&root, &path, req.source.kustomize.as_ref())?,
                    Some(s) => {
                        s.redact(self.kustomize(s.root(), &path, req.source.kustomize.as_ref()))?
                    }
                };
                yaml::parse_documents(&text, &format!("kustomize build {}", display_path(&path)))?
            }
            SourceType::Helm => {
                let root = self.materialize(snap)?;
                let staged = self.stage_decrypted(&root, keys, "helm")?;
                decrypted = staged.is_some();
                let text = match &staged {
                    None => self.helm(&root, &path, req)?,
                    Some(s) => s.redact(self.helm(s.root(), &path, req))?,
                };
                helm_documents(&text, &path)?
            }
        };
        let mut manifests = Vec::new();
        for d in docs {
            expand_into(d.value, d.origin, &mut manifests)?;
        }
        check_duplicates(&manifests)?;
        Ok((
            Rendered {
                commits: vec![snap.commit().to_string()],
                source_types: vec![source_type],
                manifests,
                warnings,
            },
            decrypted,
        ))
    }

    /// A copy of the materialized tree with every SOPS file decrypted, on
    /// tmpfs; None when the tree holds no SOPS file.
    fn stage_decrypted(
        &self,
        root: &Path,
        keys: &Keyring,
        tool: &'static str,
    ) -> Result<Option<secrets::Staged>, RenderError> {
        let found = secrets::find_sops_files(root, self.max_file_size)?;
        let Some((first, _)) = found.first() else {
            return Ok(None);
        };
        if !self.secrets_dir.is_dir() {
            return Err(RenderError::NoTmpfs {
                file: first.clone(),
                tool,
                dir: self.secrets_dir.clone(),
            });
        }
        secrets::stage(root, &self.secrets_dir, &found, keys).map(Some)
    }

    fn render_directory(
        &self,
        req: &RenderRequest<'_>,
        snap: &Snapshot,
        path: &str,
        keys: &Keyring,
        warnings: &mut Vec<String>,
        decrypted: &mut bool,
    ) -> Result<Vec<yaml::Document>, RenderError> {
        let dir = req.source.directory.clone().unwrap_or_default();
        let include = compile_glob(dir.include.as_deref(), "directory.include")?;
        let exclude = compile_glob(dir.exclude.as_deref(), "directory.exclude")?;
        let mut docs = Vec::new();
        // Sizes are checked per file by the snapshot before reading.
        let snap_files = snap.files(path, dir.recurse)?;
        for f in snap_files {
            let rel = f
                .path
                .strip_prefix(path)
                .unwrap_or(&f.path)
                .trim_start_matches('/');
            let lower = rel.to_ascii_lowercase();
            let is_yaml = lower.ends_with(".yaml") || lower.ends_with(".yml");
            let is_json = lower.ends_with(".json");
            if !is_yaml && !is_json {
                continue;
            }
            let name = rel.rsplit('/').next().unwrap_or(rel);
            if let Some(inc) = &include
                && !inc.is_match(rel)
                && !inc.is_match(name)
            {
                continue;
            }
            if let Some(exc) = &exclude
                && (exc.is_match(rel) || exc.is_match(name))
            {
                continue;
            }
            if f.data.len() as u64 > self.max_file_size {
                return Err(RenderError::Snapshot(SnapshotError::TooLarge {
                    path: f.path.clone(),
                    size: f.data.len() as u64,
                    limit: self.max_file_size,
                }));
            }
            let format = if is_json {
                sops::Format::Json
            } else {
                sops::Format::Yaml
            };
            let data = if sops::is_sops(&f.data, format) {
                // Decrypted in memory only; the plaintext is wiped when dropped.
                let plain = sops::decrypt(&f.path, &f.data, format, keys)?;
                *decrypted = true;
                plain.bytes().to_vec()
            } else {
                f.data
            };
            let text = String::from_utf8(data).map_err(|e| RenderError::InvalidObject {
                origin: Origin {
                    file: f.path.clone(),
                    line: 1,
                    column: 1,
                },
                message: format!("not UTF-8: {e}"),
            })?;
            let parsed = if is_json {
                yaml::parse_json(&text, &f.path)?
            } else {
                yaml::parse_documents(&text, &f.path)?
            };
            docs.extend(parsed);
        }
        if docs.is_empty() {
            warnings.push(format!("{}: no manifests found", display_path(path)));
        }
        Ok(docs)
    }

    /// Write the commit's tree out once; reuse it for later renders.
    fn materialize(&self, snap: &Snapshot) -> Result<PathBuf, RenderError> {
        let dest = self.work.join("trees").join(snap.commit());
        if dest.join(".plumb-complete").exists() {
            return Ok(dest);
        }
        let parent = self.work.join("trees");
        std::fs::create_dir_all(&parent).map_err(|e| RenderError::io(&parent, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tree-")
            .tempdir_in(&parent)
            .map_err(|e| RenderError::io(&parent, e))?;
        snap.materialize(tmp.path())?;
        std::fs::write(tmp.path().join(".plumb-complete"), b"")
            .map_err(|e| RenderError::io(tmp.path(), e))?;
        let tmp_path = tmp.keep();
        if std::fs::rename(&tmp_path, &dest).is_err() {
            // Someone else finished first; theirs is as good as ours.
            let _ = std::fs::remove_dir_all(&tmp_path);
        }
        Ok(dest)
    }

    fn kustomize(
        &self,
        root: &Path,
        path: &str,
        opts: Option<&KustomizeSource>,
    ) -> Result<String, RenderError> {
        let target = match opts.filter(|o| has_kustomize_options(o)) {
            None => root.join(path),
            Some(o) => {
                // Options are applied by an overlay of our own that uses the
                // source as its base, so the work tree stays untouched.
                let overlay = serde_json::json!({
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [format!("../{}", if path.is_empty() { "." } else { path })],
                });
                let mut overlay = overlay;
                if let Some(p) = &o.name_prefix {
                    overlay["namePrefix"] = Value::from(p.as_str());
                }
                if let Some(s) = &o.name_suffix {
                    overlay["nameSuffix"] = Value::from(s.as_str());
                }
                if let Some(ns) = &o.namespace {
                    overlay["namespace"] = Value::from(ns.as_str());
                }
                if !o.common_labels.is_empty() {
                    overlay["commonLabels"] =
                        serde_json::to_value(&o.common_labels).unwrap_or_default();
                }
                if !o.common_annotations.is_empty() {
                    overlay["commonAnnotations"] =
                        serde_json::to_value(&o.common_annotations).unwrap_or_default();
                }
                if !o.images.is_empty() {
                    let images: Result<Vec<Value>, RenderError> =
                        o.images.iter().map(|i| parse_image(i)).collect();
                    overlay["images"] = Value::Array(images?);
                }
                let text = serde_json::to_string_pretty(&overlay).unwrap_or_default();
                let digest =
                    hex(&Sha256::digest(format!("{path}\n{text}").as_bytes()))[..16].to_string();
                let dir = root.join(format!(".plumb-overlay-{digest}"));
                std::fs::create_dir_all(&dir).map_err(|e| RenderError::io(&dir, e))?;
                let file = dir.join("kustomization.yaml");
                std::fs::write(&file, text).map_err(|e| RenderError::io(&file, e))?;
                dir
            }
        };
        let out = self
            .tools
            .run_kustomize(&target, root)
            .map_err(|message| RenderError::Tool {
                tool: "kustomize".into(),
                path: display_path(path),
                message,
            })?;
        Ok(out)
    }

    fn helm(
        &self,
        root: &Path,
        path: &str,
        req: &RenderRequest<'_>,
    ) -> Result<String, RenderError> {
        let chart = root.join(path);
        let helm = req.source.helm.clone().unwrap_or_default();
        let release = helm
            .release_name
            .clone()
            .unwrap_or_else(|| req.app_name.to_string());
        let mut args: Vec<String> = vec![
            "template".into(),
            release,
            chart.display().to_string(),
            "--include-crds".into(),
        ];
        if helm.skip_crds {
            args.retain(|a| a != "--include-crds");
            args.push("--skip-crds".into());
        }
        if let Some(ns) = req.namespace {
            args.push("--namespace".into());
            args.push(ns.to_string());
        }
        for vf in &helm.value_files {
            let rel = join_inside(path, vf).map_err(|reason| {
                RenderError::Snapshot(SnapshotError::Escapes {
                    path: vf.clone(),
                    reason,
                })
            })?;
            let abs = root.join(&rel);
            if !abs.is_file() {
                if helm.ignore_missing_value_files {
                    continue;
                }
                return Err(RenderError::InvalidOption(format!(
                    "helm.valueFiles: {vf} does not exist in the chart at {}",
                    display_path(path)
                )));
            }
            args.push("--values".into());
            args.push(abs.display().to_string());
        }
        let inline = inline_values(&helm)?;
        let _inline_file;
        if let Some(values) = inline {
            let f = tempfile::Builder::new()
                .prefix("values-")
                .suffix(".json")
                .tempfile_in(root)
                .map_err(|e| RenderError::io(root, e))?;
            std::fs::write(f.path(), serde_json::to_vec(&values).unwrap_or_default())
                .map_err(|e| RenderError::io(f.path(), e))?;
            args.push("--values".into());
            args.push(f.path().display().to_string());
            _inline_file = Some(f);
        }
        for p in &helm.parameters {
            args.push(
                if p.force_string {
                    "--set-string"
                } else {
                    "--set"
                }
                .into(),
            );
            args.push(format!("{}={}", p.name, p.value));
        }
        self.tools
            .run_helm(&args, root)
            .map_err(|message| RenderError::Tool {
                tool: "helm".into(),
                path: display_path(path),
                message,
            })
    }
}

fn has_kustomize_options(o: &KustomizeSource) -> bool {
    o.name_prefix.is_some()
        || o.name_suffix.is_some()
        || o.namespace.is_some()
        || !o.common_labels.is_empty()
        || !o.common_annotations.is_empty()
        || !o.images.is_empty()
}

/// `values` (a YAML string) and `valuesObject` merged, the object winning.
fn inline_values(helm: &HelmSource) -> Result<Option<Value>, RenderError> {
    let mut merged: Option<Value> = None;
    if let Some(text) = helm.values.as_deref().filter(|t| !t.trim().is_empty()) {
        let docs = yaml::parse_documents(text, "spec.source.helm.values")?;
        merged = docs.into_iter().next().map(|d| d.value);
    }
    if let Some(obj) = &helm.values_object {
        merged = Some(match merged {
            Some(mut base) => {
                merge_values(&mut base, obj);
                base
            }
            None => obj.clone(),
        });
    }
    Ok(merged)
}

fn merge_values(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge_values(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Parse kustomize's image override syntax into an `images:` entry.
fn parse_image(spec: &str) -> Result<Value, RenderError> {
    let bad = || {
        RenderError::InvalidOption(format!(
            "kustomize.images: {spec:?} is not NAME[=NEW_NAME][:TAG|@DIGEST]"
        ))
    };
    let (name, rest) = match spec.split_once('=') {
        Some((n, r)) => (n.trim(), Some(r.trim())),
        None => (spec.trim(), None),
    };
    let split_ref = |s: &str| -> (String, Option<String>, Option<String>) {
        if let Some((n, d)) = s.split_once('@') {
            return (n.to_string(), None, Some(d.to_string()));
        }
        let slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
        match s[slash..].rfind(':') {
            Some(i) => (
                s[..slash + i].to_string(),
                Some(s[slash + i + 1..].to_string()),
                None,
            ),
            None => (s.to_string(), None, None),
        }
    };
    let mut entry = serde_json::Map::new();
    match rest {
        Some(r) => {
            let (new_name, tag, digest) = split_ref(r);
            if name.is_empty() || new_name.is_empty() {
                return Err(bad());
            }
            entry.insert("name".into(), name.into());
            entry.insert("newName".into(), new_name.into());
            if let Some(t) = tag {
                entry.insert("newTag".into(), t.into());
            }
            if let Some(d) = digest {
                entry.insert("digest".into(), d.into());
            }
        }
        None => {
            let (n, tag, digest) = split_ref(name);
            if n.is_empty() || (tag.is_none() && digest.is_none()) {
                return Err(bad());
            }
            entry.insert("name".into(), n.into());
            if let Some(t) = tag {
                entry.insert("newTag".into(), t.into());
            }
            if let Some(d) = digest {
                entry.insert("digest".into(), d.into());
            }
        }
    }
    Ok(Value::Object(entry))
}

/// Join `rel` onto directory `base` (both repository-relative), refusing escapes.
fn join_inside(base: &str, rel: &str) -> Result<String, String> {
    if rel.starts_with('/') {
        return Err("absolute path".into());
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("`..` climbs above the repository root".into());
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// Helm's output marks each document with `# Source: chart/templates/x.yaml`;
/// use that as the origin so errors point into the chart.
fn helm_documents(text: &str, path: &str) -> Result<Vec<yaml::Document>, RenderError> {
    let mut docs = yaml::parse_documents(text, &format!("helm template {}", display_path(path)))?;
    let mut sources: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(s) = line.strip_prefix("# Source: ") {
            sources.push((i + 1, s.trim().to_string()));
        }
    }
    for d in &mut docs {
        if let Some((_, src)) = sources.iter().rev().find(|(l, _)| *l <= d.origin.line) {
            // `chartname/templates/x.yaml` → the file in the repository.
            let within = src.split_once('/').map(|(_, rest)| rest).unwrap_or(src);
            d.origin = Origin {
                file: if path.is_empty() {
                    within.to_string()
                } else {
                    format!("{path}/{within}")
                },
                line: 1,
                column: 1,
            };
        }
    }
    Ok(docs)
}

/// Validate one document as a Kubernetes object; expand `List`s.
fn expand_into(value: Value, origin: Origin, out: &mut Vec<Manifest>) -> Result<(), RenderError> {
    let invalid = |message: &str| RenderError::InvalidObject {
        origin: origin.clone(),
        message: message.to_string(),
    };
    let Value::Object(map) = &value else {
        return Err(invalid(
            "a manifest must be a mapping with apiVersion, kind and metadata",
        ));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(invalid("manifest has no `kind`"));
    }
    if api_version.is_empty() {
        return Err(invalid("manifest has no `apiVersion`"));
    }
    if kind.ends_with("List") && map.get("items").is_some_and(Value::is_array) {
        if let Some(Value::Array(items)) = map.get("items") {
            for item in items {
                expand_into(item.clone(), origin.clone(), out)?;
            }
        }
        return Ok(());
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        if value.pointer("/metadata/generateName").is_some() {
            return Err(invalid(
                "metadata.generateName is not supported; give the object a fixed name",
            ));
        }
        return Err(invalid("manifest has no `metadata.name`"));
    }
    out.push(Manifest {
        object: value,
        origin,
    });
    Ok(())
}

fn identity(m: &Manifest) -> String {
    let group = m
        .api_version()
        .split_once('/')
        .map(|(g, _)| g)
        .unwrap_or("");
    format!(
        "{}{}{}/{}",
        m.kind(),
        if group.is_empty() {
            String::new()
        } else {
            format!(".{group}")
        },
        m.namespace().map(|n| format!("/{n}")).unwrap_or_default(),
        m.name()
    )
}

fn check_duplicates(manifests: &[Manifest]) -> Result<(), RenderError> {
    let mut seen: BTreeMap<String, &Origin> = BTreeMap::new();
    for m in manifests {
        let id = identity(m);
        if let Some(first) = seen.get(&id) {
            return Err(RenderError::Duplicate {
                object: id,
                first: (*first).clone(),
                second: m.origin.clone(),
            });
        }
        seen.insert(id, &m.origin);
    }
    Ok(())
}

fn compile_glob(pattern: Option<&str>, field: &str) -> Result<Option<GlobSet>, RenderError> {
    let Some(p) = pattern.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let glob = Glob::new(p).map_err(|e| RenderError::InvalidOption(format!("{field}: {e}")))?;
    let mut b = GlobSetBuilder::new();
    b.add(glob);
    b.build()
        .map(Some)
        .map_err(|e| RenderError::InvalidOption(format!("{field}: {e}")))
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        ".".into()
    } else {
        path.to_string()
    }
}

fn cache_key(req: &RenderRequest<'_>, commit: &str) -> String {
    let key = serde_json::json!({
        "v": RENDER_VERSION,
        "commit": commit,
        "app": req.app_name,
        "namespace": req.namespace,
        "source": req.source,
    });
    hex(&Sha256::digest(key.to_string().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write a file atomically: temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Timeout for one `kustomize build` or `helm template`.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_parse_like_kustomize() {
        assert_eq!(
            parse_image("nginx=registry.local/nginx:1.27").unwrap(),
            serde_json::json!({"name": "nginx", "newName": "registry.local/nginx", "newTag": "1.27"})
        );
        assert_eq!(
            parse_image("nginx:1.27").unwrap(),
            serde_json::json!({"name": "nginx", "newTag": "1.27"})
        );
        assert_eq!(
            parse_image("registry:5000/app@sha256:abc").unwrap(),
            serde_json::json!({"name": "registry:5000/app", "digest": "sha256:abc"})
        );
        assert_eq!(
            parse_image("registry:5000/app:v2").unwrap(),
            serde_json::json!({"name": "registry:5000/app", "newTag": "v2"})
        );
        assert!(parse_image("nginx").is_err());
    }

    #[test]
    fn value_files_stay_inside() {
        assert_eq!(
            join_inside("charts/app", "../values/prod.yaml").unwrap(),
            "charts/values/prod.yaml"
        );
        assert!(join_inside("charts/app", "../../../etc/passwd").is_err());
        assert!(join_inside("charts", "/etc/passwd").is_err());
    }

    #[test]
    fn lists_expand_and_kindless_documents_fail() {
        let origin = Origin {
            file: "x.yaml".into(),
            line: 3,
            column: 1,
        };
        let mut out = Vec::new();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}
        ]});
        expand_into(list, origin.clone(), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        let err = expand_into(
            serde_json::json!({"apiVersion": "v1", "metadata": {"name": "x"}}),
            origin,
            &mut out,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "x.yaml:3:1: manifest has no `kind`");
    }

    #[test]
    fn inline_values_merge_object_over_string() {
        let helm = HelmSource {
            values: Some("a: 1\nb: {c: 2, d: 3}\n".into()),
            values_object: Some(serde_json::json!({"b": {"d": 4}, "e": 5})),
            ..Default::default()
        };
        assert_eq!(
            inline_values(&helm).unwrap().unwrap(),
            serde_json::json!({"a": 1, "b": {"c": 2, "d": 4}, "e": 5})
        );
    }
}
