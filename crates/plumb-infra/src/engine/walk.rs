//! A walk from start to end: expand module instances, build the graph,
//! apply `moved` blocks, work out what `-target` covers, then hand every
//! node to the scheduler (or, for destroy, every resource in state) and
//! gather the changes and the root outputs.
//!
//! This module also runs the nodes that are not resources: variables,
//! locals, outputs and provider configurations, each evaluated once in its
//! module instance's scope.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use hcl_edit::expr::Expression;
use plumb_state::StateSnapshot;
use plumb_tfplugin::Value;
use tokio::sync::Semaphore;

use super::body::eval_body;
use super::context::WalkCtx;
use super::destroy::{destroy_all, destroy_orphans};
use super::graph::{Graph, Node, build_graph};
use super::moves::apply_moves;
use super::options::{WalkMode, WalkOptions};
use super::resource::run_resource;
use super::scheduler;
use super::scope::Values;
use super::stored::index_prior;
use crate::addr::{
    InstanceKey, ResourceAddr, module_call_name, module_path_within, parse_instance,
};
use crate::config::{ModuleConfig, Origin};
use crate::diag::{ConfigError, Diag};
use crate::environment::Environment;
use crate::eval::Evaluator;
use crate::modules::{ModuleInstances, module_at};
use crate::outcome::WalkResult;
use crate::progress::Progress;
use crate::providers::ProviderCatalog;
use crate::statewriter::StateWriter;

/// Runs a walk over a configuration and a prior state.
pub struct Walk;

/// The stack's inputs to a walk.
pub struct WalkInput {
    /// The root module.
    pub root: Arc<ModuleConfig>,
    /// Where providers come from.
    pub catalog: Arc<ProviderCatalog>,
    /// The caller's environment (`path.cwd`, `pathexpand()`).
    pub env: Arc<Environment>,
    /// Root variable values (already converted).
    pub vars: BTreeMap<String, Value>,
    /// The state before.
    pub prior: StateSnapshot,
    /// Where completed instances go (apply and destroy).
    pub writer: Option<StateWriter>,
    /// Where progress goes.
    pub progress: Arc<dyn Progress>,
}

impl Walk {
    /// Plans (and in apply mode applies) the configuration.
    pub async fn run(input: WalkInput, opts: WalkOptions) -> Result<WalkResult, ConfigError> {
        let instances = ModuleInstances::expand(&input.root, &input.vars, &input.env)?;
        let graph = build_graph(&input.root, Some(&instances))?;
        let mut prior = input.prior;
        let mut moved_from = HashMap::new();
        apply_moves(&input.root, &mut prior, &mut moved_from)?;
        let mut import_ids = HashMap::new();
        for imp in &input.root.imports {
            let addr =
                parse_instance(&imp.to).map_err(|m| ConfigError::from(imp.origin.diag(m)))?;
            import_ids.insert(addr, (imp.id.clone(), imp.origin.clone()));
        }
        let targeted = targeted_resources(&graph, &opts);
        let parallelism = opts.parallelism.max(1);
        let ctx = Arc::new(WalkCtx {
            root: input.root.clone(),
            catalog: input.catalog,
            env: input.env,
            providers: Mutex::new(HashMap::new()),
            provider_configs: Mutex::new(HashMap::new()),
            values: RwLock::new(Values::default()),
            prior_index: index_prior(&prior),
            prior: Mutex::new(prior),
            changes: Mutex::new(Vec::new()),
            limit: Arc::new(Semaphore::new(parallelism)),
            opts: opts.clone(),
            writer: input.writer,
            root_vars: input.vars,
            import_ids,
            moved_from,
            targeted,
            instances,
            progress: input.progress,
        });
        let mut result = WalkResult::default();
        if opts.mode == WalkMode::Destroy {
            result.errors = destroy_all(&ctx).await;
        } else {
            let mut deps = graph.deps;
            // Orphans are destroyed before anything else is planned.
            deps.insert(Node::Orphans, BTreeSet::new());
            for (n, d) in deps.iter_mut() {
                if matches!(n, Node::Resource(_)) {
                    d.insert(Node::Orphans);
                }
            }
            result.errors = scheduler::run(deps, |node| {
                let ctx = ctx.clone();
                async move { run_node(&ctx, &node).await }
            })
            .await;
        }
        ctx.shutdown().await;
        let mut changes =
            std::mem::take(&mut *ctx.changes.lock().unwrap_or_else(|e| e.into_inner()));
        changes.sort_by(|a, b| a.addr.cmp(&b.addr));
        result.changes = changes;
        root_outputs(&ctx, &mut result);
        Ok(result)
    }
}

/// What a walk with `-target` covers: the targeted resources, everything
/// in targeted module instances, and everything they depend on. `None`
/// without targets (everything).
fn targeted_resources(graph: &Graph, opts: &WalkOptions) -> Option<HashSet<ResourceAddr>> {
    if opts.targets.is_empty() && opts.module_targets.is_empty() {
        return None;
    }
    let mut set = HashSet::new();
    let mut stack: Vec<Node> = opts
        .targets
        .iter()
        .map(|t| Node::Resource(t.resource.clone()))
        .collect();
    stack.extend(
        graph
            .deps
            .keys()
            .filter(|n| {
                matches!(n, Node::Resource(r) if opts.module_targets.iter().any(|m| module_path_within(&r.module, m)))
            })
            .cloned(),
    );
    let mut seen = HashSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Node::Resource(r) = &n {
            set.insert(r.clone());
        }
        if let Some(ds) = graph.deps.get(&n) {
            stack.extend(ds.iter().cloned());
        }
    }
    Some(set)
}

/// The root module's outputs after the walk, and how they differ from the
/// prior state's.
fn root_outputs(ctx: &WalkCtx, result: &mut WalkResult) {
    let values = ctx.read_values();
    let prior = ctx.prior.lock().unwrap_or_else(|e| e.into_inner());
    for (name, o) in &ctx.root.outputs {
        if let Some(v) = values.outputs.get(&(vec![], name.clone())) {
            let sensitive = o.sensitive || v.contains_sensitive();
            result.outputs.insert(name.clone(), (v.clone(), sensitive));
            let before = prior
                .outputs
                .get(name)
                .map(|os| plumb_tfplugin::value::untyped_from_json(&os.value))
                .unwrap_or(Value::Null);
            if !before.same(v) {
                result
                    .output_changes
                    .push((name.clone(), before, v.clone(), sensitive));
            }
        }
    }
    if ctx.opts.mode != WalkMode::Destroy {
        for name in prior.outputs.keys() {
            if !ctx.root.outputs.contains_key(name) {
                result.output_changes.push((
                    name.clone(),
                    Value::string("(removed)"),
                    Value::Null,
                    false,
                ));
            }
        }
    }
}

async fn run_node(ctx: &Arc<WalkCtx>, node: &Node) -> Result<(), Vec<Diag>> {
    match node {
        Node::Var(m, name) => eval_var(ctx, m, name).map_err(|d| vec![d]),
        Node::Local(m, name) => {
            let cfg = module_at(&ctx.root, m).ok_or_else(|| vec![Diag::new("module vanished")])?;
            let (expr, origin) = &cfg.locals[name];
            let v = eval_in(ctx, m, cfg, expr, origin)?;
            ctx.write_values()
                .locals
                .insert((m.clone(), name.clone()), v);
            Ok(())
        }
        Node::Output(m, name) => {
            let cfg = module_at(&ctx.root, m).ok_or_else(|| vec![Diag::new("module vanished")])?;
            let o = &cfg.outputs[name];
            let v = eval_in(ctx, m, cfg, &o.value, &o.origin)?;
            if v.contains_sensitive() && !o.sensitive && m.is_empty() {
                return Err(vec![
                    o.origin
                        .diag(format!("output {name:?} refers to sensitive values"))
                        .hint("add sensitive = true to the output block"),
                ]);
            }
            let v = if o.sensitive { v.mark_sensitive() } else { v };
            ctx.write_values()
                .outputs
                .insert((m.clone(), name.clone()), v);
            Ok(())
        }
        Node::Provider(name, alias) => {
            let p = ctx
                .root
                .providers
                .iter()
                .find(|p| &p.name == name && &p.alias == alias)
                .ok_or_else(|| vec![Diag::new("provider vanished")])?;
            // Schema needed to evaluate the body: start the provider binary.
            let binary = ctx
                .catalog
                .start(&ctx.root, name)
                .await
                .map_err(|d| vec![d])?;
            let block = binary.schema().provider.block.clone();
            binary.shutdown().await;
            let v = {
                let values = ctx.read_values();
                let scope = ctx.scope(&values, &[], &ctx.root);
                let mut ev = Evaluator::new(&scope, &p.origin.file.text);
                eval_body(
                    &mut ev,
                    &p.body,
                    &block,
                    &p.origin,
                    &format!("provider {name:?}"),
                )?
            };
            ctx.provider_configs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((name.clone(), alias.clone()), v);
            Ok(())
        }
        Node::Resource(addr) => run_resource(ctx, addr).await,
        Node::Orphans => destroy_orphans(ctx).await,
    }
}

/// Evaluates `expr`, written in `origin`'s file, in module `m` (configured
/// as `cfg`) with the values the walk has so far.
fn eval_in(
    ctx: &WalkCtx,
    m: &[String],
    cfg: &ModuleConfig,
    expr: &Expression,
    origin: &Origin,
) -> Result<Value, Vec<Diag>> {
    let values = ctx.read_values();
    let scope = ctx.scope(&values, m, cfg);
    let mut ev = Evaluator::new(&scope, &origin.file.text);
    ev.eval(expr)
        .map_err(|e| vec![origin.diag_at(e.span, e.message)])
}

fn eval_var(ctx: &Arc<WalkCtx>, m: &[String], name: &str) -> Result<(), Diag> {
    let cfg = module_at(&ctx.root, m).ok_or_else(|| Diag::new("module vanished"))?;
    let var = &cfg.variables[name];
    let given: Option<Value> = if m.is_empty() {
        ctx.root_vars.get(name).cloned()
    } else {
        // A module's variables come from its call's arguments, evaluated in the parent.
        let (elem, parent) = m.split_last().ok_or_else(|| Diag::new("module vanished"))?;
        let pcfg = module_at(&ctx.root, parent).ok_or_else(|| Diag::new("module vanished"))?;
        let call = pcfg
            .modules
            .get(module_call_name(elem))
            .ok_or_else(|| Diag::new("module vanished"))?;
        match call.inputs.get(name) {
            Some(e) => {
                let values = ctx.read_values();
                let mut scope = ctx.scope(&values, parent, pcfg);
                // The call's arguments see this instance's count.index / each.
                if let Some(i) = ctx.instances.instance(parent, elem) {
                    scope.count_index = match &i.key {
                        Some(InstanceKey::Int(n)) if call.count.is_some() => Some(*n),
                        _ => None,
                    };
                    scope.each = i.each.clone();
                }
                let mut ev = Evaluator::new(&scope, &call.origin.file.text);
                Some(
                    ev.eval(e)
                        .map_err(|e| call.origin.diag_at(e.span, e.message))?,
                )
            }
            None => None,
        }
    };
    let v = crate::vars::finish_variable(cfg, name, var, given, ctx.env.home.as_deref())?;
    ctx.write_values()
        .vars
        .insert((m.to_vec(), name.to_string()), v);
    Ok(())
}
