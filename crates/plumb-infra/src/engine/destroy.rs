//! Destroying what state holds: a whole stack (`destroy`), the instances a
//! configuration no longer declares (orphans, before anything else is
//! planned), and single instances a resource's count or for_each dropped.
//!
//! Resources are destroyed in reverse dependency order, using the same
//! scheduler as plan and apply over the graph state records: a resource
//! waits for every resource that depends on it, and a failure keeps what
//! it depends on in place.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use plumb_state::StateSnapshot;
use plumb_tfplugin::{Block, Provider, Value};

use super::context::WalkCtx;
use super::graph::Node;
use super::instance::destroy_value;
use super::options::WalkMode;
use super::scheduler;
use super::stored::{decode_prior, private_bytes, state_instances};
use crate::addr::{InstanceAddr, ResourceAddr};
use crate::config::Mode;
use crate::diag::Diag;
use crate::modules::module_at;
use crate::outcome::{Action, Change, WalkError};

/// Destroys one instance in the prior state (in a plan, only records the
/// change); refused when its configuration sets `prevent_destroy`.
pub(super) async fn delete_instance(
    ctx: &Arc<WalkCtx>,
    inst: &InstanceAddr,
    provider: &Arc<Provider>,
    block: &Block,
    prevent: bool,
) -> Result<(), Diag> {
    let Some((st, provider_str)) = ctx.prior_instance(inst) else {
        return Ok(());
    };
    if prevent {
        return Err(Diag::new(format!(
            "{inst} has lifecycle.prevent_destroy set, but the plan would destroy it"
        ))
        .hint("remove prevent_destroy first"));
    }
    let version = provider
        .schema()
        .resources
        .get(&inst.resource.ty)
        .map(|s| s.version)
        .unwrap_or(0);
    let prior = decode_prior(provider, &inst.resource.ty, block, &st, version)
        .await
        .map_err(|m| Diag::new(format!("{inst}: {m}")))?;
    ctx.changes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Change {
            addr: inst.clone(),
            action: Action::Delete,
            before: prior.clone(),
            after: Value::Null,
            replace_paths: vec![],
            imported: false,
            moved_from: None,
        });
    if ctx.opts.mode == WalkMode::Plan || ctx.opts.plan_only {
        return Ok(());
    }
    let _permit = ctx
        .limit
        .acquire()
        .await
        .map_err(|_| Diag::new("walk cancelled"))?;
    if inst.resource.mode == Mode::Managed {
        destroy_value(ctx, inst, provider, &prior, &private_bytes(&st))
            .await
            .map_err(|e| Diag::new(format!("{inst}: {e}")))?;
    }
    ctx.record(inst, &provider_str, None).await?;
    ctx.progress.instance_done(inst);
    Ok(())
}

async fn provider_for_state(
    ctx: &Arc<WalkCtx>,
    inst: &InstanceAddr,
) -> Result<(Arc<Provider>, Block), Diag> {
    let cfg = module_at(&ctx.root, &inst.resource.module);
    let rb = cfg.and_then(|c| {
        c.resources.iter().find(|x| {
            x.mode == inst.resource.mode && x.ty == inst.resource.ty && x.name == inst.resource.name
        })
    });
    let (name, alias) = match rb.and_then(|r| r.provider.clone()) {
        Some((n, a)) => (n, a),
        None => (
            inst.resource
                .ty
                .split('_')
                .next()
                .unwrap_or_default()
                .to_string(),
            None,
        ),
    };
    let p = ctx.provider(&name, alias.as_deref()).await?;
    let block = match inst.resource.mode {
        Mode::Managed => p.schema().resources.get(&inst.resource.ty),
        Mode::Data => p.schema().data_sources.get(&inst.resource.ty),
    }
    .map(|s| s.block.clone())
    .ok_or_else(|| {
        Diag::new(format!(
            "{inst}: the provider has no type {:?}",
            inst.resource.ty
        ))
    })?;
    Ok((p, block))
}

/// Destroys state instances in `which` in reverse dependency order.
async fn destroy_in_order(
    ctx: &Arc<WalkCtx>,
    which: Vec<(InstanceAddr, Vec<String>)>,
) -> Vec<WalkError> {
    // Group by resource; a resource is destroyed after every resource that depends on it.
    let mut by_res: BTreeMap<ResourceAddr, Vec<InstanceAddr>> = BTreeMap::new();
    let mut deps_of: BTreeMap<ResourceAddr, BTreeSet<String>> = BTreeMap::new();
    for (i, d) in which {
        deps_of.entry(i.resource.clone()).or_default().extend(d);
        by_res.entry(i.resource.clone()).or_default().push(i);
    }
    let names: HashMap<String, ResourceAddr> =
        by_res.keys().map(|r| (r.to_string(), r.clone())).collect();
    let mut graph: BTreeMap<Node, BTreeSet<Node>> = by_res
        .keys()
        .map(|r| (Node::Resource(r.clone()), BTreeSet::new()))
        .collect();
    for (r, ds) in &deps_of {
        for d in ds {
            if let Some(dep) = names.get(d) {
                // r depends on dep, so dep is destroyed after r.
                graph
                    .entry(Node::Resource(dep.clone()))
                    .or_default()
                    .insert(Node::Resource(r.clone()));
            }
        }
    }
    let by_res = Arc::new(by_res);
    scheduler::run(graph, |node| {
        let ctx = ctx.clone();
        let by_res = by_res.clone();
        async move {
            let Node::Resource(r) = &node else {
                return Ok(());
            };
            destroy_resource(&ctx, by_res.get(r).cloned().unwrap_or_default()).await
        }
    })
    .await
}

/// Destroys the instances of one resource, concurrently.
async fn destroy_resource(ctx: &Arc<WalkCtx>, insts: Vec<InstanceAddr>) -> Result<(), Vec<Diag>> {
    ctx.progress.add_total(insts.len() as u64);
    let mut set = tokio::task::JoinSet::new();
    for inst in insts {
        let ctx = ctx.clone();
        set.spawn(async move {
            let (p, block) = provider_for_state(&ctx, &inst).await?;
            let prevent = module_at(&ctx.root, &inst.resource.module)
                .and_then(|c| {
                    c.resources.iter().find(|x| {
                        x.mode == inst.resource.mode
                            && x.ty == inst.resource.ty
                            && x.name == inst.resource.name
                    })
                })
                .is_some_and(|x| x.lifecycle.prevent_destroy);
            delete_instance(&ctx, &inst, &p, &block, prevent).await
        });
    }
    let mut errs = Vec::new();
    while let Some(j) = set.join_next().await {
        match j {
            Ok(Ok(())) => {}
            Ok(Err(d)) => errs.push(d),
            Err(e) => errs.push(Diag::new(e.to_string())),
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Destroys the instances in state that the configuration no longer
/// declares (within `-target`); data sources just leave the state.
pub(super) async fn destroy_orphans(ctx: &Arc<WalkCtx>) -> Result<(), Vec<Diag>> {
    let snapshot = ctx.prior.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let orphans: Vec<(InstanceAddr, Vec<String>)> = state_instances(&snapshot)
        .into_iter()
        .filter(|(i, _)| {
            let declared = ctx.instances.contains(&i.resource.module)
                && module_at(&ctx.root, &i.resource.module).is_some_and(|c| {
                    c.resources.iter().any(|x| {
                        x.mode == i.resource.mode
                            && x.ty == i.resource.ty
                            && x.name == i.resource.name
                    })
                });
            !declared && ctx.is_targeted(&i.resource)
        })
        .collect();
    if orphans.is_empty() {
        return Ok(());
    }
    // Data sources just leave the state.
    let (data, managed): (Vec<_>, Vec<_>) = orphans
        .into_iter()
        .partition(|(i, _)| i.resource.mode == Mode::Data);
    for (i, _) in data {
        if ctx.opts.mode == WalkMode::Apply {
            forget_data(ctx, &snapshot, &i).await.map_err(|d| vec![d])?;
        }
    }
    let errs = destroy_in_order(ctx, managed).await;
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.into_iter().map(|e| e.diag).collect())
    }
}

/// Removes data instance `i` from state, recorded under the provider
/// `snapshot` names for its resource.
async fn forget_data(
    ctx: &WalkCtx,
    snapshot: &StateSnapshot,
    i: &InstanceAddr,
) -> Result<(), Diag> {
    let provider = snapshot
        .resource(
            i.resource.module_string().as_deref(),
            "data",
            &i.resource.ty,
            &i.resource.name,
        )
        .map(|r| r.provider.clone())
        .unwrap_or_default();
    ctx.record(i, &provider, None).await
}

/// Destroys everything in state (within `-target`).
pub(super) async fn destroy_all(ctx: &Arc<WalkCtx>) -> Vec<WalkError> {
    let snapshot = ctx.prior.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let all: Vec<(InstanceAddr, Vec<String>)> = state_instances(&snapshot)
        .into_iter()
        .filter(|(i, _)| ctx.is_targeted(&i.resource))
        .collect();
    let (data, managed): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(i, _)| i.resource.mode == Mode::Data);
    let mut errors = destroy_in_order(ctx, managed).await;
    if !ctx.opts.plan_only {
        for (i, _) in data {
            if let Err(d) = forget_data(ctx, &snapshot, &i).await {
                errors.push(WalkError {
                    what: i.to_string(),
                    diag: d,
                });
            }
        }
    }
    errors
}
