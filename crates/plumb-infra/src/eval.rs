//! Evaluating HCL expressions into [`Value`]s.
//!
//! The evaluator walks hcl-edit's syntax tree directly. Unknown values flow
//! through every operation (an unknown operand makes an unknown result),
//! sensitive marks spread to whatever is computed from a sensitive value, and
//! numbers keep arbitrary precision (literals are re-read from the source
//! text, since the parser's own numbers are 64-bit).
//!
//! Names are resolved through [`Scope`], which the engine implements over
//! variables, locals, resources and module outputs; the evaluator itself
//! knows only the language.

use std::collections::BTreeMap;
use std::ops::Range;

use hcl_edit::Span;
use hcl_edit::expr::{BinaryOperator, Expression, ObjectKey, TraversalOperator, UnaryOperator};
use hcl_edit::template::{Directive, Element, Strip, Template};
use plumb_tfplugin::{Number, Value};

use crate::coerce::{iterate, mark, to_bool, to_number, value_to_string};
use crate::functions::{self, CallContext, FunctionError, Kind, TemplateRenderer};

/// One step after a root name: `.name`, `[key]` or a splat.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `.name`
    Attr(String),
    /// `[expr]`, evaluated.
    Index(Value),
}

/// Resolves names for the evaluator.
pub trait Scope: Sync {
    /// Resolves a root name followed by as many leading steps as the scope
    /// wants to consume; returns the value and how many steps were used.
    /// `Ok(None)` means the name is not known here.
    fn resolve(&self, root: &str, steps: &[Step]) -> Result<Option<(Value, usize)>, String>;
    /// The directory of the module being evaluated (for `file()` and `path.module`).
    fn module_dir(&self) -> &std::path::Path;
    /// The user's home directory, for `pathexpand()`.
    fn home(&self) -> Option<&std::path::Path>;
    /// The age identities `sops_file()` decrypts with; none by default
    /// (literal-only places such as variable defaults).
    fn sops_keys(&self) -> Option<&plumb_secrets::sops::Keyring> {
        None
    }
}

/// An evaluation failure, with the byte range it is about.
#[derive(Debug, Clone)]
pub struct EvalError {
    /// What went wrong.
    pub message: String,
    /// Where, in the file being evaluated.
    pub span: Option<Range<usize>>,
}

impl EvalError {
    fn at(message: impl Into<String>, span: Option<Range<usize>>) -> EvalError {
        EvalError {
            message: message.into(),
            span,
        }
    }
}

/// An evaluator over one source file's text.
pub struct Evaluator<'a> {
    /// Names from the surrounding configuration.
    pub scope: &'a dyn Scope,
    /// The text of the file the expressions come from (for number literals).
    pub source: &'a str,
    /// Names bound by for-expressions, template for-directives and dynamic blocks.
    pub locals: Vec<(String, Value)>,
}

type R = Result<Value, EvalError>;

impl<'a> Evaluator<'a> {
    /// A new evaluator.
    pub fn new(scope: &'a dyn Scope, source: &'a str) -> Evaluator<'a> {
        Evaluator {
            scope,
            source,
            locals: Vec::new(),
        }
    }

    /// Evaluates an expression.
    pub fn eval(&mut self, expr: &Expression) -> R {
        let span = expr.span();
        match expr {
            Expression::Null(_) => Ok(Value::Null),
            Expression::Bool(b) => Ok(Value::Bool(*b.value())),
            Expression::Number(n) => {
                let text = span
                    .clone()
                    .and_then(|s| self.source.get(s))
                    .map(str::trim)
                    .filter(|t| t.parse::<Number>().is_ok());
                match text {
                    Some(t) => Ok(Value::Number(
                        t.parse()
                            .map_err(|_| EvalError::at("bad number", span.clone()))?,
                    )),
                    None => {
                        let n = n.value();
                        if let Some(i) = n.as_i64() {
                            Ok(Value::int(i))
                        } else {
                            Number::from_f64(n.as_f64().unwrap_or(0.0))
                                .map(Value::Number)
                                .ok_or_else(|| EvalError::at("bad number", span))
                        }
                    }
                }
            }
            Expression::String(s) => Ok(Value::String(s.value().to_string())),
            Expression::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for e in a.iter() {
                    out.push(self.eval(e)?);
                }
                Ok(Value::List(out))
            }
            Expression::Object(o) => {
                let mut out = BTreeMap::new();
                let mut sensitive = false;
                for (k, v) in o.iter() {
                    let key = match k {
                        ObjectKey::Ident(id) => id.value().to_string(),
                        ObjectKey::Expression(Expression::Variable(id)) => id.value().to_string(),
                        ObjectKey::Expression(e) => {
                            let kv = self.eval(e)?;
                            if kv.is_unknown() {
                                return Ok(Value::Unknown);
                            }
                            sensitive |= kv.is_sensitive();
                            value_to_string(&kv).map_err(|m| EvalError::at(m, e.span()))?
                        }
                    };
                    out.insert(key, self.eval(v.expr())?);
                }
                Ok(mark(Value::Map(out), sensitive))
            }
            Expression::StringTemplate(t) => self.template(t, None),
            Expression::HeredocTemplate(h) => {
                let s = self.template(&h.template, None)?;
                match (h.indent(), s) {
                    (Some(n), Value::String(text)) => Ok(Value::String(dedent(&text, n))),
                    (_, other) => Ok(other),
                }
            }
            Expression::Parenthesis(p) => self.eval(p.inner()),
            Expression::Variable(v) => self.traverse(v.value().as_str(), &[], span),
            Expression::Conditional(c) => {
                let cond = self.eval(&c.cond_expr)?;
                if cond.is_unknown() {
                    return Ok(Value::Unknown);
                }
                let sensitive = cond.is_sensitive();
                let b = to_bool(&cond)
                    .map_err(|m| EvalError::at(format!("condition: {m}"), c.cond_expr.span()))?;
                let v = if b {
                    self.eval(&c.true_expr)?
                } else {
                    self.eval(&c.false_expr)?
                };
                Ok(mark(v, sensitive))
            }
            Expression::FuncCall(f) => {
                let name = f.name.name.value().to_string();
                let full = if f.name.namespace.is_empty() {
                    name.clone()
                } else {
                    let mut parts: Vec<String> = f
                        .name
                        .namespace
                        .iter()
                        .map(|n| n.value().to_string())
                        .collect();
                    parts.push(name.clone());
                    parts.join("::")
                };
                // try() and can() look at evaluation errors, so they take expressions.
                if let Some(builtin) = functions::lookup(&full)
                    && matches!(builtin.kind, Kind::Expressions)
                {
                    return self.try_or_can(&full, f, span);
                }
                let mut args = Vec::with_capacity(f.args.len());
                for a in f.args.iter() {
                    args.push(self.eval(a)?);
                }
                if f.args.expand_final()
                    && let Some(last) = args.pop()
                {
                    match last.unmarked() {
                        Value::List(items) | Value::Set(items) => {
                            args.extend(items.iter().cloned())
                        }
                        Value::Unknown => return Ok(Value::Unknown),
                        _ => {
                            return Err(EvalError::at(
                                "the final argument expansion (...) needs a list",
                                span,
                            ));
                        }
                    }
                }
                let context = CallContext {
                    module_dir: self.scope.module_dir(),
                    home: self.scope.home(),
                    sops_keys: self.scope.sops_keys(),
                    templates: &TemplateFiles,
                };
                functions::call(&full, args, &context)
                    .map_err(|m| EvalError::at(format!("{full}(): {m}"), span))
            }
            Expression::Traversal(t) => {
                // Collect the operators, evaluating index keys.
                if let Expression::Variable(root) = &t.expr {
                    let mut steps = Vec::new();
                    let mut rest = Vec::new();
                    for (i, op) in t.operators.iter().enumerate() {
                        match op.value() {
                            TraversalOperator::GetAttr(a) => {
                                steps.push(Step::Attr(a.value().to_string()))
                            }
                            TraversalOperator::Index(e) => steps.push(Step::Index(self.eval(e)?)),
                            TraversalOperator::LegacyIndex(i) => {
                                steps.push(Step::Index(Value::int(*i.value() as i64)))
                            }
                            _ => {
                                rest = t.operators[i..].iter().map(|o| o.value().clone()).collect();
                                break;
                            }
                        }
                    }
                    let base = self.traverse(root.value().as_str(), &steps, span.clone())?;
                    return self.apply_ops(base, &rest, span);
                }
                let base = self.eval(&t.expr)?;
                let ops: Vec<TraversalOperator> =
                    t.operators.iter().map(|o| o.value().clone()).collect();
                self.apply_ops(base, &ops, span)
            }
            Expression::UnaryOp(u) => {
                let v = self.eval(&u.expr)?;
                if v.is_unknown() {
                    return Ok(Value::Unknown);
                }
                let s = v.is_sensitive();
                let r = match u.operator.value() {
                    UnaryOperator::Neg => Value::Number(Number(
                        -to_number(&v).map_err(|m| EvalError::at(m, span.clone()))?.0,
                    )),
                    UnaryOperator::Not => {
                        Value::Bool(!to_bool(&v).map_err(|m| EvalError::at(m, span.clone()))?)
                    }
                };
                Ok(mark(r, s))
            }
            Expression::BinaryOp(b) => {
                let op = *b.operator.value();
                let l = self.eval(&b.lhs_expr)?;
                // Short-circuit logic on known operands.
                if matches!(op, BinaryOperator::And | BinaryOperator::Or) && !l.is_unknown() {
                    let lb = to_bool(&l).map_err(|m| EvalError::at(m, b.lhs_expr.span()))?;
                    if (op == BinaryOperator::And && !lb) || (op == BinaryOperator::Or && lb) {
                        return Ok(mark(Value::Bool(lb), l.is_sensitive()));
                    }
                }
                let r = self.eval(&b.rhs_expr)?;
                binary(op, &l, &r).map_err(|m| EvalError::at(m, span))
            }
            Expression::ForExpr(f) => self.for_expr(f, span),
        }
    }

    /// `try(...)`: the first argument that evaluates without error;
    /// `can(expr)`: whether it does.
    fn try_or_can(
        &mut self,
        name: &str,
        f: &hcl_edit::expr::FuncCall,
        span: Option<Range<usize>>,
    ) -> R {
        for (i, a) in f.args.iter().enumerate() {
            match self.eval(a) {
                Ok(v) => {
                    return Ok(if name == "can" {
                        if v.is_unknown() {
                            Value::Unknown
                        } else {
                            Value::Bool(true)
                        }
                    } else {
                        v
                    });
                }
                Err(e) => {
                    if name == "can" {
                        return Ok(Value::Bool(false));
                    }
                    if i + 1 == f.args.len() {
                        return Err(EvalError::at(
                            format!(
                                "no expression given to try() succeeded; the last failed with: {}",
                                e.message
                            ),
                            span,
                        ));
                    }
                }
            }
        }
        Err(EvalError::at(
            format!("{name}() needs at least one argument"),
            span,
        ))
    }

    fn traverse(&mut self, root: &str, steps: &[Step], span: Option<Range<usize>>) -> R {
        let (mut v, used) = if let Some((_, v)) = self.locals.iter().rev().find(|(n, _)| n == root)
        {
            (v.clone(), 0)
        } else {
            match self.scope.resolve(root, steps) {
                Ok(Some(x)) => x,
                Ok(None) => {
                    return Err(EvalError::at(
                        format!("reference to undeclared name {root:?}"),
                        span,
                    ));
                }
                Err(m) => return Err(EvalError::at(m, span)),
            }
        };
        for s in &steps[used..] {
            v = step(&v, s).map_err(|m| EvalError::at(m, span.clone()))?;
        }
        Ok(v)
    }

    fn apply_ops(
        &mut self,
        mut v: Value,
        ops: &[TraversalOperator],
        span: Option<Range<usize>>,
    ) -> R {
        let mut i = 0;
        while i < ops.len() {
            match &ops[i] {
                TraversalOperator::GetAttr(a) => {
                    v = step(&v, &Step::Attr(a.value().to_string()))
                        .map_err(|m| EvalError::at(m, span.clone()))?;
                }
                TraversalOperator::Index(e) => {
                    let k = self.eval(e)?;
                    v = step(&v, &Step::Index(k)).map_err(|m| EvalError::at(m, span.clone()))?;
                }
                TraversalOperator::LegacyIndex(n) => {
                    v = step(&v, &Step::Index(Value::int(*n.value() as i64)))
                        .map_err(|m| EvalError::at(m, span.clone()))?;
                }
                TraversalOperator::AttrSplat(_) | TraversalOperator::FullSplat(_) => {
                    let full = matches!(ops[i], TraversalOperator::FullSplat(_));
                    // The splat applies the following operators to each element.
                    let mut j = i + 1;
                    while j < ops.len() {
                        let stop = match &ops[j] {
                            TraversalOperator::GetAttr(_) => false,
                            TraversalOperator::Index(_) | TraversalOperator::LegacyIndex(_) => {
                                !full
                            }
                            _ => true,
                        };
                        if stop {
                            break;
                        }
                        j += 1;
                    }
                    let inner = &ops[i + 1..j];
                    let s = v.is_sensitive();
                    let items = match v.unmarked() {
                        Value::Unknown => return Ok(Value::Unknown),
                        Value::Null => Vec::new(),
                        Value::List(items) | Value::Set(items) => items.clone(),
                        other => vec![other.clone()],
                    };
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        out.push(self.apply_ops(item, inner, span.clone())?);
                    }
                    v = mark(Value::List(out), s);
                    i = j;
                    continue;
                }
            }
            i += 1;
        }
        Ok(v)
    }

    fn template(&mut self, t: &Template, _strip: Option<()>) -> R {
        let mut out = String::new();
        let mut sensitive = false;
        let elems: Vec<&Element> = t.iter().collect();
        for (idx, el) in elems.iter().enumerate() {
            match el {
                Element::Literal(s) => {
                    let mut text: &str = s.value();
                    // Honour ~ strip markers on neighbouring interpolations and directives.
                    if idx > 0
                        && outer_strips(elems[idx - 1]).is_some_and(|(_, close)| close.strip_end())
                    {
                        text = text.trim_start();
                    }
                    if idx + 1 < elems.len()
                        && outer_strips(elems[idx + 1]).is_some_and(|(open, _)| open.strip_start())
                    {
                        text = text.trim_end();
                    }
                    out.push_str(text);
                }
                Element::Interpolation(i) => {
                    let v = self.eval(&i.expr)?;
                    if v.is_unknown() {
                        return Ok(Value::Unknown);
                    }
                    sensitive |= v.contains_sensitive();
                    out.push_str(
                        &value_to_string(&v).map_err(|m| EvalError::at(m, i.expr.span()))?,
                    );
                }
                Element::Directive(d) => match d.as_ref() {
                    Directive::If(ifd) => {
                        let c = self.eval(&ifd.if_expr.cond_expr)?;
                        if c.is_unknown() {
                            return Ok(Value::Unknown);
                        }
                        sensitive |= c.is_sensitive();
                        let b = to_bool(&c)
                            .map_err(|m| EvalError::at(m, ifd.if_expr.cond_expr.span()))?;
                        let part = if b {
                            self.template(&ifd.if_expr.template, None)?
                        } else if let Some(e) = &ifd.else_expr {
                            self.template(&e.template, None)?
                        } else {
                            Value::String(String::new())
                        };
                        match part.unmarked() {
                            Value::String(s) => out.push_str(s),
                            _ => return Ok(Value::Unknown),
                        }
                        sensitive |= part.is_sensitive();
                    }
                    Directive::For(fd) => {
                        let coll = self.eval(&fd.for_expr.collection_expr)?;
                        if coll.is_unknown() {
                            return Ok(Value::Unknown);
                        }
                        sensitive |= coll.is_sensitive();
                        for (k, v) in iterate(&coll)
                            .map_err(|m| EvalError::at(m, fd.for_expr.collection_expr.span()))?
                        {
                            let n = self.locals.len();
                            if let Some(kv) = &fd.for_expr.key_var {
                                self.locals.push((kv.value().to_string(), k));
                            }
                            self.locals
                                .push((fd.for_expr.value_var.value().to_string(), v));
                            let part = self.template(&fd.for_expr.template, None);
                            self.locals.truncate(n);
                            match part?.unmarked() {
                                Value::String(s) => out.push_str(s),
                                _ => return Ok(Value::Unknown),
                            }
                        }
                    }
                },
            }
        }
        Ok(mark(Value::String(out), sensitive))
    }

    fn for_expr(&mut self, f: &hcl_edit::expr::ForExpr, span: Option<Range<usize>>) -> R {
        let coll = self.eval(&f.intro.collection_expr)?;
        if coll.is_unknown() {
            return Ok(Value::Unknown);
        }
        let sensitive = coll.is_sensitive();
        let items = iterate(&coll).map_err(|m| EvalError::at(m, f.intro.collection_expr.span()))?;
        let key_var = f.intro.key_var.as_ref().map(|k| k.value().to_string());
        let value_var = f.intro.value_var.value().to_string();
        let mut list = Vec::new();
        let mut map: BTreeMap<String, Value> = BTreeMap::new();
        let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (k, v) in items {
            let n = self.locals.len();
            if let Some(kv) = &key_var {
                self.locals.push((kv.clone(), k));
            }
            self.locals.push((value_var.clone(), v));
            let result = (|| -> Result<(), EvalError> {
                if let Some(c) = &f.cond {
                    let cv = self.eval(&c.expr)?;
                    if cv.is_unknown() {
                        return Err(EvalError::at("\u{0}unknown", None));
                    }
                    if !to_bool(&cv).map_err(|m| EvalError::at(m, c.expr.span()))? {
                        return Ok(());
                    }
                }
                let val = self.eval(&f.value_expr)?;
                match &f.key_expr {
                    Some(ke) => {
                        let kv = self.eval(ke)?;
                        if kv.is_unknown() {
                            return Err(EvalError::at("\u{0}unknown", None));
                        }
                        let key = value_to_string(&kv).map_err(|m| EvalError::at(m, ke.span()))?;
                        if f.grouping {
                            groups.entry(key).or_default().push(val);
                        } else {
                            match map.entry(key) {
                                std::collections::btree_map::Entry::Occupied(o) => {
                                    return Err(EvalError::at(
                                        format!(
                                            "duplicate object key {:?} in for expression (use ... to group)",
                                            o.key()
                                        ),
                                        ke.span(),
                                    ));
                                }
                                std::collections::btree_map::Entry::Vacant(v) => {
                                    v.insert(val);
                                }
                            }
                        }
                    }
                    None => list.push(val),
                }
                Ok(())
            })();
            self.locals.truncate(n);
            match result {
                Ok(()) => {}
                Err(e) if e.message == "\u{0}unknown" => return Ok(Value::Unknown),
                Err(e) => return Err(e),
            }
        }
        let _ = span;
        let out = if f.key_expr.is_some() {
            if f.grouping {
                Value::Map(
                    groups
                        .into_iter()
                        .map(|(k, v)| (k, Value::List(v)))
                        .collect(),
                )
            } else {
                Value::Map(map)
            }
        } else {
            Value::List(list)
        };
        Ok(mark(out, sensitive))
    }
}

/// Renders `templatefile()` templates: the file's text evaluated as a
/// heredoc template in a scope holding only the given variables.
struct TemplateFiles;

/// The scope of a template file: its variables, by bare name.
struct TemplateScope<'a> {
    vars: BTreeMap<String, Value>,
    module_dir: &'a std::path::Path,
    home: Option<&'a std::path::Path>,
    sops_keys: Option<&'a plumb_secrets::sops::Keyring>,
}

impl Scope for TemplateScope<'_> {
    fn resolve(&self, root: &str, _steps: &[Step]) -> Result<Option<(Value, usize)>, String> {
        Ok(self.vars.get(root).map(|v| (v.clone(), 0)))
    }
    fn module_dir(&self) -> &std::path::Path {
        self.module_dir
    }
    fn home(&self) -> Option<&std::path::Path> {
        self.home
    }
    fn sops_keys(&self) -> Option<&plumb_secrets::sops::Keyring> {
        self.sops_keys
    }
}

impl TemplateRenderer for TemplateFiles {
    fn render(
        &self,
        text: &str,
        vars: BTreeMap<String, Value>,
        context: &CallContext<'_>,
    ) -> Result<Value, FunctionError> {
        let wrapped = format!("<<PLUMBTEMPLATEEOF\n{text}\nPLUMBTEMPLATEEOF\n");
        let expr = hcl_edit::parser::parse_expr(&wrapped)
            .map_err(|e| format!("template: {}", e.message()))?;
        let scope = TemplateScope {
            vars,
            module_dir: context.module_dir,
            home: context.home,
            sops_keys: context.sops_keys,
        };
        let v = Evaluator::new(&scope, &wrapped)
            .eval(&expr)
            .map_err(|e| e.message)?;
        // The heredoc adds a trailing newline the file may not have.
        Ok(match v {
            Value::String(t) if !text.ends_with('\n') => {
                Value::String(t.strip_suffix('\n').unwrap_or(&t).to_string())
            }
            other => other,
        })
    }
}

/// The strip markers on the outside of a template element: the one that
/// opens it (an interpolation's own, or a directive's first tag) and the one
/// that closes it (an interpolation's own, or a directive's end tag). A
/// literal has none.
fn outer_strips(el: &Element) -> Option<(Strip, Strip)> {
    match el {
        Element::Interpolation(i) => Some((i.strip, i.strip)),
        Element::Directive(d) => match d.as_ref() {
            Directive::If(i) => Some((i.if_expr.strip, i.endif_expr.strip)),
            Directive::For(f) => Some((f.for_expr.strip, f.endfor_expr.strip)),
        },
        Element::Literal(_) => None,
    }
}

fn dedent(text: &str, n: usize) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let strip = line.chars().take(n).take_while(|c| *c == ' ').count();
        out.push_str(&line[strip..]);
    }
    out
}

/// Applies one traversal step.
pub fn step(v: &Value, s: &Step) -> Result<Value, String> {
    let sensitive = v.is_sensitive();
    let r = match (v.unmarked(), s) {
        (Value::Unknown, _) => Value::Unknown,
        (Value::Null, Step::Attr(a)) => {
            return Err(format!("attempt to get attribute {a:?} from a null value"));
        }
        (Value::Null, Step::Index(_)) => return Err("attempt to index a null value".into()),
        (Value::Map(m), Step::Attr(a)) => m
            .get(a)
            .cloned()
            .ok_or_else(|| format!("this object does not have an attribute named {a:?}"))?,
        (Value::Map(m), Step::Index(k)) => {
            if k.is_unknown() {
                return Ok(Value::Unknown);
            }
            let key = value_to_string(k)?;
            m.get(&key).cloned().ok_or_else(|| {
                format!("the given key {key:?} does not identify an element in this collection")
            })?
        }
        (Value::List(items), Step::Index(k)) => {
            if k.is_unknown() {
                return Ok(Value::Unknown);
            }
            let n = to_number(k)?;
            let i = n
                .to_i64()
                .ok_or_else(|| format!("index {n} is not a whole number"))?;
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "index {i} is out of range for a list of {} elements",
                        items.len()
                    )
                })?
        }
        (Value::Set(_), Step::Index(_)) => {
            return Err(
                "elements of a set are identified only by their value; use tolist() to index it"
                    .into(),
            );
        }
        (other, Step::Attr(a)) => {
            return Err(format!(
                "cannot get attribute {a:?} from a {}",
                other.kind()
            ));
        }
        (other, Step::Index(_)) => return Err(format!("cannot index a {}", other.kind())),
    };
    Ok(mark(r, sensitive))
}

fn binary(op: BinaryOperator, l: &Value, r: &Value) -> Result<Value, String> {
    use BinaryOperator as B;
    let sensitive = l.is_sensitive() || r.is_sensitive();
    if matches!(op, B::Eq | B::NotEq) {
        if !l.is_wholly_known() || !r.is_wholly_known() {
            return Ok(Value::Unknown);
        }
        let eq = l.same(r) || numeric_eq(l, r);
        return Ok(mark(
            Value::Bool(if op == B::Eq { eq } else { !eq }),
            sensitive,
        ));
    }
    if l.is_unknown() || r.is_unknown() {
        return Ok(Value::Unknown);
    }
    let out = match op {
        B::And => Value::Bool(to_bool(l)? && to_bool(r)?),
        B::Or => Value::Bool(to_bool(l)? || to_bool(r)?),
        B::Plus | B::Minus | B::Mul | B::Div | B::Mod => {
            let a = to_number(l)?.0;
            let b = to_number(r)?.0;
            use bigdecimal_ops::*;
            Value::Number(Number(match op {
                B::Plus => a + b,
                B::Minus => a - b,
                B::Mul => a * b,
                B::Div => {
                    if is_zero(&b) {
                        return Err("division by zero".into());
                    }
                    divide(&a, &b)
                }
                _ => {
                    if is_zero(&b) {
                        return Err("modulo by zero".into());
                    }
                    a % b
                }
            }))
        }
        B::Less | B::LessEq | B::Greater | B::GreaterEq => {
            let a = to_number(l)?;
            let b = to_number(r)?;
            Value::Bool(match op {
                B::Less => a < b,
                B::LessEq => a <= b,
                B::Greater => a > b,
                _ => a >= b,
            })
        }
        B::Eq | B::NotEq => unreachable_bool(),
    };
    Ok(mark(out, sensitive))
}

fn unreachable_bool() -> Value {
    Value::Bool(false)
}

fn numeric_eq(l: &Value, r: &Value) -> bool {
    matches!((l.unmarked(), r.unmarked()), (Value::Number(a), Value::Number(b)) if a.0 == b.0)
}

/// Arithmetic helpers on arbitrary-precision numbers.
pub(crate) mod bigdecimal_ops {
    use plumb_tfplugin::value::BigDecimal;

    pub fn is_zero(d: &BigDecimal) -> bool {
        d == &BigDecimal::from(0)
    }

    pub fn divide(a: &BigDecimal, b: &BigDecimal) -> BigDecimal {
        // 40 significant digits: more than float64, enough for configuration.
        (a / b).with_prec(40).normalized()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vars(BTreeMap<String, Value>);
    impl Scope for Vars {
        fn resolve(&self, root: &str, steps: &[Step]) -> Result<Option<(Value, usize)>, String> {
            match (root, steps.first()) {
                ("var", Some(Step::Attr(a))) => Ok(self.0.get(a).map(|v| (v.clone(), 1))),
                _ => Ok(None),
            }
        }
        fn module_dir(&self) -> &std::path::Path {
            std::path::Path::new(".")
        }
        fn home(&self) -> Option<&std::path::Path> {
            None
        }
    }

    fn eval(src: &str, vars: &[(&str, Value)]) -> Value {
        let scope = Vars(
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
        let expr = hcl_edit::parser::parse_expr(src).unwrap();
        Evaluator::new(&scope, src).eval(&expr).unwrap()
    }

    fn list(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::string(*s)).collect())
    }

    #[test]
    fn strip_markers_trim_the_literal_on_their_side() {
        assert_eq!(eval("\"a ${~ \"b\" ~} c\"", &[]), Value::string("abc"));
        assert_eq!(eval("\"a ${~ \"b\" } c\"", &[]), Value::string("ab c"));
        assert_eq!(eval("\"a ${ \"b\" ~} c\"", &[]), Value::string("a bc"));
        // A directive's first tag strips before it, its end tag after it.
        assert_eq!(
            eval("\"x %{~ if true }y%{ endif ~} z\"", &[]),
            Value::string("xyz")
        );
        assert_eq!(
            eval("\"x %{ if true ~}y%{~ endif } z\"", &[]),
            Value::string("x y z")
        );
        assert_eq!(
            eval("\"x %{~ for n in [1] }y%{ endfor ~} z\"", &[]),
            Value::string("xyz")
        );
    }

    #[test]
    fn arithmetic_keeps_precision() {
        assert_eq!(
            eval("0.1 + 0.2", &[]),
            Value::Number("0.3".parse().unwrap())
        );
        assert_eq!(
            eval("12345678901234567890123 * 10", &[]),
            Value::Number("123456789012345678901230".parse().unwrap())
        );
        assert_eq!(eval("7 % 3 == 1 && !false", &[]), Value::Bool(true));
    }

    #[test]
    fn for_expressions_splats_and_templates() {
        let names = list(&["a", "b"]);
        assert_eq!(
            eval(
                "[for n in var.names : upper(n)]",
                &[("names", names.clone())]
            ),
            list(&["A", "B"])
        );
        assert_eq!(
            eval(
                "{for i, n in var.names : n => i if n != \"b\"}",
                &[("names", names.clone())]
            ),
            Value::Map(BTreeMap::from([("a".to_string(), Value::int(0))]))
        );
        let objs = Value::List(vec![
            Value::Map(BTreeMap::from([("id".to_string(), Value::string("x"))])),
            Value::Map(BTreeMap::from([("id".to_string(), Value::string("y"))])),
        ]);
        assert_eq!(eval("var.objs[*].id", &[("objs", objs)]), list(&["x", "y"]));
        assert_eq!(
            eval(
                "\"%{ for n in var.names }${n};%{ endfor }%{ if true }!%{ endif }\"",
                &[("names", names)]
            ),
            Value::string("a;b;!")
        );
        assert_eq!(eval("true ? \"y\" : \"n\"", &[]), Value::string("y"));
    }

    #[test]
    fn unknowns_and_marks_propagate() {
        assert_eq!(
            eval("\"x-${var.u}\"", &[("u", Value::Unknown)]),
            Value::Unknown
        );
        assert_eq!(eval("var.u + 1", &[("u", Value::Unknown)]), Value::Unknown);
        let s = eval(
            "\"p=${var.s}\"",
            &[("s", Value::string("secret").mark_sensitive())],
        );
        assert!(s.is_sensitive());
        assert_eq!(s.to_string(), "(sensitive value)");
        assert!(
            eval(
                "length(var.s)",
                &[("s", Value::string("abc").mark_sensitive())]
            )
            .is_sensitive()
        );
    }

    #[test]
    fn errors_carry_spans() {
        let scope = Vars(BTreeMap::new());
        let src = "1 + \"x\"";
        let expr = hcl_edit::parser::parse_expr(src).unwrap();
        let err = Evaluator::new(&scope, src).eval(&expr).unwrap_err();
        assert!(
            err.message.contains("a number is required"),
            "{}",
            err.message
        );
        assert!(err.span.is_some());
    }
}
