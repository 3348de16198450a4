//! The pipeline over real repositories (made with real git): what a check
//! sees, what a refusal says, and which commit a pin names.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use plumb_git::{Credentials, GitCache};
use plumb_model::{Application, Revision};
use plumb_pipeline::{Check, CheckContext, CheckFuture, Pipeline, PipelineError, Refusal};
use plumb_render::{Rendered, Renderer, Tools};
use plumb_testenv::git::GitRepo;
use serde_json::json;

fn app(repo: &GitRepo) -> Application {
    Application::from_value(&json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "web", "namespace": "argocd"},
        "spec": {
            "source": {"repoURL": repo.url(), "targetRevision": "main", "path": "app"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"}
        }
    }))
    .unwrap()
    .application
}

fn pipeline(dir: &tempfile::TempDir) -> Pipeline {
    let git = GitCache::new(dir.path().join("git"), Credentials::default());
    Pipeline::new(
        git,
        Renderer::new(Tools::default(), dir.path().join("render")),
    )
}

/// Refuses ConfigMaps named `forbidden`; labels every other object.
struct NoForbidden;

impl Check for NoForbidden {
    fn name(&self) -> &'static str {
        "no-forbidden"
    }

    fn check<'a>(&'a self, _ctx: CheckContext<'a>, rendered: &'a mut Rendered) -> CheckFuture<'a> {
        Box::pin(async move {
            for m in &mut rendered.manifests {
                if m.name() == "forbidden" {
                    return Err(Refusal {
                        check: self.name(),
                        rule: "forbidden-name".into(),
                        origin: Some(m.origin.clone()),
                        message: "this name is not allowed".into(),
                    }
                    .into());
                }
                m.object["metadata"]["labels"] = json!({"checked": "yes"});
            }
            Ok(())
        })
    }
}

const CM_A: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";

/// A repository whose first commit holds `app/cm.yaml`, that commit, and a
/// scratch directory for the pipeline's caches.
fn repo_with(cm: &str) -> (GitRepo, String, tempfile::TempDir) {
    let repo = GitRepo::new();
    repo.write("app/cm.yaml", cm);
    let first = repo.commit("one");
    (repo, first, tempfile::tempdir().unwrap())
}

#[tokio::test]
async fn checks_see_every_object_and_may_adjust_them() {
    let (repo, first, dir) = repo_with(CM_A);
    let p = pipeline(&dir).with_check(Arc::new(NoForbidden));
    let prepared = p.prepare(&app(&repo), None).await.unwrap();
    assert_eq!(prepared.revision, first);
    assert_eq!(prepared.rendered.manifests.len(), 1);
    assert_eq!(
        prepared.rendered.manifests[0].object["metadata"]["labels"]["checked"],
        "yes"
    );
}

#[tokio::test]
async fn a_refusal_names_the_file_line_and_rule() {
    let (repo, _, dir) = repo_with(&format!(
        "{CM_A}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: forbidden\n"
    ));
    let p = pipeline(&dir).with_check(Arc::new(NoForbidden));
    let err = p.prepare(&app(&repo), None).await.unwrap_err();
    assert!(matches!(err, PipelineError::Refused(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "app/cm.yaml:6:1: forbidden-name: this name is not allowed"
    );
    assert_eq!(
        err.hint(),
        "fix the manifest in Git; nothing was changed in the cluster"
    );
    // Without the check, the same commit prepares.
    assert!(pipeline(&dir).prepare(&app(&repo), None).await.is_ok());
}

#[tokio::test]
async fn a_pin_names_the_commit_and_the_cache_serves_the_branch() {
    let (repo, first, dir) = repo_with(CM_A);
    let p = pipeline(&dir).with_resolve_ttl(std::time::Duration::from_secs(60));
    let a = app(&repo);
    assert_eq!(p.resolve(&a, None).await.unwrap()[0].id, first);
    repo.write("app/cm.yaml", CM_A.replace("name: a", "name: b"));
    let second = repo.commit("two");
    // Within the window, main still resolves to what it was...
    assert_eq!(p.resolve(&a, None).await.unwrap()[0].id, first);
    // ...until the repository is forgotten (a webhook, an explicit refresh).
    p.forget_resolved(|_| true);
    assert_eq!(p.resolve(&a, None).await.unwrap()[0].id, second);
    // A pin is always resolved afresh and names its own commit.
    let pinned = p
        .prepare(&a, Some(&Revision::parse(&first).unwrap()))
        .await
        .unwrap();
    assert_eq!(pinned.revision, first);
    assert_eq!(pinned.rendered.manifests[0].name(), "a");
}
