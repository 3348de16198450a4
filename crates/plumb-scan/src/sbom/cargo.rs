//! Rust crates: the `[[package]]` tables of a `Cargo.lock`, and the
//! dependency list cargo-auditable embeds in binaries (ELF section
//! `.dep-v0`: zlib-compressed JSON). Only crates from crates.io are reported:
//! path, git and other-registry crates have no crates.io advisories.

use std::io::Read as _;

use serde::Deserialize;

use super::purl::purl;
use super::{Ecosystem, Package, SbomError, elf};

/// crates.io's index, as `source` in a Cargo.lock (git and sparse protocol).
const CRATES_IO: [&str; 2] = [
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

/// The largest decompressed `.dep-v0` accepted.
const MAX_AUDIT_JSON: u64 = 16 << 20;

fn crate_package(location: &str, name: &str, version: &str) -> Package {
    Package {
        ecosystem: Ecosystem::CratesIo,
        release: None,
        name: name.to_owned(),
        version: version.to_owned(),
        purl: purl("cargo", name, version, &[]),
        source: None,
        location: location.to_owned(),
    }
}

/// The crates.io packages of a Cargo.lock. The file is TOML written by
/// cargo: one `key = "value"` per line inside `[[package]]` tables, which is
/// all this reads.
pub(crate) fn lockfile(location: &str, text: &str) -> Result<Vec<Package>, SbomError> {
    let mut out = Vec::new();
    let mut current: Option<(usize, [Option<String>; 3])> = None;
    let mut finish = |entry: Option<(usize, [Option<String>; 3])>| -> Result<(), SbomError> {
        let Some((line, [name, version, source])) = entry else {
            return Ok(());
        };
        let (Some(name), Some(version)) = (name, version) else {
            return Err(SbomError::parse(
                location,
                Some(line),
                "a [[package]] without name or version",
            ));
        };
        if source.is_some_and(|s| CRATES_IO.contains(&s.as_str())) {
            out.push(crate_package(location, &name, &version));
        }
        Ok(())
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            finish(current.take())?;
            if line == "[[package]]" {
                current = Some((i + 1, [None, None, None]));
            }
            continue;
        }
        let Some((_, fields)) = current.as_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let slot = match key.trim() {
            "name" => 0,
            "version" => 1,
            "source" => 2,
            _ => continue,
        };
        let value = value.trim();
        let Some(value) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
            return Err(SbomError::parse(
                location,
                Some(i + 1),
                "expected a quoted string",
            ));
        };
        fields[slot] = Some(value.to_owned());
    }
    finish(current.take())?;
    Ok(out)
}

#[derive(Deserialize)]
struct AuditData {
    packages: Vec<AuditPackage>,
}

#[derive(Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    source: String,
}

/// The crates.io packages cargo-auditable recorded in an ELF binary, or
/// none when it has no `.dep-v0` section.
pub(crate) fn auditable(location: &str, binary: &[u8]) -> Result<Vec<Package>, SbomError> {
    let Some(section) = elf::section(binary, ".dep-v0") else {
        return Ok(Vec::new());
    };
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(section)
        .take(MAX_AUDIT_JSON)
        .read_to_end(&mut json)
        .map_err(|e| SbomError::parse(location, None, format!("cargo-auditable data: {e}")))?;
    let data: AuditData = serde_json::from_slice(&json)
        .map_err(|e| SbomError::parse(location, None, format!("cargo-auditable data: {e}")))?;
    Ok(data
        .packages
        .iter()
        .filter(|p| p.source == "crates.io")
        .map(|p| crate_package(location, &p.name, &p.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockfile_keeps_crates_io_packages() {
        let lock = "# generated\nversion = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\n \"itoa\",\n]\n\n[[package]]\nname = \"itoa\"\nversion = \"1.0.15\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"4a5f13b858c8d314ee3e8f639011f7ccefe71f97f96e50151fb991f267928e2c\"\n\n[[package]]\nname = \"mine\"\nversion = \"0.2.0\"\nsource = \"git+https://example.invalid/mine#abc\"\n";
        let p = lockfile("Cargo.lock", lock).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].purl, "pkg:cargo/itoa@1.0.15");
    }

    #[test]
    fn broken_lockfile_names_the_line() {
        let err = lockfile("app/Cargo.lock", "[[package]]\nname = itoa\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "app/Cargo.lock:2: expected a quoted string"
        );
    }

    #[test]
    fn no_section_no_packages() {
        assert!(auditable("bin/x", b"\x7fELF").unwrap().is_empty());
    }
}
