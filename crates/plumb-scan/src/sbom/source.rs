//! Sources: where the files that name packages come from. A directory is
//! walked (symbolic links are not followed); an image's layers are read in
//! order with whiteouts applied ([`super::image`]). Both keep only the files
//! an extractor wants, chosen by [`want`] from path, mode and size, so that
//! memory holds a few small text files and, per binary, only the packages
//! found in it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::{Package, SbomError, cargo, elf, golang};

/// The largest text file (a lock file, a package database) read.
const TEXT_CAP: u64 = 64 << 20;
/// The largest executable examined for embedded package lists.
const BINARY_CAP: u64 = 256 << 20;

/// What the extractors want of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Its text: a package database, release file, lock file or metadata.
    Text,
    /// Its packages, if it is an ELF binary.
    Binary,
    /// Nothing.
    Nothing,
}

/// A file kept from a source, keyed by its path relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// A text file's bytes.
    Text(Vec<u8>),
    /// The packages embedded in a binary (possibly none).
    Binary(Vec<Package>),
}

/// The files kept, by path (`/`-separated, relative, no leading `./`).
pub(crate) type FileSet = BTreeMap<String, Found>;

/// What the extractors want of the regular file at `path` (relative, `/`
/// separated).
pub(crate) fn want(path: &str, executable: bool, size: u64) -> Want {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let text = matches!(
        path,
        "var/lib/dpkg/status"
            | "lib/apk/db/installed"
            | "etc/os-release"
            | "usr/lib/os-release"
            | "etc/alpine-release"
    ) || (parent == "var/lib/dpkg/status.d" && !name.ends_with(".md5sums"))
        || matches!(
            name,
            "Cargo.lock" | "package-lock.json" | "requirements.txt"
        )
        || (name == "METADATA" && parent.ends_with(".dist-info"));
    if text {
        if size <= TEXT_CAP {
            Want::Text
        } else {
            Want::Nothing
        }
    } else if executable && (4..=BINARY_CAP).contains(&size) {
        Want::Binary
    } else {
        Want::Nothing
    }
}

/// Read what `want` asked for from `reader` (a file of `size` bytes): the
/// text, or a binary's packages; `None` when a would-be binary is not ELF.
/// `broken` says how a read failure is reported.
pub(crate) fn take(
    path: &str,
    want: Want,
    size: u64,
    mut reader: impl Read,
    broken: impl Fn(std::io::Error) -> SbomError,
) -> Result<Option<Found>, SbomError> {
    match want {
        Want::Nothing => Ok(None),
        Want::Text => {
            let mut text = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            reader
                .take(TEXT_CAP)
                .read_to_end(&mut text)
                .map_err(broken)?;
            Ok(Some(Found::Text(text)))
        }
        Want::Binary => {
            let mut magic = [0u8; 4];
            if reader.read_exact(&mut magic).is_err() || &magic != elf::MAGIC {
                return Ok(None);
            }
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            data.extend_from_slice(&magic);
            reader
                .take(BINARY_CAP)
                .read_to_end(&mut data)
                .map_err(broken)?;
            Ok(Some(Found::Binary(binary_packages(path, &data)?)))
        }
    }
}

/// The packages embedded in an ELF binary: cargo-auditable's list, Go's
/// build information.
fn binary_packages(path: &str, data: &[u8]) -> Result<Vec<Package>, SbomError> {
    let mut out = cargo::auditable(path, data)?;
    out.extend(golang::buildinfo(path, data));
    Ok(out)
}

/// Walk `root` and keep the files the extractors want.
pub(crate) fn walk(root: &Path) -> Result<FileSet, SbomError> {
    let mut files = FileSet::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(SbomError::read(&dir))?;
        for entry in entries {
            let entry = entry.map_err(SbomError::read(&dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(&path).map_err(SbomError::read(&path))?;
            if meta.is_dir() {
                stack.push((path, rel_path));
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let w = want(&rel_path, executable(&meta), meta.len());
            if w == Want::Nothing {
                continue;
            }
            let file = std::fs::File::open(&path).map_err(SbomError::read(&path))?;
            let reader = std::io::BufReader::new(file);
            let found = take(&rel_path, w, meta.len(), reader, SbomError::read(&path))?;
            if let Some(found) = found {
                files.insert(rel_path, found);
            }
        }
    }
    Ok(files)
}

#[cfg(unix)]
fn executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_meta: &std::fs::Metadata) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_files() {
        assert_eq!(want("var/lib/dpkg/status", false, 10), Want::Text);
        assert_eq!(want("var/lib/dpkg/status.d/base", false, 10), Want::Text);
        assert_eq!(
            want("var/lib/dpkg/status.d/base.md5sums", false, 10),
            Want::Nothing
        );
        assert_eq!(want("srv/app/Cargo.lock", false, 10), Want::Text);
        assert_eq!(
            want(
                "usr/lib/python3/site-packages/x-1.0.dist-info/METADATA",
                false,
                10
            ),
            Want::Text
        );
        assert_eq!(want("usr/share/doc/METADATA", false, 10), Want::Nothing);
        assert_eq!(want("usr/bin/app", true, 1000), Want::Binary);
        assert_eq!(want("usr/bin/app", false, 1000), Want::Nothing);
        assert_eq!(want("usr/bin/huge", true, BINARY_CAP + 1), Want::Nothing);
    }

    #[test]
    fn non_elf_executables_are_dropped() {
        let got = take(
            "bin/sh-script",
            Want::Binary,
            12,
            &b"#!/bin/sh\necho"[..],
            |e| SbomError::parse("x", None, e.to_string()),
        )
        .unwrap();
        assert_eq!(got, None);
    }
}
