//! One resource instance, planned and, in a walk that applies, applied:
//! its body evaluated against the schema, its prior state (moved, imported
//! or stored) refreshed, the provider's plan turned into an [`Action`],
//! and the provider calls that carry it out, each recorded in state as soon
//! as it succeeds.
//!
//! The instances of one resource share a [`ResourceRun`]: the walk, the
//! block, its schema and its provider.
//!
//! Providers see values without marks, so what they return is marked again
//! here: attributes the schema calls sensitive, and every path that was
//! sensitive in the configuration (a sensitive variable, a value from a SOPS
//! file) or, for a refreshed prior, in state. That is what plans show as
//! `(sensitive value)` and state records in `sensitive_attributes`.

use std::sync::Arc;
use std::time::Instant;

use plumb_tfplugin::value::{apply_sensitive_paths, sensitive_paths};
use plumb_tfplugin::{Provider, Schema, Value};

use super::body::{
    apply_ignore_changes, eval_body, fill_computed_unknown, mark_schema_sensitive, proposed_new,
};
use super::context::WalkCtx;
use super::options::WalkMode;
use super::stored::{decode_prior, make_instance_state, private_bytes};
use crate::addr::{InstanceAddr, InstanceKey, ResourceAddr};
use crate::coerce::value_to_string;
use crate::config::{Mode, Reference, ResourceBlock};
use crate::diag::Diag;
use crate::eval::Evaluator;
use crate::modules::module_at;
use crate::outcome::{Action, Change};
use crate::references::resource_references;

/// What every instance of one resource shares.
pub(super) struct ResourceRun {
    /// The walk.
    pub(super) ctx: Arc<WalkCtx>,
    /// The resource block.
    pub(super) resource: ResourceBlock,
    /// Its schema.
    pub(super) schema: Schema,
    /// Its provider, configured.
    pub(super) provider: Arc<Provider>,
    /// The provider as state names it: `provider["registry.terraform.io/hashicorp/random"]`.
    pub(super) provider_str: String,
}

fn instance_deps(r: &ResourceBlock, m: &[String]) -> Vec<String> {
    let mut out: Vec<String> = resource_references(r)
        .into_iter()
        .filter_map(|x| match x {
            Reference::Resource(mode, t, n) => Some(
                ResourceAddr {
                    module: m.to_vec(),
                    mode,
                    ty: t,
                    name: n,
                }
                .to_string(),
            ),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Plans instance `inst` of `run`'s resource (with its `each` values), and
/// applies it in a walk that applies; `validate` has the provider validate
/// the block first (done once per resource). Returns the instance's value
/// for references and the change to show, if any.
pub(super) async fn run_instance(
    run: &ResourceRun,
    inst: &InstanceAddr,
    each: Option<(Value, Value)>,
    validate: bool,
) -> Result<(Value, Option<Change>), Vec<Diag>> {
    let ResourceRun {
        ctx,
        resource: r,
        schema,
        provider,
        provider_str,
    } = run;
    let cfg = module_at(&ctx.root, &inst.resource.module)
        .ok_or_else(|| vec![Diag::new("module vanished")])?;
    let block = &schema.block;
    let config = {
        let values = ctx.read_values();
        let mut scope = ctx.scope(&values, &inst.resource.module, cfg);
        scope.count_index = match &inst.key {
            Some(InstanceKey::Int(i)) if r.count.is_some() => Some(*i),
            _ => None,
        };
        scope.each = each;
        let mut ev = Evaluator::new(&scope, &r.origin.file.text);
        eval_body(&mut ev, &r.body, block, &r.origin, &r.address())?
    };
    // What the configuration marked, to mark again in what providers return.
    let config_marks = sensitive_paths(&config);
    let marked = |v: Value| -> Value {
        mark_schema_sensitive(apply_sensitive_paths(v, &config_marks), block)
    };
    let at = |e: plumb_tfplugin::Error| vec![r.origin.diag(format!("{inst}: {e}"))];
    if r.mode == Mode::Data {
        let plain = config.deep_unmark();
        if !plain.is_wholly_known() && ctx.opts.mode == WalkMode::Plan {
            let after = fill_computed_unknown(&config, block);
            return Ok((
                after.clone(),
                Some(Change {
                    addr: inst.clone(),
                    action: Action::Read,
                    before: Value::Null,
                    after,
                    replace_paths: vec![],
                    imported: false,
                    moved_from: None,
                }),
            ));
        }
        provider.validate_resource_config(&r.ty, &plain).await.ok();
        let v = provider.read_data_source(&r.ty, &plain).await.map_err(at)?;
        let v = marked(v);
        if ctx.opts.mode == WalkMode::Apply {
            let st = make_instance_state(&inst.key, &v, block, schema.version, &[], &[], false);
            ctx.record(inst, provider_str, Some(st))
                .await
                .map_err(|d| vec![d])?;
        }
        return Ok((v, None));
    }
    let plain_config = config.deep_unmark();
    if validate {
        provider
            .validate_resource_config(&r.ty, &plain_config)
            .await
            .map_err(at)?;
    }
    // Prior state (moved, imported or stored), refreshed.
    let mut imported = false;
    let mut refreshed_changed = false;
    let (mut prior, mut prior_private) = match ctx.prior_instance(inst) {
        Some((st, _)) => (
            decode_prior(provider, &r.ty, block, &st, schema.version)
                .await
                .map_err(|m| vec![r.origin.diag(format!("{inst}: reading its state: {m}"))])?,
            private_bytes(&st),
        ),
        None => (Value::Null, Vec::new()),
    };
    if prior.is_null() {
        if let Some((id_expr, origin)) = ctx.import_ids.get(inst) {
            let id = {
                let values = ctx.read_values();
                let scope = ctx.scope(&values, &inst.resource.module, cfg);
                let mut ev = Evaluator::new(&scope, &origin.file.text);
                ev.eval(id_expr)
                    .map_err(|e| vec![origin.diag_at(e.span, e.message)])?
            };
            let id = value_to_string(&id).map_err(|m| vec![origin.diag(m)])?;
            let found = provider
                .import_resource_state(&r.ty, &id)
                .await
                .map_err(at)?;
            let first = found
                .into_iter()
                .find(|i| i.type_name == r.ty)
                .ok_or_else(|| {
                    vec![origin.diag(format!(
                        "{inst}: the provider found nothing to import under id {id:?}"
                    ))]
                })?;
            let (v, p) = provider
                .read_resource(&r.ty, &first.state, &first.private)
                .await
                .map_err(at)?;
            if v.is_null() {
                return Err(vec![
                    origin.diag(format!("{inst}: cannot import non-existent object {id:?}")),
                ]);
            }
            prior = v;
            prior_private = p;
            imported = true;
        }
    } else if ctx.opts.refresh {
        ctx.progress.refresh_start(inst, &prior);
        let (v, p) = provider
            .read_resource(&r.ty, &prior.deep_unmark(), &prior_private)
            .await
            .map_err(at)?;
        // Keep the prior's marks from state (a sensitive keeper stays masked
        // as the plan's "before").
        let v = apply_sensitive_paths(mark_schema_sensitive(v, block), &sensitive_paths(&prior));
        ctx.progress.refresh_complete(inst, &v);
        refreshed_changed = !v.same(&prior);
        if refreshed_changed {
            ctx.progress.drift(inst, v.is_null());
        }
        prior = v;
        prior_private = p;
        if prior.is_null() {
            // Gone outside plumb: forget it, then plan to create it again.
            ctx.record_if_apply(inst, provider_str, None).await?;
        }
    }
    let config_ic = apply_ignore_changes(&plain_config, &prior, &r.lifecycle.ignore_changes);
    let proposed = proposed_new(&prior.deep_unmark(), &config_ic, block);
    let plan = provider
        .plan_resource_change(
            &r.ty,
            &prior.deep_unmark(),
            &proposed,
            &config_ic,
            &prior_private,
        )
        .await
        .map_err(at)?;
    let mut planned = plan.planned_state;
    let mut planned_private = plan.planned_private;
    let forced = ctx.opts.replace.iter().any(|x| x == inst);
    let mut action = if prior.is_null() {
        Action::Create
    } else if forced || !plan.requires_replace.is_empty() && !planned.same(&prior.deep_unmark()) {
        if r.lifecycle.create_before_destroy {
            Action::CreateThenDelete
        } else {
            Action::DeleteThenCreate
        }
    } else if planned.same(&prior.deep_unmark()) {
        Action::NoOp
    } else {
        Action::Update
    };
    if matches!(action, Action::DeleteThenCreate | Action::CreateThenDelete) {
        if r.lifecycle.prevent_destroy {
            return Err(vec![
                r.origin
                    .diag(format!(
                        "{inst} has lifecycle.prevent_destroy set, but the plan would replace it"
                    ))
                    .hint(
                        "remove prevent_destroy or change the configuration so it is not replaced",
                    ),
            ]);
        }
        // Plan the replacement as a create.
        let proposed_new_obj = proposed_new(&Value::Null, &plain_config, block);
        let p2 = provider
            .plan_resource_change(&r.ty, &Value::Null, &proposed_new_obj, &plain_config, &[])
            .await
            .map_err(at)?;
        planned = p2.planned_state;
        planned_private = p2.planned_private;
    }
    if imported && action == Action::Create {
        action = Action::NoOp;
    }
    if let Some(exp) = &ctx.opts.expected {
        let want = exp.get(&inst.to_string()).copied().unwrap_or(Action::NoOp);
        if want != action && !(want == Action::Update && action == Action::NoOp) {
            return Err(vec![
                r.origin
                    .diag(format!(
                        "{inst}: the saved plan said {want:?} but applying now needs {action:?}"
                    ))
                    .hint("run plan again and apply the new plan"),
            ]);
        }
    }
    let before_display = prior.clone();
    let after_display = marked(planned.clone());
    let change = Change {
        addr: inst.clone(),
        action,
        before: before_display,
        after: after_display.clone(),
        replace_paths: plan.requires_replace.clone(),
        imported,
        moved_from: ctx.moved_from.get(inst).cloned(),
    };
    if ctx.opts.mode != WalkMode::Apply {
        let show = action != Action::NoOp || imported || change.moved_from.is_some();
        return Ok((after_display, if show { Some(change) } else { None }));
    }
    // Apply.
    let deps = instance_deps(r, &inst.resource.module);
    let cbd = r.lifecycle.create_before_destroy;
    let final_state = match action {
        Action::NoOp => {
            if imported || ctx.moved_from.contains_key(inst) || refreshed_changed {
                let st = make_instance_state(
                    &inst.key,
                    &apply_sensitive_paths(prior.clone(), &config_marks),
                    block,
                    schema.version,
                    &prior_private,
                    &deps,
                    cbd,
                );
                ctx.record(inst, provider_str, Some(st))
                    .await
                    .map_err(|d| vec![d])?;
            }
            apply_sensitive_paths(prior.clone(), &config_marks)
        }
        Action::Create | Action::Update | Action::DeleteThenCreate | Action::CreateThenDelete => {
            if action == Action::DeleteThenCreate {
                destroy_value(ctx, inst, provider, &prior, &prior_private)
                    .await
                    .map_err(at)?;
                ctx.record(inst, provider_str, None)
                    .await
                    .map_err(|d| vec![d])?;
            }
            // A replacement is created from nothing.
            let before = match action {
                Action::Create | Action::Update => prior.clone(),
                _ => Value::Null,
            };
            let (new, private) = apply_value(
                ctx,
                inst,
                provider,
                &before,
                &planned,
                &plain_config,
                &planned_private,
            )
            .await
            .map_err(at)?;
            let new = marked(new);
            let st =
                make_instance_state(&inst.key, &new, block, schema.version, &private, &deps, cbd);
            ctx.record(inst, provider_str, Some(st))
                .await
                .map_err(|d| vec![d])?;
            if action == Action::CreateThenDelete {
                destroy_value(ctx, inst, provider, &prior, &prior_private)
                    .await
                    .map_err(at)?;
            }
            new
        }
        Action::Delete | Action::Read => prior.clone(),
    };
    let show = action != Action::NoOp || imported || change.moved_from.is_some();
    Ok((final_state, if show { Some(change) } else { None }))
}

/// Creates or updates an instance through the provider (`prior` is null for
/// a create), between its progress start and end.
async fn apply_value(
    ctx: &WalkCtx,
    inst: &InstanceAddr,
    provider: &Provider,
    prior: &Value,
    planned: &Value,
    config: &Value,
    private: &[u8],
) -> Result<(Value, Vec<u8>), plumb_tfplugin::Error> {
    let action = if prior.is_null() {
        Action::Create
    } else {
        Action::Update
    };
    let started = Instant::now();
    ctx.progress.apply_start(inst, action, prior);
    let out = provider
        .apply_resource_change(
            &inst.resource.ty,
            &prior.deep_unmark(),
            planned,
            config,
            private,
        )
        .await;
    ctx.progress.apply_end(
        inst,
        action,
        out.as_ref().ok().map(|(v, _)| v),
        started.elapsed(),
    );
    out
}

/// Destroys an instance through the provider, between its progress start
/// and end.
pub(super) async fn destroy_value(
    ctx: &WalkCtx,
    inst: &InstanceAddr,
    provider: &Provider,
    prior: &Value,
    private: &[u8],
) -> Result<(), plumb_tfplugin::Error> {
    let started = Instant::now();
    ctx.progress.apply_start(inst, Action::Delete, prior);
    let out = destroy_through(provider, &inst.resource.ty, prior, private).await;
    ctx.progress.apply_end(
        inst,
        Action::Delete,
        out.as_ref().ok().map(|_| &Value::Null),
        started.elapsed(),
    );
    out
}

async fn destroy_through(
    provider: &Provider,
    ty: &str,
    prior: &Value,
    private: &[u8],
) -> Result<(), plumb_tfplugin::Error> {
    let prior = prior.deep_unmark();
    let (planned, planned_private) = if provider.schema().plan_destroy {
        let p = provider
            .plan_resource_change(ty, &prior, &Value::Null, &Value::Null, private)
            .await?;
        (p.planned_state, p.planned_private)
    } else {
        (Value::Null, private.to_vec())
    };
    provider
        .apply_resource_change(ty, &prior, &planned, &Value::Null, &planned_private)
        .await?;
    Ok(())
}
