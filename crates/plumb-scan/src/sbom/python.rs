//! Python packages: installed distributions (`*.dist-info/METADATA`, whose
//! `Name:` and `Version:` headers name them) and `requirements.txt` pins
//! (`name==version`; every other kind of line is ignored).

use super::purl::purl;
use super::{Ecosystem, Package, SbomError};

/// A project name normalised per PEP 503: lower case, runs of `-`, `_` and
/// `.` folded to one `-`.
pub(crate) fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut separator = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            separator = true;
        } else {
            if separator && !out.is_empty() {
                out.push('-');
            }
            separator = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn pypi_package(location: &str, name: &str, version: &str) -> Package {
    Package {
        ecosystem: Ecosystem::PyPI,
        release: None,
        name: name.to_owned(),
        version: version.to_owned(),
        purl: purl("pypi", &normalise(name), version, &[]),
        source: None,
        location: location.to_owned(),
    }
}

/// The distribution a METADATA file describes.
pub(crate) fn metadata(location: &str, text: &str) -> Result<Vec<Package>, SbomError> {
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            match key.trim().to_ascii_lowercase().as_str() {
                "name" => name = Some(value.trim()),
                "version" => version = Some(value.trim()),
                _ => {}
            }
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => {
            Ok(vec![pypi_package(location, n, v)])
        }
        _ => Err(SbomError::parse(
            location,
            None,
            "METADATA without Name and Version headers",
        )),
    }
}

/// The exact pins of a requirements file.
pub(crate) fn requirements(location: &str, text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let line = line.split(';').next().unwrap_or_default();
        let line = line.split(" --").next().unwrap_or_default().trim();
        if line.starts_with('-') || line.contains("===") {
            continue;
        }
        let Some((name, version)) = line.split_once("==") else {
            continue;
        };
        let name = name.split('[').next().unwrap_or_default().trim();
        let version = version.trim();
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        let valid_version =
            !version.is_empty() && !version.contains(['*', ',', ' ', '<', '>', '=', '!', '~']);
        if valid_name && valid_version {
            out.push(pypi_package(location, name, version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_for_the_purl() {
        assert_eq!(normalise("Zope.Interface__x"), "zope-interface-x");
        let p = metadata(
            "x.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: Jinja2\nVersion: 3.1.4\n\nName: body\n",
        )
        .unwrap();
        assert_eq!(p[0].name, "Jinja2");
        assert_eq!(p[0].purl, "pkg:pypi/jinja2@3.1.4");
    }

    #[test]
    fn only_exact_pins_count() {
        let text = "# pins\nrequests==2.31.0 --hash=sha256:abc\nurllib3[socks]==1.26.18 ; python_version >= \"3\"\nflask>=2\n-r other.txt\nDjango==4.2.*\nboto3 == 1.34.0\n";
        let p = requirements("requirements.txt", text);
        let got: Vec<_> = p.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            got,
            [
                "pkg:pypi/requests@2.31.0",
                "pkg:pypi/urllib3@1.26.18",
                "pkg:pypi/boto3@1.34.0"
            ]
        );
    }

    #[test]
    fn metadata_without_version_is_an_error() {
        let err = metadata("a.dist-info/METADATA", "Name: a\n").unwrap_err();
        assert!(err.to_string().contains("a.dist-info/METADATA"));
    }
}
