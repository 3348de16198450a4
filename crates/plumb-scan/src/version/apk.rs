//! Alpine's version order, as apk-tools decides it.
//!
//! A version is `digits(.digits)*[letter](_suffix[digits])*[-rN]`. Both
//! versions are read as token streams and compared token by token: numbers
//! as numbers (after the first, a component with leading zeros counts each
//! zero as a negative step, so `1.01` < `1.1`), letters as letters, suffixes
//! by rank (`alpha` < `beta` < `pre` < `rc` < none < `cvs` < `svn` < `git` <
//! `hg` < `p`), then the revision. Where the streams differ in kind, a
//! pre-release suffix sorts first, otherwise the stream that reached a later
//! kind (e.g. the end) sorts first. Text that is not an apk version at all
//! falls back to plain byte order.

use std::cmp::Ordering;

/// Token kinds in apk's order; the discriminant is what differing kinds compare by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    Revision,
    End,
}

const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

fn suffix_rank(s: &str) -> Option<i64> {
    if let Some(i) = PRE.iter().position(|p| *p == s) {
        return Some(i as i64 - PRE.len() as i64);
    }
    POST.iter().position(|p| *p == s).map(|i| i as i64 + 1)
}

fn number(s: &str) -> i64 {
    // Saturate absurd numbers rather than fail.
    s.parse::<i64>().unwrap_or(i64::MAX)
}

/// The token stream of `v`, or `None` when `v` is not an apk version.
fn tokens(v: &str) -> Option<Vec<(Kind, i64)>> {
    let b = v.trim().as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        std::str::from_utf8(&b[s..*i]).unwrap_or("")
    };
    // Numeric components.
    let first = digits(&mut i);
    if first.is_empty() {
        return None;
    }
    out.push((Kind::Digit, number(first)));
    while i < b.len() && b[i] == b'.' {
        i += 1;
        let s = i;
        let mut zeros = 0;
        while i < b.len() && b[i] == b'0' {
            zeros += 1;
            i += 1;
        }
        if zeros > 0 {
            out.push((Kind::Digit, -zeros));
        }
        let rest = digits(&mut i);
        if !rest.is_empty() {
            out.push((Kind::Digit, number(rest)));
        } else if i == s {
            return None;
        }
    }
    if i < b.len() && b[i].is_ascii_lowercase() {
        out.push((Kind::Letter, i64::from(b[i])));
        i += 1;
    }
    while i < b.len() && b[i] == b'_' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_lowercase() {
            i += 1;
        }
        let name = std::str::from_utf8(&b[s..i]).unwrap_or("");
        out.push((Kind::Suffix, suffix_rank(name)?));
        let n = digits(&mut i);
        if !n.is_empty() {
            out.push((Kind::SuffixNo, number(n)));
        }
    }
    if i + 1 < b.len() && b[i] == b'-' && b[i + 1] == b'r' {
        i += 2;
        let n = digits(&mut i);
        if n.is_empty() {
            return None;
        }
        out.push((Kind::Revision, number(n)));
    }
    if i != b.len() {
        return None;
    }
    out.push((Kind::End, 0));
    Some(out)
}

/// Compare two Alpine package versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (Some(ta), Some(tb)) = (tokens(a), tokens(b)) else {
        return a.cmp(b);
    };
    for (x, y) in ta.iter().zip(tb.iter()) {
        if x.0 == y.0 {
            match x.1.cmp(&y.1) {
                Ordering::Equal if x.0 == Kind::End => return Ordering::Equal,
                Ordering::Equal => continue,
                other => return other,
            }
        }
        if x.0 == Kind::Suffix && x.1 < 0 {
            return Ordering::Less;
        }
        if y.0 == Kind::Suffix && y.1 < 0 {
            return Ordering::Greater;
        }
        return y.0.cmp(&x.0);
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering::*;

    #[test]
    fn apk_order() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0.1", Less),
            ("1.0-r1", "1.0", Greater),
            ("1.0-r1", "1.0-r10", Less),
            ("1.0_rc1", "1.0", Less),
            ("1.0_alpha", "1.0_beta", Less),
            ("1.0_beta2", "1.0_beta10", Less),
            ("1.0_p1", "1.0", Greater),
            ("1.0_rc1", "1.0_p1", Less),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0b", Less),
            ("1.0a", "1.0.1", Less),
            ("1.01", "1.1", Less),
            ("1.001", "1.01", Less),
            ("3.1.4-r5", "3.1.4-r6", Less),
            ("1.36.1-r15", "1.36.1-r2", Greater),
            ("1.2.4_git20230717-r4", "1.2.4-r4", Greater),
            ("1.2.4_git20230717-r4", "1.2.5-r0", Less),
            ("2.10", "2.9", Greater),
            ("1.0_rc1-r1", "1.0-r0", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }
}
