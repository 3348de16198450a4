//! Plan and apply: the configuration becomes a graph, the graph is walked in
//! parallel, and each resource instance is planned (and applied) through its
//! provider.
//!
//! A walk visits one node per variable, local, output, provider
//! configuration and resource block; a resource node expands its instances
//! (count / for_each) and runs them concurrently under a shared limit
//! (`-parallelism`). A node that fails stops the nodes that depend on it and
//! nothing else. Every instance that completes during apply is sent to the
//! state writer at once, so a crash loses at most the operation in flight.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Body, Structure};
use plumb_state::{InstanceState, JournalRecord, ResourceKey, StateSnapshot};
use plumb_tfplugin::value::{PathStep, convert};
use plumb_tfplugin::{Block, Nesting, Provider, Value};
use tokio::sync::{OnceCell, Semaphore};

use crate::addr::{InstanceAddr, InstanceKey, ResourceAddr};
use crate::coerce::{iterate, to_number, value_to_string};
use crate::config::{Mode, ModuleConfig, Origin, Reference, ResourceBlock};
use crate::diag::{ConfigError, Diag};
use crate::environment::Environment;
use crate::eval::{Evaluator, Scope, Step};
use crate::expand::{Expansion, Place, expand_in, resolve_common};
use crate::modules::{ModuleInstances, module_at};
use crate::outcome::{Action, Change, WalkError, WalkResult};
use crate::progress::Progress;
use crate::providers::ProviderCatalog;
use crate::references::{body_references, references};
use crate::statewriter::StateWriter;

/// What kind of walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkMode {
    /// Plan only.
    Plan,
    /// Plan and apply each instance.
    Apply,
    /// Destroy everything in state.
    Destroy,
}

/// Options for a walk.
#[derive(Clone, Debug)]
pub struct WalkOptions {
    /// Plan, apply or destroy.
    pub mode: WalkMode,
    /// Refresh state from providers first.
    pub refresh: bool,
    /// Concurrent provider operations.
    pub parallelism: usize,
    /// Only these resources (and what they depend on).
    pub targets: Vec<InstanceAddr>,
    /// Only the resources in these module instances (and what they depend
    /// on): `-target=module.net` or `-target=module.net["eu"]`.
    pub module_targets: Vec<Vec<String>>,
    /// Force replacement of these instances.
    pub replace: Vec<InstanceAddr>,
    /// A saved plan's actions that apply must reproduce.
    pub expected: Option<BTreeMap<String, Action>>,
    /// Destroy mode that only plans (`plan -destroy`).
    pub plan_only: bool,
}

/// A node of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// An input variable.
    Var(Vec<String>, String),
    /// A local value.
    Local(Vec<String>, String),
    /// An output value.
    Output(Vec<String>, String),
    /// A resource block.
    Resource(ResourceAddr),
    /// A provider configuration (root module): local name and alias.
    Provider(String, Option<String>),
    /// Instances left in state without configuration (orphans), destroyed.
    Orphans,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = |m: &Vec<String>| m.iter().map(|x| format!("module.{x}.")).collect::<String>();
        match self {
            Node::Var(m, n) => write!(f, "{}var.{n}", prefix(m)),
            Node::Local(m, n) => write!(f, "{}local.{n}", prefix(m)),
            Node::Output(m, n) => write!(f, "{}output.{n}", prefix(m)),
            Node::Resource(r) => write!(f, "{r}"),
            Node::Provider(n, a) => match a {
                Some(a) => write!(f, "provider.{n}.{a}"),
                None => write!(f, "provider.{n}"),
            },
            Node::Orphans => write!(f, "(orphaned instances)"),
        }
    }
}

/// The dependency graph of a configuration.
pub struct Graph {
    /// Nodes with their dependencies.
    pub deps: BTreeMap<Node, BTreeSet<Node>>,
    /// Where each node was declared.
    pub origins: HashMap<Node, Origin>,
}

/// Builds the graph and checks it for cycles. With `instances`, the graph
/// holds one set of nodes per module instance; without, one per module
/// call (the configuration's shape, for `validate`).
pub fn build_graph(
    root: &ModuleConfig,
    instances: Option<&ModuleInstances>,
) -> Result<Graph, ConfigError> {
    let shape = ModuleInstances::unexpanded(root);
    // Configuration errors are found once per module, on its shape, so a
    // module with count = 0 is still checked and one with many instances
    // reports each mistake once.
    let g = build_graph_of(root, &shape)?;
    match instances {
        None => Ok(g),
        Some(i) => build_graph_of(root, i),
    }
}

fn build_graph_of(root: &ModuleConfig, instances: &ModuleInstances) -> Result<Graph, ConfigError> {
    let mut g = Graph {
        deps: BTreeMap::new(),
        origins: HashMap::new(),
    };
    let mut errs = Vec::new();
    add_module(root, root, &[], instances, &mut g, &mut errs);
    for p in &root.providers {
        let node = Node::Provider(p.name.clone(), p.alias.clone());
        let deps = body_references(&p.body)
            .into_iter()
            .filter_map(|r| ref_node(root, &[], &r))
            .collect();
        g.origins.insert(node.clone(), p.origin.clone());
        g.deps.insert(node, deps);
    }
    if !errs.is_empty() {
        return Err(ConfigError::new(errs));
    }
    if let Some(cycle) = find_cycle(&g.deps) {
        let names: Vec<String> = cycle.iter().map(Node::to_string).collect();
        let mut d = Diag::new(format!("dependency cycle: {}", names.join(" -> ")))
            .hint("break the cycle by removing one of these references (or depends_on entries)");
        if let Some(o) = g.origins.get(&cycle[0]) {
            d = d.at(o.file.clone(), o.span.clone());
        }
        return Err(d.into());
    }
    Ok(g)
}

fn ref_node(root: &ModuleConfig, module: &[String], r: &Reference) -> Option<Node> {
    let m = module.to_vec();
    Some(match r {
        Reference::Var(n) => Node::Var(m, n.clone()),
        Reference::Local(n) => Node::Local(m, n.clone()),
        Reference::Resource(mode, t, n) => Node::Resource(ResourceAddr {
            module: m,
            mode: *mode,
            ty: t.clone(),
            name: n.clone(),
        }),
        Reference::Module(_) => {
            let _ = root;
            return None;
        }
    })
}

fn add_module(
    root: &ModuleConfig,
    cfg: &ModuleConfig,
    path: &[String],
    instances: &ModuleInstances,
    g: &mut Graph,
    errs: &mut Vec<Diag>,
) {
    let p = path.to_vec();
    let resolve = |refs: Vec<Reference>, origin: &Origin, errs: &mut Vec<Diag>| -> BTreeSet<Node> {
        let mut out = BTreeSet::new();
        for r in refs {
            match &r {
                Reference::Var(n) if !cfg.variables.contains_key(n) => {
                    errs.push(
                        origin
                            .diag(format!("reference to undeclared input variable var.{n}"))
                            .hint(format!("declare it with variable \"{n}\" {{}}")),
                    );
                }
                Reference::Local(n) if !cfg.locals.contains_key(n) => {
                    errs.push(
                        origin.diag(format!("reference to undeclared local value local.{n}")),
                    );
                }
                Reference::Resource(mode, t, n)
                    if !cfg
                        .resources
                        .iter()
                        .any(|x| x.mode == *mode && &x.ty == t && &x.name == n) =>
                {
                    let prefix = if *mode == Mode::Data { "data." } else { "" };
                    errs.push(
                        origin.diag(format!("reference to undeclared resource {prefix}{t}.{n}")),
                    );
                }
                Reference::Module(m) => match cfg.modules.get(m) {
                    Some(call) => {
                        for i in instances.of(path, m).unwrap_or_default() {
                            let mut child = p.clone();
                            child.push(i.elem.clone());
                            for o in call.config.outputs.keys() {
                                out.insert(Node::Output(child.clone(), o.clone()));
                            }
                        }
                    }
                    None => {
                        errs.push(origin.diag(format!("reference to undeclared module module.{m}")))
                    }
                },
                _ => {
                    if let Some(n) = ref_node(root, path, &r) {
                        out.insert(n);
                    }
                }
            }
        }
        out
    };
    for (name, v) in &cfg.variables {
        let node = Node::Var(p.clone(), name.clone());
        g.origins.insert(node.clone(), v.origin.clone());
        g.deps.entry(node).or_default();
    }
    for (name, (expr, origin)) in &cfg.locals {
        let node = Node::Local(p.clone(), name.clone());
        let deps = resolve(references(expr), origin, errs);
        g.origins.insert(node.clone(), origin.clone());
        g.deps.insert(node, deps);
    }
    for (name, o) in &cfg.outputs {
        let node = Node::Output(p.clone(), name.clone());
        let mut refs = references(&o.value);
        refs.extend(o.depends_on.clone());
        let deps = resolve(refs, &o.origin, errs);
        g.origins.insert(node.clone(), o.origin.clone());
        g.deps.insert(node, deps);
    }
    for r in &cfg.resources {
        let addr = ResourceAddr {
            module: p.clone(),
            mode: r.mode,
            ty: r.ty.clone(),
            name: r.name.clone(),
        };
        let node = Node::Resource(addr);
        if g.deps.contains_key(&node) {
            errs.push(r.origin.diag(format!("duplicate resource {}", r.address())));
            continue;
        }
        let mut refs = body_references(&r.body);
        if let Some(c) = &r.count {
            refs.extend(references(c));
        }
        if let Some(f) = &r.for_each {
            refs.extend(references(f));
        }
        refs.extend(r.depends_on.clone());
        let mut deps = resolve(refs, &r.origin, errs);
        // Self references (inside provisioners or lifecycle) are not dependencies.
        deps.remove(&node);
        let (pname, palias) = match &r.provider {
            Some((n, a)) => (n.clone(), a.clone()),
            None => (r.provider_name(), None),
        };
        if root
            .providers
            .iter()
            .any(|x| x.name == pname && x.alias == palias)
        {
            deps.insert(Node::Provider(pname, palias));
        }
        g.origins.insert(node.clone(), r.origin.clone());
        g.deps.insert(node, deps);
    }
    for (name, call) in &cfg.modules {
        // The child's variables depend on what the call's arguments reference.
        let mut call_deps = BTreeSet::new();
        for e in call.inputs.values() {
            call_deps.extend(resolve(references(e), &call.origin, errs));
        }
        for e in call.count.iter().chain(&call.for_each) {
            call_deps.extend(resolve(references(e), &call.origin, errs));
        }
        call_deps.extend(resolve(call.depends_on.clone(), &call.origin, errs));
        for input in call.inputs.keys() {
            if !call.config.variables.contains_key(input) {
                errs.push(
                    call.origin
                        .diag(format!("module {name} has no variable named {input:?}")),
                );
            }
        }
        for i in instances.of(path, name).unwrap_or_default() {
            let mut child = p.clone();
            child.push(i.elem.clone());
            add_module(root, &call.config, &child, instances, g, errs);
            for v in call.config.variables.keys() {
                if let Some(d) = g.deps.get_mut(&Node::Var(child.clone(), v.clone())) {
                    d.extend(call_deps.iter().cloned());
                }
            }
        }
    }
}

fn find_cycle(deps: &BTreeMap<Node, BTreeSet<Node>>) -> Option<Vec<Node>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Temp,
        Done,
    }
    fn visit(
        n: &Node,
        deps: &BTreeMap<Node, BTreeSet<Node>>,
        marks: &mut HashMap<Node, Mark>,
        stack: &mut Vec<Node>,
    ) -> Option<Vec<Node>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Temp) => {
                let start = stack.iter().position(|x| x == n).unwrap_or(0);
                let mut cycle: Vec<Node> = stack[start..].to_vec();
                cycle.push(n.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.clone(), Mark::Temp);
        stack.push(n.clone());
        if let Some(ds) = deps.get(n) {
            for d in ds {
                if let Some(c) = visit(d, deps, marks, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for n in deps.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(n, deps, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

/// Values of a resource's instances.
#[derive(Clone, Debug)]
enum ResourceValue {
    Single(Value),
    Count(Vec<Value>),
    ForEach(BTreeMap<String, Value>),
    Unknown,
}

impl ResourceValue {
    fn to_value(&self) -> Value {
        match self {
            ResourceValue::Single(v) => v.clone(),
            ResourceValue::Count(v) => Value::List(v.clone()),
            ResourceValue::ForEach(m) => Value::Map(m.clone()),
            ResourceValue::Unknown => Value::Unknown,
        }
    }
}

/// Everything evaluated so far during a walk.
#[derive(Default)]
struct Values {
    vars: HashMap<(Vec<String>, String), Value>,
    locals: HashMap<(Vec<String>, String), Value>,
    outputs: HashMap<(Vec<String>, String), Value>,
    resources: HashMap<ResourceAddr, Arc<ResourceValue>>,
}

struct ModuleScope<'a> {
    values: &'a Values,
    instances: &'a ModuleInstances,
    module: &'a [String],
    cfg: &'a ModuleConfig,
    root_dir: &'a Path,
    cwd: &'a Path,
    home: Option<&'a Path>,
    count_index: Option<i64>,
    each: Option<(Value, Value)>,
}

impl Scope for ModuleScope<'_> {
    fn resolve(&self, root: &str, steps: &[Step]) -> Result<Option<(Value, usize)>, String> {
        let m = self.module.to_vec();
        let attr = |i: usize| match steps.get(i) {
            Some(Step::Attr(a)) => Some(a.clone()),
            _ => None,
        };
        let place = Place {
            module_dir: &self.cfg.dir,
            root_dir: self.root_dir,
            cwd: self.cwd,
            count_index: self.count_index,
            each: self.each.as_ref(),
        };
        if let Some(r) = resolve_common(root, steps, &place) {
            return r;
        }
        match root {
            "var" => {
                let n = attr(0).ok_or("var must be followed by a variable name")?;
                Ok(self
                    .values
                    .vars
                    .get(&(m, n.clone()))
                    .map(|v| (v.clone(), 1))
                    .or(Some((Value::Unknown, 1))))
                .and_then(|r| {
                    if self.cfg.variables.contains_key(&n) {
                        Ok(r)
                    } else {
                        Err(format!("there is no variable named {n:?}"))
                    }
                })
            }
            "local" => {
                let n = attr(0).ok_or("local must be followed by a name")?;
                if !self.cfg.locals.contains_key(&n) {
                    return Err(format!("there is no local value named {n:?}"));
                }
                Ok(Some((
                    self.values
                        .locals
                        .get(&(m, n))
                        .cloned()
                        .unwrap_or(Value::Unknown),
                    1,
                )))
            }
            "module" => {
                let n = attr(0).ok_or("module must be followed by a module name")?;
                let call = self
                    .cfg
                    .modules
                    .get(&n)
                    .ok_or_else(|| format!("there is no module named {n:?}"))?;
                let Some(instances) = self.instances.of(&m, &n) else {
                    return Ok(Some((Value::Unknown, 1)));
                };
                let object = |elem: &str| {
                    let mut child = m.clone();
                    child.push(elem.to_string());
                    let mut out = BTreeMap::new();
                    for o in call.config.outputs.keys() {
                        let v = self
                            .values
                            .outputs
                            .get(&(child.clone(), o.clone()))
                            .cloned()
                            .unwrap_or(Value::Unknown);
                        out.insert(o.clone(), v);
                    }
                    Value::Map(out)
                };
                let v = if call.count.is_some() {
                    Value::List(instances.iter().map(|i| object(&i.elem)).collect())
                } else if call.for_each.is_some() {
                    Value::Map(
                        instances
                            .iter()
                            .filter_map(|i| match &i.key {
                                Some(InstanceKey::Str(k)) => Some((k.clone(), object(&i.elem))),
                                _ => None,
                            })
                            .collect(),
                    )
                } else {
                    object(&n)
                };
                Ok(Some((v, 1)))
            }
            _ => {
                let (mode, ty, name_idx) = if root == "data" {
                    (
                        Mode::Data,
                        attr(0).ok_or("data must be followed by a type")?,
                        1,
                    )
                } else {
                    (Mode::Managed, root.to_string(), 0)
                };
                let Some(name) = attr(name_idx) else {
                    return Ok(None);
                };
                let addr = ResourceAddr {
                    module: m,
                    mode,
                    ty: ty.clone(),
                    name: name.clone(),
                };
                if !self
                    .cfg
                    .resources
                    .iter()
                    .any(|r| r.mode == mode && r.ty == ty && r.name == name)
                {
                    return Ok(None);
                }
                let used = name_idx + 1;
                let Some(rv) = self.values.resources.get(&addr) else {
                    return Ok(Some((Value::Unknown, used)));
                };
                // Index straight into large expansions instead of copying them.
                match (rv.as_ref(), steps.get(used)) {
                    (ResourceValue::Count(items), Some(Step::Index(k))) if !k.is_unknown() => {
                        let i = to_number(k)?
                            .to_i64()
                            .ok_or("index must be a whole number")?;
                        let item = usize::try_from(i)
                            .ok()
                            .and_then(|i| items.get(i))
                            .cloned()
                            .ok_or_else(|| {
                                format!(
                                    "index {i} is out of range for {addr} ({} instances)",
                                    items.len()
                                )
                            })?;
                        Ok(Some((item, used + 1)))
                    }
                    (ResourceValue::ForEach(items), Some(Step::Index(k))) if !k.is_unknown() => {
                        let key = value_to_string(k)?;
                        let item = items
                            .get(&key)
                            .cloned()
                            .ok_or_else(|| format!("{addr} has no instance with key {key:?}"))?;
                        Ok(Some((item, used + 1)))
                    }
                    (rv, _) => Ok(Some((rv.to_value(), used))),
                }
            }
        }
    }
    fn module_dir(&self) -> &Path {
        &self.cfg.dir
    }
    fn home(&self) -> Option<&Path> {
        self.home
    }
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

/// Marks attributes the schema calls sensitive.
pub fn mark_schema_sensitive(v: Value, block: &Block) -> Value {
    let Value::Map(mut m) = v else {
        return v;
    };
    for (k, a) in &block.attributes {
        if let Some(x) = m.remove(k) {
            m.insert(
                k.clone(),
                if a.sensitive && !x.is_null() {
                    x.mark_sensitive()
                } else {
                    x
                },
            );
        }
    }
    for (k, b) in &block.block_types {
        if let Some(x) = m.remove(k) {
            let x = match x {
                Value::List(items) => Value::List(
                    items
                        .into_iter()
                        .map(|i| mark_schema_sensitive(i, &b.block))
                        .collect(),
                ),
                Value::Set(items) => Value::Set(
                    items
                        .into_iter()
                        .map(|i| mark_schema_sensitive(i, &b.block))
                        .collect(),
                ),
                Value::Map(_) if b.nesting == Nesting::Map => match x {
                    Value::Map(mm) => Value::Map(
                        mm.into_iter()
                            .map(|(k, i)| (k, mark_schema_sensitive(i, &b.block)))
                            .collect(),
                    ),
                    other => other,
                },
                other => mark_schema_sensitive(other, &b.block),
            };
            m.insert(k.clone(), x);
        }
    }
    Value::Map(m)
}

/// Evaluates a resource or provider body against its schema.
fn eval_body(
    ev: &mut Evaluator<'_>,
    body: &Body,
    block: &Block,
    origin: &Origin,
    what: &str,
) -> Result<Value, Vec<Diag>> {
    let mut errs = Vec::new();
    let mut attrs: BTreeMap<String, Value> = BTreeMap::new();
    let mut blocks: BTreeMap<String, Vec<(Vec<String>, Value)>> = BTreeMap::new();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => {
                let name = a.key.value().to_string();
                let Some(schema) = block.attributes.get(&name) else {
                    let hint = if block.block_types.contains_key(&name) {
                        format!("{name} is a block: write {name} {{ ... }}")
                    } else {
                        let known: Vec<&String> = block
                            .attributes
                            .iter()
                            .filter(|(_, a)| a.optional || a.required)
                            .map(|(k, _)| k)
                            .collect();
                        format!(
                            "{what} accepts: {}",
                            known
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    errs.push(
                        origin
                            .diag_at(
                                a.span(),
                                format!("an argument named {name:?} is not expected here"),
                            )
                            .hint(hint),
                    );
                    continue;
                };
                if schema.computed && !schema.optional && !schema.required {
                    errs.push(origin.diag_at(
                        a.span(),
                        format!("{name:?} is set by the provider and cannot be configured"),
                    ));
                    continue;
                }
                match ev.eval(&a.value) {
                    Ok(v) => match convert(&v, &schema.ty) {
                        Ok(c) => {
                            attrs.insert(name, c);
                        }
                        Err(e) => errs.push(
                            origin
                                .diag_at(a.value.span(), format!("invalid value for {name:?}: {e}"))
                                .hint(format!("{name} expects a {}", schema.ty.friendly())),
                        ),
                    },
                    Err(e) => errs.push(origin.diag_at(e.span, e.message)),
                }
            }
            Structure::Block(b) => {
                let ident = b.ident.value().to_string();
                if ident == "dynamic" {
                    let Some(label) = b.labels.first().map(|l| match l {
                        hcl_edit::structure::BlockLabel::Ident(i) => i.value().to_string(),
                        hcl_edit::structure::BlockLabel::String(s) => s.value().to_string(),
                    }) else {
                        errs.push(origin.diag_at(
                            b.span(),
                            "a dynamic block needs the block type as its label",
                        ));
                        continue;
                    };
                    let Some(nb) = block.block_types.get(&label) else {
                        errs.push(origin.diag_at(
                            b.span(),
                            format!("blocks of type {label:?} are not expected here"),
                        ));
                        continue;
                    };
                    let iterator = b
                        .body
                        .get_attribute("iterator")
                        .and_then(|a| match &a.value {
                            Expression::Variable(v) => Some(v.value().to_string()),
                            _ => None,
                        })
                        .unwrap_or_else(|| label.clone());
                    let Some(fe) = b.body.get_attribute("for_each") else {
                        errs.push(origin.diag_at(b.span(), "a dynamic block needs for_each"));
                        continue;
                    };
                    let Some(content) = b
                        .body
                        .blocks()
                        .find(|x| x.ident.value().as_str() == "content")
                    else {
                        errs.push(
                            origin.diag_at(b.span(), "a dynamic block needs a content block"),
                        );
                        continue;
                    };
                    let coll = match ev.eval(&fe.value) {
                        Ok(v) => v,
                        Err(e) => {
                            errs.push(origin.diag_at(e.span, e.message));
                            continue;
                        }
                    };
                    if coll.is_unknown() {
                        blocks
                            .entry(label)
                            .or_default()
                            .push((vec![], Value::Unknown));
                        continue;
                    }
                    let items = match iterate(&coll) {
                        Ok(i) => i,
                        Err(m) => {
                            errs.push(origin.diag_at(fe.value.span(), m));
                            continue;
                        }
                    };
                    for (k, v) in items {
                        let it = Value::Map(BTreeMap::from([
                            ("key".to_string(), k.clone()),
                            ("value".to_string(), v),
                        ]));
                        ev.locals.push((iterator.clone(), it));
                        let r = eval_body(ev, &content.body, &nb.block, origin, &label);
                        ev.locals.pop();
                        match r {
                            Ok(val) => {
                                let labels = if nb.nesting == Nesting::Map {
                                    vec![value_to_string(&k).unwrap_or_default()]
                                } else {
                                    vec![]
                                };
                                blocks.entry(label.clone()).or_default().push((labels, val));
                            }
                            Err(e) => errs.extend(e),
                        }
                    }
                    continue;
                }
                let Some(nb) = block.block_types.get(&ident) else {
                    errs.push(origin.diag_at(
                        b.span(),
                        format!("blocks of type {ident:?} are not expected here"),
                    ));
                    continue;
                };
                let labels = b
                    .labels
                    .iter()
                    .map(|l| match l {
                        hcl_edit::structure::BlockLabel::Ident(i) => i.value().to_string(),
                        hcl_edit::structure::BlockLabel::String(s) => s.value().to_string(),
                    })
                    .collect();
                match eval_body(ev, &b.body, &nb.block, origin, &ident) {
                    Ok(v) => blocks.entry(ident).or_default().push((labels, v)),
                    Err(e) => errs.extend(e),
                }
            }
        }
    }
    for (k, a) in &block.attributes {
        if a.required && !attrs.contains_key(k) {
            errs.push(
                origin
                    .diag(format!(
                        "the argument {k:?} is required, but no definition was found"
                    ))
                    .hint(format!("add {k} = ... to {what}")),
            );
        }
    }
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (k, a) in &block.attributes {
        let v = attrs.remove(k).unwrap_or(Value::Null);
        out.insert(
            k.clone(),
            if a.sensitive && !v.is_null() {
                v.mark_sensitive()
            } else {
                v
            },
        );
    }
    for (k, nb) in &block.block_types {
        let items = blocks.remove(k).unwrap_or_default();
        if items.iter().any(|(_, v)| v.is_unknown()) {
            out.insert(k.clone(), Value::Unknown);
            continue;
        }
        let n = items.len() as i64;
        if (nb.min_items > 0 && n < nb.min_items) || (nb.max_items > 0 && n > nb.max_items) {
            errs.push(origin.diag(format!(
                "{what}: {n} {k} block(s) given; between {} and {} are allowed",
                nb.min_items,
                if nb.max_items > 0 {
                    nb.max_items.to_string()
                } else {
                    "any".into()
                }
            )));
        }
        let v = match nb.nesting {
            Nesting::Single => items
                .into_iter()
                .next()
                .map(|(_, v)| v)
                .unwrap_or(Value::Null),
            Nesting::Group => items.into_iter().next().map(|(_, v)| v).unwrap_or_else(|| {
                Value::Map(
                    nb.block
                        .attributes
                        .keys()
                        .map(|k| (k.clone(), Value::Null))
                        .collect(),
                )
            }),
            Nesting::List => Value::List(items.into_iter().map(|(_, v)| v).collect()),
            Nesting::Set => Value::Set(items.into_iter().map(|(_, v)| v).collect()),
            Nesting::Map => Value::Map(
                items
                    .into_iter()
                    .map(|(l, v)| (l.first().cloned().unwrap_or_default(), v))
                    .collect(),
            ),
        };
        out.insert(k.clone(), v);
    }
    if errs.is_empty() {
        Ok(Value::Map(out))
    } else {
        Err(errs)
    }
}

/// Terraform's "proposed new state": configuration, with computed attributes
/// the configuration leaves null taken from the prior state.
fn proposed_new(prior: &Value, config: &Value, block: &Block) -> Value {
    if prior.is_null() {
        return fill_computed_unknown(config, block, true);
    }
    let (Value::Map(p), Value::Map(c)) = (prior.unmarked(), config.unmarked()) else {
        return config.clone();
    };
    let mut out = BTreeMap::new();
    for (k, a) in &block.attributes {
        let cv = c.get(k).cloned().unwrap_or(Value::Null);
        let pv = p.get(k).cloned().unwrap_or(Value::Null);
        out.insert(k.clone(), if a.computed && cv.is_null() { pv } else { cv });
    }
    for (k, nb) in &block.block_types {
        let cv = c.get(k).cloned().unwrap_or(Value::Null);
        let pv = p.get(k).cloned().unwrap_or(Value::Null);
        let v = match (nb.nesting, cv.unmarked(), pv.unmarked()) {
            (Nesting::Single | Nesting::Group, Value::Map(_), Value::Map(_)) => {
                proposed_new(&pv, &cv, &nb.block)
            }
            (Nesting::List, Value::List(cs), Value::List(ps)) => Value::List(
                cs.iter()
                    .enumerate()
                    .map(|(i, ci)| match ps.get(i) {
                        Some(pi) => proposed_new(pi, ci, &nb.block),
                        None => fill_computed_unknown(ci, &nb.block, false),
                    })
                    .collect(),
            ),
            _ => cv,
        };
        out.insert(k.clone(), v);
    }
    Value::Map(out)
}

fn fill_computed_unknown(config: &Value, block: &Block, _top: bool) -> Value {
    let Value::Map(c) = config.unmarked() else {
        return config.clone();
    };
    let mut out = c.clone();
    for (k, a) in &block.attributes {
        if a.computed && out.get(k).is_none_or(Value::is_null) {
            out.insert(k.clone(), Value::Unknown);
        }
    }
    Value::Map(out)
}

fn apply_ignore_changes(config: &Value, prior: &Value, ignore: &[String]) -> Value {
    if ignore.is_empty() || prior.is_null() {
        return config.clone();
    }
    let (Value::Map(c), Value::Map(p)) = (config, prior.unmarked()) else {
        return config.clone();
    };
    let mut out = c.clone();
    for (k, v) in out.iter_mut() {
        if ignore.iter().any(|i| {
            i == "*" || i == k || i.starts_with(&format!("{k}.")) || i.starts_with(&format!("{k}["))
        }) && let Some(pv) = p.get(k)
        {
            *v = pv.clone();
        }
    }
    Value::Map(out)
}

/// A provider configuration: local name and alias.
type ProviderKey = (String, Option<String>);

/// Everything a walk shares.
struct WalkCtx {
    root: Arc<ModuleConfig>,
    catalog: Arc<ProviderCatalog>,
    env: Arc<Environment>,
    providers: Mutex<HashMap<ProviderKey, Arc<OnceCell<Arc<Provider>>>>>,
    provider_configs: Mutex<HashMap<(String, Option<String>), Value>>,
    values: RwLock<Values>,
    prior: Mutex<StateSnapshot>,
    prior_index: HashMap<InstanceAddr, (InstanceState, String)>,
    changes: Mutex<Vec<Change>>,
    limit: Arc<Semaphore>,
    opts: WalkOptions,
    writer: Option<StateWriter>,
    root_vars: BTreeMap<String, Value>,
    import_ids: HashMap<InstanceAddr, (Expression, Origin)>,
    moved_from: HashMap<InstanceAddr, InstanceAddr>,
    targeted: Option<HashSet<ResourceAddr>>,
    /// Every module call's instances.
    instances: ModuleInstances,
    progress: Arc<dyn Progress>,
}

impl WalkCtx {
    /// Whether a walk with `-target` covers `r`: a target, something a
    /// target depends on, or anything in a targeted module instance (which
    /// takes in instances no longer configured there).
    fn is_targeted(&self, r: &ResourceAddr) -> bool {
        self.targeted.as_ref().is_none_or(|t| {
            t.contains(r)
                || self
                    .opts
                    .module_targets
                    .iter()
                    .any(|m| crate::addr::module_path_within(&r.module, m))
        })
    }

    fn scope<'a>(
        &'a self,
        values: &'a Values,
        module: &'a [String],
        cfg: &'a ModuleConfig,
    ) -> ModuleScope<'a> {
        ModuleScope {
            values,
            instances: &self.instances,
            module,
            cfg,
            root_dir: &self.root.dir,
            cwd: &self.env.cwd,
            home: self.env.home.as_deref(),
            count_index: None,
            each: None,
        }
    }

    async fn provider(&self, name: &str, alias: Option<&str>) -> Result<Arc<Provider>, Diag> {
        let key = (name.to_string(), alias.map(str::to_string));
        let cell = self
            .providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let p = cell
            .get_or_try_init(|| async {
                let p = self.catalog.start(&self.root, name).await?;
                let config = self
                    .provider_configs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| {
                        Value::Map(
                            p.schema()
                                .provider
                                .block
                                .attributes
                                .keys()
                                .map(|k| (k.clone(), Value::Null))
                                .collect(),
                        )
                    });
                let ty = p.schema().provider.block.implied_type();
                let config = convert(&config.deep_unmark(), &ty)
                    .map_err(|e| Diag::new(format!("provider {name}: {e}")))?;
                p.validate_provider_config(&config)
                    .await
                    .map_err(|e| Diag::new(format!("provider {name}: {e}")))?;
                p.configure(&config)
                    .await
                    .map_err(|e| Diag::new(format!("configuring provider {name}: {e}")))?;
                Ok::<_, Diag>(Arc::new(p))
            })
            .await?;
        Ok(p.clone())
    }

    async fn shutdown(&self) {
        let cells: Vec<_> = self
            .providers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for c in cells {
            if let Some(p) = c.get() {
                p.shutdown().await;
            }
        }
    }
}

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

fn provider_string(catalog: &ProviderCatalog, root: &ModuleConfig, r: &ResourceBlock) -> String {
    let source = catalog.source_for(root, &r.provider_name());
    match &r.provider {
        Some((_, Some(alias))) => format!("provider[\"{source}\"].{alias}"),
        _ => format!("provider[\"{source}\"]"),
    }
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
            let addr = crate::addr::parse_instance(&imp.to)
                .map_err(|m| ConfigError::from(imp.origin.diag(m)))?;
            import_ids.insert(addr, (imp.id.clone(), imp.origin.clone()));
        }
        let targeted = if opts.targets.is_empty() && opts.module_targets.is_empty() {
            None
        } else {
            let mut set = HashSet::new();
            let mut stack: Vec<Node> = opts
                .targets
                .iter()
                .map(|t| Node::Resource(t.resource.clone()))
                .collect();
            stack.extend(graph.deps.keys().filter(|n| {
                matches!(n, Node::Resource(r) if opts.module_targets.iter().any(|m| crate::addr::module_path_within(&r.module, m)))
            }).cloned());
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
        };
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
            let mut deps = graph.deps.clone();
            // Orphans are destroyed before anything else is planned.
            deps.insert(Node::Orphans, BTreeSet::new());
            for (n, d) in deps.iter_mut() {
                if matches!(n, Node::Resource(_)) {
                    d.insert(Node::Orphans);
                }
            }
            result.errors = walk_graph(&ctx, deps).await;
        }
        ctx.shutdown().await;
        let mut changes =
            std::mem::take(&mut *ctx.changes.lock().unwrap_or_else(|e| e.into_inner()));
        changes.sort_by(|a, b| a.addr.cmp(&b.addr));
        result.changes = changes;
        let values = ctx.values.read().unwrap_or_else(|e| e.into_inner());
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
        if opts.mode != WalkMode::Destroy {
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
        Ok(result)
    }
}

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

fn apply_moves(
    root: &ModuleConfig,
    prior: &mut StateSnapshot,
    moved_from: &mut HashMap<InstanceAddr, InstanceAddr>,
) -> Result<(), ConfigError> {
    for m in &root.moved {
        if let (Ok((fpath, "")), Ok((tpath, ""))) = (
            crate::addr::split_module_path(m.from.trim()),
            crate::addr::split_module_path(m.to.trim()),
        ) && !fpath.is_empty()
            && !tpath.is_empty()
        {
            move_module(prior, &fpath, &tpath, moved_from);
            continue;
        }
        let from = crate::addr::parse_instance(&m.from)
            .map_err(|e| ConfigError::from(m.origin.diag(e)))?;
        let to =
            crate::addr::parse_instance(&m.to).map_err(|e| ConfigError::from(m.origin.diag(e)))?;
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

/// Walks a dependency graph: each node runs when its dependencies succeeded;
/// a failure skips its dependents only.
async fn walk_graph(ctx: &Arc<WalkCtx>, deps: BTreeMap<Node, BTreeSet<Node>>) -> Vec<WalkError> {
    let mut dependents: HashMap<Node, Vec<Node>> = HashMap::new();
    let mut waiting: HashMap<Node, usize> = HashMap::new();
    for (n, ds) in &deps {
        waiting.insert(n.clone(), ds.len());
        for d in ds {
            dependents.entry(d.clone()).or_default().push(n.clone());
        }
    }
    let mut ready: Vec<Node> = waiting
        .iter()
        .filter(|(_, c)| **c == 0)
        .map(|(n, _)| n.clone())
        .collect();
    ready.sort();
    let mut running = tokio::task::JoinSet::new();
    let mut errors = Vec::new();
    let mut failed: HashSet<Node> = HashSet::new();
    loop {
        for n in ready.drain(..) {
            let ctx = ctx.clone();
            running.spawn(async move {
                let r = run_node(&ctx, &n).await;
                (n, r)
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let (node, r) = match done {
            Ok(x) => x,
            Err(e) => {
                errors.push(WalkError {
                    what: "walk".into(),
                    diag: Diag::new(format!("internal task failed: {e}")),
                });
                continue;
            }
        };
        let ok = match r {
            Ok(()) => true,
            Err(diags) => {
                for d in diags {
                    errors.push(WalkError {
                        what: node.to_string(),
                        diag: d,
                    });
                }
                false
            }
        };
        // Release or skip dependents.
        let mut stack = vec![(node, ok)];
        while let Some((n, ok)) = stack.pop() {
            if !ok {
                failed.insert(n.clone());
            }
            for d in dependents.get(&n).cloned().unwrap_or_default() {
                if failed.contains(&d) {
                    continue;
                }
                if !ok {
                    failed.insert(d.clone());
                    stack.push((d, false));
                    continue;
                }
                if let Some(c) = waiting.get_mut(&d) {
                    *c -= 1;
                    if *c == 0 {
                        ready.push(d);
                    }
                }
            }
        }
    }
    errors
}

async fn run_node(ctx: &Arc<WalkCtx>, node: &Node) -> Result<(), Vec<Diag>> {
    match node {
        Node::Var(m, name) => eval_var(ctx, m, name).map_err(|d| vec![d]),
        Node::Local(m, name) => {
            let cfg = module_at(&ctx.root, m).ok_or_else(|| vec![Diag::new("module vanished")])?;
            let (expr, origin) = &cfg.locals[name];
            let v = {
                let values = ctx.values.read().unwrap_or_else(|e| e.into_inner());
                let scope = ctx.scope(&values, m, cfg);
                let mut ev = Evaluator::new(&scope, &origin.file.text);
                ev.eval(expr)
                    .map_err(|e| vec![origin.diag_at(e.span, e.message)])?
            };
            ctx.values
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .locals
                .insert((m.clone(), name.clone()), v);
            Ok(())
        }
        Node::Output(m, name) => {
            let cfg = module_at(&ctx.root, m).ok_or_else(|| vec![Diag::new("module vanished")])?;
            let o = &cfg.outputs[name];
            let v = {
                let values = ctx.values.read().unwrap_or_else(|e| e.into_inner());
                let scope = ctx.scope(&values, m, cfg);
                let mut ev = Evaluator::new(&scope, &o.origin.file.text);
                ev.eval(&o.value)
                    .map_err(|e| vec![o.origin.diag_at(e.span, e.message)])?
            };
            if v.contains_sensitive() && !o.sensitive && m.is_empty() {
                return Err(vec![
                    o.origin
                        .diag(format!("output {name:?} refers to sensitive values"))
                        .hint("add sensitive = true to the output block"),
                ]);
            }
            let v = if o.sensitive { v.mark_sensitive() } else { v };
            ctx.values
                .write()
                .unwrap_or_else(|e| e.into_inner())
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
                let values = ctx.values.read().unwrap_or_else(|e| e.into_inner());
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
            .get(crate::addr::module_call_name(elem))
            .ok_or_else(|| Diag::new("module vanished"))?;
        match call.inputs.get(name) {
            Some(e) => {
                let values = ctx.values.read().unwrap_or_else(|e| e.into_inner());
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
    ctx.values
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .vars
        .insert((m.to_vec(), name.to_string()), v);
    Ok(())
}

/// Expands a resource's count / for_each into instance keys with their each values.
fn expand(
    ctx: &WalkCtx,
    r: &ResourceBlock,
    m: &[String],
    cfg: &ModuleConfig,
) -> Result<Option<Vec<Expansion>>, Diag> {
    let values = ctx.values.read().unwrap_or_else(|e| e.into_inner());
    let scope = ctx.scope(&values, m, cfg);
    expand_in(&scope, r.count.as_ref(), r.for_each.as_ref(), &r.origin)
}

struct InstanceOutcome {
    key: Option<InstanceKey>,
    value: Value,
    change: Option<Change>,
}

async fn run_resource(ctx: &Arc<WalkCtx>, addr: &ResourceAddr) -> Result<(), Vec<Diag>> {
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
        ctx.values
            .write()
            .unwrap_or_else(|e| e.into_inner())
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
        ctx.values
            .write()
            .unwrap_or_else(|e| e.into_inner())
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
    let provider_str = provider_string(&ctx.catalog, &ctx.root, &r);
    let r = Arc::new(r);
    let schema = Arc::new(schema);
    let mut set = tokio::task::JoinSet::new();
    let total = instances.len();
    ctx.progress.add_total(total as u64);
    for (n, (key, each)) in instances.into_iter().enumerate() {
        // The provider validates the block once, with its first instance.
        let first = n == 0;
        let ctx = ctx.clone();
        let r = r.clone();
        let schema = schema.clone();
        let provider = provider.clone();
        let addr = addr.clone();
        let provider_str = provider_str.clone();
        // Take the permit before spawning: at most -parallelism instance
        // tasks exist at once, so memory stays flat however many instances.
        let permit = match ctx.limit.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return Err(vec![Diag::new("walk cancelled")]),
        };
        set.spawn(async move {
            let _permit = permit;
            let inst = InstanceAddr {
                resource: addr,
                key: key.clone(),
            };
            let out = run_instance(
                &ctx,
                &r,
                &schema,
                &provider,
                &inst,
                each,
                &provider_str,
                first,
            )
            .await;
            ctx.progress.instance_done(&inst);
            out.map(|(value, change)| InstanceOutcome { key, value, change })
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
                &provider,
                &schema.block,
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
    ctx.values
        .write()
        .unwrap_or_else(|e| e.into_inner())
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

fn prior_instance(ctx: &WalkCtx, inst: &InstanceAddr) -> Option<(InstanceState, String)> {
    ctx.prior_index.get(inst).cloned()
}

fn index_prior(snapshot: &StateSnapshot) -> HashMap<InstanceAddr, (InstanceState, String)> {
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

async fn decode_prior(
    provider: &Provider,
    ty_name: &str,
    block: &Block,
    state: &InstanceState,
    version: i64,
) -> Result<Value, String> {
    let ty = block.implied_type();
    let v = if state.schema_version == version {
        plumb_tfplugin::value::from_json(&state.attributes, &ty).map_err(|e| e.to_string())?
    } else {
        let raw = serde_json::to_vec(&state.attributes).map_err(|e| e.to_string())?;
        provider
            .upgrade_resource_state(ty_name, state.schema_version, &raw)
            .await
            .map_err(|e| e.to_string())?
    };
    Ok(plumb_tfplugin::value::apply_sensitive_paths(
        v,
        &paths_from_state(&state.sensitive_attributes),
    ))
}

fn private_bytes(state: &InstanceState) -> Vec<u8> {
    use base64::Engine;
    state
        .private
        .as_ref()
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .unwrap_or_default()
}

fn make_instance_state(
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

fn resource_key(addr: &ResourceAddr, provider: &str) -> ResourceKey {
    ResourceKey {
        module: addr.module_string(),
        mode: addr.mode.as_str().to_string(),
        ty: addr.ty.clone(),
        name: addr.name.clone(),
        provider: provider.to_string(),
    }
}

async fn record(
    ctx: &WalkCtx,
    inst: &InstanceAddr,
    provider: &str,
    state: Option<InstanceState>,
) -> Result<(), Diag> {
    let rec = JournalRecord {
        resource: resource_key(&inst.resource, provider),
        index_key: inst.key.as_ref().map(InstanceKey::to_json),
        instance: state,
    };
    if let Some(w) = &ctx.writer {
        w.record(rec)
            .await
            .map_err(|e| Diag::new(format!("{inst}: could not persist state: {e}")))?;
    }
    Ok(())
}

fn instance_deps(r: &ResourceBlock, m: &[String]) -> Vec<String> {
    let mut refs = body_references(&r.body);
    if let Some(c) = &r.count {
        refs.extend(references(c));
    }
    if let Some(f) = &r.for_each {
        refs.extend(references(f));
    }
    refs.extend(r.depends_on.clone());
    let mut out: Vec<String> = refs
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

#[allow(clippy::too_many_arguments)]
async fn run_instance(
    ctx: &Arc<WalkCtx>,
    r: &ResourceBlock,
    schema: &plumb_tfplugin::Schema,
    provider: &Arc<Provider>,
    inst: &InstanceAddr,
    each: Option<(Value, Value)>,
    provider_str: &str,
    validate: bool,
) -> Result<(Value, Option<Change>), Vec<Diag>> {
    let cfg = module_at(&ctx.root, &inst.resource.module)
        .ok_or_else(|| vec![Diag::new("module vanished")])?;
    let block = &schema.block;
    let config = {
        let values = ctx.values.read().unwrap_or_else(|e| e.into_inner());
        let mut scope = ctx.scope(&values, &inst.resource.module, cfg);
        scope.count_index = match &inst.key {
            Some(InstanceKey::Int(i)) if r.count.is_some() => Some(*i),
            _ => None,
        };
        scope.each = each;
        let mut ev = Evaluator::new(&scope, &r.origin.file.text);
        eval_body(&mut ev, &r.body, block, &r.origin, &r.address())?
    };
    let at = |e: plumb_tfplugin::Error| vec![r.origin.diag(format!("{inst}: {e}"))];
    if r.mode == Mode::Data {
        let plain = config.deep_unmark();
        if !plain.is_wholly_known() && ctx.opts.mode == WalkMode::Plan {
            let after = fill_computed_unknown(&config, block, true);
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
        let v = mark_schema_sensitive(v, block);
        if ctx.opts.mode == WalkMode::Apply {
            let st = make_instance_state(
                &inst.key,
                &v.deep_unmark(),
                block,
                schema.version,
                &[],
                &[],
                false,
            );
            record(ctx, inst, provider_str, Some(st))
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
    let (mut prior, mut prior_private) = match prior_instance(ctx, inst) {
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
                let values = ctx.values.read().unwrap_or_else(|e| e.into_inner());
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
        let v = mark_schema_sensitive(v, block);
        ctx.progress.refresh_complete(inst, &v);
        refreshed_changed = !v.same(&prior);
        if refreshed_changed {
            ctx.progress.drift(inst, v.is_null());
        }
        prior = v;
        prior_private = p;
        if prior.is_null() {
            // Gone outside plumb: forget it, then plan to create it again.
            record_if_apply(ctx, inst, provider_str, None).await?;
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
    let after_display = mark_schema_sensitive(planned.clone(), block);
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
                    &prior.deep_unmark(),
                    block,
                    schema.version,
                    &prior_private,
                    &deps,
                    cbd,
                );
                record(ctx, inst, provider_str, Some(st))
                    .await
                    .map_err(|d| vec![d])?;
            }
            prior.clone()
        }
        Action::Create | Action::Update | Action::DeleteThenCreate | Action::CreateThenDelete => {
            if action == Action::DeleteThenCreate {
                destroy_value(ctx, inst, provider, &prior, &prior_private)
                    .await
                    .map_err(at)?;
                record(ctx, inst, provider_str, None)
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
            let st =
                make_instance_state(&inst.key, &new, block, schema.version, &private, &deps, cbd);
            record(ctx, inst, provider_str, Some(st))
                .await
                .map_err(|d| vec![d])?;
            if action == Action::CreateThenDelete {
                destroy_value(ctx, inst, provider, &prior, &prior_private)
                    .await
                    .map_err(at)?;
            }
            mark_schema_sensitive(new, block)
        }
        Action::Delete | Action::Read => prior.clone(),
    };
    let show = action != Action::NoOp || imported || change.moved_from.is_some();
    Ok((final_state, if show { Some(change) } else { None }))
}

async fn record_if_apply(
    ctx: &WalkCtx,
    inst: &InstanceAddr,
    provider: &str,
    st: Option<InstanceState>,
) -> Result<(), Vec<Diag>> {
    if ctx.opts.mode == WalkMode::Apply {
        record(ctx, inst, provider, st).await.map_err(|d| vec![d])?;
    }
    Ok(())
}

/// Creates or updates an instance through the provider (`prior` is null for
/// a create), between its progress start and end.
#[allow(clippy::too_many_arguments)]
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
async fn destroy_value(
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

async fn delete_instance(
    ctx: &Arc<WalkCtx>,
    inst: &InstanceAddr,
    provider: &Arc<Provider>,
    block: &Block,
    prevent: bool,
) -> Result<(), Diag> {
    let Some((st, provider_str)) = prior_instance(ctx, inst) else {
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
    record(ctx, inst, &provider_str, None).await?;
    ctx.progress.instance_done(inst);
    Ok(())
}

fn state_instances(snapshot: &StateSnapshot) -> Vec<(InstanceAddr, Vec<String>)> {
    let mut out = Vec::new();
    for r in &snapshot.resources {
        let addr = ResourceAddr::from_state(r.module.as_deref(), &r.mode, &r.ty, &r.name);
        for i in &r.instances {
            out.push((
                InstanceAddr {
                    resource: addr.clone(),
                    key: i.index_key.as_ref().and_then(InstanceKey::from_json),
                },
                i.dependencies.clone(),
            ));
        }
    }
    out
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
    let mut dependents: HashMap<Node, Vec<Node>> = HashMap::new();
    let mut waiting: HashMap<Node, usize> = HashMap::new();
    for (n, ds) in &graph {
        waiting.insert(n.clone(), ds.len());
        for d in ds {
            dependents.entry(d.clone()).or_default().push(n.clone());
        }
    }
    let mut ready: Vec<Node> = waiting
        .iter()
        .filter(|(_, c)| **c == 0)
        .map(|(n, _)| n.clone())
        .collect();
    let mut running = tokio::task::JoinSet::new();
    let mut errors = Vec::new();
    loop {
        for n in ready.drain(..) {
            let ctx = ctx.clone();
            let by_res = by_res.clone();
            running.spawn(async move {
                let Node::Resource(r) = &n else {
                    return (n, Ok(()));
                };
                let insts = by_res.get(r).cloned().unwrap_or_default();
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
                (n, if errs.is_empty() { Ok(()) } else { Err(errs) })
            });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        let Ok((node, r)) = done else {
            continue;
        };
        match r {
            Ok(()) => {
                for d in dependents.get(&node).cloned().unwrap_or_default() {
                    if let Some(c) = waiting.get_mut(&d) {
                        *c -= 1;
                        if *c == 0 {
                            ready.push(d);
                        }
                    }
                }
            }
            Err(ds) => {
                for d in ds {
                    errors.push(WalkError {
                        what: node.to_string(),
                        diag: d,
                    });
                }
            }
        }
    }
    errors
}

async fn destroy_orphans(ctx: &Arc<WalkCtx>) -> Result<(), Vec<Diag>> {
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
            let provider = snapshot
                .resource(
                    i.resource.module_string().as_deref(),
                    "data",
                    &i.resource.ty,
                    &i.resource.name,
                )
                .map(|r| r.provider.clone())
                .unwrap_or_default();
            record(ctx, &i, &provider, None)
                .await
                .map_err(|d| vec![d])?;
        }
    }
    let errs = destroy_in_order(ctx, managed).await;
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.into_iter().map(|e| e.diag).collect())
    }
}

async fn destroy_all(ctx: &Arc<WalkCtx>) -> Vec<WalkError> {
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
            let provider = snapshot
                .resource(
                    i.resource.module_string().as_deref(),
                    "data",
                    &i.resource.ty,
                    &i.resource.name,
                )
                .map(|r| r.provider.clone())
                .unwrap_or_default();
            if let Err(d) = record(ctx, &i, &provider, None).await {
                errors.push(WalkError {
                    what: i.to_string(),
                    diag: d,
                });
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use plumb_tfplugin::Type;
    use plumb_tfplugin::schema::{Attribute, NestedBlock};

    struct NoVars;
    impl Scope for NoVars {
        fn resolve(&self, _: &str, _: &[Step]) -> Result<Option<(Value, usize)>, String> {
            Ok(None)
        }
        fn module_dir(&self) -> &Path {
            Path::new(".")
        }
        fn home(&self) -> Option<&Path> {
            None
        }
    }

    fn attr(ty: Type, required: bool) -> Attribute {
        Attribute {
            ty,
            nested: None,
            required,
            optional: !required,
            computed: false,
            sensitive: false,
        }
    }

    #[test]
    fn dynamic_blocks_expand_against_the_schema() {
        let inner = Block {
            attributes: BTreeMap::from([("port".to_string(), attr(Type::Number, true))]),
            block_types: BTreeMap::new(),
        };
        let block = Block {
            attributes: BTreeMap::from([("name".to_string(), attr(Type::String, true))]),
            block_types: BTreeMap::from([(
                "rule".to_string(),
                NestedBlock {
                    block: inner,
                    nesting: Nesting::List,
                    min_items: 0,
                    max_items: 0,
                },
            )]),
        };
        let src = "name = \"x\"\nrule {\n  port = 1\n}\ndynamic \"rule\" {\n  for_each = [80, 443]\n  content {\n    port = rule.value\n  }\n}\n";
        let body = hcl_edit::parser::parse_body(src).unwrap();
        let file = Arc::new(SourceFile {
            path: "main.tf".into(),
            text: src.to_string(),
        });
        let origin = Origin { file, span: None };
        let mut ev = Evaluator::new(&NoVars, src);
        let v = eval_body(&mut ev, &body, &block, &origin, "test").unwrap();
        let ports: Vec<String> = match v.get_attr("rule").unwrap() {
            Value::List(items) => items
                .iter()
                .map(|i| i.get_attr("port").unwrap().to_string())
                .collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(ports, vec!["1", "80", "443"]);
        // An argument the schema lacks is refused with its location.
        let bad = "name = \"x\"\ncolour = 1\n";
        let body = hcl_edit::parser::parse_body(bad).unwrap();
        let mut ev = Evaluator::new(&NoVars, bad);
        let errs = eval_body(&mut ev, &body, &block, &origin, "test").unwrap_err();
        assert!(
            errs[0].message.contains("\"colour\" is not expected"),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[0].span.as_ref().map(|s| s.start), Some(11));
    }

    #[test]
    fn proposed_new_state_keeps_computed_values() {
        let block = Block {
            attributes: BTreeMap::from([
                (
                    "id".to_string(),
                    Attribute {
                        ty: Type::String,
                        nested: None,
                        required: false,
                        optional: false,
                        computed: true,
                        sensitive: false,
                    },
                ),
                ("name".to_string(), attr(Type::String, true)),
            ]),
            block_types: BTreeMap::new(),
        };
        let prior = Value::Map(BTreeMap::from([
            ("id".into(), Value::string("abc")),
            ("name".into(), Value::string("old")),
        ]));
        let config = Value::Map(BTreeMap::from([
            ("id".into(), Value::Null),
            ("name".into(), Value::string("new")),
        ]));
        let p = proposed_new(&prior, &config, &block);
        assert_eq!(p.get_attr("id"), Some(&Value::string("abc")));
        assert_eq!(p.get_attr("name"), Some(&Value::string("new")));
        let created = proposed_new(&Value::Null, &config, &block);
        assert_eq!(created.get_attr("id"), Some(&Value::Unknown));
    }
}
