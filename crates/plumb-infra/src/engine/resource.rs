//! One resource node of the walk: its provider and schema, its instances
//! expanded from count or for_each and run concurrently under the
//! `-parallelism` limit, instances left in state without configuration
//! destroyed, and the resource's value recorded for what refers to it.
//!
//! A resource outside `-target` keeps its prior values, so references to it
//! still resolve.

use std::collections::HashSet;
use std::sync::Arc;

use plumb_state::InstanceState;
use plumb_tfplugin::Value;

use super::context::WalkCtx;
use super::destroy::delete_instance;
use super::instance::{ResourceRun, run_instance};
use super::options::WalkMode;
use super::scope::ResourceValue;
use crate::addr::{InstanceAddr, InstanceKey, ResourceAddr};
use crate::config::{Mode, ModuleConfig, ResourceBlock};
use crate::diag::Diag;
use crate::expand::{Expansion, expand_in};
use crate::modules::module_at;
use crate::outcome::{Action, Change};
use crate::providers::ProviderCatalog;

fn provider_string(catalog: &ProviderCatalog, root: &ModuleConfig, r: &ResourceBlock) -> String {
    let source = catalog.source_for(root, &r.provider_name());
    match &r.provider {
        Some((_, Some(alias))) => format!("provider[\"{source}\"].{alias}"),
        _ => format!("provider[\"{source}\"]"),
    }
}

/// Expands a resource's count / for_each into instance keys with their each values.
fn expand(
    ctx: &WalkCtx,
    r: &ResourceBlock,
    m: &[String],
    cfg: &ModuleConfig,
) -> Result<Option<Vec<Expansion>>, Diag> {
    let values = ctx.read_values();
    let scope = ctx.scope(&values, m, cfg);
    expand_in(&scope, r.count.as_ref(), r.for_each.as_ref(), &r.origin)
}

struct InstanceOutcome {
    key: Option<InstanceKey>,
    value: Value,
    change: Option<Change>,
}

/// Plans (and in a walk that applies, applies) every instance of the
/// resource at `addr`.
pub(super) async fn run_resource(ctx: &Arc<WalkCtx>, addr: &ResourceAddr) -> Result<(), Vec<Diag>> {
    let cfg =
        module_at(&ctx.root, &addr.module).ok_or_else(|| vec![Diag::new("module vanished")])?;
    let r = cfg
        .resources
        .iter()
        .find(|x| x.mode == addr.mode && x.ty == addr.ty && x.name == addr.name)
        .ok_or_else(|| vec![Diag::new("resource vanished")])?
        .clone();
    if let Some(t) = &ctx.targeted
        && !t.contains(addr)
    {
        // Not targeted: keep its prior values for references.
        let prior = prior_values(ctx, addr, &r).await;
        ctx.write_values()
            .resources
            .insert(addr.clone(), Arc::new(prior));
        return Ok(());
    }
    let provider = ctx
        .provider(
            &r.provider
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_else(|| r.provider_name()),
            r.provider.as_ref().and_then(|p| p.1.as_deref()),
        )
        .await
        .map_err(|d| vec![d.at(r.origin.file.clone(), r.origin.span.clone())])?;
    let schema = match r.mode {
        Mode::Managed => provider.schema().resources.get(&r.ty),
        Mode::Data => provider.schema().data_sources.get(&r.ty),
    }
    .cloned()
    .ok_or_else(|| {
        vec![
            r.origin
                .diag(format!(
                    "the provider {} has no {} type {:?}",
                    provider.name(),
                    if r.mode == Mode::Data {
                        "data source"
                    } else {
                        "resource"
                    },
                    r.ty
                ))
                .hint("check the type name and the provider's documentation"),
        ]
    })?;
    let Some(instances) = expand(ctx, &r, &addr.module, cfg).map_err(|d| vec![d])? else {
        if ctx.opts.mode == WalkMode::Apply {
            return Err(vec![
                r.origin
                    .diag("count or for_each depends on values known only after apply")
                    .hint("apply the resources it depends on first with -target"),
            ]);
        }
        ctx.write_values()
            .resources
            .insert(addr.clone(), Arc::new(ResourceValue::Unknown));
        ctx.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Change {
                addr: InstanceAddr {
                    resource: addr.clone(),
                    key: None,
                },
                action: Action::Create,
                before: Value::Null,
                after: Value::Unknown,
                replace_paths: vec![],
                imported: false,
                moved_from: None,
            });
        return Ok(());
    };
    let run = Arc::new(ResourceRun {
        ctx: ctx.clone(),
        provider_str: provider_string(&ctx.catalog, &ctx.root, &r),
        resource: r,
        schema,
        provider,
    });
    let mut set = tokio::task::JoinSet::new();
    let total = instances.len();
    ctx.progress.add_total(total as u64);
    for (n, (key, each)) in instances.into_iter().enumerate() {
        // The provider validates the block once, with its first instance.
        let first = n == 0;
        let run = run.clone();
        let inst = InstanceAddr {
            resource: addr.clone(),
            key,
        };
        // Take the permit before spawning: at most -parallelism instance
        // tasks exist at once, so memory stays flat however many instances.
        let permit = match ctx.limit.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Err(vec![Diag::new("walk cancelled")]),
        };
        set.spawn(async move {
            let _permit = permit;
            let out = run_instance(&run, &inst, each, first).await;
            run.ctx.progress.instance_done(&inst);
            out.map(|(value, change)| InstanceOutcome {
                key: inst.key,
                value,
                change,
            })
        });
    }
    let mut outcomes = Vec::with_capacity(total);
    let mut errs = Vec::new();
    while let Some(j) = set.join_next().await {
        match j {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(d)) => errs.extend(d),
            Err(e) => errs.push(Diag::new(format!("internal task failed: {e}"))),
        }
    }
    let r = &run.resource;
    // Instances of this resource left in state without a key in config: destroy.
    let live: HashSet<Option<InstanceKey>> = outcomes.iter().map(|o| o.key.clone()).collect();
    if errs.is_empty() && r.mode == Mode::Managed {
        let stale: Vec<Option<InstanceKey>> = {
            let prior = ctx.prior.lock().unwrap_or_else(|e| e.into_inner());
            prior
                .resource(
                    addr.module_string().as_deref(),
                    "managed",
                    &addr.ty,
                    &addr.name,
                )
                .map(|rs| {
                    rs.instances
                        .iter()
                        .map(|i| i.index_key.as_ref().and_then(InstanceKey::from_json))
                        .filter(|k| !live.contains(k))
                        .collect()
                })
                .unwrap_or_default()
        };
        for key in stale {
            let inst = InstanceAddr {
                resource: addr.clone(),
                key,
            };
            if let Err(d) = delete_instance(
                ctx,
                &inst,
                &run.provider,
                &run.schema.block,
                r.lifecycle.prevent_destroy,
            )
            .await
            {
                errs.push(d);
            }
        }
    }
    let mut changes = Vec::new();
    let rv = match (&r.count, &r.for_each) {
        (Some(_), _) => {
            let mut items: Vec<(i64, Value)> = outcomes
                .iter()
                .map(|o| {
                    (
                        match &o.key {
                            Some(InstanceKey::Int(i)) => *i,
                            _ => 0,
                        },
                        o.value.clone(),
                    )
                })
                .collect();
            items.sort_by_key(|(i, _)| *i);
            ResourceValue::Count(items.into_iter().map(|(_, v)| v).collect())
        }
        (_, Some(_)) => ResourceValue::ForEach(
            outcomes
                .iter()
                .map(|o| {
                    (
                        match &o.key {
                            Some(InstanceKey::Str(s)) => s.clone(),
                            _ => String::new(),
                        },
                        o.value.clone(),
                    )
                })
                .collect(),
        ),
        _ => ResourceValue::Single(
            outcomes
                .first()
                .map(|o| o.value.clone())
                .unwrap_or(Value::Null),
        ),
    };
    for o in outcomes {
        if let Some(c) = o.change {
            changes.push(c);
        }
    }
    ctx.changes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(changes);
    ctx.write_values()
        .resources
        .insert(addr.clone(), Arc::new(rv));
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

async fn prior_values(ctx: &WalkCtx, addr: &ResourceAddr, r: &ResourceBlock) -> ResourceValue {
    let prior = ctx.prior.lock().unwrap_or_else(|e| e.into_inner());
    let Some(rs) = prior.resource(
        addr.module_string().as_deref(),
        addr.mode.as_str(),
        &addr.ty,
        &addr.name,
    ) else {
        return ResourceValue::Unknown;
    };
    let to_v = |i: &InstanceState| plumb_tfplugin::value::untyped_from_json(&i.attributes);
    match (&r.count, &r.for_each) {
        (Some(_), _) => ResourceValue::Count(rs.instances.iter().map(to_v).collect()),
        (_, Some(_)) => ResourceValue::ForEach(
            rs.instances
                .iter()
                .map(|i| {
                    (
                        i.index_key
                            .as_ref()
                            .and_then(|k| k.as_str())
                            .unwrap_or_default()
                            .to_string(),
                        to_v(i),
                    )
                })
                .collect(),
        ),
        _ => rs
            .instances
            .first()
            .map(|i| ResourceValue::Single(to_v(i)))
            .unwrap_or(ResourceValue::Unknown),
    }
}
