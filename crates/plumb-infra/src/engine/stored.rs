//! Instances as state stores them, and back: sensitive paths in state
//! JSON, stored attributes decoded (and upgraded by the provider when the
//! schema moved on), private data, the journal's resource keys, and the
//! index of a prior snapshot by instance address.
//!
//! This is the only part of the engine that knows the shape of plumb-state's
//! records.

use std::collections::HashMap;

use plumb_state::{InstanceState, ResourceKey, ResourceState, StateSnapshot};
use plumb_tfplugin::value::PathStep;
use plumb_tfplugin::{Block, Provider, Value, ValueError};

use super::body::mark_schema_sensitive;
use crate::addr::{InstanceAddr, InstanceKey, ResourceAddr};

/// Why an instance's stored state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PriorStateError {
    /// The stored attributes do not fit the schema.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// The stored attributes could not be handed to the provider.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The provider could not upgrade them to its schema's version.
    #[error(transparent)]
    Provider(#[from] plumb_tfplugin::Error),
}

/// Converts a sensitive-path list from state JSON.
pub fn paths_from_state(list: &[serde_json::Value]) -> Vec<Vec<PathStep>> {
    list.iter()
        .filter_map(|p| {
            p.as_array().map(|steps| {
                steps
                    .iter()
                    .filter_map(|s| match s.get("type").and_then(|t| t.as_str()) {
                        Some("get_attr") => s
                            .get("value")
                            .and_then(|v| v.as_str())
                            .map(|v| PathStep::Attr(v.to_string())),
                        Some("index") => match s.get("value").and_then(|v| v.get("value")) {
                            Some(serde_json::Value::Number(n)) => n.as_i64().map(PathStep::Index),
                            Some(serde_json::Value::String(k)) => Some(PathStep::Key(k.clone())),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect()
            })
        })
        .collect()
}

/// Converts sensitive paths to state JSON.
pub fn paths_to_state(paths: &[Vec<PathStep>]) -> Vec<serde_json::Value> {
    paths
        .iter()
        .map(|p| {
            serde_json::Value::Array(
                p.iter()
                    .map(|s| match s {
                        PathStep::Attr(a) => serde_json::json!({"type": "get_attr", "value": a}),
                        PathStep::Key(k) => serde_json::json!({"type": "index", "value": {"value": k, "type": "string"}}),
                        PathStep::Index(i) => serde_json::json!({"type": "index", "value": {"value": i, "type": "number"}}),
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Every instance of a snapshot by address, with its resource's provider.
pub fn index_prior(snapshot: &StateSnapshot) -> HashMap<InstanceAddr, (InstanceState, String)> {
    let mut out = HashMap::new();
    for r in &snapshot.resources {
        let addr = ResourceAddr::from_state(r.module.as_deref(), &r.mode, &r.ty, &r.name);
        for i in &r.instances {
            let key = i.index_key.as_ref().and_then(InstanceKey::from_json);
            out.insert(
                InstanceAddr {
                    resource: addr.clone(),
                    key,
                },
                (i.clone(), r.provider.clone()),
            );
        }
    }
    out
}

/// An instance's stored value, in the schema's current `version` (the
/// provider upgrades older ones), with its sensitive paths marked.
pub async fn decode_prior(
    provider: &Provider,
    ty_name: &str,
    block: &Block,
    state: &InstanceState,
    version: i64,
) -> Result<Value, PriorStateError> {
    let ty = block.implied_type();
    let v = if state.schema_version == version {
        plumb_tfplugin::value::from_json(&state.attributes, &ty)?
    } else {
        let raw = serde_json::to_vec(&state.attributes)?;
        provider
            .upgrade_resource_state(ty_name, state.schema_version, &raw)
            .await?
    };
    Ok(plumb_tfplugin::value::apply_sensitive_paths(
        v,
        &paths_from_state(&state.sensitive_attributes),
    ))
}

/// An instance's private data, decoded.
pub fn private_bytes(state: &InstanceState) -> Vec<u8> {
    use base64::Engine;
    state
        .private
        .as_ref()
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .unwrap_or_default()
}

/// The state record of an instance with `value`, as `block` (schema
/// `version`) types it.
pub fn make_instance_state(
    key: &Option<InstanceKey>,
    value: &Value,
    block: &Block,
    version: i64,
    private: &[u8],
    deps: &[String],
    cbd: bool,
) -> InstanceState {
    use base64::Engine;
    let marked = mark_schema_sensitive(value.clone(), block);
    InstanceState {
        index_key: key.as_ref().map(InstanceKey::to_json),
        schema_version: version,
        attributes: plumb_tfplugin::value::to_typed_json(value, &block.implied_type()),
        sensitive_attributes: paths_to_state(&plumb_tfplugin::value::sensitive_paths(&marked)),
        private: if private.is_empty() {
            None
        } else {
            Some(base64::engine::general_purpose::STANDARD.encode(private))
        },
        dependencies: deps.to_vec(),
        create_before_destroy: cbd,
    }
}

/// The journal's key of a resource.
pub fn resource_key(addr: &ResourceAddr, provider: &str) -> ResourceKey {
    ResourceKey {
        module: addr.module_string(),
        mode: addr.mode.as_str().to_string(),
        ty: addr.ty.clone(),
        name: addr.name.clone(),
        provider: provider.to_string(),
    }
}

/// Every instance in `state`, with its resource and stored record.
pub fn stored_instances(
    state: &StateSnapshot,
) -> Vec<(InstanceAddr, &ResourceState, &InstanceState)> {
    let mut out = Vec::new();
    for r in &state.resources {
        let addr = ResourceAddr::from_state(r.module.as_deref(), &r.mode, &r.ty, &r.name);
        for i in &r.instances {
            out.push((
                InstanceAddr {
                    resource: addr.clone(),
                    key: i.index_key.as_ref().and_then(InstanceKey::from_json),
                },
                r,
                i,
            ));
        }
    }
    out
}

/// Every instance in a snapshot, with the dependencies state recorded.
pub fn state_instances(snapshot: &StateSnapshot) -> Vec<(InstanceAddr, Vec<String>)> {
    stored_instances(snapshot)
        .into_iter()
        .map(|(addr, _, i)| (addr, i.dependencies.clone()))
        .collect()
}
