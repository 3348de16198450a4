//! Reading the tree of one commit, without a worktree.
//!
//! A [`Snapshot`] is a commit's tree inside the bare cache repository. Paths
//! are always relative to the repository root and are checked before use: a
//! path with `..` that leaves the root, or a symlink whose target does, is
//! refused with [`SnapshotError::Escapes`]. Files over a size limit are refused
//! before they are read into memory.

use std::path::{Component, Path, PathBuf};

use gix::bstr::ByteSlice;

/// Errors reading a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A path or symlink leaves the repository.
    #[error("{path}: leaves the repository ({reason})")]
    Escapes {
        /// The offending path, relative to the repository root.
        path: String,
        /// How it escapes.
        reason: String,
    },
    /// Nothing at that path in the commit.
    #[error("{path}: no such file or directory in commit {commit}")]
    NotFound {
        /// The path.
        path: String,
        /// The commit.
        commit: String,
    },
    /// A file is larger than allowed.
    #[error("{path}: {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Reading the object database failed.
    #[error("{path}: {message}")]
    Read {
        /// The path.
        path: String,
        /// What failed.
        message: String,
    },
    /// Writing a materialised copy failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path written.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One file of a snapshot.
#[derive(Debug, Clone)]
pub struct FileEntry {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
}

/// The kind of a tree entry, as far as plumb cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Link,
    Submodule,
}

/// The tree of one commit.
pub struct Snapshot {
    repo: gix::ThreadSafeRepository,
    tree: gix::ObjectId,
    commit: String,
    max_file_size: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("commit", &self.commit)
            .finish()
    }
}

/// Most symlinks a path may pass through.
const MAX_LINK_DEPTH: usize = 16;

impl Snapshot {
    pub(crate) fn new(
        repo: gix::ThreadSafeRepository,
        tree: gix::ObjectId,
        commit: String,
    ) -> Snapshot {
        Snapshot {
            repo,
            tree,
            commit,
            max_file_size: 16 * 1024 * 1024,
        }
    }

    /// Refuse files larger than `bytes` (default 16 MiB).
    pub fn with_max_file_size(mut self, bytes: u64) -> Snapshot {
        self.max_file_size = bytes;
        self
    }

    /// The commit this snapshot reads.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// Whether `path` exists as a file (following in-repository symlinks).
    pub fn is_file(&self, path: &str) -> Result<bool, SnapshotError> {
        match self.resolve(path) {
            Ok((_, Kind::File, _)) => Ok(true),
            Ok(_) | Err(SnapshotError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether `path` exists as a directory.
    pub fn is_dir(&self, path: &str) -> Result<bool, SnapshotError> {
        match self.resolve(path) {
            Ok((_, Kind::Dir, _)) => Ok(true),
            Ok(_) | Err(SnapshotError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Read one file.
    pub fn read(&self, path: &str) -> Result<Vec<u8>, SnapshotError> {
        let (id, kind, real) = self.resolve(path)?;
        if kind != Kind::File {
            return Err(SnapshotError::NotFound {
                path: path.to_string(),
                commit: self.commit.clone(),
            });
        }
        self.blob(id, &real)
    }

    /// The files under directory `dir` (the root when empty): directly in it,
    /// or at any depth when `recurse`. Symlinks inside the repository are
    /// followed; those leaving it are an error.
    pub fn files(&self, dir: &str, recurse: bool) -> Result<Vec<FileEntry>, SnapshotError> {
        let (id, kind, real) = self.resolve(dir)?;
        if kind != Kind::Dir {
            return Err(SnapshotError::NotFound {
                path: dir.to_string(),
                commit: self.commit.clone(),
            });
        }
        let mut out = Vec::new();
        self.walk(id, &real, dir, recurse, &mut out, 0)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn walk(
        &self,
        tree: gix::ObjectId,
        real: &str,
        shown: &str,
        recurse: bool,
        out: &mut Vec<FileEntry>,
        depth: usize,
    ) -> Result<(), SnapshotError> {
        if depth > 64 {
            return Err(SnapshotError::Read {
                path: shown.to_string(),
                message: "directories nested more than 64 deep".into(),
            });
        }
        for (name, id, kind) in self.entries(tree, real)? {
            let child_shown = join(shown, &name);
            let child_real = join(real, &name);
            let (id, kind, resolved) = if kind == Kind::Link {
                self.resolve(&child_real)?
            } else {
                (id, kind, child_real)
            };
            match kind {
                Kind::File => out.push(FileEntry {
                    data: self.blob(id, &resolved)?,
                    path: child_shown,
                }),
                Kind::Dir if recurse => {
                    self.walk(id, &resolved, &child_shown, recurse, out, depth + 1)?
                }
                Kind::Dir | Kind::Submodule | Kind::Link => {}
            }
        }
        Ok(())
    }

    /// Write the whole tree under `dest` (for tools that need files: Kustomize,
    /// Helm). In-repository symlinks become copies; escaping ones are refused.
    pub fn materialize(&self, dest: &Path) -> Result<(), SnapshotError> {
        self.materialize_dir(self.tree, "", dest, 0)
    }

    fn materialize_dir(
        &self,
        tree: gix::ObjectId,
        real: &str,
        dest: &Path,
        depth: usize,
    ) -> Result<(), SnapshotError> {
        if depth > 64 {
            return Err(SnapshotError::Read {
                path: real.to_string(),
                message: "directories nested more than 64 deep".into(),
            });
        }
        std::fs::create_dir_all(dest).map_err(|source| SnapshotError::Write {
            path: dest.to_path_buf(),
            source,
        })?;
        for (name, id, kind) in self.entries(tree, real)? {
            let child = join(real, &name);
            let target = dest.join(&name);
            let (id, kind, resolved) = if kind == Kind::Link {
                self.resolve(&child)?
            } else {
                (id, kind, child)
            };
            match kind {
                Kind::File => {
                    let data = self.blob(id, &resolved)?;
                    std::fs::write(&target, data).map_err(|source| SnapshotError::Write {
                        path: target,
                        source,
                    })?;
                }
                Kind::Dir => self.materialize_dir(id, &resolved, &target, depth + 1)?,
                Kind::Submodule | Kind::Link => {}
            }
        }
        Ok(())
    }

    fn repo(&self) -> gix::Repository {
        self.repo.to_thread_local()
    }

    fn read_err(&self, path: &str, e: &dyn std::fmt::Display) -> SnapshotError {
        SnapshotError::Read {
            path: path.to_string(),
            message: e.to_string(),
        }
    }

    fn entries(
        &self,
        tree: gix::ObjectId,
        path: &str,
    ) -> Result<Vec<(String, gix::ObjectId, Kind)>, SnapshotError> {
        let repo = self.repo();
        let tree = repo.find_tree(tree).map_err(|e| self.read_err(path, &e))?;
        let mut out = Vec::new();
        for entry in tree.iter() {
            let entry = entry.map_err(|e| self.read_err(path, &e))?;
            let mode = entry.mode();
            let kind = if mode.is_tree() {
                Kind::Dir
            } else if mode.is_link() {
                Kind::Link
            } else if mode.is_commit() {
                Kind::Submodule
            } else {
                Kind::File
            };
            out.push((
                entry.filename().to_str_lossy().into_owned(),
                entry.object_id(),
                kind,
            ));
        }
        Ok(out)
    }

    fn blob(&self, id: gix::ObjectId, path: &str) -> Result<Vec<u8>, SnapshotError> {
        let repo = self.repo();
        let header = repo.find_header(id).map_err(|e| self.read_err(path, &e))?;
        if header.size() > self.max_file_size {
            return Err(SnapshotError::TooLarge {
                path: path.to_string(),
                size: header.size(),
                limit: self.max_file_size,
            });
        }
        let blob = repo.find_blob(id).map_err(|e| self.read_err(path, &e))?;
        Ok(blob.data.clone())
    }

    /// Follow `path` from the root through directories and symlinks. Returns
    /// the object, its kind and the real path it was found at.
    fn resolve(&self, path: &str) -> Result<(gix::ObjectId, Kind, String), SnapshotError> {
        let mut pending: Vec<String> = normalize(path, path)?.into_iter().rev().collect();
        let mut done: Vec<String> = Vec::new();
        let mut current = (self.tree, Kind::Dir);
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if current.1 != Kind::Dir {
                return Err(self.not_found(path));
            }
            let found = self
                .entries(current.0, &done.join("/"))?
                .into_iter()
                .find(|(name, _, _)| *name == part)
                .ok_or_else(|| self.not_found(path))?;
            if found.2 == Kind::Link {
                links += 1;
                if links > MAX_LINK_DEPTH {
                    return Err(SnapshotError::Read {
                        path: path.to_string(),
                        message: "too many levels of symbolic links".into(),
                    });
                }
                let target = String::from_utf8_lossy(&self.blob(found.1, path)?).into_owned();
                if target.starts_with('/') {
                    return Err(SnapshotError::Escapes {
                        path: path.to_string(),
                        reason: format!(
                            "symlink {} points to absolute path {target}",
                            join(&done.join("/"), &part)
                        ),
                    });
                }
                // Re-resolve from the root: the link's directory + its target + the rest.
                let base = done.join("/");
                let joined = join(&base, &target);
                let rest: Vec<String> = pending.drain(..).rev().collect();
                let full = if rest.is_empty() {
                    joined
                } else {
                    format!("{joined}/{}", rest.join("/"))
                };
                let parts = normalize(&full, path).map_err(|_| SnapshotError::Escapes {
                    path: path.to_string(),
                    reason: format!("symlink {} points to {target}", join(&base, &part)),
                })?;
                pending = parts.into_iter().rev().collect();
                done.clear();
                current = (self.tree, Kind::Dir);
                continue;
            }
            done.push(part);
            current = (found.1, found.2);
        }
        Ok((current.0, current.1, done.join("/")))
    }

    fn not_found(&self, path: &str) -> SnapshotError {
        SnapshotError::NotFound {
            path: path.to_string(),
            commit: self.commit.clone(),
        }
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// Split a relative path into parts, resolving `.` and `..`; refuse one that
/// climbs above the root or is absolute.
pub(crate) fn normalize(path: &str, shown: &str) -> Result<Vec<String>, SnapshotError> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(SnapshotError::Escapes {
                        path: shown.to_string(),
                        reason: "`..` climbs above the repository root".into(),
                    });
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(SnapshotError::Escapes {
                    path: shown.to_string(),
                    reason: "absolute path".into(),
                });
            }
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_refuses_escapes() {
        assert_eq!(normalize("a/./b/../c", "x").unwrap(), vec!["a", "c"]);
        assert!(normalize("", "x").unwrap().is_empty());
        assert!(matches!(
            normalize("a/../../etc", "x"),
            Err(SnapshotError::Escapes { .. })
        ));
        assert!(matches!(
            normalize("/etc/passwd", "x"),
            Err(SnapshotError::Escapes { .. })
        ));
    }
}
