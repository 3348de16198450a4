//! SemVer 2.0 precedence, read leniently as OSV's SEMVER ranges need it.
//!
//! Used for crates.io, npm and Go. A leading `v` is dropped (Go writes
//! `v1.2.3`); missing minor or patch components count as 0; build metadata
//! after `+` is ignored, which also makes Go's `+incompatible` compare as the
//! plain version. Pre-releases sort before their release, identifier by
//! identifier (numeric identifiers as numbers, below alphanumeric ones), so
//! Go pseudo-versions (`v0.0.0-20191109021931-daa7c04131f5`,
//! `v1.2.4-0.20191109021931-daa7c04131f5`) order by their timestamp and
//! between the tags they derive from, as Go defines them to. Components
//! that are not numbers compare as text after all numbers.

use std::cmp::Ordering;

/// One dot-separated identifier: a number or text.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ident<'a> {
    Num(u128),
    Text(&'a str),
}

fn ident(s: &str) -> Ident<'_> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().map(Ident::Num).unwrap_or(Ident::Text(s))
    } else {
        Ident::Text(s)
    }
}

/// `(release components, pre-release identifiers)` of a version.
fn split(v: &str) -> (Vec<Ident<'_>>, Vec<Ident<'_>>) {
    let v = v.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let v = v.split_once('+').map_or(v, |(v, _)| v);
    let (release, pre) = v.split_once('-').unwrap_or((v, ""));
    let mut core: Vec<Ident<'_>> = release.split('.').map(ident).collect();
    while core.len() < 3 {
        core.push(Ident::Num(0));
    }
    let pre = if pre.is_empty() {
        vec![]
    } else {
        pre.split('.').map(ident).collect()
    };
    (core, pre)
}

/// Compare two SemVer (or Go module) versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ca, pa) = split(a);
    let (cb, pb) = split(b);
    let longest = ca.len().max(cb.len());
    for i in 0..longest {
        let x = ca.get(i).unwrap_or(&Ident::Num(0));
        let y = cb.get(i).unwrap_or(&Ident::Num(0));
        match x.cmp(y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    match (pa.is_empty(), pb.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => pa.cmp(&pb),
    }
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering::*;

    #[test]
    fn semver_precedence() {
        // The chain of SemVer 2.0 §11, then lenient and Go forms.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.2.0",
            "1.10.0",
        ];
        for w in chain.windows(2) {
            assert_eq!(compare(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
            assert_eq!(compare(w[1], w[0]), Greater);
        }
        let cases = [
            ("1.0.0+build.1", "1.0.0", Equal),
            ("v1.2.3", "1.2.3", Equal),
            ("1.2", "1.2.0", Equal),
            ("1", "1.0.1", Less),
            // Go: +incompatible is build metadata.
            ("v2.0.0+incompatible", "v2.0.0", Equal),
            ("v2.1.0+incompatible", "v2.0.9", Greater),
            // Go pseudo-versions: before any tag (vX.0.0-), after a tag
            // (vX.Y.(Z+1)-0.), and after a pre-release (vX.Y.Z-pre.0.).
            ("v0.0.0-20191109021931-daa7c04131f5", "v0.0.1", Less),
            (
                "v0.0.0-20191109021931-daa7c04131f5",
                "v0.0.0-20200101000000-000000000000",
                Less,
            ),
            ("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.3", Greater),
            ("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.4", Less),
            ("v1.2.4-0.20191109021931-daa7c04131f5", "v1.2.4-rc.1", Less),
            (
                "v1.2.3-pre.0.20191109021931-daa7c04131f5",
                "v1.2.3-pre",
                Greater,
            ),
            ("v1.2.3-pre.0.20191109021931-daa7c04131f5", "v1.2.3", Less),
            ("0.3.7", "0.3.10", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
