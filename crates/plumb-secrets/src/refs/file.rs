//! `file://` references: files on the machine that applies, under roots the
//! operator allowed (a mounted Secret volume, a CSI secrets mount, Docker
//! secrets). Anyone who can commit to Git writes references, so without a
//! root no file can be read, and no path may leave its root (symbolic links
//! are followed, then checked).

use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{MAX_BYTES, RefError, Values, Wanted, dotenv_fields, json_fields};

/// The directories `file://` references may read under.
#[derive(Debug, Clone, Default)]
pub struct FileRoots {
    roots: Vec<PathBuf>,
}

impl FileRoots {
    /// Allow reading under each of `roots` (they need not exist yet).
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> FileRoots {
        FileRoots {
            roots: roots.into_iter().collect(),
        }
    }

    /// Whether any root is allowed.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The fields `path` holds, for `wanted`:
    /// - a directory: each regular file is a field (names starting with `.`
    ///   skipped, as Kubernetes' `..data` links are); with `#FIELD`, the file
    ///   of that name;
    /// - a file, for one key without `#FIELD`: its whole content;
    /// - a file otherwise: its fields, as JSON (`.json`), YAML (`.yaml`,
    ///   `.yml`) or `KEY=VALUE` lines.
    pub fn read(&self, path: &Path, wanted: &Wanted) -> Result<Values, RefError> {
        let uri = wanted.reference.uri.as_str();
        let real = self.check(path, uri)?;
        let meta = std::fs::metadata(&real).map_err(|e| RefError::new(uri, io_message(&e)))?;
        if meta.is_dir() {
            return match &wanted.reference.field {
                Some(field) => {
                    let file = self.check(&path.join(field), uri)?;
                    let mut out = Values::new();
                    out.insert(field.clone(), read_capped(&file, uri)?);
                    Ok(out)
                }
                None => self.read_dir(&real, uri),
            };
        }
        let bytes = read_capped(&real, uri)?;
        if wanted.reference.field.is_none() && wanted.key.is_some() {
            let mut out = Values::new();
            out.insert(String::new(), bytes);
            return Ok(out);
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| RefError::new(uri, "the file is not UTF-8 text, so it has no fields"))?;
        let ext = real
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "json" => {
                let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                    RefError::new(
                        uri,
                        format!("not JSON (line {}, column {})", e.line(), e.column()),
                    )
                })?;
                json_fields(&v, uri)
            }
            "yaml" | "yml" => {
                let v: serde_json::Value = serde_saphyr::from_str(text)
                    .map_err(|_| RefError::new(uri, "not a YAML map"))?;
                json_fields(&v, uri)
            }
            _ => dotenv_fields(text, uri),
        }
    }

    fn read_dir(&self, dir: &Path, uri: &str) -> Result<Values, RefError> {
        let mut out = Values::new();
        let mut total = 0usize;
        let entries = std::fs::read_dir(dir).map_err(|e| RefError::new(uri, io_message(&e)))?;
        for entry in entries {
            let entry = entry.map_err(|e| RefError::new(uri, io_message(&e)))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let file = self.check(&entry.path(), uri)?;
            if !std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let bytes = read_capped(&file, uri)?;
            total += bytes.len();
            if total > MAX_BYTES {
                return Err(RefError::new(uri, format!("more than {MAX_BYTES} bytes")));
            }
            out.insert(name.to_string(), bytes);
        }
        Ok(out)
    }

    /// `path` with links resolved, when it lies under a root.
    fn check(&self, path: &Path, uri: &str) -> Result<PathBuf, RefError> {
        if self.roots.is_empty() {
            return Err(RefError::new(
                uri,
                "file references are off; allow a directory with --secret-ref-root",
            ));
        }
        let real = path
            .canonicalize()
            .map_err(|e| RefError::new(uri, io_message(&e)))?;
        let inside = self
            .roots
            .iter()
            .any(|root| root.canonicalize().is_ok_and(|r| real.starts_with(&r)));
        if !inside {
            return Err(RefError::new(
                uri,
                "the path (after following links) is outside every --secret-ref-root",
            ));
        }
        Ok(real)
    }
}

fn read_capped(path: &Path, uri: &str) -> Result<Zeroizing<Vec<u8>>, RefError> {
    let file = std::fs::File::open(path).map_err(|e| RefError::new(uri, io_message(&e)))?;
    let mut out = Zeroizing::new(Vec::new());
    file.take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RefError::new(uri, io_message(&e)))?;
    if out.len() > MAX_BYTES {
        return Err(RefError::new(
            uri,
            format!("the file is larger than {MAX_BYTES} bytes"),
        ));
    }
    Ok(out)
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => format!("cannot read it: {e}"),
    }
}
