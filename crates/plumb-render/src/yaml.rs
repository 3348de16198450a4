//! Reading YAML and JSON manifests safely, with locations.
//!
//! Manifests come from Git, which means from anyone who can open a pull
//! request, so parsing is bounded: serde-saphyr's budgets stop alias bombs and
//! deep nesting, and callers refuse oversized files before they get here. A
//! multi-document file is split on `---` lines first, so every document knows
//! the line it starts on and every error names `file:line:column` in the file
//! the user wrote, not in some fragment of it.

use serde_json::Value;

pub use plumb_model::Origin;

/// A parse failure, located.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{origin}: {message}")]
pub struct ParseError {
    /// Where.
    pub origin: Origin,
    /// What is wrong.
    pub message: String,
}

/// One parsed document and the line it starts on.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document's value.
    pub value: Value,
    /// Where the document starts.
    pub origin: Origin,
}

/// Most alias replay events a single document may cause (an alias bomb needs millions).
const MAX_REPLAYED_EVENTS: usize = 200_000;

fn options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    // Kubernetes reads YAML 1.1 octals (`defaultMode: 0644`).
    o.legacy_octal_numbers = true;
    o.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    o.alias_limits.max_replay_stack_depth = 32;
    o.with_snippet = false;
    o
}

/// Split YAML text into documents, each with its starting line (1-based)
/// relative to the whole text.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_separator = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if is_separator {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            // Content after `--- ` on the same line belongs to the next document.
            let rest = bare[3..].trim_start();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
            continue;
        }
        if bare == "..." {
            continue;
        }
        current.push_str(line);
    }
    docs.push((start, current));
    docs
}

fn is_blank(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

/// Parse every non-empty document of a YAML (or JSON) file.
pub fn parse_documents(text: &str, file: &str) -> Result<Vec<Document>, ParseError> {
    let mut out = Vec::new();
    for (start, doc) in split_documents(text) {
        if is_blank(&doc) {
            continue;
        }
        let value: Value = serde_saphyr::from_str_with_options(&doc, options()).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((1, 1));
            ParseError {
                origin: Origin {
                    file: file.to_string(),
                    line: start + line.saturating_sub(1),
                    column,
                },
                message: first_line(&e.to_string()),
            }
        })?;
        if value.is_null() {
            continue;
        }
        out.push(Document {
            value,
            origin: Origin {
                file: file.to_string(),
                line: first_content_line(&doc, start),
                column: 1,
            },
        });
    }
    Ok(out)
}

/// Parse a single-document YAML file into `T`, bounded like every manifest;
/// a syntax or type error names `file:line:col`. Fields declared as
/// [`serde_saphyr::Spanned`] keep their own location for later checks
/// (see [`origin_at`]).
pub fn parse_typed<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<T, ParseError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((1, 1));
        ParseError {
            origin: Origin {
                file: file.to_string(),
                line,
                column,
            },
            message: first_line(&e.to_string()),
        }
    })
}

/// The origin of a value parsed by [`parse_typed`] at `location`.
pub fn origin_at(file: &str, location: &serde_saphyr::Location) -> Origin {
    Origin {
        file: file.to_string(),
        line: location.line() as usize,
        column: location.column() as usize,
    }
}

/// Parse a JSON file (one value).
pub fn parse_json(text: &str, file: &str) -> Result<Vec<Document>, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError {
        origin: Origin {
            file: file.to_string(),
            line: e.line(),
            column: e.column(),
        },
        message: e.to_string(),
    })?;
    Ok(vec![Document {
        value,
        origin: Origin {
            file: file.to_string(),
            line: 1,
            column: 1,
        },
    }])
}

fn first_content_line(doc: &str, start: usize) -> usize {
    for (i, l) in doc.lines().enumerate() {
        let t = l.trim();
        if !t.is_empty() && !t.starts_with('#') {
            return start + i;
        }
    }
    start
}

/// serde-saphyr messages can carry a rendered snippet; keep the sentence.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    // Drop a trailing " at line X column Y": plumb prints its own location.
    match line.find(" at line ") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_know_their_lines() {
        let text = "# leading comment\napiVersion: v1\nkind: A\n---\n\n---\napiVersion: v1\nkind: B\n--- # c\nkind: C\n";
        let docs = parse_documents(text, "x.yaml").unwrap();
        let lines: Vec<_> = docs.iter().map(|d| d.origin.line).collect();
        assert_eq!(lines, vec![2, 7, 10]);
        assert_eq!(docs[1].value["kind"], "B");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let text = "kind: A\n---\nkind: B\nmetadata:\n  name: [unclosed\n";
        let err = parse_documents(text, "apps/x.yaml").unwrap_err();
        assert_eq!(err.origin.file, "apps/x.yaml");
        assert!(err.origin.line >= 5, "{err}");
        assert!(err.to_string().starts_with("apps/x.yaml:"), "{err}");
    }

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut prev = "a";
        for n in names {
            bomb.push_str(&format!("{n}: &{n} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
            prev = n;
        }
        let start = std::time::Instant::now();
        let err = parse_documents(&bomb, "bomb.yaml").unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(err.origin.file, "bomb.yaml");
    }

    #[test]
    fn octal_modes_read_like_kubernetes() {
        let docs = parse_documents("defaultMode: 0644\n", "x.yaml").unwrap();
        assert_eq!(docs[0].value["defaultMode"], 420);
    }

    #[test]
    fn json_errors_are_located() {
        let err = parse_json("{\n  \"kind\": \"A\",\n  oops\n}", "x.json").unwrap_err();
        assert_eq!((err.origin.line, err.origin.file.as_str()), (3, "x.json"));
    }
}
