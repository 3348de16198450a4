//! Rendering real repositories (made with real git) with the real kustomize
//! and helm binaries.

#![allow(clippy::unwrap_used)]

use plumb_git::{Credentials, GitCache, Snapshot};
use plumb_model::application::{
    ApplicationSource, DirectorySource, HelmParameter, HelmSource, KustomizeSource,
};
use plumb_render::{RenderError, RenderRequest, Renderer, SourceType, Tools};
use plumb_testenv::git::GitRepo;
use plumb_testenv::tool_path;

struct Fixture {
    _dir: tempfile::TempDir,
    cache: GitCache,
    renderer: Renderer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tools = Tools {
        kustomize: tool_path("kustomize"),
        helm: tool_path("helm"),
        timeout: std::time::Duration::from_secs(60),
    };
    Fixture {
        cache: GitCache::new(dir.path().join("git"), Credentials::default()),
        renderer: Renderer::new(tools, dir.path().join("render")),
        _dir: dir,
    }
}

impl Fixture {
    fn snapshot(&self, repo: &GitRepo, rev: &str) -> Snapshot {
        let c = self.cache.fetch(&repo.url(), rev).unwrap();
        self.cache.snapshot(&repo.url(), &c.id).unwrap()
    }

    fn render(
        &self,
        repo: &GitRepo,
        source: ApplicationSource,
    ) -> Result<plumb_render::Rendered, RenderError> {
        let snap = self.snapshot(repo, "HEAD");
        self.renderer.render(
            &RenderRequest {
                app_name: "demo",
                namespace: Some("prod"),
                source: &source,
            },
            &snap,
        )
    }
}

fn source(repo: &GitRepo, path: &str) -> ApplicationSource {
    ApplicationSource {
        repo_url: repo.url(),
        path: Some(path.into()),
        ..Default::default()
    }
}

fn names(r: &plumb_render::Rendered) -> Vec<String> {
    r.manifests
        .iter()
        .map(|m| format!("{}/{}", m.kind(), m.name()))
        .collect()
}

#[test]
fn plain_directories_recurse_include_and_exclude() {
    let repo = GitRepo::new();
    repo.write(
        "apps/a/cms.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\n---\n# just a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n",
    );
    repo.write(
        "apps/a/svc.json",
        r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}}"#,
    );
    repo.write("apps/a/README.md", "not a manifest");
    repo.write(
        "apps/a/sub/deep.yml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: deep\n",
    );
    repo.write(
        "apps/a/list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: listed}\n",
    );
    repo.commit("manifests");
    let f = fixture();

    let flat = f.render(&repo, source(&repo, "apps/a")).unwrap();
    assert_eq!(flat.source_types, vec![SourceType::Directory]);
    assert_eq!(
        names(&flat),
        vec![
            "ConfigMap/one",
            "ConfigMap/two",
            "ConfigMap/listed",
            "Service/web"
        ]
    );
    assert_eq!(flat.manifests[1].origin.file, "apps/a/cms.yaml");
    assert_eq!(flat.manifests[1].origin.line, 8);
    assert_eq!(flat.commits.len(), 1);

    let mut s = source(&repo, "apps/a");
    s.directory = Some(DirectorySource {
        recurse: true,
        ..Default::default()
    });
    assert!(names(&f.render(&repo, s.clone()).unwrap()).contains(&"Secret/deep".to_string()));

    s.directory = Some(DirectorySource {
        recurse: true,
        include: Some("{*.yaml,*.yml}".into()),
        exclude: Some("list.yaml".into()),
        ..Default::default()
    });
    assert_eq!(
        names(&f.render(&repo, s).unwrap()),
        vec!["ConfigMap/one", "ConfigMap/two", "Secret/deep"]
    );
}

#[test]
fn kustomize_overlays_and_options_use_the_real_binary() {
    let repo = GitRepo::new();
    repo.write(
        "base/kustomization.yaml",
        "resources:\n- deploy.yaml\n- cm.yaml\n",
    );
    repo.write(
        "base/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n",
    );
    repo.write(
        "base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: base\n",
    );
    repo.write(
        "overlays/prod/kustomization.yaml",
        "resources:\n- ../../base\npatches:\n- path: replicas.yaml\nconfigMapGenerator:\n- name: extra\n  literals: [level=prod]\n",
    );
    repo.write(
        "overlays/prod/replicas.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n",
    );
    repo.commit("kustomize");
    let f = fixture();

    let r = f.render(&repo, source(&repo, "overlays/prod")).unwrap();
    assert_eq!(r.source_types, vec![SourceType::Kustomize]);
    let deploy = r
        .manifests
        .iter()
        .find(|m| m.kind() == "Deployment")
        .unwrap();
    assert_eq!(deploy.object["spec"]["replicas"], 3);
    let generated = r
        .manifests
        .iter()
        .find(|m| m.name().starts_with("extra-"))
        .unwrap();
    assert_eq!(generated.object["data"]["level"], "prod");

    let mut s = source(&repo, "overlays/prod");
    s.kustomize = Some(KustomizeSource {
        name_prefix: Some("p-".into()),
        name_suffix: Some("-x".into()),
        images: vec!["nginx=registry.local/nginx:1.27".into()],
        common_labels: [("team".to_string(), "blue".to_string())].into(),
        ..Default::default()
    });
    let r = f.render(&repo, s).unwrap();
    let deploy = r
        .manifests
        .iter()
        .find(|m| m.kind() == "Deployment")
        .unwrap();
    assert_eq!(deploy.name(), "p-web-x");
    assert_eq!(
        deploy.object["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.local/nginx:1.27"
    );
    assert_eq!(deploy.object["metadata"]["labels"]["team"], "blue");
    assert_eq!(
        deploy.object["spec"]["selector"]["matchLabels"]["team"],
        "blue"
    );

    // A broken kustomization is kustomize's error, named.
    repo.write(
        "overlays/prod/kustomization.yaml",
        "resources:\n- missing.yaml\n",
    );
    repo.commit("break it");
    let err = f.render(&repo, source(&repo, "overlays/prod")).unwrap_err();
    assert!(
        matches!(err, RenderError::Tool { ref tool, .. } if tool == "kustomize"),
        "{err}"
    );
    assert!(err.to_string().contains("missing.yaml"), "{err}");
}

#[test]
fn helm_charts_render_with_values_and_parameters() {
    let repo = GitRepo::new();
    repo.write(
        "charts/web/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    );
    repo.write(
        "charts/web/values.yaml",
        "replicas: 1\nimage: nginx:1.25\ncolor: red\n",
    );
    repo.write("charts/web/values-prod.yaml", "replicas: 4\n");
    repo.write("charts/web/crds/widget.yaml", "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  names: {kind: Widget, plural: widgets}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n");
    repo.write(
        "charts/web/templates/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\n  namespace: {{ .Release.Namespace }}\n  labels:\n    color: {{ .Values.color }}\nspec:\n  replicas: {{ .Values.replicas }}\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: {{ .Values.image }}\n",
    );
    repo.write(
        "charts/web/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\ndata:\n  tier: {{ .Values.tier | default \"none\" | quote }}\n",
    );
    repo.commit("chart");
    let f = fixture();

    let mut s = source(&repo, "charts/web");
    s.helm = Some(HelmSource {
        release_name: Some("rel".into()),
        value_files: vec!["values-prod.yaml".into()],
        values_object: Some(serde_json::json!({"color": "blue"})),
        parameters: vec![HelmParameter {
            name: "tier".into(),
            value: "1".into(),
            force_string: true,
        }],
        ..Default::default()
    });
    let r = f.render(&repo, s).unwrap();
    assert_eq!(r.source_types, vec![SourceType::Helm]);
    let deploy = r
        .manifests
        .iter()
        .find(|m| m.kind() == "Deployment")
        .unwrap();
    assert_eq!(deploy.name(), "rel-web");
    assert_eq!(deploy.namespace(), Some("prod"));
    assert_eq!(deploy.object["spec"]["replicas"], 4);
    assert_eq!(deploy.object["metadata"]["labels"]["color"], "blue");
    assert_eq!(deploy.origin.file, "charts/web/templates/deploy.yaml");
    let cm = r
        .manifests
        .iter()
        .find(|m| m.kind() == "ConfigMap")
        .unwrap();
    assert_eq!(cm.object["data"]["tier"], "1");
    assert!(
        r.manifests
            .iter()
            .any(|m| m.kind() == "CustomResourceDefinition"),
        "CRDs are included"
    );

    // Default release name is the Application's.
    let r = f.render(&repo, source(&repo, "charts/web")).unwrap();
    assert!(
        names(&r).contains(&"Deployment/demo-web".to_string()),
        "{:?}",
        names(&r)
    );

    // A value file outside the repository is refused.
    let mut s = source(&repo, "charts/web");
    s.helm = Some(HelmSource {
        value_files: vec!["../../../../etc/passwd".into()],
        ..Default::default()
    });
    assert!(matches!(f.render(&repo, s), Err(RenderError::Snapshot(_))));
}

#[test]
fn bad_manifests_name_file_line_and_column() {
    let f = fixture();

    let repo = GitRepo::new();
    repo.write(
        "apps/x/ok.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n",
    );
    repo.write(
        "apps/x/bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [broken\n",
    );
    repo.commit("malformed");
    let err = f.render(&repo, source(&repo, "apps/x")).unwrap_err();
    match &err {
        RenderError::Parse(p) => {
            assert_eq!(p.origin.file, "apps/x/bad.yaml");
            assert!(p.origin.line >= 4, "{err}");
        }
        other => panic!("expected a parse error, got {other}"),
    }

    let repo = GitRepo::new();
    repo.write("apps/x/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nmetadata:\n  name: b\n");
    repo.commit("kindless");
    let err = f.render(&repo, source(&repo, "apps/x")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "apps/x/cm.yaml:6:1: manifest has no `kind`"
    );

    let repo = GitRepo::new();
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n  a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n",
    );
    let mut prev = "a".to_string();
    for n in ["b", "c", "d", "e", "f", "g", "h", "i", "j"] {
        bomb.push_str(&format!(
            "  {n}: &{n} [{}]\n",
            vec![format!("*{prev}"); 10].join(",")
        ));
        prev = n.to_string();
    }
    repo.write("apps/x/bomb.yaml", bomb);
    repo.commit("alias bomb");
    let start = std::time::Instant::now();
    let err = f.render(&repo, source(&repo, "apps/x")).unwrap_err();
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert!(err.to_string().starts_with("apps/x/bomb.yaml:"), "{err}");

    let repo = GitRepo::new();
    repo.write("apps/x/huge.yaml", vec![b'#'; 200 * 1024 * 1024]);
    repo.commit("200 MB");
    let err = f.render(&repo, source(&repo, "apps/x")).unwrap_err();
    assert!(err.to_string().contains("apps/x/huge.yaml"), "{err}");
    assert!(err.to_string().contains("over the limit"), "{err}");

    let repo = GitRepo::new();
    repo.write(
        "apps/x/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    );
    repo.symlink("apps/x/escape.yaml", "../../../../../etc/passwd");
    repo.commit("escape");
    let err = f.render(&repo, source(&repo, "apps/x")).unwrap_err();
    assert!(err.to_string().contains("leaves the repository"), "{err}");
    let err = f
        .render(&repo, source(&repo, "apps/../../etc"))
        .unwrap_err();
    assert!(err.to_string().contains("leaves the repository"), "{err}");
    let err = f.render(&repo, source(&repo, "apps/none")).unwrap_err();
    assert!(matches!(err, RenderError::NoSuchPath { .. }), "{err}");

    let repo = GitRepo::new();
    repo.write(
        "a/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n",
    );
    repo.write(
        "a/cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n",
    );
    repo.commit("dup");
    let err = f.render(&repo, source(&repo, "a")).unwrap_err();
    assert!(
        err.to_string().contains("also defined at a/cm.yaml"),
        "{err}"
    );
}

#[test]
fn renders_are_cached_by_commit_path_and_options() {
    let repo = GitRepo::new();
    repo.write("k/kustomization.yaml", "resources: [cm.yaml]\n");
    repo.write(
        "k/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    );
    repo.commit("k");
    let dir = tempfile::tempdir().unwrap();
    // A kustomize that does not exist: a cache hit must not need it.
    let cache = GitCache::new(dir.path().join("git"), Credentials::default());
    let good = Renderer::new(
        Tools {
            kustomize: tool_path("kustomize"),
            helm: tool_path("helm"),
            timeout: std::time::Duration::from_secs(60),
        },
        dir.path().join("render"),
    );
    let broken = Renderer::new(
        Tools {
            kustomize: "/nonexistent/kustomize".into(),
            helm: "/nonexistent/helm".into(),
            timeout: std::time::Duration::from_secs(60),
        },
        dir.path().join("render"),
    );
    let c = cache.fetch(&repo.url(), "HEAD").unwrap();
    let snap = cache.snapshot(&repo.url(), &c.id).unwrap();
    let s = source(&repo, "k");
    let req = RenderRequest {
        app_name: "a",
        namespace: None,
        source: &s,
    };
    let first = good.render(&req, &snap).unwrap();
    assert_eq!(broken.render(&req, &snap).unwrap(), first);
    let mut other = s.clone();
    other.kustomize = Some(KustomizeSource {
        name_prefix: Some("x-".into()),
        ..Default::default()
    });
    let req2 = RenderRequest {
        app_name: "a",
        namespace: None,
        source: &other,
    };
    let err = broken.render(&req2, &snap).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot run /nonexistent/kustomize"),
        "{err}"
    );
}
