//! Findings as a SARIF 2.1.0 log, for code-scanning dashboards.

use serde_json::{Value, json};

use super::{Finding, Rule};

/// A SARIF 2.1.0 log of `findings` (paths relative to the scanned root,
/// which is the log's `%SRCROOT%`). Results are errors when `refuse`, else
/// warnings. Never the values: only rule, place and hint.
pub fn sarif(findings: &[Finding], refuse: bool) -> Value {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.id(),
                "name": r.id(),
                "shortDescription": {"text": r.description()},
                "helpUri": "https://plumb.dev/docs/SECRETS#scanning",
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.rule.id(),
                "ruleIndex": Rule::ALL.iter().position(|r| *r == f.rule).unwrap_or(0),
                "level": if refuse { "error" } else { "warning" },
                "message": {"text": f.hint},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.file, "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": f.line, "startColumn": f.column.max(1)},
                    }
                }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "plumb secrets scan",
                "informationUri": "https://plumb.dev",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
