//! Unified YAML diffs for people.

use serde_json::Value;
use similar::TextDiff;

/// A unified diff from `live` to `desired` (either may be absent), as YAML.
pub fn unified(live: Option<&Value>, desired: Option<&Value>, name: &str) -> String {
    let a = live.map(to_yaml).unwrap_or_default();
    let b = desired.map(to_yaml).unwrap_or_default();
    TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{name}"), &format!("git/{name}"))
        .to_string()
}

/// A value as YAML for people (JSON when YAML cannot say it).
pub fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value)
        .unwrap_or_else(|_| serde_json::to_string_pretty(value).unwrap_or_default())
}

/// What a line of a unified diff is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// A `---`/`+++` file header.
    File,
    /// An added line.
    Added,
    /// A removed line.
    Removed,
    /// A `@@` hunk header.
    Hunk,
    /// Context.
    Context,
}

impl LineKind {
    /// The kind of `line`.
    pub fn of(line: &str) -> LineKind {
        if line.starts_with("+++") || line.starts_with("---") {
            LineKind::File
        } else if line.starts_with('+') {
            LineKind::Added
        } else if line.starts_with('-') {
            LineKind::Removed
        } else if line.starts_with("@@") {
            LineKind::Hunk
        } else {
            LineKind::Context
        }
    }
}

/// Colour a unified diff for a terminal: additions green, removals red, hunks cyan.
pub fn colorize(diff: &str) -> String {
    let mut out = String::with_capacity(diff.len() + diff.len() / 4);
    for line in diff.split_inclusive('\n') {
        let code = match LineKind::of(line) {
            LineKind::File => "1",
            LineKind::Added => "32",
            LineKind::Removed => "31",
            LineKind::Hunk => "36",
            LineKind::Context => "",
        };
        if code.is_empty() {
            out.push_str(line);
        } else {
            let body = line.trim_end_matches('\n');
            out.push_str(&format!("\x1b[{code}m{body}\x1b[0m"));
            if line.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_changed_field() {
        let live = serde_json::json!({"data": {"a": "1", "b": "2"}});
        let desired = serde_json::json!({"data": {"a": "1", "b": "3"}});
        let d = unified(Some(&live), Some(&desired), "ConfigMap/ns/x");
        assert!(d.contains("-  b: '2'") || d.contains("-  b: \"2\""), "{d}");
        assert!(d.contains("+++ git/ConfigMap/ns/x"), "{d}");
        assert!(colorize(&d).contains("\x1b[32m"));
    }
}
