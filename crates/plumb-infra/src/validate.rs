//! `validate`: every resource, data source and provider block checked
//! against its provider's schema, without evaluating anything.

use hcl_edit::Span;
use hcl_edit::structure::{Body, Structure};
use plumb_tfplugin::Block;

use crate::config::{Mode, ModuleConfig, Origin};
use crate::diag::Diag;
use crate::providers::ProviderCatalog;

fn check_body(body: &Body, block: &Block, origin: &Origin, what: &str, out: &mut Vec<Diag>) {
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => {
                let name = a.key.value().as_str();
                match block.attributes.get(name) {
                    None => out.push(
                        origin
                            .diag_at(
                                a.span(),
                                format!("an argument named {name:?} is not expected here"),
                            )
                            .hint(format!(
                                "{what} accepts: {}",
                                block
                                    .attributes
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                    ),
                    Some(x) if x.computed && !x.optional && !x.required => {
                        out.push(origin.diag_at(
                            a.span(),
                            format!("{name:?} is set by the provider and cannot be configured"),
                        ))
                    }
                    _ => {}
                }
            }
            Structure::Block(b) => {
                let ident = b.ident.value().as_str();
                if ident == "dynamic" {
                    continue;
                }
                match block.block_types.get(ident) {
                    Some(nb) => check_body(&b.body, &nb.block, origin, ident, out),
                    None => out.push(origin.diag_at(
                        b.span(),
                        format!("blocks of type {ident:?} are not expected here"),
                    )),
                }
            }
        }
    }
    for (k, a) in &block.attributes {
        if a.required && !body.has_attribute(k) {
            out.push(origin.diag(format!(
                "the argument {k:?} is required, but no definition was found"
            )));
        }
    }
}

/// Checks the whole configuration; returns every problem found.
pub async fn check(root: &ModuleConfig, catalog: &ProviderCatalog) -> Vec<Diag> {
    let mut out = Vec::new();
    let mut stack = vec![root];
    let mut started: std::collections::BTreeMap<String, plumb_tfplugin::ProviderSchema> =
        std::collections::BTreeMap::new();
    while let Some(m) = stack.pop() {
        for r in &m.resources {
            let local = r.provider_name();
            if !started.contains_key(&local) {
                match catalog.start(root, &local).await {
                    Ok(p) => {
                        started.insert(local.clone(), p.schema().clone());
                        p.shutdown().await;
                    }
                    Err(d) => {
                        out.push(d.at(r.origin.file.clone(), r.origin.span.clone()));
                        continue;
                    }
                }
            }
            let Some(schema) = started.get(&local) else {
                continue;
            };
            let s = match r.mode {
                Mode::Managed => schema.resources.get(&r.ty),
                Mode::Data => schema.data_sources.get(&r.ty),
            };
            match s {
                Some(s) => check_body(&r.body, &s.block, &r.origin, &r.address(), &mut out),
                None => out.push(r.origin.diag(format!(
                    "the provider has no {} type {:?}",
                    if r.mode == Mode::Data {
                        "data source"
                    } else {
                        "resource"
                    },
                    r.ty
                ))),
            }
        }
        for c in m.modules.values() {
            stack.push(&c.config);
        }
    }
    out
}
