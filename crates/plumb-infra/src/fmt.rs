//! `fmt`: canonical layout for `.tf` files — two-space indentation by
//! nesting depth and aligned `=` in runs of one-line attributes. Heredoc
//! bodies are left exactly as written.

use std::path::{Path, PathBuf};

use crate::cli::InfraError;

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

/// Runs fmt over paths (default: the stack directory). Exit 3 with -check
/// when a file would change.
pub fn run(dir: &Path, paths: &[PathBuf], check: bool) -> Result<i32, InfraError> {
    let mut files = Vec::new();
    let targets: Vec<PathBuf> = if paths.is_empty() {
        vec![dir.to_path_buf()]
    } else {
        paths.to_vec()
    };
    for t in targets {
        if t.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&t)
                .map_err(|e| InfraError::Other {
                    message: format!("{}: {e}", t.display()),
                    hint: None,
                })?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "tf" || x == "tfvars"))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(t);
        }
    }
    let mut changed = false;
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| InfraError::Other {
            message: format!("{}: {e}", f.display()),
            hint: None,
        })?;
        if let Err(e) = hcl_edit::parser::parse_body(&text) {
            return Err(InfraError::Other {
                message: format!("{}: syntax error: {}", f.display(), e.message()),
                hint: Some("fmt only formats valid files".into()),
            });
        }
        let formatted = format_text(&text);
        if formatted != text {
            changed = true;
            println!("{}", f.display());
            if !check {
                std::fs::write(&f, formatted).map_err(|e| InfraError::Other {
                    message: format!("{}: {e}", f.display()),
                    hint: None,
                })?;
            }
        }
    }
    Ok(if check && changed { 3 } else { 0 })
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
