//! Terraform-language files: string literals under password-like arguments
//! of `resource`, `data`, `provider` and `module` blocks, password-like
//! variables' literal defaults, password-like `.tfvars` assignments, and
//! credential shapes anywhere.

use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Body, Structure};

use super::patterns::{is_secret_key, scan_lines};
use super::{Finding, Rule};

/// Scan one `.tf`/`.tfvars` file (a file that does not parse is only
/// searched for credential shapes; `plumb infra` reports the syntax error).
pub(crate) fn scan(path: &str, text: &str, tfvars: bool) -> Vec<Finding> {
    let mut out = scan_lines(path, text, 1, text.lines().count());
    // `generic-password` on HCL is what tf-literal-secret judges, with the
    // file's structure; keep only the shapes from the line scan.
    out.retain(|f| f.rule != Rule::GenericPassword);
    let Ok(body) = hcl_edit::parser::parse_body(text) else {
        return out;
    };
    let mut literals = Vec::new();
    if tfvars {
        arguments(&body, "", &mut literals);
    } else {
        for structure in body.iter() {
            let Structure::Block(block) = structure else {
                continue;
            };
            let label = block
                .labels
                .iter()
                .map(|l| l.as_str().to_string())
                .collect::<Vec<_>>()
                .join(".");
            match block.ident.as_str() {
                "resource" | "data" | "provider" | "module" => {
                    arguments(&block.body, &label, &mut literals)
                }
                "variable" => {
                    if is_secret_key(&label)
                        && let Some(default) = block.body.get_attribute("default")
                        && let Some(span) = literal(&default.value)
                    {
                        literals.push((format!("variable {label:?} default"), span));
                    }
                }
                _ => {}
            }
        }
    }
    for (what, span) in literals {
        let (line, column) = position(text, span.start + 1);
        out.push(Finding {
            file: path.to_string(),
            line,
            column,
            rule: Rule::TfLiteralSecret,
            hint: format!(
                "{what} is a literal ({} characters); pass it as a sensitive variable without a default, or read it from a secret store",
                span.len().saturating_sub(2)
            ),
        });
    }
    out
}

/// Literal password-like arguments of `body` and its nested blocks.
fn arguments(body: &Body, owner: &str, out: &mut Vec<(String, std::ops::Range<usize>)>) {
    for structure in body.iter() {
        match structure {
            Structure::Attribute(a) => expression(a.key.as_str(), &a.value, owner, out),
            Structure::Block(b) => arguments(&b.body, owner, out),
        }
    }
}

/// A literal under a password-like `key`, looking into object values
/// (`keepers = { password = "…" }`) too.
fn expression(
    key: &str,
    value: &Expression,
    owner: &str,
    out: &mut Vec<(String, std::ops::Range<usize>)>,
) {
    if is_secret_key(key)
        && let Some(span) = literal(value)
    {
        let what = if owner.is_empty() {
            format!("argument {key:?}")
        } else {
            format!("{owner}: argument {key:?}")
        };
        out.push((what, span));
    }
    if let Expression::Object(object) = value {
        for (k, v) in object.iter() {
            let name = match k {
                hcl_edit::expr::ObjectKey::Ident(i) => i.as_str().to_string(),
                hcl_edit::expr::ObjectKey::Expression(Expression::String(s)) => {
                    s.value().to_string()
                }
                hcl_edit::expr::ObjectKey::Expression(_) => continue,
            };
            expression(&name, v.expr(), owner, out);
        }
    }
}

/// The span of a non-empty string literal that is not a reference
/// (`vault://…`). Any literal counts, however weak: a password written in
/// a `.tf` file is in Git and in every plan.
fn literal(expr: &Expression) -> Option<std::ops::Range<usize>> {
    match expr {
        Expression::String(s) if !s.value().is_empty() && !s.value().contains("://") => s.span(),
        _ => None,
    }
}

/// 1-based line and character column of byte `at` in `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}
