//! The sync engine against a real kube-apiserver and controller manager.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use plumb_kube::{Cluster, Engine, SyncError, SyncOptions, SyncReport};
use plumb_model::application::{Application, IgnoreDifferences};
use plumb_model::sync::Action;
use plumb_model::{HealthStatus, Manifest, Origin, Revision, SyncStatus};
use plumb_testenv::{TestNamespace, testenv};
use serde_json::{Value, json};

/// A revision from its text.
fn revision(text: &str) -> Revision {
    Revision::parse(text).unwrap()
}

struct Ctx {
    client: kube::Client,
    cluster: Cluster,
    ns: TestNamespace,
}

async fn ctx(prefix: &str) -> Ctx {
    let env = testenv();
    let client = env.client().await;
    let ns = env.namespace(prefix).await;
    let cluster = Cluster::new(client.clone(), "testenv").await.unwrap();
    Ctx {
        client,
        cluster,
        ns,
    }
}

fn app(name: &str, ns: &str, extra: Value) -> Application {
    let mut v = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {
            "source": {"repoURL": "file:///unused", "path": "."},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
        }
    });
    merge(&mut v["spec"], &extra);
    Application::from_value(&v).unwrap().application
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn m(object: Value) -> Manifest {
    Manifest {
        object,
        origin: Origin {
            file: "apps/test/manifests.yaml".into(),
            line: 1,
            column: 1,
        },
    }
}

fn cm(name: &str, data: Value) -> Manifest {
    m(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}))
}

fn deployment(name: &str, image: &str) -> Manifest {
    m(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    }))
}

fn service(name: &str) -> Manifest {
    m(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}
    }))
}

fn action_of(r: &SyncReport, kind: &str, name: &str) -> Action {
    r.results
        .iter()
        .find(|x| x.object.kind == kind && x.object.name == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not in {:?}", r.results))
        .action
}

async fn sync(
    c: &Ctx,
    a: &Application,
    ms: &[Manifest],
    rev: &str,
    opts: &SyncOptions,
) -> SyncReport {
    Engine::new(&c.cluster, a)
        .sync(ms, &revision(rev), opts, &())
        .await
        .unwrap()
}

fn pruning() -> SyncOptions {
    SyncOptions {
        prune: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn creates_then_reports_unchanged_and_never_a_diff_after_sync() {
    let c = ctx("sync-basic").await;
    let ns = c.ns.name().to_string();
    let a = app("basic", &ns, json!({}));
    let ms = vec![
        cm("settings", json!({"a": "1"})),
        deployment("web", "nginx:1.27"),
        service("web"),
    ];

    let r = sync(&c, &a, &ms, "c1", &SyncOptions::default()).await;
    assert!(r.succeeded, "{:?}", r.results);
    assert_eq!(r.counts.created, 3);
    for (kind, name) in [
        ("ConfigMap", "settings"),
        ("Deployment", "web"),
        ("Service", "web"),
    ] {
        assert_eq!(action_of(&r, kind, name), Action::Created);
    }

    // Server defaults (clusterIP, strategy, terminationGracePeriod, ...) never read as drift.
    let engine = Engine::new(&c.cluster, &a);
    let diff = engine.diff(&ms, &revision("c1"), false).await.unwrap();
    assert!(diff.in_sync(), "{:#?}", diff.objects);

    let r = sync(&c, &a, &ms, "c1", &SyncOptions::default()).await;
    assert_eq!(r.counts.unchanged, 3, "{:?}", r.results);

    // The objects carry the tracking id and are owned by field manager plumb.
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    let live = cms.get("settings").await.unwrap();
    let ann = live.metadata.annotations.unwrap();
    assert_eq!(
        ann["plumb.dev/tracking-id"],
        format!("argocd/basic:/ConfigMap:{ns}/settings")
    );
    assert_eq!(live.metadata.labels.unwrap()["plumb.dev/app"], "basic");
    assert!(
        live.metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|f| f.manager.as_deref() == Some("plumb")
                && f.operation.as_deref() == Some("Apply"))
    );

    // A change in Git is configured; status follows.
    let ms2 = vec![
        cm("settings", json!({"a": "2"})),
        deployment("web", "nginx:1.28"),
        service("web"),
    ];
    let status = engine.status(&ms2, &revision("c2")).await.unwrap();
    assert_eq!(status.sync, SyncStatus::OutOfSync);
    assert_eq!(status.resources.out_of_sync, 2);
    assert_eq!(
        status.revision.as_ref().map(Revision::to_string).as_deref(),
        Some("c1")
    );
    let r = sync(&c, &a, &ms2, "c2", &SyncOptions::default()).await;
    assert_eq!(action_of(&r, "ConfigMap", "settings"), Action::Configured);
    assert_eq!(action_of(&r, "Deployment", "web"), Action::Configured);
    assert_eq!(action_of(&r, "Service", "web"), Action::Unchanged);
    let status = engine.status(&ms2, &revision("c2")).await.unwrap();
    assert_eq!(status.sync, SyncStatus::Synced);
    assert_eq!(
        status.revision.as_ref().map(Revision::to_string).as_deref(),
        Some("c2")
    );
    // No pods run in the testenv: the Deployment never becomes available.
    assert_eq!(status.health, HealthStatus::Progressing);
}

#[tokio::test]
async fn drift_shows_in_diff_and_sync_reverts_it_taking_over_fields() {
    let c = ctx("sync-drift").await;
    let ns = c.ns.name().to_string();
    let a = app("drift", &ns, json!({}));
    let ms = vec![cm("settings", json!({"color": "blue"}))];
    sync(&c, &a, &ms, "c1", &SyncOptions::default()).await;

    // Someone else edits a field plumb owns, with another field manager.
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    cms.patch(
        "settings",
        &PatchParams::apply("intruder").force(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"color": "red"}})),
    )
    .await
    .unwrap();
    let engine = Engine::new(&c.cluster, &a);
    let diff = engine.diff(&ms, &revision("c1"), false).await.unwrap();
    assert_eq!(diff.objects.len(), 1);
    assert_eq!(diff.objects[0].state, "modified");
    assert!(
        diff.objects[0].diff.contains("-  color: red"),
        "{}",
        diff.objects[0].diff
    );
    assert!(
        diff.objects[0].diff.contains("+  color: blue"),
        "{}",
        diff.objects[0].diff
    );

    let r = sync(&c, &a, &ms, "c1", &SyncOptions::default()).await;
    assert_eq!(action_of(&r, "ConfigMap", "settings"), Action::Configured);
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["color"],
        "blue"
    );
    assert!(
        engine
            .diff(&ms, &revision("c1"), false)
            .await
            .unwrap()
            .in_sync()
    );
}

#[tokio::test]
async fn prune_deletes_only_owned_members_that_left_git() {
    let c = ctx("sync-prune").await;
    let ns = c.ns.name().to_string();
    let a = app("prune", &ns, json!({}));
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);

    // Not plumb's: created by someone else in the same namespace.
    cms.patch(
        "bystander",
        &PatchParams::apply("someone"),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bystander"}}),
        ),
    )
    .await
    .unwrap();

    let keep = m(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep-me",
        "annotations": {"argocd.argoproj.io/sync-options": "Prune=false"}}}),
    );
    let all = vec![
        cm("a", json!({})),
        cm("b", json!({})),
        cm("c", json!({})),
        cm("d", json!({})),
        keep,
    ];
    sync(&c, &a, &all, "c1", &pruning()).await;

    // b leaves Git: pruned. keep-me leaves Git: skipped (Prune=false).
    let next = vec![cm("a", json!({})), cm("c", json!({})), cm("d", json!({}))];
    let without_prune = sync(&c, &a, &next, "c2", &SyncOptions::default()).await;
    assert_eq!(action_of(&without_prune, "ConfigMap", "b"), Action::Skipped);
    assert!(
        cms.get_opt("b").await.unwrap().is_some(),
        "prune off deletes nothing"
    );

    let r = sync(&c, &a, &next, "c2", &pruning()).await;
    assert!(r.succeeded, "{:?}", r.results);
    assert_eq!(action_of(&r, "ConfigMap", "b"), Action::Pruned);
    assert_eq!(action_of(&r, "ConfigMap", "keep-me"), Action::Skipped);
    assert!(cms.get_opt("keep-me").await.unwrap().is_some());
    assert!(
        cms.get_opt("bystander").await.unwrap().is_some(),
        "never deletes what it did not create"
    );
    plumb_testenv::wait_gone(&cms, "b", std::time::Duration::from_secs(30)).await;

    // An inventory member whose tracking id someone changed is not ours any more.
    cms.patch(
        "d",
        &PatchParams::apply("adopter").force(),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d",
            "annotations": {"plumb.dev/tracking-id": "argocd/other:/ConfigMap:x/d"}}}),
        ),
    )
    .await
    .unwrap();
    let r = sync(
        &c,
        &a,
        &[cm("a", json!({})), cm("c", json!({}))],
        "c3",
        &pruning(),
    )
    .await;
    assert_eq!(action_of(&r, "ConfigMap", "d"), Action::Skipped);
    assert!(cms.get_opt("d").await.unwrap().is_some());
}

#[tokio::test]
async fn prune_guards_refuse_and_change_nothing() {
    let c = ctx("sync-guards").await;
    let ns = c.ns.name().to_string();
    let a = app("guards", &ns, json!({}));
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    let four: Vec<Manifest> = (0..4).map(|i| cm(&format!("m{i}"), json!({}))).collect();
    sync(&c, &a, &four, "c1", &pruning()).await;

    // An empty render would delete everything.
    let engine = Engine::new(&c.cluster, &a);
    let err = engine
        .sync(&[], &revision("c2"), &pruning(), &())
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::PruneRefused(_)), "{err}");
    assert!(err.to_string().contains("allowEmpty"), "{err}");

    // Deleting 3 of 4 (75 %) is over the default 50 %.
    let err = engine
        .sync(&four[..1], &revision("c2"), &pruning(), &())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--force-prune"), "{err}");
    // Nothing changed: the new object of a refused sync was not created either.
    let mut with_new = four[..1].to_vec();
    with_new.push(cm("new", json!({})));
    assert!(
        engine
            .sync(&with_new, &revision("c2"), &pruning(), &())
            .await
            .is_err()
    );
    assert!(cms.get_opt("new").await.unwrap().is_none());
    for i in 0..4 {
        assert!(cms.get_opt(&format!("m{i}")).await.unwrap().is_some());
    }

    // Forced, it goes through; allowEmpty lets an empty render prune the rest.
    let forced = SyncOptions {
        prune: true,
        force_prune: true,
        ..Default::default()
    };
    let r = sync(&c, &a, &four[..1], "c3", &forced).await;
    assert_eq!(r.counts.pruned, 3);
    let allow = app(
        "guards",
        &ns,
        json!({"syncPolicy": {"automated": {"prune": true, "allowEmpty": true}}}),
    );
    let r = sync(&c, &allow, &[], "c4", &forced).await;
    assert_eq!(r.counts.pruned, 1);
}

#[tokio::test]
async fn crds_and_custom_resources_sync_in_one_pass_with_waves() {
    let c = ctx("sync-crd").await;
    let ns = c.ns.name().to_string();
    let group = format!("{}.plumb.test", ns.replace('-', ""));
    let a = app("crd", &ns, json!({}));
    let crd = m(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }));
    let widget = m(
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}}),
    );
    let early = m(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "early", "annotations": {"argocd.argoproj.io/sync-wave": "-1"}}}));
    let late = m(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "late", "annotations": {"argocd.argoproj.io/sync-wave": "5"}}}));
    // Order in Git is the worst case: the custom resource first.
    let ms = vec![late, widget, crd, early];
    let r = sync(&c, &a, &ms, "c1", &pruning()).await;
    assert!(r.succeeded, "{:?}", r.results);
    let order: Vec<&str> = r.results.iter().map(|x| x.object.name.as_str()).collect();
    let pos = |n: &str| {
        order
            .iter()
            .position(|x| *x == n || x.starts_with(n))
            .unwrap()
    };
    assert!(pos("early") < pos("widgets."), "{order:?}");
    assert!(pos("widgets.") < pos("w1"), "{order:?}");
    assert!(pos("w1") < pos("late"), "{order:?}");

    let ar = kube::discovery::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &ns, &ar);
    assert_eq!(widgets.get("w1").await.unwrap().data["spec"]["size"], 3);
    assert!(
        Engine::new(&c.cluster, &a)
            .diff(&ms, &revision("c1"), false)
            .await
            .unwrap()
            .in_sync()
    );

    // Pruning everything custom removes the resource before its CRD.
    let crds_api = c.cluster.crds();
    let forced = SyncOptions {
        prune: true,
        force_prune: true,
        ..Default::default()
    };
    let r = sync(&c, &a, &ms[..1], "c2", &forced).await;
    let order: Vec<&str> = r
        .results
        .iter()
        .filter(|x| x.action == Action::Pruned)
        .map(|x| x.object.name.as_str())
        .collect();
    assert_eq!(order.first().copied(), Some("w1"), "{order:?}");
    plumb_testenv::wait_gone(
        &crds_api,
        &format!("widgets.{group}"),
        std::time::Duration::from_secs(60),
    )
    .await;
}

#[tokio::test]
async fn unknown_kinds_name_their_file() {
    let c = ctx("sync-unknown").await;
    let a = app("unknown", c.ns.name(), json!({}));
    let bad = m(
        json!({"apiVersion": "nope.example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}),
    );
    let err = Engine::new(&c.cluster, &a)
        .sync(
            &[cm("ok", json!({})), bad],
            &revision("c1"),
            &SyncOptions::default(),
            &(),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("apps/test/manifests.yaml:1:1:"), "{text}");
    assert!(text.contains("Gadget"), "{text}");
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), c.ns.name());
    assert!(
        cms.get_opt("ok").await.unwrap().is_none(),
        "nothing is applied when a kind is unknown"
    );
}

#[tokio::test]
async fn ignore_differences_apply_to_diff_and_sync() {
    let c = ctx("sync-ignore").await;
    let ns = c.ns.name().to_string();
    let a = app(
        "ignore",
        &ns,
        json!({"ignoreDifferences": [
            {"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]},
            {"kind": "ConfigMap", "managedFieldsManagers": ["operator"]}
        ]}),
    );
    assert_eq!(a.spec.ignore_differences.len(), 2);
    let _: &IgnoreDifferences = &a.spec.ignore_differences[0];
    let ms = vec![
        deployment("web", "nginx:1.27"),
        cm("tuned", json!({"level": "1"})),
    ];
    sync(&c, &a, &ms, "c1", &SyncOptions::default()).await;

    // An autoscaler changes replicas; an operator owns a ConfigMap key.
    let deploys: Api<DynamicObject> = Api::namespaced_with(
        c.client.clone(),
        &ns,
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        ),
    );
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    cms.patch(
        "tuned",
        &PatchParams::apply("operator").force(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tuned"}, "data": {"level": "9"}})),
    )
    .await
    .unwrap();

    let engine = Engine::new(&c.cluster, &a);
    let diff = engine.diff(&ms, &revision("c1"), false).await.unwrap();
    assert!(diff.in_sync(), "{:#?}", diff.objects);
    sync(&c, &a, &ms, "c1", &SyncOptions::default()).await;
    assert_eq!(
        deploys.get("web").await.unwrap().data["spec"]["replicas"],
        7,
        "sync leaves ignored fields alone"
    );
    assert_eq!(cms.get("tuned").await.unwrap().data.unwrap()["level"], "9");

    // Without the rules the same change is drift.
    let plain = app("ignore", &ns, json!({}));
    assert!(
        !Engine::new(&c.cluster, &plain)
            .diff(&ms, &revision("c1"), false)
            .await
            .unwrap()
            .in_sync()
    );
}

#[tokio::test]
async fn immutable_fields_fail_clearly_unless_replace() {
    let c = ctx("sync-immutable").await;
    let ns = c.ns.name().to_string();
    let a = app("immutable", &ns, json!({}));
    let v1 = m(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "frozen"},
        "immutable": true, "stringData": {"k": "v1"}}),
    );
    sync(&c, &a, &[v1], "c1", &SyncOptions::default()).await;

    let v2 = m(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "frozen"},
        "immutable": true, "stringData": {"k": "v2"}}),
    );
    let r = sync(&c, &a, &[v2], "c2", &SyncOptions::default()).await;
    assert!(!r.succeeded);
    let failed = &r.results[0];
    assert_eq!(failed.action, Action::Failed);
    assert!(failed.message.contains("immutable"), "{}", failed.message);
    assert!(
        failed.message.contains("Replace=true"),
        "{}",
        failed.message
    );

    let v3 = m(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "frozen", "annotations": {"argocd.argoproj.io/sync-options": "Replace=true"}},
        "immutable": true, "stringData": {"k": "v3"}}));
    let r = sync(&c, &a, &[v3], "c3", &SyncOptions::default()).await;
    assert!(r.succeeded, "{:?}", r.results);
    assert!(r.results[0].message.contains("replaced"));
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.client.clone(), &ns);
    let data = secrets.get("frozen").await.unwrap().data.unwrap();
    assert_eq!(data["k"].0, b"v3");
}

#[tokio::test]
async fn dry_run_changes_nothing_and_create_namespace_works() {
    let c = ctx("sync-dry").await;
    let target = format!("{}-made", c.ns.name());
    let a = app(
        "dry",
        &target,
        json!({"syncPolicy": {"syncOptions": ["CreateNamespace=true"]}}),
    );
    let ms = vec![cm("one", json!({"x": "1"}))];
    let dry = SyncOptions {
        dry_run: true,
        ..Default::default()
    };
    let r = sync(&c, &a, &ms, "c1", &dry).await;
    assert!(r.dry_run && r.succeeded, "{:?}", r.results);
    assert_eq!(action_of(&r, "ConfigMap", "one"), Action::Created);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.client.clone());
    assert!(
        namespaces.get_opt(&target).await.unwrap().is_none(),
        "dry run creates no namespace"
    );
    assert!(
        Engine::new(&c.cluster, &a)
            .inventory()
            .await
            .unwrap()
            .is_none(),
        "nor an inventory"
    );

    let r = sync(&c, &a, &ms, "c1", &SyncOptions::default()).await;
    assert!(r.succeeded, "{:?}", r.results);
    assert!(namespaces.get_opt(&target).await.unwrap().is_some());
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &target);
    assert!(cms.get_opt("one").await.unwrap().is_some());

    // A dry run of a change says configured and leaves the value alone.
    let r = sync(&c, &a, &[cm("one", json!({"x": "2"}))], "c2", &dry).await;
    assert_eq!(action_of(&r, "ConfigMap", "one"), Action::Configured);
    assert_eq!(cms.get("one").await.unwrap().data.unwrap()["x"], "1");
    let _ = namespaces.delete(&target, &Default::default()).await;
}

#[tokio::test]
async fn another_applications_objects_are_not_taken_over() {
    let c = ctx("sync-owner").await;
    let ns = c.ns.name().to_string();
    let first = app("first", &ns, json!({}));
    let second = app("second", &ns, json!({}));
    sync(
        &c,
        &first,
        &[cm("shared", json!({"by": "first"}))],
        "c1",
        &SyncOptions::default(),
    )
    .await;
    let r = sync(
        &c,
        &second,
        &[cm("shared", json!({"by": "second"}))],
        "c1",
        &SyncOptions::default(),
    )
    .await;
    assert!(!r.succeeded);
    assert!(
        r.results[0].message.contains("argocd/first"),
        "{}",
        r.results[0].message
    );
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), &ns);
    assert_eq!(
        cms.get("shared").await.unwrap().data.unwrap()["by"],
        "first"
    );
}

#[tokio::test]
async fn an_inventory_in_the_cluster_is_all_a_fresh_engine_needs() {
    let c = ctx("sync-fresh").await;
    let ns = c.ns.name().to_string();
    let a = app("fresh", &ns, json!({}));
    sync(
        &c,
        &a,
        &[cm("x", json!({})), cm("y", json!({}))],
        "c1",
        &pruning(),
    )
    .await;

    // A brand-new client and discovery cache, no local state of any kind.
    let env = testenv();
    let cluster = Cluster::new(env.client().await, "testenv").await.unwrap();
    let inv = Engine::new(&cluster, &a)
        .inventory()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inv.members.len(), 2);
    assert_eq!(
        inv.revision.as_ref().map(Revision::to_string).as_deref(),
        Some("c1")
    );
    let r = Engine::new(&cluster, &a)
        .sync(&[cm("x", json!({}))], &revision("c2"), &pruning(), &())
        .await
        .unwrap();
    assert_eq!(action_of(&r, "ConfigMap", "x"), Action::Unchanged);
    assert_eq!(action_of(&r, "ConfigMap", "y"), Action::Pruned);
}

#[tokio::test]
async fn secret_values_never_appear_in_diffs() {
    let c = ctx("sync-secret").await;
    let ns = c.ns.name().to_string();
    let a = app("secret", &ns, json!({}));
    let secret = |v: &str| {
        m(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
            "stringData": {"password": v, "user": "app"}}),
        )
    };
    sync(
        &c,
        &a,
        &[secret("hunter2-in-git")],
        "c1",
        &SyncOptions::default(),
    )
    .await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(c.client.clone(), &ns);
    secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "changed-in-cluster"}})),
        )
        .await
        .unwrap();
    let engine = Engine::new(&c.cluster, &a);
    let diff = engine
        .diff(&[secret("hunter2-in-git")], &revision("c1"), false)
        .await
        .unwrap();
    assert_eq!(diff.objects.len(), 1);
    let text = format!(
        "{}{:?}{:?}",
        diff.objects[0].diff, diff.objects[0].live, diff.objects[0].desired
    );
    use base64::Engine as _;
    for leaked in ["hunter2-in-git", "changed-in-cluster", "YXBw"] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert!(
        !text.contains(&b64("hunter2-in-git")) && !text.contains(&b64("changed-in-cluster")),
        "{text}"
    );
    assert!(
        text.contains("password"),
        "the differing key is named: {text}"
    );
    let unified = &diff.objects[0].diff;
    assert!(
        unified.contains("-  password: \"(redacted: value in the cluster)\"")
            && unified.contains("+  password: \"(redacted: value in Git)\""),
        "the unified diff still has a changed line for the key: {unified}"
    );
}
