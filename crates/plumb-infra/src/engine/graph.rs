//! The dependency graph of a configuration: one node per variable, local,
//! output, provider configuration and resource block (per module instance),
//! each with the nodes its expressions refer to.
//!
//! Building it checks every reference names something declared, and that
//! nothing depends on itself; a cycle is reported with its whole path. The
//! graph is built twice, on the configuration's shape (one instance per
//! module call) so each mistake is reported once, and on the expanded
//! module instances the walk visits.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::addr::ResourceAddr;
use crate::config::{Mode, ModuleConfig, Origin, Reference};
use crate::diag::{ConfigError, Diag};
use crate::modules::ModuleInstances;
use crate::references::{body_references, references, resource_references};

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
        let mut deps = resolve(resource_references(r), &r.origin, errs);
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
