//! SOPS files for the tools that read files (kustomize, helm): a copy of the
//! commit's tree with every SOPS file decrypted, staged in a private directory
//! on tmpfs and removed when dropped.

use std::path::{Path, PathBuf};

use plumb_secrets::sops::{self, Keyring};

use crate::RenderError;

/// The SOPS files of a materialized tree: repository-relative name and path.
pub(crate) fn find_sops_files(
    root: &Path,
    max_size: u64,
) -> Result<Vec<(String, PathBuf)>, RenderError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| RenderError::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| RenderError::io(&dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == ".plumb-complete" || name.starts_with(".plumb-") {
                continue;
            }
            let ft = entry.file_type().map_err(|e| RenderError::io(&path, e))?;
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            if !ft.is_file() || entry.metadata().map(|m| m.len() > max_size).unwrap_or(true) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| RenderError::io(&path, e))?;
            if sops::is_sops_file(&path, &bytes) {
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A decrypted copy of a tree on tmpfs; removed when dropped.
pub(crate) struct Staged {
    dir: tempfile::TempDir,
    /// Plaintext lines that must not appear in a tool's error output.
    redact: Vec<String>,
}

impl Staged {
    /// The staged tree's root.
    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A tool's result with every decrypted line masked out of its error text
    /// (tools quote lines they cannot parse).
    pub(crate) fn redact(&self, r: Result<String, RenderError>) -> Result<String, RenderError> {
        r.map_err(|e| match e {
            RenderError::Tool {
                tool,
                path,
                mut message,
            } => {
                for secret in &self.redact {
                    message = message.replace(secret.as_str(), "(redacted)");
                }
                RenderError::Tool {
                    tool,
                    path,
                    message,
                }
            }
            other => other,
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Overwrite decrypted words in the strings we keep for redaction.
        for s in &mut self.redact {
            zeroize::Zeroize::zeroize(s);
        }
    }
}

/// Copy `root` into a new private directory under `tmpfs` and decrypt the
/// `files` (from [`find_sops_files`]) in the copy.
pub(crate) fn stage(
    root: &Path,
    tmpfs: &Path,
    files: &[(String, PathBuf)],
    keys: &Keyring,
) -> Result<Staged, RenderError> {
    // tempfile creates the directory with mode 0700.
    let dir = tempfile::Builder::new()
        .prefix("plumb-sops-")
        .tempdir_in(tmpfs)
        .map_err(|e| RenderError::io(tmpfs, e))?;
    copy_tree(root, dir.path())?;
    let mut staged = Staged {
        dir,
        redact: Vec::new(),
    };
    for (rel, path) in files {
        let bytes = std::fs::read(path).map_err(|e| RenderError::io(path, e))?;
        let plain = sops::decrypt(rel, &bytes, sops::Format::from_path(path), keys)?;
        let dest = staged.dir.path().join(rel);
        write_private(&dest, plain.bytes())?;
        for line in String::from_utf8_lossy(plain.bytes()).lines() {
            for part in [
                line.trim(),
                line.split_once(['=', ':'])
                    .map(|(_, v)| v.trim())
                    .unwrap_or(""),
            ] {
                if part.len() >= 4 {
                    staged.redact.push(part.to_string());
                }
            }
        }
    }
    // Longest first, so a line is masked whole before its parts.
    staged.redact.sort_by_key(|s| std::cmp::Reverse(s.len()));
    Ok(staged)
}

fn write_private(dest: &Path, data: &[u8]) -> Result<(), RenderError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(dest);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| RenderError::io(dest, e))?;
    f.write_all(data).map_err(|e| RenderError::io(dest, e))
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), RenderError> {
    for entry in std::fs::read_dir(from).map_err(|e| RenderError::io(from, e))? {
        let entry = entry.map_err(|e| RenderError::io(from, e))?;
        let src = entry.path();
        let dest = to.join(entry.file_name());
        let ft = entry.file_type().map_err(|e| RenderError::io(&src, e))?;
        if ft.is_dir() {
            if entry.file_name().to_string_lossy().starts_with(".plumb-") {
                continue;
            }
            std::fs::create_dir(&dest).map_err(|e| RenderError::io(&dest, e))?;
            copy_tree(&src, &dest)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dest).map_err(|e| RenderError::io(&src, e))?;
        }
    }
    Ok(())
}
