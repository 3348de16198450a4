//! The software bill of materials: which packages an image or a directory
//! holds, in which version, from which ecosystem, found where.
//!
//! [`Sbom`] is the contract between the extractors (which fill it) and the
//! matcher (which reads it). Writers for CycloneDX 1.6 and SPDX 2.3 live
//! beside it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::version::VersionScheme;

mod cargo;
pub mod cyclonedx;
mod elf;
mod extract;
mod golang;
mod image;
mod npm;
mod os;
mod purl;
mod python;
mod source;
pub mod spdx;

pub use image::{read_image, read_layer_files};

use extract::extract;

/// The ecosystem a package comes from, named as OSV names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ecosystem {
    /// Debian packages (dpkg). OSV's ecosystem is `Debian:<release>`.
    Debian,
    /// Ubuntu packages (dpkg). OSV's ecosystem is `Ubuntu:<release>`.
    Ubuntu,
    /// Alpine packages (apk). OSV's ecosystem is `Alpine:v<major>.<minor>`.
    Alpine,
    /// Rust crates from crates.io.
    #[serde(rename = "crates.io")]
    CratesIo,
    /// Go modules.
    Go,
    /// npm packages.
    #[serde(rename = "npm")]
    Npm,
    /// Python packages from PyPI.
    PyPI,
}

impl Ecosystem {
    /// The name OSV records use (without a release suffix).
    pub fn osv_name(self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Ubuntu => "Ubuntu",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Go => "Go",
            Ecosystem::Npm => "npm",
            Ecosystem::PyPI => "PyPI",
        }
    }

    /// Read an OSV ecosystem name, ignoring any `:<release>` suffix.
    pub fn from_osv(name: &str) -> Option<Ecosystem> {
        let base = name.split(':').next().unwrap_or(name);
        Some(match base {
            "Debian" => Ecosystem::Debian,
            "Ubuntu" => Ecosystem::Ubuntu,
            "Alpine" => Ecosystem::Alpine,
            "crates.io" => Ecosystem::CratesIo,
            "Go" => Ecosystem::Go,
            "npm" => Ecosystem::Npm,
            "PyPI" => Ecosystem::PyPI,
            _ => return None,
        })
    }

    /// The version order this ecosystem's versions follow.
    pub fn scheme(self) -> VersionScheme {
        match self {
            Ecosystem::Debian | Ecosystem::Ubuntu => VersionScheme::Dpkg,
            Ecosystem::Alpine => VersionScheme::Apk,
            Ecosystem::CratesIo | Ecosystem::Go | Ecosystem::Npm => VersionScheme::Semver,
            Ecosystem::PyPI => VersionScheme::Pep440,
        }
    }
}

/// One package found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Package {
    /// Where it comes from.
    pub ecosystem: Ecosystem,
    /// The distribution release for OS packages (`12` for Debian bookworm,
    /// `v3.20` for Alpine, `22.04` for Ubuntu), as OSV's ecosystem suffix
    /// spells it; `None` for language packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Its name in its ecosystem (a Go module path, an npm name with scope).
    pub name: String,
    /// Its version, as the ecosystem writes it.
    pub version: String,
    /// Its package URL (`pkg:deb/debian/openssl@3.0.11-1?arch=amd64`).
    pub purl: String,
    /// For OS packages, the source package a vulnerability database keys
    /// on, when it differs from the name (dpkg `Source:`, apk `o:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The file it was found in, relative to the image root or directory.
    pub location: String,
}

/// Everything a source holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sbom {
    /// What was read: an image reference or a directory, as given.
    pub subject: String,
    /// The image manifest's digest, for an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The packages, sorted and without duplicates.
    pub packages: Vec<Package>,
}

impl Sbom {
    /// An SBOM of `packages`, which are sorted and freed of duplicates here.
    pub fn new(subject: String, digest: Option<String>, mut packages: Vec<Package>) -> Sbom {
        packages.sort();
        packages.dedup();
        Sbom {
            subject,
            digest,
            packages,
        }
    }
}

/// Why an SBOM could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path given is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file that names packages is malformed.
    #[error("{}: {message}", located(.file, *.line))]
    Parse {
        /// The file, relative to the image root or directory.
        file: String,
        /// The line, when known (1-based).
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The registry could not serve the image.
    #[error("cannot read {subject}: {source}")]
    Registry {
        /// The image reference.
        subject: String,
        /// Why.
        source: plumb_oci::client::ClientError,
    },
    /// The image's manifests are not something plumb reads.
    #[error("{subject}: {message}")]
    Image {
        /// The image reference.
        subject: String,
        /// What is wrong.
        message: String,
    },
    /// A layer is not a readable tar archive.
    #[error("layer {layer}: {message}")]
    Layer {
        /// The layer's digest.
        layer: String,
        /// What is wrong.
        message: String,
    },
}

fn located(file: &str, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_owned(),
    }
}

impl SbomError {
    pub(crate) fn parse(file: &str, line: Option<usize>, message: impl Into<String>) -> SbomError {
        SbomError::Parse {
            file: file.to_owned(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn read(path: &Path) -> impl Fn(std::io::Error) -> SbomError + '_ {
        move |source| SbomError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// List the packages in the directory tree at `path` (its subject is the
/// path as given; symbolic links are not followed).
pub fn read_dir(path: &Path) -> Result<Sbom, SbomError> {
    let meta = std::fs::metadata(path).map_err(SbomError::read(path))?;
    if !meta.is_dir() {
        return Err(SbomError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    let files = source::walk(path)?;
    Ok(Sbom::new(
        path.display().to_string(),
        None,
        extract(&files)?,
    ))
}
