//! `show`, `state ...` and `import`: reading and editing state directly.

use plumb_state::{AnyBackend, LockInfo, StateBackend, StateSnapshot};
use plumb_tfplugin::Value;

use crate::addr::{InstanceAddr, InstanceKey, ResourceAddr, parse_instance};
use crate::cli::{InfraError, StateCommand};
use crate::config::{Mode, ModuleConfig};
use crate::providers::ProviderCatalog;

fn instances(
    state: &StateSnapshot,
) -> Vec<(
    InstanceAddr,
    &plumb_state::ResourceState,
    &plumb_state::InstanceState,
)> {
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

fn redacted(i: &plumb_state::InstanceState) -> Value {
    let v = plumb_tfplugin::value::untyped_from_json(&i.attributes);
    plumb_tfplugin::value::apply_sensitive_paths(
        v,
        &crate::engine::paths_from_state(&i.sensitive_attributes),
    )
}

/// Human state, like `terraform show`.
pub fn state_human(state: &StateSnapshot, only: Option<&InstanceAddr>) -> String {
    let mut out = String::new();
    for (addr, r, i) in instances(state) {
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
    let resources: Vec<serde_json::Value> = instances(state)
        .into_iter()
        .map(|(addr, r, i)| {
            let (values, _, sensitive) = crate::render::json_value(&redacted(i));
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

fn parse(addr: &str) -> Result<InstanceAddr, InfraError> {
    parse_instance(addr).map_err(|m| InfraError::Other {
        message: m,
        hint: Some("list addresses with plumb infra state list".into()),
    })
}

/// `state list|show|rm|mv`.
pub async fn state_cmd(
    cmd: StateCommand,
    backend: &AnyBackend,
    tool: &str,
) -> Result<i32, InfraError> {
    let read = || async {
        Ok::<_, InfraError>(
            backend
                .read()
                .await?
                .unwrap_or_else(|| StateSnapshot::new(tool)),
        )
    };
    match cmd {
        StateCommand::List { filters } => {
            let state = read().await?;
            for (addr, _, _) in instances(&state) {
                let s = addr.to_string();
                if filters.is_empty()
                    || filters.iter().any(|f| {
                        s == *f
                            || s.starts_with(&format!("{f}["))
                            || s.starts_with(&format!("{f}."))
                    })
                {
                    println!("{s}");
                }
            }
            Ok(0)
        }
        StateCommand::Show { address } => {
            let state = read().await?;
            let a = parse(&address)?;
            let text = state_human(&state, Some(&a));
            if text.is_empty() {
                return Err(InfraError::Other {
                    message: format!("no instance {address} in state"),
                    hint: Some("list addresses with plumb infra state list".into()),
                });
            }
            print!("{text}");
            Ok(0)
        }
        StateCommand::Rm { addresses } => {
            let lease = backend
                .lock(
                    LockInfo::for_operation(
                        "OperationTypeStateRm",
                        &backend.describe(),
                        tool,
                        &crate::cli::lock_holder(),
                    ),
                    std::time::Duration::ZERO,
                )
                .await?;
            let r = async {
                let mut state = read().await?;
                let mut removed = 0;
                for a in &addresses {
                    let a = parse(a)?;
                    let before = instances(&state).len();
                    let key = plumb_state::ResourceKey {
                        module: a.resource.module_string(),
                        mode: a.resource.mode.as_str().into(),
                        ty: a.resource.ty.clone(),
                        name: a.resource.name.clone(),
                        provider: String::new(),
                    };
                    if a.key.is_none() {
                        let keys: Vec<_> = state
                            .resource(key.module.as_deref(), &key.mode, &key.ty, &key.name)
                            .map(|r| r.instances.iter().map(|i| i.index_key.clone()).collect())
                            .unwrap_or_default();
                        for k in keys {
                            state.remove_instance(&key, &k);
                        }
                    } else {
                        state.remove_instance(&key, &a.key.as_ref().map(InstanceKey::to_json));
                    }
                    removed += before - instances(&state).len();
                }
                if removed == 0 {
                    return Err(InfraError::Other {
                        message: "no matching instances in state".into(),
                        hint: Some("list addresses with plumb infra state list".into()),
                    });
                }
                state.serial += 1;
                backend.write(&state).await?;
                println!("Successfully removed {removed} resource instance(s).");
                Ok(0)
            }
            .await;
            backend.unlock(lease).await?;
            r
        }
        StateCommand::Mv {
            source,
            destination,
        } => {
            let lease = backend
                .lock(
                    LockInfo::for_operation(
                        "OperationTypeStateMv",
                        &backend.describe(),
                        tool,
                        &crate::cli::lock_holder(),
                    ),
                    std::time::Duration::ZERO,
                )
                .await?;
            let r = async {
                let mut state = read().await?;
                let from = parse(&source)?;
                let to = parse(&destination)?;
                let found = instances(&state)
                    .into_iter()
                    .find(|(a, _, _)| *a == from)
                    .map(|(_, r, i)| (r.provider.clone(), i.clone()));
                let Some((provider, mut inst)) = found else {
                    return Err(InfraError::Other {
                        message: format!("no instance {source} in state"),
                        hint: Some("list addresses with plumb infra state list".into()),
                    });
                };
                if instances(&state).iter().any(|(a, _, _)| *a == to) {
                    return Err(InfraError::Other {
                        message: format!("{destination} already exists in state"),
                        hint: Some("remove it first with state rm".into()),
                    });
                }
                let fk = plumb_state::ResourceKey {
                    module: from.resource.module_string(),
                    mode: from.resource.mode.as_str().into(),
                    ty: from.resource.ty.clone(),
                    name: from.resource.name.clone(),
                    provider: provider.clone(),
                };
                state.remove_instance(&fk, &from.key.as_ref().map(InstanceKey::to_json));
                inst.index_key = to.key.as_ref().map(InstanceKey::to_json);
                state.put_instance(
                    plumb_state::ResourceKey {
                        module: to.resource.module_string(),
                        mode: to.resource.mode.as_str().into(),
                        ty: to.resource.ty.clone(),
                        name: to.resource.name.clone(),
                        provider,
                    },
                    inst,
                );
                state.serial += 1;
                state.normalize();
                backend.write(&state).await?;
                println!("Move \"{source}\" to \"{destination}\"\nSuccessfully moved 1 object(s).");
                Ok(0)
            }
            .await;
            backend.unlock(lease).await?;
            r
        }
    }
}

/// `import ADDRESS ID`.
pub async fn import(
    root: &ModuleConfig,
    catalog: &ProviderCatalog,
    backend: &AnyBackend,
    address: &str,
    id: &str,
    tool: &str,
) -> Result<(), InfraError> {
    let addr = parse(address)?;
    let module = {
        let mut m = root;
        for n in &addr.resource.module {
            m = &m
                .modules
                .get(n)
                .ok_or_else(|| InfraError::Other {
                    message: format!("module {n} is not in the configuration"),
                    hint: None,
                })?
                .config;
        }
        m
    };
    let rb = module
        .resources
        .iter()
        .find(|r| {
            r.mode == Mode::Managed && r.ty == addr.resource.ty && r.name == addr.resource.name
        })
        .ok_or_else(|| InfraError::Other {
            message: format!("{} is not in the configuration", addr.resource),
            hint: Some(format!(
                "add resource \"{}\" \"{}\" {{}} first, then import",
                addr.resource.ty, addr.resource.name
            )),
        })?;
    let mut state = backend
        .read()
        .await?
        .unwrap_or_else(|| StateSnapshot::new(tool));
    if instances(&state).iter().any(|(a, _, _)| *a == addr) {
        return Err(InfraError::Other {
            message: format!("{address} is already managed"),
            hint: Some("remove it with state rm to import again".into()),
        });
    }
    let p = catalog.start(root, &rb.provider_name()).await?;
    let empty = Value::Map(
        p.schema()
            .provider
            .block
            .attributes
            .keys()
            .map(|k| (k.clone(), Value::Null))
            .collect(),
    );
    let fail = |e: plumb_tfplugin::Error| InfraError::Other {
        message: format!("{address}: {e}"),
        hint: None,
    };
    let r = async {
        p.configure(&empty).await.map_err(fail)?;
        let found = p
            .import_resource_state(&addr.resource.ty, id)
            .await
            .map_err(fail)?;
        let first = found
            .into_iter()
            .find(|i| i.type_name == addr.resource.ty)
            .ok_or_else(|| InfraError::Other {
                message: format!("nothing found to import under {id:?}"),
                hint: None,
            })?;
        let (v, private) = p
            .read_resource(&addr.resource.ty, &first.state, &first.private)
            .await
            .map_err(fail)?;
        if v.is_null() {
            return Err(InfraError::Other {
                message: format!("cannot import non-existent object {id:?}"),
                hint: Some("check the id".into()),
            });
        }
        let schema = p
            .schema()
            .resources
            .get(&addr.resource.ty)
            .cloned()
            .unwrap_or_default();
        use base64::Engine;
        let inst = plumb_state::InstanceState {
            index_key: addr.key.as_ref().map(InstanceKey::to_json),
            schema_version: schema.version,
            attributes: plumb_tfplugin::value::to_typed_json(&v, &schema.block.implied_type()),
            sensitive_attributes: crate::engine::paths_to_state(
                &plumb_tfplugin::value::sensitive_paths(&crate::engine::mark_schema_sensitive(
                    v.clone(),
                    &schema.block,
                )),
            ),
            private: if private.is_empty() {
                None
            } else {
                Some(base64::engine::general_purpose::STANDARD.encode(&private))
            },
            dependencies: vec![],
            create_before_destroy: false,
        };
        let source = catalog.source_for(root, &rb.provider_name());
        state.put_instance(
            plumb_state::ResourceKey {
                module: addr.resource.module_string(),
                mode: "managed".into(),
                ty: addr.resource.ty.clone(),
                name: addr.resource.name.clone(),
                provider: format!("provider[\"{source}\"]"),
            },
            inst,
        );
        state.serial += 1;
        state.normalize();
        backend.write(&state).await?;
        Ok(())
    }
    .await;
    p.shutdown().await;
    r
}
