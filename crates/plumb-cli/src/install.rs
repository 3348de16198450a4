//! `plumb install`: the Application, AppProject and ApplicationSet CRDs, a
//! namespace, RBAC and the agent's Deployment, applied to the current
//! cluster (or printed with `--print`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use miette::{IntoDiagnostic, WrapErr};
use plumb_agent::install::{InstallOptions, MANAGED_BY, manifests};
use plumb_model::application::{Destination, IN_CLUSTER_SERVER};

/// The field manager of `plumb install`'s applies.
const FIELD_MANAGER: &str = "plumb-install";

/// `plumb install` arguments.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Namespace of the agent and of the Application objects it watches.
    #[arg(long, default_value = "argocd")]
    namespace: String,
    /// plumb's container image.
    #[arg(long, default_value = concat!("ghcr.io/plumb-dev/plumb:v", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// Agent replicas.
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Let the agent write only in these namespaces (repeatable; it still
    /// reads everywhere). Default: everywhere, as Argo CD.
    #[arg(long = "managed-namespace", value_name = "NS")]
    managed_namespaces: Vec<String>,
    /// Print the manifests (YAML) instead of applying them.
    #[arg(long)]
    print: bool,
    /// Kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
}

/// Run `plumb install`.
pub async fn install(args: InstallArgs) -> miette::Result<ExitCode> {
    let options = InstallOptions {
        namespace: args.namespace.clone(),
        image: args.image.clone(),
        replicas: args.replicas.max(1),
        managed_namespaces: args.managed_namespaces.clone(),
    };
    let objects = manifests(&options);
    if args.print {
        let mut out = String::new();
        for o in &objects {
            out.push_str("---\n");
            out.push_str(
                &serde_saphyr::to_string(o)
                    .into_diagnostic()
                    .wrap_err("cannot print the manifests")?,
            );
        }
        print!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    let home = Destination {
        server: Some(IN_CLUSTER_SERVER.to_string()),
        ..Default::default()
    };
    let (config, server) = plumb_kube::config_for(&home, args.kubeconfig.as_deref())
        .await
        .map_err(|e| miette::miette!("{e}"))?;
    let client = kube::Client::try_from(config).into_diagnostic()?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut installed_crds = Vec::new();
    for object in &objects {
        let kind = object["kind"].as_str().unwrap_or("");
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let namespace = object["metadata"]["namespace"].as_str();
        let (group, version) = match object["apiVersion"].as_str().unwrap_or("").split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (
                String::new(),
                object["apiVersion"].as_str().unwrap_or("").to_string(),
            ),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        let (resource, caps) = pinned_kind(&client, &gvk)
            .await
            .map_err(|e| miette::miette!("the cluster at {server} does not serve {kind}: {e}"))?;
        let api: Api<DynamicObject> = match (caps.scope, namespace) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(client.clone(), ns, &resource)
            }
            _ => Api::all_with(client.clone(), &resource),
        };
        if kind == "CustomResourceDefinition" {
            // Argo CD's own CRDs stay: plumb reads the same objects.
            if let Some(existing) = api.get_opt(name).await.into_diagnostic()? {
                let ours = existing
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(MANAGED_BY.0))
                    .is_some_and(|v| v == MANAGED_BY.1);
                if !ours {
                    println!(
                        "customresourcedefinition/{name} kept (installed by someone else, e.g. Argo CD)"
                    );
                    continue;
                }
            }
            installed_crds.push(name.to_string());
        }
        api.patch(name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| miette::miette!("cannot apply {kind}/{name}: {e}"))?;
        let shown = match namespace {
            Some(ns) => format!("{}/{name} in {ns}", kind.to_ascii_lowercase()),
            None => format!("{}/{name}", kind.to_ascii_lowercase()),
        };
        println!("{shown} applied");
    }
    wait_established(&client, &installed_crds).await?;
    Ok(ExitCode::SUCCESS)
}

/// Wait until each CRD of `names` is Established (so `kubectl get
/// applications` works when the command returns).
async fn wait_established(client: &kube::Client, names: &[String]) -> miette::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let crd = api.get(name).await.into_diagnostic()?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(miette::miette!(
                    "customresourcedefinition/{name} was not Established within 60 s"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
