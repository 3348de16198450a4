//! Custom health scripts on the command line: the flags `plumb
//! sync|diff|status|agent` share (`--health-scripts`, `--argocd-cm`), and
//! `plumb health FILE`, which shows the health plumb gives an object, for
//! writing and testing scripts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use miette::{Diagnostic, IntoDiagnostic};
use plumb_health::{Assessment, HealthScripts, Limits, LoadError, ScriptSet, Source};
use plumb_pipeline::{Clusters, ConfigMapRef, HealthSource};
use serde_json::{Value, json};

use crate::gitops::Output;

/// Where custom health scripts come from.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Lua health scripts (repeatable): a directory laid out as Argo CD's
    /// resource_customizations (GROUP/KIND/health.lua), or an argocd-cm
    /// ConfigMap manifest with resource.customizations.health.GROUP_KIND keys.
    #[arg(long = "health-scripts", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also read Argo CD's ConfigMap for health scripts from the cluster plumb
    /// runs in: NAMESPACE (its argocd-cm) or NAMESPACE/NAME. Its scripts come first.
    #[arg(long = "argocd-cm", value_name = "NAMESPACE[/NAME]", value_parser = ConfigMapRef::parse)]
    pub configmap: Option<ConfigMapRef>,
}

/// Health scripts that cannot be used.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{0}")]
#[diagnostic(help(
    "give a directory laid out as Argo CD's resource_customizations (GROUP/KIND/health.lua) or an argocd-cm ConfigMap manifest; see docs/HEALTH.md"
))]
pub struct ScriptsError(#[from] LoadError);

/// The script sets of `paths`, in order.
pub fn load(paths: &[PathBuf]) -> Result<Vec<ScriptSet>, ScriptsError> {
    paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                ScriptSet::from_directory(p)
            } else {
                ScriptSet::from_configmap_file(p)
            }
            .map_err(ScriptsError)
        })
        .collect()
}

/// The health source the flags describe; the ConfigMap, if any, is read
/// through `clusters`.
pub fn source(args: &HealthArgs, clusters: &Clusters) -> Result<HealthSource, ScriptsError> {
    let files = HealthSource::new(load(&args.paths)?, Limits::default());
    Ok(match &args.configmap {
        Some(c) => files.with_configmap(c.clone(), clusters.clone()),
        None => files,
    })
}

/// `plumb health` arguments.
#[derive(Debug, Args)]
pub struct HealthCommandArgs {
    /// The object(s) to assess: a YAML or JSON file, as `kubectl get -o yaml` prints them.
    #[arg(value_name = "FILE.yaml")]
    file: PathBuf,
    /// Assess every object with this Lua script, whatever its kind.
    #[arg(long, value_name = "LUA", conflicts_with = "paths")]
    script: Option<PathBuf>,
    /// Lua health scripts found by kind (repeatable): a resource_customizations
    /// directory or an argocd-cm manifest.
    #[arg(long = "health-scripts", value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t)]
    output: Output,
}

/// Run `plumb health`.
pub async fn health(args: HealthCommandArgs) -> miette::Result<ExitCode> {
    let sets = match &args.script {
        Some(path) => vec![script_file(path)?],
        None => load(&args.paths)?,
    };
    let scripts = HealthScripts::new(sets, Limits::default());
    let objects = objects(&args.file)?;
    let mut out = Vec::new();
    for obj in &objects {
        let a = scripts.assess_with_source(obj).await;
        for line in &a.printed {
            eprintln!("print: {line}");
        }
        if args.output == Output::Text {
            print_text(obj, &a);
        }
        out.push(as_json(obj, &a));
    }
    if args.output == Output::Json {
        let value = if out.len() == 1 {
            out.remove(0)
        } else {
            Value::Array(out)
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&value).into_diagnostic()?
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn script_file(path: &Path) -> miette::Result<ScriptSet> {
    let code = std::fs::read_to_string(path)
        .map_err(|e| miette::miette!("cannot read {}: {e}", path.display()))?;
    Ok(ScriptSet::for_every_kind(&path.display().to_string(), &code).map_err(ScriptsError)?)
}

fn objects(file: &Path) -> miette::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| miette::miette!("cannot read {}: {e}", file.display()))?;
    let docs = plumb_render::yaml::parse_documents(&text, &file.display().to_string())
        .map_err(|e| miette::miette!("{e}"))?;
    let mut objects = Vec::new();
    for d in docs {
        // `kubectl get -o yaml` of several objects prints a List.
        match d.value.get("items").and_then(Value::as_array) {
            Some(items) if d.value.get("kind").and_then(Value::as_str) == Some("List") => {
                objects.extend(items.iter().cloned())
            }
            _ => objects.push(d.value),
        }
    }
    if objects.is_empty() {
        return Err(miette::miette!("{} holds no object", file.display()));
    }
    Ok(objects)
}

fn describe(obj: &Value) -> (String, String) {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
    let group = s("/apiVersion")
        .split_once('/')
        .map(|(g, _)| g)
        .unwrap_or("");
    let kind = plumb_health::group_kind_key(group, s("/kind"));
    let name = match s("/metadata/namespace") {
        "" => s("/metadata/name").to_string(),
        ns => format!("{ns}/{}", s("/metadata/name")),
    };
    (kind, name)
}

fn decided_by(source: &Source) -> String {
    match source {
        Source::Deletion => "deletion (the object is being deleted)".into(),
        Source::Script(origin) => origin.clone(),
        Source::BuiltIn => "plumb's built-in rules".into(),
    }
}

fn print_text(obj: &Value, a: &Assessment) {
    let (kind, name) = describe(obj);
    match &a.health {
        Some(h) => println!("{kind} {name}: {}", h.status),
        None => println!("{kind} {name}: no health (counts as Healthy)"),
    }
    if let Some(h) = &a.health
        && !h.message.is_empty()
    {
        println!("  message:    {}", h.message);
    }
    println!("  decided by: {}", decided_by(&a.source));
}

fn as_json(obj: &Value, a: &Assessment) -> Value {
    let (kind, name) = describe(obj);
    let (source, script) = match &a.source {
        Source::Deletion => ("deletion", None),
        Source::Script(origin) => ("script", Some(origin.clone())),
        Source::BuiltIn => ("built-in", None),
    };
    json!({
        "object": format!("{kind} {name}"),
        "status": a.health.as_ref().map(|h| h.status.to_string()),
        "message": a.health.as_ref().map(|h| h.message.clone()).unwrap_or_default(),
        "source": source,
        "script": script,
        "printed": a.printed,
    })
}
