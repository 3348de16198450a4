//! Reading a stack: every `.tf` file of a directory (and of the local modules
//! it calls), parsed with hcl-edit into the blocks of [`ModuleConfig`].
//!
//! Nothing is evaluated here. Every problem in every file is collected
//! before any is reported, so one run names them all, and a module that
//! calls itself is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Body, Structure};

use crate::config::{
    BackendBlock, EncryptionBlock, ImportBlock, Lifecycle, Mode, ModuleCall, ModuleConfig,
    MovedBlock, Origin, OutputBlock, ProviderBlock, ProviderRequirement, Reference, ResourceBlock,
    VariableBlock, expr_text, label_text, normalize_source,
};
use crate::diag::{ConfigError, Diag, SourceFile};
use crate::references::references;

fn parse_depends_on(e: &Expression, origin: &Origin, errs: &mut Vec<Diag>) -> Vec<Reference> {
    let mut out = Vec::new();
    match e {
        Expression::Array(a) => {
            for item in a.iter() {
                let refs = references(item);
                if refs.is_empty() {
                    errs.push(origin.diag_at(
                        item.span(),
                        "depends_on entries must be references to resources or modules",
                    ));
                }
                out.extend(refs);
            }
        }
        other => errs.push(origin.diag_at(other.span(), "depends_on must be a list of references")),
    }
    out
}

fn bool_attr(body: &Body, name: &str, origin: &Origin, errs: &mut Vec<Diag>) -> bool {
    match body.get_attribute(name).map(|a| &a.value) {
        None => false,
        Some(Expression::Bool(b)) => *b.value(),
        Some(other) => {
            errs.push(origin.diag_at(
                other.span(),
                format!("{name} must be true or false (a literal)"),
            ));
            false
        }
    }
}

fn string_attr(file: &Arc<SourceFile>, body: &Body, name: &str) -> Option<String> {
    body.get_attribute(name).map(|a| match &a.value {
        Expression::String(s) => s.value().to_string(),
        other => expr_text(file, other).trim_matches('"').to_string(),
    })
}

/// Parses `text`, read from `path`, as an HCL body; a syntax error is a
/// diagnostic at its position.
pub(crate) fn parse_source(path: PathBuf, text: String) -> Result<(Arc<SourceFile>, Body), Diag> {
    let file = Arc::new(SourceFile { path, text });
    match hcl_edit::parser::parse_body(&file.text) {
        Ok(body) => Ok((file, body)),
        Err(e) => {
            let offset = e.location().offset();
            Err(Diag::new(format!("syntax error: {}", e.message())).at(file, Some(offset..offset)))
        }
    }
}

/// Loads the module in `dir` and every local module it calls.
pub fn load(dir: &Path) -> Result<ModuleConfig, ConfigError> {
    let mut stack = Vec::new();
    load_inner(dir, &mut stack)
}

fn load_inner(dir: &Path, stack: &mut Vec<PathBuf>) -> Result<ModuleConfig, ConfigError> {
    let canon = dir.canonicalize().map_err(|e| {
        ConfigError::from(Diag::new(format!(
            "cannot read directory {}: {e}",
            dir.display()
        )))
    })?;
    if stack.contains(&canon) {
        return Err(Diag::new(format!("module {} calls itself", dir.display())).into());
    }
    stack.push(canon);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            ConfigError::from(Diag::new(format!(
                "cannot read directory {}: {e}",
                dir.display()
            )))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tf") && p.is_file())
        .collect();
    paths.sort();
    let mut cfg = ModuleConfig {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    let mut errs = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::from(Diag::new(format!("cannot read {}: {e}", path.display())))
        })?;
        let (file, body) = match parse_source(path.clone(), text) {
            Ok(parsed) => parsed,
            Err(d) => {
                errs.push(d.hint("fix the syntax at the marked position; nothing was changed"));
                continue;
            }
        };
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => errs.push(
                    Diag::new(format!(
                        "unexpected attribute {:?} at the top level",
                        a.key.value().as_str()
                    ))
                    .at(file.clone(), a.span()),
                ),
                Structure::Block(b) => read_block(&file, b, &mut cfg, &mut errs, stack),
            }
        }
    }
    stack.pop();
    if errs.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError::new(errs))
    }
}

fn read_block(
    file: &Arc<SourceFile>,
    b: &Block,
    cfg: &mut ModuleConfig,
    errs: &mut Vec<Diag>,
    stack: &mut Vec<PathBuf>,
) {
    let origin = Origin {
        file: file.clone(),
        span: b.span(),
    };
    let labels: Vec<String> = b.labels.iter().map(label_text).collect();
    let kind = b.ident.value().as_str();
    let want = |n: usize, errs: &mut Vec<Diag>| -> bool {
        if labels.len() != n {
            errs.push(origin.diag(format!(
                "a {kind} block needs {n} label(s), found {}",
                labels.len()
            )));
            false
        } else {
            true
        }
    };
    match kind {
        "terraform" => {
            for inner in b.body.blocks() {
                match inner.ident.value().as_str() {
                    "required_providers" => {
                        for a in inner.body.attributes() {
                            let name = a.key.value().to_string();
                            let (source, version) = match &a.value {
                                Expression::Object(o) => {
                                    let mut source = None;
                                    let mut version = None;
                                    for (k, v) in o.iter() {
                                        let key = match k {
                                            hcl_edit::expr::ObjectKey::Ident(i) => i.value().to_string(),
                                            hcl_edit::expr::ObjectKey::Expression(e) => expr_text(file, e).trim_matches('"').to_string(),
                                        };
                                        let val = v.expr().as_str().map(str::to_string);
                                        match key.as_str() {
                                            "source" => source = val,
                                            "version" => version = val,
                                            _ => {}
                                        }
                                    }
                                    (source.unwrap_or_else(|| format!("hashicorp/{name}")), version)
                                }
                                Expression::String(s) => (format!("hashicorp/{name}"), Some(s.value().to_string())),
                                other => {
                                    errs.push(origin.diag_at(other.span(), "required_providers entries are objects with source and version"));
                                    continue;
                                }
                            };
                            cfg.required_providers.insert(
                                name,
                                ProviderRequirement {
                                    source: normalize_source(&source),
                                    version,
                                },
                            );
                        }
                    }
                    "backend" => {
                        let kind = inner.labels.first().map(label_text).unwrap_or_default();
                        cfg.backend = Some(BackendBlock {
                            kind,
                            body: inner.body.clone(),
                            origin: Origin {
                                file: file.clone(),
                                span: inner.span(),
                            },
                        });
                    }
                    "encryption" => {
                        cfg.encryption = Some(EncryptionBlock {
                            body: inner.body.clone(),
                            origin: Origin {
                                file: file.clone(),
                                span: inner.span(),
                            },
                        });
                    }
                    _ => {}
                }
            }
        }
        "provider" => {
            if !want(1, errs) {
                return;
            }
            let alias = string_attr(file, &b.body, "alias");
            let mut body = b.body.clone();
            body.remove_attribute("alias");
            body.remove_attribute("version");
            cfg.providers.push(ProviderBlock {
                name: labels[0].clone(),
                alias,
                body,
                origin,
            });
        }
        "variable" => {
            if !want(1, errs) {
                return;
            }
            let mut validations = Vec::new();
            for v in b.body.blocks().filter(|x| x.ident.value().as_str() == "validation") {
                match (v.body.get_attribute("condition"), v.body.get_attribute("error_message")) {
                    (Some(c), Some(m)) => validations.push((
                        c.value.clone(),
                        m.value.clone(),
                        Origin {
                            file: file.clone(),
                            span: c.value.span(),
                        },
                    )),
                    _ => errs.push(origin.diag("a validation block needs condition and error_message")),
                }
            }
            let nullable = match b.body.get_attribute("nullable").map(|a| &a.value) {
                Some(Expression::Bool(x)) => *x.value(),
                _ => true,
            };
            cfg.variables.insert(
                labels[0].clone(),
                VariableBlock {
                    ty: b.body.get_attribute("type").map(|a| a.value.clone()),
                    default: b.body.get_attribute("default").map(|a| a.value.clone()),
                    sensitive: bool_attr(&b.body, "sensitive", &origin, errs),
                    nullable,
                    validations,
                    origin,
                },
            );
        }
        "locals" => {
            for a in b.body.attributes() {
                cfg.locals.insert(
                    a.key.value().to_string(),
                    (
                        a.value.clone(),
                        Origin {
                            file: file.clone(),
                            span: a.span(),
                        },
                    ),
                );
            }
        }
        "resource" | "data" => {
            if !want(2, errs) {
                return;
            }
            let mode = if kind == "resource" { Mode::Managed } else { Mode::Data };
            let mut body = b.body.clone();
            let count = body.remove_attribute("count").map(|a| a.value);
            let for_each = body.remove_attribute("for_each").map(|a| a.value);
            if count.is_some() && for_each.is_some() {
                errs.push(origin.diag("count and for_each cannot both be set"));
            }
            let depends_on = body
                .remove_attribute("depends_on")
                .map(|a| parse_depends_on(&a.value, &origin, errs))
                .unwrap_or_default();
            let provider = body.remove_attribute("provider").map(|a| {
                let text = expr_text(file, &a.value);
                match text.split_once('.') {
                    Some((n, al)) => (n.to_string(), Some(al.to_string())),
                    None => (text, None),
                }
            });
            let mut lifecycle = Lifecycle::default();
            let lc_blocks: Vec<Block> = body.blocks().filter(|x| x.ident.value().as_str() == "lifecycle").cloned().collect();
            for lc in &lc_blocks {
                lifecycle.create_before_destroy = bool_attr(&lc.body, "create_before_destroy", &origin, errs);
                lifecycle.prevent_destroy = bool_attr(&lc.body, "prevent_destroy", &origin, errs);
                if let Some(ic) = lc.body.get_attribute("ignore_changes") {
                    match &ic.value {
                        Expression::Array(a) => {
                            lifecycle.ignore_changes = a.iter().map(|e| expr_text(file, e)).collect();
                        }
                        Expression::Variable(v) if v.value().as_str() == "all" => {
                            lifecycle.ignore_changes = vec!["*".into()];
                        }
                        other => errs.push(origin.diag_at(other.span(), "ignore_changes must be a list of attribute names or all")),
                    }
                }
            }
            body.remove_blocks("lifecycle");
            cfg.resources.push(ResourceBlock {
                mode,
                ty: labels[0].clone(),
                name: labels[1].clone(),
                provider,
                count,
                for_each,
                depends_on,
                lifecycle,
                body,
                origin,
            });
        }
        "output" => {
            if !want(1, errs) {
                return;
            }
            let Some(value) = b.body.get_attribute("value").map(|a| a.value.clone()) else {
                errs.push(origin.diag("an output needs a value"));
                return;
            };
            let depends_on = b
                .body
                .get_attribute("depends_on")
                .map(|a| parse_depends_on(&a.value, &origin, errs))
                .unwrap_or_default();
            cfg.outputs.insert(
                labels[0].clone(),
                OutputBlock {
                    value,
                    sensitive: bool_attr(&b.body, "sensitive", &origin, errs),
                    depends_on,
                    origin,
                },
            );
        }
        "module" => {
            if !want(1, errs) {
                return;
            }
            let Some(source) = string_attr(file, &b.body, "source") else {
                errs.push(origin.diag("a module block needs a source"));
                return;
            };
            if !(source.starts_with("./") || source.starts_with("../")) {
                errs.push(
                    origin
                        .diag(format!("module source {source:?} is not a local path"))
                        .hint("plumb loads local modules (./ or ../); copy the module next to the stack"),
                );
                return;
            }
            let child_dir = cfg.dir.join(&source);
            let child = match load_inner(&child_dir, stack) {
                Ok(c) => c,
                Err(e) => {
                    errs.extend(e.diags);
                    return;
                }
            };
            let mut inputs = BTreeMap::new();
            let mut depends_on = Vec::new();
            let (mut count, mut for_each) = (None, None);
            for a in b.body.attributes() {
                let k = a.key.value().to_string();
                match k.as_str() {
                    "source" | "version" | "providers" => {}
                    "depends_on" => depends_on = parse_depends_on(&a.value, &origin, errs),
                    "count" => count = Some(a.value.clone()),
                    "for_each" => for_each = Some(a.value.clone()),
                    _ => {
                        inputs.insert(k, a.value.clone());
                    }
                }
            }
            if count.is_some() && for_each.is_some() {
                errs.push(origin.diag("count and for_each cannot both be set"));
                return;
            }
            cfg.modules.insert(
                labels[0].clone(),
                ModuleCall {
                    source,
                    inputs,
                    config: Arc::new(child),
                    count,
                    for_each,
                    depends_on,
                    origin,
                },
            );
        }
        "moved" => match (b.body.get_attribute("from"), b.body.get_attribute("to")) {
            (Some(f), Some(t)) => cfg.moved.push(MovedBlock {
                from: expr_text(file, &f.value),
                to: expr_text(file, &t.value),
                origin,
            }),
            _ => errs.push(origin.diag("a moved block needs from and to")),
        },
        "import" => match (b.body.get_attribute("to"), b.body.get_attribute("id")) {
            (Some(t), Some(i)) => cfg.imports.push(ImportBlock {
                to: expr_text(file, &t.value),
                id: i.value.clone(),
                origin,
            }),
            _ => errs.push(origin.diag("an import block needs to and id")),
        },
        "check" | "removed" => {}
        other => errs.push(
            origin
                .diag(format!("unsupported block type {other:?}"))
                .hint("top-level blocks are terraform, provider, variable, locals, resource, data, output, module, moved, import"),
        ),
    }
}
