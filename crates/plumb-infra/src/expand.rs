//! `count` and `for_each`: evaluating them into instance keys, and the
//! names every module scope resolves alike (`count.index`, `each.key`,
//! `each.value`, `path.*`, `terraform.workspace`).
//!
//! Both resources and module calls expand this way, before the walk (module
//! calls) or as it reaches them (resources), so this sits below the module
//! expansion and the engine that use it. It knows the language, not the
//! graph.

use std::collections::BTreeMap;
use std::path::Path;

use hcl_edit::Span;
use hcl_edit::expr::Expression;
use plumb_tfplugin::Value;

use crate::addr::InstanceKey;
use crate::coerce::{to_number, value_to_string};
use crate::config::Origin;
use crate::diag::Diag;
use crate::eval::{Evaluator, Scope, Step};

/// One instance of an expansion: its key and, for for_each,
/// `each.key`/`each.value`.
pub type Expansion = (Option<InstanceKey>, Option<(Value, Value)>);

/// Where a module scope is: the directories `path.module`, `path.root` and
/// `path.cwd` name, and the instance's `count.index` or `each`.
pub struct Place<'a> {
    /// The module's directory (`path.module`).
    pub module_dir: &'a Path,
    /// The root module's directory (`path.root`).
    pub root_dir: &'a Path,
    /// The working directory (`path.cwd`).
    pub cwd: &'a Path,
    /// `count.index`, in a block that sets count.
    pub count_index: Option<i64>,
    /// `each.key` and `each.value`, in a block that sets for_each.
    pub each: Option<&'a (Value, Value)>,
}

/// Resolves the names every module scope resolves alike: `count.index`,
/// `each.key`, `each.value`, `path.*` and `terraform.workspace`. `None`
/// for other roots.
pub fn resolve_common(
    root: &str,
    steps: &[Step],
    place: &Place<'_>,
) -> Option<Result<Option<(Value, usize)>, String>> {
    let attr = match steps.first() {
        Some(Step::Attr(a)) => Some(a.as_str()),
        _ => None,
    };
    let path = |p: &Path| Ok(Some((Value::string(p.display().to_string()), 1)));
    Some(match root {
        "count" => match (attr, place.count_index) {
            (Some("index"), Some(i)) => Ok(Some((Value::int(i), 1))),
            _ => Err("count.index is only available in blocks that set count".into()),
        },
        "each" => match (attr, place.each) {
            (Some("key"), Some((k, _))) => Ok(Some((k.clone(), 1))),
            (Some("value"), Some((_, v))) => Ok(Some((v.clone(), 1))),
            _ => {
                Err("each.key and each.value are only available in blocks that set for_each".into())
            }
        },
        "path" => match attr {
            Some("module") => path(place.module_dir),
            Some("root") => path(place.root_dir),
            Some("cwd") => path(place.cwd),
            _ => Err("path.module, path.root or path.cwd".into()),
        },
        "terraform" => Ok(Some((
            Value::Map(BTreeMap::from([(
                "workspace".to_string(),
                Value::string("default"),
            )])),
            0,
        ))),
        _ => return None,
    })
}

/// Evaluates count / for_each in `scope` into instance keys with their each
/// values; `None` when the value is not known yet.
pub fn expand_in(
    scope: &dyn Scope,
    count: Option<&Expression>,
    for_each: Option<&Expression>,
    origin: &Origin,
) -> Result<Option<Vec<Expansion>>, Diag> {
    let mut ev = Evaluator::new(scope, &origin.file.text);
    if let Some(c) = count {
        let v = ev.eval(c).map_err(|e| origin.diag_at(e.span, e.message))?;
        if v.is_unknown() {
            return Ok(None);
        }
        let n = to_number(&v).map_err(|e| origin.diag_at(c.span(), format!("count: {e}")))?;
        let n = n.to_i64().filter(|n| *n >= 0).ok_or_else(|| {
            origin.diag_at(c.span(), "count must be a whole number, zero or more")
        })?;
        return Ok(Some(
            (0..n).map(|i| (Some(InstanceKey::Int(i)), None)).collect(),
        ));
    }
    if let Some(f) = for_each {
        let v = ev.eval(f).map_err(|e| origin.diag_at(e.span, e.message))?;
        if v.is_unknown() {
            return Ok(None);
        }
        if v.is_sensitive() {
            return Err(origin.diag_at(
                f.span(),
                "for_each cannot use sensitive values (they would show up as instance keys)",
            ));
        }
        let items: Vec<(String, Value)> = match v.unmarked() {
            Value::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Value::Set(s) | Value::List(s) => {
                if matches!(v.unmarked(), Value::List(_)) && !s.is_empty() {
                    return Err(origin
                        .diag_at(
                            f.span(),
                            "for_each needs a map or a set of strings, not a list",
                        )
                        .hint("wrap it in toset(...)"));
                }
                s.iter()
                    .map(|x| value_to_string(x).map(|k| (k.clone(), Value::string(k))))
                    .collect::<Result<_, _>>()
                    .map_err(|e| origin.diag_at(f.span(), format!("for_each: {e}")))?
            }
            Value::Null => return Err(origin.diag_at(f.span(), "for_each must not be null")),
            other => {
                return Err(origin.diag_at(
                    f.span(),
                    format!(
                        "for_each needs a map or a set of strings, not a {}",
                        other.kind()
                    ),
                ));
            }
        };
        return Ok(Some(
            items
                .into_iter()
                .map(|(k, v)| {
                    (
                        Some(InstanceKey::Str(k.clone())),
                        Some((Value::string(k), v)),
                    )
                })
                .collect(),
        ));
    }
    Ok(Some(vec![(None, None)]))
}
