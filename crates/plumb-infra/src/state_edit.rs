//! Editing state directly, outside a walk: `state rm` forgets instances,
//! `state mv` moves one to another address, and `import` brings an existing
//! object under management by asking its provider to read it.
//!
//! Each edit takes the state lock itself (without waiting: another holder
//! means someone is applying), writes a new snapshot with a higher serial,
//! and lets go of the lock whatever happened.

use std::time::Duration;

use base64::Engine;
use plumb_state::{AnyBackend, InstanceState, LockInfo, ResourceKey, StateBackend, StateSnapshot};

use crate::addr::{InstanceAddr, InstanceKey, parse_instance};
use crate::config::Mode;
use crate::engine::{mark_schema_sensitive, paths_to_state, stored_instances};
use crate::error::InfraError;
use crate::providers::ProviderCatalog;
use crate::stack::{Stack, TOOL_VERSION};

/// An address given to a state command.
fn parse(address: &str) -> Result<InstanceAddr, InfraError> {
    parse_instance(address).map_err(|message| InfraError::StateAddress { message })
}

/// The state in `backend`, or an empty one.
async fn read(backend: &AnyBackend) -> Result<StateSnapshot, InfraError> {
    Ok(backend
        .read()
        .await?
        .unwrap_or_else(|| StateSnapshot::new(TOOL_VERSION)))
}

impl Stack {
    /// Runs `edit` under the state lock for `operation`, taken without
    /// waiting and released whatever `edit` returns.
    async fn locked<T>(
        &self,
        backend: &AnyBackend,
        operation: &str,
        edit: impl AsyncFnOnce() -> Result<T, InfraError>,
    ) -> Result<T, InfraError> {
        let lease = backend
            .lock(
                LockInfo::for_operation(
                    operation,
                    &backend.describe(),
                    TOOL_VERSION,
                    &self.environment().user,
                ),
                Duration::ZERO,
            )
            .await?;
        let r = edit().await;
        backend.unlock(lease).await?;
        r
    }

    /// `state rm`: forgets the instances at `addresses` (a resource address
    /// takes all its instances); the objects stay. Returns how many were
    /// forgotten.
    pub async fn state_rm(
        &self,
        backend: &AnyBackend,
        addresses: &[String],
    ) -> Result<usize, InfraError> {
        self.locked(backend, "OperationTypeStateRm", async || {
            let mut state = read(backend).await?;
            let mut removed = 0;
            for a in addresses {
                let a = parse(a)?;
                let before = stored_instances(&state).len();
                let key = ResourceKey {
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
                removed += before - stored_instances(&state).len();
            }
            if removed == 0 {
                return Err(InfraError::NothingRemoved);
            }
            state.serial += 1;
            backend.write(&state).await?;
            Ok(removed)
        })
        .await
    }

    /// `state mv`: moves the instance at `source` to `destination`.
    pub async fn state_mv(
        &self,
        backend: &AnyBackend,
        source: &str,
        destination: &str,
    ) -> Result<(), InfraError> {
        self.locked(backend, "OperationTypeStateMv", async || {
            let mut state = read(backend).await?;
            let from = parse(source)?;
            let to = parse(destination)?;
            let found = stored_instances(&state)
                .into_iter()
                .find(|(a, _, _)| *a == from)
                .map(|(_, r, i)| (r.provider.clone(), i.clone()));
            let Some((provider, mut inst)) = found else {
                return Err(InfraError::NotInState {
                    address: source.to_string(),
                });
            };
            if stored_instances(&state).iter().any(|(a, _, _)| *a == to) {
                return Err(InfraError::AlreadyInState {
                    address: destination.to_string(),
                });
            }
            let fk = ResourceKey {
                module: from.resource.module_string(),
                mode: from.resource.mode.as_str().into(),
                ty: from.resource.ty.clone(),
                name: from.resource.name.clone(),
                provider: provider.clone(),
            };
            state.remove_instance(&fk, &from.key.as_ref().map(InstanceKey::to_json));
            inst.index_key = to.key.as_ref().map(InstanceKey::to_json);
            state.put_instance(
                ResourceKey {
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
            Ok(())
        })
        .await
    }

    /// `import ADDRESS ID`: asks the provider for the object `id` and puts
    /// it in state at `address`, which the configuration must declare. The
    /// caller holds the state lock.
    pub async fn import(
        &self,
        providers: &ProviderCatalog,
        backend: &AnyBackend,
        address: &str,
        id: &str,
    ) -> Result<(), InfraError> {
        let root = self.config().as_ref();
        let addr = parse(address)?;
        let mut module = root;
        for n in &addr.resource.module {
            module = &module
                .modules
                .get(n)
                .ok_or_else(|| InfraError::ModuleNotConfigured { module: n.clone() })?
                .config;
        }
        let rb = module
            .resources
            .iter()
            .find(|r| {
                r.mode == Mode::Managed && r.ty == addr.resource.ty && r.name == addr.resource.name
            })
            .ok_or_else(|| InfraError::NotConfigured {
                resource: addr.resource.clone(),
            })?;
        let mut state = read(backend).await?;
        if stored_instances(&state).iter().any(|(a, _, _)| *a == addr) {
            return Err(InfraError::AlreadyManaged {
                address: address.to_string(),
            });
        }
        let p = providers.start(root, &rb.provider_name()).await?;
        let empty = p.schema().provider.block.unset();
        let fail = |source: plumb_tfplugin::Error| InfraError::Provider {
            address: address.to_string(),
            source,
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
                .ok_or_else(|| InfraError::NothingToImport { id: id.to_string() })?;
            let (v, private) = p
                .read_resource(&addr.resource.ty, &first.state, &first.private)
                .await
                .map_err(fail)?;
            if v.is_null() {
                return Err(InfraError::ImportGone { id: id.to_string() });
            }
            let schema = p
                .schema()
                .resources
                .get(&addr.resource.ty)
                .cloned()
                .unwrap_or_default();
            let inst = InstanceState {
                index_key: addr.key.as_ref().map(InstanceKey::to_json),
                schema_version: schema.version,
                attributes: plumb_tfplugin::value::to_typed_json(&v, &schema.block.implied_type()),
                sensitive_attributes: paths_to_state(&plumb_tfplugin::value::sensitive_paths(
                    &mark_schema_sensitive(v.clone(), &schema.block),
                )),
                private: if private.is_empty() {
                    None
                } else {
                    Some(base64::engine::general_purpose::STANDARD.encode(&private))
                },
                dependencies: vec![],
                create_before_destroy: false,
            };
            let source = providers.source_for(root, &rb.provider_name());
            state.put_instance(
                ResourceKey {
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
}
