//! `fmt`: canonical layout for `.tf` files — two-space indentation by
//! nesting depth and aligned `=` in runs of one-line attributes. Heredoc
//! bodies are left exactly as written.

use std::path::{Path, PathBuf};

use crate::config::in_stack;
use crate::error::InfraError;

/// Formats one file's text.
pub fn format_text(text: &str) -> String {
    let mut lines: Vec<(usize, String, bool)> = Vec::new(); // (depth, content, is_attr)
    let mut depth: usize = 0;
    let mut heredoc: Option<String> = None;
    let mut raw_lines = Vec::new();
    for line in text.lines() {
        if let Some(end) = &heredoc {
            raw_lines.push(lines.len());
            if line.trim() == end {
                heredoc = None;
            }
            lines.push((0, line.to_string(), false));
            continue;
        }
        let t = line.trim();
        let closes = t.starts_with('}') || t.starts_with(']') || t.starts_with(')');
        let d = if closes {
            depth.saturating_sub(1)
        } else {
            depth
        };
        let code = strip_strings(t);
        let opens = code.matches(['{', '[', '(']).count();
        let closes_n = code.matches(['}', ']', ')']).count();
        depth = (depth + opens).saturating_sub(closes_n);
        let is_attr = code.contains('=')
            && !code.contains("==")
            && opens == closes_n
            && !t.starts_with('#')
            && !t.starts_with("//");
        if let Some(i) = t.find("<<") {
            let tag = t[i + 2..].trim_start_matches('-').trim();
            if !tag.is_empty() && tag.chars().all(|c| c.is_alphanumeric() || c == '_') {
                heredoc = Some(tag.to_string());
            }
        }
        lines.push((d, t.to_string(), is_attr));
    }
    // Align '=' in runs of attribute lines at the same depth.
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        if raw_lines.contains(&i) {
            out.push(lines[i].1.clone());
            i += 1;
            continue;
        }
        let (d, _, is_attr) = &lines[i];
        if *is_attr {
            let mut j = i;
            while j < lines.len() && lines[j].2 && lines[j].0 == *d && !raw_lines.contains(&j) {
                j += 1;
            }
            let width = lines[i..j]
                .iter()
                .filter_map(|(_, l, _)| l.split_once('=').map(|(k, _)| k.trim_end().len()))
                .max()
                .unwrap_or(0);
            for (dd, l, _) in &lines[i..j] {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                out.push(format!(
                    "{}{:<width$} = {}",
                    "  ".repeat(*dd),
                    k.trim_end(),
                    v.trim_start()
                ));
            }
            i = j;
            continue;
        }
        let (d, l, _) = &lines[i];
        out.push(if l.is_empty() {
            String::new()
        } else {
            format!("{}{}", "  ".repeat(*d), l)
        });
        i += 1;
    }
    let mut s = out.join("\n");
    while s.contains("\n\n\n") {
        s = s.replace("\n\n\n", "\n\n");
    }
    s.push('\n');
    s
}

fn strip_strings(s: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut prev = ' ';
    for c in s.chars() {
        if c == '"' && prev != '\\' {
            in_str = !in_str;
        } else if !in_str {
            if c == '#' {
                break;
            }
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Formats the `.tf` and `.tfvars` files in `paths` (files, or directories
/// whose files are formatted; default: the stack directory `dir`), reading
/// relative paths against `dir`. `changed` is called with each file that
/// needs formatting, named as given; unless `check`, the file is rewritten.
/// Returns whether any file needed it.
pub fn format_files(
    dir: &Path,
    paths: &[PathBuf],
    check: bool,
    mut changed: impl FnMut(&Path),
) -> Result<bool, InfraError> {
    // Each target as read, and as named.
    let targets: Vec<(PathBuf, PathBuf)> = if paths.is_empty() {
        vec![(dir.to_path_buf(), dir.to_path_buf())]
    } else {
        paths
            .iter()
            .map(|p| (in_stack(dir, p), p.clone()))
            .collect()
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InfraError::FormatIo { path, source }
    };
    let mut files = Vec::new();
    for (read, shown) in targets {
        if read.is_dir() {
            let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&read)
                .map_err(io(&shown))?
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| {
                    Path::new(n)
                        .extension()
                        .is_some_and(|x| x == "tf" || x == "tfvars")
                })
                .collect();
            names.sort();
            files.extend(names.iter().map(|n| (read.join(n), shown.join(n))));
        } else {
            files.push((read, shown));
        }
    }
    let mut any = false;
    for (read, shown) in files {
        let text = std::fs::read_to_string(&read).map_err(io(&shown))?;
        if let Err(e) = hcl_edit::parser::parse_body(&text) {
            return Err(InfraError::FormatSyntax {
                path: shown,
                message: e.message().to_string(),
            });
        }
        let formatted = format_text(&text);
        if formatted != text {
            any = true;
            changed(&shown);
            if !check {
                std::fs::write(&read, formatted).map_err(io(&shown))?;
            }
        }
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_and_indents() {
        let src = "resource \"a\" \"b\" {\nx = 1\n    long_name = \"y\"\n}\n";
        assert_eq!(
            super::format_text(src),
            "resource \"a\" \"b\" {\n  x         = 1\n  long_name = \"y\"\n}\n"
        );
        let done = super::format_text(src);
        assert_eq!(super::format_text(&done), done);
    }
}
