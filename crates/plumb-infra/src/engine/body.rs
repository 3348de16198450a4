//! A resource or provider block against its schema: evaluating its body
//! into an object of the schema's type (nested blocks, `dynamic` blocks,
//! required arguments, sensitive attributes), and the values the provider
//! protocol wants around it: the proposed new state, computed attributes
//! left unknown, and `ignore_changes`.
//!
//! Everything here is pure: values in, values (or diagnostics) out, which is
//! why its tests need no provider.

use std::collections::BTreeMap;

use hcl_edit::Span;
use hcl_edit::structure::{Body, Structure};
use plumb_tfplugin::value::convert;
use plumb_tfplugin::{Attribute, Block, NestedBlock, Nesting, Value};

use crate::coerce::{iterate, value_to_string};
use crate::config::{Origin, label_text};
use crate::diag::Diag;
use crate::eval::Evaluator;
use crate::references::dynamic_iterator;

/// `v`, marked sensitive when it is set and `attribute` is sensitive.
fn marked_as(attribute: &Attribute, v: Value) -> Value {
    if attribute.sensitive && !v.is_null() {
        v.mark_sensitive()
    } else {
        v
    }
}

/// Marks attributes the schema calls sensitive.
pub fn mark_schema_sensitive(v: Value, block: &Block) -> Value {
    let Value::Map(mut m) = v else {
        return v;
    };
    for (k, a) in &block.attributes {
        if let Some(x) = m.remove(k) {
            m.insert(k.clone(), marked_as(a, x));
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

/// The schema of `block`'s nested blocks of type `name`, which `b` (a block
/// or a dynamic block) writes; none, with the error in `errs`, when the
/// schema has no such blocks.
fn nested_schema<'s>(
    block: &'s Block,
    name: &str,
    b: &hcl_edit::structure::Block,
    origin: &Origin,
    errs: &mut Vec<Diag>,
) -> Option<&'s NestedBlock> {
    let nested = block.block_types.get(name);
    if nested.is_none() {
        errs.push(origin.diag_at(
            b.span(),
            format!("blocks of type {name:?} are not expected here"),
        ));
    }
    nested
}

/// Evaluates a resource or provider body against its schema.
pub fn eval_body(
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
                    let Some(label) = b.labels.first().map(label_text) else {
                        errs.push(origin.diag_at(
                            b.span(),
                            "a dynamic block needs the block type as its label",
                        ));
                        continue;
                    };
                    let Some(nb) = nested_schema(block, &label, b, origin, &mut errs) else {
                        continue;
                    };
                    let iterator = dynamic_iterator(&b.body).unwrap_or_else(|| label.clone());
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
                let Some(nb) = nested_schema(block, &ident, b, origin, &mut errs) else {
                    continue;
                };
                let labels = b.labels.iter().map(label_text).collect();
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
        out.insert(k.clone(), marked_as(a, v));
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
pub fn proposed_new(prior: &Value, config: &Value, block: &Block) -> Value {
    if prior.is_null() {
        return fill_computed_unknown(config, block);
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
                        None => fill_computed_unknown(ci, &nb.block),
                    })
                    .collect(),
            ),
            _ => cv,
        };
        out.insert(k.clone(), v);
    }
    Value::Map(out)
}

/// `config` with the computed attributes it leaves null unknown: what a
/// create or a data source read not yet possible will fill in.
pub fn fill_computed_unknown(config: &Value, block: &Block) -> Value {
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

/// `config` with the attributes `ignore` names (`["*"]`: all) kept as in
/// `prior`.
pub fn apply_ignore_changes(config: &Value, prior: &Value, ignore: &[String]) -> Value {
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use plumb_tfplugin::Type;
    use plumb_tfplugin::schema::{Attribute, NestedBlock};

    use super::*;
    use crate::diag::SourceFile;
    use crate::eval::{Scope, Step};

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
