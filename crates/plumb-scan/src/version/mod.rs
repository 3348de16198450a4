//! Version order per ecosystem.
//!
//! OSV ranges are written in each ecosystem's own version language, so each
//! one has its own comparison: Debian's dpkg order ([`dpkg`]), Alpine's apk
//! order ([`apk`]), SemVer 2.0 for crates.io, npm and Go (with Go's
//! `+incompatible` and pseudo-versions, [`semver`]), and PEP 440 for Python
//! ([`pep440`]). Every comparison is total: text a scheme cannot read is
//! ordered bytewise rather than rejected, because a scanner must still say
//! something about a package with an odd version.

pub mod apk;
pub mod dpkg;
pub mod pep440;
pub mod semver;

use std::cmp::Ordering;

/// Which version language a comparison speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionScheme {
    /// Debian and Ubuntu packages (`dpkg --compare-versions`).
    Dpkg,
    /// Alpine packages (apk-tools).
    Apk,
    /// SemVer 2.0 (crates.io, npm, Go modules).
    Semver,
    /// PEP 440 (PyPI).
    Pep440,
}

impl VersionScheme {
    /// Compare `a` with `b` in this scheme.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            VersionScheme::Dpkg => dpkg::compare(a, b),
            VersionScheme::Apk => apk::compare(a, b),
            VersionScheme::Semver => semver::compare(a, b),
            VersionScheme::Pep440 => pep440::compare(a, b),
        }
    }
}
