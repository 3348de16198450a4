//! The machine-readable UI of `plan -json`, `apply -json` and
//! `destroy -json`: one JSON object per line on stdout, in the shape of
//! Terraform's streaming JSON UI (`@level`, `@message`, `@module`,
//! `@timestamp`, `type`, and the type's own field), so tools that follow a
//! Terraform run line by line follow a plumb run too.
//!
//! Sensitive values never appear: outputs marked sensitive carry no value,
//! and an instance's `id` is shown only when it is a known, non-sensitive
//! string.

use std::io::Write as _;
use std::time::Duration;

use plumb_tfplugin::Value;
use serde_json::{Value as Json, json};

use plumb_infra::addr::InstanceAddr;
use plumb_infra::diag::Diag;
use plumb_infra::{Action, WalkResult};

/// The UI format's version.
const UI_VERSION: &str = "1.2";

fn emit(level: &str, message: &str, kind: &str, fields: &[(&str, Json)]) {
    let mut line = json!({
        "@level": level,
        "@message": message,
        "@module": "terraform.ui",
        "@timestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "type": kind,
    });
    for (k, v) in fields {
        line[*k] = v.clone();
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The first line of every run.
pub fn version(tool: &str) {
    emit(
        "info",
        tool,
        "version",
        &[("terraform", json!(tool)), ("ui", json!(UI_VERSION))],
    );
}

/// An instance as the UI names it.
pub fn resource(addr: &InstanceAddr) -> Json {
    let mut local = addr.clone();
    local.resource.module.clear();
    let mut o = json!({
        "addr": addr.to_string(),
        "module": addr.resource.module_string().unwrap_or_default(),
        "resource": local.to_string(),
        "implied_provider": addr.resource.ty.split('_').next().unwrap_or_default(),
        "resource_type": addr.resource.ty,
        "resource_name": addr.resource.name,
    });
    if let Some(k) = &addr.key {
        o["resource_key"] = k.to_json();
    }
    o
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::NoOp => "noop",
        Action::Create => "create",
        Action::Update => "update",
        Action::Delete => "delete",
        Action::DeleteThenCreate | Action::CreateThenDelete => "replace",
        Action::Read => "read",
    }
}

/// `planned_change` lines, the output changes and the plan's
/// `change_summary`.
pub fn plan(result: &WalkResult) {
    for c in &result.changes {
        let word = match (c.action, &c.moved_from) {
            (Action::NoOp, Some(_)) => "move",
            (Action::NoOp, None) if c.imported => "import",
            (Action::NoOp, None) => continue,
            (a, _) => action_word(a),
        };
        let mut change = json!({"resource": resource(&c.addr), "action": word});
        if let Some(from) = &c.moved_from {
            change["previous_resource"] = resource(from);
        }
        emit(
            "info",
            &format!("{}: Plan to {word}", c.addr),
            "planned_change",
            &[("change", change)],
        );
    }
    if !result.output_changes.is_empty() {
        let outputs: serde_json::Map<String, Json> = result
            .output_changes
            .iter()
            .map(|(name, before, after, sensitive)| {
                let action = if before.is_null() {
                    "create"
                } else if after.is_null() {
                    "delete"
                } else {
                    "update"
                };
                (
                    name.clone(),
                    json!({"sensitive": sensitive, "action": action}),
                )
            })
            .collect();
        emit_outputs(outputs);
    }
    let (a, c, d, i) = plumb_infra::render::counts(&result.changes);
    summary("plan", a, c, d, i);
}

/// A `change_summary` line for `operation` (plan, apply or destroy).
pub fn summary(operation: &str, add: usize, change: usize, remove: usize, import: usize) {
    let message = match operation {
        "plan" => format!("Plan: {add} to add, {change} to change, {remove} to destroy."),
        "destroy" => format!("Destroy complete! Resources: {remove} destroyed."),
        _ => {
            format!("Apply complete! Resources: {add} added, {change} changed, {remove} destroyed.")
        }
    };
    emit(
        "info",
        &message,
        "change_summary",
        &[(
            "changes",
            json!({"add": add, "change": change, "import": import, "remove": remove, "operation": operation}),
        )],
    );
}

/// The `id` of an instance's value, when it is safe to show.
fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Map(m) => match m.get("id") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn hook(
    addr: &InstanceAddr,
    action: Action,
    value: Option<&Value>,
    elapsed: Option<Duration>,
) -> Json {
    let mut h = json!({"resource": resource(addr), "action": action_word(action)});
    if let Some(id) = value.and_then(id_of) {
        h["id_key"] = json!("id");
        h["id_value"] = json!(id);
    }
    if let Some(e) = elapsed {
        h["elapsed_seconds"] = json!(e.as_secs());
    }
    h
}

/// An instance's provider call begins; `prior` is its value before.
pub fn apply_start(addr: &InstanceAddr, action: Action, prior: &Value) {
    let verb = match action {
        Action::Create => "Creating...".to_string(),
        Action::Delete => with_id("Destroying...", prior),
        _ => with_id("Modifying...", prior),
    };
    emit(
        "info",
        &format!("{addr}: {verb}"),
        "apply_start",
        &[("hook", hook(addr, action, Some(prior), None))],
    );
}

/// An instance's provider call ended well; `value` is its new value.
pub fn apply_complete(addr: &InstanceAddr, action: Action, value: &Value, elapsed: Duration) {
    let secs = elapsed.as_secs();
    let what = match action {
        Action::Create => with_id(&format!("Creation complete after {secs}s"), value),
        Action::Delete => format!("Destruction complete after {secs}s"),
        _ => with_id(&format!("Modifications complete after {secs}s"), value),
    };
    let shown = if action == Action::Delete {
        None
    } else {
        Some(value)
    };
    emit(
        "info",
        &format!("{addr}: {what}"),
        "apply_complete",
        &[("hook", hook(addr, action, shown, Some(elapsed)))],
    );
}

/// An instance's provider call failed.
pub fn apply_errored(addr: &InstanceAddr, action: Action, elapsed: Duration) {
    let what = match action {
        Action::Create => "Creation",
        Action::Delete => "Destruction",
        _ => "Modifications",
    };
    emit(
        "error",
        &format!("{addr}: {what} errored after {}s", elapsed.as_secs()),
        "apply_errored",
        &[("hook", hook(addr, action, None, Some(elapsed)))],
    );
}

/// `refresh_start` (before the provider reads an instance) or
/// `refresh_complete` (after).
pub fn refresh(addr: &InstanceAddr, value: &Value, done: bool) {
    let mut h = json!({"resource": resource(addr)});
    if let Some(id) = id_of(value) {
        h["id_key"] = json!("id");
        h["id_value"] = json!(id);
    }
    let (kind, what) = if done {
        ("refresh_complete", "Refresh complete")
    } else {
        ("refresh_start", "Refreshing state...")
    };
    emit(
        "info",
        &format!("{addr}: {}", with_id(what, value)),
        kind,
        &[("hook", h)],
    );
}

/// `resource_drift`: refreshing found the object changed outside plumb, or
/// gone.
pub fn drift(addr: &InstanceAddr, gone: bool) {
    let action = if gone { "delete" } else { "update" };
    emit(
        "info",
        &format!("{addr}: Drift detected ({action})"),
        "resource_drift",
        &[(
            "change",
            json!({"resource": resource(addr), "action": action}),
        )],
    );
}

fn with_id(text: &str, v: &Value) -> String {
    match id_of(v) {
        Some(id) => format!("{text} [id={id}]"),
        None => text.to_string(),
    }
}

/// The root outputs after an apply; sensitive ones without their value.
pub fn outputs(outputs: &std::collections::BTreeMap<String, (Value, bool)>) {
    let list: serde_json::Map<String, Json> = outputs
        .iter()
        .map(|(name, (v, sensitive))| {
            let mut o = json!({
                "sensitive": sensitive,
                "type": v.deep_unmark().infer_type().to_json(),
            });
            if !sensitive {
                o["value"] = plumb_tfplugin::value::to_json(v);
            }
            (name.clone(), o)
        })
        .collect();
    emit_outputs(list);
}

/// An `outputs` line: one entry per root output.
fn emit_outputs(outputs: serde_json::Map<String, Json>) {
    emit(
        "info",
        &format!("Outputs: {}", outputs.len()),
        "outputs",
        &[("outputs", Json::Object(outputs))],
    );
}

/// A `diagnostic` line for an error.
pub fn diagnostic(d: &Diag) {
    let mut diag = json!({
        "severity": "error",
        "summary": d.message,
        "detail": d.hint.clone().unwrap_or_default(),
    });
    if let Some(f) = &d.file {
        let span = d.span.clone().unwrap_or(0..0);
        let pos = |offset: usize| {
            let (line, column) = f.line_col(offset);
            json!({"line": line, "column": column, "byte": offset})
        };
        diag["range"] = json!({
            "filename": f.path.display().to_string(),
            "start": pos(span.start),
            "end": pos(span.end),
        });
    }
    emit(
        "error",
        &format!("Error: {}", d.message),
        "diagnostic",
        &[("diagnostic", diag)],
    );
}
