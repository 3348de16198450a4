//! What an expression refers to: the variables, locals, resources and
//! module calls whose values it needs, which become the graph's edges.
//!
//! Names bound inside the expression (for-expression variables, a dynamic
//! block's iterator) are not references; neither are `count`, `each`,
//! `path`, `terraform` and `self`.

use hcl_edit::expr::{Expression, TraversalOperator};
use hcl_edit::structure::{Body, Structure};
use hcl_edit::{Decorated, Ident};

use crate::config::{Mode, Reference, ResourceBlock, label_text};

/// Everything an expression refers to.
pub fn references(expr: &Expression) -> Vec<Reference> {
    collected(|bound, out| walk_refs(expr, bound, out))
}

/// References of every attribute and nested block in a body.
pub fn body_references(body: &Body) -> Vec<Reference> {
    collected(|bound, out| walk_body(body, bound, out))
}

/// Everything a resource block refers to: its body, `count`, `for_each`
/// and `depends_on` (not sorted or made unique across them).
pub fn resource_references(r: &ResourceBlock) -> Vec<Reference> {
    let mut refs = body_references(&r.body);
    if let Some(c) = &r.count {
        refs.extend(references(c));
    }
    if let Some(f) = &r.for_each {
        refs.extend(references(f));
    }
    refs.extend(r.depends_on.clone());
    refs
}

/// What one walk over an expression or body finds, sorted, each once.
fn collected(walk: impl FnOnce(&mut Vec<String>, &mut Vec<Reference>)) -> Vec<Reference> {
    let mut out = Vec::new();
    walk(&mut Vec::new(), &mut out);
    out.sort();
    out.dedup();
    out
}

fn walk_body(body: &Body, bound: &mut Vec<String>, out: &mut Vec<Reference>) {
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => walk_refs(&a.value, bound, out),
            Structure::Block(b) => {
                if b.ident.value().as_str() == "dynamic" {
                    let name = dynamic_iterator(&b.body)
                        .or_else(|| b.labels.first().map(label_text))
                        .unwrap_or_default();
                    bound.push(name);
                    walk_body(&b.body, bound, out);
                    bound.pop();
                } else {
                    walk_body(&b.body, bound, out);
                }
            }
        }
    }
}

/// The iterator a dynamic block's body names with `iterator = NAME`; without
/// one, the iterator is the block's label.
pub fn dynamic_iterator(body: &Body) -> Option<String> {
    body.get_attribute("iterator").and_then(|a| match &a.value {
        Expression::Variable(v) => Some(v.value().to_string()),
        _ => None,
    })
}

/// Runs `walk` with a for's key (if any) and value variables bound: they
/// name the element, so they are not references inside it.
fn with_for_variables(
    bound: &mut Vec<String>,
    key: Option<&Decorated<Ident>>,
    value: &Decorated<Ident>,
    walk: impl FnOnce(&mut Vec<String>),
) {
    let n = bound.len();
    if let Some(k) = key {
        bound.push(k.value().to_string());
    }
    bound.push(value.value().to_string());
    walk(bound);
    bound.truncate(n);
}

fn reference_of(root: &str, attrs: &[String]) -> Option<Reference> {
    match root {
        "var" => attrs.first().map(|a| Reference::Var(a.clone())),
        "local" => attrs.first().map(|a| Reference::Local(a.clone())),
        "module" => attrs.first().map(|a| Reference::Module(a.clone())),
        "data" => match attrs {
            [t, n, ..] => Some(Reference::Resource(Mode::Data, t.clone(), n.clone())),
            _ => None,
        },
        "count" | "each" | "path" | "terraform" | "self" => None,
        ty => attrs
            .first()
            .map(|n| Reference::Resource(Mode::Managed, ty.to_string(), n.clone())),
    }
}

fn walk_refs(expr: &Expression, bound: &mut Vec<String>, out: &mut Vec<Reference>) {
    match expr {
        Expression::Variable(v) => {
            let name = v.value().to_string();
            if !bound.contains(&name)
                && let Some(r) = reference_of(&name, &[])
            {
                out.push(r);
            }
        }
        Expression::Traversal(t) => {
            if let Expression::Variable(v) = &t.expr {
                let root = v.value().to_string();
                if !bound.contains(&root) {
                    let attrs: Vec<String> = t
                        .operators
                        .iter()
                        .map_while(|o| match o.value() {
                            TraversalOperator::GetAttr(a) => Some(a.value().to_string()),
                            _ => None,
                        })
                        .collect();
                    if let Some(r) = reference_of(&root, &attrs) {
                        out.push(r);
                    }
                }
            } else {
                walk_refs(&t.expr, bound, out);
            }
            for op in &t.operators {
                if let TraversalOperator::Index(e) = op.value() {
                    walk_refs(e, bound, out);
                }
            }
        }
        Expression::Array(a) => a.iter().for_each(|e| walk_refs(e, bound, out)),
        Expression::Object(o) => {
            for (k, v) in o.iter() {
                if let hcl_edit::expr::ObjectKey::Expression(e) = k
                    && !matches!(e, Expression::Variable(_))
                {
                    walk_refs(e, bound, out);
                }
                walk_refs(v.expr(), bound, out);
            }
        }
        Expression::StringTemplate(t) => walk_template(t, bound, out),
        Expression::HeredocTemplate(h) => walk_template(&h.template, bound, out),
        Expression::Parenthesis(p) => walk_refs(p.inner(), bound, out),
        Expression::Conditional(c) => {
            walk_refs(&c.cond_expr, bound, out);
            walk_refs(&c.true_expr, bound, out);
            walk_refs(&c.false_expr, bound, out);
        }
        Expression::FuncCall(f) => f.args.iter().for_each(|e| walk_refs(e, bound, out)),
        Expression::UnaryOp(u) => walk_refs(&u.expr, bound, out),
        Expression::BinaryOp(b) => {
            walk_refs(&b.lhs_expr, bound, out);
            walk_refs(&b.rhs_expr, bound, out);
        }
        Expression::ForExpr(f) => {
            walk_refs(&f.intro.collection_expr, bound, out);
            let (key, value) = (f.intro.key_var.as_ref(), &f.intro.value_var);
            with_for_variables(bound, key, value, |bound| {
                if let Some(k) = &f.key_expr {
                    walk_refs(k, bound, out);
                }
                walk_refs(&f.value_expr, bound, out);
                if let Some(c) = &f.cond {
                    walk_refs(&c.expr, bound, out);
                }
            });
        }
        _ => {}
    }
}

fn walk_template(
    t: &hcl_edit::template::Template,
    bound: &mut Vec<String>,
    out: &mut Vec<Reference>,
) {
    use hcl_edit::template::{Directive, Element};
    for el in t.iter() {
        match el {
            Element::Literal(_) => {}
            Element::Interpolation(i) => walk_refs(&i.expr, bound, out),
            Element::Directive(d) => match d.as_ref() {
                Directive::If(i) => {
                    walk_refs(&i.if_expr.cond_expr, bound, out);
                    walk_template(&i.if_expr.template, bound, out);
                    if let Some(e) = &i.else_expr {
                        walk_template(&e.template, bound, out);
                    }
                }
                Directive::For(f) => {
                    walk_refs(&f.for_expr.collection_expr, bound, out);
                    let (key, value) = (f.for_expr.key_var.as_ref(), &f.for_expr.value_var);
                    with_for_variables(bound, key, value, |bound| {
                        walk_template(&f.for_expr.template, bound, out)
                    });
                }
            },
        }
    }
}
