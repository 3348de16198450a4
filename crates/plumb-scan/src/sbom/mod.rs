//! The software bill of materials: which packages an image or a directory
//! holds, in which version, from which ecosystem, found where.
//!
//! [`Sbom`] is the contract between the extractors (which fill it) and the
//! matcher (which reads it). Writers for CycloneDX 1.6 and SPDX 2.3 live
//! beside it.

use serde::{Deserialize, Serialize};

use crate::version::VersionScheme;

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
