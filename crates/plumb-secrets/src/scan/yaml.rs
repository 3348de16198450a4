//! YAML and JSON: Secrets not SOPS-encrypted, kustomize secret generators,
//! allow annotations, and rendered objects.

use std::collections::BTreeMap;

use plumb_model::Origin;
use serde_json::Value;

use super::allow::{Allows, bad_allow, parse_annotation};
use super::patterns::{column, generic_secret, scan_lines, shapes_in};
use super::{ALLOW_ANNOTATION, Finding, Rule};

/// Files named like this are kustomizations.
const KUSTOMIZATIONS: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// One document of a YAML stream: its text and its lines `first..=last`.
struct Doc {
    first: usize,
    last: usize,
    text: String,
}

fn split_documents(text: &str) -> Vec<Doc> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first = 1;
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        count = i + 1;
        let is_separator = line == "---" || line.starts_with("--- ") || line == "...";
        if is_separator {
            docs.push(Doc {
                first,
                last: i,
                text: std::mem::take(&mut current),
            });
            first = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push(Doc {
        first,
        last: count.max(first),
        text: current,
    });
    docs
}

pub(crate) fn parse(text: &str) -> Option<Value> {
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    options.alias_limits.max_total_replayed_events = 200_000;
    options.alias_limits.max_replay_stack_depth = 32;
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<Value>(text, options).ok()
}

/// Whether a file's text is SOPS-encrypted (YAML, JSON, dotenv or binary).
pub(crate) fn is_sops_text(text: &str) -> bool {
    text.contains("ENC[AES256_GCM,")
        && (text.contains("sops_mac=") || text.contains("\"mac\"") || text.contains("mac:"))
}

/// The line and value column of `key:` (optionally quoted) at or after
/// line `from` (1-based) within `first..=last`.
fn locate_key(lines: &[&str], from: usize, last: usize, key: &str) -> Option<(usize, usize)> {
    for number in from.max(1)..=last.min(lines.len()) {
        let line = lines[number - 1];
        let trimmed = line.trim_start();
        let trimmed = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let rest = [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ]
        .into_iter()
        .find_map(|k| trimmed.strip_prefix(k.as_str()).map(|r| (k.len(), r)));
        if let Some((klen, rest)) = rest {
            let key_at = line.len() - trimmed.len();
            let spaces = rest.len() - rest.trim_start().len();
            let value_at = if rest.trim().is_empty() {
                key_at
            } else {
                let quoted = rest.trim_start().starts_with(['"', '\'']) as usize;
                key_at + klen + spaces + quoted
            };
            return Some((number, column(line, value_at)));
        }
    }
    None
}

/// The first line within `from..=last` containing `needle`, and its column.
fn locate_text(lines: &[&str], from: usize, last: usize, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    for number in from.max(1)..=last.min(lines.len()) {
        if let Some(at) = lines[number - 1].find(needle) {
            return Some((number, column(lines[number - 1], at)));
        }
    }
    None
}

/// Scan a YAML or JSON file of the source tree.
pub(crate) fn scan_file(
    path: &str,
    text: &str,
    files: &BTreeMap<String, String>,
    allows: &mut Allows,
) -> Vec<Finding> {
    let lines: Vec<&str> = text.lines().collect();
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut out = Vec::new();
    for doc in split_documents(text) {
        out.extend(scan_lines(path, text, doc.first, doc.last));
        let Some(value) = parse(&doc.text) else {
            continue;
        };
        if let Some(allowed) = value
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ALLOW_ANNOTATION))
            .and_then(Value::as_str)
        {
            match parse_annotation(allowed) {
                Ok(rules) => allows.allow_lines(path, doc.first, doc.last, rules),
                Err(reason) => {
                    let (line, col) = locate_text(&lines, doc.first, doc.last, ALLOW_ANNOTATION)
                        .unwrap_or((doc.first, 1));
                    out.push(bad_allow(path, line, col, &reason));
                }
            }
        }
        if value.get("kind").and_then(Value::as_str) == Some("Secret") {
            out.extend(secret(path, &lines, &doc, &value));
        }
        if KUSTOMIZATIONS.contains(&name) {
            out.extend(generators(path, &lines, &doc, &value, files));
        }
    }
    out
}

/// A Secret document's values that are not SOPS-encrypted.
fn secret(path: &str, lines: &[&str], doc: &Doc, value: &Value) -> Vec<Finding> {
    let sops = value.get("sops").and_then(|s| s.get("mac")).is_some();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let mut out = Vec::new();
    for field in ["data", "stringData"] {
        let Some(map) = value.get(field).and_then(Value::as_object) else {
            continue;
        };
        let field_line =
            locate_key(lines, doc.first, doc.last, field).map_or(doc.first, |(l, _)| l);
        for (key, v) in map {
            let shown = match v {
                Value::String(s) if s.is_empty() => continue,
                Value::String(s) if sops && s.starts_with("ENC[") => continue,
                Value::String(s) => s.chars().count(),
                Value::Null => continue,
                other => other.to_string().len(),
            };
            let (line, col) = locate_key(lines, field_line, doc.last, key)
                .or_else(|| locate_key(lines, doc.first, doc.last, field))
                .unwrap_or((doc.first, 1));
            out.push(Finding {
                file: path.to_string(),
                line,
                column: col,
                rule: Rule::PlaintextSecret,
                hint: format!(
                    "Secret {name}: {field} key {key:?} is not SOPS-encrypted ({shown} characters); encrypt the file with `plumb secrets encrypt` or sops"
                ),
            });
        }
    }
    out
}

/// `a/b/../c` → `a/c`; `None` when it climbs out of the root.
pub(crate) fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// A kustomization's secret generators with literals or unencrypted files.
fn generators(
    path: &str,
    lines: &[&str],
    doc: &Doc,
    value: &Value,
    files: &BTreeMap<String, String>,
) -> Vec<Finding> {
    let Some(list) = value.get("secretGenerator").and_then(Value::as_array) else {
        return Vec::new();
    };
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let start =
        locate_key(lines, doc.first, doc.last, "secretGenerator").map_or(doc.first, |(l, _)| l);
    let mut out = Vec::new();
    let at = |needle: &str| locate_text(lines, start, doc.last, needle).unwrap_or((start, 1));
    for g in list {
        let name = g.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
        for literal in g
            .get("literals")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let key = literal.split_once('=').map_or(literal, |(k, _)| k);
            let (line, col) = at(&format!("{key}="));
            out.push(Finding {
                file: path.to_string(),
                line,
                column: col,
                rule: Rule::PlaintextSecretGenerator,
                hint: format!(
                    "secretGenerator {name}: literal {key:?} puts a plaintext value in Git; generate from a SOPS-encrypted file instead"
                ),
            });
        }
        for field in ["files", "envs", "env"] {
            let entries: Vec<&str> = match g.get(field) {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(s)) => vec![s.as_str()],
                _ => continue,
            };
            for entry in entries {
                let file = entry.split_once('=').map_or(entry, |(_, f)| f);
                let joined = if dir.is_empty() {
                    file.to_string()
                } else {
                    format!("{dir}/{file}")
                };
                let Some(target) = normalize(&joined) else {
                    continue;
                };
                let Some(content) = files.get(&target) else {
                    continue;
                };
                if is_sops_text(content) {
                    continue;
                }
                let (line, col) = at(entry);
                out.push(Finding {
                    file: path.to_string(),
                    line,
                    column: col,
                    rule: Rule::PlaintextSecretGenerator,
                    hint: format!(
                        "secretGenerator {name}: {field} entry {file:?} is not SOPS-encrypted"
                    ),
                });
            }
        }
    }
    out
}

/// A rendered object's credentials, located in its source file when the
/// value can be found there, else at the object.
pub(crate) fn scan_rendered(
    object: &Value,
    origin: &Origin,
    files: &BTreeMap<String, String>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let allowed = match object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ALLOW_ANNOTATION))
        .and_then(Value::as_str)
        .map(parse_annotation)
    {
        None => Vec::new(),
        Some(Ok(rules)) => rules,
        Some(Err(reason)) => {
            out.push(bad_allow(&origin.file, origin.line, origin.column, &reason));
            Vec::new()
        }
    };
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let source: Vec<&str> = files
        .get(&origin.file)
        .map(|t| t.lines().collect())
        .unwrap_or_default();
    let mut hits = Vec::new();
    walk(object, "", &mut hits);
    for (rule, needle, hint) in hits {
        if allowed.contains(&rule) {
            continue;
        }
        let (line, col) = locate_text(&source, origin.line, source.len(), &needle)
            .unwrap_or((origin.line, origin.column.max(1)));
        out.push(Finding {
            file: origin.file.clone(),
            line,
            column: col,
            rule,
            hint: format!("{kind}/{name}: {hint}"),
        });
    }
    out
}

/// (rule, the text to find in the source, hint) for every string under `v`.
fn walk(v: &Value, key: &str, hits: &mut Vec<(Rule, String, String)>) {
    match v {
        Value::String(s) => {
            let shapes = shapes_in(s);
            let shaped = !shapes.is_empty();
            for (rule, range, hint) in shapes {
                let needle = s.get(range).unwrap_or_default();
                let needle = needle.lines().next().unwrap_or_default().to_string();
                hits.push((rule, needle, hint));
            }
            if !shaped && let Some(hint) = generic_secret(key, s) {
                hits.push((Rule::GenericPassword, s.clone(), hint));
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, key, hits)),
        Value::Object(map) => {
            // `{name: DB_PASSWORD, value: …}` (container env) is keyed by its name.
            let named = map.get("name").and_then(Value::as_str);
            for (k, child) in map {
                let k = match (k.as_str(), named) {
                    ("value", Some(n)) => n,
                    _ => k.as_str(),
                };
                walk(child, k, hits);
            }
        }
        _ => {}
    }
}
