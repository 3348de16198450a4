//! Module instances: a module call with `count` or `for_each` becomes one
//! instance of the module per index or key (`module.net[0]`,
//! `module.net["eu"]`), each with its own variables, locals, resources and
//! outputs.
//!
//! Instances are expanded before the walk, so the graph holds one set of
//! nodes per module instance and the walk needs no dynamic subgraphs. That
//! fixes what a module call's `count` and `for_each` may use: input
//! variables, locals, functions and the enclosing call's `count.index` /
//! `each` — values known before any resource is read. Resource attributes
//! and module outputs there are refused with a message.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use plumb_tfplugin::Value;

use crate::addr::{InstanceKey, module_call_name, module_elem};
use crate::config::{ModuleConfig, Origin};
use crate::diag::ConfigError;
use crate::environment::Environment;
use crate::eval::{Evaluator, Scope, Step};
use crate::expand::{Place, expand_in, resolve_common};
use crate::vars::finish_variable;

/// One instance of a module call.
#[derive(Clone, Debug)]
pub struct ModuleInstance {
    /// Its module path element: `net`, `net[0]` or `net["eu"]`.
    pub elem: String,
    /// The count index or for_each key.
    pub key: Option<InstanceKey>,
    /// `each.key` and `each.value` for a for_each call.
    pub each: Option<(Value, Value)>,
}

/// Every module call's instances, by the parent module instance's path and
/// the call's name.
#[derive(Debug, Default)]
pub struct ModuleInstances {
    calls: HashMap<(Vec<String>, String), Vec<ModuleInstance>>,
}

impl ModuleInstances {
    /// The instances of call `name` inside the module instance at `parent`.
    pub fn of(&self, parent: &[String], name: &str) -> Option<&[ModuleInstance]> {
        self.calls
            .get(&(parent.to_vec(), name.to_string()))
            .map(Vec::as_slice)
    }

    /// The instance that module path element `elem` names under `parent`.
    pub fn instance(&self, parent: &[String], elem: &str) -> Option<&ModuleInstance> {
        self.of(parent, module_call_name(elem))?
            .iter()
            .find(|i| i.elem == elem)
    }

    /// Whether `path` names a module instance the configuration expands to
    /// (the root always does).
    pub fn contains(&self, path: &[String]) -> bool {
        (0..path.len()).all(|i| self.instance(&path[..i], &path[i]).is_some())
    }

    /// One instance per call, named by the call alone: the configuration's
    /// shape without evaluating anything (for `validate`).
    pub fn unexpanded(root: &ModuleConfig) -> ModuleInstances {
        fn walk(cfg: &ModuleConfig, path: &[String], out: &mut ModuleInstances) {
            for (name, call) in &cfg.modules {
                out.calls.insert(
                    (path.to_vec(), name.clone()),
                    vec![ModuleInstance {
                        elem: name.clone(),
                        key: None,
                        each: None,
                    }],
                );
                let mut child = path.to_vec();
                child.push(name.clone());
                walk(&call.config, &child, out);
            }
        }
        let mut out = ModuleInstances::default();
        walk(root, &[], &mut out);
        out
    }

    /// Evaluates every module call's `count` / `for_each`, from the root's
    /// variable values down, in the caller's `env`.
    pub fn expand(
        root: &ModuleConfig,
        root_vars: &BTreeMap<String, Value>,
        env: &Environment,
    ) -> Result<ModuleInstances, ConfigError> {
        let mut out = ModuleInstances::default();
        let mut errs = Vec::new();
        let mut todo: Vec<(Vec<String>, &ModuleConfig)> = vec![(vec![], root)];
        while let Some((path, cfg)) = todo.pop() {
            for (name, call) in &cfg.modules {
                let instances = if call.count.is_none() && call.for_each.is_none() {
                    vec![ModuleInstance {
                        elem: name.clone(),
                        key: None,
                        each: None,
                    }]
                } else {
                    let scope = StaticScope {
                        root,
                        root_vars,
                        env,
                        instances: &out,
                        path: &path,
                        cfg,
                        count_index: None,
                        each: None,
                        depth: 0,
                    };
                    match expand_in(
                        &scope,
                        call.count.as_ref(),
                        call.for_each.as_ref(),
                        &call.origin,
                    ) {
                        Ok(Some(list)) => list
                            .into_iter()
                            .map(|(key, each)| ModuleInstance {
                                elem: module_elem(name, key.as_ref()),
                                key,
                                each,
                            })
                            .collect(),
                        Ok(None) => {
                            errs.push(call.origin.diag(format!(
                                "the count or for_each of module {name} is not known before apply"
                            )));
                            continue;
                        }
                        Err(d) => {
                            errs.push(d);
                            continue;
                        }
                    }
                };
                for i in &instances {
                    let mut child = path.clone();
                    child.push(i.elem.clone());
                    todo.push((child, &call.config));
                }
                out.calls.insert((path.clone(), name.clone()), instances);
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(ConfigError::new(errs))
        }
    }
}

/// Evaluates a module call's `count` / `for_each` before the walk: input
/// variables (from the root's values or the parent call's arguments),
/// locals and functions resolve; anything a walk would produce is refused.
struct StaticScope<'a> {
    root: &'a ModuleConfig,
    root_vars: &'a BTreeMap<String, Value>,
    env: &'a Environment,
    instances: &'a ModuleInstances,
    /// The module instance being evaluated in.
    path: &'a [String],
    cfg: &'a ModuleConfig,
    count_index: Option<i64>,
    each: Option<(Value, Value)>,
    /// How many locals and variables deep this evaluation is.
    depth: usize,
}

impl StaticScope<'_> {
    fn eval(&self, expr: &hcl_edit::expr::Expression, origin: &Origin) -> Result<Value, String> {
        if self.depth > 64 {
            return Err("locals and variables refer to each other in a cycle".into());
        }
        Evaluator::new(self, &origin.file.text)
            .eval(expr)
            .map_err(|e| origin.diag_at(e.span, e.message).to_string())
    }

    fn var(&self, name: &str) -> Result<Value, String> {
        let var = self
            .cfg
            .variables
            .get(name)
            .ok_or_else(|| format!("there is no variable named {name:?}"))?;
        let given = match self.path.split_last() {
            None => self.root_vars.get(name).cloned(),
            Some((elem, parent)) => {
                let pcfg = module_at(self.root, parent).ok_or("module vanished")?;
                let call = pcfg
                    .modules
                    .get(module_call_name(elem))
                    .ok_or("module vanished")?;
                match call.inputs.get(name) {
                    None => None,
                    Some(e) => {
                        let inst = self.instances.instance(parent, elem);
                        let scope = StaticScope {
                            path: parent,
                            cfg: pcfg,
                            count_index: match inst.and_then(|i| i.key.as_ref()) {
                                Some(InstanceKey::Int(i)) if call.count.is_some() => Some(*i),
                                _ => None,
                            },
                            each: inst.and_then(|i| i.each.clone()),
                            depth: self.depth + 1,
                            ..*self
                        };
                        Some(scope.eval(e, &call.origin)?)
                    }
                }
            }
        };
        finish_variable(self.cfg, name, var, given, self.env.home.as_deref())
            .map_err(|d| d.to_string())
    }
}

impl Scope for StaticScope<'_> {
    fn resolve(&self, root: &str, steps: &[Step]) -> Result<Option<(Value, usize)>, String> {
        let place = Place {
            module_dir: &self.cfg.dir,
            root_dir: &self.root.dir,
            cwd: &self.env.cwd,
            count_index: self.count_index,
            each: self.each.as_ref(),
        };
        if let Some(r) = resolve_common(root, steps, &place) {
            return r;
        }
        let name = match steps.first() {
            Some(Step::Attr(a)) => a.as_str(),
            _ => "",
        };
        match root {
            "var" => Ok(Some((self.var(name)?, 1))),
            "local" => {
                let (expr, origin) = self
                    .cfg
                    .locals
                    .get(name)
                    .ok_or_else(|| format!("there is no local value named {name:?}"))?;
                let scope = StaticScope {
                    count_index: None,
                    each: None,
                    depth: self.depth + 1,
                    ..*self
                };
                Ok(Some((scope.eval(expr, origin)?, 1)))
            }
            _ => Err(format!(
                "{root}: a module call's count and for_each can use variables, locals and \
                 functions, not resources or module outputs (plumb expands module instances \
                 before it reads any resource)"
            )),
        }
    }

    fn module_dir(&self) -> &Path {
        &self.cfg.dir
    }

    fn home(&self) -> Option<&Path> {
        self.env.home.as_deref()
    }

    fn sops_keys(&self) -> Option<&plumb_secrets::sops::Keyring> {
        Some(&self.env.sops_keys)
    }
}

/// The configuration of the module instance at `path`.
pub fn module_at<'a>(root: &'a ModuleConfig, path: &[String]) -> Option<&'a ModuleConfig> {
    let mut m = root;
    for elem in path {
        m = &m.modules.get(module_call_name(elem))?.config;
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(files: &[(&str, &str)]) -> (tempfile::TempDir, ModuleConfig) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let cfg = crate::parse::load(dir.path()).unwrap();
        (dir, cfg)
    }

    #[test]
    fn nested_calls_expand_from_their_parents_arguments() {
        let (_dir, root) = stack(&[
            (
                "main.tf",
                r#"
variable "regions" {
  default = { eu = 2, us = 1 }
}
locals {
  regions = { for k, v in var.regions : k => v if v > 0 }
}
module "region" {
  source   = "./region"
  for_each = local.regions
  zones    = each.value
}
module "plain" {
  source = "./region"
  zones  = 0
}
"#,
            ),
            (
                "region/main.tf",
                r#"
variable "zones" {
  type = number
}
module "zone" {
  source = "../zone"
  count  = var.zones
}
"#,
            ),
            ("zone/main.tf", "output \"x\" {\n  value = 1\n}\n"),
        ]);
        let vars = BTreeMap::new();
        let env = Environment::default();
        let m = ModuleInstances::expand(&root, &vars, &env).unwrap();
        let elems = |parent: &[&str], call: &str| -> Vec<String> {
            let parent: Vec<String> = parent.iter().map(|s| s.to_string()).collect();
            m.of(&parent, call)
                .unwrap()
                .iter()
                .map(|i| i.elem.clone())
                .collect()
        };
        assert_eq!(elems(&[], "region"), ["region[\"eu\"]", "region[\"us\"]"]);
        assert_eq!(elems(&["region[\"eu\"]"], "zone"), ["zone[0]", "zone[1]"]);
        assert_eq!(elems(&["region[\"us\"]"], "zone"), ["zone[0]"]);
        assert_eq!(elems(&["plain"], "zone"), Vec::<String>::new());
        assert!(m.contains(&["region[\"eu\"]".into(), "zone[1]".into()]));
        assert!(!m.contains(&["region[\"us\"]".into(), "zone[1]".into()]));
        assert!(!m.contains(&["region".into()]));
        // Root values override defaults and decide the shape.
        let vars = BTreeMap::from([(
            "regions".to_string(),
            Value::Map(BTreeMap::from([("ap".to_string(), Value::int(3))])),
        )]);
        let m = ModuleInstances::expand(&root, &vars, &env).unwrap();
        assert_eq!(
            m.of(&["region[\"ap\"]".to_string()], "zone").unwrap().len(),
            3
        );
        assert!(m.of(&[], "region").unwrap().len() == 1);
    }

    #[test]
    fn count_that_waits_for_a_resource_is_refused_with_its_place() {
        let (_dir, root) = stack(&[
            (
                "main.tf",
                "resource \"random_id\" \"a\" {\n  byte_length = 2\n}\nmodule \"m\" {\n  source = \"./m\"\n  count  = length(random_id.a.hex)\n}\n",
            ),
            ("m/main.tf", ""),
        ]);
        let err = ModuleInstances::expand(&root, &BTreeMap::new(), &Environment::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not resources or module outputs"), "{err}");
        assert!(err.contains("main.tf:6:"), "{err}");
    }
}
