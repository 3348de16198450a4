//! The control plane is real: server-side apply works, and the namespace
//! controller in kube-controller-manager finalises a deleted namespace.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use plumb_testenv::testenv;

#[tokio::test]
async fn apply_read_and_delete_namespace() {
    let env = testenv();
    let client = env.client().await;
    let ns = env.namespace("smoke").await;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let cm = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "greeting" },
        "data": { "hello": "world" }
    });
    cms.patch(
        "greeting",
        &PatchParams::apply("plumb-test"),
        &Patch::Apply(cm),
    )
    .await
    .expect("server-side apply");

    let back = cms.get("greeting").await.expect("read back");
    assert_eq!(
        back.data
            .as_ref()
            .and_then(|d| d.get("hello"))
            .map(String::as_str),
        Some("world")
    );
    let managers: Vec<_> = back
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.iter().any(|m| m == "plumb-test"), "{managers:?}");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let live = namespaces.get(ns.name()).await.expect("namespace exists");
    assert_eq!(live.metadata.name.as_deref(), Some(ns.name()));

    // Deleting a namespace with content only completes when the namespace
    // controller empties it and removes the `kubernetes` finalizer.
    let name = ns.name().to_string();
    ns.delete_and_wait(client.clone()).await;
    assert!(namespaces.get_opt(&name).await.expect("get").is_none());
    assert!(cms.get_opt("greeting").await.expect("get").is_none());
}

#[tokio::test]
async fn version_is_the_pinned_release() {
    let env = testenv();
    let client = env.client().await;
    let info = client.apiserver_version().await.expect("/version");
    let versions = std::fs::read_to_string(plumb_testenv::repo_root().join("testenv/versions.sh"))
        .expect("read testenv/versions.sh");
    let pinned = versions
        .lines()
        .find_map(|l| l.strip_prefix("PLUMB_K8S_VERSION="))
        .expect("PLUMB_K8S_VERSION in versions.sh");
    assert_eq!(info.git_version, pinned, "{info:?}");
}
