//! A scan's findings written for people (a table) and for code scanning
//! tools (SARIF 2.1.0). The JSON form is the [`ScanDocument`] itself.
//!
//! SARIF: one run whose driver is plumb, one rule per advisory id (its
//! summary as the short description), and one result per finding, at
//! level `error` for HIGH and CRITICAL, `warning` for MEDIUM and `note`
//! otherwise, located at each file the package was found in.

use serde_json::{Value, json};

use crate::report::{ScanDocument, Severity};

/// The `$schema` SARIF files name.
pub const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The findings as a table with the columns ID, SEVERITY, PACKAGE,
/// VERSION, FIXED, then a line that counts them and names the database.
pub fn table(doc: &ScanDocument) -> String {
    let header = ["ID", "SEVERITY", "PACKAGE", "VERSION", "FIXED"];
    let rows: Vec<[String; 5]> = doc
        .report
        .findings
        .iter()
        .map(|f| {
            [
                f.id.clone(),
                f.severity.to_string(),
                f.package.clone(),
                f.version.clone(),
                f.fixed.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    if !rows.is_empty() {
        line(header);
        for row in &rows {
            line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
        }
    }
    out.push_str(&summary(doc));
    out.push('\n');
    out
}

/// One line: how many findings of which severity in how many packages,
/// against which database.
pub fn summary(doc: &ScanDocument) -> String {
    let findings = &doc.report.findings;
    let mut counts = Vec::new();
    for sev in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ] {
        let n = findings.iter().filter(|f| f.severity == sev).count();
        if n > 0 {
            counts.push(format!("{n} {}", sev.to_string().to_lowercase()));
        }
    }
    let detail = if counts.is_empty() {
        String::new()
    } else {
        format!(" ({})", counts.join(", "))
    };
    format!(
        "{} finding{}{detail} in {} package{} of {}; advisories {} ({} records, imported {})",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        doc.subject.packages,
        if doc.subject.packages == 1 { "" } else { "s" },
        doc.subject.name,
        doc.database.digest,
        doc.database.advisories,
        doc.database.imported,
    )
}

/// The SARIF level of a severity.
pub fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

/// The findings as a SARIF 2.1.0 log.
pub fn sarif(doc: &ScanDocument) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    let mut results = Vec::new();
    for f in &doc.report.findings {
        let index = *seen.entry(f.id.clone()).or_insert_with(|| {
            let text = f
                .summary
                .clone()
                .unwrap_or_else(|| format!("{} affects {}", f.id, f.package));
            let mut rule = json!({
                "id": f.id,
                "shortDescription": {"text": text},
                "defaultConfiguration": {"level": sarif_level(f.severity)},
                "properties": {"severity": f.severity.to_string()},
            });
            if !f.aliases.is_empty() {
                rule["properties"]["aliases"] = json!(f.aliases);
            }
            rules.push(rule);
            rules.len() - 1
        });
        let fixed = match &f.fixed {
            Some(v) => format!("; fixed in {v}"),
            None => "; no fixed version known".into(),
        };
        let about = f
            .summary
            .as_deref()
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        let locations: Vec<Value> = if f.locations.is_empty() {
            vec![doc.subject.name.clone()]
        } else {
            f.locations.clone()
        }
        .into_iter()
        .map(|uri| json!({"physicalLocation": {"artifactLocation": {"uri": uri}}}))
        .collect();
        results.push(json!({
            "ruleId": f.id,
            "ruleIndex": index,
            "level": sarif_level(f.severity),
            "message": {"text": format!(
                "{} {} is affected by {} ({}){about}{fixed}",
                f.package, f.version, f.id, f.severity
            )},
            "locations": locations,
        }));
    }
    json!({
        "version": "2.1.0",
        "$schema": SARIF_SCHEMA,
        "runs": [{
            "tool": {"driver": {
                "name": doc.scanner.name,
                "version": doc.scanner.version,
                "rules": rules,
            }},
            "results": results,
            "properties": {
                "database": doc.database.digest,
                "subject": doc.subject.name,
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::*;

    fn doc() -> ScanDocument {
        let f = |id: &str, sev, fixed: Option<&str>| Finding {
            id: id.into(),
            package: "lodash".into(),
            version: "4.17.20".into(),
            severity: sev,
            fixed: fixed.map(Into::into),
            summary: Some("Command injection".into()),
            locations: vec!["app/package-lock.json".into()],
            ..Finding::default()
        };
        ScanDocument {
            report: ScanReport {
                schema_version: 1,
                findings: vec![
                    f("GHSA-35jh-r3h4-6jhm", Severity::High, Some("4.17.21")),
                    f("GHSA-29mw-wpgm-hmr9", Severity::Medium, None),
                ],
            },
            scanner: ScannerInfo {
                name: "plumb".into(),
                version: "0.1.0".into(),
            },
            database: DatabaseInfo {
                digest: "sha256:ab".into(),
                advisories: 2,
                imported: "2026-12-06T00:00:00Z".into(),
            },
            subject: Subject {
                name: "app".into(),
                digest: None,
                packages: 1,
            },
            created: "2026-12-06T00:00:00Z".into(),
        }
    }

    #[test]
    fn table_has_the_columns_and_a_summary() {
        let t = table(&doc());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["ID", "SEVERITY", "PACKAGE", "VERSION", "FIXED"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "GHSA-35jh-r3h4-6jhm",
                "HIGH",
                "lodash",
                "4.17.20",
                "4.17.21"
            ]
        );
        assert!(lines[2].ends_with(" -"), "{t}");
        assert!(
            lines[3].starts_with("2 findings (1 high, 1 medium) in 1 package of app"),
            "{t}"
        );
    }

    #[test]
    fn sarif_levels_rules_and_locations() {
        let s = sarif(&doc());
        assert_eq!(s["version"], "2.1.0");
        let run = &s["runs"][0];
        assert_eq!(run["tool"]["driver"]["name"], "plumb");
        assert_eq!(run["tool"]["driver"]["rules"].as_array().unwrap().len(), 2);
        let r = &run["results"][0];
        assert_eq!(r["ruleId"], "GHSA-35jh-r3h4-6jhm");
        assert_eq!(r["level"], "error");
        assert_eq!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "app/package-lock.json"
        );
        assert_eq!(run["results"][1]["level"], "warning");
        assert_eq!(sarif_level(Severity::Low), "note");
        assert_eq!(sarif_level(Severity::Unknown), "note");
        assert_eq!(sarif_level(Severity::Critical), "error");
    }
}
