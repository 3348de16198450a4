//! Plans for people (Terraform's `+ ~ - -/+` shape) and for scripts (JSON
//! shaped like Terraform's plan and state representations). Sensitive values
//! never appear in either.

use std::collections::BTreeMap;

use plumb_tfplugin::Value;

use crate::config::Mode;
use crate::outcome::{Action, Change, WalkResult};

fn show_value(v: &Value) -> String {
    match v {
        Value::Sensitive(_) => "(sensitive value)".into(),
        Value::Unknown => "(known after apply)".into(),
        Value::Null => "null".into(),
        Value::String(s) if s.contains('\n') => format!("<<-EOT\n{s}EOT"),
        other => other.to_string(),
    }
}

fn attrs_of(v: &Value) -> BTreeMap<String, Value> {
    match v.unmarked() {
        Value::Map(m) => m.clone(),
        _ => BTreeMap::new(),
    }
}

/// Counts (add, change, destroy, import).
pub fn counts(changes: &[Change]) -> (usize, usize, usize, usize) {
    let (mut a, mut c, mut d, mut i) = (0, 0, 0, 0);
    for ch in changes {
        match ch.action {
            Action::Create => a += 1,
            Action::Update => c += 1,
            Action::Delete => d += 1,
            Action::DeleteThenCreate | Action::CreateThenDelete => {
                a += 1;
                d += 1;
            }
            Action::NoOp | Action::Read => {}
        }
        if ch.imported {
            i += 1;
        }
    }
    (a, c, d, i)
}

/// The human plan.
pub fn human_plan(result: &WalkResult, destroy: bool) -> String {
    let mut out = String::new();
    let real: Vec<&Change> = result.changes.iter().filter(|c| c.is_shown()).collect();
    if real.is_empty() && result.output_changes.is_empty() {
        out.push_str("\nNo changes. Your infrastructure matches the configuration.\n");
        return out;
    }
    if !real.is_empty() {
        out.push_str("\nplumb will perform the following actions:\n");
    }
    for c in &real {
        let (verb, sym) = match c.action {
            Action::Create => ("will be created", "+"),
            Action::Update => ("will be updated in-place", "~"),
            Action::Delete => (
                if destroy {
                    "will be destroyed"
                } else {
                    "will be destroyed (no longer in the configuration)"
                },
                "-",
            ),
            Action::DeleteThenCreate => ("must be replaced", "-/+"),
            Action::CreateThenDelete => ("must be replaced", "+/-"),
            Action::Read => ("will be read during apply", "<="),
            Action::NoOp => ("", " "),
        };
        out.push('\n');
        if let Some(from) = &c.moved_from {
            out.push_str(&format!("  # {from} has moved to {}\n", c.addr));
        }
        if c.imported {
            out.push_str(&format!("  # {} will be imported\n", c.addr));
        }
        if c.action != Action::NoOp {
            out.push_str(&format!("  # {} {verb}\n", c.addr));
        }
        let kind = if c.addr.resource.mode == Mode::Data {
            "data"
        } else {
            "resource"
        };
        out.push_str(&format!(
            "{sym:>3} {kind} \"{}\" \"{}\" {{\n",
            c.addr.resource.ty, c.addr.resource.name
        ));
        let before = attrs_of(&c.before);
        let after = attrs_of(&c.after);
        let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        let width = keys.iter().map(|k| k.len()).max().unwrap_or(0);
        for k in keys {
            let b = before.get(k).cloned().unwrap_or(Value::Null);
            let a = after.get(k).cloned().unwrap_or(Value::Null);
            let forces = c
                .replace_paths
                .iter()
                .any(|p| matches!(p.first(), Some(plumb_tfplugin::PathStep::Attr(x)) if x == k));
            let tail = if forces
                && matches!(
                    c.action,
                    Action::DeleteThenCreate | Action::CreateThenDelete
                ) {
                " # forces replacement"
            } else {
                ""
            };
            match c.action {
                Action::Create | Action::Read => {
                    if !a.is_null() {
                        out.push_str(&format!("      + {k:<width$} = {}\n", show_value(&a)));
                    }
                }
                Action::Delete => {
                    if !b.is_null() {
                        out.push_str(&format!(
                            "      - {k:<width$} = {} -> null\n",
                            show_value(&b)
                        ));
                    }
                }
                _ => {
                    if b.same(&a) && b.is_sensitive() == a.is_sensitive() {
                        continue;
                    }
                    if b.is_null() {
                        out.push_str(&format!("      + {k:<width$} = {}{tail}\n", show_value(&a)));
                    } else if a.is_null() {
                        out.push_str(&format!(
                            "      - {k:<width$} = {} -> null{tail}\n",
                            show_value(&b)
                        ));
                    } else {
                        out.push_str(&format!(
                            "      ~ {k:<width$} = {} -> {}{tail}\n",
                            show_value(&b),
                            show_value(&a)
                        ));
                    }
                }
            }
        }
        out.push_str("    }\n");
    }
    let (a, c, d, i) = counts(&result.changes);
    if !real.is_empty() {
        if i > 0 {
            out.push_str(&format!(
                "\nPlan: {i} to import, {a} to add, {c} to change, {d} to destroy.\n"
            ));
        } else {
            out.push_str(&format!(
                "\nPlan: {a} to add, {c} to change, {d} to destroy.\n"
            ));
        }
    }
    if !result.output_changes.is_empty() {
        out.push_str("\nChanges to Outputs:\n");
        for (name, before, after, sensitive) in &result.output_changes {
            let show = |v: &Value| {
                if *sensitive {
                    "(sensitive value)".to_string()
                } else {
                    show_value(v)
                }
            };
            if before.is_null() {
                out.push_str(&format!("  + {name} = {}\n", show(after)));
            } else if after.is_null() {
                out.push_str(&format!("  - {name} = {}\n", show(before)));
            } else {
                out.push_str(&format!(
                    "  ~ {name} = {} -> {}\n",
                    show(before),
                    show(after)
                ));
            }
        }
    }
    out
}

/// A value as plan JSON: sensitive parts become null (with a parallel
/// "sensitive" structure), unknowns become null (with "unknown" true).
pub fn json_value(v: &Value) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    use serde_json::Value as J;
    match v {
        Value::Sensitive(_) => (J::Null, J::Bool(false), J::Bool(true)),
        Value::Unknown => (J::Null, J::Bool(true), J::Bool(false)),
        Value::List(items) | Value::Set(items) => {
            let (mut a, mut u, mut s) = (Vec::new(), Vec::new(), Vec::new());
            for x in items {
                let (x, xu, xs) = json_value(x);
                a.push(x);
                u.push(xu);
                s.push(xs);
            }
            (J::Array(a), J::Array(u), J::Array(s))
        }
        Value::Map(m) => {
            let (mut a, mut u, mut s) = (
                serde_json::Map::new(),
                serde_json::Map::new(),
                serde_json::Map::new(),
            );
            for (k, x) in m {
                let (x, xu, xs) = json_value(x);
                a.insert(k.clone(), x);
                if xu != J::Bool(false) {
                    u.insert(k.clone(), xu);
                }
                if xs != J::Bool(false) {
                    s.insert(k.clone(), xs);
                }
            }
            (J::Object(a), J::Object(u), J::Object(s))
        }
        other => (
            plumb_tfplugin::value::to_json(other),
            J::Bool(false),
            J::Bool(false),
        ),
    }
}

/// Terraform-shaped plan JSON.
pub fn json_plan(result: &WalkResult) -> serde_json::Value {
    let rc: Vec<serde_json::Value> = result
        .changes
        .iter()
        .map(|c| {
            let (before, _, before_sensitive) = json_value(&c.before);
            let (after, after_unknown, after_sensitive) = json_value(&c.after);
            let mut o = serde_json::json!({
                "address": c.addr.to_string(),
                "mode": c.addr.resource.mode.as_str(),
                "type": c.addr.resource.ty,
                "name": c.addr.resource.name,
                "change": {
                    "actions": c.action.json_actions(),
                    "before": before,
                    "after": after,
                    "after_unknown": after_unknown,
                    "before_sensitive": before_sensitive,
                    "after_sensitive": after_sensitive,
                },
            });
            if let Some(k) = &c.addr.key {
                o["index"] = k.to_json();
            }
            if let Some(m) = c.addr.resource.module_string() {
                o["module_address"] = serde_json::json!(m);
            }
            if let Some(f) = &c.moved_from {
                o["previous_address"] = serde_json::json!(f.to_string());
            }
            o
        })
        .collect();
    let oc: serde_json::Map<String, serde_json::Value> = result
        .output_changes
        .iter()
        .map(|(n, b, a, s)| {
            let actions = if b.is_null() { vec!["create"] } else if a.is_null() { vec!["delete"] } else { vec!["update"] };
            let (bj, _, _) = json_value(b);
            let (aj, au, _) = json_value(a);
            (
                n.clone(),
                serde_json::json!({"actions": actions, "before": if *s { serde_json::Value::Null } else { bj }, "after": if *s { serde_json::Value::Null } else { aj }, "after_unknown": au, "before_sensitive": s, "after_sensitive": s}),
            )
        })
        .collect();
    serde_json::json!({
        "format_version": "1.2",
        "terraform_version": env!("CARGO_PKG_VERSION"),
        "resource_changes": rc,
        "output_changes": oc,
        "errored": !result.errors.is_empty(),
    })
}
