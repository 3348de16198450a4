//! Allowing findings, always with a reason: comments on the line, object
//! annotations, and ignore files.

use std::sync::LazyLock;

use regex::Regex;

use super::{Finding, Rule};

/// `# plumb:allow-secret RULE REASON` (or `//`).
static COMMENT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?:#|//)\s*plumb:allow-secret\b[ \t]*(\S*)[ \t]*(.*)$").ok());

#[derive(Debug, Clone)]
struct Entry {
    /// A file, or a directory (ending in `/`) whose files are covered.
    path: String,
    /// Lines `from..=to`; `None` for the whole file.
    lines: Option<(usize, usize)>,
    rules: Vec<Rule>,
}

/// Every allow entry seen so far.
#[derive(Debug, Default)]
pub(crate) struct Allows {
    entries: Vec<Entry>,
}

impl Allows {
    /// Whether an entry covers `f` (a `bad-allow` finding is never covered).
    pub(crate) fn covers(&self, f: &Finding) -> bool {
        f.rule != Rule::BadAllow
            && self.entries.iter().any(|e| {
                let path_ok = if e.path.ends_with('/') || e.path.is_empty() {
                    f.file.starts_with(&e.path)
                } else {
                    f.file == e.path
                };
                path_ok
                    && e.rules.contains(&f.rule)
                    && e.lines.is_none_or(|(a, b)| (a..=b).contains(&f.line))
            })
    }

    /// Allow `rules` in lines `from..=to` of `file` (an annotated object).
    pub(crate) fn allow_lines(&mut self, file: &str, from: usize, to: usize, rules: Vec<Rule>) {
        self.entries.push(Entry {
            path: file.to_string(),
            lines: Some((from, to)),
            rules,
        });
    }

    /// Read the allow comments of `text`: a comment after code covers its
    /// line, a comment alone on a line covers the next one.
    pub(crate) fn read_comments(&mut self, file: &str, text: &str) -> Vec<Finding> {
        let Some(re) = COMMENT.as_ref() else {
            return Vec::new();
        };
        let mut bad = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let Some(c) = re.captures(line) else {
                continue;
            };
            let Some(whole) = c.get(0) else {
                continue;
            };
            let number = i + 1;
            let rule = c.get(1).map_or("", |m| m.as_str());
            let reason = c.get(2).map_or("", |m| m.as_str()).trim();
            let column = super::patterns::column(line, whole.start());
            let parsed = rule.parse::<Rule>();
            match (parsed, reason.is_empty()) {
                (Ok(rule), false) => {
                    let alone = line[..whole.start()].trim().is_empty();
                    let target = if alone { number + 1 } else { number };
                    self.entries.push(Entry {
                        path: file.to_string(),
                        lines: Some((target, target)),
                        rules: vec![rule],
                    });
                }
                (Ok(_), true) => bad.push(bad_allow(
                    file,
                    number,
                    column,
                    "this plumb:allow-secret comment gives no reason; write `# plumb:allow-secret RULE REASON`",
                )),
                (Err(e), _) => bad.push(bad_allow(
                    file,
                    number,
                    column,
                    &format!("this plumb:allow-secret comment names no known rule ({e})"),
                )),
            }
        }
        bad
    }

    /// Read an ignore file at `path` whose entries are relative to `dir`
    /// (`""` or ending in `/`): lines `path[:line] rule reason…`, `#`
    /// comments and blank lines. A line without a reason is a finding.
    pub(crate) fn read_ignore_file(&mut self, path: &str, dir: &str, text: &str) -> Vec<Finding> {
        let mut bad = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let number = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(3, char::is_whitespace);
            let target = parts.next().unwrap_or_default();
            let rule = parts.next().unwrap_or_default().trim();
            let reason = parts.next().unwrap_or_default().trim();
            let column = raw.len() - raw.trim_start().len() + 1;
            let rule = match rule.parse::<Rule>() {
                Ok(r) => r,
                Err(e) => {
                    bad.push(bad_allow(
                        path,
                        number,
                        column,
                        &format!("expected `path[:line] rule reason`: {e}"),
                    ));
                    continue;
                }
            };
            if reason.is_empty() {
                bad.push(bad_allow(
                    path,
                    number,
                    column,
                    "this entry gives no reason; write `path[:line] rule reason`",
                ));
                continue;
            }
            let (file, lines) = match target.rsplit_once(':') {
                Some((f, l)) if l.chars().all(|c| c.is_ascii_digit()) && !l.is_empty() => {
                    let n = l.parse::<usize>().unwrap_or(0);
                    (f, Some((n, n)))
                }
                _ => (target, None),
            };
            let file = file.trim_start_matches("./");
            self.entries.push(Entry {
                path: format!("{dir}{file}"),
                lines,
                rules: vec![rule],
            });
        }
        bad
    }
}

/// The rules of an allow annotation `"rule1,rule2 — reason"`, or why it is
/// unusable.
pub(crate) fn parse_annotation(value: &str) -> Result<Vec<Rule>, String> {
    let split = ["—", " -- ", " - ", ":"]
        .iter()
        .find_map(|sep| value.split_once(sep));
    let Some((rules, reason)) = split else {
        return Err(format!(
            "the {} annotation gives no reason; write \"rule1,rule2 — reason\"",
            super::ALLOW_ANNOTATION
        ));
    };
    if reason.trim().is_empty() {
        return Err(format!(
            "the {} annotation gives no reason; write \"rule1,rule2 — reason\"",
            super::ALLOW_ANNOTATION
        ));
    }
    rules
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            r.parse::<Rule>()
                .map_err(|e| format!("the {} annotation: {e}", super::ALLOW_ANNOTATION))
        })
        .collect()
}

pub(crate) fn bad_allow(file: &str, line: usize, column: usize, hint: &str) -> Finding {
    Finding {
        file: file.to_string(),
        line,
        column,
        rule: Rule::BadAllow,
        hint: hint.to_string(),
    }
}
