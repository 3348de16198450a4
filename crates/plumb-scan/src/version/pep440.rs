//! Python's version order (PEP 440), as `packaging.version` decides it.
//!
//! Versions are normalised first (case, a leading `v`, the spellings
//! `alpha`/`beta`/`c`/`pre`/`preview`, `rev`/`r`/`-N` for post-releases,
//! optional separators and implicit zeros), then compared by the key
//! `(epoch, release without trailing zeros, pre, post, dev, local)` where a
//! missing pre-release sorts after any pre-release (except that a bare
//! `.devN` release sorts before its pre-releases), a missing post-release
//! before any, a missing dev-release after any, and a missing local label
//! before any (numeric local segments above alphanumeric ones). Text that is
//! not a PEP 440 version falls back to plain byte order.

use std::cmp::Ordering;

/// A sentinel-aware number: below every number, a number, above every number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Bound<T> {
    Bottom,
    Value(T),
    Top,
}

/// A local-version segment; alphanumeric ones sort below numeric ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Local {
    Text(String),
    Num(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    epoch: u64,
    release: Vec<u64>,
    pre: Bound<(u8, u64)>,
    post: Bound<u64>,
    dev: Bound<u64>,
    local: Bound<Vec<Local>>,
}

/// A cursor over a lowercase version string.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
            .or(Some(u64::MAX))
    }
    fn sep(&mut self) -> bool {
        if matches!(self.peek(), Some(b'-' | b'_' | b'.')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// The longest of `words` at the cursor (after an optional separator).
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let save = self.i;
        self.sep();
        let rest = &self.s[self.i..];
        let found = words
            .iter()
            .enumerate()
            .filter(|(_, w)| rest.starts_with(w.as_bytes()))
            .max_by_key(|(_, w)| w.len());
        match found {
            Some((n, w)) => {
                self.i += w.len();
                Some(n)
            }
            None => {
                self.i = save;
                None
            }
        }
    }
    /// An optional separator and number; 0 when absent.
    fn implicit_number(&mut self) -> u64 {
        let save = self.i;
        self.sep();
        match self.number() {
            Some(n) => n,
            None => {
                self.i = save;
                0
            }
        }
    }
}

fn key(v: &str) -> Option<Key> {
    let lower = v.trim().to_ascii_lowercase();
    let mut c = Cursor {
        s: lower.as_bytes(),
        i: 0,
    };
    if c.peek() == Some(b'v') {
        c.i += 1;
    }
    let mut epoch = 0;
    let mut release = vec![c.number()?];
    if c.peek() == Some(b'!') {
        c.i += 1;
        epoch = release[0];
        release = vec![c.number()?];
    }
    while c.peek() == Some(b'.') && c.s.get(c.i + 1).is_some_and(|d| d.is_ascii_digit()) {
        c.i += 1;
        release.push(c.number()?);
    }
    while release.len() > 1 && release.last() == Some(&0) {
        release.pop();
    }
    // a=0, b=1, rc=2.
    let pre = c
        .word(&["a", "alpha", "b", "beta", "c", "rc", "pre", "preview"])
        .map(|w| {
            let letter = match w {
                0 | 1 => 0,
                2 | 3 => 1,
                _ => 2,
            };
            (letter, c.implicit_number())
        });
    let post = if c.peek() == Some(b'-') && c.s.get(c.i + 1).is_some_and(|d| d.is_ascii_digit()) {
        c.i += 1;
        c.number()
    } else {
        c.word(&["post", "rev", "r"]).map(|_| c.implicit_number())
    };
    let dev = c.word(&["dev"]).map(|_| c.implicit_number());
    let local = if c.peek() == Some(b'+') {
        c.i += 1;
        let text = std::str::from_utf8(&c.s[c.i..]).ok()?;
        c.i = c.s.len();
        let segs: Vec<Local> = text
            .split(['.', '-', '_'])
            .map(|s| match s.parse() {
                Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Local::Num(n),
                _ => Local::Text(s.to_string()),
            })
            .collect();
        if segs
            .iter()
            .any(|s| matches!(s, Local::Text(t) if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric())))
        {
            return None;
        }
        Some(segs)
    } else {
        None
    };
    if c.i != c.s.len() {
        return None;
    }
    Some(Key {
        epoch,
        release,
        pre: match (pre, post, dev) {
            (None, None, Some(_)) => Bound::Bottom,
            (None, _, _) => Bound::Top,
            (Some(p), _, _) => Bound::Value(p),
        },
        post: post.map_or(Bound::Bottom, Bound::Value),
        dev: dev.map_or(Bound::Top, Bound::Value),
        local: local.map_or(Bound::Bottom, Bound::Value),
    })
}

/// Compare two Python package versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (key(a), key(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Whether `v` is a valid PEP 440 version.
pub fn is_valid(v: &str) -> bool {
    key(v).is_some()
}

#[cfg(test)]
mod tests {
    use super::{compare, is_valid};
    use std::cmp::Ordering::*;

    #[test]
    fn pep440_order() {
        // The ordering example of PEP 440's "Summary of permitted suffixes and relative ordering".
        let chain = [
            "1.dev0",
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
        ];
        for w in chain.windows(2) {
            assert_eq!(compare(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
            assert_eq!(compare(w[1], w[0]), Greater, "{} > {}", w[1], w[0]);
        }
        let cases = [
            ("1.0", "1", Equal),
            ("1.0.0", "1", Equal),
            ("1!1.0", "2.0", Greater),
            ("1.0-1", "1.0.post1", Equal),
            ("1.0c1", "1.0rc1", Equal),
            ("1.0alpha1", "1.0a1", Equal),
            ("1.0-r1", "1.0.post1", Equal),
            ("v2.31.0", "2.31.0", Equal),
            ("1.0.post", "1.0.post0", Equal),
            ("2.25.0", "2.31.0", Less),
            ("2.9", "2.10", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
        }
        assert!(is_valid("1.0rc1.post2.dev3+local.1"));
        assert!(!is_valid("1.0-foo-"));
    }
}
