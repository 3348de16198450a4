//! `plumb artifact push`: files and directories become an OCI artifact tagged
//! with the commit SHA (and vX.Y.Z when HEAD carries it), annotated with the
//! revision, source and creation time, and the same inputs always give the
//! same digest. oras pulls what plumb pushed.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{TestRegistry, rt, run, tool};
use plumb_oci::RepositoryName;
use plumb_oci::artifact::{ArtifactPlan, ArtifactSpec, DEFAULT_ARTIFACT_TYPE};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(Command::new("git")
        .current_dir(dir)
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .args(args));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A git work tree with a file and a directory to publish; returns HEAD.
fn workspace(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("site/css")).unwrap();
    std::fs::write(dir.join("app.bin"), b"\x7fELF pretend binary").unwrap();
    std::fs::write(dir.join("site/index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(dir.join("site/css/a.css"), "h1{}").unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            "https://git.example.invalid/team/app.git",
        ],
    );
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "release"]);
    git(dir, &["tag", "v1.4.0"]);
    git(dir, &["tag", "not-a-version"]);
    git(dir, &["rev-parse", "HEAD"])
}

fn spec(dir: &Path, epoch: Option<i64>) -> ArtifactSpec {
    ArtifactSpec {
        paths: vec![dir.join("app.bin"), dir.join("site")],
        artifact_type: DEFAULT_ARTIFACT_TYPE.into(),
        source: None,
        git_dir: dir.to_owned(),
        source_date_epoch: epoch,
    }
}

#[test]
fn push_tags_with_the_commit_and_version_and_annotates() {
    let reg = TestRegistry::start();
    let ws = reg.dir.path().join("ws");
    let head = workspace(&ws);
    let plan = ArtifactPlan::prepare(&spec(&ws, None)).unwrap();
    let tags: Vec<String> = plan.tags.iter().map(|t| t.to_string()).collect();
    assert_eq!(tags, vec![head.clone(), "v1.4.0".to_string()]);
    let repo = RepositoryName::parse("team/app").unwrap();
    rt().block_on(plan.push(&reg.client(), &reg.host(), &repo, Arc::new(())))
        .unwrap();
    let h = reg.http();
    for t in &tags {
        let r = h.get(&format!("/v2/team/app/manifests/{t}"));
        assert_eq!(r.status(), 200, "{t}");
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            plan.digest.to_string()
        );
    }
    let m: serde_json::Value = h
        .get(&format!("/v2/team/app/manifests/{head}"))
        .json()
        .unwrap();
    assert_eq!(m["artifactType"], DEFAULT_ARTIFACT_TYPE);
    let a = &m["annotations"];
    assert_eq!(a["org.opencontainers.image.revision"], head);
    assert_eq!(
        a["org.opencontainers.image.source"],
        "https://git.example.invalid/team/app.git"
    );
    assert_eq!(
        a["org.opencontainers.image.created"],
        "2026-01-02T03:04:05Z"
    );
    // The commit SHA tag is immutable from now on.
    let (_, other) = h.push_image("team/app", "scratch", &[b"x"]);
    assert_eq!(h.put_manifest("team/app", &head, &other).status(), 409);

    // oras pulls it: the file as is, the directory unpacked.
    let out = reg.dir.path().join("pulled");
    std::fs::create_dir_all(&out).unwrap();
    run(Command::new(tool("oras"))
        .current_dir(&out)
        .env("DOCKER_CONFIG", reg.docker_config())
        .env("HOME", reg.dir.path())
        .args([
            "pull",
            "--plain-http",
            &format!("{}/team/app:v1.4.0", reg.host()),
        ]));
    assert_eq!(
        std::fs::read(out.join("app.bin")).unwrap(),
        b"\x7fELF pretend binary"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("site/css/a.css")).unwrap(),
        "h1{}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("site/index.html")).unwrap(),
        "<h1>hi</h1>"
    );
}

#[test]
fn the_same_inputs_give_the_same_digest() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    workspace(&a);
    let first = ArtifactPlan::prepare(&spec(&a, None)).unwrap();
    // A fresh clone elsewhere, files rewritten (new mtimes, new inodes).
    let b = dir.path().join("b");
    run(Command::new("git").args(["clone", "-q"]).arg(&a).arg(&b));
    git(
        &b,
        &[
            "remote",
            "set-url",
            "origin",
            "https://git.example.invalid/team/app.git",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(b.join("site/index.html"), "<h1>hi</h1>").unwrap();
    let second = ArtifactPlan::prepare(&spec(&b, None)).unwrap();
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.manifest, second.manifest);
    // SOURCE_DATE_EPOCH decides `created`; a different one is a different artifact.
    let pinned = ArtifactPlan::prepare(&spec(&a, Some(1_700_000_000))).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&pinned.manifest).unwrap();
    assert_eq!(
        m["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_ne!(pinned.digest, first.digest);
    assert_eq!(
        ArtifactPlan::prepare(&spec(&b, Some(1_700_000_000)))
            .unwrap()
            .digest,
        pinned.digest
    );
    // Changed content changes the digest.
    std::fs::write(b.join("site/index.html"), "<h1>changed</h1>").unwrap();
    assert_ne!(
        ArtifactPlan::prepare(&spec(&b, None)).unwrap().digest,
        first.digest
    );
}

#[test]
fn push_outside_git_or_of_missing_paths_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "x").unwrap();
    let mut s = spec(dir.path(), None);
    s.paths = vec![dir.path().join("f")];
    let e = ArtifactPlan::prepare(&s).unwrap_err().to_string();
    assert!(e.contains("git commit"), "{e}");
    let ws = dir.path().join("ws");
    workspace(&ws);
    let mut s = spec(&ws, None);
    s.paths.push(ws.join("nope"));
    let e = ArtifactPlan::prepare(&s).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}
