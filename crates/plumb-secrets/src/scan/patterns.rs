//! Credentials of known shapes, and high-entropy values under password-like
//! keys, found in text line by line or in single values.

use std::sync::LazyLock;

use base64::Engine as _;
use regex::Regex;

use super::{Finding, Rule};

/// Shannon entropy, in bits per character, a value under a password-like
/// key must reach to be reported by `generic-password`.
pub const ENTROPY_THRESHOLD: f64 = 3.0;

/// The shortest value `generic-password` reports.
pub const MIN_SECRET_LENGTH: usize = 8;

struct Shape {
    rule: Rule,
    regex: Regex,
    what: &'static str,
}

/// Compiled once; the patterns are constants, so a failure is a bug caught
/// by the tests (an empty list then finds nothing rather than panicking).
static SHAPES: LazyLock<Vec<Shape>> = LazyLock::new(|| {
    [
        (
            Rule::AwsAccessKey,
            r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            "an AWS access key id",
        ),
        (
            Rule::GithubToken,
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
            "a GitHub token",
        ),
        (
            Rule::GitlabToken,
            r"\bglpat-[A-Za-z0-9_-]{20,}",
            "a GitLab access token",
        ),
        (
            Rule::SlackToken,
            r"\bxox[abprs]-[A-Za-z0-9]{8,}(?:-[A-Za-z0-9]+)+",
            "a Slack token",
        ),
        (
            Rule::PrivateKey,
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
            "a PEM private key",
        ),
        (
            Rule::Jwt,
            r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            "a JSON Web Token",
        ),
    ]
    .into_iter()
    .filter_map(|(rule, pattern, what)| {
        Regex::new(pattern)
            .ok()
            .map(|regex| Shape { rule, regex, what })
    })
    .collect()
});

/// `key: value`, `key = value`, `"key": value`, `KEY=value`, a list item's
/// first key. Group 1 is the key, group 2 the rest of the line.
static ASSIGNMENT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"^\s*(?:-\s+)?["']?([A-Za-z0-9_.\-]+)["']?\s*(?::\s|:$|=)\s*(.*)$"#).ok()
});

/// The words of a key that make it password-like, when the key ends in one.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
];

/// Whether `key` names a secret: its last word (camelCase, snake_case,
/// kebab-case or dotted) is password-like, or it ends in `api_key`/`access_key`.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let words = split_words(key);
    let Some(last) = words.last() else {
        return false;
    };
    if SECRET_WORDS.contains(&last.as_str()) {
        return true;
    }
    if last == "key" && words.len() >= 2 {
        let before = words[words.len() - 2].as_str();
        return matches!(before, "api" | "access" | "secret" | "private" | "auth");
    }
    false
}

fn split_words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Shannon entropy of `value` in bits per character (0 for an empty value).
pub fn shannon_entropy(value: &str) -> f64 {
    let mut counts: std::collections::BTreeMap<char, usize> = Default::default();
    let mut total = 0usize;
    for c in value.chars() {
        *counts.entry(c).or_default() += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Words that make a value a placeholder, not a secret.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "example",
    "placeholder",
    "replace",
    "redacted",
    "dummy",
    "xxxx",
    "****",
    "your-",
    "your_",
    "todo",
];

/// Whether `value` is a template, a reference or a placeholder rather than
/// a literal secret.
pub(crate) fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    if value.contains("${")
        || value.contains("{{")
        || value.contains("$(")
        || value.starts_with("ENC[")
        || (value.starts_with('<') && value.ends_with('>'))
        || value.contains("://")
        || value.starts_with("ref+")
    {
        return true;
    }
    let mut chars = value.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return true;
    }
    PLACEHOLDERS.iter().any(|p| lower.contains(p))
}

/// Why a value under a password-like key is a secret: `Some(hint)` when it is.
pub(crate) fn generic_secret(key: &str, value: &str) -> Option<String> {
    let length = value.chars().count();
    if length < MIN_SECRET_LENGTH
        || value.chars().any(char::is_whitespace)
        || is_placeholder(value)
        || !is_secret_key(key)
    {
        return None;
    }
    let entropy = shannon_entropy(value);
    if entropy < ENTROPY_THRESHOLD {
        return None;
    }
    let lower = value.chars().any(|c| c.is_ascii_lowercase());
    let upper = value.chars().any(|c| c.is_ascii_uppercase());
    let digit = value.chars().any(|c| c.is_ascii_digit());
    let other = value.chars().any(|c| !c.is_ascii_alphanumeric());
    let classes = [lower, upper, digit, other].iter().filter(|b| **b).count();
    let mixed = classes >= 3 || (length >= 16 && digit && (lower || upper));
    if !mixed {
        return None;
    }
    Some(format!(
        "key {key:?} holds a {length}-character value with {entropy:.1} bits of entropy per character"
    ))
}

/// A credential of known shape in `value`: (rule, byte range, hint).
pub(crate) fn shapes_in(value: &str) -> Vec<(Rule, std::ops::Range<usize>, String)> {
    let mut out = Vec::new();
    for shape in SHAPES.iter() {
        for m in shape.regex.find_iter(value) {
            let token = m.as_str();
            if token.contains("EXAMPLE") {
                continue;
            }
            if shape.rule == Rule::Jwt && !jwt_header_ok(token) {
                continue;
            }
            let hint = if shape.rule == Rule::PrivateKey {
                shape.what.to_string()
            } else {
                format!("{} ({} characters)", shape.what, token.chars().count())
            };
            out.push((shape.rule, m.range(), hint));
        }
    }
    out
}

/// Whether a JWT-shaped token's header decodes to a JSON object with `alg`.
fn jwt_header_ok(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('='))
    else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .is_some_and(|v| v.get("alg").is_some())
}

/// 1-based character column of byte offset `at` in `line`.
pub(crate) fn column(line: &str, at: usize) -> usize {
    line.get(..at).map_or(at, |s| s.chars().count()) + 1
}

/// The value part of an assignment's right-hand side, unquoted, and its
/// byte offset in `rest`; `None` for block scalars, maps and empty values.
pub(crate) fn assigned_value(rest: &str) -> Option<(usize, &str)> {
    let trimmed = rest.trim_end().trim_end_matches(',').trim_end();
    let first = trimmed.chars().next()?;
    match first {
        '"' | '\'' => {
            let body = &trimmed[1..];
            let end = body.rfind(first)?;
            Some((1, &body[..end]))
        }
        '|' | '>' | '{' | '[' | '&' | '*' | '!' | '#' => None,
        _ => {
            let value = match trimmed.find(" #") {
                Some(i) => trimmed[..i].trim_end(),
                None => trimmed,
            };
            Some((0, value))
        }
    }
}

/// Credentials in lines `from..=to` (1-based) of `text`.
pub(crate) fn scan_lines(file: &str, text: &str, from: usize, to: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if number < from || number > to {
            continue;
        }
        let code = strip_comment(line);
        let shapes = shapes_in(code);
        let shaped = !shapes.is_empty();
        for (rule, at, hint) in shapes {
            out.push(Finding {
                file: file.to_string(),
                line: number,
                column: column(line, at.start),
                rule,
                hint,
            });
        }
        if !shaped
            && let Some(re) = ASSIGNMENT.as_ref()
            && let Some(c) = re.captures(code)
            && let (Some(key), Some(rest)) = (c.get(1), c.get(2))
            && let Some((offset, value)) = assigned_value(rest.as_str())
            && let Some(hint) = generic_secret(key.as_str(), value)
        {
            out.push(Finding {
                file: file.to_string(),
                line: number,
                column: column(line, rest.start() + offset),
                rule: Rule::GenericPassword,
                hint,
            });
        }
    }
    out
}

/// A line without a trailing `# plumb:allow-secret …` comment (so the
/// reason is never mistaken for a value).
fn strip_comment(line: &str) -> &str {
    match line.find("# plumb:allow-secret") {
        Some(i) => &line[..i],
        None => line,
    }
}
