//! Fetching and reading real repositories made with the real `git`, over
//! file://, smart HTTP (`git http-backend`) and the ssh transport.

#![allow(clippy::unwrap_used)]

use plumb_git::{CredentialEntry, Credentials, GitCache, GitError, SnapshotError};
use plumb_testenv::git::{GitHttpServer, GitRepo};

fn history() -> (GitRepo, Vec<String>) {
    let repo = GitRepo::new();
    repo.write("apps/myapp/cm.yaml", "kind: ConfigMap\n# one\n");
    let c1 = repo.commit("first: add myapp");
    repo.tag("v1.0.0");
    repo.write("apps/myapp/cm.yaml", "kind: ConfigMap\n# two\n");
    repo.write("shared/common.yaml", "kind: Secret\n");
    repo.symlink("apps/myapp/common.yaml", "../../shared/common.yaml");
    repo.symlink("apps/evil/passwd", "../../../../../../etc/passwd");
    repo.symlink("apps/evil2/abs", "/etc/passwd");
    repo.write("apps/myapp/nested/deep.yaml", "kind: Deep\n");
    let c2 = repo.commit("second: shared config\n\nWith a body.");
    repo.checkout("feature");
    repo.write("apps/myapp/feature.yaml", "kind: Feature\n");
    let c3 = repo.commit("feature work");
    repo.checkout("main");
    (repo, vec![c1, c2, c3])
}

fn cache() -> (tempfile::TempDir, GitCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = GitCache::new(dir.path().join("repos"), Credentials::default());
    (dir, cache)
}

#[test]
fn resolves_every_kind_of_revision() {
    let (repo, c) = history();
    let (_d, cache) = cache();
    let url = repo.url();

    let head = cache.fetch(&url, "HEAD").unwrap();
    assert_eq!(head.id, c[1]);
    assert_eq!(head.author, "Alice Example");
    assert_eq!(head.subject, "second: shared config");
    assert!(head.message.contains("With a body."));
    assert!(head.time > 1_600_000_000);

    assert_eq!(cache.fetch(&url, "main").unwrap().id, c[1]);
    assert_eq!(cache.fetch(&url, "refs/heads/main").unwrap().id, c[1]);
    assert_eq!(cache.fetch(&url, "feature").unwrap().id, c[2]);
    assert_eq!(
        cache.fetch(&url, "v1.0.0").unwrap().id,
        c[0],
        "annotated tags peel to their commit"
    );
    assert_eq!(cache.fetch(&url, &c[0]).unwrap().id, c[0], "full SHA");
    assert_eq!(cache.fetch(&url, &c[2][..8]).unwrap().id, c[2], "short SHA");

    // A fresh cache finds a short SHA that no ref points at.
    let (_d2, fresh) = cache_pair();
    assert_eq!(fresh.fetch(&url, &c[0][..10]).unwrap().id, c[0]);
}

fn cache_pair() -> (tempfile::TempDir, GitCache) {
    cache()
}

#[test]
fn fetches_are_shallow() {
    let (repo, c) = history();
    let (_d, cache) = cache();
    cache.fetch(&repo.url(), "main").unwrap();
    let dir = cache.repo_dir(&repo.url());
    let shallow = std::fs::read_to_string(dir.join("shallow")).expect("a shallow file");
    assert!(shallow.contains(&c[1]), "{shallow}");
    // The first commit was not transferred.
    let snapshot_of_first = cache.snapshot(&repo.url(), &c[0]);
    assert!(
        snapshot_of_first.is_err(),
        "the first commit should not be in a depth-1 fetch"
    );
    // Until asked for by SHA.
    cache.fetch(&repo.url(), &c[0]).unwrap();
    assert!(cache.snapshot(&repo.url(), &c[0]).is_ok());
}

#[test]
fn remote_revision_checks_without_fetching() {
    let (repo, c) = history();
    let (_d, cache) = cache();
    assert_eq!(
        cache
            .remote_revision(&repo.url(), "main")
            .unwrap()
            .as_deref(),
        Some(c[1].as_str())
    );
    assert_eq!(
        cache
            .remote_revision(&repo.url(), "feature")
            .unwrap()
            .as_deref(),
        Some(c[2].as_str())
    );
    assert_eq!(cache.remote_revision(&repo.url(), &c[0]).unwrap(), None);
    let dir = cache.repo_dir(&repo.url());
    let packs = std::fs::read_dir(dir.join("objects/pack"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(packs, 0, "a ref check must not download objects");

    repo.write("new.yaml", "kind: New\n");
    let c4 = repo.commit("new");
    assert_eq!(
        cache
            .remote_revision(&repo.url(), "main")
            .unwrap()
            .as_deref(),
        Some(c4.as_str())
    );
}

#[test]
fn reads_trees_without_a_worktree() {
    let (repo, c) = history();
    let (_d, cache) = cache();
    let commit = cache.fetch(&repo.url(), "main").unwrap();
    let snap = cache.snapshot(&repo.url(), &commit.id).unwrap();
    assert_eq!(snap.commit(), c[1]);
    assert_eq!(
        snap.read("apps/myapp/cm.yaml").unwrap(),
        b"kind: ConfigMap\n# two\n"
    );
    assert!(snap.is_dir("apps/myapp").unwrap());
    assert!(snap.is_file("apps/myapp/cm.yaml").unwrap());
    assert!(!snap.is_file("apps/nope.yaml").unwrap());

    let flat: Vec<_> = snap
        .files("apps/myapp", false)
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(flat, vec!["apps/myapp/cm.yaml", "apps/myapp/common.yaml"]);
    let deep: Vec<_> = snap
        .files("apps/myapp", true)
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        deep,
        vec![
            "apps/myapp/cm.yaml",
            "apps/myapp/common.yaml",
            "apps/myapp/nested/deep.yaml"
        ]
    );
    // The in-repository symlink reads its target.
    assert_eq!(
        snap.read("apps/myapp/common.yaml").unwrap(),
        b"kind: Secret\n"
    );
}

#[test]
fn refuses_paths_that_leave_the_repository() {
    let (repo, _) = history();
    let (_d, cache) = cache();
    let commit = cache.fetch(&repo.url(), "main").unwrap();
    let snap = cache.snapshot(&repo.url(), &commit.id).unwrap();
    for bad in [
        "apps/evil/passwd",
        "apps/evil2/abs",
        "../outside",
        "apps/../../x",
    ] {
        match snap.read(bad) {
            Err(SnapshotError::Escapes { path, .. }) => assert_eq!(path, bad),
            other => panic!("{bad}: expected Escapes, got {other:?}"),
        }
    }
    assert!(matches!(
        snap.files("apps/evil", true),
        Err(SnapshotError::Escapes { .. })
    ));
    let out = tempfile::tempdir().unwrap();
    assert!(matches!(
        snap.materialize(out.path()),
        Err(SnapshotError::Escapes { .. })
    ));
}

#[test]
fn materializes_in_repository_links_as_files() {
    let repo = GitRepo::new();
    repo.write("base/cm.yaml", "a: 1\n");
    repo.symlink("overlay/cm.yaml", "../base/cm.yaml");
    let id = repo.commit("links");
    let (_d, cache) = cache();
    cache.fetch(&repo.url(), &id).unwrap();
    let out = tempfile::tempdir().unwrap();
    cache
        .snapshot(&repo.url(), &id)
        .unwrap()
        .materialize(out.path())
        .unwrap();
    let copied = out.path().join("overlay/cm.yaml");
    assert!(!copied.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_to_string(copied).unwrap(), "a: 1\n");
}

#[test]
fn oversized_files_are_refused_before_reading() {
    let repo = GitRepo::new();
    repo.write("big.yaml", vec![b'#'; 2 * 1024 * 1024]);
    let id = repo.commit("big");
    let (_d, cache) = cache();
    cache.fetch(&repo.url(), &id).unwrap();
    let snap = cache
        .snapshot(&repo.url(), &id)
        .unwrap()
        .with_max_file_size(1024 * 1024);
    assert!(
        matches!(snap.read("big.yaml"), Err(SnapshotError::TooLarge { size, .. }) if size == 2 * 1024 * 1024)
    );
}

#[test]
fn unknown_revisions_and_remotes_are_clear_errors() {
    let (repo, _) = history();
    let (_d, cache) = cache();
    let err = cache.fetch(&repo.url(), "no-such-branch").unwrap_err();
    assert!(matches!(err, GitError::UnknownRevision { .. }), "{err}");
    assert!(err.to_string().contains("no-such-branch"));
    let err = cache
        .fetch(&repo.url(), "0000000000000000000000000000000000000001")
        .unwrap_err();
    assert!(
        matches!(
            err,
            GitError::UnknownRevision { .. } | GitError::Remote { .. }
        ),
        "{err}"
    );
    let err = cache.fetch(&repo.url(), "deadbeef").unwrap_err();
    assert!(matches!(err, GitError::UnknownRevision { .. }), "{err}");
    let err = cache
        .fetch("file:///nonexistent/repo.git", "main")
        .unwrap_err();
    assert!(matches!(err, GitError::Remote { .. }), "{err}");
    let err = cache
        .fetch("http://127.0.0.1:1/repo.git", "main")
        .unwrap_err();
    assert!(matches!(err, GitError::Remote { .. }), "{err}");
}

#[test]
fn smart_http_fetches_and_refuses_cleartext_credentials() {
    let (repo, c) = history();
    let root = repo.bare_path().parent().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let open = GitHttpServer::start(root, None);
    let url = open.url("remote.git");
    let cache = GitCache::new(dir.path().join("a"), Credentials::default());
    assert_eq!(cache.fetch(&url, "main").unwrap().id, c[1]);
    assert_eq!(cache.fetch(&url, "v1.0.0").unwrap().id, c[0]);
    let snap = cache.snapshot(&url, &c[1]).unwrap();
    assert_eq!(snap.read("shared/common.yaml").unwrap(), b"kind: Secret\n");

    // A token is never sent over plain http, and never shows in the error.
    let guarded = GitHttpServer::start(root, Some("s3cr3t-token"));
    let url = guarded.url("remote.git");
    let with_token = GitCache::new(
        dir.path().join("b"),
        Credentials::default().with_entry(CredentialEntry {
            url: url.clone(),
            username: Some("bot".into()),
            token: Some(serde_json::from_str("\"s3cr3t-token\"").unwrap()),
            ..Default::default()
        }),
    );
    let err = with_token.fetch(&url, "main").unwrap_err().to_string();
    assert!(err.contains("clear text"), "{err}");
    assert!(!err.contains("s3cr3t-token"), "{err}");

    // Credentials in the URL itself are never echoed either.
    let with_userinfo = url.replace("http://", "http://bot:s3cr3t-token@");
    let anon = GitCache::new(dir.path().join("c"), Credentials::default());
    match anon.fetch(&with_userinfo, "main") {
        Ok(_) => panic!("fetched without being allowed to send credentials"),
        Err(e) => assert!(!e.to_string().contains("s3cr3t-token"), "{e}"),
    }
}

#[test]
fn ssh_transport_runs_the_configured_ssh_command() {
    // A stand-in for `ssh` that runs the requested command locally, so the
    // ssh transport (argument passing, upload-pack over stdio) is exercised
    // without an sshd. It records its arguments to prove it was used.
    let (repo, c) = history();
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-ssh");
    let log = dir.path().join("ssh.log");
    std::fs::write(
        &fake,
        concat!(
                "#!/bin/sh\n",
                "[ \"$1\" = -G ] && exit 0\n",
                "echo \"$@\" >> \"$PLUMB_FAKE_SSH_LOG\"\n",
                // Skip options, then the host; like ssh, run the rest as one command.
                "while [ $# -gt 0 ]; do case \"$1\" in -o|-p|-i) shift 2;; -*) shift;; *) break;; esac; done\n",
                "shift\n",
            "exec sh -c \"$*\"\n"
        )
        .replace("$PLUMB_FAKE_SSH_LOG", &log.display().to_string()),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let url = format!("ssh://git@localhost{}", repo.bare_path().display());
    let cache = GitCache::new(
        dir.path().join("repos"),
        Credentials::default().with_entry(CredentialEntry {
            url: "ssh://".into(),
            ssh_command: Some(fake.display().to_string()),
            ..Default::default()
        }),
    );
    assert_eq!(cache.fetch(&url, "main").unwrap().id, c[1]);
    let args = std::fs::read_to_string(&log).unwrap();
    assert!(args.contains("git@localhost"), "{args}");
    assert!(args.contains("git-upload-pack"), "{args}");
}
