//! Custom health in Lua, end to end: the real binary, a real Git repository
//! and the real control plane. An Application deploys a CRD and a custom
//! resource of it; plumb's built-in rules know nothing about the kind, so
//! only a Lua script can make the Application Progressing, Degraded or
//! Healthy as the resource's status moves. The script comes from a
//! directory (`--health-scripts`), from an `argocd-cm` ConfigMap in the
//! cluster (`--argocd-cm`), and reaches the agent the same way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use plumb_testenv::git::GitRepo;
use plumb_testenv::testenv;
use serde_json::{Value, json};

/// The script Argo CD users would write for the Widget kind.
const WIDGET_HEALTH: &str = r#"
hs = {}
if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the widget controller"
  return hs
end
if obj.status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "widget failed: " .. obj.status.reason
  return hs
end
if obj.status.phase == "Ready" then
  hs.status = "Healthy"
  hs.message = "widget ready with " .. obj.spec.size .. " parts"
  return hs
end
hs.status = "Progressing"
hs.message = obj.status.phase
return hs
"#;

struct Fixture {
    _repo: GitRepo,
    dir: tempfile::TempDir,
    ns: String,
    group: String,
    app: PathBuf,
    client: kube::Client,
}

impl Fixture {
    async fn new(prefix: &str) -> (Fixture, plumb_testenv::TestNamespace) {
        let env = testenv();
        let ns = env.namespace(prefix).await;
        let group = format!("{}.lua.plumb.test", ns.name().replace('-', ""));
        let repo = GitRepo::new();
        repo.write(
            "app/crd.yaml",
            format!(
                r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  names: {{kind: Widget, plural: widgets, singular: widget}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {{status: {{}}}}
    schema:
      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"#
            ),
        );
        repo.write(
            "app/widget.yaml",
            format!(
                "apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n"
            ),
        );
        repo.commit("a widget");
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app.yaml");
        std::fs::write(
            &app,
            format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {name}\n  namespace: argocd\nspec:\n  source:\n    repoURL: {url}\n    targetRevision: main\n    path: app\n  destination:\n    server: https://kubernetes.default.svc\n    namespace: {name}\n  syncPolicy:\n    automated: {{}}\n",
                name = ns.name(),
                url = repo.url()
            ),
        )
        .unwrap();
        let f = Fixture {
            _repo: repo,
            dir,
            ns: ns.name().to_string(),
            group,
            app,
            client: env.client().await,
        };
        (f, ns)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn plumb(&self) -> Command {
        let env = testenv();
        let mut c = Command::new(env!("CARGO_BIN_EXE_plumb"));
        c.arg("--data-dir")
            .arg(self.path("data"))
            .env("KUBECONFIG", env.kubeconfig())
            .env_remove("PLUMB_GIT_TOKEN");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.plumb().args(args).output().unwrap()
    }

    /// `plumb status APP --output json ARGS...`, which must succeed.
    fn status(&self, extra: &[&str]) -> Value {
        let mut args = vec!["status", self.app.to_str().unwrap(), "-o", "json"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A directory of scripts laid out as Argo CD's resource_customizations.
    fn script_dir(&self, code: &str) -> PathBuf {
        let dir = self.path("scripts");
        let kind_dir = dir.join(&self.group).join("Widget");
        std::fs::create_dir_all(&kind_dir).unwrap();
        std::fs::write(kind_dir.join("health.lua"), code).unwrap();
        dir
    }

    fn widgets(&self) -> Api<DynamicObject> {
        let ar = kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(&self.group, "v1", "Widget"),
            "widgets",
        );
        Api::namespaced_with(self.client.clone(), &self.ns, &ar)
    }

    /// What the widget's controller would write.
    async fn set_status(&self, status: Value) {
        self.widgets()
            .patch_status(
                "w1",
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .unwrap();
    }

    async fn write_argocd_cm(&self, data: Value) {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns);
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm"},
            "data": data,
        }))
        .unwrap();
        match cms.get_opt("argocd-cm").await.unwrap() {
            Some(_) => {
                cms.replace("argocd-cm", &PostParams::default(), &cm)
                    .await
                    .unwrap();
            }
            None => {
                cms.create(&PostParams::default(), &cm).await.unwrap();
            }
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The widget's entry in a status report.
fn widget(status: &Value) -> &Value {
    status["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Widget")
        .unwrap_or_else(|| panic!("no Widget in {status}"))
}

fn health_of(status: &Value) -> (String, String, String) {
    let w = widget(status);
    (
        status["health"].as_str().unwrap().to_string(),
        w["health"].as_str().unwrap().to_string(),
        w["message"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn a_lua_script_from_a_directory_or_argocd_cm_decides_application_health() {
    let (f, _ns) = Fixture::new("lua-health").await;
    let scripts = f.script_dir(WIDGET_HEALTH);
    let scripts = scripts.to_str().unwrap();

    let out = f.run(&["sync", f.app.to_str().unwrap(), "--health-scripts", scripts]);
    assert!(out.status.success(), "{}", text(&out));

    // plumb's built-in rules know no Widget: without a script it counts as Healthy.
    let (app, w, _) = health_of(&f.status(&[]));
    assert_eq!((app.as_str(), w.as_str()), ("Healthy", "Healthy"));

    // The script: no status yet means Progressing.
    let s = f.status(&["--health-scripts", scripts]);
    assert_eq!(
        health_of(&s),
        (
            "Progressing".into(),
            "Progressing".into(),
            "waiting for the widget controller".into()
        )
    );
    assert_eq!(s["sync"], "Synced", "status never shows as drift: {s}");

    f.set_status(json!({"phase": "Failed", "reason": "no disk"}))
        .await;
    assert_eq!(
        health_of(&f.status(&["--health-scripts", scripts])),
        (
            "Degraded".into(),
            "Degraded".into(),
            "widget failed: no disk".into()
        )
    );

    f.set_status(json!({"phase": "Ready", "reason": null}))
        .await;
    assert_eq!(
        health_of(&f.status(&["--health-scripts", scripts])),
        (
            "Healthy".into(),
            "Healthy".into(),
            "widget ready with 3 parts".into()
        )
    );

    // The same kind from the cluster's argocd-cm, which comes before files.
    let key = format!("resource.customizations.health.{}_Widget", f.group);
    f.write_argocd_cm(json!({
        key.clone(): "if obj.status.phase == 'Ready' then return {status = 'Suspended', message = 'held by argocd-cm'} end return {status = 'Healthy'}",
        "resource.customizations.ignoreDifferences.apps_Deployment": "jsonPointers: [/spec/replicas]",
    }))
    .await;
    let cm_flag = ["--argocd-cm", f.ns.as_str()];
    assert_eq!(
        health_of(&f.status(&cm_flag)),
        (
            "Suspended".into(),
            "Suspended".into(),
            "held by argocd-cm".into()
        )
    );
    let mut both = cm_flag.to_vec();
    both.extend(["--health-scripts", scripts]);
    assert_eq!(health_of(&f.status(&both)).1, "Suspended");

    // Argo CD's older key: one YAML map of GROUP/KIND to health.lua.
    f.write_argocd_cm(json!({
        "resource.customizations": format!(
            "{}/Widget:\n  health.lua: |\n    return {{status = 'Degraded', message = 'from the old key'}}\n",
            f.group
        ),
    }))
    .await;
    assert_eq!(
        health_of(&f.status(&cm_flag)),
        (
            "Degraded".into(),
            "Degraded".into(),
            "from the old key".into()
        )
    );

    // A script that fails makes the object Unknown with the error, and
    // changes nothing else.
    f.write_argocd_cm(json!({ key.clone(): "return {status = obj.status.nothing.here}" }))
        .await;
    let (app, w, message) = health_of(&f.status(&cm_flag));
    assert_eq!((app.as_str(), w.as_str()), ("Unknown", "Unknown"));
    assert!(
        message.starts_with(&format!("configmap {}/argocd-cm {key}:1:", f.ns)),
        "{message}"
    );

    // A script that never ends is stopped; plumb answers within seconds.
    f.write_argocd_cm(json!({ key.clone(): "while true do end" }))
        .await;
    let started = Instant::now();
    let (_, w, message) = health_of(&f.status(&cm_flag));
    assert_eq!(w, "Unknown");
    assert!(message.contains("instructions"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(20));

    // A directory whose script does not parse stops plumb before it starts.
    let broken = f.path("broken");
    std::fs::create_dir_all(broken.join("x.io/Thing")).unwrap();
    std::fs::write(broken.join("x.io/Thing/health.lua"), "if then").unwrap();
    let out = f.run(&[
        "status",
        f.app.to_str().unwrap(),
        "--health-scripts",
        broken.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("x.io/Thing/health.lua:1:"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn plumb_health_shows_a_live_objects_verdict() {
    let (f, _ns) = Fixture::new("lua-health-cmd").await;
    let out = f.run(&["sync", f.app.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    f.set_status(json!({"phase": "Failed", "reason": "no disk"}))
        .await;
    // What `kubectl get widget w1 -o yaml` would give.
    let live = f.widgets().get("w1").await.unwrap();
    let obj_file = f.path("w1.json");
    std::fs::write(&obj_file, serde_json::to_vec(&live).unwrap()).unwrap();
    let script = f.path("widget.lua");
    std::fs::write(
        &script,
        format!("print('phase is ' .. obj.status.phase)\n{WIDGET_HEALTH}"),
    )
    .unwrap();

    let out = f.run(&[
        "health",
        obj_file.to_str().unwrap(),
        "--script",
        script.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "Degraded", "{v}");
    assert_eq!(v["message"], "widget failed: no disk");
    assert_eq!(v["source"], "script");
    assert_eq!(v["printed"], json!(["phase is Failed"]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("print: phase is Failed"),
        "{}",
        text(&out)
    );

    let out = f.run(&["health", obj_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(t.contains("no health (counts as Healthy)"), "{t}");
    assert!(t.contains("plumb's built-in rules"), "{t}");

    let bad = f.path("bad.lua");
    std::fs::write(&bad, "return {status = 'fine'}").unwrap();
    let out = f.run(&[
        "health",
        obj_file.to_str().unwrap(),
        "--script",
        bad.to_str().unwrap(),
    ]);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(t.contains(": Unknown"), "{t}");
    assert!(t.contains("Lua returned an invalid health status"), "{t}");
}

/// A running agent, killed when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn agent_health(port: u16, name: &str) -> Value {
    let body = reqwest::get(format!(
        "http://127.0.0.1:{port}/api/v1/applications/{name}"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    serde_json::from_str(&body).unwrap_or_default()
}

async fn wait_for(port: u16, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = agent_health(port, name).await;
        if f(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_agent_follows_a_widget_through_argocd_cm() {
    let (f, _ns) = Fixture::new("lua-health-agent").await;
    let key = format!("resource.customizations.health.{}_Widget", f.group);
    f.write_argocd_cm(json!({ key: WIDGET_HEALTH })).await;
    let port = plumb_testenv::free_port();
    let child = f
        .plumb()
        .args(["agent", "--insecure-no-auth", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--poll-interval", "1s", "--resync-interval", "2s"])
        .args(["--argocd-cm", &format!("{}/argocd-cm", f.ns)])
        .arg(&f.app)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _agent = Agent(child);
    plumb_testenv::wait_for_port(&format!("127.0.0.1:{port}"));
    let name = f.ns.clone();
    let synced = |v: &Value| v["sync"] == "Synced" && v["resources"]["total"] == 2;
    let v = wait_for(port, &name, "the first sync", |v| {
        synced(v) && v["health"] == "Progressing"
    })
    .await;
    assert_eq!(widget(&v)["message"], "waiting for the widget controller");

    f.set_status(json!({"phase": "Failed", "reason": "no disk"}))
        .await;
    let v = wait_for(port, &name, "Degraded", |v| v["health"] == "Degraded").await;
    assert_eq!(widget(&v)["message"], "widget failed: no disk");

    f.set_status(json!({"phase": "Ready", "reason": null}))
        .await;
    let v = wait_for(port, &name, "Healthy", |v| v["health"] == "Healthy").await;
    assert_eq!(widget(&v)["message"], "widget ready with 3 parts");
}
