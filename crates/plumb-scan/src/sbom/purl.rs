//! Package URLs, written the way the purl specification spells them:
//! `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`, each part percent-encoded
//! except for the unreserved characters and `:`, qualifiers sorted by key.

/// Percent-encode `s` for one purl component.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A purl from its parts. `name` may hold `/`-separated segments (a Go
/// module path, an npm `@scope/name`); each segment is encoded alone.
/// Qualifiers with empty values are left out.
pub(crate) fn purl(kind: &str, name: &str, version: &str, qualifiers: &[(&str, &str)]) -> String {
    let path: Vec<String> = name.split('/').map(encode).collect();
    let mut out = format!("pkg:{kind}/{}", path.join("/"));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&encode(version));
    }
    let mut qualifiers: Vec<&(&str, &str)> =
        qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    qualifiers.sort();
    for (i, (k, v)) in qualifiers.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_encoded() {
        assert_eq!(
            purl("npm", "@types/node", "20.1.0", &[]),
            "pkg:npm/%40types/node@20.1.0"
        );
        assert_eq!(
            purl(
                "deb",
                "debian/libc6",
                "2.36-9+deb12u4",
                &[("distro", "debian-12"), ("arch", "amd64")]
            ),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl("deb", "debian/perl", "1:5.36.0-7", &[("arch", "")]),
            "pkg:deb/debian/perl@1:5.36.0-7"
        );
        assert_eq!(
            purl("golang", "golang.org/x/text", "v0.21.0", &[]),
            "pkg:golang/golang.org/x/text@v0.21.0"
        );
    }
}
