//! Operating-system package databases: dpkg's `var/lib/dpkg/status` (and the
//! one-file-per-package `status.d/` of distroless images), apk's
//! `lib/apk/db/installed`, and the release files that say which distribution
//! and release those packages belong to (`etc/os-release`,
//! `etc/alpine-release`).

use super::purl::purl;
use super::{Ecosystem, Package};

/// Which distribution an image or directory holds, from its release files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Distro {
    /// os-release `ID` (`debian`, `ubuntu`, `alpine`).
    pub id: Option<String>,
    /// os-release `VERSION_ID` (`12`, `22.04`, `3.20.3`).
    pub version_id: Option<String>,
    /// The contents of `etc/alpine-release` (`3.20.3`).
    pub alpine_release: Option<String>,
}

impl Distro {
    /// Read an os-release file's `ID` and `VERSION_ID`.
    pub fn read_os_release(&mut self, text: &str) {
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_owned();
            match key.trim() {
                "ID" => self.id = Some(value),
                "VERSION_ID" => self.version_id = Some(value),
                _ => {}
            }
        }
    }

    /// Debian or Ubuntu, with the release OSV names, and the purl namespace
    /// and `distro` qualifier.
    fn dpkg(&self) -> (Ecosystem, Option<String>, &'static str, String) {
        let ubuntu = self.id.as_deref() == Some("ubuntu");
        let (ecosystem, namespace) = if ubuntu {
            (Ecosystem::Ubuntu, "ubuntu")
        } else {
            (Ecosystem::Debian, "debian")
        };
        let release = self.version_id.clone().filter(|v| !v.is_empty());
        let distro = release
            .as_deref()
            .map(|r| format!("{namespace}-{r}"))
            .unwrap_or_default();
        (ecosystem, release, namespace, distro)
    }

    /// Alpine's release as OSV names it (`v3.20`) and the `distro` qualifier.
    fn alpine(&self) -> (Option<String>, String) {
        let full = self
            .alpine_release
            .clone()
            .or_else(|| self.version_id.clone())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        let release = full.as_deref().map(|v| {
            let mut parts = v.split('.');
            match (parts.next(), parts.next()) {
                (Some(major), Some(minor)) => format!("v{major}.{minor}"),
                _ => format!("v{v}"),
            }
        });
        let distro = full.map(|v| format!("alpine-{v}")).unwrap_or_default();
        (release, distro)
    }
}

/// The paragraphs of a deb822-style file as (field, value) lists; a value's
/// continuation lines are joined with newlines.
fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            current.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The installed packages of a dpkg status file (or one `status.d/` file).
/// A paragraph without `Status` (as in `status.d/`) counts as installed.
pub(crate) fn dpkg(location: &str, text: &str, distro: &Distro) -> Vec<Package> {
    let (ecosystem, release, namespace, distro) = distro.dpkg();
    let mut out = Vec::new();
    for paragraph in paragraphs(text) {
        let field = |name: &str| {
            paragraph
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (Some(name), Some(version)) = (field("Package"), field("Version")) else {
            continue;
        };
        if let Some(status) = field("Status")
            && status.split_whitespace().nth(2) != Some("installed")
        {
            continue;
        }
        let arch = field("Architecture").unwrap_or_default();
        let source = field("Source")
            .and_then(|s| s.split_whitespace().next())
            .filter(|s| *s != name)
            .map(str::to_owned);
        let mut qualifiers = vec![("arch", arch), ("distro", distro.as_str())];
        if let Some(s) = &source {
            qualifiers.push(("upstream", s.as_str()));
        }
        out.push(Package {
            ecosystem,
            release: release.clone(),
            name: name.to_owned(),
            version: version.to_owned(),
            purl: purl("deb", &format!("{namespace}/{name}"), version, &qualifiers),
            source,
            location: location.to_owned(),
        });
    }
    out
}

/// The packages of apk's installed database: records of one-letter fields
/// (`P:` name, `V:` version, `A:` architecture, `o:` origin) separated by
/// blank lines.
pub(crate) fn apk(location: &str, text: &str, distro: &Distro) -> Vec<Package> {
    let (release, distro) = distro.alpine();
    let mut out = Vec::new();
    let mut record: Vec<(char, &str)> = Vec::new();
    let mut flush = |record: &mut Vec<(char, &str)>| {
        let field = |k: char| record.iter().find(|(f, _)| *f == k).map(|(_, v)| *v);
        if let (Some(name), Some(version)) = (field('P'), field('V')) {
            let source = field('o').filter(|o| *o != name).map(str::to_owned);
            let arch = field('A').unwrap_or_default();
            let mut qualifiers = vec![("arch", arch), ("distro", distro.as_str())];
            if let Some(s) = &source {
                qualifiers.push(("upstream", s.as_str()));
            }
            out.push(Package {
                ecosystem: Ecosystem::Alpine,
                release: release.clone(),
                name: name.to_owned(),
                version: version.to_owned(),
                purl: purl("apk", &format!("alpine/{name}"), version, &qualifiers),
                source,
                location: location.to_owned(),
            });
        }
        record.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut record);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(key), Some(':')) = (chars.next(), chars.next()) {
            record.push((key, &line[2..]));
        }
    }
    flush(&mut record);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\nDescription: GNU C Library\n shared libraries\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b2\n";

    #[test]
    fn dpkg_reads_installed_packages_with_sources() {
        let mut distro = Distro::default();
        distro.read_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n",
        );
        let p = dpkg("var/lib/dpkg/status", STATUS, &distro);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "libc6");
        assert_eq!(p[0].ecosystem, Ecosystem::Debian);
        assert_eq!(p[0].release.as_deref(), Some("12"));
        assert_eq!(p[0].source.as_deref(), Some("glibc"));
        assert_eq!(
            p[0].purl,
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
        );
        assert_eq!(
            p[1].purl,
            "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12"
        );
    }

    #[test]
    fn ubuntu_is_told_apart() {
        let mut distro = Distro::default();
        distro.read_os_release("ID=ubuntu\nVERSION_ID=\"22.04\"\n");
        let p = dpkg("s", "Package: a\nVersion: 1\n", &distro);
        assert_eq!(p[0].ecosystem, Ecosystem::Ubuntu);
        assert_eq!(p[0].purl, "pkg:deb/ubuntu/a@1?distro=ubuntu-22.04");
    }

    #[test]
    fn apk_reads_records() {
        let distro = Distro {
            alpine_release: Some("3.20.3\n".into()),
            ..Distro::default()
        };
        let db = "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\no:musl\n\nP:libcrypto3\nV:3.3.2-r0\nA:x86_64\no:openssl\n";
        let p = apk("lib/apk/db/installed", db, &distro);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].release.as_deref(), Some("v3.20"));
        assert_eq!(p[0].source, None);
        assert_eq!(p[1].source.as_deref(), Some("openssl"));
        assert_eq!(
            p[1].purl,
            "pkg:apk/alpine/libcrypto3@3.3.2-r0?arch=x86_64&distro=alpine-3.20.3&upstream=openssl"
        );
    }
}
