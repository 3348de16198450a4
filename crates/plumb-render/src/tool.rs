//! Running `kustomize` and `helm`, bounded in time and output.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Most bytes a tool may print before it is stopped.
const MAX_OUTPUT: usize = 256 * 1024 * 1024;

/// Where the rendering tools are and how long they may take.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The `kustomize` binary.
    pub kustomize: PathBuf,
    /// The `helm` binary.
    pub helm: PathBuf,
    /// Time limit per run.
    pub timeout: Duration,
}

impl Default for Tools {
    /// `kustomize` and `helm` found on `PATH`.
    fn default() -> Tools {
        Tools {
            kustomize: PathBuf::from("kustomize"),
            helm: PathBuf::from("helm"),
            timeout: crate::DEFAULT_TOOL_TIMEOUT,
        }
    }
}

impl Tools {
    /// `PLUMB_KUSTOMIZE` / `PLUMB_HELM` when set, else the names (found on `PATH`).
    pub fn from_env() -> Tools {
        let pick = |var: &str, name: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(name))
        };
        Tools {
            kustomize: pick("PLUMB_KUSTOMIZE", "kustomize"),
            helm: pick("PLUMB_HELM", "helm"),
            timeout: crate::DEFAULT_TOOL_TIMEOUT,
        }
    }

    /// Tools from one directory (as `testenv/up` prints).
    pub fn in_dir(dir: &Path) -> Tools {
        Tools {
            kustomize: dir.join("kustomize"),
            helm: dir.join("helm"),
            timeout: crate::DEFAULT_TOOL_TIMEOUT,
        }
    }

    pub(crate) fn run_kustomize(&self, target: &Path, cwd: &Path) -> Result<String, String> {
        let mut cmd = Command::new(&self.kustomize);
        cmd.arg("build").arg(target).current_dir(cwd);
        run(cmd, self.timeout, &self.kustomize)
    }

    pub(crate) fn run_helm(&self, args: &[String], cwd: &Path) -> Result<String, String> {
        let mut cmd = Command::new(&self.helm);
        cmd.args(args).current_dir(cwd);
        // Helm must not reach for repositories or plugins: everything it needs
        // is in the chart directory.
        let home = cwd.join(".plumb-helm-home");
        cmd.env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        run(cmd, self.timeout, &self.helm)
    }
}

fn run(mut cmd: Command, timeout: Duration, program: &Path) -> Result<String, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot run {}: {e} (install it, put it on PATH, or set PLUMB_KUSTOMIZE / PLUMB_HELM)",
            program.display()
        )
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout {
            let _ = s.take(MAX_OUTPUT as u64 + 1).read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr {
            let _ = s.take(1024 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {}s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if out.len() > MAX_OUTPUT {
        return Err(format!("output over {MAX_OUTPUT} bytes"));
    }
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        return Err(text.trim().lines().take(20).collect::<Vec<_>>().join("\n"));
    }
    String::from_utf8(out).map_err(|e| format!("output is not UTF-8: {e}"))
}
