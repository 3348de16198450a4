//! Loading Application manifests from files and directories.

use std::path::{Path, PathBuf};

use plumb_model::application::{Application, ApplicationError};

use crate::yaml::{self, Origin};

/// An Application and the file it was read from.
#[derive(Debug, Clone)]
pub struct ApplicationFile {
    /// The Application.
    pub application: Application,
    /// Where it was defined.
    pub origin: Origin,
    /// Unknown or unsupported fields.
    pub warnings: Vec<String>,
}

/// Why an Application file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is too big to be an Application.
    #[error("{path}: {size} bytes is too large for an Application manifest (limit {limit})")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// YAML syntax.
    #[error(transparent)]
    Parse(#[from] yaml::ParseError),
    /// Not an Application, or an invalid one.
    #[error("{origin}: {source}")]
    Invalid {
        /// Where.
        origin: Origin,
        /// What.
        source: ApplicationError,
    },
    /// The file holds no documents.
    #[error("{0}: no Application found")]
    Empty(PathBuf),
}

/// The largest Application file plumb reads.
const MAX_APPLICATION_FILE: u64 = 4 * 1024 * 1024;

/// Read every Application in a YAML file (several may be separated by `---`).
pub fn load_file(path: &Path) -> Result<Vec<ApplicationFile>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_APPLICATION_FILE {
        return Err(LoadError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit: MAX_APPLICATION_FILE,
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let shown = path.display().to_string();
    let docs = yaml::parse_documents(&text, &shown)?;
    if docs.is_empty() {
        return Err(LoadError::Empty(path.to_path_buf()));
    }
    docs.into_iter()
        .map(|d| {
            let loaded =
                Application::from_value(&d.value).map_err(|source| LoadError::Invalid {
                    origin: d.origin.clone(),
                    source,
                })?;
            Ok(ApplicationFile {
                application: loaded.application,
                origin: d.origin,
                warnings: loaded.warnings,
            })
        })
        .collect()
}

/// Read Applications from files and directories (`*.yaml`, `*.yml`, one level deep).
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<ApplicationFile>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| LoadError::Read {
                    path: p.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .and_then(|x| x.to_str())
                            .is_some_and(|x| x == "yaml" || x == "yml")
                })
                .collect();
            entries.sort();
            for f in entries {
                out.extend(load_file(&f)?);
            }
        } else {
            out.extend(load_file(p)?);
        }
    }
    Ok(out)
}
