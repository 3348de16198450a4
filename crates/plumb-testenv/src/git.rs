//! Git repositories for tests, built with the real `git`.
//!
//! A [`GitRepo`] is a working clone plus the bare repository it pushes to; tests
//! write files, commit and push, then point plumb at [`GitRepo::url`]
//! (`file://`) or serve the bare repository over HTTP with
//! [`GitHttpServer`], which runs the real `git http-backend`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A working repository and its bare remote, in a temporary directory.
#[derive(Debug)]
pub struct GitRepo {
    _dir: tempfile::TempDir,
    work: PathBuf,
    bare: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Alice Example")
        .env("GIT_AUTHOR_EMAIL", "alice@example.com")
        .env("GIT_COMMITTER_NAME", "Alice Example")
        .env("GIT_COMMITTER_EMAIL", "alice@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitRepo {
    /// An empty repository whose default branch is `main`.
    pub fn new() -> GitRepo {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        let bare = dir.path().join("remote.git");
        std::fs::create_dir_all(&work).expect("mkdir");
        git(
            dir.path(),
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                bare.to_str().expect("utf8"),
            ],
        );
        git(&work, &["init", "-q", "-b", "main"]);
        git(
            &work,
            &["remote", "add", "origin", bare.to_str().expect("utf8")],
        );
        GitRepo {
            _dir: dir,
            work,
            bare,
        }
    }

    /// `file://` URL of the bare repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Path of the bare repository.
    pub fn bare_path(&self) -> &Path {
        &self.bare
    }

    /// Path of the working copy.
    pub fn work_path(&self) -> &Path {
        &self.work
    }

    /// Write a file (creating directories).
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> &GitRepo {
        let p = self.work.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, contents).expect("write");
        self
    }

    /// Delete a file or directory.
    pub fn remove(&self, path: &str) -> &GitRepo {
        let p = self.work.join(path);
        if p.is_dir() {
            std::fs::remove_dir_all(p).expect("rm -r");
        } else {
            std::fs::remove_file(p).expect("rm");
        }
        self
    }

    /// Create a symlink at `path` pointing to `target`.
    pub fn symlink(&self, path: &str, target: &str) -> &GitRepo {
        let p = self.work.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::os::unix::fs::symlink(target, p).expect("symlink");
        self
    }

    /// Commit everything and push the current branch; returns the commit SHA.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        let branch = git(&self.work, &["rev-parse", "--abbrev-ref", "HEAD"]);
        git(&self.work, &["push", "-q", "origin", &branch]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Annotated tag at HEAD, pushed.
    pub fn tag(&self, name: &str) {
        git(&self.work, &["tag", "-a", name, "-m", name]);
        git(&self.work, &["push", "-q", "origin", name]);
    }

    /// Switch to (creating if needed) a branch.
    pub fn checkout(&self, branch: &str) {
        let exists = Command::new("git")
            .current_dir(&self.work)
            .args(["rev-parse", "--verify", "-q", branch])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if exists {
            git(&self.work, &["checkout", "-q", branch]);
        } else {
            git(&self.work, &["checkout", "-q", "-b", branch]);
        }
    }

    /// Run any git command in the working copy.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work, args)
    }
}

impl Default for GitRepo {
    fn default() -> GitRepo {
        GitRepo::new()
    }
}

/// `git http-backend` serving a directory of bare repositories on loopback.
#[derive(Debug)]
pub struct GitHttpServer {
    child: Child,
    base: String,
}

impl GitHttpServer {
    /// Serve the bare repositories under `root`; with `token`, require HTTP
    /// basic auth whose password is the token.
    pub fn start(root: &Path, token: Option<&str>) -> GitHttpServer {
        GitHttpServer::start_with(root, token, None)
    }

    /// Like [`GitHttpServer::start`], serving HTTPS with `tls` = (cert, key).
    pub fn start_with(
        root: &Path,
        token: Option<&str>,
        tls: Option<(&Path, &Path)>,
    ) -> GitHttpServer {
        let script = crate::repo_root().join("testenv/git-http-server");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(root);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start git-http-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read address");
        assert!(line.starts_with("http"), "git-http-server said {line:?}");
        GitHttpServer {
            child,
            base: line.trim().to_string(),
        }
    }

    /// URL of a repository served from `root`, e.g. `remote.git`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
