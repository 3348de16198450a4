//! State as people and scripts read it: `show` (Terraform's text and its
//! JSON state representation) and `state list` / `state show`, with
//! sensitive values redacted.
//!
//! Nothing here writes; editing state is `state_edit`'s.

use plumb_state::StateSnapshot;
use plumb_tfplugin::Value;

use crate::addr::InstanceAddr;
use crate::engine::{paths_from_state, stored_instances};
use crate::error::InfraError;
use crate::render::json_value;

fn redacted(i: &plumb_state::InstanceState) -> Value {
    let v = plumb_tfplugin::value::untyped_from_json(&i.attributes);
    plumb_tfplugin::value::apply_sensitive_paths(v, &paths_from_state(&i.sensitive_attributes))
}

/// Human state, like `terraform show`.
pub fn state_human(state: &StateSnapshot, only: Option<&InstanceAddr>) -> String {
    let mut out = String::new();
    for (addr, r, i) in stored_instances(state) {
        if only.is_some_and(|o| o != &addr) {
            continue;
        }
        let kind = if r.mode == "data" { "data" } else { "resource" };
        out.push_str(&format!(
            "# {addr}:\n{kind} \"{}\" \"{}\" {{\n",
            r.ty, r.name
        ));
        if let Value::Map(m) = redacted(i) {
            let width = m.keys().map(String::len).max().unwrap_or(0);
            for (k, v) in m {
                if v.is_null() {
                    continue;
                }
                let shown = if v.is_sensitive() {
                    "(sensitive value)".to_string()
                } else {
                    v.to_string()
                };
                out.push_str(&format!("    {k:<width$} = {shown}\n"));
            }
        }
        out.push_str("}\n\n");
    }
    if !state.outputs.is_empty() && only.is_none() {
        out.push_str("\nOutputs:\n\n");
        for (k, o) in &state.outputs {
            let shown = if o.sensitive {
                "(sensitive value)".to_string()
            } else {
                plumb_tfplugin::value::untyped_from_json(&o.value).to_string()
            };
            out.push_str(&format!("{k} = {shown}\n"));
        }
    }
    out
}

/// State as Terraform's JSON state representation (`show -json`), with
/// sensitive values removed.
pub fn state_json(state: &StateSnapshot) -> serde_json::Value {
    let resources: Vec<serde_json::Value> = stored_instances(state)
        .into_iter()
        .map(|(addr, r, i)| {
            let (values, _, sensitive) = json_value(&redacted(i));
            let mut o = serde_json::json!({
                "address": addr.to_string(),
                "mode": r.mode,
                "type": r.ty,
                "name": r.name,
                "provider_name": r.provider.trim_start_matches("provider[\"").split('"').next().unwrap_or_default(),
                "schema_version": i.schema_version,
                "values": values,
                "sensitive_values": sensitive,
            });
            if let Some(k) = &i.index_key {
                o["index"] = k.clone();
            }
            o
        })
        .collect();
    let outputs: serde_json::Map<String, serde_json::Value> = state
        .outputs
        .iter()
        .map(|(k, o)| (k.clone(), serde_json::json!({"sensitive": o.sensitive, "value": if o.sensitive { serde_json::Value::Null } else { o.value.clone() }})))
        .collect();
    serde_json::json!({
        "format_version": "1.0",
        "terraform_version": state.terraform_version,
        "values": {"outputs": outputs, "root_module": {"resources": resources}},
    })
}

/// `state list`: every instance address, or those under the `filters`
/// (an address, or a resource or module prefix of one).
pub fn addresses(state: &StateSnapshot, filters: &[String]) -> Vec<String> {
    stored_instances(state)
        .into_iter()
        .map(|(addr, _, _)| addr.to_string())
        .filter(|s| {
            filters.is_empty()
                || filters.iter().any(|f| {
                    s == f || s.starts_with(&format!("{f}[")) || s.starts_with(&format!("{f}."))
                })
        })
        .collect()
}

/// `state show ADDRESS`: one instance, as `show` prints it.
pub fn instance(state: &StateSnapshot, address: &str) -> Result<String, InfraError> {
    let a = crate::addr::parse_instance(address)
        .map_err(|message| InfraError::StateAddress { message })?;
    let text = state_human(state, Some(&a));
    if text.is_empty() {
        return Err(InfraError::NotInState {
            address: address.to_string(),
        });
    }
    Ok(text)
}
