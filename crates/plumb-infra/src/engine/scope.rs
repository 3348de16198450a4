//! What expressions see during a walk: the values evaluated so far
//! ([`Values`]) and the scope of one module instance over them
//! ([`ModuleScope`]): its variables, locals, resources, module calls'
//! outputs, and the names every scope shares.
//!
//! A resource's value is kept per expansion (a single object, a list for
//! count, a map for for_each) so that `aws_x.a[3]` indexes straight into a
//! large expansion instead of copying it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use plumb_tfplugin::Value;

use crate::addr::{InstanceKey, ResourceAddr};
use crate::coerce::{to_number, value_to_string};
use crate::config::{Mode, ModuleConfig};
use crate::eval::{Scope, Step};
use crate::expand::{Place, resolve_common};
use crate::modules::ModuleInstances;

/// Values of a resource's instances.
#[derive(Clone, Debug)]
pub enum ResourceValue {
    /// Without count or for_each.
    Single(Value),
    /// One per count index.
    Count(Vec<Value>),
    /// One per for_each key.
    ForEach(BTreeMap<String, Value>),
    /// Not known until apply.
    Unknown,
}

impl ResourceValue {
    /// All instances as one value, as a reference to the resource sees it.
    pub fn to_value(&self) -> Value {
        match self {
            ResourceValue::Single(v) => v.clone(),
            ResourceValue::Count(v) => Value::List(v.clone()),
            ResourceValue::ForEach(m) => Value::Map(m.clone()),
            ResourceValue::Unknown => Value::Unknown,
        }
    }
}

/// Everything evaluated so far during a walk, by module instance path and
/// name.
#[derive(Default)]
pub struct Values {
    /// Input variables.
    pub vars: HashMap<(Vec<String>, String), Value>,
    /// Local values.
    pub locals: HashMap<(Vec<String>, String), Value>,
    /// Output values.
    pub outputs: HashMap<(Vec<String>, String), Value>,
    /// Resources.
    pub resources: HashMap<ResourceAddr, Arc<ResourceValue>>,
}

/// The scope of one module instance (or of one resource instance in it).
pub struct ModuleScope<'a> {
    /// What the walk evaluated so far.
    pub values: &'a Values,
    /// Every module call's instances.
    pub instances: &'a ModuleInstances,
    /// The module instance's path.
    pub module: &'a [String],
    /// Its configuration.
    pub cfg: &'a ModuleConfig,
    /// The root module's directory (`path.root`).
    pub root_dir: &'a Path,
    /// The working directory (`path.cwd`).
    pub cwd: &'a Path,
    /// The user's home directory, for `pathexpand()`.
    pub home: Option<&'a Path>,
    /// The age identities `sops_file()` decrypts with.
    pub sops_keys: &'a plumb_secrets::sops::Keyring,
    /// `count.index`, for a resource instance with count.
    pub count_index: Option<i64>,
    /// `each.key` and `each.value`, for a resource instance with for_each.
    pub each: Option<(Value, Value)>,
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
    fn sops_keys(&self) -> Option<&plumb_secrets::sops::Keyring> {
        Some(self.sops_keys)
    }
}
