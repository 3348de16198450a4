//! `moved` blocks: before anything is planned, instances in the prior state
//! move to their new addresses, and each remembers where it came from so
//! the plan can say so.
//!
//! A move whose destination already holds state is taken as done before
//! and skipped, so a `moved` block can stay in the configuration for as
//! long as old states may still need it.

use std::collections::HashMap;

use plumb_state::{ResourceKey, StateSnapshot};

use crate::addr::{InstanceAddr, InstanceKey, ResourceAddr, parse_instance, split_module_path};
use crate::config::ModuleConfig;
use crate::diag::ConfigError;

/// A `moved` block between module instances (`module.a` to `module.a[0]`):
/// every resource under `from` moves under `to`, unless `to` already has
/// resources in state (the move happened before).
fn move_module(
    prior: &mut StateSnapshot,
    from: &[String],
    to: &[String],
    moved_from: &mut HashMap<InstanceAddr, InstanceAddr>,
) {
    let path_of = |r: &plumb_state::ResourceState| {
        ResourceAddr::from_state(r.module.as_deref(), &r.mode, &r.ty, &r.name)
    };
    if prior
        .resources
        .iter()
        .any(|r| path_of(r).module.starts_with(to))
    {
        return;
    }
    for r in &mut prior.resources {
        let before = path_of(r);
        if !before.module.starts_with(from) {
            continue;
        }
        let mut after = before.clone();
        after.module = to
            .iter()
            .chain(&before.module[from.len()..])
            .cloned()
            .collect();
        r.module = after.module_string();
        for i in &r.instances {
            let key = i.index_key.as_ref().and_then(InstanceKey::from_json);
            moved_from.insert(
                InstanceAddr {
                    resource: after.clone(),
                    key: key.clone(),
                },
                InstanceAddr {
                    resource: before.clone(),
                    key,
                },
            );
        }
    }
}

/// Applies the root module's `moved` blocks to `prior`, recording each
/// moved instance's old address in `moved_from`.
pub fn apply_moves(
    root: &ModuleConfig,
    prior: &mut StateSnapshot,
    moved_from: &mut HashMap<InstanceAddr, InstanceAddr>,
) -> Result<(), ConfigError> {
    for m in &root.moved {
        if let (Ok((fpath, "")), Ok((tpath, ""))) = (
            split_module_path(m.from.trim()),
            split_module_path(m.to.trim()),
        ) && !fpath.is_empty()
            && !tpath.is_empty()
        {
            move_module(prior, &fpath, &tpath, moved_from);
            continue;
        }
        let from = parse_instance(&m.from).map_err(|e| ConfigError::from(m.origin.diag(e)))?;
        let to = parse_instance(&m.to).map_err(|e| ConfigError::from(m.origin.diag(e)))?;
        if from.resource.ty != to.resource.ty || from.resource.mode != to.resource.mode {
            return Err(m
                .origin
                .diag("a moved block can only move to a resource of the same type")
                .into());
        }
        let fmod = from.resource.module_string();
        let tmod = to.resource.module_string();
        let target_exists = prior.resources.iter().any(|r| {
            r.module == tmod
                && r.ty == to.resource.ty
                && r.name == to.resource.name
                && r.mode == to.resource.mode.as_str()
                && (to.key.is_none()
                    || r.instances
                        .iter()
                        .any(|i| i.index_key.as_ref().and_then(InstanceKey::from_json) == to.key))
        });
        if target_exists {
            continue;
        }
        let Some(ri) = prior.resources.iter().position(|r| {
            r.module == fmod
                && r.ty == from.resource.ty
                && r.name == from.resource.name
                && r.mode == from.resource.mode.as_str()
        }) else {
            continue;
        };
        if from.key.is_none() && to.key.is_none() {
            let r = &mut prior.resources[ri];
            r.module = tmod;
            r.name = to.resource.name.clone();
            for i in &r.instances {
                let key = i.index_key.as_ref().and_then(InstanceKey::from_json);
                moved_from.insert(
                    InstanceAddr {
                        resource: to.resource.clone(),
                        key: key.clone(),
                    },
                    InstanceAddr {
                        resource: from.resource.clone(),
                        key,
                    },
                );
            }
        } else {
            let fkey = from.key.as_ref().map(InstanceKey::to_json);
            let Some(ii) = prior.resources[ri]
                .instances
                .iter()
                .position(|i| i.index_key == fkey)
            else {
                continue;
            };
            let mut inst = prior.resources[ri].instances.remove(ii);
            let provider = prior.resources[ri].provider.clone();
            if prior.resources[ri].instances.is_empty() {
                prior.resources.remove(ri);
            }
            inst.index_key = to.key.as_ref().map(InstanceKey::to_json);
            prior.put_instance(
                ResourceKey {
                    module: tmod,
                    mode: to.resource.mode.as_str().into(),
                    ty: to.resource.ty.clone(),
                    name: to.resource.name.clone(),
                    provider,
                },
                inst,
            );
            moved_from.insert(to.clone(), from.clone());
        }
    }
    Ok(())
}
