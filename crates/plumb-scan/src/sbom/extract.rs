//! From kept files to packages: each file goes to the extractor its path
//! names; OS package databases are read together with the release files
//! that say which distribution they belong to.

use super::os::{self, Distro};
use super::source::{FileSet, Found};
use super::{Package, SbomError, cargo, npm, python};

/// The packages in `files`, sorted and without duplicates.
pub(crate) fn extract(files: &FileSet) -> Result<Vec<Package>, SbomError> {
    let text = |path: &str| match files.get(path) {
        Some(Found::Text(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    };
    let mut distro = Distro::default();
    if let Some(t) = text("etc/os-release").or_else(|| text("usr/lib/os-release")) {
        distro.read_os_release(&t);
    }
    distro.alpine_release = text("etc/alpine-release").map(|t| t.trim().to_owned());

    let mut out = Vec::new();
    for (path, found) in files {
        let bytes = match found {
            Found::Binary(packages) => {
                out.extend(packages.iter().cloned());
                continue;
            }
            Found::Text(bytes) => bytes,
        };
        let text = String::from_utf8_lossy(bytes);
        let name = path.rsplit('/').next().unwrap_or(path);
        match name {
            "Cargo.lock" => out.extend(cargo::lockfile(path, &text)?),
            "package-lock.json" => out.extend(npm::lockfile(path, &text)?),
            "requirements.txt" => out.extend(python::requirements(path, &text)),
            "METADATA" => out.extend(python::metadata(path, &text)?),
            "installed" if path == "lib/apk/db/installed" => {
                out.extend(os::apk(path, &text, &distro));
            }
            _ if path == "var/lib/dpkg/status" || path.starts_with("var/lib/dpkg/status.d/") => {
                out.extend(os::dpkg(path, &text, &distro));
            }
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
